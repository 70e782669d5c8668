//! Helpers of the unit tests: every test parses through [`parse_test_object`], the one
//! place that calls [`parse_object`] for them, so the formats' test modules declare
//! only what differs (the format, the object key, the sample file).

use std::io::BufRead;
use std::sync::LazyLock;

use serde_json::Value as J;

use crate::driver::ObjectParse;
use crate::{Enricher, Event, Format, ObjectInfo, ParseOptions, ParseStats, parse_object};

/// Parses `reader` as `object` of `format`.
pub(crate) fn parse_test_object(
    format: Format,
    reader: &mut dyn BufRead,
    object: &ObjectInfo,
    options: &ParseOptions,
) -> (Vec<Event>, ParseStats) {
    let mut out = Vec::new();
    let stats = parse_object(format, reader, object, options, &Enricher::new(), &mut out)
        .expect("in-memory input cannot fail to read");
    (out, stats)
}

/// Parses `reader` as object `bucket`/`key` (version `v1`) of `format`.
pub(crate) fn parse_object_for_test(
    format: Format,
    reader: &mut dyn BufRead,
    bucket: &str,
    key: &str,
    options: &ParseOptions,
) -> (Vec<Event>, ParseStats) {
    let object = ObjectInfo {
        bucket: bucket.into(),
        key: key.into(),
        version: "v1".into(),
    };
    parse_test_object(format, reader, &object, options)
}

/// Parses `input` as object `bucket`/`key` (no version) of `format` with default
/// options; the events as JSON.
pub(crate) fn parse_key_json_for_test(
    format: Format,
    bucket: &str,
    key: &str,
    mut input: &[u8],
) -> (Vec<serde_json::Value>, ParseStats) {
    let object = ObjectInfo {
        bucket: bucket.into(),
        key: key.into(),
        version: String::new(),
    };
    let (out, stats) = parse_test_object(format, &mut input, &object, &ParseOptions::default());
    (out.iter().map(Event::to_json).collect(), stats)
}

/// Parses `text` as one object of `format` with default options.
pub(crate) fn parse_for_test(format: Format, text: &str) -> (Vec<Event>, ParseStats) {
    parse_test_object(
        format,
        &mut text.as_bytes(),
        &ObjectInfo::default(),
        &ParseOptions::default(),
    )
}

/// [`parse_for_test`] with the events as JSON.
pub(crate) fn parse_json_for_test(
    format: Format,
    text: &str,
) -> (Vec<serde_json::Value>, ParseStats) {
    let (out, stats) = parse_for_test(format, text);
    (out.iter().map(Event::to_json).collect(), stats)
}

/// The event of line `n` of a sample file, which must parse without error.
pub(crate) fn sample_event(format: Format, sample: &str, n: usize) -> serde_json::Value {
    let line = sample.lines().nth(n).expect("the sample has that line");
    let (events, stats) = parse_json_for_test(format, line);
    assert_eq!(stats.malformed, 0, "{line}");
    events.into_iter().next().expect("one event")
}

/// Asserts that `event` (an event as JSON) holds every field of `expected`, an object
/// nested like the event: a test states the fields it checks as one document instead
/// of a run of `assert_eq!`s, and fields it does not name are not compared. Objects
/// are matched member by member, and a member named by a number picks that element
/// of an array (`{"resources": {"0": {"type": "AwsS3Bucket"}}}` checks one member of
/// the first resource); any other value (an array too) must be equal. A field that
/// `event` lacks reads as `null`, as `event["a"]["b"]` does.
#[track_caller]
pub(crate) fn assert_fields(event: &J, expected: J) {
    assert_fields_at(event, &expected, &mut String::new());
}

