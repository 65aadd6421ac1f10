//! The admin client against the real broker binary: every operation, and the errors a user
//! meets (a topic that exists, one that does not, partitions that cannot be).

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    consumer_group_heartbeat_request, consumer_protocol_assignment, join_group_request,
    produce_request, sync_group_request, ApiKey, ConsumerGroupHeartbeatRequest,
    ConsumerProtocolAssignment, GroupId, JoinGroupRequest, ProduceRequest, SyncGroupRequest,
    TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use runnel_client::{
    Admin, AlterConfigOp, ClientError, ConfigSource, GroupType, NewTopic, OffsetSpec,
};
use runnel_record::BatchBuilder;
use support::BrokerProcess;

async fn admin(broker: &BrokerProcess) -> Admin {
    Admin::connect(broker.config())
        .await
        .expect("admin connects")
}

fn broker_code<T: std::fmt::Debug>(result: runnel_client::Result<T>) -> ResponseError {
    match result {
        Err(ClientError::Broker { code, .. }) => code,
        other => panic!("expected a broker error, got {other:?}"),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// Appends one batch of `values` with timestamps `first_timestamp`, +1, +2... to the
/// partition, through the client's own connection to the leader; returns the base offset.
async fn produce(
    admin: &Admin,
    topic: &str,
    partition: i32,
    first_timestamp: i64,
    values: &[&str],
) -> i64 {
    let mut batch = BatchBuilder::new(first_timestamp);
    for (i, value) in values.iter().enumerate() {
        batch = batch.record_at(
            first_timestamp + i as i64,
            None,
            Some(value.as_bytes()),
            &[],
        );
    }
    let (_, connection) = admin
        .cluster()
        .leader_connection(topic, partition)
        .await
        .expect("leader");
    let version = connection
        .version_for(ApiKey::Produce)
        .expect("Produce served");
    // Produce v13+ names topics by id (KIP-516), older versions by name.
    let topic_id = admin.cluster().topic(topic).await.expect("metadata").id;
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_topic_id(topic_id)
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(Bytes::from(batch.build()))),
            ])]);
    let response = connection.send(request, version).await.expect("produce");
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!(answer.error_code, 0, "produce error");
    answer.base_offset
}

#[tokio::test]
async fn topics_are_created_listed_described_and_deleted() {
    let broker = BrokerProcess::start(&[]).await;
    let admin = admin(&broker).await;
    admin
        .create_topic(NewTopic::new("orders", 3).with_config("retention.ms", "3600000"))
        .await
        .expect("create");

    let topics = admin.list_topics(false).await.expect("list");
    let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["orders"]);

    let orders = admin.describe_topic("orders").await.expect("describe");
    assert_eq!(orders.partitions.len(), 3);
    assert!(!orders.id.is_nil(), "Metadata v10+ carries the topic id");
    let node_id = admin.describe_cluster().await.expect("cluster").brokers[0].node_id;
    for (index, partition) in orders.partitions.iter().enumerate() {
        assert_eq!(partition.partition, index as i32);
        assert_eq!(partition.leader, node_id);
        assert_eq!(partition.replicas, [node_id]);
        assert_eq!(partition.isr, [node_id]);
        assert_eq!(partition.error, None);
    }

    let deleted = admin
        .delete_topics(&["orders".to_owned()])
        .await
        .expect("delete");
    assert_eq!(deleted.len(), 1);
    assert!(deleted[0].1.is_ok(), "{:?}", deleted[0].1);
    assert_eq!(
        broker_code(admin.describe_topic("orders").await),
        ResponseError::UnknownTopicOrPartition
    );
    assert!(admin.list_topics(false).await.expect("list").is_empty());
}

