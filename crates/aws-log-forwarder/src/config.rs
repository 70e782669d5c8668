//! Daemon configuration: a TOML file plus `ALF_` environment overrides, validated once
//! at start-up into typed settings.
//!
//! Why two layers? The file format is deserialized into [`raw`] structs where every
//! key is optional, then [`Config::validate`] turns them into [`Config`] with defaults
//! applied and every problem reported as `section.key: what is wrong`. An operator
//! reading `config: intake.url: relative URL without a base` knows which line to fix;
//! a serde error such as "missing field `url`" does not say where.
//!
//! The intake key is resolved here (inline value, environment variable or file) and
//! held in an [`IntakeKey`] whose `Debug` and serialized forms never show it.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use alf_formats::{DetectRule, Format, FormatOptions};
use serde::Serialize;

/// Environment variables with this prefix override file settings
/// (`ALF_INTAKE__URL` sets `intake.url`).
pub const ENV_PREFIX: &str = "ALF";
/// Separates nested keys in environment variable names.
pub const ENV_SEPARATOR: &str = "__";

/// Top-level sections; anything else in a file is a typo worth reporting.
const SECTIONS: &[&str] = &[
    "aws",
    "sqs",
    "processing",
    "formats",
    "intake",
    "batch",
    "log",
    "metrics",
    "dead_letter",
];

/// A configuration problem, phrased for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A key has a value the daemon cannot use.
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    /// A required key is absent.
    #[error("{key}: required but not set{hint}")]
    Missing { key: String, hint: String },
    /// The file or the environment could not be read or deserialized.
    #[error("{0}")]
    Source(String),
}

impl ConfigError {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }

    fn missing(key: &str, hint: &str) -> Self {
        ConfigError::Missing {
            key: key.to_owned(),
            hint: if hint.is_empty() {
                String::new()
            } else {
                format!(" ({hint})")
            },
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub aws: AwsSettings,
    pub sqs: SqsSettings,
    pub processing: ProcessingSettings,
    pub formats: FormatsSettings,
    pub intake: IntakeSettings,
    pub batch: BatchSettings,
    pub log: LogSettings,
    pub metrics: MetricsSettings,
    pub dead_letter: DeadLetterSettings,
}

/// Where events the intake rejects for good are kept (`[dead_letter]`): never dropped.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum DeadLetterSettings {
    /// NDJSON files in a local directory (created if missing), a new file once the
    /// current one reaches `max_file_bytes`.
    Directory {
        directory: PathBuf,
        max_file_bytes: u64,
    },
    /// One gzipped NDJSON object per rejected batch under `s3://bucket/prefix`.
    S3 {
        s3_bucket: String,
        s3_prefix: String,
    },
}

/// What to do with an event larger than `intake.max_event_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OversizePolicy {
    /// Cut its largest string fields (`event.original` first) and tag it `_truncated`.
    Truncate,
    /// Send it to the dead-letter sink untouched.
    DeadLetter,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AwsSettings {
    /// None: the SDK's default chain (`AWS_REGION`, profile...), then the queue URL.
    pub region: Option<String>,
    /// A custom endpoint (LocalStack); implies path-style S3 addressing.
    pub endpoint_url: Option<String>,
    pub force_path_style: bool,
    /// A role to assume for every AWS call (S3, SQS): a log-archive account's reader
    /// role. Credentials come from STS and are refreshed before they expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assume_role_arn: Option<String>,
    /// The external id the role's trust policy requires (masked in `check-config`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "mask_option"
    )]
    pub external_id: Option<String>,
    /// The role session name (CloudTrail shows it as who acted).
    pub session_name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SqsSettings {
    pub queue_url: String,
    pub max_messages_in_flight: usize,
    pub wait_time_seconds: u32,
    pub visibility_timeout_seconds: u32,
    pub heartbeat_interval_seconds: u64,
    pub failure_visibility_seconds: u32,
    /// After a shutdown signal, how long in-flight messages may take to finish.
    pub shutdown_grace_seconds: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessingSettings {
    pub object_concurrency: usize,
    pub keep_original: bool,
    pub redact: bool,
    /// `[[processing.drop]]` rules, checked (see [`crate::filter`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<crate::filter::DropRuleSettings>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FormatsSettings {
    pub rules: Vec<FormatRule>,
}

/// One `[[formats.rules]]` entry; the regex was checked at load time.
#[derive(Debug, Clone, Serialize)]
pub struct FormatRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_regex: Option<String>,
    #[serde(serialize_with = "serialize_display")]
    pub format: Format,
    /// The format's own options as written (e.g. `vpc_flow_fields`), shown by
    /// `check-config`; what they mean is the format's business.
    #[serde(flatten)]
    pub options: std::collections::BTreeMap<String, serde_json::Value>,
    /// `options`, checked by the format.
    #[serde(skip)]
    pub format_options: FormatOptions,
}

fn serialize_display<T: fmt::Display, S: serde::Serializer>(
    value: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

impl FormatsSettings {
    /// The rules as the detector wants them.
    pub fn detect_rules(&self) -> Vec<DetectRule> {
        self.rules
            .iter()
            .map(|r| DetectRule {
                bucket: r.bucket.clone(),
                key_prefix: r.key_prefix.clone(),
                // Checked in validation; a rule whose regex somehow fails here simply
                // has no regex condition rather than crashing the daemon.
                key_regex: r
                    .key_regex
                    .as_deref()
                    .and_then(|re| regex::Regex::new(re).ok()),
                format: r.format,
                options: r.format_options.clone(),
            })
            .collect()
    }
}

/// How batches are encoded for the intake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IntakeProtocol {
    /// Sekoia.io: `POST {url}/batch` with `{"intake_key":..., "jsons":[...]}`.
    Sekoia,
    /// One JSON event per line.
    Ndjson,
    /// Elasticsearch `_bulk` with `create` actions (data streams).
    Elasticsearch,
}

impl FromStr for IntakeProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sekoia" => Ok(IntakeProtocol::Sekoia),
            "ndjson" => Ok(IntakeProtocol::Ndjson),
            "elasticsearch" => Ok(IntakeProtocol::Elasticsearch),
            other => Err(format!(
                "unknown protocol `{other}` (expected sekoia, ndjson or elasticsearch)"
            )),
        }
    }
}

