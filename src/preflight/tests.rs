//! The checks on the in-process fake: one test per verdict they can give.

use super::*;
use crate::s3::{ApiError, BucketCall, DefaultEncryption, FakeBehaviour, FakeBucket, FakeStore, KeyMetadata, KeyState};
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
        ["KMS key", "bucket region", "bucket owner", "versioning", "default encryption", "object ownership"]
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
