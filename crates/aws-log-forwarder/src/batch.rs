//! Accumulates serialized events from any number of objects into intake batches.
//!
//! Parsers send [`EventChunk`]s (a few hundred serialized events of one object) over a
//! bounded channel; the batcher copies events into a [`Batch`] until `max_events`,
//! `max_bytes` (the request body size, as the sender counts it) or `linger_ms` since
//! the batch's first event is reached, then hands it to a [`BatchSender`] on its own
//! task, up to `max_concurrent` requests at once. When a request ends, every object
//! with events in the batch is told through its [`ObjectAck`].
//!
//! Memory stays bounded: the channel holds a fixed number of chunks, the batcher one
//! open batch, one more batch is kept as it is while its sender builds the request
//! body ([`PlainPermit`]), and at most `max_concurrent` batches are in flight, as their
//! compressed bodies; when all of that is full, the parsers block in `blocking_send`
//! and stop reading their S3 streams.
//!
//! Nothing that carries events is dropped unnoticed: an [`EventChunk`] dropped before
//! the batcher took its events, and a [`Batch`] dropped before it was settled (an
//! aborted request task, a shutdown, a panic), fail their objects' acknowledgements,
//! so the messages are released for redelivery at once instead of staying invisible
//! (heartbeats keep them so) until the process restarts. A panic in a request task is
//! caught and logged once.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ack::ObjectAck;
use crate::config::BatchSettings;
use crate::metrics as m;

/// Buffers given back when their chunk or batch is done, for the next one to fill.
///
/// A chunk's buffer is filled on a parsing thread and freed on the batcher's, a
/// batch's filled on the batcher's and freed on a blocking thread once its body is
/// built: thousands of half-megabyte and a few hundred 4 MB blocks per large object,
/// each freed on another thread than the one that allocated it. The allocator keeps
/// such memory for a while before it can hand it out again, and a large object's
/// peak RSS stood 5 MB above its live heap's gap to a small one. Kept buffers are the
/// same pages from one chunk (or batch) to the next.
pub(crate) struct BufferPool {
    buffers: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl BufferPool {
    pub(crate) const fn new(keep: usize) -> Self {
        BufferPool {
            buffers: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// An empty buffer with room for at least `bytes`: a kept one when there is one.
    pub(crate) fn take(&self, bytes: usize) -> Vec<u8> {
        let kept = self.buffers.lock().ok().and_then(|mut b| b.pop());
        let mut buffer = kept.unwrap_or_default();
        buffer.reserve_exact(bytes);
        buffer
    }

    /// Keeps `buffer` for the next [`BufferPool::take`] (unless enough are kept).
    pub(crate) fn give(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() == 0 {
            return;
        }
        buffer.clear();
        if let Ok(mut buffers) = self.buffers.lock()
            && buffers.len() < self.keep
        {
            buffers.push(buffer);
        }
    }

    /// Buffers kept now.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.buffers.lock().map_or(0, |b| b.len())
    }
}

/// Chunk buffers: the chunks in the channels and those being filled fit.
static CHUNK_BUFFERS: BufferPool = BufferPool::new(16);
/// Batch buffers: the open batch and the one whose body is being built
/// ([`PlainPermit`]), per intake.
static BATCH_BUFFERS: BufferPool = BufferPool::new(8);

/// Serialized events of one object, in order.
///
/// Dropped with events the batcher did not take ([`EventChunk::handed_over`] not
/// called), it fails its object's acknowledgement: those events will never be sent.
#[derive(Debug)]
pub struct EventChunk {
    /// The events' JSON, concatenated.
    pub data: Vec<u8>,
    /// End offset of each event in `data`.
    pub ends: Vec<usize>,
    pub ack: Arc<ObjectAck>,
    /// Number of the chunk's first event among its object's events (from 0), so the
    /// object's watermark can tell which events a settled batch covered.
    pub first_seq: u64,
    /// Index of the intake its events go to (see [`crate::intakes`]; 0 is `[intake]`).
    pub route: usize,
    /// The last chunk of its object (it may hold no event): when nothing else is
    /// queued behind it, the batcher sends its open batch at once instead of after
    /// `linger_ms`, so a small object reaches the intake within a request's time of
    /// its notification, while the chunks of large objects still fill whole batches.
    pub ends_object: bool,
    /// The batcher copied the events into batches, which answer for them now.
    handed_over: bool,
}

impl Drop for EventChunk {
    fn drop(&mut self) {
        if !self.handed_over && !self.ends.is_empty() {
            self.ack.failed(
                self.ends.len() as u64,
                "events were dropped before reaching the intake (shutdown or a failed task)",
            );
        }
        CHUNK_BUFFERS.give(std::mem::take(&mut self.data));
    }
}

impl EventChunk {
    pub fn new(ack: Arc<ObjectAck>, capacity_bytes: usize, capacity_events: usize) -> Self {
        EventChunk {
            data: CHUNK_BUFFERS.take(capacity_bytes),
            ends: Vec::with_capacity(capacity_events),
            ack,
            first_seq: 0,
            route: 0,
            ends_object: false,
            handed_over: false,
        }
    }

    /// Marks the events as taken over by batches (the batcher, once it copied them).
    pub fn handed_over(&mut self) {
        self.handed_over = true;
    }

    /// Appends one event written by `write`.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.data);
        self.ends.push(self.data.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn events(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let ev = &self.data[start..end];
            start = end;
            ev
        })
    }
}

/// A run of consecutive events of one object in a batch.
#[derive(Debug)]
struct Owner {
    ack: Arc<ObjectAck>,
    n: u64,
    /// Number of the run's first event in its object (`None`: not tracked, tests).
    first: Option<u64>,
}

impl Owner {
    /// Batch events `from..to` of this run (which starts at batch index `start`) were
    /// settled: move the watermark.
    fn completed_indices(&self, start: usize, from: usize, to: usize) {
        if let Some(first) = self.first
            && to > from
        {
            self.ack
                .completed(first + (from - start) as u64, (to - from) as u64);
        }
    }

