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
//!
//! Outage mode: while the intake circuit is open (see [`crate::circuit`]) no new
//! message is received; the messages held stay invisible by heartbeat, and a message
//! whose delivery failed while the intake is down is kept and processed again in place
//! once the circuit closes: never handed back to SQS, where it would count toward
//! `maxReceiveCount` for a fault that is not its own.
//!
//! What a failed message becomes depends on why it failed ([`FailureKind`]): handed
//! back for a later attempt (transient), moved to the dead-letter queue at once
//! (permanent: corrupt object, unparseable notification, unsupported format), left to
//! the redrive policy with an error naming the bucket (configuration), or released at
//! once (a panic).
//!
//! Crashes: a SIGKILL or an OOM kill leaves the messages in flight to reappear after
//! their visibility timeout, and every such receive counts toward `maxReceiveCount`
//! although the message may be fine. A message received for the last time before the
//! redrive (receive count >= `maxReceiveCount`) that this process has not itself handed
//! back for a problem of its own is therefore re-queued as a fresh copy (receive count
//! 1, attribute `alf-crash-renewals` + 1) and the original deleted, at most
//! [`MAX_CRASH_RENEWALS`] times; after that the redrive policy applies as usual. A
//! message that fails for its own reasons in this process goes the normal way.
//!
//! SQS's 12-hour ceiling: a message cannot stay invisible for more than 12 hours after
//! it was received. Heartbeats never ask beyond it; a message still in flight shortly
//! before it (an outage of many hours) is renewed: a copy of its body is sent to the
//! queue (a fresh message, receive count 1) and the original deleted, so the outage
//! cannot walk it into the dead-letter queue. The work in flight carries on; the copy
//! is processed again later, so its events may arrive twice (same `event.id`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;

use aws_config::{BehaviorVersion, Region};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::DaemonError;
use crate::checkpoint::{CheckpointStore, Checkpoints};
use crate::circuit::IntakeCircuits;
use crate::config::Config;
use crate::deadletter::DeadLetterSink;
use crate::metrics::{self as m, Readiness};
use crate::pipeline::{FailureKind, MessageOutcome, Pipeline, panic_text};
use crate::s3::ObjectFetcher;
use crate::sqs::{
    CRASH_RENEWALS_ATTRIBUTE, MAX_BATCH, ReceivedMessage, SqsBatcher, SqsPoller,
    VISIBILITY_CEILING, clamp_i32,
};

/// After the grace period, how long abandoned tasks get to notice and stop.
const ABANDON_WAIT: Duration = Duration::from_secs(5);
/// Of that, how long an abandoned message's processing gets to end its objects
/// (record their checkpoints) before it is dropped.
const ABANDON_FINISH: Duration = Duration::from_secs(4);
/// Longest pause between failed ReceiveMessage calls.
const MAX_RECEIVE_BACKOFF: Duration = Duration::from_secs(30);
/// Consecutive ReceiveMessage failures after which `/readyz` says SQS is unreachable.
const UNREACHABLE_AFTER: u32 = 3;
/// How often the queue's backlog gauge is refreshed.
const BACKLOG_POLL: Duration = Duration::from_secs(60);
/// How often the in-flight gauges and the readiness flags are refreshed.
const GAUGE_REFRESH: Duration = Duration::from_secs(1);
/// Renew a message this long before SQS's 12-hour visibility ceiling (plus two
/// heartbeats), so the renewal never races the ceiling.
const CEILING_MARGIN: Duration = Duration::from_secs(300);
/// Fresh starts a message gets when its receives were used up by crashes (see the
/// module docs); a message that crashes the forwarder itself (OOM) reaches the
/// dead-letter queue after (1 + this) x maxReceiveCount receives.
pub const MAX_CRASH_RENEWALS: u32 = 3;
/// Message ids remembered as handed back by this process for their own problem.
const OWN_FAILURES_REMEMBERED: usize = 10_000;

/// Builds the SQS and S3 clients from the configuration and the SDK's default chain;
/// also returns the custom endpoint in use (for error messages).
async fn aws_clients(
    config: &Config,
) -> Result<(aws_sdk_sqs::Client, aws_sdk_s3::Client, Option<String>), DaemonError> {
    queue_clients(config, &config.sqs.queue_url, None, &config.aws).await
}

