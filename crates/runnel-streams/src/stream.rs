//! [`KStream`]: a stream of records, and what can be done to each of them on its own
//! (the stateless part of Kafka Streams' DSL): filter, map, flat_map, select_key, peek,
//! branch, merge, and writing to a topic.

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::error::StreamsError;
use crate::grouped::{Grouped, KGroupedStream};
use crate::processor::{
    Children, Downstream, Emitted, Factory, Instances, Node, Record, Shared, TaskContext,
};
use crate::serdes::Serde;
use crate::table::{lookup, lookup_global, GlobalKTable, KTable};
use crate::topology::{describe, stream_source, SharedDescription};

/// The serdes a stream's topic is read with.
pub struct Consumed<K, V> {
    pub(crate) key: Arc<dyn Serde<K>>,
    pub(crate) value: Arc<dyn Serde<V>>,
}

impl<K, V> Consumed<K, V> {
    pub fn with(key: impl Serde<K>, value: impl Serde<V>) -> Self {
        Consumed {
            key: Arc::new(key),
            value: Arc::new(value),
        }
    }
}

impl<K, V> fmt::Debug for Consumed<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Consumed")
    }
}

/// The serdes records are written to a topic with.
pub struct Produced<K, V> {
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
}

impl<K, V> Produced<K, V> {
    pub fn with(key: impl Serde<K>, value: impl Serde<V>) -> Self {
        Produced {
            key: Arc::new(key),
            value: Arc::new(value),
        }
    }
}

impl<K, V> fmt::Debug for Produced<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Produced")
    }
}

/// How [`KStream::repartition`] writes records to its repartition topic and reads them
/// back: their serdes, and the topic's name (`<name>-repartition`, generated when none is
/// given, prefixed with the application id at runtime).
pub struct Repartitioned<K, V> {
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    name: Option<String>,
}

impl<K, V> Repartitioned<K, V> {
    pub fn with(key: impl Serde<K>, value: impl Serde<V>) -> Self {
        Repartitioned {
            key: Arc::new(key),
            value: Arc::new(value),
            name: None,
        }
    }

    /// Names the repartition topic `<name>-repartition`.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }
}

impl<K, V> fmt::Debug for Repartitioned<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Repartitioned({:?})", self.name)
    }
}

/// A stream of records with keys of type `K` and values of type `V`. Each method adds a
/// processor downstream of this stream and returns the stream it produces; a stream may
/// feed several processors, each getting every record.
pub struct KStream<K, V> {
    description: SharedDescription,
    children: Children<K, V>,
    /// The keys may no longer be those the records were partitioned by (after map,
    /// select_key, flat_map, process): a grouping or join repartitions first, as Kafka
    /// Streams does.
    key_changed: bool,
}

/// Another handle on the same stream: what is added to either feeds from the same records.
impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        KStream {
            description: Arc::clone(&self.description),
            children: Arc::clone(&self.children),
            key_changed: self.key_changed,
        }
    }
}

impl<K, V> fmt::Debug for KStream<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KStream")
    }
}

/// One record in, any number out: the shape of every stateless processor.
type Step<K, V, K2, V2> = Arc<dyn Fn(Record<K, V>, &mut dyn FnMut(Record<K2, V2>)) + Send + Sync>;

struct StepNode<K, V, K2, V2> {
    step: Step<K, V, K2, V2>,
    downstream: Downstream<K2, V2>,
}

impl<K, V, K2, V2> Node<K, V> for StepNode<K, V, K2, V2>
where
    K: Send,
    V: Send,
    K2: Clone + Send,
    V2: Clone + Send,
{
    fn process(
        &mut self,
        record: Record<K, V>,
        context: &mut TaskContext,
    ) -> Result<(), StreamsError> {
        let downstream = &self.downstream;
        let mut result = Ok(());
        (self.step)(record, &mut |out| {
            if result.is_ok() {
                result = downstream.forward(out, context);
            }
        });
        result
    }
}

