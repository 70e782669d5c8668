//! AWS service logs parsed and mapped to Elastic Common Schema (ECS).
//!
//! This crate is pure: no network, no files, no async runtime. It reads from a
//! [`BufRead`] and hands events to an [`EventSink`], so it can be unit-tested, fuzzed
//! and benchmarked alone, and the daemon decides where bytes come from and where
//! events go.
//!
//! * [`registry`]: every format declares its name, dataset, how it is recognised, how
//!   its records are read and its options in one [`FormatSpec`]; [`Format`] names them.
//! * [`detect`] is the one place that decides what to do with an object: parse it as
//!   some format, skip it, or refuse it ([`Decision`]).
//! * [`parse_object`] streams one object: every record becomes one event; a record
//!   that cannot be parsed becomes a raw event tagged `_parse_failure` (nothing is
//!   dropped) and is reported to [`EventSink::malformed`].
//! * [`readers`]: the record readers shared by the formats, beside the line driver.
//! * [`Event::write_json`] serializes with [`Redactor`] applied to every string.

#[cfg(test)]
#[macro_use]
mod testing;

pub mod columnar;
pub mod detect;
pub mod driver;
pub mod enrich;
pub mod event;
mod event_plan;
pub mod formats;
pub mod json_doc;
mod json_write;
pub mod parallel;
pub mod readers;
pub mod redact;
pub mod registry;
pub mod user_agent;
pub mod util;

use std::io::BufRead;

pub use detect::{Decision, DetectRule, FormatDetector};
pub use driver::{EventSink, ParseError, ParseStats, RecordError, Stop};
pub use enrich::Enricher;
pub use event::{Event, Map, Value};
pub use json_doc::JsonDoc;
pub use json_write::write_json_string;
pub use redact::Redactor;
pub use registry::{Format, FormatOptions, FormatSpec, OptionError, RecordParser, UnknownFormat};
#[cfg(test)]
pub(crate) use testing::*;

/// ECS version the mappings follow.
pub const ECS_VERSION: &str = "8.11.0";

/// Where an object came from; feeds `event.id` and the `aws.s3.*` / `log.*` fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectInfo {
    pub bucket: String,
    pub key: String,
    /// ETag or version id: a new version of the same key gets new event ids.
    pub version: String,
}

/// Options that change what events contain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Copy each raw record to `event.original`.
    pub keep_original: bool,
    /// The options a configuration rule set for the object's format (from
    /// [`Decision::Parse`]); only that format reads them.
    pub format_options: FormatOptions,
}

/// Streams one object of a known format into `sink`. See [`driver`]. An object the
/// format's skip rule names (a CloudTrail digest) yields no events and says so in
/// [`ParseStats::skipped`].
pub fn parse_object(
    format: Format,
    reader: &mut dyn BufRead,
    object: &ObjectInfo,
    options: &ParseOptions,
    enricher: &Enricher,
    sink: &mut dyn EventSink,
) -> Result<ParseStats, ParseError> {
    let mut cx = driver::ObjectParse::new(format, object, options, enricher);
    if let Some(reason) = format.skip_reason(&object.key) {
        cx.stats.skipped = Some(reason.to_owned());
        return Ok(cx.stats);
    }
    registry::parse(format, reader, &mut cx, sink)?;
    Ok(cx.stats)
}
