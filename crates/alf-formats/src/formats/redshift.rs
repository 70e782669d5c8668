//! Amazon Redshift audit logs delivered to S3
//! (`AWSLogs/<account>/redshift/<region>/<y>/<m>/<d>/<account>_redshift_<region>_<cluster>_<log type>_<time>.gz`):
//!
//! * `connectionlog`: `|`-separated `event|recordtime|remotehost|remoteport|pid|dbname|
//!   username|authmethod|duration|sslversion|sslcipher|mtu|sslcompression|sslexpansion|
//!   iamauthguid|application_name|os_version|driver_version|plugin_name|
//!   protocol_version|sessionid|compression` (values padded with blanks);
//! * `userlog`: `userid|username|oldusername|action|usecreatedb|usesuper|usecatupd|
//!   valuntil|pid|xid|recordtime`;
//! * `useractivitylog`: `'<time> UTC [ db=<db> user=<user> pid=<pid> userid=<id>
//!   xid=<xid> ]' LOG: <query>`; a query may span lines: a line that does not start a
//!   record continues the previous one.
//!
//! `recordtime` is `Mon, 1 Jan 2024 12:00:00:123` (milliseconds after a colon). The log
//! type comes from the key, or from the record's shape when the key does not say.
//! ECS: `user.name`, `source.ip`/`port`, `event.action`, `process.pid`, the database
//! under `aws.redshift.database`, the query text under `aws.redshift.query`.

use std::io::BufRead;
use std::sync::OnceLock;

use regex::Regex;
use time::{Date, Month, PrimitiveDateTime, Time};

use crate::driver::{EventSink, Line, MAX_LINE, NumberedLines, ObjectParse, ParseError, RecordError};
use crate::event::{Event, Value};
use crate::registry::{ContentClue, FirstLine, FormatSpec, KeyClue, Reader};
use crate::util;

/// Connection, user and user activity logs.
pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "redshift-audit",
    dataset: "aws.redshift",
    example_key: "AWSLogs/123456789012/redshift/us-east-1/2024/03/15/123456789012_redshift_us-east-1_analytics_connectionlog_2024-03-15T00:05.gz",
    key_clues: &[KeyClue {
        rank: 5,
        layout: "AWSLogs/<account>/redshift/",
        matches: |k| k.key.contains("/redshift/") && LogType::from_key(k.key).is_some(),
    }],
    content_clues: &[
        ContentClue {
            rank: 5,
            what: "Redshift user activity record",
            first_line: FirstLine::Text,
            matches: |line| line.starts_with('\'') && line.contains(" UTC [ db="),
        },
        ContentClue {
            rank: 5,
            what: "Redshift connection record",
            first_line: FirstLine::Text,
            matches: |line| {
                line.contains('|')
                    && matches!(
                        line.split('|').next().unwrap_or("").trim_end(),
                        "authenticated"
                            | "authentication failure"
                            | "initiating session"
                            | "disconnecting session"
                            | "set application_name"
                    )
            },
        },
    ],
    skip: None,
    options: &[],
    reader: Reader::Object(parse),
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogType {
    Connection,
    User,
    UserActivity,
}

impl LogType {
    fn from_key(key: &str) -> Option<LogType> {
        let name = key.rsplit('/').next().unwrap_or(key);
        if name.contains("_useractivitylog_") {
            Some(LogType::UserActivity)
        } else if name.contains("_userlog_") {
            Some(LogType::User)
        } else if name.contains("_connectionlog_") {
            Some(LogType::Connection)
        } else {
            None
        }
    }

    fn from_line(line: &str) -> LogType {
        if line.starts_with('\'') {
            LogType::UserActivity
        } else if line
            .split('|')
            .next()
            .is_some_and(|f| !f.trim().is_empty() && f.trim().bytes().all(|b| b.is_ascii_digit()))
        {
            LogType::User
        } else {
            LogType::Connection
        }
    }
}

fn activity_regex() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?s)^'(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z) UTC \[ (.*?) \]' LOG: ?(.*)$")
            .ok()
    })
    .as_ref()
}

