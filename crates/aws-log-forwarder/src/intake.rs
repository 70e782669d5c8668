//! The HTTP intake client: encodes a batch for the configured protocol, compresses it,
//! POSTs it, and does not give up on it.
//!
//! Three kinds of answers, three behaviours:
//!
//! - **The intake is down or busy** (connection errors, timeouts, 408, 429, 5xx): the
//!   same request is retried with capped exponential backoff and full jitter (a random
//!   delay between zero and the ceiling, so forwarders recovering from one outage do not
//!   retry in lock-step), after `Retry-After` when the intake gives one, for as long as
//!   it takes. Failing the batch instead would hand its messages back to SQS, and every
//!   hand-back counts toward the queue's `maxReceiveCount`: a long outage would walk
//!   healthy messages into the dead-letter queue. Every attempt is recorded in the
//!   [`IntakeCircuit`], which opens after `intake.max_retries` failures in a row (the
//!   daemon then stops receiving) and logs the opening and closing once each. Only a
//!   shutdown (the batcher aborting the task) stops the retries.
//! - **The intake refuses the request itself** (401, 403, 404, 405, 407, 415,
//!   redirects): a configuration problem (key, URL, proxy) that no event can cause and
//!   that the operator will fix; it is treated like an outage (retried, circuit), and
//!   logged as an error naming the status, so the events wait instead of being
//!   dead-lettered for a wrong key.
//! - **The intake refuses the events** (400, 413, 422 and other 4xx): the batch is
//!   split in halves and each half sent again, until the refused events stand alone;
//!   everything else is delivered. An event refused alone goes to the
//!   [`DeadLetterSink`] with the status and an excerpt of the answer (key masked) and
//!   then counts as delivered. A 413 is about size, not content: an event refused
//!   alone with 413 is truncated to half its size ([`crate::oversize`], tagged
//!   `_truncated`) and sent again, halving until the intake takes it; only an event
//!   that cannot be cut any smaller (no strings left to cut) is dead-lettered, as
//!   `oversize`.
//!
//! Elasticsearch `_bulk` answers 200 even when items fail: actions are `create` with
//! `_id` = the event's `event.id`, so a redelivered event is refused as a duplicate with
//! 409, which counts as delivered; items refused with 429/5xx are sent again alone;
//! other item 4xx go to the dead-letter sink. The index (or data stream) is chosen per
//! event from its `event.dataset`.
//!
//! Events larger than `intake.max_event_bytes` never reach the intake as they are: the
//! batcher asks [`BatchSender::fit`], which truncates them ([`crate::oversize`]), and
//! those that still do not fit (or all of them with `intake.oversize = "dead_letter"`)
//! are dead-lettered here without being sent.

use std::borrow::Cow;
use std::collections::HashMap;
use std::error::Error as _;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rand::RngExt;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::Deserialize;

use crate::batch::{BatchEvents, BatchSender, DeliveryFailure, NdjsonBody, PlainPermit};
use crate::circuit::IntakeCircuit;
use crate::config::{BodyCompression, IntakeKey, IntakeProtocol, IntakeSettings, OversizePolicy};
use crate::deadletter::{DeadLetter, DeadLetterReason, DeadLetterSink};
use crate::metrics as m;

/// Longest excerpt of an error answer that is logged or dead-lettered.
pub const EXCERPT_BYTES: usize = 512;
/// Upper bound on a server's `Retry-After`, so a bogus value cannot park a batch for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Sekoia.io's HTTP intake refuses request bodies over 10 MiB; the envelope
/// (`{"intake_key":…,"jsons":[…]}`) is kept out of the batch budget.
pub const SEKOIA_MAX_BODY_BYTES: usize = (10 << 20) - 4_096;
/// Histogram of intake request durations (seconds), by `status_class`.
pub const REQUEST_DURATION: &str = "alf_intake_request_duration_seconds";
/// Counter of events cut to fit `intake.max_event_bytes`.
pub const EVENTS_TRUNCATED: &str = "alf_events_truncated_total";

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("cannot build the intake HTTP client: {0}")]
    Client(String),
}

/// Applies `intake.ca_file`, `intake.client_cert`/`client_key` and `intake.proxy`.
/// Without `intake.proxy`, reqwest reads `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and
/// `NO_PROXY` itself; with it, `NO_PROXY` is still honoured.
fn tls_and_proxy(
    mut builder: reqwest::ClientBuilder,
    settings: &IntakeSettings,
) -> Result<reqwest::ClientBuilder, IntakeError> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| IntakeError::Client(format!("{key}: cannot read {}: {e}", path.display())))
    };
    if let Some(path) = &settings.ca_file {
        let pem = read("intake.ca_file", path)?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                IntakeError::Client(format!(
                    "intake.ca_file: {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
                    path.display()
                ))
            })?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if let (Some(cert), Some(key)) = (&settings.client_cert, &settings.client_key) {
        let mut pem = read("intake.client_cert", cert)?;
        pem.push(b'\n');
        pem.extend_from_slice(&read("intake.client_key", key)?);
        // The error text never includes the key material.
        let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
            IntakeError::Client(format!(
                "intake.client_cert/intake.client_key: {} and {} are not a PEM certificate chain and its PEM private key (PKCS#8, PKCS#1 or SEC1)",
                cert.display(),
                key.display()
            ))
        })?;
        builder = builder.identity(identity);
    }
    if let Some(url) = &settings.proxy {
        let proxy = reqwest::Proxy::all(url.expose().as_str())
            .map_err(|e| IntakeError::Client(format!("intake.proxy: {e}")))?
            .no_proxy(reqwest::NoProxy::from_env());
        builder = builder.proxy(proxy);
    }
    Ok(builder)
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

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary:
/// `String::truncate` at any other byte panics.
pub fn floor_char_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Cuts `s` to at most `max` bytes, on a char boundary.
pub fn truncate_on_char_boundary(s: &mut String, max: usize) {
    let end = floor_char_boundary(s, max);
    s.truncate(end);
}

/// The fields of an event the Elasticsearch encoder needs: `event.id` (the `_id`,
/// so a redelivered event is a 409 duplicate) and `event.dataset` (the index).
#[derive(Deserialize, Default)]
struct EventHead<'a> {
    #[serde(borrow, default)]
    event: Option<EventIds<'a>>,
}

#[derive(Deserialize, Default)]
struct EventIds<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    dataset: Option<Cow<'a, str>>,
}

/// Builds request bodies. Separate from the HTTP client so it can run on a blocking
/// thread (encoding and compressing megabytes is CPU work).
#[derive(Clone)]
pub struct BodyEncoder {
    protocol: IntakeProtocol,
    key: Option<IntakeKey>,
    /// Elasticsearch index template (`{dataset}` placeholder) and per-dataset overrides.
    es_index: String,
    es_indices: std::collections::BTreeMap<String, String>,
    /// Upper bound of an Elasticsearch action line, for [`BodyEncoder::cost`].
    es_action_bytes: usize,
    compression: BodyCompression,
    /// `intake.gzip_level`: see its default in `config.rs` for the measurement.
    gzip_level: u32,
    /// `intake.zstd_level`, likewise.
    zstd_level: i32,
}

impl BodyEncoder {
    pub fn new(settings: &IntakeSettings) -> Self {
        let longest_index = settings
            .elasticsearch_indices
            .values()
            .map(String::len)
            .chain([settings.elasticsearch_index.len() + 48])
            .max()
            .unwrap_or(64);
        BodyEncoder {
            protocol: settings.protocol,
            key: settings.key.clone(),
            es_index: settings.elasticsearch_index.clone(),
            es_indices: settings.elasticsearch_indices.clone(),
            // {"create":{"_index":"…","_id":"…"}}\n with an id of up to 96 bytes.
            es_action_bytes: 36 + longest_index + 96,
            compression: settings.body_compression(),
            gzip_level: settings.gzip_level,
            zstd_level: settings.zstd_level,
        }
    }

    /// Bytes `event` adds to the uncompressed body.
    pub fn cost(&self, event: &[u8]) -> usize {
        match self.protocol {
            // Quoted, with `"` and `\` escaped, plus a comma. Tabs count too: a raw
            // payload (a CloudFront line) is full of them, each written as `\t`.
            IntakeProtocol::Sekoia => {
                event.len() + 3 + memchr::memchr3_iter(b'"', b'\\', b'\t', event).count()
            }
            IntakeProtocol::Ndjson => event.len() + 1,
            IntakeProtocol::Elasticsearch => self.es_action_bytes + event.len() + 1,
        }
    }

    /// The index (or data stream) for an event of `dataset`: the per-dataset override,
    /// else the template with `{dataset}` replaced by the dataset without `aws.`.
    pub fn es_index_for(&self, dataset: Option<&str>) -> String {
        let dataset = dataset.filter(|d| !d.is_empty()).unwrap_or("aws.unknown");
        if let Some(index) = self.es_indices.get(dataset) {
            return index.clone();
        }
        let short = dataset.strip_prefix("aws.").unwrap_or(dataset);
        self.es_index.replace("{dataset}", short)
    }

