//! The HTTP sink: records read from topics become HTTP requests to an API, under the class
//! name and config keys of Confluent's `HttpSinkConnector`.
//!
//! This module owns the plugin ([`HTTP_SINK`]), its configuration and validation, and the
//! task that sends requests. Each record's value becomes a request body, as text or as JSON
//! (a schema'd value is written as plain JSON, without the converter's envelope); up to
//! `batch.max.size` records that go to the same URL share one request, as a JSON array or
//! joined by a separator. `${topic}` and `${key}` in `http.api.url` are replaced per record.
//!
//! Delivery: [`SinkTask::put`] sends synchronously, so [`SinkTask::flush`] has nothing to do
//! and offsets are committed only for records an API accepted (a 2xx answer). A status listed
//! in `retry.on.status.codes` is retried here, `max.retries` times with `retry.backoff.ms`
//! between; any other non-2xx answer, or a retried one still failing, fails the task with the
//! status and the start of the answer's body. A transport failure (connection refused, a
//! timeout) is retriable: the worker hands the same records again, and the requests the API
//! already accepted from that batch are not sent twice.
//!
//! Only plain `http://` is supported: the `ureq` client is built without TLS. The password of
//! BASIC authentication is never logged nor put in an error message; neither are the values
//! of `headers`, which often hold tokens.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::config::{
    ConfigDef, ConfigError, ConfigType, ConfigValue, Configs, Importance, Validator,
};
use crate::connector::{
    ConnectError, Connector, ConnectorContext, Plugin, SinkTask, TaskContext, TaskFactory,
    TopicPartition,
};
use crate::converter::{Converter, JsonConverter};
use crate::data::{SinkRecord, Value};

/// Confluent's HTTP sink, under its names.
pub const HTTP_SINK: Plugin = Plugin {
    class: "io.confluent.connect.http.HttpSinkConnector",
    aliases: &["HttpSink", "HttpSinkConnector"],
    connector: || Box::new(HttpSinkConnector::default()),
    task: TaskFactory::Sink(|| Box::new(HttpSinkTask::default())),
};

const URL: &str = "http.api.url";
const METHOD: &str = "request.method";
const HEADERS: &str = "headers";
const HEADER_SEPARATOR: &str = "header.separator";
const AUTH_TYPE: &str = "auth.type";
const USER: &str = "connection.user";
const PASSWORD: &str = "connection.password";
const BODY_FORMAT: &str = "request.body.format";
const BATCH_MAX_SIZE: &str = "batch.max.size";
const BATCH_JSON_AS_ARRAY: &str = "batch.json.as.array";
const BATCH_SEPARATOR: &str = "batch.separator";
const BATCH_PREFIX: &str = "batch.prefix";
const BATCH_SUFFIX: &str = "batch.suffix";
const MAX_RETRIES: &str = "max.retries";
const RETRY_BACKOFF_MS: &str = "retry.backoff.ms";
const RETRY_ON_STATUS_CODES: &str = "retry.on.status.codes";
const CONNECT_TIMEOUT_MS: &str = "http.connect.timeout.ms";
const REQUEST_TIMEOUT_MS: &str = "http.request.timeout.ms";
const ON_NULL_VALUES: &str = "behavior.on.null.values";

/// The placeholders `http.api.url` may hold.
const TOPIC_PLACEHOLDER: &str = "${topic}";
const KEY_PLACEHOLDER: &str = "${key}";

/// How much of an error answer's body goes into the task's error message.
const ERROR_BODY_LIMIT: u64 = 500;
/// How much of a successful answer's body is read (and dropped) so that the connection can be
/// reused; a larger body is left unread and its connection closed.
const DRAIN_LIMIT: u64 = 64 * 1024;
/// How often a backoff checks whether the task is being stopped.
const STOP_CHECK: Duration = Duration::from_millis(100);

const GROUP_CONNECTION: &str = "Connection";
const GROUP_AUTH: &str = "Authentication";
const GROUP_REQUEST: &str = "Request";
const GROUP_RETRIES: &str = "Retries";

