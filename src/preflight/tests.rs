//! The checks on the in-process fake: one test per verdict they can give.

use super::*;
use crate::s3::{
    AclGrant, AclGrantee, ApiError, BucketCall, DefaultEncryption, FakeBehaviour, FakeBucket, FakeStore, KeyGrant,
    KeyMetadata, KeyState, ReplicationRule,
};
use std::collections::BTreeMap;

const ACCOUNT: &str = "111122223333";
const REGION: &str = "eu-west-1";
const KEY: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const BUCKET: &str = "b";

/// A plan of `updates` updates and `copies` copies of BUCKET under KEY, estimated unversioned.
fn facts(updates: u64, copies: u64) -> PlanFacts {
    let mut planned = BTreeMap::new();
    planned.insert(Method::Update, updates);
    planned.insert(Method::Copy, copies);
    PlanFacts {
        state: "plan.db".into(),
        key_arn: KEY.into(),
        key_region: Some(REGION.into()),
        key_account: Some(ACCOUNT.into()),
        buckets: vec![BUCKET.into()],
        bucket_key: true,
        assumed_versioned: Some(false),
        noncurrent_usd_per_month: 0.0,
        copies_storage_usd_per_month: 0.0,
        planned,
        custom_endpoint: false,
    }
}

fn kms_default() -> DefaultEncryption {
    DefaultEncryption { algorithm: "aws:kms".into(), kms_key_id: Some(KEY.into()), bucket_key: true }
}

/// A bucket set up as rekey recommends, in the key's region and account, and the key.
fn fake() -> FakeStore {
    let f = FakeStore::new(FakeBehaviour::default());
    f.set_key(KEY, KeyMetadata::symmetric());
    f.set_bucket(BUCKET, FakeBucket { default_encryption: Some(kms_default()), ..FakeBucket::new(REGION, ACCOUNT) });
    f
}

fn with_bucket(change: impl FnOnce(&mut FakeBucket)) -> FakeStore {
    let f = fake();
    let mut b = FakeBucket { default_encryption: Some(kms_default()), ..FakeBucket::new(REGION, ACCOUNT) };
    change(&mut b);
    f.set_bucket(BUCKET, b);
    f
}

fn run(api: &FakeStore, facts: &PlanFacts) -> Vec<Check> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(preflight(api, facts))
}

/// The one check titled `title`.
fn only<'a>(checks: &'a [Check], title: &str) -> &'a Check {
    let found: Vec<&Check> = checks.iter().filter(|c| c.title == title).collect();
    assert_eq!(found.len(), 1, "one {title} check in {checks:#?}");
    found[0]
}

fn titles(checks: &[Check]) -> Vec<&str> {
    checks.iter().map(|c| c.title.as_str()).collect()
}

#[test]
fn checklist_lines_carry_their_mark() {
    assert_eq!(Check::new(Verdict::Ok, "a", "b").line(), "✔ a: b");
    assert_eq!(Check::new(Verdict::Warn, "a", "b").line(), "! a: b");
    assert_eq!(Check::new(Verdict::Fail, "a", "b").line(), "✘ a: b");
}

#[test]
fn failures_join_the_failed_checks_and_warnings_count_the_rest() {
    let checks = [
        Check::new(Verdict::Fail, "a", "x"),
        Check::new(Verdict::Warn, "b", "y"),
        Check::new(Verdict::Fail, "c", "z"),
        Check::new(Verdict::Ok, "d", "w"),
    ];
    assert_eq!(failures(&checks).as_deref(), Some("a: x; c: z"));
    assert_eq!(failures(&checks[1..2]), None);
    assert_eq!(warnings(&checks), 1);
}

#[test]
fn a_bucket_set_up_as_recommended_passes_every_check() {
    let checks = run(&fake(), &facts(3, 2));
    assert_eq!(
        titles(&checks),
        [
            "KMS key",
            "bucket region",
            "bucket owner",
            "versioning",
            "default encryption",
            "object ownership",
            "readers",
            "bucket ACL",
            "replication"
        ]
    );
    assert!(checks.iter().all(|c| c.verdict == Verdict::Ok), "{checks:#?}");
    assert!(only(&checks, "bucket owner").detail.contains("owned by account 111122223333"));
}

