//! `rekey verify`: HEAD done objects and record a verdict for each.
//! (Being written: see issue "fidelity".)

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The checkpoint `rekey plan` wrote and `rekey run` filled.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Check a random sample of N done objects instead of all of them.
    #[arg(long, value_name = "N")]
    pub sample: Option<u64>,
}

pub fn run(_args: VerifyArgs, _runtime: &tokio::runtime::Runtime) -> Result<()> {
    bail!("rekey verify is not built yet")
}
