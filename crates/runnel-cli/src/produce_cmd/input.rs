//! How `runnel produce` cuts its input into records: at a delimiter (`-D`, a newline by
//! default; `\r\n` counts as one), the key split off at a separator (`-K`), or by an input
//! template (`-f '%k %v\n'`).
//!
//! A template is literals and fields: `%k` key, `%v` value, `%T` timestamp (epoch ms or RFC
//! 3339), `%p` partition, `%h` headers (`k=v,k=v`; a header without `=` has a null value),
//! `%%`; with the escapes of [`crate::template::unescape`]. Each field runs up to the literal
//! that follows it, so two fields cannot touch, and the template ends with a literal, the
//! record's terminator (a last record may lack it at the end of the input).
//!
//! Records are slices of one frozen read buffer, never copied: the parser finds their fields'
//! byte ranges in the buffer, then the buffer up to the last whole record is frozen and sliced.

use bytes::{Bytes, BytesMut};

/// One record read from the input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct InputRecord {
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) timestamp_ms: Option<i64>,
    pub(crate) partition: Option<i32>,
    pub(crate) headers: Vec<(String, Option<Bytes>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Key = 0,
    Value = 1,
    Timestamp = 2,
    Partition = 3,
    Headers = 4,
}

const FIELDS: [Field; 5] = [
    Field::Key,
    Field::Value,
    Field::Timestamp,
    Field::Partition,
    Field::Headers,
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Field(Field),
}

/// How records are framed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Framing {
    Delimited {
        delimiter: Vec<u8>,
        /// For the default newline: a `\r` before it is not part of the record.
        strip_cr: bool,
        key_separator: Option<Vec<u8>>,
    },
    Template(Vec<Piece>),
}

/// The input's framing and what applies to every record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InputFormat {
    framing: Framing,
    /// `-k`: the key of every record, or (as kcat's) of those without a `-K` separator.
    fixed_key: Option<Bytes>,
    /// `-Z`: an empty key or value is null (a null value is a tombstone).
    empty_is_null: bool,
    /// Records cut so far, for error messages.
    records_read: u64,
}

impl InputFormat {
    /// Records ending in `delimiter` (`\n` also ends at `\r\n`), keys split off at the first
    /// `key_separator`.
    pub(crate) fn delimited(
        delimiter: Vec<u8>,
        key_separator: Option<Vec<u8>>,
    ) -> Result<Self, String> {
        if delimiter.is_empty() {
            return Err("the record delimiter cannot be empty".to_owned());
        }
        if key_separator.as_ref().is_some_and(Vec::is_empty) {
            return Err("the key separator cannot be empty".to_owned());
        }
        Ok(InputFormat {
            framing: Framing::Delimited {
                strip_cr: delimiter == b"\n",
                delimiter,
                key_separator,
            },
            fixed_key: None,
            empty_is_null: false,
            records_read: 0,
        })
    }

