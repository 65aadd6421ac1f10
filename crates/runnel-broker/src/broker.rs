//! The broker's shared state and request dispatch: one `Broker` per process, shared by every
//! connection. Handlers live in `handlers/`, one module per group of APIs.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::{RequestKind, ResponseKind};
use runnel_protocol::{Request, RequestBody};
use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::groups::{ClientInfo, GroupService};
use crate::handlers;
use crate::topics::TopicRegistry;

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
    pub(crate) topics: TopicRegistry,
    pub(crate) groups: GroupService,
    pub(crate) cluster_id: String,
    pub(crate) advertised_host: String,
    pub(crate) advertised_port: i32,
    /// Flips to true once; long-polling fetches and connections watch it.
    pub(crate) shutdown: watch::Sender<bool>,
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
    /// Opens the data directory, recovering every partition log.
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>, StartupError> {
        config.validate()?;
        let (advertised_host, advertised_port) =
            split_host_port(config.advertised()).ok_or_else(|| {
                crate::config::ConfigError::Invalid(format!(
                    "advertised listener '{}' is not HOST:PORT",
                    config.advertised()
                ))
            })?;
        std::fs::create_dir_all(&config.data_dir).map_err(|error| StartupError::DataDir {
            dir: config.data_dir.display().to_string(),
            reason: error.to_string(),
        })?;
        let cluster_id = load_or_create_identity(&config.data_dir, config.node_id)?;
        let topics = TopicRegistry::open(&config.data_dir, config.topic_defaults(), now_ms())?;
        let groups = GroupService::open(&topics, &config)?;
        let (shutdown, _) = watch::channel(false);
        Ok(Arc::new(Broker {
            config,
            topics,
            groups,
            cluster_id,
            advertised_host,
            advertised_port,
            shutdown,
        }))
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Tells connections and background tasks to stop.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Flushes and closes every partition log. Call after connections have stopped.
    pub fn close(&self) {
        self.topics.close_all();
    }

    /// Serves one parsed request.
    pub(crate) async fn handle(&self, request: Request, peer: std::net::IpAddr) -> Reply {
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
        let response = match body {
            RequestKind::ApiVersions(req) => {
                ResponseKind::ApiVersions(handlers::cluster::api_versions(version, req))
            }
            RequestKind::Metadata(req) => {
                ResponseKind::Metadata(handlers::cluster::metadata(self, version, req))
            }
            RequestKind::DescribeCluster(req) => ResponseKind::DescribeCluster(
                handlers::cluster::describe_cluster(self, version, req),
            ),
            RequestKind::Produce(req) => match handlers::produce::produce(self, version, req).await
            {
                Some(response) => ResponseKind::Produce(response),
                None => return Reply::None,
            },
            RequestKind::Fetch(req) => {
                ResponseKind::Fetch(handlers::fetch::fetch(self, version, req).await)
            }
            RequestKind::ListOffsets(req) => {
                ResponseKind::ListOffsets(handlers::offsets::list_offsets(self, version, req))
            }
            RequestKind::OffsetForLeaderEpoch(req) => ResponseKind::OffsetForLeaderEpoch(
                handlers::offsets::offset_for_leader_epoch(self, req),
            ),
            RequestKind::DeleteRecords(req) => {
                ResponseKind::DeleteRecords(handlers::offsets::delete_records(self, req))
            }
            RequestKind::CreateTopics(req) => {
                ResponseKind::CreateTopics(handlers::topics::create_topics(self, version, req))
            }
            RequestKind::DeleteTopics(req) => {
                ResponseKind::DeleteTopics(handlers::topics::delete_topics(self, version, req))
            }
            RequestKind::CreatePartitions(req) => {
                ResponseKind::CreatePartitions(handlers::topics::create_partitions(self, req))
            }
            RequestKind::DescribeConfigs(req) => ResponseKind::DescribeConfigs(
                handlers::configs::describe_configs(self, version, req),
            ),
            RequestKind::AlterConfigs(req) => {
                ResponseKind::AlterConfigs(handlers::configs::alter_configs(self, req))
            }
            RequestKind::IncrementalAlterConfigs(req) => ResponseKind::IncrementalAlterConfigs(
                handlers::configs::incremental_alter_configs(self, req),
            ),
            RequestKind::DescribeLogDirs(req) => ResponseKind::DescribeLogDirs(
                handlers::log_dirs::describe_log_dirs(self, version, req),
            ),
            RequestKind::FindCoordinator(req) => ResponseKind::FindCoordinator(
                handlers::groups::find_coordinator(self, version, req),
            ),
            RequestKind::JoinGroup(req) => {
                ResponseKind::JoinGroup(self.groups.join_group(version, &client, req).await)
            }
            RequestKind::SyncGroup(req) => {
                ResponseKind::SyncGroup(self.groups.sync_group(version, req).await)
            }
            RequestKind::Heartbeat(req) => {
                ResponseKind::Heartbeat(self.groups.heartbeat(version, req))
            }
            RequestKind::LeaveGroup(req) => {
                ResponseKind::LeaveGroup(self.groups.leave_group(version, req))
            }
            RequestKind::OffsetCommit(req) => {
                ResponseKind::OffsetCommit(self.groups.offset_commit(version, req))
            }
            RequestKind::OffsetFetch(req) => {
                ResponseKind::OffsetFetch(self.groups.offset_fetch(version, req))
            }
            RequestKind::OffsetDelete(req) => {
                ResponseKind::OffsetDelete(self.groups.offset_delete(req))
            }
            RequestKind::ListGroups(req) => {
                ResponseKind::ListGroups(self.groups.list_groups(version, req))
            }
            RequestKind::DescribeGroups(req) => {
                ResponseKind::DescribeGroups(self.groups.describe_groups(version, req))
            }
            RequestKind::DeleteGroups(req) => {
                ResponseKind::DeleteGroups(self.groups.delete_groups(version, req))
            }
            RequestKind::ConsumerGroupHeartbeat(req) => ResponseKind::ConsumerGroupHeartbeat(
                self.groups
                    .consumer_group_heartbeat(&self.topics, &client, version, req),
            ),
            RequestKind::ConsumerGroupDescribe(req) => ResponseKind::ConsumerGroupDescribe(
                self.groups
                    .consumer_group_describe(&self.topics, version, req),
            ),
            _ => {
                // parse_request admits only the APIs in the version table, all handled above.
                tracing::error!(api_key = ?request.api_key, "request passed the version table but has no handler");
                return Reply::Close;
            }
        };
        Reply::Response(Box::new(response))
    }
}

/// Milliseconds since the Unix epoch: the clock record timestamps use.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

fn split_host_port(address: &str) -> Option<(String, i32)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    Some((
        host.trim_matches(|c| c == '[' || c == ']').to_string(),
        i32::from(port),
    ))
}

/// Reads `meta.properties` (cluster id and node id), writing it on first start. A data
/// directory from another node is refused, as Kafka does.
fn load_or_create_identity(data_dir: &Path, node_id: i32) -> Result<String, StartupError> {
    let path = data_dir.join("meta.properties");
    let fail = |reason: String| StartupError::DataDir {
        dir: data_dir.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
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
            value("cluster.id").ok_or_else(|| fail("meta.properties has no cluster.id".into()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let cluster_id = new_cluster_id();
            let text = format!("version=1\ncluster.id={cluster_id}\nnode.id={node_id}\n");
            std::fs::write(&path, text).map_err(|error| fail(error.to_string()))?;
            Ok(cluster_id)
        }
        Err(error) => Err(fail(error.to_string())),
    }
}

/// A 22-character URL-safe base64 UUID, the form Kafka's cluster ids take.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = uuid::Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}
