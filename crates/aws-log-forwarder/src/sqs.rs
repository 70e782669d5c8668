//! The SQS side: start-up access check, long polling, visibility heartbeats, deletion,
//! and moving messages that can never succeed to the dead-letter queue.
//!
//! Errors are turned into sentences an operator can act on (which permission is
//! missing, which queue does not exist in which region, which endpoint is
//! unreachable), because the first run of a forwarder fails on exactly these.
//!
//! Every API call is counted in `alf_sqs_api_calls_total{operation}`; deletions and
//! visibility changes go through [`SqsBatcher`] so that up to ten of them share a call.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
};
use tokio::sync::{mpsc, oneshot};

use crate::config::SqsSettings;
use crate::metrics as m;

/// SQS never returns more than this many messages per ReceiveMessage (and takes at
/// most this many entries per batch call).
pub const MAX_BATCH: usize = 10;

/// SQS refuses to keep a message invisible for longer than this after it was received
/// (ChangeMessageVisibility fails with "Total VisibilityTimeout for the message is
/// beyond the limit [43200 seconds]").
pub const VISIBILITY_CEILING: Duration = Duration::from_secs(12 * 3600);

/// Longest reason text put in a dead-letter message attribute (cut on a char boundary).
const REASON_ATTRIBUTE_MAX: usize = 1024;

fn count_call(operation: &'static str) {
    metrics::counter!(m::SQS_API_CALLS, "operation" => operation).increment(1);
}

/// `ApproximateNumberOfMessages` among a queue's attributes, when present and a number.
fn approximate_number_of_messages(attributes: &HashMap<QueueAttributeName, String>) -> Option<u64> {
    attributes
        .get(&QueueAttributeName::ApproximateNumberOfMessages)
        .and_then(|n| n.parse().ok())
}

/// The queue's `RedrivePolicy`, read at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedrivePolicy {
    /// ARN of the dead-letter queue.
    pub dead_letter_target_arn: String,
    pub max_receive_count: u32,
}

impl RedrivePolicy {
    /// Parses the JSON SQS returns (`maxReceiveCount` is a string or a number).
    pub fn parse(json: &str) -> Option<RedrivePolicy> {
        let value: serde_json::Value = serde_json::from_str(json).ok()?;
        let arn = value.get("deadLetterTargetArn")?.as_str()?.to_owned();
        let count = value.get("maxReceiveCount")?;
        let max_receive_count = count
            .as_u64()
            .or_else(|| count.as_str().and_then(|s| s.trim().parse().ok()))
            .and_then(|n| u32::try_from(n).ok())?;
        Some(RedrivePolicy {
            dead_letter_target_arn: arn,
            max_receive_count,
        })
    }

    /// `arn:aws:sqs:REGION:ACCOUNT:NAME` -> (account, name).
    pub fn target_account_and_name(&self) -> Option<(&str, &str)> {
        let mut parts = self.dead_letter_target_arn.splitn(6, ':');
        let (arn, _partition, service, _region) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let (account, name) = (parts.next()?, parts.next()?);
        (arn == "arn" && service == "sqs" && !name.is_empty()).then_some((account, name))
    }
}

/// Cuts `text` to at most `max` bytes on a char boundary.
pub(crate) fn cut(text: &str, max: usize) -> &str {
    &text[..crate::intake::floor_char_boundary(text, max)]
}

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
    /// When this process received it (the 12-hour visibility ceiling counts from here).
    pub received_at: std::time::Instant,
    /// How many times a forwarder re-queued this message as a fresh copy because its
    /// receives were used up by crashes (the `alf-crash-renewals` attribute).
    pub crash_renewals: u32,
}

