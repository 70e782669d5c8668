//! `[[aws.buckets]]` against LocalStack: the log-archive layout, where the queue is in
//! one account and the bucket in another. The bucket is created and written as the
//! archive account's role (through LocalStack's STS); the daemon assumes that role for
//! it at start (failing to start if it cannot) and delivers its objects.
//!
//! LocalStack does not enforce IAM (bucket names are global and readable by any
//! account), so "the base credentials cannot read it" cannot be shown here; that the
//! bucket's own client is the one used is shown by
//! `the_buckets_own_client_reads_its_objects`, where the default client cannot reach S3
//! at all.
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use aws_log_forwarder::Config;
use aws_log_forwarder::assume_configured_role;
use common::intake::TestIntake;
use common::localstack::{TestStack, sdk_config};
use common::{PIPELINE_TIMEOUT, RunningDaemon, cloudfront_log, gzip, wait_for_records};

const ROLE: &str = "arn:aws:iam::111111111111:role/log-archive-reader";
const KEY: &str = "cloudfront/E2ARCHIVE0001.2024-05-01-12.c0ffee01.gz";

/// An S3 client acting as `ROLE` (in the archive account).
async fn archive_s3() -> aws_sdk_s3::Client {
    let settings = Config::from_toml_str(&format!(
        "[aws]\nassume_role_arn = \"{ROLE}\"\n[sqs]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/q\"\n\
         [intake]\nurl = \"http://127.0.0.1:1\"\nprotocol = \"ndjson\"\n"
    ))
    .expect("valid");
    let assumed = assume_configured_role(sdk_config().await, &settings.aws)
        .await
        .expect("assume the archive role");
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&assumed)
            .force_path_style(true)
            .build(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_in_another_account_is_read_with_its_own_role() {
    let stack = TestStack::deploy("bucket-role").await;
    let intake = TestIntake::start().await;
    let archive = archive_s3().await;
    let bucket = format!("{}-archive", stack.bucket);
    archive
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create the archive bucket as the role");
    let body = gzip(cloudfront_log(5).as_bytes());
    let size = body.len();
    archive
        .put_object()
        .bucket(&bucket)
        .key(KEY)
        .body(body.into())
        .send()
        .await
        .expect("put the log object as the role");
    let config = stack.daemon_config(
        &intake,
        &format!(
            "[[aws.buckets]]\nname = \"{bucket}\"\nassume_role_arn = \"{ROLE}\"\nexternal_id = \"org-42\"\n"
        ),
    );
    let daemon = RunningDaemon::start(config);
    stack
        .send_message(&format!(
            r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"{bucket}"}},"object":{{"key":"{KEY}","size":{size}}}}}}}]}}"#
        ))
        .await;
    let events = wait_for_records(&intake, KEY, 8, PIPELINE_TIMEOUT).await;
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    daemon.stop().await;
    assert_eq!(events.len(), 8, "{}", intake.describe());
    assert!(
        events
            .iter()
            .all(|e| common::str_field(e, "aws.s3.bucket.name") == Some(bucket.as_str()))
    );
    assert_eq!(stack.dlq_counts().await.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buckets_own_client_reads_its_objects() {
    use aws_log_forwarder::ObjectFetcher;
    use aws_log_forwarder::ObjectRef;

    let archive = archive_s3().await;
    let bucket = format!("alf-bucket-role-{}", std::process::id());
    archive
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create the bucket");
    archive
        .put_object()
        .bucket(&bucket)
        .key(KEY)
        .body(b"hello".to_vec().into())
        .send()
        .await
        .expect("put");
    // The default client points nowhere: only the bucket's own client can succeed.
    let nowhere = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk_config().await)
            .endpoint_url("http://127.0.0.1:1")
            .force_path_style(true)
            .build(),
    );
    let object = |bucket: &str| ObjectRef {
        bucket: bucket.to_owned(),
        key: KEY.to_owned(),
        version_id: None,
        etag: None,
        size: None,
    };
    let plain = ObjectFetcher::new(nowhere.clone());
    assert!(plain.open(&object(&bucket)).await.is_err());
    let by_bucket =
        std::sync::Arc::new(std::collections::HashMap::from([(bucket.clone(), archive)]));
    let fetcher = ObjectFetcher::new(nowhere).with_bucket_clients(by_bucket);
    assert!(fetcher.open(&object(&bucket)).await.is_ok());
    assert!(
        fetcher.open(&object("some-other-bucket")).await.is_err(),
        "other buckets use the default client"
    );
}

#[test]
fn bucket_roles_are_checked() {
    let e = Config::from_toml_str(
        "[aws]\n[[aws.buckets]]\nname = \"b\"\nassume_role_arn = \"reader\"\n[[aws.buckets]]\nname = \"b\"\nassume_role_arn = \"arn:aws:iam::111111111111:role/r\"\nexternal_idd = \"x\"\n\
         [sqs]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/q\"\n[intake]\nurl = \"http://127.0.0.1:1\"\nprotocol = \"ndjson\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("external_idd"), "{e}");
    let e = Config::from_toml_str(
        "[aws]\n[[aws.buckets]]\nname = \"b\"\nassume_role_arn = \"reader\"\n[[aws.buckets]]\nname = \"b\"\nassume_role_arn = \"arn:aws:iam::111111111111:role/r\"\n\
         [sqs]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/q\"\n[intake]\nurl = \"http://127.0.0.1:1\"\nprotocol = \"ndjson\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("aws.buckets[0].assume_role_arn: \"reader\" is not an IAM role ARN"),
        "{e}"
    );
    assert!(e.contains("aws.buckets[1].name: b is listed twice"), "{e}");
}
