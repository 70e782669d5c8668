//! The HTTP intake client: encodes a batch for the configured protocol, compresses it,
//! POSTs it and retries what is worth retrying.
//!
//! Retried: connection errors, timeouts, 408, 429 (after `Retry-After` when given) and
//! 5xx, with exponential backoff and full jitter (a random delay between zero and the
//! exponential ceiling, so many forwarders recovering from the same outage do not
//! retry in lock-step). Anything else (400, 401, 403, 413, redirects...) will fail the
//! same way on every attempt, so it fails the batch at once and is logged loudly with
//! the status and the first 512 bytes of the answer, never the key.
//!
//! Elasticsearch `_bulk` answers 200 even when items fail: the per-item statuses are
//! read, items rejected with 429/5xx are sent again alone, and items rejected for good
//! fail only their own objects.

use std::error::Error as _;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rand::RngExt;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::Deserialize;

use crate::batch::{Batch, BatchSender, DeliveryFailure};
use crate::circuit::IntakeCircuit;
use crate::config::{IntakeKey, IntakeProtocol, IntakeSettings};
use crate::metrics as m;

/// Longest excerpt of an error answer that is logged.
pub const EXCERPT_BYTES: usize = 512;
/// Upper bound on a server's `Retry-After`, so a bogus value cannot park a batch for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// gzip level: 3 compresses JSON logs about as well as 6 at a fraction of the CPU.
const GZIP_LEVEL: u32 = 3;

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("cannot build the intake HTTP client: {0}")]
    Client(String),
}

/// Where a protocol posts to: Sekoia's `/batch`, Elasticsearch's `/_bulk`, or the URL
/// as configured for `ndjson`.
pub fn endpoint(url: &url::Url, protocol: IntakeProtocol) -> url::Url {
    let suffix = match protocol {
        IntakeProtocol::Sekoia => "/batch",
        IntakeProtocol::Elasticsearch => "/_bulk",
        IntakeProtocol::Ndjson => return url.clone(),
    };
    let path = url.path().trim_end_matches('/');
    if path.ends_with(suffix) {
        return url.clone();
    }
    let mut out = url.clone();
    out.set_path(&format!("{path}{suffix}"));
    out
}

/// Builds request bodies. Separate from the HTTP client so it can run on a blocking
/// thread (encoding and compressing megabytes is CPU work).
#[derive(Clone)]
pub struct BodyEncoder {
    protocol: IntakeProtocol,
    key: Option<IntakeKey>,
    es_action: Vec<u8>,
    gzip: bool,
}

impl BodyEncoder {
    pub fn new(settings: &IntakeSettings) -> Self {
        let mut es_action = Vec::new();
        es_action.extend_from_slice(b"{\"create\":{\"_index\":");
        // The index name was checked for quotes and backslashes; serde_json escapes
        // anything else.
        let _ = serde_json::to_writer(&mut es_action, &settings.elasticsearch_index);
        es_action.extend_from_slice(b"}}\n");
        BodyEncoder {
            protocol: settings.protocol,
            key: settings.key.clone(),
            es_action,
            gzip: settings.gzip,
        }
    }

    /// Bytes `event` adds to the uncompressed body.
    pub fn cost(&self, event: &[u8]) -> usize {
        match self.protocol {
            // Quoted, with `"` and `\` escaped, plus a comma.
            IntakeProtocol::Sekoia => {
                event.len() + 3 + memchr::memchr2_iter(b'"', b'\\', event).count()
            }
            IntakeProtocol::Ndjson => event.len() + 1,
            IntakeProtocol::Elasticsearch => self.es_action.len() + event.len() + 1,
        }
    }

