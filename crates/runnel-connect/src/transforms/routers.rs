//! The transforms that act on a record as a whole rather than on its key or value: the
//! routers that rename its topic (`RegexRouter`, `TimestampRouter`), `Filter` which drops
//! it, and the header transforms (`InsertHeader`, `DropHeaders`).
//!
//! `RegexRouter` takes a Java regular expression and a Java replacement string. The
//! expression is compiled by the `regex` crate, whose syntax is Java's for all common
//! constructs (classes, groups, named groups `(?<name>...)`, quantifiers, anchors) but
//! which has no look-around and no backreferences; such a pattern is a configuration
//! error. The replacement is read with Java's rules (`$1`, `$12` when there are twelve
//! groups, `${name}`, `\$` for a dollar), not the `regex` crate's.

use regex::Regex;

use super::datetime::DateFormat;
use super::{Defs, Props, Transformation};
use crate::config::{ConfigError, ConfigType, Importance, Validator};
use crate::connector::ConnectError;
use crate::data::{ConnectRecord, Header};

// ---------------------------------------------------------------------------------------
// RegexRouter

/// `RegexRouter`: renames the topics the regex matches whole, with the replacement.
#[derive(Debug)]
pub(crate) struct RegexRouter {
    /// The pattern anchored at both ends: whether a topic is routed at all.
    whole: Regex,
    /// The pattern as written: what the replacement replaces (its first match).
    pattern: Regex,
    replacement: Vec<Piece>,
}

/// A part of a Java replacement string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Literal(String),
    Group(usize),
    Named(String),
}

impl RegexRouter {
    pub(crate) fn define(defs: Defs) -> Defs {
        defs.key(
            "regex",
            ConfigType::String,
            None,
            Importance::High,
            "The regular expression a topic must match, whole, to be renamed.",
        )
        .validated(Validator::Regex)
        .key(
            "replacement",
            ConfigType::String,
            None,
            Importance::High,
            "The new topic name; `$1`, `${name}` insert the pattern's groups.",
        )
    }

    pub(crate) fn build(props: &Props) -> Result<Box<dyn Transformation>, ConfigError> {
        let text = props.required("regex")?;
        // Worded as the `Regex` validator of `define` words it, so that a validation that
        // runs both reports the error once.
        let invalid = |e: regex::Error| {
            props.invalid(
                "regex",
                text,
                &format!("not a valid regular expression: {e}"),
            )
        };
        let pattern = Regex::new(text).map_err(invalid)?;
        let whole = Regex::new(&format!(r"\A(?:{text})\z")).map_err(invalid)?;
        let replacement_text = props.required("replacement")?;
        let replacement = parse_replacement(replacement_text, &pattern)
            .map_err(|why| props.invalid("replacement", replacement_text, &why))?;
        Ok(Box::new(RegexRouter {
            whole,
            pattern,
            replacement,
        }))
    }
}

impl Transformation for RegexRouter {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        if !self.whole.is_match(&record.topic) {
            return Ok(Some(record));
        }
        // As Java's `Matcher.replaceFirst` after `matches`: the first match is replaced,
        // which may be shorter than the topic (`a|ab` on `ab` replaces `a`).
        if let Some(captures) = self.pattern.captures(&record.topic) {
            if let Some(matched) = captures.get(0) {
                let mut topic = String::with_capacity(record.topic.len());
                topic.push_str(&record.topic[..matched.start()]);
                for piece in &self.replacement {
                    match piece {
                        Piece::Literal(text) => topic.push_str(text),
                        Piece::Group(index) => {
                            topic.push_str(captures.get(*index).map_or("", |m| m.as_str()));
                        }
                        Piece::Named(name) => {
                            topic.push_str(captures.name(name).map_or("", |m| m.as_str()));
                        }
                    }
                }
                topic.push_str(&record.topic[matched.end()..]);
                record.topic = topic;
            }
        }
        Ok(Some(record))
    }
}

