//! Several queues in one process, against LocalStack: `sqs.queue_url` and an
//! `[[sqs.queues]]` entry (another bucket's queue) share the intake and the batcher;
//! both are drained, every event is delivered, and the queue metrics carry the
//! `queue` label.
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use std::time::Duration;

use common::intake::TestIntake;
use common::localstack::TestStack;
use common::{PIPELINE_TIMEOUT, RunningDaemon, cloudfront_log, wait_for_records};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY_A: &str = "cloudfront/E2TESTDIST0001.2024-05-01-12.aaaa0001.gz";
const KEY_B: &str = "cloudfront/E2TESTDIST0002.2024-05-01-12.bbbb0002.gz";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn metrics_text(port: u16) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the metrics listener answers");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("send the metrics request");
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut text)).await;
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_queues_in_one_process_are_both_drained() {
    let first = TestStack::deploy("queues-a").await;
    let second = TestStack::deploy("queues-b").await;
    let intake = TestIntake::start().await;
    let port = free_port();
    let second_queue = "second";
    let config = first.daemon_config(
        &intake,
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\n[[sqs.queues]]\nurl = \"{url}\"\nname = \"{second_queue}\"\n",
            url = second.queue_url
        ),
    );
    assert_eq!(config.sqs.queues.len(), 1);
    let daemon = RunningDaemon::start(config);

    first.put_gzip(KEY_A, cloudfront_log(20).as_bytes()).await;
    second.put_gzip(KEY_B, cloudfront_log(30).as_bytes()).await;
    let from_a = wait_for_records(&intake, KEY_A, 23, PIPELINE_TIMEOUT).await;
    let from_b = wait_for_records(&intake, KEY_B, 33, PIPELINE_TIMEOUT).await;
    first.wait_queue_empty(PIPELINE_TIMEOUT).await;
    second.wait_queue_empty(PIPELINE_TIMEOUT).await;
    assert_eq!(from_a.len(), 23, "{}", intake.describe());
    assert_eq!(from_b.len(), 33, "{}", intake.describe());
    assert!(
        from_b
            .iter()
            .all(|e| common::str_field(e, "aws.s3.bucket.name") == Some(second.bucket.as_str()))
    );

    let first_queue = first.queue_url.rsplit('/').next().unwrap_or_default();
    let text = metrics_text(port).await;
    daemon.stop().await;
    for queue in [first_queue, second_queue] {
        let line = format!("alf_sqs_messages_deleted_total{{queue=\"{queue}\"}}");
        assert!(
            text.lines().any(|l| l.starts_with(&line)),
            "no {line} in the metrics:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("alf_events_parsed_total{dataset=\"aws.cloudfront_logs\"}")),
        "events parsed are labelled by dataset:\n{text}"
    );
    assert_eq!(first.dlq_counts().await.total(), 0);

    assert_eq!(second.dlq_counts().await.total(), 0);
}
