//! CloudFront standard logs: `#Version`/`#Fields` headers then tab-separated records
//! in the 33-column layout AWS documents for standard logging.

use std::fmt::Write;

use super::owned;
use crate::clock::Clock;
use crate::pools::{self, EDGE_LOCATIONS, USER_AGENTS};
use crate::rng::Rng;

pub const FIELDS: &str = "date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end";
/// The two header lines CloudFront starts every file with.
pub const HEADER: &[&str] = &["#Version: 1.0\n#Fields: ", FIELDS, "\n"];

/// One distribution per file, as CloudFront delivers them.
const DISTRIBUTION_HOST: &str = "d111111abcdef8.cloudfront.net";
const HOST_HEADERS: &[(u32, &str)] = &[
    (60, "www.example.com"),
    (20, "example.com"),
    (15, "static.example.com"),
    (4, "d111111abcdef8.cloudfront.net"),
    (1, "media.example.co.uk"),
];

/// (weight, path, content type)
const PATHS: &[(u32, (&str, &str))] = &[
    (20, ("/", "text/html")),
    (10, ("/index.html", "text/html")),
    (12, ("/assets/app.3f9a2c.js", "application/javascript")),
    (8, ("/assets/vendor.91be01.js", "application/javascript")),
    (10, ("/assets/main.c81d.css", "text/css")),
    (10, ("/images/hero-1920.webp", "image/webp")),
    (6, ("/images/logo.png", "image/png")),
    (4, ("/images/products/12345/thumb.jpg", "image/jpeg")),
    (3, ("/favicon.ico", "image/x-icon")),
    (3, ("/fonts/inter-var.woff2", "font/woff2")),
    (8, ("/api/v1/products", "application/json")),
    (4, ("/api/v1/cart", "application/json")),
    (2, ("/api/v1/search", "application/json")),
    (3, ("/downloads/report-2024-q1.pdf", "application/pdf")),
    (3, ("/video/intro/segment_00042.ts", "video/MP2T")),
    (
        2,
        (
            "/video/intro/playlist.m3u8",
            "application/vnd.apple.mpegurl",
        ),
    ),
    (1, ("/robots.txt", "text/plain")),
    (1, ("/sitemap.xml", "application/xml")),
    (1, ("/.env", "text/html")),
    (1, ("/wp-login.php", "text/html")),
    (1, ("/blog/2024/03/what%20we%20learned.html", "text/html")),
];

const STATUS: &[(u32, u16)] = &[
    (700, 200),
    (90, 304),
    (30, 206),
    (20, 301),
    (15, 302),
    (20, 403),
    (60, 404),
    (5, 500),
    (8, 502),
    (5, 503),
    (4, 504),
    (3, 0),
];

