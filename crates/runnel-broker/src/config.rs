//! The broker's own settings: where it listens, where data lives, limits, and broker-wide
//! defaults for topic configs. Read from an optional TOML file, then overridden by the command
//! line and `RUNNEL_*` environment variables (the CLI crate does the merging).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::topic_config::BrokerTopicDefaults;

/// Everything `runnel server` can be told. Keys in the TOML file are the flag names.
///
/// Serialize is for the configuration reference, which reads each key's default from
/// `BrokerConfig::default()` as JSON; [`BROKER_SETTINGS`] adds what the struct cannot say.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Address the listener binds (`listeners`).
    pub listen: String,
    /// Address clients are told to connect to (`advertised.listeners`); defaults to `listen`.
    pub advertised_listener: Option<String>,
    /// Where the admin listener (HTTP: `/metrics`, `/health/live`, `/health/ready`) binds, or
    /// `none`. Unset: [`DEFAULT_ADMIN_LISTEN`], Redpanda's admin port, and a node that finds
    /// it taken (another broker on the same machine) runs without one and says so; a
    /// configured address that cannot be bound stops the start.
    pub admin_listen: Option<String>,
    /// Serve the web console on the admin listener, at `/console/`.
    pub console: bool,
    /// A Connect worker's REST API (`http://HOST:PORT`) whose connectors the console shows.
    pub console_connect_url: Option<String>,
    pub data_dir: PathBuf,
    pub node_id: i32,
    /// `broker.rack`: the failure domain this broker is in; a new partition's replicas are
    /// spread over racks before brokers.
    pub rack: Option<String>,
    /// `process.roles`: what this node runs, a broker, a controller, or both.
    pub roles: Vec<ProcessRole>,
    /// The address the controller listener binds: Raft between the controllers and the
    /// brokers' requests to the active controller. Needed with the controller role.
    pub controller_listen: Option<String>,
    /// `controller.quorum.voters`: every controller as `id@host:port`, comma-separated, the
    /// same on every node. None: a single node, which is its own cluster.
    pub controller_quorum: Option<String>,
    /// `default.replication.factor`: replicas of topics created without one.
    pub default_replication_factor: i16,
    /// `broker.session.timeout.ms`: the active controller fences a broker it has not heard
    /// from for this long, and moves its partitions' leadership away.
    pub broker_session_timeout_ms: i64,
    /// How often the active controller tells the other controllers it is alive; they elect a
    /// new one after 3 to 6 of these pass in silence.
    pub controller_heartbeat_ms: u64,
    /// `broker.heartbeat.interval.ms`: how often a broker tells the controller it is alive.
    pub broker_heartbeat_interval_ms: u64,
    /// `replica.lag.time.max.ms`: a follower that has not caught up with its leader for this
    /// long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// Whether a replica counts toward the high watermark only with what it has fsynced
    /// (true, the default: an `acks=all` record survives every replica losing power at
    /// once), or also with what is in its page cache (false: Kafka's behaviour, faster).
    pub replica_fsync: bool,
    /// Partitions of an auto-created topic or a CreateTopics with -1 (`num.partitions`).
    pub num_partitions: i32,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `socket.request.max.bytes`: the largest request frame accepted.
    pub request_max_bytes: usize,
    /// `max.connections`: connections beyond this wait for a slot.
    pub connections_max: usize,
    /// `max.connections.per.ip`: connections from one address beyond this are closed at once;
    /// defaults to `connections_max`.
    pub connections_max_per_ip: Option<usize>,
    /// `connections.max.idle.ms`: a connection with no request in flight and no byte read for
    /// this long is closed.
    pub connections_max_idle_ms: u64,
    /// Once a request's first byte has arrived, the rest must follow within this long, or the
    /// connection is closed (a client that sends 3 bytes and waits holds nothing for long).
    /// Kafka has no such setting; its clients' `request.timeout.ms` is 30 s.
    pub request_read_timeout_ms: u64,
    /// `queued.max.request.bytes`: bytes of requests read but not yet answered, across all
    /// connections; a connection waits (reads nothing) while this is used up. At least
    /// `request_max_bytes`.
    pub queued_max_request_bytes: usize,
    /// `queued.max.requests`: disk jobs waiting for an I/O thread before callers wait.
    pub queued_max_requests: usize,
    /// `num.io.threads`: threads that do every disk operation.
    pub num_io_threads: usize,
    /// `fetch.max.bytes`: the most record bytes one fetch response carries, whatever the
    /// request asks (one batch may exceed it, so a consumer always progresses).
    pub fetch_max_bytes: usize,
    /// The most partitions this broker holds (KIP-578's `max.broker.partitions`). Each keeps
    /// one file open, its active segment's log.
    pub partitions_max: usize,
    /// Sealed segments whose files stay open between uses, over all partitions; beyond it
    /// the least recently opened is closed (only once its data is fsynced) and opened again
    /// when read.
    pub sealed_segment_files_max: usize,
    /// `max.incremental.fetch.session.cache.slots`: open incremental fetch sessions (KIP-227);
    /// 0 turns them off (clients then send full fetches).
    pub max_incremental_fetch_session_cache_slots: usize,
    /// `group.max.size`: members of one classic group.
    pub group_max_size: usize,
    /// `group.consumer.max.size`: members of one KIP-848 consumer group.
    pub group_consumer_max_size: usize,
    /// `log.flush.offset.checkpoint.interval.ms`: how often each partition's recovery point is
    /// written to `partition.checkpoint`.
    pub flush_offset_checkpoint_interval_ms: u64,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: u64,
    /// How often the flush policy (`flush.ms`) and `segment.ms` are checked.
    pub flush_check_interval_ms: u64,
    /// `log.flush.interval.messages`: 1 fsyncs every produce before acknowledging it.
    pub flush_messages: Option<u64>,
    /// `log.flush.interval.ms`.
    pub flush_ms: Option<i64>,
    /// `log.segment.bytes`.
    pub log_segment_bytes: Option<i64>,
    /// `log.retention.ms`.
    pub log_retention_ms: Option<i64>,
    /// `log.retention.bytes`.
    pub log_retention_bytes: Option<i64>,
    /// `message.max.bytes`.
    pub message_max_bytes: Option<i64>,
    /// `compression.type`: the codec batches are stored with (`producer` keeps the client's).
    pub compression_type: Option<String>,
    /// `log.message.timestamp.before.max.ms`.
    pub log_message_timestamp_before_max_ms: Option<i64>,
    /// `log.message.timestamp.after.max.ms`.
    pub log_message_timestamp_after_max_ms: Option<i64>,
    /// `group.initial.rebalance.delay.ms`: how long a classic group starting from empty waits
    /// for more members before its first rebalance.
    pub group_initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i32,
    /// `group.consumer.session.timeout.ms` (KIP-848 groups).
    pub group_consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms` (KIP-848 groups).
    pub group_consumer_heartbeat_interval_ms: i32,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`, fixed at its creation.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.retention.minutes`: how long an empty group's committed offsets are kept.
    pub offsets_retention_minutes: i64,
    /// `offsets.topic.segment.bytes`: segment size of `__consumer_offsets` at its creation
    /// (compaction cleans only sealed segments).
    pub offsets_topic_segment_bytes: i64,
    /// `transaction.state.log.segment.bytes`: the same for `__transaction_state`.
    pub transaction_state_log_segment_bytes: i64,
    /// `producer.id.expiration.ms`: a partition forgets an idempotent producer that has not
    /// written to it for this long.
    pub producer_id_expiration_ms: i64,
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state`, fixed at
    /// its creation.
    pub transaction_state_log_num_partitions: i32,
    /// `transaction.max.timeout.ms`: the longest transaction timeout a producer may ask for.
    pub transaction_max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often transactions
    /// past their timeout are looked for and aborted.
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: u64,
    /// `transactional.id.expiration.ms`: a transactional id with no transaction open and no
    /// change for this long is forgotten.
    pub transactional_id_expiration_ms: i64,
    /// `log.cleaner.backoff.ms`: how often the cleaner looks for compacted partitions dirty
    /// enough to clean.
    pub log_cleaner_backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size`: memory for one compaction pass's key map; a pass
    /// over more distinct keys stops early and the next goes on.
    pub log_cleaner_dedupe_buffer_size: usize,
    /// `log.cleaner.io.max.bytes.per.second`: the cleaner's read and write rate; unlimited
    /// when unset.
    pub log_cleaner_io_max_bytes_per_second: Option<u64>,
    /// For fault-injection tests only: a file where every creation, fsync, rename and
    /// removal of a data file is written down, so that a test can cut a killed broker's
    /// files back to what a power cut would have kept (`runnel_storage::SyncLedgerFileSystem`).
    pub sync_ledger: Option<PathBuf>,
}

/// Whether IncrementalAlterConfigs (`runnel cluster config set`) may change broker config
/// `kafka_name` at runtime, for the whole cluster or one broker: the broker-level defaults of
/// topic configs (`log.retention.ms`, `message.max.bytes`, ...), as in Kafka, where every
/// topic without an override of its own follows them. The broker's own settings (listeners,
/// limits, threads) are read at start only.
pub fn is_dynamic_broker_config(kafka_name: &str) -> bool {
    crate::topic_config::def_by_broker_synonym(kafka_name).is_some()
}

/// What the configuration reference (`runnel docs config-reference`) says of a
/// [`BrokerConfig`] key beyond its flag's help, type and default: Kafka's name for it and the
/// values [`BrokerConfig::validate`] takes. `tests::broker_settings_cover_every_key` holds the
/// table to the struct, so that a new key fails the test until it has an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerSetting {
    /// The TOML key, which is also the flag's name (`--num-partitions`).
    pub key: &'static str,
    /// Kafka's name for the same setting, where Kafka has one.
    pub kafka: Option<&'static str>,
    /// The values taken. `[min,...]` and `[min,...,max]` are checked against `validate` by
    /// `tests::ranges_are_what_validate_takes`; anything else is prose.
    pub valid: &'static str,
}

const fn setting(
    key: &'static str,
    kafka: Option<&'static str>,
    valid: &'static str,
) -> BrokerSetting {
    BrokerSetting { key, kafka, valid }
}

/// Every [`BrokerConfig`] key, in the order of the struct.
pub static BROKER_SETTINGS: &[BrokerSetting] = &[
    setting("listen", Some("listeners"), "HOST:PORT"),
    setting(
        "advertised-listener",
        Some("advertised.listeners"),
        "a HOST:PORT clients can reach (not 0.0.0.0 or ::)",
    ),
    setting("admin-listen", None, "HOST:PORT, or none"),
    setting("console", None, "true or false; needs the admin listener"),
    setting(
        "console-connect-url",
        None,
        "an http:// URL of a Connect worker's REST API",
    ),
    setting("data-dir", Some("log.dirs"), "a directory"),
    setting(
        "node-id",
        Some("node.id"),
        "unique in the cluster; on a controller, one of the controller-quorum ids",
    ),
    setting("rack", Some("broker.rack"), "1 to 255 bytes"),
    setting(
        "roles",
        Some("process.roles"),
        "broker, controller, or both",
    ),
    setting(
        "controller-listen",
        None,
        "HOST:PORT; required with the controller role",
    ),
    setting(
        "controller-quorum",
        Some("controller.quorum.voters"),
        "ID@HOST:PORT,...; required with the controller role",
    ),
    setting(
        "default-replication-factor",
        Some("default.replication.factor"),
        "[1,...,32767]",
    ),
    setting(
        "broker-session-timeout-ms",
        Some("broker.session.timeout.ms"),
        "[100,...]",
    ),
    setting("controller-heartbeat-ms", None, "[10,...]"),
    setting(
        "broker-heartbeat-interval-ms",
        Some("broker.heartbeat.interval.ms"),
        "[10,...]",
    ),
    setting(
        "replica-lag-time-max-ms",
        Some("replica.lag.time.max.ms"),
        "[100,...]",
    ),
    setting("replica-fsync", None, "true, false"),
    setting("num-partitions", Some("num.partitions"), "[1,...]"),
    setting(
        "auto-create-topics",
        Some("auto.create.topics.enable"),
        "true, false",
    ),
    setting(
        "request-max-bytes",
        Some("socket.request.max.bytes"),
        "[1024,...]",
    ),
    setting("connections-max", Some("max.connections"), "[1,...]"),
    setting(
        "connections-max-per-ip",
        Some("max.connections.per.ip"),
        "[1,...]",
    ),
    setting(
        "connections-max-idle-ms",
        Some("connections.max.idle.ms"),
        "[0,...]",
    ),
    setting("request-read-timeout-ms", None, "[0,...]"),
    setting(
        "queued-max-request-bytes",
        Some("queued.max.request.bytes"),
        "request-max-bytes to 4294967295",
    ),
    setting(
        "queued-max-requests",
        Some("queued.max.requests"),
        "[1,...]",
    ),
    setting("num-io-threads", Some("num.io.threads"), "[1,...]"),
    setting(
        "fetch-max-bytes",
        Some("fetch.max.bytes"),
        "[1024,...,1073741823]",
    ),
    setting("partitions-max", None, "[1,...]"),
    setting("sealed-segment-files-max", None, "[1,...]"),
    setting(
        "max-incremental-fetch-session-cache-slots",
        Some("max.incremental.fetch.session.cache.slots"),
        "[0,...]",
    ),
    setting("group-max-size", Some("group.max.size"), "[1,...]"),
    setting(
        "group-consumer-max-size",
        Some("group.consumer.max.size"),
        "[1,...]",
    ),
    setting(
        "flush-offset-checkpoint-interval-ms",
        Some("log.flush.offset.checkpoint.interval.ms"),
        "[0,...]",
    ),
    setting(
        "retention-check-interval-ms",
        Some("log.retention.check.interval.ms"),
        "[0,...]",
    ),
    setting("flush-check-interval-ms", None, "[0,...]"),
    setting(
        "flush-messages",
        Some("log.flush.interval.messages"),
        "[1,...]",
    ),
    setting("flush-ms", Some("log.flush.interval.ms"), "[0,...]"),
    setting(
        "log-segment-bytes",
        Some("log.segment.bytes"),
        "[1024,...,2147483647]",
    ),
    setting("log-retention-ms", Some("log.retention.ms"), "[-1,...]"),
    setting(
        "log-retention-bytes",
        Some("log.retention.bytes"),
        "[-1,...]",
    ),
    setting(
        "message-max-bytes",
        Some("message.max.bytes"),
        "[0,...,2147483647]",
    ),
    setting(
        "compression-type",
        Some("compression.type"),
        "producer, uncompressed, gzip, snappy, lz4, zstd",
    ),
    setting(
        "log-message-timestamp-before-max-ms",
        Some("log.message.timestamp.before.max.ms"),
        "[0,...]",
    ),
    setting(
        "log-message-timestamp-after-max-ms",
        Some("log.message.timestamp.after.max.ms"),
        "[0,...]",
    ),
    setting(
        "group-initial-rebalance-delay-ms",
        Some("group.initial.rebalance.delay.ms"),
        "any",
    ),
    setting(
        "group-min-session-timeout-ms",
        Some("group.min.session.timeout.ms"),
        "at most group-max-session-timeout-ms",
    ),
    setting(
        "group-max-session-timeout-ms",
        Some("group.max.session.timeout.ms"),
        "at least group-min-session-timeout-ms",
    ),
    setting(
        "group-consumer-session-timeout-ms",
        Some("group.consumer.session.timeout.ms"),
        "any",
    ),
    setting(
        "group-consumer-heartbeat-interval-ms",
        Some("group.consumer.heartbeat.interval.ms"),
        "any",
    ),
    setting(
        "offsets-topic-num-partitions",
        Some("offsets.topic.num.partitions"),
        "[1,...]",
    ),
    setting(
        "offsets-retention-minutes",
        Some("offsets.retention.minutes"),
        "any",
    ),
    setting(
        "offsets-topic-segment-bytes",
        Some("offsets.topic.segment.bytes"),
        "[1024,...]",
    ),
    setting(
        "transaction-state-log-segment-bytes",
        Some("transaction.state.log.segment.bytes"),
        "[1024,...]",
    ),
    setting(
        "producer-id-expiration-ms",
        Some("producer.id.expiration.ms"),
        "[1,...]",
    ),
    setting(
        "transaction-state-log-num-partitions",
        Some("transaction.state.log.num.partitions"),
        "[1,...]",
    ),
    setting(
        "transaction-max-timeout-ms",
        Some("transaction.max.timeout.ms"),
        "[1,...]",
    ),
    setting(
        "transaction-abort-timed-out-transaction-cleanup-interval-ms",
        Some("transaction.abort.timed.out.transaction.cleanup.interval.ms"),
        "[0,...]",
    ),
    setting(
        "transactional-id-expiration-ms",
        Some("transactional.id.expiration.ms"),
        "[1,...]",
    ),
    setting(
        "log-cleaner-backoff-ms",
        Some("log.cleaner.backoff.ms"),
        "[0,...]",
    ),
    setting(
        "log-cleaner-dedupe-buffer-size",
        Some("log.cleaner.dedupe.buffer.size"),
        "[0,...]",
    ),
    setting(
        "log-cleaner-io-max-bytes-per-second",
        Some("log.cleaner.io.max.bytes.per.second"),
        "[0,...]",
    ),
    setting("sync-ledger", None, "a file path"),
];

/// Where the admin listener binds when `admin-listen` is not set.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9644";

/// What `admin-listen` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminListen<'a> {
    /// [`DEFAULT_ADMIN_LISTEN`], if it is free.
    Default,
    /// This address, or the start fails.
    At(&'a str),
    Off,
}

impl BrokerConfig {
    /// Where the admin listener binds, as `admin-listen` says.
    pub fn admin_listen(&self) -> AdminListen<'_> {
        match self.admin_listen.as_deref() {
            None => AdminListen::Default,
            Some("none") => AdminListen::Off,
            Some(address) => AdminListen::At(address),
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: "127.0.0.1:9092".into(),
            advertised_listener: None,
            admin_listen: None,
            console: false,
            console_connect_url: None,
            data_dir: PathBuf::from("./runnel-data"),
            node_id: 0,
            rack: None,
            roles: vec![ProcessRole::Broker],
            controller_listen: None,
            controller_quorum: None,
            default_replication_factor: 1,
            broker_session_timeout_ms: 9000,
            controller_heartbeat_ms: 250,
            broker_heartbeat_interval_ms: 2000,
            replica_lag_time_max_ms: 30_000,
            replica_fsync: true,
            num_partitions: 1,
            auto_create_topics: true,
            request_max_bytes: 100 * 1024 * 1024,
            connections_max: 10_000,
            connections_max_per_ip: None,
            connections_max_idle_ms: 600_000,
            request_read_timeout_ms: 30_000,
            queued_max_request_bytes: 512 * 1024 * 1024,
            queued_max_requests: 500,
            num_io_threads: 8,
            fetch_max_bytes: 57_671_680,
            partitions_max: 10_000,
            sealed_segment_files_max: 4096,
            max_incremental_fetch_session_cache_slots: 1000,
            group_max_size: 1000,
            group_consumer_max_size: 1000,
            flush_offset_checkpoint_interval_ms: 60_000,
            retention_check_interval_ms: 300_000,
            flush_check_interval_ms: 100,
            flush_messages: None,
            flush_ms: None,
            log_segment_bytes: None,
            log_retention_ms: None,
            log_retention_bytes: None,
            message_max_bytes: None,
            sync_ledger: None,
            compression_type: None,
            log_message_timestamp_before_max_ms: None,
            log_message_timestamp_after_max_ms: None,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5000,
            offsets_topic_num_partitions: 50,
            offsets_retention_minutes: 10_080,
            offsets_topic_segment_bytes: 100 * 1024 * 1024,
            transaction_state_log_segment_bytes: 100 * 1024 * 1024,
            producer_id_expiration_ms: runnel_storage::DEFAULT_PRODUCER_ID_EXPIRATION_MS,
            transaction_state_log_num_partitions: 50,
            transaction_max_timeout_ms: runnel_group::transactions::DEFAULT_MAX_TIMEOUT_MS,
            transaction_abort_timed_out_transaction_cleanup_interval_ms: 10_000,
            transactional_id_expiration_ms: runnel_group::transactions::DEFAULT_ID_EXPIRATION_MS,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_dedupe_buffer_size: runnel_storage::cleaner::DEFAULT_DEDUPE_BUFFER_BYTES,
            log_cleaner_io_max_bytes_per_second: None,
        }
    }
}

/// What a node runs (Kafka's `process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessRole {
    /// Serves clients and holds partitions.
    Broker,
    /// A voter of the controller quorum, which holds the cluster's metadata.
    Controller,
}

