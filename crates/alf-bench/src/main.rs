//! `alf-bench`: writes generated log files and times the parse pipeline in-process.
//!
//! ```text
//! alf-bench gen <kind> --records N [--gzip] [--seed S] -o FILE
//! alf-bench run <kind> [--records N] [--gzip] [--repeat K] [--seed S]
//! alf-bench formats
//! ```
//! `formats` lists the registry's formats as `index name` (the fuzz corpus seeds pick
//! formats by index).
//! `run` times each pipeline stage separately and counts allocations per event; it is
//! also the program to profile (`perf record`, `valgrind --tool=callgrind`): it
//! generates the input first, then runs only decompress -> parse -> serialize.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use alf_bench::alloc::{self, CountingAlloc};
use alf_bench::{BenchObject, Discard, Kind, PlainJson, Serializer, gzip, write_log};
use alf_formats::Enricher;

const USAGE: &str = "usage:
  alf-bench gen <kind> --records N [--gzip] [--seed S] -o FILE
  alf-bench run <kind> [--records N] [--gzip] [--repeat K] [--seed S]
  alf-bench formats
kinds: cloudfront s3-access elb vpc-flow vpc-flow-custom cloudtrail waf guardduty route53-resolver network-firewall
       cloudwatch-logs aws-config redshift-audit eventbridge securityhub ndjson lines";

struct Args {
    command: String,
    kind: Kind,
    records: u64,
    gzip: bool,
    seed: u64,
    repeat: u32,
    output: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let command = it.next().ok_or("missing command")?;
    let kind = it
        .next()
        .ok_or("missing kind")?
        .parse::<Kind>()
        .map_err(|e| e.to_string())?;
    let mut args = Args {
        command,
        kind,
        records: 100_000,
        gzip: false,
        seed: 1,
        repeat: 1,
        output: None,
    };
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--records" | "-n" => {
                args.records = value("--records")?
                    .replace('_', "")
                    .parse()
                    .map_err(|e| format!("--records: {e}"))?
            }
            "--seed" => {
                args.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--repeat" => {
                args.repeat = value("--repeat")?
                    .parse()
                    .map_err(|e| format!("--repeat: {e}"))?
            }
            "--gzip" => args.gzip = true,
            "-o" | "--output" => args.output = Some(value("-o")?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(args)
}

fn gen_file(args: &Args) -> Result<(), String> {
    let path = args.output.as_deref().ok_or("gen needs -o FILE")?;
    let file = File::create(path).map_err(|e| format!("{path}: {e}"))?;
    let started = Instant::now();
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let bytes = if args.gzip {
        let mut enc = flate2::write::GzEncoder::new(&mut out, flate2::Compression::default());
        let n = write_log(args.kind, args.records, args.seed, &mut enc);
        enc.finish().map_err(|e| format!("{path}: {e}"))?;
        n
    } else {
        write_log(args.kind, args.records, args.seed, &mut out)
    }
    .map_err(|e| format!("{path}: {e}"))?;
    out.flush().map_err(|e| format!("{path}: {e}"))?;
    eprintln!(
        "{path}: {} {} records, {:.1} MB uncompressed, in {:.1}s",
        args.records,
        args.kind,
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Counts heap allocations, so `run` can report allocations per event (the parsers'
/// main cost besides redaction). One relaxed atomic add per allocation: negligible.
/// Allocates with mimalloc, the daemon's global allocator, so the figures are those
/// of the allocator production runs (the system allocator is markedly slower here).
#[global_allocator]
static GLOBAL: CountingAlloc<mimalloc::MiMalloc> =
    CountingAlloc::counting_calls(mimalloc::MiMalloc);

/// Times each stage of the pipeline separately (gunzip and line splitting, parsing,
/// serialization, redaction) and counts allocations per event, `repeat` times.
fn run(args: &Args) -> Result<(), String> {
    let plain = alf_bench::generate(args.kind, args.records, args.seed);
    let input = if args.gzip { gzip(&plain) } else { plain };
    let bench = BenchObject::new(args.kind);
    let enricher = Enricher::new();
    let reader = || -> Box<dyn BufRead + '_> {
        if args.gzip {
            Box::new(BufReader::with_capacity(
                64 * 1024,
                flate2::read::MultiGzDecoder::new(&input[..]),
            ))
        } else {
            Box::new(&input[..])
        }
    };
    // Warm the user-agent cache and the regex set once, as a long-running daemon has.
    bench
        .parse(&enricher, &mut reader(), &mut Discard(0))
        .map_err(|e| e.to_string())?;
    for round in 1..=args.repeat {
        let mut line = Vec::with_capacity(4096);
        let (lines, read_secs) = timed(|| {
            let mut r = reader();
            let mut n = 0u64;
            while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                n += 1;
                line.clear();
            }
            n
        });
        let mut discard = Discard(0);
        let (parsed, parse_secs) = timed(|| bench.parse(&enricher, &mut reader(), &mut discard));
        let parse_allocs = last_allocations();
        let stats = parsed.map_err(|e| e.to_string())?;
        let mut plain_json = PlainJson(Vec::with_capacity(5 << 20));
        let (_, json_secs) = timed(|| bench.parse(&enricher, &mut reader(), &mut plain_json));
        let json_allocs = last_allocations();
        let mut sink = Serializer::new(4 << 20);
        let (_, full_secs) = timed(|| bench.parse(&enricher, &mut reader(), &mut sink));
        let full_allocs = last_allocations();
        let events = stats.events.max(1) as f64;
        let per_event_us = |secs: f64| secs * 1e6 / events;
        eprintln!(
            "round {round}: {} events ({} malformed), {:.1} MB JSON\n  \
             read+split lines: {:>8.0} lines/s\n  \
             parse (no JSON):  {:>8.0} events/s  {:.2} us/event  {:.1} allocs/event\n  \
             + JSON:           {:>8.0} events/s  {:.2} us/event  {:.1} allocs/event\n  \
             + redaction:      {:>8.0} events/s  {:.2} us/event  {:.1} allocs/event  (pipeline)",
            stats.events,
            stats.malformed,
            sink.bytes as f64 / 1e6,
            lines as f64 / read_secs,
            events / parse_secs,
            per_event_us(parse_secs),
            parse_allocs as f64 / events,
            events / json_secs,
            per_event_us(json_secs),
            json_allocs as f64 / events,
            events / full_secs,
            per_event_us(full_secs),
            full_allocs as f64 / events,
        );
    }
    Ok(())
}

static MARK: AtomicU64 = AtomicU64::new(0);

/// Runs `f`, returning its result and wall-clock seconds; remembers the allocation
/// count at the start for [`last_allocations`].
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    MARK.store(alloc::allocations(), Ordering::Relaxed);
    let started = Instant::now();
    let out = f();
    let secs = started.elapsed().as_secs_f64();
    MARK.store(
        alloc::allocations() - MARK.load(Ordering::Relaxed),
        Ordering::Relaxed,
    );
    (out, secs)
}

/// Allocations made during the last [`timed`] call.
fn last_allocations() -> u64 {
    MARK.load(Ordering::Relaxed)
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("formats") {
        for (index, format) in alf_formats::Format::ALL.iter().enumerate() {
            println!("{index} {format}");
        }
        return ExitCode::SUCCESS;
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match args.command.as_str() {
        "gen" => gen_file(&args),
        "run" => run(&args),
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    };
    alf_bench::exit_code(result)
}
