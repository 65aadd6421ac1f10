//! Walking the records inside one batch: the single parser of the record format, used to
//! validate a client's batch before it is stored, to search a stored batch by time, and to
//! decode records for readers.
//!
//! The walk streams. A compressed section is decompressed a few KiB at a time, and fields the
//! caller does not want (keys and values, when validating) are skipped rather than copied, so
//! a walk holds O(1) memory however large the batch claims to be. Every byte decompressed is
//! charged to a [`DecompressionBudget`]: a few KiB of zstd cannot make the broker expand
//! gigabytes.
//!
//! The walk checks the structure Kafka's `DefaultRecord` reader checks, and a little more:
//! each record's length covers exactly its fields, varints are at most 5 (varlong 10) bytes,
//! header keys are present, offset deltas run 0, 1, 2, … and the batch holds exactly
//! `records_count` records with no bytes after the last.

use std::io::Read;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::batch::{Compression, RecordBatchHeader, RecordError, TimestampType, BATCH_HEADER_LEN};
use crate::compression;

/// Most bytes one batch may decompress to: far above `max.message.bytes`, far below memory.
pub const DECOMPRESSED_BATCH_MAX_BYTES: usize = 128 * 1024 * 1024;

/// A produce request may decompress to this many bytes plus
/// [`REQUEST_DECOMPRESSION_RATIO`] times its own size.
const REQUEST_DECOMPRESSION_FLOOR_BYTES: u64 = DECOMPRESSED_BATCH_MAX_BYTES as u64;
const REQUEST_DECOMPRESSION_RATIO: u64 = 16;

/// How much decompressing stream reads at once.
const STREAM_CHUNK_BYTES: usize = 16 * 1024;

/// How many decompressed bytes a unit of work (a produce request, one read of a stored batch)
/// may still produce. Shared by the partitions of a request, which are validated concurrently.
#[derive(Debug)]
pub struct DecompressionBudget {
    remaining: AtomicU64,
    limit: u64,
}

impl DecompressionBudget {
    pub fn new(bytes: u64) -> Self {
        DecompressionBudget {
            remaining: AtomicU64::new(bytes),
            limit: bytes,
        }
    }

    /// The budget of one produce request of `request_bytes`: 128 MiB plus 16 times its size.
    /// Legitimate data compresses far less than that on average; a bomb of a few KiB stops
    /// after 128 MiB of work.
    pub fn for_request(request_bytes: usize) -> Self {
        Self::new(
            REQUEST_DECOMPRESSION_FLOOR_BYTES
                .saturating_add(REQUEST_DECOMPRESSION_RATIO.saturating_mul(request_bytes as u64)),
        )
    }

    /// The budget of reading back one batch the broker stored (validated when it was written).
    pub fn for_stored_batch() -> Self {
        Self::new(DECOMPRESSED_BATCH_MAX_BYTES as u64)
    }

    fn charge(&self, bytes: u64) -> Result<(), RecordError> {
        self.remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |remaining| {
                remaining.checked_sub(bytes)
            })
            .map(drop)
            .map_err(|_| RecordError::DecompressedTooLarge { limit: self.limit })
    }

    /// Decompresses a whole records section, within the budget and the per-batch cap.
    pub fn decompress(&self, codec: Compression, section: &[u8]) -> Result<Vec<u8>, RecordError> {
        let mut input = SectionInput::new(codec, section, self)?;
        let mut out = Vec::new();
        while let Some(chunk) = input.next_chunk()? {
            out.extend_from_slice(chunk);
        }
        Ok(out)
    }
}

/// One record as the walk sees it. Key, value and headers are filled only when the walk was
/// asked to collect them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct WalkedRecord {
    pub(crate) offset_delta: i32,
    /// The record's timestamp: base timestamp plus its delta, or the batch's max timestamp in a
    /// LogAppendTime batch.
    pub(crate) timestamp: i64,
    pub(crate) has_key: bool,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) headers: Vec<(String, Option<Vec<u8>>)>,
}

/// How a walk checks records' offset deltas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deltas {
    /// 0, 1, 2, ...: a batch as a producer sends it.
    Contiguous,
    /// Increasing and within the batch's last offset delta: a stored batch, which log
    /// compaction may have left with gaps.
    Increasing,
}

