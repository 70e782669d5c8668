//! Checkpoints: how far a large object got, so a redelivered object (after a crash, a
//! SIGTERM, a failed batch, on any replica) does not send its delivered events again.
//!
//! A checkpoint is a tiny JSON document keyed by the object's bucket, key and ETag that
//! records its *watermark*: the number of events, counted from the first, that the
//! intake acknowledged (or that went to the dead-letter sink) without a gap (see
//! [`crate::ack::Watermark`]), and the runs of events settled beyond it (a batch stuck
//! in retries holds the watermark back while later batches are delivered; without
//! the runs, a crash then would send all of those again). A redelivered object is
//! still decompressed and parsed from the start, because record numbers (and so
//! `event.id`) must stay the same, but the settled events are not sent.
//!
//! It is written every `checkpoint.interval_seconds` while the object is in progress,
//! and as soon as `checkpoint.every_events` more events are settled (only when the
//! watermark moved), once more when the object fails (so a SIGTERM or a
//! failed batch loses nothing it already delivered), and deleted when the object is
//! done. Objects smaller than `checkpoint.min_object_bytes` are neither read nor
//! written: they finish within one interval, and a lookup per small object would cost
//! more than their duplicates. After a SIGKILL at most one interval or `every_events`
//! of events, whichever is fewer (plus the batches in flight), is sent twice: the
//! count keeps that bound from growing with the delivery rate.
//!
//! Where: a local directory (one process, or replicas sharing a file system) or an
//! S3 bucket/prefix (replicas anywhere). Off by default: the daemon needs write access
//! for it, and it must never be the source bucket's notified prefix, or every
//! checkpoint would announce itself as a new log object.
//!
//! The document name is a 128-bit hash of bucket and key (an S3 key can be 1024 bytes,
//! more than a file name or the prefix leaves room for); the document holds bucket,
//! key and ETag, and one that does not match them (a rewritten object, a collision) is
//! ignored.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

use crate::ack::{ObjectAck, Settled};
use crate::metrics as m;

/// Why a checkpoint could not be read, written or deleted.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint s3://{bucket}/{key}: {message}")]
    S3 {
        bucket: String,
        key: String,
        message: String,
    },
}

/// Which object a checkpoint is about. Without an ETag there is no checkpoint: a
/// rewritten object must never skip events of the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointKey {
    pub bucket: String,
    pub key: String,
    pub etag: String,
}

/// The stored document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Document {
    bucket: String,
    key: String,
    etag: String,
    /// Events settled without a gap from the object's first event.
    events_settled: u64,
    /// Runs `[start, end)` settled beyond `events_settled` (absent in documents
    /// written before runs were recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    settled_ahead: Vec<[u64; 2]>,
}

/// Runs ahead of the watermark recorded at most: they are bounded by the batches in
/// flight, this only keeps a document small whatever happens.
const MAX_RUNS_SAVED: usize = 256;

impl CheckpointKey {
    /// The document's name: 32 hex digits of two independent FNV-1a hashes of bucket
    /// and key (not the ETag: a rewritten object replaces the old checkpoint).
    fn name(&self) -> String {
        let fnv = |seed: u64| {
            let mut h = seed;
            for b in self
                .bucket
                .bytes()
                .chain(std::iter::once(0))
                .chain(self.key.bytes())
            {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            h
        };
        format!(
            "{:016x}{:016x}.json",
            fnv(0xcbf2_9ce4_8422_2325),
            fnv(0x6c62_272e_07bb_0142)
        )
    }

    fn matches(&self, doc: &Document) -> bool {
        doc.bucket == self.bucket && doc.key == self.key && doc.etag == self.etag
    }
}

/// Where checkpoints live.
#[derive(Debug, Clone)]
pub enum CheckpointStore {
    Directory(PathBuf),
    S3(S3Documents),
}

/// Checkpoint documents in an S3 bucket, each at its prefix followed by its name.
#[derive(Debug, Clone)]
pub struct S3Documents {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Ends with `/` unless empty.
    prefix: String,
}

impl S3Documents {
    /// The object key of the document named `name`.
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The failure of a call about the document named `name`.
    fn error(&self, name: &str, e: impl std::error::Error) -> CheckpointError {
        CheckpointError::S3 {
            bucket: self.bucket.clone(),
            key: self.key(name),
            message: DisplayErrorContext(e).to_string(),
        }
    }
}

impl CheckpointStore {
    pub fn directory(path: impl Into<PathBuf>) -> Self {
        CheckpointStore::Directory(path.into())
    }

