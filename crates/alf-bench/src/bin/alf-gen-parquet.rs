//! `alf-gen-parquet <vpc-flow|ocsf> --records N [--seed S] [--codec snappy|gzip|zstd] -o FILE`
//!
//! Writes a Parquet object for the benchmarks, the memory test and fuzz seeds: VPC flow
//! logs in AWS's Parquet layout, or OCSF Network Activity as Amazon Security Lake
//! writes it. Streams: memory is one row group whatever the record count.

use std::fs::File;
use std::io::BufWriter;
use std::process::ExitCode;
use std::time::Instant;

use alf_bench::parquet::{write_ocsf_parquet, write_vpc_flow_parquet};
use alf_formats::columnar::write::Codec;

const USAGE: &str = "usage: alf-gen-parquet <vpc-flow|ocsf> --records N [--seed S] [--codec snappy|gzip|zstd] -o FILE";

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let kind = args.next().ok_or(USAGE)?;
    let (mut records, mut seed, mut codec, mut output) = (100_000u64, 1u64, Codec::Snappy, None);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--records" | "-n" => {
                records = value()?.parse().map_err(|e| format!("--records: {e}"))?
            }
            "--seed" => seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--codec" => {
                codec = match value()?.as_str() {
                    "snappy" => Codec::Snappy,
                    "gzip" => Codec::Gzip,
                    "zstd" => Codec::Zstd,
                    "none" => Codec::Uncompressed,
                    other => return Err(format!("unknown codec `{other}`\n{USAGE}")),
                }
            }
            "-o" | "--output" => output = Some(value()?),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    let path = output.ok_or_else(|| format!("missing -o FILE\n{USAGE}"))?;
    let file = BufWriter::with_capacity(
        1 << 20,
        File::create(&path).map_err(|e| format!("{path}: {e}"))?,
    );
    let started = Instant::now();
    let written = match kind.as_str() {
        "vpc-flow" => write_vpc_flow_parquet(records, seed, codec, file),
        "ocsf" => write_ocsf_parquet(records, seed, codec, file),
        other => return Err(format!("unknown kind `{other}`\n{USAGE}")),
    }
    .map_err(|e| format!("{path}: {e}"))?;
    let file = written.into_inner().map_err(|e| format!("{path}: {e}"))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "{path}: {records} {kind} rows, {:.1} MB, in {:.1}s",
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    alf_bench::exit_code(run())
}
