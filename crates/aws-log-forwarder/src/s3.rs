//! Streaming S3 objects.
//!
//! `GetObject` returns a body stream; [`ObjectFetcher::open`] hands it back as an async
//! reader, and the pipeline bridges it into a blocking [`std::io::Read`] on a blocking
//! thread. Objects are never held in memory whole, whatever their size.

use aws_config::SdkConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;

use crate::config::AwsSettings;
use crate::notification::ObjectRef;

/// An object ready to be read.
pub struct OpenedObject {
    pub body: aws_sdk_s3::primitives::ByteStream,
    /// What identifies this content for `event.id`: the version id on versioned
    /// buckets, else the ETag (a rewritten object gets new ids).
    pub version: String,
    pub content_length: Option<u64>,
    /// The ETag (quoted, as S3 sends it), to pin a resumed read to the same content.
    pub e_tag: Option<String>,
}

/// Why an object could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The object (or the announced version) no longer exists. Retrying cannot help:
    /// see the pipeline for how this is handled.
    #[error("s3://{bucket}/{key} does not exist (deleted since the notification?)")]
    NotFound { bucket: String, key: String },
    /// The bucket itself does not exist (or not in this region/endpoint): a
    /// configuration problem, never a reason to drop the notification.
    #[error(
        "bucket {bucket} does not exist for the identity and endpoint in use (s3://{bucket}/{key}): check aws.region/aws.endpoint_url and the queue's notification source ({detail})"
    )]
    NoSuchBucket {
        bucket: String,
        key: String,
        detail: String,
    },
    #[error(
        "access denied to s3://{bucket}/{key}: the identity in use lacks s3:GetObject on this bucket (or kms:Decrypt for SSE-KMS objects): attach the policy from cloudformation/aws-log-forwarder.yaml ({detail})"
    )]
    AccessDenied {
        bucket: String,
        key: String,
        detail: String,
    },
    #[error("cannot reach S3 for s3://{bucket}/{key}: {detail}")]
    Unreachable {
        bucket: String,
        key: String,
        detail: String,
    },
    #[error("GetObject s3://{bucket}/{key} failed: {detail}")]
    Other {
        bucket: String,
        key: String,
        detail: String,
    },
}

impl FetchError {
    /// Whether a retry could ever succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(self, FetchError::NotFound { .. })
    }

    /// Whether an operator must fix something (a missing bucket, a missing
    /// permission): the message is kept (left to the queue's redrive policy), never
    /// deleted, and the error names the bucket.
    pub fn is_configuration_problem(&self) -> bool {
        matches!(
            self,
            FetchError::NoSuchBucket { .. } | FetchError::AccessDenied { .. }
        )
    }
}

/// Opens S3 objects.
#[derive(Clone)]
pub struct ObjectFetcher {
    client: aws_sdk_s3::Client,
    /// Clients with their own role for some buckets (`[[aws.buckets]]`: a log-archive
    /// account's buckets read with a role of that account).
    by_bucket: std::sync::Arc<std::collections::HashMap<String, aws_sdk_s3::Client>>,
}

