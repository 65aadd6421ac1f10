//! The processor API, for what the DSL does not cover: a [`Processor`] takes each record
//! with a [`ProcessorContext`] through which it forwards records downstream, reads and
//! writes the task's state stores ([`StoreHandle`]), and schedules punctuations, on stream
//! time or on the wall clock, that call it back.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use crate::error::StreamsError;
use crate::processor::{Downstream, Instances, Node, Record, Shared, TaskContext};
use crate::serdes::Serde;
use crate::stream::KStream;
use crate::task::{Lifecycle, PunctuationType, SharedLifecycle};
use crate::topology::describe;

/// A processor of records of key `K` and value `V` that forwards records of `KO` and `VO`.
/// One instance per task, made by the supplier given to [`KStream::process`].
pub trait Processor<K, V, KO, VO>: Send + 'static {
    /// Called once when the task starts, before any record: schedule punctuations here.
    fn init(&mut self, _context: &mut ProcessorContext<'_, KO, VO>) -> Result<(), StreamsError> {
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, V>,
        context: &mut ProcessorContext<'_, KO, VO>,
    ) -> Result<(), StreamsError>;

    /// A scheduled punctuation is due: `time` is the stream time or the wall clock.
    fn punctuate(
        &mut self,
        _time: i64,
        _kind: PunctuationType,
        _context: &mut ProcessorContext<'_, KO, VO>,
    ) -> Result<(), StreamsError> {
        Ok(())
    }
}

/// A typed handle on a state store a processor uses: its name and serdes.
pub struct StoreHandle<K, V> {
    name: String,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
}

impl<K, V> StoreHandle<K, V> {
    pub fn new(name: &str, key: impl Serde<K>, value: impl Serde<V>) -> Self {
        StoreHandle {
            name: name.to_owned(),
            key: Arc::new(key),
            value: Arc::new(value),
        }
    }
}

impl<K, V> fmt::Debug for StoreHandle<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreHandle({})", self.name)
    }
}

/// What a processor reaches its task through.
pub struct ProcessorContext<'a, KO, VO> {
    task: &'a mut TaskContext,
    downstream: &'a Downstream<KO, VO>,
    /// Punctuations asked for in `init`.
    scheduled: Vec<(i64, PunctuationType)>,
    output: PhantomData<fn(KO, VO)>,
}

impl<KO, VO> fmt::Debug for ProcessorContext<'_, KO, VO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessorContext")
            .field("stream_time", &self.task.stream_time)
            .finish()
    }
}

impl<'a, KO, VO> ProcessorContext<'a, KO, VO> {
    fn new(task: &'a mut TaskContext, downstream: &'a Downstream<KO, VO>) -> Self {
        ProcessorContext {
            task,
            downstream,
            scheduled: Vec::new(),
            output: PhantomData,
        }
    }
}

impl<KO: Clone + Send + 'static, VO: Clone + Send + 'static> ProcessorContext<'_, KO, VO> {
    /// Hands `record` to the processors downstream.
    pub fn forward(&mut self, record: Record<KO, VO>) -> Result<(), StreamsError> {
        self.downstream.forward(record, self.task)
    }

    /// The task's stream time: the largest record timestamp it has taken in, -1 before any.
    pub fn stream_time(&self) -> i64 {
        self.task.stream_time
    }

    /// Has [`Processor::punctuate`] called every `interval_ms` of `kind`'s time. Only in
    /// [`Processor::init`]; later calls are ignored.
    pub fn schedule(&mut self, interval_ms: i64, kind: PunctuationType) {
        if interval_ms > 0 {
            self.scheduled.push((interval_ms, kind));
        }
    }

    /// `key`'s value in `store`.
    pub fn get<K: 'static, V: 'static>(
        &mut self,
        store: &StoreHandle<K, V>,
        key: &K,
    ) -> Result<Option<V>, StreamsError> {
        crate::table::lookup(self.task, &store.name, key, &*store.key, &*store.value)
    }

    /// Sets `key` to `value` in `store`; `None` deletes it. A key that serializes to null
    /// is not stored.
    pub fn put<K: 'static, V: 'static>(
        &mut self,
        store: &StoreHandle<K, V>,
        key: &K,
        value: Option<&V>,
    ) {
        if let Some(key_bytes) = store.key.serialize(key) {
            let value = value.and_then(|value| store.value.serialize(value));
            self.task.store(&store.name).put(key_bytes, value);
        }
    }

    /// Every entry of `store`, in key-byte order.
    pub fn entries<K: 'static, V: 'static>(
        &mut self,
        store: &StoreHandle<K, V>,
    ) -> Result<Vec<(K, V)>, StreamsError> {
        let kept = self.task.store(&store.name);
        kept.entries()?
            .iter()
            .map(|(key, value)| {
                Ok((
                    kept.decode(key, &*store.key)?,
                    kept.decode(value, &*store.value)?,
                ))
            })
            .collect()
    }
}

