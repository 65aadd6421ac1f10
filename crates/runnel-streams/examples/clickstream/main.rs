//! A windowed click-stream aggregation with late events: reads clicks from topic `--input`
//! (the page as the value, the click's time as the record timestamp) and writes to topic
//! `--output`, per page and tumbling one-minute window of event time, the number of clicks,
//! as JSON keyed by the page: `{"page","window_start","window_end","clicks"}`. Clicks
//! arriving out of order are counted in their window while it is open, up to 30 seconds
//! after it ends; later ones are dropped, and the count of dropped records is printed when
//! it stops. With `--emit-final`, each window's count is written once, when it closes,
//! instead of on every click.
//!
//! ```sh
//! cargo run --release -p runnel-streams --example clickstream -- \
//!     --bootstrap 127.0.0.1:9092 --input clicks --output page-views --application-id clicks
//! ```

use std::process::ExitCode;

#[path = "../common/run.rs"]
mod run;
mod topology;

use clap::Parser;
use runnel_streams::EmitStrategy;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    app: run::AppArgs,
    #[arg(long)]
    input: String,
    #[arg(long)]
    output: String,
    /// Each window's final count only, once it closes (its end plus the grace passed).
    #[arg(long)]
    emit_final: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let emit = if args.emit_final {
        EmitStrategy::OnWindowClose
    } else {
        EmitStrategy::OnWindowUpdate
    };
    let config = args.app.config();
    let topology = topology::clicks_per_page(&args.input, &args.output, emit);
    run::until_stopped("clickstream", topology, config).await
}
