//! [`StreamsBuilder`] and [`Topology`]: describing what an application does, then checking
//! the description before anything runs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::StreamsError;
use crate::grouped::store_name;
use crate::processor::{
    Children, Downstream, Instances, RawRecord, Record, Source, SourceFactory, TaskContext,
};
use crate::serdes::{Serde, SerdeError};
use crate::store::is_legal_store_name;
use crate::stream::{Consumed, KStream};
use crate::table::{lookup, Change, GlobalKTable, KTable};
use crate::task::SharedLifecycle;

/// What the builder has been told so far; shared by every stream it made.
#[derive(Default)]
pub(crate) struct Description {
    next_node: usize,
    sources: BTreeMap<String, SourceFactory>,
    sinks: BTreeSet<String>,
    stores: BTreeSet<String>,
    /// Repartition topics, as the topology names them.
    internal: BTreeSet<String>,
    /// Global tables: their topics, and the stores holding them.
    globals: BTreeMap<String, GlobalSource>,
    /// Mistakes found while describing, reported by [`StreamsBuilder::build`].
    errors: Vec<String>,
}

impl Description {
    pub(crate) fn node_id(&mut self) -> usize {
        self.next_node += 1;
        self.next_node
    }

    pub(crate) fn add_sink(&mut self, topic: &str) {
        self.sinks.insert(topic.to_owned());
    }

    fn add_source(&mut self, topic: &str, factory: SourceFactory) {
        if self.sources.contains_key(topic) || self.globals.contains_key(topic) {
            self.errors
                .push(format!("topic {topic:?} is read by two streams"));
        } else {
            self.sources.insert(topic.to_owned(), factory);
        }
    }

    fn add_global(&mut self, topic: &str, global: GlobalSource) {
        let store = global.store.clone();
        self.check_store_name(&store);
        if self.sources.contains_key(topic) || self.globals.contains_key(topic) {
            self.errors
                .push(format!("topic {topic:?} is read by two streams"));
        } else if self.stores.contains(&store) || self.globals.values().any(|g| g.store == store) {
            self.errors
                .push(format!("two processors keep state in store {store:?}"));
        } else {
            self.globals.insert(topic.to_owned(), global);
        }
    }

    /// A topic of the application's own (a repartition topic), named without the
    /// application id the runtime prefixes it with.
    pub(crate) fn add_internal(&mut self, topic: &str) {
        self.internal.insert(topic.to_owned());
    }

    /// Refuses the topology, with `why`, when it is built.
    pub(crate) fn refuse(&mut self, why: String) {
        self.errors.push(why);
    }

    /// Refuses a store name that cannot name a changelog topic (and a partition on disk).
    fn check_store_name(&mut self, name: &str) {
        if !is_legal_store_name(name) {
            self.errors.push(format!(
                "store name {name:?}: ASCII letters, digits, '.', '_' and '-' only, 1 to 200 of them"
            ));
        }
    }

    /// A store a processor of the processor API uses; several may share one.
    pub(crate) fn connect_store(&mut self, name: &str) {
        self.check_store_name(name);
        self.stores.insert(name.to_owned());
    }

    pub(crate) fn add_store(&mut self, name: &str) {
        self.check_store_name(name);
        if !self.stores.insert(name.to_owned()) {
            self.errors
                .push(format!("two processors keep state in store {name:?}"));
        }
    }
}

pub(crate) type SharedDescription = Arc<Mutex<Description>>;

pub(crate) fn describe(description: &SharedDescription) -> MutexGuard<'_, Description> {
    description.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Describes a topology: streams from topics, what is done to them, where they go.
///
/// ```
/// use runnel_streams::{Consumed, Nullable, Produced, StreamsBuilder, StringSerde};
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream("lines", Consumed::with(Nullable(StringSerde), StringSerde))
///     .flat_map_values(|line: String| {
///         line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>()
///     })
///     .to("words", Produced::with(Nullable(StringSerde), StringSerde));
/// let topology = builder.build().expect("a valid topology");
/// assert_eq!(topology.source_topics(), ["lines"]);
/// ```
#[derive(Default)]
pub struct StreamsBuilder {
    description: SharedDescription,
}

impl fmt::Debug for StreamsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamsBuilder")
    }
}

impl StreamsBuilder {
    pub fn new() -> Self {
        StreamsBuilder::default()
    }

