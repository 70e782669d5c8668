//! CloudFront standard (access) logs: W3C extended format, tab-separated, with
//! `#Version` and `#Fields` header lines. Columns come from `#Fields` (AWS has added
//! columns over the years and lets real-time/v2 logging pick them), so nothing assumes
//! positions; without a header the current 33-column default is used.
//!
//! Standard logging (v2) can also write JSON: one object per line with the same column
//! names as keys (`{"date":"2023-12-05","x-edge-location":"FRA56-P3",...}`). Such lines
//! go through the same mapping, column by name. Because v2 lets users pick columns, the
//! time may come from `timestamp(ms)` or `timestamp` instead of `date` + `time`.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;

use crate::detect::regex_matches;

use crate::driver::{LineOutcome, 
    LineContext, LineParser, RecordError,
};
use crate::enrich::DomainField;
use crate::event::{Event, Value};
use crate::readers::columns::column_table;
use crate::readers::json_lines::json_object_line;
use crate::registry::{ContentClue, FirstLine, FormatSpec, KeyClue, KeyParts, Reader};
use crate::util::{self, field};

column_table! {
    /// The CloudFront columns this parser maps to ECS.
    Date = "date", Time = "time", EdgeLocation = "x-edge-location", ScBytes = "sc-bytes",
    CIp = "c-ip", Method = "cs-method", CsHost = "cs(Host)", UriStem = "cs-uri-stem",
    Status = "sc-status", Referer = "cs(Referer)", UserAgent = "cs(User-Agent)",
    UriQuery = "cs-uri-query", Cookie = "cs(Cookie)", EdgeResultType = "x-edge-result-type",
    EdgeRequestId = "x-edge-request-id", HostHeader = "x-host-header", Protocol = "cs-protocol",
    CsBytes = "cs-bytes", TimeTaken = "time-taken", ForwardedFor = "x-forwarded-for",
    SslProtocol = "ssl-protocol", SslCipher = "ssl-cipher",
    EdgeResponseResultType = "x-edge-response-result-type", ProtocolVersion = "cs-protocol-version",
    FleStatus = "fle-status", FleEncryptedFields = "fle-encrypted-fields", CPort = "c-port",
    TimeToFirstByte = "time-to-first-byte", EdgeDetailedResultType = "x-edge-detailed-result-type",
    ContentType = "sc-content-type", ContentLen = "sc-content-len", RangeStart = "sc-range-start",
    RangeEnd = "sc-range-end", Timestamp = "timestamp", TimestampMs = "timestamp(ms)",
    StartTime = "start_time",
}

/// The column layout of standard logs since 2019, used when a file has no `#Fields`.
const DEFAULT_FIELDS: &str = "date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end";

/// A column of the current file: a mapped one, or an unknown one kept under
/// `aws.cloudfront.<name>`.
#[derive(Debug, Clone)]
enum Column {
    Known(Col),
    Other(String),
}

impl Column {
    /// The column a `#Fields` name (or JSON key) stands for.
    fn of(name: &str) -> Column {
        match KNOWN.iter().find(|(k, _)| *k == name) {
            Some((_, c)) => Column::Known(*c),
            None => Column::Other(other_name(name)),
        }
    }

    /// The column a Parquet column name stands for: Parquet writers spell `cs(Host)`
    /// as `cs_host` and `x-edge-location` as `x_edge_location`, so names are compared
    /// on their lower-case letters and digits when they do not match exactly.
    fn of_loose(name: &str) -> Column {
        if let Column::Known(c) = Column::of(name) {
            return Column::Known(c);
        }
        let squash = |s: &str| -> String {
            s.chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .collect()
        };
        let wanted = squash(name);
        match KNOWN.iter().find(|(k, _)| squash(k) == wanted) {
            Some((_, c)) => Column::Known(*c),
            None => Column::Other(other_name(name)),
        }
    }
}

/// Parses CloudFront standard log lines; remembers the `#Fields` layout of the file.
#[derive(Debug, Clone)]
pub struct CloudFrontParser {
    columns: Vec<Column>,
    /// Columns a line must have: up to and including the last of date, time, c-ip,
    /// cs-method and sc-status.
    required_columns: usize,
}

impl Default for CloudFrontParser {
    fn default() -> Self {
        let mut p = CloudFrontParser {
            columns: Vec::new(),
            required_columns: 0,
        };
        p.set_fields(DEFAULT_FIELDS);
        p
    }
}

