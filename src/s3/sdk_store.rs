//! [`ObjectStore`] over aws-sdk-s3: one method per S3 operation, each a single attempt
//! (the client is built with retries disabled; the engine retries).

use super::object_store::{
    classify, CompletedPart, CopyRequest, CreateMultipartRequest, Grants, HeadResult, LockSettings, ObjectStore,
    OpenUpload, PartCopyRequest, S3CallError, S3ErrorKind, UpdateRequest, WriteResult,
};
use crate::inventory::keys::{encode_form_key, encode_path};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart as SdkPart, MetadataDirective,
    ObjectEncryption, ObjectLockLegalHoldStatus, ObjectLockMode, Permission, ServerSideEncryption, SsekmsEncryption,
    StorageClass, TaggingDirective,
};

#[derive(Clone)]
pub struct SdkStore {
    client: aws_sdk_s3::Client,
}

impl SdkStore {
    pub fn new(client: aws_sdk_s3::Client) -> SdkStore {
        SdkStore { client }
    }
}

/// Turn an SDK failure into a classified [`S3CallError`].
pub fn call_error<E>(e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> S3CallError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let (code, message) = match &e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let code = err.code().map(str::to_string).unwrap_or_else(|| format!("Http{}", status.unwrap_or(0)));
            (code, err.message().unwrap_or_default().to_string())
        }
        SdkError::TimeoutError(_) => ("Timeout".to_string(), DisplayErrorContext(&e).to_string()),
        SdkError::DispatchFailure(_) => ("DispatchFailure".to_string(), DisplayErrorContext(&e).to_string()),
        SdkError::ResponseError(_) => ("ResponseError".to_string(), DisplayErrorContext(&e).to_string()),
        _ => ("ClientError".to_string(), DisplayErrorContext(&e).to_string()),
    };
    let kind = classify(status, &code, &message);
    S3CallError { kind, code, message, status }
}

fn invalid(what: &str, detail: impl std::fmt::Display) -> S3CallError {
    S3CallError {
        kind: S3ErrorKind::Rejected,
        code: "InvalidArgument".into(),
        message: format!("{what}: {detail}"),
        status: None,
    }
}

/// The one additional checksum an object or part has, as `ALGORITHM:value`, from any SDK
/// type with the five `checksum_*` accessors.
macro_rules! checksum {
    ($x:expr) => {{
        let x = &$x;
        let found: Option<String> = [
            ("CRC32", x.checksum_crc32()),
            ("CRC32C", x.checksum_crc32_c()),
            ("CRC64NVME", x.checksum_crc64_nvme()),
            ("SHA1", x.checksum_sha1()),
            ("SHA256", x.checksum_sha256()),
        ]
        .into_iter()
        .find_map(|(alg, v): (&str, Option<&str>)| v.map(|v| format!("{alg}:{v}")));
        found
    }};
}

/// base64(MD5("")): the Content-MD5 of a request without a body.
const EMPTY_MD5: &str = "1B2M2Y8AsgTpgAEUAimhQA==";

/// Object Lock settings as the SDK's three request fields.
type LockFields = (Option<ObjectLockMode>, Option<DateTime>, Option<ObjectLockLegalHoldStatus>);

fn lock_of(l: &LockSettings) -> Result<LockFields, S3CallError> {
    let until = match &l.retain_until {
        Some(t) => Some(DateTime::from_str(t, DateTimeFormat::DateTime).map_err(|e| invalid("retain-until date", e))?),
        None => None,
    };
    Ok((l.mode.as_deref().map(ObjectLockMode::from), until, l.legal_hold.then_some(ObjectLockLegalHoldStatus::On)))
}

impl SdkStore {
    /// HeadObject, with or without the checksum (see [`ObjectStore::head_plain`]).
    async fn head_object(
        &self,
        bucket: String,
        key: String,
        version_id: Option<String>,
        checksum_mode: Option<ChecksumMode>,
    ) -> Result<HeadResult, S3CallError> {
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id)
            .set_checksum_mode(checksum_mode)
            .send()
            .await
            .map_err(call_error)?;
        Ok(head_result(&out))
    }
}

