//! `aws.assume_role_arn` against LocalStack's STS: the credentials the process ends up
//! with are the role's (GetCallerIdentity names the assumed role and its session), and a
//! replay configured with a role reads the bucket and delivers through it.
//!
//! LocalStack does not enforce trust policies or external ids, so the refusal paths
//! (no trust, wrong external id) cannot be exercised here; their message is checked in
//! the unit tests of the error type.
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use aws_log_forwarder::{Config, assume_configured_role};
use common::intake::TestIntake;
use common::localstack::{TestStack, sdk_config};
use common::{aws_key, event_id, parse_locally_as};

/// Who `sdk`'s credentials are (STS GetCallerIdentity); `what` names them on failure.
async fn caller_identity(
    sdk: &aws_config::SdkConfig,
    what: &str,
) -> aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityOutput {
    aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

fn aws_config(extra: &str) -> Result<Config, String> {
    Config::from_toml_str(&format!(
        "[aws]\n{extra}\n[sqs]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/q\"\n\
         [intake]\nurl = \"http://127.0.0.1:1\"\nprotocol = \"ndjson\"\n"
    ))
    .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_acts_as_the_assumed_role() {
    let config = aws_config(
        "assume_role_arn = \"arn:aws:iam::111111111111:role/log-archive-reader\"\n\
         external_id = \"org-42\"\nsession_name = \"alf-test\"",
    )
    .expect("valid");
    let base = sdk_config().await;
    let base_identity = caller_identity(&base, "base identity").await;
    let assumed = assume_configured_role(base, &config.aws)
        .await
        .expect("assume the role");
    let identity = caller_identity(&assumed, "assumed identity").await;
    let arn = identity.arn().unwrap_or_default();
    assert_ne!(identity.arn(), base_identity.arn());
    assert_eq!(identity.account(), Some("111111111111"), "{identity:?}");
    assert!(
        arn.contains("assumed-role/log-archive-reader/alf-test"),
        "the S3/SQS clients would act as {arn}"
    );

    // Without a role, the configuration leaves the credentials alone.
    let plain = aws_config("").expect("valid");
    let same = assume_configured_role(sdk_config().await, &plain.aws)
        .await
        .expect("no role");
    let identity = caller_identity(&same, "identity").await;
    assert_eq!(identity.arn(), base_identity.arn());
}

#[test]
fn role_settings_are_checked_with_one_line_errors() {
    let e = aws_config("assume_role_arn = \"log-archive-reader\"").unwrap_err();
    assert!(
        e.starts_with("aws.assume_role_arn:") && e.contains("not an IAM role ARN"),
        "{e}"
    );
    let e = aws_config("assume_role_arn = \"arn:aws:iam::111111111111:user/bob\"").unwrap_err();
    assert!(e.contains("not an IAM role ARN"), "{e}");
    let e = aws_config("external_id = \"x\"").unwrap_err();
    assert!(
        e.starts_with("aws.external_id: only used with aws.assume_role_arn"),
        "{e}"
    );
    let e = aws_config(
        "assume_role_arn = \"arn:aws:iam::111111111111:role/r\"\nsession_name = \"has space\"",
    )
    .unwrap_err();
    assert!(e.starts_with("aws.session_name:"), "{e}");
    let c = aws_config(
        "assume_role_arn = \"arn:aws:iam::111111111111:role/r\"\nexternal_id = \"org-secret-42\"",
    )
    .expect("valid");
    assert_eq!(c.aws.session_name, "aws-log-forwarder");
    let shown = c.masked_toml();
    assert!(shown.contains("assume_role_arn = \"arn:aws:iam::111111111111:role/r\""));
    assert!(!shown.contains("org-secret-42"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_with_a_role_reads_the_bucket_and_delivers() {
    let stack = TestStack::deploy("assume-role").await;
    let intake = TestIntake::start().await;
    let text = common::cloudfront_log(2);
    let key = format!("roles/{}", aws_key(alf_formats::Format::CloudFront, "r"));
    stack.put_gzip(&key, text.as_bytes()).await;
    let etag = stack.etag(&key).await;
    let expected: Vec<String> = parse_locally_as(
        alf_formats::Format::CloudFront,
        &stack.bucket,
        &key,
        &etag,
        text.as_bytes(),
    )
    .iter()
    .map(event_id)
    .collect();

    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = stack.base_config_toml(&intake);
    let aws = config
        .get_mut("aws")
        .and_then(toml::Value::as_table_mut)
        .expect("[aws]");
    aws.insert(
        "assume_role_arn".into(),
        "arn:aws:iam::000000000000:role/alf-log-reader".into(),
    );
    aws.insert("session_name".into(), "alf-replay".into());
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml::to_string(&config).expect("serialize")).expect("write");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_aws-log-forwarder"))
        .args([
            "replay",
            &format!("s3://{}/roles/", stack.bucket),
            "--config",
        ])
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .expect("run replay");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stderr.contains("assumed arn:aws:iam::000000000000:role/alf-log-reader for S3 and SQS"),
        "{stderr}"
    );
    let accepted = intake.accepted_ids();
    for id in &expected {
        assert_eq!(accepted.get(id), Some(&1), "{id}");
    }
    assert_eq!(intake.accepted_total(), expected.len());
}
