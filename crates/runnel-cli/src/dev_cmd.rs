//! `runnel dev cluster`: a local cluster for development, each node a separate `runnel
//! server` process that is both a broker and a controller voter, with every node's data and
//! log under one folder. Started again on the same folder, the nodes carry on with their data.
//! Ctrl-C (or SIGTERM) stops them all cleanly.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

/// How long a node may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long the nodes may take to stop after SIGTERM.
const STOP_WITHIN: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    #[command(subcommand)]
    command: DevCommand,
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Start a local cluster of N nodes (brokers and controllers) until Ctrl-C.
    Cluster(ClusterArgs),
}

#[derive(Debug, Args)]
struct ClusterArgs {
    /// Nodes to run, each a broker and a controller voter.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    nodes: u16,
    /// Folder for every node's data (`nodeN/`) and log (`nodeN.log`); reused if it exists.
    #[arg(long, default_value = "./runnel-cluster", value_name = "DIR")]
    data_dir: PathBuf,
    /// Node N's broker listens on 127.0.0.1:(PORT + N - 1).
    #[arg(long, default_value_t = 9092)]
    port: u16,
    /// Node N's controller listens on 127.0.0.1:(PORT + N - 1).
    #[arg(long, default_value_t = 9192)]
    controller_port: u16,
    /// Node N's admin listener (/metrics, /health/*) is on 127.0.0.1:(PORT + N - 1).
    #[arg(long, default_value_t = 9644)]
    admin_port: u16,
}

pub(crate) fn run(
    args: DevArgs,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    match args.command {
        DevCommand::Cluster(args) => run_cluster(args, stop),
    }
}

/// Where one node listens and keeps its data and log.
pub(crate) struct NodePlan {
    pub(crate) id: u16,
    /// The Kafka listener, `127.0.0.1:PORT`.
    pub(crate) broker: String,
    pub(crate) controller: String,
    /// The admin listener: /metrics, /health/*, and /console/ when the node runs one.
    pub(crate) admin: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) log: PathBuf,
    /// More `runnel server` flags for this node alone (the demo's console on node 1).
    pub(crate) extra_args: Vec<String>,
}

/// The nodes of a local cluster and the controller quorum they all name.
pub(crate) struct ClusterPlan {
    pub(crate) nodes: Vec<NodePlan>,
    quorum: String,
}

