//! Topic configs: the keys Runnel knows, their defaults, validation, and how they resolve to the
//! storage settings of a partition log.
//!
//! A topic stores only its overrides. Every other key falls back to the broker's setting (when
//! the operator set one, e.g. `--flush-messages`) or to Kafka's default, and DescribeConfigs
//! reports which of the three a value came from, with the broker-level synonym, as Kafka does.

use std::collections::BTreeMap;

use runnel_record::Compression;
use runnel_storage::LogConfig;

/// How a config value is typed, numbered as DescribeConfigs v3+ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// Where a value came from, numbered as DescribeConfigs reports it (Kafka's own names).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigSource {
    TopicConfig = 1,
    /// Set for one broker at runtime (IncrementalAlterConfigs on broker `N`).
    DynamicBrokerConfig = 2,
    /// Set for every broker at runtime (IncrementalAlterConfigs on broker `""`).
    DynamicDefaultBrokerConfig = 3,
    StaticBrokerConfig = 4,
    DefaultConfig = 5,
}

/// One topic config key.
#[derive(Debug)]
pub struct ConfigDef {
    pub name: &'static str,
    /// The broker-wide key that sets this topic config's default.
    pub broker_synonym: &'static str,
    pub kind: ConfigType,
    pub default: &'static str,
    /// Returns why a value is refused.
    validate: fn(&str) -> Result<(), String>,
    /// The values `validate` takes, for people: `[min,...]` and `[min,...,max]` are checked
    /// against it by `tests::valid_ranges_are_what_validate_takes`.
    pub valid: &'static str,
    pub doc: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";

/// Every topic config Runnel accepts. Values are honoured, except where the doc says the
/// feature arrives later (replication); those are stored so tools round-trip them.
pub static TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        broker_synonym: "log.cleanup.policy",
        kind: ConfigType::List,
        default: "delete",
        validate: validate_cleanup_policy,
        valid: "delete, compact, or both (compact,delete)",
        doc: "delete: old segments are removed by retention (retention.ms, retention.bytes). compact: the cleaner keeps the latest record of every key (and records need keys). compact,delete: both.",
    },
    ConfigDef {
        name: "compression.type",
        broker_synonym: "compression.type",
        kind: ConfigType::String,
        default: "producer",
        validate: validate_compression_type,
        valid: "producer, uncompressed, gzip, snappy, lz4, zstd",
        doc: "producer stores batches as the producer compressed them; uncompressed, gzip, snappy, lz4 or zstd makes the broker recompress batches that use another codec.",
    },
    ConfigDef {
        name: "delete.retention.ms",
        broker_synonym: "log.cleaner.delete.retention.ms",
        kind: ConfigType::Long,
        default: "86400000",
        validate: non_negative_long,
        valid: "[0,...]",
        doc: "Compaction removes a tombstone (a record with a null value) once its timestamp is older than this, so consumers have this long to see the delete.",
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        broker_synonym: "log.segment.delete.delay.ms",
        kind: ConfigType::Long,
        default: "60000",
        validate: non_negative_long,
        valid: "[0,...]",
        doc: "Kept for compatibility; Runnel deletes segment files once no reader holds them.",
    },
    ConfigDef {
        name: "flush.messages",
        broker_synonym: "log.flush.interval.messages",
        kind: ConfigType::Long,
        default: LONG_MAX,
        validate: positive_long,
        valid: "[1,...]",
        doc: "fsync once this many records are unflushed; 1 means every produce is fsynced before it is acknowledged.",
    },
    ConfigDef {
        name: "flush.ms",
        broker_synonym: "log.flush.interval.ms",
        kind: ConfigType::Long,
        default: "1000",
        validate: non_negative_long,
        valid: "[0,...]",
        doc: "fsync when the oldest unflushed record is this old.",
    },
    ConfigDef {
        name: "index.interval.bytes",
        broker_synonym: "log.index.interval.bytes",
        kind: ConfigType::Int,
        default: "4096",
        validate: non_negative_int,
        valid: "[0,...,2147483647]",
        doc: "Bytes of log between offset index entries.",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        broker_synonym: "log.cleaner.max.compaction.lag.ms",
        kind: ConfigType::Long,
        default: LONG_MAX,
        validate: positive_long,
        valid: "[1,...]",
        doc: "Compaction cleans a segment once its newest record is this old, however low the dirty ratio.",
    },
    ConfigDef {
        name: "max.message.bytes",
        broker_synonym: "message.max.bytes",
        kind: ConfigType::Int,
        default: "1048588",
        validate: non_negative_int,
        valid: "[0,...,2147483647]",
        doc: "Largest record batch the topic accepts.",
    },
    ConfigDef {
        name: "message.timestamp.after.max.ms",
        broker_synonym: "log.message.timestamp.after.max.ms",
        kind: ConfigType::Long,
        default: "3600000",
        validate: non_negative_long,
        valid: "[0,...]",
        doc: "How far ahead of the broker's clock a CreateTime record timestamp may be; later ones are refused with INVALID_TIMESTAMP.",
    },
    ConfigDef {
        name: "message.timestamp.before.max.ms",
        broker_synonym: "log.message.timestamp.before.max.ms",
        kind: ConfigType::Long,
        default: LONG_MAX,
        validate: non_negative_long,
        valid: "[0,...]",
        doc: "How far behind the broker's clock a CreateTime record timestamp may be; older ones are refused with INVALID_TIMESTAMP.",
    },
    ConfigDef {
        name: "message.timestamp.type",
        broker_synonym: "log.message.timestamp.type",
        kind: ConfigType::String,
        default: "CreateTime",
        validate: validate_timestamp_type,
        valid: "CreateTime, LogAppendTime",
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's clock.",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        broker_synonym: "log.cleaner.min.cleanable.ratio",
        kind: ConfigType::Double,
        default: "0.5",
        validate: ratio,
        valid: "[0,...,1]",
        doc: "Compaction runs once at least this share of the cleanable log was written since the last pass.",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        broker_synonym: "log.cleaner.min.compaction.lag.ms",
        kind: ConfigType::Long,
        default: "0",
        validate: non_negative_long,
        valid: "[0,...]",
        doc: "A record stays uncompacted (every version readable) at least this long.",
    },
    ConfigDef {
        name: "min.insync.replicas",
        broker_synonym: "min.insync.replicas",
        kind: ConfigType::Int,
        default: "1",
        validate: positive_int,
        valid: "[1,...,2147483647]",
        doc: "acks=all produce fails with NOT_ENOUGH_REPLICAS when fewer replicas are in sync.",
    },
    ConfigDef {
        name: "retention.bytes",
        broker_synonym: "log.retention.bytes",
        kind: ConfigType::Long,
        default: "-1",
        validate: long_or_minus_one,
        valid: "[-1,...]",
        doc: "Largest size a partition keeps before old segments are deleted; -1 is unlimited.",
    },
    ConfigDef {
        name: "retention.ms",
        broker_synonym: "log.retention.ms",
        kind: ConfigType::Long,
        default: "604800000",
        validate: long_or_minus_one,
        valid: "[-1,...]",
        doc: "How long records are kept before their segment is deleted; -1 is forever.",
    },
    ConfigDef {
        name: "segment.bytes",
        broker_synonym: "log.segment.bytes",
        kind: ConfigType::Int,
        default: "1073741824",
        validate: validate_segment_bytes,
        valid: "[1024,...,2147483647]",
        doc: "Size at which a new segment file is started.",
    },
    ConfigDef {
        name: "segment.ms",
        broker_synonym: "log.roll.ms",
        kind: ConfigType::Long,
        default: "604800000",
        validate: positive_long,
        valid: "[1,...]",
        doc: "Age at which a new segment file is started.",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        broker_synonym: "unclean.leader.election.enable",
        kind: ConfigType::Boolean,
        default: "false",
        validate: validate_boolean,
        valid: "true, false",
        doc: "Whether an out-of-sync replica may become leader (replication arrives later).",
    },
];

