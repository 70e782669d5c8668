//! Amazon RDS and Aurora logs published to CloudWatch Logs
//! (`/aws/rds/instance/<db>/<log type>`, `/aws/rds/cluster/<cluster>/<log type>`), as
//! far as their documented layouts allow:
//!
//! * PostgreSQL (`postgresql`): RDS's fixed `log_line_prefix` `%t:%r:%u@%d:[%p]:`, i.e.
//!   `2024-05-01 12:00:00 UTC:10.0.0.5(52345):app@orders:[12345]:LOG:  message`;
//!   `duration: <ms> ms  statement: ...` (slow statements) and pgAudit `AUDIT:` lines.
//! * MySQL / MariaDB / Aurora MySQL error log (`error`): `<time> <thread> [<Level>]
//!   [<code>] [<subsystem>] message` (8.0) or without code/subsystem (5.7).
//! * Audit log (`audit`, MariaDB Audit Plugin and Aurora advanced auditing):
//!   `timestamp,serverhost,username,host,connectionid,queryid,operation,database,
//!   object,retcode`.
//! * Slow query log (`slowquery`): the multi-line `# User@Host:` / `# Query_time:` entry
//!   CloudWatch keeps as one log event.
//!
//! Anything else (general log, upgrade log, unknown prefixes) is kept as `message`.
//! Database-specific fields go under `aws.rds.*`.

use std::sync::OnceLock;

use regex::{Captures, Regex};

use crate::event::Event;
use crate::formats::cloudwatch_inner::level;
use crate::util;

fn regex(cell: &'static OnceLock<Option<Regex>>, pattern: &str) -> Option<&'static Regex> {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

/// The captures of `text` by the regex `pattern` (compiled once into `cell`), or
/// `None` when the line is not of that layout.
fn captures<'t>(
    cell: &'static OnceLock<Option<Regex>>,
    pattern: &str,
    text: &'t str,
) -> Option<Captures<'t>> {
    regex(cell, pattern)?.captures(text)
}

/// Maps one RDS message. Never fails: unknown layouts are messages.
pub(crate) fn map(group: &str, stream: Option<&str>, text: &str) -> Event {
    let mut ev = Event::new();
    ev.set("cloud.service.name", "rds");
    let mut parts = group.trim_start_matches("/aws/rds/").split('/');
    let scope = parts.next().unwrap_or("");
    let name = parts.next().filter(|s| !s.is_empty());
    let log_type = parts.next().filter(|s| !s.is_empty());
    match scope {
        "cluster" => ev.set_opt("aws.rds.db_cluster_identifier", name.map(str::to_owned)),
        _ => ev.set_opt("aws.rds.db_instance_identifier", name.map(str::to_owned)),
    }
    ev.set_opt("aws.rds.log_type", log_type.map(str::to_owned));
    if scope == "cluster" {
        // Aurora names each instance's stream after the instance.
        ev.set_opt("aws.rds.db_instance_identifier", stream.map(str::to_owned));
    }
    let mapped = match log_type {
        Some("postgresql") => postgres(&mut ev, text),
        Some("audit") => audit(&mut ev, text),
        Some("slowquery") => slow_query(&mut ev, text),
        Some("error") => mysql_error(&mut ev, text),
        _ => postgres(&mut ev, text) || mysql_error(&mut ev, text),
    };
    if !mapped {
        ev.set("message", text.to_owned());
    }
    ev
}

fn set_client(ev: &mut Event, ip: &str, port: Option<&str>) {
    if let Some(ip) = util::canonical_ip(ip) {
        ev.set("source.ip", ip.clone());
        ev.set("source.address", ip.clone());
        ev.push_unique("related.ip", ip);
        ev.set_opt("source.port", port.and_then(|p| p.parse::<u16>().ok()));
    }
}

