//! Writing a flat [`Event`](crate::Event) from a plan compiled once per shape.
//!
//! A flat event is the log of its operations: `set`, `set_default`, `push_unique` and
//! `set_dyn`, each with its path and value. Its *shape* is that sequence without the
//! values (kind, static path, run-time key, and whether a set value is an array, which
//! `push_unique` appends to). Events of one format mostly share a handful of shapes:
//! the same fields in the same order, some optional ones present or not. So the nested
//! JSON is planned once per shape: [`simulate`] replays the shape on a small tree with
//! the [`Tree`](crate::event::Tree)'s own rules (a parent is created where it is first
//! needed; setting a path again replaces its value in place; a leaf in the way of a
//! child becomes an object), and [`Plan::compile`] flattens that tree into steps: raw
//! bytes (braces, commas and quoted keys, joined), then "write the value of operation
//! *i*", and so on. Writing an event is then one pass over its plan.
//!
//! Plans are cached per thread by the shape's hash and checked against the whole
//! shape on every hit, so a collision costs a compile, never wrong output. A shape is
//! planned the second time it is seen; the first time, the event is written straight
//! from the simulated tree, because many shapes (odd combinations of optional fields)
//! never come back. The cache is bounded ([`MAX_PLANS`]) and keeps the plans in use;
//! run-time keys that change from record to record are sent to the tree instead
//! ([`dynamic_shapes_repeat`]).
//! `Event`'s tests check all of this against the tree on random operation sequences.

use std::borrow::Cow;
use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use crate::event::{Segments, Value, split_path};
use crate::json_write::{write_members, write_str, write_value};
use crate::redact::Redactor;

/// What a recorded operation does (the semantics of the `Event` method of that name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Set = 1,
    SetDefault = 2,
    Push = 3,
    /// `set_dyn`: the path is the parent, the key is [`Op::key`].
    SetDyn = 4,
}

/// One recorded operation of a flat event.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub(crate) kind: OpKind,
    pub(crate) path: &'static str,
    pub(crate) value: Value,
}

/// A flat event: its operations in order, the run-time keys of its `set_dyn`
/// operations in order (kept aside so that an operation stays 64 bytes), and the
/// running hash of its shape.
#[derive(Debug, Clone, Default)]
pub(crate) struct Log {
    ops: Vec<Op>,
    keys: Vec<Box<str>>,
    shape: u64,
}

impl Log {
    pub(crate) fn with_capacity(n: usize) -> Log {
        Log {
            ops: Vec::with_capacity(n),
            ..Log::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, kind: OpKind, path: &'static str, value: Value) {
        self.shape = next_shape(self.shape, kind, path, &value);
        self.ops.push(Op { kind, path, value });
    }

    /// Records `set_dyn(parent, key, value)`.
    pub(crate) fn push_dyn(&mut self, parent: &'static str, key: &str, value: Value) {
        self.shape = next_shape(self.shape, OpKind::SetDyn, parent, &value)
            ^ xxhash_rust::xxh3::xxh3_64(key.as_bytes());
        self.keys.push(key.into());
        self.ops.push(Op {
            kind: OpKind::SetDyn,
            path: parent,
            value,
        });
    }

    /// Hands each operation, with its run-time key, to `apply`, emptying the log.
    pub(crate) fn replay(&mut self, mut apply: impl FnMut(Op, Option<Box<str>>)) {
        let mut keys = self.keys.drain(..);
        for op in self.ops.drain(..) {
            let key = match op.kind {
                OpKind::SetDyn => keys.next(),
                _ => None,
            };
            apply(op, key);
        }
        self.shape = 0;
    }
}

/// The part of an operation its plan depends on. A static path is told by its
/// address and length: the same literal is the same address, so comparing shapes does
/// not compare text (two copies of one literal make two shapes, each planned
/// correctly). Run-time keys are compared as text, apart ([`Plan::keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpShape {
    kind: OpKind,
    path: (usize, usize),
    array: bool,
}

impl OpShape {
    #[inline]
    fn of(op: &Op) -> OpShape {
        OpShape {
            kind: op.kind,
            path: (op.path.as_ptr() as usize, op.path.len()),
            array: matches!(op.value, Value::Arr(_)),
        }
    }
}

