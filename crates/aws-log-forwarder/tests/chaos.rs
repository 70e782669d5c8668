//! The chaos test: the promise "nothing is lost" under everything at once.
//!
//! A stack with `MaxReceiveCount` 2 and a 15 s visibility timeout; a mix of objects of
//! many formats (one with 200,000 records) made by `alf-bench`'s generators; an intake
//! that fails about 30% of requests at random (500, 503, 429 with `Retry-After`,
//! connection reset, body read then 500, hang past the client timeout), then goes fully
//! down for longer than `MaxReceiveCount` x visibility timeout; and the daemon (the real
//! binary) killed with SIGKILL twice at random moments and restarted.
//!
//! Asserted: every expected `event.id` (computed by parsing the same files locally)
//! arrived at least once, the dead-letter queue is empty, and the queue drained.
//! Printed: events expected / delivered / duplicates, DLQ messages, time to drain, SQS
//! calls per message (and what they would have been without batch calls).
//!
//! Duplicates stay a few batches, not whole objects, thanks to progress checkpoints (a
//! local directory, written every second and after every 1,000 settled events, so that
//! what a kill sends twice does not grow with how fast the machine delivers: with the
//! interval alone, one second of events at about 10,000 a second made two kills cross
//! the 10% bound now and then): a killed object resumes from its last
//! checkpoint, which records the events settled without a gap *and* the runs settled
//! beyond a batch still in retries, instead of being re-sent whole (the large object
//! alone is most of the events). Asserted below 10% (the bound); measured 0.8%
//! of 215,500 events, drained in 217 s, on a machine loaded by other builds.
//!
//! Scale: the large object has 200,000 records (`ALF_CHAOS_LARGE_RECORDS` changes it).
//! gzip and JSON are optimised even in test builds (see the workspace `Cargo.toml`):
//! unoptimised, the test intake itself was too slow to answer within the client's
//! timeout and the run took many minutes.
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alf_bench::Kind;
use common::intake::{Mode, Outage, TestIntake};
use common::localstack::TestStack;
use common::{DaemonProcess, aws_key, delivered_gzipped, expected_event_ids, gzip, set_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VISIBILITY_SECONDS: i64 = 15;
const MAX_RECEIVE_COUNT: &str = "2";
/// Longer than MaxReceiveCount x visibility timeout (30 s).
const OUTAGE: Duration = Duration::from_secs(35);
/// The whole run, upload to drained queue.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

/// Records of the large object unless `ALF_CHAOS_LARGE_RECORDS` says otherwise.
const LARGE_RECORDS: u64 = 200_000;

fn large_records() -> u64 {
    alf_bench::env_count("ALF_CHAOS_LARGE_RECORDS", LARGE_RECORDS)
}

/// The objects: (kind, records). The first is the large one ([`large_records`]).
const OBJECTS: [(Kind, u64); 11] = [
    (Kind::VpcFlow, 0),
    (Kind::CloudFront, 3_000),
    (Kind::Elb, 2_000),
    (Kind::CloudTrail, 300),
    (Kind::Waf, 1_000),
    (Kind::GuardDuty, 200),
    (Kind::Route53Resolver, 2_000),
    (Kind::NetworkFirewall, 1_000),
    (Kind::Ndjson, 2_000),
    (Kind::S3Access, 2_000),
    (Kind::Lines, 2_000),
];

/// A free loopback port for a daemon's metrics listener.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `alf_sqs_api_calls_total` and `alf_sqs_batched_entries_total` by operation, and
/// the messages received, from a daemon's `/metrics` (empty when it does not answer).
async fn scrape(port: u16) -> BTreeMap<String, f64> {
    let Ok(Ok(mut stream)) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return BTreeMap::new();
    };
    if stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return BTreeMap::new();
    }
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut text)).await;
    text.lines()
        .filter(|l| {
            l.starts_with("alf_sqs_api_calls_total{")
                || l.starts_with("alf_sqs_batched_entries_total{")
                || l.starts_with("alf_sqs_messages_received_total")
        })
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// One daemon process and the last metrics it reported (a SIGKILL loses the rest).
struct Replica {
    process: DaemonProcess,
    port: u16,
    last_metrics: BTreeMap<String, f64>,
}

impl Replica {
    fn start(config: &toml::Table) -> Replica {
        let port = free_port();
        let mut config = config.clone();
        set_config(
            &mut config,
            "metrics",
            "listen",
            &format!("127.0.0.1:{port}"),
        );
        Replica {
            process: DaemonProcess::start(&config, &[]),
            port,
            last_metrics: BTreeMap::new(),
        }
    }

    async fn refresh(&mut self) {
        let now = scrape(self.port).await;
        if !now.is_empty() {
            self.last_metrics = now;
        }
    }
}

