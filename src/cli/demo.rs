//! `rekey demo`: the whole job on generated data, with nothing to set up.
//!
//! For now it writes a realistic inventory (every storage class and encryption status,
//! versions, delete markers, object lock, objects over 5 GiB, awkward keys) in the real
//! S3 layout, then plans it into a checkpoint and prints the estimate. `rekey run`
//! extends it to a run against the local emulator.

use super::plan_cmd::{self, Mode};
use super::settings::{Format, PlanSettings};
use super::PlanArgs;
use crate::inventory::synthetic::{demo_rows, write_inventory, InventorySpec};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

/// A KMS key ARN of the shape AWS issues; the demo never calls KMS with it.
pub const DEMO_KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Inventory rows to generate.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// Keep the inventory and checkpoint in DIR instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Seed for the generator: the same seed gives the same inventory.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
}

pub fn run(args: DemoArgs, runtime: &tokio::runtime::Runtime) -> Result<()> {
    let tmp;
    let dir = match &args.keep {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir().context("creating a temporary directory")?;
            tmp.path().to_path_buf()
        }
    };
    // An inventory taken yesterday, of a bucket that has been in use for over a year.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let created = now - 86_400_000;
    let spec =
        InventorySpec { data_files: 4, ..InventorySpec::new(&dir.join("inventory-bucket"), "demo-bucket", created) };
    let manifest = write_inventory(&spec, demo_rows("demo-bucket", args.rows, 5, created, args.seed))
        .with_context(|| format!("writing the demo inventory under {}", dir.display()))?;
    eprintln!("rekey demo: wrote a {}-row S3 Inventory at {}", args.rows, manifest.display());
    let state = dir.join("demo.rekey");
    let settings = PlanSettings {
        inventory: Some(manifest.display().to_string()),
        kms_key: Some(DEMO_KEY.into()),
        state: Some(state.clone()),
        replace: Some(true),
        format: Some(args.format),
        monthly_gets: Some(10_000_000),
        ..PlanSettings::default()
    };
    plan_cmd::run(PlanArgs { job: None, settings }, Mode::Plan, runtime)?;
    if args.keep.is_some() {
        eprintln!("rekey demo: inventory and checkpoint kept in {}", dir.display());
        eprintln!("  try: rekey estimate --inventory {} --method copy --bucket-key", manifest.display());
    }
    Ok(())
}