/// The shape hash after one more operation.
#[inline(always)]
fn next_shape(shape: u64, kind: OpKind, path: &'static str, value: &Value) -> u64 {
    let bits = (path.as_ptr() as u64)
        ^ ((path.len() as u64) << 48)
        ^ ((kind as u64) << 60)
        ^ (u64::from(matches!(value, Value::Arr(_))) << 63);
    (shape.rotate_left(5) ^ bits).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Plans kept per thread; past this many the ones not used lately go
/// ([`PlanCache::make_room`]). Generated CloudFront logs (optional fields drawn
/// independently) have more than a thousand shapes; 1,024 plans of about 3 KB each
/// were the 3 MB a `parse` of a large object held over a small one. Measured on
/// 100,000 records (callgrind): 1,024 cleared when full 4.840 G instructions, 512
/// with the sweep 4.857 G (+0.35%) and 1.4 MB over a small object instead of 3.3; 256
/// with the sweep +3.9%.
const MAX_PLANS: usize = 512;

/// One step of writing an event.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Bytes of the plan: braces, commas, `"key":`.
    Raw { start: u32, end: u32 },
    /// The value of operation `i`.
    Value(u32),
    /// An array made by `push_unique`: the items of the array set by operation `base`
    /// (if any), then the values of the push operations `pushes[start..end]` not
    /// already there.
    Pushed {
        base: Option<u32>,
        start: u32,
        end: u32,
    },
}

/// What a dotted path holds in a shape.
#[derive(Debug, Clone, Copy)]
enum Field {
    /// The value of operation `i`.
    Value(u32),
    /// An object or a pushed array: read from a tree.
    Composite,
}

/// How to write every event of one shape.
#[derive(Debug)]
struct Plan {
    shape: Vec<OpShape>,
    /// The run-time keys of the shape's `set_dyn` operations, in order.
    keys: Vec<Box<str>>,
    /// Whether the shape has `set_dyn` keys (see [`dynamic_shapes_repeat`]).
    dynamic: bool,
    bytes: Vec<u8>,
    steps: Vec<Step>,
    pushes: Vec<u32>,
    fields: OnceCell<Vec<(Box<str>, Field)>>,
    /// Found in the cache since its last sweep (see [`PlanCache::make_room`]).
    used: Cell<bool>,
}

/// The tree a shape makes: the [`crate::event::Map`] of an event with operation
/// numbers where the values will be.
enum Node<'l> {
    Leaf(u32),
    Pushed { base: Option<u32>, pushes: Vec<u32> },
    Obj(Level<'l>),
}

/// One object level: keys are static paths' segments or `set_dyn` keys of the log.
type Level<'l> = Vec<(&'l str, Node<'l>)>;

/// The object at `parent` under `level`, created as the tree creates it (a missing key
/// is appended; a value in the way becomes an empty object, in place).
fn object_at<'m, 'l>(mut level: &'m mut Level<'l>, parent: &'l str) -> &'m mut Level<'l> {
    for segment in Segments(parent) {
        let i = match level.iter().position(|(k, _)| *k == segment) {
            Some(i) => i,
            None => {
                level.push((segment, Node::Obj(Vec::new())));
                level.len() - 1
            }
        };
        if !matches!(level[i].1, Node::Obj(_)) {
            level[i].1 = Node::Obj(Vec::new());
        }
        level = match &mut level[i].1 {
            Node::Obj(children) => children,
            // Made an object just above.
            _ => unreachable!("an object was put there just above"),
        };
    }
    level
}

/// Whether anything (value, array or object) is at `path`, as `Tree::get` answers.
fn exists(mut level: &Level<'_>, path: &str) -> bool {
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some((_, node)) = level.iter().find(|(k, _)| *k == part) else {
            return false;
        };
        if parts.peek().is_none() {
            return true;
        }
        match node {
            Node::Obj(children) => level = children,
            _ => return false,
        }
    }
    false
}

/// Puts `node` at `key`: in place of the value there, or appended.
fn replace<'l>(level: &mut Level<'l>, key: &'l str, node: Node<'l>) {
    match level.iter_mut().find(|(k, _)| *k == key) {
        Some((_, slot)) => *slot = node,
        None => level.push((key, node)),
    }
}

