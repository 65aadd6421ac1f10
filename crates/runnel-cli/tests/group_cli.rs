//! `runnel group list|describe` against the real binary: groups set up with raw requests
//! (records produced, offsets committed, a classic member joined), then read back through the
//! command line's JSON and table output. Also what a topic's deletion leaves of the groups'
//! offsets on it: nothing, through a crash and the topic's creation again.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use runnel_record::BatchBuilder;
use serde_json::{json, Value};
use support::{BrokerProcess, Connect};

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn start_broker() -> BrokerProcess {
    BrokerProcess::start(&["--group-initial-rebalance-delay-ms", "0"])
}

fn create_topic(broker: &BrokerProcess, topic: &str, partitions: i32) {
    let request = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1),
    ]);
    let response: CreateTopicsResponse =
        broker.connect().request(ApiKey::CreateTopics, 7, &request);
    assert_eq!(response.topics[0].error_code, 0, "create {topic}");
}

fn produce(broker: &BrokerProcess, topic: &str, partition: i32, count: usize) {
    let records = (0..count)
        .fold(BatchBuilder::new(1_700_000_000_000), |batch, i| {
            batch.record(None, Some(format!("record {i}").as_bytes()), &[])
        })
        .build();
    let answers = support::produce_to(broker, 9, topic, vec![(partition, records)]);
    assert_eq!(answers[0].error_code, 0, "produce to {topic}-{partition}");
}

/// Finds `group`'s coordinator, as a client does before any group request, then sends
/// `request` until its error code is not retriable (the coordinator may still be loading the
/// offsets topic right after start).
fn until_settled<T>(
    broker: &BrokerProcess,
    group: &str,
    mut request: impl FnMut() -> T,
    error_code: impl Fn(&T) -> i16,
) -> T {
    support::wait_for_group_coordinator(broker, group);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = request();
        let retriable = ResponseError::try_from_code(error_code(&response))
            .is_some_and(|error| error.is_retriable());
        if !retriable || Instant::now() > deadline {
            return response;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Commits as a "simple" group: no generation, no member.
fn commit(broker: &BrokerProcess, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    commit_as(broker, group, ("", -1), topic, offsets);
}

/// Commits as the member with this id and generation (classic) or member epoch (KIP-848).
fn commit_as(
    broker: &BrokerProcess,
    group: &str,
    (member_id, generation_or_epoch): (&str, i32),
    topic: &str,
    offsets: &[(i32, i64)],
) {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_generation_id_or_member_epoch(generation_or_epoch)
        .with_member_id(text(member_id))
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name(topic))
                .with_partitions(
                    offsets
                        .iter()
                        .map(|&(partition, offset)| {
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(partition)
                                .with_committed_offset(offset)
                        })
                        .collect(),
                ),
        ]);
    let response: OffsetCommitResponse = until_settled(
        broker,
        group,
        || broker.connect().request(ApiKey::OffsetCommit, 9, &request),
        |response: &OffsetCommitResponse| response.topics[0].partitions[0].error_code,
    );
    for partition in &response.topics[0].partitions {
        assert_eq!(
            partition.error_code, 0,
            "commit {topic}-{}",
            partition.partition_index
        );
    }
}

