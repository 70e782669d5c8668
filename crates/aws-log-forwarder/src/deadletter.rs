//! The dead-letter sink: where events the intake refuses for good are kept.
//!
//! When the intake answers a permanent 4xx, the intake client splits the batch until
//! the offending events stand alone ([`crate::intake`]); an event refused on its own
//! cannot be delivered by any retry, and retrying its whole object would re-send every
//! good event with it and finally walk the message into the SQS dead-letter queue.
//! Such an event is written here instead, with the intake's status and an excerpt of
//! its answer (the intake key masked), and then counts as delivered: its object
//! completes and its message is deleted. Nothing is dropped silently: every record is
//! counted in `alf_dead_letter_events_total{reason}` and the write is durable (fsync
//! or a completed `PutObject`) before the events are acknowledged. When the sink
//! cannot be written, the events fail and their object is redelivered as before.
//!
//! Two sinks: a local directory of NDJSON files (a new file once the current one
//! reaches `dead_letter.max_file_bytes`), or an S3 bucket/prefix (one gzipped NDJSON
//! object per rejected batch). Each line is
//! `{"dead_lettered_at_ms":…,"reason":"rejected","intake_status":400,"intake_answer":"…","event":{…}}`
//! with the event as it was sent, so it can be fixed and replayed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::DeadLetterTarget;

/// Counter of dead-lettered events, by `reason` (`rejected`, `oversize`).
pub const DEAD_LETTER_EVENTS: &str = "alf_dead_letter_events_total";
/// gzip level of S3 dead-letter objects (small, rare writes).
const GZIP_LEVEL: u32 = 6;

/// Why an event went to the dead-letter sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// The intake refused the event on its own with a permanent 4xx.
    Rejected,
    /// Too large: over `intake.max_event_bytes` with `intake.oversize = "dead_letter"`,
    /// or answered 413 when sent alone.
    Oversize,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Rejected => "rejected",
            DeadLetterReason::Oversize => "oversize",
        }
    }
}

/// One event to dead-letter.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// The event's JSON as it was (or would have been) sent.
    pub event: &'a [u8],
    pub reason: DeadLetterReason,
    /// The intake's HTTP status (or the Elasticsearch item status); `None` when the
    /// event was never sent (over the size limit).
    pub status: Option<u16>,
    /// Excerpt of the intake's answer, key already masked.
    pub answer: &'a str,
}

/// The sink could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead_letter.directory: cannot write to {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("dead_letter.s3_bucket: cannot write s3://{bucket}/{key}: {cause}")]
    S3 {
        bucket: String,
        key: String,
        cause: String,
    },
    #[error("dead_letter.s3_bucket: an S3 sink needs an S3 client")]
    NoS3Client,
    #[error("dead-letter write task failed: {0}")]
    Task(String),
}

/// Where rejected events go. Shared behind an `Arc` by the intake client.
#[derive(Debug)]
pub enum DeadLetterSink {
    Directory(DirectorySink),
    S3(S3Sink),
}

impl DeadLetterSink {
    /// Opens the configured sink and proves it can be written (a probe file in the
    /// directory, a probe object in the bucket), so a missing directory or a denied
    /// bucket is a start-up error naming the key, not a surprise at the first poison
    /// event.
    pub async fn open(
        settings: &DeadLetterTarget,
        s3: Option<aws_sdk_s3::Client>,
    ) -> Result<Self, DeadLetterError> {
        match settings {
            DeadLetterTarget::Directory {
                directory,
                max_file_bytes,
            } => {
                let sink = DirectorySink::new(directory.clone(), *max_file_bytes);
                let probe = sink.clone_inner();
                tokio::task::spawn_blocking(move || probe.check_writable())
                    .await
                    .map_err(|e| DeadLetterError::Task(e.to_string()))??;
                Ok(DeadLetterSink::Directory(sink))
            }
            DeadLetterTarget::S3 {
                s3_bucket,
                s3_prefix,
            } => {
                let client = s3.ok_or(DeadLetterError::NoS3Client)?;
                let sink = S3Sink {
                    client,
                    bucket: s3_bucket.clone(),
                    prefix: s3_prefix.clone(),
                };
                sink.put(
                    format!("{}.write-check", sink.prefix),
                    b"aws-log-forwarder dead-letter write check\n".to_vec(),
                )
                .await?;
                Ok(DeadLetterSink::S3(sink))
            }
        }
    }

    /// A directory sink without the start-up check (tests).
    pub fn directory(path: PathBuf, max_file_bytes: u64) -> Self {
        DeadLetterSink::Directory(DirectorySink::new(path, max_file_bytes))
    }

