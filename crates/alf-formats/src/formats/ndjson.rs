//! `ndjson`: generic newline-delimited JSON. Each object line becomes one event: a
//! `@timestamp`, `timestamp`, `time` or `eventTime` field is used for `@timestamp`, the
//! whole record is kept as `message` (the `event.original` semantics), and the parsed
//! object is kept under `aws.ndjson` for searching. Non-JSON lines are forwarded raw
//! with a parse-failure tag.


use crate::driver::{LineOutcome, 
    LineContext, LineParser,
};
use crate::event::Event;
use crate::registry::{ContentClue, FirstLine, FormatSpec, Reader};
use crate::util;

/// One event per JSON line.
#[derive(Debug, Default)]
pub struct NdjsonParser;

const TIME_KEYS: [&str; 5] = ["@timestamp", "timestamp", "time", "eventTime", "Timestamp"];

impl LineParser for NdjsonParser {
    fn parse_line(&mut self, line: &str, _cx: &LineContext<'_>, out: &mut Vec<Event>) -> LineOutcome {
        let value: serde_json::Value = serde_json::from_str(line)?;
        let mut ev = Event::new();
        if let serde_json::Value::Object(map) = &value {
            let ts = TIME_KEYS.iter().find_map(|k| match map.get(*k)? {
                serde_json::Value::String(s) => util::iso_timestamp(s),
                serde_json::Value::Number(n) => {
                    let n = n.as_i64()?;
                    // Heuristic: epoch milliseconds are > 10^11 (after 1973).
                    if n > 100_000_000_000 {
                        util::epoch_millis(n)
                    } else {
                        util::epoch_secs(n)
                    }
                }
                _ => None,
            });
            ev.set_opt("@timestamp", ts);
        }
        ev.set("message", line.to_owned());
        ev.set("aws.ndjson", value);
        out.push(ev);
        Ok(true)
    }
}

/// Any JSON, one value per line: kept whole under `aws.ndjson`.
pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "ndjson",
    dataset: "aws.ndjson",
    example_key: "apps/checkout/2024/03/15/part-0000.json.gz",
    key_clues: &[],
    // JSON that no AWS format's clue claims.
    content_clues: &[ContentClue {
        rank: u16::MAX,
        what: "JSON",
        first_line: FirstLine::Json,
        matches: |_| true,
    }],
    skip: None,
    options: &[],
    reader: Reader::Lines(|_, _| Box::new(NdjsonParser)),
};

#[cfg(test)]
mod tests {
    use crate::Format;

    #[test]
    fn json_lines_and_a_broken_line() {
        let text = "{\"time\":\"2024-05-01T10:00:00+02:00\",\"a\":1}\n{not json\n{\"timestamp\":1714550400000}\n";
        let (out, stats) = crate::parse_for_test(Format::Ndjson, text);
        assert_eq!((stats.events, stats.malformed), (3, 1));
        assert_eq!(out[0].get_str("@timestamp"), Some("2024-05-01T08:00:00Z"));
        assert_eq!(out[0].to_json()["aws"]["ndjson"]["a"], 1);
        assert_eq!(out[1].get_str("event.original"), Some("{not json"));
        assert_eq!(out[2].get_str("@timestamp"), Some("2024-05-01T08:00:00Z"));
    }
}
