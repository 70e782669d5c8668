//! What an SQS message asks us to fetch.
//!
//! Four shapes reach the queue in practice:
//! * S3 event notifications (`{"Records":[...]}`), possibly several records per message;
//! * the `s3:TestEvent` S3 sends once when a notification is configured;
//! * either of those wrapped by SNS (`{"Type":"Notification","Message":"<json>"}`) when
//!   the bucket fans out through a topic without raw message delivery;
//! * EventBridge "Object Created" events.
//!
//! Object keys in S3 notifications are form-urlencoded (`red flower.jpg` arrives as
//! `red+flower.jpg`), so they are decoded before GetObject. Records for other events
//! (deletions, restores...) are reported back as ignored so the caller can log them.

use serde::Deserialize;
use serde_json::Value;

/// One object to fetch and parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    /// The decoded key, as GetObject wants it.
    pub key: String,
    /// The version id when the bucket is versioned: fetch exactly the announced version.
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub size: Option<u64>,
}

/// A record that asked for something other than a new object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredRecord {
    pub event_name: String,
    pub bucket: String,
    pub key: String,
}

/// What a message body contains.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Notification {
    pub objects: Vec<ObjectRef>,
    pub ignored: Vec<IgnoredRecord>,
    /// The body was an `s3:TestEvent`: nothing to do, delete it.
    pub test_event: bool,
    /// The shape recognised, for logs ("s3", "sns+s3", "eventbridge", ...).
    pub shape: &'static str,
}

/// A body that is none of the known shapes: the message is left for the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("message body is not JSON: {0}")]
    NotJson(String),
    #[error(
        "SNS subscription confirmation, not an S3 notification: confirm the subscription (SubscribeURL) and delete this message"
    )]
    SnsSubscription,
    #[error(
        "unrecognised message body (not an S3 event notification, s3:TestEvent, SNS notification or EventBridge Object Created event); starts with: {0}"
    )]
    Unrecognised(String),
    #[error("malformed {shape}: {reason}")]
    Malformed { shape: &'static str, reason: String },
}

/// Parses an SQS message body.
pub fn parse_notification(body: &str) -> Result<Notification, NotificationError> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| NotificationError::NotJson(e.to_string()))?;
    parse_value(&value, body, false)
}

fn excerpt(body: &str) -> String {
    crate::sqs::cut(body, 120).to_owned()
}

fn parse_value(
    value: &Value,
    body: &str,
    via_sns: bool,
) -> Result<Notification, NotificationError> {
    let Some(obj) = value.as_object() else {
        return Err(NotificationError::Unrecognised(excerpt(body)));
    };
    if let Some(records) = obj.get("Records") {
        return parse_s3_records(records, if via_sns { "sns+s3" } else { "s3" });
    }
    if obj.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Notification {
            test_event: true,
            shape: if via_sns {
                "sns+s3:TestEvent"
            } else {
                "s3:TestEvent"
            },
            ..Default::default()
        });
    }
    if !via_sns {
        match obj.get("Type").and_then(Value::as_str) {
            Some("Notification") => {
                let message = obj.get("Message").and_then(Value::as_str).ok_or_else(|| {
                    NotificationError::Malformed {
                        shape: "SNS notification",
                        reason: "no Message string".into(),
                    }
                })?;
                let inner: Value =
                    serde_json::from_str(message).map_err(|e| NotificationError::Malformed {
                        shape: "SNS notification",
                        reason: format!("Message is not JSON: {e}"),
                    })?;
                return parse_value(&inner, message, true);
            }
            Some("SubscriptionConfirmation") | Some("UnsubscribeConfirmation") => {
                return Err(NotificationError::SnsSubscription);
            }
            _ => {}
        }
    }
    if obj.contains_key("detail-type") && obj.contains_key("detail") {
        return parse_eventbridge(obj, via_sns);
    }
    Err(NotificationError::Unrecognised(excerpt(body)))
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    s3: Option<S3Entity>,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    size: Option<u64>,
    #[serde(rename = "eTag")]
    etag: Option<String>,
    #[serde(rename = "versionId")]
    version_id: Option<String>,
}

