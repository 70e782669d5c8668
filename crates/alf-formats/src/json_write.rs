//! Writes an [`Event`](crate::Event) as compact JSON, redacting every string on the way.
//!
//! Why not `serde_json::Serializer`? Serialising is about a third of the pipeline's
//! CPU per CloudFront event (1.3-2 KB of JSON each). serde_json escapes a string by
//! looking up every byte in a table; nearly every string an event carries (names,
//! URLs, agents, ids) needs no escape at all, so this writer checks eight bytes at a
//! time for a quote, a backslash or a control byte and copies clean runs whole. It
//! also skips serde's per-value wrapper objects. The bytes written are the same as
//! serde_json's compact output: the same escapes (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`,
//! `\t`, `\u00XX` in lower-case hex for other control bytes; nothing else escaped),
//! integers in decimal, and floats through serde_json itself.

use crate::event::{Map, Value};
use crate::json_doc::{Item, JsonDoc};
use crate::redact::{REDACTED, Redactor};

/// Bytes serde_json escapes, and the letter after the backslash (`u` for `\u00XX`).
const fn escape_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
}

static ESCAPE: [u8; 256] = escape_table();

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether one of the eight bytes of `w` is below 0x20, a quote or a backslash. Exact
/// as a yes/no answer (the classic "has a byte less than n" and "has a zero byte"
/// tests); which byte it is, the caller finds in the table.
#[inline]
fn word_needs_escape(w: u64) -> u64 {
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    control | has_byte(w, b'"') | has_byte(w, b'\\')
}

/// What one pass over a string found: whether it needs escaping, and whether it holds
/// a separator a secret needs (`=`, `:`, `%`), the only strings worth redacting.
#[derive(Clone, Copy)]
struct Scan {
    escape: bool,
    separator: bool,
}

/// The high bit of every byte of `w` equal to `byte`, and possibly of bytes above
/// one that is (the classic "has a zero byte" test): the lowest flag is always a
/// true one, and every true one is flagged.
#[inline]
fn has_byte(w: u64, byte: u8) -> u64 {
    let x = w ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The eight bytes at `at`, little-endian (the first byte lowest), if there are eight.
#[inline]
fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let mut w = [0u8; 8];
    w.copy_from_slice(bytes.get(at..at + 8)?);
    Some(u64::from_le_bytes(w))
}

/// One pass over `bytes`, eight at a time.
#[inline]
fn scan(bytes: &[u8]) -> Scan {
    let mut escape = 0u64;
    let mut separator = 0u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        escape |= word_needs_escape(w);
        separator |= has_byte(w, b'=') | has_byte(w, b':') | has_byte(w, b'%');
    }
    let tail = words.remainder();
    Scan {
        escape: escape != 0 || tail.iter().any(|&b| ESCAPE[usize::from(b)] != 0),
        separator: separator != 0 || tail.iter().any(|&b| matches!(b, b'=' | b':' | b'%')),
    }
}

/// Appends `s` quoted and escaped as serde_json writes it.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    write_scanned(out, s, scan(s.as_bytes()));
}

/// Appends a string that needs no escaping (a constant of the parsers: ECS names,
/// `success`, `aws`), without looking at its bytes.
fn write_plain(out: &mut Vec<u8>, s: &str) {
    debug_assert!(!scan(s.as_bytes()).escape, "{s:?}");
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

fn write_scanned(out: &mut Vec<u8>, s: &str, scanned: Scan) {
    if !scanned.escape {
        return write_plain(out, s);
    }
    write_json_string(out, s.as_bytes());
}

/// Appends `bytes` as a JSON string literal, escaped as serde_json escapes (only ASCII
/// bytes are ever escaped, so any other bytes pass through as they are).
///
/// The intake client wraps every event's JSON text in a string for Sekoia.io's
/// `{"jsons": [...]}` body: a quote every few bytes, the case this loop is made for.
pub fn write_json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 8);
    out.push(b'"');
    // Eight bytes at a time to the next byte to escape: a JSON line kept as `message`
    // has a quote every few bytes, and a byte-by-byte table walk over it, copying the
    // runs between, was 13% of NDJSON's instructions. The clean bytes before an
    // escape are written by appending the whole word and cutting it back: one store,
    // where a copy of a length known only at run time is a call. The lowest flagged
    // byte of a word is exact (a false flag of these tests only sits above a true
    // one), and the table confirms it.
    let mut i = 0;
    while let Some(w) = word_at(bytes, i) {
        let flags = word_needs_escape(w);
        let clean = (flags.trailing_zeros() / 8) as usize;
        let len = out.len();
        out.extend_from_slice(&w.to_le_bytes());
        if flags == 0 {
            i += 8;
            continue;
        }
        out.truncate(len + clean);
        let at = i + clean;
        write_byte(out, bytes[at]);
        i = at + 1;
    }
    for &byte in bytes.get(i..).unwrap_or_default() {
        write_byte(out, byte);
    }
    out.push(b'"');
}

