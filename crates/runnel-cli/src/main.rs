//! `runnel`: the broker (`runnel server`) and the tools people drive a cluster with
//! (`runnel topic|group|offsets|streams|cluster|produce|consume|bench`), all on the async
//! `runnel-client`, so they work against any Kafka-compatible cluster; `runnel dev cluster`
//! and `runnel demo` for a local cluster, `runnel connect` for Connect workers, and
//! `runnel docs|completions|man` for what is generated from the code.
//!
//! Every tool takes `-b/--bootstrap` (or `RUNNEL_BOOTSTRAP`; `RUNNEL_BROKERS` is read too), a
//! connection profile (`--profile`, see [`profile`]) and client properties (`-X KEY=VALUE`),
//! prints tables for people and `-f/--format json` for scripts, and fails with one line on
//! stderr (one `{"error": ...}` object under `--format json`) and a non-zero exit.

mod bench_cmd;
mod cluster_cmd;
mod cluster_config_cmd;
mod config_reference;
mod connect_cmd;
mod consume_cmd;
mod datetime;
mod demo_cmd;
mod dev_cmd;
mod docs_cmd;
mod group_cmd;
mod offsets_cmd;
mod open_files;
mod output;
mod produce_cmd;
mod profile;
mod streams_cmd;
mod template;
mod topic_cmd;
mod transactions_cmd;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use runnel_broker::{BrokerConfig, ProcessRole};
use runnel_protocol::ClaimedSizeAllocator;

// Request decoding must survive array counts that claim gigabytes; see runnel-protocol.
#[global_allocator]
static ALLOCATOR: ClaimedSizeAllocator = ClaimedSizeAllocator;

#[derive(Debug, Parser)]
#[command(
    name = "runnel",
    version,
    about = "Runnel: a Kafka-compatible streaming platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process; boxing buys nothing
enum Command {
    /// Run a broker or a controller. With no arguments: a broker on 127.0.0.1:9092, data in
    /// ./runnel-data, a cluster of one.
    Server(ServerArgs),
    /// Topics: create, list, describe, delete, alter configs, add partitions, trim a prefix.
    Topic(topic_cmd::TopicArgs),
    /// Consumer groups: list, describe (members, committed offsets, lag), delete, reset or
    /// delete offsets.
    Group(group_cmd::GroupArgs),
    /// Each partition's log start offset, high watermark and last stable offset, and the
    /// offset of a time.
    Offsets(offsets_cmd::OffsetsArgs),
    /// Streams applications: reset one so that it reprocesses its input.
    Streams(streams_cmd::StreamsArgs),
    /// Connect: run a worker with Kafka Connect's REST API and the built-in file and
    /// database connectors.
    Connect(connect_cmd::ConnectArgs),
    /// The cluster: its id, controller and brokers, its health, leaders and reassignments.
    Cluster(cluster_cmd::ClusterCmdArgs),
    /// Transactional ids: list them, describe one (state, producer, open transaction).
    Transactions(transactions_cmd::TransactionsArgs),
    /// Idempotent and transactional producers as a topic's partitions remember them.
    Producers(transactions_cmd::ProducersArgs),
    /// Write lines from stdin or a file to a topic, one record a line.
    Produce(produce_cmd::ProduceArgs),
    /// Print a topic's records: one value a line, kcat-style templates, or JSON.
    Consume(consume_cmd::ConsumeArgs),
    /// Load-test a Kafka-compatible cluster: throughput and latency percentiles.
    Bench(bench_cmd::BenchArgs),
    /// Local setups for development: `runnel dev cluster --nodes 3`.
    Dev(dev_cmd::DevArgs),
    /// The platform end to end on this machine: a 3-node cluster, a click producer, page
    /// views counted in 10-second windows, a Connect sink into SQLite, and the web console.
    Demo(demo_cmd::DemoArgs),
    /// Print a shell completion script: `runnel completions bash > /etc/bash_completion.d/runnel`.
    Completions(docs_cmd::CompletionsArgs),
    /// Write a man page for every command and subcommand (runnel.1, runnel-topic-create.1...).
    Man(docs_cmd::ManArgs),
    /// Documents generated from the code: `runnel docs config-reference`.
    Docs(docs_cmd::DocsArgs),
}