impl fmt::Display for IntakeProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IntakeProtocol::Sekoia => "sekoia",
            IntakeProtocol::Ndjson => "ndjson",
            IntakeProtocol::Elasticsearch => "elasticsearch",
        })
    }
}

/// Where the intake key came from: shown by `check-config` instead of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Inline,
    Env(String),
    File(PathBuf),
}

/// The intake key. `Debug` and `Display` print `***`: a key in a log line or a panic
/// message would be a leaked credential.
#[derive(Clone, PartialEq, Eq)]
pub struct IntakeKey {
    value: String,
    source: KeySource,
}

impl IntakeKey {
    pub fn new(value: String, source: KeySource) -> Self {
        IntakeKey { value, source }
    }

    /// The secret itself; only the intake client should call this.
    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }
}

impl fmt::Debug for IntakeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntakeKey")
            .field("value", &"***")
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for IntakeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone)]
pub struct IntakeSettings {
    pub url: url::Url,
    pub protocol: IntakeProtocol,
    pub key: Option<IntakeKey>,
    pub gzip: bool,
    pub timeout_seconds: u64,
    pub connect_timeout_seconds: u64,
    pub max_retries: u32,
    pub retry_initial_backoff_ms: u64,
    pub retry_max_backoff_ms: u64,
    /// Index or data stream template; `{dataset}` is replaced by the event's dataset
    /// without its `aws.` prefix (`logs-aws.{dataset}-default` -> `logs-aws.cloudtrail-default`).
    pub elasticsearch_index: String,
    /// Per-dataset overrides of `elasticsearch_index` (`"aws.cloudtrail" = "ct-stream"`).
    pub elasticsearch_indices: std::collections::BTreeMap<String, String>,
    /// Batches sent at the same time (throughput over high-latency links).
    pub max_concurrent_requests: usize,
    /// Largest event sent as is (serialized JSON bytes); Sekoia's intake refuses more
    /// than 250,000 bytes per event.
    pub max_event_bytes: usize,
    pub oversize: OversizePolicy,
    /// PEM file of the CA(s) that signed the intake's certificate (a private CA),
    /// trusted in addition to the public roots.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain and private key presented to an intake that requires
    /// client certificates (mTLS); both or neither.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Proxy for intake requests (`http://proxy:3128`); `NO_PROXY` still applies.
    /// Unset: `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and `NO_PROXY` from the environment.
    pub proxy: Option<ProxyUrl>,
    /// Extra headers on every intake request (tenant ids, gateway tokens); values are
    /// treated as secrets: masked in `check-config` and never logged.
    pub headers: Vec<(String, MaskedValue)>,
}

/// `intake.proxy`: may carry `user:password`, which Debug and `check-config` mask.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl(url::Url);

impl ProxyUrl {
    /// The URL itself, password included; only the intake client should call this.
    pub fn expose(&self) -> &url::Url {
        &self.0
    }

