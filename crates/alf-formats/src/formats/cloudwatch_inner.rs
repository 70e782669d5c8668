//! The message inside a CloudWatch Logs log event, mapped by the log group's naming
//! convention first (`/aws/lambda/<function>`, `API-Gateway-Execution-Logs_<id>/<stage>`,
//! `/aws/eks/<cluster>/cluster`, `/aws/rds/...`, `/aws/route53/<zone>`), then by its
//! content.
//!
//! Records of formats this crate parses from S3 (CloudTrail, VPC flow logs, Route 53
//! Resolver query logs, WAF, Network Firewall) are handed to those formats' own record
//! mappers, so they map exactly as they do from S3, with that format's
//! `event.dataset`. A message that looks like one of them but does not parse is an
//! error (forwarded raw by the caller), not a generic event: the content checks are
//! specific enough that a miss means a broken record.
//!
//! Anything else: a JSON object is kept as structured fields under `aws.<service>` for
//! `/aws/<service>/...` groups (`aws.application` otherwise), with `message` taken from
//! its `message`/`msg` member when present; text is kept as `message`.

use serde_json::Value as J;

use crate::Format;
use crate::driver::{LineContext, ObjectParse, RecordError};
use crate::event::{Event, Value};
use crate::formats::{apigateway, eks_audit, lambda, rds, route53_public};
use crate::util;

/// Where a message was logged: from the subscription envelope or the export key.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Origin<'a> {
    pub(crate) group: Option<&'a str>,
    pub(crate) stream: Option<&'a str>,
}

/// `aws.*` namespaces owned by other mappings: a `/aws/<service>/` group of one of
/// these names keeps its JSON under `aws.application` instead of clobbering them.
const RESERVED_NAMESPACES: &[&str] = &["s3", "cloudwatch", "cloudtrail"];

/// Maps one message.
pub(crate) fn map_message(
    cx: &ObjectParse<'_>,
    origin: &Origin<'_>,
    message: &str,
) -> Result<Event, RecordError> {
    let group = origin.group.unwrap_or("");
    let trimmed = message.trim_end_matches(['\n', '\r']);
    let json = if trimmed.trim_start().starts_with('{') {
        serde_json::from_str::<J>(trimmed).ok()
    } else {
        None
    };

    if let Some(function) = group.strip_prefix("/aws/lambda/") {
        return Ok(lambda::map(Some(function), trimmed, json));
    }
    if let Some(rest) = group.strip_prefix("API-Gateway-Execution-Logs_") {
        return Ok(apigateway::map_execution(rest, trimmed));
    }
    if let Some(cluster) = eks_cluster(group) {
        return match json {
            Some(J::Object(m)) if eks_audit::is_audit_event(&m) => {
                eks_audit::map(cx, Some(cluster), m)
            }
            _ => Ok(eks_audit::map_control_plane(
                cluster,
                origin.stream,
                trimmed,
            )),
        };
    }
    if group.starts_with("/aws/rds/") {
        return Ok(rds::map(group, origin.stream, trimmed));
    }
    if let Some(zone) = group.strip_prefix("/aws/route53/")
        && !trimmed.starts_with('{')
    {
        return route53_public::map(cx, Some(zone), trimmed);
    }

    match json {
        Some(J::Object(m)) => by_json_content(cx, origin, trimmed, m),
        Some(other) => Ok(generic_json(group, trimmed, other)),
        None => by_text_content(cx, origin, trimmed),
    }
}

fn eks_cluster(group: &str) -> Option<&str> {
    group.strip_prefix("/aws/eks/")?.strip_suffix("/cluster")
}

fn by_json_content(
    cx: &ObjectParse<'_>,
    origin: &Origin<'_>,
    text: &str,
    m: serde_json::Map<String, J>,
) -> Result<Event, RecordError> {
    let has = |k: &str| m.contains_key(k);
    if has("eventVersion") && has("eventSource") {
        return known_format(cx, Format::CloudTrail, text);
    }
    if has("terminatingRuleId") || has("httpSourceName") {
        return known_format(cx, Format::Waf, text);
    }
    if has("firewall_name") && has("event") {
        return known_format(cx, Format::NetworkFirewall, text);
    }
    if has("query_name") && has("query_type") {
        return known_format(cx, Format::Route53Resolver, text);
    }
    if eks_audit::is_audit_event(&m) {
        return eks_audit::map(cx, None, m);
    }
    if apigateway::is_access_log(&m) {
        return Ok(apigateway::map_access(cx, m));
    }
    if lambda::is_lambda_json(&m) {
        return Ok(lambda::map(None, text, Some(J::Object(m))));
    }
    Ok(generic_json(origin.group.unwrap_or(""), text, J::Object(m)))
}

