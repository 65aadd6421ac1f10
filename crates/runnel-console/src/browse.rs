//! The message browser: a few records of a topic, read as any consumer reads them.
//!
//! Each browse is a `Consumer` with manual assignment and no group (so it commits nothing and
//! joins nothing): the partitions' log start offsets and high watermarks are looked up first
//! (one ListOffsets per leader), each partition is sought to where the browse starts (its
//! oldest record, far enough before its end for its share of the newest ones, an offset,
//! or the first record at a time), and records are polled until every partition reached the end it had
//! when the browse began. Records produced meanwhile are not waited for.
//!
//! A browse is bounded however large the topic: at most `limit` records and `max_bytes`
//! bytes kept, `scan` records looked at (a search by key reads a window and keeps the
//! matches), [`DEADLINE`] of time, and the consumer fetches at most `max_bytes` per
//! response. Values are shown cut to [`VALUE_DISPLAY_MAX`] characters (`render`). The
//! console runs at most a few browses at once (`lib.rs`), so a crowd of browsers cannot
//! exhaust the broker's memory either.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use runnel_client::{
    ClientError, Cluster, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, TopicMetadata,
    TopicPartition,
};
use serde::Serialize;
use tokio::time::Instant;

use crate::batch::{self, Tp, EARLIEST, LATEST};
use crate::error::ApiError;
use crate::render::{render, Rendered};
use crate::validate::{Browse, Start};

/// How long one browse may read.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);
/// Characters of a value shown; the record's size is shown beside it.
pub(crate) const VALUE_DISPLAY_MAX: usize = 64 * 1024;
/// Characters of a key or a header's value shown.
pub(crate) const KEY_DISPLAY_MAX: usize = 4 * 1024;
/// The consumer's per-partition fetch size: small, since a page shows few records.
const PARTITION_FETCH_BYTES: usize = 1024 * 1024;

/// One record as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Message {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// Milliseconds since the epoch.
    pub(crate) timestamp: i64,
    /// `CreateTime` or `LogAppendTime`.
    pub(crate) timestamp_type: String,
    pub(crate) key: Rendered,
    pub(crate) value: Rendered,
    pub(crate) headers: Vec<Header>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Header {
    pub(crate) key: String,
    pub(crate) value: Rendered,
}

/// Where one partition was read.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PartitionRange {
    pub(crate) partition: i32,
    pub(crate) log_start: i64,
    pub(crate) high_watermark: i64,
    /// Where the browse started reading it.
    pub(crate) from: i64,
}

/// Why the browse stopped reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Stopped {
    /// Every partition was read up to its end.
    End,
    /// `limit` records were found.
    Limit,
    /// Keeping the next record would pass `max_bytes`.
    MaxBytes,
    /// `scan` records were looked at.
    Scan,
    /// [`DEADLINE`] passed.
    Time,
}

/// A browse's answer.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Browsed {
    pub(crate) messages: Vec<Message>,
    /// Records looked at (more than `messages` for a search by key).
    pub(crate) scanned: usize,
    /// Bytes of keys, values and headers kept.
    pub(crate) bytes: usize,
    pub(crate) stopped: Stopped,
    pub(crate) partitions: Vec<PartitionRange>,
}

/// How many of the newest `total` records each partition gives, for partitions holding
/// `counts` records: partitions with few records give all they have, the rest share what is
/// left evenly, so that the browse shows `total` records (or all there are) however unevenly
/// the topic is spread. Without timestamps read yet, this is the best guess of which records
/// are the newest; the browse keeps the newest `limit` of what it read.
pub(crate) fn newest_shares(counts: &[i64], total: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by_key(|&i| counts[i]);
    let mut shares = vec![0; counts.len()];
    let mut left = total;
    for (rank, &i) in order.iter().enumerate() {
        let fair = left.div_ceil(counts.len() - rank);
        let has = usize::try_from(counts[i].max(0)).unwrap_or(usize::MAX);
        shares[i] = fair.min(has);
        left -= shares[i];
    }
    shares
}

/// Where to start reading a partition that holds `[log_start, end)`; `at_time` is what
/// ListOffsets found for a timestamp (-1: no record that late). `per_partition` is how many
/// records the newest ones take from it (`newest_shares`).
pub(crate) fn start_offset(
    start: Start,
    log_start: i64,
    end: i64,
    at_time: Option<i64>,
    per_partition: usize,
) -> i64 {
    let from = match start {
        Start::Oldest => log_start,
        Start::Newest => end.saturating_sub(i64::try_from(per_partition).unwrap_or(i64::MAX)),
        Start::Offset(offset) => offset,
        Start::Timestamp(_) => match at_time {
            Some(offset) if offset >= 0 => offset,
            _ => end,
        },
    };
    from.clamp(log_start, end.max(log_start))
}

