//! Apache Parquet objects: VPC flow logs and CloudFront standard logging (v2) delivered
//! as Parquet, and Amazon Security Lake (OCSF records in Parquet).
//!
//! A Parquet file cannot be streamed front to back: its schema and the position of every
//! row group sit in a footer at the end. So this reader takes a [`ChunkReader`] (random
//! access: a local file for `parse`, the daemon's spooled temporary file, or bytes in
//! tests) instead of the `BufRead` of the text formats. It reads the footer, then one
//! row group at a time, page by page: memory is bounded by one row group's pages, never
//! by the object. A row group whose declared size exceeds [`ParquetLimits`] is refused
//! before anything of it is read, so a hostile footer cannot make the reader allocate.
//!
//! The format is decided by the schema (the column names), not by the key: a Parquet
//! file describes itself. Each row is mapped through the same code as its text twin:
//! VPC flow columns (`account_id`, `srcaddr`, ...: the field names with `_` for `-`) go
//! through [`crate::formats::vpc_flow`], CloudFront columns through the by-name mapping
//! of the v2 JSON form, OCSF rows through [`crate::formats::security_lake`]. Event ids
//! use the 1-based row number as the record number, and `log.offset` is the 0-based row
//! number (a Parquet row has no byte offset).

use std::borrow::Cow;
use std::fmt;

pub use parquet::file::reader::ChunkReader;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};

use crate::driver::{EventSink, LineContext, ObjectParse, RecordError, Stop};
use crate::enrich::Enricher;
use crate::event::Event;
use crate::formats::{cloudfront, security_lake, vpc_flow};
use crate::{Format, ObjectInfo, ParseOptions, ParseStats};

pub mod write;

/// The 4 bytes a Parquet file starts and ends with.
pub const PARQUET_MAGIC: &[u8; 4] = b"PAR1";

/// Whether the (decompressed) object starts like a Parquet file.
pub fn is_parquet(head: &[u8]) -> bool {
    head.starts_with(PARQUET_MAGIC)
}

/// Whether the key names a Parquet object (`*.parquet`, maybe with a compression
/// suffix), as AWS names them under every layout: `…/vpcflowlogs/…/x.log.parquet`,
/// Hive-style `aws-account-id=…/aws-service=vpcflowlogs/…/x.log.parquet`, Security
/// Lake's `…/eventDay=…/x.gz.parquet`. The partition prefixes alone say nothing: AWS
/// writes text logs under the same layouts. For registries that route by key; the
/// content (the `PAR1` magic, [`is_parquet`]) is what the daemon trusts.
pub fn is_parquet_key(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key).to_ascii_lowercase();
    let name = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".zst"))
        .unwrap_or(&name);
    name.ends_with(".parquet")
}

/// Bounds on what one Parquet object may make the reader hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParquetLimits {
    /// Largest row group accepted, in uncompressed bytes as the footer declares them.
    /// AWS writes row groups of a few MiB to ~128 MiB; a larger one is refused with an
    /// error rather than risking the daemon's memory.
    pub max_row_group_bytes: u64,
}

impl Default for ParquetLimits {
    fn default() -> Self {
        ParquetLimits {
            max_row_group_bytes: 512 * 1024 * 1024,
        }
    }
}

/// Why a Parquet object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParquetErrorKind {
    /// The footer or a page is damaged, or the file is truncated.
    #[error(
        "not a readable Parquet file ({0}): the object is truncated or damaged; check that the writer finished it"
    )]
    Unreadable(String),
    /// The columns are none of the layouts this reader maps.
    #[error(
        "unknown Parquet schema (columns: {0}): expected VPC flow logs, CloudFront standard logs (v2) or OCSF records (Amazon Security Lake); add a detection rule with another format or convert the object"
    )]
    UnknownSchema(String),
    /// A row group is larger than [`ParquetLimits::max_row_group_bytes`].
    #[error(
        "row group {index} declares {bytes} bytes uncompressed, more than the limit of {limit}: raise the row group limit or have the writer use smaller row groups"
    )]
    RowGroupTooLarge {
        index: usize,
        bytes: u64,
        limit: u64,
    },
    /// The requested format cannot be read from Parquet.
    #[error(
        "format `{0}` is not delivered as Parquet (Parquet holds vpc-flow, cloudfront or security-lake)"
    )]
    NotColumnar(Format),
    /// The event consumer stopped.
    #[error(transparent)]
    Stopped(#[from] Stop),
}

