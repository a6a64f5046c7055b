//! Verify end to end against the in-process [`FakeStore`]: a small plan is written into a
//! checkpoint, the engine runs it on the fake (so every object is `done` exactly as a run
//! leaves it), the fake's objects are then tampered with, and a pass must record the
//! right verdict, with the right detail, for each object in the checkpoint.

use super::*;
use crate::exec::engine::{run, RunConfig};
use crate::exec::progress::ProgressMode;
use crate::exec::{RetryPolicy, Stopper};
use crate::inventory::InventoryRow;
use crate::plan::classify::{Decision, Method};
use crate::s3::{FakeBehaviour, FakeObject, FakeStore, S3CallError, S3ErrorKind};
use crate::store::{Checkpoint, PlanWriter, PlannedObject, RunRecord, Verdict};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const OTHER_KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/ffffffff-0000-0000-0000-000000000000";
const BUCKET: &str = "bkt";

fn fast_policy() -> RetryPolicy {
    RetryPolicy { max_attempts: 5, min_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) }
}

/// An SSE-S3 object planned for `method`; `versioned` gives it an inventoried version.
fn planned(key: &str, method: Method, versioned: bool) -> PlannedObject {
    PlannedObject {
        row: InventoryRow {
            version_id: versioned.then(|| format!("v-{key}")),
            is_latest: versioned.then_some(true),
            ..InventoryRow::sse_s3(BUCKET, key, 1000 + key.len() as u64, &format!("etag-{key}"))
        },
        decision: Decision::Migrate(method),
    }
}

/// A checkpoint of `objs` (planned with `bucket_key`), run to the end by the engine on a
/// fake holding every object as inventoried.
struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Arc<FakeStore>,
    expect: Expect,
}

async fn done(objs: &[PlannedObject], bucket_key: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.rekey");
    let mut w = PlanWriter::create(&path, false).unwrap();
    w.insert(objs).unwrap();
    let options = format!("{{\"bucket_key\":{bucket_key}}}");
    w.finish(&RunRecord {
        inventory_source: "test-inventory".into(),
        inventory_created: None,
        source_bucket: Some(BUCKET.into()),
        kms_key_arn: Some(KEY_ARN.into()),
        options_json: options,
        prices_json: "{}".into(),
        estimate_json: "{}".into(),
    })
    .unwrap();
    let store = Arc::new(FakeStore::new(FakeBehaviour::default()));
    for p in objs {
        let mut o = FakeObject::sse_s3(p.row.etag.as_deref().unwrap());
        o.version_id = p.row.version_id.clone();
        o.size = p.row.size.unwrap();
        store.insert(&p.row.bucket, &p.row.key, o);
    }
    let mut cfg = RunConfig::new(path.clone(), KEY_ARN.into());
    cfg.bucket_key = bucket_key;
    (cfg.kms_rps, cfg.s3_rps) = (100_000.0, 100_000.0);
    cfg.progress = ProgressMode::Quiet;
    cfg.policy = fast_policy();
    let report = run(store.clone(), cfg, Stopper::default()).await.expect("run");
    let cp = Checkpoint::open(&path).unwrap();
    assert_eq!(cp.done_count().unwrap(), objs.len() as u64, "every object done before verify: {report:?}");
    Fixture { _dir: dir, path, store, expect: Expect { key_arn: KEY_ARN.into(), bucket_key } }
}

impl Fixture {
    /// Change the current version of `key` in the fake.
    fn tamper(&self, key: &str, f: impl FnOnce(&mut FakeObject)) {
        let mut o = self.store.get(BUCKET, key).expect("the object is there");
        f(&mut o);
        self.store.insert(BUCKET, key, o);
    }

    async fn verify(&self, selection: Selection) -> Result<Tally, VerifyError> {
        let cp = Checkpoint::open(&self.path).unwrap();
        let opts = PassOptions { concurrency: 4, policy: fast_policy() };
        let expect = Arc::new(self.expect.clone());
        verify_all(self.store.clone(), &cp, selection, 0, expect, &opts, std::future::pending()).await
    }

