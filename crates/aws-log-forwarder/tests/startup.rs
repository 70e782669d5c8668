//! What an operator sees when a deployment is wrong, from the `aws-log-forwarder run`
//! binary itself: one readable line that names the thing to fix.
//!
//! * An intake nobody answers at: a warning at start (not when the first object
//!   arrives), and the forwarder keeps running: objects wait in the queue.
//! * A queue URL that does not exist: the forwarder does not start, and says which
//!   URL and which settings to check.
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use std::time::Duration;

use alf_testkit::closed_port_url;
use common::intake::TestIntake;
use common::localstack::TestStack;
use common::{DaemonProcess, PIPELINE_TIMEOUT, set_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_intake_is_reported_at_start_and_the_forwarder_keeps_running() {
    let stack = TestStack::deploy("startup-intake").await;
    // Only for the base configuration; the forwarder is pointed elsewhere.
    let intake = TestIntake::start().await;
    let mut config = stack.base_config_toml(&intake);
    let dead = closed_port_url();
    set_config(&mut config, "intake", "url", &dead);
    set_config(&mut config, "log", "format", "json");

    let daemon = DaemonProcess::start(&config, &[]);
    // The queue holds the stack's s3:TestEvent: once it is gone the forwarder is
    // running (it checked the queue, started, probed the intake and polls).
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = daemon.stop().await;
    assert!(out.status.success(), "{:?}\n{}", out.status, out.logs);

    let warnings = out.lines_with(&["\"level\":\"WARN\"", &dead]);
    assert_eq!(
        warnings.len(),
        1,
        "one warning about the intake:\n{}",
        out.logs
    );
    let line = warnings[0];
    for part in [
        "unreachable: connection refused",
        "check intake.url",
        "objects stay in the queue",
    ] {
        assert!(line.contains(part), "{part:?} missing from {line}");
    }
    out.assert_logged("started", "it must keep running");
    out.assert_not_logged(
        "\"level\":\"ERROR\"",
        "no error without an object to deliver",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_that_does_not_exist_stops_the_start_with_one_readable_line() {
    let stack = TestStack::deploy("startup-queue").await;
    let intake = TestIntake::start().await;
    let mut config = stack.base_config_toml(&intake);
    let missing = format!("{}-does-not-exist", stack.queue_url);
    set_config(&mut config, "sqs", "queue_url", &missing);
    set_config(&mut config, "log", "format", "text");

    let out = DaemonProcess::start(&config, &[]).wait().await;
    assert_eq!(out.status.code(), Some(1), "{}", out.logs);
    let errors = out.lines_with(&["ERROR"]);
    assert_eq!(errors.len(), 1, "one error line:\n{}", out.logs);
    for part in [missing.as_str(), "does not exist", "sqs.queue_url"] {
        assert!(
            errors[0].contains(part),
            "{part:?} missing from {}",
            errors[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_aws_credentials_are_named_as_such() {
    let stack = TestStack::deploy("startup-credentials").await;
    let intake = TestIntake::start().await;
    let mut config = stack.base_config_toml(&intake);
    set_config(&mut config, "log", "format", "text");
    // Empty every source of the SDK's default credentials chain.
    let dir = tempfile::tempdir().expect("temp dir");
    let nowhere = dir.path().join("none");
    let nowhere = nowhere.to_str().expect("utf-8 temp path");
    let out = DaemonProcess::start(
        &config,
        &[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_SESSION_TOKEN", ""),
            ("AWS_PROFILE", ""),
            ("AWS_SHARED_CREDENTIALS_FILE", nowhere),
            ("AWS_CONFIG_FILE", nowhere),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", ""),
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", ""),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", ""),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    )
    .wait()
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", out.logs);
    let errors = out.lines_with(&["ERROR"]);
    assert_eq!(errors.len(), 1, "one error line:\n{}", out.logs);
    assert!(
        errors[0].contains("no AWS credentials") && errors[0].contains("AWS_ACCESS_KEY_ID"),
        "{}",
        errors[0]
    );
    assert!(!errors[0].contains("cannot reach"), "{}", errors[0]);
    let last = out.logs.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.contains("ERROR"),
        "the error is one line, and the last:\n{}",
        out.logs
    );
}
