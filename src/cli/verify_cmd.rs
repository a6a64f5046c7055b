//! `rekey verify`: the command line and the rendering of the summary; the checks
//! themselves are in [`crate::verify`].
//!
//! The connection comes from the plan, as for `rekey run`; flags override it. A planned
//! key alias is resolved to its ARN once, since S3 reports ARNs. Exit 6 when any object
//! is not `ok`, 130 when interrupted.

use super::{Exit, ExitCode};
use crate::exec::RetryPolicy;
use crate::plan::stored::StoredPlan;
use crate::s3::{build_client, build_kms_client, S3Settings, SdkStore};
use crate::store::{Checkpoint, Verdict};
use crate::units::{human_duration, thousands};
use crate::verify::replaced::delete_replaced;
use crate::verify::{one_line, verify_all, Expect, PassOptions, Selection, Summary};
use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_s3::error::DisplayErrorContext;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The checkpoint `rekey plan` wrote and `rekey run` filled.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Check a random sample of N done objects instead of all of them.
    #[arg(long, value_name = "N")]
    pub sample: Option<u64>,
    /// The sample's seed: the same seed on the same checkpoint picks the same objects.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Objects checked at once.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub concurrency: usize,
    /// After checking every done object, delete the version each verified copy replaced
    /// (noncurrent, under the old encryption): exactly that version id, never one under
    /// Object Lock. Needs s3:DeleteObjectVersion. Off by default; not with --sample.
    #[arg(long)]
    pub delete_replaced_versions: bool,
    #[command(flatten)]
    pub connect: super::connect::ConnectArgs,
    /// The summary: for people, or one JSON object (`rekey.verify/1`) on stdout.
    #[arg(long, value_enum, default_value = "table")]
    pub format: VerifyFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyFormat {
    Table,
    Json,
}

fn config(args: &VerifyArgs, cp: &Checkpoint) -> Result<(Expect, S3Settings)> {
    let plan = StoredPlan::read(cp)?;
    let key = plan.run.kms_key_arn.clone().context("the plan has no KMS key, so there is nothing to verify against")?;
    let s3 = args.connect.settings(&plan.settings, &key);
    Ok((Expect { key_arn: key, bucket_key: plan.settings.bucket_key.unwrap_or(false) }, s3))
}

/// S3 reports the key's ARN, never an alias: resolve a planned alias (`--method copy`
/// allows one) to the key it names now.
pub(super) async fn resolve_alias(key: &str, s3: &S3Settings) -> Result<String> {
    if !(key.starts_with("alias/") || key.contains(":alias/")) {
        return Ok(key.to_string());
    }
    let kms = build_kms_client(s3).await?;
    let out =
        kms.describe_key().key_id(key).send().await.map_err(|e| {
            anyhow!("resolving the planned key alias {key}: KMS DescribeKey: {}", DisplayErrorContext(&e))
        })?;
    out.key_metadata()
        .and_then(|m| m.arn())
        .map(str::to_string)
        .with_context(|| format!("DescribeKey {key} returned no ARN"))
}

