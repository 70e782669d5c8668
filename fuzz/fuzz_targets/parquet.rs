//! Arbitrary bytes as a Parquet object: no panic (the reader turns a decoder panic into
//! an error, but libFuzzer's hook still reports it so it can be fixed upstream), every
//! outcome is events or an error naming the object, and every event serializes.
//! Seeds: `alf-bench gen-parquet` files (see seed-corpora.sh).
#![no_main]

use alf_formats::columnar::{ParquetLimits, parse_parquet};
use alf_formats::{Enricher, Event, ObjectInfo, ParseOptions, Redactor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let object = ObjectInfo {
        bucket: "fuzz".into(),
        key: "object.parquet".into(),
        version: String::new(),
    };
    let mut events: Vec<Event> = Vec::new();
    // A small row-group limit keeps a lying footer from asking for big allocations.
    let limits = ParquetLimits {
        max_row_group_bytes: 16 * 1024 * 1024,
    };
    match parse_parquet(
        bytes::Bytes::copy_from_slice(data),
        None,
        &object,
        &ParseOptions::default(),
        &limits,
        &Enricher::new(),
        &mut events,
    ) {
        Ok(parsed) => {
            assert_eq!(parsed.stats.events as usize, events.len());
            let redactor = Redactor::new();
            for event in &events {
                let mut out = Vec::new();
                event.write_json(&mut out, Some(&redactor));
                let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
                assert!(v.is_object());
            }
        }
        Err(e) => assert_eq!(e.object, "s3://fuzz/object.parquet"),
    }
});
