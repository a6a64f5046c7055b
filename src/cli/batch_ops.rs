//! `rekey export batch-ops` and `rekey import batch-ops`: their arguments and what they
//! print. The hand-off itself (manifests, job requests, submission, completion reports)
//! is [`crate::batch_ops`].

use super::usage_error;
use crate::batch_ops::cost::{EstimateCostsExt, RouteCosts};
use crate::batch_ops::export::{self, ExportSource, Selection, WrittenJob};
use crate::batch_ops::import::{fold_reports, ImportTally};
use crate::batch_ops::job::JobSettings;
use crate::batch_ops::select::LeftForRun;
use crate::batch_ops::submit::{submit, SubmitTarget};
use crate::inventory::BlobStore;
use crate::plan::stored::StoredPlan;
use crate::store::Checkpoint;
use crate::units::{human_bytes, thousands};
use anyhow::Result;
use clap::Args;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The checkpoint `rekey plan` wrote.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// A new (or empty) directory for the manifests and CreateJob requests.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The IAM role Batch Operations assumes (arn:aws:iam::ACCOUNT:role/NAME).
    #[arg(long, value_name = "ARN")]
    pub role_arn: String,
    /// The account that owns the jobs (12 digits).
    #[arg(long, value_name = "ID")]
    pub account_id: String,
    /// The bucket for the uploaded manifests and the completion reports (default: the
    /// plan's source bucket).
    #[arg(long, value_name = "BUCKET")]
    pub report_bucket: Option<String>,
    /// The jobs' priority (higher runs first).
    #[arg(long, default_value_t = 10)]
    pub priority: i32,
    /// Upload the manifests to --report-bucket and create the jobs with S3 Control
    /// CreateJob; each job still waits for confirmation.
    #[arg(long, requires = "report_bucket")]
    pub submit: bool,
    /// With --submit: the S3 Control endpoint, used exactly as given (default: AWS's, for
    /// the key's region and --account-id).
    #[arg(long, value_name = "URL", requires = "submit")]
    pub s3control_endpoint_url: Option<String>,
    /// With --submit: where to upload the manifests (S3 endpoint, region).
    #[command(flatten)]
    pub connect: super::connect::ConnectArgs,
}

impl ExportArgs {
    /// The account id and role ARN are checked before anything is read: a typo is a
    /// usage error (exit 2).
    fn check(&self) -> Result<()> {
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(usage_error(format!("--account-id '{}': an AWS account id is 12 digits", self.account_id)));
        }
        let r = &self.role_arn;
        if !(r.starts_with("arn:") && r.contains(":iam::") && r.contains(":role/")) {
            return Err(usage_error(format!(
                "--role-arn '{r}': expected an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
            )));
        }
        Ok(())
    }
}

pub fn export(args: ExportArgs, runtime: &tokio::runtime::Runtime) -> Result<()> {
    args.check()?;
    let cp = Checkpoint::open(&args.state)?;
    let plan = StoredPlan::read(&cp)?;
    let source = ExportSource::from_plan(&plan, args.report_bucket.clone())?;
    let settings = JobSettings {
        account_id: args.account_id.clone(),
        role_arn: args.role_arn.clone(),
        priority: args.priority,
        kms_key_arn: source.kms_key_arn.clone(),
        bucket_key: plan.settings.bucket_key.unwrap_or(false),
        partition: source.partition.clone(),
        report_bucket: source.report_bucket.clone(),
        prefix: export::manifest_prefix(&args.state),
    };
    export::prepare_out_dir(&args.out)?;
    let Selection { manifests, left_for_run } = export::write_manifests(&cp, &args.out)?;
    let mut jobs = export::write_job_requests(&settings, manifests, &args.out)?;

    let mut head = summary(&args, &source, &jobs, &left_for_run);
    if jobs.is_empty() {
        head.push_str("nothing to export: no pending object fits a Batch Operations job\n");
        print!("{head}");
        return Ok(());
    }
    head.push_str(&route_costs(&source, &jobs));
    if !args.submit {
        head.push_str(&manual_steps(&args, &source, &settings.prefix, &jobs));
        print!("{head}");
        return Ok(());
    }
    print!("{head}");
    std::io::stdout().flush()?;
    let s3 = args.connect.settings(&plan.settings, &source.kms_key_arn);
    let target = SubmitTarget {
        s3: &s3,
        region: &source.region,
        s3control_endpoint_url: args.s3control_endpoint_url.as_deref(),
        bucket: &source.report_bucket,
    };
    let ids = runtime.block_on(submit(&target, &mut jobs))?;
    print_submitted(&args, &source, &settings.prefix, &ids);
    Ok(())
}

