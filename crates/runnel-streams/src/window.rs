//! Windowed aggregation on event time: [`TimeWindows`] (tumbling, or hopping with an advance
//! smaller than the size), each with a grace period for records that arrive out of order.
//!
//! A record falls into every window `[start, start + size)` that holds its timestamp, the
//! starts aligned to multiples of the advance from epoch 0, as Kafka Streams aligns them. A
//! window closes once the aggregation's stream time (the largest timestamp it has seen)
//! reaches its end plus the grace; a record for a closed window is dropped and counted (as
//! Kafka's `dropped-records-total`). Results are emitted on every update, or only once,
//! when the window closes ([`EmitStrategy::OnWindowClose`], KIP-825). A window's result is
//! kept for `size + grace` of stream time, then expired from the store.

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::error::StreamsError;
use crate::grouped::{
    aggregated_key, aggregating, counting, reducing, store_name, Fold, KGroupedStream, Materialized,
};
use crate::processor::{Downstream, Instances, Node, Record, Shared, TaskContext};
use crate::serdes::{I64Serde, Serde, SerdeError};
use crate::sliding::{aggregate_sliding, SlidingWindows};
use crate::table::{Change, KTable};
use crate::topology::{describe, SharedDescription};

/// Windows of a fixed size, every `advance` milliseconds, taking records up to `grace`
/// milliseconds of stream time after they end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    size: i64,
    advance: i64,
    grace: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size_ms` that close as soon as stream time passes their end.
    pub fn of_size_with_no_grace(size_ms: i64) -> Self {
        TimeWindows::of_size_and_grace(size_ms, 0)
    }

    /// Tumbling windows of `size_ms` taking late records for `grace_ms` after their end.
    ///
    /// # Panics
    /// If the size is not positive or the grace is negative: a topology bug, found when it
    /// is described.
    pub fn of_size_and_grace(size_ms: i64, grace_ms: i64) -> Self {
        check_lengths("a window's size", size_ms, grace_ms);
        TimeWindows {
            size: size_ms,
            advance: size_ms,
            grace: grace_ms,
        }
    }

    /// Hopping windows: a new one every `advance_ms` (at most the size).
    ///
    /// # Panics
    /// If the advance is not in `1..=size`.
    pub fn advance_by(self, advance_ms: i64) -> Self {
        assert!(
            advance_ms > 0 && advance_ms <= self.size,
            "a window's advance must be in 1..={}, not {advance_ms}",
            self.size
        );
        TimeWindows {
            advance: advance_ms,
            ..self
        }
    }

    /// The starts of the windows holding `timestamp`, earliest first.
    fn starts_for(&self, timestamp: i64) -> impl Iterator<Item = i64> {
        let earliest = timestamp
            .saturating_sub(self.size)
            .saturating_add(self.advance);
        let first = (earliest.max(0) / self.advance) * self.advance;
        let advance = self.advance;
        (0i64..)
            .map_while(move |step| first.checked_add(step.checked_mul(advance)?))
            .take_while(move |start| *start <= timestamp)
    }
}

/// The key bytes a windowed aggregation keeps a record's results under, as
/// [`aggregated_key`]; `None`, counted as dropped, also for a record before the epoch,
/// which no window holds (Kafka Streams refuses such records).
pub(crate) fn windowed_key<K: 'static, V: 'static>(
    key: &dyn Serde<K>,
    value: &dyn Serde<V>,
    record: &Record<K, V>,
    context: &mut TaskContext,
) -> Option<Vec<u8>> {
    let key_bytes = aggregated_key(key, value, record, context)?;
    if record.timestamp < 0 {
        context.dropped_records += 1;
        return None;
    }
    Some(key_bytes)
}

/// Refuses windows of a length (`what`: size, gap, difference) that is not positive, or a
/// grace period that is negative: a topology bug, found when it is described.
pub(crate) fn check_lengths(what: &str, length_ms: i64, grace_ms: i64) {
    assert!(length_ms > 0, "{what} must be positive, not {length_ms}");
    assert!(
        grace_ms >= 0,
        "a grace period cannot be negative: {grace_ms}"
    );
}

/// When a windowed aggregation emits its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmitStrategy {
    /// On every update of a window (Kafka's default).
    #[default]
    OnWindowUpdate,
    /// Once per window, its final result, when it closes (end + grace passed).
    OnWindowClose,
}

/// A key and the window its result is for: `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Windowed<K> {
    pub key: K,
    pub start: i64,
    pub end: i64,
}

