//! A standalone worker, as Kafka's `connect-standalone`: one process, connectors from files
//! given at start or created over REST, source offsets in a local file. What the `runnel
//! connect standalone` command and embedders run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use runnel_client::{Admin, ClientConfig};
use serde_json::Value as JsonValue;

use crate::api::ConnectApi;
use crate::config::{ConfigDef, ConfigType, Configs, Importance, Validator};
use crate::connector::Plugins;
use crate::herder::Herder;
use crate::offsets::FileOffsetStore;
use crate::rest::{router, ServerInfo};
use crate::status::TargetState;
use crate::worker::{Worker, WorkerConfig};

/// Where the REST API listens by default, as Kafka Connect's.
pub const DEFAULT_REST_LISTEN: &str = "127.0.0.1:8083";
/// Where a standalone worker keeps source offsets by default.
pub const DEFAULT_OFFSETS_FILE: &str = "./runnel-connect.offsets";

/// How to run a standalone worker.
#[derive(Debug, Clone)]
pub struct StandaloneOptions {
    /// The cluster.
    pub bootstrap: String,
    /// Where the REST API listens.
    pub rest_listen: SocketAddr,
    /// The source offsets file (`offset.storage.file.filename`).
    pub offsets_file: PathBuf,
    /// The worker's properties (converters, `offset.flush.interval.ms`, `config.providers`).
    pub worker_properties: Configs,
    /// Connector configurations to start with.
    pub connector_files: Vec<PathBuf>,
}

/// Why a worker could not start or run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// A connector configuration file: JSON as `POST /connectors` takes it (`{"name", "config"}`)
/// or as `PUT .../config` does (a flat object with `name`), or a Java properties file.
pub fn read_connector_file(path: &Path) -> Result<(String, Configs, TargetState), StartError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StartError(format!("cannot read {}: {e}", path.display())))?;
    let bad = |why: String| StartError(format!("{}: {why}", path.display()));
    let (configs, initial) = if text.trim_start().starts_with('{') {
        let json: JsonValue =
            serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let initial = match json.get("initial_state").and_then(JsonValue::as_str) {
            Some(s) if s.eq_ignore_ascii_case("paused") => TargetState::Paused,
            Some(s) if s.eq_ignore_ascii_case("stopped") => TargetState::Stopped,
            _ => TargetState::Started,
        };
        let (object, name) = match json.get("config") {
            Some(config) => (config.clone(), json.get("name").cloned()),
            None => (json.clone(), None),
        };
        let object = object
            .as_object()
            .ok_or_else(|| bad("\"config\" must be an object".to_owned()))?;
        let mut configs = Configs::new();
        for (key, value) in object {
            let text = match value {
                JsonValue::String(s) => s.clone(),
                JsonValue::Number(n) => n.to_string(),
                JsonValue::Bool(b) => b.to_string(),
                other => {
                    return Err(bad(format!(
                        "the value of {key} must be a string, not {other}"
                    )))
                }
            };
            configs.set(key.clone(), text);
        }
        if let Some(name) = name.as_ref().and_then(JsonValue::as_str) {
            configs.set("name", name);
        }
        (configs, initial)
    } else {
        (Configs::from_properties(&text), TargetState::Started)
    };
    let name = configs
        .get("name")
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("no connector \"name\"".to_owned()))?
        .to_owned();
    Ok((name, configs, initial))
}

