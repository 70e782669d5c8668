//! CloudFront end to end on one core, as the daemon runs it per object:
//! gzip bytes -> `MultiGzDecoder` (zlib-rs) -> `BufReader` -> `parse_object` ->
//! `write_json` with redaction. Target: >= 200,000 events/s.
//!
//! The stages are also measured cumulatively so a regression can be located without a
//! profiler:
//! * `gunzip+lines`: decompression and line splitting only (the floor);
//! * `parse`: + parsing and ECS mapping, events dropped;
//! * `parse+json-unredacted`: + JSON serialization without redaction;
//! * `parse+json`: the full pipeline with redaction (the number that counts).
//!
//! `ALF_BENCH_PIPELINE_RECORDS` changes the object size (default 100,000 records,
//! about the size of a busy distribution's 5-minute log file).

use std::hint::black_box;
use std::time::Duration;

use alf_bench::{
    BenchObject, CloudFrontInput, Discard, Kind, PlainJson, Serializer, bench_group, env_count,
    gunzip_lines, gunzip_reader,
};
use alf_formats::Enricher;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The daemon's allocator, so the figures are those production gets.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reader buffer: large enough that the decompressor works in big chunks.
fn pipeline(c: &mut Criterion) {
    let records = env_count("ALF_BENCH_PIPELINE_RECORDS", 100_000);
    let gz = CloudFrontInput::gz_announced(records, "");
    let bench = BenchObject::new(Kind::CloudFront);
    let enricher = Enricher::new();

    let mut group = bench_group(c, "pipeline-cloudfront", Duration::from_secs(5));
    group.throughput(Throughput::Elements(records));

    group.bench_function("gunzip+lines", |b| b.iter(|| black_box(gunzip_lines(&gz))));
    group.bench_function("parse", |b| {
        b.iter(|| {
            let mut sink = Discard(0);
            let stats = bench.parse(&enricher, &mut gunzip_reader(&gz), &mut sink);
            black_box((stats.ok(), sink.0))
        })
    });
    let mut plain = PlainJson(Vec::with_capacity(5 << 20));
    group.bench_function("parse+json-unredacted", |b| {
        b.iter(|| {
            let stats = bench.parse(&enricher, &mut gunzip_reader(&gz), &mut plain);
            black_box((stats.ok(), plain.0.len()))
        })
    });
    let mut sink = Serializer::new(4 << 20);
    group.bench_function("parse+json", |b| {
        b.iter(|| {
            let stats = bench.parse(&enricher, &mut gunzip_reader(&gz), &mut sink);
            black_box((stats.ok(), sink.buf.len()))
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
