//! The broker's shared state and request dispatch: one `Broker` per process, shared by every
//! connection. Handlers live in `handlers/`, one module per group of APIs.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{RequestKind, ResponseKind};
use runnel_protocol::{Request, RequestBody};
use runnel_storage::fs::{create_dir_durably, read_optional, write_atomically};
use runnel_storage::{Clock, FileSystem, OsFileSystem, SystemClock};
use tokio::sync::watch;

use crate::cluster::ClusterMember;
use crate::config::BrokerConfig;
use crate::error::ApiError;
use crate::fetch_sessions::FetchSessions;
use crate::groups::{ClientInfo, GroupService};
use crate::handlers;
use crate::io_pool::IoPool;
use crate::metrics::BrokerMetrics;
use crate::pipeline::Turn;
use crate::producer_ids::ProducerIds;
use crate::topics::TopicRegistry;
use crate::transactions::TransactionService;

/// Why the broker cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot open the data directory: {0}")]
    Storage(#[from] runnel_storage::StorageError),
    #[error("data directory {dir}: {reason}")]
    DataDir { dir: String, reason: String },
}

/// State shared by all connections.
#[derive(Debug)]
pub struct Broker {
    pub(crate) config: BrokerConfig,
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Every blocking operation runs here, never on an async worker.
    pub(crate) io: IoPool,
    pub(crate) topics: TopicRegistry,
    pub(crate) fetch_sessions: FetchSessions,
    pub(crate) groups: GroupService,
    pub(crate) producer_ids: ProducerIds,
    pub(crate) transactions: TransactionService,
    pub(crate) cluster_id: String,
    pub(crate) advertised_host: String,
    pub(crate) advertised_port: i32,
    /// Flips to true once; long-polling fetches and connections watch it.
    pub(crate) shutdown: watch::Sender<bool>,
    /// This broker's membership of its cluster; set once it has one, before clients come in.
    pub(crate) cluster: OnceLock<Arc<ClusterMember>>,
    /// What operators see at the admin listener's `/metrics`.
    pub(crate) metrics: Arc<BrokerMetrics>,
}

/// What a handler gives back.
pub(crate) enum Reply {
    Response(Box<ResponseKind>),
    /// Produce v0-2, encoded by hand.
    Raw(bytes::Bytes),
    /// acks=0: the client expects nothing.
    None,
    /// Nothing sensible can be answered; drop the connection.
    Close,
}

impl Broker {
    /// Opens the data directory on the real disk, recovering every partition log. Blocks.
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>, StartupError> {
        Self::open_with(config, Arc::new(OsFileSystem), Arc::new(SystemClock))
    }

