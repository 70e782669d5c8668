//! The intake circuit: one shared view of "is the intake down?".
//!
//! The intake client records the outcome of every request: retryable failures (5xx,
//! 429, timeouts, resets) and successes. After `threshold` retryable failures in a row
//! the circuit opens: the daemon stops receiving new messages (they wait in SQS, where
//! they cost nothing and count toward no `maxReceiveCount`), keeps the messages it
//! holds invisible with heartbeats, and the client keeps retrying them with capped
//! backoff. The first accepted request closes it again.
//!
//! Why not give up and hand messages back to SQS? Every hand-back counts toward the
//! queue's receive count, and a long enough outage would walk healthy messages into the
//! dead-letter queue. An outage is a problem of the intake, not of the message.
//!
//! SQS caps a message's invisibility at 12 hours from its receipt: an outage longer
//! than that lets SQS hand the message out again whatever the heartbeats ask. The
//! batches in flight keep retrying; the new receipt (here or on another replica, once
//! its circuit closes) counts one receive and its events arrive twice (duplicates,
//! never losses: `event.id` is deterministic). So `maxReceiveCount` bounds outages of
//! `maxReceiveCount` x 12 hours, not of minutes.
//!
//! State changes are logged once each (not per retry) and exported as a gauge.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::watch;

use crate::metrics as m;

/// Shared by the intake client (writer) and the daemon, readiness probe and metrics
/// (readers). Cheap to clone behind an `Arc`.
#[derive(Debug)]
pub struct IntakeCircuit {
    threshold: u32,
    consecutive_failures: AtomicU32,
    open: watch::Sender<bool>,
    /// The intake's name: the `intake` label of the open gauge.
    name: String,
}

impl IntakeCircuit {
    /// A closed circuit that opens after `threshold` consecutive retryable failures
    /// (at least 1).
    pub fn new(threshold: u32) -> Self {
        let (open, _) = watch::channel(false);
        IntakeCircuit {
            threshold: threshold.max(1),
            consecutive_failures: AtomicU32::new(0),
            open,
            name: crate::config::DEFAULT_INTAKE_NAME.to_owned(),
        }
    }

    /// A fresh circuit with the same threshold for the intake `name`.
    pub fn renamed(&self, name: &str) -> Self {
        IntakeCircuit {
            name: name.to_owned(),
            ..IntakeCircuit::new(self.threshold)
        }
    }

    /// A request was accepted (wholly or partly): the intake is up.
    pub fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Release);
        let closed_now = self
            .open
            .send_if_modified(|open| std::mem::replace(open, false));
        if closed_now {
            metrics::gauge!(m::CIRCUIT_OPEN, "intake" => self.name.clone()).set(0.0);
            tracing::info!(
                intake = %self.name,
                "intake circuit closed: the intake accepts events again; receiving resumes"
            );
        }
    }

    /// A request failed in a way that may heal (5xx, 429, timeout, connection error).
    /// `cause` is logged once if this failure opens the circuit.
    pub fn record_retryable_failure(&self, cause: &str) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures < self.threshold {
            return;
        }
        let opened_now = self
            .open
            .send_if_modified(|open| !std::mem::replace(open, true));
        if opened_now {
            metrics::gauge!(m::CIRCUIT_OPEN, "intake" => self.name.clone()).set(1.0);
            tracing::warn!(
                consecutive_failures = failures,
                intake = %self.name,
                "intake circuit open: {cause}; stopped receiving new messages, keeping the ones in flight invisible and retrying them until the intake answers"
            );
        }
    }

    /// Whether the intake is considered down.
    pub fn is_open(&self) -> bool {
        *self.open.borrow()
    }

    /// Returns at once when closed, else when the circuit closes.
    pub async fn wait_closed(&self) {
        let mut rx = self.open.subscribe();
        // `wait_for` only fails when the sender is gone, and `self` owns it.
        let _ = rx.wait_for(|open| !*open).await;
    }
}

/// The circuits of every intake: receiving pauses while any of them is open (the
/// events of an object may go to several intakes, and one down intake holds its
/// objects back).
#[derive(Debug, Default)]
pub struct IntakeCircuits(Vec<std::sync::Arc<IntakeCircuit>>);

impl IntakeCircuits {
    pub fn new(circuits: Vec<std::sync::Arc<IntakeCircuit>>) -> Self {
        IntakeCircuits(circuits)
    }

    /// Whether any intake is down.
    pub fn is_open(&self) -> bool {
        self.0.iter().any(|c| c.is_open())
    }

    /// Returns once every circuit is closed at the same time.
    pub async fn wait_closed(&self) {
        while let Some(open) = self.0.iter().find(|c| c.is_open()) {
            open.wait_closed().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Fails unless `waiter` ends within a second: `woken_by` should have woken it.
    async fn assert_woken(waiter: tokio::task::JoinHandle<()>, woken_by: &str) {
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect(woken_by)
            .unwrap();
    }

    #[tokio::test]
    async fn opens_after_the_threshold_and_closes_on_success() {
        let circuit = Arc::new(IntakeCircuit::new(3));
        circuit.record_retryable_failure("500");
        circuit.record_retryable_failure("500");
        assert!(!circuit.is_open());
        circuit.record_retryable_failure("500");
        assert!(circuit.is_open());

        let waiter = tokio::spawn({
            let circuit = Arc::clone(&circuit);
            async move { circuit.wait_closed().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "waits while open");
        circuit.record_success();
        assert_woken(waiter, "closing wakes the waiter").await;
        assert!(!circuit.is_open());
    }

    #[tokio::test]
    async fn several_circuits_wait_until_all_are_closed() {
        let a = Arc::new(IntakeCircuit::new(1));
        let b = Arc::new(IntakeCircuit::new(1).renamed("raw"));
        let all = Arc::new(IntakeCircuits::new(vec![Arc::clone(&a), Arc::clone(&b)]));
        assert!(!all.is_open());
        a.record_retryable_failure("500");
        b.record_retryable_failure("500");
        assert!(all.is_open());
        let waiter = tokio::spawn({
            let all = Arc::clone(&all);
            async move { all.wait_closed().await }
        });
        a.record_success();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one intake is still down");
        b.record_success();
        assert_woken(waiter, "all closed wakes the waiter").await;
    }

    #[tokio::test]
    async fn a_success_resets_the_count() {
        let circuit = IntakeCircuit::new(2);
        circuit.record_retryable_failure("timeout");
        circuit.record_success();
        circuit.record_retryable_failure("timeout");
        assert!(!circuit.is_open());
        circuit.wait_closed().await;
    }
}
