//! The consumer: group membership, assignment, fetch positions, records.
//!
//! [`Consumer`] reads partitions it is given by hand ([`Consumer::assign`], no group needed) or
//! that a consumer group gives it ([`Consumer::subscribe`], [`Consumer::subscribe_pattern`]).
//! The sans-IO parts live in their own modules and are tested without sockets:
//! [`assignor`] (who gets which partitions), [`subscription`] (positions, resets, pauses) and
//! [`records`] (record batches into [`ConsumerRecord`]s). This module and the two beside it are
//! the I/O shell around them: `group` runs the classic group membership (JoinGroup, SyncGroup,
//! heartbeats, commits) in a background task, `kip848` the KIP-848 one (ConsumerGroupHeartbeat,
//! server-side assignment), `fetcher` looks positions up and fetches.
//!
//! Delivery is at-least-once: a position advances when [`Consumer::poll`] returns the records
//! before it, and commits (explicit, automatic, or before partitions are revoked) store
//! positions. Partitions handed over in a rebalance are committed by their old owner before the
//! new owner looks the committed offset up, so a group that commits reads every record once
//! unless a member fails between reading and committing.
//!
//! Not here: KIP-848 client-side assignors (the coordinator assigns), fetch sessions (KIP-227; every Fetch is a full one), follower fetching (KIP-392), and
//! `max.poll.interval.ms` enforcement on the client side (the coordinator's rebalance timeout
//! still applies).
//!
//! ```no_run
//! # async fn example() -> runnel_client::Result<()> {
//! use std::time::Duration;
//! use runnel_client::{Consumer, ConsumerConfig, OffsetReset};
//!
//! let mut config = ConsumerConfig::new("localhost:9092").group("billing");
//! config.auto_offset_reset = OffsetReset::Earliest;
//! let consumer = Consumer::connect(config).await?;
//! consumer.subscribe(&["orders"]).await?;
//! for _ in 0..10 {
//!     for record in consumer.poll(Duration::from_secs(1)).await? {
//!         println!("{}-{}@{}: {:?}", record.topic, record.partition, record.offset, record.value);
//!     }
//! }
//! consumer.close().await?;
//! # Ok(())
//! # }
//! ```

pub mod assignor;
mod fetcher;
mod group;
mod kip848;
pub mod records;
pub mod subscription;

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::Stream;
use kafka_protocol::error::ResponseError;
use tokio::task::JoinHandle;

use crate::cluster::Cluster;
use crate::connection::ClientConfig;
use crate::error::{ClientError, Result};
use crate::settings::SettingDoc;
use assignor::{Assignor, CooperativeStickyAssignor, RangeAssignor, RebalanceProtocol};
pub use records::{ConsumerRecord, IsolationLevel};

/// A consumer's group membership as a transactional producer needs it to commit the
/// consumer's offsets in a transaction: the coordinator fences a member whose generation is
/// gone, so a zombie cannot commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// The group id.
    pub group_id: String,
    /// The member's generation; -1 outside one (then nothing is checked).
    pub generation_id: i32,
    /// The member id; empty outside a generation.
    pub member_id: String,
    /// Static membership's `group.instance.id`.
    pub group_instance_id: Option<String>,
}
pub use subscription::{OffsetReset, TopicPartition};
use subscription::{Subscribed, SubscriptionError, SubscriptionState};

use group::Membership;

/// Which group protocol a subscribing consumer speaks.
///
/// ```
/// use runnel_client::{ConsumerConfig, GroupProtocol};
///
/// let mut config = ConsumerConfig::new("localhost:9092").group("billing");
/// assert_eq!(config.group_protocol, GroupProtocol::Classic);
/// config.group_protocol = GroupProtocol::Consumer; // KIP-848
/// config.server_assignor = Some("uniform".to_owned());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup/Heartbeat, with client-side assignors (`group.protocol=classic`).
    #[default]
    Classic,
    /// KIP-848's ConsumerGroupHeartbeat with server-side assignment (`group.protocol=consumer`):
    /// no group-wide rebalance, only the partitions that move are revoked. `assignors` are
    /// not used; [`ConsumerConfig::server_assignor`] may name the coordinator's.
    Consumer,
}

