//! Parquet inputs for the benchmarks and the memory test: VPC flow logs as AWS writes
//! them to Parquet (the generated text records, converted column by column, so text and
//! Parquet runs parse the same records), and OCSF Network Activity records as Amazon
//! Security Lake writes them. Written with the `parquet` crate through
//! [`alf_formats::columnar::write`], streaming: records are made one chunk at a time,
//! so a file of millions of rows needs no more memory than one row group.

use std::io::Write;

use alf_formats::columnar::write::{
    Codec, OCSF_SCHEMA, WriteError, vpc_flow_message_type, vpc_flow_record, write_json_records,
};
use serde_json::{Value as J, json};

use crate::clock::Clock;
use crate::generate::{Kind, generate};
use crate::pools;
use crate::rng::Rng;

/// Rows per row group: about what AWS's Parquet conversion writes (a few MiB).
pub const ROWS_PER_GROUP: usize = 50_000;

/// Records generated per text chunk before conversion.
const CHUNK_RECORDS: u64 = 10_000;

/// Writes `records` VPC flow records (the `vpc-flow-custom` generator: version 5
/// fields) as AWS's Parquet layout. Returns the writer.
pub fn write_vpc_flow_parquet<W: Write + Send>(
    records: u64,
    seed: u64,
    codec: Codec,
    out: W,
) -> Result<W, WriteError> {
    let header_text = String::from_utf8_lossy(&generate(Kind::VpcFlowCustom, 0, seed)).into_owned();
    let header: Vec<String> = header_text.split_whitespace().map(str::to_owned).collect();
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    let chunks = records.div_ceil(CHUNK_RECORDS);
    let rows = (0..chunks).flat_map(|chunk| {
        let n = CHUNK_RECORDS.min(records - chunk * CHUNK_RECORDS);
        let text =
            String::from_utf8_lossy(&generate(Kind::VpcFlowCustom, n, seed.wrapping_add(chunk)))
                .into_owned();
        text.lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|line| vpc_flow_record(&header_refs, line))
            .collect::<Vec<J>>()
    });
    write_json_records(
        out,
        &vpc_flow_message_type(&header_refs),
        rows,
        ROWS_PER_GROUP,
        codec,
    )
}

/// One OCSF Network Activity (4001) record as Security Lake writes VPC flow logs.
fn network_activity(rng: &mut Rng, clock: &mut Clock) -> J {
    clock.tick(rng, 2_000_000);
    let mut src = String::new();
    let mut dst = String::new();
    if rng.chance(50) {
        pools::public_ipv4(rng, &mut src);
        pools::private_ipv4(rng, &mut dst);
    } else {
        pools::private_ipv4(rng, &mut src);
        pools::public_ipv4(rng, &mut dst);
    }
    let account = pools::ACCOUNTS[rng.below(pools::ACCOUNTS.len() as u64) as usize];
    let allowed = rng.chance(85);
    let end = clock.epoch_millis();
    let protocol = [6, 6, 6, 17, 1][rng.below(5) as usize];
    let dst_port = [443, 80, 22, 53, 3389][rng.below(5) as usize];
    json!({
        "class_uid": 4001, "class_name": "Network Activity", "category_uid": 4,
        "activity_id": 6, "activity_name": "Traffic", "type_uid": 400106,
        "severity_id": 1, "severity": "Informational", "status_id": 1, "status": "Success",
        "time": end, "start_time": end - 60_000, "end_time": end,
        "action_id": if allowed { 1 } else { 2 }, "action": if allowed { "Allowed" } else { "Denied" },
        "metadata": {"version": "1.1.0", "product": {"name": "Amazon VPC", "vendor_name": "AWS", "version": "5"},
                     "profiles": ["cloud", "security_control", "datetime"]},
        "cloud": {"region": "us-east-1", "provider": "AWS", "account": {"uid": account}},
        "src_endpoint": {"ip": src, "port": rng.range(1024, 65535),
                         "instance_uid": format!("i-{:017x}", rng.next_u64() >> 4),
                         "vpc_uid": format!("vpc-{:017x}", rng.below(16))},
        "dst_endpoint": {"ip": dst, "port": dst_port},
        "connection_info": {"protocol_num": protocol, "direction_id": rng.range(1, 2), "tcp_flags": rng.below(32)},
        "traffic": {"bytes": rng.range(40, 1_000_000), "packets": rng.range(1, 1000)},
        "accountid": account, "region": "us-east-1", "eventday": "20240315",
    })
}

/// Writes `records` OCSF Network Activity rows (Security Lake's VPC flow source).
pub fn write_ocsf_parquet<W: Write + Send>(
    records: u64,
    seed: u64,
    codec: Codec,
    out: W,
) -> Result<W, WriteError> {
    let mut rng = Rng::new(seed ^ 0x4001);
    let mut clock = Clock::new();
    let rows = (0..records).map(move |_| network_activity(&mut rng, &mut clock));
    write_json_records(out, OCSF_SCHEMA, rows, ROWS_PER_GROUP, codec)
}

#[cfg(test)]
mod tests {
    use alf_formats::columnar::{ParquetLimits, parse_parquet};
    use alf_formats::{Enricher, Event, Format, ObjectInfo, ParseOptions};

    use super::*;

    fn read(bytes: Vec<u8>) -> (Format, Vec<Event>, u64) {
        let mut events = Vec::new();
        let parsed = parse_parquet(
            bytes::Bytes::from(bytes),
            None,
            &ObjectInfo::default(),
            &ParseOptions::default(),
            &ParquetLimits::default(),
            &Enricher::new(),
            &mut events,
        )
        .unwrap();
        (parsed.format, events, parsed.stats.malformed)
    }

    #[test]
    fn generated_vpc_flow_parquet_holds_the_text_records() {
        // Two text chunks: the conversion carries on across them.
        let bytes = write_vpc_flow_parquet(12_001, 3, Codec::Snappy, Vec::new()).unwrap();
        let (format, events, malformed) = read(bytes.clone());
        assert_eq!(
            (format, events.len(), malformed),
            (Format::VpcFlow, 12_001, 0)
        );
        // NODATA/SKIPDATA records have no addresses; the others all do.
        let with_ip = events
            .iter()
            .filter(|e| e.get_str("source.ip").is_some())
            .count();
        assert!(with_ip > events.len() * 9 / 10, "{with_ip}");
        let again = write_vpc_flow_parquet(12_001, 3, Codec::Snappy, Vec::new()).unwrap();
        assert_eq!(again, bytes);
    }

    #[test]
    fn generated_ocsf_parquet_maps_as_network_activity() {
        let bytes = write_ocsf_parquet(1000, 1, Codec::Zstd, Vec::new()).unwrap();
        let (format, events, malformed) = read(bytes);
        assert_eq!(
            (format, events.len(), malformed),
            (Format::SecurityLake, 1000, 0)
        );
        assert!(
            events
                .iter()
                .all(|e| e.get_str("network.transport").is_some())
        );
        assert!(events.iter().all(|e| e.get("destination.port").is_some()));
    }
}
