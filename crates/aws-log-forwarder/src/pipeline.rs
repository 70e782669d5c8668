//! From an SQS message to acknowledged events: fetch each announced object, decode,
//! detect its format, parse, serialize, hand the events to the batcher, and wait until
//! the intake acknowledged all of them.
//!
//! CPU work (decompression, parsing, serialization) runs in `spawn_blocking`, at most
//! `processing.object_concurrency` objects at once, so the async threads stay free for
//! network I/O. The S3 body is bridged into a blocking reader there; events leave in
//! chunks over a bounded channel, so a slow intake slows the S3 reads down instead of
//! filling memory.

use std::io::{self, Cursor, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alf_formats::detect::SNIFF_BYTES;
use alf_formats::{
    Decision, Enricher, Event, EventSink, Format, FormatDetector, ObjectInfo, ParseError,
    ParseOptions, ParseStats, Redactor, Stop, parse_object,
};
use futures::future::join_all;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::io::SyncIoBridge;
use tokio_util::sync::CancellationToken;

use crate::ack::ObjectAck;
use crate::batch::EventChunk;
use crate::decode::{self, Compression, CountingBufReader, CountingReader};
use crate::filter::EventFilter;
use crate::metrics as m;
use crate::notification::{ObjectRef, parse_notification};
use crate::s3::ObjectFetcher;
use crate::sqs::ReceivedMessage;

/// Events per chunk sent to the batcher: amortizes channel operations while keeping
/// the batcher fed steadily.
pub const CHUNK_EVENTS: usize = 256;
/// A chunk is also sent once it holds this many bytes (bounded memory with large events).
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// Malformed records logged individually per object; the rest are counted.
pub const MALFORMED_LOGGED: u64 = 10;

/// What [`parse_stream`] found.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// `None` when the object was skipped on purpose.
    pub format: Option<Format>,
    /// Why this format (or why skipped).
    pub reason: String,
    pub compression: Compression,
    pub stats: ParseStats,
    /// Decompressed bytes read.
    pub decompressed_bytes: u64,
}

/// An object that could not be read to the end.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("reading the object failed: {0}")]
    Read(#[from] io::Error),
    #[error("stopped: {0}")]
    Stopped(#[from] Stop),
    /// A container format no parser reads (Apache Parquet, which VPC flow logs and
    /// CloudFront v2 can be delivered as). Forwarding its bytes as text lines would
    /// flood the SIEM with garbage, so the object fails and its message ends in the
    /// dead-letter queue after the queue's maxReceiveCount deliveries.
    #[error(
        "{0} objects are not supported: have AWS deliver this log type as text (plain/W3C or JSON)"
    )]
    Unsupported(&'static str),
}

impl From<ParseError> for StreamError {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::Io(e) => StreamError::Read(e),
            ParseError::Stopped(s) => StreamError::Stopped(s),
        }
    }
}

/// Decodes `raw` (gzip, zstd or plain), detects the format from the key and the first
/// decompressed bytes (unless `forced`), and parses every record into `sink`.
/// Shared by the daemon and the `parse` command, so both see objects the same way.
pub fn parse_stream<R: Read + Send + 'static>(
    raw: R,
    object: &ObjectInfo,
    detector: &FormatDetector,
    forced: Option<Format>,
    options: &ParseOptions,
    enricher: &Enricher,
    sink: &mut dyn EventSink,
) -> Result<Parsed, StreamError> {
    let (decoded, compression) = decode::decoder_with_kind(raw)?;
    let mut decoded = CountingBufReader::new(decoded);
    let mut head = vec![0u8; SNIFF_BYTES];
    let n = decode::read_up_to(&mut decoded, &mut head)?;
    head.truncate(n);
    // What to do with the object is decided in alf-formats (refuse, skip, which
    // format and with which options); this only acts on the decision.
    let decision = match forced {
        Some(format) => FormatDetector::decide_requested(format, &object.key, &head),
        None => detector.decide(&object.bucket, &object.key, &head),
    };
    let (format, reason, format_options) = match decision {
        Decision::Refuse { container } => return Err(StreamError::Unsupported(container)),
        Decision::Skip { reason } => {
            return Ok(Parsed {
                format: None,
                reason: reason.to_owned(),
                compression,
                stats: ParseStats {
                    skipped: Some(reason.to_owned()),
                    ..Default::default()
                },
                decompressed_bytes: decoded.count(),
            });
        }
        Decision::Parse {
            format,
            reason,
            options,
        } => (format, reason.to_string(), options),
    };
    let options = ParseOptions {
        format_options,
        ..options.clone()
    };
    // The peeked head goes back in front of the rest of the stream.
    let mut reader = Cursor::new(head).chain(&mut decoded);
    let stats = parse_object(format, &mut reader, object, &options, enricher, sink)?;
    // Formats that stop early (one JSON document) may leave trailing bytes; they
    // still count as read for the byte metrics.
    Ok(Parsed {
        format: Some(format),
        reason,
        compression,
        stats,
        decompressed_bytes: decoded.count(),
    })
}

