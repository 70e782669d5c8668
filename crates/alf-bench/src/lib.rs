//! Benchmark and fuzzing support for `alf-formats`.
//!
//! * [`generate`]: deterministic (seeded) generators of large, realistic log files for
//!   every format, modelled on AWS's documented examples. The `alf-bench gen` binary
//!   writes them to disk for end-to-end measurements of the daemon's `parse` command.
//! * [`Serializer`]: the event sink the daemon's hot path amounts to (serialize each
//!   event with redaction into a reused buffer), shared by the benchmarks.
//! * [`parquet`]: VPC flow and OCSF (Security Lake) Parquet objects, streamed.
//! * [`gzip`]: compression helper for the decompression and pipeline benchmarks.
//! * [`alloc`]: the counting global allocator of the `run` harness and the daemon's
//!   memory tests.
//!
//! The benchmarks themselves live in `benches/` (criterion).

pub mod alloc;
pub mod clock;
pub mod generate;
pub mod parquet;
pub mod pools;
pub mod rng;

use std::io::Write;

use std::io::BufRead;

use alf_formats::{
    Enricher, Event, EventSink, Format, ObjectInfo, ParseError, ParseOptions, ParseStats, Redactor,
    Stop, parse_object,
};

pub use generate::{Kind, generate, write_log};

/// Serializes every event as the daemon does (`write_json` with redaction, one JSON
/// object per line) into a buffer that is cleared instead of shipped when it grows
/// past `flush_at`, so benchmarks measure serialization without holding every event.
#[derive(Debug)]
pub struct Serializer {
    pub buf: Vec<u8>,
    redactor: Redactor,
    flush_at: usize,
    /// Events serialized since creation.
    pub events: u64,
    /// Bytes of JSON produced since creation.
    pub bytes: u64,
}

impl Serializer {
    /// A sink that "ships" (clears) its buffer every `flush_at` bytes, the way the
    /// daemon hands off a batch.
    pub fn new(flush_at: usize) -> Self {
        Serializer {
            buf: Vec::with_capacity(flush_at.saturating_add(64 * 1024).min(64 << 20)),
            redactor: Redactor::new(),
            flush_at,
            events: 0,
            bytes: 0,
        }
    }
}

impl EventSink for Serializer {
    fn emit(&mut self, event: Event) -> Result<(), Stop> {
        let before = self.buf.len();
        event.write_json(&mut self.buf, Some(&self.redactor));
        self.buf.push(b'\n');
        self.bytes += (self.buf.len() - before) as u64;
        self.events += 1;
        if self.buf.len() >= self.flush_at {
            self.buf.clear();
        }
        Ok(())
    }
}

/// One generated object of a kind, parsed as the daemon parses it: the kind's sample key
/// (the format's registry example), default options. Shared by `alf-bench run` and the
/// benchmarks, so they all measure the same thing.
#[derive(Debug)]
pub struct BenchObject {
    pub format: Format,
    pub object: ObjectInfo,
    pub options: ParseOptions,
}

impl BenchObject {
    pub fn new(kind: Kind) -> Self {
        BenchObject {
            format: kind.format(),
            object: ObjectInfo {
                bucket: "amzn-s3-demo-logs".into(),
                key: kind.sample_key().into(),
                version: "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".into(),
            },
            options: ParseOptions::default(),
        }
    }

    /// Parses `reader` into `sink` with `enricher` (one per run, as the daemon keeps
    /// one per process: its caches stay warm between objects).
    pub fn parse(
        &self,
        enricher: &Enricher,
        reader: &mut dyn BufRead,
        sink: &mut dyn EventSink,
    ) -> Result<ParseStats, ParseError> {
        parse_object(
            self.format,
            reader,
            &self.object,
            &self.options,
            enricher,
            sink,
        )
    }
}

/// Counts events and drops them: measures parsing and mapping alone.
#[derive(Debug, Default)]
pub struct Discard(pub u64);

impl EventSink for Discard {
    fn emit(&mut self, event: Event) -> Result<(), Stop> {
        self.0 += 1;
        std::hint::black_box(&event);
        Ok(())
    }
}

/// Serializes without redaction: the difference to [`Serializer`] is redaction's cost.
#[derive(Debug, Default)]
pub struct PlainJson(pub Vec<u8>);

impl EventSink for PlainJson {
    fn emit(&mut self, event: Event) -> Result<(), Stop> {
        event.write_json(&mut self.0, None);
        self.0.push(b'\n');
        if self.0.len() > 4 << 20 {
            self.0.clear();
        }
        Ok(())
    }
}

