//! How records are printed: by `runnel consume --format`, and by `runnel produce
//! --print-delivery` for the records it wrote. Either one JSON object a line (`json`) or a
//! kcat-style template: `%v` or `%s` value, `%k` key, `%t` topic, `%p` partition, `%o` offset,
//! `%T` timestamp (ms), `%h` headers (`k=v,k=v`), `%K`/`%S` key and value length (-1 for
//! null), `%%`; escapes `\n`, `\t`, `\r`, `\0`, `\\`, `\xHH`. Parsed once, then rendered per
//! record into a reused buffer.
//!
//! JSON is binary-safe: a key, value or header value that is UTF-8 is a JSON string; one that
//! is not is base64 (RFC 4648, padded) with `"key_encoding"`, `"value_encoding"` or (in a
//! header) `"value_encoding"` set to `"base64"` beside it. Null is `null`.

use std::io::Write;

use runnel_client::consumer::ConsumerRecord;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Key,
    Value,
    Topic,
    Partition,
    Offset,
    Timestamp,
    Headers,
    KeyLength,
    ValueLength,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
    /// What a null key, value or header value prints as: nothing, or `NULL` under kcat's -Z.
    null: Vec<u8>,
}

/// The escapes templates, delimiters and separators share: `\n`, `\t`, `\r`, `\0`, `\\` and
/// `\xHH`. Reads the escape after a backslash from `chars`.
fn escape(chars: &mut std::str::Chars<'_>) -> Result<u8, String> {
    Ok(match chars.next() {
        Some('n') => b'\n',
        Some('t') => b'\t',
        Some('r') => b'\r',
        Some('0') => 0,
        Some('\\') => b'\\',
        Some('x') => {
            let digits: String = chars.by_ref().take(2).collect();
            match u8::from_str_radix(&digits, 16) {
                Ok(byte) if digits.len() == 2 => byte,
                _ => return Err(format!("\\x{digits} is not \\x and two hex digits")),
            }
        }
        Some(other) => {
            return Err(format!(
                "unknown escape \\{other} (known: \\n \\t \\r \\0 \\\\ \\xHH)"
            ))
        }
        None => return Err("ends in a lone \\".to_owned()),
    })
}

/// `text` with its escapes replaced by the bytes they stand for: `-D '\x00'`, `-K '\t'`.
pub(crate) fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            bytes.push(escape(&mut chars)?);
        } else {
            bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
    }
    Ok(bytes)
}

impl Template {
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            let piece = match c {
                '%' => match chars.next() {
                    Some('k') => Piece::Key,
                    Some('v' | 's') => Piece::Value,
                    Some('t') => Piece::Topic,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('T') => Piece::Timestamp,
                    Some('h') => Piece::Headers,
                    Some('K') => Piece::KeyLength,
                    Some('S') => Piece::ValueLength,
                    Some('%') => {
                        literal.push(b'%');
                        continue;
                    }
                    Some(other) => {
                        return Err(format!(
                            "unknown format %{other} (known: %k %v %s %t %p %o %T %h %K %S %%)"
                        ))
                    }
                    None => return Err("the format ends in a lone %".to_owned()),
                },
                '\\' => {
                    literal
                        .push(escape(&mut chars).map_err(|error| format!("the format: {error}"))?);
                    continue;
                }
                other => {
                    literal.extend_from_slice(other.encode_utf8(&mut [0; 4]).as_bytes());
                    continue;
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template {
            pieces,
            null: Vec::new(),
        })
    }

    /// Null keys, values and header values print as `null` instead of nothing.
    pub(crate) fn null_as(mut self, null: &[u8]) -> Template {
        self.null = null.to_vec();
        self
    }

