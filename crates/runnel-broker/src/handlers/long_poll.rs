//! The long poll shared by both kinds of Fetch: read every partition asked, and while the
//! answers are not worth sending yet, sleep on the partitions' position channels until one
//! moves, the deadline passes or the broker stops. After a wake-up only the partitions whose
//! channel moved are read again; the others keep their answer. Reads run on the I/O pool.
//!
//! A consumer fetch watches high watermarks (it reads below them); a follower's watches log
//! ends (it copies up to them). What a read is and when answers are enough is the caller's
//! [`PollPlan`].

use std::sync::Arc;

use futures::future::select_all;
use kafka_protocol::messages::fetch_response::PartitionData;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::broker::Broker;
use crate::error::ApiError;
use crate::partition::Partition;

/// One partition a fetch asked for, resolved before the first read.
pub(crate) trait Wanted {
    fn index(&self) -> i32;
    fn target(&self) -> Result<&Arc<Partition>, &ApiError>;
}

/// What one kind of fetch reads and when it answers.
pub(crate) trait PollPlan: Send + Sync + 'static {
    type Wanted: Wanted;

    /// The partitions asked, in request order.
    fn wanted(&self) -> &[Self::Wanted];

    /// The channel whose moves may change a partition's answer.
    fn channel(partition: &Partition) -> watch::Receiver<i64>;

    /// Reads one partition, given how many record bytes the answers before it carry (the
    /// first partition with data gets at least one whole batch, so the reader progresses).
    /// Blocks.
    fn read(
        &self,
        wanted: &Self::Wanted,
        partition: &Arc<Partition>,
        bytes_before: usize,
        now_ms: i64,
    ) -> Result<PartitionData, ApiError>;

    /// Whether these answers (carrying `bytes` of records) go out before the deadline.
    fn enough(&self, answers: &[PartitionData], bytes: usize) -> bool;
}

/// Every partition's answer, in request order, once the plan finds them enough, or at
/// `deadline`, or when the broker stops.
pub(crate) async fn answer<P: PollPlan>(
    broker: &Broker,
    plan: Arc<P>,
    deadline: Instant,
) -> Vec<PartitionData> {
    let mut watchers = Watchers::subscribe::<P>(plan.wanted());
    let mut shutdown = broker.shutdown_signal();
    let mut answers: Vec<PartitionData> = Vec::new();
    let mut moved: Vec<usize> = Vec::new();
    loop {
        let pass = Arc::clone(&plan);
        let previous = std::mem::take(&mut answers);
        let now_ms = broker.now_ms();
        let read = broker
            .io
            .run(move || read_pass(&*pass, previous, &moved, now_ms))
            .await;
        let bytes;
        (answers, bytes) = match read {
            Ok(read) => read,
            Err(error) => {
                let error = ApiError::from(error);
                return plan
                    .wanted()
                    .iter()
                    .map(|wanted| error_partition(wanted.index(), &error))
                    .collect();
            }
        };
        if plan.enough(&answers, bytes) || watchers.is_empty() || Instant::now() >= deadline {
            return answers;
        }
        moved = match watchers.wait(deadline, &mut shutdown).await {
            Some(moved) => moved,
            None => return answers,
        };
    }
}

/// A partition's answer when it cannot be read.
pub(crate) fn error_partition(index: i32, error: &ApiError) -> PartitionData {
    let mut data = PartitionData::default();
    data.partition_index = index;
    data.high_watermark = -1;
    data.error_code = error.error_code();
    data
}

/// One pass, in request order: partitions without an answer yet (the first pass) or whose
/// channel moved are read; the others keep their answer. Returns the answers and the record
/// bytes they carry. Blocks.
fn read_pass<P: PollPlan>(
    plan: &P,
    previous: Vec<PartitionData>,
    moved: &[usize],
    now_ms: i64,
) -> (Vec<PartitionData>, usize) {
    let mut previous = previous.into_iter();
    let mut bytes = 0usize;
    let answers = plan
        .wanted()
        .iter()
        .map(|wanted| {
            let kept = previous.next();
            let data = match (kept, wanted.target()) {
                (Some(kept), Ok(partition)) if !moved.contains(&address(partition)) => kept,
                (Some(kept), Err(_)) => kept,
                (_, target) => target
                    .map_err(Clone::clone)
                    .and_then(|partition| plan.read(wanted, partition, bytes, now_ms))
                    .unwrap_or_else(|error| error_partition(wanted.index(), &error)),
            };
            bytes += data.records.as_ref().map_or(0, |records| records.len());
            data
        })
        .collect();
    (answers, bytes)
}

