//! `runnel connect standalone`: a Kafka-Connect-compatible worker in this process, with the
//! REST API on 127.0.0.1:8083 and connectors from JSON or properties files, as Kafka's
//! `connect-standalone.sh` runs them. The worker itself lives in `runnel-connect`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use runnel_connect::config::Configs;
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
    /// A worker properties file, as Kafka's connect-standalone.properties: key.converter,
    /// value.converter (and their settings), offset.flush.interval.ms, config.providers.
    #[arg(long, value_name = "FILE")]
    worker_config: Option<PathBuf>,
    /// A worker property, overriding the file's (repeatable), e.g.
    /// -X value.converter.schemas.enable=false.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    worker_property: Vec<String>,
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
    }
}

async fn standalone(
    args: StandaloneArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut properties = match &args.worker_config {
        Some(path) => Configs::from_properties(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => Configs::new(),
    };
    for property in &args.worker_property {
        let Some((key, value)) = property.split_once('=') else {
            bail!("-X {property}: expected KEY=VALUE");
        };
        properties.set(key.trim(), value.trim());
    }
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
