//! [`ReplicaLog`]: one replica's log of a partition in the simulation. It is the storage
//! crate's own [`PartitionLog`] (segments, indexes, leader-epoch cache, recovery) on a
//! simulated disk, [`SimFileSystem`]: a `kill -9` keeps what was written, a power cut keeps
//! what was fsynced plus a seeded part of the rest, torn anywhere, and the log is opened
//! again from whatever the disk holds. Each record is one batch holding one value; what the
//! world's checks compare ([`ReplicaLog::entries`]) is read back from the log after every
//! change, never kept beside it.

use std::path::Path;
use std::sync::Arc;

use runnel_record::{decode_records, BatchBuilder, RecordBatch};
use runnel_storage::sim::{ManualClock, SimFileSystem};
use runnel_storage::{FileHandles, LogConfig, PartitionLog, StorageError};

/// One record: the value the simulated client sent, and the epoch of the leader that took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub epoch: i32,
    pub value: u64,
}

/// Where the partition lives on each broker's disk.
const DIR: &str = "/data/sim-0";
/// Small segments, so that histories roll, and recover, across several.
const SEGMENT_BYTES: u64 = 2048;
/// A batch of one record with an 8-byte value: a follower's fetch of up to this many bytes
/// brings a few of them.
const FETCH_MAX_BYTES: usize = 300;

#[derive(Debug)]
pub struct ReplicaLog {
    disk: SimFileSystem,
    log: PartitionLog,
    /// The log's records, as read back from it.
    entries: Vec<Entry>,
}

/// A storage failure in the simulation is a bug (the simulated disk fails only when its
/// power is cut, and then the log is opened again from the disk left behind).
fn storage<T>(what: &str, result: Result<T, StorageError>) -> T {
    result.unwrap_or_else(|error| panic!("{what}: {error}"))
}

impl Default for ReplicaLog {
    /// An empty replica on a new disk.
    fn default() -> ReplicaLog {
        ReplicaLog::open(SimFileSystem::new(Arc::new(ManualClock::new(0))), false)
    }
}

impl ReplicaLog {
    /// Opens the log on `disk` as a restarting broker does: recovery cuts a torn tail and,
    /// with `flush_recovered` (replicas that count only what they fsynced), what recovery
    /// kept is fsynced before the replica reports any of it.
    fn open(disk: SimFileSystem, flush_recovered: bool) -> ReplicaLog {
        let config = LogConfig {
            segment_bytes: SEGMENT_BYTES,
            index_interval_bytes: 256,
            ..LogConfig::default()
        };
        let log = storage(
            "opening the replica's log",
            PartitionLog::open(
                Arc::new(disk.clone()),
                FileHandles::new(8),
                Path::new(DIR),
                config,
                0,
            ),
        );
        let mut replica = ReplicaLog {
            disk,
            log,
            entries: Vec::new(),
        };
        if flush_recovered {
            replica.sync();
        }
        replica.read_back();
        replica
    }

    /// Reads the records from the end of `entries` to the log end.
    fn read_back(&mut self) {
        let end = self.log.log_end_offset();
        while (self.entries.len() as i64) < end {
            let from = self.entries.len() as i64;
            let bytes = self.read(from, usize::MAX);
            assert!(
                !bytes.is_empty(),
                "the log ends at {end} but reads nothing at {from}"
            );
            for (offset, entry) in decode(&bytes) {
                assert_eq!(
                    offset,
                    self.entries.len() as i64,
                    "the log's offsets have a gap"
                );
                self.entries.push(entry);
            }
        }
        assert_eq!(self.entries.len() as i64, end);
    }

    /// The log as runs of epochs, for the trace: `e1:0-5 e2:6-30`.
    pub fn describe(&self) -> String {
        let mut runs: Vec<(i32, usize, usize)> = Vec::new();
        for (offset, entry) in self.entries.iter().enumerate() {
            match runs.last_mut() {
                Some((epoch, _, last)) if *epoch == entry.epoch => *last = offset,
                _ => runs.push((entry.epoch, offset, offset)),
            }
        }
        let runs: Vec<String> = runs
            .iter()
            .map(|(epoch, first, last)| format!("e{epoch}:{first}-{last}"))
            .collect();
        format!("[{}] durable below {}", runs.join(" "), self.durable_end())
    }

    pub fn end(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// Everything below is fsynced.
    pub fn durable_end(&self) -> i64 {
        self.log.recovery_point()
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
        self.log.latest_leader_epoch()
    }

    /// A new leader's epoch, starting at the log end.
    pub fn assign_epoch(&mut self, epoch: i32, start: i64) {
        storage(
            "recording a leader epoch",
            self.log.assign_leader_epoch(epoch, start),
        );
    }

    /// OffsetForLeaderEpoch, as the storage crate answers it.
    pub fn end_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.log.end_offset_for_epoch(epoch)
    }

