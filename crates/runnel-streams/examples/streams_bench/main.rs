//! The Rust side of `scripts/bench_streams.py`, which runs it against quixstreams on the same
//! broker and input: one of three pipelines from topic `--input` to topic `--output`, until
//! SIGTERM or Ctrl-C, which stop it cleanly (a last commit, then it leaves the group). Its
//! stores live on disk, under `--state-dir` if given.
//!
//! - `wordcount`: the word count example's topology (lower-cased words split on whitespace,
//!   repartitioned by word; the value is the word's running count as a decimal string);
//! - `windowed`: a count per key in tumbling 1-minute windows on event time (the records'
//!   timestamps) with a 10 s grace, emitted on every update; the output key is Kafka
//!   Streams' windowed key (the key's bytes, then the window start as 8 bytes big-endian),
//!   the value the count as 8 bytes big-endian;
//! - `passthrough`: every record copied as it is.
//!
//! ```sh
//! cargo run --release -p runnel-streams --example streams_bench -- --bootstrap 127.0.0.1:9092 \
//!     --pipeline wordcount --input lines --output counts --application-id bench-1
//! ```

use std::process::ExitCode;

#[path = "../common/run.rs"]
mod run;
#[path = "../wordcount/topology.rs"]
mod topology;

use clap::{Parser, ValueEnum};
use runnel_streams::{
    BytesSerde, Consumed, Grouped, I64Serde, Nullable, Produced, StreamsBuilder, StreamsError,
    StringSerde, TimeWindows, Topology, WindowedSerde,
};

/// The windowed pipeline's windows: tumbling, 1 minute, taking records up to 10 s late.
const WINDOW_MS: i64 = 60_000;
const GRACE_MS: i64 = 10_000;

#[derive(Clone, Copy, ValueEnum)]
enum Pipeline {
    Wordcount,
    Windowed,
    Passthrough,
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    app: run::AppArgs,
    #[arg(long, value_enum)]
    pipeline: Pipeline,
    #[arg(long)]
    input: String,
    #[arg(long)]
    output: String,
}

/// Counts each key's records in tumbling windows of event time, emitting every update.
fn windowed(input: &str, output: &str) -> Result<Topology, StreamsError> {
    let windows = TimeWindows::of_size_and_grace(WINDOW_MS, GRACE_MS);
    let builder = StreamsBuilder::new();
    builder
        .stream(input, Consumed::with(StringSerde, Nullable(BytesSerde)))
        .group_by_key(Grouped::with(StringSerde, Nullable(BytesSerde)))
        .windowed_by(windows)
        .count(Some("windowed-counts"))
        .to_stream()
        .to(
            output,
            Produced::with(WindowedSerde::new(StringSerde, windows), Nullable(I64Serde)),
        );
    builder.build()
}

/// Copies every record, key, value and timestamp as they are.
fn passthrough(input: &str, output: &str) -> Result<Topology, StreamsError> {
    let builder = StreamsBuilder::new();
    builder
        .stream(
            input,
            Consumed::with(Nullable(BytesSerde), Nullable(BytesSerde)),
        )
        .to(
            output,
            Produced::with(Nullable(BytesSerde), Nullable(BytesSerde)),
        );
    builder.build()
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let topology = match args.pipeline {
        Pipeline::Wordcount => topology::word_count(&args.input, &args.output),
        Pipeline::Windowed => windowed(&args.input, &args.output),
        Pipeline::Passthrough => passthrough(&args.input, &args.output),
    };
    run::until_stopped("streams_bench", topology, args.app.config()).await
}