/// [`aws_clients`] for one queue: `region` (an `[[sqs.queues]]` entry's, or the one
/// in its URL) wins over `aws.region`, and `aws` says which role to assume.
async fn queue_clients(
    config: &Config,
    queue_url: &str,
    region: Option<String>,
    aws: &crate::config::AwsSettings,
) -> Result<(aws_sdk_sqs::Client, aws_sdk_s3::Client, Option<String>), DaemonError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region.or_else(|| config.aws.region.clone()) {
        loader = loader.region(Region::new(region));
    }
    if let Some(url) = &aws.endpoint_url {
        loader = loader.endpoint_url(url.trim_end_matches('/'));
    }
    let mut sdk = loader.load().await;
    if sdk.region().is_none() {
        match region_from_queue_url(queue_url) {
            Some(region) => sdk = sdk.into_builder().region(Region::new(region)).build(),
            None => return Err(DaemonError::NoRegion(queue_url.to_owned())),
        }
    }
    let sdk = crate::assume_role::assume_configured_role(sdk, aws).await?;
    Ok((
        aws_sdk_sqs::Client::new(&sdk),
        crate::s3::s3_client(&sdk, aws),
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
    let readiness = Readiness::new();
    if let Some(addr) = config.metrics.listen {
        m::serve(addr, Arc::clone(&readiness), stop_metrics.clone()).await?;
    }

    let mut queues = Vec::new();
    for source in queue_sources(&config).await? {
        let poller = SqsPoller::new(
            source.sqs.clone(),
            &source.settings,
            source.endpoint.as_deref(),
        );
        let backlog = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            r = poller.check_access() => r?,
        };
        let (dead_letter_url, max_receive_count) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            url = dead_letter_queue(&poller) => url,
        };
        queues.push((source, poller, backlog, dead_letter_url, max_receive_count));
    }
    let Some(s3_client) = queues.first().map(|q| q.0.s3.clone()) else {
        return Err(DaemonError::Config(crate::config::ConfigError::Source(
            "no queue: set sqs.queue_url or add [[sqs.queues]] entries".into(),
        )));
    };
    let dead_letter =
        DeadLetterSink::open(&config.dead_letter.target(), Some(s3_client.clone())).await?;
    tracing::info!(
        dead_letter = dead_letter.location(),
        "dead-letter sink ready"
    );
    let checkpoints = open_checkpoints(&config, &s3_client).await?;
    // Set once the grace period is over: everything still running gives up.
    let abort = CancellationToken::new();
    let intakes = crate::intakes::start(&config, Some(Arc::new(dead_letter)), &abort)?;
    for (source, poller, backlog, _, _) in &queues {
        tracing::info!(
            queue = poller.queue_url(),
            queue_name = source.label.as_str(),
            backlog,
            intake = intakes.clients[0].endpoint().as_str(),
            protocol = %config.intake.protocol,
            intakes = intakes.clients.len(),
            max_messages_in_flight = config.sqs.max_messages_in_flight,
            object_concurrency = config.processing.object_concurrency,
            "aws-log-forwarder {} started",
            env!("CARGO_PKG_VERSION")
        );
    }
    // Not fatal: the intake may come up later, and messages wait in the queue until
    // it does. But a wrong URL should show now, not when the first object arrives.
    for probe in &intakes.clients {
        let probe = Arc::clone(probe);
        tokio::spawn(async move {
            match probe.probe().await {
                Ok(status) => tracing::info!(
                    intake = probe.endpoint().as_str(),
                    name = probe.name(),
                    status = status.as_u16(),
                    "intake reachable"
                ),
                Err(cause) => {
                    let key = if probe.name() == crate::config::DEFAULT_INTAKE_NAME {
                        "intake.url".to_owned()
                    } else {
                        format!("the url of [[intakes]] {}", probe.name())
                    };
                    tracing::warn!(
                        intake = probe.endpoint().as_str(),
                        name = probe.name(),
                        "intake {} {cause}: check {key} and that this host may connect to it (DNS, firewall, proxy, TLS); objects stay in the queue until it answers",
                        probe.endpoint()
                    )
                }
            }
        });
    }
    let bucket_clients = bucket_clients(&config).await?;
    // Objects parsed at once, whichever queue announced them.
    let object_permits = Arc::new(Semaphore::new(config.processing.object_concurrency.max(1)));
    let tracker = TaskTracker::new();
    let circuit = Arc::clone(&intakes.circuits);
    let batcher = intakes.batchers;
    let in_flight = Arc::new(InFlightMessages::default());
    tokio::spawn(refresh_gauges(
        Arc::clone(&in_flight),
        Arc::clone(&circuit),
        Arc::clone(&readiness),
        stop_metrics.clone(),
    ));
    let mut receivers = Vec::with_capacity(queues.len());
    // Queues whose ReceiveMessage failed UNREACHABLE_AFTER times in a row: /readyz says
    // SQS is unreachable while any is.
    let unreachable = Arc::new(AtomicU64::new(0));
    for (source, poller, _, dead_letter_url, max_receive_count) in queues {
        let mut rules = config.formats.detect_rules();
        if let Some(format) = source.format {
            // No condition: every object of this queue.
            rules.insert(
                0,
                alf_formats::DetectRule {
                    bucket: None,
                    key_prefix: None,
                    key_regex: None,
                    format,
                    options: Default::default(),
                },
            );
        }
        let pipeline = Arc::new(
            Pipeline::from_config(
                &config,
                ObjectFetcher::new(source.s3).with_bucket_clients(Arc::clone(&bucket_clients)),
                rules,
                intakes.events.clone(),
                Arc::clone(&intakes.routes),
                abort.clone(),
            )
            .map_err(|e| DaemonError::Config(crate::config::ConfigError::Source(e.to_string())))?
            .with_checkpoints(checkpoints.clone())
            .with_object_permits(Arc::clone(&object_permits)),
        );
        let context = Arc::new(MessageContext {
            poller: poller.clone(),
            acks: SqsBatcher::start(poller.clone()),
            pipeline,
            heartbeat: Duration::from_secs(config.sqs.heartbeat_interval_seconds),
            failure_visibility: clamp_i32(u64::from(config.sqs.failure_visibility_seconds)),
            abort: abort.clone(),
            circuit: Arc::clone(&circuit),
            dead_letter_url,
            max_receive_count,
            own_failures: Mutex::new(HashSet::new()),
            in_flight: Arc::clone(&in_flight),
            queue: source.label.clone(),
        });
        tokio::spawn(poll_backlog(
            poller.clone(),
            source.label,
            stop_metrics.clone(),
        ));
        receivers.push(receive_loop(
            context,
            config.sqs.max_messages_in_flight,
            Arc::clone(&readiness),
            Arc::clone(&unreachable),
            tracker.clone(),
            shutdown.clone(),
        ));
    }
    // The pipelines hold the senders now: the batchers end once they are all gone.
    drop(intakes.events);
    futures::future::join_all(receivers).await;

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
    // Every message task is gone (and with it the last sender): the batchers drain and end.
    if tokio::time::timeout(ABANDON_WAIT, batcher).await.is_err() {
        abort.cancel();
    }
    abort.cancel();
    tracing::info!("stopped");
    Ok(())
}