/// How a [`Consumer`] reads: its group, where it starts, how it fetches.
///
/// ```
/// use std::time::Duration;
/// use runnel_client::{ConsumerConfig, OffsetReset};
///
/// let mut config = ConsumerConfig::new("localhost:9092").group("billing");
/// config.auto_offset_reset = OffsetReset::Earliest;
/// config.heartbeat_interval = Duration::from_secs(1);
/// assert_eq!(config.group_id.as_deref(), Some("billing"));
/// assert_eq!(config.assignors.iter().map(|a| a.name()).collect::<Vec<_>>(), ["range", "cooperative-sticky"]);
///
/// // Java's defaults.
/// let defaults = ConsumerConfig::new("localhost:9092");
/// assert_eq!(defaults.auto_offset_reset, OffsetReset::Latest);
/// assert!(defaults.enable_auto_commit);
/// assert_eq!(defaults.session_timeout, Duration::from_secs(45));
/// assert_eq!(defaults.max_partition_fetch_bytes, 1024 * 1024);
/// ```
#[derive(Clone)]
pub struct ConsumerConfig {
    /// Connections and metadata.
    pub client: ClientConfig,
    /// The consumer group (`group.id`); needed to subscribe and to commit.
    pub group_id: Option<String>,
    /// A static member id (`group.instance.id`, KIP-345): a restart within the session timeout
    /// does not rebalance the group.
    pub group_instance_id: Option<String>,
    /// Classic (the default) or KIP-848.
    pub group_protocol: GroupProtocol,
    /// Assignors offered to the group in order of preference (`range`, `cooperative-sticky`,
    /// as Java's default). The group uses the cooperative protocol only when every one of them
    /// is cooperative.
    pub assignors: Vec<Arc<dyn Assignor>>,
    /// Under [`GroupProtocol::Consumer`]: the coordinator's assignor to use (`uniform`,
    /// `range`; `group.remote.assignor`), or `None` for the coordinator's default.
    pub server_assignor: Option<String>,
    /// Without a heartbeat for this long the coordinator drops the member (45 s).
    pub session_timeout: Duration,
    /// How often the member heartbeats (3 s).
    pub heartbeat_interval: Duration,
    /// How long the coordinator waits for members to rejoin during a rebalance (5 min, Java's
    /// `max.poll.interval.ms`).
    pub rebalance_timeout: Duration,
    /// Where a partition without a committed offset starts (latest).
    pub auto_offset_reset: OffsetReset,
    /// Commit positions every `auto_commit_interval`, before partitions are revoked and on
    /// close (true).
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`: how often positions are committed when
    /// `enable_auto_commit` is on (5 s).
    pub auto_commit_interval: Duration,
    /// Read uncommitted (the default) or only committed transactional records.
    pub isolation_level: IsolationLevel,
    /// The broker answers a fetch once it has this many bytes, or after `fetch_max_wait` (1).
    pub fetch_min_bytes: i32,
    /// The most bytes one Fetch response carries (50 MiB).
    pub fetch_max_bytes: i32,
    /// The most bytes per partition in one Fetch response (1 MiB).
    pub max_partition_fetch_bytes: i32,
    /// How long the broker may hold a fetch waiting for `fetch_min_bytes` (500 ms).
    pub fetch_max_wait: Duration,
}

impl fmt::Debug for ConsumerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerConfig")
            .field("client", &self.client)
            .field("group_id", &self.group_id)
            .field("group_instance_id", &self.group_instance_id)
            .field("group_protocol", &self.group_protocol)
            .field(
                "assignors",
                &self.assignors.iter().map(|a| a.name()).collect::<Vec<_>>(),
            )
            .field("server_assignor", &self.server_assignor)
            .field("session_timeout", &self.session_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("rebalance_timeout", &self.rebalance_timeout)
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("enable_auto_commit", &self.enable_auto_commit)
            .field("auto_commit_interval", &self.auto_commit_interval)
            .field("isolation_level", &self.isolation_level)
            .field("fetch_min_bytes", &self.fetch_min_bytes)
            .field("fetch_max_bytes", &self.fetch_max_bytes)
            .field("max_partition_fetch_bytes", &self.max_partition_fetch_bytes)
            .field("fetch_max_wait", &self.fetch_max_wait)
            .finish()
    }
}

impl ConsumerConfig {
    /// Defaults, with the brokers of a comma-separated `HOST:PORT` list and no group.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        ConsumerConfig {
            client: ClientConfig::new(bootstrap),
            group_id: None,
            group_instance_id: None,
            group_protocol: GroupProtocol::Classic,
            assignors: vec![Arc::new(RangeAssignor), Arc::new(CooperativeStickyAssignor)],
            server_assignor: None,
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            rebalance_timeout: Duration::from_secs(300),
            auto_offset_reset: OffsetReset::Latest,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            isolation_level: IsolationLevel::ReadUncommitted,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            fetch_max_wait: Duration::from_millis(500),
        }
    }

    /// Every field, for the configuration reference; `tests::settings_match_the_fields` holds
    /// it to [`ConsumerConfig::new`].
    pub const SETTINGS: &'static [SettingDoc] = &[
        SettingDoc {
            field: "client",
            kafka: None,
            kind: "ClientConfig",
            default: "ClientConfig::new(bootstrap)",
            valid: "see the client settings",
            doc: "Brokers, timeouts and backoffs, shared with the other clients.",
        },
        SettingDoc {
            field: "group_id",
            kafka: Some("group.id"),
            kind: "optional string",
            default: "",
            valid: "any non-empty string",
            doc: "The consumer group. Subscribing and committing offsets need one; without \
                  it the consumer reads only partitions it is assigned by hand.",
        },
        SettingDoc {
            field: "group_instance_id",
            kafka: Some("group.instance.id"),
            kind: "optional string",
            default: "",
            valid: "unique in the group",
            doc: "Makes the member static (KIP-345): restarting within the session timeout \
                  keeps its partitions without a rebalance of the group.",
        },
        SettingDoc {
            field: "group_protocol",
            kafka: Some("group.protocol"),
            kind: "GroupProtocol",
            default: "classic",
            valid: "classic, consumer",
            doc: "classic: JoinGroup and SyncGroup, the members' assignors share out the \
                  partitions. consumer: KIP-848's heartbeats, the coordinator assigns and only \
                  the partitions that move are revoked.",
        },
        SettingDoc {
            field: "assignors",
            kafka: Some("partition.assignment.strategy"),
            kind: "list of Assignor",
            default: "range, cooperative-sticky",
            valid: "range, roundrobin, cooperative-sticky, or your own",
            doc: "The assignors the member offers a classic group, most preferred first. The \
                  group rebalances cooperatively only when every one offered is cooperative.",
        },
        SettingDoc {
            field: "server_assignor",
            kafka: Some("group.remote.assignor"),
            kind: "optional string",
            default: "",
            valid: "uniform, range",
            doc: "Under the consumer protocol: which of the coordinator's assignors to use; \
                  unset leaves the choice to the coordinator.",
        },
        SettingDoc {
            field: "session_timeout",
            kafka: Some("session.timeout.ms"),
            kind: "duration",
            default: "45000 ms",
            valid: "within the broker's group-min/max-session-timeout-ms",
            doc: "The coordinator removes a member it has not heard a heartbeat from for this \
                  long and gives its partitions to the others.",
        },
        SettingDoc {
            field: "heartbeat_interval",
            kafka: Some("heartbeat.interval.ms"),
            kind: "duration",
            default: "3000 ms",
            valid: "below session_timeout",
            doc: "How often the member heartbeats the coordinator.",
        },
        SettingDoc {
            field: "rebalance_timeout",
            kafka: Some("max.poll.interval.ms"),
            kind: "duration",
            default: "300000 ms",
            valid: "above 0",
            doc: "How long the coordinator waits, during a rebalance, for members to join \
                  again.",
        },
        SettingDoc {
            field: "auto_offset_reset",
            kafka: Some("auto.offset.reset"),
            kind: "OffsetReset",
            default: "latest",
            valid: "earliest, latest, none",
            doc: "Where a partition without a committed offset (or with one out of range) \
                  starts: its first record, its end, or an error.",
        },
        SettingDoc {
            field: "enable_auto_commit",
            kafka: Some("enable.auto.commit"),
            kind: "boolean",
            default: "true",
            valid: "true, false",
            doc: "Whether positions are committed by themselves: every \
                  auto_commit_interval, before partitions are taken away, and on close.",
        },
        SettingDoc {
            field: "auto_commit_interval",
            kafka: Some("auto.commit.interval.ms"),
            kind: "duration",
            default: "5000 ms",
            valid: "above 0",
            doc: "How often positions are committed when enable_auto_commit is on.",
        },
        SettingDoc {
            field: "isolation_level",
            kafka: Some("isolation.level"),
            kind: "IsolationLevel",
            default: "read_uncommitted",
            valid: "read_uncommitted, read_committed",
            doc: "read_committed returns only records of committed transactions and stops at \
                  the last stable offset; read_uncommitted returns everything.",
        },
        SettingDoc {
            field: "fetch_min_bytes",
            kafka: Some("fetch.min.bytes"),
            kind: "int",
            default: "1",
            valid: "0 or more",
            doc: "The broker answers a fetch once it has this many bytes for it, or when \
                  fetch_max_wait has passed.",
        },
        SettingDoc {
            field: "fetch_max_bytes",
            kafka: Some("fetch.max.bytes"),
            kind: "int",
            default: "52428800",
            valid: "1 or more",
            doc: "The most bytes one fetch answer carries (a single batch larger than this \
                  still comes, so that the consumer moves on).",
        },
        SettingDoc {
            field: "max_partition_fetch_bytes",
            kafka: Some("max.partition.fetch.bytes"),
            kind: "int",
            default: "1048576",
            valid: "1 or more",
            doc: "The most bytes of one partition in one fetch answer.",
        },
        SettingDoc {
            field: "fetch_max_wait",
            kafka: Some("fetch.max.wait.ms"),
            kind: "duration",
            default: "500 ms",
            valid: "0 or more",
            doc: "How long the broker may hold a fetch while it waits for fetch_min_bytes.",
        },
    ];

    /// The same configuration in group `id`.
    pub fn group(mut self, id: impl Into<String>) -> Self {
        self.group_id = Some(id.into());
        self
    }

    /// Cooperative when every assignor is (KIP-429's upgrade rule), else eager.
    pub(crate) fn rebalance_protocol(&self) -> RebalanceProtocol {
        if !self.assignors.is_empty()
            && self
                .assignors
                .iter()
                .all(|a| a.protocol() == RebalanceProtocol::Cooperative)
        {
            RebalanceProtocol::Cooperative
        } else {
            RebalanceProtocol::Eager
        }
    }
}

/// Told when the group moves partitions to or from this consumer. Called from the consumer's
/// background membership task, never while a lock of the consumer is held; a slow callback
/// delays the rebalance.
///
/// ```
/// use runnel_client::{RebalanceListener, TopicPartition};
///
/// struct Log;
/// impl RebalanceListener for Log {
///     fn on_partitions_assigned(&self, partitions: &[TopicPartition]) {
///         println!("assigned {partitions:?}");
///     }
/// }
/// ```
pub trait RebalanceListener: Send + Sync {
    /// Before partitions are given up in a rebalance (after their positions are committed
    /// when auto-commit is on), and on close.
    fn on_partitions_revoked(&self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }
    /// After the group assigned partitions (under the cooperative protocol, only the new ones).
    fn on_partitions_assigned(&self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }
    /// The member was dropped from the group (session expired, fenced generation): the
    /// partitions may already be someone else's, so nothing was committed.
    fn on_partitions_lost(&self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }
}

/// Reads records from a cluster. Every method takes `&self`; share it behind an `Arc`.
///
/// Reading two partitions by hand, as a stream, without a group:
///
/// ```no_run
/// # async fn example() -> runnel_client::Result<()> {
/// use futures::StreamExt;
/// use runnel_client::{Consumer, ConsumerConfig, TopicPartition};
///
/// let consumer = Consumer::connect(ConsumerConfig::new("localhost:9092")).await?;
/// let partitions = vec![TopicPartition::new("orders", 0), TopicPartition::new("orders", 1)];
/// consumer.assign(partitions.clone()).await?;
/// consumer.seek_to_beginning(&partitions).await?;
/// let mut records = Box::pin(consumer.stream());
/// while let Some(record) = records.next().await {
///     let record = record?;
///     println!("{}-{}@{}", record.topic, record.partition, record.offset);
/// }
/// # Ok(())
/// # }
/// ```
///
/// See the [module docs](self) for reading in a group.
pub struct Consumer {
    shared: Arc<Shared>,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("group_id", &self.shared.config.group_id)
            .field("assignment", &self.assignment())
            .finish_non_exhaustive()
    }
}

