//! The entries of a job file that lists several inventories, resolved, checked against
//! each other, planned one by one, given their part of their region's KMS share, and
//! moved into place together. `rekey estimate|plan --job` ([`crate::cli::job`]) drives
//! these steps and prints the result.
//!
//! An entry's settings are the top-level keys, overridden by the entry's own, overridden
//! by the command-line flags. Each entry is planned on its own by
//! [`super::entry::plan_entry`] into its own checkpoint (or shards), so `rekey run`,
//! `status`, `verify`, `report` and the Batch Operations hand-off work on it unchanged.
//! Once all are planned, each region's `--kms-share` is divided between its entries
//! ([`super::job::divide_kms_share`]) and every checkpoint records its part. All
//! checkpoints are sealed before any is moved into place: a failure leaves none.
//!
//! Every entry's manifest is opened before the first is planned, so a missing manifest
//! or a clash between entries is reported at once, not after hours of planning.

use super::entry::{open_inventory, plan_entry, Mode, OpenedInventory, PlannedEntry};
use super::job::{divide_kms_share, JobEntryEstimate, JobEstimate};
use super::settings::{resolve, PlanSettings, Resolved};
use super::shard::shard_path;
use super::Pace;
use crate::store::SealedPlan;
use crate::units::thousands;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The most inventories one job file may list.
pub const MAX_ENTRIES: usize = 1000;

/// One `[[inventories]]` entry, resolved.
pub struct Entry {
    /// 1-based, in file order.
    pub index: usize,
    pub name: String,
    /// The source bucket, when the inventory names it (a Batch Operations manifest does not).
    pub bucket: Option<String>,
    pub settings: PlanSettings,
    pub resolved: Resolved,
    /// Opened before any entry is planned; taken when it is.
    opened: Option<OpenedInventory>,
}

impl Entry {
    fn label(&self) -> String {
        format!("[[inventories]] entry {} ({})", self.index, self.name)
    }
}

/// One entry planned, its checkpoints sealed beside their targets.
pub struct PlannedJobEntry {
    pub planned: PlannedEntry,
    sealed: Vec<(PathBuf, SealedPlan)>,
    /// Its part of its region's `--kms-share`, as a fraction of that share.
    pub share_of_region: f64,
}

/// Resolve every entry of job file `job` (its `inventories` taken out of `file`), open
/// every manifest, and check the entries against each other.
pub fn resolve_entries(
    job: &str,
    flags: &PlanSettings,
    mut file: PlanSettings,
    mode: Mode,
    runtime: &tokio::runtime::Runtime,
) -> Result<Vec<Entry>> {
    let tables = file.inventories.take().unwrap_or_default();
    check_job_shape(job, flags, &file, tables.len())?;
    // `--state` names the job's checkpoints, like `state` at the top level.
    let base_state = flags.state.clone().or(file.state.clone());
    let mut entries = Vec::with_capacity(tables.len());
    for (i, table) in tables.into_iter().enumerate() {
        entries.push(resolve_entry(job, i + 1, flags, &file, table, base_state.as_deref(), mode, runtime)?);
    }
    check_entries(&entries, mode).map_err(|e| anyhow::anyhow!("job file {job}: {e}"))?;
    Ok(entries)
}

/// A job file lists its inventories in `[[inventories]]` tables only, 1 to [`MAX_ENTRIES`].
fn check_job_shape(job: &str, flags: &PlanSettings, file: &PlanSettings, tables: usize) -> Result<()> {
    if flags.inventory.is_some() {
        bail!("--inventory: the job file {job} lists its inventories under [[inventories]]; edit the file, or plan one inventory without --job");
    }
    if file.inventory.is_some() {
        bail!("job file {job}: `inventory` at the top level and [[inventories]] tables: put every inventory in its own [[inventories]] table");
    }
    if file.name.is_some() {
        bail!("job file {job}: `name` at the top level: it names one [[inventories]] entry");
    }
    if tables == 0 {
        bail!("job file {job}: `inventories` is empty; list at least one [[inventories]] table");
    }
    if tables > MAX_ENTRIES {
        bail!(
            "job file {job}: {tables} inventories; at most {MAX_ENTRIES} in one job (split it into several job files)"
        );
    }
    Ok(())
}

