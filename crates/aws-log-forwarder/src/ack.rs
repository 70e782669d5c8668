//! End-to-end acknowledgements: an object counts as delivered only when the intake
//! accepted every one of its events (or the ones it refused on their own are in the
//! dead-letter sink).
//!
//! Same idea as Vector's `BatchNotifier`: every event handed to the batcher carries the
//! [`ObjectAck`] of its object. The parser adds to the pending count before sending
//! events; the batcher subtracts when the intake accepts a batch, or marks the object
//! failed when events cannot be delivered (the dead-letter sink failed, a chunk or
//! batch was dropped undelivered, a panic). An intake outage fails nothing: the
//! batch waits. The message is deleted from SQS only after all of its objects
//! settled successfully.
//!
//! Beside the count, an acknowledgement keeps the object's *watermark*: how many of its
//! events, counted from the first, are settled (delivered or dead-lettered) without a
//! gap. Batches complete out of order, so each settled run of events is remembered
//! until the runs before it are settled too. The watermark and those runs ([`Settled`])
//! are what a checkpoint records (see `checkpoint`): a redelivered object skips them,
//! so a batch stuck in retries does not make the batches delivered after it count
//! for nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use tokio::sync::Notify;

/// Delivery state of one object's events.
#[derive(Debug, Default)]
pub struct ObjectAck {
    pending: AtomicU64,
    /// First failure reason; set once, never cleared.
    failure: Mutex<Option<String>>,
    /// `failure` is set (cheap to poll from the parser).
    has_failed: AtomicBool,
    changed: Notify,
    /// What the object is (`s3://bucket/key`), for logs about its events.
    label: OnceLock<String>,
    progress: Mutex<Watermark>,
}

/// Events settled contiguously from the start of an object, out-of-order completions
/// held until the gap before them closes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Watermark {
    /// Events `0..reached` are settled.
    reached: u64,
    /// Settled runs after a gap: start -> end (exclusive).
    ahead: BTreeMap<u64, u64>,
}

/// The events of an object known to be settled: `0..reached`, and the runs
/// `start..end` after gaps (sorted, disjoint, all beyond `reached`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Settled {
    pub reached: u64,
    pub ahead: Vec<(u64, u64)>,
}

impl Settled {
    /// Settled events `0..reached` and nothing beyond.
    pub fn up_to(reached: u64) -> Self {
        Settled {
            reached,
            ahead: Vec::new(),
        }
    }

    /// How many events are settled.
    pub fn count(&self) -> u64 {
        self.ahead
            .iter()
            .fold(self.reached, |n, (s, e)| n.saturating_add(e - s))
    }

    /// Drops runs that are empty, overlap, are out of order or lie below `reached`
    /// (a hand-edited or garbled checkpoint must never make an event skipped that
    /// was not settled; dropping a run only means duplicates).
    pub fn sanitized(mut self) -> Self {
        let mut floor = self.reached;
        self.ahead.retain(|&(s, e)| {
            // Runs may touch (`s == floor`): a run is saved as it was delivered.
            let keep = s >= floor && e > s;
            if keep {
                floor = e;
            }
            keep
        });
        self
    }

    /// Whether event `n` is settled. `cursor` remembers the run reached, for callers
    /// asking in increasing `n` (a parser walking an object).
    pub fn contains(&self, n: u64, cursor: &mut usize) -> bool {
        if n < self.reached {
            return true;
        }
        while let Some(&(_, end)) = self.ahead.get(*cursor) {
            if n < end {
                break;
            }
            *cursor += 1;
        }
        self.ahead
            .get(*cursor)
            .is_some_and(|&(start, _)| n >= start)
    }
}

impl Watermark {
    /// A watermark that starts with what an earlier attempt settled (the events a
    /// resumed object does not send again).
    pub fn resumed(settled: &Settled) -> Self {
        let mut w = Watermark::default();
        w.complete(0, settled.reached);
        for &(s, e) in &settled.ahead {
            w.complete(s, e);
        }
        w
    }

    /// The events settled, for a checkpoint: the watermark and at most `max_runs` runs
    /// ahead of it (the first ones; runs are bounded by the batches in flight anyway).
    pub fn settled(&self, max_runs: usize) -> Settled {
        Settled {
            reached: self.reached,
            ahead: self
                .ahead
                .iter()
                .take(max_runs)
                .map(|(&s, &e)| (s, e))
                .collect(),
        }
    }