    /// Opens the data directory on `fs`, with `clock` for time: the simulation's entry point.
    /// A partition that cannot be recovered is kept offline; the others serve. Blocks.
    pub fn open_with(
        config: BrokerConfig,
        fs: Arc<dyn FileSystem>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Broker>, StartupError> {
        config.validate()?;
        if config.controller_quorum.is_none() {
            // `runnel server` names a quorum of its own when given none (`as_one_node_cluster`).
            return Err(crate::config::ConfigError::Invalid(
                "a broker belongs to a controller quorum: controller-quorum is not set".into(),
            )
            .into());
        }
        let (advertised_host, advertised_port) =
            split_host_port(config.advertised()).ok_or_else(|| {
                crate::config::ConfigError::Invalid(format!(
                    "advertised listener '{}' is not HOST:PORT",
                    config.advertised()
                ))
            })?;
        create_dir_durably(&*fs, &config.data_dir).map_err(|error| StartupError::DataDir {
            dir: config.data_dir.display().to_string(),
            reason: error.to_string(),
        })?;
        let cluster_id = load_or_create_identity(
            &*fs,
            &config.data_dir,
            config.node_id,
            shared_quorum(config.controller_quorum.as_deref(), config.node_id),
        )?;
        let producer_ids = ProducerIds::default();
        let topics = TopicRegistry::open(Arc::clone(&fs), &config, clock.now_ms())?;
        let groups = GroupService::open(&config, Arc::clone(&clock));
        let transactions = TransactionService::open(&config, Arc::clone(&clock));
        let io =
            IoPool::new(config.num_io_threads, config.queued_max_requests).map_err(|error| {
                StartupError::DataDir {
                    dir: config.data_dir.display().to_string(),
                    reason: format!("cannot start the I/O threads: {error}"),
                }
            })?;
        let (shutdown, _) = watch::channel(false);
        let fetch_sessions = FetchSessions::new(
            config.max_incremental_fetch_session_cache_slots,
            config.partitions_max,
        );
        let metrics = Arc::clone(&topics.schedule().metrics);
        Ok(Arc::new(Broker {
            metrics,
            config,
            fs,
            clock,
            io,
            fetch_sessions,
            topics,
            groups,
            producer_ids,
            transactions,
            cluster_id,
            advertised_host,
            advertised_port,
            shutdown,
            cluster: OnceLock::new(),
        }))
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The quorum this broker's topics belong to (see [`crate::cluster::quorum_name`]).
    pub(crate) fn quorum_name(&self) -> String {
        let shared = shared_quorum(
            self.config.controller_quorum.as_deref(),
            self.config.node_id,
        );
        crate::cluster::quorum_name(shared, self.config.node_id)
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Tells connections and background tasks to stop, and answers every parked JoinGroup
    /// and SyncGroup (long-polling fetches return by themselves).
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        self.groups.shutdown();
    }

    /// This broker's membership of its cluster, once it has one.
    pub(crate) fn cluster(&self) -> Option<&Arc<ClusterMember>> {
        self.cluster.get()
    }

    /// [`Self::cluster`], or the error for a request that needs the cluster before this
    /// broker is a member (the binary lets no client in until then; in-process tests may ask).
    pub(crate) fn member(&self) -> Result<&Arc<ClusterMember>, ApiError> {
        self.cluster().ok_or_else(|| {
            ApiError::new(
                ResponseError::BrokerNotAvailable,
                "this broker has not joined its cluster yet",
            )
        })
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Runs `future` to completion from one of the runtime's blocking threads
    /// ([`Self::blocking_until_replicated`]): a coordinator's write waiting for its in-sync
    /// replicas, or sending markers to other brokers. Never from an async task, which would
    /// block a worker of the runtime the future needs, nor from the I/O pool, whose threads
    /// answer the follower fetches such waits depend on. Blocks.
    pub(crate) fn block_on<F: std::future::Future>(
        &self,
        future: F,
    ) -> Result<F::Output, ApiError> {
        debug_assert!(
            !crate::io_pool::on_pool_thread(),
            "a wait for the in-sync replicas on the I/O pool starves the follower fetches it waits for"
        );
        let runtime = tokio::runtime::Handle::try_current().map_err(|error| {
            ApiError::new(
                ResponseError::UnknownServerError,
                format!("a coordinator's write waited off the runtime: {error}"),
            )
        })?;
        Ok(runtime.block_on(future))
    }

    /// Runs a blocking handler on the I/O pool.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        handler: impl FnOnce(&Broker) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let broker = Arc::clone(self);
        Ok(self.io.run(move || handler(&broker)).await?)
    }

    /// Runs a blocking handler that may wait, while it blocks, for a partition's in-sync
    /// replicas (a coordinator's write), or for the transaction coordinator while it loads a
    /// partition: on the runtime's blocking threads, never on the I/O pool, whose threads
    /// answer the follower fetches that the wait depends on. A full pool of such waits would
    /// otherwise stall every partition here.
    pub(crate) async fn blocking_until_replicated<T: Send + 'static>(
        self: &Arc<Self>,
        handler: impl FnOnce(&Broker) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let broker = Arc::clone(self);
        tokio::task::spawn_blocking(move || handler(&broker))
            .await
            .map_err(|error| ApiError::new(ResponseError::UnknownServerError, error.to_string()))
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Flushes and closes every partition log, then, if every one was online and closed
    /// cleanly, leaves the mark that tells the next start its logs hold everything this
    /// life reported ([`crate::cluster::CLEAN_SHUTDOWN_FILE`]). Call after connections have
    /// stopped. Blocks.
    pub fn close(&self) {
        if !self.topics.close_all() {
            return;
        }
        let mark = crate::cluster::CLEAN_SHUTDOWN_FILE;
        if let Err(error) = write_atomically(&*self.fs, &self.config.data_dir, mark, b"") {
            tracing::warn!(%error, "cannot mark the shutdown clean; the next start counts as after a crash");
        }
    }

    /// Serves one parsed request. Whatever touches the disk runs on the I/O pool. `turn` is
    /// the request's place in its connection's order (see `pipeline`): a Produce appends in
    /// its turn; every other request waits for the turns before it, then starts.
    pub(crate) async fn handle(
        self: &Arc<Self>,
        request: Request,
        request_bytes: usize,
        peer: std::net::IpAddr,
        turn: Turn,
    ) -> Reply {
        let version = request.api_version();
        let client = ClientInfo {
            client_id: request
                .header
                .client_id
                .as_deref()
                .unwrap_or_default()
                .to_string(),
            host: format!("/{peer}"),
        };
        let body = match request.body {
            RequestBody::LegacyProduce(legacy) => {
                return if legacy.acks == 0 {
                    Reply::None
                } else {
                    Reply::Raw(legacy.encode_unsupported_response(version))
                };
            }
            RequestBody::Kafka(body) => *body,
        };
        let body = match body {
            RequestKind::Produce(req) => {
                // A task of its own: once started, a Produce appends and syncs to the end
                // even if its connection goes away meanwhile, as in Kafka; records appended
                // but never synced would otherwise wait for the next flush to become visible.
                let broker = Arc::clone(self);
                let produce = tokio::spawn(async move {
                    handlers::produce::produce(&broker, version, req, request_bytes, turn).await
                });
                return match produce.await {
                    Ok(Some(response)) => {
                        Reply::Response(Box::new(ResponseKind::Produce(response)))
                    }
                    Ok(None) => Reply::None,
                    Err(error) => unanswerable(ApiError::new(
                        kafka_protocol::error::ResponseError::UnknownServerError,
                        format!("produce task failed: {error}"),
                    )),
                };
            }
            other => {
                turn.pass().await;
                other
            }
        };
        // Handlers that touch the disk, or locks that disk work holds, run on the I/O pool.
        let response = match body {
            RequestKind::ApiVersions(req) => Ok(ResponseKind::ApiVersions(
                handlers::cluster::api_versions(version, req),
            )),
            // Metadata may create topics (auto.create.topics.enable).
            RequestKind::Metadata(req) => Ok(ResponseKind::Metadata(
                handlers::cluster::metadata(self, version, req).await,
            )),
            RequestKind::DescribeCluster(req) => Ok(ResponseKind::DescribeCluster(
                handlers::cluster::describe_cluster(self, version, req),
            )),
            RequestKind::Fetch(req) => Ok(ResponseKind::Fetch(
                match handlers::replica_fetch::replica_of(version, &req) {
                    Some(replica) => {
                        handlers::replica_fetch::replica_fetch(self, version, req, replica).await
                    }
                    None => handlers::fetch::fetch(self, version, req).await,
                },
            )),
            RequestKind::ListOffsets(req) => self
                .blocking(move |broker| handlers::offsets::list_offsets(broker, version, req))
                .await
                .map(ResponseKind::ListOffsets),
            RequestKind::OffsetForLeaderEpoch(req) => self
                .blocking(move |broker| handlers::offsets::offset_for_leader_epoch(broker, req))
                .await
                .map(ResponseKind::OffsetForLeaderEpoch),
            RequestKind::DeleteRecords(req) => self
                .blocking(move |broker| handlers::offsets::delete_records(broker, req))
                .await
                .map(ResponseKind::DeleteRecords),
            RequestKind::CreateTopics(req) => Ok(ResponseKind::CreateTopics(
                handlers::topics::create_topics(self, version, req).await,
            )),
            RequestKind::DeleteTopics(req) => Ok(ResponseKind::DeleteTopics(
                handlers::topics::delete_topics(self, version, req).await,
            )),
            RequestKind::CreatePartitions(req) => Ok(ResponseKind::CreatePartitions(
                handlers::topics::create_partitions(self, req).await,
            )),
            RequestKind::DescribeConfigs(req) => Ok(ResponseKind::DescribeConfigs(
                handlers::configs::describe_configs(self, version, req),
            )),
            RequestKind::AlterConfigs(req) => Ok(ResponseKind::AlterConfigs(
                handlers::configs::alter_configs(self, req).await,
            )),
            RequestKind::IncrementalAlterConfigs(req) => Ok(ResponseKind::IncrementalAlterConfigs(
                handlers::configs::incremental_alter_configs(self, req).await,
            )),
            RequestKind::ElectLeaders(req) => Ok(ResponseKind::ElectLeaders(
                handlers::reassignments::elect_leaders(self, version, req).await,
            )),
            RequestKind::AlterPartitionReassignments(req) => {
                Ok(ResponseKind::AlterPartitionReassignments(
                    handlers::reassignments::alter_partition_reassignments(self, version, req)
                        .await,
                ))
            }
            RequestKind::ListPartitionReassignments(req) => {
                Ok(ResponseKind::ListPartitionReassignments(
                    handlers::reassignments::list_partition_reassignments(self, req),
                ))
            }
            RequestKind::DescribeLogDirs(req) => self
                .blocking(move |broker| handlers::log_dirs::describe_log_dirs(broker, version, req))
                .await
                .map(ResponseKind::DescribeLogDirs),
            RequestKind::FindCoordinator(req) => Ok(ResponseKind::FindCoordinator(
                handlers::groups::find_coordinator(self, version, req).await,
            )),
            RequestKind::JoinGroup(req) => self
                .groups
                .join_group(self, version, client, req)
                .await
                .map(ResponseKind::JoinGroup),
            RequestKind::SyncGroup(req) => self
                .groups
                .sync_group(self, version, req)
                .await
                .map(ResponseKind::SyncGroup),
            RequestKind::Heartbeat(req) => self
                .blocking(move |broker| broker.groups.heartbeat(version, req))
                .await
                .map(ResponseKind::Heartbeat),
            RequestKind::LeaveGroup(req) => self
                .blocking(move |broker| broker.groups.leave_group(version, req))
                .await
                .map(ResponseKind::LeaveGroup),
            RequestKind::OffsetCommit(req) => self
                .groups
                .offset_commit(self, version, req)
                .await
                .map(ResponseKind::OffsetCommit),
            RequestKind::OffsetFetch(req) => self
                .blocking(move |broker| broker.groups.offset_fetch(version, req))
                .await
                .map(ResponseKind::OffsetFetch),
            RequestKind::OffsetDelete(req) => self
                .blocking(move |broker| broker.groups.offset_delete(req))
                .await
                .map(ResponseKind::OffsetDelete),
            RequestKind::ListGroups(req) => self
                .blocking(move |broker| broker.groups.list_groups(version, req))
                .await
                .map(ResponseKind::ListGroups),
            RequestKind::DescribeGroups(req) => self
                .blocking(move |broker| broker.groups.describe_groups(version, req))
                .await
                .map(ResponseKind::DescribeGroups),
            RequestKind::DeleteGroups(req) => self
                .blocking(move |broker| broker.groups.delete_groups(version, req))
                .await
                .map(ResponseKind::DeleteGroups),
            RequestKind::ConsumerGroupHeartbeat(req) => self
                .blocking(move |broker| {
                    broker
                        .groups
                        .consumer_group_heartbeat(&broker.topics, &client, version, req)
                })
                .await
                .map(ResponseKind::ConsumerGroupHeartbeat),
            RequestKind::ConsumerGroupDescribe(req) => self
                .blocking(move |broker| {
                    broker
                        .groups
                        .consumer_group_describe(&broker.topics, version, req)
                })
                .await
                .map(ResponseKind::ConsumerGroupDescribe),
            RequestKind::InitProducerId(req) => self
                .blocking_until_replicated(move |broker| {
                    handlers::producers::init_producer_id(broker, version, req)
                })
                .await
                .map(ResponseKind::InitProducerId),
            RequestKind::DescribeProducers(req) => self
                .blocking(move |broker| handlers::producers::describe_producers(broker, req))
                .await
                .map(ResponseKind::DescribeProducers),
            RequestKind::AddPartitionsToTxn(req) => self
                .blocking_until_replicated(move |broker| {
                    broker.transactions.add_partitions(broker, version, req)
                })
                .await
                .map(ResponseKind::AddPartitionsToTxn),
            RequestKind::AddOffsetsToTxn(req) => {
                handlers::groups::ensure_offsets_topic(self).await;
                self.blocking_until_replicated(move |broker| {
                    broker.transactions.add_offsets(broker, req)
                })
                .await
                .map(ResponseKind::AddOffsetsToTxn)
            }
            RequestKind::EndTxn(req) => self
                .blocking_until_replicated(move |broker| broker.transactions.end_txn(broker, req))
                .await
                .map(ResponseKind::EndTxn),
            RequestKind::TxnOffsetCommit(req) => self
                .blocking_until_replicated(move |broker| {
                    broker.groups.txn_offset_commit(broker, version, req)
                })
                .await
                .map(ResponseKind::TxnOffsetCommit),
            RequestKind::WriteTxnMarkers(req) => Ok(ResponseKind::WriteTxnMarkers(
                handlers::txn_markers::write_txn_markers(self, req).await,
            )),
            RequestKind::DescribeTransactions(req) => self
                .blocking_until_replicated(move |broker| broker.transactions.describe(req))
                .await
                .map(ResponseKind::DescribeTransactions),
            RequestKind::ListTransactions(req) => self
                .blocking_until_replicated(move |broker| broker.transactions.list(req))
                .await
                .map(ResponseKind::ListTransactions),
            _ => {
                // parse_request admits only the APIs in the version table, all handled above.
                tracing::error!(api_key = ?request.api_key, "request passed the version table but has no handler");
                return Reply::Close;
            }
        };
        match response {
            Ok(response) => Reply::Response(Box::new(response)),
            Err(error) => unanswerable(error),
        }
    }
}

/// A request whose handler could not run (the broker is stopping, or a bug panicked): the
/// connection is closed, which every client treats as a retriable network error.
fn unanswerable(error: ApiError) -> Reply {
    tracing::warn!(error = ?error.message, "closing a connection: its request could not be served");
    Reply::Close
}

fn split_host_port(address: &str) -> Option<(String, i32)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    Some((
        host.trim_matches(|c| c == '[' || c == ']').to_string(),
        i32::from(port),
    ))
}

/// Reads `meta.properties` (cluster id and node id), writing it atomically on first start. A
/// data directory from another node is refused, as Kafka does. The nodes of a cluster derive
/// their cluster id from the controller quorum they name, so they agree on it without a
/// formatting step.
fn load_or_create_identity(
    fs: &dyn FileSystem,
    data_dir: &Path,
    node_id: i32,
    controller_quorum: Option<&str>,
) -> Result<String, StartupError> {
    let path = data_dir.join("meta.properties");
    let fail = |reason: String| StartupError::DataDir {
        dir: data_dir.display().to_string(),
        reason,
    };
    match read_optional(fs, &path).map_err(|error| fail(error.to_string()))? {
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let value = |key: &str| {
                text.lines()
                    .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                    .map(str::trim)
                    .map(str::to_string)
            };
            let stored_node = value("node.id").and_then(|v| v.parse::<i32>().ok());
            if stored_node != Some(node_id) {
                return Err(fail(format!(
                    "meta.properties belongs to node {stored_node:?}, not node {node_id}"
                )));
            }
            let stored = value("cluster.id")
                .ok_or_else(|| fail("meta.properties has no cluster.id".into()))?;
            // A node joining another quorum takes the cluster's id with its topics.
            let quorum = crate::cluster::quorum_name(controller_quorum, node_id);
            let joining = controller_quorum.is_some()
                && !crate::cluster::adopted_by(fs, data_dir, &quorum)
                    .map_err(|error| fail(error.to_string()))?;
            if joining && stored != new_cluster_id(controller_quorum) {
                return write_identity(fs, data_dir, node_id, controller_quorum);
            }
            Ok(stored)
        }
        None => write_identity(fs, data_dir, node_id, controller_quorum),
    }
}

