//! Amazon EKS control plane logs (group `/aws/eks/<cluster>/cluster`).
//!
//! The `kube-apiserver-audit-*` streams hold Kubernetes audit events
//! (`audit.k8s.io/v1` `Event`): who (`user.username`, `uid`, `groups`), from where
//! (`sourceIPs`, `userAgent`), did what (`verb` on `objectRef`), with which result
//! (`responseStatus.code`). They map to `user.*`, `source.ip`, `event.action`,
//! `orchestrator.*`, `http.response.status_code` and `event.outcome`; the whole event is
//! kept under `kubernetes.audit` with snake_case keys. Other control-plane streams (API
//! server, authenticator, controller manager, scheduler) are messages with the component
//! taken from the stream name.

use serde_json::Value as J;

use crate::driver::{ObjectParse, RecordError};
use crate::event::{Event, Value};
use crate::readers::json_records::{snake_keys, string_list};
use crate::util;

/// A Kubernetes audit event.
pub(crate) fn is_audit_event(m: &serde_json::Map<String, J>) -> bool {
    m.get("kind").and_then(J::as_str) == Some("Event")
        && m.get("apiVersion")
            .and_then(J::as_str)
            .is_some_and(|v| v.starts_with("audit.k8s.io/"))
}

fn str_at<'a>(v: &'a J, path: &[&str]) -> Option<&'a str> {
    let mut v = v;
    for p in path {
        v = v.get(*p)?;
    }
    util::present(v.as_str())
}

/// Maps an audit event.
pub(crate) fn map(
    cx: &ObjectParse<'_>,
    cluster: Option<&str>,
    m: serde_json::Map<String, J>,
) -> Result<Event, RecordError> {
    let audit = J::Object(m);
    let mut ev = Event::new();
    ev.set("cloud.service.name", "eks");
    ev.set("orchestrator.type", "kubernetes");
    ev.set_opt("orchestrator.cluster.name", cluster.map(str::to_owned));
    let time = str_at(&audit, &["requestReceivedTimestamp"])
        .or_else(|| str_at(&audit, &["stageTimestamp"]));
    if let Some(t) = time {
        let ts = util::iso_timestamp(t)
            .ok_or_else(|| RecordError::invalid("requestReceivedTimestamp", t))?;
        ev.set("@timestamp", ts);
    }
    util::set_category(&mut ev, &["web", "iam"]);
    if let Some(verb) = str_at(&audit, &["verb"]) {
        ev.set("event.action", verb.to_owned());
        let kind = match verb {
            "create" => "creation",
            "update" | "patch" => "change",
            "delete" | "deletecollection" => "deletion",
            _ => "access",
        };
        ev.set("event.type", Value::Arr(vec![Value::Static(kind)]));
    }
    util::set_user(&mut ev, str_at(&audit, &["user", "username"]));
    ev.set_str("user.id", str_at(&audit, &["user", "uid"]));
    ev.set_opt(
        "user.group.name",
        string_list(audit.get("user").and_then(|u| u.get("groups"))),
    );
    if let Some(J::Array(ips)) = audit.get("sourceIPs") {
        let ips: Vec<String> = ips
            .iter()
            .filter_map(J::as_str)
            .filter_map(util::canonical_ip)
            .collect();
        if let Some(first) = ips.first() {
            ev.set("source.ip", first.clone());
            ev.set("source.address", first.clone());
        }
        for ip in ips {
            ev.push_unique("related.ip", ip);
        }
    }
    if let Some(ua) = str_at(&audit, &["userAgent"]) {
        cx.enricher.user_agent(&mut ev, ua);
    }
    ev.set_str("url.path", str_at(&audit, &["requestURI"]));
    for (path, member) in [
        ("orchestrator.namespace", "namespace"),
        ("orchestrator.resource.type", "resource"),
        ("orchestrator.resource.name", "name"),
        ("orchestrator.api_version", "apiVersion"),
    ] {
        ev.set_str(path, str_at(&audit, &["objectRef", member]));
    }
    if let Some(code) = audit
        .get("responseStatus")
        .and_then(|r| r.get("code"))
        .and_then(J::as_u64)
        .and_then(|c| u16::try_from(c).ok())
    {
        ev.set("http.response.status_code", code);
        util::set_outcome(&mut ev, code < 400);
    }
    if let Some(reason) = audit
        .get("annotations")
        .and_then(|a| a.get("authorization.k8s.io/reason"))
        .and_then(J::as_str)
    {
        ev.set("event.reason", reason.to_owned());
    }
    let summary = format!(
        "{} {} {}",
        str_at(&audit, &["user", "username"]).unwrap_or("-"),
        str_at(&audit, &["verb"]).unwrap_or("-"),
        str_at(&audit, &["requestURI"]).unwrap_or("-"),
    );
    ev.set("message", summary);
    ev.set("kubernetes.audit", snake_keys(audit));
    Ok(ev)
}