/// What the consumer's handle, its background task and its fetches share.
pub(crate) struct Shared {
    pub(crate) cluster: Cluster,
    pub(crate) config: ConsumerConfig,
    pub(crate) state: Mutex<SubscriptionState>,
    pub(crate) membership: Mutex<Membership>,
    listener: Mutex<Option<Arc<dyn RebalanceListener>>>,
    /// A group error no retry can fix (FENCED_INSTANCE_ID and the like), reported by `poll`.
    fatal: Mutex<Option<(ResponseError, String)>>,
    /// Wakes the membership task: the subscription changed, or the consumer closes.
    pub(crate) wake: tokio::sync::Notify,
    pub(crate) closed: AtomicBool,
    task: Mutex<Option<JoinHandle<()>>>,
    /// One poll at a time: a second would fetch the same positions.
    poll_lock: tokio::sync::Mutex<()>,
    /// The fetches out and their answers not yet taken by a poll.
    pub(crate) fetches: Mutex<fetcher::Fetches>,
    /// Wakes a waiting poll: a fetch answered.
    pub(crate) fetch_answered: tokio::sync::Notify,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent (calls into plain data structures).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, SubscriptionState> {
        lock(&self.state)
    }

    pub(crate) fn membership(&self) -> MutexGuard<'_, Membership> {
        lock(&self.membership)
    }

    pub(crate) fn listener(&self) -> Option<Arc<dyn RebalanceListener>> {
        lock(&self.listener).clone()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn set_fatal(&self, code: ResponseError, context: String) {
        tracing::error!(?code, %context, "consumer group membership failed for good");
        lock(&self.fatal).get_or_insert((code, context));
    }

    fn check_fatal(&self) -> Result<()> {
        match &*lock(&self.fatal) {
            Some((code, context)) => Err(ClientError::broker(*code, None, context.clone())),
            None => Ok(()),
        }
    }

    pub(crate) fn group_id(&self) -> Result<&str> {
        self.config.group_id.as_deref().ok_or_else(|| {
            ClientError::InvalidArgument(
                "this needs a consumer group: set ConsumerConfig::group_id".to_owned(),
            )
        })
    }
}

