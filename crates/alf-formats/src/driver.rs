//! Streaming records out of an object: line reading with a length bound, the fields
//! every event carries, deterministic ids, and the raw-event fallback for records that
//! cannot be parsed.

use std::borrow::Cow;
use std::io::{self, BufRead};
use std::sync::Arc;

use crate::enrich::Enricher;
use crate::event::{Event, Value};
use crate::{ECS_VERSION, Format, ObjectInfo, ParseOptions, util};

/// Longest line a line-oriented format accepts. Longer lines are reported as malformed
/// (with their first [`ORIGINAL_KEEP`] bytes) so memory stays bounded whatever the input.
pub const MAX_LINE: usize = 4 * 1024 * 1024;
/// How much of an over-long or undecodable record is kept in its raw error event.
pub const ORIGINAL_KEEP: usize = 64 * 1024;

/// The consumer asked parsing to stop (shutdown, or the downstream went away).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the event consumer stopped")]
pub struct Stop;

/// Receives the events of one object, in order.
pub trait EventSink {
    /// Takes one event. Returning `Err(Stop)` ends parsing with [`ParseError::Stopped`].
    fn emit(&mut self, event: Event) -> Result<(), Stop>;
    /// Told about each record that could not be parsed (after its raw event was
    /// emitted), with the 1-based line number and the reason; for logging and counting.
    fn malformed(&mut self, _line: u64, _reason: &str) {}
}

impl EventSink for Vec<Event> {
    fn emit(&mut self, event: Event) -> Result<(), Stop> {
        self.push(event);
        Ok(())
    }
}

/// Why an object could not be parsed to the end.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The bytes could not be read (truncated compression stream, network error).
    #[error("reading the object failed: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Stopped(#[from] Stop),
}

/// Why one record could not be parsed. The record is still forwarded raw.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("expected {expected} fields, found {found}")]
    FieldCount { expected: usize, found: usize },
    #[error("invalid {field}: {value:?}")]
    InvalidField { field: &'static str, value: String },
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Other(String),
}

impl RecordError {
    pub fn invalid(field: &'static str, value: &str) -> Self {
        RecordError::InvalidField {
            field,
            value: util::truncate_at_char(value, 200).to_owned(),
        }
    }
}

impl From<serde_json::Error> for RecordError {
    fn from(e: serde_json::Error) -> Self {
        RecordError::Json(e.to_string())
    }
}

/// Counts for one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseStats {
    /// Records read (lines for line formats, array elements for JSON documents).
    pub records: u64,
    /// Events emitted, including raw events for malformed records.
    pub events: u64,
    /// Records that could not be parsed (forwarded raw).
    pub malformed: u64,
    /// Header and comment lines consumed without an event.
    pub headers: u64,
    /// Decompressed bytes read.
    pub bytes: u64,
    /// Set when the whole object was deliberately skipped (e.g. CloudTrail digests).
    pub skipped: Option<String>,
}

/// Per-object state handed to format parsers.
pub struct ObjectParse<'a> {
    pub format: Format,
    pub object: &'a ObjectInfo,
    pub options: &'a ParseOptions,
    pub enricher: &'a Enricher,
    pub stats: ParseStats,
    id_prefix: Vec<u8>,
    /// `id_prefix` followed by the record and index bytes of the last id: reused so
    /// that [`ObjectParse::emit`] does not allocate a buffer per event.
    id_buf: Vec<u8>,
    log_path: Arc<str>,
    bucket: Arc<str>,
    key: Arc<str>,
    /// Line number and byte offset just before the first line [`drive_lines`] reads:
    /// zero for a whole object (see [`ObjectParse::resume_at`]).
    resume_line: u64,
    resume_offset: u64,
}

impl<'a> ObjectParse<'a> {
    pub fn new(
        format: Format,
        object: &'a ObjectInfo,
        options: &'a ParseOptions,
        enricher: &'a Enricher,
    ) -> Self {
        let mut id_prefix =
            Vec::with_capacity(object.bucket.len() + object.key.len() + object.version.len() + 3);
        for part in [&object.bucket, &object.key, &object.version] {
            id_prefix.extend_from_slice(part.as_bytes());
            id_prefix.push(0);
        }
        let log_path: Arc<str> = if object.bucket.is_empty() {
            object.key.as_str().into()
        } else {
            format!("s3://{}/{}", object.bucket, object.key).into()
        };
        ObjectParse {
            format,
            object,
            options,
            enricher,
            stats: ParseStats::default(),
            id_buf: id_prefix.clone(),
            id_prefix,
            log_path,
            bucket: object.bucket.as_str().into(),
            key: object.key.as_str().into(),
            resume_line: 0,
            resume_offset: 0,
        }
    }