    /// Every object's recorded verdict and detail, by key.
    fn recorded(&self) -> BTreeMap<String, (Option<String>, Option<String>)> {
        let cp = Checkpoint::open(&self.path).unwrap();
        let mut stmt =
            cp.connection().prepare("SELECT key, verify_verdict, verify_detail, verified_at FROM objects").unwrap();
        let rows = stmt
            .query_map([], |r| {
                let at: Option<String> = r.get(3)?;
                let verdict: Option<String> = r.get(1)?;
                assert_eq!(at.is_some(), verdict.is_some(), "a verdict has a time");
                Ok((r.get::<_, String>(0)?, (verdict, r.get(2)?)))
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// `key`'s recorded verdict, and its detail (empty when none).
    fn verdict_of(&self, key: &str) -> (String, String) {
        let (v, d) = self.recorded().remove(key).expect("a planned key");
        (v.expect("a verdict was recorded"), d.unwrap_or_default())
    }
}

fn s3_error(kind: S3ErrorKind, status: u16, code: &str, message: &str) -> S3CallError {
    S3CallError { kind, code: code.into(), message: message.into(), status: Some(status) }
}

#[tokio::test]
async fn correctly_re_encrypted_objects_are_ok() {
    let objs =
        [planned("u", Method::Update, true), planned("c", Method::Copy, true), planned("n", Method::Copy, false)];
    let f = done(&objs, true).await;
    let tally = f.verify(Selection::all()).await.unwrap();
    assert_eq!((tally.checked, tally.not_ok(), tally.interrupted), (3, 0, false));
    for k in ["u", "c", "n"] {
        assert_eq!(f.verdict_of(k), ("ok".into(), String::new()), "{k}");
    }
}

#[tokio::test]
async fn a_wrong_key_is_a_mismatch_naming_the_key() {
    let f = done(&[planned("u", Method::Update, false)], false).await;
    f.tamper("u", |o| o.kms_key_id = Some(OTHER_KEY_ARN.into()));
    let tally = f.verify(Selection::all()).await.unwrap();
    assert_eq!(tally.by_verdict[&Verdict::Mismatch], 1);
    let (v, d) = f.verdict_of("u");
    assert_eq!(v, "mismatch");
    assert_eq!(d, format!("KMS key {OTHER_KEY_ARN}, planned {KEY_ARN}"));
    assert_eq!(tally.listed.values().next().unwrap().item.key, "u", "listed in the summary");
}

#[tokio::test]
async fn a_bucket_key_not_as_planned_is_a_mismatch() {
    let f = done(&[planned("u", Method::Update, false)], true).await;
    f.tamper("u", |o| o.bucket_key = false);
    f.verify(Selection::all()).await.unwrap();
    assert_eq!(f.verdict_of("u"), ("mismatch".into(), "Bucket Key off, planned on".into()));
}

#[tokio::test]
async fn a_changed_storage_class_is_a_mismatch() {
    let f = done(&[planned("c", Method::Copy, false)], false).await;
    f.tamper("c", |o| o.storage_class = "GLACIER_IR".into());
    f.verify(Selection::all()).await.unwrap();
    assert_eq!(f.verdict_of("c"), ("mismatch".into(), "storage class GLACIER_IR, inventoried STANDARD".into()));
}

#[tokio::test]
async fn an_update_whose_etag_changed_is_a_mismatch() {
    let f = done(&[planned("u", Method::Update, false)], false).await;
    f.tamper("u", |o| o.etag = "rewritten".into());
    f.verify(Selection::all()).await.unwrap();
    assert_eq!(f.verdict_of("u"), ("mismatch".into(), "ETag rewritten, inventoried etag-u".into()));
}

#[tokio::test]
async fn a_copy_with_a_different_size_is_a_mismatch() {
    let f = done(&[planned("c", Method::Copy, false)], false).await;
    f.tamper("c", |o| o.size = 7);
    f.verify(Selection::all()).await.unwrap();
    assert_eq!(f.verdict_of("c"), ("mismatch".into(), "7 bytes, inventoried 1001".into()));
}

#[tokio::test]
async fn a_copy_whose_metadata_differs_from_the_noncurrent_inventoried_version_is_a_mismatch() {
    let f = done(&[planned("c", Method::Copy, true), planned("t", Method::Copy, true)], false).await;
    // The copy left the inventoried version behind, noncurrent: give it what the new one lacks.
    let mut was = f.store.get_noncurrent(BUCKET, "c", "v-c").expect("the copy kept the inventoried version");
    was.metadata.insert("owner".into(), "alice".into());
    f.store.insert_noncurrent(BUCKET, "c", was);
    let mut was = f.store.get_noncurrent(BUCKET, "t", "v-t").unwrap();
    was.tags.push(("team".into(), "a".into()));
    f.store.insert_noncurrent(BUCKET, "t", was);
    f.verify(Selection::all()).await.unwrap();
    let (v, d) = f.verdict_of("c");
    assert_eq!(v, "mismatch");
    assert_eq!(d, "user metadata differs from the inventoried version's: lost owner");
    assert_eq!(f.verdict_of("t"), ("mismatch".into(), "0 tags, the inventoried version has 1".into()));
}

#[tokio::test]
async fn a_write_since_the_run_is_named_in_the_detail() {
    let f = done(&[planned("c", Method::Copy, true)], false).await;
    f.tamper("c", |o| {
        o.version_id = Some("someone-else".into());
        o.sse = Some("AES256".into());
    });
    f.verify(Selection::all()).await.unwrap();
    let (v, d) = f.verdict_of("c");
    assert_eq!(v, "mismatch");
    assert!(d.starts_with("encryption AES256, planned aws:kms; "), "{d}");
    assert!(d.contains("the current version someone-else is not the one rekey left (copy-"), "{d}");
}

#[tokio::test]
async fn an_object_gone_is_missing() {
    let f = done(&[planned("u", Method::Update, false), planned("c", Method::Copy, false)], false).await;
    f.store.remove(BUCKET, "c");
    let tally = f.verify(Selection::all()).await.unwrap();
    assert_eq!((tally.by_verdict[&Verdict::Ok], tally.by_verdict[&Verdict::Missing]), (1, 1));
    assert_eq!(f.verdict_of("c"), ("missing".into(), "HEAD answered 404: the object has no current version".into()));
}

#[tokio::test]
async fn a_throttle_then_success_is_retried_and_ok() {
    let f = done(&[planned("u", Method::Update, false)], false).await;
    let heads = f.store.counters().heads;
    f.store.fail_next(s3_error(S3ErrorKind::ThrottledS3, 503, "SlowDown", "Please reduce your request rate."));
    f.store.fail_next(s3_error(S3ErrorKind::Transient, 500, "InternalError", "try again"));
    f.verify(Selection::all()).await.unwrap();
    assert_eq!(f.verdict_of("u"), ("ok".into(), String::new()));
    assert_eq!(f.store.counters().heads, heads + 1, "the third attempt reached the object");
}

#[tokio::test]
async fn a_permanent_error_is_an_error() {
    let f = done(&[planned("u", Method::Update, false), planned("c", Method::Copy, false)], false).await;
    f.store.fail_next(s3_error(S3ErrorKind::Rejected, 400, "InvalidRequest", "no"));
    let tally = f.verify(Selection::all()).await.unwrap();
    assert_eq!((tally.by_verdict[&Verdict::Error], tally.by_verdict[&Verdict::Ok]), (1, 1));
    let errors: Vec<_> = f.recorded().into_values().filter(|(v, _)| v.as_deref() == Some("error")).collect();
    assert_eq!(errors, [(Some("error".into()), Some("HEAD: 400 InvalidRequest: no".into()))]);
}

#[tokio::test]
async fn a_refused_first_head_stops_the_pass_without_a_verdict() {
    let f = done(&[planned("u", Method::Update, false)], false).await;
    f.store.fail_next(s3_error(S3ErrorKind::Fatal, 403, "Http403", ""));
    let err = f.verify(Selection::all()).await.unwrap_err();
    assert!(matches!(&err, VerifyError::Refused { why } if why == "403 Forbidden"), "{err}");
    assert!(f.recorded().values().all(|(v, _)| v.is_none()), "no verdict recorded");
}

#[tokio::test]
async fn a_sample_checks_only_its_objects() {
    let objs: Vec<_> = (0..20).map(|i| planned(&format!("k{i:02}"), Method::Update, false)).collect();
    let f = done(&objs, false).await;
    let cp = Checkpoint::open(&f.path).unwrap();
    let selection = Selection::sample(&cp, 5, 3).unwrap();
    assert_eq!(selection.sample_len(), Some(5));
    let tally = f.verify(selection).await.unwrap();
    assert_eq!(tally.checked, 5);
    assert_eq!(f.recorded().values().filter(|(v, _)| v.is_some()).count(), 5);
}

#[tokio::test]
async fn a_stop_ends_the_pass_as_interrupted() {
    let f = done(&[planned("u", Method::Update, false)], false).await;
    let cp = Checkpoint::open(&f.path).unwrap();
    let opts = PassOptions { concurrency: 1, policy: fast_policy() };
    let expect = Arc::new(f.expect.clone());
    let tally = verify_all(f.store.clone(), &cp, Selection::all(), 1, expect, &opts, async {}).await.unwrap();
    assert!(tally.interrupted);
    assert_eq!(tally.checked, 0);
}

/// The summary the CLI renders says what the tally found.
#[tokio::test]
async fn the_summary_counts_and_lists_what_is_not_ok() {
    let f = done(&[planned("u", Method::Update, false), planned("c", Method::Copy, false)], false).await;
    f.store.remove(BUCKET, "c");
    let tally = f.verify(Selection::all()).await.unwrap();
    let s = Summary::new(tally, &f.expect, "state.rekey".into(), 2, None, 0.5);
    assert_eq!((s.checked, s.not_ok, s.by_verdict["ok"], s.by_verdict["missing"]), (2, 1, 1, 1));
    assert_eq!(s.not_ok_counts(), "1 missing");
    assert_eq!(s.listed.len(), 1);
    assert_eq!((s.listed[0].key.as_str(), s.listed[0].method), ("c", "copy"));
}

mod replaced_versions {
    use crate::exec::RetryPolicy;
    use crate::s3::fake::{FakeBehaviour, FakeObject, FakeStore};
    use crate::store::{ReplacedItem, Verdict};
    use crate::verify::replaced::{dispose, Disposal};
    use crate::verify::Expect;

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/k";

    /// A copied object: its new version current under the key, its old one noncurrent.
    fn copied(locked_old: bool) -> (FakeStore, ReplacedItem) {
        let f = FakeStore::new(FakeBehaviour::default());
        let old = FakeObject { version_id: Some("v1".into()), size: 5, locked: locked_old, ..FakeObject::sse_s3("e1") };
        f.insert_noncurrent("b", "k", old);
        let new = FakeObject {
            version_id: Some("v2".into()),
            sse: Some("aws:kms".into()),
            kms_key_id: Some(KEY.into()),
            size: 5,
            ..FakeObject::sse_s3("e2")
        };
        f.insert("b", "k", new);
        let item = ReplacedItem {
            id: 1,
            bucket: "b".into(),
            key: "k".into(),
            method: crate::vocab::Method::Copy,
            replaced_version_id: "v1".into(),
            size: Some(5),
            etag: Some("e1".into()),
            new_etag: Some("e2".into()),
            new_version_id: Some("v2".into()),
            lock_mode: None,
            lock_retain_until: None,
            legal_hold: false,
            verify_verdict: Some(Verdict::Ok),
        };
        (f, item)
    }

    fn expect() -> Expect {
        Expect { key_arn: KEY.into(), bucket_key: false }
    }

    #[tokio::test]
    async fn a_verified_copys_old_version_is_deleted_and_nothing_else() {
        let (f, item) = copied(false);
        let d = dispose(&f, &RetryPolicy::default(), &expect(), &item).await.unwrap();
        assert_eq!(d, Disposal::Deleted);
        assert!(f.get_noncurrent("b", "k", "v1").is_none());
        assert_eq!(f.get("b", "k").unwrap().version_id.as_deref(), Some("v2"), "the current version stays");
        let again = dispose(&f, &RetryPolicy::default(), &expect(), &item).await.unwrap();
        assert_eq!(again, Disposal::AlreadyGone);
    }

    #[tokio::test]
    async fn it_is_kept_when_not_verified_locked_or_not_the_bytes_copied() {
        let policy = RetryPolicy::default();
        let (f, item) = copied(false);
        let unverified = ReplacedItem { verify_verdict: Some(Verdict::Mismatch), ..item.clone() };
        assert!(
            matches!(dispose(&f, &policy, &expect(), &unverified).await.unwrap(), Disposal::Kept(w) if w.contains("mismatch"))
        );
        let held = ReplacedItem { legal_hold: true, ..item.clone() };
        assert!(
            matches!(dispose(&f, &policy, &expect(), &held).await.unwrap(), Disposal::Kept(w) if w.contains("Object Lock"))
        );
        let other_bytes = ReplacedItem { etag: Some("e0".into()), ..item.clone() };
        assert!(
            matches!(dispose(&f, &policy, &expect(), &other_bytes).await.unwrap(), Disposal::Kept(w) if w.contains("ETag"))
        );
        let rewritten = ReplacedItem { new_etag: Some("e9".into()), ..item.clone() };
        assert!(
            matches!(dispose(&f, &policy, &expect(), &rewritten).await.unwrap(), Disposal::Kept(w) if w.contains("not as the copy left it"))
        );
        assert!(f.get_noncurrent("b", "k", "v1").is_some(), "nothing was deleted");
        // A version locked on S3 but not in the inventory: its HEAD shows the lock.
        let (f, item) = copied(true);
        assert!(
            matches!(dispose(&f, &policy, &expect(), &item).await.unwrap(), Disposal::Kept(w) if w.contains("Object Lock"))
        );
        assert!(f.get_noncurrent("b", "k", "v1").is_some());
    }
}
