//! Deciding an object again from what S3 says of it, for plans that did not know its
//! encryption: a live listing (`inventory::listing`) and `--assume-encryption`.
//!
//! The plan took such objects as SSE-S3 and planned them `update`. UpdateObjectEncryption
//! would also move an SSE-KMS object to the target key, and S3 refuses it for unencrypted
//! and locked objects (docs/s3-facts.md §0), so before the write the task HEADs the object
//! and runs the plan's own rules (`plan::classify`) on what the HEAD says: the result is
//! what an inventory would have planned. With `--assume-encryption` the user vouches for
//! the encryption and nothing is HEADed first; an update S3 refuses as InvalidRequest is
//! then decided again the same way after one HEAD.
//!
//! The new decision is recorded with the outcome (method or skip reason, and the
//! encryption seen), so `report` counts it like a planned one.

use crate::inventory::{EncryptionStatus, InventoryRow, StorageClass};
use crate::plan::classify::{ClassifyOptions, Decision};
use crate::s3::HeadResult;
use crate::store::WorkItem;

/// How a run decides again the objects whose encryption its plan assumed.
#[derive(Debug, Clone)]
pub struct Redecide {
    /// The plan's rules.
    pub classify: ClassifyOptions,
    /// HEAD every object before its write (a listing without `--head-all`); else only an
    /// update S3 refuses.
    pub head_first: bool,
}

impl Redecide {
    /// What the plan's rules make of `item` as `head` shows it. The HEAD must be of the
    /// version the plan saw (the caller compares ETags first).
    pub fn decide(&self, item: &WorkItem, head: &HeadResult) -> (Decision, EncryptionStatus) {
        let encryption = head.encryption_status();
        let row = InventoryRow {
            bucket: item.bucket.clone(),
            key: item.key.clone(),
            version_id: item.version_id.clone(),
            is_latest: item.is_latest,
            is_delete_marker: false,
            size: head.content_length.or(Some(item.size)),
            last_modified_ms: None,
            etag: head.etag.clone(),
            storage_class: head
                .storage_class
                .as_deref()
                .and_then(|c| c.parse::<StorageClass>().ok())
                .or_else(|| item.storage_class.as_deref().and_then(|c| c.parse().ok())),
            encryption: Some(encryption),
            lock_mode: head.lock.mode.clone().map(|m| m.to_ascii_uppercase()),
            lock_retain_until: head.lock.retain_until.clone(),
            legal_hold: head.lock.legal_hold,
            it_tier: None,
            bucket_key_enabled: head.bucket_key_enabled,
            checksum_algorithm: head.checksum_algorithm.clone().or_else(|| item.checksum_algorithm.clone()),
        };
        let classify = ClassifyOptions { report_has_versions: item.is_latest.is_some(), ..self.classify.clone() };
        (classify.classify(&row), encryption)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::classify::{Method, MethodChoice, SkipReason};
    use crate::s3::object_store::LockSettings;

    fn item() -> WorkItem {
        WorkItem {
            id: 1,
            bucket: "b".into(),
            key: "k".into(),
            version_id: None,
            is_latest: None,
            size: 10,
            etag: Some("e".into()),
            storage_class: None,
            checksum_algorithm: None,
            method: Method::Update,
            attempts: 0,
            lock_mode: None,
            lock_retain_until: None,
            legal_hold: false,
            upload_id: None,
            encryption: Some("SSE-S3".into()),
        }
    }

    fn head(sse: Option<&str>) -> HeadResult {
        HeadResult {
            etag: Some("e".into()),
            sse: sse.map(str::to_string),
            content_length: Some(10),
            ..HeadResult::default()
        }
    }

    #[test]
    fn the_plans_rules_on_what_s3_says() {
        let r = Redecide { classify: ClassifyOptions::default(), head_first: true };
        let d = |h: &HeadResult| r.decide(&item(), h).0;
        assert_eq!(d(&head(Some("AES256"))), Decision::Migrate(Method::Update));
        assert_eq!(d(&head(None)), Decision::Migrate(Method::Copy));
        assert_eq!(d(&head(Some("aws:kms"))), Decision::Skip(SkipReason::AlreadyKms));
        assert_eq!(d(&head(Some("aws:kms:dsse"))), Decision::Skip(SkipReason::DsseKms));
        let locked =
            HeadResult { lock: LockSettings { legal_hold: true, ..LockSettings::default() }, ..head(Some("AES256")) };
        assert_eq!(d(&locked), Decision::Migrate(Method::Copy));
        let update_only =
            Redecide { classify: ClassifyOptions { method: MethodChoice::Update, ..ClassifyOptions::default() }, ..r };
        assert_eq!(update_only.decide(&item(), &locked).0, Decision::Skip(SkipReason::ObjectLock));
        assert_eq!(update_only.decide(&item(), &head(None)).0, Decision::Skip(SkipReason::NotEncrypted));
        // Larger than the plan thought: the HEAD's size decides the copy method.
        let big = HeadResult { content_length: Some(6 << 30), ..head(None) };
        assert_eq!(r.decide(&item(), &big).0, Decision::Migrate(Method::MultipartCopy));
        assert_eq!(r.decide(&item(), &head(None)).1, EncryptionStatus::NotSse);
    }
}
