//! The other intake protocols, end to end: NDJSON and Elasticsearch `_bulk`, checked on
//! the wire (paths, headers, body framing) by the test intake.
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use common::localstack::{INTAKE_KEY, TestStack};
use common::{RunningDaemon, cloudfront_log, event_id, str_field, wait_for_records_then_stop};

const KEY: &str = "cloudfront/E2TESTDIST0001.2024-05-01-14.0badf00d.gz";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_protocol_posts_one_event_per_line_with_the_key_headers() {
    let (stack, intake) = TestStack::deploy_with_intake("proto-ndjson").await;
    let daemon = RunningDaemon::start(stack.daemon_config(
        &intake,
        &format!(
            "[intake]\nurl = \"{}/ingest\"\nprotocol = \"ndjson\"\ngzip = false\n",
            intake.url()
        ),
    ));

    stack.put_gzip(KEY, cloudfront_log(7).as_bytes()).await;
    let events = wait_for_records_then_stop(&stack, &intake, daemon, KEY, 10).await;

    assert_eq!(events.len(), 10);
    assert!(
        events
            .iter()
            .all(|e| str_field(e, "event.dataset") == Some("aws.cloudfront_logs"))
    );
    for r in intake.requests() {
        assert_eq!(
            r.path, "/ingest",
            "NDJSON goes to the URL as configured: {r:?}"
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/x-ndjson"),
            "{r:?}"
        );
        assert_eq!(r.header("x-intake-key"), Some(INTAKE_KEY), "{r:?}");
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {INTAKE_KEY}").as_str()),
            "{r:?}"
        );
        assert_eq!(r.header("content-encoding"), None, "gzip = false: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_protocol_with_zstd_sends_zstd_bodies_of_every_event() {
    let (stack, intake) = TestStack::deploy_with_intake("proto-zstd").await;
    let daemon = RunningDaemon::start(stack.daemon_config(
        &intake,
        &format!(
            "[intake]\nurl = \"{}/ingest\"\nprotocol = \"ndjson\"\ncompression = \"zstd\"\n",
            intake.url()
        ),
    ));

    stack.put_gzip(KEY, cloudfront_log(7).as_bytes()).await;
    let events = wait_for_records_then_stop(&stack, &intake, daemon, KEY, 10).await;

    assert_eq!(events.len(), 10);
    let mut ids: Vec<String> = events.iter().map(event_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10, "every event once");
    for r in intake.requests() {
        assert_eq!(r.header("content-encoding"), Some("zstd"), "{r:?}");
        assert!(
            r.body.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
            "a zstd frame"
        );
        let plain = r.plain_body();
        assert!(plain.len() > r.body_bytes, "compressed: {r:?}");
        assert_eq!(plain.iter().filter(|&&b| b == b'\n').count(), r.events);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_protocol_uses_bulk_create_with_the_index_and_api_key() {
    let (stack, intake) = TestStack::deploy_with_intake("proto-es").await;
    let daemon = RunningDaemon::start(stack.daemon_config(
        &intake,
        "[intake]\nprotocol = \"elasticsearch\"\nelasticsearch_index = \"logs-aws.test-default\"\n",
    ));

    stack.put_gzip(KEY, cloudfront_log(7).as_bytes()).await;
    let events = wait_for_records_then_stop(&stack, &intake, daemon, KEY, 10).await;

    assert_eq!(events.len(), 10);
    for r in intake.requests() {
        assert_eq!(r.path, "/_bulk", "{r:?}");
        assert_eq!(
            r.header("authorization"),
            Some(format!("ApiKey {INTAKE_KEY}").as_str()),
            "{r:?}"
        );
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{r:?}");
    }
    let actions = intake.bulk_actions();
    assert_eq!(actions.len(), 10, "one action per event");
    // `_id` = event.id: a redelivered event is refused by Elasticsearch as a duplicate.
    for (action, event) in actions.iter().zip(&intake.events()) {
        assert_eq!(
            *action,
            serde_json::json!({"create": {"_index": "logs-aws.test-default", "_id": event_id(event)}}),
            "data streams accept only `create`"
        );
    }
}
