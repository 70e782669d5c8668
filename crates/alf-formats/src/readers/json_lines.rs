//! One JSON object per line (WAF, Network Firewall, Route 53 resolver query logs, and
//! one record of the JSON-records formats when another format carries it): the line
//! is parsed as an object and handed to the format's mapping function. The line driver
//! around it ([`crate::driver::drive_lines`]) bounds the line length and forwards
//! lines that fail raw.

use serde_json::Value as J;

use crate::driver::{LineContext, LineParser, RecordError};
use crate::event::Event;
use crate::readers::json_records::JsonMap;
use crate::registry::{MapJsonLine, MapJsonRecord};

/// Parses a line that must hold one JSON object.
pub fn json_object_line(line: &str) -> Result<JsonMap, RecordError> {
    match serde_json::from_str(line)? {
        J::Object(map) => Ok(map),
        _ => Err(RecordError::Other("record is not a JSON object".into())),
    }
}

/// The JSON-lines reader of a format: each line one object, mapped by the format.
pub(crate) struct JsonLines(pub(crate) MapJsonLine);

impl LineParser for JsonLines {
    fn parse_line(
        &mut self,
        line: &str,
        cx: &LineContext<'_>,
        out: &mut Vec<Event>,
    ) -> Result<bool, RecordError> {
        let map = json_object_line(line)?;
        out.push((self.0)(&map, cx)?);
        Ok(true)
    }
}

/// One record of a JSON-records format given on its own (see
/// [`crate::Format::record_parser`]).
pub(crate) struct JsonRecord(pub(crate) MapJsonRecord);

impl LineParser for JsonRecord {
    fn parse_line(
        &mut self,
        line: &str,
        cx: &LineContext<'_>,
        out: &mut Vec<Event>,
    ) -> Result<bool, RecordError> {
        let map = json_object_line(line)?;
        out.push((self.0)(cx, map)?);
        Ok(true)
    }
}
