//! The ECS event under construction: a small ordered tree keyed by ECS field names.
//!
//! Why not `serde_json::Value`? Parsers set 20-60 fields per record at hundreds of
//! thousands of records per second. A `Vec` of `(key, value)` pairs per object level is
//! cheaper to build than a `BTreeMap`, keeps a stable, readable field order, and lets the
//! serializer apply redaction to every string in one place ([`Event::write_json`]).

use std::borrow::Cow;
use std::fmt;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::redact::Redactor;

/// Keys are mostly ECS names known at compile time; dynamic keys (copied from JSON
/// input) are owned.
pub type Key = Cow<'static, str>;

/// A value in an [`Event`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
    Static(&'static str),
    /// A string shared by many events (bucket, key): cloning it is a refcount bump.
    Shared(std::sync::Arc<str>),
    Arr(Vec<Value>),
    Obj(Map),
    /// A JSON document kept as it came (e.g. CloudTrail `requestParameters`).
    Json(serde_json::Value),
}

impl Value {
    /// The string content, for string values.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Static(s) => Some(s),
            Value::Shared(s) => Some(s),
            Value::Json(serde_json::Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// Equality as serialized: strings compare by content whatever holds them (`Str`,
    /// `Static`, `Shared`), so an array of unique values stays unique however its
    /// strings were made.
    pub fn same_as(&self, other: &Value) -> bool {
        match (self.as_str(), other.as_str()) {
            (Some(a), Some(b)) => a == b,
            _ => self == other,
        }
    }

    /// Converts to a `serde_json::Value` (no redaction); used by tests and tools.
    pub fn to_json(&self) -> serde_json::Value {
        match serde_json::to_value(Redacted(self, None)) {
            Ok(v) => v,
            Err(_) => serde_json::Value::Null,
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $v:ident $(as $c:ty)?),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Self { Value::$v(x $(as $c)?) }
        }
    )*};
}
value_from!(bool => Bool, i64 => I64, i32 => I64 as i64, u64 => U64, u32 => U64 as u64,
    u16 => U64 as u64, u8 => U64 as u64, f64 => F64, String => Str, &'static str => Static,
    Vec<Value> => Arr, Map => Obj, serde_json::Value => Json);

impl From<Cow<'_, str>> for Value {
    fn from(s: Cow<'_, str>) -> Self {
        Value::Str(s.into_owned())
    }
}

/// One level of an event: ordered `(key, value)` pairs with unique keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Map(Vec<(Key, Value)>);

impl Map {
    pub fn new() -> Self {
        Map(Vec::new())
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Inserts or replaces `key` at this level.
    pub fn insert(&mut self, key: impl Into<Key>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.get_mut(&key) {
            Some(slot) => *slot = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// The child object `key`, created when missing. A non-object value there is
    /// replaced: ECS paths never mix leaf and object at one key.
    fn child(&mut self, key: Key) -> &mut Map {
        let i = match self.0.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.0.push((key, Value::Obj(Map(Vec::with_capacity(4)))));
                self.0.len() - 1
            }
        };
        let slot = &mut self.0[i].1;
        if !matches!(slot, Value::Obj(_)) {
            *slot = Value::Obj(Map::new());
        }
        match slot {
            Value::Obj(m) => m,
            _ => unreachable!("slot was just made an object"),
        }
    }
}

/// An ECS event. Fields are addressed by dotted paths (`"source.ip"`) and stored nested.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    root: Map,
}

/// Splits `a.b.c` into the parent segments (`a`, `b`) and the leaf (`c`). Paths are
/// short static strings; a byte loop beats the generic `str::split` machinery here
/// (this runs ~50 times per event).
fn split_path(path: &str) -> (Segments<'_>, &str) {
    let leaf_start = path.bytes().rposition(|b| b == b'.').map_or(0, |i| i + 1);
    let parents = if leaf_start == 0 {
        ""
    } else {
        &path[..leaf_start - 1]
    };
    (Segments(parents), &path[leaf_start..])
}

struct Segments<'a>(&'a str);

