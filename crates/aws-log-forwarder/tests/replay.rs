//! `aws-log-forwarder replay s3://BUCKET/PREFIX` as users run it (the binary, a real
//! LocalStack bucket, the real test intake): 50 objects of every log type under a
//! prefix arrive, every event exactly once; a replay killed with SIGKILL half-way and
//! started again with the same checkpoint finishes without re-sending the objects it had
//! recorded; a dry run counts per format and sends nothing; bad URLs, missing buckets
//! and corrupt checkpoints fail with one clear line.
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use alf_formats::Format;
use aws_log_forwarder::{Day, day_in_key};
use common::intake::{Mode, TestIntake};
use common::localstack::TestStack;
use common::{aws_key, delivered_gzipped, event_id, parse_locally_as};
use serde_json::Value;

const OBJECTS: usize = 50;
const PREFIX: &str = "history/";

fn samples() -> Vec<(Format, Vec<u8>)> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/samples"));
    let mut samples: Vec<(Format, Vec<u8>)> = Format::ALL
        .iter()
        .filter_map(|f| {
            std::fs::read(dir.join(format!("{}.log", f.name())))
                .ok()
                .map(|text| (*f, text))
        })
        .collect();
    // Only types the detector recognises from their own example key and content, so
    // the expected dataset and event ids are the ones the pipeline produces (a type
    // delivered in another's envelope, like Security Hub findings through EventBridge,
    // is detected as the envelope).
    let detector = alf_formats::FormatDetector::default();
    samples.retain(|(format, text)| {
        let head = &text[..text.len().min(alf_formats::detect::SNIFF_BYTES)];
        matches!(
            detector.decide("bucket", &aws_key(*format, "x"), head),
            alf_formats::Decision::Parse { format: detected, .. } if detected == *format
        )
    });
    samples.sort_by_key(|(f, _)| f.name());
    assert!(samples.len() >= 9, "tests/samples/ lacks sample logs");
    samples
}

/// One uploaded object and the event ids the intake must receive for it.
struct Uploaded {
    key: String,
    format: Format,
    ids: Vec<String>,
}

/// Uploads [`OBJECTS`] objects cycling through every sample type under [`PREFIX`] (keys
/// in AWS's layouts), plus one object outside the prefix that must never be sent.
async fn upload_history(stack: &TestStack) -> Vec<Uploaded> {
    let samples = samples();
    let mut uploaded = Vec::new();
    for i in 0..OBJECTS {
        let (format, text) = &samples[i % samples.len()];
        let key = format!("{PREFIX}{}", aws_key(*format, &format!("o{i}")));
        if delivered_gzipped(*format) {
            stack.put_gzip(&key, text).await;
        } else {
            stack.put_object(&key, text.clone()).await;
        }
        let etag = stack.etag(&key).await;
        let ids = parse_locally_as(*format, &stack.bucket, &key, &etag, text)
            .iter()
            .map(event_id)
            .collect::<Vec<_>>();
        assert!(!ids.is_empty(), "{key}: the sample has records");
        uploaded.push(Uploaded {
            key,
            format: *format,
            ids,
        });
    }
    let (format, text) = &samples[0];
    stack
        .put_gzip(&aws_key(*format, "outside-the-prefix"), text)
        .await;
    uploaded
}

/// How many uploaded objects hold each event id.
fn id_occurrences(uploaded: &[Uploaded]) -> HashMap<String, u32> {
    let mut occurrences: HashMap<String, u32> = HashMap::new();
    for u in uploaded {
        for id in &u.ids {
            *occurrences.entry(id.clone()).or_default() += 1;
        }
    }
    occurrences
}

/// Writes the test configuration (no `sqs.queue_url`: replay does not need one).
fn write_config(stack: &TestStack, intake: &TestIntake, dir: &Path) -> PathBuf {
    let mut config = stack.base_config_toml(intake);
    config
        .get_mut("sqs")
        .and_then(toml::Value::as_table_mut)
        .expect("[sqs]")
        .remove("queue_url");
    let path = dir.join("config.toml");
    std::fs::write(&path, toml::to_string(&config).expect("serialize")).expect("write config");
    path
}

