//! Grouping and aggregating: [`KGroupedStream`] (a stream's records by key) and its
//! aggregations into a [`KTable`]: count, reduce, aggregate. Each keeps its result per key
//! in a state store of the task, so that a record only adds to what the key had.
//!
//! Records whose key or value is null are skipped and counted as dropped, as Kafka Streams
//! does. A grouping that changed keys (`group_by`) goes through a repartition topic first,
//! so that each key's records meet in one task.

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::error::StreamsError;
use crate::processor::{Children, Downstream, Instances, Node, Record, Shared, TaskContext};
use crate::serdes::{I64Serde, Serde};
use crate::stream::KStream;
use crate::table::{Change, KTable};
use crate::topology::{describe, SharedDescription};

/// The serdes a grouping's records are written with when they must be repartitioned, and
/// its stores' keys.
pub struct Grouped<K, V> {
    pub(crate) key: Arc<dyn Serde<K>>,
    pub(crate) value: Arc<dyn Serde<V>>,
}

impl<K, V> Grouped<K, V> {
    pub fn with(key: impl Serde<K>, value: impl Serde<V>) -> Self {
        Grouped {
            key: Arc::new(key),
            value: Arc::new(value),
        }
    }
}

impl<K, V> fmt::Debug for Grouped<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Grouped")
    }
}

/// How an aggregation's results are stored: their serde, and the store's name (generated
/// as Kafka Streams does when none is given).
pub struct Materialized<A> {
    pub(crate) value: Arc<dyn Serde<A>>,
    pub(crate) name: Option<String>,
}

impl<A> Materialized<A> {
    pub fn with(value: impl Serde<A>) -> Self {
        Materialized {
            value: Arc::new(value),
            name: None,
        }
    }

    /// Names the store (and so, at runtime, its changelog topic).
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }
}

impl<A> fmt::Debug for Materialized<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Materialized({:?})", self.name)
    }
}

/// A stream's records grouped by key, ready to be aggregated.
pub struct KGroupedStream<K, V> {
    pub(crate) stream: KStream<K, V>,
    pub(crate) grouped: Grouped<K, V>,
    /// Keys were changed upstream: the runtime repartitions before aggregating.
    pub(crate) repartition: bool,
}

impl<K, V> fmt::Debug for KGroupedStream<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KGroupedStream(repartition: {})", self.repartition)
    }
}

