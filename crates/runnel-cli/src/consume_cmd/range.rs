//! `runnel consume -o`: where reading starts and, optionally, where it ends, in kcat's and
//! rpk's words at once.
//!
//! A start: `beginning` (`earliest`, `start`, `oldest`), `end` (`latest`, `newest`), an offset
//! `N`, `-N` (N records before the end of each partition, kcat's `-o -N`), `+N` (N after the
//! log start), or `@TIME` (the first record at or after it). An end, after a colon as rpk
//! writes ranges: `end` (the end each partition had when the command started, as `-e`), an
//! offset, or `@TIME`; ends are exclusive, so `-o 10:20` prints offsets 10 to 19 and
//! `-o @T1:@T2` the records stamped from T1 up to, not including, T2 (rpk's `@T1:T2` too).
//! Either side may be left out: `-o :end`, `-o 10:`. kcat's `-o s@MS` and `-o e@MS` say a
//! start or an end time alone, and `-o` may be given twice (`-o s@T1 -o e@T2`).
//!
//! TIME is one syntax throughout (see [`crate::datetime::parse_time`]): epoch milliseconds, RFC
//! 3339, or a duration before now such as `-1h`. RFC 3339 has colons of its own; a range is
//! split at the one colon that leaves a valid start and end.

use crate::datetime::parse_time;

/// Where each partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    Earliest,
    Latest,
    Offset(i64),
    /// This many records before the end (the last stable offset under read_committed).
    BeforeEnd(i64),
    /// This many records after the log start offset.
    AfterBeginning(i64),
    /// The first record at or after this time (ms).
    Time(i64),
}

/// Where each partition stops; the record there is not printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The end as of the start: `-e`, `:end`.
    Now,
    Offset(i64),
    /// The first record at or after this time (ms).
    Time(i64),
}

/// One `-o`: a start, an end, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Range {
    pub(crate) start: Option<Start>,
    pub(crate) end: Option<End>,
}

const VOCABULARY: &str = "START, START:END or :END, where START is beginning, end, an offset, \
     -N (N before the end), +N (N after the start) or @TIME, and END is end, an offset or @TIME; \
     TIME is epoch ms, RFC 3339 or a duration before now like -1h";

fn parse_start(text: &str, now_ms: i64) -> Result<Start, String> {
    let count = |digits: &str| -> Result<i64, String> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{text:?} is not a start ({VOCABULARY})"));
        }
        digits
            .parse()
            .map_err(|_| format!("{text:?} is too large for an offset"))
    };
    Ok(match text {
        "beginning" | "earliest" | "start" | "oldest" => Start::Earliest,
        "end" | "latest" | "newest" => Start::Latest,
        _ => {
            if let Some(time) = text.strip_prefix('@') {
                Start::Time(parse_time(time, now_ms)?)
            } else if let Some(before_end) = text.strip_prefix('-') {
                Start::BeforeEnd(count(before_end)?)
            } else if let Some(after_start) = text.strip_prefix('+') {
                Start::AfterBeginning(count(after_start)?)
            } else {
                Start::Offset(count(text)?)
            }
        }
    })
}

/// An end; after a time start (`@T1:T2`), a bare value is a time as rpk reads it.
fn parse_end(text: &str, after_time: bool, now_ms: i64) -> Result<End, String> {
    match text {
        "end" | "latest" | "newest" => return Ok(End::Now),
        _ => {}
    }
    if let Some(time) = text.strip_prefix('@') {
        return Ok(End::Time(parse_time(time, now_ms)?));
    }
    if after_time {
        return Ok(End::Time(parse_time(text, now_ms)?));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(End::Offset)
            .map_err(|_| format!("{text:?} is too large for an offset"));
    }
    Err(format!(
        "{text:?} is not an end: end, an offset or @TIME (epoch ms, RFC 3339, or -1h)"
    ))
}

