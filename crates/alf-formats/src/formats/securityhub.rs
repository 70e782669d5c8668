//! AWS Security Hub findings in the AWS Security Finding Format (ASFF): delivered to S3
//! by Amazon Data Firehose from EventBridge (`"detail-type": "Security Hub Findings -
//! Imported"`, findings under `detail.findings`), as a `{"Findings":[...]}` API export,
//! or one finding per line. One event per finding.
//!
//! ECS: `event.kind: alert`, `@timestamp` = `UpdatedAt`, `event.created`/`start`/`end`
//! from `CreatedAt`/`FirstObservedAt`/`LastObservedAt`, `message` and `rule.name` = the
//! title, `rule.id` = the generator, `event.severity` = the normalized severity,
//! `cloud.account.id`/`region`, `event.outcome` from the compliance status. The
//! finding's id, types, resources, compliance, workflow and record state are kept under
//! `aws.securityhub_findings.*` (snake_case), as is every other member.
//!
//! The finding `Id` is *not* `event.id`: Security Hub sends the same id again each time
//! a finding is updated, and an intake that drops duplicate ids would drop the update.


use serde_json::Value as J;

use crate::driver::RecordError;
use crate::event::{Event, Value};
use crate::readers::json_records::{JsonMap, snake_case, snake_keys, take_string, take_string_into};
use crate::registry::{ContentClue, FirstLine, FormatSpec, Reader, has_json_keys};
use crate::util;

/// ASFF findings: Security Hub exports, or EventBridge batches (see
/// [`eventbridge`](super::eventbridge), which reads both).
pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "securityhub",
    dataset: "aws.securityhub_findings",
    example_key: "firehose/securityhub/2024/03/15/00/findings-to-s3-1-2024-03-15-00-05-00-2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
    key_clues: &[],
    content_clues: &[ContentClue {
        rank: 5,
        what: "ASFF finding",
        first_line: FirstLine::Json,
        matches: |line| has_json_keys(line, &["SchemaVersion", "ProductArn"]),
    }],
    skip: None,
    options: &[],
    reader: Reader::Object(super::eventbridge::parse),
};

/// An ASFF finding (not wrapped).
pub(crate) fn is_finding(m: &JsonMap) -> bool {
    m.contains_key("SchemaVersion") && m.contains_key("ProductArn")
}

fn time(f: &mut JsonMap, key: &'static str) -> Result<Option<String>, RecordError> {
    match take_string(f, key) {
        Some(t) => util::iso_timestamp(&t)
            .map(Some)
            .ok_or_else(|| RecordError::invalid(key, &t)),
        None => Ok(None),
    }
}