/// Flags override `RUNNEL_*` environment variables, which override the config file.
#[derive(Debug, Args)]
struct ServerArgs {
    /// TOML file whose keys are these flags' names (e.g. `listen = "0.0.0.0:9092"`).
    #[arg(long, env = "RUNNEL_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "RUNNEL_LISTEN", value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address clients are told to connect to (defaults to --listen).
    #[arg(long, env = "RUNNEL_ADVERTISED_LISTENER", value_name = "HOST:PORT")]
    advertised_listener: Option<String>,
    /// Where the admin listener serves HTTP (/metrics for Prometheus, /health/live,
    /// /health/ready), or `none`. Default 127.0.0.1:9644; a node that finds the default
    /// taken runs without one.
    #[arg(long, env = "RUNNEL_ADMIN_LISTEN", value_name = "HOST:PORT|none")]
    admin_listen: Option<String>,
    /// Serve the web console on the admin listener: http://ADMIN-LISTEN/console/.
    #[arg(long, env = "RUNNEL_CONSOLE")]
    console: bool,
    /// A Connect worker's REST API (http://HOST:PORT) whose connectors the console shows
    /// (set by itself with --connect).
    #[arg(long, env = "RUNNEL_CONSOLE_CONNECT_URL", value_name = "URL")]
    console_connect_url: Option<String>,
    /// Where partition logs and metadata live.
    #[arg(long, env = "RUNNEL_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// This node's id (node.id): unique in the cluster, and one of the voters' ids on a
    /// controller.
    #[arg(long, env = "RUNNEL_NODE_ID")]
    node_id: Option<i32>,
    /// The failure domain this broker is in (broker.rack): a new partition's replicas are
    /// spread over racks first.
    #[arg(long, env = "RUNNEL_RACK")]
    rack: Option<String>,
    /// What this node runs, comma-separated: broker, controller (process.roles; default
    /// broker).
    #[arg(
        long,
        env = "RUNNEL_ROLES",
        value_delimiter = ',',
        value_name = "ROLE,..."
    )]
    roles: Option<Vec<ProcessRole>>,
    /// Where the controller listener binds: Raft between controllers, and brokers' requests
    /// to the active controller.
    #[arg(long, env = "RUNNEL_CONTROLLER_LISTEN", value_name = "HOST:PORT")]
    controller_listen: Option<String>,
    /// Every controller, as id@host:port,... (controller.quorum.voters), the same on every
    /// node. Without it the node is a cluster of one.
    #[arg(
        long,
        env = "RUNNEL_CONTROLLER_QUORUM",
        value_name = "ID@HOST:PORT,..."
    )]
    controller_quorum: Option<String>,
    /// Replicas of topics created without a replication factor (default.replication.factor,
    /// default 1).
    #[arg(long, env = "RUNNEL_DEFAULT_REPLICATION_FACTOR")]
    default_replication_factor: Option<i16>,
    /// Fence a broker the active controller has not heard from for this long
    /// (broker.session.timeout.ms, default 9000).
    #[arg(long, env = "RUNNEL_BROKER_SESSION_TIMEOUT_MS")]
    broker_session_timeout_ms: Option<i64>,
    /// How often the active controller heartbeats the other controllers; they elect another
    /// after 3 to 6 heartbeats of silence (default 250).
    #[arg(long, env = "RUNNEL_CONTROLLER_HEARTBEAT_MS")]
    controller_heartbeat_ms: Option<u64>,
    /// How often a broker heartbeats the active controller (broker.heartbeat.interval.ms,
    /// default 2000).
    #[arg(long, env = "RUNNEL_BROKER_HEARTBEAT_INTERVAL_MS")]
    broker_heartbeat_interval_ms: Option<u64>,
    /// A follower that has not caught up with its leader for this long leaves the ISR
    /// (replica.lag.time.max.ms, default 30000).
    #[arg(long, env = "RUNNEL_REPLICA_LAG_TIME_MAX_MS")]
    replica_lag_time_max_ms: Option<i64>,
    /// Whether replicas count toward the high watermark only with what they have fsynced
    /// (true, the default: an acks=all record survives every replica losing power at once),
    /// or also with what is in their page cache (false: Kafka's behaviour, faster).
    #[arg(long, env = "RUNNEL_REPLICA_FSYNC", value_name = "BOOL")]
    replica_fsync: Option<bool>,
    /// Partitions of auto-created topics (num.partitions).
    #[arg(long, env = "RUNNEL_NUM_PARTITIONS")]
    num_partitions: Option<i32>,
    /// Create topics on first use (auto.create.topics.enable).
    #[arg(long, env = "RUNNEL_AUTO_CREATE_TOPICS")]
    auto_create_topics: Option<bool>,
    /// Largest request frame accepted (socket.request.max.bytes).
    #[arg(long, env = "RUNNEL_REQUEST_MAX_BYTES")]
    request_max_bytes: Option<usize>,
    /// Most client connections served at once (max.connections).
    #[arg(long, env = "RUNNEL_CONNECTIONS_MAX")]
    connections_max: Option<usize>,
    /// Most connections from one client address; more are closed at once
    /// (max.connections.per.ip, default: connections-max).
    #[arg(long, env = "RUNNEL_CONNECTIONS_MAX_PER_IP")]
    connections_max_per_ip: Option<usize>,
    /// Close connections idle this long (connections.max.idle.ms, default 600000).
    #[arg(long, env = "RUNNEL_CONNECTIONS_MAX_IDLE_MS")]
    connections_max_idle_ms: Option<u64>,
    /// Close a connection whose request has started but not arrived whole within this long
    /// (default 30000).
    #[arg(long, env = "RUNNEL_REQUEST_READ_TIMEOUT_MS")]
    request_read_timeout_ms: Option<u64>,
    /// Bytes of requests read but not yet answered, over all connections
    /// (queued.max.request.bytes, default 536870912).
    #[arg(long, env = "RUNNEL_QUEUED_MAX_REQUEST_BYTES")]
    queued_max_request_bytes: Option<usize>,
    /// Disk jobs waiting for an I/O thread (queued.max.requests, default 500).
    #[arg(long, env = "RUNNEL_QUEUED_MAX_REQUESTS")]
    queued_max_requests: Option<usize>,
    /// Threads doing disk work (num.io.threads, default 8).
    #[arg(long, env = "RUNNEL_NUM_IO_THREADS")]
    num_io_threads: Option<usize>,
    /// Most record bytes in one fetch response (fetch.max.bytes, default 57671680).
    #[arg(long, env = "RUNNEL_FETCH_MAX_BYTES")]
    fetch_max_bytes: Option<usize>,
    /// Most partitions this broker holds (default 10000).
    #[arg(long, env = "RUNNEL_PARTITIONS_MAX")]
    partitions_max: Option<usize>,
    /// Sealed segments whose files stay open between reads, over all partitions (default
    /// 4096); the least recently opened fsynced one is closed beyond it.
    #[arg(long, env = "RUNNEL_SEALED_SEGMENT_FILES_MAX")]
    sealed_segment_files_max: Option<usize>,
    /// For fault-injection tests: write down every fsync of a data file here.
    #[arg(long, env = "RUNNEL_SYNC_LEDGER", value_name = "PATH", hide = true)]
    sync_ledger: Option<std::path::PathBuf>,
    /// Most open incremental fetch sessions, KIP-227
    /// (max.incremental.fetch.session.cache.slots, default 1000; 0 turns them off).
    #[arg(long, env = "RUNNEL_MAX_INCREMENTAL_FETCH_SESSION_CACHE_SLOTS")]
    max_incremental_fetch_session_cache_slots: Option<usize>,
    /// Most members of one classic group (group.max.size, default 1000).
    #[arg(long, env = "RUNNEL_GROUP_MAX_SIZE")]
    group_max_size: Option<usize>,
    /// Most members of one KIP-848 consumer group (group.consumer.max.size, default 1000).
    #[arg(long, env = "RUNNEL_GROUP_CONSUMER_MAX_SIZE")]
    group_consumer_max_size: Option<usize>,
    /// How often recovery points are checkpointed (log.flush.offset.checkpoint.interval.ms,
    /// default 60000).
    #[arg(long, env = "RUNNEL_FLUSH_OFFSET_CHECKPOINT_INTERVAL_MS")]
    flush_offset_checkpoint_interval_ms: Option<u64>,
    /// Default compression.type of topics: producer, uncompressed, gzip, snappy, lz4, zstd.
    #[arg(long, env = "RUNNEL_COMPRESSION_TYPE")]
    compression_type: Option<String>,
    /// Default message.timestamp.before.max.ms of topics.
    #[arg(long, env = "RUNNEL_LOG_MESSAGE_TIMESTAMP_BEFORE_MAX_MS")]
    log_message_timestamp_before_max_ms: Option<i64>,
    /// Default message.timestamp.after.max.ms of topics (default 3600000).
    #[arg(long, env = "RUNNEL_LOG_MESSAGE_TIMESTAMP_AFTER_MAX_MS")]
    log_message_timestamp_after_max_ms: Option<i64>,
    /// fsync after this many unflushed records; 1 = fsync before every acknowledgement.
    #[arg(long, env = "RUNNEL_FLUSH_MESSAGES")]
    flush_messages: Option<u64>,
    /// fsync when unflushed data is this old (default 1000).
    #[arg(long, env = "RUNNEL_FLUSH_MS")]
    flush_ms: Option<i64>,
    /// Default segment.bytes of topics.
    #[arg(long, env = "RUNNEL_LOG_SEGMENT_BYTES")]
    log_segment_bytes: Option<i64>,
    /// Default retention.ms of topics.
    #[arg(long, env = "RUNNEL_LOG_RETENTION_MS")]
    log_retention_ms: Option<i64>,
    /// Default retention.bytes of topics.
    #[arg(long, env = "RUNNEL_LOG_RETENTION_BYTES")]
    log_retention_bytes: Option<i64>,
    /// Default max.message.bytes of topics.
    #[arg(long, env = "RUNNEL_MESSAGE_MAX_BYTES")]
    message_max_bytes: Option<i64>,
    /// How often retention runs (log.retention.check.interval.ms).
    #[arg(long, env = "RUNNEL_RETENTION_CHECK_INTERVAL_MS")]
    retention_check_interval_ms: Option<u64>,
    /// Wait for more members before a new classic group's first rebalance
    /// (group.initial.rebalance.delay.ms, default 3000).
    #[arg(long, env = "RUNNEL_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    group_initial_rebalance_delay_ms: Option<i64>,
    /// Shortest session timeout a classic member may ask for (default 6000).
    #[arg(long, env = "RUNNEL_GROUP_MIN_SESSION_TIMEOUT_MS")]
    group_min_session_timeout_ms: Option<i32>,
    /// Longest session timeout a classic member may ask for (default 1800000).
    #[arg(long, env = "RUNNEL_GROUP_MAX_SESSION_TIMEOUT_MS")]
    group_max_session_timeout_ms: Option<i32>,
    /// Session timeout of KIP-848 consumer group members (default 45000).
    #[arg(long, env = "RUNNEL_GROUP_CONSUMER_SESSION_TIMEOUT_MS")]
    group_consumer_session_timeout_ms: Option<i32>,
    /// Heartbeat interval told to KIP-848 consumer group members (default 5000).
    #[arg(long, env = "RUNNEL_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS")]
    group_consumer_heartbeat_interval_ms: Option<i32>,
    /// Partitions of __consumer_offsets when it is first created (default 50).
    #[arg(long, env = "RUNNEL_OFFSETS_TOPIC_NUM_PARTITIONS")]
    offsets_topic_num_partitions: Option<i32>,
    /// How long an empty group's committed offsets are kept (default 10080 = 7 days).
    #[arg(long, env = "RUNNEL_OFFSETS_RETENTION_MINUTES")]
    offsets_retention_minutes: Option<i64>,
    /// How long a partition remembers an idempotent producer that stopped writing to it
    /// (default 86400000 = 1 day).
    #[arg(long, env = "RUNNEL_PRODUCER_ID_EXPIRATION_MS")]
    producer_id_expiration_ms: Option<i64>,
    /// Partitions of __transaction_state when it is first created (default 50).
    #[arg(long, env = "RUNNEL_TRANSACTION_STATE_LOG_NUM_PARTITIONS")]
    transaction_state_log_num_partitions: Option<i32>,
    /// The longest transaction.timeout.ms a producer may ask for (default 900000 = 15 min).
    #[arg(long, env = "RUNNEL_TRANSACTION_MAX_TIMEOUT_MS")]
    transaction_max_timeout_ms: Option<i32>,
    /// How often transactions past their timeout are aborted (default 10000).
    #[arg(
        long,
        env = "RUNNEL_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS"
    )]
    transaction_abort_timed_out_transaction_cleanup_interval_ms: Option<u64>,
    /// Segment size of __consumer_offsets when it is first created (default 104857600).
    #[arg(long, env = "RUNNEL_OFFSETS_TOPIC_SEGMENT_BYTES")]
    offsets_topic_segment_bytes: Option<i64>,
    /// Segment size of __transaction_state when it is first created (default 104857600).
    #[arg(long, env = "RUNNEL_TRANSACTION_STATE_LOG_SEGMENT_BYTES")]
    transaction_state_log_segment_bytes: Option<i64>,
    /// Forget a transactional id idle this long (default 604800000 = 7 days).
    #[arg(long, env = "RUNNEL_TRANSACTIONAL_ID_EXPIRATION_MS")]
    transactional_id_expiration_ms: Option<i64>,
    /// How often the log cleaner looks for compacted partitions to clean (default 15000).
    #[arg(long, env = "RUNNEL_LOG_CLEANER_BACKOFF_MS")]
    log_cleaner_backoff_ms: Option<u64>,
    /// Memory for one compaction pass's key map (default 134217728 = 128 MiB).
    #[arg(long, env = "RUNNEL_LOG_CLEANER_DEDUPE_BUFFER_SIZE")]
    log_cleaner_dedupe_buffer_size: Option<usize>,
    /// The log cleaner's read and write rate in bytes per second (default unlimited).
    #[arg(long, env = "RUNNEL_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND")]
    log_cleaner_io_max_bytes_per_second: Option<u64>,
    /// Also run a standalone Connect worker in this process, its REST API on HOST:PORT
    /// (127.0.0.1:8083 when given without a value), its source offsets in
    /// DATA_DIR/connect.offsets. It stops before the broker does.
    #[arg(
        long,
        env = "RUNNEL_CONNECT",
        value_name = "HOST:PORT",
        num_args = 0..=1,
        default_missing_value = runnel_connect::standalone::DEFAULT_REST_LISTEN
    )]
    connect: Option<std::net::SocketAddr>,
}

