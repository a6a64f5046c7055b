//! Planning: every inventory row classified, costed and (for `rekey plan`) stored.
//!
//! [`build_plan`] reads the inventory on several threads ([`crate::inventory::scan`]).
//! Each thread classifies and costs its rows into its own [`Tallies`]; when a checkpoint
//! is being written, rows also travel in batches over a bounded channel to the one thread
//! that owns the SQLite connection. The channel's bound is what keeps memory flat: a
//! slow disk slows the readers instead of filling RAM.

pub mod classify;
pub mod cost;
pub mod entry;
pub mod estimate;
pub mod job;
pub mod job_entries;
pub mod prices;
pub mod settings;
pub mod shard;
pub mod stored;

pub use classify::{ClassifyOptions, Decision, KmsSources, Method, MethodChoice, SkipReason, Versions};
pub use cost::{CostModel, KmsQuota, ObjectCost, Pace};
pub use estimate::{Estimate, ShardInfo, Tallies};
pub use prices::PriceTable;

use crate::inventory::scan::{scan, BadRow, ScanStats};
use crate::inventory::{BlobStore, Inventory, InventoryError, InventoryRow, OpenOptions};
use crate::store::{PlannedObject, StoreError};
use estimate::{EstimateInputs, InventoryInfo, ListingCost};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PlanError {
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything `estimate` and `plan` need, resolved and checked by the CLI.
#[derive(Debug, Clone)]
pub struct PlanConfig {
    pub inventory: String,
    pub open: OpenOptions,
    pub classify: ClassifyOptions,
    /// `--versioned`; by default a report with version columns means a versioned bucket.
    pub versioned: Option<bool>,
    pub bucket_key: bool,
    pub prices: PriceTable,
    pub region: String,
    pub pace: Pace,
    pub monthly_gets: Option<u64>,
    pub skip_bad_rows: bool,
    pub threads: usize,
}

/// Rows per batch sent to the checkpoint writer.
const BATCH: usize = 4096;
/// Batches in flight between the readers and the writer: the memory bound.
const BATCHES_IN_FLIGHT: usize = 8;
/// Bad rows logged one by one with `--skip-bad-rows`; the rest are only counted.
const BAD_ROWS_LOGGED: u64 = 20;

/// Where planned rows go: the checkpoint writer, called on the planning thread.
pub type RowSink<'a> = &'a mut dyn FnMut(&[PlannedObject]) -> Result<(), StoreError>;

/// Where planned rows go in a sharded plan: each batch with its shard (0-based).
pub type ShardSink<'a> = &'a mut dyn FnMut(usize, &[PlannedObject]) -> Result<(), StoreError>;

/// The estimates of a plan split into shards.
#[derive(Debug, Clone)]
pub struct ShardedPlan {
    /// The whole plan, at the full `--kms-share`: what one unsharded plan would say.
    pub total: Estimate,
    /// One estimate per shard, each at `--kms-share` / N; empty for an unsharded plan.
    pub shards: Vec<Estimate>,
}

struct Worker {
    /// One per shard.
    tallies: Vec<Tallies>,
    /// One per shard, when rows are being stored.
    batches: Vec<Vec<PlannedObject>>,
    out: Option<SyncSender<(usize, Vec<PlannedObject>)>>,
}

/// Read, classify and cost the inventory. With `sink`, every row (planned or skipped) is
/// passed to it in batches, on the calling thread.
pub fn build_plan(
    cfg: &PlanConfig,
    blobs: Option<&dyn BlobStore>,
    sink: Option<RowSink<'_>>,
) -> Result<(Estimate, ScanStats), PlanError> {
    let mut one = sink.map(|s| move |_: usize, batch: &[PlannedObject]| s(batch));
    let (plan, stats) = build_sharded_plan(cfg, blobs, 1, one.as_mut().map(|f| f as ShardSink<'_>))?;
    Ok((plan.total, stats))
}

/// [`build_plan`] split into `shards` shards by [`shard::shard_of`]: each row goes to
/// `sink` with its shard, and each shard gets its own estimate at `--kms-share` / N.
/// Undecodable rows skipped with `--skip-bad-rows` have no trustworthy key: they are
/// counted in shard 1.
pub fn build_sharded_plan(
    cfg: &PlanConfig,
    blobs: Option<&dyn BlobStore>,
    shards: u32,
    sink: Option<ShardSink<'_>>,
) -> Result<(ShardedPlan, ScanStats), PlanError> {
    let inv = Inventory::open(&cfg.inventory, &cfg.open, blobs)?;
    plan_inventory(cfg, inv, blobs, shards, sink)
}

/// [`build_sharded_plan`] of an inventory already opened (a job of several opens every
/// entry's manifest before it plans the first).
pub fn plan_inventory(
    cfg: &PlanConfig,
    inv: Inventory,
    blobs: Option<&dyn BlobStore>,
    shards: u32,
    sink: Option<ShardSink<'_>>,
) -> Result<(ShardedPlan, ScanStats), PlanError> {
    let planner = RowPlanner::new(cfg, &inv, shards.max(1) as usize);
    let per_row = |w: &mut Worker, row| planner.plan_row(w, row);
    let (per_shard, stats) = match sink {
        None => {
            let make = || Worker { tallies: planner.empty(), batches: Vec::new(), out: None };
            let (workers, stats) = scan(&inv, blobs, cfg.threads, make, per_row)?;
            (planner.merge_workers(workers, |_| {}), stats)
        }
        Some(sink) => scan_and_store(&planner, &inv, blobs, per_row, sink)?,
    };
    Ok((planner.estimates(&inv, per_shard, &stats), stats))
}

/// What every reader thread shares while planning one inventory: the rules, the cost
/// model, and the shard count.
struct RowPlanner<'a> {
    cfg: &'a PlanConfig,
    classify: ClassifyOptions,
    model: CostModel,
    versioned_source: &'static str,
    shards: usize,
    /// Rows per batch and shard: the memory bound stays near one unsharded batch per reader.
    batch_rows: usize,
    bad_rows_seen: AtomicU64,
}

impl<'a> RowPlanner<'a> {
    fn new(cfg: &'a PlanConfig, inv: &Inventory, shards: usize) -> RowPlanner<'a> {
        let mut classify = cfg.classify.clone();
        classify.report_has_versions = inv.decoder.schema.has_versions();
        let (versioned, versioned_source) = match cfg.versioned {
            Some(v) => (v, "--versioned"),
            None if inv.decoder.batch_ops => {
                (false, "assumed (a Batch Operations manifest does not say; pass --versioned)")
            }
            None => (inv.decoder.schema.version_id.is_some(), "inventory version columns"),
        };
        let model = CostModel {
            prices: cfg.prices.clone(),
            versioned,
            bucket_key: cfg.bucket_key,
            inventory_created_ms: inv.created_ms,
            head_before_write: inv.listing.as_ref().is_some_and(|l| l.run_heads_first()),
        };
        RowPlanner {
            cfg,
            classify,
            model,
            versioned_source,
            shards,
            batch_rows: (BATCH / shards).max(256),
            bad_rows_seen: AtomicU64::new(0),
        }
    }

    fn empty(&self) -> Vec<Tallies> {
        (0..self.shards).map(|_| Tallies::default()).collect()
    }

    /// Classify and cost one row into its shard's tallies, and queue it for the
    /// checkpoint when one is being written.
    fn plan_row(&self, w: &mut Worker, row: Result<InventoryRow, BadRow>) -> Result<(), InventoryError> {
        let row = match row {
            Ok(row) => row,
            Err(bad) if self.cfg.skip_bad_rows => {
                if self.bad_rows_seen.fetch_add(1, Ordering::Relaxed) < BAD_ROWS_LOGGED {
                    tracing::warn!("skipping bad row: {}", InventoryError::from(bad));
                }
                w.tallies[0].add_skipped(SkipReason::BadRow);
                return Ok(());
            }
            Err(bad) => return Err(bad.into()),
        };
        let s = if self.shards == 1 { 0 } else { shard::shard_of(&row.bucket, &row.key, self.shards as u32) };
        let decision = self.classify.classify(&row);
        match decision {
            Decision::Migrate(m) => w.tallies[s].add_planned(&row, m, &self.model, &self.classify),
            Decision::Skip(r) => w.tallies[s].add_skipped(r),
        }
        if let Some(out) = &w.out {
            let batch = &mut w.batches[s];
            batch.push(PlannedObject { row, decision });
            if batch.len() >= self.batch_rows {
                let full = std::mem::replace(batch, Vec::with_capacity(self.batch_rows));
                // The writer hung up: it failed, and says why itself.
                out.send((s, full)).map_err(|_| InventoryError::Aborted)?;
            }
        }
        Ok(())
    }

    /// The readers' tallies summed per shard; `flush` first sees each worker (to send its
    /// last batches).
    fn merge_workers(&self, workers: Vec<Worker>, mut flush: impl FnMut(&mut Worker)) -> Vec<Tallies> {
        let mut all = self.empty();
        for mut w in workers {
            flush(&mut w);
            for (a, t) in all.iter_mut().zip(w.tallies) {
                a.merge(t);
            }
        }
        all
    }

    /// The whole plan's estimate, and one per shard (at its share of the quota).
    fn estimates(&self, inv: &Inventory, per_shard: Vec<Tallies>, stats: &ScanStats) -> ShardedPlan {
        let cfg = self.cfg;
        let estimate = |t: &Tallies, rows: u64, pace: Pace| {
            Estimate::build(
                t,
                EstimateInputs {
                    inventory: InventoryInfo {
                        source: inv.source.clone(),
                        source_bucket: inv.source_bucket.clone(),
                        files: stats.files,
                        rows,
                        created: inv.created_ms.map(crate::units::rfc3339_from_ms),
                    },
                    model: &self.model,
                    pace,
                    region: cfg.region.clone(),
                    classify: &self.classify,
                    versioned_source: self.versioned_source,
                    monthly_gets: cfg.monthly_gets,
                },
            )
        };
        let n = self.shards;
        let shard_pace = Pace { kms_share: cfg.pace.kms_share / n as f64, ..cfg.pace };
        let shards = if n == 1 {
            Vec::new()
        } else {
            per_shard
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let mut e = estimate(t, t.rows, shard_pace);
                    e.set_shard(i + 1, n as u32, cfg.pace.kms_share);
                    e
                })
                .collect()
        };
        let mut total = estimate(&merge(per_shard.into_iter()), stats.rows, cfg.pace);
        if let Some(spec) = &inv.listing {
            total.add_listing(ListingCost::of(spec, stats.list_requests, stats.head_requests, &self.model.prices));
        }
        ShardedPlan { total, shards }
    }
}

/// Scan on reader threads while this thread, which owns the checkpoints, writes every
/// batch to `sink` until the readers hang up.
fn scan_and_store<F>(
    planner: &RowPlanner<'_>,
    inv: &Inventory,
    blobs: Option<&dyn BlobStore>,
    per_row: F,
    sink: ShardSink<'_>,
) -> Result<(Vec<Tallies>, ScanStats), PlanError>
where
    F: Fn(&mut Worker, Result<InventoryRow, BadRow>) -> Result<(), InventoryError> + Sync + Send,
{
    let (tx, rx) = sync_channel::<(usize, Vec<PlannedObject>)>(BATCHES_IN_FLIGHT);
    std::thread::scope(|s| {
        let readers = s.spawn(|| {
            let make = || Worker {
                tallies: planner.empty(),
                batches: (0..planner.shards).map(|_| Vec::with_capacity(planner.batch_rows)).collect(),
                out: Some(tx.clone()),
            };
            let result = scan(inv, blobs, planner.cfg.threads, make, per_row).map(|(workers, stats)| {
                let flush = |w: &mut Worker| {
                    if let Some(out) = &w.out {
                        for (shard, batch) in std::mem::take(&mut w.batches).into_iter().enumerate() {
                            if !batch.is_empty() {
                                let _ = out.send((shard, batch));
                            }
                        }
                    }
                };
                (planner.merge_workers(workers, flush), stats)
            });
            drop(tx);
            result
        });
        let mut store_result = Ok(());
        for (shard, batch) in rx.iter() {
            if let Err(e) = sink(shard, &batch) {
                store_result = Err(e);
                break;
            }
        }
        drop(rx);
        let scanned = readers.join().expect("inventory reader panicked");
        store_result?;
        Ok::<_, PlanError>(scanned?)
    })
}

fn merge(parts: impl Iterator<Item = Tallies>) -> Tallies {
    let mut all = Tallies::default();
    for t in parts {
        all.merge(t);
    }
    all
}

#[cfg(test)]
mod tests;