impl<'a> Iterator for Segments<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        if self.0.is_empty() {
            return None;
        }
        match self.0.bytes().position(|b| b == b'.') {
            Some(i) => {
                let seg = &self.0[..i];
                self.0 = &self.0[i + 1..];
                Some(seg)
            }
            None => Some(std::mem::take(&mut self.0)),
        }
    }
}

impl Event {
    pub fn new() -> Self {
        // ECS events have 10-20 top-level objects: avoid regrowing the root.
        Event {
            root: Map(Vec::with_capacity(16)),
        }
    }

    /// Sets the field at a static dotted path, replacing any previous value.
    pub fn set(&mut self, path: &'static str, value: impl Into<Value>) {
        let (parents, leaf) = split_path(path);
        let mut map = &mut self.root;
        for p in parents {
            map = map.child(Cow::Borrowed(p));
        }
        map.insert(Cow::Borrowed(leaf), value);
    }

    /// Sets the field when `value` is `Some`.
    pub fn set_opt<V: Into<Value>>(&mut self, path: &'static str, value: Option<V>) {
        if let Some(v) = value {
            self.set(path, v);
        }
    }

    /// Sets a string field unless it is absent (`None`, empty or `-`).
    pub fn set_str(&mut self, path: &'static str, value: Option<&str>) {
        if let Some(v) = crate::util::present(value) {
            self.set(path, Value::Str(v.to_owned()));
        }
    }

    /// Sets a field whose path is only known at run time (copied from input keys).
    pub fn set_dyn(&mut self, parent: &'static str, key: &str, value: impl Into<Value>) {
        let mut map = &mut self.root;
        for p in parent.split('.').filter(|p| !p.is_empty()) {
            map = map.child(Cow::Borrowed(p));
        }
        map.insert(Cow::Owned(key.to_owned()), value);
    }

    /// Appends `value` to the array at `path` unless an equal value is already there.
    /// Used for `related.*`.
    pub fn push_unique(&mut self, path: &'static str, value: impl Into<Value>) {
        let value = value.into();
        let (parents, leaf) = split_path(path);
        let mut map = &mut self.root;
        for p in parents {
            map = map.child(Cow::Borrowed(p));
        }
        match map.get_mut(leaf) {
            Some(Value::Arr(items)) => {
                if !items.iter().any(|item| item.same_as(&value)) {
                    items.push(value);
                }
            }
            _ => map.insert(Cow::Borrowed(leaf), Value::Arr(vec![value])),
        }
    }

    /// The value at a dotted path.
    pub fn get(&self, path: &str) -> Option<&Value> {
        let mut map = &self.root;
        let mut parts = path.split('.').peekable();
        while let Some(p) = parts.next() {
            let v = map.get(p)?;
            if parts.peek().is_none() {
                return Some(v);
            }
            match v {
                Value::Obj(m) => map = m,
                _ => return None,
            }
        }
        None
    }

    /// The string at a dotted path, if it is a string.
    pub fn get_str(&self, path: &str) -> Option<&str> {
        self.get(path).and_then(Value::as_str)
    }

    pub fn contains(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// Removes the value at a dotted path.
    pub fn remove(&mut self, path: &str) -> Option<Value> {
        let mut map = &mut self.root;
        let mut parts: Vec<&str> = path.split('.').collect();
        let leaf = parts.pop()?;
        for p in parts {
            match map.get_mut(p)? {
                Value::Obj(m) => map = m,
                _ => return None,
            }
        }
        map.remove(leaf)
    }

    pub fn root(&self) -> &Map {
        &self.root
    }

    /// Serializes as one compact JSON object (nested, no dotted keys), appending to
    /// `out`. Every string value goes through `redactor` when given.
    pub fn write_json(&self, out: &mut Vec<u8>, redactor: Option<&Redactor>) {
        let mut ser = serde_json::Serializer::new(out);
        // Writing into a Vec cannot fail and every key is a string.
        let _ = RedactedMap(&self.root, redactor).serialize(&mut ser);
    }

    /// The event as a JSON string (with redaction when given).
    pub fn to_json_string(&self, redactor: Option<&Redactor>) -> String {
        let mut out = Vec::with_capacity(512);
        self.write_json(&mut out, redactor);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The event as a `serde_json::Value` (no redaction); for tests and tools.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(RedactedMap(&self.root, None)).unwrap_or(serde_json::Value::Null)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json_string(None))
    }
}

