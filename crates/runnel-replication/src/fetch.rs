//! One replica fetch of one partition, both sides of it: what the leader answers
//! ([`LeaderState::answer_fetch`]) and what the follower does with the answer
//! ([`follower_step`]). The broker maps these to and from Kafka's Fetch fields (replica id
//! and epoch, current leader epoch, last fetched epoch; error code, diverging epoch, high
//! watermark); the rules, and their order, live here.

use crate::follower::{divergence, truncation, EpochEnd, Truncation};
use crate::leader::{FetchError, LeaderState};
use crate::{check_leader_epoch, EpochCheck, ReplicaId};

/// A follower's fetch of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaFetch {
    pub replica: ReplicaId,
    /// The epoch of the follower's broker registration (KIP-903).
    pub broker_epoch: i64,
    /// The leader epoch the follower believes current (KIP-320).
    pub current_leader_epoch: i32,
    /// The follower's log end: everything below is durable on its side.
    pub fetch_offset: i64,
    /// The epoch of the last record the follower holds, if any.
    pub last_fetched_epoch: Option<i32>,
}

/// The leader's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchAnswer {
    /// Records from the fetch offset follow, with the leader's high watermark.
    Records {
        high_watermark: i64,
    },
    /// The follower's log diverges from the leader's: no records; it must truncate.
    Diverging {
        end: EpochEnd,
        high_watermark: i64,
    },
    Refused(FetchRefusal),
}

/// Why a replica fetch is refused, with the Kafka error each becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchRefusal {
    /// FENCED_LEADER_EPOCH: the follower acts on old metadata.
    FencedLeaderEpoch,
    /// UNKNOWN_LEADER_EPOCH: this leader has not learnt the follower's epoch yet.
    UnknownLeaderEpoch,
    /// NOT_LEADER_OR_FOLLOWER: the fetching broker holds no replica of the partition.
    NotAReplica,
    /// OFFSET_OUT_OF_RANGE: the fetch offset is past the leader's log end, or the leader
    /// cannot place the follower's last epoch.
    OffsetOutOfRange,
}

impl LeaderState {
    /// Answers a follower's fetch. `leader_end_for` is this leader's log's answer for an
    /// epoch (OffsetForLeaderEpoch). Checks, in Kafka's order: the leader epoch, the
    /// divergence of the follower's log (its progress is recorded only if there is none),
    /// then the fetch offset. Returns whether the high watermark moved.
    pub fn answer_fetch(
        &mut self,
        fetch: &ReplicaFetch,
        leader_end_for: impl FnOnce(i32) -> Option<EpochEnd>,
        now_ms: i64,
    ) -> (FetchAnswer, bool) {
        match check_leader_epoch(fetch.current_leader_epoch, self.leader_epoch()) {
            EpochCheck::Current => {}
            EpochCheck::Fenced => {
                return (FetchAnswer::Refused(FetchRefusal::FencedLeaderEpoch), false)
            }
            EpochCheck::Unknown => {
                return (
                    FetchAnswer::Refused(FetchRefusal::UnknownLeaderEpoch),
                    false,
                )
            }
        }
        if let Some(last_epoch) = fetch.last_fetched_epoch {
            match divergence(last_epoch, fetch.fetch_offset, leader_end_for(last_epoch)) {
                Ok(None) => {}
                Ok(Some(end)) => {
                    let answer = FetchAnswer::Diverging {
                        end,
                        high_watermark: self.high_watermark(),
                    };
                    return (answer, false);
                }
                Err(_) => return (FetchAnswer::Refused(FetchRefusal::OffsetOutOfRange), false),
            }
        }
        match self.on_follower_fetch(
            fetch.replica,
            fetch.broker_epoch,
            fetch.fetch_offset,
            now_ms,
        ) {
            Ok(moved) => (
                FetchAnswer::Records {
                    high_watermark: self.high_watermark(),
                },
                moved,
            ),
            Err(FetchError::NotAReplica) => {
                (FetchAnswer::Refused(FetchRefusal::NotAReplica), false)
            }
            Err(FetchError::BeyondLogEnd { .. }) => {
                (FetchAnswer::Refused(FetchRefusal::OffsetOutOfRange), false)
            }
        }
    }
}

/// What a follower does with the leader's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerStep {
    /// Append the records that came with it, then take `min(high_watermark, new log end)`
    /// as the high watermark.
    Append { high_watermark: i64 },
    /// Cut the log; if the truncation is not complete (KIP-279), the next fetch asks again.
    Truncate(Truncation),
    /// Wait for newer metadata: the leader moved on, or this broker no longer holds a replica.
    AwaitMetadata,
    /// Fetch again after a pause: the leader has not caught up with the metadata yet.
    Retry,
    /// The leader cannot serve this offset: find its log end and log start (ListOffsets) and
    /// truncate to the end, or start over from the start.
    Reset,
}

