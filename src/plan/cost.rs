//! What each planned object costs, and the totals.
//!
//! Per object (docs/s3-facts.md §0, §3, §4; docs/cost-model.md says the same):
//! * `update`: 1 PUT-class request at the STANDARD price (UpdateObjectEncryption is
//!   "always charged as an S3 Standard storage class request"), 1 KMS request.
//! * `copy`: 1 PUT-class request at the object's class price, 1 KMS request, retrieval of
//!   Size ("a data retrieval charge for the source").
//! * `multipart_copy`: P = ceil(Size / part) parts of max(512 MiB, ceil(Size / 10,000));
//!   P + 2 PUT-class requests (create, parts, complete) and 2 GET-class (HEAD,
//!   GetObjectTagging) at the class price, 1 + P KMS requests, retrieval of Size.
//! * planned from a live listing without `--head-all`: 1 GET-class request more (the
//!   HEAD the run makes before the write, to learn the encryption a listing lacks).
//! * Copies on an unversioned bucket overwrite the object: a prorated early-deletion fee
//!   for classes with a minimum duration. On a versioned bucket the old version stays
//!   and keeps costing storage every month instead.
//!
//! * an SSE-KMS object moved to the target key (`--from-key` / `--rekey-kms`): on top of
//!   its update, 1 GET-class HeadObject at the class price (the run reads the object's key
//!   before deciding) and 1 more KMS request (S3 decrypts the data key under the old key
//!   before encrypting it under the new one; AWS does not document the count, so this is
//!   the upper bound of two).
//!
//! Every total is a plain sum of per-object costs, so splitting the work (threads,
//! shards) never changes the estimate beyond float rounding.

use super::classify::Method;
use super::prices::PriceTable;
use crate::inventory::StorageClass;
use crate::units::{GIB, MIB};
use serde::Serialize;
use std::ops::AddAssign;

const DAY_MS: f64 = 86_400_000.0;

/// The multipart copy part size: at least 512 MiB, and never more than 10,000 parts.
pub fn part_size(size: u64) -> u64 {
    (512 * MIB).max(size.div_ceil(10_000))
}

pub fn part_count(size: u64) -> u64 {
    size.div_ceil(part_size(size)).max(1)
}

/// Requests and dollars for one object, or a sum of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ObjectCost {
    pub s3_put_class: u64,
    pub s3_get_class: u64,
    /// KMS requests S3 makes without a Bucket Key.
    pub kms: u64,
    /// KMS requests after the Bucket Key reduction.
    pub kms_effective: f64,
    pub retrieval_bytes: u64,
    pub s3_requests_usd: f64,
    pub retrieval_usd: f64,
    pub kms_usd: f64,
    pub early_deletion_usd: f64,
    pub noncurrent_storage_usd_per_month: f64,
}

impl ObjectCost {
    /// The one-off cost: requests, retrieval, KMS and early deletion.
    pub fn total_usd(&self) -> f64 {
        self.s3_requests_usd + self.retrieval_usd + self.kms_usd + self.early_deletion_usd
    }
    pub fn s3_requests(&self) -> u64 {
        self.s3_put_class + self.s3_get_class
    }
}

impl AddAssign for ObjectCost {
    fn add_assign(&mut self, o: ObjectCost) {
        self.s3_put_class += o.s3_put_class;
        self.s3_get_class += o.s3_get_class;
        self.kms += o.kms;
        self.kms_effective += o.kms_effective;
        self.retrieval_bytes += o.retrieval_bytes;
        self.s3_requests_usd += o.s3_requests_usd;
        self.retrieval_usd += o.retrieval_usd;
        self.kms_usd += o.kms_usd;
        self.early_deletion_usd += o.early_deletion_usd;
        self.noncurrent_storage_usd_per_month += o.noncurrent_storage_usd_per_month;
    }
}