/// Writes a [`Windowed`] key as Kafka Streams' time-windowed serde does: the key's bytes, then
/// the window start, 8 bytes big-endian. The end is `start + size`.
#[derive(Debug, Clone, Copy)]
pub struct WindowedSerde<S> {
    key: S,
    size: i64,
}

impl<S> WindowedSerde<S> {
    pub fn new(key: S, windows: TimeWindows) -> Self {
        WindowedSerde::with_size(key, windows.size)
    }

    /// For windows of `size_ms` (Kafka's `timeWindowedSerdeFrom(type, size)`).
    pub fn with_size(key: S, size_ms: i64) -> Self {
        WindowedSerde { key, size: size_ms }
    }
}

impl<K, S: Serde<K>> Serde<Windowed<K>> for WindowedSerde<S> {
    fn serialize(&self, value: &Windowed<K>) -> Option<Vec<u8>> {
        let mut bytes = self.key.serialize(&value.key)?;
        bytes.extend_from_slice(&value.start.to_be_bytes());
        Some(bytes)
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Windowed<K>, SerdeError> {
        let bytes = bytes.ok_or_else(|| SerdeError("a windowed key cannot be null".into()))?;
        let split = bytes
            .len()
            .checked_sub(8)
            .ok_or_else(|| SerdeError("a windowed key ends with its 8-byte start".into()))?;
        let (key, start) = bytes.split_at(split);
        let start = <[u8; 8]>::try_from(start)
            .map(i64::from_be_bytes)
            .map_err(|_| SerdeError("a windowed key ends with its 8-byte start".into()))?;
        Ok(Windowed {
            key: self.key.deserialize(Some(key))?,
            start,
            end: start.saturating_add(self.size),
        })
    }
}

/// The windows a [`TimeWindowedKStream`] cuts time into: fixed ones (tumbling or hopping)
/// or sliding ones; made from either with `into()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeWindowing {
    Fixed(TimeWindows),
    Sliding(SlidingWindows),
}

impl From<TimeWindows> for TimeWindowing {
    fn from(windows: TimeWindows) -> Self {
        TimeWindowing::Fixed(windows)
    }
}

impl From<SlidingWindows> for TimeWindowing {
    fn from(windows: SlidingWindows) -> Self {
        TimeWindowing::Sliding(windows)
    }
}

/// A grouped stream cut into time windows, fixed or sliding, ready to be aggregated per key
/// and window.
pub struct TimeWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: TimeWindowing,
    emit: EmitStrategy,
}

impl<K, V> fmt::Debug for TimeWindowedKStream<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TimeWindowedKStream({:?}, {:?})",
            self.windows, self.emit
        )
    }
}

impl<K, V> KGroupedStream<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// The records cut into `windows` by their timestamps: [`TimeWindows`] or
    /// [`SlidingWindows`].
    pub fn windowed_by(self, windows: impl Into<TimeWindowing>) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream {
            grouped: self,
            windows: windows.into(),
            emit: EmitStrategy::default(),
        }
    }
}

