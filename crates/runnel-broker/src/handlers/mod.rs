//! Request handlers, one module per group of APIs. Each takes the decoded request and returns
//! the response to encode; per-partition problems are error codes inside the response.

pub(crate) mod cluster;
pub(crate) mod configs;
pub(crate) mod fetch;
pub(crate) mod log_dirs;
pub(crate) mod offsets;
pub(crate) mod produce;
pub(crate) mod topics;

#[cfg(test)]
mod every_version;

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use crate::broker::Broker;
use crate::error::ApiError;
use crate::topics::{Partition, Topic};

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

/// Finds a topic by id (newer request versions) or by name.
pub(crate) fn find_topic(broker: &Broker, name: &str, id: Uuid) -> Option<Arc<Topic>> {
    if id.is_nil() {
        broker.topics.get(name)
    } else {
        broker.topics.get_by_id(id)
    }
}
