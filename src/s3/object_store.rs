//! The seam between the engine and S3: the operations the engine needs, as a trait with a
//! real implementation ([`super::SdkStore`]) and an in-process fake ([`super::FakeStore`])
//! for unit tests and overhead benchmarks (after mountpoint-s3's `ObjectClient`).
//!
//! Errors are classified here, once, into [`S3ErrorKind`]: the engine decides retries,
//! pacing and the circuit breaker from the kind alone.

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
}

/// What S3 reports after a write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteResult {
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub kms_key_id: Option<String>,
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
}

impl HeadResult {
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

/// Classify an S3 error from its HTTP status, code and message (s3-kms-facts.md §2.3, §2.4:
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
        "InternalError" | "RequestTimeout" | "RequestTimeTooSkewed" | "OperationAborted" => return Transient,
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
    fn update_encryption(&self, req: UpdateRequest) -> impl Future<Output = Result<WriteResult, S3CallError>> + Send;
    fn copy_in_place(&self, req: CopyRequest) -> impl Future<Output = Result<WriteResult, S3CallError>> + Send;
    fn head(
        &self,
        bucket: String,
        key: String,
        version_id: Option<String>,
    ) -> impl Future<Output = Result<HeadResult, S3CallError>> + Send;
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
