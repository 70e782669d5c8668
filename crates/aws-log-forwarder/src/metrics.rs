//! Prometheus metrics and the `/metrics` + `/healthz` listener.
//!
//! Counters and histograms are recorded with the `metrics` facade everywhere (a no-op
//! until a recorder is installed, so the CLI `parse` command and unit tests pay
//! nothing). When `metrics.listen` is set, [`serve`] installs the Prometheus recorder
//! once per process and answers plain HTTP/1.1 GETs: the endpoint is scraped by a
//! Prometheus server or probed by an orchestrator, nothing more, so a tiny hand-written
//! responder is enough and keeps an HTTP server framework out of the dependency tree.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{KeyName, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// What `describe` tells the recorder about a metric family: its `# TYPE` and unit
/// (the kind) and `# HELP` text.
struct Family {
    kind: FamilyKind,
    name: &'static str,
    /// The family's doc comment, lines joined (each starts with a space).
    help: &'static str,
}

/// A family's Prometheus type, with its unit where it has one.
#[derive(Clone, Copy)]
enum FamilyKind {
    Counter,
    BytesCounter,
    Gauge,
    SecondsGauge,
    SecondsHistogram,
    CountHistogram,
    BytesHistogram,
}

/// Declares each metric family once: its doc comment is its Prometheus help text, so
/// the name constant and the description cannot drift apart. Each entry becomes a
/// `pub const` name and a row of [`FAMILIES`].
macro_rules! families {
    ($($(#[doc = $help:literal])+ $kind:ident $name:ident = $value:literal;)*) => {
        $($(#[doc = $help])+ pub const $name: &str = $value;)*

        /// The families declared here.
        const FAMILIES: &[Family] = &[$(Family {
            kind: FamilyKind::$kind,
            name: $name,
            help: concat!($($help),+),
        }),*];
    };
}

families! {
    /// SQS messages received
    Counter MESSAGES_RECEIVED = "alf_sqs_messages_received_total";
    /// SQS messages deleted after full delivery
    Counter MESSAGES_DELETED = "alf_sqs_messages_deleted_total";
    /// SQS messages left for redelivery after a failure
    Counter MESSAGES_FAILED = "alf_sqs_messages_failed_total";
    /// Failed ReceiveMessage calls
    Counter RECEIVE_ERRORS = "alf_sqs_receive_errors_total";
    /// S3 objects processed, by outcome
    Counter OBJECTS_PROCESSED = "alf_objects_processed_total";
    /// S3 objects that failed (read, decode or delivery)
    Counter OBJECTS_FAILED = "alf_objects_failed_total";
    /// S3 objects skipped on purpose (e.g. CloudTrail digests)
    Counter OBJECTS_SKIPPED = "alf_objects_skipped_total";
    /// Events produced by the parsers
    Counter EVENTS_PARSED = "alf_events_parsed_total";
    /// Records that could not be parsed (forwarded raw)
    Counter EVENTS_MALFORMED = "alf_events_malformed_total";
    /// Events accepted by the intake
    Counter EVENTS_DELIVERED = "alf_events_delivered_total";
    /// Events the intake rejected or that ran out of retries
    Counter EVENTS_FAILED = "alf_events_failed_total";
    /// S3 object bytes read (as stored)
    BytesCounter BYTES_COMPRESSED = "alf_object_bytes_compressed_total";
    /// S3 object bytes after decompression
    BytesCounter BYTES_DECOMPRESSED = "alf_object_bytes_decompressed_total";
    /// Intake HTTP requests, by status class
    Counter INTAKE_REQUESTS = "alf_intake_requests_total";
    /// Intake requests retried
    Counter INTAKE_RETRIES = "alf_intake_retries_total";
    /// Intake batches that failed for good, by status class
    Counter INTAKE_FAILURES = "alf_intake_failures_total";
    /// Time to process one S3 object, fetch to last acknowledgement
    SecondsHistogram OBJECT_DURATION = "alf_object_duration_seconds";
    /// Events per intake batch
    CountHistogram BATCH_EVENTS = "alf_batch_events";
    /// Uncompressed body bytes per intake batch
    BytesHistogram BATCH_BYTES = "alf_batch_bytes";
    /// 1 while the intake circuit is open (intake down: receiving paused), else 0
    Gauge CIRCUIT_OPEN = "alf_intake_circuit_open";
    /// SQS API calls made, by operation
    Counter SQS_API_CALLS = "alf_sqs_api_calls_total";
    /// Dropped S3 streams resumed with a ranged GET from the byte reached
    Counter S3_RESUMES = "alf_s3_stream_resumes_total";
    /// Messages deleted or re-timed through batch calls, by operation (each would be one
    /// call without batching)
    Counter SQS_BATCHED_ENTRIES = "alf_sqs_batched_entries_total";
    /// SQS messages being processed
    Gauge MESSAGES_IN_FLIGHT = "alf_sqs_messages_in_flight";
    /// S3 objects being processed
    Gauge OBJECTS_IN_FLIGHT = "alf_objects_in_flight";
    /// Age of the oldest message being processed (since this process received it)
    SecondsGauge OLDEST_IN_FLIGHT_AGE = "alf_sqs_oldest_in_flight_message_age_seconds";
    /// ApproximateNumberOfMessages of the queue, polled once a minute
    Gauge QUEUE_VISIBLE_MESSAGES = "alf_sqs_queue_visible_messages";
    /// Messages moved to the dead-letter queue at once because they can never succeed, by
    /// reason
    Counter MESSAGES_DEAD_LETTERED = "alf_sqs_messages_dead_lettered_total";
    /// Events of redelivered objects not sent again because a checkpoint says they were
    /// delivered
    Counter CHECKPOINT_EVENTS_SKIPPED = "alf_checkpoint_events_skipped_total";
    /// Checkpoints written for objects in progress, by outcome (ok, error)
    Counter CHECKPOINT_WRITES = "alf_checkpoint_writes_total";
}

/// Families whose names other modules declare, beside the code that records them.
const FAMILIES_ELSEWHERE: &[Family] = &[
    Family {
        kind: FamilyKind::Counter,
        name: crate::filter::EVENTS_DROPPED,
        help: "Events dropped by [[processing.drop]] rules, by rule",
    },
    Family {
        kind: FamilyKind::SecondsHistogram,
        name: crate::intake::REQUEST_DURATION,
        help: "Intake request durations, by status class",
    },
    Family {
        kind: FamilyKind::Counter,
        name: crate::deadletter::DEAD_LETTER_EVENTS,
        help: "Events the intake refused on their own, written to the dead-letter sink, by reason",
    },
    Family {
        kind: FamilyKind::Counter,
        name: crate::intake::EVENTS_TRUNCATED,
        help: "Events cut to fit intake.max_event_bytes",
    },
];

/// `2xx`, `4xx`, `5xx`, or `error` for requests that got no response.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
        None => "error",
    }
}

fn describe() {
    for family in FAMILIES.iter().chain(FAMILIES_ELSEWHERE) {
        let name = KeyName::from_const_str(family.name);
        let help = SharedString::const_str(family.help.trim_start());
        metrics::with_recorder(|recorder| match family.kind {
            FamilyKind::Counter => recorder.describe_counter(name, None, help),
            FamilyKind::BytesCounter => recorder.describe_counter(name, Some(Unit::Bytes), help),
            FamilyKind::Gauge => recorder.describe_gauge(name, None, help),
            FamilyKind::SecondsGauge => recorder.describe_gauge(name, Some(Unit::Seconds), help),
            FamilyKind::SecondsHistogram => {
                recorder.describe_histogram(name, Some(Unit::Seconds), help)
            }
            FamilyKind::CountHistogram => {
                recorder.describe_histogram(name, Some(Unit::Count), help)
            }
            FamilyKind::BytesHistogram => {
                recorder.describe_histogram(name, Some(Unit::Bytes), help)
            }
        });
    }
}

/// Why the metrics listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen on {addr} for metrics: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What `/readyz` answers: ready unless the intake circuit is open or SQS cannot be
/// reached (consecutive ReceiveMessage failures). An orchestrator may then route
/// nothing new here; `/healthz` (liveness) stays 200 as long as the process answers.
#[derive(Debug, Default)]
pub struct Readiness {
    sqs_unreachable: AtomicBool,
    intake_down: AtomicBool,
}

impl Readiness {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn set_sqs_unreachable(&self, unreachable: bool) {
        self.sqs_unreachable.store(unreachable, Ordering::Release);
    }

    pub fn set_intake_down(&self, down: bool) {
        self.intake_down.store(down, Ordering::Release);
    }

    /// `None` when ready, else why not.
    pub fn not_ready_because(&self) -> Option<&'static str> {
        if self.intake_down.load(Ordering::Acquire) {
            Some("intake circuit open: the intake is down, receiving paused\n")
        } else if self.sqs_unreachable.load(Ordering::Acquire) {
            Some("SQS unreachable: ReceiveMessage keeps failing\n")
        } else {
            None
        }
    }
}

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus recorder (installed on first use; `None` when another
/// recorder was installed first).
fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(OBJECT_DURATION.to_owned()),
                    &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(BATCH_EVENTS.to_owned()),
                        &[1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(BATCH_BYTES.to_owned()),
                        &[1e3, 1e4, 1e5, 5e5, 1e6, 2e6, 4e6, 8e6, 16e6],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(crate::intake::REQUEST_DURATION.to_owned()),
                        &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
                    )
                });
            let builder = match builder {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics buckets rejected; using summaries");
                    PrometheusBuilder::new()
                }
            };
            match builder.install_recorder() {
                Ok(h) => {
                    describe();
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot install the Prometheus recorder; metrics disabled");
                    None
                }
            }
        })
        .as_ref()
}

/// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) -> Result<(), MetricsError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let handle = handle();
    tracing::info!(listen = %listener.local_addr().unwrap_or(addr), "metrics listening (/metrics, /healthz, /readyz)");
    tokio::spawn(async move {
        let mut upkeep = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = upkeep.tick() => {
                    if let Some(h) = handle {
                        h.run_upkeep();
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(answer(stream, handle, Arc::clone(&readiness)));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics listener accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    });
    Ok(())
}

/// Answers one request and closes the connection.
async fn answer(
    mut stream: TcpStream,
    handle: Option<&'static PrometheusHandle>,
    readiness: Arc<Readiness>,
) {
    let mut buf = vec![0u8; 2048];
    let mut len = 0;
    // Read the request head (bounded, with a timeout: a stuck client must not pin a task).
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while len < buf.len() {
            match stream.read(&mut buf[len..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    len += n;
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    if read.is_err() {
        return;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => match handle {
            Some(h) => ("200 OK", "text/plain; version=0.0.4", h.render()),
            None => (
                "503 Service Unavailable",
                "text/plain",
                "metrics recorder unavailable\n".to_owned(),
            ),
        },
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_owned()),
        ("GET", "/readyz") => match readiness.not_ready_because() {
            None => ("200 OK", "text/plain", "ready\n".to_owned()),
            Some(why) => ("503 Service Unavailable", "text/plain", why.to_owned()),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "try /metrics, /healthz or /readyz\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_health() {
        // Find a free port, then serve on it.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let stop = CancellationToken::new();
        let readiness = Readiness::new();
        serve(addr, Arc::clone(&readiness), stop.clone())
            .await
            .unwrap();
        metrics::counter!(EVENTS_PARSED).increment(3);
        let health = get(addr, "/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200 OK"), "{health}");
        assert!(health.ends_with("ok\n"));
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
        assert!(metrics.contains("alf_events_parsed_total"), "{metrics}");
        // The help text is the family's doc comment, lines joined.
        assert!(
            metrics.contains("# HELP alf_events_parsed_total Events produced by the parsers\n"),
            "{metrics}"
        );
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        readiness.set_intake_down(true);
        let not_ready = get(addr, "/readyz").await;
        assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
        assert!(not_ready.contains("intake circuit open"), "{not_ready}");
        readiness.set_intake_down(false);
        readiness.set_sqs_unreachable(true);
        assert!(get(addr, "/readyz").await.contains("SQS unreachable"));
        readiness.set_sqs_unreachable(false);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        stop.cancel();
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(Some(204)), "2xx");
        assert_eq!(status_class(Some(429)), "4xx");
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(None), "error");
    }
}
