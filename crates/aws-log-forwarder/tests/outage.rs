//! The intake's outage mode, end to end: an intake failing 30% of requests in every way
//! it can (500, 503, 429 with `Retry-After`, resets, a body read then a 500, a hang past
//! the client timeout), then fully down (connections refused, then 503) for longer than
//! `maxReceiveCount` x the visibility timeout. The promise under test: every event
//! arrives, no message reaches the dead-letter queue, the queue drains.
//!
//! (Crashes and restarts of the daemon are the chaos test's part.)
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use alf_formats::Format;
use common::intake::{Mode, Outage, TestIntake};
use common::localstack::TestStack;
use common::{RunningDaemon, cloudfront_log, event_id, parse_locally_as};

/// Generated records per object (plus 3 hand-written ones): one large object, still
/// being delivered when the outage starts, and two small ones.
const EXTRA_RECORDS: [usize; 3] = [12_000, 1_500, 1_500];
/// SQS visibility timeout of the base test config, seconds.
const VISIBILITY_SECS: u64 = 10;
const MAX_RECEIVE_COUNT: u64 = 2;

fn key(i: usize) -> String {
    format!("cloudfront/E2OUTAGEDIST{i:02}.2024-05-01-15.0a1b2c3{i}.gz")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_then_dead_intake_loses_nothing_and_dead_letters_nothing() {
    let stack = TestStack::deploy_with(
        "outage",
        &[("MaxReceiveCount", &MAX_RECEIVE_COUNT.to_string())],
    )
    .await;
    let intake = TestIntake::start().await;
    intake.set_keep_events(false);
    intake.set_mode(Mode::Chaos {
        seed: 0x5EED_0009,
        failure_per_mille: 300,
        hang: Duration::from_secs(3),
    });
    // The reference is parsed before the daemon starts: parsing 15k records on a
    // runtime thread would starve the daemon and the intake of this 2-thread runtime.
    let mut expected = BTreeSet::new();
    for (i, extra) in EXTRA_RECORDS.into_iter().enumerate() {
        let text = cloudfront_log(extra);
        stack.put_gzip(&key(i), text.as_bytes()).await;
        let etag = stack.etag(&key(i)).await;
        expected.extend(
            parse_locally_as(
                Format::CloudFront,
                &stack.bucket,
                &key(i),
                &etag,
                text.as_bytes(),
            )
            .iter()
            .map(event_id),
        );
    }
    let total: usize = EXTRA_RECORDS.iter().map(|n| n + 3).sum();
    assert_eq!(expected.len(), total);

    let started = Instant::now();
    let daemon = RunningDaemon::start(stack.daemon_config(
        &intake,
        "[intake]\ntimeout_seconds = 2\nmax_retries = 3\nretry_max_backoff_ms = 1000\n[batch]\nmax_events = 200\n",
    ));

    // Let some events through the flaky intake, then take it down completely for
    // longer than maxReceiveCount x the visibility timeout.
    let first_events = Instant::now();
    while intake.accepted_total() < 1_000 && first_events.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outage = Duration::from_secs(MAX_RECEIVE_COUNT * VISIBILITY_SECS + 5);
    let before_outage = intake.accepted_total();
    assert!(
        before_outage < total / 2,
        "the outage must start with most events undelivered ({before_outage} of {total})"
    );
    intake.set_outage(Some(Outage::Refuse));
    tokio::time::sleep(outage / 2).await;
    intake.set_outage(Some(Outage::ServiceUnavailable));
    tokio::time::sleep(outage / 2).await;
    assert_eq!(
        stack.dlq_counts().await.total(),
        0,
        "the outage walked a message to the DLQ"
    );
    intake.set_outage(None);

    // Every event arrives.
    let deadline = Instant::now() + Duration::from_secs(180);
    let missing = loop {
        let ids = intake.accepted_ids();
        let missing = expected.iter().filter(|id| !ids.contains_key(*id)).count();
        if missing == 0 || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(missing, 0, "events never arrived\n{}", intake.describe());
    stack.wait_queue_empty(Duration::from_secs(60)).await;
    let drained_after = started.elapsed();
    daemon.stop().await;

    let accepted = intake.accepted_total();
    let duplicates = intake.duplicates();
    let requests = intake.requests();
    let failed = requests.iter().filter(|r| r.status != Some(200)).count();
    eprintln!(
        "outage run: {total} events expected, {accepted} accepted, {duplicates} duplicates, \
         {} requests ({failed} failed), drained in {drained_after:?}",
        requests.len()
    );
    assert!(
        intake.accepted_ids().keys().all(|id| expected.contains(id)),
        "only expected events arrive"
    );
    assert_eq!(stack.dlq_counts().await.total(), 0, "nothing in the DLQ");
    let outage_failures = requests
        .iter()
        .filter(|r| r.mode == Mode::Fail503 && r.received_at > first_events)
        .count();
    assert!(
        failed > 0 && outage_failures > 0,
        "the intake did fail requests"
    );
    // Without crashes, duplicates come only from requests the intake stored but the
    // forwarder timed out on (a loaded machine): a few batches at most, never a
    // re-read object.
    assert!(
        duplicates * 10 < total,
        "{duplicates} duplicates for {total} events"
    );
}
