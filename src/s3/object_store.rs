//! The seam between the engine and S3: the operations the engine needs, as a trait with a
//! real implementation ([`super::SdkStore`]) and an in-process fake ([`super::FakeStore`])
//! for unit tests and overhead benchmarks (after mountpoint-s3's `ObjectClient`).
//!
//! Errors are classified here, once, into [`S3ErrorKind`]: the engine decides retries,
//! pacing and the circuit breaker from the kind alone.

use crate::inventory::EncryptionStatus;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;

/// UpdateObjectEncryption: change the object's encryption to SSE-KMS without copying.
#[derive(Debug, Clone)]
pub struct UpdateRequest {
    pub bucket: String,
    pub key: String,
    /// The inventoried version: pinning it means a version written since is never touched.
    pub version_id: Option<String>,
    pub kms_key_arn: String,
    pub bucket_key: bool,
}

/// CopyObject onto the same key, to SSE-KMS, keeping metadata and tags.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    pub bucket: String,
    pub key: String,
    /// `x-amz-copy-source-if-match`: the inventory's ETag. A changed object answers 412
    /// and is never overwritten.
    pub if_match: Option<String>,
    /// Sent for every class but STANDARD: S3 resets an omitted class to STANDARD.
    pub storage_class: Option<String>,
    pub kms_key_arn: String,
    pub bucket_key: bool,
    /// Keep the object's additional checksum algorithm (CRC32, SHA256, …).
    pub checksum_algorithm: Option<String>,
    /// S3 does not copy the website redirect: re-sent when known (from HEAD).
    pub website_redirect: Option<String>,
    /// Object Lock settings for the new version (`--preserve-lock`).
    pub lock: Option<LockSettings>,
    /// ACL grants to re-apply (`--preserve-acl`): a copy's ACL is otherwise private.
    pub grants: Option<Grants>,
}

/// Object Lock settings carried onto a new version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockSettings {
    /// GOVERNANCE or COMPLIANCE.
    pub mode: Option<String>,
    /// RFC 3339.
    pub retain_until: Option<String>,
    pub legal_hold: bool,
}

impl LockSettings {
    pub fn is_empty(&self) -> bool {
        self.mode.is_none() && self.retain_until.is_none() && !self.legal_hold
    }
}

/// `x-amz-grant-*` header values (`id="…", uri="…"` lists), as S3 takes them on writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub full_control: Option<String>,
    pub read: Option<String>,
    pub read_acp: Option<String>,
    pub write_acp: Option<String>,
}

impl Grants {
    pub fn is_empty(&self) -> bool {
        self.full_control.is_none() && self.read.is_none() && self.read_acp.is_none() && self.write_acp.is_none()
    }
}

/// Everything a multipart copy must set on CreateMultipartUpload, since UploadPartCopy
/// copies bytes only (docs/s3-facts.md §3, §5).
#[derive(Debug, Clone, Default)]
pub struct CreateMultipartRequest {
    pub bucket: String,
    pub key: String,
    pub kms_key_arn: String,
    pub bucket_key: bool,
    pub storage_class: Option<String>,
    pub checksum_algorithm: Option<String>,
    pub source: HeadResult,
    pub tags: Vec<(String, String)>,
    pub lock: Option<LockSettings>,
    pub grants: Option<Grants>,
}

/// One UploadPartCopy.
#[derive(Debug, Clone)]
pub struct PartCopyRequest {
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    /// 1-based.
    pub part_number: i32,
    /// Inclusive byte range of the source.
    pub first: u64,
    pub last: u64,
    pub if_match: Option<String>,
}

/// A multipart upload in progress (ListMultipartUploads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    pub upload_id: String,
    /// When it was initiated, ms since the epoch.
    pub initiated_ms: i64,
}

/// A copied part, for CompleteMultipartUpload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: i32,
    pub etag: String,
    /// The part's checksum, `ALGORITHM:value`, when the upload has an algorithm.
    pub checksum: Option<String>,
}

/// What S3 reports after a write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteResult {
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub kms_key_id: Option<String>,
    /// The new object's additional checksum, `ALGORITHM:value`.
    pub checksum: Option<String>,
    /// The version a copy read (`x-amz-copy-source-version-id`): on a versioned bucket,
    /// the one it replaced, left noncurrent (None for an update, or when S3 does not say).
    pub source_version_id: Option<String>,
}

/// What HEAD reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadResult {
    pub etag: Option<String>,
    pub version_id: Option<String>,
    /// `aws:kms`, `AES256`, `aws:kms:dsse`, or none.
    pub sse: Option<String>,
    pub kms_key_id: Option<String>,
    pub storage_class: Option<String>,
    pub bucket_key_enabled: Option<bool>,
    pub content_length: Option<u64>,
    pub metadata: HashMap<String, String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    /// The Expires header as S3 sent it.
    pub expires: Option<String>,
    pub website_redirect: Option<String>,
    /// Which additional checksum the object has (from the checksum HEAD returns).
    pub checksum_algorithm: Option<String>,
    pub lock: LockSettings,
}

