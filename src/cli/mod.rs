//! Commands and their output. `main.rs` parses [`Cli`] and calls [`run`].
//!
//! * [`settings`]: the options of `estimate` and `plan`, from flags and job files.
//! * [`plan_cmd`]: `estimate` and `plan`.
//! * [`job`]: `estimate` and `plan` of a job file listing several inventories.
//! * [`run_cmd`]: `run` and `status`.
//! * [`preflight_cmd`]: the checks before the first object, alone or as part of `run`.
//! * [`verify_cmd`]: `verify`, HEAD the done objects and record a verdict.
//! * [`report_cmd`]: `report`, every object's outcome to a file, and a summary.
//! * [`finish_cmd`]: `finish`, the bucket's default encryption (and policy) after its objects.
//! * [`batch_ops`]: `export batch-ops` and `import batch-ops`, the S3 Batch Operations hand-off.
//! * [`demo`]: `rekey demo`, the whole job on generated data.
//! * [`output`]: table, JSON and CSV renderings of an estimate.

pub mod batch_ops;
pub mod connect;
pub mod demo;
pub mod exit;
pub mod finish_cmd;
pub mod job;
pub mod logging;
pub mod output;
pub mod plan_cmd;
pub mod preflight_cmd;
pub use crate::private_file;
pub mod report_cmd;
pub mod run_cmd;
pub mod verify_cmd;

/// The plan's options live with the plan; the commands parse them as flags.
pub use crate::plan::settings;
pub use exit::{usage_error, Exit, ExitCode};

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// The key ARN the help's examples use.
macro_rules! example_key {
    () => {
        "arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"
    };
}

#[derive(Debug, Parser)]
#[command(
    name = "rekey",
    version,
    about = "Re-encrypt S3 objects from SSE-S3 (or none) to SSE-KMS in place, planned from S3 Inventory.",
    after_help = "The whole job, in order:
  rekey estimate  --inventory manifest.json --kms-key KEY       what it costs, how long it takes
  rekey plan      --inventory manifest.json --kms-key KEY --state m.rekey
  rekey preflight --state m.rekey                               key, bucket, permissions
  rekey run       --state m.rekey                               Ctrl-C stops; run again resumes
  rekey status    --state m.rekey                               from another shell
  rekey verify    --state m.rekey
  rekey report    --state m.rekey --out report.csv
  rekey finish    --state m.rekey [--enforce] [--dry-run]      the bucket's default encryption

Try it locally first: rekey demo (an S3/KMS emulator on this machine). Exit codes: see the README."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read an inventory and print what re-encrypting it would cost and how long it would take.
    #[command(after_help = concat!("Example:\n  rekey estimate --inventory s3://inv/src/daily/2026-11-24T01-00Z/manifest.json --kms-key ", example_key!(), " --bucket-key --format json"))]
    Estimate(PlanArgs),
    /// As estimate, and write every object's fate into a SQLite checkpoint for `rekey run`.
    #[command(after_help = concat!("Example:\n  rekey plan --inventory ./inventory/manifest.json --kms-key ", example_key!(), " --state migration.rekey"))]
    Plan(PlanArgs),
    /// Execute a plan: re-encrypt every pending object, resuming where the last run stopped.
    #[command(after_help = "Example:\n  rekey run --state migration.rekey --concurrency 128")]
    Run(run_cmd::RunArgs),
    /// Check the key, the bucket and the permissions before a run, touching no object.
    #[command(after_help = "Example:\n  rekey preflight --state migration.rekey --canary")]
    Preflight(preflight_cmd::PreflightArgs),
    /// HEAD the done objects (or a sample) and record whether each is as planned.
    #[command(after_help = "Example:\n  rekey verify --state migration.rekey --sample 1000 --format json")]
    Verify(verify_cmd::VerifyArgs),
    /// Counts, rate, throttles and ETA of a plan, also while `rekey run` is running.
    #[command(after_help = "Example:\n  rekey status --state migration.shard-*-of-4.rekey")]
    Status(run_cmd::StatusArgs),
    /// The whole job against a local S3/KMS emulator: generate, plan, run, verify.
    #[command(after_help = "Example:\n  rekey demo --objects 500 --keep /tmp/rekey-demo")]
    Demo(demo::DemoArgs),
    /// Write every object's outcome to a file (Batch Operations report, CSV or JSON Lines).
    #[command(after_help = "Example:\n  rekey report --state migration.rekey --out failed.csv --only failed")]
    Report(report_cmd::ReportArgs),
    /// The bucket after its objects: its default encryption to the key (and, with --enforce,
    /// a policy statement requiring it).
    #[command(after_help = "Example:\n  rekey finish --state migration.rekey --enforce --dry-run")]
    Finish(finish_cmd::FinishArgs),
    /// Hand the pending objects to another engine.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Fold another engine's results back into the checkpoint.
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Manifests and CreateJob requests for S3 Batch Operations.
    #[command(
        after_help = "Example:\n  rekey export batch-ops --state migration.rekey --out jobs/ --account-id 111122223333 \\\n      --role-arn arn:aws:iam::111122223333:role/rekey --report-bucket reports-bucket"
    )]
    BatchOps(batch_ops::ExportArgs),
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Mark objects done or failed from S3 Batch Operations completion reports.
    #[command(after_help = "Example:\n  rekey import batch-ops --state migration.rekey results/*.csv")]
    BatchOps(batch_ops::ImportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// A job file (jobs/NAME.toml) holding these settings; flags override it.
    #[arg(long, value_name = "FILE")]
    pub job: Option<PathBuf>,
    #[command(flatten)]
    pub settings: settings::PlanSettings,
}

/// Run one command. Async work (S3) runs on `runtime`; the planner's threads are plain
/// threads, so this function is called from outside the runtime.
pub fn run(cli: Cli, runtime: &tokio::runtime::Runtime) -> Result<()> {
    match cli.command {
        Command::Estimate(args) => plan_cmd::run(args, plan_cmd::Mode::Estimate, runtime).map(|_| ()),
        Command::Plan(args) => plan_cmd::run(args, plan_cmd::Mode::Plan, runtime).map(|_| ()),
        Command::Run(args) => run_cmd::run(args),
        Command::Status(args) => run_cmd::status(args),
        Command::Preflight(args) => preflight_cmd::run(args, runtime),
        Command::Verify(args) => verify_cmd::run(args, runtime),
        Command::Demo(args) => demo::run(args, runtime),
        Command::Report(args) => report_cmd::run(args),
        Command::Finish(args) => finish_cmd::run(args, runtime),
        Command::Export(ExportCommand::BatchOps(args)) => batch_ops::export(args, runtime),
        Command::Import(ImportCommand::BatchOps(args)) => batch_ops::import(args, runtime),
    }
}