/// How an object ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectOutcome {
    /// Every event acknowledged by the intake.
    Delivered,
    /// Deliberately not forwarded (e.g. CloudTrail digest).
    Skipped,
    /// The object no longer exists: it can never succeed, so it does not hold the
    /// message back (logged as an error).
    Gone,
    /// Something failed; the message must be redelivered.
    Failed(String),
}

impl ObjectOutcome {
    /// Whether this object lets its message be deleted.
    pub fn is_done(&self) -> bool {
        !matches!(self, ObjectOutcome::Failed(_))
    }

    pub fn label(&self) -> &'static str {
        match self {
            ObjectOutcome::Delivered => "delivered",
            ObjectOutcome::Skipped => "skipped",
            ObjectOutcome::Gone => "gone",
            ObjectOutcome::Failed(_) => "failed",
        }
    }
}

/// How an object ended, with what it counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectReport {
    pub outcome: ObjectOutcome,
    /// The format parsed (`None` when skipped or failed before detection).
    pub format: Option<Format>,
    /// Events handed to the batcher.
    pub events: u64,
    /// Of those, records that did not parse (forwarded raw, tagged).
    pub malformed: u64,
    /// Events dropped by `[[processing.drop]]` rules (not forwarded, not in `events`).
    pub dropped: u64,
    /// Bytes read from S3.
    pub bytes_compressed: u64,
}

impl Default for ObjectReport {
    fn default() -> Self {
        ObjectReport {
            outcome: ObjectOutcome::Skipped,
            format: None,
            events: 0,
            malformed: 0,
            dropped: 0,
            bytes_compressed: 0,
        }
    }
}

/// Whether a whole message is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Delete it.
    Done,
    /// Leave it for redelivery.
    Failed(String),
}

/// Serializes events into chunks and sends them to the batcher. Runs on a blocking
/// thread, so `blocking_send` is the backpressure point.
struct ChunkSink<'a> {
    tx: &'a mpsc::Sender<EventChunk>,
    ack: &'a Arc<ObjectAck>,
    redactor: Option<&'a Redactor>,
    abort: &'a CancellationToken,
    chunk: EventChunk,
    bucket: &'a str,
    key: &'a str,
    events: u64,
    malformed: u64,
    /// `[[processing.drop]]` rules, and how many events each dropped.
    filter: &'a EventFilter,
    dropped: Vec<u64>,
}

impl ChunkSink<'_> {
    fn new_chunk(ack: &Arc<ObjectAck>) -> EventChunk {
        EventChunk::new(Arc::clone(ack), 64 * 1024, CHUNK_EVENTS)
    }

    /// Sends the open chunk. Also where parsing stops early: on shutdown, or when an
    /// earlier batch of this object already failed for good (the whole object will be
    /// read again on redelivery, so reading on is wasted work).
    fn flush(&mut self) -> Result<(), Stop> {
        if self.abort.is_cancelled() || self.ack.has_failed() {
            return Err(Stop);
        }
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.chunk, Self::new_chunk(self.ack));
        let n = chunk.len() as u64;
        self.ack.add_pending(n);
        self.tx.blocking_send(chunk).map_err(|_| {
            // The batcher is gone (shutdown): these events will never be acknowledged.
            self.ack.failed(n, "shutting down");
            Stop
        })
    }
}

