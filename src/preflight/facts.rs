//! What the pre-flight checks need to know about a plan, read from its checkpoint.

use crate::plan::settings::KeyArn;
use crate::plan::stored::{StoredLine, StoredPlan};
use crate::plan::PriceTable;
use crate::store::Checkpoint;
use crate::vocab::Method;
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
    /// Planned objects by method.
    pub planned: BTreeMap<Method, u64>,
    /// S3 is reached through a custom endpoint (an emulator or an S3-compatible store).
    pub custom_endpoint: bool,
}

impl PlanFacts {
    pub fn load(state: &Path, custom_endpoint: bool) -> Result<PlanFacts> {
        let cp = Checkpoint::open(state)?;
        let plan = StoredPlan::read(&cp)?;
        let key_arn = plan.key_arn()?.to_string();
        let parsed = KeyArn::parse(&key_arn).ok();
        let estimate = &plan.estimate;
        Ok(PlanFacts {
            state: state.to_path_buf(),
            key_region: parsed.as_ref().map(|k| k.region.clone()),
            key_account: parsed.map(|k| k.account),
            key_arn,
            buckets: buckets(&cp, plan.run.source_bucket.clone())?,
            bucket_key: plan.settings.bucket_key.unwrap_or(false),
            assumed_versioned: estimate.assumptions.as_ref().map(|a| a.versioned),
            noncurrent_usd_per_month: estimate.noncurrent_storage_usd_per_month,
            copies_storage_usd_per_month: copies_storage(&estimate.breakdown, &plan.prices),
            planned: cp.counts()?.by_method,
            custom_endpoint,
        })
    }

    pub fn planned(&self, m: Method) -> u64 {
        self.planned.get(&m).copied().unwrap_or(0)
    }

    pub fn copies(&self) -> u64 {
        self.planned(Method::Copy) + self.planned(Method::MultipartCopy)
    }
}

/// Storage per month of the copies' old versions, from the estimate's breakdown lines.
fn copies_storage(lines: &[StoredLine], p: &PriceTable) -> f64 {
    lines
        .iter()
        .filter(|l| l.method != Method::Update)
        .map(|l| l.bytes as f64 / (1u64 << 30) as f64 * p.class(l.storage_class).storage_per_gib_month)
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
