//! `StreamsConfig`'s settings as data, for the configuration reference
//! (`runnel docs config-reference`, `docs/configuration.md`); `runtime::tests` holds the table
//! to `StreamsConfig::new`; `StreamsConfig::SETTINGS` publishes it.

use runnel_client::SettingDoc;

/// Every field of `StreamsConfig`.
pub(crate) const STREAMS_SETTINGS: &[SettingDoc] = &[
    SettingDoc {
        field: "application_id",
        kafka: Some("application.id"),
        kind: "string",
        default: "",
        valid: "a non-empty topic-name prefix",
        doc: "Names the application: its consumer group, the prefix of its internal topics \
              (changelogs and repartition topics) and of its transactional ids. Every instance \
              of one application uses the same id.",
    },
    SettingDoc {
        field: "client",
        kafka: None,
        kind: "ClientConfig",
        default: "ClientConfig::new(bootstrap)",
        valid: "see the client settings",
        doc: "Brokers, timeouts and backoffs of the application's consumer, producers and \
              admin client.",
    },
    SettingDoc {
        field: "processing_guarantee",
        kafka: Some("processing.guarantee"),
        kind: "ProcessingGuarantee",
        default: "at_least_once",
        valid: "at_least_once, exactly_once (Kafka's exactly_once_v2)",
        doc: "at_least_once: after a failure some records are processed again. exactly_once: \
              each commit is one transaction holding the outputs, the store changes and the \
              input offsets, so every record counts once.",
    },
    SettingDoc {
        field: "commit_interval",
        kafka: Some("commit.interval.ms"),
        kind: "duration",
        default: "30000 ms",
        valid: "above 0",
        doc: "How often outputs, stores and input positions are committed. \
              `StreamsConfig::exactly_once` sets 100 ms, as Kafka Streams does, since \
              consumers reading committed records see nothing before a commit.",
    },
    SettingDoc {
        field: "session_timeout",
        kafka: Some("session.timeout.ms"),
        kind: "duration",
        default: "45000 ms",
        valid: "within the broker's group-min/max-session-timeout-ms",
        doc: "How long the group waits for an instance that went silent (crashed) before \
              its tasks move to the others.",
    },
    SettingDoc {
        field: "state_dir",
        kafka: Some("state.dir"),
        kind: "optional path",
        default: "./runnel-streams-state",
        valid: "a directory; None keeps stores in memory",
        doc: "Where tasks keep their stores, in `<state_dir>/<application id>/`. Without one \
              the stores live in memory and are restored from their changelogs at every \
              start. Two instances on one machine need two directories.",
    },
];