fn other_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '-' | '(' => out.push('_'),
            ')' => {}
            c => out.extend(c.to_lowercase()),
        }
    }
    out.trim_start_matches("x_").trim_matches('_').to_owned()
}

impl CloudFrontParser {
    fn set_fields(&mut self, names: &str) {
        self.columns = names.split_whitespace().map(Column::of).collect();
        const REQUIRED: [Col; 5] = [Col::Date, Col::Time, Col::CIp, Col::Method, Col::Status];
        self.required_columns = self
            .columns
            .iter()
            .rposition(|c| matches!(c, Column::Known(k) if REQUIRED.contains(k)))
            .map_or(self.columns.len(), |i| i + 1);
    }
}

/// `TLSv1.2` -> (`tls`, `1.2`); `SSLv3` -> (`ssl`, `3`).
fn tls_version(v: &str) -> Option<(&'static str, &str)> {
    if let Some(rest) = v.strip_prefix("TLSv") {
        return Some(("tls", rest));
    }
    v.strip_prefix("SSLv").map(|rest| ("ssl", rest))
}

impl LineParser for CloudFrontParser {
    fn parse_line(&mut self, line: &str, cx: &LineContext<'_>, out: &mut Vec<Event>) -> LineOutcome {
        if let Some(rest) = line.strip_prefix('#') {
            if let Some(names) = rest.strip_prefix("Fields:") {
                self.set_fields(names);
            }
            return Ok(false);
        }
        if line.starts_with('{') {
            return parse_json_record(line, cx, out);
        }
        let mut known: [&str; NKNOWN] = [""; NKNOWN];
        let mut others: Vec<(&str, &str)> = Vec::new();
        // Standard logs are tab-separated; very old files and hand-made samples use spaces.
        // Split on the byte with memchr (the separators are ASCII, so every cut is on a
        // char boundary); same pieces as `line.split(sep)`, empty ones included.
        let bytes = line.as_bytes();
        let sep = if memchr::memchr(b'\t', bytes).is_some() {
            b'\t'
        } else {
            b' '
        };
        let mut n = 0;
        let mut start = 0;
        for end in memchr::memchr_iter(sep, bytes).chain(std::iter::once(bytes.len())) {
            let value = line.get(start..end).unwrap_or_default();
            start = end + 1;
            match self.columns.get(n) {
                Some(Column::Known(c)) => known[*c as usize] = value,
                Some(Column::Other(name)) => others.push((name, value)),
                None => {}
            }
            n += 1;
        }
        // AWS appends columns over time and some delivery paths drop empty trailing
        // ones: a line may stop early as long as the columns that identify a request
        // are there (missing ones are absent). More columns than the header names, or
        // a line cut before the request columns, means the layout is not what we think.
        if n > self.columns.len() || n < self.required_columns {
            return Err(RecordError::FieldCount {
                expected: self.columns.len(),
                found: n,
            });
        }
        map_record(&known, &others, cx, out)
    }
}

/// A JSON record of standard logging (v2): the column names are the keys. Values are
/// strings as in the W3C format (`-` for absent); numbers and `null` are accepted too.
fn parse_json_record(
    line: &str,
    cx: &LineContext<'_>,
    out: &mut Vec<Event>,
) -> Result<bool, RecordError> {
    let record = json_object_line(line)?;
    let texts: Vec<(&str, Cow<'_, str>)> = record
        .iter()
        .filter_map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => Cow::Borrowed(s.as_str()),
                serde_json::Value::Number(n) => Cow::Owned(n.to_string()),
                serde_json::Value::Bool(b) => Cow::Owned(b.to_string()),
                _ => return None,
            };
            Some((k.as_str(), text))
        })
        .collect();
    let texts: Vec<(&str, &str)> = texts.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    map_named_columns(&texts, cx, out)
}

/// Maps one record given as (column name, value text) pairs: the JSON form of v2 and
/// the Parquet reader ([`crate::columnar`]) share it. A name that is not a column is
/// also tried with `-` for `_` (Parquet column names cannot always carry dashes).
pub(crate) fn map_named_columns(
    texts: &[(&str, &str)],
    cx: &LineContext<'_>,
    out: &mut Vec<Event>,
) -> Result<bool, RecordError> {
    let mut known: [&str; NKNOWN] = [""; NKNOWN];
    let mut other_names: Vec<(String, &str)> = Vec::new();
    for (name, value) in texts {
        match Column::of_loose(name) {
            Column::Known(c) => known[c as usize] = value,
            Column::Other(name) => other_names.push((name, value)),
        }
    }
    let others: Vec<(&str, &str)> = other_names.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    map_record(&known, &others, cx, out)
}