fn by_text_content(
    cx: &ObjectParse<'_>,
    origin: &Origin<'_>,
    text: &str,
) -> Result<Event, RecordError> {
    if lambda::is_platform_line(text) || origin.stream.is_some_and(lambda::is_lambda_stream) {
        return Ok(lambda::map(None, text, None));
    }
    if is_vpc_flow_record(text) {
        return known_format(cx, Format::VpcFlow, text);
    }
    if route53_public::looks_like(text) {
        return route53_public::map(cx, None, text);
    }
    if let Some(ev) = apigateway::map_clf_access(cx, text) {
        return Ok(ev);
    }
    let mut ev = Event::new();
    ev.set("message", text.to_owned());
    Ok(ev)
}

/// A default-format (v2) VPC flow log record: 14 fields, version, 12-digit account id
/// and an interface id.
fn is_vpc_flow_record(text: &str) -> bool {
    let fields: Vec<&str> = text.split(' ').collect();
    fields.len() == 14
        && fields[0].bytes().all(|b| b.is_ascii_digit())
        && fields[1].len() == 12
        && fields[1].bytes().all(|b| b.is_ascii_digit())
        && (fields[2].starts_with("eni-") || fields[2] == "-")
}

/// Parses one record of a format this crate reads from S3 with that format's own
/// record parser, and labels it with that format's dataset.
fn known_format(cx: &ObjectParse<'_>, format: Format, text: &str) -> Result<Event, RecordError> {
    let lcx = LineContext {
        enricher: cx.enricher,
        options: cx.options,
        object: cx.object,
        line: cx.stats.records,
    };
    let mut out = Vec::with_capacity(1);
    let mapped = match format
        .record_parser(cx.object, cx.options)
        .parse(text, &lcx, &mut out)
    {
        Ok(true) if !out.is_empty() => Ok(out.swap_remove(0)),
        Ok(_) => Err(RecordError::Other("header line, not a record".into())),
        Err(e) => Err(e),
    };
    match mapped {
        Ok(mut ev) => {
            ev.set("event.dataset", format.dataset());
            Ok(ev)
        }
        Err(e) => Err(RecordError::Other(format!("{} record: {e}", format.name()))),
    }
}

/// `aws.<service>` for `/aws/<service>/...` groups, `aws.application` otherwise.
pub(crate) fn namespace(group: &str) -> String {
    let service = group
        .strip_prefix("/aws/")
        .and_then(|rest| rest.split('/').next())
        .filter(|s| !s.is_empty())
        .map(util::field_name);
    match service {
        Some(s) if !RESERVED_NAMESPACES.contains(&s.as_str()) => s,
        _ => "application".to_owned(),
    }
}

/// A JSON message nobody maps: kept as structured fields.
fn generic_json(group: &str, text: &str, value: J) -> Event {
    let mut ev = Event::new();
    let message = ["message", "msg", "Message"]
        .iter()
        .find_map(|k| value.get(*k).and_then(J::as_str))
        .unwrap_or(text);
    ev.set("message", message.to_owned());
    if let Some(level) = ["level", "severity", "logLevel", "log_level"]
        .iter()
        .find_map(|k| value.get(*k).and_then(J::as_str))
    {
        ev.set("log.level", level.to_ascii_lowercase());
    }
    let time = ["timestamp", "time", "@timestamp"]
        .iter()
        .find_map(|k| value.get(*k).and_then(J::as_str))
        .and_then(util::iso_timestamp);
    ev.set_opt("@timestamp", time);
    ev.set_dyn("aws", &namespace(group), value);
    ev
}

/// Lower-cases a log level (`INFO` -> `info`), as ECS `log.level` expects.
pub(crate) fn level(raw: &str) -> Value {
    Value::Str(raw.trim_matches(['[', ']']).to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_from_group_names() {
        assert_eq!(namespace("/aws/ecs/containerinsights/x"), "ecs");
        assert_eq!(namespace("/aws/codebuild/proj"), "codebuild");
        assert_eq!(namespace("/aws/s3/x"), "application");
        assert_eq!(namespace("my-app"), "application");
    }

    #[test]
    fn vpc_flow_records_are_recognised() {
        assert!(is_vpc_flow_record(
            "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK"
        ));
        assert!(!is_vpc_flow_record("2 hello world"));
    }
}
