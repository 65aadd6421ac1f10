//! Points in time as the tools take them, to milliseconds since the Unix epoch: RFC 3339
//! date-times (`--to-datetime`), and for `consume -o @T` and `produce`'s `%T` also epoch
//! milliseconds and durations before now (`-1h`). No calendar dependency: proleptic Gregorian
//! days from Howard Hinnant's `days_from_civil`.

/// `2026-01-01T00:00:00Z`, `2026-01-01T02:00:00.250+02:00`, `2026-01-01 00:00`, `2026-01-01`:
/// a date, optionally a time (seconds and fraction optional), optionally a zone (UTC if none).
pub(crate) fn parse_ms(text: &str) -> Result<i64, String> {
    let bad = || {
        format!("{text:?} is not a date-time like 2026-01-01T00:00:00Z (RFC 3339; UTC unless a zone is given)")
    };
    let date_len = text.len().min(10);
    if !text.is_char_boundary(date_len) {
        return Err(bad());
    }
    let (date, rest) = text.split_at(date_len);
    let fields: Vec<&str> = date.split('-').collect();
    let [year, month, day] = fields[..] else {
        return Err(bad());
    };
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return Err(bad());
    }
    let year: i64 = year.parse().map_err(|_| bad())?;
    let month: i64 = month.parse().map_err(|_| bad())?;
    let day: i64 = day.parse().map_err(|_| bad())?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad());
    }

    let mut millis_of_day = 0i64;
    let mut zone_ms = 0i64;
    if !rest.is_empty() {
        let rest = rest.strip_prefix(['T', 't', ' ']).ok_or_else(bad)?;
        let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
        let (time, zone) = rest.split_at(zone_at);
        let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
        let parts: Vec<&str> = clock.split(':').collect();
        let number = |part: &str, max: i64| -> Result<i64, String> {
            let value: i64 = part.parse().map_err(|_| bad())?;
            if part.len() != 2 || value > max {
                return Err(bad());
            }
            Ok(value)
        };
        let (hours, minutes, seconds) = match parts[..] {
            [h, m] => (number(h, 23)?, number(m, 59)?, 0),
            [h, m, s] => (number(h, 23)?, number(m, 59)?, number(s, 60)?),
            _ => return Err(bad()),
        };
        if !fraction.chars().all(|c| c.is_ascii_digit())
            || (clock.len() < time.len() && fraction.is_empty())
        {
            return Err(bad());
        }
        let millis: i64 = format!("{fraction:0<3}")[..3].parse().map_err(|_| bad())?;
        millis_of_day = ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis;
        match zone {
            "" | "Z" | "z" => {}
            _ => {
                let (sign, offset) = zone.split_at(1);
                let (h, m) = offset.split_once(':').ok_or_else(bad)?;
                let offset_ms = (number(h, 23)? * 60 + number(m, 59)?) * 60_000;
                zone_ms = if sign == "+" { offset_ms } else { -offset_ms };
            }
        }
    }
    Ok(days_from_civil(year, month, day) * 86_400_000 + millis_of_day - zone_ms)
}

/// Milliseconds since the epoch now; 0 on a clock set before 1970.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// One syntax for a time wherever a tool takes one: epoch milliseconds (`1767225600000`), an
/// RFC 3339 date-time as [`parse_ms`] takes it (`2026-01-01T00:00:00Z`), or a duration before
/// `now_ms` (`-1h`, `-90s`, `-1h30m`, `-2d`, `-500ms`).
pub(crate) fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| format!("{text:?} is too large for milliseconds since the epoch"));
    }
    if let Some(ago) = text.strip_prefix('-') {
        return parse_duration_ms(ago)
            .map(|ms| now_ms.saturating_sub(ms))
            .ok_or_else(|| {
                format!("{text:?} is not a duration before now like -1h, -30m, -90s, -2d or -500ms")
            });
    }
    parse_ms(text).map_err(|_| {
        format!(
            "{text:?} is not a time: epoch milliseconds (1767225600000), RFC 3339 \
             (2026-01-01T00:00:00Z) or a duration before now (-1h)"
        )
    })
}

/// `1h30m`, `90s`, `2d`, `500ms`: one or more numbers, each with a unit (ms, s, m, h, d).
fn parse_duration_ms(text: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let number: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(number.checked_mul(unit_ms)?)?;
    }
    Some(total)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_in_its_common_shapes() {
        assert_eq!(parse_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_ms("2026-01-01T00:00:00Z"), Ok(1_767_225_600_000));
        assert_eq!(parse_ms("2026-01-01"), Ok(1_767_225_600_000));
        assert_eq!(parse_ms("2026-01-01 00:00"), Ok(1_767_225_600_000));
        assert_eq!(parse_ms("2026-01-01T02:00:00+02:00"), Ok(1_767_225_600_000));
        assert_eq!(parse_ms("2025-12-31T19:00:00-05:00"), Ok(1_767_225_600_000));
        assert_eq!(parse_ms("2026-01-01T00:00:00.25Z"), Ok(1_767_225_600_250));
        assert_eq!(parse_ms("2024-02-29T12:00:00Z"), Ok(1_709_208_000_000));
        assert_eq!(parse_ms("1969-12-31T23:59:59Z"), Ok(-1000));
    }

    #[test]
    fn times_are_epoch_ms_rfc3339_or_before_now() {
        let now = 1_767_225_600_000;
        assert_eq!(parse_time("1700000000000", now), Ok(1_700_000_000_000));
        assert_eq!(parse_time("0", now), Ok(0));
        assert_eq!(parse_time("2026-01-01T00:00:00Z", now), Ok(now));
        assert_eq!(parse_time("-1h", now), Ok(now - 3_600_000));
        assert_eq!(parse_time("-1h30m", now), Ok(now - 5_400_000));
        assert_eq!(parse_time("-2d", now), Ok(now - 172_800_000));
        assert_eq!(parse_time("-500ms", now), Ok(now - 500));
        for bad in [
            "",
            "-",
            "-1",
            "-h",
            "-1y",
            "soon",
            "-1h-",
            "99999999999999999999",
        ] {
            assert!(parse_time(bad, now).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn nonsense_is_refused() {
        for text in [
            "",
            "yesterday",
            "2026-13-01",
            "2025-02-29",
            "2026-01-01T25:00:00Z",
            "2026-01-01T00:00:00+0200",
            "2026-01-01X00:00",
            "2026-1-1",
            "2026-01-01T00:00:00.Z",
            "2026-01-0é",
        ] {
            assert!(parse_ms(text).is_err(), "{text:?} parsed");
        }
    }
}
