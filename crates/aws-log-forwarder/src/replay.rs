//! `replay s3://BUCKET[/PREFIX]`: ingest objects that already exist (history that was
//! never announced on SQS), through the daemon's own pipeline, batcher, intake and
//! acknowledgement path.
//!
//! * Listing is `ListObjectsV2`, page by page, into a bounded channel: memory stays
//!   bounded however many objects the prefix holds (only the checkpoint's set of
//!   finished objects grows with the replay).
//! * `--since`/`--until` compare days: the date in AWS's key layouts
//!   (`.../YYYY/MM/DD/...`, or `YYYY-MM-DD-HH` in CloudFront and S3 access log names)
//!   when the key has one, since that is when the logs were written; else the object's
//!   `LastModified`.
//! * `--format` keeps only objects of that format, decided as the daemon decides it
//!   (configured rules, key layout, else the first decompressed bytes: a ranged GET).
//! * The checkpoint is an append-only file of JSON lines (bucket, key, etag), each
//!   fsync'd once the intake acknowledged every event of the object. A restarted replay
//!   skips what it lists there; an object rewritten since (new ETag) is sent again. A
//!   line that does not parse stops the replay before anything is sent: guessing would
//!   either lose objects or re-send them silently.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Cursor, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use alf_formats::detect::{Reason, SNIFF_BYTES};
use alf_formats::{Decision, Format, FormatDetector};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error;
use regex::Regex;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::deadletter::DeadLetterSink;
use crate::decode;
use crate::notification::ObjectRef;
use crate::pipeline::{FailureKind, ObjectOutcome, Pipeline};
use crate::s3::ObjectFetcher;

/// `message_id` in the per-object log lines of a replay (there is no SQS message).
const REPLAY_MESSAGE_ID: &str = "replay";
/// Objects listed ahead of processing.
const LISTED_AHEAD: usize = 10_000;
/// Compressed bytes fetched to detect a format by content (decompressed, the detector
/// wants [`SNIFF_BYTES`]).
const SNIFF_RANGE: usize = 64 * 1024;
/// Failed objects named in the summary (all are counted).
const FAILURES_LISTED: usize = 100;
/// After the grace period, how long abandoned objects get to stop.
const ABANDON_WAIT: Duration = Duration::from_secs(5);

/// What to replay and how (from the command line).
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// `s3://BUCKET[/PREFIX]`.
    pub url: String,
    pub since: Option<Day>,
    pub until: Option<Day>,
    pub format: Option<Format>,
    pub checkpoint: Option<PathBuf>,
    pub dry_run: bool,
    pub progress: ProgressMode,
}

/// How progress is shown while replaying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// An `indicatif` bar on stderr.
    Bar,
    /// One JSON line on stderr every interval (no terminal: log collectors, CI).
    Json(Duration),
    None,
}

impl ProgressMode {
    /// A bar on a terminal, else JSON lines every 5 seconds.
    pub fn for_stderr() -> Self {
        if io::stderr().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::Json(Duration::from_secs(5))
        }
    }
}

/// Why a replay could not start or list.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0:?} is not an S3 URL: write s3://BUCKET or s3://BUCKET/PREFIX")]
    NotS3Url(String),
    #[error(
        "bucket {0} does not exist (or is in another partition): check the bucket name in the s3:// URL"
    )]
    NoSuchBucket(String),
    #[error(
        "listing s3://{bucket}/{prefix} is denied: the identity in use needs s3:ListBucket on arn:aws:s3:::{bucket} (and s3:GetObject on its objects) ({detail})"
    )]
    ListDenied {
        bucket: String,
        prefix: String,
        detail: String,
    },
    #[error("listing s3://{bucket}/{prefix} failed: {detail}")]
    List {
        bucket: String,
        prefix: String,
        detail: String,
    },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(
        "no AWS region: set aws.region in the configuration or AWS_REGION (the bucket's region)"
    )]
    NoRegion,
    #[error(transparent)]
    Intake(#[from] crate::intake::IntakeError),
    #[error(transparent)]
    DeadLetter(#[from] crate::deadletter::DeadLetterError),
    #[error(transparent)]
    Filter(#[from] crate::filter::FilterError),
    #[error(transparent)]
    AssumeRole(#[from] crate::assume_role::AssumeRoleError),
}

/// A checkpoint file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot open the checkpoint file {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error(
        "checkpoint file {path} is corrupt at line {line} ({reason}); refusing to start, so no object is re-sent or skipped by guesswork: delete the file (or move it away) to replay everything again, or remove the damaged line to resume"
    )]
    Corrupt {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("cannot record a finished object in the checkpoint file {path}: {source}")]
    Write { path: String, source: io::Error },
}