/// Reads a Java replacement string against `pattern`, with Java's rules: `\x` is `x`;
/// `$` and digits name a group, as many digits as still name an existing group (`$10` is
/// group 1 then `0` with fewer than ten groups); `${name}` names a named group. Errors are
/// Java's, raised here at configuration rather than on the first record.
pub(crate) fn parse_replacement(replacement: &str, pattern: &Regex) -> Result<Vec<Piece>, String> {
    let group_count = pattern.captures_len().saturating_sub(1);
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => literal.push(escaped),
                None => return Err("character to be escaped is missing".to_owned()),
            },
            '$' => {
                let piece = match chars.next() {
                    None => {
                        return Err("Illegal group reference: group index is missing".to_owned())
                    }
                    Some('{') => {
                        let mut name = String::new();
                        while let Some(&next) = chars.peek() {
                            if !next.is_ascii_alphanumeric() {
                                break;
                            }
                            name.push(next);
                            chars.next();
                        }
                        if name.is_empty() {
                            return Err("named capturing group has 0 length name".to_owned());
                        }
                        if chars.next() != Some('}') {
                            return Err("named capturing group is missing trailing '}'".to_owned());
                        }
                        if name.starts_with(|c: char| c.is_ascii_digit()) {
                            return Err(format!(
                                "capturing group name {{{name}}} starts with digit character"
                            ));
                        }
                        if !pattern.capture_names().any(|n| n == Some(name.as_str())) {
                            return Err(format!("No group with name {{{name}}}"));
                        }
                        Piece::Named(name)
                    }
                    Some(digit @ '0'..='9') => {
                        let mut group = digit as usize - '0' as usize;
                        while let Some(next) = chars.peek().and_then(|c| c.to_digit(10)) {
                            let longer = group.saturating_mul(10).saturating_add(next as usize);
                            if longer > group_count {
                                break;
                            }
                            group = longer;
                            chars.next();
                        }
                        if group > group_count {
                            return Err(format!("No group {group}"));
                        }
                        Piece::Group(group)
                    }
                    Some(_) => return Err("Illegal group reference".to_owned()),
                };
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(piece);
            }
            other => literal.push(other),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

// ---------------------------------------------------------------------------------------
// TimestampRouter

/// `TimestampRouter`: renames every topic from a format of the topic and the record's
/// timestamp (`${topic}-${timestamp}`), e.g. to route records to daily tables or indexes.
#[derive(Debug)]
pub(crate) struct TimestampRouter {
    topic_format: String,
    timestamp_format: DateFormat,
}

impl TimestampRouter {
    pub(crate) fn define(defs: Defs) -> Defs {
        defs.key(
            "topic.format",
            ConfigType::String,
            Some("${topic}-${timestamp}"),
            Importance::High,
            "The new topic name, where `${topic}` is the topic and `${timestamp}` the formatted \
             timestamp.",
        )
        .key(
            "timestamp.format",
            ConfigType::String,
            Some("yyyyMMdd"),
            Importance::High,
            "How `${timestamp}` is written: a Java SimpleDateFormat pattern, in UTC.",
        )
    }

    pub(crate) fn build(props: &Props) -> Result<Box<dyn Transformation>, ConfigError> {
        let pattern = props.get("timestamp.format").unwrap_or("yyyyMMdd");
        let timestamp_format = DateFormat::parse(pattern)
            .map_err(|why| props.invalid("timestamp.format", pattern, &why))?;
        Ok(Box::new(TimestampRouter {
            topic_format: props
                .get("topic.format")
                .unwrap_or("${topic}-${timestamp}")
                .to_owned(),
            timestamp_format,
        }))
    }
}

impl Transformation for TimestampRouter {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        let Some(timestamp) = record.timestamp else {
            return Err(ConnectError::failed(format!(
                "Timestamp missing on record: topic {}, partition {}",
                record.topic,
                record
                    .partition
                    .map_or_else(|| "none".to_owned(), |p| p.to_string())
            )));
        };
        // One placeholder after the other, as Kafka substitutes them.
        let topic = self
            .topic_format
            .replace("${topic}", &record.topic)
            .replace("${timestamp}", &self.timestamp_format.format(timestamp));
        record.topic = topic;
        Ok(Some(record))
    }
}

