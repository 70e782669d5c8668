//! Elastic Load Balancing logs. One S3 prefix (`AWSLogs/<account>/elasticloadbalancing/`)
//! receives four layouts, so the variant is decided line by line:
//!
//! * ALB access logs: `type time elb client:port target:port ...` where `type` is
//!   `http`, `https`, `h2`, `grpcs`, `ws` or `wss`;
//! * NLB TLS access logs: `tls <version> time elb listener client:port ...`;
//! * ALB connection logs: `time client_ip client_port listener_port ...`;
//! * Classic ELB access logs: `time elb client:port backend:port ...`, HTTP lines and
//!   TCP lines (whose HTTP fields are `-`).
//!
//! All are space-separated with quoted fields; the tokenizer is shared with the
//! `s3_access` module. Timings of `-1` mean "not measured" and are dropped, never
//! emitted as negative numbers. Fields AWS appends after the last known one are kept
//! under `aws.elb.extra_fields`.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::detect::regex_matches;
use crate::driver::{LineOutcome, 
    LineContext, LineParser, RecordError,
};
use crate::enrich::DomainField;
use crate::event::{Event, Value};
use crate::readers::access_log::{self, RequestLine};
use crate::registry::{ContentClue, FirstLine, FormatSpec, KeyClue, Reader};
use crate::util::{self, field};

/// ALB access log positions.
mod alb {
    pub const TYPE: usize = 0;
    pub const TIME: usize = 1;
    /// The classic layout starts here, one field later than in classic logs.
    pub const CLASSIC_OFFSET: usize = 1;
    crate::readers::columns::field_positions! {
        16 => TARGET_GROUP_ARN, TRACE_ID, DOMAIN_NAME, CHOSEN_CERT_ARN,
        MATCHED_RULE_PRIORITY, REQUEST_CREATION_TIME, ACTIONS_EXECUTED, REDIRECT_URL,
        ERROR_REASON, TARGET_LIST, TARGET_STATUS_CODE_LIST, CLASSIFICATION,
        CLASSIFICATION_REASON, CONN_TRACE_ID, TRANSFORMED_HOST, TRANSFORMED_URI,
        REQUEST_TRANSFORM_STATUS,
    }
    /// The first ALB logs (2016) ended at the SSL protocol.
    pub const REQUIRED: usize = TARGET_GROUP_ARN;
}

/// Classic ELB access log positions (ALB's first 16 fields minus `type`).
mod classic {
    crate::readers::columns::field_positions! {
        0 => TIME, ELB, CLIENT, BACKEND, REQUEST_PROCESSING_TIME,
        BACKEND_PROCESSING_TIME, RESPONSE_PROCESSING_TIME, ELB_STATUS, BACKEND_STATUS,
        RECEIVED_BYTES, SENT_BYTES, REQUEST, USER_AGENT, SSL_CIPHER, SSL_PROTOCOL,
    }
    /// Through the user agent; the SSL fields came later.
    pub const REQUIRED: usize = USER_AGENT + 1;
}

/// NLB TLS access log positions.
mod nlb {
    crate::readers::columns::field_positions! {
        1 => VERSION, TIME, ELB, LISTENER, CLIENT, DESTINATION, CONNECTION_TIME,
        TLS_HANDSHAKE_TIME, RECEIVED_BYTES, SENT_BYTES, INCOMING_TLS_ALERT,
        CHOSEN_CERT_ARN, CHOSEN_CERT_SERIAL, TLS_CIPHER, TLS_PROTOCOL_VERSION,
        TLS_NAMED_GROUP, DOMAIN_NAME, ALPN_FE_PROTOCOL, ALPN_BE_PROTOCOL,
        ALPN_CLIENT_PREFERENCE_LIST, TLS_CONNECTION_CREATION_TIME,
    }
    /// Version 1.0 records end at the domain name.
    pub const REQUIRED: usize = DOMAIN_NAME + 1;
}

/// ALB connection log positions.
mod conn {
    crate::readers::columns::field_positions! {
        0 => TIME, CLIENT_IP, CLIENT_PORT, LISTENER_PORT, TLS_PROTOCOL, TLS_CIPHER,
        TLS_HANDSHAKE_LATENCY, LEAF_CLIENT_CERT_SUBJECT, LEAF_CLIENT_CERT_VALIDITY,
        LEAF_CLIENT_CERT_SERIAL_NUMBER, TLS_VERIFY_STATUS, CONN_TRACE_ID,
    }
    /// Records before `conn_trace_id` was added end at the verify status.
    pub const REQUIRED: usize = TLS_VERIFY_STATUS + 1;
}

/// Which of the four layouts a line has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Alb,
    NlbTls,
    AlbConnection,
    Classic,
}

impl Variant {
    fn detect(f: &[Cow<'_, str>]) -> Option<Self> {
        let first = f.first()?;
        let second = f.get(1)?;
        if first == "tls"
            && !second.is_empty()
            && second.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        {
            return Some(Variant::NlbTls);
        }
        if !first.is_empty()
            && first.len() <= 8
            && first
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && timestamp(second).is_some()
        {
            return Some(Variant::Alb);
        }
        if timestamp(first).is_some() {
            let bare_ip = util::canonical_ip(second).is_some() && !second.starts_with('[');
            let port = f
                .get(2)
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
            return Some(if bare_ip && port {
                Variant::AlbConnection
            } else {
                Variant::Classic
            });
        }
        None
    }

    /// `aws.elb.log_type`: lets a query pick one layout.
    fn name(self) -> &'static str {
        match self {
            Variant::Alb => "alb_access",
            Variant::NlbTls => "nlb_tls",
            Variant::AlbConnection => "alb_connection",
            Variant::Classic => "classic",
        }
    }
}

