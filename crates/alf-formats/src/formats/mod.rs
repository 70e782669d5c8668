//! One module per log format. Each exposes
//! `pub fn parse(reader, cx, sink) -> Result<(), ParseError>`; line-oriented formats
//! implement [`crate::driver::LineParser`] and call [`crate::driver::drive_lines`].

use std::io::BufRead;

use crate::Format;
use crate::driver::{EventSink, ObjectParse, ParseError};

pub mod cloudfront;
pub mod cloudtrail;
pub mod elb;
pub mod guardduty;
pub mod lines;
pub mod ndjson;
pub mod network_firewall;
pub mod route53_resolver;
pub mod s3_access;
pub mod security_lake;
pub mod vpc_flow;
pub mod waf;

/// Dispatches to the format's module.
pub fn parse(
    format: Format,
    reader: &mut dyn BufRead,
    cx: &mut ObjectParse<'_>,
    sink: &mut dyn EventSink,
) -> Result<(), ParseError> {
    match format {
        Format::CloudFront => cloudfront::parse(reader, cx, sink),
        Format::S3Access => s3_access::parse(reader, cx, sink),
        Format::Elb => elb::parse(reader, cx, sink),
        Format::VpcFlow => vpc_flow::parse(reader, cx, sink),
        Format::CloudTrail => cloudtrail::parse(reader, cx, sink),
        Format::Waf => waf::parse(reader, cx, sink),
        Format::GuardDuty => guardduty::parse(reader, cx, sink),
        Format::Route53Resolver => route53_resolver::parse(reader, cx, sink),
        Format::NetworkFirewall => network_firewall::parse(reader, cx, sink),
        Format::SecurityLake => security_lake::parse(reader, cx, sink),
        Format::Ndjson => ndjson::parse(reader, cx, sink),
        Format::Lines => lines::parse(reader, cx, sink),
    }
}