    /// The uncompressed body for the events `only` (all when `None`).
    pub fn encode(&self, batch: &Batch, only: Option<&[usize]>) -> Vec<u8> {
        let mut out = Vec::with_capacity(batch.body_bytes() + 64);
        let mut each = |f: &mut dyn FnMut(&mut Vec<u8>, &[u8])| match only {
            Some(idx) => idx.iter().for_each(|&i| f(&mut out, batch.event(i))),
            None => batch.events().for_each(|e| f(&mut out, e)),
        };
        match self.protocol {
            IntakeProtocol::Sekoia => {
                let mut first = true;
                let mut body = Vec::new();
                each(&mut |out, event| {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    write_json_string(out, event);
                });
                std::mem::swap(&mut body, &mut out);
                out.extend_from_slice(b"{\"intake_key\":");
                let key = self.key.as_ref().map_or("", IntakeKey::expose);
                let _ = serde_json::to_writer(&mut out, key);
                out.extend_from_slice(b",\"jsons\":[");
                out.extend_from_slice(&body);
                out.extend_from_slice(b"]}");
            }
            IntakeProtocol::Ndjson => each(&mut |out, event| {
                out.extend_from_slice(event);
                out.push(b'\n');
            }),
            IntakeProtocol::Elasticsearch => each(&mut |out, event| {
                out.extend_from_slice(&self.es_action);
                out.extend_from_slice(event);
                out.push(b'\n');
            }),
        }
        out
    }

    /// The body to send and whether it is gzip-compressed.
    pub fn encode_for_wire(&self, batch: &Batch, only: Option<&[usize]>) -> (Bytes, bool) {
        let plain = self.encode(batch, only);
        if !self.gzip {
            return (Bytes::from(plain), false);
        }
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(plain.len() / 6 + 64),
            flate2::Compression::new(GZIP_LEVEL),
        );
        match enc.write_all(&plain).and_then(|()| enc.finish()) {
            Ok(gz) => (Bytes::from(gz), true),
            // Writing into a Vec does not fail; if it ever did, plain still works.
            Err(_) => (Bytes::from(plain), false),
        }
    }
}

/// Appends `s` (valid JSON text) as a JSON string literal.
fn write_json_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&s[start..i]);
                let _ = write!(out, "\\u{b:04x}");
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// The result of one HTTP attempt.
#[derive(Debug)]
enum Attempt {
    Accepted,
    /// Elasticsearch: some items failed (indices relative to the request).
    Partial {
        retry: Vec<usize>,
        permanent: Vec<usize>,
        cause: String,
    },
    Retryable {
        cause: String,
        retry_after: Option<Duration>,
        status: Option<u16>,
    },
    Permanent {
        cause: String,
        status: u16,
    },
}

/// Posts batches to the intake. Cheap to share (`Arc`); the HTTP connection pool is
/// inside.
pub struct IntakeClient {
    http: reqwest::Client,
    endpoint: url::Url,
    protocol: IntakeProtocol,
    key: Option<IntakeKey>,
    encoder: Arc<BodyEncoder>,
    max_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
    /// Opens after `max_retries` consecutive retryable failures; the daemon pauses
    /// receiving while it is open.
    circuit: Arc<IntakeCircuit>,
}

