//! S3 server access logs: space-separated, bracketed time, quoted request line,
//! referrer and user agent, in the field order AWS documents (bucket owner ... access
//! point ARN, aclRequired).

use std::fmt::Write;

use super::owned;
use crate::clock::Clock;
use crate::pools::{self, USER_AGENTS};
use crate::rng::Rng;

const OWNER: &str = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be";
const BUCKET: &str = "amzn-s3-demo-bucket1";

const REQUESTERS: &[(u32, &str)] = &[
    (
        30,
        "arn:aws:sts::123456789012:assumed-role/app-server-role/i-0abcd1234efgh5678",
    ),
    (20, "arn:aws:iam::123456789012:user/alice"),
    (
        10,
        "arn:aws:sts::123456789012:assumed-role/AWSServiceRoleForCloudFrontLogger/cloudfront",
    ),
    (10, "-"),
    (
        8,
        "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be",
    ),
    (
        5,
        "arn:aws:sts::111122223333:assumed-role/data-pipeline/etl-job-42",
    ),
    (3, "svc:logging.s3.amazonaws.com"),
];

/// (weight, operation, HTTP method or "" for internal operations)
const OPERATIONS: &[(u32, (&str, &str))] = &[
    (40, ("REST.GET.OBJECT", "GET")),
    (15, ("REST.PUT.OBJECT", "PUT")),
    (15, ("REST.HEAD.OBJECT", "HEAD")),
    (8, ("REST.GET.BUCKET", "GET")),
    (4, ("REST.DELETE.OBJECT", "DELETE")),
    (3, ("REST.COPY.OBJECT", "PUT")),
    (2, ("REST.POST.UPLOADS", "POST")),
    (3, ("REST.PUT.PART", "PUT")),
    (1, ("REST.POST.UPLOAD", "POST")),
    (2, ("REST.GET.VERSIONING", "GET")),
    (2, ("REST.GET.ACL", "GET")),
    (2, ("REST.GET.BUCKETPOLICY", "GET")),
    (1, ("REST.GET.LOCATION", "GET")),
    (1, ("BATCH.DELETE.OBJECT", "")),
    (1, ("S3.TRANSITION_SIA.OBJECT", "")),
    (1, ("S3.EXPIRE.OBJECT", "")),
    (1, ("WEBSITE.GET.OBJECT", "GET")),
];

const KEYS: &[&str] = &[
    "logs/2024/03/15/app.log.gz",
    "uploads/invoices/INV-000123.pdf",
    "images/products/12345/large.jpg",
    "exports/customers%2B2024-03-15.csv",
    "backups/db/snapshot-20240315T000000Z.sql.gz",
    "static/index.html",
    "data/year%3D2024/month%3D03/part-00000.snappy.parquet",
    "reports/Quarterly%20Report%20Q1.xlsx",
];

const ERRORS: &[(u32, (u16, &str))] = &[
    (40, (404, "NoSuchKey")),
    (30, (403, "AccessDenied")),
    (10, (403, "SignatureDoesNotMatch")),
    (8, (503, "SlowDown")),
    (5, (400, "InvalidArgument")),
    (4, (412, "PreconditionFailed")),
    (3, (500, "InternalError")),
];

