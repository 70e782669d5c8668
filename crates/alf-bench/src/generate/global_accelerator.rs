//! AWS Global Accelerator flow logs: one space-separated record per flow, no header
//! (the field order of AWS's flow log record syntax; see the parser's module doc).
//! Clients reach one of two static IPs on 443 or 53; most flows are accepted, some
//! are reset or refused, and some clients are IPv6.

use std::fmt::Write;

use crate::clock::Clock;
use crate::pools;
use crate::rng::Rng;

const ACCELERATORS: &[&str] = &[
    "1234abcd-abcd-1234-abcd-1234abcdefgh",
    "5678efab-cdef-5678-efab-5678cdefabcd",
];
const STATIC_IPS: &[&str] = &["75.2.60.5", "99.83.190.51"];
const ENDPOINT_REGIONS: &[&str] = &["us-east-1", "us-east-1", "eu-west-1", "ap-southeast-2"];
const VPCS: &[&str] = &["vpc-0a1b2c3d4e5f67890", "vpc-0f9e8d7c6b5a49382"];

pub fn record(rng: &mut Rng, clock: &mut Clock, out: &mut String) {
    clock.tick(rng, 20_000);
    let end = clock.epoch_secs();
    let start = end - rng.range(5, 60) as i64;
    let mut client = String::with_capacity(40);
    pools::client_ip(rng, &mut client, 15);
    let ip_type = if client.contains(':') { "IPV6" } else { "IPV4" };
    let gip = if ip_type == "IPV6" {
        "2600:9000:a000::5"
    } else {
        rng.pick(STATIC_IPS)
    };
    let mut endpoint = String::with_capacity(16);
    pools::private_ipv4(rng, &mut endpoint);
    let mut nat_source = String::with_capacity(16);
    pools::public_ipv4(rng, &mut nat_source);
    let dns = rng.chance(15);
    let (protocol, port) = if dns { ("UDP", 53) } else { ("TCP", 443) };
    let (action, reason) = match rng.below(100) {
        0..=5 => ("REJECT", "TCP_RST"),
        6..=8 => ("REJECT", "FLOW_LIMIT"),
        _ => ("ACCEPT", "-"),
    };
    let packets = if action == "REJECT" {
        rng.range(1, 3)
    } else {
        rng.skewed(1, 5_000)
    };
    let bytes = packets * rng.range(60, 1400);
    let _ = writeln!(
        out,
        "1.0 123456789012 {accelerator} {client} {client_port} {gip} {port} {endpoint} {port} {protocol} {ip_type} {packets} {bytes} {start} {end} {action} OK {nat_source} {nat_port} {endpoint_region} us-west-2 INGRESS {vpc} {reason}",
        accelerator = rng.pick(ACCELERATORS),
        client_port = rng.range(1024, 65535),
        nat_port = rng.range(1024, 65535),
        endpoint_region = rng.pick(ENDPOINT_REGIONS),
        vpc = rng.pick(VPCS),
    );
}
