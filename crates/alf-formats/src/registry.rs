//! The format registry: every log format declares, in one [`FormatSpec`] beside its
//! parser, everything the rest of the system needs to know about it.
//!
//! * its name (configuration and command line) and `event.dataset`;
//! * how it is recognised: AWS delivery key layouts ([`KeyClue`]) and the first line of
//!   the decompressed object ([`ContentClue`]);
//! * how its records are read out of an object ([`Reader`]: lines, JSON lines, JSON
//!   records inside a document) and mapped to ECS;
//! * objects of its kind that hold no events ([`SkipRule`], CloudTrail digests);
//! * the options a configuration rule may set for it ([`OptionSpec`], VPC flow logs'
//!   custom field list), which the daemon passes through without knowing them.
//!
//! The list of formats is the `declare_formats!` invocation in [`crate::formats`]: one
//! line per format, which declares its module, its [`Format`] variant and its place in
//! the registry. Detection ([`crate::detect`]), dispatch ([`crate::parse_object`]),
//! option checking and the one-record API ([`Format::record_parser`]) all read the
//! registry, so adding a format is one module plus one line there.
//!
//! Why clues carry a rank instead of relying on registry order: detection must try the
//! most specific clue first across all formats (a `{"Records": ...}` document is
//! CloudTrail before it is generic JSON), and that order is a property of the clues,
//! not of where a format sits in the list.

use std::fmt;
use std::io::BufRead;
use std::str::FromStr;

use crate::driver::{
    EventSink, LineContext, LineParser, ObjectParse, ParseError, RecordError, drive_lines,
};
use crate::event::Event;
use crate::readers::json_lines::{json_lines, json_record};
use crate::readers::json_records::{self, JsonMap};
use crate::{ObjectInfo, ParseOptions};

pub use crate::formats::Format;

/// What the registry knows about one format. Each format module declares one as
/// `pub(crate) const SPEC`.
#[derive(Clone, Copy)]
pub struct FormatSpec {
    /// The configuration / command-line name (`vpc-flow`).
    pub name: &'static str,
    /// The `event.dataset` of this format's events (`aws.vpcflow`).
    pub dataset: &'static str,
    /// An S3 key in the layout AWS delivers this format with: documents the key clues,
    /// and serves tests and benchmarks that need a realistic key.
    pub example_key: &'static str,
    /// AWS delivery key layouts that identify the format.
    pub key_clues: &'static [KeyClue],
    /// First-line shapes that identify the format when the key does not.
    pub content_clues: &'static [ContentClue],
    /// Objects of this format that hold no events.
    pub skip: Option<SkipRule>,
    /// Options a `[[formats.rules]]` entry may set for this format.
    pub options: &'static [OptionSpec],
    /// How records are read and mapped.
    pub reader: Reader,
}

impl fmt::Debug for FormatSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormatSpec")
            .field("name", &self.name)
            .field("dataset", &self.dataset)
            .finish_non_exhaustive()
    }
}

/// The parts of an S3 key that key clues look at, computed once per object.
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    /// The whole key.
    pub key: &'a str,
    /// After the last `/`.
    pub file_name: &'a str,
    /// The whole key in ASCII lower case (AWS service names vary in case).
    pub lower: &'a str,
}

/// An AWS delivery key layout.
#[derive(Debug, Clone, Copy)]
pub struct KeyClue {
    /// Clues of all formats are tried lowest rank first.
    pub rank: u16,
    /// The layout, as logged with the detection reason.
    pub layout: &'static str,
    pub matches: fn(&KeyParts<'_>) -> bool,
}

/// What the first non-blank line of an object is, which decides which clues apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstLine {
    /// Starts with `{` or `[` (after leading spaces): given to JSON clues, trimmed.
    /// The line may be cut at [`crate::detect::SNIFF_BYTES`], so JSON clues look for
    /// keys rather than parse.
    Json,
    /// Anything else: given to text clues as is.
    Text,
}

