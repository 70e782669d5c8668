//! `ndjson`: generic newline-delimited JSON. Each object line becomes one event: a
//! `@timestamp`, `timestamp`, `time` or `eventTime` field is used for `@timestamp`, the
//! whole record is kept as `message` (the `event.original` semantics), and the parsed
//! object is kept under `aws.ndjson` for searching. Non-JSON lines are forwarded raw
//! with a parse-failure tag.

use crate::driver::{LineContext, LineOutcome, LineParser};
use crate::event::Event;
use crate::json_doc::{DocScratch, Item, JsonDoc};
use crate::registry::{ContentClue, FirstLine, FormatSpec, Reader};
use crate::util;

/// One event per JSON line.
#[derive(Debug, Default)]
pub struct NdjsonParser {
    scratch: DocScratch,
}

const TIME_KEYS: [&str; 5] = ["@timestamp", "timestamp", "time", "eventTime", "Timestamp"];

impl LineParser for NdjsonParser {
    fn parse_line(&mut self, line: &str, _cx: &LineContext<'_>, out: &mut Vec<Event>) -> LineOutcome {
        let doc = JsonDoc::parse_with(line, &mut self.scratch)?;
        let mut ev = Event::new();
        let ts = time_of(&doc, &TIME_KEYS);
        ev.set_opt("@timestamp", ts);
        ev.set("message", line.to_owned());
        ev.set("aws.ndjson", Box::new(doc));
        out.push(ev);
        Ok(true)
    }
}

/// The first of `keys` (in their order) that the document has with a value that reads
/// as a time.
fn time_of(doc: &JsonDoc, keys: &[&str]) -> Option<String> {
    let (at, item) = doc.first_member(keys)?;
    let ts = match item {
        Item::Str(s) | Item::PlainStr(s) => util::iso_timestamp(s),
        Item::U64(n) => i64::try_from(n).ok().and_then(epoch),
        Item::I64(n) => epoch(n),
        _ => None,
    };
    // A key whose value is no time: the keys after it may still give one.
    ts.or_else(|| time_of(doc, keys.get(at + 1..)?))
}

/// An epoch number as a timestamp: milliseconds when it is above 10^11 (after 1973),
/// seconds otherwise.
fn epoch(n: i64) -> Option<String> {
    if n > 100_000_000_000 {
        util::epoch_millis(n)
    } else {
        util::epoch_secs(n)
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
    reader: Reader::Lines(|_, _| Box::new(NdjsonParser::default())),
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

    /// The time keys are tried in their order, and one whose value is no time gives
    /// way to the next.
    #[test]
    fn the_first_time_key_with_a_time_wins() {
        let text = concat!(
            "{\"time\":1714550400,\"@timestamp\":\"2024-05-02T00:00:00Z\"}\n",
            "{\"Timestamp\":1714550400,\"@timestamp\":\"not a time\",\"time\":[1]}\n",
            "{\"eventTime\":-5,\"z\":{\"time\":1}}\n",
        );
        let (out, stats) = crate::parse_for_test(Format::Ndjson, text);
        assert_eq!(stats.events, 3);
        assert_eq!(out[0].get_str("@timestamp"), Some("2024-05-02T00:00:00Z"));
        assert_eq!(out[1].get_str("@timestamp"), Some("2024-05-01T08:00:00Z"));
        assert_eq!(out[2].get_str("@timestamp"), Some("1969-12-31T23:59:55Z"));
    }
}
