//! How the message browser shows a key, a value or a header: bytes as a person can read
//! them.
//!
//! A record's bytes mean whatever its producer meant, and the console cannot know which
//! serializer that was, so it guesses in the order that loses the least:
//!
//! 1. JSON objects and arrays, pretty-printed (the usual payload of a topic read by people);
//! 2. UTF-8 text without control characters other than tab and line breaks, as text (a JSON
//!    number or string is shown as its text: pretty-printing would change nothing);
//! 3. anything else as a hex dump with the printable ASCII beside it, as `xxd` shows it.
//!
//! What is shown is cut at a display limit (the record itself may be larger), and the answer
//! says so; the browser's byte limits (`browse`) bound what is read in the first place.

use serde::Serialize;

/// How [`render`] read the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    /// No bytes at all (a null key, a tombstone's value).
    Null,
    Json,
    Text,
    Binary,
}

/// Bytes as the browser shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Rendered {
    pub(crate) kind: Kind,
    /// The text shown: pretty JSON, the text itself, or a hex dump.
    pub(crate) text: String,
    /// How many bytes there were.
    pub(crate) size: usize,
    /// Whether `text` stops short of the whole.
    pub(crate) truncated: bool,
}

/// Bytes of a hex dump's line.
const HEX_LINE: usize = 16;

/// Reads `bytes` as JSON, text or binary, showing at most about `display_max` characters.
pub(crate) fn render(bytes: Option<&[u8]>, display_max: usize) -> Rendered {
    let Some(bytes) = bytes else {
        return Rendered {
            kind: Kind::Null,
            text: String::new(),
            size: 0,
            truncated: false,
        };
    };
    let size = bytes.len();
    if let Ok(text) = std::str::from_utf8(bytes) {
        // A character is at most 4 bytes: indenting stops once what `cut` keeps is written.
        if let Some(pretty) = pretty_json(text, display_max.saturating_mul(4)) {
            let (text, truncated) = cut(pretty, display_max);
            return Rendered {
                kind: Kind::Json,
                text,
                size,
                truncated,
            };
        }
        if is_readable(text) {
            let (text, truncated) = cut(text.to_owned(), display_max);
            return Rendered {
                kind: Kind::Text,
                text,
                size,
                truncated,
            };
        }
    }
    // A hex dump line is 4 characters per byte or so: show as many bytes as fit.
    let shown = bytes.len().min((display_max / 4).max(HEX_LINE));
    Rendered {
        kind: Kind::Binary,
        text: hex_dump(&bytes[..shown]),
        size,
        truncated: shown < bytes.len(),
    }
}

/// `text` pretty-printed when it is a JSON object or array.
///
/// The text is re-indented as it is rather than parsed into values and printed again: keys
/// keep the producer's order (serde_json's map sorts them) and numbers their spelling
/// (`1.50`, or integers beyond what an `f64` holds).
fn pretty_json(text: &str, budget: usize) -> Option<String> {
    let trimmed = text.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return None;
    }
    // Valid JSON first; `IgnoredAny` checks without building the values.
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
    Some(reindent(text, budget))
}

/// Valid JSON `text` with two spaces of indentation per level, one member per line, and
/// empty objects and arrays kept as `{}` and `[]`, cut once it holds `budget` bytes: deep
/// nesting makes indentation grow a hundredfold (`[[[[0,0...` 127 levels deep), and a
/// record of a megabyte must not become a hundred.
fn reindent(text: &str, budget: usize) -> String {
    const INDENT: &str = "  ";
    let mut out = String::with_capacity(text.len().saturating_mul(2).min(budget));
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(INDENT);
        }
    };
    while let Some(c) = chars.next() {
        if out.len() >= budget {
            break;
        }
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    if let Some(close) = chars.next() {
                        out.push(close);
                    }
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// Text a person can read as it is: no control characters but tab, line feed and carriage
/// return (a NUL or an escape sequence says the bytes were not meant as text).
fn is_readable(text: &str) -> bool {
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
}

/// `text` cut to at most `max` characters, on a character boundary.
fn cut(mut text: String, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((at, _)) => {
            text.truncate(at);
            (text, true)
        }
        None => (text, false),
    }
}