    /// The `_bulk` action line for `event`.
    fn es_action(&self, event: &[u8], cache: &mut HashMap<String, Vec<u8>>, out: &mut Vec<u8>) {
        // An event that is not an object (never produced by the parsers) still gets an
        // action line, without `_id`.
        let head: EventHead<'_> = serde_json::from_slice(event).unwrap_or_default();
        let ids = head.event.unwrap_or_default();
        let dataset = ids.dataset.as_deref().unwrap_or("");
        let prefix = cache.entry(dataset.to_owned()).or_insert_with(|| {
            let mut p = b"{\"create\":{\"_index\":".to_vec();
            let _ = serde_json::to_writer(&mut p, &self.es_index_for(Some(dataset)));
            p
        });
        out.extend_from_slice(prefix);
        if let Some(id) = ids.id.as_deref().filter(|id| !id.is_empty()) {
            out.extend_from_slice(b",\"_id\":");
            let _ = serde_json::to_writer(&mut *out, id);
        }
        out.extend_from_slice(b"}}\n");
    }

    /// The uncompressed body for the events `only` (all when `None`).
    pub fn encode(&self, batch: &BatchEvents, only: Option<&[usize]>) -> Vec<u8> {
        if self.is_ndjson_of_all(batch, only) {
            return batch.ndjson().to_vec();
        }
        let mut out = Vec::with_capacity(self.body_estimate(batch, only));
        // Writing into a Vec does not fail.
        let _ = self.write_body(batch, only, &mut out);
        out
    }

    /// Writes the uncompressed body for the events `only` (all when `None`) to `out`,
    /// a piece of at most about [`ENCODE_PIECE`] bytes at a time, so that compressing
    /// it needs no copy of the whole uncompressed body (4 MB per request in flight
    /// with the default `batch.max_bytes`).
    fn write_body(
        &self,
        batch: &BatchEvents,
        only: Option<&[usize]>,
        out: &mut dyn Write,
    ) -> std::io::Result<()> {
        let mut piece = Vec::with_capacity(ENCODE_PIECE + 1024);
        let mut events = selected(batch, only);
        let mut cache = HashMap::new();
        if self.protocol == IntakeProtocol::Sekoia {
            piece.extend_from_slice(b"{\"intake_key\":");
            let key = self.key.as_ref().map_or("", IntakeKey::expose);
            let _ = serde_json::to_writer(&mut piece, key);
            piece.extend_from_slice(b",\"jsons\":[");
        }
        let mut first = true;
        loop {
            let event = events.next();
            if let Some(event) = event {
                match self.protocol {
                    IntakeProtocol::Sekoia => {
                        if !first {
                            piece.push(b',');
                        }
                        // Eight bytes at a time (`sekoia_body` bench in alf-bench).
                        alf_formats::write_json_string(&mut piece, event);
                    }
                    IntakeProtocol::Ndjson => {
                        piece.extend_from_slice(event);
                        piece.push(b'\n');
                    }
                    IntakeProtocol::Elasticsearch => {
                        self.es_action(event, &mut cache, &mut piece);
                        piece.extend_from_slice(event);
                        piece.push(b'\n');
                    }
                }
                first = false;
            } else if self.protocol == IntakeProtocol::Sekoia {
                piece.extend_from_slice(b"]}");
            }
            if event.is_none() || piece.len() >= ENCODE_PIECE {
                out.write_all(&piece)?;
                piece.clear();
            }
            if event.is_none() {
                return Ok(());
            }
        }
    }

    /// The body to send and how it is compressed.
    pub fn encode_for_wire(
        &self,
        batch: &BatchEvents,
        only: Option<&[usize]>,
    ) -> (Bytes, BodyCompression) {
        let compressed = match self.compression {
            BodyCompression::None => None,
            BodyCompression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(compressed_room(batch, only, 6)),
                    flate2::Compression::new(self.gzip_level),
                );
                self.write_compressible(batch, only, &mut enc)
                    .and_then(|()| enc.finish())
                    .ok()
            }
            BodyCompression::Zstd if self.is_ndjson_of_all(batch, only) => {
                zstd_in_one_piece(batch.ndjson(), self.zstd_level).ok()
            }
            BodyCompression::Zstd => zstd::stream::write::Encoder::new(
                Vec::with_capacity(compressed_room(batch, only, 8)),
                self.zstd_level,
            )
            .and_then(|mut enc| {
                self.write_body(batch, only, &mut enc)?;
                enc.finish()
            })
            .ok(),
        };
        match compressed {
            Some(body) => (Bytes::from(body), self.compression),
            // Without compression; or compressing into a Vec failed (it does not), and
            // plain still works.
            None => (Bytes::from(self.encode(batch, only)), BodyCompression::None),
        }
    }

    /// [`BodyEncoder::encode_for_wire`] for events shared with the caller: an NDJSON
    /// body of the whole batch without compression is the events' own buffer
    /// ([`NdjsonBody`]), not a 4 MB copy of it.
    pub fn encode_shared(
        &self,
        batch: &Arc<BatchEvents>,
        only: Option<&[usize]>,
    ) -> (Bytes, BodyCompression) {
        if self.compression == BodyCompression::None && self.is_ndjson_of_all(batch, only) {
            return (
                Bytes::from_owner(NdjsonBody(Arc::clone(batch))),
                BodyCompression::None,
            );
        }
        self.encode_for_wire(batch, only)
    }

    /// The body of the events `only` is the batch's own lines: NDJSON, every event in
    /// order.
    fn is_ndjson_of_all(&self, batch: &BatchEvents, only: Option<&[usize]>) -> bool {
        self.protocol == IntakeProtocol::Ndjson
            && only.is_none_or(|o| {
                o.len() == batch.len() && o.iter().enumerate().all(|(i, &e)| i == e)
            })
    }

    /// Writes the uncompressed body to a compressor: an NDJSON body of every event is
    /// handed over in one piece, as the batch holds it, without a copy.
    fn write_compressible(
        &self,
        batch: &BatchEvents,
        only: Option<&[usize]>,
        out: &mut dyn Write,
    ) -> std::io::Result<()> {
        if self.is_ndjson_of_all(batch, only) {
            return out.write_all(batch.ndjson());
        }
        self.write_body(batch, only, out)
    }
}

impl BodyEncoder {
    /// The uncompressed body size of the events `only` (all when `None`), as
    /// [`BodyEncoder::cost`] counts it, plus the envelope.
    fn body_estimate(&self, batch: &BatchEvents, only: Option<&[usize]>) -> usize {
        selected(batch, only).map(|e| self.cost(e)).sum::<usize>() + 64
    }

    /// The events of a body [`BodyEncoder::encode_for_wire`] wrote, in order: how a
    /// batch whose events were let go once its body was built gets them back. `len`
    /// is how many it holds; a body that does not give back exactly that many is an
    /// error.
    pub fn decode(
        &self,
        body: &[u8],
        compression: BodyCompression,
        len: usize,
    ) -> Result<BatchEvents, String> {
        use std::io::Read as _;
        let mut inflated = Vec::new();
        let plain: &[u8] = match compression {
            BodyCompression::Gzip => {
                flate2::read::GzDecoder::new(body)
                    .read_to_end(&mut inflated)
                    .map_err(|e| format!("reading back a compressed request body failed: {e}"))?;
                &inflated
            }
            BodyCompression::Zstd => {
                inflated = zstd::stream::decode_all(body)
                    .map_err(|e| format!("reading back a compressed request body failed: {e}"))?;
                &inflated
            }
            BodyCompression::None => body,
        };
        let mut events = BatchEvents::default();
        match self.protocol {
            IntakeProtocol::Sekoia => {
                #[derive(Deserialize)]
                struct SekoiaBody<'a> {
                    #[serde(borrow)]
                    jsons: Vec<Cow<'a, str>>,
                }
                let parsed: SekoiaBody<'_> = serde_json::from_slice(plain)
                    .map_err(|e| format!("reading back a request body failed: {e}"))?;
                for event in &parsed.jsons {
                    events.push(event.as_bytes());
                }
            }
            // An event is one line: the JSON writer escapes every control character.
            IntakeProtocol::Ndjson => {
                for line in plain.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    events.push(line);
                }
            }
            // Action lines and events alternate.
            IntakeProtocol::Elasticsearch => {
                let lines = plain.split(|&b| b == b'\n').filter(|l| !l.is_empty());
                for line in lines.skip(1).step_by(2) {
                    events.push(line);
                }
            }
        }
        if events.len() != len {
            return Err(format!(
                "reading back a request body gave {} events instead of {len}",
                events.len()
            ));
        }
        Ok(events)
    }
}

/// A batch's events while the client delivers them.
///
/// Once the request body of the whole batch is built, the events' own bytes are let
/// go: the body holds them in about a seventh of the room (a 4 MB batch
/// of CloudFront events is a body of about 0.5 MB at gzip level 2), and what nearly
/// every batch meets (accepted, or the same body sent again after an outage) needs
/// nothing else. The rare paths that need single events (a refused batch split in
/// halves, Elasticsearch items sent again, an event cut after a 413, the dead-letter
/// sink) decode them from the body, once (without compression, the body is the events
/// with their separators, and keeping both would hold them twice; an NDJSON body is
/// the events' own buffer, shared). Before, each of the
/// `max_concurrent_requests` batches in flight kept its events for those paths alone:
/// a large object's peak RSS was a fifth above a small one's.
pub(crate) struct HeldEvents {
    plain: Option<Arc<BatchEvents>>,
    /// Released with the events' first letting go.
    permit: Option<PlainPermit>,
    /// The body of every event of the batch, in order, once built (and how it is
    /// compressed).
    whole: Option<(Bytes, BodyCompression)>,
    len: usize,
}

