//! The run-time decision for an SSE-KMS object (`--from-key`, `--rekey-kms`): S3 Inventory
//! has no column for the key an object is under (docs/s3-facts.md §0.1), so the task
//! HEADs the inventoried version and [`decide`]s from what S3 reports, before any write.
//!
//! The HEAD is also the guard: UpdateObjectEncryption takes no If-Match, so an object
//! whose ETag is not the inventory's is left alone as `changed`, never overwritten.

use crate::plan::KmsSources;
use crate::s3::object_store::same_kms_key;
use crate::s3::HeadResult;

/// What the HEAD of an SSE-KMS candidate says to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmsDecision {
    /// Under a source key (or, unexpectedly, SSE-S3 with the inventoried ETag): update it.
    Update,
    /// Already under the target key: nothing to do (`already_target_key`).
    AlreadyTarget,
    /// Under a key that is neither the target nor a `--from-key` (`other_kms_key`).
    OtherKey,
    /// Not the object the inventory saw: never touched (`changed`), and why.
    Changed(String),
}

/// Decide from `head` of the inventoried version, whose inventoried ETag was `etag`.
pub fn decide(head: &HeadResult, etag: Option<&str>, target: &str, sources: &KmsSources) -> KmsDecision {
    let unquote = |e: &str| e.trim_matches('"').to_string();
    if let Some(want) = etag.map(unquote) {
        let got = head.etag.as_deref().map(unquote);
        if got.as_deref() != Some(want.as_str()) {
            return KmsDecision::Changed(format!(
                "changed since the inventory (ETag now {})",
                got.as_deref().unwrap_or("?")
            ));
        }
    }
    match (head.sse.as_deref(), head.kms_key_id.as_deref()) {
        (Some("aws:kms"), Some(k)) if same_kms_key(k, target) => KmsDecision::AlreadyTarget,
        (Some("aws:kms"), Some(k)) if sources.includes(k) => KmsDecision::Update,
        (Some("aws:kms"), _) => KmsDecision::OtherKey,
        // UpdateObjectEncryption takes SSE-S3 as well; nothing else.
        (Some("AES256"), _) => KmsDecision::Update,
        (other, _) => KmsDecision::Changed(format!(
            "encryption now {}, inventoried SSE-KMS",
            other.unwrap_or("none (unencrypted)")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "arn:aws:kms:us-east-1:111122223333:key/aaaa";
    const B: &str = "arn:aws:kms:us-east-1:111122223333:key/bbbb";
    const C: &str = "arn:aws:kms:us-east-1:111122223333:key/cccc";

    fn head(sse: &str, key: Option<&str>, etag: &str) -> HeadResult {
        HeadResult {
            sse: Some(sse.into()),
            kms_key_id: key.map(str::to_string),
            etag: Some(format!("\"{etag}\"")),
            ..HeadResult::default()
        }
    }

    #[test]
    fn the_key_s3_reports_decides_and_a_changed_etag_always_wins() {
        let from_a = KmsSources::FromKeys(vec![A.into()]);
        assert_eq!(decide(&head("aws:kms", Some(A), "e"), Some("e"), B, &from_a), KmsDecision::Update);
        assert_eq!(decide(&head("aws:kms", Some(B), "e"), Some("e"), B, &from_a), KmsDecision::AlreadyTarget);
        // An id where the ARN was expected names the same key.
        assert_eq!(decide(&head("aws:kms", Some("bbbb"), "e"), Some("e"), B, &from_a), KmsDecision::AlreadyTarget);
        assert_eq!(decide(&head("aws:kms", Some(C), "e"), Some("e"), B, &from_a), KmsDecision::OtherKey);
        assert_eq!(decide(&head("aws:kms", Some(C), "e"), Some("e"), B, &KmsSources::Any), KmsDecision::Update);
        assert_eq!(decide(&head("aws:kms", None, "e"), Some("e"), B, &KmsSources::Any), KmsDecision::OtherKey);
        let changed = decide(&head("aws:kms", Some(A), "new"), Some("e"), B, &from_a);
        assert_eq!(changed, KmsDecision::Changed("changed since the inventory (ETag now new)".into()));
        assert!(matches!(decide(&head("aws:kms", Some(B), "new"), Some("e"), B, &from_a), KmsDecision::Changed(_)));
        assert_eq!(decide(&head("AES256", None, "e"), Some("e"), B, &from_a), KmsDecision::Update);
        let dsse = decide(&head("aws:kms:dsse", Some(A), "e"), Some("e"), B, &from_a);
        assert!(matches!(dsse, KmsDecision::Changed(ref why) if why.contains("aws:kms:dsse")), "{dsse:?}");
        let plain = HeadResult { etag: Some("e".into()), ..HeadResult::default() };
        assert!(matches!(decide(&plain, Some("e"), B, &from_a), KmsDecision::Changed(_)));
    }
}