/// Walks the records of the batch `batch` whose parsed header is `header`, calling `visit` for
/// each in order until it breaks. Returns how many records were visited. `collect` asks for
/// keys, values and headers; otherwise they are skipped.
pub(crate) fn walk_records(
    batch: &[u8],
    header: &RecordBatchHeader,
    budget: &DecompressionBudget,
    collect: bool,
    deltas: Deltas,
    mut visit: impl FnMut(WalkedRecord) -> ControlFlow<()>,
) -> Result<u64, RecordError> {
    let mut previous_delta = -1i32;
    let section = &batch[BATCH_HEADER_LEN..header.total_len()];
    let mut input = SectionInput::new(header.compression(), section, budget)?;
    let log_append_time = header.timestamp_type() == TimestampType::LogAppendTime;
    let mut walked = 0u64;
    for expected_delta in 0..header.records_count {
        let Some(length) = input.varint_or_end()? else {
            return Err(RecordError::Malformed(format!(
                "the batch header claims {} records but the batch holds {expected_delta}",
                header.records_count
            )));
        };
        let length = u64::try_from(length)
            .map_err(|_| RecordError::Malformed(format!("record length {length} is negative")))?;
        let mut body = Bounded {
            input: &mut input,
            remaining: length,
        };
        body.byte()?; // attributes: unused in v2
        let timestamp_delta = body.varlong()?;
        let offset_delta = body.varint()?;
        match deltas {
            Deltas::Contiguous if offset_delta != expected_delta => {
                return Err(RecordError::Malformed(format!(
                    "record offset delta {offset_delta} where {expected_delta} was due: \
                     offset deltas must run 0, 1, 2, …"
                )));
            }
            Deltas::Increasing
                if offset_delta <= previous_delta || offset_delta > header.last_offset_delta =>
            {
                return Err(RecordError::Malformed(format!(
                    "record offset delta {offset_delta} after {previous_delta}: offset deltas \
                     must increase up to the batch's last ({})",
                    header.last_offset_delta
                )));
            }
            _ => {}
        }
        previous_delta = offset_delta;
        let timestamp = if log_append_time {
            header.max_timestamp
        } else {
            header
                .base_timestamp
                .checked_add(timestamp_delta)
                .ok_or(RecordError::Invalid("record timestamp overflows"))?
        };
        let mut record = WalkedRecord {
            offset_delta,
            timestamp,
            ..WalkedRecord::default()
        };
        let key = body.bytes_field(collect)?;
        record.has_key = key.is_some();
        record.key = key.flatten();
        record.value = body.bytes_field(collect)?.flatten();
        let header_count = body.varint()?;
        if header_count < 0 {
            return Err(RecordError::Malformed(format!(
                "record header count {header_count} is negative"
            )));
        }
        for _ in 0..header_count {
            let name = body
                .bytes_field(collect)?
                .ok_or(RecordError::Invalid("record header without a key"))?;
            let value = body.bytes_field(collect)?.flatten();
            if collect {
                let name = String::from_utf8_lossy(&name.unwrap_or_default()).into_owned();
                record.headers.push((name, value));
            }
        }
        if body.remaining != 0 {
            return Err(RecordError::Malformed(format!(
                "record length {length} exceeds its fields by {} bytes",
                body.remaining
            )));
        }
        walked += 1;
        if visit(record).is_break() {
            return Ok(walked);
        }
    }
    if !input.at_end()? {
        return Err(RecordError::Malformed(format!(
            "bytes follow the last of the {} records the batch header claims",
            header.records_count
        )));
    }
    Ok(walked)
}

/// The records section, plain or being decompressed, read a byte or a run at a time.
struct SectionInput<'a> {
    source: Source<'a>,
    budget: &'a DecompressionBudget,
    /// Decompressed bytes produced so far, against the per-batch cap.
    produced: u64,
}

enum Source<'a> {
    Plain(&'a [u8]),
    Stream {
        reader: Box<dyn Read + 'a>,
        buffer: Vec<u8>,
        position: usize,
        filled: usize,
    },
}

impl<'a> SectionInput<'a> {
    fn new(
        codec: Compression,
        section: &'a [u8],
        budget: &'a DecompressionBudget,
    ) -> Result<Self, RecordError> {
        let source = match codec {
            Compression::None => Source::Plain(section),
            codec => Source::Stream {
                reader: compression::reader(codec, section, DECOMPRESSED_BATCH_MAX_BYTES)?,
                buffer: vec![0; STREAM_CHUNK_BYTES],
                position: 0,
                filled: 0,
            },
        };
        Ok(SectionInput {
            source,
            budget,
            produced: 0,
        })
    }

    /// Makes sure unread bytes are buffered; false at the end of the section.
    fn fill(&mut self) -> Result<bool, RecordError> {
        let Source::Stream {
            reader,
            buffer,
            position,
            filled,
        } = &mut self.source
        else {
            return Ok(false);
        };
        if *position < *filled {
            return Ok(true);
        }
        let read = reader
            .read(buffer)
            .map_err(|_| RecordError::Invalid("compressed records do not decompress"))?;
        self.produced += read as u64;
        if self.produced > DECOMPRESSED_BATCH_MAX_BYTES as u64 {
            return Err(RecordError::DecompressedTooLarge {
                limit: DECOMPRESSED_BATCH_MAX_BYTES as u64,
            });
        }
        self.budget.charge(read as u64)?;
        *position = 0;
        *filled = read;
        Ok(read > 0)
    }

