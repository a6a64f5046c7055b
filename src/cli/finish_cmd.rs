//! `rekey finish`: the command line and the rendering; the steps are in [`crate::finish`].
//!
//! Reads the bucket's default encryption (and with `--enforce` its policy), prints what
//! would change (the policy as a diff), and unless `--dry-run` writes it and records each
//! step in the checkpoint's `bucket_steps`, which `rekey status` shows.

use crate::finish::{apply, describe, plan_finish, FinishPlan, Target, ENFORCE_SID};
use crate::plan::stored::StoredPlan;
use crate::s3::{build_client, build_kms_client, SdkBucketApi};
use crate::store::{BucketStepRecord, Checkpoint};
use crate::units::now_rfc3339;
use crate::verify::one_line;
use crate::vocab::BucketStep;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct FinishArgs {
    /// The checkpoint of the plan whose bucket to finish.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Also merge a statement into the bucket policy that denies s3:PutObject unless the
    /// request names the plan's key (writers relying on the default encryption alone are
    /// denied too).
    #[arg(long)]
    pub enforce: bool,
    /// Print exactly what would change, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub connect: super::connect::ConnectArgs,
}

pub fn run(args: FinishArgs, runtime: &tokio::runtime::Runtime) -> Result<()> {
    let cp = Checkpoint::open(&args.state)?;
    let plan = StoredPlan::read(&cp)?;
    let state = args.state.display();
    let key =
        plan.run.kms_key_arn.clone().with_context(|| format!("{state}: the plan has no KMS key to finish with"))?;
    let bucket = plan.run.source_bucket.clone().with_context(|| format!("{state}: the plan names no bucket"))?;
    let s3 = args.connect.settings(&plan.settings, &key);
    let bucket_key = plan.settings.bucket_key.unwrap_or(false);
    let (fp, applied) = runtime.block_on(async {
        // S3 and a bucket policy's condition compare the key's ARN, never an alias.
        let key_arn = super::verify_cmd::resolve_alias(&key, &s3).await?;
        let client = build_client(&s3).await?;
        let api = SdkBucketApi::new(&client, build_kms_client(&s3).await?);
        let target = Target { bucket: bucket.clone(), key_arn, bucket_key, enforce: args.enforce };
        let fp = plan_finish(&api, &target).await?;
        print!("{}", render(&fp, args.dry_run));
        let applied = if args.dry_run { None } else { Some(apply(&api, &fp).await?) };
        anyhow::Ok((fp, applied))
    })?;
    let Some(applied) = applied else {
        println!("dry run: nothing was changed");
        return Ok(());
    };
    let recorded = cp.bucket_steps()?;
    let known = |step: BucketStep| recorded.iter().any(|r| r.bucket == bucket && r.step == step);
    // A step is recorded when it is written, or found already in place by a first finish;
    // a later finish that changes nothing keeps the first record (and its `before`).
    if applied.encryption || !known(BucketStep::DefaultEncryption) {
        cp.record_bucket_step(&BucketStepRecord {
            bucket: bucket.clone(),
            step: BucketStep::DefaultEncryption,
            done_at: now_rfc3339(),
            before: Some(describe(fp.encryption.before.as_ref())),
            after: describe(Some(&fp.encryption.after)),
        })?;
    }
    if let Some(p) = &fp.policy {
        if applied.policy || !known(BucketStep::EnforcePolicy) {
            cp.record_bucket_step(&BucketStepRecord {
                bucket: bucket.clone(),
                step: BucketStep::EnforcePolicy,
                done_at: now_rfc3339(),
                before: p.before.clone(),
                after: format!("statement {ENFORCE_SID}"),
            })?;
        }
    }
    let mut done = Vec::new();
    if applied.encryption {
        done.push("set the default encryption");
    }
    if applied.policy {
        done.push("merged the statement into the bucket policy");
    }
    if done.is_empty() {
        println!("nothing to change: bucket {bucket} is already finished; recorded in {state}");
    } else {
        println!("{}; recorded in {state} (`rekey status` shows it)", done.join(" and "));
    }
    Ok(())
}

/// What `finish` found and will do (or would, in a dry run), for people.
fn render(fp: &FinishPlan, dry_run: bool) -> String {
    let will = if dry_run { "would set" } else { "sets" };
    let b = &fp.target.bucket;
    let mut s = format!("rekey finish: bucket {b}\n");
    let e = &fp.encryption;
    if e.unchanged() {
        s.push_str(&format!("  default encryption: {}, unchanged\n", describe(e.before.as_ref())));
    } else {
        s.push_str(&format!(
            "  default encryption: {} → {will} {}\n",
            describe(e.before.as_ref()),
            describe(Some(&e.after))
        ));
    }
    match &fp.policy {
        None => s.push_str("  bucket policy: not touched (--enforce merges a statement that requires the key)\n"),
        Some(p) if p.unchanged => {
            s.push_str(&format!("  bucket policy: statement {ENFORCE_SID} already there, unchanged\n"))
        }
        Some(p) => {
            let had = if p.before.is_some() {
                "merged into the existing policy"
            } else {
                "a new policy (the bucket has none)"
            };
            let verb = if dry_run { "would merge" } else { "merges" };
            s.push_str(&format!(
                "  bucket policy: {verb} statement {ENFORCE_SID}, {had}; every other statement is kept:\n"
            ));
            for line in &p.diff {
                s.push_str(&format!("    {}\n", one_line(line)));
            }
            s.push_str(
                "  note: it denies every PutObject, CopyObject and multipart upload into the bucket that does not \
                 name the key in x-amz-server-side-encryption-aws-kms-key-id, including writers that rely on the \
                 default encryption alone\n",
            );
        }
    }
    s
}
