//! Shared harness of the integration tests: a real HTTP intake ([`intake`]), one
//! LocalStack CloudFormation stack per test ([`localstack`]), the daemon running
//! in-process ([`RunningDaemon`]) and small helpers to read ECS events.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

/// The recording HTTP intake, shared with the unit tests (`crates/alf-testkit`).
pub use alf_testkit::intake;
pub mod heap;
pub mod localstack;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use aws_log_forwarder::Config;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound for one test's waits on the pipeline (S3 -> SQS -> daemon -> intake).
pub const PIPELINE_TIMEOUT: Duration = Duration::from_secs(45);
/// How long the daemon may take to return after its shutdown token is cancelled.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The daemon, running in this process exactly as `aws-log-forwarder run` runs it.
pub struct RunningDaemon {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), String>>,
}

impl RunningDaemon {
    pub fn start(config: Config) -> RunningDaemon {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            aws_log_forwarder::run(config, token)
                .await
                .map_err(|e| format!("{e} ({e:?})"))
        });
        RunningDaemon { shutdown, task }
    }

    /// Cancels the shutdown token and checks that the daemon returns `Ok` in bounded time.
    pub async fn stop(self) {
        self.shutdown.cancel();
        match tokio::time::timeout(STOP_TIMEOUT, self.task).await {
            Err(_) => panic!("the daemon did not return within {STOP_TIMEOUT:?} of shutdown"),
            Ok(Err(join)) => panic!("the daemon task panicked: {join}"),
            Ok(Ok(Err(e))) => panic!("the daemon returned an error: {e}"),
            Ok(Ok(Ok(()))) => {}
        }
    }
}

/// The start of most end-to-end tests: a fresh stack named after `name`, a test intake
/// accepting everything, and the daemon running in this process on the stack's
/// configuration.
pub async fn start_forwarding(
    name: &str,
) -> (localstack::TestStack, intake::TestIntake, RunningDaemon) {
    let stack = localstack::TestStack::deploy(name).await;
    let intake = intake::TestIntake::start().await;
    let daemon = RunningDaemon::start(stack.daemon_config(&intake, ""));
    (stack, intake, daemon)
}

/// Sets `[section] key = "value"` in a configuration from
/// [`localstack::TestStack::base_config_toml`] (the section must exist there).
pub fn set_config(config: &mut toml::Table, section: &str, key: &str, value: &str) {
    config
        .get_mut(section)
        .and_then(toml::Value::as_table_mut)
        .unwrap_or_else(|| panic!("the base config has a [{section}] table"))
        .insert(key.into(), toml::Value::String(value.into()));
}

/// `aws-log-forwarder run` as a child process, exactly as users run it, with its output
/// captured (everything any crate logs, the AWS SDK's and HTTP stack's included).
pub struct DaemonProcess {
    child: std::process::Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
    _dir: tempfile::TempDir,
}

/// What a [`DaemonProcess`] printed, and how it ended.
pub struct DaemonOutput {
    pub status: std::process::ExitStatus,
    /// stdout and stderr, one after the other.
    pub logs: String,
    /// How long it took to exit once stopped (or waited for).
    pub stop_time: Duration,
}

impl DaemonOutput {
    /// The log lines that contain every one of `parts`.
    pub fn lines_with(&self, parts: &[&str]) -> Vec<&str> {
        self.logs
            .lines()
            .filter(|l| parts.iter().all(|part| l.contains(part)))
            .collect()
    }

    /// Fails unless the logs contain `text`, printing `why` and the logs.
    pub fn assert_logged(&self, text: &str, why: &str) {
        assert!(self.logs.contains(text), "{why}:\n{}", self.logs);
    }

    /// Fails if the logs contain `text`, printing `why` and the logs.
    pub fn assert_not_logged(&self, text: &str, why: &str) {
        assert!(!self.logs.contains(text), "{why}:\n{}", self.logs);
    }
}