/// A calendar day, for `--since`/`--until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl std::str::FromStr for Day {
    type Err = String;

    /// `YYYY-MM-DD` (or a full RFC 3339 timestamp, of which the day counts).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.get(..10).unwrap_or(s);
        let bad = || format!("{s:?} is not a date: write YYYY-MM-DD, e.g. 2024-05-01");
        let mut parts = text.splitn(3, '-');
        let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        let day = Day {
            year: y.parse().map_err(|_| bad())?,
            month: m.parse().map_err(|_| bad())?,
            day: d.parse().map_err(|_| bad())?,
        };
        if !(1..=12).contains(&day.month) || !(1..=31).contains(&day.day) {
            return Err(bad());
        }
        Ok(day)
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// The day in an AWS delivery key: `.../2024/05/01/...` (CloudTrail, VPC flow logs,
/// ELB, WAF, GuardDuty, ...) or `...2024-05-01-12...` in the file name (CloudFront,
/// S3 server access logs).
pub fn day_in_key(key: &str) -> Option<Day> {
    static PATH: OnceLock<Option<Regex>> = OnceLock::new();
    static NAME: OnceLock<Option<Regex>> = OnceLock::new();
    let path = PATH
        .get_or_init(|| Regex::new(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})(?:/|$)").ok())
        .as_ref()?;
    let name = NAME
        .get_or_init(|| Regex::new(r"(?:^|[^0-9])(\d{4})-(\d{2})-(\d{2})-\d{2}").ok())
        .as_ref()?;
    let file_name = key.rsplit('/').next().unwrap_or(key);
    let caps = path.captures(key).or_else(|| name.captures(file_name))?;
    let day = Day {
        year: caps[1].parse().ok()?,
        month: caps[2].parse().ok()?,
        day: caps[3].parse().ok()?,
    };
    ((1..=12).contains(&day.month) && (1..=31).contains(&day.day)).then_some(day)
}

/// Splits `s3://bucket/prefix` into bucket and prefix (possibly empty).
pub fn parse_s3_url(url: &str) -> Result<(String, String), ReplayError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| ReplayError::NotS3Url(url.to_owned()))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(ReplayError::NotS3Url(url.to_owned()));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// One line of the checkpoint file.
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointLine {
    bucket: String,
    key: String,
    etag: String,
}

/// Finished objects: read at start, appended (and fsync'd) as objects finish.
pub struct Checkpoint {
    path: String,
    file: Mutex<File>,
    done: HashSet<(String, String, String)>,
}

