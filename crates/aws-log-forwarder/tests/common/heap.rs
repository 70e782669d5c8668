//! The peak heap of one parse, for the bounded-memory tests (`tests/memory.rs`,
//! `tests/parquet_memory.rs`). The test binary must install
//! `alf_bench::alloc::CountingAlloc` as its global allocator.

use std::io::Read;

use alf_bench::alloc;
use alf_formats::{
    Enricher, Event, EventSink, Format, FormatDetector, ObjectInfo, ParseOptions, Redactor, Stop,
};
use aws_log_forwarder::parse_stream;

/// A sink that serializes every event (as the daemon does) and keeps nothing.
struct CountingSink {
    redactor: Redactor,
    json: Vec<u8>,
    events: u64,
}

impl EventSink for CountingSink {
    fn emit(&mut self, event: Event) -> Result<(), Stop> {
        self.json.clear();
        event.write_json(&mut self.json, Some(&self.redactor));
        self.events += 1;
        Ok(())
    }
}

/// Parses `body` (the object `s3://logs/<key>`) with `parse_stream`, the function the
/// daemon runs on S3 bodies, into a sink that keeps no event; checks that it was read as
/// `format` with no malformed record and returns (events, peak heap bytes during the
/// parse above the heap at its start).
pub fn parse_measuring_peak<R: Read + Send + 'static>(
    body: R,
    key: &str,
    format: Format,
    enricher: &Enricher,
) -> (u64, usize) {
    let object = ObjectInfo {
        bucket: "logs".into(),
        key: key.into(),
        version: "v1".into(),
    };
    let mut sink = CountingSink {
        redactor: Redactor::default(),
        json: Vec::with_capacity(4096),
        events: 0,
    };
    let before = alloc::reset_peak();
    let parsed = parse_stream(
        body,
        &object,
        &FormatDetector::default(),
        None,
        &ParseOptions::default(),
        enricher,
        &mut sink,
    )
    .expect("a generated object parses");
    let peak = alloc::peak_bytes().saturating_sub(before);
    assert_eq!(parsed.format, Some(format), "{key}: detected format");
    assert_eq!(parsed.stats.malformed, 0, "{key}: {:?}", parsed.stats);
    (sink.events, peak)
}