impl std::str::FromStr for ProcessRole {
    type Err = String;

    fn from_str(role: &str) -> Result<Self, Self::Err> {
        match role {
            "broker" => Ok(ProcessRole::Broker),
            "controller" => Ok(ProcessRole::Controller),
            other => Err(format!("'{other}' is not a role: broker or controller")),
        }
    }
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl BrokerConfig {
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// The address put in Metadata responses.
    pub fn advertised(&self) -> &str {
        self.advertised_listener.as_deref().unwrap_or(&self.listen)
    }

    /// `max.connections.per.ip`, resolved.
    pub fn connections_max_per_ip(&self) -> usize {
        self.connections_max_per_ip.unwrap_or(self.connections_max)
    }

    /// Checks values that serde cannot, with messages that name the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.console && self.admin_listen() == AdminListen::Off {
            return Err(ConfigError::Invalid(
                "console is served on the admin listener: admin-listen must not be none".into(),
            ));
        }
        if self.num_partitions < 1 {
            return Err(ConfigError::Invalid(
                "num-partitions must be at least 1".into(),
            ));
        }
        if self.request_max_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "request-max-bytes must be at least 1024".into(),
            ));
        }
        if self.offsets_topic_num_partitions < 1 {
            return Err(ConfigError::Invalid(
                "offsets-topic-num-partitions must be at least 1".into(),
            ));
        }
        if self.transaction_state_log_num_partitions < 1 || self.transaction_max_timeout_ms < 1 {
            return Err(ConfigError::Invalid(
                "transaction-state-log-num-partitions and transaction-max-timeout-ms must be at \
                 least 1"
                    .into(),
            ));
        }
        if self.offsets_topic_segment_bytes < 1024
            || self.transaction_state_log_segment_bytes < 1024
        {
            return Err(ConfigError::Invalid(
                "offsets-topic-segment-bytes and transaction-state-log-segment-bytes must be at \
                 least 1024"
                    .into(),
            ));
        }
        if self.transactional_id_expiration_ms < 1 {
            return Err(ConfigError::Invalid(
                "transactional-id-expiration-ms must be at least 1".into(),
            ));
        }
        if self.producer_id_expiration_ms < 1 {
            return Err(ConfigError::Invalid(
                "producer-id-expiration-ms must be at least 1".into(),
            ));
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return Err(ConfigError::Invalid(
                "group-min-session-timeout-ms must not exceed group-max-session-timeout-ms".into(),
            ));
        }
        if self.connections_max == 0 || self.connections_max_per_ip() == 0 {
            return Err(ConfigError::Invalid(
                "connections-max and connections-max-per-ip must be at least 1".into(),
            ));
        }
        if self.queued_max_request_bytes < self.request_max_bytes {
            return Err(ConfigError::Invalid(format!(
                "queued-max-request-bytes ({}) must be at least request-max-bytes ({}), or the \
                 largest request could never be read",
                self.queued_max_request_bytes, self.request_max_bytes
            )));
        }
        if self.queued_max_request_bytes > u32::MAX as usize {
            return Err(ConfigError::Invalid(
                "queued-max-request-bytes must be at most 4294967295".into(),
            ));
        }
        for (name, value) in [
            ("num-io-threads", self.num_io_threads),
            ("queued-max-requests", self.queued_max_requests),
            ("partitions-max", self.partitions_max),
            ("sealed-segment-files-max", self.sealed_segment_files_max),
            ("group-max-size", self.group_max_size),
            ("group-consumer-max-size", self.group_consumer_max_size),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
            }
        }
        if self.fetch_max_bytes < 1024 || self.fetch_max_bytes > i32::MAX as usize / 2 {
            return Err(ConfigError::Invalid(
                "fetch-max-bytes must be between 1024 and 1073741823".into(),
            ));
        }
        if let Some(rack) = &self.rack {
            if rack.is_empty() || rack.len() > 255 {
                return Err(ConfigError::Invalid(
                    "rack must be between 1 and 255 bytes".into(),
                ));
            }
        }
        check_routable(self.advertised())?;
        self.check_roles()?;
        for (name, value) in self.topic_default_pairs() {
            crate::topic_config::validate_entry(name, &value)
                .map_err(|reason| ConfigError::Invalid(format!("broker default: {reason}")))?;
        }
        Ok(())
    }

    pub fn has_role(&self, role: ProcessRole) -> bool {
        self.roles.contains(&role)
    }

    /// The controller quorum's voters by node id, from `controller-quorum`.
    pub fn voters(&self) -> Result<BTreeMap<u64, String>, ConfigError> {
        let invalid =
            |reason: String| Err(ConfigError::Invalid(format!("controller-quorum: {reason}")));
        let Some(quorum) = &self.controller_quorum else {
            return Ok(BTreeMap::new());
        };
        let mut voters = BTreeMap::new();
        for voter in quorum
            .split(',')
            .map(str::trim)
            .filter(|voter| !voter.is_empty())
        {
            let Some((id, address)) = voter.split_once('@') else {
                return invalid(format!("'{voter}' is not id@host:port"));
            };
            let Ok(id) = id.parse::<u64>() else {
                return invalid(format!("'{id}' in '{voter}' is not a node id"));
            };
            if id > i32::MAX as u64 {
                return invalid(format!("node id {id} is above {}", i32::MAX));
            }
            if address
                .rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
            {
                return invalid(format!("'{address}' in '{voter}' is not host:port"));
            }
            if voters.insert(id, address.to_owned()).is_some() {
                return invalid(format!("node {id} is named twice"));
            }
        }
        if voters.is_empty() {
            return invalid("no voters".into());
        }
        Ok(voters)
    }

    fn check_roles(&self) -> Result<(), ConfigError> {
        let invalid = |reason: &str| Err(ConfigError::Invalid(reason.into()));
        if self.roles.is_empty() {
            return invalid("roles must name broker, controller or both");
        }
        if !(1..=i16::MAX).contains(&self.default_replication_factor) {
            return invalid("default-replication-factor must be at least 1");
        }
        if self.broker_session_timeout_ms < 100 || self.controller_heartbeat_ms < 10 {
            return invalid("broker-session-timeout-ms must be at least 100 and controller-heartbeat-ms at least 10");
        }
        let voters = self.voters()?;
        if self.has_role(ProcessRole::Controller) {
            if voters.is_empty() {
                return invalid("the controller role needs controller-quorum (id@host:port,...)");
            }
            if self.controller_listen.is_none() {
                return invalid("the controller role needs controller-listen");
            }
            if self.node_id < 0 || !voters.contains_key(&(self.node_id as u64)) {
                return Err(ConfigError::Invalid(format!(
                    "node-id {} is not among the controller-quorum voters ({})",
                    self.node_id,
                    self.controller_quorum.as_deref().unwrap_or_default()
                )));
            }
        }
        if self.replica_lag_time_max_ms < 100 || self.broker_heartbeat_interval_ms < 10 {
            return invalid(
                "replica-lag-time-max-ms must be at least 100 and broker-heartbeat-interval-ms at least 10",
            );
        }
        Ok(())
    }

    /// Broker-wide defaults for topic configs, as set by the operator.
    pub fn topic_defaults(&self) -> BrokerTopicDefaults {
        let mut defaults = BrokerTopicDefaults::default();
        defaults.producer_id_expiration_ms = self.producer_id_expiration_ms;
        for (name, value) in self.topic_default_pairs() {
            defaults.set(name, value);
        }
        defaults
    }

    fn topic_default_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        let mut push = |name: &'static str, value: Option<String>| {
            if let Some(value) = value {
                pairs.push((name, value));
            }
        };
        push("flush.messages", self.flush_messages.map(|v| v.to_string()));
        push("flush.ms", self.flush_ms.map(|v| v.to_string()));
        push(
            "segment.bytes",
            self.log_segment_bytes.map(|v| v.to_string()),
        );
        push("retention.ms", self.log_retention_ms.map(|v| v.to_string()));
        push(
            "retention.bytes",
            self.log_retention_bytes.map(|v| v.to_string()),
        );
        push(
            "max.message.bytes",
            self.message_max_bytes.map(|v| v.to_string()),
        );
        push("compression.type", self.compression_type.clone());
        push(
            "message.timestamp.before.max.ms",
            self.log_message_timestamp_before_max_ms
                .map(|v| v.to_string()),
        );
        push(
            "message.timestamp.after.max.ms",
            self.log_message_timestamp_after_max_ms
                .map(|v| v.to_string()),
        );
        pairs
    }
}