/// The message attribute counting crash renewals (see the daemon).
pub const CRASH_RENEWALS_ATTRIBUTE: &str = "alf-crash-renewals";

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
            received_at: std::time::Instant::now(),
            crash_renewals: m
                .message_attributes()
                .and_then(|a| a.get(CRASH_RENEWALS_ATTRIBUTE))
                .and_then(|v| v.string_value())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
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
        let attributes = self
            .queue_attributes(&[
                QueueAttributeName::ApproximateNumberOfMessages,
                QueueAttributeName::VisibilityTimeout,
            ])
            .await?;
        Ok(approximate_number_of_messages(&attributes))
    }

    /// One `GetQueueAttributes` call for `names`: the attributes the queue returned.
    async fn queue_attributes(
        &self,
        names: &[QueueAttributeName],
    ) -> Result<HashMap<QueueAttributeName, String>, SqsError> {
        count_call("GetQueueAttributes");
        let mut request = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url);
        for name in names {
            request = request.attribute_names(name.clone());
        }
        let out = request
            .send()
            .await
            .map_err(|e| self.classify("GetQueueAttributes", e))?;
        Ok(out.attributes.unwrap_or_default())
    }

    /// Long-polls for up to `max` (at most 10) messages.
    pub async fn receive(&self, max: usize) -> Result<Vec<ReceivedMessage>, SqsError> {
        count_call("ReceiveMessage");
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(self.wait_time_seconds)
            .visibility_timeout(self.visibility_timeout_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names(CRASH_RENEWALS_ATTRIBUTE)
            .send()
            .await
            .map_err(|e| self.classify("ReceiveMessage", e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(ReceivedMessage::from_sdk)
            .collect())
    }

    /// Makes a message visible again after `seconds` (0: at once).
    pub async fn set_visibility(&self, receipt_handle: &str, seconds: i32) -> Result<(), SqsError> {
        count_call("ChangeMessageVisibility");
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
        count_call("DeleteMessage");
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.classify("DeleteMessage", e))
    }

    /// The visibility timeout the daemon asks for on every receive and heartbeat.
    pub fn visibility_timeout_seconds(&self) -> i32 {
        self.visibility_timeout_seconds
    }

    /// The queue's redrive policy (`None`: the queue has none, so a message that can
    /// never succeed would be received again and again).
    pub async fn redrive_policy(&self) -> Result<Option<RedrivePolicy>, SqsError> {
        let attributes = self
            .queue_attributes(&[QueueAttributeName::RedrivePolicy])
            .await?;
        Ok(attributes
            .get(&QueueAttributeName::RedrivePolicy)
            .and_then(|json| RedrivePolicy::parse(json)))
    }

    /// The URL of the redrive policy's dead-letter queue.
    pub async fn queue_url_of(&self, policy: &RedrivePolicy) -> Result<String, SqsError> {
        let Some((account, name)) = policy.target_account_and_name() else {
            return Err(SqsError::Other {
                operation: "GetQueueUrl",
                queue: self.queue_url.clone(),
                detail: format!(
                    "the redrive policy's deadLetterTargetArn {} is not an SQS queue ARN",
                    policy.dead_letter_target_arn
                ),
            });
        };
        count_call("GetQueueUrl");
        let out = self
            .client
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| self.classify("GetQueueUrl", e))?;
        out.queue_url()
            .map(str::to_owned)
            .ok_or_else(|| SqsError::Other {
                operation: "GetQueueUrl",
                queue: self.queue_url.clone(),
                detail: format!("no URL returned for {}", policy.dead_letter_target_arn),
            })
    }

    /// The queue's `ApproximateNumberOfMessages`.
    pub async fn visible_messages(&self) -> Result<Option<u64>, SqsError> {
        let attributes = self
            .queue_attributes(&[QueueAttributeName::ApproximateNumberOfMessages])
            .await?;
        Ok(approximate_number_of_messages(&attributes))
    }

    /// Sends a copy of `message` to `queue_url` with `attributes` (the reason it was
    /// moved there, where from). Used to dead-letter at once, and to renew a message
    /// before the 12-hour visibility ceiling (then `queue_url` is this queue).
    pub async fn send_copy(
        &self,
        queue_url: &str,
        message: &ReceivedMessage,
        attributes: &[(&str, String)],
    ) -> Result<(), SqsError> {
        count_call("SendMessage");
        let mut request = self
            .client
            .send_message()
            .queue_url(queue_url)
            .message_body(&message.body);
        for (name, value) in attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(cut(value, REASON_ATTRIBUTE_MAX))
                .build()
                .map_err(|e| SqsError::Other {
                    operation: "SendMessage",
                    queue: queue_url.to_owned(),
                    detail: e.to_string(),
                })?;
            request = request.message_attributes(*name, value);
        }
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.classify("SendMessage", e))
    }

    /// Deletes up to ten messages in one call; returns, per entry, `Ok` or the failure.
    async fn delete_batch(&self, receipts: &[String]) -> Result<Vec<Result<(), String>>, SqsError> {
        let entries: Vec<DeleteMessageBatchRequestEntry> = receipts
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .build()
                    .ok()
            })
            .collect();
        let request = self
            .client
            .delete_message_batch()
            .set_entries(Some(entries));
        let out = self
            .batch_call(
                "DeleteMessageBatch",
                receipts.len(),
                request.queue_url(&self.queue_url).send(),
            )
            .await?;
        let successful = out.successful().iter().map(|ok| ok.id());
        Ok(batch_results(receipts.len(), successful, out.failed()))
    }

    /// Changes the visibility of up to ten messages in one call.
    async fn change_visibility_batch(
        &self,
        entries: &[(String, i32)],
    ) -> Result<Vec<Result<(), String>>, SqsError> {
        let request_entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, (r, seconds))| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .visibility_timeout(*seconds)
                    .build()
                    .ok()
            })
            .collect();
        let request = self
            .client
            .change_message_visibility_batch()
            .set_entries(Some(request_entries));
        let out = self
            .batch_call(
                "ChangeMessageVisibilityBatch",
                entries.len(),
                request.queue_url(&self.queue_url).send(),
            )
            .await?;
        let successful = out.successful().iter().map(|ok| ok.id());
        Ok(batch_results(entries.len(), successful, out.failed()))
    }

    /// Counts a batch call of `entries` entries (the calls it saves show in
    /// [`m::SQS_BATCHED_ENTRIES`]), awaits it and phrases its failure.
    async fn batch_call<T, E>(
        &self,
        operation: &'static str,
        entries: usize,
        call: impl std::future::Future<Output = Result<T, SdkError<E>>>,
    ) -> Result<T, SqsError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        count_call(operation);
        metrics::counter!(m::SQS_BATCHED_ENTRIES, "operation" => operation)
            .increment(entries as u64);
        call.await.map_err(|e| self.classify(operation, e))
    }
}

