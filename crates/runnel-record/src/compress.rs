//! Compression of a batch's records section, for producers: the inverse of
//! [`decompress`](crate::decompress), writing what Kafka's own clients write so that every
//! broker and consumer reads it.
//!
//! - gzip: one gzip member (flate2, default level), as Java's `GZIPOutputStream`.
//! - snappy: xerial framing around raw snappy blocks of at most 32 KiB, as the Java client's
//!   `SnappyOutputStream` writes. Every Kafka broker and client reads this framing
//!   (librdkafka, kafka-python and the Java client detect it by its magic); raw snappy, which
//!   librdkafka writes, is not read by old Java consumers.
//! - lz4: the LZ4 frame format with a correct header checksum (KIP-57), independent 64 KiB
//!   blocks, no block or content checksums: the frame layout of Java's
//!   `KafkaLZ4BlockOutputStream`, which its reader requires (it decodes blocks independently).
//! - zstd: one zstd frame from ruzstd's pure-Rust encoder (its fastest level, about zstd's
//!   level 1; the others are not implemented in ruzstd).
//!
//! The whole input is in memory, so nothing here can fail: writes go to a `Vec`.

use std::io::Write;

use crate::batch::Compression;

/// Xerial's stream header: magic, then version 1 and minimum compatible version 1.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// The block size Java's `SnappyOutputStream` uses by default.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

/// Compresses `data` (an encoded records section) with `codec`. `Compression::None` copies.
///
/// ```
/// use runnel_record::{compress, decompress, Compression};
///
/// let compressed = compress(Compression::Lz4, b"lz4 lz4 lz4 lz4 lz4");
/// assert_eq!(decompress(Compression::Lz4, &compressed, 100).unwrap(), b"lz4 lz4 lz4 lz4 lz4");
/// ```
pub fn compress(codec: Compression, data: &[u8]) -> Vec<u8> {
    match codec {
        Compression::None => data.to_vec(),
        Compression::Gzip => compress_gzip(data),
        Compression::Snappy => compress_snappy_xerial(data),
        Compression::Lz4 => compress_lz4(data),
        Compression::Zstd => {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
    }
}

fn compress_gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 2 + 32),
        flate2::Compression::default(),
    );
    encoder
        .write_all(data)
        .expect("gzip into a Vec cannot fail");
    encoder.finish().expect("gzip into a Vec cannot fail")
}

fn compress_snappy_xerial(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        XERIAL_HEADER.len() + snap::raw::max_compress_len(data.len()) + data.len() / 8192 + 4,
    );
    out.extend_from_slice(XERIAL_HEADER);
    let mut encoder = snap::raw::Encoder::new();
    let mut block = vec![0u8; snap::raw::max_compress_len(XERIAL_BLOCK_BYTES)];
    for chunk in data.chunks(XERIAL_BLOCK_BYTES) {
        let length = encoder
            .compress(chunk, &mut block)
            .expect("a 32 KiB chunk fits snappy's limits and the sized output buffer");
        out.extend_from_slice(&(length as u32).to_be_bytes());
        out.extend_from_slice(&block[..length]);
    }
    out
}

fn compress_lz4(data: &[u8]) -> Vec<u8> {
    let frame = lz4_flex::frame::FrameInfo::new()
        .block_size(lz4_flex::frame::BlockSize::Max64KB)
        .block_mode(lz4_flex::frame::BlockMode::Independent)
        .block_checksums(false)
        .content_checksum(false);
    let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(
        frame,
        Vec::with_capacity(data.len() / 2 + 32),
    );
    encoder.write_all(data).expect("lz4 into a Vec cannot fail");
    encoder.finish().expect("lz4 into a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decompress;
    use proptest::prelude::*;

    const CODECS: [Compression; 5] = Compression::ALL;

    fn round_trip(codec: Compression, data: &[u8]) -> Vec<u8> {
        decompress(codec, &compress(codec, data), data.len()).unwrap()
    }

    #[test]
    fn empty_input_round_trips() {
        for codec in CODECS {
            assert_eq!(round_trip(codec, b""), b"", "{codec}");
        }
    }

    #[test]
    fn many_blocks_round_trip() {
        // Spans several snappy (32 KiB) and lz4 (64 KiB) blocks, with a short last block.
        let data: Vec<u8> = (0..300_001u32)
            .map(|i| (i % 251) as u8 ^ (i / 7) as u8)
            .collect();
        for codec in CODECS {
            assert_eq!(round_trip(codec, &data), data, "{codec}");
        }
    }

    #[test]
    fn repetitive_input_shrinks() {
        let data = b"runnel ".repeat(10_000);
        for codec in &CODECS[1..] {
            let compressed = compress(*codec, &data);
            assert!(
                compressed.len() < data.len() / 4,
                "{codec}: {}",
                compressed.len()
            );
        }
    }

    #[test]
    fn snappy_is_xerial_framed() {
        let compressed = compress(Compression::Snappy, b"hello hello hello");
        assert_eq!(&compressed[..16], XERIAL_HEADER);
        let block_len = u32::from_be_bytes(compressed[16..20].try_into().unwrap()) as usize;
        assert_eq!(compressed.len(), 20 + block_len);
    }

    #[test]
    fn lz4_frame_header_matches_kafkas() {
        let compressed = compress(Compression::Lz4, b"lz4");
        assert_eq!(&compressed[..4], &[0x04, 0x22, 0x4d, 0x18]); // frame magic
                                                                 // FLG: version 01, independent blocks, no checksums, no content size. BD: 64 KiB.
        assert_eq!((compressed[4], compressed[5]), (0b0110_0000, 0b0100_0000));
        // KIP-57: the header checksum covers the descriptor only (the second byte of
        // xxh32(FLG, BD) with seed 0), not the magic as Kafka < 0.10 wrote it.
        assert_eq!(compressed[6], 0x82);
    }

    #[test]
    fn gzip_is_one_gzip_member() {
        let compressed = compress(Compression::Gzip, b"gzip");
        assert_eq!(&compressed[..3], &[0x1f, 0x8b, 0x08]);
    }

    #[test]
    fn zstd_is_one_zstd_frame() {
        let compressed = compress(Compression::Zstd, b"zstd");
        assert_eq!(&compressed[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    }

    proptest! {
        #[test]
        fn every_codec_round_trips(
            data in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..5_000),
                proptest::collection::vec(0u8..4, 0..100_000),
            ]
        ) {
            for codec in CODECS {
                prop_assert_eq!(round_trip(codec, &data), data.clone());
            }
        }
    }
}
