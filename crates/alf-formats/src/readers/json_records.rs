//! Streams the records of a JSON log object: `{"<wrapper>": [ ... ]}` documents, bare
//! top-level arrays, one record per line, or records simply concatenated. Shared by the
//! JSON formats whose files can be far larger than one record (CloudTrail, GuardDuty).
//!
//! Why a hand-written scanner: a CloudTrail file is a single line of up to tens of
//! megabytes. Deserializing it whole would hold the document and its parsed tree in
//! memory at once; instead the scanner tracks only string/escape state and nesting
//! depth to find where each array element starts and ends, copies that one element
//! (at most [`MAX_RECORD`] bytes), and hands it to `serde_json`.

use std::io::{self, BufRead};

use memchr::{memchr, memchr2};
use serde_json::Value as J;

use crate::driver::{
    EventSink, LineContext, MAX_LINE, ORIGINAL_KEEP, ObjectParse, ParseError, RecordError,
    read_line_bounded,
};
use crate::registry::MapJsonRecord;

pub(crate) type JsonMap = serde_json::Map<String, J>;

/// Largest record accepted; larger ones are forwarded raw (first bytes only) as
/// malformed, and the stream continues with the next record.
pub(crate) const MAX_RECORD: usize = 8 * 1024 * 1024;

/// Streams every record of the object into `sink` (see the module docs).
/// `wrappers` are the keys whose array value holds the records (`Records`).
pub(crate) fn parse_records(
    reader: &mut dyn BufRead,
    cx: &mut ObjectParse<'_>,
    sink: &mut dyn EventSink,
    wrappers: &[&str],
    map: MapJsonRecord,
) -> Result<(), ParseError> {
    let mut run = Run {
        cx,
        sink,
        map,
        wrappers,
        index: 0,
        buf: Vec::new(),
        window: MIN_WINDOW,
    };
    let mut input = Input::new(reader, 0);
    input.skip_bom()?;
    let lines = run.values(&mut input, true)?;
    run.cx.stats.bytes = input.pos;
    if !lines {
        return Ok(());
    }
    // One JSON value per line from here on: each line is scanned on its own, so a
    // broken line cannot swallow the lines after it.
    let mut line = Vec::new();
    let mut offset = input.pos;
    loop {
        let (consumed, truncated) = read_line_bounded(input.r, &mut line, MAX_RECORD)?;
        if consumed == 0 {
            break;
        }
        let line_offset = offset;
        offset += consumed as u64;
        run.cx.stats.bytes = offset;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if truncated {
            run.index += 1;
            run.cx.stats.records += 1;
            let raw = String::from_utf8_lossy(&line[..line.len().min(ORIGINAL_KEEP)]);
            let reason = format!("record larger than {MAX_RECORD} bytes");
            run.cx
                .emit_malformed(run.sink, &raw, run.index, line_offset, &reason)?;
            continue;
        }
        let mut slice: &[u8] = &line;
        let mut li = Input::new(&mut slice, line_offset);
        run.values(&mut li, false)?;
    }
    Ok(())
}

/// Byte source with the absolute offset of the next byte (also under the
/// [`json_values`](super::json_values) reader).
pub(crate) struct Input<'r> {
    pub(crate) r: &'r mut dyn BufRead,
    /// Offset of the next unread byte.
    pub(crate) pos: u64,
}

/// Whether [`Input::skip_ws`] also skips byte-order marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SkipBoms {
    /// Only the object's first bytes may be a byte-order mark ([`Input::skip_bom`]).
    Never,
    /// A mark where a read starts is skipped like a blank (Firehose output).
    Everywhere,
}