/// Reads what `browse` asks of `topic`.
pub(crate) async fn run(
    bootstrap: &str,
    cluster: &Cluster,
    topic: &TopicMetadata,
    browse: &Browse,
) -> Result<Browsed, ApiError> {
    let partitions: Vec<i32> = match browse.partition {
        Some(partition) if topic.partition(partition).is_some() => vec![partition],
        Some(partition) => {
            return Err(ApiError::not_found(format!(
                "topic {:?} has no partition {partition} (it has {})",
                topic.name,
                topic.partitions.len()
            )))
        }
        None => topic.partitions.iter().map(|p| p.partition).collect(),
    };
    let wanted: Vec<Tp> = partitions
        .iter()
        .map(|&p| (topic.name.clone(), p))
        .collect();
    let topics = std::slice::from_ref(topic);
    let at_time = async {
        match browse.start {
            Start::Timestamp(at) => Some(batch::list_offsets(cluster, topics, &wanted, at).await),
            _ => None,
        }
    };
    let (starts, ends, at_time) = tokio::join!(
        batch::list_offsets(cluster, topics, &wanted, EARLIEST),
        batch::list_offsets(cluster, topics, &wanted, LATEST),
        at_time,
    );
    let mut known = Vec::with_capacity(wanted.len());
    for tp in &wanted {
        let (Some(&log_start), Some(&end)) = (starts.get(tp), ends.get(tp)) else {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the offsets of {} partition {} are unknown: its leader did not answer",
                    tp.0, tp.1
                ),
            ));
        };
        known.push((tp, log_start, end));
    }
    // The newest records of several partitions: a share of the window from each.
    let counts: Vec<i64> = known.iter().map(|(_, start, end)| end - start).collect();
    let shares = newest_shares(&counts, browse.scan);
    let mut ranges = Vec::with_capacity(known.len());
    for ((tp, log_start, end), share) in known.into_iter().zip(shares) {
        let found = at_time.as_ref().and_then(|found| found.get(tp).copied());
        ranges.push(PartitionRange {
            partition: tp.1,
            log_start,
            high_watermark: end,
            from: start_offset(browse.start, log_start, end, found, share),
        });
    }
    let mut browsed = Browsed {
        messages: Vec::new(),
        scanned: 0,
        bytes: 0,
        stopped: Stopped::End,
        partitions: ranges,
    };
    let to_read: Vec<&PartitionRange> = browsed
        .partitions
        .iter()
        .filter(|range| range.from < range.high_watermark)
        .collect();
    if !to_read.is_empty() {
        let ends: BTreeMap<i32, i64> = to_read
            .iter()
            .map(|range| (range.partition, range.high_watermark))
            .collect();
        let starts: Vec<(i32, i64)> = to_read.iter().map(|r| (r.partition, r.from)).collect();
        let consumer = Consumer::connect(consumer_config(bootstrap, browse.max_bytes)).await?;
        let read = read(&consumer, &topic.name, &starts, ends, browse).await;
        if let Err(error) = consumer.close().await {
            tracing::debug!(%error, "closing the browser's consumer");
        }
        let (messages, scanned, bytes, stopped) = read?;
        browsed.messages = messages;
        browsed.scanned = scanned;
        browsed.bytes = bytes;
        browsed.stopped = stopped;
    }
    browsed
        .messages
        .sort_by_key(|m| (m.timestamp, m.partition, m.offset));
    if browse.start == Start::Newest && browsed.messages.len() > browse.limit {
        let extra = browsed.messages.len() - browse.limit;
        browsed.messages.drain(..extra);
    }
    Ok(browsed)
}

fn consumer_config(bootstrap: &str, max_bytes: usize) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(bootstrap);
    config.client.client_id = "runnel-console".to_owned();
    config.client.request_timeout = Duration::from_secs(10);
    config.client.connect_timeout = Duration::from_secs(5);
    config.auto_offset_reset = OffsetReset::Earliest;
    config.enable_auto_commit = false;
    // A response carries at most what the browse may keep (a broker still sends one whole
    // batch larger than that, as Kafka's does, so that a consumer never gets stuck).
    let fetch = max_bytes.max(64 * 1024);
    config.fetch_max_bytes = i32::try_from(fetch).unwrap_or(i32::MAX);
    config.max_partition_fetch_bytes =
        i32::try_from(fetch.min(PARTITION_FETCH_BYTES)).unwrap_or(i32::MAX);
    // Every partition read has records up to its end: a fetch need not wait for more.
    config.fetch_max_wait = Duration::from_millis(100);
    config
}

type Read = (Vec<Message>, usize, usize, Stopped);

