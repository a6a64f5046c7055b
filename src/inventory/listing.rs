//! A live listing as the object list, for buckets without an S3 Inventory.
//!
//! `--inventory s3://bucket/prefix/` (a URL ending in `/`, or a bare bucket) or `--list`
//! pages through ListObjectVersions (versioned buckets) or ListObjectsV2 and turns every
//! entry into an [`InventoryRow`], streamed into the same planner as an inventory: one page
//! (at most 1,000 entries) in memory at a time.
//!
//! A listing carries no encryption status and no Object Lock fields (docs/s3-facts.md §1.6).
//! The rule that keeps it cheap and correct:
//! * every listed object is taken as SSE-S3 (S3's default for every object written since
//!   2023-01-05) and planned as such, and the estimate says so;
//! * the run HEADs each object just before its write (a GET-class request, not on the KMS
//!   quota) and decides it again from what S3 says, with the same rules as an inventory row
//!   (`exec::redecide`), so an unencrypted object is copied, an SSE-KMS one skipped as
//!   `already_kms`, a locked one copied or skipped as the plan's method says — never updated
//!   blindly (UpdateObjectEncryption would move an SSE-KMS object to the target key);
//! * `--head-all` HEADs every object while planning instead, for an exact estimate; the
//!   run then needs no HEAD of its own, as with an inventory.

use super::row::{EncryptionStatus, InventoryRow, StorageClass};
use super::schema::Schema;
use super::InventoryError;

/// What to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingSpec {
    pub bucket: String,
    /// Only keys under this prefix (may be empty).
    pub prefix: String,
    /// ListObjectVersions (every version and delete marker) instead of ListObjectsV2.
    pub versions: bool,
    /// HEAD every object while planning (`--head-all`).
    pub head_all: bool,
    /// `--assume-encryption` was given: the user vouches for every object's encryption.
    pub assumed: bool,
}

impl ListingSpec {
    /// The run HEADs each object before its write: neither the plan (`--head-all`) nor the
    /// user (`--assume-encryption`) knows its encryption.
    pub fn run_heads_first(&self) -> bool {
        !self.head_all && !self.assumed
    }

    /// The LIST operation used.
    pub fn api(&self) -> &'static str {
        if self.versions {
            "ListObjectVersions"
        } else {
            "ListObjectsV2"
        }
    }
}

/// Where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListCursor {
    V2 { continuation_token: String },
    Versions { key_marker: String, version_id_marker: Option<String> },
}

/// One entry of a listing page: an object version or a delete marker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListedEntry {
    pub key: String,
    /// `None` for the null version (S3 lists it as `null`).
    pub version_id: Option<String>,
    /// `None` from ListObjectsV2 (no versions).
    pub is_latest: Option<bool>,
    pub is_delete_marker: bool,
    pub size: Option<u64>,
    pub last_modified_ms: Option<i64>,
    pub etag: Option<String>,
    pub storage_class: Option<String>,
    pub checksum_algorithm: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub entries: Vec<ListedEntry>,
    pub next: Option<ListCursor>,
}

/// What a HEAD tells that a listing does not.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeadFacts {
    pub encryption: Option<EncryptionStatus>,
    pub lock_mode: Option<String>,
    pub lock_retain_until: Option<String>,
    pub legal_hold: bool,
    pub bucket_key_enabled: Option<bool>,
}

/// The columns a listing fills, as inventory field names: the planner reads the versions
/// columns to know the bucket is versioned and the listing has noncurrent rows.
pub fn schema(spec: &ListingSpec) -> Schema {
    let mut names = vec!["Bucket", "Key"];
    if spec.versions {
        names.extend(["VersionId", "IsLatest", "IsDeleteMarker"]);
    }
    names.extend(["Size", "LastModifiedDate", "ETag", "StorageClass", "ChecksumAlgorithm"]);
    if spec.head_all {
        names.extend([
            "EncryptionStatus",
            "ObjectLockRetainUntilDate",
            "ObjectLockMode",
            "ObjectLockLegalHoldStatus",
            "BucketKeyStatus",
        ]);
    }
    Schema::from_names(names.into_iter().map(String::from).collect()).expect("a fixed, valid schema")
}

/// The checksum algorithm as the API spells it (ListObjects says `CRC64NVME`, inventory
/// `CRC64NVME`/`SHA-256`), normalised like an inventory row's.
fn checksum_name(a: &str) -> String {
    a.replace('-', "")
}

