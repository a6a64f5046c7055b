//! `rekey preflight`: the checks `rekey run` makes before the first object, alone or as
//! the first step of a run.
//!
//! * The KMS key (DescribeKey): it exists, is Enabled, SYMMETRIC_DEFAULT and
//!   ENCRYPT_DECRYPT, is in the bucket's region (GetBucketLocation), and, when `update`
//!   objects are planned, belongs to the bucket owner's account (GetBucketLocation with
//!   ExpectedBucketOwner set to the key's account).
//! * Bucket facts that change the plan: versioning against the estimate's assumption,
//!   default encryption (so new writes stop arriving as SSE-S3), object ownership.
//! * A canary (`rekey run`, and `rekey preflight --canary`): the engine migrates the first
//!   object still to do of each method, and each is HEAD-checked for `aws:kms` under the key.
//!
//! Reads only, except the canary. A failed check ([`Verdict::Fail`]) stops `rekey run`
//! with exit code 7 before any object is touched (the canary touches one per method);
//! warnings are printed and the run goes on.

use super::run_cmd::{config, likely_cause, RunArgs};
use super::settings::KeyArn;
use super::{Exit, ExitCode};
use crate::exec::progress::ProgressMode;
use crate::exec::{RunConfig, StopReason, Stopper};
use crate::inventory::StorageClass;
use crate::plan::classify::Method;
use crate::plan::PriceTable;
use crate::s3::object_store::same_kms_key;
use crate::s3::{build_client, build_kms_client, S3Settings, SdkStore};
use crate::store::{Checkpoint, TodoReader, WorkItem};
use anyhow::{Context, Result};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Args)]
pub struct PreflightArgs {
    /// The checkpoint `rekey plan` wrote.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Also migrate the first object still to do of each method and HEAD it (as `rekey run` does).
    #[arg(long)]
    pub canary: bool,
    #[command(flatten)]
    pub connect: super::connect::ConnectArgs,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Worth knowing (often a cost), but the run can go on.
    Warn,
    /// The run would fail or do the wrong thing: `rekey run` stops (exit 7).
    Fail,
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub verdict: Verdict,
    /// A short label: "KMS key", "bucket region", "canary update", ...
    pub title: String,
    /// One self-contained sentence: what was found, and for a problem, what to do.
    pub detail: String,
}

