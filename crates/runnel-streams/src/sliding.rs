//! Sliding windows (KIP-450), aggregated through [`crate::TimeWindowedKStream`] as Kafka's
//! are: a window of a fixed time difference ending at each record, and
//! one starting just after it, as Kafka Streams' sliding windows are. Two records fall in a
//! common window exactly when their timestamps are at most the difference apart, and the
//! windows that exist are those some record's arrival makes distinct: for each record at
//! `t`, its left window `[t - difference, t]` (`[0, difference]` for a record earlier than
//! that) and, if a later record falls in it, its right window `[t + 1, t + 1 + difference]`.
//! Bounds are inclusive.
//!
//! Each key's records are kept (in a store of their own, `<store>-records`, with its
//! changelog) for as long as an open window may hold them: a window's result is the fold of
//! the records it holds, recomputed when a record lands in it, and its timestamp the latest
//! of theirs. A window is open until stream time passes its end by more than the grace; a
//! record for no open window is dropped and counted, as Kafka Streams does.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::error::StreamsError;
use crate::grouped::{store_name, Fold, KGroupedStream};
use crate::processor::{Downstream, Instances, Node, Record, Shared, TaskContext};
use crate::serdes::Serde;
use crate::table::{Change, KTable};
use crate::topology::describe;
use crate::window::{
    check_lengths, emit_closed, i64_at, store_key, windowed_key, EmitStrategy, EndOf, WindowBook,
    Windowed, WindowedSerde,
};

/// Windows of `difference` milliseconds (both ends included) sliding with the records,
/// taking late records for `grace` milliseconds of stream time after they end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    difference: i64,
    grace: i64,
}

impl SlidingWindows {
    /// Sliding windows of `difference_ms` that close as soon as stream time passes them.
    pub fn of_time_difference_with_no_grace(difference_ms: i64) -> Self {
        SlidingWindows::of_time_difference_and_grace(difference_ms, 0)
    }

    /// Sliding windows of `difference_ms`, taking late records for `grace_ms` more.
    ///
    /// # Panics
    /// If the difference is not positive or the grace is negative: a topology bug, found
    /// when it is described.
    pub fn of_time_difference_and_grace(difference_ms: i64, grace_ms: i64) -> Self {
        check_lengths(
            "a sliding window's time difference",
            difference_ms,
            grace_ms,
        );
        SlidingWindows {
            difference: difference_ms,
            grace: grace_ms,
        }
    }

    /// The serde of the windowed keys these windows' results have: the key's bytes and the
    /// window's start, its end being the start plus the difference.
    pub fn windowed_serde<K, S: Serde<K>>(&self, key: S) -> WindowedSerde<S> {
        WindowedSerde::with_size(key, self.difference)
    }
}

/// A sliding-window aggregation of `grouped`: `fold` of each window's records, kept in
/// store `name` (and its records in `<name>-records`) with serde `result`.
pub(crate) fn aggregate_sliding<K, V, A>(
    grouped: &KGroupedStream<K, V>,
    windows: SlidingWindows,
    emit: EmitStrategy,
    fold: Fold<K, V, A>,
    result: Arc<dyn Serde<A>>,
    name: Option<String>,
) -> KTable<Windowed<K>, A>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
    A: Clone + Send + 'static,
{
    let description = grouped.stream.description();
    let store = store_name(description, name, "KSTREAM-AGGREGATE");
    let records = format!("{store}-records");
    describe(description).add_store(&records);
    let input = grouped.input(&store);
    let key = Arc::clone(&grouped.grouped.key);
    let value = Arc::clone(&grouped.grouped.value);
    let table_key: Arc<dyn Serde<Windowed<K>>> = Arc::new(windows.windowed_serde(Arc::clone(&key)));
    let emitted = WindowBook::register(description, &store, emit);
    let difference = windows.difference;
    let window_end: EndOf = Arc::new(move |at: &[u8]| {
        let start = i64_at(at, at.len().checked_sub(8)?)?;
        Some(start.saturating_add(difference))
    });
    let record_time: EndOf = Arc::new(|at: &[u8]| Some(split_record_key(at)?.1));
    let (store_name, node_key, node_result) =
        (store.clone(), Arc::clone(&table_key), Arc::clone(&result));
    let children = input.add_changes(move |downstream, _: &mut Instances| {
        Arc::new(Mutex::new(SlidingAggregateNode {
            windows,
            emit,
            key: Arc::clone(&key),
            value: Arc::clone(&value),
            result: Arc::clone(&node_result),
            table_key: Arc::clone(&node_key),
            fold: Arc::clone(&fold),
            observed_stream_time: -1,
            results: WindowBook::new(store_name.clone(), emitted.clone(), Arc::clone(&window_end))
                .inclusive_ends(),
            records: WindowBook::new(records.clone(), None, Arc::clone(&record_time)),
            downstream,
        })) as Shared<K, V>
    });
    KTable::new(Arc::clone(description), children, store, table_key, result)
}

