//! Decompression backends on a large CloudFront log (~50 MB gzip by default):
//!
//! * `flate2-zlib-rs`: `flate2::read::MultiGzDecoder` with the `zlib-rs` backend (what
//!   the daemon uses; flate2 compiles exactly one backend, and zlib-rs wins when
//!   enabled).
//! * `flate2-zlib-rs-bufread`: the same over a `BufRead` holding the whole input
//!   (`read::MultiGzDecoder` refills a 32 KiB buffer), to show the cost of small reads.
//! * `miniz_oxide`: the pure Rust backend flate2 uses by default, driven directly
//!   (gzip header parsed here, CRC-32 checked with crc32fast, exactly as flate2 does),
//!   because it cannot be selected in the same build as zlib-rs.
//! * `async-compression-gzip`: `async_compression::tokio::bufread::GzipDecoder` on a
//!   current-thread tokio runtime (its codec is flate2, so zlib-rs as well here: this
//!   measures the async wrapper's cost).
//! * `zstd`: the same text compressed with zstd level 3 (for formats or pipelines that
//!   could use it; AWS delivers gzip).
//!
//! Throughput is decompressed bytes per second. `ALF_BENCH_DECOMPRESS_RECORDS` changes
//! the input size (default 480,000 CloudFront records, about 50 MB of gzip).

use std::hint::black_box;
use std::io::{self, Read};
use std::time::Duration;

use alf_bench::{CloudFrontInput, bench_group, env_count};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use miniz_oxide::inflate::stream::{InflateState, inflate};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

/// The daemon's allocator, so the figures are those production gets.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const OUT_CHUNK: usize = 64 * 1024;

/// Reads `r` to the end through a fixed buffer; returns the byte count.
fn drain(mut r: impl Read) -> io::Result<u64> {
    let mut buf = vec![0u8; OUT_CHUNK];
    let mut total = 0u64;
    loop {
        match r.read(&mut buf)? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

/// Length of the gzip member header at the start of `data` (RFC 1952), or `None`.
fn gzip_header_len(data: &[u8]) -> Option<usize> {
    if data.len() < 10 || data[0] != 0x1f || data[1] != 0x8b || data[2] != 8 {
        return None;
    }
    let flags = data[3];
    let mut i = 10;
    if flags & 0x04 != 0 {
        let xlen = usize::from(u16::from_le_bytes([*data.get(i)?, *data.get(i + 1)?]));
        i += 2 + xlen;
    }
    for bit in [0x08u8, 0x10] {
        if flags & bit != 0 {
            i += data.get(i..)?.iter().position(|&b| b == 0)? + 1;
        }
    }
    if flags & 0x02 != 0 {
        i += 2;
    }
    (i <= data.len()).then_some(i)
}

/// Decompresses every gzip member of `data` with miniz_oxide, checking each member's
/// CRC-32 and size; returns the decompressed byte count.
fn miniz_gunzip(mut data: &[u8]) -> Result<u64, String> {
    let mut state = InflateState::new_boxed(DataFormat::Raw);
    let mut out = vec![0u8; OUT_CHUNK];
    let mut total = 0u64;
    while !data.is_empty() {
        let header = gzip_header_len(data).ok_or("bad gzip header")?;
        data = &data[header..];
        state.reset(DataFormat::Raw);
        let mut crc = crc32fast::Hasher::new();
        let mut member = 0u64;
        loop {
            let res = inflate(&mut state, data, &mut out, MZFlush::None);
            data = &data[res.bytes_consumed..];
            crc.update(&out[..res.bytes_written]);
            member += res.bytes_written as u64;
            match res.status {
                Ok(MZStatus::StreamEnd) => break,
                Ok(_) => {}
                Err(MZError::Buf) if res.bytes_written > 0 || res.bytes_consumed > 0 => {}
                Err(e) => return Err(format!("inflate: {e:?}")),
            }
        }
        let trailer = data.get(..8).ok_or("truncated gzip trailer")?;
        let want_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let want_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        if crc.finalize() != want_crc || member as u32 != want_len {
            return Err("gzip trailer mismatch".into());
        }
        data = &data[8..];
        total += member;
    }
    Ok(total)
}

async fn async_gunzip(data: &[u8]) -> io::Result<u64> {
    use tokio::io::AsyncReadExt;
    let mut dec = async_compression::tokio::bufread::GzipDecoder::new(
        tokio::io::BufReader::with_capacity(OUT_CHUNK, data),
    );
    dec.multiple_members(true);
    let mut buf = vec![0u8; OUT_CHUNK];
    let mut total = 0u64;
    loop {
        match dec.read(&mut buf).await? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

fn decompress(c: &mut Criterion) {
    let input = CloudFrontInput::new(env_count("ALF_BENCH_DECOMPRESS_RECORDS", 480_000));
    let described = input.describe();
    let CloudFrontInput { plain, gz, .. } = input;
    let zst = match zstd::bulk::compress(&plain, 3) {
        Ok(z) => z,
        Err(e) => panic!("zstd compress: {e}"),
    };
    eprintln!(
        "input: {described} (ratio {:.1}), {:.1} MB zstd-3",
        plain.len() as f64 / gz.len() as f64,
        zst.len() as f64 / 1e6
    );
    let expected = plain.len() as u64;
    // Every backend must produce the whole text before its time counts.
    assert_eq!(
        drain(flate2::read::MultiGzDecoder::new(&gz[..])).ok(),
        Some(expected)
    );
    assert_eq!(
        drain(flate2::bufread::MultiGzDecoder::new(&gz[..])).ok(),
        Some(expected)
    );
    assert_eq!(miniz_gunzip(&gz).ok(), Some(expected));
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    assert_eq!(rt.block_on(async_gunzip(&gz)).ok(), Some(expected));
    assert_eq!(
        zstd::stream::read::Decoder::new(&zst[..])
            .and_then(drain)
            .ok(),
        Some(expected)
    );
    drop(plain);

    let mut group = bench_group(c, "decompress", Duration::from_secs(8));
    group.throughput(Throughput::Bytes(expected));
    group.bench_function("flate2-zlib-rs", |b| {
        b.iter(|| black_box(drain(flate2::read::MultiGzDecoder::new(&gz[..])).ok()))
    });
    // The same backend fed from a `BufRead` that holds the whole input: shows what the
    // size of the chunks handed to the decompressor costs (`read::` buffers 32 KiB).
    group.bench_function("flate2-zlib-rs-bufread", |b| {
        b.iter(|| black_box(drain(flate2::bufread::MultiGzDecoder::new(&gz[..])).ok()))
    });
    group.bench_function("miniz_oxide", |b| {
        b.iter(|| black_box(miniz_gunzip(&gz).ok()))
    });
    group.bench_function("async-compression-gzip", |b| {
        b.iter(|| black_box(rt.block_on(async_gunzip(&gz)).ok()))
    });
    group.bench_function("zstd-3", |b| {
        b.iter(|| {
            black_box(
                zstd::stream::read::Decoder::new(&zst[..])
                    .and_then(drain)
                    .ok(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, decompress);
criterion_main!(benches);