    /// The URL with its password replaced by `***`.
    pub fn shown(&self) -> String {
        let mut shown = self.0.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        shown.to_string()
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

/// A configured value that may be a credential: `***` in Debug and Display.
#[derive(Clone, PartialEq, Eq)]
pub struct MaskedValue(String);

impl MaskedValue {
    pub fn new(value: String) -> Self {
        MaskedValue(value)
    }

    /// The value itself; only the intake client should call this.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MaskedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for MaskedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Headers the forwarder sets itself; `intake.headers` may not replace them.
const RESERVED_HEADERS: [&str; 5] = [
    "content-type",
    "content-encoding",
    "content-length",
    "host",
    "transfer-encoding",
];

#[derive(Debug, Clone, Serialize)]
pub struct BatchSettings {
    pub max_events: usize,
    pub max_bytes: usize,
    pub linger_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MetricsSettings {
    pub listen: Option<SocketAddr>,
}

/// Deserialization targets: every key optional, so validation can name what is missing.
mod raw {
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize)]
    pub struct Root {
        #[serde(default)]
        pub aws: Aws,
        #[serde(default)]
        pub sqs: Sqs,
        #[serde(default)]
        pub processing: Processing,
        #[serde(default)]
        pub formats: Formats,
        #[serde(default)]
        pub intake: Intake,
        #[serde(default)]
        pub batch: Batch,
        #[serde(default)]
        pub log: Log,
        #[serde(default)]
        pub metrics: Metrics,
        #[serde(default)]
        pub dead_letter: DeadLetter,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Aws {
        pub region: Option<String>,
        pub endpoint_url: Option<String>,
        pub force_path_style: Option<bool>,
        pub assume_role_arn: Option<String>,
        pub external_id: Option<String>,
        pub session_name: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Sqs {
        pub queue_url: Option<String>,
        pub max_messages_in_flight: Option<i64>,
        pub wait_time_seconds: Option<i64>,
        pub visibility_timeout_seconds: Option<i64>,
        pub heartbeat_interval_seconds: Option<i64>,
        pub failure_visibility_seconds: Option<i64>,
        pub shutdown_grace_seconds: Option<i64>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Processing {
        pub object_concurrency: Option<i64>,
        pub keep_original: Option<bool>,
        pub redact: Option<bool>,
        pub drop: Option<Vec<Drop>>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Drop {
        pub name: Option<String>,
        pub dataset: Option<String>,
        pub field: Option<String>,
        pub equals: Option<String>,
        pub prefix: Option<String>,
        pub regex: Option<String>,
        pub gt: Option<f64>,
        pub lt: Option<f64>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Formats {
        #[serde(default)]
        pub rules: Vec<Rule>,
    }

    /// Keys other than these four are the format's options, checked by the format
    /// (an unknown one is an error there).
    #[derive(Debug, Default, Deserialize)]
    pub struct Rule {
        pub bucket: Option<String>,
        pub key_prefix: Option<String>,
        pub key_regex: Option<String>,
        pub format: Option<String>,
        #[serde(flatten)]
        pub options: std::collections::BTreeMap<String, serde_json::Value>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Intake {
        pub url: Option<String>,
        pub protocol: Option<String>,
        pub key: Option<String>,
        pub key_env: Option<String>,
        pub key_file: Option<String>,
        pub gzip: Option<bool>,
        pub timeout_seconds: Option<i64>,
        pub connect_timeout_seconds: Option<i64>,
        pub max_retries: Option<i64>,
        pub retry_initial_backoff_ms: Option<i64>,
        pub retry_max_backoff_ms: Option<i64>,
        pub elasticsearch_index: Option<String>,
        pub elasticsearch_indices: Option<std::collections::BTreeMap<String, String>>,
        pub max_concurrent_requests: Option<i64>,
        pub max_event_bytes: Option<i64>,
        pub oversize: Option<String>,
        pub ca_file: Option<String>,
        pub client_cert: Option<String>,
        pub client_key: Option<String>,
        pub proxy: Option<String>,
        pub headers: Option<std::collections::BTreeMap<String, String>>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct DeadLetter {
        pub directory: Option<String>,
        pub max_file_bytes: Option<i64>,
        pub s3_bucket: Option<String>,
        pub s3_prefix: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Batch {
        pub max_events: Option<i64>,
        pub max_bytes: Option<i64>,
        pub linger_ms: Option<i64>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Log {
        pub level: Option<String>,
        pub format: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Metrics {
        pub listen: Option<String>,
    }
}

/// Reads a number key and checks its range; `default` when absent.
fn number<T: TryFrom<i64>>(
    key: &str,
    value: Option<i64>,
    default: T,
    min: i64,
    max: i64,
) -> Result<T, ConfigError> {
    let Some(v) = value else {
        return Ok(default);
    };
    if v < min || v > max {
        let range = if max == i64::MAX {
            format!("at least {min}")
        } else {
            format!("between {min} and {max}")
        };
        return Err(ConfigError::invalid(
            key,
            format!("{v} is out of range (expected {range})"),
        ));
    }
    T::try_from(v).map_err(|_| ConfigError::invalid(key, format!("{v} is out of range")))
}

/// Empty strings in the environment (`ALF_AWS__REGION=`) mean "not set".
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.trim().is_empty())
}

/// Turns the `config` crate's messages ("invalid type: ... for key `sqs.x`") into ours.
fn source_error(e: config::ConfigError) -> ConfigError {
    ConfigError::Source(e.to_string())
}

/// Stands in for the queue `replay` does not need, so validation stays in one place.
const REPLAY_PLACEHOLDER_QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/000000000000/replay";

impl Config {
    /// Parses TOML text (no environment overrides) and validates it.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        check_sections(text, "the configuration")?;
        let raw: raw::Root = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(source_error)?;
        Self::validate(raw, &EnvLookup::Process)
    }

    /// Loads a TOML file (optional) plus environment overrides (prefix `ALF_`, nested
    /// keys joined with `__`, e.g. `ALF_INTAKE__URL`) and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_raw(path).and_then(|raw| Self::validate(raw, &EnvLookup::Process))
    }

    /// [`Config::load`] for `replay`, which reads S3 directly: `sqs.queue_url` may be
    /// absent (it is then empty and unused).
    pub fn load_without_queue(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut raw = Self::load_raw(path)?;
        if non_empty(raw.sqs.queue_url.clone()).is_none() {
            raw.sqs.queue_url = Some(REPLAY_PLACEHOLDER_QUEUE.to_owned());
        }
        let mut config = Self::validate(raw, &EnvLookup::Process)?;
        if config.sqs.queue_url == REPLAY_PLACEHOLDER_QUEUE {
            config.sqs.queue_url.clear();
        }
        Ok(config)
    }

    fn load_raw(path: Option<&Path>) -> Result<raw::Root, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = path {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::Source(format!("cannot read {}: {e}", path.display())))?;
            check_sections(&text, &path.display().to_string())?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        builder = builder.add_source(env_source());
        builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(source_error)
    }

    fn validate(raw: raw::Root, env: &EnvLookup) -> Result<Config, ConfigError> {
        let aws = AwsSettings {
            region: non_empty(raw.aws.region),
            endpoint_url: match non_empty(raw.aws.endpoint_url) {
                Some(u) => {
                    Some(http_url("aws.endpoint_url", &u, "http://127.0.0.1:4566")?.to_string())
                }
                None => None,
            },
            force_path_style: raw.aws.force_path_style.unwrap_or(false),
            assume_role_arn: match non_empty(raw.aws.assume_role_arn) {
                Some(arn) => Some(role_arn("aws.assume_role_arn", arn)?),
                None => None,
            },
            external_id: non_empty(raw.aws.external_id),
            session_name: match non_empty(raw.aws.session_name) {
                Some(name) => session_name(name)?,
                None => DEFAULT_SESSION_NAME.to_owned(),
            },
        };
        if aws.assume_role_arn.is_none() && aws.external_id.is_some() {
            return Err(ConfigError::invalid(
                "aws.external_id",
                "only used with aws.assume_role_arn: set the role to assume, or remove it",
            ));
        }

        let queue_url = non_empty(raw.sqs.queue_url).ok_or_else(|| {
            ConfigError::missing(
                "sqs.queue_url",
                "e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/aws-logs",
            )
        })?;
        http_url(
            "sqs.queue_url",
            &queue_url,
            "https://sqs.eu-west-1.amazonaws.com/123456789012/aws-logs",
        )?;
        let visibility_timeout_seconds = number(
            "sqs.visibility_timeout_seconds",
            raw.sqs.visibility_timeout_seconds,
            300u32,
            1,
            43_200,
        )?;
        let heartbeat_interval_seconds = number(
            "sqs.heartbeat_interval_seconds",
            raw.sqs.heartbeat_interval_seconds,
            60u64,
            1,
            43_200,
        )?;
        if heartbeat_interval_seconds >= u64::from(visibility_timeout_seconds) {
            return Err(ConfigError::invalid(
                "sqs.heartbeat_interval_seconds",
                format!(
                    "{heartbeat_interval_seconds} must be shorter than sqs.visibility_timeout_seconds ({visibility_timeout_seconds}), or messages become visible to other consumers while still being processed"
                ),
            ));
        }
        let sqs = SqsSettings {
            queue_url,
            max_messages_in_flight: number(
                "sqs.max_messages_in_flight",
                raw.sqs.max_messages_in_flight,
                10usize,
                1,
                10_000,
            )?,
            wait_time_seconds: number(
                "sqs.wait_time_seconds",
                raw.sqs.wait_time_seconds,
                20u32,
                0,
                20,
            )?,
            visibility_timeout_seconds,
            heartbeat_interval_seconds,
            failure_visibility_seconds: number(
                "sqs.failure_visibility_seconds",
                raw.sqs.failure_visibility_seconds,
                30u32,
                0,
                43_200,
            )?,
            shutdown_grace_seconds: number(
                "sqs.shutdown_grace_seconds",
                raw.sqs.shutdown_grace_seconds,
                25u64,
                0,
                3_600,
            )?,
        };

        let processing = ProcessingSettings {
            object_concurrency: number(
                "processing.object_concurrency",
                raw.processing.object_concurrency,
                4usize,
                1,
                1_024,
            )?,
            keep_original: raw.processing.keep_original.unwrap_or(false),
            redact: raw.processing.redact.unwrap_or(true),
            drop: validate_drop_rules(raw.processing.drop.unwrap_or_default())?,
        };

        let mut rules = Vec::with_capacity(raw.formats.rules.len());
        for (i, rule) in raw.formats.rules.into_iter().enumerate() {
            rules.push(validate_rule(i, rule)?);
        }
        let formats = FormatsSettings { rules };

        let intake = validate_intake(raw.intake, env)?;

        let batch = BatchSettings {
            max_events: number(
                "batch.max_events",
                raw.batch.max_events,
                5_000usize,
                1,
                1_000_000,
            )?,
            max_bytes: number(
                "batch.max_bytes",
                raw.batch.max_bytes,
                4_000_000usize,
                1_024,
                1 << 30,
            )?,
            linger_ms: number("batch.linger_ms", raw.batch.linger_ms, 1_000u64, 0, 600_000)?,
        };

        let level = non_empty(raw.log.level).unwrap_or_else(|| "info".to_owned());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            return Err(ConfigError::invalid(
                "log.level",
                format!(
                    "`{level}` is not a level or filter (expected error, warn, info, debug, trace, or a RUST_LOG-style filter)"
                ),
            ));
        }
        let format = match non_empty(raw.log.format).as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "log.format",
                    format!("unknown format `{other}` (expected json or text)"),
                ));
            }
        };
        let log = LogSettings { level, format };

        let metrics = MetricsSettings {
            listen: match non_empty(raw.metrics.listen) {
                None => None,
                Some(addr) => Some(addr.parse::<SocketAddr>().map_err(|e| {
                    ConfigError::invalid(
                        "metrics.listen",
                        format!(
                            "`{addr}`: {e} (expected an address and port, e.g. 127.0.0.1:9898)"
                        ),
                    )
                })?),
            },
        };

        let dead_letter = validate_dead_letter(raw.dead_letter)?;

        Ok(Config {
            aws,
            sqs,
            processing,
            formats,
            intake,
            batch,
            log,
            metrics,
            dead_letter,
        })
    }

    /// The effective configuration as JSON, with the intake key replaced by `***` and
    /// its source (`key_env`, `key_file` or inline) shown instead.
    pub fn masked(&self) -> serde_json::Value {
        let i = &self.intake;
        let mut intake = serde_json::json!({
            "url": i.url.as_str(),
            "protocol": i.protocol.to_string(),
            "gzip": i.gzip,
            "timeout_seconds": i.timeout_seconds,
            "connect_timeout_seconds": i.connect_timeout_seconds,
            "max_retries": i.max_retries,
            "retry_initial_backoff_ms": i.retry_initial_backoff_ms,
            "retry_max_backoff_ms": i.retry_max_backoff_ms,
            "elasticsearch_index": i.elasticsearch_index,
            "elasticsearch_indices": i.elasticsearch_indices,
            "max_concurrent_requests": i.max_concurrent_requests,
            "max_event_bytes": i.max_event_bytes,
            "oversize": i.oversize,
            "ca_file": i.ca_file.as_ref().map(|p| p.display().to_string()),
            "client_cert": i.client_cert.as_ref().map(|p| p.display().to_string()),
            "client_key": i.client_key.as_ref().map(|p| p.display().to_string()),
            // A proxy URL may carry user:password.
            "proxy": i.proxy.as_ref().map(ProxyUrl::shown),
            "headers": (!i.headers.is_empty()).then(|| {
                i.headers
                    .iter()
                    .map(|(name, _)| (name.clone(), serde_json::Value::from("***")))
                    .collect::<serde_json::Map<_, _>>()
            }),
        });
        if let (Some(key), Some(obj)) = (&i.key, intake.as_object_mut()) {
            obj.insert("key".into(), "***".into());
            match key.source() {
                KeySource::Inline => {}
                KeySource::Env(var) => {
                    obj.insert("key_env".into(), var.clone().into());
                }
                KeySource::File(path) => {
                    obj.insert("key_file".into(), path.display().to_string().into());
                }
            }
        }
        let to_value = |v: serde_json::Result<serde_json::Value>| v.unwrap_or_default();
        let mut root = serde_json::json!({
            "aws": to_value(serde_json::to_value(&self.aws)),
            "sqs": to_value(serde_json::to_value(&self.sqs)),
            "processing": to_value(serde_json::to_value(&self.processing)),
            "formats": to_value(serde_json::to_value(&self.formats)),
            "intake": intake,
            "batch": to_value(serde_json::to_value(&self.batch)),
            "log": to_value(serde_json::to_value(&self.log)),
            "metrics": to_value(serde_json::to_value(&self.metrics)),
            "dead_letter": to_value(serde_json::to_value(&self.dead_letter)),
        });
        drop_nulls(&mut root);
        root
    }

    /// [`Config::masked`] as TOML.
    pub fn masked_toml(&self) -> String {
        toml::to_string_pretty(&self.masked()).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// TOML has no null: unset optional keys are left out.
fn drop_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// The environment source: `ALF_SQS__QUEUE_URL` -> `sqs.queue_url`. Values stay
/// strings (no `try_parsing`): numbers and booleans are converted when deserialized
/// into a numeric key, while a key such as `ALF_INTAKE__KEY=00123` keeps its zeros.
fn env_source() -> config::Environment {
    config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("_")
        .separator(ENV_SEPARATOR)
        .ignore_empty(true)
}

/// Reports unknown top-level sections of a file (`[intak]`), which would otherwise be
/// ignored: environment variables may carry unrelated `ALF_*` names, files may not.
fn check_sections(text: &str, origin: &str) -> Result<(), ConfigError> {
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| ConfigError::Source(format!("{origin} is not valid TOML: {e}")))?;
    for key in table.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            return Err(ConfigError::invalid(
                key.clone(),
                format!("unknown section (expected one of: {})", SECTIONS.join(", ")),
            ));
        }
    }
    Ok(())
}

/// Parses an absolute http(s) URL.
fn http_url(key: &str, text: &str, example: &str) -> Result<url::Url, ConfigError> {
    let url = url::Url::parse(text.trim())
        .map_err(|e| ConfigError::invalid(key, format!("{e} (expected e.g. {example})")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ConfigError::invalid(
            key,
            format!(
                "scheme `{}` is not http or https (expected e.g. {example})",
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::invalid(
            key,
            format!("no host (expected e.g. {example})"),
        ));
    }
    Ok(url)
}

/// The role session name when `aws.session_name` is not set.
pub const DEFAULT_SESSION_NAME: &str = "aws-log-forwarder";

/// `arn:<partition>:iam::<account>:role/<name>`.
fn role_arn(key: &str, arn: String) -> Result<String, ConfigError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let valid = matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if !partition.is_empty()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && resource.starts_with("role/")
            && resource.len() > 5);
    if valid {
        Ok(arn)
    } else {
        Err(ConfigError::invalid(
            key,
            format!(
                "{arn:?} is not an IAM role ARN (expected arn:aws:iam::123456789012:role/log-reader)"
            ),
        ))
    }
}

/// STS's rule for role session names: 2-64 of `[A-Za-z0-9+=,.@_-]`.
fn session_name(name: String) -> Result<String, ConfigError> {
    let valid = (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if valid {
        Ok(name)
    } else {
        Err(ConfigError::invalid(
            "aws.session_name",
            format!("{name:?}: 2 to 64 letters, digits or +=,.@_- (STS's rule)"),
        ))
    }
}

fn mask_option<S: serde::Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_str("***"),
        None => s.serialize_none(),
    }
}

