//! Record batches as a producer could send them, checked as the broker checks them. The
//! CRC and length are made right first, so that the fuzzer explores the records, not the
//! checksum. Whatever validation accepts must decode, with the record count it claims, and
//! survive recompression; nothing panics and decompression stays within its budget.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runnel_record::{
    decode_records, Compression, DecompressionBudget, RecordBatch, RecordPolicy,
    BATCH_HEADER_LEN, LOG_OVERHEAD,
};

const NOW_MS: i64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let _ = RecordBatch::validate_all(data);
    if data.len() < BATCH_HEADER_LEN || data.len() > i32::MAX as usize {
        return;
    }
    let mut batch = data.to_vec();
    let batch_length = (batch.len() - LOG_OVERHEAD) as i32;
    batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
    batch[16] = 2;
    let max_timestamp = i64::from_be_bytes(batch[35..43].try_into().unwrap_or_default());
    RecordBatch::set_max_timestamp(&mut batch, max_timestamp);
    let Ok(header) = RecordBatch::validate(&batch) else {
        return;
    };
    let policy = RecordPolicy {
        now_ms: NOW_MS,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: 3_600_000,
        log_append_time: false,
        keys_required: data[0] & 1 == 1,
    };
    let budget = DecompressionBudget::new(8 << 20);
    let Ok(validated) = policy.validate(&batch, &header, &budget) else {
        return;
    };
    let records = decode_records(&batch).expect("a validated batch decodes");
    assert_eq!(records.len() as i64, i64::from(header.records_count));
    let max = records.iter().map(|r| r.timestamp).max().unwrap_or(-1);
    assert_eq!(validated.max_timestamp, max.max(-1));
    let codec = [Compression::None, Compression::Lz4, Compression::Snappy][usize::from(data[1] % 3)];
    let recompressed =
        RecordBatch::recompress(&batch, codec, &budget).expect("a validated batch recompresses");
    let header = RecordBatch::validate(&recompressed).expect("a recompressed batch is whole");
    assert_eq!(decode_records(&recompressed).expect("and decodes"), records);
    assert_eq!(header.compression(), codec);
});
