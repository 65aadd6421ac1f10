//! Stream-stream joins over time windows ([`JoinWindows`]): a record on one side joins the
//! other side's records with the same key whose timestamps are within the window around
//! its own, and the result carries the later of the two timestamps.
//!
//! Each side keeps its records in a store of the task for as long as a record of the other
//! side could still join them (what its window reaches after it, plus the widest reach and
//! the grace, of stream time). A record whose
//! window has closed (`timestamp + reach + grace` behind stream time) is dropped and
//! counted. Left and outer joins emit a record that found no partner with `None` for the
//! other side once its window has closed, not before: so a partner arriving late within
//! the grace period is joined, and no spurious half-result goes out first (KIP-633's fix).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::StreamsError;
use crate::grouped::store_name;
use crate::processor::{Downstream, Instances, Node, Record, Shared, TaskContext};
use crate::serdes::Serde;
use crate::stream::KStream;
use crate::topology::describe;
use crate::window::i64_at;

/// How far apart in time two records may be to join: the other side's record may be up to
/// `before` earlier or `after` later; records are taken until `grace` after that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    before: i64,
    after: i64,
    grace: i64,
}

impl JoinWindows {
    /// Records at most `difference_ms` apart join; late ones are taken for `grace_ms`.
    ///
    /// # Panics
    /// If either is negative.
    pub fn of_time_difference_and_grace(difference_ms: i64, grace_ms: i64) -> Self {
        assert!(difference_ms >= 0, "a time difference cannot be negative");
        assert!(grace_ms >= 0, "a grace period cannot be negative");
        JoinWindows {
            before: difference_ms,
            after: difference_ms,
            grace: grace_ms,
        }
    }

    pub fn of_time_difference_with_no_grace(difference_ms: i64) -> Self {
        JoinWindows::of_time_difference_and_grace(difference_ms, 0)
    }

    /// How much earlier than this side's record the other side's may be.
    pub fn before(self, before_ms: i64) -> Self {
        assert!(before_ms >= -self.after, "an empty join window");
        JoinWindows {
            before: before_ms,
            ..self
        }
    }

    /// How much later than this side's record the other side's may be.
    pub fn after(self, after_ms: i64) -> Self {
        assert!(after_ms >= -self.before, "an empty join window");
        JoinWindows {
            after: after_ms,
            ..self
        }
    }
}

/// The serdes a stream-stream join stores each side's records with.
pub struct StreamJoined<K, V, VO> {
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    other: Arc<dyn Serde<VO>>,
}

impl<K, V, VO> StreamJoined<K, V, VO> {
    pub fn with(key: impl Serde<K>, value: impl Serde<V>, other: impl Serde<VO>) -> Self {
        StreamJoined {
            key: Arc::new(key),
            value: Arc::new(value),
            other: Arc::new(other),
        }
    }
}

impl<K, V, VO> fmt::Debug for StreamJoined<K, V, VO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamJoined")
    }
}

/// Which sides' records are emitted without a partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Inner,
    Left,
    Outer,
}

type Joiner<V, VO, VR> = Arc<dyn Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync>;

/// What a join's two sides share in the topology.
struct JoinDefinition<K, V, VO, VR> {
    windows: JoinWindows,
    kind: Kind,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    other: Arc<dyn Serde<VO>>,
    /// Each side's buffer: this (left) side's, then the other's.
    stores: [String; 2],
    /// Left and outer joins: the records that joined nothing yet, so that a task restored
    /// from the changelogs still owes them (Kafka's outer-join store).
    unmatched: Option<String>,
    joiner: Joiner<V, VO, VR>,
}

/// What a join's two sides share in a task: indexes of the stores, built from them when
/// the task takes its first record (so that a restored task has them too).
#[derive(Default)]
struct JoinState {
    loaded: bool,
    /// The largest timestamp either side has seen.
    observed_stream_time: i64,
    next_sequence: u64,
    /// Each side's buffered records by timestamp, to expire them.
    buffered: [BTreeMap<(i64, Vec<u8>), ()>; 2],
    /// Each side's records that joined nothing yet (left and outer joins), by timestamp.
    unmatched: [BTreeMap<(i64, Vec<u8>), ()>; 2],
}

type SharedState = Arc<Mutex<JoinState>>;

