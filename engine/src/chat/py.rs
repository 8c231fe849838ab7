//! The Python helpers chat templates expect: `tojson` as transformers defines it (Python's
//! `json.dumps(x, ensure_ascii=False, indent=indent)`) and `strftime_now(fmt)`.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// `x | tojson` / `x | tojson(indent=4)`: Python's `json.dumps(x, ensure_ascii=False)` with its
/// default separators (`", "`, `": "`; `","` between lines when indented) and the keys in
/// insertion order. Unlike Jinja's own `tojson` it does not escape `<`, `>`, `&` and `'`:
/// transformers overrides it so, and the prompts must match byte for byte.
pub fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<String, Error> {
    let indent = match indent.or(kwargs.get::<Option<Value>>("indent")?) {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_i64() {
            Some(n) if (0..=64).contains(&n) => Some(n as usize),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: indent must be an integer in 0..=64, got {v}"),
                ))
            }
        },
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(&mut out, value, indent, 0)?;
    Ok(out)
}

fn newline(out: &mut String, indent: Option<usize>, level: usize) {
    if let Some(n) = indent {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', n * level));
    }
}

fn write_json(
    out: &mut String,
    v: &Value,
    indent: Option<usize>,
    level: usize,
) -> Result<(), Error> {
    // Python's item separator is "," when indenting (the newline follows), else ", ".
    let sep = if indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => match v.as_i64() {
            Some(i) if v.is_integer() => out.push_str(&i.to_string()),
            _ => out.push_str(&py_float(f64::try_from(v.clone())?)),
        },
        ValueKind::String => out.push_str(&json_string(v.as_str().unwrap_or_default())),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, indent, level + 1);
                write_json(out, item, indent, level + 1)?;
            }
            newline(out, indent, level);
            out.push(']');
        }
        ValueKind::Map => {
            let keys: Vec<Value> = v.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, indent, level + 1);
                // Python writes non-string keys as strings (ints, bools, None).
                let key = match k.kind() {
                    ValueKind::String => k.as_str().unwrap_or_default().to_string(),
                    ValueKind::None => "null".into(),
                    ValueKind::Bool => (if k.is_true() { "true" } else { "false" }).into(),
                    _ => k.to_string(),
                };
                out.push_str(&json_string(&key));
                out.push_str(": ");
                write_json(out, &v.get_item(k)?, indent, level + 1)?;
            }
            newline(out, indent, level);
            out.push('}');
        }
        kind => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: a value of type {kind} is not JSON serializable"),
            ))
        }
    }
    Ok(())
}

