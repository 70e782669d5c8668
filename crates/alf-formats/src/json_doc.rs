//! A JSON document kept whole in an event (`aws.ndjson`), in a few allocations.
//!
//! Why not `serde_json::Value`? Its objects are `BTreeMap<String, Value>`: every key
//! and every string is an allocation of its own, every member a tree insertion, and
//! dropping it walks it all again. For NDJSON, where the parsed line is most of the
//! event, building and dropping that tree was about a quarter of the instructions per
//! event. A [`JsonDoc`] keeps every key and string in one `String` and every object's
//! members in one `Vec`, sorted once when the object ends.
//!
//! It is written exactly as `serde_json::Value` is (its objects sorted by key, the
//! last of duplicate keys kept, numbers as serde_json reads and writes them), because
//! it is filled by the same deserializer calls that fill a `Value`: output does not
//! change with the representation.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// A parsed JSON value that owns its text.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonDoc {
    /// The input, then every key and string that had escapes, unescaped: every key
    /// and string of the document is a span of it.
    text: String,
    /// The input's length: a span below it had no escapes in the input.
    input_len: usize,
    root: Node,
}

/// Where a key or string lies in [`JsonDoc::text`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Span {
    start: usize,
    end: usize,
}

impl Span {
    /// The key or string in `text` (the document's text).
    fn of(self, text: &str) -> &str {
        text.get(self.start..self.end).unwrap_or_default()
    }
}

/// One value of a [`JsonDoc`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Span),
    Arr(Vec<Node>),
    /// Members sorted by key, keys unique.
    Obj(Vec<(Span, Node)>),
}

