//! [`TopologyTestDriver`]: runs a topology without a broker, one record at a time, for
//! users' unit tests (Kafka Streams' driver of the same name). Input topics have one
//! partition, so the driver is one task; every record piped in has gone through the whole
//! topology when `pipe_input` returns, and what the sinks wrote waits in the output topics.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use crate::error::StreamsError;
use crate::processor::{Emitted, RawRecord};
use crate::serdes::{Serde, SerdeError};
use crate::store::GlobalStores;
use crate::task::Task;
use crate::topology::{GlobalSource, Topology};

/// A topic records are piped into, with the serdes to write them.
pub struct TestInputTopic<K, V> {
    name: String,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
}

impl<K, V> TestInputTopic<K, V> {
    pub fn new(name: &str, key: impl Serde<K>, value: impl Serde<V>) -> Self {
        TestInputTopic {
            name: name.to_owned(),
            key: Arc::new(key),
            value: Arc::new(value),
        }
    }
}

impl<K, V> fmt::Debug for TestInputTopic<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TestInputTopic({})", self.name)
    }
}

/// A topic records are read from, with the serdes to read them.
pub struct TestOutputTopic<K, V> {
    name: String,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
}

impl<K, V> TestOutputTopic<K, V> {
    pub fn new(name: &str, key: impl Serde<K>, value: impl Serde<V>) -> Self {
        TestOutputTopic {
            name: name.to_owned(),
            key: Arc::new(key),
            value: Arc::new(value),
        }
    }
}

impl<K, V> fmt::Debug for TestOutputTopic<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TestOutputTopic({})", self.name)
    }
}

/// A record the topology wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord<K, V> {
    pub key: K,
    pub value: V,
    pub timestamp: i64,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

pub struct TopologyTestDriver {
    task: Task,
    /// Repartition topics: read back at once, never output.
    internal: BTreeSet<String>,
    /// Global tables' topics, and their stores.
    global_topics: BTreeMap<String, GlobalSource>,
    globals: GlobalStores,
    wall_clock_ms: i64,
    next_offsets: HashMap<String, i64>,
    outputs: HashMap<String, VecDeque<Emitted>>,
}

impl fmt::Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopologyTestDriver")
            .field("stream_time", &self.task.context.stream_time)
            .field("wall_clock_ms", &self.wall_clock_ms)
            .finish()
    }
}

impl TopologyTestDriver {
    /// A driver running `topology` as one task, its wall clock at 0.
    ///
    /// # Errors
    /// What a processor's `init` returns.
    pub fn new(topology: &Topology) -> Result<Self, StreamsError> {
        let globals = GlobalStores::default();
        let global_topics = topology
            .global_topics()
            .into_iter()
            .filter_map(|topic| Some((topic.to_owned(), topology.global(topic)?.clone())))
            .collect();
        Ok(TopologyTestDriver {
            task: Task::new(topology, 0, globals.clone(), None)?,
            global_topics,
            globals,
            internal: topology
                .internal_topics()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            wall_clock_ms: 0,
            next_offsets: HashMap::new(),
            outputs: HashMap::new(),
        })
    }

    /// Runs one record with `key`, `value` and `timestamp` through the topology.
    pub fn pipe_input<K: 'static, V: 'static>(
        &mut self,
        topic: &TestInputTopic<K, V>,
        key: K,
        value: V,
        timestamp: i64,
    ) -> Result<(), StreamsError> {
        let key = topic.key.serialize(&key);
        let value = topic.value.serialize(&value);
        self.pipe_raw(&topic.name, key.as_deref(), value.as_deref(), timestamp)
    }

    /// Runs one record of raw bytes (null where `None`) through the topology: what a topic
    /// written by another application may hold.
    pub fn pipe_raw(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
    ) -> Result<(), StreamsError> {
        if let Some(global) = self.global_topics.get(topic) {
            // A global table's store is its topic as its serdes write it: no processor runs.
            if let Some(key) = key {
                let offset = self.next_offsets.entry(topic.to_owned()).or_insert(0);
                *offset += 1;
                let at = *offset - 1;
                self.globals
                    .apply_record(global, key, value)
                    .map_err(|source| StreamsError::Deserialize {
                        topic: topic.to_owned(),
                        offset: at,
                        part: "key or value",
                        source,
                    })?;
            }
            return Ok(());
        }
        if !self.task.reads(topic) || self.internal.contains(topic) {
            return Err(StreamsError::UnknownTopic(topic.to_owned()));
        }
        let first = Emitted {
            topic: topic.to_owned(),
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            timestamp,
            headers: Vec::new(),
        };
        let result = self.process(first);
        self.collect_output();
        result
    }

