//! Compaction against a model (the latest offset of every key), and under power cuts.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use runnel_record::{decode_records, BatchBuilder, ControlType, RecordBatch, TransactionMarker};

use super::*;
use crate::sim::{ManualClock, SimFileSystem};
use crate::{FileHandles, LogConfig, PartitionLog};

const NOW: i64 = 1_700_000_000_000;
const RETENTION: i64 = 10_000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 100,
        compact: true,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: RETENTION,
        ..LogConfig::default()
    }
}

/// Every record of the log, by offset: (key, value, timestamp).
type Contents = BTreeMap<i64, (Vec<u8>, Option<Vec<u8>>, i64)>;

fn contents(log: &PartitionLog) -> Contents {
    let mut all = Contents::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let bytes = log
            .read(offset, log.log_end_offset(), 1 << 20, true)
            .unwrap()
            .read()
            .unwrap();
        let headers = RecordBatch::validate_all(&bytes).unwrap();
        let mut position = 0;
        for header in &headers {
            let batch = &bytes[position..position + header.total_len()];
            position += header.total_len();
            offset = header.next_offset();
            if header.is_control() {
                continue;
            }
            for record in decode_records(batch).unwrap() {
                all.insert(
                    record.offset,
                    (record.key.unwrap(), record.value, record.timestamp),
                );
            }
        }
    }
    all
}

