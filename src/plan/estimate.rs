//! The estimate: tallies gathered while reading, then the `rekey.estimate/1` document.

use super::classify::{ClassifyOptions, Method, SkipReason};
use super::cost::{CostModel, ObjectCost, Pace};
use super::prices::PriceTable;
use crate::inventory::{InventoryRow, StorageClass};
use serde::Serialize;
use std::collections::BTreeMap;

/// Objects, bytes and cost of one method and storage class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Tally {
    pub objects: u64,
    pub bytes: u64,
    pub cost: ObjectCost,
}

/// Running totals. Each reader thread keeps its own; they are merged at the end.
#[derive(Debug, Clone, Default)]
pub struct Tallies {
    pub rows: u64,
    pub planned: BTreeMap<(Method, StorageClass), Tally>,
    pub skipped: BTreeMap<SkipReason, u64>,
    /// The same planned objects, all costed as copies.
    pub copy_only: ObjectCost,
    /// Planned objects the inventory gives no size for (Batch Operations manifests).
    pub unknown_size: u64,
    /// Locked objects that will be copied: the locked old version remains.
    pub locked_copies: u64,
    /// Planned noncurrent versions (`--versions all`): updated in place by version id.
    pub noncurrent_planned: u64,
    /// Planned SSE-KMS objects (`--from-key` / `--rekey-kms`): each HEADed at run time.
    pub kms_candidates: u64,
    /// The dollars of those HEADs (part of the S3 request cost).
    pub head_usd: f64,
}

impl Tallies {
    pub fn add_planned(&mut self, row: &InventoryRow, method: Method, model: &CostModel, classify: &ClassifyOptions) {
        self.rows += 1;
        let class = row.storage_class.unwrap_or(StorageClass::Standard);
        let size = row.size.unwrap_or(0);
        if row.size.is_none() {
            self.unknown_size += 1;
        }
        if method != Method::Update && super::classify::is_locked(row) {
            self.locked_copies += 1;
        }
        let mut cost = model.object(method, class, size, row.last_modified_ms);
        if row.is_latest == Some(false) {
            self.noncurrent_planned += 1;
        }
        if row.encryption == Some(crate::inventory::EncryptionStatus::SseKms) {
            self.kms_candidates += 1;
            self.head_usd += model.head_usd(class);
            cost += model.kms_source_extra(class);
        }
        let t = self.planned.entry((method, class)).or_default();
        t.objects += 1;
        t.bytes += size;
        t.cost += cost;
        let copy_method = classify.copy_method(row.size);
        self.copy_only +=
            if copy_method == method { cost } else { model.object(copy_method, class, size, row.last_modified_ms) };
    }

    pub fn add_skipped(&mut self, reason: SkipReason) {
        self.rows += 1;
        *self.skipped.entry(reason).or_default() += 1;
    }

    pub fn merge(&mut self, o: Tallies) {
        self.rows += o.rows;
        for (k, t) in o.planned {
            let mine = self.planned.entry(k).or_default();
            mine.objects += t.objects;
            mine.bytes += t.bytes;
            mine.cost += t.cost;
        }
        for (k, n) in o.skipped {
            *self.skipped.entry(k).or_default() += n;
        }
        self.copy_only += o.copy_only;
        self.unknown_size += o.unknown_size;
        self.locked_copies += o.locked_copies;
        self.noncurrent_planned += o.noncurrent_planned;
        self.kms_candidates += o.kms_candidates;
        self.head_usd += o.head_usd;
    }

    pub fn planned_total(&self) -> Tally {
        let mut all = Tally::default();
        for t in self.planned.values() {
            all.objects += t.objects;
            all.bytes += t.bytes;
            all.cost += t.cost;
        }
        all
    }
}

pub const SCHEMA: &str = "rekey.estimate/1";

