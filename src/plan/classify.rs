//! Each row's fate: migrate by one [`Method`], or skip for one named [`SkipReason`].
//!
//! The order of the rules matters (the first match wins) and is documented in
//! docs/cost-model.md. The facts behind them: UpdateObjectEncryption refuses NOT-SSE, DSSE-KMS and
//! SSE-C sources and any object under retention or legal hold, and needs no restore
//! (docs/s3-facts.md §0); CopyObject cannot read GLACIER / DEEP_ARCHIVE objects or
//! archived Intelligent-Tiering tiers without a restore (§4.6). UpdateObjectEncryption
//! takes a version id and writes no new version, so it alone can re-encrypt a noncurrent
//! version and leave it noncurrent (`--versions all`); it also moves an SSE-KMS object
//! from one key to another (§0.1), which the run decides per object by HEAD, since the
//! inventory does not say which key an object is under.

use crate::inventory::{EncryptionStatus, InventoryRow, StorageClass};
use crate::s3::object_store::same_kms_key;
use crate::units::GIB;
pub use crate::vocab::{Decision, Method, SkipReason};
use serde::{Deserialize, Serialize};

/// `--method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum MethodChoice {
    /// UpdateObjectEncryption where S3 allows it, else copy.
    #[default]
    Auto,
    /// UpdateObjectEncryption only; objects it cannot take are skipped.
    Update,
    /// CopyObject for everything (for S3-compatible stores without UpdateObjectEncryption).
    Copy,
}

/// `--versions`: which versions of a versioned bucket the plan takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Versions {
    /// Only each key's current version.
    #[default]
    Current,
    /// Noncurrent versions too, updated in place by version id (no new version).
    All,
}

/// Which SSE-KMS objects the plan moves to the target key (`--from-key`, `--rekey-kms`).
/// The inventory does not say which key an object is under: the run HEADs each
/// candidate and decides ([`KmsSources::includes`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KmsSources {
    /// SSE-KMS objects are skipped as `already_kms`.
    #[default]
    None,
    /// `--from-key`: objects under these keys (full ARNs).
    FromKeys(Vec<String>),
    /// `--rekey-kms`: objects under any key but the target.
    Any,
}

impl KmsSources {
    /// SSE-KMS objects are candidates at all.
    pub fn any(&self) -> bool {
        !matches!(self, KmsSources::None)
    }

    /// An object under `key` (as HEAD reports it: a full ARN) is to be moved.
    pub fn includes(&self, key: &str) -> bool {
        match self {
            KmsSources::None => false,
            KmsSources::FromKeys(keys) => keys.iter().any(|k| same_kms_key(k, key)),
            KmsSources::Any => true,
        }
    }
}

/// The part of the plan's options that decides a row's fate.
#[derive(Debug, Clone, Serialize)]
pub struct ClassifyOptions {
    pub method: MethodChoice,
    pub include_prefixes: Vec<String>,
    pub exclude_prefixes: Vec<String>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    /// The report lists every version (it has an IsLatest column).
    pub report_has_versions: bool,
    /// Copies of objects larger than this are multipart copies. At most 5 GiB, the
    /// CopyObject limit.
    pub multipart_threshold: u64,
    /// `--versions`.
    pub versions: Versions,
    /// `--from-key` or `--rekey-kms`: SSE-KMS objects are candidates for an update to the
    /// target key; a HEAD at run time decides each (the inventory does not name the key).
    pub kms_sources: KmsSources,
}

/// CopyObject copies at most 5 GiB in one request (docs/s3-facts.md §5).
pub const MAX_SINGLE_COPY: u64 = 5 * GIB;

impl Default for ClassifyOptions {
    fn default() -> Self {
        ClassifyOptions {
            method: MethodChoice::Auto,
            include_prefixes: Vec::new(),
            exclude_prefixes: Vec::new(),
            min_size: None,
            max_size: None,
            report_has_versions: false,
            multipart_threshold: MAX_SINGLE_COPY,
            versions: Versions::Current,
            kms_sources: KmsSources::None,
        }
    }
}

pub fn is_locked(row: &InventoryRow) -> bool {
    row.lock_mode.as_deref().is_some_and(|m| !m.is_empty()) || row.legal_hold
}

pub fn is_archived(row: &InventoryRow) -> bool {
    matches!(row.storage_class, Some(StorageClass::Glacier | StorageClass::DeepArchive))
        || matches!(row.it_tier.as_deref(), Some("ARCHIVE" | "DEEP_ARCHIVE" | "ARCHIVE_ACCESS" | "DEEP_ARCHIVE_ACCESS"))
}

