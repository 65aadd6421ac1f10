//! Formatting of epoch milliseconds with Java `SimpleDateFormat` patterns, which Kafka's
//! transforms take in their configs (`TimestampRouter`'s `timestamp.format`) and use to
//! render dates (`Cast` of a Date, Time or Timestamp to a string).
//!
//! Always in UTC and with the English names of a US locale, whatever the machine's: Kafka's
//! `TimestampRouter` fixes UTC itself, and a worker's output should not depend on where it
//! runs. Every pattern letter `SimpleDateFormat` knows is supported (`G y Y M L w W D d F E
//! u a H k K h m s S z Z X`), as are quoted literals (`'T'`, `''` for a quote). The calendar
//! is the proleptic Gregorian one, also before 1582 where Java switches to the Julian one;
//! week-based fields (`Y`, `w`, `W`) follow the US rule: weeks start on Sunday and week 1
//! is the one holding January 1st.

const MILLIS_PER_DAY: i64 = 86_400_000;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Sunday first, as the US calendar counts them.
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// A compiled `SimpleDateFormat` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DateFormat {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Text copied as is.
    Literal(String),
    /// A pattern letter repeated `count` times.
    Field(char, usize),
}

impl DateFormat {
    /// Compiles `pattern`, or says why Java would refuse it.
    pub(crate) fn parse(pattern: &str) -> Result<DateFormat, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                // `''` is a quote, in quoted text or not; a lone quote opens quoted text,
                // which runs to the next lone quote.
                if chars.get(i + 1) == Some(&'\'') {
                    literal.push('\'');
                    i += 2;
                    continue;
                }
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("Unterminated quote".to_owned()),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            literal.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&other) => {
                            literal.push(other);
                            i += 1;
                        }
                    }
                }
                continue;
            }
            if !c.is_ascii_alphabetic() {
                literal.push(c);
                i += 1;
                continue;
            }
            if !"GyYMLwWDdFEuaHkKhmsSzZX".contains(c) {
                return Err(format!("Illegal pattern character '{c}'"));
            }
            let mut count = 1;
            while chars.get(i + count) == Some(&c) {
                count += 1;
            }
            if c == 'X' && count > 3 {
                return Err(format!("invalid ISO 8601 format: length={count}"));
            }
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal)));
            }
            tokens.push(Token::Field(c, count));
            i += count;
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        Ok(DateFormat { tokens })
    }

    /// `millis` since the epoch, formatted in UTC.
    pub(crate) fn format(&self, millis: i64) -> String {
        let t = Civil::of(millis);
        let mut out = String::new();
        for token in &self.tokens {
            match token {
                Token::Literal(text) => out.push_str(text),
                Token::Field(letter, count) => t.push_field(&mut out, *letter, *count),
            }
        }
        out
    }
}

/// How Kafka's `Values.dateFormatFor` renders a date, time or timestamp as a string (what
/// `Cast` to `string` gives for those logical types): a time when less than a day from the
/// epoch, a date when a whole number of days, else a full timestamp, all in UTC.
pub(crate) fn connect_date_string(millis: i64) -> String {
    let pattern = if millis < MILLIS_PER_DAY {
        "HH:mm:ss.SSS'Z'"
    } else if millis % MILLIS_PER_DAY == 0 {
        "yyyy-MM-dd"
    } else {
        "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
    };
    match DateFormat::parse(pattern) {
        Ok(format) => format.format(millis),
        // The patterns above are valid; this arm only keeps the function total.
        Err(_) => millis.to_string(),
    }
}

/// The calendar fields of an instant, in UTC.
struct Civil {
    days: i64,
    year: i64,
    month: i64,
    day: i64,
    millis_of_day: i64,
    /// 0 for Sunday.
    weekday: i64,
}

