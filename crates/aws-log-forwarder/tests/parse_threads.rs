//! `parse --threads N` cuts one object into blocks parsed by N workers: what it prints
//! (events on stdout, malformed-record notes on stderr, exit code) must be exactly what
//! the one-thread `parse` prints, on every sample and on a gzip object several blocks
//! long. No network needed.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_aws-log-forwarder");
const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/samples");

fn parse(path: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .env_clear()
        .arg("parse")
        .args(["--bucket", "logs"])
        .args(extra)
        .arg(path)
        .output()
        .unwrap()
}

fn assert_same_output(path: &Path, extra: &[&str]) {
    let one = parse(path, extra);
    assert!(one.status.success(), "{}: {:?}", path.display(), one);
    assert!(!one.stdout.is_empty(), "{}: no events", path.display());
    for threads in ["2", "3"] {
        let mut args = extra.to_vec();
        args.extend(["--threads", threads]);
        let many = parse(path, &args);
        assert_eq!(many.status.code(), one.status.code(), "{}", path.display());
        assert!(
            many.stdout == one.stdout,
            "{} --threads {threads}: events differ",
            path.display()
        );
        assert_eq!(
            String::from_utf8_lossy(&many.stderr),
            String::from_utf8_lossy(&one.stderr),
            "{} --threads {threads}",
            path.display()
        );
    }
}

#[test]
fn threads_print_what_one_thread_prints_on_every_sample() {
    let mut samples: Vec<_> = std::fs::read_dir(SAMPLES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    samples.sort();
    assert!(samples.len() >= 10);
    for sample in &samples {
        let format = sample.file_stem().unwrap().to_str().unwrap();
        assert_same_output(sample, &["--format", format]);
        assert_same_output(sample, &["--format", format, "--keep-original"]);
    }
}

/// About 3 MB of CloudFront records (so several blocks), gzip-compressed, with
/// malformed lines spread through it: ids, offsets and the line numbers of the notes
/// on stderr must not move.
#[test]
fn threads_print_what_one_thread_prints_on_a_large_gzip_object() {
    let sample = std::fs::read_to_string(Path::new(SAMPLES).join("cloudfront.log")).unwrap();
    let (header, records): (Vec<&str>, Vec<&str>) =
        sample.lines().partition(|l| l.starts_with('#'));
    let mut text = header.join("\n") + "\n";
    let mut i = 0;
    while text.len() < 3_000_000 {
        text.push_str(records[i % records.len()]);
        text.push('\n');
        if i % 997 == 0 {
            text.push_str("not a record\n");
        }
        i += 1;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("E2QWRUHAPOMQZL.2024-03-12-09.a1b2c3d4.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    std::fs::write(&path, enc.finish().unwrap()).unwrap();
    assert_same_output(&path, &[]);
    let one = parse(&path, &[]);
    assert!(String::from_utf8_lossy(&one.stderr).lines().count() > 5);
}

#[test]
fn zero_threads_is_a_usage_error() {
    let out = parse(&Path::new(SAMPLES).join("lines.log"), &["--threads", "0"]);
    assert_eq!(out.status.code(), Some(2));
}
