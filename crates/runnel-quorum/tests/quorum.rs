//! The quorum over real TCP and real files: voters in this process, each with its own
//! listener and data directory, stopped and restarted as a crash would (no clean shutdown
//! of the log: Raft stops where it is).

use std::collections::BTreeMap;
use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use runnel_controller::records::Listener;
use runnel_controller::{ControllerConfig, Heartbeat, MetadataImage, NewTopic, Registration};
use runnel_quorum::{
    BrokerLifecycle, BrokerStatus, ControllerClient, ControllerRequest, ControllerResponse,
    LifecycleConfig, Quorum, QuorumConfig,
};
use runnel_storage::OsFileSystem;
use tokio::net::TcpListener;
use tokio::time::timeout;
use uuid::Uuid;

mod support;

type TestResult = Result<(), Box<dyn Error>>;

const WITHIN: Duration = Duration::from_secs(20);

fn controller_config() -> ControllerConfig {
    ControllerConfig {
        default_partitions: 3,
        default_replication_factor: 3,
        min_insync_replicas: 2,
        producer_id_block_size: 1000,
    }
}

struct Voters {
    addresses: BTreeMap<u64, String>,
    dirs: BTreeMap<u64, PathBuf>,
    snapshot_every_entries: u64,
    _root: tempfile::TempDir,
}

impl Voters {
    async fn bind(count: u64) -> Result<(Voters, BTreeMap<u64, TcpListener>), Box<dyn Error>> {
        let root = tempfile::tempdir()?;
        let mut addresses = BTreeMap::new();
        let mut listeners = BTreeMap::new();
        let mut dirs = BTreeMap::new();
        for id in 1..=count {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            addresses.insert(id, listener.local_addr()?.to_string());
            listeners.insert(id, listener);
            dirs.insert(id, root.path().join(format!("node-{id}")));
        }
        Ok((
            Voters {
                addresses,
                dirs,
                snapshot_every_entries: runnel_quorum::SNAPSHOT_EVERY_ENTRIES,
                _root: root,
            },
            listeners,
        ))
    }

    fn config(&self, id: u64) -> QuorumConfig {
        QuorumConfig {
            node_id: id,
            voters: self.addresses.clone(),
            data_dir: self.dirs[&id].clone(),
            controller: controller_config(),
            broker_session_timeout_ms: 1500,
            raft_heartbeat_ms: 50,
            snapshot_every_entries: self.snapshot_every_entries,
        }
    }

    async fn start(&self, id: u64, listener: TcpListener) -> Result<Quorum, Box<dyn Error>> {
        Ok(Quorum::start(self.config(id), listener, Arc::new(OsFileSystem)).await?)
    }

    async fn restart(&self, id: u64) -> Result<Quorum, Box<dyn Error>> {
        let listener = support::bind_again(&self.addresses[&id]).await?;
        self.start(id, listener).await
    }
}

async fn image_where(
    quorum: &Quorum,
    check: impl Fn(&MetadataImage) -> bool,
) -> Result<Arc<MetadataImage>, Box<dyn Error>> {
    let mut image = quorum.image();
    let found = timeout(WITHIN, image.wait_for(|image| check(image))).await??;
    Ok(found.clone())
}

fn registration(id: i32) -> Registration {
    Registration {
        id,
        incarnation_id: Uuid::new_v4(),
        previous_incarnation_id: None,
        listeners: vec![Listener {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9000 + id as u16,
        }],
        rack: None,
        data_intact: true,
    }
}

