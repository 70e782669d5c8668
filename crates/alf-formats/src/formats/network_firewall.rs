//! AWS Network Firewall logs: one JSON object per line,
//! `{"firewall_name","availability_zone","event_timestamp","event":{...}}`, where `event`
//! is a Suricata EVE record for alert and flow logs (`event_type` `alert`, `netflow`,
//! or `flow`, with `alert`, `netflow`/`flow`, `tcp`, `http`, `tls`, `dns` sections) and
//! an AWS-specific record for TLS inspection logs (`sni` plus `tls_error` or
//! `revocation_check`, without `event_type`).
//!
//! Sections this module does not map are kept as they came under
//! `aws.firewall.<section>`, so nothing Suricata adds is lost.


use serde_json::{Map, Value as J};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::driver::{
    LineContext, RecordError,
};
use crate::enrich::DomainField;
use crate::event::{Event, Value};
use crate::readers::json_lines::{json_members, number, text, text_value};
use crate::readers::json_records::JsonMap;
use crate::registry::{ContentClue, FirstLine, FormatSpec, KeyClue, Reader, has_json_keys};
use crate::util;

json_members! {
    /// The members of `event` mapped here (besides `netflow` and `flow`, taken out
    /// whole); any other is kept under `aws.firewall`.
    struct Suricata {
        alert: "alert",
        app_proto: "app_proto",
        community_id: "community_id",
        dest_ip: "dest_ip",
        dest_port: "dest_port",
        dns: "dns",
        event_type: "event_type",
        flow_id: "flow_id",
        http: "http",
        proto: "proto",
        revocation_check: "revocation_check",
        sni: "sni",
        src_ip: "src_ip",
        src_port: "src_port",
        tcp: "tcp",
        timestamp: "timestamp",
        tls: "tls",
        tls_error: "tls_error",
        tls_inspected: "tls_inspected",
    }
}

json_members! {
    /// The members around `event` mapped here; any other (`aws_category`, for URL
    /// and domain category filtering) is kept under `aws.firewall`.
    struct Envelope {
        availability_zone: "availability_zone",
        event_timestamp: "event_timestamp",
        firewall_name: "firewall_name",
    }
}

/// TCP flags Suricata reports as booleans in the `tcp` section.
const TCP_FLAG_NAMES: [&str; 8] = ["fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr"];




/// Suricata timestamps: `2021-11-08T14:22:12.637611+0000` (offset without a colon, not
/// RFC 3339) or RFC 3339 (`...Z` in TLS logs). Returns UTC RFC 3339 and the instant.
fn suricata_time(raw: &str) -> Option<(String, OffsetDateTime)> {
    let t = match suricata_fixed_layout(raw.trim()) {
        Some(t) => t,
        None => rfc3339_or_suricata(raw)?,
    }
    .to_offset(time::UtcOffset::UTC);
    // ECS dates are millisecond `date` fields; the instant keeps full precision for
    // durations.
    let millis = t
        .replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .ok()?;
    Some((util::rfc3339(millis)?, t))
}