impl<K, V> TimeWindowedKStream<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    pub fn emit(mut self, strategy: EmitStrategy) -> Self {
        self.emit = strategy;
        self
    }

    /// How many records each key had in each window.
    pub fn count(&self, name: Option<&str>) -> KTable<Windowed<K>, i64> {
        self.fold(counting(), Arc::new(I64Serde), name.map(str::to_owned))
    }

    /// Each key's records in each window combined with `combine(so_far, next)`.
    pub fn reduce(
        &self,
        combine: impl Fn(V, V) -> V + Send + Sync + 'static,
        name: Option<&str>,
    ) -> KTable<Windowed<K>, V> {
        self.fold(
            reducing(combine),
            Arc::clone(&self.grouped.grouped.value),
            name.map(str::to_owned),
        )
    }

    /// Each key's records in each window folded from `initial()` with `add`.
    pub fn aggregate<A>(
        &self,
        initial: impl Fn() -> A + Send + Sync + 'static,
        add: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        materialized: Materialized<A>,
    ) -> KTable<Windowed<K>, A>
    where
        A: Clone + Send + 'static,
    {
        self.fold(
            aggregating(initial, add),
            materialized.value,
            materialized.name,
        )
    }

    fn fold<A>(
        &self,
        fold: Fold<K, V, A>,
        result: Arc<dyn Serde<A>>,
        name: Option<String>,
    ) -> KTable<Windowed<K>, A>
    where
        A: Clone + Send + 'static,
    {
        let windows = match self.windows {
            TimeWindowing::Fixed(windows) => windows,
            TimeWindowing::Sliding(windows) => {
                return aggregate_sliding(&self.grouped, windows, self.emit, fold, result, name)
            }
        };
        let stream = &self.grouped.stream;
        let description = stream.description();
        let store = store_name(description, name, "KSTREAM-AGGREGATE");
        let input = self.grouped.input(&store);
        let key = Arc::clone(&self.grouped.grouped.key);
        let value = Arc::clone(&self.grouped.grouped.value);
        let table_key: Arc<dyn Serde<Windowed<K>>> =
            Arc::new(WindowedSerde::new(Arc::clone(&key), windows));
        let table_value = Arc::clone(&result);
        let emit = self.emit;
        let emitted = WindowBook::register(description, &store, emit);
        let (store_name, node_key) = (store.clone(), Arc::clone(&table_key));
        let size = windows.size;
        let end_of: EndOf = Arc::new(move |at: &[u8]| {
            let start = i64_at(at, at.len().checked_sub(8)?)?;
            Some(start.saturating_add(size))
        });
        let children = input.add_changes(move |downstream, _: &mut Instances| {
            Arc::new(Mutex::new(WindowAggregateNode {
                windows,
                emit,
                key: Arc::clone(&key),
                value: Arc::clone(&value),
                result: Arc::clone(&result),
                table_key: Arc::clone(&node_key),
                fold: Arc::clone(&fold),
                observed_stream_time: -1,
                book: WindowBook::new(store_name.clone(), emitted.clone(), Arc::clone(&end_of)),
                downstream,
            })) as Shared<K, V>
        });
        KTable::new(
            Arc::clone(description),
            children,
            store,
            table_key,
            table_value,
        )
    }
}

/// A window's place in the store: the key's bytes, then the start, 8 bytes big-endian.
pub(crate) fn store_key(key: &[u8], start: i64) -> Vec<u8> {
    let mut bytes = key.to_vec();
    bytes.extend_from_slice(&start.to_be_bytes());
    bytes
}

/// The big-endian i64 `bytes` holds at `at`, if it has 8 bytes there.
pub(crate) fn i64_at(bytes: &[u8], at: usize) -> Option<i64> {
    let field = bytes.get(at..at.checked_add(8)?)?;
    <[u8; 8]>::try_from(field).ok().map(i64::from_be_bytes)
}

/// Reads a window's end from its place in the store.
pub(crate) type EndOf = Arc<dyn Fn(&[u8]) -> Option<i64> + Send + Sync>;

/// What a windowed aggregation keeps beside its results: its windows by end, to close and
/// expire them in order, and, when it emits on close, how far emission has got (in a store
/// of its own, `<store>-emitted`, so that it has a changelog too). The index is built from
/// the results store on first use: a task restored from its changelogs carries on where
/// the last one stopped, neither emitting a window twice nor keeping one forever.
pub(crate) struct WindowBook {
    results: String,
    /// Under [`EmitStrategy::OnWindowClose`]: the store of the end up to which every
    /// closed window was emitted.
    emitted: Option<String>,
    end_of: EndOf,
    /// `(end, place in the store)`; `None` until built.
    by_end: Option<std::collections::BTreeSet<(i64, Vec<u8>)>>,
    /// Windows hold their end (sessions, sliding windows), not only up to it.
    inclusive_ends: bool,
}

const EMITTED_UNTIL: &[u8] = b"emitted-until";

impl WindowBook {
    /// The book of store `results` (registering its emission store if `emit` needs one).
    pub(crate) fn register(
        description: &SharedDescription,
        results: &str,
        emit: EmitStrategy,
    ) -> Option<String> {
        (emit == EmitStrategy::OnWindowClose).then(|| {
            let emitted = format!("{results}-emitted");
            describe(description).add_store(&emitted);
            emitted
        })
    }

