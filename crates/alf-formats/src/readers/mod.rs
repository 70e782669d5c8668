//! Record readers and tokenizers shared by the formats, beside the line driver
//! ([`crate::driver::drive_lines`]):
//!
//! * [`json_records`]: JSON records streamed one by one out of a document of any size
//!   (CloudTrail, GuardDuty), bounded memory, one bad record isolated;
//! * [`json_values`]: top-level JSON values back to back or between text lines
//!   (Firehose output: CloudWatch Logs subscriptions, EventBridge), on the same byte
//!   source and value scanner as [`json_records`];
//! * [`json_lines`]: one JSON object per line, mapped by the format (WAF, Network
//!   Firewall, Route 53 resolver);
//! * [`access_log`]: the tokenizer of AWS's space-separated access logs (S3, ELB);
//! * [`columns`]: the column-table macro of positional and header-driven formats
//!   (CloudFront, VPC flow logs).
//!
//! A format picks its reader in its [`crate::registry::FormatSpec`].

pub(crate) mod access_log;
pub(crate) mod columns;
pub mod json_lines;
pub(crate) mod json_records;
pub(crate) mod json_values;
