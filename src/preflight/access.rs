//! Who will lose access: once an object is under the KMS key, reading it takes `kms:Decrypt`
//! on the key as well as `s3:GetObject`, and a reader with only the second gets AccessDenied.
//! These checks read what a bucket owner can read and warn, in plain words, who would break:
//!
//! * the bucket policy's readers (GetBucketPolicy): each principal allowed `s3:GetObject`
//!   that the key policy (GetKeyPolicy) and the key's grants (ListGrants) do not allow
//!   `kms:Decrypt`; anyone (`"*"`, unconditioned), since S3 serves no SSE-KMS object to an
//!   anonymous request; a CloudFront origin access identity, which cannot read SSE-KMS
//!   objects at all; CloudFront origin access control, which needs the key policy to allow
//!   `cloudfront.amazonaws.com`;
//! * the key being AWS managed (aws/s3, DescribeKey's KeyManager `AWS`) while readers outside
//!   its account exist: its policy cannot be changed to let them in;
//! * the bucket ACL (GetBucketAcl): grants to everyone, to any AWS account, or to other
//!   accounts;
//! * replication (GetBucketReplication): rules that do not replicate SSE-KMS objects, and
//!   UpdateObjectEncryption, which is not replicated at all (docs/s3-facts.md §0, §8).
//!
//! What no bucket-owner API shows (presigned URLs and who signs them, other accounts' IAM
//! policies, object ACLs) is listed in [`UNSEEN`] and in docs/running.md. All findings are
//! warnings ([`super::Section::Access`]); `--strict` makes them stop the run.

use super::policy::{KeyAccess, Policy, Principal};
use super::{Check, PlanFacts, Verdict};
use crate::s3::{AclGrantee, ApiError, BucketApi, KeyGrant, KeyMetadata};
use crate::vocab::Method;

/// The actions that read an object's bytes.
const READ: &[&str] = &["s3:GetObject", "s3:GetObjectVersion"];
const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
const LOG_DELIVERY: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";

/// Who reads a bucket that no API available to its owner shows.
pub const UNSEEN: &str = "not visible to these checks: holders of presigned URLs (they read as the IAM principal that signed them), principals that read through their own IAM policies only, object ACLs, and access points' policies; only CloudTrail data events or S3 server access logs show who reads";

/// What the checks read of the key, once per pre-flight and only when a reader needs it.
#[derive(Debug, Default)]
pub struct KeyView {
    read: Option<KeyRead>,
}

#[derive(Debug)]
struct KeyRead {
    meta: Option<KeyMetadata>,
    /// The key policy, or why it could not be read.
    policy: Result<Policy, String>,
    /// The key's grants; none when they could not be listed (a grant is a rarer way in).
    grants: Vec<KeyGrant>,
}

impl KeyView {
    async fn get(&mut self, api: &impl BucketApi, f: &PlanFacts) -> &KeyRead {
        if self.read.is_none() {
            let meta = api.describe_key(&f.key_arn).await.ok().flatten();
            let policy = match api.key_policy(&f.key_arn).await {
                Ok(json) => Policy::parse(&json).map_err(|e| format!("its key policy cannot be read: {e}")),
                Err(e) => Err(key_policy_unread(&e)),
            };
            let grants = api.key_grants(&f.key_arn).await.unwrap_or_default();
            self.read = Some(KeyRead { meta, policy, grants });
        }
        self.read.as_ref().expect("just read")
    }
}

fn key_policy_unread(e: &ApiError) -> String {
    match e.code.as_str() {
        "AccessDeniedException" => {
            format!("rekey cannot read the key policy ({}): the role needs kms:GetKeyPolicy for this check", e.text())
        }
        _ => format!("rekey cannot read the key policy ({})", e.text()),
    }
}

/// The access checks of one bucket.
pub async fn check_access(api: &impl BucketApi, f: &PlanFacts, bucket: &str, key: &mut KeyView) -> Vec<Check> {
    let mut checks = readers(api, f, bucket, key).await;
    checks.extend(acl(api, bucket).await);
    checks.extend(replication(api, f, bucket).await);
    checks
}

const READERS: &str = "readers";