impl ServerArgs {
    fn into_config(self) -> anyhow::Result<BrokerConfig> {
        let mut config = match &self.config {
            Some(path) => BrokerConfig::from_toml_file(path)?,
            None => BrokerConfig::default(),
        };
        macro_rules! take {
            ($($field:ident),*) => { $( if let Some(value) = self.$field { config.$field = value; } )* };
        }
        macro_rules! take_optional {
            ($($field:ident),*) => { $( if self.$field.is_some() { config.$field = self.$field; } )* };
        }
        take!(
            listen,
            data_dir,
            node_id,
            roles,
            default_replication_factor,
            broker_session_timeout_ms,
            controller_heartbeat_ms,
            broker_heartbeat_interval_ms,
            replica_lag_time_max_ms,
            replica_fsync,
            num_partitions,
            auto_create_topics,
            request_max_bytes,
            connections_max,
            connections_max_idle_ms,
            request_read_timeout_ms,
            queued_max_request_bytes,
            queued_max_requests,
            num_io_threads,
            fetch_max_bytes,
            partitions_max,
            sealed_segment_files_max,
            max_incremental_fetch_session_cache_slots,
            group_max_size,
            group_consumer_max_size,
            flush_offset_checkpoint_interval_ms,
            retention_check_interval_ms,
            group_initial_rebalance_delay_ms,
            group_min_session_timeout_ms,
            group_max_session_timeout_ms,
            group_consumer_session_timeout_ms,
            group_consumer_heartbeat_interval_ms,
            offsets_topic_num_partitions,
            offsets_retention_minutes,
            producer_id_expiration_ms,
            transaction_state_log_num_partitions,
            transaction_max_timeout_ms,
            transaction_abort_timed_out_transaction_cleanup_interval_ms,
            log_cleaner_backoff_ms,
            log_cleaner_dedupe_buffer_size,
            offsets_topic_segment_bytes,
            transaction_state_log_segment_bytes,
            transactional_id_expiration_ms
        );
        take_optional!(
            rack,
            sync_ledger,
            controller_listen,
            controller_quorum,
            log_cleaner_io_max_bytes_per_second,
            advertised_listener,
            admin_listen,
            console_connect_url,
            connections_max_per_ip,
            compression_type,
            log_message_timestamp_before_max_ms,
            log_message_timestamp_after_max_ms,
            flush_messages,
            flush_ms,
            log_segment_bytes,
            log_retention_ms,
            log_retention_bytes,
            message_max_bytes
        );
        if self.console {
            config.console = true;
        }
        config.validate()?;
        Ok(config)
    }
}