/// A Parquet object that could not be read, naming the object.
#[derive(Debug, thiserror::Error)]
#[error("Parquet object {object}: {kind}")]
pub struct ParquetError {
    /// `s3://bucket/key`, or the path for local files.
    pub object: String,
    pub kind: ParquetErrorKind,
}

impl ParquetError {
    fn new(object: &ObjectInfo, kind: ParquetErrorKind) -> Self {
        let object = if object.bucket.is_empty() {
            object.key.clone()
        } else {
            format!("s3://{}/{}", object.bucket, object.key)
        };
        ParquetError { object, kind }
    }

    /// Whether parsing ended because the consumer stopped (not the object's fault).
    pub fn is_stopped(&self) -> bool {
        matches!(self.kind, ParquetErrorKind::Stopped(_))
    }
}

/// What [`parse_parquet`] read.
#[derive(Debug, Clone)]
pub struct ParquetParsed {
    /// The format the schema showed.
    pub format: Format,
    /// Why that format (the columns that decided it).
    pub reason: &'static str,
    pub stats: ParseStats,
    pub row_groups: usize,
}

/// Which of the Parquet layouts a schema is, from its top-level column names.
pub fn format_of_columns<'a>(
    names: impl IntoIterator<Item = &'a str> + Clone,
) -> Option<(Format, &'static str)> {
    let has = |wanted: &str| names.clone().into_iter().any(|n| n == wanted);
    if has("class_uid") && (has("metadata") || has("time")) {
        return Some((
            Format::SecurityLake,
            "OCSF columns class_uid and metadata/time",
        ));
    }
    let total = names.clone().into_iter().count();
    let flow = names
        .clone()
        .into_iter()
        .filter(|n| vpc_flow::is_flow_column(n))
        .count();
    if (has("srcaddr") || has("interface_id") || has("log_status")) && flow * 2 >= total {
        return Some((
            Format::VpcFlow,
            "VPC flow log columns (srcaddr, interface_id...)",
        ));
    }
    let cloudfront = names
        .clone()
        .into_iter()
        .filter(|n| cloudfront::is_cloudfront_column(n))
        .count();
    let edge = names.clone().into_iter().any(|n| {
        matches!(
            n,
            "x-edge-location" | "x_edge_location" | "x-edge-request-id" | "x_edge_request_id"
        )
    });
    if edge && cloudfront * 2 >= total {
        return Some((
            Format::CloudFront,
            "CloudFront columns (x-edge-location...)",
        ));
    }
    None
}

/// Reads every row of the Parquet object `reader` into `sink`, one row group at a time.
///
/// `forced` is a format asked for by configuration or the command line: it must be one
/// the schema can hold; otherwise the schema decides. Every row becomes one event; a row
/// that cannot be mapped becomes a raw event tagged `_parse_failure` (its columns as
/// JSON), as for text formats.
pub fn parse_parquet<R: ChunkReader + 'static>(
    reader: R,
    forced: Option<Format>,
    object: &ObjectInfo,
    options: &ParseOptions,
    limits: &ParquetLimits,
    enricher: &Enricher,
    sink: &mut dyn EventSink,
) -> Result<ParquetParsed, ParquetError> {
    // The Parquet decoder is third-party code fed untrusted bytes: should it panic on
    // some damaged page, that is an unreadable object, not a crashed process. (The
    // sink may have taken some events; the object fails as a whole either way.)
    let run = std::panic::AssertUnwindSafe(|| {
        read_rows(reader, forced, object, options, limits, enricher, sink)
    });
    match std::panic::catch_unwind(run) {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(ParquetError::new(
                object,
                ParquetErrorKind::Unreadable(format!("the Parquet decoder failed: {what}")),
            ))
        }
    }
}

