//! gzip levels with zlib-rs (the daemon's backend) and zstd levels: CPU seconds (best of 3, from
//! /proc/self/stat) and compression ratio, compressing the NDJSON file given in 4 MB
//! request bodies fed 64 KB at a time, as the intake client does.

use std::error::Error;
use std::io::Write;

fn cpu_seconds() -> Result<f64, Box<dyn Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .ok_or("unexpected /proc/self/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| -> Result<f64, Box<dyn Error>> {
        Ok(fields.get(i).ok_or("short /proc/self/stat")?.parse::<f64>()?)
    };
    // utime + stime, in clock ticks of 1/100 s on Linux.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

fn main() -> Result<(), Box<dyn Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: gzip-levels EVENTS.ndjson")?;
    let data = std::fs::read(path)?;
    for level in [1u32, 2, 3, 4, 6] {
        let mut best = f64::MAX;
        let mut compressed = 0;
        for _ in 0..3 {
            let start = cpu_seconds()?;
            compressed = 0;
            for body in data.chunks(4_000_000) {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 6),
                    flate2::Compression::new(level),
                );
                for piece in body.chunks(64 * 1024) {
                    enc.write_all(piece)?;
                }
                compressed += enc.finish()?.len();
            }
            best = best.min(cpu_seconds()? - start);
        }
        println!(
            "level {level}: {best:.2} CPU-s (best of 3), {:.1} MB -> {:.1} MB, ratio {:.1}",
            data.len() as f64 / 1e6,
            compressed as f64 / 1e6,
            data.len() as f64 / compressed as f64
        );
    }
    for level in [-7i32, -5, -3, -1, 1, 2, 3] {
        let mut best = f64::MAX;
        let mut compressed = 0;
        for _ in 0..3 {
            let start = cpu_seconds()?;
            compressed = 0;
            for body in data.chunks(4_000_000) {
                let mut enc =
                    zstd::stream::write::Encoder::new(Vec::with_capacity(body.len() / 6), level)?;
                for piece in body.chunks(64 * 1024) {
                    enc.write_all(piece)?;
                }
                compressed += enc.finish()?.len();
            }
            best = best.min(cpu_seconds()? - start);
        }
        println!(
            "zstd level {level}: {best:.2} CPU-s (best of 3), {:.1} MB -> {:.1} MB, ratio {:.1}",
            data.len() as f64 / 1e6,
            compressed as f64 / 1e6,
            data.len() as f64 / compressed as f64
        );
    }
    Ok(())
}