impl IntakeClient {
    pub fn new(settings: &IntakeSettings) -> Result<Self, IntakeError> {
        let mut headers = HeaderMap::new();
        let content_type = match settings.protocol {
            IntakeProtocol::Sekoia => "application/json",
            IntakeProtocol::Ndjson | IntakeProtocol::Elasticsearch => "application/x-ndjson",
        };
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(key) = &settings.key {
            let secret = |text: String| {
                HeaderValue::from_str(&text)
                    .map(|mut v| {
                        v.set_sensitive(true);
                        v
                    })
                    .map_err(|_| {
                        IntakeError::Client(
                            "the intake key is not a valid HTTP header value".into(),
                        )
                    })
            };
            match settings.protocol {
                IntakeProtocol::Sekoia => {}
                IntakeProtocol::Ndjson => {
                    headers.insert("X-Intake-Key", secret(key.expose().to_owned())?);
                    headers.insert(
                        header::AUTHORIZATION,
                        secret(format!("Bearer {}", key.expose()))?,
                    );
                }
                IntakeProtocol::Elasticsearch => {
                    headers.insert(
                        header::AUTHORIZATION,
                        secret(format!("ApiKey {}", key.expose()))?,
                    );
                }
            }
        }
        let timeout = Duration::from_secs(settings.timeout_seconds);
        let http = reqwest::Client::builder()
            .user_agent(concat!("aws-log-forwarder/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(settings.connect_timeout_seconds))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(settings.max_concurrent_requests.max(1))
            // A POST answered with a redirect would be replayed as a GET: never follow,
            // report the redirect instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| IntakeError::Client(e.to_string()))?;
        Ok(IntakeClient {
            http,
            endpoint: endpoint(&settings.url, settings.protocol),
            protocol: settings.protocol,
            key: settings.key.clone(),
            encoder: Arc::new(BodyEncoder::new(settings)),
            max_retries: settings.max_retries,
            initial_backoff: Duration::from_millis(settings.retry_initial_backoff_ms),
            max_backoff: Duration::from_millis(settings.retry_max_backoff_ms),
            timeout,
            circuit: Arc::new(IntakeCircuit::new(settings.max_retries.max(1))),
        })
    }

    /// The circuit this client reports every request's outcome to.
    pub fn circuit(&self) -> &Arc<IntakeCircuit> {
        &self.circuit
    }

    /// The URL batches are posted to.
    pub fn endpoint(&self) -> &url::Url {
        &self.endpoint
    }

    /// Checks that the intake answers HTTP at all, with a `HEAD` on the endpoint (no
    /// events, no key in the URL). Any answer, even 404 or 405, means it is reachable;
    /// `Err` is the readable cause (connection refused, DNS, TLS, timeout). Run at start,
    /// so a wrong `intake.url` shows at once rather than when the first object arrives.
    pub async fn probe(&self) -> Result<reqwest::StatusCode, String> {
        match self.http.head(self.endpoint.clone()).send().await {
            Ok(response) => Ok(response.status()),
            Err(e) => Err(describe_error(&e, self.timeout)),
        }
    }

    /// Full-jitter delay before retry number `retry` (1-based).
    fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1).min(30)));
        let ceiling = exp.min(self.max_backoff);
        let ms = ceiling.as_millis().min(u128::from(u64::MAX)) as u64;
        Duration::from_millis(rand::rng().random_range(0..=ms))
    }

    async fn encode(
        &self,
        batch: &Arc<Batch>,
        only: Option<Vec<usize>>,
    ) -> Result<(Bytes, bool), String> {
        let encoder = Arc::clone(&self.encoder);
        let batch = Arc::clone(batch);
        tokio::task::spawn_blocking(move || encoder.encode_for_wire(&batch, only.as_deref()))
            .await
            .map_err(|e| format!("encoding the batch failed: {e}"))
    }

    /// Delivers `batch`, retrying until it is accepted, fails for good or
    /// `max_retries` retries were spent.
    pub async fn deliver(&self, batch: Arc<Batch>) -> Result<(), DeliveryFailure> {
        let url = self.endpoint.as_str();
        let attempts = self.max_retries + 1;
        // Events still to send (Elasticsearch partial retries); None: all.
        let mut remaining: Option<Vec<usize>> = None;
        let mut rejected: Vec<usize> = Vec::new();
        let mut rejected_reason = String::new();
        let fail_all = |remaining: Option<Vec<usize>>, rejected: Vec<usize>, reason: String| {
            let failed = remaining.map(|mut r| {
                r.extend(rejected);
                r
            });
            DeliveryFailure { failed, reason }
        };
        let mut body = match self.encode(&batch, None).await {
            Ok(b) => b,
            Err(reason) => {
                return Err(DeliveryFailure {
                    failed: None,
                    reason,
                });
            }
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = self
                .attempt(
                    body.0.clone(),
                    body.1,
                    remaining.as_ref().map_or(batch.len(), Vec::len),
                )
                .await;
            match &outcome {
                Attempt::Accepted | Attempt::Partial { .. } | Attempt::Permanent { .. } => {
                    self.circuit.record_success()
                }
                Attempt::Retryable { cause, .. } => self.circuit.record_retryable_failure(cause),
            }
            let (cause, retry_after, status) = match outcome {
                Attempt::Accepted => {
                    if rejected.is_empty() {
                        return Ok(());
                    }
                    return Err(DeliveryFailure {
                        failed: Some(rejected),
                        reason: rejected_reason,
                    });
                }
                Attempt::Partial {
                    retry,
                    permanent,
                    cause,
                } => {
                    let to_batch = |i: usize| remaining.as_ref().map_or(i, |r| r[i]);
                    if !permanent.is_empty() {
                        tracing::error!(
                            intake = url,
                            rejected = permanent.len(),
                            events = batch.len(),
                            "intake {url} rejected {} of {} events for good: {cause}; their objects will be redelivered",
                            permanent.len(),
                            remaining.as_ref().map_or(batch.len(), Vec::len),
                        );
                        metrics::counter!(m::INTAKE_FAILURES, "status_class" => "4xx").increment(1);
                        if rejected_reason.is_empty() {
                            rejected_reason = format!("intake rejected events: {cause}");
                        }
                        rejected.extend(permanent.iter().map(|&i| to_batch(i)));
                    }
                    if retry.is_empty() {
                        return Err(DeliveryFailure {
                            failed: Some(rejected),
                            reason: rejected_reason,
                        });
                    }
                    let next: Vec<usize> = retry.iter().map(|&i| to_batch(i)).collect();
                    let n = next.len();
                    remaining = Some(next);
                    body = match self.encode(&batch, remaining.clone()).await {
                        Ok(b) => b,
                        Err(reason) => return Err(fail_all(remaining, rejected, reason)),
                    };
                    (
                        format!("{n} events refused temporarily ({cause})"),
                        None,
                        Some(200),
                    )
                }
                Attempt::Retryable {
                    cause,
                    retry_after,
                    status,
                } => (cause, retry_after, status),
                Attempt::Permanent { cause, status } => {
                    tracing::error!(
                        intake = url,
                        status,
                        events = remaining.as_ref().map_or(batch.len(), Vec::len),
                        "intake {url} rejected the batch: {cause}; not retried (the request itself is refused), the messages will be redelivered"
                    );
                    metrics::counter!(m::INTAKE_FAILURES, "status_class" => m::status_class(Some(status))).increment(1);
                    return Err(fail_all(
                        remaining,
                        rejected,
                        format!("intake rejected the batch: {cause}"),
                    ));
                }
            };
            if attempt >= attempts {
                tracing::error!(
                    intake = url,
                    attempts,
                    "intake {url}: giving up after {attempts} attempts: {cause}; the messages will be redelivered"
                );
                metrics::counter!(m::INTAKE_FAILURES, "status_class" => m::status_class(status))
                    .increment(1);
                return Err(fail_all(
                    remaining,
                    rejected,
                    format!("intake unavailable after {attempts} attempts: {cause}"),
                ));
            }
            let delay = retry_after.unwrap_or_else(|| self.backoff(attempt));
            tracing::warn!(
                intake = url,
                attempt,
                attempts,
                delay_ms = delay.as_millis() as u64,
                "intake {url} {cause}; retrying in {:.1}s (attempt {attempt}/{attempts})",
                delay.as_secs_f64()
            );
            metrics::counter!(m::INTAKE_RETRIES).increment(1);
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, body: Bytes, gzip: bool, events: usize) -> Attempt {
        let mut request = self.http.post(self.endpoint.clone()).body(body);
        if gzip {
            request = request.header(header::CONTENT_ENCODING, "gzip");
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                metrics::counter!(m::INTAKE_REQUESTS, "status_class" => "error").increment(1);
                return Attempt::Retryable {
                    cause: describe_error(&e, self.timeout),
                    retry_after: None,
                    status: None,
                };
            }
        };
        let status = response.status();
        metrics::counter!(m::INTAKE_REQUESTS, "status_class" => m::status_class(Some(status.as_u16()))).increment(1);
        if status.is_success() {
            if self.protocol != IntakeProtocol::Elasticsearch {
                return Attempt::Accepted;
            }
            return match response.bytes().await {
                Ok(body) => bulk_outcome(&body, events),
                // Accepted but unreadable: sending again may duplicate (event ids let
                // the intake drop them) but never loses.
                Err(e) => Attempt::Retryable {
                    cause: format!(
                        "answered {status} but the response could not be read: {}",
                        describe_error(&e, self.timeout)
                    ),
                    retry_after: None,
                    status: Some(status.as_u16()),
                },
            };
        }
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let excerpt = self.excerpt(response).await;
        let code = status.as_u16();
        let mut cause = format!("answered {status}");
        if let Some(loc) = location {
            cause.push_str(&format!(" (redirect to {loc}: check intake.url)"));
        }
        if !excerpt.is_empty() {
            cause.push_str(": ");
            cause.push_str(&excerpt);
        }
        if code == 408 || code == 429 || status.is_server_error() {
            Attempt::Retryable {
                cause,
                retry_after,
                status: Some(code),
            }
        } else {
            Attempt::Permanent {
                cause,
                status: code,
            }
        }
    }

    /// The first [`EXCERPT_BYTES`] of an error answer, on one line, key masked.
    async fn excerpt(&self, mut response: reqwest::Response) -> String {
        let mut buf = Vec::new();
        while buf.len() < EXCERPT_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
                _ => break,
            }
        }
        buf.truncate(EXCERPT_BYTES);
        let mut text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(key) = &self.key
            && !key.expose().is_empty()
        {
            text = text.replace(key.expose(), "***");
        }
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