impl HeadResult {
    /// `x-amz-server-side-encryption` as an inventory's EncryptionStatus. SSE-C is not
    /// seen here: S3 refuses to HEAD such an object without its key (docs/s3-facts.md §1.6).
    pub fn encryption_status(&self) -> EncryptionStatus {
        match self.sse.as_deref() {
            None | Some("") => EncryptionStatus::NotSse,
            Some("AES256") => EncryptionStatus::SseS3,
            Some("aws:kms:dsse") => EncryptionStatus::DsseKms,
            Some(_) => EncryptionStatus::SseKms,
        }
    }

    /// Already SSE-KMS under `key_arn` (S3 reports a full ARN; emulators may echo an id).
    pub fn is_kms_under(&self, key_arn: &str) -> bool {
        self.sse.as_deref() == Some("aws:kms") && self.kms_key_id.as_deref().is_some_and(|k| same_kms_key(k, key_arn))
    }
}

/// Compare KMS key references: a full ARN and a bare key id name the same key.
pub fn same_kms_key(a: &str, b: &str) -> bool {
    fn id(k: &str) -> &str {
        k.rsplit_once(":key/").map(|(_, id)| id).or_else(|| k.strip_prefix("key/")).unwrap_or(k)
    }
    a == b || id(a) == id(b)
}

/// How an S3 failure is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3ErrorKind {
    /// 412: the object changed since the inventory.
    PreconditionFailed,
    /// 404 NoSuchKey / NoSuchVersion.
    NotFound,
    /// The object is archived and must be restored first.
    InvalidObjectState,
    /// 403, or a KMS key S3 cannot use (KMS.DisabledException, …): no object can succeed;
    /// the circuit breaker opens.
    Fatal,
    /// 503 SlowDown "…operations involving AWS KMS": slow the KMS bucket.
    ThrottledKms,
    /// 503 SlowDown / ServiceUnavailable, 429: slow the S3 bucket.
    ThrottledS3,
    /// 500, RequestTimeout, an error inside a 200, connection resets, timeouts: retry.
    Transient,
    /// Anything else (400 InvalidRequest, …): this object fails, the run goes on.
    Rejected,
}

