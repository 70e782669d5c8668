//! Small field helpers shared by every format: absent markers, numbers, IPs, times,
//! and the ECS fields most mappers set the same way (category, type, outcome, the AWS
//! service).

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

use percent_encoding::percent_decode_str;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::event::{Event, Value};

/// `v` cut at the first `sep`: what comes before it, and what comes after it when `sep`
/// occurs (`"api/stage"` gives `("api", Some("stage"))`, `"api"` gives `("api", None)`).
pub fn split_first(v: &str, sep: char) -> (&str, Option<&str>) {
    match v.split_once(sep) {
        Some((before, after)) => (before, Some(after)),
        None => (v, None),
    }
}

/// [`split_first`] at the last `sep` (`"host:port"`).
pub fn split_last(v: &str, sep: char) -> (&str, Option<&str>) {
    match v.rsplit_once(sep) {
        Some((before, after)) => (before, Some(after)),
        None => (v, None),
    }
}

/// Sets `event.outcome`: `success` when the operation succeeded, `failure` otherwise.
pub fn set_outcome(ev: &mut Event, succeeded: bool) {
    ev.set(
        "event.outcome",
        if succeeded { "success" } else { "failure" },
    );
}

/// Sets `cloud.provider` (`aws`) and `cloud.service.name`.
pub fn set_aws_service(ev: &mut Event, service: &'static str) {
    ev.set("cloud.provider", "aws");
    ev.set("cloud.service.name", service);
}

/// A flow record's epoch-seconds field (`start`, `end_time`, ...) as its seconds and
/// RFC 3339 text, for [`set_capture_window`]; absent stays absent, anything else that
/// is not a time makes the record malformed, naming the field.
pub(crate) fn epoch_secs_field(
    raw: Option<&str>,
    name: &'static str,
) -> Result<Option<(i64, String)>, crate::driver::RecordError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let invalid = || crate::driver::RecordError::invalid(name, raw);
    let secs: i64 = raw.parse().map_err(|_| invalid())?;
    let ts = epoch_secs(secs).ok_or_else(invalid)?;
    Ok(Some((secs, ts)))
}

/// The capture window of a flow record (VPC, Transit Gateway, Global Accelerator):
/// `event.start`, `event.end`, `event.duration` and `@timestamp`, which is the end (a
/// record aggregates a window and is produced when it closes), else the start. Each
/// bound is its epoch seconds with its RFC 3339 text.
pub fn set_capture_window(
    ev: &mut Event,
    start: Option<&(i64, String)>,
    end: Option<&(i64, String)>,
) {
    if let Some((_, ts)) = end.or(start) {
        ev.set("@timestamp", ts.clone());
    }
    if let Some((_, ts)) = start {
        ev.set("event.start", ts.clone());
    }
    if let Some((_, ts)) = end {
        ev.set("event.end", ts.clone());
    }
    // Checked: the window comes from untrusted text, and a window longer than u64
    // nanoseconds (~584 years) is nonsense rather than a duration.
    if let (Some((s, _)), Some((e, _))) = (start, end)
        && let Some(nanos) = e
            .checked_sub(*s)
            .and_then(|d| u64::try_from(d).ok())
            .and_then(|d| d.checked_mul(1_000_000_000))
    {
        ev.set("event.duration", nanos);
    }
}

/// A flow record's `event.category` (network), `event.action` as written, and from an
/// `ACCEPT` or `REJECT` action `event.outcome` and the `allowed` / `denied` type.
pub fn set_flow_action(ev: &mut Event, action: Option<&str>) {
    set_category(ev, &["network"]);
    let mut types = vec![Value::Static("connection")];
    if let Some(action) = action {
        ev.set("event.action", action.to_owned());
        let allowed = match action {
            "ACCEPT" => Some(true),
            "REJECT" => Some(false),
            _ => None,
        };
        set_decision(ev, &mut types, allowed);
    }
    ev.set("event.type", Value::Arr(types));
}

