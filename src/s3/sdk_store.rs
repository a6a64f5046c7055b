//! [`ObjectStore`] over aws-sdk-s3: one method per S3 operation, each a single attempt
//! (the client is built with retries disabled; the engine retries).

use super::object_store::{classify, CopyRequest, HeadResult, ObjectStore, S3CallError, UpdateRequest, WriteResult};
use crate::inventory::keys::encode_path;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, MetadataDirective, ObjectEncryption, ServerSideEncryption, SsekmsEncryption, StorageClass,
    TaggingDirective,
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
fn call_error<E>(e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> S3CallError
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

impl ObjectStore for SdkStore {
    async fn update_encryption(&self, r: UpdateRequest) -> Result<WriteResult, S3CallError> {
        let sse = SsekmsEncryption::builder()
            .kms_key_arn(r.kms_key_arn.clone())
            .bucket_key_enabled(r.bucket_key)
            .build()
            .map_err(|e| S3CallError {
                kind: super::S3ErrorKind::Rejected,
                code: "BuildError".into(),
                message: e.to_string(),
                status: None,
            })?;
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
        Ok(WriteResult { etag: None, version_id: r.version_id, kms_key_id: Some(r.kms_key_arn) })
    }

    async fn copy_in_place(&self, r: CopyRequest) -> Result<WriteResult, S3CallError> {
        let out = self
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
            .send()
            .await
            .map_err(call_error)?;
        Ok(WriteResult {
            etag: out.copy_object_result().and_then(|c| c.e_tag()).map(|e| e.trim_matches('"').to_string()),
            version_id: out.version_id().map(str::to_string),
            kms_key_id: out.ssekms_key_id().map(str::to_string),
        })
    }

    async fn head(&self, bucket: String, key: String, version_id: Option<String>) -> Result<HeadResult, S3CallError> {
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id)
            .send()
            .await
            .map_err(call_error)?;
        Ok(HeadResult {
            etag: out.e_tag().map(|e| e.trim_matches('"').to_string()),
            version_id: out.version_id().map(str::to_string),
            sse: out.server_side_encryption().map(|s| s.as_str().to_string()),
            kms_key_id: out.ssekms_key_id().map(str::to_string),
            storage_class: out.storage_class().map(|s| s.as_str().to_string()),
        })
    }
}