    /// The whole run settled well: counted and moved into the watermark.
    fn delivered(&self) {
        self.ack.delivered(self.n);
        if let Some(first) = self.first {
            self.ack.completed(first, self.n);
        }
    }
}

/// The events of a batch: their JSON, each followed by a line feed, and where each
/// ends (before its line feed).
///
/// The line feeds make the events an NDJSON body as they are
/// ([`BatchEvents::ndjson`]): an NDJSON request sends or compresses them without
/// copying each event into a body first. [`BatchEvents::event`] reads an event by its
/// end, not by the line feeds, so the other protocols take any event as it is.
///
/// Split from the [`Batch`] when it is sent: the sender owns the events (and may let
/// their bytes go once a compressed request body holds them), the batch keeps who owns
/// them, to settle their objects when the sender is done.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchEvents {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Drop for BatchEvents {
    fn drop(&mut self) {
        BATCH_BUFFERS.give(std::mem::take(&mut self.data));
    }
}

impl BatchEvents {
    /// Room for `bytes` of events and `events` events.
    pub fn with_capacity(bytes: usize, events: usize) -> Self {
        let mut e = BatchEvents {
            data: BATCH_BUFFERS.take(bytes),
            ends: Vec::new(),
        };
        e.ends.reserve_exact(events);
        e
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Serialized size of the events, with their line feeds.
    pub fn data_bytes(&self) -> usize {
        self.data.len()
    }

    /// The `i`-th event's JSON.
    pub fn event(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] + 1 };
        &self.data[start..self.ends[i]]
    }

    /// Every event, one per line: the body of an NDJSON request.
    pub fn ndjson(&self) -> &[u8] {
        &self.data
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|i| self.event(i))
    }

    pub fn push(&mut self, event: &[u8]) {
        self.data.extend_from_slice(event);
        self.ends.push(self.data.len());
        self.data.push(b'\n');
    }
}

impl<'a> FromIterator<&'a [u8]> for BatchEvents {
    fn from_iter<I: IntoIterator<Item = &'a [u8]>>(iter: I) -> Self {
        let mut events = BatchEvents::default();
        for e in iter {
            events.push(e);
        }
        events
    }
}

/// Shares a batch's events as a request body ([`bytes::Bytes::from_owner`]): an
/// NDJSON body without compression is the events' own buffer, not a copy of it.
pub struct NdjsonBody(pub Arc<BatchEvents>);

impl AsRef<[u8]> for NdjsonBody {
    fn as_ref(&self) -> &[u8] {
        self.0.ndjson()
    }
}

/// A batch of serialized events and the objects they belong to.
///
/// It settles its events exactly once ([`Batch::acknowledge`] or
/// [`Batch::settle_failure`]); dropped unsettled (its request task aborted or
/// panicked, a shutdown), it fails them, so no object waits for events that will never
/// be delivered.
#[derive(Debug, Default)]
pub struct Batch {
    events: BatchEvents,
    /// Number of events, also once [`Batch::take_events`] handed them to the sender.
    len: usize,
    /// Run-length owners: each owns the next `n` events.
    owners: Vec<Owner>,
    /// Body bytes as the sender will encode them.
    body_bytes: usize,
    /// The events were acknowledged or failed.
    settled: AtomicBool,
}

impl Drop for Batch {
    fn drop(&mut self) {
        if !self.settled.swap(true, Ordering::AcqRel) {
            for Owner { ack, n, .. } in &self.owners {
                ack.failed(
                    *n,
                    "a batch was dropped before the intake accepted it (shutdown or an aborted request)",
                );
            }
        }
    }
}

