//! The ECS event under construction, keyed by dotted ECS field names.
//!
//! Why not `serde_json::Value`? Parsers set 20-60 fields per record at hundreds of
//! thousands of records per second. An [`Event`] records its operations in order and
//! is written by a plan made once per shape (`event_plan`); when it needs a
//! tree (a read of an object, a removal) it has one: a `Vec` of `(key, value)` pairs
//! per object level ([`Map`]), cheaper to build than a `BTreeMap`, in a stable, readable
//! field order. Both are written by `json_write`, which applies redaction to
//! every string in one place.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use crate::event_plan::{Log, Op, OpKind};

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
    /// A JSON document kept whole, in fewer allocations than `Json` (`aws.ndjson`).
    /// Boxed: every `Value` is as large as its largest variant, and values are moved
    /// into and out of events by the dozen per record (unboxed, it cost the line
    /// formats 300-400 instructions per event).
    Doc(Box<crate::json_doc::JsonDoc>),
}

impl Value {
    /// The string content, for string values.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Static(s) => Some(s),
            Value::Shared(s) => Some(s),
            Value::Json(serde_json::Value::String(s)) => Some(s),
            Value::Doc(doc) => doc.as_str(),
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
        let mut out = Vec::new();
        crate::json_write::write_value(&mut out, self, None);
        serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null)
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
    Vec<Value> => Arr, Map => Obj, serde_json::Value => Json,
    Box<crate::json_doc::JsonDoc> => Doc);

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

    #[inline]
    fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.0
            .iter_mut()
            .find(|(k, _)| same_key(k, key))
            .map(|(_, v)| v)
    }

    /// Inserts or replaces `key` at this level.
    pub fn insert(&mut self, key: impl Into<Key>, value: impl Into<Value>) {
        self.replace(key.into(), value.into());
    }

    /// Inserts or replaces `key`, returning the value it replaced.
    #[inline]
    fn replace(&mut self, key: Key, value: Value) -> Option<Value> {
        match self.get_mut(&key) {
            Some(slot) => Some(std::mem::replace(slot, value)),
            None => {
                self.0.push((key, value));
                None
            }
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

    /// The entries with their keys as stored (a parser's own name is borrowed).
    pub(crate) fn entries(&self) -> &[(Key, Value)] {
        &self.0
    }

    /// The position of the child object `key`, created when missing. A non-object
    /// value there is replaced: ECS paths never mix leaf and object at one key.
    fn child_index(&mut self, key: &'static str) -> usize {
        let i = match self.0.iter().position(|(k, _)| same_key(k, key)) {
            Some(i) => i,
            None => {
                self.0
                    .push((Cow::Borrowed(key), Value::Obj(Map(Vec::with_capacity(8)))));
                self.0.len() - 1
            }
        };
        let slot = &mut self.0[i].1;
        if !matches!(slot, Value::Obj(_)) {
            *slot = Value::Obj(Map::new());
        }
        i
    }

    /// The child object `key`, created when missing (see [`Map::child_index`]).
    fn child(&mut self, key: &'static str) -> &mut Map {
        let i = self.child_index(key);
        self.object_at(i)
    }

    /// The object at position `i`, which holds one (checked by the caller, or just made
    /// by [`Map::child_index`]); `self` in the impossible case that it does not.
    #[inline]
    fn object_at(&mut self, i: usize) -> &mut Map {
        if !matches!(self.0.get(i), Some((_, Value::Obj(_)))) {
            return self;
        }
        match &mut self.0[i].1 {
            Value::Obj(m) => m,
            _ => unreachable!("checked just above"),
        }
    }
}

/// Key equality, cheapest test first: most keys differ in length, and a key written
/// from the same literal is the same pointer.
#[inline]
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.as_ptr() == b.as_ptr() || a.as_bytes() == b.as_bytes())
}

/// How many parent objects an [`Event`] remembers, and how deep.
const PARENT_SLOTS: usize = 8;
const PARENT_DEPTH: usize = 4;

