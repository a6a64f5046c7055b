//! `rekey preflight`: the checks `rekey run` makes before the first object.
//! (Being written: see issue "fidelity".)

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct PreflightArgs {
    /// The checkpoint `rekey plan` wrote.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
}

pub fn run(_args: PreflightArgs, _runtime: &tokio::runtime::Runtime) -> Result<()> {
    bail!("rekey preflight is not built yet")
}
