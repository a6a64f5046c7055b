use super::*;
use crate::s3::fake::{FakeBehaviour, FakeBucket, FakeStore};
use serde_json::Value;

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/k1";
const OTHER_KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/k2";
const READERS: &str = r#"{"Version":"2012-10-17","Id":"keep-me","Statement":[{"Sid":"Readers","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#;

fn statements(doc: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(doc).unwrap()["Statement"].as_array().unwrap().clone()
}

#[test]
fn a_policy_is_created_when_the_bucket_has_none() {
    let m = merge_policy(None, enforce_statement("b", KEY)).unwrap();
    assert!(m.changed);
    let v: Value = serde_json::from_str(&m.document).unwrap();
    assert_eq!(v["Version"], "2012-10-17");
    assert_eq!(statements(&m.document), vec![enforce_statement("b", KEY)]);
    let s = &statements(&m.document)[0];
    assert_eq!(s["Condition"]["StringNotEquals"]["s3:x-amz-server-side-encryption-aws-kms-key-id"], KEY);
    assert_eq!(s["Resource"], "arn:aws:s3:::b/*");
}

#[test]
fn the_statement_is_merged_beside_the_others_once() {
    let first = merge_policy(Some(READERS), enforce_statement("b", KEY)).unwrap();
    assert!(first.changed);
    let s = statements(&first.document);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0], statements(READERS)[0], "the existing statement is kept as it was");
    let v: Value = serde_json::from_str(&first.document).unwrap();
    assert_eq!(v["Id"], "keep-me", "top-level fields are kept");
    let again = merge_policy(Some(&first.document), enforce_statement("b", KEY)).unwrap();
    assert!(!again.changed, "a second merge adds nothing");
    assert_eq!(statements(&again.document).len(), 2);
    let rekeyed = merge_policy(Some(&first.document), enforce_statement("b", OTHER_KEY)).unwrap();
    assert!(rekeyed.changed);
    let s = statements(&rekeyed.document);
    assert_eq!(s.len(), 2, "another key replaces rekey's statement, never doubles it");
    assert_eq!(s[1]["Condition"]["StringNotEquals"]["s3:x-amz-server-side-encryption-aws-kms-key-id"], OTHER_KEY);
}

#[test]
fn a_single_statement_object_and_bad_policies() {
    let one = r#"{"Version":"2012-10-17","Statement":{"Sid":"X","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#;
    let m = merge_policy(Some(one), enforce_statement("b", KEY)).unwrap();
    assert_eq!(statements(&m.document).len(), 2);
    assert!(merge_policy(Some("not json"), enforce_statement("b", KEY)).unwrap_err().contains("not JSON"));
    assert!(merge_policy(Some("[1]"), enforce_statement("b", KEY)).unwrap_err().contains("not a JSON object"));
}

#[test]
fn the_diff_shows_only_what_changes() {
    let d = line_diff("a\nb\nc", "a\nc\nd");
    assert_eq!(d, vec!["  a", "- b", "  c", "+ d"]);
    assert_eq!(line_diff("", "x"), vec!["+ x"]);
    assert!(line_diff("same\n", "same\n").iter().all(|l| l.starts_with("  ")));
}

fn fake() -> FakeStore {
    let f = FakeStore::new(FakeBehaviour::default());
    f.set_bucket("b", FakeBucket { policy: Some(READERS.into()), ..FakeBucket::new("us-east-1", "111122223333") });
    f
}

#[tokio::test]
async fn finish_sets_the_default_and_merges_the_policy_and_a_second_changes_nothing() {
    let f = fake();
    let target = Target { bucket: "b".into(), key_arn: KEY.into(), bucket_key: true, enforce: true };
    let plan = plan_finish(&f, &target).await.unwrap();
    assert_eq!(plan.encryption.before.as_ref().unwrap().algorithm, "AES256");
    assert!(!plan.encryption.unchanged());
    let p = plan.policy.as_ref().unwrap();
    assert!(!p.unchanged);
    assert!(p.diff.iter().any(|l| l.starts_with("+ ") && l.contains(ENFORCE_SID)), "{:?}", p.diff);
    assert!(!p.diff.iter().any(|l| l.starts_with("- ") && l.contains("Readers")), "nothing of the old is removed");
    // Planning alone (a dry run) writes nothing.
    assert_eq!(f.default_encryption("b").await.unwrap().unwrap().algorithm, "AES256");
    assert_eq!(f.bucket_policy("b").await.unwrap().as_deref(), Some(READERS));

    assert_eq!(apply(&f, &plan).await.unwrap(), Applied { encryption: true, policy: true });
    let d = f.default_encryption("b").await.unwrap().unwrap();
    assert_eq!((d.algorithm.as_str(), d.kms_key_id.as_deref(), d.bucket_key), ("aws:kms", Some(KEY), true));
    assert_eq!(statements(&f.bucket_policy("b").await.unwrap().unwrap()).len(), 2);

    let again = plan_finish(&f, &target).await.unwrap();
    assert!(again.encryption.unchanged() && again.policy.as_ref().unwrap().unchanged);
    assert_eq!(apply(&f, &again).await.unwrap(), Applied::default());
}

#[tokio::test]
async fn a_refused_read_names_the_permission() {
    let f = fake();
    f.fail_call(crate::s3::fake::BucketCall::BucketPolicy, ApiError::aws(403, "AccessDenied", "Access Denied"));
    let target = Target { bucket: "b".into(), key_arn: KEY.into(), bucket_key: false, enforce: true };
    let e = plan_finish(&f, &target).await.unwrap_err().to_string();
    assert!(e.contains("GetBucketPolicy") && e.contains("s3:GetBucketPolicy"), "{e}");
}