    /// Continues the numbering of an object part of which was read elsewhere: the next
    /// line [`drive_lines`] reads is line `line + 1` at byte `offset`. A block of
    /// [`crate::parallel`] thereby gets the event ids, `log.offset` values and line
    /// numbers the whole-object parse gives it.
    pub fn resume_at(&mut self, line: u64, offset: u64) {
        self.resume_line = line;
        self.resume_offset = offset;
    }

    /// Deterministic id for the `index`-th event of record `record` (1-based line
    /// number for line formats): the same object version always yields the same ids,
    /// so an intake can drop the duplicates of a redelivery.
    pub fn event_id(&self, record: u64, index: u32) -> String {
        let mut buf = Vec::with_capacity(self.id_prefix.len() + 12);
        buf.extend_from_slice(&self.id_prefix);
        hashed_id(&mut buf, self.id_prefix.len(), record, index)
    }

    /// [`ObjectParse::event_id`] without a new buffer per call.
    fn next_event_id(&mut self, record: u64, index: u32) -> String {
        hashed_id(&mut self.id_buf, self.id_prefix.len(), record, index)
    }

    /// Adds the fields every event carries and emits it.
    /// `raw` is the record text, kept as `event.original` when configured.
    pub fn emit(
        &mut self,
        sink: &mut dyn EventSink,
        mut ev: Event,
        record: u64,
        index: u32,
        offset: u64,
        raw: Option<&str>,
    ) -> Result<(), Stop> {
        // `set_default` keeps what the parser set: its own `event.id`, `event.kind`,
        // `event.original`, and `event.dataset` (formats that carry other formats'
        // records, CloudWatch Logs and EventBridge, label each record as its own format
        // would). Recorded like any other field, so a flat event stays flat.
        ev.set_default("event.id", self.next_event_id(record, index));
        ev.set_default("event.kind", "event");
        ev.set("event.module", "aws");
        ev.set_default("event.dataset", self.format.dataset());
        ev.set_default("cloud.provider", "aws");
        ev.set("ecs.version", ECS_VERSION);
        if !self.object.bucket.is_empty() {
            ev.set(
                "aws.s3.bucket.name",
                Value::Shared(Arc::clone(&self.bucket)),
            );
        }
        if !self.object.key.is_empty() {
            ev.set("aws.s3.object.key", Value::Shared(Arc::clone(&self.key)));
        }
        if !self.log_path.is_empty() {
            ev.set("log.file.path", Value::Shared(Arc::clone(&self.log_path)));
        }
        ev.set("log.offset", offset);
        if self.options.keep_original
            && let Some(raw) = raw
        {
            ev.set_default("event.original", raw.to_owned());
        }
        self.stats.events += 1;
        sink.emit(ev)
    }

    /// Emits the raw event for a record that could not be parsed, and tells the sink.
    pub fn emit_malformed(
        &mut self,
        sink: &mut dyn EventSink,
        raw: &str,
        record: u64,
        offset: u64,
        reason: &str,
    ) -> Result<(), Stop> {
        let failure = Malformed {
            raw,
            unit: "line",
            record,
            offset,
            reason,
        };
        self.emit_malformed_event(sink, Event::new(), &failure)
    }

    /// Completes `ev` (which may already hold what is known of the record, such as its
    /// envelope) as the raw event of a record that could not be parsed, emits it and
    /// tells the sink: the one shape of every `_parse_failure` event.
    pub(crate) fn emit_malformed_event(
        &mut self,
        sink: &mut dyn EventSink,
        mut ev: Event,
        failure: &Malformed<'_>,
    ) -> Result<(), Stop> {
        let Malformed {
            raw,
            unit,
            record,
            offset,
            reason,
        } = *failure;
        let kept = util::truncate_at_char(raw, ORIGINAL_KEEP);
        ev.set("message", kept.to_owned());
        ev.set("event.original", kept.to_owned());
        ev.set("event.kind", "pipeline_error");
        ev.set("error.type", "parse_error");
        ev.set(
            "error.message",
            format!("{} {unit} {record}: {reason}", self.format.name()),
        );
        ev.set("tags", Value::Arr(vec![Value::Static("_parse_failure")]));
        self.stats.malformed += 1;
        self.emit(sink, ev, record, 0, offset, None)?;
        sink.malformed(record, reason);
        Ok(())
    }
}

