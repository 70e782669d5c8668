//! Daemon configuration: a TOML file plus `ALF_` environment overrides, validated once
//! at start-up into typed settings.
//!
//! # One place per key
//!
//! Every key is declared once, as a field of a `settings!` section below:
//!
//! ```text
//! /// Messages processed at the same time (each may announce several objects).
//! pub max_messages_in_flight: usize = default(10).range(1, 10_000),
//! ```
//!
//! That one line gives the field the daemon reads (`config.sqs.max_messages_in_flight`),
//! its default, its range check, its name in error messages (`sqs.max_messages_in_flight:
//! 0 is out of range ...`), its place in the unknown-key check (with did-you-mean
//! suggestions) and its line in the masked view `check-config` prints (derived with
//! `Serialize`, so nothing lists the keys again). The spec after `=` is a [`Key`]:
//!
//! * `default(v)` or `required("e.g. ...")` (the hint is shown when it is missing or
//!   invalid);
//! * `.range(min, max)` for integers;
//! * `.parse(f)` for a value read as text and checked or converted by `f`
//!   (URLs, the log filter), when the type's own `Deserialize` is not enough;
//! * `.example("e.g. ...")` to append an example to its error messages.
//!
//! **Adding a key** is therefore: one field line in its section, one commented entry in
//! `config/aws-log-forwarder.example.toml` (a unit test checks every key is there), and
//! reading it where it is used. A rule between keys (the heartbeat must be shorter than
//! the visibility timeout) goes in [`cross_checks`]. Environment overrides need nothing:
//! `ALF_SECTION__KEY` reaches every key (values are text, converted like file values).
//!
//! # Every error at once
//!
//! Each key is read on its own, so one bad value does not hide the next: validation
//! returns [`ConfigErrors`], every problem as `section.key: what is wrong`, one per line.
//! Unknown keys in a file are errors too (a typo would otherwise silently fall back to
//! the default), with the nearest known key suggested.
//!
//! The intake key is resolved here (inline value, environment variable or file) and held
//! in an [`IntakeKey`] (a [`secrecy::SecretString`]) whose `Debug`, `Display` and
//! serialized forms never show it.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use alf_formats::{DetectRule, Format, FormatOptions};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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
    "intakes",
    "batch",
    "log",
    "metrics",
    "dead_letter",
    "checkpoint",
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
    /// A key the daemon does not know (a typo would otherwise be silently ignored).
    #[error("{key}: unknown {what}{suggestion}")]
    Unknown {
        key: String,
        /// "key" or "section".
        what: &'static str,
        /// `; did you mean sqs.queue_url?`, or the list of known keys.
        suggestion: String,
    },
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

    /// `name` is unknown among `known`; suggests the nearest known name when one is
    /// close (a typo), lists them all otherwise.
    fn unknown(prefix: &str, name: &str, what: &'static str, known: &[&str]) -> Self {
        let key = dotted(prefix, name);
        let nearest = known
            .iter()
            .map(|k| (strsim::damerau_levenshtein(name, k), *k))
            .min_by_key(|(distance, _)| *distance)
            .filter(|(distance, k)| *distance <= (k.chars().count() / 3).max(1));
        let suggestion = match nearest {
            Some((_, k)) => format!("; did you mean {}?", dotted(prefix, k)),
            None => format!(" (expected one of: {})", known.join(", ")),
        };
        ConfigError::Unknown {
            key,
            what,
            suggestion,
        }
    }
}

fn dotted(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Every problem found in a configuration, in the order of the sections and keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// The problems, at least one.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
}

/// One problem per line.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// A section's keys as read from the file and the environment.
type Table = config::Map<String, config::Value>;

/// What a key falls back to when it is not set.
enum Fallback<T> {
    Value(T),
    /// Required; the text is an example shown in the error.
    Required(&'static str),
}

/// Reads a key's value as `T` (the value may be text from the environment).
type Reader<T> = Box<dyn Fn(config::Value) -> Result<T, String>>;

/// How one key is read: its fallback, its reader and checks. Built by [`default`] or
/// [`required`], refined with [`Key::range`], [`Key::parse`] and [`Key::example`].
pub(crate) struct Key<T> {
    fallback: Fallback<T>,
    reader: Reader<T>,
    example: Option<&'static str>,
}

/// A key that takes `value` when not set.
fn default<T: DeserializeOwned + 'static>(value: T) -> Key<T> {
    Key {
        fallback: Fallback::Value(value),
        reader: Box::new(deserialize),
        example: None,
    }
}

/// A key that must be set; `example` ("e.g. ...") is shown when it is missing or wrong.
fn required<T: DeserializeOwned + 'static>(example: &'static str) -> Key<T> {
    Key {
        fallback: Fallback::Required(example),
        reader: Box::new(deserialize),
        example: Some(example),
    }
}

fn deserialize<T: DeserializeOwned>(value: config::Value) -> Result<T, String> {
    value.try_deserialize().map_err(|e| e.to_string())
}

impl<T: TryFrom<i64> + 'static> Key<T> {
    /// Accepts integers from `min` to `max` (inclusive; `i64::MAX` for no ceiling).
    fn range(mut self, min: i64, max: i64) -> Self {
        self.reader = Box::new(move |value| {
            let v: i64 = deserialize(value)?;
            if v < min || v > max {
                let range = if max == i64::MAX {
                    format!("at least {min}")
                } else {
                    format!("between {min} and {max}")
                };
                return Err(format!("{v} is out of range (expected {range})"));
            }
            T::try_from(v).map_err(|_| format!("{v} is out of range"))
        });
        self
    }
}

impl<T: 'static> Key<T> {
    /// Reads the value as text and converts or checks it with `parse`.
    fn parse(mut self, parse: fn(String) -> Result<T, String>) -> Self {
        self.reader = Box::new(move |value| parse(deserialize::<String>(value)?));
        self
    }

    /// Appends `(expected e.g. ...)` to this key's error messages.
    fn example(mut self, example: &'static str) -> Self {
        self.example = Some(example);
        self
    }

    /// Reads `section.name` from `value`; on a problem, records it and returns `None`.
    fn read(
        self,
        section: &str,
        name: &str,
        value: Option<config::Value>,
        errors: &mut Vec<ConfigError>,
    ) -> Option<T> {
        let key = dotted(section, name);
        // Empty text (`region = ""`, `ALF_AWS__REGION=`) means "not set".
        let value = value
            .filter(|v| !matches!(&v.kind, config::ValueKind::String(s) if s.trim().is_empty()));
        match (value, self.fallback) {
            (Some(value), _) => match (self.reader)(value) {
                Ok(v) => Some(v),
                Err(reason) => {
                    let reason = match self.example {
                        Some(example) => format!("{reason} (expected {example})"),
                        None => reason,
                    };
                    errors.push(ConfigError::invalid(key, reason));
                    None
                }
            },
            (None, Fallback::Value(v)) => Some(v),
            (None, Fallback::Required(example)) => {
                errors.push(ConfigError::missing(&key, example));
                None
            }
        }
    }
}

/// Declares an enum of config keywords once, each variant with its spelling, and derives
/// from that one list: `FromStr`, serde (through `TryFrom<String>`, blanks around the
/// word ignored), the error naming the unknown word and every expected one (`unknown
/// payload `x` (expected ecs or raw)`), and `Display` (the spelling).
macro_rules! keywords {
    (
        $(#[doc = $doc:literal])*
        pub enum $name:ident ($what:literal) {
            $($(#[doc = $variant_doc:literal])* $variant:ident = $word:literal,)+
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String")]
        pub enum $name {
            $($(#[doc = $variant_doc])* #[serde(rename = $word)] $variant,)+
        }

        impl $name {
            /// Every variant with its spelling.
            const WORDS: &[($name, &str)] = &[$(($name::$variant, $word)),+];
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                keyword(s, $what, Self::WORDS)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.trim().parse()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $($name::$variant => $word,)+
                })
            }
        }
    };
}

/// The variant spelled `word` among `words`, else an error naming the `what` (`unknown
/// protocol `x` (expected sekoia, ndjson or elasticsearch)`).
fn keyword<T: Copy>(word: &str, what: &str, words: &[(T, &str)]) -> Result<T, String> {
    if let Some((value, _)) = words.iter().find(|(_, w)| *w == word) {
        return Ok(*value);
    }
    let mut expected = String::new();
    for (i, (_, w)) in words.iter().enumerate() {
        if i > 0 {
            expected.push_str(if i + 1 == words.len() { " or " } else { ", " });
        }
        expected.push_str(w);
    }
    Err(format!("unknown {what} `{word}` (expected {expected})"))
}

/// What a `settings!` section gives [`Config::read`].
trait Section: Sized {
    /// The section's keys, in declaration order.
    const KEYS: &'static [&'static str];

    /// Reads every key of `table` (removing it); `None` when any was wrong.
    fn read(section: &str, table: &mut Table, errors: &mut Vec<ConfigError>) -> Option<Self>;
}

/// Declares a section: its struct (with `Debug`, `Clone` and `Serialize` for the
/// masked view), the list of its keys, and `read`, which reads every key on its own so
/// each problem is reported. See the module documentation.
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$field_meta:meta])*
                pub $field:ident : $ty:ty = $key:expr,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Serialize)]
        pub struct $name {
            $(
                $(#[$field_meta])*
                pub $field: $ty,
            )*
        }

        impl Section for $name {
            const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];

            fn read(section: &str, table: &mut Table, errors: &mut Vec<ConfigError>) -> Option<Self> {
                $(
                    let $field: Option<$ty> = Key::read(
                        $key,
                        section,
                        stringify!($field),
                        table.remove(stringify!($field)),
                        errors,
                    );
                )*
                Some($name { $($field: $field?,)* })
            }
        }
    };
}

