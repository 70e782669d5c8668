//! `lines`: the fallback for text nobody recognised. Each non-empty line becomes one
//! event with the text in `message` (and `event.original`), so nothing is dropped.


use crate::driver::{LineOutcome, 
    LineContext, LineParser,
};
use crate::event::Event;
use crate::registry::{FormatSpec, Reader};

/// One event per line, text kept as is.
#[derive(Debug, Default)]
pub struct LinesParser;

impl LineParser for LinesParser {
    fn parse_line(&mut self, line: &str, _cx: &LineContext<'_>, out: &mut Vec<Event>) -> LineOutcome {
        let mut ev = Event::new();
        ev.set("message", line.to_owned());
        ev.set("event.original", line.to_owned());
        out.push(ev);
        Ok(true)
    }
}

/// Plain lines: what nothing else recognises (detection falls back to it).
pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "lines",
    dataset: "aws.lines",
    example_key: "apps/legacy/2024/03/15/messages.log",
    key_clues: &[],
    content_clues: &[],
    skip: None,
    options: &[],
    reader: Reader::Lines(|_, _| Box::new(LinesParser)),
};

#[cfg(test)]
mod tests {
    use crate::Format;

    #[test]
    fn every_line_is_kept_as_message() {
        let (out, stats) =
            crate::parse_for_test(Format::Lines, "hello world\n\nsecond X-Amz-Signature=abc\n");
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