impl Batch {
    /// An empty batch with room for `bytes` of events and `events` events.
    pub fn with_capacity(bytes: usize, events: usize) -> Self {
        let mut batch = Batch::default();
        batch.events = BatchEvents::with_capacity(bytes, events);
        batch
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Estimated request body size (before compression).
    pub fn body_bytes(&self) -> usize {
        self.body_bytes
    }

    /// Serialized size of the events not yet taken.
    pub fn data_bytes(&self) -> usize {
        self.events.data_bytes()
    }

    /// The events not yet taken.
    #[cfg(test)]
    pub fn events(&self) -> &BatchEvents {
        &self.events
    }

    /// Hands the events to the sender; the batch keeps their owners and count.
    pub fn take_events(&mut self) -> BatchEvents {
        std::mem::take(&mut self.events)
    }

    /// Adds an event whose position in its object is not tracked (tests).
    #[cfg(test)]
    pub fn push(&mut self, event: &[u8], body_cost: usize, ack: &Arc<ObjectAck>) {
        self.push_numbered(event, body_cost, ack, None);
    }

    /// Adds event number `seq` of its object (the batcher): once settled, it moves
    /// the object's watermark.
    pub fn push_numbered(
        &mut self,
        event: &[u8],
        body_cost: usize,
        ack: &Arc<ObjectAck>,
        seq: Option<u64>,
    ) {
        self.events.push(event);
        self.len += 1;
        self.body_bytes += body_cost;
        match self.owners.last_mut() {
            Some(owner)
                if Arc::ptr_eq(&owner.ack, ack)
                    && owner.first.zip(seq).is_none_or(|(f, s)| f + owner.n == s) =>
            {
                owner.n += 1
            }
            _ => self.owners.push(Owner {
                ack: Arc::clone(ack),
                n: 1,
                first: seq,
            }),
        }
    }

    /// The objects with events in this batch (their labels, e.g. `s3://bucket/key`).
    pub fn object_labels(&self) -> Vec<String> {
        self.owners
            .iter()
            .map(|Owner { ack, .. }| ack.label().unwrap_or("(unnamed object)").to_owned())
            .collect()
    }

    /// Every event was accepted. Only the first settlement counts.
    pub fn acknowledge(&self) {
        if self.settled.swap(true, Ordering::AcqRel) {
            return;
        }
        for owner in &self.owners {
            owner.delivered();
        }
    }

    /// Delivery failed: `failed` lists the event indices that will never be delivered
    /// (`None`: all of them); the others were accepted.
    pub fn settle_failure(&self, failed: Option<&[usize]>, reason: &str) {
        if self.settled.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(failed) = failed else {
            for Owner { ack, n, .. } in &self.owners {
                ack.failed(*n, reason);
            }
            return;
        };
        let mut failed: Vec<usize> = failed.to_vec();
        failed.sort_unstable();
        failed.dedup();
        let mut next_failed = failed.iter().peekable();
        let mut start = 0usize;
        for owner in &self.owners {
            let end = start + owner.n as usize;
            let mut bad = 0u64;
            // Start of the current run of settled events (batch index), for the
            // watermark: failed events leave gaps it never crosses.
            let mut good_from = start;
            while let Some(&&i) = next_failed.peek() {
                if i >= end {
                    break;
                }
                if i >= start {
                    bad += 1;
                    owner.completed_indices(start, good_from, i);
                    good_from = i + 1;
                }
                next_failed.next();
            }
            owner.completed_indices(start, good_from, end);
            if bad > 0 {
                owner.ack.failed(bad, reason);
            }
            if owner.n > bad {
                owner.ack.delivered(owner.n - bad);
            }
            start = end;
        }
    }
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Why a batch was not (completely) delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    /// Indices of the events that failed; `None`: the whole batch.
    pub failed: Option<Vec<usize>>,
    pub reason: String,
}

/// Held by a sender while it keeps a batch's events as they are, dropped once it let
/// them go (the intake client: once the compressed request body is built).
///
/// The batcher hands a batch over only while no other one is kept so: what is held
/// uncompressed is the open batch and one more being encoded, whatever
/// `max_concurrent_requests`. (A heap count of the daemon at a large object's peak
/// found three and four 4 MB batches alive: the open one and those whose bodies were
/// still being built while the batcher filled the next.)
#[derive(Debug)]
pub struct PlainPermit {
    _permit: Option<OwnedSemaphorePermit>,
}

impl PlainPermit {
    /// A permit that holds nothing back (tests, stand-in batches).
    pub fn unbounded() -> Self {
        PlainPermit { _permit: None }
    }
}

/// Sends batches somewhere (the intake client, or a test double).
pub trait BatchSender: Send + Sync + 'static {
    /// How many request body bytes `event` adds (for `batch.max_bytes`).
    fn body_cost(&self, event: &[u8]) -> usize;
    /// The largest request body the receiver takes; `batch.max_bytes` is capped to it.
    fn max_body_bytes(&self) -> usize {
        usize::MAX
    }
    /// A replacement for `event` when it is too large to be sent as is (truncated);
    /// `None`: send it unchanged (the sender deals with events that still do not fit).
    fn fit(&self, _event: &[u8]) -> Option<Vec<u8>> {
        None
    }
    /// Delivers a batch's events, retrying as it sees fit; returns when done for good.
    /// The events are the sender's: it lets their bytes go once it no longer needs
    /// them (the intake client keeps only the compressed request body), and drops
    /// `plain` then.
    fn send(
        &self,
        events: BatchEvents,
        plain: PlainPermit,
    ) -> impl Future<Output = Result<(), DeliveryFailure>> + Send;
}