fn lock(state: &SharedState) -> MutexGuard<'_, JoinState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A buffered record's place: the key's length and bytes (so that one key's records are
/// contiguous), its timestamp and a sequence number, all big-endian.
fn buffer_key(key: &[u8], timestamp: i64, sequence: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(key.len() + 20);
    bytes.extend_from_slice(&(key.len() as u32).to_be_bytes());
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(&timestamp.to_be_bytes());
    bytes.extend_from_slice(&sequence.to_be_bytes());
    bytes
}

/// The key bytes and timestamp of a buffered record's place.
fn parse_buffer_key(at: &[u8]) -> Option<(&[u8], i64)> {
    let length = u32::from_be_bytes(at.get(..4)?.try_into().ok()?) as usize;
    let key = at.get(4..4 + length)?;
    let timestamp = i64::from_be_bytes(at.get(4 + length..12 + length)?.try_into().ok()?);
    Some((key, timestamp))
}

impl<K, V> KStream<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// Each pair of records, one from each stream, with the same key and timestamps within
    /// `windows`, joined by `joiner(this, other)`.
    pub fn join<VO, VR>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        serdes: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR>
    where
        VO: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        self.stream_join(
            other,
            Kind::Inner,
            windows,
            serdes,
            move |this, that| match (this, that) {
                (Some(this), Some(that)) => joiner(this, that),
                _ => unreachable!("an inner join emits only pairs"),
            },
        )
    }

    /// [`Self::join`], and each record of this stream that found no partner, with `None`,
    /// once its window has closed.
    pub fn left_join<VO, VR>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        serdes: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR>
    where
        VO: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        self.stream_join(
            other,
            Kind::Left,
            windows,
            serdes,
            move |this, that| match this {
                Some(this) => joiner(this, that),
                None => unreachable!("a left join emits this side's records"),
            },
        )
    }

    /// [`Self::join`], and each record of either stream that found no partner, with `None`
    /// for the other side, once its window has closed.
    pub fn outer_join<VO, VR>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        serdes: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR>
    where
        VO: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        self.stream_join(other, Kind::Outer, windows, serdes, joiner)
    }

    fn stream_join<VO, VR>(
        &self,
        other: &KStream<K, VO>,
        kind: Kind,
        windows: JoinWindows,
        serdes: StreamJoined<K, V, VO>,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR>
    where
        VO: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        let description = self.description();
        let definition = Arc::new(JoinDefinition {
            windows,
            kind,
            key: serdes.key,
            value: serdes.value,
            other: serdes.other,
            stores: [
                store_name(description, None, "KSTREAM-JOINTHIS"),
                store_name(description, None, "KSTREAM-JOINOTHER"),
            ],
            unmatched: (kind != Kind::Inner)
                .then(|| store_name(description, None, "KSTREAM-OUTERSHARED")),
            joiner: Arc::new(joiner),
        });
        // A side whose keys changed goes through a repartition topic first, so that both
        // sides' records of a key meet in one task.
        let [this_store, other_store] = &definition.stores;
        let this = if self.key_changed() {
            self.through_internal(
                &format!("{this_store}-repartition"),
                Arc::clone(&definition.key),
                Arc::clone(&definition.value),
            )
        } else {
            self.clone()
        };
        let other = if other.key_changed() {
            other.through_internal(
                &format!("{other_store}-repartition"),
                Arc::clone(&definition.key),
                Arc::clone(&definition.other),
            )
        } else {
            other.clone()
        };
        let state_id = describe(description).node_id();
        let joined = this.add({
            let definition = Arc::clone(&definition);
            move |downstream, instances: &mut Instances| {
                Arc::new(Mutex::new(SideNode::<K, V, VO, VR, true> {
                    definition: Arc::clone(&definition),
                    state: instances.shared(state_id, |_| SharedState::default()),
                    downstream,
                })) as Shared<K, V>
            }
        });
        other.feed(&joined, move |downstream, instances: &mut Instances| {
            Arc::new(Mutex::new(SideNode::<K, V, VO, VR, false> {
                definition: Arc::clone(&definition),
                state: instances.shared(state_id, |_| SharedState::default()),
                downstream,
            })) as Shared<K, VO>
        });
        joined
    }
}

/// One side of a stream-stream join: `THIS` is the left (this) stream.
struct SideNode<K, V, VO, VR, const THIS: bool> {
    definition: Arc<JoinDefinition<K, V, VO, VR>>,
    /// What the task's two sides of this join share.
    state: SharedState,
    downstream: Downstream<K, VR>,
}

