//! Key layouts and content signatures of CloudWatch Logs (Firehose and export tasks),
//! AWS Config, Redshift audit logs, EventBridge events and Security Hub findings.
//! Called first by [`crate::detect::by_key`] and [`crate::detect::by_content`]; kept
//! here so the registry can take them over as one block.

use crate::Format;
use crate::formats::aws_config::WRITABILITY_CHECK;
use crate::formats::cloudwatch::export_log_stream;

/// AWS delivery key layouts of the new sources.
pub(crate) fn new_sources_by_key(key: &str, name: &str) -> Option<(Format, &'static str)> {
    if key.contains("/Config/")
        && (key.contains("/ConfigHistory/")
            || key.contains("/ConfigSnapshot/")
            || name.contains(WRITABILITY_CHECK))
    {
        return Some((Format::AwsConfig, "AWSLogs/<account>/Config/"));
    }
    if key.contains("/redshift/")
        && (name.contains("_connectionlog_")
            || name.contains("_userlog_")
            || name.contains("_useractivitylog_"))
    {
        return Some((Format::RedshiftAudit, "AWSLogs/<account>/redshift/"));
    }
    if export_log_stream(key).is_some() {
        return Some((
            Format::CloudWatchLogs,
            "<prefix>/<export task id>/<log stream>/000000.gz",
        ));
    }
    None
}

/// Content signatures of the new sources (the first line of the decompressed object).
pub(crate) fn new_sources_by_content(head: &[u8]) -> Option<(Format, &'static str)> {
    if head.starts_with(&[0x1f, 0x8b]) {
        // Still gzip after the daemon's decompression: Firehose compressed CloudWatch
        // Logs' own gzip documents again.
        return Some((
            Format::CloudWatchLogs,
            "gzip inside gzip (Firehose over CloudWatch Logs)",
        ));
    }
    let text = String::from_utf8_lossy(head);
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())?
        .trim_start_matches('\u{feff}')
        .trim_start();
    if first.starts_with('{') || first.starts_with('[') {
        let has = |k: &str| first.contains(k);
        if has("\"messageType\"") && (has("\"logEvents\"") || has("\"logGroup\"")) {
            return Some((
                Format::CloudWatchLogs,
                "CloudWatch Logs subscription document",
            ));
        }
        if has("\"detail-type\"") && has("\"source\"") && has("\"account\"") {
            return Some((Format::EventBridge, "EventBridge event"));
        }
        if has("\"SchemaVersion\"") && has("\"ProductArn\"") {
            return Some((Format::SecurityHub, "ASFF finding"));
        }
        if has("\"configurationItems\"") {
            return Some((Format::AwsConfig, "{\"configurationItems\": [...]}"));
        }
        return None;
    }
    if first.starts_with('\'') && first.contains(" UTC [ db=") {
        return Some((Format::RedshiftAudit, "Redshift user activity record"));
    }
    let event = first.split('|').next().unwrap_or("").trim_end();
    if first.contains('|')
        && matches!(
            event,
            "authenticated"
                | "authentication failure"
                | "initiating session"
                | "disconnecting session"
                | "set application_name"
        )
    {
        return Some((Format::RedshiftAudit, "Redshift connection record"));
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::{Decision, Format, FormatDetector};

    fn format(key: &str, head: &[u8]) -> Format {
        match FormatDetector::default().decide("b", key, head) {
            Decision::Parse { format, .. } => format,
            Decision::Skip { reason } => panic!("skipped: {reason}"),
        }
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
                "AWSLogs/123456789012/Config/ConfigWritabilityCheckFile",
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

    fn parse_sample(format: Format, text: &str) -> (Vec<serde_json::Value>, crate::ParseStats) {
        let mut out = Vec::new();
        let stats = crate::parse_object(
            format,
            &mut text.as_bytes(),
            &crate::ObjectInfo::default(),
            &crate::ParseOptions::default(),
            &crate::Enricher::new(),
            &mut out,
        )
        .expect("in-memory input");
        (out.iter().map(crate::Event::to_json).collect(), stats)
    }

    /// The sample logs the demo uploads: recognised by content, every record mapped.
    #[test]
    fn sample_logs_are_recognised_and_parse_cleanly() {
        let samples = [
            (
                Format::CloudWatchLogs,
                include_str!("../../../../tests/samples/cloudwatch-logs.log"),
                22,
            ),
            (
                Format::AwsConfig,
                include_str!("../../../../tests/samples/aws-config.log"),
                3,
            ),
            (
                Format::RedshiftAudit,
                include_str!("../../../../tests/samples/redshift-audit.log"),
                4,
            ),
            (
                Format::EventBridge,
                include_str!("../../../../tests/samples/eventbridge.log"),
                3,
            ),
            (
                Format::SecurityHub,
                include_str!("../../../../tests/samples/securityhub.log"),
                2,
            ),
        ];
        for (want, text, count) in samples {
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
        let samples = [
            (
                Format::CloudWatchLogs,
                include_str!("../../../../tests/samples/cloudwatch-logs.log"),
            ),
            (
                Format::AwsConfig,
                include_str!("../../../../tests/samples/aws-config.log"),
            ),
            (
                Format::RedshiftAudit,
                include_str!("../../../../tests/samples/redshift-audit.log"),
            ),
            (
                Format::EventBridge,
                include_str!("../../../../tests/samples/eventbridge.log"),
            ),
            (
                Format::SecurityHub,
                include_str!("../../../../tests/samples/securityhub.log"),
            ),
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (format, text) in samples {
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
                        .splice(cut..cut, samples[round % 5].1.bytes().take(300))
                        .for_each(drop),
                }
                let mut out = Vec::new();
                let stats = crate::parse_object(
                    format,
                    &mut &bytes[..],
                    &crate::ObjectInfo::default(),
                    &crate::ParseOptions::default(),
                    &crate::Enricher::new(),
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
}