/// `[[processing.drop]]`: compiled once here so a bad rule stops the start.
fn validate_drop_rules(
    raw: Vec<raw::Drop>,
) -> Result<Vec<crate::filter::DropRuleSettings>, ConfigError> {
    let rules: Vec<crate::filter::DropRuleSettings> = raw
        .into_iter()
        .map(|r| crate::filter::DropRuleSettings {
            name: r.name.unwrap_or_default(),
            dataset: r.dataset.unwrap_or_default(),
            field: r.field.unwrap_or_default(),
            equals: r.equals,
            prefix: r.prefix,
            regex: r.regex,
            gt: r.gt,
            lt: r.lt,
        })
        .collect();
    crate::filter::EventFilter::new(&rules).map_err(|e| ConfigError::Source(e.to_string()))?;
    Ok(rules)
}

fn validate_rule(i: usize, rule: raw::Rule) -> Result<FormatRule, ConfigError> {
    let key = |k: &str| format!("formats.rules[{i}].{k}");
    let format_name = non_empty(rule.format)
        .ok_or_else(|| ConfigError::missing(&key("format"), "e.g. format = \"vpc-flow\""))?;
    let format = format_name
        .parse::<Format>()
        .map_err(|e| ConfigError::invalid(key("format"), e.to_string()))?;
    if let Some(re) = &rule.key_regex {
        regex::Regex::new(re).map_err(|e| ConfigError::invalid(key("key_regex"), e.to_string()))?;
    }
    if rule.bucket.is_none() && rule.key_prefix.is_none() && rule.key_regex.is_none() {
        return Err(ConfigError::invalid(
            format!("formats.rules[{i}]"),
            "a rule needs at least one of bucket, key_prefix or key_regex (a rule matching everything would hide automatic detection)",
        ));
    }
    let format_options =
        format
            .options_from(rule.options.clone())
            .map_err(|errors| match errors.into_iter().next() {
                Some(e) => ConfigError::invalid(key(&e.option), e.message),
                None => ConfigError::invalid(format!("formats.rules[{i}]"), "invalid options"),
            })?;
    Ok(FormatRule {
        bucket: rule.bucket,
        key_prefix: rule.key_prefix,
        key_regex: rule.key_regex,
        format,
        options: rule.options,
        format_options,
    })
}