/// Registers a broker and heartbeats until it is unfenced; its epoch.
async fn start_broker(client: &mut ControllerClient, id: i32) -> Result<i64, Box<dyn Error>> {
    let epoch = match client
        .call(ControllerRequest::Register(registration(id)), WITHIN)
        .await?
    {
        ControllerResponse::Registered { broker_epoch } => broker_epoch,
        other => return Err(format!("registering {id}: {other:?}").into()),
    };
    for _ in 0..200 {
        let offset = match client.fetch_image(0, Duration::from_millis(100)).await? {
            ControllerResponse::Image(Some(image)) => image.offset(),
            _ => 0,
        };
        let beat = Heartbeat {
            id,
            broker_epoch: epoch,
            metadata_offset: offset,
            want_fence: false,
            want_shutdown: false,
            offline_replicas: Vec::new(),
        };
        match client
            .call(ControllerRequest::Heartbeat(beat), WITHIN)
            .await?
        {
            ControllerResponse::Heartbeat(answer) if !answer.fenced => return Ok(epoch),
            ControllerResponse::Heartbeat(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            other => return Err(format!("heartbeat of {id}: {other:?}").into()),
        }
    }
    Err(format!("broker {id} never unfenced").into())
}

fn heartbeat_forever(
    voters: BTreeMap<u64, String>,
    id: i32,
    epoch: i64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut client = ControllerClient::new(voters.values());
        loop {
            let beat = Heartbeat {
                id,
                broker_epoch: epoch,
                metadata_offset: u64::MAX,
                want_fence: false,
                want_shutdown: false,
                offline_replicas: Vec::new(),
            };
            let _ = client
                .call(ControllerRequest::Heartbeat(beat), WITHIN)
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

async fn create_topic(client: &mut ControllerClient, name: &str) -> Result<u64, Box<dyn Error>> {
    let topic = NewTopic {
        name: name.into(),
        partitions: -1,
        replication_factor: -1,
        assignments: vec![],
        configs: vec![],
    };
    match client
        .call(
            ControllerRequest::CreateTopic {
                topic,
                validate_only: false,
            },
            WITHIN,
        )
        .await?
    {
        ControllerResponse::Committed { offset } => Ok(offset),
        other => Err(format!("creating {name}: {other:?}").into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_keep_the_metadata_through_the_loss_and_return_of_the_leader() -> TestResult {
    let (voters, listeners) = Voters::bind(3).await?;
    let mut nodes = BTreeMap::new();
    for (id, listener) in listeners {
        nodes.insert(id, voters.start(id, listener).await?);
    }
    let mut client = ControllerClient::new(voters.addresses.values());
    let mut beating = Vec::new();
    for broker in 1..=3 {
        let epoch = start_broker(&mut client, broker).await?;
        beating.push(heartbeat_forever(voters.addresses.clone(), broker, epoch));
    }
    let offset = create_topic(&mut client, "orders").await?;
    for node in nodes.values() {
        let image = image_where(node, |image| image.offset() >= offset).await?;
        let topic = image.topic_by_name("orders").ok_or("no topic")?;
        assert_eq!(topic.partitions.len(), 3);
        assert!(topic.partitions.values().all(|p| p.isr.len() == 3));
    }

    // The leader dies: the others elect a new one and go on deciding.
    let leader = nodes[&1].leader().ok_or("no leader")?;
    let dead = nodes.remove(&leader).ok_or("leader is not a voter")?;
    dead.shutdown().await;
    let offset = create_topic(&mut client, "payments").await?;
    let survivor = nodes.values().next().ok_or("no survivor")?;
    image_where(survivor, |image| image.offset() >= offset).await?;
    assert_ne!(survivor.leader(), Some(leader));

    // It comes back from its disk and catches up.
    let back = voters.restart(leader).await?;
    let image = image_where(&back, |image| image.offset() >= offset).await?;
    assert!(image.topic_by_name("orders").is_some());
    assert!(image.topic_by_name("payments").is_some());

    // A broker that stops heartbeating is fenced and leaves every ISR.
    let silent = beating.pop().ok_or("no heartbeat task")?;
    silent.abort();
    let image = image_where(&back, |image| !image.is_usable(3)).await?;
    for (_, _, state) in image.partitions() {
        assert!(!state.isr.contains(&3), "{state:?}");
        assert_ne!(state.leader, 3);
    }
    for task in beating {
        task.abort();
    }
    back.shutdown().await;
    for node in nodes.into_values() {
        node.shutdown().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_node_quorum_rebuilds_its_image_from_disk() -> TestResult {
    let (voters, mut listeners) = Voters::bind(1).await?;
    let listener = listeners.remove(&1).ok_or("no listener")?;
    let node = voters.start(1, listener).await?;
    let mut client = ControllerClient::new(voters.addresses.values());
    start_broker(&mut client, 7).await?;
    let refused = client
        .call(
            ControllerRequest::CreateTopic {
                topic: NewTopic {
                    name: "wide".into(),
                    partitions: 1,
                    replication_factor: 2,
                    assignments: vec![],
                    configs: vec![],
                },
                validate_only: false,
            },
            WITHIN,
        )
        .await?;
    assert!(
        matches!(refused, ControllerResponse::Refused { code, .. } if code == kafka_protocol::error::ResponseError::InvalidReplicationFactor.code()),
        "{refused:?}"
    );
    let topic = NewTopic {
        name: "solo".into(),
        partitions: 2,
        replication_factor: 1,
        assignments: vec![],
        configs: vec![("retention.ms".into(), "1000".into())],
    };
    let offset = match client
        .call(
            ControllerRequest::CreateTopic {
                topic,
                validate_only: false,
            },
            WITHIN,
        )
        .await?
    {
        ControllerResponse::Committed { offset } => offset,
        other => return Err(format!("{other:?}").into()),
    };
    node.shutdown().await;

    let node = voters.restart(1).await?;
    let image = image_where(&node, |image| image.offset() >= offset).await?;
    let topic = image.topic_by_name("solo").ok_or("topic lost")?;
    assert_eq!(topic.partitions.len(), 2);
    assert!(image.broker(7).is_some());
    node.shutdown().await;
    Ok(())
}

fn lifecycle(voters: &Voters, broker_id: i32) -> BrokerLifecycle {
    BrokerLifecycle::start(LifecycleConfig {
        broker_id,
        listeners: registration(broker_id).listeners,
        rack: None,
        incarnation_id: Uuid::new_v4(),
        previous_incarnation_id: None,
        data_intact: true,
        controllers: voters.addresses.values().cloned().collect(),
        heartbeat_interval: Duration::from_millis(200),
        offline_replicas: runnel_quorum::OfflineReplicas::none(),
    })
}

async fn status_where(
    lifecycle: &BrokerLifecycle,
    check: impl Fn(BrokerStatus) -> bool,
) -> Result<BrokerStatus, Box<dyn Error>> {
    let mut status = lifecycle.status();
    let found = timeout(WITHIN, status.wait_for(|status| check(*status))).await??;
    Ok(*found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_register_follow_the_image_and_shut_down_under_control() -> TestResult {
    let (voters, listeners) = Voters::bind(3).await?;
    let mut nodes = Vec::new();
    for (id, listener) in listeners {
        nodes.push(voters.start(id, listener).await?);
    }
    let brokers: Vec<BrokerLifecycle> = (1..=3).map(|id| lifecycle(&voters, id)).collect();
    for broker in &brokers {
        status_where(broker, |status| {
            matches!(status, BrokerStatus::Active { .. })
        })
        .await?;
    }
    let mut client = ControllerClient::new(voters.addresses.values());
    create_topic(&mut client, "orders").await?;
    for broker in &brokers {
        let mut image = broker.image();
        timeout(
            WITHIN,
            image.wait_for(|image| image.topic_by_name("orders").is_some()),
        )
        .await??;
    }
    let mut brokers = brokers.into_iter();
    let first = brokers.next().ok_or("broker 1")?;
    let second = brokers.next().ok_or("broker 2")?;
    let third = brokers.next().ok_or("broker 3")?;

    // Broker 1 shuts down under control: it leads nothing before it stops.
    timeout(WITHIN, first.shut_down(WITHIN)).await?;
    let image = third.image().borrow().clone();
    for (_, _, state) in image.partitions() {
        assert_ne!(state.leader, 1, "{state:?}");
        assert!(!state.isr.contains(&1));
    }

    // Broker 2 dies without a word: fenced once its session expires.
    drop(second);
    let mut image = third.image();
    timeout(WITHIN, image.wait_for(|image| !image.is_usable(2))).await??;
    let image = image.borrow().clone();
    for (_, _, state) in image.partitions() {
        assert_eq!(state.leader, 3, "{state:?}");
    }
    drop(third);
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}

/// A voter down while the others commit past a snapshot and purge their logs catches up
/// from the snapshot they send it, and then from the log; restarted, it rebuilds the same
/// image from its own snapshot and log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_far_behind_catches_up_from_a_snapshot() -> TestResult {
    let (mut voters, listeners) = Voters::bind(3).await?;
    voters.snapshot_every_entries = 8;
    let mut nodes = BTreeMap::new();
    for (id, listener) in listeners {
        nodes.insert(id, voters.start(id, listener).await?);
    }
    let mut client = ControllerClient::new(voters.addresses.values());
    start_broker(&mut client, 1).await?;
    let behind = nodes
        .keys()
        .copied()
        .find(|&id| Some(id) != nodes[&1].leader())
        .ok_or("no follower")?;
    let stopped = nodes.remove(&behind).ok_or("follower")?;
    stopped.shutdown().await;
    let mut offset = 0;
    for topic in 0..30 {
        let create = ControllerRequest::CreateTopic {
            topic: NewTopic {
                name: format!("t{topic}"),
                partitions: 1,
                replication_factor: 1,
                assignments: vec![],
                configs: vec![],
            },
            validate_only: false,
        };
        match client.call(create, WITHIN).await? {
            ControllerResponse::Committed { offset: at } => offset = at,
            other => return Err(format!("{other:?}").into()),
        }
    }
    let back = voters.restart(behind).await?;
    let image = image_where(&back, |image| image.offset() >= offset).await?;
    assert_eq!(image.topics().count(), 30);
    let metadata_dir = voters.dirs[&behind].join(runnel_quorum::METADATA_DIR);
    assert!(
        metadata_dir.join("snapshot.json").is_file(),
        "it caught up from a snapshot"
    );
    let expected = image_where(nodes.values().next().ok_or("a voter")?, |image| {
        image.offset() >= offset
    })
    .await?;
    assert_eq!(*image, *expected, "the same image everywhere");
    back.shutdown().await;
    let again = voters.restart(behind).await?;
    let image = image_where(&again, |image| image.offset() >= offset).await?;
    assert_eq!(image.topics().count(), 30);
    again.shutdown().await;
    for node in nodes.into_values() {
        node.shutdown().await;
    }
    Ok(())
}

/// What a hostile or broken peer sends to the controller listener: a frame claiming more
/// than the limit, a frame that is not a message, a decision too large for one entry. Each
/// gets a closed connection or a refusal, and the quorum goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_and_oversized_decisions_are_refused_and_the_quorum_goes_on() -> TestResult {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (voters, mut listeners) = Voters::bind(1).await?;
    let node = voters
        .start(1, listeners.remove(&1).ok_or("listener")?)
        .await?;
    let address = voters.addresses[&1].clone();
    for frame in [
        (u32::MAX).to_be_bytes().to_vec(),
        [&5u32.to_be_bytes()[..], b"hello"].concat(),
    ] {
        let mut stream = tokio::net::TcpStream::connect(&address).await?;
        stream.write_all(&frame).await?;
        let mut buf = [0u8; 1];
        let read = timeout(WITHIN, stream.read(&mut buf)).await??;
        assert_eq!(read, 0, "the connection is closed");
    }
    let mut client = ControllerClient::new(voters.addresses.values());
    for broker in 1..=3 {
        start_broker(&mut client, broker).await?;
    }
    create_topic(&mut client, "small").await?;
    let huge = ControllerRequest::SetConfigs {
        resource: runnel_controller::records::ConfigResource::Topic("small".into()),
        changes: vec![("cleanup.policy".into(), Some("x".repeat(9 << 20)))],
    };
    match client.call(huge, WITHIN).await? {
        ControllerResponse::Refused { code, .. } => {
            assert_eq!(
                code,
                kafka_protocol::error::ResponseError::PolicyViolation.code()
            );
        }
        other => return Err(format!("{other:?}").into()),
    }
    create_topic(&mut client, "after").await?;
    node.shutdown().await;
    Ok(())
}

/// A reassignment through the controller listener: started, listed, cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reassignments_are_started_listed_and_cancelled_through_the_controller() -> TestResult {
    let (voters, mut listeners) = Voters::bind(1).await?;
    let node = voters
        .start(1, listeners.remove(&1).ok_or("listener")?)
        .await?;
    let mut client = ControllerClient::new(voters.addresses.values());
    for broker in 1..=4 {
        start_broker(&mut client, broker).await?;
    }
    create_topic(&mut client, "moving").await?;
    let image = node.image().borrow().clone();
    let replicas = image
        .topic_by_name("moving")
        .and_then(|topic| topic.partitions.get(&0))
        .map(|state| state.replicas.clone())
        .ok_or("no partition")?;
    let outsider = (1..=4)
        .find(|id| !replicas.contains(id))
        .ok_or("no free broker")?;
    let target = vec![replicas[1], replicas[2], outsider];
    let reassign = |target: Option<Vec<i32>>| ControllerRequest::Reassign {
        topic: "moving".into(),
        partition: 0,
        target,
    };
    match client.call(reassign(Some(target)), WITHIN).await? {
        ControllerResponse::Committed { .. } => {}
        other => return Err(format!("{other:?}").into()),
    }
    match client
        .call(ControllerRequest::ListReassignments, WITHIN)
        .await?
    {
        ControllerResponse::Reassignments(list) => {
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].2.adding_replicas, vec![outsider]);
        }
        other => return Err(format!("{other:?}").into()),
    }
    match client.call(reassign(None), WITHIN).await? {
        ControllerResponse::Committed { .. } => {}
        other => return Err(format!("{other:?}").into()),
    }
    match client
        .call(ControllerRequest::ListReassignments, WITHIN)
        .await?
    {
        ControllerResponse::Reassignments(list) => assert!(list.is_empty()),
        other => return Err(format!("{other:?}").into()),
    }
    node.shutdown().await;
    Ok(())
}

/// A voter's data directory belongs to its quorum. A lone voter restarted on another port is
/// described there. Read offline, the directory gives the image its log builds and its voters (what a node that ran alone hands to the cluster it joins as
/// a broker); started as a voter of another quorum, it is refused rather than mixing two
/// quorums' logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_voters_log_is_read_offline_described_where_it_listens_and_refused_by_another_quorum(
) -> TestResult {
    let (mut voters, mut listeners) = Voters::bind(1).await?;
    let node = voters
        .start(1, listeners.remove(&1).ok_or("listener")?)
        .await?;
    let mut client = ControllerClient::new(voters.addresses.values());
    for broker in 1..=3 {
        start_broker(&mut client, broker).await?;
    }
    let offset = create_topic(&mut client, "kept").await?;
    image_where(&node, |image| image.offset() >= offset).await?;
    node.shutdown().await;

    // Alone on a new port (as `runnel server` with no --controller-listen starts): the
    // quorum describes this voter where it listens now, not where its log first saw it.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let moved = listener.local_addr()?.to_string();
    voters.addresses.insert(1, moved.clone());
    let node = voters.start(1, listener).await?;
    let mut client = ControllerClient::new([&moved]);
    let described = loop {
        match client
            .call(ControllerRequest::DescribeQuorum, WITHIN)
            .await?
        {
            ControllerResponse::Quorum(status) => break status,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert_eq!(described.voters.len(), 1);
    assert_eq!(described.voters[0].address, moved);
    node.shutdown().await;

    let dir = voters.dirs[&1].clone();
    let stored = runnel_quorum::read_stored_metadata(Arc::new(OsFileSystem), &dir)?
        .ok_or("no metadata log")?;
    assert_eq!(stored.voters.into_iter().collect::<Vec<_>>(), vec![1]);
    let topic = stored
        .image
        .topic_by_name("kept")
        .ok_or("topic not in the image")?;
    assert_eq!(topic.partitions.len(), 3);

    for id in 2..=3 {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        voters
            .addresses
            .insert(id, listener.local_addr()?.to_string());
    }
    let refused = voters
        .restart(1)
        .await
        .err()
        .ok_or("a quorum of three started on a lone voter's log")?;
    assert!(
        refused
            .to_string()
            .contains("belongs to a quorum of voters {1}"),
        "{refused}"
    );
    let empty = tempfile::tempdir()?;
    assert!(runnel_quorum::read_stored_metadata(Arc::new(OsFileSystem), empty.path())?.is_none());
    Ok(())
}
