//! The quorum on simulated disks that lose power: every voter's power goes out at a seeded
//! disk operation while a client keeps committing, each disk comes back as a power cut
//! leaves it (what was fsynced, plus a seeded subset of the rest, torn anywhere), and the
//! voters restart from them. Every change the quorum acknowledged must be there, the same on
//! every voter. `RUNNEL_SIM_SEEDS` sets how many seeds (default 6).

use std::collections::BTreeMap;
use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use runnel_controller::{ControllerConfig, MetadataImage, NewTopic};
use runnel_quorum::{
    ControllerClient, ControllerRequest, ControllerResponse, Quorum, QuorumConfig,
};
use runnel_storage::sim::{ManualClock, SimFileSystem, SplitMix64};
use tokio::net::TcpListener;
use tokio::time::timeout;

mod support;

type TestResult = Result<(), Box<dyn Error>>;

const VOTERS: u64 = 3;

fn config(id: u64, voters: &BTreeMap<u64, String>) -> QuorumConfig {
    QuorumConfig {
        node_id: id,
        voters: voters.clone(),
        data_dir: PathBuf::from(format!("/node-{id}")),
        controller: ControllerConfig {
            default_partitions: 1,
            default_replication_factor: 1,
            min_insync_replicas: 1,
            producer_id_block_size: 1000,
        },
        broker_session_timeout_ms: 600_000,
        raft_heartbeat_ms: 50,
        snapshot_every_entries: 16,
    }
}

async fn start_all(
    voters: &BTreeMap<u64, String>,
    listeners: BTreeMap<u64, TcpListener>,
    disks: &BTreeMap<u64, SimFileSystem>,
) -> Result<Vec<Quorum>, Box<dyn Error>> {
    let mut nodes = Vec::new();
    for (id, listener) in listeners {
        nodes
            .push(Quorum::start(config(id, voters), listener, Arc::new(disks[&id].clone())).await?);
    }
    Ok(nodes)
}

/// Listeners on the voters' addresses again, after their nodes shut down.
async fn bind_all_again(
    voters: &BTreeMap<u64, String>,
) -> Result<BTreeMap<u64, TcpListener>, Box<dyn Error>> {
    let mut listeners = BTreeMap::new();
    for (&id, address) in voters {
        listeners.insert(id, support::bind_again(address).await?);
    }
    Ok(listeners)
}

fn topic(name: String) -> ControllerRequest {
    ControllerRequest::CreateTopic {
        topic: NewTopic {
            name,
            partitions: 1,
            replication_factor: 1,
            assignments: vec![],
            configs: vec![],
        },
        validate_only: false,
    }
}

async fn run_seed(seed: u64) -> TestResult {
    let mut rng = SplitMix64(seed);
    // The first start keeps the listeners bound here: no window for another process to take
    // a port between choosing it and listening on it.
    let mut voters = BTreeMap::new();
    let mut listeners = BTreeMap::new();
    for id in 1..=VOTERS {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        voters.insert(id, listener.local_addr()?.to_string());
        listeners.insert(id, listener);
    }
    let clock = Arc::new(ManualClock::new(0));
    let disks: BTreeMap<u64, SimFileSystem> = (1..=VOTERS)
        .map(|id| (id, SimFileSystem::new(clock.clone())))
        .collect();
    let nodes = start_all(&voters, listeners, &disks).await?;
    let mut client = ControllerClient::new(voters.values());
    // A broker to place topics on.
    let registration = runnel_controller::Registration {
        id: 1,
        incarnation_id: uuid::Uuid::from_u128(u128::from(seed) + 1),
        previous_incarnation_id: None,
        listeners: vec![],
        rack: None,
        data_intact: true,
    };
    let epoch = match client
        .call(
            ControllerRequest::Register(registration),
            Duration::from_secs(20),
        )
        .await?
    {
        ControllerResponse::Registered { broker_epoch } => broker_epoch,
        other => return Err(format!("register: {other:?}").into()),
    };
    let heartbeat = runnel_controller::Heartbeat {
        id: 1,
        broker_epoch: epoch,
        metadata_offset: u64::MAX,
        want_fence: false,
        want_shutdown: false,
        offline_replicas: Vec::new(),
    };
    client
        .call(
            ControllerRequest::Heartbeat(heartbeat),
            Duration::from_secs(20),
        )
        .await?;

    // Power goes out on every voter at its own seeded disk operation, while topics are made.
    for disk in disks.values() {
        disk.cut_power_after(20 + rng.below(200));
    }
    let mut acknowledged = Vec::new();
    for index in 0..200 {
        let name = format!("t{index}");
        match client
            .call(topic(name.clone()), Duration::from_millis(800))
            .await
        {
            Ok(ControllerResponse::Committed { .. }) => acknowledged.push(name),
            _ => break,
        }
        if disks.values().filter(|disk| disk.is_off()).count() as u64 > VOTERS / 2 {
            break;
        }
    }
    for node in nodes {
        node.shutdown().await;
    }
    let rebooted: BTreeMap<u64, SimFileSystem> = disks
        .iter()
        .map(|(&id, disk)| (id, disk.crash(rng.next_u64())))
        .collect();
    let nodes = start_all(&voters, bind_all_again(&voters).await?, &rebooted).await?;

    // Once the quorum commits something new, everything before it is applied everywhere.
    let mut client = ControllerClient::new(voters.values());
    let offset = match client
        .call(topic("after-reboot".into()), Duration::from_secs(30))
        .await?
    {
        ControllerResponse::Committed { offset } => offset,
        other => return Err(format!("seed {seed}: after reboot: {other:?}").into()),
    };
    let mut images: Vec<Arc<MetadataImage>> = Vec::new();
    for node in &nodes {
        let mut image = node.image();
        let found = timeout(
            Duration::from_secs(30),
            image.wait_for(|image| image.offset() >= offset),
        )
        .await??;
        images.push(found.clone());
    }
    eprintln!(
        "seed {seed}: {} acknowledged before the power cut",
        acknowledged.len()
    );
    for name in &acknowledged {
        assert!(
            images[0].topic_by_name(name).is_some(),
            "seed {seed}: acknowledged topic {name} lost ({} acknowledged)",
            acknowledged.len()
        );
    }
    for image in &images[1..] {
        let names =
            |image: &MetadataImage| image.topics().map(|t| t.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(image),
            names(&images[0]),
            "seed {seed}: voters differ"
        );
    }
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_metadata_survives_a_power_cut_of_every_voter() -> TestResult {
    let seeds: u64 = std::env::var("RUNNEL_SIM_SEEDS")
        .ok()
        .and_then(|seeds| seeds.parse().ok())
        .unwrap_or(6);
    for seed in 0..seeds {
        run_seed(seed).await?;
    }
    Ok(())
}
