//! `estimate` and `plan` of a job file that lists several inventories.
//!
//! ```toml
//! state = "fleet.rekey"        # entry checkpoints: fleet.NAME.rekey
//! kms-share = 0.5              # per region: the entries of a region divide it
//! bucket-key = true            # top-level keys are every entry's defaults
//!
//! [[inventories]]
//! inventory = "s3://inv/acme-logs/logs/daily/2026-11-24T01-00Z/manifest.json"
//! kms-key = "arn:aws:kms:us-east-1:111122223333:key/…"
//!
//! [[inventories]]
//! name = "eu-media"            # default: the inventory's source bucket
//! inventory = "s3://inv-eu/acme-media/media/daily/2026-11-24T01-00Z/manifest.json"
//! kms-key = "arn:aws:kms:eu-west-1:111122223333:key/…"
//! exclude-prefix = ["tmp/"]
//! ```
//!
//! The steps (resolve and check every entry, plan each, divide the KMS share, install)
//! are [`crate::plan::job_entries`]; this prints the job's estimate and what was written.

use super::output::render_job;
use super::settings::PlanSettings;
use super::PlanArgs;
use crate::plan::entry::Mode;
use crate::plan::job_entries::{install, job_estimate, plan_entries, resolve_entries};
use crate::units::thousands;
use anyhow::Result;
use std::io::Write;
use std::time::Instant;

pub fn run(args: &PlanArgs, file: PlanSettings, mode: Mode, runtime: &tokio::runtime::Runtime) -> Result<()> {
    let job = args.job.clone().unwrap_or_default().display().to_string();
    let mut entries = resolve_entries(&job, &args.settings, file, mode, runtime)?;
    let started = Instant::now();
    let mut planned = plan_entries(&job, &mut entries, mode, runtime)?;
    let written = install(&entries, &mut planned)?;
    let rows: u64 = planned.iter().map(|p| p.planned.rows).sum();
    let n = entries.len();
    let estimate = job_estimate(job, &entries, planned);
    let mut out = std::io::stdout().lock();
    out.write_all(render_job(&estimate, entries[0].resolved.format).as_bytes())?;
    out.flush()?;
    let secs = started.elapsed().as_secs_f64();
    if written.is_empty() {
        eprintln!("rekey: read {} rows of {n} inventories in {secs:.1}s", thousands(rows));
    } else {
        eprintln!(
            "rekey: planned {} rows of {n} inventories in {secs:.1}s into {} checkpoints:",
            thousands(rows),
            written.len()
        );
        for (state, objects) in &written {
            eprintln!("  checkpoint {} holds {} objects", state.display(), thousands(*objects));
        }
    }
    Ok(())
}
