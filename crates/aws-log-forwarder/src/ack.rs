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
}

impl ObjectAck {
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

    #[tokio::test]
    async fn nothing_sent_is_settled() {
        assert_eq!(ObjectAck::new().settled().await, Ok(()));
    }
}