async fn read(
    consumer: &Consumer,
    topic: &str,
    starts: &[(i32, i64)],
    mut ends: BTreeMap<i32, i64>,
    browse: &Browse,
) -> Result<Read, ApiError> {
    let tps: Vec<TopicPartition> = starts
        .iter()
        .map(|&(partition, _)| TopicPartition::new(topic, partition))
        .collect();
    consumer.assign(tps.clone()).await?;
    for (tp, &(_, from)) in tps.iter().zip(starts) {
        consumer.seek(tp, from).await?;
    }
    let deadline = Instant::now() + DEADLINE;
    // Each kept message with its size, so that one let go gives its bytes back.
    let mut kept: VecDeque<(Message, usize)> = VecDeque::new();
    let (mut scanned, mut bytes) = (0usize, 0usize);
    // Under `newest`, every partition gives its share: the record count alone does not stop
    // the browse, the share each partition was sought back by does. A key search under
    // `newest` reads its whole window and keeps the newest matches: the first ones found are
    // the oldest.
    let newest = browse.start == Start::Newest;
    loop {
        if ends.is_empty() {
            return Ok(finish(kept, scanned, bytes, Stopped::End));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(finish(kept, scanned, bytes, Stopped::Time));
        }
        let records = match consumer.poll(left.min(Duration::from_secs(1))).await {
            Ok(records) => records,
            Err(ClientError::Timeout { .. }) => continue,
            Err(error) => return Err(error.into()),
        };
        for record in records {
            let Some(&end) = ends.get(&record.partition) else {
                continue;
            };
            if record.offset >= end {
                continue;
            }
            scanned += 1;
            let matches = match &browse.key {
                Some(key) => record.key.as_deref() == Some(key.as_slice()),
                None => true,
            };
            if matches {
                let size = record_size(&record);
                if bytes + size > browse.max_bytes && !kept.is_empty() {
                    return Ok(finish(kept, scanned, bytes, Stopped::MaxBytes));
                }
                bytes += size;
                kept.push_back((message(&record), size));
                if !newest && kept.len() >= browse.limit {
                    return Ok(finish(kept, scanned, bytes, Stopped::Limit));
                }
                if newest && browse.key.is_some() && kept.len() > browse.limit {
                    // Read oldest first: the first kept is the one to let go.
                    if let Some((_, size)) = kept.pop_front() {
                        bytes -= size;
                    }
                }
            }
            if browse.key.is_some() && scanned >= browse.scan {
                return Ok(finish(kept, scanned, bytes, Stopped::Scan));
            }
        }
        // A partition is done once the consumer's position passed its end: its last
        // records may be gaps (compaction, transaction markers) no record stands for.
        let mut done = Vec::new();
        for (&partition, &end) in &ends {
            let position = consumer
                .position(&TopicPartition::new(topic, partition))
                .await?;
            if position >= end {
                done.push(partition);
            }
        }
        for partition in done {
            ends.remove(&partition);
            consumer.pause(&[TopicPartition::new(topic, partition)])?;
        }
    }
}

/// The bytes a record holds: key, value, and headers' keys and values.
fn record_size(record: &ConsumerRecord) -> usize {
    let headers: usize = record
        .headers
        .iter()
        .map(|(key, value)| key.len() + value.as_ref().map_or(0, |v| v.len()))
        .sum();
    record.key.as_ref().map_or(0, |k| k.len())
        + record.value.as_ref().map_or(0, |v| v.len())
        + headers
}

/// What `read` returns once it stops: the messages kept, in the order read.
fn finish(
    kept: VecDeque<(Message, usize)>,
    scanned: usize,
    bytes: usize,
    stopped: Stopped,
) -> Read {
    let messages = kept.into_iter().map(|(message, _)| message).collect();
    (messages, scanned, bytes, stopped)
}

fn message(record: &ConsumerRecord) -> Message {
    Message {
        partition: record.partition,
        offset: record.offset,
        timestamp: record.timestamp,
        timestamp_type: format!("{:?}", record.timestamp_type),
        key: render(record.key.as_deref(), KEY_DISPLAY_MAX),
        value: render(record.value.as_deref(), VALUE_DISPLAY_MAX),
        headers: record
            .headers
            .iter()
            .map(|(key, value)| Header {
                key: key.clone(),
                value: render(value.as_deref(), KEY_DISPLAY_MAX),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_window_is_shared_by_what_partitions_hold() {
        assert_eq!(newest_shares(&[100, 100], 4), [2, 2]);
        // An empty partition leaves its share to the others.
        assert_eq!(newest_shares(&[100, 0], 4), [4, 0]);
        assert_eq!(newest_shares(&[1, 50, 50], 10), [1, 5, 4]);
        // Fewer records than the window: all of them.
        assert_eq!(newest_shares(&[2, 3], 50), [2, 3]);
        assert_eq!(newest_shares(&[7, 7, 7], 5).iter().sum::<usize>(), 5);
        assert!(newest_shares(&[], 5).is_empty());
    }

    #[test]
    fn starts_are_clamped_to_what_the_partition_holds() {
        // The partition holds [100, 200).
        let at = |start, found| start_offset(start, 100, 200, found, 30);
        assert_eq!(at(Start::Oldest, None), 100);
        assert_eq!(at(Start::Newest, None), 170);
        assert_eq!(at(Start::Offset(150), None), 150);
        assert_eq!(at(Start::Offset(5), None), 100);
        assert_eq!(at(Start::Offset(10_000), None), 200);
        assert_eq!(at(Start::Timestamp(1), Some(120)), 120);
        // No record that late: nothing to read.
        assert_eq!(at(Start::Timestamp(1), Some(-1)), 200);
        assert_eq!(at(Start::Timestamp(1), None), 200);
        // Fewer records than the share: from the start.
        assert_eq!(start_offset(Start::Newest, 100, 110, None, 30), 100);
        // An empty partition.
        assert_eq!(start_offset(Start::Newest, 0, 0, None, 30), 0);
    }
}