/// The estimate as `--format json` prints it (dollars as numbers).
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    pub schema: &'static str,
    pub inventory: InventoryInfo,
    pub objects: ObjectsInfo,
    pub requests: RequestsInfo,
    pub cost_usd: CostUsd,
    pub alternatives_usd: Alternatives,
    pub noncurrent_storage_usd_per_month: f64,
    pub duration_seconds: f64,
    /// `kms` or `s3`: which rate limits the run.
    pub duration_bound_by: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ongoing_usd_per_month: Option<Ongoing>,
    pub breakdown: Vec<BreakdownLine>,
    /// Planned from a live listing: what the listing itself cost, and what it assumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listing: Option<ListingCost>,
    pub assumptions: Assumptions,
    /// Set on each shard's estimate of a sharded plan (`--shards N`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// The planned objects' summed cost, unrounded: [`Estimate::repace`] re-derives the
    /// duration from it.
    #[serde(skip)]
    pub planned_cost: ObjectCost,
}

/// Which shard an estimate is for, and the KMS share it assumes.
#[derive(Debug, Clone, Serialize)]
pub struct ShardInfo {
    /// 1-based.
    pub index: usize,
    pub count: u32,
    pub hash: &'static str,
    /// `--kms-share` for the whole job; this shard assumes it divided by `count`.
    pub kms_share_total: f64,
    pub kms_share: f64,
    /// The shard's checkpoint, when one is written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_file: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InventoryInfo {
    pub source: String,
    pub source_bucket: Option<String>,
    pub files: usize,
    pub rows: u64,
    pub created: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectsInfo {
    pub planned: u64,
    pub planned_bytes: u64,
    pub by_method: BTreeMap<&'static str, u64>,
    pub skipped: BTreeMap<&'static str, u64>,
    pub skipped_total: u64,
    pub unknown_size: u64,
    /// Locked objects that will be copied: each keeps its locked old version.
    pub locked_copies: u64,
    /// Planned noncurrent versions (`--versions all`), updated in place by version id;
    /// those only a copy could take are in `skipped.noncurrent_needs_copy`.
    pub noncurrent_planned: u64,
    /// Planned SSE-KMS objects (`--from-key` / `--rekey-kms`): a HEAD each at run time
    /// decides whether it moves (`requests.head_decisions`).
    pub kms_to_kms_candidates: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestsInfo {
    pub s3_put_class: u64,
    pub s3_get_class: u64,
    /// After any Bucket Key reduction, rounded up.
    pub kms: u64,
    pub kms_without_bucket_key: u64,
    /// HeadObject requests deciding SSE-KMS candidates (part of `s3_get_class`).
    pub head_decisions: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CostUsd {
    pub s3_requests: f64,
    /// The HEAD decisions' share of `s3_requests`.
    pub head_decisions: f64,
    pub retrieval: f64,
    pub kms_requests: f64,
    pub early_deletion: f64,
    /// A live listing's LIST (and `--head-all` HEAD) requests, already spent by planning.
    pub listing: f64,
    pub total: f64,
}

/// A plan from a live listing: its requests, their cost, and how encryption was learnt.
#[derive(Debug, Clone, Serialize)]
pub struct ListingCost {
    pub api: &'static str,
    pub list_requests: u64,
    /// HEADs made while planning (`--head-all`).
    pub head_requests: u64,
    pub cost_usd: f64,
    /// The rule for what a listing does not say (encryption, Object Lock).
    pub encryption: &'static str,
}

impl ListingCost {
    pub fn of(
        spec: &crate::inventory::ListingSpec,
        list_requests: u64,
        head_requests: u64,
        prices: &PriceTable,
    ) -> ListingCost {
        // LIST is a PUT-class request; HEAD a GET-class one, at the STANDARD price (most
        // objects' class; a HEAD of an IA object costs $0.001 instead of $0.0004 per 1,000).
        let std = prices.class(StorageClass::Standard);
        let cost = list_requests as f64 * std.put_per_1k / 1000.0 + head_requests as f64 * std.get_per_1k / 1000.0;
        let encryption = if spec.head_all {
            "HEAD of every object while planning (--head-all): exact"
        } else if spec.assumed {
            "as --assume-encryption says, unchecked; an update S3 refuses is re-decided after one HEAD"
        } else {
            "assumed SSE-S3 (S3's default since 2023-01-05); the run HEADs each object before its write and re-decides it (one GET-class request each, in this estimate)"
        };
        ListingCost { api: spec.api(), list_requests, head_requests, cost_usd: usd(cost), encryption }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Alternatives {
    pub copy_only: f64,
    pub batch_operations: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ongoing {
    pub monthly_gets: u64,
    pub kms_decrypt_without_bucket_key: f64,
    pub kms_decrypt_with_bucket_key: f64,
    pub kms_key: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BreakdownLine {
    pub method: Method,
    pub storage_class: StorageClass,
    pub objects: u64,
    pub bytes: u64,
    pub s3_put_class: u64,
    pub s3_get_class: u64,
    pub kms: f64,
    pub s3_requests_usd: f64,
    pub retrieval_usd: f64,
    pub kms_usd: f64,
    pub early_deletion_usd: f64,
    pub total_usd: f64,
    pub noncurrent_storage_usd_per_month: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Assumptions {
    pub region: String,
    pub kms_quota_rps: f64,
    pub kms_quota_source: &'static str,
    pub kms_share: f64,
    pub kms_rps: f64,
    pub s3_rps: f64,
    pub method: super::classify::MethodChoice,
    pub bucket_key: bool,
    pub bucket_key_reduction: f64,
    pub versioned: bool,
    pub versioned_source: &'static str,
    pub multipart_threshold_bytes: u64,
    pub multipart_part_size: &'static str,
    /// `--versions`: current | all.
    pub versions: super::classify::Versions,
    /// `--from-key` / `--rekey-kms`: `"none"`, `{"from_keys": [ARN, ...]}` or `"any"`.
    pub kms_sources: super::classify::KmsSources,
    pub prices: PriceTable,
    pub notes: Vec<String>,
}

/// Round dollars to a millionth: finer is noise, and it keeps the JSON readable.
pub fn usd(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

pub struct EstimateInputs<'a> {
    pub inventory: InventoryInfo,
    pub model: &'a CostModel,
    pub pace: Pace,
    pub region: String,
    pub classify: &'a ClassifyOptions,
    pub versioned_source: &'static str,
    pub monthly_gets: Option<u64>,
}

impl BreakdownLine {
    fn of(method: Method, storage_class: StorageClass, x: &Tally) -> BreakdownLine {
        BreakdownLine {
            method,
            storage_class,
            objects: x.objects,
            bytes: x.bytes,
            s3_put_class: x.cost.s3_put_class,
            s3_get_class: x.cost.s3_get_class,
            kms: x.cost.kms_effective,
            s3_requests_usd: usd(x.cost.s3_requests_usd),
            retrieval_usd: usd(x.cost.retrieval_usd),
            kms_usd: usd(x.cost.kms_usd),
            early_deletion_usd: usd(x.cost.early_deletion_usd),
            total_usd: usd(x.cost.total_usd()),
            noncurrent_storage_usd_per_month: usd(x.cost.noncurrent_storage_usd_per_month),
        }
    }
}

impl Ongoing {
    /// What `monthly_gets` reads of the re-encrypted objects cost in KMS each month.
    fn of(monthly_gets: u64, prices: &PriceTable) -> Ongoing {
        let kms_price = prices.kms_per_10k_requests / 10_000.0;
        let n = monthly_gets as f64;
        Ongoing {
            monthly_gets,
            kms_decrypt_without_bucket_key: usd(n * kms_price),
            kms_decrypt_with_bucket_key: usd(n * (1.0 - prices.bucket_key_reduction) * kms_price),
            kms_key: prices.kms_key_per_month,
        }
    }
}

/// The assumptions an estimate states, and what it found worth saying about these objects.
fn notes(t: &Tallies, bucket_key: bool, prices: &PriceTable) -> Vec<String> {
    let mut notes = vec![
        "early deletion: age = manifest creationTimestamp - LastModifiedDate; no fee where LastModifiedDate is absent"
            .to_string(),
        "update requests are priced as STANDARD PUTs whatever the object's class".to_string(),
        "5xx responses (throttling) are not billed, so retries add no request cost".to_string(),
    ];
    if t.unknown_size > 0 {
        notes.push(format!(
            "{} planned objects have no size in the inventory and are costed as 0 bytes",
            t.unknown_size
        ));
    }
    if bucket_key {
        notes.push(format!("Bucket Key: KMS requests x (1 - {}), AWS's 'up to 99 %'", prices.bucket_key_reduction));
    }
    if t.locked_copies > 0 {
        notes.push(format!("{} locked objects are copied: each keeps its locked old version", t.locked_copies));
    }
    if t.noncurrent_planned > 0 {
        notes.push(format!(
            "{} noncurrent versions are updated in place by version id: no new version, they stay noncurrent",
            t.noncurrent_planned
        ));
    }
    if t.kms_candidates > 0 {
        notes.push(format!(
            "{} SSE-KMS objects: a HEAD each (GET-class) reads the key they are under; those already under the target key end as already_target_key; a move is costed at 2 KMS requests (decrypt under the old key, encrypt under the new; AWS does not document the count)",
            t.kms_candidates
        ));
    }
    notes
}

impl Estimate {
    pub fn build(t: &Tallies, i: EstimateInputs<'_>) -> Estimate {
        let all = t.planned_total();
        let c = all.cost;
        let prices = &i.model.prices;
        let mut by_method: BTreeMap<&'static str, u64> = Method::ALL.iter().map(|m| (m.as_str(), 0)).collect();
        for ((m, _), tally) in &t.planned {
            *by_method.get_mut(m.as_str()).unwrap() += tally.objects;
        }
        let skipped: BTreeMap<&'static str, u64> = t.skipped.iter().map(|(r, n)| (r.as_str(), *n)).collect();
        let (duration, bound) = i.pace.duration(&c);
        let total = c.total_usd();
        let breakdown = t.planned.iter().map(|((m, class), x)| BreakdownLine::of(*m, *class, x)).collect();
        let ongoing = i.monthly_gets.map(|n| Ongoing::of(n, prices));
        let notes = notes(t, i.model.bucket_key, prices);
        Estimate {
            schema: SCHEMA,
            inventory: i.inventory,
            objects: ObjectsInfo {
                planned: all.objects,
                planned_bytes: all.bytes,
                by_method,
                skipped_total: t.skipped.values().sum(),
                skipped,
                unknown_size: t.unknown_size,
                locked_copies: t.locked_copies,
                noncurrent_planned: t.noncurrent_planned,
                kms_to_kms_candidates: t.kms_candidates,
            },
            requests: RequestsInfo {
                s3_put_class: c.s3_put_class,
                s3_get_class: c.s3_get_class,
                kms: (c.kms_effective - 1e-9).ceil().max(0.0) as u64,
                kms_without_bucket_key: c.kms,
                head_decisions: t.kms_candidates,
            },
            cost_usd: CostUsd {
                s3_requests: usd(c.s3_requests_usd),
                head_decisions: usd(t.head_usd),
                retrieval: usd(c.retrieval_usd),
                kms_requests: usd(c.kms_usd),
                early_deletion: usd(c.early_deletion_usd),
                listing: 0.0,
                total: usd(total),
            },
            alternatives_usd: Alternatives {
                copy_only: usd(t.copy_only.total_usd()),
                batch_operations: usd(total
                    + prices.batch_ops_per_job
                    + prices.batch_ops_per_million_objects * all.objects as f64 / 1e6),
            },
            noncurrent_storage_usd_per_month: usd(c.noncurrent_storage_usd_per_month),
            duration_seconds: (duration * 10.0).round() / 10.0,
            duration_bound_by: bound,
            ongoing_usd_per_month: ongoing,
            breakdown,
            listing: None,
            shard: None,
            planned_cost: c,
            assumptions: Assumptions {
                region: i.region,
                kms_quota_rps: i.pace.kms_quota.rps,
                kms_quota_source: i.pace.kms_quota.source,
                kms_share: i.pace.kms_share,
                kms_rps: i.pace.kms_rps(),
                s3_rps: i.pace.s3_rps,
                method: i.classify.method,
                bucket_key: i.model.bucket_key,
                bucket_key_reduction: prices.bucket_key_reduction,
                versioned: i.model.versioned,
                versioned_source: i.versioned_source,
                multipart_threshold_bytes: i.classify.multipart_threshold,
                multipart_part_size: "max(512 MiB, ceil(size / 10,000))",
                versions: i.classify.versions,
                kms_sources: i.classify.kms_sources.clone(),
                prices: prices.clone(),
                notes,
            },
        }
    }
}

impl Estimate {
    /// Add a live listing's own cost to the estimate: spent while planning, so part of the
    /// bill, and its assumption stated.
    pub fn add_listing(&mut self, listing: ListingCost) {
        self.cost_usd.listing = listing.cost_usd;
        self.cost_usd.total = usd(self.cost_usd.total + listing.cost_usd);
        self.alternatives_usd.batch_operations = usd(self.alternatives_usd.batch_operations + listing.cost_usd);
        self.assumptions.notes.push(format!("listing ({}): encryption {}", listing.api, listing.encryption));
        self.listing = Some(listing);
    }

    /// Re-cost the duration at another pace: a job of several inventories divides each
    /// region's KMS share among its entries once every entry is planned and its KMS
    /// requests are known.
    pub fn repace(&mut self, pace: Pace) {
        let (duration, bound) = pace.duration(&self.planned_cost);
        self.duration_seconds = (duration * 10.0).round() / 10.0;
        self.duration_bound_by = bound;
        let a = &mut self.assumptions;
        a.kms_quota_rps = pace.kms_quota.rps;
        a.kms_quota_source = pace.kms_quota.source;
        a.kms_share = pace.kms_share;
        a.kms_rps = pace.kms_rps();
        a.s3_rps = pace.s3_rps;
    }

    /// Mark this as shard `index` (1-based) of `count`, costed at `kms_share_total` / count
    /// (again, after [`Estimate::repace`]: the note is replaced, not repeated).
    pub fn set_shard(&mut self, index: usize, count: u32, kms_share_total: f64) {
        let share = self.assumptions.kms_share;
        self.assumptions.notes.retain(|n| !n.starts_with(SHARD_NOTE));
        self.assumptions.notes.push(format!(
            "{SHARD_NOTE}{index} of {count}: runs on its own machine with --kms-share {kms_share_total} / {count} = {share}; \
             the KMS quota is per account and region, so the shards share it"
        ));
        self.shard = Some(ShardInfo {
            index,
            count,
            hash: super::shard::HASH_NAME,
            kms_share_total,
            kms_share: share,
            state_file: None,
        });
    }
}

/// How a shard's note begins.
const SHARD_NOTE: &str = "shard ";

/// Properties of the totals: the sum of the per-object costs, and never lowered by one
/// more object.
#[cfg(test)]
mod props {
    use super::*;
    use crate::inventory::EncryptionStatus;
    use crate::plan::cost::props::{class, method, model, size, timestamp};
    use crate::plan::cost::{KmsQuota, Pace};
    use proptest::prelude::*;

    /// A planned object: its method and its row (size unknown in some, as in Batch
    /// Operations manifests; some locked).
    fn object() -> impl Strategy<Value = (Method, InventoryRow)> {
        (method(), class(), prop::option::weighted(0.9, size()), timestamp(), any::<bool>()).prop_map(
            |(method, class, size, modified, locked)| {
                let row = InventoryRow {
                    bucket: "b".into(),
                    key: "k".into(),
                    version_id: None,
                    is_latest: Some(true),
                    is_delete_marker: false,
                    size,
                    last_modified_ms: modified,
                    etag: None,
                    storage_class: Some(class),
                    encryption: Some(EncryptionStatus::NotSse),
                    lock_mode: locked.then(|| "GOVERNANCE".to_string()),
                    lock_retain_until: None,
                    legal_hold: false,
                    it_tier: None,
                    bucket_key_enabled: None,
                    checksum_algorithm: None,
                };
                (method, row)
            },
        )
    }

    fn estimate(t: &Tallies, model: &CostModel, classify: &ClassifyOptions) -> Estimate {
        let inventory =
            InventoryInfo { source: "m".into(), source_bucket: None, files: 1, rows: t.rows, created: None };
        Estimate::build(
            t,
            EstimateInputs {
                inventory,
                model,
                pace: Pace { kms_quota: KmsQuota::for_region("us-east-1"), kms_share: 0.5, s3_rps: 3500.0 },
                region: "us-east-1".into(),
                classify,
                versioned_source: "test",
                monthly_gets: None,
            },
        )
    }

    /// Equal up to float rounding in a sum of up to a few hundred terms.
    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-12
    }

    proptest! {
        #[test]
        fn totals_are_the_sum_of_the_objects_and_monotone(
            model in model(),
            objects in prop::collection::vec(object(), 0..40),
            split in any::<prop::sample::Index>(),
        ) {
            let classify = ClassifyOptions::default();
            let mut t = Tallies::default();
            let (mut sum, mut sum_copy_only) = (0.0f64, 0.0f64);
            let mut last = estimate(&t, &model, &classify);
            prop_assert_eq!(last.cost_usd.total, 0.0);
            for (method, row) in &objects {
                let before = t.planned_total().cost.total_usd();
                let before_copy_only = t.copy_only.total_usd();
                t.add_planned(row, *method, &model, &classify);
                let (class, size) = (row.storage_class.unwrap(), row.size.unwrap_or(0));
                sum += model.object(*method, class, size, row.last_modified_ms).total_usd();
                let copy = classify.copy_method(row.size);
                sum_copy_only += model.object(copy, class, size, row.last_modified_ms).total_usd();

                let total = t.planned_total().cost.total_usd();
                prop_assert!(total >= before, "one more object lowered the total: {before} -> {total}");
                prop_assert!(t.copy_only.total_usd() >= before_copy_only);
                let e = estimate(&t, &model, &classify);
                for (now, was) in [
                    (e.cost_usd.total, last.cost_usd.total),
                    (e.alternatives_usd.copy_only, last.alternatives_usd.copy_only),
                    (e.alternatives_usd.batch_operations, last.alternatives_usd.batch_operations),
                    (e.noncurrent_storage_usd_per_month, last.noncurrent_storage_usd_per_month),
                    (e.duration_seconds, last.duration_seconds),
                ] {
                    prop_assert!(now.is_finite() && now >= 0.0 && now >= was, "{was} -> {now}");
                }
                last = e;
            }
            let all = t.planned_total();
            prop_assert_eq!(all.objects, objects.len() as u64);
            prop_assert!(near(all.cost.total_usd(), sum), "{} != {sum}", all.cost.total_usd());
            prop_assert!(near(t.copy_only.total_usd(), sum_copy_only));
            // The breakdown lines add up to the total, too.
            let lines: f64 = t.planned.values().map(|x| x.cost.total_usd()).sum();
            prop_assert!(near(lines, sum));

            // Split over two readers and merged, as `build_plan` does: the same totals.
            let at = if objects.is_empty() { 0 } else { split.index(objects.len() + 1) };
            let (mut a, mut b) = (Tallies::default(), Tallies::default());
            for (i, (method, row)) in objects.iter().enumerate() {
                if i < at { &mut a } else { &mut b }.add_planned(row, *method, &model, &classify);
            }
            a.merge(b);
            let merged = a.planned_total();
            prop_assert_eq!((merged.objects, merged.bytes, merged.cost.kms), (all.objects, all.bytes, all.cost.kms));
            prop_assert!(near(merged.cost.total_usd(), all.cost.total_usd()));
        }
    }
}