/// Everything besides the object that its cost depends on.
#[derive(Debug, Clone)]
pub struct CostModel {
    pub prices: PriceTable,
    pub versioned: bool,
    pub bucket_key: bool,
    /// Manifest `creationTimestamp`: objects' ages are measured from it.
    pub inventory_created_ms: Option<i64>,
    /// The run HEADs every object before its write (a listing's unknown encryption).
    pub head_before_write: bool,
}

impl CostModel {
    /// The cost of re-encrypting one object of `size` bytes by `method`.
    pub fn object(&self, method: Method, class: StorageClass, size: u64, last_modified_ms: Option<i64>) -> ObjectCost {
        let p = self.prices.class(class);
        let mut c = ObjectCost::default();
        let put_price = match method {
            Method::Update => self.prices.class(self.prices.update_request_class).put_per_1k,
            _ => p.put_per_1k,
        };
        match method {
            Method::Update => {
                c.s3_put_class = 1;
                c.kms = 1;
            }
            Method::Copy => {
                c.s3_put_class = 1;
                c.kms = 1;
                c.retrieval_bytes = size;
            }
            Method::MultipartCopy => {
                let parts = part_count(size);
                c.s3_put_class = parts + 2;
                c.s3_get_class = 2;
                c.kms = 1 + parts;
                c.retrieval_bytes = size;
            }
        }
        if self.head_before_write {
            c.s3_get_class += 1;
        }
        c.s3_requests_usd = c.s3_put_class as f64 * put_price / 1000.0 + c.s3_get_class as f64 * p.get_per_1k / 1000.0;
        c.retrieval_usd = c.retrieval_bytes as f64 / GIB as f64 * p.retrieval_per_gib;
        c.kms_effective = c.kms as f64 * if self.bucket_key { 1.0 - self.prices.bucket_key_reduction } else { 1.0 };
        c.kms_usd = c.kms_effective * self.prices.kms_per_10k_requests / 10_000.0;
        if method != Method::Update {
            let billable_gib = size.max(p.min_billable_bytes) as f64 / GIB as f64;
            if self.versioned {
                c.noncurrent_storage_usd_per_month = billable_gib * p.storage_per_gib_month;
            } else if let (Some(created), Some(modified)) = (self.inventory_created_ms, last_modified_ms) {
                // No LastModifiedDate, no fee: docs/cost-model.md states this assumption.
                // Saturating: both come from the inventory, and a nonsense timestamp must
                // not wrap an age of millennia into a young object.
                let age_days = (created.saturating_sub(modified) as f64 / DAY_MS).max(0.0);
                let remaining = (p.min_storage_days - age_days).max(0.0);
                c.early_deletion_usd = billable_gib * p.storage_per_gib_month * remaining / 30.0;
            }
        }
        c
    }
}

impl CostModel {
    /// What deciding and moving an SSE-KMS object costs beyond its update: the HEAD that
    /// reads its key, and the KMS request under the old key.
    pub fn kms_source_extra(&self, class: StorageClass) -> ObjectCost {
        let p = self.prices.class(class);
        let mut c = ObjectCost { s3_get_class: 1, kms: 1, ..ObjectCost::default() };
        c.s3_requests_usd = p.get_per_1k / 1000.0;
        c.kms_effective = if self.bucket_key { 1.0 - self.prices.bucket_key_reduction } else { 1.0 };
        c.kms_usd = c.kms_effective * self.prices.kms_per_10k_requests / 10_000.0;
        c
    }

    /// The HEAD alone (for the estimate's line of HEAD decisions).
    pub fn head_usd(&self, class: StorageClass) -> f64 {
        self.prices.class(class).get_per_1k / 1000.0
    }
}

/// The account's KMS request quota for symmetric cryptographic operations, requests/s
/// (docs/s3-facts.md §2.1: the current default table).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KmsQuota {
    pub rps: f64,
    /// `region-table` or `--kms-quota`.
    pub source: &'static str,
}

