//! Pipelining on one connection: which requests may run beside the ones before them, and the
//! order their side effects take.
//!
//! Clients pipeline (librdkafka keeps up to a million requests in flight per connection, the
//! Java client five) and expect answers strictly in request order. Kafka serves a connection
//! one request at a time; Runnel overlaps the waiting instead, so that a producer's appends
//! queue behind one fsync (group commit) rather than each waiting for its own:
//!
//! - Produce, Fetch, Metadata and the other read-only requests are [`Concurrency::Pipelined`]:
//!   they start while earlier requests of the connection are still running. Each takes a
//!   [`Turn`]; its ordered part (a Produce's appends) runs after the ordered parts of every
//!   earlier request, so appends to a partition follow request order and a Fetch starts after
//!   the appends of the Produce requests sent before it (it sees them once they are below the
//!   high watermark: at once, or after their fsync when the flush policy asks for one). The
//!   slow part (the fsync a Produce waits for, a Fetch's long poll) overlaps.
//! - Everything else (group membership, offset commits, topic and config changes) is
//!   [`Concurrency::Exclusive`]: it starts once every earlier request is answered, and nothing
//!   after it starts until it is answered, exactly as Kafka serves a connection.
//!
//! The network layer answers requests in the order they arrived whatever order they finish in.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use kafka_protocol::messages::ApiKey;
use tokio::sync::oneshot;

/// How a request runs relative to the others of its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Concurrency {
    Pipelined,
    Exclusive,
}

impl Concurrency {
    /// For a raw API key as it appears in a request header; unknown keys run exclusively
    /// (their answer is an error, and nothing is lost by waiting).
    pub(crate) fn of(api_key: i16) -> Concurrency {
        match ApiKey::try_from(api_key) {
            Ok(
                ApiKey::Produce
                | ApiKey::Fetch
                | ApiKey::Metadata
                | ApiKey::ApiVersions
                | ApiKey::ListOffsets
                | ApiKey::OffsetForLeaderEpoch
                | ApiKey::FindCoordinator
                | ApiKey::DescribeCluster
                | ApiKey::DescribeConfigs
                | ApiKey::DescribeLogDirs,
            ) => Concurrency::Pipelined,
            _ => Concurrency::Exclusive,
        }
    }
}

/// The connection's chain of turns: each request's turn comes after its predecessor's.
#[derive(Debug, Default)]
pub(crate) struct TurnChain {
    issued: u64,
    state: Arc<ChainState>,
}

/// Which turns have ended, shared by the turns of one connection.
#[derive(Debug, Default)]
struct ChainState(Mutex<Progress>);

#[derive(Debug, Default)]
struct Progress {
    /// Every turn numbered below this has ended.
    ended_below: u64,
    /// Turns that ended while an earlier one had not.
    ended_early: BTreeSet<u64>,
    /// Turns waiting for their predecessors, woken one at a time: only the turn numbered
    /// `ended_below` can go, so an ending turn wakes at most one other, never all of them.
    waiting: HashMap<u64, oneshot::Sender<()>>,
}

impl ChainState {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl TurnChain {
    /// The turn of the next request read from the connection.
    pub(crate) fn next_turn(&mut self) -> Turn {
        let number = self.issued;
        self.issued += 1;
        Turn {
            number,
            chain: Arc::clone(&self.state),
        }
    }
}

/// One request's place in its connection's order of side effects. The request's ordered part
/// runs between [`Turn::wait`] and dropping the turn, which lets the next request's begin once
/// every earlier turn has ended too (a handler that fails early drops its turn, so one failed
/// request never holds up the others, and never lets them overtake the ones before it).
#[derive(Debug)]
pub(crate) struct Turn {
    number: u64,
    chain: Arc<ChainState>,
}

impl Turn {
    /// A turn with nothing before it: for requests served outside a connection (tests).
    #[cfg(test)]
    pub(crate) fn first() -> Turn {
        TurnChain::default().next_turn()
    }

    /// Waits until every earlier request of the connection has finished its ordered part.
    pub(crate) async fn wait(&mut self) {
        let woken = {
            let mut progress = self.chain.lock();
            if progress.ended_below >= self.number {
                return;
            }
            let (wake, woken) = oneshot::channel();
            progress.waiting.insert(self.number, wake);
            woken
        };
        // The sender is dropped only after waking us, or with this turn itself.
        let _ = woken.await;
    }

    /// For a request with no ordered part of its own: waits for its predecessors, then lets
    /// its successors go.
    pub(crate) async fn pass(mut self) {
        self.wait().await;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut progress = self.chain.lock();
        progress.waiting.remove(&self.number);
        if self.number != progress.ended_below {
            progress.ended_early.insert(self.number);
            return;
        }
        progress.ended_below += 1;
        loop {
            let next = progress.ended_below;
            if !progress.ended_early.remove(&next) {
                break;
            }
            progress.ended_below += 1;
        }
        let next = progress.ended_below;
        if let Some(wake) = progress.waiting.remove(&next) {
            let _ = wake.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::stream::{FuturesOrdered, StreamExt};
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn data_path_requests_are_pipelined_and_the_rest_exclusive() {
        for key in [
            ApiKey::Produce,
            ApiKey::Fetch,
            ApiKey::Metadata,
            ApiKey::ListOffsets,
        ] {
            assert_eq!(
                Concurrency::of(key as i16),
                Concurrency::Pipelined,
                "{key:?}"
            );
        }
        for key in [
            ApiKey::JoinGroup,
            ApiKey::SyncGroup,
            ApiKey::Heartbeat,
            ApiKey::OffsetCommit,
            ApiKey::CreateTopics,
            ApiKey::DeleteTopics,
            ApiKey::AlterConfigs,
        ] {
            assert_eq!(
                Concurrency::of(key as i16),
                Concurrency::Exclusive,
                "{key:?}"
            );
        }
        assert_eq!(Concurrency::of(-1), Concurrency::Exclusive);
        assert_eq!(Concurrency::of(i16::MAX), Concurrency::Exclusive);
    }

    /// Lets the other requests run for a while: `polls` times round the executor.
    async fn pause(polls: u32) {
        for _ in 0..polls {
            tokio::task::yield_now().await;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Requests that take random times before, during and after their ordered part, some
        /// failing before they reach it: the ordered parts run in request order, and answers
        /// come out in request order.
        #[test]
        fn ordered_parts_and_answers_follow_request_order(
            requests in prop::collection::vec((0u32..4, 0u32..4, 0u32..4, any::<bool>()), 1..24)
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let ordered_log = Arc::new(Mutex::new(Vec::new()));
            let answers: Vec<usize> = runtime.block_on(async {
                let mut chain = TurnChain::default();
                let mut in_flight = FuturesOrdered::new();
                for (index, &(before, during, after, fails)) in requests.iter().enumerate() {
                    let mut turn = chain.next_turn();
                    let ordered_log = Arc::clone(&ordered_log);
                    in_flight.push_back(async move {
                        pause(before).await;
                        if fails {
                            drop(turn);
                        } else {
                            turn.wait().await;
                            ordered_log.lock().unwrap().push(index);
                            pause(during).await;
                            drop(turn);
                        }
                        pause(after).await;
                        index
                    });
                }
                in_flight.collect().await
            });
            prop_assert_eq!(answers, (0..requests.len()).collect::<Vec<_>>());
            let ordered = ordered_log.lock().unwrap().clone();
            let expected: Vec<usize> = requests
                .iter()
                .enumerate()
                .filter(|(_, request)| !request.3)
                .map(|(index, _)| index)
                .collect();
            prop_assert_eq!(ordered, expected);
        }
    }
}