/// Smallest `segment.bytes` accepted: room for a batch header and an index entry's worth.
pub(crate) const SEGMENT_BYTES_MIN: i64 = 1024;

pub(crate) fn config_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|def| def.name == name)
}

/// Checks one key and value, returning the message for an INVALID_CONFIG answer.
pub(crate) fn validate_entry(name: &str, value: &str) -> Result<(), String> {
    let def = config_def(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    (def.validate)(value)
        .map_err(|reason| format!("Invalid value {value} for configuration {name}: {reason}"))
}

/// The topic config whose broker-level default is broker config `name` (`log.retention.ms`
/// for `retention.ms`): what makes a broker config dynamic.
pub(crate) fn def_by_broker_synonym(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|def| def.broker_synonym == name)
}

/// Broker-wide defaults for topic configs, set by the operator (`--flush-messages` etc.)
/// and at runtime (dynamic broker configs, from the cluster's metadata), and the broker
/// settings every partition log follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerTopicDefaults {
    overrides: BTreeMap<&'static str, String>,
    /// Set at runtime, by topic config name: for this broker, then for every broker.
    for_this_broker: BTreeMap<&'static str, String>,
    for_every_broker: BTreeMap<&'static str, String>,
    /// `producer.id.expiration.ms`.
    pub producer_id_expiration_ms: i64,
}