/// The layout Suricata always writes, `2021-11-08T14:22:12.637611+0000`, read field by
/// field (the general parse below cost about 2,000 instructions per timestamp, and a
/// flow record has three). `None` for anything else, which the general parse takes:
/// the tests check that both agree.
fn suricata_fixed_layout(text: &str) -> Option<OffsetDateTime> {
    let b = text.as_bytes();
    let (head, offset) = b.split_at_checked(b.len().checked_sub(5)?)?;
    let number = |digits: &[u8]| -> Option<u32> {
        digits.iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let (date_time, fraction) = match head.get(19..) {
        Some([]) => (head, &[][..]),
        Some([b'.', digits @ ..]) if (1..=9).contains(&digits.len()) => (&head[..19], digits),
        _ => return None,
    };
    if date_time.len() != 19
        || [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')]
            .iter()
            .any(|&(i, c)| date_time[i] != c)
    {
        return None;
    }
    let sign: i8 = match offset[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let field = |range: std::ops::Range<usize>| number(&date_time[range]);
    let year = i32::try_from(field(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(field(5..7)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(field(8..10)?).ok()?).ok()?;
    let nanos = number(fraction)? * 10u32.pow(9 - fraction.len() as u32);
    let second = u8::try_from(field(17..19)?).ok()?;
    let time_of_day = time::Time::from_hms_nano(
        u8::try_from(field(11..13)?).ok()?,
        u8::try_from(field(14..16)?).ok()?,
        second,
        nanos,
    )
    .ok()?;
    // RFC 3339 offsets stop at 23:59, below what `UtcOffset` takes.
    let hours = i8::try_from(number(&offset[1..3])?).ok().filter(|h| *h <= 23)?;
    let minutes = i8::try_from(number(&offset[3..5])?).ok().filter(|m| *m <= 59)?;
    let offset = time::UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()?;
    Some(time::PrimitiveDateTime::new(date, time_of_day).assume_offset(offset))
}

/// Any timestamp [`suricata_time`] takes, through `time`'s RFC 3339 parser (the
/// offset given a colon first when it has none).
fn rfc3339_or_suricata(raw: &str) -> Option<OffsetDateTime> {
    let fixed;
    let mut text = raw.trim();
    let b = text.as_bytes();
    if b.len() > 5 {
        let tail = &b[b.len() - 5..];
        if (tail[0] == b'+' || tail[0] == b'-') && tail[1..].iter().all(u8::is_ascii_digit) {
            fixed = format!("{}:{}", &text[..text.len() - 2], &text[text.len() - 2..]);
            text = &fixed;
        }
    }
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// `us-east-2a` -> `us-east-2`; `us-gov-west-1b` -> `us-gov-west-1`; Local Zones
/// (`us-west-2-lax-1a`) -> `us-west-2`. AZ IDs (`use1-az5`) have no region: `None`.
fn region_of_zone(zone: &str) -> Option<String> {
    // The region is a prefix of the zone: its words, then the digits of the first part
    // that starts with one.
    let (mut words, mut at) = (0, 0);
    for part in zone.split('-') {
        let digits = part.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            return (words >= 2).then(|| zone[..at + digits].to_owned());
        }
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_lowercase()) {
            return None;
        }
        words += 1;
        at += part.len() + 1;
    }
    None
}

/// The IANA number of a Suricata protocol name.
fn iana_number(proto: &str) -> Option<u64> {
    Some(match proto {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "udp" => 17,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "ipv6-icmp" | "icmpv6" => 58,
        "sctp" => 132,
        _ => return None,
    })
}

/// `TLS 1.2` / `TLSv1.3` / `SSLv3` -> (`tls`, `1.2`).
fn tls_version(v: &str) -> Option<(&'static str, &str)> {
    let lower = v.trim();
    for (prefix, proto) in [("TLS", "tls"), ("SSL", "ssl")] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            let rest = rest.trim_start_matches(['v', ' ']);
            if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return Some((proto, rest));
            }
        }
    }
    None
}


json_members! {
    /// The members of `alert` mapped here; any other is kept under
    /// `aws.firewall.alert`. (`signature` must not be kept under its own key anyway:
    /// the serializer's redaction treats a JSON key named `signature` as a secret.)
    struct Alert {
        action: "action",
        category: "category",
        rev: "rev",
        severity: "severity",
        signature: "signature",
        signature_id: "signature_id",
    }
}

/// `alert`: the rule that matched and what the firewall did.
fn map_alert(ev: &mut Event, alert: &Map<String, J>, types: &mut Vec<Value>) {
    let a = Alert::read(alert);
    ev.set("event.kind", "alert");
    if let Some(id) = number(a.signature_id) {
        ev.set("rule.id", id.to_string());
    }
    ev.set_str("rule.name", text_value(a.signature));
    ev.set_str("rule.category", text_value(a.category));
    if let Some(rev) = number(a.rev) {
        ev.set("rule.version", rev.to_string());
    }
    ev.set_opt("event.severity", number(a.severity));
    if let Some(action) = text_value(a.action) {
        ev.set("event.action", action.to_owned());
        let allowed = match action {
            "allowed" => Some(true),
            "blocked" => Some(false),
            _ => None,
        };
        util::set_decision(ev, types, allowed);
    }
    a.unmapped.keep(ev, "aws.firewall.alert");
}

/// `netflow` (one direction, source to destination) or `flow` (both directions).
fn map_flow(ev: &mut Event, flow: JsonMap, bidirectional: bool) {
    // A one-way record counts the source side only.
    let count = |key: &str| number(flow.get(key));
    let (sp, dp, sb, db) = if bidirectional {
        let (sp, dp) = (count("pkts_toserver"), count("pkts_toclient"));
        (sp, dp, count("bytes_toserver"), count("bytes_toclient"))
    } else {
        (count("pkts"), None, count("bytes"), None)
    };
    ev.set_opt("source.packets", sp);
    ev.set_opt("destination.packets", dp);
    ev.set_opt("source.bytes", sb);
    ev.set_opt("destination.bytes", db);
    if sp.is_some() || dp.is_some() {
        ev.set("network.packets", sp.unwrap_or(0) + dp.unwrap_or(0));
    }
    if sb.is_some() || db.is_some() {
        ev.set("network.bytes", sb.unwrap_or(0) + db.unwrap_or(0));
    }
    let start = text(&flow, "start").and_then(suricata_time);
    let end = text(&flow, "end").and_then(suricata_time);
    if let Some((s, _)) = &start {
        ev.set("event.start", s.clone());
    }
    if let Some((e, _)) = &end {
        ev.set("event.end", e.clone());
    }
    if let (Some((_, s)), Some((_, e))) = (&start, &end) {
        let nanos = (*e - *s).whole_nanoseconds();
        if let Ok(n) = u64::try_from(nanos) {
            ev.set("event.duration", n);
        }
    }
    let key = if bidirectional {
        "aws.firewall.flow"
    } else {
        "aws.firewall.netflow"
    };
    ev.set(key, J::Object(flow));
}

/// `http`: the request Suricata parsed.
fn map_http(ev: &mut Event, http: &Map<String, J>, cx: &LineContext<'_>) {
    if let Some(host) = text(http, "hostname") {
        super::waf::set_http_host(ev, host, cx);
    }
    if let Some(url) = text(http, "url") {
        ev.set("url.original", url.to_owned());
        let (path, query) = match url.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (url, None),
        };
        ev.set_str("url.path", Some(path));
        ev.set_str("url.query", query);
    }
    ev.set_str("http.request.method", text(http, "http_method"));
    if let Some(v) = text(http, "protocol") {
        ev.set(
            "http.version",
            v.strip_prefix("HTTP/").unwrap_or(v).to_owned(),
        );
    }
    ev.set_opt("http.response.status_code", number(http.get("status")));
    ev.set_opt("http.response.body.bytes", number(http.get("length")));
    ev.set_str("http.request.referrer", text(http, "http_refer"));
    ev.set_str("http.response.mime_type", text(http, "http_content_type"));
    if let Some(ua) = text(http, "http_user_agent") {
        cx.enricher.user_agent(ev, ua);
    }
    ev.set("aws.firewall.http", J::Object(http.clone()));
}

