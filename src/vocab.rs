//! The words every module shares: how an object is re-encrypted ([`Method`]), why one is
//! left alone ([`SkipReason`]), the planner's [`Decision`], where an object stands in the
//! checkpoint ([`ObjectStatus`]) and what `rekey verify` concluded ([`Verdict`]).
//!
//! A leaf: it imports nothing of the crate, so `plan`, `store`, `exec` and the commands can
//! all use it without importing each other. Each type's `as_str` is the spelling stored in
//! the checkpoint and printed in JSON, CSV and reports: renaming one changes the file format.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How one object is re-encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// UpdateObjectEncryption: no data copied; ETag, version and storage class kept.
    Update,
    /// CopyObject onto itself, guarded by `x-amz-copy-source-if-match`.
    Copy,
    /// Multipart copy (UploadPartCopy), for objects above the multipart threshold.
    MultipartCopy,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Update, Method::Copy, Method::MultipartCopy];
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Update => "update",
            Method::Copy => "copy",
            Method::MultipartCopy => "multipart_copy",
        }
    }
    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an object is left alone. The names are part of the JSON output: do not rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    DeleteMarker,
    /// A noncurrent version, and the plan is `--versions current` (the default).
    NoncurrentVersion,
    /// `--versions all`: a noncurrent version that only a copy could re-encrypt
    /// (unencrypted, locked, or `--method copy`); a copy would make it current.
    NoncurrentNeedsCopy,
    Filtered,
    AlreadyKms,
    DsseKms,
    SseC,
    UnsupportedStorageClass,
    /// `--method update` on an object under retention or legal hold.
    ObjectLock,
    /// `--method update` on an unencrypted (NOT-SSE) object.
    NotEncrypted,
    /// A copy would need the object restored from an archive first.
    NeedsRestore,
    /// The row could not be decoded (`--skip-bad-rows`).
    BadRow,
}

impl SkipReason {
    pub const ALL: [SkipReason; 12] = [
        SkipReason::DeleteMarker,
        SkipReason::NoncurrentVersion,
        SkipReason::NoncurrentNeedsCopy,
        SkipReason::Filtered,
        SkipReason::AlreadyKms,
        SkipReason::DsseKms,
        SkipReason::SseC,
        SkipReason::UnsupportedStorageClass,
        SkipReason::ObjectLock,
        SkipReason::NotEncrypted,
        SkipReason::NeedsRestore,
        SkipReason::BadRow,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::DeleteMarker => "delete_marker",
            SkipReason::NoncurrentVersion => "noncurrent_version",
            SkipReason::NoncurrentNeedsCopy => "noncurrent_needs_copy",
            SkipReason::Filtered => "filtered",
            SkipReason::AlreadyKms => "already_kms",
            SkipReason::DsseKms => "dsse_kms",
            SkipReason::SseC => "sse_c",
            SkipReason::UnsupportedStorageClass => "unsupported_storage_class",
            SkipReason::ObjectLock => "object_lock",
            SkipReason::NotEncrypted => "not_encrypted",
            SkipReason::NeedsRestore => "needs_restore",
            SkipReason::BadRow => "bad_row",
        }
    }
    pub fn parse(s: &str) -> Option<SkipReason> {
        SkipReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Migrate(Method),
    Skip(SkipReason),
}

/// Where an object stands after a run has dealt with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectStatus {
    /// Not finished: not tried yet, interrupted, or stopped by the circuit breaker. The
    /// next run tries it.
    Pending,
    /// Planned to be left alone (the row's `skip_reason` says why). Never sent to S3.
    Skipped,
    Done,
    Failed,
    /// Changed since the inventory (412 on If-Match): never overwritten.
    Changed,
    /// Deleted since the inventory (404).
    Gone,
    /// Archived: a copy needs it restored first.
    NeedsRestore,
    /// An SSE-KMS object (`--from-key` / `--rekey-kms`) the run's HEAD found already under
    /// the target key: nothing to do, and not a failure.
    AlreadyTargetKey,
    /// An SSE-KMS object the run's HEAD found under a key that is neither the target nor
    /// a `--from-key` key: left alone, and not a failure.
    OtherKmsKey,
}

impl ObjectStatus {
    pub const ALL: [ObjectStatus; 9] = [
        ObjectStatus::Pending,
        ObjectStatus::Skipped,
        ObjectStatus::Done,
        ObjectStatus::Failed,
        ObjectStatus::Changed,
        ObjectStatus::Gone,
        ObjectStatus::NeedsRestore,
        ObjectStatus::AlreadyTargetKey,
        ObjectStatus::OtherKmsKey,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectStatus::Pending => "pending",
            ObjectStatus::Skipped => "skipped",
            ObjectStatus::Done => "done",
            ObjectStatus::Failed => "failed",
            ObjectStatus::Changed => "changed",
            ObjectStatus::Gone => "gone",
            ObjectStatus::NeedsRestore => "needs_restore",
            ObjectStatus::AlreadyTargetKey => "already_target_key",
            ObjectStatus::OtherKmsKey => "other_kms_key",
        }
    }
    /// The status a checkpoint row holds; `None` for a spelling this version does not know.
    pub fn parse(s: &str) -> Option<ObjectStatus> {
        ObjectStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for ObjectStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `rekey verify` concluded about one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// SSE-KMS under the planned key, and everything else as planned.
    Ok,
    /// Reachable, but something differs (the detail says what).
    Mismatch,
    /// HEAD answered 404: the object is gone.
    Missing,
    /// S3 did not answer usably (denied, retries exhausted, …).
    Error,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [Verdict::Ok, Verdict::Mismatch, Verdict::Missing, Verdict::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Mismatch => "mismatch",
            Verdict::Missing => "missing",
            Verdict::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bucket-level step of `rekey finish`, as recorded in the checkpoint's `bucket_steps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BucketStep {
    /// PutBucketEncryption: the bucket's default is the plan's key.
    DefaultEncryption,
    /// PutBucketPolicy: a statement denying PutObject without the plan's key, merged in.
    EnforcePolicy,
}

impl BucketStep {
    pub const ALL: [BucketStep; 2] = [BucketStep::DefaultEncryption, BucketStep::EnforcePolicy];
    pub fn as_str(self) -> &'static str {
        match self {
            BucketStep::DefaultEncryption => "default_encryption",
            BucketStep::EnforcePolicy => "enforce_policy",
        }
    }
    pub fn parse(s: &str) -> Option<BucketStep> {
        BucketStep::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for BucketStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