impl<K, V, VO, VR, const THIS: bool> SideNode<K, V, VO, VR, THIS>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
    VO: Clone + Send + 'static,
    VR: Clone + Send + 'static,
{
    fn side(&self) -> usize {
        if THIS {
            0
        } else {
            1
        }
    }

    /// How far after a record of `side` a partner may be, and before.
    fn reach(&self, side: usize) -> (i64, i64) {
        let windows = self.definition.windows;
        if side == 0 {
            (windows.before, windows.after)
        } else {
            (windows.after, windows.before)
        }
    }

    fn emits_unmatched(&self, side: usize) -> bool {
        match self.definition.kind {
            Kind::Inner => false,
            Kind::Left => side == 0,
            Kind::Outer => true,
        }
    }

    fn read<T: 'static>(
        &self,
        context: &mut TaskContext,
        side: usize,
        at: &[u8],
        serde: &dyn Serde<T>,
    ) -> Result<Option<T>, StreamsError> {
        context.store(&self.definition.stores[side]).read(at, serde)
    }

    fn join_pair(&self, this: Option<&V>, that: Option<&VO>) -> VR {
        (self.definition.joiner)(this, that)
    }

    /// Builds the task's indexes from the stores, once: the buffered records by time, the
    /// unmatched ones, and the next sequence number (after every one in use).
    fn load(&self, context: &mut TaskContext) -> Result<(), StreamsError> {
        if lock(&self.state).loaded {
            return Ok(());
        }
        let mut buffered: [BTreeMap<(i64, Vec<u8>), ()>; 2] = Default::default();
        let mut next_sequence = 0;
        for (side, index) in buffered.iter_mut().enumerate() {
            for (at, _) in context.store(&self.definition.stores[side]).entries()? {
                let Some((_, timestamp)) = parse_buffer_key(&at) else {
                    continue;
                };
                if let Some(sequence) = at.len().checked_sub(8).and_then(|from| i64_at(&at, from)) {
                    next_sequence = next_sequence.max(sequence as u64);
                }
                index.insert((timestamp, at), ());
            }
        }
        let mut unmatched: [BTreeMap<(i64, Vec<u8>), ()>; 2] = Default::default();
        if let Some(store) = &self.definition.unmatched {
            for (entry, _) in context.store(store).entries()? {
                let (Some(&side), Some(timestamp)) = (entry.first(), i64_at(&entry, 1)) else {
                    continue;
                };
                if let (Some(index), Some(at)) =
                    (unmatched.get_mut(usize::from(side)), entry.get(9..))
                {
                    index.insert((timestamp, at.to_vec()), ());
                }
            }
        }
        let mut state = lock(&self.state);
        state.buffered = buffered;
        state.unmatched = unmatched;
        state.next_sequence = next_sequence;
        // Restored: stream time is at least the latest record buffered.
        let latest = state
            .buffered
            .iter()
            .filter_map(|index| {
                index
                    .last_key_value()
                    .map(|((timestamp, _), ())| *timestamp)
            })
            .max();
        if let Some(latest) = latest {
            state.observed_stream_time = state.observed_stream_time.max(latest);
        }
        state.loaded = true;
        Ok(())
    }

    /// Notes in the unmatched store that `at` of `side` is owed (`true`) or no longer.
    fn owe(&self, context: &mut TaskContext, side: usize, timestamp: i64, at: &[u8], owed: bool) {
        if let Some(store) = &self.definition.unmatched {
            let mut entry = vec![side as u8];
            entry.extend_from_slice(&timestamp.to_be_bytes());
            entry.extend_from_slice(at);
            context.store(store).put(entry, owed.then(Vec::new));
        }
    }

    /// Takes a record of this side: joins it with the other side's buffered records in its
    /// window, buffers it, then emits closed windows' unmatched records and expires.
    fn take(
        &mut self,
        key: K,
        value_bytes: Vec<u8>,
        timestamp: i64,
        context: &mut TaskContext,
    ) -> Result<(), StreamsError> {
        let side = self.side();
        let other_side = 1 - side;
        let state = Arc::clone(&self.state);
        let Some(key_bytes) = self.definition.key.serialize(&key) else {
            context.dropped_records += 1;
            return Ok(());
        };
        self.load(context)?;
        let grace = self.definition.windows.grace;
        let (before, after) = self.reach(side);
        let sequence = {
            let mut state = lock(&state);
            state.observed_stream_time = state.observed_stream_time.max(timestamp);
            let reach = after.max(before).saturating_add(grace);
            if timestamp < 0 || timestamp.saturating_add(reach) < state.observed_stream_time {
                context.dropped_records += 1;
                return Ok(());
            }
            state.next_sequence += 1;
            state.next_sequence
        };
        // Buffered timestamps are never negative (such records are dropped), and a
        // negative one written big-endian would sort after every other.
        let from = buffer_key(&key_bytes, timestamp.saturating_sub(before).max(0), 0);
        let to = buffer_key(&key_bytes, timestamp.saturating_add(after), u64::MAX);
        let partners = context
            .store(&self.definition.stores[other_side])
            .range(&from, &to)?;
        for (at, partner) in &partners {
            let Some((_, partner_timestamp)) = parse_buffer_key(at) else {
                continue;
            };
            let joined = if THIS {
                let this = self.decode_this(&value_bytes)?;
                let that = self.decode_that(partner)?;
                self.join_pair(Some(&this), Some(&that))
            } else {
                let this = self.decode_this(partner)?;
                let that = self.decode_that(&value_bytes)?;
                self.join_pair(Some(&this), Some(&that))
            };
            let was_owed = lock(&state).unmatched[other_side]
                .remove(&(partner_timestamp, at.clone()))
                .is_some();
            if was_owed {
                self.owe(context, other_side, partner_timestamp, at, false);
            }
            let record = Record::new(key.clone(), joined, timestamp.max(partner_timestamp));
            self.downstream.forward(record, context)?;
        }
        let at = buffer_key(&key_bytes, timestamp, sequence);
        context
            .store(&self.definition.stores[side])
            .put(at.clone(), Some(value_bytes));
        let owed = partners.is_empty() && self.emits_unmatched(side);
        {
            let mut state = lock(&state);
            state.buffered[side].insert((timestamp, at.clone()), ());
            if owed {
                state.unmatched[side].insert((timestamp, at.clone()), ());
            }
        }
        if owed {
            self.owe(context, side, timestamp, &at, true);
        }
        self.close_and_expire(&state, context)
    }

    fn decode_this(&self, bytes: &[u8]) -> Result<V, StreamsError> {
        self.definition
            .value
            .deserialize(Some(bytes))
            .map_err(|source| StreamsError::Store {
                store: self.definition.stores[0].clone(),
                source,
            })
    }

    fn decode_that(&self, bytes: &[u8]) -> Result<VO, StreamsError> {
        self.definition
            .other
            .deserialize(Some(bytes))
            .map_err(|source| StreamsError::Store {
                store: self.definition.stores[1].clone(),
                source,
            })
    }

    /// Emits each unmatched record whose window has closed, then expires both buffers.
    fn close_and_expire(
        &self,
        state: &SharedState,
        context: &mut TaskContext,
    ) -> Result<(), StreamsError> {
        let grace = self.definition.windows.grace;
        for side in [0, 1] {
            let (_, after) = self.reach(side);
            loop {
                let closed = {
                    let mut state = lock(state);
                    let observed = state.observed_stream_time;
                    match state.unmatched[side].first_entry() {
                        Some(entry) if entry.key().0 + after + grace < observed => {
                            Some(entry.remove_entry().0)
                        }
                        _ => None,
                    }
                };
                let Some((timestamp, at)) = closed else {
                    break;
                };
                self.owe(context, side, timestamp, &at, false);
                let Some((key_bytes, _)) = parse_buffer_key(&at) else {
                    continue;
                };
                let key = self
                    .definition
                    .key
                    .deserialize(Some(key_bytes))
                    .map_err(|source| StreamsError::Store {
                        store: self.definition.stores[side].clone(),
                        source,
                    })?;
                let joined = if side == 0 {
                    let Some(this) = self.read(context, 0, &at, &*self.definition.value)? else {
                        continue;
                    };
                    self.join_pair(Some(&this), None)
                } else {
                    let Some(that) = self.read(context, 1, &at, &*self.definition.other)? else {
                        continue;
                    };
                    self.join_pair(None, Some(&that))
                };
                self.downstream
                    .forward(Record::new(key, joined, timestamp), context)?;
            }
        }
        let windows = self.definition.windows;
        for side in [0, 1] {
            // A record is kept while a partner could still come: one as late as its window
            // reaches after it, itself as late as the grace and the widest reach allow.
            let (_, after) = self.reach(side);
            let kept_for = after
                .saturating_add(windows.before.max(windows.after))
                .saturating_add(windows.grace);
            loop {
                let expired = {
                    let mut state = lock(state);
                    let observed = state.observed_stream_time;
                    match state.buffered[side].first_entry() {
                        Some(entry) if entry.key().0.saturating_add(kept_for) < observed => {
                            Some(entry.remove_entry().0)
                        }
                        _ => None,
                    }
                };
                let Some((_, at)) = expired else {
                    break;
                };
                context.store(&self.definition.stores[side]).put(at, None);
            }
        }
        Ok(())
    }
}

