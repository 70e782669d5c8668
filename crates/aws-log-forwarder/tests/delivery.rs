//! End-to-end delivery against LocalStack: S3 object -> S3 notification -> SQS -> the
//! daemon (in-process) -> the test intake, with the real CloudFormation stack.
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use alf_formats::Format;
use aws_sdk_s3::types::{Event, NotificationConfiguration, TopicConfiguration};
use common::intake::TestIntake;
use common::localstack::{INTAKE_KEY, TestStack};
use common::{
    PIPELINE_TIMEOUT, RunningDaemon, cloudfront_log, event_id, events_of_key, field, has_tag,
    parse_locally_as, start_forwarding, str_field, wait_for_records, wait_for_records_then_stop,
};
use serde_json::Value;

const CLOUDFRONT_KEY: &str = "cloudfront/E2TESTDIST0001.2024-05-01-12.a1b2c3d4.gz";

fn sorted_by_offset(mut events: Vec<Value>) -> Vec<Value> {
    events.sort_by_key(|e| field(e, "log.offset").and_then(Value::as_u64));
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudfront_object_arrives_as_ecs_events_and_its_message_is_deleted() {
    let (stack, intake, daemon) = start_forwarding("cloudfront-e2e").await;

    stack
        .put_gzip(CLOUDFRONT_KEY, cloudfront_log(0).as_bytes())
        .await;
    let events = wait_for_records(&intake, CLOUDFRONT_KEY, 3, PIPELINE_TIMEOUT).await;
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;

    assert_eq!(
        events.len(),
        3,
        "three records, delivered once each (headers produce no events)"
    );
    let events = sorted_by_offset(events);
    for e in &events {
        assert_eq!(str_field(e, "event.dataset"), Some("aws.cloudfront_logs"));
        assert_eq!(str_field(e, "event.module"), Some("aws"));
        assert_eq!(
            str_field(e, "aws.s3.bucket.name"),
            Some(stack.bucket.as_str())
        );
        assert_eq!(str_field(e, "aws.s3.object.key"), Some(CLOUDFRONT_KEY));
        assert!(!has_tag(e, "_parse_failure"), "parse failure: {e}");
        let id = event_id(e);
        assert!(
            id.len() >= 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "event.id should be a deterministic hash, got {id:?}"
        );
    }
    let ids: BTreeSet<String> = events.iter().map(event_id).collect();
    assert_eq!(ids.len(), 3, "event ids must be distinct per record");
    // Field for field what the library makes of this object version (bucket, key and
    // ETag feed event.id): the daemon adds, drops and changes nothing.
    let reference = parse_locally_as(
        Format::CloudFront,
        &stack.bucket,
        CLOUDFRONT_KEY,
        &stack.etag(CLOUDFRONT_KEY).await,
        cloudfront_log(0).as_bytes(),
    );
    assert_eq!(events, sorted_by_offset(reference));

    let ipv6 = &events[0];
    assert_eq!(str_field(ipv6, "@timestamp"), Some("2024-05-01T12:00:01Z"));
    assert_eq!(
        str_field(ipv6, "source.ip"),
        Some("2001:db8:85a3::8a2e:370:7334")
    );
    assert_eq!(
        field(ipv6, "http.response.status_code").and_then(Value::as_u64),
        Some(200)
    );
    assert_eq!(str_field(ipv6, "http.request.method"), Some("GET"));
    assert_eq!(str_field(ipv6, "url.path"), Some("/index.html"));
    assert_eq!(str_field(ipv6, "user_agent.name"), Some("Safari"));
    assert_eq!(str_field(ipv6, "user_agent.version"), Some("17.1"));
    assert_eq!(
        str_field(ipv6, "user_agent.original"),
        Some(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 \
             (KHTML, like Gecko) Version/17.1 Safari/605.1.15"
        ),
        "the URL-encoded user agent is decoded"
    );

    let denied = &events[1];
    assert_eq!(
        str_field(denied, "@timestamp"),
        Some("2024-05-01T12:00:02Z")
    );
    assert_eq!(str_field(denied, "source.ip"), Some("192.0.2.10"));
    assert_eq!(
        field(denied, "http.response.status_code").and_then(Value::as_u64),
        Some(403)
    );
    assert_eq!(str_field(denied, "event.outcome"), Some("failure"));
    assert_eq!(str_field(denied, "user_agent.name"), Some("curl"));

    let forwarded = &events[2];
    assert_eq!(str_field(forwarded, "source.ip"), Some("198.51.100.7"));
    assert_eq!(
        str_field(forwarded, "network.forwarded_ip"),
        Some("203.0.113.9")
    );
    assert_eq!(str_field(forwarded, "user_agent.name"), Some("Chrome"));

    // What went over the wire: Sekoia's /batch protocol, gzip, the key, our User-Agent.
    let requests = intake.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.path, "/batch", "{r:?}");
        assert_eq!(r.intake_key.as_deref(), Some(INTAKE_KEY), "{r:?}");
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{r:?}");
        assert!(
            r.header("user-agent")
                .is_some_and(|ua| ua.starts_with("aws-log-forwarder/")),
            "{r:?}"
        );
    }

    // S3 notifies again for a second PUT of the same bytes: the same records get the
    // same ids, so the intake can drop the duplicates.
    stack
        .put_gzip(CLOUDFRONT_KEY, cloudfront_log(0).as_bytes())
        .await;
    let all = intake.wait_for_events(6, PIPELINE_TIMEOUT).await;
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    let again: BTreeSet<String> = events_of_key(&all, CLOUDFRONT_KEY)
        .into_iter()
        .map(event_id)
        .collect();
    assert_eq!(again, ids, "event.id must be deterministic");

    daemon.stop().await;
    assert_eq!(stack.dlq_counts().await.total(), 0, "nothing dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_test_event_is_deleted_without_events() {
    let stack = TestStack::deploy("s3-test-event").await;
    // LocalStack, like S3, already queued one when the stack configured the
    // notification; send another of the documented shape to be independent of that.
    stack
        .send_message(&format!(
            r#"{{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-05-01T12:00:00.000Z","Bucket":"{}","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}}"#,
            stack.bucket
        ))
        .await;
    assert!(stack.queue_counts().await.visible >= 1);
    let intake = TestIntake::start().await;
    let daemon = RunningDaemon::start(stack.daemon_config(&intake, ""));

    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    // Give a wrongly forwarded event time to show up before checking there is none.
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.stop().await;

    assert!(
        intake.events().is_empty(),
        "a test event must not produce events\n{}",
        intake.describe()
    );
    assert_eq!(
        stack.dlq_counts().await.total(),
        0,
        "test events are deleted, not dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_wrapped_s3_notification_is_processed() {
    let stack = TestStack::deploy("sns-fanout").await;
    // S3 -> SNS topic -> SQS queue (raw message delivery off, so every message is an SNS
    // envelope whose `Message` is the S3 notification), as fan-out setups do.
    let sns = aws_sdk_sns::Client::new(&stack.sdk);
    let topic_arn = sns
        .create_topic()
        .name(format!("{}-topic", stack.name))
        .send()
        .await
        .expect("create topic")
        .topic_arn()
        .expect("topic arn")
        .to_owned();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(&stack.queue_arn)
        .send()
        .await
        .expect("subscribe the queue");
    stack
        .s3
        .put_bucket_notification_configuration()
        .bucket(&stack.bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .topic_configurations(
                    TopicConfiguration::builder()
                        .topic_arn(&topic_arn)
                        .events(Event::S3ObjectCreated)
                        .build()
                        .expect("topic configuration"),
                )
                .build(),
        )
        .send()
        .await
        .expect("route the bucket's notifications to the topic");

    stack
        .put_gzip(CLOUDFRONT_KEY, cloudfront_log(5).as_bytes())
        .await;

    // Make sure what sits in the queue really is an SNS envelope before the daemon runs.
    let started = std::time::Instant::now();
    let envelope = loop {
        if let Some(body) = stack
            .peek(&stack.queue_url, 0)
            .await
            .iter()
            .filter_map(|m| m.body())
            .find(|b| b.contains("\"TopicArn\"") && b.contains("ObjectCreated"))
        {
            break body.to_owned();
        }
        assert!(
            started.elapsed() < PIPELINE_TIMEOUT,
            "no SNS-wrapped notification reached the queue"
        );
    };
    let parsed: Value = serde_json::from_str(&envelope).expect("SNS envelope is JSON");
    assert_eq!(parsed["Type"], "Notification");
    assert!(
        parsed["Message"]
            .as_str()
            .is_some_and(|m| m.contains(CLOUDFRONT_KEY))
    );

    let intake = TestIntake::start().await;
    let daemon = RunningDaemon::start(stack.daemon_config(&intake, ""));
    let events = wait_for_records_then_stop(&stack, &intake, daemon, CLOUDFRONT_KEY, 8).await;

    assert!(events.iter().all(|e| !has_tag(e, "_parse_failure")));
    assert!(
        events
            .iter()
            .all(|e| str_field(e, "event.dataset") == Some("aws.cloudfront_logs"))
    );
    assert_eq!(stack.dlq_counts().await.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_line_is_forwarded_raw_and_the_rest_still_arrives() {
    let (stack, intake, daemon) = start_forwarding("malformed-line").await;

    let garbage = "this line is not a CloudFront record";
    let mut lines: Vec<String> = cloudfront_log(0).lines().map(str::to_owned).collect();
    // After the two header lines and the first record.
    lines.insert(3, garbage.to_owned());
    let text = lines.join("\n") + "\n";
    stack.put_gzip(CLOUDFRONT_KEY, text.as_bytes()).await;

    let events = wait_for_records_then_stop(&stack, &intake, daemon, CLOUDFRONT_KEY, 4).await;

    assert_eq!(events.len(), 4, "three records and one raw line");
    let failures: Vec<&Value> = events
        .iter()
        .filter(|e| has_tag(e, "_parse_failure"))
        .collect();
    assert_eq!(
        failures.len(),
        1,
        "exactly the bad line is tagged: {events:?}"
    );
    let raw = failures[0];
    assert_eq!(str_field(raw, "message"), Some(garbage));
    assert_eq!(str_field(raw, "event.dataset"), Some("aws.cloudfront_logs"));
    assert!(str_field(raw, "error.message").is_some());
    let parsed_ips: BTreeSet<&str> = events
        .iter()
        .filter(|e| !has_tag(e, "_parse_failure"))
        .filter_map(|e| str_field(e, "source.ip"))
        .collect();
    assert_eq!(
        parsed_ips,
        BTreeSet::from(["2001:db8:85a3::8a2e:370:7334", "192.0.2.10", "198.51.100.7"])
    );
    assert_eq!(stack.dlq_counts().await.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudtrail_digest_produces_no_events_and_is_deleted() {
    let (stack, intake, daemon) = start_forwarding("cloudtrail-digest").await;

    let digest_key = "AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2024/05/01/\
                      123456789012_CloudTrail-Digest_us-east-1_main-trail_us-east-1_20240501T130000Z.json.gz";
    let digest = format!(
        r#"{{"awsAccountId":"123456789012","digestStartTime":"2024-05-01T12:00:00Z","digestEndTime":"2024-05-01T13:00:00Z","digestS3Bucket":"{bucket}","digestS3Object":"{digest_key}","digestPublicKeyFingerprint":"0123456789abcdef0123456789abcdef","digestSignatureAlgorithm":"SHA256withRSA","newestEventTime":"2024-05-01T12:59:58Z","oldestEventTime":"2024-05-01T12:00:03Z","previousDigestS3Bucket":"{bucket}","previousDigestS3Object":"AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2024/05/01/123456789012_CloudTrail-Digest_us-east-1_main-trail_us-east-1_20240501T120000Z.json.gz","previousDigestHashValue":"aa11bb22cc33dd44ee55ff6677889900aa11bb22cc33dd44ee55ff6677889900","previousDigestHashAlgorithm":"SHA-256","previousDigestSignature":"00ff","logFiles":[{{"s3Bucket":"{bucket}","s3Object":"AWSLogs/123456789012/CloudTrail/us-east-1/2024/05/01/123456789012_CloudTrail_us-east-1_20240501T1205Z_Ab3dEf6hIj9kLm2n.json.gz","hashValue":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","hashAlgorithm":"SHA-256","newestEventTime":"2024-05-01T12:04:59Z","oldestEventTime":"2024-05-01T12:00:03Z"}}]}}"#,
        bucket = stack.bucket
    );
    stack.put_gzip(digest_key, digest.as_bytes()).await;
    // A normal object after it proves the daemon was running and draining the queue.
    stack
        .put_gzip(CLOUDFRONT_KEY, cloudfront_log(0).as_bytes())
        .await;

    wait_for_records(&intake, CLOUDFRONT_KEY, 3, PIPELINE_TIMEOUT).await;
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    daemon.stop().await;

    let events = intake.events();
    assert!(
        events_of_key(&events, digest_key).is_empty(),
        "a digest file must produce no events"
    );
    assert!(events.iter().all(|e| !has_tag(e, "_parse_failure")));
    assert_eq!(
        stack.dlq_counts().await.total(),
        0,
        "the digest message was deleted"
    );
}
