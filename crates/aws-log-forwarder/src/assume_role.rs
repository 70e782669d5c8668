//! `aws.assume_role_arn`: every AWS call of the process (S3, SQS, the S3 dead-letter
//! sink) made as a role, typically the reader role of an organisation's log-archive
//! account, with the SDK's `AssumeRoleProvider` on top of the default credential chain.
//! The SDK caches the temporary credentials and refreshes them before they expire.
//!
//! The role is assumed once at start-up, before anything else: a role that cannot be
//! assumed (no trust for the caller, wrong external id, a typo in the ARN) is then one
//! clear error instead of every S3 and SQS call failing later with AccessDenied.

use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use crate::config::{AwsSettings, DEFAULT_SESSION_NAME};

/// Why the role could not be assumed.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot assume {role} (aws.assume_role_arn): {cause}; check that the role's trust policy allows this identity (the base credentials: environment, profile, instance or pod role) to call sts:AssumeRole, that aws.external_id matches the sts:ExternalId condition, and that the ARN is right"
)]
pub struct AssumeRoleError {
    pub role: String,
    pub cause: String,
}

/// `sdk` with its credentials replaced by the role's when `aws.assume_role_arn` is set
/// (else `sdk` unchanged). The base credentials are `sdk`'s.
pub async fn assume_configured_role(
    sdk: SdkConfig,
    aws: &AwsSettings,
) -> Result<SdkConfig, AssumeRoleError> {
    let Some(role) = &aws.assume_role_arn else {
        return Ok(sdk);
    };
    let session_name = if aws.session_name.is_empty() {
        DEFAULT_SESSION_NAME
    } else {
        aws.session_name.as_str()
    };
    let mut builder = AssumeRoleProvider::builder(role.clone())
        .session_name(session_name)
        .configure(&sdk);
    if let Some(id) = &aws.external_id {
        builder = builder.external_id(id.clone());
    }
    let provider = builder.build().await;
    // Fail now, with the reason, rather than on the first S3 or SQS call.
    provider
        .provide_credentials()
        .await
        .map_err(|e| AssumeRoleError {
            role: role.clone(),
            cause: crate::errtext::chain(&e),
        })?;
    tracing::info!(
        role = role.as_str(),
        session_name,
        "assumed {role} for S3 and SQS"
    );
    Ok(sdk
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_what_to_check() {
        let e = AssumeRoleError {
            role: "arn:aws:iam::111111111111:role/reader".into(),
            cause: "AccessDenied: not authorized to perform sts:AssumeRole".into(),
        }
        .to_string();
        assert!(e.starts_with("cannot assume arn:aws:iam::111111111111:role/reader (aws.assume_role_arn): AccessDenied"));
        assert!(e.contains("trust policy") && e.contains("aws.external_id"));
        assert!(!e.contains('\n'));
    }
}
