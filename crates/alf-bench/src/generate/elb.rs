//! Application Load Balancer access logs: space-separated with quoted fields, in the
//! field order AWS documents (type ... classification_reason, conn_trace_id).

use std::fmt::Write;

use super::owned;
use crate::clock::Clock;
use crate::pools::{self, USER_AGENTS};
use crate::rng::Rng;

const LB: &str = "app/my-loadbalancer/50dc6c495c0c9188";
const TARGET_GROUPS: &[&str] = &[
    "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067",
    "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/api-targets/1a2b3c4d5e6f7a8b",
];
const CERT: &str =
    "arn:aws:acm:us-east-2:123456789012:certificate/12345678-1234-1234-1234-123456789012";

const PATHS: &[&str] = &[
    "/",
    "/health",
    "/api/v2/orders",
    "/api/v2/orders/8f14e45f",
    "/api/v2/users/me",
    "/login",
    "/static/app.js",
    "/graphql",
    "/search?q=red%20shoes&page=2",
    "/ws/notifications",
];

/// Appends one Application Load Balancer access log line.
pub fn record(rng: &mut Rng, clock: &mut Clock, out: &mut String) {
    clock.tick(rng, 3_000);
    let kind = rng.weighted(&[(20u32, "http"), (60, "https"), (15, "h2"), (5, "wss")]);
    let secure = kind != "http";
    let reached_target = rng.chance(96);
    let elb_status = if reached_target {
        rng.weighted(&[
            (80u32, 200u16),
            (4, 201),
            (3, 204),
            (3, 301),
            (2, 302),
            (2, 304),
            (2, 400),
            (2, 401),
            (1, 403),
            (3, 404),
            (1, 500),
        ])
    } else {
        rng.weighted(&[(60u32, 502u16), (25, 503), (15, 504)])
    };

    let _ = write!(out, "{kind} ");
    clock.iso_micros(out);
    let _ = write!(out, " {LB} ");
    if rng.chance(8) {
        out.push('[');
        pools::ipv6(rng, out);
        out.push(']');
    } else {
        pools::public_ipv4(rng, out);
    }
    let _ = write!(out, ":{} ", rng.range(1024, 65535));
    let target = owned(|s| {
        pools::private_ipv4(rng, s);
        s.push_str(":80");
    });
    if reached_target {
        let _ = write!(
            out,
            "{target} {:.3} {:.3} {:.3} {elb_status} {elb_status}",
            rng.below(3) as f64 / 1000.0,
            rng.skewed(1, 8000) as f64 / 1000.0,
            rng.below(2) as f64 / 1000.0
        );
    } else if elb_status == 503 {
        out.push_str("- -1 -1 -1 503 -");
    } else {
        let _ = write!(out, "{target} 0.001 -1 -1 {elb_status} -");
    }
    let method = rng.weighted(&[(70u32, "GET"), (20, "POST"), (5, "PUT"), (5, "DELETE")]);
    let port = if secure { 443 } else { 80 };
    let scheme = match kind {
        "http" => "http",
        "wss" => "wss",
        _ => "https",
    };
    let version = if kind == "h2" { "HTTP/2.0" } else { "HTTP/1.1" };
    let path = if kind == "wss" {
        "/ws/notifications"
    } else {
        rng.pick(PATHS)
    };
    let _ = write!(
        out,
        " {} {} \"{method} {scheme}://www.example.com:{port}{path} {version}\" \"{}\" ",
        rng.skewed(60, 20_000),
        rng.skewed(100, 2_000_000),
        rng.weighted(USER_AGENTS),
    );
    if secure {
        out.push_str(rng.pick(&[
            "ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2",
            "TLS_AES_128_GCM_SHA256 TLSv1.3",
            "TLS_AES_256_GCM_SHA384 TLSv1.3",
        ]));
    } else {
        out.push_str("- -");
    }
    let tg = if elb_status == 503 {
        "-"
    } else {
        rng.pick(TARGET_GROUPS)
    };
    let _ = write!(out, " {tg} \"Root=1-{:08x}-", clock.epoch_secs());
    rng.hex(out, 24);
    out.push_str("\" ");
    if secure {
        let _ = write!(out, "\"www.example.com\" \"{CERT}\"");
    } else {
        out.push_str("\"-\" \"-\"");
    }
    let priority = if rng.chance(70) { 0 } else { rng.range(1, 50) };
    let _ = write!(out, " {priority} ");
    // The request arrived a little before the response was logged.
    clock
        .minus(rng.skewed(500, 9_000_000) as i64)
        .iso_micros(out);
    let actions = if elb_status == 301 && rng.chance(50) {
        "redirect"
    } else if rng.chance(10) {
        "authenticate,forward"
    } else if elb_status == 404 && rng.chance(20) {
        "fixed-response"
    } else {
        "forward"
    };
    let _ = write!(out, " \"{actions}\" ");
    if actions == "redirect" {
        out.push_str("\"https://www.example.com:443/\"");
    } else {
        out.push_str("\"-\"");
    }
    let error_reason = match elb_status {
        502 => "\"TargetConnectionErrorCode\"",
        504 => "\"TargetResponseTimeout\"",
        _ => "\"-\"",
    };
    if reached_target {
        let _ = write!(out, " {error_reason} \"{target}\" \"{elb_status}\"");
    } else if elb_status == 503 {
        out.push_str(" \"-\" \"-\" \"-\"");
    } else {
        let _ = write!(out, " {error_reason} \"{target}\" \"-\"");
    }
    if rng.chance(3) {
        out.push_str(" \"Ambiguous\" \"UndefinedContentLengthSemantics\"");
    } else {
        out.push_str(" \"-\" \"-\"");
    }
    out.push_str(" TID_");
    rng.hex(out, 32);
    out.push('\n');
}