/// `00000000  de ad be ef ...  |....|`: offset, 16 bytes in hex, the printable ASCII.
pub(crate) fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 + bytes.len() / HEX_LINE * 12);
    for (line, chunk) in bytes.chunks(HEX_LINE).enumerate() {
        if line > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{:08x} ", line * HEX_LINE));
        for column in 0..HEX_LINE {
            // An extra space between the two halves of the line, as xxd and hexdump -C do.
            if column == HEX_LINE / 2 {
                out.push(' ');
            }
            match chunk.get(column) {
                Some(byte) => out.push_str(&format!(" {byte:02x}")),
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        out.extend(chunk.iter().map(|&byte| {
            if byte.is_ascii_graphic() || byte == b' ' {
                char::from(byte)
            } else {
                '.'
            }
        }));
        out.push('|');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deeply_nested_json_is_indented_only_as_far_as_it_is_shown() {
        // 100 levels deep, 200,000 numbers: fully indented, over 40 MB.
        let text = format!(
            "{}{}0{}",
            "[".repeat(100),
            "0,".repeat(200_000),
            "]".repeat(100)
        );
        let rendered = render(Some(text.as_bytes()), 1024);
        assert_eq!(rendered.kind, Kind::Json);
        assert!(rendered.truncated);
        assert!(
            rendered.text.chars().count() <= 1024,
            "{}",
            rendered.text.len()
        );
        assert!(reindent(&text, 4096).len() < 4096 + 256);
    }

    #[test]
    fn json_objects_and_arrays_are_pretty_printed() {
        let shown = render(Some(br#"{"id":7,"tags":["a","b"]}"#), 10_000);
        assert_eq!(shown.kind, Kind::Json);
        assert_eq!(
            shown.text,
            "{\n  \"id\": 7,\n  \"tags\": [\n    \"a\",\n    \"b\"\n  ]\n}"
        );
        assert_eq!(shown.size, 25);
        assert!(!shown.truncated);
        assert_eq!(render(Some(b" [1, 2]"), 100).kind, Kind::Json);
    }

    #[test]
    fn json_keeps_its_key_order_and_number_spelling() {
        let shown = render(
            Some(br#"{"zeta": 1.50, "alpha": {}, "big": 123456789012345678901234567890, "s": "a,b:{c}\"]", "e": [ ]}"#),
            10_000,
        );
        assert_eq!(shown.kind, Kind::Json);
        assert_eq!(
            shown.text,
            "{\n  \"zeta\": 1.50,\n  \"alpha\": {},\n  \"big\": 123456789012345678901234567890,\n  \"s\": \"a,b:{c}\\\"]\",\n  \"e\": []\n}"
        );
    }

    #[test]
    fn json_scalars_and_broken_json_are_text() {
        assert_eq!(render(Some(b"42"), 100).kind, Kind::Text);
        assert_eq!(render(Some(b"\"quoted\""), 100).kind, Kind::Text);
        let broken = render(Some(b"{not json"), 100);
        assert_eq!(broken.kind, Kind::Text);
        assert_eq!(broken.text, "{not json");
    }

    #[test]
    fn utf8_text_is_shown_as_it_is() {
        let shown = render(Some("héllo\tworld\nline two".as_bytes()), 100);
        assert_eq!(shown.kind, Kind::Text);
        assert_eq!(shown.text, "héllo\tworld\nline two");
    }

    #[test]
    fn control_characters_and_invalid_utf8_are_binary() {
        let shown = render(Some(&[0xde, 0xad, 0xbe, 0xef]), 100);
        assert_eq!(shown.kind, Kind::Binary);
        assert!(
            shown.text.starts_with("00000000  de ad be ef"),
            "{}",
            shown.text
        );
        assert!(shown.text.ends_with("|....|"), "{}", shown.text);
        // Valid UTF-8, but a NUL says it is not text.
        assert_eq!(render(Some(b"ab\0cd"), 100).kind, Kind::Binary);
        assert_eq!(render(Some(b"\x1b[31mred"), 100).kind, Kind::Binary);
    }

    #[test]
    fn null_is_not_empty() {
        assert_eq!(render(None, 100).kind, Kind::Null);
        let empty = render(Some(b""), 100);
        assert_eq!(empty.kind, Kind::Text);
        assert_eq!(empty.size, 0);
    }

    #[test]
    fn hex_dump_lines_have_offsets_halves_and_ascii() {
        let bytes: Vec<u8> = (0x41..0x41 + 20).collect();
        let dump = hex_dump(&bytes);
        let lines: Vec<&str> = dump.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            "00000000  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|"
        );
        assert_eq!(
            lines[1],
            "00000010  51 52 53 54                                       |QRST|"
        );
    }

    #[test]
    fn long_values_are_cut_and_say_so() {
        let text = "é".repeat(50);
        let shown = render(Some(text.as_bytes()), 10);
        assert_eq!(shown.text.chars().count(), 10);
        assert!(shown.truncated);
        assert_eq!(shown.size, 100);

        let binary = vec![0u8; 1000];
        let shown = render(Some(&binary), 64);
        assert_eq!(shown.kind, Kind::Binary);
        assert!(shown.truncated);
        assert_eq!(shown.text.lines().count(), 1);

        let json = format!("[{}]", vec!["1"; 100].join(","));
        let shown = render(Some(json.as_bytes()), 20);
        assert_eq!(shown.kind, Kind::Json);
        assert!(shown.truncated);
    }
}