    pub fn s3(client: aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Self {
        let mut prefix = prefix.trim_start_matches('/').to_owned();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        CheckpointStore::S3(S3Documents {
            client,
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    /// Where it is, for logs.
    pub fn describe(&self) -> String {
        match self {
            CheckpointStore::Directory(p) => p.display().to_string(),
            CheckpointStore::S3(s3) => format!("s3://{}/{}", s3.bucket, s3.prefix),
        }
    }

    /// The events of `object` already settled by an earlier attempt (none known:
    /// empty).
    pub async fn load(&self, object: &CheckpointKey) -> Result<Settled, CheckpointError> {
        let name = object.name();
        let bytes = match self {
            CheckpointStore::Directory(dir) => {
                let path = dir.join(&name);
                match tokio::fs::read(&path).await {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Ok(Settled::default());
                    }
                    Err(source) => return Err(CheckpointError::File { path, source }),
                }
            }
            CheckpointStore::S3(s3) => {
                match s3
                    .client
                    .get_object()
                    .bucket(&s3.bucket)
                    .key(s3.key(&name))
                    .send()
                    .await
                {
                    Ok(out) => out
                        .body
                        .collect()
                        .await
                        .map_err(|e| s3.error(&name, e))?
                        .to_vec(),
                    Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                        return Ok(Settled::default());
                    }
                    Err(e) => return Err(s3.error(&name, e)),
                }
            }
        };
        // A document that does not parse or is about another version of the object
        // is worth nothing: start from the beginning (duplicates, never a loss).
        Ok(serde_json::from_slice::<Document>(&bytes)
            .ok()
            .filter(|doc| object.matches(doc))
            .map_or_else(Settled::default, |doc| {
                Settled {
                    reached: doc.events_settled,
                    ahead: doc.settled_ahead.iter().map(|&[s, e]| (s, e)).collect(),
                }
                .sanitized()
            }))
    }

    /// Records that `settled` events of `object` are settled.
    pub async fn save(
        &self,
        object: &CheckpointKey,
        settled: &Settled,
    ) -> Result<(), CheckpointError> {
        let doc = Document {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            etag: object.etag.clone(),
            events_settled: settled.reached,
            settled_ahead: settled
                .ahead
                .iter()
                .take(MAX_RUNS_SAVED)
                .map(|&(s, e)| [s, e])
                .collect(),
        };
        // Serializing plain strings and a number cannot fail.
        let body = serde_json::to_vec(&doc).unwrap_or_default();
        let name = object.name();
        match self {
            CheckpointStore::Directory(dir) => {
                // Write then rename: a reader never sees half a document.
                let path = dir.join(&name);
                let tmp = dir.join(format!("{name}.tmp"));
                let file_error = |path: &Path| {
                    let path = path.to_owned();
                    move |source| CheckpointError::File { path, source }
                };
                tokio::fs::write(&tmp, &body)
                    .await
                    .map_err(file_error(&tmp))?;
                tokio::fs::rename(&tmp, &path)
                    .await
                    .map_err(file_error(&path))
            }
            CheckpointStore::S3(s3) => s3
                .client
                .put_object()
                .bucket(&s3.bucket)
                .key(s3.key(&name))
                .content_type("application/json")
                .body(ByteStream::from(body))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| s3.error(&name, e)),
        }
    }

    /// Forgets `object`'s checkpoint (done; a missing one is fine).
    pub async fn remove(&self, object: &CheckpointKey) -> Result<(), CheckpointError> {
        let name = object.name();
        match self {
            CheckpointStore::Directory(dir) => {
                let path = dir.join(&name);
                match tokio::fs::remove_file(&path).await {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(CheckpointError::File { path, source: e })
                    }
                    _ => Ok(()),
                }
            }
            CheckpointStore::S3(s3) => s3
                .client
                .delete_object()
                .bucket(&s3.bucket)
                .key(s3.key(&name))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| s3.error(&name, e)),
        }
    }

    /// Start-up check: writes, reads back and deletes a probe document, so a store
    /// that cannot be used is a clear error naming it, not a warning per object.
    pub async fn check(&self) -> Result<(), CheckpointError> {
        let probe = CheckpointKey {
            bucket: "aws-log-forwarder".into(),
            key: "start-up probe".into(),
            etag: "probe".into(),
        };
        self.save(&probe, &Settled::up_to(1)).await?;
        self.load(&probe).await?;
        self.remove(&probe).await
    }
}

/// How often an object in progress looks at its progress for `every_events`.
const PROGRESS_POLL: Duration = Duration::from_millis(200);

