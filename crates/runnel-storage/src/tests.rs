//! Tests of the partition log through its public API, plus fault injection through the
//! segment's test hook. Each test builds its own directory; "crash" means dropping the log
//! without `close()`, which leaves the files exactly as a killed process would.

use std::error::Error;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use runnel_record::{decode_records, BatchBuilder, Record, RecordBatch, RecordBatchHeader};

use crate::segment::Fault;
use crate::{FileHandles, LogConfig, OsFileSystem, PartitionLog, StorageError};

type TestResult = Result<(), Box<dyn Error>>;

fn open_log(dir: &Path, config: LogConfig, now_ms: i64) -> Result<PartitionLog, StorageError> {
    // A pool of two: every test also runs with sealed segments' files closed and reopened.
    PartitionLog::open(
        Arc::new(OsFileSystem),
        FileHandles::new(2),
        dir,
        config,
        now_ms,
    )
}

const NOW: i64 = 1_700_000_000_000;

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 150,
        ..LogConfig::default()
    }
}

/// A batch of `records` records with timestamps `timestamp`, `timestamp + 1`, ...
fn batch(timestamp: i64, records: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(timestamp);
    for index in 0..records {
        let value = format!("value-{timestamp}-{index}");
        builder = builder.record_at(timestamp + index as i64, None, Some(value.as_bytes()), &[]);
    }
    builder.build()
}

/// A batch of idempotent producer `producer_id` (epoch 0) from `sequence`.
fn producer_batch(producer_id: i64, sequence: i32, records: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(NOW).producer(producer_id, 0, sequence);
    for index in 0..records {
        let value = format!("producer-{producer_id}-{}", sequence + index as i32);
        builder = builder.record(None, Some(value.as_bytes()), &[]);
    }
    builder.build()
}

fn append(log: &mut PartitionLog, timestamp: i64, records: usize) -> Result<Vec<u8>, StorageError> {
    let mut bytes = batch(timestamp, records);
    log.append(&mut bytes, 0, NOW)?;
    Ok(bytes)
}

/// Every batch from `from` to the log end, following segments as the broker would.
fn read_all(log: &PartitionLog, from: i64) -> Result<Vec<RecordBatchHeader>, Box<dyn Error>> {
    let mut headers = Vec::new();
    let mut offset = from;
    while offset < log.log_end_offset() {
        let slice = log.read(offset, log.log_end_offset(), 1 << 20, true)?;
        let bytes = slice.read()?;
        let batches = RecordBatch::validate_all(&bytes)?;
        let last = batches.last().ok_or("empty read before the log end")?;
        offset = last.next_offset();
        headers.extend(batches);
    }
    Ok(headers)
}

fn all_records(log: &PartitionLog) -> Result<Vec<Record>, Box<dyn Error>> {
    let mut records = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let bytes = log
            .read(offset, log.log_end_offset(), 1 << 20, true)?
            .read()?;
        if bytes.is_empty() {
            return Err(format!(
                "nothing to read at offset {offset}, below the log end {}",
                log.log_end_offset()
            )
            .into());
        }
        let mut position = 0;
        while position < bytes.len() {
            let header = RecordBatch::validate(&bytes[position..])?;
            records.extend(decode_records(
                &bytes[position..position + header.total_len()],
            )?);
            position += header.total_len();
            offset = header.next_offset();
        }
    }
    Ok(records)
}

fn segment_files(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|path| path.to_string_lossy().ends_with(suffix));
    files.sort();
    Ok(files)
}

fn copy_dir(from: &Path, to: &Path) -> TestResult {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

fn flip_byte(path: &Path, position: u64) -> TestResult {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, position)?;
    byte[0] ^= 0xff;
    file.write_all_at(&byte, position)?;
    Ok(())
}