impl Checkpoint {
    /// Opens (or creates) `path` and reads what it records.
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        let shown = path.display().to_string();
        let open_error = |source| CheckpointError::Open {
            path: shown.clone(),
            source,
        };
        let mut done = HashSet::new();
        match File::open(path) {
            Ok(file) => {
                let mut reader = BufReader::new(file);
                let mut line = Vec::new();
                let mut number = 0;
                loop {
                    line.clear();
                    let n = reader.read_until(b'\n', &mut line).map_err(open_error)?;
                    if n == 0 {
                        break;
                    }
                    number += 1;
                    let corrupt = |reason: String| CheckpointError::Corrupt {
                        path: shown.clone(),
                        line: number,
                        reason,
                    };
                    if line.last() != Some(&b'\n') {
                        return Err(corrupt("the last line is cut short".into()));
                    }
                    let entry: CheckpointLine = serde_json::from_slice(&line)
                        .map_err(|e| corrupt(format!("not a checkpoint record: {e}")))?;
                    done.insert((entry.bucket, entry.key, entry.etag));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(open_error(e)),
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(open_error)?;
        Ok(Checkpoint {
            path: shown,
            file: Mutex::new(file),
            done,
        })
    }

    /// Whether this object (this content: same ETag) was finished before.
    pub fn is_done(&self, bucket: &str, key: &str, etag: &str) -> bool {
        self.done
            .contains(&(bucket.to_owned(), key.to_owned(), etag.to_owned()))
    }

    /// Objects recorded when the file was opened (what the tests observe).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.done.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// Appends one finished object and forces it to disk: once this returns, a crash
    /// cannot make the object be sent again. One `write` per line, so a kill mid-way
    /// leaves at most a cut last line, which [`Checkpoint::open`] reports.
    pub fn record(&self, bucket: &str, key: &str, etag: &str) -> Result<(), CheckpointError> {
        let mut line = serde_json::to_vec(&CheckpointLine {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            etag: etag.to_owned(),
        })
        .unwrap_or_default();
        line.push(b'\n');
        let write_error = |source| CheckpointError::Write {
            path: self.path.clone(),
            source,
        };
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        (&*file).write_all(&line).map_err(write_error)?;
        file.sync_data().map_err(write_error)
    }
}

/// Objects and bytes of one format (dry run).
#[derive(Debug, Default, Clone, Serialize)]
pub struct FormatCount {
    pub objects: u64,
    pub bytes: u64,
}

/// A failed object and why.
#[derive(Debug, Clone, Serialize)]
pub struct FailedObject {
    pub key: String,
    pub reason: String,
}

/// What a replay did (printed at the end).
#[derive(Debug, Default, Clone, Serialize)]
pub struct ReplaySummary {
    pub bucket: String,
    pub prefix: String,
    pub dry_run: bool,
    /// Objects listed under the prefix.
    pub listed: u64,
    /// Objects outside `--since`/`--until` or not of `--format`.
    pub filtered_out: u64,
    /// Objects the checkpoint records as finished: not sent again.
    pub already_done: u64,
    pub delivered: u64,
    pub skipped: u64,
    /// Deleted between listing and reading.
    pub gone: u64,
    pub failed: u64,
    pub events: u64,
    pub malformed: u64,
    /// Events dropped by `[[processing.drop]]` rules.
    pub dropped: u64,
    /// Compressed bytes read (dry run: the listed sizes of the selected objects).
    pub bytes: u64,
    /// Stopped by a signal before every object was processed.
    pub interrupted: bool,
    pub duration_seconds: f64,
    /// Dry run: selected objects per detected format.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub formats: BTreeMap<String, FormatCount>,
    /// The first failed objects with their reasons.
    pub failures: Vec<FailedObject>,
}

impl ReplaySummary {
    /// Whether the replay should exit with success.
    pub fn succeeded(&self) -> bool {
        self.failed == 0 && !self.interrupted
    }

    /// Human-readable summary lines.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "replay of s3://{}/{}{}: {} listed, {} filtered out, {} already done (checkpoint), {} delivered, {} skipped, {} gone, {} failed; {} events ({} malformed, {} dropped by rules), {} bytes in {:.1}s{}\n",
            self.bucket,
            self.prefix,
            if self.dry_run { " (dry run)" } else { "" },
            self.listed,
            self.filtered_out,
            self.already_done,
            self.delivered,
            self.skipped,
            self.gone,
            self.failed,
            self.events,
            self.malformed,
            self.dropped,
            self.bytes,
            self.duration_seconds,
            if self.interrupted {
                "; INTERRUPTED: run again with the same --checkpoint to finish"
            } else {
                ""
            }
        );
        for (format, count) in &self.formats {
            out.push_str(&format!(
                "  {format}: {} objects, {} bytes\n",
                count.objects, count.bytes
            ));
        }
        for failure in &self.failures {
            out.push_str(&format!("  failed: {}: {}\n", failure.key, failure.reason));
        }
        if self.failed as usize > self.failures.len() {
            out.push_str(&format!(
                "  ... and {} more failed objects (see the log)\n",
                self.failed as usize - self.failures.len()
            ));
        }
        out
    }
}

/// A listed object that passed the filters.
struct Listed {
    object: ObjectRef,
    /// Set when the dry run or `--format` needed it.
    detected: Option<Detected>,
}