/// Limits of the batcher.
#[derive(Debug, Clone)]
pub struct BatcherLimits {
    pub max_events: usize,
    pub max_bytes: usize,
    pub linger: Duration,
    pub max_concurrent: usize,
}

impl BatcherLimits {
    pub fn new(settings: &BatchSettings, max_concurrent: usize) -> Self {
        BatcherLimits {
            max_events: settings.max_events.max(1),
            max_bytes: settings.max_bytes.max(1),
            linger: Duration::from_millis(settings.linger_ms),
            max_concurrent: max_concurrent.max(1),
        }
    }
}

/// Runs until the channel closes (all parsers gone: flushes, waits for the requests in
/// flight, returns) or `abort` is cancelled (drops everything unsent: the messages
/// stay in SQS and are redelivered).
pub async fn run_batcher<S: BatchSender>(
    mut rx: mpsc::Receiver<EventChunk>,
    limits: BatcherLimits,
    sender: Arc<S>,
    abort: CancellationToken,
) {
    let max_bytes = limits.max_bytes.min(sender.max_body_bytes()).max(1);
    let slots = Slots {
        requests: Arc::new(Semaphore::new(limits.max_concurrent)),
        plain: Arc::new(Semaphore::new(PLAIN_BATCHES)),
    };
    let mut requests = JoinSet::new();
    let mut batch = Batch::default();
    let mut deadline: Option<Instant> = None;
    loop {
        while requests.try_join_next().is_some() {}
        let linger = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = abort.cancelled() => {
                requests.abort_all();
                return;
            }
            _ = linger => {
                deadline = None;
                if !flush(&mut batch, &slots, &mut requests, &sender, &abort).await {
                    requests.abort_all();
                    return;
                }
            }
            chunk = rx.recv() => {
                let Some(mut chunk) = chunk else { break };
                for (i, event) in chunk.events().enumerate() {
                    let fitted = sender.fit(event);
                    let event = fitted.as_deref().unwrap_or(event);
                    let cost = sender.body_cost(event);
                    let full = batch.len() + 1 > limits.max_events
                        || batch.body_bytes() + cost > max_bytes;
                    if full && !batch.is_empty() {
                        deadline = None;
                        if !flush(&mut batch, &slots, &mut requests, &sender, &abort).await {
                            requests.abort_all();
                            return;
                        }
                    }
                    // An event larger than max_bytes alone still goes, in a batch of
                    // its own: dropping it would lose data.
                    batch.push_numbered(event, cost, &chunk.ack, Some(chunk.first_seq + i as u64));
                    if batch.len() == 1 {
                        deadline = Some(Instant::now() + limits.linger);
                    }
                }
                chunk.handed_over();
                let nothing_follows = chunk.ends_object && rx.is_empty();
                if batch.len() >= limits.max_events
                    || batch.body_bytes() >= max_bytes
                    || nothing_follows
                {
                    deadline = None;
                    if !flush(&mut batch, &slots, &mut requests, &sender, &abort).await {
                        requests.abort_all();
                        return;
                    }
                }
            }
        }
    }
    // Channel closed: send what is left and wait for every request.
    if !flush(&mut batch, &slots, &mut requests, &sender, &abort).await {
        requests.abort_all();
        return;
    }
    loop {
        tokio::select! {
            biased;
            _ = abort.cancelled() => {
                requests.abort_all();
                return;
            }
            done = requests.join_next() => {
                if done.is_none() {
                    return;
                }
            }
        }
    }
}

/// Batches handed over whose events their sender still keeps as they are (see
/// [`PlainPermit`]).
const PLAIN_BATCHES: usize = 1;

/// What a batch waits for before it is handed over.
struct Slots {
    /// `max_concurrent` requests.
    requests: Arc<Semaphore>,
    /// [`PLAIN_BATCHES`] batches whose sender still keeps their events as they are.
    plain: Arc<Semaphore>,
}

