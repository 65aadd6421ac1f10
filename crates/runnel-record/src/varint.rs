//! Zig-zag varints as used inside record batches (protobuf style, little-endian base 128).

/// Appends `value` as a zig-zag varint.
pub fn encode_varint(value: i32, out: &mut Vec<u8>) {
    encode_unsigned(((value << 1) ^ (value >> 31)) as u32 as u64, out);
}

/// Appends `value` as a zig-zag varlong.
pub fn encode_varlong(value: i64, out: &mut Vec<u8>) {
    encode_unsigned(((value << 1) ^ (value >> 63)) as u64, out);
}

fn encode_unsigned(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a zig-zag varint from the front of `input`, returning it and the bytes it used.
/// `None` if the input ends early or the encoding is longer than 5 bytes.
pub fn decode_varint(input: &[u8]) -> Option<(i32, usize)> {
    let (raw, used) = decode_unsigned(input, 5)?;
    let raw = u32::try_from(raw).ok()?;
    Some((((raw >> 1) as i32) ^ -((raw & 1) as i32), used))
}

/// Reads a zig-zag varlong from the front of `input`, returning it and the bytes it used.
/// `None` if the input ends early or the encoding is longer than 10 bytes.
pub fn decode_varlong(input: &[u8]) -> Option<(i64, usize)> {
    let (raw, used) = decode_unsigned(input, 10)?;
    Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), used))
}

fn decode_unsigned(input: &[u8], max_len: usize) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (index, &byte) in input.iter().take(max_len).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trips(value: i32) {
            let mut out = Vec::new();
            encode_varint(value, &mut out);
            prop_assert_eq!(decode_varint(&out), Some((value, out.len())));
        }

        #[test]
        fn varlong_round_trips(value: i64) {
            let mut out = Vec::new();
            encode_varlong(value, &mut out);
            prop_assert_eq!(decode_varlong(&out), Some((value, out.len())));
        }

        #[test]
        fn decoding_garbage_never_panics(input: Vec<u8>) {
            let _ = decode_varint(&input);
            let _ = decode_varlong(&input);
        }
    }

    #[test]
    fn known_encodings() {
        let mut out = Vec::new();
        encode_varint(-1, &mut out);
        encode_varint(300, &mut out);
        assert_eq!(out, [0x01, 0xd8, 0x04]);
        assert_eq!(decode_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), None);
    }
}
