//! [`Task`]: one instance of a topology, as a task of Kafka Streams is: the processors built
//! for it, its stores and stream time, and its punctuations. The test driver runs one; the
//! runtime will run one per input partition.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::StreamsError;
use crate::processor::{Emitted, RawRecord, Source, TaskContext};
use crate::store::{GlobalStores, TaskState};
use crate::topology::Topology;

/// What a punctuation's time is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PunctuationType {
    /// The task's stream time: the largest record timestamp it has taken in.
    StreamTime,
    /// The clock on the wall.
    WallClockTime,
}

/// A processor with a lifecycle: initialized when its task starts (where it asks for
/// punctuations), and called back when they are due.
pub(crate) trait Lifecycle: Send {
    fn init(
        &mut self,
        context: &mut TaskContext,
    ) -> Result<Vec<(i64, PunctuationType)>, StreamsError>;
    fn punctuate(
        &mut self,
        time: i64,
        kind: PunctuationType,
        context: &mut TaskContext,
    ) -> Result<(), StreamsError>;
}

pub(crate) type SharedLifecycle = Arc<Mutex<dyn Lifecycle>>;

fn lock(node: &SharedLifecycle) -> MutexGuard<'_, dyn Lifecycle + 'static> {
    node.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A scheduled punctuation.
struct Punctuation {
    interval: i64,
    kind: PunctuationType,
    /// When it is next due; `None` until the first time is known.
    next: Option<i64>,
    target: SharedLifecycle,
}

/// A write to a store, for its changelog: `(store, key, value)`, `None` deleting the key.
pub(crate) type StoreChange = (String, Vec<u8>, Option<Vec<u8>>);

pub(crate) struct Task {
    sources: BTreeMap<String, Box<dyn Source>>,
    pub(crate) context: TaskContext,
    punctuations: Vec<Punctuation>,
}

impl Task {
    /// Builds the topology's processors for a task and initializes them.
    pub(crate) fn new(
        topology: &Topology,
        wall_clock_ms: i64,
        globals: GlobalStores,
        local: Option<TaskState>,
    ) -> Result<Task, StreamsError> {
        let (sources, lifecycles) = topology.instantiate();
        let mut task = Task {
            sources,
            context: TaskContext::new(globals, local),
            punctuations: Vec::new(),
        };
        for target in lifecycles {
            let requested = lock(&target).init(&mut task.context)?;
            for (interval, kind) in requested {
                let next = match kind {
                    PunctuationType::WallClockTime => Some(wall_clock_ms + interval),
                    PunctuationType::StreamTime => None,
                };
                task.punctuations.push(Punctuation {
                    interval,
                    kind,
                    next,
                    target: Arc::clone(&target),
                });
            }
        }
        Ok(task)
    }

    /// Runs one record through the topology, then the stream-time punctuations it made due.
    pub(crate) fn process(&mut self, raw: RawRecord<'_>) -> Result<(), StreamsError> {
        let source = self
            .sources
            .get(raw.topic)
            .ok_or_else(|| StreamsError::UnknownTopic(raw.topic.to_owned()))?;
        source.process(raw, &mut self.context)?;
        let now = self.context.stream_time;
        self.punctuate(PunctuationType::StreamTime, now)
    }

    /// Whether a wall-clock punctuation is due at `now_ms`.
    pub(crate) fn wall_clock_due(&self, now_ms: i64) -> bool {
        self.punctuations.iter().any(|punctuation| {
            punctuation.kind == PunctuationType::WallClockTime
                && punctuation.next.is_some_and(|next| next <= now_ms)
        })
    }

    /// Runs the wall-clock punctuations due at `now_ms`.
    pub(crate) fn advance_wall_clock(&mut self, now_ms: i64) -> Result<(), StreamsError> {
        self.punctuate(PunctuationType::WallClockTime, now_ms)
    }

    /// Calls each punctuation of `kind` due by `now`: once, however many intervals passed
    /// (as Kafka Streams does), then it is next due an interval after `now`'s last tick.
    fn punctuate(&mut self, kind: PunctuationType, now: i64) -> Result<(), StreamsError> {
        if now < 0 {
            return Ok(());
        }
        for punctuation in self.punctuations.iter_mut().filter(|p| p.kind == kind) {
            let due = *punctuation.next.get_or_insert(now);
            if now < due {
                continue;
            }
            let ticks = (now - due) / punctuation.interval;
            punctuation.next = Some(due + (ticks + 1) * punctuation.interval);
            lock(&punctuation.target).punctuate(now, kind, &mut self.context)?;
        }
        Ok(())
    }

    /// What the task's sinks wrote since the last call.
    pub(crate) fn take_emitted(&mut self) -> Vec<Emitted> {
        std::mem::take(&mut self.context.emitted)
    }

    /// The writes to each store since the last call.
    pub(crate) fn take_store_changes(&mut self) -> Vec<StoreChange> {
        let mut changes = Vec::new();
        for (name, store) in &mut self.context.stores {
            for (key, value) in store.take_changes() {
                changes.push((name.clone(), key, value));
            }
        }
        changes
    }

    /// Restores `store`'s `key` to `value` from its changelog.
    pub(crate) fn restore(&mut self, store: &str, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.context.store(store).restore(key, value);
    }

    pub(crate) fn reads(&self, topic: &str) -> bool {
        self.sources.contains_key(topic)
    }
}
