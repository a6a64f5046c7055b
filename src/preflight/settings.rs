//! Bucket settings that change what the plan costs or leaves behind: versioning against the
//! estimate's assumption, default encryption (new writes should stop arriving as SSE-S3),
//! and object ownership (a copy's ACL is reset to private).

use super::{Check, PlanFacts, Verdict};
use crate::s3::object_store::same_kms_key;
use crate::s3::BucketApi;

pub async fn check_versioning(api: &impl BucketApi, f: &PlanFacts, bucket: &str) -> Check {
    let title = "versioning";
    let status = match api.versioning(bucket).await {
        Ok(s) => s,
        Err(e) => {
            return Check::new(
                Verdict::Warn,
                title,
                format!(
                    "cannot read the versioning of bucket {bucket} ({}): the role lacks s3:GetBucketVersioning?",
                    e.text()
                ),
            );
        }
    };
    let versioned = status.as_deref() == Some("Enabled");
    let shown = status.unwrap_or_else(|| "never enabled".into());
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

/// On a versioned bucket, each copy leaves the version it replaced behind, noncurrent and
/// under the old encryption: say so, and name the two ways out and the permission the
/// second needs (docs/s3-facts.md §10). None when nothing is left behind.
pub async fn check_replaced_versions(api: &impl BucketApi, f: &PlanFacts, bucket: &str) -> Option<Check> {
    let copies = f.copies();
    if copies == 0 || api.versioning(bucket).await.ok()?.as_deref() != Some("Enabled") {
        return None;
    }
    Some(Check::new(
        Verdict::Ok,
        "replaced versions",
        format!(
            "bucket {bucket} is versioned: each of the {copies} copies leaves its old version behind, noncurrent and still under the old encryption; after the run, `rekey report` prints a lifecycle rule that expires them, or `rekey verify --delete-replaced-versions` deletes exactly those versions (it needs s3:DeleteObjectVersion)"
        ),
    ))
}

/// Dollars, with cents unless that would show a small amount as $0.00.
fn dollars(x: f64) -> String {
    if x == 0.0 || x >= 0.01 {
        format!("${x:.2}")
    } else {
        format!("${x:.6}")
    }
}

pub async fn check_default_encryption(api: &impl BucketApi, f: &PlanFacts, bucket: &str) -> Check {
    let title = "default encryption";
    let fix = format!(
        "aws s3api put-bucket-encryption --bucket {bucket} --server-side-encryption-configuration '{{\"Rules\":[{{\"ApplyServerSideEncryptionByDefault\":{{\"SSEAlgorithm\":\"aws:kms\",\"KMSMasterKeyID\":\"{}\"}},\"BucketKeyEnabled\":true}}]}}'",
        f.key_arn
    );
    let warn = |found: String| {
        Check::new(
            Verdict::Warn,
            title,
            format!("bucket {bucket}: {found}, so new writes keep arriving outside this key; after the run, `rekey finish` sets the default to the key with a Bucket Key (or now: {fix})"),
        )
    };
    let default = match api.default_encryption(bucket).await {
        Ok(d) => d,
        Err(e) => {
            return match e.code.as_str() {
                "ServerSideEncryptionConfigurationNotFoundError" => warn("no default encryption".into()),
                _ => Check::new(
                    Verdict::Warn,
                    title,
                    format!("cannot read the default encryption of bucket {bucket} ({}); recommended: {fix}", e.text()),
                ),
            };
        }
    };
    let Some(d) = default else {
        return warn("no default encryption".into());
    };
    match (d.algorithm.as_str(), d.kms_key_id.as_deref()) {
        ("AES256", _) => warn("the default is SSE-S3 (AES256)".into()),
        ("aws:kms", Some(k)) if same_kms_key(k, &f.key_arn) => {
            if d.bucket_key {
                Check::new(Verdict::Ok, title, format!("bucket {bucket}: SSE-KMS with this key and a Bucket Key"))
            } else {
                warn("the default is SSE-KMS with this key but no Bucket Key (every new write calls KMS)".into())
            }
        }
        ("aws:kms", Some(k)) => warn(format!("the default is SSE-KMS with another key ({k})")),
        ("aws:kms", None) => warn("the default is SSE-KMS with the AWS managed key aws/s3".into()),
        (other, _) => warn(format!("the default is {other}")),
    }
}

pub async fn check_ownership(api: &impl BucketApi, f: &PlanFacts, bucket: &str) -> Check {
    let title = "object ownership";
    let ownership = match api.ownership(bucket).await {
        // No rule, or no controls at all: S3's default before BucketOwnerEnforced was.
        Ok(o) => o.unwrap_or_else(|| "ObjectWriter".into()),
        Err(e) if e.code == "OwnershipControlsNotFoundError" => "ObjectWriter".into(),
        Err(e) => {
            return Check::new(
                Verdict::Warn,
                title,
                format!("cannot read the object ownership of bucket {bucket} ({})", e.text()),
            );
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
