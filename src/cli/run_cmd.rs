//! `rekey run`: execute a plan, and `rekey status`: look at one, even while it runs.
//!
//! The run takes its settings from the plan (key, Bucket Key, region, endpoint, KMS
//! quota and share, S3 rate), so that it does what the estimate costed; the flags here
//! override the pacing and where to connect.
//!
//! Before the first object, the pre-flight checks of [`crate::preflight`] run (the key,
//! the bucket, then a canary of one object per method), unless `--skip-preflight`.
//!
//! Exit codes ([`super::ExitCode`]): 0 all done; 8 finished but some objects failed; 3 the circuit breaker
//! opened; 4 more failures than `--max-failures`; 5 the checkpoint could not be written;
//! 6 `rekey verify` found objects not as planned (mismatch, missing or error); 7 a
//! pre-flight check failed (nothing touched but the canary objects); 130 interrupted.
//! Every stop leaves a consistent checkpoint that `rekey run` resumes.

use super::{usage_error, Exit, ExitCode};
use crate::exec::limiter::{SlowStart, MIN_RATE};
use crate::exec::progress::{percent, ProgressMode, ProgressSnapshot};
use crate::exec::task::Fidelity;
use crate::exec::{config, FailureBudget, RunConfig, RunOverrides, RunReport, StopReason, Stopper};
use crate::plan::stored::StoredPlan;
use crate::preflight::likely_cause;
use crate::s3::{connect, DirectStore, S3Settings, SdkStore};
use crate::store::{add_counts, Checkpoint, ObjectStatus, Verdict};
use crate::units::{human_bytes, human_duration, thousands};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The checkpoint `rekey plan` wrote.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    #[command(flatten)]
    pub connect: super::connect::ConnectArgs,
    /// KMS requests per second (default: the plan's KMS quota × share).
    #[arg(long, value_name = "RPS")]
    pub kms_rps: Option<f64>,
    /// The KMS rate to open at, doubled while nothing throttles up to --kms-rps (default: a
    /// sixteenth of it; --kms-start-rps equal to --kms-rps opens at the ceiling).
    #[arg(long, value_name = "RPS")]
    pub kms_start_rps: Option<f64>,
    /// S3 requests per second (default: the plan's).
    #[arg(long, value_name = "RPS")]
    pub s3_rps: Option<f64>,
    /// Requests in flight (default: sized by Little's law from the rate and latency, or by
    /// trial to what the client drives when the rate is out of its reach).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Attempts per object in this run, the first included.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
    /// Stop after this many failed objects: a count, or a percentage of the objects to do.
    #[arg(long, value_name = "N|P%", default_value = config::DEFAULT_MAX_FAILURES)]
    pub max_failures: String,
    /// Seconds in-flight requests may take to finish after Ctrl-C.
    #[arg(long, value_name = "SECS", default_value_t = config::DEFAULT_DRAIN_SECS)]
    pub drain_timeout: u64,
    /// No progress output.
    #[arg(long, conflicts_with = "json_progress")]
    pub quiet: bool,
    /// One JSON progress snapshot per second on stdout (rekey.progress/1).
    #[arg(long)]
    pub json_progress: bool,
    /// Skip the pre-flight checks and the canary (see `rekey preflight`).
    #[arg(long)]
    pub skip_preflight: bool,
    /// Stop (exit 7) when the pre-flight finds readers who would lose access to the
    /// migrated objects (its access warnings), instead of warning and going on.
    #[arg(long, conflicts_with = "skip_preflight")]
    pub strict: bool,
    /// HEAD each object before copying it and re-send its website redirect, which S3 does
    /// not copy (one GET-class request per copied object). Multipart copies always do.
    #[arg(long)]
    pub preserve_redirect: bool,
    /// Read each copied object's ACL (GetObjectAcl) and re-apply its grants; a copy's ACL
    /// is otherwise private. Not for buckets with ACLs disabled (BucketOwnerEnforced).
    #[arg(long)]
    pub preserve_acl: bool,
    /// Carry Object Lock retention and legal hold onto the copy's new version.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub preserve_lock: bool,
    /// Multipart copy part size (default: max(512MiB, size / 10,000), as estimated; at least 5MiB).
    #[arg(long, value_name = "SIZE")]
    pub part_size: Option<crate::units::ByteSize>,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The checkpoint; repeat it (or list several after one --state) to sum several, such
    /// as the shards of `rekey plan --shards N`: `--state plan.shard-*-of-4.rekey`.
    #[arg(long, value_name = "FILE", required = true, num_args = 1..)]
    pub state: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: StatusFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    Table,
    Json,
}