    /// The records of `topic`, read with `consumed`'s serdes. A topic may be read by one
    /// stream only (as in Kafka Streams); merge or branch the stream to use it twice.
    pub fn stream<K, V>(&self, topic: &str, consumed: Consumed<K, V>) -> KStream<K, V>
    where
        K: Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        stream_source(&self.description, topic, consumed)
    }

    /// The records of `topic` read as a table: each key's latest value, a null value
    /// deleting the key, kept in store `name` (or one named for it). Records with a null key
    /// are dropped, as Kafka Streams drops them.
    pub fn table<K, V>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        name: Option<&str>,
    ) -> KTable<K, V>
    where
        K: Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        let store = store_name(&self.description, name.map(str::to_owned), "KTABLE-SOURCE");
        let children: Children<K, Change<V>> = Arc::default();
        let Consumed { key, value } = consumed;
        let (table_key, table_value) = (Arc::clone(&key), Arc::clone(&value));
        let downstream_of = Arc::clone(&children);
        let store_of = store.clone();
        let factory: SourceFactory = Arc::new(move |instances: &mut Instances| {
            Box::new(TableSource {
                store: store_of.clone(),
                key: Arc::clone(&key),
                value: Arc::clone(&value),
                downstream: Downstream::build(&downstream_of, instances),
            }) as Box<dyn Source>
        });
        self.add_source(topic, factory);
        KTable::new(
            Arc::clone(&self.description),
            children,
            store,
            table_key,
            table_value,
        )
    }

    /// Every partition of `topic` as a table, in every task of the instance: a stream
    /// joins it by any key it computes, not only its own ([`KStream::join_global`]), and
    /// needs no co-partitioning. The table is read from the topic itself, which serves as
    /// its changelog; records with a null key are skipped, a null value deletes the key.
    pub fn global_table<K: 'static, V: 'static>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        name: Option<&str>,
    ) -> GlobalKTable<K, V> {
        let store = match name {
            Some(name) => name.to_owned(),
            None => {
                let id = describe(&self.description).node_id();
                format!("GLOBALKTABLE-SOURCE-STATE-STORE-{id:010}")
            }
        };
        let (key, value) = (Arc::clone(&consumed.key), Arc::clone(&consumed.value));
        let canonical: Canonical = Arc::new(move |raw_key: &[u8], raw_value: Option<&[u8]>| {
            let stored_key = key.serialize(&key.deserialize(Some(raw_key))?);
            let stored_value = match raw_value {
                Some(bytes) => value.serialize(&value.deserialize(Some(bytes))?),
                None => None,
            };
            Ok(stored_key.map(|stored_key| (stored_key, stored_value)))
        });
        let global = GlobalSource {
            store: store.clone(),
            canonical,
        };
        describe(&self.description).add_global(topic, global);
        GlobalKTable::new(store, consumed.key, consumed.value)
    }

    fn add_source(&self, topic: &str, factory: SourceFactory) {
        describe(&self.description).add_source(topic, factory);
    }

    /// The topology described, if it can run.
    pub fn build(self) -> Result<Topology, StreamsError> {
        let mut description = describe(&self.description);
        if let Some(error) = description.errors.first() {
            return Err(StreamsError::InvalidTopology(error.clone()));
        }
        if description.sources.is_empty() {
            // A global table alone is read, never processed.
            return Err(StreamsError::InvalidTopology(
                "no stream reads a topic".into(),
            ));
        }
        Ok(Topology {
            sources: std::mem::take(&mut description.sources),
            sinks: std::mem::take(&mut description.sinks),
            stores: std::mem::take(&mut description.stores),
            internal: std::mem::take(&mut description.internal),
            globals: std::mem::take(&mut description.globals),
        })
    }
}

/// A checked description of an application: its sources, its processors, its sinks.
pub struct Topology {
    sources: BTreeMap<String, SourceFactory>,
    sinks: BTreeSet<String>,
    stores: BTreeSet<String>,
    internal: BTreeSet<String>,
    globals: BTreeMap<String, GlobalSource>,
}

/// Turns a global topic's record into what its store keeps: the key and value as its
/// serdes write them (`None`: a key that serializes to null, not kept).
pub(crate) type Canonical = Arc<
    dyn Fn(&[u8], Option<&[u8]>) -> Result<Option<(Vec<u8>, Option<Vec<u8>>)>, SerdeError>
        + Send
        + Sync,
>;

/// A global table: its store, and how its topic's records are stored.
#[derive(Clone)]
pub(crate) struct GlobalSource {
    pub(crate) store: String,
    pub(crate) canonical: Canonical,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topology")
            .field("sources", &self.source_topics())
            .field("sinks", &self.sink_topics())
            .field("stores", &self.store_names())
            .finish()
    }
}

impl Topology {
    /// The topics it reads, in name order.
    pub fn source_topics(&self) -> Vec<&str> {
        self.sources.keys().map(String::as_str).collect()
    }

    /// The topics it writes, in name order.
    pub fn sink_topics(&self) -> Vec<&str> {
        self.sinks.iter().map(String::as_str).collect()
    }

