//! A compacted topic used as a replicated log of state, as Kafka Connect's `KafkaBasedLog`:
//! every worker reads it from the beginning and then follows it, handing each record to a
//! callback in order; [`TopicLog::read_to_end`] waits until what was in the topic when it
//! was called has been applied, so that a worker acts on what the leader saw.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use runnel_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, IsolationLevel, NewTopic, OffsetSpec,
    ProduceRecord, Producer, ProducerConfig, TopicPartition,
};

use crate::connector::ConnectError;

/// Called with each record's key and value (`None` for a tombstone), in log order.
pub type OnRecord = Box<dyn FnMut(Option<&[u8]>, Option<&[u8]>) + Send>;

/// How long `read_to_end` waits before giving up.
const READ_TO_END_TIMEOUT: Duration = Duration::from_secs(60);

fn failed(what: &str) -> impl Fn(runnel_client::ClientError) -> ConnectError + '_ {
    move |e| ConnectError::Failed(format!("{what}: {e}"))
}

/// A followed topic and a producer to it.
#[derive(Debug)]
pub struct TopicLog {
    topic: String,
    partitions: Vec<i32>,
    admin: Admin,
    producer: Producer,
    isolation: IsolationLevel,
    positions: Arc<Mutex<BTreeMap<i32, i64>>>,
    progress: Arc<tokio::sync::Notify>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for TopicLog {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl TopicLog {
    /// Opens `topic`, creating it compacted with `partitions` partitions if it is missing,
    /// and starts following it from the beginning.
    pub async fn open(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
        isolation: IsolationLevel,
        mut on_record: OnRecord,
    ) -> Result<TopicLog, ConnectError> {
        let admin = Admin::connect(ClientConfig::new(bootstrap))
            .await
            .map_err(failed("cannot reach the cluster"))?;
        let existing = admin
            .list_topics(false)
            .await
            .map_err(failed("cannot list topics"))?;
        if !existing.iter().any(|t| t.name == topic) {
            let brokers = admin
                .describe_cluster()
                .await
                .map_err(failed("cannot describe the cluster"))?
                .brokers
                .len();
            let replication = replication_factor
                .min(i16::try_from(brokers).unwrap_or(i16::MAX))
                .max(1);
            let created = admin
                .create_topic(
                    NewTopic::new(topic, partitions)
                        .with_replication_factor(replication)
                        .with_config("cleanup.policy", "compact"),
                )
                .await;
            if let Err(e) = created {
                // Another worker created it meanwhile; describing it below tells.
                tracing::info!(topic, error = %e, "creating the topic failed");
            }
        }
        let described = admin
            .describe_topic(topic)
            .await
            .map_err(failed("cannot describe the topic"))?;
        let partitions: Vec<i32> = described.partitions.iter().map(|p| p.partition).collect();
        let tps: Vec<TopicPartition> = partitions
            .iter()
            .map(|p| TopicPartition::new(topic, *p))
            .collect();

        let mut config = ConsumerConfig::new(bootstrap);
        config.isolation_level = isolation;
        let consumer = Consumer::connect(config)
            .await
            .map_err(failed("cannot connect a reader"))?;
        consumer
            .assign(tps.clone())
            .await
            .map_err(failed("cannot assign"))?;
        consumer
            .seek_to_beginning(&tps)
            .await
            .map_err(failed("cannot seek"))?;
        let positions = Arc::new(Mutex::new(BTreeMap::new()));
        let progress = Arc::new(tokio::sync::Notify::new());
        let reader = {
            let positions = positions.clone();
            let progress = progress.clone();
            let topic = topic.to_owned();
            tokio::spawn(async move {
                loop {
                    match consumer.poll(Duration::from_millis(200)).await {
                        Ok(records) => {
                            for record in &records {
                                on_record(record.key.as_deref(), record.value.as_deref());
                            }
                        }
                        Err(e) => {
                            tracing::warn!(topic, error = %e, "reading the topic failed; retrying");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                    for tp in &tps {
                        if let Ok(position) = consumer.position(tp).await {
                            positions
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .insert(tp.partition, position);
                        }
                    }
                    progress.notify_waiters();
                }
            })
        };
        let mut producer_config = ProducerConfig::new(bootstrap);
        producer_config.linger = Duration::ZERO;
        let producer = Producer::connect(producer_config)
            .await
            .map_err(failed("cannot connect a writer"))?;
        Ok(TopicLog {
            topic: topic.to_owned(),
            partitions,
            admin,
            producer,
            isolation,
            positions,
            progress,
            reader,
        })
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The producer writing to the topic (transactional writers bring their own).
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Waits until every record in the topic now has been handed to the callback.
    pub async fn read_to_end(&self) -> Result<(), ConnectError> {
        let ends = self
            .admin
            .list_offsets_isolated(
                &self.topic,
                &self.partitions,
                OffsetSpec::Latest,
                self.isolation,
            )
            .await
            .map_err(failed("cannot read the end of the topic"))?;
        let caught_up = || {
            let positions = self
                .positions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            ends.iter()
                .all(|(p, end)| positions.get(p).is_some_and(|pos| *pos >= end.offset))
        };
        let deadline = tokio::time::Instant::now() + READ_TO_END_TIMEOUT;
        while !caught_up() {
            let notified = self.progress.notified();
            if tokio::time::timeout_at(deadline, notified).await.is_err() && !caught_up() {
                return Err(ConnectError::Retriable(format!(
                    "{} was not read to its end within {READ_TO_END_TIMEOUT:?}",
                    self.topic
                )));
            }
        }
        Ok(())
    }

    /// Writes `records` (key, value or `None` for a tombstone) in order, and waits until the
    /// cluster acknowledged all of them.
    pub async fn write(
        &self,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), ConnectError> {
        let mut deliveries = Vec::with_capacity(records.len());
        for (key, value) in records {
            let mut record = ProduceRecord::new(self.topic.clone()).key(key);
            if let Some(value) = value {
                record = record.value(value);
            }
            deliveries.push(
                self.producer
                    .send(record)
                    .await
                    .map_err(failed("cannot write"))?,
            );
        }
        for delivery in deliveries {
            delivery
                .await
                .map_err(failed("a write was not acknowledged"))?;
        }
        Ok(())
    }
}