/// Counters shared by the workers and the progress display.
#[derive(Default)]
struct Progress {
    listed: AtomicU64,
    selected: AtomicU64,
    selected_bytes: AtomicU64,
    finished: AtomicU64,
    events: AtomicU64,
    bytes: AtomicU64,
    failed: AtomicU64,
    listing_done: AtomicBool,
}

/// Builds the S3 client: the configured region/endpoint, else the SDK's default chain.
async fn s3_client(config: &Config) -> Result<aws_sdk_s3::Client, ReplayError> {
    let aws = &config.aws;
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &aws.endpoint_url {
        loader = loader.endpoint_url(url.trim_end_matches('/'));
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err(ReplayError::NoRegion);
    }
    let sdk = crate::assume_role::assume_configured_role(sdk, aws).await?;
    Ok(crate::s3::s3_client(&sdk, aws))
}

fn list_error(e: SdkError<ListObjectsV2Error>, bucket: &str, prefix: &str) -> ReplayError {
    let status = e.raw_response().map(|r| r.status().as_u16());
    match &e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let code = err.code().unwrap_or_default();
            let detail = crate::s3::service_error_detail(err, status);
            if err.is_no_such_bucket() || code == "NoSuchBucket" || status == Some(404) {
                ReplayError::NoSuchBucket(bucket.to_owned())
            } else if code == "AccessDenied" || status == Some(403) {
                ReplayError::ListDenied {
                    bucket: bucket.to_owned(),
                    prefix: prefix.to_owned(),
                    detail,
                }
            } else {
                ReplayError::List {
                    bucket: bucket.to_owned(),
                    prefix: prefix.to_owned(),
                    detail,
                }
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => ReplayError::List {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            detail: format!(
                "cannot reach S3: {}; check aws.endpoint_url / the network",
                crate::errtext::network_cause(&e)
            ),
        },
        _ => ReplayError::List {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            detail: crate::errtext::chain(&e),
        },
    }
}

/// The day an object counts for: its key's date, else `LastModified`.
fn object_day(key: &str, last_modified: Option<&aws_sdk_s3::primitives::DateTime>) -> Option<Day> {
    day_in_key(key).or_else(|| {
        last_modified
            .and_then(|t| t.fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime).ok())
            .and_then(|s| s.parse().ok())
    })
}

/// What detection says of an object (dry run and `--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detected {
    Parse(Format),
    /// Deliberately not forwarded (CloudTrail digest).
    Skip,
    /// A container no reader understands (Apache Parquet): the object would fail.
    Refuse(&'static str),
}

impl Detected {
    fn from_decision(decision: Decision) -> Self {
        match decision {
            Decision::Parse { format, .. } => Detected::Parse(format),
            Decision::Skip { .. } => Detected::Skip,
            Decision::Refuse { container } => Detected::Refuse(container),
        }
    }

    fn format(self) -> Option<Format> {
        match self {
            Detected::Parse(format) => Some(format),
            _ => None,
        }
    }

    /// The dry run's label.
    fn label(self) -> String {
        match self {
            Detected::Parse(format) => format.name().to_owned(),
            Detected::Skip => "skipped (CloudTrail digest)".to_owned(),
            Detected::Refuse(container) => format!("unsupported ({container})"),
        }
    }
}

/// Detects an object's format as the pipeline will: rules and key layout, else the
/// first decompressed bytes (a ranged GET).
async fn detect_format(
    client: &aws_sdk_s3::Client,
    detector: &FormatDetector,
    bucket: &str,
    key: &str,
) -> Detected {
    match detector.decide(bucket, key, &[]) {
        Decision::Parse {
            reason: Reason::Fallback,
            ..
        } => {}
        decision => return Detected::from_decision(decision),
    }
    let head = sniff(client, bucket, key).await.unwrap_or_default();
    Detected::from_decision(detector.decide(bucket, key, &head))
}

