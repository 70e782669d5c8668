//! Secrets stay secret: the `aws-log-forwarder run` binary, at debug level and through
//! intake failures (retried 500s, a 400 whose body echoes the request), never writes the
//! intake key, the AWS secret access key or the session token to its output, and the
//! events it forwards carry no presigned-URL signature or session token.
//!
//! The binary runs as a child process, exactly as users run it, so everything any crate
//! logs (the AWS SDK and HTTP stack included) is captured.
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use std::time::{Duration, Instant};

use common::intake::{Mode, TestIntake};
use common::localstack::{INTAKE_KEY, TestStack};
use common::{DaemonOutput, DaemonProcess, PIPELINE_TIMEOUT, set_config};

const SECRET_ACCESS_KEY: &str = "alfTestSecretAccessKey0123456789abcdefXYZ";
const SESSION_TOKEN: &str = "alfTestSessionTokenFwoGZXIvYXdzEJr0123456789";
const URL_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLEURLTOKEN0123456789";
const URL_SIGNATURE: &str = "3f1c0ffee0ddba11c0ffee0ddba11c0ffee0ddba11c0ffee0ddba11c0ffee0dd";

/// One CloudFront record whose query string is a presigned URL with a session token.
fn presigned_cloudfront_log() -> String {
    let query = format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAEXAMPLE%2F20240501%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Security-Token={URL_TOKEN}&X-Amz-Signature={URL_SIGNATURE}&X-Amz-SignedHeaders=host"
    );
    // The first reference record, with the presigned query in cs-uri-query.
    let mut record = common::CLOUDFRONT_RECORDS[0];
    record[11] = &query;
    format!("{}{}\n", common::CLOUDFRONT_HEADER, record.join("\t"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_never_logs_keys_or_tokens() {
    let stack = TestStack::deploy("secrets").await;
    let intake = TestIntake::start().await;
    // Two transient failures (retried, logged with the status) and one permanent
    // rejection of the lone event (logged loudly with a body excerpt that echoes the
    // key; the event goes to the dead-letter sink with that excerpt).
    intake.set_mode_for_next(2, Mode::Fail500);
    intake.set_mode_for_next(1, Mode::Reject400);

    let mut config = stack.base_config_toml(&intake);
    set_config(&mut config, "log", "level", "debug");
    set_config(&mut config, "log", "format", "json");
    let daemon = DaemonProcess::start(
        &config,
        &[
            ("AWS_ACCESS_KEY_ID", "ASIAALFTESTKEYID0001"),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            ("AWS_SESSION_TOKEN", SESSION_TOKEN),
        ],
    );
    // The start-up reachability probe (a HEAD, no events, no key).
    intake.wait_for_probe(PIPELINE_TIMEOUT).await;

    let key = "cloudfront/E2SECRETDIST01.2024-05-01-12.5ec4e700.gz";
    stack
        .put_gzip(key, presigned_cloudfront_log().as_bytes())
        .await;
    // The 400 sends the event to the dead-letter sink and the message is deleted.
    // Waits without panicking, so a failure shows the daemon's output.
    let dead_letter_text = || {
        std::fs::read_dir(stack.dead_letter_dir())
            .map(|entries| {
                entries
                    .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect::<String>()
            })
            .unwrap_or_default()
    };
    let waiting = Instant::now();
    let drained = loop {
        if !dead_letter_text().is_empty() && stack.queue_counts().await.total() == 0 {
            break true;
        }
        if waiting.elapsed() > PIPELINE_TIMEOUT {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let DaemonOutput {
        status,
        logs,
        stop_time,
    } = daemon.stop().await;
    assert!(
        stop_time < Duration::from_secs(40),
        "the daemon took {stop_time:?} to stop"
    );
    assert!(status.success(), "exit status {status:?}\n{logs}");

    assert!(
        drained,
        "not delivered and deleted within {PIPELINE_TIMEOUT:?}: {:?}\n{}\n{logs}",
        stack.queue_counts().await,
        intake.describe()
    );
    // The dead-lettered event, as it would have been sent.
    let events: Vec<serde_json::Value> = dead_letter_text()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("a dead-letter line")["event"]
                .clone()
        })
        .collect();
    assert_eq!(events.len(), 1, "{}", dead_letter_text());

    // The run was a real one: debug output, the failures logged, the object delivered.
    let requests = intake.requests();
    let statuses: Vec<Option<u16>> = requests.iter().map(|r| r.status).collect();
    assert!(statuses.contains(&Some(500)), "{statuses:?}");
    assert!(statuses.contains(&Some(400)), "{statuses:?}");
    assert!(
        requests
            .iter()
            .all(|r| r.intake_key.as_deref() == Some(INTAKE_KEY)),
        "the intake got the key"
    );
    assert!(
        logs.contains("\"level\":\"DEBUG\""),
        "no debug lines:\n{logs}"
    );
    assert!(logs.contains("400"), "the rejection is not logged:\n{logs}");
    assert!(logs.contains(key), "the object is not logged:\n{logs}");
    assert!(
        logs.contains("intake reachable"),
        "no probe result:\n{logs}"
    );

    let dead_letter = dead_letter_text();
    for (what, secret) in [
        ("intake key", INTAKE_KEY),
        ("AWS secret access key", SECRET_ACCESS_KEY),
        ("AWS session token", SESSION_TOKEN),
        ("presigned-URL session token", URL_TOKEN),
        ("presigned-URL signature", URL_SIGNATURE),
    ] {
        assert!(
            !dead_letter.contains(secret),
            "the {what} appears in the dead-letter sink:\n{dead_letter}"
        );
        assert!(
            !logs.contains(secret),
            "the {what} appears in the daemon's output:\n{}",
            logs.lines()
                .filter(|l| l.contains(secret))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    for event in &events {
        let text = event.to_string();
        assert!(!text.contains(URL_TOKEN), "token forwarded: {text}");
        assert!(!text.contains(URL_SIGNATURE), "signature forwarded: {text}");
        assert!(text.contains("X-Amz-Signature=REDACTED"), "{text}");
    }
}