/// `Mon, 1 Jan 2024 12:00:00:123` as UTC RFC 3339.
fn record_time(v: &str) -> Option<String> {
    let v = v.trim();
    let rest = v.split_once(", ").map_or(v, |(_, r)| r);
    let mut parts = rest.split(' ');
    let day: u8 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => Month::January,
        "Feb" => Month::February,
        "Mar" => Month::March,
        "Apr" => Month::April,
        "May" => Month::May,
        "Jun" => Month::June,
        "Jul" => Month::July,
        "Aug" => Month::August,
        "Sep" => Month::September,
        "Oct" => Month::October,
        "Nov" => Month::November,
        "Dec" => Month::December,
        _ => return None,
    };
    let year: i32 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':');
    let h: u8 = clock.next()?.parse().ok()?;
    let m: u8 = clock.next()?.parse().ok()?;
    let s: u8 = clock.next()?.parse().ok()?;
    let ms: u16 = clock.next().map_or(Some(0), |x| x.parse().ok())?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let t = Time::from_hms_milli(h, m, s, ms).ok()?;
    util::rfc3339(PrimitiveDateTime::new(date, t).assume_utc())
}

fn cell<'a>(fields: &[&'a str], i: usize) -> Option<&'a str> {
    fields.get(i).map(|f| f.trim()).filter(|f| !f.is_empty())
}

/// The `|`-separated cells of a connection or user log line (at least `required`,
/// `known` in a complete one) and its event stamped with the `recordtime` cell.
fn split_record(
    line: &str,
    required: usize,
    known: usize,
    time_cell: usize,
) -> Result<(Vec<&str>, Event), RecordError> {
    let f: Vec<&str> = line.split('|').collect();
    if f.len() < required {
        return Err(RecordError::FieldCount {
            expected: known,
            found: f.len(),
        });
    }
    let raw_time = cell(&f, time_cell).unwrap_or("");
    let ts = record_time(raw_time).ok_or_else(|| RecordError::invalid("recordtime", raw_time))?;
    let mut ev = Event::new();
    ev.set("@timestamp", ts);
    Ok((f, ev))
}

/// The last fields of a connection or user log event: its log type and the line.
fn finish_record(mut ev: Event, log_type: &'static str, line: &str) -> Event {
    ev.set("aws.redshift.log_type", log_type);
    ev.set("message", line.trim_end().to_owned());
    ev
}

fn map_connection(line: &str) -> Result<Event, RecordError> {
    let (f, mut ev) = split_record(line, 9, 22, 1)?;
    util::set_category(&mut ev, &["authentication", "session"]);
    let action = cell(&f, 0).unwrap_or("-");
    ev.set("event.action", action.to_owned());
    let (kind, outcome) = match action {
        "authenticated" => ("start", Some("success")),
        "authentication failure" => ("start", Some("failure")),
        "initiating session" => ("start", None),
        "disconnecting session" => ("end", None),
        _ => ("info", None),
    };
    ev.set("event.type", Value::Arr(vec![Value::Static(kind)]));
    ev.set_opt("event.outcome", outcome);
    if let Some(host) = cell(&f, 2) {
        // IPv4 clients appear as IPv4-mapped IPv6 (`::ffff:10.0.0.5`).
        let host = host.strip_prefix("::ffff:").unwrap_or(host);
        match util::canonical_ip(host) {
            Some(ip) => {
                ev.set("source.ip", ip.clone());
                ev.set("source.address", ip.clone());
                ev.push_unique("related.ip", ip);
            }
            None => ev.set("source.address", host.to_owned()),
        }
    }
    ev.set_opt(
        "source.port",
        cell(&f, 3).and_then(|p| p.parse::<u16>().ok()),
    );
    ev.set_opt("process.pid", cell(&f, 4).and_then(util::uint));
    ev.set_opt("aws.redshift.database", cell(&f, 5).map(str::to_owned));
    util::set_user(&mut ev, cell(&f, 6));
    ev.set_opt("aws.redshift.auth_method", cell(&f, 7).map(str::to_owned));
    if let Some(us) = cell(&f, 8).and_then(util::uint) {
        ev.set("event.duration", us.saturating_mul(1000));
    }
    ev.set_opt("tls.version", cell(&f, 9).map(str::to_owned));
    ev.set_opt("tls.cipher", cell(&f, 10).map(str::to_owned));
    ev.set_opt(
        "aws.redshift.iam_auth_guid",
        cell(&f, 14).map(str::to_owned),
    );
    ev.set_opt(
        "aws.redshift.application_name",
        cell(&f, 15).map(str::to_owned),
    );
    ev.set_opt("aws.redshift.os_version", cell(&f, 16).map(str::to_owned));
    ev.set_opt(
        "aws.redshift.driver_version",
        cell(&f, 17).map(str::to_owned),
    );
    ev.set_opt("aws.redshift.plugin_name", cell(&f, 18).map(str::to_owned));
    ev.set_opt("aws.redshift.session_id", cell(&f, 20).map(str::to_owned));
    Ok(finish_record(ev, "connectionlog", line))
}

