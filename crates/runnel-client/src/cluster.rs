//! The client's view of a cluster: bootstrap, brokers and topic metadata (cached, refreshed when
//! stale or invalidated), one [`Connection`] per broker opened on first use and reopened with
//! backoff after it breaks, and group coordinators.
//!
//! [`Cluster`] is shared by the producer, the consumer and the admin client of one application;
//! cloning it is cheap. It routes but does not retry: callers decide what an error means for
//! them, and call [`Cluster::invalidate`] or [`Cluster::invalidate_coordinator`] when the broker
//! says the metadata they used is stale.

use crate::wire::topic_name;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    metadata_request, FindCoordinatorRequest, MetadataRequest, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::connection::{ClientConfig, Connection};
use crate::error::{ClientError, Result};

/// FindCoordinator's key type for consumer groups.
const COORDINATOR_KEY_TYPE_GROUP: i8 = 0;
const COORDINATOR_KEY_TYPE_TRANSACTION: i8 = 1;
/// The first Metadata version where a null topic list means "all topics".
const METADATA_VERSION_MIN: i16 = 1;

/// A topic as Metadata describes it.
///
/// ```
/// use runnel_client::{PartitionMetadata, TopicMetadata};
///
/// let partition = |partition, leader| PartitionMetadata {
///     partition,
///     leader,
///     leader_epoch: 0,
///     replicas: vec![1, 2, 3],
///     isr: vec![1, 2, 3],
///     error: None,
/// };
/// let topic = TopicMetadata {
///     name: "orders".into(),
///     id: uuid::Uuid::nil(),
///     is_internal: false,
///     partitions: vec![partition(0, 1), partition(1, 2)],
///     error: None,
/// };
/// assert_eq!(topic.partition(1).map(|p| p.leader), Some(2));
/// assert!(topic.partition(2).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// The topic's name.
    pub name: String,
    /// The topic id (KIP-516); nil from brokers older than Metadata v10.
    pub id: uuid::Uuid,
    /// Whether it is one of the cluster's own topics, such as `__consumer_offsets`.
    pub is_internal: bool,
    /// By partition index, ascending.
    pub partitions: Vec<PartitionMetadata>,
    /// The topic-level error the broker reported (an unknown topic, a leader election in
    /// progress); `None` for a usable topic. [`Cluster::topic`] never returns one with an error.
    pub error: Option<ResponseError>,
}

impl TopicMetadata {
    /// The partition with index `partition`.
    pub fn partition(&self, partition: i32) -> Option<&PartitionMetadata> {
        self.partitions.iter().find(|p| p.partition == partition)
    }
}

/// One partition of a topic.
///
/// ```
/// use kafka_protocol::error::ResponseError;
/// use runnel_client::PartitionMetadata;
///
/// // What a broker reports while a partition has no leader.
/// let partition = PartitionMetadata {
///     partition: 4,
///     leader: -1,
///     leader_epoch: 7,
///     replicas: vec![1, 2, 3],
///     isr: vec![],
///     error: Some(ResponseError::LeaderNotAvailable),
/// };
/// assert!(partition.leader < 0 && partition.isr.len() < partition.replicas.len());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// The partition index, from 0.
    pub partition: i32,
    /// The leader's node id; -1 when there is none.
    pub leader: i32,
    /// -1 from brokers older than Metadata v7.
    pub leader_epoch: i32,
    /// The node ids of every replica, the preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// What the broker reported for this partition (e.g. LEADER_NOT_AVAILABLE).
    pub error: Option<ResponseError>,
}