impl ObjectFetcher {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        ObjectFetcher {
            client,
            by_bucket: Default::default(),
        }
    }

    /// Reads the buckets of `by_bucket` with their own client.
    pub fn with_bucket_clients(
        mut self,
        by_bucket: std::sync::Arc<std::collections::HashMap<String, aws_sdk_s3::Client>>,
    ) -> Self {
        self.by_bucket = by_bucket;
        self
    }

    /// The client for `bucket`: its own when `[[aws.buckets]]` names it.
    fn client_for(&self, bucket: &str) -> &aws_sdk_s3::Client {
        self.by_bucket.get(bucket).unwrap_or(&self.client)
    }

    /// Starts a GetObject for `object` (its announced version when there is one).
    pub async fn open(&self, object: &ObjectRef) -> Result<OpenedObject, FetchError> {
        let mut request = self
            .client_for(&object.bucket)
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key);
        if let Some(version) = &object.version_id {
            request = request.version_id(version);
        }
        let output = request
            .send()
            .await
            .map_err(|e| classify(e, &object.bucket, &object.key))?;
        let version = output
            .version_id()
            .filter(|v| !v.is_empty() && *v != "null")
            .or(output.e_tag())
            .map(|v| v.trim_matches('"').to_owned())
            .or_else(|| object.version_id.clone())
            .or_else(|| object.etag.clone())
            .unwrap_or_default();
        let content_length = output.content_length().and_then(|n| u64::try_from(n).ok());
        Ok(OpenedObject {
            e_tag: output.e_tag().map(str::to_owned),
            body: output.body,
            version,
            content_length,
        })
    }

    /// Reopens `object` from byte `offset` on (a ranged GET), pinned with If-Match to
    /// `e_tag` so a rewritten object is never stitched onto the old one's beginning.
    pub async fn open_from(
        &self,
        object: &ObjectRef,
        offset: u64,
        e_tag: Option<&str>,
    ) -> Result<aws_sdk_s3::primitives::ByteStream, FetchError> {
        let mut request = self
            .client_for(&object.bucket)
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .range(format!("bytes={offset}-"));
        if let Some(version) = &object.version_id {
            request = request.version_id(version);
        }
        if let Some(tag) = e_tag {
            request = request.if_match(tag);
        }
        let output = request
            .send()
            .await
            .map_err(|e| classify(e, &object.bucket, &object.key))?;
        Ok(output.body)
    }
}

/// Longest run of resumptions of one object's stream without progress in between.
pub const MAX_RESUMES: u32 = 5;

/// A byte stream that survives drops: when a read fails, [`ResumingReader`] asks
/// `reopen` for the rest of the object from the byte reached and carries on, so the
/// decompressor behind it never notices. Gives up (returns the error) after
/// [`MAX_RESUMES`] reopenings in a row that yielded no byte.
pub struct ResumingReader<R, F> {
    inner: R,
    reopen: F,
    offset: u64,
    failed_in_a_row: u32,
}

impl<R, F> ResumingReader<R, F>
where
    R: std::io::Read,
    F: FnMut(u64) -> std::io::Result<R>,
{
    pub fn new(inner: R, reopen: F) -> Self {
        ResumingReader {
            inner,
            reopen,
            offset: 0,
            failed_in_a_row: 0,
        }
    }

    /// Bytes read so far (what the tests observe of a resumed stream).
    #[cfg(test)]
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl<R, F> std::io::Read for ResumingReader<R, F>
where
    R: std::io::Read,
    F: FnMut(u64) -> std::io::Result<R>,
{
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Ok(n) => {
                    self.offset += n as u64;
                    if n > 0 {
                        self.failed_in_a_row = 0;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if self.failed_in_a_row >= MAX_RESUMES {
                        return Err(e);
                    }
                    self.failed_in_a_row += 1;
                    tracing::warn!(
                        offset = self.offset,
                        attempt = self.failed_in_a_row,
                        "S3 stream dropped at byte {}: {e}; resuming from there",
                        self.offset
                    );
                    metrics::counter!(crate::metrics::S3_RESUMES).increment(1);
                    match (self.reopen)(self.offset) {
                        Ok(rest) => self.inner = rest,
                        Err(reopen) if self.failed_in_a_row >= MAX_RESUMES => return Err(reopen),
                        Err(_) => {
                            // The stream stays broken; the next read fails again and
                            // tries another reopening.
                        }
                    }
                }
            }
        }
    }
}

