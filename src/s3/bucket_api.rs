//! The seam between the pre-flight checks and AWS: the bucket-level S3 reads (settings,
//! policy, ACL, replication) and the KMS reads (DescribeKey, the key policy, its grants) the
//! checks make, and the two bucket writes of `rekey finish` (default encryption, bucket
//! policy), as a trait beside [`super::ObjectStore`], with a real
//! implementation ([`super::SdkBucketApi`]) and the in-process fake ([`super::FakeStore`]).
//!
//! Results are small typed values; an error keeps what the checks read from it: the AWS
//! error code, the HTTP status, the message, and the bucket's region when S3 names it.

use std::fmt;
use std::future::Future;

/// A KMS key's state, as DescribeKey reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    Enabled,
    Disabled,
    /// PendingDeletion or PendingReplicaDeletion.
    PendingDeletion,
    PendingImport,
    /// Its custom key store is disconnected.
    Unavailable,
    /// Any other state (Creating, Updating, …), by its AWS name.
    Other(String),
}

/// What the checks read of DescribeKey's `KeyMetadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMetadata {
    pub state: KeyState,
    /// `SYMMETRIC_DEFAULT`, `RSA_2048`, … (None when not reported).
    pub key_spec: Option<String>,
    /// `ENCRYPT_DECRYPT`, `SIGN_VERIFY`, … (None when not reported).
    pub key_usage: Option<String>,
    /// When a key pending deletion will be deleted, as AWS formats it.
    pub deletion_date: Option<String>,
    /// `CUSTOMER`, or `AWS` for an AWS managed key such as aws/s3 (None when not reported).
    pub key_manager: Option<String>,
}

impl KeyMetadata {
    /// An Enabled SYMMETRIC_DEFAULT ENCRYPT_DECRYPT key: the kind S3 encrypts with.
    pub fn symmetric() -> KeyMetadata {
        KeyMetadata {
            state: KeyState::Enabled,
            key_spec: Some("SYMMETRIC_DEFAULT".into()),
            key_usage: Some("ENCRYPT_DECRYPT".into()),
            deletion_date: None,
            key_manager: Some("CUSTOMER".into()),
        }
    }

    /// An AWS managed key (aws/s3): its key policy cannot be changed.
    pub fn aws_managed(&self) -> bool {
        self.key_manager.as_deref() == Some("AWS")
    }
}

/// A bucket's default encryption rule (GetBucketEncryption's first rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultEncryption {
    /// `AES256`, `aws:kms`, `aws:kms:dsse`.
    pub algorithm: String,
    /// `KMSMasterKeyID`; None for `aws:kms` means the AWS managed key aws/s3.
    pub kms_key_id: Option<String>,
    pub bucket_key: bool,
}

/// Who a bucket ACL grant names (GetBucketAcl's `Grantee`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclGrantee {
    /// An account, by its canonical user ID (and display name where S3 still gives one).
    CanonicalUser { id: String, name: Option<String> },
    /// A predefined group, by its URI (`http://acs.amazonaws.com/groups/global/AllUsers`, …).
    Group(String),
    /// An account, by its e-mail address.
    Email(String),
}

/// One grant of a bucket ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclGrant {
    pub grantee: AclGrantee,
    /// `READ`, `WRITE`, `READ_ACP`, `WRITE_ACP`, `FULL_CONTROL`.
    pub permission: String,
}

/// A bucket's ACL (GetBucketAcl).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketAcl {
    /// The owner's canonical user ID.
    pub owner_id: Option<String>,
    pub grants: Vec<AclGrant>,
}

/// What the access checks read of one rule of GetBucketReplication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRule {
    pub id: Option<String>,
    /// Status `Enabled`.
    pub enabled: bool,
    /// `SourceSelectionCriteria.SseKmsEncryptedObjects.Status` is `Enabled`: without it S3
    /// does not replicate SSE-KMS objects (docs/s3-facts.md §8).
    pub replicates_sse_kms: bool,
    /// The destination bucket's ARN (`arn:aws:s3:::name`).
    pub destination: String,
    /// `Destination.Account`, when the destination belongs to another account.
    pub destination_account: Option<String>,
    /// `EncryptionConfiguration.ReplicaKmsKeyID`.
    pub replica_kms_key: Option<String>,
}

/// One KMS grant on a key (ListGrants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    /// An ARN (a role, a user, an account root) or a service principal.
    pub grantee: String,
    /// `Decrypt`, `GenerateDataKey`, …
    pub operations: Vec<String>,
}

