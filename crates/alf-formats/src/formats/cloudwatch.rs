//! Amazon CloudWatch Logs as it reaches S3, in the three shapes AWS writes:
//!
//! * **Subscription filter -> Amazon Data Firehose -> S3.** CloudWatch Logs hands
//!   Firehose gzip-compressed documents
//!   `{"messageType":"DATA_MESSAGE","owner":..,"logGroup":..,"logStream":..,
//!   "subscriptionFilters":[..],"logEvents":[{"id":..,"timestamp":<ms>,"message":..}]}`;
//!   Firehose concatenates them with no separator, so the object is a series of gzip
//!   members (the daemon's decoder inflates those) and, when the delivery stream
//!   compresses too, one more gzip layer on top: a payload that still starts with the
//!   gzip magic is inflated here. Documents are read back to back (or one per line)
//!   with [`json_values`](crate::readers::json_values), each bounded, never the whole object.
//!   `CONTROL_MESSAGE` documents (CloudWatch's reachability checks) produce no event and
//!   are counted in `stats.headers`.
//! * **Firehose "decompress and extract message".** Only the messages arrive, one per
//!   line: each line is an inner message mapped by its content.
//! * **Export tasks** (`<prefix>/<task id>/<log stream>/000000.gz`): each line is
//!   `<ISO-8601 timestamp> <message>`; the log stream comes from the key.
//!
//! Each log event becomes one event: the envelope gives `cloud.account.id` (owner),
//! `aws.cloudwatch.log_group`/`log_stream`/`subscription_filters` and `event.id` (the
//! log event id, unique in CloudWatch); the message itself is mapped by
//! [`cloudwatch_inner`](super::cloudwatch_inner) (Lambda, API Gateway, EKS, RDS,
//! Route 53, or a record of a format parsed elsewhere in this crate, which then maps
//! exactly as it does from S3). A message that cannot be mapped is forwarded raw with the
//! envelope fields and a `_parse_failure` tag, never dropped.

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;
use std::sync::Arc;

use serde_json::Value as J;

use crate::driver::{EventSink, Malformed, ORIGINAL_KEEP, ObjectParse, ParseError, RecordError};
use crate::event::{Event, Value};
use crate::formats::cloudwatch_inner::{self, Origin};
use crate::readers::json_values::{Item, MAX_VALUE, ValueReader};
use crate::registry::{ContentClue, FirstLine, FormatSpec, KeyClue, Reader};
use crate::util;

/// CloudWatch Logs through Firehose (no key marker: recognised by content) and export
/// tasks (recognised by key).
pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "cloudwatch-logs",
    dataset: "aws.cloudwatch_logs",
    example_key: "exportedlogs/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d/2024/03/15/[$LATEST]0a1b2c3d4e5f60718293a4b5c6d7e8f9/000000.gz",
    key_clues: &[KeyClue {
        rank: 5,
        layout: "<prefix>/<export task id>/<log stream>/000000.gz",
        matches: |k| export_log_stream(k.key).is_some(),
    }],
    content_clues: &[
        ContentClue {
            rank: 5,
            what: "CloudWatch Logs subscription document",
            first_line: FirstLine::Json,
            matches: |line| {
                line.contains("\"messageType\"")
                    && (line.contains("\"logEvents\"") || line.contains("\"logGroup\""))
            },
        },
        ContentClue {
            rank: 0,
            what: "gzip inside gzip (Firehose over CloudWatch Logs)",
            // The gzip magic 1f 8b, as the lossy text the detector sees.
            first_line: FirstLine::Text,
            matches: |line| line.starts_with("\u{1f}\u{fffd}"),
        },
    ],
    skip: None,
    options: &[],
    reader: Reader::Object(parse),
};

/// Gzip layers inflated inside the reader (Firehose compression on top of CloudWatch's).
const MAX_GZIP_LAYERS: u8 = 2;

pub fn parse(
    reader: &mut dyn BufRead,
    cx: &mut ObjectParse<'_>,
    sink: &mut dyn EventSink,
) -> Result<(), ParseError> {
    parse_layer(reader, cx, sink, 0)
}