/// Whether the (possibly cut) JSON `line` names every one of `keys` as a quoted string
/// (`"source"`): how JSON clues recognise a record without parsing it. Keys hold no
/// quote.
pub fn has_json_keys(line: &str, keys: &[&str]) -> bool {
    keys.iter().all(|key| {
        line.match_indices(key)
            .any(|(at, _)| line[..at].ends_with('"') && line[at + key.len()..].starts_with('"'))
    })
}

/// A shape of the first line of an object.
#[derive(Debug, Clone, Copy)]
pub struct ContentClue {
    /// Clues of all formats are tried lowest rank first.
    pub rank: u16,
    /// What was recognised, as logged with the detection reason.
    pub what: &'static str,
    pub first_line: FirstLine,
    pub matches: fn(&str) -> bool,
}

/// Objects that hold no events: the whole object is skipped, with a reason.
#[derive(Debug, Clone, Copy)]
pub struct SkipRule {
    /// Skip when the key contains this.
    pub key_contains: &'static str,
    pub reason: &'static str,
}

/// How a format's records come out of an object.
#[derive(Clone, Copy)]
pub enum Reader {
    /// One record per line (with the line driver: bounded lines, header lines, raw
    /// events for lines that fail). The function makes the parser of one object.
    Lines(NewLineParser),
    /// One JSON object per line, mapped by the function (see [`crate::readers::json_lines`]).
    JsonLines(MapJsonLine),
    /// JSON records, streamed one by one out of a document (`{"<wrapper>": [...]}`, a
    /// bare array, or one record per line): see [`crate::readers::json_records`].
    JsonRecords {
        /// Keys whose array value holds the records (`Records`).
        wrappers: &'static [&'static str],
        map: MapJsonRecord,
    },
    /// A reader of its own for layouts where one record holds several events or
    /// several formats (CloudWatch Logs subscription documents, EventBridge batches,
    /// multi-line Redshift queries): it streams the object itself.
    Object(ParseWholeObject),
}