#[test]
fn append_and_read_round_trip() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open_log(dir.path(), LogConfig::default(), NOW)?;
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let first = append(&mut log, NOW, 3)?;
    let second = append(&mut log, NOW + 10, 2)?;
    let mut third = batch(NOW + 5, 1);
    let info = log.append(&mut third, 7, NOW)?;
    assert_eq!(
        (
            info.base_offset,
            info.last_offset,
            info.max_timestamp,
            info.records
        ),
        (5, 5, NOW + 5, 1)
    );
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(
        log.size_bytes(),
        (first.len() + second.len() + third.len()) as u64
    );

    // Every offset inside the first batch returns the whole first batch onward.
    for offset in 0..3 {
        let bytes = log.read(offset, 6, 1 << 20, false)?.read()?;
        assert_eq!(bytes.len(), first.len() + second.len() + third.len());
        assert_eq!(&bytes[..first.len()], &first[..]);
    }
    let bytes = log.read(3, 6, 1 << 20, false)?.read()?;
    assert_eq!(RecordBatch::validate(&bytes)?.base_offset, 3);
    let headers = read_all(&log, 0)?;
    assert_eq!(
        headers
            .iter()
            .map(|h| (h.base_offset, h.last_offset()))
            .collect::<Vec<_>>(),
        vec![(0, 2), (3, 4), (5, 5)]
    );
    assert_eq!(headers[2].partition_leader_epoch, 7);

    // max_bytes and min_one_batch.
    assert_eq!(log.read(0, 6, first.len(), false)?.len(), first.len());
    assert_eq!(log.read(0, 6, first.len() + 1, false)?.len(), first.len());
    assert!(log.read(0, 6, first.len() - 1, false)?.is_empty());
    assert_eq!(log.read(0, 6, 1, true)?.len(), first.len());
    // The high watermark bounds what is returned.
    assert_eq!(log.read(0, 3, 1 << 20, true)?.len(), first.len());
    assert_eq!(
        log.read(0, 5, 1 << 20, true)?.len(),
        first.len() + second.len()
    );
    assert!(log.read(0, 2, 1 << 20, true)?.is_empty());
    // The log end is empty, beyond it is out of range.
    assert!(log.read(6, 6, 1 << 20, true)?.is_empty());
    assert!(log.read(6, 6, 1 << 20, true)?.read()?.is_empty());
    assert!(matches!(
        log.read(7, 7, 1 << 20, true),
        Err(StorageError::OffsetOutOfRange {
            offset: 7,
            log_start_offset: 0,
            log_end_offset: 6
        })
    ));
    assert!(matches!(
        log.read(-1, 6, 100, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let error = log.read(9, 9, 1, true).err().ok_or("expected an error")?;
    assert!(
        error.to_string().contains("offset 9 is out of range"),
        "{error}"
    );
    Ok(())
}

#[test]
fn reads_across_segment_rolls() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    let mut expected = Vec::new();
    for index in 0..30 {
        expected.push(append(&mut log, NOW + index, 1 + (index as usize % 3))?);
    }
    assert!(log.segment_count() > 3, "tiny segments must roll");
    assert_eq!(
        segment_files(dir.path(), ".log")?.len(),
        log.segment_count()
    );
    for segment in log.segments() {
        assert!(segment.size <= 600 || segment.offset_index.warm_entries().is_empty());
    }
    let headers = read_all(&log, 0)?;
    assert_eq!(headers.len(), 30);
    for pair in headers.windows(2) {
        assert_eq!(pair[0].next_offset(), pair[1].base_offset);
    }
    // One read stops at its segment's end.
    let slice = log.read(0, log.log_end_offset(), 1 << 20, true)?;
    assert!((slice.len() as u64) <= log.segments()[0].size);
    // A batch bigger than segment.bytes goes into an empty segment of its own.
    let big = append(&mut log, NOW, 100)?;
    assert!(big.len() > 600);
    let last = log.segments().last().ok_or("no segment")?;
    assert_eq!(last.size, big.len() as u64);
    Ok(())
}

/// What a linear scan of every batch says the read at `offset` must start with.
fn expected_batch_for(batches: &[(i64, i64)], offset: i64) -> Option<(i64, i64)> {
    batches.iter().copied().find(|&(_, last)| last >= offset)
}

fn check_random_log(
    sizes: &[(usize, i64)],
    segment_bytes: u64,
    index_interval_bytes: u32,
    probes: &[(usize, i64)],
) -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = LogConfig {
        segment_bytes,
        index_interval_bytes,
        ..LogConfig::default()
    };
    let mut log = open_log(dir.path(), config.clone(), NOW)?;
    let mut batches = Vec::new();
    for &(records, timestamp_delta) in sizes {
        let before = log.log_end_offset();
        let mut bytes = batch(NOW + timestamp_delta, records);
        let info = log.append(&mut bytes, 1, NOW)?;
        assert_eq!(info.base_offset, before, "offsets are consecutive");
        assert_eq!(info.last_offset, before + records as i64 - 1);
        batches.push((info.base_offset, info.last_offset));
    }
    let records = all_records(&log)?;
    for (index, record) in records.iter().enumerate() {
        assert_eq!(record.offset, index as i64);
    }
    for round in 0..2 {
        let end = log.log_end_offset();
        for &(bucket, target) in probes {
            let offset = (bucket as i64) % (end + 1);
            let slice = log.read(offset, end, 1 << 20, true)?;
            let bytes = slice.read()?;
            match expected_batch_for(&batches, offset) {
                None => assert!(bytes.is_empty()),
                Some((base, last)) => {
                    let header = RecordBatch::validate(&bytes)?;
                    assert_eq!((header.base_offset, header.last_offset()), (base, last));
                }
            }
            // The index-assisted lookup agrees with a linear scan, segment by segment.
            for segment in log.segments() {
                let mut reader = segment.reader()?;
                let found = segment
                    .find_batch(&mut reader, offset)?
                    .map(|(_, b)| (b.base_offset, b.last_offset));
                let linear = expected_batch_for(&batches, offset)
                    .filter(|&(base, _)| base >= segment.base_offset && base < segment.next_offset);
                if offset >= segment.base_offset {
                    assert_eq!(found, linear);
                }
            }
            let target = NOW + target;
            let expected = records
                .iter()
                .find(|record| record.timestamp >= target)
                .map(|record| (record.offset, record.timestamp));
            assert_eq!(
                log.offset_for_timestamp(target)?,
                expected,
                "target {target}"
            );
        }
        let max = records.iter().map(|record| record.timestamp).max();
        let expected_max = max.and_then(|max| {
            records
                .iter()
                .find(|r| r.timestamp == max)
                .map(|r| (r.offset, r.timestamp))
        });
        assert_eq!(log.max_timestamp()?, expected_max);
        if round == 0 {
            log.close()?;
            log = open_log(dir.path(), config.clone(), NOW)?;
            assert_eq!(log.log_end_offset(), batches.last().map_or(0, |b| b.1 + 1));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_appends_read_back(
        sizes in proptest::collection::vec((1usize..6, -50i64..500), 1..40),
        segment_bytes in 200u64..3000,
        index_interval_bytes in 0u32..400,
        probes in proptest::collection::vec((0usize..1000, -60i64..600), 1..12),
    ) {
        check_random_log(&sizes, segment_bytes, index_interval_bytes, &probes)
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
    }
}

/// A multi-segment log left as a killed process leaves it.
struct CrashedLog {
    /// (base offset, next offset) of every batch.
    batches: Vec<(i64, i64)>,
    /// Where the last batch starts in the last segment file, and its length.
    last_position: u64,
    last_len: usize,
}

fn crashed_log(dir: &Path) -> Result<CrashedLog, Box<dyn Error>> {
    let mut log = open_log(dir, small_config(), NOW)?;
    let mut batches = Vec::new();
    let mut last_len = 0;
    for index in 0..8 {
        let bytes = append(&mut log, NOW + index, 3)?;
        last_len = bytes.len();
        batches.push((log.log_end_offset() - 3, log.log_end_offset()));
    }
    assert!(log.segment_count() >= 2);
    let last_position = log.segments().last().ok_or("no segment")?.size - last_len as u64;
    drop(log);
    Ok(CrashedLog {
        batches,
        last_position,
        last_len,
    })
}

#[test]
fn recovery_cuts_a_torn_last_batch_at_every_byte() -> TestResult {
    let original = tempfile::tempdir()?;
    let CrashedLog {
        batches,
        last_position,
        last_len,
    } = crashed_log(original.path())?;
    let whole_end = batches[batches.len() - 2].1;
    for cut in last_position..last_position + last_len as u64 {
        let copy = tempfile::tempdir()?;
        copy_dir(original.path(), copy.path())?;
        let segment = segment_files(copy.path(), ".log")?
            .pop()
            .ok_or("no segment")?;
        OpenOptions::new()
            .write(true)
            .open(&segment)?
            .set_len(cut)?;
        let mut log = open_log(copy.path(), small_config(), NOW)?;
        assert_eq!(log.log_end_offset(), whole_end, "cut at {cut}");
        assert_eq!(fs::metadata(&segment)?.len(), last_position);
        assert_eq!(read_all(&log, 0)?.len(), batches.len() - 1);
        let info = log.append(&mut batch(NOW, 2), 0, NOW)?;
        assert_eq!(info.base_offset, whole_end);
        assert_eq!(read_all(&log, 0)?.len(), batches.len());
    }
    // The untouched copy recovers everything.
    let log = open_log(original.path(), small_config(), NOW)?;
    assert_eq!(log.log_end_offset(), batches[batches.len() - 1].1);
    Ok(())
}

#[test]
fn recovery_discards_garbage_after_the_last_batch() -> TestResult {
    let dir = tempfile::tempdir()?;
    let batches = crashed_log(dir.path())?.batches;
    let segment = segment_files(dir.path(), ".log")?
        .pop()
        .ok_or("no segment")?;
    let size = fs::metadata(&segment)?.len();
    let garbage: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
    OpenOptions::new()
        .write(true)
        .open(&segment)?
        .write_all_at(&garbage, size)?;
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    assert_eq!(log.log_end_offset(), batches[batches.len() - 1].1);
    assert_eq!(fs::metadata(&segment)?.len(), size);
    append(&mut log, NOW, 1)?;
    assert_eq!(read_all(&log, 0)?.len(), batches.len() + 1);
    Ok(())
}

#[test]
fn deleted_index_files_are_rebuilt() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    for index in 0..20 {
        append(&mut log, NOW + (index * 37) % 11, 2)?;
    }
    let offset_entries: Vec<_> = log
        .segments()
        .iter()
        .map(|s| s.offset_index.all_entries().unwrap())
        .collect();
    let time_entries: Vec<_> = log
        .segments()
        .iter()
        .map(|s| s.time_index.all_entries().unwrap())
        .collect();
    let answer = log.offset_for_timestamp(NOW + 5)?;
    log.close()?;
    for path in segment_files(dir.path(), ".index")?
        .iter()
        .chain(&segment_files(dir.path(), ".timeindex")?)
    {
        fs::remove_file(path)?;
    }
    let log = open_log(dir.path(), small_config(), NOW)?;
    let rebuilt: Vec<_> = log
        .segments()
        .iter()
        .map(|s| s.offset_index.all_entries().unwrap())
        .collect();
    assert_eq!(rebuilt, offset_entries);
    let rebuilt: Vec<_> = log
        .segments()
        .iter()
        .map(|s| s.time_index.all_entries().unwrap())
        .collect();
    assert_eq!(rebuilt, time_entries);
    assert_eq!(log.offset_for_timestamp(NOW + 5)?, answer);
    assert_eq!(read_all(&log, 0)?.len(), 20);
    assert_eq!(
        segment_files(dir.path(), ".index")?.len(),
        log.segment_count()
    );
    Ok(())
}

#[test]
fn an_index_pointing_at_the_wrong_batch_is_rebuilt() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    for index in 0..20 {
        append(&mut log, NOW + index, 2)?;
    }
    let expected: Vec<_> = log.segments()[0].offset_index.all_entries().unwrap();
    assert!(!expected.is_empty());
    log.close()?;
    let index = segment_files(dir.path(), ".index")?.remove(0);
    // Point the last entry's relative offset one past where it should be.
    let length = fs::metadata(&index)?.len();
    flip_byte(&index, length - 5)?;
    let log = open_log(dir.path(), small_config(), NOW)?;
    assert_eq!(log.segments()[0].offset_index.all_entries()?, expected);
    assert_eq!(read_all(&log, 0)?.len(), 20);
    Ok(())
}