impl<'r> Input<'r> {
    pub(crate) fn new(r: &'r mut dyn BufRead, pos: u64) -> Self {
        Input { r, pos }
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

    /// Skips whitespace; returns the next byte without consuming it.
    pub(crate) fn skip_ws(&mut self, boms: SkipBoms) -> io::Result<Option<u8>> {
        loop {
            let chunk = self.fill()?;
            if chunk.is_empty() {
                return Ok(None);
            }
            if boms == SkipBoms::Everywhere && chunk.starts_with(b"\xEF\xBB\xBF") {
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

    fn skip_bom(&mut self) -> io::Result<()> {
        if self.fill()?.starts_with(b"\xEF\xBB\xBF") {
            self.consume(3);
        }
        Ok(())
    }

    /// True when only blanks remain before the next line break (or the end).
    fn rest_of_line_blank(&mut self) -> io::Result<bool> {
        loop {
            let chunk = self.fill()?;
            if chunk.is_empty() {
                return Ok(true);
            }
            let n = chunk
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t' || b == b'\r')
                .count();
            if n < chunk.len() {
                let newline = chunk[n] == b'\n';
                self.consume(n);
                return Ok(newline);
            }
            let len = chunk.len();
            self.consume(len);
        }
    }

    /// Consumes bytes up to (not including) the first byte `stop` accepts, keeping
    /// at most `limit` of them in `buf`. Consumes at least one byte.
    fn take_until(
        &mut self,
        buf: &mut Vec<u8>,
        limit: usize,
        stop: impl Fn(u8) -> bool,
    ) -> io::Result<()> {
        let mut first = true;
        loop {
            let chunk = self.fill()?;
            if chunk.is_empty() {
                return Ok(());
            }
            let skip = usize::from(first);
            first = false;
            let end = chunk[skip..]
                .iter()
                .position(|&b| stop(b))
                .map(|i| i + skip);
            let take = end.unwrap_or(chunk.len());
            let room = limit.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..take.min(room)]);
            self.consume(take);
            if end.is_some() {
                return Ok(());
            }
        }
    }
}

/// How a scanned value ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scanned {
    /// The value closed.
    Complete,
    /// The input ended inside the value.
    Truncated,
    /// A wrapper key's array opened (its `[` consumed); the elements follow.
    WrapperArray,
}

/// JSON structure tracker: just enough state to find where a value ends.
#[derive(Debug, Default)]
pub(crate) struct Scanner {
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// The value did not fit in the buffer limit.
    pub(crate) overflow: bool,
    /// Watch depth-1 keys for a wrapper whose value is an array.
    watch: bool,
    expect_key: bool,
    in_key: bool,
    key: Vec<u8>,
    key_unusable: bool,
}

const KEY_MAX: usize = 64;

impl Scanner {
    fn push_key(&mut self, bytes: &[u8]) {
        if self.key.len() + bytes.len() > KEY_MAX {
            self.key_unusable = true;
        } else {
            self.key.extend_from_slice(bytes);
        }
    }

    fn key_is_wrapper(&self, wrappers: &[&str]) -> bool {
        !self.key_unusable && wrappers.iter().any(|w| w.as_bytes() == self.key)
    }

    /// Consumes one value starting at the next byte (which must be `{`, `[` or
    /// `"`), copying at most `limit` bytes of it into `buf`.
    pub(crate) fn scan(
        &mut self,
        input: &mut Input<'_>,
        buf: &mut Vec<u8>,
        limit: usize,
        wrappers: &[&str],
    ) -> io::Result<Scanned> {
        loop {
            let chunk = input.fill()?;
            if chunk.is_empty() {
                return Ok(Scanned::Truncated);
            }
            let mut i = 0;
            let mut result = None;
            while i < chunk.len() {
                if self.in_string {
                    if self.escaped {
                        self.escaped = false;
                        self.key_unusable |= self.in_key;
                        i += 1;
                        continue;
                    }
                    match memchr2(b'"', b'\\', &chunk[i..]) {
                        None => {
                            if self.in_key {
                                self.push_key(&chunk[i..]);
                            }
                            i = chunk.len();
                        }
                        Some(k) => {
                            if self.in_key {
                                self.push_key(&chunk[i..i + k]);
                            }
                            i += k + 1;
                            if chunk[i - 1] == b'\\' {
                                self.escaped = true;
                            } else {
                                self.in_string = false;
                                self.in_key = false;
                                if self.depth == 0 {
                                    result = Some(Scanned::Complete);
                                    break;
                                }
                            }
                        }
                    }
                    continue;
                }
                let b = chunk[i];
                i += 1;
                match b {
                    b'"' => {
                        self.in_string = true;
                        if self.watch && self.depth == 1 && self.expect_key {
                            self.in_key = true;
                            self.expect_key = false;
                            self.key.clear();
                            self.key_unusable = false;
                        }
                    }
                    b'[' if self.watch
                        && self.depth == 1
                        && !self.expect_key
                        && self.key_is_wrapper(wrappers) =>
                    {
                        result = Some(Scanned::WrapperArray);
                        break;
                    }
                    b'{' | b'[' => {
                        self.depth += 1;
                        if self.depth == 1 {
                            self.expect_key = b == b'{';
                        }
                    }
                    b'}' | b']' => {
                        self.depth = self.depth.saturating_sub(1);
                        if self.depth == 0 {
                            result = Some(Scanned::Complete);
                            break;
                        }
                    }
                    b',' if self.depth == 1 => self.expect_key = true,
                    _ => {}
                }
            }
            let room = limit.saturating_sub(buf.len());
            if i > room {
                self.overflow = true;
            }
            buf.extend_from_slice(&chunk[..i.min(room)]);
            input.consume(i);
            if let Some(r) = result {
                return Ok(r);
            }
        }
    }
}

struct Run<'a, 'c> {
    cx: &'a mut ObjectParse<'c>,
    sink: &'a mut dyn EventSink,
    map: MapJsonRecord,
    wrappers: &'a [&'a str],
    /// 1-based number of the current record in the object.
    index: u64,
    buf: Vec<u8>,
    /// Bytes of the buffer [`Run::record_in_buffer`] checks for UTF-8 first.
    window: usize,
}