/// Streams one object into `sink` (a [`Reader::Object`] format's own reader).
pub type ParseWholeObject =
    fn(&mut dyn BufRead, &mut ObjectParse<'_>, &mut dyn EventSink) -> Result<(), ParseError>;

/// Makes the line parser of one object.
pub type NewLineParser = fn(&ObjectInfo, &ParseOptions) -> Box<dyn LineParser>;
/// Maps one JSON-lines record. The mapper owns the record, so the members it keeps
/// as they are move into the event instead of being copied.
pub type MapJsonLine = fn(JsonMap, &LineContext<'_>) -> Result<Event, RecordError>;
/// Maps one JSON record taken out of a document.
pub type MapJsonRecord = fn(&LineContext<'_>, JsonMap) -> Result<Event, RecordError>;

/// Containers no reader understands. Forwarding their bytes as text lines would flood
/// the SIEM with garbage, so an object starting with one of these magic numbers is
/// refused whatever its format ([`crate::Decision::Refuse`]).
#[derive(Debug, Clone, Copy)]
pub struct RefusedContainer {
    /// Named in the error (`Apache Parquet`).
    pub name: &'static str,
    pub magic: &'static [u8],
}

/// None today. Apache Parquet (`PAR1`: VPC flow logs, CloudFront v2, Amazon Security
/// Lake) used to be refused here; [`crate::columnar`] reads it now, and the daemon
/// hands an object starting with [`crate::columnar::PARQUET_MAGIC`] to that reader
/// before detection (the schema, not these clues, says which format a Parquet file is).
pub const REFUSED_CONTAINERS: &[RefusedContainer] = &[];

/// The container an object starting with `head` is in, if no reader understands it.
pub fn refused_container(head: &[u8]) -> Option<&'static RefusedContainer> {
    REFUSED_CONTAINERS
        .iter()
        .find(|c| head.starts_with(c.magic))
}

// ---------------------------------------------------------------------------------
// Format options

/// A format option a configuration rule may set.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    /// The key in `[[formats.rules]]` (`vpc_flow_fields`).
    pub name: &'static str,
    pub kind: OptionKind,
}

/// The value an option takes.
#[derive(Debug, Clone, Copy)]
pub enum OptionKind {
    /// A non-empty list of strings; `example` shows one in the error for an empty list.
    StringList { example: &'static str },
}

/// A checked option value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionValue {
    Strings(Vec<String>),
}

/// The options of one format, set by a configuration rule. Opaque outside this crate:
/// the daemon checks them with [`Format::options_from`] and hands them back through
/// [`ParseOptions::format_options`] without knowing what they mean.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormatOptions {
    values: Vec<(&'static str, OptionValue)>,
}

impl FormatOptions {
    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The string list set for `name`, if any (for the format that declared it).
    pub(crate) fn strings(&self, name: &str) -> Option<&[String]> {
        self.values.iter().find_map(|(n, v)| match v {
            OptionValue::Strings(s) if *n == name => Some(s.as_slice()),
            OptionValue::Strings(_) => None,
        })
    }
}

/// Why an option of a rule was refused: `option` is its key, to name in the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {message}")]
pub struct OptionError {
    pub option: String,
    pub message: String,
}

// ---------------------------------------------------------------------------------
// Formats

impl Format {
    /// This format's registry entry.
    pub fn spec(self) -> &'static FormatSpec {
        crate::formats::spec_of(self)
    }

    /// The configuration / command-line name.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The `event.dataset` value of this format's events.
    pub fn dataset(self) -> &'static str {
        self.spec().dataset
    }

    /// Why objects with this `key` hold no events, if they do not.
    pub fn skip_reason(self, key: &str) -> Option<&'static str> {
        self.spec()
            .skip
            .filter(|rule| key.contains(rule.key_contains))
            .map(|rule| rule.reason)
    }

    /// Checks the options a configuration rule of this format sets (key, value as
    /// written). Every problem is reported, each naming its key.
    pub fn options_from<I>(self, raw: I) -> Result<FormatOptions, Vec<OptionError>>
    where
        I: IntoIterator<Item = (String, serde_json::Value)>,
    {
        let mut options = FormatOptions::default();
        let mut errors = Vec::new();
        for (key, value) in raw {
            match self.option_value(&key, value) {
                Ok((name, value)) => options.values.push((name, value)),
                Err(message) => errors.push(OptionError {
                    option: key,
                    message,
                }),
            }
        }
        if errors.is_empty() {
            Ok(options)
        } else {
            Err(errors)
        }
    }

    fn option_value(
        self,
        key: &str,
        value: serde_json::Value,
    ) -> Result<(&'static str, OptionValue), String> {
        let Some(spec) = self.spec().options.iter().find(|o| o.name == key) else {
            let owners: Vec<&str> = Format::ALL
                .iter()
                .filter(|f| f.spec().options.iter().any(|o| o.name == key))
                .map(|f| f.name())
                .collect();
            return Err(match owners.as_slice() {
                [] => {
                    let mut known: Vec<&str> = Format::ALL
                        .iter()
                        .flat_map(|f| f.spec().options.iter().map(|o| o.name))
                        .collect();
                    known.sort_unstable();
                    known.dedup();
                    format!(
                        "unknown key (a rule has bucket, key_prefix, key_regex, format, and the options of its format: {})",
                        known.join(", ")
                    )
                }
                [one] => format!("only applies to format = \"{one}\", not \"{self}\""),
                many => format!(
                    "only applies to formats {}, not \"{self}\"",
                    many.join(", ")
                ),
            });
        };
        match spec.kind {
            OptionKind::StringList { example } => {
                let serde_json::Value::Array(items) = value else {
                    return Err(format!("expected a list of strings, e.g. {example}"));
                };
                let strings: Option<Vec<String>> = items
                    .into_iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => Some(s),
                        _ => None,
                    })
                    .collect();
                match strings {
                    None => Err(format!("expected a list of strings, e.g. {example}")),
                    Some(s) if s.is_empty() => Err(format!("empty list ({example})")),
                    Some(s) => Ok((spec.name, OptionValue::Strings(s))),
                }
            }
        }
    }

    /// A parser for single records of this format, for formats that carry other
    /// formats' records (CloudWatch Logs subscriptions carry CloudTrail and VPC flow
    /// records). It keeps state between records like the format's own reader does
    /// (a VPC flow header line sets the layout of the records after it).
    pub fn record_parser(self, object: &ObjectInfo, options: &ParseOptions) -> RecordParser {
        let inner: Box<dyn LineParser> = match self.spec().reader {
            Reader::Lines(new) => new(object, options),
            Reader::JsonLines(map) => Box::new(json_lines(map)),
            Reader::JsonRecords { map, .. } => Box::new(json_record(map)),
            Reader::Object(_) => Box::new(NotOneByOne(self)),
        };
        RecordParser { inner }
    }
}