/// `--end-offset`: an offset or `end`.
pub(crate) fn parse_end_offset(text: &str) -> Result<End, String> {
    parse_end(text, false, 0)
}

/// `--end-time`: a time, with or without the `@` of `-o`.
pub(crate) fn parse_end_time(text: &str) -> Result<End, String> {
    let now_ms = crate::datetime::now_ms();
    parse_time(text.strip_prefix('@').unwrap_or(text), now_ms).map(End::Time)
}

/// `-o`, with relative times counted from now.
pub(crate) fn parse_range_arg(text: &str) -> Result<Range, String> {
    parse_range(text, crate::datetime::now_ms())
}

pub(crate) fn parse_range(text: &str, now_ms: i64) -> Result<Range, String> {
    if let Some(time) = text.strip_prefix("s@") {
        let start = Some(Start::Time(parse_time(time, now_ms)?));
        return Ok(Range { start, end: None });
    }
    if let Some(time) = text.strip_prefix("e@") {
        let end = Some(End::Time(parse_time(time, now_ms)?));
        return Ok(Range { start: None, end });
    }
    if let Ok(start) = parse_start(text, now_ms) {
        return Ok(Range {
            start: Some(start),
            end: None,
        });
    }
    let mut splits = Vec::new();
    let mut last_error = None;
    for (at, _) in text.match_indices(':') {
        let (left, right) = (&text[..at], &text[at + 1..]);
        let start = match left {
            "" => None,
            _ => match parse_start(left, now_ms) {
                Ok(start) => Some(start),
                Err(error) => {
                    last_error = Some(error);
                    continue;
                }
            },
        };
        let after_time = matches!(start, Some(Start::Time(_)));
        let end = match right {
            "" => None,
            _ => match parse_end(right, after_time, now_ms) {
                Ok(end) => Some(end),
                Err(error) => {
                    last_error = Some(error);
                    continue;
                }
            },
        };
        if start.is_some() || end.is_some() {
            splits.push(Range { start, end });
        }
    }
    let range = match splits[..] {
        [range] => range,
        [] => {
            return Err(match last_error {
                // One colon: say which side is wrong.
                Some(error) if text.matches(':').count() == 1 => error,
                _ => format!("{text:?} is not {VOCABULARY}"),
            });
        }
        _ => {
            return Err(format!(
                "{text:?} splits into a start and an end more than one way; write times as @T1:@T2"
            ))
        }
    };
    match (range.start, range.end) {
        (Some(Start::Offset(start)), Some(End::Offset(end))) if end < start => Err(format!(
            "{text:?} ends (offset {end}) before it starts (offset {start})"
        )),
        (Some(Start::Time(start)), Some(End::Time(end))) if end < start => {
            Err(format!("{text:?} ends before it starts"))
        }
        _ => Ok(range),
    }
}