/// Replays the shape of `log` on a tree of operation numbers, with the tree's rules.
fn simulate(log: &Log) -> Level<'_> {
    let mut root: Level<'_> = Vec::new();
    let mut keys = log.keys.iter();
    for (i, op) in log.ops.iter().enumerate() {
        let Ok(i) = u32::try_from(i) else { break };
        let (parent, leaf) = match op.kind {
            OpKind::SetDyn => match keys.next() {
                Some(key) => (op.path, &**key),
                None => break,
            },
            _ => split_path(op.path),
        };
        match op.kind {
            OpKind::SetDyn => replace(object_at(&mut root, parent), leaf, Node::Leaf(i)),
            OpKind::Set => replace(object_at(&mut root, parent), leaf, Node::Leaf(i)),
            OpKind::SetDefault => {
                if !exists(&root, op.path) {
                    replace(object_at(&mut root, parent), leaf, Node::Leaf(i));
                }
            }
            OpKind::Push => {
                let level = object_at(&mut root, parent);
                match level.iter_mut().find(|(k, _)| *k == leaf) {
                    Some((_, Node::Pushed { pushes, .. })) => pushes.push(i),
                    Some((_, slot)) => {
                        let base = match slot {
                            Node::Leaf(j) if is_array(&log.ops, *j) => Some(*j),
                            _ => None,
                        };
                        *slot = Node::Pushed {
                            base,
                            pushes: vec![i],
                        };
                    }
                    None => level.push((
                        leaf,
                        Node::Pushed {
                            base: None,
                            pushes: vec![i],
                        },
                    )),
                }
            }
        }
    }
    root
}

impl Plan {
    fn matches(&self, log: &Log) -> bool {
        self.shape.len() == log.ops.len()
            && self.keys == log.keys
            && self
                .shape
                .iter()
                .zip(&log.ops)
                .all(|(shape, op)| *shape == OpShape::of(op))
    }

    /// Replays the shape of `log` on a tree of operation numbers, then flattens it.
    fn compile(log: &Log) -> Plan {
        let root = simulate(log);
        let mut plan = Plan {
            shape: log.ops.iter().map(OpShape::of).collect(),
            keys: log.keys.clone(),
            dynamic: !log.keys.is_empty(),
            bytes: Vec::new(),
            steps: Vec::new(),
            pushes: Vec::new(),
            fields: OnceCell::new(),
            used: Cell::new(false),
        };
        let mut raw_start = 0;
        plan.flatten(&root, &mut raw_start);
        plan.end_raw(&mut raw_start);
        // Grown by pushes, the buffers held up to twice their bytes, for as long as
        // the plan stays cached.
        plan.bytes.shrink_to_fit();
        plan.steps.shrink_to_fit();
        plan.pushes.shrink_to_fit();
        plan
    }

    /// What each dotted path holds, listed when a read first asks (writing does not
    /// need it).
    fn fields(&self, log: &Log) -> &[(Box<str>, Field)] {
        self.fields.get_or_init(|| {
            let mut fields = Vec::new();
            list_fields(&simulate(log), &mut String::new(), &mut fields);
            fields
        })
    }

    /// Appends the steps of one object level; `path` is its dotted path.
    fn flatten(&mut self, level: &Level<'_>, raw_start: &mut usize) {
        self.bytes.push(b'{');
        for (n, (key, node)) in level.iter().enumerate() {
            if n > 0 {
                self.bytes.push(b',');
            }
            // Escaped like the tree's run-time keys; a static key (an ECS name) has
            // nothing to escape, so it comes out as the tree writes it, unescaped.
            write_str(&mut self.bytes, key);
            self.bytes.push(b':');
            match node {
                Node::Leaf(i) => {
                    self.end_raw(raw_start);
                    self.steps.push(Step::Value(*i));
                }
                Node::Pushed { base, pushes } => {
                    self.end_raw(raw_start);
                    let start = self.pushes.len() as u32;
                    self.pushes.extend_from_slice(pushes);
                    self.steps.push(Step::Pushed {
                        base: *base,
                        start,
                        end: self.pushes.len() as u32,
                    });
                }
                Node::Obj(children) => self.flatten(children, raw_start),
            }
        }
        self.bytes.push(b'}');
    }

    /// Ends the run of raw bytes since `raw_start` with a step (when not empty).
    fn end_raw(&mut self, raw_start: &mut usize) {
        if self.bytes.len() > *raw_start {
            self.steps.push(Step::Raw {
                start: *raw_start as u32,
                end: self.bytes.len() as u32,
            });
            *raw_start = self.bytes.len();
        }
    }
}

