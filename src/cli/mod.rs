//! Commands and their output. `main.rs` parses [`Cli`] and calls [`run`].
//!
//! * [`settings`]: the options of `estimate` and `plan`, from flags and job files.
//! * [`plan_cmd`]: `estimate` and `plan`.
//! * [`job`]: `estimate` and `plan` of a job file listing several inventories.
//! * [`run_cmd`]: `run` and `status`.
//! * [`preflight_cmd`]: the checks before the first object, alone or as part of `run`.
//! * [`verify_cmd`]: `verify`, HEAD the done objects and record a verdict.
//! * [`report_cmd`]: `report`, every object's outcome to a file, and a summary.
//! * [`batch_ops`]: `export batch-ops` and `import batch-ops`, the S3 Batch Operations hand-off.
//! * [`demo`]: `rekey demo`, the whole job on generated data.
//! * [`output`]: table, JSON and CSV renderings of an estimate.

pub mod batch_ops;
pub mod connect;
pub mod demo;
pub mod job;
pub mod logging;
pub mod output;
pub mod plan_cmd;
pub mod preflight_cmd;
pub use crate::private_file;
pub mod report_cmd;
pub mod run_cmd;
pub mod settings;
pub mod verify_cmd;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "rekey",
    version,
    about = "Re-encrypt S3 objects from SSE-S3 (or none) to SSE-KMS in place, planned from S3 Inventory."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read an inventory and print what re-encrypting it would cost and how long it would take.
    Estimate(PlanArgs),
    /// As estimate, and write every object's fate into a SQLite checkpoint for `rekey run`.
    Plan(PlanArgs),
    /// Execute a plan: re-encrypt every pending object, resuming where the last run stopped.
    Run(run_cmd::RunArgs),
    /// Check the key, the bucket and the permissions before a run, touching no object.
    Preflight(preflight_cmd::PreflightArgs),
    /// HEAD the done objects (or a sample) and record whether each is as planned.
    Verify(verify_cmd::VerifyArgs),
    /// Counts, rate, throttles and ETA of a plan, also while `rekey run` is running.
    Status(run_cmd::StatusArgs),
    /// Generate a realistic inventory (100k rows) and plan it: the whole job, locally.
    Demo(demo::DemoArgs),
    /// Write every object's outcome to a file (Batch Operations report, CSV or JSON Lines).
    Report(report_cmd::ReportArgs),
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
    BatchOps(batch_ops::ExportArgs),
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Mark objects done or failed from S3 Batch Operations completion reports.
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
        Command::Run(args) => run_cmd::run(args, runtime),
        Command::Status(args) => run_cmd::status(args),
        Command::Preflight(args) => preflight_cmd::run(args, runtime),
        Command::Verify(args) => verify_cmd::run(args, runtime),
        Command::Demo(args) => demo::run(args, runtime),
        Command::Report(args) => report_cmd::run(args),
        Command::Export(ExportCommand::BatchOps(args)) => batch_ops::export(args, runtime),
        Command::Import(ImportCommand::BatchOps(args)) => batch_ops::import(args, runtime),
    }
}

/// An error that ends the process with a specific exit code (see `run_cmd`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn new(code: u8, message: String) -> Exit {
        Exit { code, message }
    }
}