impl RunArgs {
    /// `rekey run --state STATE` with every other flag at its default, as clap fills it.
    pub fn defaults(state: &Path) -> RunArgs {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            run: RunArgs,
        }
        let argv = [std::ffi::OsStr::new("rekey-run"), std::ffi::OsStr::new("--state"), state.as_os_str()];
        <Only as clap::Parser>::parse_from(argv).run
    }

    /// What these flags change of the plan's settings.
    pub fn overrides(&self) -> Result<RunOverrides> {
        Ok(RunOverrides {
            kms_rps: self.kms_rps,
            kms_start_rps: self.kms_start_rps,
            s3_rps: self.s3_rps,
            concurrency: self.concurrency,
            max_attempts: self.max_attempts,
            max_failures: FailureBudget::parse(&self.max_failures).map_err(anyhow::Error::msg)?,
            drain_timeout: Duration::from_secs(self.drain_timeout),
            fidelity: Fidelity {
                preserve_redirect: self.preserve_redirect,
                preserve_acl: self.preserve_acl,
                preserve_lock: self.preserve_lock,
            },
            part_size: self.part_size.map(|p| p.0),
            progress: if self.quiet {
                ProgressMode::Quiet
            } else if self.json_progress {
                ProgressMode::Json
            } else {
                ProgressMode::Auto
            },
        })
    }
}

/// The run's settings: the plan's, with the flags applied ([`RunConfig::from_plan`]).
pub(super) fn config(args: &RunArgs, cp: &Checkpoint) -> Result<(RunConfig, S3Settings)> {
    let plan = StoredPlan::read(cp)?;
    let s3 = args.connect.settings(&plan.settings, plan.key_arn()?);
    s3.check()?;
    let cfg = RunConfig::from_plan(&plan, s3.region.as_deref().unwrap_or_default(), &args.overrides()?)?;
    Ok((cfg, s3))
}

/// `rekey run`. It builds its own runtime, sized to the run's request ceiling
/// ([`crate::exec::runtime`]), rather than take the CLI's.
pub fn run(args: RunArgs) -> Result<()> {
    let cp = Checkpoint::open(&args.state)?;
    let (mut cfg, s3) = config(&args, &cp)?;
    let sized = crate::exec::runtime::for_run(&cfg).context("cannot start the run's async runtime")?;
    let runtime = &sized;
    // Only --preserve-acl needs the buckets. Read from the rows still to do: a DISTINCT
    // over the whole plan scanned every row, 2 s of a resumed 10 M-row run's start-up.
    let buckets = if cfg.fidelity.preserve_acl { cp.todo_buckets(100)? } else { Vec::new() };
    drop(cp);
    let quiet = args.quiet || args.json_progress;
    let connection = runtime.block_on(connect(&s3))?;
    let client = connection.client.clone();
    if cfg.fidelity.preserve_acl {
        // With ACLs disabled, S3 refuses grant headers and every copy would fail.
        for b in &buckets {
            if runtime.block_on(acls_disabled(&client, b)) {
                eprintln!("rekey: bucket {b} has ACLs disabled (Object Ownership BucketOwnerEnforced): --preserve-acl skipped, as grants no longer apply there");
                cfg.fidelity.preserve_acl = false;
            }
        }
    }
    // Signals are watched from here on, so a Ctrl-C during the pre-flight canary drains it
    // like any run instead of killing the process mid-request.
    let stopper = Stopper::default();
    runtime.spawn(watch_signals(stopper.clone(), cfg.drain_timeout));
    let resume = format!("rekey run --state {}", args.state.display());
    if !args.skip_preflight {
        let checked =
            runtime.block_on(super::preflight_cmd::before_run(&client, &s3, &cfg, !quiet, args.strict, &stopper));
        if stopper.reason() == Some(StopReason::Interrupted) {
            return Err(Exit::new(
                ExitCode::Interrupted,
                format!("interrupted during the pre-flight checks; resume with `{resume}`"),
            )
            .into());
        }
        checked?;
    }
    if !quiet {
        eprintln!(
            "rekey: running {} (KMS {:.0} rps, S3 {:.0} rps{}); Ctrl-C stops cleanly and `rekey run` resumes",
            args.state.display(),
            cfg.kms_rps,
            cfg.s3_rps,
            if cfg.bucket_key { ", Bucket Key" } else { "" }
        );
    }
    // On stderr, so --json-progress (stdout) still says how the first KMS rate was chosen.
    if !args.quiet {
        eprintln!("rekey: {}", slow_start_line(&cfg));
    }
    let path = S3Path::from_env()?;
    tracing::info!(?path, "S3 request path for CopyObject and UpdateObjectEncryption");
    let report = match path {
        S3Path::Sdk => runtime.block_on(crate::exec::run(Arc::new(SdkStore::new(client)), cfg.clone(), stopper))?,
        S3Path::Direct => {
            let store = DirectStore::new(connection)?;
            runtime.block_on(crate::exec::run(Arc::new(store), cfg.clone(), stopper))?
        }
    };
    finish(&args, &report, quiet)
}

