//! Word count, the contract issue 11 sets so that anyone can check it from outside: reads
//! UTF-8 lines from topic `--input`, and writes to topic `--output`, for every word
//! (lower-cased, split on whitespace), a record whose key is the word and whose value is
//! its count so far as a decimal string. Runs until SIGTERM or Ctrl-C, which stop it
//! cleanly, and resumes where it left off (counts from their changelog, input from the
//! group's committed offsets).
//!
//! ```sh
//! cargo run --release -p runnel-streams --example wordcount -- \
//!     --bootstrap 127.0.0.1:9092 --input lines --output counts --application-id wordcount
//! ```
//!
//! The words are repartitioned through `<application id>-counts-repartition`, so the input
//! topic may have any number of partitions.

use std::process::ExitCode;

mod topology;

use clap::Parser;
use runnel_streams::{KafkaStreams, StreamsConfig};
use tokio::signal::unix::{signal, SignalKind};
use topology::word_count;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    input: String,
    #[arg(long)]
    output: String,
    #[arg(long)]
    application_id: String,
    /// Exactly-once processing (read_committed input, transactional output).
    #[arg(long)]
    exactly_once: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let topology = match word_count(&args.input, &args.output) {
        Ok(topology) => topology,
        Err(error) => {
            eprintln!("wordcount: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = StreamsConfig::new(&args.application_id, &args.bootstrap);
    if args.exactly_once {
        config = config.exactly_once();
    }
    let app = match KafkaStreams::start(topology, config).await {
        Ok(app) => app,
        Err(error) => {
            eprintln!("wordcount: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("wordcount: cannot listen for signals");
        return ExitCode::FAILURE;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    match app.close().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wordcount: {error}");
            ExitCode::FAILURE
        }
    }
}
