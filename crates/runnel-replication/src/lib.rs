//! One partition's replication, Kafka's ISR model, as plain state machines.
//!
//! - [`LeaderState`]: what the leader of a partition knows of its followers (how far each
//!   has durably replicated, when each was last caught up), the high watermark that follows
//!   from it, the ISR changes it proposes to the controller (one at a time, answered by the
//!   controller or superseded by newer metadata), and whether an `acks=all` produce may be
//!   taken and, later, answered.
//! - [`follower`]: where a follower's log must be cut when the leader says it diverges
//!   (KIP-101, KIP-279, KIP-320), and the leader's side of that check.
//! - [`ReplicaFetch`]: one replica fetch, both sides: the leader's answer
//!   ([`LeaderState::answer_fetch`]) and the follower's next step ([`follower_step`]).
//! - [`check_leader_epoch`]: the fencing rule every request naming a leader epoch follows.
//!
//! No I/O, no clock: offsets and times arrive with each call; the broker's shell owns the
//! logs, the fetcher tasks and the AlterPartition round trips. The durability rule lives
//! here: a replica counts toward the high watermark only with what it reported durable (the
//! leader's own fsynced offset, a follower's fetch offset, which it sends only once what is
//! below it is fsynced), so a record is acknowledged only once every in-sync replica could
//! survive a power cut with it.

mod fetch;
pub mod follower;
mod leader;

pub use fetch::{follower_step, FetchAnswer, FetchRefusal, FollowerStep, ReplicaFetch};
pub use follower::{EpochEnd, Truncation};
pub use leader::{
    AckOutcome, Assignment, FetchError, IsrChange, IsrChangeOutcome, IsrMember, LeaderConfig,
    LeaderState, LocalLog, ProduceRefusal,
};

/// A broker's node id, as the controller registered it.
pub type ReplicaId = i32;

/// How a request's leader epoch compares with the partition's (KIP-320): an older one is
/// fenced (the sender acts on stale metadata and must refresh), a newer one means this
/// broker has not yet learnt the new epoch. `-1` asks for no check, as clients that predate
/// KIP-320 send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochCheck {
    Current,
    /// FENCED_LEADER_EPOCH.
    Fenced,
    /// UNKNOWN_LEADER_EPOCH.
    Unknown,
}

pub fn check_leader_epoch(requested: i32, current: i32) -> EpochCheck {
    if requested < 0 || requested == current {
        EpochCheck::Current
    } else if requested < current {
        EpochCheck::Fenced
    } else {
        EpochCheck::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_epochs_are_fenced_newer_ones_unknown_and_minus_one_unchecked() {
        assert_eq!(check_leader_epoch(-1, 7), EpochCheck::Current);
        assert_eq!(check_leader_epoch(7, 7), EpochCheck::Current);
        assert_eq!(check_leader_epoch(6, 7), EpochCheck::Fenced);
        assert_eq!(check_leader_epoch(8, 7), EpochCheck::Unknown);
    }
}
