//! Route 53 (VPC) Resolver query logs: one JSON object per line, one DNS query and its
//! response per record, optionally with the DNS Firewall rule that matched it.
//!
//! Every record is both the question and its answer, so it maps to one ECS `dns` event
//! of `dns.type: answer`. Fields AWS adds later (the log format's minor version grows
//! with new fields) are kept as they came under `aws.route53.<field>`.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::Value as J;

use crate::driver::RecordError;
use crate::enrich::split_domain;
use crate::event::{Event, Value};
use crate::readers::json_lines::{json_members, text, text_value};
use crate::readers::json_records::JsonMap;
use crate::registry::{ContentClue, FirstLine, FormatSpec, KeyClue, Reader, has_json_keys};
use crate::util;

json_members! {
    /// The top-level members this module maps; any other is kept under `aws.route53`.
    struct Resolver {
        account_id: "account_id",
        answers: "answers",
        firewall_domain_list_id: "firewall_domain_list_id",
        firewall_rule_action: "firewall_rule_action",
        firewall_rule_group_id: "firewall_rule_group_id",
        query_class: "query_class",
        query_name: "query_name",
        query_timestamp: "query_timestamp",
        query_type: "query_type",
        rcode: "rcode",
        region: "region",
        srcaddr: "srcaddr",
        srcids: "srcids",
        srcport: "srcport",
        transport: "transport",
        version: "version",
        vpc_id: "vpc_id",
    }
}



/// A port given as a JSON string (AWS writes `"srcport":"56067"`) or number.
fn port(v: Option<&J>) -> Option<u16> {
    match v? {
        J::String(s) => s.trim().parse().ok(),
        J::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        _ => None,
    }
}

/// The address a reverse-lookup name asks about: `4.3.2.1.in-addr.arpa` is 1.2.3.4,
/// and an `ip6.arpa` name is 32 reversed nibbles.
fn reverse_lookup_ip(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if let Some(rest) = lower.strip_suffix(".in-addr.arpa") {
        let octets: Vec<u8> = rest
            .split('.')
            .rev()
            .map(|o| o.parse::<u8>())
            .collect::<Result<_, _>>()
            .ok()?;
        let octets: [u8; 4] = octets.try_into().ok()?;
        return Some(Ipv4Addr::from(octets).to_string());
    }
    let rest = lower.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = rest
        .split('.')
        .rev()
        .map(|n| u8::from_str_radix(n, 16).ok().filter(|_| n.len() == 1))
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (byte, pair) in bytes.iter_mut().zip(nibbles.chunks_exact(2)) {
        *byte = (pair[0] << 4) | pair[1];
    }
    Some(Ipv6Addr::from(bytes).to_string())
}

/// Maps `answers` to ECS `dns.answers`, `dns.resolved_ip` and `related.*`.
fn map_answers(ev: &mut Event, answers: &[J]) {
    let mut out = Vec::with_capacity(answers.len());
    let mut resolved = Vec::new();
    for answer in answers {
        let J::Object(a) = answer else {
            continue;
        };
        let data = text(a, "Rdata").map(|d| d.trim_end_matches('.'));
        let rtype = text(a, "Type");
        let mut item = crate::event::Map::new();
        if let Some(d) = data {
            item.insert("data", d.to_owned());
        }
        if let Some(t) = rtype {
            item.insert("type", t.to_owned());
        }
        if let Some(c) = text(a, "Class") {
            item.insert("class", c.to_owned());
        }
        if item.is_empty() {
            continue;
        }
        out.push(Value::Obj(item));
        let Some(d) = data else {
            continue;
        };
        match rtype {
            Some("A" | "AAAA") => {
                if let Some(ip) = util::canonical_ip(d) {
                    ev.push_unique("related.ip", ip.clone());
                    resolved.push(Value::Str(ip));
                }
            }
            Some("CNAME" | "PTR" | "NS" | "DNAME") => {
                ev.push_unique("related.hosts", d.to_ascii_lowercase());
            }
            _ => {}
        }
    }
    if !out.is_empty() {
        ev.set("dns.answers", Value::Arr(out));
    }
    if !resolved.is_empty() {
        ev.set("dns.resolved_ip", Value::Arr(resolved));
    }
}

