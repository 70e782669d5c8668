//! AWS WAF (v2) web ACL traffic logs: one JSON object per line and request, with the
//! terminating rule and action, the rule groups evaluated, and the request as WAF saw it.
//!
//! Request headers are kept under `aws.waf.request.headers.<lower-case name>` except that
//! credentials (`Authorization`, `Cookie`, API keys) are replaced by `REDACTED`: WAF logs
//! them verbatim unless the web ACL's logging configuration redacts them, and a SIEM is
//! the wrong place for live session tokens. Top-level fields this module does not map
//! are kept as they came under `aws.waf.<snake_case name>`.


use serde_json::{Map, Value as J};

use crate::driver::{
    LineContext, RecordError,
};
use crate::enrich::DomainField;
use crate::event::{Event, Value};
use crate::redact::REDACTED;
use crate::readers::json_lines::{number, text};
use crate::registry::{ContentClue, FirstLine, FormatSpec, KeyClue, Reader};
use crate::util;

/// Top-level keys mapped here; any other key is kept under `aws.waf`.
const MAPPED: &[&str] = &[
    "timestamp",
    "formatVersion",
    "webaclId",
    "terminatingRuleId",
    "terminatingRuleType",
    "action",
    "terminatingRuleMatchDetails",
    "httpSourceName",
    "httpSourceId",
    "ruleGroupList",
    "rateBasedRuleList",
    "nonTerminatingMatchingRules",
    "responseCodeSent",
    "httpRequest",
    "labels",
    "ja3Fingerprint",
    "requestBodySize",
    "clientAsn",
];

/// Request headers whose values are credentials.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-amz-security-token",
];




/// `requestBodySize` -> `request_body_size`, `requestBodySizeInspectedByWAF` ->
/// `request_body_size_inspected_by_waf`, for keeping unmapped fields.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else if c == '-' || c == '.' {
            out.push('_');
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

/// The parts of a web ACL ARN,
/// `arn:aws:wafv2:<region>:<account>:<scope>/webacl/<name>/<id>`.
struct WebAcl<'a> {
    region: Option<&'a str>,
    account: Option<&'a str>,
    resource: &'a str,
    name: Option<&'a str>,
}

fn web_acl(arn: &str) -> Option<WebAcl<'_>> {
    let mut parts = arn.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    let _partition = parts.next()?;
    let _service = parts.next()?;
    let region = parts.next().filter(|r| !r.is_empty());
    let account = parts.next()?;
    // Some exports drop the account: `arn:aws:wafv2:us-east-1:global/webacl/...`.
    let (account, resource) = match parts.next() {
        Some(resource) => (Some(account).filter(|a| !a.is_empty()), resource),
        None => (None, account),
    };
    let mut segments = resource.split('/');
    let name = match (segments.next(), segments.next(), segments.next()) {
        (Some(_scope), Some("webacl"), Some(name)) if !name.is_empty() => Some(name),
        _ => None,
    };
    Some(WebAcl {
        region,
        account,
        resource,
        name,
    })
}

/// The rule that ended evaluation inside the rule group WAF names as terminating:
/// `(rule group id, rule id)`.
fn group_terminating_rule(groups: &[J]) -> Option<(&str, &str)> {
    groups.iter().find_map(|g| {
        let g = g.as_object()?;
        let rule = g.get("terminatingRule")?.as_object()?;
        Some((text(g, "ruleGroupId")?, text(rule, "ruleId")?))
    })
}

/// Sets `url.domain`, `url.port` and the destination from an HTTP `Host` value
/// (`name`, `name:port`, `ip`, `[v6]:port`). A host name is split with the public
/// suffix list (lower-cased, for `destination.domain` too); an IP literal goes to
/// `url.domain` as ECS asks ("the IP address would go to the domain field") and to
/// `destination.ip`.
pub(crate) fn set_http_host(ev: &mut Event, host: &str, cx: &LineContext<'_>) {
    let Some((name, port)) = split_host_port(host.trim()) else {
        return;
    };
    ev.set_opt("url.port", port);
    match util::canonical_ip(name) {
        Some(ip) => {
            ev.set("url.domain", ip.clone());
            if !ev.contains("destination.ip") {
                ev.set("destination.address", ip.clone());
                ev.set("destination.ip", ip.clone());
            }
            ev.push_unique("related.ip", ip);
        }
        None => {
            cx.enricher.domain(ev, DomainField::Url, name);
            cx.enricher.domain(ev, DomainField::Destination, name);
        }
    }
}