/// What a replica's log says about redeliveries and failures (the whole log goes to
/// `$ALF_CHAOS_LOG_DIR/replica-<n>.log` when that is set, for a closer look).
fn summary(logs: &str) -> String {
    if let Ok(dir) = std::env::var("ALF_CHAOS_LOG_DIR") {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = std::fs::write(format!("{dir}/replica-{n}.log"), logs);
    }
    let count = |needle: &str| logs.lines().filter(|l| l.contains(needle)).count();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .filter(|l| !l.contains("retrying in"))
        .take(8)
        .collect();
    format!(
        "{} redelivered messages, {} objects delivered, {} warnings/errors (first: {warnings:#?})",
        count("processing a redelivered message"),
        count("delivered"),
        count("WARN") + count("ERROR")
    )
}

fn add_into(total: &mut BTreeMap<String, f64>, more: &BTreeMap<String, f64>) {
    for (k, v) in more {
        *total.entry(k.clone()).or_default() += v;
    }
}

/// Waits until `done()` or `timeout`, refreshing the replica's metrics meanwhile;
/// false when the time ran out.
async fn wait_until(
    replica: &mut Replica,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let started = Instant::now();
    while !done() {
        if started.elapsed() >= timeout {
            return false;
        }
        replica.refresh().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    true
}

/// The end of a run that did not drain: what is left where, and the replica's log
/// (whole in a file kept for a closer look, its last warnings and errors here), so a
/// failure in CI can be understood without running it again.
async fn drain_failure(
    stack: &TestStack,
    replica: Replica,
    seed: u64,
    missing_by_object: &[usize],
    intake: &str,
) -> String {
    let queue = stack.queue_counts().await;
    let dlq = stack.dlq_counts().await;
    let out = replica.process.stop().await;
    let path = std::env::temp_dir().join(format!("chaos-{seed}-last-replica.log"));
    let kept = match std::fs::write(&path, &out.logs) {
        Ok(()) => format!("whole log: {}", path.display()),
        Err(e) => format!("the log could not be kept: {e}"),
    };
    let lines: Vec<&str> = out
        .logs
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    format!(
        "missing events by object (the first is the large one): {missing_by_object:?}\n\
         queue: {queue:?}; dead-letter queue: {dlq:?}\n\
         last replica ({}; {kept}), its last warnings and errors:\n{tail}\n{intake}",
        out.status
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_nothing_is_lost_and_duplicates_stay_few() {
    let stack = TestStack::deploy_with(
        "chaos",
        &[
            ("MaxReceiveCount", MAX_RECEIVE_COUNT),
            ("VisibilityTimeout", "30"),
        ],
    )
    .await;
    // A failed run prints its seed; ALF_CHAOS_SEED runs that one again.
    let seed = std::env::var("ALF_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    eprintln!("chaos seed {seed}");
    let intake = TestIntake::start().await;
    intake.set_keep_events(false);
    intake.set_mode(Mode::Chaos {
        seed,
        failure_per_mille: 300,
        hang: Duration::from_secs(6),
    });
    let mut config = stack.base_config_toml(&intake);
    let checkpoint_dir = tempfile::tempdir().expect("temp dir");
    let overrides = format!(
        "[sqs]\nvisibility_timeout_seconds = {VISIBILITY_SECONDS}\nheartbeat_interval_seconds = 4\n\
         [intake]\ntimeout_seconds = 5\nmax_retries = 3\nretry_max_backoff_ms = 1000\nmax_concurrent_requests = 8\n\
         [batch]\nmax_events = 500\n[log]\nformat = \"text\"\n[metrics]\n\
         [checkpoint]\ndirectory = {checkpoints:?}\ninterval_seconds = 1\nevery_events = 1000\nmin_object_bytes = 0\n",
        checkpoints = checkpoint_dir.path().display().to_string()
    );
    for (section, table) in overrides
        .parse::<toml::Table>()
        .expect("overrides are TOML")
    {
        let base = config
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let (Some(base), toml::Value::Table(table)) = (base.as_table_mut(), table) {
            base.extend(table);
        }
    }

    // Upload first (the generators are deterministic per seed), then start the daemon.
    let mut expected: HashSet<String> = HashSet::new();
    // Which object each event belongs to, for the duplicates by object.
    let mut object_of: std::collections::HashMap<String, usize> = Default::default();
    let mut uploads = Vec::new();
    for (i, (kind, records)) in OBJECTS.iter().enumerate() {
        let records = if i == 0 { large_records() } else { *records };
        let text = alf_bench::generate(*kind, records, seed ^ i as u64);
        let key = aws_key(kind.format(), &format!("chaos{i}"));
        let body = if delivered_gzipped(kind.format()) {
            gzip(&text)
        } else {
            text.clone()
        };
        uploads.push((*kind, key, text, body));
    }
    for (index, (kind, key, text, body)) in uploads.into_iter().enumerate() {
        stack.put_object(&key, body).await;
        let etag = stack.etag(&key).await;
        let bucket = stack.bucket.clone();
        let ids = tokio::task::spawn_blocking(move || {
            expected_event_ids(kind.format(), &bucket, &key, &etag, &text)
        })
        .await
        .expect("local parse");
        object_of.extend(ids.iter().map(|id| (id.clone(), index)));
        expected.extend(ids);
    }
    let total = expected.len();
    eprintln!("chaos: {} objects, {total} events expected", OBJECTS.len());
    let mut replica = Replica::start(&config);
    let started = Instant::now();
    let arrived = |fraction: f64| {
        let ids = intake.accepted_ids();
        let n = expected.iter().filter(|id| ids.contains_key(*id)).count();
        n as f64 >= fraction * total as f64
    };

    // Two SIGKILLs at random points of the run, each followed by a restart.
    let mut metrics_total = BTreeMap::new();
    let kill_points = [
        0.10 + (seed % 200) as f64 / 1000.0,
        0.40 + (seed / 200 % 200) as f64 / 1000.0,
    ];
    for point in kill_points {
        assert!(
            wait_until(&mut replica, DRAIN_TIMEOUT, || arrived(point)).await,
            "{:.0}% of the events: not reached within {DRAIN_TIMEOUT:?}\n{}",
            point * 100.0,
            intake.describe()
        );
        replica.refresh().await;
        add_into(&mut metrics_total, &replica.last_metrics);
        let out = replica.process.kill().await;
        eprintln!(
            "chaos: SIGKILL at {:.0}% after {:.1}s; {}",
            point * 100.0,
            started.elapsed().as_secs_f64(),
            summary(&out.logs)
        );
        replica = Replica::start(&config);
    }

    // A full outage longer than MaxReceiveCount x visibility timeout.
    intake.set_outage(Some(Outage::ServiceUnavailable));
    let outage_started = Instant::now();
    while outage_started.elapsed() < OUTAGE {
        replica.refresh().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    intake.set_outage(None);
    eprintln!(
        "chaos: intake down for {:.0}s ending at {:.1}s",
        OUTAGE.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    let left = DRAIN_TIMEOUT.saturating_sub(started.elapsed());
    if !wait_until(&mut replica, left, || arrived(1.0)).await {
        let ids = intake.accepted_ids();
        let mut missing_by_object = vec![0usize; OBJECTS.len()];
        for id in expected.iter().filter(|id| !ids.contains_key(*id)) {
            if let Some(&o) = object_of.get(id) {
                missing_by_object[o] += 1;
            }
        }
        let report = drain_failure(
            &stack,
            replica,
            seed,
            &missing_by_object,
            &intake.describe(),
        )
        .await;
        panic!(
            "every expected event: not reached within {DRAIN_TIMEOUT:?} (seed {seed})\n{report}"
        );
    }
    stack.wait_queue_empty(Duration::from_secs(60)).await;
    let drained = started.elapsed();
    replica.refresh().await;
    add_into(&mut metrics_total, &replica.last_metrics);
    let out = replica.process.stop().await;
    eprintln!("chaos: last replica: {}", summary(&out.logs));
    assert!(out.status.success(), "{}", out.logs);

    let ids = intake.accepted_ids();
    let missing = expected.iter().filter(|id| !ids.contains_key(*id)).count();
    let delivered: u64 = expected
        .iter()
        .filter_map(|id| ids.get(id))
        .map(|&n| u64::from(n))
        .sum();
    let duplicates = delivered - (total - missing) as u64;
    let mut by_object = vec![0u64; OBJECTS.len()];
    for (id, &n) in &ids {
        if let Some(&o) = object_of.get(id) {
            by_object[o] += u64::from(n.saturating_sub(1));
        }
    }
    eprintln!("chaos: duplicates by object (the first is the large one): {by_object:?}");
    let dlq = stack.dlq_counts().await.total();
    // Sums the series of `name` whose labels contain `label` ("" for all).
    let metric = |name: &str, label: &str| -> f64 {
        metrics_total
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{name}{{")) && k.contains(label))
            .map(|(_, v)| v)
            .sum()
    };
    let messages = OBJECTS.len() as f64;
    let calls = metric("alf_sqs_api_calls_total", "");
    let batch_calls = metric("alf_sqs_api_calls_total", "Batch\"");
    // Without batching, every entry of a batch call would have been a call of its own.
    let unbatched = calls - batch_calls + metric("alf_sqs_batched_entries_total", "");
    eprintln!(
        "chaos result: events expected {total} / delivered {delivered} / duplicates {duplicates} ({:.1}%); \
         DLQ messages {dlq}; drained in {:.1}s; SQS calls per message {:.1} (without batching: {:.1}); \
         calls by operation: {metrics_total:?}",
        100.0 * duplicates as f64 / total as f64,
        drained.as_secs_f64(),
        calls / messages,
        unbatched / messages,
    );
    assert_eq!(missing, 0, "{missing} expected events never arrived");
    assert_eq!(dlq, 0, "no message may reach the dead-letter queue");
    // Issue 9's bound: duplicates are a few batches per kill, not whole objects.
    assert!(
        duplicates * 10 < total as u64,
        "duplicates {duplicates} of {total} events: 10% or more"
    );
}
