//! One inventory entry planned: its manifest opened (from disk or S3), its rows read,
//! classified and costed, and, for `rekey plan`, written into new checkpoints (one per
//! shard) that are sealed and installed only once everything succeeded.
//!
//! `rekey plan` with one inventory and a job file with several both plan each entry here,
//! so a job's checkpoint is the same, row by row, as planning that inventory alone.

use super::settings::{KeyArn, PlanSettings, Resolved};
use super::shard::shard_path;
use super::{plan_inventory, Estimate, ShardedPlan};
use crate::inventory::{BlobStore, Inventory};
use crate::s3::{build_client, build_kms_client, S3Blobs, S3Settings};
use crate::store::{PlanWriter, RunRecord, SealedPlan, DEFAULT_CACHE_KIB};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// `estimate` reads and costs; `plan` also writes the checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Estimate,
    Plan,
}

/// One inventory, planned: its estimates, and (for `plan`) its checkpoints written but not
/// yet sealed or moved into place.
pub struct PlannedEntry {
    pub plan: ShardedPlan,
    /// Rows read.
    pub rows: u64,
    /// The KMS key ARN the checkpoints record (`plan` only).
    pub key_arn: Option<String>,
    /// One per shard (one for an unsharded plan); empty for `estimate`.
    pub targets: Vec<PathBuf>,
    writers: Vec<PlanWriter>,
}

/// The S3 settings for reading an inventory or resolving a key in `r`'s region.
fn s3_settings(r: &Resolved) -> S3Settings {
    S3Settings {
        region: Some(r.plan.region.clone()),
        endpoint_url: r.endpoint_url.clone(),
        virtual_host: r.virtual_host,
        allow_http: r.allow_http,
        request_timeout: None,
    }
}

/// An S3 reader for `r`'s inventory when it is on S3.
fn inventory_blobs(r: &Resolved, runtime: &tokio::runtime::Runtime) -> Result<Option<S3Blobs>> {
    if !r.plan.inventory.starts_with("s3://") {
        return Ok(None);
    }
    let client = runtime.block_on(build_client(&s3_settings(r)))?;
    Ok(Some(S3Blobs::new(client, runtime.handle().clone())))
}

/// An inventory opened (its manifest read and checked), with the S3 reader of its data
/// files when it is on S3.
pub struct OpenedInventory {
    pub inventory: Inventory,
    pub blobs: Option<S3Blobs>,
}

/// Open `r`'s inventory.
pub fn open_inventory(r: &Resolved, runtime: &tokio::runtime::Runtime) -> Result<OpenedInventory> {
    let blobs = inventory_blobs(r, runtime)?;
    let inventory = Inventory::open(&r.plan.inventory, &r.plan.open, blobs.as_ref().map(|b| b as &dyn BlobStore))?;
    Ok(OpenedInventory { inventory, blobs })
}

/// Read, classify and cost one inventory; for `plan`, write its rows into new checkpoints
/// (one per shard) that [`PlannedEntry::seal`] completes.
pub fn plan_entry(
    r: &Resolved,
    opened: OpenedInventory,
    mode: Mode,
    runtime: &tokio::runtime::Runtime,
) -> Result<PlannedEntry> {
    let OpenedInventory { inventory, blobs } = opened;
    let blobs = blobs.as_ref().map(|b| b as &dyn BlobStore);
    let key_arn = match mode {
        Mode::Estimate => None,
        Mode::Plan => {
            let Some(key) = &r.kms_key else {
                bail!("plan needs --kms-key ARN (or `kms-key` in the job file): the checkpoint records the target key");
            };
            if r.state.is_none() {
                bail!("plan needs --state FILE (or `state` in the job file)");
            }
            // A copy-only plan may name the key by alias or id: pin it to the key it names
            // now. S3 reports the ARN, so every later comparison needs it, and an alias
            // re-pointed mid-run would otherwise split the migration across two keys.
            Some(if KeyArn::parse(key).is_ok() {
                key.clone()
            } else {
                runtime.block_on(resolve_key(&s3_settings(r), key))?
            })
        }
    };
    // One checkpoint, or one per shard.
    let n = r.shards;
    let targets: Vec<PathBuf> = match (&r.state, mode) {
        (Some(state), Mode::Plan) if n > 1 => (0..n as usize).map(|i| shard_path(state, i, n)).collect(),
        (Some(state), Mode::Plan) => vec![state.clone()],
        _ => Vec::new(),
    };
    let mut writers = Vec::with_capacity(targets.len());
    for t in &targets {
        writers.push(PlanWriter::create_with_cache(t, r.replace, (DEFAULT_CACHE_KIB / n).max(4096))?);
    }
    let (plan, stats) = if writers.is_empty() {
        plan_inventory(&r.plan, inventory, blobs, n, None)?
    } else {
        plan_inventory(&r.plan, inventory, blobs, n, Some(&mut |shard, batch| writers[shard].insert(batch)))?
    };
    Ok(PlannedEntry { plan, rows: stats.rows, key_arn, targets, writers })
}

