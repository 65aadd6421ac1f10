//! `runnel connect standalone|distributed`: a Kafka-Connect-compatible worker in this
//! process, with the REST API on 127.0.0.1:8083. Standalone: connectors from JSON or
//! properties files, as Kafka's `connect-standalone.sh` runs them. Distributed: workers of
//! one group share connectors through the cluster, as `connect-distributed.sh`. The worker
//! itself lives in `runnel-connect`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use runnel_connect::config::Configs;
use runnel_connect::distributed::{run_distributed, DistributedOptions};
use runnel_connect::standalone::{
    run_standalone, StandaloneOptions, DEFAULT_OFFSETS_FILE, DEFAULT_REST_LISTEN,
};

use crate::output::ClusterArgs;

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    #[command(subcommand)]
    command: ConnectCommand,
}

#[derive(Debug, Subcommand)]
enum ConnectCommand {
    /// Run a standalone worker: connectors from the files given and from the REST API, source
    /// offsets in a local file. Stops its connectors cleanly on Ctrl-C or SIGTERM.
    Standalone(StandaloneArgs),
    /// Run a distributed worker: workers started with the same --group-id share the
    /// connectors created over the REST API of any of them; configs, offsets and statuses
    /// are kept in three compacted topics. When a worker dies, its connectors and tasks move
    /// to the others.
    Distributed(DistributedArgs),
}

#[derive(Debug, Args)]
struct DistributedArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The workers' group (group.id).
    #[arg(long, value_name = "GROUP")]
    group_id: String,
    /// Where the REST API listens.
    #[arg(long, default_value = DEFAULT_REST_LISTEN, value_name = "HOST:PORT")]
    rest_listen: SocketAddr,
    /// The URL other workers reach this one's REST API at (default: http:// and
    /// --rest-listen).
    #[arg(long, value_name = "URL")]
    rest_advertised_url: Option<String>,
    /// The topic of connector configs (config.storage.topic).
    #[arg(long, default_value = "connect-configs", value_name = "TOPIC")]
    config_topic: String,
    /// The topic of source offsets (offset.storage.topic).
    #[arg(long, default_value = "connect-offsets", value_name = "TOPIC")]
    offsets_topic: String,
    /// The topic of statuses (status.storage.topic).
    #[arg(long, default_value = "connect-status", value_name = "TOPIC")]
    status_topic: String,
    /// The replication factor of those topics when the worker creates them (capped at
    /// the number of brokers).
    #[arg(long, default_value_t = 3, value_name = "N")]
    replication_factor: i16,
    /// How long the group waits for a silent worker before its work moves
    /// (session.timeout.ms).
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    session_timeout_ms: u64,
    #[command(flatten)]
    properties: WorkerProperties,
}

/// The worker properties both modes take.
#[derive(Debug, Args)]
struct WorkerProperties {
    /// A worker properties file, as Kafka's connect-*.properties: key.converter,
    /// value.converter (and their settings), offset.flush.interval.ms, config.providers.
    #[arg(long, value_name = "FILE")]
    worker_config: Option<PathBuf>,
    /// A worker property, overriding the file's (repeatable), e.g.
    /// -X value.converter.schemas.enable=false.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    worker_property: Vec<String>,
}

impl WorkerProperties {
    fn read(&self) -> anyhow::Result<Configs> {
        let mut properties = match &self.worker_config {
            Some(path) => Configs::from_properties(
                &std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            ),
            None => Configs::new(),
        };
        for property in &self.worker_property {
            let Some((key, value)) = property.split_once('=') else {
                bail!("-X {property}: expected KEY=VALUE");
            };
            properties.set(key.trim(), value.trim());
        }
        Ok(properties)
    }
}

#[derive(Debug, Args)]
struct StandaloneArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Where the REST API listens.
    #[arg(long, default_value = DEFAULT_REST_LISTEN, value_name = "HOST:PORT")]
    rest_listen: SocketAddr,
    /// Where source connectors' offsets are kept (offset.storage.file.filename).
    #[arg(long, default_value = DEFAULT_OFFSETS_FILE, value_name = "FILE")]
    offsets_file: PathBuf,
    #[command(flatten)]
    properties: WorkerProperties,
    /// Connector configurations to start: JSON as POST /connectors takes it ({"name",
    /// "config"}), a flat JSON object with "name", or a .properties file.
    #[arg(value_name = "CONNECTOR")]
    connectors: Vec<PathBuf>,
}

pub(crate) async fn run(
    args: ConnectArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    match args.command {
        ConnectCommand::Standalone(args) => standalone(args, shutdown).await,
        ConnectCommand::Distributed(args) => distributed(args, shutdown).await,
    }
}

async fn standalone(
    args: StandaloneArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let properties = args.properties.read()?;
    let options = StandaloneOptions {
        bootstrap: args.cluster.bootstrap.clone(),
        rest_listen: args.rest_listen,
        offsets_file: args.offsets_file,
        worker_properties: properties,
        connector_files: args.connectors,
    };
    run_standalone(options, runnel_connect::builtin_plugins(), shutdown).await?;
    Ok(())
}

async fn distributed(
    args: DistributedArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let options = DistributedOptions {
        bootstrap: args.cluster.bootstrap.clone(),
        group_id: args.group_id,
        rest_listen: args.rest_listen,
        advertised_url: args.rest_advertised_url,
        config_topic: args.config_topic,
        offsets_topic: args.offsets_topic,
        status_topic: args.status_topic,
        replication_factor: args.replication_factor,
        session_timeout: std::time::Duration::from_millis(args.session_timeout_ms),
        worker_properties: args.properties.read()?,
    };
    run_distributed(options, runnel_connect::builtin_plugins(), shutdown).await?;
    Ok(())
}

/// Runs a broker and, in the same process, a standalone Connect worker on it (`runnel
/// server --connect`). On `shutdown` the worker stops first, committing its offsets while
/// the broker still takes them, then the broker.
pub(crate) async fn with_broker(
    config: runnel_broker::BrokerConfig,
    rest_listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let bootstrap = config
        .advertised_listener
        .clone()
        .unwrap_or_else(|| config.listen.clone());
    let options = StandaloneOptions {
        bootstrap: bootstrap.clone(),
        rest_listen,
        offsets_file: config.data_dir.join("connect.offsets"),
        worker_properties: Configs::new(),
        connector_files: Vec::new(),
    };
    let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
    let (stop_broker, broker_stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(async move {
        let mut stopped = Box::pin(async move {
            let _ = worker_stopped.await;
        });
        // The broker is starting in this same process: wait until it answers, or the stop.
        let client = runnel_client::ClientConfig::new(bootstrap.clone());
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while runnel_client::Admin::connect(client.clone()).await.is_err() {
            if tokio::time::Instant::now() > deadline {
                tracing::error!(%bootstrap, "the broker did not answer; the Connect worker is not started");
                return;
            }
            tokio::select! {
                () = &mut stopped => return,
                () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
            }
        }
        if let Err(e) = run_standalone(options, runnel_connect::builtin_plugins(), stopped).await {
            tracing::error!(error = %e, "the Connect worker failed");
        }
    });
    let broker = runnel_broker::run(config, async move {
        let _ = broker_stopped.await;
    });
    tokio::pin!(broker);
    tokio::select! {
        // The broker ended by itself: it could not start, or failed.
        served = &mut broker => {
            served?;
            Ok(())
        }
        () = shutdown => {
            let _ = stop_worker.send(());
            let _ = worker.await;
            let _ = stop_broker.send(());
            broker.await?;
            Ok(())
        }
    }
}