/// A failed call, flattened to what the checks read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The AWS error code, or one derived from the HTTP status (`AccessDenied` for a bare
    /// 403); empty when the call got no AWS answer (a connection or parsing failure).
    pub code: String,
    pub status: Option<u16>,
    pub message: Option<String>,
    /// The client's own description, for an error with no code.
    pub detail: String,
    /// The region S3 says the bucket is in (`x-amz-bucket-region`), when it says.
    pub bucket_region: Option<String>,
}

impl ApiError {
    /// An AWS answer with a code and message (how the fake fails).
    pub fn aws(status: u16, code: &str, message: &str) -> ApiError {
        ApiError {
            code: code.into(),
            status: Some(status),
            message: Some(message.into()),
            detail: String::new(),
            bucket_region: None,
        }
    }

    /// `Code: message`, the code alone, or the client's description when there is no code.
    pub fn text(&self) -> String {
        match &self.message {
            Some(m) if !self.code.is_empty() => format!("{}: {m}", self.code),
            _ if !self.code.is_empty() => self.code.clone(),
            _ => self.detail.clone(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl std::error::Error for ApiError {}

/// The reads the pre-flight checks make, and `rekey finish`'s bucket writes: none
/// touches an object.
pub trait BucketApi: Send + Sync {
    /// KMS DescribeKey. `Ok(None)`: it answered without metadata.
    fn describe_key(&self, key_arn: &str) -> impl Future<Output = Result<Option<KeyMetadata>, ApiError>> + Send;
    /// GetBucketLocation, as a region name (`us-east-1` for the empty constraint).
    fn bucket_region(&self, bucket: &str) -> impl Future<Output = Result<String, ApiError>> + Send;
    /// GetBucketLocation with ExpectedBucketOwner: Ok when `account` owns the bucket (AWS
    /// answers 403 AccessDenied when it does not).
    fn expect_owner(&self, bucket: &str, account: &str) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// GetBucketVersioning's status (`Enabled`, `Suspended`); None when never enabled.
    fn versioning(&self, bucket: &str) -> impl Future<Output = Result<Option<String>, ApiError>> + Send;
    /// GetBucketEncryption's first rule; None when it has no default. A bucket with no
    /// configuration at all answers ServerSideEncryptionConfigurationNotFoundError.
    fn default_encryption(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<Option<DefaultEncryption>, ApiError>> + Send;
    /// GetBucketOwnershipControls' first rule (`BucketOwnerEnforced`, …); None when it has
    /// no rule. A bucket with no controls answers OwnershipControlsNotFoundError.
    fn ownership(&self, bucket: &str) -> impl Future<Output = Result<Option<String>, ApiError>> + Send;
    /// GetBucketPolicy: the policy document as S3 returns it; None when the bucket has
    /// none (S3 answers NoSuchBucketPolicy).
    fn bucket_policy(&self, bucket: &str) -> impl Future<Output = Result<Option<String>, ApiError>> + Send;
    /// PutBucketPolicy: replace the bucket's policy with `policy` (a JSON document).
    fn put_bucket_policy(&self, bucket: &str, policy: &str) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// PutBucketEncryption: one rule, `rule`, as the bucket's default encryption.
    fn put_default_encryption(
        &self,
        bucket: &str,
        rule: &DefaultEncryption,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// GetBucketAcl.
    fn bucket_acl(&self, bucket: &str) -> impl Future<Output = Result<BucketAcl, ApiError>> + Send;
    /// GetBucketReplication's rules. A bucket without replication answers
    /// ReplicationConfigurationNotFoundError.
    fn replication(&self, bucket: &str) -> impl Future<Output = Result<Vec<ReplicationRule>, ApiError>> + Send;
    /// KMS GetKeyPolicy of the policy named `default` (the only name KMS has).
    fn key_policy(&self, key_arn: &str) -> impl Future<Output = Result<String, ApiError>> + Send;
    /// KMS ListGrants (the first 100; a key rarely has more).
    fn key_grants(&self, key_arn: &str) -> impl Future<Output = Result<Vec<KeyGrant>, ApiError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_reads_as_code_and_message_or_what_the_client_said() {
        assert_eq!(ApiError::aws(403, "AccessDenied", "Access Denied").text(), "AccessDenied: Access Denied");
        let bare = ApiError { message: None, ..ApiError::aws(404, "NotFound", "") };
        assert_eq!(bare.text(), "NotFound");
        let local = ApiError {
            code: String::new(),
            status: None,
            message: Some("ignored".into()),
            detail: "dispatch failure: connection refused".into(),
            bucket_region: None,
        };
        assert_eq!(local.text(), "dispatch failure: connection refused");
    }
}