fn def() -> ConfigDef {
    ConfigDef::new()
        .define(
            URL,
            ConfigType::String,
            None,
            Importance::High,
            GROUP_CONNECTION,
            "The URL each request goes to, http:// only. ${topic} and ${key} are replaced by \
             each record's topic and key (the key percent-encoded).",
        )
        .define(
            METHOD,
            ConfigType::String,
            Some("POST"),
            Importance::High,
            GROUP_CONNECTION,
            "The method of each request.",
        )
        .validated(Validator::OneOf(&["POST", "PUT", "PATCH"]))
        .define(
            CONNECT_TIMEOUT_MS,
            ConfigType::Int,
            Some("30000"),
            Importance::Low,
            GROUP_CONNECTION,
            "How long connecting to the API may take, in milliseconds.",
        )
        .validated(Validator::Range { min: 1, max: None })
        .define(
            REQUEST_TIMEOUT_MS,
            ConfigType::Int,
            Some("30000"),
            Importance::Low,
            GROUP_CONNECTION,
            "How long one request may take in all, in milliseconds.",
        )
        .validated(Validator::Range { min: 1, max: None })
        .define(
            AUTH_TYPE,
            ConfigType::String,
            Some("NONE"),
            Importance::High,
            GROUP_AUTH,
            "NONE, or BASIC to send connection.user and connection.password.",
        )
        .validated(Validator::OneOf(&["NONE", "BASIC"]))
        .define(
            USER,
            ConfigType::String,
            None,
            Importance::High,
            GROUP_AUTH,
            "The user of BASIC authentication.",
        )
        .optional()
        .define(
            PASSWORD,
            ConfigType::Password,
            None,
            Importance::High,
            GROUP_AUTH,
            "The password of BASIC authentication.",
        )
        .optional()
        .define(
            HEADERS,
            ConfigType::String,
            Some(""),
            Importance::Low,
            GROUP_REQUEST,
            "Headers sent with every request, as Name:Value entries separated by \
             header.separator.",
        )
        .define(
            HEADER_SEPARATOR,
            ConfigType::String,
            Some("|"),
            Importance::Low,
            GROUP_REQUEST,
            "What separates the entries of headers.",
        )
        .validated(Validator::NonEmpty)
        .define(
            BODY_FORMAT,
            ConfigType::String,
            Some("string"),
            Importance::Medium,
            GROUP_REQUEST,
            "string: a record's value as text; json: a record's value as JSON, a value with a \
             schema written without the schema.",
        )
        .validated(Validator::OneOf(&["string", "json"]))
        .define(
            BATCH_MAX_SIZE,
            ConfigType::Int,
            Some("1"),
            Importance::High,
            GROUP_REQUEST,
            "The most records one request carries; records going to different URLs never share \
             a request.",
        )
        .validated(Validator::Range { min: 1, max: None })
        .define(
            BATCH_JSON_AS_ARRAY,
            ConfigType::Boolean,
            Some("false"),
            Importance::Medium,
            GROUP_REQUEST,
            "Whether a request's body is a JSON array of its records' values (each written as \
             request.body.format says) rather than the values joined by batch.separator.",
        )
        .define(
            BATCH_SEPARATOR,
            ConfigType::String,
            Some(","),
            Importance::Medium,
            GROUP_REQUEST,
            "What separates the values in a request's body when they are not a JSON array.",
        )
        .define(
            BATCH_PREFIX,
            ConfigType::String,
            Some(""),
            Importance::Low,
            GROUP_REQUEST,
            "What a request's body starts with when its values are not a JSON array.",
        )
        .define(
            BATCH_SUFFIX,
            ConfigType::String,
            Some(""),
            Importance::Low,
            GROUP_REQUEST,
            "What a request's body ends with when its values are not a JSON array.",
        )
        .define(
            ON_NULL_VALUES,
            ConfigType::String,
            Some("ignore"),
            Importance::Low,
            GROUP_REQUEST,
            "What a record with a null value (a tombstone) does: ignore skips it, log skips it \
             with a log line, fail fails the task.",
        )
        .validated(Validator::OneOf(&["ignore", "log", "fail"]))
        .define(
            MAX_RETRIES,
            ConfigType::Int,
            Some("10"),
            Importance::Medium,
            GROUP_RETRIES,
            "How many times a request answered with a status of retry.on.status.codes is sent \
             again before the task fails.",
        )
        .validated(Validator::Range { min: 0, max: None })
        .define(
            RETRY_BACKOFF_MS,
            ConfigType::Int,
            Some("3000"),
            Importance::Medium,
            GROUP_RETRIES,
            "How long to wait before sending a request again, in milliseconds.",
        )
        .validated(Validator::Range { min: 0, max: None })
        .define(
            RETRY_ON_STATUS_CODES,
            ConfigType::String,
            Some("400-"),
            Importance::Medium,
            GROUP_RETRIES,
            "The statuses that are retried: codes and inclusive ranges, comma-separated; a \
             range without an end has no upper bound (408,429,500- retries those two and every \
             status from 500). Empty retries none.",
        )
}

/// What a request body is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFormat {
    /// The value's text (raw bytes as they are).
    String,
    /// The value as JSON, without a schema envelope.
    Json,
}

/// What a record with a null value does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NullValues {
    Ignore,
    Log,
    Fail,
}

/// Statuses, as `retry.on.status.codes` lists them: inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StatusRanges(Vec<(u16, u16)>);

impl StatusRanges {
    /// The codes and ranges of `text` (`408,429,500-599`, `500-`); empty for none.
    fn parse(text: &str) -> Result<StatusRanges, String> {
        let code = |item: &str, part: &str| -> Result<u16, String> {
            part.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| {
                    format!(
                        "'{item}' is not a status code (100 to 599) nor a range of them, such as \
                         500-599 or 500-"
                    )
                })
        };
        let mut ranges = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let range = match item.split_once('-') {
                None => {
                    let c = code(item, item)?;
                    (c, c)
                }
                Some((start, end)) => {
                    let start = code(item, start)?;
                    let end = if end.trim().is_empty() {
                        599
                    } else {
                        code(item, end)?
                    };
                    if start > end {
                        return Err(format!("'{item}' ends before it starts"));
                    }
                    (start, end)
                }
            };
            ranges.push(range);
        }
        Ok(StatusRanges(ranges))
    }

    fn contains(&self, status: u16) -> bool {
        self.0
            .iter()
            .any(|(start, end)| (*start..=*end).contains(&status))
    }
}

/// A value that must never be shown: its `Debug` hides it.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[hidden]")
    }
}

/// A connector's configuration, read and checked.
#[derive(Debug, Clone)]
struct Settings {
    /// The URL, placeholders still in.
    url: String,
    method: &'static str,
    headers: Vec<(String, String)>,
    /// The whole `Authorization` header of BASIC authentication.
    authorization: Option<Secret>,
    format: BodyFormat,
    batch_max_size: usize,
    json_array: bool,
    separator: String,
    prefix: String,
    suffix: String,
    max_retries: u32,
    backoff: Duration,
    retry_on: StatusRanges,
    connect_timeout: Duration,
    request_timeout: Duration,
    on_null: NullValues,
}

/// Errors gathered while reading a configuration, so that validation reports each key's.
#[derive(Debug, Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    /// The value of `result`, or `fallback` with its error kept.
    fn or<T>(&mut self, result: Result<T, ConfigError>, fallback: T) -> T {
        result.unwrap_or_else(|e| {
            self.0.push(e);
            fallback
        })
    }

    fn push(&mut self, key: &str, message: String) {
        self.0.push(ConfigError {
            key: key.to_owned(),
            message,
        });
    }
}

