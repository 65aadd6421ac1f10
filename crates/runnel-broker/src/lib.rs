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

mod admin_listener;
mod background;
mod broker;
mod cluster;
mod config;
mod coordination;
mod error;
mod fetch_sessions;
#[cfg(test)]
mod fuzz_seeds;
mod groups;
mod handlers;
mod internal_topics;
mod io_pool;
#[cfg(test)]
mod local_controller;
mod metrics;
mod partition;
mod pipeline;
#[cfg(test)]
mod power_loss;
mod producer_ids;
mod replica_fetcher;
mod server;
mod topic_config;
mod topics;
mod transactions;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use admin_listener::{AdminListener, Phase};
use runnel_controller::ControllerConfig;
use runnel_quorum::{Quorum, QuorumConfig};
use runnel_storage::{FileSystem, OsFileSystem, SyncLedgerFileSystem, SystemClock};

pub use broker::{Broker, StartupError};
pub use config::{
    is_dynamic_broker_config, AdminListen, BrokerConfig, ConfigError, ProcessRole,
    DEFAULT_ADMIN_LISTEN,
};
pub use config::{BrokerSetting, BROKER_SETTINGS};
pub use io_pool::{IoPool, PoolError};
pub use topic_config::{ConfigDef, ConfigType, TOPIC_CONFIGS};

/// Where a one-node cluster's controller listens when `controller-listen` is not set.
const LONE_CONTROLLER_LISTEN: &str = "127.0.0.1:0";

/// Why the broker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
}

/// Runs this node's roles until `stop` completes: a broker (see [`run_broker`]), or a
/// controller quorum voter.
pub async fn run(config: BrokerConfig, stop: impl Future<Output = ()>) -> Result<(), RunError> {
    let admin = start_admin_listener(&config).await?;
    let result = if config.has_role(ProcessRole::Broker) {
        run_broker(config, &admin, stop).await
    } else {
        run_controller(config, &admin, stop).await
    };
    admin.stop();
    result
}

/// Starts the admin listener `admin-listen` asks for. The default address may be taken by
/// another node on the same machine: this one then runs without it, and says so.
async fn start_admin_listener(config: &BrokerConfig) -> Result<AdminListener, RunError> {
    // The console is a client of the cluster like any other: it reaches the broker through
    // the Kafka listener clients are told to use.
    let console = || {
        config.console.then(|| {
            runnel_console::router(runnel_console::ConsoleConfig {
                bootstrap: config.advertised().to_owned(),
                connect_url: config.console_connect_url.clone(),
            })
        })
    };
    match config.admin_listen() {
        AdminListen::Off => AdminListener::start(None, None).await,
        AdminListen::At(address) => AdminListener::start(Some(address), console()).await,
        AdminListen::Default => {
            match AdminListener::start(Some(DEFAULT_ADMIN_LISTEN), console()).await {
                Ok(admin) => Ok(admin),
                Err(error) if !config.console => {
                    tracing::warn!(%error, "running without the admin listener (no /metrics or /health): set --admin-listen to serve it elsewhere, or to none");
                    AdminListener::start(None, None).await
                }
                // Asked for the console: not serving it is not an option.
                Err(error) => Err(error),
            }
        }
    }
}

async fn bind(address: &str) -> Result<tokio::net::TcpListener, RunError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| RunError::Listen {
            address: address.to_owned(),
            source,
        })
}

/// The disk this node works on: the real one, writing down its fsyncs when a fault-injection
/// test asks for a sync ledger.
fn file_system(config: &BrokerConfig) -> Result<Arc<dyn FileSystem>, RunError> {
    match &config.sync_ledger {
        None => Ok(Arc::new(OsFileSystem)),
        Some(ledger) => {
            tracing::warn!(ledger = %ledger.display(), "writing down every fsync, for a fault-injection test");
            let fs = SyncLedgerFileSystem::open(ledger).map_err(|error| StartupError::DataDir {
                dir: ledger.display().to_string(),
                reason: format!("cannot open the sync ledger: {error}"),
            })?;
            Ok(Arc::new(fs))
        }
    }
}

