//! The run's settings, drawn from the plan in one place: [`RunConfig::from_plan`].
//!
//! A run does what its estimate costed: the key, the Bucket Key, the KMS quota and share,
//! and the S3 rate come from the plan in the checkpoint. [`RunOverrides`] are what the
//! operator may change for this run alone (pacing, retries, what copies keep), with the
//! run defaults in its `Default`: `rekey run`, the pre-flight canary and the demo all
//! start from it, so a default is written once.

use super::progress::ProgressMode;
use super::redecide::Redecide;
use super::task::Fidelity;
use super::{FailureBudget, RetryPolicy, RunConfig};
use crate::plan::settings::{DEFAULT_KMS_SHARE, DEFAULT_S3_RPS};
use crate::plan::stored::{StoredPlan, StoredPlanError};
use crate::plan::{KmsQuota, KmsSources};
use std::time::Duration;

/// Attempts per object in one run, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// Failed objects after which a run stops (`--max-failures`).
pub const DEFAULT_MAX_FAILURES: &str = "1%";
/// Seconds in-flight requests may take to finish after Ctrl-C.
pub const DEFAULT_DRAIN_SECS: u64 = 30;

/// What one run may change of the plan's settings.
#[derive(Debug, Clone)]
pub struct RunOverrides {
    /// KMS requests per second (default: the plan's quota × share).
    pub kms_rps: Option<f64>,
    /// The KMS rate slow start opens at (default: a sixteenth of the KMS rate; at or above
    /// it, no slow start).
    pub kms_start_rps: Option<f64>,
    /// S3 requests per second (default: the plan's).
    pub s3_rps: Option<f64>,
    pub concurrency: Option<usize>,
    pub max_attempts: u32,
    pub max_failures: FailureBudget,
    pub drain_timeout: Duration,
    pub fidelity: Fidelity,
    pub part_size: Option<u64>,
    pub progress: ProgressMode,
}