impl Default for BrokerTopicDefaults {
    fn default() -> Self {
        BrokerTopicDefaults {
            overrides: BTreeMap::new(),
            for_this_broker: BTreeMap::new(),
            for_every_broker: BTreeMap::new(),
            producer_id_expiration_ms: runnel_storage::DEFAULT_PRODUCER_ID_EXPIRATION_MS,
        }
    }
}

impl BrokerTopicDefaults {
    /// Sets the broker-level default of topic config `name`. Unknown names are a programming
    /// error in the caller, which only passes names from [`TOPIC_CONFIGS`].
    pub fn set(&mut self, name: &'static str, value: String) {
        assert!(config_def(name).is_some(), "unknown topic config {name}");
        self.overrides.insert(name, value);
    }

    /// These defaults with the dynamic broker configs the metadata holds, by broker config
    /// name (`log.retention.ms`): for every broker, and for this one. Names that are not the
    /// broker synonym of a topic config are not dynamic here and are left out.
    pub(crate) fn with_dynamic(
        &self,
        every_broker: Option<&BTreeMap<String, String>>,
        this_broker: Option<&BTreeMap<String, String>>,
    ) -> BrokerTopicDefaults {
        let by_topic_name = |configs: Option<&BTreeMap<String, String>>| {
            configs
                .into_iter()
                .flatten()
                .filter_map(|(key, value)| {
                    def_by_broker_synonym(key).map(|def| (def.name, value.clone()))
                })
                .collect()
        };
        BrokerTopicDefaults {
            for_every_broker: by_topic_name(every_broker),
            for_this_broker: by_topic_name(this_broker),
            ..self.clone()
        }
    }

    /// The broker-level values of topic config `name`, the one in force first: set for this
    /// broker at runtime, for every broker at runtime, at start.
    pub(crate) fn layers(&self, name: &str) -> Vec<(String, ConfigSource)> {
        [
            (&self.for_this_broker, ConfigSource::DynamicBrokerConfig),
            (
                &self.for_every_broker,
                ConfigSource::DynamicDefaultBrokerConfig,
            ),
            (&self.overrides, ConfigSource::StaticBrokerConfig),
        ]
        .into_iter()
        .filter_map(|(layer, source)| layer.get(name).map(|value| (value.clone(), source)))
        .collect()
    }
}

/// A resolved value with where it came from.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedConfig {
    pub def: &'static ConfigDef,
    pub value: String,
    pub source: ConfigSource,
    /// Broker-level values under the synonym that the operator set, the one in force first.
    pub broker_layers: Vec<(String, ConfigSource)>,
}

/// Every topic config of a topic, overrides first, then broker defaults, then Kafka's.
pub(crate) fn resolve_all(
    overrides: &BTreeMap<String, String>,
    broker: &BrokerTopicDefaults,
) -> Vec<ResolvedConfig> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let broker_layers = broker.layers(def.name);
            let (value, source) = match (overrides.get(def.name), broker_layers.first()) {
                (Some(value), _) => (value.clone(), ConfigSource::TopicConfig),
                (None, Some((value, source))) => (value.clone(), *source),
                (None, None) => (def.default.to_string(), ConfigSource::DefaultConfig),
            };
            ResolvedConfig {
                def,
                value,
                source,
                broker_layers,
            }
        })
        .collect()
}

