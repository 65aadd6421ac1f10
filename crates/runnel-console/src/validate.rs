//! What the console accepts from a browser, checked before anything reaches the cluster.
//!
//! Every count and size a request names has a ceiling here, so that no request, however it
//! was made, can ask the broker (or the console's own memory) for more than a page needs: a
//! message browse reads at most [`LIMIT_MAX`] records and [`MAX_BYTES_MAX`] bytes, a key
//! search scans at most [`SCAN_MAX`] records. Names are checked as Kafka checks them, so the
//! user reads the console's sentence rather than a broker's error code.

use std::collections::BTreeMap;

use runnel_client::AlterConfigOp;
use serde::Deserialize;

/// Kafka's own limit on a topic name.
pub(crate) const TOPIC_NAME_MAX: usize = 249;
/// Group ids and connector names have no limit in Kafka; a URL needs one.
pub(crate) const ID_MAX: usize = 1024;
/// Partitions a topic created here may have.
pub(crate) const PARTITIONS_MAX: i32 = 10_000;
/// Configs set in one request.
pub(crate) const CONFIGS_MAX: usize = 100;
const CONFIG_NAME_MAX: usize = 255;
const CONFIG_VALUE_MAX: usize = 32 * 1024;

/// Records one browse returns at most, and by default.
pub(crate) const LIMIT_MAX: usize = 500;
pub(crate) const LIMIT_DEFAULT: usize = 50;
/// Bytes (keys, values and headers) one browse holds at most, and by default.
pub(crate) const MAX_BYTES_MAX: usize = 8 * 1024 * 1024;
pub(crate) const MAX_BYTES_DEFAULT: usize = 1024 * 1024;
/// Records a key search looks at, at most and by default.
pub(crate) const SCAN_MAX: usize = 100_000;
pub(crate) const SCAN_DEFAULT: usize = 10_000;
const KEY_MAX: usize = 1024;

/// `Err` with a sentence for a name Kafka would refuse.
pub(crate) fn topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a topic name cannot be empty".to_owned());
    }
    if name.len() > TOPIC_NAME_MAX {
        return Err(format!(
            "a topic name has at most {TOPIC_NAME_MAX} characters, this one {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} cannot be a topic name"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "a topic name has only ASCII letters, digits, '.', '_' and '-', not {bad:?}"
        ));
    }
    Ok(())
}

/// A group id or connector name: not empty, not huge, no control characters.
pub(crate) fn identifier(what: &str, id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("a {what} cannot be empty"));
    }
    if id.len() > ID_MAX {
        return Err(format!("a {what} has at most {ID_MAX} bytes here"));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("a {what} cannot hold control characters"));
    }
    Ok(())
}

fn config_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > CONFIG_NAME_MAX {
        return Err(format!(
            "a config name has 1 to {CONFIG_NAME_MAX} characters"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!("{name:?} is not a config name"));
    }
    Ok(())
}

fn config_value(name: &str, value: &str) -> Result<(), String> {
    if value.len() > CONFIG_VALUE_MAX {
        return Err(format!(
            "the value of {name} has at most {CONFIG_VALUE_MAX} bytes here"
        ));
    }
    Ok(())
}

/// The create-topic form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTopic {
    pub(crate) name: String,
    pub(crate) partitions: i64,
    /// Absent: the broker's default.
    #[serde(default)]
    pub(crate) replication_factor: Option<i64>,
    #[serde(default)]
    pub(crate) configs: BTreeMap<String, String>,
}