/// `host:port` / `[v6]:port` / bare host -> (host, port); `None` for an empty host.
fn split_host_port(host: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = host.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        return Some((ip, after.strip_prefix(':').and_then(|p| p.parse().ok())));
    }
    let (name, port) = match host.rsplit_once(':') {
        // One colon: name:port. More: a bare IPv6 address.
        Some((n, p)) if !n.contains(':') => (n, p.parse().ok()),
        _ => (host, None),
    };
    let name = name.trim_end_matches('.');
    (!name.is_empty()).then_some((name, port))
}

/// Maps `httpRequest`: client, URL, HTTP and headers.
fn map_request(ev: &mut Event, req: &Map<String, J>, cx: &LineContext<'_>) {
    if let Some(raw) = text(req, "clientIp") {
        match util::canonical_ip(raw) {
            Some(ip) => {
                ev.set_opt("network.type", util::ip_version(&ip));
                ev.set("source.address", ip.clone());
                ev.set("source.ip", ip.clone());
                ev.push_unique("related.ip", ip);
            }
            None => ev.set("source.address", raw.to_owned()),
        }
    }
    ev.set_str("source.geo.country_iso_code", text(req, "country"));
    ev.set_str("http.request.method", text(req, "httpMethod"));
    ev.set_str("http.request.id", text(req, "requestId"));
    if let Some(v) = text(req, "httpVersion") {
        let version = v.strip_prefix("HTTP/").unwrap_or(v);
        ev.set("http.version", version.to_owned());
        // HTTP/3 runs over QUIC (UDP); earlier versions over TCP.
        ev.set(
            "network.transport",
            if version.starts_with('3') {
                "udp"
            } else {
                "tcp"
            },
        );
        ev.set("network.protocol", "http");
    }

    let mut host: Option<&str> = text(req, "host");
    let mut body_bytes: Option<u64> = None;
    let mut kept_headers: Vec<(String, String)> = Vec::new();
    if let Some(J::Array(headers)) = req.get("headers") {
        for header in headers {
            let Some(h) = header.as_object() else {
                continue;
            };
            let (Some(name), Some(value)) = (text(h, "name"), h.get("value").and_then(J::as_str))
            else {
                continue;
            };
            let lower = name.to_ascii_lowercase();
            match lower.as_str() {
                "host" if host.is_none() => host = util::field(value),
                "user-agent" => cx.enricher.user_agent(ev, value),
                "referer" => ev.set_str("http.request.referrer", Some(value)),
                "content-type" => ev.set_str("http.request.mime_type", Some(value)),
                "content-length" => body_bytes = util::uint(value),
                "x-forwarded-for" => crate::enrich::forwarded_for(ev, value),
                _ => {}
            }
            let kept = if SECRET_HEADERS.contains(&lower.as_str()) {
                REDACTED
            } else {
                value
            };
            // Repeated headers are joined, as HTTP defines for list-valued headers.
            match kept_headers.iter_mut().find(|(n, _)| *n == lower) {
                Some((_, previous)) => {
                    previous.push_str(", ");
                    previous.push_str(kept);
                }
                None => kept_headers.push((lower, kept.to_owned())),
            }
        }
    }
    for (name, value) in kept_headers {
        ev.set_dyn("aws.waf.request.headers", &name, value);
    }
    ev.set_opt("http.request.body.bytes", body_bytes);

    let path = text(req, "uri");
    let query = text(req, "args");
    if let Some(p) = path {
        ev.set("url.path", p.to_owned());
        ev.set(
            "url.original",
            match query {
                Some(q) => format!("{p}?{q}"),
                None => p.to_owned(),
            },
        );
    }
    ev.set_str("url.query", query);
    ev.set_str("url.fragment", text(req, "fragment"));
    let scheme = text(req, "scheme");
    ev.set_str("url.scheme", scheme);
    if let Some(h) = host {
        set_http_host(ev, h, cx);
        if let (Some(s), Some(p)) = (scheme, path) {
            let mut full = format!("{s}://{}{p}", h.to_ascii_lowercase());
            if let Some(q) = query {
                full.push('?');
                full.push_str(q);
            }
            ev.set("url.full", full);
        }
    }
}

