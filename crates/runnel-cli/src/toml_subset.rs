//! The part of TOML that the CLI's profiles file uses: `[table.headers]`, `key = value` with
//! strings, integers, booleans and one-line arrays of those, and `#` comments.
//!
//! The CLI does not depend on a TOML crate, and a profiles file is a handful of lines, so this
//! reads exactly that much and refuses the rest (multi-line strings, inline tables, dates,
//! arrays of tables) with the line it is on, rather than guessing.
//!
//! Keys come back as paths: `[profiles.prod]` then `client.id = "x"` is
//! `["profiles", "prod", "client", "id"]`, as TOML's dotted keys mean; `"client.id" = "x"` is
//! `["profiles", "prod", "client.id"]`. Callers that want Kafka's dotted names join the tail.

use std::collections::BTreeSet;

/// A value as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    String(String),
    Integer(i64),
    Boolean(bool),
    Array(Vec<Value>),
}

impl Value {
    /// The value as a client property takes it: numbers and booleans as written, arrays
    /// comma-separated (a list of brokers).
    pub(crate) fn to_property(&self) -> String {
        match self {
            Value::String(text) => text.clone(),
            Value::Integer(number) => number.to_string(),
            Value::Boolean(flag) => flag.to_string(),
            Value::Array(values) => values
                .iter()
                .map(Value::to_property)
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// What a file holds: every table header, and every assignment with its full key path, in
/// file order.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Document {
    pub(crate) tables: Vec<Vec<String>>,
    pub(crate) entries: Vec<(Vec<String>, Value)>,
}

/// Reads `text`; an error names the line (from 1) and what is wrong there.
pub(crate) fn parse(text: &str) -> Result<Document, String> {
    let mut document = Document::default();
    let mut table: Vec<String> = Vec::new();
    let mut seen_keys: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut seen_tables: BTreeSet<Vec<String>> = BTreeSet::new();
    for (index, line) in text.lines().enumerate() {
        let at_line = |problem: String| format!("line {}: {problem}", index + 1);
        let mut cursor = Cursor::new(line);
        cursor.skip_space();
        if cursor.at_end_or_comment() {
            continue;
        }
        if cursor.eat('[') {
            if cursor.peek() == Some('[') {
                return Err(at_line(
                    "arrays of tables ([[...]]) are not supported".to_owned(),
                ));
            }
            let path = cursor.key_path().map_err(at_line)?;
            if !cursor.eat(']') {
                return Err(at_line("expected ] after the table name".to_owned()));
            }
            cursor.expect_line_end().map_err(at_line)?;
            if !seen_tables.insert(path.clone()) {
                return Err(at_line(format!(
                    "table [{}] is defined twice",
                    path.join(".")
                )));
            }
            document.tables.push(path.clone());
            table = path;
            continue;
        }
        let key = cursor.key_path().map_err(at_line)?;
        if !cursor.eat('=') {
            return Err(at_line("expected KEY = VALUE".to_owned()));
        }
        cursor.skip_space();
        let value = cursor.value().map_err(at_line)?;
        cursor.expect_line_end().map_err(at_line)?;
        let mut path = table.clone();
        path.extend(key);
        if !seen_keys.insert(path.clone()) {
            return Err(at_line(format!("{} is set twice", path.join("."))));
        }
        document.entries.push((path, value));
    }
    Ok(document)
}

/// A position in one line.
struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn new(line: &'a str) -> Self {
        Cursor { rest: line }
    }

    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn eat(&mut self, wanted: char) -> bool {
        match self.rest.strip_prefix(wanted) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    fn at_end_or_comment(&self) -> bool {
        self.rest.is_empty() || self.rest.starts_with('#')
    }

    fn expect_line_end(&mut self) -> Result<(), String> {
        self.skip_space();
        if self.at_end_or_comment() {
            Ok(())
        } else {
            Err(format!("unexpected {:?} at the end of the line", self.rest))
        }
    }

    /// `a.b."c d".'e'`, with spaces allowed around the dots.
    fn key_path(&mut self) -> Result<Vec<String>, String> {
        let mut path = Vec::new();
        loop {
            self.skip_space();
            let segment = match self.peek() {
                Some('"') => {
                    self.eat('"');
                    self.basic_string()?
                }
                Some('\'') => {
                    self.eat('\'');
                    self.literal_string()?
                }
                _ => {
                    let end = self
                        .rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                        .unwrap_or(self.rest.len());
                    if end == 0 {
                        return Err(match self.peek() {
                            Some(c) => format!("expected a key, found {c:?}"),
                            None => "expected a key".to_owned(),
                        });
                    }
                    let (segment, rest) = self.rest.split_at(end);
                    self.rest = rest;
                    segment.to_owned()
                }
            };
            path.push(segment);
            self.skip_space();
            if !self.eat('.') {
                return Ok(path);
            }
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        if self.rest.starts_with("\"\"\"") || self.rest.starts_with("'''") {
            return Err("multi-line strings are not supported".to_owned());
        }
        match self.peek() {
            Some('"') => {
                self.eat('"');
                Ok(Value::String(self.basic_string()?))
            }
            Some('\'') => {
                self.eat('\'');
                Ok(Value::String(self.literal_string()?))
            }
            Some('[') => {
                self.eat('[');
                let mut values = Vec::new();
                loop {
                    self.skip_space();
                    if self.eat(']') {
                        return Ok(Value::Array(values));
                    }
                    values.push(self.value()?);
                    self.skip_space();
                    if self.eat(']') {
                        return Ok(Value::Array(values));
                    }
                    if !self.eat(',') {
                        return Err(
                            "expected , or ] in the array (arrays must fit on one line)".to_owned()
                        );
                    }
                }
            }
            Some('{') => Err("inline tables are not supported; use a [table]".to_owned()),
            _ => {
                let end = self
                    .rest
                    .find([' ', '\t', ',', ']', '#'])
                    .unwrap_or(self.rest.len());
                let (word, rest) = self.rest.split_at(end);
                self.rest = rest;
                scalar(word)
            }
        }
    }

    /// The rest of a `"..."` string whose opening quote is eaten.
    fn basic_string(&mut self) -> Result<String, String> {
        let mut text = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[at + 1..];
                    return Ok(text);
                }
                '\\' => {
                    let escaped = match chars.next() {
                        Some((_, 'n')) => '\n',
                        Some((_, 't')) => '\t',
                        Some((_, 'r')) => '\r',
                        Some((_, 'b')) => '\u{8}',
                        Some((_, 'f')) => '\u{c}',
                        Some((_, '"')) => '"',
                        Some((_, '\\')) => '\\',
                        Some((_, u @ ('u' | 'U'))) => {
                            let digits = if u == 'u' { 4 } else { 8 };
                            let hex: String = chars.by_ref().take(digits).map(|(_, c)| c).collect();
                            u32::from_str_radix(&hex, 16)
                                .ok()
                                .filter(|_| hex.len() == digits)
                                .and_then(char::from_u32)
                                .ok_or_else(|| format!("bad escape \\{u}{hex}"))?
                        }
                        Some((_, other)) => return Err(format!("bad escape \\{other}")),
                        None => break,
                    };
                    text.push(escaped);
                }
                c => text.push(c),
            }
        }
        Err("unterminated string".to_owned())
    }