/// Receives from one queue until `shutdown`, spawning a task per message on `tracker`;
/// at most `max_in_flight` messages of this queue at once.
async fn receive_loop(
    context: Arc<MessageContext>,
    max_in_flight: usize,
    readiness: Arc<Readiness>,
    unreachable: Arc<AtomicU64>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let poller = context.poller.clone();
    let circuit = Arc::clone(&context.circuit);
    let mut receive_failures = 0u32;
    let mut counted_unreachable = false;
    loop {
        // Outage mode: nothing new is received while the intake is down; the messages
        // already held keep their heartbeats and are retried by the intake client.
        if circuit.is_open() {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = circuit.wait_closed() => {}
            }
        }
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
                if std::mem::take(&mut counted_unreachable) {
                    unreachable.fetch_sub(1, Ordering::AcqRel);
                }
                readiness.set_sqs_unreachable(unreachable.load(Ordering::Acquire) > 0);
                for message in messages {
                    let Some(permit) = permits.pop() else { break };
                    metrics::counter!(m::MESSAGES_RECEIVED, "queue" => context.queue.clone())
                        .increment(1);
                    tracker.spawn(handle_message(message, Arc::clone(&context), permit));
                }
            }
            Err(e) => {
                receive_failures += 1;
                if receive_failures >= UNREACHABLE_AFTER && !counted_unreachable {
                    counted_unreachable = true;
                    unreachable.fetch_add(1, Ordering::AcqRel);
                    readiness.set_sqs_unreachable(true);
                }
                metrics::counter!(m::RECEIVE_ERRORS, "queue" => context.queue.clone()).increment(1);
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
}