/// `tls`: the handshake Suricata saw.
fn map_tls(ev: &mut Event, tls: &Map<String, J>, cx: &LineContext<'_>) {
    if let Some(sni) = text(tls, "sni") {
        ev.set("tls.client.server_name", sni.to_owned());
        cx.enricher.domain(ev, DomainField::Destination, sni);
    }
    if let Some((proto, version)) = text(tls, "version").and_then(tls_version) {
        ev.set("tls.version_protocol", proto);
        ev.set("tls.version", version.to_owned());
    }
    ev.set_str("tls.server.subject", text(tls, "subject"));
    ev.set_str("tls.server.issuer", text(tls, "issuerdn"));
    ev.set_str("tls.server.x509.serial_number", text(tls, "serial"));
    if let Some(fp) = text(tls, "fingerprint") {
        // Suricata writes the SHA-1 as colon-separated hex; ECS wants plain upper-case hex.
        ev.set(
            "tls.server.hash.sha1",
            fp.replace(':', "").to_ascii_uppercase(),
        );
    }
    if let Some((t, _)) = text(tls, "notbefore").and_then(suricata_naive_time) {
        ev.set("tls.server.not_before", t);
    }
    if let Some((t, _)) = text(tls, "notafter").and_then(suricata_naive_time) {
        ev.set("tls.server.not_after", t);
    }
    if let Some(J::Object(ja3)) = tls.get("ja3") {
        ev.set_str("tls.client.ja3", text(ja3, "hash"));
    }
    if let Some(J::Object(ja3s)) = tls.get("ja3s") {
        ev.set_str("tls.server.ja3s", text(ja3s, "hash"));
    }
    ev.set("aws.firewall.tls", J::Object(tls.clone()));
}

