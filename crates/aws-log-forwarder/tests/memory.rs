//! Bounded memory: the heap an object needs must not grow with the object's size.
//!
//! The objects here are generated on the fly and gzip-compressed as they are read, so the
//! test itself never holds one whole; the heap is measured by a counting global allocator
//! in this test binary. Each format's path (decompression, format detection by content,
//! line splitting or the streaming CloudTrail `Records` reader, ECS mapping, JSON
//! serialization with redaction) runs over a small and a 12x larger object, and the peak
//! heap of the larger one must stay near the smaller one's. An implementation that read an
//! object (or a CloudTrail document, which AWS writes as one line) whole would need tens of
//! megabytes more for the larger object and fail.
//!
//! The first test needs no LocalStack: it is the same `parse_stream` the daemon runs on
//! S3 bodies. The second runs the whole daemon in this process against LocalStack (S3
//! body, decompression, parsing, batching, intake requests, acknowledgements).

use std::alloc::System;
use std::io::{self, Read};
use std::time::{Duration, Instant};

mod common;

use alf_bench::alloc::{self, CountingAlloc};
use alf_formats::{Enricher, Format};
use flate2::Compression;
use flate2::read::GzEncoder;

/// The workspace's counting allocator (live and peak heap bytes) over the system one.
#[global_allocator]
static ALLOC: CountingAlloc<System> = CountingAlloc::tracking_bytes(System);

/// Produces `records` log records on demand, never more than one record ahead.
struct Generated {
    head: Vec<u8>,
    tail: Vec<u8>,
    record: fn(u64, &mut Vec<u8>),
    separator: &'static [u8],
    records: u64,
    next: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl Generated {
    fn new(
        head: &str,
        record: fn(u64, &mut Vec<u8>),
        separator: &'static [u8],
        tail: &str,
        records: u64,
    ) -> Self {
        Generated {
            head: head.as_bytes().to_vec(),
            tail: tail.as_bytes().to_vec(),
            record,
            separator,
            records,
            next: 0,
            buf: Vec::new(),
            pos: 0,
        }
    }

    fn refill(&mut self) -> bool {
        self.buf.clear();
        self.pos = 0;
        if self.next == 0 {
            self.buf.extend_from_slice(&self.head);
        }
        if self.next < self.records {
            if self.next > 0 {
                self.buf.extend_from_slice(self.separator);
            }
            (self.record)(self.next, &mut self.buf);
            self.next += 1;
        } else if self.next == self.records {
            self.buf.extend_from_slice(&self.tail);
            self.next += 1;
        }
        !self.buf.is_empty()
    }
}

impl Read for Generated {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() && !self.refill() {
            return Ok(0);
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

const CLOUDFRONT_HEADER: &str = "#Version: 1.0\n#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end\n";

fn cloudfront_line(i: u64, out: &mut Vec<u8>) {
    let line = format!(
        "2024-05-01\t12:{:02}:{:02}\tFRA56-P3\t{}\t198.51.{}.{}\tGET\td111111abcdef8.cloudfront.net\t/assets/{}.js\t200\t-\tMozilla/5.0%20(Windows%20NT%2010.0;%20Win64;%20x64)%20AppleWebKit/537.36%20(KHTML,%20like%20Gecko)%20Chrome/120.0.0.0%20Safari/537.36\tX-Amz-Signature=abcdef{i}&v=2\t-\tHit\tREQ{i:016}==\twww.example.com\thttps\t412\t0.002\t-\tTLSv1.3\tTLS_AES_128_GCM_SHA256\tHit\tHTTP/2.0\t-\t-\t{}\t0.001\tHit\ttext/javascript\t2511\t-\t-\n",
        (i / 60) % 60,
        i % 60,
        2000 + i % 5000,
        (i / 256) % 256,
        i % 256,
        i,
        1024 + i % 60000,
    );
    out.extend_from_slice(line.as_bytes());
}

fn cloudtrail_record(i: u64, out: &mut Vec<u8>) {
    let record = format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"AssumedRole","principalId":"AROAEXAMPLE:alice@example.com","arn":"arn:aws:sts::123456789012:assumed-role/Admin/alice@example.com","accountId":"123456789012","accessKeyId":"ASIAEXAMPLE{i}","sessionContext":{{"sessionIssuer":{{"type":"Role","userName":"Admin"}}}}}},"eventTime":"2024-05-01T12:{:02}:{:02}Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.{}","userAgent":"aws-cli/2.15.0","requestParameters":{{"bucketName":"data","key":"reports/{i}.csv"}},"responseElements":null,"requestID":"REQ{i}","eventID":"00000000-0000-0000-0000-{i:012}","readOnly":true,"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"123456789012"}}"#,
        (i / 60) % 60,
        i % 60,
        i % 256,
    );
    out.extend_from_slice(record.as_bytes());
}