/// An S3 client per `[[aws.buckets]]` entry, with that bucket's role (assumed with
/// the base credentials, not through `aws.assume_role_arn`) and region.
async fn bucket_clients(
    config: &Config,
) -> Result<Arc<HashMap<String, aws_sdk_s3::Client>>, DaemonError> {
    let mut clients = HashMap::with_capacity(config.aws.buckets.len());
    // The region fallback when neither the entry nor aws.region names one.
    let queue_url = config
        .sqs
        .queues
        .first()
        .map_or(config.sqs.queue_url.as_str(), |q| q.url.as_str());
    for bucket in &config.aws.buckets {
        let mut aws = config.aws.clone();
        aws.assume_role_arn = Some(bucket.assume_role_arn.clone());
        aws.external_id.clone_from(&bucket.external_id);
        let (_, s3, _) = queue_clients(config, queue_url, bucket.region.clone(), &aws).await?;
        tracing::info!(
            bucket = bucket.name.as_str(),
            role = bucket.assume_role_arn.as_str(),
            "objects of s3://{} are read as {}",
            bucket.name,
            bucket.assume_role_arn
        );
        clients.insert(bucket.name.clone(), s3);
    }
    Ok(Arc::new(clients))
}

/// One queue this process reads, with its clients.
struct QueueSource {
    /// The `queue` label of its metrics.
    label: String,
    /// `[sqs]` with this queue's URL.
    settings: crate::config::SqsSettings,
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    endpoint: Option<String>,
    /// Every object it announces is parsed as this format.
    format: Option<alf_formats::Format>,
}

/// `sqs.queue_url` (when set) and every `[[sqs.queues]]` entry, with clients for the
/// entry's region and role.
async fn queue_sources(config: &Config) -> Result<Vec<QueueSource>, DaemonError> {
    let mut sources = Vec::with_capacity(1 + config.sqs.queues.len());
    if !config.sqs.queue_url.is_empty() {
        let (sqs, s3, endpoint) = aws_clients(config).await?;
        sources.push(QueueSource {
            label: crate::config::queue_label(None, &config.sqs.queue_url),
            settings: config.sqs.clone(),
            sqs,
            s3,
            endpoint,
            format: None,
        });
    }
    for queue in &config.sqs.queues {
        let mut aws = config.aws.clone();
        if queue.role_arn.is_some() {
            aws.assume_role_arn.clone_from(&queue.role_arn);
            aws.external_id.clone_from(&queue.external_id);
        }
        let region = queue
            .region
            .clone()
            .or_else(|| region_from_queue_url(&queue.url));
        let (sqs, s3, endpoint) = queue_clients(config, &queue.url, region, &aws).await?;
        let mut settings = config.sqs.clone();
        settings.queue_url.clone_from(&queue.url);
        settings.queues.clear();
        sources.push(QueueSource {
            label: queue.label(),
            settings,
            sqs,
            s3,
            endpoint,
            // Checked with the configuration.
            format: queue.format.as_deref().and_then(|f| f.trim().parse().ok()),
        });
    }
    Ok(sources)
}

/// Exponential pause between failed receives: 1 s, 2 s, 4 s ... 30 s.
fn receive_backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(5);
    Duration::from_secs(secs).min(MAX_RECEIVE_BACKOFF)
}

/// Reads the queue's redrive policy, says what it means, and resolves the URL of its
/// dead-letter queue (where messages that can never succeed are moved at once).
async fn dead_letter_queue(poller: &SqsPoller) -> (Option<String>, Option<u32>) {
    let policy = match poller.redrive_policy().await {
        Ok(Some(policy)) => policy,
        Ok(None) => {
            tracing::warn!(
                queue = poller.queue_url(),
                "queue {} has no RedrivePolicy: a message that can never be processed (corrupt object, foreign message body, missing bucket) is received again and again forever; attach a dead-letter queue (cloudformation/aws-log-forwarder.yaml does)",
                poller.queue_url()
            );
            return (None, None);
        }
        Err(e) => {
            tracing::warn!(
                queue = poller.queue_url(),
                "cannot read the queue's RedrivePolicy: {e}; messages that can never succeed are left to the queue"
            );
            return (None, None);
        }
    };
    let max_receive_count = Some(policy.max_receive_count);
    match poller.queue_url_of(&policy).await {
        Ok(url) => {
            tracing::info!(
                queue = poller.queue_url(),
                dead_letter_queue = %url,
                max_receive_count = policy.max_receive_count,
                "dead-letter queue {url}: messages that cannot succeed are moved there at once; others after {} receives",
                policy.max_receive_count
            );
            (Some(url), max_receive_count)
        }
        Err(e) => {
            tracing::warn!(
                queue = poller.queue_url(),
                max_receive_count = policy.max_receive_count,
                dead_letter_target = %policy.dead_letter_target_arn,
                "cannot resolve the dead-letter queue {}: {e}; messages that cannot succeed go there only after {} receives",
                policy.dead_letter_target_arn,
                policy.max_receive_count
            );
            (None, max_receive_count)
        }
    }
}

