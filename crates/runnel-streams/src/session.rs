//! Session windows: a key's records grouped into sessions of activity, each ending after an
//! inactivity gap ([`SessionWindows`]), as Kafka Streams' session windows do.
//!
//! A record starts a session `[t, t]`, or joins every session of its key within the gap of
//! its timestamp (ending at or after `t - gap` and starting at or before `t + gap`), which
//! merge into one: their aggregates are combined with the merger, each merged session is
//! deleted (a tombstone downstream), and the merged one is written. Session bounds are
//! inclusive. A session closes once stream time passes its end by the gap and the grace; a
//! record that would only make or grow a closed session is dropped and counted.

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::error::StreamsError;
use crate::grouped::{
    aggregating, counting, reducing, store_name, Fold, KGroupedStream, Materialized,
};
use crate::processor::{Downstream, Instances, Node, Record, Shared, TaskContext};
use crate::serdes::{I64Serde, Serde, SerdeError};
use crate::table::{Change, KTable};
use crate::window::{
    check_lengths, emit_closed, i64_at, windowed_key, EmitStrategy, EndOf, WindowBook, Windowed,
};

/// Sessions of activity: a key's records less than `gap` apart are one session, which
/// takes late records for `grace` milliseconds of stream time after it closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    gap: i64,
    grace: i64,
}

impl SessionWindows {
    /// Sessions ending after `gap_ms` without a record, closed as soon as stream time
    /// passes that.
    pub fn of_inactivity_gap_with_no_grace(gap_ms: i64) -> Self {
        SessionWindows::of_inactivity_gap_and_grace(gap_ms, 0)
    }

    /// Sessions ending after `gap_ms` without a record, taking late records for
    /// `grace_ms` more.
    ///
    /// # Panics
    /// If the gap is not positive or the grace is negative: a topology bug, found when it
    /// is described.
    pub fn of_inactivity_gap_and_grace(gap_ms: i64, grace_ms: i64) -> Self {
        check_lengths("a session's inactivity gap", gap_ms, grace_ms);
        SessionWindows {
            gap: gap_ms,
            grace: grace_ms,
        }
    }
}

/// Writes a session's [`Windowed`] key as Kafka Streams' session-windowed serde does: the
/// key's bytes, then the end and the start, 8 bytes big-endian each.
#[derive(Debug, Clone, Copy)]
pub struct SessionWindowedSerde<S> {
    key: S,
}

impl<S> SessionWindowedSerde<S> {
    pub fn new(key: S) -> Self {
        SessionWindowedSerde { key }
    }
}

/// A session's place in the store, and its bytes on the wire: key, end, start.
fn session_key(key: &[u8], start: i64, end: i64) -> Vec<u8> {
    let mut bytes = key.to_vec();
    bytes.extend_from_slice(&end.to_be_bytes());
    bytes.extend_from_slice(&start.to_be_bytes());
    bytes
}

/// The key's bytes, the start and the end of a session's place in the store.
fn split_session_key(bytes: &[u8]) -> Option<(&[u8], i64, i64)> {
    let key_len = bytes.len().checked_sub(16)?;
    Some((
        &bytes[..key_len],
        i64_at(bytes, key_len + 8)?,
        i64_at(bytes, key_len)?,
    ))
}

impl<K, S: Serde<K>> Serde<Windowed<K>> for SessionWindowedSerde<S> {
    fn serialize(&self, value: &Windowed<K>) -> Option<Vec<u8>> {
        let key = self.key.serialize(&value.key)?;
        Some(session_key(&key, value.start, value.end))
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Windowed<K>, SerdeError> {
        let bytes = bytes.ok_or_else(|| SerdeError("a session key cannot be null".into()))?;
        let (key, start, end) = split_session_key(bytes)
            .ok_or_else(|| SerdeError("a session key ends with its 8-byte end and start".into()))?;
        Ok(Windowed {
            key: self.key.deserialize(Some(key))?,
            start,
            end,
        })
    }
}

/// A grouped stream cut into sessions, ready to be aggregated per key and session.
pub struct SessionWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: SessionWindows,
    emit: EmitStrategy,
}

impl<K, V> fmt::Debug for SessionWindowedKStream<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SessionWindowedKStream({:?}, {:?})",
            self.windows, self.emit
        )
    }
}

impl<K, V> KGroupedStream<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// The records cut into sessions of activity by their timestamps.
    pub fn windowed_by_session(self, windows: SessionWindows) -> SessionWindowedKStream<K, V> {
        SessionWindowedKStream {
            grouped: self,
            windows,
            emit: EmitStrategy::default(),
        }
    }
}