/// Per-entry outcomes of a batch call, in request order: entries are sent with their
/// index as id; one the answer does not mention counts as failed.
fn batch_results<'a>(
    n: usize,
    successful: impl Iterator<Item = &'a str>,
    failed: &[aws_sdk_sqs::types::BatchResultErrorEntry],
) -> Vec<Result<(), String>> {
    let mut results = vec![Err("missing from the batch answer".to_owned()); n];
    let index = |id: &str| id.parse::<usize>().ok().filter(|&i| i < n);
    for id in successful {
        if let Some(i) = index(id) {
            results[i] = Ok(());
        }
    }
    for f in failed {
        if let Some(i) = index(f.id()) {
            results[i] = Err(format!("{} {}", f.code(), f.message().unwrap_or_default()));
        }
    }
    results
}

/// What [`SqsBatcher`] is asked to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acknowledgement {
    Delete,
    Visibility(i32),
}

struct Pending {
    receipt_handle: String,
    what: Acknowledgement,
    reply: oneshot::Sender<Result<(), SqsError>>,
}

/// How long the batcher waits for more entries before calling SQS: short next to a
/// visibility timeout, long enough for the messages that finish together.
pub const ACK_LINGER: Duration = Duration::from_millis(20);

/// Collects DeleteMessage and ChangeMessageVisibility requests of many message tasks
/// and sends them as DeleteMessageBatch / ChangeMessageVisibilityBatch calls of up to
/// ten entries, after [`ACK_LINGER`] or as soon as ten are waiting. An entry the batch
/// call reports as failed (or the whole call failing) is retried alone with the
/// single-message call, whose error is the one returned.
#[derive(Clone)]
pub struct SqsBatcher {
    tx: mpsc::Sender<Pending>,
}

impl SqsBatcher {
    /// Starts the batching task; it ends when every clone of the handle is dropped.
    pub fn start(poller: SqsPoller) -> SqsBatcher {
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(run_ack_batcher(poller, rx));
        SqsBatcher { tx }
    }

    async fn submit(&self, receipt_handle: &str, what: Acknowledgement) -> Result<(), SqsError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            receipt_handle: receipt_handle.to_owned(),
            what,
            reply,
        };
        let gone = || SqsError::Other {
            operation: "batch",
            queue: String::new(),
            detail: "the SQS batching task stopped".to_owned(),
        };
        self.tx.send(pending).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Deletes a message (batched with others finishing at the same time).
    pub async fn delete(&self, receipt_handle: &str) -> Result<(), SqsError> {
        self.submit(receipt_handle, Acknowledgement::Delete).await
    }

    /// Sets a message's visibility (batched).
    pub async fn set_visibility(&self, receipt_handle: &str, seconds: i32) -> Result<(), SqsError> {
        self.submit(receipt_handle, Acknowledgement::Visibility(seconds))
            .await
    }
}

