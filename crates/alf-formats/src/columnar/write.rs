//! Writes JSON records as a Parquet file with a given schema: how the tests, the bench
//! generators and the fuzz seeds make Parquet objects with the same crate the reader
//! uses (no Arrow, so no second copy of the Parquet machinery to compile).
//!
//! The schema is a Parquet message type (`message m { optional binary srcaddr (UTF8);
//! optional int64 start; optional group src_endpoint { ... } }`). Records are shredded
//! the Dremel way: every leaf column gets its values with definition and repetition
//! levels. Supported: optional/required/repeated primitives (UTF8 byte arrays, int32,
//! int64, double, boolean), nested groups, and 3-level `LIST` groups whose JSON value is
//! an array. JSON `null` or a missing key is a null.

use std::borrow::Borrow;
use std::io::Write;
use std::sync::Arc;

use parquet::basic::{Compression, Repetition, Type as PhysicalType};
use parquet::data_type::{
    BoolType, ByteArray, ByteArrayType, DataType, DoubleType, FloatType, Int32Type, Int64Type,
};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::{SchemaDescriptor, Type};
use serde_json::Value as J;

/// Why a Parquet file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("column {column}: {value} is not a {kind}")]
    Value {
        column: String,
        value: String,
        kind: &'static str,
    },
    #[error("column {0} is required but the record has no value")]
    Required(String),
}

/// The codecs AWS writes Parquet with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Uncompressed,
    Snappy,
    Gzip,
    Zstd,
}

impl Codec {
    fn compression(self) -> Compression {
        match self {
            Codec::Uncompressed => Compression::UNCOMPRESSED,
            Codec::Snappy => Compression::SNAPPY,
            Codec::Gzip => Compression::GZIP(Default::default()),
            Codec::Zstd => Compression::ZSTD(Default::default()),
        }
    }
}

/// Values, definition and repetition levels of one leaf column.
struct Leaf {
    name: String,
    physical: PhysicalType,
    max_def: i16,
    max_rep: i16,
    bytes: Vec<ByteArray>,
    ints: Vec<i32>,
    longs: Vec<i64>,
    doubles: Vec<f64>,
    bools: Vec<bool>,
    defs: Vec<i16>,
    reps: Vec<i16>,
}

impl Leaf {
    fn clear(&mut self) {
        self.bytes.clear();
        self.ints.clear();
        self.longs.clear();
        self.doubles.clear();
        self.bools.clear();
        self.defs.clear();
        self.reps.clear();
    }

    fn null(&mut self, rep: i16, def: i16) {
        self.reps.push(rep);
        self.defs.push(def);
    }

    fn value(&mut self, v: &J, rep: i16, def: i16) -> Result<(), WriteError> {
        let bad = |kind| WriteError::Value {
            column: self.name.clone(),
            value: v.to_string(),
            kind,
        };
        match self.physical {
            PhysicalType::BYTE_ARRAY | PhysicalType::FIXED_LEN_BYTE_ARRAY => {
                let text = match v {
                    J::String(s) => s.clone(),
                    other => other.to_string(),
                };
                self.bytes.push(ByteArray::from(text.into_bytes()));
            }
            PhysicalType::INT32 => {
                let n = number(v)
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| bad("int32"))?;
                self.ints.push(n);
            }
            PhysicalType::INT64 => {
                let n = number(v).ok_or_else(|| bad("int64"))?;
                self.longs.push(n);
            }
            PhysicalType::DOUBLE | PhysicalType::FLOAT => {
                let n = match v {
                    J::Number(n) => n.as_f64(),
                    J::String(s) => s.parse().ok(),
                    _ => None,
                }
                .ok_or_else(|| bad("double"))?;
                self.doubles.push(n);
            }
            PhysicalType::BOOLEAN => {
                let b = match v {
                    J::Bool(b) => Some(*b),
                    J::String(s) => s.parse().ok(),
                    _ => None,
                }
                .ok_or_else(|| bad("boolean"))?;
                self.bools.push(b);
            }
            PhysicalType::INT96 => return Err(bad("supported type (int96)")),
        }
        self.reps.push(rep);
        self.defs.push(def);
        Ok(())
    }
}

