//! Per-format throughput: parse + ECS mapping + JSON serialization with redaction (what
//! the daemon does per event) of an in-memory generated file.
//!
//! `cargo bench -p alf-bench --bench formats` (set `ALF_BENCH_RECORDS` to change the
//! file size, default 20,000 records). Criterion reports events/s as "elem/s".

use std::hint::black_box;
use std::time::Duration;

use alf_bench::{BenchObject, Kind, Serializer, bench_group, env_count, generate};
use alf_formats::Enricher;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The daemon's allocator, so the figures are those production gets.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn formats(c: &mut Criterion) {
    let records = env_count("ALF_BENCH_RECORDS", 20_000);
    let mut group = bench_group(c, "formats", Duration::from_secs(3));
    // One enricher for the whole run, as the daemon keeps one per process (its
    // user-agent cache is warm after the first object).
    let enricher = Enricher::new();
    for kind in Kind::ALL {
        let data = generate(kind, records, 1);
        let bench = BenchObject::new(kind);
        // Count the events one pass yields: throughput is per event (CloudTrail and
        // the JSON formats have one event per record, as do the line formats).
        let mut probe = Serializer::new(1 << 20);
        let stats = bench.parse(&enricher, &mut &data[..], &mut probe);
        let events = match stats {
            Ok(s) => {
                if s.malformed > 0 {
                    eprintln!(
                        "note: {kind}: {} of {} records malformed (parser not finished?)",
                        s.malformed, s.records
                    );
                }
                s.events
            }
            Err(e) => {
                eprintln!("skipping {kind}: {e}");
                continue;
            }
        };
        eprintln!(
            "{kind}: {records} records, {:.1} MB in, {events} events, {:.1} MB JSON out",
            data.len() as f64 / 1e6,
            probe.bytes as f64 / 1e6
        );
        group.throughput(Throughput::Elements(events));
        let mut sink = Serializer::new(4 << 20);
        group.bench_function(kind.name(), |b| {
            b.iter(|| {
                let mut reader = &data[..];
                let stats = bench.parse(&enricher, &mut reader, &mut sink);
                black_box((stats.ok(), sink.buf.len()))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, formats);
criterion_main!(benches);