/// An error on `key` that does not repeat its value: URLs and headers may hold secrets.
fn invalid_unshown(key: &str, why: &str) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        message: format!("Invalid value for configuration {key}: {why}"),
    }
}

/// `key`'s value among `choices` (case-insensitive), as the choice is spelled.
fn choice(
    configs: &Configs,
    key: &str,
    default: &'static str,
    choices: &[&'static str],
) -> Result<&'static str, ConfigError> {
    let text = configs.get(key).map(str::trim).unwrap_or(default);
    choices
        .iter()
        .find(|c| c.eq_ignore_ascii_case(text))
        .copied()
        .ok_or_else(|| {
            ConfigError::invalid(
                key,
                text,
                &format!("String must be one of: {}", choices.join(", ")),
            )
        })
}

/// An integer key that must be at least `min`.
fn at_least(configs: &Configs, key: &str, default: i64, min: i64) -> Result<i64, ConfigError> {
    let n: i64 = configs.parsed_or(key, default, ConfigType::Int)?;
    if n < min {
        return Err(ConfigError::invalid(
            key,
            &n.to_string(),
            &format!("Value must be at least {min}"),
        ));
    }
    Ok(n)
}

/// Why `template` is not a URL this sink can send to, if it is not.
fn check_url(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let after = &rest[start..];
        if !(after.starts_with(TOPIC_PLACEHOLDER) || after.starts_with(KEY_PLACEHOLDER)) {
            return Err("only ${topic} and ${key} are replaced in the URL".to_owned());
        }
        rest = &after[2..];
    }
    let sample = template
        .replace(TOPIC_PLACEHOLDER, "topic")
        .replace(KEY_PLACEHOLDER, "key");
    let parsed = ureq::Agent::new()
        .request("POST", &sample)
        .request_url()
        .map_err(|_| "not an absolute URL with a host, such as http://host:8080/path".to_owned())?;
    match parsed.scheme() {
        "http" => Ok(()),
        "https" => {
            Err("https is not supported yet: TLS is not built in; use an http:// URL".to_owned())
        }
        other => Err(format!("the scheme {other} is not supported; use http://")),
    }
}

/// Whether `name` is an HTTP header name (an RFC 9110 token).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The `Name:Value` entries of `text`, split at `separator`; empty entries are skipped.
fn parse_headers(text: &str, separator: &str) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    for (n, entry) in text.split(separator).enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let place = n + 1;
        let (name, value) = entry
            .split_once(':')
            .ok_or_else(|| format!("entry {place} has no ':' between a name and a value"))?;
        let name = name.trim();
        if !is_token(name) {
            return Err(format!("entry {place} does not start with a header name"));
        }
        if value.contains(['\r', '\n']) {
            return Err(format!("the value of header {name} holds a line break"));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(headers)
}

impl Settings {
    /// The settings of `configs`, or every error found, each on its key.
    fn read(configs: &Configs) -> Result<Settings, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let url = configs.get(URL).map(str::trim).unwrap_or("").to_owned();
        match configs.get(URL) {
            None => errors.0.push(ConfigError::missing(URL)),
            Some(_) => {
                if let Err(why) = check_url(&url) {
                    errors.0.push(invalid_unshown(URL, &why));
                }
            }
        }
        let method = errors.or(
            choice(configs, METHOD, "POST", &["POST", "PUT", "PATCH"]),
            "POST",
        );

        let separator = configs.get(HEADER_SEPARATOR).unwrap_or("|");
        let headers = if separator.is_empty() {
            errors.push(
                HEADER_SEPARATOR,
                format!(
                    "Invalid value for configuration {HEADER_SEPARATOR}: String must be non-empty"
                ),
            );
            Vec::new()
        } else {
            parse_headers(configs.get(HEADERS).unwrap_or(""), separator).unwrap_or_else(|why| {
                errors.0.push(invalid_unshown(HEADERS, &why));
                Vec::new()
            })
        };

        let authorization = match errors.or(
            choice(configs, AUTH_TYPE, "NONE", &["NONE", "BASIC"]),
            "NONE",
        ) {
            "BASIC" => match configs.get(USER).map(str::trim).filter(|u| !u.is_empty()) {
                None => {
                    errors.push(
                        USER,
                        format!(
                            "Missing required configuration \"{USER}\": {AUTH_TYPE}=BASIC sends \
                             a user and a password"
                        ),
                    );
                    None
                }
                Some(user) if user.contains(':') => {
                    errors.push(
                        USER,
                        format!(
                            "Invalid value for configuration {USER}: BASIC authentication \
                             cannot send a user holding ':'"
                        ),
                    );
                    None
                }
                Some(user) => {
                    let password = configs.get(PASSWORD).unwrap_or("");
                    let credentials = BASE64.encode(format!("{user}:{password}"));
                    Some(Secret(format!("Basic {credentials}")))
                }
            },
            _ => None,
        };

        let format = match errors.or(
            choice(configs, BODY_FORMAT, "string", &["string", "json"]),
            "string",
        ) {
            "json" => BodyFormat::Json,
            _ => BodyFormat::String,
        };
        let on_null = match errors.or(
            choice(
                configs,
                ON_NULL_VALUES,
                "ignore",
                &["ignore", "log", "fail"],
            ),
            "ignore",
        ) {
            "log" => NullValues::Log,
            "fail" => NullValues::Fail,
            _ => NullValues::Ignore,
        };
        let batch_max_size = errors.or(at_least(configs, BATCH_MAX_SIZE, 1, 1), 1);
        let json_array = errors.or(configs.bool_or(BATCH_JSON_AS_ARRAY, false), false);
        let max_retries = errors.or(at_least(configs, MAX_RETRIES, 10, 0), 0);
        let backoff = errors.or(at_least(configs, RETRY_BACKOFF_MS, 3000, 0), 0);
        let retry_on = StatusRanges::parse(configs.get(RETRY_ON_STATUS_CODES).unwrap_or("400-"))
            .unwrap_or_else(|why| {
                let text = configs.get(RETRY_ON_STATUS_CODES).unwrap_or("");
                errors
                    .0
                    .push(ConfigError::invalid(RETRY_ON_STATUS_CODES, text, &why));
                StatusRanges(Vec::new())
            });
        let connect_timeout = errors.or(at_least(configs, CONNECT_TIMEOUT_MS, 30_000, 1), 1);
        let request_timeout = errors.or(at_least(configs, REQUEST_TIMEOUT_MS, 30_000, 1), 1);