impl Default for RunOverrides {
    fn default() -> Self {
        RunOverrides {
            kms_rps: None,
            kms_start_rps: None,
            s3_rps: None,
            concurrency: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_failures: FailureBudget::parse(DEFAULT_MAX_FAILURES).expect("the default budget parses"),
            drain_timeout: Duration::from_secs(DEFAULT_DRAIN_SECS),
            fidelity: Fidelity::default(),
            part_size: None,
            progress: ProgressMode::Quiet,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunConfigError {
    #[error(transparent)]
    Plan(#[from] StoredPlanError),
    #[error("{name} {value}: must be a positive number")]
    NotPositive { name: &'static str, value: f64 },
    #[error("--max-attempts 0: at least one attempt is needed")]
    NoAttempts,
    #[error("--concurrency 0: at least one request must be in flight")]
    NoConcurrency,
    /// S3's part-size bounds (docs/s3-facts.md §5): 5 MiB to 5 GiB.
    #[error("--part-size {0}: must be between 5MiB and 5GiB (S3's part-size limits)")]
    PartSize(u64),
}

impl RunConfig {
    /// The settings of a run of `plan` in `region` (the S3 settings' region: the key's,
    /// unless the flags say otherwise), with `o` applied.
    pub fn from_plan(plan: &StoredPlan, region: &str, o: &RunOverrides) -> Result<RunConfig, RunConfigError> {
        let key = plan.key_arn()?.to_string();
        let s = &plan.settings;
        let quota = match s.kms_quota {
            Some(q) => KmsQuota { rps: q, source: "--kms-quota" },
            None => KmsQuota::for_region(region),
        };
        let kms_rps = o.kms_rps.unwrap_or(quota.rps * s.kms_share.unwrap_or(DEFAULT_KMS_SHARE));
        let s3_rps = o.s3_rps.or(s.s3_rps).unwrap_or(DEFAULT_S3_RPS);
        let start = o.kms_start_rps.unwrap_or(1.0);
        for (name, value) in [("--kms-rps", kms_rps), ("--s3-rps", s3_rps), ("--kms-start-rps", start)] {
            if !value.is_finite() || value <= 0.0 {
                return Err(RunConfigError::NotPositive { name, value });
            }
        }
        if o.max_attempts == 0 {
            return Err(RunConfigError::NoAttempts);
        }
        if o.concurrency == Some(0) {
            return Err(RunConfigError::NoConcurrency);
        }
        if let Some(p) = o.part_size.filter(|p| !(5 << 20..=5 << 30).contains(p)) {
            return Err(RunConfigError::PartSize(p));
        }
        let bucket_key = s.bucket_key.unwrap_or(false);
        let mut cfg = RunConfig::new(plan.path.clone(), key);
        cfg.bucket_key = bucket_key;
        cfg.kms_sources = match (&s.from_key, s.rekey_kms) {
            (_, Some(true)) => KmsSources::Any,
            (Some(keys), _) if !keys.is_empty() => KmsSources::FromKeys(keys.clone()),
            _ => KmsSources::None,
        };
        cfg.kms_per_write = if bucket_key { 1.0 - plan.prices.bucket_key_reduction } else { 1.0 };
        cfg.kms_rps = kms_rps;
        cfg.kms_start_rps = o.kms_start_rps;
        cfg.s3_rps = s3_rps;
        cfg.concurrency = o.concurrency;
        cfg.policy = RetryPolicy { max_attempts: o.max_attempts, ..RetryPolicy::default() };
        cfg.max_failures = o.max_failures;
        cfg.drain_timeout = o.drain_timeout;
        cfg.fidelity = o.fidelity;
        cfg.part_size = o.part_size;
        cfg.progress = o.progress;
        // A plan whose objects' encryption nobody read (a live listing, or
        // --assume-encryption) is checked object by object (exec::redecide).
        if s.is_listing() || s.assume_encryption.is_some() {
            cfg.redecide = Some(Redecide { classify: s.classify_options(), head_first: s.run_heads_first() });
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::settings::PlanSettings;
    use crate::plan::stored::StoredEstimate;
    use crate::plan::PriceTable;
    use crate::store::RunRecord;

    fn plan(settings: PlanSettings, key: Option<&str>) -> StoredPlan {
        StoredPlan {
            path: "p.rekey".into(),
            run: RunRecord {
                inventory_source: "manifest.json".into(),
                inventory_created: None,
                source_bucket: Some("b".into()),
                kms_key_arn: key.map(str::to_string),
                options_json: "{}".into(),
                prices_json: "{}".into(),
                estimate_json: "{}".into(),
            },
            settings,
            prices: PriceTable::default(),
            estimate: StoredEstimate::default(),
        }
    }
    const KEY: &str = "arn:aws:kms:us-east-2:111122223333:key/k";

    #[test]
    fn a_plain_plan_runs_at_its_regions_quota_share_and_the_s3_floor() {
        let cfg =
            RunConfig::from_plan(&plan(PlanSettings::default(), Some(KEY)), "us-east-2", &RunOverrides::default())
                .unwrap();
        assert_eq!((cfg.kms_rps, cfg.s3_rps), (20_000.0 * DEFAULT_KMS_SHARE, DEFAULT_S3_RPS));
        assert_eq!((cfg.key_arn.as_str(), cfg.bucket_key, cfg.kms_per_write), (KEY, false, 1.0));
        assert_eq!(cfg.policy.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(cfg.max_failures, FailureBudget::Percent(1.0));
        assert_eq!(cfg.state, std::path::PathBuf::from("p.rekey"));
    }

    #[test]
    fn the_plans_pacing_and_bucket_key_are_kept_and_the_flags_win() {
        let s = PlanSettings {
            kms_quota: Some(400.0),
            kms_share: Some(0.25),
            s3_rps: Some(50.0),
            bucket_key: Some(true),
            ..PlanSettings::default()
        };
        let p = plan(s, Some(KEY));
        let cfg = RunConfig::from_plan(&p, "us-east-2", &RunOverrides::default()).unwrap();
        assert_eq!((cfg.kms_rps, cfg.s3_rps, cfg.bucket_key), (100.0, 50.0, true));
        assert!((cfg.kms_per_write - (1.0 - p.prices.bucket_key_reduction)).abs() < 1e-12);
        let o = RunOverrides { kms_rps: Some(7.0), s3_rps: Some(9.0), concurrency: Some(3), ..RunOverrides::default() };
        let cfg = RunConfig::from_plan(&p, "us-east-2", &o).unwrap();
        assert_eq!((cfg.kms_rps, cfg.s3_rps, cfg.concurrency), (7.0, 9.0, Some(3)));
    }

    #[test]
    fn impossible_settings_are_refused_by_name() {
        let p = plan(PlanSettings::default(), Some(KEY));
        let err = |o: RunOverrides| RunConfig::from_plan(&p, "us-east-1", &o).unwrap_err().to_string();
        assert!(err(RunOverrides { kms_rps: Some(0.0), ..Default::default() }).starts_with("--kms-rps 0"));
        assert!(err(RunOverrides { s3_rps: Some(f64::NAN), ..Default::default() }).starts_with("--s3-rps NaN"));
        assert!(err(RunOverrides { kms_start_rps: Some(-1.0), ..Default::default() }).starts_with("--kms-start-rps -1"));
        assert!(err(RunOverrides { max_attempts: 0, ..Default::default() }).starts_with("--max-attempts 0"));
        assert!(err(RunOverrides { concurrency: Some(0), ..Default::default() }).starts_with("--concurrency 0"));
        assert!(err(RunOverrides { part_size: Some(1 << 20), ..Default::default() }).starts_with("--part-size 1048576"));
        let keyless = plan(PlanSettings::default(), None);
        let e = RunConfig::from_plan(&keyless, "us-east-1", &RunOverrides::default()).unwrap_err().to_string();
        assert!(e.contains("no KMS key"), "{e}");
    }
}