/// Lists what each dotted path under `level` holds (`path` is the level's own).
fn list_fields(level: &Level<'_>, path: &mut String, fields: &mut Vec<(Box<str>, Field)>) {
    for (key, node) in level {
        // A run-time key with a dot in it is out of reach of a dotted path (the tree's
        // `get` splits on the dots too): it must not answer for another.
        if key.contains('.') {
            continue;
        }
        let outer = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        match node {
            Node::Leaf(i) => fields.push((path.as_str().into(), Field::Value(*i))),
            Node::Pushed { .. } => fields.push((path.as_str().into(), Field::Composite)),
            Node::Obj(children) => {
                fields.push((path.as_str().into(), Field::Composite));
                list_fields(children, path, fields);
            }
        }
        path.truncate(outer);
    }
}

/// Writes an event from the tree [`simulate`] made, without a plan: for a shape seen
/// for the first time (most never come back; see [`plan_for`]).
fn write_level(out: &mut Vec<u8>, level: &Level<'_>, ops: &[Op], redactor: Option<&Redactor>) {
    write_members(out, level.iter(), |out, (key, node)| {
        write_str(out, key);
        out.push(b':');
        match node {
            Node::Leaf(i) => {
                if let Some(op) = ops.get(*i as usize) {
                    write_value(out, &op.value, redactor);
                }
            }
            Node::Pushed { base, pushes } => write_pushed(out, ops, *base, pushes, redactor),
            Node::Obj(children) => write_level(out, children, ops, redactor),
        }
    });
}

fn is_array(log: &[Op], i: u32) -> bool {
    log.get(i as usize)
        .is_some_and(|op| matches!(op.value, Value::Arr(_)))
}

/// A hasher for keys that are hashes already.
#[derive(Default)]
struct ShapeHasher(u64);

impl Hasher for ShapeHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Shapes remembered as seen once, by hash (a direct-mapped table).
const SEEN_SLOTS: usize = 4096;

/// One thread's plans, and the shapes it saw once.
#[derive(Default)]
struct PlanCache {
    plans: HashMap<u64, Rc<Plan>, BuildHasherDefault<ShapeHasher>>,
    seen: Vec<u64>,
}

impl PlanCache {
    /// Drops the plans not used since the last sweep (all of them when every one
    /// was): the shapes most events have stay, the long tail of odd combinations of
    /// optional fields goes. Clearing the whole cache instead made the common shapes
    /// compile again after every sweep.
    fn make_room(&mut self) {
        let before = self.plans.len();
        self.plans.retain(|_, plan| plan.used.replace(false));
        if self.plans.len() == before {
            self.plans.clear();
        }
    }

    /// Whether `shape` was seen before (and remembers it if not).
    fn seen_before(&mut self, shape: u64) -> bool {
        if self.seen.is_empty() {
            self.seen = vec![0; SEEN_SLOTS];
        }
        let slot = (shape >> 52) as usize % SEEN_SLOTS;
        match self.seen.get_mut(slot) {
            Some(seen) if *seen == shape => true,
            Some(seen) => {
                *seen = shape;
                false
            }
            None => false,
        }
    }
}

/// How often shapes with run-time keys found a plan, on this thread.
#[derive(Debug, Clone, Copy, Default)]
struct DynamicStats {
    hits: u32,
    misses: u32,
    /// `set_dyn` calls sent to the tree since the rate went bad.
    skipped: u32,
}

thread_local! {
    static PLANS: RefCell<PlanCache> = RefCell::default();
    static DYNAMIC: Cell<DynamicStats> = const {
        Cell::new(DynamicStats { hits: 0, misses: 0, skipped: 0 })
    };
}

/// Whether events with run-time keys should stay flat on this thread: yes while at
/// least 3 in 4 of their shapes found a plan made earlier. When they do not (keys that
/// differ from record to record), `set_dyn` turns the event into a tree; after 4,096
/// such calls the rate is measured afresh (the next object may be of another kind).
pub(crate) fn dynamic_shapes_repeat() -> bool {
    DYNAMIC.with(|cell| {
        let mut stats = cell.get();
        let repeat = stats.misses < 64 || stats.misses * 4 <= stats.hits + stats.misses;
        if !repeat {
            stats.skipped += 1;
            if stats.skipped >= 4096 {
                stats = DynamicStats::default();
            }
            cell.set(stats);
        }
        repeat
    })
}

/// Counts a plan found (`hit`) or made for a shape with run-time keys; older counts
/// fade so that the rate follows what the thread parses now.
fn count_dynamic(hit: bool) {
    DYNAMIC.with(|cell| {
        let mut stats = cell.get();
        if hit {
            stats.hits += 1;
        } else {
            stats.misses += 1;
        }
        if stats.hits + stats.misses >= 8192 {
            stats.hits /= 2;
            stats.misses /= 2;
        }
        cell.set(stats);
    });
}

