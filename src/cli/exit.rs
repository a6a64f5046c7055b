//! How the process ends: one [`ExitCode`] per way a command can stop, documented in the
//! README. Code 2 is clap's alone: a command that finds a usage error after parsing
//! (two flags that contradict each other, a value only it can check) reports it through
//! clap with [`usage_error`], so it prints and exits as clap's own errors do.

use clap::CommandFactory;

/// The process exit codes. A stable interface: scripts branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything asked was done.
    Success,
    /// An error: bad input (the message names the file, line and field), an unreadable
    /// file, an AWS error before the first object.
    Error,
    /// A usage error, printed by clap.
    Usage,
    /// The circuit breaker opened: a permanent KMS or permission error mid-run.
    Breaker,
    /// More failed objects than `--max-failures`.
    TooManyFailures,
    /// The checkpoint could not be written or read.
    Checkpoint,
    /// `rekey verify` found objects not as planned.
    VerifyMismatch,
    /// A pre-flight check failed; nothing was touched but the canary objects.
    PreflightFailed,
    /// The run finished, but some objects failed (`rekey run` retries the retryable ones).
    SomeFailed,
    /// Interrupted (Ctrl-C or SIGTERM); `rekey run` resumes.
    Interrupted,
}

impl ExitCode {
    pub const ALL: [ExitCode; 10] = [
        ExitCode::Success,
        ExitCode::Error,
        ExitCode::Usage,
        ExitCode::Breaker,
        ExitCode::TooManyFailures,
        ExitCode::Checkpoint,
        ExitCode::VerifyMismatch,
        ExitCode::PreflightFailed,
        ExitCode::SomeFailed,
        ExitCode::Interrupted,
    ];

    pub fn code(self) -> u8 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Error => 1,
            ExitCode::Usage => 2,
            ExitCode::Breaker => 3,
            ExitCode::TooManyFailures => 4,
            ExitCode::Checkpoint => 5,
            ExitCode::VerifyMismatch => 6,
            ExitCode::PreflightFailed => 7,
            ExitCode::SomeFailed => 8,
            ExitCode::Interrupted => 130,
        }
    }
}

/// An error that ends the process with a chosen exit code (any other error is
/// [`ExitCode::Error`]).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: ExitCode,
    pub message: String,
}

impl Exit {
    pub fn new(code: ExitCode, message: String) -> Exit {
        debug_assert!(code != ExitCode::Usage, "usage errors go through usage_error, so clap prints them");
        Exit { code, message }
    }
}

/// A usage error found after parsing, as a clap error: `main` lets clap print it (with
/// the usage line) and exit 2.
pub fn usage_error(message: impl std::fmt::Display) -> anyhow::Error {
    super::Cli::command().error(clap::error::ErrorKind::ValueValidation, message).into()
}

/// The exit code for an error a command returned.
pub fn code_of(e: &anyhow::Error) -> ExitCode {
    e.downcast_ref::<Exit>().map(|x| x.code).unwrap_or(ExitCode::Error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_two_is_usage_only() {
        let codes: std::collections::BTreeSet<u8> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes.len(), ExitCode::ALL.len());
        assert_eq!(ExitCode::ALL.iter().filter(|c| c.code() == 2).collect::<Vec<_>>(), [&ExitCode::Usage]);
    }

    #[test]
    fn usage_errors_are_clap_errors_that_exit_2() {
        let e = usage_error("--account-id '1234': an AWS account id is 12 digits");
        let clap = e.downcast_ref::<clap::Error>().expect("a clap error");
        assert_eq!(clap.exit_code(), 2);
        assert!(clap.to_string().contains("--account-id '1234'"), "{clap}");
        assert_eq!(code_of(&anyhow::anyhow!("plain")), ExitCode::Error);
        assert_eq!(code_of(&Exit::new(ExitCode::SomeFailed, "x".into()).into()), ExitCode::SomeFailed);
    }
}