/// Sets `dns.question.*` for a query name (without its trailing dot).
fn map_question(ev: &mut Event, name: &str) {
    ev.set("dns.question.name", name.to_owned());
    if let Some(ip) = reverse_lookup_ip(name) {
        // A reverse lookup is about an address, not about the `arpa` domain.
        ev.push_unique("related.ip", ip);
        return;
    }
    let lower = name.to_ascii_lowercase();
    if let Some(parts) = split_domain(&lower) {
        ev.set("dns.question.registered_domain", parts.registered);
        ev.set_opt("dns.question.subdomain", parts.subdomain);
        ev.set("dns.question.top_level_domain", parts.suffix);
    }
    ev.push_unique("related.hosts", lower);
}

/// Maps one query log record to ECS.
fn map_record(map: &JsonMap) -> Result<Event, RecordError> {
    let f = Resolver::read(map);
    let raw_name = text_value(f.query_name);
    let raw_ts = text_value(f.query_timestamp);
    if raw_name.is_none() && raw_ts.is_none() {
        return Err(RecordError::Other(
            "not a Resolver query log record (no query_name or query_timestamp)".into(),
        ));
    }
    let mut ev = Event::new();
    if let Some(raw) = raw_ts {
        let ts =
            util::iso_timestamp(raw).ok_or_else(|| RecordError::invalid("query_timestamp", raw))?;
        ev.set("@timestamp", ts);
    }
    util::set_category(&mut ev, &["network"]);
    let mut types = vec![Value::Static("protocol")];
    ev.set("network.protocol", "dns");
    util::set_aws_service(&mut ev, "route53");

    if let Some(name) = raw_name.map(|n| n.strip_suffix('.').unwrap_or(n))
        && !name.is_empty()
    {
        map_question(&mut ev, name);
    }
    ev.set_str("dns.question.type", text_value(f.query_type));
    ev.set_str("dns.question.class", text_value(f.query_class));
    if let Some(rcode) = text_value(f.rcode) {
        ev.set("dns.type", "answer");
        ev.set("dns.response_code", rcode.to_owned());
        util::set_outcome(&mut ev, rcode.eq_ignore_ascii_case("NOERROR"));
    }
    if let Some(J::Array(answers)) = f.answers {
        map_answers(&mut ev, answers);
    }

    if let Some(ip) = text_value(f.srcaddr).and_then(util::canonical_ip) {
        ev.set_opt("network.type", util::ip_version(&ip));
        ev.set("source.address", ip.clone());
        ev.set("source.ip", ip.clone());
        ev.push_unique("related.ip", ip);
    }
    ev.set_opt("source.port", port(f.srcport));
    if let Some(transport) = text_value(f.transport) {
        // UDP, TCP, or DoH (DNS over HTTPS, over TCP) for inbound DoH endpoints.
        let lower = transport.to_ascii_lowercase();
        let (name, number) = match lower.as_str() {
            "udp" => ("udp", "17"),
            "tcp" | "doh" => ("tcp", "6"),
            _ => ("", ""),
        };
        if !name.is_empty() {
            ev.set("network.transport", name);
            ev.set("network.iana_number", number);
        }
        ev.set("aws.route53.transport", transport.to_owned());
    }

    ev.set_str("cloud.account.id", text_value(f.account_id));
    ev.set_str("cloud.region", text_value(f.region));
    ev.set_str("aws.route53.vpc_id", text_value(f.vpc_id));
    ev.set_str("aws.route53.version", text_value(f.version));
    if let Some(J::Object(srcids)) = f.srcids {
        ev.set_str("cloud.instance.id", text(srcids, "instance"));
        if !srcids.is_empty() {
            ev.set("aws.route53.srcids", J::Object(srcids.clone()));
        }
    }

    if let Some(action) = text_value(f.firewall_rule_action) {
        ev.set("event.action", action.to_owned());
        ev.set("aws.route53.firewall.action", action.to_owned());
        match action {
            "BLOCK" => types.push(Value::Static("denied")),
            "ALLOW" | "ALERT" => types.push(Value::Static("allowed")),
            _ => {}
        }
    }
    if let Some(group) = text_value(f.firewall_rule_group_id) {
        ev.set("rule.ruleset", group.to_owned());
        ev.set("aws.route53.firewall.rule_group.id", group.to_owned());
    }
    if let Some(list) = text_value(f.firewall_domain_list_id) {
        // A DNS Firewall rule is identified within its rule group by its domain list.
        ev.set("rule.id", list.to_owned());
        ev.set("aws.route53.firewall.domain_list.id", list.to_owned());
    }
    ev.set("event.type", Value::Arr(types));

    f.unmapped.keep(&mut ev, "aws.route53");
    Ok(ev)
}