const TLS: &[(u32, (&str, &str))] = &[
    (60, ("TLSv1.3", "TLS_AES_128_GCM_SHA256")),
    (10, ("TLSv1.3", "TLS_AES_256_GCM_SHA384")),
    (5, ("TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256")),
    (20, ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256")),
    (4, ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384")),
    (1, ("TLSv1.1", "ECDHE-RSA-AES128-SHA")),
];

/// Appends one CloudFront standard log line.
pub fn record(rng: &mut Rng, clock: &mut Clock, out: &mut String) {
    clock.tick(rng, 4_000);
    let status = rng.weighted(STATUS);
    let (path, content_type) = rng.weighted(PATHS);
    let https = rng.chance(93);
    let method = rng.weighted(&[
        (90u32, "GET"),
        (4, "HEAD"),
        (3, "POST"),
        (1, "OPTIONS"),
        (1, "PUT"),
        (1, "DELETE"),
    ]);
    let result = match status {
        0 => "Error",
        s if s >= 500 => "Error",
        403 if rng.chance(30) => "LimitExceeded",
        s if s >= 400 => "Error",
        301 | 302 => "Redirect",
        _ => rng.weighted(&[(70u32, "Hit"), (22, "Miss"), (8, "RefreshHit")]),
    };
    let detailed = match (result, status) {
        ("Error", 502) => "OriginConnectError",
        ("Error", 504) => "OriginCommError",
        ("Error", 0) => "ClientCommError",
        ("Hit", _) if rng.chance(10) => "OriginShieldHit",
        (r, _) => r,
    };
    let body = if status == 304 || method == "HEAD" || status == 0 {
        0
    } else {
        rng.skewed(40, 4_000_000)
    };

    clock.date(out);
    out.push('\t');
    clock.time(out);
    out.push('\t');
    out.push_str(rng.pick(EDGE_LOCATIONS));
    let _ = write!(out, "\t{}\t", body + rng.range(250, 900));
    pools::client_ip(rng, out, 12);
    let _ = write!(
        out,
        "\t{method}\t{DISTRIBUTION_HOST}\t{path}\t{status:03}\t"
    );
    if rng.chance(35) {
        out.push_str("https://www.example.com/");
        if rng.chance(50) {
            out.push_str("products/12345");
        }
    } else {
        out.push('-');
    }
    out.push('\t');
    pools::cloudfront_encode(rng.weighted(USER_AGENTS), out);
    out.push('\t');
    // Query strings: none, cache busters, tracking, and presigned URLs.
    match rng.below(100) {
        0..=59 => out.push('-'),
        60..=74 => {
            let _ = write!(out, "v={}", rng.below(100_000));
        }
        75..=84 => {
            let _ = write!(
                out,
                "utm_source={}&utm_medium=cpc&utm_campaign=spring-{}",
                rng.pick(&["google", "newsletter", "facebook", "partner%20site"]),
                rng.below(40)
            );
        }
        85..=91 => {
            let _ = write!(
                out,
                "q=shoes%20size%20{}&page={}",
                rng.range(36, 46),
                rng.range(1, 9)
            );
        }
        _ => {
            let date = owned(|s| clock.date(s));
            pools::presigned_query(rng, out, &date);
        }
    }
    out.push('\t');
    if rng.chance(15) {
        let _ = write!(out, "session-id={}", rng.hex_string(24));
    } else {
        out.push('-');
    }
    let _ = write!(out, "\t{result}\t");
    rng.base64ish(out, 54);
    out.push_str("==\t");
    out.push_str(rng.weighted(HOST_HEADERS));
    out.push('\t');
    out.push_str(if https { "https" } else { "http" });
    let _ = write!(out, "\t{}\t", rng.range(90, 2000));
    let taken = rng.skewed(1, 3_000) as f64 / 1000.0;
    let _ = write!(out, "{taken:.3}\t");
    if rng.chance(5) {
        pools::public_ipv4(rng, out);
    } else {
        out.push('-');
    }
    out.push('\t');
    if https {
        let (proto, cipher) = rng.weighted(TLS);
        let _ = write!(out, "{proto}\t{cipher}");
    } else {
        out.push_str("-\t-");
    }
    let _ = write!(out, "\t{result}\t");
    out.push_str(rng.weighted(&[(60u32, "HTTP/2.0"), (30, "HTTP/1.1"), (10, "HTTP/3.0")]));
    out.push_str("\t-\t-\t");
    let _ = write!(out, "{}\t", rng.range(1024, 65535));
    let ttfb = (taken * 0.8 * 1000.0).round() / 1000.0;
    let _ = write!(out, "{ttfb:.3}\t{detailed}\t");
    if status == 0 {
        out.push('-');
    } else {
        out.push_str(content_type);
    }
    if status == 206 {
        let start = rng.below(1_000_000);
        let _ = writeln!(out, "\t{body}\t{start}\t{}", start + body.max(1) - 1);
    } else if status == 0 || status == 304 {
        out.push_str("\t-\t-\t-\n");
    } else {
        let _ = writeln!(out, "\t{body}\t-\t-");
    }
}
