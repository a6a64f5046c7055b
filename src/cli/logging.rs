//! Diagnostic logging (`REKEY_LOG`, default `warn`) to stderr.
//!
//! Whatever `REKEY_LOG` asks for, the AWS SDK and the HTTP stack under it log at `info` at
//! most. Their debug and trace output prints credentials: the endpoint resolver logs its
//! parameters with the resolved identity (the access key id in the clear), identity
//! resolution logs the credentials, and the SigV4 signer its signing parameters. Logs are
//! pasted into tickets and chat; credentials must never be in them (tests/security.rs greps
//! a `REKEY_LOG=trace` run for the test credentials). rekey's own debug and trace events,
//! which never carry credentials, stay available.

use tracing_subscriber::EnvFilter;

/// Per-crate caps, each more specific than a bare level in `REKEY_LOG`, so they win.
const CREDENTIAL_BEARING_TARGETS: &[&str] = &[
    "aws_sigv4=off",
    "aws_credential_types=off",
    "aws_smithy_runtime=info",
    "aws_smithy_runtime_api=info",
    "aws_smithy_http_client=info",
    "aws_smithy_http=info",
    "aws_smithy_types=info",
    "aws_runtime=info",
    "aws_config=info",
    "aws_sdk_s3=info",
    "aws_sdk_kms=info",
    "aws_sdk_sts=info",
    "aws_sdk_sso=info",
    "aws_sdk_ssooidc=info",
    "hyper=info",
    "hyper_util=info",
    "hyper_rustls=info",
    "h2=info",
    "rustls=info",
];

/// The filter: `REKEY_LOG` (or `warn`) with the credential-bearing crates capped.
pub fn filter(spec: Option<&str>) -> EnvFilter {
    let base = spec.and_then(|s| EnvFilter::try_new(s).ok()).unwrap_or_else(|| EnvFilter::new("warn"));
    CREDENTIAL_BEARING_TARGETS.iter().fold(base, |f, d| f.add_directive(d.parse().expect("a valid directive")))
}

/// Install the stderr logger.
pub fn init() {
    let spec = std::env::var("REKEY_LOG").ok();
    tracing_subscriber::fmt()
        .with_env_filter(filter(spec.as_deref()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_silenced_target_parses_and_stays_off_under_trace() {
        let f = super::filter(Some("trace"));
        let shown = f.to_string();
        for d in super::CREDENTIAL_BEARING_TARGETS {
            assert!(shown.contains(d), "{d} missing from {shown}");
        }
    }
}