    /// A leader's append of a produced value.
    pub fn append(&mut self, value: u64, leader_epoch: i32, now_ms: i64) {
        let mut batch = BatchBuilder::new(now_ms)
            .record(None, Some(&value.to_be_bytes()), &[])
            .build();
        storage(
            "a leader's append",
            self.log.append(&mut batch, leader_epoch, now_ms),
        );
        self.read_back();
    }

    /// Whole batches from `offset`, as a leader serves a follower's fetch: at most
    /// `max_bytes`, and always the first batch.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Vec<u8> {
        let slice = storage("a read", self.log.read(offset, self.end(), max_bytes, true));
        slice
            .read()
            .unwrap_or_else(|error| panic!("reading a fetch slice: {error}"))
            .to_vec()
    }

    /// What a leader sends a follower fetching at `offset`.
    pub fn read_for_follower(&self, offset: i64) -> Vec<u8> {
        if offset >= self.end() {
            return Vec::new();
        }
        self.read(offset, FETCH_MAX_BYTES)
    }

    /// A follower's append of the batches its leader sent.
    pub fn append_replicated(&mut self, batches: &[u8], now_ms: i64) {
        if batches.is_empty() {
            return;
        }
        storage(
            "a follower's append",
            self.log.append_replicated(batches, now_ms),
        );
        self.read_back();
    }

    pub fn sync(&mut self) {
        storage("an fsync", self.log.flush());
    }

    /// Cuts the log at `offset` (a follower's truncation). As the storage crate's
    /// `truncate_to`: at or past the end no record goes, but epochs starting at the end (a
    /// leader's that wrote nothing) do.
    pub fn truncate(&mut self, offset: i64, now_ms: i64) {
        storage("a truncation", self.log.truncate_to(offset, now_ms));
        self.entries
            .truncate(usize::try_from(self.end()).unwrap_or(0));
        self.read_back();
    }

    /// The broker was killed (`kill -9`): the disk keeps everything written, and the log is
    /// opened again from it.
    pub fn killed(&mut self, flush_recovered: bool) {
        *self = ReplicaLog::open(self.disk.clone(), flush_recovered);
    }

    /// The broker lost power: the disk keeps what was fsynced and a part of the rest chosen
    /// by `seed`, and the log is opened again from it.
    pub fn power_cut(&mut self, seed: u64, flush_recovered: bool) {
        *self = ReplicaLog::open(self.disk.crash(seed), flush_recovered);
    }
}

/// The `(offset, entry)` of every record in `bytes`, whole batches back to back.
fn decode(mut bytes: &[u8]) -> Vec<(i64, Entry)> {
    let headers = RecordBatch::validate_all(bytes)
        .unwrap_or_else(|error| panic!("the log returned a bad batch: {error}"));
    let mut entries = Vec::new();
    for header in headers {
        let (batch, rest) = bytes.split_at(header.total_len());
        bytes = rest;
        let records = decode_records(batch)
            .unwrap_or_else(|error| panic!("the log returned a bad batch: {error}"));
        for record in records {
            let value = record
                .value
                .as_deref()
                .and_then(|value| <[u8; 8]>::try_from(value).ok())
                .map(u64::from_be_bytes)
                .unwrap_or_else(|| panic!("a record that is not a simulated value: {record:?}"));
            entries.push((
                record.offset,
                Entry {
                    epoch: header.partition_leader_epoch,
                    value,
                },
            ));
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_follow_appends_and_truncation_and_power_cuts_keep_the_fsynced() {
        let mut log = ReplicaLog::default();
        for (epoch, value) in [(1, 10), (1, 11), (3, 12), (3, 13), (4, 14)] {
            if log.latest_epoch() != Some(epoch) {
                log.assign_epoch(epoch, log.end());
            }
            log.append(value, epoch, 0);
        }
        assert_eq!(log.end_for_epoch(0), (0, 0));
        assert_eq!(log.end_for_epoch(1), (1, 2));
        assert_eq!(log.end_for_epoch(2), (1, 2));
        assert_eq!(log.end_for_epoch(3), (3, 4));
        assert_eq!(log.end_for_epoch(4), (4, 5));
        log.truncate(3, 0);
        assert_eq!(log.latest_epoch(), Some(3));
        assert_eq!(log.end_for_epoch(3), (3, 3));
        log.sync();
        assert_eq!(log.durable_end(), 3);
        log.assign_epoch(5, 3);
        log.append(15, 5, 0);
        log.power_cut(7, true);
        assert!(log.end() >= 3);
        let values: Vec<u64> = log.entries().iter().map(|entry| entry.value).collect();
        assert_eq!(&values[..3], &[10, 11, 12]);
        assert_eq!(
            log.durable_end(),
            log.end(),
            "what recovery kept is fsynced"
        );
        // A follower copies the leader's batches as they are.
        let mut follower = ReplicaLog::default();
        follower.append_replicated(&log.read_for_follower(0), 0);
        assert!(follower.end() > 0);
        assert_eq!(
            follower.entries(),
            &log.entries()[..follower.entries().len()]
        );
    }
}
