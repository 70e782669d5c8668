//! Scaling out: several forwarders on one queue share the work (SQS hands each
//! notification to one of them), and a replica stopped in the middle of its work loses
//! nothing: what it had not finished is delivered by another.
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::intake::{Mode, TestIntake};
use common::localstack::TestStack;
use common::{
    PIPELINE_TIMEOUT, RunningDaemon, cloudfront_log, event_id, events_of_key, field, offsets,
    str_field,
};
use serde_json::Value;

const OBJECTS: usize = 8;
/// Records per object (3 hand-written + 17 generated).
const RECORDS: usize = 20;

fn key(i: usize) -> String {
    format!("cloudfront/E2REPLICA{i:05}.2024-05-01-12.abcd{i:04}.gz")
}

/// Distinct records (offsets) of `key` among `events`.
fn records_of(events: &[Value], key: &str) -> BTreeSet<u64> {
    offsets(&events_of_key(events, key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_queue_and_a_stopped_replica_loses_nothing() {
    let stack = TestStack::deploy("replicas").await;
    // Each replica ships to an intake of its own, so the test can tell who did what.
    // Replica A's intake is slow: A is still waiting for it when it is stopped.
    let intake_a = TestIntake::start().await;
    let intake_b = TestIntake::start().await;
    intake_a.set_mode(Mode::Slow(Duration::from_secs(3)));
    intake_b.set_mode(Mode::Slow(Duration::from_millis(200)));
    // No grace period: A abandons its in-flight messages at once when stopped.
    let replica_a =
        RunningDaemon::start(stack.daemon_config(&intake_a, "[sqs]\nshutdown_grace_seconds = 0"));
    let replica_b = RunningDaemon::start(stack.daemon_config(&intake_b, ""));

    let log = cloudfront_log(RECORDS - 3);
    for i in 0..OBJECTS {
        stack.put_gzip(&key(i), log.as_bytes()).await;
    }

    // A has objects in flight (its first batch is held by the slow intake) and is stopped
    // before any answer: none of A's messages may be deleted, all must be redelivered.
    intake_a.wait_for_arrivals(1, PIPELINE_TIMEOUT).await;
    replica_a.stop().await;
    assert!(
        intake_a.events().is_empty(),
        "replica A's intake answered before A was stopped: the test proves nothing\nA: {}",
        intake_a.describe()
    );

    // Every record of every object arrives, at one intake or the other.
    let started = Instant::now();
    let (events_a, events_b) = loop {
        let (a, b) = (intake_a.events(), intake_b.events());
        let all: Vec<Value> = a.iter().chain(b.iter()).cloned().collect();
        if (0..OBJECTS).all(|i| records_of(&all, &key(i)).len() == RECORDS) {
            break (a, b);
        }
        assert!(
            started.elapsed() < PIPELINE_TIMEOUT,
            "not every record arrived within {PIPELINE_TIMEOUT:?}\nA: {}\nB: {}",
            intake_a.describe(),
            intake_b.describe()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    replica_b.stop().await;
    let dlq = stack.dlq_counts().await;
    assert_eq!(dlq.total(), 0, "nothing may end in the dead-letter queue");

    // A was stopped while its intake still held its request, so A never saw an answer
    // and deleted nothing: B completed every object, A's included.
    let delivered_by_b = (0..OBJECTS)
        .filter(|&i| records_of(&events_b, &key(i)).len() == RECORDS)
        .count();
    assert_eq!(
        delivered_by_b,
        OBJECTS,
        "B must complete every object, A's included\nA: {}\nB: {}",
        intake_a.describe(),
        intake_b.describe()
    );

    // Copies of a record (A's slow intake may have accepted a batch A never saw answered)
    // carry the same event.id, so the intake can drop them.
    let mut ids: BTreeMap<(String, u64), BTreeSet<String>> = BTreeMap::new();
    for e in events_a.iter().chain(events_b.iter()) {
        let k = str_field(e, "aws.s3.object.key")
            .unwrap_or_default()
            .to_owned();
        let offset = field(e, "log.offset")
            .and_then(Value::as_u64)
            .unwrap_or_default();
        ids.entry((k, offset)).or_default().insert(event_id(e));
    }
    for ((k, offset), set) in &ids {
        assert_eq!(
            set.len(),
            1,
            "{k} offset {offset}: copies with different ids"
        );
    }
}
