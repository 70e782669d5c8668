//! One JSON object per line (WAF, Network Firewall, Route 53 resolver query logs, and
//! one record of the JSON-records formats when another format carries it): the line
//! is parsed as an object and handed to the format's mapping function. The line driver
//! around it ([`crate::driver::drive_lines`]) bounds the line length and forwards
//! lines that fail raw.

use serde_json::Value as J;

use crate::driver::{LineContext, LineOutcome, LineParser, RecordError};
use crate::event::Event;
use crate::readers::json_records::JsonMap;
use crate::registry::{MapJsonLine, MapJsonRecord};

/// A string member, with AWS's "no value" markers (`-`, empty) as `None`.
pub(crate) fn text<'a>(map: &'a JsonMap, key: &str) -> Option<&'a str> {
    crate::util::present(map.get(key).and_then(J::as_str))
}

/// A non-negative integer given as a JSON number or a numeric string (WAF and Network
/// Firewall TLS logs write some numbers as strings).
pub(crate) fn number(v: Option<&J>) -> Option<u64> {
    match v? {
        J::Number(n) => n.as_u64(),
        J::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Keeps the members of `map` that no mapping took (not in `mapped`, not null) under
/// `parent`, so that a field AWS adds later is still forwarded.
pub(crate) fn keep_unmapped(ev: &mut Event, parent: &'static str, map: &JsonMap, mapped: &[&str]) {
    for (key, value) in map {
        if !mapped.contains(&key.as_str()) && !value.is_null() {
            ev.set_dyn(parent, key, value.clone());
        }
    }
}

/// Parses a line that must hold one JSON object.
pub fn json_object_line(line: &str) -> Result<JsonMap, RecordError> {
    match serde_json::from_str(line)? {
        J::Object(map) => Ok(map),
        _ => Err(RecordError::Other("record is not a JSON object".into())),
    }
}

/// Parses each line as one JSON object and maps it with `F`: the JSON-lines reader of
/// a format ([`json_lines`]), and single records of a JSON-records format
/// ([`json_record`]).
pub(crate) struct JsonObjects<F>(F);

impl<F> LineParser for JsonObjects<F>
where
    F: FnMut(JsonMap, &LineContext<'_>) -> Result<Event, RecordError>,
{
    fn parse_line(
        &mut self,
        line: &str,
        cx: &LineContext<'_>,
        out: &mut Vec<Event>,
    ) -> LineOutcome {
        out.push((self.0)(json_object_line(line)?, cx)?);
        Ok(true)
    }
}

/// The JSON-lines reader of a format: each line one object, mapped by the format.
pub(crate) fn json_lines(map: MapJsonLine) -> impl LineParser {
    JsonObjects(move |record: JsonMap, cx: &LineContext<'_>| map(record, cx))
}

/// One record of a JSON-records format given on its own (see
/// [`crate::Format::record_parser`]).
pub(crate) fn json_record(map: MapJsonRecord) -> impl LineParser {
    JsonObjects(move |record: JsonMap, cx: &LineContext<'_>| map(cx, record))
}