/// What a HeadObject answer says, as the engine reads it (also the planner's `--head-all`,
/// `s3::blobs`).
pub fn head_result(out: &aws_sdk_s3::operation::head_object::HeadObjectOutput) -> HeadResult {
    let sum = checksum!(out);
    HeadResult {
        etag: out.e_tag().map(|e| e.trim_matches('"').to_string()),
        version_id: out.version_id().map(str::to_string),
        sse: out.server_side_encryption().map(|s| s.as_str().to_string()),
        kms_key_id: out.ssekms_key_id().map(str::to_string),
        storage_class: out.storage_class().map(|s| s.as_str().to_string()),
        bucket_key_enabled: out.bucket_key_enabled(),
        content_length: out.content_length().map(|n| n.max(0) as u64),
        metadata: out.metadata().cloned().unwrap_or_default(),
        content_type: out.content_type().map(str::to_string),
        content_encoding: out.content_encoding().map(str::to_string),
        content_disposition: out.content_disposition().map(str::to_string),
        content_language: out.content_language().map(str::to_string),
        cache_control: out.cache_control().map(str::to_string),
        expires: out.expires_string().map(str::to_string),
        website_redirect: out.website_redirect_location().map(str::to_string),
        checksum_algorithm: sum.and_then(|s| s.split_once(':').map(|(a, _)| a.to_string())),
        lock: LockSettings {
            mode: out.object_lock_mode().map(|m| m.as_str().to_string()),
            retain_until: out.object_lock_retain_until_date().and_then(|t| t.fmt(DateTimeFormat::DateTime).ok()),
            legal_hold: out.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On),
        },
    }
}

impl ObjectStore for SdkStore {
    async fn update_encryption(&self, r: UpdateRequest) -> Result<WriteResult, S3CallError> {
        let sse = SsekmsEncryption::builder()
            .kms_key_arn(r.kms_key_arn.clone())
            .bucket_key_enabled(r.bucket_key)
            .build()
            .map_err(|e| invalid("SSE-KMS settings", e))?;
        self.client
            .update_object_encryption()
            .bucket(&r.bucket)
            .key(&r.key)
            .set_version_id(r.version_id.clone())
            .object_encryption(ObjectEncryption::Ssekms(sse))
            .send()
            .await
            .map_err(call_error)?;
        // UpdateObjectEncryption keeps the ETag and version; it reports neither.
        Ok(WriteResult {
            etag: None,
            version_id: r.version_id,
            kms_key_id: Some(r.kms_key_arn),
            checksum: None,
            source_version_id: None,
        })
    }

    async fn copy_in_place(&self, r: CopyRequest) -> Result<WriteResult, S3CallError> {
        let with_lock = r.lock.as_ref().is_some_and(|l| !l.is_empty());
        let lock = r.lock.as_ref().map(lock_of).transpose()?.unwrap_or((None, None, None));
        let g = r.grants.unwrap_or_default();
        let copy = self
            .client
            .copy_object()
            .bucket(&r.bucket)
            .key(&r.key)
            .copy_source(format!("{}/{}", r.bucket, encode_path(&r.key)))
            .set_copy_source_if_match(r.if_match.map(|e| format!("\"{}\"", e.trim_matches('"'))))
            .metadata_directive(MetadataDirective::Copy)
            .tagging_directive(TaggingDirective::Copy)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(&r.kms_key_arn)
            .bucket_key_enabled(r.bucket_key)
            .set_storage_class(r.storage_class.as_deref().map(StorageClass::from))
            .set_checksum_algorithm(r.checksum_algorithm.as_deref().map(ChecksumAlgorithm::from))
            .set_website_redirect_location(r.website_redirect)
            .set_object_lock_mode(lock.0)
            .set_object_lock_retain_until_date(lock.1)
            .set_object_lock_legal_hold_status(lock.2)
            .set_grant_full_control(g.full_control)
            .set_grant_read(g.read)
            .set_grant_read_acp(g.read_acp)
            .set_grant_write_acp(g.write_acp);
        // `.customize()` layers a per-operation config over the client's on every request
        // (5.8 % of rekey's CPU in a profile of copies): only a locked copy needs it.
        let out = if with_lock {
            // A write with Object Lock retention must carry Content-MD5 or a checksum
            // (MissingUploadObjectWithObjectLockHeaders otherwise); a copy's body is
            // empty, so its MD5 is the empty string's.
            copy.customize()
                .mutate_request(|req| {
                    req.headers_mut().insert("Content-MD5", EMPTY_MD5);
                })
                .send()
                .await
        } else {
            copy.send().await
        }
        .map_err(call_error)?;
        let c = out.copy_object_result();
        Ok(WriteResult {
            etag: c.and_then(|c| c.e_tag()).map(|e| e.trim_matches('"').to_string()),
            version_id: out.version_id().map(str::to_string),
            kms_key_id: out.ssekms_key_id().map(str::to_string),
            checksum: c.and_then(|c| checksum!(c)),
            source_version_id: out.copy_source_version_id().map(str::to_string),
        })
    }