/// Smallest first window of [`Run::record_in_buffer`].
const MIN_WINDOW: usize = 4096;

/// The longest prefix of `bytes` that is UTF-8.
fn utf8_prefix(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    }
}

impl Run<'_, '_> {
    /// Reads top-level values until the input ends. With `detect_lines`, returns
    /// `true` as soon as the first value turns out to be a one-line record
    /// followed by a line break: the rest is then read line by line.
    fn values(&mut self, input: &mut Input<'_>, detect_lines: bool) -> Result<bool, ParseError> {
        let mut first = detect_lines;
        loop {
            let Some(b) = input.skip_ws(SkipBoms::Never)? else {
                return Ok(false);
            };
            let start = input.pos;
            match b {
                b'[' => {
                    input.consume(1);
                    self.array(input)?;
                }
                b'{' => {
                    if let Some(one_line) = self.record_in_buffer(input, start, true)? {
                        if first && one_line && input.rest_of_line_blank()? {
                            return Ok(true);
                        }
                        first = false;
                        continue;
                    }
                    let mut sc = Scanner {
                        watch: true,
                        ..Scanner::default()
                    };
                    self.buf.clear();
                    match sc.scan(input, &mut self.buf, MAX_RECORD, self.wrappers)? {
                        Scanned::WrapperArray => {
                            self.array(input)?;
                            // The rest of the wrapper object holds no records.
                            let mut rest = Scanner {
                                depth: 1,
                                ..Scanner::default()
                            };
                            rest.scan(input, &mut Vec::new(), 0, &[])?;
                        }
                        Scanned::Complete => {
                            let one_line = !sc.overflow && memchr(b'\n', &self.buf).is_none();
                            self.record(start, sc.overflow)?;
                            if first && one_line && input.rest_of_line_blank()? {
                                return Ok(true);
                            }
                        }
                        Scanned::Truncated => self.truncated(start)?,
                    }
                }
                _ => {
                    // Not JSON: forward the rest of the line raw.
                    self.buf.clear();
                    input.take_until(&mut self.buf, MAX_LINE, |b| b == b'\n')?;
                    self.malformed(start, "not a JSON object")?;
                }
            }
            first = false;
        }
    }

    /// Streams the elements of an array whose `[` was consumed.
    fn array(&mut self, input: &mut Input<'_>) -> Result<(), ParseError> {
        loop {
            let b = loop {
                match input.skip_ws(SkipBoms::Never)? {
                    None => return Ok(()),
                    Some(b',') => input.consume(1),
                    Some(b) => break b,
                }
            };
            if b == b']' {
                input.consume(1);
                return Ok(());
            }
            let start = input.pos;
            if b == b'{' && self.record_in_buffer(input, start, false)?.is_some() {
                continue;
            }
            self.buf.clear();
            if matches!(b, b'{' | b'[' | b'"') {
                let mut sc = Scanner::default();
                match sc.scan(input, &mut self.buf, MAX_RECORD, &[])? {
                    Scanned::Truncated => self.truncated(start)?,
                    Scanned::Complete | Scanned::WrapperArray => self.record(start, sc.overflow)?,
                }
            } else {
                input.take_until(&mut self.buf, ORIGINAL_KEEP, |b| {
                    matches!(b, b',' | b']' | b'}') || b.is_ascii_whitespace()
                })?;
                self.malformed(start, "record is not a JSON object")?;
            }
        }
    }

