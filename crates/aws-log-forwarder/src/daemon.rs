//! The receive loop: SQS messages in, pipeline per message, delete or release, and an
//! orderly shutdown.
//!
//! At most `sqs.max_messages_in_flight` messages are processed at once (a semaphore;
//! ReceiveMessage never asks for more messages than there are free slots, so nothing
//! sits received-but-unprocessed while its visibility timeout runs). While a message is
//! processed its visibility is extended every `heartbeat_interval_seconds`.
//!
//! Shutdown: the token stops the receive loop; in-flight messages get
//! `shutdown_grace_seconds` to finish (and be deleted). After that they are abandoned:
//! parsing and sending stop, nothing more is deleted, and the messages are made
//! visible again so another consumer picks them up at once.

use std::sync::Arc;
use std::time::Duration;

use alf_formats::{FormatDetector, ParseOptions};
use aws_config::{BehaviorVersion, Region};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::DaemonError;
use crate::batch::{BatcherLimits, run_batcher};
use crate::config::Config;
use crate::deadletter::DeadLetterSink;
use crate::intake::IntakeClient;
use crate::metrics as m;
use crate::pipeline::{MessageOutcome, Pipeline};
use crate::s3::ObjectFetcher;
use crate::sqs::{MAX_BATCH, ReceivedMessage, SqsPoller, clamp_i32};

/// After the grace period, how long abandoned tasks get to notice and stop.
const ABANDON_WAIT: Duration = Duration::from_secs(5);
/// Longest pause between failed ReceiveMessage calls.
const MAX_RECEIVE_BACKOFF: Duration = Duration::from_secs(30);

/// Builds the SQS and S3 clients from the configuration and the SDK's default chain;
/// also returns the custom endpoint in use (for error messages).
async fn aws_clients(
    config: &Config,
) -> Result<(aws_sdk_sqs::Client, aws_sdk_s3::Client, Option<String>), DaemonError> {
    let aws = &config.aws;
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &aws.endpoint_url {
        loader = loader.endpoint_url(url.trim_end_matches('/'));
    }
    let mut sdk = loader.load().await;
    if sdk.region().is_none() {
        match region_from_queue_url(&config.sqs.queue_url) {
            Some(region) => sdk = sdk.into_builder().region(Region::new(region)).build(),
            None => return Err(DaemonError::NoRegion(config.sqs.queue_url.clone())),
        }
    }
    let sdk = crate::assume_role::assume_configured_role(sdk, aws).await?;
    // A custom endpoint (LocalStack, MinIO) rarely resolves `<bucket>.<host>` names:
    // use path-style addressing there.
    let custom_endpoint = aws.endpoint_url.is_some()
        || sdk.endpoint_url().is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let s3_config = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(aws.force_path_style || custom_endpoint)
        .build();
    Ok((
        aws_sdk_sqs::Client::new(&sdk),
        aws_sdk_s3::Client::from_conf(s3_config),
        sdk.endpoint_url().map(str::to_owned),
    ))
}

/// `https://sqs.eu-west-1.amazonaws.com/...` -> `eu-west-1` (also the legacy
/// `eu-west-1.queue.amazonaws.com` form).
pub fn region_from_queue_url(queue_url: &str) -> Option<String> {
    let url = url::Url::parse(queue_url).ok()?;
    let host = url.host_str()?;
    let labels: Vec<&str> = host.split('.').collect();
    let region = match labels.as_slice() {
        ["sqs", region, ..] => *region,
        [region, "queue", ..] => *region,
        _ => return None,
    };
    region.contains('-').then(|| region.to_owned())
}