/// Where environment variables are read from (tests substitute a map).
enum EnvLookup {
    Process,
    #[cfg(test)]
    Map(std::collections::HashMap<String, String>),
}

impl EnvLookup {
    fn get(&self, name: &str) -> Option<String> {
        match self {
            EnvLookup::Process => std::env::var(name).ok(),
            #[cfg(test)]
            EnvLookup::Map(m) => m.get(name).cloned(),
        }
    }
}

fn validate_intake(raw: raw::Intake, env: &EnvLookup) -> Result<IntakeSettings, ConfigError> {
    let example = "https://intake.sekoia.io";
    let url_text = non_empty(raw.url)
        .ok_or_else(|| ConfigError::missing("intake.url", &format!("e.g. {example}")))?;
    let url = http_url("intake.url", &url_text, example)?;
    let protocol = match non_empty(raw.protocol) {
        None => IntakeProtocol::Sekoia,
        Some(p) => p
            .parse::<IntakeProtocol>()
            .map_err(|e| ConfigError::invalid("intake.protocol", e))?,
    };

    let key = resolve_key(raw.key, raw.key_env, raw.key_file, env)?;
    if protocol == IntakeProtocol::Sekoia && key.is_none() {
        return Err(ConfigError::missing(
            "intake.key",
            "the sekoia protocol needs an intake key: set one of intake.key, intake.key_env or intake.key_file",
        ));
    }

    let client_cert = existing_file("intake.client_cert", raw.client_cert)?;
    let client_key = existing_file("intake.client_key", raw.client_key)?;
    if client_cert.is_some() != client_key.is_some() {
        return Err(ConfigError::invalid(
            if client_cert.is_some() {
                "intake.client_key"
            } else {
                "intake.client_cert"
            },
            "intake.client_cert and intake.client_key go together (the certificate chain and its private key, PEM): set both or neither",
        ));
    }

    let retry_initial_backoff_ms = number(
        "intake.retry_initial_backoff_ms",
        raw.retry_initial_backoff_ms,
        200u64,
        1,
        600_000,
    )?;
    let retry_max_backoff_ms = number(
        "intake.retry_max_backoff_ms",
        raw.retry_max_backoff_ms,
        30_000u64,
        1,
        3_600_000,
    )?;
    if retry_max_backoff_ms < retry_initial_backoff_ms {
        return Err(ConfigError::invalid(
            "intake.retry_max_backoff_ms",
            format!(
                "{retry_max_backoff_ms} is below intake.retry_initial_backoff_ms ({retry_initial_backoff_ms})"
            ),
        ));
    }
    let elasticsearch_index = non_empty(raw.elasticsearch_index)
        .unwrap_or_else(|| "logs-aws.{dataset}-default".to_owned());
    if elasticsearch_index.contains(['"', '\\', '\n']) {
        return Err(ConfigError::invalid(
            "intake.elasticsearch_index",
            "must not contain quotes, backslashes or line breaks",
        ));
    }
    let elasticsearch_indices = raw.elasticsearch_indices.unwrap_or_default();
    for (dataset, index) in &elasticsearch_indices {
        if index.trim().is_empty() || index.contains(['"', '\\', '\n']) {
            return Err(ConfigError::invalid(
                format!("intake.elasticsearch_indices.{dataset}"),
                "must be a non-empty index name without quotes, backslashes or line breaks",
            ));
        }
    }
    // Sekoia's HTTP intake refuses events over 250,000 bytes; the others have no
    // documented limit, 1 MiB keeps a runaway record from stalling a batch.
    let default_max_event_bytes = match protocol {
        IntakeProtocol::Sekoia => 250_000usize,
        IntakeProtocol::Ndjson | IntakeProtocol::Elasticsearch => 1 << 20,
    };
    let oversize = match non_empty(raw.oversize).as_deref() {
        None | Some("truncate") => OversizePolicy::Truncate,
        Some("dead_letter") => OversizePolicy::DeadLetter,
        Some(other) => {
            return Err(ConfigError::invalid(
                "intake.oversize",
                format!("unknown policy `{other}` (expected truncate or dead_letter)"),
            ));
        }
    };
    Ok(IntakeSettings {
        url,
        protocol,
        key,
        gzip: raw.gzip.unwrap_or(true),
        timeout_seconds: number(
            "intake.timeout_seconds",
            raw.timeout_seconds,
            30u64,
            1,
            3_600,
        )?,
        connect_timeout_seconds: number(
            "intake.connect_timeout_seconds",
            raw.connect_timeout_seconds,
            10u64,
            1,
            600,
        )?,
        max_retries: number("intake.max_retries", raw.max_retries, 8u32, 0, 1_000)?,
        retry_initial_backoff_ms,
        retry_max_backoff_ms,
        elasticsearch_index,
        elasticsearch_indices,
        max_concurrent_requests: number(
            "intake.max_concurrent_requests",
            raw.max_concurrent_requests,
            4usize,
            1,
            256,
        )?,
        max_event_bytes: number(
            "intake.max_event_bytes",
            raw.max_event_bytes,
            default_max_event_bytes,
            1_024,
            100 << 20,
        )?,
        oversize,
        ca_file: existing_file("intake.ca_file", raw.ca_file)?,
        client_cert,
        client_key,
        proxy: match non_empty(raw.proxy) {
            Some(p) => Some(ProxyUrl(http_url(
                "intake.proxy",
                &p,
                "http://proxy.internal:3128",
            )?)),
            None => None,
        },
        headers: validate_headers(raw.headers.unwrap_or_default())?,
    })
}