impl CreateTopic {
    /// The topic to create, or why not.
    pub(crate) fn check(&self) -> Result<runnel_client::NewTopic, String> {
        topic_name(&self.name)?;
        let partitions = i32::try_from(self.partitions)
            .ok()
            .filter(|p| (1..=PARTITIONS_MAX).contains(p))
            .ok_or_else(|| format!("partitions must be from 1 to {PARTITIONS_MAX}"))?;
        let mut topic = runnel_client::NewTopic::new(self.name.clone(), partitions);
        if let Some(factor) = self.replication_factor {
            let factor = i16::try_from(factor)
                .ok()
                .filter(|f| *f >= 1)
                .ok_or_else(|| format!("the replication factor must be from 1 to {}", i16::MAX))?;
            topic = topic.with_replication_factor(factor);
        }
        if self.configs.len() > CONFIGS_MAX {
            return Err(format!("at most {CONFIGS_MAX} configs at once"));
        }
        for (name, value) in &self.configs {
            config_name(name)?;
            config_value(name, value)?;
            topic = topic.with_config(name.clone(), value.clone());
        }
        Ok(topic)
    }
}

/// The config edit form: values to set and overrides to remove, applied together.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlterConfigs {
    #[serde(default)]
    pub(crate) set: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) delete: Vec<String>,
}

impl AlterConfigs {
    /// The IncrementalAlterConfigs operations, or why not.
    pub(crate) fn check(&self) -> Result<Vec<AlterConfigOp>, String> {
        let count = self.set.len() + self.delete.len();
        if count == 0 {
            return Err("nothing to change".to_owned());
        }
        if count > CONFIGS_MAX {
            return Err(format!("at most {CONFIGS_MAX} configs at once"));
        }
        let mut ops = Vec::with_capacity(count);
        for (name, value) in &self.set {
            config_name(name)?;
            config_value(name, value)?;
            ops.push(AlterConfigOp::set(name.clone(), value.clone()));
        }
        for name in &self.delete {
            config_name(name)?;
            if self.set.contains_key(name) {
                return Err(format!("{name} is both set and deleted"));
            }
            ops.push(AlterConfigOp::delete(name.clone()));
        }
        Ok(ops)
    }
}

/// Where a browse starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// The log start offset.
    Oldest,
    /// Far enough before the high watermark for `limit` records.
    Newest,
    /// This offset (clamped to what the partition holds).
    Offset(i64),
    /// The first record at or after this time, milliseconds since the epoch.
    Timestamp(i64),
}

/// The message browser's query string, as the browser sent it.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct BrowseQuery {
    /// A partition number, or `all` (the default).
    pub(crate) partition: Option<String>,
    /// `newest` (the default), `oldest`, `offset`, `timestamp`.
    pub(crate) mode: Option<String>,
    pub(crate) offset: Option<String>,
    pub(crate) timestamp: Option<String>,
    /// Only records with exactly this key (UTF-8), found by scanning.
    pub(crate) key: Option<String>,
    pub(crate) limit: Option<String>,
    pub(crate) max_bytes: Option<String>,
    /// Records a key search looks at, at most.
    pub(crate) scan: Option<String>,
}

/// A browse, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Browse {
    /// `None`: every partition.
    pub(crate) partition: Option<i32>,
    pub(crate) start: Start,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) limit: usize,
    pub(crate) max_bytes: usize,
    /// Records looked at, at most: `limit` without a key, the scan window with one.
    pub(crate) scan: usize,
}

/// An empty parameter counts as absent: a form sends its empty fields.
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{name} must be a whole number, not {value:?}"))
}

fn bounded(name: &str, value: Option<&str>, default: usize, max: usize) -> Result<usize, String> {
    let Some(value) = value else {
        return Ok(default);
    };
    let parsed: usize = number(name, value)?;
    if parsed == 0 || parsed > max {
        return Err(format!("{name} must be from 1 to {max}"));
    }
    Ok(parsed)
}