impl Check {
    fn new(verdict: Verdict, title: &str, detail: impl Into<String>) -> Check {
        Check { verdict, title: title.into(), detail: detail.into() }
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

/// What the checks need to know about a plan, read from its checkpoint.
#[derive(Debug, Clone)]
pub struct PlanFacts {
    pub state: PathBuf,
    pub key_arn: String,
    /// Region and account from the key's ARN (None if the ARN does not parse).
    pub key_region: Option<String>,
    pub key_account: Option<String>,
    /// The buckets of the planned objects (one for an S3 Inventory).
    pub buckets: Vec<String>,
    pub bucket_key: bool,
    /// The estimate's assumption.
    pub assumed_versioned: Option<bool>,
    /// The estimate's noncurrent storage of copies in a versioned bucket.
    pub noncurrent_usd_per_month: f64,
    /// Storage of the planned copies' old versions, per month, were the bucket versioned
    /// (sizes × storage price, before per-object minimums).
    pub copies_storage_usd_per_month: f64,
    /// Planned objects by method (`update`, `copy`, `multipart_copy`).
    pub planned: BTreeMap<Method, u64>,
    /// S3 is reached through a custom endpoint (an emulator or an S3-compatible store).
    pub custom_endpoint: bool,
}

impl PlanFacts {
    pub fn load(state: &Path, custom_endpoint: bool) -> Result<PlanFacts> {
        let cp = Checkpoint::open(state)?;
        let run = cp.run()?;
        let key_arn = run.kms_key_arn.clone().context("the plan has no KMS key; re-plan with --kms-key ARN")?;
        let parsed = KeyArn::parse(&key_arn).ok();
        let plan: super::settings::PlanSettings =
            serde_json::from_str(&run.options_json).context("the plan's options")?;
        let estimate: serde_json::Value = serde_json::from_str(&run.estimate_json).context("the plan's estimate")?;
        let prices: Option<PriceTable> = serde_json::from_str(&run.prices_json).ok();
        let copies_storage_usd_per_month = prices
            .map(|p| {
                let lines = estimate["breakdown"].as_array().cloned().unwrap_or_default();
                lines
                    .iter()
                    .filter(|l| l["method"].as_str().is_some_and(|m| m != Method::Update.as_str()))
                    .filter_map(|l| {
                        let class: StorageClass = serde_json::from_value(l["storage_class"].clone()).ok()?;
                        let gib = l["bytes"].as_f64()? / (1u64 << 30) as f64;
                        Some(gib * p.class(class).storage_per_gib_month)
                    })
                    .sum()
            })
            .unwrap_or(0.0);
        let buckets = match run.source_bucket.clone() {
            Some(b) => vec![b],
            None => {
                let mut stmt = cp
                    .connection()
                    .prepare("SELECT DISTINCT bucket FROM objects WHERE method IS NOT NULL LIMIT 10")
                    .context("the plan's buckets")?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(0)).context("the plan's buckets")?;
                rows.collect::<rusqlite::Result<Vec<_>>>().context("the plan's buckets")?
            }
        };
        Ok(PlanFacts {
            state: state.to_path_buf(),
            key_region: parsed.as_ref().map(|k| k.region.clone()),
            key_account: parsed.map(|k| k.account),
            key_arn,
            buckets,
            bucket_key: plan.bucket_key.unwrap_or(false),
            assumed_versioned: estimate["assumptions"]["versioned"].as_bool(),
            noncurrent_usd_per_month: estimate["noncurrent_storage_usd_per_month"].as_f64().unwrap_or(0.0),
            copies_storage_usd_per_month,
            planned: cp.counts()?.by_method,
            custom_endpoint,
        })
    }

    fn planned(&self, m: Method) -> u64 {
        self.planned.get(&m).copied().unwrap_or(0)
    }

    fn copies(&self) -> u64 {
        self.planned(Method::Copy) + self.planned(Method::MultipartCopy)
    }
}

/// The checks that touch no object: the key, and each bucket's region, owner, versioning,
/// default encryption and object ownership.
pub async fn preflight(s3: &aws_sdk_s3::Client, kms: &aws_sdk_kms::Client, facts: &PlanFacts) -> Vec<Check> {
    let s3 = patient(s3);
    let mut checks = vec![check_key(kms, facts).await];
    if facts.buckets.is_empty() {
        checks.push(Check::new(Verdict::Warn, "bucket", "the plan names no bucket: nothing to check"));
    }
    for bucket in &facts.buckets {
        let (region, answered) = check_region(&s3, facts, bucket).await;
        let stop = region.verdict == Verdict::Fail;
        checks.push(region);
        if stop {
            // No such bucket, or the wrong region for the key: the run cannot start, and
            // the bucket's other facts (read through another region) would be noise.
            continue;
        }
        if facts.planned(Method::Update) > 0 {
            checks.push(if answered {
                check_owner(&s3, facts, bucket).await
            } else {
                Check::new(
                    Verdict::Warn,
                    "bucket owner",
                    format!("bucket {bucket}: unchecked, GetBucketLocation did not answer"),
                )
            });
        }
        checks.push(check_versioning(&s3, facts, bucket).await);
        checks.push(check_default_encryption(&s3, facts, bucket).await);
        checks.push(check_ownership(&s3, facts, bucket).await);
    }
    checks
}

/// The run's S3 client has the SDK's retries off (the engine owns them); the checks' few
/// reads get the standard retries, so an injected 500 or a dropped connection is no failure.
fn patient(s3: &aws_sdk_s3::Client) -> aws_sdk_s3::Client {
    let conf = s3
        .config()
        .to_builder()
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(5))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// An SDK error, flattened: the error code (or one derived from the HTTP status), the
/// message, and the region S3 says the bucket is in, when it says.
struct ErrInfo {
    code: String,
    text: String,
    bucket_region: Option<String>,
}

fn err_info<E>(e: &SdkError<E, HttpResponse>) -> ErrInfo
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = match (e.code(), status) {
        (Some(c), _) => c.to_string(),
        (None, Some(403)) => "AccessDenied".into(),
        (None, Some(404)) => "NotFound".into(),
        (None, Some(301)) => "PermanentRedirect".into(),
        (None, Some(s)) if s >= 300 => format!("HTTP {s}"),
        (None, _) => String::new(), // not an S3 error: a connection or parsing failure
    };
    let text = match e.message() {
        Some(m) if !code.is_empty() => format!("{code}: {m}"),
        _ if !code.is_empty() => code.clone(),
        _ => DisplayErrorContext(e).to_string(),
    };
    let bucket_region = e.raw_response().and_then(|r| r.headers().get("x-amz-bucket-region")).map(str::to_string);
    ErrInfo { code, text, bucket_region }
}

fn kms_err_text<E>(e: &SdkError<E, HttpResponse>) -> (String, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = e.code().unwrap_or_default().to_string();
    let text = match e.message() {
        Some(m) if !code.is_empty() => format!("{code}: {m}"),
        _ if !code.is_empty() => code.clone(),
        _ => DisplayErrorContext(e).to_string(),
    };
    (code, text)
}