/// Sets `event.category` to these ECS categories.
pub fn set_category(ev: &mut Event, categories: &[&'static str]) {
    ev.set("event.category", statics(categories));
}

/// Sets `event.type` to these ECS event types.
pub fn set_type(ev: &mut Event, types: &[&'static str]) {
    ev.set("event.type", statics(types));
}

fn statics(values: &[&'static str]) -> Value {
    Value::Arr(values.iter().map(|v| Value::Static(v)).collect())
}

/// `s` cut to at most `max` bytes, on a char boundary: the one place that shortens
/// text for a field, a log line or a message attribute without splitting a char.
pub fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `None` for the markers AWS uses for "no value": empty and `-`.
pub fn present(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty() && *s != "-")
}

/// Same as [`present`] for a plain `&str`.
pub fn field(v: &str) -> Option<&str> {
    present(Some(v))
}

/// Parses an unsigned integer field; absent or malformed gives `None`.
pub fn uint(v: &str) -> Option<u64> {
    field(v)?.parse().ok()
}

/// Parses a signed integer field; absent or malformed gives `None`.
pub fn int(v: &str) -> Option<i64> {
    field(v)?.parse().ok()
}

/// Parses a float field; absent, malformed, negative (AWS writes `-1` for "not
/// measured") or non-finite gives `None`.
pub fn non_negative_f64(v: &str) -> Option<f64> {
    let x: f64 = field(v)?.parse().ok()?;
    (x.is_finite() && x >= 0.0).then_some(x)
}

/// Seconds (fractional) to whole nanoseconds, for `event.duration`.
pub fn secs_to_nanos(secs: f64) -> u64 {
    (secs * 1e9).round() as u64
}

/// Canonical text form of an IP address (`0000:111::` becomes `0:111::`), or `None` when
/// the text is not an address.
pub fn canonical_ip(v: &str) -> Option<String> {
    let v = field(v)?;
    let v = v
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(v);
    // std's IPv4 grammar is the canonical form itself (four decimal octets of at most
    // three digits, no leading zeros, no signs), so text that parses as IPv4 is
    // returned as is, without formatting the address again.
    if v.parse::<Ipv4Addr>().is_ok() {
        return Some(v.to_owned());
    }
    v.parse::<IpAddr>().ok().map(|ip| ip.to_string())
}

/// Splits `ip:port`, `[v6]:port` and bare `ip` into canonical IP and optional port.
pub fn split_ip_port(v: &str) -> Option<(String, Option<u16>)> {
    let v = field(v)?;
    if let Some(rest) = v.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return Some((canonical_ip(ip)?, port));
    }
    if let Some(ip) = canonical_ip(v) {
        return Some((ip, None));
    }
    let (ip, port) = v.rsplit_once(':')?;
    Some((canonical_ip(ip)?, port.parse().ok()))
}

/// Percent-decodes (`%20` -> space); invalid UTF-8 is replaced, never rejected.
pub fn percent_decode(v: &str) -> Cow<'_, str> {
    if !v.contains('%') {
        return Cow::Borrowed(v);
    }
    // Decoded text is nearly always valid UTF-8: the strict check is several times
    // cheaper than the lossy decoder (which walks the bytes chunk by chunk).
    let bytes: Vec<u8> = percent_decode_str(v).collect();
    match String::from_utf8(bytes) {
        Ok(text) => Cow::Owned(text),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// RFC 3339 text for a UTC instant, with fractional seconds only when non-zero.
///
/// Written by hand for UTC instants of years 0 to 9999, the text `time`'s `Rfc3339`
/// writes (checked against it in the tests): its formatter went through `fmt` and cost
/// about 1,400 instructions per timestamp, several per event in some formats. Other
/// instants go to `time` (which refuses other years).
pub fn rfc3339(t: OffsetDateTime) -> Option<String> {
    let year = t.year();
    if !t.offset().is_utc() || !(0..=9999).contains(&year) {
        return t.format(&Rfc3339).ok();
    }
    fn two(out: &mut Vec<u8>, n: u8) {
        out.extend_from_slice(&[b'0' + n / 10, b'0' + n % 10]);
    }
    let mut out = Vec::with_capacity(30);
    let y = year.unsigned_abs();
    two(&mut out, (y / 100) as u8);
    two(&mut out, (y % 100) as u8);
    out.push(b'-');
    two(&mut out, u8::from(t.month()));
    out.push(b'-');
    two(&mut out, t.day());
    out.push(b'T');
    two(&mut out, t.hour());
    out.push(b':');
    two(&mut out, t.minute());
    out.push(b':');
    two(&mut out, t.second());
    let mut nanos = t.nanosecond();
    if nanos != 0 {
        // Nine digits, then trailing zeros dropped.
        let mut digits = [0u8; 9];
        for d in digits.iter_mut().rev() {
            *d = b'0' + (nanos % 10) as u8;
            nanos /= 10;
        }
        let len = digits.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
        out.push(b'.');
        out.extend_from_slice(&digits[..len]);
    }
    out.push(b'Z');
    String::from_utf8(out).ok()
}

/// RFC 3339 text for Unix seconds.
pub fn epoch_secs(secs: i64) -> Option<String> {
    rfc3339(OffsetDateTime::from_unix_timestamp(secs).ok()?)
}

/// RFC 3339 text for Unix milliseconds.
pub fn epoch_millis(ms: i64) -> Option<String> {
    rfc3339(OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?)
}

/// Normalises an RFC 3339 / ISO 8601 timestamp to UTC RFC 3339; `None` when it is not one.
pub fn iso_timestamp(v: &str) -> Option<String> {
    let v = field(v)?;
    let t = OffsetDateTime::parse(v, &Rfc3339).ok()?;
    rfc3339(t.to_offset(time::UtcOffset::UTC))
}

/// Validates `YYYY-MM-DD` and `HH:MM:SS` and joins them as a UTC RFC 3339 timestamp.
pub fn date_time_utc(date: &str, time_of_day: &str) -> Option<String> {
    let d = date.as_bytes();
    let t = time_of_day.as_bytes();
    let digits = |b: &[u8], idx: &[usize]| {
        idx.iter()
            .all(|&i| b.get(i).is_some_and(u8::is_ascii_digit))
    };
    let date_ok =
        d.len() == 10 && d[4] == b'-' && d[7] == b'-' && digits(d, &[0, 1, 2, 3, 5, 6, 8, 9]);
    let time_ok = t.len() >= 8 && t[2] == b':' && t[5] == b':' && digits(t, &[0, 1, 3, 4, 6, 7]);
    if !(date_ok && time_ok) {
        return None;
    }
    let mut s = String::with_capacity(date.len() + time_of_day.len() + 2);
    s.push_str(date);
    s.push('T');
    s.push_str(time_of_day);
    s.push('Z');
    // One real parse keeps out impossible dates like 2024-13-45.
    OffsetDateTime::parse(&s, &Rfc3339).ok()?;
    Some(s)
}

/// The IANA protocol name for a protocol number, lower case as ECS `network.transport`
/// expects; `None` for numbers without a common name.
pub fn iana_transport(n: u64) -> Option<&'static str> {
    Some(match n {
        0 => "hopopt",
        1 => "icmp",
        2 => "igmp",
        4 => "ipv4",
        6 => "tcp",
        17 => "udp",
        41 => "ipv6",
        47 => "gre",
        50 => "esp",
        51 => "ah",
        58 => "ipv6-icmp",
        89 => "ospf",
        103 => "pim",
        112 => "vrrp",
        132 => "sctp",
        _ => return None,
    })
}

/// `ipv4` or `ipv6` for an address, for `network.type`.
pub fn ip_version(ip: &str) -> Option<&'static str> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some("ipv4"),
        IpAddr::V6(_) => Some("ipv6"),
    }
}