/// Appends one S3 server access log line.
pub fn record(rng: &mut Rng, clock: &mut Clock, out: &mut String) {
    clock.tick(rng, 20_000);
    let (operation, method) = rng.weighted(OPERATIONS);
    let internal = method.is_empty();
    let key = if operation.contains(".OBJECT")
        || operation.contains("PART")
        || operation.contains("UPLOAD")
    {
        Some(rng.pick(KEYS))
    } else {
        None
    };
    let presigned = method == "GET" && key.is_some() && rng.chance(15);
    let error = if !internal && rng.chance(8) {
        Some(rng.weighted(ERRORS))
    } else {
        None
    };
    let status = match (error, method) {
        (Some((s, _)), _) => s,
        (None, "GET") if rng.chance(4) => 304,
        (None, "GET") if rng.chance(3) => 206,
        (None, "DELETE") => 204,
        _ => 200,
    };
    let object_size = rng.skewed(100, 500_000_000);

    let _ = write!(out, "{OWNER} {BUCKET} ");
    clock.clf(out);
    out.push(' ');
    if internal {
        out.push('-');
    } else if rng.chance(70) {
        pools::client_ip(rng, out, 10);
    } else {
        pools::private_ipv4(rng, out);
    }
    out.push(' ');
    out.push_str(if internal {
        "AmazonS3"
    } else {
        rng.weighted(REQUESTERS)
    });
    out.push(' ');
    rng.hex_upper(out, 16);
    let _ = write!(out, " {operation} {} ", key.unwrap_or("-"));
    if internal {
        out.push('-');
    } else {
        let _ = write!(out, "\"{method} /{BUCKET}");
        if let Some(k) = key {
            let _ = write!(out, "/{k}");
        }
        if presigned {
            out.push('?');
            let date = owned(|s| clock.date(s));
            pools::presigned_query(rng, out, &date);
        } else if operation == "REST.GET.VERSIONING" {
            out.push_str("?versioning");
        } else if operation == "REST.GET.ACL" {
            out.push_str("?acl");
        } else if operation == "REST.GET.BUCKET" {
            out.push_str("?list-type=2&prefix=logs%2F2024%2F&encoding-type=url");
        }
        out.push_str(" HTTP/1.1\"");
    }
    if internal {
        out.push_str(" - - - -");
    } else {
        let _ = write!(out, " {status} {}", error.map_or("-", |(_, code)| code));
        let sent = match (method, status) {
            ("GET", 200 | 206) => rng.range(1, object_size).to_string(),
            (_, s) if s >= 400 => rng.range(200, 400).to_string(),
            _ => "-".to_owned(),
        };
        let _ = write!(out, " {sent}");
        if key.is_some() {
            let _ = write!(out, " {object_size}");
        } else {
            out.push_str(" -");
        }
    }
    let total = rng.skewed(1, 30_000);
    if internal {
        out.push_str(" - - \"-\" \"-\" ");
    } else {
        let _ = write!(out, " {total} ");
        if rng.chance(90) {
            let _ = write!(out, "{}", total.saturating_sub(rng.below(total + 1)));
        } else {
            out.push('-');
        }
        if rng.chance(10) {
            out.push_str(" \"https://console.aws.amazon.com/\"");
        } else {
            out.push_str(" \"-\"");
        }
        let _ = write!(out, " \"{}\" ", rng.weighted(USER_AGENTS));
    }
    if key.is_some() && rng.chance(20) {
        rng.base64ish(out, 32);
    } else {
        out.push('-');
    }
    out.push(' ');
    rng.base64ish(out, 76);
    out.push_str("= ");
    if internal {
        out.push_str("- - - - - - -\n");
        return;
    }
    let (sig, auth) = if presigned {
        ("SigV4", "QueryString")
    } else if rng.chance(5) {
        ("-", "-")
    } else {
        ("SigV4", "AuthHeader")
    };
    let (cipher, tls) = if rng.chance(95) {
        rng.weighted(&[
            (70u32, ("TLS_AES_128_GCM_SHA256", "TLSv1.3")),
            (30, ("ECDHE-RSA-AES128-GCM-SHA256", "TLSv1.2")),
        ])
    } else {
        ("-", "-")
    };
    let host = rng.weighted(&[
        (60u32, "amzn-s3-demo-bucket1.s3.us-east-1.amazonaws.com"),
        (30, "s3.us-east-1.amazonaws.com"),
        (10, "amzn-s3-demo-bucket1.s3.amazonaws.com"),
    ]);
    let access_point = if rng.chance(5) {
        "arn:aws:s3:us-east-1:123456789012:accesspoint/example-AP"
    } else {
        "-"
    };
    let acl = if rng.chance(10) { "Yes" } else { "-" };
    let _ = writeln!(
        out,
        "{sig} {cipher} {auth} {host} {tls} {access_point} {acl}"
    );
}
