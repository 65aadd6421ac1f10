//! Request handlers, one module per group of APIs. Each takes the decoded request and returns
//! the response to encode; per-partition problems are error codes inside the response.

pub(crate) mod cluster;
pub(crate) mod configs;
pub(crate) mod fetch;
pub(crate) mod groups;
pub(crate) mod log_dirs;
mod long_poll;
pub(crate) mod offsets;
pub(crate) mod produce;
pub(crate) mod producers;
pub(crate) mod reassignments;
pub(crate) mod replica_fetch;
pub(crate) mod topics;
pub(crate) mod txn_markers;

#[cfg(test)]
pub(crate) mod every_version;

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use crate::broker::Broker;
use crate::error::ApiError;
use crate::partition::Partition;
use crate::topics::Topic;

/// KIP-951's node endpoints for the leaders `leaders` (`cluster::LeaderHint`s) names:
/// Produce and Fetch each have their own generated struct of the same fields.
macro_rules! node_endpoints {
    ($endpoint:ty, $leaders:expr) => {
        $leaders
            .into_iter()
            .map(|hint| {
                let mut endpoint = <$endpoint>::default();
                endpoint.node_id = kafka_protocol::messages::BrokerId(hint.leader);
                endpoint.host = kafka_protocol::protocol::StrBytes::from_string(hint.host);
                endpoint.port = hint.port;
                endpoint.rack = hint
                    .rack
                    .map(kafka_protocol::protocol::StrBytes::from_string);
                endpoint
            })
            .collect()
    };
}
pub(crate) use node_endpoints;

/// "Not requested" for authorized-operations fields.
pub(crate) const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Finds a partition by topic name, or says which error the partition's answer carries.
pub(crate) fn find_partition(
    broker: &Broker,
    topic: &str,
    partition: i32,
) -> Result<Arc<Partition>, ApiError> {
    broker
        .topics
        .get(topic)
        .and_then(|topic| topic.partition(partition))
        .ok_or(ApiError::code(ResponseError::UnknownTopicOrPartition))
}

/// Finds a topic by name, having the controller create it if auto-creation allows.
pub(crate) async fn ensure_topic(broker: &Arc<Broker>, name: &str) -> Option<Arc<Topic>> {
    if let Some(topic) = broker.topics.get(name) {
        return Some(topic);
    }
    let member = broker.cluster()?;
    if broker.config.auto_create_topics && runnel_controller::validate_topic_name(name).is_ok() {
        cluster::create_by_default(member, name).await;
    }
    broker.topics.get(name)
}

/// Finds a topic by id (newer request versions) or by name.
pub(crate) fn find_topic(broker: &Broker, name: &str, id: Uuid) -> Option<Arc<Topic>> {
    if id.is_nil() {
        broker.topics.get(name)
    } else {
        broker.topics.get_by_id(id)
    }
}
