//! Amazon API Gateway logs in CloudWatch Logs.
//!
//! * **Access logs** are whatever `$context` variables the stage's log format names;
//!   the JSON format AWS suggests uses the variable names as keys (`requestId`, `ip`,
//!   `caller`, `user`, `requestTime`, `httpMethod`, `resourcePath`, `status`,
//!   `protocol`, `responseLength`; HTTP APIs add `routeKey`, `path`; also
//!   `requestTimeEpoch`, `userAgent`, `domainName`, `apiId`, `stage`...). They map to
//!   `source.ip`, `http.request.method`, `url.path`, `http.response.status_code`,
//!   `event.outcome`, `http.request.id`, `user_agent.*`; every variable is also kept
//!   under `aws.apigateway.<snake_case name>`. The console's CLF format (ending with the
//!   request id) maps the same way.
//! * **Execution logs** (group `API-Gateway-Execution-Logs_<api id>/<stage>`) are text
//!   lines `(<request id>) <message>`: the request id, API id and stage are extracted.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value as J;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::driver::ObjectParse;
use crate::event::Event;
use crate::readers::json_lines::text;
use crate::readers::json_records::{snake_case, snake_keys};
use crate::util;

/// A JSON access log record: a request id plus a method or route and a client address.
pub(crate) fn is_access_log(m: &serde_json::Map<String, J>) -> bool {
    let has = |k: &str| m.contains_key(k);
    has("requestId")
        && (has("httpMethod") || has("routeKey"))
        && (has("ip") || has("sourceIp") || has("status"))
}

fn number(m: &serde_json::Map<String, J>, key: &str) -> Option<i64> {
    match m.get(key)? {
        J::Number(n) => n.as_i64(),
        J::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `[01/May/2024:12:00:00 +0000]`-style `$context.requestTime`.
fn clf_time(v: &str) -> Option<String> {
    let fmt = format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    let t = OffsetDateTime::parse(v.trim_matches(['[', ']']), &fmt).ok()?;
    util::rfc3339(t.to_offset(time::UtcOffset::UTC))
}

/// Maps a JSON access log record.
pub(crate) fn map_access(cx: &ObjectParse<'_>, m: serde_json::Map<String, J>) -> Event {
    let mut ev = Event::new();
    ev.set("cloud.service.name", "apigateway");
    util::set_category(&mut ev, &["web"]);
    util::set_type(&mut ev, &["access"]);
    let time = number(&m, "requestTimeEpoch")
        .and_then(|n| {
            // REST APIs give milliseconds, HTTP APIs seconds.
            if n > 100_000_000_000 {
                util::epoch_millis(n)
            } else {
                util::epoch_secs(n)
            }
        })
        .or_else(|| text(&m, "requestTime").and_then(clf_time));
    ev.set_opt("@timestamp", time);
    if let Some(id) = text(&m, "requestId") {
        ev.set("http.request.id", id.to_owned());
    }
    if let Some(ip) = text(&m, "ip")
        .or_else(|| text(&m, "sourceIp"))
        .and_then(util::canonical_ip)
    {
        ev.set("source.ip", ip.clone());
        ev.set("source.address", ip.clone());
        ev.push_unique("related.ip", ip);
    }
    let route = text(&m, "routeKey").and_then(|r| r.split_once(' '));
    let method = text(&m, "httpMethod").or(route.map(|(m, _)| m));
    if let Some(method) = method {
        ev.set("http.request.method", method.to_ascii_uppercase());
    }
    let path = text(&m, "path")
        .or_else(|| text(&m, "resourcePath"))
        .or(route.map(|(_, p)| p));
    ev.set_str("url.path", path);
    if let Some(status) = number(&m, "status").and_then(|s| u16::try_from(s).ok()) {
        ev.set("http.response.status_code", status);
        util::set_outcome(&mut ev, status < 400);
    }
    if let Some(p) = text(&m, "protocol") {
        if let Some(v) = p.strip_prefix("HTTP/") {
            ev.set("http.version", v.to_owned());
        }
        ev.set("network.protocol", "http");
    }
    if let Some(n) = number(&m, "responseLength").and_then(|n| u64::try_from(n).ok()) {
        ev.set("http.response.body.bytes", n);
    }
    if let Some(ua) = text(&m, "userAgent") {
        cx.enricher.user_agent(&mut ev, ua);
    }
    util::set_user(&mut ev, text(&m, "user").or_else(|| text(&m, "caller")));
    if let Some(domain) = text(&m, "domainName") {
        cx.enricher
            .domain(&mut ev, crate::enrich::DomainField::Url, domain);
    }
    if let Some(latency) = number(&m, "responseLatency").and_then(|n| u64::try_from(n).ok()) {
        ev.set("event.duration", latency * 1_000_000);
    }
    for (k, v) in m {
        if !v.is_null() {
            ev.set_dyn("aws.apigateway", &snake_case(&k), snake_keys(v));
        }
    }
    ev
}

/// The CLF access log format the API Gateway console offers:
/// `$context.identity.sourceIp $context.identity.caller $context.identity.user
/// [$context.requestTime] "$context.httpMethod $context.resourcePath $context.protocol"
/// $context.status $context.responseLength $context.requestId`. Recognised only with a
/// request id in UUID form at the end, so web server logs in CLF are not taken for it.
fn clf_regex() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r#"^(\S+) (\S+) (\S+) \[([^\]]+)\] "(\S+) (\S+) (\S+)" (\d{3}) (\S+) ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"#,
        )
        .ok()
    })
    .as_ref()
}