    /// Events `start..end` are settled.
    pub fn complete(&mut self, start: u64, end: u64) {
        if end <= self.reached || start >= end {
            return;
        }
        if start > self.reached {
            // Joined with the runs it touches or overlaps, so the runs stay few (a
            // checkpoint records at most a few hundred).
            let (mut start, mut end) = (start, end);
            if let Some((&s, &e)) = self.ahead.range(..=start).next_back()
                && e >= start
            {
                self.ahead.remove(&s);
                start = s;
                end = end.max(e);
            }
            while let Some((&s, &e)) = self.ahead.range(start..).next() {
                if s > end {
                    break;
                }
                self.ahead.remove(&s);
                end = end.max(e);
            }
            self.ahead.insert(start, end);
            return;
        }
        self.reached = end;
        // Runs that now touch (or overlap) the watermark join it.
        while let Some((&s, &e)) = self.ahead.first_key_value() {
            if s > self.reached {
                break;
            }
            self.ahead.pop_first();
            self.reached = self.reached.max(e);
        }
    }

    /// Events settled without a gap from the start.
    #[cfg(test)]
    pub fn reached(&self) -> u64 {
        self.reached
    }

    /// Settled runs waiting behind a gap (bounded by the batches in flight).
    #[cfg(test)]
    pub fn runs_ahead(&self) -> usize {
        self.ahead.len()
    }
}

impl ObjectAck {
    /// An acknowledgement for no object in particular (tests).
    #[cfg(test)]
    pub fn new() -> Self {
        Self::default()
    }

    /// An acknowledgement for the object `label` (e.g. `s3://bucket/key`), named in
    /// the logs of failures that cannot otherwise tell which object they hit (a
    /// panicking request task).
    pub fn for_object(label: impl Into<String>) -> Self {
        let ack = Self::default();
        let _ = ack.label.set(label.into());
        ack
    }

    /// An acknowledgement for an object resumed from a checkpoint: the events
    /// `skipped` were settled by an earlier attempt and are not sent again.
    pub fn resuming(label: impl Into<String>, skipped: &Settled) -> Self {
        let ack = Self::for_object(label);
        if let Ok(mut progress) = ack.progress.lock() {
            *progress = Watermark::resumed(skipped);
        }
        ack
    }

    /// Events `first..first + n` (numbered from the object's first event) are settled:
    /// delivered, or in the dead-letter sink.
    pub fn completed(&self, first: u64, n: u64) {
        if let Ok(mut progress) = self.progress.lock() {
            progress.complete(first, first.saturating_add(n));
        }
    }

    /// Events settled without a gap from the object's first event.
    #[cfg(test)]
    pub fn watermark(&self) -> u64 {
        self.progress.lock().map_or(0, |p| p.reached())
    }

    /// The events settled so far, with at most `max_runs` runs beyond the watermark.
    pub fn settled_events(&self, max_runs: usize) -> Settled {
        self.progress
            .lock()
            .map_or_else(|_| Settled::default(), |p| p.settled(max_runs))
    }

    pub fn label(&self) -> Option<&str> {
        self.label.get().map(String::as_str)
    }