fn starts_with_gzip(reader: &mut dyn BufRead) -> Result<bool, ParseError> {
    loop {
        match reader.fill_buf() {
            Ok(head) => return Ok(head.starts_with(&[0x1f, 0x8b])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn parse_layer(
    reader: &mut dyn BufRead,
    cx: &mut ObjectParse<'_>,
    sink: &mut dyn EventSink,
    layer: u8,
) -> Result<(), ParseError> {
    if layer < MAX_GZIP_LAYERS && starts_with_gzip(reader)? {
        let below_failed = Rc::new(Cell::new(false));
        let watched = Watched {
            inner: reader,
            failed: Rc::clone(&below_failed),
        };
        let mut inflated = BufReader::new(CorruptionStops {
            decoder: flate2::bufread::MultiGzDecoder::new(watched),
            below_failed,
            corrupt: None,
        });
        parse_layer(&mut inflated, cx, sink, layer + 1)?;
        if let Some(reason) = inflated.into_inner().corrupt {
            // What was inflated before the damage has been forwarded; the rest cannot
            // be recovered: say so with one raw event rather than failing the object
            // (a retry would read the same bytes).
            cx.stats.records += 1;
            let index = cx.stats.records;
            let offset = cx.stats.bytes;
            cx.emit_malformed(
                sink,
                "",
                index,
                offset,
                &format!("inner gzip stream is corrupt: {reason}"),
            )?;
        }
        return Ok(());
    }
    let export = Envelope {
        stream: export_log_stream(&cx.object.key).map(Arc::from),
        ..Envelope::default()
    };
    let mut values = ValueReader::new(reader);
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut run = Run { index: 0 };
    while let Some((offset, item)) = values.next_item(&mut buf)? {
        cx.stats.bytes = values.pos();
        match item {
            Item::Json => run.json(cx, sink, &buf, offset)?,
            Item::Text => {
                let text = String::from_utf8_lossy(&buf);
                run.text(cx, sink, &text, &export, offset)?;
            }
            Item::Oversized => {
                let index = run.next(cx);
                let raw = String::from_utf8_lossy(&buf[..buf.len().min(ORIGINAL_KEEP)]);
                let reason = format!("record larger than {MAX_VALUE} bytes");
                cx.emit_malformed(sink, &raw, index, offset, &reason)?;
            }
            Item::Truncated => {
                let index = run.next(cx);
                let raw = String::from_utf8_lossy(&buf[..buf.len().min(ORIGINAL_KEEP)]);
                let reason = "input ended inside a record (truncated object)";
                cx.emit_malformed(sink, &raw, index, offset, reason)?;
            }
        }
    }
    Ok(())
}

/// The reader under an inner gzip layer, noting whether it failed: an error from below
/// (network, outer decompression) must fail the object so it is retried, while an
/// error of the inner stream itself is corrupt data.
struct Watched<'r> {
    inner: &'r mut dyn BufRead,
    failed: Rc<Cell<bool>>,
}

impl Read for Watched<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| self.failed.set(true))
    }
}

impl BufRead for Watched<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let failed = &self.failed;
        self.inner.fill_buf().inspect_err(|_| failed.set(true))
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
    }
}

/// Ends the inner stream at corrupt data (kept in `corrupt`) instead of failing.
struct CorruptionStops<R> {
    decoder: R,
    below_failed: Rc<Cell<bool>>,
    corrupt: Option<String>,
}

impl<R: Read> Read for CorruptionStops<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.corrupt.is_some() {
            return Ok(0);
        }
        match self.decoder.read(buf) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted && !self.below_failed.get() => {
                self.corrupt = Some(e.to_string());
                Ok(0)
            }
            other => other,
        }
    }
}