fn main() -> anyhow::Result<()> {
    ClaimedSizeAllocator::tune_system_allocator();
    alias_brokers_variable();
    let (command, errors) = parse_command_line();
    // The broker logs its life at info; a tool's stderr is for the tool's own messages.
    // Raft's warnings are the ordinary course of elections, and we log what they lead to.
    let default_log = match command {
        Command::Server(_) => "info,openraft=error",
        Command::Connect(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUNNEL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match command {
        Command::Server(mut args) => {
            let connect = args.connect.take();
            let mut config = args.into_config()?;
            if let Some(rest) = connect {
                // The console shows the connectors of the worker this process runs.
                config
                    .console_connect_url
                    .get_or_insert_with(|| format!("http://{rest}"));
            }
            let needed =
                open_files::needed_for(config.partitions_max, config.sealed_segment_files_max);
            match open_files::raise_open_files_limit() {
                Some(limit) if limit < needed => tracing::warn!(
                    limit,
                    needed,
                    partitions_max = config.partitions_max,
                    "the open-files limit is below what partitions-max partitions need (one \
                     file each, and sealed-segment-files-max more); raise it (ulimit -n, \
                     LimitNOFILE= in systemd) or lower --partitions-max, or partitions will \
                     fail with EMFILE"
                ),
                Some(limit) => tracing::info!(limit, "open-files limit"),
                None => {}
            }
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            match connect {
                None => runtime.block_on(runnel_broker::run(config, stop_signal()))?,
                Some(rest) => {
                    runtime.block_on(connect_cmd::with_broker(config, rest, stop_signal()))?
                }
            }
        }
        Command::Dev(args) => {
            if let Err(error) = dev_cmd::run(args, stop_signal()) {
                errors.exit(error);
            }
        }
        Command::Demo(args) => {
            if let Err(error) = demo_cmd::run(args, stop_signal()) {
                errors.exit(error);
            }
        }
        Command::Completions(args) => {
            if let Err(error) = docs_cmd::completions(&args, cli_command(None)) {
                errors.exit(error);
            }
        }
        Command::Man(args) => {
            if let Err(error) = docs_cmd::man_pages(&args, cli_command(None)) {
                errors.exit(error);
            }
        }
        Command::Docs(args) => {
            if let Err(error) = docs_cmd::docs(&args, cli_command(None)) {
                errors.exit(error);
            }
        }
        tool => {
            if let Err(error) = run_tool(tool) {
                errors.exit(error);
            }
        }
    }
    Ok(())
}

/// `RUNNEL_BROKERS`, the variable's older name, still works: clap reads one variable per flag.
fn alias_brokers_variable() {
    if std::env::var_os("RUNNEL_BOOTSTRAP").is_none() {
        if let Some(brokers) = std::env::var_os("RUNNEL_BROKERS") {
            // Before any thread starts, as setting the environment needs.
            std::env::set_var("RUNNEL_BOOTSTRAP", brokers);
        }
    }
}

/// The command tree as clap parses it, with the changes derive cannot express: under
/// `connect`, `-X` is the worker's property (as Kafka Connect's), so the client property flag
/// keeps only a hidden long name there; and `bootstrap`, when given, is the default of every
/// `--bootstrap` (a profile's brokers, below the flag and the environment).
fn cli_command(bootstrap: Option<&'static str>) -> clap::Command {
    let worker = |command: clap::Command| {
        command.mut_arg("client_properties", |arg| {
            arg.short(None).long("client-property").hide(true)
        })
    };
    let command = Cli::command().mut_subcommand("connect", |connect| {
        connect
            .mut_subcommand("standalone", worker)
            .mut_subcommand("distributed", worker)
    });
    match bootstrap {
        Some(bootstrap) => with_bootstrap_default(command, bootstrap),
        None => command,
    }
}

fn with_bootstrap_default(command: clap::Command, bootstrap: &'static str) -> clap::Command {
    let command = if command
        .get_arguments()
        .any(|arg| arg.get_id() == "bootstrap")
    {
        command.mut_arg("bootstrap", |arg| arg.default_value(bootstrap))
    } else {
        command
    };
    command.mut_subcommands(|sub| with_bootstrap_default(sub, bootstrap))
}

/// Parses the command line and settles the connection profile: its errors are reported as
/// the command's (in JSON under `--format json`), and its `bootstrap` becomes the default of
/// `--bootstrap`, so that every command, whichever way it connects, sees it.
fn parse_command_line() -> (Command, Errors) {
    let matches = match cli_command(None).try_get_matches() {
        Ok(matches) => matches,
        Err(error) => usage_error(
            error,
            std::env::args_os().map(|arg| arg.to_string_lossy().into_owned()),
        ),
    };
    let leaf = leaf_matches(&matches);
    let errors = Errors::of(leaf);
    let config_file = leaf.try_get_one::<PathBuf>("config_file").ok().flatten();
    let profile_name = leaf.try_get_one::<String>("profile").ok().flatten();
    let takes_profile = leaf.try_get_raw("config_file").is_ok();
    let profile = if takes_profile {
        match profile::select(
            config_file.map(PathBuf::as_path),
            profile_name.map(String::as_str),
        ) {
            Ok(profile) => profile,
            Err(error) => errors.exit(error),
        }
    } else {
        None
    };
    let bootstrap_defaulted = leaf.try_get_raw("bootstrap").is_ok()
        && leaf.value_source("bootstrap") == Some(ValueSource::DefaultValue);
    let matches = match profile.and_then(|profile| profile.bootstrap) {
        Some(bootstrap) if bootstrap_defaulted => {
            // Parsed once per process, so the leak is one string.
            let bootstrap: &'static str = Box::leak(bootstrap.into_boxed_str());
            cli_command(Some(bootstrap)).get_matches()
        }
        _ => matches,
    };
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => (cli.command, errors),
        Err(error) => error.exit(),
    }
}

/// Exits on a command line clap refused (or on `--help`/`--version`, which clap prints). A
/// script that asked for `--format json` gets the one-line `{"error": ...}` object every
/// other failure gives it; the exit code stays clap's 2, for a mistake in the command line.
fn usage_error(error: clap::Error, args: impl Iterator<Item = String>) -> ! {
    if !error.use_stderr() || !asks_for_json(args) {
        error.exit()
    }
    eprintln!(
        "{}",
        serde_json::json!({ "error": usage_error_text(&error) })
    );
    std::process::exit(error.exit_code())
}

/// Clap's message without its usage and help pointer: its first paragraph, the tip after
/// it joined on, and no `error: ` prefix.
fn usage_error_text(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let mut parts = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    parts.join("; ")
}

/// Whether a command line, parsed or not, asks for JSON output (`-f json`, `--format json`,
/// `--format=json`, `-fjson`).
fn asks_for_json(args: impl Iterator<Item = String>) -> bool {
    let mut previous_was_flag = false;
    for arg in args {
        if previous_was_flag && arg == "json" {
            return true;
        }
        if matches!(arg.as_str(), "--format=json" | "-fjson" | "-f=json") {
            return true;
        }
        previous_was_flag = matches!(arg.as_str(), "-f" | "--format");
    }
    false
}

/// The matches of the innermost subcommand given (`runnel topic create ...`: create's).
fn leaf_matches(matches: &ArgMatches) -> &ArgMatches {
    match matches.subcommand() {
        Some((_, sub)) => leaf_matches(sub),
        None => matches,
    }
}

/// How a failing command says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Errors {
    /// `runnel: error: ...`, one line.
    Line,
    /// `{"error": "..."}`, one line, for scripts that asked for JSON.
    Json,
}