/// A broker as Metadata names it.
///
/// ```no_run
/// # async fn example(cluster: runnel_client::Cluster) {
/// for broker in cluster.brokers().await {
///     let rack = broker.rack.as_deref().unwrap_or("no rack");
///     println!("node {} at {} ({rack})", broker.node_id, broker.address());
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// The broker's `node.id`.
    pub node_id: i32,
    /// The host it advertises to clients.
    pub host: String,
    /// The port it advertises to clients.
    pub port: i32,
    /// Its `broker.rack`, if set.
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `HOST:PORT`, with IPv6 literals bracketed.
    ///
    /// ```
    /// use runnel_client::BrokerInfo;
    ///
    /// let broker = BrokerInfo { node_id: 1, host: "::1".into(), port: 9092, rack: None };
    /// assert_eq!(broker.address(), "[::1]:9092");
    /// ```
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A cluster's metadata and connections, shared by every client of an application.
///
/// ```no_run
/// # async fn example() -> runnel_client::Result<()> {
/// use kafka_protocol::messages::{ApiKey, ListOffsetsRequest};
/// use runnel_client::{ClientConfig, Cluster};
///
/// let cluster = Cluster::connect(ClientConfig::new("localhost:9092")).await?;
/// let orders = cluster.topic("orders").await?;
/// println!("{} has {} partitions", orders.name, orders.partitions.len());
/// let (leader, connection) = cluster.leader_connection("orders", 0).await?;
/// let version = connection.version_for(ApiKey::ListOffsets);
/// println!("partition 0 is led by broker {leader}, ListOffsets {version:?}");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let metadata = self.inner.metadata();
        f.debug_struct("Cluster")
            .field("bootstrap", &self.inner.config.bootstrap)
            .field("cluster_id", &metadata.cluster_id)
            .field("brokers", &metadata.brokers.len())
            .field("topics", &metadata.topics.len())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: ClientConfig,
    metadata: Mutex<MetadataCache>,
    /// One slot per broker node id and role, holding its connection and reconnect backoff.
    nodes: Mutex<HashMap<(i32, Role), Arc<NodeSlot>>>,
    /// A connection to a bootstrap address, used until (and whenever) no broker connection is
    /// open.
    bootstrap: tokio::sync::Mutex<Option<Arc<Connection>>>,
    /// Coordinator node ids by (key type, key): groups and transactional ids are distinct namespaces.
    coordinators: Mutex<HashMap<(i8, String), i32>>,
}

#[derive(Default)]
struct MetadataCache {
    brokers: BTreeMap<i32, BrokerInfo>,
    topics: HashMap<String, (Arc<TopicMetadata>, Instant)>,
    /// Metadata invalidated and not yet fetched again: used while no broker answers.
    stale: HashMap<String, Arc<TopicMetadata>>,
    cluster_id: Option<String>,
    controller_id: Option<i32>,
    /// The newest leader epoch seen for each partition, with its topic's id: metadata naming
    /// an older one comes from a broker that has not caught up (KIP-320).
    newest_epochs: HashMap<(String, i32), (uuid::Uuid, i32)>,
}

impl MetadataCache {
    /// The topic's metadata as last known, fresh or invalidated since.
    fn last_known(&self, name: &str) -> Option<&Arc<TopicMetadata>> {
        self.topics
            .get(name)
            .map(|(topic, _)| topic)
            .or_else(|| self.stale.get(name))
    }

    /// Takes `topic` as a broker reported it, except for partitions whose leader epoch is
    /// older than one seen before: as the Java client does (KIP-320), those keep what was
    /// known, or, if that is gone, are left without a leader until fresher metadata comes,
    /// so that no request goes to a leader that has been replaced. Only for topics with ids
    /// (Metadata v10+): without one, a topic deleted and made again under its name, whose
    /// epochs start over, could not be told from a stale answer.
    fn keep_newest_epochs(&mut self, topic: &mut TopicMetadata) {
        if topic.id.is_nil() {
            return;
        }
        let known = self
            .last_known(&topic.name)
            .filter(|known| known.id == topic.id)
            .cloned();
        for partition in &mut topic.partitions {
            if partition.leader_epoch < 0 {
                continue;
            }
            let key = (topic.name.clone(), partition.partition);
            match self.newest_epochs.get(&key) {
                Some(&(id, newest)) if id == topic.id && partition.leader_epoch < newest => {
                    let kept = known
                        .as_ref()
                        .and_then(|known| known.partition(partition.partition))
                        .filter(|kept| kept.leader_epoch == newest);
                    match kept {
                        Some(kept) => *partition = kept.clone(),
                        None => {
                            partition.leader = -1;
                            partition.error = Some(ResponseError::LeaderNotAvailable);
                        }
                    }
                }
                _ => {
                    self.newest_epochs
                        .insert(key, (topic.id, partition.leader_epoch));
                }
            }
        }
    }
}

/// What a connection is for. Group coordination gets its own connection to a broker, as in
/// Kafka's Java client: a broker answers one connection's requests in order, so a heartbeat
/// queued behind a long-polling Fetch would wait out the Fetch's `max_wait_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    Data,
    Coordinator,
}