/// Gzip-compresses `data` at the default level (what AWS services deliver).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 6),
        flate2::Compression::default(),
    );
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// `parse_object` as the unit tests call it on generated data: no object metadata,
/// default options, a fresh enricher.
#[cfg(test)]
pub(crate) fn parse_generated(
    format: alf_formats::Format,
    data: &[u8],
    sink: &mut dyn EventSink,
) -> Result<ParseStats, ParseError> {
    parse_object(
        format,
        &mut &data[..],
        &ObjectInfo::default(),
        &ParseOptions::default(),
        &Enricher::new(),
        sink,
    )
}

/// The exit status of the harness binaries (`alf-bench`, `alf-gen-parquet`,
/// `alf-read-parquet`) for the outcome of their work: the error on stderr, then failure.
pub fn exit_code(result: Result<(), String>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A criterion group as every benchmark here sets it up: 10 samples after 1 s of warm-up
/// (each sample is a whole object, so 10 are plenty), measured for `measurement`.
pub fn bench_group<'c>(
    c: &'c mut criterion::Criterion,
    name: &str,
    measurement: std::time::Duration,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(measurement);
    group
}

/// The input of the decompression, pipeline and blocks benchmarks: a generated
/// CloudFront log (seed 1) and its gzip.
#[derive(Debug)]
pub struct CloudFrontInput {
    pub records: u64,
    pub plain: Vec<u8>,
    pub gz: Vec<u8>,
}

impl CloudFrontInput {
    pub fn new(records: u64) -> Self {
        let plain = generate(Kind::CloudFront, records, 1);
        let gz = gzip(&plain);
        CloudFrontInput { records, plain, gz }
    }

    /// `N CloudFront records, X MB plain, Y MB gzip`: what the benchmarks print first.
    pub fn describe(&self) -> String {
        format!(
            "{} CloudFront records, {:.1} MB plain, {:.1} MB gzip",
            self.records,
            self.plain.len() as f64 / 1e6,
            self.gz.len() as f64 / 1e6
        )
    }

    /// The gzip of `records` generated records, after printing `input: ` with their
    /// description and `detail`: the plain text is dropped before anything is measured.
    pub fn gz_announced(records: u64, detail: &str) -> Vec<u8> {
        let input = CloudFrontInput::new(records);
        eprintln!("input: {}{detail}", input.describe());
        input.gz
    }
}

/// Read buffer of the benchmarks' decompressing readers (the daemon's S3 body buffer).
pub const READ_BUF: usize = 64 * 1024;

/// A size from the environment (`_` separators allowed, `1_000_000`), else `default`:
/// how every benchmark takes its input size.
pub fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// A buffered gzip reader over `gz`, as the daemon reads an S3 body.
pub fn gunzip_reader(gz: &[u8]) -> std::io::BufReader<flate2::read::MultiGzDecoder<&[u8]>> {
    std::io::BufReader::with_capacity(READ_BUF, flate2::read::MultiGzDecoder::new(gz))
}

/// Decompresses `gz` and splits it into lines, nothing more: the floor every parse is
/// compared with. Returns the line count.
pub fn gunzip_lines(gz: &[u8]) -> u64 {
    let mut reader = gunzip_reader(gz);
    let mut line = Vec::with_capacity(1024);
    let mut lines = 0u64;
    while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
        lines += 1;
        line.clear();
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn gzip_round_trips() {
        let data = generate(Kind::CloudFront, 100, 1);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&gzip(&data)[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    /// The serializer writes one JSON object per event, redacted, and clears its buffer
    /// when it reaches the flush size.
    #[test]
    fn serializer_writes_redacted_json_lines() {
        let data = generate(Kind::CloudFront, 500, 2);
        let mut sink = Serializer::new(usize::MAX);
        let stats = parse_generated(alf_formats::Format::CloudFront, &data, &mut sink).unwrap();
        assert_eq!(stats.events, 500);
        assert_eq!(stats.malformed, 0, "generated CloudFront lines must parse");
        assert_eq!(sink.events, 500);
        let text = String::from_utf8(sink.buf.clone()).unwrap();
        assert_eq!(text.lines().count(), 500);
        assert!(text.contains("X-Amz-Signature=REDACTED"));
        for (i, _) in text.match_indices("X-Amz-Signature=") {
            let value = &text[i + "X-Amz-Signature=".len()..];
            assert!(value.starts_with("REDACTED"), "leaked: {}", &value[..20]);
        }
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["event"]["dataset"], "aws.cloudfront_logs");
        }

        let mut small = Serializer::new(1024);
        parse_generated(alf_formats::Format::CloudFront, &data, &mut small).unwrap();
        assert!(small.buf.len() < 1024 + 8192);
        assert_eq!(small.bytes, sink.bytes);
    }
}