    fn byte_or_end(&mut self) -> Result<Option<u8>, RecordError> {
        if let Source::Plain(bytes) = &mut self.source {
            let Some((&first, rest)) = bytes.split_first() else {
                return Ok(None);
            };
            *bytes = rest;
            return Ok(Some(first));
        }
        if !self.fill()? {
            return Ok(None);
        }
        let Source::Stream {
            buffer, position, ..
        } = &mut self.source
        else {
            return Ok(None);
        };
        let byte = buffer[*position];
        *position += 1;
        Ok(Some(byte))
    }

    /// The next run of bytes, at most `max` long; `None` at the end.
    fn run(&mut self, max: usize) -> Result<Option<&[u8]>, RecordError> {
        if let Source::Plain(bytes) = &mut self.source {
            if bytes.is_empty() {
                return Ok(None);
            }
            let (run, rest) = bytes.split_at(max.min(bytes.len()));
            *bytes = rest;
            return Ok(Some(run));
        }
        if !self.fill()? {
            return Ok(None);
        }
        let Source::Stream {
            buffer,
            position,
            filled,
            ..
        } = &mut self.source
        else {
            return Ok(None);
        };
        let start = *position;
        let end = (*filled).min(start.saturating_add(max));
        *position = end;
        Ok(Some(&buffer[start..end]))
    }

    /// Decompressed runs, one after another, until the section ends.
    fn next_chunk(&mut self) -> Result<Option<&[u8]>, RecordError> {
        self.run(usize::MAX)
    }

    fn at_end(&mut self) -> Result<bool, RecordError> {
        match &self.source {
            Source::Plain(bytes) => Ok(bytes.is_empty()),
            Source::Stream { .. } => Ok(!self.fill()?),
        }
    }

    /// A zig-zag varint starting a record, or `None` if the section ended cleanly before it.
    fn varint_or_end(&mut self) -> Result<Option<i32>, RecordError> {
        let Some(first) = self.byte_or_end()? else {
            return Ok(None);
        };
        let raw = unsigned(first, 5, || {
            self.byte_or_end()?
                .ok_or(RecordError::Invalid("record length varint is cut short"))
        })?;
        Ok(Some(zigzag_i32(raw)?))
    }
}

/// The part of the section that belongs to one record: `remaining` bytes of it.
struct Bounded<'i, 'a> {
    input: &'i mut SectionInput<'a>,
    remaining: u64,
}

impl Bounded<'_, '_> {
    fn byte(&mut self) -> Result<u8, RecordError> {
        if self.remaining == 0 {
            return Err(RecordError::Invalid("record fields run past its length"));
        }
        self.remaining -= 1;
        self.input.byte_or_end()?.ok_or(RecordError::Invalid(
            "the records section ends inside a record",
        ))
    }

    fn varint(&mut self) -> Result<i32, RecordError> {
        let first = self.byte()?;
        zigzag_i32(unsigned(first, 5, || self.byte())?)
    }

    fn varlong(&mut self) -> Result<i64, RecordError> {
        let first = self.byte()?;
        let raw = unsigned(first, 10, || self.byte())?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// A length-prefixed field: `None` if absent (negative length, as Kafka reads it),
    /// `Some(None)` if present but not collected.
    fn bytes_field(&mut self, collect: bool) -> Result<Option<Option<Vec<u8>>>, RecordError> {
        let length = self.varint()?;
        let Ok(length) = u64::try_from(length) else {
            return Ok(None);
        };
        if length > self.remaining {
            return Err(RecordError::Malformed(format!(
                "a record field of {length} bytes runs past the record's end"
            )));
        }
        self.remaining -= length;
        let mut collected = collect.then(Vec::new);
        let mut left = length as usize;
        while left > 0 {
            let run = self.input.run(left)?.ok_or(RecordError::Invalid(
                "the records section ends inside a record",
            ))?;
            left -= run.len();
            if let Some(collected) = &mut collected {
                collected.extend_from_slice(run);
            }
        }
        Ok(Some(collected))
    }
}

/// Reads the rest of a base-128 varint whose first byte is `first`.
fn unsigned(
    first: u8,
    max_len: u32,
    mut next: impl FnMut() -> Result<u8, RecordError>,
) -> Result<u64, RecordError> {
    let mut value = u64::from(first & 0x7f);
    let mut byte = first;
    let mut shift = 7;
    let mut len = 1;
    while byte & 0x80 != 0 {
        if len == max_len {
            return Err(RecordError::Invalid("varint is too long"));
        }
        byte = next()?;
        value |= u64::from(byte & 0x7f) << shift;
        shift += 7;
        len += 1;
    }
    Ok(value)
}

fn zigzag_i32(raw: u64) -> Result<i32, RecordError> {
    let raw = u32::try_from(raw).map_err(|_| RecordError::Invalid("varint overflows 32 bits"))?;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}