/// Which request path `rekey run` sends CopyObject and UpdateObjectEncryption over
/// (`REKEY_S3_PATH`, undocumented in `--help`: for A/B measurement and as a way back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum S3Path {
    /// [`DirectStore`], the default: the two hot operations over a lean hyper path.
    Direct,
    /// [`SdkStore`]: every operation through aws-sdk-s3.
    Sdk,
}

impl S3Path {
    fn from_env() -> Result<S3Path> {
        match std::env::var("REKEY_S3_PATH").as_deref() {
            Err(_) | Ok("") | Ok("direct") => Ok(S3Path::Direct),
            Ok("sdk") => Ok(S3Path::Sdk),
            Ok(other) => bail!("REKEY_S3_PATH={other:?}: expected `direct` (the default) or `sdk`"),
        }
    }
}

/// First Ctrl-C (or SIGTERM): stop dispatching and drain. Second: exit at once; SQLite's
/// atomic commits keep the checkpoint consistent, and unrecorded objects redo safely.
async fn watch_signals(stopper: Stopper, drain: Duration) {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(not(unix))]
    let mut term: Option<()> = None;
    next_signal(&mut term).await;
    eprintln!(
        "\nrekey: stopping: no new requests; in-flight ones get up to {} to finish. Ctrl-C again exits at once.",
        human_duration(drain.as_secs_f64())
    );
    stopper.stop(StopReason::Interrupted);
    // The SIGTERM handler stays installed, so a second SIGTERM must be watched for too.
    next_signal(&mut term).await;
    eprintln!("rekey: exiting at once; the checkpoint is consistent, run `rekey run` again to resume");
    std::process::exit(130);
}

