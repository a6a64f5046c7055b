//! Jobs of several inventories: the KMS quota divided between them, and their estimates
//! summed by bucket, by region and in all.
//!
//! A job file may list several `[[inventories]]`, across buckets and regions, each with
//! its own KMS key. Each is planned into its own checkpoint, but KMS throttles per account
//! and Region: "Throttling is based on all requests on KMS keys of all types in the
//! Region" and "AWS KMS throttles the account that makes the requests" (docs/s3-facts.md
//! §2.1). So the entries of one region share that region's `--kms-share`, and entries in
//! different regions do not compete at all.
//!
//! [`divide_kms_share`] divides a region's share in proportion to each entry's KMS
//! requests. Run side by side, the entries then all finish at K / (quota × share), K the
//! region's KMS requests: no division ends sooner, since the region has to get through
//! all K requests at quota × share. An entry bound by its own S3 rate (S3's limits are
//! per bucket prefix, not per region) ends when that rate allows, which no KMS share
//! could bring forward.

use super::estimate::{usd, Estimate};
use serde::Serialize;
use std::collections::BTreeMap;

/// The schema tag of a job's estimate.
pub const SCHEMA: &str = "rekey.job-estimate/1";

/// The share, as a fraction of its region's, of an entry with no KMS requests (nothing to
/// migrate): positive, because a run needs some rate, and too small to take from others.
pub const IDLE_SHARE: f64 = 1e-6;

/// Each entry's share of the account's KMS quota, given the region's `share` and each
/// entry's KMS requests (after the Bucket Key reduction). The shares add up to `share`.
pub fn divide_kms_share(share: f64, kms_requests: &[f64]) -> Vec<f64> {
    let n = kms_requests.len();
    let total: f64 = kms_requests.iter().filter(|k| **k > 0.0).sum();
    if total <= 0.0 {
        return vec![share / n.max(1) as f64; n];
    }
    let idle = kms_requests.iter().filter(|k| **k <= 0.0).count() as f64;
    let busy = share * (1.0 - IDLE_SHARE * idle);
    kms_requests.iter().map(|&k| if k > 0.0 { busy * k / total } else { share * IDLE_SHARE }).collect()
}

/// One entry of the job: its name, where it goes, and its estimate at its share.
#[derive(Debug, Clone, Serialize)]
pub struct JobEntryEstimate {
    pub name: String,
    pub bucket: String,
    pub region: String,
    /// The entry's checkpoint(s), when planned: one, or one per shard.
    pub state_files: Vec<String>,
    /// The share of the region's `--kms-share` the entry's run gets.
    pub share_of_region: f64,
    pub estimate: Estimate,
    /// Each shard's estimate, when the entry is sharded (`shards` in its table).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub by_shard: Vec<Estimate>,
}

/// The sums over some entries (a bucket's, a region's, or all of them).
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobSums {
    pub entries: Vec<String>,
    pub objects_planned: u64,
    pub planned_bytes: u64,
    pub objects_skipped: u64,
    pub s3_requests: u64,
    pub kms_requests: u64,
    pub cost_usd: f64,
    pub copy_only_usd: f64,
    pub batch_operations_usd: f64,
    /// The slowest entry's duration: they run side by side.
    pub duration_seconds: f64,
    /// What bounds the slowest entry: `kms` or `s3`.
    pub duration_bound_by: &'static str,
}

impl JobSums {
    fn add(&mut self, name: &str, e: &Estimate) {
        self.entries.push(name.to_string());
        self.objects_planned += e.objects.planned;
        self.planned_bytes += e.objects.planned_bytes;
        self.objects_skipped += e.objects.skipped_total;
        self.s3_requests += e.requests.s3_put_class + e.requests.s3_get_class;
        self.kms_requests += e.requests.kms;
        self.cost_usd = usd(self.cost_usd + e.cost_usd.total);
        self.copy_only_usd = usd(self.copy_only_usd + e.alternatives_usd.copy_only);
        self.batch_operations_usd = usd(self.batch_operations_usd + e.alternatives_usd.batch_operations);
        if e.duration_seconds > self.duration_seconds || self.duration_bound_by.is_empty() {
            self.duration_seconds = self.duration_seconds.max(e.duration_seconds);
            self.duration_bound_by = e.duration_bound_by;
        }
    }
}