#[tokio::test]
async fn topic_errors_carry_the_code_the_message_and_the_topic() {
    let broker = BrokerProcess::start(&[]).await;
    let admin = admin(&broker).await;
    admin
        .create_topic(NewTopic::new("t", 1))
        .await
        .expect("create");

    let error = admin.create_topic(NewTopic::new("t", 1)).await.unwrap_err();
    match &error {
        ClientError::Broker {
            code,
            message,
            context,
        } => {
            assert_eq!(*code, ResponseError::TopicAlreadyExists);
            assert!(message
                .as_deref()
                .is_some_and(|m| m.contains("already exists")));
            assert!(context.contains("\"t\""), "{context}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!error.is_retriable());

    assert_eq!(
        broker_code(admin.create_topic(NewTopic::new("zero", 0)).await),
        ResponseError::InvalidPartitions
    );
    assert_eq!(
        broker_code(
            admin
                .create_topic(NewTopic::new("wide", 1).with_replication_factor(3))
                .await
        ),
        ResponseError::InvalidReplicationFactor
    );
    assert_eq!(
        broker_code(admin.describe_topic("missing").await),
        ResponseError::UnknownTopicOrPartition
    );
    let deleted = admin
        .delete_topics(&["missing".to_owned()])
        .await
        .expect("delete answers per topic");
    assert_eq!(
        broker_code(deleted.into_iter().next().expect("one result").1),
        ResponseError::UnknownTopicOrPartition
    );
    assert_eq!(
        broker_code(admin.cluster().leader_connection("t", 7).await),
        ResponseError::UnknownTopicOrPartition
    );
}

#[tokio::test]
async fn create_topics_answers_per_topic_and_validate_only_creates_nothing() {
    let broker = BrokerProcess::start(&[]).await;
    let admin = admin(&broker).await;
    let results = admin
        .create_topics(vec![NewTopic::new("a", 2), NewTopic::new("b", -5)], true)
        .await
        .expect("create");
    let names: Vec<&str> = results.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(results[0].1.is_ok());
    assert!(results[1].1.is_err());
    assert!(admin.list_topics(false).await.expect("list").is_empty());

    let results = admin
        .create_topics(vec![NewTopic::new("a", 2), NewTopic::new("b", 1)], false)
        .await
        .expect("create");
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    assert_eq!(admin.list_topics(false).await.expect("list").len(), 2);
}

#[tokio::test]
async fn partitions_grow_but_never_shrink() {
    let broker = BrokerProcess::start(&[]).await;
    let admin = admin(&broker).await;
    admin
        .create_topic(NewTopic::new("grow", 2))
        .await
        .expect("create");
    // Warm the cache, so the growth must invalidate it.
    assert_eq!(
        admin
            .cluster()
            .topic("grow")
            .await
            .expect("topic")
            .partitions
            .len(),
        2
    );
    admin.create_partitions("grow", 5).await.expect("grow");
    assert_eq!(
        admin
            .describe_topic("grow")
            .await
            .expect("describe")
            .partitions
            .len(),
        5
    );
    assert_eq!(
        admin
            .cluster()
            .topic("grow")
            .await
            .expect("topic")
            .partitions
            .len(),
        5
    );
    assert_eq!(
        broker_code(admin.create_partitions("grow", 3).await),
        ResponseError::InvalidPartitions
    );
    assert_eq!(
        broker_code(admin.create_partitions("missing", 3).await),
        ResponseError::UnknownTopicOrPartition
    );
}

#[tokio::test]
async fn topic_configs_are_described_and_altered_incrementally() {
    let broker = BrokerProcess::start(&[]).await;
    let admin = admin(&broker).await;
    admin
        .create_topic(NewTopic::new("c", 1))
        .await
        .expect("create");

    let configs = admin.describe_topic_configs("c").await.expect("describe");
    let retention = configs
        .iter()
        .find(|c| c.name == "retention.ms")
        .expect("retention.ms listed");
    assert!(retention.is_default);
    assert_eq!(retention.source, ConfigSource::DefaultConfig);
    assert!(!retention.synonyms.is_empty());

    admin
        .alter_topic_configs(
            "c",
            vec![
                AlterConfigOp::set("retention.ms", "60000"),
                AlterConfigOp::set("cleanup.policy", "compact"),
            ],
        )
        .await
        .expect("alter");
    let configs = admin.describe_topic_configs("c").await.expect("describe");
    let find = |name: &str| {
        configs
            .iter()
            .find(|c| c.name == name)
            .cloned()
            .expect("listed")
    };
    let retention = find("retention.ms");
    assert_eq!(retention.value.as_deref(), Some("60000"));
    assert_eq!(retention.source, ConfigSource::DynamicTopicConfig);
    assert!(!retention.is_default);
    assert_eq!(retention.synonyms[0].name, "retention.ms");
    assert_eq!(find("cleanup.policy").value.as_deref(), Some("compact"));

    admin
        .alter_topic_configs("c", vec![AlterConfigOp::delete("retention.ms")])
        .await
        .expect("delete override");
    let configs = admin.describe_topic_configs("c").await.expect("describe");
    let retention = configs
        .iter()
        .find(|c| c.name == "retention.ms")
        .expect("listed");
    assert!(retention.is_default);

    assert_eq!(
        broker_code(
            admin
                .alter_topic_configs("c", vec![AlterConfigOp::set("no.such.config", "1")])
                .await
        ),
        ResponseError::InvalidConfig
    );
    assert_eq!(
        broker_code(admin.describe_topic_configs("missing").await),
        ResponseError::UnknownTopicOrPartition
    );
}

#[tokio::test]
async fn offsets_are_listed_by_spec_and_records_deleted() {
    let broker = BrokerProcess::start(&[]).await;
    let admin = admin(&broker).await;
    admin
        .create_topic(NewTopic::new("o", 2))
        .await
        .expect("create");
    let start = now_ms() - 60_000;
    assert_eq!(produce(&admin, "o", 0, start, &["a", "b", "c"]).await, 0);
    assert_eq!(produce(&admin, "o", 0, start + 10, &["d", "e"]).await, 3);

    let latest = admin
        .list_offsets("o", &[1, 0], OffsetSpec::Latest)
        .await
        .expect("latest");
    assert_eq!(
        latest
            .iter()
            .map(|(p, o)| (*p, o.offset))
            .collect::<Vec<_>>(),
        [(1, 0), (0, 5)]
    );
    let earliest = admin
        .list_offsets("o", &[0], OffsetSpec::Earliest)
        .await
        .expect("earliest");
    assert_eq!(earliest[0].1.offset, 0);
    let by_time = admin
        .list_offsets("o", &[0], OffsetSpec::Timestamp(start + 10))
        .await
        .expect("by time");
    assert_eq!(
        (by_time[0].1.offset, by_time[0].1.timestamp),
        (3, start + 10)
    );
    let after_all = admin
        .list_offsets("o", &[0], OffsetSpec::Timestamp(now_ms() + 3_600_000))
        .await
        .expect("after all");
    assert_eq!(after_all[0].1.offset, -1);
    let max = admin
        .list_offsets("o", &[0], OffsetSpec::MaxTimestamp)
        .await
        .expect("max timestamp");
    assert_eq!((max[0].1.offset, max[0].1.timestamp), (4, start + 11));
    assert_eq!(latest[1].1.leader_epoch, Some(0));

    let low = admin
        .delete_records("o", &[(0, 2)])
        .await
        .expect("delete records");
    assert_eq!(low, [(0, 2)]);
    let earliest = admin
        .list_offsets("o", &[0], OffsetSpec::Earliest)
        .await
        .expect("earliest");
    assert_eq!(earliest[0].1.offset, 2);
    let low = admin
        .delete_records("o", &[(0, -1)])
        .await
        .expect("to the end");
    assert_eq!(low, [(0, 5)]);
    assert_eq!(
        broker_code(admin.delete_records("o", &[(0, 99)]).await),
        ResponseError::OffsetOutOfRange
    );

    assert_eq!(
        broker_code(admin.list_offsets("o", &[9], OffsetSpec::Latest).await),
        ResponseError::UnknownTopicOrPartition
    );
    assert_eq!(
        broker_code(
            admin
                .list_offsets("missing", &[0], OffsetSpec::Latest)
                .await
        ),
        ResponseError::UnknownTopicOrPartition
    );
}

#[tokio::test]
async fn group_offsets_are_altered_listed_deleted_and_groups_deleted() {
    let broker = BrokerProcess::start(&[]).await;
    let admin = admin(&broker).await;
    admin
        .create_topic(NewTopic::new("g", 3))
        .await
        .expect("create");
    assert!(admin.list_groups().await.expect("list").is_empty());

    admin
        .alter_group_offsets(
            "billing",
            &[(("g".to_owned(), 0), 10), (("g".to_owned(), 2), 7)],
        )
        .await
        .expect("alter");
    let committed = admin.list_group_offsets("billing").await.expect("offsets");
    assert_eq!(
        committed,
        [
            (("g".to_owned(), 0), 10, Some(String::new())),
            (("g".to_owned(), 2), 7, Some(String::new()))
        ]
    );

    let groups = admin.list_groups().await.expect("list");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].group_id, "billing");
    assert_eq!(groups[0].state.as_deref(), Some("Empty"));

    let description = admin.describe_group("billing").await.expect("describe");
    assert_eq!(description.group_type, GroupType::Classic);
    assert_eq!(description.state, "Empty");
    assert!(description.members.is_empty());

    admin
        .delete_group_offsets("billing", &[("g".to_owned(), 0)])
        .await
        .expect("delete offsets");
    let committed = admin.list_group_offsets("billing").await.expect("offsets");
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0].0, ("g".to_owned(), 2));

    let deleted = admin
        .delete_groups(&["billing".to_owned(), "nobody".to_owned()])
        .await
        .expect("delete groups");
    assert_eq!(deleted[0].0, "billing");
    assert!(deleted[0].1.is_ok(), "{:?}", deleted[0].1);
    assert_eq!(deleted[1].0, "nobody");
    assert_eq!(
        broker_code(deleted.into_iter().nth(1).expect("two").1),
        ResponseError::GroupIdNotFound
    );
    assert!(admin.list_groups().await.expect("list").is_empty());
    assert_eq!(
        broker_code(admin.describe_group("billing").await),
        ResponseError::GroupIdNotFound
    );
}

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_owned()))
}

