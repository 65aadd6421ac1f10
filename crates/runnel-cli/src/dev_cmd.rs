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
struct Plan {
    id: u16,
    broker: String,
    controller: String,
    admin: String,
    data_dir: PathBuf,
    log: PathBuf,
}

/// A node's process, and where this run's lines start in its log.
struct Node {
    plan: Plan,
    log_start: usize,
    child: Child,
}

fn run_cluster(
    args: ClusterArgs,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let address = |base: u16, id: u16| -> anyhow::Result<String> {
        let port = base
            .checked_add(id - 1)
            .context("the ports of the last nodes are above 65535")?;
        Ok(format!("127.0.0.1:{port}"))
    };
    let ids: Vec<u16> = (1..=args.nodes).collect();
    let quorum = ids
        .iter()
        .map(|&id| Ok(format!("{id}@{}", address(args.controller_port, id)?)))
        .collect::<anyhow::Result<Vec<_>>>()?
        .join(",");
    let binary = std::env::current_exe().context("cannot find the runnel binary")?;
    let mut nodes = Vec::new();
    for &id in &ids {
        let plan = Plan {
            id,
            broker: address(args.port, id)?,
            controller: address(args.controller_port, id)?,
            admin: address(args.admin_port, id)?,
            data_dir: args.data_dir.join(format!("node{id}")),
            log: args.data_dir.join(format!("node{id}.log")),
        };
        let log_start = std::fs::metadata(&plan.log).map_or(0, |m| m.len() as usize);
        match spawn_node(&binary, &plan, &quorum, args.nodes) {
            Ok(child) => nodes.push(Node {
                plan,
                log_start,
                child,
            }),
            Err(error) => {
                stop_all(&mut nodes);
                return Err(error);
            }
        }
    }
    let ready = wait_ready(&mut nodes);
    if let Err(error) = ready {
        stop_all(&mut nodes);
        return Err(error);
    }
    println!(
        "Runnel dev cluster: {} nodes, data in {}",
        nodes.len(),
        args.data_dir.display()
    );
    for Node { plan, .. } in &nodes {
        println!(
            "  node {}: broker {}, controller {}, metrics http://{}/metrics, log {}",
            plan.id,
            plan.broker,
            plan.controller,
            plan.admin,
            plan.log.display()
        );
    }
    let bootstrap: Vec<&str> = nodes.iter().map(|node| node.plan.broker.as_str()).collect();
    println!("Bootstrap: {}", bootstrap.join(","));
    println!("Ctrl-C stops every node.");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(stop);
    println!("Stopping the nodes...");
    stop_all(&mut nodes);
    Ok(())
}

fn spawn_node(binary: &Path, plan: &Plan, quorum: &str, nodes: u16) -> anyhow::Result<Child> {
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
        // Its own process group: Ctrl-C reaches this command, which stops the nodes in turn.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("cannot start node {id}"))
}

/// Waits until every node's log says it serves as an unfenced broker, or one exits.
fn wait_ready(nodes: &mut [Node]) -> anyhow::Result<()> {
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
