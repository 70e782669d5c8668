//! Deterministic generators of realistic AWS log files, one per [`Kind`].

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use alf_formats::Format;

use crate::clock::Clock;
use crate::rng::Rng;

mod aws_config;
mod cloudfront;
mod cloudtrail;
mod cloudwatch;
mod elb;
mod eventbridge;
mod generic;
mod global_accelerator;
mod guardduty;
mod json;
mod network_firewall;
mod redshift;
mod route53_resolver;
mod s3_access;
mod vpc_flow;
mod waf;

pub use cloudfront::FIELDS as CLOUDFRONT_FIELDS;
pub use vpc_flow::{CUSTOM_FIELDS as VPC_FLOW_CUSTOM_FIELDS, DEFAULT_FIELDS as VPC_FLOW_FIELDS};

/// Writes one log layout record by record.
trait LogWriter {
    /// Text before the first record: header lines, `{"Records":[`.
    fn begin(&mut self, _rng: &mut Rng, _clock: &mut Clock, _out: &mut String) {}
    /// Appends record number `index` (0-based) with its terminator or separator.
    fn record(&mut self, index: u64, rng: &mut Rng, clock: &mut Clock, out: &mut String);
    /// Text after the last record.
    fn end(&mut self, _out: &mut String) {}
}

/// Appends one record of a layout whose records are independent of each other (no
/// state carried between records, no record number): most layouts.
type RecordFn = fn(&mut Rng, &mut Clock, &mut String);

/// A layout of independent records, after a fixed header (CloudFront's `#Version` and
/// `#Fields` lines, VPC flow's field names; none for the others): one [`RecordFn`]
/// serves where a writer type would only forward to it.
struct Records {
    /// Written in order before the first record.
    header: &'static [&'static str],
    record: RecordFn,
}

impl Records {
    fn boxed(record: RecordFn) -> Box<dyn LogWriter> {
        Self::after(&[], record)
    }

    fn after(header: &'static [&'static str], record: RecordFn) -> Box<dyn LogWriter> {
        Box::new(Records { header, record })
    }
}

impl LogWriter for Records {
    fn begin(&mut self, _rng: &mut Rng, _clock: &mut Clock, out: &mut String) {
        for part in self.header {
            out.push_str(part);
        }
    }

    fn record(&mut self, _index: u64, rng: &mut Rng, clock: &mut Clock, out: &mut String) {
        (self.record)(rng, clock, out);
    }
}

/// A generated log layout. Most map one to one to a [`Format`]; VPC flow logs have
/// two (the default v2 header and a custom v5 selection) because the parser must
/// follow the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    CloudFront,
    S3Access,
    Elb,
    VpcFlow,
    VpcFlowCustom,
    CloudTrail,
    Waf,
    GuardDuty,
    Route53Resolver,
    NetworkFirewall,
    CloudWatchLogs,
    AwsConfig,
    RedshiftAudit,
    EventBridge,
    SecurityHub,
    Ndjson,
    Lines,
    /// Last, so the kinds before it keep their seeds (`kind as u64`).
    SecurityLake,
    GlobalAccelerator,
}

impl Kind {
    pub const ALL: [Kind; 19] = [
        Kind::CloudFront,
        Kind::S3Access,
        Kind::Elb,
        Kind::VpcFlow,
        Kind::VpcFlowCustom,
        Kind::CloudTrail,
        Kind::Waf,
        Kind::GuardDuty,
        Kind::Route53Resolver,
        Kind::NetworkFirewall,
        Kind::CloudWatchLogs,
        Kind::AwsConfig,
        Kind::RedshiftAudit,
        Kind::EventBridge,
        Kind::SecurityHub,
        Kind::SecurityLake,
        Kind::GlobalAccelerator,
        Kind::Ndjson,
        Kind::Lines,
    ];

