//! One CloudFront object, side by side in one run: the decompress-and-split floor, the
//! full pipeline on one thread, and the same object cut into blocks parsed by a pool of
//! workers (`alf_formats::parallel`), all delivering redacted NDJSON.
//!
//! * `floor-gunzip+lines`: flate2 (zlib-rs) and line splitting only, what no parser
//!   can beat; issue 8 asks for the full pipeline within 5x of it.
//! * `blocks-1-thread`: decompress, parse, ECS mapping, redaction, JSON on the calling
//!   thread (the `parse` command's default).
//! * `blocks-1-new-thread`: the same on a thread started for the object, with a
//!   fresh enricher: the difference to `blocks-1-thread` is what a worker paid on
//!   every object before the workers were kept on a pool of threads (21-22 ms here).
//! * `blocks-N-threads`: the same with N workers (`ALF_BENCH_THREADS`, default: the
//!   number of cores); the wall-clock ratio to `blocks-1-thread` is the parallel
//!   speed-up (issue 8: >= 1.8x on 2 cores).
//!
//! `ALF_BENCH_PIPELINE_RECORDS` sets the object size (default 100,000 records);
//! `ALF_BENCH_ALTERNATE=N` first runs N alternated pairs (one thread, then N threads)
//! and prints the median ratio, the measure least blurred by a drifting machine.
//!
//! ```sh
//! cargo bench -p alf-bench --bench blocks
//! ```

use std::hint::black_box;
use std::time::Duration;

use alf_bench::{
    BenchObject, CloudFrontInput, Kind, bench_group, env_count, gunzip_lines, gunzip_reader,
};
use alf_formats::parallel::{BlockOptions, DEFAULT_BLOCK_BYTES, parse_object_blocks};
use alf_formats::{Enricher, Redactor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The daemon's allocator, so the figures are those production gets.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn blocks(c: &mut Criterion) {
    let records = env_count("ALF_BENCH_PIPELINE_RECORDS", 100_000);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let threads = env_count("ALF_BENCH_THREADS", cores).max(2) as usize;
    let gz = CloudFrontInput::gz_announced(records, &format!("; {threads} threads"));
    let bench = BenchObject::new(Kind::CloudFront);
    let enricher = Enricher::new();
    let redactor = Redactor::new();
    let run_with = |enricher: &Enricher, threads: usize| {
        let mut bytes = 0usize;
        let stats = parse_object_blocks(
            bench.format,
            &mut gunzip_reader(&gz),
            &bench.object,
            &bench.options,
            enricher,
            BlockOptions {
                threads,
                block_bytes: DEFAULT_BLOCK_BYTES,
                redactor: Some(&redactor),
            },
            &mut |block| {
                bytes += block.ndjson.len();
                black_box(&block);
                Ok(())
            },
        );
        black_box((stats.ok(), bytes))
    };
    let run = |threads: usize| run_with(&enricher, threads);
    // Compile the user-agent rules and fill the caches once, as a running daemon has.
    run(1);
    alternate(records, threads, &run);

    let mut group = bench_group(c, "blocks-cloudfront", Duration::from_secs(8));
    group.throughput(Throughput::Elements(records));
    group.bench_function("floor-gunzip+lines", |b| {
        b.iter(|| black_box(gunzip_lines(&gz)))
    });
    group.bench_function("blocks-1-thread", |b| b.iter(|| run(1)));
    // The same on a thread started for the object, with a fresh enricher: what a
    // worker started for every object would pay (cold allocator heap, event plans and
    // caches), measured beside the warm thread.
    group.bench_function("blocks-1-new-thread", |b| {
        b.iter(|| {
            std::thread::scope(|scope| scope.spawn(|| run_with(&Enricher::new(), 1)).join().ok())
        })
    });
    group.bench_function(format!("blocks-{threads}-threads"), |b| {
        b.iter(|| run(threads))
    });
    group.finish();
}

/// `ALF_BENCH_ALTERNATE=N`: N pairs of one-thread and N-thread runs, one right after
/// the other, and the median of their ratios. On a machine whose speed drifts by
/// several percent within minutes, the criterion benches (each sampled for seconds,
/// one after the other) can put the drift into the ratio; a pair of runs a few hundred
/// milliseconds apart mostly does not.
fn alternate<R>(records: u64, threads: usize, run: &dyn Fn(usize) -> R) {
    let pairs = env_count("ALF_BENCH_ALTERNATE", 0);
    if pairs == 0 {
        return;
    }
    let time = |threads: usize| {
        let start = std::time::Instant::now();
        black_box(run(threads));
        start.elapsed().as_secs_f64()
    };
    let mut ratios: Vec<f64> = (0..pairs)
        .map(|pair| {
            let (one, many) = (time(1), time(threads));
            eprintln!(
                "pair {pair}: 1 thread {:.1} ms, {threads} threads {:.1} ms, {:.2}x",
                one * 1e3,
                many * 1e3,
                one / many
            );
            one / many
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    eprintln!(
        "{pairs} alternated pairs of {records} records: median {median:.2}x, from {:.2}x to {:.2}x",
        ratios[0],
        ratios[ratios.len() - 1]
    );
}

criterion_group!(benches, blocks);
criterion_main!(benches);
