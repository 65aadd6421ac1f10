//! WriteTxnMarkers: the transaction coordinator of another broker ends a producer's
//! transaction in the partitions this broker leads. Each marker is written as the coordinator
//! would write it here (`transactions::write_marker`: as durably as an `acks=all` produce, and
//! at a `__consumer_offsets` partition the group coordinator then installs or drops the
//! offsets committed in the transaction). Each partition is answered on its own; the
//! coordinator tries again later for those refused.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::WritableTxnMarker;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use crate::broker::Broker;
use crate::error::ApiError;
use crate::partition::not_leader;
use crate::transactions::write_marker;

pub(crate) async fn write_txn_markers(
    broker: &Arc<Broker>,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let mut response = WriteTxnMarkersResponse::default();
    for marker in request.markers {
        let mut result = WritableTxnMarkerResult::default();
        result.producer_id = marker.producer_id;
        for topic in &marker.topics {
            let mut topic_result = WritableTxnMarkerTopicResult::default();
            topic_result.name = topic.name.clone();
            for &index in &topic.partition_indexes {
                let mut partition = WritableTxnMarkerPartitionResult::default();
                partition.partition_index = index;
                partition.error_code = match write_one(broker, &topic.name, index, &marker).await {
                    Ok(()) => 0,
                    Err(error) => error.error_code(),
                };
                topic_result.partitions.push(partition);
            }
            result.topics.push(topic_result);
        }
        response.markers.push(result);
    }
    response
}

async fn write_one(
    broker: &Arc<Broker>,
    topic: &TopicName,
    index: i32,
    marker: &WritableTxnMarker,
) -> Result<(), ApiError> {
    let partition = broker
        .topics
        .get(topic)
        .and_then(|topic| topic.partition(index))
        .ok_or(ApiError::code(ResponseError::UnknownTopicOrPartition))?;
    if !partition.leads() {
        return Err(not_leader());
    }
    let producer = (marker.producer_id.0, marker.producer_epoch);
    let outcome = (marker.transaction_result, marker.coordinator_epoch);
    broker
        .blocking_until_replicated(move |broker| {
            write_marker(broker, &partition, producer, outcome, broker.now_ms())
        })
        .await?
}
