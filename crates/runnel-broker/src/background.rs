//! Periodic work: the time-based flush policy (`flush.ms`), recovery-point checkpoints (`log.flush.offset.checkpoint.interval.ms`),
//! retention (`retention.ms`, `retention.bytes`), the group coordinators' timers and the
//! transaction coordinators' (timeouts, unfinished markers). The
//! timers run here; the disk work they start runs on the I/O pool.

use std::sync::Arc;
use std::time::Duration;

use runnel_storage::cleaner::{self, CleanerLimits};

use crate::broker::Broker;
use crate::partition::Partition;

/// A fixed-interval tick that ends when the broker shuts down.
struct Ticker {
    interval: tokio::time::Interval,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Ticker {
    fn new(broker: &Broker, interval_ms: u64) -> Self {
        let mut interval = tokio::time::interval(Duration::from_millis(interval_ms.max(1)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ticker {
            interval,
            shutdown: broker.shutdown_signal(),
        }
    }

    /// Waits for the next tick; false once the broker is stopping.
    async fn tick(&mut self) -> bool {
        tokio::select! {
            _ = self.interval.tick() => true,
            _ = self.shutdown.wait_for(|stop| *stop) => false,
        }
    }
}

/// Every partition on the broker.
fn all_partitions(broker: &Broker) -> Vec<Arc<Partition>> {
    broker
        .topics
        .list()
        .iter()
        .flat_map(|topic| topic.partitions())
        .collect()
}

/// Flushes partitions whose flush policy (`flush.ms`, `flush.messages`) is due. Only the
/// partitions with unflushed appends are looked at ([`crate::partition::Schedule`]): an idle partition
/// costs nothing here, however many there are. (`segment.ms` rolls a segment on the next
/// append, as in Kafka; retention rolls an expired active segment itself.)
pub(crate) async fn flush_due_partitions(broker: Arc<Broker>) {
    let mut ticker = Ticker::new(&broker, broker.config.flush_check_interval_ms);
    while ticker.tick().await {
        let scheduled = broker.topics.schedule().take();
        if scheduled.is_empty() {
            continue;
        }
        let scanner = Arc::clone(&broker);
        let due = broker.io.run(move || {
            let now = scanner.now_ms();
            let (due, waiting): (Vec<_>, Vec<_>) = scheduled
                .into_iter()
                .partition(|partition| partition.flush_due(now));
            for partition in waiting {
                partition.keep_scheduled_if_unflushed();
            }
            due
        });
        let Ok(due) = due.await else { return };
        for partition in due {
            // Everything appended so far.
            if let Err(error) = partition.sync_to(&broker.io, i64::MAX).await {
                tracing::warn!(partition = %partition.name(), error = ?error.message, "background flush failed");
            }
            partition.keep_scheduled_if_unflushed();
        }
    }
}

/// Writes each partition's recovery point and log start offset to its checkpoint file, so
/// that recovery after a crash scans only what was appended since.
pub(crate) async fn write_checkpoints(broker: Arc<Broker>) {
    let mut ticker = Ticker::new(&broker, broker.config.flush_offset_checkpoint_interval_ms);
    while ticker.tick().await {
        let writer = Arc::clone(&broker);
        let written = broker.io.run(move || {
            for partition in all_partitions(&writer) {
                if let Err(error) = partition.with_log(|log| log.checkpoint()) {
                    tracing::warn!(partition = %partition.name(), error = ?error.message, "writing the recovery checkpoint failed");
                }
            }
        });
        if written.await.is_err() {
            return;
        }
    }
}

/// Deletes segments past retention, every `retention_check_interval_ms`. Only the partitions
/// on retention's schedule are looked at ([`crate::partition::Schedule`]): those written to or
/// reconfigured since their last check, and those whose oldest data has expired by now.
pub(crate) async fn enforce_retention(broker: Arc<Broker>) {
    let mut ticker = Ticker::new(&broker, broker.config.retention_check_interval_ms);
    while ticker.tick().await {
        let cleaner = Arc::clone(&broker);
        let passed = broker.io.run(move || {
            let now = cleaner.now_ms();
            for partition in cleaner.topics.schedule().take_retention_due(now) {
                let deletes = cleaner
                    .topics
                    .get(partition.topic())
                    .is_some_and(|topic| topic.settings().retention_deletes);
                if deletes {
                    match partition.with_log(|log| log.enforce_retention(now)) {
                        Ok(0) => {}
                        Ok(deleted) => {
                            tracing::info!(partition = %partition.name(), deleted, "retention deleted segments")
                        }
                        Err(error) => {
                            tracing::warn!(partition = %partition.name(), error = ?error.message, "retention failed")
                        }
                    }
                }
                partition.retention_checked(deletes);
            }
        });
        if passed.await.is_err() {
            return;
        }
    }
}

/// Compacts the partitions of compacted topics (`cleanup.policy` has `compact`): every
/// `log.cleaner.backoff.ms` it plans a pass for each such partition (cheap, in memory) and
/// runs those that are dirty enough, one at a time, on a blocking thread of its own: a pass
/// reads and writes whole segments, throttled, and must not hold an I/O pool thread. The
/// partition lock is held only to plan and to swap the cleaned segments in.
pub(crate) async fn run_cleaner(broker: Arc<Broker>) {
    let mut ticker = Ticker::new(&broker, broker.config.log_cleaner_backoff_ms);
    while ticker.tick().await {
        let worker = Arc::clone(&broker);
        if tokio::task::spawn_blocking(move || clean_dirty_partitions(&worker))
            .await
            .is_err()
        {
            return;
        }
    }
}

fn clean_dirty_partitions(broker: &Broker) {
    let limits = CleanerLimits {
        dedupe_buffer_bytes: broker.config.log_cleaner_dedupe_buffer_size,
        io_bytes_per_second: broker.config.log_cleaner_io_max_bytes_per_second,
    };
    let mut stop = broker.shutdown_signal();
    for topic in broker.topics.list() {
        if !topic.settings().log.compact {
            continue;
        }
        for partition in topic.partitions() {
            if *stop.borrow_and_update() {
                return;
            }
            let now = broker.now_ms();
            let Ok(Some(plan)) = partition.with_log(|log| log.cleaning_plan(now)) else {
                continue;
            };
            let started = std::time::Instant::now();
            let cleaned = match cleaner::clean(&*broker.fs, &plan, &limits) {
                Ok(cleaned) => cleaned,
                Err(error) => {
                    tracing::error!(partition = %partition.name(), %error, "a compaction pass failed; the partition is left as it was");
                    continue;
                }
            };
            let saved = cleaned.bytes_saved();
            match partition.with_log(|log| log.install_cleaned(cleaned)) {
                Ok(segments) => tracing::info!(
                    partition = %partition.name(),
                    segments,
                    cleanable_bytes = plan.cleanable_bytes(),
                    saved_bytes = saved,
                    millis = started.elapsed().as_millis() as u64,
                    "compacted"
                ),
                Err(error) => {
                    tracing::error!(partition = %partition.name(), error = ?error.message, "could not install a compaction pass")
                }
            }
        }
    }
}

/// Aborts transactions past their timeout and finishes transactions whose markers are
/// missing (after a restart, or a disk error), every
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms`; the first look is at start.
pub(crate) async fn run_transaction_timers(broker: Arc<Broker>) {
    let mut ticker = Ticker::new(
        &broker,
        broker
            .config
            .transaction_abort_timed_out_transaction_cleanup_interval_ms,
    );
    while ticker.tick().await {
        // It may wait for in-sync replicas while it blocks: not on the I/O pool (see
        // `Broker::blocking_until_replicated`).
        let ticked = broker
            .blocking_until_replicated(|broker| broker.transactions.tick(broker))
            .await;
        if ticked.is_err() {
            return;
        }
    }
}

/// Drives the group coordinators' timers: session expiry, rebalance timeouts, offset expiry.
/// A request that may move the next deadline earlier wakes the loop to look again; only an
/// elapsed deadline ticks (a tick itself announces a new deadline).
pub(crate) async fn run_group_timers(broker: Arc<Broker>) {
    let mut shutdown = broker.shutdown_signal();
    let mut wait = Duration::ZERO;
    loop {
        let due = tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = broker.groups.deadline_changed() => false,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        // Ticking may write group records, and both it and reading the next deadline wait for
        // the coordinators' lock, which disk work holds: they belong on the I/O pool.
        let ticker = Arc::clone(&broker);
        let next = broker.io.run(move || {
            if due {
                ticker.groups.tick(&ticker.topics);
            }
            ticker.groups.next_wait()
        });
        match next.await {
            Ok(next) => wait = next,
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use runnel_record::BatchBuilder;
    use runnel_storage::sim::{ManualClock, SimFileSystem};

    use crate::broker::Broker;
    use crate::groups::OFFSETS_TOPIC;
    use crate::local_controller::LocalController;
    use crate::topics::Topic;

    const NOW_MS: i64 = 1_700_000_000_000;

    /// The broker of a one-node cluster on a simulated disk, leading a topic of 100
    /// partitions (and one `__consumer_offsets` partition). In a runtime: the group
    /// coordinator loads its partition on a task.
    fn broker_with_topic(
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> (Arc<Broker>, Arc<Topic>) {
        let clock = Arc::new(ManualClock::new(NOW_MS));
        let disk = SimFileSystem::new(clock.clone());
        let config = LocalController::broker_config("data");
        let mut controller = LocalController::new();
        controller.register(config.node_id);
        controller.create_topic(name, 100, configs);
        controller.create_topic(OFFSETS_TOPIC, 1, BTreeMap::new());
        let broker = Broker::open_with(config, Arc::new(disk), clock).expect("start");
        controller.start(&broker);
        let topic = broker.topics.get(name).expect("created");
        (broker, topic)
    }

    fn one_record(value: &[u8]) -> Vec<u8> {
        BatchBuilder::new(NOW_MS)
            .record(None, Some(value), &[])
            .build()
    }

    /// The flusher's list holds the partitions that were written and are not yet flushed;
    /// idle partitions are never on it, so they cost the flusher nothing.
    #[tokio::test]
    async fn only_written_partitions_are_scheduled_for_a_flush() {
        let (broker, topic) = broker_with_topic("idle-and-busy", BTreeMap::new());
        assert!(broker.topics.schedule().take().is_empty());

        let busy = topic.partition(7).expect("partition 7");
        busy.append(&mut one_record(b"x"), NOW_MS).expect("append");
        busy.append(&mut one_record(b"y"), NOW_MS).expect("append");
        let scheduled = broker.topics.schedule().take();
        assert_eq!(scheduled.len(), 1, "scheduled once, however many appends");
        assert_eq!(scheduled[0].index, 7);

        // Not flushed yet: it goes back on the list.
        scheduled[0].keep_scheduled_if_unflushed();
        let scheduled = broker.topics.schedule().take();
        assert_eq!(scheduled.len(), 1);
        scheduled[0].flush().expect("flush");
        scheduled[0].keep_scheduled_if_unflushed();
        assert!(broker.topics.schedule().take().is_empty());
    }

    /// Retention looks at a partition after it is written to, and again when its oldest data
    /// expires; idle partitions with nothing to expire are never looked at.
    #[tokio::test]
    async fn retention_looks_only_at_written_and_expiring_partitions() {
        let configs = [("retention.ms".to_string(), "1000".to_string())].into();
        let (broker, topic) = broker_with_topic("expiring", configs);
        let schedule = broker.topics.schedule();
        // New (and, at start, opened) partitions are looked at once.
        let first = schedule.take_retention_due(NOW_MS);
        assert_eq!(
            first.len(),
            101,
            "the topic's and __consumer_offsets' partitions"
        );
        for partition in &first {
            partition.retention_checked(true);
        }
        assert!(
            schedule.take_retention_due(NOW_MS + 1_000_000).is_empty(),
            "all empty: nothing expires"
        );

        let busy = topic.partition(7).expect("partition 7");
        busy.append(&mut one_record(b"x"), NOW_MS).expect("append");
        let written = schedule.take_retention_due(NOW_MS);
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].index, 7);
        written[0].retention_checked(true);
        assert!(
            schedule.take_retention_due(NOW_MS + 1_000).is_empty(),
            "not expired yet"
        );
        let expired = schedule.take_retention_due(NOW_MS + 1_001);
        assert_eq!(expired.len(), 1, "expired: looked at again");
        assert!(
            schedule.take_retention_due(NOW_MS + 1_001).is_empty(),
            "once"
        );
    }
}