/// The validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub aws: AwsSettings,
    pub sqs: SqsSettings,
    pub processing: ProcessingSettings,
    pub formats: FormatsSettings,
    pub intake: IntakeSettings,
    /// `[[intakes]]`: further intakes, each receiving the datasets it names; every
    /// other event goes to `[intake]` (see [`crate::intakes`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub intakes: Vec<NamedIntake>,
    pub batch: BatchSettings,
    pub log: LogSettings,
    pub metrics: MetricsSettings,
    pub dead_letter: DeadLetterSettings,
    pub checkpoint: CheckpointSettings,
}

const QUEUE_URL_EXAMPLE: &str = "e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/aws-logs";

settings! {
    /// `[aws]`: where the AWS services are.
    pub struct AwsSettings {
        /// None: the SDK's default chain (`AWS_REGION`, profile...), then the queue URL.
        pub region: Option<String> = default(None),
        /// A custom endpoint (LocalStack); implies path-style S3 addressing.
        pub endpoint_url: Option<String> = default(None)
            .parse(|text| http_url(&text).map(|u| Some(u.to_string())))
            .example("e.g. http://127.0.0.1:4566"),
        pub force_path_style: bool = default(false),
        /// A role to assume for every AWS call (S3, SQS): a log-archive account's reader
        /// role. Credentials come from STS and are refreshed before they expire.
        pub assume_role_arn: Option<String> = default(None)
            .parse(|text| role_arn(text).map(Some))
            .example("e.g. arn:aws:iam::123456789012:role/log-reader"),
        /// The external id the role's trust policy requires (masked in `check-config`).
        #[serde(serialize_with = "mask_option")]
        pub external_id: Option<String> = default(None),
        /// The role session name (CloudTrail shows it as who acted).
        pub session_name: String = default(DEFAULT_SESSION_NAME.to_owned()).parse(session_name),
        /// `[[aws.buckets]]`: buckets read with a role of their own (checked in
        /// [`cross_checks`]).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pub buckets: Vec<BucketRole> = default(Vec::new()),
    }
}

/// One `[[aws.buckets]]` entry: a bucket whose objects are read with their own role
/// (a log-archive account's bucket, while the queue sits in another account).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketRole {
    pub name: String,
    pub assume_role_arn: String,
    #[serde(serialize_with = "mask_option")]
    pub external_id: Option<String>,
    /// The bucket's region when it differs from the queue's.
    pub region: Option<String>,
}

/// `[[aws.buckets]]`: a role ARN each, each bucket once.
fn bucket_checks(aws: &AwsSettings, errors: &mut Vec<ConfigError>) {
    let mut names = std::collections::HashSet::new();
    for (i, bucket) in aws.buckets.iter().enumerate() {
        if bucket.name.trim().is_empty() {
            errors.push(ConfigError::invalid(
                format!("aws.buckets[{i}].name"),
                "empty: the bucket's name (not its ARN)",
            ));
        } else if !names.insert(bucket.name.as_str()) {
            errors.push(ConfigError::invalid(
                format!("aws.buckets[{i}].name"),
                format!("{} is listed twice: one role per bucket", bucket.name),
            ));
        }
        if let Err(e) = role_arn(bucket.assume_role_arn.clone()) {
            errors.push(ConfigError::invalid(
                format!("aws.buckets[{i}].assume_role_arn"),
                format!("{e} (expected e.g. arn:aws:iam::123456789012:role/log-reader)"),
            ));
        }
    }
}

settings! {
    /// `[sqs]`: the queue and how its messages are held.
    pub struct SqsSettings {
        pub queue_url: String =
            required(QUEUE_URL_EXAMPLE).parse(|text| http_url(&text).map(|_| text)),
        pub max_messages_in_flight: usize = default(10).range(1, 10_000),
        pub wait_time_seconds: u32 = default(20).range(0, 20),
        pub visibility_timeout_seconds: u32 = default(300).range(1, 43_200),
        /// Must be shorter than `visibility_timeout_seconds` (see [`cross_checks`]).
        pub heartbeat_interval_seconds: u64 = default(60).range(1, 43_200),
        pub failure_visibility_seconds: u32 = default(30).range(0, 43_200),
        /// After a shutdown signal, how long in-flight messages may take to finish.
        pub shutdown_grace_seconds: u64 = default(25).range(0, 3_600),
        /// `[[sqs.queues]]`: further queues read by this process (checked in
        /// [`cross_checks`]); `queue_url` may then be left out.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pub queues: Vec<QueueSettings> = default(Vec::new()),
    }
}

/// One `[[sqs.queues]]` entry: a queue read besides (or instead of) `sqs.queue_url`,
/// sharing the intakes and the batcher; the other `[sqs]` keys apply to it too.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    pub url: String,
    /// The `queue` label of its metrics and logs; default: the queue's name (the URL's
    /// last segment).
    pub name: Option<String>,
    /// Default: the region in the URL, else `aws.region`.
    pub region: Option<String>,
    /// A role to assume for this queue and the objects it announces (instead of
    /// `aws.assume_role_arn`).
    pub role_arn: Option<String>,
    #[serde(serialize_with = "mask_option")]
    pub external_id: Option<String>,
    /// Parse every object this queue announces as this format (`cloudtrail`,
    /// `vpc-flow`...) instead of detecting it.
    pub format: Option<String>,
}

impl QueueSettings {
    /// The `queue` label: `name`, else the URL's last path segment.
    pub fn label(&self) -> String {
        queue_label(self.name.as_deref(), &self.url)
    }
}

/// `name`, else the last path segment of `url` (the queue's name).
pub fn queue_label(name: Option<&str>, url: &str) -> String {
    match name {
        Some(name) => name.to_owned(),
        None => url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(url)
            .to_owned(),
    }
}

/// Each `[[sqs.queues]]` entry on its own: a URL, a role ARN, a known format.
fn queue_checks(sqs: &SqsSettings, errors: &mut Vec<ConfigError>) {
    let mut labels = std::collections::HashSet::new();
    if !sqs.queue_url.is_empty() {
        labels.insert(queue_label(None, &sqs.queue_url));
    }
    for (i, queue) in sqs.queues.iter().enumerate() {
        let key = |k: &str| format!("sqs.queues[{i}].{k}");
        if let Err(e) = http_url(&queue.url) {
            errors.push(ConfigError::invalid(
                key("url"),
                format!("{e} (expected {QUEUE_URL_EXAMPLE})"),
            ));
        }
        if let Some(arn) = &queue.role_arn
            && let Err(e) = role_arn(arn.clone())
        {
            errors.push(ConfigError::invalid(key("role_arn"), e));
        }
        if queue.role_arn.is_none() && queue.external_id.is_some() {
            errors.push(ConfigError::invalid(
                key("external_id"),
                "only used with role_arn: set the role to assume, or remove it",
            ));
        }
        if let Some(format) = &queue.format
            && let Err(e) = format.trim().parse::<Format>()
        {
            errors.push(ConfigError::invalid(key("format"), e.to_string()));
        }
        if !labels.insert(queue.label()) {
            errors.push(ConfigError::invalid(
                key("name"),
                format!(
                    "{:?} names two queues (metrics label them by name): set a distinct name",
                    queue.label()
                ),
            ));
        }
    }
}

