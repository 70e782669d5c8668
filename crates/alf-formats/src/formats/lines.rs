//! `lines`: the fallback for text nobody recognised. Each non-empty line becomes one
//! event with the text in `message` (and `event.original`), so nothing is dropped.

use std::io::BufRead;

use crate::driver::{
    EventSink, LineContext, LineParser, ObjectParse, ParseError, RecordError, drive_lines,
};
use crate::event::Event;

/// One event per line, text kept as is.
#[derive(Debug, Default)]
pub struct LinesParser;

impl LineParser for LinesParser {
    fn parse_line(
        &mut self,
        line: &str,
        _cx: &LineContext<'_>,
        out: &mut Vec<Event>,
    ) -> Result<bool, RecordError> {
        let mut ev = Event::new();
        ev.set("message", line.to_owned());
        ev.set("event.original", line.to_owned());
        out.push(ev);
        Ok(true)
    }
}

pub fn parse(
    reader: &mut dyn BufRead,
    cx: &mut ObjectParse<'_>,
    sink: &mut dyn EventSink,
) -> Result<(), ParseError> {
    drive_lines(reader, cx, &mut LinesParser, sink)
}

#[cfg(test)]
mod tests {
    use crate::{Enricher, Format, ObjectInfo, ParseOptions, parse_object};

    #[test]
    fn every_line_is_kept_as_message() {
        let mut out = Vec::new();
        let mut r: &[u8] = b"hello world\n\nsecond X-Amz-Signature=abc\n";
        let stats = parse_object(
            Format::Lines,
            &mut r,
            &ObjectInfo::default(),
            &ParseOptions::default(),
            &Enricher::new(),
            &mut out,
        )
        .unwrap();
        assert_eq!(stats.events, 2);
        assert_eq!(
            out[1].get_str("message"),
            Some("second X-Amz-Signature=abc")
        );
        assert_eq!(out[1].get_str("event.dataset"), Some("aws.lines"));
        let json = out[1].to_json_string(Some(&crate::Redactor::new()));
        assert!(json.contains("X-Amz-Signature=REDACTED"), "{json}");
        assert!(!json.contains("abc"));
    }
}
