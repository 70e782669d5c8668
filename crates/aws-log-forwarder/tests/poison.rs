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

/// The base test config with an S3 dead-letter sink instead of the directory one.
fn s3_sink_config(
    stack: &TestStack,
    intake: &TestIntake,
    bucket: &str,
    prefix: Option<&str>,
) -> aws_log_forwarder::Config {
    let mut table = stack.base_config_toml(intake);
    let mut sink = toml::Table::new();
    sink.insert("s3_bucket".into(), bucket.into());
    if let Some(prefix) = prefix {
        sink.insert("s3_prefix".into(), prefix.into());
    }
    table.insert("dead_letter".into(), toml::Value::Table(sink));
    let text = toml::to_string(&table).expect("serialize the test config");
    aws_log_forwarder::Config::from_toml_str(&text).expect("a valid test config")
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
    let requests = intake.requests();
    eprintln!(
        "poison run: {RECORDS} records, {} poison, {} requests ({} answered 400), {} events accepted",
        POISONED.len(),
        requests.len(),
        requests.iter().filter(|r| r.status == Some(400)).count(),
        events.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_dead_letter_sink_writes_gzipped_ndjson_objects() {
    let stack = TestStack::deploy("poison-s3").await;
    // A bucket of its own: the stack's bucket notifies the queue of every new object.
    let name = format!("{}-dl", stack.name.to_ascii_lowercase());
    let bucket = name[name.len().saturating_sub(63)..].trim_start_matches('-');
    stack
        .s3
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("create the dead-letter bucket");
    let intake = TestIntake::start().await;
    intake.set_mode(Mode::RejectMarked {
        marker: MARKER.into(),
    });
    let daemon = RunningDaemon::start(s3_sink_config(&stack, &intake, bucket, Some("refused")));

    let text = cloudfront_log(0).replace("\t/index.html\t", &format!("\t/{MARKER}\t"));
    assert!(text.contains(MARKER), "the first record carries the marker");
    stack.put_gzip(KEY, text.as_bytes()).await;
    wait_for_records(&intake, KEY, 2, PIPELINE_TIMEOUT).await;
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    daemon.stop().await;

    let listed = stack
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix("refused/")
        .send()
        .await
        .expect("list the dead-letter bucket");
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .filter(|k| k.ends_with(".ndjson.gz"))
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "one object for the one refused event: {keys:?}"
    );
    let object = stack
        .s3
        .get_object()
        .bucket(bucket)
        .key(&keys[0])
        .send()
        .await
        .expect("get the dead-letter object");
    let gz = object.body.collect().await.expect("read it").into_bytes();
    let mut ndjson = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut ndjson)
        .expect("gzipped NDJSON");
    let records: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(records.len(), 1, "{ndjson}");
    assert_eq!(records[0]["intake_status"], 400);
    assert!(records[0]["event"].to_string().contains(MARKER));
    assert_eq!(intake.events().len(), 2, "the other records were delivered");
    assert_eq!(stack.dlq_counts().await.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_dead_letter_sink_is_a_start_up_error_naming_the_key() {
    let stack = TestStack::deploy("poison-sink").await;
    let intake = TestIntake::start().await;
    let config = s3_sink_config(&stack, &intake, "alf-no-such-dead-letter-bucket", None);
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