/// Appends one byte of a string, escaped if it must be.
#[inline]
fn write_byte(out: &mut Vec<u8>, byte: u8) {
    match ESCAPE[usize::from(byte)] {
        0 => out.push(byte),
        escape => write_escape(out, byte, escape),
    }
}

fn write_escape(out: &mut Vec<u8>, byte: u8, escape: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if escape == b'u' {
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0xf)],
        ]);
    } else {
        out.extend_from_slice(&[b'\\', escape]);
    }
}

/// Appends a string value, redacted when a redactor is given. The scan that decides
/// escaping also tells whether the string has a separator at all: most do not, and
/// they skip the redactor.
fn write_redacted(out: &mut Vec<u8>, s: &str, redactor: Option<&Redactor>) {
    let scanned = scan(s.as_bytes());
    match redactor.filter(|_| scanned.separator).map(|r| r.redact(s)) {
        // Redacted: the new string is scanned again.
        Some(std::borrow::Cow::Owned(redacted)) => write_str(out, &redacted),
        // Nothing to redact (most strings with a separator): the first scan holds.
        _ => write_scanned(out, s, scanned),
    }
}

/// Appends a string known to need no escaping (it had none in its JSON input),
/// redacted when a redactor is given: the redactor's own search for a separator is the
/// only pass over it.
fn write_plain_redacted(out: &mut Vec<u8>, s: &str, redactor: Option<&Redactor>) {
    match redactor.map(|r| r.redact(s)) {
        Some(std::borrow::Cow::Owned(redacted)) => write_str(out, &redacted),
        _ => write_plain(out, s),
    }
}

/// Appends an object key: the parsers' own names (`Cow::Borrowed`) need no escaping;
/// keys copied from input (`Cow::Owned`) are escaped.
fn write_key(out: &mut Vec<u8>, key: &crate::event::Key) {
    match key {
        std::borrow::Cow::Borrowed(k) => write_plain(out, k),
        std::borrow::Cow::Owned(k) => write_str(out, k),
    }
    out.push(b':');
}

fn write_f64(out: &mut Vec<u8>, n: f64) {
    if n.is_finite() {
        // serde_json's float formatting, so the digits match what it always wrote.
        if serde_json::to_writer(&mut *out, &n).is_ok() {
            return;
        }
    }
    out.extend_from_slice(b"null");
}

/// Appends one object level: `{"key":value,...}`. Keys are not redacted (they are
/// ECS names or input keys; a secret under its own name is handled in JSON values).
pub(crate) fn write_map(out: &mut Vec<u8>, map: &Map, redactor: Option<&Redactor>) {
    write_members(out, map.entries(), |out, (key, value)| {
        write_key(out, key);
        write_value(out, value, redactor);
    });
}

