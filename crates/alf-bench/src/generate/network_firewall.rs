//! AWS Network Firewall logs: one JSON object per line wrapping a Suricata EVE event
//! (`netflow` flow records, `alert` records with signature details, TLS SNI and HTTP
//! metadata), as in AWS's documented examples.

use std::fmt::Write;

use crate::clock::Clock;
use crate::pools;
use crate::rng::Rng;

const FIREWALL: &str = "prod-inspection-firewall";

/// Appends one Network Firewall alert or flow record as a JSON line.
pub fn record(rng: &mut Rng, clock: &mut Clock, out: &mut String) {
    clock.tick(rng, 4_000);
    let alert = rng.chance(30);
    let mut src = String::with_capacity(40);
    let mut dst = String::with_capacity(40);
    pools::private_ipv4(rng, &mut src);
    pools::public_ipv4(rng, &mut dst);
    let (proto, dport, app) = rng.weighted(&[
        (60u32, ("TCP", 443u32, "tls")),
        (15, ("TCP", 80, "http")),
        (15, ("UDP", 53, "dns")),
        (5, ("TCP", 22, "ssh")),
        (5, ("ICMP", 0, "")),
    ]);
    let sport = if proto == "ICMP" {
        0
    } else {
        rng.range(32768, 65535)
    };
    let _ = write!(
        out,
        r#"{{"firewall_name":"{FIREWALL}","availability_zone":"us-east-1{}","event_timestamp":"{}","event":{{"timestamp":""#,
        rng.pick(&["a", "b"]),
        clock.epoch_secs()
    );
    clock.suricata(out);
    let _ = write!(
        out,
        r#"","flow_id":{},"event_type":"{}","src_ip":"{src}","src_port":{sport},"dest_ip":"{dst}","dest_port":{dport},"proto":"{proto}""#,
        rng.below(1u64 << 52),
        if alert { "alert" } else { "netflow" }
    );
    if !app.is_empty() {
        let _ = write!(out, r#","app_proto":"{app}""#);
    }
    if alert {
        let (action, sid, signature, category, severity) = rng.weighted(&[
            (
                50u32,
                (
                    "blocked",
                    1_000_001u32,
                    "Blocked TLS SNI not in allow list",
                    "",
                    3u32,
                ),
            ),
            (
                20,
                (
                    "allowed",
                    2_013_028,
                    "ET POLICY curl User-Agent Outbound",
                    "Attempted Information Leak",
                    2,
                ),
            ),
            (
                15,
                (
                    "blocked",
                    2_027_865,
                    "ET INFO Observed DNS Query to .cloud TLD",
                    "Potentially Bad Traffic",
                    2,
                ),
            ),
            (
                15,
                (
                    "blocked",
                    2_001_219,
                    "ET SCAN Potential SSH Scan",
                    "Attempted Information Leak",
                    2,
                ),
            ),
        ]);
        let _ = write!(
            out,
            r#","alert":{{"action":"{action}","signature_id":{sid},"rev":{},"signature":"{signature}","category":"{category}","severity":{severity}}}"#,
            rng.range(1, 9)
        );
        match app {
            "tls" => {
                let _ = write!(
                    out,
                    r#","tls":{{"sni":"{}","version":"TLS 1.3"}}"#,
                    rng.pick(&["www.example.com", "updates.example.net", "paste.example.org"])
                );
            }
            "http" => {
                let _ = write!(
                    out,
                    r#","http":{{"hostname":"mirror.example.com","url":"/pub/archive/pkg-{}.tar.gz","http_user_agent":"curl/8.4.0","http_method":"GET","protocol":"HTTP/1.1","length":0}}"#,
                    rng.below(1000)
                );
            }
            "dns" => out.push_str(
                r#","dns":{"query":[{"type":"query","id":45213,"rrname":"abc.example.cloud","rrtype":"A","tx_id":0,"opcode":0}]}"#,
            ),
            _ => {}
        }
    } else {
        let pkts = rng.skewed(1, 100_000);
        let bytes = pkts * rng.range(60, 1400);
        let _ = write!(
            out,
            r#","netflow":{{"pkts":{pkts},"bytes":{bytes},"start":""#
        );
        clock
            .minus(rng.skewed(1_000, 120_000_000) as i64)
            .suricata(out);
        out.push_str(r#"","end":""#);
        clock.suricata(out);
        let _ = write!(
            out,
            r#"","age":{},"min_ttl":{},"max_ttl":64}}"#,
            rng.below(120),
            rng.range(40, 64)
        );
        if proto == "TCP" {
            out.push_str(
                r#","tcp":{"tcp_flags":"1b","syn":true,"fin":true,"psh":true,"ack":true}"#,
            );
        }
    }
    out.push_str("}}\n");
}
