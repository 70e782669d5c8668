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

use memchr::memchr2;

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

/// Reads items from a byte stream, keeping the offset of each.
pub(crate) struct ValueReader<'r> {
    r: &'r mut dyn BufRead,
    /// Offset of the next unread byte.
    pub(crate) pos: u64,
}

impl<'r> ValueReader<'r> {
    pub(crate) fn new(r: &'r mut dyn BufRead) -> Self {
        ValueReader { r, pos: 0 }
    }

    fn fill(&mut self) -> io::Result<&[u8]> {
        loop {
            match self.r.fill_buf() {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.r.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.r.consume(n);
        self.pos += n as u64;
    }

    /// The next non-blank byte (not consumed), skipping whitespace and byte-order marks.
    pub(crate) fn peek(&mut self) -> io::Result<Option<u8>> {
        loop {
            let chunk = self.fill()?;
            if chunk.is_empty() {
                return Ok(None);
            }
            if chunk.starts_with(b"\xEF\xBB\xBF") {
                self.consume(3);
                continue;
            }
            let n = chunk.iter().take_while(|b| b.is_ascii_whitespace()).count();
            if n < chunk.len() {
                let b = chunk[n];
                self.consume(n);
                return Ok(Some(b));
            }
            let len = chunk.len();
            self.consume(len);
        }
    }

    /// Reads the next item into `buf`; `None` at the end of the input. The offset of the
    /// item's first byte is `self.pos` before the call (after blanks).
    pub(crate) fn next_item(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<(u64, Item)>> {
        buf.clear();
        let Some(first) = self.peek()? else {
            return Ok(None);
        };
        let start = self.pos;
        if first == b'{' || first == b'[' {
            return self.value(buf).map(|item| Some((start, item)));
        }
        let (_, truncated) =
            crate::driver::read_line_bounded(self.r, buf, MAX_LINE).map(|(n, t)| {
                self.pos += n as u64;
                (n, t)
            })?;
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
        let mut depth = 0u32;
        let mut in_string = false;
        let mut escaped = false;
        let mut overflow = false;
        loop {
            let chunk = self.fill()?;
            if chunk.is_empty() {
                return Ok(Item::Truncated);
            }
            let mut i = 0;
            let mut done = false;
            while i < chunk.len() {
                if in_string {
                    if escaped {
                        escaped = false;
                        i += 1;
                        continue;
                    }
                    match memchr2(b'"', b'\\', &chunk[i..]) {
                        None => i = chunk.len(),
                        Some(k) => {
                            i += k + 1;
                            if chunk[i - 1] == b'\\' {
                                escaped = true;
                            } else {
                                in_string = false;
                            }
                        }
                    }
                    continue;
                }
                let b = chunk[i];
                i += 1;
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            done = true;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let room = MAX_VALUE.saturating_sub(buf.len());
            if i > room {
                overflow = true;
            }
            buf.extend_from_slice(&chunk[..i.min(room)]);
            self.consume(i);
            if done {
                return Ok(if overflow {
                    Item::Oversized
                } else {
                    Item::Json
                });
            }
        }
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
