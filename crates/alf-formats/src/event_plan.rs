//! Writing a flat [`Event`](crate::Event) from a plan compiled once per shape.
//!
//! A flat event is the log of its operations: `set`, `set_default` and `push_unique`,
//! each with a static path and a value. Its *shape* is that sequence without the
//! values (kind, path, and whether a set value is an array, which `push_unique`
//! appends to). Events of one format mostly share a handful of shapes: the same
//! fields in the same order, some optional ones present or not. So the nested JSON is
//! planned once per shape: [`Plan::compile`] replays the shape on a small tree with
//! the [`Tree`](crate::event::Tree)'s own rules (a parent is created where it is first
//! needed; setting a path again replaces its value in place; a leaf in the way of a
//! child becomes an object), and flattens that tree into steps: raw bytes (braces,
//! commas and quoted keys, joined), then "write the value of operation *i*", and so
//! on. Writing an event is then one pass over its plan.
//!
//! Plans are cached per thread by the shape's hash and checked against the whole
//! shape on every hit, so a collision costs a compile, never wrong output. The cache
//! is bounded ([`MAX_PLANS`]); formats whose shapes vary without end keep working, at
//! the cost of a compile per event.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use crate::event::{Segments, Value, split_path};
use crate::json_write::{write_str, write_value};
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
    /// The key of a `set_dyn`, only known at run time.
    pub(crate) key: Option<Box<str>>,
    pub(crate) value: Value,
}

/// The part of an operation its plan depends on. A static path is told by its
/// address and length: the same literal is the same address, so comparing shapes does
/// not compare text (two copies of one literal make two shapes, each planned
/// correctly). A run-time key is compared as text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OpShape {
    kind: OpKind,
    path: (usize, usize),
    key: Option<Box<str>>,
    array: bool,
}

impl OpShape {
    fn of(op: &Op) -> OpShape {
        OpShape {
            kind: op.kind,
            path: (op.path.as_ptr() as usize, op.path.len()),
            key: op.key.clone(),
            array: matches!(op.value, Value::Arr(_)),
        }
    }

    /// Whether `op` has this shape (without building its `OpShape`).
    #[inline]
    fn fits(&self, op: &Op) -> bool {
        self.kind == op.kind
            && self.path == (op.path.as_ptr() as usize, op.path.len())
            && self.array == matches!(op.value, Value::Arr(_))
            && self.key.as_deref() == op.key.as_deref()
    }
}

/// The shape hash after one more operation.
#[inline]
pub(crate) fn next_shape(
    shape: u64,
    kind: OpKind,
    path: &'static str,
    key: Option<&str>,
    value: &Value,
) -> u64 {
    let mut bits = (path.as_ptr() as u64)
        ^ ((path.len() as u64) << 48)
        ^ ((kind as u64) << 60)
        ^ (u64::from(matches!(value, Value::Arr(_))) << 63);
    if let Some(key) = key {
        bits ^= xxhash_rust::xxh3::xxh3_64(key.as_bytes());
    }
    (shape.rotate_left(5) ^ bits).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Plans kept per thread; past this many the cache starts again.
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
    /// Whether the shape has `set_dyn` keys (see [`dynamic_shapes_repeat`]).
    dynamic: bool,
    bytes: Vec<u8>,
    steps: Vec<Step>,
    pushes: Vec<u32>,
    fields: Vec<(Box<str>, Field)>,
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

impl Plan {
    fn matches(&self, log: &[Op]) -> bool {
        self.shape.len() == log.len()
            && self.shape.iter().zip(log).all(|(shape, op)| shape.fits(op))
    }

    /// Replays the shape of `log` on a tree of operation numbers, then flattens it.
    fn compile(log: &[Op]) -> Plan {
        let mut root: Level<'_> = Vec::new();
        for (i, op) in log.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            let (parent, leaf) = match (op.kind, op.key.as_deref()) {
                (OpKind::SetDyn, Some(key)) => (op.path, key),
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
                                Node::Leaf(j) if is_array(log, *j) => Some(*j),
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
        let mut plan = Plan {
            shape: log.iter().map(OpShape::of).collect(),
            dynamic: log.iter().any(|op| op.key.is_some()),
            bytes: Vec::new(),
            steps: Vec::new(),
            pushes: Vec::new(),
            fields: Vec::new(),
        };
        let mut raw_start = 0;
        plan.flatten(&root, &mut String::new(), &mut raw_start);
        plan.end_raw(&mut raw_start);
        plan
    }

    /// Appends the steps of one object level; `path` is its dotted path.
    fn flatten(&mut self, level: &Level<'_>, path: &mut String, raw_start: &mut usize) {
        self.bytes.push(b'{');
        for (n, (key, node)) in level.iter().enumerate() {
            if n > 0 {
                self.bytes.push(b',');
            }
            // Escaped like the tree's run-time keys; a static key (an ECS name) has
            // nothing to escape, so it comes out as the tree writes it, unescaped.
            write_str(&mut self.bytes, key);
            self.bytes.push(b':');
            let outer = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            // A run-time key with a dot in it is out of reach of a dotted path (the
            // tree's `get` splits on the dots too): it must not answer for another.
            let listed = !key.contains('.');
            match node {
                Node::Leaf(i) => {
                    self.end_raw(raw_start);
                    self.steps.push(Step::Value(*i));
                    if listed {
                        self.fields.push((path.as_str().into(), Field::Value(*i)));
                    }
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
                    if listed {
                        self.fields.push((path.as_str().into(), Field::Composite));
                    }
                }
                Node::Obj(children) => {
                    if listed {
                        self.fields.push((path.as_str().into(), Field::Composite));
                    }
                    self.flatten(children, path, raw_start);
                }
            }
            path.truncate(outer);
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

type PlanCache = HashMap<u64, Rc<Plan>, BuildHasherDefault<ShapeHasher>>;

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

/// The plan for `log`, whose shape hash is `shape`: cached, or compiled and cached.
fn plan_for(log: &[Op], shape: u64) -> Rc<Plan> {
    PLANS.with(|cell| {
        let Ok(mut plans) = cell.try_borrow_mut() else {
            return Rc::new(Plan::compile(log));
        };
        if let Some(plan) = plans.get(&shape)
            && plan.matches(log)
        {
            if plan.dynamic {
                count_dynamic(true);
            }
            return Rc::clone(plan);
        }
        let plan = Rc::new(Plan::compile(log));
        if plan.dynamic {
            count_dynamic(false);
        }
        if plans.len() >= MAX_PLANS {
            plans.clear();
        }
        plans.insert(shape, Rc::clone(&plan));
        plan
    })
}

/// Appends the event recorded in `log` as compact JSON (see `Event::write_json`).
pub(crate) fn write_json(log: &[Op], shape: u64, out: &mut Vec<u8>, redactor: Option<&Redactor>) {
    let plan = plan_for(log, shape);
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
/// plan tells (a plain field, or nothing there), `None` when it takes a tree (an
/// object or a pushed array).
pub(crate) fn get<'l>(log: &'l [Op], shape: u64, path: &str) -> Option<Option<&'l Value>> {
    let plan = plan_for(log, shape);
    match plan.fields.iter().find(|(p, _)| **p == *path) {
        None => Some(None),
        Some((_, Field::Value(i))) => Some(log.get(*i as usize).map(|op| &op.value)),
        Some((_, Field::Composite)) => None,
    }
}