// ---------------------------------------------------------------------------------------
// Filter

/// `Filter`: drops every record it sees; with a predicate, those it matches (or, negated,
/// those it does not).
#[derive(Debug)]
pub(crate) struct Filter;

impl Filter {
    pub(crate) fn define(defs: Defs) -> Defs {
        defs
    }

    pub(crate) fn build(_props: &Props) -> Result<Box<dyn Transformation>, ConfigError> {
        Ok(Box::new(Filter))
    }
}

impl Transformation for Filter {
    fn apply(&self, _record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        Ok(None)
    }
}

// ---------------------------------------------------------------------------------------
// InsertHeader and DropHeaders

/// `InsertHeader`: adds a header with a fixed value to every record.
///
/// Kafka parses the literal into a typed header value, which its default header converter
/// writes back as text; headers here are bytes, so the literal's UTF-8 is the value, which
/// is the same bytes for any literal but oddly spaced structured ones (`[1, 2]`).
#[derive(Debug)]
pub(crate) struct InsertHeader {
    header: String,
    value: Vec<u8>,
}

impl InsertHeader {
    pub(crate) fn define(defs: Defs) -> Defs {
        defs.key(
            "header",
            ConfigType::String,
            None,
            Importance::High,
            "The header's key.",
        )
        .key(
            "value.literal",
            ConfigType::String,
            None,
            Importance::High,
            "The header's value on every record.",
        )
    }

    pub(crate) fn build(props: &Props) -> Result<Box<dyn Transformation>, ConfigError> {
        Ok(Box::new(InsertHeader {
            header: props.required("header")?.to_owned(),
            value: props.required("value.literal")?.as_bytes().to_vec(),
        }))
    }
}

impl Transformation for InsertHeader {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        record.headers.push(Header {
            key: self.header.clone(),
            value: Some(self.value.clone()),
        });
        Ok(Some(record))
    }
}

/// `DropHeaders`: removes every header with one of the given keys.
#[derive(Debug)]
pub(crate) struct DropHeaders {
    headers: Vec<String>,
}

impl DropHeaders {
    pub(crate) fn define(defs: Defs) -> Defs {
        defs.key(
            "headers",
            ConfigType::List,
            None,
            Importance::High,
            "The keys of the headers to remove.",
        )
        .validated(Validator::NonEmpty)
    }

    pub(crate) fn build(props: &Props) -> Result<Box<dyn Transformation>, ConfigError> {
        Ok(Box::new(DropHeaders {
            headers: props.required_list("headers")?,
        }))
    }
}

impl Transformation for DropHeaders {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        record.headers.retain(|h| !self.headers.contains(&h.key));
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Configs;
    use crate::data::SchemaAndValue;
    use crate::transforms::TransformChain;

    fn configs(pairs: &[(&str, &str)]) -> Configs {
        let mut configs = Configs::new();
        configs.set("transforms", "r");
        for (k, v) in pairs {
            configs.set(format!("transforms.r.{k}"), *v);
        }
        configs
    }

    fn chain(pairs: &[(&str, &str)]) -> TransformChain {
        TransformChain::from_configs(&configs(pairs)).unwrap()
    }

    fn routed(chain: &TransformChain, topic: &str) -> String {
        let record = ConnectRecord::new(topic, SchemaAndValue::null());
        chain.apply(record).unwrap().unwrap().topic
    }

    #[test]
    fn regex_router_uses_java_group_references() {
        let router = chain(&[
            ("type", "org.apache.kafka.connect.transforms.RegexRouter"),
            ("regex", "(.*)-(staging|prod)"),
            ("replacement", "$2.$1"),
        ]);
        assert_eq!(routed(&router, "orders-prod"), "prod.orders");
        // Not a whole match: unchanged.
        assert_eq!(routed(&router, "orders-prod-x"), "orders-prod-x");

        // `$10` with two groups is group 1 then a literal 0, as Java reads it.
        let chain2 = chain(&[
            ("type", "RegexRouter"),
            ("regex", "(?<name>[a-z]+)_(\\d+)"),
            ("replacement", "${name}-$10\\$"),
        ]);
        assert_eq!(routed(&chain2, "logs_7"), "logs-logs0$");
    }