async fn check_key(kms: &aws_sdk_kms::Client, f: &PlanFacts) -> Check {
    use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType};
    let arn = &f.key_arn;
    let title = "KMS key";
    let fail = |d: String| Check::new(Verdict::Fail, title, d);
    let out = match kms.describe_key().key_id(arn).send().await {
        Ok(o) => o,
        Err(e) => {
            let (code, text) = kms_err_text(&e);
            let region = f.key_region.as_deref().unwrap_or("its region");
            return fail(match code.as_str() {
                "NotFoundException" => format!(
                    "{arn} does not exist in account {} in {region} ({text}): check the ARN, or re-plan with --kms-key set to an existing key",
                    f.key_account.as_deref().unwrap_or("?")
                ),
                "AccessDeniedException" => format!(
                    "cannot describe {arn} ({text}): the role running rekey needs kms:DescribeKey on the key for this check (--skip-preflight skips the checks)"
                ),
                _ => format!("cannot describe {arn}: {text}"),
            });
        }
    };
    let Some(m) = out.key_metadata() else {
        return fail(format!("DescribeKey returned no metadata for {arn}"));
    };
    let state = m.key_state().cloned().unwrap_or(if m.enabled() { KeyState::Enabled } else { KeyState::Disabled });
    match state {
        KeyState::Enabled => {}
        KeyState::Disabled => {
            return fail(format!("{arn} is Disabled: enable it (aws kms enable-key --key-id {arn})"));
        }
        KeyState::PendingDeletion | KeyState::PendingReplicaDeletion => {
            let when = m.deletion_date().map(|d| format!(" on {d}")).unwrap_or_default();
            return fail(format!(
                "{arn} is pending deletion{when}: cancel it (aws kms cancel-key-deletion --key-id {arn}) and enable it (aws kms enable-key --key-id {arn})"
            ));
        }
        KeyState::PendingImport => {
            return fail(format!(
                "{arn} is PendingImport: it has no key material yet; import it (aws kms import-key-material) first"
            ));
        }
        KeyState::Unavailable => {
            return fail(format!("{arn} is Unavailable: its custom key store is disconnected; reconnect it first"));
        }
        other => {
            return fail(format!("{arn} is {}: wait until it is Enabled", other.as_str()));
        }
    }
    if let Some(spec) = m.key_spec().filter(|s| **s != KeySpec::SymmetricDefault) {
        return fail(format!(
            "{arn} is a {} key: S3 encrypts only with SYMMETRIC_DEFAULT keys; re-plan with a symmetric encryption key",
            spec.as_str()
        ));
    }
    if let Some(usage) = m.key_usage().filter(|u| **u != KeyUsageType::EncryptDecrypt) {
        return fail(format!(
            "{arn} has key usage {}: S3 needs an ENCRYPT_DECRYPT key; re-plan with a symmetric encryption key",
            usage.as_str()
        ));
    }
    Check::new(Verdict::Ok, title, format!("{arn} is Enabled, SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT"))
}

/// The bucket's region against the key's. Returns the check, and whether GetBucketLocation
/// answered (the region may also come from an error's `x-amz-bucket-region`).
async fn check_region(s3: &aws_sdk_s3::Client, f: &PlanFacts, bucket: &str) -> (Check, bool) {
    let title = "bucket region";
    let (region, answered) = match s3.get_bucket_location().bucket(bucket).send().await {
        Ok(o) => match o.location_constraint().map(|c| c.as_str()) {
            None | Some("") => ("us-east-1".to_string(), true),
            Some("EU") => ("eu-west-1".to_string(), true),
            Some(r) => (r.to_string(), true),
        },
        Err(e) => {
            let i = err_info(&e);
            match (i.bucket_region, i.code.as_str()) {
                (Some(r), _) => (r, false),
                (None, "NoSuchBucket" | "NotFound") => {
                    return (
                        Check::new(
                            Verdict::Fail,
                            title,
                            format!(
                                "bucket {bucket} does not exist ({}): check the endpoint and the plan's inventory",
                                i.text
                            ),
                        ),
                        false,
                    );
                }
                (None, "AccessDenied") => {
                    return (Check::new(Verdict::Warn, title, format!("cannot read the region of bucket {bucket} ({}): the role lacks s3:GetBucketLocation; the key's region is unchecked", i.text)), false);
                }
                (None, _) => {
                    return (
                        Check::new(
                            Verdict::Warn,
                            title,
                            format!(
                                "cannot read the region of bucket {bucket} ({}); the key's region is unchecked",
                                i.text
                            ),
                        ),
                        false,
                    );
                }
            }
        }
    };
    let check = match f.key_region.as_deref() {
        Some(k) if k == region => Check::new(Verdict::Ok, title, format!("bucket {bucket} is in {region}, as the key is")),
        Some(k) => Check::new(
            Verdict::Fail,
            title,
            format!(
                "bucket {bucket} is in {region} but the KMS key {} is in {k}: S3 can only use a key in the bucket's own region; re-plan with a key in {region}",
                f.key_arn
            ),
        ),
        None => Check::new(Verdict::Warn, title, format!("bucket {bucket} is in {region}; the key ARN names no region to compare")),
    };
    (check, answered)
}

