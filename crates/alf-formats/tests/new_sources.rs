//! The sources CloudWatch Logs (Firehose, export tasks), AWS Config, Redshift audit,
//! EventBridge and Security Hub through the public API: detection from keys and first
//! lines, the sample logs the demo uploads, and damaged copies of them.

use alf_formats::{Decision, Format, FormatDetector};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn format(key: &str, head: &[u8]) -> Format {
    match FormatDetector::default().decide("b", key, head) {
        Decision::Parse { format, .. } => format,
        other => panic!("not parsed: {other:?}"),
    }
}

#[test]
fn config_writability_check_is_skipped() {
    let d = FormatDetector::default();
    assert!(matches!(
        d.decide(
            "b",
            "AWSLogs/123456789012/Config/ConfigWritabilityCheckFile",
            b"x"
        ),
        Decision::Skip { .. }
    ));
}

#[test]
fn key_layouts() {
    for (key, want) in [
        (
            "AWSLogs/123456789012/Config/us-east-1/2024/5/1/ConfigHistory/123456789012_Config_us-east-1_ConfigHistory_AWS::S3::Bucket_20240501T120000Z_20240501T130000Z_1.json.gz",
            Format::AwsConfig,
        ),
        (
            "AWSLogs/123456789012/Config/us-east-1/2024/5/1/ConfigSnapshot/123456789012_Config_us-east-1_ConfigSnapshot_20240501T120000Z_0a1b2c3d.json.gz",
            Format::AwsConfig,
        ),
        (
            "AWSLogs/123456789012/redshift/us-east-1/2024/05/01/123456789012_redshift_us-east-1_analytics_connectionlog_2024-05-01T12:00.gz",
            Format::RedshiftAudit,
        ),
        (
            "exportedlogs/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d/web-1/000000.gz",
            Format::CloudWatchLogs,
        ),
    ] {
        assert_eq!(format(key, b""), want, "{key}");
    }
}

#[test]
fn content() {
    for (head, want) in [
        (&b"\x1f\x8b\x08\x00"[..], Format::CloudWatchLogs),
        (
            br#"{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","#,
            Format::CloudWatchLogs,
        ),
        (
            br#"{"version":"0","id":"x","detail-type":"GuardDuty Finding","source":"aws.guardduty","account":"1""#,
            Format::EventBridge,
        ),
        (br#"{"SchemaVersion":"2018-10-08","ProductArn":"p"}"#, Format::SecurityHub),
        (br#"{"fileVersion":"1.0","configurationItems":[{"#, Format::AwsConfig),
        (
            b"'2024-05-01T12:02:00Z UTC [ db=dev user=admin pid=1 userid=100 xid=2 ]' LOG: select 1;",
            Format::RedshiftAudit,
        ),
        (b"authenticated |Wed, 1 May 2024 12:00:00:123|::ffff:10.0.0.5 |52345 |", Format::RedshiftAudit),
    ] {
        assert_eq!(format("unknown/key", head), want, "{}", String::from_utf8_lossy(head));
    }
}

fn parse_sample(format: Format, text: &str) -> (Vec<serde_json::Value>, alf_formats::ParseStats) {
    let mut out = Vec::new();
    let stats = alf_formats::parse_object(
        format,
        &mut text.as_bytes(),
        &alf_formats::ObjectInfo::default(),
        &alf_formats::ParseOptions::default(),
        &alf_formats::Enricher::new(),
        &mut out,
    )
    .expect("in-memory input");
    (out.iter().map(alf_formats::Event::to_json).collect(), stats)
}

/// The sample logs the demo uploads, with the events each holds.
const SAMPLES: [(Format, &str, u64); 5] = [
    (
        Format::CloudWatchLogs,
        include_str!("../../../tests/samples/cloudwatch-logs.log"),
        22,
    ),
    (
        Format::AwsConfig,
        include_str!("../../../tests/samples/aws-config.log"),
        3,
    ),
    (
        Format::RedshiftAudit,
        include_str!("../../../tests/samples/redshift-audit.log"),
        4,
    ),
    (
        Format::EventBridge,
        include_str!("../../../tests/samples/eventbridge.log"),
        3,
    ),
    (
        Format::SecurityHub,
        include_str!("../../../tests/samples/securityhub.log"),
        2,
    ),
];

/// The sample logs: recognised by content, every record mapped.
#[test]
fn sample_logs_are_recognised_and_parse_cleanly() {
    for (want, text, count) in SAMPLES {
        let detected = format(
            "firehose/2024/05/01/12/stream-1-2024-05-01-12-00-00-x",
            text.as_bytes(),
        );
        if want != Format::SecurityHub {
            // A Security Hub batch is an EventBridge event: either reader maps it.
            assert_eq!(detected, want, "{want}");
        }
        let (events, stats) = parse_sample(want, text);
        assert_eq!((stats.events, stats.malformed), (count, 0), "{want}");
        for e in &events {
            assert_eq!(e["event"]["dataset"], want.dataset(), "{want}: {e}");
            assert!(e["@timestamp"].is_string(), "{want}: {e}");
        }
    }
}

/// Damaged copies of the samples (cut short, bytes flipped, lines swapped in from
/// another format) never fail the object: every record still becomes an event.
#[test]
fn damaged_samples_never_fail_the_object() {
    let mut rng = StdRng::seed_from_u64(0x9E37_79B9_7F4A_7C15);
    let mut next = move || rng.next_u64();
    for (format, text, _) in SAMPLES {
        for round in 0..60 {
            let mut bytes = text.as_bytes().to_vec();
            let cut = (next() as usize) % (bytes.len() + 1);
            match round % 3 {
                0 => bytes.truncate(cut),
                1 => {
                    for _ in 0..4 {
                        let i = (next() as usize) % bytes.len();
                        bytes[i] = (next() & 0xff) as u8;
                    }
                }
                _ => bytes
                    .splice(cut..cut, SAMPLES[round % SAMPLES.len()].1.bytes().take(300))
                    .for_each(drop),
            }
            let mut out = Vec::new();
            let stats = alf_formats::parse_object(
                format,
                &mut &bytes[..],
                &alf_formats::ObjectInfo::default(),
                &alf_formats::ParseOptions::default(),
                &alf_formats::Enricher::new(),
                &mut out,
            )
            .unwrap_or_else(|e| panic!("{format} round {round}: {e}"));
            assert_eq!(stats.events, out.len() as u64, "{format} round {round}");
            for e in &out {
                let json: serde_json::Value =
                    serde_json::from_str(&e.to_json_string(None)).unwrap();
                assert!(json["event"]["dataset"].is_string());
            }
        }
    }
}