    /// Command-line name: the format name, plus `vpc-flow-custom`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::VpcFlowCustom => "vpc-flow-custom",
            other => other.format().name(),
        }
    }

    /// The format the parser is asked for.
    pub fn format(self) -> Format {
        match self {
            Kind::CloudFront => Format::CloudFront,
            Kind::S3Access => Format::S3Access,
            Kind::Elb => Format::Elb,
            Kind::VpcFlow | Kind::VpcFlowCustom => Format::VpcFlow,
            Kind::CloudTrail => Format::CloudTrail,
            Kind::Waf => Format::Waf,
            Kind::GuardDuty => Format::GuardDuty,
            Kind::Route53Resolver => Format::Route53Resolver,
            Kind::NetworkFirewall => Format::NetworkFirewall,
            Kind::CloudWatchLogs => Format::CloudWatchLogs,
            Kind::AwsConfig => Format::AwsConfig,
            Kind::RedshiftAudit => Format::RedshiftAudit,
            Kind::EventBridge => Format::EventBridge,
            Kind::SecurityHub => Format::SecurityHub,
            Kind::SecurityLake => Format::SecurityLake,
            Kind::GlobalAccelerator => Format::GlobalAccelerator,
            Kind::Ndjson => Format::Ndjson,
            Kind::Lines => Format::Lines,
        }
    }

    /// An S3 key in the layout AWS delivers this log type with (for detection tests
    /// and realistic `aws.s3.object.key` values): the format's registry example.
    pub fn sample_key(self) -> &'static str {
        self.format().spec().example_key
    }

    fn writer(self) -> Box<dyn LogWriter> {
        match self {
            Kind::CloudFront => Records::after(cloudfront::HEADER, cloudfront::record),
            Kind::S3Access => Records::boxed(s3_access::record),
            Kind::Elb => Records::boxed(elb::record),
            Kind::VpcFlow => Records::after(vpc_flow::DEFAULT_HEADER, vpc_flow::default_record),
            Kind::VpcFlowCustom => Records::after(vpc_flow::CUSTOM_HEADER, vpc_flow::custom_record),
            Kind::CloudTrail => Box::new(cloudtrail::CloudTrail),
            Kind::Waf => Records::boxed(waf::record),
            Kind::GuardDuty => Records::boxed(guardduty::record),
            Kind::Route53Resolver => Records::boxed(route53_resolver::record),
            Kind::NetworkFirewall => Records::boxed(network_firewall::record),
            Kind::CloudWatchLogs => Box::new(cloudwatch::CloudWatchFirehose::default()),
            Kind::AwsConfig => Box::new(aws_config::ConfigHistory),
            Kind::RedshiftAudit => Records::boxed(redshift::record),
            Kind::EventBridge => Records::boxed(eventbridge::record),
            Kind::SecurityHub => Box::new(eventbridge::SecurityHub::default()),
            Kind::SecurityLake => Records::boxed(ocsf_json_line),
            Kind::GlobalAccelerator => Records::boxed(global_accelerator::record),
            Kind::Ndjson => Records::boxed(generic::ndjson),
            Kind::Lines => Records::boxed(generic::lines),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown generator name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKind(pub String);

impl fmt::Display for UnknownKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown log kind `{}` (expected one of:", self.0)?;
        for k in Kind::ALL {
            write!(f, " {k}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for UnknownKind {}

impl FromStr for Kind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// Appends one of Amazon Security Lake's OCSF Network Activity records as a JSON line
/// (the row form [`crate::parquet::write_ocsf_parquet`] writes to Parquet).
fn ocsf_json_line(rng: &mut Rng, clock: &mut Clock, out: &mut String) {
    out.push_str(&crate::parquet::network_activity(rng, clock).to_string());
    out.push('\n');
}

/// The text `write` appends, as a `String` of its own: for a value a record uses twice
/// or after text written before it (a finding's `updatedAt` inside and outside its
/// `service` block, an event id inside a request).
fn owned(write: impl FnOnce(&mut String)) -> String {
    let mut text = String::with_capacity(40);
    write(&mut text);
    text
}

/// Flush generated text to the writer in chunks of about this size, so generating
/// millions of records needs no more memory than one chunk.
const CHUNK: usize = 256 * 1024;

/// Writes a log file of `records` records of `kind` to `out`; the same `seed` always
/// gives the same bytes. Returns the number of bytes written.
pub fn write_log(kind: Kind, records: u64, seed: u64, out: &mut dyn Write) -> io::Result<u64> {
    // Mixing the kind into the seed keeps e.g. CloudFront and S3 addresses different.
    let mut rng = Rng::new(seed ^ (kind as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut clock = Clock::new();
    let mut writer = kind.writer();
    let mut buf = String::with_capacity(CHUNK + 16 * 1024);
    let mut written = 0u64;
    writer.begin(&mut rng, &mut clock, &mut buf);
    for i in 0..records {
        writer.record(i, &mut rng, &mut clock, &mut buf);
        if buf.len() >= CHUNK {
            out.write_all(buf.as_bytes())?;
            written += buf.len() as u64;
            buf.clear();
        }
    }
    writer.end(&mut buf);
    out.write_all(buf.as_bytes())?;
    written += buf.len() as u64;
    Ok(written)
}

/// A whole generated file in memory (for benchmarks and tests).
pub fn generate(kind: Kind, records: u64, seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write_log(kind, records, seed, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every registered format has a generator, and its sample key is recognised as it.
    #[test]
    fn every_registered_format_has_a_generator() {
        for format in Format::ALL {
            let kind = Kind::ALL.into_iter().find(|k| k.format() == format);
            assert!(kind.is_some(), "no generator for {format}: add a Kind");
        }
    }

    /// Every record every generator writes is one event, none malformed, and the
    /// detector picks the right reader from the key or the content.
    #[test]
    fn every_kind_parses_cleanly_one_event_per_record() {
        for kind in Kind::ALL {
            let data = generate(kind, 503, 3);
            let mut events = Vec::new();
            let stats = crate::parse_generated(kind.format(), &data, &mut events).unwrap();
            assert_eq!((stats.events, stats.malformed), (503, 0), "{kind}");
            let head = &data[..data.len().min(8192)];
            match alf_formats::FormatDetector::default().decide("b", kind.sample_key(), head) {
                alf_formats::Decision::Parse { format, .. } if kind != Kind::SecurityHub => {
                    assert_eq!(format, kind.format(), "{kind}")
                }
                alf_formats::Decision::Parse { format, .. } => {
                    assert_eq!(format, alf_formats::Format::EventBridge, "{kind}")
                }
                other => panic!("{kind}: {other:?}"),
            }
        }
    }

    #[test]
    fn names_round_trip_and_generation_is_deterministic() {
        for kind in Kind::ALL {
            assert_eq!(kind.name().parse::<Kind>(), Ok(kind));
            let a = generate(kind, 50, 7);
            assert_eq!(a, generate(kind, 50, 7), "{kind} not deterministic");
            assert_ne!(a, generate(kind, 50, 8), "{kind} ignores the seed");
            assert!(std::str::from_utf8(&a).is_ok(), "{kind} not UTF-8");
        }
        assert!("nope".parse::<Kind>().is_err());
    }

    /// Every JSON-lines kind writes one valid JSON object per line; CloudTrail one
    /// document with every record in `Records`.
    #[test]
    fn json_kinds_are_valid_json() {
        for kind in [
            Kind::Waf,
            Kind::GuardDuty,
            Kind::Route53Resolver,
            Kind::NetworkFirewall,
            Kind::Ndjson,
        ] {
            let text = String::from_utf8(generate(kind, 300, 1)).unwrap();
            assert_eq!(text.lines().count(), 300, "{kind}");
            for line in text.lines() {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{kind}: {e}: {line}"));
                assert!(v.is_object(), "{kind}: {line}");
            }
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&generate(Kind::CloudTrail, 300, 1)).unwrap();
        let records = doc["Records"].as_array().unwrap();
        assert_eq!(records.len(), 300);
        assert!(records.iter().all(|r| r["eventID"].is_string()));
        let empty: serde_json::Value =
            serde_json::from_slice(&generate(Kind::CloudTrail, 0, 1)).unwrap();
        assert_eq!(empty["Records"].as_array().map(Vec::len), Some(0));
    }

    fn field_count(header: &str) -> usize {
        header.split_whitespace().count()
    }

    /// Text kinds have the right number of columns on every line (quoted fields
    /// counted as one), so the parsers see well-formed records.
    #[test]
    fn text_kinds_have_consistent_columns() {
        let cf = String::from_utf8(generate(Kind::CloudFront, 2000, 3)).unwrap();
        let mut lines = cf.lines();
        assert_eq!(lines.next(), Some("#Version: 1.0"));
        assert!(lines.next().unwrap().starts_with("#Fields: date time"));
        let want = field_count(CLOUDFRONT_FIELDS);
        for l in lines {
            assert_eq!(l.split('\t').count(), want, "{l}");
        }

        for (kind, header) in [
            (Kind::VpcFlow, VPC_FLOW_FIELDS),
            (Kind::VpcFlowCustom, VPC_FLOW_CUSTOM_FIELDS),
        ] {
            let text = String::from_utf8(generate(kind, 2000, 3)).unwrap();
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some(header));
            for l in lines {
                assert_eq!(l.split(' ').count(), field_count(header), "{kind}: {l}");
            }
        }

        // S3 access: 26 fields (time is two tokens inside brackets); ALB: 30.
        for (kind, want) in [(Kind::S3Access, 26), (Kind::Elb, 30)] {
            let text = String::from_utf8(generate(kind, 2000, 3)).unwrap();
            for l in text.lines() {
                assert_eq!(quoted_fields(l), want, "{kind}: {l}");
            }
        }
    }

    /// Counts space-separated fields, treating `"..."` and `[...]` as one field.
    fn quoted_fields(line: &str) -> usize {
        let mut n = 0;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            n += 1;
            let close = match c {
                '"' => Some('"'),
                '[' => Some(']'),
                _ => None,
            };
            match close {
                Some(close) => {
                    for c in chars.by_ref() {
                        if c == close {
                            break;
                        }
                    }
                    // `[v6]:port` continues after the bracket.
                    for c in chars.by_ref() {
                        if c == ' ' {
                            break;
                        }
                    }
                }
                None => {
                    for c in chars.by_ref() {
                        if c == ' ' {
                            break;
                        }
                    }
                }
            }
        }
        n
    }

    #[test]
    fn some_records_carry_secrets_to_redact() {
        for kind in [Kind::CloudFront, Kind::S3Access] {
            let text = String::from_utf8(generate(kind, 2000, 5)).unwrap();
            assert!(text.contains("X-Amz-Signature="), "{kind}");
        }
        let cf = String::from_utf8(generate(Kind::CloudFront, 2000, 5)).unwrap();
        let client_ips = cf.lines().filter(|l| !l.starts_with('#'));
        assert!(
            client_ips
                .clone()
                .any(|l| l.split('\t').nth(4).unwrap().contains(':')),
            "no IPv6 clients"
        );
        assert!(
            client_ips
                .clone()
                .any(|l| l.split('\t').nth(4).unwrap().contains('.'))
        );
    }
}
