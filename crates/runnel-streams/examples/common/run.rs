//! What every example's `main` does with its topology: takes the flags every example has,
//! starts it, runs it until SIGTERM or Ctrl-C, then closes it cleanly (a last commit, then
//! it leaves the group) and says what it did. An error is printed with the example's name,
//! and the exit code says it failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use runnel_streams::{KafkaStreams, StreamsConfig, StreamsError, Topology};
use tokio::signal::unix::{signal, SignalKind};

// The flags of every example: where the cluster is, which application this is, and how.
// (Not a doc comment: clap would make it the examples' description.)
#[derive(clap::Args)]
pub(crate) struct AppArgs {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    application_id: String,
    /// Exactly-once processing (read_committed input, transactional output).
    #[arg(long)]
    exactly_once: bool,
    /// How often to commit; by default Kafka Streams' (30 s at least once, 100 ms exactly
    /// once).
    #[arg(long, value_name = "MS")]
    commit_interval_ms: Option<u64>,
    /// Where the stores live (default `./runnel-streams-state`); two instances on one
    /// machine need two.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

impl AppArgs {
    pub(crate) fn config(&self) -> StreamsConfig {
        let mut config = StreamsConfig::new(&self.application_id, &self.bootstrap);
        if self.exactly_once {
            config = config.exactly_once();
        }
        if let Some(millis) = self.commit_interval_ms {
            config.commit_interval = Duration::from_millis(millis);
        }
        if let Some(dir) = &self.state_dir {
            config = config.state_dir(dir);
        }
        config
    }
}

/// Runs `topology` with `config` until stopped.
pub(crate) async fn until_stopped(
    name: &str,
    topology: Result<Topology, StreamsError>,
    config: StreamsConfig,
) -> ExitCode {
    match run(topology, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{name}: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    topology: Result<Topology, StreamsError>,
    config: StreamsConfig,
) -> Result<(), StreamsError> {
    // Listening first: a signal while the application starts stops it cleanly too.
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return Err(StreamsError::Client("cannot listen for signals".into()));
    };
    let app = KafkaStreams::start(topology?, config).await?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    let metrics = app.metrics();
    eprintln!(
        "stopping: processed {} records, dropped {} (late, or without the key or value they need)",
        metrics.processed_records, metrics.dropped_records
    );
    app.close().await
}