impl DaemonProcess {
    /// Writes `config` to a temporary file and starts `run --config` on it with `env`
    /// set (and `RUST_LOG` removed, so the config's log level applies).
    pub fn start(config: &toml::Table, env: &[(&str, &str)]) -> DaemonProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            toml::to_string(config).expect("serialize the config"),
        )
        .expect("write the config");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_aws-log-forwarder"));
        command
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start aws-log-forwarder run");
        // Read both pipes as the daemon writes: debug output would fill a pipe buffer
        // and block the daemon otherwise.
        let stdout = drain(child.stdout.take().expect("piped stdout"));
        let stderr = drain(child.stderr.take().expect("piped stderr"));
        DaemonProcess {
            child,
            stdout,
            stderr,
            _dir: dir,
        }
    }

    /// Sends SIGTERM and waits for the exit and the whole output.
    pub async fn stop(self) -> DaemonOutput {
        self.signal("TERM");
        self.wait().await
    }

    /// Sends SIGKILL (no shutdown at all, as a crash or an OOM kill) and waits for the
    /// exit and the whole output.
    pub async fn kill(self) -> DaemonOutput {
        self.signal("KILL");
        self.wait().await
    }

    /// Sends `SIG<name>` (`TERM`, `KILL`) to the process.
    fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{name} {pid} failed");
    }

    /// Waits for the process to exit by itself (e.g. on a start-up error).
    pub async fn wait(mut self) -> DaemonOutput {
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || {
            let status = self.child.wait().expect("wait for aws-log-forwarder");
            let stop_time = started.elapsed();
            let out = self.stdout.join().expect("stdout reader");
            let err = self.stderr.join().expect("stderr reader");
            DaemonOutput {
                status,
                logs: format!("{out}\n{err}"),
                stop_time,
            }
        })
        .await
        .expect("join the waiting thread")
    }
}

/// Reads `pipe` to the end on a thread of its own.
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error ends the capture; what was read so far is still checked.
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Gzip-compresses `data` (as AWS delivers logs).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

/// The value at a dotted path of a nested ECS event (`"http.response.status_code"`).
pub fn field<'a>(event: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(event, |v, part| v.get(part))
}

/// The string at a dotted path.
pub fn str_field<'a>(event: &'a Value, path: &str) -> Option<&'a str> {
    field(event, path).and_then(Value::as_str)
}

/// `event.id` of an event; panics (with the event) when it has none.
pub fn event_id(event: &Value) -> String {
    str_field(event, "event.id")
        .unwrap_or_else(|| panic!("event without event.id: {event}"))
        .to_owned()
}

/// Whether the event carries `tag` in `tags`.
pub fn has_tag(event: &Value, tag: &str) -> bool {
    field(event, "tags")
        .and_then(Value::as_array)
        .is_some_and(|tags| tags.iter().any(|t| t.as_str() == Some(tag)))
}

/// The events whose `aws.s3.object.key` is `key`.
pub fn events_of_key<'a>(events: &'a [Value], key: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| str_field(e, "aws.s3.object.key") == Some(key))
        .collect()
}

/// One event per `event.id` (redelivery duplicates removed, as an intake would).
pub fn unique_by_id(events: &[Value]) -> BTreeMap<String, Value> {
    events.iter().map(|e| (event_id(e), e.clone())).collect()
}

/// The `log.offset`s of `events`: one per record of an object, so they say which
/// records arrived independently of how ids are computed.
pub fn offsets(events: &[&Value]) -> BTreeSet<u64> {
    events
        .iter()
        .filter_map(|e| field(e, "log.offset").and_then(Value::as_u64))
        .collect()
}

/// Parses `text` locally with the same library the daemon uses and returns its
/// events as JSON: the reference for "every record arrived".
pub fn parse_locally(format: alf_formats::Format, key: &str, text: &[u8]) -> Vec<Value> {
    parse_locally_as(format, "local", key, "", text)
}

/// [`parse_locally`] for an object identified like the daemon identifies it (bucket, key
/// and version, which feed `event.id`), with the daemon's default redaction: the events
/// the daemon must have forwarded, field for field.
pub fn parse_locally_as(
    format: alf_formats::Format,
    bucket: &str,
    key: &str,
    version: &str,
    text: &[u8],
) -> Vec<Value> {
    let mut events: Vec<alf_formats::Event> = Vec::new();
    parse_object_into(format, bucket, key, version, text, &mut events);
    let redactor = alf_formats::Redactor::new();
    events
        .iter()
        .map(|e| {
            serde_json::from_str(&e.to_json_string(Some(&redactor)))
                .expect("the library serializes valid JSON")
        })
        .collect()
}