fn subscription_error(error: SubscriptionError) -> ClientError {
    ClientError::InvalidArgument(error.to_string())
}

impl Consumer {
    /// Connects to the cluster. Nothing is read until [`Consumer::subscribe`] or
    /// [`Consumer::assign`].
    pub async fn connect(config: ConsumerConfig) -> Result<Consumer> {
        if config.assignors.is_empty() {
            return Err(ClientError::InvalidArgument(
                "a consumer needs at least one assignor".to_owned(),
            ));
        }
        let cluster = Cluster::connect(config.client.clone()).await?;
        let state = SubscriptionState::new(config.auto_offset_reset, config.group_id.is_some());
        Ok(Consumer {
            shared: Arc::new(Shared {
                cluster,
                state: Mutex::new(state),
                membership: Mutex::new(Membership::default()),
                listener: Mutex::new(None),
                fatal: Mutex::new(None),
                wake: tokio::sync::Notify::new(),
                closed: AtomicBool::new(false),
                task: Mutex::new(None),
                poll_lock: tokio::sync::Mutex::new(()),
                fetches: Mutex::new(fetcher::Fetches::default()),
                fetch_answered: tokio::sync::Notify::new(),
                config,
            }),
        })
    }

    /// The cluster this consumer reads from (shared metadata and connections).
    pub fn cluster(&self) -> &Cluster {
        &self.shared.cluster
    }