settings! {
    /// `[processing]`: parsing.
    pub struct ProcessingSettings {
        pub object_concurrency: usize = default(4).range(1, 1_024),
        /// Worker threads parsing one line-oriented object (CloudFront, S3 access,
        /// ELB, WAF, ...) in blocks, shared among the objects parsed at once; 0 is
        /// one per available core, 1 (the default) parses each object on one thread
        /// (see [`ProcessingSettings::parse_workers`]). The default is 1 because two
        /// workers cost 15-25% more CPU per event and ~35 MB more resident memory,
        /// and were not faster on a busy 2-core machine (crates/alf-bench/E2E.md);
        /// set 0 when large objects arrive alone on idle cores.
        pub parse_threads: usize = default(1).range(0, 256),
        pub keep_original: bool = default(false),
        pub redact: bool = default(true),
        /// `[[processing.drop]]` rules (see [`crate::filter`]), compiled in [`cross_checks`].
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pub drop: Vec<crate::filter::DropRuleSettings> = default(Vec::new()),
    }
}

impl ProcessingSettings {
    /// Workers per line-oriented object: `parse_threads`, or the available cores
    /// when it is 0.
    pub fn parse_workers(&self) -> usize {
        match self.parse_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

settings! {
    /// `[intake]`: where events go. The intake key is one of `key`, `key_env` and
    /// `key_file`; after validation `key` holds it whatever its source (the other two
    /// stay, so `check-config` shows where it came from).
    pub struct IntakeSettings {
        #[serde(serialize_with = "serialize_display")]
        pub url: HttpUrl = required("e.g. https://intake.sekoia.io"),
        pub protocol: IntakeProtocol = default(IntakeProtocol::Sekoia),
        /// Serialized as `***`.
        pub key: Option<IntakeKey> = default(None),
        pub key_env: Option<String> = default(None),
        pub key_file: Option<PathBuf> = default(None),
        /// `false` is the older spelling of `compression = "none"`.
        pub gzip: bool = default(true),
        /// How request bodies are compressed: `gzip` (the default, unless `gzip =
        /// false`), `zstd` (NDJSON intakes that take `Content-Encoding: zstd`: less
        /// than half gzip's CPU for smaller bodies) or `none`. Resolved in [`cross_checks`]; read it with
        /// [`IntakeSettings::body_compression`].
        pub compression: Option<BodyCompression> = default(None),
        /// zstd level of request bodies (negative levels are faster and larger).
        /// Measured like `gzip_level` on the same 4 MB CloudFront NDJSON bodies
        /// (crates/alf-bench/README.md, issue 8, ninth step): gzip level 2 0.40 CPU-s
        /// for ratio 7.6; zstd level 1 0.19 (ratio 10.0), -1 0.16 (8.0), -3 0.15
        /// (7.6). -1 is smaller than gzip's default for 40% of its CPU.
        pub zstd_level: i32 = default(-1).range(-7, 19),
        /// gzip level of request bodies (1 fastest, 9 smallest). The default was
        /// chosen by measurement with the daemon's backend (zlib-rs) on 4 MB bodies of
        /// 50,000 CloudFront events (92 MB of NDJSON): level 1 0.21 CPU-s (ratio 6.0),
        /// 2 0.29 (7.6), 3 0.41 (8.4), 6 0.56 (9.6); compression is about a third of
        /// the daemon's CPU at level 2 (crates/alf-bench/E2E.md). Where egress is
        /// billed by the byte, a higher level can be worth its CPU.
        pub gzip_level: u32 = default(2).range(1, 9),
        pub timeout_seconds: u64 = default(30).range(1, 3_600),
        pub connect_timeout_seconds: u64 = default(10).range(1, 600),
        pub max_retries: u32 = default(8).range(0, 1_000),
        pub retry_initial_backoff_ms: u64 = default(200).range(1, 600_000),
        /// At least `retry_initial_backoff_ms` (see [`cross_checks`]).
        pub retry_max_backoff_ms: u64 = default(30_000).range(1, 3_600_000),
        /// Index or data stream template; `{dataset}` is replaced by the event's
        /// dataset without its `aws.` prefix (`logs-aws.{dataset}-default` ->
        /// `logs-aws.cloudtrail-default`).
        pub elasticsearch_index: String =
            default("logs-aws.{dataset}-default".to_owned()).parse(elasticsearch_index),
        /// Per-dataset overrides of `elasticsearch_index` (`"aws.cloudtrail" = "ct-stream"`),
        /// checked in [`cross_checks`].
        pub elasticsearch_indices: std::collections::BTreeMap<String, String> =
            default(std::collections::BTreeMap::new()),
        /// Batches sent at the same time (throughput over high-latency links).
        pub max_concurrent_requests: usize = default(4).range(1, 256),
        /// Largest event sent as is (serialized JSON bytes). 0 (the default): the
        /// protocol's limit, 250,000 for Sekoia.io's intake and 1 MiB for the others
        /// (resolved in [`cross_checks`]).
        pub max_event_bytes: usize = default(0).range(0, 100 << 20),
        /// What happens to a larger event: `truncate` or `dead_letter`.
        pub oversize: OversizePolicy = default(OversizePolicy::Truncate),
        /// PEM file of the CA(s) that signed the intake's certificate (a private CA),
        /// trusted in addition to the public roots. Checked in [`cross_checks`].
        pub ca_file: Option<PathBuf> = default(None),
        /// PEM certificate chain and private key presented to an intake that requires
        /// client certificates (mTLS); both or neither.
        pub client_cert: Option<PathBuf> = default(None),
        pub client_key: Option<PathBuf> = default(None),
        /// Proxy for intake requests (`http://proxy:3128`); `NO_PROXY` still applies.
        /// Unset: `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and `NO_PROXY` from the environment.
        pub proxy: Option<ProxyUrl> = default(None)
            .parse(|text| http_url(&text).map(|u| Some(ProxyUrl(HttpUrl(u)))))
            .example("e.g. http://proxy.internal:3128"),
        /// Extra headers on every intake request (tenant ids, gateway tokens); values are
        /// treated as secrets: masked in `check-config` and never logged.
        pub headers: std::collections::BTreeMap<String, MaskedValue> =
            default(std::collections::BTreeMap::new()),
        /// What is sent per event: `ecs` (the normalised event) or `raw` (the record as
        /// AWS wrote it, for an intake that parses the AWS format itself).
        pub payload: PayloadMode = default(PayloadMode::Ecs),
    }
}

impl IntakeSettings {
    /// How request bodies are compressed: `compression`, else `gzip`.
    pub fn body_compression(&self) -> BodyCompression {
        self.compression.unwrap_or(if self.gzip {
            BodyCompression::Gzip
        } else {
            BodyCompression::None
        })
    }
}

keywords! {
    /// What an intake receives for each event.
    pub enum PayloadMode ("payload") {
        /// The Elastic Common Schema event built by the parsers.
        Ecs = "ecs",
        /// The original record, one per event (a CloudFront line, one CloudTrail record
        /// out of its `Records` array, one flow record), so an intake that parses the AWS
        /// format itself (Sekoia.io's per-type intakes) applies its own parser.
        Raw = "raw",
    }
}

/// One `[[intakes]]` entry: an intake besides the default `[intake]`, receiving the
/// events of `datasets`. Its other keys are those of `[intake]`.
#[derive(Debug, Clone, Serialize)]
pub struct NamedIntake {
    /// Shown in logs and as the `intake` label of the metrics.
    pub name: String,
    /// `event.dataset` values routed here (`aws.cloudfront`, `aws.cloudtrail`, ...).
    pub datasets: Vec<String>,
    #[serde(flatten)]
    pub settings: IntakeSettings,
}

/// The keys of an `[[intakes]]` entry besides those of `[intake]`.
const NAMED_INTAKE_KEYS: [&str; 2] = ["name", "datasets"];

/// `intake.proxy`: an [`HttpUrl`] that may carry `user:password`, which Debug and
/// `check-config` mask.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ProxyUrl(HttpUrl);

impl ProxyUrl {
    /// The URL itself, password included; only the intake client should call this.
    pub fn expose(&self) -> &url::Url {
        &self.0
    }

    /// The URL with its password replaced by `***`.
    pub fn shown(&self) -> String {
        let mut shown = self.0.0.clone();
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

impl Serialize for ProxyUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.shown())
    }
}

/// A configured value that may be a credential: `***` in Debug, Display and Serialize.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
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

impl Serialize for MaskedValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
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

/// The role session name when `aws.session_name` is not set.
pub const DEFAULT_SESSION_NAME: &str = "aws-log-forwarder";

/// `arn:<partition>:iam::<account>:role/<name>`.
fn role_arn(arn: String) -> Result<String, String> {
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
        Err(format!("{arn:?} is not an IAM role ARN"))
    }
}