/// Joins `group` as its only classic consumer, which takes `partitions`, and returns its member
/// id and connection. The 30 s session timeout outlasts the test, so no heartbeats.
fn join_and_assign(
    broker: &BrokerProcess,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> (String, support::Connection) {
    let mut subscription = BytesMut::new();
    subscription.put_i16(0);
    consumer_protocol_subscription::ConsumerProtocolSubscription::default()
        .with_topics(vec![text(topic)])
        .encode(&mut subscription, 0)
        .expect("subscription");
    let mut connection = broker.connect();
    let mut member_id = String::new();
    let joined = loop {
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(text(group)))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(text(&member_id))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(text("range"))
            .with_metadata(subscription.clone().freeze())]);
        let response: JoinGroupResponse = until_settled(
            broker,
            group,
            || connection.request(ApiKey::JoinGroup, 7, &request),
            |response: &JoinGroupResponse| response.error_code,
        );
        if response.error_code == ResponseError::MemberIdRequired.code() {
            member_id = response.member_id.to_string();
            continue;
        }
        assert_eq!(response.error_code, 0, "join {group}");
        break response;
    };
    let member_id = joined.member_id.to_string();
    assert_eq!(joined.leader.as_str(), member_id, "the only member leads");

    let mut assignment = BytesMut::new();
    assignment.put_i16(0);
    ConsumerProtocolAssignment::default()
        .with_assigned_partitions(vec![consumer_protocol_assignment::TopicPartition::default(
        )
        .with_topic(name(topic))
        .with_partitions(partitions.to_vec())])
        .encode(&mut assignment, 0)
        .expect("assignment");
    let request = SyncGroupRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(text(&member_id))
        .with_protocol_type(Some(text("consumer")))
        .with_protocol_name(joined.protocol_name.clone())
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(text(&member_id))
                .with_assignment(assignment.freeze()),
        ]);
    let synced: SyncGroupResponse = connection.request(ApiKey::SyncGroup, 5, &request);
    assert_eq!(synced.error_code, 0, "sync {group}");
    (member_id, connection)
}

struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `runnel` with `args`; `bootstrap` goes through RUNNEL_BROKERS, not a flag.
fn runnel(args: &[&str], bootstrap: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_runnel"));
    command.args(args).env_remove("RUNNEL_BROKERS");
    if let Some(bootstrap) = bootstrap {
        command.env("RUNNEL_BROKERS", bootstrap);
    }
    let output = command.output().expect("run runnel");
    Output {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn runnel_json(args: &[&str], bootstrap: Option<&str>) -> Value {
    let output = runnel(args, bootstrap);
    assert!(output.success, "runnel {args:?} failed:\n{}", output.stderr);
    serde_json::from_str(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "runnel {args:?} printed no JSON ({error}):\n{}",
            output.stdout
        )
    })
}

/// The partitions' rows, in order, with exactly the fields the tests pin down.
fn partition_rows(description: &Value) -> Vec<Value> {
    description["partitions"]
        .as_array()
        .expect("partitions array")
        .iter()
        .map(|p| {
            json!({
                "topic": p["topic"],
                "partition": p["partition"],
                "committed_offset": p["committed_offset"],
                "log_end_offset": p["log_end_offset"],
                "lag": p["lag"],
                "member_id": p["member_id"],
                "error": p["error"],
            })
        })
        .collect()
}

#[test]
fn simple_group_committed_offsets_and_lag() {
    let broker = start_broker();
    let bootstrap = format!("127.0.0.1:{}", broker.port);
    create_topic(&broker, "orders", 2);
    produce(&broker, "orders", 0, 5);
    produce(&broker, "orders", 1, 3);
    commit(&broker, "billing", "orders", &[(0, 2), (1, 3)]);

    let listed = runnel_json(
        &[
            "group",
            "list",
            "--bootstrap",
            &bootstrap,
            "--format",
            "json",
        ],
        None,
    );
    let groups = listed["groups"].as_array().expect("groups array");
    let billing = groups
        .iter()
        .find(|g| g["group_id"] == "billing")
        .unwrap_or_else(|| panic!("billing listed: {listed:#}"));
    assert_eq!(
        billing["protocol_type"], "",
        "a simple group has no protocol: {billing}"
    );

    let described = runnel_json(
        &["group", "describe", "billing", "--format", "json"],
        Some(&bootstrap),
    );
    assert_eq!(described["group_id"], "billing");
    assert_eq!(described["group_type"], "classic");
    assert_eq!(described["state"], "Empty");
    assert_eq!(described["members"], json!([]));
    assert_eq!(described["coordinator"]["port"], broker.port);
    assert_eq!(
        partition_rows(&described),
        [
            json!({"topic": "orders", "partition": 0, "committed_offset": 2, "log_end_offset": 5,
                   "lag": 3, "member_id": null, "error": null}),
            json!({"topic": "orders", "partition": 1, "committed_offset": 3, "log_end_offset": 3,
                   "lag": 0, "member_id": null, "error": null}),
        ]
    );

    let list_table = runnel(&["group", "list", "--bootstrap", &bootstrap], None);
    assert!(list_table.success, "{}", list_table.stderr);
    assert!(
        list_table.stdout.starts_with("GROUP"),
        "{}",
        list_table.stdout
    );
    assert!(
        list_table.stdout.contains("billing"),
        "{}",
        list_table.stdout
    );

    let describe_table = runnel(
        &["group", "describe", "billing", "--bootstrap", &bootstrap],
        None,
    );
    assert!(describe_table.success, "{}", describe_table.stderr);
    assert!(
        describe_table.stdout.contains("billing"),
        "{}",
        describe_table.stdout
    );
    let row = describe_table
        .stdout
        .lines()
        .find(|line| line.starts_with("orders") && line.split_whitespace().nth(1) == Some("0"))
        .unwrap_or_else(|| panic!("a row for orders-0:\n{}", describe_table.stdout));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["orders", "0", "2", "5", "3", "-"]
    );
}