/// Ctrl-C or SIGTERM, whichever comes first.
#[cfg(unix)]
async fn next_signal(term: &mut Option<tokio::signal::unix::Signal>) {
    match term {
        Some(t) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = t.recv() => {}
            }
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn next_signal(_: &mut Option<()>) {
    let _ = tokio::signal::ctrl_c().await;
}

fn finish(args: &RunArgs, r: &RunReport, quiet: bool) -> Result<()> {
    let s = &r.last;
    let resume = format!("rekey run --state {}", args.state.display());
    if args.json_progress {
        println!("{}", serde_json::to_string(s)?);
    }
    if !quiet || r.stop.is_some() || s.failed > 0 {
        eprintln!(
            "rekey: {} done, {} failed, {} changed, {} gone, {} need restore; {} re-encrypted in {}; {} requests, {} retries, {} throttles",
            thousands(s.done),
            thousands(s.failed),
            thousands(s.changed),
            thousands(s.gone),
            thousands(s.needs_restore),
            human_bytes(s.bytes_done),
            human_duration(s.elapsed_secs),
            thousands(s.requests),
            thousands(s.retries),
            thousands(s.throttles_kms + s.throttles_s3),
        );
    }
    if (!quiet || r.stop.is_some() || s.failed > 0) && s.already_target_key + s.other_kms_key > 0 {
        eprintln!(
            "rekey: {} already under the target key, {} under another KMS key (left alone)",
            thousands(s.already_target_key),
            thousands(s.other_kms_key)
        );
    }
    if !quiet || r.stop.is_some() || s.failed > 0 {
        eprintln!("rekey: {}", kms_summary(s));
    }
    if r.abandoned > 0 {
        eprintln!(
            "rekey: {} requests did not finish within the drain timeout; their objects stay pending",
            r.abandoned
        );
    }
    if s.changed + s.gone > 0 {
        eprintln!(
            "rekey: changed and gone objects were not touched; `rekey status --state {}` lists the counts",
            args.state.display()
        );
    }
    match &r.stop {
        None if s.failed > 0 => Err(Exit::new(ExitCode::SomeFailed, format!("{} objects failed; fix the cause and run `{resume}` to retry the retryable ones", s.failed)).into()),
        None => Ok(()),
        Some(StopReason::Interrupted) => Err(Exit::new(ExitCode::Interrupted, format!("interrupted; resume with `{resume}`")).into()),
        Some(StopReason::Breaker { code, message }) => Err(Exit::new(ExitCode::Breaker, format!(
            "stopped at the first sign that no object can succeed: {code}: {message}. Likely cause: {}. \
             The role running rekey needs kms:GenerateDataKey, kms:Decrypt, kms:Encrypt and kms:ReEncrypt* on the key, \
             and s3:PutObject, s3:UpdateObjectEncryption, s3:GetObject and s3:GetObjectTagging on the objects. \
             Nothing was lost; fix it and run `{resume}`",
            likely_cause(code)
        )).into()),
        Some(StopReason::MaxFailures { failed, limit }) => Err(Exit::new(ExitCode::TooManyFailures, format!(
            "stopped: {failed} objects failed, more than --max-failures allows ({limit}); see `rekey status --state {}`, then `{resume}`",
            args.state.display()
        )).into()),
        Some(StopReason::Checkpoint(e)) => Err(Exit::new(ExitCode::Checkpoint, format!("stopped: the checkpoint could not be written or read ({e}); free space or fix the file, then `{resume}`")).into()),
    }
}

/// The start-up line on how the first KMS rate is chosen.
fn slow_start_line(cfg: &RunConfig) -> String {
    let start = cfg.kms_start_rps.unwrap_or_else(|| SlowStart::default_start(cfg.kms_rps));
    if start >= cfg.kms_rps {
        return format!("KMS rate starts at the {:.0} rps ceiling (no slow start)", cfg.kms_rps);
    }
    format!(
        "KMS rate probed from {:.0} rps, doubling while nothing throttles, up to {:.0} rps: \
         the account's current KMS usage (CloudWatch AWS/Usage) is not read, so the first rate is {}",
        start.max(MIN_RATE),
        cfg.kms_rps,
        if cfg.kms_start_rps.is_some() {
            "--kms-start-rps"
        } else {
            "a sixteenth of the ceiling (--kms-start-rps sets it)"
        }
    )
}

/// What the KMS limiter learned: the rate that got through, the share of KMS-bearing
/// requests (those that cost KMS requests) throttled, and how long slow start took.
fn kms_summary(s: &ProgressSnapshot) -> String {
    let ramp = match (s.kms_pacing.as_str(), s.kms_ramp_secs) {
        ("slow_start", _) => "; still in slow start".to_string(),
        (_, Some(t)) => format!("; slow start ended after {}", human_duration(t)),
        _ => String::new(),
    };
    format!(
        "KMS {}, {} {:.0} of {:.0} rps; {} of {} KMS-bearing requests throttled ({}){ramp}",
        s.kms_learning(),
        if s.state == "running" || s.state == "stopping" { "now at" } else { "ended at" },
        s.kms_rate,
        s.kms_ceiling,
        thousands(s.throttles_kms),
        thousands(s.kms_requests),
        percent(s.kms_throttled_share),
    )
}

/// One checkpoint as `rekey status` shows it.
struct FileStatus {
    path: PathBuf,
    /// Where the plan applies: its source bucket (`-` when the inventory did not say), its
    /// region, and its share of that region's KMS quota (a job of several inventories
    /// divides it, and so does `--shards`).
    bucket: String,
    region: String,
    kms_quota_rps: f64,
    kms_share: f64,
    counts: crate::store::StatusCounts,
    todo: crate::store::TodoTotals,
    verdicts: BTreeMap<Verdict, u64>,
    progress: Option<ProgressSnapshot>,
    /// A run is going on now (its process is alive).
    live: bool,
    /// The versions copies replaced, and what `verify --delete-replaced-versions` deleted.
    replaced: crate::store::ReplacedCounts,
    /// What `rekey finish` did to the bucket.
    bucket_steps: Vec<crate::store::BucketStepRecord>,
}

impl FileStatus {
    /// The counts by status, method, skip reason and verdict, and what is left to do.
    fn count_lines(&self, out: &mut String) {
        count_section(out, "by status", &self.counts.by_status);
        count_section(out, "by method", &self.counts.by_method);
        count_section(out, "skipped, by reason", &self.counts.by_skip_reason);
        if !self.verdicts.is_empty() {
            count_section(out, "rekey verify, by verdict", &self.verdicts);
        }
        out.push_str(&format!("to do: {} objects, {}\n", thousands(self.todo.objects), human_bytes(self.todo.bytes)));
    }

    fn load(path: &Path) -> Result<FileStatus> {
        let cp = Checkpoint::open(path)?;
        let plan = StoredPlan::read(&cp)?;
        let a = plan.estimate.assumptions.as_ref();
        let counts = cp.counts()?;
        let todo = cp.todo_totals()?;
        let verdicts = cp.verdict_counts()?;
        let progress: Option<ProgressSnapshot> = cp.progress_json()?.and_then(|j| serde_json::from_str(&j).ok());
        // A snapshot from a process that is gone is history, not a running job.
        let live = progress.as_ref().is_some_and(|p| p.state == "running" || p.state == "stopping")
            && progress.as_ref().is_some_and(|p| pid_alive(p.pid));
        Ok(FileStatus {
            path: path.to_path_buf(),
            bucket: plan.run.source_bucket.clone().unwrap_or_else(|| "-".into()),
            region: a.map_or("-", |a| a.region.as_str()).to_string(),
            kms_quota_rps: a.map_or(0.0, |a| a.kms_quota_rps),
            kms_share: a.map_or(0.0, |a| a.kms_share),
            counts,
            todo,
            verdicts,
            progress,
            live,
            replaced: cp.replaced_counts()?,
            bucket_steps: cp.bucket_steps()?,
        })
    }

    /// The `rekey.status/1` document of one checkpoint.
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "schema": "rekey.status/1",
            "state_file": self.path.display().to_string(),
            "bucket": self.bucket,
            "region": self.region,
            "kms_share": self.kms_share,
            "running": self.live,
            "by_status": self.counts.by_status,
            "by_method": self.counts.by_method,
            "by_skip_reason": self.counts.by_skip_reason,
            "to_do": { "objects": self.todo.objects, "bytes": self.todo.bytes },
            "by_verify_verdict": self.verdicts,
            "last_run": self.progress,
            "replaced_versions": self.replaced,
            "bucket_steps": self.bucket_steps,
        })
    }

    /// What copies left behind and what `rekey finish` did, for the table.
    fn finish_lines(&self, out: &mut String) {
        let r = &self.replaced;
        if r.recorded > 0 {
            out.push_str(&format!(
                "replaced versions (left noncurrent by copies)
  {:<20} {:>14}
  {:<20} {:>14}
",
                "deleted",
                thousands(r.deleted),
                "left",
                thousands(r.left)
            ));
        }
        // Once the objects are done, the bucket is what is left.
        if self.bucket_steps.is_empty() && self.todo.objects == 0 && self.counts.status(ObjectStatus::Done) > 0 {
            out.push_str(
                "bucket: not finished yet (`rekey finish` sets its default encryption to the key)
",
            );
        }
        for s in &self.bucket_steps {
            let what = match s.step {
                crate::vocab::BucketStep::DefaultEncryption => {
                    format!("default encryption {} (was {})", s.after, s.before.as_deref().unwrap_or("none"))
                }
                crate::vocab::BucketStep::EnforcePolicy => {
                    format!("bucket policy enforces the key ({})", s.after)
                }
            };
            out.push_str(&format!("bucket {}: {what}, set {}\n", s.bucket, s.done_at));
        }
    }

    /// The run line(s) of the table.
    fn run_lines(&self, out: &mut String, indent: &str) {
        match &self.progress {
            None => out.push_str(&format!("{indent}no run yet: start one with `rekey run`\n")),
            Some(p) => {
                out.push_str(&format!(
                    "{indent}{} run (pid {}, started {}, updated {}):\n{indent}  {}\n",
                    if self.live { "running" } else { "last" },
                    p.pid,
                    p.started_at,
                    p.updated_at,
                    p.line()
                ));
                out.push_str(&format!(
                    "{indent}  KMS rate {:.0}/{:.0} rps, S3 rate {:.0}/{:.0} rps, throttles KMS {} S3 {}, transient errors {}\n",
                    p.kms_rate, p.kms_ceiling, p.s3_rate, p.s3_ceiling, p.throttles_kms, p.throttles_s3, p.transient_errors
                ));
                // A snapshot of a build before issue 15 has no KMS pacing figures.
                if !p.kms_pacing.is_empty() {
                    out.push_str(&format!("{indent}  {}\n", kms_summary(p)));
                }
            }
        }
    }
}