/// The messages being processed, for the in-flight gauges.
#[derive(Default)]
struct InFlightMessages {
    next: AtomicU64,
    received: Mutex<HashMap<u64, Instant>>,
}

impl InFlightMessages {
    fn enter(self: &Arc<Self>, received_at: Instant) -> InFlightEntry {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut map) = self.received.lock() {
            map.insert(id, received_at);
        }
        InFlightEntry {
            id,
            registry: Arc::clone(self),
        }
    }

    /// (messages in flight, age of the oldest).
    fn snapshot(&self) -> (usize, Duration) {
        self.received.lock().map_or((0, Duration::ZERO), |map| {
            let oldest = map.values().min().map_or(Duration::ZERO, Instant::elapsed);
            (map.len(), oldest)
        })
    }
}

/// Removes its message from [`InFlightMessages`] however the task ends.
struct InFlightEntry {
    id: u64,
    registry: Arc<InFlightMessages>,
}

impl Drop for InFlightEntry {
    fn drop(&mut self) {
        if let Ok(mut map) = self.registry.received.lock() {
            map.remove(&self.id);
        }
    }
}

/// Keeps the in-flight gauges and the readiness flag of the circuit current.
async fn refresh_gauges(
    in_flight: Arc<InFlightMessages>,
    circuit: Arc<IntakeCircuits>,
    readiness: Arc<Readiness>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(GAUGE_REFRESH);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (count, oldest) = in_flight.snapshot();
        metrics::gauge!(m::MESSAGES_IN_FLIGHT).set(count as f64);
        metrics::gauge!(m::OLDEST_IN_FLIGHT_AGE).set(oldest.as_secs_f64());
        readiness.set_intake_down(circuit.is_open());
    }
}

/// Polls the queue's `ApproximateNumberOfMessages` once a minute.
async fn poll_backlog(poller: SqsPoller, queue: String, stop: CancellationToken) {
    let mut tick = tokio::time::interval(BACKLOG_POLL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match poller.visible_messages().await {
            Ok(Some(n)) => {
                metrics::gauge!(m::QUEUE_VISIBLE_MESSAGES, "queue" => queue.clone()).set(n as f64)
            }
            Ok(None) => {}
            Err(e) => tracing::debug!("cannot read the queue's backlog: {e}"),
        }
    }
}

/// What every message task shares.
struct MessageContext {
    poller: SqsPoller,
    acks: SqsBatcher,
    pipeline: Arc<Pipeline>,
    heartbeat: Duration,
    failure_visibility: i32,
    abort: CancellationToken,
    circuit: Arc<IntakeCircuits>,
    /// The redrive policy's dead-letter queue, when there is one.
    dead_letter_url: Option<String>,
    /// The redrive policy's maxReceiveCount, when there is one.
    max_receive_count: Option<u32>,
    /// Ids of messages this process handed back for a problem of their own: their
    /// last receive is theirs to use, not a crash's (see the module docs).
    own_failures: Mutex<HashSet<String>>,
    in_flight: Arc<InFlightMessages>,
    /// The queue's `queue` metrics label.
    queue: String,
}

impl MessageContext {
    fn remember_own_failure(&self, message_id: &str) {
        if let Ok(mut ids) = self.own_failures.lock() {
            if ids.len() >= OWN_FAILURES_REMEMBERED {
                ids.clear();
            }
            ids.insert(message_id.to_owned());
        }
    }

    /// Whether `message` is on its last receive before the redrive, and the earlier
    /// ones were not used up by this process for a problem of the message's own.
    fn needs_crash_renewal(&self, message: &ReceivedMessage) -> bool {
        let failed_here = self
            .own_failures
            .lock()
            .is_ok_and(|ids| ids.contains(&message.message_id));
        crash_renewal_due(
            self.max_receive_count,
            message.receive_count,
            message.crash_renewals,
            failed_here,
        )
    }
}

/// Whether a message received for the `receive_count`-th time is on its last receive
/// before the redrive (`max_receive_count`) with the earlier receives not used up by
/// this process for a problem of the message's own (`failed_here`), and may still be
/// renewed.
fn crash_renewal_due(
    max_receive_count: Option<u32>,
    receive_count: u32,
    crash_renewals: u32,
    failed_here: bool,
) -> bool {
    let Some(max) = max_receive_count else {
        return false;
    };
    receive_count > 1 && receive_count >= max && crash_renewals < MAX_CRASH_RENEWALS && !failed_here
}