impl KmsQuota {
    pub fn for_region(region: &str) -> KmsQuota {
        let rps = match region {
            "us-east-1" | "us-west-2" | "eu-west-1" => 100_000.0,
            "us-east-2" | "ap-southeast-1" | "ap-southeast-2" | "ap-northeast-1" | "eu-central-1" | "eu-west-2" => {
                20_000.0
            }
            _ => 10_000.0,
        };
        KmsQuota { rps, source: "region-table" }
    }
}

/// How fast the job may go.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Pace {
    pub kms_quota: KmsQuota,
    /// The share of the account's KMS quota this job may use (other workloads share it).
    pub kms_share: f64,
    /// S3 requests per second (3,500 PUT/COPY per prefix is S3's documented floor).
    pub s3_rps: f64,
}

impl Pace {
    pub fn kms_rps(&self) -> f64 {
        self.kms_quota.rps * self.kms_share
    }

    /// Seconds to finish `cost`, and which limit binds.
    pub fn duration(&self, cost: &ObjectCost) -> (f64, &'static str) {
        let kms = cost.kms_effective / self.kms_rps();
        let s3 = cost.s3_requests() as f64 / self.s3_rps;
        if kms >= s3 {
            (kms, "kms")
        } else {
            (s3, "s3")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(versioned: bool, bucket_key: bool) -> CostModel {
        CostModel {
            prices: PriceTable::default(),
            versioned,
            bucket_key,
            inventory_created_ms: Some(100 * DAY_MS as i64),
            head_before_write: false,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn part_sizes() {
        assert_eq!(part_size(6 * GIB), 512 * MIB);
        assert_eq!(part_count(6 * GIB), 12);
        assert_eq!(part_count(6 * GIB + 1), 13);
        assert_eq!(part_count(1), 1);
        // 10 TiB: parts grow so there are never more than 10,000.
        let ten_tib = 10 * 1024 * GIB;
        assert_eq!(part_size(ten_tib), ten_tib.div_ceil(10_000));
        assert_eq!(part_count(ten_tib), 10_000);
    }

    #[test]
    fn update_is_priced_as_standard_whatever_the_class() {
        let c = model(false, false).object(Method::Update, StorageClass::DeepArchive, 10 * GIB, Some(0));
        assert_eq!((c.s3_put_class, c.s3_get_class, c.kms, c.retrieval_bytes), (1, 0, 1, 0));
        assert!(close(c.s3_requests_usd, 0.005 / 1000.0));
        assert!(close(c.kms_usd, 0.03 / 10_000.0));
        assert_eq!(c.early_deletion_usd, 0.0);
        assert_eq!(c.noncurrent_storage_usd_per_month, 0.0);
    }

    #[test]
    fn copy_of_young_ia_object_pays_retrieval_and_early_deletion() {
        // 2 GiB STANDARD_IA, modified 10 days before the inventory: 20 days left of 30.
        let m = model(false, false);
        let c = m.object(Method::Copy, StorageClass::StandardIa, 2 * GIB, Some(90 * DAY_MS as i64));
        assert!(close(c.s3_requests_usd, 0.01 / 1000.0));
        assert!(close(c.retrieval_usd, 2.0 * 0.01));
        assert!(close(c.early_deletion_usd, 2.0 * 0.0125 * 20.0 / 30.0));
        // A 1 KiB IA object is billed as 128 KiB.
        let small = m.object(Method::Copy, StorageClass::StandardIa, 1024, Some(90 * DAY_MS as i64));
        assert!(close(small.early_deletion_usd, (128.0 / 1024.0 / 1024.0) * 0.0125 * 20.0 / 30.0));
        // Old enough: no fee. Unknown age: no fee.
        assert_eq!(m.object(Method::Copy, StorageClass::StandardIa, GIB, Some(0)).early_deletion_usd, 0.0);
        assert_eq!(m.object(Method::Copy, StorageClass::StandardIa, GIB, None).early_deletion_usd, 0.0);
    }

    #[test]
    fn versioned_copies_leave_noncurrent_storage_instead() {
        let c = model(true, false).object(Method::Copy, StorageClass::StandardIa, 2 * GIB, Some(90 * DAY_MS as i64));
        assert_eq!(c.early_deletion_usd, 0.0);
        assert!(close(c.noncurrent_storage_usd_per_month, 2.0 * 0.0125));
    }

    #[test]
    fn multipart_copy_requests() {
        let c = model(false, false).object(Method::MultipartCopy, StorageClass::Standard, 6 * GIB, Some(0));
        assert_eq!((c.s3_put_class, c.s3_get_class, c.kms), (14, 2, 13));
        assert!(close(c.s3_requests_usd, 14.0 * 0.005 / 1000.0 + 2.0 * 0.0004 / 1000.0));
    }

    #[test]
    fn bucket_key_cuts_kms_by_the_factor() {
        let c = model(false, true).object(Method::Copy, StorageClass::Standard, 1, None);
        assert!(close(c.kms_effective, 0.01));
        assert!(close(c.kms_usd, 0.01 * 0.03 / 10_000.0));
    }

    #[test]
    fn absurd_timestamps_do_not_wrap() {
        // 2^64 - 1 ms apart: i64 subtraction wraps to -1 ms, which would bill 30 days.
        let m = CostModel { inventory_created_ms: Some(i64::MAX), ..model(false, false) };
        assert_eq!(m.object(Method::Copy, StorageClass::StandardIa, GIB, Some(i64::MIN)).early_deletion_usd, 0.0);
        let m = CostModel { inventory_created_ms: Some(i64::MIN), ..model(false, false) };
        let c = m.object(Method::Copy, StorageClass::StandardIa, GIB, Some(i64::MAX));
        assert!(close(c.early_deletion_usd, 0.0125 * 30.0 / 30.0), "modified after the inventory: the full 30 days");
    }

    #[test]
    fn quota_table_and_duration() {
        assert_eq!(KmsQuota::for_region("us-east-1").rps, 100_000.0);
        assert_eq!(KmsQuota::for_region("eu-central-1").rps, 20_000.0);
        assert_eq!(KmsQuota::for_region("sa-east-1").rps, 10_000.0);
        let pace = Pace { kms_quota: KmsQuota::for_region("us-east-1"), kms_share: 0.5, s3_rps: 3500.0 };
        let mut c = ObjectCost { kms: 100_000, kms_effective: 100_000.0, s3_put_class: 100_000, ..Default::default() };
        let (secs, bound) = pace.duration(&c);
        assert!(close(secs, 100_000.0 / 3500.0) && bound == "s3");
        c.s3_put_class = 1;
        assert_eq!(pace.duration(&c), (2.0, "kms"));
    }
}

/// Properties of the per-object cost, over every method and class, sizes up to 5 TiB,
/// any timestamps and any valid price table (the totals' are in `estimate`).
#[cfg(test)]
pub(crate) mod props {
    use super::*;
    use crate::plan::prices::ClassPrices;
    use proptest::prelude::*;

    /// S3's largest object.
    pub const MAX_OBJECT: u64 = 5 * 1024 * GIB;

    pub fn method() -> impl Strategy<Value = Method> {
        prop::sample::select(Method::ALL.to_vec())
    }

    pub fn class() -> impl Strategy<Value = StorageClass> {
        prop::sample::select(StorageClass::ALL.to_vec())
    }

    /// Sizes spread over every order of magnitude, with the edges.
    pub fn size() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(5 * GIB),
            Just(5 * GIB + 1),
            Just(MAX_OBJECT),
            (0u32..=43).prop_flat_map(|bits| 0..=(1u64 << bits).min(MAX_OBJECT)),
        ]
    }

    /// Timestamps: near the inventory's, or anything an i64 holds.
    pub fn timestamp() -> impl Strategy<Value = Option<i64>> {
        prop_oneof![
            Just(None),
            (-400_000i64..400_000).prop_map(|m| Some(1_715_043_600_000 + m * 60_000)),
            any::<i64>().prop_map(Some),
        ]
    }

    /// Prices as `--prices` accepts them: finite, zero or more, the reduction at most 1.
    pub fn prices() -> impl Strategy<Value = PriceTable> {
        let price = || prop_oneof![Just(0.0), 0.0..1.0, 0.0..1e6];
        let class_prices = (price(), price(), price(), price(), 0.0..400.0, 0..=GIB).prop_map(
            |(put, get, retrieval, storage, days, min_bytes)| ClassPrices {
                put_per_1k: put,
                get_per_1k: get,
                retrieval_per_gib: retrieval,
                storage_per_gib_month: storage,
                min_storage_days: days,
                min_billable_bytes: min_bytes,
            },
        );
        prop_oneof![
            Just(PriceTable::default()),
            (prop::collection::vec(class_prices, StorageClass::ALL.len()), price(), 0.0..=1.0).prop_map(
                |(classes, kms, reduction)| {
                    let mut t = PriceTable::default();
                    for (c, p) in StorageClass::ALL.iter().zip(classes) {
                        t.class.insert(*c, p);
                    }
                    t.kms_per_10k_requests = kms;
                    t.bucket_key_reduction = reduction;
                    t
                }
            ),
        ]
    }

    pub fn model() -> impl Strategy<Value = CostModel> {
        (prices(), any::<bool>(), any::<bool>(), timestamp()).prop_map(|(prices, versioned, bucket_key, created)| {
            CostModel { prices, versioned, bucket_key, inventory_created_ms: created, head_before_write: false }
        })
    }

    fn money(c: &ObjectCost) -> [f64; 7] {
        [
            c.kms_effective,
            c.s3_requests_usd,
            c.retrieval_usd,
            c.kms_usd,
            c.early_deletion_usd,
            c.noncurrent_storage_usd_per_month,
            c.total_usd(),
        ]
    }

    proptest! {
        #[test]
        fn costs_are_finite_and_never_negative(
            m in model(), method in method(), class in class(), size in size(), modified in timestamp()
        ) {
            let c = m.object(method, class, size, modified);
            for x in money(&c) {
                prop_assert!(x.is_finite() && x >= 0.0, "{x} in {c:?}");
            }
            prop_assert!(c.kms >= 1 && c.s3_put_class >= 1);
        }

        #[test]
        fn bucket_key_never_raises_the_kms_cost(
            m in model(), method in method(), class in class(), size in size(), modified in timestamp()
        ) {
            let with = CostModel { bucket_key: true, ..m.clone() }.object(method, class, size, modified);
            let without = CostModel { bucket_key: false, ..m }.object(method, class, size, modified);
            prop_assert!(with.kms_usd <= without.kms_usd, "{} > {}", with.kms_usd, without.kms_usd);
            prop_assert!(with.kms_effective <= without.kms_effective);
            prop_assert!(with.total_usd() <= without.total_usd());
            // Nothing else changes.
            prop_assert_eq!(with.kms, without.kms);
            prop_assert_eq!(with.s3_requests_usd, without.s3_requests_usd);
            prop_assert_eq!(with.retrieval_usd, without.retrieval_usd);
            prop_assert_eq!(with.early_deletion_usd, without.early_deletion_usd);
        }

        #[test]
        fn parts_cover_the_object_within_s3_limits(size in size()) {
            let (count, part) = (part_count(size), part_size(size));
            prop_assert!(count.checked_mul(part).is_some_and(|covered| covered >= size), "{count} x {part} < {size}");
            prop_assert!((1..=10_000).contains(&count), "{count} parts");
            // Every part but the last is at least S3's 5 MiB minimum and at most its 5 GiB maximum.
            prop_assert!((5 * MIB..=5 * GIB).contains(&part), "part of {part} bytes");
            // No more parts than needed.
            prop_assert!(size == 0 || (count - 1) * part < size);
        }
    }
}
