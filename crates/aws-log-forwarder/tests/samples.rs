//! Every sample log in `tests/samples/` (one per AWS log type, plus the generic `ndjson`
//! and `lines` formats when they have one), uploaded under the key
//! AWS would deliver it with, arrives at the intake with the right `event.dataset`, one
//! event per record, and no parse failure: format detection, decompression and parsing
//! work together in the daemon as they do in the library.
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use alf_formats::Format;
use common::{
    PIPELINE_TIMEOUT, aws_key, delivered_gzipped, events_of_key, has_tag, offsets, parse_locally,
    start_forwarding, str_field, unique_by_id,
};
use serde_json::Value;

fn samples_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/samples"))
}

/// The sample logs present, by format. A `.log` file named after no format fails: the
/// demo and this test would silently skip it.
fn read_samples() -> Vec<(Format, Vec<u8>)> {
    let dir = samples_dir();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read the sample directory {}: {e}", dir.display()));
    let mut samples = Vec::new();
    for entry in entries {
        let path = entry.expect("list the sample directory").path();
        if path.extension().and_then(|e| e.to_str()) != Some("log") {
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let format: Format = stem.parse().unwrap_or_else(|e| {
            panic!(
                "{}: the file name must be a format name: {e}",
                path.display()
            )
        });
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        samples.push((format, text));
    }
    samples.sort_by_key(|(format, _)| format.name());
    samples
}

#[test]
fn every_aws_log_type_has_a_sample_log() {
    let present: BTreeSet<&str> = read_samples().iter().map(|(f, _)| f.name()).collect();
    // The generic formats are welcome but not required; every AWS log type is (the demo
    // uploads them, and the end-to-end test below covers only what exists).
    let missing: Vec<&str> = Format::ALL
        .iter()
        .filter(|f| !matches!(f, Format::Ndjson | Format::Lines))
        .map(|f| f.name())
        .filter(|name| !present.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "tests/samples/ lacks a sample log for: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_log_arrives_with_its_dataset_and_no_parse_failure() {
    let samples = read_samples();
    assert!(!samples.is_empty(), "no sample logs in tests/samples/");

    let (stack, intake, daemon) = start_forwarding("samples").await;

    // The reference: what the library makes of each sample (record count, offsets).
    let mut expected = Vec::new();
    for (format, text) in &samples {
        let key = aws_key(*format, "samples");
        let local = parse_locally(*format, &key, text);
        assert!(!local.is_empty(), "{} sample has no records", format.name());
        let local_failures = local
            .iter()
            .filter(|e| has_tag(e, "_parse_failure"))
            .count();
        assert_eq!(
            local_failures,
            0,
            "{}.log has records the library cannot parse",
            format.name()
        );
        if delivered_gzipped(*format) {
            stack.put_gzip(&key, text).await;
        } else {
            stack.put_object(&key, text.clone()).await;
        }
        expected.push((*format, key, local));
    }

    let total: usize = expected.iter().map(|(_, _, local)| local.len()).sum();
    intake.wait_for_events(total, PIPELINE_TIMEOUT).await;
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    daemon.stop().await;

    let events = intake.events();
    let mut problems = Vec::new();
    for (format, key, local) in &expected {
        let mine = events_of_key(&events, key);
        let unique = unique_by_id(&mine.iter().map(|e| (*e).clone()).collect::<Vec<_>>());
        if unique.len() != local.len() {
            problems.push(format!(
                "{}: {} events arrived, the library makes {}",
                format.name(),
                unique.len(),
                local.len()
            ));
        }
        let local_refs: Vec<&Value> = local.iter().collect();
        if offsets(&mine) != offsets(&local_refs) {
            problems.push(format!(
                "{}: records at other offsets than expected",
                format.name()
            ));
        }
        let datasets: BTreeSet<&str> = mine
            .iter()
            .map(|e| str_field(e, "event.dataset").unwrap_or("<none>"))
            .collect();
        if datasets != BTreeSet::from([format.dataset()]) {
            problems.push(format!(
                "{}: event.dataset {datasets:?}, expected {} (key {key})",
                format.name(),
                format.dataset()
            ));
        }
        let failures = mine.iter().filter(|e| has_tag(e, "_parse_failure")).count();
        if failures > 0 {
            problems.push(format!(
                "{}: {failures} _parse_failure events",
                format.name()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(stack.dlq_counts().await.total(), 0);
}