impl Errors {
    fn of(leaf: &ArgMatches) -> Errors {
        let format = leaf
            .try_get_raw("format")
            .ok()
            .flatten()
            .and_then(|mut values| values.next());
        if format.is_some_and(|format| format == "json") {
            Errors::Json
        } else {
            Errors::Line
        }
    }

    /// Reports `error` on stderr (the error and its causes, as scripts and people read it) and
    /// exits 1; an error the command already reported is not repeated.
    fn exit(self, error: anyhow::Error) -> ! {
        if error.downcast_ref::<output::Reported>().is_none() {
            match self {
                Errors::Line => eprintln!("runnel: error: {error:#}"),
                Errors::Json => {
                    eprintln!("{}", serde_json::json!({ "error": format!("{error:#}") }))
                }
            }
        }
        std::process::exit(1)
    }
}

fn run_tool(command: Command) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match command {
            Command::Server(_)
            | Command::Dev(_)
            | Command::Demo(_)
            | Command::Completions(_)
            | Command::Man(_)
            | Command::Docs(_) => unreachable!("not a client tool"),
            Command::Connect(args) => connect_cmd::run(args, stop_signal()).await,
            Command::Topic(args) => topic_cmd::run(args).await,
            Command::Group(args) => group_cmd::run(args).await,
            Command::Offsets(args) => offsets_cmd::run(args).await,
            Command::Streams(args) => streams_cmd::run(args).await,
            Command::Cluster(args) => cluster_cmd::run(args).await,
            Command::Transactions(args) => transactions_cmd::run_transactions(args).await,
            Command::Producers(args) => transactions_cmd::run_producers(args).await,
            Command::Produce(args) => produce_cmd::run(args).await,
            Command::Consume(args) => consume_cmd::run(args).await,
            Command::Bench(args) => bench_cmd::run(args).await,
        }
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only Ctrl-C stops the broker");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own checks of the tree (no flag defined twice in one command, and so on), which
    /// otherwise run only when a command is parsed.
    #[test]
    fn the_command_tree_is_consistent() {
        cli_command(None).debug_assert();
        cli_command(Some("10.0.0.1:9092")).debug_assert();
    }

    #[test]
    fn a_profile_bootstrap_is_below_the_flag() {
        let parse = |args: &[&str]| {
            let matches = cli_command(Some("10.0.0.1:9092"))
                .try_get_matches_from(args)
                .expect("parses");
            leaf_matches(&matches)
                .get_one::<String>("bootstrap")
                .cloned()
                .expect("bootstrap")
        };
        assert_eq!(parse(&["runnel", "topic", "list"]), "10.0.0.1:9092");
        assert_eq!(parse(&["runnel", "topic", "list", "-b", "h:1"]), "h:1");
    }

    #[test]
    fn a_command_line_asks_for_json_in_every_spelling() {
        let asks = |line: &str| asks_for_json(line.split(' ').map(str::to_owned));
        for line in [
            "runnel topic list -f json",
            "runnel topic list --format json --nope",
            "runnel -fjson topic list",
            "runnel topic list --format=json",
        ] {
            assert!(asks(line), "{line}");
        }
        for line in ["runnel topic list", "runnel topic create json -f text"] {
            assert!(!asks(line), "{line}");
        }
    }

    #[test]
    fn a_usage_error_in_json_is_its_message_without_the_usage() {
        let error = cli_command(None)
            .try_get_matches_from(["runnel", "topic", "list", "--nope"])
            .expect_err("an unknown flag");
        let text = usage_error_text(&error);
        assert!(
            text.starts_with("unexpected argument '--nope' found"),
            "{text}"
        );
        assert!(!text.contains("Usage"), "{text}");
    }
}