/// Re-queues a message whose receives were used up by crashes as a fresh copy and
/// deletes the original (copy first: a failure in between duplicates, never loses).
async fn renew_after_crashes(context: &MessageContext, message: &ReceivedMessage) -> bool {
    let renewals = message.crash_renewals + 1;
    let attributes = [
        (CRASH_RENEWALS_ATTRIBUTE, renewals.to_string()),
        ("alf-renewed-from", message.message_id.clone()),
    ];
    if let Err(e) = context
        .poller
        .send_copy(context.poller.queue_url(), message, &attributes)
        .await
    {
        tracing::warn!(message_id = %message.message_id, "cannot re-queue message {} on its last receive: {e}; processing it as is", message.message_id);
        return false;
    }
    if let Err(e) = context.acks.delete(&message.receipt_handle).await {
        tracing::warn!(message_id = %message.message_id, "re-queued message {} but cannot delete the original: {e}; it may be processed twice", message.message_id);
    }
    tracing::warn!(
        message_id = %message.message_id,
        receive_count = message.receive_count,
        crash_renewals = renewals,
        "message {} was received {} times without this process failing it (a crash or a kill?): re-queued as a fresh copy (renewal {renewals} of {MAX_CRASH_RENEWALS}) so it does not reach the dead-letter queue for a fault not its own",
        message.message_id,
        message.receive_count
    );
    true
}

/// Keeps a message invisible while it is processed, within SQS's 12-hour ceiling.
struct Heartbeat<'a> {
    context: &'a MessageContext,
    message: &'a ReceivedMessage,
    /// The original was deleted after a copy was re-queued (see the module docs):
    /// nothing more may be done with its receipt handle.
    renewed: bool,
}

impl Heartbeat<'_> {
    async fn beat(&mut self) {
        if self.renewed {
            return;
        }
        let (context, message) = (self.context, self.message);
        let left = VISIBILITY_CEILING
            .saturating_sub(message.received_at.elapsed())
            .saturating_sub(CEILING_MARGIN + context.heartbeat * 2);
        if left.is_zero() {
            self.renew().await;
            return;
        }
        let seconds = clamp_i32(left.as_secs()).min(context.poller.visibility_timeout_seconds());
        if let Err(e) = context
            .acks
            .set_visibility(&message.receipt_handle, seconds)
            .await
        {
            tracing::warn!(message_id = %message.message_id, "cannot extend the visibility of a message still being processed: {e}");
        }
    }

    /// Near the 12-hour ceiling: re-queue a copy (fresh receive count), delete the
    /// original.
    async fn renew(&mut self) {
        let (context, message) = (self.context, self.message);
        let attributes = [("alf-renewed-from", message.message_id.clone())];
        match context
            .poller
            .send_copy(context.poller.queue_url(), message, &attributes)
            .await
        {
            Ok(()) => {
                self.renewed = true;
                if let Err(e) = context.acks.delete(&message.receipt_handle).await {
                    tracing::warn!(message_id = %message.message_id, "re-queued a copy but cannot delete the original: {e}; it may be processed twice");
                }
                tracing::warn!(
                    message_id = %message.message_id,
                    "message {} has been in flight for almost 12 hours (SQS's visibility ceiling): re-queued a copy and deleted the original so it does not count toward maxReceiveCount; its events may arrive twice (same event.id)",
                    message.message_id
                );
            }
            Err(e) => tracing::warn!(
                message_id = %message.message_id,
                "message {} nears SQS's 12-hour visibility ceiling and cannot be re-queued: {e}; it will become visible again and count as one more receive",
                message.message_id
            ),
        }
    }
}