/// The worker properties both modes read (`--worker-config FILE`, `-X KEY=VALUE`), for the
/// configuration reference; `tests::worker_def_defaults_are_what_the_worker_does` holds the
/// defaults to [`worker_config`] and the worker. Other keys are kept and reach the
/// converters under their `key.converter.` / `value.converter.` prefixes.
pub fn worker_def() -> ConfigDef {
    let group = "Worker";
    ConfigDef::new()
        .define(
            "key.converter",
            ConfigType::Class,
            Some(crate::worker::DEFAULT_CONVERTER),
            Importance::High,
            group,
            "The converter of record keys for connectors that name none: JsonConverter, \
             StringConverter or ByteArrayConverter (fully qualified or short). Its settings go \
             under key.converter., e.g. key.converter.schemas.enable.",
        )
        .define(
            "value.converter",
            ConfigType::Class,
            Some(crate::worker::DEFAULT_CONVERTER),
            Importance::High,
            group,
            "The converter of record values for connectors that name none; its settings go \
             under value.converter.",
        )
        .define(
            "offset.flush.interval.ms",
            ConfigType::Long,
            Some("10000"),
            Importance::Low,
            group,
            "How often tasks commit: source offsets up to the last record the cluster \
             acknowledged, sink consumer offsets after a flush of the task.",
        )
        .validated(Validator::Range { min: 0, max: None })
        .define(
            "exactly.once.source.support",
            ConfigType::String,
            Some("disabled"),
            Importance::High,
            group,
            "enabled: each source task writes its records and their offsets in one \
             transaction (KIP-618). Needs the offsets in a topic, so distributed workers only.",
        )
        .validated(Validator::OneOf(&["enabled", "disabled"]))
        .define(
            "config.providers",
            ConfigType::List,
            Some("file,env,dir"),
            Importance::Low,
            group,
            "Which ${provider:...} placeholders in connector configs are resolved: file \
             (a key of a properties file), env (an environment variable), dir (a file in a \
             directory).",
        )
        .define(
            "consumer.session.timeout.ms",
            ConfigType::Long,
            Some("45000"),
            Importance::Low,
            group,
            "The session timeout of sink tasks' consumers: how soon a crashed task's \
             partitions move to another.",
        )
        .validated(Validator::Range { min: 1, max: None })
}

/// The worker configuration of `properties`, named `worker_id`.
pub fn worker_config(
    bootstrap: &str,
    worker_id: &str,
    properties: Configs,
) -> Result<WorkerConfig, StartError> {
    let mut config = WorkerConfig::new(bootstrap, worker_id);
    let interval: u64 = properties
        .parsed_or(
            "offset.flush.interval.ms",
            10_000,
            crate::config::ConfigType::Long,
        )
        .map_err(|e| StartError(e.message))?;
    config.offset_flush_interval = std::time::Duration::from_millis(interval.max(1));
    config.exactly_once_source = match properties.get("exactly.once.source.support").map(str::trim)
    {
        None | Some("") | Some("disabled") => false,
        Some("enabled") => true,
        Some(other) => {
            return Err(StartError(format!(
                "exactly.once.source.support={other}: expected enabled or disabled"
            )))
        }
    };
    if let Some(providers) = properties.get("config.providers") {
        config.providers =
            crate::providers::ConfigProviders::new(crate::config::split_list(providers));
    }
    config.properties = properties;
    Ok(config)
}

