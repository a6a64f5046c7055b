//! Where to reach S3 for the commands that work on a checkpoint (`run`, `preflight`,
//! `verify`): the plan's settings, overridden by these flags.

use super::settings::{KeyArn, PlanSettings};
use crate::s3::S3Settings;
use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct ConnectArgs {
    /// A custom S3 endpoint (default: the plan's, then AWS_ENDPOINT_URL).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// The bucket's region (default: the plan's, then the key's).
    #[arg(long)]
    pub region: Option<String>,
    /// Virtual-hosted addressing with a custom endpoint.
    #[arg(long)]
    pub virtual_host: bool,
    /// Accept a plain-http endpoint on a host other than loopback.
    #[arg(long)]
    pub allow_http: bool,
    /// Seconds to wait for an answer before the attempt counts as a transient failure and
    /// is retried (default 60).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub request_timeout: Option<std::time::Duration>,
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 3600.0 => Ok(std::time::Duration::from_secs_f64(secs)),
        _ => Err(format!("{s:?} is not a number of seconds between 0 and 3600")),
    }
}

impl ConnectArgs {
    /// Flags over the plan; the region falls back to the key ARN's, then us-east-1.
    pub fn settings(&self, plan: &PlanSettings, key: &str) -> S3Settings {
        let key_region = KeyArn::parse(key).ok().map(|k| k.region);
        S3Settings {
            region: Some(
                self.region.clone().or(plan.region.clone()).or(key_region).unwrap_or_else(|| "us-east-1".into()),
            ),
            endpoint_url: self.endpoint_url.clone().or(plan.endpoint_url.clone()),
            virtual_host: self.virtual_host || plan.virtual_host.unwrap_or(false),
            allow_http: self.allow_http || plan.allow_http.unwrap_or(false),
            request_timeout: self.request_timeout,
        }
    }
}