/// Entry `index`: its settings (flags over the entry over the file), its manifest opened
/// (its source bucket names the entry, and a bad manifest stops the job before anything
/// is planned), its name and its checkpoint.
#[allow(clippy::too_many_arguments)]
fn resolve_entry(
    job: &str,
    index: usize,
    flags: &PlanSettings,
    file: &PlanSettings,
    table: PlanSettings,
    base_state: Option<&Path>,
    mode: Mode,
    runtime: &tokio::runtime::Runtime,
) -> Result<Entry> {
    let at = |what: String| format!("job file {job}: [[inventories]] entry {index}: {what}");
    if table.inventories.is_some() {
        bail!(at("`inventories` inside an entry; entries do not nest".into()));
    }
    let Some(inventory) = table.inventory.clone() else {
        bail!(at("no `inventory`".into()));
    };
    let own_state = table.state.clone();
    let name = table.name.clone();
    let mut settings = PlanSettings { state: None, ..flags.clone() }.over(table.over(file.clone()));
    settings.name = None;
    settings.inventories = None;
    let resolved = resolve(&settings).with_context(|| at(inventory.clone()))?;
    let opened = open_inventory(&resolved, runtime).with_context(|| at(inventory.clone()))?;
    let bucket = opened.inventory.source_bucket.clone();
    let name = match name {
        Some(n) => check_name(&n).map_err(|why| anyhow::anyhow!(at(format!("name {n:?}: {why}"))))?,
        None => bucket.clone().unwrap_or_else(|| format!("entry-{index}")),
    };
    settings.name = Some(name.clone());
    settings.state = match (own_state, base_state) {
        (Some(s), _) => Some(s),
        (None, Some(base)) => Some(entry_path(base, &name)),
        (None, None) if mode == Mode::Plan => bail!(at(
            "no checkpoint: set `state` at the top level (each entry then writes STATE's stem.NAME.ext) or in the entry, or pass --state".into()
        )),
        (None, None) => None,
    };
    let resolved = Resolved { state: settings.state.clone(), ..resolved };
    Ok(Entry { index, name, bucket, settings, resolved, opened: Some(opened) })
}

/// Plan each entry; seal its checkpoints at once, which closes them (a job may list
/// hundreds), and keep them beside their targets until every entry is planned. Then
/// divide each region's share between its entries.
pub fn plan_entries(
    job: &str,
    entries: &mut [Entry],
    mode: Mode,
    runtime: &tokio::runtime::Runtime,
) -> Result<Vec<PlannedJobEntry>> {
    let n = entries.len();
    let mut planned = Vec::with_capacity(n);
    for e in entries.iter_mut() {
        let t = Instant::now();
        let opened = e.opened.take().expect("opened once, planned once");
        let mut p =
            plan_entry(&e.resolved, opened, mode, runtime).with_context(|| format!("job file {job}: {}", e.label()))?;
        let sealed = p.seal(&e.settings)?;
        eprintln!(
            "rekey: entry {}/{n} {}: read {} rows in {:.1}s",
            e.index,
            e.name,
            thousands(p.rows),
            t.elapsed().as_secs_f64()
        );
        planned.push(PlannedJobEntry { planned: p, sealed, share_of_region: 1.0 });
    }
    divide_shares(entries, &mut planned);
    Ok(planned)
}

/// Divide each region's share between its entries, in proportion to their KMS requests,
/// and re-pace each entry's estimates (and its shards') at its part.
fn divide_shares(entries: &[Entry], planned: &mut [PlannedJobEntry]) {
    let mut by_region: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        by_region.entry(e.resolved.plan.region.as_str()).or_default().push(i);
    }
    for (region, members) in &by_region {
        let share = entries[members[0]].resolved.plan.pace.kms_share;
        let kms: Vec<f64> = members.iter().map(|&i| planned[i].planned.plan.total.planned_cost.kms_effective).collect();
        for (&i, part) in members.iter().zip(divide_kms_share(share, &kms)) {
            let e = &entries[i];
            planned[i].share_of_region = part / share;
            let p = &mut planned[i].planned;
            let pace = Pace { kms_share: part, ..e.resolved.plan.pace };
            p.plan.total.repace(pace);
            if members.len() > 1 {
                p.plan.total.assumptions.notes.push(format!(
                    "shares the {region} KMS quota with {} other entries of the job: {part:.6} of it, {:.2} % of the region's --kms-share {share}, in proportion to its KMS requests",
                    members.len() - 1,
                    100.0 * part / share
                ));
            }
            let shards = p.plan.shards.len();
            for (k, s) in p.plan.shards.iter_mut().enumerate() {
                s.repace(Pace { kms_share: part / shards as f64, ..pace });
                s.set_shard(k + 1, shards as u32, part);
            }
        }
    }
}

/// Record each entry's share in its checkpoints, then move them all into place: the
/// checkpoints written, with their object counts.
pub fn install(entries: &[Entry], planned: &mut [PlannedJobEntry]) -> Result<Vec<(PathBuf, u64)>> {
    for (e, p) in entries.iter().zip(planned.iter_mut()) {
        if let Some(key) = p.planned.key_arn.clone() {
            for ((target, s), run) in p.sealed.iter().zip(p.planned.run_records(&e.settings, &key)?) {
                s.update_run(&run.options_json, &run.estimate_json)
                    .with_context(|| format!("writing {}", target.display()))?;
            }
        }
    }
    let mut written = Vec::new();
    for p in planned.iter_mut() {
        for (target, s) in std::mem::take(&mut p.sealed) {
            let objects = s.install().with_context(|| format!("writing {}", target.display()))?;
            written.push((target, objects));
        }
    }
    Ok(written)
}

