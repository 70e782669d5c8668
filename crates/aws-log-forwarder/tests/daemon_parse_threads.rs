//! `processing.parse_threads` against LocalStack: one CloudFront object forwarded by a
//! daemon parsing it on one thread and by one parsing it in blocks on two workers. The
//! intake must receive the same events (ids, offsets, every byte), each once, and the
//! message must be deleted in both cases. (That the batcher gets the very same chunks,
//! in the same order and with the same event numbers, is the unit test
//! `pipeline::tests::two_parse_threads_deliver_what_one_does`.)
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use std::time::Duration;

use alf_bench::Kind;
use common::intake::TestIntake;
use common::localstack::TestStack;
use common::{RunningDaemon, aws_key, event_id, gzip, wait_for_records};

const RECORDS: u64 = 6_000;

/// The serialized events the intake accepted for one object forwarded with `threads`
/// parse threads, sorted. The object is uploaded again under the same key (same
/// content, same ETag) for each run, so event ids can be compared.
async fn forward(stack: &TestStack, threads: usize, body: &[u8]) -> Vec<String> {
    let intake = TestIntake::start().await;
    let config = stack.daemon_config(
        &intake,
        &format!("[processing]\nparse_threads = {threads}\nobject_concurrency = 1"),
    );
    assert_eq!(config.processing.parse_workers(), threads);
    let daemon = RunningDaemon::start(config);
    let key = aws_key(Kind::CloudFront.format(), "parse-threads");
    stack.put_object(&key, body.to_vec()).await;
    let events = wait_for_records(
        &intake,
        &key,
        RECORDS as usize + 1,
        Duration::from_secs(300),
    )
    .await;
    stack.wait_queue_empty(Duration::from_secs(120)).await;
    daemon.stop().await;
    let mut ids: Vec<String> = events.iter().map(event_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        events.len(),
        "{threads} threads: an event arrived twice"
    );
    let mut texts: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    texts.sort();
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_and_two_parse_threads_forward_the_same_events() {
    let stack = TestStack::deploy("parse-threads").await;
    let mut text = alf_bench::generate(Kind::CloudFront, RECORDS, 11);
    // A record that does not parse: forwarded raw, at its line number, either way.
    text.extend_from_slice(b"this is not a CloudFront record\n");
    let body = gzip(&text);
    let one = forward(&stack, 1, &body).await;
    let two = forward(&stack, 2, &body).await;
    assert_eq!(one.len(), RECORDS as usize + 1);
    assert!(one.iter().any(|e| e.contains("_parse_failure")));
    assert!(one == two, "the two daemons forwarded different events");
}