/// A payload byte (not a header byte) in the middle of `segment`'s batch at `position`.
fn payload_byte(position: u64, len: usize) -> u64 {
    position + runnel_record::BATCH_HEADER_LEN as u64 + (len as u64 - 61) / 2
}

#[test]
fn clean_shutdown_skips_the_scan() -> TestResult {
    let dir = tempfile::tempdir()?;
    let CrashedLog {
        batches,
        last_position,
        last_len,
    } = crashed_log(dir.path())?;
    let log = open_log(dir.path(), small_config(), NOW)?;
    log.close()?;
    assert!(dir.path().join(".clean-shutdown").exists());
    let segment = segment_files(dir.path(), ".log")?
        .pop()
        .ok_or("no segment")?;
    flip_byte(&segment, payload_byte(last_position, last_len))?;

    // Clean: the corrupt payload is not read, so nothing is cut.
    let log = open_log(dir.path(), small_config(), NOW)?;
    assert!(
        !dir.path().join(".clean-shutdown").exists(),
        "open removes the marker"
    );
    assert_eq!(log.log_end_offset(), batches[batches.len() - 1].1);
    drop(log);
    // Unclean, with the recovery point at the log end: the active segment holds the recovery
    // point and is scanned, and the bad batch is below it: that is corruption, not a torn tail.
    let error = open_log(dir.path(), small_config(), NOW)
        .err()
        .ok_or("expected corruption")?;
    assert!(matches!(error, StorageError::Corrupt(_)), "{error}");
    assert!(
        error.to_string().contains("below the recovery point"),
        "{error}"
    );
    Ok(())
}