#[test]
fn classic_member_assignment_is_decoded() {
    let broker = start_broker();
    let bootstrap = format!("127.0.0.1:{}", broker.port);
    create_topic(&broker, "events", 3);
    produce(&broker, "events", 1, 4);
    let (member_id, _member) = join_and_assign(&broker, "readers", "events", &[0, 1]);

    let described = runnel_json(
        &[
            "group",
            "describe",
            "readers",
            "--bootstrap",
            &bootstrap,
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(described["state"], "Stable", "{described:#}");
    assert_eq!(described["protocol_type"], "consumer");
    assert_eq!(described["assignor"], "range");
    let members = described["members"].as_array().expect("members array");
    assert_eq!(members.len(), 1, "{described:#}");
    assert_eq!(members[0]["member_id"], member_id.as_str());
    assert_eq!(members[0]["client_id"], "runnel-test");
    assert_eq!(
        members[0]["assignment"],
        json!([{"topic": "events", "partitions": [0, 1]}])
    );
    // Owned but never committed: an end offset, no lag.
    assert_eq!(
        partition_rows(&described),
        [
            json!({"topic": "events", "partition": 0, "committed_offset": null, "log_end_offset": 0,
                   "lag": null, "member_id": member_id, "error": null}),
            json!({"topic": "events", "partition": 1, "committed_offset": null, "log_end_offset": 4,
                   "lag": null, "member_id": member_id, "error": null}),
        ]
    );
}

#[test]
fn unknown_group_is_an_error_that_says_so() {
    let broker = start_broker();
    let bootstrap = format!("127.0.0.1:{}", broker.port);
    let output = runnel(
        &["group", "describe", "nobody", "--bootstrap", &bootstrap],
        None,
    );
    assert!(!output.success, "{}", output.stdout);
    assert!(
        output.stderr.contains("\"nobody\" does not exist"),
        "{}",
        output.stderr
    );
}

#[test]
fn unreachable_bootstrap_is_an_error_that_names_it() {
    let port = support::free_port();
    let bootstrap = format!("127.0.0.1:{port}");
    let output = runnel(&["group", "list"], Some(&bootstrap));
    assert!(!output.success, "{}", output.stdout);
    assert!(
        output
            .stderr
            .contains(&format!("cannot connect to {bootstrap}")),
        "{}",
        output.stderr
    );
}

/// A KIP-848 member with its assignment.
struct ConsumerMember {
    member_id: String,
    member_epoch: i32,
    partitions: Vec<i32>,
    _connection: support::Connection,
}

/// Joins `group` as a KIP-848 member subscribed to `topic`, heartbeating until the coordinator's
/// assignment arrives.
fn join_consumer_protocol(broker: &BrokerProcess, group: &str, topic: &str) -> ConsumerMember {
    let member_id = "group-cli-test-member-1".to_owned();
    let mut connection = broker.connect();
    let mut member_epoch = 0;
    let mut owned: Vec<consumer_group_heartbeat_request::TopicPartitions> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(text(group)))
            .with_member_id(text(&member_id))
            .with_member_epoch(member_epoch)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![name(topic)]))
            .with_topic_partitions(Some(owned.clone()));
        let response: ConsumerGroupHeartbeatResponse = until_settled(
            broker,
            group,
            || connection.request(ApiKey::ConsumerGroupHeartbeat, 1, &request),
            |response: &ConsumerGroupHeartbeatResponse| response.error_code,
        );
        assert_eq!(
            response.error_code, 0,
            "heartbeat: {:?}",
            response.error_message
        );
        member_epoch = response.member_epoch;
        if let Some(assignment) = response.assignment {
            owned = assignment
                .topic_partitions
                .into_iter()
                .map(|assigned| {
                    consumer_group_heartbeat_request::TopicPartitions::default()
                        .with_topic_id(assigned.topic_id)
                        .with_partitions(assigned.partitions)
                })
                .collect();
            let mut partitions: Vec<i32> =
                owned.iter().flat_map(|t| t.partitions.clone()).collect();
            partitions.sort_unstable();
            if !partitions.is_empty() {
                return ConsumerMember {
                    member_id,
                    member_epoch,
                    partitions,
                    _connection: connection,
                };
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no assignment for {member_id} in {group}");
}

#[test]
fn consumer_protocol_group_is_described_with_its_own_api() {
    let broker = start_broker();
    let bootstrap = format!("127.0.0.1:{}", broker.port);
    create_topic(&broker, "clicks", 3);
    produce(&broker, "clicks", 2, 6);
    let member = join_consumer_protocol(&broker, "kip848", "clicks");
    let member_id = member.member_id.as_str();
    assert_eq!(
        member.partitions,
        [0, 1, 2],
        "the only member gets every partition"
    );
    // A group with members takes commits from its members only.
    commit_as(
        &broker,
        "kip848",
        (member_id, member.member_epoch),
        "clicks",
        &[(2, 1)],
    );

    let listed = runnel_json(
        &[
            "group",
            "list",
            "--bootstrap",
            &bootstrap,
            "--format",
            "json",
        ],
        None,
    );
    let listing = listed["groups"]
        .as_array()
        .expect("groups array")
        .iter()
        .find(|g| g["group_id"] == "kip848")
        .unwrap_or_else(|| panic!("kip848 listed: {listed:#}"))
        .clone();
    assert_eq!(listing["group_type"], "consumer");

    let described = runnel_json(
        &[
            "group",
            "describe",
            "kip848",
            "--bootstrap",
            &bootstrap,
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(described["group_type"], "consumer", "{described:#}");
    assert_eq!(described["protocol_type"], "consumer");
    let members = described["members"].as_array().expect("members array");
    assert_eq!(members.len(), 1, "{described:#}");
    assert_eq!(members[0]["member_id"], member_id);
    assert_eq!(
        members[0]["assignment"],
        json!([{"topic": "clicks", "partitions": [0, 1, 2]}])
    );
    let rows = partition_rows(&described);
    assert_eq!(rows.len(), 3, "{described:#}");
    assert_eq!(
        rows[2],
        json!({"topic": "clicks", "partition": 2, "committed_offset": 1, "log_end_offset": 6,
               "lag": 5, "member_id": member_id, "error": null})
    );
}

fn delete_topic(broker: &BrokerProcess, topic: &str) {
    let request = DeleteTopicsRequest::default()
        .with_topic_names(vec![name(topic)])
        .with_timeout_ms(30_000);
    let response: DeleteTopicsResponse =
        broker.connect().request(ApiKey::DeleteTopics, 4, &request);
    assert_eq!(response.responses[0].error_code, 0, "delete {topic}");
}

/// Every offset `group` has committed, through OffsetFetch v8 (all topics): (topic,
/// partition, offset), in the coordinator's order.
fn committed_offsets(broker: &BrokerProcess, group: &str) -> Vec<(String, i32, i64)> {
    let request = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(text(group)))
            .with_topics(None),
    ]);
    let response: OffsetFetchResponse = until_settled(
        broker,
        group,
        || broker.connect().request(ApiKey::OffsetFetch, 8, &request),
        |response: &OffsetFetchResponse| response.groups[0].error_code,
    );
    let fetched = &response.groups[0];
    assert_eq!(fetched.error_code, 0, "offset fetch for {group}");
    fetched
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                assert_eq!(partition.error_code, 0, "{}", topic.name.as_str());
                (
                    topic.name.to_string(),
                    partition.partition_index,
                    partition.committed_offset,
                )
            })
        })
        .collect()
}

