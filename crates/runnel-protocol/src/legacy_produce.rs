//! Produce v0-2: advertised so that old librdkafka keeps compression on (KAFKA-18659), and
//! answered with UNSUPPORTED_VERSION for every partition, as Kafka 4.0 does. These versions are
//! below the `kafka-protocol` crate's floor, so the few fields needed are read here by hand.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// The topics and partitions of a Produce v0-2 request; the records are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyProduceRequest {
    pub acks: i16,
    pub topics: Vec<(String, Vec<i32>)>,
}

#[derive(Debug, thiserror::Error)]
#[error("produce v0-2 body ends early or is malformed")]
pub(crate) struct LegacyProduceError;

impl LegacyProduceRequest {
    pub(crate) fn decode(buf: &mut Bytes) -> Result<Self, LegacyProduceError> {
        let acks = get_i16(buf)?;
        let _timeout_ms = get_i32(buf)?;
        let topic_count = get_count(buf)?;
        let mut topics = Vec::new();
        for _ in 0..topic_count {
            let name = get_string(buf)?;
            let partition_count = get_count(buf)?;
            let mut partitions = Vec::new();
            for _ in 0..partition_count {
                partitions.push(get_i32(buf)?);
                let records_len = get_i32(buf)?;
                if records_len > 0 {
                    skip(buf, records_len as usize)?;
                }
            }
            topics.push((name, partitions));
        }
        Ok(LegacyProduceRequest { acks, topics })
    }

    /// The response body at `version` (0-2), every partition refused.
    pub fn encode_unsupported_response(&self, version: i16) -> Bytes {
        let mut out = BytesMut::new();
        out.put_i32(self.topics.len() as i32);
        for (name, partitions) in &self.topics {
            out.put_i16(name.len() as i16);
            out.put_slice(name.as_bytes());
            out.put_i32(partitions.len() as i32);
            for &partition in partitions {
                out.put_i32(partition);
                out.put_i16(UNSUPPORTED_VERSION);
                out.put_i64(-1); // base offset
                if version >= 2 {
                    out.put_i64(-1); // log append time
                }
            }
        }
        if version >= 1 {
            out.put_i32(0); // throttle time
        }
        out.freeze()
    }
}

fn get_i16(buf: &mut Bytes) -> Result<i16, LegacyProduceError> {
    buf.try_get_i16().map_err(|_| LegacyProduceError)
}

fn get_i32(buf: &mut Bytes) -> Result<i32, LegacyProduceError> {
    buf.try_get_i32().map_err(|_| LegacyProduceError)
}

/// An array length; each element takes at least 4 bytes, which bounds what a count can claim.
fn get_count(buf: &mut Bytes) -> Result<usize, LegacyProduceError> {
    let count = usize::try_from(get_i32(buf)?).map_err(|_| LegacyProduceError)?;
    if count > buf.remaining() / 4 {
        return Err(LegacyProduceError);
    }
    Ok(count)
}

fn get_string(buf: &mut Bytes) -> Result<String, LegacyProduceError> {
    let len = usize::try_from(get_i16(buf)?).map_err(|_| LegacyProduceError)?;
    let bytes = skip(buf, len)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| LegacyProduceError)
}

fn skip(buf: &mut Bytes, len: usize) -> Result<Bytes, LegacyProduceError> {
    if buf.remaining() < len {
        return Err(LegacyProduceError);
    }
    Ok(buf.split_to(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_request_is_refused_per_partition() {
        let mut body = BytesMut::new();
        body.put_i16(1);
        body.put_i32(1000);
        body.put_i32(1);
        body.put_i16(1);
        body.put_slice(b"t");
        body.put_i32(1);
        body.put_i32(3);
        body.put_i32(2);
        body.put_slice(b"xx");
        let request = LegacyProduceRequest::decode(&mut body.freeze()).unwrap();
        assert_eq!(request.topics, vec![("t".to_string(), vec![3])]);
        let response = request.encode_unsupported_response(2);
        // topics(4) name(2+1) partitions(4) partition(4) error(2) offset(8) time(8) throttle(4)
        assert_eq!(response.len(), 37);
        assert_eq!(&response[15..17], &UNSUPPORTED_VERSION.to_be_bytes());
    }
}