/// The `event.id`s of `text` parsed locally as object `bucket`/`key` at `version`,
/// in order, without keeping the events (a million would not fit in memory).
pub fn expected_event_ids(
    format: alf_formats::Format,
    bucket: &str,
    key: &str,
    version: &str,
    text: &[u8],
) -> Vec<String> {
    struct EventIds(Vec<String>);
    impl alf_formats::EventSink for EventIds {
        fn emit(&mut self, event: alf_formats::Event) -> Result<(), alf_formats::Stop> {
            let id = event
                .get_str("event.id")
                .expect("every event has an event.id");
            self.0.push(id.to_owned());
            Ok(())
        }
    }
    let mut ids = EventIds(Vec::new());
    parse_object_into(format, bucket, key, version, text, &mut ids);
    ids.0
}

/// Parses `text` as the daemon would the object `bucket`/`key` at `version`.
fn parse_object_into(
    format: alf_formats::Format,
    bucket: &str,
    key: &str,
    version: &str,
    text: &[u8],
    sink: &mut dyn alf_formats::EventSink,
) {
    let object = alf_formats::ObjectInfo {
        bucket: bucket.into(),
        key: key.into(),
        version: version.into(),
    };
    alf_formats::parse_object(
        format,
        &mut &text[..],
        &object,
        &alf_formats::ParseOptions::default(),
        &alf_formats::Enricher::new(),
        sink,
    )
    .unwrap_or_else(|e| panic!("local parse of {key} as {format}: {e}"));
}

/// An S3 object key in the layout AWS uses when it delivers logs of `format` (the
/// format's registry example under a `unique` prefix), so the daemon recognises the
/// type from the key as it would in production.
pub fn aws_key(format: alf_formats::Format, unique: &str) -> String {
    format!("{unique}/{}", format.spec().example_key)
}

/// S3 server access logs are the one type AWS delivers uncompressed.
pub fn delivered_gzipped(format: alf_formats::Format) -> bool {
    format != alf_formats::Format::S3Access
}

/// The end of most end-to-end tests: waits until the intake accepted `records` records
/// of `key` ([`wait_for_records`]) and the queue is empty (every message deleted), then
/// stops the daemon; returns the accepted events of `key`.
pub async fn wait_for_records_then_stop(
    stack: &localstack::TestStack,
    intake: &intake::TestIntake,
    daemon: RunningDaemon,
    key: &str,
    records: usize,
) -> Vec<Value> {
    let events = wait_for_records(intake, key, records, PIPELINE_TIMEOUT).await;
    stack.wait_queue_empty(PIPELINE_TIMEOUT).await;
    daemon.stop().await;
    events
}