/// A record that could not be parsed, as [`ObjectParse::emit_malformed_event`] reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Malformed<'a> {
    /// The record's text (cut to [`ORIGINAL_KEEP`] bytes in the event).
    pub(crate) raw: &'a str,
    /// What the error message counts: `line` or `record`.
    pub(crate) unit: &'a str,
    /// The record's number in the object.
    pub(crate) record: u64,
    /// Offset of the record's first byte.
    pub(crate) offset: u64,
    /// Why it could not be parsed.
    pub(crate) reason: &'a str,
}

/// The id of `record`/`index`: `buf` holds the object's id prefix in its first
/// `prefix` bytes (anything after is replaced).
fn hashed_id(buf: &mut Vec<u8>, prefix: usize, record: u64, index: u32) -> String {
    buf.truncate(prefix);
    buf.extend_from_slice(&record.to_le_bytes());
    buf.extend_from_slice(&index.to_le_bytes());
    hex128(xxhash_rust::xxh3::xxh3_128(buf))
}

/// `{:032x}` of a 128-bit hash, written by hand: `format!` goes through the formatting
/// machinery and a growing String for every event.
fn hex128(h: u128) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Digits into an array, then one copy: pushing `char`s one by one checked each
    // one's length and the capacity, 32 times an event.
    let mut digits = [0u8; 32];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((h >> ((31 - i) * 4)) & 0xf) as usize];
    }
    std::str::from_utf8(&digits).unwrap_or_default().to_owned()
}

/// What [`LineParser::parse_line`] made of a line: `Ok(true)` a record (its events
/// pushed), `Ok(false)` a header or comment line (no event), `Err` a record that cannot
/// be parsed (the driver forwards it raw).
pub type LineOutcome = Result<bool, RecordError>;

/// A line-oriented format: one record per line, maybe with header lines.
pub trait LineParser {
    /// Parses one line (without its line ending) and pushes zero or more events to
    /// `out`. Header and comment lines push nothing and return `Ok(false)`; records
    /// return `Ok(true)`. An error makes the driver forward the line raw.
    fn parse_line(
        &mut self,
        line: &str,
        cx: &LineContext<'_>,
        out: &mut Vec<Event>,
    ) -> Result<bool, RecordError>;
}

/// What a [`LineParser`] may look at besides the line.
pub struct LineContext<'a> {
    pub enricher: &'a Enricher,
    pub options: &'a ParseOptions,
    pub object: &'a ObjectInfo,
    /// 1-based line number.
    pub line: u64,
}

/// Reads one line of at most `max` bytes into `buf` (without `\n`/`\r\n`).
/// Returns the bytes consumed (0 at end of input) and whether the line was cut.
pub fn read_line_bounded(
    reader: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<(usize, bool)> {
    buf.clear();
    let mut consumed = 0;
    let mut truncated = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        let (chunk, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        let room = max.saturating_sub(buf.len());
        if chunk.len() > room {
            truncated = true;
        }
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = done.unwrap_or(available.len());
        reader.consume(used);
        consumed += used;
        if done.is_some() {
            break;
        }
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok((consumed, truncated))
}

/// The non-blank lines of an object, read at most [`MAX_LINE`] bytes each, with their
/// number and offset; every byte read is counted in [`ParseStats::bytes`]. The line
/// loop of [`drive_lines`] and of the formats whose records span lines (Redshift).
pub(crate) struct NumberedLines {
    buf: Vec<u8>,
    number: u64,
    offset: u64,
}

/// One line of [`NumberedLines`].
pub(crate) struct Line<'a> {
    /// The line without its ending (invalid UTF-8 replaced).
    pub(crate) text: Cow<'a, str>,
    /// 1 for the object's first line.
    pub(crate) number: u64,
    /// Offset of the line's first byte.
    pub(crate) offset: u64,
    /// The line was longer than [`MAX_LINE`]: `text` is its beginning.
    pub(crate) truncated: bool,
}

impl NumberedLines {
    /// Lines numbered from `number + 1`, the first at `offset` (a resumed object).
    pub(crate) fn new(number: u64, offset: u64) -> Self {
        NumberedLines {
            buf: Vec::with_capacity(4096),
            number,
            offset,
        }
    }

    /// The next non-blank line; `None` at the end of the input.
    pub(crate) fn next_line(
        &mut self,
        reader: &mut dyn BufRead,
        stats: &mut ParseStats,
    ) -> Result<Option<Line<'_>>, ParseError> {
        loop {
            let (consumed, truncated) = read_line_bounded(reader, &mut self.buf, MAX_LINE)?;
            if consumed == 0 {
                return Ok(None);
            }
            self.number += 1;
            let offset = self.offset;
            self.offset += consumed as u64;
            stats.bytes += consumed as u64;
            if is_blank(&self.buf) {
                continue;
            }
            // Valid UTF-8 is the norm: the strict check is much faster than the lossy one.
            let text = match std::str::from_utf8(&self.buf) {
                Ok(t) => Cow::Borrowed(t),
                Err(_) => String::from_utf8_lossy(&self.buf),
            };
            return Ok(Some(Line {
                text,
                number: self.number,
                offset,
                truncated,
            }));
        }
    }
}

