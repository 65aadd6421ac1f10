//! [`Quorum`]: this node's member of the controller quorum. It runs Raft over the metadata
//! log, serves the controller listener, and, while it leads, is the active controller: it
//! decides brokers' and tools' requests one at a time against the image and commits the
//! records, and fences brokers whose sessions expire.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use openraft::{BasicNode, Config, EntryPayload, Raft, SnapshotPolicy};
use runnel_controller::{
    BrokerSessions, Controller, ControllerConfig, ControllerError, MetadataImage, MetadataRecord,
};
use runnel_storage::FileSystem;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Mutex};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use uuid::Uuid;

use crate::log::MetadataLog;
use crate::log_store::LogStore;
use crate::network::PeerNetwork;
use crate::state_machine::StateMachine;
use crate::wire::{
    read_frame, write_frame, ControllerRequest, ControllerResponse, QuorumStatus, Request,
    Response, VoterStatus,
};
use crate::{MetadataBatch, MetadataRaft, NodeId};

/// The directory under the data directory that holds the metadata log.
pub const METADATA_DIR: &str = "__cluster_metadata";

/// The most one decision may write: well below what a log entry may hold, as KRaft bounds
/// its record batches.
const BATCH_BYTES_MAX: usize = 8 << 20;

/// Controller connections served at once: voters and brokers hold one or two each.
const CONNECTIONS_MAX: usize = 1024;

/// How long a decision may take to commit before the client is told to retry.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: NodeId,
    /// Every voter's controller listener, this node's included.
    pub voters: BTreeMap<NodeId, String>,
    pub data_dir: PathBuf,
    pub controller: ControllerConfig,
    /// `broker.session.timeout.ms`: a broker not heard from for this long is fenced.
    pub broker_session_timeout_ms: i64,
    /// Raft's heartbeat; elections start after 3 to 6 of them are missed.
    pub raft_heartbeat_ms: u64,
    /// A snapshot of the image is taken after this many entries, and the log before it
    /// (less a margin for followers just behind) is purged; a voter further behind is sent
    /// the snapshot.
    pub snapshot_every_entries: u64,
}

/// The default for [`QuorumConfig::snapshot_every_entries`].
pub const SNAPSHOT_EVERY_ENTRIES: u64 = 2000;

/// The active controller's state, held while a request is decided.
#[derive(Debug)]
struct Deciding {
    /// The Raft term the sessions belong to: a new leader starts them afresh.
    term: u64,
    sessions: BrokerSessions,
}

struct Service {
    id: NodeId,
    /// This voter's address as configured for this start: the membership in the log keeps
    /// the first one, stale for a one-node quorum listening on a new port each start.
    address: Option<String>,
    raft: Raft<MetadataRaft>,
    image: watch::Receiver<Arc<MetadataImage>>,
    config: ControllerConfig,
    session_timeout_ms: i64,
    started: Instant,
    deciding: Mutex<Deciding>,
}

/// This node's member of the controller quorum.
#[derive(Debug)]
pub struct Quorum {
    service: Arc<Service>,
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

/// Reads one voter's Raft progress: what its metrics endpoint shows.
#[derive(Clone)]
pub struct RaftProgressWatch {
    id: NodeId,
    metrics: watch::Receiver<openraft::RaftMetrics<NodeId, BasicNode>>,
}

impl std::fmt::Debug for RaftProgressWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftProgressWatch")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// One voter's Raft progress at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftProgress {
    pub term: u64,
    /// The voter that leads, as far as this one knows.
    pub leader: Option<NodeId>,
    pub is_leader: bool,
    /// The last index of the metadata log on this voter.
    pub last_log_index: u64,
    /// The last index applied to this voter's image: committed, as only committed entries
    /// are applied.
    pub applied_index: u64,
}

