//! VPC flow logs delivered to S3: a header line naming the fields, then one
//! space-separated record per flow. Two layouts: the version 2 default and a custom
//! version 5 selection (the fields AWS lists for v3-v5).

use std::fmt::Write;

use crate::clock::Clock;
use crate::pools;
use crate::rng::Rng;

pub const DEFAULT_FIELDS: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";
pub const CUSTOM_FIELDS: &str = "version account-id vpc-id subnet-id instance-id interface-id type srcaddr dstaddr srcport dstport pkt-srcaddr pkt-dstaddr protocol bytes packets start end action tcp-flags log-status region az-id flow-direction traffic-path pkt-src-aws-service pkt-dst-aws-service";
/// The header line of each layout: its field names.
pub const DEFAULT_HEADER: &[&str] = &[DEFAULT_FIELDS, "\n"];
pub const CUSTOM_HEADER: &[&str] = &[CUSTOM_FIELDS, "\n"];

const ENIS: &[&str] = &[
    "eni-1235b8ca123456789",
    "eni-0a1b2c3d4e5f60718",
    "eni-0f9e8d7c6b5a49382",
    "eni-07a6b5c4d3e2f1a0b",
];

/// One flow's values; both layouts print from it.
struct Flow {
    src: String,
    dst: String,
    src_port: u64,
    dst_port: u64,
    protocol: u64,
    packets: u64,
    bytes: u64,
    start: i64,
    end: i64,
    action: &'static str,
    status: &'static str,
    tcp_flags: u64,
    egress: bool,
    src_service: &'static str,
    dst_service: &'static str,
}

fn flow(rng: &mut Rng, clock: &mut Clock) -> Flow {
    clock.tick(rng, 10_000);
    let end = clock.epoch_secs();
    let start = end - rng.range(1, 60) as i64;
    let mut f = Flow {
        src: String::with_capacity(40),
        dst: String::with_capacity(40),
        src_port: 0,
        dst_port: 0,
        protocol: 6,
        packets: 0,
        bytes: 0,
        start,
        end,
        action: "ACCEPT",
        status: "OK",
        tcp_flags: 0,
        egress: false,
        src_service: "-",
        dst_service: "-",
    };
    let ephemeral = rng.range(32768, 65535);
    match rng.below(100) {
        // Nothing to log in the window.
        0..=1 => {
            f.status = "NODATA";
            return f;
        }
        2 => {
            f.status = "SKIPDATA";
            return f;
        }
        // Internet scanners against well-known ports: rejected.
        3..=22 => {
            pools::public_ipv4(rng, &mut f.src);
            pools::private_ipv4(rng, &mut f.dst);
            f.src_port = ephemeral;
            f.dst_port = rng.pick(&[22u64, 23, 445, 3389, 1433, 3306, 5900, 8080, 6379]);
            f.action = "REJECT";
            f.packets = rng.range(1, 3);
            f.bytes = f.packets * 40;
            f.tcp_flags = 2;
        }
        // Clients hitting a public web server.
        23..=49 => {
            pools::client_ip(rng, &mut f.src, 10);
            if f.src.contains(':') {
                pools::ipv6(rng, &mut f.dst);
            } else {
                pools::private_ipv4(rng, &mut f.dst);
            }
            f.src_port = ephemeral;
            f.dst_port = rng.pick(&[443u64, 443, 443, 80]);
            f.packets = rng.skewed(3, 20_000);
            f.bytes = f.packets * rng.range(60, 1400);
            f.tcp_flags = rng.pick(&[3u64, 19, 18, 27]);
        }
        // Instances calling out (AWS APIs, package mirrors).
        50..=74 => {
            pools::private_ipv4(rng, &mut f.src);
            pools::public_ipv4(rng, &mut f.dst);
            f.src_port = ephemeral;
            f.dst_port = 443;
            f.packets = rng.skewed(4, 50_000);
            f.bytes = f.packets * rng.range(60, 1400);
            f.tcp_flags = 19;
            f.egress = true;
            f.dst_service = rng.pick(&["AMAZON", "S3", "EC2", "-", "-"]);
        }
        // East-west traffic inside the VPC, including DNS over UDP.
        75..=94 => {
            pools::private_ipv4(rng, &mut f.src);
            pools::private_ipv4(rng, &mut f.dst);
            if rng.chance(40) {
                f.protocol = 17;
                f.src_port = ephemeral;
                f.dst_port = 53;
                f.packets = rng.range(1, 4);
                f.bytes = f.packets * rng.range(60, 300);
            } else {
                f.src_port = ephemeral;
                f.dst_port = rng.pick(&[5432u64, 6379, 8080, 9200, 2049]);
                f.packets = rng.skewed(2, 100_000);
                f.bytes = f.packets * rng.range(60, 9000);
                f.tcp_flags = rng.pick(&[3u64, 19, 18]);
            }
            f.egress = rng.chance(50);
        }
        // ICMP pings and path-MTU messages.
        _ => {
            pools::public_ipv4(rng, &mut f.src);
            pools::private_ipv4(rng, &mut f.dst);
            f.protocol = 1;
            f.packets = rng.range(1, 10);
            f.bytes = f.packets * 84;
            f.action = if rng.chance(50) { "ACCEPT" } else { "REJECT" };
        }
    }
    f
}