/// Starts this node's voter of the controller quorum among `voters`, serving `listener`.
async fn start_quorum(
    config: &BrokerConfig,
    voters: BTreeMap<u64, String>,
    listener: tokio::net::TcpListener,
    fs: Arc<dyn FileSystem>,
) -> Result<Quorum, RunError> {
    let quorum_config = QuorumConfig {
        node_id: config.node_id as u64,
        voters,
        data_dir: config.data_dir.clone(),
        controller: ControllerConfig {
            default_partitions: config.num_partitions,
            default_replication_factor: config.default_replication_factor,
            min_insync_replicas: 1,
            producer_id_block_size: producer_ids::BLOCK_SIZE,
        },
        broker_session_timeout_ms: config.broker_session_timeout_ms,
        raft_heartbeat_ms: config.controller_heartbeat_ms,
        snapshot_every_entries: runnel_quorum::SNAPSHOT_EVERY_ENTRIES,
    };
    let quorum = Quorum::start(quorum_config, listener, fs)
        .await
        .map_err(|error| StartupError::DataDir {
            dir: config.data_dir.display().to_string(),
            reason: error.to_string(),
        })?;
    tracing::info!(
        controller_listen = %quorum.local_addr(),
        node_id = config.node_id,
        data_dir = %config.data_dir.display(),
        "runnel controller ready"
    );
    Ok(quorum)
}

/// With no `controller-quorum`, a broker is a one-node cluster of the same code: the only
/// voter of its own quorum, on `controller-listen` or a free loopback port. Returns the
/// config naming that quorum. The voter's address may differ at each start; that is
/// harmless, as a lone voter never calls itself.
async fn as_one_node_cluster(
    mut config: BrokerConfig,
) -> Result<(BrokerConfig, Option<tokio::net::TcpListener>), RunError> {
    if config.controller_quorum.is_some() {
        return Ok((config, None));
    }
    let listen = config
        .controller_listen
        .clone()
        .unwrap_or_else(|| LONE_CONTROLLER_LISTEN.to_owned());
    let listener = bind(&listen).await?;
    let address = listener
        .local_addr()
        .map_err(|source| RunError::Listen {
            address: listen,
            source,
        })?
        .to_string();
    config.controller_quorum = Some(format!("{}@{address}", config.node_id));
    config.controller_listen = Some(address);
    if !config.has_role(ProcessRole::Controller) {
        config.roles.push(ProcessRole::Controller);
    }
    Ok((config, Some(listener)))
}

/// Starts this node's voter of the quorum `controller-quorum` names.
/// `listener` is the controller listener if it is bound already.
async fn start_configured_quorum(
    config: &BrokerConfig,
    listener: Option<tokio::net::TcpListener>,
    fs: Arc<dyn FileSystem>,
) -> Result<Quorum, RunError> {
    let listener = match listener {
        Some(listener) => listener,
        None => bind(config.controller_listen.as_deref().unwrap_or_default()).await?,
    };
    start_quorum(config, config.voters()?, listener, fs).await
}