#[test]
fn unclean_open_does_not_scan_below_the_recovery_point() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    let mut first_segment_batches = Vec::new();
    for index in 0..12 {
        let bytes = append(&mut log, NOW + index, 3)?;
        if log.segment_count() == 1 {
            first_segment_batches.push(bytes.len());
        }
    }
    assert!(log.segment_count() >= 3);
    log.flush()?;
    assert_eq!(log.recovery_point(), log.log_end_offset());
    let flushed_end = log.log_end_offset();
    append(&mut log, NOW, 3)?; // an unflushed tail
    let end = log.log_end_offset();
    drop(log); // crash

    let files = segment_files(dir.path(), ".log")?;
    // Corrupt the payload of the middle batch of the first (flushed, old) segment...
    let position: usize = first_segment_batches[..first_segment_batches.len() / 2]
        .iter()
        .sum();
    let len = first_segment_batches[first_segment_batches.len() / 2];
    flip_byte(&files[0], payload_byte(position as u64, len))?;
    let first_size = fs::metadata(&files[0])?.len();
    // ...and append garbage to the tail.
    let last = files.last().ok_or("no segment")?;
    let tail = fs::metadata(last)?.len();
    OpenOptions::new()
        .write(true)
        .open(last)?
        .write_all_at(&[0xAB; 50], tail)?;

    let mut log = open_log(dir.path(), small_config(), NOW)?;
    assert_eq!(
        fs::metadata(&files[0])?.len(),
        first_size,
        "the old segment was not scanned"
    );
    assert_eq!(
        fs::metadata(last)?.len(),
        tail,
        "the tail was checked and cut"
    );
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.recovery_point(), flushed_end);
    // The corrupt batch is served as stored (clients check CRCs); the rest reads fine.
    let bytes = log.read(0, end, 1 << 20, true)?.read()?;
    assert!(RecordBatch::validate_all(&bytes).is_err());
    assert_eq!(read_all(&log, flushed_end)?.len(), 1);
    append(&mut log, NOW, 1)?;
    assert_eq!(log.log_end_offset(), end + 1);
    Ok(())
}

#[test]
fn timestamps_survive_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    assert_eq!(log.max_timestamp()?, None);
    assert_eq!(log.offset_for_timestamp(0)?, None);
    // Timestamps go up and down, inside batches too.
    let timestamps = [100, 300, 200, 250, 900, 50, 900, 400];
    for &timestamp in &timestamps {
        let mut bytes = BatchBuilder::new(NOW + timestamp)
            .record_at(NOW + timestamp, None, Some(b"a"), &[])
            .record_at(NOW + timestamp - 40, None, Some(b"b"), &[])
            .build();
        log.append(&mut bytes, 0, NOW)?;
    }
    let check = |log: &PartitionLog| -> TestResult {
        assert_eq!(log.offset_for_timestamp(NOW)?, Some((0, NOW + 100)));
        assert_eq!(log.offset_for_timestamp(NOW + 201)?, Some((2, NOW + 300)));
        assert_eq!(log.offset_for_timestamp(NOW + 255)?, Some((2, NOW + 300)));
        assert_eq!(log.offset_for_timestamp(NOW + 301)?, Some((8, NOW + 900)));
        assert_eq!(log.offset_for_timestamp(NOW + 901)?, None);
        assert_eq!(log.max_timestamp()?, Some((8, NOW + 900)));
        Ok(())
    };
    check(&log)?;
    // Unclean: the reopen rebuilds the segments' indexes and seals them again.
    drop(log);
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    check(&log)?;
    // Unclean again, but with everything below the recovery point: the next open trusts the
    // indexes the last one wrote, sealing entries included.
    log.flush()?;
    log.checkpoint()?;
    drop(log);
    let log = open_log(dir.path(), small_config(), NOW)?;
    check(&log)?;
    log.close()?;
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    check(&log)?;
    // The log start offset hides earlier records.
    log.delete_records_before(3)?;
    assert_eq!(log.offset_for_timestamp(NOW)?, Some((3, NOW + 260)));
    Ok(())
}

#[test]
fn a_segment_sealed_at_open_has_its_time_entry_on_disk() -> TestResult {
    let dir = tempfile::tempdir()?;
    // No time index entries from appends: a sealed segment's only one is its sealing entry.
    let config = LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 1 << 20,
        ..LogConfig::default()
    };
    let mut log = open_log(dir.path(), config.clone(), NOW)?;
    for index in 0..20 {
        append(&mut log, NOW + index, 2)?;
    }
    assert!(log.segments().len() > 2);
    // Unclean: the reopen rebuilds every segment's indexes and seals the inactive ones.
    drop(log);
    let log = open_log(dir.path(), config, NOW)?;
    let sealed = log.segments().len() - 1;
    let time_indexes = segment_files(dir.path(), ".timeindex")?;
    for path in &time_indexes[..sealed] {
        assert_eq!(
            fs::metadata(path)?.len(),
            12,
            "{}: the sealing entry is in the file",
            path.display()
        );
    }
    Ok(())
}

#[test]
fn retention_by_time() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = LogConfig {
        retention_ms: 1000,
        ..small_config()
    };
    let mut log = open_log(dir.path(), config, NOW)?;
    for index in 0..10 {
        append(&mut log, NOW + index * 100, 3)?;
    }
    let segments = log.segment_count();
    assert!(segments >= 3);
    assert_eq!(log.enforce_retention(NOW + 500)?, 0);
    // Only segments whose newest record is old enough go.
    let second_max = log.segments()[1].state.max_timestamp;
    let deleted = log.enforce_retention(second_max + 1001)?;
    assert_eq!(deleted, 2);
    assert_eq!(log.segment_count(), segments - 2);
    assert_eq!(log.log_start_offset(), log.segments()[0].base_offset);
    assert!(matches!(
        log.read(0, 30, 100, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(segment_files(dir.path(), ".log")?.len(), segments - 2);
    // Everything expires: the active segment goes too and an empty one takes its place.
    let end = log.log_end_offset();
    log.enforce_retention(NOW + 1_000_000)?;
    assert_eq!(log.segment_count(), 1);
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.size_bytes()
        ),
        (end, end, 0)
    );
    append(&mut log, NOW, 1)?;
    assert_eq!(read_all(&log, end)?.len(), 1);
    drop(log);
    let log = open_log(dir.path(), small_config(), NOW)?;
    assert_eq!(log.log_start_offset(), end);
    Ok(())
}