/// The follower's step, given its own log's answer for an epoch, its log end and its high
/// watermark.
pub fn follower_step(
    answer: FetchAnswer,
    local_end_for: impl FnOnce(i32) -> Option<EpochEnd>,
    log_end: i64,
    high_watermark: i64,
) -> FollowerStep {
    match answer {
        FetchAnswer::Records { high_watermark } => FollowerStep::Append { high_watermark },
        FetchAnswer::Diverging { end, .. } => FollowerStep::Truncate(truncation(
            Some(end),
            local_end_for(end.epoch),
            log_end,
            high_watermark,
        )),
        FetchAnswer::Refused(FetchRefusal::FencedLeaderEpoch | FetchRefusal::NotAReplica) => {
            FollowerStep::AwaitMetadata
        }
        FetchAnswer::Refused(FetchRefusal::UnknownLeaderEpoch) => FollowerStep::Retry,
        FetchAnswer::Refused(FetchRefusal::OffsetOutOfRange) => FollowerStep::Reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::{Assignment, LeaderConfig, LocalLog};

    fn leader() -> LeaderState {
        LeaderState::new(
            1,
            Assignment {
                leader_epoch: 5,
                partition_epoch: 0,
                replicas: vec![1, 2],
                isr: vec![1, 2],
            },
            LocalLog {
                log_end: 10,
                durable_end: 10,
                high_watermark: 4,
                broker_epoch: 1,
            },
            LeaderConfig {
                replica_lag_time_max_ms: 1000,
                min_insync_replicas: 1,
            },
            0,
        )
    }

    fn fetch(current_leader_epoch: i32, fetch_offset: i64, last: Option<i32>) -> ReplicaFetch {
        ReplicaFetch {
            replica: 2,
            broker_epoch: 9,
            current_leader_epoch,
            fetch_offset,
            last_fetched_epoch: last,
        }
    }

    /// The leader's log: epoch 3 is [0, 6), epoch 5 from 6.
    fn leader_log(epoch: i32) -> Option<EpochEnd> {
        match epoch {
            3 | 4 => Some(EpochEnd {
                epoch: 3,
                end_offset: 6,
            }),
            5 => Some(EpochEnd {
                epoch: 5,
                end_offset: 10,
            }),
            _ => None,
        }
    }

    #[test]
    fn a_follower_behind_gets_records_and_moves_the_high_watermark() {
        let mut leader = leader();
        let (answer, moved) = leader.answer_fetch(&fetch(5, 8, Some(5)), leader_log, 1);
        assert_eq!(answer, FetchAnswer::Records { high_watermark: 8 });
        assert!(moved);
        assert_eq!(
            follower_step(answer, |_| None, 8, 4),
            FollowerStep::Append { high_watermark: 8 }
        );
    }

    #[test]
    fn a_diverging_follower_truncates_and_its_progress_is_not_counted() {
        let mut leader = leader();
        // The follower wrote offsets 6..9 in epoch 4, which the leader never had.
        let (answer, moved) = leader.answer_fetch(&fetch(5, 9, Some(4)), leader_log, 1);
        assert_eq!(
            answer,
            FetchAnswer::Diverging {
                end: EpochEnd {
                    epoch: 3,
                    end_offset: 6
                },
                high_watermark: 4
            }
        );
        assert!(!moved);
        assert_eq!(leader.high_watermark(), 4);
        // The follower's epoch 3 also ended at 6.
        let local = |_| {
            Some(EpochEnd {
                epoch: 3,
                end_offset: 6,
            })
        };
        assert_eq!(
            follower_step(answer, local, 9, 4),
            FollowerStep::Truncate(Truncation {
                offset: 6,
                complete: true
            })
        );
    }

    #[test]
    fn stale_and_early_epochs_and_strangers_are_refused() {
        let mut leader = leader();
        let refused = |answer: (FetchAnswer, bool)| match answer.0 {
            FetchAnswer::Refused(refusal) => Some(refusal),
            _ => None,
        };
        assert_eq!(
            refused(leader.answer_fetch(&fetch(4, 8, Some(5)), leader_log, 1)),
            Some(FetchRefusal::FencedLeaderEpoch)
        );
        assert_eq!(
            refused(leader.answer_fetch(&fetch(6, 8, Some(5)), leader_log, 1)),
            Some(FetchRefusal::UnknownLeaderEpoch)
        );
        assert_eq!(
            refused(leader.answer_fetch(&fetch(5, 11, None), leader_log, 1)),
            Some(FetchRefusal::OffsetOutOfRange)
        );
        assert_eq!(
            refused(leader.answer_fetch(&fetch(5, 2, Some(1)), leader_log, 1)),
            Some(FetchRefusal::OffsetOutOfRange),
            "an epoch the leader cannot place"
        );
        let mut stranger = fetch(5, 0, None);
        stranger.replica = 7;
        assert_eq!(
            refused(leader.answer_fetch(&stranger, leader_log, 1)),
            Some(FetchRefusal::NotAReplica)
        );
        assert_eq!(
            follower_step(
                FetchAnswer::Refused(FetchRefusal::FencedLeaderEpoch),
                |_| None,
                0,
                0
            ),
            FollowerStep::AwaitMetadata
        );
        assert_eq!(
            follower_step(
                FetchAnswer::Refused(FetchRefusal::UnknownLeaderEpoch),
                |_| None,
                0,
                0
            ),
            FollowerStep::Retry
        );
    }
}