impl ClassifyOptions {
    fn filtered(&self, row: &InventoryRow) -> bool {
        if !self.include_prefixes.is_empty() && !self.include_prefixes.iter().any(|p| row.key.starts_with(p.as_str())) {
            return true;
        }
        if self.exclude_prefixes.iter().any(|p| row.key.starts_with(p.as_str())) {
            return true;
        }
        // An unknown size (Batch Operations manifests) passes size filters: the run HEADs it.
        match row.size {
            Some(size) => self.min_size.is_some_and(|m| size < m) || self.max_size.is_some_and(|m| size > m),
            None => false,
        }
    }

    /// The first matching rule wins.
    pub fn classify(&self, row: &InventoryRow) -> Decision {
        use Decision::{Migrate, Skip};
        if row.is_delete_marker {
            return Skip(SkipReason::DeleteMarker);
        }
        let noncurrent = self.report_has_versions && row.is_latest != Some(true);
        if noncurrent && self.versions == Versions::Current {
            return Skip(SkipReason::NoncurrentVersion);
        }
        if self.filtered(row) {
            return Skip(SkipReason::Filtered);
        }
        let sse_kms = row.encryption == Some(EncryptionStatus::SseKms);
        match row.encryption {
            Some(EncryptionStatus::SseKms) if !self.kms_sources.any() => return Skip(SkipReason::AlreadyKms),
            Some(EncryptionStatus::DsseKms) => return Skip(SkipReason::DsseKms),
            Some(EncryptionStatus::SseC) => return Skip(SkipReason::SseC),
            _ => {}
        }
        if matches!(row.storage_class, Some(StorageClass::Outposts | StorageClass::Snow | StorageClass::ExpressOnezone))
        {
            return Skip(SkipReason::UnsupportedStorageClass);
        }
        let locked = is_locked(row);
        let sse_s3 = row.encryption == Some(EncryptionStatus::SseS3);
        match self.method {
            MethodChoice::Auto | MethodChoice::Update if (sse_s3 || sse_kms) && !locked => Migrate(Method::Update),
            // A copy would make the noncurrent version current (and leave it behind).
            _ if noncurrent => Skip(SkipReason::NoncurrentNeedsCopy),
            // Moving from one KMS key to another is an update only: a copy would need the
            // object's key, which only a HEAD tells.
            _ if sse_kms && locked => Skip(SkipReason::ObjectLock),
            _ if sse_kms => Skip(SkipReason::AlreadyKms),
            MethodChoice::Update if locked => Skip(SkipReason::ObjectLock),
            MethodChoice::Update => Skip(SkipReason::NotEncrypted),
            _ if is_archived(row) => Skip(SkipReason::NeedsRestore),
            _ => Migrate(self.copy_method(row.size)),
        }
    }