/// The S3 client the daemon and `replay` use. A custom endpoint (LocalStack, MinIO)
/// rarely resolves `<bucket>.<host>` names: path-style addressing there, as also when
/// `aws.force_path_style` asks for it.
pub(crate) fn s3_client(sdk: &SdkConfig, aws: &AwsSettings) -> aws_sdk_s3::Client {
    let custom_endpoint = aws.endpoint_url.is_some()
        || sdk.endpoint_url().is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let s3_config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(aws.force_path_style || custom_endpoint)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

/// `<code> <message> (HTTP <status>)` of an S3 service error, for one-line errors.
pub(crate) fn service_error_detail(err: &impl ProvideErrorMetadata, status: Option<u16>) -> String {
    let code = err.code().unwrap_or_default();
    format!(
        "{} {} (HTTP {})",
        if code.is_empty() { "error" } else { code },
        err.message().unwrap_or_default(),
        status.unwrap_or_default()
    )
}

fn classify(e: SdkError<GetObjectError>, bucket: &str, key: &str) -> FetchError {
    let bucket = bucket.to_owned();
    let key = key.to_owned();
    let status = e.raw_response().map(|r| r.status().as_u16());
    match &e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let code = err.code().unwrap_or_default();
            let detail = service_error_detail(err, status);
            if code == "NoSuchBucket" {
                FetchError::NoSuchBucket {
                    bucket,
                    key,
                    detail,
                }
            } else if err.is_no_such_key()
                || code == "NoSuchKey"
                || code == "NoSuchVersion"
                || status == Some(404)
            {
                FetchError::NotFound { bucket, key }
            } else if code == "AccessDenied" || status == Some(403) {
                FetchError::AccessDenied {
                    bucket,
                    key,
                    detail,
                }
            } else {
                FetchError::Other {
                    bucket,
                    key,
                    detail,
                }
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => FetchError::Unreachable {
            bucket,
            key,
            detail: crate::errtext::network_cause(&e),
        },
        _ => FetchError::Other {
            bucket,
            key,
            detail: crate::errtext::chain(&e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{self, Cursor, Read};

    /// Serves `data[from..]` but fails after `fail_after` bytes of each opening.
    struct Flaky {
        data: std::sync::Arc<Vec<u8>>,
        pos: usize,
        left: usize,
    }

    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 && self.pos < self.data.len() {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "dropped"));
            }
            let n = buf.len().min(self.left).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            self.left -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_dropped_stream_resumes_from_the_byte_reached_through_the_same_decoder() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, &text).unwrap();
        let data = std::sync::Arc::new(enc.finish().unwrap());
        let chunk = data.len() / 7 + 1;
        let reopened_at = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let first = Flaky {
            data: data.clone(),
            pos: 0,
            left: chunk,
        };
        let (seen, all) = (reopened_at.clone(), data.clone());
        let source = ResumingReader::new(first, move |offset| {
            seen.lock().unwrap().push(offset);
            Ok(Flaky {
                data: all.clone(),
                pos: offset as usize,
                left: chunk,
            })
        });
        let mut decoded = Vec::new();
        crate::decode::decoder_with_kind(source)
            .map(|(reader, _)| reader)
            .unwrap()
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, text, "the same bytes, as if never dropped");
        let reopened_at = reopened_at.lock().unwrap();
        // Seven openings (the first and six resumptions) cover the object.
        assert_eq!(reopened_at.len(), data.len().div_ceil(chunk) - 1);
        assert_eq!(reopened_at.len(), 6);
        assert!(reopened_at.windows(2).all(|w| w[1] == w[0] + chunk as u64));
    }

    #[test]
    fn gives_up_after_repeated_failures_without_progress() {
        let broken = || Flaky {
            data: std::sync::Arc::new(vec![1u8; 100]),
            pos: 0,
            left: 0,
        };
        let mut reopenings = 0;
        let mut source = ResumingReader::new(broken(), |_| {
            reopenings += 1;
            Ok(broken())
        });
        let err = source.read(&mut [0u8; 10]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        drop(source);
        assert_eq!(reopenings, MAX_RESUMES);
        // A reader that never fails is passed through untouched.
        let mut plain = ResumingReader::new(Cursor::new(b"abc".to_vec()), |_| {
            Err::<Cursor<Vec<u8>>, _>(io::Error::other("never called"))
        });
        let mut out = Vec::new();
        plain.read_to_end(&mut out).unwrap();
        assert_eq!((out.as_slice(), plain.offset()), (&b"abc"[..], 3));
    }
}
