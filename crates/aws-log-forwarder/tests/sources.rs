//! CloudWatch Logs through Amazon Data Firehose and AWS Config history files, end to end:
//! the objects are uploaded to LocalStack S3 in the shape AWS writes them, the daemon
//! picks them up from the SQS notification, and the test intake receives each log event
//! and configuration item mapped.
//!
//! The Firehose object is built as AWS builds it: CloudWatch Logs gzips every
//! subscription document, Firehose concatenates them without a separator and (with
//! compression on) gzips the whole again. No key layout marks it, so the daemon has to
//! recognise it from its content.
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use common::{PIPELINE_TIMEOUT, events_of_key, gzip, has_tag, start_forwarding, str_field};
use serde_json::{Value, json};

fn subscription_document(group: &str, stream: &str, events: &[(&str, i64, &str)]) -> Vec<u8> {
    json!({
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": group,
        "logStream": stream,
        "subscriptionFilters": ["to-firehose"],
        "logEvents": events
            .iter()
            .map(|(id, ts, message)| json!({"id": id, "timestamp": ts, "message": message}))
            .collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes()
}

const CONFIG_HISTORY: &str = r#"{"fileVersion":"1.0","configurationItems":[{"configurationItemVersion":"1.3","configurationItemCaptureTime":"2024-05-01T12:10:00.123Z","configurationStateId":1714565400123,"awsAccountId":"123456789012","configurationItemStatus":"ResourceDiscovered","resourceType":"AWS::IAM::Role","resourceId":"AROAEXAMPLEID","resourceName":"deploy","ARN":"arn:aws:iam::123456789012:role/deploy","awsRegion":"global","availabilityZone":"Not Applicable","configuration":{"roleName":"deploy","assumeRolePolicyDocument":"%7B%7D"},"supplementaryConfiguration":{},"tags":{},"relatedEvents":[],"relationships":[]},{"configurationItemVersion":"1.3","configurationItemCaptureTime":"2024-05-01T12:20:00.000Z","awsAccountId":"123456789012","configurationItemStatus":"ResourceDeleted","resourceType":"AWS::EC2::SecurityGroup","resourceId":"sg-0a1b2c3d4e5f67890","awsRegion":"us-east-1","configuration":null}]}"#;

fn find<'a>(events: &'a [&'a Value], path: &str, value: &str) -> &'a Value {
    events
        .iter()
        .find(|e| str_field(e, path) == Some(value))
        .unwrap_or_else(|| panic!("no event with {path} = {value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_cloudwatch_logs_and_a_config_history_file_arrive_mapped() {
    let (stack, intake, daemon) = start_forwarding("sources").await;

    let lambda = subscription_document(
        "/aws/lambda/checkout",
        "2024/05/01/[$LATEST]0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        &[
            (
                "37870403290143431539178339556431575404838183427734650880",
                1714564800000,
                "2024-05-01T12:00:00.000Z\t8f507cfc-1d2e-4697-b07a-ac58fc914c95\tERROR\tcard declined\n",
            ),
            (
                "37870403290143431539178339556431575404838183427734650881",
                1714564800100,
                "REPORT RequestId: 8f507cfc-1d2e-4697-b07a-ac58fc914c95\tDuration: 10.50 ms\tBilled Duration: 11 ms\tMemory Size: 128 MB\tMax Memory Used: 60 MB\tInit Duration: 200.00 ms\t\n",
            ),
        ],
    );
    let trail = r#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::123456789012:user/alice","accountId":"123456789012","userName":"alice"},"eventTime":"2024-05-01T12:00:01Z","eventSource":"iam.amazonaws.com","eventName":"DeleteRole","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"aws-cli/2.15.0","requestParameters":{"roleName":"old"},"responseElements":null,"requestID":"r1","eventID":"6f2c8a1e-0b3d-4e5f-9a7b-1c2d3e4f5a6b","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012"}"#;
    let cloudtrail = subscription_document(
        "aws-cloudtrail-logs-123456789012",
        "123456789012_CloudTrail_us-east-1",
        &[(
            "37870403290143431539178339556431575404838183427734650882",
            1714564801000,
            trail,
        )],
    );
    // Firehose: CloudWatch's gzip members back to back, gzipped once more.
    let mut members = gzip(&lambda);
    members.extend(gzip(&cloudtrail));
    let firehose_key = "sources/cwl/2024/05/01/12/cwl-to-s3-1-2024-05-01-12-00-00-0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    stack.put_gzip(firehose_key, &members).await;

    let config_key = "sources/AWSLogs/123456789012/Config/us-east-1/2024/5/1/ConfigHistory/123456789012_Config_us-east-1_ConfigHistory_AWS::IAM::Role_20240501T120000Z_20240501T130000Z_1.json.gz";
    stack.put_gzip(config_key, CONFIG_HISTORY.as_bytes()).await;
    // Config's bucket write test: no events, no error, message deleted.
    stack
        .put_object(
            "sources/AWSLogs/123456789012/Config/ConfigWritabilityCheckFile",
            b"This file was written by AWS Config to test the bucket.".to_vec(),
        )
        .await;

    intake.wait_for_events(5, PIPELINE_TIMEOUT).await;
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    daemon.stop().await;
    let events = intake.events();
    assert!(
        !events.iter().any(|e| has_tag(e, "_parse_failure")),
        "parse failures: {events:?}"
    );

    let cwl = events_of_key(&events, firehose_key);
    assert_eq!(cwl.len(), 3, "{cwl:?}");
    let report = find(&cwl, "event.action", "report");
    assert_eq!(
        str_field(report, "event.dataset"),
        Some("aws.cloudwatch_logs")
    );
    assert_eq!(
        str_field(report, "event.id"),
        Some("37870403290143431539178339556431575404838183427734650881")
    );
    assert_eq!(str_field(report, "faas.name"), Some("checkout"));
    assert_eq!(report["faas"]["coldstart"], true);
    assert_eq!(str_field(report, "cloud.account.id"), Some("123456789012"));
    assert_eq!(
        str_field(report, "aws.cloudwatch.log_group"),
        Some("/aws/lambda/checkout")
    );
    let error = find(&cwl, "message", "card declined");
    assert_eq!(str_field(error, "log.level"), Some("error"));
    assert_eq!(str_field(error, "@timestamp"), Some("2024-05-01T12:00:00Z"));
    let api_call = find(&cwl, "event.action", "DeleteRole");
    assert_eq!(str_field(api_call, "event.dataset"), Some("aws.cloudtrail"));
    assert_eq!(str_field(api_call, "user.name"), Some("alice"));
    assert_eq!(str_field(api_call, "source.ip"), Some("198.51.100.7"));
    assert_eq!(
        str_field(api_call, "aws.cloudwatch.log_stream"),
        Some("123456789012_CloudTrail_us-east-1")
    );

    let config = events_of_key(&events, config_key);
    assert_eq!(config.len(), 2, "{config:?}");
    let role = find(&config, "aws.config.resource_type", "AWS::IAM::Role");
    assert_eq!(str_field(role, "event.dataset"), Some("aws.config"));
    assert_eq!(
        str_field(role, "@timestamp"),
        Some("2024-05-01T12:10:00.123Z")
    );
    assert_eq!(role["event"]["type"][0], "creation");
    assert_eq!(role["event"]["category"][0], "configuration");
    assert_eq!(
        str_field(role, "aws.config.arn"),
        Some("arn:aws:iam::123456789012:role/deploy")
    );
    assert_eq!(role["aws"]["config"]["configuration"]["roleName"], "deploy");
    let deleted = find(&config, "aws.config.resource_id", "sg-0a1b2c3d4e5f67890");
    assert_eq!(deleted["event"]["type"][0], "deletion");

    assert_eq!(stack.dlq_counts().await.total(), 0);
}
