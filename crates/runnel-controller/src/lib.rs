//! The cluster's metadata, as sans-IO state machines: what the controller quorum's Raft log
//! holds and what every node builds from it.
//!
//! - [`records`]: the metadata records, the log's only content.
//! - [`MetadataImage`]: the metadata as of one log offset, built by applying records in
//!   order; brokers serve Metadata and take partition roles from it.
//! - [`Controller`]: the active controller's decisions (broker registration, heartbeats and
//!   fencing, topic and partition creation with rack-aware placement, ISR changes, leader
//!   election with KIP-966's eligible leader replicas, producer id blocks), each a request
//!   read against the image and turned into records or an error.
//! - [`BrokerSessions`]: which brokers the active controller has heard from lately.
//! - [`local_changes`]: what one broker must do when its image moves on (lead, follow,
//!   delete).
//!
//! No I/O, no clock, no randomness: times, ids and placement offsets arrive as arguments,
//! so a whole cluster's metadata can be replayed from a seed.

mod controller;
mod delta;
mod image;
mod partition_change;
mod placement;
pub mod records;
mod sessions;

pub use controller::{
    alter_partition_not_applied, check_topic_collision, validate_topic_name, AdoptedTopic,
    AlterPartition, Controller, ControllerConfig, ControllerError, Heartbeat, HeartbeatAnswer,
    NewTopic, Registration, MIN_INSYNC_REPLICAS, PARTITIONS_MAX, TOPIC_NAME_MAX_LEN,
};
pub use delta::{local_changes, LocalChanges, LocalPartition, RemovedReplica};
pub use image::{InconsistentRecord, MetadataImage, RegisteredBroker, TopicImage};
pub use placement::{place, Candidate};
pub use records::{BrokerId, MetadataRecord, PartitionState, NO_LEADER};
pub use sessions::BrokerSessions;

#[cfg(test)]
mod tests;