fn replay_command(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aws-log-forwarder"));
    command
        .arg("replay")
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

/// Runs a replay to its end.
async fn replay(config: &Path, args: &[&str]) -> Output {
    let mut command = replay_command(config, args);
    tokio::task::spawn_blocking(move || command.output().expect("run replay"))
        .await
        .expect("join")
}

/// Runs a replay that must fail, and returns its stderr.
async fn replay_failure(config: &Path, args: &[&str]) -> String {
    let output = replay(config, args).await;
    assert!(!output.status.success(), "the replay must fail: {output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The JSON summary a replay prints on stdout (not a terminal).
fn summary(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "replay printed no JSON summary ({e}): stdout {stdout:?}\nstderr {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn checkpoint_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("checkpoint lines are JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_prefix_delivers_every_event_exactly_once() {
    let stack = TestStack::deploy("replay-once").await;
    let intake = TestIntake::start().await;
    let uploaded = upload_history(&stack).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&stack, &intake, dir.path());

    // A dry run lists and counts, sends nothing.
    let url = format!("s3://{}/{PREFIX}", stack.bucket);
    let dry = replay(&config, &[&url, "--dry-run"]).await;
    assert!(dry.status.success(), "dry run failed: {dry:?}");
    let dry = summary(&dry);
    assert_eq!(dry["listed"], OBJECTS as u64, "{dry}");
    let mut per_format: BTreeMap<String, u64> = BTreeMap::new();
    for u in &uploaded {
        *per_format.entry(u.format.name().to_owned()).or_default() += 1;
    }
    for (format, n) in &per_format {
        assert_eq!(dry["formats"][format]["objects"], *n, "{format}: {dry}");
    }
    // --since/--until on the key's date (AWS's layouts), else on LastModified (keys
    // without a date: uploaded just now, after every dated key). The day parsing itself
    // is unit-tested; this checks which date each object is filtered on.
    let days: Vec<Option<Day>> = uploaded.iter().map(|u| day_in_key(&u.key)).collect();
    let mut dated: Vec<Day> = days.iter().flatten().copied().collect();
    dated.sort();
    let undated = days.iter().filter(|d| d.is_none()).count() as u64;
    assert!(undated > 0 && !dated.is_empty(), "{days:?}");
    let pivot = dated[dated.len() / 2];
    let pivot_text = pivot.to_string();
    let until = summary(&replay(&config, &[&url, "--dry-run", "--until", &pivot_text]).await);
    let later = dated.iter().filter(|d| **d > pivot).count() as u64;
    assert_eq!(until["filtered_out"], later + undated, "{until}");
    let same_day = summary(
        &replay(
            &config,
            &[
                &url,
                "--dry-run",
                "--since",
                &pivot_text,
                "--until",
                &pivot_text,
            ],
        )
        .await,
    );
    let other_days = dated.iter().filter(|d| **d != pivot).count() as u64;
    assert_eq!(same_day["filtered_out"], other_days + undated, "{same_day}");
    let last = dated[dated.len() - 1];
    let after_last = Day {
        day: 1,
        month: 1,
        year: last.year + 1,
    }
    .to_string();
    let recent = summary(&replay(&config, &[&url, "--dry-run", "--since", &after_last]).await);
    assert_eq!(recent["filtered_out"], dated.len() as u64, "{recent}");
    let cloudtrail =
        summary(&replay(&config, &[&url, "--dry-run", "--format", "cloudtrail"]).await);
    assert_eq!(
        cloudtrail["filtered_out"],
        (OBJECTS as u64) - per_format["cloudtrail"],
        "{cloudtrail}"
    );
    assert_eq!(
        cloudtrail["formats"]["cloudtrail"]["objects"],
        per_format["cloudtrail"]
    );
    assert_eq!(intake.accepted_total(), 0, "a dry run sends nothing");

    let output = replay(&config, &[&url]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "replay failed: {output:?}");
    let summary = summary(&output);
    let expected: usize = uploaded.iter().map(|u| u.ids.len()).sum();
    assert_eq!(summary["delivered"], OBJECTS as u64, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["events"], expected as u64, "{summary}");

    // Types whose event.id is AWS's own record id (CloudTrail eventID, GuardDuty
    // finding id) share ids between the copies of one sample: each id must arrive once
    // per object holding it.
    let occurrences = id_occurrences(&uploaded);
    let accepted = intake.accepted_ids();
    for u in &uploaded {
        for id in &u.ids {
            assert_eq!(
                accepted.get(id).copied(),
                Some(occurrences[id]),
                "{}: event {id} must arrive exactly once per object holding it\n{stderr}",
                u.key
            );
        }
    }
    assert_eq!(
        intake.accepted_total(),
        expected,
        "nothing but the prefix's events (the object outside it is not sent)"
    );
    // Without a terminal: JSON progress lines (every few seconds, and a last one).
    let last_progress = stderr
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("progress").is_some())
        .unwrap_or_else(|| panic!("no JSON progress line on stderr: {stderr}"));
    assert_eq!(last_progress["progress"]["finished"], OBJECTS as u64);
    assert_eq!(last_progress["progress"]["events"], expected as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replay_resumes_from_its_checkpoint_without_resending_finished_objects() {
    let stack = TestStack::deploy("replay-resume").await;
    let intake = TestIntake::start().await;
    // Slow enough that SIGKILL lands half-way.
    intake.set_mode(Mode::Slow(Duration::from_millis(400)));
    let uploaded = upload_history(&stack).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&stack, &intake, dir.path());
    let checkpoint = dir.path().join("replay.checkpoint");
    let checkpoint_arg = checkpoint.display().to_string();
    let url = format!("s3://{}/{PREFIX}", stack.bucket);

    let mut child: Child = replay_command(&config, &[&url, "--checkpoint", &checkpoint_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start replay");
    let started = Instant::now();
    while checkpoint_lines(&checkpoint).len() < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no object finished within 60 s"
        );
        assert!(
            child.try_wait().expect("poll").is_none(),
            "replay ended early"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().expect("SIGKILL the replay");
    child.wait().expect("reap");
    let finished: HashSet<String> = checkpoint_lines(&checkpoint)
        .iter()
        .map(|l| l["key"].as_str().expect("key").to_owned())
        .collect();
    assert!(
        finished.len() < OBJECTS,
        "killed half-way, not after the end ({} finished)",
        finished.len()
    );
    // What the intake had for each finished object when the replay died.
    let before: HashMap<String, u32> = intake.accepted_ids();

    intake.set_mode(Mode::Accept);
    let output = replay(&config, &[&url, "--checkpoint", &checkpoint_arg]).await;
    assert!(output.status.success(), "resumed replay failed: {output:?}");
    let summary = summary(&output);
    assert_eq!(summary["already_done"], finished.len() as u64, "{summary}");
    assert_eq!(
        summary["delivered"],
        (OBJECTS - finished.len()) as u64,
        "{summary}"
    );
    assert_eq!(checkpoint_lines(&checkpoint).len(), OBJECTS);

    let after = intake.accepted_ids();
    let occurrences = id_occurrences(&uploaded);
    let mut checked_unique = 0;
    for u in &uploaded {
        for id in &u.ids {
            let count = after.get(id).copied().unwrap_or(0);
            assert!(
                count >= occurrences[id],
                "{}: event {id} arrived {count} times, fewer than the {} objects holding it",
                u.key,
                occurrences[id]
            );
            // Ids shared between objects (AWS's own record ids) cannot tell which
            // object was re-sent; every other type's ids can.
            if finished.contains(&u.key) && occurrences[id] == 1 {
                checked_unique += 1;
                assert_eq!(
                    count,
                    before.get(id).copied().unwrap_or(0),
                    "{}: finished before the kill, its event {id} was sent again",
                    u.key
                );
                assert_eq!(count, 1, "{}: event {id}", u.key);
            }
        }
    }
    assert!(
        checked_unique > 0,
        "some finished objects had ids of their own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_missing_buckets_and_corrupt_checkpoints_fail_with_one_clear_line() {
    let stack = TestStack::deploy("replay-errors").await;
    let intake = TestIntake::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&stack, &intake, dir.path());

    let stderr = replay_failure(&config, &["https://example.com/logs"]).await;
    assert!(
        stderr.contains("is not an S3 URL: write s3://BUCKET or s3://BUCKET/PREFIX"),
        "{stderr}"
    );

    let stderr = replay_failure(&config, &["s3://alf-no-such-bucket-for-replay/x/"]).await;
    assert!(
        stderr.contains("bucket alf-no-such-bucket-for-replay does not exist"),
        "{stderr}"
    );

    let checkpoint = dir.path().join("corrupt.checkpoint");
    std::fs::write(
        &checkpoint,
        "{\"bucket\":\"b\",\"key\":\"k\",\"etag\":\"e\"}\nnot json\n",
    )
    .expect("write");
    let url = format!("s3://{}/", stack.bucket);
    let checkpoint_arg = checkpoint.display().to_string();
    let stderr = replay_failure(&config, &[&url, "--checkpoint", &checkpoint_arg]).await;
    assert!(
        stderr.contains("is corrupt at line 2") && stderr.contains("delete the file"),
        "{stderr}"
    );
    assert_eq!(intake.accepted_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_rules_remove_only_matching_events_and_count_them_per_rule() {
    let stack = TestStack::deploy("replay-drop").await;
    let intake = TestIntake::start().await;
    let samples = samples();
    let mut expected_kept = Vec::new();
    let (mut read_only, mut accepted) = (0u64, 0u64);
    for format in [Format::CloudTrail, Format::VpcFlow, Format::CloudFront] {
        let (_, text) = samples
            .iter()
            .find(|(f, _)| *f == format)
            .expect("sample present");
        let key = format!("drop/{}", aws_key(format, "d"));
        stack.put_gzip(&key, text).await;
        let etag = stack.etag(&key).await;
        for event in parse_locally_as(format, &stack.bucket, &key, &etag, text) {
            let dataset = common::str_field(&event, "event.dataset");
            if dataset == Some("aws.cloudtrail")
                && common::field(&event, "aws.cloudtrail.read_only") == Some(&Value::Bool(true))
            {
                read_only += 1;
            } else if dataset == Some("aws.vpcflow")
                && common::str_field(&event, "event.action") == Some("ACCEPT")
            {
                accepted += 1;
            } else {
                expected_kept.push(event_id(&event));
            }
        }
    }
    assert!(
        read_only > 0 && accepted > 0,
        "the samples hold events to drop"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = stack.base_config_toml(&intake);
    config
        .get_mut("sqs")
        .and_then(toml::Value::as_table_mut)
        .expect("[sqs]")
        .remove("queue_url");
    let rules: toml::Table = r#"
[[processing.drop]]
name = "cloudtrail-read-only"
dataset = "aws.cloudtrail"
field = "aws.cloudtrail.read_only"
equals = "true"

[[processing.drop]]
dataset = "aws.vpcflow"
field = "event.action"
equals = "ACCEPT"
"#
    .parse()
    .expect("TOML");
    config
        .get_mut("processing")
        .and_then(toml::Value::as_table_mut)
        .expect("[processing]")
        .insert("drop".into(), rules["processing"]["drop"].clone());
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml::to_string(&config).expect("serialize")).expect("write");

    let output = replay(&path, &[&format!("s3://{}/drop/", stack.bucket)]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{output:?}");
    let summary = summary(&output);
    assert_eq!(summary["dropped"], read_only + accepted, "{summary}");
    assert_eq!(summary["events"], expected_kept.len() as u64, "{summary}");

    let accepted_ids = intake.accepted_ids();
    assert_eq!(intake.accepted_total(), expected_kept.len());
    for id in &expected_kept {
        assert_eq!(accepted_ids.get(id), Some(&1), "kept event {id}");
    }
    // Never silent: each object's log line counts its drops per rule.
    assert!(
        stderr.contains(&format!(
            "dropped_by_rule=\"cloudtrail-read-only={read_only}\""
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("dropped_by_rule=\"drop[1]={accepted}\"")),
        "{stderr}"
    );
}