impl HeldEvents {
    pub(crate) fn new(events: BatchEvents, permit: PlainPermit) -> Self {
        HeldEvents {
            len: events.len(),
            plain: Some(Arc::new(events)),
            permit: Some(permit),
            whole: None,
        }
    }

    /// Bytes of the events kept as they are (0 once they live in the body only).
    #[cfg(test)]
    pub(crate) fn plain_bytes(&self) -> usize {
        self.plain.as_ref().map_or(0, |p| p.data_bytes())
    }

    /// The body for the events `group` (batch indices, ascending).
    pub(crate) async fn body(
        &mut self,
        encoder: &Arc<BodyEncoder>,
        group: &[usize],
    ) -> Result<(Bytes, BodyCompression), String> {
        let whole = group.len() == self.len;
        if whole && let Some(body) = &self.whole {
            return Ok(body.clone());
        }
        let events = self.plain(encoder).await?;
        let encoder = Arc::clone(encoder);
        let only = group.to_vec();
        let body = tokio::task::spawn_blocking(move || encoder.encode_shared(&events, Some(&only)))
            .await
            .map_err(|e| format!("encoding the batch failed: {e}"))?;
        if whole {
            self.plain = None;
            self.permit = None;
            self.whole = Some(body.clone());
        }
        Ok(body)
    }

    /// The events as they are, read back from the body if they were let go.
    pub(crate) async fn plain(
        &mut self,
        encoder: &Arc<BodyEncoder>,
    ) -> Result<Arc<BatchEvents>, String> {
        if let Some(plain) = &self.plain {
            return Ok(Arc::clone(plain));
        }
        let Some((body, compression)) = self.whole.clone() else {
            return Err("the batch's events were let go without a body".to_owned());
        };
        let encoder = Arc::clone(encoder);
        let len = self.len;
        let events = tokio::task::spawn_blocking(move || encoder.decode(&body, compression, len))
            .await
            .map_err(|e| format!("reading back the batch failed: {e}"))??;
        let events = Arc::new(events);
        self.plain = Some(Arc::clone(&events));
        Ok(events)
    }
}

thread_local! {
    /// A zstd context per thread that compresses bodies (tokio's blocking threads,
    /// reused), kept from one body to the next: see [`zstd_in_one_piece`].
    static ZSTD_CONTEXT: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// `data` as one zstd frame at `level`.
///
/// In one call on the whole body, not through zstd's streaming encoder: the stream
/// copies its input into a window of its own and, where that window wraps, matches
/// through zstd's slower external-dictionary path; the two were a fifth of zstd's CPU
/// on CloudFront bodies (`perf` of the daemon end to end, crates/alf-bench/README.md,
/// issue 8, ninth step). The output gets a quarter of the input's size, which log
/// events fit in (CloudFront NDJSON shrinks eightfold at level -1); a body that does
/// not is compressed again into room for the worst case.
fn zstd_in_one_piece(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    ZSTD_CONTEXT.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let Some((_, compressor)) = slot.as_mut() else {
            return Err(std::io::Error::other("no zstd context"));
        };
        let mut out = Vec::with_capacity(data.len() / 4 + 1024);
        if compressor.compress_to_buffer(data, &mut out).is_err() {
            out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
            compressor.compress_to_buffer(data, &mut out)?;
        }
        Ok(out)
    })
}

/// Room to give a compressed body of the events `only` (all when `None`): their bytes
/// divided by about the codec's ratio. Only a hint, so it reads the events' lengths and
/// not their bytes: [`BodyEncoder::body_estimate`] counts each Sekoia.io event's
/// escapes, which the batcher already did once per event (about 1.7 µs per CloudFront
/// event).
fn compressed_room(batch: &BatchEvents, only: Option<&[usize]>, ratio: usize) -> usize {
    selected(batch, only).map(|e| e.len() + 1).sum::<usize>() / ratio + 64
}

/// The events `only` of `batch` (all when `None`), in that order.
fn selected<'b>(
    batch: &'b BatchEvents,
    only: Option<&'b [usize]>,
) -> impl Iterator<Item = &'b [u8]> + 'b {
    (0..only.map_or(batch.len(), <[usize]>::len))
        .map(move |n| batch.event(only.map_or(n, |idx| idx[n])))
}

/// Uncompressed bytes handed to the compressor at a time (see `write_body`).
const ENCODE_PIECE: usize = 64 * 1024;

/// One Elasticsearch item refused for good (index relative to the request).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ItemRejection {
    index: usize,
    status: u16,
    answer: String,
}

/// The result of one HTTP attempt.
#[derive(Debug)]
enum Attempt {
    Accepted,
    /// Elasticsearch: some items were not created (indices relative to the request).
    Partial {
        retry: Vec<usize>,
        rejected: Vec<ItemRejection>,
    },
    /// The intake is down or busy: send the same request again.
    Retryable {
        cause: String,
        retry_after: Option<Duration>,
        status: Option<u16>,
    },
    /// The intake refused this request for good.
    Refused {
        status: u16,
        /// "answered 400 Bad Request: <excerpt>", for logs.
        cause: String,
        /// The excerpt alone, key masked, for the dead-letter record.
        answer: String,
    },
}

/// A status that refuses the request whatever events it carries: the key, the URL or a
/// proxy is wrong. Splitting the batch would only dead-letter every event.
fn refuses_every_request(status: u16) -> bool {
    matches!(status, 300..=399 | 401 | 403 | 404 | 405 | 407 | 415)
}

/// What became of one group of a batch's events.
enum GroupOutcome {
    /// Accepted, except the Elasticsearch items refused for good (batch indices).
    Delivered { rejected: Vec<(usize, u16, String)> },
    /// The intake refused the whole request with a permanent status.
    Refused {
        group: Vec<usize>,
        status: u16,
        cause: String,
        answer: String,
    },
}

/// An event that goes to the dead-letter sink (batch index).
struct Doomed {
    index: usize,
    reason: DeadLetterReason,
    status: Option<u16>,
    answer: String,
}