/// Checkpointing as configured.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    pub store: Arc<CheckpointStore>,
    pub interval: Duration,
    /// A checkpoint is also written as soon as this many more events are settled, so
    /// that what a SIGKILL sends twice does not grow with the delivery rate.
    pub every_events: u64,
    /// Smaller objects (compressed bytes) get no checkpoint.
    pub min_object_bytes: u64,
}

/// The checkpoint of one object being processed.
pub struct ObjectCheckpoint {
    store: Arc<CheckpointStore>,
    interval: Duration,
    every_events: u64,
    key: CheckpointKey,
    /// How many events the document last written (or read at the start) says are
    /// settled.
    saved: AtomicU64,
    /// A document exists in the store (read or written): delete it when done.
    exists: AtomicBool,
    /// A write error was already logged for this object.
    warned: AtomicBool,
}

impl ObjectCheckpoint {
    /// Reads the checkpoint of `key`; returns it and the events to skip. A store that
    /// cannot be read means starting from the beginning (duplicates, never a loss).
    pub async fn open(checkpoints: &Checkpoints, key: CheckpointKey) -> (Arc<Self>, Settled) {
        let skip = match checkpoints.store.load(&key).await {
            Ok(settled) => settled,
            Err(e) => {
                tracing::warn!(bucket = %key.bucket, key = %key.key, "{e}; the object is read from its first event");
                Settled::default()
            }
        };
        let count = skip.count();
        let checkpoint = ObjectCheckpoint {
            store: Arc::clone(&checkpoints.store),
            interval: checkpoints.interval,
            every_events: checkpoints.every_events,
            key,
            saved: AtomicU64::new(count),
            exists: AtomicBool::new(count > 0),
            warned: AtomicBool::new(false),
        };
        (Arc::new(checkpoint), skip)
    }

    /// Writes what `ack` says is settled if it grew since the last write.
    pub async fn save(&self, ack: &ObjectAck) {
        self.save_settled(ack.settled_events(MAX_RUNS_SAVED)).await;
    }

    /// Writes `settled` if it grew since the last write.
    async fn save_settled(&self, settled: Settled) {
        let count = settled.count();
        if count <= self.saved.load(Ordering::Acquire) {
            return;
        }
        match self.store.save(&self.key, &settled).await {
            Ok(()) => {
                self.saved.store(count, Ordering::Release);
                self.exists.store(true, Ordering::Release);
                metrics::counter!(m::CHECKPOINT_WRITES, "outcome" => "ok").increment(1);
            }
            Err(e) => {
                metrics::counter!(m::CHECKPOINT_WRITES, "outcome" => "error").increment(1);
                if !self.warned.swap(true, Ordering::AcqRel) {
                    tracing::warn!(bucket = %self.key.bucket, key = %self.key.key, "{e}; a redelivery of this object will send more duplicates");
                }
            }
        }
    }

    /// Writes the watermark every interval, and as soon as `every_events` more events
    /// are settled, until dropped (abort the task running it). The progress is looked
    /// at every [`PROGRESS_POLL`] (or interval, if shorter): a lock and a count.
    pub async fn keep_saving(self: Arc<Self>, ack: Arc<ObjectAck>) {
        let mut ticks = tokio::time::interval(self.interval.min(PROGRESS_POLL));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        let mut last_save = tokio::time::Instant::now();
        loop {
            ticks.tick().await;
            let settled = ack.settled_events(MAX_RUNS_SAVED);
            let due = last_save.elapsed() >= self.interval
                || settled
                    .count()
                    .saturating_sub(self.saved.load(Ordering::Acquire))
                    >= self.every_events;
            if due {
                self.save_settled(settled).await;
                last_save = tokio::time::Instant::now();
            }
        }
    }