/// Runs a voter of the controller quorum until `stop` completes. What it has on disk (the
/// metadata log, its vote and snapshot) is durable at every step, so stopping is just
/// stopping.
async fn run_controller(
    config: BrokerConfig,
    admin: &AdminListener,
    stop: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let quorum = start_configured_quorum(&config, None, file_system(&config)?).await?;
    admin.set_raft(quorum.progress());
    admin.set_phase(Phase::Serving);
    stop.await;
    admin.set_phase(Phase::Stopping);
    tracing::info!("shutting down");
    quorum.shutdown().await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Runs a broker until `stop` completes, then shuts down cleanly: stops accepting, lets
/// requests in flight finish, flushes and closes every log.
async fn run_broker(
    config: BrokerConfig,
    admin: &AdminListener,
    stop: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let (config, controller_listener) = as_one_node_cluster(config).await?;
    let listen = config.listen.clone();
    let controllers: Vec<String> = config.voters()?.into_values().collect();
    let fs = file_system(&config)?;
    let quorum = if config.has_role(ProcessRole::Controller) {
        let quorum = start_configured_quorum(&config, controller_listener, Arc::clone(&fs)).await?;
        admin.set_raft(quorum.progress());
        Some(quorum)
    } else {
        None
    };
    let broker =
        tokio::task::spawn_blocking(move || Broker::open_with(config, fs, Arc::new(SystemClock)))
            .await
            .map_err(|join| StartupError::DataDir {
                dir: String::new(),
                reason: format!("recovery task failed: {join}"),
            })??;
    admin.set_broker(&broker);
    let opened = Arc::clone(&broker);
    let incarnation = broker
        .io
        .run(move || cluster::Incarnation::next(&opened))
        .await
        .map_err(|error| error.to_string())
        .and_then(|next| next.map_err(|error| error.to_string()))
        .map_err(|reason| StartupError::DataDir {
            dir: broker.config().data_dir.display().to_string(),
            reason: format!("cannot write this broker's incarnation: {reason}"),
        })?;
    let member = Arc::new(cluster::ClusterMember::start(
        &broker,
        controllers,
        quorum,
        incarnation,
    ));
    let _ = broker.cluster.set(Arc::clone(&member));
    tokio::pin!(stop);
    let mut cluster_tasks = Vec::new();
    let joined = async {
        // Before any image is applied: applying removes every topic the cluster does not know.
        cluster::adopt_local_topics(&broker, &member)
            .await
            .map_err(|reason| StartupError::DataDir {
                dir: broker.config().data_dir.display().to_string(),
                reason,
            })?;
        cluster_tasks.extend([
            tokio::spawn(cluster::apply_images(broker.clone())),
            tokio::spawn(cluster::propose_isr_changes(broker.clone())),
            tokio::spawn(cluster::refill_producer_ids(broker.clone())),
            tokio::spawn(cluster::checkpoint_high_watermarks(broker.clone())),
        ]);
        // As a KRaft broker does, a cluster member lets clients in only once it has caught
        // up with the metadata: before, it would answer Metadata with no brokers and
        // produces with UNKNOWN_TOPIC_OR_PARTITION, which sends librdkafka into
        // re-bootstrapping with requests it still counts in flight, after which it never
        // produces again.
        member.wait_caught_up().await;
        Ok::<(), RunError>(())
    };
    let stopped_early = tokio::select! {
        joined = joined => {
            joined?;
            false
        }
        () = &mut stop => true,
    };
    let flusher = tokio::spawn(background::flush_due_partitions(broker.clone()));
    let checkpoints = tokio::spawn(background::write_checkpoints(broker.clone()));
    let retention = tokio::spawn(background::enforce_retention(broker.clone()));
    let group_timers = tokio::spawn(background::run_group_timers(broker.clone()));
    let transaction_timers = tokio::spawn(background::run_transaction_timers(broker.clone()));
    let cleaner = tokio::spawn(background::run_cleaner(broker.clone()));
    let server = if stopped_early {
        tracing::info!("stopped before catching up with the metadata");
        None
    } else {
        let listener = bind(&listen).await?;
        let local = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or(listen);
        admin.set_phase(Phase::Serving);
        tracing::info!(
            listen = %local,
            admin = %admin.local_addr().map_or_else(|| "none".to_owned(), |a| a.to_string()),
            advertised = %broker.config().advertised(),
            data_dir = %broker.config().data_dir.display(),
            node_id = broker.node_id(),
            cluster_id = %broker.cluster_id(),
            "runnel ready"
        );
        let server = tokio::spawn(server::serve(broker.clone(), listener));
        stop.await;
        Some(server)
    };
    tracing::info!("shutting down");
    admin.set_phase(Phase::Stopping);
    // Controlled shutdown: the leaderships move away while this broker still serves.
    member.shut_down().await;
    broker.begin_shutdown();
    futures::future::join_all(cluster_tasks).await;
    if let Some(server) = server {
        let _ = server.await;
    }
    let _ = tokio::join!(
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