/// A value of a document, borrowed: what the writer and the readers walk.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Item<'d> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(&'d str),
    /// A string that had no escapes in the input and so needs none in JSON: no quote,
    /// no backslash, no control byte (JSON does not allow them raw).
    PlainStr(&'d str),
    Arr(&'d [Node]),
    Obj(&'d [(Span, Node)]),
}

/// Room reused from one document to the next: the members and items of the objects
/// and arrays being read, before each is moved into a `Vec` of its exact size.
#[derive(Debug, Default)]
pub struct DocScratch {
    members: Vec<Member>,
    items: Vec<Node>,
    /// How the objects seen lately were sorted: the lines of one object are mostly of
    /// a few shapes, and sorting each object's keys again was a tenth of the
    /// document's cost.
    orders: Vec<KnownOrder>,
}

/// The key prefixes of an object in the order they were read, all different, and
/// the order of the members that sorts them. Distinct prefixes decide the sort alone,
/// so another object with the same prefixes in the same order sorts the same way
/// whatever the rest of its keys (and has no duplicate key).
#[derive(Debug)]
struct KnownOrder {
    prefixes: Vec<u64>,
    order: Vec<u32>,
}

/// Object shapes remembered; the oldest is forgotten first.
const KNOWN_ORDERS: usize = 8;

/// The order of `members` in a `BTreeMap`: indexes sorted by key, and of equal keys
/// only the last read (the value `BTreeMap::insert` keeps). The sort is stable, so the
/// last read is the last of its run.
fn sorted_order<'t>(members: &[Member], key: impl Fn(Span) -> &'t str) -> Vec<u32> {
    let mut order: Vec<u32> = (0..members.len() as u32).collect();
    let member = |at: u32| members.get(at as usize);
    order.sort_by(|&a, &b| match (member(a), member(b)) {
        (Some(a), Some(b)) => a
            .prefix
            .cmp(&b.prefix)
            .then_with(|| key(a.key).cmp(key(b.key))),
        _ => a.cmp(&b),
    });
    let same_key = |a: u32, b: u32| match (member(a), member(b)) {
        (Some(a), Some(b)) => a.prefix == b.prefix && key(a.key) == key(b.key),
        _ => false,
    };
    let mut kept: Vec<u32> = Vec::with_capacity(order.len());
    for at in order {
        match kept.last_mut() {
            Some(last) if same_key(*last, at) => *last = at,
            _ => kept.push(at),
        }
    }
    kept
}

/// Remembers how `members` sort, when their prefixes are all different.
fn remember_order(orders: &mut Vec<KnownOrder>, members: &[Member], order: &[u32]) {
    let prefix = |at: &u32| members.get(*at as usize).map(|m| m.prefix);
    let distinct = order.len() == members.len()
        && order
            .windows(2)
            .all(|pair| prefix(&pair[0]) != prefix(&pair[1]));
    if !distinct || members.len() < 2 {
        return;
    }
    if orders.len() == KNOWN_ORDERS {
        orders.remove(0);
    }
    orders.push(KnownOrder {
        prefixes: members.iter().map(|m| m.prefix).collect(),
        order: order.to_vec(),
    });
}

/// An object member being read, with the first eight bytes of its key as a number
/// that sorts as the key does: most comparisons of the sort end there.
#[derive(Debug)]
struct Member {
    prefix: u64,
    key: Span,
    value: Node,
}

impl JsonDoc {
    /// Parses one JSON value (leading and trailing whitespace allowed), as
    /// `serde_json::from_str::<serde_json::Value>` would.
    pub fn parse(json: &str) -> Result<JsonDoc, serde_json::Error> {
        Self::parse_with(json, &mut DocScratch::default())
    }

    /// [`JsonDoc::parse`], reusing `scratch` (a parser keeps one for all its lines).
    pub fn parse_with(json: &str, scratch: &mut DocScratch) -> Result<JsonDoc, serde_json::Error> {
        scratch.members.clear();
        scratch.items.clear();
        // The input first: a string without escapes is a span of it, so only strings
        // with escapes are copied (after it), unescaped.
        let mut text = String::with_capacity(json.len() + 16);
        text.push_str(json);
        let mut de = serde_json::Deserializer::from_str(json);
        let root = NodeSeed {
            text: &mut text,
            input: json,
            scratch,
        }
        .deserialize(&mut de)?;
        de.end()?;
        Ok(JsonDoc {
            text,
            input_len: json.len(),
            root,
        })
    }

    pub(crate) fn root(&self) -> Item<'_> {
        self.item(&self.root)
    }

    pub(crate) fn item<'d>(&'d self, node: &'d Node) -> Item<'d> {
        match node {
            Node::Null => Item::Null,
            Node::Bool(b) => Item::Bool(*b),
            Node::U64(n) => Item::U64(*n),
            Node::I64(n) => Item::I64(*n),
            Node::F64(n) => Item::F64(*n),
            Node::Str(span) if self.is_plain(span) => Item::PlainStr(self.str(*span)),
            Node::Str(span) => Item::Str(self.str(*span)),
            Node::Arr(items) => Item::Arr(items),
            Node::Obj(members) => Item::Obj(members),
        }
    }

    /// A key of one of this document's objects.
    pub(crate) fn key(&self, span: &Span) -> &str {
        self.str(*span)
    }

    /// Whether the key or string at `span` is a span of the input, which only a
    /// string without escapes is: it needs no escaping either.
    pub(crate) fn is_plain(&self, span: &Span) -> bool {
        span.end <= self.input_len
    }

    fn str(&self, span: Span) -> &str {
        span.of(&self.text)
    }

    /// The document when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self.root {
            Node::Str(span) => Some(self.str(span)),
            _ => None,
        }
    }

    /// The document when it is a boolean or a number, as JSON writes it.
    pub fn scalar_text(&self) -> Option<String> {
        match self.root {
            Node::Bool(b) => Some(b.to_string()),
            Node::U64(n) => Some(n.to_string()),
            Node::I64(n) => Some(n.to_string()),
            Node::F64(n) => serde_json::to_string(&n).ok(),
            _ => None,
        }
    }

    /// The document when it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self.root {
            Node::U64(n) => Some(n as f64),
            Node::I64(n) => Some(n as f64),
            Node::F64(n) => Some(n),
            _ => None,
        }
    }

    /// The value of a top-level member, when the document is an object.
    #[cfg(test)]
    pub(crate) fn member(&self, key: &str) -> Option<Item<'_>> {
        self.first_member(&[key]).map(|(_, item)| item)
    }

    /// Of the top-level members named in `keys`, the one named first in `keys`, and its
    /// index there. One pass over the members (a string comparison looks at the
    /// lengths first: most keys differ in length from every wanted one).
    pub(crate) fn first_member(&self, keys: &[&str]) -> Option<(usize, Item<'_>)> {
        let Node::Obj(members) = &self.root else {
            return None;
        };
        let mut best: Option<(usize, &Node)> = None;
        for (span, node) in members {
            let key = self.str(*span);
            let wanted = keys.iter().position(|k| *k == key);
            if let Some(at) = wanted
                && best.is_none_or(|(best, _)| at < best)
            {
                best = Some((at, node));
            }
        }
        best.map(|(at, node)| (at, self.item(node)))
    }
}

