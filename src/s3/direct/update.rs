//! UpdateObjectEncryption on the direct path: `PUT /key?encryption[&versionId=…]` with the
//! SDK's XML body and its CRC32 request checksum (the operation requires one), as
//! `SdkStore::update_encryption` sends it.

use super::Prepared;
use crate::s3::object_store::{UpdateRequest, WriteResult};

pub fn prepare(r: &UpdateRequest) -> Prepared {
    let mut path_and_query = format!("/{}?encryption", crate::inventory::keys::encode_path(&r.key));
    if let Some(v) = &r.version_id {
        path_and_query.push_str("&versionId=");
        path_and_query.push_str(&crate::inventory::keys::encode_query_value(v));
    }
    let body = format!(
        "<ObjectEncryption xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><SSE-KMS><KMSKeyArn>{}</KMSKeyArn><BucketKeyEnabled>{}</BucketKeyEnabled></SSE-KMS></ObjectEncryption>",
        escape_xml(&r.kms_key_arn),
        r.bucket_key
    );
    let crc = crc32fast::hash(body.as_bytes()).to_be_bytes();
    let headers = vec![
        ("content-type", "application/xml".to_string()),
        ("content-length", body.len().to_string()),
        ("x-amz-checksum-crc32", base64(&crc)),
        ("x-amz-sdk-checksum-algorithm", "CRC32".to_string()),
    ];
    Prepared { method: "PUT", bucket: r.bucket.clone(), path_and_query, headers, body: body.into() }
}

/// UpdateObjectEncryption keeps the ETag and version; it reports neither.
pub fn result(r: UpdateRequest) -> WriteResult {
    WriteResult {
        etag: None,
        version_id: r.version_id,
        kms_key_id: Some(r.kms_key_arn),
        checksum: None,
        source_version_id: None,
    }
}

/// The SDK's XML text escaping.
fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n =
            (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_query_encoding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xde, 0xad, 0xbe, 0xef]), "3q2+7w==");
        assert_eq!(crate::inventory::keys::encode_query_value("a b/c+d~é"), "a%20b%2Fc%2Bd~%C3%A9");
        assert_eq!(escape_xml("a&<'\">"), "a&amp;&lt;&apos;&quot;&gt;");
    }
}
