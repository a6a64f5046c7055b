//! Where the bucket is and who owns it, against the key: S3 can only use a key in the
//! bucket's own region, and UpdateObjectEncryption only a key of the bucket owner's account.

use super::{Check, PlanFacts, Verdict};
use crate::s3::BucketApi;

/// The bucket's region against the key's. Returns the check, and whether GetBucketLocation
/// answered (the region may also come from an error's `x-amz-bucket-region`).
pub async fn check_region(api: &impl BucketApi, f: &PlanFacts, bucket: &str) -> (Check, bool) {
    let title = "bucket region";
    let (region, answered) = match api.bucket_region(bucket).await {
        Ok(r) => (r, true),
        Err(e) => match (e.bucket_region.clone(), e.code.as_str()) {
            (Some(r), _) => (r, false),
            (None, "NoSuchBucket" | "NotFound") => {
                let d = format!(
                    "bucket {bucket} does not exist ({}): check the endpoint and the plan's inventory",
                    e.text()
                );
                return (Check::new(Verdict::Fail, title, d), false);
            }
            (None, "AccessDenied") => {
                let d = format!("cannot read the region of bucket {bucket} ({}): the role lacks s3:GetBucketLocation; the key's region is unchecked", e.text());
                return (Check::new(Verdict::Warn, title, d), false);
            }
            (None, _) => {
                let d =
                    format!("cannot read the region of bucket {bucket} ({}); the key's region is unchecked", e.text());
                return (Check::new(Verdict::Warn, title, d), false);
            }
        },
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
pub async fn check_owner(api: &impl BucketApi, f: &PlanFacts, bucket: &str) -> Check {
    let title = "bucket owner";
    let Some(account) = f.key_account.as_deref() else {
        return Check::new(Verdict::Warn, title, "the key ARN names no account: the bucket owner is unchecked");
    };
    if let Err(e) = api.expect_owner(bucket, account).await {
        return if e.code == "AccessDenied" {
            Check::new(
                Verdict::Fail,
                title,
                format!(
                    "bucket {bucket} is not owned by account {account}, the KMS key's account: UpdateObjectEncryption needs a key of the bucket owner's account; re-plan with such a key, or with --method copy"
                ),
            )
        } else {
            Check::new(Verdict::Warn, title, format!("cannot check who owns bucket {bucket} ({})", e.text()))
        };
    }
    // An S3-compatible store may ignore ExpectedBucketOwner; AWS enforces it, so only a
    // custom endpoint is asked about an account that cannot own the bucket.
    if f.custom_endpoint {
        let other = if account == "000000000000" { "000000000001" } else { "000000000000" };
        if api.expect_owner(bucket, other).await.is_ok() {
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
