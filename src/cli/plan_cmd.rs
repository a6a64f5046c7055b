//! `rekey estimate` and `rekey plan`: parse, plan, print.
//!
//! One inventory is planned by [`crate::plan::entry::plan_entry`] into one checkpoint, or
//! one per shard; a job file listing several inventories goes to [`super::job`], which
//! plans each entry the same way and then divides the KMS quota between them.

use super::output::{render, render_sharded};
use super::settings::{resolve, PlanSettings};
use super::PlanArgs;
pub use crate::plan::entry::Mode;
use crate::plan::entry::{open_inventory, plan_entry};
use crate::units::thousands;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::time::Instant;

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