fn postgres(ev: &mut Event, text: &str) -> bool {
    static PREFIX: OnceLock<Option<Regex>> = OnceLock::new();
    let Some(c) = captures(
        &PREFIX,
        r"(?s)^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d+)?) UTC:([^:(]*)(?:\((\d+)\))?:([^@:]*)@([^:]*):\[(\d+)\]:([A-Z0-9]+):\s*(.*)$",
        text,
    ) else {
        return false;
    };
    let get = |i: usize| c.get(i).map_or("", |m| m.as_str());
    ev.set_opt("@timestamp", util::date_time_utc(get(1), get(2)));
    set_client(ev, get(3), c.get(4).map(|m| m.as_str()));
    util::set_user(ev, util::field(get(5)));
    if let Some(db) = util::field(get(6)) {
        ev.set("aws.rds.database", db.to_owned());
    }
    ev.set_opt("process.pid", util::uint(get(7)));
    ev.set("log.level", level(get(8)));
    let message = get(9);
    ev.set("message", message.to_owned());
    if let Some(rest) = message.strip_prefix("duration: ")
        && let Some((ms, after)) = rest.split_once(" ms")
        && let Ok(ms) = ms.parse::<f64>()
    {
        if ms.is_finite() && ms >= 0.0 {
            ev.set("event.duration", (ms * 1_000_000.0).round() as u64);
        }
        if let Some(stmt) = after.trim_start().strip_prefix("statement: ") {
            ev.set("aws.rds.statement", stmt.to_owned());
        }
    } else if let Some(rest) = message.strip_prefix("AUDIT: ") {
        // pgAudit: AUDIT_TYPE,STATEMENT_ID,SUBSTATEMENT_ID,CLASS,COMMAND,OBJECT_TYPE,
        // OBJECT_NAME,STATEMENT,PARAMETER
        let fields: Vec<&str> = rest.splitn(9, ',').collect();
        if fields.len() >= 8 {
            ev.set("aws.rds.audit.type", fields[0].to_owned());
            ev.set("aws.rds.audit.class", fields[3].to_owned());
            ev.set("event.action", fields[4].to_ascii_lowercase());
            ev.set_str("aws.rds.audit.object_type", Some(fields[5]));
            ev.set_str("aws.rds.audit.object_name", Some(fields[6]));
            ev.set("aws.rds.statement", fields[7].to_owned());
        }
    } else if message.starts_with("connection authorized") {
        ev.set("event.action", "connection_authorized");
        ev.set("event.outcome", "success");
    } else if message.starts_with("password authentication failed") {
        ev.set("event.action", "authentication_failed");
        ev.set("event.outcome", "failure");
        util::set_category(ev, &["authentication"]);
    }
    true
}

fn mysql_error(ev: &mut Event, text: &str) -> bool {
    static LINE: OnceLock<Option<Regex>> = OnceLock::new();
    let Some(c) = captures(
        &LINE,
        r"(?s)^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z) (\d+) \[(\w+)\] (?:\[(MY-\d+)\] \[(\w+)\] )?(.*)$",
        text,
    ) else {
        return false;
    };
    let get = |i: usize| c.get(i).map_or("", |m| m.as_str());
    ev.set_opt("@timestamp", util::iso_timestamp(get(1)));
    ev.set_opt("aws.rds.thread_id", util::uint(get(2)));
    ev.set("log.level", level(get(3)));
    ev.set_str("error.code", c.get(4).map(|m| m.as_str()));
    ev.set_str("aws.rds.subsystem", c.get(5).map(|m| m.as_str()));
    ev.set("message", get(6).to_owned());
    true
}

fn audit(ev: &mut Event, text: &str) -> bool {
    // The object (query text) is quoted and may hold commas: take eight fields from
    // the left and the return code from the right.
    let mut left = text.splitn(9, ',');
    let fields: Vec<&str> = left.by_ref().take(8).collect();
    let Some(rest) = left.next() else {
        return false;
    };
    let Some((object, retcode)) = rest.rsplit_once(',') else {
        return false;
    };
    if fields.len() != 8 {
        return false;
    }
    let time = fields[0];
    let ts = if time.len() == 17 {
        // MariaDB plugin: `20240501 12:00:00`.
        let date = format!("{}-{}-{}", &time[..4], &time[4..6], &time[6..8]);
        util::date_time_utc(&date, &time[9..])
    } else {
        // Aurora advanced auditing: microseconds since the epoch.
        time.parse::<i64>()
            .ok()
            .and_then(|us| util::epoch_millis(us / 1000))
    };
    let Some(ts) = ts else {
        return false;
    };
    ev.set("@timestamp", ts);
    ev.set("host.name", fields[1].to_owned());
    util::set_user(ev, util::field(fields[2]));
    set_client(ev, fields[3], None);
    ev.set_opt("aws.rds.connection_id", util::uint(fields[4]));
    ev.set_opt("aws.rds.query_id", util::uint(fields[5]));
    ev.set("event.action", fields[6].to_ascii_lowercase());
    if let Some(db) = util::field(fields[7]) {
        ev.set("aws.rds.database", db.to_owned());
    }
    let object = object.trim_matches('\'');
    if !object.is_empty() {
        ev.set("aws.rds.statement", object.to_owned());
    }
    if let Some(code) = util::uint(retcode.trim()) {
        ev.set("aws.rds.return_code", code);
        util::set_outcome(ev, code == 0);
    }
    if fields[6].starts_with("FAILED_CONNECT") || fields[6] == "CONNECT" {
        util::set_category(ev, &["authentication"]);
    }
    ev.set("message", text.to_owned());
    true
}