    fn next_index(&mut self) -> u64 {
        self.index += 1;
        self.cx.stats.records += 1;
        self.index
    }

    fn malformed(&mut self, offset: u64, reason: &str) -> Result<(), ParseError> {
        let buf = std::mem::take(&mut self.buf);
        let result = self.malformed_text(offset, &buf, reason);
        self.buf = buf;
        result
    }

    /// Emits `text`, the bytes of record number `self.index + 1`, raw as malformed.
    fn malformed_text(&mut self, offset: u64, text: &[u8], reason: &str) -> Result<(), ParseError> {
        let index = self.next_index();
        let keep = text.len().min(ORIGINAL_KEEP);
        let raw = String::from_utf8_lossy(&text[..keep]);
        self.cx
            .emit_malformed(self.sink, &raw, index, offset, reason)?;
        Ok(())
    }

    /// The record starting at the input's next byte (a `{`), parsed where it lies in
    /// the reader's buffer: the common case, a record wholly inside the decoded
    /// buffer, then costs one pass of `serde_json` instead of the scanner's pass, a
    /// copy and a second pass (measured: about 16,000 instructions of a CloudTrail
    /// record's 124,000). Returns `None`, consuming nothing, whenever the in-place
    /// parse is not the whole story: the record crosses the buffer's end, is not a
    /// valid JSON object, is larger than [`MAX_RECORD`], or (`top_level`) holds a
    /// wrapper key. The scanner then reads it exactly as it always has, so every
    /// error and every wrapper is reported as before. On success, returns whether the
    /// record held no line break (see [`Run::values`]).
    fn record_in_buffer(
        &mut self,
        input: &mut Input<'_>,
        offset: u64,
        top_level: bool,
    ) -> Result<Option<bool>, ParseError> {
        let chunk = input.fill()?;
        // `serde_json` checks the UTF-8 of every string it reads from bytes (about
        // 8,000 instructions of a CloudTrail record); a `&str` it reads unchecked. So
        // a window of the buffer is checked in one pass, sized from the last record,
        // and widened to the whole buffer once when the record runs past it. A
        // record crossing the valid prefix (an invalid byte, or a character cut by
        // the buffer's end) then fails as "EOF" and goes to the scanner.
        let mut window = self.window.min(chunk.len());
        let (map, end) = loop {
            let text = utf8_prefix(&chunk[..window]);
            let mut stream = serde_json::Deserializer::from_str(text).into_iter::<J>();
            match stream.next() {
                // `{` delimits itself: the stream stopped right after the closing brace.
                Some(Ok(J::Object(map))) => break (map, stream.byte_offset()),
                Some(Err(e)) if e.is_eof() && window < chunk.len() => window = chunk.len(),
                _ => return Ok(None),
            }
        };
        self.window = (2 * end).max(MIN_WINDOW);
        if end > MAX_RECORD || (top_level && self.wrappers.iter().any(|w| map.contains_key(*w))) {
            return Ok(None);
        }
        let text = &chunk[..end];
        let one_line = memchr(b'\n', text).is_none();
        self.map_and_emit(offset, map, text)?;
        input.consume(end);
        Ok(Some(one_line))
    }

    fn truncated(&mut self, offset: u64) -> Result<(), ParseError> {
        self.malformed(offset, "input ended inside a record (truncated object)")
    }

    /// Parses, maps and emits the record in `buf`.
    fn record(&mut self, offset: u64, overflow: bool) -> Result<(), ParseError> {
        if overflow {
            return self.malformed(offset, &format!("record larger than {MAX_RECORD} bytes"));
        }
        let buf = std::mem::take(&mut self.buf);
        let result = match serde_json::from_slice::<J>(&buf) {
            Ok(J::Object(map)) => self.map_and_emit(offset, map, &buf),
            Ok(_) => self.malformed_text(offset, &buf, "record is not a JSON object"),
            Err(e) => self.malformed_text(offset, &buf, &RecordError::from(e).to_string()),
        };
        self.buf = buf;
        result
    }