/// Waits until the intake accepted, for object `key`, events for `records` distinct
/// records (distinct `log.offset`s; duplicates from redeliveries allowed), and returns
/// the accepted events of that key. Panics after `timeout` with what arrived.
pub async fn wait_for_records(
    intake: &intake::TestIntake,
    key: &str,
    records: usize,
    timeout: Duration,
) -> Vec<Value> {
    let started = std::time::Instant::now();
    loop {
        let events = intake.events();
        let mine: Vec<Value> = events_of_key(&events, key).into_iter().cloned().collect();
        let seen = offsets(&mine.iter().collect::<Vec<_>>()).len();
        if seen >= records {
            return mine;
        }
        if started.elapsed() >= timeout {
            panic!(
                "only {seen} of {records} records of {key} arrived within {timeout:?}\n{}",
                intake.describe()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A CloudFront standard log: the `#Version`/`#Fields` header, three hand-written
/// records (IPv6 client, URL-encoded user agents, an error, a forwarded-for address),
/// then `extra` generated records.
pub fn cloudfront_log(extra: usize) -> String {
    let mut out = String::from(CLOUDFRONT_HEADER);
    for record in CLOUDFRONT_RECORDS {
        out.push_str(&record.join("\t"));
        out.push('\n');
    }
    for i in 0..extra {
        let ip = format!("192.0.2.{}", i % 250 + 1);
        let time = format!("12:{:02}:{:02}", 10 + i / 60 % 50, i % 60);
        let path = format!("/page/{i}");
        let request_id = format!("gEnErAtEd{i:08}ReQuEsTiD==");
        let record = [
            "2024-05-01",
            &time,
            "IAD89-C1",
            "1024",
            &ip,
            "GET",
            "d111111abcdef8.cloudfront.net",
            &path,
            "200",
            "-",
            "curl/8.4.0",
            "-",
            "-",
            "Miss",
            &request_id,
            "www.example.com",
            "https",
            "150",
            "0.004",
            "-",
            "TLSv1.3",
            "TLS_AES_128_GCM_SHA256",
            "Miss",
            "HTTP/1.1",
            "-",
            "-",
            "40000",
            "0.003",
            "Miss",
            "text/html",
            "900",
            "-",
            "-",
        ];
        out.push_str(&record.join("\t"));
        out.push('\n');
    }
    out
}

pub const CLOUDFRONT_HEADER: &str = "#Version: 1.0\n#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end\n";

pub const SAFARI_UA: &str = "Mozilla/5.0%20(Macintosh;%20Intel%20Mac%20OS%20X%2010_15_7)%20AppleWebKit/605.1.15%20(KHTML,%20like%20Gecko)%20Version/17.1%20Safari/605.1.15";
pub const CHROME_UA: &str = "Mozilla/5.0%20(Windows%20NT%2010.0;%20Win64;%20x64)%20AppleWebKit/537.36%20(KHTML,%20like%20Gecko)%20Chrome/124.0.0.0%20Safari/537.36";

pub const CLOUDFRONT_RECORDS: [[&str; 33]; 3] = [
    [
        "2024-05-01",
        "12:00:01",
        "IAD89-C1",
        "2390",
        "2001:db8:85a3::8a2e:370:7334",
        "GET",
        "d111111abcdef8.cloudfront.net",
        "/index.html",
        "200",
        "-",
        SAFARI_UA,
        "-",
        "-",
        "Hit",
        "SOX4xwn4XV6Q4rgb7XiVGOHms_BGlTAC4KyHmureZmBNrjGdRLiNIQ==",
        "www.example.com",
        "https",
        "180",
        "0.001",
        "-",
        "TLSv1.3",
        "TLS_AES_128_GCM_SHA256",
        "Hit",
        "HTTP/2.0",
        "-",
        "-",
        "50544",
        "0.001",
        "Hit",
        "text/html",
        "2100",
        "-",
        "-",
    ],
    [
        "2024-05-01",
        "12:00:02",
        "FRA56-P2",
        "512",
        "192.0.2.10",
        "POST",
        "d111111abcdef8.cloudfront.net",
        "/api/login",
        "403",
        "https://www.example.com/",
        "curl/8.4.0",
        "-",
        "-",
        "Error",
        "k6WGMNkEzR5BEM_SaF47gjtX9zBDO2m349OY2an0QPEaUum1ZOLrow==",
        "www.example.com",
        "https",
        "320",
        "0.002",
        "-",
        "TLSv1.2",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "Error",
        "HTTP/1.1",
        "-",
        "-",
        "61234",
        "0.002",
        "Error",
        "application/json",
        "77",
        "-",
        "-",
    ],
    [
        "2024-05-01",
        "12:00:03",
        "NRT57-C3",
        "43500",
        "198.51.100.7",
        "GET",
        "d111111abcdef8.cloudfront.net",
        "/img/logo.png",
        "304",
        "https://www.example.com/index.html",
        CHROME_UA,
        "v=2",
        "-",
        "RefreshHit",
        "tOq0Ms6nMn5pUkqpbdXSI8qHFd1NeqGa6K2qBbKPzHvKHtxgGz0ORg==",
        "www.example.com",
        "https",
        "250",
        "0.010",
        "203.0.113.9",
        "TLSv1.3",
        "TLS_AES_256_GCM_SHA384",
        "RefreshHit",
        "HTTP/2.0",
        "-",
        "-",
        "44321",
        "0.009",
        "RefreshHit",
        "image/png",
        "43000",
        "-",
        "-",
    ],
];