/// The cached plan for `log`'s shape. When there is none, a shape seen before is
/// planned and cached (`compile`); a shape seen for the first time is not: most shapes
/// that come once never come back (optional fields present in odd combinations), and
/// planning costs about as much as writing such an event from its tree.
fn plan_for(log: &Log, compile: bool) -> Option<Rc<Plan>> {
    let shape = log.shape;
    PLANS.with(|cell| {
        let mut cache = cell.try_borrow_mut().ok()?;
        if let Some(plan) = cache.plans.get(&shape)
            && plan.matches(log)
        {
            plan.used.set(true);
            if plan.dynamic {
                count_dynamic(true);
            }
            return Some(Rc::clone(plan));
        }
        if !compile {
            return None;
        }
        if !log.keys.is_empty() {
            count_dynamic(false);
        }
        if !cache.seen_before(shape) {
            return None;
        }
        let plan = Rc::new(Plan::compile(log));
        if cache.plans.len() >= MAX_PLANS {
            cache.make_room();
        }
        cache.plans.insert(shape, Rc::clone(&plan));
        Some(plan)
    })
}

/// Appends the event recorded in `log` as compact JSON (see `Event::write_json`).
pub(crate) fn write_json(log: &Log, out: &mut Vec<u8>, redactor: Option<&Redactor>) {
    let Some(plan) = plan_for(log, true) else {
        return write_level(out, &simulate(log), &log.ops, redactor);
    };
    let log = &log.ops[..];
    let value = |i: u32| log.get(i as usize).map(|op| &op.value);
    for step in &plan.steps {
        match *step {
            Step::Raw { start, end } => {
                if let Some(bytes) = plan.bytes.get(start as usize..end as usize) {
                    out.extend_from_slice(bytes);
                }
            }
            Step::Value(i) => {
                if let Some(v) = value(i) {
                    write_value(out, v, redactor);
                }
            }
            Step::Pushed { base, start, end } => {
                let pushes = plan.pushes.get(start as usize..end as usize).unwrap_or(&[]);
                write_pushed(out, log, base, pushes, redactor);
            }
        }
    }
}

/// Writes the array `push_unique` makes: the base array's items, then each pushed
/// value unless one equal to it came before (an earlier push left out was equal to an
/// item before it, so comparing with every earlier push answers the same).
fn write_pushed(
    out: &mut Vec<u8>,
    log: &[Op],
    base: Option<u32>,
    pushes: &[u32],
    redactor: Option<&Redactor>,
) {
    let items: &[Value] = match base.and_then(|b| log.get(b as usize)) {
        Some(Op {
            value: Value::Arr(items),
            ..
        }) => items,
        _ => &[],
    };
    let value = |i: u32| log.get(i as usize).map(|op| &op.value);
    out.push(b'[');
    let mut first = true;
    let mut write = |out: &mut Vec<u8>, v: &Value| {
        if !first {
            out.push(b',');
        }
        first = false;
        write_value(out, v, redactor);
    };
    for item in items {
        write(out, item);
    }
    for (n, &p) in pushes.iter().enumerate() {
        let Some(v) = value(p) else { continue };
        let seen = items.iter().any(|item| item.same_as(v))
            || pushes[..n]
                .iter()
                .any(|&q| value(q).is_some_and(|earlier| earlier.same_as(v)));
        if !seen {
            write(out, v);
        }
    }
    out.push(b']');
}

/// What is at `path` in the event recorded in `log`: `Some(value or None)` when the
/// plan or a scan of the log tells (a plain field, or nothing there), `None` when it
/// takes a tree (an object, a pushed array, or a log the scan cannot answer for).
pub(crate) fn get<'l>(log: &'l Log, path: &str) -> Option<Option<&'l Value>> {
    let Some(plan) = plan_for(log, false) else {
        return scan(log, path);
    };
    let fields = plan.fields(log);
    let log = &log.ops[..];
    match fields.iter().find(|(p, _)| **p == *path) {
        None => Some(None),
        Some((_, Field::Value(i))) => Some(log.get(*i as usize).map(|op| &op.value)),
        Some((_, Field::Composite)) => None,
    }
}

/// Whether `path` lies under `parent` (`a.b.c` under `a.b`, not under `a.bc`).
fn is_under(path: &str, parent: &str) -> bool {
    path.len() > parent.len()
        && path.as_bytes().get(parent.len()) == Some(&b'.')
        && path.starts_with(parent)
}