fn parse_s3_records(
    records: &Value,
    shape: &'static str,
) -> Result<Notification, NotificationError> {
    let records: Vec<S3Record> =
        serde_json::from_value(records.clone()).map_err(|e| NotificationError::Malformed {
            shape: "S3 event notification",
            reason: e.to_string(),
        })?;
    let mut out = Notification {
        shape,
        ..Default::default()
    };
    for record in records {
        let Some(s3) = record.s3 else {
            return Err(NotificationError::Malformed {
                shape: "S3 event notification",
                reason: format!("record `{}` has no s3 entity", record.event_name),
            });
        };
        let key = decode_key(&s3.object.key);
        // eventName is "ObjectCreated:Put" in notifications ("s3:ObjectCreated:Put" in
        // some S3-compatible stores).
        let name = record.event_name.trim_start_matches("s3:");
        if name.starts_with("ObjectCreated:") {
            out.objects.push(ObjectRef {
                bucket: s3.bucket.name,
                key,
                version_id: s3.object.version_id.filter(|v| !v.is_empty()),
                etag: s3.object.etag.filter(|v| !v.is_empty()),
                size: s3.object.size,
            });
        } else {
            out.ignored.push(IgnoredRecord {
                event_name: record.event_name,
                bucket: s3.bucket.name,
                key,
            });
        }
    }
    Ok(out)
}

fn parse_eventbridge(
    obj: &serde_json::Map<String, Value>,
    via_sns: bool,
) -> Result<Notification, NotificationError> {
    let shape = if via_sns {
        "sns+eventbridge"
    } else {
        "eventbridge"
    };
    let detail_type = obj.get("detail-type").and_then(Value::as_str).unwrap_or("");
    let detail = obj.get("detail").and_then(Value::as_object);
    let field = |path: &[&str]| -> Option<String> {
        let mut v = detail?.get(path[0])?;
        for p in &path[1..] {
            v = v.get(p)?;
        }
        v.as_str().map(str::to_owned)
    };
    let malformed = |reason: &str| NotificationError::Malformed {
        shape: "EventBridge event",
        reason: reason.to_owned(),
    };
    let bucket = field(&["bucket", "name"]).ok_or_else(|| malformed("no detail.bucket.name"))?;
    let raw_key = field(&["object", "key"]).ok_or_else(|| malformed("no detail.object.key"))?;
    let key = decode_key(&raw_key);
    let mut out = Notification {
        shape,
        ..Default::default()
    };
    if detail_type == "Object Created" {
        out.objects.push(ObjectRef {
            bucket,
            key,
            version_id: field(&["object", "version-id"]).filter(|v| !v.is_empty()),
            etag: field(&["object", "etag"]).filter(|v| !v.is_empty()),
            size: detail
                .and_then(|d| d.get("object"))
                .and_then(|o| o.get("size"))
                .and_then(Value::as_u64),
        });
    } else {
        out.ignored.push(IgnoredRecord {
            event_name: detail_type.to_owned(),
            bucket,
            key,
        });
    }
    Ok(out)
}