/// UpdateObjectEncryption needs a key of the bucket owner's account. S3 tells whether a
/// bucket belongs to an account through ExpectedBucketOwner (403 when it does not).
async fn check_owner(s3: &aws_sdk_s3::Client, f: &PlanFacts, bucket: &str) -> Check {
    let title = "bucket owner";
    let Some(account) = f.key_account.as_deref() else {
        return Check::new(Verdict::Warn, title, "the key ARN names no account: the bucket owner is unchecked");
    };
    let ask = |owner: String| s3.get_bucket_location().bucket(bucket).expected_bucket_owner(owner).send();
    match ask(account.to_string()).await {
        Ok(_) => {}
        Err(e) => {
            let i = err_info(&e);
            return if i.code == "AccessDenied" {
                Check::new(
                    Verdict::Fail,
                    title,
                    format!(
                        "bucket {bucket} is not owned by account {account}, the KMS key's account: UpdateObjectEncryption needs a key of the bucket owner's account; re-plan with such a key, or with --method copy"
                    ),
                )
            } else {
                Check::new(Verdict::Warn, title, format!("cannot check who owns bucket {bucket} ({})", i.text))
            };
        }
    }
    // An S3-compatible store may ignore ExpectedBucketOwner; AWS enforces it, so only a
    // custom endpoint is asked about an account that cannot own the bucket.
    if f.custom_endpoint {
        let other = if account == "000000000000" { "000000000001" } else { "000000000000" };
        if ask(other.to_string()).await.is_ok() {
            return Check::new(
                Verdict::Warn,
                title,
                format!(
                    "the endpoint ignores ExpectedBucketOwner, so whether bucket {bucket} belongs to account {account} (the key's) is unconfirmed"
                ),
            );
        }
    }
    Check::new(Verdict::Ok, title, format!("bucket {bucket} is owned by account {account}, as the key is"))
}

async fn check_versioning(s3: &aws_sdk_s3::Client, f: &PlanFacts, bucket: &str) -> Check {
    use aws_sdk_s3::types::BucketVersioningStatus;
    let title = "versioning";
    let status = match s3.get_bucket_versioning().bucket(bucket).send().await {
        Ok(o) => o.status().cloned(),
        Err(e) => {
            let i = err_info(&e);
            return Check::new(
                Verdict::Warn,
                title,
                format!(
                    "cannot read the versioning of bucket {bucket} ({}): the role lacks s3:GetBucketVersioning?",
                    i.text
                ),
            );
        }
    };
    let versioned = status == Some(BucketVersioningStatus::Enabled);
    let shown = match &status {
        Some(s) => s.as_str().to_string(),
        None => "never enabled".into(),
    };
    let copies = f.copies();
    match f.assumed_versioned {
        None => Check::new(Verdict::Ok, title, format!("bucket {bucket}: {shown}")),
        Some(a) if a == versioned => Check::new(
            Verdict::Ok,
            title,
            format!("bucket {bucket}: {shown}, as the plan assumed"),
        ),
        Some(_) if copies == 0 => Check::new(
            Verdict::Ok,
            title,
            format!("bucket {bucket}: {shown}, unlike the plan assumed; no copies are planned, so it changes no cost"),
        ),
        Some(false) => Check::new(
            Verdict::Warn,
            title,
            format!(
                "bucket {bucket} is versioned but the plan assumed not: each of the {copies} copies keeps its old version as noncurrent storage, about {}/month until a lifecycle rule expires them, which the estimate leaves out (and its early-deletion fees do not apply); re-plan with --versioned true for the exact figure",
                dollars(f.copies_storage_usd_per_month)
            ),
        ),
        Some(true) => Check::new(
            Verdict::Warn,
            title,
            format!(
                "bucket {bucket} is not versioned ({shown}) but the plan assumed it is: the {copies} copies overwrite their objects, so the estimate's noncurrent storage ({}/month) does not arise, but IA and Glacier objects younger than their minimum storage duration pay early-deletion fees the estimate leaves out, and an overwritten object cannot be recovered; re-plan with --versioned false for the exact figure",
                dollars(f.noncurrent_usd_per_month)
            ),
        ),
    }
}