#[derive(Default)]
struct NodeSlot {
    state: tokio::sync::Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    connection: Option<Arc<Connection>>,
    /// Connection attempts that failed in a row.
    failures: u32,
    /// No new attempt before this.
    retry_at: Option<tokio::time::Instant>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a few map operations that leave the data consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn metadata(&self) -> MutexGuard<'_, MetadataCache> {
        lock(&self.metadata)
    }
}

/// The wait before connection attempt number `failures + 1`: `base`, doubling per failure, at
/// most `max`.
pub(crate) fn reconnect_backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (failures - 1).min(16);
    base.saturating_mul(factor).min(max)
}

impl Cluster {
    /// Connects to the first reachable bootstrap broker and reads the cluster's brokers.
    pub async fn connect(config: ClientConfig) -> Result<Cluster> {
        if config.bootstrap.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no bootstrap broker: expected HOST:PORT[,HOST:PORT...]".to_owned(),
            ));
        }
        let mut failures = Vec::new();
        let mut bootstrap = None;
        for address in &config.bootstrap {
            match Connection::connect(address, &config).await {
                Ok(connection) => {
                    bootstrap = Some(Arc::new(connection));
                    break;
                }
                Err(error) => failures.push(format!("{address}: {error}")),
            }
        }
        let Some(bootstrap) = bootstrap else {
            return Err(ClientError::NoBrokers(failures.join("; ")));
        };
        let cluster = Cluster {
            inner: Arc::new(Inner {
                config,
                metadata: Mutex::new(MetadataCache::default()),
                nodes: Mutex::new(HashMap::new()),
                bootstrap: tokio::sync::Mutex::new(Some(bootstrap)),
                coordinators: Mutex::new(HashMap::new()),
            }),
        };
        cluster.metadata(Some(&[]), false).await?;
        Ok(cluster)
    }

    /// The configuration this cluster was connected with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Asks a broker for the metadata of `topics` (`None`: every topic) and refreshes the
    /// cache with the answer. Topics the broker reports an error for are returned with
    /// [`TopicMetadata::error`] set and dropped from the cache. `allow_auto_create` lets a
    /// broker with `auto.create.topics.enable` create missing topics.
    pub async fn metadata(
        &self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> Result<Vec<TopicMetadata>> {
        let connection = self.any_connection().await?;
        let version = connection.version_at_least::<MetadataRequest>(METADATA_VERSION_MIN)?;
        let mut request = MetadataRequest::default().with_topics(topics.map(|names| {
            names
                .iter()
                .map(|name| {
                    metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(topic_name(name)))
                })
                .collect()
        }));
        if version >= 4 {
            request.allow_auto_topic_creation = allow_auto_create;
        }
        let response = connection.send(request, version).await?;
        Ok(self.absorb_metadata(response, version, topics.is_none()))
    }

    fn absorb_metadata(
        &self,
        response: MetadataResponse,
        version: i16,
        all_topics: bool,
    ) -> Vec<TopicMetadata> {
        let brokers: BTreeMap<i32, BrokerInfo> = response
            .brokers
            .into_iter()
            .map(|broker| {
                let info = BrokerInfo {
                    node_id: broker.node_id.0,
                    host: broker.host.to_string(),
                    port: broker.port,
                    rack: broker.rack.map(|rack| rack.to_string()),
                };
                (info.node_id, info)
            })
            .collect();
        let mut topics: Vec<TopicMetadata> = response
            .topics
            .into_iter()
            .filter_map(|topic| {
                let name = topic.name?.0.to_string();
                let mut partitions: Vec<PartitionMetadata> = topic
                    .partitions
                    .into_iter()
                    .map(|partition| PartitionMetadata {
                        partition: partition.partition_index,
                        leader: partition.leader_id.0,
                        leader_epoch: if version >= 7 {
                            partition.leader_epoch
                        } else {
                            -1
                        },
                        replicas: partition.replica_nodes.iter().map(|id| id.0).collect(),
                        isr: partition.isr_nodes.iter().map(|id| id.0).collect(),
                        error: ResponseError::try_from_code(partition.error_code),
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                Some(TopicMetadata {
                    name,
                    id: if version >= 10 {
                        topic.topic_id
                    } else {
                        uuid::Uuid::nil()
                    },
                    is_internal: topic.is_internal,
                    partitions,
                    error: ResponseError::try_from_code(topic.error_code),
                })
            })
            .collect();
        let now = Instant::now();
        let mut cache = self.inner.metadata();
        if !brokers.is_empty() {
            cache.brokers = brokers;
        }
        if version >= 2 {
            cache.cluster_id = response.cluster_id.map(|id| id.to_string());
        }
        cache.controller_id = (response.controller_id.0 >= 0).then_some(response.controller_id.0);
        for topic in &mut topics {
            if topic.error.is_none() {
                cache.keep_newest_epochs(topic);
            }
        }
        // The epochs seen of topics that are gone are forgotten.
        let gone = |name: &str| {
            topics
                .iter()
                .find(|topic| topic.name == name)
                .map_or(all_topics, |topic| topic.error.is_some())
        };
        cache.newest_epochs.retain(|(name, _), _| !gone(name));
        if all_topics {
            cache.topics.clear();
            cache.stale.clear();
        }
        for topic in &topics {
            cache.stale.remove(&topic.name);
            if topic.error.is_none() {
                cache
                    .topics
                    .insert(topic.name.clone(), (Arc::new(topic.clone()), now));
            } else {
                cache.topics.remove(&topic.name);
            }
        }
        topics
    }

    /// The topic's metadata: from the cache when younger than `metadata_max_age`, else fresh
    /// from a broker. A topic the broker does not know is a [`ClientError::Broker`] with
    /// UNKNOWN_TOPIC_OR_PARTITION (or whatever the broker reported for it). While no broker
    /// can be reached, metadata [`Cluster::invalidate`]d since serves, as the Java client
    /// keeps partitioning with stale metadata: a producer's `send` does not stall because a
    /// broker is down.
    pub async fn topic(&self, name: &str) -> Result<Arc<TopicMetadata>> {
        if let Some(topic) = self.cached_topic(name) {
            return Ok(topic);
        }
        let topics = match self.metadata(Some(&[name.to_owned()]), false).await {
            Ok(topics) => topics,
            Err(
                error @ (ClientError::Io { .. }
                | ClientError::NoBrokers(_)
                | ClientError::Timeout { .. }),
            ) => {
                return match self.inner.metadata().stale.get(name) {
                    Some(stale) => Ok(Arc::clone(stale)),
                    None => Err(error),
                };
            }
            Err(error) => return Err(error),
        };
        let found = topics.into_iter().find(|topic| topic.name == name);
        match found {
            Some(TopicMetadata {
                error: Some(code), ..
            }) => Err(ClientError::broker(code, None, format!("topic {name:?}"))),
            Some(topic) => Ok(Arc::new(topic)),
            None => Err(ClientError::broker(
                ResponseError::UnknownTopicOrPartition,
                None,
                format!("topic {name:?}"),
            )),
        }
    }

    /// The topic's metadata as last known, fresh or invalidated since, without asking a
    /// broker.
    pub fn known_topic(&self, name: &str) -> Option<Arc<TopicMetadata>> {
        if let Some(fresh) = self.cached_topic(name) {
            return Some(fresh);
        }
        self.inner.metadata().stale.get(name).cloned()
    }

    fn cached_topic(&self, name: &str) -> Option<Arc<TopicMetadata>> {
        let cache = self.inner.metadata();
        let (topic, fetched_at) = cache.topics.get(name)?;
        (fetched_at.elapsed() < self.inner.config.metadata_max_age).then(|| Arc::clone(topic))
    }

    /// Forgets the topic's cached metadata, so the next use asks a broker: after
    /// NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE and the like.
    pub fn invalidate(&self, topic: &str) {
        let mut cache = self.inner.metadata();
        if let Some((metadata, _)) = cache.topics.remove(topic) {
            cache.stale.insert(topic.to_owned(), metadata);
        }
    }

    /// The brokers of the cluster, as last reported.
    pub async fn brokers(&self) -> Vec<BrokerInfo> {
        let known: Vec<BrokerInfo> = self.inner.metadata().brokers.values().cloned().collect();
        if !known.is_empty() {
            return known;
        }
        if let Err(error) = self.metadata(Some(&[]), false).await {
            tracing::debug!(%error, "cannot refresh the broker list");
        }
        self.inner.metadata().brokers.values().cloned().collect()
    }

    /// The cluster id (Metadata v2+).
    pub fn cluster_id(&self) -> Option<String> {
        self.inner.metadata().cluster_id.clone()
    }

    /// The controller's node id, as last reported.
    pub fn controller_id(&self) -> Option<i32> {
        self.inner.metadata().controller_id
    }

    /// The connection to broker `node_id`: the open one, or a new one. After a failed attempt
    /// the next waits `reconnect_backoff`, doubling per failure up to `reconnect_backoff_max`.
    pub async fn connection(&self, node_id: i32) -> Result<Arc<Connection>> {
        self.connection_for(node_id, Role::Data).await
    }

    async fn connection_for(&self, node_id: i32, role: Role) -> Result<Arc<Connection>> {
        let address = match self.broker_address(node_id) {
            Some(address) => address,
            None => {
                self.metadata(Some(&[]), false).await?;
                self.broker_address(node_id).ok_or_else(|| {
                    ClientError::InvalidArgument(format!(
                        "no broker with node id {node_id} in the cluster metadata"
                    ))
                })?
            }
        };
        self.connect_node(node_id, role, &address).await
    }

    async fn connect_node(
        &self,
        node_id: i32,
        role: Role,
        address: &str,
    ) -> Result<Arc<Connection>> {
        let slot = {
            let mut nodes = lock(&self.inner.nodes);
            Arc::clone(nodes.entry((node_id, role)).or_default())
        };
        let mut state = slot.state.lock().await;
        if let Some(connection) = &state.connection {
            if !connection.is_closed() && connection.address() == address {
                return Ok(Arc::clone(connection));
            }
        }
        state.connection = None;
        if let Some(retry_at) = state.retry_at {
            tokio::time::sleep_until(retry_at).await;
        }
        match Connection::connect(address, &self.inner.config).await {
            Ok(connection) => {
                let connection = Arc::new(connection);
                state.connection = Some(Arc::clone(&connection));
                state.failures = 0;
                state.retry_at = None;
                Ok(connection)
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let config = &self.inner.config;
                let wait = reconnect_backoff(
                    config.reconnect_backoff,
                    config.reconnect_backoff_max,
                    state.failures,
                );
                state.retry_at = Some(tokio::time::Instant::now() + wait);
                tracing::debug!(node_id, %address, %error, ?wait, "connection attempt failed");
                Err(error)
            }
        }
    }

    fn broker_address(&self, node_id: i32) -> Option<String> {
        self.inner
            .metadata()
            .brokers
            .get(&node_id)
            .map(BrokerInfo::address)
    }

    /// A connection to some broker, for requests any broker answers (Metadata,
    /// FindCoordinator, DescribeConfigs): an open one if there is any, else the first broker
    /// (then bootstrap address) that accepts.
    pub async fn any_connection(&self) -> Result<Arc<Connection>> {
        let slots: Vec<Arc<NodeSlot>> = lock(&self.inner.nodes).values().cloned().collect();
        for slot in &slots {
            if let Ok(state) = slot.state.try_lock() {
                if let Some(connection) = state.connection.as_ref().filter(|c| !c.is_closed()) {
                    return Ok(Arc::clone(connection));
                }
            }
        }
        if let Some(connection) = self
            .inner
            .bootstrap
            .lock()
            .await
            .as_ref()
            .filter(|c| !c.is_closed())
        {
            return Ok(Arc::clone(connection));
        }
        let mut last_error = None;
        let known: Vec<(i32, String)> = self
            .inner
            .metadata()
            .brokers
            .values()
            .map(|broker| (broker.node_id, broker.address()))
            .collect();
        for (node_id, address) in known {
            match self.connect_node(node_id, Role::Data, &address).await {
                Ok(connection) => return Ok(connection),
                Err(error) => last_error = Some(error),
            }
        }
        let mut bootstrap = self.inner.bootstrap.lock().await;
        if let Some(connection) = bootstrap.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(connection));
        }
        *bootstrap = None;
        for address in &self.inner.config.bootstrap {
            match Connection::connect(address, &self.inner.config).await {
                Ok(connection) => {
                    let connection = Arc::new(connection);
                    *bootstrap = Some(Arc::clone(&connection));
                    return Ok(connection);
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            ClientError::NoBrokers(format!(
                "no broker reachable among {:?}",
                self.inner.config.bootstrap
            ))
        }))
    }

    /// The leader of `topic`'s `partition` and a connection to it. No leader is a retriable
    /// [`ClientError::Broker`] (LEADER_NOT_AVAILABLE, or the partition's own error), a
    /// partition the topic does not have is UNKNOWN_TOPIC_OR_PARTITION; either way the
    /// topic's cached metadata is dropped.
    pub async fn leader_connection(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(i32, Arc<Connection>)> {
        let leader = self.leader(topic, partition).await?;
        Ok((leader, self.connection(leader).await?))
    }

    /// The node id leading `topic`'s `partition`, from the cache; errors as
    /// [`Cluster::leader_connection`].
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<i32> {
        let metadata = self.topic(topic).await?;
        let context = || format!("topic {topic:?} partition {partition}");
        let Some(found) = metadata.partition(partition) else {
            self.invalidate(topic);
            return Err(ClientError::broker(
                ResponseError::UnknownTopicOrPartition,
                Some(&format!(
                    "the topic has {} partitions",
                    metadata.partitions.len()
                )),
                context(),
            ));
        };
        if found.leader < 0 {
            self.invalidate(topic);
            let code = found.error.unwrap_or(ResponseError::LeaderNotAvailable);
            return Err(ClientError::broker(code, None, context()));
        }
        Ok(found.leader)
    }

    /// The connection to `group`'s coordinator (FindCoordinator, cached per group). It is not
    /// the one [`Cluster::connection`] returns for the same broker, so group requests never
    /// queue behind a long-polling Fetch.
    pub async fn coordinator(&self, group: &str) -> Result<Arc<Connection>> {
        Ok(self.coordinator_node(group).await?.1)
    }

    /// [`Cluster::coordinator`], with the coordinator's node id.
    pub async fn coordinator_node(&self, group: &str) -> Result<(i32, Arc<Connection>)> {
        self.coordinator_of(COORDINATOR_KEY_TYPE_GROUP, group).await
    }

    /// The transaction coordinator of `transactional_id`, with its node id, on the
    /// coordinator connection.
    pub async fn transaction_coordinator(
        &self,
        transactional_id: &str,
    ) -> Result<(i32, Arc<Connection>)> {
        self.coordinator_of(COORDINATOR_KEY_TYPE_TRANSACTION, transactional_id)
            .await
    }

    async fn coordinator_of(&self, key_type: i8, key: &str) -> Result<(i32, Arc<Connection>)> {
        let cache_key = (key_type, key.to_owned());
        let cached = lock(&self.inner.coordinators).get(&cache_key).copied();
        let node_id = match cached {
            Some(node_id) => node_id,
            None => {
                let node_id = self.find_coordinator(key_type, key).await?;
                lock(&self.inner.coordinators).insert(cache_key, node_id);
                node_id
            }
        };
        Ok((
            node_id,
            self.connection_for(node_id, Role::Coordinator).await?,
        ))
    }

    async fn find_coordinator(&self, key_type: i8, group: &str) -> Result<i32> {
        let connection = self.any_connection().await?;
        let version = connection.version_at_least::<FindCoordinatorRequest>(0)?;
        let mut request = FindCoordinatorRequest::default();
        if version >= 4 {
            request.coordinator_keys = vec![StrBytes::from_string(group.to_owned())];
        } else {
            request.key = StrBytes::from_string(group.to_owned());
        }
        if version >= 1 {
            request.key_type = key_type;
        } else if key_type != COORDINATOR_KEY_TYPE_GROUP {
            return Err(ClientError::Protocol(format!(
                "{} serves FindCoordinator v0 only, which finds group coordinators only",
                connection.address()
            )));
        }
        let response = connection.send(request, version).await?;
        let context = || format!("coordinator of {group:?}");
        let (node_id, host, port) = if version >= 4 {
            let coordinator = response
                .coordinators
                .into_iter()
                .find(|c| c.key.as_str() == group)
                .ok_or_else(|| {
                    ClientError::Protocol(format!(
                        "FindCoordinator from {} names no coordinator for group {group:?}",
                        connection.address()
                    ))
                })?;
            ClientError::check(
                coordinator.error_code,
                coordinator.error_message.as_ref(),
                context,
            )?;
            (coordinator.node_id.0, coordinator.host, coordinator.port)
        } else {
            ClientError::check(
                response.error_code,
                response.error_message.as_ref(),
                context,
            )?;
            (response.node_id.0, response.host, response.port)
        };
        if node_id < 0 || host.is_empty() || !(1..=65535).contains(&port) {
            return Err(ClientError::Protocol(format!(
                "FindCoordinator from {} names an unusable coordinator for group {group:?}: node {node_id} at {}:{port}",
                connection.address(),
                host.as_str()
            )));
        }
        self.inner
            .metadata()
            .brokers
            .entry(node_id)
            .or_insert_with(|| BrokerInfo {
                node_id,
                host: host.to_string(),
                port,
                rack: None,
            });
        Ok(node_id)
    }

    /// Forgets `transactional_id`'s coordinator, so the next use asks again.
    pub fn invalidate_transaction_coordinator(&self, transactional_id: &str) {
        lock(&self.inner.coordinators).remove(&(
            COORDINATOR_KEY_TYPE_TRANSACTION,
            transactional_id.to_owned(),
        ));
    }

    /// Forgets `group`'s coordinator, so the next use asks again: after NOT_COORDINATOR or
    /// COORDINATOR_NOT_AVAILABLE.
    pub fn invalidate_coordinator(&self, group: &str) {
        lock(&self.inner.coordinators).remove(&(COORDINATOR_KEY_TYPE_GROUP, group.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_backoff_doubles_up_to_its_cap() {
        let base = Duration::from_millis(50);
        let max = Duration::from_secs(1);
        let waits: Vec<u128> = (0..8)
            .map(|failures| reconnect_backoff(base, max, failures).as_millis())
            .collect();
        assert_eq!(waits, [0, 50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(reconnect_backoff(base, max, u32::MAX), max);
    }

    fn topic(id: u128, leaders: &[(i32, i32)]) -> TopicMetadata {
        TopicMetadata {
            name: "t".into(),
            id: uuid::Uuid::from_u128(id),
            is_internal: false,
            partitions: leaders
                .iter()
                .enumerate()
                .map(|(index, &(leader, leader_epoch))| PartitionMetadata {
                    partition: index as i32,
                    leader,
                    leader_epoch,
                    replicas: vec![1, 2, 3],
                    isr: vec![1, 2, 3],
                    error: None,
                })
                .collect(),
            error: None,
        }
    }

    fn absorb(cache: &mut MetadataCache, mut reported: TopicMetadata) -> TopicMetadata {
        cache.keep_newest_epochs(&mut reported);
        cache.topics.insert(
            reported.name.clone(),
            (Arc::new(reported.clone()), Instant::now()),
        );
        reported
    }

    /// KIP-320: a broker behind the controller reports a leader that has been replaced; the
    /// client keeps the newer leader it knew, and never goes back to the older one.
    #[test]
    fn metadata_naming_an_older_leader_epoch_is_not_taken() {
        let mut cache = MetadataCache::default();
        absorb(&mut cache, topic(1, &[(1, 4), (2, 7)]));
        let taken = absorb(&mut cache, topic(1, &[(3, 5), (1, 6)]));
        assert_eq!(taken.partitions[0].leader, 3, "a newer epoch is taken");
        assert_eq!(
            (taken.partitions[1].leader, taken.partitions[1].leader_epoch),
            (2, 7),
            "an older one keeps what was known"
        );
        // Known metadata gone (all topics refreshed): no leader rather than the old one.
        cache.topics.clear();
        let taken = absorb(&mut cache, topic(1, &[(3, 5), (1, 6)]));
        assert_eq!(taken.partitions[1].leader, -1);
        assert_eq!(
            taken.partitions[1].error,
            Some(ResponseError::LeaderNotAvailable)
        );
        let taken = absorb(&mut cache, topic(1, &[(3, 5), (2, 7)]));
        assert_eq!(
            taken.partitions[1].leader, 2,
            "the epoch seen is taken again"
        );
        // The topic was deleted and made again under its name: its epochs start over.
        let taken = absorb(&mut cache, topic(2, &[(1, 0), (1, 0)]));
        assert_eq!(taken.partitions[1].leader, 1);
        // Brokers before Metadata v7 report no epoch, before v10 no topic id: taken as they
        // come.
        let taken = absorb(&mut cache, topic(2, &[(2, -1), (2, -1)]));
        assert_eq!(taken.partitions[0].leader, 2);
        let taken = absorb(&mut cache, topic(0, &[(3, 0), (3, 0)]));
        assert_eq!(taken.partitions[0].leader, 3);
    }

    #[test]
    fn broker_addresses_bracket_ipv6() {
        let broker = |host: &str| BrokerInfo {
            node_id: 0,
            host: host.to_owned(),
            port: 9092,
            rack: None,
        };
        assert_eq!(broker("localhost").address(), "localhost:9092");
        assert_eq!(broker("::1").address(), "[::1]:9092");
    }
}
