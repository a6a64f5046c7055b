//! `rekey estimate` and `rekey plan`.
//!
//! One inventory is planned by [`plan_entry`] into one checkpoint, or one per shard; a job
//! file listing several inventories goes to [`super::job`], which plans each entry the
//! same way and then divides the KMS quota between them.

use super::output::{render, render_sharded};
use super::settings::{resolve, KeyArn, PlanSettings, Resolved};
use super::PlanArgs;
use crate::inventory::{BlobStore, Inventory};
use crate::plan::shard::shard_path;
use crate::plan::{plan_inventory, Estimate, ShardedPlan};
use crate::s3::{build_client, build_kms_client, S3Blobs, S3Settings};
use crate::store::{PlanWriter, RunRecord, SealedPlan, DEFAULT_CACHE_KIB};
use crate::units::thousands;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Estimate,
    Plan,
}

pub fn run(args: PlanArgs, mode: Mode, runtime: &tokio::runtime::Runtime) -> Result<()> {
    let settings = match args.job.as_deref().map(PlanSettings::from_job_file).transpose()? {
        Some(file) if file.inventories.is_some() => return super::job::run(&args, file, mode, runtime),
        Some(file) => args.settings.clone().over(file),
        None => args.settings.clone(),
    };
    if settings.name.is_some() {
        bail!("`name` names one `[[inventories]]` entry of a job file; at the top level it means nothing");
    }
    let r = resolve(&settings)?;
    let started = Instant::now();
    let opened = open_inventory(&r, runtime)?;
    let mut entry = plan_entry(&r, opened, mode, runtime)?;
    let sealed = entry.seal(&settings)?;
    let mut written = Vec::new();
    for (target, s) in sealed {
        let objects = s.install().with_context(|| format!("writing {}", target.display()))?;
        written.push((target, objects));
    }
    let secs = started.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    let text = if r.shards > 1 { render_sharded(&entry.plan, r.format) } else { render(&entry.plan.total, r.format) };
    out.write_all(text.as_bytes())?;
    out.flush()?;
    // Progress notes go to stderr, so stdout stays exactly one document.
    let rate = if secs > 0.0 { (entry.rows as f64 / secs) as u64 } else { 0 };
    if written.is_empty() {
        eprintln!("rekey: read {} rows in {secs:.1}s ({} rows/s)", thousands(entry.rows), thousands(rate));
    }
    match written.as_slice() {
        [] => {}
        [(state, objects)] => eprintln!(
            "rekey: planned {} rows in {secs:.1}s ({} rows/s); checkpoint {} holds {} objects",
            thousands(entry.rows),
            thousands(rate),
            state.display(),
            thousands(*objects)
        ),
        shards => {
            eprintln!(
                "rekey: planned {} rows in {secs:.1}s ({} rows/s) into {} shards:",
                thousands(entry.rows),
                thousands(rate),
                shards.len()
            );
            for (state, objects) in shards {
                eprintln!("  checkpoint {} holds {} objects", state.display(), thousands(*objects));
            }
        }
    }
    Ok(())
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
