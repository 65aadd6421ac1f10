//! Decompression of a batch's records section, for every codec Kafka clients use.
//!
//! All four codecs are pure-Rust crates, so the workspace builds no C. Decompression streams:
//! [`reader`] hands out the plain bytes as they are read, so a caller that only walks the
//! records (validation, a search by time) holds a few KiB however large the output, and stops
//! paying as soon as it has seen enough. Every path is capped: a small compressed batch must
//! not be able to claim gigabytes of memory or of work.

use std::io::{self, Read};

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
    if codec == Compression::None {
        if data.len() > output_max_bytes {
            return Err(RecordError::DecompressedTooLarge {
                limit: output_max_bytes as u64,
            });
        }
        return Ok(data.to_vec());
    }
    let mut out = Vec::new();
    reader(codec, data, output_max_bytes)?
        .take(output_max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| RecordError::Invalid("compressed records do not decompress"))?;
    if out.len() > output_max_bytes {
        return Err(RecordError::DecompressedTooLarge {
            limit: output_max_bytes as u64,
        });
    }
    Ok(out)
}

/// A reader of the plain records section. The caller bounds how much it reads; `block_max_bytes`
/// bounds what one snappy block may claim up front (the other codecs decode in small steps).
pub(crate) fn reader<'a>(
    codec: Compression,
    data: &'a [u8],
    block_max_bytes: usize,
) -> Result<Box<dyn Read + 'a>, RecordError> {
    Ok(match codec {
        Compression::None => Box::new(data),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(data)),
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(data)),
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(data)
                .map_err(|_| RecordError::Invalid("zstd frame header is corrupt"))?,
        ),
        Compression::Snappy => Box::new(SnappyReader::new(data, block_max_bytes)),
    })
}

/// Snappy as Kafka clients write it: xerial-framed blocks (the Java client) or one raw block
/// (librdkafka). Each block is decoded whole, after checking the length it claims.
struct SnappyReader<'a> {
    /// Blocks not yet decoded; for raw snappy, the one block.
    remaining: &'a [u8],
    xerial: bool,
    block_max_bytes: usize,
    decoded: Vec<u8>,
    position: usize,
    decoder: snap::raw::Decoder,
}

impl<'a> SnappyReader<'a> {
    fn new(data: &'a [u8], block_max_bytes: usize) -> Self {
        let xerial = data.starts_with(XERIAL_MAGIC);
        SnappyReader {
            remaining: if xerial {
                data.get(XERIAL_HEADER_LEN..).unwrap_or_default()
            } else {
                data
            },
            xerial,
            block_max_bytes,
            decoded: Vec::new(),
            position: 0,
            decoder: snap::raw::Decoder::new(),
        }
    }

    /// Decodes the next block into `decoded`; false when there is none.
    fn next_block(&mut self) -> io::Result<bool> {
        if self.remaining.is_empty() {
            return Ok(false);
        }
        let block = if self.xerial {
            let length_bytes: [u8; 4] = self
                .remaining
                .get(..4)
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(corrupt_snappy)?;
            let length = u32::from_be_bytes(length_bytes) as usize;
            let block = self
                .remaining
                .get(4..4 + length)
                .ok_or_else(corrupt_snappy)?;
            self.remaining = &self.remaining[4 + length..];
            block
        } else {
            std::mem::take(&mut self.remaining)
        };
        let length = snap::raw::decompress_len(block).map_err(|_| corrupt_snappy())?;
        if length > self.block_max_bytes {
            return Err(io::Error::other("snappy block claims more than the limit"));
        }
        self.decoded.resize(length, 0);
        let written = self
            .decoder
            .decompress(block, &mut self.decoded)
            .map_err(|_| corrupt_snappy())?;
        self.decoded.truncate(written);
        self.position = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.position == self.decoded.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let available = &self.decoded[self.position..];
        let count = available.len().min(buf.len());
        buf[..count].copy_from_slice(&available[..count]);
        self.position += count;
        Ok(count)
    }
}

fn corrupt_snappy() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "snappy data is corrupt")
}

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
        for _ in 0..2 {
            framed.extend_from_slice(&(raw.len() as u32).to_be_bytes());
            framed.extend_from_slice(&raw);
        }
        assert_eq!(
            decompress(Compression::Snappy, &framed, 100).unwrap(),
            b"hello hello hellohello hello hello"
        );
        assert!(decompress(Compression::Snappy, &framed, 20).is_err());
    }

    #[test]
    fn snappy_block_claiming_too_much_is_refused_before_allocating() {
        // A raw snappy block whose length preamble claims 4 GiB - 1.
        let block = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(decompress(Compression::Snappy, &block, 1 << 20).is_err());
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