/// Processes one message with visibility heartbeats, then deletes, keeps, releases or
/// dead-letters it.
async fn handle_message(
    message: ReceivedMessage,
    context: Arc<MessageContext>,
    _slot: OwnedSemaphorePermit,
) {
    let _in_flight = context.in_flight.enter(message.received_at);
    if context.needs_crash_renewal(&message) && renew_after_crashes(&context, &message).await {
        return;
    }
    if message.receive_count > 1 {
        tracing::info!(
            message_id = %message.message_id,
            receive_count = message.receive_count,
            "processing a redelivered message (attempt {})",
            message.receive_count
        );
    }
    let mut heartbeat = Heartbeat {
        context: &context,
        message: &message,
        renewed: false,
    };
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + context.heartbeat,
        context.heartbeat,
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut kept_for_outage = false;
    let outcome = loop {
        // A panic anywhere in the message's processing must not leave it hidden behind
        // heartbeats until the process restarts: it becomes an outcome like any other.
        let work =
            std::panic::AssertUnwindSafe(context.pipeline.process_message(&message)).catch_unwind();
        tokio::pin!(work);
        let caught = |outcome: Result<MessageOutcome, Box<dyn std::any::Any + Send>>| {
            outcome.unwrap_or_else(|payload| {
                let what = panic_text(payload);
                tracing::error!(message_id = %message.message_id, "processing message {} panicked: {what}; releasing it for redelivery at once", message.message_id);
                MessageOutcome::Failed { reason: format!("panicked: {what}"), kind: FailureKind::Panicked }
            })
        };
        let outcome = loop {
            tokio::select! {
                biased;
                _ = context.abort.cancelled() => {
                    // The pipeline sees the abort too and ends its objects on its own,
                    // writing their checkpoints on the way out: let it, rather than
                    // dropping it mid-write (the events delivered since the last
                    // periodic checkpoint would be sent again).
                    break tokio::time::timeout(ABANDON_FINISH, &mut work).await.ok().map(caught);
                }
                outcome = &mut work => break Some(caught(outcome)),
                _ = ticks.tick() => heartbeat.beat().await,
            }
        };
        // Delivery failed while the intake is down: keep the message (heartbeats go
        // on), wait for the intake, and process it again here.
        if let Some(MessageOutcome::Failed {
            kind: FailureKind::Delivery,
            reason,
        }) = &outcome
            && context.circuit.is_open()
        {
            if !kept_for_outage {
                tracing::warn!(
                    message_id = %message.message_id,
                    "message {} not delivered while the intake is down ({reason}); keeping it invisible and processing it again when the intake is back",
                    message.message_id
                );
                kept_for_outage = true;
            }
            let closed = loop {
                tokio::select! {
                    biased;
                    _ = context.abort.cancelled() => break false,
                    _ = context.circuit.wait_closed() => break true,
                    _ = ticks.tick() => heartbeat.beat().await,
                }
            };
            if closed {
                continue;
            }
            break None;
        }
        break outcome;
    };
    if heartbeat.renewed {
        // The original is gone; a copy waits in the queue.
        context
            .pipeline
            .message_settled(&message.message_id, false)
            .await;
        return;
    }
    let deleted = settle_message(&context, &message, outcome).await;
    context
        .pipeline
        .message_settled(&message.message_id, deleted)
        .await;
}

/// Acts on the outcome of a message; `true` when it left the queue (deleted because it
/// is done, or moved to the dead-letter queue).
async fn settle_message(
    context: &MessageContext,
    message: &ReceivedMessage,
    outcome: Option<MessageOutcome>,
) -> bool {
    let (reason, kind) = match outcome {
        Some(MessageOutcome::Done) => {
            match context.acks.delete(&message.receipt_handle).await {
                Ok(()) => {
                    metrics::counter!(m::MESSAGES_DELETED, "queue" => context.queue.clone())
                        .increment(1);
                    tracing::debug!(message_id = %message.message_id, "message done and deleted");
                    return true;
                }
                Err(e) => tracing::warn!(
                    message_id = %message.message_id,
                    "message processed but not deleted: {e}; it will be redelivered (its objects' checkpoints say they were delivered, so nothing is sent again where checkpoints are on)"
                ),
            }
            return false;
        }
        None => {
            // Abandoned at shutdown: release it for another consumer right away (the
            // batching task may be gone: one direct call).
            let release = context.poller.set_visibility(&message.receipt_handle, 0);
            let _ = tokio::time::timeout(Duration::from_secs(2), release).await;
            return false;
        }
        Some(MessageOutcome::Failed { reason, kind }) => (reason, kind),
    };
    metrics::counter!(m::MESSAGES_FAILED, "queue" => context.queue.clone()).increment(1);
    let visibility = match kind {
        FailureKind::Permanent(label) => {
            if dead_letter(context, message, &reason, label).await {
                return true;
            }
            context.remember_own_failure(&message.message_id);
            context.failure_visibility
        }
        FailureKind::Panicked => 0,
        FailureKind::Configuration => {
            context.remember_own_failure(&message.message_id);
            tracing::error!(
                message_id = %message.message_id,
                receive_count = message.receive_count,
                "message {} kept for the queue's redrive policy: {reason}",
                message.message_id
            );
            context.failure_visibility
        }
        FailureKind::Transient | FailureKind::Delivery => {
            context.remember_own_failure(&message.message_id);
            tracing::warn!(
                message_id = %message.message_id,
                receive_count = message.receive_count,
                retry_in_seconds = context.failure_visibility,
                "message not deleted: {reason}"
            );
            context.failure_visibility
        }
    };
    if (visibility > 0 || kind == FailureKind::Panicked)
        && let Err(e) = context
            .acks
            .set_visibility(&message.receipt_handle, visibility)
            .await
    {
        tracing::warn!(message_id = %message.message_id, "cannot change the visibility of a failed message: {e}");
    }
    false
}

