//! S3 server access logs: one request per line, space-separated, with the time in
//! `[brackets]` and the request line, referrer and user agent in `"quotes"`.
//!
//! Fields are positional. AWS has appended fields over the years (version id, host id,
//! signature version, cipher suite, authentication type, host header, TLS version,
//! access point ARN, ACL required, source region) and says more may come, so a record
//! needs only the original 17 fields; later ones are mapped when present and anything
//! past the last known field is kept under `aws.s3access.extra_fields`.
//!
//! The small tokenizer and the request-line / URL helpers in [`access_log`] are shared
//! with the `elb` module, whose logs use the same quoting conventions.

use std::sync::OnceLock;

use regex::Regex;

use time::OffsetDateTime;
use time::macros::format_description;

use crate::detect::regex_matches;
use crate::driver::{LineOutcome, 
    LineContext, LineParser, RecordError,
};
use crate::event::{Event, Value};
use crate::readers::access_log;
use crate::registry::{ContentClue, FirstLine, FormatSpec, KeyClue, Reader};
use crate::util::{self, field};

/// Positions of the documented fields, in log order.
mod col {
    pub const BUCKET_OWNER: usize = 0;
    pub const BUCKET: usize = 1;
    pub const TIME: usize = 2;
    pub const REMOTE_IP: usize = 3;
    pub const REQUESTER: usize = 4;
    pub const REQUEST_ID: usize = 5;
    pub const OPERATION: usize = 6;
    pub const KEY: usize = 7;
    pub const REQUEST_URI: usize = 8;
    pub const HTTP_STATUS: usize = 9;
    pub const ERROR_CODE: usize = 10;
    pub const BYTES_SENT: usize = 11;
    pub const OBJECT_SIZE: usize = 12;
    pub const TOTAL_TIME: usize = 13;
    pub const TURN_AROUND_TIME: usize = 14;
    pub const REFERER: usize = 15;
    pub const USER_AGENT: usize = 16;
    pub const VERSION_ID: usize = 17;
    pub const HOST_ID: usize = 18;
    pub const SIGNATURE_VERSION: usize = 19;
    pub const CIPHER_SUITE: usize = 20;
    pub const AUTHENTICATION_TYPE: usize = 21;
    pub const HOST_HEADER: usize = 22;
    pub const TLS_VERSION: usize = 23;
    pub const ACCESS_POINT_ARN: usize = 24;
    pub const ACL_REQUIRED: usize = 25;
    pub const SOURCE_REGION: usize = 26;
    /// Fields from here on are newer than this parser.
    pub const KNOWN: usize = 27;
    /// Every record since the format's first version has at least the fields up to
    /// the user agent; fewer means the line is not (or no longer) an access log.
    pub const REQUIRED: usize = USER_AGENT + 1;
}

/// Where the log object says the logged bucket lives: S3's date-based
/// ("partitioned") log key layout
/// `[prefix]SourceAccountId/SourceRegion/SourceBucket/YYYY/MM/DD/YYYY-MM-DD-hh-mm-ss-ID`
/// names the account and Region of the bucket the records are about.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyPartition {
    account: String,
    region: String,
    bucket: String,
}

impl KeyPartition {
    fn from_key(key: &str) -> Option<Self> {
        let parts: Vec<&str> = key.split('/').collect();
        if parts.len() < 7 {
            return None;
        }
        let tail = &parts[parts.len() - 7..];
        let (account, region, bucket) = (tail[0], tail[1], tail[2]);
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let dated = digits(tail[3], 4) && digits(tail[4], 2) && digits(tail[5], 2);
        let file_matches_date =
            tail[6].starts_with(&format!("{}-{}-{}-", tail[3], tail[4], tail[5]));
        (digits(account, 12)
            && access_log::looks_like_region(region)
            && !bucket.is_empty()
            && dated
            && file_matches_date)
            .then(|| KeyPartition {
                account: account.to_owned(),
                region: region.to_owned(),
                bucket: bucket.to_owned(),
            })
    }
}

/// Parses S3 server access log lines.
#[derive(Debug, Default)]
pub struct S3AccessParser {
    partition: Option<KeyPartition>,
}

impl S3AccessParser {
    /// A parser for the object at `key`; the key's layout may tell the bucket's
    /// account and Region.
    pub fn for_key(key: &str) -> Self {
        S3AccessParser {
            partition: KeyPartition::from_key(key),
        }
    }
}