#[test]
fn the_owner_is_checked_only_when_updates_are_planned() {
    let checks = run(&fake(), &facts(0, 2));
    assert!(!titles(&checks).contains(&"bucket owner"), "{checks:#?}");
}

#[test]
fn a_missing_key_fails_naming_its_account_and_region() {
    let api = FakeStore::new(FakeBehaviour::default());
    api.set_bucket(BUCKET, FakeBucket::new(REGION, ACCOUNT));
    let c = only(&run(&api, &facts(1, 0)), "KMS key").clone();
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("does not exist in account 111122223333 in eu-west-1"), "{}", c.detail);
    assert!(c.detail.contains("NotFoundException"), "{}", c.detail);
}

#[test]
fn a_key_rekey_cannot_describe_names_the_permission() {
    let api = fake();
    api.fail_call(BucketCall::DescribeKey, ApiError::aws(400, "AccessDeniedException", "not authorized"));
    let c = only(&run(&api, &facts(1, 0)), "KMS key").clone();
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("needs kms:DescribeKey"), "{}", c.detail);
}

/// The KMS key check of a key with this metadata.
fn key_check(m: KeyMetadata) -> Check {
    let api = fake();
    api.set_key(KEY, m);
    only(&run(&api, &facts(1, 0)), "KMS key").clone()
}

#[test]
fn a_disabled_key_fails_with_the_command_that_enables_it() {
    let c = key_check(KeyMetadata { state: KeyState::Disabled, ..KeyMetadata::symmetric() });
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("is Disabled: enable it (aws kms enable-key --key-id"), "{}", c.detail);
}

#[test]
fn a_key_pending_deletion_fails_with_its_date() {
    let m = KeyMetadata {
        state: KeyState::PendingDeletion,
        deletion_date: Some("2026-12-31T00:00:00Z".into()),
        ..KeyMetadata::symmetric()
    };
    let c = key_check(m);
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("pending deletion on 2026-12-31T00:00:00Z"), "{}", c.detail);
    assert!(c.detail.contains("cancel-key-deletion"), "{}", c.detail);
}

#[test]
fn a_key_in_another_state_fails_until_it_is_enabled() {
    let c = key_check(KeyMetadata { state: KeyState::Other("Creating".into()), ..KeyMetadata::symmetric() });
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("is Creating: wait until it is Enabled"), "{}", c.detail);
}

#[test]
fn an_asymmetric_or_signing_key_fails() {
    let c = key_check(KeyMetadata { key_spec: Some("RSA_2048".into()), ..KeyMetadata::symmetric() });
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("is a RSA_2048 key"), "{}", c.detail);
    let c = key_check(KeyMetadata { key_usage: Some("GENERATE_VERIFY_MAC".into()), ..KeyMetadata::symmetric() });
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("has key usage GENERATE_VERIFY_MAC"), "{}", c.detail);
}

#[test]
fn a_bucket_in_another_region_fails_and_ends_its_checks() {
    let checks = run(&with_bucket(|b| b.region = "us-east-1".into()), &facts(1, 1));
    assert_eq!(titles(&checks), ["KMS key", "bucket region"]);
    let c = only(&checks, "bucket region");
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("is in us-east-1 but the KMS key"), "{}", c.detail);
    assert!(c.detail.contains("re-plan with a key in us-east-1"), "{}", c.detail);
}

#[test]
fn a_missing_bucket_fails() {
    let mut f = facts(1, 0);
    f.buckets = vec!["gone".into()];
    let c = only(&run(&fake(), &f), "bucket region").clone();
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("bucket gone does not exist (NoSuchBucket"), "{}", c.detail);
}

#[test]
fn a_region_rekey_may_not_read_is_a_warning_naming_the_action() {
    let api = fake();
    api.fail_call(BucketCall::Location, ApiError::aws(403, "AccessDenied", "Access Denied"));
    let checks = run(&api, &facts(1, 0));
    let c = only(&checks, "bucket region");
    assert_eq!(c.verdict, Verdict::Warn);
    assert!(c.detail.contains("the role lacks s3:GetBucketLocation"), "{}", c.detail);
    // GetBucketLocation did not answer, so the owner is not asked through it.
    let owner = only(&checks, "bucket owner");
    assert_eq!(owner.verdict, Verdict::Warn);
    assert!(owner.detail.contains("unchecked, GetBucketLocation did not answer"), "{}", owner.detail);
}