/// A region's line: its quota, the job's share of it, and its entries summed.
#[derive(Debug, Clone, Serialize)]
pub struct RegionLine {
    pub region: String,
    pub kms_quota_rps: f64,
    pub kms_share: f64,
    pub kms_rps: f64,
    #[serde(flatten)]
    pub sums: JobSums,
}

/// A bucket's line.
#[derive(Debug, Clone, Serialize)]
pub struct BucketLine {
    pub bucket: String,
    pub region: String,
    #[serde(flatten)]
    pub sums: JobSums,
}

/// The estimate of a whole job (`rekey.job-estimate/1`).
#[derive(Debug, Clone, Serialize)]
pub struct JobEstimate {
    pub schema: &'static str,
    pub job_file: String,
    pub entries: Vec<JobEntryEstimate>,
    pub by_bucket: Vec<BucketLine>,
    pub by_region: Vec<RegionLine>,
    /// All entries: regions run side by side, so the job lasts as long as its slowest.
    pub total: JobSums,
    pub notes: Vec<String>,
}

impl JobEstimate {
    /// Sum the entries (already at their shares) by bucket, by region and in all.
    pub fn build(job_file: String, entries: Vec<JobEntryEstimate>) -> JobEstimate {
        let mut buckets: BTreeMap<(String, String), JobSums> = BTreeMap::new();
        let mut regions: BTreeMap<String, (f64, f64, JobSums)> = BTreeMap::new();
        let mut total = JobSums::default();
        for x in &entries {
            let a = &x.estimate.assumptions;
            buckets.entry((x.bucket.clone(), x.region.clone())).or_default().add(&x.name, &x.estimate);
            let r = regions.entry(x.region.clone()).or_insert((a.kms_quota_rps, 0.0, JobSums::default()));
            r.1 += a.kms_share;
            r.2.add(&x.name, &x.estimate);
            total.add(&x.name, &x.estimate);
        }
        let by_bucket =
            buckets.into_iter().map(|((bucket, region), sums)| BucketLine { bucket, region, sums }).collect();
        let by_region = regions
            .into_iter()
            .map(|(region, (quota, share, sums))| {
                // The entries' shares add up to the region's, up to float rounding.
                let share = (share * 1e9).round() / 1e9;
                RegionLine { region, kms_quota_rps: quota, kms_share: share, kms_rps: quota * share, sums }
            })
            .collect();
        let notes = vec![
            "the KMS quota is per account and region: the entries of a region share its --kms-share, in proportion \
             to their KMS requests, so that run side by side they finish together"
                .to_string(),
            "each entry is its own checkpoint: run them side by side (one `rekey run --state FILE` each, on one \
             machine or several); run one at a time, each uses only its part of the region's share unless \
             given --kms-rps"
                .to_string(),
            "the job's duration is its slowest region's (regions do not share a KMS quota)".to_string(),
        ];
        JobEstimate { schema: SCHEMA, job_file, entries, by_bucket, by_region, total, notes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_kms_requests_and_add_up() {
        let s = divide_kms_share(0.5, &[300.0, 100.0, 600.0]);
        assert_eq!(s.len(), 3);
        assert!((s[0] - 0.15).abs() < 1e-12 && (s[1] - 0.05).abs() < 1e-12 && (s[2] - 0.30).abs() < 1e-12, "{s:?}");
        // With proportional shares every entry's KMS time is the same: K / (R × share).
        let quota = 100_000.0;
        let times: Vec<f64> = [300.0, 100.0, 600.0].iter().zip(&s).map(|(k, sh)| k / (quota * sh)).collect();
        assert!(times.iter().all(|t| (t - 1000.0 / (quota * 0.5)).abs() < 1e-9), "{times:?}");
    }

    #[test]
    fn idle_entries_get_a_token_share_and_empty_regions_split_evenly() {
        let s = divide_kms_share(0.5, &[0.0, 200.0]);
        assert!(s[0] > 0.0 && s[0] <= 0.5 * IDLE_SHARE);
        assert!((s[0] + s[1] - 0.5).abs() < 1e-12);
        assert_eq!(divide_kms_share(0.4, &[0.0, 0.0]), vec![0.2, 0.2]);
        assert_eq!(divide_kms_share(0.4, &[7.0]), vec![0.4]);
    }
}