/// JSON string literal as Python writes it with `ensure_ascii=False`: `"`, `\` and control
/// characters escaped (the same set serde_json escapes, with the same lower-case `\u00XX`).
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Python's `repr(float)`: the shortest digits that round-trip, in exponent notation below
/// 1e-4 and from 1e16 on, always with a fraction or an exponent.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        // Rust writes "1e20" / "1.5e-7"; Python "1e+20" / "1.5e-07".
        let s = format!("{f:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match e.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', e),
        };
        return format!("{m}e{sign}{digits:0>2}");
    }
    let s = format!("{f}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// A moment in UTC, for `strftime_now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Date {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Date {
    /// Midnight of a calendar day.
    pub fn ymd(year: i64, month: u32, day: u32) -> Self {
        Self {
            year,
            month,
            day,
            hour: 0,
            minute: 0,
            second: 0,
        }
    }

    /// The UTC time `secs` seconds after 1970-01-01T00:00:00Z.
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Days to the proleptic Gregorian calendar (H. Hinnant's civil_from_days).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// Now, from the system clock (`Date.now()` in the browser).
    pub fn now() -> Self {
        #[cfg(target_arch = "wasm32")]
        let secs = (js_sys::Date::now() / 1000.0).floor() as i64;
        #[cfg(not(target_arch = "wasm32"))]
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Self::from_unix(secs)
    }

    fn is_leap(&self) -> bool {
        (self.year % 4 == 0 && self.year % 100 != 0) || self.year % 400 == 0
    }

    /// Day of the year, 1..=366.
    fn yday(&self) -> u32 {
        const BEFORE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let m = self.month.clamp(1, 12) as usize;
        BEFORE[m - 1] + self.day + u32::from(m > 2 && self.is_leap())
    }

    /// 0 = Monday .. 6 = Sunday (Zeller's congruence on the Gregorian calendar).
    fn weekday(&self) -> usize {
        let (y, m) = if self.month <= 2 {
            (self.year - 1, i64::from(self.month) + 12)
        } else {
            (self.year, i64::from(self.month))
        };
        let h = (i64::from(self.day) + 13 * (m + 1) / 5 + y + y.div_euclid(4) - y.div_euclid(100)
            + y.div_euclid(400))
        .rem_euclid(7);
        // h: 0 = Saturday.
        ((h + 5) % 7) as usize
    }
}

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
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// `strftime_now(fmt)` with today's date.
pub fn strftime_now_today(fmt: String) -> Result<String, Error> {
    strftime(&Date::now(), &fmt)
}

/// Python's `strftime` for the C locale directives templates use: `%Y %y %m %d %e %B %b %h %A
/// %a %H %I %M %S %p %j %%`, and glibc's `%-d %-m %-H %-I %-M %-S %-j` (no padding). Anything
/// else is an error naming the directive.
pub fn strftime(d: &Date, fmt: &str) -> Result<String, Error> {
    let month = MONTHS[(d.month.clamp(1, 12) - 1) as usize];
    let wday = DAYS[d.weekday()];
    let hour12 = if d.hour.is_multiple_of(12) {
        12
    } else {
        d.hour % 12
    };
    let mut out = String::new();
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = it.next();
        let pad = spec != Some('-');
        if !pad {
            spec = it.next();
        }
        let num = |n: u32, w: usize| {
            if pad {
                format!("{n:0w$}")
            } else {
                n.to_string()
            }
        };
        match spec {
            Some('Y') => out.push_str(&d.year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", d.year.rem_euclid(100))),
            Some('m') => out.push_str(&num(d.month, 2)),
            Some('d') => out.push_str(&num(d.day, 2)),
            Some('e') => out.push_str(&format!("{:>2}", d.day)),
            Some('B') => out.push_str(month),
            Some('b') | Some('h') => out.push_str(&month[..3]),
            Some('A') => out.push_str(wday),
            Some('a') => out.push_str(&wday[..3]),
            Some('H') => out.push_str(&num(d.hour, 2)),
            Some('I') => out.push_str(&num(hour12, 2)),
            Some('M') => out.push_str(&num(d.minute, 2)),
            Some('S') => out.push_str(&num(d.second, 2)),
            Some('p') => out.push_str(if d.hour < 12 { "AM" } else { "PM" }),
            Some('j') => out.push_str(&num(d.yday(), 3)),
            Some('%') if pad => out.push('%'),
            other => {
                let dir = other.map(String::from).unwrap_or_default();
                let dash = if pad { "" } else { "-" };
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: unsupported directive `%{dash}{dir}` (supported: %Y %y %m \
                         %d %e %B %b %h %A %a %H %I %M %S %p %j %%, and %-d style unpadded)"
                    ),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_and_weekdays() {
        assert_eq!(Date::from_unix(0), Date::ymd(1970, 1, 1));
        // 2024-02-29T13:05:09Z
        let d = Date::from_unix(1_709_211_909);
        assert_eq!((d.year, d.month, d.day), (2024, 2, 29));
        assert_eq!((d.hour, d.minute, d.second), (13, 5, 9));
        assert_eq!(
            strftime(&d, "%a %d %b %Y %j %I%p").unwrap(),
            "Thu 29 Feb 2024 060 01PM"
        );
        assert_eq!(
            strftime(&Date::ymd(2025, 3, 9), "%A %-d %B %y").unwrap(),
            "Sunday 9 March 25"
        );
        assert!(strftime(&d, "%Q").is_err());
    }

    #[test]
    fn python_float_repr() {
        for (f, s) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (1e16, "1e+16"),
            (1.5e-7, "1.5e-07"),
            (123456.789, "123456.789"),
            (-0.0001, "-0.0001"),
        ] {
            assert_eq!(py_float(f), s);
        }
    }
}