    /// Copy or multipart copy, by size. An unknown size plans a plain copy; the run HEADs
    /// the object and switches if it is larger.
    pub fn copy_method(&self, size: Option<u64>) -> Method {
        if size.is_some_and(|s| s > self.multipart_threshold) {
            Method::MultipartCopy
        } else {
            Method::Copy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::{Migrate, Skip};

    fn row() -> InventoryRow {
        InventoryRow {
            version_id: Some("v1".into()),
            is_latest: Some(true),
            last_modified_ms: None,
            ..InventoryRow::sse_s3("b", "data/k", 1000, "e")
        }
    }

    fn opts(method: MethodChoice) -> ClassifyOptions {
        ClassifyOptions { method, report_has_versions: true, ..ClassifyOptions::default() }
    }

    #[test]
    fn every_skip_reason() {
        let o = opts(MethodChoice::Auto);
        let with = |f: &dyn Fn(&mut InventoryRow)| {
            let mut r = row();
            f(&mut r);
            r
        };
        assert_eq!(o.classify(&with(&|r| r.is_delete_marker = true)), Skip(SkipReason::DeleteMarker));
        assert_eq!(o.classify(&with(&|r| r.is_latest = Some(false))), Skip(SkipReason::NoncurrentVersion));
        assert_eq!(o.classify(&with(&|r| r.is_latest = None)), Skip(SkipReason::NoncurrentVersion));
        assert_eq!(o.classify(&with(&|r| r.encryption = Some(EncryptionStatus::SseKms))), Skip(SkipReason::AlreadyKms));
        assert_eq!(o.classify(&with(&|r| r.encryption = Some(EncryptionStatus::DsseKms))), Skip(SkipReason::DsseKms));
        assert_eq!(o.classify(&with(&|r| r.encryption = Some(EncryptionStatus::SseC))), Skip(SkipReason::SseC));
        for c in [StorageClass::Outposts, StorageClass::Snow, StorageClass::ExpressOnezone] {
            assert_eq!(o.classify(&with(&|r| r.storage_class = Some(c))), Skip(SkipReason::UnsupportedStorageClass));
        }
        let u = opts(MethodChoice::Update);
        assert_eq!(u.classify(&with(&|r| r.lock_mode = Some("GOVERNANCE".into()))), Skip(SkipReason::ObjectLock));
        assert_eq!(u.classify(&with(&|r| r.legal_hold = true)), Skip(SkipReason::ObjectLock));
        assert_eq!(
            u.classify(&with(&|r| r.encryption = Some(EncryptionStatus::NotSse))),
            Skip(SkipReason::NotEncrypted)
        );
        let c = opts(MethodChoice::Copy);
        assert_eq!(
            c.classify(&with(&|r| r.storage_class = Some(StorageClass::Glacier))),
            Skip(SkipReason::NeedsRestore)
        );
        assert_eq!(
            c.classify(&with(&|r| r.storage_class = Some(StorageClass::DeepArchive))),
            Skip(SkipReason::NeedsRestore)
        );
        for tier in ["ARCHIVE", "DEEP_ARCHIVE", "ARCHIVE_ACCESS", "DEEP_ARCHIVE_ACCESS"] {
            let r = with(&|r| {
                r.storage_class = Some(StorageClass::IntelligentTiering);
                r.it_tier = Some(tier.into());
            });
            assert_eq!(c.classify(&r), Skip(SkipReason::NeedsRestore), "{tier}");
            // UpdateObjectEncryption needs no restore.
            assert_eq!(o.classify(&r), Migrate(Method::Update), "{tier}");
        }
        let r = with(&|r| r.it_tier = Some("ARCHIVE_INSTANT_ACCESS".into()));
        assert_eq!(c.classify(&r), Migrate(Method::Copy));
    }

    #[test]
    fn rule_order_first_match_wins() {
        let o = opts(MethodChoice::Auto);
        // A noncurrent delete marker is a delete marker.
        let mut r = row();
        r.is_delete_marker = true;
        r.is_latest = Some(false);
        assert_eq!(o.classify(&r), Skip(SkipReason::DeleteMarker));
        // A filtered SSE-KMS object is filtered.
        let mut f = ClassifyOptions { exclude_prefixes: vec!["data/".into()], ..o.clone() };
        r = row();
        r.encryption = Some(EncryptionStatus::SseKms);
        assert_eq!(f.classify(&r), Skip(SkipReason::Filtered));
        f.exclude_prefixes.clear();
        assert_eq!(f.classify(&r), Skip(SkipReason::AlreadyKms));
        // An unversioned report has no noncurrent rule.
        let mut r = row();
        r.is_latest = None;
        assert_eq!(ClassifyOptions::default().classify(&r), Migrate(Method::Update));
    }

    #[test]
    fn filters() {
        let o = ClassifyOptions {
            include_prefixes: vec!["data/".into(), "logs/".into()],
            exclude_prefixes: vec!["data/tmp/".into()],
            min_size: Some(10),
            max_size: Some(10_000),
            ..ClassifyOptions::default()
        };
        let with_key = |k: &str, size: Option<u64>| InventoryRow { key: k.into(), size, ..row() };
        assert_eq!(o.classify(&with_key("data/x", Some(100))), Migrate(Method::Update));
        assert_eq!(o.classify(&with_key("logs/x", Some(100))), Migrate(Method::Update));
        assert_eq!(o.classify(&with_key("other/x", Some(100))), Skip(SkipReason::Filtered));
        assert_eq!(o.classify(&with_key("data/tmp/x", Some(100))), Skip(SkipReason::Filtered));
        assert_eq!(o.classify(&with_key("data/x", Some(9))), Skip(SkipReason::Filtered));
        assert_eq!(o.classify(&with_key("data/x", Some(10_001))), Skip(SkipReason::Filtered));
        assert_eq!(o.classify(&with_key("data/x", Some(10_000))), Migrate(Method::Update));
        assert_eq!(o.classify(&with_key("data/x", None)), Migrate(Method::Update));
    }

    #[test]
    fn methods() {
        let auto = opts(MethodChoice::Auto);
        assert_eq!(auto.classify(&row()), Migrate(Method::Update));
        let mut plain = row();
        plain.encryption = Some(EncryptionStatus::NotSse);
        assert_eq!(auto.classify(&plain), Migrate(Method::Copy));
        let mut locked = row();
        locked.lock_mode = Some("COMPLIANCE".into());
        assert_eq!(auto.classify(&locked), Migrate(Method::Copy));
        let mut big = row();
        big.size = Some(5 * GIB + 1);
        assert_eq!(auto.classify(&big), Migrate(Method::Update), "updates have no size limit");
        assert_eq!(opts(MethodChoice::Copy).classify(&big), Migrate(Method::MultipartCopy));
        big.size = Some(5 * GIB);
        assert_eq!(opts(MethodChoice::Copy).classify(&big), Migrate(Method::Copy), "exactly 5 GiB fits one CopyObject");
        let low = ClassifyOptions { multipart_threshold: 8 << 20, ..opts(MethodChoice::Copy) };
        big.size = Some((8 << 20) + 1);
        assert_eq!(low.classify(&big), Migrate(Method::MultipartCopy));
        assert_eq!(opts(MethodChoice::Copy).classify(&row()), Migrate(Method::Copy));
    }

    #[test]
    fn versions_all_updates_noncurrent_versions_in_place_or_names_why_not() {
        let all = ClassifyOptions { versions: Versions::All, ..opts(MethodChoice::Auto) };
        let mut old = row();
        old.is_latest = Some(false);
        assert_eq!(opts(MethodChoice::Auto).classify(&old), Skip(SkipReason::NoncurrentVersion));
        assert_eq!(all.classify(&old), Migrate(Method::Update));
        let mut plain = old.clone();
        plain.encryption = Some(EncryptionStatus::NotSse);
        assert_eq!(all.classify(&plain), Skip(SkipReason::NoncurrentNeedsCopy));
        let mut locked = old.clone();
        locked.legal_hold = true;
        assert_eq!(all.classify(&locked), Skip(SkipReason::NoncurrentNeedsCopy));
        let copy = ClassifyOptions { method: MethodChoice::Copy, ..all.clone() };
        assert_eq!(copy.classify(&old), Skip(SkipReason::NoncurrentNeedsCopy));
        // The current version is planned as before; delete markers stay skipped.
        assert_eq!(all.classify(&plain_current()), Migrate(Method::Copy));
        let mut marker = old.clone();
        marker.is_delete_marker = true;
        assert_eq!(all.classify(&marker), Skip(SkipReason::DeleteMarker));
    }

    fn plain_current() -> InventoryRow {
        InventoryRow { encryption: Some(EncryptionStatus::NotSse), ..row() }
    }

    #[test]
    fn kms_sources_make_sse_kms_objects_update_candidates_only() {
        let from = ClassifyOptions { kms_sources: KmsSources::Any, ..opts(MethodChoice::Auto) };
        let kms = InventoryRow { encryption: Some(EncryptionStatus::SseKms), ..row() };
        assert_eq!(opts(MethodChoice::Auto).classify(&kms), Skip(SkipReason::AlreadyKms));
        assert_eq!(from.classify(&kms), Migrate(Method::Update));
        let locked = InventoryRow { lock_mode: Some("GOVERNANCE".into()), ..kms.clone() };
        assert_eq!(from.classify(&locked), Skip(SkipReason::ObjectLock));
        let copy = ClassifyOptions { method: MethodChoice::Copy, ..from.clone() };
        assert_eq!(copy.classify(&kms), Skip(SkipReason::AlreadyKms));
        for (enc, why) in [(EncryptionStatus::DsseKms, SkipReason::DsseKms), (EncryptionStatus::SseC, SkipReason::SseC)]
        {
            assert_eq!(from.classify(&InventoryRow { encryption: Some(enc), ..row() }), Skip(why));
        }
        // With --versions all, a noncurrent SSE-KMS version is a candidate too.
        let all = ClassifyOptions { versions: Versions::All, ..from };
        assert_eq!(all.classify(&InventoryRow { is_latest: Some(false), ..kms }), Migrate(Method::Update));
    }

    #[test]
    fn kms_sources_compare_full_arns_and_ids() {
        let a = "arn:aws:kms:us-east-1:111122223333:key/aaaa";
        let from = KmsSources::FromKeys(vec![a.into()]);
        assert!(from.includes(a) && from.includes("aaaa"));
        assert!(!from.includes("arn:aws:kms:us-east-1:111122223333:key/bbbb"));
        assert!(KmsSources::Any.includes("anything") && !KmsSources::None.includes(a));
    }

    #[test]
    fn names_round_trip() {
        for r in SkipReason::ALL {
            assert_eq!(SkipReason::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
        }
        for m in Method::ALL {
            assert_eq!(Method::parse(m.as_str()), Some(m));
        }
    }
}