/// Reads `path` from the log itself, for a parser that reads a field back while
/// building its event (its shape then is only a prefix, with no plan): the last `set`
/// (or `set_dyn`) of exactly `path` holds, unless a later operation went through it or
/// replaced a parent. Anything less plain (pushed arrays, a `set_default` with
/// something before it, objects, a run-time key with a dot) is left to a tree (`None`).
fn scan<'l>(log: &'l Log, path: &str) -> Option<Option<&'l Value>> {
    let ops = &log.ops[..];
    // Full paths: the static ones as they are, `set_dyn`'s joined with their keys.
    let full: Vec<Cow<'_, str>> = if log.keys.is_empty() {
        ops.iter().map(|op| Cow::Borrowed(op.path)).collect()
    } else {
        if log.keys.iter().any(|k| k.contains('.')) {
            return None;
        }
        let mut keys = log.keys.iter();
        let mut full = Vec::with_capacity(ops.len());
        for op in ops {
            full.push(match (op.kind, op.path) {
                (OpKind::SetDyn, "") => Cow::Borrowed(&**keys.next()?),
                (OpKind::SetDyn, parent) => Cow::Owned(format!("{parent}.{}", keys.next()?)),
                (_, path) => Cow::Borrowed(path),
            });
        }
        full
    };
    let Some(i) = full.iter().rposition(|p| p == path) else {
        return match full.iter().any(|p| is_under(p, path)) {
            true => None,
            false => Some(None),
        };
    };
    let op = ops.get(i)?;
    let took_effect = match op.kind {
        OpKind::Set | OpKind::SetDyn => true,
        OpKind::SetDefault => !full[..i].iter().any(|p| p == path || is_under(p, path)),
        OpKind::Push => false,
    };
    if !took_effect
        || full[i + 1..]
            .iter()
            .any(|p| is_under(path, p) || is_under(p, path))
    {
        return None;
    }
    Some(Some(&op.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATHS: [&str; 4] = ["a", "b.c", "d", "e.f"];

    /// A log setting the paths whose bits are in `mask`: one shape per mask.
    fn log_of(mask: usize) -> Log {
        let mut log = Log::with_capacity(PATHS.len());
        for (i, path) in PATHS.iter().enumerate() {
            if mask & (1 << i) != 0 {
                log.push(OpKind::Set, path, Value::Static("x"));
            }
        }
        log
    }

    fn cache_of(masks: std::ops::Range<usize>) -> PlanCache {
        let mut cache = PlanCache::default();
        for mask in masks {
            let log = log_of(mask);
            cache.plans.insert(log.shape, Rc::new(Plan::compile(&log)));
        }
        cache
    }

    #[test]
    fn making_room_keeps_the_plans_used_since_the_last_sweep() {
        let mut cache = cache_of(1..16);
        let hot: Vec<u64> = [3, 7, 12].iter().map(|&m| log_of(m).shape).collect();
        for shape in &hot {
            cache.plans[shape].used.set(true);
        }
        cache.make_room();
        let mut kept: Vec<u64> = cache.plans.keys().copied().collect();
        kept.sort_unstable();
        let mut expected = hot.clone();
        expected.sort_unstable();
        assert_eq!(
            kept, expected,
            "the unused plans went, the used ones stayed"
        );
        // Not used again since: the next sweep drops them too.
        cache.make_room();
        assert!(cache.plans.is_empty());
    }

    #[test]
    fn making_room_when_every_plan_was_used_clears_the_cache() {
        let mut cache = cache_of(1..9);
        for plan in cache.plans.values() {
            plan.used.set(true);
        }
        cache.make_room();
        assert!(cache.plans.is_empty(), "room is made all the same");
    }

    #[test]
    fn a_cached_plan_holds_no_spare_capacity() {
        let log = log_of(15);
        let plan = Plan::compile(&log);
        assert_eq!(plan.bytes.capacity(), plan.bytes.len());
        assert_eq!(plan.steps.capacity(), plan.steps.len());
        let mut out = Vec::new();
        write_json(&log, &mut out, None);
        write_json(&log, &mut out, None);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            r#"{"a":"x","b":{"c":"x"},"d":"x","e":{"f":"x"}}{"a":"x","b":{"c":"x"},"d":"x","e":{"f":"x"}}"#
        );
    }
}
