//! Parquet objects the tests write themselves (with [`super::write`]) and read back.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value as J, json};

use super::write::{Codec, OCSF_SCHEMA, vpc_flow_text_to_parquet, write_json_records};
use super::*;
use crate::{Enricher, Format, ObjectInfo, ParseOptions, assert_fields, parse_object};

const VPC_SAMPLE: &str = include_str!("../../../../tests/samples/vpc-flow.log");
const CLOUDFRONT_SAMPLE: &str = include_str!("../../../../tests/samples/cloudfront.log");

fn object(key: &str) -> ObjectInfo {
    ObjectInfo {
        bucket: "logs".into(),
        key: key.into(),
        version: "v1".into(),
    }
}

fn read(
    bytes: Vec<u8>,
    key: &str,
    limits: &ParquetLimits,
) -> Result<(ParquetParsed, Vec<J>), ParquetError> {
    let mut out = Vec::new();
    let parsed = parse_parquet(
        Bytes::from(bytes),
        None,
        &object(key),
        &ParseOptions::default(),
        limits,
        &Enricher::new(),
        &mut out,
    )?;
    Ok((parsed, out.iter().map(Event::to_json).collect()))
}

fn text_events(format: Format, text: &str, key: &str) -> Vec<J> {
    let mut out = Vec::new();
    parse_object(
        format,
        &mut text.as_bytes(),
        &object(key),
        &ParseOptions::default(),
        &Enricher::new(),
        &mut out,
    )
    .unwrap();
    out.iter().map(Event::to_json).collect()
}

/// Drops what depends on where a record sits in its object (ids hash the record
/// number: a line number for text, a row number for Parquet; `log.offset` likewise).
fn positionless(mut events: Vec<J>) -> Vec<J> {
    for e in &mut events {
        let event = e["event"].as_object_mut().unwrap();
        assert_eq!(event.remove("id").unwrap().as_str().unwrap().len(), 32);
        e["log"].as_object_mut().unwrap().remove("offset").unwrap();
    }
    events
}

fn vpc_parquet(codec: Codec, rows_per_group: usize) -> Vec<u8> {
    let (bytes, rows) =
        vpc_flow_text_to_parquet(VPC_SAMPLE, Vec::new(), rows_per_group, codec).unwrap();
    assert_eq!(rows, 10);
    bytes
}

#[test]
fn vpc_flow_parquet_gives_the_events_of_its_text_twin() {
    // One key for both forms: every field derived from the object is the same.
    let key = "AWSLogs/123456789012/vpcflowlogs/eu-west-1/2024/06/16/x.log";
    let text = text_events(Format::VpcFlow, VPC_SAMPLE, key);
    assert_eq!(text.len(), 10);
    for codec in [Codec::Snappy, Codec::Gzip, Codec::Zstd, Codec::Uncompressed] {
        let bytes = vpc_parquet(codec, 3);
        assert!(is_parquet(&bytes));
        let (parsed, events) = read(bytes, key, &ParquetLimits::default()).unwrap();
        assert_eq!(parsed.format, Format::VpcFlow);
        assert_eq!(parsed.row_groups, 4, "10 rows in groups of 3");
        assert_eq!(
            (
                parsed.stats.records,
                parsed.stats.events,
                parsed.stats.malformed
            ),
            (10, 10, 0)
        );
        assert_eq!(
            positionless(events),
            positionless(text.clone()),
            "{codec:?}"
        );
    }
}