/// The export's first lines: the jobs, one a line, and what stays for `rekey run`.
fn summary(
    args: &ExportArgs,
    source: &ExportSource,
    jobs: &[WrittenJob],
    left_for_run: &BTreeMap<LeftForRun, u64>,
) -> String {
    let exported: u64 = jobs.iter().map(|j| j.manifest.objects).sum();
    let mut head = format!("{}: {} jobs for {} objects\n", args.out.display(), jobs.len(), thousands(exported));
    for job in jobs {
        let m = &job.manifest;
        head.push_str(&format!(
            "  {:<40} {:>14} objects {:>12}  {}{}  ${:.2}\n",
            job.name,
            thousands(m.objects),
            human_bytes(m.bytes),
            m.operation.label(),
            m.operation.storage_class().map(|c| format!(" to {c}")).unwrap_or_default(),
            source.estimate.line_cost(&m.by_line),
        ));
    }
    for (why, n) in left_for_run {
        head.push_str(&format!("  stays for `rekey run`: {} objects, {}\n", thousands(*n), why.reason()));
    }
    head
}

/// The exported objects' cost by either route, and the whole plan's from the estimate.
fn route_costs(source: &ExportSource, jobs: &[WrittenJob]) -> String {
    let exported: u64 = jobs.iter().map(|j| j.manifest.objects).sum();
    let local_usd: f64 = jobs.iter().map(|j| source.estimate.line_cost(&j.manifest.by_line)).sum();
    let costs = RouteCosts::new(&source.prices, local_usd, jobs.len(), exported);
    let prices = &source.prices;
    let mut out = format!(
        "cost of these objects: local route (rekey run) ${local_usd:.2}; Batch Operations route ${:.2} \
         (the same S3 and KMS requests ${local_usd:.2} + {} jobs x ${} + {} objects x ${} per million = ${:.2})\n",
        costs.batch_ops_usd(),
        jobs.len(),
        prices.batch_ops_per_job,
        thousands(exported),
        prices.batch_ops_per_million_objects,
        costs.fees_usd,
    );
    if let Some((total, alt)) = source.estimate.whole_plan() {
        out.push_str(&format!(
            "whole plan (the estimate): local ${total:.2}, all through Batch Operations in one job ${alt:.2}\n"
        ));
    }
    out
}

/// Without --submit: the commands that upload the manifests and create the jobs.
fn manual_steps(args: &ExportArgs, source: &ExportSource, prefix: &str, jobs: &[WrittenJob]) -> String {
    let mut out = format!(
        "upload the manifests, then create the jobs (each waits for confirmation):\n  \
         aws s3 cp {} s3://{}/{prefix}/ --recursive --exclude '*' --include '*.csv'\n",
        args.out.display(),
        source.report_bucket,
    );
    for job in jobs {
        out.push_str(&format!(
            "  aws s3control create-job --region {} --cli-input-json file://{}\n",
            source.region,
            job.job.display()
        ));
    }
    out.push_str(
        "the manifest ETag in each job is the MD5 of the file as written: upload it unchanged (a single-part \
         upload keeps that ETag). Do not run `rekey run` on this plan while the jobs run; afterwards fold \
         the completion reports in with `rekey import batch-ops`.\n",
    );
    out
}

fn print_submitted(args: &ExportArgs, source: &ExportSource, prefix: &str, ids: &[(String, String)]) {
    println!("created {} jobs, each waiting for confirmation (Batch Operations console, or", ids.len());
    println!(
        "  aws s3control update-job-status --region {} --account-id {} --requested-job-status Ready --job-id ID):",
        source.region, args.account_id
    );
    for (name, id) in ids {
        println!("  JobId {id}  {name}");
    }
    println!(
        "do not run `rekey run` on this plan while the jobs run; afterwards fold the completion reports in with \
         `rekey import batch-ops --state {} s3://{}/{prefix}/reports/...`",
        args.state.display(),
        source.report_bucket
    );
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The checkpoint the jobs were exported from.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Completion-report CSV files (the `results/*.csv` of a job's report), local or `s3://`.
    #[arg(required = true, value_name = "REPORT")]
    pub reports: Vec<String>,
    #[command(flatten)]
    pub connect: super::connect::ConnectArgs,
}

pub fn import(args: ImportArgs, runtime: &tokio::runtime::Runtime) -> Result<()> {
    let cp = Checkpoint::open(&args.state)?;
    let plan = StoredPlan::read(&cp)?;
    let blobs = if args.reports.iter().any(|r| r.starts_with("s3://")) {
        let s3 = args.connect.settings(&plan.settings, plan.run.kms_key_arn.as_deref().unwrap_or(""));
        Some(crate::s3::S3Blobs::new(runtime.block_on(crate::s3::build_client(&s3))?, runtime.handle().clone()))
    } else {
        None
    };
    let blobs = blobs.as_ref().map(|b| b as &dyn BlobStore);
    let tally = fold_reports(&cp, &args.reports, blobs, plan.run.kms_key_arn.as_deref())?;
    print_import(&args, &tally);
    Ok(())
}

fn print_import(args: &ImportArgs, tally: &ImportTally) {
    for (report, rows) in &tally.rows {
        println!("{report}: {} rows", thousands(*rows));
    }
    for (what, n) in &tally.effects {
        println!("  {what:<36} {:>14}", thousands(*n));
    }
    if tally.unknown_total > 0 {
        eprintln!(
            "rekey: {} reported objects are not planned objects of {} (first {}):",
            thousands(tally.unknown_total),
            args.state.display(),
            tally.unknown.len()
        );
        for u in &tally.unknown {
            eprintln!("  {u}");
        }
    }
}
