//! `rekey preflight`: the checks of [`crate::preflight`], alone or as the first step of
//! `rekey run`, printed as a checklist on stderr (`--format json`: a document on stdout).
//! A failed check ends with exit code 7; with `--strict`, so does an access warning (someone
//! who would lose access to the migrated objects).

use super::run_cmd::{config, RunArgs};
use super::{Exit, ExitCode};
use crate::exec::{RunConfig, Stopper};
use crate::preflight::{self, access, canary, failures, warnings, Check, Verdict};
use crate::s3::{build_client, S3Settings};
use crate::store::Checkpoint;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct PreflightArgs {
    /// The checkpoint `rekey plan` wrote.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Also migrate the first object still to do of each method and HEAD it (as `rekey run` does).
    #[arg(long)]
    pub canary: bool,
    /// Fail (exit 7) on access warnings too: readers who would lose access to the objects.
    #[arg(long)]
    pub strict: bool,
    /// `table`: the checklist on stderr; `json`: one document on stdout (rekey.preflight/1).
    #[arg(long, value_enum, default_value = "table")]
    pub format: PreflightFormat,
    #[command(flatten)]
    pub connect: super::connect::ConnectArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PreflightFormat {
    Table,
    Json,
}

/// Print a checklist on stderr: every line, or only the warnings (failures then make the
/// error line, so a quiet run does not say them twice).
pub fn print_checklist(checks: &[Check], all: bool) {
    for c in checks.iter().filter(|c| all || c.verdict == Verdict::Warn) {
        eprintln!("  {}", c.line());
    }
}

/// The pre-flight of `rekey run`: the checks, then the canary. Any failure ends with exit 7.
pub async fn before_run(
    s3: &aws_sdk_s3::Client,
    settings: &S3Settings,
    cfg: &RunConfig,
    verbose: bool,
    strict: bool,
    stop: &Stopper,
) -> Result<()> {
    let (facts, api) = preflight::connect(s3, settings, &cfg.state).await?;
    if verbose {
        eprintln!("rekey: pre-flight checks of {}", cfg.state.display());
    }
    let show = |checks: &[Check]| print_checklist(checks, verbose);
    match preflight::before_run(&api, s3, cfg, &facts, stop, strict, show).await? {
        Ok(()) => Ok(()),
        Err(refused) => Err(Exit::new(ExitCode::PreflightFailed, refused.to_string()).into()),
    }
}

/// The JSON document of `rekey preflight --format json`.
fn document(state: &std::path::Path, checks: &[Check], strict: bool) -> serde_json::Value {
    serde_json::json!({
        "format": "rekey.preflight/1",
        "state": state.display().to_string(),
        "strict": strict,
        "passed": failures(checks).is_none(),
        "failures": checks.iter().filter(|c| c.verdict == Verdict::Fail).count(),
        "warnings": warnings(checks),
        "checks": checks,
        "unseen": access::UNSEEN,
    })
}

/// `rekey preflight --state FILE [--canary] [--strict]`: exit 0 when every check passes
/// (warnings allowed, unless `--strict` and they are access warnings), 7 otherwise.
pub fn run(args: PreflightArgs, runtime: &tokio::runtime::Runtime) -> Result<()> {
    let mut run_args = RunArgs::defaults(&args.state);
    run_args.connect = args.connect.clone();
    // The canary's objects are judged by its checks, not stopped by a failure budget.
    run_args.max_failures = "100%".into();
    run_args.quiet = true;
    let cp = Checkpoint::open(&args.state)?;
    let (cfg, settings) = config(&run_args, &cp)?;
    drop(cp);
    let table = args.format == PreflightFormat::Table;
    runtime.block_on(async {
        let s3 = build_client(&settings).await?;
        let (facts, api) = preflight::connect(&s3, &settings, &args.state).await?;
        if table {
            eprintln!("rekey: pre-flight checks of {}", args.state.display());
        }
        let mut checks = preflight::preflight(&api, &facts).await;
        if args.strict {
            preflight::strict(&mut checks);
        }
        if table {
            print_checklist(&checks, true);
        }
        if args.canary && failures(&checks).is_none() {
            let canary = canary(&s3, &cfg, &facts, Stopper::default()).await?;
            if table {
                print_checklist(&canary, true);
            }
            checks.extend(canary);
        }
        if table {
            eprintln!("  · {}", access::UNSEEN);
        } else {
            println!("{}", serde_json::to_string_pretty(&document(&args.state, &checks, args.strict))?);
        }
        match failures(&checks) {
            Some(f) => Err(Exit::new(ExitCode::PreflightFailed, format!("pre-flight failed: {f}")).into()),
            None => {
                if table {
                    eprintln!("rekey: pre-flight passed ({} warnings)", warnings(&checks));
                }
                Ok(())
            }
        }
    })
}