macro_rules! side_node {
    ($input:ty, $this:literal, $serde:ident) => {
        impl<K, V, VO, VR> Node<K, $input> for SideNode<K, V, VO, VR, $this>
        where
            K: Clone + Send + 'static,
            V: Clone + Send + 'static,
            VO: Clone + Send + 'static,
            VR: Clone + Send + 'static,
        {
            fn process(
                &mut self,
                record: Record<K, $input>,
                context: &mut TaskContext,
            ) -> Result<(), StreamsError> {
                if self.definition.$serde.is_null(&record.value) {
                    context.dropped_records += 1;
                    return Ok(());
                }
                let Some(value_bytes) = self.definition.$serde.serialize(&record.value) else {
                    context.dropped_records += 1;
                    return Ok(());
                };
                self.take(record.key, value_bytes, record.timestamp, context)
            }
        }
    };
}

side_node!(V, true, value);
side_node!(VO, false, other);

#[cfg(test)]
mod tests {
    //! A join's task moved (its stores rebuilt from their changelogs) carries on.

    use super::*;
    use crate::processor::RawRecord;
    use crate::store::GlobalStores;
    use crate::task::{StoreChange, Task};
    use crate::{Consumed, Produced, StreamsBuilder, StringSerde, Topology};

    fn left_join() -> Topology {
        let builder = StreamsBuilder::new();
        let clicks = builder.stream("clicks", Consumed::with(StringSerde, StringSerde));
        let views = builder.stream("views", Consumed::with(StringSerde, StringSerde));
        clicks
            .left_join(
                &views,
                |click: &String, view: Option<&String>| {
                    format!("{click}+{}", view.map_or("_", String::as_str))
                },
                JoinWindows::of_time_difference_and_grace(10, 50),
                StreamJoined::with(StringSerde, StringSerde, StringSerde),
            )
            .to("joined", Produced::with(StringSerde, StringSerde));
        builder.build().expect("valid")
    }