/// A path that must name a readable file (certificates, keys): checked at start-up so
/// a typo is a one-line configuration error.
fn existing_file(key: &str, path: Option<String>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(path) = non_empty(path) else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(Some(path)),
        Ok(_) => Err(ConfigError::invalid(
            key,
            format!("{} is not a file", path.display()),
        )),
        Err(e) => Err(ConfigError::invalid(
            key,
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

/// `intake.headers`: valid HTTP names and values, none the forwarder sets itself.
fn validate_headers(
    raw: std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, MaskedValue)>, ConfigError> {
    let mut headers = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        let key = format!("intake.headers.{name}");
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ConfigError::invalid(&key, "not a valid HTTP header name"));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(ConfigError::invalid(
                &key,
                "set by the forwarder itself; remove it",
            ));
        }
        if reqwest::header::HeaderValue::from_str(&value).is_err() {
            // The value is not echoed: it may be a credential.
            return Err(ConfigError::invalid(
                &key,
                "the value is not a valid HTTP header value (control characters or non-ASCII)",
            ));
        }
        headers.push((name, MaskedValue::new(value)));
    }
    Ok(headers)
}

/// `[dead_letter]`: a directory (default `dead-letter` under the working directory) or
/// an S3 bucket, not both. Whether it can be written is checked at start-up
/// ([`crate::deadletter::DeadLetterSink::open`]).
fn validate_dead_letter(raw: raw::DeadLetter) -> Result<DeadLetterSettings, ConfigError> {
    let directory = non_empty(raw.directory);
    let max_file_bytes = number(
        "dead_letter.max_file_bytes",
        raw.max_file_bytes,
        64u64 << 20,
        4_096,
        1 << 40,
    )?;
    match non_empty(raw.s3_bucket) {
        Some(bucket) => {
            if directory.is_some() {
                return Err(ConfigError::invalid(
                    "dead_letter.s3_bucket",
                    "set either dead_letter.directory or dead_letter.s3_bucket, not both",
                ));
            }
            let mut prefix =
                non_empty(raw.s3_prefix).unwrap_or_else(|| "aws-log-forwarder/dead-letter/".into());
            if !prefix.ends_with('/') {
                prefix.push('/');
            }
            Ok(DeadLetterSettings::S3 {
                s3_bucket: bucket,
                s3_prefix: prefix.trim_start_matches('/').to_owned(),
            })
        }
        None => Ok(DeadLetterSettings::Directory {
            directory: PathBuf::from(directory.unwrap_or_else(|| "dead-letter".into())),
            max_file_bytes,
        }),
    }
}