/// The bucket policy's readers against the key policy.
async fn readers(api: &impl BucketApi, f: &PlanFacts, bucket: &str, key: &mut KeyView) -> Vec<Check> {
    let warn = |d: String| Check::access(Verdict::Warn, READERS, d);
    let policy = match api.bucket_policy(bucket).await {
        Ok(Some(json)) => match Policy::parse(&json) {
            Ok(p) => p,
            Err(e) => return vec![warn(format!("the policy of bucket {bucket} cannot be read ({e}): who reads it is unchecked"))],
        },
        Ok(None) => {
            return vec![Check::access(Verdict::Ok, READERS, format!("bucket {bucket} has no bucket policy, so it names no reader"))]
        }
        Err(e) => {
            return vec![warn(format!(
                "cannot read the policy of bucket {bucket} ({}): the role lacks s3:GetBucketPolicy? Who reads it is unchecked",
                e.text()
            ))]
        }
    };
    let own = f.key_account.as_deref();
    let mut checks = Vec::new();
    let mut fine = Vec::new();
    let mut outside = Vec::new(); // readers a customer managed key could let in
    for (who, i) in policy.allowed(READ) {
        let s = &policy.statements[i];
        let by = format!("{} of its policy", s.label(i));
        let cond = s.condition_text().map(|c| format!(" under the condition {c}")).unwrap_or_default();
        match &who {
            Principal::Anyone if s.condition.is_none() => checks.push(warn(format!(
                "bucket {bucket} lets anyone read its objects ({by}): S3 refuses anonymous requests for SSE-KMS objects, so every public reader (a website, public links) gets an error for each migrated object; keep the public objects out of the plan, or serve them through CloudFront with origin access control and let cloudfront.amazonaws.com kms:Decrypt in the key policy"
            ))),
            Principal::OriginAccessIdentity(_) => checks.push(warn(format!(
                "{who} reads bucket {bucket} ({by}): an origin access identity cannot read SSE-KMS objects, so the distribution answers 403 for each migrated object; move the distribution to origin access control (OAC) and let cloudfront.amazonaws.com kms:Decrypt in the key policy"
            ))),
            Principal::Other(_) => checks.push(warn(format!(
                "bucket {bucket} lets {who} read ({by}), which rekey cannot place in an account: make sure it may kms:Decrypt under {}, or it gets AccessDenied for each migrated object",
                f.key_arn
            ))),
            _ => outside.push((who.clone(), by, cond, s.condition.clone())),
        }
    }
    if outside.is_empty() {
        if checks.is_empty() {
            checks.push(Check::access(
                Verdict::Ok,
                READERS,
                format!("the policy of bucket {bucket} lets no one read objects"),
            ));
        }
        return checks;
    }
    let k = key.get(api, f).await;
    if k.meta.as_ref().is_some_and(KeyMetadata::aws_managed) {
        let names: Vec<String> =
            outside.iter().filter(|(w, ..)| w.account() != own).map(|(w, by, ..)| format!("{w} ({by})")).collect();
        if !names.is_empty() {
            checks.push(warn(format!(
                "{} is the AWS managed key aws/s3, whose key policy cannot be changed and lets only its own account use it: {} read bucket {bucket} and would get AccessDenied for each migrated object; re-plan with a customer managed key whose policy lets them kms:Decrypt",
                f.key_arn,
                names.join(", ")
            )));
        }
        return checks;
    }
    let policy = match &k.policy {
        Ok(p) => p,
        Err(why) => {
            let names: Vec<String> = outside.iter().map(|(w, by, ..)| format!("{w} ({by})")).collect();
            checks.push(warn(format!(
                "bucket {bucket} lets {} read; {why}, so whether they may kms:Decrypt under the key is unchecked",
                names.join(", ")
            )));
            return checks;
        }
    };
    for (who, by, cond, condition) in outside {
        let via_grant = k
            .grants
            .iter()
            .any(|g| g.operations.iter().any(|o| o == "Decrypt") && grant_names(&Principal::grantee(&g.grantee), &who));
        let reads = format!("{who} reads bucket {bucket} ({by}{cond})");
        match policy.access(&who, "kms:Decrypt") {
            KeyAccess::Allowed { statement, by_account } => {
                let how = policy.statements[statement].label(statement);
                let also = if by_account && who.account() != own {
                    ", provided its own IAM policy allows kms:Decrypt on the key"
                } else {
                    ""
                };
                fine.push(format!("{who} (key policy {how}{also})"));
            }
            _ if via_grant => fine.push(format!("{who} (a grant on the key)")),
            KeyAccess::Denied { statement } => checks.push(warn(format!(
                "{reads}, but the key policy denies it kms:Decrypt ({}): it will get AccessDenied for each migrated object",
                policy.statements[statement].label(statement)
            ))),
            KeyAccess::Partly { arns } => checks.push(warn(format!(
                "{reads}, but the key policy lets only {} of that account kms:Decrypt: its other roles and users will get AccessDenied for each migrated object; {}",
                arns.join(", "),
                fix(&who, condition.as_ref())
            ))),
            KeyAccess::NotAllowed => {
                let what = if who.account() == own {
                    "the key policy neither allows it kms:Decrypt nor lets the account's IAM policies decide"
                } else {
                    "the key policy does not allow it kms:Decrypt"
                };
                let cloudfront = matches!(&who, Principal::Service(s) if s == "cloudfront.amazonaws.com");
                let breaks = if cloudfront {
                    "the distribution will answer 403 for each migrated object"
                } else {
                    "it will get AccessDenied for each migrated object"
                };
                checks.push(warn(format!("{reads}, but {what}: {breaks}; {}", fix(&who, condition.as_ref()))));
            }
        }
    }
    if !fine.is_empty() {
        checks.push(Check::access(
            Verdict::Ok,
            READERS,
            format!("bucket {bucket}: may decrypt under the key: {}", fine.join("; ")),
        ));
    }
    checks
}