#[test]
fn retention_by_size() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    for index in 0..20 {
        append(&mut log, NOW + index, 3)?;
    }
    let sizes: Vec<u64> = log.segments().iter().map(|s| s.size).collect();
    let total: u64 = sizes.iter().sum();
    // Keep at least everything but the first two segments.
    let keep = total - sizes[0] - sizes[1];
    let mut config = small_config();
    config.retention_bytes = keep as i64;
    log.set_config(config.clone());
    assert_eq!(log.enforce_retention(NOW)?, 2);
    assert_eq!(log.size_bytes(), keep);
    assert_eq!(log.enforce_retention(NOW)?, 0);
    config.retention_bytes = -1;
    log.set_config(config);
    assert_eq!(log.enforce_retention(NOW)?, 0);
    Ok(())
}

#[test]
fn delete_records_moves_the_log_start() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    for index in 0..12 {
        append(&mut log, NOW + index, 3)?;
    }
    let second_base = log.segments()[1].base_offset;
    assert_eq!(log.delete_records_before(1)?, 1);
    assert_eq!(log.segment_count(), log.segments().len());
    assert!(matches!(
        log.read(0, 36, 100, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // Reading at the new start returns the batch holding it.
    assert_eq!(
        RecordBatch::validate(&log.read(1, 36, 1 << 20, true)?.read()?)?.base_offset,
        0
    );
    let segments = log.segment_count();
    assert_eq!(log.delete_records_before(second_base + 1)?, second_base + 1);
    assert_eq!(log.segment_count(), segments - 1);
    assert_eq!(
        log.delete_records_before(0)?,
        second_base + 1,
        "never moves back"
    );
    assert!(matches!(
        log.delete_records_before(37),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.delete_records_before(36)?, 36);
    assert_eq!(log.segment_count(), 1, "only the active segment is left");
    drop(log);
    let log = open_log(dir.path(), small_config(), NOW)?;
    assert_eq!(log.log_start_offset(), 36);
    assert!(log.read(36, 36, 100, true)?.is_empty());
    Ok(())
}

#[test]
fn truncate_to_cuts_segments_indexes_and_epochs() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    for index in 0..12 {
        let epoch = if index < 6 { 1 } else { 2 };
        log.append(&mut batch(NOW + index * 10, 2), epoch, NOW)?;
    }
    assert_eq!(log.end_offset_for_epoch(1), (1, 12));
    log.flush()?;
    let segments = log.segment_count();
    log.truncate_to(9, NOW)?; // inside the batch 8..=9: the whole batch goes
    assert_eq!(log.log_end_offset(), 8);
    assert!(log.segment_count() < segments);
    assert_eq!(log.recovery_point(), 8);
    assert_eq!(log.latest_leader_epoch(), Some(1));
    assert_eq!(log.end_offset_for_epoch(1), (1, 8));
    assert_eq!(
        log.end_offset_for_epoch(2),
        (-1, -1),
        "newer than every epoch left"
    );
    assert_eq!(log.offset_for_timestamp(NOW + 45)?, None);
    assert_eq!(log.max_timestamp()?, Some((7, NOW + 31)));
    let info = log.append(&mut batch(NOW, 1), 3, NOW)?;
    assert_eq!(info.base_offset, 8);
    assert_eq!(read_all(&log, 0)?.len(), 5);
    log.truncate_to(100, NOW)?; // beyond the end: nothing
    assert_eq!(log.log_end_offset(), 9);
    drop(log);
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(log.end_offset_for_epoch(3), (3, 9));
    // Truncating to the very start empties the log.
    log.truncate_to(0, NOW)?;
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_count()
        ),
        (0, 0, 1)
    );
    assert_eq!(log.latest_leader_epoch(), None);
    Ok(())
}

/// A replica that became leader (its epoch recorded at the log end) and wrote nothing
/// before it was deposed must drop that epoch when the new leader says the logs diverge
/// there, though no record goes; otherwise its every fetch diverges again. Found by the
/// cluster simulation (runnel-sim).
#[test]
fn truncating_at_the_log_end_drops_an_epoch_that_wrote_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open_log(dir.path(), LogConfig::default(), NOW)?;
    log.append(&mut batch(NOW, 3), 4, NOW)?;
    log.assign_leader_epoch(5, 3)?;
    assert_eq!(log.latest_leader_epoch(), Some(5));
    log.truncate_to(3, NOW)?;
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(log.latest_leader_epoch(), Some(4));
    drop(log);
    let log = open_log(dir.path(), LogConfig::default(), NOW)?;
    assert_eq!(log.latest_leader_epoch(), Some(4), "and it stays dropped");
    Ok(())
}

#[test]
fn leader_epochs_are_persisted() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open_log(dir.path(), LogConfig::default(), NOW)?;
    assert_eq!(log.end_offset_for_epoch(0), (-1, -1));
    log.assign_leader_epoch(2, 0)?;
    log.append(&mut batch(NOW, 5), 2, NOW)?;
    log.assign_leader_epoch(2, 3)?; // already the latest: no-op
    log.assign_leader_epoch(4, 5)?;
    log.append(&mut batch(NOW, 5), 4, NOW)?;
    // An append under a newer epoch records it by itself.
    log.append(&mut batch(NOW, 5), 6, NOW)?;
    assert_eq!(log.latest_leader_epoch(), Some(6));
    let check = |log: &PartitionLog| {
        assert_eq!(log.end_offset_for_epoch(1), (1, 0));
        assert_eq!(log.end_offset_for_epoch(2), (2, 5));
        assert_eq!(log.end_offset_for_epoch(3), (2, 5));
        assert_eq!(log.end_offset_for_epoch(4), (4, 10));
        assert_eq!(log.end_offset_for_epoch(6), (6, 15));
        assert_eq!(log.end_offset_for_epoch(9), (-1, -1));
    };
    check(&log);
    drop(log);
    let log = open_log(dir.path(), LogConfig::default(), NOW)?;
    check(&log);
    let text = fs::read_to_string(dir.path().join("leader-epoch-checkpoint"))?;
    assert_eq!(text, "0\n3\n2 0\n4 5\n6 10\n");
    Ok(())
}