#[test]
fn the_region_an_error_names_is_still_compared_with_the_keys() {
    let api = fake();
    let redirect = ApiError { bucket_region: Some("us-west-2".into()), ..ApiError::aws(301, "PermanentRedirect", "") };
    api.fail_call(BucketCall::Location, redirect);
    let c = only(&run(&api, &facts(0, 1)), "bucket region").clone();
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("is in us-west-2 but the KMS key"), "{}", c.detail);
}

#[test]
fn a_bucket_of_another_account_fails_when_updates_are_planned() {
    let c = only(&run(&with_bucket(|b| b.owner = "444455556666".into()), &facts(1, 0)), "bucket owner").clone();
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("is not owned by account 111122223333"), "{}", c.detail);
    assert!(c.detail.contains("--method copy"), "{}", c.detail);
}

#[test]
fn an_endpoint_that_ignores_the_expected_owner_leaves_the_owner_unconfirmed() {
    let api = with_bucket(|b| b.ignores_expected_owner = true);
    let mut f = facts(1, 0);
    let c = only(&run(&api, &f), "bucket owner").clone();
    assert_eq!(c.verdict, Verdict::Ok, "AWS enforces ExpectedBucketOwner: not asked twice");
    f.custom_endpoint = true;
    let c = only(&run(&api, &f), "bucket owner").clone();
    assert_eq!(c.verdict, Verdict::Warn);
    assert!(c.detail.contains("the endpoint ignores ExpectedBucketOwner"), "{}", c.detail);
}

#[test]
fn a_versioned_bucket_the_plan_assumed_unversioned_warns_of_the_noncurrent_cost() {
    let api = with_bucket(|b| b.versioning = Some("Enabled".into()));
    let mut f = facts(0, 4);
    f.copies_storage_usd_per_month = 12.5;
    let c = only(&run(&api, &f), "versioning").clone();
    assert_eq!(c.verdict, Verdict::Warn);
    assert!(c.detail.contains("each of the 4 copies keeps its old version"), "{}", c.detail);
    assert!(c.detail.contains("about $12.50/month"), "{}", c.detail);
    assert!(c.detail.contains("--versioned true"), "{}", c.detail);
}

#[test]
fn an_unversioned_bucket_the_plan_assumed_versioned_warns_of_early_deletion() {
    let api = with_bucket(|b| b.versioning = Some("Suspended".into()));
    let mut f = facts(0, 4);
    f.assumed_versioned = Some(true);
    f.noncurrent_usd_per_month = 0.001;
    let c = only(&run(&api, &f), "versioning").clone();
    assert_eq!(c.verdict, Verdict::Warn);
    assert!(c.detail.contains("is not versioned (Suspended)"), "{}", c.detail);
    assert!(c.detail.contains("($0.001000/month)"), "a small amount is not shown as $0.00: {}", c.detail);
}

#[test]
fn a_versioning_mismatch_without_copies_costs_nothing() {
    let api = with_bucket(|b| b.versioning = Some("Enabled".into()));
    let c = only(&run(&api, &facts(5, 0)), "versioning").clone();
    assert_eq!(c.verdict, Verdict::Ok);
    assert!(c.detail.contains("unlike the plan assumed; no copies are planned"), "{}", c.detail);
}

#[test]
fn versioning_rekey_may_not_read_is_a_warning_naming_the_action() {
    let api = fake();
    api.fail_call(BucketCall::Versioning, ApiError::aws(403, "AccessDenied", "Access Denied"));
    let c = only(&run(&api, &facts(1, 0)), "versioning").clone();
    assert_eq!(c.verdict, Verdict::Warn);
    assert!(c.detail.contains("(AccessDenied: Access Denied): the role lacks s3:GetBucketVersioning"), "{}", c.detail);
}

/// The default-encryption check of a bucket with this default.
fn encryption_check(d: Option<DefaultEncryption>) -> Check {
    only(&run(&with_bucket(|b| b.default_encryption = d), &facts(1, 0)), "default encryption").clone()
}

