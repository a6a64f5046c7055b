//! [`BucketApi`] over the AWS SDK: the S3 bucket reads and the KMS key reads of the
//! pre-flight checks.

use super::bucket_api::{
    AclGrant, AclGrantee, ApiError, BucketAcl, BucketApi, DefaultEncryption, KeyGrant, KeyMetadata, KeyState,
    ReplicationRule,
};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// The pre-flight's reads over an S3 client and a KMS client in the key's region.
pub struct SdkBucketApi {
    s3: aws_sdk_s3::Client,
    kms: aws_sdk_kms::Client,
}

impl SdkBucketApi {
    /// `s3` may be the run's client: its few reads here get the SDK's standard retries
    /// (see [`patient`]).
    pub fn new(s3: &aws_sdk_s3::Client, kms: aws_sdk_kms::Client) -> SdkBucketApi {
        SdkBucketApi { s3: patient(s3), kms }
    }
}

/// The run's S3 client has the SDK's retries off (the engine owns them); the checks' few
/// reads get the standard retries, so an injected 500 or a dropped connection is no failure.
pub fn patient(s3: &aws_sdk_s3::Client) -> aws_sdk_s3::Client {
    let conf = s3
        .config()
        .to_builder()
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(5))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// An S3 SDK error, flattened: a missing code is derived from the HTTP status.
pub fn s3_api_error<E>(e: &SdkError<E, HttpResponse>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = match (e.code(), status) {
        (Some(c), _) => c.to_string(),
        (None, Some(403)) => "AccessDenied".into(),
        (None, Some(404)) => "NotFound".into(),
        (None, Some(301)) => "PermanentRedirect".into(),
        (None, Some(s)) if s >= 300 => format!("HTTP {s}"),
        (None, _) => String::new(), // not an S3 error: a connection or parsing failure
    };
    ApiError {
        code,
        status,
        message: e.message().map(str::to_string),
        detail: DisplayErrorContext(e).to_string(),
        bucket_region: e.raw_response().and_then(|r| r.headers().get("x-amz-bucket-region")).map(str::to_string),
    }
}

/// A KMS SDK error: KMS always names its errors, so no code is derived from the status.
fn kms_api_error<E>(e: &SdkError<E, HttpResponse>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    ApiError {
        code: e.code().unwrap_or_default().to_string(),
        status: e.raw_response().map(|r| r.status().as_u16()),
        message: e.message().map(str::to_string),
        detail: DisplayErrorContext(e).to_string(),
        bucket_region: None,
    }
}

fn key_metadata(m: &aws_sdk_kms::types::KeyMetadata) -> KeyMetadata {
    use aws_sdk_kms::types::KeyState as K;
    let state = match m.key_state() {
        None if m.enabled() => KeyState::Enabled,
        None => KeyState::Disabled,
        Some(K::Enabled) => KeyState::Enabled,
        Some(K::Disabled) => KeyState::Disabled,
        Some(K::PendingDeletion | K::PendingReplicaDeletion) => KeyState::PendingDeletion,
        Some(K::PendingImport) => KeyState::PendingImport,
        Some(K::Unavailable) => KeyState::Unavailable,
        Some(other) => KeyState::Other(other.as_str().to_string()),
    };
    KeyMetadata {
        state,
        key_spec: m.key_spec().map(|s| s.as_str().to_string()),
        key_usage: m.key_usage().map(|u| u.as_str().to_string()),
        deletion_date: m.deletion_date().map(|d| d.to_string()),
        key_manager: m.key_manager().map(|k| k.as_str().to_string()),
    }
}

impl BucketApi for SdkBucketApi {
    async fn describe_key(&self, key_arn: &str) -> Result<Option<KeyMetadata>, ApiError> {
        let out = self.kms.describe_key().key_id(key_arn).send().await.map_err(|e| kms_api_error(&e))?;
        Ok(out.key_metadata().map(key_metadata))
    }

    async fn bucket_region(&self, bucket: &str) -> Result<String, ApiError> {
        let out = self.s3.get_bucket_location().bucket(bucket).send().await.map_err(|e| s3_api_error(&e))?;
        // The two legacy constraints: none for us-east-1, `EU` for eu-west-1.
        Ok(match out.location_constraint().map(|c| c.as_str()) {
            None | Some("") => "us-east-1".to_string(),
            Some("EU") => "eu-west-1".to_string(),
            Some(r) => r.to_string(),
        })
    }

    async fn expect_owner(&self, bucket: &str, account: &str) -> Result<(), ApiError> {
        let ask = self.s3.get_bucket_location().bucket(bucket).expected_bucket_owner(account);
        ask.send().await.map(|_| ()).map_err(|e| s3_api_error(&e))
    }

    async fn versioning(&self, bucket: &str) -> Result<Option<String>, ApiError> {
        let out = self.s3.get_bucket_versioning().bucket(bucket).send().await.map_err(|e| s3_api_error(&e))?;
        Ok(out.status().map(|s| s.as_str().to_string()))
    }

    async fn default_encryption(&self, bucket: &str) -> Result<Option<DefaultEncryption>, ApiError> {
        let out = self.s3.get_bucket_encryption().bucket(bucket).send().await.map_err(|e| s3_api_error(&e))?;
        let rule = out.server_side_encryption_configuration().and_then(|c| c.rules().first());
        let bucket_key = rule.and_then(|r| r.bucket_key_enabled()).unwrap_or(false);
        Ok(rule.and_then(|r| r.apply_server_side_encryption_by_default()).map(|d| DefaultEncryption {
            algorithm: d.sse_algorithm().as_str().to_string(),
            kms_key_id: d.kms_master_key_id().map(str::to_string),
            bucket_key,
        }))
    }