fn number(v: &J) -> Option<i64> {
    match v {
        J::Number(n) => n.as_i64(),
        J::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn leaf_count(node: &Type) -> usize {
    if node.is_primitive() {
        1
    } else {
        node.get_fields().iter().map(|f| leaf_count(f)).sum()
    }
}

fn collect_leaves(node: &Type, path: &str, out: &mut Vec<Leaf>) {
    let name = if path.is_empty() {
        node.name().to_owned()
    } else {
        format!("{path}.{}", node.name())
    };
    if node.is_primitive() {
        out.push(Leaf {
            name,
            physical: node.get_physical_type(),
            max_def: 0,
            max_rep: 0,
            bytes: Vec::new(),
            ints: Vec::new(),
            longs: Vec::new(),
            doubles: Vec::new(),
            bools: Vec::new(),
            defs: Vec::new(),
            reps: Vec::new(),
        });
    } else {
        for f in node.get_fields() {
            collect_leaves(f, &name, out);
        }
    }
}

/// Shreds `value` for `node` whose leaves start at `leaves[0]`.
fn shred(
    node: &Type,
    value: Option<&J>,
    rep: i16,
    def: i16,
    depth: i16,
    leaves: &mut [Leaf],
) -> Result<(), WriteError> {
    let value = value.filter(|v| !v.is_null());
    match node.get_basic_info().repetition() {
        Repetition::REPEATED => {
            let items: Vec<&J> = match value {
                Some(J::Array(items)) => items.iter().collect(),
                Some(single) => vec![single],
                None => Vec::new(),
            };
            if items.is_empty() {
                nulls(leaves, rep, def);
                return Ok(());
            }
            for (i, item) in items.into_iter().enumerate() {
                let r = if i == 0 { rep } else { depth + 1 };
                present(node, item, r, def + 1, depth + 1, leaves)?;
            }
            Ok(())
        }
        Repetition::OPTIONAL => match value {
            Some(v) => present(node, v, rep, def + 1, depth, leaves),
            None => {
                nulls(leaves, rep, def);
                Ok(())
            }
        },
        Repetition::REQUIRED => match value {
            Some(v) => present(node, v, rep, def, depth, leaves),
            None => Err(WriteError::Required(node.name().to_owned())),
        },
    }
}

fn nulls(leaves: &mut [Leaf], rep: i16, def: i16) {
    for leaf in leaves {
        leaf.null(rep, def);
    }
}

/// `value` is present for `node` (its definition level already counted).
fn present(
    node: &Type,
    value: &J,
    rep: i16,
    def: i16,
    depth: i16,
    leaves: &mut [Leaf],
) -> Result<(), WriteError> {
    if node.is_primitive() {
        return leaves[0].value(value, rep, def);
    }
    let fields = node.get_fields();
    let mut start = 0;
    for child in fields {
        let n = leaf_count(child);
        let child_value = match value {
            // A wrapper group of one field (the LIST levels) passes its value down
            // unless the object names that field.
            J::Object(map) if map.contains_key(child.name()) || fields.len() > 1 => {
                map.get(child.name())
            }
            other if fields.len() == 1 => Some(other),
            _ => None,
        };
        shred(
            child,
            child_value,
            rep,
            def,
            depth,
            &mut leaves[start..start + n],
        )?;
        start += n;
    }
    Ok(())
}

/// Writes `records` as a Parquet file of schema `message_type` to `out`, starting a new
/// row group every `rows_per_group` records.
pub fn write_json_records<W: Write + Send, R: Borrow<J>>(
    out: W,
    message_type: &str,
    records: impl IntoIterator<Item = R>,
    rows_per_group: usize,
    codec: Codec,
) -> Result<W, WriteError> {
    let schema = Arc::new(parse_message_type(message_type)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(codec.compression())
            .build(),
    );
    let mut writer = SerializedFileWriter::new(out, Arc::clone(&schema), props)?;
    let mut leaves = Vec::new();
    collect_leaves(&schema, "", &mut leaves);
    let descriptor = SchemaDescriptor::new(Arc::clone(&schema));
    for (i, leaf) in leaves.iter_mut().enumerate() {
        let column = descriptor.column(i);
        leaf.max_def = column.max_def_level();
        leaf.max_rep = column.max_rep_level();
        // The root's own name is not part of the column paths.
        if let Some((_, rest)) = leaf.name.split_once('.') {
            leaf.name = rest.to_owned();
        }
    }
    let rows_per_group = rows_per_group.max(1);
    let mut pending = 0usize;
    for record in records {
        let record = record.borrow();
        let mut start = 0;
        for field in schema.get_fields() {
            let n = leaf_count(field);
            shred(
                field,
                record.get(field.name()),
                0,
                0,
                0,
                &mut leaves[start..start + n],
            )?;
            start += n;
        }
        pending += 1;
        if pending == rows_per_group {
            flush(&mut writer, &mut leaves)?;
            pending = 0;
        }
    }
    if pending > 0 {
        flush(&mut writer, &mut leaves)?;
    }
    Ok(writer.into_inner()?)
}

/// Writes one leaf's values, with its definition and repetition levels, as Parquet
/// type `T`.
fn write_values<T: DataType>(
    column: &mut SerializedColumnWriter<'_>,
    values: &[T::T],
    defs: Option<&[i16]>,
    reps: Option<&[i16]>,
) -> Result<(), WriteError> {
    column.typed::<T>().write_batch(values, defs, reps)?;
    Ok(())
}

fn flush<W: Write + Send>(
    writer: &mut SerializedFileWriter<W>,
    leaves: &mut [Leaf],
) -> Result<(), WriteError> {
    let mut group = writer.next_row_group()?;
    for leaf in leaves.iter_mut() {
        let Some(mut column) = group.next_column()? else {
            break;
        };
        let defs = (leaf.max_def > 0).then_some(leaf.defs.as_slice());
        let reps = (leaf.max_rep > 0).then_some(leaf.reps.as_slice());
        match leaf.physical {
            PhysicalType::BYTE_ARRAY | PhysicalType::FIXED_LEN_BYTE_ARRAY => {
                write_values::<ByteArrayType>(&mut column, &leaf.bytes, defs, reps)?;
            }
            PhysicalType::INT32 => write_values::<Int32Type>(&mut column, &leaf.ints, defs, reps)?,
            PhysicalType::INT64 => write_values::<Int64Type>(&mut column, &leaf.longs, defs, reps)?,
            PhysicalType::DOUBLE => {
                write_values::<DoubleType>(&mut column, &leaf.doubles, defs, reps)?;
            }
            PhysicalType::FLOAT => {
                let floats: Vec<f32> = leaf.doubles.iter().map(|d| *d as f32).collect();
                write_values::<FloatType>(&mut column, &floats, defs, reps)?;
            }
            PhysicalType::BOOLEAN => {
                write_values::<BoolType>(&mut column, &leaf.bools, defs, reps)?
            }
            PhysicalType::INT96 => {}
        }
        column.close()?;
        leaf.clear();
    }
    group.close()?;
    Ok(())
}

/// Flow log fields AWS types as `int` in its Parquet schema; `start`, `end`, `packets`
/// and `bytes` (and the Transit Gateway loss counters) are `bigint`, the rest `string`.
const VPC_FLOW_INT32: &[&str] = &[
    "version",
    "srcport",
    "dstport",
    "protocol",
    "tcp-flags",
    "traffic-path",
];
const VPC_FLOW_INT64: &[&str] = &[
    "packets",
    "bytes",
    "start",
    "end",
    "packets-lost-no-route",
    "packets-lost-blackhole",
    "packets-lost-mtu-exceeded",
    "packets-lost-ttl-expired",
];

/// The Parquet message type AWS uses for flow logs of the given fields (names with `-`
/// as in the text header; columns get `_`).
pub fn vpc_flow_message_type(fields: &[&str]) -> String {
    let mut s = String::from("message vpc_flow_logs {\n");
    for name in fields {
        let column = name.replace('-', "_");
        if VPC_FLOW_INT32.contains(name) {
            s.push_str(&format!("  optional int32 {column};\n"));
        } else if VPC_FLOW_INT64.contains(name) {
            s.push_str(&format!("  optional int64 {column};\n"));
        } else {
            s.push_str(&format!("  optional binary {column} (UTF8);\n"));
        }
    }
    s.push('}');
    s
}

/// Converts flow log text with a header line (as S3 delivery writes it) into the
/// Parquet file AWS would deliver for the same records: `-` becomes null, numeric
/// fields become int/bigint. Returns the writer and the number of records.
pub fn vpc_flow_text_to_parquet<W: Write + Send>(
    text: &str,
    out: W,
    rows_per_group: usize,
    codec: Codec,
) -> Result<(W, usize), WriteError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .map(|h| h.split_whitespace().collect())
        .unwrap_or_default();
    let records: Vec<J> = lines.map(|line| vpc_flow_record(&header, line)).collect();
    let out = write_json_records(
        out,
        &vpc_flow_message_type(&header),
        &records,
        rows_per_group,
        codec,
    )?;
    Ok((out, records.len()))
}

/// One flow log text record (fields named by `header`, as in the text header line) as
/// the row AWS writes to Parquet: `-` is null, int/bigint fields are numbers.
pub fn vpc_flow_record(header: &[&str], line: &str) -> J {
    let map: serde_json::Map<String, J> = header
        .iter()
        .zip(line.split_whitespace())
        .map(|(name, value)| {
            let v = if value == "-" {
                J::Null
            } else if VPC_FLOW_INT32.contains(name) || VPC_FLOW_INT64.contains(name) {
                value
                    .parse::<i64>()
                    .map_or_else(|_| J::String(value.to_owned()), J::from)
            } else {
                J::String(value.to_owned())
            };
            (name.replace('-', "_"), v)
        })
        .collect();
    J::Object(map)
}

/// An OCSF schema covering the attributes of the Security Lake classes that
/// [`crate::formats::security_lake`] maps (one union of API, Network, DNS, HTTP
/// Activity and Detection Finding, with Security Lake's partition columns), for tests
/// and generators. Real Security Lake files have one schema per source; the reader
/// does not depend on any schema beyond `class_uid`.
pub const OCSF_SCHEMA: &str = "message ocsf {
  optional int32 class_uid; optional binary class_name (UTF8);
  optional int32 category_uid; optional int32 activity_id; optional binary activity_name (UTF8);
  optional int64 type_uid; optional int32 severity_id; optional binary severity (UTF8);
  optional int32 status_id; optional binary status (UTF8); optional binary status_detail (UTF8);
  optional int64 time (TIMESTAMP_MILLIS); optional int64 start_time; optional int64 end_time;
  optional binary message (UTF8); optional int32 action_id; optional binary action (UTF8);
  optional group metadata {
    optional binary version (UTF8); optional binary event_code (UTF8); optional binary uid (UTF8);
    optional group product { optional binary name (UTF8); optional binary vendor_name (UTF8); optional binary version (UTF8); }
    optional group profiles (LIST) { repeated group list { optional binary element (UTF8); } }
  }
  optional group cloud {
    optional binary region (UTF8); optional binary provider (UTF8);
    optional group account { optional binary uid (UTF8); }
  }
  optional group api {
    optional binary operation (UTF8);
    optional group service { optional binary name (UTF8); }
    optional group response { optional binary error (UTF8); optional binary message (UTF8); }
  }
  optional group actor {
    optional group user { optional binary name (UTF8); optional binary uid (UTF8); optional binary type (UTF8);
      optional group account { optional binary uid (UTF8); } }
  }
  optional group src_endpoint { optional binary ip (UTF8); optional int32 port; optional binary hostname (UTF8);
    optional binary instance_uid (UTF8); optional binary vpc_uid (UTF8); }
  optional group dst_endpoint { optional binary ip (UTF8); optional int32 port; optional binary hostname (UTF8); }
  optional group connection_info { optional int32 protocol_num; optional int32 direction_id; optional int32 tcp_flags; }
  optional group traffic { optional int64 bytes; optional int64 packets; }
  optional group http_request {
    optional binary http_method (UTF8); optional binary user_agent (UTF8); optional binary version (UTF8);
    optional group url { optional binary hostname (UTF8); optional binary path (UTF8); optional binary query_string (UTF8); optional binary url_string (UTF8); }
  }
  optional group http_response { optional int32 code; }
  optional group query { optional binary hostname (UTF8); optional binary type (UTF8); optional binary class (UTF8); optional int64 packet_uid; }
  optional binary rcode (UTF8);
  optional group answers (LIST) { repeated group list { optional group element {
    optional binary rdata (UTF8); optional binary type (UTF8); optional binary class (UTF8); optional int32 ttl; } } }
  optional group finding_info { optional binary uid (UTF8); optional binary title (UTF8); optional binary desc (UTF8);
    optional group types (LIST) { repeated group list { optional binary element (UTF8); } } }
  optional group resources (LIST) { repeated group list { optional group element {
    optional binary uid (UTF8); optional binary type (UTF8); optional binary region (UTF8); } } }
  optional binary accountid (UTF8); optional binary region (UTF8); optional binary eventday (UTF8);
}";