/// The record parser of a [`Reader::Object`] format: its records only make sense
/// inside their object, so each is refused (and forwarded raw by the caller).
struct NotOneByOne(Format);

impl LineParser for NotOneByOne {
    fn parse_line(
        &mut self,
        _line: &str,
        _cx: &LineContext<'_>,
        _out: &mut Vec<Event>,
    ) -> Result<bool, RecordError> {
        Err(RecordError::Other(format!(
            "{} records are read with their object, not one by one",
            self.0.name()
        )))
    }
}

/// Parses single records of one format: see [`Format::record_parser`].
pub struct RecordParser {
    inner: Box<dyn LineParser>,
}

impl RecordParser {
    /// Parses `record` (one line, or one JSON record) and pushes its events to `out`,
    /// without the fields the driver adds when it emits them. `Ok(false)`: a header
    /// line, no event.
    pub fn parse(
        &mut self,
        record: &str,
        cx: &LineContext<'_>,
        out: &mut Vec<Event>,
    ) -> Result<bool, RecordError> {
        self.inner.parse_line(record, cx, out)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown format name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown format `{0}` (expected one of: {names})", names = format_names())]
pub struct UnknownFormat(pub String);

/// Every format name, comma-separated, in registry order.
pub fn format_names() -> String {
    Format::ALL.map(Format::name).join(", ")
}

impl FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

/// Streams the records of one object of `format` into `sink` with the format's reader.
pub(crate) fn parse(
    format: Format,
    reader: &mut dyn BufRead,
    cx: &mut ObjectParse<'_>,
    sink: &mut dyn EventSink,
) -> Result<(), ParseError> {
    match format.spec().reader {
        Reader::Lines(new) => {
            let mut parser = new(cx.object, cx.options);
            drive_lines(reader, cx, parser.as_mut(), sink)
        }
        Reader::JsonLines(map) => drive_lines(reader, cx, &mut json_lines(map), sink),
        Reader::JsonRecords { wrappers, map } => {
            json_records::parse_records(reader, cx, sink, wrappers, map)
        }
        Reader::Object(parse) => parse(reader, cx, sink),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{self, Decision, FormatDetector};
    use crate::enrich::Enricher;

    #[test]
    fn json_keys_are_found_quoted_only() {
        let line = r#"{"sourceIPAddress":"10.0.0.1","my-source":"x","account":"source","detail-ty"#;
        for (keys, found) in [
            (&["account"][..], true),
            (&["source"], true),
            (&["sourceIPAddress", "account"], true),
            (&["IPAddress"], false),
            (&["account", "detail-type"], false),
            (&["detail-ty"], false),
        ] {
            let by_contains = keys.iter().all(|k| line.contains(&format!("\"{k}\"")));
            assert_eq!(by_contains, found, "{keys:?}");
            assert_eq!(has_json_keys(line, keys), found, "{keys:?}");
        }
    }

    #[test]
    fn names_and_datasets_are_unique_and_round_trip() {
        for (i, a) in Format::ALL.iter().enumerate() {
            assert_eq!(a.name().parse::<Format>().ok(), Some(*a));
            for b in &Format::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
                assert_ne!(a.dataset(), b.dataset());
            }
        }
        let err = "nope".parse::<Format>().unwrap_err().to_string();
        assert!(err.contains("cloudfront, s3-access, elb"), "{err}");
    }

    /// Each format's example key is recognised as that format by its key clues alone,
    /// so the clues and the documented layout agree (and no other format's clue ranks
    /// before them).
    #[test]
    fn every_example_key_is_recognised_as_its_format() {
        for format in Format::ALL {
            let spec = format.spec();
            let decided = detect::by_key(spec.example_key).map(|(f, _)| f);
            if spec.key_clues.is_empty() {
                assert_eq!(decided, None, "{format}: {}", spec.example_key);
            } else {
                assert_eq!(decided, Some(format), "{}", spec.example_key);
            }
        }
    }

    #[test]
    fn parquet_is_no_longer_refused() {
        // The columnar reader takes Parquet objects before detection; the detector
        // itself has no container left to refuse.
        let head = b"PAR1\x15\x04\x15\x00";
        assert!(crate::columnar::is_parquet(head));
        assert!(refused_container(head).is_none());
        for format in Format::ALL {
            assert!(!matches!(
                FormatDetector::decide_requested(format, "x.log", head),
                Decision::Refuse { .. }
            ));
        }
    }

    #[test]
    fn the_digest_skip_is_the_same_everywhere() {
        let key = "AWSLogs/1/CloudTrail-Digest/us-east-1/x.json.gz";
        let reason = Format::CloudTrail.skip_reason(key).unwrap();
        let skip = Decision::Skip { reason };
        assert_eq!(FormatDetector::default().decide("b", key, b"{}"), skip);
        assert_eq!(
            FormatDetector::decide_requested(Format::CloudTrail, key, b"{}"),
            skip
        );
        // Only CloudTrail declares it: asked for another format, the object is read.
        assert!(matches!(
            FormatDetector::decide_requested(Format::Ndjson, key, b"{}"),
            Decision::Parse { .. }
        ));
    }

    #[test]
    fn options_are_checked_by_the_format_that_declares_them() {
        let fields = || ("vpc_flow_fields".to_owned(), serde_json::json!(["srcaddr"]));
        let options = Format::VpcFlow.options_from([fields()]).unwrap();
        assert_eq!(
            options.strings("vpc_flow_fields"),
            Some(&["srcaddr".to_owned()][..])
        );
        let errors = Format::Waf
            .options_from([fields(), ("bukcet".to_owned(), serde_json::json!("b"))])
            .unwrap_err();
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "vpc_flow_fields: only applies to format = \"vpc-flow\", not \"waf\"",
                "bukcet: unknown key (a rule has bucket, key_prefix, key_regex, format, and the options of its format: vpc_flow_fields)",
            ]
        );
        for bad in [
            serde_json::json!([]),
            serde_json::json!("srcaddr"),
            serde_json::json!([1]),
        ] {
            let errors = Format::VpcFlow
                .options_from([("vpc_flow_fields".to_owned(), bad.clone())])
                .unwrap_err();
            assert_eq!(errors.len(), 1, "{bad}");
        }
    }

