//! The generic formats: `ndjson` (application logs as JSON lines, the shape Firehose
//! and log shippers write) and `lines` (plain text application/syslog lines).

use std::fmt::Write;

use super::json;
use super::owned;
use crate::clock::Clock;
use crate::pools;
use crate::rng::Rng;

const SERVICES: &[&str] = &["checkout", "catalog", "auth", "payments", "search"];
const MESSAGES: &[(u32, (&str, &str))] = &[
    (60, ("info", "request completed")),
    (15, ("debug", "cache lookup")),
    (10, ("warn", "slow upstream response")),
    (5, ("error", "upstream returned 503, retrying")),
    (5, ("info", "user signed in")),
    (5, ("error", "payment declined: card expired")),
];

/// Appends one application log record as a JSON line.
pub fn ndjson(rng: &mut Rng, clock: &mut Clock, out: &mut String) {
    clock.tick(rng, 2_000);
    let (level, msg) = rng.weighted(MESSAGES);
    out.push_str("{\"timestamp\":\"");
    clock.iso_millis(out);
    let _ = write!(
        out,
        r#"","level":"{level}","service":"{}","message":"#,
        rng.pick(SERVICES)
    );
    json::string(out, msg);
    out.push_str(r#","trace_id":""#);
    rng.hex(out, 32);
    let _ = write!(
        out,
        r#"","http":{{"method":"{}","path":"/api/v1/items/{}","status":{},"duration_ms":{}}},"client_ip":""#,
        rng.pick(&["GET", "GET", "POST"]),
        rng.below(100_000),
        if level == "error" { 503 } else { 200 },
        rng.skewed(1, 5000)
    );
    pools::client_ip(rng, out, 10);
    out.push('"');
    if rng.chance(5) {
        // A presigned download link in a log line: redacted on output.
        out.push_str(
            r#","download_url":"https://amzn-s3-demo-bucket.s3.amazonaws.com/exports/a.csv?"#,
        );
        let date = owned(|s| clock.date(s));
        pools::presigned_query(rng, out, &date);
        out.push('"');
    }
    out.push_str("}\n");
}

/// Appends one plain text application (syslog-like) line.
pub fn lines(rng: &mut Rng, clock: &mut Clock, out: &mut String) {
    clock.tick(rng, 2_000);
    let (level, msg) = rng.weighted(MESSAGES);
    clock.iso_millis(out);
    let _ = write!(
        out,
        " ip-10-0-1-{}.ec2.internal {}[{}]: {} {msg} trace={}",
        rng.range(2, 250),
        rng.pick(SERVICES),
        rng.range(1000, 40000),
        level.to_ascii_uppercase(),
        rng.hex_string(16)
    );
    out.push('\n');
}
