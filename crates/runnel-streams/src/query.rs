//! What a running application lets its owner see: its metrics ([`StreamsMetrics`], as
//! Kafka Streams' `process-total`, `dropped-records-total` and restore metrics) and its
//! local stores, read while it runs ([`ReadOnlyKeyValueStore`], Kafka's interactive
//! queries of local state).
//!
//! A query goes to the stream thread, which answers between two polls from the stores of
//! the tasks this instance runs (a key lives in the task of its partition, so at most one
//! of them has it) or from a global table's store: the answer is the state as processed so
//! far, committed or not, as Kafka Streams' is.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::error::StreamsError;
use crate::serdes::Serde;

/// Counts kept by a running application, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamsMetrics {
    /// Input records processed (`process-total`).
    pub processed_records: u64,
    /// Records a processor could not use: null keys or values where an aggregation or a
    /// join needs them, and records later than their window's grace
    /// (`dropped-records-total`).
    pub dropped_records: u64,
    /// Commits: input offsets, outputs and state made durable together.
    pub commits: u64,
    /// Changelog records read back into stores when tasks started (`restore-total`).
    pub restored_records: u64,
}

impl StreamsMetrics {
    /// These counts in the OpenMetrics text format Prometheus scrapes, labelled with the
    /// application id: what an application serves at its own `/metrics`, the way the broker
    /// serves its own (see docs/metrics.md).
    ///
    /// ```
    /// let metrics = runnel_streams::StreamsMetrics { processed_records: 7, ..Default::default() };
    /// let text = metrics.openmetrics("clicks-per-page");
    /// assert!(text.contains("runnel_streams_processed_records_total{application_id=\"clicks-per-page\"} 7"));
    /// ```
    pub fn openmetrics(&self, application_id: &str) -> String {
        let mut out = runnel_metrics::Exposition::default();
        let labels = || vec![("application_id", application_id.to_owned())];
        for (name, help, value) in [
            (
                "runnel_streams_processed_records",
                "Input records processed (Kafka Streams' process-total).",
                self.processed_records,
            ),
            (
                "runnel_streams_dropped_records",
                "Records a processor could not use: null keys or values where they are needed, or later than their window's grace.",
                self.dropped_records,
            ),
            (
                "runnel_streams_commits",
                "Commits: input offsets, outputs and state made durable together.",
                self.commits,
            ),
            (
                "runnel_streams_restored_records",
                "Changelog records read back into stores when tasks started.",
                self.restored_records,
            ),
        ] {
            out.counters(name, help, None, [(labels(), value)]);
        }
        out.render()
    }
}

/// The counters behind [`StreamsMetrics`], shared by the stream thread and the handle.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    processed_records: AtomicU64,
    dropped_records: AtomicU64,
    commits: AtomicU64,
    restored_records: AtomicU64,
}

impl Metrics {
    pub(crate) fn processed(&self, records: u64, dropped: u64) {
        self.processed_records.fetch_add(records, Ordering::Relaxed);
        self.dropped_records.fetch_add(dropped, Ordering::Relaxed);
    }

    pub(crate) fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn restored(&self, records: u64) {
        self.restored_records.fetch_add(records, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StreamsMetrics {
        StreamsMetrics {
            processed_records: self.processed_records.load(Ordering::Relaxed),
            dropped_records: self.dropped_records.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            restored_records: self.restored_records.load(Ordering::Relaxed),
        }
    }
}

/// What a query asks of a store.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// One key's value.
    Get(Vec<u8>),
    /// Every entry with a key in `from..to`.
    Range(Vec<u8>, Vec<u8>),
    /// Every entry.
    All,
}

/// Entries found, in key-byte order.
pub(crate) type Found = Result<Vec<(Vec<u8>, Vec<u8>)>, StreamsError>;

/// A query on its way to the stream thread.
#[derive(Debug)]
pub(crate) struct Query {
    pub(crate) store: String,
    pub(crate) lookup: Lookup,
    pub(crate) reply: oneshot::Sender<Found>,
}

/// A read-only view of one of the application's stores on this instance, its keys and
/// values read with the serdes given (for a windowed aggregation's store, a
/// [`crate::WindowedSerde`] or [`crate::SessionWindowedSerde`] key).
pub struct ReadOnlyKeyValueStore<K, V> {
    store: String,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    queries: mpsc::Sender<Query>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> fmt::Debug for ReadOnlyKeyValueStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReadOnlyKeyValueStore({})", self.store)
    }
}

impl<K: 'static, V: 'static> ReadOnlyKeyValueStore<K, V> {
    pub(crate) fn new(
        store: &str,
        key: impl Serde<K>,
        value: impl Serde<V>,
        queries: mpsc::Sender<Query>,
    ) -> Self {
        ReadOnlyKeyValueStore {
            store: store.to_owned(),
            key: Arc::new(key),
            value: Arc::new(value),
            queries,
            _types: PhantomData,
        }
    }

    async fn ask(&self, lookup: Lookup) -> Result<Vec<(K, V)>, StreamsError> {
        let (reply, answer) = oneshot::channel();
        let query = Query {
            store: self.store.clone(),
            lookup,
            reply,
        };
        let stopped = || StreamsError::Client("the application is not running".into());
        self.queries.send(query).await.map_err(|_| stopped())?;
        let found = answer.await.map_err(|_| stopped())??;
        let failed = |source| StreamsError::Store {
            store: self.store.clone(),
            source,
        };
        found
            .iter()
            .map(|(key, value)| {
                Ok((
                    self.key.deserialize(Some(key)).map_err(failed)?,
                    self.value.deserialize(Some(value)).map_err(failed)?,
                ))
            })
            .collect()
    }

    /// `key`'s value, if one of this instance's tasks (or the global table) has it.
    pub async fn get(&self, key: &K) -> Result<Option<V>, StreamsError> {
        let Some(bytes) = self.key.serialize(key) else {
            return Ok(None);
        };
        Ok(self
            .ask(Lookup::Get(bytes))
            .await?
            .into_iter()
            .next()
            .map(|(_, value)| value))
    }

    /// The entries whose keys' bytes are in `from..to`, in key-byte order.
    pub async fn range(&self, from: &K, to: &K) -> Result<Vec<(K, V)>, StreamsError> {
        match (self.key.serialize(from), self.key.serialize(to)) {
            (Some(from), Some(to)) => self.ask(Lookup::Range(from, to)).await,
            _ => Ok(Vec::new()),
        }
    }

    /// Every entry this instance holds, in key-byte order.
    pub async fn all(&self) -> Result<Vec<(K, V)>, StreamsError> {
        self.ask(Lookup::All).await
    }
}
