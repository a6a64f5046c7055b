//! CopyObject onto the same key, on the direct path: the request `SdkStore::copy_in_place`
//! sends, header for header, and its answer read back into a [`WriteResult`].
//!
//! The `x-amz-copy-source-if-match` guard is built exactly as the SDK path builds it (the
//! inventory's ETag, quoted): an object that changed since the inventory answers 412 and is
//! never overwritten.

use super::response::copy_result;
use super::{invalid, Prepared};
use crate::inventory::keys::encode_path;
use crate::s3::object_store::{CopyRequest, S3CallError, S3ErrorKind, WriteResult};
use aws_smithy_types::date_time::{DateTime, Format};

/// base64(MD5("")): the Content-MD5 of a request without a body.
const EMPTY_MD5: &str = "1B2M2Y8AsgTpgAEUAimhQA==";

pub fn prepare(r: CopyRequest) -> Result<Prepared, S3CallError> {
    let mut h: Vec<(&'static str, String)> = Vec::with_capacity(12);
    let lock = r.lock.filter(|l| !l.is_empty());
    if let Some(g) = r.grants {
        for (name, v) in [
            ("x-amz-grant-full-control", g.full_control),
            ("x-amz-grant-read", g.read),
            ("x-amz-grant-read-acp", g.read_acp),
            ("x-amz-grant-write-acp", g.write_acp),
        ] {
            if let Some(v) = v {
                h.push((name, v));
            }
        }
    }
    if let Some(alg) = r.checksum_algorithm {
        h.push(("x-amz-checksum-algorithm", alg));
    }
    h.push(("x-amz-copy-source", format!("{}/{}", r.bucket, encode_path(&r.key))));
    if let Some(etag) = r.if_match {
        h.push(("x-amz-copy-source-if-match", format!("\"{}\"", etag.trim_matches('"'))));
    }
    h.push(("x-amz-metadata-directive", "COPY".into()));
    h.push(("x-amz-tagging-directive", "COPY".into()));
    h.push(("x-amz-server-side-encryption", "aws:kms".into()));
    if let Some(class) = r.storage_class {
        h.push(("x-amz-storage-class", class));
    }
    if let Some(redirect) = r.website_redirect {
        h.push(("x-amz-website-redirect-location", redirect));
    }
    h.push(("x-amz-server-side-encryption-aws-kms-key-id", r.kms_key_arn));
    h.push(("x-amz-server-side-encryption-bucket-key-enabled", r.bucket_key.to_string()));
    if let Some(l) = &lock {
        if let Some(mode) = &l.mode {
            h.push(("x-amz-object-lock-mode", mode.clone()));
        }
        if let Some(until) = &l.retain_until {
            // Parsed and printed as the SDK does, so the same instant goes out the same way.
            let t = DateTime::from_str(until, Format::DateTime).map_err(|e| invalid("retain-until date", e))?;
            h.push((
                "x-amz-object-lock-retain-until-date",
                t.fmt(Format::DateTime).map_err(|e| invalid("retain-until date", e))?,
            ));
        }
        if l.legal_hold {
            h.push(("x-amz-object-lock-legal-hold", "ON".into()));
        }
        // A write with Object Lock retention must carry Content-MD5 or a checksum
        // (MissingUploadObjectWithObjectLockHeaders otherwise).
        h.push(("content-md5", EMPTY_MD5.into()));
    }
    Ok(Prepared {
        method: "PUT",
        bucket: r.bucket,
        // The SDK names the operation in the query, as S3's API model asks.
        path_and_query: format!("/{}?x-id=CopyObject", encode_path(&r.key)),
        headers: h,
        body: bytes::Bytes::new(),
    })
}

/// The outcome of a 2xx answer that is not an `<Error>`.
pub fn result(resp: &super::http::Response) -> Result<WriteResult, S3CallError> {
    let c = copy_result(&resp.body).map_err(|message| S3CallError {
        kind: S3ErrorKind::Transient,
        code: "ResponseError".into(),
        message,
        status: Some(resp.status),
    })?;
    let header = |name: &str| resp.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    Ok(WriteResult {
        etag: c.etag,
        version_id: header("x-amz-version-id"),
        kms_key_id: header("x-amz-server-side-encryption-aws-kms-key-id"),
        checksum: c.checksum,
        source_version_id: header("x-amz-copy-source-version-id"),
    })
}