    /// Records as `template` lays them out.
    pub(crate) fn template(template: &str) -> Result<Self, String> {
        let mut pieces: Vec<Piece> = Vec::new();
        let mut literal = Vec::new();
        let mut chars = template.chars();
        while let Some(c) = chars.next() {
            let field = match c {
                '%' => match chars.next() {
                    Some('k') => Field::Key,
                    Some('v') => Field::Value,
                    Some('T') => Field::Timestamp,
                    Some('p') => Field::Partition,
                    Some('h') => Field::Headers,
                    Some('%') => {
                        literal.push(b'%');
                        continue;
                    }
                    Some(other) => {
                        return Err(format!(
                            "unknown input format %{other} (known: %k %v %T %p %h %%)"
                        ))
                    }
                    None => return Err("the input format ends in a lone %".to_owned()),
                },
                '\\' => {
                    let mut escaped = String::from('\\');
                    escaped.extend(chars.next());
                    if escaped == "\\x" {
                        escaped.extend(chars.by_ref().take(2));
                    }
                    let bytes = crate::template::unescape(&escaped)
                        .map_err(|error| format!("the input format: {error}"))?;
                    literal.extend_from_slice(&bytes);
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
            if let Some(Piece::Field(_)) = pieces.last() {
                return Err(format!(
                    "in the input format {template:?} two fields touch: put a separator between them"
                ));
            }
            if pieces.contains(&Piece::Field(field)) {
                return Err(format!("the input format {template:?} has a field twice"));
            }
            pieces.push(Piece::Field(field));
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        if !matches!(pieces.last(), Some(Piece::Literal(_))) {
            return Err(format!(
                "the input format {template:?} must end with what ends a record, e.g. \\n"
            ));
        }
        Ok(InputFormat {
            framing: Framing::Template(pieces),
            fixed_key: None,
            empty_is_null: false,
            records_read: 0,
        })
    }

    /// Whether every record gets its key from the input (a template's `%k`).
    pub(crate) fn reads_keys(&self) -> bool {
        match &self.framing {
            Framing::Delimited { .. } => false,
            Framing::Template(pieces) => pieces.contains(&Piece::Field(Field::Key)),
        }
    }

    pub(crate) fn with_fixed_key(mut self, key: Option<Bytes>) -> Self {
        self.fixed_key = key;
        self
    }

    pub(crate) fn with_empty_as_null(mut self, empty_is_null: bool) -> Self {
        self.empty_is_null = empty_is_null;
        self
    }

    /// Cuts the whole records at the front of `buffer` off as records; what follows the
    /// last whole one stays, unless `at_end`, where it is the last record.
    pub(crate) fn take_records(
        &mut self,
        buffer: &mut BytesMut,
        at_end: bool,
    ) -> Result<Vec<InputRecord>, String> {
        let mut layouts = Vec::new();
        let mut consumed = 0;
        while consumed < buffer.len() {
            let found = match &self.framing {
                Framing::Delimited {
                    delimiter,
                    strip_cr,
                    ..
                } => delimited_layout(&buffer[consumed..], delimiter, *strip_cr, at_end),
                Framing::Template(pieces) => {
                    let record_number = self.records_read + layouts.len() as u64 + 1;
                    template_layout(&buffer[consumed..], pieces, at_end).map_err(|error| {
                        format!("record {record_number} does not match the input format: {error}")
                    })?
                }
            };
            let Some((mut layout, length)) = found else {
                break;
            };
            for range in layout.iter_mut().flatten() {
                range.start += consumed;
                range.end += consumed;
            }
            layouts.push(layout);
            consumed += length;
        }
        let whole = buffer.split_to(consumed).freeze();
        let mut records = Vec::with_capacity(layouts.len());
        for layout in layouts {
            self.records_read += 1;
            let record = self
                .record(&whole, layout)
                .map_err(|error| format!("record {}: {error}", self.records_read))?;
            records.push(record);
        }
        Ok(records)
    }

    fn record(&self, whole: &Bytes, layout: Layout) -> Result<InputRecord, String> {
        let mut record = InputRecord {
            key: self.fixed_key.clone(),
            ..InputRecord::default()
        };
        let mut value = None;
        for (field, range) in FIELDS.into_iter().zip(layout) {
            let Some(range) = range else {
                continue;
            };
            let bytes = whole.slice(range);
            match field {
                Field::Key => record.key = Some(bytes),
                Field::Value => value = Some(bytes),
                Field::Timestamp => record.timestamp_ms = Some(timestamp(&bytes)?),
                Field::Partition => {
                    let text = std::str::from_utf8(&bytes).unwrap_or_default();
                    let partition = text
                        .parse()
                        .map_err(|_| format!("partition {text:?} is not a number"))?;
                    record.partition = Some(partition);
                }
                Field::Headers => record.headers = headers(&bytes)?,
            }
        }
        // Delimited input splits its key off here, with the record whole.
        if let Framing::Delimited {
            key_separator: Some(separator),
            ..
        } = &self.framing
        {
            if let Some(whole_record) = value.take() {
                let (key, rest) = split_key(whole_record, separator);
                if key.is_some() {
                    record.key = key;
                }
                value = Some(rest);
            }
        }
        record.value = Some(value.unwrap_or_default());
        if self.empty_is_null {
            record.key = record.key.filter(|key| !key.is_empty());
            record.value = record.value.filter(|value| !value.is_empty());
        }
        Ok(record)
    }
}

/// Where each field of one record lies in the buffer, by `Field as usize` (an array, not a
/// Vec: no allocation per record).
type Layout = [Option<std::ops::Range<usize>>; 5];

/// The first record of `input` as a value, and the bytes it takes with its delimiter; `None`
/// when it is not whole yet.
fn delimited_layout(
    input: &[u8],
    delimiter: &[u8],
    strip_cr: bool,
    at_end: bool,
) -> Option<(Layout, usize)> {
    let (end, length) = match find(input, delimiter) {
        Some(at) => (at, at + delimiter.len()),
        None if at_end => (input.len(), input.len()),
        None => return None,
    };
    let value_end = if strip_cr && end > 0 && input[end - 1] == b'\r' {
        end - 1
    } else {
        end
    };
    let mut layout = Layout::default();
    layout[Field::Value as usize] = Some(0..value_end);
    Some((layout, length))
}

/// The first record of `input` laid out by the template; `None` when it is not whole yet.
fn template_layout(
    input: &[u8],
    pieces: &[Piece],
    at_end: bool,
) -> Result<Option<(Layout, usize)>, String> {
    let mut layout = Layout::default();
    let mut at = 0;
    let last = pieces.len() - 1;
    // A field's separator is looked for only before the record's terminator, so that a
    // record lacking one is an error rather than the start of the next record swallowed.
    let terminator = match &pieces[last] {
        Piece::Literal(terminator) => terminator.as_slice(),
        Piece::Field(_) => &[],
    };
    let mut index = 0;
    while index < pieces.len() {
        match &pieces[index] {
            Piece::Literal(literal) => {
                let rest = &input[at..];
                if rest.starts_with(literal) {
                    at += literal.len();
                } else if !at_end && literal.starts_with(rest) {
                    return Ok(None);
                } else if at_end && index == last && rest.is_empty() {
                    // The input's last record, without its terminator.
                } else {
                    return Err(format!(
                        "expected {:?} at {:?}",
                        String::from_utf8_lossy(literal),
                        String::from_utf8_lossy(&rest[..rest.len().min(40)])
                    ));
                }
            }
            Piece::Field(field) => {
                // Fields are always followed by a literal (see `InputFormat::template`).
                let Some(Piece::Literal(next)) = pieces.get(index + 1) else {
                    return Err("a field must be followed by a separator".to_owned());
                };
                let rest = &input[at..];
                let record_end = match index + 1 == last {
                    true => None,
                    false => find(rest, terminator),
                };
                let end = match find(&rest[..record_end.unwrap_or(rest.len())], next) {
                    Some(found) => at + found,
                    None if index + 1 == last && at_end => input.len(),
                    None if record_end.is_some() => {
                        return Err(format!(
                            "no {:?} before the end of the record {:?}",
                            String::from_utf8_lossy(next),
                            String::from_utf8_lossy(&rest[..record_end.unwrap_or(0).min(40)])
                        ))
                    }
                    None if at_end => {
                        return Err(format!(
                            "the input ends before {:?}",
                            String::from_utf8_lossy(next)
                        ))
                    }
                    None => return Ok(None),
                };
                layout[*field as usize] = Some(at..end);
                at = end;
            }
        }
        index += 1;
    }
    Ok(Some((layout, at)))
}

/// The first place `needle` occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [byte] => haystack.iter().position(|b| b == byte),
        _ => haystack
            .windows(needle.len())
            .position(|window| window == needle),
    }
}

/// Splits at the first `separator`; a record without it has no key.
fn split_key(record: Bytes, separator: &[u8]) -> (Option<Bytes>, Bytes) {
    match find(&record, separator) {
        Some(at) => (
            Some(record.slice(..at)),
            record.slice(at + separator.len()..),
        ),
        None => (None, record),
    }
}

fn timestamp(bytes: &[u8]) -> Result<i64, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the timestamp is not text".to_owned())?;
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| format!("timestamp {text:?} is too large"));
    }
    crate::datetime::parse_ms(text)
}