impl EventSink for ChunkSink<'_> {
    fn emit(&mut self, event: Event) -> Result<(), Stop> {
        if let Some(rule) = self.filter.matching(&event) {
            if let Some(n) = self.dropped.get_mut(rule) {
                *n += 1;
            }
            return Ok(());
        }
        let redactor = self.redactor;
        self.chunk.push_with(|out| event.write_json(out, redactor));
        self.events += 1;
        if self.chunk.len() >= CHUNK_EVENTS || self.chunk.data.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn malformed(&mut self, line: u64, reason: &str) {
        self.malformed += 1;
        metrics::counter!(m::EVENTS_MALFORMED).increment(1);
        if self.malformed <= MALFORMED_LOGGED {
            tracing::warn!(
                bucket = self.bucket,
                key = self.key,
                line,
                reason,
                "malformed record at s3://{}/{} line {line}: {reason}; forwarded raw with tag _parse_failure",
                self.bucket,
                self.key
            );
        }
    }
}

/// Everything needed to turn objects into delivered events.
pub struct Pipeline {
    fetcher: ObjectFetcher,
    detector: Arc<FormatDetector>,
    options: ParseOptions,
    enricher: Arc<Enricher>,
    redactor: Option<Arc<Redactor>>,
    object_permits: Arc<Semaphore>,
    events: mpsc::Sender<EventChunk>,
    abort: CancellationToken,
    filter: Arc<EventFilter>,
}