#[test]
fn a_default_still_sse_s3_warns_with_the_command_that_sets_the_key() {
    let c = encryption_check(FakeBucket::new(REGION, ACCOUNT).default_encryption);
    assert_eq!(c.verdict, Verdict::Warn);
    assert!(c.detail.contains("the default is SSE-S3 (AES256), so new writes keep arriving outside this key"));
    assert!(c.detail.contains("aws s3api put-bucket-encryption --bucket b"), "{}", c.detail);
    assert!(c.detail.contains(KEY), "{}", c.detail);
}

#[test]
fn other_defaults_warn_each_in_their_words() {
    let c = encryption_check(None);
    assert!(c.verdict == Verdict::Warn && c.detail.contains("bucket b: no default encryption"), "{}", c.detail);
    let c = encryption_check(Some(DefaultEncryption { bucket_key: false, ..kms_default() }));
    assert!(c.verdict == Verdict::Warn && c.detail.contains("with this key but no Bucket Key"), "{}", c.detail);
    let other = "arn:aws:kms:eu-west-1:111122223333:key/other";
    let c = encryption_check(Some(DefaultEncryption { kms_key_id: Some(other.into()), ..kms_default() }));
    assert!(c.verdict == Verdict::Warn && c.detail.contains("another key (arn:aws:kms"), "{}", c.detail);
    let c = encryption_check(Some(DefaultEncryption { kms_key_id: None, ..kms_default() }));
    assert!(c.verdict == Verdict::Warn && c.detail.contains("AWS managed key aws/s3"), "{}", c.detail);
}

#[test]
fn a_default_encryption_rekey_may_not_read_still_recommends_the_fix() {
    let api = fake();
    api.fail_call(BucketCall::DefaultEncryption, ApiError::aws(403, "AccessDenied", "Access Denied"));
    let c = only(&run(&api, &facts(1, 0)), "default encryption").clone();
    assert_eq!(c.verdict, Verdict::Warn);
    assert!(c.detail.contains("cannot read the default encryption of bucket b (AccessDenied"), "{}", c.detail);
    assert!(c.detail.contains("recommended: aws s3api put-bucket-encryption"), "{}", c.detail);
}

#[test]
fn acls_enabled_warn_only_when_copies_would_lose_them() {
    let api = with_bucket(|b| b.ownership = Some("ObjectWriter".into()));
    let c = only(&run(&api, &facts(0, 3)), "object ownership").clone();
    assert_eq!(c.verdict, Verdict::Warn);
    assert!(c.detail.contains("each of the 3 copies gets the default private ACL"), "{}", c.detail);
    let c = only(&run(&api, &facts(3, 0)), "object ownership").clone();
    assert_eq!(c.verdict, Verdict::Ok);
    assert!(c.detail.contains("ACLs enabled; updates keep them"), "{}", c.detail);
}

#[test]
fn a_bucket_without_ownership_controls_has_acls_enabled() {
    let api = with_bucket(|b| b.ownership = None);
    let c = only(&run(&api, &facts(0, 1)), "object ownership").clone();
    assert_eq!(c.verdict, Verdict::Warn);
    assert!(c.detail.contains("bucket b: ObjectWriter, ACLs are enabled"), "{}", c.detail);
}

#[test]
fn a_plan_without_buckets_warns_that_nothing_was_checked() {
    let mut f = facts(1, 0);
    f.buckets.clear();
    let checks = run(&fake(), &f);
    assert_eq!(titles(&checks), ["KMS key", "bucket"]);
    assert_eq!(checks[1].verdict, Verdict::Warn);
}

#[test]
fn a_refusal_tells_how_to_resume() {
    let r = Refused::Checks { state: "p.db".into(), failures: "KMS key: gone".into() };
    assert_eq!(
        r.to_string(),
        "pre-flight failed, no object was touched: KMS key: gone. Fix it and run `rekey run --state p.db` again (--skip-preflight runs without these checks)"
    );
    let r = Refused::Canary { state: "p.db".into(), done: 1, failures: "canary copy: x".into() };
    assert!(r
        .to_string()
        .starts_with("pre-flight canary failed (1 canary objects re-encrypted, nothing else touched)"));
}

// ---- who will lose access -------------------------------------------------------------------

const PARTNER_ROLE: &str = "arn:aws:iam::444455556666:role/reader";
const DISTRIBUTION: &str = "arn:aws:cloudfront::111122223333:distribution/E1";

