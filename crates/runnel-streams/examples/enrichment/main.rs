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

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    app: run::AppArgs,
    #[arg(long)]
    orders: String,
    #[arg(long)]
    customers: String,
    #[arg(long)]
    output: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = args.app.config();
    let topology = topology::enrich_orders(&args.orders, &args.customers, &args.output);
    run::until_stopped("enrichment", topology, config).await
}
