//! The processors a task runs, and what connects them.
//!
//! A [`crate::Topology`] holds factories, not processors: each task builds its own graph
//! from them ([`Instances`]), once per node, so that a node two streams feed (a merge) is
//! one instance in the task, and the state a node will keep is the task's alone. A node
//! hands typed [`Record`]s to its [`Downstream`]; a sink serializes them into the task's
//! [`TaskContext`].

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::StreamsError;
use crate::store::{GlobalStores, KeyValueStore, TaskState};
use crate::task::SharedLifecycle;

/// A record as the processors see it: typed key and value, the event time (milliseconds
/// since the epoch, the record's timestamp unless an extractor says otherwise) and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<K, V> {
    pub key: K,
    pub value: V,
    pub timestamp: i64,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl<K, V> Record<K, V> {
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Record {
            key,
            value,
            timestamp,
            headers: Vec::new(),
        }
    }

    /// The same record with another key and value (timestamp and headers kept).
    pub fn with<K2, V2>(self, key: K2, value: V2) -> Record<K2, V2> {
        Record {
            key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }

    /// The record with the key and value `f` makes of its own (timestamp and headers kept).
    pub fn map<K2, V2>(self, f: impl FnOnce(K, V) -> (K2, V2)) -> Record<K2, V2> {
        let (key, value) = f(self.key, self.value);
        Record {
            key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }
}

/// A record a sink wrote, serialized, for the task to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Emitted {
    pub(crate) topic: String,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) timestamp: i64,
    pub(crate) headers: Vec<(String, Option<Vec<u8>>)>,
}

/// What a task's processors share: the records its sinks wrote, its state stores, its
/// stream time.
#[derive(Debug)]
pub(crate) struct TaskContext {
    pub(crate) emitted: Vec<Emitted>,
    pub(crate) stores: BTreeMap<String, KeyValueStore>,
    /// The largest timestamp the task has taken in; -1 before the first record.
    pub(crate) stream_time: i64,
    /// Records a processor could not use (an aggregation's null key or value), as Kafka's
    /// `dropped-records-total`.
    pub(crate) dropped_records: u64,
    /// The global tables' stores, shared with every task of the instance.
    pub(crate) globals: GlobalStores,
    /// Where the task keeps its stores on disk; `None`: in memory.
    pub(crate) local: Option<TaskState>,
}

impl TaskContext {
    pub(crate) fn new(globals: GlobalStores, local: Option<TaskState>) -> Self {
        TaskContext {
            emitted: Vec::new(),
            stores: BTreeMap::new(),
            stream_time: -1,
            dropped_records: 0,
            globals,
            local,
        }
    }

    /// The task's store `name`, created empty on first use.
    pub(crate) fn store(&mut self, name: &str) -> &mut KeyValueStore {
        let local = &self.local;
        self.stores
            .entry(name.to_owned())
            .or_insert_with(|| match local {
                Some(local) => KeyValueStore::on_disk(name, local.clone()),
                None => KeyValueStore::in_memory(name),
            })
    }
}

/// A node taking records of one type.
pub(crate) trait Node<K, V>: Send {
    fn process(
        &mut self,
        record: Record<K, V>,
        context: &mut TaskContext,
    ) -> Result<(), StreamsError>;
}

/// A task's instance of a node, shared by every parent that feeds it.
pub(crate) type Shared<K, V> = Arc<Mutex<dyn Node<K, V>>>;

/// Builds (or finds, if another parent built it first) a node's instance in a task.
pub(crate) type Factory<K, V> = Arc<dyn Fn(&mut Instances) -> Shared<K, V> + Send + Sync>;

/// The factories of the nodes a stream feeds: filled while the topology is described,
/// read when a task builds its graph.
pub(crate) type Children<K, V> = Arc<Mutex<Vec<Factory<K, V>>>>;

fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a user's function poisons the node; the task stops on that panic anyway.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The nodes one task has built so far, by node id.
#[derive(Default)]
pub(crate) struct Instances {
    made: HashMap<usize, Box<dyn Any + Send>>,
    /// Nodes to initialize when the task starts, in the order they were built.
    lifecycles: Vec<SharedLifecycle>,
}

impl Instances {
    /// Has the task initialize `node` when it starts.
    pub(crate) fn add_lifecycle(&mut self, node: SharedLifecycle) {
        self.lifecycles.push(node);
    }

    pub(crate) fn take_lifecycles(&mut self) -> Vec<SharedLifecycle> {
        std::mem::take(&mut self.lifecycles)
    }

    /// Node `id`'s instance: the one built before, or a new one from `make`.
    pub(crate) fn get_or_make<K: 'static, V: 'static>(
        &mut self,
        id: usize,
        make: impl FnOnce(&mut Instances) -> Shared<K, V>,
    ) -> Shared<K, V> {
        self.shared(id, make)
    }

    /// What the task keeps under `id`: the value made before, or a new one from `make`
    /// (a node's instance, or state two nodes share, as the sides of a join do).
    pub(crate) fn shared<T: Clone + Send + 'static>(
        &mut self,
        id: usize,
        make: impl FnOnce(&mut Instances) -> T,
    ) -> T {
        if let Some(made) = self.made.get(&id).and_then(|made| made.downcast_ref::<T>()) {
            return made.clone();
        }
        let made = make(self);
        self.made.insert(id, Box::new(made.clone()));
        made
    }
}

/// The instances of the nodes one node feeds.
pub(crate) struct Downstream<K, V> {
    nodes: Vec<Shared<K, V>>,
}

impl<K: Clone, V: Clone> Downstream<K, V> {
    pub(crate) fn build(children: &Children<K, V>, instances: &mut Instances) -> Self {
        let factories: Vec<Factory<K, V>> = lock(children).clone();
        Downstream {
            nodes: factories.iter().map(|factory| factory(instances)).collect(),
        }
    }

    /// Hands `record` to every node downstream, in the order they were added.
    pub(crate) fn forward(
        &self,
        record: Record<K, V>,
        context: &mut TaskContext,
    ) -> Result<(), StreamsError> {
        if let Some((last, rest)) = self.nodes.split_last() {
            for node in rest {
                lock(node).process(record.clone(), context)?;
            }
            lock(last).process(record, context)?;
        }
        Ok(())
    }
}

/// A topic's records, as they come in, before their serdes.
pub(crate) struct RawRecord<'a> {
    pub(crate) topic: &'a str,
    pub(crate) offset: i64,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) timestamp: i64,
    pub(crate) headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A source node: a topic's raw records in, typed records out.
pub(crate) trait Source: Send {
    fn process(&self, raw: RawRecord<'_>, context: &mut TaskContext) -> Result<(), StreamsError>;
}

/// Builds a source's instance in a task.
pub(crate) type SourceFactory = Arc<dyn Fn(&mut Instances) -> Box<dyn Source> + Send + Sync>;
