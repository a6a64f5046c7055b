//! `rekey finish`: the bucket after its objects. Two bucket-level steps, each read first
//! and written only when it would change something (docs/s3-facts.md §9):
//!
//! * the default encryption (PutBucketEncryption): SSE-KMS under the plan's key, with the
//!   Bucket Key as the plan has it, so new writes stop arriving as SSE-S3;
//! * with `--enforce`, a bucket-policy statement that denies `s3:PutObject` unless the
//!   request names the plan's key, merged into the existing policy (GetBucketPolicy, then
//!   PutBucketPolicy of the whole document with every other statement as it was). The
//!   statement is found again by its `Sid`, so a second `finish` adds nothing, and one of a
//!   different key is replaced, not doubled.
//!
//! [`plan_finish`] reads and decides, [`apply`] writes what it decided; a dry run is the
//! first without the second. The diff of the policy is computed here, so what a dry run
//! shows is exactly what `apply` writes.

pub mod diff;
pub mod policy;

pub use diff::line_diff;
pub use policy::{enforce_statement, merge_policy, ENFORCE_SID};

use crate::s3::bucket_api::{ApiError, BucketApi, DefaultEncryption};
use crate::s3::object_store::same_kms_key;

/// What `finish` should set on one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub bucket: String,
    pub key_arn: String,
    pub bucket_key: bool,
    /// Also merge the enforcing statement into the bucket policy.
    pub enforce: bool,
}

/// The default-encryption step, as read and decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionStep {
    /// None: the bucket has no default encryption configuration.
    pub before: Option<DefaultEncryption>,
    pub after: DefaultEncryption,
}

impl EncryptionStep {
    /// The bucket's default is already the one wanted.
    pub fn unchanged(&self) -> bool {
        self.before.as_ref().is_some_and(|b| {
            b.algorithm == self.after.algorithm
                && b.bucket_key == self.after.bucket_key
                && b.kms_key_id
                    .as_deref()
                    .is_some_and(|k| self.after.kms_key_id.as_deref().is_some_and(|a| same_kms_key(k, a)))
        })
    }
}

/// The policy step, as read and decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyStep {
    /// The policy as S3 returned it (None: the bucket has none).
    pub before: Option<String>,
    /// The whole policy to put, pretty-printed.
    pub after: String,
    /// `before` pretty-printed against `after`, line by line (`-`, `+`, or ` `).
    pub diff: Vec<String>,
    pub unchanged: bool,
}

/// Both steps for one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishPlan {
    pub target: Target,
    pub encryption: EncryptionStep,
    /// None without `--enforce`.
    pub policy: Option<PolicyStep>,
}

#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    #[error("bucket {bucket}: {call} failed ({source}); the role running rekey finish needs s3:{permission}")]
    Call { bucket: String, call: &'static str, permission: &'static str, source: ApiError },
    #[error("bucket {bucket}: its policy cannot be merged into: {reason}")]
    BadPolicy { bucket: String, reason: String },
}

fn failed<'a>(
    bucket: &'a str,
    call: &'static str,
    permission: &'static str,
) -> impl FnOnce(ApiError) -> FinishError + 'a {
    move |source| FinishError::Call { bucket: bucket.to_string(), call, permission, source }
}

/// Read the bucket's default encryption (and, with `enforce`, its policy) and decide what
/// to write. Writes nothing.
pub async fn plan_finish(api: &impl BucketApi, target: &Target) -> Result<FinishPlan, FinishError> {
    let bucket = target.bucket.as_str();
    let before = match api.default_encryption(bucket).await {
        Ok(d) => d,
        Err(e) if e.code == "ServerSideEncryptionConfigurationNotFoundError" => None,
        Err(e) => return Err(failed(bucket, "GetBucketEncryption", "GetEncryptionConfiguration")(e)),
    };
    let after = DefaultEncryption {
        algorithm: "aws:kms".into(),
        kms_key_id: Some(target.key_arn.clone()),
        bucket_key: target.bucket_key,
    };
    let encryption = EncryptionStep { before, after };
    let policy = if target.enforce {
        let before = api.bucket_policy(bucket).await.map_err(failed(bucket, "GetBucketPolicy", "GetBucketPolicy"))?;
        let statement = enforce_statement(bucket, &target.key_arn);
        let merged = merge_policy(before.as_deref(), statement)
            .map_err(|reason| FinishError::BadPolicy { bucket: bucket.to_string(), reason })?;
        let shown_before = match before.as_deref() {
            Some(p) => policy::pretty(p).unwrap_or_else(|| p.to_string()),
            None => String::new(),
        };
        Some(PolicyStep {
            diff: line_diff(&shown_before, &merged.document),
            before,
            after: merged.document,
            unchanged: !merged.changed,
        })
    } else {
        None
    };
    Ok(FinishPlan { target: target.clone(), encryption, policy })
}

/// What [`apply`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub encryption: bool,
    pub policy: bool,
}

/// Write what `plan` decided: PutBucketEncryption unless the default is already the one
/// wanted, PutBucketPolicy unless the statement is already there.
pub async fn apply(api: &impl BucketApi, plan: &FinishPlan) -> Result<Applied, FinishError> {
    let bucket = plan.target.bucket.as_str();
    let mut applied = Applied::default();
    if !plan.encryption.unchanged() {
        api.put_default_encryption(bucket, &plan.encryption.after).await.map_err(failed(
            bucket,
            "PutBucketEncryption",
            "PutEncryptionConfiguration",
        ))?;
        applied.encryption = true;
    }
    if let Some(p) = plan.policy.as_ref().filter(|p| !p.unchanged) {
        api.put_bucket_policy(bucket, &p.after).await.map_err(failed(bucket, "PutBucketPolicy", "PutBucketPolicy"))?;
        applied.policy = true;
    }
    Ok(applied)
}

/// A default encryption rule on one line, for people and for the checkpoint.
pub fn describe(d: Option<&DefaultEncryption>) -> String {
    match d {
        None => "none".into(),
        Some(d) => {
            let key = match (d.algorithm.as_str(), d.kms_key_id.as_deref()) {
                ("aws:kms", None) => " (the AWS managed key aws/s3)".to_string(),
                (_, Some(k)) => format!(" {k}"),
                _ => String::new(),
            };
            let bk = if d.bucket_key { ", Bucket Key on" } else { "" };
            let alg = if d.algorithm == "AES256" { "AES256 (SSE-S3)" } else { d.algorithm.as_str() };
            format!("{alg}{key}{bk}")
        }
    }
}

#[cfg(test)]
mod tests;