pub(crate) async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DaemonError> {
    // Stops the metrics listener however `run` ends.
    let stop_metrics = CancellationToken::new();
    let _stop_metrics_on_exit = stop_metrics.clone().drop_guard();
    if let Some(addr) = config.metrics.listen {
        m::serve(addr, stop_metrics.clone()).await?;
    }

    let (sqs_client, s3_client, endpoint) = aws_clients(&config).await?;
    let poller = SqsPoller::new(sqs_client, &config.sqs, endpoint.as_deref());
    let backlog = tokio::select! {
        biased;
        _ = shutdown.cancelled() => return Ok(()),
        r = poller.check_access() => r?,
    };
    let dead_letter = DeadLetterSink::open(&config.dead_letter, Some(s3_client.clone())).await?;
    tracing::info!(
        dead_letter = dead_letter.location(),
        "dead-letter sink ready"
    );
    let intake =
        Arc::new(IntakeClient::new(&config.intake)?.with_dead_letter(Arc::new(dead_letter)));
    tracing::info!(
        queue = poller.queue_url(),
        backlog,
        intake = intake.endpoint().as_str(),
        protocol = %config.intake.protocol,
        max_messages_in_flight = config.sqs.max_messages_in_flight,
        object_concurrency = config.processing.object_concurrency,
        "aws-log-forwarder {} started",
        env!("CARGO_PKG_VERSION")
    );
    // Not fatal: the intake may come up later, and messages wait in the queue until
    // it does. But a wrong URL should show now, not when the first object arrives.
    let probe = Arc::clone(&intake);
    tokio::spawn(async move {
        match probe.probe().await {
            Ok(status) => tracing::info!(
                intake = probe.endpoint().as_str(),
                status = status.as_u16(),
                "intake reachable"
            ),
            Err(cause) => tracing::warn!(
                intake = probe.endpoint().as_str(),
                "intake {} {cause}: check intake.url and that this host may connect to it (DNS, firewall, proxy, TLS); objects stay in the queue until it answers",
                probe.endpoint()
            ),
        }
    });

    // Set once the grace period is over: everything still running gives up.
    let abort = CancellationToken::new();
    let (events_tx, events_rx) = mpsc::channel(config.processing.object_concurrency * 4);
    let batcher = tokio::spawn(run_batcher(
        events_rx,
        BatcherLimits::new(&config.batch, config.intake.max_concurrent_requests),
        Arc::clone(&intake),
        abort.clone(),
    ));
    let pipeline = Arc::new(
        Pipeline::new(
            ObjectFetcher::new(s3_client),
            FormatDetector::new(config.formats.detect_rules()),
            ParseOptions {
                keep_original: config.processing.keep_original,
                ..ParseOptions::default()
            },
            config.processing.redact,
            config.processing.object_concurrency,
            events_tx,
            abort.clone(),
        )
        .with_filter(
            crate::filter::EventFilter::new(&config.processing.drop).map_err(|e| {
                DaemonError::Config(crate::config::ConfigError::Source(e.to_string()))
            })?,
        ),
    );
    let slots = Arc::new(Semaphore::new(config.sqs.max_messages_in_flight));
    let tracker = TaskTracker::new();
    let timing = Arc::new(MessageTiming {
        heartbeat: Duration::from_secs(config.sqs.heartbeat_interval_seconds),
        failure_visibility: clamp_i32(u64::from(config.sqs.failure_visibility_seconds)),
    });

    let mut receive_failures = 0u32;
    loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let mut permits = vec![first];
        while permits.len() < MAX_BATCH {
            match Arc::clone(&slots).try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        // Cancelling a long poll may drop messages SQS already handed out; they become
        // visible again after the visibility timeout (delayed, not lost).
        let received = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = poller.receive(permits.len()) => r,
        };
        match received {
            Ok(messages) => {
                receive_failures = 0;
                for message in messages {
                    let Some(permit) = permits.pop() else { break };
                    metrics::counter!(m::MESSAGES_RECEIVED).increment(1);
                    tracker.spawn(handle_message(
                        message,
                        poller.clone(),
                        Arc::clone(&pipeline),
                        Arc::clone(&timing),
                        abort.clone(),
                        permit,
                    ));
                }
            }
            Err(e) => {
                receive_failures += 1;
                metrics::counter!(m::RECEIVE_ERRORS).increment(1);
                let delay = receive_backoff(receive_failures);
                tracing::error!(
                    queue = poller.queue_url(),
                    consecutive_failures = receive_failures,
                    "{e}; retrying in {:.1}s",
                    delay.as_secs_f64()
                );
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }

    let grace = Duration::from_secs(config.sqs.shutdown_grace_seconds);
    tracker.close();
    tracing::info!(
        in_flight = tracker.len(),
        grace_seconds = grace.as_secs(),
        "shutting down: stopped receiving; waiting for in-flight messages"
    );
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            abandoned = tracker.len(),
            "grace period over: abandoning unfinished messages (not deleted; SQS redelivers them)"
        );
        abort.cancel();
        let _ = tokio::time::timeout(ABANDON_WAIT, tracker.wait()).await;
    }
    // Every message task is gone; dropping the last sender lets the batcher drain and end.
    drop(pipeline);
    if tokio::time::timeout(ABANDON_WAIT, batcher).await.is_err() {
        abort.cancel();
    }
    abort.cancel();
    tracing::info!("stopped");
    Ok(())
}