/// STS's rule for role session names: 2-64 of `[A-Za-z0-9+=,.@_-]`.
fn session_name(name: String) -> Result<String, String> {
    let valid = (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if valid {
        Ok(name)
    } else {
        Err(format!(
            "{name:?}: 2 to 64 letters, digits or +=,.@_- (STS's rule)"
        ))
    }
}

fn mask_option<S: serde::Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_str("***"),
        None => s.serialize_none(),
    }
}

/// A path that must name a readable file (certificates, keys).
fn check_file(key: &str, path: Option<&PathBuf>, errors: &mut Vec<ConfigError>) {
    let Some(path) = path else { return };
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => errors.push(ConfigError::invalid(
            key,
            format!("{} is not a file", path.display()),
        )),
        Err(e) => errors.push(ConfigError::invalid(
            key,
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

/// The TLS, proxy and header keys of an intake (`[intake]` or an `[[intakes]]` entry,
/// named `prefix` in errors).
fn intake_connection_checks(prefix: &str, intake: &IntakeSettings, errors: &mut Vec<ConfigError>) {
    check_file(
        &format!("{prefix}.ca_file"),
        intake.ca_file.as_ref(),
        errors,
    );
    check_file(
        &format!("{prefix}.client_cert"),
        intake.client_cert.as_ref(),
        errors,
    );
    check_file(
        &format!("{prefix}.client_key"),
        intake.client_key.as_ref(),
        errors,
    );
    if intake.client_cert.is_some() != intake.client_key.is_some() {
        errors.push(ConfigError::invalid(
            if intake.client_cert.is_some() {
                format!("{prefix}.client_key")
            } else {
                format!("{prefix}.client_cert")
            },
            format!("{prefix}.client_cert and {prefix}.client_key go together (the certificate chain and its private key, PEM): set both or neither"),
        ));
    }
    for (name, value) in &intake.headers {
        let key = format!("{prefix}.headers.{name}");
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            errors.push(ConfigError::invalid(key, "not a valid HTTP header name"));
        } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            errors.push(ConfigError::invalid(
                key,
                "set by the forwarder itself; remove it",
            ));
        } else if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
            // The value is not echoed: it may be a credential.
            errors.push(ConfigError::invalid(
                key,
                "the value is not a valid HTTP header value (control characters or non-ASCII)",
            ));
        }
    }
}

/// The cross-checks of the keys added for issue 10 (TLS, headers, drop rules, role).
fn organisation_checks(config: &Config, errors: &mut Vec<ConfigError>) {
    intake_connection_checks("intake", &config.intake, errors);
    if let Err(e) = crate::filter::EventFilter::new(&config.processing.drop) {
        errors.push(ConfigError::Source(e.to_string()));
    }
    if config.aws.assume_role_arn.is_none() && config.aws.external_id.is_some() {
        errors.push(ConfigError::invalid(
            "aws.external_id",
            "only used with aws.assume_role_arn: set the role to assume, or remove it",
        ));
    }
}

settings! {
    /// `[dead_letter]`: where events the intake refuses for good are kept, never
    /// dropped: a local directory (default `dead-letter` under the working directory)
    /// or an S3 bucket and prefix, not both. Whether it can be written is checked at
    /// start-up ([`crate::deadletter::DeadLetterSink::open`]).
    pub struct DeadLetterSettings {
        pub directory: Option<PathBuf> = default(None),
        /// A new file once the current one reaches this size.
        pub max_file_bytes: u64 = default(64u64 << 20).range(4_096, 1 << 40),
        pub s3_bucket: Option<String> = default(None),
        /// Always ends in `/`.
        pub s3_prefix: String =
            default("aws-log-forwarder/dead-letter/".to_owned()).parse(s3_prefix),
    }
}

settings! {
    /// `[checkpoint]`: where large objects record how far their delivery got, so a
    /// redelivered one (after a crash, on any replica) skips what was delivered
    /// (see [`crate::checkpoint`]). Off unless `directory` or `s3_bucket` is set: it
    /// needs write access, and must never be a prefix the source bucket notifies.
    pub struct CheckpointSettings {
        /// A local directory (one process, or replicas sharing it); must exist.
        pub directory: Option<PathBuf> = default(None),
        pub s3_bucket: Option<String> = default(None),
        /// Always ends in `/`.
        pub s3_prefix: String =
            default("aws-log-forwarder/checkpoints/".to_owned()).parse(s3_prefix),
        /// How often an object in progress writes its checkpoint: after a SIGKILL
        /// at most this many seconds of events are sent twice.
        pub interval_seconds: u64 = default(5).range(1, 3_600),
        /// A checkpoint is also written as soon as this many more events are
        /// settled: after a SIGKILL at most this many events (plus the batches in
        /// flight) are sent twice, however fast delivery goes. 50,000 CloudFront
        /// events are about 90 MB of JSON: one small write (an S3 PUT) per that much.
        pub every_events: u64 = default(50_000).range(1, 1 << 50),
        /// Smaller objects (compressed bytes) get no checkpoint: they finish within an
        /// interval, and a lookup per object would cost more than it saves.
        pub min_object_bytes: u64 = default(1u64 << 20).range(0, 1 << 50),
    }
}

/// Where the dead-letter sink writes, as [`DeadLetterSettings`] decide it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterTarget {
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

impl DeadLetterSettings {
    /// The sink these keys describe (both set is reported by [`cross_checks`]).
    pub fn target(&self) -> DeadLetterTarget {
        match &self.s3_bucket {
            Some(bucket) => DeadLetterTarget::S3 {
                s3_bucket: bucket.clone(),
                s3_prefix: self.s3_prefix.clone(),
            },
            None => DeadLetterTarget::Directory {
                directory: self
                    .directory
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("dead-letter")),
                max_file_bytes: self.max_file_bytes,
            },
        }
    }
}

/// `dead_letter.s3_prefix`: relative to the bucket, ending in `/`.
fn s3_prefix(text: String) -> Result<String, String> {
    let mut prefix = text.trim().trim_start_matches('/').to_owned();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    Ok(prefix)
}

keywords! {
    /// What to do with an event larger than `intake.max_event_bytes`.
    pub enum OversizePolicy ("policy") {
        /// Cut its largest string fields (`event.original` first) and tag it `_truncated`.
        Truncate = "truncate",
        /// Send it to the dead-letter sink untouched.
        DeadLetter = "dead_letter",
    }
}

settings! {
    /// `[batch]`: when a batch is sent.
    pub struct BatchSettings {
        pub max_events: usize = default(5_000).range(1, 1_000_000),
        pub max_bytes: usize = default(4_000_000).range(1_024, 1 << 30),
        pub linger_ms: u64 = default(1_000).range(0, 600_000),
    }
}

settings! {
    /// `[log]`: the daemon's own log.
    pub struct LogSettings {
        pub level: String = default("info".to_owned()).parse(log_filter),
        pub format: LogFormat = default(LogFormat::Json),
    }
}

settings! {
    /// `[metrics]`: the Prometheus listener.
    pub struct MetricsSettings {
        pub listen: Option<SocketAddr> = default(None).parse(|text| {
            text.trim().parse().map(Some).map_err(|e| {
                format!("`{text}`: {e} (expected an address and port, e.g. 127.0.0.1:9898)")
            })
        }),
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FormatsSettings {
    pub rules: Vec<FormatRule>,
}

/// One `[[formats.rules]]` entry; the regex was checked at load time. Unset conditions
/// are left out of `check-config` like every unset key ([`Config::masked`] drops nulls).
#[derive(Debug, Clone, Serialize)]
pub struct FormatRule {
    pub bucket: Option<String>,
    pub key_prefix: Option<String>,
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

keywords! {
    /// How batches are encoded for the intake.
    pub enum IntakeProtocol ("protocol") {
        /// Sekoia.io: `POST {url}/batch` with `{"intake_key":..., "jsons":[...]}`.
        Sekoia = "sekoia",
        /// One JSON event per line.
        Ndjson = "ndjson",
        /// Elasticsearch `_bulk` with `create` actions (data streams).
        Elasticsearch = "elasticsearch",
    }
}

keywords! {
    /// How request bodies are compressed (`intake.compression`).
    pub enum BodyCompression ("compression") {
        /// `Content-Encoding: gzip`, at `gzip_level`.
        Gzip = "gzip",
        /// `Content-Encoding: zstd`, at `zstd_level` (NDJSON intakes only).
        Zstd = "zstd",
        /// No compression (an intake on the same host or network).
        None = "none",
    }
}

keywords! {
    /// The daemon's log lines.
    pub enum LogFormat ("format") {
        Json = "json",
        Text = "text",
    }
}

/// An absolute http(s) URL with a host: what the intake can be posted to. Derefs to
/// [`url::Url`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HttpUrl(url::Url);

impl TryFrom<String> for HttpUrl {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        http_url(&text).map(HttpUrl)
    }
}

impl std::ops::Deref for HttpUrl {
    type Target = url::Url;
    fn deref(&self) -> &url::Url {
        &self.0
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Where the intake key came from: shown by `check-config` instead of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Inline,
    Env(String),
    File(PathBuf),
}

/// The intake key. `Debug`, `Display` and `Serialize` show `***`: a key in a log line,
/// a panic message or `check-config` output would be a leaked credential.
#[derive(Clone)]
pub struct IntakeKey {
    value: SecretString,
    source: KeySource,
}

impl IntakeKey {
    pub fn new(value: String, source: KeySource) -> Self {
        IntakeKey {
            value: SecretString::from(value),
            source,
        }
    }

    /// The secret itself; only the intake client should call this.
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }
}

/// `key = "..."` in the file: trimmed (files and `echo`ed variables usually end with a
/// newline).
impl<'de> Deserialize<'de> for IntakeKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(IntakeKey::new(text.trim().to_owned(), KeySource::Inline))
    }
}