#[test]
fn replicated_appends_keep_offsets_and_epochs() -> TestResult {
    let leader_dir = tempfile::tempdir()?;
    let mut leader = open_log(leader_dir.path(), LogConfig::default(), NOW)?;
    leader.append(&mut batch(NOW, 3), 1, NOW)?;
    leader.append(&mut batch(NOW, 2), 3, NOW)?;
    let fetched = leader.read(0, 5, 1 << 20, true)?.read()?;

    let dir = tempfile::tempdir()?;
    let mut follower = open_log(dir.path(), LogConfig::default(), NOW)?;
    let info = follower.append_replicated(&fetched, NOW)?;
    assert_eq!(
        (info.base_offset, info.last_offset, info.records),
        (0, 4, 5)
    );
    assert_eq!(follower.end_offset_for_epoch(1), (1, 3));
    assert_eq!(follower.end_offset_for_epoch(3), (3, 5));
    assert_eq!(follower.read(0, 5, 1 << 20, true)?.read()?, fetched);
    let error = follower
        .append_replicated(&fetched, NOW)
        .err()
        .ok_or("expected an error")?;
    assert!(
        matches!(
            error,
            StorageError::NonContiguous {
                expected: 5,
                got: 0
            }
        ),
        "{error}"
    );
    let mut corrupt = fetched.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(matches!(
        follower.append_replicated(&corrupt, NOW),
        Err(StorageError::InvalidBatch(_))
    ));
    assert!(matches!(
        follower.append(&mut [], 0, NOW),
        Err(StorageError::InvalidBatch(_))
    ));
    assert_eq!(follower.log_end_offset(), 5);
    Ok(())
}

#[test]
fn a_failed_write_leaves_nothing_visible() -> TestResult {
    for fault in [Fault::TornLog, Fault::OffsetIndex, Fault::TimeIndex] {
        let dir = tempfile::tempdir()?;
        let config = LogConfig {
            index_interval_bytes: 0, // every batch gets index entries
            ..LogConfig::default()
        };
        let mut log = open_log(dir.path(), config.clone(), NOW)?;
        append(&mut log, NOW, 2)?;
        let size = log.size_bytes();
        let (offset_entries, time_entries) = {
            let active = log.active_mut();
            (
                active.offset_index.all_entries().unwrap().len(),
                active.time_index.all_entries().unwrap().len(),
            )
        };
        log.active_mut().fault = Some(fault);
        let result = log.append(&mut batch(NOW + 10, 2), 0, NOW);
        assert!(matches!(result, Err(StorageError::Io { .. })), "{fault:?}");
        assert_eq!(
            (log.log_end_offset(), log.size_bytes()),
            (2, size),
            "{fault:?}"
        );
        let active = log.active_mut();
        assert_eq!(
            active.offset_index.all_entries().unwrap().len(),
            offset_entries
        );
        assert_eq!(active.time_index.all_entries().unwrap().len(), time_entries);
        let log_file = segment_files(dir.path(), ".log")?.remove(0);
        assert_eq!(
            fs::metadata(&log_file)?.len(),
            size,
            "{fault:?}: the file was cut back"
        );
        // The index file never holds the failed append's entries (new entries stay in memory
        // until they leave the warm tail or the segment is synced).
        let index_file = segment_files(dir.path(), ".timeindex")?.remove(0);
        assert!(fs::metadata(&index_file)?.len() <= 12 * time_entries as u64);
        active.fault = None;
        assert!(log.read(2, 10, 100, true)?.is_empty());
        let info = log.append(&mut batch(NOW + 10, 2), 0, NOW)?;
        assert_eq!(info.base_offset, 2);
        drop(log);
        let log = open_log(dir.path(), config, NOW)?;
        assert_eq!(log.log_end_offset(), 4);
        assert_eq!(read_all(&log, 0)?.len(), 2);
    }
    Ok(())
}

#[test]
fn flush_policy_and_split_flush() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = LogConfig {
        flush_messages: 5,
        flush_ms: 1000,
        ..LogConfig::default()
    };
    let mut log = open_log(dir.path(), config, NOW)?;
    assert!(!log.flush_due(NOW + 1_000_000), "nothing to flush");
    append(&mut log, NOW, 3)?;
    assert!(!log.flush_due(NOW + 999));
    assert!(
        log.flush_due(NOW + 1000),
        "the oldest unflushed append is a second old"
    );
    append(&mut log, NOW, 2)?;
    assert!(log.flush_due(NOW), "five records are unflushed");

    let handle = log.unflushed()?;
    assert_eq!(handle.offset, 5);
    append(&mut log, NOW + 10, 1)?; // arrives while the fsync runs
    handle.sync()?;
    log.mark_flushed(handle.offset);
    assert_eq!(log.recovery_point(), 5);
    assert!(!log.flush_due(NOW), "one record is below flush.messages");
    assert!(log.flush_due(NOW + 1000));
    log.flush()?;
    assert_eq!(log.recovery_point(), 6);
    assert!(!log.flush_due(NOW + 1_000_000));
    log.mark_flushed(3); // a stale handle never moves the recovery point back
    assert_eq!(log.recovery_point(), 6);
    let checkpoint = || fs::read_to_string(dir.path().join("partition.checkpoint"));
    assert_eq!(
        checkpoint()?,
        "0\n0 0\n",
        "a flush does not rewrite the checkpoint"
    );
    log.checkpoint()?;
    assert_eq!(checkpoint()?, "0\n0 6\n");

    let every = LogConfig {
        flush_messages: 1,
        ..LogConfig::default()
    };
    log.set_config(every);
    append(&mut log, NOW, 1)?;
    assert!(
        log.flush_due(NOW),
        "flush.messages=1 flushes before every ack"
    );
    Ok(())
}

#[test]
fn segments_roll_on_age() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    };
    let mut log = open_log(dir.path(), config.clone(), NOW)?;
    // As in Kafka, the age is checked on append: an idle segment waits for the next one.
    let mut bytes = batch(NOW, 1);
    log.append(&mut bytes, 0, NOW)?;
    log.append(&mut batch(NOW, 1), 0, NOW + 999)?;
    assert_eq!(log.segment_count(), 1);
    log.append(&mut batch(NOW, 1), 0, NOW + 1000)?;
    assert_eq!(log.segment_count(), 2);
    log.append(&mut batch(NOW, 1), 0, NOW + 1999)?;
    assert_eq!(log.segment_count(), 2);
    log.append(&mut batch(NOW, 1), 0, NOW + 2000)?;
    assert_eq!(log.segment_count(), 3);
    assert_eq!(read_all(&log, 0)?.len(), 5);
    log.close()?;
    let log = open_log(dir.path(), config, NOW)?;
    assert_eq!((log.segment_count(), log.log_end_offset()), (3, 5));
    Ok(())
}