/// Parses one generated object and returns (events, peak heap bytes during the parse).
fn parse_generated(
    source: Generated,
    key: &str,
    format: Format,
    enricher: &Enricher,
) -> (u64, usize) {
    let gz = GzEncoder::new(source, Compression::fast());
    common::heap::parse_measuring_peak(gz, key, format, enricher)
}

/// Runs `make(records)` for a small and a 12x larger object and checks the peak heap.
fn assert_bounded(name: &str, format: Format, key: &str, make: impl Fn(u64) -> Generated) {
    const SMALL: u64 = 1_000;
    const LARGE: u64 = 12_000;
    let enricher = Enricher::new();
    // Warm up: the user-agent rules and other process-wide caches are built once and
    // would otherwise count against the first object.
    parse_generated(make(50), key, format, &enricher);

    let (small_events, small_peak) = parse_generated(make(SMALL), key, format, &enricher);
    let (large_events, large_peak) = parse_generated(make(LARGE), key, format, &enricher);
    assert_eq!(small_events, SMALL, "{name}: one event per record");
    assert_eq!(large_events, LARGE, "{name}: one event per record");

    // The large object's decompressed size, to show what reading it whole would cost.
    let mut decompressed = 0u64;
    let mut source = make(LARGE);
    let mut buf = [0u8; 64 * 1024];
    while let Ok(n @ 1..) = source.read(&mut buf) {
        decompressed += n as u64;
    }
    eprintln!(
        "{name} ({format}): peak heap {small_peak} B for {SMALL} records, {large_peak} B for {LARGE} records ({decompressed} B decompressed)"
    );
    assert!(
        large_peak < small_peak + small_peak / 2 + 256 * 1024,
        "{name}: peak heap grew with the object: {small_peak} B for {SMALL} records, {large_peak} B for {LARGE}"
    );
    assert!(
        (large_peak as u64) < decompressed / 4,
        "{name}: peak heap {large_peak} B is not small beside the {decompressed} B object"
    );
}

/// The allocator counts are process-wide: tests that measure must not overlap. (An
/// async-aware lock: the daemon test holds it across awaits.)
static MEASURING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[test]
fn peak_heap_does_not_grow_with_object_size() {
    let _serial = MEASURING.blocking_lock();
    assert_bounded(
        "CloudFront lines",
        Format::CloudFront,
        "cf/E2DIST.2024-05-01-12.abcd1234.gz",
        |n| Generated::new(CLOUDFRONT_HEADER, cloudfront_line, b"", "", n),
    );
    assert_bounded(
        "CloudTrail single-line Records document",
        Format::CloudTrail,
        "AWSLogs/123456789012/CloudTrail/us-east-1/2024/05/01/123456789012_CloudTrail_us-east-1_20240501T1205Z_x.json.gz",
        |n| Generated::new(r#"{"Records":["#, cloudtrail_record, b",", "]}", n),
    );
}

/// A CloudFront log of `records` lines with a long random token per line, so that even
/// its gzip form is large: a body buffered whole, compressed or not, shows in the heap.
fn cloudfront_object(records: u64) -> (Vec<u8>, u64) {
    let mut text = Vec::with_capacity(records as usize * 1600);
    text.extend_from_slice(CLOUDFRONT_HEADER.as_bytes());
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..records {
        let mut line = Vec::new();
        cloudfront_line(i, &mut line);
        // xorshift: a 1,024-hex-digit token in the query string (512 random bytes).
        let mut token = String::with_capacity(1024);
        for _ in 0..64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            token.push_str(&format!("{state:016x}"));
        }
        let line = String::from_utf8(line)
            .expect("generated lines are UTF-8")
            .replacen("&v=2", &format!("&v=2&t={token}"), 1);
        text.extend_from_slice(line.as_bytes());
    }
    let size = text.len() as u64;
    (common::gzip(&text), size)
}

