//! Checkpoints against LocalStack and the real binary: a daemon SIGKILLed in the middle
//! of a large CloudFront object, then restarted, sends again at most about one
//! checkpoint interval of events instead of everything it had delivered.
//!
//! Scale: `ALF_CHECKPOINT_RECORDS` records (default 40,000: a debug build on two shared
//! cores forwards a few thousand events a second). The comparison without checkpoints
//! is `checkpoint_off_resends_the_delivered_prefix` (ignored: it only measures; run it
//! with `--ignored`).
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use alf_bench::Kind;
use common::intake::{Mode, TestIntake};
use common::localstack::TestStack;
use common::{
    DaemonProcess, RunningDaemon, aws_key, cloudfront_log, expected_event_ids, gzip,
    wait_for_records_then_stop,
};

const RECORDS: u64 = 40_000;
const INTERVAL_SECONDS: u64 = 1;
/// Time for each phase: 300 s, more for a larger object (a debug build forwards a few
/// thousand events a second).
fn timeout() -> Duration {
    Duration::from_secs((records() / 2_000).max(300))
}

fn records() -> u64 {
    alf_bench::env_count("ALF_CHECKPOINT_RECORDS", RECORDS)
}

/// What one kill-and-restart run measured.
struct KillRun {
    total: usize,
    /// Distinct expected events delivered when the daemon was killed.
    before_kill: usize,
    duplicates: u64,
    /// Events per second delivered before the kill.
    rate: f64,
    second_logs: String,
    checkpoint_files_left: usize,
}

/// How the first daemon ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// SIGKILL: no shutdown at all.
    Kill,
    /// SIGTERM with a 1 s grace period, too short for the object to finish: the intake
    /// slows down when the stop is sent, so that it is whatever the machine's speed.
    Term,
}

