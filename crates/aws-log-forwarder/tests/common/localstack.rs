//! LocalStack side of the integration tests: one CloudFormation stack per test, SDK
//! clients to drive it, and a daemon configuration pointing at it.
//!
//! Every test deploys the project's real template (`cloudformation/aws-log-forwarder.yaml`)
//! under its own stack name, so tests are independent and run in parallel, and the
//! template itself is exercised on every test run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_log_forwarder::Config;
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::{Message, QueueAttributeName};

use super::intake::TestIntake;

/// Environment variable holding the LocalStack endpoint (set by `scripts/test.sh`).
pub const ENDPOINT_ENV: &str = "ALF_TEST_AWS_ENDPOINT";
/// The key the daemon is configured with; the intake records what it receives.
pub const INTAKE_KEY: &str = "test-intake-key";
const REGION: &str = "us-east-1";
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(120);

/// The LocalStack endpoint. Fails the test (never skips it) when LocalStack is not set up,
/// telling the developer how to run the suite.
pub fn endpoint() -> String {
    match std::env::var(ENDPOINT_ENV) {
        Ok(v) if !v.trim().is_empty() => v.trim().trim_end_matches('/').to_owned(),
        _ => panic!(
            "{ENDPOINT_ENV} is not set. These integration tests run against LocalStack: \
             run them with `scripts/test.sh` (it installs and starts LocalStack, then runs \
             every check), or start one yourself with `scripts/localstack.sh install && \
             scripts/localstack.sh start` and `export {ENDPOINT_ENV}=<the printed endpoint> \
             AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1`."
        ),
    }
}

/// SDK configuration for LocalStack with its dummy credentials.
pub async fn sdk_config() -> SdkConfig {
    // The daemon under test uses the default credential chain, which reads these too.
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(
            std::env::var_os(var).is_some(),
            "{var} is not set: the daemon under test takes its credentials from the \
             environment. Run `scripts/test.sh`, or export AWS_ACCESS_KEY_ID=test \
             AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1."
        );
    }
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "alf-integration-tests",
        ))
        .load()
        .await
}