#[test]
fn vpc_flow_parquet_nulls_are_absent_and_ids_are_per_row() {
    let (_, events) = read(
        vpc_parquet(Codec::Snappy, 100),
        "k.parquet",
        &ParquetLimits::default(),
    )
    .unwrap();
    // Row 4 of the sample has `-` for instance-id and tcp-flags: null columns.
    assert!(events[3]["cloud"].get("instance").is_none());
    assert!(events[3]["aws"]["vpcflow"].get("tcp_flags").is_none());
    assert_eq!(events[0]["log"]["offset"], 0);
    assert_eq!(events[9]["log"]["offset"], 9);
    let ids: std::collections::HashSet<&str> = events
        .iter()
        .map(|e| e["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 10);
    // Same object, same ids: a redelivery deduplicates.
    let (_, again) = read(
        vpc_parquet(Codec::Zstd, 2),
        "k.parquet",
        &ParquetLimits::default(),
    )
    .unwrap();
    assert_eq!(events[5]["event"]["id"], again[5]["event"]["id"]);
}

#[test]
fn a_row_that_cannot_be_mapped_is_forwarded_raw() {
    let schema = "message m { optional binary srcaddr (UTF8); optional binary dstaddr (UTF8); optional binary protocol (UTF8); optional int64 start; }";
    let rows = [
        json!({"srcaddr": "10.0.0.1", "dstaddr": "10.0.0.2", "protocol": "6", "start": 1718524800}),
        json!({"srcaddr": "10.0.0.1", "dstaddr": "10.0.0.2", "protocol": "tcp?", "start": 1718524800}),
    ];
    let bytes = write_json_records(Vec::new(), schema, &rows, 10, Codec::Snappy).unwrap();
    let (parsed, events) = read(bytes, "k.parquet", &ParquetLimits::default()).unwrap();
    assert_eq!(parsed.format, Format::VpcFlow);
    assert_eq!((parsed.stats.records, parsed.stats.malformed), (2, 1));
    assert_eq!(events[0]["network"]["transport"], "tcp");
    assert_eq!(events[1]["event"]["kind"], "pipeline_error");
    assert_eq!(events[1]["tags"], json!(["_parse_failure"]));
    let original: J =
        serde_json::from_str(events[1]["event"]["original"].as_str().unwrap()).unwrap();
    assert_eq!(original["protocol"], "tcp?");
}

/// The W3C sample as the Parquet file CloudFront v2 would write: columns named like
/// `cs_host` for `cs(Host)`, counts and status as integers.
fn cloudfront_parquet() -> Vec<u8> {
    let mut lines = CLOUDFRONT_SAMPLE
        .lines()
        .filter(|l| !l.starts_with("#Version"));
    let names: Vec<&str> = lines
        .next()
        .unwrap()
        .trim_start_matches("#Fields:")
        .split_whitespace()
        .collect();
    let column = |n: &str| crate::util::field_name(n).trim_end_matches('_').to_owned();
    let ints = ["sc-status", "sc-bytes", "cs-bytes", "c-port"];
    let mut schema = String::from("message cloudfront {\n");
    for n in &names {
        if ints.contains(n) {
            schema.push_str(&format!("optional int64 {};\n", column(n)));
        } else {
            schema.push_str(&format!("optional binary {} (UTF8);\n", column(n)));
        }
    }
    schema.push('}');
    let rows: Vec<J> = lines
        .map(|line| {
            J::Object(
                names
                    .iter()
                    .zip(line.split('\t'))
                    .map(|(n, v)| {
                        let v = if v == "-" {
                            J::Null
                        } else if ints.contains(n) {
                            J::from(v.parse::<i64>().unwrap())
                        } else {
                            J::String(v.to_owned())
                        };
                        (column(n), v)
                    })
                    .collect(),
            )
        })
        .collect();
    write_json_records(Vec::new(), &schema, &rows, 4, Codec::Snappy).unwrap()
}

#[test]
fn cloudfront_parquet_maps_like_the_w3c_form() {
    let key = "cloudfront/E1234567890ABC/2024/03/12/09/part-0.parquet";
    let text = text_events(Format::CloudFront, CLOUDFRONT_SAMPLE, key);
    let (parsed, events) = read(cloudfront_parquet(), key, &ParquetLimits::default()).unwrap();
    assert_eq!(parsed.format, Format::CloudFront);
    assert_eq!(parsed.stats.malformed, 0);
    assert_eq!(events.len(), text.len());
    assert!(events[0]["user_agent"]["original"].as_str().is_some());
    assert_eq!(positionless(events), positionless(text));
}

fn common(class_uid: u32, source: &str) -> J {
    json!({
        "class_uid": class_uid, "time": 1718524860000i64, "severity_id": 1, "status_id": 1,
        "metadata": {"version": "1.1.0", "product": {"name": source, "vendor_name": "AWS"},
                     "profiles": ["cloud", "datetime"]},
        "cloud": {"region": "eu-west-1", "provider": "AWS", "account": {"uid": "123456789012"}},
        "accountid": "123456789012", "region": "eu-west-1", "eventday": "20240616",
    })
}

fn merged(mut base: J, extra: J) -> J {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn security_lake_records() -> Vec<J> {
    vec![
        merged(
            common(3005, "CloudTrail"),
            json!({
                "activity_id": 1, "activity_name": "Create", "status_id": 2, "status_detail": "AccessDenied",
                "api": {"operation": "CreateBucket", "service": {"name": "s3.amazonaws.com"},
                        "response": {"error": "AccessDenied", "message": "Access Denied"}},
                "actor": {"user": {"name": "alice", "uid": "AIDAEXAMPLE", "type": "IAMUser", "account": {"uid": "123456789012"}}},
                "src_endpoint": {"ip": "198.51.100.7"},
                "http_request": {"user_agent": "aws-cli/2.15.0"},
            }),
        ),
        merged(
            common(4001, "Amazon VPC"),
            json!({
                "activity_id": 6, "action_id": 2, "action": "Denied",
                "src_endpoint": {"ip": "203.0.113.77", "port": 49761, "instance_uid": "i-0fedcba9876543210", "vpc_uid": "vpc-0abc"},
                "dst_endpoint": {"ip": "10.0.1.15", "port": 3389},
                "connection_info": {"protocol_num": 6, "direction_id": 1, "tcp_flags": 2},
                "traffic": {"bytes": 40, "packets": 1}, "start_time": 1718524800000i64, "end_time": 1718524860000i64,
            }),
        ),
        merged(
            common(4003, "Route 53"),
            json!({
                "activity_id": 2, "activity_name": "Response",
                "src_endpoint": {"ip": "10.0.1.15", "port": 53211},
                "query": {"hostname": "example.com.", "type": "A", "class": "IN", "packet_uid": 4242},
                "rcode": "NoError", "connection_info": {"protocol_num": 17},
                "answers": [{"rdata": "93.184.216.34", "type": "A", "class": "IN", "ttl": 60},
                            {"rdata": "93.184.216.35", "type": "A", "class": "IN", "ttl": 60}],
            }),
        ),
        merged(
            common(4002, "AWS WAF"),
            json!({
                "activity_id": 3, "activity_name": "Get", "action": "Blocked",
                "src_endpoint": {"ip": "192.0.2.44"},
                "http_request": {"http_method": "GET", "user_agent": "curl/8.4.0", "version": "HTTP/1.1",
                                 "url": {"hostname": "www.example.com", "path": "/admin", "query_string": "a=1"}},
                "http_response": {"code": 403},
            }),
        ),
        merged(
            common(2004, "Security Hub"),
            json!({
                "activity_id": 1, "activity_name": "Create", "severity_id": 4,
                "finding_info": {"uid": "arn:aws:securityhub:eu-west-1:123456789012:finding/1", "title": "S3 bucket is public",
                                 "desc": "The bucket allows public read.", "types": ["Software and Configuration Checks"]},
                "resources": [{"uid": "arn:aws:s3:::my-bucket", "type": "AwsS3Bucket", "region": "eu-west-1"}],
            }),
        ),
    ]
}

#[test]
fn security_lake_classes_map_to_ecs_and_keep_the_ocsf_record() {
    let records = security_lake_records();
    let bytes = write_json_records(Vec::new(), OCSF_SCHEMA, &records, 2, Codec::Zstd).unwrap();
    let key =
        "ext/aws/VPC_FLOW/2.0/region=eu-west-1/accountId=123456789012/eventDay=20240616/x.parquet";
    let (parsed, events) = read(bytes, key, &ParquetLimits::default()).unwrap();
    assert_eq!(parsed.format, Format::SecurityLake);
    assert_eq!((parsed.stats.records, parsed.stats.malformed), (5, 0));
    for e in &events {
        assert_eq!(e["@timestamp"], "2024-06-16T08:01:00Z");
        assert_eq!(e["event"]["dataset"], "aws.security_lake");
        assert_eq!(e["cloud"]["account"]["id"], "123456789012");
        assert_eq!(e["cloud"]["region"], "eu-west-1");
        assert_eq!(
            e["aws"]["security_lake"]["metadata"]["profiles"],
            json!(["cloud", "datetime"])
        );
    }
    let [api, net, dns, http, finding] = &events[..] else {
        panic!("{events:?}")
    };
    assert_fields(
        api,
        json!({
            "event": {
                "action": "CreateBucket",
                "provider": "s3.amazonaws.com",
                "outcome": "failure",
                "type": ["creation"],
            },
            "user": {"name": "alice"},
            "source": {"ip": "198.51.100.7"},
            "error": {"code": "AccessDenied"},
            "user_agent": {"original": "aws-cli/2.15.0"},
        }),
    );

    // The record is kept whole, nested objects included.
    assert_fields(
        net,
        json!({
            "source": {"ip": "203.0.113.77", "port": 49761},
            "destination": {"port": 3389},
            "network": {"transport": "tcp", "direction": "ingress", "bytes": 40},
            "event": {"type": ["connection", "denied"], "start": "2024-06-16T08:00:00Z"},
            "cloud": {"instance": {"id": "i-0fedcba9876543210"}},
            "related": {"ip": ["203.0.113.77", "10.0.1.15"]},
            "aws": {"security_lake": {"src_endpoint": {"vpc_uid": "vpc-0abc"}}},
        }),
    );

    assert_fields(
        dns,
        json!({
            "dns": {
                "question": {"name": "example.com", "type": "A"},
                "response_code": "NoError",
                "id": "4242",
                "resolved_ip": ["93.184.216.34", "93.184.216.35"],
                "answers": {"1": {"ttl": 60}},
            },
            "network": {"transport": "udp"},
        }),
    );

    assert_fields(
        http,
        json!({
            "http": {"request": {"method": "GET"}, "response": {"status_code": 403}},
            "url": {"domain": "www.example.com", "path": "/admin"},
            "event": {"action": "Blocked"},
            "user_agent": {"original": "curl/8.4.0"},
        }),
    );

    assert_eq!(finding["event"]["kind"], "alert");
    assert_eq!(finding["rule"]["name"], "S3 bucket is public");
    assert_eq!(finding["message"], "S3 bucket is public");
    assert_eq!(finding["event"]["severity"], 4);
    assert_eq!(
        finding["aws"]["security_lake"]["resources"][0]["uid"],
        "arn:aws:s3:::my-bucket"
    );
}

#[test]
fn security_lake_json_lines_map_like_the_parquet_rows() {
    let records = security_lake_records();
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    let from_text = text_events(Format::SecurityLake, &text, "k");
    let bytes = write_json_records(Vec::new(), OCSF_SCHEMA, &records, 5, Codec::Snappy).unwrap();
    let (_, from_parquet) = read(bytes, "k", &ParquetLimits::default()).unwrap();
    // Parquet rows carry every schema column (nulls for the absent ones); compare the
    // ECS fields, not the kept records.
    let strip = |events: Vec<J>| -> Vec<J> {
        positionless(events)
            .into_iter()
            .map(|mut e| {
                e["aws"].as_object_mut().unwrap().remove("security_lake");
                e
            })
            .collect()
    };
    assert_eq!(strip(from_parquet), strip(from_text));
}

fn error_kind(bytes: Vec<u8>, limits: &ParquetLimits) -> ParquetError {
    match read(bytes, "AWSLogs/1/vpcflowlogs/x.log.parquet", limits) {
        Err(e) => {
            assert_eq!(e.object, "s3://logs/AWSLogs/1/vpcflowlogs/x.log.parquet");
            assert!(
                e.to_string()
                    .starts_with("Parquet object s3://logs/AWSLogs/1/vpcflowlogs/x.log.parquet: ")
            );
            e
        }
        Ok((parsed, _)) => panic!("read {parsed}"),
    }
}

#[test]
fn truncated_files_are_unreadable_not_panics() {
    let bytes = vpc_parquet(Codec::Snappy, 3);
    for cut in [
        0,
        3,
        4,
        8,
        100,
        bytes.len() / 2,
        bytes.len() - 9,
        bytes.len() - 1,
    ] {
        let e = error_kind(bytes[..cut].to_vec(), &ParquetLimits::default());
        assert!(
            matches!(e.kind, ParquetErrorKind::Unreadable(_)),
            "cut at {cut}: {e}"
        );
    }
}

#[test]
fn a_wrong_footer_is_unreadable() {
    let mut bytes = vpc_parquet(Codec::Snappy, 3);
    let n = bytes.len();
    // Footer length pointing before the start of the file.
    bytes[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = error_kind(bytes.clone(), &ParquetLimits::default());
    assert!(matches!(e.kind, ParquetErrorKind::Unreadable(_)), "{e}");
    // Garbage in the footer metadata itself.
    let len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap());
    let _ = len;
    let mut garbled = vpc_parquet(Codec::Snappy, 3);
    for b in &mut garbled[n - 60..n - 8] {
        *b = 0xff;
    }
    let e = error_kind(garbled, &ParquetLimits::default());
    assert!(matches!(e.kind, ParquetErrorKind::Unreadable(_)), "{e}");
    // Not the magic at the end.
    let mut magic = vpc_parquet(Codec::Snappy, 3);
    magic[n - 1] = b'X';
    let e = error_kind(magic, &ParquetLimits::default());
    assert!(matches!(e.kind, ParquetErrorKind::Unreadable(_)), "{e}");
}

#[test]
fn an_unknown_schema_names_its_columns() {
    let rows = [json!({"user": "bob", "score": 3})];
    let bytes = write_json_records(
        Vec::new(),
        "message m { optional binary user (UTF8); optional int32 score; }",
        &rows,
        10,
        Codec::Snappy,
    )
    .unwrap();
    let e = error_kind(bytes, &ParquetLimits::default());
    assert!(matches!(e.kind, ParquetErrorKind::UnknownSchema(_)), "{e}");
    assert!(e.to_string().contains("columns: user, score"), "{e}");
}

#[test]
fn a_row_group_over_the_limit_is_refused_before_any_event() {
    let limits = ParquetLimits {
        max_row_group_bytes: 64,
    };
    let mut out = Vec::new();
    let result = parse_parquet(
        Bytes::from(vpc_parquet(Codec::Snappy, 5)),
        None,
        &object("x.parquet"),
        &ParseOptions::default(),
        &limits,
        &Enricher::new(),
        &mut out,
    );
    let e = result.unwrap_err();
    assert!(
        matches!(
            e.kind,
            ParquetErrorKind::RowGroupTooLarge {
                index: 0,
                limit: 64,
                ..
            }
        ),
        "{e}"
    );
    assert!(out.is_empty());
}

#[test]
fn a_forced_format_must_match_the_schema() {
    let mut out = Vec::new();
    let e = parse_parquet(
        Bytes::from(vpc_parquet(Codec::Snappy, 5)),
        Some(Format::Elb),
        &object("x.parquet"),
        &ParseOptions::default(),
        &ParquetLimits::default(),
        &Enricher::new(),
        &mut out,
    )
    .unwrap_err();
    assert!(
        matches!(e.kind, ParquetErrorKind::NotColumnar(Format::Elb)),
        "{e}"
    );
}

#[test]
fn keys_of_parquet_deliveries_are_recognised() {
    assert!(is_parquet_key(
        "AWSLogs/123/vpcflowlogs/eu-west-1/2024/06/16/123_vpcflowlogs_eu-west-1_fl-1_20240616T0800Z_abc.log.parquet"
    ));
    assert!(is_parquet_key(
        "AWSLogs/aws-account-id=123/aws-service=vpcflowlogs/aws-region=eu-west-1/year=2024/month=06/day=16/x.log.parquet"
    ));
    assert!(is_parquet_key(
        "ext/aws/ROUTE53/2.0/region=eu-west-1/accountId=123456789012/eventDay=20240616/f.gz.parquet"
    ));
    assert!(!is_parquet_key(
        "AWSLogs/123/vpcflowlogs/eu-west-1/2024/06/16/x.log.gz"
    ));
    // Text logs are written under the Hive-style layout too.
    assert!(!is_parquet_key(
        "AWSLogs/aws-account-id=123/aws-service=vpcflowlogs/aws-region=eu-west-1/x.log.gz"
    ));
}

/// Deterministic byte flips all over valid files (footer, page headers, pages): every
/// outcome is events or an error naming the object, never a panic or a hang.
#[test]
fn damaged_bytes_give_errors_or_events_never_panics() {
    let mut rng = StdRng::seed_from_u64(0x9E37_79B9_7F4A_7C15);
    let mut next = move || rng.next_u64();
    let records = security_lake_records();
    let files = [
        vpc_parquet(Codec::Snappy, 3),
        vpc_parquet(Codec::Gzip, 4),
        write_json_records(Vec::new(), OCSF_SCHEMA, &records, 2, Codec::Zstd).unwrap(),
    ];
    let mut outcomes = [0usize; 2];
    for file in &files {
        for _ in 0..250 {
            let mut bytes = file.clone();
            for _ in 0..=(next() % 4) {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
            match read(bytes, "fuzzed.parquet", &ParquetLimits::default()) {
                Ok((parsed, events)) => {
                    assert_eq!(parsed.stats.events as usize, events.len());
                    outcomes[0] += 1;
                }
                Err(e) => {
                    assert_eq!(e.object, "s3://logs/fuzzed.parquet");
                    outcomes[1] += 1;
                }
            }
        }
    }
    // Both kinds of outcome happen: the flips reach data and structure alike.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}