/// Whether `name` (a Parquet column) is a CloudFront column this parser maps.
pub(crate) fn is_cloudfront_column(name: &str) -> bool {
    matches!(Column::of_loose(name), Column::Known(_))
}

/// `@timestamp` from the time columns present: `date` + `time` (legacy and most v2
/// logs), else `timestamp(ms)` or `timestamp` (Unix time, v2), else `date` +
/// `start_time` (exports that fold repeated requests into one record with a count).
fn record_time(known: &[&str; NKNOWN]) -> Result<String, RecordError> {
    let get = |c: Col| field(known[c as usize]);
    let date = known[Col::Date as usize];
    if let Some(time) = get(Col::Time) {
        return util::date_time_utc(date, time)
            .ok_or_else(|| RecordError::invalid("date/time", &format!("{date} {time}")));
    }
    if let Some(ms) = get(Col::TimestampMs) {
        return ms
            .parse::<i64>()
            .ok()
            .and_then(util::epoch_millis)
            .ok_or_else(|| RecordError::invalid("timestamp(ms)", ms));
    }
    if let Some(secs) = get(Col::Timestamp) {
        return secs
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && s.abs() < 1e12)
            .and_then(|s| util::epoch_millis((s * 1000.0).round() as i64))
            .ok_or_else(|| RecordError::invalid("timestamp", secs));
    }
    let start = known[Col::StartTime as usize];
    util::date_time_utc(date, start)
        .ok_or_else(|| RecordError::invalid("date/time", &format!("{date} {start}")))
}

