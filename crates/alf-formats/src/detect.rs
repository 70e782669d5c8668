//! The one place that decides which format an object is.
//!
//! Order: explicit rules from configuration (bucket, key prefix, key regex), then the
//! key layouts AWS uses when it delivers logs, then a look at the first bytes of the
//! decompressed object. What nothing recognises is forwarded as `lines`: never dropped.

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;

use crate::Format;

/// A configured rule: when every given condition matches, the object has `format`.
#[derive(Debug, Clone)]
pub struct DetectRule {
    pub bucket: Option<String>,
    pub key_prefix: Option<String>,
    pub key_regex: Option<Regex>,
    pub format: Format,
    /// Column names for VPC flow logs written without a header line.
    pub vpc_flow_fields: Option<Vec<String>>,
}

impl DetectRule {
    fn matches(&self, bucket: &str, key: &str) -> bool {
        self.bucket.as_deref().is_none_or(|b| b == bucket)
            && self
                .key_prefix
                .as_deref()
                .is_none_or(|p| key.starts_with(p))
            && self.key_regex.as_ref().is_none_or(|r| r.is_match(key))
    }
}

/// Why a format was chosen (logged with every object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Configured rule number (0-based).
    Rule(usize),
    /// An AWS delivery key layout.
    KeyLayout(&'static str),
    /// The first bytes of the object.
    Content(&'static str),
    /// Nothing matched; forwarded as plain lines.
    Fallback,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Rule(i) => write!(f, "config rule {i}"),
            Reason::KeyLayout(what) => write!(f, "key layout ({what})"),
            Reason::Content(what) => write!(f, "content ({what})"),
            Reason::Fallback => f.write_str("fallback: no rule, key layout or content matched"),
        }
    }
}

/// What to do with an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Parse {
        format: Format,
        reason: Reason,
        vpc_flow_fields: Option<Vec<String>>,
    },
    /// Produce no events (CloudTrail digest files), with why.
    Skip { reason: &'static str },
}

/// Decides formats from rules, key layouts and content.
#[derive(Debug, Clone, Default)]
pub struct FormatDetector {
    rules: Vec<DetectRule>,
}

/// Bytes of the decompressed object the detector wants to see.
pub const SNIFF_BYTES: usize = 8192;

impl FormatDetector {
    pub fn new(rules: Vec<DetectRule>) -> Self {
        FormatDetector { rules }
    }

    /// Decides the format of `bucket`/`key` whose decompressed content starts with
    /// `head` (up to [`SNIFF_BYTES`]; may be empty if not read yet).
    pub fn decide(&self, bucket: &str, key: &str, head: &[u8]) -> Decision {
        if key.contains("CloudTrail-Digest") {
            return Decision::Skip {
                reason: "CloudTrail digest file (integrity hashes, not events)",
            };
        }
        if let Some((i, rule)) = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(bucket, key))
        {
            return Decision::Parse {
                format: rule.format,
                reason: Reason::Rule(i),
                vpc_flow_fields: rule.vpc_flow_fields.clone(),
            };
        }
        let parse = |format, reason| Decision::Parse {
            format,
            reason,
            vpc_flow_fields: None,
        };
        if let Some((format, what)) = by_key(key) {
            return parse(format, Reason::KeyLayout(what));
        }
        if let Some((format, what)) = by_content(head) {
            return parse(format, Reason::Content(what));
        }
        parse(Format::Lines, Reason::Fallback)
    }
}