struct ProcessNode<P, KO, VO> {
    processor: P,
    downstream: Downstream<KO, VO>,
}

impl<K, V, KO, VO, P> Node<K, V> for ProcessNode<P, KO, VO>
where
    P: Processor<K, V, KO, VO>,
    KO: Clone + Send + 'static,
    VO: Clone + Send + 'static,
{
    fn process(
        &mut self,
        record: Record<K, V>,
        task: &mut TaskContext,
    ) -> Result<(), StreamsError> {
        let ProcessNode {
            processor,
            downstream,
        } = self;
        let mut context = ProcessorContext::new(task, downstream);
        processor.process(record, &mut context)
    }
}

/// The lifecycle of a process node, for each input type it may take.
struct Lifecycled<K, V, P, KO, VO> {
    node: Arc<Mutex<ProcessNode<P, KO, VO>>>,
    input: PhantomData<fn(K, V)>,
}

impl<K, V, P, KO, VO> Lifecycled<K, V, P, KO, VO> {
    /// Calls `f` with the processor and a context on `task`.
    fn with_context<T>(
        &self,
        task: &mut TaskContext,
        f: impl FnOnce(&mut P, &mut ProcessorContext<'_, KO, VO>) -> T,
    ) -> T {
        let mut node = self
            .node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ProcessNode {
            processor,
            downstream,
        } = &mut *node;
        f(processor, &mut ProcessorContext::new(task, downstream))
    }
}

impl<K, V, P, KO, VO> Lifecycle for Lifecycled<K, V, P, KO, VO>
where
    K: 'static,
    V: 'static,
    P: Processor<K, V, KO, VO>,
    KO: Clone + Send + 'static,
    VO: Clone + Send + 'static,
{
    fn init(
        &mut self,
        task: &mut TaskContext,
    ) -> Result<Vec<(i64, PunctuationType)>, StreamsError> {
        self.with_context(task, |processor, context| {
            processor.init(context)?;
            Ok(std::mem::take(&mut context.scheduled))
        })
    }

    fn punctuate(
        &mut self,
        time: i64,
        kind: PunctuationType,
        task: &mut TaskContext,
    ) -> Result<(), StreamsError> {
        self.with_context(task, |processor, context| {
            processor.punctuate(time, kind, context)
        })
    }
}

impl<K, V> KStream<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// Runs a [`Processor`] on each record: `supplier` makes one per task; `stores` names
    /// the state stores it uses (created empty for each task).
    pub fn process<KO, VO, P>(
        &self,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        stores: &[&str],
    ) -> KStream<KO, VO>
    where
        KO: Clone + Send + 'static,
        VO: Clone + Send + 'static,
        P: Processor<K, V, KO, VO>,
    {
        for store in stores {
            describe(self.description()).connect_store(store);
        }
        self.add(move |downstream, instances: &mut Instances| {
            let node = Arc::new(Mutex::new(ProcessNode {
                processor: supplier(),
                downstream,
            }));
            let lifecycle: SharedLifecycle = Arc::new(Mutex::new(Lifecycled::<K, V, P, KO, VO> {
                node: Arc::clone(&node),
                input: PhantomData,
            }));
            instances.add_lifecycle(lifecycle);
            node as Shared<K, V>
        })
        // A processor may forward any key.
        .keys_changed(true)
    }
}
