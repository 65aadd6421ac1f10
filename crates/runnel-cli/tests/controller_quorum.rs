//! The controller quorum as separate `runnel server --roles controller` processes, faults
//! made with `kill -9`: the metadata the quorum committed survives the loss of its leader,
//! of any one voter's process, and of every process at once.

mod support;

use std::time::{Duration, Instant};

use runnel_controller::{Heartbeat, MetadataImage, NewTopic, Registration};
use runnel_quorum::{ControllerClient, ControllerRequest, ControllerResponse, QuorumStatus};
use support::{free_port, ControllerProcess};
use uuid::Uuid;

const WITHIN: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

struct Quorum {
    voters: Vec<ControllerProcess>,
    addresses: Vec<String>,
    _root: tempfile::TempDir,
}

impl Quorum {
    fn start(count: u64) -> Quorum {
        let root = tempfile::tempdir().expect("temp dir");
        let ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let quorum = (1..=count)
            .zip(&ports)
            .map(|(id, port)| format!("{id}@127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        // Brokers here are the test itself, which heartbeats only when it must.
        let extra = ["--broker-session-timeout-ms", "120000"];
        let voters: Vec<ControllerProcess> = (1..=count)
            .zip(&ports)
            .map(|(id, &port)| ControllerProcess::start(id, port, &quorum, root.path(), &extra))
            .collect();
        let addresses = voters.iter().map(ControllerProcess::address).collect();
        Quorum {
            voters,
            addresses,
            _root: root,
        }
    }

    fn client(&self) -> ControllerClient {
        ControllerClient::new(&self.addresses)
    }

    fn voter(&mut self, id: u64) -> &mut ControllerProcess {
        self.voters
            .iter_mut()
            .find(|voter| voter.id == id)
            .expect("voter")
    }
}

async fn call(client: &mut ControllerClient, request: ControllerRequest) -> ControllerResponse {
    client
        .call(request, WITHIN)
        .await
        .expect("a controller answers")
}

async fn status(client: &mut ControllerClient) -> QuorumStatus {
    match call(client, ControllerRequest::DescribeQuorum).await {
        ControllerResponse::Quorum(status) => status,
        other => panic!("describe quorum: {other:?}"),
    }
}

async fn register_and_unfence(client: &mut ControllerClient, id: i32) {
    let registration = Registration {
        id,
        incarnation_id: Uuid::new_v4(),
        previous_incarnation_id: None,
        listeners: vec![],
        rack: None,
        data_intact: true,
    };
    let broker_epoch = match call(client, ControllerRequest::Register(registration)).await {
        ControllerResponse::Registered { broker_epoch } => broker_epoch,
        other => panic!("register {id}: {other:?}"),
    };
    let heartbeat = Heartbeat {
        id,
        broker_epoch,
        metadata_offset: u64::MAX,
        want_fence: false,
        want_shutdown: false,
        offline_replicas: Vec::new(),
    };
    match call(client, ControllerRequest::Heartbeat(heartbeat)).await {
        ControllerResponse::Heartbeat(answer) => assert!(!answer.fenced, "{answer:?}"),
        other => panic!("heartbeat {id}: {other:?}"),
    }
}

async fn create_topic(client: &mut ControllerClient, name: &str) -> u64 {
    let topic = NewTopic {
        name: name.into(),
        partitions: 6,
        replication_factor: 3,
        assignments: vec![],
        configs: vec![],
    };
    let request = ControllerRequest::CreateTopic {
        topic,
        validate_only: false,
    };
    match call(client, request).await {
        ControllerResponse::Committed { offset } => offset,
        other => panic!("create {name}: {other:?}"),
    }
}

/// The image one voter serves, once it has applied `offset`.
async fn image_from(address: &str, offset: u64) -> Box<MetadataImage> {
    let mut client = ControllerClient::new([&address.to_owned()]);
    let deadline = Instant::now() + WITHIN;
    loop {
        if let Ok(ControllerResponse::Image(Some(image))) = client
            .fetch_image(offset.saturating_sub(1), Duration::from_secs(1))
            .await
        {
            return image;
        }
        assert!(
            Instant::now() < deadline,
            "{address} never applied offset {offset}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn the_quorum_keeps_committed_metadata_through_kill_9_of_its_leader_and_of_everyone() {
    let mut quorum = Quorum::start(3);
    let runtime = runtime();
    let mut client = quorum.client();
    let orders = runtime.block_on(async {
        for broker in 1..=3 {
            register_and_unfence(&mut client, broker).await;
        }
        create_topic(&mut client, "orders").await
    });

    // kill -9 the leader: another takes over and commits.
    let leader = runtime.block_on(status(&mut client)).leader;
    quorum.voter(leader).kill9();
    let killed_at = Instant::now();
    let payments = runtime.block_on(create_topic(&mut client, "payments"));
    let failover = killed_at.elapsed();
    eprintln!(
        "controller failover: the first commit after kill -9 of the leader took {failover:?}"
    );
    let status_after = runtime.block_on(status(&mut client));
    assert_ne!(status_after.leader, leader);
    assert!(status_after.term > 1);

    // The old leader comes back from its disk and catches up.
    quorum.voter(leader).start_again();
    let address = quorum.voter(leader).address();
    let image = runtime.block_on(image_from(&address, payments));
    assert!(image.topic_by_name("orders").is_some());
    assert!(image.topic_by_name("payments").is_some());

    // Every process dies at once; all of it comes back.
    for voter in &mut quorum.voters {
        voter.kill9();
    }
    for voter in &mut quorum.voters {
        voter.start_again();
    }
    let mut client = quorum.client();
    let after_restart = runtime.block_on(async {
        let offset = create_topic(&mut client, "after-restart").await;
        assert!(offset > payments.max(orders));
        offset
    });
    for address in quorum.addresses.clone() {
        let image = runtime.block_on(image_from(&address, after_restart));
        for name in ["orders", "payments", "after-restart"] {
            let topic = image.topic_by_name(name).expect("topic kept");
            assert_eq!(topic.partitions.len(), 6);
            assert!(topic.partitions.values().all(|p| p.replicas.len() == 3));
        }
        assert_eq!(image.brokers().count(), 3);
    }
}

#[test]
fn a_controller_refuses_a_quorum_that_does_not_name_it() {
    let root = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["server", "--roles", "controller", "--node-id", "4"])
        .args(["--controller-listen", &format!("127.0.0.1:{port}")])
        .args(["--controller-quorum", &format!("1@127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(root.path())
        .output()
        .expect("run runnel");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("node-id 4 is not among the controller-quorum voters"),
        "{stderr}"
    );
}

/// `runnel cluster quorum` against real controllers: the leader's view, as a table and as
/// JSON, from any controller's address.
#[test]
fn cluster_quorum_shows_the_leader_the_voters_and_the_brokers() {
    let quorum = Quorum::start(3);
    let runtime = runtime();
    let mut client = quorum.client();
    runtime.block_on(register_and_unfence(&mut client, 7));
    let leader = runtime.block_on(status(&mut client)).leader;
    let quorum_cli = |format: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
            .args(["cluster", "quorum", "--format", format])
            .args(["--bootstrap-controller", &quorum.addresses[2]])
            .output()
            .expect("run runnel");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let json: serde_json::Value = serde_json::from_str(&quorum_cli("json")).expect("json");
    assert_eq!(json["leader"], leader);
    assert_eq!(json["voters"].as_array().map(Vec::len), Some(3));
    assert_eq!(json["brokers"][0]["registration"]["id"], 7);
    let table = quorum_cli("table");
    assert!(
        table.contains(&format!("Leader:         {leader}")),
        "{table}"
    );
    assert!(table.contains(&format!("{leader}*")), "{table}");
    assert!(table.contains("active"), "{table}");
}

/// The controller settings come from the environment as well as from flags.
#[test]
fn a_controller_takes_its_settings_from_the_environment() {
    let root = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
        .arg("server")
        .env("RUNNEL_ROLES", "controller")
        .env("RUNNEL_NODE_ID", "1")
        .env("RUNNEL_CONTROLLER_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUNNEL_CONTROLLER_QUORUM", format!("1@127.0.0.1:{port}"))
        .env("RUNNEL_DATA_DIR", root.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn runnel");
    let runtime = runtime();
    let answer = runtime.block_on(async {
        let mut client = ControllerClient::new([&format!("127.0.0.1:{port}")]);
        client.call(ControllerRequest::DescribeQuorum, WITHIN).await
    });
    let _ = child.kill();
    let _ = child.wait();
    match answer {
        Ok(ControllerResponse::Quorum(status)) => assert_eq!(status.leader, 1),
        other => panic!("{other:?}"),
    }
    assert!(root.path().join("__cluster_metadata").is_dir());
}
