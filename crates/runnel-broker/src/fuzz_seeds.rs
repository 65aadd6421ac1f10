//! Writes the seed corpus of the fuzz targets (`fuzz/corpus/`): a request of every API at
//! every version the broker serves, streams of them, batches in every codec, and partition
//! directories as a crash and a clean shutdown leave them. Run by hand after a format changes:
//! `cargo test -p runnel-broker write_fuzz_seeds -- --ignored`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::protocol::{Encodable, StrBytes};
use runnel_protocol::supported_versions;
use runnel_record::{BatchBuilder, Compression};
use runnel_storage::sim::{ManualClock, SimFileSystem};
use runnel_storage::{FileHandles, LogConfig, PartitionLog};

use crate::handlers::every_version::request_for;

const NOW_MS: i64 = 1_700_000_000_000;

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    dir
}

fn batch(codec: Compression, records: usize) -> Vec<u8> {
    (0..records)
        .fold(BatchBuilder::new(NOW_MS).compression(codec), |batch, i| {
            batch.record_at(
                NOW_MS + i as i64,
                Some(format!("key {i}").as_bytes()),
                Some(b"a value"),
                &[(b"trace".as_slice(), Some(b"1".as_slice()))],
            )
        })
        .build()
}

#[test]
#[ignore = "writes fuzz/corpus"]
fn write_fuzz_seeds() {
    let mut stream = vec![7u8]; // frame_decoding's first byte: the read size
    for (key, versions) in supported_versions() {
        let low = if key == kafka_protocol::messages::ApiKey::Produce {
            runnel_protocol::PRODUCE_MIN_DECODABLE_VERSION
        } else {
            versions.min
        };
        for version in [low, versions.max] {
            let mut frame = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(key as i16)
                .with_request_api_version(version)
                .with_correlation_id(1)
                .with_client_id(Some(StrBytes::from_static_str("seed")))
                .encode(&mut frame, key.request_header_version(version))
                .expect("header encodes");
            // Some sample requests set fields an old version lacks: those seeds are skipped.
            if request_for(key, uuid::Uuid::nil())
                .encode(&mut frame, version)
                .is_err()
            {
                continue;
            }
            let name = format!("{key:?}-v{version}");
            std::fs::write(corpus("request_parsing").join(&name), &frame).expect("write");
            stream.extend_from_slice(&(frame.len() as i32).to_be_bytes());
            stream.extend_from_slice(&frame);
        }
    }
    std::fs::write(corpus("frame_decoding").join("every-api"), &stream).expect("write");

    for codec in Compression::ALL {
        std::fs::write(
            corpus("batch_validation").join(codec.to_string()),
            batch(codec, 3),
        )
        .expect("write");
    }

    let dir = Path::new("data/topic-0");
    for (name, clean) in [("crashed", false), ("closed", true)] {
        let disk = SimFileSystem::new(Arc::new(ManualClock::new(NOW_MS)));
        let config = LogConfig {
            segment_bytes: 1024,
            index_interval_bytes: 64,
            ..LogConfig::default()
        };
        let mut log = PartitionLog::open(
            Arc::new(disk.clone()),
            FileHandles::new(2),
            dir,
            config,
            NOW_MS,
        )
        .expect("open");
        for round in 0..12 {
            let codec = if round % 3 == 0 {
                Compression::Lz4
            } else {
                Compression::None
            };
            log.append(&mut batch(codec, 1 + round % 4), 0, NOW_MS)
                .expect("append");
            if round == 6 {
                log.flush().expect("flush");
                log.checkpoint().expect("checkpoint");
            }
        }
        if clean {
            log.close().expect("close");
        }
        let image = disk.image(dir).expect("image");
        std::fs::write(corpus("storage_recovery").join(name), image).expect("write");
    }
}