/// Sets `address` to `raw` and, when it is an IP address, `ip` and `related.ip` to
/// its canonical form (which then replaces `raw` in `address` too). Returns the IP
/// version (`ipv4`, `ipv6`) of the address set as `ip`, for `network.type`: the
/// event need not be read back for it, which may build its tree.
pub fn set_ip_address(
    ev: &mut Event,
    raw: Option<&str>,
    address: &'static str,
    ip: &'static str,
) -> Option<&'static str> {
    let raw = raw?;
    match canonical_ip(raw) {
        Some(canonical) => {
            let version = ip_version(&canonical);
            ev.set(address, canonical.clone());
            ev.set(ip, canonical.clone());
            ev.push_unique("related.ip", canonical);
            version
        }
        None => {
            ev.set(address, raw.to_owned());
            None
        }
    }
}

/// Records an access decision, when there is one: `allowed` or `denied` pushed to the
/// `event.type` list being built, and `event.outcome` (`success` / `failure`).
pub fn set_decision(ev: &mut Event, types: &mut Vec<Value>, allowed: Option<bool>) {
    match allowed {
        Some(true) => {
            types.push(Value::Static("allowed"));
            ev.set("event.outcome", "success");
        }
        Some(false) => {
            types.push(Value::Static("denied"));
            ev.set("event.outcome", "failure");
        }
        None => {}
    }
}