/// Maps one record, its columns found by name, to ECS.
fn map_record(
    known: &[&str; NKNOWN],
    others: &[(&str, &str)],
    cx: &LineContext<'_>,
    out: &mut Vec<Event>,
) -> Result<bool, RecordError> {
    let get = |c: Col| field(known[c as usize]);

    let mut ev = Event::new();
    ev.set("@timestamp", record_time(known)?);
    ev.set("event.category", Value::Arr(vec![Value::Static("web")]));
    ev.set("event.type", Value::Arr(vec![Value::Static("access")]));
    ev.set("cloud.provider", "aws");
    ev.set("cloud.service.name", "cloudfront");

    if let Some(ip) = get(Col::CIp).and_then(util::canonical_ip) {
        ev.set_opt("network.type", util::ip_version(&ip));
        ev.set("source.address", ip.clone());
        ev.set("source.ip", ip.clone());
        ev.push_unique("related.ip", ip);
    }
    ev.set_opt("source.port", get(Col::CPort).and_then(util::uint));
    if let Some(xff) = get(Col::ForwardedFor) {
        crate::enrich::forwarded_for(&mut ev, &util::percent_decode(xff));
    }
    // The viewer asked for x-host-header (an alternate domain name such as
    // www.example.com, or the distribution name when none is used); cs(Host) is
    // always the distribution's own *.cloudfront.net name, kept under aws.*.
    ev.set_str("aws.cloudfront.domain", get(Col::CsHost));
    let url_host = get(Col::HostHeader).or(get(Col::CsHost));
    if let Some(host) = url_host {
        cx.enricher.domain(&mut ev, DomainField::Destination, host);
        ev.set("destination.address", host.to_ascii_lowercase());
        cx.enricher.domain(&mut ev, DomainField::Url, host);
    }
    ev.set_str("http.request.method", get(Col::Method));
    let status = get(Col::Status).and_then(util::uint);
    if let Some(code) = status {
        ev.set("http.response.status_code", code);
        // CloudFront logs 000 when the viewer went away before a response: a failure.
        ev.set(
            "event.outcome",
            if code == 0 || code >= 400 {
                "failure"
            } else {
                "success"
            },
        );
    }
    for (path, col) in [
        ("http.response.bytes", Col::ScBytes),
        ("http.request.bytes", Col::CsBytes),
        ("http.response.body.bytes", Col::ContentLen),
    ] {
        ev.set_opt(path, get(col).and_then(util::uint));
    }
    if let Some(ct) = get(Col::ContentType) {
        ev.set(
            "http.response.mime_type",
            util::percent_decode(ct).into_owned(),
        );
    }
    if let Some(referrer) = get(Col::Referer) {
        ev.set("http.request.referrer", referrer.to_owned());
    }
    if let Some(id) = get(Col::EdgeRequestId) {
        ev.set("http.request.id", id.to_owned());
    }
    if let Some(v) = get(Col::ProtocolVersion) {
        ev.set(
            "http.version",
            v.strip_prefix("HTTP/").unwrap_or(v).to_owned(),
        );
    }

    let scheme = get(Col::Protocol);
    if let Some(s) = scheme {
        ev.set("url.scheme", s.to_owned());
        ev.set("network.protocol", s.to_owned());
    }
    let path = get(Col::UriStem);
    let query = get(Col::UriQuery);
    if let Some(p) = path {
        ev.set("url.path", p.to_owned());
        let last = p.rsplit('/').next().unwrap_or("");
        if let Some((_, ext)) = last
            .rsplit_once('.')
            .filter(|(stem, ext)| !stem.is_empty() && !ext.is_empty())
        {
            ev.set("url.extension", ext.to_ascii_lowercase());
        }
    }
    ev.set_str("url.query", query);
    if let (Some(s), Some(h), Some(p)) = (scheme, url_host, path) {
        let mut full = format!("{s}://{h}{p}");
        if let Some(q) = query {
            full.push('?');
            full.push_str(q);
        }
        ev.set("url.full", full);
    }
    cx.enricher
        .user_agent(&mut ev, known[Col::UserAgent as usize]);

    if let Some(secs) = get(Col::TimeTaken).and_then(util::non_negative_f64) {
        ev.set("event.duration", util::secs_to_nanos(secs));
    }
    if let Some((proto, version)) = get(Col::SslProtocol).and_then(tls_version) {
        ev.set("tls.version_protocol", proto);
        ev.set("tls.version", version.to_owned());
    }
    ev.set_str("tls.cipher", get(Col::SslCipher));

    let edge = get(Col::EdgeLocation);
    ev.set_str("server.geo.name", edge);
    ev.set_str("aws.cloudfront.edge_location", edge);
    let action = get(Col::EdgeResponseResultType).or(get(Col::EdgeResultType));
    ev.set_str("event.action", action);
    ev.set_str("aws.cloudfront.edge_result_type", get(Col::EdgeResultType));
    ev.set_str(
        "aws.cloudfront.edge_response_result_type",
        get(Col::EdgeResponseResultType),
    );
    ev.set_str(
        "aws.cloudfront.edge_detailed_result_type",
        get(Col::EdgeDetailedResultType),
    );
    if let Some(t) = get(Col::TimeToFirstByte).and_then(util::non_negative_f64) {
        ev.set("aws.cloudfront.time_to_first_byte", t);
    }
    ev.set_str("aws.cloudfront.cookie", get(Col::Cookie));
    ev.set_str("aws.cloudfront.fle_status", get(Col::FleStatus));
    ev.set_opt(
        "aws.cloudfront.fle_encrypted_fields",
        get(Col::FleEncryptedFields).and_then(util::uint),
    );
    for (path, col) in [
        ("aws.cloudfront.range_start", Col::RangeStart),
        ("aws.cloudfront.range_end", Col::RangeEnd),
    ] {
        ev.set_opt(path, get(col).and_then(util::int));
    }
    for (name, value) in others {
        if let Some(v) = field(value) {
            ev.set_dyn("aws.cloudfront", name, v.to_owned());
        }
    }
    out.push(ev);
    Ok(true)
}

/// CloudFront standard logs: W3C text with a `#Fields` header, or JSON records
/// (standard logging v2).
pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "cloudfront",
    dataset: "aws.cloudfront_logs",
    example_key: "cloudfront/E2QWRUHAPOMQZL.2024-03-15-00.a1b2c3d4.gz",
    key_clues: &[KeyClue {
        rank: 80,
        layout: "<distribution>.YYYY-MM-DD-HH.<id>.gz",
        matches: is_log_file_name,
    }],
    content_clues: &[
        ContentClue {
            rank: 10,
            what: "#Version/#Fields header",
            first_line: FirstLine::Text,
            matches: |line| {
                line.starts_with("#Version:") || line.starts_with("#Fields: date time x-edge-location")
            },
        },
        // Standard logging (v2) with the JSON output format: the W3C column names as keys.
        ContentClue {
            rank: 150,
            what: "CloudFront JSON record",
            first_line: FirstLine::Json,
            matches: |line| {
                line.contains("\"x-edge-location\"") || line.contains("\"x-edge-request-id\"")
            },
        },
    ],
    skip: None,
    options: &[],
    reader: Reader::Lines(|_, _| Box::new(CloudFrontParser::default())),
};

