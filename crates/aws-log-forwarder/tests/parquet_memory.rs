//! Bounded memory for Parquet objects: the heap the daemon's path needs (spool the
//! decompressed body to a temporary file, read the footer, then row group by row group)
//! must not grow with the object. A small and a 12x larger VPC flow Parquet object (same
//! row group size, as AWS writes them) are parsed through `parse_stream`, the function
//! the daemon runs on S3 bodies, with the heap counted by this binary's allocator. An
//! implementation that held the object (or all its rows) would need several megabytes
//! more for the larger one and fail.
//!
//! The objects are written to temporary files first and read from there, so the test
//! itself never holds one whole.

use std::alloc::System;
use std::fs::File;
use std::io::{BufWriter, Seek};

use alf_bench::alloc::CountingAlloc;
use alf_formats::columnar::write::{
    Codec, vpc_flow_message_type, vpc_flow_record, write_json_records,
};
use alf_formats::{Enricher, Format};

mod common;

/// The workspace's counting allocator (live and peak heap bytes) over the system one.
#[global_allocator]
static ALLOC: CountingAlloc<System> = CountingAlloc::tracking_bytes(System);

const FIELDS: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status vpc-id subnet-id instance-id tcp-flags type pkt-srcaddr pkt-dstaddr region az-id flow-direction traffic-path";

/// Rows per row group, as AWS's conversion writes a few MiB per group.
const ROWS_PER_GROUP: usize = 2_500;

/// A VPC flow Parquet file of `records` distinct rows in a temporary file.
fn vpc_flow_object(records: u64) -> File {
    let header: Vec<&str> = FIELDS.split(' ').collect();
    let rows = (0..records).map(|i| {
        let line = format!(
            "5 123456789012 eni-{i:017x} 10.{}.{}.{} 198.51.{}.{} {} 443 6 {} {} {} {} {} OK vpc-0abc1234def567890 subnet-0123456789abcdef0 i-{i:017x} 19 IPv4 10.0.0.1 198.51.100.7 us-east-1 use1-az1 {} -",
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff,
            (i >> 8) & 0xff,
            i & 0xff,
            1024 + i % 60_000,
            1 + i % 97,
            40 + i % 9_000,
            1_714_564_800 + i,
            1_714_564_860 + i,
            if i % 7 == 0 { "REJECT" } else { "ACCEPT" },
            if i % 2 == 0 { "ingress" } else { "egress" },
        );
        vpc_flow_record(&header, &line)
    });
    let file = tempfile::tempfile().expect("a temporary file");
    let out = write_json_records(
        BufWriter::new(file),
        &vpc_flow_message_type(&header),
        rows,
        ROWS_PER_GROUP,
        Codec::Snappy,
    )
    .expect("write the Parquet object");
    let mut file = out.into_inner().expect("flush the Parquet object");
    file.rewind().expect("rewind");
    file
}

/// Parses one object and returns (events, peak heap bytes during the parse, file size).
fn parse_object_file(records: u64, enricher: &Enricher) -> (u64, usize, u64) {
    let file = vpc_flow_object(records);
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let (events, peak) = common::heap::parse_measuring_peak(
        file,
        "AWSLogs/123456789012/vpcflowlogs/us-east-1/2024/05/01/x.log.parquet",
        Format::VpcFlow,
        enricher,
    );
    (events, peak, size)
}

#[test]
fn peak_heap_of_a_parquet_object_does_not_grow_with_its_size() {
    // A debug build writes and reads roughly 1,000 rows a second: sizes that keep this
    // test near a minute while the large object is still 12 times the small one.
    const SMALL: u64 = 5_000;
    const LARGE: u64 = 60_000;
    let enricher = Enricher::new();
    parse_object_file(100, &enricher);
    let (small_events, small_peak, small_size) = parse_object_file(SMALL, &enricher);
    let (large_events, large_peak, large_size) = parse_object_file(LARGE, &enricher);
    assert_eq!((small_events, large_events), (SMALL, LARGE));
    eprintln!(
        "VPC flow Parquet: peak heap {small_peak} B for {SMALL} rows ({small_size} B), {large_peak} B for {LARGE} rows ({large_size} B)"
    );
    assert!(
        large_peak < small_peak + small_peak / 2 + 256 * 1024,
        "peak heap grew with the object: {small_peak} B for {SMALL} rows, {large_peak} B for {LARGE}"
    );
}