/// A unique, valid CloudFormation stack name for `test_name`.
fn stack_name(test_name: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let clean: String = test_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(60)
        .collect();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "alf-test-{clean}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Message counts of a queue, as SQS reports them (exact on LocalStack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

impl QueueCounts {
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

/// One deployed stack: the log bucket, its queue and dead-letter queue, and clients.
pub struct TestStack {
    pub name: String,
    pub endpoint: String,
    pub bucket: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub dlq_url: String,
    pub outputs: HashMap<String, String>,
    pub sdk: SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl TestStack {
    /// Deploys the template with its default parameters.
    pub async fn deploy(test_name: &str) -> TestStack {
        Self::deploy_with(test_name, &[]).await
    }

    /// Deploys the template with its default parameters and starts a test intake: how
    /// most tests begin.
    pub async fn deploy_with_intake(test_name: &str) -> (TestStack, TestIntake) {
        (Self::deploy(test_name).await, TestIntake::start().await)
    }

    /// Deploys the template with parameter overrides (e.g. `("MaxReceiveCount", "2")`)
    /// and waits for CREATE_COMPLETE.
    pub async fn deploy_with(test_name: &str, parameters: &[(&str, &str)]) -> TestStack {
        let endpoint = endpoint();
        let sdk = sdk_config().await;
        let template_path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../cloudformation/aws-log-forwarder.yaml"
        );
        let template = std::fs::read_to_string(template_path)
            .unwrap_or_else(|e| panic!("read the stack template {template_path}: {e}"));
        let cfn = aws_sdk_cloudformation::Client::new(&sdk);
        let name = stack_name(test_name);
        let started = Instant::now();
        cfn.create_stack()
            .stack_name(&name)
            .template_body(template)
            .capabilities(Capability::CapabilityIam)
            .set_parameters(Some(
                parameters
                    .iter()
                    .map(|(k, v)| {
                        Parameter::builder()
                            .parameter_key(*k)
                            .parameter_value(*v)
                            .build()
                    })
                    .collect(),
            ))
            .send()
            .await
            .unwrap_or_else(|e| panic!("create stack {name} at {endpoint}: {}", error_chain(&e)));

        let stack = loop {
            let described = cfn
                .describe_stacks()
                .stack_name(&name)
                .send()
                .await
                .unwrap_or_else(|e| panic!("describe stack {name}: {}", error_chain(&e)));
            let stack = described
                .stacks()
                .first()
                .cloned()
                .unwrap_or_else(|| panic!("stack {name} vanished while deploying"));
            let status = stack.stack_status().cloned();
            if status
                .as_ref()
                .is_some_and(|s| s.as_str().ends_with("_IN_PROGRESS"))
            {
                assert!(
                    started.elapsed() < DEPLOY_TIMEOUT,
                    "stack {name} still {status:?} after {DEPLOY_TIMEOUT:?}"
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            if status != Some(StackStatus::CreateComplete) {
                let events = cfn
                    .describe_stack_events()
                    .stack_name(&name)
                    .send()
                    .await
                    .map(|out| {
                        out.stack_events()
                            .iter()
                            .filter(|e| {
                                e.resource_status()
                                    .is_some_and(|s| s.as_str().contains("FAILED"))
                            })
                            .map(|e| {
                                format!(
                                    "  {} {:?}: {}",
                                    e.logical_resource_id().unwrap_or("?"),
                                    e.resource_status(),
                                    e.resource_status_reason().unwrap_or("")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                panic!("stack {name} ended in {status:?}; failed resources:\n{events}");
            }
            break stack;
        };

        let outputs: HashMap<String, String> = stack
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
            .collect();
        let output = |key: &str| {
            outputs
                .get(key)
                .cloned()
                .unwrap_or_else(|| panic!("stack {name} has no output {key}: {outputs:?}"))
        };
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        TestStack {
            bucket: output("BucketName"),
            queue_url: output("QueueUrl"),
            queue_arn: output("QueueArn"),
            dlq_url: output("DeadLetterQueueUrl"),
            name,
            endpoint,
            outputs,
            sdk,
            s3,
            sqs,
        }
    }

    /// Uploads `content` gzip-compressed, as AWS services deliver most logs.
    pub async fn put_gzip(&self, key: &str, content: &[u8]) {
        self.put_object(key, super::gzip(content)).await;
    }

    /// Uploads `body` as is.
    pub async fn put_object(&self, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put s3://{}/{key}: {}", self.bucket, error_chain(&e)));
    }

    /// The object's ETag without quotes: what identifies an unversioned object's content
    /// (and feeds `event.id`).
    pub async fn etag(&self, key: &str) -> String {
        self.s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("head s3://{}/{key}: {}", self.bucket, error_chain(&e)))
            .e_tag()
            .unwrap_or_else(|| panic!("s3://{}/{key} has no ETag", self.bucket))
            .trim_matches('"')
            .to_owned()
    }

    /// Sends a raw message body to the stack's queue (for hand-made notifications).
    pub async fn send_message(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("send to {}: {}", self.queue_url, error_chain(&e)));
    }

    /// Counts of the main queue.
    pub async fn queue_counts(&self) -> QueueCounts {
        self.counts_of(&self.queue_url).await
    }

    /// Counts of the dead-letter queue.
    pub async fn dlq_counts(&self) -> QueueCounts {
        self.counts_of(&self.dlq_url).await
    }

    async fn counts_of(&self, url: &str) -> QueueCounts {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .unwrap_or_else(|e| panic!("queue attributes of {url}: {}", error_chain(&e)));
        let get = |name: QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        QueueCounts {
            visible: get(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        }
    }

    /// Waits until the main queue holds no message at all (visible, in flight or
    /// delayed): every notification was deleted. Panics after `timeout`.
    pub async fn wait_queue_empty(&self, timeout: Duration) {
        let started = Instant::now();
        loop {
            let counts = self.queue_counts().await;
            if counts.total() == 0 {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "queue {} still holds messages after {timeout:?}: {counts:?}",
                self.queue_url
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until the dead-letter queue holds at least `n` messages; panics after `timeout`.
    pub async fn wait_dlq_messages(&self, n: u64, timeout: Duration) -> QueueCounts {
        let started = Instant::now();
        loop {
            let counts = self.dlq_counts().await;
            if counts.total() >= n {
                return counts;
            }
            assert!(
                started.elapsed() < timeout,
                "dead-letter queue holds {counts:?} after {timeout:?}, expected {n} messages \
                 (main queue: {:?})",
                self.queue_counts().await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Receives up to 10 messages of `queue_url` with their message attributes, hidden
    /// for `visibility_timeout` seconds only (0: visible again at once), so they stay
    /// for the daemon or the next look.
    pub async fn peek(&self, queue_url: &str, visibility_timeout: i32) -> Vec<Message> {
        self.sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(visibility_timeout)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap_or_else(|e| panic!("receive from {queue_url}: {}", error_chain(&e)))
            .messages()
            .to_vec()
    }

    /// Receives (and leaves in place) up to 10 messages of the dead-letter queue.
    pub async fn peek_dlq(&self) -> Vec<Message> {
        self.peek(&self.dlq_url, 1).await
    }

    /// Receives (and leaves in place) the dead-letter queue's messages with their
    /// message attributes, as (body, attribute name -> string value).
    pub async fn peek_dlq_with_attributes(&self) -> Vec<(String, HashMap<String, String>)> {
        self.peek_dlq()
            .await
            .iter()
            .map(|m| {
                let attributes = m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
                            .collect()
                    })
                    .unwrap_or_default();
                (m.body().unwrap_or_default().to_owned(), attributes)
            })
            .collect()
    }

    /// Where the daemon's dead-letter sink writes in the base config: a directory per
    /// stack under the system temp directory (never the working tree).
    pub fn dead_letter_dir(&self) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("alf-test-dead-letter-{}", self.name))
    }

    /// The daemon configuration for this stack and `intake`, as TOML: fast polling,
    /// short visibility and retry timings so failures show up within seconds.
    pub fn base_config_toml(&self, intake: &TestIntake) -> toml::Table {
        let text = format!(
            r#"
[aws]
region = "{REGION}"
endpoint_url = "{endpoint}"
force_path_style = true

[sqs]
queue_url = "{queue}"
max_messages_in_flight = 4
wait_time_seconds = 1
visibility_timeout_seconds = 10
heartbeat_interval_seconds = 3
failure_visibility_seconds = 1

[processing]
object_concurrency = 2

[intake]
url = "{intake}"
protocol = "sekoia"
key = "{INTAKE_KEY}"
gzip = true
timeout_seconds = 5
connect_timeout_seconds = 2
max_retries = 3
retry_initial_backoff_ms = 50
retry_max_backoff_ms = 500

[batch]
max_events = 500
linger_ms = 100

[log]
level = "info"
format = "text"

[dead_letter]
directory = "{dead_letter}"
"#,
            endpoint = self.endpoint,
            queue = self.queue_url,
            intake = intake.url(),
            dead_letter = self.dead_letter_dir().display(),
        );
        text.parse::<toml::Table>()
            .unwrap_or_else(|e| panic!("base test config is not TOML: {e}\n{text}"))
    }

    /// [`Self::base_config_toml`] with `overrides` (TOML text, e.g.
    /// `"[intake]\nprotocol = \"ndjson\""`) merged in, validated by the daemon's own
    /// `Config::from_toml_str`.
    pub fn daemon_config(&self, intake: &TestIntake, overrides: &str) -> Config {
        let mut table = self.base_config_toml(intake);
        let extra = overrides
            .parse::<toml::Table>()
            .unwrap_or_else(|e| panic!("config overrides are not TOML: {e}\n{overrides}"));
        merge_tables(&mut table, extra);
        let text =
            toml::to_string(&table).unwrap_or_else(|e| panic!("serialize the test config: {e}"));
        Config::from_toml_str(&text)
            .unwrap_or_else(|e| panic!("the daemon rejected the test config: {e}\n{text}"))
    }
}

/// Deep-merges `extra` into `base` (tables merge, everything else replaces).
fn merge_tables(base: &mut toml::Table, extra: toml::Table) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(e)) => merge_tables(b, e),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// An SDK error with its sources, which the SDK's `Display` leaves out.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