fn map_user(line: &str) -> Result<Event, RecordError> {
    let (f, mut ev) = split_record(line, 11, 11, 10)?;
    util::set_category(&mut ev, &["iam"]);
    let action = cell(&f, 3).unwrap_or("-");
    ev.set("event.action", action.to_owned());
    let kind = match action {
        "create" => "creation",
        "drop" => "deletion",
        "alter" | "rename" => "change",
        _ => "info",
    };
    ev.set(
        "event.type",
        Value::Arr(vec![Value::Static("user"), Value::Static(kind)]),
    );
    ev.set_opt("user.target.id", cell(&f, 0).map(str::to_owned));
    if let Some(name) = cell(&f, 1) {
        ev.set("user.target.name", name.to_owned());
        ev.push_unique("related.user", name.to_owned());
    }
    ev.set_opt("aws.redshift.old_user_name", cell(&f, 2).map(str::to_owned));
    let flag = |i: usize| cell(&f, i).map(|v| v == "1" || v == "t" || v == "true");
    ev.set_opt("aws.redshift.usecreatedb", flag(4));
    ev.set_opt("aws.redshift.usesuper", flag(5));
    ev.set_opt("aws.redshift.usecatupd", flag(6));
    ev.set_opt("aws.redshift.valuntil", cell(&f, 7).map(str::to_owned));
    ev.set_opt("process.pid", cell(&f, 8).and_then(util::uint));
    ev.set_opt("aws.redshift.xid", cell(&f, 9).and_then(util::uint));
    Ok(finish_record(ev, "userlog", line))
}

fn map_activity(record: &str) -> Result<Event, RecordError> {
    let c = activity_regex()
        .and_then(|re| re.captures(record))
        .ok_or_else(|| RecordError::Other("not a user activity log record".into()))?;
    let get = |i: usize| c.get(i).map_or("", |m| m.as_str());
    let mut ev = Event::new();
    let ts = util::iso_timestamp(get(1)).ok_or_else(|| RecordError::invalid("time", get(1)))?;
    ev.set("@timestamp", ts);
    util::set_category(&mut ev, &["database"]);
    util::set_type(&mut ev, &["access"]);
    for pair in get(2).split(' ') {
        let Some((k, v)) = pair.split_once('=') else {
            continue;
        };
        match k {
            "db" => ev.set("aws.redshift.database", v.to_owned()),
            "user" => util::set_user(&mut ev, util::field(v)),
            "pid" => ev.set_opt("process.pid", util::uint(v)),
            "userid" => ev.set("user.id", v.to_owned()),
            "xid" => ev.set_opt("aws.redshift.xid", util::uint(v)),
            _ => {}
        }
    }
    let query = get(3).trim_end();
    ev.set("aws.redshift.query", query.to_owned());
    let verb = query
        .split_whitespace()
        .next()
        .map(|w| w.trim_end_matches(';').to_ascii_lowercase())
        .filter(|w| !w.is_empty());
    ev.set_opt("event.action", verb);
    ev.set("aws.redshift.log_type", "useractivitylog");
    ev.set("message", query.to_owned());
    Ok(ev)
}

pub fn parse(
    reader: &mut dyn BufRead,
    cx: &mut ObjectParse<'_>,
    sink: &mut dyn EventSink,
) -> Result<(), ParseError> {
    let mut log_type = LogType::from_key(&cx.object.key);
    let mut lines = NumberedLines::new(0, 0);
    let mut pending = Pending::default();
    while let Some(line) = lines.next_line(reader, &mut cx.stats)? {
        let text = &line.text;
        let kind = *log_type.get_or_insert_with(|| LogType::from_line(text));
        let starts_record = kind != LogType::UserActivity
            || activity_regex().is_some_and(|re| re.is_match(text))
            || pending.text.is_empty();
        if starts_record {
            pending.flush(cx, sink, kind)?;
            pending.start(&line);
        } else if pending.text.len() + text.len() < MAX_LINE {
            pending.text.push('\n');
            pending.text.push_str(text);
        } else {
            pending.truncated = true;
        }
    }
    let kind = log_type.unwrap_or(LogType::Connection);
    pending.flush(cx, sink, kind)?;
    Ok(())
}

/// The record being read (user activity records may span lines).
#[derive(Default)]
struct Pending {
    text: String,
    line: u64,
    offset: u64,
    truncated: bool,
}

