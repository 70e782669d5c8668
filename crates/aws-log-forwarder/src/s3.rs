//! Streaming S3 objects.
//!
//! `GetObject` returns a body stream; [`ObjectFetcher::open`] hands it back as an async
//! reader, and the pipeline bridges it into a blocking [`std::io::Read`] on a blocking
//! thread. Objects are never held in memory whole, whatever their size.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;

use crate::notification::ObjectRef;

/// An object ready to be read.
pub struct OpenedObject {
    pub body: aws_sdk_s3::primitives::ByteStream,
    /// What identifies this content for `event.id`: the version id on versioned
    /// buckets, else the ETag (a rewritten object gets new ids).
    pub version: String,
    pub content_length: Option<u64>,
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
}

impl ObjectFetcher {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        ObjectFetcher { client }
    }

    /// Starts a GetObject for `object` (its announced version when there is one).
    pub async fn open(&self, object: &ObjectRef) -> Result<OpenedObject, FetchError> {
        let mut request = self
            .client
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
            body: output.body,
            version,
            content_length,
        })
    }
}

fn classify(e: SdkError<GetObjectError>, bucket: &str, key: &str) -> FetchError {
    let bucket = bucket.to_owned();
    let key = key.to_owned();
    let status = e.raw_response().map(|r| r.status().as_u16());
    match &e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let code = err.code().unwrap_or_default();
            let detail = format!(
                "{} {} (HTTP {})",
                if code.is_empty() { "error" } else { code },
                err.message().unwrap_or_default(),
                status.unwrap_or_default()
            );
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