    /// Maps the parsed record whose bytes are `text` and emits the event, or the
    /// record raw when the format's mapper refuses it.
    fn map_and_emit(&mut self, offset: u64, map: JsonMap, text: &[u8]) -> Result<(), ParseError> {
        let record_cx = LineContext {
            enricher: self.cx.enricher,
            options: self.cx.options,
            object: self.cx.object,
            line: self.index + 1,
        };
        match (self.map)(&record_cx, map) {
            Ok(ev) => {
                let index = self.next_index();
                // serde_json accepted the bytes, so they are UTF-8.
                let raw = if self.cx.options.keep_original {
                    std::str::from_utf8(text).ok()
                } else {
                    None
                };
                self.cx.emit(self.sink, ev, index, 0, offset, raw)?;
                Ok(())
            }
            Err(e) => self.malformed_text(offset, text, &e.to_string()),
        }
    }
}

/// The strings of a JSON array as an event list; `None` when `v` is no array or holds
/// no string (an empty list is never set).
pub(crate) fn string_list(v: Option<&J>) -> Option<crate::event::Value> {
    let J::Array(items) = v? else {
        return None;
    };
    let list: Vec<crate::event::Value> = items
        .iter()
        .filter_map(J::as_str)
        .map(|s| crate::event::Value::Str(s.to_owned()))
        .collect();
    (!list.is_empty()).then_some(crate::event::Value::Arr(list))
}