/// Posts batches to the intake. Cheap to share (`Arc`); the HTTP connection pool is
/// inside.
pub struct IntakeClient {
    http: reqwest::Client,
    endpoint: url::Url,
    protocol: IntakeProtocol,
    key: Option<IntakeKey>,
    encoder: Arc<BodyEncoder>,
    initial_backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
    max_event_bytes: usize,
    oversize: OversizePolicy,
    /// Where events refused on their own go; `None`: they fail their object (which
    /// is redelivered) instead.
    dead_letter: Option<Arc<DeadLetterSink>>,
    /// Opens after `max_retries` consecutive retryable failures; the daemon pauses
    /// receiving while it is open.
    circuit: Arc<IntakeCircuit>,
    /// `default` for `[intake]`, else the `[[intakes]]` name: the `intake` label of
    /// this client's metrics.
    name: String,
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
        for (name, value) in &settings.headers {
            // Validated with the configuration; a value may be a credential.
            let name = header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                IntakeError::Client(format!("intake.headers: {name:?} is not a header name"))
            })?;
            let mut value = HeaderValue::from_str(value.expose()).map_err(|_| {
                IntakeError::Client(format!(
                    "intake.headers.{name}: the value is not a valid header value"
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let timeout = Duration::from_secs(settings.timeout_seconds);
        let builder = reqwest::Client::builder()
            .user_agent(concat!("aws-log-forwarder/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(settings.connect_timeout_seconds))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(settings.max_concurrent_requests.max(1))
            // A POST answered with a redirect would be replayed as a GET: never follow,
            // report the redirect instead.
            .redirect(reqwest::redirect::Policy::none());
        let http = tls_and_proxy(builder, settings)?
            .build()
            .map_err(|e| IntakeError::Client(e.to_string()))?;
        Ok(IntakeClient {
            http,
            endpoint: endpoint(&settings.url, settings.protocol),
            protocol: settings.protocol,
            key: settings.key.clone(),
            encoder: Arc::new(BodyEncoder::new(settings)),
            initial_backoff: Duration::from_millis(settings.retry_initial_backoff_ms),
            max_backoff: Duration::from_millis(settings.retry_max_backoff_ms),
            timeout,
            max_event_bytes: settings.max_event_bytes,
            oversize: settings.oversize,
            dead_letter: None,
            circuit: Arc::new(IntakeCircuit::new(settings.max_retries.max(1))),
            name: crate::config::DEFAULT_INTAKE_NAME.to_owned(),
        })
    }

    /// Names this client (an `[[intakes]]` entry) in its metrics and its circuit's.
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self.circuit = Arc::new(self.circuit.renamed(name));
        self
    }

    /// `default` for `[intake]`, else the `[[intakes]]` name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends events the intake refuses on their own to `sink` (without one they fail
    /// their object, which is redelivered).
    pub fn with_dead_letter(mut self, sink: Arc<DeadLetterSink>) -> Self {
        self.dead_letter = Some(sink);
        self
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

    /// Delivers `batch`: retries while the intake is down (for as long as it takes),
    /// isolates the events it refuses by splitting the batch, and writes those to the
    /// dead-letter sink. `Err` only for events that could not be delivered nor
    /// dead-lettered (no sink, sink unwritable, encoding failed): their objects are
    /// redelivered.
    /// `plain` is released once the events live in the request body only.
    pub async fn deliver(
        &self,
        events: BatchEvents,
        plain: PlainPermit,
    ) -> Result<(), DeliveryFailure> {
        let url = self.endpoint.as_str();
        let mut doomed: Vec<Doomed> = Vec::new();
        let mut sendable = Vec::with_capacity(events.len());
        for i in 0..events.len() {
            let size = events.event(i).len();
            if size > self.max_event_bytes {
                doomed.push(Doomed {
                    index: i,
                    reason: DeadLetterReason::Oversize,
                    status: None,
                    answer: format!(
                        "not sent: the event has {size} bytes, over intake.max_event_bytes ({}){}",
                        self.max_event_bytes,
                        match self.oversize {
                            OversizePolicy::DeadLetter => "",
                            OversizePolicy::Truncate => " even after truncation",
                        }
                    ),
                });
            } else {
                sendable.push(i);
            }
        }
        let mut held = HeldEvents::new(events, plain);
        // Depth-first: the first half of a split batch is settled before the second.
        let mut groups = vec![sendable];
        let mut split_logged = false;
        // Events refused alone with 413: sent again truncated, after the rest.
        let mut too_large: Vec<(usize, String)> = Vec::new();
        while let Some(group) = groups.pop() {
            if group.is_empty() {
                continue;
            }
            let outcome = match self.deliver_group(&mut held, group).await {
                Ok(o) => o,
                Err(mut failure) => {
                    // Encoding failed (a panic on the blocking thread). Everything not
                    // yet delivered fails with this group: the events of the groups
                    // still to send, and those waiting for the dead-letter sink.
                    let failed = failure.failed.get_or_insert_with(Vec::new);
                    failed.extend(groups.iter().flatten().copied());
                    failed.extend(doomed.iter().map(|d| d.index));
                    return Err(failure);
                }
            };
            match outcome {
                GroupOutcome::Delivered { rejected } => {
                    for (index, status, answer) in rejected {
                        if status == 413 {
                            too_large.push((index, answer));
                        } else {
                            doomed.push(Doomed {
                                index,
                                reason: DeadLetterReason::Rejected,
                                status: Some(status),
                                answer,
                            });
                        }
                    }
                }
                GroupOutcome::Refused {
                    group,
                    status,
                    cause,
                    answer,
                } => {
                    metrics::counter!(m::INTAKE_FAILURES, "status_class" => m::status_class(Some(status)), "intake" => self.name.clone())
                        .increment(1);
                    if group.len() == 1 {
                        if status == 413 {
                            too_large.push((group[0], answer));
                        } else {
                            doomed.push(Doomed {
                                index: group[0],
                                reason: DeadLetterReason::Rejected,
                                status: Some(status),
                                answer,
                            });
                        }
                        continue;
                    }
                    if !split_logged {
                        split_logged = true;
                        tracing::warn!(
                            intake = url,
                            status,
                            events = group.len(),
                            "intake {url} refused a batch of {} events: {cause}; splitting it to isolate the refused events",
                            group.len()
                        );
                    }
                    let (first, second) = group.split_at(group.len() / 2);
                    groups.push(second.to_vec());
                    groups.push(first.to_vec());
                }
            }
        }
        if too_large.is_empty() && doomed.is_empty() {
            return Ok(());
        }
        let events = match held.plain(&self.encoder).await {
            Ok(events) => events,
            Err(reason) => {
                return Err(DeliveryFailure {
                    failed: Some(
                        too_large
                            .iter()
                            .map(|t| t.0)
                            .chain(doomed.iter().map(|d| d.index))
                            .collect(),
                    ),
                    reason,
                });
            }
        };
        drop(held);
        for (index, answer) in too_large {
            if let Err(d) = self.send_truncated(&events, index, answer).await? {
                doomed.push(d);
            }
        }
        if doomed.is_empty() {
            return Ok(());
        }
        self.dead_letter_events(&events, doomed).await
    }

    /// Event `index` of `batch` was refused alone with 413 (`answer`): sends it again
    /// cut to half its size, and again, until the intake takes it (`Ok(Ok)`: it
    /// counts as delivered). `Ok(Err)`: it cannot be cut smaller, dead-letter it.
    /// `Err`: encoding failed.
    async fn send_truncated(
        &self,
        batch: &BatchEvents,
        index: usize,
        mut answer: String,
    ) -> Result<Result<(), Doomed>, DeliveryFailure> {
        let url = self.endpoint.as_str();
        let original = batch.event(index);
        let mut current = original.to_vec();
        loop {
            let Some(smaller) = crate::oversize::truncate_event(&current, current.len() / 2) else {
                return Ok(Err(Doomed {
                    index,
                    reason: DeadLetterReason::Oversize,
                    status: Some(413),
                    answer: format!(
                        "refused with 413 even when cut to {} bytes (from {}), and it cannot be cut further: {answer}",
                        current.len(),
                        original.len()
                    ),
                }));
            };
            metrics::counter!(EVENTS_TRUNCATED).increment(1);
            tracing::warn!(
                intake = url,
                bytes = current.len(),
                truncated_to = smaller.len(),
                "intake {url} refused an event of {} bytes alone with 413 (body too large); sending it again truncated to {} bytes (tagged {}); lower intake.max_event_bytes to avoid the round trip",
                current.len(),
                smaller.len(),
                crate::oversize::TRUNCATED_TAG
            );
            current = smaller;
            // A stand-in batch of the cut event: it is settled with the batch it came
            // from.
            let mut alone = HeldEvents::new(
                std::iter::once(&current[..]).collect(),
                PlainPermit::unbounded(),
            );
            let outcome =
                self.deliver_group(&mut alone, vec![0])
                    .await
                    .map_err(|f| DeliveryFailure {
                        failed: Some(vec![index]),
                        reason: f.reason,
                    })?;
            match outcome {
                GroupOutcome::Delivered { rejected } => match rejected.into_iter().next() {
                    None => return Ok(Ok(())),
                    Some((_, 413, a)) => answer = a,
                    Some((_, status, a)) => {
                        return Ok(Err(Doomed {
                            index,
                            reason: DeadLetterReason::Rejected,
                            status: Some(status),
                            answer: a,
                        }));
                    }
                },
                GroupOutcome::Refused {
                    status: 413,
                    answer: a,
                    ..
                } => answer = a,
                GroupOutcome::Refused { status, answer, .. } => {
                    return Ok(Err(Doomed {
                        index,
                        reason: DeadLetterReason::Rejected,
                        status: Some(status),
                        answer,
                    }));
                }
            }
        }
    }

    /// Writes `doomed` to the dead-letter sink; they then count as delivered.
    async fn dead_letter_events(
        &self,
        batch: &BatchEvents,
        doomed: Vec<Doomed>,
    ) -> Result<(), DeliveryFailure> {
        let url = self.endpoint.as_str();
        let indices: Vec<usize> = doomed.iter().map(|d| d.index).collect();
        let first = &doomed[0];
        let summary = format!(
            "{} event(s) refused for good ({}{})",
            doomed.len(),
            first
                .status
                .map(|s| format!("status {s}: "))
                .unwrap_or_default(),
            first.answer
        );
        let Some(sink) = &self.dead_letter else {
            tracing::error!(
                intake = url,
                events = doomed.len(),
                "intake {url}: {summary}; no dead-letter sink is set, so their objects will be redelivered"
            );
            return Err(DeliveryFailure {
                failed: Some(indices),
                reason: format!("intake: {summary}"),
            });
        };
        let records: Vec<DeadLetter<'_>> = doomed
            .iter()
            .map(|d| DeadLetter {
                event: batch.event(d.index),
                reason: d.reason,
                status: d.status,
                answer: &d.answer,
            })
            .collect();
        match sink.write(&records).await {
            Ok(()) => {
                tracing::error!(
                    intake = url,
                    events = doomed.len(),
                    dead_letter = sink.location(),
                    "intake {url}: {summary}; written to the dead-letter sink {}, the rest of the batch is delivered",
                    sink.location()
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    intake = url,
                    events = doomed.len(),
                    "intake {url}: {summary}, and the dead-letter sink failed: {e}; their objects will be redelivered"
                );
                Err(DeliveryFailure {
                    failed: Some(indices),
                    reason: format!("intake: {summary}; dead-letter sink: {e}"),
                })
            }
        }
    }

    /// Sends the events `group` of `batch` until the intake accepts them or refuses
    /// the request for good. Retries while the intake is down, without limit.
    async fn deliver_group(
        &self,
        held: &mut HeldEvents,
        mut group: Vec<usize>,
    ) -> Result<GroupOutcome, DeliveryFailure> {
        let url = self.endpoint.as_str();
        let encode_failed = |group: &[usize], reason: String| DeliveryFailure {
            failed: Some(group.to_vec()),
            reason,
        };
        let mut body = match held.body(&self.encoder, &group).await {
            Ok(b) => b,
            Err(reason) => return Err(encode_failed(&group, reason)),
        };
        let mut rejected = Vec::new();
        let mut retries = 0u32;
        let mut refusal_logged = false;
        loop {
            let outcome = self.attempt(body.0.clone(), body.1, group.len()).await;
            match &outcome {
                Attempt::Accepted | Attempt::Partial { .. } => self.circuit.record_success(),
                Attempt::Refused { status, .. } if !refuses_every_request(*status) => {
                    self.circuit.record_success()
                }
                Attempt::Refused { cause, .. } | Attempt::Retryable { cause, .. } => {
                    self.circuit.record_retryable_failure(cause)
                }
            }
            let (cause, retry_after) = match outcome {
                Attempt::Accepted => return Ok(GroupOutcome::Delivered { rejected }),
                Attempt::Partial {
                    retry,
                    rejected: items,
                } => {
                    rejected.extend(
                        items
                            .into_iter()
                            .map(|r| (group[r.index], r.status, r.answer)),
                    );
                    if retry.is_empty() {
                        return Ok(GroupOutcome::Delivered { rejected });
                    }
                    group = retry.iter().map(|&i| group[i]).collect();
                    body = match held.body(&self.encoder, &group).await {
                        Ok(b) => b,
                        Err(reason) => {
                            // The items refused for good are not dead-lettered yet:
                            // they fail too, not count as delivered.
                            let mut failure = encode_failed(&group, reason);
                            if let Some(failed) = failure.failed.as_mut() {
                                failed.extend(rejected.iter().map(|r| r.0));
                            }
                            return Err(failure);
                        }
                    };
                    (format!("{} items refused temporarily", group.len()), None)
                }
                Attempt::Retryable {
                    cause, retry_after, ..
                } => (cause, retry_after),
                Attempt::Refused { status, cause, .. } if refuses_every_request(status) => {
                    if !refusal_logged {
                        refusal_logged = true;
                        tracing::error!(
                            intake = url,
                            status,
                            "intake {url} refuses our requests: {cause}; check intake.url and intake.key (the events wait, retried, until it accepts them)"
                        );
                    }
                    (cause, None)
                }
                Attempt::Refused {
                    status,
                    cause,
                    answer,
                } => {
                    return Ok(GroupOutcome::Refused {
                        group,
                        status,
                        cause,
                        answer,
                    });
                }
            };
            retries = retries.saturating_add(1);
            let delay = retry_after.unwrap_or_else(|| self.backoff(retries));
            // The circuit logs an outage once; per-batch retries stay quiet after the
            // first one.
            if retries == 1 && !self.circuit.is_open() {
                tracing::warn!(
                    intake = url,
                    delay_ms = delay.as_millis() as u64,
                    "intake {url} {cause}; retrying in {:.1}s",
                    delay.as_secs_f64()
                );
            } else {
                tracing::debug!(
                    intake = url,
                    retries,
                    delay_ms = delay.as_millis() as u64,
                    "intake {url} {cause}; retry {retries} in {:.1}s",
                    delay.as_secs_f64()
                );
            }
            metrics::counter!(m::INTAKE_RETRIES, "intake" => self.name.clone()).increment(1);
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, body: Bytes, compression: BodyCompression, events: usize) -> Attempt {
        let started = Instant::now();
        let outcome = self.attempt_inner(body, compression, events).await;
        let class = match &outcome {
            Attempt::Accepted | Attempt::Partial { .. } => "2xx",
            Attempt::Retryable { status, .. } => m::status_class(*status),
            Attempt::Refused { status, .. } => m::status_class(Some(*status)),
        };
        metrics::histogram!(REQUEST_DURATION, "status_class" => class, "intake" => self.name.clone())
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    async fn attempt_inner(
        &self,
        body: Bytes,
        compression: BodyCompression,
        events: usize,
    ) -> Attempt {
        let mut request = self.http.post(self.endpoint.clone()).body(body);
        match compression {
            BodyCompression::Gzip => request = request.header(header::CONTENT_ENCODING, "gzip"),
            BodyCompression::Zstd => request = request.header(header::CONTENT_ENCODING, "zstd"),
            BodyCompression::None => {}
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                metrics::counter!(m::INTAKE_REQUESTS, "status_class" => "error", "intake" => self.name.clone()).increment(1);
                return Attempt::Retryable {
                    cause: describe_error(&e, self.timeout),
                    retry_after: None,
                    status: None,
                };
            }
        };
        let status = response.status();
        metrics::counter!(m::INTAKE_REQUESTS, "status_class" => m::status_class(Some(status.as_u16())), "intake" => self.name.clone()).increment(1);
        if status.is_success() {
            if self.protocol != IntakeProtocol::Elasticsearch {
                return Attempt::Accepted;
            }
            return match response.bytes().await {
                Ok(body) => bulk_outcome(&body, events, self.key.as_ref()),
                // Accepted but unreadable: sending again may duplicate (the `_id`
                // makes Elasticsearch refuse the duplicates) but never loses.
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
            Attempt::Refused {
                status: code,
                cause,
                answer: excerpt,
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
        mask_and_flatten(&String::from_utf8_lossy(&buf), self.key.as_ref())
    }
}

/// `text` on one line, with the intake key replaced by `***`.
fn mask_and_flatten(text: &str, key: Option<&IntakeKey>) -> String {
    let mut text = Cow::Borrowed(text);
    if let Some(key) = key
        && !key.expose().is_empty()
    {
        text = Cow::Owned(text.replace(key.expose(), "***"));
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl BatchSender for IntakeClient {
    fn body_cost(&self, event: &[u8]) -> usize {
        self.encoder.cost(event)
    }

    fn max_body_bytes(&self) -> usize {
        match self.protocol {
            IntakeProtocol::Sekoia => SEKOIA_MAX_BODY_BYTES,
            IntakeProtocol::Ndjson | IntakeProtocol::Elasticsearch => usize::MAX,
        }
    }

    fn fit(&self, event: &[u8]) -> Option<Vec<u8>> {
        if event.len() <= self.max_event_bytes || self.oversize != OversizePolicy::Truncate {
            return None;
        }
        let cut = crate::oversize::truncate_event(event, self.max_event_bytes)?;
        metrics::counter!(EVENTS_TRUNCATED).increment(1);
        tracing::debug!(
            bytes = event.len(),
            max_event_bytes = self.max_event_bytes,
            "event truncated to fit intake.max_event_bytes"
        );
        Some(cut)
    }

    async fn send(&self, events: BatchEvents, plain: PlainPermit) -> Result<(), DeliveryFailure> {
        self.deliver(events, plain).await
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
    items: Vec<HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Reads an Elasticsearch `_bulk` answer for a request of `events` items: 2xx and 409
/// (the `_id` exists: a redelivered duplicate) are delivered, 429/5xx and the statuses
/// that refuse every request are retried, other 4xx are refused for good.
fn bulk_outcome(body: &[u8], events: usize, key: Option<&IntakeKey>) -> Attempt {
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
    let mut rejected = Vec::new();
    for (i, item) in response.items.iter().enumerate() {
        let Some(item) = item.values().next() else {
            continue;
        };
        match item.status {
            200..=299 | 409 => {}
            429 | 500..=599 => retry.push(i),
            s if refuses_every_request(s) => retry.push(i),
            status => {
                let error = item
                    .error
                    .as_ref()
                    .map(|e| {
                        let kind = e.get("type").and_then(|t| t.as_str()).unwrap_or("error");
                        let reason = e.get("reason").and_then(|t| t.as_str()).unwrap_or("");
                        format!("{kind}: {reason}")
                    })
                    .unwrap_or_default();
                let mut answer = mask_and_flatten(&error, key);
                truncate_on_char_boundary(&mut answer, EXCERPT_BYTES);
                rejected.push(ItemRejection {
                    index: i,
                    status,
                    answer,
                });
            }
        }
    }
    if retry.is_empty() && rejected.is_empty() {
        return Attempt::Accepted;
    }
    Attempt::Partial { retry, rejected }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::ObjectAck;
    use crate::batch::Batch;
    use crate::config::{Config, KeySource};
    use crate::deadletter::DeadLetterSink;
    use alf_testkit::closed_port_url;
    use alf_testkit::dead_letter_records as dead_letters;
    use alf_testkit::intake::{RecordedRequest, Reply, TestIntake};

    /// A plain answer with `status` and `body`.
    fn response(status: u16, body: &str) -> Reply {
        Reply::new(status, body)
    }

    #[tokio::test]
    async fn probe_tells_reachable_from_unreachable() {
        // Any HTTP answer means reachable, even one that would reject events.
        let intake = TestIntake::start().await;
        intake.set_probe_reply(response(405, ""));
        let client = IntakeClient::new(&settings(&intake.url(), "sekoia", "")).unwrap();
        assert_eq!(
            client.probe().await,
            Ok(reqwest::StatusCode::METHOD_NOT_ALLOWED)
        );
        let seen = intake.probe_requests();
        assert_eq!(seen.len(), 1);
        assert!(
            seen[0].request_line().starts_with("HEAD /batch "),
            "{seen:?}"
        );
        assert!(seen[0].body.is_empty());

        // A port nobody listens on.
        let closed = closed_port_url();
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

    fn batch(events: &[&str]) -> (Batch, Arc<ObjectAck>) {
        let ack = Arc::new(ObjectAck::new());
        ack.add_pending(events.len() as u64);
        let mut b = Batch::default();
        for e in events {
            b.push(e.as_bytes(), e.len(), &ack);
        }
        (b, ack)
    }

    const EVENTS: [&str; 2] = [
        r#"{"message":"a \"quoted\" line","event":{"id":"1"}}"#,
        r#"{"message":"back\\slash","event":{"id":"2"}}"#,
    ];

    #[test]
    fn request_bodies_are_compressed_at_the_configured_gzip_level() {
        use std::io::Read as _;
        let events: Vec<String> = (0..3_000)
            .map(|i| {
                format!(
                    r#"{{"url":{{"path":"/images/{}.png"}},"http":{{"response":{{"status_code":{}}}}},"n":{i}}}"#,
                    i % 37,
                    200 + (i * 7_919) % 5
                )
            })
            .collect();
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        let (b, _ack) = batch(&refs);
        let compressed_size = |extra: &str| {
            let encoder = BodyEncoder::new(&settings("https://intake.example", "ndjson", extra));
            let (body, gzipped) = encoder.encode_for_wire(b.events(), None);
            assert_eq!(gzipped, BodyCompression::Gzip);
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut plain)
                .unwrap();
            assert_eq!(
                plain,
                encoder.encode(b.events(), None),
                "{extra}: the same body"
            );
            body.len()
        };
        let fastest = compressed_size("gzip_level = 1");
        let default = compressed_size("");
        let smallest = compressed_size("gzip_level = 9");
        assert!(
            smallest < default && default < fastest,
            "level 9 {smallest} < level 2 {default} < level 1 {fastest} bytes"
        );
    }

    #[tokio::test]
    async fn sekoia_body_shape_and_gzip() {
        let intake = TestIntake::start_replying(vec![response(200, "{}")]).await;
        let url = intake.url();
        let client = IntakeClient::new(&settings(&url, "sekoia", "")).unwrap();
        let (mut b, _) = batch(&EVENTS);
        client
            .deliver(b.take_events(), PlainPermit::unbounded())
            .await
            .unwrap();
        let seen = intake.requests();
        assert_eq!(seen.len(), 1);
        let req = &seen[0];
        assert_eq!(req.request_line(), "POST /batch HTTP/1.1");
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
        let intake = TestIntake::start_replying(vec![response(204, "")]).await;
        let url = intake.url();
        let client = IntakeClient::new(&settings(
            &format!("{url}/ingest"),
            "ndjson",
            "gzip = false",
        ))
        .unwrap();
        let (mut b, ack) = batch(&EVENTS);
        client
            .deliver(b.take_events(), PlainPermit::unbounded())
            .await
            .unwrap();
        b.acknowledge();
        assert_eq!(ack.settled().await, Ok(()));
        let req = intake.requests()[0].clone();
        assert_eq!(req.request_line(), "POST /ingest HTTP/1.1");
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
        let intake = TestIntake::start_replying(vec![
            response(500, "boom"),
            response(503, ""),
            response(200, "{}"),
        ])
        .await;
        let url = intake.url();
        let client = IntakeClient::new(&settings(&url, "sekoia", "")).unwrap();
        let (mut b, _) = batch(&EVENTS);
        client
            .deliver(b.take_events(), PlainPermit::unbounded())
            .await
            .unwrap();
        let seen = intake.requests();
        assert_eq!(seen.len(), 3);
        assert_eq!(
            seen[0].plain_body(),
            seen[2].plain_body(),
            "the same body is sent again"
        );
    }

    #[tokio::test]
    async fn too_many_requests_honours_retry_after() {
        let intake = TestIntake::start_replying(vec![
            response(429, "").with_header("Retry-After", "1"),
            response(200, "{}"),
        ])
        .await;
        let url = intake.url();
        let client = IntakeClient::new(&settings(&url, "sekoia", "")).unwrap();
        let (mut b, _) = batch(&EVENTS);
        let start = std::time::Instant::now();
        client
            .deliver(b.take_events(), PlainPermit::unbounded())
            .await
            .unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(950),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(intake.requests().len(), 2);
    }

    fn client_with_sink(
        url: &str,
        protocol: &str,
        extra: &str,
    ) -> (IntakeClient, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let sink = DeadLetterSink::directory(dir.path().join("dl"), 1 << 20);
        let client = IntakeClient::new(&settings(url, protocol, extra))
            .unwrap()
            .with_dead_letter(Arc::new(sink));
        (client, dir)
    }

    /// The Sekoia `jsons` of a request, as text.
    fn sekoia_events(seen: &RecordedRequest) -> Vec<String> {
        let body: serde_json::Value = serde_json::from_slice(&seen.plain_body()).unwrap();
        body["jsons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j.as_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn a_refused_event_is_isolated_by_bisection_and_dead_lettered() {
        // The intake refuses any request holding the poison event, echoing the key.
        let intake = TestIntake::start_answering(|req| {
            if sekoia_events(req).iter().any(|e| e.contains("poison")) {
                response(
                    400,
                    "{\"message\":\"invalid field\",\"key\":\"test-intake-key\"}",
                )
            } else {
                response(200, "{}")
            }
        })
        .await;
        let url = intake.url();
        let (client, dir) = client_with_sink(&url, "sekoia", "");
        let events: Vec<String> = (0..8)
            .map(|i| {
                if i == 5 {
                    r#"{"message":"poison","event":{"id":"5"}}"#.to_owned()
                } else {
                    format!(r#"{{"message":"ok","event":{{"id":"{i}"}}}}"#)
                }
            })
            .collect();
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        let (mut b, ack) = batch(&refs);
        client
            .deliver(b.take_events(), PlainPermit::unbounded())
            .await
            .unwrap();
        b.acknowledge();
        assert_eq!(ack.settled().await, Ok(()), "the object completes");

        // 8 -> [0..4) ok, [4..8) refused -> [4,5] refused -> [4] ok, [5] refused alone,
        // [6,7] ok: every good event was accepted exactly once.
        let seen = intake.requests();
        let sizes: Vec<usize> = seen.iter().map(|r| sekoia_events(r).len()).collect();
        assert_eq!(sizes, vec![8, 4, 4, 2, 1, 1, 2]);
        let delivered: Vec<String> = seen
            .iter()
            .zip([false, true, false, false, true, false, true])
            .filter(|(_, accepted)| *accepted)
            .flat_map(|(r, _)| sekoia_events(r))
            .collect();
        let mut expected: Vec<String> = events.clone();
        expected.remove(5);
        assert_eq!(delivered, expected);

        let dead = dead_letters(&dir.path().join("dl"));
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0]["event"]["event"]["id"], "5");
        assert_eq!(dead[0]["reason"], "rejected");
        assert_eq!(dead[0]["intake_status"], 400);
        let answer = dead[0]["intake_answer"].as_str().unwrap();
        assert!(answer.contains("invalid field"), "{answer}");
        assert!(answer.contains("***") && !answer.contains("test-intake-key"));
    }

    #[tokio::test]
    async fn without_a_sink_refused_events_fail_only_themselves_and_the_key_is_masked() {
        let long = format!("invalid intake key test-intake-key {}", "é".repeat(2000));
        let intake = TestIntake::start_replying(vec![response(422, &long)]).await;
        let url = intake.url();
        let client = IntakeClient::new(&settings(&url, "sekoia", "")).unwrap();
        let (mut b, ack) = batch(&EVENTS);
        let failure = client
            .deliver(b.take_events(), PlainPermit::unbounded())
            .await
            .unwrap_err();
        assert_eq!(
            intake.requests().len(),
            3,
            "the batch, then each event alone"
        );
        assert_eq!(failure.failed, Some(vec![0, 1]));
        assert!(failure.reason.contains("status 422"), "{}", failure.reason);
        assert!(
            failure.reason.contains("invalid intake key ***"),
            "{}",
            failure.reason
        );
        assert!(!failure.reason.contains("test-intake-key"));
        assert!(failure.reason.len() < EXCERPT_BYTES + 100);
        b.settle_failure(failure.failed.as_deref(), &failure.reason);
        assert!(ack.settled().await.is_err());
    }

    #[tokio::test]
    async fn payload_too_large_splits_then_truncates_and_never_dead_letters() {
        // The intake takes one event of at most 1,500 bytes per request.
        let intake = TestIntake::start_answering(|req| {
            let events = sekoia_events(req);
            if events.len() > 1 || events.iter().any(|e| e.len() > 1500) {
                response(413, "too big")
            } else {
                response(200, "{}")
            }
        })
        .await;
        let url = intake.url();
        let (client, dir) = client_with_sink(&url, "sekoia", "");
        let huge = format!(
            r#"{{"m":"huge","event":{{"original":"{}"}}}}"#,
            "x".repeat(5000)
        );
        let (mut b, ack) = batch(&[r#"{"m":"a"}"#, &huge, r#"{"m":"c"}"#]);
        client
            .deliver(b.take_events(), PlainPermit::unbounded())
            .await
            .unwrap();
        b.acknowledge();
        assert_eq!(ack.settled().await, Ok(()));
        assert!(
            dead_letters(&dir.path().join("dl")).is_empty(),
            "a 413 never dead-letters an event that can be cut"
        );
        // The requests the intake accepted (same rule as its answer).
        let accepted: Vec<serde_json::Value> = intake
            .requests()
            .iter()
            .map(sekoia_events)
            .filter(|events| events.len() == 1 && events[0].len() <= 1500)
            .flatten()
            .map(|e| serde_json::from_str(&e).unwrap())
            .collect();
        assert_eq!(accepted.len(), 3, "{accepted:?}");
        let cut = accepted.iter().find(|e| e["m"] == "huge").unwrap();
        assert_eq!(cut["tags"][0], "_truncated");
        let original = cut["event"]["original"].as_str().unwrap();
        assert!(
            original.len() < 1500 && original.len() > 500,
            "halved until it fit: {}",
            original.len()
        );
    }

    #[tokio::test]
    async fn an_event_that_cannot_be_cut_small_enough_is_dead_lettered_as_oversize() {
        let intake = TestIntake::start_answering(|req| {
            if sekoia_events(req).iter().any(|e| e.contains("huge")) {
                response(413, "too big")
            } else {
                response(200, "{}")
            }
        })
        .await;
        let url = intake.url();
        let (client, dir) = client_with_sink(&url, "sekoia", "");
        let (mut b, _) = batch(&[r#"{"m":"a"}"#, r#"{"m":"huge","n":[1,2,3,4,5,6,7,8]}"#]);
        client
            .deliver(b.take_events(), PlainPermit::unbounded())
            .await
            .unwrap();
        let dead = dead_letters(&dir.path().join("dl"));
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0]["event"]["m"], "huge", "the original event is kept");
        assert_eq!(dead[0]["reason"], "oversize");
        assert_eq!(dead[0]["intake_status"], 413);
    }

    #[tokio::test]
    async fn a_refused_key_is_retried_like_an_outage_not_split() {
        let intake = TestIntake::start_replying(vec![
            response(401, "bad key"),
            response(403, "bad key"),
            response(200, "{}"),
        ])
        .await;
        let url = intake.url();
        let (client, dir) = client_with_sink(&url, "sekoia", "");
        let (mut b, _) = batch(&EVENTS);
        client
            .deliver(b.take_events(), PlainPermit::unbounded())
            .await
            .unwrap();
        let seen = intake.requests();
        assert_eq!(seen.len(), 3);
        assert!(
            seen.iter().all(|r| sekoia_events(r).len() == 2),
            "never split"
        );
        assert!(dead_letters(&dir.path().join("dl")).is_empty());
    }

    #[tokio::test]
    async fn retries_for_as_long_as_the_intake_is_down_and_the_circuit_follows() {
        // Ten failures: more than max_retries (3), which only opens the circuit now.
        let mut responses: Vec<Reply> = (0..10)
            .map(|i| match i % 3 {
                0 => response(502, ""),
                1 => response(503, ""),
                _ => response(429, "").with_header("Retry-After", "0"),
            })
            .collect();
        responses.push(response(200, "{}"));
        let intake = TestIntake::start_replying(responses).await;
        let url = intake.url();
        let client = Arc::new(IntakeClient::new(&settings(&url, "ndjson", "")).unwrap());
        let circuit = Arc::clone(client.circuit());
        let (mut b, ack) = batch(&EVENTS);
        let delivery = tokio::spawn({
            let client = Arc::clone(&client);
            let events = b.take_events();
            async move { client.deliver(events, PlainPermit::unbounded()).await }
        });
        let mut opened = false;
        while !delivery.is_finished() {
            opened |= circuit.is_open();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        delivery.await.unwrap().unwrap();
        assert!(opened, "the circuit opened during the outage");
        assert!(!circuit.is_open(), "and closed with the first success");
        assert_eq!(intake.requests().len(), 11);
        b.acknowledge();
        assert_eq!(ack.settled().await, Ok(()));
    }

    #[tokio::test]
    async fn unreachable_intake_is_retryable_and_names_the_cause() {
        let client = IntakeClient::new(&settings(&closed_port_url(), "ndjson", "")).unwrap();
        match client
            .attempt(Bytes::from_static(b"{}\n"), BodyCompression::None, 1)
            .await
        {
            Attempt::Retryable { cause, status, .. } => {
                assert_eq!(cause, "unreachable: connection refused");
                assert_eq!(status, None);
            }
            other => panic!("expected a retryable failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn oversized_events_go_to_the_dead_letter_sink_unsent_when_configured() {
        let intake = TestIntake::start_replying(vec![response(200, "{}")]).await;
        let url = intake.url();
        let (client, dir) = client_with_sink(
            &url,
            "ndjson",
            "gzip = false\nmax_event_bytes = 1024\noversize = \"dead_letter\"",
        );
        let big = format!(r#"{{"message":"{}"}}"#, "x".repeat(2000));
        assert_eq!(client.fit(big.as_bytes()), None, "not truncated");
        let (mut b, _) = batch(&[EVENTS[0], &big]);
        client
            .deliver(b.take_events(), PlainPermit::unbounded())
            .await
            .unwrap();
        let seen = intake.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].body, format!("{}\n", EVENTS[0]).into_bytes());
        let dead = dead_letters(&dir.path().join("dl"));
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0]["reason"], "oversize");
        assert!(dead[0]["intake_status"].is_null());

        // The default policy truncates instead, and tags the event.
        let truncating =
            IntakeClient::new(&settings(&url, "ndjson", "max_event_bytes = 1024")).unwrap();
        let cut = truncating.fit(big.as_bytes()).expect("truncated");
        assert!(cut.len() <= 1024);
        let v: serde_json::Value = serde_json::from_slice(&cut).unwrap();
        assert_eq!(v["tags"], serde_json::json!(["_truncated"]));
    }

    #[tokio::test]
    async fn elasticsearch_uses_create_with_the_event_id_and_a_dataset_index() {
        let events = [
            r#"{"event":{"id":"id-0","dataset":"aws.cloudtrail"},"n":0}"#,
            r#"{"event":{"id":"id-1","dataset":"aws.cloudtrail"},"n":1}"#,
            r#"{"event":{"id":"id-2","dataset":"aws.vpcflow"},"n":2}"#,
            r#"{"event":{"id":"id-3","dataset":"aws.waf"},"n":3}"#,
            r#"{"n":4}"#,
        ];
        // 201, 409 (a duplicate of a redelivery: delivered), 429 (retried alone),
        // 400 (dead-lettered), 201.
        let first = r#"{"took":3,"errors":true,"items":[
            {"create":{"status":201}},
            {"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"[id-1]: version conflict, document already exists"}}},
            {"create":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [source.port]"}}},
            {"create":{"status":201}}]}"#;
        let second = r#"{"took":1,"errors":false,"items":[{"create":{"status":201}}]}"#;
        let intake =
            TestIntake::start_replying(vec![response(200, first), response(200, second)]).await;
        let url = intake.url();
        let (client, dir) = client_with_sink(
            &url,
            "elasticsearch",
            "gzip = false\n[intake.elasticsearch_indices]\n\"aws.waf\" = \"waf-stream\"",
        );
        let (mut b, ack) = batch(&events);
        client
            .deliver(b.take_events(), PlainPermit::unbounded())
            .await
            .unwrap();
        b.acknowledge();
        assert_eq!(ack.settled().await, Ok(()));

        let seen = intake.requests();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].request_line(), "POST /_bulk HTTP/1.1");
        assert_eq!(
            seen[0].header("authorization"),
            Some("ApiKey test-intake-key")
        );
        let action = |index: &str, id: Option<&str>| match id {
            Some(id) => format!("{{\"create\":{{\"_index\":\"{index}\",\"_id\":\"{id}\"}}}}"),
            None => format!("{{\"create\":{{\"_index\":\"{index}\"}}}}"),
        };
        let expected_first = [
            action("logs-aws.cloudtrail-default", Some("id-0")),
            action("logs-aws.cloudtrail-default", Some("id-1")),
            action("logs-aws.vpcflow-default", Some("id-2")),
            action("waf-stream", Some("id-3")),
            action("logs-aws.unknown-default", None),
        ]
        .iter()
        .zip(events)
        .map(|(a, e)| format!("{a}\n{e}\n"))
        .collect::<String>();
        assert_eq!(
            String::from_utf8(seen[0].body.to_vec()).unwrap(),
            expected_first
        );
        // Only the item refused with 429 is sent again.
        assert_eq!(
            String::from_utf8(seen[1].body.to_vec()).unwrap(),
            format!(
                "{}\n{}\n",
                action("logs-aws.vpcflow-default", Some("id-2")),
                events[2]
            )
        );
        let dead = dead_letters(&dir.path().join("dl"));
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0]["event"]["event"]["id"], "id-3");
        assert_eq!(dead[0]["intake_status"], 400);
        assert!(
            dead[0]["intake_answer"]
                .as_str()
                .unwrap()
                .contains("mapper_parsing_exception")
        );
    }

    #[test]
    fn bulk_item_errors_are_cut_on_a_char_boundary() {
        // The reason is cut at EXCERPT_BYTES; multi-byte chars straddle that byte.
        let reason = "é".repeat(EXCERPT_BYTES);
        let body = format!(
            r#"{{"errors":true,"items":[{{"create":{{"status":400,"error":{{"type":"x","reason":"{reason}"}}}}}}]}}"#
        );
        match bulk_outcome(body.as_bytes(), 1, None) {
            Attempt::Partial { retry, rejected } => {
                assert!(retry.is_empty());
                assert_eq!(rejected.len(), 1);
                assert!(rejected[0].answer.len() <= EXCERPT_BYTES);
                assert!(rejected[0].answer.starts_with("x: é"));
            }
            other => panic!("expected a partial outcome, got {other:?}"),
        }
        let mut s = "aé".to_owned();
        truncate_on_char_boundary(&mut s, 2);
        assert_eq!(s, "a");
    }

    #[test]
    fn endpoints_per_protocol() {
        for (configured, protocol, expected) in [
            (
                "https://intake.sekoia.io",
                IntakeProtocol::Sekoia,
                "https://intake.sekoia.io/batch",
            ),
            (
                "https://intake.sekoia.io/",
                IntakeProtocol::Sekoia,
                "https://intake.sekoia.io/batch",
            ),
            (
                "https://intake.sekoia.io/batch",
                IntakeProtocol::Sekoia,
                "https://intake.sekoia.io/batch",
            ),
            (
                "https://es:9200/",
                IntakeProtocol::Elasticsearch,
                "https://es:9200/_bulk",
            ),
            ("https://h/x", IntakeProtocol::Ndjson, "https://h/x"),
        ] {
            let url = url::Url::parse(configured).unwrap();
            assert_eq!(endpoint(&url, protocol).as_str(), expected, "{configured}");
        }
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
        let body = enc.encode(b.events(), None);
        let prefix = "{\"intake_key\":\"test-intake-key\",\"jsons\":[]}".len();
        let cost: usize = EVENTS.iter().map(|e| enc.cost(e.as_bytes())).sum();
        // Each event's cost includes a comma; the last one has none.
        assert_eq!(body.len(), prefix + cost - 1);
        assert!(matches!(
            s.key.as_ref().map(|k| k.source()),
            Some(KeySource::Inline)
        ));
    }

    /// Events a body must give back byte for byte: quotes, backslashes, escapes the
    /// writer made, tabs, non-ASCII, an empty object.
    fn awkward_events() -> Vec<String> {
        let mut events = vec![
            r#"{"message":"a \"quoted\" line\twith a tab","event":{"id":"1"}}"#.to_owned(),
            r#"{"message":"back\\slash \u0001 \n","event":{"dataset":"aws.s3access"}}"#.to_owned(),
            "{\"message\":\"caf\u{e9} \u{1f600} \u{2028}\"}".to_owned(),
            "{}".to_owned(),
        ];
        events.extend((0..500).map(|i| format!(r#"{{"n":{i},"event":{{"id":"e{i}"}}}}"#)));
        events
    }

    #[test]
    fn every_protocol_reads_its_body_back_to_the_same_events() {
        let events = awkward_events();
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        let (b, _) = batch(&refs);
        for protocol in ["sekoia", "ndjson", "elasticsearch"] {
            for gzip in ["gzip = true", "gzip = false", "compression = \"zstd\""] {
                if gzip.contains("zstd") && protocol != "ndjson" {
                    continue; // refused by the configuration
                }
                let enc = BodyEncoder::new(&settings("https://intake.example", protocol, gzip));
                let (body, gzipped) = enc.encode_for_wire(b.events(), None);
                let plain_len = enc.encode(b.events(), None).len();
                let estimate = enc.body_estimate(b.events(), None);
                // Exact but for the envelope; `_bulk` counts its action lines at
                // their longest.
                let slack = if protocol == "elasticsearch" {
                    2 * plain_len
                } else {
                    64
                };
                assert!(
                    plain_len <= estimate && estimate <= plain_len + slack,
                    "{protocol}: body {plain_len} bytes, estimated {estimate}"
                );
                let back = enc.decode(&body, gzipped, b.len()).unwrap();
                assert_eq!(&back, b.events(), "{protocol}, {gzip}");
                let only = [1, 3, 7];
                let (body, gzipped) = enc.encode_for_wire(b.events(), Some(&only));
                let back = enc.decode(&body, gzipped, 3).unwrap();
                let expected: BatchEvents = only.iter().map(|&i| b.events().event(i)).collect();
                assert_eq!(back, expected, "{protocol}, {gzip}, a part");
                let miscounted = enc.decode(&body, gzipped, 4).unwrap_err();
                assert!(miscounted.contains("3 events instead of 4"), "{miscounted}");
            }
        }
    }

    #[tokio::test]
    async fn an_uncompressed_ndjson_body_is_the_batchs_own_buffer_and_zstd_is_smaller_than_gzip() {
        let events = awkward_events();
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        let (b, _) = batch(&refs);
        let original = b.events().clone();
        let all: Vec<usize> = (0..b.len()).collect();
        let plain = Arc::new(BodyEncoder::new(&settings(
            "https://intake.example",
            "ndjson",
            "compression = \"none\"",
        )));
        let shared = Arc::new(original.clone());
        let (body, compression) = plain.encode_shared(&shared, Some(&all));
        assert_eq!(compression, BodyCompression::None);
        assert_eq!(body.as_ptr(), shared.ndjson().as_ptr(), "not copied");
        assert_eq!(body, plain.encode(&original, None));
        let text = std::str::from_utf8(&body).unwrap();
        assert_eq!(text.lines().count(), original.len());
        assert!(
            text.lines()
                .zip(original.iter())
                .all(|(l, e)| l.as_bytes() == e)
        );
        // A part is a body of its own.
        let (part, _) = plain.encode_shared(&shared, Some(&all[1..3]));
        assert_ne!(part.as_ptr(), shared.ndjson().as_ptr());
        assert_eq!(
            part,
            [original.event(1), b"\n", original.event(2), b"\n"].concat()
        );
        // Held while in flight, the body keeps the buffer; the events read back from it.
        let mut held = HeldEvents::new(original.clone(), PlainPermit::unbounded());
        let (body, _) = held.body(&plain, &all).await.unwrap();
        assert_eq!(held.plain_bytes(), 0);
        assert_eq!(*held.plain(&plain).await.unwrap(), original);
        assert_eq!(
            plain.decode(&body, BodyCompression::None, b.len()).unwrap(),
            original
        );

        let size = |extra: &str| {
            let enc = BodyEncoder::new(&settings("https://intake.example", "ndjson", extra));
            let (body, compression) = enc.encode_shared(&shared, None);
            assert_eq!(enc.decode(&body, compression, b.len()).unwrap(), original);
            (body.len(), compression)
        };
        let (gzip, c) = size("");
        assert_eq!(c, BodyCompression::Gzip);
        let (zstd, c) = size("compression = \"zstd\"");
        assert_eq!(c, BodyCompression::Zstd);
        assert!(zstd < gzip, "zstd {zstd} bytes, gzip {gzip}");
        let (fastest, _) = size("compression = \"zstd\"\nzstd_level = -7");
        assert!(zstd < fastest, "level -1 {zstd} bytes, level -7 {fastest}");
        b.acknowledge();
    }

    #[test]
    fn a_zstd_body_that_barely_compresses_is_still_whole() {
        // Hex of a hash chain: about two bytes per byte of entropy, so the body
        // compresses to about half, more than the room first given to it.
        let mut h = 0x9e37_79b9_7f4a_7c15u64;
        let events: Vec<String> = (0..2_000)
            .map(|_| {
                let hex: String = (0..8)
                    .map(|_| {
                        h ^= h << 13;
                        h ^= h >> 7;
                        h ^= h << 17;
                        format!("{h:016x}")
                    })
                    .collect();
                format!(r#"{{"x":"{hex}"}}"#)
            })
            .collect();
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        let (b, _) = batch(&refs);
        let enc = BodyEncoder::new(&settings(
            "https://intake.example",
            "ndjson",
            "compression = \"zstd\"",
        ));
        let (body, compression) = enc.encode_for_wire(b.events(), None);
        assert_eq!(compression, BodyCompression::Zstd);
        assert!(
            body.len() > b.events().data_bytes() / 4 + 1024,
            "{}",
            body.len()
        );
        assert_eq!(
            &enc.decode(&body, compression, b.len()).unwrap(),
            b.events()
        );
        b.acknowledge();
    }

    #[tokio::test]
    async fn a_batch_in_flight_keeps_its_body_only_and_reads_its_events_back_from_it() {
        let events = awkward_events();
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        let (b, _) = batch(&refs);
        let original = b.events().clone();
        let all: Vec<usize> = (0..b.len()).collect();
        for protocol in ["sekoia", "ndjson", "elasticsearch"] {
            let enc = Arc::new(BodyEncoder::new(&settings(
                "https://intake.example",
                protocol,
                "",
            )));
            let mut held = HeldEvents::new(original.clone(), PlainPermit::unbounded());
            assert_eq!(held.plain_bytes(), original.data_bytes());
            let (body, gzipped) = held.body(&enc, &all).await.unwrap();
            assert_eq!(gzipped, BodyCompression::Gzip);
            assert!(
                body.len() < original.data_bytes() / 3,
                "{protocol}: {}",
                body.len()
            );
            assert_eq!(held.plain_bytes(), 0, "{protocol}: the events are let go");
            // The same body again (a retry), without the events.
            let again = held.body(&enc, &all).await.unwrap();
            assert_eq!(again.0, body);
            assert_eq!(held.plain_bytes(), 0);
            // A part of the batch (a split) reads them back, once.
            let (part, _) = held.body(&enc, &all[..2]).await.unwrap();
            assert_eq!(held.plain_bytes(), original.data_bytes());
            let back = enc.decode(&part, BodyCompression::Gzip, 2).unwrap();
            assert_eq!(back.event(1), original.event(1));
            assert_eq!(*held.plain(&enc).await.unwrap(), original, "{protocol}");
        }
        b.acknowledge();
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