        if !errors.0.is_empty() {
            return Err(errors.0);
        }
        // The range checks above make these conversions exact; the fallbacks are unreachable.
        let millis = |n: i64| Duration::from_millis(u64::try_from(n).unwrap_or(0));
        Ok(Settings {
            url,
            method,
            headers,
            authorization,
            format,
            batch_max_size: usize::try_from(batch_max_size).unwrap_or(1),
            json_array,
            separator: configs.get(BATCH_SEPARATOR).unwrap_or(",").to_owned(),
            prefix: configs.get(BATCH_PREFIX).unwrap_or("").to_owned(),
            suffix: configs.get(BATCH_SUFFIX).unwrap_or("").to_owned(),
            max_retries: u32::try_from(max_retries).unwrap_or(u32::MAX),
            backoff: millis(backoff),
            retry_on,
            connect_timeout: millis(connect_timeout),
            request_timeout: millis(request_timeout),
            on_null,
        })
    }

    /// The `Content-Type` sent when `headers` names none.
    fn default_content_type(&self) -> &'static str {
        if self.json_array || self.format == BodyFormat::Json {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        }
    }
}

/// The connector: checks the configuration; every task gets all of it, as records are split
/// among tasks by partition.
#[derive(Debug, Default)]
struct HttpSinkConnector {
    configs: Configs,
}

impl Connector for HttpSinkConnector {
    fn config_def(&self) -> ConfigDef {
        def()
    }

    fn validate(&self, configs: &Configs) -> Vec<ConfigValue> {
        let mut values = def().validate(configs);
        let Err(errors) = Settings::read(configs) else {
            return values;
        };
        for error in errors {
            match values.iter_mut().find(|v| v.name == error.key) {
                // A key the definition already faulted (type, range, choice) keeps that one
                // error rather than a second wording of it.
                Some(value) => {
                    if value.errors.is_empty() {
                        value.errors.push(error.message);
                    }
                }
                None => values.push(ConfigValue {
                    name: error.key,
                    value: None,
                    recommended_values: Vec::new(),
                    errors: vec![error.message],
                    visible: true,
                }),
            }
        }
        values
    }

    fn start(&mut self, configs: &Configs, _context: ConnectorContext) -> Result<(), ConnectError> {
        Settings::read(configs).map_err(first_error)?;
        self.configs = configs.clone();
        Ok(())
    }

    fn task_configs(&mut self, max_tasks: usize) -> Result<Vec<Configs>, ConnectError> {
        Ok(vec![self.configs.clone(); max_tasks.max(1)])
    }

    fn stop(&mut self) {}
}

fn first_error(errors: Vec<ConfigError>) -> ConnectError {
    errors.into_iter().next().map_or_else(
        || ConnectError::failed("invalid configuration"),
        ConnectError::Config,
    )
}

/// `url` without the `user:password@` part it may have, for messages.
fn redacted(url: &str) -> Cow<'_, str> {
    if let Some(start) = url.find("://").map(|i| i + 3) {
        let rest = &url[start..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return Cow::Owned(format!("{}{}", &url[..start], &rest[at + 1..]));
        }
    }
    Cow::Borrowed(url)
}

/// `text` with every byte but RFC 3986's unreserved characters percent-encoded, so that a key
/// stays one path segment or query value.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    encoded
}

/// Where a record was read, for messages.
fn coordinates(record: &SinkRecord) -> String {
    format!(
        "{}-{} at offset {}",
        record.record.topic,
        record.record.partition.unwrap_or(-1),
        record.kafka_offset
    )
}

/// One request to send: its URL and the records (by index) whose values make its body.
#[derive(Debug)]
struct Planned {
    url: String,
    records: Vec<usize>,
}

/// A batch the worker handed in, recognised when it is handed again after a retriable error.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BatchId {
    len: usize,
    first: (String, Option<i32>, i64),
    last: (String, Option<i32>, i64),
}

impl BatchId {
    fn of(records: &[SinkRecord]) -> Option<BatchId> {
        let at = |r: &SinkRecord| (r.record.topic.clone(), r.record.partition, r.kafka_offset);
        Some(BatchId {
            len: records.len(),
            first: at(records.first()?),
            last: at(records.last()?),
        })
    }
}

/// What a started task holds.
#[derive(Debug)]
struct Running {
    settings: Settings,
    agent: ureq::Agent,
    context: TaskContext,
    /// Writes JSON bodies: the value alone, no schema envelope.
    json: JsonConverter,
    /// After a retriable failure: the batch, and how many of its requests were accepted.
    resume: Option<(BatchId, usize)>,
}

/// Sends records as HTTP requests.
#[derive(Debug, Default)]
struct HttpSinkTask {
    running: Option<Running>,
}

impl Running {
    /// The URL of `record`: the template with its topic and key.
    fn url_of(&self, record: &SinkRecord) -> Result<String, ConnectError> {
        let template = &self.settings.url;
        let mut url = template.replace(TOPIC_PLACEHOLDER, &percent_encode(&record.record.topic));
        if url.contains(KEY_PLACEHOLDER) {
            let key = &record.record.key;
            let text = match &key.value {
                // A null key would silently address the collection instead of an item.
                Value::Null => {
                    return Err(ConnectError::failed(format!(
                        "the record {} has a null key, and {URL} holds ${{key}}",
                        coordinates(record)
                    )))
                }
                Value::String(s) => s.clone(),
                Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                other => other.display(key.schema.as_ref()),
            };
            url = url.replace(KEY_PLACEHOLDER, &percent_encode(&text));
        }
        Ok(url)
    }