impl Pipeline {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        fetcher: ObjectFetcher,
        detector: FormatDetector,
        options: ParseOptions,
        redact: bool,
        object_concurrency: usize,
        events: mpsc::Sender<EventChunk>,
        abort: CancellationToken,
    ) -> Self {
        Pipeline {
            fetcher,
            detector: Arc::new(detector),
            options,
            enricher: Arc::new(Enricher::new()),
            redactor: redact.then(|| Arc::new(Redactor::new())),
            object_permits: Arc::new(Semaphore::new(object_concurrency.max(1))),
            events,
            abort,
            filter: Arc::new(EventFilter::default()),
        }
    }

    /// Drops the events `filter` matches (counted per rule) instead of forwarding them.
    pub fn with_filter(mut self, filter: EventFilter) -> Self {
        self.filter = Arc::new(filter);
        self
    }

    /// Processes every object a message announces; `Done` only when all are done.
    pub async fn process_message(&self, message: &ReceivedMessage) -> MessageOutcome {
        let notification = match parse_notification(&message.body) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(
                    message_id = %message.message_id,
                    receive_count = message.receive_count,
                    error = %e,
                    "SQS message {} cannot be used: {e}; leaving it for redelivery (it will reach the dead-letter queue)",
                    message.message_id
                );
                return MessageOutcome::Failed(e.to_string());
            }
        };
        for ignored in &notification.ignored {
            tracing::info!(
                message_id = %message.message_id,
                event_name = %ignored.event_name,
                bucket = %ignored.bucket,
                key = %ignored.key,
                "ignoring {} for s3://{}/{} (only object creations are forwarded)",
                ignored.event_name,
                ignored.bucket,
                ignored.key
            );
        }
        if notification.test_event {
            tracing::info!(message_id = %message.message_id, shape = notification.shape, "s3:TestEvent received (the bucket notification works); deleting it");
            return MessageOutcome::Done;
        }
        let outcomes = join_all(
            notification
                .objects
                .iter()
                .map(|object| self.process_object(object, &message.message_id)),
        )
        .await;
        let failures: Vec<String> = outcomes
            .into_iter()
            .filter_map(|o| match o {
                ObjectOutcome::Failed(reason) => Some(reason),
                _ => None,
            })
            .collect();
        if failures.is_empty() {
            MessageOutcome::Done
        } else {
            MessageOutcome::Failed(failures.join("; "))
        }
    }

    /// Fetches, parses and delivers one object; logs one line about it.
    pub async fn process_object(&self, object: &ObjectRef, message_id: &str) -> ObjectOutcome {
        self.process_object_report(object, message_id).await.outcome
    }

    /// [`Pipeline::process_object`], also returning what was counted (for `replay`'s
    /// progress and summary).
    pub async fn process_object_report(
        &self,
        object: &ObjectRef,
        message_id: &str,
    ) -> ObjectReport {
        let report = |outcome| ObjectReport {
            outcome,
            ..ObjectReport::default()
        };
        let started = Instant::now();
        let permit = tokio::select! {
            biased;
            _ = self.abort.cancelled() => return report(ObjectOutcome::Failed("shutting down".into())),
            p = Arc::clone(&self.object_permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return report(ObjectOutcome::Failed("shutting down".into())),
            },
        };
        let opened = match self.fetcher.open(object).await {
            Ok(o) => o,
            Err(e) if e.is_permanent() => {
                // At-least-once cannot help an object that no longer exists: keeping
                // the message would only send it to the DLQ after maxReceiveCount
                // useless retries, and hold back the other objects of the message.
                tracing::error!(
                    message_id,
                    bucket = %object.bucket,
                    key = %object.key,
                    outcome = "gone",
                    "{e}; nothing to forward, the notification is dropped"
                );
                metrics::counter!(m::OBJECTS_PROCESSED, "outcome" => "gone").increment(1);
                return report(ObjectOutcome::Gone);
            }
            Err(e) => {
                tracing::error!(message_id, bucket = %object.bucket, key = %object.key, outcome = "failed", "{e}");
                metrics::counter!(m::OBJECTS_PROCESSED, "outcome" => "failed").increment(1);
                metrics::counter!(m::OBJECTS_FAILED).increment(1);
                return report(ObjectOutcome::Failed(e.to_string()));
            }
        };

        let ack = Arc::new(ObjectAck::new());
        let info = ObjectInfo {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version: opened.version,
        };
        let compressed = Arc::new(AtomicU64::new(0));
        // SyncIoBridge must be created on the runtime; it is then used on the blocking
        // thread, where it blocks on the async body.
        let body = SyncIoBridge::new(opened.body.into_async_read());
        let body = CountingReader::new(body, Arc::clone(&compressed));
        let parse = {
            let ack = Arc::clone(&ack);
            let tx = self.events.clone();
            let detector = Arc::clone(&self.detector);
            let options = self.options.clone();
            let enricher = Arc::clone(&self.enricher);
            let redactor = self.redactor.clone();
            let abort = self.abort.clone();
            let filter = Arc::clone(&self.filter);
            tokio::task::spawn_blocking(move || {
                let mut sink = ChunkSink {
                    tx: &tx,
                    ack: &ack,
                    redactor: redactor.as_deref(),
                    abort: &abort,
                    chunk: ChunkSink::new_chunk(&ack),
                    bucket: &info.bucket,
                    key: &info.key,
                    events: 0,
                    malformed: 0,
                    filter: &filter,
                    dropped: vec![0; filter.names().len()],
                };
                let result =
                    parse_stream(body, &info, &detector, None, &options, &enricher, &mut sink)
                        .and_then(|parsed| {
                            sink.flush()?;
                            Ok(parsed)
                        });
                (result, sink.events, sink.malformed, sink.dropped)
            })
        };
        let (result, events, malformed, dropped) = match parse.await {
            Ok(r) => r,
            Err(e) => (
                Err(StreamError::Read(io::Error::other(format!(
                    "parser task failed: {e}"
                )))),
                0,
                0,
                Vec::new(),
            ),
        };
        let dropped_total: u64 = dropped.iter().sum();
        let dropped_by_rule = self.filter.record(&dropped);
        drop(permit);
        metrics::counter!(m::EVENTS_PARSED).increment(events);
        let compressed = compressed.load(Ordering::Relaxed);
        metrics::counter!(m::BYTES_COMPRESSED).increment(compressed);

        let (outcome, parsed) = match result {
            Ok(parsed) if parsed.format.is_none() => (ObjectOutcome::Skipped, Some(parsed)),
            Ok(parsed) => {
                let settled = tokio::select! {
                    biased;
                    r = ack.settled() => r,
                    _ = self.abort.cancelled() => Err("shutting down before the intake acknowledged every event".to_owned()),
                };
                match settled {
                    Ok(()) => (ObjectOutcome::Delivered, Some(parsed)),
                    Err(reason) => (ObjectOutcome::Failed(reason), Some(parsed)),
                }
            }
            // A parser stopped because delivery already failed: report that cause.
            Err(e) => (
                ObjectOutcome::Failed(ack.failure().unwrap_or_else(|| e.to_string())),
                None,
            ),
        };
        if malformed > MALFORMED_LOGGED {
            tracing::warn!(
                bucket = %object.bucket,
                key = %object.key,
                malformed,
                "s3://{}/{}: {malformed} malformed records in total ({} not logged individually)",
                object.bucket,
                object.key,
                malformed - MALFORMED_LOGGED
            );
        }
        let duration = started.elapsed();
        log_object(
            object,
            message_id,
            &outcome,
            parsed.as_ref(),
            ObjectCounts {
                events,
                malformed,
                dropped: dropped_total,
                dropped_by_rule: dropped_by_rule.as_deref().unwrap_or("-"),
                compressed,
            },
            duration,
        );
        metrics::histogram!(m::OBJECT_DURATION).record(duration.as_secs_f64());
        metrics::counter!(m::OBJECTS_PROCESSED, "outcome" => outcome.label()).increment(1);
        match &outcome {
            ObjectOutcome::Failed(_) => metrics::counter!(m::OBJECTS_FAILED).increment(1),
            ObjectOutcome::Skipped => metrics::counter!(m::OBJECTS_SKIPPED).increment(1),
            _ => {}
        }
        if let Some(p) = &parsed {
            metrics::counter!(m::BYTES_DECOMPRESSED).increment(p.decompressed_bytes);
        }
        ObjectReport {
            format: parsed.as_ref().and_then(|p| p.format),
            outcome,
            events,
            malformed,
            dropped: dropped_total,
            bytes_compressed: compressed,
        }
    }
}