/// A partition's identity while a fetch runs: a request may name one partition many times.
fn address(partition: &Arc<Partition>) -> usize {
    Arc::as_ptr(partition) as usize
}

/// One receiver per distinct partition asked, taken before the first read so that a move
/// between a read and the wait still wakes the fetch.
struct Watchers(Vec<(usize, watch::Receiver<i64>)>);

impl Watchers {
    fn subscribe<P: PollPlan>(wanted: &[P::Wanted]) -> Self {
        let mut watchers: Vec<(usize, watch::Receiver<i64>)> = Vec::new();
        for partition in wanted.iter().filter_map(|wanted| wanted.target().ok()) {
            if !watchers.iter().any(|(seen, _)| *seen == address(partition)) {
                watchers.push((address(partition), P::channel(partition)));
            }
        }
        Watchers(watchers)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Waits until a channel moves and returns the partitions whose channel did, marking
    /// their values seen; `None` at `deadline` or when the broker stops.
    async fn wait(
        &mut self,
        deadline: Instant,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Vec<usize>> {
        // `changed()` marks the value it waited for seen: the receiver that woke the wait is
        // known by its index, not by `has_changed`.
        let (woken, woken_closed) = tokio::select! {
            (changed, index, _) = select_all(
                self.0.iter_mut().map(|(_, receiver)| Box::pin(receiver.changed())),
            ) => (index, changed.is_err()),
            _ = tokio::time::sleep_until(deadline) => return None,
            _ = shutdown.wait_for(|stop| *stop) => return None,
        };
        // The others are marked seen before the read, so that a move during it wakes the
        // next wait. A closed channel (its partition left this broker) is read once more and
        // not watched again: it would wake every wait at once.
        let mut moved = Vec::new();
        let mut index = 0;
        self.0.retain_mut(|(partition, receiver)| {
            let closed = if index == woken {
                woken_closed
            } else {
                match receiver.has_changed() {
                    Ok(false) => {
                        index += 1;
                        return true;
                    }
                    Ok(true) => {
                        receiver.borrow_and_update();
                        false
                    }
                    Err(_) => true,
                }
            };
            index += 1;
            moved.push(*partition);
            !closed
        });
        Some(moved)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[tokio::test]
    async fn the_channel_that_wakes_a_wait_is_among_those_read_again() {
        let (first, first_receiver) = watch::channel(0);
        let (second, second_receiver) = watch::channel(0);
        let (_running, mut shutdown) = watch::channel(false);
        let mut watchers = Watchers(vec![(1, first_receiver), (2, second_receiver)]);

        second.send_replace(5);
        assert_eq!(watchers.wait(far(), &mut shutdown).await, Some(vec![2]));

        first.send_replace(7);
        second.send_replace(6);
        let mut moved = watchers.wait(far(), &mut shutdown).await.unwrap();
        moved.sort();
        assert_eq!(
            moved,
            vec![1, 2],
            "every channel that moved, not only the first"
        );

        let deadline = Instant::now() + Duration::from_millis(50);
        assert_eq!(
            watchers.wait(deadline, &mut shutdown).await,
            None,
            "what was read is not news again"
        );
    }

    #[tokio::test]
    async fn a_closed_channel_is_read_once_more_then_no_longer_watched() {
        let (first, first_receiver) = watch::channel(0);
        let (_second, second_receiver) = watch::channel(0);
        let (_running, mut shutdown) = watch::channel(false);
        let mut watchers = Watchers(vec![(1, first_receiver), (2, second_receiver)]);

        drop(first);
        assert_eq!(watchers.wait(far(), &mut shutdown).await, Some(vec![1]));
        assert_eq!(watchers.0.len(), 1);
        let deadline = Instant::now() + Duration::from_millis(50);
        assert_eq!(watchers.wait(deadline, &mut shutdown).await, None);
    }

    #[tokio::test]
    async fn a_stopping_broker_ends_the_wait() {
        let (_first, first_receiver) = watch::channel(0);
        let (stop, mut shutdown) = watch::channel(false);
        let mut watchers = Watchers(vec![(1, first_receiver)]);
        stop.send_replace(true);
        assert_eq!(watchers.wait(far(), &mut shutdown).await, None);
    }
}