#[test]
fn fetch_slices_outlive_deleted_segments() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    let first = append(&mut log, NOW, 3)?;
    for index in 0..10 {
        append(&mut log, NOW + index, 3)?;
    }
    let slice = log.read(0, log.log_end_offset(), first.len(), false)?;
    log.delete_records_before(log.log_end_offset())?;
    assert_eq!(slice.read()?.as_ref(), &first[..]);
    Ok(())
}

#[test]
fn an_empty_fetch_slice_needs_no_file() -> TestResult {
    let slice = crate::FetchSlice::empty();
    assert!(slice.is_empty());
    assert_eq!(slice.len(), 0);
    assert!(slice.read()?.is_empty());
    Ok(())
}

#[test]
fn a_missing_checkpoint_means_a_full_scan() -> TestResult {
    let dir = tempfile::tempdir()?;
    let batches = crashed_log(dir.path())?.batches;
    fs::remove_file(dir.path().join("partition.checkpoint"))?;
    fs::write(dir.path().join("partition.checkpoint.tmp"), b"half")?;
    fs::write(dir.path().join("00000000000000099999.index"), b"orphan")?;
    let log = open_log(dir.path(), small_config(), NOW)?;
    assert_eq!(log.log_end_offset(), batches[batches.len() - 1].1);
    assert_eq!(log.recovery_point(), 0);
    assert!(!dir.path().join("partition.checkpoint.tmp").exists());
    assert!(!dir.path().join("00000000000000099999.index").exists());
    Ok(())
}

/// What the workload of the power-loss property does between crashes.
/// Appends a batch of `producer_id` and returns what the log made of it.
fn produce(
    log: &mut PartitionLog,
    producer_id: i64,
    sequence: i32,
    records: usize,
) -> Result<crate::AppendInfo, StorageError> {
    log.append(&mut producer_batch(producer_id, sequence, records), 0, NOW)
}

#[test]
fn a_retried_batch_gets_its_original_offsets_and_is_not_written_again() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open_log(dir.path(), LogConfig::default(), NOW)?;
    let first = produce(&mut log, 7, 0, 3)?;
    append(&mut log, NOW, 2)?;
    produce(&mut log, 7, 3, 1)?;
    let end = log.log_end_offset();
    let retry = produce(&mut log, 7, 0, 3)?;
    assert!(retry.duplicate);
    assert_eq!(
        (retry.base_offset, retry.last_offset),
        (first.base_offset, first.last_offset)
    );
    assert_eq!(log.log_end_offset(), end, "a duplicate writes nothing");
    assert!(matches!(
        produce(&mut log, 7, 9, 1),
        Err(StorageError::Producer(
            crate::ProducerError::OutOfOrderSequence { expected: 4, .. }
        ))
    ));
    let mut two = producer_batch(8, 0, 1);
    two.extend(producer_batch(8, 1, 1));
    assert!(
        matches!(
            log.append(&mut two, 0, NOW),
            Err(StorageError::InvalidBatch(_))
        ),
        "an idempotent producer's records are one batch"
    );
    assert_eq!(log.log_end_offset(), end);
    Ok(())
}

/// The last sequence the log remembers for each of producers 1..=3.
fn last_sequences(log: &PartitionLog) -> Vec<Option<i32>> {
    (1..=3)
        .map(|id| {
            log.producers()
                .get(id)
                .and_then(|entry| entry.last_sequence())
        })
        .collect()
}

#[test]
fn producer_state_survives_reopening_and_follows_truncation() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    let mut ends = Vec::new();
    for round in 0..12 {
        for producer in 1..=3 {
            produce(&mut log, producer, round * 2, 2)?;
        }
        ends.push(log.log_end_offset());
    }
    assert!(log.segment_count() > 3, "the test wants several rolls");
    assert!(
        !segment_files(dir.path(), ".snapshot")?.is_empty(),
        "rolls write snapshots"
    );
    let expected = last_sequences(&log);
    assert_eq!(expected, vec![Some(23); 3]);

    // Clean: the close's snapshot is all there is to read.
    log.close()?;
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    assert_eq!(last_sequences(&log), expected);
    assert!(produce(&mut log, 2, 22, 2)?.duplicate);

    // Unclean: the roll snapshots plus the log after the newest.
    produce(&mut log, 1, 24, 2)?;
    drop(log);
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    assert_eq!(last_sequences(&log), vec![Some(25), Some(23), Some(23)]);
    assert!(produce(&mut log, 1, 24, 2)?.duplicate);

    // A damaged snapshot is passed over for an older one (or the whole log).
    drop(log);
    for snapshot in segment_files(dir.path(), ".snapshot")? {
        fs::write(&snapshot, b"garbage")?;
    }
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    assert_eq!(last_sequences(&log), vec![Some(25), Some(23), Some(23)]);

    // Truncation forgets what it removes: the batch may be written again.
    log.truncate_to(ends[5], NOW)?;
    assert_eq!(last_sequences(&log), vec![Some(11); 3]);
    assert!(!produce(&mut log, 3, 12, 2)?.duplicate);
    Ok(())
}