    /// Pipes one record, returns the values the join emitted.
    fn pipe(task: &mut Task, topic: &str, key: &str, value: &str, timestamp: i64) -> Vec<String> {
        task.process(RawRecord {
            topic,
            offset: 0,
            key: Some(key.as_bytes()),
            value: Some(value.as_bytes()),
            timestamp,
            headers: Vec::new(),
        })
        .expect("processed");
        task.take_emitted()
            .into_iter()
            .map(|emitted| String::from_utf8(emitted.value.unwrap_or_default()).expect("UTF-8"))
            .collect()
    }

    /// A new task restored from `changelog`, after what `from` added to it.
    fn moved(from: &mut Task, changelog: &mut Vec<StoreChange>, topology: &Topology) -> Task {
        changelog.extend(from.take_store_changes());
        let mut moved = Task::new(topology, 0, GlobalStores::default(), None).expect("task");
        for (store, key, value) in changelog.iter().cloned() {
            moved.restore(&store, key, value);
        }
        moved
    }

    #[test]
    fn a_restored_join_still_owes_its_unmatched_records_and_still_joins_its_buffer() {
        let topology = left_join();
        let mut first = Task::new(&topology, 0, GlobalStores::default(), None).expect("task");
        assert!(
            pipe(&mut first, "clicks", "k", "a", 100).is_empty(),
            "owed, not emitted"
        );
        assert!(pipe(&mut first, "clicks", "k", "b", 108).is_empty());
        let mut changelog = Vec::new();
        let mut second = moved(&mut first, &mut changelog, &topology);
        assert_eq!(
            pipe(&mut second, "views", "k", "v", 118),
            ["b+v"],
            "the buffer came back: 108 joins, 100 is too far"
        );
        let mut third = moved(&mut second, &mut changelog, &topology);
        assert_eq!(
            pipe(&mut third, "views", "k", "w", 200),
            ["a+_"],
            "100 was still owed (its window closed at 160), 108 was not"
        );
        assert!(pipe(&mut third, "clicks", "k", "c", 195)
            .into_iter()
            .eq(["c+w"]));
    }
}
