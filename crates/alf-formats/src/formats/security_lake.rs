//! Amazon Security Lake: OCSF 1.x records (Security Lake writes them as Parquet, one
//! event per row; [`crate::columnar`] turns each row into the JSON object mapped here).
//! The same records as JSON lines (OCSF exports, Security Lake custom sources written
//! as JSON) are read by the registry's JSON-lines reader ([`SPEC`]).
//!
//! Classes mapped (OCSF 1.0.0-rc.2 of Security Lake source version 1 and OCSF 1.1 of
//! source version 2 use the same attribute names for everything mapped here):
//! API Activity (3005: CloudTrail management and data events, EKS audit), Network
//! Activity (4001: VPC flow), DNS Activity (4003: Route 53 resolver), HTTP Activity
//! (4002: WAF, ALB), Security Finding (2001) and Detection Finding (2004: Security Hub).
//! Other classes still get the common attributes (time, cloud, endpoints, actor,
//! outcome). The whole OCSF record is kept under `aws.security_lake` so nothing is lost:
//! ECS fields are the searchable summary, the record is the evidence.

use serde_json::Value as J;

use crate::driver::RecordError;
use crate::event::{Event, Value};
use crate::registry::{ContentClue, FirstLine, FormatSpec, KeyClue, Reader, has_json_keys};
use crate::util;

/// OCSF class uids this module maps beyond the common attributes.
pub const API_ACTIVITY: u64 = 3005;
pub const NETWORK_ACTIVITY: u64 = 4001;
pub const HTTP_ACTIVITY: u64 = 4002;
pub const DNS_ACTIVITY: u64 = 4003;
pub const SECURITY_FINDING: u64 = 2001;
pub const DETECTION_FINDING: u64 = 2004;

/// The value at a dotted path of an OCSF record.
fn at<'a>(record: &'a J, path: &str) -> Option<&'a J> {
    let mut v = record;
    // Split by hand: the paths are short, and `str::split`'s searcher cost more than
    // the lookups (measured: a third of this function).
    let mut rest = path;
    loop {
        let end = rest.bytes().position(|b| b == b'.').unwrap_or(rest.len());
        v = v.get(rest.get(..end)?)?;
        match rest.get(end + 1..) {
            Some(tail) => rest = tail,
            None => break,
        }
    }
    (!v.is_null()).then_some(v)
}

fn text<'a>(record: &'a J, path: &str) -> Option<&'a str> {
    at(record, path)
        .and_then(J::as_str)
        .filter(|s| !s.is_empty())
}