/// The settings of a topic that the broker acts on, resolved from its configs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TopicSettings {
    pub log: LogConfig,
    pub max_message_bytes: usize,
    pub log_append_time: bool,
    pub min_insync_replicas: i32,
    /// Whether retention may delete old segments (cleanup.policy contains delete).
    pub retention_deletes: bool,
    /// Whether every record needs a key (cleanup.policy contains compact).
    pub keys_required: bool,
    /// The codec batches are stored with; `None` keeps the producer's (`compression.type`).
    pub compression: Option<Compression>,
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
}

impl TopicSettings {
    pub(crate) fn resolve(
        overrides: &BTreeMap<String, String>,
        broker: &BrokerTopicDefaults,
    ) -> Self {
        let resolved = resolve_all(overrides, broker);
        let get = |name: &str| -> &str {
            resolved
                .iter()
                .find(|entry| entry.def.name == name)
                .map(|entry| entry.value.as_str())
                .unwrap_or_default()
        };
        // Values were validated when they were set; a default is always valid.
        let long = |name: &str| get(name).parse::<i64>().unwrap_or(-1);
        TopicSettings {
            log: LogConfig {
                segment_bytes: long("segment.bytes").max(SEGMENT_BYTES_MIN) as u64,
                segment_ms: long("segment.ms"),
                index_interval_bytes: long("index.interval.bytes").max(0) as u32,
                retention_ms: long("retention.ms"),
                retention_bytes: long("retention.bytes"),
                flush_messages: get("flush.messages").parse::<u64>().unwrap_or(u64::MAX),
                flush_ms: long("flush.ms"),
                producer_id_expiration_ms: broker.producer_id_expiration_ms,
                compact: get("cleanup.policy")
                    .split(',')
                    .any(|p| p.trim() == "compact"),
                delete_retention_ms: long("delete.retention.ms"),
                min_compaction_lag_ms: long("min.compaction.lag.ms"),
                max_compaction_lag_ms: long("max.compaction.lag.ms"),
                min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")
                    .parse::<f64>()
                    .unwrap_or(0.5),
            },
            max_message_bytes: long("max.message.bytes").max(0) as usize,
            log_append_time: get("message.timestamp.type") == "LogAppendTime",
            min_insync_replicas: long("min.insync.replicas") as i32,
            retention_deletes: get("cleanup.policy")
                .split(',')
                .any(|p| p.trim() == "delete"),
            keys_required: get("cleanup.policy")
                .split(',')
                .any(|p| p.trim() == "compact"),
            compression: parse_compression_type(get("compression.type")).unwrap_or(None),
            timestamp_before_max_ms: long("message.timestamp.before.max.ms"),
            timestamp_after_max_ms: long("message.timestamp.after.max.ms"),
        }
    }
}

/// `compression.type` as a codec to store with: `None` for `producer`.
fn parse_compression_type(value: &str) -> Result<Option<Compression>, String> {
    Ok(Some(match value {
        "producer" => return Ok(None),
        "uncompressed" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => return Err("must be one of producer, uncompressed, gzip, snappy, lz4, zstd".into()),
    }))
}

fn parse_long(value: &str) -> Result<i64, String> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| "not a number".to_string())
}

fn non_negative_long(value: &str) -> Result<(), String> {
    match parse_long(value)? {
        n if n >= 0 => Ok(()),
        _ => Err("must be at least 0".into()),
    }
}

fn positive_long(value: &str) -> Result<(), String> {
    match parse_long(value)? {
        n if n >= 1 => Ok(()),
        _ => Err("must be at least 1".into()),
    }
}

fn long_or_minus_one(value: &str) -> Result<(), String> {
    match parse_long(value)? {
        n if n >= -1 => Ok(()),
        _ => Err("must be -1 or at least 0".into()),
    }
}

fn int_at_least(value: &str, min: i64) -> Result<(), String> {
    match parse_long(value)? {
        n if n > i64::from(i32::MAX) => Err("must fit in a 32-bit integer".into()),
        n if n >= min => Ok(()),
        _ => Err(format!("must be at least {min}")),
    }
}

fn non_negative_int(value: &str) -> Result<(), String> {
    int_at_least(value, 0)
}

fn positive_int(value: &str) -> Result<(), String> {
    int_at_least(value, 1)
}

fn validate_segment_bytes(value: &str) -> Result<(), String> {
    int_at_least(value, SEGMENT_BYTES_MIN)
}