#[track_caller]
fn assert_fields_at(actual: &J, expected: &J, path: &mut String) {
    let J::Object(members) = expected else {
        assert_eq!(actual, expected, "field {path}");
        return;
    };
    for (key, want) in members {
        let member = match actual {
            J::Object(map) => map.get(key),
            J::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        assert_fields_at(member.unwrap_or(&J::Null), want, path);
        path.truncate(len);
    }
}

/// The `error.message` of an event, as JSON or not: what the tests of a record that
/// did not parse look into.
pub(crate) trait ErrorMessage {
    fn error_message(&self) -> Option<&str>;
}

impl ErrorMessage for J {
    fn error_message(&self) -> Option<&str> {
        self["error"]["message"].as_str()
    }
}

impl ErrorMessage for Event {
    fn error_message(&self) -> Option<&str> {
        self.get_str("error.message")
    }
}

/// Asserts that `event` has an `error.message` that contains `needle`.
#[track_caller]
pub(crate) fn assert_error_contains(event: &impl ErrorMessage, needle: &str) {
    let message = event.error_message();
    assert!(
        message.is_some_and(|m| m.contains(needle)),
        "error.message {message:?} does not contain {needle:?}"
    );
}

/// Parses `lines` as one object with `run` and asserts that each line became one raw
/// `pipeline_error` event keeping the line; returns the events (for their messages).
pub(crate) fn each_line_malformed(
    run: impl Fn(&str) -> (Vec<serde_json::Value>, ParseStats),
    lines: &[&str],
) -> Vec<serde_json::Value> {
    let (events, stats) = run(&(lines.join("\n") + "\n"));
    assert_eq!(stats.malformed, lines.len() as u64, "{events:#?}");
    assert_eq!(events.len(), lines.len());
    for (e, line) in events.iter().zip(lines) {
        assert_eq!(e["event"]["kind"], "pipeline_error");
        assert_eq!(e["event"]["original"], *line);
    }
    events
}

/// An anonymous object with default options.
#[derive(Default)]
struct TestObject {
    object: ObjectInfo,
    options: ParseOptions,
    enricher: Enricher,
}

/// The parse context of an anonymous CloudWatch Logs object with default options, for
/// tests of the mappers of messages CloudWatch Logs carries (API Gateway, EKS, Route 53
/// query logs): `let cx = cloudwatch_context();`.
pub(crate) fn cloudwatch_context() -> ObjectParse<'static> {
    static OBJECT: LazyLock<TestObject> = LazyLock::new(TestObject::default);
    ObjectParse::new(
        Format::CloudWatchLogs,
        &OBJECT.object,
        &OBJECT.options,
        &OBJECT.enricher,
    )
}

/// Declares, in a format's test module, `SAMPLE` (its file in `tests/samples/`), `run`
/// (a whole text parsed, events as JSON) and `sample` (the event of one sample line).
macro_rules! sample_test_helpers {
    ($format:expr, $sample_file:literal) => {
        const SAMPLE: &str = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/samples/",
            $sample_file
        ));

        #[allow(dead_code)]
        fn run(text: &str) -> (Vec<serde_json::Value>, $crate::ParseStats) {
            $crate::parse_json_for_test($format, text)
        }

        #[allow(dead_code)]
        fn sample(n: usize) -> serde_json::Value {
            $crate::sample_event($format, SAMPLE, n)
        }
    };
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::assert_fields;

    fn event() -> serde_json::Value {
        json!({
            "source": {"ip": "10.0.1.15", "port": 51254},
            "event": {"type": ["connection", "denied"]},
            "resources": [{"type": "AwsS3Bucket", "id": "arn:aws:s3:::b"}],
        })
    }

    #[test]
    fn fields_not_named_are_not_compared_and_a_number_picks_an_element() {
        assert_fields(
            &event(),
            json!({
                "source": {"port": 51254},
                "event": {"type": {"1": "denied"}},
                "resources": {"0": {"type": "AwsS3Bucket"}},
                "destination": {"ip": null},
            }),
        );
    }

    #[test]
    #[should_panic(expected = "field source.port")]
    fn a_different_value_fails_naming_its_field() {
        assert_fields(&event(), json!({"source": {"port": 80}}));
    }

    #[test]
    #[should_panic(expected = "field event.type")]
    fn an_array_must_be_equal_as_a_whole() {
        assert_fields(&event(), json!({"event": {"type": ["connection"]}}));
    }

    #[test]
    #[should_panic(expected = "field destination.ip")]
    fn a_missing_field_is_null() {
        assert_fields(&event(), json!({"destination": {"ip": "10.0.1.15"}}));
    }
}