/// The job's estimate: each entry's, and the totals by bucket, region and job.
pub fn job_estimate(job: String, entries: &[Entry], planned: Vec<PlannedJobEntry>) -> JobEstimate {
    JobEstimate::build(
        job,
        entries
            .iter()
            .zip(planned)
            .map(|(e, p)| JobEntryEstimate {
                name: e.name.clone(),
                bucket: e.bucket.clone().unwrap_or_else(|| "-".into()),
                region: e.resolved.plan.region.clone(),
                state_files: p.planned.targets.iter().map(|t| t.display().to_string()).collect(),
                share_of_region: (p.share_of_region * 1e9).round() / 1e9,
                estimate: p.planned.plan.total,
                by_shard: p.planned.plan.shards,
            })
            .collect(),
    )
}

/// An entry's name goes into its checkpoint's file name: letters, digits, `.`, `-`, `_`.
fn check_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > 100 {
        return Err("must be 1 to 100 characters".into());
    }
    if name.starts_with('.') || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err("only letters, digits, '.', '-' and '_' (not first '.'), as it names the checkpoint file".into());
    }
    Ok(name.to_string())
}

/// Entry `name`'s checkpoint from the job's `state`: `fleet.rekey` → `fleet.logs.rekey`.
pub fn entry_path(base: &Path, name: &str) -> PathBuf {
    let file = match (base.file_stem(), base.extension()) {
        (Some(stem), Some(ext)) => format!("{}.{name}.{}", stem.to_string_lossy(), ext.to_string_lossy()),
        (Some(stem), None) => format!("{}.{name}", stem.to_string_lossy()),
        _ => format!("rekey.{name}"),
    };
    base.with_file_name(file)
}

/// Refuse entries that would clash: two of one name or checkpoint, two covering the same
/// objects, or one region's entries disagreeing on its quota or share.
fn check_entries(entries: &[Entry], mode: Mode) -> Result<()> {
    let mut names: BTreeMap<&str, &Entry> = BTreeMap::new();
    let mut files: BTreeMap<PathBuf, &Entry> = BTreeMap::new();
    for e in entries {
        if let Some(other) = names.insert(&e.name, e) {
            bail!(
                "{} and {} are both named {:?}; give one a distinct `name` (it names the checkpoint)",
                other.label(),
                e.label(),
                e.name
            );
        }
        if mode == Mode::Plan {
            let r = &e.resolved;
            let state = r.state.clone().unwrap_or_default();
            let targets: Vec<PathBuf> = if r.shards > 1 {
                (0..r.shards as usize).map(|i| shard_path(&state, i, r.shards)).collect()
            } else {
                vec![state]
            };
            for t in targets {
                if t.exists() && !r.replace {
                    bail!("{}: {} already exists; pass --replace to overwrite it", e.label(), t.display());
                }
                if let Some(other) = files.insert(t.clone(), e) {
                    bail!("{} and {} would both write {}", other.label(), e.label(), t.display());
                }
            }
        }
    }
    for (i, a) in entries.iter().enumerate() {
        for b in &entries[i + 1..] {
            let (pa, pb) = (&a.resolved.plan.pace, &b.resolved.plan.pace);
            if a.resolved.plan.region == b.resolved.plan.region
                && (pa.kms_share != pb.kms_share || pa.kms_quota.rps != pb.kms_quota.rps)
            {
                bail!(
                    "{} and {} are both in {}, but one has kms-share {} and kms-quota {} and the other {} and {}: \
                     the region's KMS quota is shared, so set them once for the region (at the top level)",
                    a.label(),
                    b.label(),
                    a.resolved.plan.region,
                    pa.kms_share,
                    pa.kms_quota.rps,
                    pb.kms_share,
                    pb.kms_quota.rps
                );
            }
            if a.bucket.is_some() && a.bucket == b.bucket && overlap(&a.resolved, &b.resolved) {
                bail!(
                    "{} and {} both cover bucket {}: its objects would be planned twice. Give each entry \
                     `include-prefix` lists that do not overlap, or keep one inventory per bucket",
                    a.label(),
                    b.label(),
                    a.bucket.as_deref().unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

/// Whether two entries of one bucket may select the same key: unless both have include
/// prefixes and none of one starts with (or is the start of) one of the other's.
fn overlap(a: &Resolved, b: &Resolved) -> bool {
    let (pa, pb) = (&a.plan.classify.include_prefixes, &b.plan.classify.include_prefixes);
    if pa.is_empty() || pb.is_empty() {
        return true;
    }
    pa.iter().any(|x| pb.iter().any(|y| x.starts_with(y.as_str()) || y.starts_with(x.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_and_names() {
        assert_eq!(entry_path(Path::new("jobs/fleet.rekey"), "logs"), PathBuf::from("jobs/fleet.logs.rekey"));
        assert_eq!(entry_path(Path::new("fleet"), "a.b"), PathBuf::from("fleet.a.b"));
        assert!(check_name("acme-logs.2026_x").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