/// A non-audit control-plane line; the component is the stream name without its
/// instance suffix (`kube-apiserver-0123abcd` -> `kube-apiserver`).
pub(crate) fn map_control_plane(cluster: &str, stream: Option<&str>, text: &str) -> Event {
    let mut ev = Event::new();
    ev.set("cloud.service.name", "eks");
    ev.set("orchestrator.type", "kubernetes");
    ev.set("orchestrator.cluster.name", cluster.to_owned());
    if let Some(stream) = stream {
        let component = match stream.rsplit_once('-') {
            Some((name, suffix)) if suffix.bytes().all(|b| b.is_ascii_hexdigit()) => name,
            _ => stream,
        };
        ev.set("service.name", component.to_owned());
    }
    // klog lines: `I0501 12:00:00.000000      10 file.go:123] message`.
    let level = match text.as_bytes().first() {
        Some(b'I') => Some("info"),
        Some(b'W') => Some("warning"),
        Some(b'E') => Some("error"),
        Some(b'F') => Some("critical"),
        _ => None,
    };
    if let Some(level) = level
        && text.as_bytes().get(1).is_some_and(u8::is_ascii_digit)
    {
        ev.set("log.level", level);
    }
    ev.set("message", text.to_owned());
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{assert_fields, cloudwatch_context};
    use serde_json::json;

    #[test]
    fn audit_event_maps_user_verb_resource_and_result() {
        let cx = cloudwatch_context();
        let record = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"4a2d5b9f-1c3e-4f6a-8b7d-9e0f1a2b3c4d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/kube-system/secrets/aws-auth","verb":"get","user":{"username":"kubernetes-admin","uid":"aws-iam-authenticator:123456789012:AIDAEXAMPLE","groups":["system:masters","system:authenticated"]},"sourceIPs":["203.0.113.10"],"userAgent":"kubectl/v1.29.0 (linux/amd64) kubernetes/3f7a50f","objectRef":{"resource":"secrets","namespace":"kube-system","name":"aws-auth","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":403},"requestReceivedTimestamp":"2024-05-01T12:00:00.123456Z","stageTimestamp":"2024-05-01T12:00:00.130000Z","annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":""}}"#;
        let m = crate::readers::json_lines::json_object_line(record).unwrap();
        assert!(is_audit_event(&m));
        let e = map(&cx, Some("prod"), m).unwrap().to_json();
        assert_fields(
            &e,
            json!({
                "user": {"name": "kubernetes-admin", "group": {"name": {"0": "system:masters"}}},
                "source": {"ip": "203.0.113.10"},
                "event": {"action": "get", "outcome": "failure"},
                "http": {"response": {"status_code": 403}},
                "orchestrator": {
                    "resource": {"type": "secrets"},
                    "namespace": "kube-system",
                    "cluster": {"name": "prod"},
                },
                "@timestamp": "2024-05-01T12:00:00.123456Z",
                "kubernetes": {"audit": {"audit_id": "4a2d5b9f-1c3e-4f6a-8b7d-9e0f1a2b3c4d"}},
            }),
        );
    }

    #[test]
    fn control_plane_line() {
        let e = map_control_plane(
            "prod",
            Some("kube-scheduler-0a1b2c3d4e5f"),
            "E0501 12:00:00.000000      10 scheduler.go:100] failed to schedule",
        )
        .to_json();
        assert_eq!(e["service"]["name"], "kube-scheduler");
        assert_eq!(e["log"]["level"], "error");
    }
}