fn validate_boolean(value: &str) -> Result<(), String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "false" => Ok(()),
        _ => Err("must be true or false".into()),
    }
}

fn validate_timestamp_type(value: &str) -> Result<(), String> {
    match value {
        "CreateTime" | "LogAppendTime" => Ok(()),
        _ => Err("must be CreateTime or LogAppendTime".into()),
    }
}

fn validate_compression_type(value: &str) -> Result<(), String> {
    parse_compression_type(value).map(drop)
}

fn ratio(value: &str) -> Result<(), String> {
    match value.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(()),
        _ => Err("must be a number from 0 to 1".to_string()),
    }
}

fn validate_cleanup_policy(value: &str) -> Result<(), String> {
    let policies: Vec<&str> = value.split(',').map(str::trim).collect();
    if policies.is_empty() || policies.iter().any(|p| !matches!(*p, "delete" | "compact")) {
        return Err("must be a list of delete and compact".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_resolve_to_kafka_values() {
        let settings = TopicSettings::resolve(&BTreeMap::new(), &BrokerTopicDefaults::default());
        assert_eq!(settings.log.retention_ms, 604_800_000);
        assert_eq!(settings.log.segment_bytes, 1 << 30);
        assert_eq!(settings.max_message_bytes, 1_048_588);
        assert!(!settings.log_append_time);
        assert!(settings.retention_deletes);
    }

    #[test]
    fn topic_override_beats_broker_default() {
        let mut broker = BrokerTopicDefaults::default();
        broker.set("flush.messages", "1".into());
        broker.set("retention.ms", "1000".into());
        let overrides = BTreeMap::from([("retention.ms".to_string(), "5000".to_string())]);
        let resolved = resolve_all(&overrides, &broker);
        let retention = resolved
            .iter()
            .find(|r| r.def.name == "retention.ms")
            .unwrap();
        assert_eq!(
            (retention.value.as_str(), retention.source),
            ("5000", ConfigSource::TopicConfig)
        );
        let flush = resolved
            .iter()
            .find(|r| r.def.name == "flush.messages")
            .unwrap();
        assert_eq!(flush.source, ConfigSource::StaticBrokerConfig);
        assert_eq!(
            TopicSettings::resolve(&overrides, &broker)
                .log
                .flush_messages,
            1
        );
    }

    #[test]
    fn valid_ranges_are_what_validate_takes() {
        for def in TOPIC_CONFIGS {
            let takes = |value: &str| (def.validate)(value).is_ok();
            assert!(takes(def.default), "{} refuses its default", def.name);
            let Some(range) = def
                .valid
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
            else {
                // A list of values: each must be taken.
                for value in def.valid.split(", ").filter(|v| !v.contains(' ')) {
                    assert!(takes(value), "{} refuses {value}", def.name);
                }
                continue;
            };
            let (min, max) = match range.split_once(",...") {
                Some((min, "")) => (min, None),
                Some((min, max)) => (min, max.strip_prefix(',')),
                None => panic!("{}: {range} is not [min,...] or [min,...,max]", def.name),
            };
            let min: i64 = min.parse().expect("a minimum");
            assert!(takes(&min.to_string()), "{} refuses {min}", def.name);
            assert!(
                !takes(&(min - 1).to_string()),
                "{} takes {}",
                def.name,
                min - 1
            );
            if let Some(max) = max {
                let max: i64 = max.parse().expect("a maximum");
                assert!(takes(&max.to_string()), "{} refuses {max}", def.name);
                assert!(
                    !takes(&(max + 1).to_string()),
                    "{} takes {}",
                    def.name,
                    max + 1
                );
            }
        }
    }

    #[test]
    fn bad_values_are_explained() {
        assert!(validate_entry("retention.ms", "-7")
            .unwrap_err()
            .contains("retention.ms"));
        assert!(validate_entry("no.such.config", "1")
            .unwrap_err()
            .contains("Unknown"));
        assert!(validate_entry("segment.bytes", "10").is_err());
        assert!(validate_entry("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate_entry("cleanup.policy", "compact,delete").is_ok());
        assert!(validate_entry("max.message.bytes", "99999999999").is_err());
        for codec in ["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"] {
            assert!(validate_entry("compression.type", codec).is_ok(), "{codec}");
        }
        assert!(validate_entry("compression.type", "brotli").is_err());
    }
}