    /// The object is done (or never to be retried from here): forget its checkpoint.
    pub async fn finish(&self) {
        if !self.exists.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = self.store.remove(&self.key).await {
            tracing::warn!(bucket = %self.key.bucket, key = %self.key.key, "{e}; the stale checkpoint is ignored once the object changes");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(etag: &str) -> CheckpointKey {
        CheckpointKey {
            bucket: "logs".into(),
            key: "AWSLogs/1/CloudFront/E1.2024-05-01-12.abcd.gz".into(),
            etag: etag.into(),
        }
    }

    #[tokio::test]
    async fn a_directory_store_keeps_the_watermark_per_object_and_etag() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::directory(dir.path());
        store.check().await.unwrap();
        let none = Settled::default();
        assert_eq!(store.load(&key("e1")).await.unwrap(), none, "nothing yet");
        store.save(&key("e1"), &Settled::up_to(4096)).await.unwrap();
        let with_runs = Settled {
            reached: 8192,
            ahead: vec![(9000, 9500), (10_000, 10_256)],
        };
        store.save(&key("e1"), &with_runs).await.unwrap();
        assert_eq!(store.load(&key("e1")).await.unwrap(), with_runs);
        let other = CheckpointKey {
            key: "other.gz".into(),
            ..key("e1")
        };
        assert_eq!(store.load(&other).await.unwrap(), none);
        assert_eq!(
            store.load(&key("e2")).await.unwrap(),
            none,
            "a rewritten object (new ETag) starts from its first event"
        );
        store.remove(&key("e1")).await.unwrap();
        store.remove(&key("e1")).await.unwrap();
        assert_eq!(store.load(&key("e1")).await.unwrap(), none);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn a_garbled_document_means_starting_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::directory(dir.path());
        std::fs::write(dir.path().join(key("e1").name()), b"{not json").unwrap();
        assert_eq!(store.load(&key("e1")).await.unwrap(), Settled::default());
    }

    #[tokio::test]
    async fn a_document_without_runs_still_reads_and_bad_runs_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::directory(dir.path());
        let k = key("e1");
        let old = format!(
            r#"{{"bucket":"{}","key":"{}","etag":"e1","events_settled":700}}"#,
            k.bucket, k.key
        );
        std::fs::write(dir.path().join(k.name()), old).unwrap();
        assert_eq!(store.load(&k).await.unwrap(), Settled::up_to(700));
        let odd = format!(
            r#"{{"bucket":"{}","key":"{}","etag":"e1","events_settled":700,"settled_ahead":[[100,800],[900,950],[960,955]]}}"#,
            k.bucket, k.key
        );
        std::fs::write(dir.path().join(k.name()), odd).unwrap();
        assert_eq!(
            store.load(&k).await.unwrap(),
            Settled {
                reached: 700,
                ahead: vec![(900, 950)]
            }
        );
    }

    #[tokio::test]
    async fn a_missing_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = CheckpointStore::directory(&missing)
            .check()
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
    }

    /// Checkpoints in `dir` for every object.
    fn in_directory(dir: &std::path::Path, interval: Duration, every_events: u64) -> Checkpoints {
        Checkpoints {
            store: Arc::new(CheckpointStore::directory(dir)),
            interval,
            every_events,
            min_object_bytes: 0,
        }
    }

    #[tokio::test]
    async fn an_object_checkpoint_saves_only_progress_and_is_removed_when_done() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = in_directory(dir.path(), Duration::from_secs(5), 1_000_000);
        let (cp, skip) = ObjectCheckpoint::open(&checkpoints, key("e1")).await;
        assert_eq!(skip, Settled::default());
        let ack = ObjectAck::resuming("s3://logs/x", &skip);
        cp.save(&ack).await;
        assert!(!dir.path().join(key("e1").name()).exists(), "no progress");
        ack.completed(256, 256);
        cp.save(&ack).await;
        let (_, skip) = ObjectCheckpoint::open(&checkpoints, key("e1")).await;
        assert_eq!(
            skip.ahead,
            vec![(256, 512)],
            "a run delivered behind a gap is kept"
        );
        ack.completed(0, 256);
        cp.save(&ack).await;
        let (again, skip) = ObjectCheckpoint::open(&checkpoints, key("e1")).await;
        assert_eq!(skip, Settled::up_to(512));
        again.finish().await;
        assert!(!dir.path().join(key("e1").name()).exists());
    }

    /// With a long interval, a checkpoint is still written once `every_events` more
    /// events are settled, and not before.
    #[tokio::test(start_paused = true)]
    async fn a_checkpoint_is_written_after_every_events_whatever_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = in_directory(dir.path(), Duration::from_secs(3_600), 1_000);
        let (cp, skip) = ObjectCheckpoint::open(&checkpoints, key("e2")).await;
        let ack = Arc::new(ObjectAck::resuming("s3://logs/x", &skip));
        let saver = tokio::spawn(Arc::clone(&cp).keep_saving(Arc::clone(&ack)));
        let saved = |checkpoints: Checkpoints| async move {
            ObjectCheckpoint::open(&checkpoints, key("e2")).await.1
        };
        ack.completed(0, 999);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            saved(checkpoints.clone()).await,
            Settled::default(),
            "999 < 1,000"
        );
        ack.completed(999, 2);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(saved(checkpoints.clone()).await, Settled::up_to(1_001));
        saver.abort();
    }
}
