//! Runnel's Rust client: Producer, Consumer and Admin, async on tokio, for Runnel and any
//! Kafka-compatible cluster.
//!
//! Layers, bottom up: [`connection`] (one broker: framing, version negotiation, pipelining,
//! timeouts), [`cluster`] (bootstrap, metadata, a connection per broker, reconnects), then the
//! APIs people use: [`admin`], [`producer`], [`consumer`]. The batching, partitioning,
//! assignment and fetch-position logic are plain data structures tested without sockets.
//!
//! Every failure is a [`ClientError`] that says what went wrong and whether retrying can help.
//!
//! ```no_run
//! # async fn example() -> runnel_client::Result<()> {
//! use runnel_client::{Admin, ClientConfig, NewTopic};
//!
//! let admin = Admin::connect(ClientConfig::new("localhost:9092")).await?;
//! admin.create_topic(NewTopic::new("orders", 3)).await?;
//! for topic in admin.list_topics(false).await? {
//!     println!("{}: {} partitions", topic.name, topic.partitions.len());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The generated decoders of `kafka-protocol` 0.18 pre-allocate array counts read off the wire
//! before checking them; this client bounds every response frame at
//! [`connection::RESPONSE_BYTES_MAX`], and an application that talks to untrusted brokers can
//! also install `runnel_protocol::ClaimedSizeAllocator` as its global allocator.

#![warn(missing_docs)]

pub mod admin;
pub mod cluster;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod health;
pub mod membership;
pub mod producer;
pub mod settings;
mod wire;

pub use admin::{
    Admin, AlterConfigOp, ClusterDescription, ConfigEntry, ConfigOp, ConfigSource, ConfigSynonym,
    ConfigTarget, Election, GroupDescription, GroupListing, GroupType, ListedOffset,
    MemberDescription, NewTopic, OffsetSpec, PartitionOutcome, PartitionReassignment,
    ProducerDescription, TransactionDescription, TransactionListing,
};
pub use cluster::{BrokerInfo, Cluster, PartitionMetadata, TopicMetadata};
pub use connection::{ClientConfig, Connection, PendingAnswer};
pub use consumer::{
    Consumer, ConsumerConfig, ConsumerGroupMetadata, ConsumerRecord, GroupProtocol, IsolationLevel,
    OffsetReset, RebalanceListener, TopicPartition,
};
pub use error::{ClientError, Result};
pub use health::{ClusterHealth, PartitionRef, UnderReplicatedPartition};
pub use membership::{GroupMember, Joined, MembershipConfig};
pub use producer::{Acks, DeliveryFuture, ProduceRecord, Producer, ProducerConfig, RecordMetadata};
pub use settings::SettingDoc;
