//! Several intakes in one process, against LocalStack: `[intake]` receives normalised
//! ECS events, an `[[intakes]]` entry with `payload = "raw"` receives the CloudTrail
//! records as AWS wrote them (what a Sekoia.io AWS CloudTrail intake parses itself).
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use std::time::Duration;

use common::intake::{Mode, TestIntake};
use common::localstack::{INTAKE_KEY, TestStack};
use common::{PIPELINE_TIMEOUT, RunningDaemon, cloudfront_log, str_field, wait_for_records};
use serde_json::{Value, json};

const CLOUDFRONT_KEY: &str = "cloudfront/E2TESTDIST0001.2024-05-01-12.a1b2c3d4.gz";
const CLOUDTRAIL_KEY: &str = "AWSLogs/123456789012/CloudTrail/us-east-1/2024/05/01/\
                              123456789012_CloudTrail_us-east-1_20240501T1205Z_Ab3dEf6hIj9kLm2n.json.gz";
const RAW_KEY: &str = "raw-intake-key";

/// Three CloudTrail records in AWS's `{"Records": [...]}` envelope.
fn cloudtrail_records() -> Vec<Value> {
    (0..3)
        .map(|i| {
            let name = ["GetObject", "PutObject", "ListBuckets"][i];
            json!({
                "eventVersion": "1.09",
                "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::123456789012:user/alice", "accountId": "123456789012", "userName": "alice"},
                "eventTime": format!("2024-05-01T12:0{i}:00Z"),
                "eventSource": "s3.amazonaws.com",
                "eventName": name,
                "awsRegion": "us-east-1",
                "sourceIPAddress": "198.51.100.7",
                "userAgent": "aws-cli/2.15.0",
                "requestParameters": {"bucketName": "data", "key": format!("file-{i}")},
                "responseElements": null,
                "requestID": format!("REQ{i}"),
                "eventID": format!("6f0b1f9c-0000-4000-8000-00000000000{i}"),
                "readOnly": i != 1,
                "eventType": "AwsApiCall",
                "managementEvent": false,
                "recipientAccountId": "123456789012"
            })
        })
        .collect()
}

fn config_overrides(raw: &TestIntake) -> String {
    format!(
        r#"
[[intakes]]
name = "cloudtrail"
datasets = ["aws.cloudtrail"]
url = "{url}"
protocol = "sekoia"
key = "{RAW_KEY}"
payload = "raw"
timeout_seconds = 5
connect_timeout_seconds = 2
max_retries = 3
retry_initial_backoff_ms = 50
retry_max_backoff_ms = 500
"#,
        url = raw.url()
    )
}

/// Uploads the CloudTrail records of [`cloudtrail_records`] and a CloudFront log of three
/// lines; returns the records.
async fn put_cloudtrail_and_cloudfront(stack: &TestStack) -> Vec<Value> {
    let records = cloudtrail_records();
    let trail = json!({ "Records": records }).to_string();
    stack.put_gzip(CLOUDTRAIL_KEY, trail.as_bytes()).await;
    stack
        .put_gzip(CLOUDFRONT_KEY, cloudfront_log(0).as_bytes())
        .await;
    records
}

async fn wait_for_events(intake: &TestIntake, n: usize) -> Vec<Value> {
    let started = std::time::Instant::now();
    loop {
        let events = intake.events();
        if events.len() >= n || started.elapsed() > PIPELINE_TIMEOUT {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_and_an_ecs_intake_each_receive_exactly_their_datasets() {
    let stack = TestStack::deploy("two-intakes").await;
    let ecs = TestIntake::start().await;
    let raw = TestIntake::start().await;
    let daemon = RunningDaemon::start(stack.daemon_config(&ecs, &config_overrides(&raw)));

    let records = put_cloudtrail_and_cloudfront(&stack).await;

    let ecs_events = wait_for_records(&ecs, CLOUDFRONT_KEY, 3, PIPELINE_TIMEOUT).await;
    wait_for_events(&raw, 3).await;
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    // Anything routed wrongly would have had time to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.stop().await;

    // The raw intake got the CloudTrail records themselves, one per event, and nothing
    // else: no ECS fields added, no CloudFront event.
    let raw_events = raw.events();
    assert_eq!(raw_events, records, "raw intake:\n{}", raw.describe());
    for request in raw.requests() {
        assert_eq!(request.intake_key.as_deref(), Some(RAW_KEY));
        assert!(request.decode_error.is_none(), "{:?}", request.decode_error);
    }
    // The default intake got the CloudFront events as ECS, and no CloudTrail event.
    let all_ecs = ecs.events();
    assert_eq!(all_ecs.len(), 3, "default intake:\n{}", ecs.describe());
    assert_eq!(ecs_events.len(), 3);
    for event in &all_ecs {
        assert_eq!(
            str_field(event, "event.dataset"),
            Some("aws.cloudfront_logs")
        );
        assert!(
            str_field(event, "event.original").is_none(),
            "event.original is kept only for the raw intake: {event}"
        );
    }
    for request in ecs.requests() {
        assert_eq!(request.intake_key.as_deref(), Some(INTAKE_KEY));
    }
    assert_eq!(stack.dlq_counts().await.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_waits_for_the_intake_its_events_were_routed_to() {
    let stack = TestStack::deploy("raw-intake-down").await;
    let ecs = TestIntake::start().await;
    let raw = TestIntake::start().await;
    raw.set_mode(Mode::Fail500);
    let daemon = RunningDaemon::start(stack.daemon_config(&ecs, &config_overrides(&raw)));

    let records = put_cloudtrail_and_cloudfront(&stack).await;
    // The raw intake refuses: its object's message stays in flight; the other intake
    // is unaffected by the first failures.
    let started = std::time::Instant::now();
    while raw
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.status == Some(500))
        .count()
        < 2
    {
        assert!(started.elapsed() < PIPELINE_TIMEOUT, "{}", raw.describe());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = stack.queue_counts().await;
    assert!(
        counts.total() >= 1,
        "the CloudTrail message must not be deleted while its intake refuses: {counts:?}"
    );
    assert!(raw.events().is_empty());

    raw.set_mode(Mode::Accept);
    let raw_events = wait_for_events(&raw, 3).await;
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    daemon.stop().await;
    let mut unique: Vec<Value> = Vec::new();
    for e in raw_events {
        if !unique.contains(&e) {
            unique.push(e);
        }
    }
    assert_eq!(
        unique, records,
        "every record delivered once the intake accepts"
    );
    assert!(
        ecs.events()
            .iter()
            .all(|e| str_field(e, "event.dataset") == Some("aws.cloudfront_logs"))
    );
    assert_eq!(stack.dlq_counts().await.total(), 0);
}