/// True when the line, read as (lossy) UTF-8, is only whitespace. Decided before the
/// line's text is borrowed for the caller, and without decoding it when its first
/// byte that is no ASCII blank is a visible ASCII character (the common case).
fn is_blank(buf: &[u8]) -> bool {
    match buf.iter().find(|b| !b.is_ascii_whitespace()) {
        None => true,
        // U+000B is whitespace to `str::trim` but not to `is_ascii_whitespace`.
        Some(&b) if b.is_ascii() && b != 0x0B => false,
        Some(_) => String::from_utf8_lossy(buf).trim().is_empty(),
    }
}

/// Drives a [`LineParser`] over an object: empty lines are skipped, every record
/// becomes events, malformed records become raw events.
pub fn drive_lines(
    reader: &mut dyn BufRead,
    cx: &mut ObjectParse<'_>,
    parser: &mut dyn LineParser,
    sink: &mut dyn EventSink,
) -> Result<(), ParseError> {
    let mut lines = NumberedLines::new(cx.resume_line, cx.resume_offset);
    let mut out = Vec::with_capacity(4);
    while let Some(line) = lines.next_line(reader, &mut cx.stats)? {
        let Line {
            text,
            number: line_no,
            offset: line_offset,
            truncated,
        } = line;
        if truncated {
            cx.stats.records += 1;
            cx.emit_malformed(
                sink,
                &text,
                line_no,
                line_offset,
                &format!("line longer than {MAX_LINE} bytes"),
            )?;
            continue;
        }
        let lcx = LineContext {
            enricher: cx.enricher,
            options: cx.options,
            object: cx.object,
            line: line_no,
        };
        out.clear();
        match parser.parse_line(&text, &lcx, &mut out) {
            Ok(false) => cx.stats.headers += 1,
            Ok(true) => {
                cx.stats.records += 1;
                for (i, ev) in out.drain(..).enumerate() {
                    cx.emit(sink, ev, line_no, i as u32, line_offset, Some(&text))?;
                }
            }
            Err(e) => {
                cx.stats.records += 1;
                cx.emit_malformed(sink, &text, line_no, line_offset, &e.to_string())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Upper;
    impl LineParser for Upper {
        fn parse_line(
            &mut self,
            line: &str,
            _: &LineContext<'_>,
            out: &mut Vec<Event>,
        ) -> LineOutcome {
            if line.starts_with('#') {
                return Ok(false);
            }
            if line.starts_with("bad") {
                return Err(RecordError::Other("bad line".into()));
            }
            let mut e = Event::new();
            e.set("message", line.to_uppercase());
            out.push(e);
            Ok(true)
        }
    }

    fn run(input: &[u8], opts: &ParseOptions) -> (Vec<Event>, ParseStats, Vec<(u64, String)>) {
        struct Sink(Vec<Event>, Vec<(u64, String)>);
        impl EventSink for Sink {
            fn emit(&mut self, e: Event) -> Result<(), Stop> {
                self.0.push(e);
                Ok(())
            }
            fn malformed(&mut self, line: u64, reason: &str) {
                self.1.push((line, reason.to_owned()));
            }
        }
        let obj = ObjectInfo {
            bucket: "b".into(),
            key: "k".into(),
            version: "v1".into(),
        };
        let en = Enricher::new();
        let mut cx = ObjectParse::new(Format::Lines, &obj, opts, &en);
        let mut sink = Sink(vec![], vec![]);
        let mut r: &[u8] = input;
        drive_lines(&mut r, &mut cx, &mut Upper, &mut sink).unwrap();
        (sink.0, cx.stats, sink.1)
    }

    #[test]
    fn lines_headers_blank_and_malformed() {
        let (events, stats, bad) = run(b"#hdr\r\none\r\n\nbad one\ntwo", &ParseOptions::default());
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].get_str("message"), Some("ONE"));
        assert_eq!(events[0].get_str("log.file.path"), Some("s3://b/k"));
        assert_eq!(events[0].get("log.offset"), Some(&Value::U64(6)));
        assert_eq!(events[1].get_str("event.kind"), Some("pipeline_error"));
        assert_eq!(events[1].get_str("event.original"), Some("bad one"));
        assert_eq!(events[2].get_str("message"), Some("TWO"));
        assert_eq!(stats.records, 3);
        assert_eq!(stats.headers, 1);
        assert_eq!(stats.malformed, 1);
        assert_eq!(bad, vec![(4, "bad line".to_string())]);
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let (a, _, _) = run(b"one\ntwo\n", &ParseOptions::default());
        let (b, _, _) = run(b"one\ntwo\n", &ParseOptions::default());
        assert_eq!(a[0].get_str("event.id"), b[0].get_str("event.id"));
        assert_ne!(a[0].get_str("event.id"), a[1].get_str("event.id"));
        assert_eq!(a[0].get_str("event.id").unwrap().len(), 32);
        // The reused buffer of `emit` gives the ids of the public `event_id`.
        let obj = ObjectInfo {
            bucket: "b".into(),
            key: "k".into(),
            version: "v1".into(),
        };
        let (opts, en) = (ParseOptions::default(), Enricher::new());
        let cx = ObjectParse::new(Format::Lines, &obj, &opts, &en);
        assert_eq!(a[0].get_str("event.id"), Some(cx.event_id(1, 0).as_str()));
        assert_eq!(a[1].get_str("event.id"), Some(cx.event_id(2, 0).as_str()));
    }

    #[test]
    fn ids_are_32_lower_case_hex_digits_like_format() {
        for h in [
            0u128,
            1,
            0xabcdef,
            u128::MAX,
            1 << 127,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            assert_eq!(hex128(h), format!("{h:032x}"));
        }
    }

    #[test]
    fn keep_original_copies_the_line() {
        let opts = ParseOptions {
            keep_original: true,
            ..Default::default()
        };
        let (a, _, _) = run(b"one\n", &opts);
        assert_eq!(a[0].get_str("event.original"), Some("one"));
    }

    #[test]
    fn invalid_field_values_are_cut_on_a_char_boundary() {
        let value = "é".repeat(150);
        match RecordError::invalid("f", &value) {
            RecordError::InvalidField { value, .. } => assert_eq!(value.len(), 200),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn over_long_lines_are_bounded() {
        let mut buf = Vec::new();
        let mut r: &[u8] = b"abcdefghij\nxy\n";
        assert_eq!(read_line_bounded(&mut r, &mut buf, 4).unwrap(), (11, true));
        assert_eq!(buf, b"abcd");
        assert_eq!(read_line_bounded(&mut r, &mut buf, 4).unwrap(), (3, false));
        assert_eq!(buf, b"xy");
        assert_eq!(read_line_bounded(&mut r, &mut buf, 4).unwrap(), (0, false));
    }

    #[test]
    fn unicode_blank_lines_are_skipped_and_others_kept() {
        let text = "a\n\u{b}\n \u{3000}\t\r\n\u{b}b\n\u{3000}c\n";
        let (out, stats) = crate::parse_for_test(Format::Lines, text);
        let messages: Vec<_> = out.iter().map(|e| e.get_str("message")).collect();
        assert_eq!(
            messages,
            [Some("a"), Some("\u{b}b"), Some("\u{3000}c")],
            "{stats:?}"
        );
    }
}
