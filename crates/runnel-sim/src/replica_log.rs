//! [`ReplicaLog`]: one replica's log of a partition as the simulation keeps it: records with
//! the leader epoch that wrote them, the storage crate's own leader epoch cache (KIP-101),
//! and how much of it is durable.

use runnel_storage::LeaderEpochCache;

/// One record: the value the simulated client sent, and the epoch of the leader that took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub epoch: i32,
    pub value: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ReplicaLog {
    entries: Vec<Entry>,
    epochs: LeaderEpochCache,
    /// Entries below this survive a power cut.
    durable: usize,
}

impl ReplicaLog {
    pub fn end(&self) -> i64 {
        self.entries.len() as i64
    }

    pub fn durable_end(&self) -> i64 {
        self.durable as i64
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn get(&self, offset: i64) -> Option<Entry> {
        usize::try_from(offset)
            .ok()
            .and_then(|at| self.entries.get(at).copied())
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest().map(|entry| entry.epoch)
    }

    /// A new leader's epoch, starting at the log end.
    pub fn assign_epoch(&mut self, epoch: i32, start: i64) {
        self.epochs.assign(epoch, start);
    }

    /// OffsetForLeaderEpoch, as the storage crate answers it.
    pub fn end_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.end())
    }

    /// A leader's append, or a follower's copy of the leader's entries.
    pub fn append(&mut self, entry: Entry) {
        if self
            .latest_epoch()
            .is_none_or(|latest| entry.epoch > latest)
        {
            self.epochs.assign(entry.epoch, self.end());
        }
        self.entries.push(entry);
    }

    pub fn sync(&mut self) {
        self.durable = self.entries.len();
    }

    /// Cuts the log at `offset` (a follower's truncation).
    /// As the storage crate's `truncate_to`: at or past the end no record goes, but epochs
    /// starting at the end (a leader's that wrote nothing) do.
    pub fn truncate(&mut self, offset: i64) {
        let keep = usize::try_from(offset.max(0))
            .unwrap_or(0)
            .min(self.entries.len());
        self.entries.truncate(keep);
        self.durable = self.durable.min(keep);
        self.epochs.truncate_from_end(self.end());
    }

    /// What a power cut leaves: the durable prefix.
    pub fn power_cut(&mut self) {
        self.truncate(self.durable as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_follow_appends_and_truncation() {
        let mut log = ReplicaLog::default();
        for (epoch, value) in [(1, 10), (1, 11), (3, 12), (3, 13), (4, 14)] {
            log.append(Entry { epoch, value });
        }
        assert_eq!(log.end_for_epoch(0), (0, 0));
        assert_eq!(log.end_for_epoch(1), (1, 2));
        assert_eq!(log.end_for_epoch(2), (1, 2));
        assert_eq!(log.end_for_epoch(3), (3, 4));
        assert_eq!(log.end_for_epoch(4), (4, 5));
        log.truncate(3);
        assert_eq!(log.latest_epoch(), Some(3));
        assert_eq!(log.end_for_epoch(3), (3, 3));
        log.sync();
        log.append(Entry {
            epoch: 5,
            value: 15,
        });
        log.power_cut();
        assert_eq!(log.end(), 3);
        assert_eq!(log.latest_epoch(), Some(3));
    }
}
