//! What happens when the intake misbehaves: outages, permanent rejection, throttling,
//! dropped connections, slowness. The promise under test: a notification is deleted only
//! after every event of its object was acknowledged, so nothing is lost, and what can
//! never be delivered ends up in the dead-letter queue.
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::intake::{Mode, TestIntake};
use common::localstack::TestStack;
use common::{
    PIPELINE_TIMEOUT, RunningDaemon, cloudfront_log, event_id, field, offsets, wait_for_records,
    wait_for_records_then_stop,
};
use serde_json::Value;

const KEY: &str = "cloudfront/E2TESTDIST0001.2024-05-01-13.f00dcafe.gz";
/// Records in the object the tests upload (3 hand-written + 37 generated).
const RECORDS: usize = 40;

/// Every record arrived, and every copy of a record carries the same `event.id`
/// (redeliveries are recognisable duplicates, never new events).
fn assert_complete_and_deterministic(events: &[Value]) {
    let refs: Vec<&Value> = events.iter().collect();
    assert_eq!(
        offsets(&refs).len(),
        RECORDS,
        "every record must arrive at least once"
    );
    let mut ids_by_offset: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for e in events {
        let offset = field(e, "log.offset")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("event without log.offset: {e}"));
        ids_by_offset.entry(offset).or_default().insert(event_id(e));
    }
    for (offset, ids) in &ids_by_offset {
        assert_eq!(
            ids.len(),
            1,
            "copies of the record at offset {offset} got different ids: {ids:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_outage_keeps_the_message_until_the_intake_recovers() {
    // A receive count of 2 and an outage longer than 2 x the 10 s visibility timeout:
    // the message must stay in flight (heartbeats), never handed back to SQS because
    // the intake is down, so it cannot reach the DLQ.
    let stack = TestStack::deploy_with("intake-outage", &[("MaxReceiveCount", "2")]).await;
    let intake = TestIntake::start().await;
    intake.set_mode(Mode::Fail500);
    let daemon = RunningDaemon::start(stack.daemon_config(&intake, ""));

    stack
        .put_gzip(KEY, cloudfront_log(RECORDS - 3).as_bytes())
        .await;
    // Several failed attempts (retries, then redeliveries)...
    let requests = intake.wait_for_requests(4, PIPELINE_TIMEOUT).await;
    assert!(
        requests.iter().all(|r| r.status == Some(500)),
        "{}",
        intake.describe()
    );
    assert!(intake.events().is_empty());
    // ...and the notification is still there, in flight or visible again.
    let counts = stack.queue_counts().await;
    assert_eq!(
        counts.visible + counts.in_flight,
        1,
        "the message must not be deleted while its events are not delivered: {counts:?}"
    );

    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(
        stack.dlq_counts().await.total(),
        0,
        "an intake outage must not walk the message to the DLQ"
    );
    intake.set_mode(Mode::Accept);
    let events = wait_for_records_then_stop(&stack, &intake, daemon, KEY, RECORDS).await;

    assert_complete_and_deterministic(&events);
    assert_eq!(stack.dlq_counts().await.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanently_rejected_events_end_in_the_dead_letter_sink_not_the_queue() {
    // The intake refuses every event (a 400 whatever the batch holds): the batches are
    // split until each event stands alone, each goes to the dead-letter sink with the
    // answer (the key it echoes masked), and the message is deleted, not retried.
    let stack = TestStack::deploy_with("intake-rejects", &[("MaxReceiveCount", "2")]).await;
    let intake = TestIntake::start().await;
    intake.set_mode(Mode::Reject400);
    let sink = tempfile::tempdir().expect("temporary dead-letter directory");
    let daemon = RunningDaemon::start(stack.daemon_config(
        &intake,
        &format!("[dead_letter]\ndirectory = \"{}\"\n", sink.path().display()),
    ));

    stack.put_gzip(KEY, cloudfront_log(0).as_bytes()).await;
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    daemon.stop().await;

    assert!(intake.events().is_empty());
    let dead = alf_testkit::dead_letter_records(sink.path());
    assert_eq!(dead.len(), 3, "every record dead-lettered once: {dead:#?}");
    for d in &dead {
        assert_eq!(d["intake_status"], 400, "{d}");
        let answer = d["intake_answer"].as_str().unwrap_or_default();
        assert!(answer.contains("simulated permanent rejection"), "{d}");
        assert!(
            !answer.contains(common::localstack::INTAKE_KEY),
            "the key the intake echoed is masked: {d}"
        );
    }
    assert_eq!(
        stack.dlq_counts().await.total(),
        0,
        "the message was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_honours_retry_after_and_loses_nothing() {
    let (stack, intake) = TestStack::deploy_with_intake("intake-429").await;
    intake.set_mode_for_next(
        1,
        Mode::TooManyRequests {
            retry_after_secs: 3,
        },
    );
    // The normal backoff (50 ms first) is far below the 3 s the intake asks for.
    let daemon = RunningDaemon::start(stack.daemon_config(
        &intake,
        "[intake]\nretry_max_backoff_ms = 10000\nmax_retries = 5\n",
    ));

    stack
        .put_gzip(KEY, cloudfront_log(RECORDS - 3).as_bytes())
        .await;
    let events = wait_for_records_then_stop(&stack, &intake, daemon, KEY, RECORDS).await;

    let requests = intake.requests();
    assert_eq!(requests[0].status, Some(429), "{}", intake.describe());
    let waited = requests[1]
        .received_at
        .duration_since(requests[0].received_at);
    assert!(
        waited >= Duration::from_millis(2900),
        "the retry came {waited:?} after a 429 with Retry-After: 3\n{}",
        intake.describe()
    );
    assert_complete_and_deterministic(&events);
    assert_eq!(events.len(), RECORDS, "a retried batch is delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_are_retried() {
    let (stack, intake) = TestStack::deploy_with_intake("intake-reset").await;
    intake.set_mode_for_next(2, Mode::ResetConnection);
    let daemon = RunningDaemon::start(stack.daemon_config(&intake, ""));

    stack
        .put_gzip(KEY, cloudfront_log(RECORDS - 3).as_bytes())
        .await;
    let events = wait_for_records_then_stop(&stack, &intake, daemon, KEY, RECORDS).await;

    let dropped = intake
        .requests()
        .iter()
        .filter(|r| r.mode == Mode::ResetConnection && r.status.is_none())
        .count();
    assert_eq!(dropped, 2, "{}", intake.describe());
    assert_complete_and_deterministic(&events);
    assert_eq!(stack.dlq_counts().await.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_slower_than_the_timeout_is_retried() {
    let (stack, intake) = TestStack::deploy_with_intake("intake-timeout").await;
    intake.set_mode_for_next(1, Mode::Slow(Duration::from_secs(4)));
    let daemon =
        RunningDaemon::start(stack.daemon_config(&intake, "[intake]\ntimeout_seconds = 1\n"));

    stack
        .put_gzip(KEY, cloudfront_log(RECORDS - 3).as_bytes())
        .await;
    let events = wait_for_records_then_stop(&stack, &intake, daemon, KEY, RECORDS).await;

    let first = &intake.requests()[0];
    assert_eq!(
        (&first.mode, first.client_gave_up),
        (&Mode::Slow(Duration::from_secs(4)), true),
        "the first attempt hit the slow intake and the forwarder gave up on it\n{}",
        intake.describe()
    );
    // The slow attempt may still have been recorded after the client gave up:
    // duplicates are allowed, losses are not.
    assert_complete_and_deterministic(&events);
    assert_eq!(stack.dlq_counts().await.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_delivery_keeps_the_message_invisible() {
    let (stack, intake) = TestStack::deploy_with_intake("heartbeat").await;
    // Longer than the 10 s visibility timeout the daemon asks for: only its heartbeat
    // (every 3 s) keeps SQS from handing the message out again meanwhile.
    intake.set_mode(Mode::Slow(Duration::from_secs(14)));
    let daemon =
        RunningDaemon::start(stack.daemon_config(&intake, "[intake]\ntimeout_seconds = 30\n"));

    stack.put_gzip(KEY, cloudfront_log(0).as_bytes()).await;
    let events = wait_for_records(&intake, KEY, 3, Duration::from_secs(60)).await;
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    daemon.stop().await;

    assert_eq!(
        intake.requests().len(),
        1,
        "the message was redelivered while its first delivery was still running\n{}",
        intake.describe()
    );
    assert_eq!(events.len(), 3);
}