/// One cleaning pass as the broker runs it: plan, clean, install.
fn compact(log: &mut PartitionLog, fs: &dyn FileSystem, now_ms: i64, limits: &CleanerLimits) {
    if let Some(plan) = log.cleaning_plan(now_ms).unwrap() {
        let cleaned = clean(fs, &plan, limits).unwrap();
        log.install_cleaned(cleaned).unwrap();
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// A record of key `key` (a tombstone when `value` is None) at `NOW + age`.
    Put {
        key: u8,
        value: Option<u8>,
        age: i64,
    },
    /// A transaction of producer `producer` writing `key`, committed or aborted.
    Transaction {
        producer: i64,
        key: u8,
        commit: bool,
    },
    Flush,
    /// A pass at `NOW + age`, with room in the offset map for `keys` keys.
    Clean {
        age: i64,
        keys: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0u8..12, proptest::option::weighted(0.8, any::<u8>()), 0i64..20_000)
            .prop_map(|(key, value, age)| Step::Put { key, value, age }),
        2 => (1i64..3, 0u8..12, any::<bool>())
            .prop_map(|(producer, key, commit)| Step::Transaction { producer, key, commit }),
        2 => Just(Step::Flush),
        2 => (0i64..40_000, 2usize..40).prop_map(|(age, keys)| Step::Clean { age, keys }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// After any passes, the log holds, for every key, its latest committed record at its
    /// original offset (a tombstone only until it is `delete.retention.ms` old, at the
    /// pass); below the cleaned offset no key appears twice and nothing aborted is left; and
    /// whatever is left is what was written, at the offset it was written to.
    #[test]
    fn compaction_keeps_the_latest_record_of_every_key(steps in proptest::collection::vec(step(), 1..80)) {
        let fs = SimFileSystem::new(Arc::new(ManualClock::new(NOW)));
        let dir = Path::new("data/compacted-0");
        let mut log = PartitionLog::open(Arc::new(fs.clone()), FileHandles::new(2), dir, config(), NOW).unwrap();
        // Everything written and not aborted: offset → record; and the aborted records.
        let mut written = Contents::new();
        let mut aborted = Contents::new();
        let mut sequences: HashMap<i64, i32> = HashMap::new();
        let mut last_clean_ms = i64::MIN;
        for step in &steps {
            match step {
                Step::Put { key, value, age } => {
                    let mut batch = BatchBuilder::new(NOW + age)
                        .record(Some(&[*key]), value.as_ref().map(std::slice::from_ref), &[])
                        .build();
                    let info = log.append(&mut batch, 0, NOW).unwrap();
                    written.insert(info.base_offset, (vec![*key], value.map(|v| vec![v]), NOW + age));
                }
                Step::Transaction { producer, key, commit } => {
                    let sequence = sequences.entry(*producer).or_default();
                    let mut batch = BatchBuilder::new(NOW)
                        .producer(*producer, 0, *sequence)
                        .transactional(true)
                        .record(Some(&[*key]), Some(b"txn"), &[])
                        .build();
                    *sequence += 1;
                    let info = log.append(&mut batch, 0, NOW).unwrap();
                    let control = if *commit { ControlType::Commit } else { ControlType::Abort };
                    log.append_marker(*producer, 0, TransactionMarker { control, coordinator_epoch: 0 }, 0, NOW).unwrap();
                    let record = (vec![*key], Some(b"txn".to_vec()), NOW);
                    if *commit {
                        written.insert(info.base_offset, record);
                    } else {
                        aborted.insert(info.base_offset, record);
                    }
                }
                Step::Flush => log.flush().unwrap(),
                Step::Clean { age, keys } => {
                    let limits = CleanerLimits { dedupe_buffer_bytes: keys * MAP_BYTES_PER_KEY, io_bytes_per_second: None };
                    compact(&mut log, &fs, NOW + age, &limits);
                    last_clean_ms = last_clean_ms.max(NOW + age);
                }
            }
        }
        let cleaned_up_to = log.cleaned_up_to();
        let found = contents(&log);
        // Whatever is left is what was written; below the cleaned offset nothing aborted.
        for (offset, record) in &found {
            let original = written.get(offset).or_else(|| aborted.get(offset).filter(|_| *offset >= cleaned_up_to));
            prop_assert_eq!(original, Some(record), "offset {} changed, or aborted and not cleaned", offset);
        }
        // The latest record of every key is there, unless a pass could drop it as an old tombstone.
        let mut latest: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for (offset, (key, _, _)) in &written {
            latest.insert(key.clone(), *offset);
        }
        for offset in latest.values() {
            let (_, value, timestamp) = &written[offset];
            let droppable = value.is_none() && *timestamp < last_clean_ms.saturating_sub(RETENTION);
            if !droppable {
                prop_assert!(found.contains_key(offset), "the latest record at {} is gone", offset);
            }
        }
        // Below the cleaned offset a key appears once.
        let mut seen = std::collections::BTreeSet::new();
        for (offset, (key, _, _)) in found.range(..cleaned_up_to) {
            prop_assert!(seen.insert(key.clone()), "key {:?} twice below {}, again at {}", key, cleaned_up_to, offset);
        }
        // And the log reopens to the same records (indexes and segment ends line up).
        log.flush().unwrap();
        drop(log);
        let reopened = PartitionLog::open(Arc::new(fs.crash(0)), FileHandles::new(2), dir, config(), NOW).unwrap();
        prop_assert_eq!(contents(&reopened), found);
    }
}

/// A log with many versions of a few keys over several fsynced segments.
fn dirty_log(fs: &SimFileSystem, dir: &Path) -> PartitionLog {
    let mut log = PartitionLog::open(
        Arc::new(fs.clone()),
        FileHandles::new(2),
        dir,
        config(),
        NOW,
    )
    .unwrap();
    for round in 0..30u8 {
        for key in 0..4u8 {
            let value = [round, key];
            let mut batch = BatchBuilder::new(NOW)
                .record(Some(&[key]), Some(&value), &[])
                .build();
            log.append(&mut batch, 0, NOW).unwrap();
        }
    }
    log.flush().unwrap();
    log
}

#[test]
fn a_pass_rewrites_dirty_segments_and_the_next_finds_nothing_to_do() {
    let fs = SimFileSystem::new(Arc::new(ManualClock::new(NOW)));
    let dir = Path::new("data/t-0");
    let mut log = dirty_log(&fs, dir);
    let before = log.size_bytes();
    let plan = log.cleaning_plan(NOW).unwrap().expect("dirty");
    let cleaned = clean(&fs, &plan, &CleanerLimits::default()).unwrap();
    assert!(cleaned.bytes_saved() > 0);
    assert!(log.install_cleaned(cleaned).unwrap() > 0);
    assert!(log.size_bytes() < before);
    assert!(
        log.cleaning_plan(NOW).unwrap().is_none(),
        "nothing new since the pass"
    );
    // Each key's latest version is left, once, below the cleaned offset.
    let found = contents(&log);
    let below: Vec<_> = found.range(..log.cleaned_up_to()).collect();
    let keys: std::collections::BTreeSet<_> =
        below.iter().map(|(_, (key, _, _))| key.clone()).collect();
    assert_eq!(keys.len(), below.len());
}

#[test]
fn a_power_cut_during_cleaning_leaves_the_old_or_the_new_log() {
    let reference_fs = SimFileSystem::new(Arc::new(ManualClock::new(NOW)));
    let dir = Path::new("data/t-0");
    let mut reference = dirty_log(&reference_fs, dir);
    let old = contents(&reference);
    compact(
        &mut reference,
        &reference_fs,
        NOW,
        &CleanerLimits::default(),
    );
    let new = contents(&reference);
    assert_ne!(old, new);

    let seeds: u64 = std::env::var("RUNNEL_SIM_SEEDS")
        .ok()
        .and_then(|seeds| seeds.parse().ok())
        .unwrap_or(60);
    let mut saw_old = false;
    let mut saw_new = false;
    for seed in 0..seeds {
        let fs = SimFileSystem::new(Arc::new(ManualClock::new(NOW)));
        let mut log = dirty_log(&fs, dir);
        // Spread over the whole pass (about a thousand disk operations), and a little beyond.
        let cut_after = seed * 1200 / seeds + seed % 7;
        fs.cut_power_after(cut_after);
        if let Ok(Some(plan)) = log.cleaning_plan(NOW) {
            if let Ok(cleaned) = clean(&fs, &plan, &CleanerLimits::default()) {
                let _ = log.install_cleaned(cleaned);
            }
        }
        drop(log);
        let rebooted = fs.crash(seed);
        let log = PartitionLog::open(Arc::new(rebooted), FileHandles::new(2), dir, config(), NOW)
            .unwrap_or_else(|error| panic!("seed {seed}, cut after {cut_after}: {error}"));
        let found = contents(&log);
        // Every segment is either as it was or as the pass left it.
        for (offset, record) in &found {
            assert_eq!(
                old.get(offset),
                Some(record),
                "seed {seed}: offset {offset}"
            );
        }
        for offset in new.keys() {
            assert!(
                found.contains_key(offset),
                "seed {seed}, cut after {cut_after}: kept record {offset} lost"
            );
        }
        saw_old |= found == old;
        saw_new |= found == new;
    }
    assert!(
        saw_old && saw_new,
        "the cuts should land both before and after the swaps"
    );
}
