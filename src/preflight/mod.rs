//! The checks `rekey run` makes before the first object (also `rekey preflight` alone).
//!
//! * [`key`]: the KMS key (DescribeKey): it exists, is Enabled, SYMMETRIC_DEFAULT and
//!   ENCRYPT_DECRYPT.
//! * [`location`]: the bucket is in the key's region (GetBucketLocation) and, when `update`
//!   objects are planned, belongs to the key's account (GetBucketLocation with
//!   ExpectedBucketOwner set to the key's account).
//! * [`settings`]: bucket facts that change the plan: versioning against the estimate's
//!   assumption, default encryption (so new writes stop arriving as SSE-S3), object ownership.
//! * [`canary`]: the engine migrates the first object still to do of each method, and each
//!   is HEAD-checked for `aws:kms` under the key.
//! * [`access`]: who will lose access once the objects are under the key: readers the bucket
//!   policy or ACL names that the key policy does not let decrypt, the AWS managed key with
//!   readers outside its account, replication rules that skip SSE-KMS objects. Warnings,
//!   failures under `--strict`. [`policy`] reads the policy documents.
//! * [`facts`]: what the checks need to know about a plan, read from its checkpoint.
//! * [`causes`]: what an error code or an AccessDenied message says about the cause.
//!
//! Reads only, except the canary. The checks go through [`BucketApi`], so they run on the
//! in-process fake as on AWS. A failed check ([`Verdict::Fail`]) stops `rekey run` before
//! any object is touched (the canary touches one per method); warnings are printed and the
//! run goes on.

pub mod access;
pub mod canary;
pub mod causes;
pub mod facts;
pub mod key;
pub mod location;
pub mod policy;
pub mod settings;
#[cfg(test)]
mod tests;

pub use canary::canary;
pub use causes::likely_cause;
pub use facts::PlanFacts;

use crate::exec::{RunConfig, Stopper};
use crate::plan::classify::Method;
use crate::s3::{build_kms_client, BucketApi, S3Settings, SdkBucketApi};
use anyhow::Result;
use std::fmt;
use std::path::{Path, PathBuf};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// Worth knowing (often a cost), but the run can go on.
    Warn,
    /// The run would fail or do the wrong thing: `rekey run` stops (exit 7).
    Fail,
}

/// Which part of the pre-flight a check belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    /// Can the run work: the key, the bucket, its settings, the canary.
    Setup,
    /// Who will lose access once the objects are under the key ([`access`]): warnings that
    /// `--strict` turns into failures.
    Access,
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub verdict: Verdict,
    pub section: Section,
    /// A short label: "KMS key", "bucket region", "canary update", ...
    pub title: String,
    /// One self-contained sentence: what was found, and for a problem, what to do.
    pub detail: String,
}

impl Check {
    pub fn new(verdict: Verdict, title: &str, detail: impl Into<String>) -> Check {
        Check { verdict, section: Section::Setup, title: title.into(), detail: detail.into() }
    }

    /// A check of the access section.
    pub fn access(verdict: Verdict, title: &str, detail: impl Into<String>) -> Check {
        Check { section: Section::Access, ..Check::new(verdict, title, detail) }
    }

    /// The checklist line, without indentation.
    pub fn line(&self) -> String {
        let mark = match self.verdict {
            Verdict::Ok => "✔",
            Verdict::Warn => "!",
            Verdict::Fail => "✘",
        };
        format!("{mark} {}: {}", self.title, self.detail)
    }
}

/// The failed checks in one line, if any failed.
pub fn failures(checks: &[Check]) -> Option<String> {
    let f: Vec<String> =
        checks.iter().filter(|c| c.verdict == Verdict::Fail).map(|c| format!("{}: {}", c.title, c.detail)).collect();
    (!f.is_empty()).then(|| f.join("; "))
}

pub fn warnings(checks: &[Check]) -> usize {
    checks.iter().filter(|c| c.verdict == Verdict::Warn).count()
}

/// `--strict`: every warning of the access section becomes a failure, so nobody loses
/// access to the bucket's objects unless the run was told it may happen.
pub fn strict(checks: &mut [Check]) {
    for c in checks.iter_mut().filter(|c| c.section == Section::Access && c.verdict == Verdict::Warn) {
        c.verdict = Verdict::Fail;
        c.detail.push_str(" (--strict)");
    }
}

