//! Decompression of a batch's records section, for every codec Kafka clients use.
//!
//! All four codecs are pure-Rust crates, so the workspace builds no C. The output size is
//! capped by the caller: a small compressed batch must not be able to claim gigabytes.

use std::io::Read;

use crate::batch::{Compression, RecordError};

/// Xerial's framing, which the Java client wraps around snappy blocks.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// Decompresses `data` (a batch's records section) written with `codec`, refusing to produce
/// more than `output_max_bytes`.
pub fn decompress(
    codec: Compression,
    data: &[u8],
    output_max_bytes: usize,
) -> Result<Vec<u8>, RecordError> {
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => read_capped(flate2::read::MultiGzDecoder::new(data), output_max_bytes),
        Compression::Lz4 => read_capped(lz4_flex::frame::FrameDecoder::new(data), output_max_bytes),
        Compression::Zstd => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(data)
                .map_err(|_| RecordError::Invalid("zstd frame header is corrupt"))?;
            read_capped(decoder, output_max_bytes)
        }
        Compression::Snappy => decompress_snappy(data, output_max_bytes),
    }
}

fn read_capped(reader: impl Read, output_max_bytes: usize) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::new();
    reader
        .take(output_max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| RecordError::Invalid("compressed records do not decompress"))?;
    if out.len() > output_max_bytes {
        return Err(RecordError::Invalid(
            "decompressed records exceed the size limit",
        ));
    }
    Ok(out)
}

fn decompress_snappy(data: &[u8], output_max_bytes: usize) -> Result<Vec<u8>, RecordError> {
    if !data.starts_with(XERIAL_MAGIC) {
        return decompress_snappy_block(data, output_max_bytes);
    }
    let mut blocks = data.get(XERIAL_HEADER_LEN..).ok_or(CORRUPT_SNAPPY)?;
    let mut out = Vec::new();
    while !blocks.is_empty() {
        let length_bytes: [u8; 4] = blocks
            .get(..4)
            .ok_or(CORRUPT_SNAPPY)?
            .try_into()
            .map_err(|_| CORRUPT_SNAPPY)?;
        let length = u32::from_be_bytes(length_bytes) as usize;
        let block = blocks.get(4..4 + length).ok_or(CORRUPT_SNAPPY)?;
        let remaining_budget = output_max_bytes.saturating_sub(out.len());
        out.extend(decompress_snappy_block(block, remaining_budget)?);
        blocks = &blocks[4 + length..];
    }
    Ok(out)
}

fn decompress_snappy_block(block: &[u8], output_max_bytes: usize) -> Result<Vec<u8>, RecordError> {
    let length = snap::raw::decompress_len(block).map_err(|_| CORRUPT_SNAPPY)?;
    if length > output_max_bytes {
        return Err(RecordError::Invalid(
            "decompressed records exceed the size limit",
        ));
    }
    snap::raw::Decoder::new()
        .decompress_vec(block)
        .map_err(|_| CORRUPT_SNAPPY)
}

const CORRUPT_SNAPPY: RecordError = RecordError::Invalid("snappy data is corrupt");

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_round_trip_and_cap() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&[7u8; 10_000]).unwrap();
        let compressed = encoder.finish().unwrap();
        assert_eq!(
            decompress(Compression::Gzip, &compressed, 10_000).unwrap(),
            vec![7u8; 10_000]
        );
        assert!(decompress(Compression::Gzip, &compressed, 9_999).is_err());
    }

    #[test]
    fn snappy_raw_and_xerial() {
        let raw = snap::raw::Encoder::new()
            .compress_vec(b"hello hello hello")
            .unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &raw, 100).unwrap(),
            b"hello hello hello"
        );
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        framed.extend_from_slice(&(raw.len() as u32).to_be_bytes());
        framed.extend_from_slice(&raw);
        assert_eq!(
            decompress(Compression::Snappy, &framed, 100).unwrap(),
            b"hello hello hello"
        );
    }

    #[test]
    fn lz4_frame_round_trip() {
        let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
        encoder.write_all(b"lz4 lz4 lz4 lz4").unwrap();
        let compressed = encoder.finish().unwrap();
        assert_eq!(
            decompress(Compression::Lz4, &compressed, 100).unwrap(),
            b"lz4 lz4 lz4 lz4"
        );
    }

    #[test]
    fn zstd_round_trip() {
        let compressed = ruzstd::encoding::compress_to_vec(
            &b"zstd zstd zstd zstd"[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert_eq!(
            decompress(Compression::Zstd, &compressed, 100).unwrap(),
            b"zstd zstd zstd zstd"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert!(decompress(codec, b"\x82SNAPPY\x00not really anything", 1000).is_err());
        }
    }
}