impl Civil {
    fn of(millis: i64) -> Civil {
        let days = millis.div_euclid(MILLIS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        Civil {
            days,
            year,
            month,
            day,
            millis_of_day: millis.rem_euclid(MILLIS_PER_DAY),
            // The epoch was a Thursday.
            weekday: (days + 4).rem_euclid(7),
        }
    }

    fn push_field(&self, out: &mut String, letter: char, count: usize) {
        let hour = self.millis_of_day / 3_600_000;
        let number = match letter {
            'G' => {
                out.push_str(if self.year <= 0 { "BC" } else { "AD" });
                return;
            }
            'y' | 'Y' => {
                let year = if letter == 'y' {
                    self.year
                } else {
                    self.week_year()
                };
                let of_era = if year <= 0 { 1 - year } else { year };
                if count == 2 {
                    pad(out, of_era % 100, 2);
                } else {
                    pad(out, of_era, count);
                }
                return;
            }
            'M' | 'L' => {
                let name = usize::try_from(self.month - 1)
                    .ok()
                    .and_then(|i| MONTHS.get(i))
                    .copied()
                    .unwrap_or_default();
                match count {
                    1 | 2 => self.month,
                    3 => {
                        out.extend(name.chars().take(3));
                        return;
                    }
                    _ => {
                        out.push_str(name);
                        return;
                    }
                }
            }
            'E' => {
                let name = usize::try_from(self.weekday)
                    .ok()
                    .and_then(|i| WEEKDAYS.get(i))
                    .copied()
                    .unwrap_or_default();
                if count >= 4 {
                    out.push_str(name);
                } else {
                    out.extend(name.chars().take(3));
                }
                return;
            }
            'a' => {
                out.push_str(if hour < 12 { "AM" } else { "PM" });
                return;
            }
            'z' => {
                out.push_str(if count >= 4 {
                    "Coordinated Universal Time"
                } else {
                    "UTC"
                });
                return;
            }
            'Z' => {
                out.push_str("+0000");
                return;
            }
            'X' => {
                out.push('Z');
                return;
            }
            'd' => self.day,
            'D' => self.days - days_from_civil(self.year, 1, 1) + 1,
            'F' => (self.day - 1) / 7 + 1,
            'u' => {
                if self.weekday == 0 {
                    7
                } else {
                    self.weekday
                }
            }
            'w' => self.week_of_year(),
            'W' => {
                let first_weekday = (self.weekday - (self.day - 1)).rem_euclid(7);
                (self.day - 1 + first_weekday) / 7 + 1
            }
            'H' => hour,
            'k' => {
                if hour == 0 {
                    24
                } else {
                    hour
                }
            }
            'K' => hour % 12,
            'h' => {
                if hour % 12 == 0 {
                    12
                } else {
                    hour % 12
                }
            }
            'm' => self.millis_of_day / 60_000 % 60,
            's' => self.millis_of_day / 1000 % 60,
            'S' => self.millis_of_day % 1000,
            // `parse` admits no other letter.
            _ => return,
        };
        pad(out, number, count);
    }

    /// The year of the week holding this day: the year of that week's Saturday.
    fn week_year(&self) -> i64 {
        civil_from_days(self.days + (6 - self.weekday)).0
    }

    fn week_of_year(&self) -> i64 {
        if self.week_year() != self.year {
            // The last days of December in the week that holds January 1st.
            return 1;
        }
        let january_first = days_from_civil(self.year, 1, 1);
        let first_weekday = (january_first + 4).rem_euclid(7);
        (self.days - january_first + first_weekday) / 7 + 1
    }
}

/// Appends `n` with at least `width` digits, zero-padded as Java pads numbers.
fn pad(out: &mut String, n: i64, width: usize) {
    let digits = n.unsigned_abs().to_string();
    if n < 0 {
        out.push('-');
    }
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(&digits);
}

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01 (Howard Hinnant's
/// algorithm over 400-year eras).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(pattern: &str, millis: i64) -> String {
        DateFormat::parse(pattern).unwrap().format(millis)
    }

    // 2024-02-29T13:05:09.007Z, a Thursday.
    const LEAP_DAY: i64 = 1_709_211_909_007;

    #[test]
    fn common_patterns_format_in_utc() {
        assert_eq!(fmt("yyyyMMdd", LEAP_DAY), "20240229");
        assert_eq!(
            fmt("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'", LEAP_DAY),
            "2024-02-29T13:05:09.007Z"
        );
        assert_eq!(fmt("yy/M/d H:m:s.S", LEAP_DAY), "24/2/29 13:5:9.7");
        assert_eq!(fmt("EEE, d MMM yyyy", LEAP_DAY), "Thu, 29 Feb 2024");
        assert_eq!(fmt("EEEE MMMM", LEAP_DAY), "Thursday February");
        assert_eq!(fmt("hh 'o''clock' a", LEAP_DAY), "01 o'clock PM");
        assert_eq!(fmt("D u G z Z X", LEAP_DAY), "60 4 AD UTC +0000 Z");
        assert_eq!(fmt("''yyyy''", 0), "'1970'");
    }

    #[test]
    fn dates_before_the_epoch_and_week_fields() {
        assert_eq!(
            fmt("yyyy-MM-dd HH:mm:ss.SSS", -1),
            "1969-12-31 23:59:59.999"
        );
        // Sunday 2023-12-31 is in week 1 of week-year 2024 under the US rule.
        let sunday = days_from_civil(2023, 12, 31) * MILLIS_PER_DAY;
        assert_eq!(fmt("YYYY w", sunday), "2024 1");
        assert_eq!(fmt("yyyy w W F", sunday), "2023 1 6 5");
        assert_eq!(fmt("w", days_from_civil(2024, 1, 7) * MILLIS_PER_DAY), "2");
        for days in [-800_000, -1, 0, 1, 59, 365, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn bad_patterns_are_refused_as_java_refuses_them() {
        assert_eq!(
            DateFormat::parse("yyyy-bb").unwrap_err(),
            "Illegal pattern character 'b'"
        );
        assert_eq!(
            DateFormat::parse("'open").unwrap_err(),
            "Unterminated quote"
        );
        assert!(DateFormat::parse("XXXX").is_err());
    }

    #[test]
    fn connect_renders_dates_times_and_timestamps_apart() {
        assert_eq!(connect_date_string(3_600_000), "01:00:00.000Z");
        assert_eq!(connect_date_string(MILLIS_PER_DAY * 2), "1970-01-03");
        assert_eq!(connect_date_string(LEAP_DAY), "2024-02-29T13:05:09.007Z");
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        let format =
            DateFormat::parse("GGGG yyyy YYYY MMMM dd D w W F EEEE u a HH kk KK hh mm ss SSS")
                .unwrap();
        for millis in [i64::MIN, i64::MIN + 1, i64::MAX, 0] {
            assert!(!format.format(millis).is_empty());
        }
    }
}
