//! Produce: validate each partition's batches, give them offsets, append, and acknowledge per
//! `acks` (fsyncing first where the flush policy asks for it).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use runnel_record::{RecordBatch, RecordBatchHeader};

use super::{find_or_create_topic, find_topic};
use crate::broker::{now_ms, Broker};
use crate::error::ApiError;
use crate::topics::Topic;

/// The replicas a partition has in sync on a single node.
const IN_SYNC_REPLICAS: i32 = 1;

/// Returns `None` for acks=0, where the client expects no response.
pub(crate) async fn produce(
    broker: &Broker,
    version: i16,
    request: ProduceRequest,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        // Kafka creates missing topics from Metadata; Runnel also does from Produce (by name),
        // so a producer that skips the metadata round trip still lands its records.
        let topic = if topic_data.topic_id.is_nil() {
            find_or_create_topic(broker, &topic_data.name)
        } else {
            find_topic(broker, &topic_data.name, topic_data.topic_id)
        };
        let mut partition_responses = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let index = data.index;
            let result = match &topic {
                Some(topic) => produce_partition(topic, acks, data).await,
                None if version >= 13 => Err(ApiError::code(ResponseError::UnknownTopicId)),
                None => Err(ApiError::code(ResponseError::UnknownTopicOrPartition)),
            };
            partition_responses.push(partition_response(version, index, result));
        }
        let mut topic_response = TopicProduceResponse::default();
        topic_response.name = topic_data.name;
        topic_response.topic_id = topic_data.topic_id;
        topic_response.partition_responses = partition_responses;
        responses.push(topic_response);
    }
    if acks == 0 {
        return None;
    }
    let mut response = ProduceResponse::default();
    response.responses = responses;
    Some(response)
}

struct Appended {
    base_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
}

async fn produce_partition(
    topic: &Topic,
    acks: i16,
    data: PartitionProduceData,
) -> Result<Appended, ApiError> {
    if topic.is_internal() {
        return Err(ApiError::new(
            ResponseError::InvalidTopicException,
            format!("Cannot append to internal topic {}", topic.name),
        ));
    }
    let partition = topic
        .partition(data.index)
        .ok_or(ApiError::code(ResponseError::UnknownTopicOrPartition))?;
    if !matches!(acks, -1..=1) {
        return Err(ApiError::new(
            ResponseError::InvalidRequiredAcks,
            format!("acks must be -1, 0 or 1, got {acks}"),
        ));
    }
    let settings = topic.settings();
    if acks == -1 && IN_SYNC_REPLICAS < settings.min_insync_replicas {
        return Err(ApiError::new(
            ResponseError::NotEnoughReplicas,
            format!(
                "min.insync.replicas is {} but only {IN_SYNC_REPLICAS} replica is in sync",
                settings.min_insync_replicas
            ),
        ));
    }
    let records = data
        .records
        .filter(|records| !records.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                ResponseError::InvalidRecord,
                "produce request carries no records",
            )
        })?;
    let headers = RecordBatch::validate_all(&records)?;
    check_batches(&headers, settings.max_message_bytes)?;

    // Offsets are written into the batches, so they need a private, mutable copy.
    let mut batches = records.to_vec();
    let now = now_ms();
    let log_append_time_ms = if settings.log_append_time {
        let mut position = 0;
        for header in &headers {
            let end = position + header.total_len();
            RecordBatch::set_log_append_time(&mut batches[position..end], now);
            position = end;
        }
        now
    } else {
        -1
    };
    let info = partition.append(&mut batches, now)?;
    if acks != 0 && partition.sync_required_before_ack() {
        partition.sync_to(info.last_offset + 1).await?;
    }
    let log_start_offset = partition.with_log(|log| Ok(log.log_start_offset()))?;
    Ok(Appended {
        base_offset: info.base_offset,
        log_append_time_ms,
        log_start_offset,
    })
}

/// Checks beyond framing and CRC: sizes and header consistency.
fn check_batches(headers: &[RecordBatchHeader], max_message_bytes: usize) -> Result<(), ApiError> {
    for header in headers {
        if header.total_len() > max_message_bytes {
            return Err(ApiError::new(
                ResponseError::MessageTooLarge,
                format!(
                    "record batch of {} bytes exceeds max.message.bytes ({max_message_bytes})",
                    header.total_len()
                ),
            ));
        }
        if header.records_count == 0 || header.last_offset_delta != header.records_count - 1 {
            return Err(ApiError::new(
                ResponseError::InvalidRecord,
                format!(
                    "record batch claims {} records but a last offset delta of {}",
                    header.records_count, header.last_offset_delta
                ),
            ));
        }
        if header.is_control() {
            return Err(ApiError::new(
                ResponseError::InvalidRecord,
                "clients may not produce control batches",
            ));
        }
        if header.producer_id >= 0 || header.is_transactional() {
            return Err(ApiError::new(
                ResponseError::InvalidRecord,
                "idempotent and transactional producers are not supported yet; set enable.idempotence=false",
            ));
        }
    }
    Ok(())
}

fn partition_response(
    version: i16,
    index: i32,
    result: Result<Appended, ApiError>,
) -> PartitionProduceResponse {
    let mut response = PartitionProduceResponse::default();
    response.index = index;
    match result {
        Ok(appended) => {
            response.base_offset = appended.base_offset;
            response.log_append_time_ms = appended.log_append_time_ms;
            if version >= 5 {
                response.log_start_offset = appended.log_start_offset;
            }
        }
        Err(error) => {
            response.error_code = error.error_code();
            if version >= 8 {
                response.error_message = error.message_str();
            }
            response.base_offset = -1;
        }
    }
    response
}