/// The first decompressed bytes of an object.
async fn sniff(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let output = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(format!("bytes=0-{}", SNIFF_RANGE - 1))
        .send()
        .await
        .ok()?;
    let raw = output.body.collect().await.ok()?.into_bytes();
    tokio::task::spawn_blocking(move || {
        let (mut decoded, _) = decode::decoder_with_kind(Cursor::new(raw)).ok()?;
        let mut head = vec![0u8; SNIFF_BYTES];
        // A cut gzip stream ends in an error after the bytes we want: keep those.
        let mut filled = 0;
        while filled < head.len() {
            match io::Read::read(&mut decoded, &mut head[filled..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => filled += n,
            }
        }
        head.truncate(filled);
        Some(head)
    })
    .await
    .ok()
    .flatten()
}

/// Runs a replay until every selected object is finished or `shutdown` is cancelled.
pub async fn run(
    config: Config,
    options: ReplayOptions,
    shutdown: CancellationToken,
) -> Result<ReplaySummary, ReplayError> {
    let started = Instant::now();
    let (bucket, prefix) = parse_s3_url(&options.url)?;
    let checkpoint = match &options.checkpoint {
        Some(path) => Some(Arc::new(Checkpoint::open(path)?)),
        None => None,
    };
    // A bucket with a role of its own (`[[aws.buckets]]`) is listed and read as that role.
    let client = match config.aws.buckets.iter().find(|b| b.name == bucket) {
        Some(own) => {
            let mut as_bucket = config.clone();
            as_bucket.aws.assume_role_arn = Some(own.assume_role_arn.clone());
            as_bucket.aws.external_id.clone_from(&own.external_id);
            if own.region.is_some() {
                as_bucket.aws.region.clone_from(&own.region);
            }
            s3_client(&as_bucket).await?
        }
        None => s3_client(&config).await?,
    };
    let detector = Arc::new(FormatDetector::new(config.formats.detect_rules()));
    let mut summary = ReplaySummary {
        bucket: bucket.clone(),
        prefix: prefix.clone(),
        dry_run: options.dry_run,
        ..ReplaySummary::default()
    };

    // The first page proves the bucket exists and may be listed, before an intake or
    // a dead-letter sink is set up.
    let mut pages = client
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(&prefix)
        .into_paginator()
        .send();
    let first = match pages.next().await {
        Some(page) => Some(page.map_err(|e| list_error(e, &bucket, &prefix))?),
        None => None,
    };

    let progress = Arc::new(Progress::default());
    let (listed_tx, mut listed_rx) = mpsc::channel::<Listed>(LISTED_AHEAD);
    let lister = {
        let client = client.clone();
        let detector = Arc::clone(&detector);
        let checkpoint = checkpoint.clone();
        let progress = Arc::clone(&progress);
        let shutdown = shutdown.clone();
        let (bucket, prefix) = (bucket.clone(), prefix.clone());
        let options = options.clone();
        tokio::spawn(async move {
            let mut counts = ListCounts::default();
            let mut page = first.map(Ok);
            loop {
                let output = match page.take() {
                    Some(p) => p,
                    None => match pages.next().await {
                        Some(p) => p.map_err(|e| list_error(e, &bucket, &prefix)),
                        None => break,
                    },
                };
                let output = match output {
                    Ok(o) => o,
                    Err(e) => {
                        progress.listing_done.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                };
                for object in output.contents() {
                    if shutdown.is_cancelled() {
                        break;
                    }
                    let Some(key) = object.key() else { continue };
                    counts.listed += 1;
                    progress.listed.fetch_add(1, Ordering::Relaxed);
                    let in_range = match object_day(key, object.last_modified()) {
                        Some(day) => {
                            options.since.is_none_or(|s| day >= s)
                                && options.until.is_none_or(|u| day <= u)
                        }
                        None => options.since.is_none() && options.until.is_none(),
                    };
                    if !in_range {
                        counts.filtered_out += 1;
                        continue;
                    }
                    let etag = object.e_tag().unwrap_or_default().trim_matches('"');
                    if checkpoint
                        .as_ref()
                        .is_some_and(|c| c.is_done(&bucket, key, etag))
                    {
                        counts.already_done += 1;
                        continue;
                    }
                    let detected = if options.format.is_some() || options.dry_run {
                        let detected = detect_format(&client, &detector, &bucket, key).await;
                        if options.format.is_some() && detected.format() != options.format {
                            counts.filtered_out += 1;
                            continue;
                        }
                        Some(detected)
                    } else {
                        None
                    };
                    let size = object
                        .size()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(0);
                    progress.selected.fetch_add(1, Ordering::Relaxed);
                    progress.selected_bytes.fetch_add(size, Ordering::Relaxed);
                    let listed = Listed {
                        object: ObjectRef {
                            bucket: bucket.clone(),
                            key: key.to_owned(),
                            version_id: None,
                            etag: Some(etag.to_owned()),
                            size: Some(size),
                        },
                        detected,
                    };
                    if listed_tx.send(listed).await.is_err() {
                        break;
                    }
                }
                if shutdown.is_cancelled() {
                    break;
                }
            }
            progress.listing_done.store(true, Ordering::Relaxed);
            Ok(counts)
        })
    };

    let display = spawn_progress(options.progress, Arc::clone(&progress), options.dry_run);
    let mut failures_seen = 0;
    if options.dry_run {
        while let Some(listed) = listed_rx.recv().await {
            let name = listed
                .detected
                .map_or_else(|| "unknown".to_owned(), Detected::label);
            let entry = summary.formats.entry(name).or_default();
            entry.objects += 1;
            let size = listed.object.size.unwrap_or(0);
            entry.bytes += size;
            summary.bytes += size;
            progress.finished.fetch_add(1, Ordering::Relaxed);
        }
    } else {
        let dead_letter =
            DeadLetterSink::open(&config.dead_letter.target(), Some(client.clone())).await?;
        let abort = CancellationToken::new();
        let intakes = crate::intakes::start(&config, Some(Arc::new(dead_letter)), &abort)?;
        let batcher = intakes.batchers;
        let pipeline = Arc::new(Pipeline::from_config(
            &config,
            ObjectFetcher::new(client.clone()),
            config.formats.detect_rules(),
            intakes.events,
            intakes.routes,
            abort.clone(),
        )?);
        // The daemon holds at most max_messages_in_flight messages (one object each, as
        // AWS delivers them): the same number of objects are in flight here.
        let slots = Arc::new(Semaphore::new(config.sqs.max_messages_in_flight.max(1)));
        let mut workers = JoinSet::new();
        loop {
            let permit = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let listed = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                l = listed_rx.recv() => match l { Some(l) => l, None => break },
            };
            let pipeline = Arc::clone(&pipeline);
            let checkpoint = checkpoint.clone();
            let progress = Arc::clone(&progress);
            workers.spawn(async move {
                let report = pipeline
                    .process_object_report(&listed.object, REPLAY_MESSAGE_ID)
                    .await;
                drop(permit);
                let mut outcome = report.outcome.clone();
                if matches!(outcome, ObjectOutcome::Delivered | ObjectOutcome::Skipped)
                    && let Some(checkpoint) = &checkpoint
                {
                    let etag = listed.object.etag.as_deref().unwrap_or_default();
                    let (bucket, key) = (listed.object.bucket.clone(), listed.object.key.clone());
                    let checkpoint = Arc::clone(checkpoint);
                    let etag = etag.to_owned();
                    // fsync blocks: off the async threads.
                    let recorded = tokio::task::spawn_blocking(move || {
                        checkpoint.record(&bucket, &key, &etag)
                    })
                    .await;
                    match recorded {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            outcome =
                                ObjectOutcome::failed(FailureKind::Configuration, e.to_string())
                        }
                        Err(e) => {
                            outcome = ObjectOutcome::failed(FailureKind::Transient, e.to_string())
                        }
                    }
                }
                progress.finished.fetch_add(1, Ordering::Relaxed);
                progress.events.fetch_add(report.events, Ordering::Relaxed);
                progress
                    .bytes
                    .fetch_add(report.bytes_compressed, Ordering::Relaxed);
                if matches!(outcome, ObjectOutcome::Failed { .. }) {
                    progress.failed.fetch_add(1, Ordering::Relaxed);
                }
                (listed.object.key, outcome, report)
            });
            while let Some(done) = workers.try_join_next() {
                tally(&mut summary, done, &mut failures_seen);
            }
        }
        let interrupted_early = shutdown.is_cancelled();
        let grace = Duration::from_secs(config.sqs.shutdown_grace_seconds);
        let drained = tokio::time::timeout(grace, async {
            while let Some(done) = workers.join_next().await {
                tally(&mut summary, done, &mut failures_seen);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                abandoned = workers.len(),
                "grace period over: abandoning unfinished objects (not recorded in the checkpoint; the next run sends them again)"
            );
            abort.cancel();
            let _ = tokio::time::timeout(ABANDON_WAIT, async {
                while let Some(done) = workers.join_next().await {
                    tally(&mut summary, done, &mut failures_seen);
                }
            })
            .await;
        }
        drop(pipeline);
        if tokio::time::timeout(ABANDON_WAIT, batcher).await.is_err() {
            abort.cancel();
        }
        abort.cancel();
        summary.interrupted = interrupted_early;
    }
    drop(listed_rx);
    let counts = match lister.await {
        Ok(Ok(counts)) => counts,
        Ok(Err(e)) => {
            finish_progress(display).await;
            return Err(e);
        }
        Err(e) => {
            finish_progress(display).await;
            return Err(ReplayError::List {
                bucket,
                prefix,
                detail: format!("listing task failed: {e}"),
            });
        }
    };
    finish_progress(display).await;
    summary.listed = counts.listed;
    summary.filtered_out = counts.filtered_out;
    summary.already_done = counts.already_done;
    summary.interrupted |= shutdown.is_cancelled();
    summary.duration_seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

#[derive(Default)]
struct ListCounts {
    listed: u64,
    filtered_out: u64,
    already_done: u64,
}

fn tally(
    summary: &mut ReplaySummary,
    done: Result<(String, ObjectOutcome, crate::pipeline::ObjectReport), tokio::task::JoinError>,
    failures_seen: &mut usize,
) {
    let (key, outcome, report) = match done {
        Ok(d) => d,
        Err(e) => (
            "?".to_owned(),
            ObjectOutcome::failed(FailureKind::Panicked, format!("object task failed: {e}")),
            Default::default(),
        ),
    };
    summary.events += report.events;
    summary.malformed += report.malformed;
    summary.dropped += report.dropped;
    summary.bytes += report.bytes_compressed;
    match outcome {
        ObjectOutcome::Delivered => summary.delivered += 1,
        ObjectOutcome::Skipped => summary.skipped += 1,
        ObjectOutcome::Gone => summary.gone += 1,
        ObjectOutcome::Failed { reason, .. } => {
            summary.failed += 1;
            *failures_seen += 1;
            if summary.failures.len() < FAILURES_LISTED {
                summary.failures.push(FailedObject { key, reason });
            }
        }
    }
}

/// The running progress display, stopped by [`finish_progress`].
struct ProgressDisplay {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn spawn_progress(
    mode: ProgressMode,
    progress: Arc<Progress>,
    dry_run: bool,
) -> Option<ProgressDisplay> {
    let stop = CancellationToken::new();
    let task = match mode {
        ProgressMode::None => return None,
        ProgressMode::Bar => {
            let stop = stop.clone();
            tokio::spawn(async move {
                let bar = indicatif::ProgressBar::new(0);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} objects  {msg}  ETA {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                let started = Instant::now();
                loop {
                    let finished = progress.finished.load(Ordering::Relaxed);
                    bar.set_length(progress.selected.load(Ordering::Relaxed));
                    bar.set_position(finished);
                    let events = progress.events.load(Ordering::Relaxed);
                    let rate = events as f64 / started.elapsed().as_secs_f64().max(0.001);
                    let bytes = if dry_run {
                        progress.selected_bytes.load(Ordering::Relaxed)
                    } else {
                        progress.bytes.load(Ordering::Relaxed)
                    };
                    bar.set_message(format!(
                        "{events} events ({rate:.0}/s)  {}  {} failed{}",
                        indicatif::HumanBytes(bytes),
                        progress.failed.load(Ordering::Relaxed),
                        if progress.listing_done.load(Ordering::Relaxed) {
                            ""
                        } else {
                            "  (listing...)"
                        }
                    ));
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
                bar.finish_and_clear();
            })
        }
        ProgressMode::Json(interval) => {
            let stop = stop.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                loop {
                    let last = tokio::select! {
                        _ = stop.cancelled() => true,
                        _ = tokio::time::sleep(interval) => false,
                    };
                    eprintln!("{}", json_progress(&progress, started.elapsed()));
                    if last {
                        break;
                    }
                }
            })
        }
    };
    Some(ProgressDisplay { stop, task })
}

/// One progress line: counters so far.
fn json_progress(progress: &Progress, elapsed: Duration) -> serde_json::Value {
    let elapsed = elapsed.as_secs_f64().max(0.001);
    let events = progress.events.load(Ordering::Relaxed);
    serde_json::json!({
        "progress": {
            "listed": progress.listed.load(Ordering::Relaxed),
            "selected": progress.selected.load(Ordering::Relaxed),
            "listing_done": progress.listing_done.load(Ordering::Relaxed),
            "finished": progress.finished.load(Ordering::Relaxed),
            "failed": progress.failed.load(Ordering::Relaxed),
            "events": events,
            "events_per_second": (events as f64 / elapsed).round(),
            "bytes": progress.bytes.load(Ordering::Relaxed),
            "elapsed_seconds": elapsed.round(),
        }
    })
}

/// Stops the display: the bar is cleared, JSON progress prints its final line.
async fn finish_progress(display: Option<ProgressDisplay>) {
    if let Some(display) = display {
        display.stop.cancel();
        let _ = display.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        assert_eq!(
            parse_s3_url("s3://logs/AWSLogs/1/").unwrap(),
            ("logs".to_owned(), "AWSLogs/1/".to_owned())
        );
        assert_eq!(
            parse_s3_url("s3://logs").unwrap(),
            ("logs".to_owned(), String::new())
        );
        for bad in [
            "https://logs.s3.amazonaws.com/x",
            "logs/x",
            "s3://",
            "s3:///x",
        ] {
            let e = parse_s3_url(bad).unwrap_err().to_string();
            assert!(e.contains("is not an S3 URL: write s3://BUCKET"), "{e}");
        }
    }

    #[test]
    fn days_in_aws_keys() {
        let day = |s: &str| s.parse::<Day>().unwrap();
        assert_eq!(
            day_in_key("AWSLogs/1/CloudTrail/eu-west-1/2024/05/01/1_CloudTrail_x.json.gz"),
            Some(day("2024-05-01"))
        );
        assert_eq!(
            day_in_key("cf/E2ABC.2023-12-31-23.a1b2c3.gz"),
            Some(day("2023-12-31"))
        );
        assert_eq!(
            day_in_key("s3logs/2024-02-29-10-11-12-ABCDEF"),
            Some(day("2024-02-29"))
        );
        assert_eq!(day_in_key("custom/app.log.gz"), None);
        assert_eq!(day_in_key("x/2024/13/01/y"), None);
        assert!("2024-5-1".parse::<Day>().is_err());
        assert!(
            "yesterday"
                .parse::<Day>()
                .unwrap_err()
                .contains("YYYY-MM-DD")
        );
        assert_eq!(day("2024-05-01T10:00:00Z"), day("2024-05-01"));
    }

    #[test]
    fn checkpoint_records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        let cp = Checkpoint::open(&path).unwrap();
        assert!(cp.is_empty());
        cp.record("b", "k\twith\ttabs\n", "e1").unwrap();
        cp.record("b", "k2", "e2").unwrap();
        drop(cp);
        let cp = Checkpoint::open(&path).unwrap();
        assert_eq!(cp.len(), 2);
        assert!(cp.is_done("b", "k\twith\ttabs\n", "e1"));
        assert!(!cp.is_done("b", "k2", "other-etag"), "rewritten object");
        cp.record("b", "k3", "e3").unwrap();
        drop(cp);
        assert_eq!(Checkpoint::open(&path).unwrap().len(), 3);
    }

    #[test]
    fn corrupt_checkpoints_refuse_to_start() {
        let dir = tempfile::tempdir().unwrap();
        for (content, line) in [
            (
                &b"{\"bucket\":\"b\",\"key\":\"k\",\"etag\":\"e\"}\ngarbage\n"[..],
                2,
            ),
            (
                b"{\"bucket\":\"b\",\"key\":\"k\",\"etag\":\"e\"}\n{\"bucket\":\"b\",\"ke",
                2,
            ),
            (b"\xff\xfe\n", 1),
        ] {
            let path = dir.path().join("cp");
            std::fs::write(&path, content).unwrap();
            let e = Checkpoint::open(&path).err().unwrap().to_string();
            assert!(e.contains(&format!("is corrupt at line {line}")), "{e}");
            assert!(e.contains("delete the file"), "{e}");
        }
    }
}
