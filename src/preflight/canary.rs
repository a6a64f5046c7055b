//! The canary: before the run, the engine migrates the first object still to do of each
//! method (the multipart copies wait for multipart copy), and each is HEAD-checked for
//! `aws:kms` under the key. It proves the permissions and the key on one object per method
//! before thousands are tried.

use super::causes::{likely_cause, named_action, needs};
use super::{Check, PlanFacts, Verdict};
use crate::exec::progress::ProgressMode;
use crate::exec::{RunConfig, RunReport, StopReason, Stopper};
use crate::plan::classify::Method;
use crate::s3::object_store::same_kms_key;
use crate::s3::sdk_bucket_api::s3_api_error;
use crate::s3::{patient, SdkStore};
use crate::store::{Checkpoint, ObjectStatus, TodoReader, WorkItem};
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;

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
    status: ObjectStatus,
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

/// Run the canary on the plan at `cfg.state` and check each object it picked.
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
        let row = read_row(&cfg.state, item.id)?;
        checks.push(judge(&s3, item, &row, breaker.as_deref(), facts).await);
    }
    let failed = checks.iter().any(|c| c.verdict == Verdict::Fail);
    checks.extend(stopped(report, failed));
    Ok(checks)
}

/// One canary object's check, from its row after the canary run.
async fn judge(
    s3: &aws_sdk_s3::Client,
    item: &WorkItem,
    row: &CanaryRow,
    breaker: Option<&str>,
    facts: &PlanFacts,
) -> Check {
    let title = format!("canary {}", item.method.as_str());
    let at = format!("s3://{}/{}", item.bucket, item.key);
    let last_error = row.last_error.clone().unwrap_or_default();
    let code = row.error_code.clone().unwrap_or_default();
    match row.status {
        // Not sent by this run: its status and error are an earlier run's.
        _ if row.attempts == item.attempts => {
            Check::new(Verdict::Warn, &title, format!("{at} was not tried: the canary stopped first"))
        }
        ObjectStatus::Done => {
            let version = row.new_version_id.clone().or_else(|| match item.method {
                Method::Update => item.version_id.clone(),
                _ => None,
            });
            head_check(s3, &title, &at, item, version, facts).await
        }
        ObjectStatus::Changed | ObjectStatus::Gone | ObjectStatus::NeedsRestore => {
            let what = match row.status {
                ObjectStatus::Changed => "changed since the inventory (not overwritten)",
                ObjectStatus::Gone => "deleted since the inventory",
                _ => "archived and needs a restore first",
            };
            Check::new(
                Verdict::Warn,
                &title,
                format!("{at} was {what}, so no {} was proven before the run", item.method.as_str()),
            )
        }
        ObjectStatus::AlreadyTargetKey | ObjectStatus::OtherKmsKey => {
            let what = if row.status == ObjectStatus::AlreadyTargetKey {
                "already under the target key"
            } else {
                "under a KMS key that is not a --from-key (left alone)"
            };
            Check::new(Verdict::Warn, &title, format!("{at} was {what}, so no update was proven before the run"))
        }
        ObjectStatus::Failed => {
            Check::new(Verdict::Fail, &title, format!("{at}: {}", canary_failure(item.method, &code, &last_error)))
        }
        _ if breaker == Some(code.as_str()) => {
            Check::new(Verdict::Fail, &title, format!("{at}: {}", canary_failure(item.method, &code, &last_error)))
        }
        _ if !last_error.is_empty() => Check::new(
            Verdict::Warn,
            &title,
            format!("{at} was not finished when the canary stopped (last error {last_error})"),
        ),
        _ => Check::new(Verdict::Warn, &title, format!("{at} was not finished when the canary stopped")),
    }
}

/// Why the canary run stopped, when that fails the pre-flight by itself (`failed`: an
/// object's check already failed, and says why).
fn stopped(report: RunReport, failed: bool) -> Option<Check> {
    match report.stop {
        Some(StopReason::Breaker { code, message }) if !failed => {
            Some(Check::new(Verdict::Fail, "canary", format!("stopped: {code}: {message}: {}", likely_cause(&code))))
        }
        Some(StopReason::Checkpoint(e)) => {
            Some(Check::new(Verdict::Fail, "canary", format!("the checkpoint could not be written ({e})")))
        }
        Some(StopReason::Interrupted) => Some(Check::new(Verdict::Fail, "canary", "interrupted")),
        // The run shares this stop signal: a canary stopped for its failures must fail the
        // pre-flight, not hand a stopped signal to the run.
        Some(StopReason::MaxFailures { failed, limit }) => Some(Check::new(
            Verdict::Fail,
            "canary",
            format!("{failed} canary objects failed, more than --max-failures allows ({limit})"),
        )),
        _ => None,
    }
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
            let e = s3_api_error(&e);
            let why = if e.code == "AccessDenied" { ": the role lacks s3:GetObject" } else { "" };
            return Check::new(
                Verdict::Fail,
                title,
                format!("{at} was re-encrypted but HEAD cannot confirm it ({}){why}", e.text()),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