impl S3ErrorKind {
    pub fn is_retryable(self) -> bool {
        matches!(self, S3ErrorKind::ThrottledKms | S3ErrorKind::ThrottledS3 | S3ErrorKind::Transient)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3CallError {
    pub kind: S3ErrorKind,
    /// S3's error code (`SlowDown`, `KMS.DisabledException`), or a client-side label.
    pub code: String,
    pub message: String,
    pub status: Option<u16>,
}

impl fmt::Display for S3CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => write!(f, "{} {}: {}", s, self.code, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

impl std::error::Error for S3CallError {}

/// Classify an S3 error from its HTTP status, code and message (docs/s3-facts.md §2.3, §2.4:
/// KMS throttling is `503 SlowDown` with a message naming AWS KMS; KMS key problems are
/// `KMS.*` 400s; a 200 may carry an embedded `<Error>`).
pub fn classify(status: Option<u16>, code: &str, message: &str) -> S3ErrorKind {
    use S3ErrorKind::*;
    match code {
        "PreconditionFailed" => return PreconditionFailed,
        "NoSuchKey" | "NoSuchVersion" => return NotFound,
        "InvalidObjectState" => return InvalidObjectState,
        "AccessDenied"
        | "AllAccessDisabled"
        | "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "InvalidToken"
        | "NoSuchBucket" => return Fatal,
        c if c.starts_with("KMS.") => {
            return if c == "KMS.ThrottlingException" { ThrottledKms } else { Fatal };
        }
        "SlowDown"
        | "ServiceUnavailable"
        | "Throttling"
        | "ThrottlingException"
        | "TooManyRequests"
        | "RequestLimitExceeded" => {
            return if message.contains("AWS KMS") { ThrottledKms } else { ThrottledS3 };
        }
        "InternalError"
        | "RequestTimeout"
        | "RequestTimeTooSkewed"
        | "OperationAborted"
        | "ConditionalRequestConflict" => return Transient,
        // An upload that is already gone (aborted or completed): nothing left to do.
        "NoSuchUpload" => return NotFound,
        _ => {}
    }
    match status {
        Some(412) => PreconditionFailed,
        Some(404) => NotFound,
        Some(403) => Fatal,
        Some(503) | Some(429) => {
            if message.contains("AWS KMS") {
                ThrottledKms
            } else {
                ThrottledS3
            }
        }
        Some(s) if s >= 500 => Transient,
        // A 200 that is an error: the body said so (CopyObject's embedded <Error>).
        Some(200) => Transient,
        None => Transient,
        _ => Rejected,
    }
}

/// The S3 operations the engine uses.
pub trait ObjectStore: Send + Sync + 'static {
    fn get_tags(
        &self,
        bucket: String,
        key: String,
        version_id: Option<String>,
    ) -> impl Future<Output = Result<Vec<(String, String)>, S3CallError>> + Send;
    /// The object's ACL as grant headers, or None when it is the owner-only default.
    fn get_grants(
        &self,
        bucket: String,
        key: String,
        version_id: Option<String>,
    ) -> impl Future<Output = Result<Option<Grants>, S3CallError>> + Send;
    /// Returns the upload id.
    fn create_multipart(&self, req: CreateMultipartRequest)
        -> impl Future<Output = Result<String, S3CallError>> + Send;
    fn upload_part_copy(&self, req: PartCopyRequest)
        -> impl Future<Output = Result<CompletedPart, S3CallError>> + Send;
    fn complete_multipart(
        &self,
        bucket: String,
        key: String,
        upload_id: String,
        parts: Vec<CompletedPart>,
        // `If-Match` on the destination: nothing written since the parts were copied.
        if_match: Option<String>,
    ) -> impl Future<Output = Result<WriteResult, S3CallError>> + Send;
    /// Uploads in progress for exactly this key.
    fn list_uploads(
        &self,
        bucket: String,
        key: String,
    ) -> impl Future<Output = Result<Vec<OpenUpload>, S3CallError>> + Send;
    fn abort_multipart(
        &self,
        bucket: String,
        key: String,
        upload_id: String,
    ) -> impl Future<Output = Result<(), S3CallError>> + Send;
    fn update_encryption(&self, req: UpdateRequest) -> impl Future<Output = Result<WriteResult, S3CallError>> + Send;
    fn copy_in_place(&self, req: CopyRequest) -> impl Future<Output = Result<WriteResult, S3CallError>> + Send;
    /// DeleteObject of exactly `version_id` (a permanent delete: no delete marker). Used
    /// only for the version a copy replaced (`rekey verify --delete-replaced-versions`).
    fn delete_version(
        &self,
        bucket: String,
        key: String,
        version_id: String,
    ) -> impl Future<Output = Result<(), S3CallError>> + Send;
    fn head(
        &self,
        bucket: String,
        key: String,
        version_id: Option<String>,
    ) -> impl Future<Output = Result<HeadResult, S3CallError>> + Send;
    /// HEAD without asking for the checksum (no `x-amz-checksum-mode`), as `rekey verify`
    /// sends it: the checksum of an SSE-KMS object also needs kms:Decrypt, and verify's
    /// role need not have it. The result has no `checksum_algorithm`.
    fn head_plain(
        &self,
        bucket: String,
        key: String,
        version_id: Option<String>,
    ) -> impl Future<Output = Result<HeadResult, S3CallError>> + Send {
        self.head(bucket, key, version_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use S3ErrorKind::*;

    #[test]
    fn classification() {
        assert_eq!(
            classify(Some(503), "SlowDown", "Please reduce your request rate for operations involving AWS KMS."),
            ThrottledKms
        );
        assert_eq!(classify(Some(503), "SlowDown", "Please reduce your request rate."), ThrottledS3);
        assert_eq!(classify(Some(412), "PreconditionFailed", ""), PreconditionFailed);
        assert_eq!(classify(Some(404), "NoSuchKey", ""), NotFound);
        assert_eq!(classify(Some(403), "InvalidObjectState", ""), InvalidObjectState);
        assert_eq!(classify(Some(403), "AccessDenied", ""), Fatal);
        for c in [
            "KMS.DisabledException",
            "KMS.NotFoundException",
            "KMS.KMSInvalidStateException",
            "KMS.InvalidKeyUsageException",
        ] {
            assert_eq!(classify(Some(400), c, ""), Fatal, "{c}");
        }
        assert_eq!(classify(Some(500), "InternalError", ""), Transient);
        assert_eq!(classify(Some(200), "InternalError", "embedded"), Transient);
        assert_eq!(classify(Some(400), "RequestTimeout", ""), Transient);
        assert_eq!(classify(None, "dispatch", "connection reset"), Transient);
        assert_eq!(classify(Some(400), "InvalidRequest", ""), Rejected);
        assert!(ThrottledKms.is_retryable() && Transient.is_retryable() && !Rejected.is_retryable());
    }

    #[test]
    fn kms_key_comparison() {
        let arn = "arn:aws:kms:us-east-1:111122223333:key/abcd-1234";
        assert!(same_kms_key(arn, "abcd-1234"));
        assert!(same_kms_key("abcd-1234", arn));
        assert!(!same_kms_key(arn, "arn:aws:kms:us-east-1:111122223333:key/other"));
        let h = HeadResult { sse: Some("aws:kms".into()), kms_key_id: Some("abcd-1234".into()), ..Default::default() };
        assert!(h.is_kms_under(arn));
        let h = HeadResult { sse: Some("AES256".into()), ..Default::default() };
        assert!(!h.is_kms_under(arn));
    }
}
