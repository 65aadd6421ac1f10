//! The controller quorum: the metadata log ([`runnel_controller::records`]) replicated by
//! Raft ([openraft]) among the controller voters, on our own files and over TCP.
//!
//! - [`Quorum`]: one voter. It keeps the log ([`log`]: segments of checksummed frames,
//!   fsynced before Raft counts them) and the image it builds ([`state_machine`]), serves
//!   the controller listener ([`wire`]: length-prefixed JSON frames, for Raft between voters
//!   and for brokers' requests), and while it leads it is the active controller: it decides
//!   each request with [`runnel_controller::Controller`] and commits the records as one
//!   entry, and it fences brokers whose sessions expire.
//! - [`ControllerClient`]: how brokers and tools find and ask the active controller.
//! - [`BrokerLifecycle`]: a broker's registration, heartbeats, metadata image and controlled
//!   shutdown.
//!
//! A one-node quorum is the same code with one voter.

mod client;
mod lifecycle;
mod log;
mod log_store;
mod network;
mod node;
mod snapshot_buffer;
mod state_machine;
pub mod wire;

use runnel_controller::MetadataRecord;
use serde::{Deserialize, Serialize};

pub use client::{ClientError, ControllerClient};
pub use lifecycle::{BrokerLifecycle, BrokerStatus, LifecycleConfig, OfflineReplicas};
pub use node::{
    read_stored_metadata, Quorum, QuorumConfig, RaftProgress, RaftProgressWatch, StoredMetadata,
    METADATA_DIR, SNAPSHOT_EVERY_ENTRIES,
};
pub use snapshot_buffer::SnapshotBuffer;
pub use wire::{ControllerRequest, ControllerResponse, QuorumStatus, VoterStatus};

/// A voter's node id.
pub type NodeId = u64;

/// One Raft entry's payload: the records one decision made, applied together or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataBatch {
    /// The Raft term the decision was made in: an entry that lands in another term is
    /// skipped by every voter (the image it was decided on may have missed writes).
    pub term: u64,
    pub records: Vec<MetadataRecord>,
}

/// What applying an entry answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The log offset it was applied at.
    pub offset: u64,
    /// False when every voter skipped it: decided in another term, or its records do not fit
    /// the image.
    pub applied: bool,
}

openraft::declare_raft_types!(
    /// The Raft types of the metadata quorum.
    pub MetadataRaft:
        D = MetadataBatch,
        R = Applied,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = snapshot_buffer::SnapshotBuffer,
);