impl<K, V> KStream<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    pub(crate) fn new(description: SharedDescription, children: Children<K, V>) -> Self {
        KStream {
            description,
            children,
            key_changed: false,
        }
    }

    /// The same stream, its keys marked as changed (or not) since they were partitioned.
    pub(crate) fn keys_changed(mut self, changed: bool) -> Self {
        self.key_changed = changed;
        self
    }

    pub(crate) fn key_changed(&self) -> bool {
        self.key_changed
    }

    pub(crate) fn description(&self) -> &SharedDescription {
        &self.description
    }

    pub(crate) fn children(&self) -> &Children<K, V> {
        &self.children
    }

    /// Adds a node fed by this stream, built in each task by `make` from the instances of
    /// the nodes it feeds in turn; returns the stream it produces.
    pub(crate) fn add<K2, V2>(
        &self,
        make: impl Fn(Downstream<K2, V2>, &mut Instances) -> Shared<K, V> + Send + Sync + 'static,
    ) -> KStream<K2, V2>
    where
        K2: Clone + Send + 'static,
        V2: Clone + Send + 'static,
    {
        KStream::new(Arc::clone(&self.description), self.add_changes(make))
            .keys_changed(self.key_changed)
    }

    /// [`Self::add`], returning the list of what the new node feeds.
    pub(crate) fn add_changes<K2, V2>(
        &self,
        make: impl Fn(Downstream<K2, V2>, &mut Instances) -> Shared<K, V> + Send + Sync + 'static,
    ) -> Children<K2, V2>
    where
        K2: Clone + Send + 'static,
        V2: Clone + Send + 'static,
    {
        let children: Children<K2, V2> = Arc::default();
        self.add_feeding(&children, make);
        children
    }

    /// Adds a node fed by this stream that feeds `target`'s nodes (as another stream's node
    /// already does: the second side of a join).
    pub(crate) fn feed<K2, V2>(
        &self,
        target: &KStream<K2, V2>,
        make: impl Fn(Downstream<K2, V2>, &mut Instances) -> Shared<K, V> + Send + Sync + 'static,
    ) where
        K2: Clone + Send + 'static,
        V2: Clone + Send + 'static,
    {
        self.add_feeding(&target.children, make);
    }

    fn add_feeding<K2, V2>(
        &self,
        children: &Children<K2, V2>,
        make: impl Fn(Downstream<K2, V2>, &mut Instances) -> Shared<K, V> + Send + Sync + 'static,
    ) where
        K2: Clone + Send + 'static,
        V2: Clone + Send + 'static,
    {
        let id = describe(&self.description).node_id();
        let feeds = Arc::clone(children);
        let factory: Factory<K, V> = Arc::new(move |instances: &mut Instances| {
            instances.get_or_make(id, |instances| {
                let downstream = Downstream::build(&feeds, instances);
                make(downstream, instances)
            })
        });
        self.children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(factory);
    }

    fn step<K2, V2>(
        &self,
        step: impl Fn(Record<K, V>, &mut dyn FnMut(Record<K2, V2>)) + Send + Sync + 'static,
    ) -> KStream<K2, V2>
    where
        K2: Clone + Send + 'static,
        V2: Clone + Send + 'static,
    {
        let step: Step<K, V, K2, V2> = Arc::new(step);
        self.add(move |downstream, _: &mut Instances| {
            Arc::new(Mutex::new(StepNode {
                step: Arc::clone(&step),
                downstream,
            })) as Shared<K, V>
        })
    }

    /// The records for which `keep` is true.
    pub fn filter(&self, keep: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KStream<K, V> {
        self.step(move |record, out| {
            if keep(&record.key, &record.value) {
                out(record);
            }
        })
    }

    /// The records for which `drop` is false.
    pub fn filter_not(
        &self,
        drop: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KStream<K, V> {
        self.filter(move |key, value| !drop(key, value))
    }

    /// Each record with a new key and value. A new key may send records of one key to a
    /// different partition: joins and aggregations downstream repartition first.
    pub fn map<K2, V2>(
        &self,
        f: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KStream<K2, V2>
    where
        K2: Clone + Send + 'static,
        V2: Clone + Send + 'static,
    {
        self.step(move |record: Record<K, V>, out| out(record.map(&f)))
            .keys_changed(true)
    }

    /// Each record with a new value, its key kept.
    pub fn map_values<V2>(&self, f: impl Fn(V) -> V2 + Send + Sync + 'static) -> KStream<K, V2>
    where
        V2: Clone + Send + 'static,
    {
        self.step(move |record: Record<K, V>, out| out(record.map(|key, value| (key, f(value)))))
    }

    /// Each record with a new key computed from it, its value kept.
    pub fn select_key<K2>(&self, f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static) -> KStream<K2, V>
    where
        K2: Clone + Send + 'static,
    {
        self.step(move |record: Record<K, V>, out| {
            let key = f(&record.key, &record.value);
            out(record.map(|_, value| (key, value)));
        })
        .keys_changed(true)
    }

    /// Any number of records for each one, all with its timestamp and headers.
    pub fn flat_map<K2, V2, I>(
        &self,
        f: impl Fn(K, V) -> I + Send + Sync + 'static,
    ) -> KStream<K2, V2>
    where
        K2: Clone + Send + 'static,
        V2: Clone + Send + 'static,
        I: IntoIterator<Item = (K2, V2)>,
    {
        self.step(move |record: Record<K, V>, out| {
            let Record {
                key,
                value,
                timestamp,
                headers,
            } = record;
            for (key, value) in f(key, value) {
                out(Record {
                    key,
                    value,
                    timestamp,
                    headers: headers.clone(),
                });
            }
        })
        .keys_changed(true)
    }

    /// Any number of values for each record, each with its key.
    pub fn flat_map_values<V2, I>(
        &self,
        f: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> KStream<K, V2>
    where
        V2: Clone + Send + 'static,
        I: IntoIterator<Item = V2>,
    {
        self.step(move |record: Record<K, V>, out| {
            let Record {
                key,
                value,
                timestamp,
                headers,
            } = record;
            for value in f(value) {
                out(Record {
                    key: key.clone(),
                    value,
                    timestamp,
                    headers: headers.clone(),
                });
            }
        })
    }

    /// Calls `f` on each record and passes it on unchanged (for logging, metrics).
    pub fn peek(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) -> KStream<K, V> {
        self.step(move |record, out| {
            f(&record.key, &record.value);
            out(record);
        })
    }

    /// Splits the stream: each record goes to the stream of the first predicate it
    /// satisfies, and nowhere if it satisfies none (Kafka's `branch`).
    pub fn branch(&self, predicates: Vec<Predicate<K, V>>) -> Vec<KStream<K, V>> {
        let predicates: Arc<Vec<Predicate<K, V>>> = Arc::new(predicates);
        let branches: Vec<Children<K, V>> =
            predicates.iter().map(|_| Children::default()).collect();
        let id = describe(&self.description).node_id();
        let feeds = branches.clone();
        let factory: Factory<K, V> = Arc::new(move |instances: &mut Instances| {
            let predicates = Arc::clone(&predicates);
            let feeds = feeds.clone();
            instances.get_or_make(id, move |instances| {
                let downstreams = feeds
                    .iter()
                    .map(|children| Downstream::build(children, instances))
                    .collect();
                Arc::new(Mutex::new(BranchNode {
                    predicates,
                    downstreams,
                })) as Shared<K, V>
            })
        });
        self.children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(factory);
        branches
            .into_iter()
            .map(|children| {
                KStream::new(Arc::clone(&self.description), children).keys_changed(self.key_changed)
            })
            .collect()
    }

    /// One stream of this one's records and `other`'s, each in the order it arrives.
    pub fn merge(&self, other: &KStream<K, V>) -> KStream<K, V> {
        let merged = self
            .step(|record, out| out(record))
            .keys_changed(self.key_changed || other.key_changed);
        // The merge node is one instance per task, fed by both streams.
        if let Some(factory) = self
            .children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .last()
            .cloned()
        {
            other
                .children
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(factory);
        }
        merged
    }

    /// The records grouped by their key, for aggregation; `grouped`'s serdes write keys to
    /// stores (and records to a repartition topic, if keys changed upstream).
    pub fn group_by_key(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        let repartition = self.key_changed;
        KGroupedStream::new(self.step(|record, out| out(record)), grouped, repartition)
    }

    /// The records grouped by a new key computed from each: the runtime repartitions them
    /// by it first, so that each key's records meet in one task.
    pub fn group_by<K2>(
        &self,
        key: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
        grouped: Grouped<K2, V>,
    ) -> KGroupedStream<K2, V>
    where
        K2: Clone + Send + 'static,
    {
        KGroupedStream::new(self.select_key(key), grouped, true)
    }

    /// Each record joined with its key's current value in `table`, where it has one (a
    /// stream-table join: only the stream's records cause results).
    pub fn join_table<VT, VR>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, &VT) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR>
    where
        VT: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        self.lookup_join(table, move |value, found| {
            found.map(|found| joiner(value, found))
        })
    }

    /// Each record joined with its key's current value in `table`, `None` where it has none.
    pub fn left_join_table<VT, VR>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR>
    where
        VT: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        self.lookup_join(table, move |value, found| Some(joiner(value, found)))
    }

    /// Each record joined with the value in `global` of the key `key_of` computes from it,
    /// where there is one (a stream-global-table join: any key, no co-partitioning).
    pub fn join_global<GK, GV, VR>(
        &self,
        global: &GlobalKTable<GK, GV>,
        key_of: impl Fn(&K, &V) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&V, &GV) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR>
    where
        GK: 'static,
        GV: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        self.global_join(global, key_of, move |value, found| {
            found.map(|found| joiner(value, found))
        })
    }

    /// Each record joined with the value in `global` of the key `key_of` computes from it,
    /// `None` where there is none.
    pub fn left_join_global<GK, GV, VR>(
        &self,
        global: &GlobalKTable<GK, GV>,
        key_of: impl Fn(&K, &V) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&GV>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR>
    where
        GK: 'static,
        GV: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        self.global_join(global, key_of, move |value, found| {
            Some(joiner(value, found))
        })
    }

    fn lookup_join<VT, VR>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, Option<&VT>) -> Option<VR> + Send + Sync + 'static,
    ) -> KStream<K, VR>
    where
        VT: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        if self.key_changed {
            // Kafka Streams repartitions with the default serdes; there are none here.
            describe(&self.description).refuse(format!(
                "a stream whose keys changed joins table {:?}: repartition it first \
                 (KStream::repartition), so that each record meets its key's row",
                table.store_name()
            ));
        }
        let (store, key, value) = (
            table.store_name().to_owned(),
            Arc::clone(table.key_serde()),
            Arc::clone(table.value_serde()),
        );
        self.joining(
            move |record: &Record<K, V>, context: &mut TaskContext| {
                lookup(context, &store, &record.key, &*key, &*value)
            },
            joiner,
        )
    }

    fn global_join<GK, GV, VR>(
        &self,
        global: &GlobalKTable<GK, GV>,
        key_of: impl Fn(&K, &V) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&GV>) -> Option<VR> + Send + Sync + 'static,
    ) -> KStream<K, VR>
    where
        GK: 'static,
        GV: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        let (store, key, value) = (
            global.store_name().to_owned(),
            Arc::clone(global.key_serde()),
            Arc::clone(global.value_serde()),
        );
        self.joining(
            move |record: &Record<K, V>, context: &mut TaskContext| {
                let global_key = key_of(&record.key, &record.value);
                lookup_global(context, &store, &global_key, &*key, &*value)
            },
            joiner,
        )
    }

    /// A join that looks each record's match up with `find`, then makes the result (if
    /// any) with `joiner`.
    fn joining<VT, VR>(
        &self,
        find: impl Fn(&Record<K, V>, &mut TaskContext) -> Result<Option<VT>, StreamsError>
            + Send
            + Sync
            + 'static,
        joiner: impl Fn(&V, Option<&VT>) -> Option<VR> + Send + Sync + 'static,
    ) -> KStream<K, VR>
    where
        VT: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        let find: Finder<K, V, VT> = Arc::new(find);
        let joiner: LookupJoiner<V, VT, VR> = Arc::new(joiner);
        self.add(move |downstream, _: &mut Instances| {
            Arc::new(Mutex::new(LookupJoinNode {
                find: Arc::clone(&find),
                joiner: Arc::clone(&joiner),
                downstream,
            })) as Shared<K, V>
        })
    }

    /// Writes every record to `topic` and reads them back from it: downstream, each
    /// record is in the task of its key's partition of `topic` (Kafka's `through`). The
    /// topic is the user's: it must exist, with as many partitions as the sources.
    pub fn through(&self, topic: &str, produced: Produced<K, V>) -> KStream<K, V> {
        let (key, value) = (Arc::clone(&produced.key), Arc::clone(&produced.value));
        self.to(topic, produced);
        stream_source(&self.description, topic, Consumed { key, value })
    }

    /// The same records, repartitioned by their current key through a topic of the
    /// application's own, which the runtime creates and purges of what it has read: after a
    /// change of keys, each key's records then meet in one task.
    pub fn repartition(&self, repartitioned: Repartitioned<K, V>) -> KStream<K, V> {
        let name = repartitioned.name.unwrap_or_else(|| {
            let id = describe(&self.description).node_id();
            format!("KSTREAM-REPARTITION-{id:010}")
        });
        self.through_internal(
            &format!("{name}-repartition"),
            repartitioned.key,
            repartitioned.value,
        )
    }

    /// [`Self::through`] a repartition topic of the application's own, `topic`.
    pub(crate) fn through_internal(
        &self,
        topic: &str,
        key: Arc<dyn Serde<K>>,
        value: Arc<dyn Serde<V>>,
    ) -> KStream<K, V> {
        describe(&self.description).add_internal(topic);
        self.through(
            topic,
            Produced {
                key: Arc::clone(&key),
                value: Arc::clone(&value),
            },
        )
    }

    /// Writes every record to `topic` with `produced`'s serdes.
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        describe(&self.description).add_sink(topic);
        let topic = topic.to_owned();
        let Produced { key, value } = produced;
        let _: KStream<K, V> = self.add(move |_: Downstream<K, V>, _: &mut Instances| {
            Arc::new(Mutex::new(SinkNode {
                topic: topic.clone(),
                key: Arc::clone(&key),
                value: Arc::clone(&value),
            })) as Shared<K, V>
        });
    }
}