/// ISO 8601 times as ELB writes them: `2018-07-02T22:23:00.186641Z`, and without a
/// zone (`2018-12-20T02:59:40`) in NLB logs, which are UTC too.
fn timestamp(v: &str) -> Option<OffsetDateTime> {
    let v = field(v)?;
    if !v.as_bytes().first()?.is_ascii_digit() {
        return None;
    }
    match OffsetDateTime::parse(v, &Rfc3339) {
        Ok(t) => Some(t.to_offset(time::UtcOffset::UTC)),
        Err(_) => OffsetDateTime::parse(&format!("{v}Z"), &Rfc3339).ok(),
    }
}

/// Writes a time at millisecond precision, the resolution of an Elasticsearch `date`
/// and of Elastic's own ELB mapping. Durations are computed before this, from the
/// full microsecond precision of the log.
/// Stamps a record of a layout that needs `required` fields with its time (at `time`):
/// `@timestamp` and `also` (`event.start` or `event.end`, whichever the layout's time
/// is). The field-count error when the record is too short, else the time or its error.
fn stamp(
    ev: &mut Event,
    f: &[Cow<'_, str>],
    required: usize,
    time: usize,
    also: &'static str,
) -> Result<OffsetDateTime, RecordError> {
    if f.len() < required {
        return Err(RecordError::FieldCount {
            expected: required,
            found: f.len(),
        });
    }
    let t = timestamp(&f[time]).ok_or_else(|| RecordError::invalid("time", &f[time]))?;
    set_time(ev, "@timestamp", t);
    set_time(ev, also, t);
    Ok(t)
}

fn set_time(ev: &mut Event, path: &'static str, t: OffsetDateTime) {
    let millis = t.nanosecond() / 1_000_000 * 1_000_000;
    ev.set_opt(
        path,
        t.replace_nanosecond(millis).ok().and_then(util::rfc3339),
    );
}

/// Nanoseconds from `start` to `end`; `None` when the clock went backwards.
fn nanos_between(start: OffsetDateTime, end: OffsetDateTime) -> Option<u64> {
    u64::try_from((end - start).whole_nanoseconds()).ok()
}

/// The account and Region in an ELB log key
/// (`[prefix/]AWSLogs/<account>/elasticloadbalancing/<region>/yyyy/mm/dd/...`):
/// the load balancer's own.
fn key_origin(key: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = key.split('/').collect();
    parts.windows(4).find_map(|w| {
        (w[0] == "AWSLogs"
            && w[1].len() == 12
            && w[1].bytes().all(|c| c.is_ascii_digit())
            && w[2] == "elasticloadbalancing"
            && access_log::looks_like_region(w[3]))
        .then(|| (w[1].to_owned(), w[3].to_owned()))
    })
}

/// Sets `ip_path`/`port_path` from `ip:port` and adds the IP to `related.ip`.
fn set_peer(
    ev: &mut Event,
    v: &str,
    ip_path: &'static str,
    port_path: &'static str,
) -> Option<String> {
    let (ip, port) = util::split_ip_port(v)?;
    ev.set(ip_path, ip.clone());
    ev.set_opt(port_path, port);
    ev.push_unique("related.ip", ip.clone());
    Some(ip)
}

fn set_source(ev: &mut Event, v: &str) {
    if let Some(ip) = set_peer(ev, v, "source.ip", "source.port") {
        ev.set_opt("network.type", util::ip_version(&ip));
        ev.set("source.address", ip);
    }
}

fn set_tls(ev: &mut Event, cipher: Option<&str>, protocol: Option<&str>) {
    ev.set_str("tls.cipher", cipher);
    if let Some((proto, version)) = protocol.and_then(access_log::tls_version) {
        ev.set("tls.version_protocol", proto);
        ev.set("tls.version", version);
    }
}

/// A `-1`-means-absent seconds field, kept under `aws.elb.<name>.sec`.
fn seconds(v: Option<&str>) -> Option<f64> {
    v.and_then(util::non_negative_f64)
}

fn status_outcome(code: u64) -> &'static str {
    if code >= 400 { "failure" } else { "success" }
}

/// The trace id AWS X-Ray and other AWS logs use: the `Root=` part of an
/// `X-Amzn-Trace-Id` header (`Self=...;Root=1-5759e988-bd862e3fe1be46a994272793;...`).
/// A header without `Root=` (a client may send anything) is kept whole.
fn trace_root(header: &str) -> &str {
    header
        .split(';')
        .find_map(|part| part.trim().strip_prefix("Root="))
        .filter(|r| !r.is_empty())
        .unwrap_or(header)
}

/// The SNI name the client asked for (URL-encoded in NLB logs): `tls.client.server_name`
/// always, and `destination.domain` (the load balancer's name as the client knows it)
/// when it is a plausible host name rather than arbitrary client bytes.
fn set_sni(ev: &mut Event, cx: &LineContext<'_>, sni: Option<&str>) {
    let Some(sni) = sni else {
        return;
    };
    let sni = util::percent_decode(sni);
    ev.set("tls.client.server_name", sni.as_ref().to_owned());
    if access_log::is_host_name(&sni) {
        cx.enricher.domain(ev, DomainField::Destination, &sni);
    }
}