    /// Subtracts `n` from the pending count, stopping at zero. The same events can be
    /// settled twice on teardown paths (a chunk dropped half-copied into a batch that
    /// is dropped too); the first failure decides the outcome, and the count must not
    /// wrap around.
    fn settle(&self, n: u64) -> u64 {
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(n))
            })
            .unwrap_or_else(|p| p)
    }

    /// `n` more events are on their way to the intake.
    pub fn add_pending(&self, n: u64) {
        self.pending.fetch_add(n, Ordering::AcqRel);
    }

    /// The intake accepted `n` events of this object.
    pub fn delivered(&self, n: u64) {
        let before = self.settle(n);
        if before <= n {
            self.changed.notify_waiters();
        }
    }

    /// `n` events of this object will never be delivered (dropped undelivered, the
    /// dead-letter sink failed, a panic).
    pub fn failed(&self, n: u64, reason: &str) {
        if let Ok(mut slot) = self.failure.lock()
            && slot.is_none()
        {
            *slot = Some(reason.to_owned());
        }
        self.has_failed.store(true, Ordering::Release);
        self.settle(n);
        self.changed.notify_waiters();
    }

    /// Events sent but not yet settled.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Acquire)
    }

    /// Whether some event already failed: the object will be retried whole, so its
    /// parser can stop.
    pub fn has_failed(&self) -> bool {
        self.has_failed.load(Ordering::Acquire)
    }

    /// The first failure, if any.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    fn outcome(&self) -> Option<Result<(), String>> {
        if let Some(reason) = self.failure() {
            return Some(Err(reason));
        }
        (self.pending() == 0).then_some(Ok(()))
    }

    /// Waits until every sent event is delivered (`Ok`) or one failed (`Err` with the
    /// reason; no point waiting for the rest, the object is retried whole). Call once
    /// the parser has finished sending.
    pub async fn settled(&self) -> Result<(), String> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Register before checking, so a notification between the check and the
            // await is not lost.
            notified.as_mut().enable();
            if let Some(outcome) = self.outcome() {
                return outcome;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn settles_when_all_events_are_delivered() {
        let ack = Arc::new(ObjectAck::new());
        ack.add_pending(3);
        let waiter = tokio::spawn({
            let ack = ack.clone();
            async move { ack.settled().await }
        });
        ack.delivered(2);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        ack.delivered(1);
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn a_failure_settles_at_once_with_the_first_reason() {
        let ack = ObjectAck::new();
        ack.add_pending(10);
        ack.failed(2, "400 Bad Request");
        ack.failed(2, "later");
        assert!(ack.has_failed());
        assert_eq!(ack.settled().await, Err("400 Bad Request".to_owned()));
        assert_eq!(ack.pending(), 6);
    }

    /// A watermark after the runs of events `runs` settled, in that order.
    fn watermark(runs: &[(u64, u64)]) -> Watermark {
        let mut w = Watermark::default();
        for &(start, end) in runs {
            w.complete(start, end);
        }
        w
    }

    #[test]
    fn the_watermark_waits_for_the_oldest_run() {
        let mut w = watermark(&[(256, 512), (768, 1000)]);
        assert_eq!(w.reached(), 0, "events 0..256 are still out");
        assert_eq!(w.runs_ahead(), 2);
        w.complete(0, 100);
        assert_eq!(w.reached(), 100);
        w.complete(100, 256);
        assert_eq!(w.reached(), 512, "joins the run that waited");
        w.complete(512, 768);
        assert_eq!(w.reached(), 1000);
        assert_eq!(w.runs_ahead(), 0);
        // Settling again (a teardown path) changes nothing.
        w.complete(0, 1000);
        assert_eq!(w.reached(), 1000);
    }

    #[test]
    fn a_resumed_watermark_starts_at_the_skipped_events() {
        let ack = ObjectAck::resuming("s3://b/k", &Settled::up_to(5000));
        assert_eq!(ack.watermark(), 5000);
        ack.completed(5256, 256);
        assert_eq!(ack.watermark(), 5000);
        ack.completed(5000, 256);
        assert_eq!(ack.watermark(), 5512);
        // Events before the checkpoint (never sent again) cannot move it.
        ack.completed(0, 10);
        assert_eq!(ack.watermark(), 5512);
    }

    #[test]
    fn runs_ahead_of_the_watermark_survive_a_resume() {
        let ack = ObjectAck::for_object("s3://b/k");
        ack.completed(0, 100);
        ack.completed(300, 100);
        ack.completed(600, 50);
        let settled = ack.settled_events(16);
        assert_eq!(settled.reached, 100);
        assert_eq!(settled.ahead, vec![(300, 400), (600, 650)]);
        assert_eq!(settled.count(), 250);
        assert_eq!(ack.settled_events(1).ahead, vec![(300, 400)]);

        let resumed = ObjectAck::resuming("s3://b/k", &settled);
        assert_eq!(resumed.watermark(), 100);
        resumed.completed(100, 200);
        assert_eq!(
            resumed.watermark(),
            400,
            "the gap closed onto the saved run"
        );
        resumed.completed(400, 200);
        assert_eq!(resumed.watermark(), 650);
    }

    #[test]
    fn touching_runs_are_joined_and_survive_a_checkpoint() {
        let w = watermark(&[(100, 200), (300, 400), (200, 300), (450, 500), (400, 450)]);
        assert_eq!(w.settled(16).ahead, vec![(100, 500)], "one run, not five");
        // Runs saved touching (by an older build, or cut by the run limit) load whole.
        let saved = Settled {
            reached: 10,
            ahead: vec![(20, 30), (30, 40), (40, 50)],
        };
        assert_eq!(saved.clone().sanitized(), saved);
    }

    #[test]
    fn settled_contains_walks_the_runs_in_order() {
        let settled = Settled {
            reached: 10,
            ahead: vec![(20, 25), (30, 31)],
        };
        let mut cursor = 0;
        let skipped: Vec<u64> = (0..40)
            .filter(|&n| settled.contains(n, &mut cursor))
            .collect();
        let expected: Vec<u64> = (0..10).chain(20..25).chain(30..31).collect();
        assert_eq!(skipped, expected);
    }

    #[test]
    fn a_garbled_list_of_runs_is_trimmed_to_what_is_certain() {
        let settled = Settled {
            reached: 10,
            ahead: vec![(5, 12), (20, 25), (22, 30), (40, 40), (50, 60)],
        }
        .sanitized();
        assert_eq!(settled.ahead, vec![(20, 25), (50, 60)]);
    }

    #[tokio::test]
    async fn nothing_sent_is_settled() {
        assert_eq!(ObjectAck::new().settled().await, Ok(()));
    }
}
