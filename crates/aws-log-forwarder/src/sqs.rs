//! The SQS side: start-up access check, long polling, visibility heartbeats, deletion.
//!
//! Errors are turned into sentences an operator can act on (which permission is
//! missing, which queue does not exist in which region, which endpoint is
//! unreachable), because the first run of a forwarder fails on exactly these.

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};

use crate::config::SqsSettings;

/// SQS never returns more than this many messages per ReceiveMessage.
pub const MAX_BATCH: usize = 10;

/// An SQS failure, phrased for the operator.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SqsError {
    #[error(
        "access denied to SQS queue {queue}: the identity in use lacks sqs:ReceiveMessage/sqs:DeleteMessage/sqs:ChangeMessageVisibility/sqs:GetQueueAttributes on {queue}: attach the policy from cloudformation/aws-log-forwarder.yaml ({detail})"
    )]
    AccessDenied { queue: String, detail: String },
    #[error(
        "queue URL {queue} does not exist in region {region} (check sqs.queue_url and aws.region)"
    )]
    NoSuchQueue { queue: String, region: String },
    #[error(
        "no AWS credentials: the SDK's default chain found none (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws, web identity for IRSA, ECS task role, EC2 instance profile): provide one, e.g. the access key the CloudFormation stack outputs ({detail})"
    )]
    NoCredentials { detail: String },
    #[error("cannot reach SQS endpoint {endpoint} (queue {queue}): {detail}")]
    Unreachable {
        endpoint: String,
        queue: String,
        detail: String,
    },
    #[error("SQS {operation} on {queue} failed: {detail}")]
    Other {
        operation: &'static str,
        queue: String,
        detail: String,
    },
}

/// A received message, reduced to what processing needs.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// How many times SQS handed this message out (1 on first delivery).
    pub receive_count: u32,
}

impl ReceivedMessage {
    fn from_sdk(m: &Message) -> Option<Self> {
        let receive_count = m
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        Some(ReceivedMessage {
            message_id: m.message_id().unwrap_or_default().to_owned(),
            receipt_handle: m.receipt_handle()?.to_owned(),
            body: m.body().unwrap_or_default().to_owned(),
            receive_count,
        })
    }
}

/// Talks to one queue.
#[derive(Clone)]
pub struct SqsPoller {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    wait_time_seconds: i32,
    visibility_timeout_seconds: i32,
    /// For error messages: the custom endpoint, or "the AWS endpoint of REGION".
    endpoint: String,
}

impl SqsPoller {
    /// `endpoint_url`: the custom endpoint in use, if any (named in error messages).
    pub fn new(
        client: aws_sdk_sqs::Client,
        settings: &SqsSettings,
        endpoint_url: Option<&str>,
    ) -> Self {
        let endpoint = match endpoint_url {
            Some(url) => url.to_owned(),
            None => format!(
                "of region {}",
                client.config().region().map_or("(none)", |r| r.as_ref())
            ),
        };
        SqsPoller {
            client,
            endpoint,
            queue_url: settings.queue_url.clone(),
            wait_time_seconds: clamp_i32(u64::from(settings.wait_time_seconds)),
            visibility_timeout_seconds: clamp_i32(u64::from(settings.visibility_timeout_seconds)),
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    fn region(&self) -> String {
        self.client
            .config()
            .region()
            .map_or_else(|| "(none configured)".to_owned(), |r| r.to_string())
    }

    fn classify<E>(&self, operation: &'static str, e: SdkError<E>) -> SqsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let queue = self.queue_url.clone();
        match &e {
            SdkError::ServiceError(service) => {
                let err = service.err();
                let code = err.code().unwrap_or_default();
                let status = service.raw().status().as_u16();
                let detail = format!(
                    "{} {}",
                    if code.is_empty() { "HTTP error" } else { code },
                    err.message().unwrap_or_default()
                )
                .trim()
                .to_owned();
                if code.contains("NonExistentQueue") || code.contains("QueueDoesNotExist") {
                    SqsError::NoSuchQueue {
                        queue,
                        region: self.region(),
                    }
                } else if code.contains("AccessDenied")
                    || code.contains("NotAuthorized")
                    || status == 403
                {
                    SqsError::AccessDenied { queue, detail }
                } else {
                    SqsError::Other {
                        operation,
                        queue,
                        detail: format!("{detail} (HTTP {status})"),
                    }
                }
            }
            // The SDK reports a failed credentials chain as a dispatch failure, which
            // would read as a network problem.
            SdkError::DispatchFailure(_) if crate::errtext::is_credentials_error(&e) => {
                SqsError::NoCredentials {
                    detail: crate::errtext::chain(&e),
                }
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => SqsError::Unreachable {
                endpoint: self.endpoint.clone(),
                queue,
                detail: crate::errtext::network_cause(&e),
            },
            _ => SqsError::Other {
                operation,
                queue,
                detail: crate::errtext::chain(&e),
            },
        }
    }

    /// Checks at start-up that the queue exists and is readable, so a wrong URL or a
    /// missing permission fails the start with a clear message rather than as an
    /// endless stream of receive errors. Returns the queue's approximate backlog.
    pub async fn check_access(&self) -> Result<Option<u64>, SqsError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .map_err(|e| self.classify("GetQueueAttributes", e))?;
        Ok(out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse().ok()))
    }

    /// Long-polls for up to `max` (at most 10) messages.
    pub async fn receive(&self, max: usize) -> Result<Vec<ReceivedMessage>, SqsError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(self.wait_time_seconds)
            .visibility_timeout(self.visibility_timeout_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| self.classify("ReceiveMessage", e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(ReceivedMessage::from_sdk)
            .collect())
    }

    /// Keeps a message hidden for another visibility timeout while it is processed.
    pub async fn extend(&self, receipt_handle: &str) -> Result<(), SqsError> {
        self.set_visibility(receipt_handle, self.visibility_timeout_seconds)
            .await
    }

    /// Makes a message visible again after `seconds` (0: at once).
    pub async fn set_visibility(&self, receipt_handle: &str, seconds: i32) -> Result<(), SqsError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.classify("ChangeMessageVisibility", e))
    }

    /// Deletes a fully processed message.
    pub async fn delete(&self, receipt_handle: &str) -> Result<(), SqsError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.classify("DeleteMessage", e))
    }
}

pub(crate) fn clamp_i32(v: u64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}
