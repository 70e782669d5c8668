//! One module per log format, each declaring its registry entry as `pub(crate) const
//! SPEC: FormatSpec` (see [`crate::registry`]) beside its parser.
//!
//! The `declare_formats!` list below is the registry: one line per format declares
//! its module, its [`Format`] variant and its place in [`Format::ALL`] (the order of
//! format names in help and error texts).

use crate::registry::FormatSpec;

/// Declares the format modules, [`Format`], [`Format::ALL`] and the variant-to-spec map.
macro_rules! declare_formats {
    ($($variant:ident => $module:ident),+ $(,)?) => {
        $(pub mod $module;)+

        /// Every log format, by the name used in configuration and on the command line
        /// ([`Format::name`]). What a format is lives in its module's `SPEC`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Format {
            $($variant),+
        }

        impl Format {
            /// Every format, in registry order.
            pub const ALL: [Format; [$(Format::$variant),+].len()] = [$(Format::$variant),+];
        }

        /// The registry entry of `format`.
        pub(crate) fn spec_of(format: Format) -> &'static FormatSpec {
            match format {
                $(Format::$variant => &$module::SPEC),+
            }
        }
    };
}

declare_formats! {
    CloudFront => cloudfront,
    S3Access => s3_access,
    Elb => elb,
    VpcFlow => vpc_flow,
    CloudTrail => cloudtrail,
    Waf => waf,
    GuardDuty => guardduty,
    Route53Resolver => route53_resolver,
    NetworkFirewall => network_firewall,
    CloudWatchLogs => cloudwatch,
    AwsConfig => aws_config,
    RedshiftAudit => redshift,
    EventBridge => eventbridge,
    SecurityHub => securityhub,
    SecurityLake => security_lake,
    GlobalAccelerator => global_accelerator,
    Ndjson => ndjson,
    Lines => lines,
}

// Mappings of the messages CloudWatch Logs carries, and the bounded JSON value reader
// the CloudWatch Logs and EventBridge readers share: modules, not formats.
pub mod apigateway;
pub mod cloudwatch_inner;
pub mod eks_audit;
pub mod lambda;
pub mod rds;
pub mod route53_public;
