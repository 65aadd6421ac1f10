//! A partition directory of arbitrary files (segments, indexes, checkpoints, as
//! `SimFileSystem::image` encodes them), opened as the broker opens a partition after a crash.
//! Recovery refuses it or yields a log that reads, searches, appends and closes; it never
//! panics on what the disk holds.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use runnel_record::BatchBuilder;
use runnel_storage::sim::{ManualClock, SimFileSystem};
use runnel_storage::{FileHandles, LogConfig, PartitionLog};

const NOW_MS: i64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let dir = Path::new("data/topic-0");
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let Ok(disk) = SimFileSystem::from_image(dir, data, clock) else {
        return;
    };
    let config = LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 64,
        ..LogConfig::default()
    };
    let Ok(mut log) = PartitionLog::open(Arc::new(disk), FileHandles::new(2), dir, config, NOW_MS) else {
        return;
    };
    let mut offset = log.log_start_offset();
    for _ in 0..1000 {
        match log.read(offset, log.log_end_offset(), 1 << 16, true) {
            Ok(slice) if !slice.is_empty() => {
                let Ok(bytes) = slice.read() else { break };
                let Ok(headers) = runnel_record::RecordBatch::validate_all(&bytes) else {
                    break;
                };
                match headers.last() {
                    Some(last) if last.next_offset() > offset => offset = last.next_offset(),
                    _ => break,
                }
            }
            _ => break,
        }
    }
    let _ = log.offset_for_timestamp(NOW_MS - 1000);
    let _ = log.max_timestamp();
    let mut batch = BatchBuilder::new(NOW_MS)
        .record(None, Some(b"after recovery"), &[])
        .build();
    if log.append(&mut batch, 0, NOW_MS).is_ok() {
        let _ = log.flush();
    }
    let _ = log.enforce_retention(NOW_MS);
    let _ = log.close();
});
