//! AWS Config configuration history and snapshot files
//! (`AWSLogs/<account>/Config/<region>/<y>/<m>/<d>/ConfigHistory/...json.gz`,
//! `.../ConfigSnapshot/...json.gz`): `{"fileVersion":"1.0","configurationItems":[...]}`.
//!
//! Snapshots hold every resource of an account and region and can be large, so the
//! `configurationItems` array is streamed one item at a time by the CloudTrail reader
//! ([`json_records`]); one event per configuration item: `@timestamp` = capture time,
//! `event.category: [configuration]`, `event.type` from the item status
//! (`ResourceDiscovered` -> creation, `OK` -> change, `ResourceDeleted*` -> deletion),
//! the resource's type, id, name and ARN, and the configuration kept as an object under
//! `aws.config.configuration`.
//!
//! `ConfigWritabilityCheckFile` (Config's test that it may write to the bucket) holds
//! no items: it is skipped, with the reason in the object's stats.

use serde_json::Value as J;

use crate::driver::{LineContext, RecordError};
use crate::event::{Event, Value};
use crate::readers::json_records::{JsonMap, snake_case, snake_keys, take_string};
use crate::registry::{ContentClue, FirstLine, FormatSpec, KeyClue, Reader, SkipRule, has_json_keys};
use crate::util;

/// Marker in the key of Config's bucket write test.
pub(crate) const WRITABILITY_CHECK: &str = "ConfigWritabilityCheckFile";

/// Configuration history and snapshot files.
pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "aws-config",
    dataset: "aws.config",
    example_key: "AWSLogs/123456789012/Config/us-east-1/2024/3/15/ConfigHistory/123456789012_Config_us-east-1_ConfigHistory_AWS::EC2::SecurityGroup_20240315T000000Z_20240315T010000Z_1.json.gz",
    key_clues: &[KeyClue {
        rank: 5,
        layout: "AWSLogs/<account>/Config/",
        matches: |k| {
            k.key.contains("/Config/")
                && (k.key.contains("/ConfigHistory/")
                    || k.key.contains("/ConfigSnapshot/")
                    || k.file_name.contains(WRITABILITY_CHECK))
        },
    }],
    content_clues: &[ContentClue {
        rank: 5,
        what: "{\"configurationItems\": [...]}",
        first_line: FirstLine::Json,
        matches: |line| has_json_keys(line, &["configurationItems"]),
    }],
    skip: Some(SkipRule {
        key_contains: WRITABILITY_CHECK,
        reason: "AWS Config writability check file: no configuration items",
    }),
    options: &[],
    reader: Reader::JsonRecords {
        wrappers: &["configurationItems"],
        map: map_item,
    },
};

/// `event.type` of a configuration item status.
fn event_type(status: &str) -> &'static str {
    match status {
        "ResourceDiscovered" => "creation",
        "OK" => "change",
        "ResourceDeleted" | "ResourceDeletedNotRecorded" => "deletion",
        _ => "info",
    }
}