    pub(crate) fn new(results: String, emitted: Option<String>, end_of: EndOf) -> Self {
        WindowBook {
            results,
            emitted,
            end_of,
            by_end: None,
            inclusive_ends: false,
        }
    }

    /// For windows that hold their end: a final result then carries the end as its
    /// timestamp, not the instant before it.
    pub(crate) fn inclusive_ends(mut self) -> Self {
        self.inclusive_ends = true;
        self
    }

    fn index(
        &mut self,
        context: &mut TaskContext,
    ) -> Result<&mut std::collections::BTreeSet<(i64, Vec<u8>)>, StreamsError> {
        let index = match self.by_end.take() {
            Some(index) => index,
            None => context
                .store(&self.results)
                .entries()?
                .into_iter()
                .filter_map(|(key, _)| Some(((self.end_of)(&key)?, key)))
                .collect(),
        };
        Ok(self.by_end.insert(index))
    }

    /// The latest end of a window in the store: what a restored node's stream time is at
    /// least (rebuilt from the store, as Kafka's window stores rebuild theirs).
    pub(crate) fn latest_end(
        &mut self,
        context: &mut TaskContext,
    ) -> Result<Option<i64>, StreamsError> {
        Ok(self.index(context)?.last().map(|(end, _)| *end))
    }

    /// The results store's name.
    pub(crate) fn results(&self) -> &str {
        &self.results
    }

    /// Deletes a window from the results store (a session merged into another).
    pub(crate) fn remove(
        &mut self,
        context: &mut TaskContext,
        end: i64,
        at: &[u8],
    ) -> Result<(), StreamsError> {
        self.index(context)?.remove(&(end, at.to_vec()));
        context.store(&self.results).put(at.to_vec(), None);
        Ok(())
    }

    /// Under on-close emission, the windows that closed since the last call, all of those
    /// ending by `closed_through`, earliest end first, as `(end, place in the store)`;
    /// nothing when results are emitted on update.
    pub(crate) fn newly_closed(
        &mut self,
        context: &mut TaskContext,
        closed_through: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>, StreamsError> {
        let Some(emitted) = self.emitted.clone() else {
            return Ok(Vec::new());
        };
        let until = context
            .store(&emitted)
            .get(EMITTED_UNTIL)?
            .and_then(|bytes| i64_at(&bytes, 0))
            .unwrap_or(i64::MIN);
        if closed_through <= until {
            return Ok(Vec::new());
        }
        let closed: Vec<(i64, Vec<u8>)> = self
            .index(context)?
            .iter()
            .skip_while(|(end, _)| *end <= until)
            .take_while(|(end, _)| *end <= closed_through)
            .cloned()
            .collect();
        // Written only when something is emitted: nothing ends between the last mark and
        // this one otherwise, so an older mark says the same.
        if let Some((last_end, _)) = closed.last() {
            context.store(&emitted).put(
                EMITTED_UNTIL.to_vec(),
                Some(last_end.to_be_bytes().to_vec()),
            );
        }
        Ok(closed)
    }

    /// Deletes from the results store every window ending by `expired_through`.
    pub(crate) fn expire(
        &mut self,
        context: &mut TaskContext,
        expired_through: i64,
    ) -> Result<(), StreamsError> {
        let index = self.index(context)?;
        let mut expired = Vec::new();
        while let Some(first) = index.first() {
            if first.0 > expired_through {
                break;
            }
            if let Some((_, at)) = index.pop_first() {
                expired.push(at);
            }
        }
        let store = context.store(&self.results);
        for at in expired {
            store.put(at, None);
        }
        Ok(())
    }

    /// The result `at` holds, read with `serde`.
    pub(crate) fn read<A: 'static>(
        &self,
        context: &mut TaskContext,
        at: &[u8],
        serde: &dyn Serde<A>,
    ) -> Result<Option<A>, StreamsError> {
        context.store(&self.results).read(at, serde)
    }

