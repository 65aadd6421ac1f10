//! An enrichment join: orders from topic `--orders` joined with the customer each names,
//! from topic `--customers` read as a table, into topic `--output`. Both take JSON values:
//! an order `{"customer":"c1","item":"book","amount":12.5}` keyed by order id, a customer
//! `{"name":"Ada","tier":"gold"}` keyed by customer id. Each order is written with its
//! `"customer"` replaced by the customer's record (and id), or null if there is none yet.
//!
//! ```sh
//! cargo run --release -p runnel-streams --example enrichment -- --bootstrap 127.0.0.1:9092 \
//!     --orders orders --customers customers --output enriched-orders --application-id enrich
//! ```

use std::process::ExitCode;

#[path = "../common/run.rs"]
mod run;
mod topology;

use clap::Parser;
use runnel_streams::StreamsConfig;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    orders: String,
    #[arg(long)]
    customers: String,
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
    let mut config = StreamsConfig::new(&args.application_id, &args.bootstrap);
    if args.exactly_once {
        config = config.exactly_once();
    }
    let topology = topology::enrich_orders(&args.orders, &args.customers, &args.output);
    run::until_stopped("enrichment", topology, config).await
}