#[test]
fn markers_end_transactions_and_aborts_survive_reopening() -> TestResult {
    use runnel_record::{ControlType, TransactionMarker};
    let dir = tempfile::tempdir()?;
    let mut log = open_log(dir.path(), small_config(), NOW)?;
    let transactional = |producer_id: i64, sequence: i32| {
        BatchBuilder::new(NOW)
            .producer(producer_id, 0, sequence)
            .transactional(true)
            .record(None, Some(b"in a transaction"), &[])
            .build()
    };
    let marker = |control| TransactionMarker {
        control,
        coordinator_epoch: 0,
    };
    append(&mut log, NOW, 1)?;
    let first = log.append(&mut transactional(1, 0), 0, NOW)?.base_offset;
    log.append(&mut transactional(2, 0), 0, NOW)?;
    assert_eq!(log.producers().first_unstable_offset(), Some(first));
    let abort = log.append_marker(1, 0, marker(ControlType::Abort), 0, NOW)?;
    log.append_marker(2, 0, marker(ControlType::Commit), 0, NOW)?;
    assert_eq!(log.producers().first_unstable_offset(), None);
    log.append(&mut transactional(2, 1), 0, NOW)?;
    let open = log.producers().first_unstable_offset();
    assert!(open.is_some());
    assert!(
        matches!(
            log.append_marker(2, -1, marker(ControlType::Commit), 0, NOW),
            Err(StorageError::Producer(
                crate::ProducerError::InvalidEpoch { .. }
            ))
        ),
        "a marker of an older epoch is refused"
    );
    let aborted = log.producers().aborted_between(0, log.log_end_offset());
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (aborted[0].first_offset, aborted[0].last_offset),
        (first, abort.base_offset)
    );

    // Unclean (the log after the last snapshot is read again, markers included), then clean.
    drop(log);
    let log = open_log(dir.path(), small_config(), NOW)?;
    assert_eq!(log.producers().aborted_between(0, i64::MAX), aborted);
    assert_eq!(log.producers().first_unstable_offset(), open);
    log.close()?;
    let log = open_log(dir.path(), small_config(), NOW)?;
    assert_eq!(log.producers().aborted_between(0, i64::MAX), aborted);
    assert_eq!(log.producers().first_unstable_offset(), open);
    Ok(())
}

#[derive(Debug, Clone)]
enum Step {
    Append {
        records: usize,
    },
    Flush,
    Checkpoint,
    Retention,
    /// A follower's truncation, this many records back from the log end.
    Truncate {
        back: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (1usize..6).prop_map(|records| Step::Append { records }),
        2 => Just(Step::Flush),
        1 => Just(Step::Checkpoint),
        1 => Just(Step::Retention),
        1 => (1i64..40).prop_map(|back| Step::Truncate { back }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A power cut at any moment keeps every record below the recovery point (everything a
    /// flush covered), and recovery always yields a log that reads back whole: whatever subset
    /// of unsynced writes survived, torn or not. A truncation is for good: what it cut never
    /// comes back (a follower that cut its divergent records and copied its leader's must
    /// not find the old ones again after a power cut).
    #[test]
    fn power_loss_keeps_everything_flushed(
        steps in proptest::collection::vec(step(), 1..60),
        seed: u64,
    ) {
        use crate::sim::{ManualClock, SimFileSystem};
        let fs = SimFileSystem::new(Arc::new(ManualClock::new(NOW)));
        let dir = Path::new("data/topic-0");
        let config = LogConfig {
            retention_bytes: 2_000,
            ..small_config()
        };
        let mut log = PartitionLog::open(Arc::new(fs.clone()), FileHandles::new(2), dir, config.clone(), NOW).unwrap();
        let mut written: Vec<Record> = Vec::new();
        // Producers 1 and 2 write every third batch each: (producer, last offset, last sequence).
        let mut producer_batches: Vec<(i64, i64, i32)> = Vec::new();
        let mut next_sequence = [0i32; 3];
        // After a truncation only non-idempotent batches are written: the producers' next
        // sequences would no longer follow on.
        let mut truncated = false;
        for (index, step) in steps.iter().enumerate() {
            match step {
                Step::Append { records } => {
                    let producer = if truncated { 0 } else { (index % 3) as i64 };
                    let mut bytes = if producer == 0 {
                        batch(NOW + index as i64, *records)
                    } else {
                        let sequence = next_sequence[producer as usize];
                        next_sequence[producer as usize] += *records as i32;
                        producer_batch(producer, sequence, *records)
                    };
                    let info = log.append(&mut bytes, 0, NOW).unwrap();
                    if producer != 0 {
                        producer_batches.push((producer, info.last_offset, next_sequence[producer as usize] - 1));
                    }
                    let mut decoded = decode_records(&bytes).unwrap();
                    prop_assert_eq!(decoded[0].offset, info.base_offset);
                    written.append(&mut decoded);
                }
                Step::Flush => log.flush().unwrap(),
                Step::Checkpoint => log.checkpoint().unwrap(),
                Step::Retention => {
                    log.enforce_retention(NOW).unwrap();
                }
                Step::Truncate { back } => {
                    let offset = (log.log_end_offset() - back).max(log.log_start_offset());
                    log.truncate_to(offset, NOW).unwrap();
                    truncated = true;
                    // A cut inside a batch takes the whole batch.
                    let end = log.log_end_offset();
                    prop_assert!(end <= offset);
                    written.retain(|record| record.offset < end);
                    producer_batches.retain(|&(_, last_offset, _)| last_offset < end);
                }
            }
        }
        let durable_end = log.recovery_point();
        let log_start = log.log_start_offset();
        let after = fs.crash(seed);
        drop(log);
        let recovered = PartitionLog::open(Arc::new(after), FileHandles::new(2), dir, config, NOW);
        let recovered = match recovered {
            Ok(log) => log,
            Err(error) => return Err(TestCaseError::fail(format!("recovery failed: {error}"))),
        };
        prop_assert!(recovered.log_end_offset() >= durable_end);
        let records = all_records(&recovered).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for expected in written.iter().filter(|r| r.offset >= log_start && r.offset < durable_end) {
            let found = records.iter().find(|r| r.offset == expected.offset);
            prop_assert_eq!(found, Some(expected), "flushed record lost or changed");
        }
        // Whatever survived past the recovery point is what was written, never garbage, and
        // never what a truncation cut.
        for record in &records {
            let original = written.iter().find(|r| r.offset == record.offset);
            prop_assert_eq!(Some(record), original);
        }
        // Producer state is what the surviving log says, including batches retention deleted:
        // nothing lost is remembered, nothing kept is forgotten.
        for producer in [1, 2] {
            let expected = producer_batches
                .iter()
                .filter(|(id, last_offset, _)| *id == producer && *last_offset < recovered.log_end_offset())
                .map(|(_, _, sequence)| *sequence)
                .next_back();
            let found = recovered.producers().get(producer).and_then(|entry| entry.last_sequence());
            prop_assert_eq!(found, expected, "producer {}'s last sequence", producer);
        }
    }
}
