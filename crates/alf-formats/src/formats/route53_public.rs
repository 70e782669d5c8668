//! Amazon Route 53 public DNS query logs (CloudWatch Logs group `/aws/route53/<zone>`).
//! Each message is one space-separated line:
//!
//! `<version> <timestamp> <hosted zone id> <query name> <query type> <response code>
//! <protocol> <edge location> <resolver ip> <EDNS client subnet>`
//!
//! e.g. `1.0 2017-12-13T08:15:50.235Z Z123412341234 example.com A NOERROR UDP FRA6
//! 192.168.1.1 -`. The resolver that asked is the `source` (Route 53 answers it, not the
//! end user; the EDNS client subnet, when sent, hints at the end user).

use crate::driver::{ObjectParse, RecordError};
use crate::enrich::DomainField;
use crate::event::Event;
use crate::util;

/// A Route 53 public query log line, by shape.
pub(crate) fn looks_like(text: &str) -> bool {
    let f: Vec<&str> = text.split(' ').collect();
    f.len() == 10
        && f[0].starts_with("1.")
        && f[2].starts_with('Z')
        && matches!(f[6], "UDP" | "TCP")
        && util::iso_timestamp(f[1]).is_some()
}

/// Maps one query log line; `zone` is from the group name.
pub(crate) fn map(
    cx: &ObjectParse<'_>,
    zone: Option<&str>,
    text: &str,
) -> Result<Event, RecordError> {
    let f: Vec<&str> = text.split(' ').collect();
    if f.len() != 10 {
        return Err(RecordError::FieldCount {
            expected: 10,
            found: f.len(),
        });
    }
    let ts = util::iso_timestamp(f[1]).ok_or_else(|| RecordError::invalid("timestamp", f[1]))?;
    let mut ev = Event::new();
    ev.set("@timestamp", ts);
    ev.set("cloud.service.name", "route53");
    util::set_category(&mut ev, &["network"]);
    util::set_type(&mut ev, &["protocol"]);
    ev.set("network.protocol", "dns");
    ev.set("dns.type", "query");
    ev.set("aws.route53.version", f[0].to_owned());
    ev.set("aws.route53.hosted_zone_id", f[2].to_owned());
    ev.set_opt("aws.route53.log_group_zone", zone.map(str::to_owned));
    ev.set("dns.question.name", f[3].trim_end_matches('.').to_owned());
    cx.enricher.domain(&mut ev, DomainField::DnsQuestion, f[3]);
    ev.set("dns.question.type", f[4].to_owned());
    ev.set("dns.response_code", f[5].to_owned());
    ev.set("network.transport", f[6].to_ascii_lowercase());
    ev.set("aws.route53.edge_location", f[7].to_owned());
    // Edge locations are named after the nearest airport (`FRA6` -> FRA).
    let airport: String = f[7].chars().take_while(char::is_ascii_alphabetic).collect();
    if !airport.is_empty() {
        ev.set("observer.geo.name", airport);
    }
    if let Some(ip) = util::canonical_ip(f[8]) {
        ev.set("source.ip", ip.clone());
        ev.set("source.address", ip.clone());
        ev.push_unique("related.ip", ip);
    }
    if let Some(subnet) = util::field(f[9]) {
        ev.set("aws.route53.edns_client_subnet", subnet.to_owned());
    }
    util::set_outcome(&mut ev, f[5] == "NOERROR");
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{assert_fields, cloudwatch_context};
    use serde_json::json;

    #[test]
    fn query_log_line() {
        let cx = cloudwatch_context();
        let line = "1.0 2017-12-13T08:15:50.235Z Z123412341234 example.com A NOERROR UDP FRA6 192.168.1.1 198.51.100.0/24";
        assert!(looks_like(line));
        let e = map(&cx, Some("example.com"), line).unwrap().to_json();
        assert_fields(
            &e,
            json!({
                "@timestamp": "2017-12-13T08:15:50.235Z",
                "dns": {
                    "question": {
                        "name": "example.com",
                        "registered_domain": "example.com",
                        "type": "A",
                    },
                    "response_code": "NOERROR",
                },
                "network": {"transport": "udp"},
                "source": {"ip": "192.168.1.1"},
                "aws": {
                    "route53": {"edge_location": "FRA6", "edns_client_subnet": "198.51.100.0/24"},
                },
            }),
        );
        assert!(map(&cx, None, "1.0 too short").is_err());
    }
}