fn count_section<K: std::fmt::Display>(out: &mut String, title: &str, m: &BTreeMap<K, u64>) {
    out.push_str(&format!("{title}\n"));
    for (k, v) in m {
        out.push_str(&format!("  {:<20} {:>14}\n", k.to_string(), thousands(*v)));
    }
}

/// `rekey status`: one checkpoint as it stands, or the sum of several (the shards of one
/// plan, run on several machines). With one file the output is that file's alone.
pub fn status(args: StatusArgs) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for p in &args.state {
        let id = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        if !seen.insert(id) {
            return Err(usage_error(format!("--state {}: given twice; it would be counted twice", p.display())));
        }
    }
    let files = args.state.iter().map(|p| FileStatus::load(p)).collect::<Result<Vec<_>>>()?;
    if let [one] = files.as_slice() {
        return status_one(one, args.format);
    }
    let set = StatusSum::of(&files);
    match args.format {
        StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&set.json())?),
        StatusFormat::Table => print!("{}", set.table()),
    }
    Ok(())
}

/// Several checkpoints (the shards of a plan, the entries of a job) summed.
struct StatusSum<'a> {
    files: &'a [FileStatus],
    sum: FileStatus,
    live: LiveSum,
    by_bucket: BTreeMap<(String, String), Group>,
    by_region: BTreeMap<String, Group>,
}

