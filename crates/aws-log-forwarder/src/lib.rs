//! aws-log-forwarder: long-polls an SQS queue fed by S3 event notifications, streams
//! each new object, decodes and parses it with `alf_formats`, and forwards the ECS
//! events in batches to an HTTP intake, deleting a message only after the intake
//! acknowledged every event it led to.
//!
//! The shape follows Vector's source -> transform -> sink split with end-to-end
//! acknowledgements:
//! * source: `sqs` (receive, heartbeat, delete), `notification` (what to fetch),
//!   `s3` (streaming GetObject);
//! * transform: `decode` (gzip/zstd/plain by magic bytes) and `pipeline` (format
//!   detection, parsing and serialization on blocking threads);
//! * sink: `batch` (batching with bounded memory) and `intake` (HTTP, retries), one
//!   of each per configured intake, events routed by dataset (`intakes`);
//! * `ack` ties events back to their object and message.

pub(crate) mod ack;
pub(crate) mod assume_role;
pub(crate) mod batch;
pub(crate) mod checkpoint;
pub(crate) mod circuit;
pub(crate) mod columnar;
pub(crate) mod config;
mod daemon;
pub(crate) mod deadletter;
pub(crate) mod decode;
mod errtext;
pub(crate) mod filter;
pub(crate) mod intake;
pub(crate) mod intakes;
pub(crate) mod metrics;
pub(crate) mod notification;
pub(crate) mod oversize;
pub(crate) mod pipeline;
pub(crate) mod replay;
pub(crate) mod s3;
pub(crate) mod sqs;

// The public surface. Every module is `pub(crate)` so the compiler reports dead code;
// only what the `aws-log-forwarder` binary (src/main.rs, src/cli.rs: a separate crate)
// and the integration tests (tests/) call is re-exported here.
pub use assume_role::assume_configured_role;
pub use config::{Config, ConfigErrors, LogFormat, LogSettings};
pub use intake::IntakeClient;
pub use notification::ObjectRef;
pub use pipeline::{ParseStep, StreamError, parse_stream, parse_stream_with};
pub use replay::{Day, ProgressMode, ReplayOptions, day_in_key, run as run_replay};
pub use s3::ObjectFetcher;

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
