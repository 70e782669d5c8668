//! AWS WAF (v2) web ACL logs: one JSON object per line, in the layout of AWS's
//! documented examples (terminating rule, rule groups, HTTP request with headers,
//! labels).

use std::fmt::Write;

use super::json;
use crate::clock::Clock;
use crate::pools::{self, USER_AGENTS};
use crate::rng::Rng;

const WEBACL: &str = "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/prod-web-acl/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111";
const COUNTRIES: &[&str] = &[
    "US", "US", "US", "FR", "DE", "GB", "BR", "IN", "JP", "CN", "RU", "NL",
];
const URIS: &[&str] = &[
    "/",
    "/api/v2/orders",
    "/login",
    "/search",
    "/wp-admin/setup-config.php",
    "/.git/config",
    "/index.php",
    "/static/app.js",
];

/// Appends one AWS WAF log record as a JSON line.
pub fn record(rng: &mut Rng, clock: &mut Clock, out: &mut String) {
    clock.tick(rng, 5_000);
    // (action, terminating rule, rule type, label)
    let (action, rule, rule_type, label) = rng.weighted(&[
        (80u32, ("ALLOW", "Default_Action", "REGULAR", "")),
        (
            6,
            (
                "BLOCK",
                "AWS-AWSManagedRulesCommonRuleSet",
                "MANAGED_RULE_GROUP",
                "awswaf:managed:aws:core-rule-set:NoUserAgent_Header",
            ),
        ),
        (
            4,
            (
                "BLOCK",
                "AWS-AWSManagedRulesSQLiRuleSet",
                "MANAGED_RULE_GROUP",
                "awswaf:managed:aws:sql-database:SQLi_QueryArguments",
            ),
        ),
        (
            5,
            (
                "BLOCK",
                "RateLimit-2000",
                "RATE_BASED",
                "awswaf:123456789012:webacl:prod-web-acl:rate-limited",
            ),
        ),
        (
            3,
            (
                "CAPTCHA",
                "BotControl",
                "MANAGED_RULE_GROUP",
                "awswaf:managed:aws:bot-control:signal:automated_browser",
            ),
        ),
        (2, ("COUNT", "Default_Action", "REGULAR", "")),
    ]);
    let sqli = rule.contains("SQLi");
    let _ = write!(
        out,
        r#"{{"timestamp":{},"formatVersion":1,"webaclId":"{WEBACL}","terminatingRuleId":"{rule}","terminatingRuleType":"{rule_type}","action":"{action}","terminatingRuleMatchDetails":["#,
        clock.epoch_millis()
    );
    if sqli {
        out.push_str(
            r#"{"conditionType":"SQL_INJECTION","sensitivityLevel":"HIGH","location":"QUERY_STRING","matchedData":["10","AND","1"]}"#,
        );
    }
    let _ = write!(
        out,
        r#"],"httpSourceName":"ALB","httpSourceId":"123456789012-app/my-loadbalancer/50dc6c495c0c9188","ruleGroupList":["#
    );
    if rule_type == "MANAGED_RULE_GROUP" {
        let _ = write!(
            out,
            r#"{{"ruleGroupId":"AWS#{rule}","terminatingRule":{{"ruleId":"{}","action":"{action}","ruleMatchDetails":null}},"nonTerminatingMatchingRules":[],"excludedRules":null,"customerConfig":null}}"#,
            label.rsplit(':').next().unwrap_or("rule")
        );
    }
    out.push_str(r#"],"rateBasedRuleList":["#);
    if rule_type == "RATE_BASED" {
        out.push_str(
            r#"{"rateBasedRuleId":"arn:aws:wafv2:us-east-1:123456789012:regional/ipset/RateLimit-2000/a1b2c3d4","rateBasedRuleName":"RateLimit-2000","limitKey":"IP","maxRateAllowed":2000,"evaluationWindowSec":"300"}"#,
        );
    }
    out.push_str(r#"],"nonTerminatingMatchingRules":[],"requestHeadersInserted":null,"responseCodeSent":null,"httpRequest":{"clientIp":"#);
    let mut ip = String::with_capacity(40);
    pools::client_ip(rng, &mut ip, 10);
    json::string(out, &ip);
    let _ = write!(out, r#","country":"{}","headers":["#, rng.pick(COUNTRIES));
    out.push_str(r#"{"name":"Host","value":"www.example.com"}"#);
    if !label.contains("NoUserAgent") {
        out.push_str(r#",{"name":"User-Agent","value":"#);
        json::string(out, rng.weighted(USER_AGENTS));
        out.push('}');
    }
    out.push_str(r#",{"name":"Accept","value":"*/*"},{"name":"Accept-Encoding","value":"gzip, deflate, br"}"#);
    if rng.chance(30) {
        let _ = write!(
            out,
            r#",{{"name":"Cookie","value":"session={}"}}"#,
            rng.hex_string(32)
        );
    }
    if rng.chance(10) {
        // A client-sent presigned header: must come out redacted.
        out.push_str(r#",{"name":"X-Amz-Security-Token","value":"IQoJb3JpZ2luX2VjEXAMPLE"#);
        rng.base64ish(out, 24);
        out.push_str("\"}");
    }
    let uri = rng.pick(URIS);
    let args = if sqli {
        "id=10%20AND%201=1".to_owned()
    } else if rng.chance(30) {
        format!("page={}", rng.range(1, 20))
    } else {
        String::new()
    };
    let method = rng.weighted(&[(80u32, "GET"), (18, "POST"), (2, "PUT")]);
    let _ = write!(
        out,
        r#"],"uri":"{uri}","args":"{args}","httpVersion":"HTTP/{}","httpMethod":"{method}","requestId":"1-{:08x}-"#,
        rng.pick(&["1.1", "2.0"]),
        clock.epoch_secs()
    );
    rng.hex(out, 24);
    out.push_str("\"}");
    if !label.is_empty() {
        let _ = write!(out, r#","labels":[{{"name":"{label}"}}]"#);
    }
    if action == "CAPTCHA" {
        out.push_str(
            r#","captchaResponse":{"responseCode":405,"solveTimestamp":0,"failureReason":"TOKEN_MISSING"}"#,
        );
    }
    out.push_str("}\n");
}