/// Plans `nodes` nodes, each a broker and a controller voter: node N listens on
/// 127.0.0.1:(`port` + N - 1), its controller on (`controller_port` + N - 1) and its admin
/// listener on (`admin_port` + N - 1); its data is `data_dir/nodeN/`, its log
/// `data_dir/nodeN.log`.
pub(crate) fn plan_cluster(
    nodes: u16,
    data_dir: &Path,
    port: u16,
    controller_port: u16,
    admin_port: u16,
) -> anyhow::Result<ClusterPlan> {
    let address = |base: u16, id: u16| -> anyhow::Result<String> {
        let port = base
            .checked_add(id - 1)
            .context("the ports of the last nodes are above 65535")?;
        Ok(format!("127.0.0.1:{port}"))
    };
    let ids: Vec<u16> = (1..=nodes).collect();
    let quorum = ids
        .iter()
        .map(|&id| Ok(format!("{id}@{}", address(controller_port, id)?)))
        .collect::<anyhow::Result<Vec<_>>>()?
        .join(",");
    let nodes = ids
        .iter()
        .map(|&id| {
            Ok(NodePlan {
                id,
                broker: address(port, id)?,
                controller: address(controller_port, id)?,
                admin: address(admin_port, id)?,
                data_dir: data_dir.join(format!("node{id}")),
                log: data_dir.join(format!("node{id}.log")),
                extra_args: Vec::new(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(ClusterPlan { nodes, quorum })
}

/// [`LocalCluster::start`] gave up because it was asked to stop, not because a node failed.
#[derive(Debug, thiserror::Error)]
#[error("stopped before every node was ready")]
pub(crate) struct StoppedWhileStarting;

/// A node's process, and where this run's lines start in its log.
struct Node {
    plan: NodePlan,
    log_start: usize,
    child: Child,
}

/// The running nodes of a [`ClusterPlan`]. Dropping it stops them (SIGTERM, then SIGKILL for
/// those that do not stop in time), so an error or a panic after the start leaves no node
/// running behind it.
pub(crate) struct LocalCluster {
    nodes: Vec<Node>,
}

impl LocalCluster {
    /// Starts every node of `plan` and waits until each serves as an unfenced broker. Gives
    /// up with [`StoppedWhileStarting`] as soon as `stopped` says so; on any failure the
    /// nodes already started are stopped.
    pub(crate) fn start(plan: ClusterPlan, stopped: &dyn Fn() -> bool) -> anyhow::Result<Self> {
        let binary = std::env::current_exe().context("cannot find the runnel binary")?;
        let count = u16::try_from(plan.nodes.len()).context("too many nodes")?;
        // Owned before the first spawn: an early return drops it, which stops what started.
        let mut cluster = LocalCluster { nodes: Vec::new() };
        for node in plan.nodes {
            if let Some(parent) = node.log.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let log_start = std::fs::metadata(&node.log).map_or(0, |m| m.len() as usize);
            let child = spawn_node(&binary, &node, &plan.quorum, count)?;
            cluster.nodes.push(Node {
                plan: node,
                log_start,
                child,
            });
        }
        wait_ready(&mut cluster.nodes, stopped)?;
        Ok(cluster)
    }

    /// Where each node listens and keeps its data, in node id order.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = &NodePlan> {
        self.nodes.iter().map(|node| &node.plan)
    }

    /// Every node's broker address, comma-separated: what clients bootstrap from.
    pub(crate) fn bootstrap(&self) -> String {
        self.nodes()
            .map(|node| node.broker.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Stops every node cleanly (see [`Drop`]).
    pub(crate) fn stop(self) {}
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        stop_all(&mut self.nodes);
    }
}

fn run_cluster(
    args: ClusterArgs,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let plan = plan_cluster(
        args.nodes,
        &args.data_dir,
        args.port,
        args.controller_port,
        args.admin_port,
    )?;
    let cluster = LocalCluster::start(plan, &|| false)?;
    println!(
        "Runnel dev cluster: {} nodes, data in {}",
        cluster.nodes.len(),
        args.data_dir.display()
    );
    for plan in cluster.nodes() {
        println!(
            "  node {}: broker {}, controller {}, metrics http://{}/metrics, log {}",
            plan.id,
            plan.broker,
            plan.controller,
            plan.admin,
            plan.log.display()
        );
    }
    println!("Bootstrap: {}", cluster.bootstrap());
    println!("Ctrl-C stops every node.");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(stop);
    println!("Stopping the nodes...");
    cluster.stop();
    Ok(())
}

fn spawn_node(binary: &Path, plan: &NodePlan, quorum: &str, nodes: u16) -> anyhow::Result<Child> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&plan.log)
        .with_context(|| format!("cannot open {}", plan.log.display()))?;
    let replication_factor = nodes.min(3).to_string();
    let id = plan.id;
    Command::new(binary)
        .args(["server", "--roles", "broker,controller", "--node-id"])
        .arg(id.to_string())
        .args(["--listen", &plan.broker])
        .args(["--controller-listen", &plan.controller])
        .args(["--admin-listen", &plan.admin])
        .args(["--controller-quorum", quorum])
        .args(["--default-replication-factor", &replication_factor])
        .arg("--data-dir")
        .arg(&plan.data_dir)
        .args(&plan.extra_args)
        // Its own process group: Ctrl-C reaches this command, which stops the nodes in turn.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("cannot start node {id}"))
}

/// Waits until every node's log says it serves as an unfenced broker, or one exits, or
/// `stopped` says to give up.
fn wait_ready(nodes: &mut [Node], stopped: &dyn Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_WITHIN;
    for node in nodes.iter_mut() {
        let plan = &node.plan;
        loop {
            let log = std::fs::read(&plan.log).unwrap_or_default();
            // The log is appended to across runs: only this run's lines count.
            let this_run = String::from_utf8_lossy(log.get(node.log_start..).unwrap_or_default());
            // Listening, and registered and unfenced by the controller: it serves.
            if this_run.contains("runnel ready") && this_run.contains("status=Active") {
                break;
            }
            if let Some(status) = node.child.try_wait()? {
                bail!(
                    "node {} exited ({status}) before it was ready; see {}",
                    plan.id,
                    plan.log.display()
                );
            }
            if stopped() {
                return Err(StoppedWhileStarting.into());
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} was not ready within {READY_WITHIN:?}; see {}",
                    plan.id,
                    plan.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// Asks every node to stop (SIGTERM), waits, and kills those that do not.
fn stop_all(nodes: &mut [Node]) {
    for node in nodes.iter() {
        // The node stops as it does on SIGTERM from anyone: controlled shutdown first.
        let _ = Command::new("kill")
            .args(["-TERM", &node.child.id().to_string()])
            .status();
    }
    let deadline = Instant::now() + STOP_WITHIN;
    for node in nodes.iter_mut() {
        loop {
            match node.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    eprintln!("node {} did not stop in time; killing it", node.plan.id);
                    let _ = node.child.kill();
                    let _ = node.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}