impl BrowseQuery {
    /// The browse asked for, or why it cannot be.
    pub(crate) fn check(&self) -> Result<Browse, String> {
        let partition = match present(&self.partition) {
            None | Some("all") => None,
            Some(value) => {
                let partition: i32 = number("partition", value)?;
                if partition < 0 {
                    return Err("partition must be 0 or more, or all".to_owned());
                }
                Some(partition)
            }
        };
        let start = match present(&self.mode).unwrap_or("newest") {
            "newest" => Start::Newest,
            "oldest" => Start::Oldest,
            "offset" => {
                let offset = present(&self.offset).ok_or("mode offset needs an offset")?;
                let offset: i64 = number("offset", offset)?;
                if offset < 0 {
                    return Err("offset must be 0 or more".to_owned());
                }
                Start::Offset(offset)
            }
            "timestamp" => {
                let at = present(&self.timestamp).ok_or("mode timestamp needs a timestamp")?;
                let at: i64 = number("timestamp (milliseconds since 1970)", at)?;
                if at < 0 {
                    return Err("timestamp must be 0 or more".to_owned());
                }
                Start::Timestamp(at)
            }
            other => {
                return Err(format!(
                    "mode is newest, oldest, offset or timestamp, not {other:?}"
                ))
            }
        };
        // A key is matched exactly, spaces included.
        let key = self
            .key
            .as_deref()
            .filter(|key| !key.is_empty())
            .map(|key| key.as_bytes().to_vec());
        if key.as_ref().is_some_and(|key| key.len() > KEY_MAX) {
            return Err(format!("a key to search for has at most {KEY_MAX} bytes"));
        }
        let limit = bounded("limit", present(&self.limit), LIMIT_DEFAULT, LIMIT_MAX)?;
        let max_bytes = bounded(
            "max_bytes",
            present(&self.max_bytes),
            MAX_BYTES_DEFAULT,
            MAX_BYTES_MAX,
        )?;
        let scan = if key.is_some() {
            bounded("scan", present(&self.scan), SCAN_DEFAULT, SCAN_MAX)?
        } else {
            limit
        };
        Ok(Browse {
            partition,
            start,
            key,
            limit,
            max_bytes,
            scan,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rules() {
        assert!(topic_name("orders.v2_eu-1").is_ok());
        assert!(topic_name("").is_err());
        assert!(topic_name(".").is_err());
        assert!(topic_name("..").is_err());
        assert!(topic_name("has space").is_err());
        assert!(topic_name("slash/no").is_err());
        assert!(topic_name("ünïcode").is_err());
        assert!(topic_name(&"a".repeat(TOPIC_NAME_MAX)).is_ok());
        assert!(topic_name(&"a".repeat(TOPIC_NAME_MAX + 1)).is_err());
    }

    #[test]
    fn identifiers_are_bounded_and_printable() {
        assert!(identifier("group id", "billing/eu 1").is_ok());
        assert!(identifier("group id", "").is_err());
        assert!(identifier("group id", "a\nb").is_err());
        assert!(identifier("group id", &"g".repeat(ID_MAX + 1)).is_err());
    }

    fn create(partitions: i64, replication_factor: Option<i64>) -> CreateTopic {
        CreateTopic {
            name: "t".to_owned(),
            partitions,
            replication_factor,
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn created_topics_have_sane_counts() {
        let topic = create(3, Some(1)).check().expect("valid");
        assert_eq!((topic.partitions, topic.replication_factor), (3, 1));
        assert_eq!(
            create(3, None).check().expect("valid").replication_factor,
            -1
        );
        assert!(create(0, None).check().is_err());
        assert!(create(i64::from(PARTITIONS_MAX) + 1, None).check().is_err());
        assert!(create(i64::from(i32::MAX) + 1, None).check().is_err());
        assert!(create(1, Some(0)).check().is_err());
        assert!(create(1, Some(40_000)).check().is_err());
        let mut bad_config = create(1, None);
        bad_config
            .configs
            .insert("retention ms".to_owned(), "1".to_owned());
        assert!(bad_config.check().is_err());
    }

    #[test]
    fn config_changes_are_bounded_and_unambiguous() {
        let mut change = AlterConfigs::default();
        assert!(change.check().is_err(), "nothing to change");
        change
            .set
            .insert("retention.ms".to_owned(), "1000".to_owned());
        change.delete.push("cleanup.policy".to_owned());
        assert_eq!(change.check().expect("valid").len(), 2);
        change.delete.push("retention.ms".to_owned());
        assert!(change.check().is_err(), "set and deleted");
        let huge = AlterConfigs {
            set: (0..=CONFIGS_MAX)
                .map(|i| (format!("c{i}"), "v".to_owned()))
                .collect(),
            delete: Vec::new(),
        };
        assert!(huge.check().is_err());
        let long_value = AlterConfigs {
            set: [("x".to_owned(), "v".repeat(CONFIG_VALUE_MAX + 1))].into(),
            delete: Vec::new(),
        };
        assert!(long_value.check().is_err());
    }

    fn query(pairs: &[(&str, &str)]) -> BrowseQuery {
        let mut query = BrowseQuery::default();
        for (name, value) in pairs {
            let value = Some((*value).to_owned());
            match *name {
                "partition" => query.partition = value,
                "mode" => query.mode = value,
                "offset" => query.offset = value,
                "timestamp" => query.timestamp = value,
                "key" => query.key = value,
                "limit" => query.limit = value,
                "max_bytes" => query.max_bytes = value,
                "scan" => query.scan = value,
                _ => unreachable!("{name}"),
            }
        }
        query
    }

    #[test]
    fn a_browse_defaults_to_the_newest_of_every_partition() {
        let browse = query(&[]).check().expect("valid");
        assert_eq!(
            browse,
            Browse {
                partition: None,
                start: Start::Newest,
                key: None,
                limit: LIMIT_DEFAULT,
                max_bytes: MAX_BYTES_DEFAULT,
                scan: LIMIT_DEFAULT,
            }
        );
        // Empty form fields are absent ones.
        let browse = query(&[("partition", ""), ("limit", " "), ("key", "")])
            .check()
            .expect("valid");
        assert_eq!(
            (browse.partition, browse.limit, browse.key),
            (None, 50, None)
        );
    }

    #[test]
    fn browse_modes_need_their_argument() {
        let at = |pairs: &[(&str, &str)]| query(pairs).check().map(|b| b.start);
        assert_eq!(at(&[("mode", "oldest")]), Ok(Start::Oldest));
        assert_eq!(
            at(&[("mode", "offset"), ("offset", "17")]),
            Ok(Start::Offset(17))
        );
        assert_eq!(
            at(&[("mode", "timestamp"), ("timestamp", "1700000000000")]),
            Ok(Start::Timestamp(1_700_000_000_000))
        );
        assert!(at(&[("mode", "offset")]).is_err());
        assert!(at(&[("mode", "offset"), ("offset", "-1")]).is_err());
        assert!(at(&[("mode", "offset"), ("offset", "ten")]).is_err());
        assert!(at(&[("mode", "timestamp")]).is_err());
        assert!(at(&[("mode", "sideways")]).is_err());
    }

    #[test]
    fn browse_sizes_are_capped_whatever_the_client_claims() {
        let check = |pairs: &[(&str, &str)]| query(pairs).check();
        assert!(check(&[("limit", "0")]).is_err());
        assert!(check(&[("limit", &(LIMIT_MAX + 1).to_string())]).is_err());
        assert!(check(&[("limit", "99999999999999999999999")]).is_err());
        assert!(check(&[("max_bytes", &(MAX_BYTES_MAX + 1).to_string())]).is_err());
        assert!(check(&[("partition", "-2")]).is_err());
        assert!(check(&[("key", &"k".repeat(KEY_MAX + 1))]).is_err());
        assert!(check(&[("key", "k"), ("scan", &(SCAN_MAX + 1).to_string())]).is_err());
        let keyed = check(&[("key", "user-7"), ("partition", "2")]).expect("valid");
        assert_eq!(keyed.key.as_deref(), Some(&b"user-7"[..]));
        assert_eq!(keyed.scan, SCAN_DEFAULT);
        assert_eq!(keyed.partition, Some(2));
    }
}
