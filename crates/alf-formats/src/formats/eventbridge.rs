//! Amazon EventBridge events delivered to S3 by Amazon Data Firehose: JSON events
//! written back to back (Firehose adds no separator unless told to) or one per line.
//!
//! The envelope (`version`, `id`, `detail-type`, `source`, `account`, `time`, `region`,
//! `resources`, `detail`) is unwrapped and the detail routed to the mapping of its kind:
//!
//! * `Security Hub Findings - *`: each ASFF finding of `detail.findings` is one event
//!   ([`securityhub`](super::securityhub)), dataset `aws.securityhub_findings`;
//! * `GuardDuty Finding`: the GuardDuty mapping, dataset `aws.guardduty`;
//! * `AWS API Call via CloudTrail`: the CloudTrail mapping, dataset `aws.cloudtrail`;
//! * anything else (Inspector, Macie, service events): `@timestamp` = `time`,
//!   `event.id` = the event id, `event.provider` = `source`, `event.action` =
//!   `detail-type`, `cloud.account.id`/`region`, the detail kept under
//!   `aws.eventbridge.detail`; a detail with a title and a severity (Inspector and
//!   Macie findings) is an alert with `message`/`rule.name` from the title.
//!
//! The same reader takes Security Hub's own exports (`{"Findings":[...]}`, or one ASFF
//! finding per line). A value that is none of these is forwarded raw and tagged.

use std::io::BufRead;

use serde_json::Value as J;

use crate::Format;
use crate::driver::{EventSink, LineContext, ORIGINAL_KEEP, ObjectParse, ParseError, RecordError};
use crate::event::Event;
use crate::readers::json_records::{JsonMap, snake_keys, take_object, take_string};
use crate::readers::json_values::{Item, MAX_VALUE, ValueReader};
use crate::formats::{cloudtrail, guardduty, securityhub};
use crate::registry::{ContentClue, FirstLine, FormatSpec, Reader, has_json_keys};
use crate::util;

/// EventBridge events delivered by Firehose (no key marker: recognised by content).
pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "eventbridge",
    dataset: "aws.eventbridge",
    example_key: "firehose/events/2024/03/15/00/events-to-s3-1-2024-03-15-00-05-00-1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
    key_clues: &[],
    content_clues: &[ContentClue {
        // Before CloudTrail's and GuardDuty's clues: a Firehose stream of EventBridge
        // events mixes kinds, and only this reader takes them all.
        rank: 5,
        what: "EventBridge event",
        first_line: FirstLine::Json,
        matches: |line| has_json_keys(line, &["detail-type", "source", "account"]),
    }],
    skip: None,
    options: &[],
    reader: Reader::Object(parse),
};

