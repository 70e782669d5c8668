//! `alf-read-parquet FILE [--repeat K]`: reads a Parquet object the way the daemon does
//! (spool to an anonymous temporary file, then footer and row group by row group),
//! maps every row and serializes every event with redaction, and reports events/s and
//! the process's peak RSS. With `alf-gen-parquet` it measures large objects without
//! holding one in memory:
//!
//! ```text
//! alf-gen-parquet vpc-flow --records 2000000 -o /tmp/vpc.parquet
//! /usr/bin/time -v alf-read-parquet /tmp/vpc.parquet
//! ```

use std::fs::File;
use std::io::{self, BufReader};
use std::process::ExitCode;
use std::time::Instant;

use alf_bench::Serializer;
use alf_formats::columnar::{ParquetLimits, parse_parquet};
use alf_formats::{Enricher, ObjectInfo, ParseOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Peak resident set size of this process, from /proc (Linux), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: alf-read-parquet FILE [--repeat K]")?;
    let repeat: u32 = match (args.next().as_deref(), args.next()) {
        (Some("--repeat"), Some(k)) => k.parse().map_err(|e| format!("--repeat: {e}"))?,
        _ => 1,
    };
    let enricher = Enricher::new();
    let object = ObjectInfo {
        bucket: "amzn-s3-demo-logs".into(),
        key: path.clone(),
        version: "v1".into(),
    };
    for _ in 0..repeat {
        let started = Instant::now();
        let mut input = BufReader::new(File::open(&path).map_err(|e| format!("{path}: {e}"))?);
        let mut spool = tempfile::tempfile().map_err(|e| format!("temporary file: {e}"))?;
        let bytes = io::copy(&mut input, &mut spool).map_err(|e| format!("spool: {e}"))?;
        let spooled = started.elapsed();
        let mut sink = Serializer::new(1 << 20);
        let parsed = parse_parquet(
            spool,
            None,
            &object,
            &ParseOptions::default(),
            &ParquetLimits::default(),
            &enricher,
            &mut sink,
        )
        .map_err(|e| e.to_string())?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{path}: {} ({:.1} MB): {} events in {:.2}s (spool {:.2}s) = {:.0} events/s, {:.1} MB JSON, peak RSS {} MiB",
            parsed,
            bytes as f64 / 1e6,
            sink.events,
            secs,
            spooled.as_secs_f64(),
            sink.events as f64 / secs,
            sink.bytes as f64 / 1e6,
            peak_rss_kib().map_or_else(|| "?".to_owned(), |k| (k / 1024).to_string()),
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    alf_bench::exit_code(run())
}