impl Slots {
    /// A request slot, then the plain one; `None` when aborted.
    async fn acquire(
        &self,
        abort: &CancellationToken,
    ) -> Option<(OwnedSemaphorePermit, PlainPermit)> {
        let one = |semaphore: &Arc<Semaphore>| {
            let semaphore = Arc::clone(semaphore);
            async move {
                tokio::select! {
                    biased;
                    _ = abort.cancelled() => None,
                    p = semaphore.acquire_owned() => p.ok(),
                }
            }
        };
        let request = one(&self.requests).await?;
        let plain = one(&self.plain).await?;
        Some((
            request,
            PlainPermit {
                _permit: Some(plain),
            },
        ))
    }
}

/// Starts sending the open batch (waiting for a request slot, and for the batch
/// handed over before to be encoded). False when aborted.
async fn flush<S: BatchSender>(
    batch: &mut Batch,
    slots: &Slots,
    requests: &mut JoinSet<()>,
    sender: &Arc<S>,
    abort: &CancellationToken,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    let Some((permit, plain)) = slots.acquire(abort).await else {
        return false;
    };
    // The next batch starts with the room this one took, and an eighth more: a run of
    // full batches is filled without regrowing (doubling from empty copied every 4 MB
    // body about once more on the way), and a batch a few events longer than the one
    // before does not double its buffer (a heap profile of a large object found 16 MB
    // of the 56 MB peak in batches regrown so).
    let room = batch.data_bytes().saturating_add(batch.data_bytes() / 8);
    let next = Batch::with_capacity(room, batch.len() + batch.len() / 8);
    let mut batch = std::mem::replace(batch, next);
    let events = batch.take_events();
    metrics::histogram!(m::BATCH_EVENTS).record(batch.len() as f64);
    metrics::histogram!(m::BATCH_BYTES).record(batch.body_bytes() as f64);
    let sender = Arc::clone(sender);
    requests.spawn(async move {
        let _permit = permit;
        // A panic in the sender must not leave the batch's objects waiting: catch it,
        // log it once, and fail them so their messages are redelivered at once.
        let sent = AssertUnwindSafe(sender.send(events, plain))
            .catch_unwind()
            .await;
        match sent {
            Ok(Ok(())) => {
                metrics::counter!(m::EVENTS_DELIVERED).increment(batch.len() as u64);
                batch.acknowledge();
            }
            Ok(Err(failure)) => {
                let failed = failure.failed.as_ref().map_or(batch.len(), Vec::len);
                metrics::counter!(m::EVENTS_DELIVERED)
                    .increment((batch.len() - failed.min(batch.len())) as u64);
                metrics::counter!(m::EVENTS_FAILED).increment(failed as u64);
                batch.settle_failure(failure.failed.as_deref(), &failure.reason);
            }
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                let objects: Vec<String> = batch.object_labels();
                tracing::error!(
                    events = batch.len(),
                    objects = ?objects,
                    "delivering a batch panicked: {message}; its objects are released for redelivery"
                );
                metrics::counter!(m::EVENTS_FAILED).increment(batch.len() as u64);
                batch.settle_failure(None, &format!("delivering a batch panicked: {message}"));
            }
        }
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records batches; fails those containing an event equal to `fail_on`.
    #[derive(Default)]
    struct Recorder {
        batches: Mutex<Vec<Vec<String>>>,
        fail_on: Option<&'static str>,
    }

    impl BatchSender for Recorder {
        fn body_cost(&self, event: &[u8]) -> usize {
            event.len() + 1
        }
        async fn send(
            &self,
            events: BatchEvents,
            _plain: PlainPermit,
        ) -> Result<(), DeliveryFailure> {
            let events: Vec<String> = events
                .iter()
                .map(|e| String::from_utf8_lossy(e).into_owned())
                .collect();
            let fail = self.fail_on.is_some_and(|f| events.iter().any(|e| e == f));
            if let Ok(mut b) = self.batches.lock() {
                b.push(events);
            }
            if fail {
                Err(DeliveryFailure {
                    failed: None,
                    reason: "rejected".into(),
                })
            } else {
                Ok(())
            }
        }
    }

    fn chunk(ack: &Arc<ObjectAck>, events: &[&str]) -> EventChunk {
        let mut c = EventChunk::new(Arc::clone(ack), 64, events.len());
        for e in events {
            c.push_with(|out| out.extend_from_slice(e.as_bytes()));
        }
        ack.add_pending(events.len() as u64);
        c
    }

    fn limits(max_events: usize, max_bytes: usize, linger_ms: u64) -> BatcherLimits {
        BatcherLimits {
            max_events,
            max_bytes,
            linger: Duration::from_millis(linger_ms),
            max_concurrent: 2,
        }
    }

    async fn run(
        limits: BatcherLimits,
        sender: Recorder,
        chunks: Vec<EventChunk>,
    ) -> Vec<Vec<String>> {
        let (tx, rx) = mpsc::channel(16);
        let sender = Arc::new(sender);
        let task = tokio::spawn(run_batcher(
            rx,
            limits,
            Arc::clone(&sender),
            CancellationToken::new(),
        ));
        for c in chunks {
            tx.send(c).await.unwrap();
        }
        drop(tx);
        task.await.unwrap();
        sender.batches.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn splits_on_max_events_across_chunks_and_objects() {
        let a = Arc::new(ObjectAck::new());
        let b = Arc::new(ObjectAck::new());
        let batches = run(
            limits(3, 1_000_000, 60_000),
            Recorder::default(),
            vec![
                chunk(&a, &["a1", "a2"]),
                chunk(&b, &["b1", "b2", "b3", "b4"]),
            ],
        )
        .await;
        assert_eq!(
            batches,
            vec![vec!["a1", "a2", "b1"], vec!["b2", "b3", "b4"]]
        );
        assert_eq!(a.settled().await, Ok(()));
        assert_eq!(b.settled().await, Ok(()));
        assert_eq!(b.pending(), 0);
    }

    #[tokio::test]
    async fn splits_on_max_bytes_and_sends_oversized_events_alone() {
        let a = Arc::new(ObjectAck::new());
        // cost = len + 1: "xxxx" costs 5; max 10 holds two.
        let batches = run(
            limits(100, 10, 60_000),
            Recorder::default(),
            vec![chunk(
                &a,
                &["xxxx", "yyyy", "zzzz", "a-very-long-event", "w"],
            )],
        )
        .await;
        assert_eq!(
            batches,
            vec![
                vec!["xxxx", "yyyy"],
                vec!["zzzz"],
                vec!["a-very-long-event"],
                vec!["w"]
            ]
        );
        assert_eq!(a.settled().await, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn linger_flushes_a_partial_batch() {
        let (tx, rx) = mpsc::channel(4);
        let sender = Arc::new(Recorder::default());
        let task = tokio::spawn(run_batcher(
            rx,
            limits(100, 1_000_000, 500),
            Arc::clone(&sender),
            CancellationToken::new(),
        ));
        let a = Arc::new(ObjectAck::new());
        tx.send(chunk(&a, &["e1"])).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            sender.batches.lock().unwrap().is_empty(),
            "flushed before linger"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            *sender.batches.lock().unwrap(),
            vec![vec!["e1".to_string()]]
        );
        assert_eq!(a.settled().await, Ok(()));
        // The channel is still open: the batcher keeps running.
        assert!(!task.is_finished());
        drop(tx);
        task.await.unwrap();
    }

    /// The last chunk of an object with nothing queued behind it is sent at once; the
    /// end of an object with more chunks queued (another object's) waits for them.
    #[tokio::test(start_paused = true)]
    async fn the_end_of_an_object_is_sent_without_lingering_when_nothing_follows() {
        let (tx, rx) = mpsc::channel(4);
        let sender = Arc::new(Recorder::default());
        let task = tokio::spawn(run_batcher(
            rx,
            limits(100, 1_000_000, 60_000),
            Arc::clone(&sender),
            CancellationToken::new(),
        ));
        let (a, b) = (Arc::new(ObjectAck::new()), Arc::new(ObjectAck::new()));
        let mut a_end = chunk(&a, &["a1"]);
        a_end.ends_object = true;
        // Queued together: a's end is followed by b's chunk, so both share a batch.
        tx.send(a_end).await.unwrap();
        tx.send(chunk(&b, &["b1"])).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(sender.batches.lock().unwrap().is_empty(), "sent early");
        let mut b_end = chunk(&b, &[]);
        b_end.ends_object = true;
        tx.send(b_end).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            *sender.batches.lock().unwrap(),
            vec![vec!["a1".to_string(), "b1".to_string()]]
        );
        assert_eq!(a.settled().await, Ok(()));
        assert_eq!(b.settled().await, Ok(()));
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_batch_fails_only_its_objects() {
        let a = Arc::new(ObjectAck::new());
        let b = Arc::new(ObjectAck::new());
        let sender = Recorder {
            fail_on: Some("bad"),
            ..Default::default()
        };
        run(
            limits(2, 1_000_000, 60_000),
            sender,
            vec![chunk(&a, &["a1", "a2"]), chunk(&b, &["bad", "b2"])],
        )
        .await;
        assert_eq!(a.settled().await, Ok(()));
        assert_eq!(b.settled().await, Err("rejected".to_owned()));
    }

    #[tokio::test]
    async fn partial_failure_settles_per_event() {
        let a = Arc::new(ObjectAck::new());
        let b = Arc::new(ObjectAck::new());
        a.add_pending(2);
        b.add_pending(2);
        let mut batch = Batch::default();
        for (e, ack) in [("a1", &a), ("a2", &a), ("b1", &b), ("b2", &b)] {
            batch.push(e.as_bytes(), 3, ack);
        }
        assert_eq!(batch.body_bytes(), 12);
        assert_eq!(batch.events().event(2), b"b1");
        batch.settle_failure(Some(&[3]), "mapper_parsing_exception");
        assert_eq!(a.settled().await, Ok(()));
        assert_eq!(
            b.settled().await,
            Err("mapper_parsing_exception".to_owned())
        );
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn settled_events_move_the_watermark_up_to_the_first_failed_one() {
        let a = Arc::new(ObjectAck::new());
        a.add_pending(6);
        // Events 3..6 of the object settle first, in a later batch.
        let mut later = Batch::default();
        for (i, e) in ["a3", "a4", "a5"].iter().enumerate() {
            later.push_numbered(e.as_bytes(), 3, &a, Some(3 + i as u64));
        }
        later.acknowledge();
        assert_eq!(a.watermark(), 0, "events 0..3 are still in flight");
        let mut first = Batch::default();
        for (i, e) in ["a0", "a1", "a2"].iter().enumerate() {
            first.push_numbered(e.as_bytes(), 3, &a, Some(i as u64));
        }
        // Event a1 fails: the watermark stops before it.
        first.settle_failure(Some(&[1]), "rejected");
        assert_eq!(a.watermark(), 1);

        let b = Arc::new(ObjectAck::new());
        b.add_pending(3);
        let mut all = Batch::default();
        for (i, e) in ["b0", "b1", "b2"].iter().enumerate() {
            all.push_numbered(e.as_bytes(), 3, &b, Some(i as u64));
        }
        all.settle_failure(Some(&[]), "nothing failed");
        assert_eq!(b.watermark(), 3);
    }

    #[tokio::test]
    async fn the_batcher_numbers_events_from_the_chunks_first_seq() {
        let a = Arc::new(ObjectAck::resuming(
            "s3://b/k",
            &crate::ack::Settled::up_to(100),
        ));
        let mut second = chunk(&a, &["e102", "e103"]);
        second.first_seq = 102;
        let mut first = chunk(&a, &["e100", "e101"]);
        first.first_seq = 100;
        run(
            limits(3, 1_000_000, 60_000),
            Recorder::default(),
            vec![first, second],
        )
        .await;
        assert_eq!(a.settled().await, Ok(()));
        assert_eq!(a.watermark(), 104);
    }

    #[tokio::test]
    async fn abort_fails_the_events_it_drops_so_their_objects_are_released() {
        let (tx, rx) = mpsc::channel(4);
        let abort = CancellationToken::new();
        let sender = Arc::new(Recorder::default());
        let task = tokio::spawn(run_batcher(
            rx,
            limits(100, 1_000_000, 60_000),
            Arc::clone(&sender),
            abort.clone(),
        ));
        let a = Arc::new(ObjectAck::new());
        tx.send(chunk(&a, &["e1"])).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        abort.cancel();
        task.await.unwrap();
        assert!(sender.batches.lock().unwrap().is_empty());
        // Not left pending (the message would stay invisible until a restart): failed.
        assert_eq!(a.pending(), 0);
        assert!(
            a.settled().await.unwrap_err().contains("dropped"),
            "{:?}",
            a.failure()
        );
    }

    /// A sender that panics on every batch, as a bug in the delivery path would.
    struct Panicking;

    impl BatchSender for Panicking {
        fn body_cost(&self, event: &[u8]) -> usize {
            event.len()
        }
        async fn send(
            &self,
            events: BatchEvents,
            _plain: PlainPermit,
        ) -> Result<(), DeliveryFailure> {
            // The old Elasticsearch error path's bug: cutting a string inside a char.
            let mut text = String::from_utf8_lossy(events.event(0)).into_owned();
            text.truncate(1);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_panicking_sender_fails_the_objects_at_once() {
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(run_batcher(
            rx,
            limits(1, 1_000_000, 60_000),
            Arc::new(Panicking),
            CancellationToken::new(),
        ));
        let a = Arc::new(ObjectAck::for_object("s3://bucket/key.gz"));
        tx.send(chunk(&a, &["\u{e9}t\u{e9}"])).await.unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(5), a.settled())
            .await
            .expect("the acknowledgement settles instead of hanging");
        let reason = outcome.unwrap_err();
        assert!(reason.contains("panicked"), "{reason}");
        assert!(reason.contains("is_char_boundary"), "{reason}");
        // The batcher survives the panic and delivers the next batch.
        let b = Arc::new(ObjectAck::new());
        tx.send(chunk(&b, &["x"])).await.unwrap();
        assert_eq!(b.settled().await, Ok(()));
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn dropped_chunks_and_batches_fail_their_objects() {
        let a = Arc::new(ObjectAck::new());
        drop(chunk(&a, &["e1", "e2"]));
        assert_eq!(a.pending(), 0);
        assert!(a.settled().await.is_err());

        let b = Arc::new(ObjectAck::new());
        let mut handed = chunk(&b, &["e1"]);
        handed.handed_over();
        drop(handed);
        assert_eq!(b.pending(), 1, "a handed-over chunk answers for nothing");

        let mut batch = Batch::default();
        batch.push(b"e1", 2, &b);
        drop(batch);
        assert!(b.settled().await.is_err());

        let c = Arc::new(ObjectAck::new());
        c.add_pending(1);
        let mut batch = Batch::default();
        batch.push(b"e1", 2, &c);
        batch.acknowledge();
        drop(batch);
        assert_eq!(c.settled().await, Ok(()), "settled batches fail nothing");
    }

    #[test]
    fn a_given_buffer_is_taken_again_cleared_and_only_so_many_are_kept() {
        let pool = BufferPool::new(2);
        let mut first = pool.take(1000);
        assert!(first.capacity() >= 1000);
        first.extend_from_slice(b"events");
        let pages = first.as_ptr();
        pool.give(first);
        let again = pool.take(10);
        assert_eq!(again.as_ptr(), pages, "the same memory");
        assert!(again.is_empty() && again.capacity() >= 1000);
        let larger = pool.take(4000);
        assert!(
            larger.capacity() >= 4000,
            "a buffer is grown to the room asked"
        );
        for _ in 0..3 {
            pool.give(vec![0; 16]);
        }
        pool.give(Vec::new());
        assert_eq!(
            pool.kept(),
            2,
            "two kept, the third and the empty one freed"
        );
        drop((again, larger));
    }

    /// Keeps each batch's permit until the test lets it go, as a sender still
    /// encoding its body would.
    #[derive(Default)]
    struct Keeping {
        kept: Mutex<Vec<PlainPermit>>,
        handed: std::sync::atomic::AtomicUsize,
    }

    impl BatchSender for Keeping {
        fn body_cost(&self, event: &[u8]) -> usize {
            event.len()
        }
        async fn send(
            &self,
            _events: BatchEvents,
            plain: PlainPermit,
        ) -> Result<(), DeliveryFailure> {
            self.handed.fetch_add(1, Ordering::SeqCst);
            self.kept.lock().unwrap().push(plain);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_batch_is_handed_over_only_when_the_one_before_is_no_longer_kept_plain() {
        let (tx, rx) = mpsc::channel(8);
        let sender = Arc::new(Keeping::default());
        // Four requests may be in flight, one event per batch.
        let task = tokio::spawn(run_batcher(
            rx,
            BatcherLimits {
                max_concurrent: 4,
                ..limits(1, 1_000_000, 60_000)
            },
            Arc::clone(&sender),
            CancellationToken::new(),
        ));
        let a = Arc::new(ObjectAck::new());
        tx.send(chunk(&a, &["e1", "e2", "e3"])).await.unwrap();
        let handed = || sender.handed.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(handed(), 1, "the second batch waits for the first's permit");
        for expected in [2, 3] {
            sender.kept.lock().unwrap().clear();
            tokio::time::timeout(Duration::from_secs(5), async {
                while handed() < expected {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await
            .expect("the next batch is handed over once the permit is let go");
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(handed(), expected);
        }
        sender.kept.lock().unwrap().clear();
        drop(tx);
        task.await.unwrap();
        assert_eq!(a.settled().await, Ok(()));
    }

    /// Cuts `event` to its first 3 bytes when it is longer: stands for truncation.
    struct Fitting;

    impl BatchSender for Fitting {
        fn body_cost(&self, event: &[u8]) -> usize {
            event.len()
        }
        fn max_body_bytes(&self) -> usize {
            6
        }
        fn fit(&self, event: &[u8]) -> Option<Vec<u8>> {
            (event.len() > 3).then(|| event[..3].to_vec())
        }
        async fn send(
            &self,
            events: BatchEvents,
            _plain: PlainPermit,
        ) -> Result<(), DeliveryFailure> {
            let events: Vec<&[u8]> = events.iter().collect();
            // Two 3-byte events at most: max_body_bytes caps batch.max_bytes.
            assert!(events.len() <= 2, "{events:?}");
            assert!(events.iter().all(|e| e.len() <= 3));
            Ok(())
        }
    }

    #[tokio::test]
    async fn fitted_events_and_the_body_limit_are_honoured() {
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(run_batcher(
            rx,
            limits(100, 1_000_000, 60_000),
            Arc::new(Fitting),
            CancellationToken::new(),
        ));
        let a = Arc::new(ObjectAck::new());
        tx.send(chunk(&a, &["abcdef", "ghijkl", "mno", "p"]))
            .await
            .unwrap();
        drop(tx);
        task.await.unwrap();
        assert_eq!(a.settled().await, Ok(()));
    }
}
