//! Kafka's bundled predicates (`org.apache.kafka.connect.transforms.predicates.*`), which
//! decide whether a transform applies to a record: `TopicNameMatches`, `HasHeaderKey`,
//! `RecordIsTombstone`.

use regex::Regex;

use super::{Defs, Predicate, Props};
use crate::config::{ConfigError, ConfigType, Importance, Validator};
use crate::data::ConnectRecord;

/// `TopicNameMatches`: whether the whole topic name matches a regular expression (the
/// `regex` crate's syntax, Java's but for look-around and backreferences).
#[derive(Debug)]
pub(crate) struct TopicNameMatches {
    /// The pattern anchored at both ends, as Java's `Matcher.matches` requires.
    whole: Regex,
}

impl TopicNameMatches {
    pub(crate) fn define(defs: Defs) -> Defs {
        defs.key(
            "pattern",
            ConfigType::String,
            None,
            Importance::Medium,
            "The regular expression a record's topic must match, whole.",
        )
        .validated(Validator::Regex)
    }

    pub(crate) fn build(props: &Props) -> Result<Box<dyn Predicate>, ConfigError> {
        let pattern = props.required("pattern")?;
        if pattern.is_empty() {
            return Err(props.invalid("pattern", pattern, "String must be non-empty"));
        }
        let invalid = |e: regex::Error| {
            props.invalid(
                "pattern",
                pattern,
                &format!("not a valid regular expression: {e}"),
            )
        };
        Regex::new(pattern).map_err(invalid)?;
        let whole = Regex::new(&format!(r"\A(?:{pattern})\z")).map_err(invalid)?;
        Ok(Box::new(TopicNameMatches { whole }))
    }
}

impl Predicate for TopicNameMatches {
    fn test(&self, record: &ConnectRecord) -> bool {
        self.whole.is_match(&record.topic)
    }
}

/// `HasHeaderKey`: whether the record has at least one header with the given key.
#[derive(Debug)]
pub(crate) struct HasHeaderKey {
    name: String,
}

impl HasHeaderKey {
    pub(crate) fn define(defs: Defs) -> Defs {
        defs.key(
            "name",
            ConfigType::String,
            None,
            Importance::Medium,
            "The header key to look for.",
        )
        .validated(Validator::NonEmpty)
    }

    pub(crate) fn build(props: &Props) -> Result<Box<dyn Predicate>, ConfigError> {
        let name = props.required("name")?;
        if name.trim().is_empty() {
            return Err(props.invalid("name", name, "String must be non-empty"));
        }
        Ok(Box::new(HasHeaderKey {
            name: name.to_owned(),
        }))
    }
}

impl Predicate for HasHeaderKey {
    fn test(&self, record: &ConnectRecord) -> bool {
        record.headers.iter().any(|h| h.key == self.name)
    }
}

/// `RecordIsTombstone`: whether the record's value is null.
#[derive(Debug)]
pub(crate) struct RecordIsTombstone;

impl RecordIsTombstone {
    pub(crate) fn define(defs: Defs) -> Defs {
        defs
    }

    pub(crate) fn build(_props: &Props) -> Result<Box<dyn Predicate>, ConfigError> {
        Ok(Box::new(RecordIsTombstone))
    }
}

impl Predicate for RecordIsTombstone {
    fn test(&self, record: &ConnectRecord) -> bool {
        record.value.value.is_null()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Configs;
    use crate::data::{Header, SchemaAndValue, Value};

    fn predicate(pairs: &[(&str, &str)]) -> Result<Box<dyn Predicate>, ConfigError> {
        let mut configs = Configs::new();
        for (k, v) in pairs {
            configs.set(format!("predicates.p.{k}"), *v);
        }
        let props = Props::new(&configs, "predicates.p.");
        match props.get("type") {
            Some("TopicNameMatches") => TopicNameMatches::build(&props),
            Some("HasHeaderKey") => HasHeaderKey::build(&props),
            _ => RecordIsTombstone::build(&props),
        }
    }

    #[test]
    fn topic_name_matches_the_whole_name() {
        let p = predicate(&[("type", "TopicNameMatches"), ("pattern", "orders|pay.*")]).unwrap();
        let record = |topic: &str| ConnectRecord::new(topic, SchemaAndValue::null());
        assert!(p.test(&record("orders")));
        assert!(p.test(&record("payments")));
        assert!(!p.test(&record("orders-eu")));
        assert!(!p.test(&record("old-payments")));
        let e = predicate(&[("type", "TopicNameMatches"), ("pattern", "[")]).unwrap_err();
        assert_eq!(e.key, "predicates.p.pattern");
        let e = predicate(&[("type", "TopicNameMatches"), ("pattern", "")]).unwrap_err();
        assert!(e.message.contains("non-empty"));
        let e = predicate(&[("type", "TopicNameMatches")]).unwrap_err();
        assert_eq!(
            e.message,
            "Missing required configuration \"predicates.p.pattern\" which has no default value."
        );
    }

    #[test]
    fn has_header_key_and_record_is_tombstone() {
        let p = predicate(&[("type", "HasHeaderKey"), ("name", "trace")]).unwrap();
        let mut record = ConnectRecord::new("t", SchemaAndValue::null());
        assert!(!p.test(&record));
        record.headers.push(Header {
            key: "trace".into(),
            value: None,
        });
        assert!(p.test(&record));
        assert!(predicate(&[("type", "HasHeaderKey"), ("name", " ")]).is_err());

        let tombstone = predicate(&[]).unwrap();
        assert!(tombstone.test(&record));
        record.value = SchemaAndValue::new(None, Value::Int32(1));
        assert!(!tombstone.test(&record));
    }
}