/// Appends one value.
pub(crate) fn write_value(out: &mut Vec<u8>, value: &Value, redactor: Option<&Redactor>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::I64(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        Value::U64(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        Value::F64(n) => write_f64(out, *n),
        Value::Str(s) => write_redacted(out, s, redactor),
        // Static strings are the parsers' own constants, never input.
        Value::Static(s) => write_str(out, s),
        Value::Shared(s) => write_redacted(out, s, redactor),
        Value::Arr(items) => write_array(out, items, |out, item| write_value(out, item, redactor)),
        Value::Obj(map) => write_map(out, map, redactor),
        Value::Json(json) => write_json_value(out, json, redactor),
        Value::Doc(doc) => write_doc_item(out, doc, doc.root(), redactor),
    }
}

/// Appends `[item,item,...]`, each item written by `write`.
fn write_array<T>(out: &mut Vec<u8>, items: &[T], write: impl FnMut(&mut Vec<u8>, &T)) {
    write_separated(out, [b'[', b']'], items, write);
}

/// Appends `{member,member,...}`, each member (key, colon and value) written by `write`.
pub(crate) fn write_members<I: IntoIterator>(
    out: &mut Vec<u8>,
    members: I,
    write: impl FnMut(&mut Vec<u8>, I::Item),
) {
    write_separated(out, [b'{', b'}'], members, write);
}

fn write_separated<I: IntoIterator>(
    out: &mut Vec<u8>,
    [open, close]: [u8; 2],
    items: I,
    mut write: impl FnMut(&mut Vec<u8>, I::Item),
) {
    out.push(open);
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(close);
}

/// Appends a JSON document kept as it came, redacting its strings, and the value of a
/// member whose key is itself a secret name (`{"X-Amz-Security-Token": "..."}`).
fn write_json_value(out: &mut Vec<u8>, json: &serde_json::Value, redactor: Option<&Redactor>) {
    use serde_json::Value as J;
    match json {
        J::Null => out.extend_from_slice(b"null"),
        J::Bool(true) => out.extend_from_slice(b"true"),
        J::Bool(false) => out.extend_from_slice(b"false"),
        J::Number(n) => {
            if serde_json::to_writer(&mut *out, n).is_err() {
                out.extend_from_slice(b"null");
            }
        }
        J::String(s) => write_redacted(out, s, redactor),
        J::Array(items) => write_array(out, items, |out, item| {
            write_json_value(out, item, redactor)
        }),
        J::Object(members) => write_members(out, members, |out, (key, value)| {
            write_str(out, key);
            out.push(b':');
            match (redactor, value) {
                (Some(r), J::String(_)) if r.is_secret_name(key) => write_str(out, REDACTED),
                _ => write_json_value(out, value, redactor),
            }
        }),
    }
}

/// Appends one value of a [`JsonDoc`], as [`write_json_value`] writes the same
/// document held as a `serde_json::Value`.
fn write_doc_item(out: &mut Vec<u8>, doc: &JsonDoc, item: Item<'_>, redactor: Option<&Redactor>) {
    match item {
        Item::Null => out.extend_from_slice(b"null"),
        Item::Bool(true) => out.extend_from_slice(b"true"),
        Item::Bool(false) => out.extend_from_slice(b"false"),
        Item::U64(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        Item::I64(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        Item::F64(n) => write_f64(out, n),
        Item::Str(s) => write_redacted(out, s, redactor),
        Item::PlainStr(s) => write_plain_redacted(out, s, redactor),
        Item::Arr(items) => write_array(out, items, |out, node| {
            write_doc_item(out, doc, doc.item(node), redactor)
        }),
        Item::Obj(members) => write_members(out, members, |out, (span, node)| {
            let key = doc.key(span);
            if doc.is_plain(span) {
                write_plain(out, key);
            } else {
                write_str(out, key);
            }
            out.push(b':');
            match (redactor, doc.item(node)) {
                (Some(r), Item::Str(_) | Item::PlainStr(_)) if r.is_secret_name(key) => {
                    write_str(out, REDACTED)
                }
                (_, item) => write_doc_item(out, doc, item, redactor),
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value, alone and inside runs that straddle the 8-byte words, is
    /// written exactly as serde_json writes it.
    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let mut cases: Vec<String> = (0u8..0x80)
            .map(|b| {
                format!(
                    "{}{}tail-of-text",
                    "x".repeat(usize::from(b % 11)),
                    b as char
                )
            })
            .collect();
        cases.push(String::new());
        cases.push("é ü 中文 \u{7f} \u{2028} 😀 \"quoted\" back\\slash".repeat(3));
        cases.push("\u{1}\u{1f}\"\\\n\r\t\u{8}\u{c}".into());
        cases.push("abcdefgh".into());
        cases.push("abcdefg\"".into());
        for s in cases {
            let mut ours = Vec::new();
            write_str(&mut ours, &s);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&s).unwrap(),
                "{s:?}"
            );
        }
    }

    /// The intake client's escaper: JSON text (an event) becomes the string literal
    /// serde_json writes for it, whatever the alignment of its quotes.
    #[test]
    fn json_text_is_wrapped_in_a_string_as_serde_json_writes_it() {
        for text in [
            String::new(),
            r#"{"a":"b\"c","url":"/x?y=1\tz","é":[1,2]}"#.to_owned(),
            "{\"k\":\"v\"}".repeat(9),
        ] {
            let mut ours = Vec::new();
            write_json_string(&mut ours, text.as_bytes());
            assert_eq!(ours, serde_json::to_vec(&text).unwrap(), "{text}");
        }
    }

    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        let json: serde_json::Value = serde_json::json!({
            "n": -3, "u": 18_446_744_073_709_551_615u64, "f": 0.1, "big": 1e300,
            "t": true, "z": null, "a": [1, "two", {"k": []}], "s": "x\ny"
        });
        let mut ours = Vec::new();
        write_json_value(&mut ours, &json, None);
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            serde_json::to_string(&json).unwrap()
        );
        for (value, expected) in [
            (Value::F64(0.001), "0.001"),
            (Value::F64(f64::INFINITY), "null"),
            (Value::F64(1.5e-7), &serde_json::to_string(&1.5e-7).unwrap()),
            (Value::I64(i64::MIN), "-9223372036854775808"),
            (Value::U64(u64::MAX), "18446744073709551615"),
            (Value::Null, "null"),
            (Value::Bool(false), "false"),
        ] {
            let mut ours = Vec::new();
            write_value(&mut ours, &value, None);
            assert_eq!(String::from_utf8(ours).unwrap(), expected);
        }
    }

    #[test]
    fn every_string_is_redacted_and_secret_named_members_are_masked() {
        let r = Redactor::new();
        let json =
            serde_json::json!({"X-Amz-Security-Token": "tok", "url": "/k?X-Amz-Signature=abc"});
        let mut out = Vec::new();
        write_value(&mut out, &Value::Json(json), Some(&r));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"X-Amz-Security-Token":"REDACTED","url":"/k?X-Amz-Signature=REDACTED"}"#
        );
        let mut out = Vec::new();
        write_value(
            &mut out,
            &Value::Arr(vec![
                Value::Str("a?Signature=s".into()),
                Value::Shared("b?x-amz-security-token=t".into()),
            ]),
            Some(&r),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"["a?Signature=REDACTED","b?x-amz-security-token=REDACTED"]"#
        );
    }
}