/// Where the objects of the last few parent paths are (`aws.cloudfront` -> index 6 of
/// the root, then index 0), so that the next field under the same parent goes
/// straight there instead of searching every level by name.
///
/// Why: a CloudFront event sets ~55 fields into ~15 objects, and searching the root
/// (which ends with ~17 keys) and then each level by string comparison was the
/// largest cost of building an event (callgrind: ~40% of the parse, before this).
/// Fields come in runs under one parent (`http.request.*`, `aws.cloudfront.*`,
/// `user_agent.*`), so a handful of slots catch most of them. Positions stay valid
/// because objects only grow: [`Event::remove`] and replacing an object forget them
/// all, and a position that no longer holds an object is simply walked again.
#[derive(Debug, Clone, Copy, Default)]
struct ParentSlot {
    parent: &'static str,
    depth: u8,
    positions: [u16; PARENT_DEPTH],
}

impl ParentSlot {
    /// Creates the objects of `parent` as needed and remembers their positions; `None`
    /// for a path too deep or too wide to remember (it is still created).
    fn create(root: &mut Map, parent: &'static str) -> Option<ParentSlot> {
        let mut slot = ParentSlot {
            parent,
            depth: 0,
            positions: [0; PARENT_DEPTH],
        };
        let mut fits = true;
        let mut map = root;
        for segment in Segments(parent) {
            let i = map.child_index(segment);
            match (
                slot.positions.get_mut(usize::from(slot.depth)),
                u16::try_from(i),
            ) {
                (Some(p), Ok(i)) => {
                    *p = i;
                    slot.depth += 1;
                }
                _ => fits = false,
            }
            map = map.object_at(i);
        }
        (fits && slot.depth > 0).then_some(slot)
    }

    fn positions(&self) -> &[u16] {
        &self.positions[..usize::from(self.depth)]
    }

    /// Whether every remembered position still holds an object.
    #[inline]
    fn holds_objects(&self, root: &Map) -> bool {
        let mut map = root;
        for &p in self.positions() {
            match map.0.get(usize::from(p)) {
                Some((_, Value::Obj(m))) => map = m,
                _ => return false,
            }
        }
        true
    }

    /// The object at the remembered positions (checked with [`ParentSlot::holds_objects`]).
    #[inline]
    fn descend<'m>(&self, root: &'m mut Map) -> &'m mut Map {
        let mut map = root;
        for &p in self.positions() {
            map = map.object_at(usize::from(p));
        }
        map
    }
}

#[derive(Debug, Clone, Default)]
struct ParentCache {
    slots: [ParentSlot; PARENT_SLOTS],
    /// The slot the next new parent replaces (round robin).
    next: usize,
    /// The slot found or made last.
    last: usize,
}

impl ParentCache {
    /// The slot of `parent`; the one used last is tried first (fields come in runs).
    #[inline]
    fn find(&mut self, parent: &str) -> Option<ParentSlot> {
        let last = self.slots[self.last];
        if last.depth > 0 && same_key(last.parent, parent) {
            return Some(last);
        }
        let i = self
            .slots
            .iter()
            .position(|s| s.depth > 0 && same_key(s.parent, parent))?;
        self.last = i;
        Some(self.slots[i])
    }

    fn remember(&mut self, slot: ParentSlot) {
        self.slots[self.next] = slot;
        self.last = self.next;
        self.next = (self.next + 1) % PARENT_SLOTS;
    }
}

/// The nested form of an event: the object tree itself, built field by field. An
/// [`Event`] becomes one when an operation the flat log does not cover is asked for
/// (removing a field, setting a whole object), and a read through `&self` builds one
/// on the side.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tree {
    root: Map,
    parents: ParentCache,
}

/// Splits `a.b.c` into the parent path (`a.b`) and the leaf (`c`). Paths are
/// short static strings; a byte loop beats the generic `str::split` machinery here
/// (this runs ~50 times per event).
#[inline]
pub(crate) fn split_path(path: &str) -> (&str, &str) {
    match memchr::memrchr(b'.', path.as_bytes()) {
        Some(dot) => (&path[..dot], &path[dot + 1..]),
        None => ("", path),
    }
}

/// The segments of a dotted path (`a.b` -> `a`, `b`; none for `""`).
pub(crate) struct Segments<'a>(pub(crate) &'a str);

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

impl Tree {
    fn new() -> Self {
        // ECS events have 10-20 top-level objects: avoid regrowing the root.
        Tree {
            root: Map(Vec::with_capacity(24)),
            parents: ParentCache::default(),
        }
    }