    /// The body part of `record`'s value.
    fn body_of(&self, record: &SinkRecord) -> Result<Vec<u8>, ConnectError> {
        let value = &record.record.value;
        match self.settings.format {
            BodyFormat::String => Ok(match &value.value {
                // Raw bytes go as they are, so that a byte-array pipeline is exact.
                Value::Bytes(bytes) => bytes.clone(),
                other => other.display(value.schema.as_ref()).into_bytes(),
            }),
            BodyFormat::Json => self
                .json
                .to_bytes(&record.record.topic, value)
                .map_err(|e| {
                    ConnectError::failed(format!(
                        "cannot write the value of {} as JSON: {e}",
                        coordinates(record)
                    ))
                })?
                .ok_or_else(|| {
                    ConnectError::failed(format!("the value of {} is null", coordinates(record)))
                }),
        }
    }

    /// The requests for `records`, in order of their first record. Records going to one URL
    /// share requests of up to `batch.max.size`, keeping their order; with a size of 1 the
    /// requests follow the records exactly.
    fn plan(&self, records: &[SinkRecord]) -> Result<Vec<Planned>, ConnectError> {
        let mut planned: Vec<Planned> = Vec::new();
        // The request still taking records, per URL.
        let mut open: BTreeMap<String, usize> = BTreeMap::new();
        for (index, record) in records.iter().enumerate() {
            if record.record.value.value.is_null() {
                match self.settings.on_null {
                    NullValues::Ignore => continue,
                    NullValues::Log => {
                        tracing::info!(
                            connector = %self.context.connector,
                            record = %coordinates(record),
                            "skipping a record with a null value"
                        );
                        continue;
                    }
                    NullValues::Fail => {
                        return Err(ConnectError::failed(format!(
                            "the record {} has a null value and {ON_NULL_VALUES}=fail",
                            coordinates(record)
                        )))
                    }
                }
            }
            let url = self.url_of(record)?;
            match open.get(&url).and_then(|&i| planned.get_mut(i)) {
                Some(request) if request.records.len() < self.settings.batch_max_size => {
                    request.records.push(index);
                }
                _ => {
                    open.insert(url.clone(), planned.len());
                    planned.push(Planned {
                        url,
                        records: vec![index],
                    });
                }
            }
        }
        Ok(planned)
    }

    /// The body of `request`.
    fn body(&self, records: &[SinkRecord], request: &Planned) -> Result<Vec<u8>, ConnectError> {
        let parts = request
            .records
            .iter()
            .filter_map(|&i| records.get(i))
            .map(|record| self.body_of(record))
            .collect::<Result<Vec<_>, _>>()?;
        let (open, separator, close) = if self.settings.json_array {
            ("[", ",", "]")
        } else {
            (
                self.settings.prefix.as_str(),
                self.settings.separator.as_str(),
                self.settings.suffix.as_str(),
            )
        };
        let mut body = open.as_bytes().to_vec();
        for (n, part) in parts.iter().enumerate() {
            if n > 0 {
                body.extend_from_slice(separator.as_bytes());
            }
            body.extend_from_slice(part);
        }
        body.extend_from_slice(close.as_bytes());
        Ok(body)
    }

    /// Sends one request, retrying the statuses configured for it.
    fn send(&self, url: &str, body: &[u8]) -> Result<(), ConnectError> {
        let settings = &self.settings;
        let method = settings.method;
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let mut request = self.agent.request(method, url);
            for (name, value) in &settings.headers {
                request = request.set(name, value);
            }
            if !settings
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            {
                request = request.set("Content-Type", settings.default_content_type());
            }
            // Set last, so that BASIC wins over an Authorization entry of `headers`.
            if let Some(Secret(authorization)) = &settings.authorization {
                request = request.set("Authorization", authorization);
            }
            let response = match request.send_bytes(body) {
                Ok(response) => response,
                Err(ureq::Error::Status(_, response)) => response,
                Err(ureq::Error::Transport(transport)) => {
                    return Err(ConnectError::Retriable(format!(
                        "{method} {} failed: {}",
                        redacted(url),
                        describe(&transport)
                    )));
                }
            };
            let status = response.status();
            if (200..300).contains(&status) {
                // Read what is cheap to read, so that the connection can serve the next one.
                let _ = std::io::copy(
                    &mut response.into_reader().take(DRAIN_LIMIT),
                    &mut std::io::sink(),
                );
                return Ok(());
            }
            if attempts <= settings.max_retries && settings.retry_on.contains(status) {
                tracing::warn!(
                    connector = %self.context.connector,
                    task = self.context.task,
                    url = %redacted(url),
                    status,
                    attempt = attempts,
                    "the API refused a request; retrying"
                );
                self.back_off()?;
                continue;
            }
            let reason = response.status_text().to_owned();
            let mut start = Vec::new();
            // A body that cannot be read whole still says something in its first bytes.
            let _ = response
                .into_reader()
                .take(ERROR_BODY_LIMIT)
                .read_to_end(&mut start);
            return Err(ConnectError::Failed(format!(
                "{method} {} answered {status} {reason} after {attempts} attempt(s): {}",
                redacted(url),
                String::from_utf8_lossy(&start)
            )));
        }
    }

    /// Waits `retry.backoff.ms`, cut short when the task is stopping.
    fn back_off(&self) -> Result<(), ConnectError> {
        let until = Instant::now() + self.settings.backoff;
        loop {
            if self.context.is_stopping() {
                return Err(ConnectError::Retriable(
                    "the task is stopping while retrying a request".to_owned(),
                ));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(STOP_CHECK));
        }
    }
}