    async fn bucket_policy(&self, bucket: &str) -> Result<Option<String>, ApiError> {
        match self.s3.get_bucket_policy().bucket(bucket).send().await {
            Ok(out) => Ok(out.policy().map(str::to_string)),
            Err(e) => {
                let e = s3_api_error(&e);
                if e.code == "NoSuchBucketPolicy" {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn put_bucket_policy(&self, bucket: &str, policy: &str) -> Result<(), ApiError> {
        let put = self.s3.put_bucket_policy().bucket(bucket).policy(policy);
        put.send().await.map(|_| ()).map_err(|e| s3_api_error(&e))
    }

    async fn put_default_encryption(&self, bucket: &str, rule: &DefaultEncryption) -> Result<(), ApiError> {
        use aws_sdk_s3::types::{
            ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
            ServerSideEncryptionRule,
        };
        let by_default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::from(rule.algorithm.as_str()))
            .set_kms_master_key_id(rule.kms_key_id.clone())
            .build()
            .map_err(|e| ApiError { detail: e.to_string(), ..ApiError::aws(400, "", "") })?;
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(by_default)
            .bucket_key_enabled(rule.bucket_key)
            .build();
        let config = ServerSideEncryptionConfiguration::builder()
            .rules(rule)
            .build()
            .map_err(|e| ApiError { detail: e.to_string(), ..ApiError::aws(400, "", "") })?;
        let put = self.s3.put_bucket_encryption().bucket(bucket).server_side_encryption_configuration(config);
        put.send().await.map(|_| ()).map_err(|e| s3_api_error(&e))
    }

    async fn ownership(&self, bucket: &str) -> Result<Option<String>, ApiError> {
        let out = self.s3.get_bucket_ownership_controls().bucket(bucket).send().await.map_err(|e| s3_api_error(&e))?;
        Ok(out.ownership_controls().and_then(|c| c.rules().first()).map(|r| r.object_ownership().as_str().to_string()))
    }

    async fn bucket_acl(&self, bucket: &str) -> Result<BucketAcl, ApiError> {
        use aws_sdk_s3::types::Type;
        let out = self.s3.get_bucket_acl().bucket(bucket).send().await.map_err(|e| s3_api_error(&e))?;
        let grants = out
            .grants()
            .iter()
            .filter_map(|g| {
                let who = g.grantee()?;
                let grantee = match who.r#type() {
                    Type::Group => AclGrantee::Group(who.uri().unwrap_or_default().to_string()),
                    Type::AmazonCustomerByEmail => {
                        AclGrantee::Email(who.email_address().unwrap_or_default().to_string())
                    }
                    _ => AclGrantee::CanonicalUser {
                        id: who.id().unwrap_or_default().to_string(),
                        name: who.display_name().map(str::to_string),
                    },
                };
                Some(AclGrant {
                    grantee,
                    permission: g.permission().map(|p| p.as_str().to_string()).unwrap_or_default(),
                })
            })
            .collect();
        Ok(BucketAcl { owner_id: out.owner().and_then(|o| o.id()).map(str::to_string), grants })
    }

    async fn replication(&self, bucket: &str) -> Result<Vec<ReplicationRule>, ApiError> {
        use aws_sdk_s3::types::{ReplicationRuleStatus, SseKmsEncryptedObjectsStatus};
        let out = self.s3.get_bucket_replication().bucket(bucket).send().await.map_err(|e| s3_api_error(&e))?;
        let rules = out.replication_configuration().map(|c| c.rules()).unwrap_or_default();
        Ok(rules
            .iter()
            .map(|r| {
                let sse_kms = r.source_selection_criteria().and_then(|c| c.sse_kms_encrypted_objects());
                let dest = r.destination();
                ReplicationRule {
                    id: r.id().map(str::to_string),
                    enabled: *r.status() == ReplicationRuleStatus::Enabled,
                    replicates_sse_kms: sse_kms.is_some_and(|k| *k.status() == SseKmsEncryptedObjectsStatus::Enabled),
                    destination: dest.map(|d| d.bucket().to_string()).unwrap_or_default(),
                    destination_account: dest.and_then(|d| d.account()).map(str::to_string),
                    replica_kms_key: dest
                        .and_then(|d| d.encryption_configuration())
                        .and_then(|e| e.replica_kms_key_id())
                        .map(str::to_string),
                }
            })
            .collect())
    }

    async fn key_policy(&self, key_arn: &str) -> Result<String, ApiError> {
        let ask = self.kms.get_key_policy().key_id(key_arn).policy_name("default");
        let out = ask.send().await.map_err(|e| kms_api_error(&e))?;
        Ok(out.policy().unwrap_or_default().to_string())
    }

    async fn key_grants(&self, key_arn: &str) -> Result<Vec<KeyGrant>, ApiError> {
        let out = self.kms.list_grants().key_id(key_arn).limit(100).send().await.map_err(|e| kms_api_error(&e))?;
        Ok(out
            .grants()
            .iter()
            .filter_map(|g| {
                let grantee = g.grantee_principal().or(g.grantee_service_principal())?;
                let operations = g.operations().iter().map(|o| o.as_str().to_string()).collect();
                Some(KeyGrant { grantee: grantee.to_string(), operations })
            })
            .collect())
    }
}