/// An entry as an inventory row. `head` is the HEAD's answer with `--head-all`; without it
/// the encryption is `assumed`.
pub fn to_row(
    bucket: &str,
    e: ListedEntry,
    head: Option<&HeadFacts>,
    assumed: EncryptionStatus,
) -> Result<InventoryRow, InventoryError> {
    let storage_class = match e.storage_class.as_deref() {
        None | Some("") => None,
        Some(c) => Some(c.parse::<StorageClass>().map_err(|reason| InventoryError::Remote {
            url: format!("s3://{bucket}/{}", e.key),
            message: format!("listing: {reason}"),
        })?),
    };
    let encryption = if e.is_delete_marker { None } else { Some(head.and_then(|h| h.encryption).unwrap_or(assumed)) };
    let lock_mode = head.and_then(|h| h.lock_mode.clone()).map(|m| m.to_ascii_uppercase());
    Ok(InventoryRow {
        bucket: bucket.to_string(),
        key: e.key,
        version_id: e.version_id.filter(|v| v != "null"),
        is_latest: e.is_latest,
        is_delete_marker: e.is_delete_marker,
        size: if e.is_delete_marker { None } else { e.size },
        last_modified_ms: e.last_modified_ms,
        etag: e.etag.map(|t| t.trim_matches('"').to_string()),
        storage_class,
        encryption,
        lock_mode,
        lock_retain_until: head.and_then(|h| h.lock_retain_until.clone()),
        legal_hold: head.is_some_and(|h| h.legal_hold),
        it_tier: None,
        bucket_key_enabled: head.and_then(|h| h.bucket_key_enabled),
        checksum_algorithm: e.checksum_algorithm.as_deref().map(checksum_name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> ListedEntry {
        ListedEntry {
            key: "a/b c+d".into(),
            version_id: Some("null".into()),
            is_latest: Some(true),
            size: Some(5),
            etag: Some("\"d8e8fca2dc0f896fd7cb4cb0031ba249\"".into()),
            storage_class: Some("STANDARD_IA".into()),
            checksum_algorithm: Some("CRC32".into()),
            ..ListedEntry::default()
        }
    }

    #[test]
    fn a_listed_object_is_assumed_and_keeps_its_key_as_listed() {
        let r = to_row("b", entry(), None, EncryptionStatus::SseS3).unwrap();
        // Listings return keys as stored (no URL encoding), and S3's "null" version is none.
        assert_eq!((r.key.as_str(), r.version_id.as_deref()), ("a/b c+d", None));
        assert_eq!(r.encryption, Some(EncryptionStatus::SseS3));
        assert_eq!(r.etag.as_deref(), Some("d8e8fca2dc0f896fd7cb4cb0031ba249"));
        assert_eq!(r.storage_class, Some(StorageClass::StandardIa));
        assert!(!r.legal_hold && r.lock_mode.is_none());
    }

    #[test]
    fn a_head_overrides_the_assumption() {
        let head = HeadFacts {
            encryption: Some(EncryptionStatus::NotSse),
            lock_mode: Some("governance".into()),
            legal_hold: true,
            ..HeadFacts::default()
        };
        let r = to_row("b", entry(), Some(&head), EncryptionStatus::SseS3).unwrap();
        assert_eq!(r.encryption, Some(EncryptionStatus::NotSse));
        assert_eq!(r.lock_mode.as_deref(), Some("GOVERNANCE"));
        assert!(r.legal_hold);
    }

    #[test]
    fn delete_markers_have_no_encryption_or_size() {
        let e = ListedEntry { is_delete_marker: true, size: Some(0), ..entry() };
        let r = to_row("b", e, None, EncryptionStatus::SseS3).unwrap();
        assert_eq!((r.encryption, r.size), (None, None));
    }

    #[test]
    fn an_unknown_storage_class_is_an_error_naming_the_object() {
        let e = ListedEntry { storage_class: Some("FROZEN".into()), ..entry() };
        let err = to_row("b", e, None, EncryptionStatus::SseS3).unwrap_err().to_string();
        assert!(err.contains("s3://b/a/b c+d") && err.contains("FROZEN"), "{err}");
    }

    #[test]
    fn the_schema_says_what_the_listing_carries() {
        let plain =
            ListingSpec { bucket: "b".into(), prefix: String::new(), versions: false, head_all: false, assumed: false };
        assert!(plain.run_heads_first());
        assert!(!schema(&plain).has_versions());
        assert!(schema(&plain).encryption.is_none());
        let all = ListingSpec { versions: true, head_all: true, ..plain };
        assert!(!all.run_heads_first());
        assert!(schema(&all).has_versions());
        assert!(schema(&all).encryption.is_some() && schema(&all).legal_hold.is_some());
    }
}