/// The first eight bytes of `key`, big-endian, zero-padded: a shorter key and a key
/// with zero bytes can share a prefix, and the full comparison decides between them.
fn key_prefix(key: &str) -> u64 {
    let mut bytes = [0u8; 8];
    let head = &key.as_bytes()[..key.len().min(8)];
    bytes[..head.len()].copy_from_slice(head);
    u64::from_be_bytes(bytes)
}

/// Builds a [`Node`], appending its strings to the document's text.
struct NodeSeed<'t, 'de> {
    text: &'t mut String,
    input: &'de str,
    scratch: &'t mut DocScratch,
}

impl<'de> NodeSeed<'_, 'de> {
    fn child(&mut self) -> NodeSeed<'_, 'de> {
        NodeSeed {
            text: self.text,
            input: self.input,
            scratch: self.scratch,
        }
    }
}

/// Where `s`, a string without escapes borrowed from `input`, lies in it (and so in
/// the text, which starts with the input); copied to the text's end if it is not
/// there.
fn span_in(text: &mut String, input: &str, s: &str) -> Span {
    let start = (s.as_ptr() as usize).wrapping_sub(input.as_ptr() as usize);
    match input.get(start..start.wrapping_add(s.len())) {
        Some(there) if there.as_ptr() == s.as_ptr() => Span {
            start,
            end: start + s.len(),
        },
        _ => push_text(text, s),
    }
}

