//! The controller listener's protocol: each message is one frame, a 4-byte big-endian
//! length and that many bytes of JSON. A request gets exactly one response on the same
//! connection, in order.
//!
//! The same listener carries Raft between the voters and the brokers' requests to the
//! active controller (registration, heartbeats, ISR changes, topic changes, metadata). A
//! frame longer than [`FRAME_BYTES_MAX`] is refused before anything is allocated for it,
//! and a frame that does not parse closes the connection.

use std::io;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use runnel_controller::records::ConfigResource;
use runnel_controller::{
    AdoptedTopic, AlterPartition, BrokerId, Heartbeat, HeartbeatAnswer, MetadataImage, NewTopic,
    PartitionState, RegisteredBroker, Registration,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{MetadataRaft, NodeId};

/// Larger than any snapshot chunk or batch of entries the voters send, and than the image
/// of a cluster with a few hundred thousand partitions.
pub const FRAME_BYTES_MAX: usize = 256 << 20;

pub(crate) async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    message: &T,
) -> io::Result<()> {
    let body = serde_json::to_vec(message).map_err(io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&len| len as usize <= FRAME_BYTES_MAX)
        .ok_or_else(|| io::Error::other(format!("a {}-byte frame is too long", body.len())))?;
    writer.write_all(&len.to_be_bytes()).await?;
    writer.write_all(&body).await?;
    writer.flush().await
}

/// Reads one frame; `Ok(None)` at a clean end of the stream.
pub(crate) async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    reader: &mut R,
) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame claims {len} bytes, over the {FRAME_BYTES_MAX}-byte limit"),
        ));
    }
    // Grown as the bytes arrive, not allocated on the peer's word.
    let mut body = Vec::new();
    reader.take(len as u64).read_to_end(&mut body).await?;
    if body.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed inside a frame",
        ));
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// A message to a controller.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    AppendEntries(AppendEntriesRequest<MetadataRaft>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<MetadataRaft>),
    Controller(ControllerRequest),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Controller(ControllerResponse),
}

/// What brokers (and tools) ask of the active controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ControllerRequest {
    Register(Registration),
    Heartbeat(Heartbeat),
    AlterPartition(AlterPartition),
    CreateTopic {
        topic: NewTopic,
        validate_only: bool,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        total: i32,
        assignments: Vec<Vec<BrokerId>>,
        validate_only: bool,
    },
    SetConfigs {
        resource: ConfigResource,
        changes: Vec<(String, Option<String>)>,
    },
    AllocateProducerIds {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
    /// What a broker held on its own before it joined this quorum: its topics, with their
    /// ids, and the first producer id it never handed out.
    AdoptTopics {
        broker_id: BrokerId,
        broker_epoch: i64,
        topics: Vec<AdoptedTopic>,
        next_producer_id: i64,
    },
    ElectPreferred {
        topic: String,
        partition: i32,
    },
    /// An operator's unclean election for a partition nobody may lead.
    ElectUnclean {
        topic: String,
        partition: i32,
    },
    /// Moves a partition to `target` replicas (KIP-455), or with `None` cancels the move
    /// under way.
    Reassign {
        topic: String,
        partition: i32,
        target: Option<Vec<BrokerId>>,
    },
    /// Every reassignment under way.
    ListReassignments,
    /// The metadata image once it is past offset `after`, waiting up to `wait_ms` for it.
    /// Any controller answers from its own image.
    FetchImage {
        after: u64,
        wait_ms: u64,
    },
    /// The quorum as its leader sees it.
    DescribeQuorum,
}

/// The quorum as its leader sees it (`runnel cluster quorum`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuorumStatus {
    pub leader: NodeId,
    pub term: u64,
    /// The last offset of the metadata log the leader has applied.
    pub applied_offset: u64,
    pub voters: Vec<VoterStatus>,
    pub brokers: Vec<RegisteredBroker>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoterStatus {
    pub id: NodeId,
    pub address: String,
    /// The last offset the leader knows this voter holds.
    pub matched_offset: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ControllerResponse {
    /// Ask the leader instead, where one is known.
    NotController {
        leader: Option<NodeId>,
        leader_address: Option<String>,
    },
    /// Refused with a Kafka error code.
    Refused {
        code: i16,
        message: String,
    },
    Registered {
        broker_epoch: i64,
    },
    Heartbeat(HeartbeatAnswer),
    /// Done: the records are committed and applied at this offset (or, for a request that
    /// needed none, the offset it was decided at).
    Committed {
        offset: u64,
    },
    /// An AlterPartition's answer: the partition as it now is.
    Partition(PartitionState),
    ProducerIds {
        first: i64,
        count: i64,
    },
    /// `None`: the image did not pass the offset asked for in time.
    Image(Option<Box<MetadataImage>>),
    Quorum(QuorumStatus),
    /// Reassignments under way: topic, partition and its state.
    Reassignments(Vec<(String, i32, PartitionState)>),
}
