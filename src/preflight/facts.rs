//! What the pre-flight checks need to know about a plan, read from its checkpoint.

use crate::cli::settings::{KeyArn, PlanSettings};
use crate::inventory::StorageClass;
use crate::plan::classify::Method;
use crate::plan::PriceTable;
use crate::store::Checkpoint;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the checks need to know about a plan, read from its checkpoint.
#[derive(Debug, Clone)]
pub struct PlanFacts {
    pub state: PathBuf,
    pub key_arn: String,
    /// Region and account from the key's ARN (None if the ARN does not parse).
    pub key_region: Option<String>,
    pub key_account: Option<String>,
    /// The buckets of the planned objects (one for an S3 Inventory).
    pub buckets: Vec<String>,
    pub bucket_key: bool,
    /// The estimate's assumption.
    pub assumed_versioned: Option<bool>,
    /// The estimate's noncurrent storage of copies in a versioned bucket.
    pub noncurrent_usd_per_month: f64,
    /// Storage of the planned copies' old versions, per month, were the bucket versioned
    /// (sizes × storage price, before per-object minimums).
    pub copies_storage_usd_per_month: f64,
    /// Planned objects by method (`update`, `copy`, `multipart_copy`).
    pub planned: BTreeMap<String, u64>,
    /// S3 is reached through a custom endpoint (an emulator or an S3-compatible store).
    pub custom_endpoint: bool,
}

impl PlanFacts {
    pub fn load(state: &Path, custom_endpoint: bool) -> Result<PlanFacts> {
        let cp = Checkpoint::open(state)?;
        let run = cp.run()?;
        let key_arn = run.kms_key_arn.clone().context("the plan has no KMS key; re-plan with --kms-key ARN")?;
        let parsed = KeyArn::parse(&key_arn).ok();
        let plan: PlanSettings = serde_json::from_str(&run.options_json).context("the plan's options")?;
        let estimate: serde_json::Value = serde_json::from_str(&run.estimate_json).context("the plan's estimate")?;
        let prices: Option<PriceTable> = serde_json::from_str(&run.prices_json).ok();
        Ok(PlanFacts {
            state: state.to_path_buf(),
            key_region: parsed.as_ref().map(|k| k.region.clone()),
            key_account: parsed.map(|k| k.account),
            key_arn,
            buckets: buckets(&cp, run.source_bucket.clone())?,
            bucket_key: plan.bucket_key.unwrap_or(false),
            assumed_versioned: estimate["assumptions"]["versioned"].as_bool(),
            noncurrent_usd_per_month: estimate["noncurrent_storage_usd_per_month"].as_f64().unwrap_or(0.0),
            copies_storage_usd_per_month: prices.map(|p| copies_storage(&estimate, &p)).unwrap_or(0.0),
            planned: cp.counts()?.by_method,
            custom_endpoint,
        })
    }

    pub fn planned(&self, m: Method) -> u64 {
        self.planned.get(m.as_str()).copied().unwrap_or(0)
    }

    pub fn copies(&self) -> u64 {
        self.planned(Method::Copy) + self.planned(Method::MultipartCopy)
    }
}

/// Storage per month of the copies' old versions, from the estimate's breakdown lines.
fn copies_storage(estimate: &serde_json::Value, p: &PriceTable) -> f64 {
    let lines = estimate["breakdown"].as_array().cloned().unwrap_or_default();
    lines
        .iter()
        .filter(|l| l["method"].as_str().is_some_and(|m| m != Method::Update.as_str()))
        .filter_map(|l| {
            let class: StorageClass = serde_json::from_value(l["storage_class"].clone()).ok()?;
            let gib = l["bytes"].as_f64()? / (1u64 << 30) as f64;
            Some(gib * p.class(class).storage_per_gib_month)
        })
        .sum()
}

/// The inventory's bucket, or (a Batch Operations manifest may name several) the first
/// few buckets of the planned objects.
fn buckets(cp: &Checkpoint, source_bucket: Option<String>) -> Result<Vec<String>> {
    if let Some(b) = source_bucket {
        return Ok(vec![b]);
    }
    let mut stmt = cp
        .connection()
        .prepare("SELECT DISTINCT bucket FROM objects WHERE method IS NOT NULL LIMIT 10")
        .context("the plan's buckets")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).context("the plan's buckets")?;
    rows.collect::<rusqlite::Result<Vec<_>>>().context("the plan's buckets")
}
