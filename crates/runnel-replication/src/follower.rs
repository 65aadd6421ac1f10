//! Where a follower's log must be cut so that it matches its leader's (KIP-101, KIP-279,
//! KIP-320), and the leader's side of that check.
//!
//! A follower that was leader, or that fetched from a leader since deposed, may hold records
//! the current leader never had. Offsets alone cannot tell: the same offset may hold
//! different records in two logs. Leader epochs can: both sides keep, for every epoch, the
//! offset where it started, and so where it ended. The follower asks the leader where the
//! last epoch it holds ended on the leader's side, and cuts its log there, or at the end of
//! its own largest epoch the leader knows, whichever comes first.
//!
//! Since KIP-320 the follower sends its last fetched epoch with every fetch and the leader
//! answers a diverging epoch in the same response ([`divergence`]), so no separate
//! OffsetForLeaderEpoch round trip is needed; the truncation rule ([`truncation`]) is the
//! same for both.

/// Where one leader epoch ended in a log: the first offset after it (the next epoch's start
/// offset, or the log end offset for the latest epoch). OffsetForLeaderEpoch's answer, and a
/// Fetch response's diverging epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    pub epoch: i32,
    pub end_offset: i64,
}

impl EpochEnd {
    /// Reads the log's `(epoch, end offset)` answer, where `(-1, -1)` means it has none (an
    /// empty epoch cache, or an epoch newer than any it knows).
    pub fn from_log(answer: (i32, i64)) -> Option<EpochEnd> {
        let (epoch, end_offset) = answer;
        (epoch >= 0 && end_offset >= 0).then_some(EpochEnd { epoch, end_offset })
    }
}

/// Where the follower must cut its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// The new log end offset: everything at or above it is removed.
    pub offset: i64,
    /// `false` when the follower does not know the leader's epoch: it cut to the end of its
    /// own largest epoch below it and must ask again with that epoch (KIP-279), as the logs
    /// may diverge further back.
    pub complete: bool,
}

/// The follower's cut, from the leader's answer for the follower's latest epoch.
///
/// - `leader`: where that epoch (or the largest epoch below it the leader knows) ended on the
///   leader; `None` when the leader knows no such epoch, and then the follower falls back to
///   its high watermark, the only offset it knows the leader has.
/// - `local`: the follower's own answer for `leader.epoch` (its largest epoch at or below it;
///   for an epoch older than all it knows, that epoch ending where its first known one
///   starts, as Kafka's cache answers, so records of later epochs are all cut).
///
/// The cut never goes above the follower's log end offset.
pub fn truncation(
    leader: Option<EpochEnd>,
    local: Option<EpochEnd>,
    local_end: i64,
    high_watermark: i64,
) -> Truncation {
    let Some(leader) = leader else {
        return Truncation {
            offset: high_watermark.min(local_end),
            complete: true,
        };
    };
    match local {
        // The follower's log has the leader's epoch: they agree up to where either ended it.
        Some(local) if local.epoch == leader.epoch => Truncation {
            offset: leader.end_offset.min(local.end_offset).min(local_end),
            complete: true,
        },
        // The follower never saw the leader's epoch: its own largest epoch below it may
        // itself diverge, so cut to its end and ask again about that epoch.
        Some(local) => Truncation {
            offset: local.end_offset.min(local_end),
            complete: false,
        },
        // The follower tracks no epochs: nothing beyond the leader's end of that epoch can be
        // shared.
        None => Truncation {
            offset: leader.end_offset.min(local_end),
            complete: true,
        },
    }
}

/// Why the leader cannot check a follower's fetch against its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undetermined {
    /// The leader knows no epoch at or below the follower's last fetched epoch (its log start
    /// moved past it): the fetch is answered OFFSET_OUT_OF_RANGE and the follower resets.
    NoSuchEpoch,
}

