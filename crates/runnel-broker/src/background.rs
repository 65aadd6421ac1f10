//! Periodic work: the time-based flush policy (`flush.ms`), segment rolling by age
//! (`segment.ms`), retention (`retention.ms`, `retention.bytes`) and the group coordinators'
//! timers.

use std::sync::Arc;
use std::time::Duration;

use crate::broker::{now_ms, Broker};

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

/// Flushes partitions whose flush policy is due and rolls segments that are old enough.
pub(crate) async fn flush_and_roll(broker: Arc<Broker>) {
    let mut ticker = Ticker::new(&broker, broker.config.flush_check_interval_ms);
    while ticker.tick().await {
        for topic in broker.topics.list() {
            for partition in topic.partitions() {
                let now = now_ms();
                if let Err(error) = partition.with_log(|log| Ok(log.maybe_roll(now)?)) {
                    tracing::warn!(topic = %topic.name, partition = partition.index, error = ?error.message, "segment roll failed");
                }
                if partition.flush_due(now) {
                    let end = partition.high_watermark();
                    if let Err(error) = partition.sync_to(end).await {
                        tracing::warn!(topic = %topic.name, partition = partition.index, error = ?error.message, "background flush failed");
                    }
                }
            }
        }
    }
}

/// Deletes segments past retention, every `retention_check_interval_ms`.
pub(crate) async fn enforce_retention(broker: Arc<Broker>) {
    let mut ticker = Ticker::new(&broker, broker.config.retention_check_interval_ms);
    while ticker.tick().await {
        for topic in broker.topics.list() {
            if !topic.settings().retention_deletes {
                continue;
            }
            for partition in topic.partitions() {
                match partition.with_log(|log| Ok(log.enforce_retention(now_ms())?)) {
                    Ok(0) => {}
                    Ok(deleted) => {
                        tracing::info!(topic = %topic.name, partition = partition.index, deleted, "retention deleted segments")
                    }
                    Err(error) => {
                        tracing::warn!(topic = %topic.name, partition = partition.index, error = ?error.message, "retention failed")
                    }
                }
            }
        }
    }
}

/// Drives the group coordinators' timers: session expiry, rebalance timeouts, offset expiry.
pub(crate) async fn run_group_timers(broker: Arc<Broker>) {
    let mut shutdown = broker.shutdown_signal();
    loop {
        let wait = broker.groups.next_wait();
        tokio::select! {
            _ = tokio::time::sleep(wait) => broker.groups.tick(&broker.topics),
            _ = broker.groups.deadline_changed() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