/// Runs a standalone worker until `shutdown` completes, then stops its connectors.
pub async fn run_standalone(
    options: StandaloneOptions,
    plugins: Plugins,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let admin = Admin::connect(ClientConfig::new(options.bootstrap.clone()))
        .await
        .map_err(|e| {
            StartError(format!(
                "cannot reach the cluster at {}: {e}",
                options.bootstrap
            ))
        })?;
    let cluster = admin.describe_cluster().await.map_err(|e| {
        StartError(format!(
            "cannot describe the cluster at {}: {e}",
            options.bootstrap
        ))
    })?;
    let listener = tokio::net::TcpListener::bind(options.rest_listen)
        .await
        .map_err(|e| StartError(format!("cannot listen on {}: {e}", options.rest_listen)))?;
    let worker_id = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| options.rest_listen.to_string());
    let offsets =
        FileOffsetStore::open(&options.offsets_file).map_err(|e| StartError(e.to_string()))?;
    let config = worker_config(
        &options.bootstrap,
        &worker_id,
        options.worker_properties.clone(),
    )?;
    let worker = Worker::new(config, tokio::runtime::Handle::current(), Arc::new(offsets));
    let herder = Herder::new(worker, plugins);

    let mut starting = Vec::new();
    for path in &options.connector_files {
        starting.push(read_connector_file(path)?);
    }
    for (name, configs, initial) in starting {
        let h = herder.clone();
        let created =
            tokio::task::spawn_blocking(move || h.create(&name, configs, initial).map(|_| name))
                .await
                .map_err(|e| StartError(e.to_string()))?;
        match created {
            Ok(name) => tracing::info!(connector = %name, "connector started"),
            Err(e) => {
                return Err(StartError(format!(
                    "cannot create a connector from its file: {e}"
                )))
            }
        }
    }

    let info = ServerInfo::of(cluster.cluster_id);
    tracing::info!(rest = %worker_id, bootstrap = %options.bootstrap, "runnel connect ready");
    eprintln!(
        "runnel connect ready rest=http://{worker_id} bootstrap={}",
        options.bootstrap
    );
    let served = axum::serve(listener, router(herder.clone(), info))
        .with_graceful_shutdown(shutdown)
        .await;
    let h = herder.clone();
    let _ = tokio::task::spawn_blocking(move || h.shutdown()).await;
    served.map_err(|e| StartError(format!("the REST server failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_def_defaults_are_what_the_worker_does() {
        let def = worker_def();
        let default = |key: &str| {
            def.keys()
                .iter()
                .find(|k| k.name == key)
                .and_then(|k| k.default.clone())
                .unwrap_or_else(|| panic!("{key} has no default"))
        };
        let config = worker_config("h:1", "w", Configs::new()).expect("defaults are valid");
        assert_eq!(
            default("offset.flush.interval.ms"),
            config.offset_flush_interval.as_millis().to_string()
        );
        assert_eq!(
            default("exactly.once.source.support") == "enabled",
            config.exactly_once_source
        );
        let named = crate::providers::ConfigProviders::new(crate::config::split_list(&default(
            "config.providers",
        )));
        for provider in ["file", "env", "dir", "vault"] {
            let placeholder = format!("${{{provider}:k}}");
            assert_eq!(
                named.has_placeholder(&placeholder),
                config.providers.has_placeholder(&placeholder),
                "{provider}"
            );
        }
        for role in ["key.converter", "value.converter"] {
            assert_eq!(default(role), crate::worker::DEFAULT_CONVERTER);
        }
        let consumer = runnel_client::ConsumerConfig::new("h:1");
        assert_eq!(
            default("consumer.session.timeout.ms"),
            consumer.session_timeout.as_millis().to_string()
        );
        // And the defaults pass the definition's own checks.
        let mut defaults = Configs::new();
        for key in def.keys() {
            defaults.set(key.name.clone(), key.default.clone().unwrap_or_default());
        }
        assert!(def.check(&defaults).is_ok());
    }

    #[test]
    fn connector_files_read_in_the_three_shapes_kafka_users_write() {
        let dir = tempfile::tempdir().unwrap();
        let post = dir.path().join("post.json");
        std::fs::write(
            &post,
            r#"{"name":"a","config":{"connector.class":"FileStreamSource","tasks.max":1}}"#,
        )
        .unwrap();
        let (name, configs, initial) = read_connector_file(&post).unwrap();
        assert_eq!(
            (name.as_str(), configs.get("tasks.max"), initial),
            ("a", Some("1"), TargetState::Started)
        );
        assert_eq!(configs.get("name"), Some("a"));

        let flat = dir.path().join("flat.json");
        std::fs::write(&flat, r#"{"name":"b","connector.class":"FileStreamSink"}"#).unwrap();
        assert_eq!(read_connector_file(&flat).unwrap().0, "b");

        let properties = dir.path().join("c.properties");
        std::fs::write(&properties, "name=c\nconnector.class=FileStreamSink\n").unwrap();
        assert_eq!(read_connector_file(&properties).unwrap().0, "c");

        let nameless = dir.path().join("nameless.json");
        std::fs::write(&nameless, r#"{"connector.class":"FileStreamSink"}"#).unwrap();
        assert!(read_connector_file(&nameless).is_err());
    }
}