type LookupJoiner<V, VT, VR> = Arc<dyn Fn(&V, Option<&VT>) -> Option<VR> + Send + Sync>;

/// Where a lookup join finds a record's match: its key in a table's store, or the key it
/// maps to in a global table's.
type Finder<K, V, VT> =
    Arc<dyn Fn(&Record<K, V>, &mut TaskContext) -> Result<Option<VT>, StreamsError> + Send + Sync>;

/// A stream-table or stream-global-table join: each record looks its match up.
struct LookupJoinNode<K, V, VT, VR> {
    find: Finder<K, V, VT>,
    joiner: LookupJoiner<V, VT, VR>,
    downstream: Downstream<K, VR>,
}

impl<K, V, VT, VR> Node<K, V> for LookupJoinNode<K, V, VT, VR>
where
    K: Clone + Send + 'static,
    V: Send + 'static,
    VT: Send + 'static,
    VR: Clone + Send + 'static,
{
    fn process(
        &mut self,
        record: Record<K, V>,
        context: &mut TaskContext,
    ) -> Result<(), StreamsError> {
        let found = (self.find)(&record, context)?;
        let Some(joined) = (self.joiner)(&record.value, found.as_ref()) else {
            return Ok(());
        };
        self.downstream
            .forward(record.map(|key, _| (key, joined)), context)
    }
}