/// `<distribution id>.YYYY-MM-DD-HH.<unique id>[.gz]`, the name CloudFront gives log files.
fn is_log_file_name(key: &KeyParts<'_>) -> bool {
    static NAME: OnceLock<Option<Regex>> = OnceLock::new();
    regex_matches(
        &NAME,
        r"^[A-Z0-9]{6,20}\.\d{4}-\d{2}-\d{2}-\d{2}\.[0-9a-zA-Z]{6,12}(\.gz)?$",
        key.file_name,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use crate::{Event, Format, ParseOptions, ParseStats, assert_error_contains, assert_fields};

    const HEADER: &str = "#Version: 1.0\n#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end\n";

    fn run(text: &str) -> (Vec<Event>, ParseStats) {
        let key = "cf/E2QWRUHAPOMQZL.2023-12-05-16.a1b2c3d4.gz";
        let options = ParseOptions::default();
        crate::parse_object_for_test(Format::CloudFront, &mut text.as_bytes(), "logs", key, &options)
    }

    fn line(fields: &[&str]) -> String {
        fields.join("\t") + "\n"
    }

    fn sekoia_line() -> String {
        line(&[
            "2023-12-05",
            "16:15:33",
            "test-P1",
            "484",
            "0000:111:222:3333:4444:5555:6666:7777",
            "GET",
            "dtest.cloudfront.net",
            "/",
            "302",
            "-",
            "Mozilla/5.0%20(Macintosh;%20Intel%20Mac%20OS%20X%2010_15_7)%20AppleWebKit/605.1.15%20(KHTML,%20like%20Gecko)%20Version/17.1%20Safari/605.1.15",
            "-",
            "-",
            "Miss",
            "Dw16HXgISOWLclFzkdTDjdlWWwg==",
            "test.cloudfront.net",
            "https",
            "258",
            "0.358",
            "-",
            "TLSv1.3",
            "TLS_AES_128_GCM_SHA256",
            "RefreshHit",
            "HTTP/2.0",
            "-",
            "-",
            "58622",
            "0.358",
            "Miss",
            "text/html;%20charset=UTF-8",
            "0",
            "-",
            "-",
        ])
    }

    #[test]
    fn maps_like_the_sekoia_reference_and_more() {
        let (events, stats) = run(&(HEADER.to_owned() + &sekoia_line()));
        assert_eq!((stats.headers, stats.events, stats.malformed), (2, 1, 0));
        let e = events[0].to_json();
        assert_fields(
            &e,
            json!({
                "@timestamp": "2023-12-05T16:15:33Z",
                "source": {"ip": "0:111:222:3333:4444:5555:6666:7777", "port": 58622},
                "related": {"ip": ["0:111:222:3333:4444:5555:6666:7777"]},
                "event": {
                    "action": "RefreshHit",
                    "category": ["web"],
                    "type": ["access"],
                    "outcome": "success",
                    "duration": 358_000_000u64,
                },
                "http": {
                    "request": {"method": "GET", "bytes": 258},
                    "response": {
                        "status_code": 302,
                        "bytes": 484,
                        "mime_type": "text/html; charset=UTF-8",
                    },
                    "version": "2.0",
                },
                "destination": {
                    "domain": "test.cloudfront.net",
                    "registered_domain": "cloudfront.net",
                    "subdomain": "test",
                    "top_level_domain": "net",
                },
                "aws": {
                    "cloudfront": {
                        "domain": "dtest.cloudfront.net",
                        "edge_result_type": "Miss",
                        "time_to_first_byte": 0.358,
                    },
                },
                "url": {
                    "domain": "test.cloudfront.net",
                    "path": "/",
                    "scheme": "https",
                    "full": "https://test.cloudfront.net/",
                },
                "network": {"protocol": "https"},
                "server": {"geo": {"name": "test-P1"}},
                "tls": {
                    "version": "1.3",
                    "version_protocol": "tls",
                    "cipher": "TLS_AES_128_GCM_SHA256",
                },
                "user_agent": {
                    "name": "Safari",
                    "version": "17.1",
                    "original": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
                },
                "cloud": {"provider": "aws", "service": {"name": "cloudfront"}},
            }),
        );
        assert!(
            e["related"]["hosts"]
                .as_array()
                .unwrap()
                .contains(&"test.cloudfront.net".into())
        );
        // `-` fields are absent, not "-"
        assert!(e["http"]["request"].get("referrer").is_none());
        assert!(e["url"].get("query").is_none());
        assert_eq!(e["event"]["id"].as_str().unwrap().len(), 32);
    }

    #[test]
    fn columns_follow_the_fields_header() {
        let text = "#Version: 1.0\n#Fields: time date c-ip sc-status cs-uri-stem cs-uri-query x-new-field\n10:00:01\t2024-02-29\t192.0.2.10\t404\t/a%20b.JPG\tq=1&X-Amz-Signature=deadbeef\tnewvalue\n";
        let (events, _) = run(text);
        let e = events[0].to_json();
        assert_fields(
            &e,
            json!({
                "@timestamp": "2024-02-29T10:00:01Z",
                "source": {"ip": "192.0.2.10"},
                "http": {"response": {"status_code": 404}},
                "event": {"outcome": "failure"},
                "url": {"path": "/a%20b.JPG", "extension": "jpg"},
                "aws": {"cloudfront": {"new_field": "newvalue"}},
            }),
        );
        let redacted = events[0].to_json_string(Some(&crate::Redactor::new()));
        assert!(
            redacted.contains("q=1&X-Amz-Signature=REDACTED"),
            "{redacted}"
        );
    }

    #[test]
    fn wrong_field_count_is_forwarded_raw() {
        let text = HEADER.to_owned() + "2024-01-01\t00:00:00\tLAX1\n" + &sekoia_line();
        let (events, stats) = run(&text);
        assert_eq!((stats.events, stats.malformed), (2, 1));
        let bad = events[0].to_json();
        assert_eq!(bad["event"]["kind"], "pipeline_error");
        assert_eq!(bad["tags"][0], "_parse_failure");
        assert_error_contains(&bad, "line 3: expected 33 fields, found 3");
        assert_eq!(bad["event"]["original"], "2024-01-01\t00:00:00\tLAX1");
        assert_eq!(events[1].get_str("event.action"), Some("RefreshHit"));
    }

    #[test]
    fn missing_trailing_columns_are_absent_but_extra_columns_are_errors() {
        let full = sekoia_line();
        let short: Vec<&str> = full.trim_end().split('\t').collect();
        let (events, stats) = run(&(HEADER.to_owned() + &line(&short[..31])));
        assert_eq!(stats.malformed, 0);
        assert_eq!(
            events[0].get_str("http.response.mime_type"),
            Some("text/html; charset=UTF-8")
        );
        assert!(events[0].get("aws.cloudfront.range_start").is_none());
        let (_, stats) = run(&(HEADER.to_owned() + full.trim_end() + "\textra\n"));
        assert_eq!(stats.malformed, 1);
    }

    #[test]
    fn without_header_the_default_layout_applies_and_bad_dates_are_errors() {
        let (events, stats) = run(&sekoia_line().replace("2023-12-05", "2023-02-30"));
        assert_eq!(stats.malformed, 1);
        assert_error_contains(&events[0], "date/time");
        let (events, stats) = run(&sekoia_line());
        assert_eq!(stats.malformed, 0);
        assert_eq!(
            events[0].get_str("source.ip"),
            Some("0:111:222:3333:4444:5555:6666:7777")
        );
    }

    #[test]
    fn empty_columns_count_and_spaces_separate_when_there_is_no_tab() {
        let fields = "#Fields: date time c-ip cs-method sc-status x-a x-b\n";
        // Empty columns between tabs and at the end of the line are columns.
        let (events, stats) = run(&format!(
            "{fields}2024-01-01\t00:00:00\t192.0.2.1\tGET\t200\t\t\n"
        ));
        assert_eq!(stats.malformed, 0);
        assert!(events[0].get("aws.cloudfront.a").is_none());
        let (_, stats) = run(&format!(
            "{fields}2024-01-01\t00:00:00\t192.0.2.1\tGET\t200\t\t\t\n"
        ));
        assert_eq!(stats.malformed, 1);
        // Without a tab, spaces separate (and a space inside a tab-separated line does not).
        let (events, _) = run(&format!(
            "{fields}2024-01-01 00:00:00 192.0.2.1 GET 200 x y\n"
        ));
        assert_eq!(events[0].get_str("aws.cloudfront.b"), Some("y"));
        let (events, _) = run(&format!(
            "{fields}2024-01-01\t00:00:00\t192.0.2.1\tGET\t200\tx y\tz\n"
        ));
        assert_eq!(events[0].get_str("aws.cloudfront.a"), Some("x y"));
    }

    /// The Sekoia.io reference record as a v2 JSON line: the W3C names as keys, the time
    /// in `start_time` and a repeat count (a number, unlike the other values).
    fn sekoia_json_line() -> String {
        let names = HEADER
            .lines()
            .nth(1)
            .and_then(|l| l.strip_prefix("#Fields: "))
            .unwrap()
            .split(' ');
        let values: Vec<String> = sekoia_line()
            .trim_end()
            .split('\t')
            .map(str::to_owned)
            .collect();
        let mut record = serde_json::Map::new();
        for (name, value) in names.zip(values) {
            if name != "time" {
                record.insert(name.into(), value.into());
            }
        }
        record.insert("start_time".into(), "16:15:33".into());
        record.insert("end_time".into(), "16:15:33".into());
        record.insert("count".into(), 3.into());
        serde_json::Value::Object(record).to_string() + "\n"
    }

    #[test]
    fn json_records_map_like_the_w3c_format() {
        let (tsv, _) = run(&(HEADER.to_owned() + &sekoia_line()));
        let (json, stats) = run(&sekoia_json_line());
        assert_eq!((stats.events, stats.malformed), (1, 0));
        let (t, j) = (tsv[0].to_json(), json[0].to_json());
        for path in [
            "@timestamp",
            "source",
            "destination",
            "url",
            "http",
            "user_agent",
            "tls",
            "server",
            "related",
            "network",
        ] {
            assert_eq!(t[path], j[path], "{path}");
        }
        for path in ["action", "outcome", "duration", "category", "type"] {
            assert_eq!(t["event"][path], j["event"][path], "event.{path}");
        }
        assert_eq!(j["@timestamp"], "2023-12-05T16:15:33Z");
        // Columns that are not W3C ones are kept, as unknown W3C columns are.
        assert_eq!(j["aws"]["cloudfront"]["count"], "3");
        assert_eq!(j["aws"]["cloudfront"]["end_time"], "16:15:33");
        assert_eq!(j["aws"]["cloudfront"]["edge_location"], "test-P1");
    }

    #[test]
    fn v2_logs_may_carry_unix_timestamps_instead_of_date_and_time() {
        let json = r#"{"timestamp(ms)":"1701792933123","c-ip":"192.0.2.1","cs-method":"GET","sc-status":"404","cs-uri-stem":"/missing"}"#;
        let (events, stats) = run(&format!("{json}\n"));
        assert_eq!(stats.malformed, 0);
        assert_eq!(
            events[0].get_str("@timestamp"),
            Some("2023-12-05T16:15:33.123Z")
        );
        assert_eq!(events[0].get_str("event.outcome"), Some("failure"));
        assert_eq!(events[0].get_str("url.path"), Some("/missing"));

        let w3c = "#Version: 1.0\n#Fields: timestamp c-ip cs-method sc-status\n1701792933.5\t192.0.2.1\tPUT\t201\n";
        let (events, stats) = run(w3c);
        assert_eq!(stats.malformed, 0);
        assert_eq!(
            events[0].get_str("@timestamp"),
            Some("2023-12-05T16:15:33.5Z")
        );
        assert_eq!(events[0].get_str("http.request.method"), Some("PUT"));
    }

    #[test]
    fn broken_json_records_are_forwarded_raw() {
        let text = "{\"date\":\"2023-12-05\",\"x-edge-location\":\n".to_owned()
            + r#"{"date":"2023-12-05","time":"bad","c-ip":"192.0.2.1"}"#
            + "\n"
            + &sekoia_json_line();
        let (events, stats) = run(&text);
        assert_eq!((stats.events, stats.malformed), (3, 2));
        assert_eq!(events[0].get_str("event.kind"), Some("pipeline_error"));
        assert_error_contains(&events[1], "date/time");
        assert_eq!(events[2].get_str("event.action"), Some("RefreshHit"));
    }
}