fn keep_extra(ev: &mut Event, f: &[Cow<'_, str>], known: usize) {
    let extra: Vec<Value> = f
        .iter()
        .skip(known)
        .filter_map(|v| field(v))
        .map(|v| Value::Str(v.to_owned()))
        .collect();
    if !extra.is_empty() {
        ev.set("aws.elb.extra_fields", Value::Arr(extra));
    }
}

/// A list field as an array: `"h2","http/1.1"` (quoted and URL-encoded items, in NLB
/// logs), `forward,redirect`, `10.0.0.1:80 10.0.0.2:80`.
fn split_list(v: Option<&str>, sep: char) -> Option<Value> {
    let items: Vec<Value> = v?
        .split(sep)
        .map(|s| s.trim().trim_matches(|c| c == '"' || c == '\\'))
        .filter(|s| field(s).is_some())
        .map(|s| Value::Str(util::percent_decode(s).into_owned()))
        .collect();
    (!items.is_empty()).then_some(Value::Arr(items))
}

/// Parses ELB access and connection log lines of any variant.
#[derive(Debug, Default)]
pub struct ElbParser {
    /// Account and Region from the object key, when it follows AWS's layout.
    origin: Option<(String, String)>,
}

impl ElbParser {
    pub fn for_key(key: &str) -> Self {
        ElbParser {
            origin: key_origin(key),
        }
    }
}

/// The fields classic and ALB access logs share, read at `offset` (0 classic, 1 ALB).
struct HttpFields<'f> {
    f: &'f [Cow<'f, str>],
    offset: usize,
}

impl<'f> HttpFields<'f> {
    fn get(&self, classic_index: usize) -> Option<&'f str> {
        self.f
            .get(classic_index + self.offset)
            .and_then(|v| field(v))
    }

    fn raw(&self, classic_index: usize) -> &'f str {
        self.f
            .get(classic_index + self.offset)
            .map_or("", |v| v.as_ref())
    }
}

/// The sum of the three processing times, when all were measured: from the request
/// reaching the load balancer to the response leaving it.
fn processing_nanos(h: &HttpFields<'_>) -> Option<u64> {
    use classic::*;
    let parts = [
        REQUEST_PROCESSING_TIME,
        BACKEND_PROCESSING_TIME,
        RESPONSE_PROCESSING_TIME,
    ]
    .map(|i| seconds(h.get(i)));
    match parts {
        [Some(a), Some(b), Some(c)] => Some(util::secs_to_nanos(a + b + c)),
        _ => None,
    }
}

impl ElbParser {
    /// Maps what classic and ALB lines share. A line is an HTTP request unless all
    /// its HTTP parts are `-`, as classic TCP listeners log them.
    fn map_shared(&self, ev: &mut Event, h: &HttpFields<'_>, cx: &LineContext<'_>, alb: bool) {
        use classic::*;
        ev.set_str("aws.elb.name", h.get(ELB));
        set_source(ev, h.raw(CLIENT));
        set_peer(
            ev,
            h.raw(BACKEND),
            "aws.elb.backend.ip",
            "aws.elb.backend.port",
        );
        let timings = [
            (
                "aws.elb.request_processing_time.sec",
                seconds(h.get(REQUEST_PROCESSING_TIME)),
            ),
            (
                "aws.elb.backend_processing_time.sec",
                seconds(h.get(BACKEND_PROCESSING_TIME)),
            ),
            (
                "aws.elb.response_processing_time.sec",
                seconds(h.get(RESPONSE_PROCESSING_TIME)),
            ),
        ];
        for (path, v) in timings {
            ev.set_opt(path, v);
        }

        let request = RequestLine::parse(h.raw(REQUEST));
        let elb_status = h.get(ELB_STATUS).and_then(util::uint);
        let is_http = elb_status.is_some() || request.method.is_some() || request.target.is_some();
        let received = h.get(RECEIVED_BYTES).and_then(util::uint);
        let sent = h.get(SENT_BYTES).and_then(util::uint);
        if is_http {
            util::set_category(ev, &["web"]);
            util::set_type(ev, &["access"]);
            ev.set("aws.elb.protocol", "http");
            if let Some(code) = elb_status {
                ev.set("http.response.status_code", code);
                ev.set("event.outcome", status_outcome(code));
            }
            ev.set_opt(
                "aws.elb.backend.http.response.status_code",
                h.get(BACKEND_STATUS).and_then(util::uint),
            );
            ev.set_str("http.request.method", request.method);
            ev.set_opt("http.version", request.http_version());
            if let Some(target) = request.target {
                access_log::set_url(ev, cx.enricher, target, true);
            }
            cx.enricher.user_agent(ev, h.raw(USER_AGENT));
            if alb {
                // ALB counts headers too: whole messages.
                ev.set_opt("http.request.bytes", received);
                ev.set_opt("http.response.bytes", sent);
            } else {
                // Classic HTTP listeners count the bodies only.
                ev.set_opt("http.request.body.bytes", received);
                ev.set_opt("http.response.body.bytes", sent);
            }
        } else {
            util::set_category(ev, &["network"]);
            util::set_type(ev, &["connection"]);
            ev.set("aws.elb.protocol", "tcp");
            ev.set("network.transport", "tcp");
            ev.set_opt("source.bytes", received);
            ev.set_opt("destination.bytes", sent);
            if let (Some(r), Some(s)) = (received, sent) {
                ev.set("network.bytes", r.saturating_add(s));
            }
        }
        set_tls(ev, h.get(SSL_CIPHER), h.get(SSL_PROTOCOL));
    }