/// The log stream of an export task object
/// `<prefix>/<task id (UUID)>/<log stream, may contain '/'>/000000.gz`.
pub(crate) fn export_log_stream(key: &str) -> Option<&str> {
    let (dir, file) = key.rsplit_once('/')?;
    let digits = file.split('.').next()?;
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut at = 0;
    for segment in dir.split('/') {
        at += segment.len() + 1;
        if is_uuid(segment) {
            return dir.get(at..).filter(|s| !s.is_empty());
        }
    }
    None
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// An export line `2024-05-01T12:00:00.123Z message`: the timestamp (normalised) and
/// the message.
pub(crate) fn split_export_line(line: &str) -> Option<(String, &str)> {
    let (ts, message) = line.split_once(' ')?;
    let b = ts.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[10] != b'T' {
        return None;
    }
    Some((util::iso_timestamp(ts)?, message))
}

/// The fields a log event takes from where it was logged: the subscription document
/// (or, for an export, the log stream from the key). Shared strings: one document's
/// fields are cloned into every one of its events as a reference-count bump.
#[derive(Default)]
struct Envelope {
    owner: Option<Arc<str>>,
    group: Option<Arc<str>>,
    stream: Option<Arc<str>>,
    filters: Vec<Value>,
}

impl Envelope {
    fn origin(&self) -> Origin<'_> {
        Origin {
            group: self.group.as_deref(),
            stream: self.stream.as_deref(),
        }
    }

    /// Adds the envelope fields; an inner record's own account id wins.
    fn apply(&self, ev: &mut Event) {
        let shared = |s: &Option<Arc<str>>| s.as_ref().map(|s| Value::Shared(Arc::clone(s)));
        // `set_default`, not a `contains` check: a read of the event would build its
        // tree (about 4,000 instructions of each CloudWatch Logs event for three checks).
        if let Some(owner) = shared(&self.owner) {
            ev.set_default("cloud.account.id", owner);
        }
        ev.set_opt("aws.cloudwatch.log_group", shared(&self.group));
        ev.set_opt("aws.cloudwatch.log_stream", shared(&self.stream));
        if !self.filters.is_empty() {
            ev.set(
                "aws.cloudwatch.subscription_filters",
                Value::Arr(self.filters.clone()),
            );
        }
    }
}

/// One message to map, with what the CloudWatch record gives when the inner message
/// does not say.
struct Message<'a> {
    envelope: &'a Envelope,
    text: &'a str,
    index: u64,
    offset: u64,
    time: Option<String>,
    id: Option<String>,
}

struct Run {
    /// 1-based number of the current record (log event or line) in the object.
    index: u64,
}

impl Run {
    fn next(&mut self, cx: &mut ObjectParse<'_>) -> u64 {
        self.index += 1;
        cx.stats.records += 1;
        self.index
    }

    fn json(
        &mut self,
        cx: &mut ObjectParse<'_>,
        sink: &mut dyn EventSink,
        bytes: &[u8],
        offset: u64,
    ) -> Result<(), ParseError> {
        let doc = match serde_json::from_slice::<J>(bytes) {
            Ok(doc) => doc,
            Err(e) => {
                let index = self.next(cx);
                let raw = String::from_utf8_lossy(&bytes[..bytes.len().min(ORIGINAL_KEEP)]);
                cx.emit_malformed(sink, &raw, index, offset, &RecordError::from(e).to_string())?;
                return Ok(());
            }
        };
        match doc {
            J::Object(mut m) if m.contains_key("logEvents") || m.contains_key("messageType") => {
                if m.get("messageType").and_then(J::as_str) == Some("CONTROL_MESSAGE") {
                    cx.stats.headers += 1;
                    return Ok(());
                }
                let text = |m: &mut serde_json::Map<String, J>, k: &str| match m.remove(k) {
                    Some(J::String(s)) if !s.is_empty() => Some(Arc::from(s)),
                    _ => None,
                };
                let envelope = Envelope {
                    owner: text(&mut m, "owner"),
                    group: text(&mut m, "logGroup"),
                    stream: text(&mut m, "logStream"),
                    filters: match m.remove("subscriptionFilters") {
                        Some(J::Array(a)) => a
                            .into_iter()
                            .filter_map(|f| match f {
                                J::String(s) => Some(Value::Str(s)),
                                _ => None,
                            })
                            .collect(),
                        _ => Vec::new(),
                    },
                };
                let Some(J::Array(log_events)) = m.remove("logEvents") else {
                    let index = self.next(cx);
                    let raw = String::from_utf8_lossy(&bytes[..bytes.len().min(ORIGINAL_KEEP)]);
                    let reason = "CloudWatch Logs document without a logEvents array";
                    cx.emit_malformed(sink, &raw, index, offset, reason)?;
                    return Ok(());
                };
                for log_event in log_events {
                    self.log_event(cx, sink, &envelope, log_event, offset)?;
                }
                Ok(())
            }
            _ => {
                // "Decompress and extract message" output whose message is JSON.
                let index = self.next(cx);
                let text = String::from_utf8_lossy(bytes);
                let message = Message {
                    envelope: &Envelope::default(),
                    text: &text,
                    index,
                    offset,
                    time: None,
                    id: None,
                };
                emit_message(cx, sink, message)
            }
        }
    }