fn regex(cell: &'static OnceLock<Option<Regex>>, pattern: &str) -> Option<&'static Regex> {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

/// AWS delivery key layouts.
pub fn by_key(key: &str) -> Option<(Format, &'static str)> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let lower = key.to_ascii_lowercase();
    if key.contains("/CloudTrail/")
        || key.contains("/CloudTrail-Insight/")
        || name.contains("_CloudTrail_")
    {
        return Some((Format::CloudTrail, "AWSLogs/<account>/CloudTrail/"));
    }
    if lower.contains("/elasticloadbalancing/") || name.contains("_elasticloadbalancing_") {
        return Some((Format::Elb, "AWSLogs/<account>/elasticloadbalancing/"));
    }
    if lower.contains("/vpcflowlogs/")
        || name.contains("_vpcflowlogs_")
        || lower.contains("aws-service=vpcflowlogs/")
    {
        return Some((Format::VpcFlow, "AWSLogs/<account>/vpcflowlogs/"));
    }
    // Amazon Security Lake: `aws/<SOURCE>/<version>/region=.../accountId=.../eventDay=...`
    // (also under `ext/` for custom sources).
    if lower.contains("/region=") && lower.contains("/accountid=") && lower.contains("/eventday=") {
        return Some((
            Format::SecurityLake,
            "Security Lake region=/accountId=/eventDay= partitions",
        ));
    }
    if key.contains("/GuardDuty/") {
        return Some((Format::GuardDuty, "AWSLogs/<account>/GuardDuty/"));
    }
    if lower.contains("vpcdnsquerylogs") {
        return Some((Format::Route53Resolver, "vpcdnsquerylogs"));
    }
    if key.contains("aws-waf-logs-") || lower.contains("/wafv2/") || lower.contains("/waflogs/") {
        return Some((Format::Waf, "aws-waf-logs-"));
    }
    if lower.contains("/network-firewall/") || lower.contains("_network-firewall_") {
        return Some((
            Format::NetworkFirewall,
            "AWSLogs/<account>/network-firewall/",
        ));
    }
    static CLOUDFRONT: OnceLock<Option<Regex>> = OnceLock::new();
    if regex(
        &CLOUDFRONT,
        r"^[A-Z0-9]{6,20}\.\d{4}-\d{2}-\d{2}-\d{2}\.[0-9a-zA-Z]{6,12}(\.gz)?$",
    )
    .is_some_and(|r| r.is_match(name))
    {
        return Some((Format::CloudFront, "<distribution>.YYYY-MM-DD-HH.<id>.gz"));
    }
    static S3_ACCESS: OnceLock<Option<Regex>> = OnceLock::new();
    if regex(&S3_ACCESS, r"^(\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9A-F]{16}|\d{12}_\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9A-F]{16})$").is_some_and(|r| r.is_match(name)) {
        return Some((Format::S3Access, "YYYY-MM-DD-HH-MM-SS-<16 hex>"));
    }
    None
}

/// Recognises a format from the first bytes of the decompressed object.
pub fn by_content(head: &[u8]) -> Option<(Format, &'static str)> {
    let text = String::from_utf8_lossy(&head[..head.len().min(SNIFF_BYTES)]);
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())?
        .trim_start_matches('\u{feff}');
    if first.starts_with("#Version:") || first.starts_with("#Fields: date time x-edge-location") {
        return Some((Format::CloudFront, "#Version/#Fields header"));
    }
    let t = first.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        return Some(json_kind(t));
    }
    static VPC_HEADER: OnceLock<Option<Regex>> = OnceLock::new();
    if regex(&VPC_HEADER, r"^(version|account-id|interface-id|srcaddr|dstaddr|start|end|action|log-status|vpc-id)( [a-z0-9-]+){2,}$").is_some_and(|r| r.is_match(first)) {
        return Some((Format::VpcFlow, "flow log header line"));
    }
    static VPC_V2: OnceLock<Option<Regex>> = OnceLock::new();
    if regex(&VPC_V2, r"^\d \d{12}|- (eni-[0-9a-f]+|-) ").is_some_and(|r| r.is_match(first))
        && first.split(' ').count() == 14
    {
        return Some((Format::VpcFlow, "default flow log record"));
    }
    static S3: OnceLock<Option<Regex>> = OnceLock::new();
    if regex(&S3, r"^[0-9a-f]{64}|- \S+ \[\d{2}/[A-Za-z]{3}/\d{4}:")
        .is_some_and(|r| r.is_match(first))
    {
        return Some((Format::S3Access, "canonical owner id and [time]"));
    }
    static ELB: OnceLock<Option<Regex>> = OnceLock::new();
    if regex(&ELB, r"^((http|https|h2|grpcs|ws|wss|tls) \d{4}-\d{2}-\d{2}T\S+Z |\d{4}-\d{2}-\d{2}T\S+Z \S+ [0-9a-fA-F.:\[\]]+:\d+ )").is_some_and(|r| r.is_match(first)) {
        return Some((Format::Elb, "load balancer record"));
    }
    None
}

