//! The custom GraphQL scalars every service shares, and the calendar arithmetic
//! behind them.
//!
//! - `DateTime`: an instant, stored as milliseconds since the Unix epoch and written
//!   as RFC 3339 UTC with milliseconds (`2023-04-05T12:34:56.789Z`). Input may carry
//!   any offset and 0–9 fraction digits; it is normalised to UTC and truncated to the
//!   millisecond.
//! - `Date`: a calendar day, stored as days since the epoch, written `2023-04-05`.
//! - `Decimal`: money, stored as integer cents, written as a string with exactly two
//!   decimals (`"1234567.50"`), the way graphene's `Decimal` serialises.
//!
//! This module owns parsing and formatting only; it knows nothing of services.
//! Calendar code is hand-written (Howard Hinnant's civil-day algorithms) because the
//! services need three tiny conversions on hot paths (seeding millions of rows),
//! not a time-zone library.

use std::fmt;
use std::str::FromStr;

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

/// Milliseconds in one day.
pub const MS_PER_DAY: i64 = 86_400_000;

/// Why a scalar's text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScalarError {
    #[error("{given:?} is not an RFC 3339 timestamp like 2023-04-05T12:34:56.789Z")]
    DateTime { given: String },
    #[error("{given:?} is not a date like 2023-04-05")]
    Date { given: String },
    #[error("{given:?} is not a decimal amount like \"1234.50\" (at most two decimals)")]
    Decimal { given: String },
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = (if z >= 0 { z } else { z - 146_096 }) / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both casts are of values the algorithm bounds to 1..=31 and 1..=12.
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (if month <= 2 { y + 1 } else { y }, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Reads `n` ASCII digits at `at`.
fn digits(bytes: &[u8], at: usize, n: usize) -> Option<i64> {
    let slice = bytes.get(at..at + n)?;
    slice.iter().try_fold(0i64, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

/// Parses `YYYY-MM-DD` at the start of `bytes` into days since the epoch.
fn parse_ymd(bytes: &[u8]) -> Option<i64> {
    let year = digits(bytes, 0, 4)?;
    let month = u32::try_from(digits(bytes, 5, 2)?).ok()?;
    let day = u32::try_from(digits(bytes, 8, 2)?).ok()?;
    if bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return None;
    }
    if year < 1 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

fn parse_datetime(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let days = parse_ymd(b)?;
    if !matches!(b.get(10), Some(b'T' | b't')) || b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let (hour, minute, second) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let count = at - start;
        if count == 0 || count > 9 {
            return None;
        }
        for k in 0..3 {
            millis = millis * 10 + if k < count { digits(b, start + k, 1)? } else { 0 };
        }
    }
    let offset_minutes = match b.get(at) {
        Some(b'Z' | b'z') => {
            at += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            let (oh, om) = (digits(b, at + 1, 2)?, digits(b, at + 4, 2)?);
            if b.get(at + 3) != Some(&b':') || oh > 23 || om > 59 {
                return None;
            }
            at += 6;
            if *sign == b'+' {
                oh * 60 + om
            } else {
                -(oh * 60 + om)
            }
        }
        _ => return None,
    };
    if at != b.len() {
        return None;
    }
    Some(days * MS_PER_DAY + (hour * 3600 + minute * 60 + second) * 1000 + millis - offset_minutes * 60_000)
}

/// An instant with millisecond precision (milliseconds since the Unix epoch, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DateTime(pub i64);

impl DateTime {
    /// The wall clock, now.
    pub fn now() -> Self {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    /// Midnight UTC of `y-m-d`.
    pub fn ymd(year: i64, month: u32, day: u32) -> Self {
        Self(days_from_civil(year, month, day) * MS_PER_DAY)
    }

    /// The calendar day (UTC) this instant falls on.
    pub fn date(self) -> Date {
        Date(self.0.div_euclid(MS_PER_DAY))
    }

    pub fn millis(self) -> i64 {
        self.0
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(MS_PER_DAY);
        let ms = self.0.rem_euclid(MS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss, mmm) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        write!(f, "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{mmm:03}Z")
    }
}

impl FromStr for DateTime {
    type Err = ScalarError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_datetime(s)
            .map(Self)
            .ok_or_else(|| ScalarError::DateTime { given: s.to_string() })
    }
}

impl serde::Serialize for DateTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DateTime {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `DateTime`: RFC 3339 in UTC with milliseconds, e.g. `2023-04-05T12:34:56.789Z`.
#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => s.parse().map_err(InputValueError::custom),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    // Only the kind is checked at validation, so that a malformed literal is
    // reported by `parse`, whose message shows the expected format.
    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::String(_))
    }

    fn to_value(&self) -> Value {
        Value::String(self.to_string())
    }
}

/// A calendar day (days since 1970-01-01).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Date(pub i64);