    /// Where records go, for logs: the directory or `s3://bucket/prefix`.
    pub fn location(&self) -> String {
        match self {
            DeadLetterSink::Directory(d) => d.inner.dir.display().to_string(),
            DeadLetterSink::S3(s) => format!("s3://{}/{}", s.bucket, s.prefix),
        }
    }

    /// Writes `records` durably and counts them; `Err` means none may be considered
    /// delivered.
    pub async fn write(&self, records: &[DeadLetter<'_>]) -> Result<(), DeadLetterError> {
        if records.is_empty() {
            return Ok(());
        }
        let lines = render(records);
        match self {
            DeadLetterSink::Directory(d) => {
                let inner = d.clone_inner();
                tokio::task::spawn_blocking(move || inner.append(&lines))
                    .await
                    .map_err(|e| DeadLetterError::Task(e.to_string()))??;
            }
            DeadLetterSink::S3(s) => {
                let mut gz = flate2::write::GzEncoder::new(
                    Vec::with_capacity(lines.len() / 4 + 64),
                    flate2::Compression::new(GZIP_LEVEL),
                );
                let body = gz
                    .write_all(&lines)
                    .and_then(|()| gz.finish())
                    .map_err(|e| DeadLetterError::Task(format!("gzip: {e}")))?;
                let key = format!("{}{}.ndjson.gz", s.prefix, unique_name());
                s.put(key, body).await?;
            }
        }
        for r in records {
            metrics::counter!(DEAD_LETTER_EVENTS, "reason" => r.reason.as_str()).increment(1);
        }
        Ok(())
    }
}

/// The NDJSON lines for `records`.
fn render(records: &[DeadLetter<'_>]) -> Vec<u8> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut out = Vec::new();
    for r in records {
        let _ = write!(
            out,
            "{{\"dead_lettered_at_ms\":{now_ms},\"reason\":\"{}\",\"intake_status\":",
            r.reason.as_str()
        );
        match r.status {
            Some(s) => {
                let _ = write!(out, "{s}");
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"intake_answer\":");
        let _ = serde_json::to_writer(&mut out, r.answer);
        out.extend_from_slice(b",\"event\":");
        // The event is our own serialized JSON; should it ever not be, keep it as a
        // string rather than writing a broken line.
        if serde_json::from_slice::<serde::de::IgnoredAny>(r.event).is_ok() {
            out.extend_from_slice(r.event);
        } else {
            let _ = serde_json::to_writer(&mut out, &String::from_utf8_lossy(r.event));
        }
        out.extend_from_slice(b"}\n");
    }
    out
}

/// `<unix ms>-<pid>-<sequence>`: unique per process and across replicas' clocks.
fn unique_name() -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!(
        "{now_ms}-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// NDJSON files in a directory, rotated by size.
#[derive(Debug)]
pub struct DirectorySink {
    inner: Arc<DirectoryInner>,
}

#[derive(Debug)]
struct DirectoryInner {
    dir: PathBuf,
    max_file_bytes: u64,
    /// The file being appended to and its size.
    current: Mutex<Option<(std::fs::File, u64)>>,
}

impl DirectorySink {
    fn new(dir: PathBuf, max_file_bytes: u64) -> Self {
        DirectorySink {
            inner: Arc::new(DirectoryInner {
                dir,
                max_file_bytes,
                current: Mutex::new(None),
            }),
        }
    }

    fn clone_inner(&self) -> Arc<DirectoryInner> {
        Arc::clone(&self.inner)
    }
}

impl DirectoryInner {
    fn error(&self, source: std::io::Error) -> DeadLetterError {
        DeadLetterError::Directory {
            path: self.dir.clone(),
            source,
        }
    }

    fn check_writable(&self) -> Result<(), DeadLetterError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.error(e))?;
        let probe = self
            .dir
            .join(format!(".write-check-{}", std::process::id()));
        std::fs::write(&probe, b"write check\n").map_err(|e| self.error(e))?;
        std::fs::remove_file(&probe).map_err(|e| self.error(e))
    }

    fn open_new(&self) -> std::io::Result<std::fs::File> {
        std::fs::create_dir_all(&self.dir)?;
        let path: PathBuf =
            Path::new(&self.dir).join(format!("dead-letter-{}.ndjson", unique_name()));
        std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)
    }

    /// Appends whole lines and syncs them to disk before returning.
    fn append(&self, lines: &[u8]) -> Result<(), DeadLetterError> {
        // A panic while holding the lock cannot leave a half-written state that
        // matters: at worst the next write starts a new file.
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current
            .as_ref()
            .is_none_or(|(_, size)| *size >= self.max_file_bytes)
        {
            *current = Some((self.open_new().map_err(|e| self.error(e))?, 0));
        }
        let Some((file, size)) = current.as_mut() else {
            return Err(self.error(std::io::Error::other("no open file")));
        };
        let written = file.write_all(lines).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Start a fresh file next time rather than appending after a torn line.
            *current = None;
            return Err(self.error(e));
        }
        *size += lines.len() as u64;
        Ok(())
    }
}

