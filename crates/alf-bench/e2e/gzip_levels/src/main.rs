//! gzip levels with zlib-rs (the daemon's backend) and zstd levels: CPU seconds (best of 3, from
//! /proc/self/stat) and compression ratio, compressing the NDJSON file given in 4 MB
//! request bodies, each handed whole to the compressor as the intake client hands an
//! NDJSON batch (gzip through flate2's writer, zstd in one call).

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
        measure(&format!("gzip level {level}"), &data, |body| {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 6),
                flate2::Compression::new(level),
            );
            enc.write_all(body)?;
            Ok(enc.finish()?.len())
        })?;
    }
    for level in [-7i32, -5, -3, -1, 1, 2, 3] {
        let mut zstd = zstd::bulk::Compressor::new(level)?;
        measure(&format!("zstd level {level}"), &data, |body| {
            Ok(zstd.compress(body)?.len())
        })?;
    }
    Ok(())
}

/// Compresses `data` in 4 MB bodies, each handed whole to `compress` as the daemon
/// hands an NDJSON batch (which returns the compressed size), three times; prints the
/// best CPU time and the ratio.
fn measure(
    name: &str,
    data: &[u8],
    mut compress: impl FnMut(&[u8]) -> Result<usize, Box<dyn Error>>,
) -> Result<(), Box<dyn Error>> {
    let mut best = f64::MAX;
    let mut compressed = 0;
    for _ in 0..3 {
        let start = cpu_seconds()?;
        compressed = 0;
        for body in data.chunks(4_000_000) {
            compressed += compress(body)?;
        }
        best = best.min(cpu_seconds()? - start);
    }
    println!(
        "{name}: {best:.2} CPU-s (best of 3), {:.1} MB -> {:.1} MB, ratio {:.1}",
        data.len() as f64 / 1e6,
        compressed as f64 / 1e6,
        data.len() as f64 / compressed as f64
    );
    Ok(())
}