/// A number; OCSF writers put integers in strings now and then.
fn uint(record: &J, path: &str) -> Option<u64> {
    match at(record, path)? {
        J::Number(n) => n.as_u64(),
        J::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// An OCSF `timestamp_t` (epoch milliseconds), or an RFC 3339 string (`*_dt` forms).
fn timestamp(record: &J, path: &str) -> Result<Option<String>, RecordError> {
    let Some(v) = at(record, path) else {
        return Ok(None);
    };
    let parsed = match v {
        J::Number(n) => n.as_i64().and_then(util::epoch_millis),
        J::String(s) => s
            .parse::<i64>()
            .ok()
            .and_then(util::epoch_millis)
            .or_else(|| util::iso_timestamp(s)),
        _ => None,
    };
    match parsed {
        Some(ts) => Ok(Some(ts)),
        None => Err(RecordError::Other(format!(
            "invalid OCSF {path}: {}",
            truncated(v)
        ))),
    }
}

fn truncated(v: &J) -> String {
    let s = v.to_string();
    match s.char_indices().nth(200) {
        Some((end, _)) => s[..end].to_owned(),
        None => s,
    }
}

/// `<side>.address`, `.ip`, `.port`, `.domain` from an OCSF network endpoint.
/// Sets one side's address, IP, port and domain; returns the IP version of its IP
/// (see [`util::set_ip_address`]).
fn set_endpoint(ev: &mut Event, record: &J, endpoint: &str, side: Side) -> Option<&'static str> {
    let (address, ip, port, domain) = match side {
        Side::Source => (
            "source.address",
            "source.ip",
            "source.port",
            "source.domain",
        ),
        Side::Destination => (
            "destination.address",
            "destination.ip",
            "destination.port",
            "destination.domain",
        ),
    };
    // The endpoint looked up once, not once per member.
    let record = at(record, endpoint)?;
    let raw_ip = text(record, "ip");
    let version = util::set_ip_address(ev, raw_ip, address, ip);
    let host = text(record, "hostname").or_else(|| text(record, "domain"));
    if let Some(host) = host {
        // `set_ip_address` sets the address whenever there is an `ip`.
        if raw_ip.is_none() {
            ev.set(address, host.to_owned());
        }
        ev.set(domain, host.to_owned());
        ev.push_unique("related.hosts", host.to_owned());
    }
    ev.set_opt(
        port,
        uint(record, "port").and_then(|p| u16::try_from(p).ok()),
    );
    version
}

#[derive(Clone, Copy)]
enum Side {
    Source,
    Destination,
}

/// Maps one OCSF record to ECS, keeping the record under `aws.security_lake`.
pub fn map_ocsf(record: J) -> Result<Event, RecordError> {
    if !record.is_object() {
        return Err(RecordError::Other("OCSF record is not an object".into()));
    }
    let class = uint(&record, "class_uid")
        .ok_or_else(|| RecordError::Other("OCSF record without class_uid".into()))?;
    let mut ev = Event::new();

    let time = timestamp(&record, "time")?;
    let time = match time {
        Some(t) => Some(t),
        None => timestamp(&record, "time_dt")?,
    };
    ev.set_opt("@timestamp", time);
    ev.set_opt("event.start", timestamp(&record, "start_time")?);
    ev.set_opt("event.end", timestamp(&record, "end_time")?);
    if let Some(duration) = uint(&record, "duration").and_then(|ms| ms.checked_mul(1_000_000)) {
        ev.set("event.duration", duration);
    }
    ev.set_str("message", text(&record, "message"));
    ev.set_str("event.code", text(&record, "metadata.event_code"));
    ev.set_str("event.reason", text(&record, "status_detail"));
    ev.set_opt("event.severity", uint(&record, "severity_id"));
    // status_id: 1 Success, 2 Failure; 0 Unknown and 99 Other say nothing.
    match uint(&record, "status_id") {
        Some(1) => ev.set("event.outcome", "success"),
        Some(2) => ev.set("event.outcome", "failure"),
        Some(_) => ev.set("event.outcome", "unknown"),
        None => {}
    }
    ev.set("cloud.provider", "aws");
    let account = text(&record, "cloud.account.uid")
        .or_else(|| text(&record, "accountid"))
        .or_else(|| text(&record, "cloud.account_uid"));
    ev.set_str("cloud.account.id", account);
    ev.set_str(
        "cloud.region",
        text(&record, "cloud.region").or_else(|| text(&record, "region")),
    );
    ev.set_str("cloud.availability_zone", text(&record, "cloud.zone"));
    ev.set_str("observer.product", text(&record, "metadata.product.name"));
    ev.set_str(
        "observer.vendor",
        text(&record, "metadata.product.vendor_name"),
    );
    ev.set_str(
        "observer.version",
        text(&record, "metadata.product.version"),
    );

    let source_ip_version = set_endpoint(&mut ev, &record, "src_endpoint", Side::Source);
    set_endpoint(&mut ev, &record, "dst_endpoint", Side::Destination);
    ev.set_str(
        "cloud.instance.id",
        text(&record, "src_endpoint.instance_uid")
            .or_else(|| text(&record, "dst_endpoint.instance_uid")),
    );

    let user_name = text(&record, "actor.user.name").or_else(|| text(&record, "user.name"));
    let user_id = text(&record, "actor.user.uid").or_else(|| text(&record, "user.uid"));
    ev.set_str("user.name", user_name);
    ev.set_str("user.id", user_id);
    if let Some(name) = user_name {
        ev.push_unique("related.user", name.to_owned());
    }
    ev.set_str(
        "user.domain",
        text(&record, "actor.user.account.uid").or_else(|| text(&record, "actor.user.account_uid")),
    );
    ev.set_str(
        "user_agent.original",
        text(&record, "http_request.user_agent"),
    );

    match class {
        API_ACTIVITY => map_api(&mut ev, &record),
        NETWORK_ACTIVITY => map_network(&mut ev, &record, source_ip_version),
        HTTP_ACTIVITY => map_http(&mut ev, &record),
        DNS_ACTIVITY => map_dns(&mut ev, &record),
        SECURITY_FINDING | DETECTION_FINDING => map_finding(&mut ev, &record),
        _ => {
            ev.set_str("event.action", text(&record, "activity_name"));
        }
    }
    ev.set("aws.security_lake", record);
    Ok(ev)
}

/// API Activity: CloudTrail management and data events, EKS audit logs.
fn map_api(ev: &mut Event, record: &J) {
    ev.set_str(
        "event.action",
        text(record, "api.operation").or_else(|| text(record, "activity_name")),
    );
    ev.set_str("event.provider", text(record, "api.service.name"));
    ev.set_str("error.code", text(record, "api.response.error"));
    ev.set_str("error.message", text(record, "api.response.message"));
    util::set_category(ev, &["configuration"]);
    // activity_id: 1 Create, 2 Read, 3 Update, 4 Delete.
    let kind = match uint(record, "activity_id") {
        Some(1) => "creation",
        Some(2) => "access",
        Some(3) => "change",
        Some(4) => "deletion",
        _ => "info",
    };
    ev.set("event.type", Value::Arr(vec![Value::Static(kind)]));
    if text(record, "metadata.product.name") == Some("Amazon EKS") {
        ev.set("orchestrator.type", "kubernetes");
    }
}

/// Network Activity: VPC flow logs. Same ECS fields as the flow log text mapping.
/// `source_ip_version` is that of `source.ip` ([`set_endpoint`]).
fn map_network(ev: &mut Event, record: &J, source_ip_version: Option<&'static str>) {
    util::set_category(ev, &["network"]);
    let mut types = vec![Value::Static("connection")];
    // action_id: 1 Allowed, 2 Denied (OCSF 1.1); disposition_id in 1.0.
    let action = uint(record, "action_id").or_else(|| uint(record, "disposition_id"));
    match action {
        Some(1) => types.push(Value::Static("allowed")),
        Some(2) => types.push(Value::Static("denied")),
        _ => {}
    }
    // `set_default`, not a read of the event being built: a read may build its tree
    // (measured: most of this function's cost).
    match action {
        Some(1) => ev.set_default("event.outcome", "success"),
        Some(2) => ev.set_default("event.outcome", "failure"),
        _ => {}
    }
    ev.set("event.type", Value::Arr(types));
    ev.set_str(
        "event.action",
        text(record, "action").or_else(|| text(record, "disposition")),
    );
    if let Some(proto) = uint(record, "connection_info.protocol_num") {
        ev.set("network.iana_number", proto.to_string());
        ev.set_opt("network.transport", util::iana_transport(proto));
    }
    ev.set_opt("network.type", source_ip_version);
    // direction_id: 1 Inbound, 2 Outbound (from the interface: VPC's ingress/egress).
    match uint(record, "connection_info.direction_id") {
        Some(1) => ev.set("network.direction", "ingress"),
        Some(2) => ev.set("network.direction", "egress"),
        _ => {}
    }
    let packets = uint(record, "traffic.packets");
    let bytes = uint(record, "traffic.bytes");
    ev.set_opt("source.packets", packets);
    ev.set_opt("source.bytes", bytes);
    ev.set_opt("network.packets", packets);
    ev.set_opt("network.bytes", bytes);
}

/// HTTP Activity: WAF and ALB logs.
fn map_http(ev: &mut Event, record: &J) {
    util::set_category(ev, &["network", "web"]);
    util::set_type(ev, &["access"]);
    ev.set_str(
        "event.action",
        text(record, "action")
            .or_else(|| text(record, "disposition"))
            .or_else(|| text(record, "activity_name")),
    );
    ev.set_str(
        "http.request.method",
        text(record, "http_request.http_method"),
    );
    ev.set_str("http.request.id", text(record, "http_request.uid"));
    ev.set_str(
        "http.request.referrer",
        text(record, "http_request.referrer"),
    );
    ev.set_str("http.version", text(record, "http_request.version"));
    ev.set_opt(
        "http.response.status_code",
        uint(record, "http_response.code"),
    );
    ev.set_str("url.domain", text(record, "http_request.url.hostname"));
    ev.set_str("url.path", text(record, "http_request.url.path"));
    ev.set_str("url.query", text(record, "http_request.url.query_string"));
    ev.set_str("url.scheme", text(record, "http_request.url.scheme"));
    ev.set_str("url.original", text(record, "http_request.url.url_string"));
    ev.set_opt("url.port", uint(record, "http_request.url.port"));
}

/// DNS Activity: Route 53 resolver query logs.
fn map_dns(ev: &mut Event, record: &J) {
    util::set_category(ev, &["network"]);
    util::set_type(ev, &["protocol"]);
    ev.set("network.protocol", "dns");
    ev.set_str("event.action", text(record, "activity_name"));
    if let Some(name) = text(record, "query.hostname") {
        ev.set("dns.question.name", name.trim_end_matches('.').to_owned());
    }
    ev.set_str("dns.question.type", text(record, "query.type"));
    ev.set_str("dns.question.class", text(record, "query.class"));
    if let Some(id) = uint(record, "query.packet_uid") {
        ev.set("dns.id", id.to_string());
    }
    ev.set_str("dns.response_code", text(record, "rcode"));
    if let Some(proto) = uint(record, "connection_info.protocol_num") {
        ev.set("network.iana_number", proto.to_string());
        ev.set_opt("network.transport", util::iana_transport(proto));
    }
    let answers = at(record, "answers").and_then(J::as_array);
    if let Some(answers) = answers.filter(|a| !a.is_empty()) {
        ev.set("dns.type", "answer");
        let mut mapped = Vec::with_capacity(answers.len());
        for answer in answers {
            let mut m = crate::event::Map::new();
            if let Some(data) = text(answer, "rdata") {
                m.insert("data", data.to_owned());
                if let Some(ip) = util::canonical_ip(data) {
                    ev.push_unique("dns.resolved_ip", ip.clone());
                    ev.push_unique("related.ip", ip);
                }
            }
            if let Some(t) = text(answer, "type") {
                m.insert("type", t.to_owned());
            }
            if let Some(c) = text(answer, "class") {
                m.insert("class", c.to_owned());
            }
            if let Some(ttl) = uint(answer, "ttl") {
                m.insert("ttl", ttl);
            }
            if !m.is_empty() {
                mapped.push(Value::Obj(m));
            }
        }
        ev.set("dns.answers", Value::Arr(mapped));
    } else {
        ev.set("dns.type", "query");
    }
}

/// Security Finding (1.0) and Detection Finding (1.1): Security Hub findings.
fn map_finding(ev: &mut Event, record: &J) {
    ev.set("event.kind", "alert");
    util::set_category(ev, &["threat"]);
    util::set_type(ev, &["indicator"]);
    ev.set_str("event.action", text(record, "activity_name"));
    // Detection Finding (1.1) has `finding_info`; Security Finding (1.0) `finding`.
    let info = if at(record, "finding_info").is_some() {
        "finding_info"
    } else {
        "finding"
    };
    let title = text(record, &format!("{info}.title"));
    ev.set_str("rule.name", title);
    ev.set_str("rule.description", text(record, &format!("{info}.desc")));
    ev.set_str("rule.uuid", text(record, &format!("{info}.uid")));
    ev.set_str("event.url", text(record, &format!("{info}.src_url")));
    if !ev.contains("message") {
        ev.set_str("message", title);
    }
}

pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "security-lake",
    dataset: "aws.security_lake",
    example_key: "aws/VPC_FLOW/2.0/region=us-east-1/accountId=123456789012/eventDay=20240315/a1b2c3d4-5e6f-7a8b-9c0d-1e2f3a4b5c6d.gz.parquet",
    key_clues: &[KeyClue {
        rank: 35,
        layout: "Security Lake aws/<SOURCE>/<version>/region=/accountId=/eventDay=",
        matches: |k| {
            k.lower.contains("region=") && k.lower.contains("/accountid=") && k.lower.contains("/eventday=")
        },
    }],
    content_clues: &[ContentClue {
        rank: 125,
        what: "OCSF record (class_uid, metadata)",
        first_line: FirstLine::Json,
        matches: |line| has_json_keys(line, &["class_uid", "metadata"]),
    }],
    skip: None,
    options: &[],
    // The JSON-lines form; the Parquet form is read by `crate::columnar`.
    reader: Reader::JsonLines(|map, _| map_ocsf(J::Object(map))),
};
