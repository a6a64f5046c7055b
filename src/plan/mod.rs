//! Planning: every inventory row classified, costed and (for `rekey plan`) stored.
//!
//! [`build_plan`] reads the inventory on several threads ([`crate::inventory::scan`]).
//! Each thread classifies and costs its rows into its own [`Tallies`]; when a checkpoint
//! is being written, rows also travel in batches over a bounded channel to the one thread
//! that owns the SQLite connection. The channel's bound is what keeps memory flat: a
//! slow disk slows the readers instead of filling RAM.

pub mod classify;
pub mod cost;
pub mod estimate;
pub mod prices;

pub use classify::{ClassifyOptions, Decision, Method, MethodChoice, SkipReason};
pub use cost::{CostModel, KmsQuota, ObjectCost, Pace};
pub use estimate::{Estimate, Tallies};
pub use prices::PriceTable;

use crate::inventory::scan::{scan, BadRow, ScanStats};
use crate::inventory::{BlobStore, Inventory, InventoryError, InventoryRow, OpenOptions};
use crate::store::{PlannedObject, StoreError};
use estimate::{EstimateInputs, InventoryInfo};
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

struct Worker {
    tallies: Tallies,
    batch: Vec<PlannedObject>,
    out: Option<SyncSender<Vec<PlannedObject>>>,
}

/// Read, classify and cost the inventory. With `sink`, every row (planned or skipped) is
/// passed to it in batches, on the calling thread.
pub fn build_plan(
    cfg: &PlanConfig,
    blobs: Option<&dyn BlobStore>,
    mut sink: Option<RowSink<'_>>,
) -> Result<(Estimate, ScanStats), PlanError> {
    let inv = Inventory::open(&cfg.inventory, &cfg.open, blobs)?;
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
    };
    let bad_rows_seen = AtomicU64::new(0);

    let per_row = |w: &mut Worker, row: Result<InventoryRow, BadRow>| -> Result<(), InventoryError> {
        let row = match row {
            Ok(row) => row,
            Err(bad) if cfg.skip_bad_rows => {
                if bad_rows_seen.fetch_add(1, Ordering::Relaxed) < BAD_ROWS_LOGGED {
                    tracing::warn!("skipping bad row: {}", InventoryError::from(bad));
                }
                w.tallies.add_skipped(SkipReason::BadRow);
                return Ok(());
            }
            Err(bad) => return Err(bad.into()),
        };
        let decision = classify.classify(&row);
        match decision {
            Decision::Migrate(m) => w.tallies.add_planned(&row, m, &model, &classify),
            Decision::Skip(r) => w.tallies.add_skipped(r),
        }
        if let Some(out) = &w.out {
            w.batch.push(PlannedObject { row, decision });
            if w.batch.len() >= BATCH {
                let full = std::mem::replace(&mut w.batch, Vec::with_capacity(BATCH));
                // The writer hung up: it failed, and says why itself.
                out.send(full).map_err(|_| InventoryError::Aborted)?;
            }
        }
        Ok(())
    };

    let (tallies, stats) = match sink.as_mut() {
        None => {
            let make = || Worker { tallies: Tallies::default(), batch: Vec::new(), out: None };
            let (workers, stats) = scan(&inv, blobs, cfg.threads, make, per_row)?;
            (merge(workers.into_iter().map(|w| w.tallies)), stats)
        }
        Some(sink) => {
            let (tx, rx) = sync_channel::<Vec<PlannedObject>>(BATCHES_IN_FLIGHT);
            std::thread::scope(|s| {
                let readers = s.spawn(|| {
                    let make = || Worker {
                        tallies: Tallies::default(),
                        batch: Vec::with_capacity(BATCH),
                        out: Some(tx.clone()),
                    };
                    let result = scan(&inv, blobs, cfg.threads, make, per_row).map(|(workers, stats)| {
                        let mut all = Tallies::default();
                        for w in workers {
                            if let (Some(out), false) = (&w.out, w.batch.is_empty()) {
                                let _ = out.send(w.batch);
                            }
                            all.merge(w.tallies);
                        }
                        (all, stats)
                    });
                    drop(tx);
                    result
                });
                // This thread owns the checkpoint: it writes until the readers hang up.
                let mut store_result = Ok(());
                for batch in rx.iter() {
                    if let Err(e) = sink(&batch) {
                        store_result = Err(e);
                        break;
                    }
                }
                drop(rx);
                let scanned = readers.join().expect("inventory reader panicked");
                store_result?;
                Ok::<_, PlanError>(scanned?)
            })?
        }
    };

    let estimate = Estimate::build(
        &tallies,
        EstimateInputs {
            inventory: InventoryInfo {
                source: inv.source.clone(),
                source_bucket: inv.source_bucket.clone(),
                files: stats.files,
                rows: stats.rows,
                created: inv.created_ms.map(crate::units::rfc3339_from_ms),
            },
            model: &model,
            pace: cfg.pace,
            region: cfg.region.clone(),
            classify: &classify,
            versioned_source,
            monthly_gets: cfg.monthly_gets,
        },
    );
    Ok((estimate, stats))
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