/// Sets `user.name` and adds the name to `related.user`, when there is one.
pub fn set_user(ev: &mut Event, name: Option<&str>) {
    if let Some(name) = name {
        ev.set("user.name", name.to_owned());
        ev.push_unique("related.user", name.to_owned());
    }
}

/// `s` as a field or column name: ASCII letters and digits in lower case, anything
/// else `_` (`cs(Host)` -> `cs_host_`, `/aws/Lambda-Edge` service -> `lambda_edge`).
pub fn field_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written formatter writes what `time` writes, for instants of every
    /// year it takes, with every number of fractional digits.
    #[test]
    fn rfc3339_matches_the_time_crate() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3339);
        // 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
        let (lowest, highest) = (-62_167_219_200i64, 253_402_300_799i64);
        for i in 0..20_000u32 {
            let secs = match i {
                0 => lowest,
                1 => highest,
                _ => rng.random_range(lowest..=highest),
            };
            let nanos = match i % 4 {
                0 => 0,
                1 => rng.random_range(0..1000) * 1_000_000,
                2 => rng.random_range(0..1_000_000) * 1000,
                _ => rng.random_range(0..1_000_000_000),
            };
            let t = OffsetDateTime::from_unix_timestamp(secs)
                .unwrap()
                .replace_nanosecond(nanos)
                .unwrap();
            assert_eq!(rfc3339(t), t.format(&Rfc3339).ok(), "{secs} {nanos}");
        }
        // Not UTC, or out of RFC 3339's years: as `time` does.
        let paris = OffsetDateTime::from_unix_timestamp(1_700_000_000)
            .unwrap()
            .to_offset(time::UtcOffset::from_hms(1, 0, 0).unwrap());
        assert_eq!(rfc3339(paris).as_deref(), Some("2023-11-14T23:13:20+01:00"));
        let year_minus_one = OffsetDateTime::from_unix_timestamp(lowest - 1).unwrap();
        assert_eq!(rfc3339(year_minus_one), None);
    }

    #[test]
    fn absent_markers() {
        assert_eq!(field("-"), None);
        assert_eq!(field(""), None);
        assert_eq!(field("x"), Some("x"));
        assert_eq!(uint("12"), Some(12));
        assert_eq!(uint("-"), None);
        assert_eq!(non_negative_f64("-1"), None);
        assert_eq!(non_negative_f64("0.5"), Some(0.5));
    }

    #[test]
    fn truncation_keeps_whole_chars() {
        assert_eq!(truncate_at_char("héllo", 2), "h");
        assert_eq!(truncate_at_char("héllo", 3), "hé");
        assert_eq!(truncate_at_char("abc", 10), "abc");
        assert_eq!(truncate_at_char("abc", 0), "");
    }

    #[test]
    fn split_at_the_first_or_last_separator() {
        assert_eq!(split_first("a/b/c", '/'), ("a", Some("b/c")));
        assert_eq!(split_first("abc", '/'), ("abc", None));
        assert_eq!(split_first("a/", '/'), ("a", Some("")));
        assert_eq!(split_last("a:b:c", ':'), ("a:b", Some("c")));
        assert_eq!(split_last("abc", ':'), ("abc", None));
    }

    #[test]
    fn ips_are_canonical() {
        assert_eq!(
            canonical_ip("0000:111:222:3333:4444:5555:6666:7777").as_deref(),
            Some("0:111:222:3333:4444:5555:6666:7777")
        );
        assert_eq!(
            canonical_ip("2001:0db8:0:0:0:0:0:1").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(canonical_ip("not-an-ip"), None);
        assert_eq!(
            split_ip_port("192.0.2.1:443"),
            Some(("192.0.2.1".into(), Some(443)))
        );
        assert_eq!(
            split_ip_port("[2001:db8::1]:8080"),
            Some(("2001:db8::1".into(), Some(8080)))
        );
        assert_eq!(
            split_ip_port("2001:db8::1"),
            Some(("2001:db8::1".into(), None))
        );
    }

    /// The IPv4 fast path of [`canonical_ip`] gives what parsing and formatting gives.
    #[test]
    fn ipv4_text_that_parses_is_already_canonical() {
        let slow = |v: &str| {
            let v = field(v)?;
            let v = v
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(v);
            v.parse::<IpAddr>().ok().map(|ip| ip.to_string())
        };
        for v in [
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3.04",
            "00.0.0.0",
            "001.002.003.004",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            "+1.2.3.4",
            "1.2.3.4 ",
            " 1.2.3.4",
            "[1.2.3.4]",
            "0x1.2.3.4",
            "1.2.3.4:80",
            "::ffff:1.2.3.4",
            "::FFFF:01.2.3.4",
            "2001:DB8::1",
            "١.2.3.4",
        ] {
            assert_eq!(canonical_ip(v), slow(v), "{v:?}");
        }
        // Every text of up to 8 characters over digits and dots.
        let alphabet = b"0129.";
        let mut text = Vec::new();
        for len in 1..=8u32 {
            for mut n in 0..alphabet.len().pow(len) {
                text.clear();
                for _ in 0..len {
                    text.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                let v = std::str::from_utf8(&text).unwrap();
                assert_eq!(canonical_ip(v), slow(v), "{v:?}");
            }
        }
        let octets = [
            "0", "9", "10", "99", "100", "199", "249", "250", "255", "256", "300",
        ];
        for a in octets {
            for b in octets {
                let v = format!("{a}.{b}.{b}.{a}");
                assert_eq!(canonical_ip(&v), slow(&v), "{v:?}");
            }
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            date_time_utc("2019-12-04", "21:02:31").as_deref(),
            Some("2019-12-04T21:02:31Z")
        );
        assert_eq!(date_time_utc("2019-13-04", "21:02:31"), None);
        assert_eq!(date_time_utc("02/01/2009", "01:13:11"), None);
        assert_eq!(
            epoch_secs(1_418_530_010).as_deref(),
            Some("2014-12-14T04:06:50Z")
        );
        assert_eq!(
            epoch_millis(1_576_280_412_771).as_deref(),
            Some("2019-12-13T23:40:12.771Z")
        );
        assert_eq!(
            iso_timestamp("2020-01-01T01:00:00+01:00").as_deref(),
            Some("2020-01-01T00:00:00Z")
        );
    }
}