fn push_text(text: &mut String, s: &str) -> Span {
    let start = text.len();
    text.push_str(s);
    Span {
        start,
        end: text.len(),
    }
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, 'de> {
    type Value = Node;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Reads an object key into the document's text.
struct KeySeed<'t, 'de> {
    text: &'t mut String,
    input: &'de str,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_, 'de> {
    type Value = (u64, Span);

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, 'de> {
    type Value = (u64, Span);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok((key_prefix(s), span_in(self.text, self.input, s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok((key_prefix(s), push_text(self.text, s)))
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, 'de> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node, E> {
        Ok(Node::Bool(b))
    }

    // As serde_json's `Value`: a non-negative integer is a `u64` whatever call
    // brought it.
    fn visit_i64<E>(self, n: i64) -> Result<Node, E> {
        Ok(match u64::try_from(n) {
            Ok(n) => Node::U64(n),
            Err(_) => Node::I64(n),
        })
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node, E> {
        Ok(Node::U64(n))
    }

    // As serde_json's `Value`: a float that is not finite is `null`.
    fn visit_f64<E>(self, n: f64) -> Result<Node, E> {
        Ok(if n.is_finite() {
            Node::F64(n)
        } else {
            Node::Null
        })
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Node, E> {
        Ok(Node::Str(span_in(self.text, self.input, s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Node, E> {
        Ok(Node::Str(push_text(self.text, s)))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Node, A::Error> {
        let start = self.scratch.items.len();
        while let Some(item) = seq.next_element_seed(self.child())? {
            self.scratch.items.push(item);
        }
        Ok(Node::Arr(self.scratch.items.drain(start..).collect()))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Node, A::Error> {
        let start = self.scratch.members.len();
        while let Some((prefix, key)) = map.next_key_seed(KeySeed {
            text: &mut *self.text,
            input: self.input,
        })? {
            let value = map.next_value_seed(self.child())?;
            self.scratch.members.push(Member { prefix, key, value });
        }
        let text = self.text.as_str();
        let key = |span: Span| span.of(text);
        let scratch = &mut *self.scratch;
        let members = scratch.members.get_mut(start..).unwrap_or_default();
        let known = scratch.orders.iter().position(|known| {
            known.prefixes.len() == members.len()
                && known
                    .prefixes
                    .iter()
                    .zip(members.iter())
                    .all(|(p, m)| *p == m.prefix)
        });
        let fresh;
        let order: &[u32] = match known.and_then(|at| scratch.orders.get(at)) {
            Some(known) => &known.order,
            None => {
                fresh = sorted_order(members, key);
                remember_order(&mut scratch.orders, members, &fresh);
                &fresh
            }
        };
        let mut kept: Vec<(Span, Node)> = Vec::with_capacity(order.len());
        for &at in order {
            if let Some(member) = members.get_mut(at as usize) {
                kept.push((member.key, std::mem::replace(&mut member.value, Node::Null)));
            }
        }
        scratch.members.truncate(start);
        Ok(Node::Obj(kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(json: &str) -> String {
        let doc = JsonDoc::parse(json).unwrap();
        let mut out = Vec::new();
        crate::json_write::write_value(&mut out, &crate::Value::Doc(Box::new(doc)), None);
        String::from_utf8(out).unwrap()
    }

    /// The document is written byte for byte as `serde_json::Value` writes the same
    /// input: key order, duplicate keys, escapes, every kind of number.
    #[test]
    fn a_document_is_written_as_serde_json_writes_its_value() {
        for json in [
            r#"{"b":1,"a":{"z":[1,-2,3.5,1e300,-0,0.1,18446744073709551615,-9223372036854775808],"y":null},"é":"x\ny\u0001\"q\"","A":true,"":false}"#,
            r#"{"k":1,"k":2,"j":{"x":1},"k":"last","j":[]}"#,
            r#"[1,"two",{"b":[],"a":{}},[[]]]"#,
            r#""just a \/ string \ud83d\ude00""#,
            "  12.50  ",
            "-7",
            "null",
            r#"{"n":1.0,"m":-0.0,"big":123456789012345678901234567890}"#,
        ] {
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(
                written(json),
                serde_json::to_string(&value).unwrap(),
                "{json}"
            );
        }
    }

    /// Documents read one after the other with one scratch, so that the orders it
    /// remembers are used: keys that share their first eight bytes, duplicate keys and
    /// shapes that differ only after eight bytes are all written as serde_json writes
    /// them.
    #[test]
    fn remembered_orders_sort_as_serde_json_sorts() {
        let mut scratch = DocScratch::default();
        let check = |json: &str, scratch: &mut DocScratch| {
            let doc = JsonDoc::parse_with(json, scratch).unwrap();
            let mut out = Vec::new();
            crate::json_write::write_value(&mut out, &crate::Value::Doc(Box::new(doc)), None);
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), value.to_string(), "{json}");
        };
        for json in [
            r#"{"duration_b":1,"duration_a":2}"#,
            r#"{"duration_a":1,"duration_b":2}"#,
            r#"{"abcdefghY":1,"b":2}"#,
            r#"{"abcdefghX":1,"b":2}"#,
            r#"{"k":1,"j":2}"#,
            r#"{"k":1,"k":2}"#,
            r#"{"j":1,"k":2}"#,
        ] {
            check(json, &mut scratch);
        }
        let keys = ["duration_a", "duration_b", "b", "abcdefghY", "abcdefghX"];
        let mut seed = 11u64;
        for _ in 0..400 {
            let mut next = |n: usize| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) as usize % n
            };
            let members: Vec<String> = (0..2 + next(2))
                .map(|i| format!("\"{}\":{}", keys[next(keys.len())], i))
                .collect();
            let json = format!("{{{},\"in\":{{{}}}}}", members.join(","), members.join(","));
            check(&json, &mut scratch);
        }
        assert!(!scratch.orders.is_empty());
    }

    #[test]
    fn what_serde_json_rejects_is_rejected() {
        for json in ["{not json", "{\"a\":1} x", "[1,", "", "1e400", "{\"a\" 1}"] {
            assert_eq!(
                JsonDoc::parse(json).is_err(),
                serde_json::from_str::<serde_json::Value>(json).is_err(),
                "{json}"
            );
        }
    }

    #[test]
    fn members_and_scalars_are_read() {
        let doc = JsonDoc::parse(r#"{"b":"x","a":2}"#).unwrap();
        assert!(matches!(doc.member("b"), Some(Item::PlainStr("x"))));
        assert!(matches!(doc.member("a"), Some(Item::U64(2))));
        assert!(doc.member("c").is_none());
        // Escaped in the input: copied unescaped, not plain.
        let doc = JsonDoc::parse(r#"{"b":"\u0078"}"#).unwrap();
        assert!(matches!(doc.member("b"), Some(Item::Str("x"))));
        assert_eq!(JsonDoc::parse("\"s\"").unwrap().as_str(), Some("s"));
        assert_eq!(
            JsonDoc::parse("-3").unwrap().scalar_text().as_deref(),
            Some("-3")
        );
        assert_eq!(JsonDoc::parse("2.5").unwrap().as_f64(), Some(2.5));
        assert_eq!(
            JsonDoc::parse("true").unwrap().scalar_text().as_deref(),
            Some("true")
        );
    }
}
