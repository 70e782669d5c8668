//! Route 53 Resolver query logs: one JSON object per line, with the fields AWS
//! documents (version, account_id, region, vpc_id, query_timestamp, query_name,
//! query_type, query_class, rcode, answers, srcaddr, srcport, transport, srcids and,
//! for DNS Firewall matches, the firewall_* fields).

use std::fmt::Write;

use crate::clock::Clock;
use crate::pools;
use crate::rng::Rng;

/// (weight, name, type, answer data or "" for none)
const QUERIES: &[(u32, (&str, &str, &str))] = &[
    (20, ("s3.us-east-1.amazonaws.com.", "A", "52.217.10.94")),
    (10, ("sqs.us-east-1.amazonaws.com.", "A", "3.236.169.10")),
    (10, ("www.example.com.", "A", "93.184.216.34")),
    (
        6,
        (
            "www.example.com.",
            "AAAA",
            "2606:2800:220:1:248:1893:25c8:1946",
        ),
    ),
    (8, ("db.internal.example.", "A", "10.0.2.15")),
    (
        5,
        (
            "_ldap._tcp.corp.example.",
            "SRV",
            "0 100 389 dc1.corp.example.",
        ),
    ),
    (5, ("api.github.com.", "CNAME", "github.com.")),
    (4, ("example.com.", "MX", "10 mail.example.com.")),
    (
        3,
        (
            "example.com.",
            "TXT",
            "\\\"v=spf1 include:_spf.example.com ~all\\\"",
        ),
    ),
    (3, ("ip-10-0-1-23.ec2.internal.", "PTR", "")),
    (4, ("does-not-exist.example.com.", "A", "")),
    (2, ("xmr.pool.example.net.", "A", "")),
];

/// Appends one Route 53 Resolver query log record as a JSON line.
pub fn record(rng: &mut Rng, clock: &mut Clock, out: &mut String) {
    clock.tick(rng, 3_000);
    let (name, qtype, answer) = rng.weighted(QUERIES);
    let blocked = name.starts_with("xmr.");
    let rcode = if blocked || !answer.is_empty() {
        "NOERROR"
    } else if name.starts_with("ip-") {
        "SERVFAIL"
    } else {
        "NXDOMAIN"
    };
    let region = rng.weighted(pools::REGIONS);
    let _ = write!(
        out,
        r#"{{"version":"1.100000","account_id":"{}","region":"{region}","vpc_id":"vpc-0a1b2c3d4e5f67890","query_timestamp":""#,
        rng.pick(pools::ACCOUNTS)
    );
    clock.iso_secs(out);
    let _ = write!(
        out,
        r#"","query_name":"{name}","query_type":"{qtype}","query_class":"IN","rcode":"{rcode}","answers":["#
    );
    if !answer.is_empty() && !blocked {
        let _ = write!(
            out,
            r#"{{"Rdata":"{answer}","Type":"{qtype}","Class":"IN"}}"#
        );
        if qtype == "CNAME" {
            out.push_str(r#",{"Rdata":"140.82.112.6","Type":"A","Class":"IN"}"#);
        }
    }
    out.push_str(r#"],"srcaddr":""#);
    if rng.chance(5) {
        pools::ipv6(rng, out);
    } else {
        pools::private_ipv4(rng, out);
    }
    let _ = write!(
        out,
        r#"","srcport":"{}","transport":"{}","srcids":{{"#,
        rng.range(1024, 65535),
        if rng.chance(95) { "UDP" } else { "TCP" }
    );
    if rng.chance(85) {
        out.push_str(r#""instance":"i-0"#);
        rng.hex(out, 16);
        out.push('"');
    } else {
        out.push_str(r#""resolver_endpoint":"rslvr-in-0123456789abcdef0""#);
    }
    out.push('}');
    if blocked {
        out.push_str(
            r#","firewall_rule_action":"BLOCK","firewall_rule_group_id":"rslvr-frg-0123456789abcdef","firewall_domain_list_id":"rslvr-fdl-0123456789abcdef""#,
        );
    }
    out.push_str("}\n");
}