impl Serialize for IntakeKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
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

/// Parses an absolute http(s) URL with a host.
fn http_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| e.to_string())?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("scheme `{}` is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".to_owned());
    }
    Ok(url)
}

/// `log.level`: a level or a `RUST_LOG`-style filter.
fn log_filter(level: String) -> Result<String, String> {
    match tracing_subscriber::EnvFilter::try_new(&level) {
        Ok(_) => Ok(level),
        Err(_) => Err(format!(
            "`{level}` is not a level or filter (expected error, warn, info, debug, trace, or a RUST_LOG-style filter)"
        )),
    }
}

/// `intake.elasticsearch_index`: written into every `_bulk` action line.
fn elasticsearch_index(index: String) -> Result<String, String> {
    if index.contains(['"', '\\', '\n']) {
        return Err("must not contain quotes, backslashes or line breaks".to_owned());
    }
    Ok(index)
}

/// Empty strings in the environment (`ALF_AWS__REGION=`) mean "not set".
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.trim().is_empty())
}

impl Config {
    /// Parses TOML text (no environment overrides) and validates it.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        Self::from_sources(
            Some((text, "the configuration")),
            false,
            &EnvLookup::Process,
            false,
        )
    }

    /// [`Config::load`] for `replay`, which reads S3 directly: `sqs.queue_url` may be
    /// absent (it is then empty and unused).
    pub fn load_without_queue(path: Option<&Path>) -> Result<Config, ConfigErrors> {
        Self::load_with(path, true)
    }

    /// Loads a TOML file (optional) plus environment overrides (prefix `ALF_`, nested
    /// keys joined with `__`, e.g. `ALF_INTAKE__URL`) and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
        Self::load_with(path, false)
    }

    fn load_with(path: Option<&Path>, queue_optional: bool) -> Result<Config, ConfigErrors> {
        let text = match path {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                ConfigError::Source(format!("cannot read {}: {e}", path.display()))
            })?),
            None => None,
        };
        let origin = path.map(|p| p.display().to_string()).unwrap_or_default();
        Self::from_sources(
            text.as_deref().map(|t| (t, origin.as_str())),
            true,
            &EnvLookup::Process,
            queue_optional,
        )
    }

    /// Merges the file (`text`, named `origin` in errors) and, with `with_env`, the
    /// environment; then reads and checks every key.
    fn from_sources(
        file: Option<(&str, &str)>,
        with_env: bool,
        env: &EnvLookup,
        queue_optional: bool,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut builder = config::Config::builder();
        if let Some((text, origin)) = file {
            check_sections(text, origin, &mut errors)?;
            builder = builder.add_source(config::File::from_str(text, config::FileFormat::Toml));
        }
        if with_env {
            builder = builder.add_source(env_source());
        }
        let mut root = builder
            .build()
            .and_then(|c| c.cache.into_table())
            .map_err(|e| ConfigError::Source(e.to_string()))?;
        let placeholder = (queue_optional || has_queue_list(&root)) && !has_queue_url(&root);
        if placeholder {
            let mut sqs = root
                .remove("sqs")
                .and_then(|v| v.into_table().ok())
                .unwrap_or_default();
            sqs.insert(
                "queue_url".into(),
                config::Value::from(REPLAY_PLACEHOLDER_QUEUE),
            );
            root.insert("sqs".into(), config::Value::from(sqs));
        }
        let mut config = Self::read(&mut root, env, &mut errors);
        if placeholder && let Some(c) = config.as_mut() {
            c.sqs.queue_url.clear();
        }
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// Reads every section of `root`, recording each problem in `errors`.
    fn read(root: &mut Table, env: &EnvLookup, errors: &mut Vec<ConfigError>) -> Option<Config> {
        /// Reads section `name` (the type is the field of [`Config`] it fills).
        fn section<T: Section>(
            name: &str,
            root: &mut Table,
            errors: &mut Vec<ConfigError>,
        ) -> Option<T> {
            let mut table = match root.remove(name).map(config::Value::into_table) {
                None => Table::new(),
                Some(Ok(table)) => table,
                Some(Err(e)) => {
                    errors.push(ConfigError::invalid(name, e.to_string()));
                    return None;
                }
            };
            let value = T::read(name, &mut table, errors);
            for unknown in table.keys() {
                errors.push(ConfigError::unknown(name, unknown, "key", T::KEYS));
            }
            value
        }
        let aws = section("aws", root, errors);
        let sqs = section("sqs", root, errors);
        let processing = section("processing", root, errors);
        let formats = read_formats(root.remove("formats"), errors);
        let intake = section("intake", root, errors);
        let intakes = read_intakes(root.remove("intakes"), errors);
        let batch = section("batch", root, errors);
        let log = section("log", root, errors);
        let metrics = section("metrics", root, errors);
        let dead_letter = section("dead_letter", root, errors);
        let checkpoint = section("checkpoint", root, errors);
        let mut config = Config {
            aws: aws?,
            sqs: sqs?,
            processing: processing?,
            formats: formats?,
            intake: intake?,
            intakes: intakes?,
            batch: batch?,
            log: log?,
            metrics: metrics?,
            dead_letter: dead_letter?,
            checkpoint: checkpoint?,
        };
        cross_checks(&mut config, env, errors);
        Some(config)
    }

    /// The effective configuration as JSON, with the intake key replaced by `***` (its
    /// source, `key_env` or `key_file`, is shown). Derived from the settings' `Serialize`.
    pub fn masked(&self) -> serde_json::Value {
        let mut root = serde_json::to_value(self).unwrap_or_default();
        drop_nulls(&mut root);
        root
    }

    /// [`Config::masked`] as TOML.
    pub fn masked_toml(&self) -> String {
        toml::to_string_pretty(&self.masked()).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// Every key of every section, as `section.key` (`[[formats.rules]]` keys as
    /// `formats.rules.key`).
    pub fn keys() -> Vec<String> {
        let sections: [(&str, &[&str]); 9] = [
            ("aws", AwsSettings::KEYS),
            ("sqs", SqsSettings::KEYS),
            ("processing", ProcessingSettings::KEYS),
            ("intake", IntakeSettings::KEYS),
            ("batch", BatchSettings::KEYS),
            ("log", LogSettings::KEYS),
            ("metrics", MetricsSettings::KEYS),
            ("dead_letter", DeadLetterSettings::KEYS),
            ("checkpoint", CheckpointSettings::KEYS),
        ];
        let mut keys: Vec<String> = sections
            .iter()
            .flat_map(|(s, keys)| keys.iter().map(move |k| format!("{s}.{k}")))
            .collect();
        keys.extend(RULE_KEYS.iter().map(|k| format!("formats.rules.{k}")));
        keys.extend(NAMED_INTAKE_KEYS.iter().map(|k| format!("intakes.{k}")));
        keys
    }
}

/// Stands in for the queue `replay` does not need, so validation stays in one place.
const REPLAY_PLACEHOLDER_QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/000000000000/replay";

/// Whether `[[sqs.queues]]` lists at least one queue (`sqs.queue_url` is optional then).
fn has_queue_list(root: &Table) -> bool {
    root.get("sqs")
        .and_then(|v| v.clone().into_table().ok())
        .and_then(|t| t.get("queues").cloned())
        .and_then(|v| v.into_array().ok())
        .is_some_and(|queues| !queues.is_empty())
}

/// Whether `sqs.queue_url` is set (and not empty).
fn has_queue_url(root: &Table) -> bool {
    root.get("sqs")
        .and_then(|v| v.clone().into_table().ok())
        .and_then(|t| t.get("queue_url").cloned())
        .and_then(|v| v.into_string().ok())
        .is_some_and(|s| !s.trim().is_empty())
}

/// Rules between keys, checked once each key is valid on its own; also resolves the
/// intake key from its source.
fn cross_checks(config: &mut Config, env: &EnvLookup, errors: &mut Vec<ConfigError>) {
    organisation_checks(config, errors);
    queue_checks(&config.sqs, errors);
    bucket_checks(&config.aws, errors);
    let sqs = &config.sqs;
    if sqs.heartbeat_interval_seconds >= u64::from(sqs.visibility_timeout_seconds) {
        errors.push(ConfigError::invalid(
            "sqs.heartbeat_interval_seconds",
            format!(
                "{} must be shorter than sqs.visibility_timeout_seconds ({}), or messages become visible to other consumers while still being processed",
                sqs.heartbeat_interval_seconds, sqs.visibility_timeout_seconds
            ),
        ));
    }
    intake_value_checks("intake", &mut config.intake, env, errors);
    if config.dead_letter.s3_bucket.is_some() && config.dead_letter.directory.is_some() {
        errors.push(ConfigError::invalid(
            "dead_letter.s3_bucket",
            "set either dead_letter.directory or dead_letter.s3_bucket, not both",
        ));
    }
    if config.checkpoint.s3_bucket.is_some() && config.checkpoint.directory.is_some() {
        errors.push(ConfigError::invalid(
            "checkpoint.s3_bucket",
            "set either checkpoint.directory or checkpoint.s3_bucket, not both",
        ));
    }
    for (i, named) in config.intakes.iter_mut().enumerate() {
        let prefix = format!("intakes[{i}]");
        intake_connection_checks(&prefix, &named.settings, errors);
        intake_value_checks(&prefix, &mut named.settings, env, errors);
    }
    routing_checks(config, errors);
}

/// The keys of one intake that depend on each other; resolves its key and its
/// `max_event_bytes`. `prefix` names it in errors (`intake`, `intakes[0]`).
fn intake_value_checks(
    prefix: &str,
    intake: &mut IntakeSettings,
    env: &EnvLookup,
    errors: &mut Vec<ConfigError>,
) {
    if intake.compression == Some(BodyCompression::Gzip) && !intake.gzip {
        errors.push(ConfigError::invalid(
            format!("{prefix}.gzip"),
            format!(
                "false contradicts {prefix}.compression = \"gzip\"; set only {prefix}.compression"
            ),
        ));
    }
    // Resolved, so `check-config` shows what is used.
    intake.compression = Some(intake.body_compression());
    if intake.compression == Some(BodyCompression::Zstd)
        && intake.protocol != IntakeProtocol::Ndjson
    {
        errors.push(ConfigError::invalid(
            format!("{prefix}.compression"),
            format!(
                "\"zstd\" is for NDJSON intakes that accept Content-Encoding: zstd; the {} protocol's intake takes gzip (set {prefix}.compression = \"gzip\")",
                intake.protocol
            ),
        ));
    }
    if intake.retry_max_backoff_ms < intake.retry_initial_backoff_ms {
        errors.push(ConfigError::invalid(
            format!("{prefix}.retry_max_backoff_ms"),
            format!(
                "{} is below {prefix}.retry_initial_backoff_ms ({})",
                intake.retry_max_backoff_ms, intake.retry_initial_backoff_ms
            ),
        ));
    }
    for (dataset, index) in &intake.elasticsearch_indices {
        if index.trim().is_empty() || index.contains(['"', '\\', '\n']) {
            errors.push(ConfigError::invalid(
                format!("{prefix}.elasticsearch_indices.{dataset}"),
                "must be a non-empty index name without quotes, backslashes or line breaks",
            ));
        }
    }
    // Sekoia's HTTP intake refuses events over 250,000 bytes; the others have no
    // documented limit, 1 MiB keeps a runaway record from stalling a batch.
    match intake.max_event_bytes {
        0 => {
            intake.max_event_bytes = match intake.protocol {
                IntakeProtocol::Sekoia => 250_000,
                IntakeProtocol::Ndjson | IntakeProtocol::Elasticsearch => 1 << 20,
            }
        }
        1..1_024 => errors.push(ConfigError::invalid(
            format!("{prefix}.max_event_bytes"),
            format!(
                "{} is out of range (expected 0 for the protocol's limit, or between 1024 and {})",
                intake.max_event_bytes,
                100 << 20
            ),
        )),
        _ => {}
    }
    match resolve_key(prefix, intake, env) {
        Ok(()) => {
            if intake.protocol == IntakeProtocol::Sekoia && intake.key.is_none() {
                errors.push(ConfigError::missing(
                    &format!("{prefix}.key"),
                    &format!("the sekoia protocol needs an intake key: set one of {prefix}.key, {prefix}.key_env or {prefix}.key_file"),
                ));
            }
        }
        Err(e) => errors.push(e),
    }
    if intake.payload == PayloadMode::Raw && intake.protocol == IntakeProtocol::Elasticsearch {
        errors.push(ConfigError::invalid(
            format!("{prefix}.payload"),
            "raw records are not JSON documents Elasticsearch can index: use payload = \"ecs\" with protocol = \"elasticsearch\", or protocol sekoia/ndjson",
        ));
    }
}

/// Resolves `intake.key` from exactly one of its three sources, trimmed (files and
/// `echo`ed variables usually end with a newline).
fn resolve_key(
    prefix: &str,
    intake: &mut IntakeSettings,
    env: &EnvLookup,
) -> Result<(), ConfigError> {
    let given = [
        intake.key.is_some(),
        intake.key_env.is_some(),
        intake.key_file.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given > 1 {
        return Err(ConfigError::invalid(
            format!("{prefix}.key"),
            format!("set only one of {prefix}.key, {prefix}.key_env and {prefix}.key_file"),
        ));
    }
    if let Some(var) = &intake.key_env {
        let value = env.get(var).ok_or_else(|| {
            ConfigError::invalid(
                format!("{prefix}.key_env"),
                format!("environment variable {var} is not set"),
            )
        })?;
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(ConfigError::invalid(
                format!("{prefix}.key_env"),
                format!("environment variable {var} is empty"),
            ));
        }
        intake.key = Some(IntakeKey::new(value, KeySource::Env(var.clone())));
    } else if let Some(path) = &intake.key_file {
        let value = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid(
                format!("{prefix}.key_file"),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(ConfigError::invalid(
                format!("{prefix}.key_file"),
                format!("{} is empty", path.display()),
            ));
        }
        intake.key = Some(IntakeKey::new(value, KeySource::File(path.clone())));
    }
    if intake
        .key
        .as_ref()
        .is_some_and(|k| k.expose().contains(['\r', '\n']))
    {
        // A multi-line key cannot go in a header and is certainly a wrong file.
        return Err(ConfigError::invalid(
            format!("{prefix}.key"),
            "the key contains a line break",
        ));
    }
    Ok(())
}

/// `[formats]` and its `[[formats.rules]]`: unknown keys get suggestions, then each
/// rule is validated on its own.
fn read_formats(
    value: Option<config::Value>,
    errors: &mut Vec<ConfigError>,
) -> Option<FormatsSettings> {
    let Some(value) = value else {
        return Some(FormatsSettings::default());
    };
    let before = errors.len();
    // Unknown keys first, with suggestions (serde's own message lists every field).
    if let config::ValueKind::Table(table) = &value.kind {
        let known = struct_fields::<raw::Formats>();
        for key in table.keys().filter(|k| !known.contains(&k.as_str())) {
            errors.push(ConfigError::unknown("formats", key, "key", known));
        }
        // A rule's keys other than RULE_KEYS are its format's options: the format
        // checks them and names an unknown one (validate_rule).
    }
    if errors.len() > before {
        return None;
    }
    let raw: raw::Formats = match value.try_deserialize() {
        Ok(raw) => raw,
        Err(e) => {
            errors.push(ConfigError::invalid("formats", e.to_string()));
            return None;
        }
    };
    let mut rules = Vec::with_capacity(raw.rules.len());
    for (i, rule) in raw.rules.into_iter().enumerate() {
        match validate_rule(i, rule) {
            Ok(rule) => rules.push(rule),
            Err(e) => errors.push(e),
        }
    }
    (errors.len() == before).then_some(FormatsSettings { rules })
}

/// Reads the `[[intakes]]` entries: each has a `name`, the `datasets` it receives and
/// the keys of `[intake]` (read and checked the same way).
fn read_intakes(
    value: Option<config::Value>,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<NamedIntake>> {
    let Some(value) = value else {
        return Some(Vec::new());
    };
    let entries = match value.into_array() {
        Ok(entries) => entries,
        Err(_) => {
            errors.push(ConfigError::invalid(
                "intakes",
                "expected [[intakes]] entries (an array of tables), each with name, datasets and the keys of [intake]",
            ));
            return None;
        }
    };
    let before = errors.len();
    let mut intakes = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let prefix = format!("intakes[{i}]");
        let mut table = match entry.into_table() {
            Ok(table) => table,
            Err(e) => {
                errors.push(ConfigError::invalid(prefix, e.to_string()));
                continue;
            }
        };
        let name: Option<String> = Key::read(
            required("e.g. \"cloudfront\"").parse(intake_name),
            &prefix,
            "name",
            table.remove("name"),
            errors,
        );
        let datasets: Option<Vec<String>> = Key::read(
            required("e.g. [\"aws.cloudfront\"]"),
            &prefix,
            "datasets",
            table.remove("datasets"),
            errors,
        );
        let settings = IntakeSettings::read(&prefix, &mut table, errors);
        let known: Vec<&str> = NAMED_INTAKE_KEYS
            .iter()
            .chain(IntakeSettings::KEYS)
            .copied()
            .collect();
        for unknown in table.keys() {
            errors.push(ConfigError::unknown(&prefix, unknown, "key", &known));
        }
        if let (Some(name), Some(datasets), Some(settings)) = (name, datasets, settings) {
            intakes.push(NamedIntake {
                name,
                datasets,
                settings,
            });
        }
    }
    (errors.len() == before).then_some(intakes)
}

/// `[[intakes]]` names: a metrics label and a log field, so short and plain.
fn intake_name(name: String) -> Result<String, String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(format!(
            "{name:?}: 1 to 64 letters, digits, - or _ (it becomes the intake metrics label)"
        ));
    }
    if name == DEFAULT_INTAKE_NAME {
        return Err(format!(
            "{name:?} is the name of [intake], the default intake: choose another"
        ));
    }
    Ok(name)
}

