//! A bounded reader of top-level JSON values written back to back: `{...}{...}` with no
//! separator (what Amazon Data Firehose writes by default), one per line, or mixed with
//! plain text lines (Firehose's "decompress and extract message" output).
//!
//! Why not `serde_json::StreamDeserializer`: it holds a whole value however large, and
//! after one broken value it cannot find the next. This reader tracks only string/escape
//! state and nesting depth, copies at most [`MAX_VALUE`] bytes of a value (the rest is
//! skipped, so memory stays bounded), and a line that does not start a JSON value is
//! returned as text on its own.

use std::io::{self, BufRead};

use super::json_records::{Input, Scanned, Scanner, SkipBoms};
use crate::driver::MAX_LINE;

/// Largest value kept; a larger one is reported as [`Item::Oversized`] and skipped.
/// CloudWatch Logs subscription documents are at most ~1 MB; EventBridge events 256 KB.
pub(crate) const MAX_VALUE: usize = 8 * 1024 * 1024;

/// What [`ValueReader::next_item`] found; its bytes are in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    /// A complete JSON object or array.
    Json,
    /// A line that does not start with `{` or `[` (without its line ending).
    Text,
    /// A JSON value larger than [`MAX_VALUE`] (its first bytes are in the buffer), or a
    /// text line longer than [`MAX_LINE`].
    Oversized,
    /// The input ended inside a JSON value.
    Truncated,
}

/// Reads items from a byte stream, keeping the offset of each. The bytes come through
/// the [`Input`] of the records scanner and a JSON value ends where its [`Scanner`]
/// says: one tokenizer for both readers.
pub(crate) struct ValueReader<'r> {
    input: Input<'r>,
}

impl<'r> ValueReader<'r> {
    pub(crate) fn new(r: &'r mut dyn BufRead) -> Self {
        ValueReader {
            input: Input::new(r, 0),
        }
    }

    /// Offset of the next unread byte.
    pub(crate) fn pos(&self) -> u64 {
        self.input.pos
    }

    /// Reads the next item into `buf`; `None` at the end of the input. The offset of the
    /// item's first byte is [`Self::pos`] before the call (after blanks).
    pub(crate) fn next_item(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<(u64, Item)>> {
        buf.clear();
        // Firehose may start every record with a byte-order mark, not just the object.
        let Some(first) = self.input.skip_ws(SkipBoms::Everywhere)? else {
            return Ok(None);
        };
        let start = self.input.pos;
        if first == b'{' || first == b'[' {
            return self.value(buf).map(|item| Some((start, item)));
        }
        let (n, truncated) = crate::driver::read_line_bounded(self.input.r, buf, MAX_LINE)?;
        self.input.pos += n as u64;
        Ok(Some((
            start,
            if truncated {
                Item::Oversized
            } else {
                Item::Text
            },
        )))
    }

    /// Consumes one JSON object or array (the next byte is its `{` or `[`).
    fn value(&mut self, buf: &mut Vec<u8>) -> io::Result<Item> {
        let mut scanner = Scanner::default();
        Ok(match scanner.scan(&mut self.input, buf, MAX_VALUE, &[])? {
            Scanned::Truncated => Item::Truncated,
            _ if scanner.overflow => Item::Oversized,
            _ => Item::Json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(input: &[u8]) -> Vec<(u64, Item, String)> {
        let mut r = input;
        let mut vr = ValueReader::new(&mut r);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some((at, item)) = vr.next_item(&mut buf).unwrap() {
            out.push((at, item, String::from_utf8_lossy(&buf).into_owned()));
        }
        out
    }

    #[test]
    fn back_to_back_newline_separated_and_text_lines() {
        let got = items(b"{\"a\":\"}{\\\"\"}{\"b\":[1,{}]}\n[1]\nplain text\n{\"c\":1");
        assert_eq!(
            got,
            vec![
                (0, Item::Json, "{\"a\":\"}{\\\"\"}".to_owned()),
                (12, Item::Json, "{\"b\":[1,{}]}".to_owned()),
                (25, Item::Json, "[1]".to_owned()),
                (29, Item::Text, "plain text".to_owned()),
                (40, Item::Truncated, "{\"c\":1".to_owned()),
            ]
        );
    }
}
