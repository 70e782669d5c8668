//! Poison events: the intake refuses some events for good (a 400 for any batch holding
//! one). The promise under test: every other event is delivered, the refused ones are
//! in the dead-letter sink with the intake's answer, and the message is deleted instead
//! of walking to the SQS dead-letter queue with all its good events re-sent each time.
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use alf_formats::Format;
use common::intake::{Mode, TestIntake};
use common::localstack::TestStack;
use common::{
    PIPELINE_TIMEOUT, RunningDaemon, cloudfront_log, event_id, parse_locally_as, str_field,
    wait_for_records,
};
use serde_json::Value;

const KEY: &str = "cloudfront/E2TESTDIST0001.2024-05-01-14.0badf00d.gz";
/// Records in the object (3 hand-written + 297 generated).
const RECORDS: usize = 300;
/// Put in the URI of the poison records; the test intake refuses any batch holding it.
const MARKER: &str = "alf-poison-marker";
/// Generated records (by index) that carry the marker.
const POISONED: [usize; 4] = [0, 17, 150, 296];

/// The CloudFront log with the marker in the URI of the [`POISONED`] records.
fn poisoned_log() -> String {
    let mut text = cloudfront_log(RECORDS - 3);
    for i in POISONED {
        let clean = format!("\t/page/{i}\t");
        assert!(text.contains(&clean), "record {i} exists");
        text = text.replace(&clean, &format!("\t/{MARKER}/{i}\t"));
    }
    text
}

/// Every dead-letter record written under `dir`.
fn dead_letters(dir: &Path) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flat_map(|e| {
            let text = std::fs::read_to_string(e.expect("dead-letter entry").path())
                .expect("read a dead-letter file");
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("dead-letter lines are JSON"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_events_go_to_the_dead_letter_sink_and_the_rest_is_delivered() {
    // A low receive count: were the object retried instead, it would reach the DLQ fast.
    let stack = TestStack::deploy_with("poison", &[("MaxReceiveCount", "2")]).await;
    let intake = TestIntake::start().await;
    intake.set_mode(Mode::RejectMarked {
        marker: MARKER.into(),
    });
    let sink = tempfile::tempdir().expect("temporary dead-letter directory");
    let sink_dir = sink.path().join("dead-letter");
    let daemon = RunningDaemon::start(stack.daemon_config(
        &intake,
        &format!(
            "[batch]\nmax_events = 64\n[dead_letter]\ndirectory = \"{}\"\n",
            sink_dir.display()
        ),
    ));

    let text = poisoned_log();
    stack.put_gzip(KEY, text.as_bytes()).await;
    let clean = RECORDS - POISONED.len();
    let events = wait_for_records(&intake, KEY, clean, PIPELINE_TIMEOUT).await;
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    daemon.stop().await;

    // What the library makes of the object: the reference for "every good event".
    let reference = parse_locally_as(
        Format::CloudFront,
        &stack.bucket,
        KEY,
        &stack.etag(KEY).await,
        text.as_bytes(),
    );
    assert_eq!(reference.len(), RECORDS);
    let is_poison = |e: &Value| e.to_string().contains(MARKER);
    let expected_good: BTreeSet<String> = reference
        .iter()
        .filter(|e| !is_poison(e))
        .map(event_id)
        .collect();
    let expected_poison: BTreeSet<String> = reference
        .iter()
        .filter(|e| is_poison(e))
        .map(event_id)
        .collect();
    assert_eq!(expected_poison.len(), POISONED.len());

    let delivered: BTreeSet<String> = events.iter().map(event_id).collect();
    assert_eq!(
        delivered, expected_good,
        "every good event is delivered, no poison one is"
    );
    assert_eq!(
        events.len(),
        clean,
        "no good event is sent twice: the object was not retried\n{}",
        intake.describe()
    );

    let dead = dead_letters(&sink_dir);
    let dead_ids: BTreeSet<String> = dead.iter().map(|d| event_id(&d["event"])).collect();
    assert_eq!(dead_ids, expected_poison, "{dead:#?}");
    assert_eq!(
        dead.len(),
        POISONED.len(),
        "each poison event dead-lettered once"
    );
    for d in &dead {
        assert_eq!(d["reason"], "rejected", "{d}");
        assert_eq!(d["intake_status"], 400, "{d}");
        let answer = d["intake_answer"].as_str().unwrap_or_default();
        assert!(answer.contains(MARKER), "the intake's answer is kept: {d}");
        assert_eq!(str_field(&d["event"], "aws.s3.object.key"), Some(KEY));
    }

    assert_eq!(
        stack.dlq_counts().await.total(),
        0,
        "nothing in the SQS DLQ"
    );
    let counts = stack.queue_counts().await;
    assert_eq!(counts.total(), 0, "the message was deleted: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_dead_letter_sink_is_a_start_up_error_naming_the_key() {
    let stack = TestStack::deploy("poison-sink").await;
    let intake = TestIntake::start().await;
    let config = stack.daemon_config(
        &intake,
        "[dead_letter]\ns3_bucket = \"alf-no-such-dead-letter-bucket\"\n",
    );
    let err = aws_log_forwarder::run(config, tokio_util::sync::CancellationToken::new())
        .await
        .expect_err("a missing dead-letter bucket stops the daemon");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "dead_letter.s3_bucket: cannot write s3://alf-no-such-dead-letter-bucket/aws-log-forwarder/dead-letter/"
        ),
        "{text}"
    );
    assert!(!text.contains('\n'), "one line: {text}");
}