/// `k=v,k2=v2`; `k` alone is a header with a null value; nothing is no headers.
fn headers(bytes: &Bytes) -> Result<Vec<(String, Option<Bytes>)>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut headers = Vec::new();
    let mut start = 0;
    while start <= bytes.len() {
        let end = find(&bytes[start..], b",").map_or(bytes.len(), |at| start + at);
        let pair = bytes.slice(start..end);
        let (name, value) = match find(&pair, b"=") {
            Some(at) => (pair.slice(..at), Some(pair.slice(at + 1..))),
            None => (pair, None),
        };
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| "a header name is not UTF-8".to_owned())?;
        if name.is_empty() {
            return Err("a header has no name".to_owned());
        }
        headers.push((name, value));
        start = end + 1;
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(records: &[InputRecord]) -> Vec<&[u8]> {
        records
            .iter()
            .map(|r| r.value.as_deref().unwrap_or(b"<null>"))
            .collect()
    }

    fn lines() -> InputFormat {
        InputFormat::delimited(b"\n".to_vec(), None).expect("valid")
    }

    #[test]
    fn lines_are_cut_at_newlines_keeping_the_tail() {
        let mut input = lines();
        let mut buffer = BytesMut::from(&b"one\r\ntwo\n\nthr"[..]);
        let records = input.take_records(&mut buffer, false).expect("records");
        assert_eq!(values(&records), [&b"one"[..], b"two", b""]);
        assert_eq!(&buffer[..], b"thr");
        assert!(input
            .take_records(&mut buffer, false)
            .expect("none")
            .is_empty());
        assert_eq!(
            values(&input.take_records(&mut buffer, true).expect("last")),
            [b"thr"]
        );
        assert!(input
            .take_records(&mut buffer, true)
            .expect("none")
            .is_empty());
    }

    #[test]
    fn other_delimiters_keep_carriage_returns_and_may_be_long() {
        let mut input = InputFormat::delimited(b"\0".to_vec(), None).expect("valid");
        let mut buffer = BytesMut::from(&b"a\nb\r\0\0c"[..]);
        let records = input.take_records(&mut buffer, true).expect("records");
        assert_eq!(values(&records), [&b"a\nb\r"[..], b"", b"c"]);

        let mut input = InputFormat::delimited(b"--".to_vec(), None).expect("valid");
        let mut buffer = BytesMut::from(&b"a-b--c-"[..]);
        let records = input.take_records(&mut buffer, false).expect("records");
        assert_eq!(values(&records), [&b"a-b"[..]]);
        assert_eq!(&buffer[..], b"c-", "half a delimiter waits for the rest");
        buffer.extend_from_slice(b"-d");
        let records = input.take_records(&mut buffer, true).expect("records");
        assert_eq!(values(&records), [&b"c"[..], b"d"]);
        assert!(InputFormat::delimited(Vec::new(), None).is_err());
    }

    #[test]
    fn keys_split_at_the_first_separator() {
        let mut input =
            InputFormat::delimited(b"\n".to_vec(), Some(b"::".to_vec())).expect("valid");
        let mut buffer = BytesMut::from(&b"user-1::a::b\nnokey\n::empty\n"[..]);
        let records = input.take_records(&mut buffer, true).expect("records");
        let keys: Vec<Option<&[u8]>> = records.iter().map(|r| r.key.as_deref()).collect();
        assert_eq!(keys, [Some(&b"user-1"[..]), None, Some(b"")]);
        assert_eq!(values(&records), [&b"a::b"[..], b"nokey", b"empty"]);
    }

    #[test]
    fn empty_keys_and_values_are_null_under_z() {
        let mut input = InputFormat::delimited(b"\n".to_vec(), Some(b":".to_vec()))
            .expect("valid")
            .with_empty_as_null(true);
        let mut buffer = BytesMut::from(&b"k:\n:v\n\n"[..]);
        let records = input.take_records(&mut buffer, true).expect("records");
        assert_eq!(records[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(records[0].value, None, "a tombstone");
        assert_eq!(records[1].key, None);
        assert_eq!(records[2].value, None);
    }

    #[test]
    fn a_fixed_key_goes_on_every_record_without_its_own() {
        let mut input = lines().with_fixed_key(Some(Bytes::from_static(b"k")));
        let mut buffer = BytesMut::from(&b"a\nb\n"[..]);
        let records = input.take_records(&mut buffer, true).expect("records");
        assert!(records.iter().all(|r| r.key.as_deref() == Some(&b"k"[..])));

        let mut input = InputFormat::delimited(b"\n".to_vec(), Some(b":".to_vec()))
            .expect("valid")
            .with_fixed_key(Some(Bytes::from_static(b"k")));
        let mut buffer = BytesMut::from(&b"own:a\nb\n"[..]);
        let records = input.take_records(&mut buffer, true).expect("records");
        let keys: Vec<Option<&[u8]>> = records.iter().map(|r| r.key.as_deref()).collect();
        assert_eq!(keys, [Some(&b"own"[..]), Some(b"k")], "kcat's -k with -K");
    }

    #[test]
    fn templates_lay_out_fields_between_literals() {
        let mut input = InputFormat::template("%k %v\\n").expect("valid");
        assert!(input.reads_keys());
        let mut buffer = BytesMut::from(&b"k1 hello world\nk2 x\nk3 partial"[..]);
        let records = input.take_records(&mut buffer, false).expect("records");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(records[0].value.as_deref(), Some(&b"hello world"[..]));
        assert_eq!(&buffer[..], b"k3 partial");
        let records = input.take_records(&mut buffer, true).expect("the last");
        assert_eq!(records[0].value.as_deref(), Some(&b"partial"[..]));

        let mut input = InputFormat::template("[%T|%p|%h] %k\\t%v\\x00").expect("valid");
        let mut buffer = BytesMut::from(
            &b"[1700000000000|2|a=1,b] key\tvalue\0[2026-01-01T00:00:00Z|0|] k\tv\0"[..],
        );
        let records = input.take_records(&mut buffer, false).expect("records");
        assert_eq!(records[0].timestamp_ms, Some(1_700_000_000_000));
        assert_eq!(records[0].partition, Some(2));
        assert_eq!(
            records[0].headers,
            [
                ("a".to_owned(), Some(Bytes::from_static(b"1"))),
                ("b".to_owned(), None)
            ]
        );
        assert_eq!(records[0].key.as_deref(), Some(&b"key"[..]));
        assert_eq!(records[0].value.as_deref(), Some(&b"value"[..]));
        assert_eq!(records[1].timestamp_ms, Some(1_767_225_600_000));
        assert!(records[1].headers.is_empty());
        assert!(buffer.is_empty());
    }

    #[test]
    fn templates_that_cannot_be_read_are_refused() {
        for bad in ["%k%v\\n", "%k %v", "%x\\n", "%k %k\\n", "%", "\\q"] {
            assert!(InputFormat::template(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_record_missing_a_separator_does_not_swallow_the_next() {
        let mut input = InputFormat::template("%k %v\\n").expect("valid");
        let mut buffer = BytesMut::from(&b"a 1\nb\nc 3\n"[..]);
        let error = input
            .take_records(&mut buffer, false)
            .expect_err("mismatch");
        assert!(
            error.contains("record 2") && error.contains("\"b\""),
            "{error}"
        );
    }

    #[test]
    fn input_that_does_not_match_says_which_record() {
        let mut input = InputFormat::template("%k=%v\\n").expect("valid");
        let mut buffer = BytesMut::from(&b"a=1\nb=2\nno separator\n"[..]);
        let error = input.take_records(&mut buffer, true).expect_err("mismatch");
        assert!(error.contains("record 3"), "{error}");
        let mut input = InputFormat::template("%T %v\\n").expect("valid");
        let mut buffer = BytesMut::from(&b"soon x\n"[..]);
        let error = input
            .take_records(&mut buffer, true)
            .expect_err("bad timestamp");
        assert!(error.contains("record 1"), "{error}");
    }
}
