//! The Runnel broker: the runtime shell around the protocol and storage crates.
//!
//! It owns the listener and connections (`server`), request handlers (`handlers`), the topics
//! and partitions on this node (`topics`), topic configs (`topic_config`), broker settings
//! (`config`) and periodic work (`background`). It is the only server crate that opens sockets
//! or reads config files; the protocol and storage crates below it do no network I/O.
//!
//! ```no_run
//! # async fn example() -> Result<(), runnel_broker::RunError> {
//! let config = runnel_broker::BrokerConfig::default(); // 127.0.0.1:9092, ./runnel-data
//! runnel_broker::run(config, std::future::pending()).await
//! # }
//! ```

mod background;
mod broker;
mod config;
mod error;
mod fetch_sessions;
#[cfg(test)]
mod fuzz_seeds;
mod groups;
mod handlers;
mod internal_topics;
mod io_pool;
mod partition;
mod pipeline;
#[cfg(test)]
mod power_loss;
mod producer_ids;
mod server;
mod topic_config;
mod topics;
mod transactions;

use std::future::Future;

pub use broker::{Broker, StartupError};
pub use config::{BrokerConfig, ConfigError};
pub use io_pool::{IoPool, PoolError};
pub use topic_config::TOPIC_CONFIGS;

/// Why the broker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
}

/// Runs a broker until `stop` completes, then shuts down cleanly: stops accepting, lets
/// requests in flight finish, flushes and closes every log.
pub async fn run(config: BrokerConfig, stop: impl Future<Output = ()>) -> Result<(), RunError> {
    let listen = config.listen.clone();
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .map_err(|join| StartupError::DataDir {
            dir: String::new(),
            reason: format!("recovery task failed: {join}"),
        })??;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|source| RunError::Listen {
            address: listen.clone(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(listen);
    tracing::info!(
        listen = %local,
        advertised = %broker.config().advertised(),
        data_dir = %broker.config().data_dir.display(),
        node_id = broker.node_id(),
        cluster_id = %broker.cluster_id(),
        "runnel ready"
    );
    let flusher = tokio::spawn(background::flush_due_partitions(broker.clone()));
    let checkpoints = tokio::spawn(background::write_checkpoints(broker.clone()));
    let retention = tokio::spawn(background::enforce_retention(broker.clone()));
    let group_timers = tokio::spawn(background::run_group_timers(broker.clone()));
    let transaction_timers = tokio::spawn(background::run_transaction_timers(broker.clone()));
    let cleaner = tokio::spawn(background::run_cleaner(broker.clone()));
    let server = tokio::spawn(server::serve(broker.clone(), listener));
    stop.await;
    tracing::info!("shutting down");
    broker.begin_shutdown();
    let _ = tokio::join!(
        server,
        flusher,
        checkpoints,
        retention,
        group_timers,
        transaction_timers,
        cleaner
    );
    tokio::task::spawn_blocking(move || broker.close())
        .await
        .ok();
    tracing::info!("stopped cleanly");
    Ok(())
}