    /// Appends the record as the template says.
    pub(crate) fn render(&self, record: &ConsumerRecord, out: &mut Vec<u8>) {
        let bytes_or_null = |bytes: &Option<bytes::Bytes>, out: &mut Vec<u8>| match bytes {
            Some(bytes) => out.extend_from_slice(bytes),
            None => out.extend_from_slice(&self.null),
        };
        for piece in &self.pieces {
            // Writing to a Vec cannot fail.
            let _ = match piece {
                Piece::Literal(bytes) => {
                    out.extend_from_slice(bytes);
                    Ok(())
                }
                Piece::Key => {
                    bytes_or_null(&record.key, out);
                    Ok(())
                }
                Piece::Value => {
                    bytes_or_null(&record.value, out);
                    Ok(())
                }
                Piece::Topic => {
                    out.extend_from_slice(record.topic.as_bytes());
                    Ok(())
                }
                Piece::Partition => write!(out, "{}", record.partition),
                Piece::Offset => write!(out, "{}", record.offset),
                Piece::Timestamp => write!(out, "{}", record.timestamp),
                Piece::KeyLength => write!(out, "{}", length(record.key.as_deref())),
                Piece::ValueLength => write!(out, "{}", length(record.value.as_deref())),
                Piece::Headers => {
                    for (index, (key, value)) in record.headers.iter().enumerate() {
                        if index > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(key.as_bytes());
                        out.push(b'=');
                        bytes_or_null(value, out);
                    }
                    Ok(())
                }
            };
        }
    }
}

fn length(bytes: Option<&[u8]>) -> i64 {
    bytes.map_or(-1, |b| b.len() as i64)
}

/// `--format`: one JSON object a line, or a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordFormat {
    Template(Template),
    Json,
}

impl RecordFormat {
    /// `json`, or a template; with `null_literal`, templates print null as `NULL` (kcat's -Z).
    pub(crate) fn parse(text: &str, null_literal: bool) -> Result<RecordFormat, String> {
        if text == "json" {
            return Ok(RecordFormat::Json);
        }
        let template = Template::parse(text)?;
        Ok(RecordFormat::Template(if null_literal {
            template.null_as(b"NULL")
        } else {
            template
        }))
    }

    pub(crate) fn render(&self, record: &ConsumerRecord, out: &mut Vec<u8>) {
        match self {
            RecordFormat::Template(template) => template.render(record, out),
            RecordFormat::Json => {
                let (key, key_encoding) = encoded(record.key.as_deref());
                let (value, value_encoding) = encoded(record.value.as_deref());
                let json = JsonRecord {
                    topic: &record.topic,
                    partition: record.partition,
                    offset: record.offset,
                    timestamp: record.timestamp,
                    key,
                    key_encoding,
                    value,
                    value_encoding,
                    headers: record
                        .headers
                        .iter()
                        .map(|(key, value)| {
                            let (value, value_encoding) = encoded(value.as_deref());
                            JsonHeader {
                                key,
                                value,
                                value_encoding,
                            }
                        })
                        .collect(),
                };
                // Serializing strings and numbers into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, &json);
                out.push(b'\n');
            }
        }
    }
}

#[derive(Serialize)]
struct JsonRecord<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_encoding: Option<&'static str>,
    value: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_encoding: Option<&'static str>,
    headers: Vec<JsonHeader<'a>>,
}

#[derive(Serialize)]
struct JsonHeader<'a> {
    key: &'a str,
    value: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_encoding: Option<&'static str>,
}

/// UTF-8 bytes as they are; any other bytes as base64, said so, so that nothing is lost.
fn encoded(bytes: Option<&[u8]>) -> (Option<std::borrow::Cow<'_, str>>, Option<&'static str>) {
    match bytes {
        None => (None, None),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (Some(text.into()), None),
            Err(_) => (Some(base64(bytes).into()), Some("base64")),
        },
    }
}

