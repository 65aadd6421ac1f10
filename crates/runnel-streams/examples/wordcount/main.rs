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

#[path = "../common/run.rs"]
mod run;
mod topology;

use clap::Parser;
use topology::word_count;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    app: run::AppArgs,
    #[arg(long)]
    input: String,
    #[arg(long)]
    output: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = args.app.config();
    run::until_stopped("wordcount", word_count(&args.input, &args.output), config).await
}