/// Resolves the intake key from exactly one of its three sources, trimmed (files and
/// `echo`ed variables usually end with a newline).
fn resolve_key(
    inline: Option<String>,
    key_env: Option<String>,
    key_file: Option<String>,
    env: &EnvLookup,
) -> Result<Option<IntakeKey>, ConfigError> {
    let inline = non_empty(inline);
    let key_env = non_empty(key_env);
    let key_file = non_empty(key_file);
    let given = [inline.is_some(), key_env.is_some(), key_file.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if given > 1 {
        return Err(ConfigError::invalid(
            "intake.key",
            "set only one of intake.key, intake.key_env and intake.key_file",
        ));
    }
    let key = if let Some(value) = inline {
        IntakeKey::new(value.trim().to_owned(), KeySource::Inline)
    } else if let Some(var) = key_env {
        let value = env.get(&var).ok_or_else(|| {
            ConfigError::invalid(
                "intake.key_env",
                format!("environment variable {var} is not set"),
            )
        })?;
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(ConfigError::invalid(
                "intake.key_env",
                format!("environment variable {var} is empty"),
            ));
        }
        IntakeKey::new(value, KeySource::Env(var))
    } else if let Some(path) = key_file {
        let path = PathBuf::from(path);
        let value = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::invalid(
                "intake.key_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(ConfigError::invalid(
                "intake.key_file",
                format!("{} is empty", path.display()),
            ));
        }
        IntakeKey::new(value, KeySource::File(path))
    } else {
        return Ok(None);
    };
    if key.expose().contains(['\r', '\n']) {
        // A multi-line key cannot go in a header and is certainly a wrong file.
        return Err(ConfigError::invalid(
            "intake.key",
            "the key contains a line break",
        ));
    }
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[sqs]
queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/logs"
[intake]
url = "https://intake.sekoia.io"
key = "  secret-intake-key-123\n"
"#;

    fn parse_with_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        check_sections(text, "test")?;
        let raw: raw::Root = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(source_error)?;
        let map = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::validate(raw, &EnvLookup::Map(map))
    }

    fn error_of(text: &str) -> String {
        match Config::from_toml_str(text) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn minimal_config_gets_defaults_and_a_trimmed_key() {
        let c = Config::from_toml_str(MINIMAL).unwrap();
        assert_eq!(c.sqs.max_messages_in_flight, 10);
        assert_eq!(c.sqs.wait_time_seconds, 20);
        assert_eq!(c.sqs.visibility_timeout_seconds, 300);
        assert_eq!(c.sqs.shutdown_grace_seconds, 25);
        assert_eq!(c.processing.object_concurrency, 4);
        assert!(c.processing.redact);
        assert!(!c.processing.keep_original);
        assert_eq!(c.intake.protocol, IntakeProtocol::Sekoia);
        assert!(c.intake.gzip);
        assert_eq!(c.intake.max_retries, 8);
        assert_eq!(c.batch.max_events, 5000);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(
            c.intake.key.as_ref().map(IntakeKey::expose),
            Some("secret-intake-key-123")
        );
    }

    #[test]
    fn relative_intake_url_names_the_key() {
        let text = MINIMAL.replace("https://intake.sekoia.io", "intake.sekoia.io");
        assert_eq!(
            error_of(&text),
            "intake.url: relative URL without a base (expected e.g. https://intake.sekoia.io)"
        );
    }

    #[test]
    fn each_validation_error_names_its_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "wait_time_seconds = 30",
                "[sqs]\n",
                "sqs.wait_time_seconds: 30 is out of range",
            ),
            (
                "max_messages_in_flight = 0",
                "[sqs]\n",
                "sqs.max_messages_in_flight:",
            ),
            (
                "heartbeat_interval_seconds = 400",
                "[sqs]\n",
                "sqs.heartbeat_interval_seconds:",
            ),
            (
                "protocol = \"splunk\"",
                "[intake]\n",
                "intake.protocol: unknown protocol `splunk`",
            ),
            (
                "url = \"ftp://x\"",
                "[intake]\n",
                "intake.url: scheme `ftp`",
            ),
            (
                "retry_max_backoff_ms = 10",
                "[intake]\n",
                "intake.retry_max_backoff_ms:",
            ),
            (
                "object_concurrency = 0",
                "[processing]\n",
                "processing.object_concurrency:",
            ),
            (
                "format = \"xml\"",
                "[log]\n",
                "log.format: unknown format `xml`",
            ),
            (
                "listen = \"localhost\"",
                "[metrics]\n",
                "metrics.listen: `localhost`",
            ),
            ("max_bytes = 10", "[batch]\n", "batch.max_bytes:"),
        ];
        for (line, section, want) in cases {
            // Later duplicate keys are a TOML error, so put the line in its own copy of
            // the section after removing any clashing key.
            let key = line.split(' ').next().unwrap_or_default();
            let base: String = MINIMAL
                .lines()
                .filter(|l| !l.starts_with(&format!("{key} ")))
                .collect::<Vec<_>>()
                .join("\n");
            let text = if base.contains(section.trim()) {
                base.replacen(section.trim(), &format!("{}\n{line}", section.trim()), 1)
            } else {
                format!("{base}\n{section}{line}\n")
            };
            let err = error_of(&text);
            assert!(
                err.starts_with(want),
                "{line}: got `{err}`, want `{want}...`"
            );
        }
    }

    #[test]
    fn missing_required_keys_are_named() {
        assert!(
            error_of("[intake]\nurl = \"https://x\"\nkey = \"k\"\n")
                .starts_with("sqs.queue_url: required")
        );
        let no_key = MINIMAL.replace("key = \"  secret-intake-key-123\\n\"", "");
        assert!(error_of(&no_key).starts_with("intake.key: required"));
        let ndjson = format!("{no_key}protocol = \"ndjson\"\n");
        assert!(Config::from_toml_str(&ndjson).unwrap().intake.key.is_none());
    }

    #[test]
    fn unknown_keys_and_sections_are_rejected() {
        let err = error_of(&format!("{MINIMAL}gzipp = true\n"));
        assert!(err.contains("gzipp"), "{err}");
        let err = error_of(&format!("{MINIMAL}[intak]\nurl = \"x\"\n"));
        assert!(err.starts_with("intak: unknown section"), "{err}");
    }

    #[test]
    fn format_rules_are_checked() {
        let rule = |body: &str| format!("{MINIMAL}[[formats.rules]]\n{body}\n");
        let ok = Config::from_toml_str(&rule(
            "bucket = \"b\"\nformat = \"vpc-flow\"\nvpc_flow_fields = [\"version\", \"srcaddr\"]",
        ))
        .unwrap();
        assert_eq!(ok.formats.rules[0].format, Format::VpcFlow);
        assert_eq!(ok.formats.detect_rules().len(), 1);
        assert!(
            error_of(&rule("bucket = \"b\"\nformat = \"nope\""))
                .starts_with("formats.rules[0].format: unknown format `nope`")
        );
        assert!(
            error_of(&rule("key_regex = \"(\"\nformat = \"waf\""))
                .starts_with("formats.rules[0].key_regex:")
        );
        assert!(error_of(&rule("format = \"waf\"")).starts_with("formats.rules[0]: a rule needs"));
        assert!(error_of(&rule("bucket = \"b\"")).starts_with("formats.rules[0].format: required"));
        assert!(
            error_of(&rule(
                "bucket = \"b\"\nformat = \"waf\"\nvpc_flow_fields = [\"a\"]"
            ))
            .starts_with("formats.rules[0].vpc_flow_fields:")
        );
        // Keys a rule does not have are the format's to refuse, by name.
        assert!(
            error_of(&rule("bucket = \"b\"\nformat = \"waf\"\nbukcet = \"c\""))
                .starts_with("formats.rules[0].bukcet: unknown key")
        );
        // The options are shown as written.
        assert!(ok.masked_toml().contains("vpc_flow_fields = ["));
    }

    #[test]
    fn key_from_env_or_file_and_only_one_source() {
        let text = MINIMAL.replace(
            "key = \"  secret-intake-key-123\\n\"",
            "key_env = \"MY_KEY\"",
        );
        let c = parse_with_env(&text, &[("MY_KEY", "from-env\n")]).unwrap();
        let key = c.intake.key.unwrap();
        assert_eq!(key.expose(), "from-env");
        assert_eq!(key.source(), &KeySource::Env("MY_KEY".into()));
        let err = parse_with_env(&text, &[]).unwrap_err().to_string();
        assert_eq!(
            err,
            "intake.key_env: environment variable MY_KEY is not set"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "from-file\n").unwrap();
        let text = MINIMAL.replace(
            "key = \"  secret-intake-key-123\\n\"",
            &format!("key_file = {:?}", path.display().to_string()),
        );
        let c = Config::from_toml_str(&text).unwrap();
        assert_eq!(c.intake.key.unwrap().expose(), "from-file");

        let both = format!("{MINIMAL}key_env = \"X\"\n");
        assert!(error_of(&both).starts_with("intake.key: set only one"));
    }

    #[test]
    fn masked_output_never_contains_the_key() {
        let c = Config::from_toml_str(MINIMAL).unwrap();
        let toml = c.masked_toml();
        let json = c.masked().to_string();
        let debug = format!("{c:?}");
        for text in [&toml, &json, &debug] {
            assert!(!text.contains("secret-intake-key-123"), "{text}");
            assert!(text.contains("***"), "{text}");
        }
        assert!(
            toml.contains("queue_url = \"https://sqs.eu-west-1.amazonaws.com/123456789012/logs\""),
            "{toml}"
        );
        // The TOML rendering is itself a valid configuration (minus the masked key).
        let back: toml::Table = toml::from_str(&toml).unwrap();
        assert_eq!(back["intake"]["key"].as_str(), Some("***"));

        let text = MINIMAL.replace(
            "key = \"  secret-intake-key-123\\n\"",
            "key_env = \"MY_KEY\"",
        );
        let c = parse_with_env(&text, &[("MY_KEY", "secret-intake-key-123")]).unwrap();
        let toml = c.masked_toml();
        assert!(toml.contains("key_env = \"MY_KEY\""), "{toml}");
        assert!(!toml.contains("secret-intake-key-123"));
    }

    #[test]
    fn the_example_configuration_is_valid_and_documents_every_key() {
        let text = include_str!("../../../config/aws-log-forwarder.example.toml");
        let c = parse_with_env(text, &[("ALF_INTAKE_KEY", "k")]).unwrap();
        assert_eq!(c.metrics.listen.map(|a| a.port()), Some(9898));
        assert_eq!(
            c.intake.key.as_ref().unwrap().source(),
            &KeySource::Env("ALF_INTAKE_KEY".into())
        );
        // Keys shown commented out in the example.
        for key in [
            "endpoint_url",
            "force_path_style",
            "key =",
            "key_file",
            "[[formats.rules]]",
            "bucket",
            "key_prefix",
            "key_regex",
            "format =",
            "vpc_flow_fields",
        ] {
            assert!(text.contains(key), "{key} is not documented");
        }
        // Every key the daemon reads appears in the example.
        let masked = c.masked();
        for (section, keys) in masked.as_object().unwrap() {
            if section == "formats" {
                continue; // [[formats.rules]], checked above
            }
            for key in keys.as_object().unwrap().keys() {
                assert!(
                    text.contains(&format!("{key} =")) || text.contains(&format!("# {key} =")),
                    "{section}.{key} is not documented"
                );
            }
        }
    }

    /// The only test touching the process environment (tests run in parallel threads,
    /// so the variable names are unique to this test).
    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alf.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        // SAFETY: no other test reads or writes these variables.
        unsafe {
            std::env::set_var("ALF_INTAKE__URL", "https://intake.example.net/custom");
            std::env::set_var("ALF_BATCH__MAX_EVENTS", "123");
            std::env::set_var("ALF_PROCESSING__KEEP_ORIGINAL", "true");
            std::env::set_var("ALF_INTAKE__KEY", "00123");
            std::env::set_var(
                "ALF_INTAKE_KEY",
                "unrelated variables with the prefix are ignored",
            );
        }
        let c = Config::load(Some(&path));
        unsafe {
            std::env::remove_var("ALF_INTAKE__URL");
            std::env::remove_var("ALF_BATCH__MAX_EVENTS");
            std::env::remove_var("ALF_PROCESSING__KEEP_ORIGINAL");
            std::env::remove_var("ALF_INTAKE__KEY");
            std::env::remove_var("ALF_INTAKE_KEY");
        }
        let c = c.unwrap();
        assert_eq!(c.intake.url.as_str(), "https://intake.example.net/custom");
        assert_eq!(c.batch.max_events, 123);
        assert!(c.processing.keep_original);
        assert_eq!(c.intake.key.as_ref().map(IntakeKey::expose), Some("00123"));
        assert_eq!(
            c.sqs.queue_url,
            "https://sqs.eu-west-1.amazonaws.com/123456789012/logs"
        );
    }
}