/// Reads EventBridge events and Security Hub findings (see the module docs): the
/// reader of both formats.
pub fn parse(
    reader: &mut dyn BufRead,
    cx: &mut ObjectParse<'_>,
    sink: &mut dyn EventSink,
) -> Result<(), ParseError> {
    let mut values = ValueReader::new(reader);
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut index = 0u64;
    while let Some((offset, item)) = values.next_item(&mut buf)? {
        cx.stats.bytes = values.pos();
        let raw = || String::from_utf8_lossy(&buf[..buf.len().min(ORIGINAL_KEEP)]).into_owned();
        let reason = match item {
            Item::Json => None,
            Item::Text => Some("not a JSON event".to_owned()),
            Item::Oversized => Some(format!("record larger than {MAX_VALUE} bytes")),
            Item::Truncated => Some("input ended inside a record (truncated object)".to_owned()),
        };
        if let Some(reason) = reason {
            index += 1;
            cx.stats.records += 1;
            cx.emit_malformed(sink, &raw(), index, offset, &reason)?;
            continue;
        }
        let value = match serde_json::from_slice::<J>(&buf) {
            Ok(v) => v,
            Err(e) => {
                index += 1;
                cx.stats.records += 1;
                cx.emit_malformed(
                    sink,
                    &raw(),
                    index,
                    offset,
                    &RecordError::from(e).to_string(),
                )?;
                continue;
            }
        };
        let values: Vec<J> = match value {
            J::Array(items) => items,
            other => vec![other],
        };
        for (position, value) in values.into_iter().enumerate() {
            let mut routed = route(cx, value, cx.options.keep_original);
            if routed.iter().any(|(mapped, raw)| mapped.is_err() && raw.is_none()) {
                // A record failed and its text was not kept: route the value again from
                // its bytes, keeping every record this time. Routing is deterministic,
                // so the records come in the same order.
                let again = match serde_json::from_slice::<J>(&buf) {
                    Ok(J::Array(mut items)) if position < items.len() => items.swap_remove(position),
                    Ok(value) => value,
                    Err(_) => J::Null,
                };
                for ((_, raw), (_, kept)) in routed.iter_mut().zip(route(cx, again, true)) {
                    *raw = raw.take().or(kept);
                }
            }
            for (mapped, raw_record) in routed {
                index += 1;
                cx.stats.records += 1;
                let text = || raw_record.as_ref().map(J::to_string);
                match mapped {
                    Ok(ev) => {
                        let original = if cx.options.keep_original { text() } else { None };
                        cx.emit(sink, ev, index, 0, offset, original.as_deref())?;
                    }
                    Err(e) => {
                        let text = text().unwrap_or_default();
                        cx.emit_malformed(sink, &text, index, offset, &e.to_string())?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Each record of a value, mapped, with the record itself when it was kept.
type Routed = Vec<(Result<Event, RecordError>, Option<J>)>;

/// Maps one top-level value to its events (several for a Security Hub batch). With
/// `keep`, each record is copied before its mapping consumes it, for
/// `event.original`; otherwise only records that were not consumed come back. Copying
/// every record up front was a fifth of the instructions of a Security Hub batch.
fn route(cx: &ObjectParse<'_>, value: J, keep: bool) -> Routed {
    let J::Object(mut m) = value else {
        return vec![(
            Err(RecordError::Other("record is not a JSON object".into())),
            Some(value),
        )];
    };
    let copy = |m: &JsonMap| keep.then(|| J::Object(m.clone()));
    let detail_type = m.get("detail-type").and_then(J::as_str).map(str::to_owned);
    match detail_type.as_deref() {
        Some(t) if t.starts_with("Security Hub Findings") => {
            let findings = m
                .get_mut("detail")
                .and_then(|d| d.get_mut("findings"))
                .filter(|f| f.is_array())
                .map(J::take);
            match findings {
                Some(J::Array(findings)) => findings_of(findings, keep),
                _ => vec![(
                    Err(RecordError::Other(
                        "Security Hub event without detail.findings".into(),
                    )),
                    Some(J::Object(m)),
                )],
            }
        }
        Some("GuardDuty Finding") => {
            let raw = copy(&m);
            let mapped = guardduty::map_finding(&line_context(cx), m).map(|mut ev| {
                ev.set("event.dataset", Format::GuardDuty.dataset());
                ev
            });
            vec![(mapped, raw)]
        }
        Some("AWS API Call via CloudTrail") | Some("AWS Console Sign In via CloudTrail") => {
            let raw = copy(&m);
            let mapped = cloudtrail::map_record(&line_context(cx), m).map(|mut ev| {
                ev.set("event.dataset", Format::CloudTrail.dataset());
                ev
            });
            vec![(mapped, raw)]
        }
        Some(_) => {
            let raw = copy(&m);
            vec![(generic(cx, m), raw)]
        }
        None => {
            if let Some(J::Array(findings)) = m.remove("Findings").or_else(|| m.remove("findings"))
            {
                return findings_of(findings, keep);
            }
            if securityhub::is_finding(&m) {
                let raw = copy(&m);
                return vec![(securityhub::map_finding(m), raw)];
            }
            vec![(
                Err(RecordError::Other(
                    "neither an EventBridge event nor a Security Hub finding".into(),
                )),
                Some(J::Object(m)),
            )]
        }
    }
}

/// The findings of a batch, mapped (see [`route`] for `keep`).
fn findings_of(findings: Vec<J>, keep: bool) -> Routed {
    findings
        .into_iter()
        .map(|f| {
            let raw = keep.then(|| f.clone());
            (finding(f), raw)
        })
        .collect()
}

/// What the record mappers of other formats may look at.
fn line_context<'a>(cx: &'a ObjectParse<'_>) -> LineContext<'a> {
    LineContext {
        enricher: cx.enricher,
        options: cx.options,
        object: cx.object,
        line: cx.stats.records,
    }
}

fn finding(f: J) -> Result<Event, RecordError> {
    match f {
        J::Object(m) => securityhub::map_finding(m),
        _ => Err(RecordError::Other("finding is not a JSON object".into())),
    }
}

/// Any other EventBridge event.
fn generic(_cx: &ObjectParse<'_>, mut m: JsonMap) -> Result<Event, RecordError> {
    let mut ev = Event::new();
    if let Some(t) = take_string(&mut m, "time") {
        ev.set(
            "@timestamp",
            util::iso_timestamp(&t).ok_or_else(|| RecordError::invalid("time", &t))?,
        );
    }
    ev.set_opt("event.id", take_string(&mut m, "id"));
    let detail_type = take_string(&mut m, "detail-type");
    ev.set_opt("event.action", detail_type.clone());
    ev.set_opt("aws.eventbridge.detail_type", detail_type);
    if let Some(source) = take_string(&mut m, "source") {
        ev.set("event.provider", source.clone());
        if let Some(service) = source.strip_prefix("aws.") {
            ev.set("cloud.service.name", service.to_owned());
        }
        ev.set("aws.eventbridge.source", source);
    }
    ev.set_opt("cloud.account.id", take_string(&mut m, "account"));
    ev.set_opt("cloud.region", take_string(&mut m, "region"));
    ev.set_opt("aws.eventbridge.version", take_string(&mut m, "version"));
    if let Some(J::Array(resources)) = m.remove("resources")
        && !resources.is_empty()
    {
        ev.set("aws.eventbridge.resources", J::Array(resources));
    }
    if let Some(detail) = take_object(&mut m, "detail") {
        let title = detail.get("title").and_then(J::as_str);
        let severity = detail.get("severity");
        if let (Some(title), Some(severity)) = (title, severity) {
            ev.set("event.kind", "alert");
            ev.set("message", title.to_owned());
            ev.set("rule.name", title.to_owned());
            // Inspector: "HIGH"; Macie: {"description":"High","score":3}.
            let label = severity
                .as_str()
                .or_else(|| severity.get("description").and_then(J::as_str));
            ev.set_opt("aws.eventbridge.severity", label.map(str::to_owned));
            if let Some(d) = detail.get("description").and_then(J::as_str) {
                ev.set("rule.description", d.to_owned());
            }
            util::set_category(&mut ev, &["threat"]);
        }
        ev.set("aws.eventbridge.detail", snake_keys(J::Object(detail)));
    }
    for (k, v) in m {
        if !v.is_null() {
            ev.set_dyn("aws.eventbridge", &k.replace('-', "_"), v);
        }
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    
    use crate::Format;

    use crate::parse_json_for_test as run;

    const SECURITY_HUB: &str = r#"{"version":"0","id":"8e5622f9-d81c-4d81-612a-9319e7ee2506","detail-type":"Security Hub Findings - Imported","source":"aws.securityhub","account":"123456789012","time":"2024-05-01T12:00:00Z","region":"us-east-1","resources":["arn:aws:securityhub:us-east-1::product/aws/guardduty/arn:aws:guardduty:us-east-1:123456789012:detector/x/finding/y"],"detail":{"findings":[{"SchemaVersion":"2018-10-08","Id":"f1","ProductArn":"arn:aws:securityhub:us-east-1::product/aws/securityhub","GeneratorId":"g","AwsAccountId":"123456789012","Types":["TTPs"],"CreatedAt":"2024-05-01T11:00:00Z","UpdatedAt":"2024-05-01T12:00:00Z","Severity":{"Label":"LOW","Normalized":1},"Title":"one","Description":"d","Resources":[{"Type":"AwsEc2Instance","Id":"arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"}]},{"SchemaVersion":"2018-10-08","Id":"f2","ProductArn":"p","UpdatedAt":"not a time"}]}}"#;

    #[test]
    fn security_hub_batch_becomes_one_event_per_finding() {
        // Firehose concatenates events without separators.
        let text = format!("{SECURITY_HUB}{SECURITY_HUB}");
        let (events, stats) = run(Format::EventBridge, &text);
        assert_eq!((stats.events, stats.malformed), (4, 2));
        assert_eq!(events[0]["event"]["dataset"], "aws.securityhub_findings");
        assert_eq!(events[0]["message"], "one");
        assert_eq!(events[0]["cloud"]["instance"]["id"], "i-0abc");
        assert_eq!(events[1]["tags"][0], "_parse_failure");
    }

    /// Records are not copied before their mapping unless `event.original` is kept,
    /// yet a finding that fails is still forwarded as its own text, also when its
    /// batch is the second value of a top-level array.
    #[test]
    fn a_failed_finding_is_forwarded_as_its_own_text() {
        let bad_finding: serde_json::Value = serde_json::from_str(
            r#"{"SchemaVersion":"2018-10-08","Id":"f2","ProductArn":"p","UpdatedAt":"not a time"}"#,
        )
        .unwrap();
        for text in [SECURITY_HUB.to_owned(), format!("[{{\"hello\":1}},{SECURITY_HUB}]")] {
            let (events, stats) = run(Format::EventBridge, &text);
            let failed: Vec<&serde_json::Value> = events
                .iter()
                .filter(|e| e["tags"][0] == "_parse_failure")
                .collect();
            assert_eq!(failed.len() as u64, stats.malformed);
            let last = failed.last().unwrap();
            assert_eq!(last["event"]["original"], bad_finding.to_string(), "{text}");
            assert_eq!(events.len(), failed.len() + 1);
        }
    }

    #[test]
    fn guardduty_inspector_and_cloudtrail_through_eventbridge() {
        let text = concat!(
            r#"{"version":"0","id":"c8c4daa7-a20c-2f03-0070-b7393dd542ad","detail-type":"GuardDuty Finding","source":"aws.guardduty","account":"123456789012","time":"2024-05-01T12:00:00Z","region":"us-east-1","resources":[],"detail":{"schemaVersion":"2.0","accountId":"123456789012","region":"us-east-1","partition":"aws","id":"16afba5c5c43e07c9e3e5e2e544e95df","type":"Recon:EC2/PortProbeUnprotectedPort","severity":2,"createdAt":"2024-05-01T11:00:00.000Z","updatedAt":"2024-05-01T12:00:00.000Z","title":"Unprotected port on EC2 instance i-0abc is being probed."}}"#,
            "\n",
            r#"{"version":"0","id":"3f4a9c1d-0000-4000-8000-000000000001","detail-type":"Inspector2 Finding","source":"aws.inspector2","account":"123456789012","time":"2024-05-01T12:01:00Z","region":"us-east-1","resources":["i-0abc"],"detail":{"findingArn":"arn:aws:inspector2:us-east-1:123456789012:finding/abc","severity":"HIGH","title":"CVE-2024-0001 - openssl","type":"PACKAGE_VULNERABILITY","status":"ACTIVE"}}"#,
            "\n",
            r#"{"version":"0","id":"6f87d04b-9f74-4f04-a780-7acf4b0a9b38","detail-type":"AWS API Call via CloudTrail","source":"aws.s3","account":"123456789012","time":"2024-05-01T12:02:00Z","region":"us-east-1","resources":[],"detail":{"eventVersion":"1.08","eventTime":"2024-05-01T12:02:00Z","eventSource":"s3.amazonaws.com","eventName":"DeleteBucket","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","eventID":"e1","eventType":"AwsApiCall","recipientAccountId":"123456789012","userIdentity":{"type":"IAMUser","userName":"bob"}}}"#,
            "\n"
        );
        let (events, stats) = run(Format::EventBridge, text);
        assert_eq!((stats.events, stats.malformed), (3, 0));
        assert_eq!(events[0]["event"]["dataset"], "aws.guardduty");
        assert_eq!(
            events[0]["rule"]["name"],
            "Recon:EC2/PortProbeUnprotectedPort"
        );
        assert_eq!(events[1]["event"]["dataset"], "aws.eventbridge");
        assert_eq!(events[1]["event"]["kind"], "alert");
        assert_eq!(events[1]["message"], "CVE-2024-0001 - openssl");
        assert_eq!(
            events[1]["event"]["id"],
            "3f4a9c1d-0000-4000-8000-000000000001"
        );
        assert_eq!(
            events[1]["aws"]["eventbridge"]["detail"]["finding_arn"],
            "arn:aws:inspector2:us-east-1:123456789012:finding/abc"
        );
        assert_eq!(events[2]["event"]["dataset"], "aws.cloudtrail");
        assert_eq!(events[2]["event"]["action"], "DeleteBucket");
    }

    #[test]
    fn security_hub_export_and_junk() {
        let (events, stats) = run(
            Format::SecurityHub,
            r#"{"Findings":[{"SchemaVersion":"2018-10-08","Id":"f1","ProductArn":"p","UpdatedAt":"2024-05-01T12:00:00Z","Title":"t"}]}
not json
{"hello":"world"}
"#,
        );
        assert_eq!((stats.events, stats.malformed), (3, 2));
        assert_eq!(events[0]["message"], "t");
        assert_eq!(events[1]["tags"][0], "_parse_failure");
    }
}
