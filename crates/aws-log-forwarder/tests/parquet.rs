//! Parquet objects end to end: a VPC flow log delivered as Parquet, under both key
//! layouts AWS uses (the classic `AWSLogs/<account>/vpcflowlogs/...` and the Hive-style
//! `aws-account-id=.../aws-service=vpcflowlogs/...`), reaches the intake as the same
//! events its text twin gives; a damaged Parquet object fails its message until it is
//! dead-lettered and forwards nothing.
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use std::time::Duration;

use alf_formats::Format;
use alf_formats::columnar::write::{Codec, vpc_flow_text_to_parquet};
use common::intake::TestIntake;
use common::localstack::TestStack;
use common::{
    PIPELINE_TIMEOUT, RunningDaemon, has_tag, parse_locally_as, start_forwarding, wait_for_records,
};
use serde_json::Value;

const SAMPLE: &str = include_str!("../../../tests/samples/vpc-flow.log");

/// Drops what depends on a record's position in its object: ids hash the record
/// number (a line number in text, a row number in Parquet), and `log.offset` is the
/// byte offset in text but the row index in Parquet.
fn positionless(events: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = events
        .iter()
        .cloned()
        .map(|mut e| {
            e["event"].as_object_mut().unwrap().remove("id");
            e["log"].as_object_mut().unwrap().remove("offset");
            e
        })
        .collect();
    // Arrival order across batches is not guaranteed: compare as sorted sets.
    out.sort_by_key(|e| e.to_string());
    out
}

fn by_row(mut events: Vec<Value>) -> Vec<Value> {
    events.sort_by_key(|e| e["log"]["offset"].as_u64());
    events.dedup_by_key(|e| e["log"]["offset"].as_u64());
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_flow_parquet_arrives_as_the_events_of_its_text_twin() {
    let (stack, intake, daemon) = start_forwarding("parquet-vpc").await;

    let (parquet, rows) = vpc_flow_text_to_parquet(SAMPLE, Vec::new(), 4, Codec::Snappy).unwrap();
    assert_eq!(rows, 10);
    let keys = [
        "parquet-vpc/AWSLogs/123456789012/vpcflowlogs/us-east-1/2024/05/01/\
         123456789012_vpcflowlogs_us-east-1_fl-0a1b2c3d_20240501T1200Z_1a2b3c4d.log.parquet"
            .to_owned(),
        "parquet-vpc/AWSLogs/aws-account-id=123456789012/aws-service=vpcflowlogs/\
         aws-region=us-east-1/year=2024/month=05/day=01/hour=12/\
         123456789012_vpcflowlogs_us-east-1_fl-0a1b2c3d_20240501T1200Z_5e6f7a8b.log.parquet"
            .to_owned(),
    ];
    for key in &keys {
        stack.put_object(key, parquet.clone()).await;
    }
    for key in &keys {
        let arrived = by_row(wait_for_records(&intake, key, rows, PIPELINE_TIMEOUT).await);
        assert_eq!(arrived.len(), rows, "{key}");
        assert!(arrived.iter().all(|e| !has_tag(e, "_parse_failure")));
        assert!(
            arrived
                .iter()
                .all(|e| e["event"]["dataset"] == "aws.vpcflow")
        );
        // The text twin, parsed as the daemon would had it been delivered as text
        // under the same key: field for field the same events.
        let twin = parse_locally_as(Format::VpcFlow, &stack.bucket, key, "", SAMPLE.as_bytes());
        assert_eq!(twin.len(), rows);
        assert_eq!(positionless(&arrived), positionless(&twin), "{key}");
    }
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    daemon.stop().await;
    assert_eq!(stack.dlq_counts().await.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_parquet_object_is_dead_lettered_and_forwards_nothing() {
    let stack = TestStack::deploy_with("parquet-damaged", &[("MaxReceiveCount", "2")]).await;
    let intake = TestIntake::start().await;
    let daemon = RunningDaemon::start(stack.daemon_config(&intake, ""));

    let (parquet, _) = vpc_flow_text_to_parquet(SAMPLE, Vec::new(), 4, Codec::Snappy).unwrap();
    let key = "parquet-damaged/AWSLogs/123456789012/vpcflowlogs/us-east-1/2024/05/01/\
               123456789012_vpcflowlogs_us-east-1_fl-0a1b2c3d_20240501T1200Z_dead.log.parquet";
    // Cut before the footer: the writer never finished the file.
    stack
        .put_object(key, parquet[..parquet.len() / 2].to_vec())
        .await;
    stack.wait_dlq_messages(1, Duration::from_secs(90)).await;
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    daemon.stop().await;

    assert!(intake.events().is_empty(), "{}", intake.describe());
    let dead = stack.peek_dlq().await;
    assert!(
        dead.iter()
            .filter_map(|m| m.body())
            .any(|b| b.contains("ObjectCreated") && b.contains("_dead.log.parquet")),
        "the dead-lettered message is the object's notification: {dead:?}"
    );
}