fn read_rows<R: ChunkReader + 'static>(
    reader: R,
    forced: Option<Format>,
    object: &ObjectInfo,
    options: &ParseOptions,
    limits: &ParquetLimits,
    enricher: &Enricher,
    sink: &mut dyn EventSink,
) -> Result<ParquetParsed, ParquetError> {
    let fail = |kind| ParquetError::new(object, kind);
    let unreadable =
        |e: parquet::errors::ParquetError| fail(ParquetErrorKind::Unreadable(e.to_string()));
    let bytes = reader.len();
    let file = SerializedFileReader::new(reader).map_err(unreadable)?;
    let metadata = file.metadata();
    let schema = metadata.file_metadata().schema();
    let names: Vec<&str> = schema.get_fields().iter().map(|f| f.name()).collect();
    let (format, reason) = match format_of_columns(names.iter().copied()) {
        Some(found) => found,
        None => {
            let mut listed: Vec<&str> = names.iter().copied().take(12).collect();
            if names.len() > listed.len() {
                listed.push("...");
            }
            return Err(fail(ParquetErrorKind::UnknownSchema(listed.join(", "))));
        }
    };
    if let Some(wanted) = forced
        && wanted != format
    {
        let kind = if matches!(
            wanted,
            Format::VpcFlow | Format::CloudFront | Format::SecurityLake
        ) {
            ParquetErrorKind::UnknownSchema(format!(
                "{} (the schema is {}, not {wanted})",
                names.join(", "),
                format.name()
            ))
        } else {
            ParquetErrorKind::NotColumnar(wanted)
        };
        return Err(fail(kind));
    }

    let mut cx = ObjectParse::new(format, object, options, enricher);
    cx.stats.bytes = bytes;
    let row_groups = metadata.num_row_groups();
    // Refuse oversized row groups before reading any of them: the daemon must not
    // forward half an object and then fail on the same object on every redelivery.
    for index in 0..row_groups {
        let rg = metadata.row_group(index);
        let Ok(declared) = u64::try_from(rg.total_byte_size().max(rg.compressed_size())) else {
            return Err(fail(ParquetErrorKind::Unreadable(format!(
                "row group {index} declares a negative size"
            ))));
        };
        if declared > limits.max_row_group_bytes {
            return Err(fail(ParquetErrorKind::RowGroupTooLarge {
                index,
                bytes: declared,
                limit: limits.max_row_group_bytes,
            }));
        }
    }
    let mut row_no = 0u64;
    let mut mapper = RowMapper::new(format);
    for index in 0..row_groups {
        let group = file.get_row_group(index).map_err(unreadable)?;
        let rows = group.get_row_iter(None).map_err(unreadable)?;
        for row in rows {
            let row = row.map_err(unreadable)?;
            row_no += 1;
            cx.stats.records += 1;
            let offset = row_no - 1;
            let lcx = LineContext {
                enricher,
                options,
                object,
                line: row_no,
            };
            match mapper.map(&row, &lcx) {
                Ok(events) => {
                    // `processing.keep_original`: the row's columns as JSON.
                    let raw = options.keep_original.then(|| row_to_json(&row).to_string());
                    for (i, ev) in events.into_iter().enumerate() {
                        cx.emit(sink, ev, row_no, i as u32, offset, raw.as_deref())
                            .map_err(|s| fail(ParquetErrorKind::Stopped(s)))?;
                    }
                }
                Err(e) => {
                    let raw = row_to_json(&row).to_string();
                    cx.emit_malformed(sink, &raw, row_no, offset, &e.to_string())
                        .map_err(|s| fail(ParquetErrorKind::Stopped(s)))?;
                }
            }
        }
    }
    Ok(ParquetParsed {
        format,
        reason,
        stats: cx.stats,
        row_groups,
    })
}

/// Maps rows of one format; reuses its buffers across rows.
struct RowMapper {
    format: Format,
    texts: Vec<(String, String)>,
    out: Vec<Event>,
}

impl RowMapper {
    fn new(format: Format) -> Self {
        RowMapper {
            format,
            texts: Vec::new(),
            out: Vec::new(),
        }
    }

    fn map(&mut self, row: &Row, cx: &LineContext<'_>) -> Result<Vec<Event>, RecordError> {
        match self.format {
            Format::SecurityLake => Ok(vec![security_lake::map_ocsf(row_to_json(row))?]),
            Format::VpcFlow => {
                self.fill_texts(row);
                let pairs: Vec<(&str, &str)> = self
                    .texts
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                Ok(vec![vpc_flow::map_named_columns(&pairs)?])
            }
            Format::CloudFront => {
                self.fill_texts(row);
                let pairs: Vec<(&str, &str)> = self
                    .texts
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                self.out.clear();
                cloudfront::map_named_columns(&pairs, cx, &mut self.out)?;
                Ok(std::mem::take(&mut self.out))
            }
            other => Err(RecordError::Other(format!(
                "format {other} is not read from Parquet"
            ))),
        }
    }