/// Maps one WAF log record to ECS.
fn map_record(map: &Map<String, J>, cx: &LineContext<'_>) -> Result<Event, RecordError> {
    let Some(raw_ts) = map.get("timestamp") else {
        return Err(RecordError::Other(
            "not a WAF log record (no timestamp)".into(),
        ));
    };
    let ts = match raw_ts {
        J::Number(n) => n.as_i64().and_then(util::epoch_millis),
        J::String(s) => s.trim().parse::<i64>().ok().and_then(util::epoch_millis),
        _ => None,
    }
    .ok_or_else(|| RecordError::invalid("timestamp", &raw_ts.to_string()))?;
    let mut ev = Event::new();
    ev.set("@timestamp", ts);
    util::set_category(&mut ev, &["web", "network"]);
    let mut types = vec![Value::Static("access")];
    util::set_aws_service(&mut ev, "waf");
    ev.set("observer.vendor", "AWS");
    ev.set("observer.product", "WAF");
    ev.set("observer.type", "waf");

    if let Some(action) = text(map, "action") {
        ev.set("event.action", action.to_owned());
        // CAPTCHA and CHALLENGE are only logged as the terminating action when the
        // request had no valid token, so it was not forwarded.
        let allowed = action.eq_ignore_ascii_case("ALLOW");
        types.push(Value::Static(if allowed { "allowed" } else { "denied" }));
        util::set_outcome(&mut ev, allowed);
    }
    ev.set("event.type", Value::Arr(types));

    let acl = text(map, "webaclId").and_then(web_acl);
    if let Some(arn) = text(map, "webaclId") {
        ev.set("aws.waf.arn", arn.to_owned());
    }
    if let Some(acl) = &acl {
        ev.set_str("cloud.region", acl.region);
        ev.set_str("cloud.account.id", acl.account);
        ev.set("aws.waf.id", acl.resource.to_owned());
        ev.set_str("aws.waf.web_acl.name", acl.name);
    }

    let groups: &[J] = match map.get("ruleGroupList") {
        Some(J::Array(g)) => g,
        _ => &[],
    };
    if let Some(rule) = text(map, "terminatingRuleId") {
        ev.set("rule.id", rule.to_owned());
        let rule_type = text(map, "terminatingRuleType");
        let in_group = matches!(rule_type, Some("GROUP" | "MANAGED_RULE_GROUP"))
            .then(|| group_terminating_rule(groups))
            .flatten();
        match in_group {
            Some((group, inner)) => {
                ev.set("rule.name", inner.to_owned());
                ev.set("rule.ruleset", group.to_owned());
            }
            None => {
                ev.set("rule.name", rule.to_owned());
                ev.set_str("rule.ruleset", acl.as_ref().and_then(|a| a.name));
            }
        }
    }
    ev.set_str(
        "aws.waf.terminating_rule_type",
        text(map, "terminatingRuleType"),
    );
    if let Some(J::Array(details)) = map.get("terminatingRuleMatchDetails")
        && !details.is_empty()
    {
        let mut reasons: Vec<&str> = details
            .iter()
            .filter_map(|d| d.get("conditionType").and_then(J::as_str))
            .collect();
        reasons.dedup();
        if !reasons.is_empty() {
            ev.set("event.reason", reasons.join(", "));
        }
        ev.set(
            "aws.waf.terminating_rule_match_details",
            J::Array(details.clone()),
        );
    }
    if !groups.is_empty() {
        ev.set("aws.waf.rule_group_list", J::Array(groups.to_vec()));
    }
    for (key, path) in [
        (
            "nonTerminatingMatchingRules",
            "aws.waf.non_terminating_matching_rules",
        ),
        ("rateBasedRuleList", "aws.waf.rate_based_rule_list"),
    ] {
        if let Some(J::Array(items)) = map.get(key)
            && !items.is_empty()
        {
            ev.set(path, J::Array(items.clone()));
        }
    }
    if let Some(J::Array(labels)) = map.get("labels") {
        let names: Vec<Value> = labels
            .iter()
            .filter_map(|l| l.get("name").and_then(J::as_str))
            .map(|n| Value::Str(n.to_owned()))
            .collect();
        if !names.is_empty() {
            ev.set("aws.waf.labels", Value::Arr(names));
        }
    }
    ev.set_str("aws.waf.source.name", text(map, "httpSourceName"));
    ev.set_str("aws.waf.source.id", text(map, "httpSourceId"));
    match map.get("formatVersion") {
        Some(J::Number(n)) => ev.set("aws.waf.format_version", n.to_string()),
        Some(J::String(s)) => ev.set_str("aws.waf.format_version", Some(s)),
        _ => {}
    }
    ev.set_opt(
        "http.response.status_code",
        number(map.get("responseCodeSent")),
    );
    ev.set_str("tls.client.ja3", text(map, "ja3Fingerprint"));
    ev.set_opt("source.as.number", number(map.get("clientAsn")));

    if let Some(J::Object(req)) = map.get("httpRequest") {
        map_request(&mut ev, req, cx);
    }
    // WAF's own measure of the body wins over the client's Content-Length claim.
    ev.set_opt(
        "http.request.body.bytes",
        number(map.get("requestBodySize")),
    );

    for (key, value) in map {
        if MAPPED.contains(&key.as_str()) || value.is_null() {
            continue;
        }
        if let J::String(s) = value
            && util::field(s).is_none()
        {
            continue;
        }
        ev.set_dyn("aws.waf", &snake_case(key), value.clone());
    }
    Ok(ev)
}

