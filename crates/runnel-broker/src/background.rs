//! Periodic work: the time-based flush policy (`flush.ms`), segment rolling by age
//! (`segment.ms`), recovery-point checkpoints (`log.flush.offset.checkpoint.interval.ms`),
//! retention (`retention.ms`, `retention.bytes`) and the group coordinators' timers. The
//! timers run here; the disk work they start runs on the I/O pool.

use std::sync::Arc;
use std::time::Duration;

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

/// Rolls segments that are old enough and flushes partitions whose flush policy is due.
pub(crate) async fn flush_and_roll(broker: Arc<Broker>) {
    let mut ticker = Ticker::new(&broker, broker.config.flush_check_interval_ms);
    while ticker.tick().await {
        let scanner = Arc::clone(&broker);
        let due = broker.io.run(move || {
            let now = scanner.now_ms();
            all_partitions(&scanner)
                .into_iter()
                .filter(|partition| {
                    if let Err(error) = partition.with_log(|log| log.maybe_roll(now)) {
                        tracing::warn!(partition = %partition.name(), error = ?error.message, "segment roll failed");
                    }
                    partition.flush_due(now)
                })
                .collect::<Vec<_>>()
        });
        let Ok(due) = due.await else { return };
        for partition in due {
            // Everything appended so far.
            if let Err(error) = partition.sync_to(&broker.io, i64::MAX).await {
                tracing::warn!(partition = %partition.name(), error = ?error.message, "background flush failed");
            }
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

/// Deletes segments past retention, every `retention_check_interval_ms`.
pub(crate) async fn enforce_retention(broker: Arc<Broker>) {
    let mut ticker = Ticker::new(&broker, broker.config.retention_check_interval_ms);
    while ticker.tick().await {
        let cleaner = Arc::clone(&broker);
        let passed = broker.io.run(move || {
            let now = cleaner.now_ms();
            for topic in cleaner.topics.list() {
                if !topic.settings().retention_deletes {
                    continue;
                }
                for partition in topic.partitions() {
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
            }
        });
        if passed.await.is_err() {
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