/// The name of `[intake]` in logs and metrics labels.
pub const DEFAULT_INTAKE_NAME: &str = "default";

/// Every dataset goes to one intake: names and datasets are unique across
/// `[[intakes]]`.
fn routing_checks(config: &Config, errors: &mut Vec<ConfigError>) {
    let mut names = std::collections::HashSet::new();
    let mut owners: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for (i, named) in config.intakes.iter().enumerate() {
        if !names.insert(named.name.as_str()) {
            errors.push(ConfigError::invalid(
                format!("intakes[{i}].name"),
                format!("{:?} names two intakes: names must be unique", named.name),
            ));
        }
        if named.datasets.is_empty() {
            errors.push(ConfigError::invalid(
                format!("intakes[{i}].datasets"),
                "empty: list the event.dataset values this intake receives (e.g. [\"aws.cloudfront\"]); every other event goes to [intake]",
            ));
        }
        for dataset in &named.datasets {
            let dataset = dataset.trim();
            if dataset.is_empty() {
                errors.push(ConfigError::invalid(
                    format!("intakes[{i}].datasets"),
                    "contains an empty dataset",
                ));
            } else if let Some(other) = owners.insert(dataset, named.name.as_str()) {
                errors.push(ConfigError::invalid(
                    format!("intakes[{i}].datasets"),
                    format!(
                        "{dataset} is already routed to intake {other:?}: a dataset goes to one intake"
                    ),
                ));
            }
        }
    }
}