/// Certificate validity times: `2021-01-01T00:00:00` (UTC, no offset).
fn suricata_naive_time(raw: &str) -> Option<(String, OffsetDateTime)> {
    if raw.ends_with('Z') || raw.contains('+') {
        return suricata_time(raw);
    }
    suricata_time(&format!("{raw}Z"))
}

/// `dns`: the first query of the record.
fn map_dns(ev: &mut Event, dns: &Map<String, J>) {
    let query = match dns.get("query") {
        Some(J::Array(q)) => q.first().and_then(J::as_object),
        _ => Some(dns),
    };
    if let Some(q) = query {
        if let Some(name) = text(q, "rrname") {
            ev.set("dns.question.name", name.trim_end_matches('.').to_owned());
            ev.push_unique(
                "related.hosts",
                name.trim_end_matches('.').to_ascii_lowercase(),
            );
        }
        ev.set_str("dns.question.type", text(q, "rrtype"));
        if let Some(id) = number(q.get("id")) {
            ev.set("dns.id", id.to_string());
        }
    }
    ev.set("aws.firewall.dns", J::Object(dns.clone()));
}

/// TLS inspection logs: `tls_error` and `revocation_check`.
fn map_tls_inspection(ev: &mut Event, event: &Map<String, J>, types: &mut Vec<Value>) {
    if let Some(J::Object(err)) = event.get("tls_error") {
        // The firewall reset the connection. The message goes to `event.reason`, not
        // `error.*`, which this pipeline keeps for records it could not parse.
        ev.set_str("event.reason", text(err, "error_message").map(str::trim));
        ev.set("event.outcome", "failure");
        types.push(Value::Static("denied"));
        ev.set("aws.firewall.tls_error", J::Object(err.clone()));
    }
    if let Some(J::Object(check)) = event.get("revocation_check") {
        if let Some(fp) = text(check, "leaf_cert_fpr") {
            ev.set("tls.server.hash.sha256", fp.to_ascii_uppercase());
        }
        if let Some(action) = text(check, "action") {
            ev.set("event.action", action.to_owned());
            match action {
                "PASS" => types.push(Value::Static("allowed")),
                "DROP" | "REJECT" => {
                    types.push(Value::Static("denied"));
                    ev.set("event.outcome", "failure");
                }
                _ => {}
            }
        }
        ev.set_str("event.reason", text(check, "status"));
        ev.set("aws.firewall.revocation_check", J::Object(check.clone()));
    }
}