/// Dollars, with cents unless that would show a small amount as $0.00.
fn dollars(x: f64) -> String {
    if x == 0.0 || x >= 0.01 {
        format!("${x:.2}")
    } else {
        format!("${x:.6}")
    }
}

async fn check_default_encryption(s3: &aws_sdk_s3::Client, f: &PlanFacts, bucket: &str) -> Check {
    use aws_sdk_s3::types::ServerSideEncryption;
    let title = "default encryption";
    let fix = format!(
        "aws s3api put-bucket-encryption --bucket {bucket} --server-side-encryption-configuration '{{\"Rules\":[{{\"ApplyServerSideEncryptionByDefault\":{{\"SSEAlgorithm\":\"aws:kms\",\"KMSMasterKeyID\":\"{}\"}},\"BucketKeyEnabled\":true}}]}}'",
        f.key_arn
    );
    let warn = |found: String| {
        Check::new(
            Verdict::Warn,
            title,
            format!("bucket {bucket}: {found}, so new writes keep arriving outside this key; set the default to the key with a Bucket Key: {fix}"),
        )
    };
    let out = match s3.get_bucket_encryption().bucket(bucket).send().await {
        Ok(o) => o,
        Err(e) => {
            let i = err_info(&e);
            return match i.code.as_str() {
                "ServerSideEncryptionConfigurationNotFoundError" => warn("no default encryption".into()),
                _ => Check::new(
                    Verdict::Warn,
                    title,
                    format!("cannot read the default encryption of bucket {bucket} ({}); recommended: {fix}", i.text),
                ),
            };
        }
    };
    let rule = out.server_side_encryption_configuration().and_then(|c| c.rules().first());
    let by_default = rule.and_then(|r| r.apply_server_side_encryption_by_default());
    let bucket_key = rule.and_then(|r| r.bucket_key_enabled()).unwrap_or(false);
    match by_default.map(|d| (d.sse_algorithm(), d.kms_master_key_id())) {
        None => warn("no default encryption".into()),
        Some((ServerSideEncryption::Aes256, _)) => warn("the default is SSE-S3 (AES256)".into()),
        Some((ServerSideEncryption::AwsKms, Some(k))) if same_kms_key(k, &f.key_arn) => {
            if bucket_key {
                Check::new(Verdict::Ok, title, format!("bucket {bucket}: SSE-KMS with this key and a Bucket Key"))
            } else {
                warn("the default is SSE-KMS with this key but no Bucket Key (every new write calls KMS)".into())
            }
        }
        Some((ServerSideEncryption::AwsKms, Some(k))) => warn(format!("the default is SSE-KMS with another key ({k})")),
        Some((ServerSideEncryption::AwsKms, None)) => {
            warn("the default is SSE-KMS with the AWS managed key aws/s3".into())
        }
        Some((other, _)) => warn(format!("the default is {}", other.as_str())),
    }
}

async fn check_ownership(s3: &aws_sdk_s3::Client, f: &PlanFacts, bucket: &str) -> Check {
    let title = "object ownership";
    let ownership = match s3.get_bucket_ownership_controls().bucket(bucket).send().await {
        Ok(o) => o
            .ownership_controls()
            .and_then(|c| c.rules().first())
            .map(|r| r.object_ownership().as_str().to_string())
            .unwrap_or_else(|| "ObjectWriter".into()),
        Err(e) => {
            let i = err_info(&e);
            if i.code == "OwnershipControlsNotFoundError" {
                "ObjectWriter".into()
            } else {
                return Check::new(
                    Verdict::Warn,
                    title,
                    format!("cannot read the object ownership of bucket {bucket} ({})", i.text),
                );
            }
        }
    };
    if ownership == "BucketOwnerEnforced" {
        return Check::new(
            Verdict::Ok,
            title,
            format!("bucket {bucket}: BucketOwnerEnforced, ACLs are disabled, so copies have no ACL to lose"),
        );
    }
    let copies = f.copies();
    if copies == 0 {
        return Check::new(
            Verdict::Ok,
            title,
            format!("bucket {bucket}: {ownership}, ACLs enabled; updates keep them"),
        );
    }
    Check::new(
        Verdict::Warn,
        title,
        format!(
            "bucket {bucket}: {ownership}, ACLs are enabled: each of the {copies} copies gets the default private ACL, so grants on the original objects are not carried over"
        ),
    )
}

/// The permissions a method needs.
fn needs(m: Method) -> &'static str {
    match m {
        Method::Update => "s3:UpdateObjectEncryption, kms:ReEncrypt*, kms:Encrypt, kms:Decrypt and kms:GenerateDataKey",
        Method::Copy | Method::MultipartCopy => {
            "s3:GetObject, s3:PutObject, s3:GetObjectTagging and kms:GenerateDataKey"
        }
    }
}

