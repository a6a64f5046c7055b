//! A plan as its checkpoint holds it, read back typed: the options it was made with, the
//! prices it was costed at, and the parts of its estimate that later commands compare
//! against (`run` paces to it, `status` shows its quota, `report` sets actual requests
//! beside the estimated ones, `export batch-ops` costs each job from its breakdown).
//!
//! Every later command reads the plan through [`StoredPlan::read`], so none of them
//! parses the checkpoint's JSON columns on its own.

use super::settings::PlanSettings;
use super::PriceTable;
use crate::inventory::StorageClass;
use crate::store::{Checkpoint, RunRecord, StoreError};
use crate::vocab::Method;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoredPlanError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: the plan's {what} cannot be read ({source}); re-plan with this version of rekey")]
    Column { path: String, what: &'static str, source: serde_json::Error },
    #[error("{path}: the plan has no KMS key; re-plan with --kms-key ARN")]
    NoKey { path: String },
}

/// The plan's row of the checkpoint, its JSON columns decoded.
#[derive(Debug, Clone)]
pub struct StoredPlan {
    pub path: PathBuf,
    pub run: RunRecord,
    pub settings: PlanSettings,
    pub prices: PriceTable,
    pub estimate: StoredEstimate,
}

/// What later commands read of the estimate (`rekey.estimate/1`, written by
/// [`super::Estimate`], which is never read back whole); other fields are ignored, and
/// every field may be missing (an older or partial estimate).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StoredEstimate {
    pub requests: Option<StoredRequests>,
    pub cost_usd: Option<StoredTotal>,
    pub alternatives_usd: Option<StoredAlternatives>,
    pub noncurrent_storage_usd_per_month: f64,
    pub breakdown: Vec<StoredLine>,
    pub assumptions: Option<StoredAssumptions>,
}

/// The estimated requests, set beside the actual ones by `rekey report`.
#[derive(Debug, Clone, Deserialize)]
pub struct StoredRequests {
    pub s3_put_class: u64,
    pub s3_get_class: u64,
    pub kms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StoredTotal {
    pub total: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StoredAlternatives {
    pub batch_operations: f64,
}

/// One (method, storage class) line of the estimate's breakdown.
#[derive(Debug, Clone, Deserialize)]
pub struct StoredLine {
    pub method: Method,
    pub storage_class: StorageClass,
    pub objects: u64,
    #[serde(default)]
    pub bytes: u64,
    pub total_usd: f64,
}

/// The estimate's pacing assumptions.
#[derive(Debug, Clone, Deserialize)]
pub struct StoredAssumptions {
    pub region: String,
    pub kms_quota_rps: f64,
    pub kms_share: f64,
    pub versioned: bool,
}

impl StoredPlan {
    pub fn read(cp: &Checkpoint) -> Result<StoredPlan, StoredPlanError> {
        let run = cp.run()?;
        let path = cp.path();
        Ok(StoredPlan {
            settings: column(path, "options", &run.options_json)?,
            prices: column(path, "prices", &run.prices_json)?,
            estimate: column(path, "estimate", &run.estimate_json)?,
            path: path.to_path_buf(),
            run,
        })
    }

    /// The key the plan re-encrypts under.
    pub fn key_arn(&self) -> Result<&str, StoredPlanError> {
        self.run.kms_key_arn.as_deref().ok_or_else(|| StoredPlanError::NoKey { path: self.path.display().to_string() })
    }
}

fn column<T: for<'de> Deserialize<'de>>(path: &Path, what: &'static str, json: &str) -> Result<T, StoredPlanError> {
    serde_json::from_str(json).map_err(|source| StoredPlanError::Column {
        path: path.display().to_string(),
        what,
        source,
    })
}