/// The live runs together: their rates add up (they share one KMS quota when they are in
/// one account and region), and the job ends with the slowest.
struct LiveSum {
    running: usize,
    kms_rate: f64,
    s3_rate: f64,
    objects_per_sec: f64,
    throttles: u64,
    kms_requests: u64,
    kms_throttled_share: f64,
    eta: Option<f64>,
}

impl LiveSum {
    fn of(files: &[FileStatus]) -> LiveSum {
        let live: Vec<&ProgressSnapshot> =
            files.iter().filter(|f| f.live).filter_map(|f| f.progress.as_ref()).collect();
        // Folded from +0.0: an empty f64 sum is -0.0, which would print as "-0 rps".
        let rate = |f: fn(&ProgressSnapshot) -> f64| live.iter().fold(0.0, |sum, p| sum + f(p));
        let (kms_throttles, kms_requests): (u64, u64) =
            live.iter().fold((0, 0), |(t, n), p| (t + p.throttles_kms, n + p.kms_requests));
        LiveSum {
            running: live.len(),
            kms_rate: rate(|p| p.kms_rate),
            s3_rate: rate(|p| p.s3_rate),
            objects_per_sec: rate(|p| p.objects_per_sec),
            throttles: live.iter().map(|p| p.throttles_kms + p.throttles_s3).sum(),
            kms_requests,
            kms_throttled_share: if kms_requests == 0 { 0.0 } else { kms_throttles as f64 / kms_requests as f64 },
            eta: live.iter().filter_map(|p| p.eta_secs).fold(None, |m: Option<f64>, e| Some(m.map_or(e, |m| m.max(e)))),
        }
    }
}