    fn check_open(&self) -> Result<()> {
        if self.shared.is_closed() {
            return Err(ClientError::Closed);
        }
        Ok(())
    }

    fn check_group_protocol(&self) -> Result<()> {
        self.shared.group_id()?;
        Ok(())
    }

    /// Joins the group to read `topics`, replacing an earlier topic subscription; the group
    /// decides which of their partitions this consumer reads. Needs a `group_id`.
    pub async fn subscribe(&self, topics: &[&str]) -> Result<()> {
        self.check_open()?;
        self.check_group_protocol()?;
        if topics.iter().any(|topic| topic.is_empty()) {
            return Err(ClientError::InvalidArgument(
                "a topic name cannot be empty".to_owned(),
            ));
        }
        let changed = self
            .shared
            .state()
            .subscribe(topics.iter().copied())
            .map_err(subscription_error)?;
        if changed {
            self.subscription_changed();
        }
        Ok(())
    }

    /// Joins the group to read every topic whose whole name matches `regex`, now or later
    /// (checked every `metadata_max_age`). Needs a `group_id`.
    pub async fn subscribe_pattern(&self, regex: &str) -> Result<()> {
        self.check_open()?;
        self.check_group_protocol()?;
        let changed = self
            .shared
            .state()
            .subscribe_pattern(regex)
            .map_err(subscription_error)?;
        if changed {
            self.subscription_changed();
        }
        Ok(())
    }

    fn subscription_changed(&self) {
        self.shared.membership().rejoin_needed = true;
        let mut task = lock(&self.shared.task);
        if task.is_none() {
            let shared = Arc::clone(&self.shared);
            *task = Some(match self.shared.config.group_protocol {
                GroupProtocol::Classic => tokio::spawn(group::run(shared)),
                GroupProtocol::Consumer => tokio::spawn(kip848::run(shared)),
            });
        } else {
            self.shared.wake.notify_one();
        }
    }