/// The IAM action an AccessDenied message names ("... not authorized to perform: s3:X ..."), if any.
fn named_action(message: &str) -> Option<String> {
    message
        .split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == ';' || c == '(' || c == ')')
        .find(|w| {
            (w.starts_with("s3:") || w.starts_with("kms:"))
                && w.len() > 4
                && w.split_once(':').is_some_and(|(_, a)| a.chars().all(|c| c.is_ascii_alphanumeric() || c == '*'))
        })
        .map(str::to_string)
}

/// What a canary failure means, in one sentence.
fn canary_failure(m: Method, code: &str, last_error: &str) -> String {
    let what = if m == Method::Update { "an update" } else { "a copy" };
    let permission = code == "AccessDenied" || code.starts_with("KMS.") || named_action(last_error).is_some();
    if !permission {
        // Refused for what the object is, or still failing after every retry: not a
        // permission, but the plan's other objects of this method would likely fare alike.
        return format!(
            "{last_error}: S3 refused the first {} of the plan, and would likely refuse the others alike; fix the cause first",
            m.as_str()
        );
    }
    let cause = match named_action(last_error) {
        Some(action) => format!("missing permission {action}"),
        None if code == "AccessDenied" => "a missing permission (IAM, key policy or bucket policy)".into(),
        None => likely_cause(code).to_string(),
    };
    format!("{last_error}: {cause}; {what} needs {}", needs(m))
}

/// One canary's row after the canary run.
struct CanaryRow {
    status: String,
    error_code: Option<String>,
    last_error: Option<String>,
    new_version_id: Option<String>,
    attempts: u32,
}

fn read_row(state: &Path, id: i64) -> Result<CanaryRow> {
    let cp = Checkpoint::open(state)?;
    cp.connection()
        .query_row(
            "SELECT status, error_code, last_error, new_version_id, attempts FROM objects WHERE id = ?1",
            [id],
            |r| {
                Ok(CanaryRow {
                    status: r.get(0)?,
                    error_code: r.get(1)?,
                    last_error: r.get(2)?,
                    new_version_id: r.get(3)?,
                    attempts: r.get::<_, i64>(4)?.max(0) as u32,
                })
            },
        )
        .with_context(|| format!("{}: reading the canary's row", state.display()))
}

/// The canary: the engine migrates the first object still to do of each method (the
/// multipart copies wait for multipart copy), then each is HEAD-checked.
/// Returns no check when nothing is left to do.
pub async fn canary(s3: &aws_sdk_s3::Client, cfg: &RunConfig, facts: &PlanFacts, stop: Stopper) -> Result<Vec<Check>> {
    let mut reader = TodoReader::open(&cfg.state)?;
    let mut picked: Vec<WorkItem> = Vec::new();
    for m in [Method::Update, Method::Copy] {
        picked.extend(reader.first_of(m)?);
    }
    drop(reader);
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    let mut c = cfg.clone();
    c.canary = true;
    c.progress = ProgressMode::Quiet;
    let store = Arc::new(SdkStore::new(s3.clone()));
    let report = crate::exec::run(store, c, stop).await?;
    let breaker = match &report.stop {
        Some(StopReason::Breaker { code, .. }) => Some(code.clone()),
        _ => None,
    };
    let s3 = patient(s3);
    let mut checks = Vec::new();
    for item in &picked {
        let title = format!("canary {}", item.method.as_str());
        let at = format!("s3://{}/{}", item.bucket, item.key);
        let row = read_row(&cfg.state, item.id)?;
        let last_error = row.last_error.clone().unwrap_or_default();
        let code = row.error_code.clone().unwrap_or_default();
        let check = match row.status.as_str() {
            // Not sent by this run: its status and error are an earlier run's.
            _ if row.attempts == item.attempts => {
                Check::new(Verdict::Warn, &title, format!("{at} was not tried: the canary stopped first"))
            }
            "done" => {
                let version = row.new_version_id.clone().or_else(|| match item.method {
                    Method::Update => item.version_id.clone(),
                    _ => None,
                });
                head_check(&s3, &title, &at, item, version, facts).await
            }
            "changed" | "gone" | "needs_restore" => {
                let what = match row.status.as_str() {
                    "changed" => "changed since the inventory (not overwritten)",
                    "gone" => "deleted since the inventory",
                    _ => "archived and needs a restore first",
                };
                Check::new(
                    Verdict::Warn,
                    &title,
                    format!("{at} was {what}, so no {} was proven before the run", item.method.as_str()),
                )
            }
            "failed" => {
                Check::new(Verdict::Fail, &title, format!("{at}: {}", canary_failure(item.method, &code, &last_error)))
            }
            _ if breaker.as_deref() == Some(code.as_str()) => {
                Check::new(Verdict::Fail, &title, format!("{at}: {}", canary_failure(item.method, &code, &last_error)))
            }
            _ if !last_error.is_empty() => Check::new(
                Verdict::Warn,
                &title,
                format!("{at} was not finished when the canary stopped (last error {last_error})"),
            ),
            _ => Check::new(Verdict::Warn, &title, format!("{at} was not finished when the canary stopped")),
        };
        checks.push(check);
    }
    let failed = checks.iter().any(|c| c.verdict == Verdict::Fail);
    match report.stop {
        Some(StopReason::Breaker { code, message }) if !failed => checks.push(Check::new(
            Verdict::Fail,
            "canary",
            format!("stopped: {code}: {message}: {}", likely_cause(&code)),
        )),
        Some(StopReason::Checkpoint(e)) => {
            checks.push(Check::new(Verdict::Fail, "canary", format!("the checkpoint could not be written ({e})")))
        }
        Some(StopReason::Interrupted) => {
            checks.push(Check::new(Verdict::Fail, "canary", "interrupted"));
        }
        // The run shares this stop signal: a canary stopped for its failures must fail the
        // pre-flight, not hand a stopped signal to the run.
        Some(StopReason::MaxFailures { failed, limit }) => checks.push(Check::new(
            Verdict::Fail,
            "canary",
            format!("{failed} canary objects failed, more than --max-failures allows ({limit})"),
        )),
        _ => {}
    }
    Ok(checks)
}