/// A kept record's place in its store: the key's bytes, the timestamp (8 bytes) and a
/// sequence number among the key's records of that timestamp (4 bytes), big-endian.
fn record_key(key: &[u8], timestamp: i64, sequence: u32) -> Vec<u8> {
    let mut bytes = key.to_vec();
    bytes.extend_from_slice(&timestamp.to_be_bytes());
    bytes.extend_from_slice(&sequence.to_be_bytes());
    bytes
}

/// The key's bytes, the timestamp and the sequence number of a kept record's place.
fn split_record_key(bytes: &[u8]) -> Option<(&[u8], i64, u32)> {
    let key_len = bytes.len().checked_sub(12)?;
    let sequence = bytes
        .get(key_len + 8..)
        .and_then(|tail| <[u8; 4]>::try_from(tail).ok())
        .map(u32::from_be_bytes)?;
    Some((&bytes[..key_len], i64_at(bytes, key_len)?, sequence))
}

struct SlidingAggregateNode<K, V, A> {
    windows: SlidingWindows,
    emit: EmitStrategy,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    result: Arc<dyn Serde<A>>,
    table_key: Arc<dyn Serde<Windowed<K>>>,
    fold: Fold<K, V, A>,
    observed_stream_time: i64,
    /// The windows' results, by end.
    results: WindowBook,
    /// The records open windows may hold, by timestamp.
    records: WindowBook,
    downstream: Downstream<Windowed<K>, Change<A>>,
}

impl<K, V, A> SlidingAggregateNode<K, V, A>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
    A: Clone + Send + 'static,
{
    /// The key's kept records, `(timestamp, sequence, value)`, in time order.
    fn kept(
        &self,
        context: &mut TaskContext,
        key_bytes: &[u8],
    ) -> Result<Vec<(i64, u32, Vec<u8>)>, StreamsError> {
        Ok(context
            .store(self.records.results())
            .prefixed(key_bytes)?
            .into_iter()
            .filter_map(|(at, value)| {
                let (key, timestamp, sequence) = split_record_key(&at)?;
                (key == key_bytes).then_some((timestamp, sequence, value))
            })
            .collect())
    }

    /// The starts of the windows the record at `timestamp` changed or made, given every
    /// kept record of its key (itself included): the windows holding it, and its right
    /// window if a record falls in it.
    fn touched(&self, timestamp: i64, kept: &[(i64, u32, Vec<u8>)]) -> BTreeSet<i64> {
        let difference = self.windows.difference;
        let times: BTreeSet<i64> = kept.iter().map(|(time, _, _)| *time).collect();
        let has_record_in = |from: i64, to: i64| times.range(from..=to).next().is_some();
        let mut starts = BTreeSet::new();
        for &time in &times {
            // A record earlier than the difference after the epoch has its left window
            // start at 0, as Kafka's does: no window starts before the epoch.
            let left = (time - difference).max(0);
            let right = time.saturating_add(1);
            for start in [left, right] {
                let exists =
                    start == left || has_record_in(right, right.saturating_add(difference));
                let holds = start <= timestamp && timestamp <= start.saturating_add(difference);
                if exists && (holds || start == timestamp.saturating_add(1)) {
                    starts.insert(start);
                }
            }
        }
        starts
    }

    /// The fold of the kept records in `[start, start + difference]`, and the latest of
    /// their timestamps; `None` for an empty window.
    fn aggregate(
        &self,
        key: &K,
        start: i64,
        kept: &[(i64, u32, Vec<u8>)],
    ) -> Result<Option<(A, i64)>, StreamsError> {
        let end = start.saturating_add(self.windows.difference);
        let mut result: Option<(A, i64)> = None;
        for (time, _, bytes) in kept.iter().filter(|(t, _, _)| (start..=end).contains(t)) {
            let value =
                self.value
                    .deserialize(Some(bytes))
                    .map_err(|source| StreamsError::Store {
                        store: self.records.results().to_owned(),
                        source,
                    })?;
            let so_far = result.map(|(aggregate, _)| aggregate);
            result = Some(((self.fold)(key, value, so_far), *time));
        }
        Ok(result)
    }
}