    /// Reads exactly `partitions`, without group membership (a `group_id` is still used for
    /// committed offsets if set); no partitions stops reading. Cannot be mixed with
    /// [`Consumer::subscribe`].
    pub async fn assign(&self, partitions: Vec<TopicPartition>) -> Result<()> {
        self.check_open()?;
        if lock(&self.shared.task).is_some() {
            return Err(subscription_error(SubscriptionError::Exclusive));
        }
        self.shared
            .state()
            .assign(partitions)
            .map_err(subscription_error)?;
        Ok(())
    }

    /// Sets the callbacks told about rebalances, replacing any earlier one.
    pub fn set_rebalance_listener(&self, listener: Arc<dyn RebalanceListener>) {
        *lock(&self.shared.listener) = Some(listener);
    }

    /// Records from the assigned partitions, in offset order per partition: waits up to
    /// `timeout` for some, and returns an empty batch if none came. Looks up the positions of
    /// newly assigned partitions first (committed offset, else `auto_offset_reset`). Errors:
    /// a fatal group error, a partition with no valid position under
    /// `auto_offset_reset = None` (OFFSET_OUT_OF_RANGE), corrupt records, a closed consumer.
    pub async fn poll(&self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        self.check_open()?;
        let _one_poll = self.shared.poll_lock.lock().await;
        fetcher::poll(&self.shared, timeout).await
    }