async fn kill_in_the_middle(name: &str, checkpoints: bool, ending: Ending) -> KillRun {
    let stack = TestStack::deploy(name).await;
    let intake = TestIntake::start().await;
    intake.set_keep_events(false);
    // The first daemon must still be in the middle of the object when it is stopped,
    // however fast the machine (an idle one forwarded all 40,000 events of a debug
    // build in 2.4 s): each request takes a quarter of a second, so 4 in flight of 500
    // events deliver at most 8,000 a second. The second daemon gets a prompt intake.
    intake.set_mode(Mode::Slow(Duration::from_millis(250)));
    let checkpoint_dir = tempfile::tempdir().expect("temp dir");
    let mut config = stack.base_config_toml(&intake);
    if checkpoints {
        let mut table = toml::Table::new();
        table.insert(
            "directory".into(),
            checkpoint_dir.path().display().to_string().into(),
        );
        table.insert("interval_seconds".into(), (INTERVAL_SECONDS as i64).into());
        table.insert("min_object_bytes".into(), 0.into());
        config.insert("checkpoint".into(), toml::Value::Table(table));
    }
    if let Some(sqs) = config.get_mut("sqs").and_then(toml::Value::as_table_mut) {
        sqs.insert("shutdown_grace_seconds".into(), 1.into());
    }

    let text = alf_bench::generate(Kind::CloudFront, records(), 42);
    let key = aws_key(Kind::CloudFront.format(), name);
    stack.put_object(&key, gzip(&text)).await;
    let etag = stack.etag(&key).await;
    let bucket = stack.bucket.clone();
    let expected = {
        let key = key.clone();
        tokio::task::spawn_blocking(move || {
            expected_event_ids(Kind::CloudFront.format(), &bucket, &key, &etag, &text)
                .into_iter()
                .collect::<HashSet<String>>()
        })
        .await
        .expect("local parse")
    };
    let total = expected.len();
    let arrived = || {
        let ids = intake.accepted_ids();
        expected.iter().filter(|id| ids.contains_key(*id)).count()
    };

    let first = DaemonProcess::start(&config, &[]);
    let started = Instant::now();
    let mut first_arrival: Option<Instant> = None;
    while arrived() < total * 2 / 5 {
        assert!(
            started.elapsed() < timeout(),
            "40% not delivered in time: {}",
            intake.describe()
        );
        if first_arrival.is_none() && intake.accepted_total() > 0 {
            first_arrival = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let at least one checkpoint interval pass with deliveries going on.
    tokio::time::sleep(Duration::from_millis(INTERVAL_SECONDS * 1500)).await;
    let out = match ending {
        Ending::Kill => first.kill().await,
        Ending::Term => {
            // The requests sent from now on take longer than the grace period.
            intake.set_mode(Mode::Slow(Duration::from_secs(3)));
            first.stop().await
        }
    };
    let before_kill = arrived();
    intake.set_mode(Mode::Accept);
    let sending = first_arrival.map_or(started, |t| t).elapsed();
    let rate = before_kill as f64 / sending.as_secs_f64().max(0.1);
    assert!(
        before_kill < total,
        "the object was done before the kill (raise ALF_CHECKPOINT_RECORDS)\n{}",
        out.logs
    );

    let second = DaemonProcess::start(&config, &[]);
    while arrived() < total {
        assert!(
            started.elapsed() < timeout(),
            "not every event arrived: {}",
            intake.describe()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.wait_queue_empty(Duration::from_secs(60)).await;
    let out = second.stop().await;
    assert!(out.status.success(), "{}", out.logs);
    let ids = intake.accepted_ids();
    let delivered: u64 = expected
        .iter()
        .filter_map(|id| ids.get(id))
        .map(|&n| u64::from(n))
        .sum();
    let checkpoint_files_left = std::fs::read_dir(checkpoint_dir.path())
        .map(|d| d.count())
        .unwrap_or(0);
    KillRun {
        total,
        before_kill,
        duplicates: delivered - total as u64,
        rate,
        second_logs: out.logs,
        checkpoint_files_left,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_object_resumes_from_its_checkpoint() {
    let run = kill_in_the_middle("checkpoint-on", true, Ending::Kill).await;
    eprintln!(
        "checkpoints on: {} events, {} delivered before the SIGKILL ({:.0}/s), {} duplicates ({:.1}%)",
        run.total,
        run.before_kill,
        run.rate,
        run.duplicates,
        100.0 * run.duplicates as f64 / run.total as f64
    );
    assert!(
        run.second_logs.contains("resuming") && run.second_logs.contains("from its checkpoint"),
        "the restarted daemon resumed from the checkpoint:\n{}",
        run.second_logs
    );
    // At most one interval of events (the last checkpoint is up to an interval old),
    // plus the batches in flight (4 requests x 500 events) and a second of slack for
    // the write itself; never the whole delivered prefix again.
    let bound = run.rate * (INTERVAL_SECONDS as f64 + 1.0) + 2_000.0;
    assert!(
        (run.duplicates as f64) <= bound && (run.duplicates as usize) < run.before_kill / 2,
        "{} duplicates, more than about one checkpoint interval ({bound:.0}) of the {} events delivered before the kill",
        run.duplicates,
        run.before_kill
    );
    assert_eq!(
        run.checkpoint_files_left, 0,
        "a finished object's checkpoint is deleted"
    );
}

/// The comparison for the closing note: without checkpoints everything delivered
/// before the kill is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement only (run with --ignored)"]
async fn checkpoint_off_resends_the_delivered_prefix() {
    let run = kill_in_the_middle("checkpoint-off", false, Ending::Kill).await;
    eprintln!(
        "checkpoints off: {} events, {} delivered before the SIGKILL ({:.0}/s), {} duplicates ({:.1}%)",
        run.total,
        run.before_kill,
        run.rate,
        run.duplicates,
        100.0 * run.duplicates as f64 / run.total as f64
    );
    assert!(run.duplicates as usize >= run.before_kill);
}

/// A SIGTERM whose grace period is too short for the object: the checkpoint written on
/// the way out holds everything delivered, so only the batches in flight come again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_object_writes_its_checkpoint_on_the_way_out() {
    let run = kill_in_the_middle("checkpoint-term", true, Ending::Term).await;
    eprintln!(
        "checkpoints on, SIGTERM: {} events, {} delivered before the stop, {} duplicates ({:.1}%)",
        run.total,
        run.before_kill,
        run.duplicates,
        100.0 * run.duplicates as f64 / run.total as f64
    );
    // The batches in flight (4 requests x 500 events) and the open one, no more.
    assert!(
        run.duplicates <= 2_500,
        "{} duplicates after a SIGTERM",
        run.duplicates
    );
    assert_eq!(run.checkpoint_files_left, 0);
}

/// A checkpoint directory that does not exist stops the daemon at start-up with one
/// line naming the path and the key to fix, instead of a warning per object.
#[tokio::test]
async fn an_unusable_checkpoint_store_is_a_start_up_error() {
    let stack = TestStack::deploy("checkpoint-missing").await;
    let intake = TestIntake::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("not-there");
    let mut config = stack.base_config_toml(&intake);
    let mut table = toml::Table::new();
    table.insert("directory".into(), missing.display().to_string().into());
    config.insert("checkpoint".into(), toml::Value::Table(table));
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        DaemonProcess::start(&config, &[]).wait(),
    )
    .await
    .expect("the daemon exits by itself");
    assert!(!out.status.success(), "{}", out.logs);
    let line = out
        .logs
        .lines()
        .find(|l| l.contains("checkpoint store unusable"))
        .unwrap_or_else(|| panic!("no start-up error:\n{}", out.logs));
    assert!(
        line.contains(&missing.display().to_string()) && line.contains("checkpoint.directory"),
        "{line}"
    );
}

/// The S3 store against LocalStack: the daemon starts only after its probe document was
/// written, read back and deleted in the bucket, and an object delivered whole leaves no
/// checkpoint behind there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_checkpoint_store_is_probed_and_left_clean() {
    let (stack, intake) = TestStack::deploy_with_intake("checkpoint-s3").await;
    // A bucket of its own: writing checkpoints to the stack's bucket would notify the queue.
    let bucket = format!("{}-ckpt", stack.name);
    stack
        .s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create the checkpoint bucket");
    let overrides = format!(
        "[checkpoint]\ns3_bucket = \"{bucket}\"\ns3_prefix = \"ckpt\"\n\
         interval_seconds = 1\nmin_object_bytes = 0\n"
    );
    let daemon = RunningDaemon::start(stack.daemon_config(&intake, &overrides));
    let key = aws_key(Kind::CloudFront.format(), "s3-store");
    stack.put_gzip(&key, cloudfront_log(2_000).as_bytes()).await;
    let events = wait_for_records_then_stop(&stack, &intake, daemon, &key, 2_003).await;
    assert_eq!(events.len(), 2_003, "{}", intake.describe());

    let listed = stack
        .s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list the checkpoint bucket");
    let left: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(left.is_empty(), "checkpoints left behind: {left:?}");
}