    fn log_event(
        &mut self,
        cx: &mut ObjectParse<'_>,
        sink: &mut dyn EventSink,
        envelope: &Envelope,
        log_event: J,
        offset: u64,
    ) -> Result<(), ParseError> {
        let index = self.next(cx);
        let J::Object(mut le) = log_event else {
            let raw = log_event.to_string();
            return Ok(cx.emit_malformed(
                sink,
                &raw,
                index,
                offset,
                "log event is not an object",
            )?);
        };
        let time = match le.get("timestamp") {
            Some(J::Number(n)) => n.as_i64().and_then(util::epoch_millis),
            _ => None,
        };
        let id = match le.remove("id") {
            Some(J::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        };
        let text = match le.remove("message") {
            Some(J::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let message = Message {
            envelope,
            text: &text,
            index,
            offset,
            time,
            id,
        };
        emit_message(cx, sink, message)
    }

    fn text(
        &mut self,
        cx: &mut ObjectParse<'_>,
        sink: &mut dyn EventSink,
        line: &str,
        export: &Envelope,
        offset: u64,
    ) -> Result<(), ParseError> {
        let index = self.next(cx);
        let extracted = Envelope::default();
        let (envelope, text, time) = match split_export_line(line) {
            Some((time, text)) => (export, text, Some(time)),
            None => (&extracted, line, None),
        };
        let message = Message {
            envelope,
            text,
            index,
            offset,
            time,
            id: None,
        };
        emit_message(cx, sink, message)
    }
}

/// Maps a message and emits it with the envelope fields; an unmapped message is
/// forwarded raw with the envelope fields and an error tag.
fn emit_message(
    cx: &mut ObjectParse<'_>,
    sink: &mut dyn EventSink,
    m: Message<'_>,
) -> Result<(), ParseError> {
    match cloudwatch_inner::map_message(cx, &m.envelope.origin(), m.text) {
        Ok(mut ev) => {
            m.envelope.apply(&mut ev);
            if let Some(time) = m.time {
                ev.set_default("@timestamp", time);
            }
            if let Some(id) = m.id {
                ev.set_default("event.id", id);
            }
            cx.emit(sink, ev, m.index, 0, m.offset, Some(m.text))?;
        }
        Err(e) => {
            let mut ev = Event::new();
            m.envelope.apply(&mut ev);
            ev.set_opt("@timestamp", m.time);
            ev.set_opt("event.id", m.id);
            let reason = e.to_string();
            let failure = Malformed {
                raw: m.text,
                unit: "record",
                record: m.index,
                offset: m.offset,
                reason: &reason,
            };
            cx.emit_malformed_event(sink, ev, &failure)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use serde_json::{Value as J, json};

    use super::*;
    use crate::{
        Enricher, Format, ObjectInfo, ParseOptions, ParseStats, assert_error_contains, assert_fields, parse_object,
    };

    fn run(key: &str, input: &[u8]) -> (Vec<J>, ParseStats) {
        crate::parse_key_json_for_test(Format::CloudWatchLogs, "logs", key, input)
    }

    fn document(group: &str, stream: &str, events: &[(&str, i64, &str)]) -> String {
        json!({
            "messageType": "DATA_MESSAGE",
            "owner": "123456789012",
            "logGroup": group,
            "logStream": stream,
            "subscriptionFilters": ["to-firehose"],
            "logEvents": events.iter().map(|(id, ts, m)| json!({"id": id, "timestamp": ts, "message": m})).collect::<Vec<_>>(),
        })
        .to_string()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    const CONTROL: &str = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1714564800000,"message":"CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}"#;

    #[test]
    fn firehose_documents_back_to_back_with_lambda_and_a_control_message() {
        let lambda = document(
            "/aws/lambda/checkout",
            "2024/05/01/[$LATEST]0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            &[
                (
                    "37870403290143431539178339556431575404838183427734650880",
                    1714564800000,
                    "START RequestId: 8f507cfc-1d2e-4697-b07a-ac58fc914c95 Version: $LATEST\n",
                ),
                (
                    "37870403290143431539178339556431575404838183427734650881",
                    1714564800100,
                    "2024-05-01T12:00:00.100Z\t8f507cfc-1d2e-4697-b07a-ac58fc914c95\tINFO\tcharging card\n",
                ),
                (
                    "37870403290143431539178339556431575404838183427734650882",
                    1714564800200,
                    "REPORT RequestId: 8f507cfc-1d2e-4697-b07a-ac58fc914c95\tDuration: 102.25 ms\tBilled Duration: 103 ms\tMemory Size: 256 MB\tMax Memory Used: 80 MB\tInit Duration: 250.10 ms\t\n",
                ),
            ],
        );
        let input = format!("{CONTROL}{lambda}{lambda}");
        let (events, stats) = run(
            "firehose/2024/05/01/12/cwl-stream-1-2024-05-01-12-00-00-abc",
            input.as_bytes(),
        );
        assert_eq!((stats.events, stats.headers, stats.malformed), (6, 1, 0));
        let e = &events[2];
        assert_fields(
            e,
            json!({
                "event": {
                    "id": "37870403290143431539178339556431575404838183427734650882",
                    "dataset": "aws.cloudwatch_logs",
                },
                "@timestamp": "2024-05-01T12:00:00.2Z",
                "cloud": {"account": {"id": "123456789012"}},
                "aws": {
                    "cloudwatch": {
                        "log_group": "/aws/lambda/checkout",
                        "subscription_filters": ["to-firehose"],
                    },
                },
                "faas": {
                    "name": "checkout",
                    "coldstart": true,
                    "execution": "8f507cfc-1d2e-4697-b07a-ac58fc914c95",
                },
            }),
        );
        assert_eq!(events[1]["log"]["level"], "info");
        assert_eq!(events[1]["message"], "charging card");
        assert_eq!(
            events[3]["log"]["offset"],
            (CONTROL.len() + lambda.len()) as u64
        );
    }

    #[test]
    fn firehose_compression_on_top_of_cloudwatch_gzip_members() {
        let doc = document(
            "/aws/route53/example.com",
            "Z123412341234/FRA6",
            &[(
                "1",
                1513152950235,
                "1.0 2017-12-13T08:15:50.235Z Z123412341234 example.com A NOERROR UDP FRA6 192.168.1.1 -",
            )],
        );
        // CloudWatch gzips each document; Firehose concatenates and gzips again. The
        // daemon removes the outer layer; the inner members reach the parser.
        let mut members = gzip(doc.as_bytes());
        members.extend(gzip(doc.as_bytes()));
        let (events, stats) = run("k", &members);
        assert_eq!((stats.events, stats.malformed), (2, 0));
        assert_eq!(events[0]["dns"]["question"]["name"], "example.com");
        assert_eq!(events[0]["source"]["ip"], "192.168.1.1");
        assert_eq!(events[1]["@timestamp"], "2017-12-13T08:15:50.235Z");
    }

    #[test]
    fn corrupt_inner_gzip_keeps_what_inflated_and_says_so() {
        let doc = document("g", "s", &[("1", 1714564800000, "hello")]);
        let mut members = gzip(doc.as_bytes());
        let mut broken = gzip(doc.as_bytes());
        let cut = broken.len() / 2;
        broken.truncate(cut);
        broken.extend_from_slice(&[0xff; 16]);
        members.extend(broken);
        let (events, stats) = run("k", &members);
        // The half-inflated document is forwarded raw, then the corruption is reported.
        assert_eq!((stats.events, stats.malformed), (3, 2));
        assert_eq!(events[0]["message"], "hello");
        let last = events.last().unwrap();
        assert!(
            last["error"]["message"]
                .as_str()
                .unwrap()
                .contains("inner gzip stream is corrupt"),
            "{last}"
        );
    }

    #[test]
    fn known_formats_inside_map_as_from_s3() {
        let trail = r#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::123456789012:user/alice","accountId":"123456789012","userName":"alice"},"eventTime":"2024-05-01T11:59:59Z","eventSource":"iam.amazonaws.com","eventName":"CreateUser","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"aws-cli/2.15.0","requestParameters":{"userName":"bob"},"responseElements":null,"requestID":"r1","eventID":"0b5e0f8c-6a3b-4c4d-9e0f-1a2b3c4d5e6f","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012"}"#;
        let flow = "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK";
        let broken_waf = r#"{"terminatingRuleId":"Default_Action","timestamp":"yesterday"}"#;
        let doc = document(
            "aws-cloudtrail-logs-123456789012",
            "123456789012_CloudTrail_us-east-1",
            &[
                ("10", 1714564800000, trail),
                ("11", 1714564800001, flow),
                ("12", 1714564800002, broken_waf),
            ],
        );
        let (events, stats) = run("k", doc.as_bytes());
        assert_eq!((stats.events, stats.malformed), (3, 1));

        // The CloudTrail event is the one the CloudTrail parser makes from S3, plus the
        // CloudWatch fields.
        let mut from_s3 = Vec::new();
        let obj = ObjectInfo {
            bucket: "logs".into(),
            key: "k".into(),
            version: String::new(),
        };
        parse_object(
            Format::CloudTrail,
            &mut format!("{{\"Records\":[{trail}]}}").as_bytes(),
            &obj,
            &ParseOptions::default(),
            &Enricher::new(),
            &mut from_s3,
        )
        .unwrap();
        let mut direct = from_s3[0].to_json();
        let mut inner = events[0].clone();
        for e in [&mut direct, &mut inner] {
            let m = e.as_object_mut().unwrap();
            m["aws"].as_object_mut().unwrap().remove("cloudwatch");
            m["log"].as_object_mut().unwrap().remove("offset");
        }
        assert_eq!(inner, direct);
        assert_eq!(events[0]["event"]["dataset"], "aws.cloudtrail");
        assert_eq!(
            events[0]["aws"]["cloudwatch"]["log_stream"],
            "123456789012_CloudTrail_us-east-1"
        );

        assert_fields(
            &events[1],
            json!({
                "event": {"dataset": "aws.vpcflow", "id": "11"},
                "source": {"ip": "172.31.16.139"},
            }),
        );

        assert_eq!(events[2]["tags"][0], "_parse_failure");
        assert_eq!(events[2]["message"], broken_waf);
        assert_eq!(
            events[2]["aws"]["cloudwatch"]["log_group"],
            "aws-cloudtrail-logs-123456789012"
        );
        assert_error_contains(&events[2], "waf record");
    }

    #[test]
    fn api_gateway_eks_rds_and_unknown_json() {
        let access = r#"{"requestId":"c6af9ac6-7b61-11e6-9a41-93e8deadbeef","ip":"198.51.100.7","requestTimeEpoch":1714564800123,"httpMethod":"GET","resourcePath":"/pets/{id}","path":"/prod/pets/42","status":200,"protocol":"HTTP/1.1","responseLength":120}"#;
        let audit = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{"username":"system:serviceaccount:kube-system:x","groups":["system:serviceaccounts"]},"sourceIPs":["10.0.1.5"],"responseStatus":{"code":200},"requestReceivedTimestamp":"2024-05-01T12:00:00.000001Z"}"#;
        let mut input = document(
            "API-Gateway-Access-Logs_prod",
            "s",
            &[("1", 1714564800123, access)],
        );
        input.push('\n');
        input.push_str(&document(
            "/aws/eks/prod/cluster",
            "kube-apiserver-audit-0a1b2c3d",
            &[("2", 1714564800000, audit)],
        ));
        input.push('\n');
        input.push_str(&document(
            "/aws/ecs/orders",
            "ecs/app/1",
            &[
                (
                    "3",
                    1714564800000,
                    r#"{"level":"WARN","msg":"slow","latency_ms":900}"#,
                ),
                ("4", 1714564800000, "plain text"),
            ],
        ));
        let (events, stats) = run("k", input.as_bytes());
        assert_eq!((stats.events, stats.malformed), (4, 0));
        assert_eq!(events[0]["url"]["path"], "/prod/pets/42");
        assert_eq!(events[0]["http"]["response"]["status_code"], 200);
        assert_eq!(events[0]["event"]["outcome"], "success");
        assert_eq!(events[1]["orchestrator"]["cluster"]["name"], "prod");
        assert_eq!(events[1]["event"]["action"], "list");
        assert_eq!(events[2]["aws"]["ecs"]["latency_ms"], 900);
        assert_eq!(events[2]["message"], "slow");
        assert_eq!(events[2]["log"]["level"], "warn");
        assert_eq!(events[3]["message"], "plain text");
    }

    #[test]
    fn export_task_object() {
        let key = "exportedlogs/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d/2024/05/01/[$LATEST]0a1b2c3d4e5f60718293a4b5c6d7e8f9/000000.gz";
        assert_eq!(
            export_log_stream(key),
            Some("2024/05/01/[$LATEST]0a1b2c3d4e5f60718293a4b5c6d7e8f9")
        );
        let text = "2024-05-01T12:00:00.000Z START RequestId: 8f507cfc-1d2e-4697-b07a-ac58fc914c95 Version: 3\n\
                    2024-05-01T12:00:00.050Z something happened\n";
        let (events, stats) = run(key, text.as_bytes());
        assert_eq!((stats.events, stats.malformed), (2, 0));
        assert_eq!(events[0]["faas"]["version"], "3");
        assert_eq!(events[0]["@timestamp"], "2024-05-01T12:00:00Z");
        assert_eq!(events[1]["message"], "something happened");
        assert_eq!(events[1]["@timestamp"], "2024-05-01T12:00:00.05Z");
        assert_eq!(
            events[1]["aws"]["cloudwatch"]["log_stream"],
            "2024/05/01/[$LATEST]0a1b2c3d4e5f60718293a4b5c6d7e8f9"
        );
        assert_eq!(events[1]["faas"]["execution"], J::Null);
    }

    #[test]
    fn extracted_messages_and_broken_documents() {
        let text = "REPORT RequestId: 8f507cfc-1d2e-4697-b07a-ac58fc914c95\tDuration: 1.00 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB\tMax Memory Used: 20 MB\n\
                    {\"messageType\":\"DATA_MESSAGE\",\"logEvents\":\"nope\"}\n\
                    {\"messageType\":\"DATA_MESSAGE\",\"logEvents\":[\n";
        let (events, stats) = run("k", text.as_bytes());
        assert_eq!((stats.events, stats.malformed), (3, 2));
        assert_eq!(events[0]["aws"]["lambda"]["memory_size_mb"], 128);
        assert_eq!(events[1]["tags"][0], "_parse_failure");
        assert_eq!(events[2]["tags"][0], "_parse_failure");
    }
}