    fn map_classic(
        &self,
        ev: &mut Event,
        f: &[Cow<'_, str>],
        cx: &LineContext<'_>,
    ) -> Result<(), RecordError> {
        use classic::*;
        // Classic logs stamp the time the request was received.
        let start = stamp(ev, f, REQUIRED, TIME, "event.start")?;
        let h = HttpFields { f, offset: 0 };
        self.map_shared(ev, &h, cx, false);
        if let Some(nanos) = processing_nanos(&h) {
            ev.set("event.duration", nanos);
            if let Some(end) = i64::try_from(nanos)
                .ok()
                .and_then(|n| start.checked_add(time::Duration::nanoseconds(n)))
            {
                set_time(ev, "event.end", end);
            }
        }
        keep_extra(ev, f, KNOWN);
        Ok(())
    }

    fn map_alb(
        &self,
        ev: &mut Event,
        f: &[Cow<'_, str>],
        cx: &LineContext<'_>,
    ) -> Result<(), RecordError> {
        use alb::*;
        let get = |i: usize| f.get(i).and_then(|v| field(v));
        // ALB logs stamp the time the response was sent (the close, for WebSockets).
        let end = stamp(ev, f, REQUIRED, TIME, "event.end")?;
        let kind = f[TYPE].as_ref();
        ev.set("aws.elb.type", kind.to_owned());
        ev.set(
            "network.protocol",
            match kind {
                "ws" | "wss" => "websocket",
                "grpcs" => "grpc",
                _ => "http",
            },
        );
        let h = HttpFields {
            f,
            offset: CLASSIC_OFFSET,
        };
        self.map_shared(ev, &h, cx, true);
        if let Some(start) = get(REQUEST_CREATION_TIME).and_then(timestamp) {
            set_time(ev, "event.start", start);
            ev.set_opt("event.duration", nanos_between(start, end));
        } else {
            // Logs from before `request_creation_time`: the load balancer's own time.
            ev.set_opt("event.duration", processing_nanos(&h));
        }

        if let Some(arn) = get(TARGET_GROUP_ARN) {
            ev.set("aws.elb.target_group.arn", arn.to_owned());
        }
        if let Some(header) = get(TRACE_ID) {
            ev.set("aws.elb.trace_id", header.to_owned());
            ev.set("trace.id", trace_root(header).to_owned());
        }
        set_sni(ev, cx, get(DOMAIN_NAME));
        ev.set_str("aws.elb.chosen_cert.arn", get(CHOSEN_CERT_ARN));
        // -1 here means "rule evaluation failed": a code, not a quantity.
        ev.set_str("aws.elb.matched_rule_priority", get(MATCHED_RULE_PRIORITY));
        ev.set_opt(
            "aws.elb.action_executed",
            split_list(get(ACTIONS_EXECUTED), ','),
        );
        ev.set_str("aws.elb.redirect_url", get(REDIRECT_URL));
        if let Some(reason) = get(ERROR_REASON) {
            ev.set("aws.elb.error.reason", reason.to_owned());
            ev.set("error.code", reason.to_owned());
        }
        if let Some(targets) = get(TARGET_LIST) {
            for t in targets.split(' ') {
                if let Some((ip, _)) = util::split_ip_port(t) {
                    ev.push_unique("related.ip", ip);
                }
            }
            ev.set_opt("aws.elb.target_port", split_list(Some(targets), ' '));
        }
        ev.set_opt(
            "aws.elb.target_status_code",
            split_list(get(TARGET_STATUS_CODE_LIST), ' '),
        );
        ev.set_str("aws.elb.classification", get(CLASSIFICATION));
        ev.set_str("aws.elb.classification_reason", get(CLASSIFICATION_REASON));
        ev.set_str("aws.elb.conn_trace_id", get(CONN_TRACE_ID));
        ev.set_str("aws.elb.transformed_host", get(TRANSFORMED_HOST));
        ev.set_str("aws.elb.transformed_uri", get(TRANSFORMED_URI));
        ev.set_str(
            "aws.elb.request_transform_status",
            get(REQUEST_TRANSFORM_STATUS),
        );
        keep_extra(ev, f, KNOWN);
        Ok(())
    }

    fn map_nlb(
        &self,
        ev: &mut Event,
        f: &[Cow<'_, str>],
        cx: &LineContext<'_>,
    ) -> Result<(), RecordError> {
        use nlb::*;
        let get = |i: usize| f.get(i).and_then(|v| field(v));
        // Stamped when the TLS connection ended.
        let end = stamp(ev, f, REQUIRED, TIME, "event.end")?;
        util::set_category(ev, &["network"]);
        util::set_type(ev, &["connection"]);
        ev.set("aws.elb.type", "tls");
        ev.set("aws.elb.protocol", "tcp");
        ev.set("network.transport", "tcp");
        ev.set_str("aws.elb.log_version", get(VERSION));
        ev.set_str("aws.elb.name", get(ELB));
        ev.set_str("aws.elb.listener", get(LISTENER));
        set_source(ev, &f[CLIENT]);
        // The address the client connected to: the listener (or the endpoint's ENI).
        set_peer(ev, &f[DESTINATION], "destination.ip", "destination.port");

        let start = get(TLS_CONNECTION_CREATION_TIME).and_then(timestamp);
        if let Some(start) = start {
            set_time(ev, "event.start", start);
        }
        if let Some(ms) = seconds(get(CONNECTION_TIME)) {
            ev.set("aws.elb.connection_time.ms", ms);
            ev.set("event.duration", util::secs_to_nanos(ms / 1000.0));
        } else if let Some(start) = start {
            ev.set_opt("event.duration", nanos_between(start, end));
        }
        let handshake = seconds(get(TLS_HANDSHAKE_TIME));
        ev.set_opt("aws.elb.tls_handshake_time.ms", handshake);
        // No handshake time: the handshake did not complete.
        ev.set("tls.established", handshake.is_some());
        util::set_outcome(ev, handshake.is_some());

        let received = get(RECEIVED_BYTES).and_then(util::uint);
        let sent = get(SENT_BYTES).and_then(util::uint);
        ev.set_opt("source.bytes", received);
        ev.set_opt("destination.bytes", sent);
        if let (Some(r), Some(s)) = (received, sent) {
            ev.set("network.bytes", r.saturating_add(s));
        }
        ev.set_str("aws.elb.incoming_tls_alert", get(INCOMING_TLS_ALERT));
        ev.set_str("aws.elb.chosen_cert.arn", get(CHOSEN_CERT_ARN));
        ev.set_str("aws.elb.chosen_cert.serial", get(CHOSEN_CERT_SERIAL));
        ev.set_str("tls.server.x509.serial_number", get(CHOSEN_CERT_SERIAL));
        set_tls(ev, get(TLS_CIPHER), get(TLS_PROTOCOL_VERSION));
        ev.set_str("aws.elb.tls_named_group", get(TLS_NAMED_GROUP));
        set_sni(ev, cx, get(DOMAIN_NAME));
        if let Some(alpn) = get(ALPN_FE_PROTOCOL) {
            ev.set("aws.elb.alpn_fe_protocol", alpn.to_owned());
            ev.set("tls.next_protocol", alpn.to_ascii_lowercase());
            if alpn == "h2" || alpn.starts_with("http/") {
                ev.set("network.protocol", "http");
            }
        }
        ev.set_str("aws.elb.alpn_be_protocol", get(ALPN_BE_PROTOCOL));
        ev.set_opt(
            "aws.elb.alpn_client_preference_list",
            split_list(get(ALPN_CLIENT_PREFERENCE_LIST), ','),
        );
        keep_extra(ev, f, KNOWN);
        Ok(())
    }

    fn map_connection(&self, ev: &mut Event, f: &[Cow<'_, str>]) -> Result<(), RecordError> {
        use conn::*;
        let get = |i: usize| f.get(i).and_then(|v| field(v));
        // Stamped when the connection was established (or failed to be).
        stamp(ev, f, REQUIRED, TIME, "event.end")?;
        util::set_category(ev, &["network"]);
        util::set_type(ev, &["connection"]);
        ev.set("aws.elb.protocol", "tcp");
        ev.set("network.transport", "tcp");
        if let Some(ip) = util::canonical_ip(&f[CLIENT_IP]) {
            ev.set_opt("network.type", util::ip_version(&ip));
            ev.set("source.address", ip.clone());
            ev.set("source.ip", ip.clone());
            ev.push_unique("related.ip", ip);
        }
        ev.set_opt(
            "source.port",
            get(CLIENT_PORT).and_then(|p| p.parse::<u16>().ok()),
        );
        ev.set_opt(
            "destination.port",
            get(LISTENER_PORT).and_then(|p| p.parse::<u16>().ok()),
        );
        let protocol = get(TLS_PROTOCOL);
        set_tls(ev, get(TLS_CIPHER), protocol);
        ev.set_opt(
            "aws.elb.tls_handshake_latency",
            seconds(get(TLS_HANDSHAKE_LATENCY)),
        );
        ev.set_str("tls.client.subject", get(LEAF_CLIENT_CERT_SUBJECT));
        if let Some(validity) = get(LEAF_CLIENT_CERT_VALIDITY) {
            for part in validity.split(';') {
                let (path, value) = match part.split_once('=') {
                    Some(("NotBefore", v)) => ("tls.client.not_before", v),
                    Some(("NotAfter", v)) => ("tls.client.not_after", v),
                    _ => continue,
                };
                if let Some(t) = timestamp(value) {
                    set_time(ev, path, t);
                }
            }
        }
        ev.set_str(
            "tls.client.x509.serial_number",
            get(LEAF_CLIENT_CERT_SERIAL_NUMBER),
        );
        let verify = get(TLS_VERIFY_STATUS);
        let failed_reason = verify.and_then(|v| v.strip_prefix("Failed"));
        if let Some(reason) = failed_reason {
            ev.set("aws.elb.tls_verify_status", "Failed");
            ev.set("event.outcome", "failure");
            ev.set("tls.established", false);
            if let Some(code) = field(reason.trim_start_matches(':')) {
                ev.set("error.code", code.to_owned());
            }
        } else {
            ev.set_str("aws.elb.tls_verify_status", verify);
            if protocol.is_some() {
                ev.set("event.outcome", "success");
                ev.set("tls.established", true);
            }
        }
        ev.set_str("aws.elb.conn_trace_id", get(CONN_TRACE_ID));
        keep_extra(ev, f, KNOWN);
        Ok(())
    }
}

impl LineParser for ElbParser {
    fn parse_line(&mut self, line: &str, cx: &LineContext<'_>, out: &mut Vec<Event>) -> LineOutcome {
        let f = access_log::split_fields(line);
        let variant = Variant::detect(&f).ok_or_else(|| {
            RecordError::Other("not an ELB access or connection log record".into())
        })?;
        let mut ev = Event::new();
        match variant {
            Variant::Alb => self.map_alb(&mut ev, &f, cx)?,
            Variant::NlbTls => self.map_nlb(&mut ev, &f, cx)?,
            Variant::AlbConnection => self.map_connection(&mut ev, &f)?,
            Variant::Classic => self.map_classic(&mut ev, &f, cx)?,
        }
        ev.set("aws.elb.log_type", variant.name());
        util::set_aws_service(&mut ev, "elasticloadbalancing");
        if let Some((account, region)) = &self.origin {
            ev.set("cloud.account.id", account.clone());
            ev.set("cloud.region", region.clone());
        }
        out.push(ev);
        Ok(true)
    }
}

/// ALB, classic ELB and NLB access logs, and ALB connection logs.
pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "elb",
    dataset: "aws.elb_logs",
    example_key: "AWSLogs/123456789012/elasticloadbalancing/us-east-2/2024/03/15/123456789012_elasticloadbalancing_us-east-2_app.my-loadbalancer.50dc6c495c0c9188_20240315T0005Z_198.51.100.7_2kb2s4yy.log.gz",
    key_clues: &[KeyClue {
        rank: 20,
        layout: "AWSLogs/<account>/elasticloadbalancing/",
        matches: |k| {
            k.lower.contains("/elasticloadbalancing/") || k.file_name.contains("_elasticloadbalancing_")
        },
    }],
    content_clues: &[ContentClue {
        rank: 50,
        what: "load balancer record",
        first_line: FirstLine::Text,
        matches: |line| {
            static RECORD: OnceLock<Option<Regex>> = OnceLock::new();
            regex_matches(
                &RECORD,
                r"^((http|https|h2|grpcs|ws|wss|tls) \d{4}-\d{2}-\d{2}T\S+Z |\d{4}-\d{2}-\d{2}T\S+Z \S+ [0-9a-fA-F.:\[\]]+:\d+ )",
                line,
            )
        },
    }],
    skip: None,
    options: &[],
    reader: Reader::Lines(|object, _| Box::new(ElbParser::for_key(&object.key))),
};

#[cfg(test)]
mod tests {
    use serde_json::json;
    use super::*;
    use crate::{Format, ParseOptions, ParseStats, assert_error_contains, assert_fields};

    const SAMPLE: &str = include_str!("../../../../tests/samples/elb.log");
    const KEY: &str = "lb/AWSLogs/111122223333/elasticloadbalancing/eu-west-1/2024/03/04/111122223333_elasticloadbalancing_eu-west-1_app.shop-prod-alb.6d1f0e3a9b2c4d5e_20240304T0920Z_10.20.0.5_2k9f8e7d.log.gz";

    fn run_key(text: &str, key: &str) -> (Vec<Event>, ParseStats) {
        let options = ParseOptions::default();
        crate::parse_object_for_test(Format::Elb, &mut text.as_bytes(), "lb-logs", key, &options)
    }

    fn one(line: &str) -> serde_json::Value {
        let (events, stats) = run_key(&format!("{line}\n"), KEY);
        assert_eq!(
            stats.malformed,
            0,
            "{:?}",
            events[0].get_str("error.message")
        );
        events[0].to_json()
    }

    fn sample_line(starts_with: &str) -> &'static str {
        SAMPLE
            .lines()
            .find(|l| l.starts_with(starts_with))
            .unwrap_or_else(|| panic!("no sample line starting with {starts_with}"))
    }

    /// Every number in the event, to check none is negative.
    fn numbers(v: &serde_json::Value, out: &mut Vec<f64>) {
        match v {
            serde_json::Value::Number(n) => out.extend(n.as_f64()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| numbers(x, out)),
            serde_json::Value::Object(m) => m.values().for_each(|x| numbers(x, out)),
            _ => {}
        }
    }

    #[test]
    fn alb_https_request_maps_every_field() {
        let e = one(sample_line("https 2024-03-04T09:15:02"));
        // computed from the full microsecond times
        assert_fields(
            &e,
            json!({
                "@timestamp": "2024-03-04T09:15:02.384Z",
                "event": {
                    "end": "2024-03-04T09:15:02.384Z",
                    "start": "2024-03-04T09:15:02.335Z",
                    "duration": 49_211_000u64,
                    "category": ["web"],
                    "type": ["access"],
                    "outcome": "success",
                },
                "source": {"ip": "198.51.100.23", "port": 52814},
            }),
        );
        let elb = &e["aws"]["elb"];
        assert_fields(
            elb,
            json!({
                "log_type": "alb_access",
                "type": "https",
                "name": "app/shop-prod-alb/6d1f0e3a9b2c4d5e",
                "backend": {
                    "ip": "10.20.1.17",
                    "port": 8080,
                    "http": {"response": {"status_code": 200}},
                },
                "request_processing_time": {"sec": 0.001},
                "backend_processing_time": {"sec": 0.048},
                "response_processing_time": {"sec": 0.0},
                "target_group": {
                    "arn": "arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/shop-web/8e2c6a1f3b5d7094",
                },
                "matched_rule_priority": "10",
                "action_executed": ["forward"],
                "target_port": ["10.20.1.17:8080"],
                "target_status_code": ["200"],
                "conn_trace_id": "TID_7f3e9a1c5b2d4e6f8a0b1c2d3e4f5a6b",
                "trace_id": "Root=1-65e5914e-2b7c0d9e8f1a3b4c5d6e7f80",
            }),
        );
        // ALB byte counts include headers
        assert_fields(
            &e,
            json!({
                "trace": {"id": "1-65e5914e-2b7c0d9e8f1a3b4c5d6e7f80"},
                "http": {
                    "request": {"method": "GET", "bytes": 842},
                    "version": "1.1",
                    "response": {"status_code": 200, "bytes": 15320},
                },
            }),
        );
        assert!(e["http"]["response"].get("body").is_none());
        assert_fields(
            &e,
            json!({
                "url": {
                    "scheme": "https",
                    "domain": "shop.example.com",
                    "registered_domain": "example.com",
                    "port": 443,
                    "path": "/catalog/items",
                    "query": "page=2&sort=price",
                    "original": "https://shop.example.com:443/catalog/items?page=2&sort=price",
                },
                "user_agent": {"name": "Firefox"},
                "tls": {
                    "version": "1.2",
                    "cipher": "ECDHE-RSA-AES128-GCM-SHA256",
                    "client": {"server_name": "shop.example.com"},
                },
                "destination": {"domain": "shop.example.com"},
                "related": {"ip": ["198.51.100.23", "10.20.1.17"]},
                "cloud": {
                    "service": {"name": "elasticloadbalancing"},
                    "account": {"id": "111122223333"},
                    "region": "eu-west-1",
                },
            }),
        );
        assert!(elb.get("extra_fields").is_none());
    }

    #[test]
    fn unmeasured_timings_and_missing_targets_are_absent() {
        let e = one(sample_line("http 2024-03-04T09:15:11"));
        let elb = &e["aws"]["elb"];
        for t in [
            "request_processing_time",
            "backend_processing_time",
            "response_processing_time",
        ] {
            assert!(elb.get(t).is_none(), "{t}");
        }
        assert!(elb.get("backend").is_none());
        assert!(elb.get("target_group").is_none());
        assert_eq!(elb["redirect_url"], "https://shop.example.com:443/");
        assert_eq!(e["http"]["response"]["status_code"], 301);
        assert_eq!(e["event"]["duration"], 521_000u64);
        let mut all = Vec::new();
        numbers(&e, &mut all);
        assert!(all.iter().all(|n| *n >= 0.0), "{all:?}");

        // one -1 among measured timings: only that one is dropped
        let e = one(sample_line("h2 "));
        let elb = &e["aws"]["elb"];
        assert_eq!(elb["backend_processing_time"]["sec"], 30.001);
        assert!(elb.get("response_processing_time").is_none());
        let mut all = Vec::new();
        numbers(&e, &mut all);
        assert!(all.iter().all(|n| *n >= 0.0), "{all:?}");
    }

    #[test]
    fn ipv6_clients_http2_and_hop_trace_headers() {
        let e = one(sample_line("h2 "));
        assert_fields(
            &e,
            json!({
                "source": {"ip": "2001:db8:85a3::8a2e:370:7334", "port": 61022},
                "network": {"type": "ipv6"},
                "http": {
                    "version": "2.0",
                    "request": {"method": "POST"},
                    "response": {"status_code": 502},
                },
                "event": {"outcome": "failure"},
            }),
        );
        assert!(e["aws"]["elb"]["backend"]["http"].is_null());
        assert!(e["aws"]["elb"].get("target_status_code").is_none());
        // the trace root, not this hop's `Self=` id
        assert_eq!(e["trace"]["id"], "1-65e59135-11223344556677889900aabb");
        assert_eq!(e["aws"]["elb"]["chosen_cert"]["arn"], "session-reused");
        assert_eq!(e["tls"]["version"], "1.3");
    }

    #[test]
    fn lambda_errors_waf_blocks_and_websockets() {
        let e = one(sample_line("https 2024-03-04T09:15:25"));
        assert_eq!(e["aws"]["elb"]["error"]["reason"], "LambdaInvalidResponse");
        assert_eq!(e["error"]["code"], "LambdaInvalidResponse");
        assert_eq!(e["event"]["outcome"], "failure");

        let e = one(sample_line("https 2024-03-04T09:15:19"));
        assert_eq!(
            e["aws"]["elb"]["action_executed"],
            serde_json::json!(["waf"])
        );
        assert_eq!(e["http"]["response"]["status_code"], 403);
        assert_eq!(e["url"]["query"], "redirect_to=%2Fadmin");
        assert_eq!(e["url"]["extension"], "php");

        let e = one(sample_line("wss "));
        assert_eq!(e["network"]["protocol"], "websocket");
        assert_eq!(e["aws"]["elb"]["type"], "wss");
        // a WebSocket is logged when it closes: start to end is the connection
        assert_eq!(e["event"]["start"], "2024-03-04T09:16:31.448Z");
        assert_eq!(e["event"]["duration"], 1_708_552_310_000u64);
    }

    #[test]
    fn classic_http_and_tcp_lines() {
        let e = one(sample_line("2024-03-04T09:30:01"));
        assert_eq!(e["aws"]["elb"]["log_type"], "classic");
        assert!(e["aws"]["elb"].get("type").is_none());
        // classic logs stamp the time the request came in
        // classic HTTP byte counts are bodies only
        assert_fields(
            &e,
            json!({
                "aws": {"elb": {"name": "legacy-web", "backend": {"ip": "10.40.0.12"}}},
                "@timestamp": "2024-03-04T09:30:01.118Z",
                "event": {
                    "start": "2024-03-04T09:30:01.118Z",
                    "duration": 18_389_000u64,
                    "end": "2024-03-04T09:30:01.136Z",
                },
                "http": {"response": {"body": {"bytes": 5120}}, "request": {"body": {"bytes": 0}}},
                "url": {"domain": "legacy.example.com", "path": "/status.html"},
            }),
        );
        assert!(e.get("tls").is_none());

        let e = one(sample_line("2024-03-04T09:30:02"));
        assert_eq!(e["event"]["outcome"], "failure");
        assert_eq!(e["tls"]["version"], "1.2");
        assert_eq!(e["url"]["query"], "id=7");

        let e = one(sample_line("2024-03-04T09:30:05"));
        assert_fields(
            &e,
            json!({
                "event": {"category": ["network"]},
                "aws": {"elb": {"protocol": "tcp"}},
                "network": {"transport": "tcp", "bytes": 2244},
                "source": {"bytes": 1832},
                "destination": {"bytes": 412},
            }),
        );
        assert!(e.get("http").is_none());
        assert!(e.get("url").is_none());
        assert!(e.get("user_agent").is_none());
        assert!(e["event"].get("outcome").is_none());
    }

    #[test]
    fn nlb_tls_connections() {
        let e = one(sample_line("tls 2.0 2024-03-04T09:20:12"));
        // the listener address the client connected to
        assert_fields(
            &e,
            json!({
                "aws": {
                    "elb": {
                        "log_type": "nlb_tls",
                        "listener": "7c8d9e0f1a2b3c4d",
                        "tls_handshake_time": {"ms": 18.0},
                        "alpn_client_preference_list": ["h2", "http/1.1"],
                    },
                },
                "@timestamp": "2024-03-04T09:20:12Z",
                "event": {
                    "start": "2024-03-04T09:19:38Z",
                    "duration": 34_012_000_000u64,
                    "outcome": "success",
                },
                "source": {"ip": "192.0.2.45", "bytes": 12844},
                "destination": {
                    "ip": "10.30.0.10",
                    "port": 8883,
                    "bytes": 9920,
                    "domain": "mqtt.example.com",
                },
                "tls": {
                    "client": {"server_name": "mqtt.example.com"},
                    "version": "1.2",
                    "established": true,
                    "next_protocol": "h2",
                },
            }),
        );

        let e = one(sample_line("tls 2.0 2024-03-04T09:20:15"));
        assert_eq!(e["event"]["outcome"], "failure");
        assert_eq!(e["tls"]["established"], false);
        assert_eq!(e["aws"]["elb"]["incoming_tls_alert"], "40");
        assert!(e["tls"].get("version").is_none());
        assert!(e.get("destination").unwrap().get("domain").is_none());
    }

    #[test]
    fn alb_connection_logs() {
        let e = one(sample_line("2024-03-04T09:15:02.301877Z"));
        assert_fields(
            &e,
            json!({
                "aws": {
                    "elb": {
                        "log_type": "alb_connection",
                        "tls_handshake_latency": 0.012,
                        "conn_trace_id": "TID_7f3e9a1c5b2d4e6f8a0b1c2d3e4f5a6b",
                    },
                },
                "source": {"ip": "198.51.100.23", "port": 52814},
                "destination": {"port": 443},
                "tls": {"version": "1.2"},
                "event": {"outcome": "success"},
            }),
        );
        assert!(e["tls"].get("client").is_none());

        let e = one(sample_line("2024-03-04T09:16:40"));
        assert_eq!(e["event"]["outcome"], "failure");
        assert_eq!(e["error"]["code"], "ClientCertNotYetValid");
        assert_eq!(e["aws"]["elb"]["tls_verify_status"], "Failed");
        assert_eq!(e["tls"]["established"], false);
        let client = &e["tls"]["client"];
        assert_eq!(
            client["subject"],
            "CN=device-0042,OU=Fleet,O=Example Corp,C=FR"
        );
        assert_eq!(client["not_before"], "2024-01-01T00:00:00Z");
        assert_eq!(client["not_after"], "2025-01-01T00:00:00Z");
        assert_eq!(client["x509"]["serial_number"], "3A7F09C2E1B4D65F");
    }

    #[test]
    fn newer_and_unknown_trailing_fields() {
        let base = sample_line("https 2024-03-04T09:15:02");
        let e = one(&format!(
            "{base} \"shop-internal.example.com\" \"/v2/catalog/items\" \"TransformSuccess\" future-1 -"
        ));
        let elb = &e["aws"]["elb"];
        assert_eq!(elb["transformed_host"], "shop-internal.example.com");
        assert_eq!(elb["transformed_uri"], "/v2/catalog/items");
        assert_eq!(elb["request_transform_status"], "TransformSuccess");
        assert_eq!(elb["extra_fields"], serde_json::json!(["future-1"]));

        // the 2016 layout, ending at the SSL protocol
        let old = "http 2016-08-10T22:08:42.945958Z app/my-loadbalancer/50dc6c495c0c9188 192.0.2.1:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 \"GET http://www.example.com:80/ HTTP/1.1\" \"curl/7.46.0\" - -";
        let e = one(old);
        assert_eq!(e["http"]["response"]["status_code"], 200);
        assert!(e["event"].get("start").is_none());
        assert_eq!(e["event"]["duration"], 1_000_000u64);
    }

    #[test]
    fn malformed_lines_are_forwarded_raw() {
        let text = "garbage that is no elb log\nhttp 2024-03-04T09:15:02.384211Z app/x/y 192.0.2.1:1 - 0 0 0\n2024-13-45T00:00:00Z legacy 1.2.3.4:5 - 1 1 1 200 200 0 0 \"GET / HTTP/1.1\" \"-\" - -\n";
        let (events, stats) = run_key(text, "plain.log");
        assert_eq!((stats.events, stats.malformed), (3, 3));
        assert_error_contains(&events[0], "not an ELB");
        assert_error_contains(&events[1], "expected 16 fields, found 8");
        assert_error_contains(&events[2], "not an ELB");
        assert!(
            events
                .iter()
                .all(|e| e.get_str("event.kind") == Some("pipeline_error"))
        );
    }

    #[test]
    fn sample_file_parses_completely_with_every_variant() {
        let (events, stats) = run_key(SAMPLE, KEY);
        assert_eq!(stats.malformed, 0);
        assert_eq!(stats.events, 13);
        let kinds: std::collections::BTreeSet<&str> = events
            .iter()
            .filter_map(|e| e.get_str("aws.elb.log_type"))
            .collect();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            ["alb_access", "alb_connection", "classic", "nlb_tls"]
        );
        for e in &events {
            let mut all = Vec::new();
            numbers(&e.to_json(), &mut all);
            assert!(all.iter().all(|n| *n >= 0.0));
        }
    }

    #[test]
    fn log_keys_name_account_and_region() {
        assert_eq!(
            key_origin(KEY),
            Some(("111122223333".to_owned(), "eu-west-1".to_owned()))
        );
        assert_eq!(
            key_origin("AWSLogs/111122223333/vpcflowlogs/eu-west-1/x"),
            None
        );
        assert_eq!(key_origin("elb.log"), None);
        let (events, _) = run_key(&format!("{}\n", sample_line("tls 2.0")), "elb.log");
        assert!(!events[0].contains("cloud.account.id"));
    }

    #[test]
    fn times_with_and_without_zone() {
        let t = timestamp("2018-12-20T02:59:40").unwrap();
        assert_eq!(util::rfc3339(t).as_deref(), Some("2018-12-20T02:59:40Z"));
        let t = timestamp("2018-07-02T22:23:00.186641Z").unwrap();
        assert_eq!(t.nanosecond(), 186_641_000);
        assert!(timestamp("-").is_none());
        assert!(timestamp("app/x/y").is_none());
        assert_eq!(trace_root("Root=1-a-b"), "1-a-b");
        assert_eq!(trace_root("Self=1-x-y;Root=1-a-b;Sampled=1"), "1-a-b");
        assert_eq!(trace_root("custom-id"), "custom-id");
    }
}