/// What OffsetFetch v8 answers for `partitions` of `topic` named one by one, as a consumer
/// asks for its assignment: -1 where nothing is committed.
fn committed_on(broker: &BrokerProcess, group: &str, topic: &str, partitions: &[i32]) -> Vec<i64> {
    let request = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(text(group)))
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopics::default()
                    .with_name(name(topic))
                    .with_partition_indexes(partitions.to_vec()),
            ])),
    ]);
    let response: OffsetFetchResponse = until_settled(
        broker,
        group,
        || broker.connect().request(ApiKey::OffsetFetch, 8, &request),
        |response: &OffsetFetchResponse| response.groups[0].error_code,
    );
    assert_eq!(response.groups[0].error_code, 0, "offset fetch for {group}");
    response.groups[0].topics[0]
        .partitions
        .iter()
        .map(|partition| partition.committed_offset)
        .collect()
}

/// As Kafka's group coordinator does on a topic's deletion: the offsets every group committed
/// on it go, durably (tombstones in `__consumer_offsets`, so a crash does not bring them back),
/// and a topic created again under the name starts with none, so a group reading it starts
/// from its reset point rather than from offsets into records that are gone.
#[test]
fn deleting_a_topic_removes_every_groups_offsets_on_it() {
    let mut broker = start_broker();
    let bootstrap = format!("127.0.0.1:{}", broker.port);
    create_topic(&broker, "doomed", 2);
    create_topic(&broker, "kept", 1);
    produce(&broker, "doomed", 0, 5);
    produce(&broker, "kept", 0, 2);
    commit(&broker, "readers", "doomed", &[(0, 3), (1, 4)]);
    commit(&broker, "readers", "kept", &[(0, 1)]);
    // A group with offsets on the doomed topic alone.
    commit(&broker, "doomed-only", "doomed", &[(0, 2)]);
    assert_eq!(
        committed_offsets(&broker, "readers"),
        [
            ("doomed".to_owned(), 0, 3),
            ("doomed".to_owned(), 1, 4),
            ("kept".to_owned(), 0, 1)
        ]
    );

    delete_topic(&broker, "doomed");

    // Gone as soon as DeleteTopics is answered: this broker coordinates the groups too.
    let kept = [("kept".to_owned(), 0, 1)];
    assert_eq!(committed_offsets(&broker, "readers"), kept);
    assert_eq!(committed_offsets(&broker, "doomed-only"), []);
    assert_eq!(
        committed_on(&broker, "readers", "doomed", &[0, 1]),
        [-1, -1]
    );
    let described = runnel_json(
        &["group", "describe", "readers", "--format", "json"],
        Some(&bootstrap),
    );
    let rows = partition_rows(&described);
    assert_eq!(rows.len(), 1, "{described:#}");
    assert_eq!(rows[0]["topic"], "kept", "{described:#}");

    // A crash: the groups are replayed from `__consumer_offsets`, tombstones included.
    broker.kill9();
    broker.start_again();
    assert_eq!(committed_offsets(&broker, "readers"), kept);
    assert_eq!(committed_offsets(&broker, "doomed-only"), []);

    // Created again under the same name: nothing committed on it.
    create_topic(&broker, "doomed", 2);
    assert_eq!(
        committed_on(&broker, "readers", "doomed", &[0, 1]),
        [-1, -1]
    );
    assert_eq!(
        committed_on(&broker, "doomed-only", "doomed", &[0, 1]),
        [-1, -1]
    );
    assert_eq!(committed_offsets(&broker, "readers"), kept);
}