    /// The row's scalar columns as the text a plain record would carry; nulls are left
    /// out (absent, like `-`).
    fn fill_texts(&mut self, row: &Row) {
        self.texts.clear();
        for (name, field) in row.get_column_iter() {
            if let Some(text) = field_text(field) {
                self.texts.push((name.clone(), text.into_owned()));
            }
        }
    }
}

/// A scalar field as text; `None` for nulls and nested values.
fn field_text(field: &Field) -> Option<Cow<'_, str>> {
    Some(match field {
        Field::Null | Field::Group(_) | Field::ListInternal(_) | Field::MapInternal(_) => {
            return None;
        }
        Field::Str(s) => Cow::Borrowed(s.as_str()),
        Field::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Field::Byte(n) => Cow::Owned(n.to_string()),
        Field::Short(n) => Cow::Owned(n.to_string()),
        Field::Int(n) => Cow::Owned(n.to_string()),
        Field::Long(n) => Cow::Owned(n.to_string()),
        Field::UByte(n) => Cow::Owned(n.to_string()),
        Field::UShort(n) => Cow::Owned(n.to_string()),
        Field::UInt(n) => Cow::Owned(n.to_string()),
        Field::ULong(n) => Cow::Owned(n.to_string()),
        Field::Float(n) => Cow::Owned(n.to_string()),
        Field::Double(n) => Cow::Owned(n.to_string()),
        Field::Bytes(b) => String::from_utf8_lossy(b.data()),
        Field::TimestampMillis(ms) => Cow::Owned(ms.to_string()),
        Field::TimestampMicros(us) => Cow::Owned(us.div_euclid(1000).to_string()),
        other => Cow::Owned(other.to_string()),
    })
}

/// A row as a JSON object: timestamps become epoch milliseconds (OCSF `timestamp_t`),
/// byte arrays that are not UTF-8 are kept lossily, lists and maps nest.
pub fn row_to_json(row: &Row) -> serde_json::Value {
    serde_json::Value::Object(
        row.get_column_iter()
            .map(|(name, field)| (name.clone(), field_to_json(field)))
            .collect(),
    )
}

fn field_to_json(field: &Field) -> serde_json::Value {
    use serde_json::Value as J;
    match field {
        Field::Null => J::Null,
        Field::Bool(b) => J::Bool(*b),
        Field::Byte(n) => J::from(*n),
        Field::Short(n) => J::from(*n),
        Field::Int(n) => J::from(*n),
        Field::Long(n) => J::from(*n),
        Field::UByte(n) => J::from(*n),
        Field::UShort(n) => J::from(*n),
        Field::UInt(n) => J::from(*n),
        Field::ULong(n) => J::from(*n),
        Field::Float(n) => serde_json::Number::from_f64(f64::from(*n)).map_or(J::Null, J::Number),
        Field::Double(n) => serde_json::Number::from_f64(*n).map_or(J::Null, J::Number),
        Field::Float16(n) => serde_json::Number::from_f64(f64::from(*n)).map_or(J::Null, J::Number),
        Field::Str(s) => J::String(s.clone()),
        Field::Bytes(b) => J::String(String::from_utf8_lossy(b.data()).into_owned()),
        Field::TimestampMillis(ms) => J::from(*ms),
        Field::TimestampMicros(us) => J::from(us.div_euclid(1000)),
        Field::Group(row) => row_to_json(row),
        Field::ListInternal(list) => J::Array(list.elements().iter().map(field_to_json).collect()),
        Field::MapInternal(map) => J::Object(
            map.entries()
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Field::Str(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (key, field_to_json(v))
                })
                .collect(),
        ),
        other => J::String(other.to_string()),
    }
}

impl fmt::Display for ParquetParsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rows in {} row groups as {}",
            self.stats.records, self.row_groups, self.format
        )
    }
}

#[cfg(test)]
mod tests;
