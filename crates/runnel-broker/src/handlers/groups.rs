//! FindCoordinator and the group APIs, which the group service answers.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_controller::{MetadataImage, NewTopic};
use runnel_group::transactions::TRANSACTION_STATE_TOPIC;
use runnel_group::GroupCoordinator;
use runnel_quorum::ControllerRequest;

use crate::broker::Broker;
use crate::cluster::ClusterMember;
use crate::groups::OFFSETS_TOPIC;

/// Kafka's `offsets.topic.replication.factor` and `transaction.state.log.replication.factor`.
const INTERNAL_TOPIC_REPLICATION_FACTOR: usize = 3;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// A group's coordinator is the leader of its partition of `__consumer_offsets` (created through the
/// controller by the first FindCoordinator that needs it, as Kafka does), and a transactional
/// id's the leader of its partition of `__transaction_state`. Share groups (key type 2) are
/// not served.
pub(crate) async fn find_coordinator(
    broker: &Broker,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let keys: Vec<StrBytes> = if version < 4 {
        vec![request.key.clone()]
    } else {
        request.coordinator_keys.clone()
    };
    let mut answers = Vec::with_capacity(keys.len());
    for key in &keys {
        answers.push(coordinator_for(broker, request.key_type, key).await);
    }
    let mut response = FindCoordinatorResponse::default();
    if version < 4 {
        match answers.pop().unwrap_or(Err(NOT_AVAILABLE)) {
            Ok((node, host, port)) => {
                response.node_id = BrokerId(node);
                response.host = host;
                response.port = port;
            }
            Err((code, message)) => {
                response.error_code = code;
                response.node_id = BrokerId(-1);
                if version >= 1 {
                    response.error_message = Some(StrBytes::from_static_str(message));
                }
            }
        }
        return response;
    }
    response.coordinators = keys
        .into_iter()
        .zip(answers)
        .map(|(key, answer)| {
            let mut coordinator = Coordinator::default();
            coordinator.key = key;
            match answer {
                Ok((node, host, port)) => {
                    coordinator.node_id = BrokerId(node);
                    coordinator.host = host;
                    coordinator.port = port;
                }
                Err((code, message)) => {
                    coordinator.error_code = code;
                    coordinator.node_id = BrokerId(-1);
                    coordinator.port = -1;
                    coordinator.error_message = Some(StrBytes::from_static_str(message));
                }
            }
            coordinator
        })
        .collect();
    response
}

type Endpoint = (i32, StrBytes, i32);
type Refusal = (i16, &'static str);

const NOT_AVAILABLE: Refusal = (
    ResponseError::CoordinatorNotAvailable.code(),
    "no broker of the cluster is available to coordinate",
);

/// The broker that coordinates `key`: id, host and port.
async fn coordinator_for(broker: &Broker, key_type: i8, key: &str) -> Result<Endpoint, Refusal> {
    if !matches!(key_type, KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION) {
        return Err((
            ResponseError::InvalidRequest.code(),
            "unknown coordinator key type",
        ));
    }
    let member = broker.cluster().ok_or((
        ResponseError::CoordinatorNotAvailable.code(),
        "this broker has not joined its cluster yet",
    ))?;
    let internal = if key_type == KEY_TYPE_TRANSACTION {
        InternalTopic::transaction_state(broker)
    } else {
        InternalTopic::offsets(broker)
    };
    ensure_internal_topic(member, &internal).await;
    let image = member.image();
    let topic = image.topic_by_name(internal.name).ok_or(NOT_AVAILABLE)?;
    let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    let index = GroupCoordinator::partition_for(key, count);
    let leader = topic
        .partitions
        .get(&index)
        .map(|state| state.leader)
        .filter(|&leader| leader >= 0 && image.is_usable(leader))
        .ok_or(NOT_AVAILABLE)?;
    endpoint(&image, leader).ok_or(NOT_AVAILABLE)
}

fn endpoint(image: &MetadataImage, id: i32) -> Option<Endpoint> {
    let listener = image.broker(id)?.registration.listeners.first()?;
    Some((
        id,
        StrBytes::from_string(listener.host.clone()),
        i32::from(listener.port),
    ))
}

/// An internal topic a coordinator keeps its state in, as the controller is asked to create
/// it: compacted, replicated on up to three brokers (Kafka's `offsets.topic.replication.factor`
/// and `transaction.state.log.replication.factor`, capped at the brokers there are, so that a
/// small cluster still gets groups and transactions).
struct InternalTopic {
    name: &'static str,
    partitions: i32,
    segment_bytes: i64,
    /// `transaction.state.log.min.isr`: 2 for transaction state, the topic default otherwise.
    min_insync_replicas: Option<i32>,
}

impl InternalTopic {
    fn offsets(broker: &Broker) -> InternalTopic {
        InternalTopic {
            name: OFFSETS_TOPIC,
            partitions: broker.config.offsets_topic_num_partitions,
            segment_bytes: broker.config.offsets_topic_segment_bytes,
            min_insync_replicas: None,
        }
    }

    fn transaction_state(broker: &Broker) -> InternalTopic {
        InternalTopic {
            name: TRANSACTION_STATE_TOPIC,
            partitions: broker.config.transaction_state_log_num_partitions,
            segment_bytes: broker.config.transaction_state_log_segment_bytes,
            min_insync_replicas: Some(2),
        }
    }
}

/// Has the controller create `__consumer_offsets` if the cluster has none yet: AddOffsetsToTxn
/// names a partition of it, and may come before anyone looked for a group's coordinator.
pub(crate) async fn ensure_offsets_topic(broker: &Broker) {
    if let Some(member) = broker.cluster() {
        ensure_internal_topic(member, &InternalTopic::offsets(broker)).await;
    }
}

/// Has the controller create `topic` unless the image has it, as the first FindCoordinator
/// that needs it does in Kafka.
async fn ensure_internal_topic(member: &ClusterMember, topic: &InternalTopic) {
    if member.image().topic_by_name(topic.name).is_some() {
        return;
    }
    let usable = member
        .image()
        .brokers()
        .filter(|registered| registered.is_usable())
        .count();
    let replication_factor =
        i16::try_from(usable.clamp(1, INTERNAL_TOPIC_REPLICATION_FACTOR)).unwrap_or(1);
    let mut configs = vec![
        ("cleanup.policy".to_owned(), "compact".to_owned()),
        ("segment.bytes".to_owned(), topic.segment_bytes.to_string()),
    ];
    if let Some(min_insync) = topic.min_insync_replicas {
        configs.push(("min.insync.replicas".to_owned(), min_insync.to_string()));
    }
    let request = ControllerRequest::CreateTopic {
        topic: NewTopic {
            name: topic.name.to_owned(),
            partitions: topic.partitions,
            replication_factor,
            assignments: Vec::new(),
            configs,
        },
        validate_only: false,
    };
    if let Err(error) = member.commit(request).await {
        // Another broker may have created it first; the image tells.
        tracing::debug!(topic = topic.name, error = ?error.message, "could not create an internal topic");
    }
}