/// A test of a record, for [`KStream::branch`].
pub type Predicate<K, V> = Box<dyn Fn(&K, &V) -> bool + Send + Sync>;

struct BranchNode<K, V> {
    predicates: Arc<Vec<Predicate<K, V>>>,
    downstreams: Vec<Downstream<K, V>>,
}

impl<K: Clone + Send, V: Clone + Send> Node<K, V> for BranchNode<K, V> {
    fn process(
        &mut self,
        record: Record<K, V>,
        context: &mut TaskContext,
    ) -> Result<(), StreamsError> {
        let chosen = self
            .predicates
            .iter()
            .position(|predicate| predicate(&record.key, &record.value));
        match chosen.and_then(|at| self.downstreams.get(at)) {
            Some(downstream) => downstream.forward(record, context),
            None => Ok(()),
        }
    }
}

struct SinkNode<K, V> {
    topic: String,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
}

impl<K: Send + 'static, V: Send + 'static> Node<K, V> for SinkNode<K, V> {
    fn process(
        &mut self,
        record: Record<K, V>,
        context: &mut TaskContext,
    ) -> Result<(), StreamsError> {
        context.emitted.push(Emitted {
            topic: self.topic.clone(),
            key: self.key.serialize(&record.key),
            value: self.value.serialize(&record.value),
            timestamp: record.timestamp,
            headers: record.headers,
        });
        Ok(())
    }
}
