//! The leader epoch cache (KIP-101): which leader epoch wrote which range of offsets. A
//! follower that lost its leader asks the new leader where its own last epoch ended and
//! truncates to that, instead of trusting a high watermark that may be stale.
//!
//! Pure bookkeeping; the partition log persists it in `leader-epoch-checkpoint`.

/// Leader epoch `epoch` wrote the offsets from `start_offset` up to the next entry's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Entries strictly increasing in both epoch and start offset.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// Checks the entries read from disk are monotonic.
    pub(crate) fn from_entries(entries: Vec<EpochEntry>) -> Result<Self, String> {
        for pair in entries.windows(2) {
            if pair[1].epoch <= pair[0].epoch || pair[1].start_offset <= pair[0].start_offset {
                return Err(format!(
                    "leader epochs are not increasing: ({}, {}) then ({}, {})",
                    pair[0].epoch, pair[0].start_offset, pair[1].epoch, pair[1].start_offset
                ));
            }
        }
        Ok(LeaderEpochCache { entries })
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start_offset`. Entries that would break monotonicity
    /// (an epoch at least as large, or a start offset at least as large) are dropped first: the
    /// new entry describes the log as it now is. Returns whether anything changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if let Some(latest) = self.latest() {
            if latest.epoch == epoch && latest.start_offset <= start_offset {
                return false;
            }
        }
        self.entries
            .retain(|entry| entry.epoch < epoch && entry.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Drops entries starting at or after `end_offset`: their epochs wrote nothing that is
    /// still in the log. Returns whether anything changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.start_offset < end_offset);
        self.entries.len() != before
    }

    /// OffsetForLeaderEpoch, as Kafka answers it:
    /// - the latest epoch: `(epoch, log_end_offset)`;
    /// - an epoch between known ones: the largest known epoch below it, and the start of the
    ///   next known epoch (where it ended);
    /// - an epoch older than every known one: `(epoch, start of the first known epoch)`, so a
    ///   follower whose oldest records are of a later epoch than the leader's answer drops
    ///   them all rather than keep records the leader never had;
    /// - `-1`, an epoch newer than every known one, or an empty cache: `(-1, -1)`.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> (i32, i64) {
        if epoch < 0 {
            return (-1, -1);
        }
        if self.latest().is_some_and(|latest| latest.epoch == epoch) {
            return (epoch, log_end_offset);
        }
        let after = self.entries.partition_point(|entry| entry.epoch <= epoch);
        let Some(next) = self.entries.get(after) else {
            return (-1, -1);
        };
        match after.checked_sub(1).map(|at| self.entries[at]) {
            Some(found) => (found.epoch, next.start_offset),
            None => (epoch, next.start_offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(pairs: &[(i32, i64)]) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::default();
        for &(epoch, start) in pairs {
            cache.assign(epoch, start);
        }
        cache
    }

    #[test]
    fn end_offsets() {
        let cache = cache(&[(1, 2), (3, 10), (4, 25)]);
        assert_eq!(
            cache.end_offset_for(0, 40),
            (0, 2),
            "older than every epoch: it ended where the first known one starts"
        );
        assert_eq!(cache.end_offset_for(1, 40), (1, 10));
        assert_eq!(cache.end_offset_for(2, 40), (1, 10));
        assert_eq!(cache.end_offset_for(3, 40), (3, 25));
        assert_eq!(cache.end_offset_for(4, 40), (4, 40));
        assert_eq!(
            cache.end_offset_for(9, 40),
            (-1, -1),
            "newer than every epoch"
        );
        assert_eq!(cache.end_offset_for(-1, 40), (-1, -1));
        assert_eq!(LeaderEpochCache::default().end_offset_for(1, 5), (-1, -1));
    }

    #[test]
    fn assign_keeps_entries_monotonic() {
        let mut cache = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert!(!cache.assign(4, 30), "the latest epoch again is a no-op");
        assert!(
            cache.assign(5, 20),
            "a start offset below later entries replaces them"
        );
        assert_eq!(
            cache.entries(),
            &[
                EpochEntry {
                    epoch: 1,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 3,
                    start_offset: 10
                },
                EpochEntry {
                    epoch: 5,
                    start_offset: 20
                },
            ]
        );
        assert!(cache.assign(2, 12), "a lower epoch drops the later epochs");
        assert_eq!(
            cache.latest(),
            Some(EpochEntry {
                epoch: 2,
                start_offset: 12
            })
        );
        assert!(cache.truncate_from_end(12));
        assert_eq!(
            cache.latest(),
            Some(EpochEntry {
                epoch: 1,
                start_offset: 0
            })
        );
        assert!(LeaderEpochCache::from_entries(vec![
            EpochEntry {
                epoch: 2,
                start_offset: 5
            },
            EpochEntry {
                epoch: 1,
                start_offset: 9
            },
        ])
        .is_err());
    }
}