impl<K, V> KGroupedStream<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    pub(crate) fn new(stream: KStream<K, V>, grouped: Grouped<K, V>, repartition: bool) -> Self {
        KGroupedStream {
            stream,
            grouped,
            repartition,
        }
    }

    /// How many records each key has had, in the store `name` (or one named for it).
    pub fn count(&self, name: Option<&str>) -> KTable<K, i64> {
        self.fold(counting(), Arc::new(I64Serde), name.map(str::to_owned))
    }

    /// Each key's records combined with `combine(so_far, next)`; a key's first record is its
    /// first value.
    pub fn reduce(
        &self,
        combine: impl Fn(V, V) -> V + Send + Sync + 'static,
        name: Option<&str>,
    ) -> KTable<K, V> {
        self.fold(
            reducing(combine),
            Arc::clone(&self.grouped.value),
            name.map(str::to_owned),
        )
    }

    /// Each key's records folded into an aggregate: `initial()` for a new key, then
    /// `add(key, value, aggregate)` for each record.
    pub fn aggregate<A>(
        &self,
        initial: impl Fn() -> A + Send + Sync + 'static,
        add: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        materialized: Materialized<A>,
    ) -> KTable<K, A>
    where
        A: Clone + Send + 'static,
    {
        self.fold(
            aggregating(initial, add),
            materialized.value,
            materialized.name,
        )
    }

    /// The stream an aggregation reads: this one, or, after a change of keys, this one
    /// written to the repartition topic `<name>-repartition` (partitioned by the new key)
    /// and read back, so that each key's records meet in one task.
    pub(crate) fn input(&self, name: &str) -> KStream<K, V> {
        if !self.repartition {
            return KStream::new(
                Arc::clone(self.stream.description()),
                Arc::clone(self.stream.children()),
            );
        }
        self.stream.through_internal(
            &format!("{name}-repartition"),
            Arc::clone(&self.grouped.key),
            Arc::clone(&self.grouped.value),
        )
    }

    /// The aggregation every one above is: `fold(key, value, what the key had)`, kept in
    /// store `name` with serde `result`.
    fn fold<A>(
        &self,
        fold: Fold<K, V, A>,
        result: Arc<dyn Serde<A>>,
        name: Option<String>,
    ) -> KTable<K, A>
    where
        A: Clone + Send + 'static,
    {
        let description = self.stream.description();
        let store = store_name(description, name, "KSTREAM-AGGREGATE");
        let children: Children<K, Change<A>> = Arc::default();
        self.aggregate_into(&store, &store, fold, Arc::clone(&result), &children);
        KTable::new(
            Arc::clone(description),
            children,
            store,
            Arc::clone(&self.grouped.key),
            result,
        )
    }

    /// Adds the node folding this grouping's records into `store` (reading them through
    /// repartition topic `<input>-repartition` if keys changed), feeding `children`.
    fn aggregate_into<A>(
        &self,
        input: &str,
        store: &str,
        fold: Fold<K, V, A>,
        result: Arc<dyn Serde<A>>,
        children: &Children<K, Change<A>>,
    ) where
        A: Clone + Send + 'static,
    {
        let input = self.input(input);
        let key = Arc::clone(&self.grouped.key);
        let value = Arc::clone(&self.grouped.value);
        let store = store.to_owned();
        let target = KStream::new(Arc::clone(self.stream.description()), Arc::clone(children));
        input.feed(&target, move |downstream, _: &mut Instances| {
            Arc::new(Mutex::new(AggregateNode {
                store: store.clone(),
                key: Arc::clone(&key),
                value: Arc::clone(&value),
                result: Arc::clone(&result),
                fold: Arc::clone(&fold),
                downstream,
            })) as Shared<K, V>
        });
    }

    /// Starts a co-aggregation (KIP-150): this grouping's records folded with `add` into an
    /// aggregate that other groupings of the same key type fold into too, one store and one
    /// table for all of them ([`CogroupedKStream::cogroup`], then `aggregate`).
    pub fn cogroup<A>(
        &self,
        add: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
    ) -> CogroupedKStream<K, A>
    where
        A: Clone + Send + 'static,
    {
        CogroupedKStream {
            description: Arc::clone(self.stream.description()),
            key: Arc::clone(&self.grouped.key),
            inputs: Vec::new(),
        }
        .cogroup(self, add)
    }
}

/// Several groupings of one key type aggregated into one table: each input's records are
/// folded into the key's aggregate with that input's own function.
pub struct CogroupedKStream<K, A> {
    description: SharedDescription,
    key: Arc<dyn Serde<K>>,
    /// Each input, ready to be wired to the aggregation's store once its name is known.
    inputs: Vec<CogroupInput<K, A>>,
}

/// Wires one input of a co-aggregation: `(input's name, store, initial, result, children)`.
type CogroupInput<K, A> = Box<
    dyn FnOnce(
        &str,
        &str,
        Arc<dyn Fn() -> A + Send + Sync>,
        Arc<dyn Serde<A>>,
        &Children<K, Change<A>>,
    ),
>;

impl<K, A> fmt::Debug for CogroupedKStream<K, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CogroupedKStream({} inputs)", self.inputs.len())
    }
}