/// `[06/Feb/2019:00:00:38 +0000]` (brackets already removed) as UTC RFC 3339.
fn access_time(v: &str) -> Option<String> {
    let fmt = format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    let t = OffsetDateTime::parse(v, &fmt).ok()?;
    util::rfc3339(t.to_offset(time::UtcOffset::UTC))
}

/// Who made the request, from the requester field.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requester<'a> {
    /// `-`: an unauthenticated request.
    Anonymous,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`. For SAML or web-identity
    /// federation the session name is usually the person (`bob@example.com`).
    AssumedRole {
        account: &'a str,
        role: &'a str,
        session: &'a str,
    },
    /// `arn:aws:iam::ACCOUNT:user/[path/]NAME`.
    IamUser { account: &'a str, name: &'a str },
    /// `arn:aws:sts::ACCOUNT:federated-user/NAME` (GetFederationToken).
    FederatedUser { account: &'a str, name: &'a str },
    /// `arn:aws:iam::ACCOUNT:root`.
    Root { account: &'a str },
    /// Any other ARN.
    OtherArn { account: Option<&'a str> },
    /// An AWS service acting on its own behalf (`svc:logging.s3.amazonaws.com`,
    /// `AmazonS3` for lifecycle actions).
    Service,
    /// A canonical user id (64 hex digits) or another opaque id.
    Id,
}

impl<'a> Requester<'a> {
    fn parse(v: &'a str) -> Self {
        if field(v).is_none() {
            return Requester::Anonymous;
        }
        if let Some(rest) = v.strip_prefix("arn:") {
            // partition:service:region:account:resource
            let mut parts = rest.splitn(5, ':');
            let (_partition, service, _region, account, resource) = (
                parts.next(),
                parts.next().unwrap_or(""),
                parts.next(),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            let account_opt = Some(account).filter(|a| !a.is_empty());
            match (service, resource.split_once('/')) {
                ("sts", Some(("assumed-role", rest))) => {
                    if let Some((role, session)) = rest.split_once('/') {
                        return Requester::AssumedRole {
                            account,
                            role,
                            session,
                        };
                    }
                }
                ("sts", Some(("federated-user", name))) => {
                    return Requester::FederatedUser { account, name };
                }
                ("iam", Some(("user", path))) => {
                    let name = path.rsplit('/').next().unwrap_or(path);
                    return Requester::IamUser { account, name };
                }
                ("iam", None) if resource == "root" => return Requester::Root { account },
                _ => {}
            }
            return Requester::OtherArn {
                account: account_opt,
            };
        }
        if v.starts_with("svc:") || v == "AmazonS3" {
            return Requester::Service;
        }
        Requester::Id
    }

    fn kind(&self) -> &'static str {
        match self {
            Requester::Anonymous => "anonymous",
            Requester::AssumedRole { .. } => "assumed-role",
            Requester::IamUser { .. } => "iam-user",
            Requester::FederatedUser { .. } => "federated-user",
            Requester::Root { .. } => "root",
            Requester::OtherArn { .. } => "arn",
            Requester::Service => "service",
            Requester::Id => "canonical-user",
        }
    }

    fn account(&self) -> Option<&'a str> {
        match *self {
            Requester::AssumedRole { account, .. }
            | Requester::IamUser { account, .. }
            | Requester::FederatedUser { account, .. }
            | Requester::Root { account } => Some(account).filter(|a| !a.is_empty()),
            Requester::OtherArn { account } => account,
            _ => None,
        }
    }

    fn user_name(&self) -> Option<&'a str> {
        match *self {
            Requester::AssumedRole { session, .. } => Some(session),
            Requester::IamUser { name, .. } | Requester::FederatedUser { name, .. } => Some(name),
            Requester::Root { .. } => Some("root"),
            _ => None,
        }
        .filter(|n| !n.is_empty())
    }
}

fn map_requester(ev: &mut Event, raw: &str) {
    let requester = Requester::parse(raw);
    ev.set("aws.s3access.requester_type", requester.kind());
    if requester == Requester::Anonymous {
        return;
    }
    ev.set("aws.s3access.requester", raw.to_owned());
    ev.set("user.id", raw.to_owned());
    if let Some(name) = requester.user_name() {
        ev.set("user.name", name.to_owned());
        ev.push_unique("related.user", name.to_owned());
    }
    ev.push_unique("related.user", raw.to_owned());
    if let Requester::AssumedRole { role, .. } = requester {
        ev.set("user.roles", Value::Arr(vec![Value::Str(role.to_owned())]));
    }
    // The requester's account, which need not be the bucket's: kept apart from
    // `cloud.account.id` on purpose.
    ev.set_str("aws.s3access.requester_account_id", requester.account());
}

/// The Region in an S3 endpoint name (`bucket.s3.eu-west-1.amazonaws.com`,
/// `s3-us-west-2.amazonaws.com`, `s3.dualstack.ap-south-1.amazonaws.com`,
/// `ap-111122223333.s3-accesspoint.us-east-1.amazonaws.com`). The global endpoint
/// `s3.amazonaws.com` names none.
fn endpoint_region(host: &str) -> Option<String> {
    let host = host.to_ascii_lowercase();
    let host = host.split(':').next().unwrap_or("");
    let stem = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let labels: Vec<&str> = stem.split('.').collect();
    let first_s3 = labels
        .iter()
        .position(|l| *l == "s3" || l.starts_with("s3-"))?;
    labels[first_s3..].iter().find_map(|label| {
        let candidate = label
            .strip_prefix("s3-website-")
            .or_else(|| label.strip_prefix("s3-"))
            .unwrap_or(label);
        access_log::looks_like_region(candidate).then(|| candidate.to_owned())
    })
}

impl LineParser for S3AccessParser {
    fn parse_line(&mut self, line: &str, cx: &LineContext<'_>, out: &mut Vec<Event>) -> LineOutcome {
        let f = access_log::split_fields(line);
        if f.len() < col::REQUIRED {
            return Err(RecordError::FieldCount {
                expected: col::REQUIRED,
                found: f.len(),
            });
        }
        let get = |i: usize| f.get(i).and_then(|v| field(v));
        let mut ev = Event::new();

        let ts = access_time(&f[col::TIME])
            .ok_or_else(|| RecordError::invalid("time", &f[col::TIME]))?;
        ev.set("@timestamp", ts);
        util::set_category(&mut ev, &["web"]);
        util::set_type(&mut ev, &["access"]);
        util::set_aws_service(&mut ev, "s3");

        let bucket = get(col::BUCKET);
        ev.set_str("aws.s3access.bucket_owner", get(col::BUCKET_OWNER));
        ev.set_str("aws.s3access.bucket", bucket);
        ev.set_str("aws.s3access.key", get(col::KEY));
        ev.set_str("event.action", get(col::OPERATION));
        ev.set_str("http.request.id", get(col::REQUEST_ID));

        if let Some(ip) = get(col::REMOTE_IP).and_then(util::canonical_ip) {
            ev.set_opt("network.type", util::ip_version(&ip));
            ev.set("source.address", ip.clone());
            ev.set("source.ip", ip.clone());
            ev.push_unique("related.ip", ip);
        }
        map_requester(&mut ev, &f[col::REQUESTER]);

        if let Some(request) = get(col::REQUEST_URI) {
            let rl = access_log::RequestLine::parse(request);
            ev.set_str("http.request.method", rl.method);
            ev.set_opt("http.version", rl.http_version());
            if let Some(target) = rl.target {
                access_log::set_url(&mut ev, cx.enricher, target, false);
            }
        }
        let status = get(col::HTTP_STATUS).and_then(util::uint);
        ev.set_opt("http.response.status_code", status);
        let error_code = get(col::ERROR_CODE);
        ev.set_str("error.code", error_code);
        let failed = error_code.is_some() || status.is_some_and(|s| s >= 400);
        // Lifecycle and other service-internal operations log no status; they happened.
        util::set_outcome(&mut ev, !failed);

        // "Bytes sent" excludes HTTP protocol overhead: it is the body.
        ev.set_opt(
            "http.response.body.bytes",
            get(col::BYTES_SENT).and_then(util::uint),
        );
        ev.set_opt(
            "aws.s3access.object_size",
            get(col::OBJECT_SIZE).and_then(util::uint),
        );
        if let Some(ms) = get(col::TOTAL_TIME).and_then(util::uint) {
            ev.set("event.duration", ms.saturating_mul(1_000_000));
            ev.set("aws.s3access.total_time", ms);
        }
        ev.set_opt(
            "aws.s3access.turn_around_time",
            get(col::TURN_AROUND_TIME).and_then(util::uint),
        );
        ev.set_str("http.request.referrer", get(col::REFERER));
        cx.enricher.user_agent(&mut ev, &f[col::USER_AGENT]);

        ev.set_str("aws.s3access.version_id", get(col::VERSION_ID));
        ev.set_str("aws.s3access.host_id", get(col::HOST_ID));
        ev.set_str(
            "aws.s3access.signature_version",
            get(col::SIGNATURE_VERSION),
        );
        let cipher = get(col::CIPHER_SUITE);
        ev.set_str("tls.cipher", cipher);
        ev.set_str(
            "aws.s3access.authentication_type",
            get(col::AUTHENTICATION_TYPE),
        );
        let tls = get(col::TLS_VERSION).and_then(access_log::tls_version);
        if let Some((protocol, version)) = &tls {
            ev.set("tls.version_protocol", *protocol);
            ev.set("tls.version", version.clone());
        }
        if let Some(host) = get(col::HOST_HEADER) {
            ev.set("aws.s3access.host_header", host.to_owned());
            access_log::set_url_host(&mut ev, cx.enricher, host);
            // Records with the TLS columns say whether the request used TLS.
            if f.len() > col::TLS_VERSION {
                let scheme = if tls.is_some() || cipher.is_some() {
                    "https"
                } else {
                    "http"
                };
                ev.set("url.scheme", scheme);
            }
        }
        ev.set_str("aws.s3access.access_point_arn", get(col::ACCESS_POINT_ARN));
        if let Some(v) = get(col::ACL_REQUIRED) {
            ev.set("aws.s3access.acl_required", v.eq_ignore_ascii_case("yes"));
        }
        ev.set_str("aws.s3access.source_region", get(col::SOURCE_REGION));

        let from_key = self
            .partition
            .as_ref()
            .filter(|p| bucket == Some(p.bucket.as_str()));
        if let Some(p) = from_key {
            ev.set("cloud.account.id", p.account.clone());
            ev.set("cloud.region", p.region.clone());
        } else if let Some(region) = get(col::HOST_HEADER).and_then(endpoint_region) {
            ev.set("cloud.region", region);
        }

        let extra: Vec<Value> = f
            .iter()
            .skip(col::KNOWN)
            .filter_map(|v| field(v))
            .map(|v| Value::Str(v.to_owned()))
            .collect();
        if !extra.is_empty() {
            ev.set("aws.s3access.extra_fields", Value::Arr(extra));
        }
        out.push(ev);
        Ok(true)
    }
}

/// S3 server access logs.
pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "s3-access",
    dataset: "aws.s3access",
    example_key: "s3-access/2024-03-15-00-00-01-3E57427F3E0A1B2C",
    key_clues: &[KeyClue {
        rank: 90,
        layout: "YYYY-MM-DD-HH-MM-SS-<16 hex>",
        matches: |k| {
            static NAME: OnceLock<Option<Regex>> = OnceLock::new();
            regex_matches(
                &NAME,
                r"^(\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9A-F]{16}|\d{12}_\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9A-F]{16})$",
                k.file_name,
            )
        },
    }],
    content_clues: &[ContentClue {
        rank: 40,
        what: "canonical owner id and [time]",
        first_line: FirstLine::Text,
        matches: |line| {
            static RECORD: OnceLock<Option<Regex>> = OnceLock::new();
            regex_matches(
                &RECORD,
                r"^[0-9a-f]{64}|- \S+ \[\d{2}/[A-Za-z]{3}/\d{4}:",
                line,
            )
        },
    }],
    skip: None,
    options: &[],
    reader: Reader::Lines(|object, _| Box::new(S3AccessParser::for_key(&object.key))),
};

#[cfg(test)]
mod tests {
    use serde_json::json;
    use super::*;
    use crate::{Format, ParseOptions, ParseStats, Redactor, assert_error_contains, assert_fields};

    const SAMPLE: &str = include_str!("../../../../tests/samples/s3-access.log");

    /// The record from the AWS Security Blog post "Tracking Federated User Access to
    /// Amazon S3" (2014): SAML-federated `bob@example.com` downloading through a
    /// presigned console URL. The blog wraps the line; these are its pieces, joined
    /// with a space where the blog breaks between fields and without one where it
    /// breaks inside a field.
    const BLOG_RECORD: &str = concat!(
        "2dee2a767bc4b3c186ac1423c785b932f07357c659d315eeb3d8a8bcd037ca76 mybucket",
        " [26/Nov/2013:22:01:39 +0000] 10.1.2.3 arn:aws:sts::123456789012:assumed-",
        "role/ADFS-Dev/bob@example.com 0F81ECBB712F2F79 REST.GET.OBJECT",
        " files/secretformula.pdf \"GET",
        " /mybucket/files/secretformula.pdf?AWSAccessKeyId=ASIAEXAMPLECDYXRAUMQ&Expires=1",
        "385503597&Signature=hcxmv/mLM6UiE2aFPa1KQJM6Q2Q%3D&x-amz-security-",
        "token=AQoDYXdzEGca0AMOxX9sQBY13KpRt6%2Bcb30YEEF1BZ8p4FHigLX9GYWoBnNaJ7XVXaPSYyv",
        "mhpxntLPjgM964DnYve5mp8ScTM0tSGIRrE/PxMAXvp6MiNgAbiRZktyolt7kU7/7Vu8e7WcnGjMJkE",
        "FKY7q8vm4mo198MVF/04Q1/vNlm6Rr5jAbjvgXcKrBv%2BnTsEBSytyVDQl31P2Yx74ZAgcEp7CMs35",
        "1u5Juc%2BeMznVvvzapVP9%2BjX6fuM8NYzuylax/CPZq3zH6JJVnZrD08SnwYng4sir6tUAYyJosyi",
        "Q2QkmWniojRukRyOl8efgJfD0iYRLfqgMndj7i/TwOH8lf3PJ2P2WF7RmVa3DZyZt30N4Oj0dVT/7PL",
        "qNqxM2hhl0fOfnic8219aduQBRuiD3mkkZMQtA1NbQ5RkzvRQhA7v8naNEhSrfNBdDWwXM6V1PG6kUo",
        "lpTaxxLitipQaG4GYpPHmE5Wn4h4bbM4ykOZe/7yVIp9ebG4X8FAK8jOaJFcwBmegiBwYHT0X9BKKN/",
        "vHDbNHV5OMXKxBIxCkC9Ui84v4uQxLem2uRaVACiEUhM2cjdc3LHcRmds2rQ6SppPsyFLT/NsNo6RwT",
        "MDx/EKQUSVwOk15iCTtNSUBQ%3D%3D HTTP/1.1\" 200 - 2523 2523 275 274 \"https://s3-",
        "console-us-standard.console.aws.amazon.com/GetResource/Console.html?region=us-",
        "east-1&pageLoadStartTime=1385503264134&locale=en\" \"Mozilla/5.0 (Macintosh;",
        " Intel Mac OS X 10_8_5) AppleWebKit/537.36 (KHTML, like Gecko)",
        " Chrome/31.0.1650.57 Safari/537.36\" -",
    );

    fn run_with(text: &str, key: &str, opts: &ParseOptions) -> (Vec<Event>, ParseStats) {
        crate::parse_object_for_test(Format::S3Access, &mut text.as_bytes(), "access-logs", key, opts)
    }

    fn run(text: &str) -> (Vec<Event>, ParseStats) {
        run_with(
            text,
            "logs/2024-03-01-12-00-00-ABCDEF0123456789",
            &ParseOptions::default(),
        )
    }

    #[test]
    fn federated_presigned_download_from_the_aws_blog() {
        let (events, stats) = run(&format!("{BLOG_RECORD}\n"));
        assert_eq!((stats.events, stats.malformed), (1, 0));
        let e = events[0].to_json();
        assert_fields(
            &e,
            json!({
                "@timestamp": "2013-11-26T22:01:39Z",
                "user": {
                    "name": "bob@example.com",
                    "roles": ["ADFS-Dev"],
                    "id": "arn:aws:sts::123456789012:assumed-role/ADFS-Dev/bob@example.com",
                },
                "aws": {
                    "s3access": {
                        "requester_account_id": "123456789012",
                        "requester_type": "assumed-role",
                    },
                },
            }),
        );
        // the requester's account is not the bucket's
        assert!(e["cloud"].get("account").is_none());
        assert_fields(
            &e,
            json!({
                "related": {"user": {"0": "bob@example.com"}, "ip": ["10.1.2.3"]},
                "source": {"ip": "10.1.2.3"},
                "event": {
                    "action": "REST.GET.OBJECT",
                    "outcome": "success",
                    "duration": 275_000_000u64,
                },
                "http": {
                    "request": {"id": "0F81ECBB712F2F79", "method": "GET"},
                    "version": "1.1",
                    "response": {"status_code": 200, "body": {"bytes": 2523}},
                },
                "aws": {
                    "s3access": {
                        "object_size": 2523,
                        "turn_around_time": 274,
                        "bucket": "mybucket",
                        "key": "files/secretformula.pdf",
                    },
                },
                "url": {"path": "/mybucket/files/secretformula.pdf", "extension": "pdf"},
            }),
        );
        assert!(
            e["url"]["query"]
                .as_str()
                .unwrap()
                .starts_with("AWSAccessKeyId=ASIAEXAMPLECDYXRAUMQ&Expires=1385503597&Signature=")
        );
        assert!(
            e["http"]["request"]["referrer"]
                .as_str()
                .unwrap()
                .starts_with("https://s3-console-us-standard.console.aws.amazon.com/")
        );
        assert_eq!(e["user_agent"]["name"], "Chrome");
        assert_eq!(e["user_agent"]["version"], "31.0.1650");
        assert_eq!(e["cloud"]["service"]["name"], "s3");
        assert_eq!(e["event"]["category"][0], "web");
        assert_eq!(e["event"]["type"][0], "access");
        // 2013 records end at the version id: no TLS fields, no invented scheme
        assert!(e.get("tls").is_none());
        assert!(e["url"].get("scheme").is_none());
        assert!(e["aws"]["s3access"].get("version_id").is_none());
    }

    #[test]
    fn presigned_signature_and_session_token_never_leave_unredacted() {
        let opts = ParseOptions {
            keep_original: true,
            ..Default::default()
        };
        let (events, _) = run_with(&format!("{BLOG_RECORD}\n"), "k", &opts);
        assert!(
            events[0]
                .get_str("event.original")
                .unwrap()
                .contains("Signature=hcxmv")
        );
        let json = events[0].to_json_string(Some(&Redactor::new()));
        for secret in [
            "hcxmv",
            "mLM6UiE2aFPa1KQJM6Q2Q",
            "AQoDYXdzEGca0AMOxX9sQBY13KpRt6",
            "MDx/EKQUSVwOk15iCTtNSUBQ",
        ] {
            assert!(!json.contains(secret), "{secret} leaked: {json}");
        }
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        for text in [
            &v["event"]["original"],
            &v["url"]["original"],
            &v["url"]["query"],
        ] {
            let text = text.as_str().unwrap();
            assert!(text.contains("Signature=REDACTED"), "{text}");
            assert!(text.contains("x-amz-security-token=REDACTED"), "{text}");
        }
        // what is not a secret survives
        assert!(json.contains("AWSAccessKeyId=ASIAEXAMPLECDYXRAUMQ&Expires=1385503597"));
    }

    #[test]
    fn sample_file_parses_completely() {
        let (events, stats) = run(SAMPLE);
        assert_eq!(
            stats.malformed,
            0,
            "{:?}",
            events
                .iter()
                .map(|e| e.get_str("error.message"))
                .collect::<Vec<_>>()
        );
        assert!(stats.events >= 5);
        for e in &events {
            assert!(e.contains("@timestamp"));
            assert!(e.contains("event.action"));
            assert!(e.contains("aws.s3access.bucket"));
        }
    }

    const MODERN: &str = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be amzn-s3-demo-bucket1 [06/Feb/2019:00:00:38 +0100] 192.0.2.3 arn:aws:iam::111122223333:user/dev/alice 891CE47D2EXAMPLE REST.GET.BUCKETPOLICY - \"GET /amzn-s3-demo-bucket1?policy HTTP/1.1\" 404 NoSuchBucketPolicy 297 - 38 - \"-\" \"aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64.amzn.2023 prompt/off command/s3api.get-bucket-policy\" - 9vKBE6vMhrNiWHZmb2L0mXOcqPGzQOI5XLnCtZNPxev+Hf+7tpT6sxDwDty4LHBUOZJG96N1234= SigV4 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader amzn-s3-demo-bucket1.s3.us-west-1.amazonaws.com TLSV1.2 arn:aws:s3:us-west-1:123456789012:accesspoint/example-AP Yes us-east-1";

    #[test]
    fn all_trailing_fields_of_a_current_record() {
        let (events, _) = run(&format!("{MODERN}\n"));
        let e = events[0].to_json();
        // the bracketed time carries an offset: stored in UTC
        assert_eq!(e["@timestamp"], "2019-02-05T23:00:38Z");
        assert_eq!(e["user"]["name"], "alice");
        assert!(e["user"].get("roles").is_none());
        assert_fields(
            &e,
            json!({
                "aws": {"s3access": {"requester_type": "iam-user"}},
                "event": {"outcome": "failure"},
                "error": {"code": "NoSuchBucketPolicy"},
                "http": {"response": {"status_code": 404}},
                "url": {
                    "path": "/amzn-s3-demo-bucket1",
                    "query": "policy",
                    "domain": "amzn-s3-demo-bucket1.s3.us-west-1.amazonaws.com",
                    "scheme": "https",
                },
                "cloud": {"region": "us-west-1"},
                "tls": {
                    "version": "1.2",
                    "version_protocol": "tls",
                    "cipher": "ECDHE-RSA-AES128-GCM-SHA256",
                },
            }),
        );
        let s3 = &e["aws"]["s3access"];
        assert_fields(
            s3,
            json!({
                "signature_version": "SigV4",
                "authentication_type": "AuthHeader",
                "host_id": "9vKBE6vMhrNiWHZmb2L0mXOcqPGzQOI5XLnCtZNPxev+Hf+7tpT6sxDwDty4LHBUOZJG96N1234=",
                "access_point_arn": "arn:aws:s3:us-west-1:123456789012:accesspoint/example-AP",
                "acl_required": true,
                "source_region": "us-east-1",
                "host_header": "amzn-s3-demo-bucket1.s3.us-west-1.amazonaws.com",
            }),
        );
        assert!(s3.get("extra_fields").is_none());
        assert_eq!(e["http"]["response"]["body"]["bytes"], 297);
        assert_eq!(e["user_agent"]["name"], "aws-cli");
    }

    #[test]
    fn later_fields_are_kept_and_missing_trailing_fields_are_fine() {
        let (events, stats) = run(&format!("{MODERN} future-value -\n"));
        assert_eq!(stats.malformed, 0);
        assert_eq!(
            events[0].to_json()["aws"]["s3access"]["extra_fields"],
            serde_json::json!(["future-value"])
        );

        // cut after the host header: fewer trailing fields, still parsed
        let cut: Vec<&str> = MODERN.split(' ').collect();
        let short = cut[..cut.len() - 5].join(" ");
        let (events, stats) = run(&format!("{short}\n"));
        assert_eq!(stats.malformed, 0);
        assert_eq!(
            events[0].get_str("aws.s3access.signature_version"),
            Some("SigV4")
        );
        assert!(!events[0].contains("tls.version"));
        // no TLS column at all: the scheme is unknown
        assert!(!events[0].contains("url.scheme"));
    }

    #[test]
    fn requesters_of_every_kind() {
        let line = |requester: &str| {
            format!(
                "owner b [01/Mar/2024:10:00:00 +0000] 192.0.2.9 {requester} R1 REST.HEAD.OBJECT k \"HEAD /b/k HTTP/1.1\" 200 - - 5 3 2 \"-\" \"-\" -\n"
            )
        };
        let (events, _) = run(&line("-"));
        assert!(!events[0].contains("user"));
        assert!(!events[0].contains("related.user"));
        assert_eq!(
            events[0].get_str("aws.s3access.requester_type"),
            Some("anonymous")
        );

        let canonical = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be";
        let (events, _) = run(&line(canonical));
        assert_eq!(events[0].get_str("user.id"), Some(canonical));
        assert!(!events[0].contains("user.name"));
        assert_eq!(
            events[0].get_str("aws.s3access.requester_type"),
            Some("canonical-user")
        );

        let (events, _) = run(&line("svc:logging.s3.amazonaws.com"));
        assert_eq!(
            events[0].get_str("aws.s3access.requester_type"),
            Some("service")
        );
        assert!(!events[0].contains("user.name"));

        let (events, _) = run(&line("arn:aws:iam::111122223333:root"));
        assert_eq!(events[0].get_str("user.name"), Some("root"));
        assert_eq!(
            events[0].get_str("aws.s3access.requester_account_id"),
            Some("111122223333")
        );

        let (events, _) = run(&line("arn:aws:sts::111122223333:federated-user/carol"));
        assert_eq!(events[0].get_str("user.name"), Some("carol"));

        let (events, _) = run(&line(
            "arn:aws-us-gov:sts::111122223333:assumed-role/Deploy/i-0abc",
        ));
        assert_eq!(events[0].get_str("user.name"), Some("i-0abc"));
        assert_eq!(events[0].to_json()["user"]["roles"][0], "Deploy");
        // no user agent and no referrer: nothing invented
        assert!(!events[0].contains("user_agent"));
        assert!(!events[0].contains("http.request.referrer"));
        assert!(!events[0].contains("http.response.body.bytes"));
    }

    #[test]
    fn lifecycle_records_without_status_are_successes() {
        let text = "b854390a51155554b82ce2759564a1135bce83133d004f4d2001f157e13985d7 lifecycle-demo [25/Mar/2025:19:28:02 +0000] - AmazonS3 366DB3C4B3EXAMPLE S3.EXPIRE.OBJECT tmp/old.bin \"-\" - - - 317 - - \"-\" \"-\" qsEq9bDa2VyxyZ4cz0c7oBnF67VYTTij DMlPb9al4CvVBck150CgpEIIYgtSI3HC - - - - - - -\n";
        let (events, stats) = run(text);
        assert_eq!(stats.malformed, 0);
        let e = events[0].to_json();
        assert_eq!(e["event"]["outcome"], "success");
        assert_eq!(e["event"]["action"], "S3.EXPIRE.OBJECT");
        assert_eq!(
            e["aws"]["s3access"]["version_id"],
            "qsEq9bDa2VyxyZ4cz0c7oBnF67VYTTij"
        );
        assert!(e.get("source").is_none());
        assert!(e.get("url").is_none());
        assert!(e["http"].get("response").is_none());
    }

    #[test]
    fn partitioned_log_keys_name_the_buckets_account_and_region() {
        let text = "owner demo-bucket [01/Mar/2024:10:00:00 +0000] 192.0.2.9 - R1 REST.GET.OBJECT k \"GET /k HTTP/1.1\" 403 AccessDenied 243 - 9 - \"-\" \"curl/8.4.0\" - hid SigV4 TLS_AES_128_GCM_SHA256 QueryString demo-bucket.s3.amazonaws.com TLSv1.3 - - -\n";
        let key = "s3-logs/111122223333/eu-west-3/demo-bucket/2024/03/01/2024-03-01-10-05-13-2F5E1BD7EXAMPLE";
        let (events, _) = run_with(text, key, &ParseOptions::default());
        let e = events[0].to_json();
        assert_eq!(e["cloud"]["account"]["id"], "111122223333");
        assert_eq!(e["cloud"]["region"], "eu-west-3");
        assert_eq!(e["event"]["outcome"], "failure");
        assert_eq!(e["error"]["code"], "AccessDenied");
        assert_eq!(e["tls"]["version"], "1.3");
        // a record about another bucket in the same object gets nothing from the key
        let (events, _) = run_with(
            &text.replace(" demo-bucket ", " other-bucket "),
            key,
            &ParseOptions::default(),
        );
        assert!(!events[0].contains("cloud.account.id"));
        // the global endpoint names no Region
        assert!(!events[0].contains("cloud.region"));
    }

    #[test]
    fn endpoints_name_regions() {
        for (host, region) in [
            ("s3.ap-southeast-1.amazonaws.com", Some("ap-southeast-1")),
            ("b.s3-us-west-2.amazonaws.com", Some("us-west-2")),
            ("b.s3.dualstack.eu-north-1.amazonaws.com", Some("eu-north-1")),
            ("b.s3-website-us-east-1.amazonaws.com", Some("us-east-1")),
            ("ap-111122223333.s3-accesspoint.us-east-2.amazonaws.com", Some("us-east-2")),
            ("b.s3.cn-north-1.amazonaws.com.cn", Some("cn-north-1")),
            ("s3.amazonaws.com", None),
            ("us-east-1.example.com", None),
        ] {
            assert_eq!(endpoint_region(host).as_deref(), region, "{host}");
        }
    }

    #[test]
    fn malformed_lines_are_forwarded_raw() {
        let text = format!(
            "not an access log line\n{MODERN}\nowner b [99/Foo/2024:00:00:00 +0000] 1 2 3 4 5 6 7 8 9 10 11 12 13 14\n"
        );
        let (events, stats) = run(&text);
        assert_eq!((stats.events, stats.malformed), (3, 2));
        assert_eq!(events[0].get_str("event.kind"), Some("pipeline_error"));
        assert_error_contains(&events[0], "expected 17 fields, found 5");
        assert_eq!(
            events[1].get_str("event.action"),
            Some("REST.GET.BUCKETPOLICY")
        );
        assert_error_contains(&events[2], "invalid time");
    }
}
