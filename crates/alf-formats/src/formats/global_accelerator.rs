//! AWS Global Accelerator flow logs: one space-separated record per flow through an
//! accelerator, delivered to S3 under `AWSLogs/<account>/globalaccelerator/<region>/`.
//!
//! The fields, in order (AWS's flow log record syntax; no header line): `version
//! aws_account_id accelerator_id client_ip client_port gip gip_port endpoint_ip
//! endpoint_port protocol ip_address_type packets bytes start_time end_time action
//! log-status globalaccelerator_source_ip globalaccelerator_source_port endpoint_region
//! globalaccelerator_region direction vpc_id reject_reason`. A record may stop before
//! the last fields (older versions had fewer); missing ones are absent.
//!
//! A flow is a client talking to one of the accelerator's static IPs (`gip`), which
//! forwards it from its own source address to an endpoint: in ECS terms the client is
//! the source, the static IP the destination, and the two translated addresses are
//! `source.nat.*` and `destination.nat.*`.

use crate::driver::{LineContext, LineOutcome, LineParser, RecordError};
use crate::event::Event;
use crate::readers::columns::field_positions;
use crate::registry::{ContentClue, FirstLine, FormatSpec, KeyClue, Reader};
use crate::util;

field_positions!(0 =>
    VERSION, ACCOUNT, ACCELERATOR, CLIENT_IP, CLIENT_PORT, GIP, GIP_PORT, ENDPOINT_IP,
    ENDPOINT_PORT, PROTOCOL, IP_ADDRESS_TYPE, PACKETS, BYTES, START, END, ACTION,
    LOG_STATUS, SOURCE_IP, SOURCE_PORT, ENDPOINT_REGION, REGION, DIRECTION, VPC_ID,
    REJECT_REASON,
);

/// Fields a record must have: up to and including `action`.
const REQUIRED: usize = ACTION + 1;

/// Parses Global Accelerator flow log lines.
#[derive(Debug, Default)]
pub struct GlobalAcceleratorParser;

impl LineParser for GlobalAcceleratorParser {
    fn parse_line(&mut self, line: &str, _: &LineContext<'_>, out: &mut Vec<Event>) -> LineOutcome {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < REQUIRED || fields.len() > KNOWN {
            return Err(RecordError::FieldCount {
                expected: KNOWN,
                found: fields.len(),
            });
        }
        out.push(map_record(&fields)?);
        Ok(true)
    }
}

/// The field at `i`, absent when the record stops before it or holds `-`.
fn get<'a>(fields: &[&'a str], i: usize) -> Option<&'a str> {
    fields.get(i).copied().and_then(util::field)
}

/// A port field: a number up to 65535, else an error naming the field.
fn port(fields: &[&str], i: usize, name: &'static str) -> Result<Option<u16>, RecordError> {
    get(fields, i)
        .map(|p| p.parse::<u16>().map_err(|_| RecordError::invalid(name, p)))
        .transpose()
}

/// An address field set at `path` (canonical form) and added to `related.ip`.
fn set_ip(ev: &mut Event, fields: &[&str], i: usize, path: &'static str) {
    if let Some(ip) = get(fields, i).and_then(util::canonical_ip) {
        ev.set(path, ip.clone());
        ev.push_unique("related.ip", ip);
    }
}

fn map_record(f: &[&str]) -> Result<Event, RecordError> {
    let mut ev = Event::new();
    let start = util::epoch_secs_field(get(f, START), "start_time")?;
    let end = util::epoch_secs_field(get(f, END), "end_time")?;
    util::set_capture_window(&mut ev, start.as_ref(), end.as_ref());
    util::set_flow_action(&mut ev, get(f, ACTION));
    ev.set_str("event.reason", get(f, REJECT_REASON));
    util::set_aws_service(&mut ev, "globalaccelerator");
    ev.set_str("cloud.account.id", get(f, ACCOUNT));
    ev.set_str("cloud.region", get(f, REGION));

    set_ip(&mut ev, f, CLIENT_IP, "source.ip");
    ev.set_opt("source.port", port(f, CLIENT_PORT, "client_port")?);
    set_ip(&mut ev, f, SOURCE_IP, "source.nat.ip");
    ev.set_opt("source.nat.port", port(f, SOURCE_PORT, "globalaccelerator_source_port")?);
    set_ip(&mut ev, f, GIP, "destination.ip");
    ev.set_opt("destination.port", port(f, GIP_PORT, "gip_port")?);
    set_ip(&mut ev, f, ENDPOINT_IP, "destination.nat.ip");
    ev.set_opt("destination.nat.port", port(f, ENDPOINT_PORT, "endpoint_port")?);

    if let Some(proto) = get(f, PROTOCOL) {
        ev.set("network.transport", proto.to_ascii_lowercase());
    }
    if let Some(kind) = get(f, IP_ADDRESS_TYPE) {
        ev.set("network.type", kind.to_ascii_lowercase());
    }
    ev.set_opt("network.packets", get(f, PACKETS).and_then(util::uint));
    ev.set_opt("network.bytes", get(f, BYTES).and_then(util::uint));
    if let Some(dir) = get(f, DIRECTION).map(str::to_ascii_lowercase)
        && (dir == "ingress" || dir == "egress")
    {
        ev.set("network.direction", dir);
    }

    ev.set_str("aws.globalaccelerator.version", get(f, VERSION));
    ev.set_str("aws.globalaccelerator.accelerator_id", get(f, ACCELERATOR));
    ev.set_str("aws.globalaccelerator.log_status", get(f, LOG_STATUS));
    ev.set_str("aws.globalaccelerator.endpoint_region", get(f, ENDPOINT_REGION));
    ev.set_str("aws.globalaccelerator.vpc_id", get(f, VPC_ID));
    Ok(ev)
}

pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "global-accelerator",
    dataset: "aws.globalaccelerator",
    example_key: "AWSLogs/123456789012/globalaccelerator/us-west-2/2024/03/15/123456789012_globalaccelerator_1234abcd-abcd-1234-abcd-1234abcdefgh_20240315T0005Z_a1b2c3d4.log.gz",
    key_clues: &[KeyClue {
        rank: 30,
        layout: "AWSLogs/<account>/globalaccelerator/",
        matches: |k| {
            k.lower.contains("/globalaccelerator/") || k.file_name.contains("_globalaccelerator_")
        },
    }],
    content_clues: &[ContentClue {
        rank: 35,
        what: "flow record with an accelerator id and IPV4/IPV6 type",
        first_line: FirstLine::Text,
        matches: |line| {
            let f: Vec<&str> = line.split(' ').collect();
            (REQUIRED..=KNOWN).contains(&f.len())
                && f[ACCOUNT].len() == 12
                && f[ACCOUNT].bytes().all(|b| b.is_ascii_digit())
                && f[ACCELERATOR].len() == 36
                && f[ACCELERATOR].bytes().filter(|&b| b == b'-').count() == 4
                && matches!(f[IP_ADDRESS_TYPE], "IPV4" | "IPV6" | "IPv4" | "IPv6")
        },
    }],
    skip: None,
    options: &[],
    reader: Reader::Lines(|_, _| Box::new(GlobalAcceleratorParser)),
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{Format, assert_error_contains, assert_fields};

    sample_test_helpers!(Format::GlobalAccelerator, "global-accelerator.log");

    #[test]
    fn an_accepted_flow_maps_client_static_ip_and_endpoint() {
        let (events, stats) = run(SAMPLE.lines().next().unwrap());
        assert_eq!(stats.malformed, 0);
        assert_fields(
            &events[0],
            json!({
                "@timestamp": "2024-03-15T00:01:00Z",
                "event": {
                    "start": "2024-03-15T00:00:05Z",
                    "end": "2024-03-15T00:01:00Z",
                    "duration": 55_000_000_000u64,
                    "category": ["network"],
                    "type": ["connection", "allowed"],
                    "action": "ACCEPT",
                    "outcome": "success",
                    "dataset": "aws.globalaccelerator",
                },
                "cloud": {"provider": "aws", "account": {"id": "123456789012"}, "region": "us-west-2"},
                "source": {"ip": "198.51.100.23", "port": 52114, "nat": {"ip": "192.0.2.10", "port": 6001}},
                "destination": {"ip": "75.2.60.5", "port": 443, "nat": {"ip": "10.0.1.25", "port": 443}},
                "network": {"transport": "tcp", "type": "ipv4", "packets": 12, "bytes": 4312, "direction": "ingress"},
                "related": {"ip": ["198.51.100.23", "192.0.2.10", "75.2.60.5", "10.0.1.25"]},
                "aws": {"globalaccelerator": {
                    "accelerator_id": "1234abcd-abcd-1234-abcd-1234abcdefgh",
                    "log_status": "OK",
                    "endpoint_region": "us-east-1",
                    "vpc_id": "vpc-0a1b2c3d4e5f67890",
                }},
            }),
        );
    }

    #[test]
    fn a_rejected_flow_keeps_its_reason_and_a_short_record_is_accepted() {
        let (events, _) = run(SAMPLE.lines().nth(1).unwrap());
        assert_fields(
            &events[0],
            json!({"event": {"type": ["connection", "denied"], "outcome": "failure", "reason": "TCP_RST"}}),
        );
        // A version-1.0 record without the fields after `action`.
        let (events, stats) = run(
            "1.0 123456789012 1234abcd-abcd-1234-abcd-1234abcdefgh 203.0.113.7 40000 75.2.60.5 80 10.0.1.9 80 TCP IPV4 3 180 1710460800 1710460860 ACCEPT",
        );
        assert_eq!(stats.malformed, 0);
        assert!(events[0]["source"].get("nat").is_none());
        assert_eq!(events[0]["event"]["action"], "ACCEPT");
    }

    #[test]
    fn broken_records_are_malformed_with_the_field_named() {
        for (line, message) in [
            ("1.0 123456789012 too short", "fields"),
            (
                "1.0 123456789012 1234abcd-abcd-1234-abcd-1234abcdefgh 203.0.113.7 99999 75.2.60.5 80 10.0.1.9 80 TCP IPV4 3 180 1710460800 1710460860 ACCEPT",
                "client_port",
            ),
            (
                "1.0 123456789012 1234abcd-abcd-1234-abcd-1234abcdefgh 203.0.113.7 4000 75.2.60.5 80 10.0.1.9 80 TCP IPV4 3 180 yesterday 1710460860 ACCEPT",
                "start_time",
            ),
        ] {
            let (events, stats) = run(line);
            assert_eq!(stats.malformed, 1, "{line}");
            assert_error_contains(&events[0], message);
        }
    }

    #[test]
    fn the_format_is_recognised_by_key_and_by_content() {
        let by_key = crate::detect::by_key(Format::GlobalAccelerator.spec().example_key);
        assert_eq!(by_key.map(|(f, _)| f), Some(Format::GlobalAccelerator));
        let by_content = crate::detect::by_content(SAMPLE.as_bytes());
        assert_eq!(by_content.map(|(f, _)| f), Some(Format::GlobalAccelerator));
    }
}