impl RaftProgressWatch {
    pub fn read(&self) -> RaftProgress {
        let metrics = self.metrics.borrow();
        RaftProgress {
            term: metrics.current_term,
            leader: metrics.current_leader,
            is_leader: metrics.current_leader == Some(self.id),
            last_log_index: metrics.last_log_index.unwrap_or(0),
            applied_index: metrics.last_applied.map_or(0, |log_id| log_id.index),
        }
    }
}

fn refused(error: ControllerError) -> ControllerResponse {
    ControllerResponse::Refused {
        code: error.code.code(),
        message: error.message,
    }
}

impl Quorum {
    /// Opens the metadata log under `config.data_dir`, starts Raft (forming the quorum from
    /// `config.voters` if the log is new) and serves `listener`.
    pub async fn start(
        config: QuorumConfig,
        listener: TcpListener,
        fs: Arc<dyn FileSystem>,
    ) -> io::Result<Quorum> {
        let dir = config.data_dir.join(METADATA_DIR);
        let open_fs = fs.clone();
        let open_dir = dir.clone();
        let (log, (state_machine, image)) = tokio::task::spawn_blocking(move || {
            let log = MetadataLog::open(open_fs.clone(), &open_dir)?;
            Ok::<_, io::Error>((log, StateMachine::open(open_fs, &open_dir)?))
        })
        .await
        .map_err(io::Error::other)??;
        let fresh = log.vote().is_none() && log.last_log_id().is_none();
        let stored = stored_voters(&log, &state_machine);
        let configured: BTreeSet<NodeId> = config.voters.keys().copied().collect();
        if !fresh && !stored.is_empty() && stored != configured {
            // Raft would mix two quorums' logs: refuse rather than diverge.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the metadata log in {} belongs to a quorum of voters {stored:?}, not to the \
                     configured voters {configured:?}; a node cannot change quorums as a voter \
                     (to bring its topics to another cluster, start it with --roles broker)",
                    dir.display()
                ),
            ));
        }
        let heartbeat = config.raft_heartbeat_ms.max(10);
        let raft_config = Config {
            cluster_name: "runnel".into(),
            heartbeat_interval: heartbeat,
            election_timeout_min: heartbeat * 3,
            election_timeout_max: heartbeat * 6,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every_entries.max(1)),
            max_in_snapshot_log_to_keep: config.snapshot_every_entries / 4,
            ..Config::default()
        }
        .validate()
        .map_err(io::Error::other)?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            PeerNetwork,
            LogStore::new(log),
            state_machine,
        )
        .await
        .map_err(io::Error::other)?;
        if fresh {
            let members: BTreeMap<NodeId, BasicNode> = config
                .voters
                .iter()
                .map(|(&id, address)| (id, BasicNode::new(address)))
                .collect();
            // Every voter forms the quorum with the same members, which Raft allows.
            if let Err(error) = raft.initialize(members).await {
                tracing::debug!(%error, "quorum already formed");
            }
        }
        let local_addr = listener.local_addr()?;
        let service = Arc::new(Service {
            id: config.node_id,
            address: config.voters.get(&config.node_id).cloned(),
            raft,
            image,
            config: config.controller.clone(),
            session_timeout_ms: config.broker_session_timeout_ms,
            started: Instant::now(),
            deciding: Mutex::new(Deciding {
                term: 0,
                sessions: BrokerSessions::new(config.broker_session_timeout_ms),
            }),
        });
        let tasks = vec![
            tokio::spawn(serve(listener, service.clone())),
            tokio::spawn(fence_expired_sessions(service.clone())),
        ];
        tracing::info!(node = config.node_id, %local_addr, voters = ?config.voters, "controller quorum member started");
        Ok(Quorum {
            service,
            local_addr,
            tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The metadata image as this node has applied it, updated on every commit it applies.
    pub fn image(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.service.image.clone()
    }

    /// A handle that reads this voter's Raft progress (for metrics), valid after the
    /// voter stops too (it then shows the last progress).
    pub fn progress(&self) -> RaftProgressWatch {
        RaftProgressWatch {
            id: self.service.id,
            metrics: self.service.raft.metrics(),
        }
    }

    /// The voter that leads the quorum, as far as this node knows.
    pub fn leader(&self) -> Option<NodeId> {
        self.service.raft.metrics().borrow().current_leader
    }

    /// Answers a request as the listener would (a broker on this node calls it directly).
    pub async fn handle(&self, request: ControllerRequest) -> ControllerResponse {
        self.service.handle(request).await
    }

    /// Stops serving and stops Raft; what is on disk stays for the next start.
    pub async fn shutdown(self) {
        for task in self.tasks {
            task.abort();
            // Gone once awaited: the listener is closed and its port free again.
            let _ = task.await;
        }
        if let Err(error) = self.service.raft.shutdown().await {
            tracing::warn!(%error, "raft did not stop cleanly");
        }
    }
}

/// The voters of the last membership a metadata log and its snapshot hold.
fn stored_voters(log: &MetadataLog, state_machine: &StateMachine) -> BTreeSet<NodeId> {
    log.newest_first()
        .find_map(|entry| match &entry.payload {
            EntryPayload::Membership(membership) => Some(membership.voter_ids().collect()),
            _ => None,
        })
        .unwrap_or_else(|| state_machine.voters())
}

/// What a data directory's metadata log holds, read offline.
#[derive(Debug, Clone)]
pub struct StoredMetadata {
    /// The image of every entry held, committed or not (see [`read_stored_metadata`]).
    pub image: MetadataImage,
    pub voters: BTreeSet<NodeId>,
}

/// Reads the metadata log under `data_dir` without running Raft: the image its snapshot and
/// entries build, and its voters. `None` when there is no log. The image counts uncommitted
/// entries too, which is exact only for a quorum of this node alone (its durable entries all
/// commit when it runs again); that is what a node that ran alone hands to a cluster it
/// joins. Blocks.
pub fn read_stored_metadata(
    fs: Arc<dyn FileSystem>,
    data_dir: &Path,
) -> io::Result<Option<StoredMetadata>> {
    let dir = data_dir.join(METADATA_DIR);
    if !fs.exists(&dir)? {
        return Ok(None);
    }
    let log = MetadataLog::open(fs.clone(), &dir)?;
    let (mut state_machine, _) = StateMachine::open(fs, &dir)?;
    let voters = stored_voters(&log, &state_machine);
    state_machine.replay(&log);
    Ok(Some(StoredMetadata {
        image: state_machine.image().clone(),
        voters,
    }))
}

/// Accepts controller connections and serves each on its own task. The tasks belong to this
/// one: when it is stopped (shutdown), so are they, and no connection goes on talking to a
/// Raft that has stopped.
async fn serve(listener: TcpListener, service: Arc<Service>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((_, peer)) if connections.len() >= CONNECTIONS_MAX => {
                    tracing::warn!(%peer, CONNECTIONS_MAX, "too many controller connections; closing a new one");
                }
                Ok((stream, peer)) => {
                    let service = service.clone();
                    connections.spawn(async move {
                        if let Err(error) = serve_connection(stream, &service).await {
                            tracing::debug!(%peer, %error, "controller connection closed");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "controller listener accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

async fn serve_connection(mut stream: TcpStream, service: &Service) -> io::Result<()> {
    stream.set_nodelay(true)?;
    while let Some(request) = read_frame::<_, Request>(&mut stream).await? {
        let response = match request {
            Request::AppendEntries(rpc) => {
                Response::AppendEntries(service.raft.append_entries(rpc).await)
            }
            Request::Vote(rpc) => Response::Vote(service.raft.vote(rpc).await),
            Request::InstallSnapshot(rpc) => {
                Response::InstallSnapshot(service.raft.install_snapshot(rpc).await)
            }
            Request::Controller(request) => Response::Controller(service.handle(request).await),
        };
        write_frame(&mut stream, &response).await?;
    }
    Ok(())
}

/// Fences brokers whose sessions expired, while this node is the active controller: when the
/// first session ends (a dead leader's partitions move as soon as its session is over, as
/// KRaft's controller schedules it), and at least every quarter session (at most 1 s).
async fn fence_expired_sessions(service: Arc<Service>) {
    let period_ms = (service.session_timeout_ms / 4).clamp(10, 1000);
    loop {
        let next_expiry = service.deciding.lock().await.sessions.next_expiry();
        let wait_ms = next_expiry.map_or(period_ms, |at| {
            at.saturating_sub(service.now_ms()).clamp(1, period_ms)
        });
        tokio::time::sleep(Duration::from_millis(wait_ms.unsigned_abs())).await;
        if service.raft.metrics().borrow().current_leader != Some(service.id) {
            continue;
        }
        let mut deciding = service.deciding.lock().await;
        if service.raft.ensure_linearizable().await.is_err() {
            continue;
        }
        service.start_term_if_new(&mut deciding);
        service.fence_expired(&mut deciding).await;
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Service {
    fn now_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    fn controller<'a>(&'a self, image: &'a MetadataImage) -> Controller<'a> {
        Controller {
            image,
            config: &self.config,
        }
    }

    /// A new leader gives every unfenced broker a whole session to reach it.
    fn start_term_if_new(&self, deciding: &mut Deciding) {
        let term = self.raft.metrics().borrow().current_term;
        if deciding.term == term {
            return;
        }
        deciding.term = term;
        deciding.sessions = BrokerSessions::new(self.session_timeout_ms);
        let now = self.now_ms();
        for broker in self.image.borrow().brokers() {
            if !broker.registration.fenced {
                deciding.sessions.heard_from(
                    broker.registration.id,
                    broker.registration.epoch,
                    now,
                );
            }
        }
    }

    /// Fences the brokers whose sessions expired. Also run before every decision, so that a
    /// registration, say, is decided on who is really alive: a broker that died before its
    /// peer leaves the ISR first, and the peer stays eligible to lead.
    async fn fence_expired(&self, deciding: &mut Deciding) {
        let now = self.now_ms();
        for (broker, epoch) in deciding.sessions.take_expired(now) {
            let image = self.image.borrow().clone();
            let records = self.controller(&image).fence_broker(broker, epoch);
            if records.is_empty() {
                continue;
            }
            tracing::warn!(broker, epoch, "fencing a broker whose session expired");
            if let Err(error) = self.commit(records, deciding.term).await {
                tracing::warn!(broker, ?error, "could not fence a broker");
                break;
            }
        }
    }

    fn not_controller(&self) -> ControllerResponse {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader.filter(|&leader| leader != self.id);
        let leader_address = leader.and_then(|leader| {
            let membership = metrics.membership_config.membership();
            membership.get_node(&leader).map(|node| node.addr.clone())
        });
        ControllerResponse::NotController {
            leader,
            leader_address,
        }
    }

    fn describe_quorum(&self) -> ControllerResponse {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.id) {
            return self.not_controller();
        }
        let membership = metrics.membership_config.membership();
        let voters = membership
            .nodes()
            .map(|(&id, node)| VoterStatus {
                id,
                address: match &self.address {
                    Some(address) if id == self.id => address.clone(),
                    _ => node.addr.clone(),
                },
                matched_offset: if id == self.id {
                    metrics.last_log_index
                } else {
                    metrics
                        .replication
                        .as_ref()
                        .and_then(|replication| replication.get(&id).copied().flatten())
                        .map(|log_id| log_id.index)
                },
            })
            .collect();
        ControllerResponse::Quorum(QuorumStatus {
            leader: self.id,
            term: metrics.current_term,
            applied_offset: metrics.last_applied.map_or(0, |log_id| log_id.index),
            voters,
            brokers: self.image.borrow().brokers().cloned().collect(),
        })
    }

    /// Commits one decision's records as one entry, decided in Raft term `term`; its offset
    /// once applied here. Refused if it is too large to be an entry; answered "not the
    /// controller" (the client retries) if this node lost the leadership, if the write does
    /// not finish in time, or if the entry landed in a later term than it was decided in
    /// (every voter skips it then: it may rest on an image that missed another leader's
    /// writes).
    async fn commit(
        &self,
        records: Vec<MetadataRecord>,
        term: u64,
    ) -> Result<u64, ControllerResponse> {
        let batch = MetadataBatch { term, records };
        let size = serde_json::to_vec(&batch).map_or(usize::MAX, |bytes| bytes.len());
        if size > BATCH_BYTES_MAX {
            return Err(refused(ControllerError::new(
                ResponseError::PolicyViolation,
                format!("The change would write {size} bytes of metadata at once; the limit is {BATCH_BYTES_MAX}."),
            )));
        }
        match tokio::time::timeout(COMMIT_TIMEOUT, self.raft.client_write(batch)).await {
            Ok(Ok(written)) if written.data.applied => Ok(written.log_id.index),
            Ok(Ok(written)) => {
                tracing::warn!(
                    offset = written.log_id.index,
                    "a decision was skipped when applied"
                );
                Err(self.not_controller())
            }
            Ok(Err(error)) => {
                tracing::info!(%error, "metadata write failed");
                Err(self.not_controller())
            }
            Err(_) => {
                tracing::warn!(?COMMIT_TIMEOUT, "metadata write timed out");
                Err(self.not_controller())
            }
        }
    }

    async fn handle(&self, request: ControllerRequest) -> ControllerResponse {
        match request {
            ControllerRequest::FetchImage { after, wait_ms } => {
                return self.fetch_image(after, wait_ms).await;
            }
            ControllerRequest::DescribeQuorum => return self.describe_quorum(),
            _ => {}
        }
        let mut deciding = self.deciding.lock().await;
        // Leading, and the image holds everything committed before this request.
        if self.raft.ensure_linearizable().await.is_err() {
            return self.not_controller();
        }
        self.start_term_if_new(&mut deciding);
        self.fence_expired(&mut deciding).await;
        let term = deciding.term;
        let image = self.image.borrow().clone();
        let controller = self.controller(&image);
        let now = self.now_ms();
        let outcome = match request {
            ControllerRequest::Register(registration) => {
                let alive = deciding.sessions.is_alive(registration.id, now);
                match controller.register_broker(&registration, alive) {
                    Ok(records) => match self.commit(records, term).await {
                        Ok(_) => {
                            let epoch = self
                                .image
                                .borrow()
                                .broker(registration.id)
                                .map_or(-1, |broker| broker.registration.epoch);
                            deciding.sessions.heard_from(registration.id, epoch, now);
                            ControllerResponse::Registered {
                                broker_epoch: epoch,
                            }
                        }
                        Err(response) => response,
                    },
                    Err(error) => refused(error),
                }
            }
            ControllerRequest::Heartbeat(heartbeat) => match controller.heartbeat(&heartbeat) {
                Ok((records, answer)) => {
                    deciding
                        .sessions
                        .heard_from(heartbeat.id, heartbeat.broker_epoch, now);
                    match self.commit_if_any(records, &image, term).await {
                        Ok(_) => ControllerResponse::Heartbeat(answer),
                        Err(response) => response,
                    }
                }
                Err(error) => refused(error),
            },
            ControllerRequest::AlterPartition(request) => {
                match controller.alter_partition(&request) {
                    Ok(records) => match self.commit_if_any(records, &image, term).await {
                        Ok(_) => self
                            .image
                            .borrow()
                            .partition(request.topic_id, request.partition)
                            .cloned()
                            .map_or_else(
                                || {
                                    refused(ControllerError::new(
                                        ResponseError::UnknownTopicOrPartition,
                                        "the partition was deleted",
                                    ))
                                },
                                ControllerResponse::Partition,
                            ),
                        Err(response) => response,
                    },
                    Err(error) => refused(error),
                }
            }
            ControllerRequest::CreateTopic {
                topic,
                validate_only,
            } => {
                let id = Uuid::new_v4();
                let start = (Uuid::new_v4().as_u128() % 1_000_003) as usize;
                self.decided(
                    controller.create_topic(&topic, id, start),
                    validate_only,
                    &image,
                    term,
                )
                .await
            }
            ControllerRequest::DeleteTopic { name } => {
                let decided = controller.delete_topic(&name).map(|record| vec![record]);
                self.decided(decided, false, &image, term).await
            }
            ControllerRequest::CreatePartitions {
                name,
                total,
                assignments,
                validate_only,
            } => {
                let start = (Uuid::new_v4().as_u128() % 1_000_003) as usize;
                let decided = controller.create_partitions(&name, total, &assignments, start);
                self.decided(decided, validate_only, &image, term).await
            }
            ControllerRequest::SetConfigs { resource, changes } => {
                self.decided(
                    controller.set_configs(&resource, &changes),
                    false,
                    &image,
                    term,
                )
                .await
            }
            ControllerRequest::AllocateProducerIds {
                broker_id,
                broker_epoch,
            } => match controller.allocate_producer_ids(broker_id, broker_epoch) {
                Ok((record, first, count)) => match self.commit(vec![record], term).await {
                    Ok(_) => ControllerResponse::ProducerIds { first, count },
                    Err(response) => response,
                },
                Err(error) => refused(error),
            },
            ControllerRequest::AdoptTopics {
                broker_id,
                broker_epoch,
                topics,
                next_producer_id,
            } => {
                let decided =
                    controller.adopt_topics(broker_id, broker_epoch, &topics, next_producer_id);
                self.decided(decided, false, &image, term).await
            }
            ControllerRequest::ElectPreferred { topic, partition } => {
                let decided = controller
                    .elect_preferred(&topic, partition)
                    .map(|record| vec![record]);
                self.decided(decided, false, &image, term).await
            }
            ControllerRequest::Reassign {
                topic,
                partition,
                target,
            } => {
                let decided = controller.reassign(&topic, partition, target.as_deref());
                self.decided(decided, false, &image, term).await
            }
            ControllerRequest::ElectUnclean { topic, partition } => {
                let decided = controller.elect_unclean(&topic, partition);
                self.decided(decided, false, &image, term).await
            }
            ControllerRequest::ListReassignments => {
                ControllerResponse::Reassignments(controller.reassignments())
            }
            ControllerRequest::FetchImage { .. } | ControllerRequest::DescribeQuorum => {
                self.not_controller()
            }
        };
        drop(deciding);
        outcome
    }

    async fn commit_if_any(
        &self,
        records: Vec<MetadataRecord>,
        image: &MetadataImage,
        term: u64,
    ) -> Result<u64, ControllerResponse> {
        if records.is_empty() {
            Ok(image.offset())
        } else {
            self.commit(records, term).await
        }
    }

    async fn decided(
        &self,
        decided: Result<Vec<MetadataRecord>, ControllerError>,
        validate_only: bool,
        image: &MetadataImage,
        term: u64,
    ) -> ControllerResponse {
        match decided {
            Err(error) => refused(error),
            Ok(_) if validate_only => ControllerResponse::Committed {
                offset: image.offset(),
            },
            Ok(records) => match self.commit_if_any(records, image, term).await {
                Ok(offset) => ControllerResponse::Committed { offset },
                Err(response) => response,
            },
        }
    }

    async fn fetch_image(&self, after: u64, wait_ms: u64) -> ControllerResponse {
        let mut image = self.image.clone();
        let wait = Duration::from_millis(wait_ms.min(60_000));
        let passed =
            tokio::time::timeout(wait, image.wait_for(|image| image.offset() > after)).await;
        match passed {
            Ok(Ok(image)) => ControllerResponse::Image(Some(Box::new((**image).clone()))),
            _ => ControllerResponse::Image(None),
        }
    }
}