impl PlannedEntry {
    /// Record the run in every checkpoint and seal it beside its target, each with its
    /// estimate (and its shard's share of the quota). Nothing is moved into place: the
    /// caller installs them all once all are sealed, so a failure leaves none behind.
    pub fn seal(&mut self, settings: &PlanSettings) -> Result<Vec<(PathBuf, SealedPlan)>> {
        let Some(key_arn) = self.key_arn.clone() else { return Ok(Vec::new()) };
        let runs = self.run_records(settings, &key_arn)?;
        let mut sealed = Vec::with_capacity(self.writers.len());
        for ((writer, run), target) in std::mem::take(&mut self.writers).into_iter().zip(runs).zip(&self.targets) {
            sealed.push((target.clone(), writer.seal(&run).with_context(|| format!("writing {}", target.display()))?));
        }
        Ok(sealed)
    }

    /// The `run` row of each checkpoint, from the estimates as they stand.
    pub fn run_records(&mut self, settings: &PlanSettings, key_arn: &str) -> Result<Vec<RunRecord>> {
        let n = self.targets.len();
        let sharded = !self.plan.shards.is_empty();
        let estimates: Vec<&mut Estimate> =
            if sharded { self.plan.shards.iter_mut().collect() } else { vec![&mut self.plan.total] };
        let mut runs = Vec::with_capacity(n);
        for (e, target) in estimates.into_iter().zip(&self.targets) {
            if let Some(s) = e.shard.as_mut() {
                s.state_file = Some(target.display().to_string());
            }
            // Each checkpoint paces its run at its share of the quota.
            let mut options = settings.clone();
            options.kms_share = Some(e.assumptions.kms_share);
            if sharded {
                options.shards = Some(n as u32);
            }
            runs.push(RunRecord {
                inventory_source: e.inventory.source.clone(),
                inventory_created: e.inventory.created.clone(),
                source_bucket: e.inventory.source_bucket.clone(),
                kms_key_arn: Some(key_arn.to_string()),
                options_json: serde_json::to_string(&options)?,
                prices_json: serde_json::to_string(&e.assumptions.prices)?,
                estimate_json: serde_json::to_string(&*e)?,
            });
        }
        Ok(runs)
    }
}

/// The ARN of the key an alias or key id names, via kms:DescribeKey.
async fn resolve_key(s3: &S3Settings, key: &str) -> Result<String> {
    let kms = build_kms_client(s3).await?;
    let out = kms.describe_key().key_id(key).send().await.map_err(|e| {
        anyhow::anyhow!(
            "--kms-key {key}: could not resolve it to a key ARN with kms:DescribeKey ({}); pass the key's full ARN",
            aws_sdk_kms::error::DisplayErrorContext(&e)
        )
    })?;
    out.key_metadata()
        .and_then(|m| m.arn())
        .map(str::to_string)
        .with_context(|| format!("--kms-key {key}: DescribeKey returned no ARN"))
}