impl<K, V, A> Node<K, V> for SlidingAggregateNode<K, V, A>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
    A: Clone + Send + 'static,
{
    fn process(
        &mut self,
        record: Record<K, V>,
        context: &mut TaskContext,
    ) -> Result<(), StreamsError> {
        let Some(key_bytes) = windowed_key(&*self.key, &*self.value, &record, context) else {
            return Ok(());
        };
        let timestamp = record.timestamp;
        let difference = self.windows.difference;
        if self.observed_stream_time < 0 {
            // Restored: the latest record kept.
            if let Some(latest) = self.records.latest_end(context)? {
                self.observed_stream_time = latest;
            }
        }
        self.observed_stream_time = self.observed_stream_time.max(timestamp);
        let close_time = self.observed_stream_time - self.windows.grace;
        // A window is open while its end is not before the close time; the latest window
        // that can hold this record is the one starting just after it.
        if timestamp.saturating_add(1 + difference) <= close_time {
            context.dropped_records += 1;
            return Ok(());
        }
        let mut kept = self.kept(context, &key_bytes)?;
        let sequence = kept
            .iter()
            .filter(|(time, _, _)| *time == timestamp)
            .map(|(_, sequence, _)| sequence + 1)
            .max()
            .unwrap_or(0);
        let value_bytes = self.value.serialize(&record.value).unwrap_or_default();
        self.records.write(
            context,
            timestamp,
            record_key(&key_bytes, timestamp, sequence),
            Some(value_bytes.clone()),
        )?;
        let at = kept.partition_point(|(time, seq, _)| (*time, *seq) < (timestamp, sequence));
        kept.insert(at, (timestamp, sequence, value_bytes));

        for start in self.touched(timestamp, &kept) {
            let end = start.saturating_add(difference);
            if end < close_time {
                continue;
            }
            let Some((new, latest)) = self.aggregate(&record.key, start, &kept)? else {
                continue;
            };
            let at = store_key(&key_bytes, start);
            let new_bytes = self.result.serialize(&new);
            let stored = context.store(self.results.results()).get(&at)?;
            if stored.is_some() && stored == new_bytes {
                continue;
            }
            let old = self.results.read(context, &at, &*self.result)?;
            self.results.write(context, end, at, new_bytes)?;
            if self.emit == EmitStrategy::OnWindowUpdate {
                let window = Windowed {
                    key: record.key.clone(),
                    start,
                    end,
                };
                let change = Record::change(window, Some(new), old, latest);
                self.downstream.forward(change, context)?;
            }
        }
        emit_closed(
            &mut self.results,
            context,
            close_time - 1,
            &*self.table_key,
            &*self.result,
            &self.downstream,
        )?;
        self.results.expire(context, close_time - 1)?;
        // A record at t anchors its right window `[t + 1, t + 1 + difference]`, open while
        // its end is not before the close time: records up to `close_time - difference - 2`
        // are in no open window, nor anchor one.
        self.records.expire(
            context,
            close_time.saturating_sub(difference).saturating_sub(2),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_records_place_round_trips() {
        let at = record_key(b"key", 1_000, 7);
        assert_eq!(split_record_key(&at), Some((b"key".as_slice(), 1_000, 7)));
        assert_eq!(split_record_key(&[0; 11]), None);
    }
}