/// Maps one Network Firewall log record to ECS.
fn map_record(mut root: JsonMap, cx: &LineContext<'_>) -> Result<Event, RecordError> {
    let Some(J::Object(mut event)) = root.remove("event") else {
        return Err(RecordError::Other(
            "not a Network Firewall log record (no event object)".into(),
        ));
    };
    // Both are kept whole: taken out of the record, not copied.
    let netflow = event.remove("netflow");
    let flow = event.remove("flow");
    let f = Suricata::read(&event);
    let r = Envelope::read(&root);
    let mut ev = Event::new();
    let ts = match text_value(f.timestamp) {
        Some(raw) => Some(
            suricata_time(raw)
                .map(|(t, _)| t)
                .ok_or_else(|| RecordError::invalid("event.timestamp", raw))?,
        ),
        None => number(r.event_timestamp)
            .and_then(|s| i64::try_from(s).ok())
            .and_then(util::epoch_secs),
    };
    ev.set_opt("@timestamp", ts);
    util::set_category(&mut ev, &["network"]);
    let mut types = vec![Value::Static("connection")];
    util::set_aws_service(&mut ev, "network-firewall");
    ev.set("observer.vendor", "AWS");
    ev.set("observer.product", "Network Firewall");
    ev.set("observer.type", "firewall");
    ev.set_str("observer.name", text_value(r.firewall_name));
    if let Some(zone) = text_value(r.availability_zone) {
        ev.set("cloud.availability_zone", zone.to_owned());
        ev.set_opt("cloud.region", region_of_zone(zone));
    }

    let event_type = text_value(f.event_type);
    match event_type {
        Some(t) => ev.set("aws.firewall.event_type", t.to_owned()),
        None if f.tls_error.is_some() || f.revocation_check.is_some() => {
            ev.set("aws.firewall.event_type", "tls")
        }
        None => {}
    }
    if let Some(id) = f.flow_id.and_then(|v| match v {
        J::Number(n) => Some(n.to_string()),
        J::String(s) => util::field(s).map(str::to_owned),
        _ => None,
    }) {
        ev.set("aws.firewall.flow_id", id);
    }

    let source_ip_version = util::set_ip_address(
        &mut ev,
        text_value(f.src_ip),
        "source.address",
        "source.ip",
    );
    util::set_ip_address(
        &mut ev,
        text_value(f.dest_ip),
        "destination.address",
        "destination.ip",
    );
    ev.set_opt(
        "source.port",
        number(f.src_port).and_then(|p| u16::try_from(p).ok()),
    );
    ev.set_opt(
        "destination.port",
        number(f.dest_port).and_then(|p| u16::try_from(p).ok()),
    );
    ev.set_opt("network.type", source_ip_version);
    if let Some(proto) = text_value(f.proto) {
        let lower = proto.to_ascii_lowercase();
        if let Some(n) = iana_number(&lower) {
            ev.set("network.iana_number", n.to_string());
        }
        ev.set("network.transport", lower);
    }
    if let Some(app) = text_value(f.app_proto)
        && !matches!(app, "failed" | "unknown")
    {
        ev.set("network.protocol", app.to_ascii_lowercase());
    }
    ev.set_str("network.community_id", text_value(f.community_id));

    if let Some(J::Object(alert)) = f.alert {
        map_alert(&mut ev, alert, &mut types);
    }
    if let Some(J::Object(flow)) = netflow {
        map_flow(&mut ev, flow, false);
    }
    if let Some(J::Object(flow)) = flow {
        map_flow(&mut ev, flow, true);
    }
    if let Some(J::Object(tcp)) = f.tcp {
        let flags: Vec<Value> = TCP_FLAG_NAMES
            .iter()
            .filter(|f| tcp.get(**f).and_then(J::as_bool) == Some(true))
            .map(|f| Value::Static(f))
            .collect();
        ev.set_str("aws.firewall.tcp_flags", text(tcp, "tcp_flags"));
        if !flags.is_empty() {
            ev.set("aws.firewall.tcp_flags_array", Value::Arr(flags));
        }
    }
    if let Some(J::Object(http)) = f.http {
        map_http(&mut ev, http, cx);
    }
    if let Some(J::Object(tls)) = f.tls {
        map_tls(&mut ev, tls, cx);
    }
    if let Some(J::Object(dns)) = f.dns {
        map_dns(&mut ev, dns);
    }
    if let Some(sni) = text_value(f.sni) {
        ev.set("tls.client.server_name", sni.to_owned());
        cx.enricher.domain(&mut ev, DomainField::Destination, sni);
    }
    map_tls_inspection(&mut ev, &event, &mut types);
    if let Some(J::Bool(b)) = f.tls_inspected {
        ev.set("aws.firewall.tls_inspected", *b);
    }
    ev.set("event.type", Value::Arr(types));

    f.unmapped.keep(&mut ev, "aws.firewall");
    // e.g. `aws_category` (URL and domain category filtering).
    r.unmapped.keep(&mut ev, "aws.firewall");
    Ok(ev)
}

