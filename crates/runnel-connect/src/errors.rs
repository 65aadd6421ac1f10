//! Error tolerance, as Kafka Connect's `errors.*` configs set it (KIP-298): which failures
//! of a record are retried, for how long, and whether a record that still fails stops the
//! task (`errors.tolerance=none`, the default) or is skipped (`all`), logged, and for sinks
//! sent to a dead letter queue topic.

use std::fmt;
use std::time::{Duration, Instant};

use crate::config::{ConfigDef, ConfigType, Configs, Importance, Validator};
use crate::connector::ConnectError;

/// Where in a record's path a failure happened: the names Kafka writes in the
/// `__connect.errors.stage` header of a dead-lettered record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A source task's `poll`.
    TaskPoll,
    /// A sink task's `put`.
    TaskPut,
    /// A transform.
    Transformation,
    /// The key converter.
    KeyConverter,
    /// The value converter.
    ValueConverter,
    /// Sending to the cluster.
    KafkaProduce,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::TaskPoll => "TASK_POLL",
            Stage::TaskPut => "TASK_PUT",
            Stage::Transformation => "TRANSFORMATION",
            Stage::KeyConverter => "KEY_CONVERTER",
            Stage::ValueConverter => "VALUE_CONVERTER",
            Stage::KafkaProduce => "KAFKA_PRODUCE",
        })
    }
}

/// The error-handling keys every connector takes.
pub(crate) fn error_handling_def(sink: bool) -> ConfigDef {
    let group = "Error Handling";
    let def = ConfigDef::new()
        .define(
            "errors.retry.timeout",
            ConfigType::Long,
            Some("0"),
            Importance::Medium,
            group,
            "How long to retry a failed operation, in ms; -1 retries forever, 0 never.",
        )
        .validated(Validator::Range { min: -1, max: None })
        .define(
            "errors.retry.delay.max.ms",
            ConfigType::Long,
            Some("60000"),
            Importance::Medium,
            group,
            "The longest wait between retries, in ms.",
        )
        .validated(Validator::Range { min: 1, max: None })
        .define(
            "errors.tolerance",
            ConfigType::String,
            Some("none"),
            Importance::Medium,
            group,
            "none: a record that fails stops the task; all: it is skipped.",
        )
        .validated(Validator::OneOf(&["none", "all"]))
        .define(
            "errors.log.enable",
            ConfigType::Boolean,
            Some("false"),
            Importance::Medium,
            group,
            "Log each tolerated failure.",
        )
        .define(
            "errors.log.include.messages",
            ConfigType::Boolean,
            Some("false"),
            Importance::Medium,
            group,
            "Include the record's topic, partition and offset in those logs.",
        );
    if !sink {
        return def;
    }
    def.define(
        "errors.deadletterqueue.topic.name",
        ConfigType::String,
        Some(""),
        Importance::Medium,
        group,
        "The topic records that fail are sent to, as they were read; empty for none.",
    )
    .define(
        "errors.deadletterqueue.topic.replication.factor",
        ConfigType::Short,
        Some("3"),
        Importance::Low,
        group,
        "The replication factor of the dead letter queue topic when the worker creates it \
         (capped at the number of brokers).",
    )
    .define(
        "errors.deadletterqueue.context.headers.enable",
        ConfigType::Boolean,
        Some("false"),
        Importance::Medium,
        group,
        "Add __connect.errors.* headers saying where and why the record failed.",
    )
}

/// What a connector's `errors.*` configs decide.
#[derive(Debug, Clone)]
pub struct ErrorPolicy {
    /// Skip records that still fail (`errors.tolerance=all`).
    pub tolerate_all: bool,
    /// How long to retry a retriable failure; `None` retries forever.
    pub retry_timeout: Option<Duration>,
    /// The longest wait between retries.
    pub retry_delay_max: Duration,
    /// Log each tolerated failure.
    pub log: bool,
    /// Include the record's coordinates in those logs.
    pub log_records: bool,
}