impl BatchSender for IntakeClient {
    fn body_cost(&self, event: &[u8]) -> usize {
        self.encoder.cost(event)
    }

    async fn send(&self, batch: Arc<Batch>) -> Result<(), DeliveryFailure> {
        self.deliver(batch).await
    }
}

/// A readable cause for a failed request: "unreachable: connection refused",
/// "timed out after 30s", ...
fn describe_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}s", timeout.as_secs());
    }
    let mut io_kind = None;
    let mut innermost = e.to_string();
    let mut dns = false;
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        let text = s.to_string();
        dns |= text.contains("dns error");
        innermost = text;
        source = s.source();
    }
    let reason = match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".to_owned(),
        Some(std::io::ErrorKind::ConnectionReset) => "connection reset".to_owned(),
        Some(std::io::ErrorKind::ConnectionAborted) => "connection aborted".to_owned(),
        Some(std::io::ErrorKind::TimedOut) => "timed out".to_owned(),
        _ if dns => format!("DNS lookup failed: {innermost}"),
        _ => innermost,
    };
    if e.is_connect() || io_kind.is_some() {
        format!("unreachable: {reason}")
    } else {
        format!("request failed: {reason}")
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Reads an Elasticsearch `_bulk` answer for a request of `events` items.
fn bulk_outcome(body: &[u8], events: usize) -> Attempt {
    let response: BulkResponse = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return Attempt::Retryable {
                cause: format!("answered 200 with an unreadable bulk response: {e}"),
                retry_after: None,
                status: Some(200),
            };
        }
    };
    if !response.errors {
        return Attempt::Accepted;
    }
    if response.items.len() != events {
        return Attempt::Retryable {
            cause: format!(
                "bulk response lists {} items for {events} events",
                response.items.len()
            ),
            retry_after: None,
            status: Some(200),
        };
    }
    let mut retry = Vec::new();
    let mut permanent = Vec::new();
    let mut cause = String::new();
    for (i, item) in response.items.iter().enumerate() {
        let Some(item) = item.values().next() else {
            continue;
        };
        match item.status {
            200..=299 => {}
            429 | 500..=599 => retry.push(i),
            _ => {
                permanent.push(i);
                if cause.is_empty() {
                    let error = item
                        .error
                        .as_ref()
                        .map(|e| {
                            let kind = e.get("type").and_then(|t| t.as_str()).unwrap_or("error");
                            let reason = e.get("reason").and_then(|t| t.as_str()).unwrap_or("");
                            format!("{kind}: {reason}")
                        })
                        .unwrap_or_default();
                    let mut text = format!("status {} {error}", item.status);
                    text.truncate(EXCERPT_BYTES);
                    cause = text;
                }
            }
        }
    }
    if retry.is_empty() && permanent.is_empty() {
        return Attempt::Accepted;
    }
    if cause.is_empty() {
        cause = "items refused with 429/5xx".to_owned();
    }
    Attempt::Partial {
        retry,
        permanent,
        cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::ObjectAck;
    use crate::config::{Config, KeySource};
    use std::io::Read;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// One request as the test server saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        request_line: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        fn plain_body(&self) -> Vec<u8> {
            if self.header("content-encoding") == Some("gzip") {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            } else {
                self.body.clone()
            }
        }
    }

    /// A minimal HTTP/1.1 server answering canned responses in order (the last one
    /// repeats), one request per connection.
    async fn server(responses: Vec<String>) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut n = 0;
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let head_end = loop {
                    let r = stream.read(&mut chunk).await.unwrap();
                    if r == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..r]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(p);
                    }
                };
                let Some(head_end) = head_end else { continue };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let mut lines = head.split("\r\n");
                let request_line = lines.next().unwrap_or_default().to_owned();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = buf[head_end + 4..].to_vec();
                while body.len() < len {
                    let r = stream.read(&mut chunk).await.unwrap();
                    if r == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..r]);
                }
                log.lock().unwrap().push(Seen {
                    request_line,
                    headers,
                    body,
                });
                let response = responses[n.min(responses.len() - 1)].clone();
                n += 1;
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        (format!("http://{addr}"), seen)
    }

    fn response(status: &str, extra_headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn probe_tells_reachable_from_unreachable() {
        // Any HTTP answer means reachable, even one that would reject events.
        let (url, seen) = server(vec![
            "HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n".into(),
        ])
        .await;
        let client = IntakeClient::new(&settings(&url, "sekoia", "")).unwrap();
        assert_eq!(
            client.probe().await,
            Ok(reqwest::StatusCode::METHOD_NOT_ALLOWED)
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].request_line.starts_with("HEAD /batch "), "{seen:?}");
        assert!(seen[0].body.is_empty());

        // A port nobody listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let client = IntakeClient::new(&settings(&closed, "sekoia", "")).unwrap();
        let cause = client.probe().await.unwrap_err();
        assert_eq!(cause, "unreachable: connection refused");
    }

    fn settings(url: &str, protocol: &str, extra: &str) -> IntakeSettings {
        let text = format!(
            "[sqs]\nqueue_url = \"http://127.0.0.1:1/000000000000/q\"\n[intake]\nurl = \"{url}\"\nprotocol = \"{protocol}\"\nkey = \"test-intake-key\"\nretry_initial_backoff_ms = 5\nretry_max_backoff_ms = 20\nmax_retries = 3\n{extra}"
        );
        Config::from_toml_str(&text).unwrap().intake
    }

    fn batch(events: &[&str]) -> (Arc<Batch>, Arc<ObjectAck>) {
        let ack = Arc::new(ObjectAck::new());
        ack.add_pending(events.len() as u64);
        let mut b = Batch::default();
        for e in events {
            b.push(e.as_bytes(), e.len(), &ack);
        }
        (Arc::new(b), ack)
    }

    const EVENTS: [&str; 2] = [
        r#"{"message":"a \"quoted\" line","event":{"id":"1"}}"#,
        r#"{"message":"back\\slash","event":{"id":"2"}}"#,
    ];

    #[tokio::test]
    async fn sekoia_body_shape_and_gzip() {
        let (url, seen) = server(vec![response("200 OK", "", "{}")]).await;
        let client = IntakeClient::new(&settings(&url, "sekoia", "")).unwrap();
        let (b, _) = batch(&EVENTS);
        client.deliver(b).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        let req = &seen[0];
        assert_eq!(req.request_line, "POST /batch HTTP/1.1");
        assert_eq!(req.header("content-encoding"), Some("gzip"));
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(
            req.header("user-agent"),
            Some(concat!("aws-log-forwarder/", env!("CARGO_PKG_VERSION")))
        );
        let body: serde_json::Value = serde_json::from_slice(&req.plain_body()).unwrap();
        assert_eq!(body["intake_key"], "test-intake-key");
        let jsons = body["jsons"].as_array().unwrap();
        assert_eq!(jsons.len(), 2);
        for (sent, original) in jsons.iter().zip(EVENTS) {
            assert_eq!(sent.as_str(), Some(original));
        }
    }

    #[tokio::test]
    async fn ndjson_plain_body_and_key_headers() {
        let (url, seen) = server(vec![response("204 No Content", "", "")]).await;
        let client = IntakeClient::new(&settings(
            &format!("{url}/ingest"),
            "ndjson",
            "gzip = false",
        ))
        .unwrap();
        let (b, ack) = batch(&EVENTS);
        client.deliver(b.clone()).await.unwrap();
        b.acknowledge();
        assert_eq!(ack.settled().await, Ok(()));
        let req = seen.lock().unwrap()[0].clone();
        assert_eq!(req.request_line, "POST /ingest HTTP/1.1");
        assert_eq!(req.header("content-encoding"), None);
        assert_eq!(req.header("content-type"), Some("application/x-ndjson"));
        assert_eq!(req.header("x-intake-key"), Some("test-intake-key"));
        assert_eq!(req.header("authorization"), Some("Bearer test-intake-key"));
        assert_eq!(
            req.body,
            format!("{}\n{}\n", EVENTS[0], EVENTS[1]).into_bytes()
        );
    }

    #[tokio::test]
    async fn server_error_then_success_is_retried() {
        let (url, seen) = server(vec![
            response("500 Internal Server Error", "", "boom"),
            response("503 Service Unavailable", "", ""),
            response("200 OK", "", "{}"),
        ])
        .await;
        let client = IntakeClient::new(&settings(&url, "sekoia", "")).unwrap();
        let (b, _) = batch(&EVENTS);
        client.deliver(b).await.unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(
            seen[0].plain_body(),
            seen[2].plain_body(),
            "the same body is sent again"
        );
    }

    #[tokio::test]
    async fn too_many_requests_honours_retry_after() {
        let (url, seen) = server(vec![
            response("429 Too Many Requests", "Retry-After: 1\r\n", ""),
            response("200 OK", "", "{}"),
        ])
        .await;
        let client = IntakeClient::new(&settings(&url, "sekoia", "")).unwrap();
        let (b, _) = batch(&EVENTS);
        let start = std::time::Instant::now();
        client.deliver(b).await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(950),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn bad_request_is_permanent_and_the_excerpt_masks_the_key() {
        let long = format!("invalid intake key test-intake-key {}", "x".repeat(2000));
        let (url, seen) = server(vec![
            response("400 Bad Request", "", &long),
            response("200 OK", "", ""),
        ])
        .await;
        let client = IntakeClient::new(&settings(&url, "sekoia", "")).unwrap();
        let (b, ack) = batch(&EVENTS);
        let failure = client.deliver(b.clone()).await.unwrap_err();
        assert_eq!(seen.lock().unwrap().len(), 1, "not retried");
        assert_eq!(failure.failed, None);
        assert!(
            failure.reason.contains("400 Bad Request"),
            "{}",
            failure.reason
        );
        assert!(
            failure.reason.contains("invalid intake key ***"),
            "{}",
            failure.reason
        );
        assert!(!failure.reason.contains("test-intake-key"));
        assert!(failure.reason.len() < EXCERPT_BYTES + 100);
        b.settle_failure(None, &failure.reason);
        assert!(ack.settled().await.is_err());
    }

    #[tokio::test]
    async fn retries_are_bounded() {
        let (url, seen) = server(vec![response("502 Bad Gateway", "", "")]).await;
        let client = IntakeClient::new(&settings(&url, "ndjson", "")).unwrap();
        let (b, _) = batch(&EVENTS);
        let failure = client.deliver(b).await.unwrap_err();
        assert_eq!(seen.lock().unwrap().len(), 4, "1 attempt + max_retries 3");
        assert!(
            failure.reason.contains("after 4 attempts"),
            "{}",
            failure.reason
        );
    }

    #[tokio::test]
    async fn unreachable_intake_names_the_cause() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = IntakeClient::new(&settings(&format!("http://{addr}"), "ndjson", "")).unwrap();
        let (b, _) = batch(&EVENTS);
        let failure = client.deliver(b).await.unwrap_err();
        assert!(
            failure.reason.contains("unreachable: connection refused"),
            "{}",
            failure.reason
        );
    }

    #[tokio::test]
    async fn elasticsearch_bulk_partial_failure() {
        let first = r#"{"took":3,"errors":true,"items":[{"create":{"_index":"logs-aws-default","status":201}},{"create":{"_index":"logs-aws-default","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},{"create":{"_index":"logs-aws-default","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [source.port]"}}}]}"#;
        let second = r#"{"took":1,"errors":false,"items":[{"create":{"status":201}}]}"#;
        let (url, seen) = server(vec![
            response("200 OK", "", first),
            response("200 OK", "", second),
        ])
        .await;
        let client = IntakeClient::new(&settings(&url, "elasticsearch", "gzip = false")).unwrap();
        let (b, ack) = batch(&[r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]);
        let failure = client.deliver(b.clone()).await.unwrap_err();
        assert_eq!(failure.failed, Some(vec![2]));
        assert!(
            failure.reason.contains("mapper_parsing_exception"),
            "{}",
            failure.reason
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].request_line, "POST /_bulk HTTP/1.1");
        assert_eq!(
            seen[0].header("authorization"),
            Some("ApiKey test-intake-key")
        );
        let action = "{\"create\":{\"_index\":\"logs-aws-default\"}}";
        assert_eq!(
            String::from_utf8(seen[0].body.clone()).unwrap(),
            format!("{action}\n{{\"n\":0}}\n{action}\n{{\"n\":1}}\n{action}\n{{\"n\":2}}\n")
        );
        // Only the item refused with 429 is sent again.
        assert_eq!(
            String::from_utf8(seen[1].body.clone()).unwrap(),
            format!("{action}\n{{\"n\":1}}\n")
        );
        b.settle_failure(failure.failed.as_deref(), &failure.reason);
        assert!(ack.settled().await.is_err());
        assert_eq!(ack.pending(), 0);
    }

    #[test]
    fn endpoints_per_protocol() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(
            endpoint(&u("https://intake.sekoia.io"), IntakeProtocol::Sekoia).as_str(),
            "https://intake.sekoia.io/batch"
        );
        assert_eq!(
            endpoint(&u("https://intake.sekoia.io/"), IntakeProtocol::Sekoia).as_str(),
            "https://intake.sekoia.io/batch"
        );
        assert_eq!(
            endpoint(&u("https://intake.sekoia.io/batch"), IntakeProtocol::Sekoia).as_str(),
            "https://intake.sekoia.io/batch"
        );
        assert_eq!(
            endpoint(&u("https://es:9200/"), IntakeProtocol::Elasticsearch).as_str(),
            "https://es:9200/_bulk"
        );
        assert_eq!(
            endpoint(&u("https://h/x"), IntakeProtocol::Ndjson).as_str(),
            "https://h/x"
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(42));
        h.insert(header::RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(42)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(42));
        h.insert(header::RETRY_AFTER, HeaderValue::from_str(&past).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("99999999"));
        assert_eq!(retry_after(&h, now), Some(MAX_RETRY_AFTER));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn sekoia_cost_matches_the_encoded_size() {
        let s = settings("https://intake.sekoia.io", "sekoia", "gzip = false");
        let enc = BodyEncoder::new(&s);
        let (b, _) = batch(&EVENTS);
        let body = enc.encode(&b, None);
        let prefix = "{\"intake_key\":\"test-intake-key\",\"jsons\":[]}".len();
        let cost: usize = EVENTS.iter().map(|e| enc.cost(e.as_bytes())).sum();
        // Each event's cost includes a comma; the last one has none.
        assert_eq!(body.len(), prefix + cost - 1);
        assert!(matches!(
            s.key.as_ref().map(|k| k.source()),
            Some(KeySource::Inline)
        ));
    }

    #[test]
    fn backoff_has_full_jitter_below_the_ceiling() {
        let client =
            IntakeClient::new(&settings("https://intake.sekoia.io", "sekoia", "")).unwrap();
        for retry in 1..40 {
            let ceiling = Duration::from_millis((5u64 << (retry - 1).min(30)).min(20));
            assert!(client.backoff(retry) <= ceiling);
        }
    }
}