/// Whether a grant's grantee covers the reader (a grant names one principal; its account
/// root covers the account's roles).
fn grant_names(grantee: &Principal, who: &Principal) -> bool {
    match grantee {
        Principal::Account(a) => who.account() == Some(a),
        other => other == who,
    }
}

/// The key-policy statement that lets `who` decrypt, ready to add.
fn fix(who: &Principal, condition: Option<&serde_json::Value>) -> String {
    let Some(principal) = who.policy_json() else {
        return "allow it kms:Decrypt in the key policy".into();
    };
    let mut statement = serde_json::json!({
        "Sid": "Decrypt for bucket readers",
        "Effect": "Allow",
        "Principal": principal,
        "Action": "kms:Decrypt",
        "Resource": "*",
    });
    // A service reads for one resource (a distribution), and "anyone" only under the bucket
    // policy's condition (an organization, a VPC endpoint): keep that condition.
    if let (Principal::Service(_) | Principal::Anyone, Some(c)) = (who, condition) {
        statement["Condition"] = c.clone();
    }
    format!("add to the key policy: {statement}")
}

const ACL: &str = "bucket ACL";

/// Grants of the bucket ACL to anyone but the owner. A bucket ACL's READ lists objects; the
/// objects' own ACLs grant reading them, and a bucket set up with ACLs usually grants both.
async fn acl(api: &impl BucketApi, bucket: &str) -> Vec<Check> {
    let acl = match api.bucket_acl(bucket).await {
        Ok(a) => a,
        Err(e) => {
            return vec![Check::access(
                Verdict::Warn,
                ACL,
                format!(
                    "cannot read the ACL of bucket {bucket} ({}): grants to other accounts are unchecked",
                    e.text()
                ),
            )]
        }
    };
    let mut checks = Vec::new();
    for g in &acl.grants {
        let (who, why) = match &g.grantee {
            AclGrantee::CanonicalUser { id, .. } if acl.owner_id.as_deref() == Some(id) => continue,
            AclGrantee::Group(uri) if uri == LOG_DELIVERY => continue,
            AclGrantee::Group(uri) if uri == ALL_USERS => (
                "everyone (AllUsers)".to_string(),
                "S3 refuses anonymous requests for SSE-KMS objects, so public readers get an error for each migrated object".to_string(),
            ),
            AclGrantee::Group(uri) if uri == AUTHENTICATED_USERS => (
                "any AWS account (AuthenticatedUsers)".to_string(),
                "each of them needs kms:Decrypt under the key, which a key policy cannot give to every account".to_string(),
            ),
            AclGrantee::Group(uri) => (format!("the group {uri}"), "it needs kms:Decrypt under the key".to_string()),
            AclGrantee::CanonicalUser { id, name } => (
                format!("canonical user {id}{}", name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()),
                "another account, which needs kms:Decrypt in the key policy (rekey cannot tell which account a canonical ID is)".to_string(),
            ),
            AclGrantee::Email(e) => (format!("the account of {e}"), "it needs kms:Decrypt in the key policy".to_string()),
        };
        checks.push(Check::access(
            Verdict::Warn,
            ACL,
            format!(
                "bucket {bucket} grants {} to {who}: if the objects' ACLs let it read them too, {why}",
                g.permission
            ),
        ));
    }
    if checks.is_empty() {
        checks.push(Check::access(Verdict::Ok, ACL, format!("bucket {bucket} grants nothing to anyone but its owner")));
    }
    checks
}

