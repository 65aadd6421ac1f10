//! Per-partition log configuration, named after Kafka's topic configs.

/// The topic-level settings that govern one partition's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll a new segment before the active one would grow past this.
    /// Capped at `u32::MAX` in effect, because index positions are 32-bit.
    pub segment_bytes: u64,
    /// `segment.ms`: roll a new segment once the active one's first append is this old.
    pub segment_ms: i64,
    /// `index.interval.bytes`: at most one offset-index (and time-index) entry per this many
    /// bytes of log. Smaller means faster lookups and bigger index files.
    pub index_interval_bytes: u32,
    /// `retention.ms`: delete segments whose newest record is older than this; -1 = forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while the log is larger than this;
    /// -1 = unlimited.
    pub retention_bytes: i64,
    /// `flush.messages`: fsync once this many records are unflushed. 1 = before every
    /// acknowledgement; `u64::MAX` = never because of the count.
    pub flush_messages: u64,
    /// `flush.ms`: fsync once the oldest unflushed append is this old.
    pub flush_ms: i64,
    /// `producer.id.expiration.ms` (a broker setting in Kafka): forget an idempotent producer
    /// that has not appended for this long.
    pub producer_id_expiration_ms: i64,
    /// `cleanup.policy` has `compact`: the cleaner keeps the latest record of each key.
    pub compact: bool,
    /// `delete.retention.ms`: compaction removes a tombstone whose timestamp is older.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: a record stays uncompacted at least this long.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a record stays uncompacted at most about this long, however
    /// low the dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: compact once this share of the cleanable log is new
    /// since the last compaction.
    pub min_cleanable_dirty_ratio: f64,
}

/// 1 GiB, Kafka's `segment.bytes` default.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;
/// Seven days, Kafka's `segment.ms` and `retention.ms` default.
pub const DEFAULT_SEGMENT_MS: i64 = 7 * 24 * 60 * 60 * 1000;
pub const DEFAULT_INDEX_INTERVAL_BYTES: u32 = 4096;
pub const DEFAULT_RETENTION_MS: i64 = DEFAULT_SEGMENT_MS;
/// See [`LogConfig::default`] for why Runnel flushes by time by default when Kafka does not.
pub const DEFAULT_FLUSH_MS: i64 = 1000;

// Index entries store positions as u32; a default that needs more would corrupt every index.
const _: () = assert!(DEFAULT_SEGMENT_BYTES <= u32::MAX as u64);
const _: () = assert!((DEFAULT_INDEX_INTERVAL_BYTES as u64) < DEFAULT_SEGMENT_BYTES);

impl Default for LogConfig {
    /// Kafka's defaults, except `flush.ms`: Kafka leaves flushing to the OS, Runnel fsyncs at
    /// least once a second. That bounds what a power failure can lose to about a second of
    /// acknowledged writes; a process crash loses nothing, because the page cache survives it.
    fn default() -> Self {
        LogConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: DEFAULT_SEGMENT_MS,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            retention_ms: DEFAULT_RETENTION_MS,
            retention_bytes: -1,
            flush_messages: u64::MAX,
            flush_ms: DEFAULT_FLUSH_MS,
            producer_id_expiration_ms: crate::producers::DEFAULT_PRODUCER_ID_EXPIRATION_MS,
            compact: false,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}