    /// The records of [`Consumer::poll`] one by one, forever; ends when the consumer closes.
    /// Records polled but not yet taken from the stream are lost if it is dropped (their
    /// positions have advanced).
    pub fn stream(&self) -> impl Stream<Item = Result<ConsumerRecord>> + '_ {
        futures::stream::unfold(VecDeque::new(), move |mut buffered| async move {
            loop {
                if let Some(record) = buffered.pop_front() {
                    return Some((Ok(record), buffered));
                }
                match self.poll(Duration::from_secs(1)).await {
                    Ok(records) => buffered.extend(records),
                    Err(ClientError::Closed) => return None,
                    Err(error) => return Some((Err(error), buffered)),
                }
            }
        })
    }

    /// Reads `tp` from `offset` next.
    pub async fn seek(&self, tp: &TopicPartition, offset: i64) -> Result<()> {
        if offset < 0 {
            return Err(ClientError::InvalidArgument(format!(
                "cannot seek {tp} to negative offset {offset}"
            )));
        }
        self.shared
            .state()
            .seek(tp, offset)
            .map_err(subscription_error)
    }

    /// Reads `tps` (none: every assigned partition) from their log start offsets next.
    pub async fn seek_to_beginning(&self, tps: &[TopicPartition]) -> Result<()> {
        self.shared
            .state()
            .seek_to_beginning(tps)
            .map_err(subscription_error)
    }

    /// Reads `tps` (none: every assigned partition) from their log end offsets next (the
    /// last stable offset under `read_committed`).
    pub async fn seek_to_end(&self, tps: &[TopicPartition]) -> Result<()> {
        self.shared
            .state()
            .seek_to_end(tps)
            .map_err(subscription_error)
    }

    /// The group and this member's place in it, for a transactional producer that commits
    /// this consumer's offsets in its transaction
    /// ([`crate::Producer::send_offsets_to_transaction`]); `None` without a group.
    pub fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        let group_id = self.shared.config.group_id.clone()?;
        let membership = self.shared.membership();
        Some(ConsumerGroupMetadata {
            group_id,
            generation_id: membership.generation,
            member_id: membership.member_id.clone(),
            group_instance_id: self.shared.config.group_instance_id.clone(),
        })
    }

    /// For each partition, the first offset whose timestamp is at or after the given one
    /// (milliseconds since the epoch), with that record's timestamp; `None` when no record is
    /// that late. The partitions need not be assigned.
    pub async fn offsets_for_times(
        &self,
        query: &[(TopicPartition, i64)],
    ) -> Result<Vec<(TopicPartition, Option<(i64, i64)>)>> {
        if let Some((tp, timestamp)) = query.iter().find(|(_, timestamp)| *timestamp < 0) {
            return Err(ClientError::InvalidArgument(format!(
                "negative timestamp {timestamp} for {tp}"
            )));
        }
        // One ListOffsets names each partition once: a partition asked about at several
        // timestamps takes several rounds.
        let mut rounds: Vec<Vec<(TopicPartition, i64)>> = Vec::new();
        let mut round_of = Vec::with_capacity(query.len());
        for (tp, timestamp) in query {
            let round = rounds
                .iter()
                .position(|round| round.iter().all(|(other, _)| other != tp))
                .unwrap_or_else(|| {
                    rounds.push(Vec::new());
                    rounds.len() - 1
                });
            rounds[round].push((tp.clone(), *timestamp));
            round_of.push(round);
        }
        let mut found = Vec::with_capacity(rounds.len());
        for round in &rounds {
            found.push(fetcher::list_offsets(&self.shared, round).await?);
        }
        Ok(query
            .iter()
            .zip(round_of)
            .map(|((tp, _), round)| {
                let hit = found[round]
                    .get(tp)
                    .copied()
                    .filter(|&(offset, _)| offset >= 0);
                (tp.clone(), hit)
            })
            .collect())
    }

    /// Stops fetching `tps` until resumed; they stay assigned.
    pub fn pause(&self, tps: &[TopicPartition]) -> Result<()> {
        self.shared.state().pause(tps).map_err(subscription_error)
    }

    /// Fetches `tps` again.
    pub fn resume(&self, tps: &[TopicPartition]) -> Result<()> {
        self.shared.state().resume(tps).map_err(subscription_error)
    }

    /// The partitions assigned now, sorted.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.shared.state().assigned_partitions().cloned().collect()
    }

    /// The offset of the next record [`Consumer::poll`] returns from `tp`, looked up first if
    /// not known yet.
    pub async fn position(&self, tp: &TopicPartition) -> Result<i64> {
        self.check_open()?;
        loop {
            {
                let state = self.shared.state();
                if !state.is_assigned(tp) {
                    return Err(subscription_error(SubscriptionError::NotAssigned(
                        tp.clone(),
                    )));
                }
                if let Some(position) = state.position(tp) {
                    return Ok(position);
                }
            }
            fetcher::update_positions(&self.shared).await?;
        }
    }

    /// The group's committed offsets of `tps` (`None`: nothing committed). Needs a `group_id`.
    pub async fn committed(
        &self,
        tps: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>> {
        self.check_open()?;
        let found = group::fetch_committed(&self.shared, tps).await?;
        Ok(tps
            .iter()
            .map(|tp| (tp.clone(), found.get(tp).copied().flatten()))
            .collect())
    }

    /// Commits the position of every assigned partition and waits for the coordinator.
    pub async fn commit(&self) -> Result<()> {
        self.check_open()?;
        let offsets = group::consumed_offsets(&self.shared.state());
        group::commit(&self.shared, &offsets).await
    }

    /// Commits the given next-offsets-to-read and waits for the coordinator.
    pub async fn commit_offsets(&self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        self.check_open()?;
        if let Some((tp, offset)) = offsets.iter().find(|(_, offset)| *offset < 0) {
            return Err(ClientError::InvalidArgument(format!(
                "cannot commit negative offset {offset} for {tp}"
            )));
        }
        let offsets: Vec<(TopicPartition, i64, Option<i32>)> = offsets
            .iter()
            .map(|(tp, offset)| (tp.clone(), *offset, None))
            .collect();
        group::commit(&self.shared, &offsets).await
    }

    /// Commits the position of every assigned partition in the background; a failure is
    /// logged, not returned.
    pub fn commit_async(&self) {
        if self.shared.is_closed() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let offsets = group::consumed_offsets(&shared.state());
        tokio::spawn(async move {
            if let Err(error) = group::commit(&shared, &offsets).await {
                tracing::warn!(%error, "asynchronous commit failed");
            }
        });
    }

    /// Stops the consumer: commits positions if auto-commit is on, tells the listener its
    /// partitions are revoked, and leaves the group. Every later call fails with
    /// [`ClientError::Closed`].
    pub async fn close(&self) -> Result<()> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let _no_poll = self.shared.poll_lock.lock().await;
        lock(&self.shared.fetches).cancel();
        let task = lock(&self.shared.task).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        let mut result = Ok(());
        let grouped = matches!(
            self.shared.state().subscribed(),
            Subscribed::Topics(_) | Subscribed::Pattern(_)
        );
        if self.shared.config.enable_auto_commit && self.shared.config.group_id.is_some() {
            let offsets = group::consumed_offsets(&self.shared.state());
            let in_generation = !grouped || self.shared.membership().generation >= 0;
            if !offsets.is_empty() && in_generation {
                result = group::commit(&self.shared, &offsets).await;
            }
        }
        let revoked: Vec<TopicPartition> = {
            let mut state = self.shared.state();
            let revoked = state.assigned_partitions().cloned().collect();
            state.unsubscribe();
            revoked
        };
        if grouped {
            if let Some(listener) = self.shared.listener() {
                if !revoked.is_empty() {
                    listener.on_partitions_revoked(&revoked);
                }
            }
            let left = match self.shared.config.group_protocol {
                GroupProtocol::Classic => group::leave(&self.shared).await,
                GroupProtocol::Consumer => kip848::leave(&self.shared).await,
            };
            if let Err(error) = left {
                tracing::debug!(%error, "leaving the group failed; the session will expire");
            }
        }
        result
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        lock(&self.shared.fetches).cancel();
        if let Some(task) = lock(&self.shared.task).take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::assignor::RoundRobinAssignor;
    use super::*;

    #[test]
    fn settings_match_the_fields() {
        // Destructured without `..`: a new field fails to compile here until it is listed.
        let ConsumerConfig {
            client: _,
            group_id,
            group_instance_id,
            group_protocol,
            assignors,
            server_assignor,
            session_timeout,
            heartbeat_interval,
            rebalance_timeout,
            auto_offset_reset,
            enable_auto_commit,
            auto_commit_interval,
            isolation_level,
            fetch_min_bytes,
            fetch_max_bytes,
            max_partition_fetch_bytes,
            fetch_max_wait,
        } = ConsumerConfig::new("h:1");
        let ms = |d: Duration| Some(SettingDoc::millis(d));
        let group_protocol = match group_protocol {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
        };
        let isolation_level = match isolation_level {
            IsolationLevel::ReadUncommitted => "read_uncommitted",
            IsolationLevel::ReadCommitted => "read_committed",
        };
        let assignors: Vec<&str> = assignors.iter().map(|a| a.name()).collect();
        let actual = [
            ("client", None),
            ("group_id", Some(group_id.unwrap_or_default())),
            (
                "group_instance_id",
                Some(group_instance_id.unwrap_or_default()),
            ),
            ("group_protocol", Some(group_protocol.to_owned())),
            ("assignors", Some(assignors.join(", "))),
            ("server_assignor", Some(server_assignor.unwrap_or_default())),
            ("session_timeout", ms(session_timeout)),
            ("heartbeat_interval", ms(heartbeat_interval)),
            ("rebalance_timeout", ms(rebalance_timeout)),
            (
                "auto_offset_reset",
                Some(auto_offset_reset.as_str().to_owned()),
            ),
            ("enable_auto_commit", Some(enable_auto_commit.to_string())),
            ("auto_commit_interval", ms(auto_commit_interval)),
            ("isolation_level", Some(isolation_level.to_owned())),
            ("fetch_min_bytes", Some(fetch_min_bytes.to_string())),
            ("fetch_max_bytes", Some(fetch_max_bytes.to_string())),
            (
                "max_partition_fetch_bytes",
                Some(max_partition_fetch_bytes.to_string()),
            ),
            ("fetch_max_wait", ms(fetch_max_wait)),
        ];
        let problems = SettingDoc::mismatches(ConsumerConfig::SETTINGS, &actual);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn defaults_follow_the_java_client() {
        let config = ConsumerConfig::new("b:9092").group("g");
        assert_eq!(config.group_id.as_deref(), Some("g"));
        assert_eq!(config.group_protocol, GroupProtocol::Classic);
        assert_eq!(config.session_timeout, Duration::from_secs(45));
        assert_eq!(config.heartbeat_interval, Duration::from_secs(3));
        assert_eq!(config.rebalance_timeout, Duration::from_secs(300));
        assert_eq!(config.auto_offset_reset, OffsetReset::Latest);
        assert!(config.enable_auto_commit);
        assert_eq!(config.fetch_max_bytes, 50 * 1024 * 1024);
        assert_eq!(config.max_partition_fetch_bytes, 1024 * 1024);
    }

    #[test]
    fn the_group_is_cooperative_only_when_every_assignor_is() {
        let mut config = ConsumerConfig::new("b:9092");
        assert_eq!(config.rebalance_protocol(), RebalanceProtocol::Eager);
        config.assignors = vec![Arc::new(CooperativeStickyAssignor)];
        assert_eq!(config.rebalance_protocol(), RebalanceProtocol::Cooperative);
        config.assignors = vec![Arc::new(RoundRobinAssignor)];
        assert_eq!(config.rebalance_protocol(), RebalanceProtocol::Eager);
        config.assignors.clear();
        assert_eq!(config.rebalance_protocol(), RebalanceProtocol::Eager);
    }
}