    async fn delete_version(&self, bucket: String, key: String, version_id: String) -> Result<(), S3CallError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .version_id(version_id)
            .send()
            .await
            .map(|_| ())
            .map_err(call_error)
    }

    async fn head(&self, bucket: String, key: String, version_id: Option<String>) -> Result<HeadResult, S3CallError> {
        self.head_object(bucket, key, version_id, Some(ChecksumMode::Enabled)).await
    }

    async fn head_plain(
        &self,
        bucket: String,
        key: String,
        version_id: Option<String>,
    ) -> Result<HeadResult, S3CallError> {
        self.head_object(bucket, key, version_id, None).await
    }

    async fn get_tags(
        &self,
        bucket: String,
        key: String,
        version_id: Option<String>,
    ) -> Result<Vec<(String, String)>, S3CallError> {
        let out = self
            .client
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id)
            .send()
            .await
            .map_err(call_error)?;
        Ok(out.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect())
    }

    async fn get_grants(
        &self,
        bucket: String,
        key: String,
        version_id: Option<String>,
    ) -> Result<Option<Grants>, S3CallError> {
        let out = self
            .client
            .get_object_acl()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id)
            .send()
            .await
            .map_err(call_error)?;
        let owner = out.owner().and_then(|o| o.id()).map(str::to_string);
        let mut g = Grants::default();
        for grant in out.grants() {
            let Some(who) = grant.grantee() else { continue };
            let grantee = if let Some(id) = who.id() {
                // The owner's FULL_CONTROL is every object's default, and what a copy gets anyway.
                if Some(id) == owner.as_deref() && grant.permission() == Some(&Permission::FullControl) {
                    continue;
                }
                format!("id=\"{id}\"")
            } else if let Some(uri) = who.uri() {
                format!("uri=\"{uri}\"")
            } else if let Some(email) = who.email_address() {
                format!("emailAddress=\"{email}\"")
            } else {
                continue;
            };
            let slot = match grant.permission() {
                Some(Permission::FullControl) => &mut g.full_control,
                Some(Permission::Read) => &mut g.read,
                Some(Permission::ReadAcp) => &mut g.read_acp,
                Some(Permission::WriteAcp) => &mut g.write_acp,
                // WRITE does not apply to objects.
                _ => continue,
            };
            *slot = Some(match slot.take() {
                Some(v) => format!("{v}, {grantee}"),
                None => grantee,
            });
        }
        Ok((!g.is_empty()).then_some(g))
    }

    async fn create_multipart(&self, r: CreateMultipartRequest) -> Result<String, S3CallError> {
        let lock = r.lock.as_ref().map(lock_of).transpose()?.unwrap_or((None, None, None));
        let g = r.grants.unwrap_or_default();
        let h = &r.source;
        let expires = h.expires.as_deref().and_then(|e| DateTime::from_str(e, DateTimeFormat::HttpDate).ok());
        let tagging = (!r.tags.is_empty()).then(|| {
            r.tags
                .iter()
                .map(|(k, v)| format!("{}={}", encode_form_key(k), encode_form_key(v)))
                .collect::<Vec<_>>()
                .join("&")
        });
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&r.bucket)
            .key(&r.key)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(&r.kms_key_arn)
            .bucket_key_enabled(r.bucket_key)
            .set_storage_class(r.storage_class.as_deref().map(StorageClass::from))
            .set_checksum_algorithm(r.checksum_algorithm.as_deref().map(ChecksumAlgorithm::from))
            .set_metadata((!h.metadata.is_empty()).then(|| h.metadata.clone()))
            .set_content_type(h.content_type.clone())
            .set_content_encoding(h.content_encoding.clone())
            .set_content_disposition(h.content_disposition.clone())
            .set_content_language(h.content_language.clone())
            .set_cache_control(h.cache_control.clone())
            .set_expires(expires)
            .set_website_redirect_location(h.website_redirect.clone())
            .set_tagging(tagging)
            .set_object_lock_mode(lock.0)
            .set_object_lock_retain_until_date(lock.1)
            .set_object_lock_legal_hold_status(lock.2)
            .set_grant_full_control(g.full_control)
            .set_grant_read(g.read)
            .set_grant_read_acp(g.read_acp)
            .set_grant_write_acp(g.write_acp)
            .send()
            .await
            .map_err(call_error)?;
        out.upload_id().map(str::to_string).ok_or_else(|| S3CallError {
            kind: S3ErrorKind::Transient,
            code: "NoUploadId".into(),
            message: "CreateMultipartUpload answered without an upload id".into(),
            status: None,
        })
    }

    async fn upload_part_copy(&self, r: PartCopyRequest) -> Result<CompletedPart, S3CallError> {
        let out = self
            .client
            .upload_part_copy()
            .bucket(&r.bucket)
            .key(&r.key)
            .upload_id(&r.upload_id)
            .part_number(r.part_number)
            .copy_source(format!("{}/{}", r.bucket, encode_path(&r.key)))
            .copy_source_range(format!("bytes={}-{}", r.first, r.last))
            .set_copy_source_if_match(r.if_match.map(|e| format!("\"{}\"", e.trim_matches('"'))))
            .send()
            .await
            .map_err(call_error)?;
        let c = out.copy_part_result();
        let etag = c.and_then(|c| c.e_tag()).map(|e| e.trim_matches('"').to_string()).ok_or_else(|| S3CallError {
            kind: S3ErrorKind::Transient,
            code: "NoPartETag".into(),
            message: "UploadPartCopy answered without an ETag".into(),
            status: None,
        })?;
        Ok(CompletedPart { part_number: r.part_number, etag, checksum: c.and_then(|c| checksum!(c)) })
    }

    async fn complete_multipart(
        &self,
        bucket: String,
        key: String,
        upload_id: String,
        parts: Vec<CompletedPart>,
        if_match: Option<String>,
    ) -> Result<WriteResult, S3CallError> {
        let parts = parts
            .into_iter()
            .map(|p| {
                let b = SdkPart::builder().part_number(p.part_number).e_tag(format!("\"{}\"", p.etag));
                match p.checksum.as_deref().and_then(|c| c.split_once(':')) {
                    Some(("CRC32", v)) => b.checksum_crc32(v),
                    Some(("CRC32C", v)) => b.checksum_crc32_c(v),
                    Some(("CRC64NVME", v)) => b.checksum_crc64_nvme(v),
                    Some(("SHA1", v)) => b.checksum_sha1(v),
                    Some(("SHA256", v)) => b.checksum_sha256(v),
                    _ => b,
                }
                .build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            // Without it, a write that lands after the last part was read would be
            // overwritten by the old bytes (S3 conditional writes, docs/s3-facts.md §5).
            .set_if_match(if_match.map(|e| format!("\"{}\"", e.trim_matches('"'))))
            .send()
            .await
            .map_err(call_error)?;
        Ok(WriteResult {
            etag: out.e_tag().map(|e| e.trim_matches('"').to_string()),
            version_id: out.version_id().map(str::to_string),
            kms_key_id: out.ssekms_key_id().map(str::to_string),
            checksum: checksum!(out),
            // The parts were read from the current version under If-Match; the task
            // knows which version that was from its HEAD.
            source_version_id: None,
        })
    }

    async fn list_uploads(&self, bucket: String, key: String) -> Result<Vec<OpenUpload>, S3CallError> {
        let mut found = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&bucket)
                .prefix(&key)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(call_error)?;
            for u in out.uploads() {
                // The prefix also matches longer keys.
                if u.key() == Some(key.as_str()) {
                    if let Some(id) = u.upload_id() {
                        let initiated_ms = u.initiated().and_then(|t| t.to_millis().ok()).unwrap_or(0);
                        found.push(OpenUpload { upload_id: id.to_string(), initiated_ms });
                    }
                }
            }
            if out.is_truncated() != Some(true) {
                return Ok(found);
            }
            key_marker = out.next_key_marker().map(str::to_string);
            id_marker = out.next_upload_id_marker().map(str::to_string);
        }
    }

    async fn abort_multipart(&self, bucket: String, key: String, upload_id: String) -> Result<(), S3CallError> {
        self.client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(call_error)?;
        Ok(())
    }
}