/// Route 53 Resolver query logs, one JSON record per line.
pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "route53-resolver",
    dataset: "aws.route53_resolver_logs",
    example_key: "AWSLogs/123456789012/vpcdnsquerylogs/vpc-0a1b2c3d4e5f67890/2024/03/15/vpc-0a1b2c3d4e5f67890_vpcdnsquerylogs_123456789012_20240315T0005Z_a1b2c3d4.log.gz",
    key_clues: &[KeyClue {
        rank: 50,
        layout: "vpcdnsquerylogs",
        matches: |k| k.lower.contains("vpcdnsquerylogs"),
    }],
    content_clues: &[ContentClue {
        rank: 130,
        what: "resolver query record",
        first_line: FirstLine::Json,
        matches: |line| has_json_keys(line, &["query_name", "query_type"]),
    }],
    skip: None,
    options: &[],
    reader: Reader::JsonLines(|map, _| map_record(&map)),
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{Format, assert_error_contains, assert_fields};

    sample_test_helpers!(Format::Route53Resolver, "route53-resolver.log");

    /// AWS's documented example record (DNS Firewall block of a reverse lookup).
    const FIREWALL_BLOCK: &str = r#"{"srcaddr":"4.5.64.102","vpc_id":"vpc-7example","answers":[{"Rdata":"203.0.113.9","Type":"PTR","Class":"IN"}],"firewall_rule_group_id":"rslvr-frg-01234567890abcdef","firewall_rule_action":"BLOCK","query_name":"15.3.4.32.in-addr.arpa.","firewall_domain_list_id":"rslvr-fdl-01234567890abcdef","query_class":"IN","srcids":{"instance":"i-0d15cd0d3example"},"rcode":"NOERROR","query_type":"PTR","transport":"UDP","version":"1.100000","account_id":"111122223333","srcport":"56067","query_timestamp":"2021-02-04T17:51:55Z","region":"us-east-1"}"#;

    #[test]
    fn query_with_answers() {
        let (events, stats) = run(SAMPLE.lines().next().unwrap());
        assert_eq!(stats.malformed, 0);
        let e = &events[0];
        assert_fields(
            e,
            json!({
                "@timestamp": "2024-06-16T08:00:01Z",
                "event": {
                    "category": ["network"],
                    "type": ["protocol"],
                    "outcome": "success",
                    "dataset": "aws.route53_resolver_logs",
                },
                "network": {"protocol": "dns", "transport": "udp", "iana_number": "17"},
                "dns": {
                    "type": "answer",
                    "question": {
                        "name": "www.example.com",
                        "registered_domain": "example.com",
                        "subdomain": "www",
                        "top_level_domain": "com",
                        "type": "A",
                        "class": "IN",
                    },
                },
            }),
        );
        assert!(e["dns"]["question"].get("domain").is_none());
        assert_fields(
            e,
            json!({
                "dns": {
                    "response_code": "NOERROR",
                    "answers": [
                        {"data": "www.example.com.cdn.example.net", "type": "CNAME", "class": "IN"},
                        {"data": "192.0.2.80", "type": "A", "class": "IN"},
                        {"data": "192.0.2.81", "type": "A", "class": "IN"},
                    ],
                    "resolved_ip": ["192.0.2.80", "192.0.2.81"],
                },
                "source": {"ip": "10.0.1.15", "port": 48701},
                "cloud": {
                    "account": {"id": "123456789012"},
                    "region": "eu-west-1",
                    "instance": {"id": "i-0fedcba9876543210"},
                },
                "aws": {"route53": {"vpc_id": "vpc-0abc1234def567890"}},
                "related": {
                    "hosts": ["www.example.com", "www.example.com.cdn.example.net"],
                    "ip": ["192.0.2.80", "192.0.2.81", "10.0.1.15"],
                },
            }),
        );
    }

    #[test]
    fn firewall_block_maps_rule_and_action() {
        let (events, _) = run(FIREWALL_BLOCK);
        let e = &events[0];
        // The DNS transaction itself answered NOERROR (with the firewall's response).
        // A reverse lookup is about an address: no domain split, the IP is related.
        assert_fields(
            e,
            json!({
                "@timestamp": "2021-02-04T17:51:55Z",
                "event": {"action": "BLOCK", "type": ["protocol", "denied"], "outcome": "success"},
                "rule": {
                    "ruleset": "rslvr-frg-01234567890abcdef",
                    "id": "rslvr-fdl-01234567890abcdef",
                },
                "aws": {
                    "route53": {
                        "firewall": {
                            "action": "BLOCK",
                            "domain_list": {"id": "rslvr-fdl-01234567890abcdef"},
                        },
                    },
                },
                "dns": {"question": {"name": "15.3.4.32.in-addr.arpa"}},
            }),
        );
        assert!(e["dns"]["question"].get("registered_domain").is_none());
        assert_eq!(e["related"]["ip"], json!(["32.4.3.15", "4.5.64.102"]));
        assert!(e["dns"].get("resolved_ip").is_none());
    }

    #[test]
    fn nxdomain_alert_tcp_ipv6_and_resolver_endpoints() {
        let (events, stats) = run(SAMPLE);
        assert_eq!((stats.events, stats.malformed), (9, 0));
        let nx = &events[2];
        assert_eq!(nx["dns"]["response_code"], "NXDOMAIN");
        assert_eq!(nx["event"]["outcome"], "failure");
        assert!(nx["dns"].get("answers").is_none());
        let alert = &events[5];
        assert_eq!(alert["event"]["action"], "ALERT");
        assert_eq!(alert["event"]["type"], json!(["protocol", "allowed"]));
        let tcp = &events[6];
        assert_eq!(tcp["network"]["transport"], "tcp");
        assert_eq!(tcp["network"]["iana_number"], "6");
        assert!(tcp["cloud"].get("instance").is_none());
        assert_eq!(
            tcp["aws"]["route53"]["srcids"]["resolver_endpoint"],
            "rslvr-in-0123456789abcdef0"
        );
        let v6 = &events[7];
        assert_eq!(v6["source"]["ip"], "2001:db8:1234:a102::15");
        assert_eq!(v6["network"]["type"], "ipv6");
        assert_eq!(events[1]["dns"]["resolved_ip"], json!(["2001:db8::80"]));
        let ptr6 = &events[8];
        assert_eq!(ptr6["related"]["ip"][0], "2001:db8::80");
    }

    #[test]
    fn unknown_fields_are_kept_and_doh_is_tcp() {
        let line = r#"{"version":"1.100000","account_id":"123456789012","region":"eu-west-1","vpc_id":"vpc-1","query_timestamp":"2024-06-16T08:00:01.250Z","query_name":"example.com.","query_type":"A","query_class":"IN","rcode":"NOERROR","answers":[],"srcaddr":"10.0.0.1","srcport":443,"transport":"DoH","srcids":{},"firewall_protection":"DGA","edns_client_subnet":null}"#;
        let (events, stats) = run(line);
        assert_eq!(stats.malformed, 0);
        let e = &events[0];
        assert_eq!(e["@timestamp"], "2024-06-16T08:00:01.25Z");
        assert_eq!(e["network"]["transport"], "tcp");
        assert_eq!(e["aws"]["route53"]["transport"], "DoH");
        assert_eq!(e["source"]["port"], 443);
        assert_eq!(e["aws"]["route53"]["firewall_protection"], "DGA");
        assert!(e["aws"]["route53"].get("edns_client_subnet").is_none());
        assert!(e["aws"]["route53"].get("srcids").is_none());
        assert_eq!(e["dns"]["question"]["name"], "example.com");
        assert!(e["dns"]["question"].get("subdomain").is_none());
    }

    #[test]
    fn wrong_shapes_are_forwarded_raw() {
        let lines = [
            r#"{"version":"1.100000","query_name":"example.com.","query_timestamp":"2017-03-16T19:20:177Z"}"#,
            r#"{"version":"1.100000","account_id":"1"}"#,
            r#"["query_name"]"#,
            r#"{"query_name":"example.com.","query_timestamp":"2024-06-16T08:00:01Z","answers":"#,
            "not json at all",
        ];
        let events = crate::each_line_malformed(run, &lines);
        assert_error_contains(&events[0], "query_timestamp");
        // Odd member types inside a valid record do not fail it.
        let (events, stats) = run(
            r#"{"query_name":7,"query_timestamp":"2024-06-16T08:00:01Z","answers":[1,{"Type":"A"},{}],"srcport":"x","srcaddr":"not-an-ip","srcids":[]}"#,
        );
        assert_eq!(stats.malformed, 0);
        assert_eq!(events[0]["dns"]["answers"], json!([{"type": "A"}]));
        assert!(events[0].get("source").is_none());
    }

    #[test]
    fn reverse_lookup_names() {
        use super::reverse_lookup_ip;
        for (name, ip) in [
            ("4.3.2.1.in-addr.arpa", Some("1.2.3.4")),
            ("3.2.1.in-addr.arpa", None),
            ("300.2.1.0.in-addr.arpa", None),
            ("example.com", None),
            ("a.b.ip6.arpa", None),
        ] {
            assert_eq!(reverse_lookup_ip(name).as_deref(), ip, "{name}");
        }
    }
}
