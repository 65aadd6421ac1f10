//! Criterion benchmarks of one partition's log: append, read and offset-index lookup.
//!
//! `cargo bench -p runnel-storage` (about a minute). The log lives in a temp directory on the
//! filesystem of `$TMPDIR` (default /tmp); nothing is fsynced (the broker fsyncs by time, off
//! the append path), so these measure the page cache, not the disk.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use runnel_record::BatchBuilder;
use runnel_storage::{FileHandles, LogConfig, OsFileSystem, PartitionLog};
use tempfile::TempDir;

const NOW_MS: i64 = 1_700_000_000_000;
const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 16;
/// The append bench starts over with an empty log once it holds this much, outside the timed
/// part, so a run writes a bounded amount to disk.
const APPEND_LOG_LIMIT: u64 = 256 << 20;
/// Log populated for the read and lookup benches.
const POPULATED_BYTES: usize = 64 << 20;
const FETCH_BYTES: usize = 1 << 20;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

/// One batch of `records` records of `record_bytes` bytes each (no key, no headers).
fn batch(records: usize, record_bytes: usize) -> Vec<u8> {
    let value = vec![b'x'; record_bytes];
    let mut builder = BatchBuilder::new(NOW_MS);
    for _ in 0..records {
        builder = builder.record(None, Some(&value), &[]);
    }
    builder.build()
}

fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(
        Arc::new(OsFileSystem),
        FileHandles::new(1024),
        dir,
        config,
        NOW_MS,
    )
    .expect("open the partition log")
}

/// A log in a fresh temp dir holding about `bytes` of copies of `batch`.
fn populated(batch: &[u8], bytes: usize, config: LogConfig) -> (TempDir, PartitionLog) {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let mut log = open(dir.path(), config);
    let mut buffer = batch.to_vec();
    for _ in 0..bytes.div_ceil(batch.len()) {
        log.append(&mut buffer, 0, NOW_MS)
            .expect("append while populating");
    }
    (dir, log)
}

/// xorshift64: reproducible offsets without a `rand` dependency.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn bench_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    let mut buffer = batch(RECORDS_PER_BATCH, RECORD_BYTES);
    group.throughput(Throughput::Bytes(buffer.len() as u64));
    group.bench_function("16x1KiB_batch_no_fsync", |b| {
        let mut dir = tempfile::tempdir().expect("create a temp dir");
        let mut log = open(dir.path(), LogConfig::default());
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                if log.size_bytes() >= APPEND_LOG_LIMIT {
                    // Drops the old log, then its directory (deleting its files).
                    let fresh = tempfile::tempdir().expect("create a temp dir");
                    log = open(fresh.path(), LogConfig::default());
                    dir = fresh;
                }
                let start = Instant::now();
                let info = log
                    .append(black_box(&mut buffer), 0, NOW_MS)
                    .expect("append");
                elapsed += start.elapsed();
                black_box(info);
            }
            elapsed
        });
    });
    group.finish();
}

fn bench_read(c: &mut Criterion) {
    let batch = batch(RECORDS_PER_BATCH, RECORD_BYTES);
    let (_dir, log) = populated(&batch, POPULATED_BYTES, LogConfig::default());
    let end = log.log_end_offset();
    let first = log
        .read(0, end, FETCH_BYTES, true)
        .expect("read the first slice");
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Bytes(first.len() as u64));
    // Start offsets that leave a full 1 MiB after them; every slice is the same whole batches.
    let span = end as u64 - 2 * (FETCH_BYTES / batch.len() * RECORDS_PER_BATCH) as u64;
    group.bench_function("1MiB_fetch_from_64MiB_log", |b| {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        b.iter(|| {
            let offset = (next_random(&mut state) % span) as i64;
            let slice = log.read(offset, end, FETCH_BYTES, true).expect("read");
            let bytes = slice.read().expect("copy the slice");
            assert_eq!(bytes.len(), first.len());
            black_box(bytes)
        });
    });
    group.finish();
}

/// `PartitionLog::read` of one batch at random offsets: the segment search, the offset-index
/// lookup and the scan of batch headers from the index entry. The bytes are not copied.
fn bench_index_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("index_lookup");
    // 16 MiB segments, so the lookup first picks one of four segments.
    let config = LogConfig {
        segment_bytes: 16 << 20,
        ..LogConfig::default()
    };
    let cases = [
        // ~16.5 KiB batches: an index entry (every 4 KiB of log) at every batch.
        ("16x1KiB_batches", batch(RECORDS_PER_BATCH, RECORD_BYTES)),
        // ~170-byte batches: about 24 batch headers between index entries to scan.
        ("1x100B_batches", batch(1, 100)),
    ];
    for (name, batch) in cases {
        let bytes = if batch.len() < 1024 {
            POPULATED_BYTES / 4
        } else {
            POPULATED_BYTES
        };
        let (_dir, log) = populated(&batch, bytes, config.clone());
        let end = log.log_end_offset();
        group.bench_function(BenchmarkId::new("random_offset", name), |b| {
            let mut state = 0x2545_F491_4F6C_DD1Du64;
            b.iter(|| {
                let offset = (next_random(&mut state) % end as u64) as i64;
                let slice = log.read(offset, end, 1, true).expect("read");
                assert!(!slice.is_empty());
                black_box(slice)
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_append, bench_read, bench_index_lookup
}
criterion_main!(benches);