/// The version 2 default layout.
pub fn default_record(rng: &mut Rng, clock: &mut Clock, out: &mut String) {
    let f = flow(rng, clock);
    let account = rng.pick(pools::ACCOUNTS);
    let eni = rng.pick(ENIS);
    if f.status != "OK" {
        let _ = writeln!(
            out,
            "2 {account} {eni} - - - - - - - {} {} - {}",
            f.start, f.end, f.status
        );
        return;
    }
    let _ = writeln!(
        out,
        "2 {account} {eni} {} {} {} {} {} {} {} {} {} {} OK",
        f.src,
        f.dst,
        f.src_port,
        f.dst_port,
        f.protocol,
        f.packets,
        f.bytes,
        f.start,
        f.end,
        f.action
    );
}

/// A custom version 5 layout (see [`CUSTOM_FIELDS`]).
pub fn custom_record(rng: &mut Rng, clock: &mut Clock, out: &mut String) {
    let f = flow(rng, clock);
    let account = rng.pick(pools::ACCOUNTS);
    let eni_index = rng.below(ENIS.len() as u64) as usize;
    let eni = ENIS[eni_index];
    let instance = [
        "i-01234567890abcdef",
        "i-0fedcba9876543210",
        "-",
        "i-0a1b2c3d4e5f67890",
    ][eni_index];
    let (region, az) = rng.pick(&[("us-east-1", "use1-az1"), ("us-east-1", "use1-az4")]);
    let _ = write!(
        out,
        "5 {account} vpc-0a1b2c3d4e5f67890 subnet-0{eni_index}23456789abcdef0 {instance} {eni} IPv{} ",
        if f.src.contains(':') { 6 } else { 4 }
    );
    if f.status != "OK" {
        let _ = writeln!(
            out,
            "- - - - - - - - - {} {} - - {} {region} {az} - - - -",
            f.start, f.end, f.status
        );
        return;
    }
    let _ = writeln!(
        out,
        "{src} {dst} {sp} {dp} {src} {dst} {proto} {bytes} {packets} {start} {end} {action} {flags} OK {region} {az} {dir} {path} {ss} {ds}",
        src = f.src,
        dst = f.dst,
        sp = f.src_port,
        dp = f.dst_port,
        proto = f.protocol,
        bytes = f.bytes,
        packets = f.packets,
        start = f.start,
        end = f.end,
        action = f.action,
        flags = f.tcp_flags,
        dir = if f.egress { "egress" } else { "ingress" },
        path = if f.egress { "8" } else { "-" },
        ss = f.src_service,
        ds = f.dst_service,
    );
}