/// How two sessions' aggregates combine when a record bridges them.
type Merger<K, A> = Arc<dyn Fn(&K, A, A) -> A + Send + Sync>;

/// The first session merged, into what the merge starts from.
type First<K, A> = Arc<dyn Fn(&K, A) -> A + Send + Sync>;

/// How a record's session starts from the sessions it merges, as Kafka's does: the first
/// one merged into a fresh aggregate (for `aggregate`, `merge(initial(), first)`; for count
/// and reduce, whose merges start from nothing, the first itself), the others merged in.
struct SessionMerge<K, A> {
    first: First<K, A>,
    merge: Merger<K, A>,
}

impl<K, A> Clone for SessionMerge<K, A> {
    fn clone(&self) -> Self {
        SessionMerge {
            first: Arc::clone(&self.first),
            merge: Arc::clone(&self.merge),
        }
    }
}

impl<K: 'static, A: 'static> SessionMerge<K, A> {
    fn starting_from_nothing(merge: Merger<K, A>) -> Self {
        SessionMerge {
            first: Arc::new(|_: &K, first: A| first),
            merge,
        }
    }
}

impl<K, V> SessionWindowedKStream<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    pub fn emit(mut self, strategy: EmitStrategy) -> Self {
        self.emit = strategy;
        self
    }

    /// How many records each key had in each session.
    pub fn count(&self, name: Option<&str>) -> KTable<Windowed<K>, i64> {
        self.fold(
            counting(),
            SessionMerge::starting_from_nothing(Arc::new(|_: &K, a: i64, b: i64| a + b)),
            Arc::new(I64Serde),
            name.map(str::to_owned),
        )
    }

    /// Each key's records in each session combined with `combine(so_far, next)`, which
    /// also combines two sessions' results when they merge.
    pub fn reduce(
        &self,
        combine: impl Fn(V, V) -> V + Send + Sync + 'static,
        name: Option<&str>,
    ) -> KTable<Windowed<K>, V> {
        let combine = Arc::new(combine);
        let merging = Arc::clone(&combine);
        self.fold(
            reducing(move |a, b| combine(a, b)),
            SessionMerge::starting_from_nothing(Arc::new(move |_: &K, a: V, b: V| merging(a, b))),
            Arc::clone(&self.grouped.grouped.value),
            name.map(str::to_owned),
        )
    }

    /// Each key's records in each session folded from `initial()` with `add`; when a record
    /// bridges two sessions, their aggregates are combined with `merge(key, a, b)`.
    pub fn aggregate<A>(
        &self,
        initial: impl Fn() -> A + Send + Sync + 'static,
        add: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        merge: impl Fn(&K, A, A) -> A + Send + Sync + 'static,
        materialized: Materialized<A>,
    ) -> KTable<Windowed<K>, A>
    where
        A: Clone + Send + 'static,
    {
        let initial = Arc::new(initial);
        let merge: Merger<K, A> = Arc::new(merge);
        let (first_initial, first_merge) = (Arc::clone(&initial), Arc::clone(&merge));
        let merging = SessionMerge {
            first: Arc::new(move |key: &K, first: A| first_merge(key, first_initial(), first)),
            merge,
        };
        self.fold(
            aggregating(move || initial(), add),
            merging,
            materialized.value,
            materialized.name,
        )
    }

    fn fold<A>(
        &self,
        fold: Fold<K, V, A>,
        merge: SessionMerge<K, A>,
        result: Arc<dyn Serde<A>>,
        name: Option<String>,
    ) -> KTable<Windowed<K>, A>
    where
        A: Clone + Send + 'static,
    {
        let description = self.grouped.stream.description();
        let store = store_name(description, name, "KSTREAM-AGGREGATE");
        let input = self.grouped.input(&store);
        let key = Arc::clone(&self.grouped.grouped.key);
        let value = Arc::clone(&self.grouped.grouped.value);
        let table_key: Arc<dyn Serde<Windowed<K>>> =
            Arc::new(SessionWindowedSerde::new(Arc::clone(&key)));
        let (windows, emit) = (self.windows, self.emit);
        let emitted = WindowBook::register(description, &store, emit);
        let end_of: EndOf = Arc::new(|at: &[u8]| Some(split_session_key(at)?.2));
        let (store_name, node_key, node_result) =
            (store.clone(), Arc::clone(&table_key), Arc::clone(&result));
        let children = input.add_changes(move |downstream, _: &mut Instances| {
            Arc::new(Mutex::new(SessionAggregateNode {
                windows,
                emit,
                key: Arc::clone(&key),
                value: Arc::clone(&value),
                result: Arc::clone(&node_result),
                table_key: Arc::clone(&node_key),
                fold: Arc::clone(&fold),
                merge: merge.clone(),
                observed_stream_time: -1,
                book: WindowBook::new(store_name.clone(), emitted.clone(), Arc::clone(&end_of))
                    .inclusive_ends(),
                downstream,
            })) as Shared<K, V>
        });
        KTable::new(Arc::clone(description), children, store, table_key, result)
    }
}