    #[test]
    fn regex_router_replaces_the_first_match_only() {
        let router = chain(&[
            ("type", "RegexRouter"),
            ("regex", "a|ab"),
            ("replacement", "X"),
        ]);
        assert_eq!(routed(&router, "ab"), "Xb");
    }

    #[test]
    fn regex_router_refuses_bad_patterns_and_references() {
        let e = TransformChain::from_configs(&configs(&[
            ("type", "RegexRouter"),
            ("regex", "(a"),
            ("replacement", "x"),
        ]))
        .unwrap_err();
        assert_eq!(e.key, "transforms.r.regex");
        let e = TransformChain::from_configs(&configs(&[
            ("type", "RegexRouter"),
            ("regex", "(a)"),
            ("replacement", "$2"),
        ]))
        .unwrap_err();
        assert_eq!(e.key, "transforms.r.replacement");
        assert!(e.message.ends_with("No group 2"), "{}", e.message);
        let pattern = Regex::new("(?<x>a)").unwrap();
        for bad in ["$", "\\", "$a", "${}", "${x", "${y}", "${1x}"] {
            assert!(parse_replacement(bad, &pattern).is_err(), "{bad}");
        }
        let e = TransformChain::from_configs(&configs(&[("type", "RegexRouter"), ("regex", "a")]))
            .unwrap_err();
        assert_eq!(e.key, "transforms.r.replacement");
    }

    #[test]
    fn timestamp_router_formats_topic_and_time() {
        let chain_default = chain(&[("type", "TimestampRouter")]);
        let mut record = ConnectRecord::new("events", SchemaAndValue::null());
        record.timestamp = Some(1_709_211_909_007);
        let out = chain_default.apply(record.clone()).unwrap().unwrap();
        assert_eq!(out.topic, "events-20240229");

        let custom = chain(&[
            (
                "type",
                "org.apache.kafka.connect.transforms.TimestampRouter",
            ),
            ("topic.format", "${timestamp}/${topic}"),
            ("timestamp.format", "yyyy-MM-dd'T'HH"),
        ]);
        let out = custom.apply(record.clone()).unwrap().unwrap();
        assert_eq!(out.topic, "2024-02-29T13/events");

        record.timestamp = None;
        let err = chain_default.apply(record).unwrap_err();
        assert!(err.to_string().starts_with("Timestamp missing on record"));

        let e = TransformChain::from_configs(&configs(&[
            ("type", "TimestampRouter"),
            ("timestamp.format", "yyyy-qq"),
        ]))
        .unwrap_err();
        assert_eq!(e.key, "transforms.r.timestamp.format");
        assert!(e.message.contains("Illegal pattern character 'q'"));
    }

    #[test]
    fn filter_drops_and_headers_are_inserted_and_dropped() {
        let filter = chain(&[("type", "Filter")]);
        let record = ConnectRecord::new("t", SchemaAndValue::null());
        assert_eq!(filter.apply(record.clone()).unwrap(), None);

        let insert = chain(&[
            ("type", "InsertHeader"),
            ("header", "source"),
            ("value.literal", "runnel"),
        ]);
        let out = insert.apply(record.clone()).unwrap().unwrap();
        assert_eq!(
            out.headers,
            vec![Header {
                key: "source".into(),
                value: Some(b"runnel".to_vec())
            }]
        );

        let drop = chain(&[("type", "DropHeaders"), ("headers", "a, b")]);
        let mut record = record;
        for key in ["a", "c", "b", "a"] {
            record.headers.push(Header {
                key: key.into(),
                value: None,
            });
        }
        let out = drop.apply(record).unwrap().unwrap();
        assert_eq!(out.headers.len(), 1);
        assert_eq!(out.headers[0].key, "c");
    }
}