/// Gzipped NDJSON objects under a bucket prefix.
#[derive(Debug)]
pub struct S3Sink {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl S3Sink {
    async fn put(&self, key: String, body: Vec<u8>) -> Result<(), DeadLetterError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/x-ndjson")
            .body(body.into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DeadLetterError::S3 {
                bucket: self.bucket.clone(),
                key,
                cause: crate::errtext::chain(&e),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use alf_testkit::dead_letter_records as read_lines;

    #[tokio::test]
    async fn directory_sink_writes_records_and_rotates() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dl");
        let sink = DeadLetterSink::open(
            &DeadLetterTarget::Directory {
                directory: dir.clone(),
                max_file_bytes: 10,
            },
            None,
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "probe removed");
        let record = DeadLetter {
            event: br#"{"event":{"id":"x"}}"#,
            reason: DeadLetterReason::Rejected,
            status: Some(400),
            answer: "bad field",
        };
        sink.write(std::slice::from_ref(&record)).await.unwrap();
        sink.write(&[DeadLetter {
            event: b"not json",
            reason: DeadLetterReason::Oversize,
            status: None,
            answer: "",
        }])
        .await
        .unwrap();
        // 10 bytes per file: each write went to its own file.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        let lines = read_lines(&dir);
        assert_eq!(lines.len(), 2);
        let first = lines
            .iter()
            .find(|l| l["reason"] == "rejected")
            .expect("the rejected record");
        assert_eq!(first["intake_status"], 400);
        assert_eq!(first["intake_answer"], "bad field");
        assert_eq!(first["event"]["event"]["id"], "x");
        let second = lines.iter().find(|l| l["reason"] == "oversize").unwrap();
        assert_eq!(second["event"], "not json");
        assert!(second["intake_status"].is_null());
    }

    fn config(extra: &str) -> Result<crate::Config, crate::config::ConfigErrors> {
        crate::Config::from_toml_str(&format!(
            "[sqs]\nqueue_url = \"http://127.0.0.1:1/000000000000/q\"\n[intake]\nurl = \"https://intake.sekoia.io\"\nkey = \"k\"\n{extra}"
        ))
    }

    #[test]
    fn configuration_keys_and_their_errors() {
        let c = config("").unwrap();
        assert!(matches!(
            &c.dead_letter.target(),
            DeadLetterTarget::Directory { directory, max_file_bytes: 67_108_864 }
                if directory == Path::new("dead-letter")
        ));
        assert_eq!(c.intake.max_event_bytes, 250_000, "Sekoia's limit");
        assert_eq!(c.intake.oversize, crate::config::OversizePolicy::Truncate);
        assert_eq!(c.intake.elasticsearch_index, "logs-aws.{dataset}-default");

        let c = config("protocol = \"ndjson\"\noversize = \"dead_letter\"\n[dead_letter]\ns3_bucket = \"b\"\ns3_prefix = \"/dl\"").unwrap();
        assert_eq!(c.intake.max_event_bytes, 1 << 20);
        assert_eq!(c.intake.oversize, crate::config::OversizePolicy::DeadLetter);
        assert!(matches!(
            &c.dead_letter.target(),
            DeadLetterTarget::S3 { s3_bucket, s3_prefix } if s3_bucket == "b" && s3_prefix == "dl/"
        ));

        for (extra, expected) in [
            (
                "[dead_letter]\ndirectory = \"d\"\ns3_bucket = \"b\"",
                "dead_letter.s3_bucket: set either dead_letter.directory or dead_letter.s3_bucket, not both",
            ),
            (
                "oversize = \"drop\"",
                "intake.oversize: unknown policy `drop` (expected truncate or dead_letter)",
            ),
            (
                "max_event_bytes = 10",
                "intake.max_event_bytes: 10 is out of range (expected 0 for the protocol's limit, or between 1024 and 104857600)",
            ),
            (
                "[intake.elasticsearch_indices]\n\"aws.waf\" = \"a\\\"b\"",
                "intake.elasticsearch_indices.aws.waf: must be a non-empty index name without quotes, backslashes or line breaks",
            ),
        ] {
            assert_eq!(config(extra).unwrap_err().to_string(), expected, "{extra}");
        }
    }

    #[tokio::test]
    async fn an_unwritable_directory_is_an_error_naming_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let err = DeadLetterSink::open(
            &DeadLetterTarget::Directory {
                directory: file.join("below-a-file"),
                max_file_bytes: 1 << 20,
            },
            None,
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("dead_letter.directory: cannot write to "),
            "{err}"
        );
    }
}