    /// The rest of a `'...'` string whose opening quote is eaten: no escapes.
    fn literal_string(&mut self) -> Result<String, String> {
        match self.rest.split_once('\'') {
            Some((text, rest)) => {
                self.rest = rest;
                Ok(text.to_owned())
            }
            None => Err("unterminated string".to_owned()),
        }
    }
}

/// `true`, `false`, or an integer (`_` between digits allowed).
fn scalar(word: &str) -> Result<Value, String> {
    match word {
        "true" => return Ok(Value::Boolean(true)),
        "false" => return Ok(Value::Boolean(false)),
        "" => return Err("expected a value".to_owned()),
        _ => {}
    }
    let digits = word.strip_prefix(['+', '-']).unwrap_or(word);
    let well_formed = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
    if well_formed {
        if let Ok(number) = word.replace('_', "").parse::<i64>() {
            return Ok(Value::Integer(number));
        }
    }
    Err(format!(
        "{word:?} is not a value this file may hold (a \"string\", an integer, true or false)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|key| (*key).to_owned()).collect()
    }

    #[test]
    fn profiles_as_people_write_them() {
        let document = parse(
            "# where my clusters are\n\
             current_profile = \"local\"\n\
             \n\
             [profiles.local]\n\
             bootstrap = \"127.0.0.1:9092\"   # the dev cluster\n\
             \n\
             [profiles.\"prod eu\"]\n\
             bootstrap = ['10.0.0.1:9092', \"10.0.0.2:9092\"]\n\
             \"client.id\" = 'ops'\n\
             request.timeout.ms = 5_000\n\
             flag = true\n",
        )
        .expect("parses");
        assert_eq!(
            document.tables,
            vec![path(&["profiles", "local"]), path(&["profiles", "prod eu"])]
        );
        assert_eq!(
            document.entries,
            vec![
                (
                    path(&["current_profile"]),
                    Value::String("local".to_owned())
                ),
                (
                    path(&["profiles", "local", "bootstrap"]),
                    Value::String("127.0.0.1:9092".to_owned())
                ),
                (
                    path(&["profiles", "prod eu", "bootstrap"]),
                    Value::Array(vec![
                        Value::String("10.0.0.1:9092".to_owned()),
                        Value::String("10.0.0.2:9092".to_owned())
                    ])
                ),
                (
                    path(&["profiles", "prod eu", "client.id"]),
                    Value::String("ops".to_owned())
                ),
                (
                    path(&["profiles", "prod eu", "request", "timeout", "ms"]),
                    Value::Integer(5000)
                ),
                (path(&["profiles", "prod eu", "flag"]), Value::Boolean(true)),
            ]
        );
        assert_eq!(
            document.entries[2].1.to_property(),
            "10.0.0.1:9092,10.0.0.2:9092"
        );
    }

    #[test]
    fn escapes_in_basic_strings() {
        let document = parse(r#"a = "q\"b\\s\u00e9\tx#y" # comment"#).expect("parses");
        assert_eq!(
            document.entries[0].1,
            Value::String("q\"b\\s\u{e9}\tx#y".to_owned())
        );
    }

    #[test]
    fn what_it_does_not_read_is_an_error_naming_the_line() {
        for (text, line) in [
            ("a = \"unterminated", 1),
            ("\n[[profiles]]", 2),
            ("a = {b = 1}", 1),
            ("a = 1.5", 1),
            ("a = 1979-05-27", 1),
            ("a = \"\"\"x\"\"\"", 1),
            ("a = 1 b", 1),
            ("a", 1),
            ("a = 1\na = 2", 2),
            ("[t]\n[t]", 2),
            ("[t", 1),
            ("= 1", 1),
            ("a = [1, 2", 1),
            ("a = \"\\x\"", 1),
        ] {
            let error = parse(text).expect_err(text);
            assert!(
                error.starts_with(&format!("line {line}: ")),
                "{text:?}: {error}"
            );
        }
    }
}