/// The field names a `#[derive(Deserialize)]` struct expects, asked from the derive
/// itself (it passes them to `deserialize_struct`), so no list repeats them.
fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};

    struct FieldsOf<'a>(&'a mut &'static [&'static str]);

    impl<'de> de::Deserializer<'de> for FieldsOf<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields captured"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // The error is the point: deserialization stops once the fields are seen.
    let _ = T::deserialize(FieldsOf(&mut fields));
    fields
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
/// strings (no `try_parsing`): numbers and booleans are converted when read into a
/// numeric key, while a key such as `ALF_INTAKE__KEY=00123` keeps its zeros.
fn env_source() -> config::Environment {
    config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("_")
        .separator(ENV_SEPARATOR)
        .ignore_empty(true)
}

/// Reports unknown top-level sections of a file (`[intak]`), which would otherwise be
/// ignored: environment variables may carry unrelated `ALF_*` names, files may not.
/// A file that is not TOML is the one error returned at once.
fn check_sections(
    text: &str,
    origin: &str,
    errors: &mut Vec<ConfigError>,
) -> Result<(), ConfigError> {
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| ConfigError::Source(format!("{origin} is not valid TOML: {e}")))?;
    for key in table.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            errors.push(ConfigError::unknown("", key, "section", SECTIONS));
        }
    }
    Ok(())
}

/// Deserialization targets of `[formats]`: every key optional, so validation can name
/// what is missing.
mod raw {
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Formats {
        #[serde(default)]
        pub rules: Vec<Rule>,
    }

    /// Keys other than these four ([`super::RULE_KEYS`]) are the format's options,
    /// checked by the format (an unknown one is an error there).
    #[derive(Debug, Default, Deserialize)]
    pub struct Rule {
        pub bucket: Option<String>,
        pub key_prefix: Option<String>,
        pub key_regex: Option<String>,
        pub format: Option<String>,
        #[serde(flatten)]
        pub options: std::collections::BTreeMap<String, serde_json::Value>,
    }
}

/// The keys of a `[[formats.rules]]` entry itself; any other key is an option of its
/// format.
const RULE_KEYS: &[&str] = &["bucket", "key_prefix", "key_regex", "format"];