impl Range {
    /// Two `-o`s (kcat's `-o s@T1 -o e@T2`) as one; each side may be said once.
    pub(crate) fn merge(self, other: Range) -> Result<Range, String> {
        let both = |what: &str| format!("two {what}s given (-o says a start, an end, or both)");
        Ok(Range {
            start: match (self.start, other.start) {
                (Some(_), Some(_)) => return Err(both("start")),
                (start, other) => start.or(other),
            },
            end: match (self.end, other.end) {
                (Some(_), Some(_)) => return Err(both("end")),
                (end, other) => end.or(other),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn range(text: &str) -> Result<Range, String> {
        parse_range(text, NOW)
    }

    fn start(start: Start) -> Result<Range, String> {
        Ok(Range {
            start: Some(start),
            end: None,
        })
    }

    fn both(start: Option<Start>, end: Option<End>) -> Result<Range, String> {
        Ok(Range { start, end })
    }

    #[test]
    fn starts_parse_like_kcat_and_rpk() {
        for earliest in ["beginning", "earliest", "start", "oldest"] {
            assert_eq!(range(earliest), start(Start::Earliest));
        }
        for latest in ["end", "latest", "newest"] {
            assert_eq!(range(latest), start(Start::Latest));
        }
        assert_eq!(range("42"), start(Start::Offset(42)));
        assert_eq!(range("-5"), start(Start::BeforeEnd(5)));
        assert_eq!(range("+5"), start(Start::AfterBeginning(5)));
        assert_eq!(
            range("@1700000000000"),
            start(Start::Time(1_700_000_000_000))
        );
        assert_eq!(range("@2026-01-01T00:00:00Z"), start(Start::Time(NOW)));
        assert_eq!(range("@-1h"), start(Start::Time(NOW - 3_600_000)));
        assert_eq!(range("s@1000"), start(Start::Time(1000)));
        assert_eq!(range("e@1000"), both(None, Some(End::Time(1000))));
    }

    #[test]
    fn ranges_split_at_the_colon_that_parses() {
        assert_eq!(
            range("10:20"),
            both(Some(Start::Offset(10)), Some(End::Offset(20)))
        );
        assert_eq!(range(":end"), both(None, Some(End::Now)));
        assert_eq!(range("10:"), start(Start::Offset(10)));
        assert_eq!(
            range("-3:end"),
            both(Some(Start::BeforeEnd(3)), Some(End::Now))
        );
        assert_eq!(
            range("beginning:@1000"),
            both(Some(Start::Earliest), Some(End::Time(1000)))
        );
        assert_eq!(
            range("@1000:2000"),
            both(Some(Start::Time(1000)), Some(End::Time(2000))),
            "rpk's @T1:T2: both are times"
        );
        assert_eq!(
            range("@2025-12-31T23:00:00Z:@2026-01-01T00:00:00Z"),
            both(Some(Start::Time(NOW - 3_600_000)), Some(End::Time(NOW)))
        );
        assert_eq!(
            range("@2025-12-31T23:00:00Z:2026-01-01T00:00:00.5Z"),
            both(
                Some(Start::Time(NOW - 3_600_000)),
                Some(End::Time(NOW + 500))
            )
        );
        assert_eq!(
            range("@-2h:@-1h"),
            both(
                Some(Start::Time(NOW - 7_200_000)),
                Some(End::Time(NOW - 3_600_000))
            )
        );
        assert_eq!(
            range("5:5"),
            both(Some(Start::Offset(5)), Some(End::Offset(5)))
        );
    }

    #[test]
    fn nonsense_and_backwards_ranges_are_refused() {
        for bad in [
            "",
            ":",
            "soon",
            "-",
            "+",
            "@",
            "@x",
            "-x",
            "1.5",
            "10:x",
            "x:10",
            "20:10",
            "@2000:@1000",
            "s@",
            "e@soon",
            "::",
            "1:2:3",
        ] {
            assert!(range(bad).is_err(), "{bad:?} parsed as {:?}", range(bad));
        }
        assert!(range("10:x").unwrap_err().contains("\"x\" is not an end"));
    }

    #[test]
    fn two_offsets_merge_when_they_say_different_sides() {
        let first = Range {
            start: Some(Start::Time(1)),
            end: None,
        };
        let second = Range {
            start: None,
            end: Some(End::Time(2)),
        };
        assert_eq!(
            first.merge(second),
            both(Some(Start::Time(1)), Some(End::Time(2)))
        );
        assert!(first.merge(first).is_err());
        assert!(second.merge(second).is_err());
    }

    #[test]
    fn end_flags() {
        assert_eq!(parse_end_offset("20"), Ok(End::Offset(20)));
        assert_eq!(parse_end_offset("end"), Ok(End::Now));
        assert!(parse_end_offset("-1").is_err());
        assert_eq!(parse_end_time("@1000"), Ok(End::Time(1000)));
        assert_eq!(parse_end_time("1970-01-01T00:00:01Z"), Ok(End::Time(1000)));
    }
}