fn slow_query(ev: &mut Event, text: &str) -> bool {
    if !text.starts_with("# ") {
        return false;
    }
    let mut statement = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# User@Host: ") {
            // `admin[admin] @  [10.0.0.8]  Id:    26`
            if let Some((user, _)) = rest.split_once('[') {
                util::set_user(ev, util::field(user.trim()));
            }
            if let Some(host) = rest.split(" @ ").nth(1)
                && let Some(ip) = host.split('[').nth(1).and_then(|h| h.split(']').next())
            {
                set_client(ev, ip, None);
            }
        } else if let Some(rest) = line.strip_prefix("# Query_time: ") {
            let mut words = rest.split_whitespace();
            if let Some(secs) = words.next().and_then(util::non_negative_f64) {
                ev.set("event.duration", util::secs_to_nanos(secs));
                ev.set("aws.rds.query_time_sec", secs);
            }
            while let Some(w) = words.next() {
                let v = words.next().and_then(util::non_negative_f64);
                match w {
                    "Lock_time:" => ev.set_opt("aws.rds.lock_time_sec", v),
                    "Rows_sent:" => ev.set_opt("aws.rds.rows_sent", v.map(|n| n as u64)),
                    "Rows_examined:" => ev.set_opt("aws.rds.rows_examined", v.map(|n| n as u64)),
                    _ => {}
                }
            }
        } else if let Some(t) = line.strip_prefix("# Time: ") {
            ev.set_opt("@timestamp", util::iso_timestamp(t.trim()));
        } else if !line.starts_with('#')
            && !line.starts_with("SET timestamp=")
            && !line.starts_with("use ")
        {
            statement.push(line);
        }
    }
    if !statement.is_empty() {
        ev.set("aws.rds.statement", statement.join("\n"));
    }
    ev.set("message", text.to_owned());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::assert_fields;

    #[test]
    fn postgres_lines() {
        let e = map(
            "/aws/rds/instance/orders-db/postgresql",
            Some("orders-db.0"),
            "2024-05-01 12:00:00 UTC:10.0.0.5(52345):app_user@orders:[12345]:LOG:  duration: 1523.456 ms  statement: SELECT * FROM orders",
        )
        .to_json();
        assert_fields(
            &e,
            json!({
                "@timestamp": "2024-05-01T12:00:00Z",
                "source": {"ip": "10.0.0.5", "port": 52345},
                "user": {"name": "app_user"},
                "aws": {
                    "rds": {
                        "database": "orders",
                        "statement": "SELECT * FROM orders",
                        "db_instance_identifier": "orders-db",
                    },
                },
                "process": {"pid": 12345},
                "log": {"level": "log"},
                "event": {"duration": 1_523_456_000u64},
            }),
        );
        let e = map(
            "/aws/rds/instance/orders-db/postgresql",
            None,
            "2024-05-01 12:00:01 UTC:203.0.113.9(40000):admin@postgres:[222]:FATAL:  password authentication failed for user \"admin\"",
        )
        .to_json();
        assert_eq!(e["event"]["outcome"], "failure");
        assert_eq!(e["log"]["level"], "fatal");
    }

    #[test]
    fn mysql_error_audit_and_slow_query() {
        let e = map(
            "/aws/rds/instance/shop/error",
            None,
            "2024-05-01T12:00:00.123456Z 0 [Warning] [MY-010055] [Server] IP address '10.0.0.9' could not be resolved",
        )
        .to_json();
        assert_eq!(e["log"]["level"], "warning");
        assert_eq!(e["error"]["code"], "MY-010055");
        let e = map(
            "/aws/rds/cluster/shop-cluster/audit",
            Some("shop-instance-1"),
            "20240501 12:00:00,ip-10-0-0-5,admin,10.0.0.8,26,0,QUERY,shop,'SELECT id, name FROM users',0",
        )
        .to_json();
        assert_fields(
            &e,
            json!({
                "event": {"action": "query"},
                "user": {"name": "admin"},
                "source": {"ip": "10.0.0.8"},
                "aws": {
                    "rds": {
                        "statement": "SELECT id, name FROM users",
                        "db_cluster_identifier": "shop-cluster",
                        "db_instance_identifier": "shop-instance-1",
                    },
                },
            }),
        );
        let e = map(
            "/aws/rds/instance/shop/slowquery",
            None,
            "# Time: 2024-05-01T12:00:00.000000Z\n# User@Host: admin[admin] @  [10.0.0.8]  Id:    26\n# Query_time: 2.000193  Lock_time: 0.000000 Rows_sent: 1  Rows_examined: 0\nSET timestamp=1714564800;\nSELECT SLEEP(2);",
        )
        .to_json();
        assert_eq!(e["event"]["duration"], 2_000_193_000u64);
        assert_eq!(e["aws"]["rds"]["rows_sent"], 1);
        assert_eq!(e["aws"]["rds"]["statement"], "SELECT SLEEP(2);");
        assert_eq!(e["source"]["ip"], "10.0.0.8");
    }
}
