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
//! open batch, and at most `max_concurrent` batches are in flight; when all of that is
//! full, the parsers block in `blocking_send` and stop reading their S3 streams.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ack::ObjectAck;
use crate::config::BatchSettings;
use crate::metrics as m;

/// Serialized events of one object, in order.
#[derive(Debug)]
pub struct EventChunk {
    /// The events' JSON, concatenated.
    pub data: Vec<u8>,
    /// End offset of each event in `data`.
    pub ends: Vec<usize>,
    pub ack: Arc<ObjectAck>,
}

impl EventChunk {
    pub fn new(ack: Arc<ObjectAck>, capacity_bytes: usize, capacity_events: usize) -> Self {
        EventChunk {
            data: Vec::with_capacity(capacity_bytes),
            ends: Vec::with_capacity(capacity_events),
            ack,
        }
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

/// A batch of serialized events and the objects they belong to.
#[derive(Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    ends: Vec<usize>,
    /// Run-length owners: `(ack, n)` owns the next `n` events.
    owners: Vec<(Arc<ObjectAck>, u64)>,
    /// Body bytes as the sender will encode them.
    body_bytes: usize,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Estimated request body size (before compression).
    pub fn body_bytes(&self) -> usize {
        self.body_bytes
    }

    /// Serialized size of the events alone.
    pub fn data_bytes(&self) -> usize {
        self.data.len()
    }

    /// The `i`-th event's JSON.
    pub fn event(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }

    pub fn events(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|i| self.event(i))
    }

    /// Adds an event (testing and the batcher).
    pub fn push(&mut self, event: &[u8], body_cost: usize, ack: &Arc<ObjectAck>) {
        self.data.extend_from_slice(event);
        self.ends.push(self.data.len());
        self.body_bytes += body_cost;
        match self.owners.last_mut() {
            Some((owner, n)) if Arc::ptr_eq(owner, ack) => *n += 1,
            _ => self.owners.push((Arc::clone(ack), 1)),
        }
    }

    /// Every event was accepted.
    pub fn acknowledge(&self) {
        for (ack, n) in &self.owners {
            ack.delivered(*n);
        }
    }

    /// Delivery failed: `failed` lists the event indices that will never be delivered
    /// (`None`: all of them); the others were accepted.
    pub fn settle_failure(&self, failed: Option<&[usize]>, reason: &str) {
        let Some(failed) = failed else {
            for (ack, n) in &self.owners {
                ack.failed(*n, reason);
            }
            return;
        };
        let mut failed: Vec<usize> = failed.to_vec();
        failed.sort_unstable();
        failed.dedup();
        let mut next_failed = failed.iter().peekable();
        let mut start = 0usize;
        for (ack, n) in &self.owners {
            let end = start + *n as usize;
            let mut bad = 0u64;
            while let Some(&&i) = next_failed.peek() {
                if i >= end {
                    break;
                }
                if i >= start {
                    bad += 1;
                }
                next_failed.next();
            }
            if bad > 0 {
                ack.failed(bad, reason);
            }
            if *n > bad {
                ack.delivered(*n - bad);
            }
            start = end;
        }
    }
}

/// Why a batch was not (completely) delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    /// Indices of the events that failed; `None`: the whole batch.
    pub failed: Option<Vec<usize>>,
    pub reason: String,
}

/// Sends batches somewhere (the intake client, or a test double).
pub trait BatchSender: Send + Sync + 'static {
    /// How many request body bytes `event` adds (for `batch.max_bytes`).
    fn body_cost(&self, event: &[u8]) -> usize;
    /// Delivers the batch, retrying as it sees fit; returns when done for good.
    fn send(&self, batch: Arc<Batch>) -> impl Future<Output = Result<(), DeliveryFailure>> + Send;
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
    let permits = Arc::new(Semaphore::new(limits.max_concurrent));
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
                if !flush(&mut batch, &permits, &mut requests, &sender, &abort).await {
                    requests.abort_all();
                    return;
                }
            }
            chunk = rx.recv() => {
                let Some(chunk) = chunk else { break };
                for event in chunk.events() {
                    let cost = sender.body_cost(event);
                    let full = batch.len() + 1 > limits.max_events
                        || batch.body_bytes() + cost > limits.max_bytes;
                    if full && !batch.is_empty() {
                        deadline = None;
                        if !flush(&mut batch, &permits, &mut requests, &sender, &abort).await {
                            requests.abort_all();
                            return;
                        }
                    }
                    // An event larger than max_bytes alone still goes, in a batch of
                    // its own: dropping it would lose data.
                    batch.push(event, cost, &chunk.ack);
                    if batch.len() == 1 {
                        deadline = Some(Instant::now() + limits.linger);
                    }
                }
                if batch.len() >= limits.max_events || batch.body_bytes() >= limits.max_bytes {
                    deadline = None;
                    if !flush(&mut batch, &permits, &mut requests, &sender, &abort).await {
                        requests.abort_all();
                        return;
                    }
                }
            }
        }
    }
    // Channel closed: send what is left and wait for every request.
    if !flush(&mut batch, &permits, &mut requests, &sender, &abort).await {
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

/// Starts sending the open batch (waiting for a request slot). False when aborted.
async fn flush<S: BatchSender>(
    batch: &mut Batch,
    permits: &Arc<Semaphore>,
    requests: &mut JoinSet<()>,
    sender: &Arc<S>,
    abort: &CancellationToken,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    let permit = tokio::select! {
        biased;
        _ = abort.cancelled() => return false,
        p = Arc::clone(permits).acquire_owned() => match p {
            Ok(p) => p,
            Err(_) => return false,
        },
    };
    let batch = Arc::new(std::mem::take(batch));
    metrics::histogram!(m::BATCH_EVENTS).record(batch.len() as f64);
    metrics::histogram!(m::BATCH_BYTES).record(batch.body_bytes() as f64);
    let sender = Arc::clone(sender);
    requests.spawn(async move {
        let _permit = permit;
        match sender.send(Arc::clone(&batch)).await {
            Ok(()) => {
                metrics::counter!(m::EVENTS_DELIVERED).increment(batch.len() as u64);
                batch.acknowledge();
            }
            Err(failure) => {
                let failed = failure.failed.as_ref().map_or(batch.len(), Vec::len);
                metrics::counter!(m::EVENTS_DELIVERED)
                    .increment((batch.len() - failed.min(batch.len())) as u64);
                metrics::counter!(m::EVENTS_FAILED).increment(failed as u64);
                batch.settle_failure(failure.failed.as_deref(), &failure.reason);
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
        async fn send(&self, batch: Arc<Batch>) -> Result<(), DeliveryFailure> {
            let events: Vec<String> = batch
                .events()
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
        assert_eq!(batch.event(2), b"b1");
        batch.settle_failure(Some(&[3]), "mapper_parsing_exception");
        assert_eq!(a.settled().await, Ok(()));
        assert_eq!(
            b.settled().await,
            Err("mapper_parsing_exception".to_owned())
        );
        assert_eq!(b.pending(), 0);
    }

    #[tokio::test]
    async fn abort_drops_pending_events_without_acknowledging() {
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
        assert_eq!(a.pending(), 1);
    }
}