/// Decodes a notification key as a form-urlencoded value: `+` and `%20` both mean a
/// space, `%2B` a plus. Invalid UTF-8 after decoding is replaced, not rejected: the
/// GetObject that follows then fails loudly with the key in its message.
pub fn decode_key(key: &str) -> String {
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_event(records: &str) -> String {
        format!(r#"{{"Records":[{records}]}}"#)
    }

    fn record(event: &str, bucket: &str, key: &str) -> String {
        format!(
            r#"{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"eu-west-1","eventTime":"2024-05-01T10:00:00.000Z","eventName":"{event}","s3":{{"s3SchemaVersion":"1.0","configurationId":"logs","bucket":{{"name":"{bucket}","arn":"arn:aws:s3:::{bucket}"}},"object":{{"key":"{key}","size":1024,"eTag":"d41d8cd98f00b204e9800998ecf8427e","versionId":"3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrH","sequencer":"0055AED6DCD90281E5"}}}}}}"#
        )
    }

    #[test]
    fn s3_notification_with_several_records() {
        let body = s3_event(
            &[
                record(
                    "ObjectCreated:Put",
                    "logs",
                    "AWSLogs/1/CloudTrail/a.json.gz",
                ),
                record("ObjectRemoved:Delete", "logs", "old.gz"),
                record("ObjectCreated:CompleteMultipartUpload", "logs", "b.gz"),
            ]
            .join(","),
        );
        let n = parse_notification(&body).unwrap();
        assert_eq!(n.shape, "s3");
        assert!(!n.test_event);
        assert_eq!(n.objects.len(), 2);
        assert_eq!(n.objects[0].bucket, "logs");
        assert_eq!(n.objects[0].key, "AWSLogs/1/CloudTrail/a.json.gz");
        assert_eq!(n.objects[0].size, Some(1024));
        assert_eq!(
            n.objects[0].etag.as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(
            n.objects[0].version_id.as_deref(),
            Some("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrH")
        );
        assert_eq!(n.objects[1].key, "b.gz");
        assert_eq!(
            n.ignored,
            vec![IgnoredRecord {
                event_name: "ObjectRemoved:Delete".into(),
                bucket: "logs".into(),
                key: "old.gz".into()
            }]
        );
    }

    #[test]
    fn keys_are_form_urlencoded() {
        let body = s3_event(&record(
            "ObjectCreated:Put",
            "b",
            "dir/red+flower%20two%2B1%3D2.log",
        ));
        let n = parse_notification(&body).unwrap();
        assert_eq!(n.objects[0].key, "dir/red flower two+1=2.log");
        assert_eq!(decode_key("a%26b+c"), "a&b c");
        assert_eq!(decode_key("caf%C3%A9"), "café");
        assert_eq!(decode_key("plain/key.gz"), "plain/key.gz");
    }

    #[test]
    fn test_event_means_nothing_to_do() {
        let body = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-05-01T10:00:00.000Z","Bucket":"logs","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}"#;
        let n = parse_notification(body).unwrap();
        assert!(n.test_event);
        assert!(n.objects.is_empty());
    }

    #[test]
    fn sns_wrapped_notification() {
        let inner = s3_event(&record("ObjectCreated:Put", "logs", "x+y.gz"));
        let body = serde_json::json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:eu-west-1:123456789012:s3-logs",
            "Subject": "Amazon S3 Notification",
            "Message": inner,
            "Timestamp": "2024-05-01T10:00:00.000Z",
        })
        .to_string();
        let n = parse_notification(&body).unwrap();
        assert_eq!(n.shape, "sns+s3");
        assert_eq!(n.objects[0].key, "x y.gz");

        let test = serde_json::json!({"Type":"Notification","Message":"{\"Service\":\"Amazon S3\",\"Event\":\"s3:TestEvent\"}"}).to_string();
        assert!(parse_notification(&test).unwrap().test_event);

        let confirm = r#"{"Type":"SubscriptionConfirmation","Message":"You have chosen to subscribe","SubscribeURL":"https://sns.example/x"}"#;
        assert_eq!(
            parse_notification(confirm),
            Err(NotificationError::SnsSubscription)
        );
        let bad = r#"{"Type":"Notification","Message":"not json"}"#;
        assert!(matches!(
            parse_notification(bad),
            Err(NotificationError::Malformed { .. })
        ));
    }

    #[test]
    fn eventbridge_object_created() {
        let body = r#"{"version":"0","id":"17793124-05d4-b198-2fde-7ededc63b103","detail-type":"Object Created","source":"aws.s3","account":"123456789012","time":"2024-05-01T10:00:00Z","region":"eu-west-1","resources":["arn:aws:s3:::logs"],"detail":{"version":"0","bucket":{"name":"logs"},"object":{"key":"AWSLogs/1/vpcflowlogs/x+1.log.gz","size":5,"etag":"b1946ac92492d2347c6235b4d2611184","version-id":"IYV3p45BT0ac8hjHg1houSdS1a.Mro8e","sequencer":"00617F08299329D189"},"request-id":"N4N7GDK58NMKJ12R","requester":"123456789012","source-ip-address":"1.2.3.4","reason":"PutObject"}}"#;
        let n = parse_notification(body).unwrap();
        assert_eq!(n.shape, "eventbridge");
        assert_eq!(
            n.objects,
            vec![ObjectRef {
                bucket: "logs".into(),
                key: "AWSLogs/1/vpcflowlogs/x 1.log.gz".into(),
                version_id: Some("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e".into()),
                etag: Some("b1946ac92492d2347c6235b4d2611184".into()),
                size: Some(5),
            }]
        );
        let deleted = body.replace("Object Created", "Object Deleted");
        let n = parse_notification(&deleted).unwrap();
        assert!(n.objects.is_empty());
        assert_eq!(n.ignored[0].event_name, "Object Deleted");
        let no_bucket = body.replace("\"bucket\":{\"name\":\"logs\"},", "");
        assert!(matches!(
            parse_notification(&no_bucket),
            Err(NotificationError::Malformed { .. })
        ));
    }

    #[test]
    fn unknown_bodies_are_errors() {
        assert!(matches!(
            parse_notification("hello"),
            Err(NotificationError::NotJson(_))
        ));
        assert!(matches!(
            parse_notification(r#"{"foo":1}"#),
            Err(NotificationError::Unrecognised(_))
        ));
        assert!(matches!(
            parse_notification("[1,2]"),
            Err(NotificationError::Unrecognised(_))
        ));
        assert!(matches!(
            parse_notification(r#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#),
            Err(NotificationError::Malformed { .. })
        ));
        assert!(matches!(
            parse_notification(r#"{"Records":"x"}"#),
            Err(NotificationError::Malformed { .. })
        ));
    }
}