/// AWS Network Firewall alert, flow and TLS logs, one JSON record per line.
pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "network-firewall",
    dataset: "aws.firewall_logs",
    example_key: "AWSLogs/123456789012/network-firewall/alert/us-east-1/prod-inspection-firewall/2024/03/15/00/123456789012_network-firewall_alert_us-east-1_prod-inspection-firewall_202403150005_a1b2c3d4.log.gz",
    key_clues: &[KeyClue {
        rank: 70,
        layout: "AWSLogs/<account>/network-firewall/",
        matches: |k| k.lower.contains("/network-firewall/") || k.lower.contains("_network-firewall_"),
    }],
    content_clues: &[ContentClue {
        rank: 120,
        what: "network firewall record",
        first_line: FirstLine::Json,
        matches: |line| has_json_keys(line, &["firewall_name", "event"]),
    }],
    skip: None,
    options: &[],
    reader: Reader::JsonLines(map_record),
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{Format, assert_fields};

    sample_test_helpers!(Format::NetworkFirewall, "network-firewall.log");

    #[test]
    fn blocked_http_alert() {
        let e = sample(0);
        assert_fields(
            &e,
            json!({
                "@timestamp": "2024-06-16T08:00:01.512Z",
                "event": {
                    "kind": "alert",
                    "action": "blocked",
                    "outcome": "failure",
                    "type": ["connection", "denied"],
                    "severity": 3,
                    "dataset": "aws.firewall_logs",
                },
                "rule": {
                    "id": "1000003",
                    "name": "Block plain HTTP to the internet",
                    "version": "1",
                },
            }),
        );
        assert!(e["rule"].get("category").is_none());
        assert_fields(
            &e,
            json!({
                "observer": {"name": "egress-firewall", "type": "firewall"},
                "cloud": {"availability_zone": "eu-west-1a", "region": "eu-west-1"},
                "source": {"ip": "10.0.1.15", "port": 51254},
                "destination": {"ip": "203.0.113.50", "port": 80, "domain": "updates.example.com"},
                "network": {"transport": "tcp", "iana_number": "6", "protocol": "http"},
                "url": {
                    "domain": "updates.example.com",
                    "original": "/v2/check?channel=stable",
                    "path": "/v2/check",
                    "query": "channel=stable",
                },
                "http": {"request": {"method": "GET"}, "version": "1.1"},
                "user_agent": {"name": "Firefox"},
                "aws": {"firewall": {"flow_id": "1770453319291727"}},
            }),
        );
        // The alert's `signature` is mapped to rule.name, never kept under a key the
        // serializer's redaction would treat as a secret.
        assert!(e["aws"]["firewall"].get("alert").is_none());
    }

    #[test]
    fn allowed_tls_alert_with_categories() {
        let e = sample(1);
        assert_fields(
            &e,
            json!({
                "event": {"action": "allowed", "type": ["connection", "allowed"]},
                "tls": {
                    "client": {
                        "server_name": "api.example.com",
                        "ja3": "0123456789abcdef0123456789abcdef",
                    },
                    "version": "1.3",
                    "version_protocol": "tls",
                },
                "destination": {"domain": "api.example.com"},
                "aws": {
                    "firewall": {
                        "tls_inspected": false,
                        "aws_category": ["Technology and Internet"],
                    },
                },
            }),
        );
    }

    #[test]
    fn netflow_records_counts_times_and_flags() {
        let e = sample(2);
        assert_fields(
            &e,
            json!({
                "event": {
                    "kind": "event",
                    "type": ["connection"],
                    "start": "2024-06-16T07:59:41.99Z",
                    "end": "2024-06-16T07:59:44.125Z",
                    "duration": 2_135_238_000u64,
                },
                "@timestamp": "2024-06-16T08:01:00.315Z",
                "source": {"packets": 12, "bytes": 1840},
                "network": {"bytes": 1840, "packets": 12},
            }),
        );
        assert!(e["network"].get("protocol").is_none());
        assert_eq!(e["aws"]["firewall"]["tcp_flags"], "1b");
        assert_eq!(
            e["aws"]["firewall"]["tcp_flags_array"],
            json!(["fin", "syn", "psh", "ack"])
        );
        assert_eq!(e["aws"]["firewall"]["netflow"]["max_ttl"], 63);
        let v6 = sample(3);
        assert_eq!(v6["source"]["ip"], "2001:db8:1234:a102::15");
        assert_eq!(v6["network"]["type"], "ipv6");
        assert_eq!(v6["network"]["transport"], "udp");
        assert_eq!(v6["event"]["duration"], 0);
    }

    #[test]
    fn dns_alert_keeps_rule_metadata() {
        let e = sample(4);
        assert_eq!(e["dns"]["question"]["name"], "malware-c2.example.net");
        assert_eq!(e["dns"]["question"]["type"], "A");
        assert_eq!(e["dns"]["id"], "28543");
        assert_eq!(e["event"]["severity"], 1);
        assert_eq!(
            e["aws"]["firewall"]["alert"]["metadata"]["rule_group"][0],
            "arn:aws:network-firewall:eu-west-1:123456789012:stateful-rulegroup/deny-domains"
        );
    }

    #[test]
    fn tls_inspection_logs() {
        let err = sample(5);
        assert_fields(
            &err,
            json!({
                "@timestamp": "2024-06-16T08:01:03.412Z",
                "aws": {"firewall": {"event_type": "tls"}},
                "source": {"port": 59844},
                "destination": {"port": 443},
                "event": {
                    "reason": "Server name is not found in client hello.",
                    "outcome": "failure",
                },
            }),
        );
        assert!(err.get("error").is_none());
        assert!(err.get("tls").is_none(), "`-` SNI is absent");
        let revoked = sample(6);
        assert_eq!(revoked["event"]["action"], "DROP");
        assert_eq!(revoked["event"]["reason"], "REVOKED");
        assert_eq!(revoked["event"]["type"], json!(["connection", "denied"]));
        assert_eq!(
            revoked["tls"]["client"]["server_name"],
            "revoked.example.org"
        );
        assert_eq!(
            revoked["tls"]["server"]["hash"]["sha256"],
            "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"
        );
    }

    #[test]
    fn govcloud_zone_and_rule_category() {
        let e = sample(7);
        assert_eq!(e["cloud"]["region"], "us-gov-west-1");
        assert_eq!(e["rule"]["category"], "Attempted Information Leak");
        assert_eq!(e["observer"]["name"], "ingress-firewall");
    }

    /// Suricata timestamps of random instants, offsets and precisions, and copies
    /// with one character changed.
    fn random_suricata_times() -> Vec<String> {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(2021);
        let mut out = Vec::new();
        for _ in 0..3000 {
            let t = time::OffsetDateTime::from_unix_timestamp(rng.random_range(0..4_000_000_000))
                .unwrap();
            let digits = rng.random_range(0..=9usize);
            let fraction = if digits == 0 {
                String::new()
            } else {
                format!(".{:0digits$}", rng.random_range(0..10u64.pow(digits as u32)))
            };
            let text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}{}{:02}{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                if rng.random_bool(0.5) { '+' } else { '-' },
                rng.random_range(0..=24),
                rng.random_range(0..=60),
            );
            let mut changed = text.clone().into_bytes();
            let at = rng.random_range(0..changed.len());
            changed[at] = b"0123456789+-:.TZ "[rng.random_range(0..17)];
            out.push(text);
            out.push(String::from_utf8(changed).unwrap());
        }
        out
    }

    #[test]
    fn zones_times_and_versions() {
        use super::{region_of_zone, suricata_time, tls_version};
        for (zone, region) in [
            ("us-east-2a", Some("us-east-2")),
            ("us-west-2-lax-1a", Some("us-west-2")),
            ("use1-az5", None),
            ("us-1a", None),
            ("ap-southeast-5b", Some("ap-southeast-5")),
            ("us-gov-west-1b", Some("us-gov-west-1")),
            ("us-East-1a", None),
            ("zone", None),
            ("", None),
        ] {
            assert_eq!(region_of_zone(zone).as_deref(), region, "{zone}");
        }
        assert_eq!(
            suricata_time("2021-11-08T14:22:12.637611+0000").map(|t| t.0),
            Some("2021-11-08T14:22:12.637Z".to_owned())
        );
        assert_eq!(
            suricata_time("2021-11-08T15:22:12+0100").map(|t| t.0),
            Some("2021-11-08T14:22:12Z".to_owned())
        );
        assert!(suricata_time("yesterday").is_none());
        // The fixed layout read by hand gives what the general parse gives, and
        // refuses what it refuses.
        for text in [
            "2021-11-08T14:22:12.637611+0000",
            "2021-11-08T14:22:12.6+0000",
            "2021-11-08T14:22:12.123456789-0930",
            "2024-02-29T23:59:59+1400",
            "2023-02-29T10:00:00+0000",
            "2021-11-08T24:00:00+0000",
            "2021-11-08T14:60:00+0000",
            "2021-11-08T14:22:60+0000",
            "2021-13-08T14:22:12+0000",
            "2021-11-08T14:22:12.+0000",
            "2021-11-08T14:22:12.1234567890+0000",
            "2021-11-08t14:22:12+0000",
            "2021-11-08T14:22:12+2400",
            "2021-11-08T14:22:12+0060",
            "2021-11-08T14:22:12+2359",
            "2021-11-08T14:22:12-0000",
            "2021-11-08T14:22:12Z",
            "2021-11-08T14:22:12+00:00",
            "0000-01-01T00:00:00+0000",
            "+021-11-08T14:22:12+0000",
            "2021-1a-08T14:22:12+0000",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain(random_suricata_times())
        {
            let text = text.as_str();
            let by_hand = super::suricata_fixed_layout(text);
            let general = super::rfc3339_or_suricata(text);
            if by_hand.is_some() {
                assert_eq!(by_hand, general, "{text}");
            }
            assert_eq!(
                suricata_time(text).map(|t| t.1),
                general.map(|t| t.to_offset(time::UtcOffset::UTC)),
                "{text}"
            );
        }
        for (version, protocol_and_number) in [
            ("TLS 1.2", Some(("tls", "1.2"))),
            ("TLSv1.3", Some(("tls", "1.3"))),
            ("SSLv3", Some(("ssl", "3"))),
            ("UNDETERMINED", None),
        ] {
            assert_eq!(tls_version(version), protocol_and_number, "{version}");
        }
    }

    #[test]
    fn suricata_tls_certificate_fields() {
        let line = r#"{"firewall_name":"fw","availability_zone":"eu-west-1a","event_timestamp":"1718524801","event":{"timestamp":"2024-06-16T08:00:01.000000+0000","event_type":"alert","src_ip":"10.0.0.1","src_port":1,"dest_ip":"10.0.0.2","dest_port":443,"proto":"TCP","alert":{"action":"blocked","signature_id":9,"rev":1,"signature":"bad cert","category":"","severity":2},"tls":{"subject":"CN=bad.example.com","issuerdn":"CN=Example CA","serial":"00:AB","fingerprint":"aa:bb:cc","notbefore":"2024-01-01T00:00:00","notafter":"2025-01-01T00:00:00","version":"TLS 1.2","ja3s":{"hash":"fedcba9876543210fedcba9876543210"}},"flow":{"pkts_toserver":4,"pkts_toclient":3,"bytes_toserver":400,"bytes_toclient":3000,"start":"2024-06-16T08:00:00.000000+0000"}}}"#;
        let (events, stats) = run(line);
        assert_eq!(stats.malformed, 0);
        let e = &events[0];
        assert_fields(
            e,
            json!({
                "tls": {
                    "server": {
                        "subject": "CN=bad.example.com",
                        "issuer": "CN=Example CA",
                        "x509": {"serial_number": "00:AB"},
                        "hash": {"sha1": "AABBCC"},
                        "not_before": "2024-01-01T00:00:00Z",
                        "not_after": "2025-01-01T00:00:00Z",
                        "ja3s": "fedcba9876543210fedcba9876543210",
                    },
                },
                "source": {"packets": 4},
                "destination": {"bytes": 3000},
                "network": {"bytes": 3400, "packets": 7},
                "event": {"start": "2024-06-16T08:00:00Z"},
            }),
        );
    }

    #[test]
    fn wrong_shapes_are_forwarded_raw() {
        let lines = [
            r#"{"firewall_name":"fw","availability_zone":"eu-west-1a","event_timestamp":"1718524801"}"#,
            r#"{"firewall_name":"fw","event":"alert"}"#,
            r#"{"event":{"timestamp":"2024-13-45T00:00:00+0000"}}"#,
            r#"[]"#,
            r#"{"firewall_name":"fw","event":{"timestamp":"2024-06-16T08:00:01.000000+0000","src_ip""#,
        ];
        crate::each_line_malformed(run, &lines);
        // Odd member types inside an event object do not fail the record, and the
        // epoch `event_timestamp` stands in for a missing `event.timestamp`.
        let (events, stats) = run(
            r#"{"firewall_name":5,"event_timestamp":1718524801,"event":{"src_ip":7,"src_port":"x","dest_port":70000,"proto":6,"alert":[],"netflow":{"pkts":"many"},"tcp":{"syn":"yes"},"http":{"hostname":"[2001:db8::1]:8080"},"unknown_section":{"a":1}}}"#,
        );
        assert_eq!(stats.malformed, 0);
        let e = &events[0];
        assert_eq!(e["@timestamp"], "2024-06-16T08:00:01Z");
        assert!(e.get("source").is_none());
        assert!(e["destination"].get("port").is_none());
        assert_eq!(e["url"]["domain"], "2001:db8::1");
        assert_eq!(e["url"]["port"], 8080);
        assert_eq!(e["aws"]["firewall"]["unknown_section"]["a"], 1);
    }

    #[test]
    fn sample_file_parses_cleanly() {
        let (events, stats) = run(SAMPLE);
        assert_eq!((stats.events, stats.malformed), (8, 0));
        assert!(events.iter().all(|e| e["@timestamp"].is_string()));
    }
}