#[tokio::test]
async fn a_classic_group_is_described_with_its_members_assignment() {
    let broker = BrokerProcess::start(&[]).await;
    let admin = admin(&broker).await;
    admin
        .create_topic(NewTopic::new("cg", 2))
        .await
        .expect("create");
    let (coordinator_id, coordinator) = admin
        .cluster()
        .coordinator_node("workers")
        .await
        .expect("coordinator");
    let data = admin
        .cluster()
        .connection(coordinator_id)
        .await
        .expect("data");
    assert!(
        !std::sync::Arc::ptr_eq(&coordinator, &data),
        "group requests do not queue behind fetches"
    );
    let join_version = coordinator
        .version_for(ApiKey::JoinGroup)
        .expect("JoinGroup");
    let join = |member_id: StrBytes| {
        JoinGroupRequest::default()
            .with_group_id(group_id("workers"))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(member_id)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))])
    };
    let mut joined = coordinator
        .send(join(StrBytes::new()), join_version)
        .await
        .expect("join");
    if joined.error_code == ResponseError::MemberIdRequired.code() {
        joined = coordinator
            .send(join(joined.member_id.clone()), join_version)
            .await
            .expect("join again");
    }
    assert_eq!(joined.error_code, 0);

    let mut assignment = bytes::BytesMut::new();
    assignment.extend_from_slice(&0i16.to_be_bytes());
    ConsumerProtocolAssignment::default()
        .with_assigned_partitions(vec![consumer_protocol_assignment::TopicPartition::default(
        )
        .with_topic(topic_name("cg"))
        .with_partitions(vec![0, 1])])
        .encode(&mut assignment, 0)
        .expect("encode assignment");
    let sync_version = coordinator
        .version_for(ApiKey::SyncGroup)
        .expect("SyncGroup");
    let synced = coordinator
        .send(
            SyncGroupRequest::default()
                .with_group_id(group_id("workers"))
                .with_generation_id(joined.generation_id)
                .with_member_id(joined.member_id.clone())
                .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
                .with_protocol_name(Some(StrBytes::from_static_str("range")))
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(joined.member_id.clone())
                        .with_assignment(assignment.freeze()),
                ]),
            sync_version,
        )
        .await
        .expect("sync");
    assert_eq!(synced.error_code, 0);

    let description = admin.describe_group("workers").await.expect("describe");
    assert_eq!(description.group_type, GroupType::Classic);
    assert_eq!(description.state, "Stable");
    assert_eq!(description.protocol_type, "consumer");
    assert_eq!(description.protocol.as_deref(), Some("range"));
    assert_eq!(description.members.len(), 1);
    let member = &description.members[0];
    assert_eq!(member.member_id, joined.member_id.as_str());
    assert_eq!(member.client_id, "runnel-client");
    assert_eq!(member.assignment, [("cg".to_owned(), vec![0, 1])]);
    assert_eq!(member.assignment_error, None);

    // A group with members refuses deletion.
    let deleted = admin
        .delete_groups(&["workers".to_owned()])
        .await
        .expect("delete");
    assert_eq!(
        broker_code(deleted.into_iter().next().expect("one").1),
        ResponseError::NonEmptyGroup
    );
    // ...and a commit from outside it.
    assert!(admin
        .alter_group_offsets("workers", &[(("cg".to_owned(), 0), 1)])
        .await
        .is_err());
}