/// Refuses an advertised address clients cannot connect to, as Kafka does: the "any" address
/// is for listening only.
fn check_routable(advertised: &str) -> Result<(), ConfigError> {
    let host = advertised
        .rsplit_once(':')
        .map_or(advertised, |(host, _)| host)
        .trim_matches(|c| c == '[' || c == ']');
    let unspecified = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified());
    if unspecified {
        return Err(ConfigError::Invalid(format!(
            "the advertised listener {advertised} uses the non-routable meta-address {host}, \
             which clients cannot connect to: set --advertised-listener to a routable \
             HOST:PORT (listening on {host} is fine)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_controller_is_configured_with_its_quorum_in_toml() -> Result<(), Box<dyn std::error::Error>>
    {
        let config: BrokerConfig = toml::from_str(
            "roles = [\"controller\"]\nnode-id = 2\ncontroller-listen = \"127.0.0.1:9302\"\n\
             controller-quorum = \"1@127.0.0.1:9301, 2@127.0.0.1:9302,3@h3:9303\"",
        )?;
        config.validate()?;
        let voters = config.voters()?;
        assert_eq!(voters.len(), 3);
        assert_eq!(voters[&3], "h3:9303");
        Ok(())
    }

    #[test]
    fn bad_quorums_and_roles_are_refused_with_the_setting_named() {
        let refused = |edit: &dyn Fn(&mut BrokerConfig)| {
            let mut config = BrokerConfig {
                roles: vec![ProcessRole::Controller],
                node_id: 1,
                controller_listen: Some("127.0.0.1:9301".into()),
                controller_quorum: Some("1@127.0.0.1:9301".into()),
                ..BrokerConfig::default()
            };
            assert!(config.validate().is_ok());
            edit(&mut config);
            config
                .validate()
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default()
        };
        assert!(
            refused(&|c| c.controller_quorum = Some("1@nohost".into())).contains("not host:port")
        );
        assert!(refused(&|c| c.controller_quorum = Some("x@h:1".into())).contains("not a node id"));
        assert!(
            refused(&|c| c.controller_quorum = Some("1@h:1,1@h:2".into())).contains("named twice")
        );
        assert!(refused(&|c| c.controller_quorum = None).contains("needs controller-quorum"));
        assert!(refused(&|c| c.controller_listen = None).contains("needs controller-listen"));
        assert!(refused(&|c| c.node_id = 5).contains("not among"));
        assert!(refused(&|c| c.roles.clear()).contains("roles"));
        assert!(refused(&|c| c.replica_lag_time_max_ms = 0).contains("replica-lag-time-max-ms"));
        assert!(refused(&|c| c.roles.push(ProcessRole::Broker)).is_empty());
    }

    /// The default config as JSON with `key` set to `value`, read back as a config; `None`
    /// when the value does not even fit the field's type (which refuses it as surely).
    fn with(key: &str, value: i64) -> Option<BrokerConfig> {
        let mut json = serde_json::to_value(BrokerConfig::default()).expect("serializes");
        json[key] = serde_json::json!(value);
        serde_json::from_value(json).ok()
    }

    #[test]
    fn broker_settings_cover_every_key() {
        let json = serde_json::to_value(BrokerConfig::default()).expect("serializes");
        let keys: Vec<&str> = json
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        let listed: Vec<&str> = BROKER_SETTINGS.iter().map(|s| s.key).collect();
        let mut sorted = listed.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), listed.len(), "a key is listed twice");
        let missing: Vec<&&str> = keys.iter().filter(|k| !listed.contains(k)).collect();
        let extra: Vec<&&str> = listed.iter().filter(|k| !keys.contains(k)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "BROKER_SETTINGS misses {missing:?} and names {extra:?}, which are not keys"
        );
        // And the TOML file really takes the names the table gives.
        let back: BrokerConfig = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, BrokerConfig::default());
    }

    #[test]
    fn ranges_are_what_validate_takes() {
        let mut checked = 0;
        for setting in BROKER_SETTINGS {
            let Some(range) = setting
                .valid
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
            else {
                continue;
            };
            let parts: Vec<&str> = range.split(",...").collect();
            let min: i64 = parts[0].parse().expect("a minimum");
            let max: Option<i64> = parts
                .get(1)
                .and_then(|m| m.strip_prefix(','))
                .map(|m| m.parse().expect("a maximum"));
            let key = setting.key;
            let takes = |value: i64| with(key, value).is_some_and(|c| c.validate().is_ok());
            assert!(takes(min), "{key} refuses its minimum {min}");
            assert!(!takes(min - 1), "{key} takes {}, below [{range}]", min - 1);
            if let Some(max) = max {
                assert!(takes(max), "{key} refuses its maximum {max}");
                assert!(!takes(max + 1), "{key} takes {}, above [{range}]", max + 1);
            }
            checked += 1;
        }
        assert!(checked > 30, "only {checked} ranges were checked");
    }

    #[test]
    fn toml_keys_are_flag_names() {
        let config: BrokerConfig =
            toml::from_str("listen = \"0.0.0.0:9999\"\nflush-messages = 1\ndata-dir = \"/tmp/x\"")
                .unwrap();
        assert_eq!(config.listen, "0.0.0.0:9999");
        assert_eq!(config.flush_messages, Some(1));
        assert_eq!(config.advertised(), "0.0.0.0:9999");
        assert!(toml::from_str::<BrokerConfig>("no-such-key = 1").is_err());
    }

    #[test]
    fn any_address_is_not_advertised() {
        let listening_everywhere = BrokerConfig {
            listen: "0.0.0.0:9092".into(),
            ..BrokerConfig::default()
        };
        let error = listening_everywhere.validate().unwrap_err().to_string();
        assert!(error.contains("--advertised-listener"), "{error}");
        let advertised = BrokerConfig {
            advertised_listener: Some("broker1.example.com:9092".into()),
            ..listening_everywhere
        };
        assert!(advertised.validate().is_ok());
        let ipv6 = BrokerConfig {
            listen: "[::]:9092".into(),
            ..BrokerConfig::default()
        };
        assert!(ipv6.validate().is_err());
    }

    #[test]
    fn invalid_topic_default_is_named() {
        let config = BrokerConfig {
            log_segment_bytes: Some(3),
            ..BrokerConfig::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("segment.bytes"));
    }
}