pub fn run(args: VerifyArgs, runtime: &tokio::runtime::Runtime) -> Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency 0: at least one object must be checked at a time");
    }
    if args.delete_replaced_versions && args.sample.is_some() {
        return Err(super::usage_error(
            "--delete-replaced-versions deletes only after every copy is verified: it cannot be used with --sample",
        ));
    }
    let started = Instant::now();
    let cp = Checkpoint::open(&args.state)?;
    let (mut expect, s3) = config(&args, &cp)?;
    let done = cp.done_count()?;
    let selection = match args.sample {
        Some(n) => Selection::sample(&cp, n, args.seed)?,
        None => Selection::all(),
    };
    let total = selection.sample_len().unwrap_or(done);
    if done == 0 {
        let state = args.state.display();
        eprintln!("rekey: {state} has no done objects to verify; `rekey run --state {state}` first");
    }
    let opts = PassOptions { concurrency: args.concurrency, policy: RetryPolicy::default() };
    let (tally, deleted) = runtime.block_on(async {
        expect.key_arn = resolve_alias(&expect.key_arn, &s3).await?;
        let store = Arc::new(SdkStore::new(build_client(&s3).await?));
        let stop = || async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let expect = Arc::new(expect.clone());
        let tally = verify_all(store.clone(), &cp, selection, total, expect.clone(), &opts, stop()).await?;
        // Deletion comes after the verdicts it depends on are recorded, and not at all
        // after an interrupted pass.
        let deleted = if args.delete_replaced_versions && !tally.interrupted {
            Some(delete_replaced(store, &cp, expect, args.concurrency, opts.policy, stop()).await?)
        } else {
            None
        };
        anyhow::Ok((tally, deleted))
    })?;
    let state = args.state.display().to_string();
    let mut summary = Summary::new(tally, &expect, state.clone(), done, args.sample, started.elapsed().as_secs_f64());
    summary.interrupted |= deleted.as_ref().is_some_and(|d| d.interrupted);
    summary.deleted_replaced = deleted;
    summary.replaced_versions = cp.replaced_counts()?;
    match args.format {
        VerifyFormat::Json => println!("{}", serde_json::to_string(&summary)?),
        VerifyFormat::Table => print_table(&summary),
    }
    let (checked, not_ok) = (summary.checked, summary.not_ok);
    if summary.interrupted {
        let message = format!("interrupted after {checked} of {total} objects; their verdicts are recorded in {state}");
        return Err(Exit::new(ExitCode::Interrupted, message).into());
    }
    if not_ok > 0 {
        let message = format!(
            "{not_ok} of {checked} objects are not as planned ({}); \
             each object's verify_verdict and verify_detail are in {state}",
            summary.not_ok_counts()
        );
        return Err(Exit::new(ExitCode::VerifyMismatch, message).into());
    }
    Ok(())
}

/// What copies left behind, and what deleting them did.
fn print_replaced(s: &Summary) {
    if let Some(d) = &s.deleted_replaced {
        println!(
            "Replaced versions: {} deleted, {} already gone, {} kept",
            thousands(d.deleted),
            thousands(d.already_gone),
            thousands(d.kept)
        );
        for k in &d.kept_listed {
            println!("  kept {} (version {}): {}", one_line(&k.key), one_line(&k.version_id), k.why);
        }
    }
    let r = &s.replaced_versions;
    if r.left > 0 {
        println!(
            "{} copies left their old version behind, noncurrent and still under the old encryption ({}): \
             `rekey report` lists them and prints a lifecycle rule that expires noncurrent versions; \
             or `rekey verify --delete-replaced-versions` deletes exactly those versions",
            thousands(r.left),
            crate::units::human_bytes(r.bytes_left)
        );
    }
}

fn print_table(s: &Summary) {
    let what = match s.sample {
        Some(n) if n < s.done => format!("a sample of {} of {} done objects", thousands(s.checked), thousands(s.done)),
        Some(_) => {
            format!("{} of {} done objects (the sample asked for all of them)", thousands(s.checked), thousands(s.done))
        }
        None => format!("{} of {} done objects", thousands(s.checked), thousands(s.done)),
    };
    println!(
        "rekey verify: {what} checked in {} against {}{}",
        human_duration(s.elapsed_secs),
        s.kms_key_arn,
        if s.bucket_key { " with a Bucket Key" } else { "" }
    );
    for v in Verdict::ALL {
        let n = s.by_verdict.get(v.as_str()).copied().unwrap_or(0);
        println!("  {:<10} {:>12}", v.as_str(), thousands(n));
    }
    if !s.listed.is_empty() {
        let more = if s.not_ok > s.listed.len() as u64 {
            format!(", the first {} in plan order", s.listed.len())
        } else {
            String::new()
        };
        println!("Not as planned ({}{more}):", thousands(s.not_ok));
        for p in &s.listed {
            println!(
                "  {:<9} {} ({}): {}",
                p.verdict.as_str(),
                one_line(&p.key),
                p.method,
                p.detail.as_deref().map(one_line).unwrap_or_default()
            );
        }
    }
    print_replaced(s);
}
