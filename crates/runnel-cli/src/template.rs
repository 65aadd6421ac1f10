//! kcat-style output templates for `runnel consume --format`: `%v` value, `%k` key, `%t` topic,
//! `%p` partition, `%o` offset, `%T` timestamp (ms), `%h` headers (`k=v,k=v`), `%K`/`%S` key
//! and value length (-1 for none), `%%`; escapes `\n`, `\t`, `\r`, `\0`, `\\`. Parsed once,
//! then rendered per record into a reused buffer.

use runnel_client::consumer::ConsumerRecord;

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
                    Some('v') => Piece::Value,
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
                            "unknown format %{other} (known: %k %v %t %p %o %T %h %K %S %%)"
                        ))
                    }
                    None => return Err("the format ends in a lone %".to_owned()),
                },
                '\\' => {
                    let escaped = match chars.next() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('0') => '\0',
                        Some('\\') => '\\',
                        Some(other) => {
                            return Err(format!(
                                "unknown escape \\{other} (known: \\n \\t \\r \\0 \\\\)"
                            ))
                        }
                        None => return Err("the format ends in a lone \\".to_owned()),
                    };
                    literal.extend_from_slice(escaped.encode_utf8(&mut [0; 4]).as_bytes());
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
        Ok(Template { pieces })
    }

    /// Appends the record as the template says. A null key or value prints nothing.
    pub(crate) fn render(&self, record: &ConsumerRecord, out: &mut Vec<u8>) {
        use std::io::Write;
        for piece in &self.pieces {
            // Writing to a Vec cannot fail.
            let _ = match piece {
                Piece::Literal(bytes) => {
                    out.extend_from_slice(bytes);
                    Ok(())
                }
                Piece::Key => {
                    out.extend_from_slice(record.key.as_deref().unwrap_or_default());
                    Ok(())
                }
                Piece::Value => {
                    out.extend_from_slice(record.value.as_deref().unwrap_or_default());
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
                        out.extend_from_slice(value.as_deref().unwrap_or_default());
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
    }

    #[test]
    fn null_keys_print_nothing_and_length_minus_one() {
        let mut record = record();
        record.key = None;
        let mut out = Vec::new();
        Template::parse("[%k] %K")
            .expect("parses")
            .render(&record, &mut out);
        assert_eq!(out, b"[] -1");
    }

    #[test]
    fn unknown_placeholders_are_refused() {
        assert!(Template::parse("%x").is_err());
        assert!(Template::parse("%").is_err());
        assert!(Template::parse("\\q").is_err());
    }
}