/// AWS WAF web ACL traffic logs, one JSON record per line.
pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "waf",
    dataset: "aws.waf",
    example_key: "AWSLogs/123456789012/WAFLogs/us-east-1/prod-web-acl/2024/03/15/00/05/123456789012_waflogs_us-east-1_prod-web-acl_20240315T0005Z_a1b2c3d4.log.gz",
    key_clues: &[KeyClue {
        rank: 60,
        layout: "aws-waf-logs-",
        matches: |k| {
            k.key.contains("aws-waf-logs-") || k.lower.contains("/wafv2/") || k.lower.contains("/waflogs/")
        },
    }],
    content_clues: &[ContentClue {
        rank: 110,
        what: "WAF record",
        first_line: FirstLine::Json,
        matches: |line| line.contains("\"terminatingRuleId\"") || line.contains("\"httpSourceName\""),
    }],
    skip: None,
    options: &[],
    reader: Reader::JsonLines(|map, cx| map_record(&map, cx)),
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{Format, assert_fields};

    sample_test_helpers!(Format::Waf, "waf.log");

    #[test]
    fn allowed_request_by_the_default_action() {
        let e = sample(0);
        assert_fields(
            &e,
            json!({
                "@timestamp": "2024-06-16T08:00:01.123Z",
                "event": {
                    "action": "ALLOW",
                    "outcome": "success",
                    "type": ["access", "allowed"],
                    "dataset": "aws.waf",
                },
                "cloud": {"account": {"id": "123456789012"}, "region": "eu-west-1"},
                "aws": {
                    "waf": {
                        "web_acl": {"name": "shop-web-acl"},
                        "labels": [
                            "awswaf:clientip:geo:country:FR",
                            "awswaf:clientip:geo:region:FR-IDF",
                        ],
                        "request": {"headers": {"accept": "text/html"}},
                        "source": {"name": "ALB"},
                        "format_version": "1",
                    },
                },
                "rule": {
                    "id": "Default_Action",
                    "name": "Default_Action",
                    "ruleset": "shop-web-acl",
                },
                "source": {"ip": "198.51.100.23", "geo": {"country_iso_code": "FR"}},
                "http": {
                    "request": {
                        "method": "GET",
                        "id": "1-666e9c81-0a1b2c3d4e5f60718293a4b5",
                        "referrer": "https://www.example.com/",
                    },
                    "version": "2.0",
                },
                "url": {
                    "path": "/products/42",
                    "query": "color=blue",
                    "original": "/products/42?color=blue",
                    "domain": "shop.example.com",
                },
                "destination": {"domain": "shop.example.com", "registered_domain": "example.com"},
                "user_agent": {"name": "Chrome"},
                "network": {"protocol": "http", "transport": "tcp"},
            }),
        );
        assert!(e["aws"]["waf"].get("request_headers_inserted").is_none());
    }

    #[test]
    fn blocked_sqli_with_match_details_and_redacted_cookie() {
        let e = sample(1);
        assert_fields(
            &e,
            json!({
                "event": {
                    "action": "BLOCK",
                    "outcome": "failure",
                    "type": ["access", "denied"],
                    "reason": "SQL_INJECTION",
                },
                "rule": {"id": "block-sqli-query"},
                "http": {"response": {"status_code": 403}},
                "aws": {
                    "waf": {
                        "terminating_rule_match_details": {"0": {"location": "QUERY_STRING"}},
                        "request": {"headers": {"cookie": "REDACTED"}},
                    },
                },
            }),
        );
        assert!(!e.to_string().contains("fake-session-token"));
    }

    #[test]
    fn managed_rule_group_names_the_inner_rule() {
        let e = sample(2);
        assert_fields(
            &e,
            json!({
                "rule": {
                    "id": "AWS-AWSManagedRulesCommonRuleSet",
                    "name": "SizeRestrictions_BODY",
                    "ruleset": "AWS#AWSManagedRulesCommonRuleSet",
                },
                "cloud": {"region": "us-east-1"},
                "source": {"ip": "2001:db8:1234:a100:8d6e:3477:df66:f105"},
                "network": {"type": "ipv6"},
                "http": {
                    "request": {"body": {"bytes": 10_485_760}, "mime_type": "application/json"},
                },
                "aws": {
                    "waf": {
                        "request_body_size_inspected_by_waf": 8192,
                        "rule_group_list": {
                            "0": {"terminatingRule": {"ruleId": "SizeRestrictions_BODY"}},
                        },
                    },
                },
            }),
        );
    }

    #[test]
    fn captcha_and_challenge_are_denied() {
        let captcha = sample(3);
        assert_eq!(captcha["event"]["action"], "CAPTCHA");
        assert_eq!(captcha["event"]["type"], json!(["access", "denied"]));
        assert_eq!(
            captcha["aws"]["waf"]["captcha_response"]["failureReason"],
            "TOKEN_MISSING"
        );
        let challenge = sample(6);
        assert_eq!(challenge["event"]["action"], "CHALLENGE");
        assert_eq!(challenge["event"]["outcome"], "failure");
        // A Host header with an IP literal: ECS puts the IP in url.domain.
        assert_eq!(challenge["url"]["domain"], "10.0.1.20");
        assert_eq!(challenge["destination"]["ip"], "10.0.1.20");
        assert!(challenge["url"].get("ip").is_none());
        assert!(
            challenge
                .get("destination")
                .unwrap()
                .get("domain")
                .is_none()
        );
    }

    #[test]
    fn rate_based_block_with_port_forwarded_for_and_redacted_authorization() {
        let e = sample(4);
        assert_fields(
            &e,
            json!({
                "aws": {
                    "waf": {
                        "terminating_rule_type": "RATE_BASED",
                        "rate_based_rule_list": {"0": {"limitValue": "192.0.2.99"}},
                        "request": {"headers": {"authorization": "REDACTED"}},
                    },
                },
                "url": {"domain": "api.example.com", "port": 8443},
                "network": {"forwarded_ip": "198.51.100.200"},
                "related": {"ip": ["192.0.2.99", "198.51.100.200"]},
            }),
        );
        assert!(!e.to_string().contains("fake-token-for-tests"));
    }

    #[test]
    fn newer_fields_scheme_host_ja3_and_unknown_country() {
        let e = sample(5);
        assert_eq!(
            e["url"]["full"],
            "https://abcde12345.execute-api.eu-west-1.amazonaws.com/prod/health"
        );
        assert_eq!(
            e["tls"]["client"]["ja3"],
            "0123456789abcdef0123456789abcdef"
        );
        assert_eq!(
            e["aws"]["waf"]["ja4_fingerprint"],
            "t13d1516h2_8daaf6152771_02713d6af862"
        );
        assert!(e["source"].get("geo").is_none());
        assert_eq!(
            e["aws"]["waf"]["non_terminating_matching_rules"][0]["ruleId"],
            "count-suspicious-ua"
        );
    }

    #[test]
    fn web_acl_arns() {
        let acl = super::web_acl(
            "arn:aws:wafv2:ap-southeast-2:EXAMPLE12345:regional/webacl/STMTest/1EXAMPLE",
        )
        .unwrap();
        assert_eq!(acl.region, Some("ap-southeast-2"));
        assert_eq!(acl.account, Some("EXAMPLE12345"));
        assert_eq!(acl.name, Some("STMTest"));
        // An ARN without its account field still gives region and name.
        let acl = super::web_acl("arn:aws:wafv2:us-east-1:global/webacl/ACME/41f0e583").unwrap();
        assert_eq!((acl.region, acl.account), (Some("us-east-1"), None));
        assert_eq!(acl.name, Some("ACME"));
        assert!(super::web_acl("not an arn").is_none());
        assert_eq!(super::snake_case("formatVersion"), "format_version");
        assert_eq!(
            super::snake_case("cfDistributionTenantId"),
            "cf_distribution_tenant_id"
        );
    }

    #[test]
    fn repeated_headers_are_joined() {
        let line = r#"{"timestamp":1718524801123,"action":"ALLOW","httpRequest":{"clientIp":"192.0.2.1","headers":[{"name":"Accept","value":"a"},{"name":"accept","value":"b"},{"name":"X-Api-Key","value":"k"},{"name":"Empty"},{"name":3,"value":"x"}]}}"#;
        let (events, stats) = run(line);
        assert_eq!(stats.malformed, 0);
        let headers = &events[0]["aws"]["waf"]["request"]["headers"];
        assert_eq!(headers["accept"], "a, b");
        assert_eq!(headers["x-api-key"], "REDACTED");
        assert!(headers.get("empty").is_none());
    }

    #[test]
    fn wrong_shapes_are_forwarded_raw() {
        let lines = [
            r#"{"formatVersion":1,"action":"ALLOW"}"#,
            r#"{"timestamp":"yesterday","action":"ALLOW"}"#,
            r#"{"timestamp":1e300}"#,
            r#"[{"timestamp":1}]"#,
            r#"{"timestamp":1718524801123,"httpRequest":{"clientIp":"#,
        ];
        crate::each_line_malformed(run, &lines);
        // Odd member types inside a record with a timestamp do not fail it.
        let (events, stats) = run(
            r#"{"timestamp":1718524801123,"webaclId":5,"httpRequest":{"headers":"x","clientIp":"nope"},"labels":[1,{"name":2}],"ruleGroupList":{},"terminatingRuleMatchDetails":[null]}"#,
        );
        assert_eq!(stats.malformed, 0);
        assert_eq!(events[0]["source"]["address"], "nope");
        assert!(events[0]["source"].get("ip").is_none());
    }

    #[test]
    fn sample_file_parses_cleanly() {
        let (events, stats) = run(SAMPLE);
        assert_eq!((stats.events, stats.malformed), (7, 0));
        assert!(events.iter().all(|e| e["@timestamp"].is_string()));
    }
}