async fn run_ack_batcher(poller: SqsPoller, mut rx: mpsc::Receiver<Pending>) {
    let mut deletes: Vec<Pending> = Vec::new();
    let mut visibility: Vec<Pending> = Vec::new();
    loop {
        let first = match rx.recv().await {
            Some(p) => p,
            None => return,
        };
        let deadline = tokio::time::Instant::now() + ACK_LINGER;
        push(first, &mut deletes, &mut visibility);
        let mut closed = false;
        while deletes.len() < MAX_BATCH && visibility.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => push(p, &mut deletes, &mut visibility),
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        // The calls run in their own task so the next entries keep being collected.
        let (d, v) = (
            std::mem::take(&mut deletes),
            std::mem::take(&mut visibility),
        );
        let p = poller.clone();
        tokio::spawn(async move {
            flush_deletes(&p, d).await;
            flush_visibility(&p, v).await;
        });
        if closed {
            return;
        }
    }
}

fn push(p: Pending, deletes: &mut Vec<Pending>, visibility: &mut Vec<Pending>) {
    match p.what {
        Acknowledgement::Delete => deletes.push(p),
        Acknowledgement::Visibility(_) => visibility.push(p),
    }
}

async fn flush_deletes(poller: &SqsPoller, entries: Vec<Pending>) {
    match entries.len() {
        0 => return,
        1 => {
            for p in entries {
                let r = poller.delete(&p.receipt_handle).await;
                let _ = p.reply.send(r);
            }
            return;
        }
        _ => {}
    }
    let receipts: Vec<String> = entries.iter().map(|p| p.receipt_handle.clone()).collect();
    let results = poller.delete_batch(&receipts).await;
    for (i, p) in entries.into_iter().enumerate() {
        let ok = matches!(&results, Ok(r) if matches!(r.get(i), Some(Ok(()))));
        let r = if ok {
            Ok(())
        } else {
            poller.delete(&p.receipt_handle).await
        };
        let _ = p.reply.send(r);
    }
}

async fn flush_visibility(poller: &SqsPoller, entries: Vec<Pending>) {
    let seconds = |p: &Pending| match p.what {
        Acknowledgement::Visibility(s) => s,
        Acknowledgement::Delete => 0,
    };
    match entries.len() {
        0 => return,
        1 => {
            for p in entries {
                let r = poller.set_visibility(&p.receipt_handle, seconds(&p)).await;
                let _ = p.reply.send(r);
            }
            return;
        }
        _ => {}
    }
    let batch: Vec<(String, i32)> = entries
        .iter()
        .map(|p| (p.receipt_handle.clone(), seconds(p)))
        .collect();
    let results = poller.change_visibility_batch(&batch).await;
    for (i, p) in entries.into_iter().enumerate() {
        let ok = matches!(&results, Ok(r) if matches!(r.get(i), Some(Ok(()))));
        let r = if ok {
            Ok(())
        } else {
            poller.set_visibility(&p.receipt_handle, seconds(&p)).await
        };
        let _ = p.reply.send(r);
    }
}

pub(crate) fn clamp_i32(v: u64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policies_parse_with_string_or_number_counts() {
        let p = RedrivePolicy::parse(
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:logs-dlq","maxReceiveCount":"5"}"#,
        )
        .unwrap();
        assert_eq!(p.max_receive_count, 5);
        assert_eq!(
            p.target_account_and_name(),
            Some(("000000000000", "logs-dlq"))
        );
        let p = RedrivePolicy::parse(
            r#"{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:1:q","maxReceiveCount":2}"#,
        )
        .unwrap();
        assert_eq!(p.max_receive_count, 2);
        assert_eq!(RedrivePolicy::parse("{}"), None);
        assert_eq!(RedrivePolicy::parse("not json"), None);
        let bad = RedrivePolicy {
            dead_letter_target_arn: "arn:aws:sns:us-east-1:1:topic".into(),
            max_receive_count: 1,
        };
        assert_eq!(bad.target_account_and_name(), None);
    }

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 10), "abc");
    }
}