    /// Replays one recorded operation (see [`crate::event_plan::Op`]); `key` is the
    /// run-time key of a `set_dyn`.
    fn apply(&mut self, op: Op, key: Option<Box<str>>) {
        match op.kind {
            OpKind::Set => self.set(op.path, op.value),
            OpKind::SetDefault => {
                if self.get(op.path).is_none() {
                    self.set(op.path, op.value);
                }
            }
            OpKind::Push => self.push_unique(op.path, op.value),
            OpKind::SetDyn => {
                let key = key.map(String::from).unwrap_or_default();
                self.insert_under(op.path, Cow::Owned(key), op.value);
            }
        }
    }

    fn set(&mut self, path: &'static str, value: Value) {
        let (parent, leaf) = split_path(path);
        self.insert_under(parent, Cow::Borrowed(leaf), value);
    }

    /// Inserts `key` into the object at `parent`. Replacing an object forgets the
    /// remembered parents: one of them may lead through it.
    #[inline]
    fn insert_under(&mut self, parent: &'static str, key: Key, value: Value) {
        if let Some(Value::Obj(_)) = self.parent_map(parent).replace(key, value) {
            self.parents = ParentCache::default();
        }
    }

    /// The object at the dotted `parent` path (the root for `""`), created as needed,
    /// found through the [`ParentCache`] when it was used lately.
    #[inline]
    fn parent_map(&mut self, parent: &'static str) -> &mut Map {
        if parent.is_empty() {
            return &mut self.root;
        }
        let slot = match self.parents.find(parent) {
            Some(slot) if slot.holds_objects(&self.root) => slot,
            _ => match ParentSlot::create(&mut self.root, parent) {
                Some(slot) => {
                    self.parents.remember(slot);
                    slot
                }
                None => {
                    let mut map = &mut self.root;
                    for segment in Segments(parent) {
                        map = map.child(segment);
                    }
                    return map;
                }
            },
        };
        slot.descend(&mut self.root)
    }

    fn push_unique(&mut self, path: &'static str, value: Value) {
        let (parent, leaf) = split_path(path);
        let map = self.parent_map(parent);
        match map.get_mut(leaf) {
            Some(Value::Arr(items)) => {
                if !items.iter().any(|item| item.same_as(&value)) {
                    items.push(value);
                }
            }
            _ => self.insert_under(parent, Cow::Borrowed(leaf), Value::Arr(vec![value])),
        }
    }

    fn get(&self, path: &str) -> Option<&Value> {
        get_in(&self.root, path)
    }

    fn remove(&mut self, path: &str) -> Option<Value> {
        // Positions after the removed one shift: forget every remembered parent.
        self.parents = ParentCache::default();
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
}

/// The value at a dotted path under `root`.
fn get_in<'m>(root: &'m Map, path: &str) -> Option<&'m Value> {
    let mut map = root;
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

/// Operations one flat event records before it falls back to a tree: a shape this
/// long is not worth a plan (ECS events set 20-80 fields).
pub(crate) const MAX_FLAT_OPS: usize = 160;

/// An ECS event. Fields are addressed by dotted paths (`"source.ip"`) and serialized
/// nested, in the order their objects and fields were first set.
///
/// Why two forms: building the nested tree field by field (finding or creating each
/// parent object, then the key) and walking it again to write JSON was about half of
/// the CPU of a CloudFront event. Most events are only built, then written once; so an
/// event starts *flat*: it records its operations (`set`, `push_unique`, `set_default`)
/// in order, and is written by a plan compiled once per *shape* (the sequence of
/// operations and their paths, see `event_plan`) that knows where every
/// brace, comma and key goes. The plan is made by replaying the shape on a tree, so the
/// bytes are those the tree writes. Operations the log does not cover (removing a
/// field, setting a whole object, a key only known at run time) turn the event into a
/// [`Tree`], as do too many operations; reads answer from the plan when the path is a
/// plain field, or from a tree built on the side.
#[derive(Debug, Clone, Default)]
pub struct Event {
    /// The operations so far, while the event is flat (empty once it is a tree).
    log: Log,
    /// The tree, once the event is one.
    tree: Option<Box<Tree>>,
    /// A flat event's tree, built for a read through `&self`; dropped on change.
    view: OnceLock<Box<Tree>>,
}