struct SessionAggregateNode<K, V, A> {
    windows: SessionWindows,
    emit: EmitStrategy,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    result: Arc<dyn Serde<A>>,
    table_key: Arc<dyn Serde<Windowed<K>>>,
    fold: Fold<K, V, A>,
    merge: SessionMerge<K, A>,
    observed_stream_time: i64,
    book: WindowBook,
    downstream: Downstream<Windowed<K>, Change<A>>,
}

impl<K, V, A> Node<K, V> for SessionAggregateNode<K, V, A>
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
        if self.observed_stream_time < 0 {
            // Restored: a session ends at its latest record.
            if let Some(end) = self.book.latest_end(context)? {
                self.observed_stream_time = end;
            }
        }
        self.observed_stream_time = self.observed_stream_time.max(timestamp);
        let gap = self.windows.gap;
        let close_time = self.observed_stream_time - self.windows.grace - gap;
        // The key's sessions within the gap of the record, which it joins.
        let overlapping: Vec<(Vec<u8>, i64, i64)> = context
            .store(self.book.results())
            .prefixed(&key_bytes)?
            .into_iter()
            .filter_map(|(at, _)| {
                let (key, start, end) = split_session_key(&at)?;
                let joins = key == key_bytes.as_slice()
                    && end >= timestamp.saturating_sub(gap)
                    && start <= timestamp.saturating_add(gap);
                joins.then_some((at, start, end))
            })
            .collect();
        let start = overlapping
            .iter()
            .map(|(_, start, _)| *start)
            .fold(timestamp, i64::min);
        let end = overlapping
            .iter()
            .map(|(_, _, end)| *end)
            .fold(timestamp, i64::max);
        if end < close_time {
            context.dropped_records += 1;
            return Ok(());
        }
        // A record at the very instant of a one-record session only updates it (Kafka
        // replaces merged sessions only when the session they make is another).
        let replaces = start != timestamp || end != timestamp;
        let mut aggregate: Option<A> = None;
        for (at, old_start, old_end) in &overlapping {
            let Some(merged) = self.book.read(context, at, &*self.result)? else {
                continue;
            };
            aggregate = Some(match aggregate {
                Some(so_far) => (self.merge.merge)(&record.key, so_far, merged.clone()),
                None => (self.merge.first)(&record.key, merged.clone()),
            });
            if !replaces {
                continue;
            }
            self.book.remove(context, *old_end, at)?;
            if self.emit == EmitStrategy::OnWindowUpdate {
                let window = Windowed {
                    key: record.key.clone(),
                    start: *old_start,
                    end: *old_end,
                };
                let gone = Record::change(window, None, Some(merged), timestamp);
                self.downstream.forward(gone, context)?;
            }
        }
        let aggregate = (self.fold)(&record.key, record.value, aggregate);
        let at = session_key(&key_bytes, start, end);
        self.book
            .write(context, end, at, self.result.serialize(&aggregate))?;
        if self.emit == EmitStrategy::OnWindowUpdate {
            let window = Windowed {
                key: record.key,
                start,
                end,
            };
            let made = Record::change(window, Some(aggregate), None, timestamp);
            self.downstream.forward(made, context)?;
        }
        // A session is closed, and can merge no more, once its end is before the close time.
        emit_closed(
            &mut self.book,
            context,
            close_time - 1,
            &*self.table_key,
            &*self.result,
            &self.downstream,
        )?;
        self.book.expire(context, close_time - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_key_round_trips_as_key_bytes_then_end_then_start() {
        let serde = SessionWindowedSerde::new(crate::StringSerde);
        let session = Windowed {
            key: "k".to_owned(),
            start: 100,
            end: 250,
        };
        let bytes = serde.serialize(&session).expect("bytes");
        assert_eq!(
            bytes,
            [
                b"k".as_slice(),
                &250i64.to_be_bytes(),
                &100i64.to_be_bytes()
            ]
            .concat()
        );
        assert_eq!(serde.deserialize(Some(&bytes)), Ok(session));
        assert!(serde.deserialize(Some(&[0; 15])).is_err());
    }
}