#[tokio::test]
async fn a_kip_848_group_is_described_with_consumer_group_describe() {
    let broker = BrokerProcess::start(&[]).await;
    let admin = admin(&broker).await;
    admin
        .create_topic(NewTopic::new("k", 2))
        .await
        .expect("create");
    let coordinator = admin
        .cluster()
        .coordinator("modern")
        .await
        .expect("coordinator");
    let version = coordinator
        .version_for(ApiKey::ConsumerGroupHeartbeat)
        .expect("ConsumerGroupHeartbeat served");
    let member_id = uuid::Uuid::new_v4().to_string();
    let heartbeat = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(group_id("modern"))
        .with_member_id(StrBytes::from_string(member_id.clone()))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![topic_name("k")]))
        .with_topic_partitions(Some(
            Vec::<consumer_group_heartbeat_request::TopicPartitions>::new(),
        ));
    let answer = coordinator
        .send(heartbeat, version)
        .await
        .expect("heartbeat");
    assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);

    let description = admin.describe_group("modern").await.expect("describe");
    assert_eq!(description.group_type, GroupType::Consumer);
    assert_eq!(description.protocol_type, "consumer");
    assert_eq!(description.members.len(), 1);
    let member = &description.members[0];
    assert_eq!(
        member.member_id,
        answer.member_id.as_deref().unwrap_or(&member_id)
    );
    assert_eq!(member.assignment, [("k".to_owned(), vec![0, 1])]);

    let listed = admin.list_groups().await.expect("list");
    assert_eq!(listed[0].group_type.as_deref(), Some("consumer"));
}

#[tokio::test]
async fn the_cluster_is_described() {
    let broker = BrokerProcess::start(&["--node-id", "7"]).await;
    let admin = admin(&broker).await;
    let description = admin.describe_cluster().await.expect("describe");
    assert_eq!(description.controller_id, Some(7));
    assert!(description.cluster_id.is_some());
    assert_eq!(description.cluster_id, admin.cluster().cluster_id());
    assert_eq!(description.brokers.len(), 1);
    let broker_info = &description.brokers[0];
    assert_eq!(broker_info.node_id, 7);
    assert_eq!(broker_info.address(), broker.address());
    assert_eq!(admin.cluster().brokers().await, description.brokers);
    assert_eq!(admin.cluster().controller_id(), Some(7));
}