const REPLICATION: &str = "replication";

/// Replication rules that would stop replicating the objects, and replicas the migration
/// leaves behind (docs/s3-facts.md §0, §8).
async fn replication(api: &impl BucketApi, f: &PlanFacts, bucket: &str) -> Vec<Check> {
    let rules = match api.replication(bucket).await {
        Ok(r) => r,
        Err(e) if e.code == "ReplicationConfigurationNotFoundError" => {
            return vec![Check::access(Verdict::Ok, REPLICATION, format!("bucket {bucket} replicates nowhere"))]
        }
        Err(e) => {
            return vec![Check::access(
                Verdict::Warn,
                REPLICATION,
                format!(
                    "cannot read the replication of bucket {bucket} ({}): the role lacks s3:GetReplicationConfiguration? Replicas are unchecked",
                    e.text()
                ),
            )]
        }
    };
    let enabled: Vec<_> = rules.iter().filter(|r| r.enabled).collect();
    if enabled.is_empty() {
        return vec![Check::access(
            Verdict::Ok,
            REPLICATION,
            format!("bucket {bucket}: no replication rule is enabled"),
        )];
    }
    let mut checks = Vec::new();
    let rule_name = |r: &crate::s3::ReplicationRule| match &r.id {
        Some(id) if !id.is_empty() => format!("rule \"{id}\""),
        _ => "a rule".to_string(),
    };
    for r in &enabled {
        if !r.replicates_sse_kms {
            checks.push(Check::access(
                Verdict::Warn,
                REPLICATION,
                format!(
                    "bucket {bucket}: {} replicates to {} without SseKmsEncryptedObjects, and S3 does not replicate SSE-KMS objects unless a rule asks: once under the key, new versions of these objects (the copies' included) stop reaching the replica; set SourceSelectionCriteria.SseKmsEncryptedObjects to Enabled and a ReplicaKmsKeyID for the destination",
                    rule_name(r),
                    r.destination
                ),
            ));
        }
    }
    let updates = f.planned(Method::Update);
    if updates > 0 {
        let destinations: Vec<&str> = enabled.iter().map(|r| r.destination.as_str()).collect();
        checks.push(Check::access(
            Verdict::Warn,
            REPLICATION,
            format!(
                "bucket {bucket} replicates to {}, but UpdateObjectEncryption is not replicated: the replicas of the {updates} objects updated in place keep their old encryption; re-encrypt the destination with a plan of its own inventory",
                destinations.join(", ")
            ),
        ));
    }
    if checks.is_empty() {
        let d: Vec<String> = enabled.iter().map(|r| format!("{} ({})", r.destination, rule_name(r))).collect();
        checks.push(Check::access(
            Verdict::Ok,
            REPLICATION,
            format!(
                "bucket {bucket} replicates SSE-KMS objects to {}: the {} copies replicate as new writes",
                d.join(", "),
                f.copies()
            ),
        ));
    }
    checks
}