/// Maps one ASFF finding.
pub(crate) fn map_finding(mut f: JsonMap) -> Result<Event, RecordError> {
    let mut ev = Event::new();
    ev.set("event.kind", "alert");
    ev.set("event.dataset", crate::Format::SecurityHub.dataset());
    ev.set("cloud.service.name", "securityhub");
    let updated = time(&mut f, "UpdatedAt")?;
    let created = time(&mut f, "CreatedAt")?;
    ev.set_opt("@timestamp", updated.clone().or_else(|| created.clone()));
    ev.set_opt("event.created", created);
    ev.set_opt("event.start", time(&mut f, "FirstObservedAt")?);
    ev.set_opt("event.end", time(&mut f, "LastObservedAt")?);
    ev.set_opt("cloud.account.id", take_string(&mut f, "AwsAccountId"));
    ev.set_opt("cloud.region", take_string(&mut f, "Region"));
    let described: [(&str, &[&'static str]); 4] = [
        ("Title", &["message", "rule.name", "aws.securityhub_findings.title"]),
        ("Description", &["rule.description", "aws.securityhub_findings.description"]),
        ("GeneratorId", &["rule.id", "aws.securityhub_findings.generator_id"]),
        ("Id", &["aws.securityhub_findings.id"]),
    ];
    for (key, paths) in described {
        take_string_into(&mut f, key, &mut ev, paths);
    }
    if let Some(J::Object(sev)) = f.remove("Severity") {
        if let Some(n) = sev.get("Normalized").and_then(J::as_i64) {
            ev.set("event.severity", n);
        }
        if let Some(label) = sev.get("Label").and_then(J::as_str) {
            ev.set("aws.securityhub_findings.severity.label", label.to_owned());
        }
        ev.set(
            "aws.securityhub_findings.severity",
            snake_keys(J::Object(sev)),
        );
    }
    if let Some(J::Array(types)) = f.remove("Types") {
        let categories: Vec<Value> = types
            .iter()
            .filter_map(J::as_str)
            .map(|t| Value::Str(t.to_owned()))
            .collect();
        if !categories.is_empty() {
            ev.set("rule.category", categories[0].clone());
        }
        ev.set("aws.securityhub_findings.types", J::Array(types));
    }
    if let Some(J::Object(c)) = f.get("Compliance")
        && let Some(status) = c.get("Status").and_then(J::as_str)
    {
        let outcome = match status {
            "PASSED" => Some("success"),
            "FAILED" => Some("failure"),
            _ => None,
        };
        ev.set_opt("event.outcome", outcome);
        util::set_category(&mut ev, &["configuration"]);
    }
    if !ev.contains("event.category") {
        util::set_category(&mut ev, &["threat"]);
    }
    if let Some(J::Array(resources)) = f.get("Resources") {
        for r in resources {
            if let Some(id) = r.get("Id").and_then(J::as_str) {
                ev.push_unique("related.hosts", id.to_owned());
            }
            if r.get("Type").and_then(J::as_str) == Some("AwsEc2Instance")
                && !ev.contains("cloud.instance.id")
                && let Some(id) = r.get("Id").and_then(J::as_str)
            {
                let instance = id.rsplit('/').next().unwrap_or(id);
                ev.set("cloud.instance.id", instance.to_owned());
            }
        }
    }
    if let Some(J::Object(w)) = f.get("Workflow")
        && let Some(status) = w.get("Status").and_then(J::as_str)
    {
        ev.set(
            "aws.securityhub_findings.workflow.status",
            status.to_owned(),
        );
    }
    let states: [(&str, &[&'static str]); 4] = [
        ("WorkflowState", &["aws.securityhub_findings.workflow_state"]),
        ("RecordState", &["aws.securityhub_findings.record_state"]),
        ("ProductName", &["observer.product", "aws.securityhub_findings.product.name"]),
        ("CompanyName", &["observer.vendor"]),
    ];
    for (key, paths) in states {
        take_string_into(&mut f, key, &mut ev, paths);
    }
    for (key, value) in f {
        if !value.is_null() {
            ev.set_dyn(
                "aws.securityhub_findings",
                &snake_case(&key),
                snake_keys(value),
            );
        }
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use super::*;

    use crate::assert_fields;

    #[test]
    fn asff_finding() {
        let text = r#"{"SchemaVersion":"2018-10-08","Id":"arn:aws:securityhub:us-east-1:123456789012:subscription/aws-foundational-security-best-practices/v/1.0.0/S3.8/finding/0a1b2c3d","ProductArn":"arn:aws:securityhub:us-east-1::product/aws/securityhub","ProductName":"Security Hub","CompanyName":"AWS","Region":"us-east-1","GeneratorId":"aws-foundational-security-best-practices/v/1.0.0/S3.8","AwsAccountId":"123456789012","Types":["Software and Configuration Checks/Industry and Regulatory Standards/AWS-Foundational-Security-Best-Practices"],"FirstObservedAt":"2024-04-30T10:00:00.000Z","LastObservedAt":"2024-05-01T11:59:00.000Z","CreatedAt":"2024-04-30T10:00:00.000Z","UpdatedAt":"2024-05-01T12:00:00.000Z","Severity":{"Label":"HIGH","Normalized":70,"Original":"HIGH"},"Title":"S3 general purpose buckets should block public access","Description":"This control checks whether S3 buckets have bucket-level public access blocks applied.","Resources":[{"Type":"AwsS3Bucket","Id":"arn:aws:s3:::public-assets","Partition":"aws","Region":"us-east-1"}],"Compliance":{"Status":"FAILED","SecurityControlId":"S3.8"},"WorkflowState":"NEW","Workflow":{"Status":"NEW"},"RecordState":"ACTIVE"}"#;
        let m = crate::readers::json_lines::json_object_line(text).unwrap();
        assert!(is_finding(&m));
        let e = map_finding(m).unwrap().to_json();
        assert_fields(
            &e,
            json!({
                "@timestamp": "2024-05-01T12:00:00Z",
                "event": {"kind": "alert", "severity": 70, "outcome": "failure"},
                "message": "S3 general purpose buckets should block public access",
                "cloud": {"account": {"id": "123456789012"}},
                "aws": {
                    "securityhub_findings": {
                        "severity": {"label": "HIGH"},
                        "compliance": {"security_control_id": "S3.8"},
                        "workflow": {"status": "NEW"},
                        "resources": {"0": {"type": "AwsS3Bucket"}},
                    },
                },
            }),
        );
        assert!(e["event"]["id"].is_null());
    }
}