/// What an object counted, for its log line.
struct ObjectCounts<'a> {
    events: u64,
    malformed: u64,
    dropped: u64,
    /// `rule=count,...`, or `-`.
    dropped_by_rule: &'a str,
    compressed: u64,
}

/// The one line per object.
fn log_object(
    object: &ObjectRef,
    message_id: &str,
    outcome: &ObjectOutcome,
    parsed: Option<&Parsed>,
    counts: ObjectCounts<'_>,
    duration: Duration,
) {
    let ObjectCounts {
        events,
        malformed,
        dropped,
        dropped_by_rule,
        compressed,
    } = counts;
    let format = parsed.and_then(|p| p.format).map_or("-", Format::name);
    let reason = parsed.map_or("-", |p| p.reason.as_str());
    let compression = parsed.map_or("-", |p| p.compression.name());
    let decompressed = parsed.map_or(0, |p| p.decompressed_bytes);
    let duration_ms = duration.as_millis() as u64;
    match outcome {
        ObjectOutcome::Failed(error) => tracing::error!(
            message_id,
            bucket = %object.bucket,
            key = %object.key,
            format,
            detection = reason,
            compression,
            events,
            malformed,
            dropped,
            dropped_by_rule,
            bytes_compressed = compressed,
            bytes_decompressed = decompressed,
            duration_ms,
            outcome = outcome.label(),
            error = %error,
            "object s3://{}/{} failed: {error}; the message will be redelivered",
            object.bucket,
            object.key
        ),
        _ => tracing::info!(
            message_id,
            bucket = %object.bucket,
            key = %object.key,
            format,
            detection = reason,
            compression,
            events,
            malformed,
            dropped,
            dropped_by_rule,
            bytes_compressed = compressed,
            bytes_decompressed = decompressed,
            duration_ms,
            outcome = outcome.label(),
            "object s3://{}/{} {}",
            object.bucket,
            object.key,
            outcome.label()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn info(key: &str) -> ObjectInfo {
        ObjectInfo {
            bucket: "logs".into(),
            key: key.into(),
            version: "v1".into(),
        }
    }

    /// `parse_stream` over `body` as object `key` with default options; the events too.
    fn parse_bytes(
        body: Vec<u8>,
        key: &str,
        forced: Option<Format>,
    ) -> (Result<Parsed, StreamError>, Vec<Event>) {
        let mut events: Vec<Event> = Vec::new();
        let result = parse_stream(
            Cursor::new(body),
            &info(key),
            &FormatDetector::default(),
            forced,
            &ParseOptions::default(),
            &Enricher::new(),
            &mut events,
        );
        (result, events)
    }

    #[test]
    fn detects_from_decompressed_content() {
        let body = gzip(b"{\"some\":\"json\",\"n\":1}\n{\"some\":\"json\",\"n\":2}\n");
        let (parsed, events) = parse_bytes(body, "custom/file.gz", None);
        let parsed = parsed.unwrap();
        assert_eq!(parsed.format, Some(Format::Ndjson));
        assert_eq!(parsed.compression, Compression::Gzip);
        assert!(parsed.reason.starts_with("content"), "{}", parsed.reason);
        assert_eq!(events.len(), 2);
        assert_eq!(parsed.decompressed_bytes, 44);
    }

    #[test]
    fn digests_are_skipped() {
        let (parsed, events) = parse_bytes(
            b"{}".to_vec(),
            "AWSLogs/1/CloudTrail-Digest/eu-west-1/x.json.gz",
            None,
        );
        let parsed = parsed.unwrap();
        assert_eq!(parsed.format, None);
        assert!(events.is_empty());
    }

    #[test]
    fn truncated_input_is_a_read_error() {
        let data: Vec<u8> = (0..5000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let body = gzip(&data);
        let (result, _) = parse_bytes(
            body[..body.len() / 2].to_vec(),
            "x.log",
            Some(Format::Lines),
        );
        let err = result.unwrap_err();
        assert!(matches!(err, StreamError::Read(_)), "{err:?}");
    }

    #[test]
    fn parquet_objects_are_refused_not_forwarded_as_lines() {
        // A Parquet file starts (and ends) with the magic PAR1; gzip around it or not.
        let mut data = b"PAR1\x15\x04\x15\x00\x15\x00".to_vec();
        data.extend_from_slice(&[0u8; 64]);
        data.extend_from_slice(b"PAR1");
        for body in [data.clone(), gzip(&data)] {
            let (result, events) = parse_bytes(
                body,
                "AWSLogs/1/vpcflowlogs/us-east-1/2024/05/01/x.log.parquet",
                None,
            );
            let err = result.unwrap_err();
            assert!(matches!(err, StreamError::Unsupported(_)), "{err:?}");
            assert!(
                err.to_string()
                    .contains("Apache Parquet objects are not supported")
            );
            assert!(events.is_empty());
        }
    }

    #[tokio::test]
    async fn chunk_sink_sends_chunks_and_counts_pending() {
        let (tx, mut rx) = mpsc::channel(16);
        let ack = Arc::new(ObjectAck::new());
        let abort = CancellationToken::new();
        let ack2 = Arc::clone(&ack);
        let abort2 = abort.clone();
        let handle = tokio::task::spawn_blocking(move || {
            let redactor = Redactor::new();
            let no_filter = EventFilter::default();
            let mut sink = ChunkSink {
                tx: &tx,
                ack: &ack2,
                redactor: Some(&redactor),
                abort: &abort2,
                chunk: ChunkSink::new_chunk(&ack2),
                bucket: "b",
                key: "k",
                events: 0,
                malformed: 0,
                filter: &no_filter,
                dropped: Vec::new(),
            };
            for i in 0..(CHUNK_EVENTS + 3) {
                let mut e = Event::new();
                e.set("n", i as u64);
                e.set("url.query", "X-Amz-Signature=abcdef0123".to_string());
                sink.emit(e).unwrap();
            }
            sink.malformed(7, "bad");
            sink.flush().unwrap();
            (sink.events, sink.malformed)
        });
        assert_eq!(handle.await.unwrap(), (CHUNK_EVENTS as u64 + 3, 1));
        let first = rx.recv().await.unwrap();
        let second = rx.recv().await.unwrap();
        assert_eq!(first.len(), CHUNK_EVENTS);
        assert_eq!(second.len(), 3);
        assert_eq!(ack.pending(), CHUNK_EVENTS as u64 + 3);
        let text = String::from_utf8(second.events().next().unwrap().to_vec()).unwrap();
        assert!(
            text.contains("REDACTED") && !text.contains("abcdef0123"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn parsing_stops_once_delivery_failed_or_on_abort() {
        for fail in [true, false] {
            let (tx, mut rx) = mpsc::channel(64);
            let ack = Arc::new(ObjectAck::new());
            let abort = CancellationToken::new();
            if fail {
                ack.failed(0, "400 Bad Request");
            } else {
                abort.cancel();
            }
            let (ack2, abort2) = (Arc::clone(&ack), abort.clone());
            let emitted = tokio::task::spawn_blocking(move || {
                let no_filter = EventFilter::default();
                let mut sink = ChunkSink {
                    tx: &tx,
                    ack: &ack2,
                    redactor: None,
                    abort: &abort2,
                    chunk: ChunkSink::new_chunk(&ack2),
                    bucket: "b",
                    key: "k",
                    events: 0,
                    malformed: 0,
                    filter: &no_filter,
                    dropped: Vec::new(),
                };
                (0..10 * CHUNK_EVENTS)
                    .take_while(|_| sink.emit(Event::new()).is_ok())
                    .count()
            })
            .await
            .unwrap();
            assert_eq!(
                emitted,
                CHUNK_EVENTS - 1,
                "stops at the first chunk boundary"
            );
            assert!(rx.try_recv().is_err(), "nothing sent");
        }
    }
}