fn validate_rule(i: usize, rule: raw::Rule) -> Result<FormatRule, ConfigError> {
    let key = |k: &str| format!("formats.rules[{i}].{k}");
    // A key no format has is a typo of a rule key or of an option: suggest the nearest.
    let options_of_any_format: Vec<&str> = Format::ALL
        .iter()
        .flat_map(|f| f.spec().options.iter().map(|o| o.name))
        .collect();
    if let Some(name) = rule
        .options
        .keys()
        .find(|name| !options_of_any_format.contains(&name.as_str()))
    {
        let mut known: Vec<&str> = RULE_KEYS.to_vec();
        known.extend(&options_of_any_format);
        known.dedup();
        return Err(ConfigError::unknown(
            &format!("formats.rules[{i}]"),
            name,
            "key",
            &known,
        ));
    }
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

    fn parse_with_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let map = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_sources(Some((text, "test")), false, &EnvLookup::Map(map), false)
    }

    fn error_of(text: &str) -> String {
        match Config::from_toml_str(text) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn request_compression_is_gzip_unless_said_otherwise_and_zstd_only_for_ndjson() {
        let of = |extra: &str| {
            Config::from_toml_str(&format!("{MINIMAL}{extra}\n"))
                .unwrap()
                .intake
                .body_compression()
        };
        assert_eq!(of(""), BodyCompression::Gzip);
        assert_eq!(of("gzip = false"), BodyCompression::None);
        assert_eq!(of("compression = \"none\""), BodyCompression::None);
        assert_eq!(
            of("protocol = \"ndjson\"\ncompression = \"zstd\""),
            BodyCompression::Zstd
        );
        let ndjson = Config::from_toml_str(&format!(
            "{MINIMAL}protocol = \"ndjson\"\ncompression = \"zstd\"\nzstd_level = -3\n"
        ))
        .unwrap();
        assert_eq!(ndjson.intake.zstd_level, -3);
        assert_eq!(ndjson.intake.compression, Some(BodyCompression::Zstd));
        let err = error_of(&format!("{MINIMAL}compression = \"zstd\"\n"));
        assert!(
            err.contains("intake.compression") && err.contains("NDJSON") && err.contains("sekoia"),
            "{err}"
        );
        let err = error_of(&format!("{MINIMAL}gzip = false\ncompression = \"gzip\"\n"));
        assert!(err.contains("intake.gzip: false contradicts"), "{err}");
        let err = error_of(&format!("{MINIMAL}compression = \"brotli\"\n"));
        assert!(
            err.contains("intake.compression") && err.contains("zstd"),
            "{err}"
        );
        let err = error_of(&format!(
            "{MINIMAL}protocol = \"ndjson\"\nzstd_level = 20\n"
        ));
        assert!(
            err.contains("intake.zstd_level: 20 is out of range"),
            "{err}"
        );
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
        assert_eq!(c.intake.elasticsearch_index, "logs-aws.{dataset}-default");
        assert_eq!(c.batch.max_events, 5000);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.level, "info");
        assert_eq!(c.metrics.listen, None);
        assert_eq!(c.aws.endpoint_url, None);
        assert_eq!(
            c.intake.key.as_ref().map(IntakeKey::expose),
            Some("secret-intake-key-123")
        );
    }

    #[test]
    fn values_are_read_and_converted() {
        let text = format!(
            "{MINIMAL}protocol = \"ndjson\"\nmax_retries = 0\n[aws]\nendpoint_url = \"http://127.0.0.1:4566\"\nregion = \"\"\n[log]\nformat = \"text\"\nlevel = \"info,aws_log_forwarder=debug\"\n[metrics]\nlisten = \"127.0.0.1:9898\"\n"
        );
        let c = Config::from_toml_str(&text).unwrap();
        assert_eq!(c.intake.protocol, IntakeProtocol::Ndjson);
        assert_eq!(c.intake.max_retries, 0);
        // Normalised as before: the SDK trims the slash again.
        assert_eq!(
            c.aws.endpoint_url.as_deref(),
            Some("http://127.0.0.1:4566/")
        );
        assert_eq!(c.aws.region, None, "empty text means not set");
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.log.level, "info,aws_log_forwarder=debug");
        assert_eq!(c.metrics.listen.map(|a| a.port()), Some(9898));
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
                "elasticsearch_index = 'a\"b'",
                "[intake]\n",
                "intake.elasticsearch_index: must not contain quotes",
            ),
            (
                "object_concurrency = 0",
                "[processing]\n",
                "processing.object_concurrency:",
            ),
            (
                "keep_original = \"perhaps\"",
                "[processing]\n",
                "processing.keep_original:",
            ),
            (
                "format = \"xml\"",
                "[log]\n",
                "log.format: unknown format `xml`",
            ),
            (
                "level = \"[[\"",
                "[log]\n",
                "log.level: `[[` is not a level or filter",
            ),
            (
                "listen = \"localhost\"",
                "[metrics]\n",
                "metrics.listen: `localhost`",
            ),
            (
                "endpoint_url = \"localhost:4566\"",
                "[aws]\n",
                "aws.endpoint_url: scheme `localhost` is not http or https (expected e.g. http://127.0.0.1:4566)",
            ),
            ("max_bytes = 10", "[batch]\n", "batch.max_bytes:"),
            (
                "max_events = -1",
                "[batch]\n",
                "batch.max_events: -1 is out of range (expected between 1 and 1000000)",
            ),
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
            assert_eq!(err.lines().count(), 1, "{line}: one error: {err}");
        }
    }

    /// The issue's example: three problems in one file, three lines, each naming its key.
    #[test]
    fn every_error_is_reported_at_once() {
        let text = r#"
[sqs]
queue_url = "sqs.eu-west-1.amazonaws.com/123456789012/logs"
max_messages_in_flight = 0
[intake]
url = "ftp://intake.example.com"
key = "k"
[batch]
linger_ms = 1000000
"#;
        let errors = Config::from_toml_str(text).unwrap_err();
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "sqs.queue_url: relative URL without a base (expected e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/aws-logs)",
                "sqs.max_messages_in_flight: 0 is out of range (expected between 1 and 10000)",
                "intake.url: scheme `ftp` is not http or https (expected e.g. https://intake.sekoia.io)",
                "batch.linger_ms: 1000000 is out of range (expected between 0 and 600000)",
            ]
        );
        assert_eq!(errors.to_string(), lines.join("\n"));
    }

    #[test]
    fn missing_required_keys_are_named() {
        let errors = error_of("[intake]\nurl = \"https://x\"\nkey = \"k\"\n");
        assert_eq!(
            errors,
            "sqs.queue_url: required but not set (e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/aws-logs)"
        );
        // Nothing at all: both required keys, and no cross-check noise.
        let errors = error_of("");
        assert_eq!(errors.lines().count(), 2, "{errors}");
        assert!(
            errors
                .lines()
                .nth(1)
                .unwrap()
                .starts_with("intake.url: required")
        );
        let no_key = MINIMAL.replace("key = \"  secret-intake-key-123\\n\"", "");
        assert!(error_of(&no_key).starts_with("intake.key: required"));
        let ndjson = format!("{no_key}protocol = \"ndjson\"\n");
        assert!(Config::from_toml_str(&ndjson).unwrap().intake.key.is_none());
    }

    #[test]
    fn unknown_keys_and_sections_are_rejected_with_suggestions() {
        assert_eq!(
            error_of(&format!("{MINIMAL}gzipp = true\n")),
            "intake.gzipp: unknown key; did you mean intake.gzip?"
        );
        let text = MINIMAL.replace("queue_url", "queue_ulr");
        let err = error_of(&text);
        assert!(
            err.lines()
                .any(|l| l == "sqs.queue_ulr: unknown key; did you mean sqs.queue_url?"),
            "{err}"
        );
        assert!(
            err.lines()
                .any(|l| l.starts_with("sqs.queue_url: required")),
            "{err}"
        );
        assert_eq!(
            error_of(&format!("{MINIMAL}[intak]\nurl = \"x\"\n")),
            "intak: unknown section; did you mean intake?"
        );
        // Nothing close: the known keys are listed.
        assert_eq!(
            error_of(&format!("{MINIMAL}[metrics]\nport = 9\n")),
            "metrics.port: unknown key (expected one of: listen)"
        );
        let err = error_of(&format!(
            "{MINIMAL}[[formats.rules]]\nbuckett = \"b\"\nformat = \"waf\"\n"
        ));
        assert_eq!(
            err,
            "formats.rules[0].buckett: unknown key; did you mean formats.rules[0].bucket?"
        );
        assert_eq!(
            error_of(&format!("{MINIMAL}[formats]\nrule = []\n")),
            "formats.rule: unknown key; did you mean formats.rules?"
        );
    }

    #[test]
    fn struct_fields_come_from_the_derive() {
        assert_eq!(struct_fields::<raw::Formats>(), ["rules"]);
        // A rule flattens its format's options: no fixed field list to ask for.
        assert!(struct_fields::<raw::Rule>().is_empty());
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
        // Two bad rules, two errors.
        let two = format!(
            "{MINIMAL}[[formats.rules]]\nformat = \"waf\"\n[[formats.rules]]\nbucket = \"b\"\nformat = \"nope\"\n"
        );
        assert_eq!(error_of(&two).lines().count(), 2, "{}", error_of(&two));
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
        let key = c.intake.key.unwrap();
        assert_eq!(key.expose(), "from-file");
        assert_eq!(key.source(), &KeySource::File(path.clone()));

        let both = format!("{MINIMAL}key_env = \"X\"\n");
        assert!(error_of(&both).starts_with("intake.key: set only one"));

        let broken = MINIMAL.replace("  secret-intake-key-123\\n", "a\\nb");
        assert_eq!(
            error_of(&broken),
            "intake.key: the key contains a line break"
        );
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
        assert_eq!(
            back["intake"]["url"].as_str(),
            Some("https://intake.sekoia.io/")
        );
        let again = Config::from_toml_str(&toml).unwrap();
        assert_eq!(
            again.masked(),
            c.masked(),
            "the masked view reads back the same"
        );

        let text = MINIMAL.replace(
            "key = \"  secret-intake-key-123\\n\"",
            "key_env = \"MY_KEY\"",
        );
        let c = parse_with_env(&text, &[("MY_KEY", "secret-intake-key-123")]).unwrap();
        let toml = c.masked_toml();
        assert!(toml.contains("key_env = \"MY_KEY\""), "{toml}");
        assert!(toml.contains("key = \"***\""), "{toml}");
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
        assert!(text.contains("[[formats.rules]]"));
        // Every key the daemon declares appears in the example, set or commented out.
        for key in Config::keys() {
            let name = key.rsplit('.').next().unwrap_or_default();
            assert!(
                text.contains(&format!("\n{name} =")) || text.contains(&format!("# {name} =")),
                "{key} is not documented"
            );
        }
    }

    /// The only test touching the process environment (tests run in parallel threads,
    /// so the variable names are unique to this test).
    #[test]
    #[allow(unsafe_code)] // std::env::set_var: see the SAFETY notes.
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