impl<K, A> CogroupedKStream<K, A>
where
    K: Clone + Send + 'static,
    A: Clone + Send + 'static,
{
    /// Adds `grouped`'s records, folded with `add`.
    pub fn cogroup<V>(
        mut self,
        grouped: &KGroupedStream<K, V>,
        add: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
    ) -> Self
    where
        V: Clone + Send + 'static,
    {
        let grouped = KGroupedStream::new(
            KStream::new(
                Arc::clone(grouped.stream.description()),
                Arc::clone(grouped.stream.children()),
            ),
            Grouped {
                key: Arc::clone(&grouped.grouped.key),
                value: Arc::clone(&grouped.grouped.value),
            },
            grouped.repartition,
        );
        self.inputs.push(Box::new(
            move |input: &str, store: &str, initial, result, children: &Children<K, Change<A>>| {
                let fold: Fold<K, V, A> = Arc::new(move |key: &K, value: V, so_far: Option<A>| {
                    add(key, value, so_far.unwrap_or_else(|| initial()))
                });
                grouped.aggregate_into(input, store, fold, result, children);
            },
        ));
        self
    }

    /// The table of each key's aggregate: `initial()` for a new key, then each input's
    /// records folded in with that input's function, in the order they arrive.
    pub fn aggregate(
        self,
        initial: impl Fn() -> A + Send + Sync + 'static,
        materialized: Materialized<A>,
    ) -> KTable<K, A> {
        let store = store_name(
            &self.description,
            materialized.name,
            "COGROUPKSTREAM-AGGREGATE",
        );
        let children: Children<K, Change<A>> = Arc::default();
        let initial: Arc<dyn Fn() -> A + Send + Sync> = Arc::new(initial);
        for (index, wire) in self.inputs.into_iter().enumerate() {
            wire(
                &format!("{store}-{index}"),
                &store,
                Arc::clone(&initial),
                Arc::clone(&materialized.value),
                &children,
            );
        }
        KTable::new(
            self.description,
            children,
            store,
            self.key,
            materialized.value,
        )
    }
}

/// The key bytes an aggregation keeps a record's result under; `None`, counted as a
/// dropped record, for a null key or value, which aggregations skip as Kafka Streams does.
pub(crate) fn aggregated_key<K: 'static, V: 'static>(
    key: &dyn Serde<K>,
    value: &dyn Serde<V>,
    record: &Record<K, V>,
    context: &mut TaskContext,
) -> Option<Vec<u8>> {
    match key.serialize(&record.key) {
        Some(bytes) if !value.is_null(&record.value) => Some(bytes),
        _ => {
            context.dropped_records += 1;
            None
        }
    }
}

/// Count's fold.
pub(crate) fn counting<K, V>() -> Fold<K, V, i64> {
    Arc::new(|_: &K, _: V, count: Option<i64>| count.unwrap_or(0) + 1)
}

/// Reduce's fold: a key's first value, then `combine(so_far, next)`.
pub(crate) fn reducing<K, V>(combine: impl Fn(V, V) -> V + Send + Sync + 'static) -> Fold<K, V, V> {
    Arc::new(move |_: &K, value: V, so_far: Option<V>| match so_far {
        Some(so_far) => combine(so_far, value),
        None => value,
    })
}

/// Aggregate's fold: `initial()` for a new key, then `add(key, value, aggregate)`.
pub(crate) fn aggregating<K, V, A>(
    initial: impl Fn() -> A + Send + Sync + 'static,
    add: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
) -> Fold<K, V, A> {
    Arc::new(move |key: &K, value: V, so_far: Option<A>| {
        add(key, value, so_far.unwrap_or_else(&initial))
    })
}

/// The store `name`, or one named as Kafka Streams names them (`<kind>-STATE-STORE-` and a
/// number); registered with the topology, which refuses two processors sharing one.
pub(crate) fn store_name(
    description: &SharedDescription,
    name: Option<String>,
    kind: &str,
) -> String {
    let store = name.unwrap_or_else(|| {
        let id = describe(description).node_id();
        format!("{kind}-STATE-STORE-{id:010}")
    });
    describe(description).add_store(&store);
    store
}

/// An aggregation's step: the key, the record's value, what the key had (`None`: nothing
/// yet), to what it has now.
pub(crate) type Fold<K, V, A> = Arc<dyn Fn(&K, V, Option<A>) -> A + Send + Sync>;

struct AggregateNode<K, V, A> {
    store: String,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    result: Arc<dyn Serde<A>>,
    fold: Fold<K, V, A>,
    downstream: Downstream<K, Change<A>>,
}

impl<K, V, A> Node<K, V> for AggregateNode<K, V, A>
where
    K: Clone + Send + 'static,
    V: Send + 'static,
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
        let store = context.store(&self.store);
        let old = store.read(&key_bytes, &*self.result)?;
        let new = (self.fold)(&record.key, record.value, old.clone());
        store.put(key_bytes, self.result.serialize(&new));
        let change = Record::change(record.key, Some(new), old, record.timestamp);
        self.downstream.forward(change, context)
    }
}