fn json_kind(line: &str) -> (Format, &'static str) {
    // Keys present early in each AWS JSON log type. The first line may be cut at
    // SNIFF_BYTES, so look for keys rather than parsing.
    let has = |k: &str| line.contains(k);
    if has("\"Records\"") && (has("\"eventVersion\"") || has("\"eventSource\"") || line.len() < 40)
    {
        return (Format::CloudTrail, "{\"Records\": [...]}");
    }
    if has("\"eventVersion\"") && has("\"eventSource\"") {
        return (Format::CloudTrail, "CloudTrail record");
    }
    if has("\"terminatingRuleId\"") || has("\"httpSourceName\"") {
        return (Format::Waf, "WAF record");
    }
    if has("\"firewall_name\"") && has("\"event\"") {
        return (Format::NetworkFirewall, "network firewall record");
    }
    if has("\"query_name\"") && has("\"query_type\"") {
        return (Format::Route53Resolver, "resolver query record");
    }
    if has("\"schemaVersion\"") && has("\"severity\"") && has("\"service\"") {
        return (Format::GuardDuty, "GuardDuty finding");
    }
    if has("\"class_uid\"") && has("\"metadata\"") {
        return (Format::SecurityLake, "OCSF record (class_uid, metadata)");
    }
    // Standard logging (v2) with the JSON output format: the W3C column names as keys.
    if has("\"x-edge-location\"") || has("\"x-edge-request-id\"") {
        return (Format::CloudFront, "CloudFront JSON record");
    }
    (Format::Ndjson, "JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(d: Decision) -> Format {
        match d {
            Decision::Parse { format, .. } => format,
            Decision::Skip { .. } => panic!("skipped"),
        }
    }

    #[test]
    fn key_layouts() {
        let d = FormatDetector::default();
        let cases = [
            (
                "AWSLogs/123456789012/CloudTrail/us-east-1/2024/01/01/123456789012_CloudTrail_us-east-1_20240101T0000Z_abc.json.gz",
                Format::CloudTrail,
            ),
            (
                "AWSLogs/123456789012/elasticloadbalancing/eu-west-1/2024/01/01/x.log.gz",
                Format::Elb,
            ),
            (
                "prefix/AWSLogs/123456789012/vpcflowlogs/eu-west-1/2024/01/01/x.log.gz",
                Format::VpcFlow,
            ),
            (
                "AWSLogs/123456789012/GuardDuty/eu-west-1/2024/01/01/x.jsonl.gz",
                Format::GuardDuty,
            ),
            (
                "AWSLogs/123456789012/vpcdnsquerylogs/vpc-1/2024/01/01/x.log.gz",
                Format::Route53Resolver,
            ),
            (
                "aws-waf-logs-site/AWSLogs/123/WAFLogs/x.log.gz",
                Format::Waf,
            ),
            (
                "cf/E2QWRUHAPOMQZL.2024-01-01-10.a1b2c3d4.gz",
                Format::CloudFront,
            ),
            (
                "logs/2024-01-01-10-11-12-0123456789ABCDEF",
                Format::S3Access,
            ),
            (
                "AWSLogs/123/network-firewall/alert/2024/x.log.gz",
                Format::NetworkFirewall,
            ),
            (
                "aws/ROUTE53/2.0/region=eu-west-1/accountId=123456789012/eventDay=20240616/f.gz.parquet",
                Format::SecurityLake,
            ),
            (
                "AWSLogs/aws-account-id=123456789012/aws-service=vpcflowlogs/aws-region=eu-west-1/year=2024/month=06/day=16/x.log.gz",
                Format::VpcFlow,
            ),
        ];
        for (key, want) in cases {
            assert_eq!(format(d.decide("b", key, b"")), want, "{key}");
        }
    }

    #[test]
    fn digests_are_skipped_and_rules_win() {
        let rules = vec![DetectRule {
            bucket: Some("b".into()),
            key_prefix: Some("custom/".into()),
            key_regex: None,
            format: Format::VpcFlow,
            vpc_flow_fields: None,
        }];
        let d = FormatDetector::new(rules);
        assert!(matches!(
            d.decide("b", "AWSLogs/1/CloudTrail-Digest/x.json.gz", b""),
            Decision::Skip { .. }
        ));
        assert_eq!(
            d.decide("b", "custom/x.log", b"hello"),
            Decision::Parse {
                format: Format::VpcFlow,
                reason: Reason::Rule(0),
                vpc_flow_fields: None
            }
        );
        assert_eq!(
            format(d.decide("other", "custom/x.log", b"hello")),
            Format::Lines
        );
    }

    #[test]
    fn content_sniffing() {
        let d = FormatDetector::default();
        let cases: [(&[u8], Format); 11] = [
            (b"#Version: 1.0\n#Fields: date time\n", Format::CloudFront),
            (b"{\"Records\":[{\"eventVersion\":\"1.08\"", Format::CloudTrail),
            (b"version account-id interface-id srcaddr dstaddr\n", Format::VpcFlow),
            (b"2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK\n", Format::VpcFlow),
            (b"79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be awsexamplebucket1 [06/Feb/2019:00:00:38 +0000] 192.0.2.3 x\n", Format::S3Access),
            (b"https 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 10.0.0.1:80 0.000\n", Format::Elb),
            (b"{\"timestamp\":1576280412771,\"formatVersion\":1,\"webaclId\":\"x\",\"terminatingRuleId\":\"Default_Action\"}\n", Format::Waf),
            (b"{\"firewall_name\":\"fw\",\"availability_zone\":\"a\",\"event\":{}}\n", Format::NetworkFirewall),
            (b"{\"version\":\"1.100000\",\"query_name\":\"example.com.\",\"query_type\":\"A\"}\n", Format::Route53Resolver),
            (b"{\"date\":\"2023-12-05\",\"time\":\"16:15:33\",\"x-edge-location\":\"FRA56-P3\"}\n", Format::CloudFront),
            (b"{\"some\":\"json\"}\n", Format::Ndjson),
        ];
        for (head, want) in cases {
            assert_eq!(
                format(d.decide("b", "unknown/key", head)),
                want,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        assert_eq!(
            d.decide("b", "k", b"just some text"),
            Decision::Parse {
                format: Format::Lines,
                reason: Reason::Fallback,
                vpc_flow_fields: None
            }
        );
    }
}