/// The checks that touch no object: the key, and each bucket's region, owner, versioning,
/// default encryption and object ownership, then who would lose access to it.
pub async fn preflight(api: &impl BucketApi, facts: &PlanFacts) -> Vec<Check> {
    let mut checks = vec![key::check_key(api, facts).await];
    let mut key = access::KeyView::default();
    if facts.buckets.is_empty() {
        checks.push(Check::new(Verdict::Warn, "bucket", "the plan names no bucket: nothing to check"));
    }
    for bucket in &facts.buckets {
        let (region, answered) = location::check_region(api, facts, bucket).await;
        let stop = region.verdict == Verdict::Fail;
        checks.push(region);
        if stop {
            // No such bucket, or the wrong region for the key: the run cannot start, and
            // the bucket's other facts (read through another region) would be noise.
            continue;
        }
        if facts.planned(Method::Update) > 0 {
            checks.push(if answered {
                location::check_owner(api, facts, bucket).await
            } else {
                Check::new(
                    Verdict::Warn,
                    "bucket owner",
                    format!("bucket {bucket}: unchecked, GetBucketLocation did not answer"),
                )
            });
        }
        checks.push(settings::check_versioning(api, facts, bucket).await);
        checks.extend(settings::check_replaced_versions(api, facts, bucket).await);
        checks.push(settings::check_default_encryption(api, facts, bucket).await);
        checks.push(settings::check_ownership(api, facts, bucket).await);
        checks.extend(access::check_access(api, facts, bucket, &mut key).await);
    }
    checks
}

/// The settings of the KMS client: DescribeKey in the key's own region, whatever region
/// S3 is reached in.
pub fn kms_settings(s3: &S3Settings, facts: &PlanFacts) -> S3Settings {
    S3Settings { region: facts.key_region.clone().or(s3.region.clone()), ..s3.clone() }
}

/// S3 is reached through a custom endpoint (an emulator or an S3-compatible store).
pub fn custom_endpoint(s3: &S3Settings) -> bool {
    s3.endpoint_url.is_some()
        || ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

/// Why the pre-flight of a run refused to let it start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// A check failed: no object was touched.
    Checks { state: PathBuf, failures: String },
    /// A canary failed: `done` canary objects were re-encrypted, nothing else.
    Canary { state: PathBuf, done: usize, failures: String },
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Checks { state, failures } => write!(
                f,
                "pre-flight failed, no object was touched: {failures}. Fix it and run `rekey run --state {}` again (--skip-preflight runs without these checks)",
                state.display()
            ),
            Refused::Canary { state, done, failures } => write!(
                f,
                "pre-flight canary failed ({done} canary objects re-encrypted, nothing else touched): {failures}. Fix it and run `rekey run --state {}` again",
                state.display()
            ),
        }
    }
}

impl std::error::Error for Refused {}

/// The plan's facts, and the reads of its checks over the SDK (KMS in the key's region).
pub async fn connect(
    s3: &aws_sdk_s3::Client,
    settings: &S3Settings,
    state: &Path,
) -> Result<(PlanFacts, SdkBucketApi)> {
    let facts = PlanFacts::load(state, custom_endpoint(settings))?;
    let kms = build_kms_client(&kms_settings(settings, &facts)).await?;
    Ok((facts, SdkBucketApi::new(s3, kms)))
}

/// The pre-flight of `rekey run`: the checks, then the canary. `show` is handed each
/// checklist as it is made. `Ok(Err(_))`: a check or a canary failed (with `strict`, an
/// access warning counts as a failure).
pub async fn before_run(
    api: &impl BucketApi,
    s3: &aws_sdk_s3::Client,
    cfg: &RunConfig,
    facts: &PlanFacts,
    stop: &Stopper,
    strict: bool,
    show: impl Fn(&[Check]),
) -> Result<Result<(), Refused>> {
    let mut checks = preflight(api, facts).await;
    if strict {
        self::strict(&mut checks);
    }
    show(&checks);
    if let Some(failures) = failures(&checks) {
        return Ok(Err(Refused::Checks { state: cfg.state.clone(), failures }));
    }
    let canary = canary(s3, cfg, facts, stop.clone()).await?;
    show(&canary);
    if let Some(failures) = failures(&canary) {
        let done = canary.iter().filter(|c| c.verdict == Verdict::Ok).count();
        return Ok(Err(Refused::Canary { state: cfg.state.clone(), done, failures }));
    }
    Ok(Ok(()))
}
