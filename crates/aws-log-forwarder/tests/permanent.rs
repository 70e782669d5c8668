//! Messages that can never succeed, and the ones that must never be dropped.
//!
//! * A corrupt or truncated object is not retried like a network error: its readable
//!   records plus one `pipeline_error` event are delivered once, and the message moves
//!   to the dead-letter queue at once, with the reason as message attributes.
//! * A body that is not a notification goes to the dead-letter queue at once too.
//! * A notification for a bucket that does not exist is a configuration problem: the
//!   message is never deleted (it reaches the dead-letter queue by the queue's redrive
//!   policy) and the error names the bucket.
//! * A panicking parser releases its message at once instead of leaving it hidden.
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use std::time::{Duration, Instant};

use common::intake::TestIntake;
use common::localstack::TestStack;
use common::{
    DaemonProcess, PIPELINE_TIMEOUT, RunningDaemon, cloudfront_log, events_of_key, gzip, offsets,
    set_config, str_field, wait_for_records,
};
use serde_json::Value;

/// A stack whose queue moves a message to its dead-letter queue after
/// `max_receive_count` receives, an accepting intake, and the stack's configuration
/// with text logs (what these tests read) for `aws-log-forwarder run`.
async fn text_logging_stack(
    name: &str,
    max_receive_count: &str,
) -> (TestStack, TestIntake, toml::Table) {
    let stack = TestStack::deploy_with(name, &[("MaxReceiveCount", max_receive_count)]).await;
    let intake = TestIntake::start().await;
    let mut config = stack.base_config_toml(&intake);
    set_config(&mut config, "log", "format", "text");
    (stack, intake, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_object_delivers_its_readable_part_once_and_is_dead_lettered_at_once() {
    // A generous receive count: only an immediate move can bring it to the DLQ quickly.
    let (stack, intake, config) = text_logging_stack("truncated-object", "5").await;
    let daemon = DaemonProcess::start(&config, &[]);

    let key = "cloudfront/E2TRUNCATED01.2024-05-01-12.deadbeef.gz";
    let whole = gzip(cloudfront_log(4_000).as_bytes());
    stack
        .put_object(key, whole[..whole.len() / 2].to_vec())
        .await;

    let counts = stack.wait_dlq_messages(1, Duration::from_secs(60)).await;
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    let out = daemon.stop().await;

    assert_eq!(counts.total(), 1);
    let events = intake.events();
    let mine = events_of_key(&events, key);
    let errors: Vec<&&Value> = mine
        .iter()
        .filter(|e| str_field(e, "event.kind") == Some("pipeline_error"))
        .collect();
    assert_eq!(errors.len(), 1, "one error event: {errors:?}");
    let message = str_field(errors[0], "message").unwrap_or_default();
    assert!(
        message.contains(key) && message.contains("corrupt or truncated"),
        "{message}"
    );
    let records: Vec<&Value> = mine
        .iter()
        .copied()
        .filter(|e| str_field(e, "event.kind") != Some("pipeline_error"))
        .collect();
    let distinct = offsets(&records).len();
    assert!(
        distinct > 500 && distinct < 4_003,
        "the readable part arrives: {distinct} records"
    );
    assert_eq!(
        records.len(),
        distinct,
        "the readable part is sent once, not once per redelivery"
    );
    assert!(
        out.logs.contains("moved to the dead-letter queue"),
        "{}",
        out.logs
    );
    let dead = stack.peek_dlq_with_attributes().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let (body, attributes) = &dead[0];
    assert!(body.contains(key), "{body}");
    assert_eq!(
        attributes.get("alf-dead-letter-kind").map(String::as_str),
        Some("corrupt_object"),
        "{attributes:?}"
    );
    assert!(
        attributes
            .get("alf-dead-letter-reason")
            .is_some_and(|r| r.contains("corrupt or truncated")),
        "{attributes:?}"
    );
    assert_eq!(
        attributes.get("alf-receive-count").map(String::as_str),
        Some("1"),
        "moved on the first receive: {attributes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_no_notification_is_dead_lettered_at_once() {
    let stack = TestStack::deploy_with("foreign-body", &[("MaxReceiveCount", "5")]).await;
    let intake = TestIntake::start().await;
    let daemon = RunningDaemon::start(stack.daemon_config(&intake, ""));

    stack.send_message("this is not a notification").await;
    stack.wait_dlq_messages(1, Duration::from_secs(20)).await;
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    daemon.stop().await;

    let dead = stack.peek_dlq_with_attributes().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, "this is not a notification");
    assert_eq!(
        dead[0].1.get("alf-dead-letter-kind").map(String::as_str),
        Some("unparseable_notification")
    );
    assert!(
        dead[0]
            .1
            .get("alf-dead-letter-reason")
            .is_some_and(|r| r.contains("not JSON")),
        "{:?}",
        dead[0].1
    );
    assert!(intake.events().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_never_dropped_and_is_named() {
    let (stack, _intake, config) = text_logging_stack("missing-bucket", "2").await;
    let daemon = DaemonProcess::start(&config, &[]);

    let bucket = "alf-test-bucket-that-does-not-exist";
    let body = format!(
        r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"{bucket}"}},"object":{{"key":"AWSLogs/x.log.gz","size":10,"eTag":"abc"}}}}}}]}}"#
    );
    stack.send_message(&body).await;
    // Two receives (MaxReceiveCount 2), each kept, then the queue's redrive moves it.
    stack.wait_dlq_messages(1, Duration::from_secs(60)).await;
    let out = daemon.stop().await;

    let dead = stack.peek_dlq().await;
    assert!(
        dead.iter().filter_map(|m| m.body()).any(|b| b == body),
        "the notification reached the DLQ unchanged: {dead:?}"
    );
    let errors = out.lines_with(&["ERROR", bucket]);
    assert!(
        errors.iter().any(|l| l.contains("does not exist")),
        "an error names the missing bucket:\n{}",
        out.logs
    );
    out.assert_not_logged(
        "the notification is dropped",
        "a missing bucket is not a deleted object",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_parser_releases_its_message_at_once() {
    let (stack, intake, mut config) = text_logging_stack("parser-panic", "5").await;
    // Hidden for a minute on every receive: only an explicit release brings it back soon.
    config
        .get_mut("sqs")
        .and_then(toml::Value::as_table_mut)
        .expect("[sqs]")
        .insert(
            "visibility_timeout_seconds".into(),
            toml::Value::Integer(60),
        );
    // Debug builds only: the parser of a key containing this marker panics once.
    let daemon = DaemonProcess::start(&config, &[("ALF_DEBUG_PANIC_ON_KEY", "panic-me")]);

    let key = "cloudfront/panic-me/E2PANIC00001.2024-05-01-12.0badf00d.gz";
    let started = Instant::now();
    stack.put_gzip(key, cloudfront_log(17).as_bytes()).await;
    wait_for_records(&intake, key, 20, Duration::from_secs(30)).await;
    let took = started.elapsed();
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    let out = daemon.stop().await;

    assert!(
        took < Duration::from_secs(30),
        "redelivered after {took:?}, not after the 60 s visibility timeout"
    );
    let panics = out.lines_with(&["panicked", key]);
    assert_eq!(panics.len(), 1, "logged once with the key:\n{}", out.logs);
    assert_eq!(stack.dlq_counts().await.total(), 0);
}
