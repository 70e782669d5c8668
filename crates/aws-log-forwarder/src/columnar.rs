//! Parquet objects in the daemon and the `parse` command: the object is spooled to an
//! anonymous temporary file, then read with the random access Parquet needs (footer
//! first, then row group by row group).
//!
//! Why spool rather than ranged GETs: the S3 body is already being streamed and
//! decompressed (a Parquet object may also arrive gzip-wrapped, where ranges are
//! impossible), a sequential copy to local disk costs one pass over bytes the reader
//! needs anyway, and the reader then seeks locally instead of paying one S3 round trip
//! per column chunk. Memory stays bounded: the copy goes through a fixed buffer and the
//! reader holds one row group's pages at a time. The file has no name (`tempfile()`),
//! so it disappears when closed, even if the process dies.

use std::io::{self, Read, Write};

use alf_formats::columnar::{ParquetError, ParquetLimits, parse_parquet};
use alf_formats::{Enricher, EventSink, Format, ObjectInfo, ParseOptions, ParseStats};

/// Copy buffer for the spool.
const SPOOL_BUFFER: usize = 256 * 1024;

/// What a spooled Parquet object gave.
#[derive(Debug, Clone)]
pub struct SpooledParse {
    pub format: Format,
    /// Why the schema is that format.
    pub reason: String,
    pub stats: ParseStats,
}

/// Why a Parquet object failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Reading the object or writing the temporary file failed.
    #[error("spooling the Parquet object to a temporary file failed: {0}")]
    Io(#[from] io::Error),
    /// The object is not a Parquet file this reader can map.
    #[error(transparent)]
    Parquet(#[from] ParquetError),
}

/// Spools `head` followed by the rest of `body` to a temporary file and parses it as
/// Parquet into `sink`. `forced` is the format asked for on the command line, if any.
pub fn spool_and_parse(
    head: &[u8],
    body: &mut dyn Read,
    object: &ObjectInfo,
    forced: Option<Format>,
    options: &ParseOptions,
    enricher: &Enricher,
    sink: &mut dyn EventSink,
) -> Result<SpooledParse, SpoolError> {
    let mut file = tempfile::tempfile()?;
    file.write_all(head)?;
    let mut buf = vec![0u8; SPOOL_BUFFER];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SpoolError::Io(e)),
        };
        file.write_all(&buf[..n])?;
    }
    drop(buf);
    file.flush()?;
    let parsed = parse_parquet(
        file,
        forced,
        object,
        options,
        &ParquetLimits::default(),
        enricher,
        sink,
    )?;
    Ok(SpooledParse {
        format: parsed.format,
        reason: format!("Parquet schema: {}", parsed.reason),
        stats: parsed.stats,
    })
}

#[cfg(test)]
mod tests {
    use alf_formats::Event;
    use alf_formats::columnar::ParquetErrorKind;
    use alf_formats::columnar::write::{Codec, vpc_flow_text_to_parquet};

    use super::*;

    const SAMPLE: &str = include_str!("../../../tests/samples/vpc-flow.log");

    /// [`spool_and_parse`] of `head` then `rest`, as `s3://b/x.log.parquet`.
    fn spool(
        head: &[u8],
        mut rest: &[u8],
        events: &mut Vec<Event>,
    ) -> Result<SpooledParse, SpoolError> {
        let object = ObjectInfo {
            bucket: "b".into(),
            key: "x.log.parquet".into(),
            version: String::new(),
        };
        spool_and_parse(
            head,
            &mut rest,
            &object,
            None,
            &ParseOptions::default(),
            &Enricher::new(),
            events,
        )
    }

    #[test]
    fn a_spooled_object_parses_like_the_bytes() {
        let (bytes, rows) = vpc_flow_text_to_parquet(SAMPLE, Vec::new(), 4, Codec::Snappy).unwrap();
        let mut events: Vec<Event> = Vec::new();
        let (head, rest) = bytes.split_at(8);
        let parsed = spool(head, rest, &mut events).unwrap();
        assert_eq!(parsed.format, Format::VpcFlow);
        assert_eq!(events.len(), rows);
        assert_eq!(events[0].get_str("source.ip"), Some("198.51.100.23"));
    }

    #[test]
    fn a_truncated_object_is_an_error_naming_it() {
        let (bytes, _) = vpc_flow_text_to_parquet(SAMPLE, Vec::new(), 4, Codec::Snappy).unwrap();
        let mut events: Vec<Event> = Vec::new();
        let err = spool(&bytes[..4], &bytes[4..bytes.len() - 10], &mut events).unwrap_err();
        match &err {
            SpoolError::Parquet(e) => assert!(matches!(e.kind, ParquetErrorKind::Unreadable(_))),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("s3://b/x.log.parquet"), "{err}");
        assert!(events.is_empty());
    }
}
