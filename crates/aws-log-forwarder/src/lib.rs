//! aws-log-forwarder: long-polls an SQS queue fed by S3 event notifications, streams
//! each new object, decodes and parses it with `alf_formats`, and forwards the ECS
//! events in batches to an HTTP intake, deleting a message only after the intake
//! acknowledged every event it led to.
//!
//! The shape follows Vector's source -> transform -> sink split with end-to-end
//! acknowledgements:
//! * source: [`sqs`] (receive, heartbeat, delete), [`notification`] (what to fetch),
//!   [`s3`] (streaming GetObject);
//! * transform: [`decode`] (gzip/zstd/plain by magic bytes) and [`pipeline`] (format
//!   detection, parsing and serialization on blocking threads);
//! * sink: [`batch`] (batching with bounded memory) and [`intake`] (HTTP, retries),
//!   one of each per configured intake, events routed by dataset ([`intakes`]);
//! * [`ack`] ties events back to their object and message.

pub mod ack;
pub mod assume_role;
pub mod batch;
pub mod checkpoint;
pub mod circuit;
pub mod columnar;
pub mod config;
mod daemon;
pub mod deadletter;
pub mod decode;
mod errtext;
pub mod filter;
pub mod intake;
pub mod intakes;
pub mod metrics;
pub mod notification;
pub mod oversize;
pub mod pipeline;
pub mod replay;
pub mod s3;
pub mod sqs;

pub use config::Config;
pub use daemon::region_from_queue_url;

use tokio_util::sync::CancellationToken;

/// Why the daemon could not start (once running, failures are logged and retried,
/// never fatal).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("config: {0}")]
    Config(config::ConfigError),
    #[error(transparent)]
    Sqs(#[from] sqs::SqsError),
    #[error("no AWS region: set aws.region or AWS_REGION (the queue URL {0} does not name one)")]
    NoRegion(String),
    #[error(transparent)]
    Intake(#[from] intake::IntakeError),
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    #[error(transparent)]
    DeadLetter(#[from] deadletter::DeadLetterError),
    #[error(transparent)]
    AssumeRole(#[from] assume_role::AssumeRoleError),
    #[error(
        "checkpoint store unusable: {0}; fix checkpoint.directory (it must exist) or checkpoint.s3_bucket/s3_prefix, or unset them"
    )]
    Checkpoint(#[from] checkpoint::CheckpointError),
}

/// Runs the daemon until `shutdown` is cancelled; returns after in-flight work was
/// finished or abandoned (bounded time: `sqs.shutdown_grace_seconds` plus a few
/// seconds).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DaemonError> {
    daemon::run(config, shutdown).await
}