/// Removes `key` and returns it when it is a non-empty string.
pub(crate) fn take_string(m: &mut JsonMap, key: &str) -> Option<String> {
    match m.remove(key)? {
        J::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// Removes `key` and, when it is a non-empty string, sets it at each of `paths`.
pub(crate) fn take_string_into(
    m: &mut JsonMap,
    key: &str,
    ev: &mut crate::event::Event,
    paths: &[&'static str],
) {
    if let Some(value) = take_string(m, key) {
        for path in paths {
            ev.set(path, value.clone());
        }
    }
}

/// Removes the `key` of each `(path, key)` and sets it at `path` when it is a
/// non-empty string.
pub(crate) fn take_strings_into(
    m: &mut JsonMap,
    ev: &mut crate::event::Event,
    fields: &[(&'static str, &str)],
) {
    for &(path, key) in fields {
        ev.set_opt(path, take_string(m, key));
    }
}

/// Removes `key` and returns it when it is an object.
pub(crate) fn take_object(m: &mut JsonMap, key: &str) -> Option<JsonMap> {
    match m.remove(key)? {
        J::Object(o) => Some(o),
        _ => None,
    }
}

/// `ipAddressV4` -> `ip_address_v4`, `sourceIPs` -> `source_ips`,
/// `ARN` -> `arn`: the field-name style of ECS and of the peers' `aws.*` fields.
///
/// Keys are nearly always ASCII, and those are converted byte by byte; collecting the
/// characters and asking Unicode's tables about each one was most of the cost of a
/// GuardDuty finding (measured: about 60,000 of its 260,000 instructions).
pub(crate) fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    if key.is_ascii() {
        snake_case_into(key.as_bytes(), &mut out);
    } else {
        snake_case_into(&key.chars().collect::<Vec<char>>(), &mut out);
    }
    out
}

/// What [`snake_case`] asks of a character: a `char`, or a byte of an ASCII key
/// (for which every answer is the same as for the `char`).
trait Letter: Copy + PartialEq {
    fn upper(self) -> bool;
    fn lower(self) -> bool;
    fn digit(self) -> bool;
    fn alphanumeric(self) -> bool;
    fn is(self, c: char) -> bool;
    fn push(self, out: &mut String);
    fn push_lower(self, out: &mut String);
}

impl Letter for char {
    fn upper(self) -> bool {
        self.is_uppercase()
    }
    fn lower(self) -> bool {
        self.is_lowercase()
    }
    fn digit(self) -> bool {
        self.is_ascii_digit()
    }
    fn alphanumeric(self) -> bool {
        self.is_alphanumeric()
    }
    fn is(self, c: char) -> bool {
        self == c
    }
    fn push(self, out: &mut String) {
        out.push(self);
    }
    fn push_lower(self, out: &mut String) {
        out.extend(self.to_lowercase());
    }
}

impl Letter for u8 {
    fn upper(self) -> bool {
        self.is_ascii_uppercase()
    }
    fn lower(self) -> bool {
        self.is_ascii_lowercase()
    }
    fn digit(self) -> bool {
        self.is_ascii_digit()
    }
    fn alphanumeric(self) -> bool {
        self.is_ascii_alphanumeric()
    }
    fn is(self, c: char) -> bool {
        char::from(self) == c
    }
    fn push(self, out: &mut String) {
        out.push(char::from(self));
    }
    fn push_lower(self, out: &mut String) {
        out.push(char::from(self.to_ascii_lowercase()));
    }
}

fn snake_case_into<L: Letter>(chars: &[L], out: &mut String) {
    for (i, &c) in chars.iter().enumerate() {
        if c.upper() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1).copied();
            // An upper-case run followed by a lone plural `s` is an acronym
            // (`IPs`), not the start of a word.
            let plural_s = next.is_some_and(|n| n.is('s'))
                && chars
                    .get(i + 2)
                    .is_none_or(|c| c.upper() || !c.alphanumeric());
            let boundary = match prev {
                None => false,
                Some(p) if p.is('_') || p.is('-') || p.is('.') => false,
                Some(p) if p.lower() || p.digit() => true,
                Some(p) => p.upper() && next.is_some_and(|n| n.lower()) && !plural_s,
            };
            if boundary {
                out.push('_');
            }
            c.push_lower(out);
        } else if c.is('-') || c.is(' ') || c.is('.') {
            out.push('_');
        } else {
            c.push(out);
        }
    }
}

/// A JSON tree with every object key in snake_case.
pub(crate) fn snake_keys(v: J) -> J {
    match v {
        J::Object(m) => J::Object(
            m.into_iter()
                .map(|(k, v)| (snake_case(&k), snake_keys(v)))
                .collect(),
        ),
        J::Array(a) => J::Array(a.into_iter().map(snake_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of up to four letters from an alphabet with each kind of letter the
    /// rules look at: the byte path gives what the character path gives.
    #[test]
    fn ascii_keys_convert_as_characters_do() {
        let alphabet = b"aZsS9_-. x";
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for len in 1..=4u32 {
            for n in 0..alphabet.len().pow(len) {
                let mut rest = n;
                let key = (0..len)
                    .map(|_| {
                        let b = alphabet[rest % alphabet.len()];
                        rest /= alphabet.len();
                        b
                    })
                    .collect();
                keys.push(key);
            }
        }
        assert!(keys.len() > 10_000);
        for key in keys {
            let (mut bytes, mut chars) = (String::new(), String::new());
            snake_case_into(&key, &mut bytes);
            let text = String::from_utf8(key).unwrap();
            snake_case_into(&text.chars().collect::<Vec<char>>(), &mut chars);
            assert_eq!(bytes, chars, "{text:?}");
        }
    }

    #[test]
    fn snake_case_handles_acronyms_and_digits() {
        for (from, to) in [
            ("ipAddressV4", "ip_address_v4"),
            ("sourceIPs", "source_ips"),
            ("ARN", "arn"),
            ("accountId", "account_id"),
            ("rdsDbInstanceDetails", "rds_db_instance_details"),
            ("eventFirstSeen", "event_first_seen"),
            ("s3BucketDetails", "s3_bucket_details"),
            ("executableSha256", "executable_sha256"),
            ("x-amz-id-2", "x_amz_id_2"),
            ("MFAUsed", "mfa_used"),
            ("already_snake", "already_snake"),
            ("VPCEndpointId", "vpc_endpoint_id"),
            ("ÉtatIPs", "état_ips"),
            ("clé-Publique", "clé_publique"),
        ] {
            assert_eq!(snake_case(from), to, "{from}");
            // The byte path and the character path agree on every ASCII key.
            let mut chars = String::new();
            snake_case_into(&from.chars().collect::<Vec<char>>(), &mut chars);
            assert_eq!(chars, to, "{from}");
        }
    }
}
