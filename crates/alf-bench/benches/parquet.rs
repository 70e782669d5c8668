//! Parquet throughput next to the text formats: read + ECS mapping + JSON serialization
//! with redaction of VPC flow logs (the same generated records as text and as AWS's
//! Parquet layout, snappy and zstd) and of OCSF Network Activity (Security Lake).
//!
//! `cargo bench -p alf-bench --bench parquet` (`ALF_BENCH_RECORDS`, default 100,000).
//! Criterion reports events/s as "elem/s".

use std::hint::black_box;
use std::time::Duration;

use alf_bench::parquet::{write_ocsf_parquet, write_vpc_flow_parquet};
use alf_bench::{BenchObject, Kind, Serializer, bench_group, env_count, generate};
use alf_formats::columnar::write::Codec;
use alf_formats::columnar::{ParquetLimits, parse_parquet};
use alf_formats::{Enricher, Format, parse_object};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn parquet(c: &mut Criterion) {
    let records = env_count("ALF_BENCH_RECORDS", 100_000);
    let mut group = bench_group(c, "parquet", Duration::from_secs(5));
    group.throughput(Throughput::Elements(records));
    let enricher = Enricher::new();
    let limits = ParquetLimits::default();
    // The VPC flow sample key: the text and Parquet runs describe the same object.
    let bench = BenchObject::new(Kind::VpcFlow);

    // The text twin: the same generator, seeds and chunking as the Parquet file.
    let text: Vec<u8> = (0..records.div_ceil(10_000))
        .flat_map(|chunk| {
            let n = 10_000.min(records - chunk * 10_000);
            let data = generate(Kind::VpcFlowCustom, n, 1 + chunk);
            // Keep one header line (the first chunk's).
            let skip = if chunk == 0 {
                0
            } else {
                data.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1)
            };
            data[skip..].to_vec()
        })
        .collect();
    group.bench_function("vpc-flow text", |b| {
        b.iter(|| {
            let mut sink = Serializer::new(1 << 20);
            parse_object(
                Format::VpcFlow,
                &mut &text[..],
                &bench.object,
                &bench.options,
                &enricher,
                &mut sink,
            )
            .unwrap();
            assert_eq!(sink.events, records);
            black_box(sink.bytes)
        })
    });
    // AWS's VPC flow layout in both codecs, and Security Lake's OCSF Network Activity.
    let files = [
        (
            "vpc-flow parquet snappy",
            write_vpc_flow_parquet(records, 1, Codec::Snappy, Vec::new()),
        ),
        (
            "vpc-flow parquet zstd",
            write_vpc_flow_parquet(records, 1, Codec::Zstd, Vec::new()),
        ),
        (
            "security-lake ocsf 4001 parquet zstd",
            write_ocsf_parquet(records, 1, Codec::Zstd, Vec::new()),
        ),
    ];
    for (name, file) in files {
        let file = Bytes::from(file.unwrap());
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut sink = Serializer::new(1 << 20);
                parse_parquet(
                    file.clone(),
                    None,
                    &bench.object,
                    &bench.options,
                    &limits,
                    &enricher,
                    &mut sink,
                )
                .unwrap();
                assert_eq!(sink.events, records);
                black_box(sink.bytes)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parquet);
criterion_main!(benches);