async fn head_check(
    s3: &aws_sdk_s3::Client,
    title: &str,
    at: &str,
    item: &WorkItem,
    version: Option<String>,
    f: &PlanFacts,
) -> Check {
    let head = match s3.head_object().bucket(&item.bucket).key(&item.key).set_version_id(version).send().await {
        Ok(h) => h,
        Err(e) => {
            let i = err_info(&e);
            let why = if i.code == "AccessDenied" { ": the role lacks s3:GetObject" } else { "" };
            return Check::new(
                Verdict::Fail,
                title,
                format!("{at} was re-encrypted but HEAD cannot confirm it ({}){why}", i.text),
            );
        }
    };
    let sse = head.server_side_encryption().map(|s| s.as_str().to_string());
    let key = head.ssekms_key_id().map(str::to_string);
    match (sse.as_deref(), key.as_deref()) {
        (Some("aws:kms"), Some(k)) if same_kms_key(k, &f.key_arn) => {
            Check::new(Verdict::Ok, title, format!("{at} is now aws:kms under the key (HEAD)"))
        }
        _ => Check::new(
            Verdict::Fail,
            title,
            format!(
                "{at}: S3 answered success but HEAD shows {} with key {}, not aws:kms under {}",
                sse.as_deref().unwrap_or("no encryption"),
                key.as_deref().unwrap_or("none"),
                f.key_arn
            ),
        ),
    }
}

/// Print a checklist on stderr: every line, or only the warnings (failures then make the
/// error line, so a quiet run does not say them twice).
pub fn print_checklist(checks: &[Check], all: bool) {
    for c in checks.iter().filter(|c| all || c.verdict == Verdict::Warn) {
        eprintln!("  {}", c.line());
    }
}

/// The failed checks in one line, if any failed.
fn failures(checks: &[Check]) -> Option<String> {
    let f: Vec<String> =
        checks.iter().filter(|c| c.verdict == Verdict::Fail).map(|c| format!("{}: {}", c.title, c.detail)).collect();
    (!f.is_empty()).then(|| f.join("; "))
}

fn warnings(checks: &[Check]) -> usize {
    checks.iter().filter(|c| c.verdict == Verdict::Warn).count()
}

fn kms_settings(s3: &S3Settings, facts: &PlanFacts) -> S3Settings {
    // DescribeKey in the key's own region, whatever region S3 is reached in.
    S3Settings { region: facts.key_region.clone().or(s3.region.clone()), ..s3.clone() }
}