impl Pending {
    fn start(&mut self, first: &Line<'_>) {
        self.text.clear();
        self.text.push_str(&first.text);
        self.line = first.number;
        self.offset = first.offset;
        self.truncated = first.truncated;
    }

    fn flush(
        &mut self,
        cx: &mut ObjectParse<'_>,
        sink: &mut dyn EventSink,
        kind: LogType,
    ) -> Result<(), ParseError> {
        if self.text.is_empty() {
            return Ok(());
        }
        cx.stats.records += 1;
        let text = std::mem::take(&mut self.text);
        if self.truncated {
            let reason = format!("record longer than {MAX_LINE} bytes");
            cx.emit_malformed(sink, &text, self.line, self.offset, &reason)?;
            return Ok(());
        }
        let mapped = match kind {
            LogType::Connection => map_connection(&text),
            LogType::User => map_user(&text),
            LogType::UserActivity => map_activity(&text),
        };
        match mapped {
            Ok(ev) => cx.emit(sink, ev, self.line, 0, self.offset, Some(&text))?,
            Err(e) => cx.emit_malformed(sink, &text, self.line, self.offset, &e.to_string())?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use crate::{Format, assert_fields};

    fn run(key: &str, text: &str) -> (Vec<serde_json::Value>, crate::ParseStats) {
        crate::parse_key_json_for_test(Format::RedshiftAudit, "b", key, text.as_bytes())
    }

    const PREFIX: &str = "AWSLogs/123456789012/redshift/us-east-1/2024/05/01/123456789012_redshift_us-east-1_analytics";

    #[test]
    fn connection_log() {
        let text = "authenticated |Wed, 1 May 2024 12:00:00:123|::ffff:10.0.0.5 |52345 |1073815860 |dev |admin |password |0 |TLSv1.2 |ECDHE-RSA-AES256-GCM-SHA384 |0 | | | |psql | | | |0 | |\n\
                    authentication failure |Wed, 1 May 2024 12:00:05:000|198.51.100.9 |40000 |1073815861 |dev |mallory |password |0 | | |0 | | | | | | | |0 | |\n";
        let (events, stats) = run(&format!("{PREFIX}_connectionlog_2024-05-01T12:00.gz"), text);
        assert_eq!((stats.events, stats.malformed), (2, 0));
        let e = &events[0];
        assert_fields(
            e,
            json!({
                "@timestamp": "2024-05-01T12:00:00.123Z",
                "source": {"ip": "10.0.0.5", "port": 52345},
                "user": {"name": "admin"},
                "event": {
                    "action": "authenticated",
                    "outcome": "success",
                    "dataset": "aws.redshift",
                },
                "aws": {"redshift": {"database": "dev"}},
                "tls": {"version": "TLSv1.2"},
            }),
        );
        assert_eq!(events[1]["event"]["outcome"], "failure");
    }

    #[test]
    fn user_log_and_activity_log_with_a_multi_line_query() {
        let text = "100|analyst||create|0|0|0||1073815862|12345|Wed, 1 May 2024 12:01:00:000\n";
        let (events, _) = run(&format!("{PREFIX}_userlog_2024-05-01T12:00.gz"), text);
        assert_eq!(events[0]["event"]["action"], "create");
        assert_eq!(events[0]["user"]["target"]["name"], "analyst");
        assert_eq!(events[0]["event"]["type"][1], "creation");

        let text = "'2024-05-01T12:02:00Z UTC [ db=dev user=admin pid=1073815863 userid=100 xid=12346 ]' LOG: SELECT id,\n  name\nFROM users;\n'2024-05-01T12:02:01Z UTC [ db=dev user=admin pid=1073815863 userid=100 xid=12347 ]' LOG: drop table t;\n";
        let (events, stats) = run(
            &format!("{PREFIX}_useractivitylog_2024-05-01T12:00.gz"),
            text,
        );
        assert_eq!((stats.events, stats.malformed), (2, 0));
        assert_fields(
            &events[0],
            json!({
                "aws": {"redshift": {"query": "SELECT id,\n  name\nFROM users;"}},
                "event": {"action": "select"},
                "user": {"name": "admin"},
            }),
        );
        assert_fields(&events[1], json!({"event": {"action": "drop"}, "log": {"offset": 120}}));
    }

    #[test]
    fn a_broken_line_is_forwarded_raw() {
        let (events, stats) = run(
            &format!("{PREFIX}_connectionlog_x.gz"),
            "authenticated |not a time|x |1 |2 |dev |a |b |0\n",
        );
        assert_eq!(stats.malformed, 1);
        assert_eq!(events[0]["tags"][0], "_parse_failure");
    }
}
