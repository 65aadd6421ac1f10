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

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::error::StreamsError;
use crate::grouped::{
    aggregated_key, aggregating, counting, reducing, store_name, Fold, KGroupedStream, Materialized,
};
use crate::processor::{Downstream, Instances, Node, Record, Shared, TaskContext};
use crate::serdes::{I64Serde, Serde, SerdeError};
use crate::table::{Change, KTable};

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
        assert!(
            size_ms > 0,
            "a window's size must be positive, not {size_ms}"
        );
        assert!(
            grace_ms >= 0,
            "a grace period cannot be negative: {grace_ms}"
        );
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
        let first = ((timestamp - self.size + self.advance).max(0) / self.advance) * self.advance;
        let advance = self.advance;
        (0..)
            .map(move |step| first + step * advance)
            .take_while(move |start| *start <= timestamp)
    }
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
        WindowedSerde {
            key,
            size: windows.size,
        }
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

/// A grouped stream cut into time windows, ready to be aggregated per key and window.
pub struct TimeWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: TimeWindows,
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
    /// The records cut into `windows` by their timestamps.
    pub fn windowed_by(self, windows: TimeWindows) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream {
            grouped: self,
            windows,
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
        let stream = &self.grouped.stream;
        let description = stream.description();
        let store = store_name(description, name, "KSTREAM-AGGREGATE");
        let input = self.grouped.input(&store);
        let key = Arc::clone(&self.grouped.grouped.key);
        let value = Arc::clone(&self.grouped.grouped.value);
        let table_key: Arc<dyn Serde<Windowed<K>>> =
            Arc::new(WindowedSerde::new(Arc::clone(&key), self.windows));
        let table_value = Arc::clone(&result);
        let (windows, emit, store_name) = (self.windows, self.emit, store.clone());
        let children = input.add_changes(move |downstream, _: &mut Instances| {
            Arc::new(Mutex::new(WindowAggregateNode {
                store: store_name.clone(),
                windows,
                emit,
                key: Arc::clone(&key),
                value: Arc::clone(&value),
                result: Arc::clone(&result),
                fold: Arc::clone(&fold),
                observed_stream_time: -1,
                by_start: BTreeMap::new(),
                unemitted: BTreeMap::new(),
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
fn store_key(key: &[u8], start: i64) -> Vec<u8> {
    let mut bytes = key.to_vec();
    bytes.extend_from_slice(&start.to_be_bytes());
    bytes
}

struct WindowAggregateNode<K, V, A> {
    store: String,
    windows: TimeWindows,
    emit: EmitStrategy,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    result: Arc<dyn Serde<A>>,
    fold: Fold<K, V, A>,
    /// The largest timestamp this aggregation has seen: windows close and expire by it.
    observed_stream_time: i64,
    /// Windows in the store, by start, to expire them.
    by_start: BTreeMap<(i64, Vec<u8>), ()>,
    /// Under [`EmitStrategy::OnWindowClose`]: windows updated and not emitted yet, by end.
    unemitted: BTreeMap<(i64, Vec<u8>), Windowed<K>>,
    downstream: Downstream<Windowed<K>, Change<A>>,
}

impl<K, V, A> WindowAggregateNode<K, V, A>
where
    K: Clone + Send + 'static,
    A: Clone + Send + 'static,
{
    fn read(&self, context: &mut TaskContext, at: &[u8]) -> Result<Option<A>, StreamsError> {
        context
            .store(&self.store)
            .get(at)
            .map(|bytes| self.result.deserialize(Some(bytes)))
            .transpose()
            .map_err(|source| StreamsError::Store {
                store: self.store.clone(),
                source,
            })
    }

    /// Emits the final result of every window closed by now (on-close emission), earliest
    /// end first, then drops from the store the windows past their retention.
    fn close_and_expire(&mut self, context: &mut TaskContext) -> Result<(), StreamsError> {
        let close_time = self.observed_stream_time - self.windows.grace;
        while let Some(entry) = self.unemitted.first_entry() {
            if entry.key().0 > close_time {
                break;
            }
            let ((_, at), window) = entry.remove_entry();
            if let Some(result) = self.read(context, &at)? {
                let timestamp = window.end - 1;
                self.downstream.forward(
                    Record::change(window, Some(result), None, timestamp),
                    context,
                )?;
            }
        }
        let retention = self.windows.size + self.windows.grace;
        let expired_before = self.observed_stream_time - retention;
        while let Some(entry) = self.by_start.first_entry() {
            if entry.key().0 >= expired_before {
                break;
            }
            let ((_, at), ()) = entry.remove_entry();
            context.store(&self.store).put(at, None);
        }
        Ok(())
    }
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
        let Some(key_bytes) = aggregated_key(&*self.key, &*self.value, &record, context) else {
            return Ok(());
        };
        self.observed_stream_time = self.observed_stream_time.max(record.timestamp);
        let close_time = self.observed_stream_time - self.windows.grace;
        for start in self.windows.starts_for(record.timestamp) {
            let end = start + self.windows.size;
            if end <= close_time {
                // Too late for this window.
                context.dropped_records += 1;
                continue;
            }
            let at = store_key(&key_bytes, start);
            let old = self.read(context, &at)?;
            let new = (self.fold)(&record.key, record.value.clone(), old.clone());
            context
                .store(&self.store)
                .put(at.clone(), self.result.serialize(&new));
            self.by_start.insert((start, at.clone()), ());
            let window = Windowed {
                key: record.key.clone(),
                start,
                end,
            };
            match self.emit {
                EmitStrategy::OnWindowUpdate => {
                    let change = Record::change(window, Some(new), old, record.timestamp);
                    self.downstream.forward(change, context)?;
                }
                EmitStrategy::OnWindowClose => {
                    self.unemitted.insert((end, at), window);
                }
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