struct Redacted<'a>(&'a Value, Option<&'a Redactor>);
struct RedactedMap<'a>(&'a Map, Option<&'a Redactor>);
struct RedactedJson<'a>(&'a serde_json::Value, Option<&'a Redactor>);

fn redact_str<'s>(s: &'s str, r: Option<&Redactor>) -> Cow<'s, str> {
    match r {
        Some(r) => r.redact(s),
        None => Cow::Borrowed(s),
    }
}

impl Serialize for Redacted<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::I64(n) => s.serialize_i64(*n),
            Value::U64(n) => s.serialize_u64(*n),
            Value::F64(n) if n.is_finite() => s.serialize_f64(*n),
            Value::F64(_) => s.serialize_unit(),
            Value::Str(v) => s.serialize_str(&redact_str(v, self.1)),
            Value::Static(v) => s.serialize_str(v),
            Value::Shared(v) => s.serialize_str(&redact_str(v, self.1)),
            Value::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Redacted(item, self.1))?;
                }
                seq.end()
            }
            Value::Obj(m) => RedactedMap(m, self.1).serialize(s),
            Value::Json(j) => RedactedJson(j, self.1).serialize(s),
        }
    }
}

impl Serialize for RedactedMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0.0 {
            map.serialize_entry(k.as_ref(), &Redacted(v, self.1))?;
        }
        map.end()
    }
}

impl Serialize for RedactedJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde_json::Value as J;
        match self.0 {
            J::String(v) => s.serialize_str(&redact_str(v, self.1)),
            J::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&RedactedJson(item, self.1))?;
                }
                seq.end()
            }
            J::Object(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    // A secret can also sit under a key of its own name:
                    // {"X-Amz-Security-Token": "..."}.
                    match (self.1, v) {
                        (Some(r), J::String(_)) if r.is_secret_name(k) => {
                            map.serialize_entry(k, crate::redact::REDACTED)?
                        }
                        _ => map.serialize_entry(k, &RedactedJson(v, self.1))?,
                    }
                }
                map.end()
            }
            other => other.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_paths_serialize_as_nested_objects() {
        let mut e = Event::new();
        e.set("@timestamp", "2024-01-01T00:00:00Z");
        e.set("source.ip", "192.0.2.1".to_string());
        e.set("source.port", 443u16);
        e.set("source.geo.name", "x");
        e.push_unique("related.ip", "192.0.2.1".to_string());
        e.push_unique("related.ip", "192.0.2.1".to_string());
        e.push_unique("related.ip", Value::Shared("192.0.2.1".into()));
        e.push_unique("related.ip", "192.0.2.1");
        assert_eq!(
            e.to_json_string(None),
            r#"{"@timestamp":"2024-01-01T00:00:00Z","source":{"ip":"192.0.2.1","port":443,"geo":{"name":"x"}},"related":{"ip":["192.0.2.1"]}}"#
        );
        assert_eq!(e.get_str("source.ip"), Some("192.0.2.1"));
        assert!(e.get("source.nope").is_none());
        assert_eq!(e.remove("source.port"), Some(Value::U64(443)));
        assert!(!e.contains("source.port"));
    }

    #[test]
    fn set_replaces_and_absent_strings_are_skipped() {
        let mut e = Event::new();
        e.set("a.b", 1u64);
        e.set("a.b", 2u64);
        e.set_str("a.c", Some("-"));
        e.set_str("a.d", Some(""));
        e.set_str("a.e", None);
        assert_eq!(e.to_json_string(None), r#"{"a":{"b":2}}"#);
    }

    #[test]
    fn strings_are_escaped_and_non_finite_floats_become_null() {
        let mut e = Event::new();
        e.set("m", "quote\" and \u{1} control".to_string());
        e.set("f", f64::NAN);
        let v: serde_json::Value = serde_json::from_str(&e.to_json_string(None)).unwrap();
        assert_eq!(v["m"], "quote\" and \u{1} control");
        assert!(v["f"].is_null());
    }
}