/// Standard base64 (RFC 4648 section 4) with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |index: usize| u32::from(chunk.get(index).copied().unwrap_or(0));
        let group = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for sextet in 0..4 {
            // A chunk of n bytes fills n + 1 sextets; the rest is padding.
            if sextet <= chunk.len() {
                let index = (group >> (18 - 6 * sextet)) & 0x3f;
                text.push(char::from(ALPHABET[index as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use runnel_client::consumer::ConsumerRecord;

    use super::*;

    fn record() -> ConsumerRecord {
        ConsumerRecord {
            topic: Arc::from("orders"),
            partition: 2,
            offset: 41,
            timestamp: 1_700_000_000_000,
            timestamp_type: runnel_record::TimestampType::CreateTime,
            key: Some(Bytes::from_static(b"user-7")),
            value: Some(Bytes::from_static(b"{\"total\":3}")),
            headers: vec![
                ("trace".to_owned(), Some(Bytes::from_static(b"abc"))),
                ("empty".to_owned(), None),
            ],
            leader_epoch: None,
        }
    }

    fn render(template: &str) -> String {
        let mut out = Vec::new();
        Template::parse(template)
            .expect("parses")
            .render(&record(), &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn every_placeholder_and_escape() {
        assert_eq!(render("%v\\n"), "{\"total\":3}\n");
        assert_eq!(
            render("%t/%p@%o %T\\t%k=%v [%h] %K %S 100%%"),
            "orders/2@41 1700000000000\tuser-7={\"total\":3} [trace=abc,empty=] 6 11 100%"
        );
        assert_eq!(render("é\\\\"), "é\\");
        assert_eq!(
            render("%s\\x00\\x7c"),
            "{\"total\":3}\0|",
            "kcat's %s, hex escapes"
        );
    }

    #[test]
    fn null_keys_print_nothing_and_length_minus_one() {
        let mut record = record();
        record.key = None;
        record.value = None;
        let mut out = Vec::new();
        Template::parse("[%k] %K %S")
            .expect("parses")
            .render(&record, &mut out);
        assert_eq!(out, b"[] -1 -1");
        out.clear();
        RecordFormat::parse("%k|%v|%h", true)
            .expect("parses")
            .render(&record, &mut out);
        assert_eq!(out, b"NULL|NULL|trace=abc,empty=NULL");
    }

    #[test]
    fn unknown_placeholders_are_refused() {
        assert!(Template::parse("%x").is_err());
        assert!(Template::parse("%").is_err());
        assert!(Template::parse("\\q").is_err());
        assert!(Template::parse("\\x4").is_err());
        assert!(Template::parse("\\xzz").is_err());
    }

    #[test]
    fn escapes_unescape_to_bytes() {
        assert_eq!(unescape("\\x00"), Ok(vec![0]));
        assert_eq!(unescape("|"), Ok(b"|".to_vec()));
        assert_eq!(unescape("a\\tb\\n\\\\"), Ok(b"a\tb\n\\".to_vec()));
        assert_eq!(unescape("\\xff\\xFE"), Ok(vec![0xff, 0xfe]));
        assert!(unescape("\\").is_err());
    }

    #[test]
    fn base64_pads_to_whole_groups() {
        for (bytes, text) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"\xff\xfe", "//4="),
        ] {
            assert_eq!(base64(bytes), text);
        }
    }

    #[test]
    fn json_keeps_text_as_text_and_other_bytes_as_base64() {
        let mut record = record();
        record.value = Some(Bytes::from_static(b"\xff\x00a"));
        record.headers = vec![("bin".to_owned(), Some(Bytes::from_static(b"\x80")))];
        let mut out = Vec::new();
        RecordFormat::Json.render(&record, &mut out);
        let json: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(json["key"], "user-7");
        assert!(json.get("key_encoding").is_none());
        assert_eq!(json["value"], "/wBh");
        assert_eq!(json["value_encoding"], "base64");
        assert_eq!(json["headers"][0]["value"], "gA==");
        assert_eq!(json["headers"][0]["value_encoding"], "base64");
        record.key = None;
        out.clear();
        RecordFormat::Json.render(&record, &mut out);
        let json: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert!(json["key"].is_null());
    }
}