    /// Writes `at`'s result.
    pub(crate) fn write(
        &mut self,
        context: &mut TaskContext,
        end: i64,
        at: Vec<u8>,
        value: Option<Vec<u8>>,
    ) -> Result<(), StreamsError> {
        context.store(&self.results).put(at.clone(), value);
        self.index(context)?.insert((end, at));
        Ok(())
    }
}

struct WindowAggregateNode<K, V, A> {
    windows: TimeWindows,
    emit: EmitStrategy,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    result: Arc<dyn Serde<A>>,
    table_key: Arc<dyn Serde<Windowed<K>>>,
    fold: Fold<K, V, A>,
    /// The largest timestamp this aggregation has seen: windows close and expire by it.
    observed_stream_time: i64,
    book: WindowBook,
    downstream: Downstream<Windowed<K>, Change<A>>,
}

impl<K, V, A> WindowAggregateNode<K, V, A>
where
    K: Clone + Send + 'static,
    A: Clone + Send + 'static,
{
    /// Emits the final result of every window closed by now (on-close emission), earliest
    /// end first, then drops from the store the windows past their retention (`size +
    /// grace`: as soon as they close).
    fn close_and_expire(&mut self, context: &mut TaskContext) -> Result<(), StreamsError> {
        let close_time = self.observed_stream_time - self.windows.grace;
        emit_closed(
            &mut self.book,
            context,
            close_time,
            &*self.table_key,
            &*self.result,
            &self.downstream,
        )?;
        self.book.expire(context, close_time - 1)
    }
}

/// Emits the final result of each window closed by `closed_through` since the last call,
/// with the timestamp of its last instant (its end, or the instant before an exclusive end),
/// as Kafka Streams does on close.
pub(crate) fn emit_closed<K, A>(
    book: &mut WindowBook,
    context: &mut TaskContext,
    closed_through: i64,
    table_key: &dyn Serde<Windowed<K>>,
    result: &dyn Serde<A>,
    downstream: &Downstream<Windowed<K>, Change<A>>,
) -> Result<(), StreamsError>
where
    K: Clone + Send + 'static,
    A: Clone + Send + 'static,
{
    for (_, at) in book.newly_closed(context, closed_through)? {
        let Some(value) = book.read(context, &at, result)? else {
            continue;
        };
        let window = table_key
            .deserialize(Some(&at))
            .map_err(|source| StreamsError::Store {
                store: book.results.clone(),
                source,
            })?;
        let timestamp = if book.inclusive_ends {
            window.end
        } else {
            window.end.saturating_sub(1).max(window.start)
        };
        downstream.forward(
            Record::change(window, Some(value), None, timestamp),
            context,
        )?;
    }
    Ok(())
}

impl<K, V, A> Node<K, V> for WindowAggregateNode<K, V, A>
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
        if self.observed_stream_time < 0 {
            // Restored: a window starts at or before the latest record it holds.
            if let Some(end) = self.book.latest_end(context)? {
                self.observed_stream_time = end.saturating_sub(self.windows.size);
            }
        }
        self.observed_stream_time = self.observed_stream_time.max(record.timestamp);
        let close_time = self.observed_stream_time - self.windows.grace;
        for start in self.windows.starts_for(record.timestamp) {
            let end = start.saturating_add(self.windows.size);
            if end <= close_time {
                // Too late for this window.
                context.dropped_records += 1;
                continue;
            }
            let at = store_key(&key_bytes, start);
            let old = self.book.read(context, &at, &*self.result)?;
            let new = (self.fold)(&record.key, record.value.clone(), old.clone());
            self.book
                .write(context, end, at, self.result.serialize(&new))?;
            if self.emit == EmitStrategy::OnWindowUpdate {
                let window = Windowed {
                    key: record.key.clone(),
                    start,
                    end,
                };
                let change = Record::change(window, Some(new), old, record.timestamp);
                self.downstream.forward(change, context)?;
            }
        }
        self.close_and_expire(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_to_the_epoch_and_hold_their_start_not_their_end() {
        let tumbling = TimeWindows::of_size_with_no_grace(10);
        assert_eq!(tumbling.starts_for(0).collect::<Vec<_>>(), [0]);
        assert_eq!(tumbling.starts_for(9).collect::<Vec<_>>(), [0]);
        assert_eq!(tumbling.starts_for(10).collect::<Vec<_>>(), [10]);
        let hopping = TimeWindows::of_size_with_no_grace(10).advance_by(5);
        assert_eq!(hopping.starts_for(12).collect::<Vec<_>>(), [5, 10]);
        assert_eq!(hopping.starts_for(3).collect::<Vec<_>>(), [0]);
        let fine = TimeWindows::of_size_with_no_grace(10).advance_by(3);
        assert_eq!(fine.starts_for(10).collect::<Vec<_>>(), [3, 6, 9]);
    }

    #[test]
    fn a_windowed_key_round_trips_as_key_bytes_and_a_big_endian_start() {
        let serde = WindowedSerde::new(crate::StringSerde, TimeWindows::of_size_with_no_grace(100));
        let window = Windowed {
            key: "k".to_owned(),
            start: 300,
            end: 400,
        };
        let bytes = serde.serialize(&window).expect("bytes");
        assert_eq!(bytes, [b"k".as_slice(), &300i64.to_be_bytes()].concat());
        assert_eq!(serde.deserialize(Some(&bytes)), Ok(window));
        assert!(serde.deserialize(Some(b"short")).is_err());
    }
}