/// A CLF access log line, mapped as its JSON equivalent; `None` when it is not one.
pub(crate) fn map_clf_access(cx: &ObjectParse<'_>, text: &str) -> Option<Event> {
    let c = clf_regex()?.captures(text)?;
    let names = [
        "ip",
        "caller",
        "user",
        "requestTime",
        "httpMethod",
        "resourcePath",
        "protocol",
        "status",
        "responseLength",
        "requestId",
    ];
    let mut m = serde_json::Map::new();
    for (i, name) in names.iter().enumerate() {
        if let Some(v) = c.get(i + 1) {
            m.insert((*name).to_owned(), J::String(v.as_str().to_owned()));
        }
    }
    let mut ev = map_access(cx, m);
    ev.set("message", text.to_owned());
    Some(ev)
}

/// Maps an execution log line; `group_rest` is `<api id>/<stage>`.
pub(crate) fn map_execution(group_rest: &str, text: &str) -> Event {
    let mut ev = Event::new();
    ev.set("cloud.service.name", "apigateway");
    let (api, stage) = util::split_first(group_rest, '/');
    if !api.is_empty() {
        ev.set("aws.apigateway.api_id", api.to_owned());
    }
    ev.set_str("aws.apigateway.stage", stage);
    let message = match text
        .strip_prefix('(')
        .and_then(|rest| rest.split_once(") "))
    {
        Some((id, message)) if !id.contains(' ') => {
            ev.set("http.request.id", id.to_owned());
            message
        }
        _ => text,
    };
    ev.set("message", message.to_owned());
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{assert_fields, cloudwatch_context};
    use serde_json::json;

    #[test]
    fn rest_api_json_access_log() {
        let cx = cloudwatch_context();
        let record = r#"{"requestId":"c6af9ac6-7b61-11e6-9a41-93e8deadbeef","ip":"198.51.100.7","caller":"-","user":"-","requestTime":"01/May/2024:12:00:00 +0000","httpMethod":"POST","resourcePath":"/pets","status":"403","protocol":"HTTP/1.1","responseLength":"42","userAgent":"curl/8.4.0"}"#;
        let m = crate::readers::json_lines::json_object_line(record).unwrap();
        assert!(is_access_log(&m));
        let e = map_access(&cx, m).to_json();
        assert_fields(
            &e,
            json!({
                "@timestamp": "2024-05-01T12:00:00Z",
                "source": {"ip": "198.51.100.7"},
                "http": {
                    "request": {"method": "POST", "id": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"},
                    "response": {"status_code": 403, "body": {"bytes": 42}},
                    "version": "1.1",
                },
                "url": {"path": "/pets"},
                "event": {"outcome": "failure"},
                "user_agent": {"name": "curl"},
            }),
        );
        assert!(e["user"].is_null(), "`-` is no user");
        assert_eq!(e["aws"]["apigateway"]["resource_path"], "/pets");
    }

    #[test]
    fn clf_access_log_line() {
        let cx = cloudwatch_context();
        let e = map_clf_access(
            &cx,
            r#"198.51.100.7 - - [01/May/2024:12:00:00 +0000] "GET /pets HTTP/1.1" 200 312 c6af9ac6-7b61-11e6-9a41-93e8deadbeef"#,
        )
        .unwrap()
        .to_json();
        assert_eq!(e["source"]["ip"], "198.51.100.7");
        assert_eq!(e["http"]["response"]["status_code"], 200);
        assert_eq!(e["url"]["path"], "/pets");
        assert_eq!(e["@timestamp"], "2024-05-01T12:00:00Z");
        assert!(
            map_clf_access(
                &cx,
                r#"10.0.0.1 - - [01/May/2024:12:00:00 +0000] "GET / HTTP/1.1" 200 5 -"#
            )
            .is_none()
        );
    }

    #[test]
    fn execution_log_line() {
        let e = map_execution(
            "a1b2c3d4e5/prod",
            "(c6af9ac6-7b61-11e6-9a41-93e8deadbeef) Method completed with status: 200",
        )
        .to_json();
        assert_eq!(
            e["http"]["request"]["id"],
            "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
        );
        assert_eq!(e["message"], "Method completed with status: 200");
        assert_eq!(e["aws"]["apigateway"]["stage"], "prod");
        assert_eq!(e["aws"]["apigateway"]["api_id"], "a1b2c3d4e5");
    }
}