/// The quorum this node shares with other voters, if it does: a quorum of this node alone (a
/// one-node cluster) has nobody to agree on a cluster id with, so it keeps a random one.
pub(crate) fn shared_quorum(controller_quorum: Option<&str>, node_id: i32) -> Option<&str> {
    let this = node_id.to_string();
    controller_quorum.filter(|quorum| {
        quorum
            .split(',')
            .filter_map(|voter| voter.split_once('@'))
            .any(|(id, _)| id.trim() != this)
    })
}

/// Writes `meta.properties` for this node; returns its cluster id.
fn write_identity(
    fs: &dyn FileSystem,
    data_dir: &Path,
    node_id: i32,
    controller_quorum: Option<&str>,
) -> Result<String, StartupError> {
    let cluster_id = new_cluster_id(controller_quorum);
    let text = format!("version=1\ncluster.id={cluster_id}\nnode.id={node_id}\n");
    write_atomically(fs, data_dir, "meta.properties", text.as_bytes()).map_err(|error| {
        StartupError::DataDir {
            dir: data_dir.display().to_string(),
            reason: format!("cannot write meta.properties: {error}"),
        }
    })?;
    Ok(cluster_id)
}

/// A 22-character URL-safe base64 UUID, the form Kafka's cluster ids take: random for a
/// single node, named after the sorted voters of a cluster's quorum.
fn new_cluster_id(controller_quorum: Option<&str>) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let id = match controller_quorum {
        Some(quorum) => {
            let mut voters: Vec<&str> = quorum.split(',').map(str::trim).collect();
            voters.sort_unstable();
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, voters.join(",").as_bytes())
        }
        None => uuid::Uuid::new_v4(),
    };
    let bits = id.as_u128();
    (0..22)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}