/// Exponential pause between failed receives: 1 s, 2 s, 4 s ... 30 s.
fn receive_backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(5);
    Duration::from_secs(secs).min(MAX_RECEIVE_BACKOFF)
}

struct MessageTiming {
    heartbeat: Duration,
    failure_visibility: i32,
}

/// Processes one message with visibility heartbeats, then deletes or releases it.
async fn handle_message(
    message: ReceivedMessage,
    poller: SqsPoller,
    pipeline: Arc<Pipeline>,
    timing: Arc<MessageTiming>,
    abort: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    if message.receive_count > 1 {
        tracing::info!(
            message_id = %message.message_id,
            receive_count = message.receive_count,
            "processing a redelivered message (attempt {})",
            message.receive_count
        );
    }
    let work = pipeline.process_message(&message);
    tokio::pin!(work);
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + timing.heartbeat,
        timing.heartbeat,
    );
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcome = loop {
        tokio::select! {
            biased;
            _ = abort.cancelled() => break None,
            outcome = &mut work => break Some(outcome),
            _ = heartbeat.tick() => {
                if let Err(e) = poller.extend(&message.receipt_handle).await {
                    tracing::warn!(message_id = %message.message_id, "cannot extend the visibility of a message still being processed: {e}");
                }
            }
        }
    };
    match outcome {
        Some(MessageOutcome::Done) => match poller.delete(&message.receipt_handle).await {
            Ok(()) => {
                metrics::counter!(m::MESSAGES_DELETED).increment(1);
                tracing::debug!(message_id = %message.message_id, "message done and deleted");
            }
            Err(e) => tracing::warn!(
                message_id = %message.message_id,
                "message processed but not deleted: {e}; it will be redelivered and its events sent again (same event.id)"
            ),
        },
        Some(MessageOutcome::Failed(reason)) => {
            metrics::counter!(m::MESSAGES_FAILED).increment(1);
            tracing::warn!(
                message_id = %message.message_id,
                receive_count = message.receive_count,
                retry_in_seconds = timing.failure_visibility,
                "message not deleted: {reason}"
            );
            if timing.failure_visibility > 0
                && let Err(e) = poller
                    .set_visibility(&message.receipt_handle, timing.failure_visibility)
                    .await
            {
                tracing::warn!(message_id = %message.message_id, "cannot shorten the visibility of a failed message: {e}");
            }
        }
        None => {
            // Abandoned at shutdown: release it for another consumer right away.
            let release = poller.set_visibility(&message.receipt_handle, 0);
            let _ = tokio::time::timeout(Duration::from_secs(2), release).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_from_queue_urls() {
        assert_eq!(
            region_from_queue_url("https://sqs.eu-west-1.amazonaws.com/123456789012/q").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_from_queue_url("https://us-east-2.queue.amazonaws.com/123456789012/q")
                .as_deref(),
            Some("us-east-2")
        );
        assert_eq!(
            region_from_queue_url(
                "http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/q"
            )
            .as_deref(),
            Some("us-east-1")
        );
        assert_eq!(
            region_from_queue_url("http://127.0.0.1:4566/000000000000/q"),
            None
        );
    }

    #[test]
    fn receive_backoff_grows_and_is_capped() {
        assert_eq!(receive_backoff(1), Duration::from_secs(1));
        assert_eq!(receive_backoff(2), Duration::from_secs(2));
        assert_eq!(receive_backoff(5), Duration::from_secs(16));
        assert_eq!(receive_backoff(50), MAX_RECEIVE_BACKOFF);
    }
}
