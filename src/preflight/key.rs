//! The KMS key check: it exists, is Enabled, and is a SYMMETRIC_DEFAULT ENCRYPT_DECRYPT
//! key, the only kind S3 encrypts with.

use super::{Check, PlanFacts, Verdict};
use crate::s3::{ApiError, BucketApi, KeyMetadata, KeyState};

const TITLE: &str = "KMS key";

pub async fn check_key(api: &impl BucketApi, f: &PlanFacts) -> Check {
    let arn = &f.key_arn;
    let fail = |d: String| Check::new(Verdict::Fail, TITLE, d);
    match api.describe_key(arn).await {
        Err(e) => fail(describe_failed(f, &e)),
        Ok(None) => fail(format!("DescribeKey returned no metadata for {arn}")),
        Ok(Some(m)) => match unusable(arn, &m) {
            Some(why) => fail(why),
            None => Check::new(Verdict::Ok, TITLE, format!("{arn} is Enabled, SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT")),
        },
    }
}

/// Why DescribeKey failed, and what to do.
fn describe_failed(f: &PlanFacts, e: &ApiError) -> String {
    let arn = &f.key_arn;
    let text = e.text();
    let region = f.key_region.as_deref().unwrap_or("its region");
    match e.code.as_str() {
        "NotFoundException" => format!(
            "{arn} does not exist in account {} in {region} ({text}): check the ARN, or re-plan with --kms-key set to an existing key",
            f.key_account.as_deref().unwrap_or("?")
        ),
        "AccessDeniedException" => format!(
            "cannot describe {arn} ({text}): the role running rekey needs kms:DescribeKey on the key for this check (--skip-preflight skips the checks)"
        ),
        _ => format!("cannot describe {arn}: {text}"),
    }
}

/// Why S3 could not encrypt with this key, if it could not.
fn unusable(arn: &str, m: &KeyMetadata) -> Option<String> {
    match &m.state {
        KeyState::Enabled => {}
        KeyState::Disabled => return Some(format!("{arn} is Disabled: enable it (aws kms enable-key --key-id {arn})")),
        KeyState::PendingDeletion => {
            let when = m.deletion_date.as_ref().map(|d| format!(" on {d}")).unwrap_or_default();
            return Some(format!(
                "{arn} is pending deletion{when}: cancel it (aws kms cancel-key-deletion --key-id {arn}) and enable it (aws kms enable-key --key-id {arn})"
            ));
        }
        KeyState::PendingImport => {
            return Some(format!(
                "{arn} is PendingImport: it has no key material yet; import it (aws kms import-key-material) first"
            ))
        }
        KeyState::Unavailable => {
            return Some(format!("{arn} is Unavailable: its custom key store is disconnected; reconnect it first"))
        }
        KeyState::Other(state) => return Some(format!("{arn} is {state}: wait until it is Enabled")),
    }
    if let Some(spec) = m.key_spec.as_deref().filter(|s| *s != "SYMMETRIC_DEFAULT") {
        return Some(format!(
            "{arn} is a {spec} key: S3 encrypts only with SYMMETRIC_DEFAULT keys; re-plan with a symmetric encryption key"
        ));
    }
    if let Some(usage) = m.key_usage.as_deref().filter(|u| *u != "ENCRYPT_DECRYPT") {
        return Some(format!(
            "{arn} has key usage {usage}: S3 needs an ENCRYPT_DECRYPT key; re-plan with a symmetric encryption key"
        ));
    }
    None
}
