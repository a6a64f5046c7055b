//! The `rekey` binary: parse, run, and turn any error into one line and an exit code
//! (`rekey::cli::ExitCode`: 1, or the one a command chose; 2 is clap's usage error).
//! Everything else lives in the library (`src/lib.rs`).

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = rekey::cli::Cli::parse();
    rekey::cli::logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rekey: error: cannot start the async runtime: {e}");
            return ExitCode::from(rekey::cli::ExitCode::Error.code());
        }
    };
    match rekey::cli::run(cli, &runtime) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(usage) = e.downcast_ref::<clap::Error>() {
                usage.exit();
            }
            // One line, whatever the cause carries (keys may hold newlines).
            let msg = format!("{e:#}").replace('\r', "\\r").replace('\n', "\\n");
            eprintln!("rekey: error: {msg}");
            ExitCode::from(rekey::cli::exit::code_of(&e).code())
        }
    }
}