    /// Its repartition topics, as it names them (the runtime prefixes them with the
    /// application id), in name order. They are among its sources and sinks too.
    pub fn internal_topics(&self) -> Vec<&str> {
        self.internal.iter().map(String::as_str).collect()
    }

    /// The topics of its global tables, in name order.
    pub fn global_topics(&self) -> Vec<&str> {
        self.globals.keys().map(String::as_str).collect()
    }

    /// The global table read from `topic`.
    pub(crate) fn global(&self, topic: &str) -> Option<&GlobalSource> {
        self.globals.get(topic)
    }

    /// Whether `store` is a global table's.
    pub(crate) fn is_global_store(&self, store: &str) -> bool {
        self.globals.values().any(|global| global.store == store)
    }

    /// The state stores its processors keep, in name order (global tables' are not among
    /// them: they have no changelog).
    pub fn store_names(&self) -> Vec<&str> {
        self.stores.iter().map(String::as_str).collect()
    }

    /// One task's processors: its sources by topic, each leading to its own graph.
    pub(crate) fn instantiate(&self) -> (BTreeMap<String, Box<dyn Source>>, Vec<SharedLifecycle>) {
        let mut instances = Instances::default();
        let sources = self
            .sources
            .iter()
            .map(|(topic, factory)| (topic.clone(), factory(&mut instances)))
            .collect();
        (sources, instances.take_lifecycles())
    }
}

/// A stream of `topic`'s records, read with `consumed`'s serdes.
pub(crate) fn stream_source<K, V>(
    description: &SharedDescription,
    topic: &str,
    consumed: Consumed<K, V>,
) -> KStream<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    let children: Children<K, V> = Arc::default();
    let Consumed { key, value } = consumed;
    let downstream_of = Arc::clone(&children);
    let factory: SourceFactory = Arc::new(move |instances: &mut Instances| {
        Box::new(TypedSource {
            key: Arc::clone(&key),
            value: Arc::clone(&value),
            downstream: Downstream::build(&downstream_of, instances),
        }) as Box<dyn Source>
    });
    describe(description).add_source(topic, factory);
    KStream::new(Arc::clone(description), children)
}

/// A source reading a topic into a table.
struct TableSource<K, V> {
    store: String,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    downstream: Downstream<K, Change<V>>,
}

impl<K: Clone + Send + 'static, V: Clone + Send + 'static> Source for TableSource<K, V> {
    fn process(&self, raw: RawRecord<'_>, context: &mut TaskContext) -> Result<(), StreamsError> {
        let failed = |part, source| StreamsError::Deserialize {
            topic: raw.topic.to_owned(),
            offset: raw.offset,
            part,
            source,
        };
        context.stream_time = context.stream_time.max(raw.timestamp);
        let Some(key_bytes) = raw.key else {
            context.dropped_records += 1;
            return Ok(());
        };
        let key = self
            .key
            .deserialize(Some(key_bytes))
            .map_err(|e| failed("key", e))?;
        let new = raw
            .value
            .map(|bytes| self.value.deserialize(Some(bytes)))
            .transpose()
            .map_err(|e| failed("value", e))?;
        let old = lookup(context, &self.store, &key, &*self.key, &*self.value)?;
        // Stored as the serdes write them, not as the topic held them: lookups serialize
        // the key they look for, and the foreign-key join hashes the value so written.
        if let Some(stored_key) = self.key.serialize(&key) {
            let stored_value = new.as_ref().and_then(|new| self.value.serialize(new));
            context.store(&self.store).put(stored_key, stored_value);
        }
        let mut change = Record::change(key, new, old, raw.timestamp);
        change.headers = raw.headers;
        self.downstream.forward(change, context)
    }
}

/// A source reading keys and values of known types.
struct TypedSource<K, V> {
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    downstream: Downstream<K, V>,
}

impl<K: Clone + Send + 'static, V: Clone + Send + 'static> Source for TypedSource<K, V> {
    fn process(&self, raw: RawRecord<'_>, context: &mut TaskContext) -> Result<(), StreamsError> {
        let failed = |part, source| StreamsError::Deserialize {
            topic: raw.topic.to_owned(),
            offset: raw.offset,
            part,
            source,
        };
        let key = self
            .key
            .deserialize(raw.key)
            .map_err(|e| failed("key", e))?;
        let value = self
            .value
            .deserialize(raw.value)
            .map_err(|e| failed("value", e))?;
        context.stream_time = context.stream_time.max(raw.timestamp);
        let record = Record {
            key,
            value,
            timestamp: raw.timestamp,
            headers: raw.headers,
        };
        self.downstream.forward(record, context)
    }
}
