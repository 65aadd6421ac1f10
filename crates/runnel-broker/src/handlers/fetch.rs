//! Fetch: read whole batches below the high watermark, long-polling until `min_bytes` have
//! arrived or `max_wait_ms` has passed. Waiting costs nothing: the fetch sleeps on the
//! partitions' high-watermark channels, woken by the append that moves one.

use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use runnel_storage::FetchSlice;
use tokio::sync::watch;
use tokio::time::Instant;

use super::find_topic;
use crate::broker::Broker;
use crate::error::ApiError;
use crate::topics::{Topic, LEADER_EPOCH};

const READ_COMMITTED: i8 = 1;

pub(crate) async fn fetch(broker: &Broker, version: i16, request: FetchRequest) -> FetchResponse {
    if version >= 7 {
        // Runnel creates no fetch sessions (KIP-227 lets a broker decline), so a client only
        // ever sends full requests; a session it names cannot exist.
        if request.session_id != 0 {
            return session_error(ResponseError::FetchSessionIdNotFound);
        }
        if request.session_epoch > 0 {
            return session_error(ResponseError::InvalidFetchSessionEpoch);
        }
    }
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = if request.max_bytes > 0 {
        request.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut shutdown = broker.shutdown_signal();
    loop {
        let mut watchers = Vec::new();
        let (response, bytes, has_error) =
            read_once(broker, version, &request, max_bytes, &mut watchers);
        if bytes >= min_bytes || has_error || watchers.is_empty() || Instant::now() >= deadline {
            return response;
        }
        let woken = select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.wait_for(|stop| *stop) => return response,
        }
    }
}

fn session_error(error: ResponseError) -> FetchResponse {
    let mut response = FetchResponse::default();
    response.error_code = error.code();
    response
}

/// One pass over the requested partitions. Subscribes to each partition's high watermark
/// before reading it, so an append between the read and the wait still wakes the fetch.
fn read_once(
    broker: &Broker,
    version: i16,
    request: &FetchRequest,
    max_bytes: usize,
    watchers: &mut Vec<watch::Receiver<i64>>,
) -> (FetchResponse, usize, bool) {
    let mut total_bytes = 0usize;
    let mut has_error = false;
    let mut topics = Vec::with_capacity(request.topics.len());
    for wanted in &request.topics {
        let topic = find_topic(broker, &wanted.topic, wanted.topic_id);
        let mut partitions = Vec::with_capacity(wanted.partitions.len());
        for fetch_partition in &wanted.partitions {
            let data = match &topic {
                Some(topic) => read_partition(
                    topic,
                    fetch_partition,
                    request.isolation_level,
                    max_bytes.saturating_sub(total_bytes),
                    total_bytes == 0,
                    version,
                    watchers,
                ),
                None => Err(ApiError::code(if version >= 13 {
                    ResponseError::UnknownTopicId
                } else {
                    ResponseError::UnknownTopicOrPartition
                })),
            };
            let data = data.unwrap_or_else(|error| {
                has_error = true;
                let mut data = empty_partition(fetch_partition.partition);
                data.error_code = error.error_code();
                data
            });
            total_bytes += data.records.as_ref().map_or(0, Bytes::len);
            partitions.push(data);
        }
        let mut topic_response = FetchableTopicResponse::default();
        topic_response.topic = wanted.topic.clone();
        topic_response.topic_id = wanted.topic_id;
        topic_response.partitions = partitions;
        topics.push(topic_response);
    }
    let mut response = FetchResponse::default();
    response.responses = topics;
    (response, total_bytes, has_error)
}

fn read_partition(
    topic: &Topic,
    wanted: &FetchPartition,
    isolation_level: i8,
    bytes_left: usize,
    first_with_data: bool,
    version: i16,
    watchers: &mut Vec<watch::Receiver<i64>>,
) -> Result<PartitionData, ApiError> {
    let partition = topic
        .partition(wanted.partition)
        .ok_or(ApiError::code(ResponseError::UnknownTopicOrPartition))?;
    check_leader_epoch(wanted.current_leader_epoch)?;
    watchers.push(partition.subscribe_high_watermark());
    let high_watermark = partition.high_watermark();
    let limit = bytes_left.min(wanted.partition_max_bytes.max(0) as usize);
    let (slice, log_start_offset): (FetchSlice, i64) = partition.with_log(|log| {
        let slice = log.read(wanted.fetch_offset, high_watermark, limit, first_with_data)?;
        Ok((slice, log.log_start_offset()))
    })?;
    // The read happens outside the partition lock: appends need not wait for it.
    let records = slice.read().map_err(|error| {
        ApiError::storage(format!(
            "reading {}-{}: {error}",
            topic.name, wanted.partition
        ))
    })?;
    let mut data = empty_partition(wanted.partition);
    data.high_watermark = high_watermark;
    data.last_stable_offset = high_watermark;
    if version >= 5 {
        data.log_start_offset = log_start_offset;
    }
    if isolation_level == READ_COMMITTED {
        data.aborted_transactions = Some(Vec::new());
    }
    data.records = Some(records);
    Ok(data)
}

/// KIP-320: a client that knows a newer epoch than ours is ahead of us; an older one is stale.
pub(crate) fn check_leader_epoch(current_leader_epoch: i32) -> Result<(), ApiError> {
    match current_leader_epoch {
        -1 => Ok(()),
        epoch if epoch > LEADER_EPOCH => Err(ApiError::code(ResponseError::UnknownLeaderEpoch)),
        epoch if epoch < LEADER_EPOCH => Err(ApiError::code(ResponseError::FencedLeaderEpoch)),
        _ => Ok(()),
    }
}

fn empty_partition(index: i32) -> PartitionData {
    let mut data = PartitionData::default();
    data.partition_index = index;
    data.high_watermark = -1;
    data
}
