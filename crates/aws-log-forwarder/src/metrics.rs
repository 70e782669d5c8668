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

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub const MESSAGES_RECEIVED: &str = "alf_sqs_messages_received_total";
pub const MESSAGES_DELETED: &str = "alf_sqs_messages_deleted_total";
pub const MESSAGES_FAILED: &str = "alf_sqs_messages_failed_total";
pub const RECEIVE_ERRORS: &str = "alf_sqs_receive_errors_total";
pub const OBJECTS_PROCESSED: &str = "alf_objects_processed_total";
pub const OBJECTS_FAILED: &str = "alf_objects_failed_total";
pub const OBJECTS_SKIPPED: &str = "alf_objects_skipped_total";
pub const EVENTS_PARSED: &str = "alf_events_parsed_total";
pub const EVENTS_MALFORMED: &str = "alf_events_malformed_total";
pub const EVENTS_DELIVERED: &str = "alf_events_delivered_total";
pub const EVENTS_FAILED: &str = "alf_events_failed_total";
pub const BYTES_COMPRESSED: &str = "alf_object_bytes_compressed_total";
pub const BYTES_DECOMPRESSED: &str = "alf_object_bytes_decompressed_total";
pub const INTAKE_REQUESTS: &str = "alf_intake_requests_total";
pub const INTAKE_RETRIES: &str = "alf_intake_retries_total";
pub const INTAKE_FAILURES: &str = "alf_intake_failures_total";
pub const OBJECT_DURATION: &str = "alf_object_duration_seconds";
pub const BATCH_EVENTS: &str = "alf_batch_events";
pub const BATCH_BYTES: &str = "alf_batch_bytes";
pub const CIRCUIT_OPEN: &str = "alf_intake_circuit_open";
pub const SQS_API_CALLS: &str = "alf_sqs_api_calls_total";
pub const S3_RESUMES: &str = "alf_s3_stream_resumes_total";
pub const SQS_BATCHED_ENTRIES: &str = "alf_sqs_batched_entries_total";
pub const MESSAGES_IN_FLIGHT: &str = "alf_sqs_messages_in_flight";
pub const OBJECTS_IN_FLIGHT: &str = "alf_objects_in_flight";
pub const OLDEST_IN_FLIGHT_AGE: &str = "alf_sqs_oldest_in_flight_message_age_seconds";
pub const QUEUE_VISIBLE_MESSAGES: &str = "alf_sqs_queue_visible_messages";
pub const MESSAGES_DEAD_LETTERED: &str = "alf_sqs_messages_dead_lettered_total";
pub const CHECKPOINT_EVENTS_SKIPPED: &str = "alf_checkpoint_events_skipped_total";
pub const CHECKPOINT_WRITES: &str = "alf_checkpoint_writes_total";

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
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(MESSAGES_RECEIVED, "SQS messages received");
    describe_counter!(MESSAGES_DELETED, "SQS messages deleted after full delivery");
    describe_counter!(
        MESSAGES_FAILED,
        "SQS messages left for redelivery after a failure"
    );
    describe_counter!(RECEIVE_ERRORS, "Failed ReceiveMessage calls");
    describe_counter!(SQS_API_CALLS, "SQS API calls made, by operation");
    describe_counter!(
        S3_RESUMES,
        "Dropped S3 streams resumed with a ranged GET from the byte reached"
    );
    describe_counter!(
        CHECKPOINT_EVENTS_SKIPPED,
        "Events of redelivered objects not sent again because a checkpoint says they were delivered"
    );
    describe_counter!(
        CHECKPOINT_WRITES,
        "Checkpoints written for objects in progress, by outcome (ok, error)"
    );
    describe_counter!(
        SQS_BATCHED_ENTRIES,
        "Messages deleted or re-timed through batch calls, by operation (each would be one call without batching)"
    );
    describe_counter!(
        MESSAGES_DEAD_LETTERED,
        "Messages moved to the dead-letter queue at once because they can never succeed, by reason"
    );
    metrics::describe_gauge!(MESSAGES_IN_FLIGHT, "SQS messages being processed");
    metrics::describe_gauge!(OBJECTS_IN_FLIGHT, "S3 objects being processed");
    metrics::describe_gauge!(
        OLDEST_IN_FLIGHT_AGE,
        Unit::Seconds,
        "Age of the oldest message being processed (since this process received it)"
    );
    metrics::describe_gauge!(
        QUEUE_VISIBLE_MESSAGES,
        "ApproximateNumberOfMessages of the queue, polled once a minute"
    );
    metrics::describe_gauge!(
        CIRCUIT_OPEN,
        "1 while the intake circuit is open (intake down: receiving paused), else 0"
    );
    describe_counter!(OBJECTS_PROCESSED, "S3 objects processed, by outcome");
    describe_counter!(
        OBJECTS_FAILED,
        "S3 objects that failed (read, decode or delivery)"
    );
    describe_counter!(
        OBJECTS_SKIPPED,
        "S3 objects skipped on purpose (e.g. CloudTrail digests)"
    );
    describe_counter!(EVENTS_PARSED, "Events produced by the parsers");
    describe_counter!(
        EVENTS_MALFORMED,
        "Records that could not be parsed (forwarded raw)"
    );
    describe_counter!(
        crate::filter::EVENTS_DROPPED,
        "Events dropped by [[processing.drop]] rules, by rule"
    );
    describe_counter!(EVENTS_DELIVERED, "Events accepted by the intake");
    describe_counter!(
        EVENTS_FAILED,
        "Events the intake rejected or that ran out of retries"
    );
    describe_counter!(
        BYTES_COMPRESSED,
        Unit::Bytes,
        "S3 object bytes read (as stored)"
    );
    describe_counter!(
        BYTES_DECOMPRESSED,
        Unit::Bytes,
        "S3 object bytes after decompression"
    );
    describe_counter!(INTAKE_REQUESTS, "Intake HTTP requests, by status class");
    describe_counter!(INTAKE_RETRIES, "Intake requests retried");
    describe_counter!(
        INTAKE_FAILURES,
        "Intake batches that failed for good, by status class"
    );
    describe_histogram!(
        OBJECT_DURATION,
        Unit::Seconds,
        "Time to process one S3 object, fetch to last acknowledgement"
    );
    describe_histogram!(BATCH_EVENTS, Unit::Count, "Events per intake batch");
    describe_histogram!(
        crate::intake::REQUEST_DURATION,
        Unit::Seconds,
        "Intake request durations, by status class"
    );
    describe_counter!(
        crate::deadletter::DEAD_LETTER_EVENTS,
        "Events the intake refused on their own, written to the dead-letter sink, by reason"
    );
    describe_counter!(
        crate::intake::EVENTS_TRUNCATED,
        "Events cut to fit intake.max_event_bytes"
    );
    describe_histogram!(
        BATCH_BYTES,
        Unit::Bytes,
        "Uncompressed body bytes per intake batch"
    );
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