/// Events are equal when their fields are; how they are held is not part of it.
impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.root() == other.root()
    }
}

impl Event {
    pub fn new() -> Self {
        Event {
            log: Log::with_capacity(64),
            ..Event::default()
        }
    }

    /// Records one operation of a flat event.
    #[inline(always)]
    fn record(&mut self, kind: OpKind, path: &'static str, value: Value) {
        if self.view.get().is_some() {
            self.view = OnceLock::new();
        }
        self.log.push(kind, path, value);
    }

    /// The tree, made from the log when the event is still flat.
    fn tree_mut(&mut self) -> &mut Tree {
        let tree = self.tree.get_or_insert_with(|| {
            let mut tree = Tree::new();
            self.log.replay(|op, key| tree.apply(op, key));
            Box::new(tree)
        });
        self.view = OnceLock::new();
        tree
    }

    /// The tree of the event: its own, or one built from the log on the side.
    fn tree_ref(&self) -> &Tree {
        match &self.tree {
            Some(tree) => tree,
            None => self.view.get_or_init(|| {
                let mut tree = Tree::new();
                self.log.clone().replay(|op, key| tree.apply(op, key));
                Box::new(tree)
            }),
        }
    }

    /// Whether the next operation goes to the tree rather than the log.
    #[inline]
    fn is_tree(&self) -> bool {
        self.tree.is_some() || self.log.len() >= MAX_FLAT_OPS
    }

    /// Sets the field at a static dotted path, replacing any previous value.
    pub fn set(&mut self, path: &'static str, value: impl Into<Value>) {
        let value = value.into();
        if self.is_tree() || matches!(value, Value::Obj(_)) {
            self.tree_mut().set(path, value);
        } else {
            self.record(OpKind::Set, path, value);
        }
    }