/// The leader's check of a fetch naming `last_fetched_epoch` (the epoch of the last batch
/// the follower holds) at `fetch_offset`, given the leader's own answer for that epoch.
/// `Ok(Some(end))`: the logs diverge and the response carries `end` as the diverging epoch,
/// with no records. `Ok(None)`: the follower's log is a prefix of the leader's.
pub fn divergence(
    last_fetched_epoch: i32,
    fetch_offset: i64,
    leader_end: Option<EpochEnd>,
) -> Result<Option<EpochEnd>, Undetermined> {
    let end = leader_end.ok_or(Undetermined::NoSuchEpoch)?;
    if end.epoch < last_fetched_epoch || end.end_offset < fetch_offset {
        Ok(Some(end))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(epoch: i32, end_offset: i64) -> Option<EpochEnd> {
        Some(EpochEnd { epoch, end_offset })
    }

    fn cut(offset: i64, complete: bool) -> Truncation {
        Truncation { offset, complete }
    }

    #[test]
    fn reading_the_logs_answer() {
        assert_eq!(EpochEnd::from_log((-1, -1)), None);
        assert_eq!(EpochEnd::from_log((3, 40)), end(3, 40));
    }

    /// KIP-101's first scenario: a follower restarts holding a record past the high watermark
    /// that the leader also has; it must not lose it by cutting to its high watermark.
    #[test]
    fn kip_101_a_follower_keeps_what_the_leader_has_beyond_its_high_watermark() {
        // Both logs: epoch 0 is [0, 2). The follower's high watermark is 1.
        assert_eq!(truncation(end(0, 2), end(0, 2), 2, 1), cut(2, true));
    }

    /// KIP-101's second scenario: the follower holds offset 1 written in epoch 0 that the new
    /// leader never got; the leader wrote a different offset 1 in epoch 1.
    #[test]
    fn kip_101_a_follower_drops_what_the_leader_overwrote_in_a_later_epoch() {
        // Leader: epoch 0 is [0, 1), epoch 1 from 1. The follower asks about epoch 0.
        assert_eq!(truncation(end(0, 1), end(0, 2), 2, 0), cut(1, true));
    }

    /// KIP-279: the follower never saw the leader's epoch (the leader answers with its largest
    /// epoch below the one asked about); the follower cuts to the end of its own largest epoch
    /// below that and asks again.
    #[test]
    fn kip_279_a_follower_that_skipped_epochs_truncates_in_rounds() {
        // Follower epochs: 1 is [0, 5), 3 is [5, 9). Leader answers epoch 2 ended at 7.
        // Locally, the largest epoch <= 2 is 1, ended at 5.
        assert_eq!(truncation(end(2, 7), end(1, 5), 9, 0), cut(5, false));
        // Next round it asks about epoch 1; the leader's epoch 1 ended at 6.
        assert_eq!(truncation(end(1, 6), end(1, 5), 5, 0), cut(5, true));
    }

    #[test]
    fn without_a_leader_epoch_the_follower_falls_back_to_its_high_watermark() {
        assert_eq!(truncation(None, end(4, 20), 20, 12), cut(12, true));
        assert_eq!(
            truncation(None, None, 8, 12),
            cut(8, true),
            "never above the log end"
        );
    }

    #[test]
    fn a_follower_with_no_epoch_at_or_below_the_leaders_cuts_to_the_leaders_end() {
        assert_eq!(truncation(end(1, 4), None, 10, 0), cut(4, true));
    }

    #[test]
    fn a_cut_never_goes_above_the_log_end() {
        assert_eq!(truncation(end(5, 100), end(5, 100), 30, 0), cut(30, true));
    }

    /// KIP-320: the fetch itself carries the last fetched epoch.
    #[test]
    fn the_leader_reports_divergence_when_its_epoch_ended_before_the_fetch_offset() {
        // Leader's epoch 2 ended at 10; the follower fetches at 12 after epoch 2.
        assert_eq!(divergence(2, 12, end(2, 10)), Ok(end(2, 10)));
        // The leader never had epoch 3; its largest below is 2.
        assert_eq!(divergence(3, 8, end(2, 10)), Ok(end(2, 10)));
        // A prefix of the leader's log.
        assert_eq!(divergence(2, 10, end(2, 10)), Ok(None));
        assert_eq!(divergence(2, 7, end(2, 10)), Ok(None));
        assert_eq!(divergence(2, 7, None), Err(Undetermined::NoSuchEpoch));
    }
}