/// The first wait between retries; each next one doubles, up to the maximum.
const RETRY_DELAY_FIRST: Duration = Duration::from_millis(300);

impl ErrorPolicy {
    /// The policy of a connector's `configs`.
    pub fn from_configs(configs: &Configs) -> Result<ErrorPolicy, crate::config::ConfigError> {
        let timeout: i64 = configs.parsed_or("errors.retry.timeout", 0, ConfigType::Long)?;
        let delay_max: u64 =
            configs.parsed_or("errors.retry.delay.max.ms", 60_000, ConfigType::Long)?;
        Ok(ErrorPolicy {
            tolerate_all: configs
                .get("errors.tolerance")
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("all")),
            retry_timeout: u64::try_from(timeout).ok().map(Duration::from_millis),
            retry_delay_max: Duration::from_millis(delay_max.max(1)),
            log: configs.bool_or("errors.log.enable", false)?,
            log_records: configs.bool_or("errors.log.include.messages", false)?,
        })
    }

    /// Runs `operation`, retrying retriable failures within the retry timeout. While the task
    /// is `stopping`, a retriable failure ends it rather than being tolerated. `Ok(Ok(t))` on success; `Ok(Err(e))` when the record failed and
    /// is tolerated; `Err(e)` when the task must fail.
    pub fn execute<T>(
        &self,
        stage: Stage,
        stopping: &dyn Fn() -> bool,
        mut operation: impl FnMut() -> Result<T, ConnectError>,
    ) -> Result<Result<T, ConnectError>, ConnectError> {
        let started = Instant::now();
        let mut delay = RETRY_DELAY_FIRST;
        loop {
            let error = match operation() {
                Ok(value) => return Ok(Ok(value)),
                Err(error) => error,
            };
            let within_timeout = self
                .retry_timeout
                .is_none_or(|t| started.elapsed() + delay <= t);
            if error.is_retriable() && stopping() {
                // Not tolerated: the task ends here, and nothing past this record is
                // committed; its next run retries it.
                return Err(error);
            }
            if error.is_retriable() && within_timeout {
                std::thread::sleep(delay);
                delay = (delay * 2).min(self.retry_delay_max);
                continue;
            }
            if self.tolerate_all {
                if self.log {
                    tracing::warn!(%stage, %error, "a record failed and is skipped (errors.tolerance=all)");
                }
                return Ok(Err(error));
            }
            return Err(ConnectError::Failed(format!(
                "{stage} failed, and errors.tolerance is none: {error}"
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn policy(tolerance: &str, timeout_ms: &str) -> ErrorPolicy {
        let mut configs = Configs::new();
        configs.set("errors.tolerance", tolerance);
        configs.set("errors.retry.timeout", timeout_ms);
        configs.set("errors.retry.delay.max.ms", "1");
        ErrorPolicy::from_configs(&configs).unwrap()
    }

    #[test]
    fn retriable_failures_are_retried_within_the_timeout() {
        let calls = Cell::new(0);
        let outcome = policy("none", "10000").execute(Stage::Transformation, &|| false, || {
            calls.set(calls.get() + 1);
            if calls.get() < 3 {
                Err(ConnectError::Retriable("busy".into()))
            } else {
                Ok(calls.get())
            }
        });
        assert_eq!(outcome, Ok(Ok(3)));
    }

    #[test]
    fn a_retriable_failure_while_stopping_is_never_skipped() {
        let busy = || Err::<(), _>(ConnectError::Retriable("busy".into()));
        assert!(policy("all", "-1")
            .execute(Stage::Transformation, &|| true, busy)
            .is_err());
    }

    #[test]
    fn failures_stop_the_task_unless_tolerated() {
        let fail = || Err::<(), _>(ConnectError::Failed("bad record".into()));
        assert!(policy("none", "0")
            .execute(Stage::ValueConverter, &|| false, fail)
            .is_err());
        assert_eq!(
            policy("all", "0").execute(Stage::ValueConverter, &|| false, fail),
            Ok(Err(ConnectError::Failed("bad record".into())))
        );
    }
}