/// A transport failure, without its URL (which may hold credentials).
fn describe(transport: &ureq::Transport) -> String {
    let mut text = transport.kind().to_string();
    if let Some(message) = transport.message() {
        text.push_str(": ");
        text.push_str(message);
    }
    if let Some(source) = std::error::Error::source(transport) {
        text.push_str(": ");
        text.push_str(&source.to_string());
    }
    text
}

impl SinkTask for HttpSinkTask {
    fn start(&mut self, configs: &Configs, context: &TaskContext) -> Result<(), ConnectError> {
        let settings = Settings::read(configs).map_err(first_error)?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(settings.connect_timeout)
            .timeout(settings.request_timeout)
            // A redirect would resend the body elsewhere (or drop it, for a 303); a 3xx is
            // an answer like any other non-2xx.
            .redirects(0)
            .build();
        self.running = Some(Running {
            settings,
            agent,
            context: context.clone(),
            // Records are written bare; no envelope is read, so no schema is cached.
            json: JsonConverter::new(false, false, 0),
            resume: None,
        });
        Ok(())
    }

    fn put(&mut self, records: &[SinkRecord]) -> Result<(), ConnectError> {
        let running = self
            .running
            .as_mut()
            .ok_or_else(|| ConnectError::failed("the HTTP sink is not started"))?;
        let id = BatchId::of(records);
        // The same batch again after a retriable error: what the API accepted is not resent.
        let mut sent = match running.resume.take() {
            Some((previous, sent)) if Some(&previous) == id.as_ref() => sent,
            _ => 0,
        };
        let planned = running.plan(records)?;
        for request in planned.iter().skip(sent) {
            let body = running.body(records, request)?;
            match running.send(&request.url, &body) {
                Ok(()) => sent += 1,
                Err(e) => {
                    if e.is_retriable() {
                        running.resume = id.map(|id| (id, sent));
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self, _offsets: &BTreeMap<TopicPartition, i64>) -> Result<(), ConnectError> {
        // `put` returns only once the API accepted every request: nothing is pending.
        Ok(())
    }

    fn stop(&mut self) {
        self.running = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::OffsetReader;
    use crate::data::{
        ConnectRecord, Field, Schema, SchemaAndValue, SchemaType, SourceOffset, SourcePartition,
    };
    use std::collections::VecDeque;
    use std::io::{BufRead, BufReader, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;

    /// How the test server answers one request.
    #[derive(Debug, Clone)]
    enum Reply {
        Status(u16, String),
        /// Closes the connection without an answer.
        Hangup,
    }

    fn status(code: u16, body: &str) -> Reply {
        Reply::Status(code, body.to_owned())
    }

    /// A request as the test server read it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        fn text(&self) -> &str {
            std::str::from_utf8(&self.body).unwrap()
        }
    }

    /// A one-connection-at-a-time HTTP/1.1 server on loopback that records each request and
    /// answers with the replies it was given, then 200s.
    struct Server {
        addr: SocketAddr,
        seen: Arc<Mutex<Vec<Seen>>>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Server {
        fn start(replies: Vec<Reply>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let (seen, stop) = (seen.clone(), stop.clone());
                let mut replies: VecDeque<Reply> = replies.into();
                std::thread::spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let reply = replies.pop_front().unwrap_or_else(|| status(200, "ok"));
                        serve(stream, &reply, &seen);
                    }
                })
            };
            Server {
                addr,
                seen,
                stop,
                thread: Some(thread),
            }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Release);
            // Wakes the accept loop so that it sees the stop.
            let _ = TcpStream::connect(self.addr);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// Reads one request, records it (before answering, so that a client seeing the answer
    /// also sees the request recorded), then answers `reply`.
    fn serve(stream: TcpStream, reply: &Reply, seen: &Mutex<Vec<Seen>>) -> Option<()> {
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':')?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        seen.lock().unwrap().push(Seen {
            method,
            path,
            headers,
            body,
        });
        let mut stream = stream;
        if let Reply::Status(status, text) = reply {
            let answer = format!(
                "HTTP/1.1 {status} Status\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            // A client that gave up is no failure of the server's.
            let _ = stream.write_all(answer.as_bytes());
        }
        Some(())
    }

    struct NoOffsets;

    impl OffsetReader for NoOffsets {
        fn offset(&self, _partition: &SourcePartition) -> Option<SourceOffset> {
            None
        }
    }

    fn context() -> TaskContext {
        TaskContext::new(
            "http",
            0,
            Arc::new(AtomicBool::new(false)),
            Arc::new(NoOffsets),
        )
    }

    fn configs(url: &str, extra: &[(&str, &str)]) -> Configs {
        let mut configs = Configs::new();
        configs.set(URL, url);
        configs.set(RETRY_BACKOFF_MS, "10");
        for (key, value) in extra {
            configs.set(*key, *value);
        }
        configs
    }

    fn task(url: &str, extra: &[(&str, &str)]) -> HttpSinkTask {
        let mut task = HttpSinkTask::default();
        task.start(&configs(url, extra), &context()).unwrap();
        task
    }

    fn record(topic: &str, key: Option<&str>, value: SchemaAndValue, offset: i64) -> SinkRecord {
        let mut record = ConnectRecord::new(topic, value);
        record.partition = Some(0);
        if let Some(key) = key {
            record.key = SchemaAndValue::new(None, Value::String(key.into()));
        }
        SinkRecord {
            record,
            kafka_offset: offset,
        }
    }

    fn text(value: &str, offset: i64) -> SinkRecord {
        record(
            "t",
            None,
            SchemaAndValue::new(None, Value::String(value.into())),
            offset,
        )
    }

    fn errors_by_key(configs: &Configs) -> BTreeMap<String, Vec<String>> {
        HttpSinkConnector::default()
            .validate(configs)
            .into_iter()
            .filter(|v| !v.errors.is_empty())
            .map(|v| (v.name, v.errors))
            .collect()
    }

    #[test]
    fn each_record_is_one_request_with_the_method_headers_and_text_body() {
        let server = Server::start(Vec::new());
        let mut task = task(
            &server.url("/events?x=1"),
            &[
                (METHOD, "put"),
                (HEADERS, "X-Team: data | Accept:application/json|"),
            ],
        );
        task.put(&[text("one", 0), text("two", 1)]).unwrap();
        task.flush(&BTreeMap::new()).unwrap();
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        for (request, body) in seen.iter().zip(["one", "two"]) {
            assert_eq!(request.method, "PUT");
            assert_eq!(request.path, "/events?x=1");
            assert_eq!(request.header("X-Team"), Some("data"));
            assert_eq!(request.header("Accept"), Some("application/json"));
            assert_eq!(
                request.header("Content-Type"),
                Some("text/plain; charset=utf-8")
            );
            assert_eq!(request.header("Authorization"), None);
            assert_eq!(request.text(), body);
        }
    }

    #[test]
    fn json_bodies_are_schemad_values_without_the_envelope() {
        let server = Server::start(Vec::new());
        let mut task = task(&server.url("/rows"), &[(BODY_FORMAT, "json")]);
        let schema = Schema::structure(
            Some("customer"),
            vec![
                Field::new("id", Schema::new(SchemaType::Int32)),
                Field::new("name", Schema::optional(SchemaType::String)),
            ],
        );
        let row = SchemaAndValue::new(
            Some(schema),
            Value::Struct(vec![Value::Int32(7), Value::String("Ada".into())]),
        );
        let document = SchemaAndValue::new(
            None,
            Value::Map(vec![(Value::String("a".into()), Value::Int64(1))]),
        );
        task.put(&[record("t", None, row, 0), record("t", None, document, 1)])
            .unwrap();
        let seen = server.seen();
        assert_eq!(seen[0].method, "POST");
        assert_eq!(seen[0].text(), r#"{"id":7,"name":"Ada"}"#);
        assert_eq!(seen[0].header("Content-Type"), Some("application/json"));
        assert_eq!(seen[1].text(), r#"{"a":1}"#);
    }

    #[test]
    fn batches_are_json_arrays() {
        let server = Server::start(Vec::new());
        let mut task = task(
            &server.url("/bulk"),
            &[
                (BODY_FORMAT, "json"),
                (BATCH_MAX_SIZE, "2"),
                (BATCH_JSON_AS_ARRAY, "true"),
            ],
        );
        task.put(&[text("a", 0), text("b", 1), text("c", 2)])
            .unwrap();
        let bodies: Vec<String> = server.seen().iter().map(|s| s.text().to_owned()).collect();
        assert_eq!(bodies, [r#"["a","b"]"#, r#"["c"]"#]);
    }

    #[test]
    fn batches_are_joined_by_the_separator() {
        let server = Server::start(Vec::new());
        let mut task = task(&server.url("/lines"), &[(BATCH_MAX_SIZE, "10")]);
        task.put(&[text("a", 0), text("b", 1), text("c", 2)])
            .unwrap();
        let mut framed = self::task(
            &server.url("/framed"),
            &[
                (BATCH_MAX_SIZE, "10"),
                (BATCH_SEPARATOR, ";"),
                (BATCH_PREFIX, "<"),
                (BATCH_SUFFIX, ">"),
            ],
        );
        framed.put(&[text("a", 0), text("b", 1)]).unwrap();
        let bodies: Vec<String> = server.seen().iter().map(|s| s.text().to_owned()).collect();
        assert_eq!(bodies, ["a,b,c", "<a;b>"]);
    }

    #[test]
    fn topic_and_key_in_the_url_choose_each_records_request() {
        let server = Server::start(Vec::new());
        let mut task = task(
            &server.url("/${topic}/items/${key}"),
            &[(BATCH_MAX_SIZE, "10")],
        );
        let value = |v: &str| SchemaAndValue::new(None, Value::String(v.into()));
        task.put(&[
            record("orders", Some("k1"), value("a"), 0),
            record("orders", Some("a b/c"), value("b"), 1),
            record("orders", Some("k1"), value("c"), 2),
        ])
        .unwrap();
        let seen = server.seen();
        let requests: Vec<(&str, &str)> =
            seen.iter().map(|s| (s.path.as_str(), s.text())).collect();
        assert_eq!(
            requests,
            [
                ("/orders/items/k1", "a,c"),
                ("/orders/items/a%20b%2Fc", "b")
            ]
        );

        let error = task.put(&[text("no key", 3)]).unwrap_err();
        assert!(error.to_string().contains("null key"), "{error}");
    }

    #[test]
    fn basic_auth_sends_the_header_and_never_shows_the_password() {
        let server = Server::start(vec![status(401, "who are you")]);
        let mut task = task(
            &server.url("/secure"),
            &[
                (AUTH_TYPE, "BASIC"),
                (USER, "ada"),
                (PASSWORD, "s3cret-pw"),
                (RETRY_ON_STATUS_CODES, "500-"),
            ],
        );
        let error = task.put(&[text("x", 0)]).unwrap_err();
        assert!(!error.to_string().contains("s3cret-pw"), "{error}");
        assert!(!format!("{task:?}").contains("s3cret-pw"));
        task.put(&[text("y", 1)]).unwrap();
        let seen = server.seen();
        let expected = format!("Basic {}", BASE64.encode("ada:s3cret-pw"));
        assert_eq!(seen[1].header("Authorization"), Some(expected.as_str()));
    }

    #[test]
    fn a_retried_status_is_sent_again_until_it_succeeds() {
        let server = Server::start(vec![status(503, "busy"), status(503, "busy")]);
        let mut task = task(&server.url("/flaky"), &[(MAX_RETRIES, "2")]);
        task.put(&[text("once", 0)]).unwrap();
        let seen = server.seen();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|s| s.text() == "once"));
    }

    #[test]
    fn a_retried_status_fails_once_the_retries_are_spent() {
        let server = Server::start(vec![status(503, "busy"), status(503, "still busy")]);
        let mut task = task(&server.url("/down"), &[(MAX_RETRIES, "1")]);
        let error = task.put(&[text("x", 0)]).unwrap_err();
        assert!(!error.is_retriable());
        let message = error.to_string();
        assert!(
            message.contains("503") && message.contains("still busy"),
            "{message}"
        );
        assert_eq!(server.seen().len(), 2);
    }

    #[test]
    fn a_status_not_retried_fails_with_the_status_and_the_body() {
        let long = "e".repeat(600);
        let server = Server::start(vec![status(400, &format!("bad field{long}"))]);
        let mut task = task(
            &server.url("/strict"),
            &[(RETRY_ON_STATUS_CODES, "408,429,500-599")],
        );
        let error = task.put(&[text("x", 0)]).unwrap_err();
        assert!(matches!(error, ConnectError::Failed(_)));
        let message = error.to_string();
        assert!(
            message.contains("400") && message.contains("bad field"),
            "{message}"
        );
        // The body is cut at 500 bytes.
        assert!(!message.contains(&"e".repeat(500)), "{message}");
        assert_eq!(server.seen().len(), 1);
    }

    #[test]
    fn a_refused_connection_is_retriable() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // The listener is dropped: nothing listens there any more.
        let mut task = task(&format!("http://{addr}/gone"), &[]);
        let error = task.put(&[text("x", 0)]).unwrap_err();
        assert!(error.is_retriable(), "{error}");
    }

    #[test]
    fn a_batch_handed_again_skips_the_requests_already_accepted() {
        let server = Server::start(vec![status(200, "ok"), Reply::Hangup]);
        let mut task = task(&server.url("/once"), &[]);
        let batch = [text("a", 0), text("b", 1), text("c", 2)];
        let error = task.put(&batch).unwrap_err();
        assert!(error.is_retriable(), "{error}");
        task.put(&batch).unwrap();
        let bodies: Vec<String> = server.seen().iter().map(|s| s.text().to_owned()).collect();
        // `b` reached the server before it hung up, so it is sent again; `a` is not.
        assert_eq!(bodies, ["a", "b", "b", "c"]);
    }

    #[test]
    fn null_values_are_skipped_unless_they_fail() {
        let server = Server::start(Vec::new());
        let tombstone = || record("t", Some("k"), SchemaAndValue::null(), 1);
        let mut skipping = task(&server.url("/x"), &[]);
        skipping.put(&[text("a", 0), tombstone()]).unwrap();
        assert_eq!(server.seen().len(), 1);
        let mut failing = task(&server.url("/x"), &[(ON_NULL_VALUES, "fail")]);
        let error = failing.put(&[tombstone()]).unwrap_err();
        assert!(error.to_string().contains("null value"), "{error}");
    }

    #[test]
    fn status_codes_read_as_codes_and_ranges() {
        let ranges = StatusRanges::parse("408, 429,500-").unwrap();
        assert!(ranges.contains(408) && ranges.contains(429) && ranges.contains(599));
        assert!(!ranges.contains(400) && !ranges.contains(499));
        let default = StatusRanges::parse("400-").unwrap();
        assert!(default.contains(400) && default.contains(503) && !default.contains(399));
        assert!(!StatusRanges::parse("").unwrap().contains(500));
        for bad in ["abc", "600", "500-400", "5xx", "-500"] {
            assert!(StatusRanges::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_in_messages_lose_their_credentials() {
        assert_eq!(redacted("http://ada:pw@api:80/x@y"), "http://api:80/x@y");
        assert_eq!(redacted("http://api/x?u=a@b"), "http://api/x?u=a@b");
    }

    #[test]
    fn validation_puts_each_error_on_its_key() {
        let fine = configs("http://api:8080/${topic}", &[]);
        assert!(
            errors_by_key(&fine).is_empty(),
            "{:?}",
            errors_by_key(&fine)
        );

        let errors = errors_by_key(&Configs::new());
        assert_eq!(errors.keys().collect::<Vec<_>>(), [URL]);

        let errors = errors_by_key(&configs("https://api/x", &[]));
        assert_eq!(errors.keys().collect::<Vec<_>>(), [URL]);
        assert!(errors[URL][0].contains("TLS"), "{:?}", errors[URL]);
        for bad in ["not a url", "ftp://api/x", "http://api/${partition}"] {
            assert_eq!(
                errors_by_key(&configs(bad, &[])).keys().collect::<Vec<_>>(),
                [URL],
                "{bad}"
            );
        }

        let errors = errors_by_key(&configs(
            "http://api/x",
            &[
                (METHOD, "DELETE"),
                (HEADERS, "Authorization: Bearer tok3n|broken"),
                (AUTH_TYPE, "BASIC"),
                (PASSWORD, "pw"),
                (RETRY_ON_STATUS_CODES, "500-400"),
                (BATCH_MAX_SIZE, "0"),
            ],
        ));
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            [BATCH_MAX_SIZE, USER, HEADERS, METHOD, RETRY_ON_STATUS_CODES]
        );
        // A header's value may be a token: it is not repeated in the error.
        assert!(
            !errors[HEADERS][0].contains("tok3n"),
            "{:?}",
            errors[HEADERS]
        );
        assert!(errors.values().all(|e| e.len() == 1), "{errors:?}");

        let error = HttpSinkConnector::default()
            .start(
                &configs("https://api/x", &[]),
                ConnectorContext::new(Arc::new(|| {})),
            )
            .unwrap_err();
        assert!(
            matches!(error, ConnectError::Config(ref e) if e.key == URL),
            "{error}"
        );
    }

    #[test]
    fn the_plugin_is_built_in_under_its_names() {
        let plugins = crate::builtin_plugins();
        for name in [HTTP_SINK.class, "HttpSink", "HttpSinkConnector"] {
            assert_eq!(plugins.find(name).map(|p| p.class), Some(HTTP_SINK.class));
        }
    }
}