impl<'a> StatusSum<'a> {
    fn of(files: &'a [FileStatus]) -> StatusSum<'a> {
        let mut sum = FileStatus {
            path: PathBuf::new(),
            bucket: String::new(),
            region: String::new(),
            kms_quota_rps: 0.0,
            kms_share: 0.0,
            counts: Default::default(),
            todo: Default::default(),
            verdicts: BTreeMap::new(),
            progress: None,
            live: false,
            replaced: Default::default(),
            bucket_steps: Vec::new(),
        };
        for f in files {
            sum.counts.add(&f.counts);
            add_counts(&mut sum.verdicts, &f.verdicts);
            sum.todo.objects += f.todo.objects;
            sum.todo.bytes += f.todo.bytes;
        }
        StatusSum {
            files,
            sum,
            live: LiveSum::of(files),
            by_bucket: Group::by(files, |f| (f.bucket.clone(), f.region.clone())),
            by_region: Group::by(files, |f| f.region.clone()),
        }
    }

    /// The `rekey.status-sum/1` document.
    fn json(&self) -> serde_json::Value {
        let (sum, live) = (&self.sum, &self.live);
        serde_json::json!({
            "schema": "rekey.status-sum/1",
            "state_files": self.files.iter().map(|f| f.path.display().to_string()).collect::<Vec<_>>(),
            "running": live.running,
            "by_status": sum.counts.by_status,
            "by_method": sum.counts.by_method,
            "by_skip_reason": sum.counts.by_skip_reason,
            "to_do": { "objects": sum.todo.objects, "bytes": sum.todo.bytes },
            "by_verify_verdict": sum.verdicts,
            "by_bucket": self.by_bucket.iter().map(|((bucket, region), g)| {
                let mut doc = g.json();
                doc["bucket"] = bucket.as_str().into();
                doc["region"] = region.as_str().into();
                doc
            }).collect::<Vec<_>>(),
            "by_region": self.by_region.iter().map(|(region, g)| {
                let mut doc = g.json();
                doc["region"] = region.as_str().into();
                doc["kms_quota_rps"] = g.kms_quota_rps.into();
                doc["kms_share"] = ((g.kms_share * 1e9).round() / 1e9).into();
                doc
            }).collect::<Vec<_>>(),
            "live": {
                "kms_rate": live.kms_rate,
                "s3_rate": live.s3_rate,
                "objects_per_sec": live.objects_per_sec,
                "throttles": live.throttles,
                "kms_requests": live.kms_requests,
                "kms_throttled_share": live.kms_throttled_share,
                "eta_secs": live.eta,
            },
            "files": self.files.iter().map(FileStatus::json).collect::<Vec<_>>(),
        })
    }

    /// The sum for people: the counts, the live runs together, the job by bucket and
    /// region when it spans several, then each file's own lines.
    fn table(&self) -> String {
        let (files, live) = (self.files, &self.live);
        let mut out = format!("{} checkpoints, summed:\n", files.len());
        for f in files {
            out.push_str(&format!("  {}\n", f.path.display()));
        }
        self.sum.count_lines(&mut out);
        out.push_str(&format!(
            "running: {} of {}; together KMS {:.0} rps, S3 {:.0} rps, {:.0} objects/s, {} throttles ({} of KMS requests){}\n",
            live.running,
            files.len(),
            live.kms_rate,
            live.s3_rate,
            live.objects_per_sec,
            thousands(live.throttles),
            percent(live.kms_throttled_share),
            live.eta.map(|e| format!(", ETA {}", human_duration(e))).unwrap_or_default()
        ));
        if self.by_bucket.len() > 1 || self.by_region.len() > 1 {
            self.group_lines(&mut out);
        }
        for f in files {
            out.push_str(&format!("{}: {} to do\n", f.path.display(), thousands(f.todo.objects)));
            f.run_lines(&mut out, "  ");
        }
        out
    }

    /// A job of several buckets or regions: where the work is, and each region's rate
    /// against its quota (the quota is per account and region).
    fn group_lines(&self, out: &mut String) {
        out.push_str(&format!(
            "by bucket\n  {:<24} {:<14} {:>6} {:>12} {:>12} {:>10} {:>12} {:>10}\n",
            "bucket", "region", "files", "done", "to do", "failed", "objects/s", "ETA"
        ));
        for ((bucket, region), g) in &self.by_bucket {
            out.push_str(&format!("  {bucket:<24} {region:<14} {}\n", g.columns()));
        }
        out.push_str(&format!(
            "by region\n  {:<24} {:<14} {:>6} {:>12} {:>12} {:>10} {:>12} {:>10}  KMS rate / quota x share\n",
            "region", "", "files", "done", "to do", "failed", "objects/s", "ETA"
        ));
        for (region, g) in &self.by_region {
            out.push_str(&format!(
                "  {region:<24} {:<14} {}  {} / {} rps ({} x {:.4})\n",
                "",
                g.columns(),
                thousands(g.kms_rate.round() as u64),
                thousands((g.kms_quota_rps * g.kms_share).round() as u64),
                thousands(g.kms_quota_rps as u64),
                g.kms_share
            ));
        }
    }
}

/// Several checkpoints of one bucket or region, summed.
#[derive(Default)]
struct Group {
    files: usize,
    done: u64,
    failed: u64,
    todo: u64,
    /// The live runs' rates added up, and the slowest one's ETA.
    kms_rate: f64,
    objects_per_sec: f64,
    eta: Option<f64>,
    kms_quota_rps: f64,
    kms_share: f64,
}

impl Group {
    fn by<K: Ord>(files: &[FileStatus], key: impl Fn(&FileStatus) -> K) -> BTreeMap<K, Group> {
        let mut groups: BTreeMap<K, Group> = BTreeMap::new();
        for f in files {
            let g = groups.entry(key(f)).or_default();
            g.files += 1;
            g.done += f.counts.status(ObjectStatus::Done);
            g.failed += f.counts.status(ObjectStatus::Failed);
            g.todo += f.todo.objects;
            g.kms_quota_rps = g.kms_quota_rps.max(f.kms_quota_rps);
            g.kms_share += f.kms_share;
            if let Some(p) = f.progress.as_ref().filter(|_| f.live) {
                g.kms_rate += p.kms_rate;
                g.objects_per_sec += p.objects_per_sec;
                g.eta = p.eta_secs.map(|e| g.eta.map_or(e, |m: f64| m.max(e))).or(g.eta);
            }
        }
        groups
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "files": self.files,
            "done": self.done,
            "failed": self.failed,
            "to_do": self.todo,
            "kms_rate": self.kms_rate,
            "objects_per_sec": self.objects_per_sec,
            "eta_secs": self.eta,
        })
    }

    fn columns(&self) -> String {
        format!(
            "{:>6} {:>12} {:>12} {:>10} {:>12.0} {:>10}",
            self.files,
            thousands(self.done),
            thousands(self.todo),
            thousands(self.failed),
            self.objects_per_sec,
            self.eta.map(human_duration).unwrap_or_else(|| "-".into())
        )
    }
}

fn status_one(f: &FileStatus, format: StatusFormat) -> Result<()> {
    match format {
        StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&f.json())?),
        StatusFormat::Table => {
            let mut out = String::new();
            out.push_str(&format!("{}\n", f.path.display()));
            f.count_lines(&mut out);
            f.run_lines(&mut out, "");
            f.finish_lines(&mut out);
            print!("{out}");
        }
    }
    Ok(())
}

fn pid_alive(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        true
    }
}

/// Whether the bucket enforces bucket-owner ownership (ACLs disabled). Unreadable
/// settings count as enabled: the copies then say what S3 thinks of the grants.
async fn acls_disabled(client: &aws_sdk_s3::Client, bucket: &str) -> bool {
    match client.get_bucket_ownership_controls().bucket(bucket).send().await {
        Ok(out) => out
            .ownership_controls()
            .map(|c| c.rules().iter().any(|r| r.object_ownership().as_str() == "BucketOwnerEnforced"))
            .unwrap_or(false),
        Err(_) => false,
    }
}
