//! The one place that decides what to do with an object, from the registry's clues.
//!
//! Order: containers no reader understands are refused (none today: Apache Parquet is
//! read by [`crate::columnar`], before detection); objects that
//! hold no events are skipped (CloudTrail digests); then explicit rules from
//! configuration (bucket, key prefix, key regex), then the key layouts AWS uses when
//! it delivers logs, then a look at the first bytes of the decompressed object. What
//! nothing recognises is forwarded as `lines`: never dropped.
//!
//! The clues themselves belong to the formats ([`crate::registry::FormatSpec`]); this
//! module only orders and applies them.

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;

use crate::Format;
use crate::registry::{
    ContentClue, FirstLine, FormatOptions, KeyClue, KeyParts, refused_container,
};

/// A configured rule: when every given condition matches, the object has `format`.
#[derive(Debug, Clone)]
pub struct DetectRule {
    pub bucket: Option<String>,
    pub key_prefix: Option<String>,
    pub key_regex: Option<Regex>,
    pub format: Format,
    /// The format's options set by the rule (checked by [`Format::options_from`]).
    pub options: FormatOptions,
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
    /// The caller named the format (`parse --format NAME`).
    Requested,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Rule(i) => write!(f, "config rule {i}"),
            Reason::KeyLayout(what) => write!(f, "key layout ({what})"),
            Reason::Content(what) => write!(f, "content ({what})"),
            Reason::Fallback => f.write_str("fallback: no rule, key layout or content matched"),
            Reason::Requested => f.write_str("requested"),
        }
    }
}

/// What to do with an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Parse it as `format`, with the options its rule set.
    Parse {
        format: Format,
        reason: Reason,
        options: FormatOptions,
    },
    /// Produce no events (CloudTrail digest files), with why.
    Skip { reason: &'static str },
    /// No reader understands the container: the object fails.
    Refuse { container: &'static str },
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

    /// Decides what to do with `bucket`/`key` whose decompressed content starts with
    /// `head` (up to [`SNIFF_BYTES`]; may be empty if not read yet).
    pub fn decide(&self, bucket: &str, key: &str, head: &[u8]) -> Decision {
        if let Some(container) = refused_container(head) {
            return Decision::Refuse {
                container: container.name,
            };
        }
        if let Some(reason) = Format::ALL.iter().find_map(|f| f.skip_reason(key)) {
            return Decision::Skip { reason };
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
                options: rule.options.clone(),
            };
        }
        let parse = |format, reason| Decision::Parse {
            format,
            reason,
            options: FormatOptions::default(),
        };
        if let Some((format, what)) = by_key(key) {
            return parse(format, Reason::KeyLayout(what));
        }
        if let Some((format, what)) = by_content(head) {
            return parse(format, Reason::Content(what));
        }
        parse(Format::Lines, Reason::Fallback)
    }

    /// Decides for an object whose format the caller named: refused containers and
    /// the format's own skip rule still apply.
    pub fn decide_requested(format: Format, key: &str, head: &[u8]) -> Decision {
        if let Some(container) = refused_container(head) {
            return Decision::Refuse {
                container: container.name,
            };
        }
        if let Some(reason) = format.skip_reason(key) {
            return Decision::Skip { reason };
        }
        Decision::Parse {
            format,
            reason: Reason::Requested,
            options: FormatOptions::default(),
        }
    }
}

/// Whether `text` matches `pattern`, compiled once into `cell` (for clue functions).
/// A pattern that does not compile matches nothing rather than crashing the daemon.
pub(crate) fn regex_matches(
    cell: &'static OnceLock<Option<Regex>>,
    pattern: &str,
    text: &str,
) -> bool {
    cell.get_or_init(|| Regex::new(pattern).ok())
        .as_ref()
        .is_some_and(|r| r.is_match(text))
}

/// Every format's clues of one kind, lowest rank first (ties keep registry order).
fn ranked<C: Copy + 'static>(
    cell: &'static OnceLock<Vec<(Format, C)>>,
    clues: fn(Format) -> &'static [C],
    rank: fn(&C) -> u16,
) -> &'static [(Format, C)] {
    cell.get_or_init(|| {
        let mut all: Vec<(Format, C)> = Format::ALL
            .iter()
            .flat_map(|&f| clues(f).iter().map(move |c| (f, *c)))
            .collect();
        all.sort_by_key(|(_, c)| rank(c));
        all
    })
}

/// AWS delivery key layouts.
pub fn by_key(key: &str) -> Option<(Format, &'static str)> {
    static CLUES: OnceLock<Vec<(Format, KeyClue)>> = OnceLock::new();
    let clues = ranked(&CLUES, |f| f.spec().key_clues, |c| c.rank);
    let lower = key.to_ascii_lowercase();
    let parts = KeyParts {
        key,
        file_name: key.rsplit('/').next().unwrap_or(key),
        lower: &lower,
    };
    clues
        .iter()
        .find(|(_, c)| (c.matches)(&parts))
        .map(|(f, c)| (*f, c.layout))
}

/// Recognises a format from the first bytes of the decompressed object.
pub fn by_content(head: &[u8]) -> Option<(Format, &'static str)> {
    static CLUES: OnceLock<Vec<(Format, ContentClue)>> = OnceLock::new();
    let clues = ranked(&CLUES, |f| f.spec().content_clues, |c| c.rank);
    let text = String::from_utf8_lossy(&head[..head.len().min(SNIFF_BYTES)]);
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())?
        .trim_start_matches('\u{feff}');
    let trimmed = first.trim_start();
    let (kind, line) = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        (FirstLine::Json, trimmed)
    } else {
        (FirstLine::Text, first)
    };
    clues
        .iter()
        .find(|(_, c)| c.first_line == kind && (c.matches)(line))
        .map(|(f, c)| (*f, c.what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(d: Decision) -> Format {
        match d {
            Decision::Parse { format, .. } => format,
            other => panic!("not parsed: {other:?}"),
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
            options: FormatOptions::default(),
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
                options: FormatOptions::default()
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
                options: FormatOptions::default()
            }
        );
    }
}