/// A TCP relay in front of the test intake that holds every connection until
/// [`IntakeGate::open`]: the daemon's first batch stays in flight, so its pipeline
/// fills to its caps (chunks in the channel, the open batch, the request in flight)
/// and the parser blocks. Both measured runs then pass through the same full state,
/// whatever the timing of the machine, instead of filling it only when the intake
/// happens to be slow for a moment (which made the peak vary between runs).
struct IntakeGate {
    url: String,
    open: tokio::sync::watch::Sender<bool>,
    relay: tokio::task::JoinHandle<()>,
}

impl IntakeGate {
    async fn start(intake: &common::intake::TestIntake) -> IntakeGate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the gate");
        let url = format!("http://{}", listener.local_addr().expect("gate address"));
        let upstream = intake
            .url()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let (open, opened) = tokio::sync::watch::channel(false);
        let relay = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut opened = opened.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if opened.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        IntakeGate { url, open, relay }
    }

    fn open(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for IntakeGate {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// Allocation calls per second below which the daemon counts as idle: parsing makes
/// dozens per event (thousands per second even in a slow debug build), while a daemon
/// whose parser is blocked, with no SQS poll or heartbeat due (see [`daemon_peak`]'s
/// configuration), makes next to none.
const IDLE_ALLOCATIONS_PER_SECOND: u64 = 200;

/// Waits until the process has been idle for two consecutive seconds: the pipeline
/// behind the held intake request is full and the parser waits for room.
async fn wait_until_blocked(key: &str) {
    let started = Instant::now();
    let mut idle_seconds = 0;
    let mut last = alloc::allocations();
    while idle_seconds < 2 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = alloc::allocations();
        idle_seconds = if now - last < IDLE_ALLOCATIONS_PER_SECOND {
            idle_seconds + 1
        } else {
            0
        };
        last = now;
        assert!(
            started.elapsed() < common::PIPELINE_TIMEOUT,
            "{key}: the daemon's pipeline never filled up behind the held intake request"
        );
    }
}

/// The test intake, on a thread of its own whose allocations are not counted: it
/// decodes every request body into JSON values (several times the body's size), which
/// is the test's memory, not the daemon's, and used to overlap the daemon's peak or not
/// depending on timing.
fn uncounted_intake() -> common::intake::TestIntake {
    let (started, intake) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("uncounted-intake".into())
        .spawn(move || {
            alloc::exclude_this_thread();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the intake's runtime");
            runtime.block_on(async {
                let _ = started.send(common::intake::TestIntake::start().await);
                // Serves until the test process ends.
                std::future::pending::<()>().await;
            });
        })
        .expect("the intake's thread");
    intake.recv().expect("the intake started")
}

/// Uploads an object, then runs the daemon until its message is gone, and returns the
/// peak heap while the daemon worked, with the records the intake accepted. The intake
/// is held (see [`IntakeGate`]) until the pipeline is full, then released.
async fn daemon_peak(
    stack: &common::localstack::TestStack,
    intake: &common::intake::TestIntake,
    key: &str,
    records: u64,
) -> DaemonPeaks {
    let (body, _) = cloudfront_object(records);
    stack.put_object(key, body).await;
    // S3 notifies asynchronously: the message must be queued before the daemon starts.
    let queued = Instant::now();
    while stack.queue_counts().await.visible == 0 {
        assert!(
            queued.elapsed() < common::PIPELINE_TIMEOUT,
            "no notification for {key}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before: usize = accepted(intake);
    let gate = IntakeGate::start(intake).await;
    let config = stack.daemon_config(
        intake,
        &format!(
            // Uncompressed requests: gzip in an unoptimised build would dominate the run
            // time. One message at a time and no heartbeat while the gate is closed, so
            // a blocked daemon is an idle one; a timeout longer than the hold.
            "[batch]\nmax_events = 250\n\
             [intake]\nurl = \"{}\"\nmax_concurrent_requests = 1\ngzip = false\ntimeout_seconds = 600\n\
             [processing]\nobject_concurrency = 1\n\
             [sqs]\nmax_messages_in_flight = 1\nvisibility_timeout_seconds = 600\nheartbeat_interval_seconds = 300",
            gate.url
        ),
    );
    let base = alloc::reset_peak();
    let daemon = common::RunningDaemon::start(config);
    wait_until_blocked(key).await;
    let held_peak = alloc::peak_bytes().saturating_sub(base);
    gate.open();
    // A debug build parses a few hundred records a second: give the large object time.
    stack.wait_queue_empty(4 * common::PIPELINE_TIMEOUT).await;
    daemon.stop().await;
    // A receive the daemon had in flight when it stopped is abandoned, not withdrawn at
    // the queue: for up to `wait_time_seconds` (1 s in these tests) it can still take
    // the next object's notification, which then stays invisible for this test's 600 s
    // visibility timeout ("no notification" for the next object). Let it expire first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak = alloc::peak_bytes().saturating_sub(base);
    eprintln!("{key}: peak heap {held_peak} B with the pipeline full, {peak} B over the run");
    DaemonPeaks {
        held: held_peak,
        run: peak,
        events: (accepted(intake) - before) as u64,
    }
}

/// What [`daemon_peak`] measured.
struct DaemonPeaks {
    /// Peak heap until the pipeline was full behind the held intake request: the same
    /// state in every run, so it varies by a few hundred kilobytes at most.
    held: usize,
    /// Peak heap over the whole run.
    run: usize,
    /// Events the intake accepted.
    events: u64,
}

fn accepted(intake: &common::intake::TestIntake) -> usize {
    intake
        .requests()
        .iter()
        .filter(|r| r.status == Some(200))
        .map(|r| r.events)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemons_peak_heap_does_not_grow_with_object_size() {
    let _serial = MEASURING.lock().await;
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn,aws_log_forwarder=info")
        .try_init();
    // Both objects are large enough to fill the pipeline's bounded buffers (chunks in
    // the channel, the open batch, the request in flight); only then is the comparison
    // about the object's size rather than about a pipeline that never filled up.
    const SMALL: u64 = 3_000;
    const LARGE: u64 = 12_000;
    let stack = common::localstack::TestStack::deploy("memory").await;
    let intake = uncounted_intake();
    intake.set_mode(common::intake::Mode::AcceptDiscard);
    // Process-wide one-time costs (the user-agent rules) out of the measurement.
    alf_formats::enrich::parse_user_agent("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0");
    // The stack's s3:TestEvent goes first, with a daemon of its own.
    let warm = common::RunningDaemon::start(stack.daemon_config(&intake, ""));
    stack.wait_queue_empty(common::PIPELINE_TIMEOUT).await;
    warm.stop().await;

    let small = daemon_peak(
        &stack,
        &intake,
        "cf/E2MEMORYSMALL.2024-05-01-12.aaaa0001.gz",
        SMALL,
    )
    .await;
    let large = daemon_peak(
        &stack,
        &intake,
        "cf/E2MEMORYLARGE.2024-05-01-12.aaaa0002.gz",
        LARGE,
    )
    .await;
    assert_eq!(small.events, SMALL, "every record delivered");
    assert_eq!(large.events, LARGE, "every record delivered");
    let (small_peak, large_peak) = (small.run, large.run);
    let (gz, decompressed) = cloudfront_object(LARGE);
    eprintln!(
        "daemon: peak heap {small_peak} B for {SMALL} records, {large_peak} B for {LARGE} records ({} B gzip, {decompressed} B decompressed)",
        gz.len()
    );
    // Both runs filled the pipeline to its caps (chunks in the channel, the open batch,
    // the request in flight), so what remains between them is HTTP and SDK buffers;
    // reading the objects whole would add the difference of their gzip sizes (over
    // 5 MB) or more.
    let margin = 5 * 1024 * 1024 / 2;
    assert!(
        large_peak < small_peak + margin,
        "the daemon's peak heap grew with the object: {small_peak} B for {SMALL} records, {large_peak} B for {LARGE} ({} B gzip)",
        gz.len()
    );
    // With the pipeline full, the state is the same whatever the object's size: an
    // object (or its gzip body) read before parsing would show here at once.
    assert!(
        large.held < small.held + 1024 * 1024,
        "the daemon's heap with its pipeline full grew with the object: {} B for {SMALL} records, {} B for {LARGE}",
        small.held,
        large.held
    );
    let (small_gz, _) = cloudfront_object(SMALL);
    assert!(
        gz.len() - small_gz.len() > 2 * margin,
        "the objects must differ by more than the margin to prove anything"
    );
}
