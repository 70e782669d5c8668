//! Replays every input the fuzzers (`fuzz/`) found a bug with.
//!
//! Inputs live in `tests/fuzz-regressions/<folder>/`, where `<folder>` is a fuzz
//! target (`formats`: the first byte picks the format from the registry, `detect`,
//! `redact`) or a format name with `_` for `-` (`cloudfront`, `s3_access`, ...: the
//! whole file is one object of that format). Each is checked like the fuzz target checks it: no panic,
//! parsing an in-memory object succeeds, every event went through the driver and
//! serializes (with redaction) to a valid JSON object with no unredacted secret value.
//! A new crash is added by copying the (minimised) artifact into the folder.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use alf_formats::detect::FormatDetector;
use alf_formats::{Enricher, Event, Format, ObjectInfo, ParseOptions, Redactor, parse_object};

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions")
}

/// `(target folder, path, bytes)` of every stored input, sorted for stable reports.
fn inputs() -> Vec<(String, PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(regressions_dir()) else {
        return out;
    };
    for dir in dirs.flatten().filter(|d| d.path().is_dir()) {
        let target = dir.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = file.path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                out.push((target.clone(), path, bytes));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// The first `name=value` with a secret parameter name whose value was not replaced
/// by `REDACTED` (same check as the fuzz targets).
fn unredacted_secret(s: &str) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    for name in ["signature=", "security-token=", "x-amz-credential="] {
        let mut from = 0;
        while let Some(i) = lower[from..].find(name) {
            let start = from + i + name.len();
            let run = s.as_bytes()[start..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric())
                .count();
            if run > 0 && &s[start..start + run] != alf_formats::redact::REDACTED {
                return Some(s[from + i..start + run].to_owned());
            }
            from = start;
        }
    }
    None
}

fn check_strings(v: &serde_json::Value) {
    match v {
        serde_json::Value::String(s) => {
            assert_eq!(unredacted_secret(s), None, "unredacted secret in {s:?}")
        }
        serde_json::Value::Array(items) => items.iter().for_each(check_strings),
        serde_json::Value::Object(map) => map.values().for_each(check_strings),
        _ => {}
    }
}

fn check_format(format: Format, data: &[u8]) {
    for keep_original in [false, true] {
        let options = ParseOptions {
            keep_original,
            ..ParseOptions::default()
        };
        let mut events: Vec<Event> = Vec::new();
        let stats = parse_object(
            format,
            &mut &data[..],
            &ObjectInfo {
                bucket: "amzn-s3-demo-logs".into(),
                key: "fuzz/object.log".into(),
                version: "v1".into(),
            },
            &options,
            &Enricher::new(),
            &mut events,
        )
        .expect("an in-memory object always parses (bad records become raw events)");
        assert_eq!(stats.events, events.len() as u64);
        let redactor = Redactor::new();
        for event in &events {
            let json = event.to_json_string(Some(&redactor));
            let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
            assert!(value.is_object());
            assert_eq!(value["event"]["dataset"], format.dataset());
            check_strings(&value);
        }
    }
}

fn check(target: &str, data: &[u8]) {
    match target {
        "detect" => {
            let Some((&n, rest)) = data.split_first() else {
                return;
            };
            let (key, head) = rest.split_at(usize::from(n).min(rest.len()));
            let _ = FormatDetector::default().decide(
                "amzn-s3-demo-logs",
                &String::from_utf8_lossy(key),
                head,
            );
        }
        "formats" => {
            if let Some((&first, object)) = data.split_first() {
                check_format(Format::ALL[usize::from(first) % Format::ALL.len()], object);
            }
        }
        "redact" => {
            let text = String::from_utf8_lossy(data);
            let out = Redactor::new().redact(&text);
            assert_eq!(unredacted_secret(&out), None, "in {out:?}");
        }
        other => {
            let format: Format = other
                .replace('_', "-")
                .parse()
                .unwrap_or_else(|e| panic!("folder `{other}`: {e}"));
            check_format(format, data);
        }
    }
}

#[test]
fn fuzz_regression_inputs_parse_without_panic() {
    let inputs = inputs();
    assert!(
        !inputs.is_empty(),
        "no inputs found in {}",
        regressions_dir().display()
    );
    let mut failures = Vec::new();
    for (target, path, data) in &inputs {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(target, data))) {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(non-string panic)");
            failures.push(format!("{}: {msg}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fuzz regression inputs fail:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
}