    /// Runs one record through the task, then what it wrote to topics the topology reads
    /// (repartition topics, `through`), oldest first, until nothing is left to read back.
    /// A queue, not recursion: a topology feeding its own input must not exhaust the stack.
    fn process(&mut self, first: Emitted) -> Result<(), StreamsError> {
        let mut pending = VecDeque::from([first]);
        while let Some(record) = pending.pop_front() {
            let offset = self.next_offsets.entry(record.topic.clone()).or_insert(0);
            let raw = RawRecord {
                topic: &record.topic,
                offset: *offset,
                key: record.key.as_deref(),
                value: record.value.as_deref(),
                timestamp: record.timestamp,
                headers: record.headers.clone(),
            };
            *offset += 1;
            self.task.process(raw)?;
            let emitted = self.task.take_emitted();
            // What went to a topic the topology reads is read back; what went to a user's
            // topic is output too.
            pending.extend(
                emitted
                    .iter()
                    .filter(|emitted| self.task.reads(&emitted.topic))
                    .cloned(),
            );
            self.task.context.emitted = emitted
                .into_iter()
                .filter(|emitted| !self.internal.contains(&emitted.topic))
                .collect();
            self.collect_output();
        }
        Ok(())
    }

    /// Moves the wall clock on by `millis`, running the wall-clock punctuations due.
    pub fn advance_wall_clock_time(&mut self, millis: i64) -> Result<(), StreamsError> {
        self.wall_clock_ms += millis;
        let result = self.task.advance_wall_clock(self.wall_clock_ms);
        self.collect_output();
        result
    }

    fn collect_output(&mut self) {
        // No broker, no changelog: the driver's stores are its only copy.
        let _ = self.task.take_store_changes();
        for emitted in self.task.take_emitted() {
            self.outputs
                .entry(emitted.topic.clone())
                .or_default()
                .push_back(emitted);
        }
    }

    /// The oldest record written to `topic` and not read yet.
    pub fn read_output<K: 'static, V: 'static>(
        &mut self,
        topic: &TestOutputTopic<K, V>,
    ) -> Result<Option<OutputRecord<K, V>>, SerdeError> {
        let Some(emitted) = self
            .outputs
            .get_mut(&topic.name)
            .and_then(VecDeque::pop_front)
        else {
            return Ok(None);
        };
        Ok(Some(OutputRecord {
            key: topic.key.deserialize(emitted.key.as_deref())?,
            value: topic.value.deserialize(emitted.value.as_deref())?,
            timestamp: emitted.timestamp,
            headers: emitted.headers,
        }))
    }

    /// Every record written to `topic` and not read yet, oldest first.
    pub fn read_all_output<K: 'static, V: 'static>(
        &mut self,
        topic: &TestOutputTopic<K, V>,
    ) -> Result<Vec<OutputRecord<K, V>>, SerdeError> {
        let mut records = Vec::new();
        while let Some(record) = self.read_output(topic)? {
            records.push(record);
        }
        Ok(records)
    }

    /// The keys and values written to `topic` and not read yet, as `(key, value)` pairs.
    pub fn read_key_values<K: 'static, V: 'static>(
        &mut self,
        topic: &TestOutputTopic<K, V>,
    ) -> Result<Vec<(K, V)>, SerdeError> {
        Ok(self
            .read_all_output(topic)?
            .into_iter()
            .map(|record| (record.key, record.value))
            .collect())
    }

    /// The contents of state store `name` (a global table's too), read with `key` and
    /// `value`, in key-byte order; `None` if nothing has been written to it yet.
    pub fn read_store<K: 'static, V: 'static>(
        &self,
        name: &str,
        key: impl Serde<K>,
        value: impl Serde<V>,
    ) -> Result<Option<Vec<(K, V)>>, SerdeError> {
        let entries = match self.task.context.stores.get(name) {
            Some(store) => Some(store.entries()),
            None => self.globals.entries(name).transpose(),
        };
        let Some(entries) = entries else {
            return Ok(None);
        };
        let entries = entries.map_err(|error| SerdeError(error.to_string()))?;
        entries
            .iter()
            .map(|(k, v)| Ok((key.deserialize(Some(k))?, value.deserialize(Some(v))?)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Records processors could not use (an aggregation's null key or value).
    pub fn dropped_records(&self) -> u64 {
        self.task.context.dropped_records
    }

    /// The largest timestamp piped in so far; -1 before the first record.
    pub fn stream_time(&self) -> i64 {
        self.task.context.stream_time
    }
}