fn custom_endpoint(s3: &S3Settings) -> bool {
    s3.endpoint_url.is_some()
        || ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

/// The pre-flight of `rekey run`: the checks, then the canary. Any failure ends with exit 7.
pub async fn before_run(
    s3: &aws_sdk_s3::Client,
    settings: &S3Settings,
    cfg: &RunConfig,
    verbose: bool,
    stop: &Stopper,
) -> Result<()> {
    let facts = PlanFacts::load(&cfg.state, custom_endpoint(settings))?;
    let kms = build_kms_client(&kms_settings(settings, &facts)).await?;
    let resume = format!("rekey run --state {}", cfg.state.display());
    if verbose {
        eprintln!("rekey: pre-flight checks of {}", cfg.state.display());
    }
    let checks = preflight(s3, &kms, &facts).await;
    print_checklist(&checks, verbose);
    if let Some(f) = failures(&checks) {
        return Err(Exit::new(
            ExitCode::PreflightFailed,
            format!(
                "pre-flight failed, no object was touched: {f}. Fix it and run `{resume}` again (--skip-preflight runs without these checks)"
            ),
        )
        .into());
    }
    let canary = canary(s3, cfg, &facts, stop.clone()).await?;
    print_checklist(&canary, verbose);
    if let Some(f) = failures(&canary) {
        let done = canary.iter().filter(|c| c.verdict == Verdict::Ok).count();
        return Err(Exit::new(
            ExitCode::PreflightFailed,
            format!(
                "pre-flight canary failed ({done} canary objects re-encrypted, nothing else touched): {f}. Fix it and run `{resume}` again"
            ),
        )
        .into());
    }
    Ok(())
}

/// `rekey preflight --state FILE [--canary]`: exit 0 when every check passes (warnings
/// allowed), 7 otherwise.
pub fn run(args: PreflightArgs, runtime: &tokio::runtime::Runtime) -> Result<()> {
    let run_args = RunArgs {
        state: args.state.clone(),
        connect: args.connect.clone(),
        kms_rps: None,
        s3_rps: None,
        concurrency: None,
        max_attempts: 10,
        max_failures: "100%".into(),
        drain_timeout: 30,
        quiet: true,
        json_progress: false,
        skip_preflight: false,
        preserve_redirect: false,
        preserve_acl: false,
        preserve_lock: true,
        part_size: None,
    };
    let cp = Checkpoint::open(&args.state)?;
    let (cfg, settings) = config(&run_args, &cp)?;
    drop(cp);
    runtime.block_on(async {
        let facts = PlanFacts::load(&args.state, custom_endpoint(&settings))?;
        let s3 = build_client(&settings).await?;
        let kms = build_kms_client(&kms_settings(&settings, &facts)).await?;
        eprintln!("rekey: pre-flight checks of {}", args.state.display());
        let mut checks = preflight(&s3, &kms, &facts).await;
        print_checklist(&checks, true);
        if args.canary && failures(&checks).is_none() {
            let canary = canary(&s3, &cfg, &facts, Stopper::default()).await?;
            print_checklist(&canary, true);
            checks.extend(canary);
        }
        match failures(&checks) {
            Some(f) => Err(Exit::new(ExitCode::PreflightFailed, format!("pre-flight failed: {f}")).into()),
            None => {
                eprintln!("rekey: pre-flight passed ({} warnings)", warnings(&checks));
                Ok(())
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_action_an_access_denied_message_names_is_found() {
        let m = "403 AccessDenied: User: arn:aws:iam::123456789012:user/x is not authorized to perform: s3:UpdateObjectEncryption on resource: \"arn:aws:s3:::b/k\" because no identity-based policy allows the s3:UpdateObjectEncryption action";
        assert_eq!(named_action(m).as_deref(), Some("s3:UpdateObjectEncryption"));
        assert_eq!(
            named_action("not authorized to perform: kms:GenerateDataKey").as_deref(),
            Some("kms:GenerateDataKey")
        );
        assert_eq!(named_action("403 AccessDenied: Access Denied"), None);
        assert_eq!(named_action("arn:aws:s3:::b/k"), None);
    }

    #[test]
    fn a_canary_failure_names_the_missing_permission_and_what_the_method_needs() {
        let line = canary_failure(
            Method::Copy,
            "AccessDenied",
            "403 AccessDenied: ... not authorized to perform: s3:PutObject on resource",
        );
        assert!(line.contains("missing permission s3:PutObject"), "{line}");
        assert!(line.contains("s3:GetObjectTagging"), "{line}");
        let line = canary_failure(Method::Update, "KMS.DisabledException", "400 KMS.DisabledException: k is disabled.");
        assert!(line.contains("the KMS key is disabled"), "{line}");
        assert!(line.contains("kms:ReEncrypt*"), "{line}");
        let line = canary_failure(Method::Copy, "InvalidRequest", "400 InvalidRequest: not for this object");
        assert!(line.contains("S3 refused the first copy of the plan"), "{line}");
        assert!(!line.contains("needs"), "no permission list for a refusal: {line}");
    }

    #[test]
    fn checklist_lines_carry_their_mark() {
        assert_eq!(Check::new(Verdict::Ok, "a", "b").line(), "✔ a: b");
        assert_eq!(Check::new(Verdict::Warn, "a", "b").line(), "! a: b");
        assert_eq!(Check::new(Verdict::Fail, "a", "b").line(), "✘ a: b");
    }
}