/// A bucket policy allowing `principal` (JSON) s3:GetObject, with `condition` (JSON or "").
fn bucket_policy(principal: &str, condition: &str) -> String {
    let condition = if condition.is_empty() { String::new() } else { format!(r#","Condition":{condition}"#) };
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"Readers","Effect":"Allow","Principal":{principal},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"{condition}}}]}}"#
    )
}

fn with_policy(principal: &str, condition: &str) -> FakeStore {
    let policy = bucket_policy(principal, condition);
    with_bucket(move |b| b.policy = Some(policy))
}

/// The access checks titled `title`.
fn access_checks(api: &FakeStore, f: &PlanFacts, title: &str) -> Vec<Check> {
    let checks = run(api, f);
    checks.into_iter().filter(|c| c.title == title).collect()
}

fn one_warning(checks: &[Check]) -> Check {
    let w: Vec<&Check> = checks.iter().filter(|c| c.verdict == Verdict::Warn).collect();
    assert_eq!(w.len(), 1, "one warning in {checks:#?}");
    assert_eq!(w[0].section, Section::Access);
    w[0].clone()
}

#[test]
fn a_cross_account_reader_the_key_policy_leaves_out_is_warned_with_the_statement_to_add() {
    let api = with_policy(&format!(r#"{{"AWS":"{PARTNER_ROLE}"}}"#), "");
    let c = one_warning(&access_checks(&api, &facts(3, 0), "readers"));
    assert!(
        c.detail.starts_with(&format!(
            "{PARTNER_ROLE} reads bucket b (statement \"Readers\" of its policy), but the key policy does not allow it kms:Decrypt: it will get AccessDenied for each migrated object"
        )),
        "{}",
        c.detail
    );
    assert!(c.detail.contains(&format!(r#""Principal":{{"AWS":"{PARTNER_ROLE}"}}"#)), "{}", c.detail);
    assert!(c.detail.contains(r#""Action":"kms:Decrypt""#), "{}", c.detail);
}

#[test]
fn a_reader_the_key_policy_or_a_grant_lets_decrypt_passes() {
    let api = with_policy(&format!(r#"{{"AWS":["{PARTNER_ROLE}","arn:aws:iam::777788889999:root"]}}"#), "");
    api.set_key_policy(
        KEY,
        &format!(
            r#"{{"Statement":[{{"Sid":"Partner","Effect":"Allow","Principal":{{"AWS":"{PARTNER_ROLE}"}},"Action":["kms:Decrypt"],"Resource":"*"}}]}}"#
        ),
    );
    api.set_key_grants(
        KEY,
        vec![KeyGrant { grantee: "arn:aws:iam::777788889999:root".into(), operations: vec!["Decrypt".into()] }],
    );
    let checks = access_checks(&api, &facts(3, 0), "readers");
    assert_eq!(checks.len(), 1, "{checks:#?}");
    assert_eq!(checks[0].verdict, Verdict::Ok);
    assert!(
        checks[0].detail.contains(&format!("{PARTNER_ROLE} (key policy statement \"Partner\")")),
        "{}",
        checks[0].detail
    );
    assert!(checks[0].detail.contains("account 777788889999 (a grant on the key)"), "{}", checks[0].detail);
}

#[test]
fn an_account_reader_allowed_through_its_own_iam_is_told_so() {
    let api = with_policy(r#"{"AWS":"444455556666"}"#, "");
    api.set_key_policy(
        KEY,
        r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"kms:*","Resource":"*"}]}"#,
    );
    let checks = access_checks(&api, &facts(3, 0), "readers");
    assert_eq!(checks[0].verdict, Verdict::Ok, "{checks:#?}");
    assert!(
        checks[0].detail.contains("provided its own IAM policy allows kms:Decrypt on the key"),
        "{}",
        checks[0].detail
    );
}

#[test]
fn public_readers_lose_access_whatever_the_key_policy() {
    let api = with_policy(r#""*""#, "");
    api.set_key_policy(KEY, r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}]}"#);
    let c = one_warning(&access_checks(&api, &facts(3, 0), "readers"));
    assert!(c.detail.contains("bucket b lets anyone read its objects"), "{}", c.detail);
    assert!(c.detail.contains("S3 refuses anonymous requests for SSE-KMS objects"), "{}", c.detail);
}

#[test]
fn anyone_under_a_condition_is_checked_against_the_key_policy() {
    let api = with_policy(r#""*""#, r#"{"StringEquals":{"aws:PrincipalOrgID":"o-abc"}}"#);
    let c = one_warning(&access_checks(&api, &facts(3, 0), "readers"));
    assert!(c.detail.contains(r#"anyone (Principal "*") reads bucket b (statement "Readers" of its policy under the condition StringEquals {"aws:PrincipalOrgID":"o-abc"})"#), "{}", c.detail);
    assert!(c.detail.contains("does not allow it kms:Decrypt"), "{}", c.detail);
    // The statement to add is as narrow as the bucket policy's: never kms:Decrypt for anyone.
    assert!(c.detail.contains(r#""Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-abc"}}"#), "{}", c.detail);
}

#[test]
fn cloudfront_oai_cannot_read_and_oac_needs_the_key_policy() {
    let oai = "arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity E2QWRUHAPOMQZL";
    let c = one_warning(&access_checks(&with_policy(&format!(r#"{{"AWS":"{oai}"}}"#), ""), &facts(3, 0), "readers"));
    assert!(c.detail.contains("an origin access identity cannot read SSE-KMS objects"), "{}", c.detail);
    assert!(c.detail.contains("origin access control (OAC)"), "{}", c.detail);

    let condition = format!(r#"{{"StringEquals":{{"AWS:SourceArn":"{DISTRIBUTION}"}}}}"#);
    let api = with_policy(r#"{"Service":"cloudfront.amazonaws.com"}"#, &condition);
    let c = one_warning(&access_checks(&api, &facts(3, 0), "readers"));
    assert!(c.detail.contains("the service cloudfront.amazonaws.com reads bucket b"), "{}", c.detail);
    assert!(c.detail.contains("the distribution will answer 403 for each migrated object"), "{}", c.detail);
    // The statement to add keeps the distribution's condition.
    assert!(
        c.detail.contains(&format!(r#""Condition":{{"StringEquals":{{"AWS:SourceArn":"{DISTRIBUTION}"}}}}"#)),
        "{}",
        c.detail
    );

    api.set_key_policy(
        KEY,
        &format!(r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"Service":"cloudfront.amazonaws.com"}},"Action":"kms:Decrypt","Resource":"*","Condition":{condition}}}]}}"#),
    );
    let checks = access_checks(&api, &facts(3, 0), "readers");
    assert!(checks.iter().all(|c| c.verdict == Verdict::Ok), "{checks:#?}");
}

#[test]
fn the_aws_managed_key_with_readers_outside_its_account_is_one_warning() {
    let api = with_policy(&format!(r#"{{"AWS":["{PARTNER_ROLE}","arn:aws:iam::111122223333:role/app"]}}"#), "");
    api.set_key(KEY, KeyMetadata { key_manager: Some("AWS".into()), ..KeyMetadata::symmetric() });
    let c = one_warning(&access_checks(&api, &facts(3, 0), "readers"));
    assert!(c.detail.contains("is the AWS managed key aws/s3, whose key policy cannot be changed"), "{}", c.detail);
    assert!(c.detail.contains(PARTNER_ROLE), "{}", c.detail);
    assert!(!c.detail.contains("role/app"), "the key's own account may use it: {}", c.detail);
    assert!(c.detail.contains("re-plan with a customer managed key"), "{}", c.detail);
}

#[test]
fn a_key_policy_rekey_may_not_read_leaves_the_readers_unchecked() {
    let api = with_policy(&format!(r#"{{"AWS":"{PARTNER_ROLE}"}}"#), "");
    api.fail_call(BucketCall::KeyPolicy, ApiError::aws(400, "AccessDeniedException", "not authorized"));
    let c = one_warning(&access_checks(&api, &facts(3, 0), "readers"));
    assert!(c.detail.contains("the role needs kms:GetKeyPolicy"), "{}", c.detail);
    assert!(c.detail.contains("is unchecked"), "{}", c.detail);
}

#[test]
fn a_bucket_without_a_policy_needs_no_key_policy() {
    let api = fake();
    api.fail_call(BucketCall::KeyPolicy, ApiError::aws(400, "AccessDeniedException", "not authorized"));
    let checks = access_checks(&api, &facts(3, 0), "readers");
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].verdict, Verdict::Ok);
    assert!(checks[0].detail.contains("has no bucket policy"), "{}", checks[0].detail);
    let api = fake();
    api.fail_call(BucketCall::BucketPolicy, ApiError::aws(403, "AccessDenied", "Access Denied"));
    let c = one_warning(&access_checks(&api, &facts(3, 0), "readers"));
    assert!(c.detail.contains("the role lacks s3:GetBucketPolicy"), "{}", c.detail);
}

#[test]
fn acl_grants_to_everyone_or_other_accounts_are_warned() {
    let api = with_bucket(|b| {
        b.acl.grants.push(AclGrant { grantee: AclGrantee::Group(ALL_USERS.into()), permission: "READ".into() });
        b.acl.grants.push(AclGrant {
            grantee: AclGrantee::CanonicalUser { id: "abc123".into(), name: None },
            permission: "FULL_CONTROL".into(),
        });
        b.acl.grants.push(AclGrant {
            grantee: AclGrantee::Group("http://acs.amazonaws.com/groups/s3/LogDelivery".into()),
            permission: "WRITE".into(),
        });
    });
    let checks = access_checks(&api, &facts(3, 0), "bucket ACL");
    assert_eq!(checks.len(), 2, "the owner and log delivery are no readers: {checks:#?}");
    assert!(checks[0].detail.contains("grants READ to everyone (AllUsers)"), "{}", checks[0].detail);
    assert!(checks[0].detail.contains("S3 refuses anonymous requests"), "{}", checks[0].detail);
    assert!(checks[1].detail.contains("grants FULL_CONTROL to canonical user abc123"), "{}", checks[1].detail);
    assert!(checks.iter().all(|c| c.verdict == Verdict::Warn));
}

const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";

fn rule(id: &str, sse_kms: bool) -> ReplicationRule {
    ReplicationRule {
        id: Some(id.into()),
        enabled: true,
        replicates_sse_kms: sse_kms,
        destination: "arn:aws:s3:::b-replica".into(),
        destination_account: None,
        replica_kms_key: sse_kms.then(|| KEY.to_string()),
    }
}

#[test]
fn replication_that_skips_sse_kms_objects_is_warned() {
    let api = with_bucket(|b| b.replication = vec![rule("all", false)]);
    let checks = access_checks(&api, &facts(0, 2), "replication");
    let c = one_warning(&checks);
    assert!(
        c.detail.contains("rule \"all\" replicates to arn:aws:s3:::b-replica without SseKmsEncryptedObjects"),
        "{}",
        c.detail
    );
}

#[test]
fn updates_in_place_are_not_replicated() {
    let api = with_bucket(|b| b.replication = vec![rule("kms", true)]);
    let c = one_warning(&access_checks(&api, &facts(5, 0), "replication"));
    assert!(c.detail.contains("UpdateObjectEncryption is not replicated: the replicas of the 5 objects updated in place keep their old encryption"), "{}", c.detail);
    // Copies only, with SSE-KMS replication on: nothing to warn of.
    let checks = access_checks(&api, &facts(0, 2), "replication");
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].verdict, Verdict::Ok, "{checks:#?}");
    assert!(checks[0].detail.contains("the 2 copies replicate as new writes"), "{}", checks[0].detail);
    // A disabled rule replicates nothing.
    let api = with_bucket(|b| b.replication = vec![ReplicationRule { enabled: false, ..rule("off", false) }]);
    assert_eq!(access_checks(&api, &facts(5, 0), "replication")[0].verdict, Verdict::Ok);
}

#[test]
fn strict_turns_access_warnings_into_failures_and_leaves_the_rest() {
    // A default still SSE-S3 (a setup warning) and a public bucket (an access warning).
    let api = with_bucket(|b| {
        b.default_encryption = FakeBucket::new(REGION, ACCOUNT).default_encryption;
        b.policy = Some(bucket_policy(r#""*""#, ""));
    });
    let mut checks = run(&api, &facts(3, 0));
    assert_eq!(failures(&checks), None, "warnings do not stop the run");
    strict(&mut checks);
    let f = failures(&checks).expect("--strict fails");
    assert!(f.starts_with("readers: bucket b lets anyone read its objects"), "{f}");
    assert!(f.ends_with("(--strict)"), "{f}");
    assert_eq!(only(&checks, "default encryption").verdict, Verdict::Warn);
}