    /// One call parses a record of any format, as a format carrying other formats'
    /// records (CloudWatch Logs) needs: a CloudTrail record and a VPC flow record.
    #[test]
    fn a_record_of_any_format_is_one_call() {
        let object = ObjectInfo::default();
        let options = ParseOptions::default();
        let enricher = Enricher::new();
        let cx = LineContext {
            enricher: &enricher,
            options: &options,
            object: &object,
            line: 1,
        };
        let mut out = Vec::new();
        let cloudtrail = r#"{"eventVersion":"1.08","eventTime":"2024-05-01T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","eventID":"6f1a2b3c-0000-4000-8000-000000000001"}"#;
        let parsed = Format::CloudTrail
            .record_parser(&object, &options)
            .parse(cloudtrail, &cx, &mut out);
        assert_eq!(parsed, Ok(true));
        assert_eq!(out[0].get_str("event.action"), Some("GetObject"));
        assert_eq!(out[0].get_str("source.ip"), Some("198.51.100.7"));

        out.clear();
        let mut vpc = Format::VpcFlow.record_parser(&object, &options);
        let flow = "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK";
        assert_eq!(vpc.parse(flow, &cx, &mut out), Ok(true));
        assert_eq!(out[0].get_str("source.ip"), Some("172.31.16.139"));
        assert!(vpc.parse("not a flow record", &cx, &mut out).is_err());
    }
}