#[cfg(test)]
mod restore_tests {
    //! A windowed aggregation's task moved (its stores rebuilt from their changelogs): it
    //! carries on as if it had not moved.

    use crate::processor::RawRecord;
    use crate::store::{GlobalStores, LocalState};
    use crate::task::Task;
    use crate::{
        Consumed, EmitStrategy, Grouped, Nullable, Produced, StreamsBuilder, StringSerde,
        TimeWindows, WindowedSerde,
    };
    use crate::{I64Serde, Topology};

    fn topology(windows: TimeWindows) -> Topology {
        let builder = StreamsBuilder::new();
        builder
            .stream("clicks", Consumed::with(StringSerde, StringSerde))
            .group_by_key(Grouped::with(StringSerde, StringSerde))
            .windowed_by(windows)
            .emit(EmitStrategy::OnWindowClose)
            .count(Some("counts"))
            .to_stream()
            .to(
                "out",
                Produced::with(WindowedSerde::new(StringSerde, windows), Nullable(I64Serde)),
            );
        builder.build().expect("valid")
    }

    fn click(task: &mut Task, page: &str, timestamp: i64) -> usize {
        task.process(RawRecord {
            topic: "clicks",
            offset: 0,
            key: Some(page.as_bytes()),
            value: Some(b"click"),
            timestamp,
            headers: Vec::new(),
        })
        .expect("processed");
        task.take_emitted().len()
    }

    #[test]
    fn a_restored_task_neither_emits_a_closed_window_again_nor_forgets_an_open_one() {
        let windows = TimeWindows::of_size_with_no_grace(10);
        let topology = topology(windows);
        assert_eq!(topology.store_names(), ["counts", "counts-emitted"]);
        let mut first = Task::new(&topology, 0, GlobalStores::default(), None).expect("task");
        assert_eq!(click(&mut first, "a", 1), 0);
        assert_eq!(click(&mut first, "b", 15), 1, "[0, 10) closed");
        let changelog = first.take_store_changes();

        // The task moved to an instance keeping its stores on disk.
        let dir = tempfile::tempdir().expect("a state directory");
        let local = LocalState::open(dir.path()).expect("opened").task("0_0");
        let mut moved =
            Task::new(&topology, 0, GlobalStores::default(), Some(local)).expect("task");
        for (store, key, value) in changelog {
            moved.restore(&store, key, value);
        }
        assert_eq!(click(&mut moved, "a", 5), 0);
        assert_eq!(
            moved.context.dropped_records, 1,
            "stream time came back from the store: [0, 10) is closed"
        );
        assert_eq!(click(&mut moved, "c", 16), 0, "[0, 10) was emitted already");
        assert_eq!(click(&mut moved, "c", 25), 2, "[10, 20) of b and c close");
        let expired: Vec<String> = moved
            .context
            .stores
            .get("counts")
            .expect("a store")
            .entries()
            .expect("readable")
            .iter()
            .map(|(key, _)| String::from_utf8_lossy(&key[..key.len() - 8]).into_owned())
            .collect();
        assert_eq!(expired, ["c"], "closed windows expired, restored ones too");
    }
}