fn map_item(_cx: &LineContext<'_>, mut item: JsonMap) -> Result<Event, RecordError> {
    let mut ev = Event::new();
    ev.set("event.kind", "state");
    util::set_category(&mut ev, &["configuration"]);
    ev.set("cloud.service.name", "config");
    let capture = take_string(&mut item, "configurationItemCaptureTime")
        .ok_or_else(|| RecordError::Other("configuration item without a capture time".into()))?;
    let ts = util::iso_timestamp(&capture)
        .ok_or_else(|| RecordError::invalid("configurationItemCaptureTime", &capture))?;
    ev.set("@timestamp", ts);
    if let Some(status) = take_string(&mut item, "configurationItemStatus") {
        ev.set(
            "event.type",
            Value::Arr(vec![Value::Static(event_type(&status))]),
        );
        ev.set("event.action", status.clone());
        ev.set("aws.config.configuration_item_status", status);
    }
    ev.set_opt("cloud.account.id", take_string(&mut item, "awsAccountId"));
    ev.set_opt("cloud.region", take_string(&mut item, "awsRegion"));
    ev.set_opt(
        "cloud.availability_zone",
        take_string(&mut item, "availabilityZone")
            .filter(|z| z != "Not Applicable" && z != "Multiple Availability Zones"),
    );
    if let Some(t) = take_string(&mut item, "resourceType") {
        ev.set("aws.config.resource_type", t);
    }
    if let Some(id) = take_string(&mut item, "resourceId") {
        ev.set("aws.config.resource_id", id);
    }
    if let Some(name) = take_string(&mut item, "resourceName") {
        ev.set("aws.config.resource_name", name);
    }
    if let Some(arn) = take_string(&mut item, "ARN").or_else(|| take_string(&mut item, "arn")) {
        ev.set("aws.config.arn", arn);
    }
    if let Some(created) =
        take_string(&mut item, "resourceCreationTime").and_then(|t| util::iso_timestamp(&t))
    {
        ev.set("aws.config.resource_creation_time", created);
    }
    let summary = format!(
        "{} {} {}",
        ev.get_str("aws.config.resource_type").unwrap_or("-"),
        ev.get_str("aws.config.resource_id").unwrap_or("-"),
        ev.get_str("event.action").unwrap_or("-"),
    );
    ev.set("message", summary);
    // The configuration is kept as it came (AWS's own keys: searchable as documented).
    match item.remove("configuration") {
        Some(J::Null) | None => {}
        Some(J::String(s)) => {
            // Some resource types deliver the configuration as a JSON string.
            let parsed = serde_json::from_str::<J>(&s).unwrap_or(J::String(s));
            ev.set("aws.config.configuration", parsed);
        }
        Some(c) => ev.set("aws.config.configuration", c),
    }
    if let Some(J::Object(tags)) = item.remove("tags") {
        for (k, v) in tags {
            if let J::String(v) = v {
                ev.set_dyn("aws.config.tags", &k, v);
            }
        }
    }
    for (key, value) in item {
        if !value.is_null() {
            ev.set_dyn("aws.config", &snake_case(&key), snake_keys(value));
        }
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    
    use crate::Format;

    const HISTORY: &str = r#"{"fileVersion":"1.0","configurationItems":[{"configurationItemVersion":"1.3","configurationItemCaptureTime":"2024-05-01T12:00:00.123Z","configurationStateId":1714564800123,"awsAccountId":"123456789012","configurationItemStatus":"OK","resourceType":"AWS::EC2::SecurityGroup","resourceId":"sg-0a1b2c3d4e5f67890","resourceName":"web","ARN":"arn:aws:ec2:us-east-1:123456789012:security-group/sg-0a1b2c3d4e5f67890","awsRegion":"us-east-1","availabilityZone":"Not Applicable","configurationStateMd5Hash":"","configuration":{"groupName":"web","ipPermissions":[{"ipProtocol":"tcp","fromPort":22,"toPort":22,"ipRanges":["0.0.0.0/0"]}]},"supplementaryConfiguration":{},"tags":{"env":"prod"},"relatedEvents":["4e5a0e1c-7a8b-4c4d-9e0f-1a2b3c4d5e6f"],"relationships":[{"resourceId":"vpc-0a1b2c3d","resourceType":"AWS::EC2::VPC","name":"Is contained in Vpc"}]},{"configurationItemVersion":"1.3","configurationItemCaptureTime":"2024-05-01T12:05:00.000Z","awsAccountId":"123456789012","configurationItemStatus":"ResourceDeleted","resourceType":"AWS::S3::Bucket","resourceId":"old-bucket","awsRegion":"us-east-1","configuration":null},{"configurationItemStatus":"OK"}]}"#;

    fn run(key: &str, text: &str) -> (Vec<serde_json::Value>, crate::ParseStats) {
        crate::parse_key_json_for_test(Format::AwsConfig, "b", key, text.as_bytes())
    }

    #[test]
    fn history_items_become_events_and_a_broken_item_is_kept_raw() {
        let (events, stats) = run(
            "AWSLogs/123456789012/Config/us-east-1/2024/5/1/ConfigHistory/123456789012_Config_us-east-1_ConfigHistory_AWS::EC2::SecurityGroup_20240501T120000Z_20240501T120500Z_1.json.gz",
            HISTORY,
        );
        assert_eq!((stats.events, stats.malformed), (3, 1));
        let e = &events[0];
        assert_eq!(e["@timestamp"], "2024-05-01T12:00:00.123Z");
        assert_eq!(e["event"]["category"][0], "configuration");
        assert_eq!(e["event"]["type"][0], "change");
        assert_eq!(e["cloud"]["account"]["id"], "123456789012");
        assert_eq!(e["cloud"]["region"], "us-east-1");
        assert!(e["cloud"]["availability_zone"].is_null());
        assert_eq!(
            e["aws"]["config"]["resource_type"],
            "AWS::EC2::SecurityGroup"
        );
        assert_eq!(e["aws"]["config"]["resource_name"], "web");
        assert_eq!(
            e["aws"]["config"]["configuration"]["ipPermissions"][0]["fromPort"],
            22
        );
        assert_eq!(e["aws"]["config"]["tags"]["env"], "prod");
        assert_eq!(e["event"]["dataset"], "aws.config");
        assert_eq!(events[1]["event"]["type"][0], "deletion");
        assert_eq!(events[2]["tags"][0], "_parse_failure");
    }

    #[test]
    fn writability_check_is_skipped() {
        let (events, stats) = run(
            "AWSLogs/123456789012/Config/ConfigWritabilityCheckFile",
            "This file was written by AWS Config.",
        );
        assert!(events.is_empty());
        assert!(stats.skipped.is_some());
    }
}