impl Date {
    pub fn ymd(year: i64, month: u32, day: u32) -> Self {
        Self(days_from_civil(year, month, day))
    }

    pub fn year(self) -> i64 {
        civil_from_days(self.0).0
    }

    /// Midnight UTC of this day.
    pub fn start(self) -> DateTime {
        DateTime(self.0 * MS_PER_DAY)
    }

    pub fn plus_days(self, days: i64) -> Self {
        Self(self.0 + days)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(self.0);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl FromStr for Date {
    type Err = ScalarError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 10 {
            return Err(ScalarError::Date { given: s.to_string() });
        }
        parse_ymd(s.as_bytes())
            .map(Self)
            .ok_or_else(|| ScalarError::Date { given: s.to_string() })
    }
}

/// `Date`: a calendar day, `2023-04-05`.
#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => s.parse().map_err(InputValueError::custom),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::String(_))
    }

    fn to_value(&self) -> Value {
        Value::String(self.to_string())
    }
}

/// Money in integer cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Decimal(pub i64);

impl Decimal {
    pub fn cents(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl FromStr for Decimal {
    type Err = ScalarError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ScalarError::Decimal { given: s.to_string() };
        let (negative, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
        // 15 whole digits keep every value far inside i64 cents.
        let plain = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || whole.len() > 15 || !plain(whole) || frac.len() > 2 || !plain(frac) {
            return Err(bad());
        }
        if body.contains('.') && frac.is_empty() {
            return Err(bad());
        }
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let frac_cents = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().map_err(|_| bad())? * 10,
            _ => frac.parse::<i64>().map_err(|_| bad())?,
        };
        let cents = whole * 100 + frac_cents;
        Ok(Self(if negative { -cents } else { cents }))
    }
}

fn decimal_from_value(value: &Value) -> Option<Decimal> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.checked_mul(100).map(Decimal)
            } else {
                // A float literal is accepted only when it is exactly representable in cents.
                let cents = n.as_f64()? * 100.0;
                let rounded = cents.round();
                ((cents - rounded).abs() < 1e-6 && rounded.abs() < 1e17).then_some(Decimal(rounded as i64))
            }
        }
        _ => None,
    }
}

/// `Decimal`: money as a string with two decimals, `"1234567.50"`.
#[Scalar(name = "Decimal")]
impl ScalarType for Decimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        decimal_from_value(&value).ok_or_else(|| {
            InputValueError::custom(ScalarError::Decimal {
                given: value.to_string(),
            })
        })
    }

    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::String(_) | Value::Number(_))
    }

    fn to_value(&self) -> Value {
        Value::String(self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_round_trips_and_normalises_offsets() {
        let t: DateTime = "2023-04-05T12:34:56.789Z".parse().expect("valid");
        assert_eq!(t.to_string(), "2023-04-05T12:34:56.789Z");
        let shifted: DateTime = "2023-04-05T21:34:56.789123+09:00".parse().expect("valid");
        assert_eq!(shifted, t);
        let whole: DateTime = "2019-01-01T00:00:00Z".parse().expect("valid");
        assert_eq!(whole, DateTime::ymd(2019, 1, 1));
        assert_eq!(whole.to_string(), "2019-01-01T00:00:00.000Z");
        let before_epoch: DateTime = "1969-12-31T23:59:59.999Z".parse().expect("valid");
        assert_eq!(before_epoch.0, -1);
        assert_eq!(before_epoch.to_string(), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn datetime_rejects_malformed_text() {
        for bad in [
            "",
            "2023-04-05",
            "2023-04-05 12:34:56Z",
            "2023-02-29T00:00:00Z",
            "2023-04-05T24:00:00Z",
            "2023-04-05T12:34:56",
            "2023-04-05T12:34:56.Z",
            "2023-04-05T12:34:56.789Zjunk",
            "2023-13-01T00:00:00Z",
            "yesterday",
        ] {
            assert!(bad.parse::<DateTime>().is_err(), "{bad:?} should be rejected");
        }
        assert!("2024-02-29T00:00:00Z".parse::<DateTime>().is_ok(), "leap day");
    }

    #[test]
    fn civil_conversions_agree_over_a_wide_range() {
        for days in -800_000..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn dates_and_decimals() {
        let d: Date = "2023-04-05".parse().expect("valid");
        assert_eq!(d.to_string(), "2023-04-05");
        assert!("2023-4-5".parse::<Date>().is_err());
        assert_eq!(
            "1234567.5".parse::<Decimal>().expect("valid").to_string(),
            "1234567.50"
        );
        assert_eq!("-0.05".parse::<Decimal>().expect("valid").0, -5);
        assert_eq!("12".parse::<Decimal>().expect("valid").to_string(), "12.00");
        for bad in ["", "1.234", "1.", ".5", "abc", "1e5", "--1"] {
            assert!(bad.parse::<Decimal>().is_err(), "{bad:?} should be rejected");
        }
    }
}