    /// Sets the field unless something is already at `path` (a value or an object).
    pub fn set_default(&mut self, path: &'static str, value: impl Into<Value>) {
        let value = value.into();
        if self.is_tree() || matches!(value, Value::Obj(_)) {
            let tree = self.tree_mut();
            if tree.get(path).is_none() {
                tree.set(path, value);
            }
        } else {
            self.record(OpKind::SetDefault, path, value);
        }
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
    ///
    /// Recorded like the others while such keys repeat from event to event on this
    /// thread (their shapes then have plans to reuse); when they do not (HTTP header
    /// names, say), planning every event would cost more than the tree.
    pub fn set_dyn(&mut self, parent: &'static str, key: &str, value: impl Into<Value>) {
        let value = value.into();
        if self.is_tree()
            || matches!(value, Value::Obj(_))
            || !crate::event_plan::dynamic_shapes_repeat()
        {
            self.tree_mut()
                .insert_under(parent, Cow::Owned(key.to_owned()), value);
        } else {
            if self.view.get().is_some() {
                self.view = OnceLock::new();
            }
            self.log.push_dyn(parent, key, value);
        }
    }

    /// Appends `value` to the array at `path` unless an equal value is already there.
    /// Used for `related.*`.
    pub fn push_unique(&mut self, path: &'static str, value: impl Into<Value>) {
        let value = value.into();
        if self.is_tree() {
            self.tree_mut().push_unique(path, value);
        } else {
            self.record(OpKind::Push, path, value);
        }
    }

    /// The value at a dotted path.
    pub fn get(&self, path: &str) -> Option<&Value> {
        if self.tree.is_none()
            && let Some(found) = crate::event_plan::get(&self.log, path)
        {
            return found;
        }
        self.tree_ref().get(path)
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
        self.tree_mut().remove(path)
    }

    pub fn root(&self) -> &Map {
        &self.tree_ref().root
    }

    /// Serializes as one compact JSON object (nested, no dotted keys), appending to
    /// `out`. Every string value goes through `redactor` when given.
    pub fn write_json(&self, out: &mut Vec<u8>, redactor: Option<&Redactor>) {
        match &self.tree {
            Some(tree) => crate::json_write::write_map(out, &tree.root, redactor),
            None => crate::event_plan::write_json(&self.log, out, redactor),
        }
    }

    /// The event as a JSON string (with redaction when given).
    pub fn to_json_string(&self, redactor: Option<&Redactor>) -> String {
        let mut out = Vec::with_capacity(512);
        self.write_json(&mut out, redactor);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The event as a `serde_json::Value` (no redaction); for tests and tools.
    pub fn to_json(&self) -> serde_json::Value {
        let mut out = Vec::with_capacity(512);
        self.write_json(&mut out, None);
        serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json_string(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values are moved into and out of events by the dozen per record: a variant
    /// larger than the others makes every one of them larger. A boxed `JsonDoc` keeps
    /// them at the size of a `serde_json::Value` and a tag.
    #[test]
    fn a_value_is_no_larger_than_a_json_value_and_a_tag() {
        assert!(std::mem::size_of::<Value>() <= std::mem::size_of::<serde_json::Value>() + 8);
    }

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

    /// The remembered parents never send a field into the wrong object: not after an
    /// object is replaced by another, by a leaf, or removed.
    #[test]
    fn fields_land_under_their_path_whatever_was_replaced() {
        let mut e = Event::new();
        e.set("x.y.a", 1u64);
        let mut other = Map::new();
        other.insert("q", Value::Obj(Map::new()));
        e.set("x", Value::Obj(other));
        e.set("x.y.b", 2u64);
        assert_eq!(e.to_json_string(None), r#"{"x":{"q":{},"y":{"b":2}}}"#);
        e.set("x.y", "leaf");
        e.set("x.y.c", 3u64);
        e.remove("x.q");
        e.set("x.y.d", 4u64);
        e.set_dyn("x.y", "dyn", 5u64);
        e.push_unique("x.y.list", "v");
        assert_eq!(
            e.to_json_string(None),
            r#"{"x":{"y":{"c":3,"d":4,"dyn":5,"list":["v"]}}}"#
        );
        for i in 0..20u64 {
            e.set("p1.a", i);
            e.set("p2.b.c", i);
            e.set("p3.a.b.c.d.e", i);
            e.set("p4.a", i);
        }
        assert_eq!(
            e.to_json_string(None),
            r#"{"x":{"y":{"c":3,"d":4,"dyn":5,"list":["v"]}},"p1":{"a":19},"p2":{"b":{"c":19}},"p3":{"a":{"b":{"c":{"d":{"e":19}}}}},"p4":{"a":19}}"#
        );
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

#[cfg(test)]
mod flat_tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A number in `0..n`.
    fn below(rng: &mut StdRng, n: usize) -> usize {
        (rng.next_u64() % n as u64) as usize
    }

    use super::{Event, Tree, Value};
    use crate::redact::Redactor;

    /// Paths that collide in every way the tree resolves: a leaf that later gets
    /// children, an object later set as a leaf, deep and shallow, arrays pushed to.
    const PATHS: &[&str] = &[
        "a",
        "a.b",
        "a.b.c",
        "a.d",
        "e",
        "e.f",
        "e.f.g",
        "related.ip",
        "related",
        "x.y.z",
        "event.id",
        "event.kind",
        "event",
        "@timestamp",
        "a.b.c.d.e",
    ];

    fn value(rng: &mut StdRng) -> Value {
        let s = [
            "1",
            "two",
            "Signature=abc",
            "two",
            "\"q\"",
            "x=1&Signature=s",
        ];
        match below(rng, 8) {
            0 => Value::U64(below(rng, 3) as u64),
            1 => Value::Static(s[below(rng, 2)]),
            2 => Value::Str(s[below(rng, s.len())].to_owned()),
            3 => Value::Shared(s[below(rng, s.len())].into()),
            4 => Value::Arr(vec![Value::Static("two"), Value::U64(1)]),
            5 => Value::Json(serde_json::json!({"k": [s[below(rng, s.len())]]})),
            6 => Value::F64(f64::NAN),
            _ => Value::Bool(true),
        }
    }

    /// A flat event writes, and answers reads, exactly as the tree made by the same
    /// operations: thousands of random sequences over colliding paths.
    #[test]
    fn a_flat_event_writes_and_reads_what_its_tree_does() {
        let mut rng = StdRng::seed_from_u64(7);
        let redactor = Redactor::new();
        for round in 0..4000 {
            let mut flat = Event::new();
            let mut tree = Tree::default();
            let ops = below(&mut rng, 24);
            for _ in 0..ops {
                let path = PATHS[below(&mut rng, PATHS.len())];
                let v = value(&mut rng);
                match below(&mut rng, 5) {
                    4 => {
                        // Keys equal to static segments, with a dot, needing escapes.
                        let key = ["b", "c", "ip", "x.y", "\"k\\", "id", ""][below(&mut rng, 7)];
                        flat.set_dyn(path, key, v.clone());
                        tree.insert_under(path, std::borrow::Cow::Owned(key.to_owned()), v);
                    }
                    0 | 1 => {
                        flat.set(path, v.clone());
                        tree.set(path, v);
                    }
                    2 => {
                        flat.push_unique(path, v.clone());
                        tree.push_unique(path, v);
                    }
                    _ => {
                        flat.set_default(path, v.clone());
                        if tree.get(path).is_none() {
                            tree.set(path, v);
                        }
                    }
                }
            }
            assert!(flat.tree.is_none(), "round {round}: still flat");
            let reads = |flat: &Event, when: &str| {
                for path in
                    PATHS
                        .iter()
                        .chain(&["a.x", "nope", "related.ip.x", "a.x.y", "e.b", "a."])
                {
                    assert_eq!(
                        flat.get(path).map(Value::to_json),
                        tree.get(path).map(Value::to_json),
                        "round {round}: get({path}) {when}"
                    );
                }
            };
            // Before any write: no plan yet, reads go to a tree built on the side.
            reads(&flat.clone(), "before a plan");
            let mut want = Vec::new();
            crate::json_write::write_map(&mut want, &tree.root, Some(&redactor));
            // First sight (written without a plan), second (planned), third (cached).
            for sight in 1..=3 {
                let mut got = Vec::new();
                flat.write_json(&mut got, Some(&redactor));
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want),
                    "round {round}, sight {sight}: {:?}",
                    flat.log
                );
            }
            // With a plan: reads answer from its fields.
            reads(&flat, "with a plan");
        }
    }

    /// Operations a flat log does not record turn the event into a tree with the same
    /// fields, and it goes on from there.
    #[test]
    fn unrecorded_operations_continue_on_a_tree() {
        let mut e = Event::new();
        e.set("a.b", 1u64);
        e.push_unique("related.ip", "192.0.2.1");
        assert_eq!(e.get_str("related.ip"), None, "an array, not a string");
        e.set_dyn("a", "dyn", 2u64);
        e.set("gone", 0u64);
        assert!(e.tree.is_none());
        assert_eq!(e.remove("gone"), Some(Value::U64(0)));
        assert!(e.tree.is_some());
        e.set("a.c", 3u64);
        e.push_unique("related.ip", "192.0.2.1");
        e.push_unique("related.ip", "192.0.2.2");
        assert_eq!(
            e.to_json_string(None),
            r#"{"a":{"b":1,"dyn":2,"c":3},"related":{"ip":["192.0.2.1","192.0.2.2"]}}"#
        );
        let mut many = Event::new();
        for _ in 0..super::MAX_FLAT_OPS + 5 {
            many.set("n", 1u64);
        }
        assert_eq!(many.to_json_string(None), r#"{"n":1}"#);
    }

    /// Run-time keys that repeat keep events flat; keys that differ in every record
    /// (header names, say) soon send `set_dyn` to the tree instead of planning every
    /// event, with the same output either way.
    #[test]
    fn run_time_keys_stay_flat_only_while_their_shapes_repeat() {
        let event = |key: &str| {
            let mut e = Event::new();
            e.set("a", 1u64);
            e.set_dyn("h", key, 2u64);
            let json = e.to_json_string(None);
            assert_eq!(json, format!(r#"{{"a":1,"h":{{"{key}":2}}}}"#));
            e.tree.is_none()
        };
        std::thread::spawn(move || {
            assert!((0..500).all(|_| event("same")), "a repeated key stays flat");
            // Misses count against the hits before them: 500 hits allow ~170 misses.
            let flat: Vec<bool> = (0..500).map(|n| event(&format!("k{n}"))).collect();
            let last_flat = flat.iter().rposition(|&f| f).unwrap_or(0);
            assert!(
                last_flat < 250,
                "changing keys still flat at event {last_flat}"
            );
        })
        .join()
        .unwrap();
    }
}