/// Moves a message that can never succeed to the dead-letter queue at once: a copy
/// with the reason as message attributes, then the original is deleted (in that
/// order: a crash in between leaves a duplicate, never a loss). `false` when there is
/// no dead-letter queue or the copy failed: the message is then left to the queue.
async fn dead_letter(
    context: &MessageContext,
    message: &ReceivedMessage,
    reason: &str,
    label: &'static str,
) -> bool {
    let Some(url) = &context.dead_letter_url else {
        tracing::error!(
            message_id = %message.message_id,
            "message {} can never succeed ({reason}) but the queue has no dead-letter queue: it is left in the queue and will be received again",
            message.message_id
        );
        return false;
    };
    let attributes = [
        ("alf-dead-letter-reason", reason.to_owned()),
        ("alf-dead-letter-kind", label.to_owned()),
        ("alf-source-queue", context.poller.queue_url().to_owned()),
        ("alf-source-message-id", message.message_id.clone()),
        ("alf-receive-count", message.receive_count.to_string()),
    ];
    if let Err(e) = context.poller.send_copy(url, message, &attributes).await {
        tracing::error!(message_id = %message.message_id, "cannot move message {} to the dead-letter queue {url}: {e}; it is left in the queue", message.message_id);
        return false;
    }
    metrics::counter!(m::MESSAGES_DEAD_LETTERED, "reason" => label).increment(1);
    if let Err(e) = context.acks.delete(&message.receipt_handle).await {
        tracing::warn!(message_id = %message.message_id, "copied message {} to the dead-letter queue but cannot delete the original: {e}; it may reach the dead-letter queue twice", message.message_id);
    }
    tracing::error!(
        message_id = %message.message_id,
        dead_letter_queue = %url,
        reason = label,
        "message {} moved to the dead-letter queue: {reason}",
        message.message_id
    );
    true
}

/// The checkpoint store `[checkpoint]` configures, checked by writing, reading and
/// deleting a probe (an unusable store is a start-up error naming it), or `None`.
async fn open_checkpoints(
    config: &Config,
    s3_client: &aws_sdk_s3::Client,
) -> Result<Option<Checkpoints>, DaemonError> {
    let settings = &config.checkpoint;
    let store = match (&settings.directory, &settings.s3_bucket) {
        (Some(directory), _) => CheckpointStore::directory(directory),
        (None, Some(bucket)) => CheckpointStore::s3(s3_client.clone(), bucket, &settings.s3_prefix),
        (None, None) => {
            tracing::info!(
                "checkpoints off ([checkpoint] sets neither directory nor s3_bucket): a redelivered object is sent again from its first event"
            );
            return Ok(None);
        }
    };
    store.check().await?;
    tracing::info!(
        checkpoints = %store.describe(),
        interval_seconds = settings.interval_seconds,
        every_events = settings.every_events,
        min_object_bytes = settings.min_object_bytes,
        "checkpoints in {}",
        store.describe()
    );
    Ok(Some(Checkpoints {
        store: Arc::new(store),
        interval: Duration::from_secs(settings.interval_seconds),
        every_events: settings.every_events,
        min_object_bytes: settings.min_object_bytes,
    }))
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
    fn only_crash_worn_messages_on_their_last_receive_are_renewed() {
        // maxReceiveCount 2: the second receive is the last.
        assert!(crash_renewal_due(Some(2), 2, 0, false));
        assert!(!crash_renewal_due(Some(2), 1, 0, false), "first receive");
        assert!(!crash_renewal_due(Some(5), 3, 0, false), "receives left");
        assert!(
            !crash_renewal_due(Some(2), 2, 0, true),
            "failed here for its own reasons: the redrive applies"
        );
        assert!(
            !crash_renewal_due(Some(2), 2, MAX_CRASH_RENEWALS, false),
            "renewals used up"
        );
        assert!(!crash_renewal_due(None, 9, 0, false), "no redrive policy");
        // maxReceiveCount 1: a redelivery is always past the limit already.
        assert!(crash_renewal_due(Some(1), 2, 0, false));
    }

    #[test]
    fn receive_backoff_grows_and_is_capped() {
        assert_eq!(receive_backoff(1), Duration::from_secs(1));
        assert_eq!(receive_backoff(2), Duration::from_secs(2));
        assert_eq!(receive_backoff(5), Duration::from_secs(16));
        assert_eq!(receive_backoff(50), MAX_RECEIVE_BACKOFF);
    }
}
