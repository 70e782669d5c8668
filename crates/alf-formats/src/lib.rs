//! AWS service logs parsed and mapped to Elastic Common Schema (ECS).
//!
//! This crate is pure: no network, no files, no async runtime. It reads from a
//! [`BufRead`] and hands events to an [`EventSink`], so it can be unit-tested, fuzzed
//! and benchmarked alone, and the daemon decides where bytes come from and where
//! events go.
//!
//! * [`Format`] names every supported log type; [`detect`] is the one place that
//!   decides which format an object is.
//! * [`parse_object`] streams one object: every record becomes one event; a record
//!   that cannot be parsed becomes a raw event tagged `_parse_failure` (nothing is
//!   dropped) and is reported to [`EventSink::malformed`].
//! * [`Event::write_json`] serializes with [`Redactor`] applied to every string.

pub mod columnar;
pub mod detect;
pub mod driver;
pub mod enrich;
pub mod event;
pub mod formats;
pub mod redact;
pub mod util;

use std::fmt;
use std::io::BufRead;
use std::str::FromStr;

pub use detect::{Decision, DetectRule, FormatDetector};
pub use driver::{EventSink, ParseError, ParseStats, RecordError, Stop};
pub use enrich::Enricher;
pub use event::{Event, Map, Value};
pub use redact::Redactor;

/// ECS version the mappings follow.
pub const ECS_VERSION: &str = "8.11.0";

/// Every log format, by the name used in configuration and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    CloudFront,
    S3Access,
    Elb,
    VpcFlow,
    CloudTrail,
    Waf,
    GuardDuty,
    Route53Resolver,
    NetworkFirewall,
    /// Amazon Security Lake: OCSF records (Parquet, or JSON lines).
    SecurityLake,
    Ndjson,
    Lines,
}

impl Format {
    pub const ALL: [Format; 12] = [
        Format::CloudFront,
        Format::S3Access,
        Format::Elb,
        Format::VpcFlow,
        Format::CloudTrail,
        Format::Waf,
        Format::GuardDuty,
        Format::Route53Resolver,
        Format::NetworkFirewall,
        Format::SecurityLake,
        Format::Ndjson,
        Format::Lines,
    ];

    /// The configuration / command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Format::CloudFront => "cloudfront",
            Format::S3Access => "s3-access",
            Format::Elb => "elb",
            Format::VpcFlow => "vpc-flow",
            Format::CloudTrail => "cloudtrail",
            Format::Waf => "waf",
            Format::GuardDuty => "guardduty",
            Format::Route53Resolver => "route53-resolver",
            Format::NetworkFirewall => "network-firewall",
            Format::SecurityLake => "security-lake",
            Format::Ndjson => "ndjson",
            Format::Lines => "lines",
        }
    }

    /// The `event.dataset` value of this format's events.
    pub fn dataset(self) -> &'static str {
        match self {
            Format::CloudFront => "aws.cloudfront_logs",
            Format::S3Access => "aws.s3access",
            Format::Elb => "aws.elb_logs",
            Format::VpcFlow => "aws.vpcflow",
            Format::CloudTrail => "aws.cloudtrail",
            Format::Waf => "aws.waf",
            Format::GuardDuty => "aws.guardduty",
            Format::Route53Resolver => "aws.route53_resolver_logs",
            Format::NetworkFirewall => "aws.firewall_logs",
            Format::SecurityLake => "aws.security_lake",
            Format::Ndjson => "aws.ndjson",
            Format::Lines => "aws.lines",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown format name.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "unknown format `{0}` (expected one of: cloudfront, s3-access, elb, vpc-flow, cloudtrail, waf, guardduty, route53-resolver, network-firewall, security-lake, ndjson, lines)"
)]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

/// Where an object came from; feeds `event.id` and the `aws.s3.*` / `log.*` fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectInfo {
    pub bucket: String,
    pub key: String,
    /// ETag or version id: a new version of the same key gets new event ids.
    pub version: String,
}

/// Options that change what events contain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Copy each raw record to `event.original`.
    pub keep_original: bool,
    /// Column names for VPC flow logs delivered without a header line (custom formats).
    pub vpc_flow_fields: Option<Vec<String>>,
}

/// Streams one object of a known format into `sink`. See [`driver`].
pub fn parse_object(
    format: Format,
    reader: &mut dyn BufRead,
    object: &ObjectInfo,
    options: &ParseOptions,
    enricher: &Enricher,
    sink: &mut dyn EventSink,
) -> Result<ParseStats, ParseError> {
    let mut cx = driver::ObjectParse::new(format, object, options, enricher);
    formats::parse(format, reader, &mut cx, sink)?;
    Ok(cx.stats)
}

/// Parses `text` as one object of `format` with default options (unit tests).
#[cfg(test)]
pub(crate) fn parse_for_test(format: Format, text: &str) -> (Vec<Event>, ParseStats) {
    let mut out = Vec::new();
    let stats = parse_object(
        format,
        &mut text.as_bytes(),
        &ObjectInfo::default(),
        &ParseOptions::default(),
        &Enricher::new(),
        &mut out,
    )
    .expect("in-memory input cannot fail to read");
    (out, stats)
}
