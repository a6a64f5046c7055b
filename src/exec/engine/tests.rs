//! The engine end to end against the in-process [`FakeStore`]: a plan is written into a
//! checkpoint in a temporary directory, the fake holds the matching objects, and after a
//! run both the fake (what was really written, and how often) and the checkpoint (what
//! was recorded) are checked.

use super::*;
use crate::inventory::{EncryptionStatus, InventoryRow};
use crate::plan::classify::Decision;
use crate::s3::{FakeBehaviour, FakeObject, FakeStore, ObjectStore};
use crate::store::{Checkpoint, PlanWriter, PlannedObject, RunRecord};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const OTHER_KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/ffffffff-0000-0000-0000-000000000000";
const BUCKET: &str = "bkt";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// An SSE-S3 object planned for `method`, with a per-key ETag, version and size.
fn planned(key: &str, method: Method) -> PlannedObject {
    PlannedObject {
        row: InventoryRow {
            version_id: Some(format!("v-{key}")),
            is_latest: Some(true),
            ..InventoryRow::sse_s3(BUCKET, key, 1000 + key.len() as u64, &format!("etag-{key}"))
        },
        decision: Decision::Migrate(method),
    }
}

/// `n` objects `k0000`, `k0001`, …; even ones by update, odd ones by copy.
fn mixed(n: usize) -> Vec<PlannedObject> {
    (0..n).map(|i| planned(&key(i), if i % 2 == 0 { Method::Update } else { Method::Copy })).collect()
}

fn key(i: usize) -> String {
    format!("k{i:04}")
}

/// The object the fake holds for a planned row, exactly as inventoried.
fn fake_of(p: &PlannedObject) -> FakeObject {
    let mut o = FakeObject::sse_s3(p.row.etag.as_deref().unwrap());
    o.version_id = p.row.version_id.clone();
    if p.row.encryption == Some(EncryptionStatus::NotSse) {
        o.sse = None;
    }
    o
}

/// Write a checkpoint holding `objs` at `path`.
fn write_plan(path: &Path, objs: &[PlannedObject]) {
    let mut w = PlanWriter::create(path, false).unwrap();
    w.insert(objs).unwrap();
    let written = w
        .finish(&RunRecord {
            inventory_source: "test-inventory".into(),
            inventory_created: None,
            source_bucket: Some(BUCKET.into()),
            kms_key_arn: Some(KEY_ARN.into()),
            options_json: "{}".into(),
            prices_json: "{}".into(),
            estimate_json: "{}".into(),
        })
        .unwrap();
    assert_eq!(written, objs.len() as u64);
}

/// A checkpoint of `objs` in a fresh directory, and a fake holding every object as inventoried.
fn setup(objs: &[PlannedObject], behaviour: FakeBehaviour) -> (tempfile::TempDir, PathBuf, Arc<FakeStore>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.rekey");
    write_plan(&path, objs);
    let store = FakeStore::new(behaviour);
    for p in objs {
        store.insert(&p.row.bucket, &p.row.key, fake_of(p));
    }
    (dir, path, Arc::new(store))
}

/// Quotas far above anything the tests reach, a fast retry schedule, quiet progress.
fn config(path: &Path) -> RunConfig {
    let mut cfg = RunConfig::new(path.to_path_buf(), KEY_ARN.into());
    cfg.kms_rps = 100_000.0;
    cfg.s3_rps = 100_000.0;
    cfg.cooldown = Duration::from_millis(10);
    cfg.progress = ProgressMode::Quiet;
    cfg.policy =
        RetryPolicy { max_attempts: 10, min_delay: Duration::from_millis(1), max_delay: Duration::from_millis(5) };
    cfg
}

async fn run_once(store: &Arc<FakeStore>, cfg: RunConfig) -> RunReport {
    run(store.clone(), cfg, Stopper::default()).await.expect("run")
}

/// One `objects` row, as a run left it.
#[derive(Debug, Clone)]
struct Row {
    key: String,
    method: String,
    etag: Option<String>,
    status: String,
    attempts: i64,
    error_code: Option<String>,
    last_error: Option<String>,
    retryable: bool,
    note: Option<String>,
    new_etag: Option<String>,
    new_version_id: Option<String>,
    kms_key_id: Option<String>,
    finished_at: Option<String>,
}

fn read_rows(path: &Path) -> Vec<Row> {
    let c = Checkpoint::open(path).unwrap();
    let mut stmt = c
        .connection()
        .prepare(
            "SELECT key, method, etag, status, attempts, error_code, last_error, retryable, note,
                    new_etag, new_version_id, kms_key_id, finished_at
             FROM objects ORDER BY id",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok(Row {
                key: r.get(0)?,
                method: r.get(1)?,
                etag: r.get(2)?,
                status: r.get(3)?,
                attempts: r.get(4)?,
                error_code: r.get(5)?,
                last_error: r.get(6)?,
                retryable: r.get(7)?,
                note: r.get(8)?,
                new_etag: r.get(9)?,
                new_version_id: r.get(10)?,
                kms_key_id: r.get(11)?,
                finished_at: r.get(12)?,
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows
}

fn row<'a>(rows: &'a [Row], key: &str) -> &'a Row {
    rows.iter().find(|r| r.key == key).unwrap_or_else(|| panic!("no row {key}"))
}

/// Objects by status, from the checkpoint, by their stored spelling (as `read_rows` reads them).
fn statuses(path: &Path) -> BTreeMap<String, u64> {
    let by_status = Checkpoint::open(path).unwrap().counts().unwrap().by_status;
    by_status.into_iter().map(|(s, n)| (s.as_str().to_string(), n)).collect()
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().filter(|(_, n)| *n > 0).map(|(s, n)| (s.to_string(), *n)).collect()
}

fn fake(store: &FakeStore, key: &str) -> FakeObject {
    store.get(BUCKET, key).unwrap_or_else(|| panic!("fake has no {key}"))
}

fn assert_migrated_once(store: &FakeStore, key: &str) {
    let o = fake(store, key);
    assert_eq!(o.sse.as_deref(), Some("aws:kms"), "{key}: {o:?}");
    assert_eq!(o.kms_key_id.as_deref(), Some(KEY_ARN), "{key}: {o:?}");
    assert_eq!(o.writes, 1, "{key} must be written exactly once: {o:?}");
}

/// Every row is done, every object written exactly once, and the checkpoint agrees with
/// what the fake holds.
fn assert_all_done(path: &Path, store: &FakeStore, n: u64) {
    assert_eq!(statuses(path), counts(&[("done", n)]));
    for r in read_rows(path) {
        assert_migrated_once(store, &r.key);
        let o = fake(store, &r.key);
        assert_eq!(r.new_etag.as_deref(), Some(o.etag.as_str()), "{r:?}");
        assert_eq!(r.new_version_id, o.version_id, "{r:?}");
        assert_eq!(r.kms_key_id.as_deref(), Some(KEY_ARN), "{r:?}");
        assert!(!r.retryable && r.finished_at.is_some(), "{r:?}");
    }
}

fn sum_attempts(rows: &[Row]) -> u64 {
    rows.iter().map(|r| r.attempts as u64).sum()
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// 1. Every object re-encrypted exactly once; updates keep their ETag, copies record the
///    new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_is_migrated_exactly_once() {
    let mut objs = mixed(200);
    // Unversioned objects too (the null version): no version id to pin or report.
    for o in objs.iter_mut().filter(|o| o.row.key.ends_with('7')) {
        o.row.version_id = None;
    }
    let total_bytes: u64 = objs.iter().map(|o| o.row.size.unwrap()).sum();
    let (_dir, path, store) = setup(&objs, FakeBehaviour::default());

    let report = run_once(&store, config(&path)).await;

    assert_eq!(report.stop, None);
    assert_eq!(report.deferred, 0);
    assert_eq!(report.abandoned, 0);
    assert_eq!(report.writer.records, 200);
    let s = &report.last;
    assert_eq!((s.total_objects, s.done, s.failed, s.changed, s.gone, s.needs_restore), (200, 200, 0, 0, 0, 0));
    assert_eq!((s.requests, s.retries, s.throttles_kms, s.throttles_s3, s.transient_errors), (200, 0, 0, 0, 0));
    assert_eq!((s.total_bytes, s.bytes_done), (total_bytes, total_bytes));
    assert_eq!(s.state, "finished");
    let c = store.counters();
    assert_eq!((c.updates, c.copies, c.heads, c.failed, c.throttled), (100, 100, 0, 0, 0));

    assert_all_done(&path, &store, 200);
    let rows = read_rows(&path);
    for (r, p) in rows.iter().zip(&objs) {
        assert_eq!(r.key, p.row.key);
        let o = fake(&store, &r.key);
        assert_eq!(r.attempts, 1, "{r:?}");
        assert_eq!((r.error_code.as_deref(), r.last_error.as_deref(), r.note.as_deref()), (None, None, None), "{r:?}");
        match r.method.as_str() {
            "update" => {
                // UpdateObjectEncryption keeps the ETag and the version.
                assert_eq!(o.etag, p.row.etag.clone().unwrap(), "{r:?}");
                assert_eq!(r.new_etag, p.row.etag, "{r:?}");
                assert_eq!(o.version_id, p.row.version_id, "{r:?}");
            }
            "copy" => {
                // A copy is a new object: a new ETag (and version, when versioned), recorded.
                assert_ne!(Some(o.etag.clone()), p.row.etag, "{r:?}");
                assert_ne!(r.new_etag, r.etag, "{r:?}");
                match &p.row.version_id {
                    Some(v) => assert_ne!(o.version_id.as_ref(), Some(v), "{r:?}"),
                    None => assert_eq!(o.version_id, None, "{r:?}"),
                }
            }
            m => panic!("unexpected method {m}"),
        }
    }
    // The progress document the run left for `rekey status`.
    let doc = Checkpoint::open(&path).unwrap().progress_json().unwrap().expect("a progress document");
    let doc: ProgressSnapshot = serde_json::from_str(&doc).unwrap();
    assert_eq!((doc.state.as_str(), doc.done, doc.total_objects), ("finished", 200, 200));
}

/// 2. A finished checkpoint has nothing left to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_checkpoint_dispatches_nothing() {
    let objs = mixed(50);
    let (_dir, path, store) = setup(&objs, FakeBehaviour::default());
    let first = run_once(&store, config(&path)).await;
    assert_eq!((first.stop.clone(), first.last.done), (None, 50));
    let before = store.counters();
    let rows_before = read_rows(&path);

    let again = run_once(&store, config(&path)).await;

    assert_eq!(again.stop, None);
    assert_eq!(store.counters(), before, "the second run sent no request");
    assert_eq!((again.last.total_objects, again.last.requests, again.last.done), (0, 0, 0));
    assert_eq!(again.writer.records, 0);
    assert_eq!(again.deferred, 0);
    assert_all_done(&path, &store, 50);
    let rows_after = read_rows(&path);
    for (a, b) in rows_before.iter().zip(&rows_after) {
        assert_eq!((a.attempts, &a.new_etag, &a.finished_at), (b.attempts, &b.new_etag, &b.finished_at));
    }
}

/// 3. An object another writer changed since the inventory is never overwritten, even when
///    that writer also used SSE-KMS (under another key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_object_is_left_alone() {
    let objs = vec![
        planned("changed", Method::Copy),
        planned("changed-to-other-key", Method::Copy),
        planned("fine-copy", Method::Copy),
        planned("fine-update", Method::Update),
    ];
    let (_dir, path, store) = setup(&objs, FakeBehaviour::default());
    // Another writer replaced these since the inventory: new ETags.
    let mut changed = fake(&store, "changed");
    changed.etag = "written-by-someone-else".into();
    store.insert(BUCKET, "changed", changed.clone());
    let mut other_key = fake(&store, "changed-to-other-key");
    other_key.etag = "written-by-someone-else-2".into();
    other_key.sse = Some("aws:kms".into());
    other_key.kms_key_id = Some(OTHER_KEY_ARN.into());
    store.insert(BUCKET, "changed-to-other-key", other_key.clone());

    let report = run_once(&store, config(&path)).await;

    assert_eq!(report.stop, None);
    assert_eq!((report.last.done, report.last.changed), (2, 2));
    assert_eq!(statuses(&path), counts(&[("done", 2), ("changed", 2)]));
    // Untouched: same object as before the run.
    assert_eq!(fake(&store, "changed"), changed);
    assert_eq!(fake(&store, "changed").sse.as_deref(), Some("AES256"));
    assert_eq!(fake(&store, "changed-to-other-key"), other_key);
    let rows = read_rows(&path);
    for k in ["changed", "changed-to-other-key"] {
        let r = row(&rows, k);
        assert_eq!(r.status, "changed", "{r:?}");
        assert_eq!(r.attempts, 2, "the copy's 412, then a HEAD: {r:?}");
        assert_eq!(r.error_code.as_deref(), Some("PreconditionFailed"), "{r:?}");
        assert!(r.last_error.as_deref().unwrap().contains("written-by-someone-else"), "{r:?}");
        assert!(!r.retryable && r.note.is_none() && r.new_etag.is_none(), "{r:?}");
    }
    assert_migrated_once(&store, "fine-copy");
    assert_migrated_once(&store, "fine-update");
    let c = store.counters();
    assert_eq!((c.copies, c.updates, c.heads), (3, 1, 2));
}

/// 4. A copy done by an earlier run whose record was lost (a crash before the batch
///    committed) is recognised by HEAD after the 412 and not copied again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_record_is_confirmed_by_head_not_copied_again() {
    let objs: Vec<PlannedObject> = (0..20).map(|i| planned(&key(i), Method::Copy)).collect();
    let (_dir, path, store) = setup(&objs, FakeBehaviour::default());
    let first = run_once(&store, config(&path)).await;
    assert_eq!(first.last.done, 20);
    let after_first: BTreeMap<String, FakeObject> =
        objs.iter().map(|p| (p.row.key.clone(), fake(&store, &p.row.key))).collect();

    // Lose the records of every other object, as if the last batch had not been committed.
    let lost: HashSet<String> = (0..20).step_by(2).map(key).collect();
    {
        let c = Checkpoint::open(&path).unwrap();
        for k in &lost {
            let n = c
                .connection()
                .execute(
                    "UPDATE objects SET status = 'pending', attempts = 0, new_etag = NULL, new_version_id = NULL,
                     kms_key_id = NULL, finished_at = NULL WHERE key = ?1",
                    [k],
                )
                .unwrap();
            assert_eq!(n, 1);
        }
    }
    let before = store.counters();

    let second = run_once(&store, config(&path)).await;

    assert_eq!(second.stop, None);
    assert_eq!((second.last.total_objects, second.last.done, second.last.changed), (10, 10, 0));
    let c = store.counters();
    assert_eq!(c.copies - before.copies, 10, "one copy attempt each, answered 412");
    assert_eq!(c.heads - before.heads, 10, "then one HEAD each");
    assert_all_done(&path, &store, 20);
    let rows = read_rows(&path);
    for r in &rows {
        // Not one object was written a second time.
        assert_eq!(fake(&store, &r.key), after_first[&r.key], "{r:?}");
        if lost.contains(&r.key) {
            assert_eq!(r.note.as_deref(), Some("head_after_412"), "{r:?}");
            assert_eq!(r.attempts, 2, "{r:?}");
            assert_eq!(r.new_etag.as_deref(), Some(after_first[&r.key].etag.as_str()), "{r:?}");
        } else {
            assert_eq!((r.note.as_deref(), r.attempts), (None, 1), "{r:?}");
        }
    }
}

/// 4b. The same for an object already SSE-KMS under the key (with a new ETag) that this
///     checkpoint never recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_already_under_the_key_is_done_after_head() {
    let objs = vec![planned("done-before", Method::Copy)];
    let (_dir, path, store) = setup(&objs, FakeBehaviour::default());
    let mut o = fake(&store, "done-before");
    o.etag = "etag-of-the-earlier-copy".into();
    o.version_id = Some("v-of-the-earlier-copy".into());
    o.sse = Some("aws:kms".into());
    o.kms_key_id = Some(KEY_ARN.into());
    o.writes = 1;
    store.insert(BUCKET, "done-before", o.clone());

    let report = run_once(&store, config(&path)).await;

    assert_eq!((report.stop, report.last.done), (None, 1));
    assert_eq!(fake(&store, "done-before"), o, "not copied again");
    let r = &read_rows(&path)[0];
    assert_eq!(r.status, "done");
    assert_eq!(r.note.as_deref(), Some("head_after_412"));
    assert_eq!(r.attempts, 2);
    assert_eq!(r.new_etag.as_deref(), Some("etag-of-the-earlier-copy"));
    assert_eq!(r.new_version_id.as_deref(), Some("v-of-the-earlier-copy"));
    assert_eq!(r.kms_key_id.as_deref(), Some(KEY_ARN));
}

/// 5. Deleted objects are `gone`; archived ones `needs_restore`; neither stops the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_and_archived_objects() {
    let objs = vec![
        planned("deleted-update", Method::Update),
        planned("deleted-copy", Method::Copy),
        planned("archived-copy", Method::Copy),
        planned("present", Method::Copy),
    ];
    let (_dir, path, store) = setup(&objs, FakeBehaviour::default());
    let fresh = FakeStore::new(FakeBehaviour::default());
    for (k, o) in store.objects().into_iter().map(|((_, k), o)| (k, o)) {
        if k.starts_with("deleted") {
            continue;
        }
        let archived = k == "archived-copy";
        fresh.insert(BUCKET, &k, FakeObject { archived, ..o });
    }
    let store = Arc::new(fresh);

    let report = run_once(&store, config(&path)).await;

    assert_eq!(report.stop, None);
    let s = &report.last;
    assert_eq!((s.done, s.gone, s.needs_restore, s.failed), (1, 2, 1, 0));
    assert_eq!(statuses(&path), counts(&[("done", 1), ("gone", 2), ("needs_restore", 1)]));
    let rows = read_rows(&path);
    for k in ["deleted-update", "deleted-copy"] {
        let r = row(&rows, k);
        assert_eq!((r.status.as_str(), r.attempts, r.retryable), ("gone", 1, false), "{r:?}");
        assert_eq!(r.error_code.as_deref(), Some("NoSuchKey"), "{r:?}");
        assert!(store.get(BUCKET, k).is_none(), "nothing was created");
    }
    let r = row(&rows, "archived-copy");
    assert_eq!((r.status.as_str(), r.attempts), ("needs_restore", 1), "{r:?}");
    assert_eq!(r.error_code.as_deref(), Some("InvalidObjectState"), "{r:?}");
    let a = fake(&store, "archived-copy");
    assert_eq!((a.sse.as_deref(), a.writes), (Some("AES256"), 0));
    assert_migrated_once(&store, "present");
}

/// 6. Transient failures are retried until they succeed; a failed attempt wrote nothing,
///    so no object is written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried() {
    let objs = mixed(300);
    let (_dir, path, store) = setup(&objs, FakeBehaviour { fail_rate: 0.3, ..Default::default() });
    let mut cfg = config(&path);
    // 0.3^30: no object runs out of attempts.
    cfg.policy.max_attempts = 30;

    let report = run_once(&store, cfg).await;

    assert_eq!(report.stop, None);
    let s = &report.last;
    let c = store.counters();
    assert_eq!((s.done, s.failed), (300, 0));
    assert!(s.retries > 0, "{s:?}");
    // Every retry followed exactly one injected 500, and every request is counted once.
    assert_eq!(s.retries, c.failed);
    assert_eq!(s.transient_errors, c.failed);
    assert_eq!(s.requests, 300 + c.failed);
    assert_eq!(c.updates + c.copies, 300, "one successful write per object");
    assert_all_done(&path, &store, 300);
    let rows = read_rows(&path);
    assert_eq!(sum_attempts(&rows), s.requests, "the checkpoint counts every attempt");
    let retried = rows.iter().filter(|r| r.attempts > 1).count();
    assert!(retried > 0, "some object needed more than one attempt");
    eprintln!("transient: {} injected failures, {retried} of 300 objects retried", c.failed);
}

/// 7. A KMS key S3 cannot use opens the circuit breaker: nothing is written and every
///    object stays pending; once the key works, a new run does them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_stops_the_run_and_leaves_objects_pending() {
    let objs = mixed(60);
    let (_dir, path, store) =
        setup(&objs, FakeBehaviour { fatal_code: Some("KMS.DisabledException".into()), ..Default::default() });

    let report = run_once(&store, config(&path)).await;

    match &report.stop {
        Some(StopReason::Breaker { code, .. }) => assert_eq!(code, "KMS.DisabledException"),
        other => panic!("expected the breaker, got {other:?}"),
    }
    assert_eq!(report.last.state, "stopped");
    assert_eq!(report.last.finished(), 0);
    assert_eq!(statuses(&path), counts(&[("pending", 60)]));
    let rows = read_rows(&path);
    let attempted: Vec<&Row> = rows.iter().filter(|r| r.attempts > 0).collect();
    assert!(!attempted.is_empty());
    for r in &rows {
        if r.attempts > 0 {
            assert_eq!(r.attempts, 1, "no retry after a fatal answer: {r:?}");
            assert_eq!(r.error_code.as_deref(), Some("KMS.DisabledException"), "{r:?}");
            assert!(!r.retryable && r.finished_at.is_none(), "{r:?}");
        } else {
            assert!(r.error_code.is_none(), "{r:?}");
        }
    }
    assert_eq!(sum_attempts(&rows), report.last.requests);
    for p in &objs {
        let o = fake(&store, &p.row.key);
        assert_eq!((o.sse.as_deref(), o.writes), (Some("AES256"), 0), "{o:?}");
    }
    let c = store.counters();
    assert_eq!((c.updates, c.copies), (0, 0));

    // The key is enabled again.
    store.set_behaviour(FakeBehaviour::default());
    let again = run_once(&store, config(&path)).await;

    assert_eq!(again.stop, None);
    assert_eq!((again.last.total_objects, again.last.done), (60, 60));
    assert_all_done(&path, &store, 60);
    for r in read_rows(&path) {
        assert!(r.error_code.is_none() && r.last_error.is_none(), "the error is cleared: {r:?}");
    }
}

/// 8. More failures than `--max-failures` allows stop the run; what was not attempted
///    stays pending, and a failed object is not retried by a later run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_failures_stop_the_run() {
    let mut objs: Vec<PlannedObject> = (0..100).map(|i| planned(&key(i), Method::Update)).collect();
    // Five objects S3 refuses to update (unencrypted after all: 400 InvalidRequest).
    for o in &mut objs[..5] {
        o.row.encryption = Some(EncryptionStatus::NotSse);
    }
    let refused: HashSet<String> = objs[..5].iter().map(|o| o.row.key.clone()).collect();
    let (_dir, path, store) = setup(&objs, FakeBehaviour { latency: Duration::from_millis(1), ..Default::default() });
    let mut cfg = config(&path);
    cfg.max_failures = FailureBudget::Count(2);
    // One request at a time, so the stop lands long before the last object.
    cfg.concurrency = Some(1);

    let report = run_once(&store, cfg).await;

    let failed = match report.stop {
        Some(StopReason::MaxFailures { failed, limit: 2 }) => failed,
        ref other => panic!("expected MaxFailures with limit 2, got {other:?}"),
    };
    assert!((3..=5).contains(&failed), "stopped at the third failure or just after: {failed}");
    let st = statuses(&path);
    let done = st.get("done").copied().unwrap_or(0);
    let n_failed = st.get("failed").copied().unwrap_or(0);
    let pending = st.get("pending").copied().unwrap_or(0);
    assert_eq!(done + n_failed + pending, 100, "{st:?}");
    assert_eq!((report.last.done, report.last.failed), (done, n_failed));
    assert!((3..=5).contains(&n_failed), "{st:?}");
    assert!(pending > 0, "the run stopped before the end: {st:?}");
    let rows = read_rows(&path);
    for r in &rows {
        let o = fake(&store, &r.key);
        match r.status.as_str() {
            "failed" => {
                assert!(refused.contains(&r.key), "{r:?}");
                assert_eq!((r.error_code.as_deref(), r.retryable, r.attempts), (Some("InvalidRequest"), false, 1));
                assert_eq!(o.writes, 0);
            }
            "done" => assert_migrated_once(&store, &r.key),
            "pending" => assert_eq!((r.attempts, o.writes), (0, 0), "{r:?}"),
            s => panic!("unexpected status {s}: {r:?}"),
        }
    }

    // A later run with room for failures finishes the rest and leaves the refused alone.
    let before = store.counters();
    let mut cfg = config(&path);
    cfg.max_failures = FailureBudget::Count(1000);
    let again = run_once(&store, cfg).await;
    assert_eq!(again.stop, None);
    assert_eq!(again.last.total_objects, pending, "failed (not retryable) objects are not dispatched again");
    assert_eq!(store.counters().updates - before.updates, pending);
    assert_eq!(statuses(&path), counts(&[("done", 95), ("failed", 5)]));
    for r in read_rows(&path) {
        if refused.contains(&r.key) {
            assert_eq!((r.status.as_str(), r.attempts), ("failed", 1), "{r:?}");
        } else {
            assert_migrated_once(&store, &r.key);
        }
    }
}

/// 8b. The default budget, 1 %, allows one failure in 100 objects: the run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_within_the_default_budget_do_not_stop() {
    let mut objs: Vec<PlannedObject> = (0..100).map(|i| planned(&key(i), Method::Update)).collect();
    objs[42].row.encryption = Some(EncryptionStatus::NotSse);
    let (_dir, path, store) = setup(&objs, FakeBehaviour::default());
    let cfg = config(&path);
    assert_eq!(cfg.max_failures, FailureBudget::Percent(1.0));

    let report = run_once(&store, cfg).await;

    assert_eq!(report.stop, None);
    assert_eq!((report.last.done, report.last.failed), (99, 1));
    assert_eq!(statuses(&path), counts(&[("done", 99), ("failed", 1)]));
    let r = row(&read_rows(&path), &key(42)).clone();
    assert_eq!((r.status.as_str(), r.error_code.as_deref(), r.retryable), ("failed", Some("InvalidRequest"), false));

    // …and a second failure among 100 is one too many.
    let mut objs: Vec<PlannedObject> = (0..100).map(|i| planned(&key(i), Method::Update)).collect();
    objs[10].row.encryption = Some(EncryptionStatus::NotSse);
    objs[90].row.encryption = Some(EncryptionStatus::NotSse);
    let (_dir2, path2, store2) = setup(&objs, FakeBehaviour::default());
    let report = run_once(&store2, config(&path2)).await;
    assert_eq!(report.stop, Some(StopReason::MaxFailures { failed: 2, limit: 1 }));
}

/// 9. An object that runs out of attempts is failed but retryable, and the next run
///    dispatches it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_are_retried_by_the_next_run() {
    let objs = mixed(20);
    let (_dir, path, store) = setup(&objs, FakeBehaviour { fail_rate: 1.0, ..Default::default() });
    let mut cfg = config(&path);
    cfg.policy =
        RetryPolicy { max_attempts: 3, min_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) };
    cfg.max_failures = FailureBudget::Count(1000);

    let report = run_once(&store, cfg.clone()).await;

    assert_eq!(report.stop, None);
    let s = &report.last;
    assert_eq!((s.done, s.failed, s.requests, s.retries, s.transient_errors), (0, 20, 60, 40, 60));
    assert_eq!(store.counters().failed, 60);
    assert_eq!(statuses(&path), counts(&[("failed", 20)]));
    for r in read_rows(&path) {
        assert_eq!((r.attempts, r.retryable), (3, true), "{r:?}");
        assert_eq!(r.error_code.as_deref(), Some("InternalError"), "{r:?}");
        assert!(r.finished_at.is_some(), "{r:?}");
        let o = fake(&store, &r.key);
        assert_eq!((o.sse.as_deref(), o.writes), (Some("AES256"), 0));
    }

    store.set_behaviour(FakeBehaviour::default());
    let again = run_once(&store, cfg).await;

    assert_eq!(again.stop, None);
    assert_eq!((again.last.total_objects, again.last.done, again.last.failed), (20, 20, 0));
    assert_all_done(&path, &store, 20);
    for r in read_rows(&path) {
        assert_eq!(r.attempts, 4, "attempts add up across runs: {r:?}");
        assert!(r.error_code.is_none() && !r.retryable, "{r:?}");
    }
}

/// 10. Stopped before it starts: nothing is sent and everything stays pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_before_start_dispatches_nothing() {
    let objs = mixed(30);
    let (_dir, path, store) = setup(&objs, FakeBehaviour::default());
    let stop = Stopper::default();
    stop.stop(StopReason::Interrupted);

    let report = run(store.clone(), config(&path), stop).await.unwrap();

    assert_eq!(report.stop, Some(StopReason::Interrupted));
    assert_eq!(report.last.state, "stopped");
    assert_eq!((report.last.requests, report.last.finished(), report.abandoned), (0, 0, 0));
    assert_eq!(report.writer.records, 0);
    assert_eq!(store.counters(), crate::s3::fake::FakeCounters::default());
    assert_eq!(statuses(&path), counts(&[("pending", 30)]));
    assert!(read_rows(&path).iter().all(|r| r.attempts == 0));
}

/// 10b. Interrupted mid-run: requests in flight finish and are recorded, so the checkpoint
///      holds exactly the objects the store has written; the next run finishes the rest
///      without writing anything twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_mid_run_records_what_was_written() {
    let objs: Vec<PlannedObject> = (0..400).map(|i| planned(&key(i), Method::Update)).collect();
    let (_dir, path, store) = setup(&objs, FakeBehaviour { latency: Duration::from_millis(2), ..Default::default() });
    let mut cfg = config(&path);
    cfg.concurrency = Some(4);
    let stop = Stopper::default();
    let ctrl_c = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            while store.counters().updates < 50 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            stop.stop(StopReason::Interrupted);
        })
    };

    let report = run(store.clone(), cfg.clone(), stop).await.unwrap();
    ctrl_c.await.unwrap();

    assert_eq!(report.stop, Some(StopReason::Interrupted));
    assert_eq!(report.abandoned, 0);
    let st = statuses(&path);
    let done = st.get("done").copied().unwrap_or(0);
    let pending = st.get("pending").copied().unwrap_or(0);
    assert_eq!(done + pending, 400, "{st:?}");
    assert!(done >= 50 && pending > 0, "{st:?}");
    assert_eq!(report.last.done, done);
    let written: HashSet<String> =
        store.objects().into_iter().filter(|(_, o)| o.writes > 0).map(|((_, k), _)| k).collect();
    let recorded: HashSet<String> =
        read_rows(&path).into_iter().filter(|r| r.status == "done").map(|r| r.key).collect();
    assert_eq!(written, recorded, "every write that happened is recorded, and nothing else");
    assert_eq!(store.counters().updates, done);

    let again = run_once(&store, cfg).await;
    assert_eq!(again.stop, None);
    assert_eq!((again.last.total_objects, again.last.done), (pending, pending));
    assert_all_done(&path, &store, 400);
    assert_eq!(store.counters().updates, 400, "no object updated twice");
}

/// 11. Against a KMS quota four times lower than configured, the limiter backs off: every
///     object is done, none failed, and the throttles are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limiter_adapts_to_a_lower_kms_quota() {
    let n = 1500;
    let objs = mixed(n);
    let (_dir, path, store) =
        setup(&objs, FakeBehaviour { latency: Duration::from_millis(5), kms_rps: 500.0, ..Default::default() });
    let mut cfg = config(&path);
    cfg.kms_rps = 2000.0;
    cfg.cooldown = Duration::from_millis(100);
    cfg.policy = RetryPolicy::default();

    let started = std::time::Instant::now();
    let report = run_once(&store, cfg).await;
    let elapsed = started.elapsed();

    assert_eq!(report.stop, None);
    let s = &report.last;
    assert_eq!((s.done, s.failed), (n as u64, 0));
    assert!(s.throttles_kms > 0, "{s:?}");
    assert_eq!(s.throttles_kms, store.counters().throttled);
    assert_eq!(s.throttles_s3, 0);
    assert_eq!(s.retries, s.throttles_kms, "every throttle was retried");
    assert_all_done(&path, &store, n as u64);
    eprintln!(
        "quota: {n} objects in {:.2} s = {:.0} obj/s against a 500 rps gate; {} throttles ({:.1} % of {} requests), final KMS rate {:.0}/s, window {}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        s.throttles_kms,
        100.0 * s.throttles_kms as f64 / s.requests as f64,
        s.requests,
        s.kms_rate,
        s.window,
    );
}

/// 12. Objects that need multipart copy wait for a later build: deferred, still pending,
///     untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_objects_are_copied_part_by_part_and_leave_no_upload_open() {
    let mut objs = mixed(10);
    for i in 0..5 {
        let mut p = planned(&format!("big{i}"), Method::MultipartCopy);
        p.row.size = Some(10 << 30); // 10 GiB: 20 parts of 512 MiB
        objs.push(p);
    }
    let (_dir, path, store) = setup(&objs, FakeBehaviour::default());
    for p in objs.iter().filter(|p| p.row.size == Some(10 << 30)) {
        let mut o = fake_of(p);
        o.size = 10 << 30;
        store.insert(BUCKET, &p.row.key, o);
    }

    let report = run_once(&store, config(&path)).await;

    assert_eq!(report.stop, None);
    assert_eq!(report.last.done, 15);
    assert_eq!(statuses(&path), counts(&[("done", 15)]));
    let c = store.counters();
    assert_eq!((c.uploads_created, c.parts_copied, c.uploads_completed, c.uploads_aborted), (5, 100, 5, 0));
    assert_eq!(store.open_uploads(), 0);
    for r in read_rows(&path).iter().filter(|r| r.method == "multipart_copy") {
        let o = fake(&store, &r.key);
        assert_eq!((o.sse.as_deref(), o.writes), (Some("aws:kms"), 1), "{r:?}");
        assert!(o.etag.ends_with("-20"), "a multipart ETag: {}", o.etag);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_copy_that_fails_is_aborted_and_a_changed_source_is_not_clobbered() {
    let mut big = planned("big", Method::MultipartCopy);
    big.row.size = Some(6 << 30);
    let mut changed = planned("changed", Method::MultipartCopy);
    changed.row.size = Some(6 << 30);
    let objs = vec![big, changed];
    let (_dir, path, store) = setup(&objs, FakeBehaviour::default());
    for p in &objs {
        let mut o = fake_of(p);
        o.size = 6 << 30;
        if p.row.key == "changed" {
            o.etag = "someone-else".into();
        }
        store.insert(BUCKET, &p.row.key, o);
    }
    // Every write fails for good: the upload must be aborted, the object left pending
    // for a later run, and no upload left open.
    store.set_behaviour(FakeBehaviour { fatal_code: Some("AccessDenied".into()), ..Default::default() });
    let report = run_once(&store, config(&path)).await;
    assert!(matches!(report.stop, Some(StopReason::Breaker { .. })), "{:?}", report.stop);
    assert_eq!(store.open_uploads(), 0);

    store.set_behaviour(FakeBehaviour::default());
    let report = run_once(&store, config(&path)).await;
    assert_eq!(report.stop, None);
    assert_eq!(statuses(&path), counts(&[("changed", 1), ("done", 1)]));
    let o = fake(&store, "changed");
    assert_eq!((o.sse.as_deref(), o.writes, o.etag.as_str()), (Some("AES256"), 0, "someone-else"));
    assert_eq!(store.open_uploads(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_left_open_by_a_crash_is_aborted_before_the_copy_starts_again() {
    let mut big = planned("big", Method::MultipartCopy);
    big.row.size = Some(6 << 30);
    let objs = vec![big];
    let (_dir, path, store) = setup(&objs, FakeBehaviour::default());
    let mut o = fake_of(&objs[0]);
    o.size = 6 << 30;
    store.insert(BUCKET, "big", o);
    // A crashed run opened an upload and recorded its id, then died.
    let leftover = store
        .create_multipart(crate::s3::object_store::CreateMultipartRequest {
            bucket: BUCKET.into(),
            key: "big".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE objects SET upload_id = ?1 WHERE key = 'big'", [&leftover])
        .unwrap();
    assert_eq!(store.open_uploads(), 1);

    let report = run_once(&store, config(&path)).await;

    assert_eq!(report.stop, None);
    assert_eq!(statuses(&path), counts(&[("done", 1)]));
    let c = store.counters();
    assert_eq!((c.uploads_created, c.uploads_aborted, c.uploads_completed), (2, 1, 1));
    assert_eq!(store.open_uploads(), 0, "the leftover upload was aborted, the new one completed");
    let upload_id: Option<String> = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT upload_id FROM objects WHERE key = 'big'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(upload_id, None);
    assert_eq!(fake(&store, "big").writes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_created_but_never_recorded_is_found_and_aborted() {
    let mut big = planned("big", Method::MultipartCopy);
    big.row.size = Some(6 << 30);
    let objs = vec![big];
    let (_dir, path, store) = setup(&objs, FakeBehaviour::default());
    let mut o = fake_of(&objs[0]);
    o.size = 6 << 30;
    store.insert(BUCKET, "big", o);
    // The crash came between CreateMultipartUpload and recording its id: only the
    // `creating@` marker committed before the create is in the checkpoint.
    store
        .create_multipart(crate::s3::object_store::CreateMultipartRequest {
            bucket: BUCKET.into(),
            key: "big".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let marker = format!(
        "creating@{}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 - 1000
    );
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE objects SET upload_id = ?1 WHERE key = 'big'", [&marker])
        .unwrap();

    let report = run_once(&store, config(&path)).await;

    assert_eq!(report.stop, None);
    assert_eq!(statuses(&path), counts(&[("done", 1)]));
    let c = store.counters();
    assert_eq!((c.uploads_created, c.uploads_aborted, c.uploads_completed), (2, 1, 1));
    assert_eq!(store.open_uploads(), 0);
}

/// 13. A stop (here the breaker) must not keep tasks that will send nothing queued behind
///     the rate limiter: with a 10 rps KMS pace and ~1,000 tasks waiting for a slot, pacing
///     each of them before it notices the stop would take ~100 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_does_not_wait_for_rate_tokens() {
    let objs = mixed(1500);
    // The first answer takes 50 ms: by then the dispatcher has ~1,000 tasks queued.
    let (_dir, path, store) = setup(
        &objs,
        FakeBehaviour {
            fatal_code: Some("KMS.DisabledException".into()),
            latency: Duration::from_millis(50),
            ..Default::default()
        },
    );
    let mut cfg = config(&path);
    cfg.kms_rps = 10.0;
    cfg.concurrency = Some(4);

    let started = std::time::Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(20), run(store.clone(), cfg, Stopper::default()))
        .await
        .expect("the run must end promptly once the breaker opens (liveness, not a rate check)")
        .unwrap();
    eprintln!(
        "breaker at 10 rps: run ended {:.2} s after start, {} requests",
        started.elapsed().as_secs_f64(),
        report.last.requests
    );

    assert!(matches!(report.stop, Some(StopReason::Breaker { .. })), "{:?}", report.stop);
    assert_eq!(statuses(&path), counts(&[("pending", 1500)]));
}

/// 14. The window controller must be able to shrink a window whose every slot is busy
///     (the normal state of a run: far more live tasks than slots).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_shrinks_while_every_slot_is_busy() {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    let counters = Arc::new(RunCounters::default());
    let ctx = Arc::new(TaskContext {
        store: Arc::new(FakeStore::new(FakeBehaviour::default())),
        kms: Arc::new(AdaptiveLimiter::new("kms", 200.0, Duration::from_millis(500))),
        s3: Arc::new(AdaptiveLimiter::new("s3", 100_000.0, Duration::from_millis(500))),
        window: Arc::new(Semaphore::new(48)),
        policy: RetryPolicy::default(),
        key_arn: KEY_ARN.into(),
        kms_sources: crate::plan::KmsSources::None,
        bucket_key: false,
        kms_per_write: 1.0,
        counters: counters.clone(),
        stop: Stopper::default(),
        window_excess: Default::default(),
        fidelity: Default::default(),
        part_size: None,
        writer: crate::exec::writer::WriterSender::detached(),
        redecide: None,
    });
    // Little's law on 200 objects/s, over the latency plus the 50 ms a paced request may
    // wait for its batch to be let through (AdaptiveLimiter::admit_interval): at 5 ms,
    // 200 × 55 ms × 1.5 = 17 slots, fewer than the 48 the window opens with (the workers
    // send far more than 200/s, so the quota is what binds).
    let want = |latency: f64| (200.0 * (latency + 0.05) * 1.5).ceil() as usize;
    assert_eq!(ctx.kms.admit_interval(1.0), Duration::from_millis(50));
    assert_eq!(want(0.005), 17);
    counters.latency_us.store(5_000, Relaxed);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let mut workers = JoinSet::new();
    // 64 "tasks" keep every slot busy: take a slot, hold it 1 ms, give it back, queue again.
    for _ in 0..64 {
        let (ctx, in_flight, peak, running) = (ctx.clone(), in_flight.clone(), peak.clone(), running.clone());
        workers.spawn(async move {
            while running.load(Relaxed) {
                let slot = ctx.window.acquire().await.unwrap();
                peak.fetch_max(in_flight.fetch_add(1, Relaxed) + 1, Relaxed);
                ctx.counters.requests.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
                in_flight.fetch_sub(1, Relaxed);
                // As a task gives its slot back after a request.
                ctx.release(slot);
            }
        });
    }
    let controller = tokio::spawn(control(ctx.clone(), Some(48)));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let peak_before = peak.swap(0, Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak_after = peak.load(Relaxed);
    running.store(false, Relaxed);
    while workers.join_next().await.is_some() {}
    eprintln!("window: reported {}, peak in flight {peak_before} then {peak_after}", counters.window.load(Relaxed));
    assert_eq!(counters.window.load(Relaxed), want(0.005) as u64);
    assert!(peak_after <= want(0.005), "{peak_after} slots in use after shrinking to {}", want(0.005));
    // Every slot is back: the window holds exactly what it was shrunk to, counting slots
    // still owed.
    let real = || ctx.window.available_permits() + ctx.window_excess.load(Relaxed);
    assert_eq!(real(), want(0.005));

    // And it grows again: 200/s × (100 + 50) ms × 1.5 = 45 slots.
    counters.latency_us.store(100_000, Relaxed);
    tokio::time::sleep(Duration::from_millis(600)).await;
    controller.abort();
    assert!((45..=46).contains(&want(0.1)));
    assert_eq!(counters.window.load(Relaxed), want(0.1) as u64);
    assert_eq!((ctx.window.available_permits(), ctx.window_excess.load(Relaxed)), (want(0.1), 0));
}

/// 15. Told a quota far above what the client can drive (`--kms-rps 100000`), the default
///     window must follow what it does drive, not the quota. The fake serves 32 requests at
///     once for 20 ms each: at most 1,600 requests/s, which 32 slots reach. Little's law on
///     the quota (100,000/s × a latency that grows with the queue) opened all 4,096.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_window_follows_what_the_client_drives_not_a_far_higher_quota() {
    let n = 4000;
    let objs = mixed(n);
    let servers = 32;
    let (_dir, path, store) =
        setup(&objs, FakeBehaviour { latency: Duration::from_millis(20), servers, ..Default::default() });
    let cfg = config(&path);
    assert_eq!((cfg.kms_rps, cfg.concurrency), (100_000.0, None));

    let started = std::time::Instant::now();
    let report = run_once(&store, cfg).await;
    let s = &report.last;
    eprintln!(
        "capped client: {n} objects in {:.2} s, window {} for {servers} servers",
        started.elapsed().as_secs_f64(),
        s.window
    );
    assert_eq!((report.stop, s.done), (None, n as u64));
    // 32 slots drive the cap; one doubling past it may stand while it is measured.
    assert!(s.window >= servers as u64 / 2, "window {} shrank below what drives the cap", s.window);
    assert!(s.window <= 4 * servers as u64, "window {} for {servers} requests in service", s.window);
}

/// 15. `--versions all` and `--from-key`: a noncurrent version is updated in place by its
///     id (the current version untouched, no new version); SSE-KMS rows are HEADed and
///     end done, already_target_key, other_kms_key or changed, with a write only for the
///     first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noncurrent_versions_in_place_and_kms_sources_decided_by_head() {
    const OLD: &str = "arn:aws:kms:us-east-1:111122223333:key/old";
    const OTHER: &str = "arn:aws:kms:us-east-1:111122223333:key/other";
    let kms_row = |key: &str| {
        let mut p = planned(key, Method::Update);
        p.row.encryption = Some(EncryptionStatus::SseKms);
        p
    };
    let mut old_version = planned("doc", Method::Update);
    old_version.row.version_id = Some("v-old".into());
    old_version.row.is_latest = Some(false);
    let objs = [old_version.clone(), kms_row("from-old"), kms_row("at-target"), kms_row("other"), kms_row("changed")];
    let (_dir, path, store) = setup(&objs[1..], FakeBehaviour::default());
    // "doc": the inventoried noncurrent version under a current one the plan does not hold.
    store.insert(BUCKET, "doc", FakeObject { version_id: Some("v-now".into()), ..FakeObject::sse_s3("now") });
    store.insert_noncurrent(BUCKET, "doc", fake_of(&old_version));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO objects (bucket, key, version_id, is_latest, is_delete_marker, etag, encryption, legal_hold, method, status)
             VALUES (?1, 'doc', 'v-old', 0, 0, 'etag-doc', 'SSE-S3', 0, 'update', 'pending')",
            [BUCKET],
        )
        .unwrap();
    }
    for (key, kms) in [("from-old", OLD), ("at-target", KEY_ARN), ("other", OTHER), ("changed", OLD)] {
        let mut o = store.get(BUCKET, key).unwrap();
        o.sse = Some("aws:kms".into());
        o.kms_key_id = Some(kms.into());
        if key == "changed" {
            o.etag = "rewritten".into();
        }
        store.insert(BUCKET, key, o);
    }
    let mut cfg = config(&path);
    cfg.kms_sources = crate::plan::KmsSources::FromKeys(vec![OLD.into()]);
    let report = run_once(&store, cfg).await;
    assert_eq!(report.stop, None);
    let s = &report.last;
    assert_eq!((s.done, s.already_target_key, s.other_kms_key, s.changed, s.failed), (2, 1, 1, 1, 0));
    assert_eq!(
        statuses(&path),
        counts(&[("done", 2), ("already_target_key", 1), ("other_kms_key", 1), ("changed", 1)])
    );
    let old = store.get_noncurrent(BUCKET, "doc", "v-old").unwrap();
    assert_eq!((old.sse.as_deref(), old.kms_key_id.as_deref(), old.writes), (Some("aws:kms"), Some(KEY_ARN), 1));
    let now = fake(&store, "doc");
    assert_eq!((now.sse.as_deref(), now.writes, now.version_id.as_deref()), (Some("AES256"), 0, Some("v-now")));
    assert_eq!(fake(&store, "from-old").kms_key_id.as_deref(), Some(KEY_ARN));
    for (key, kms) in [("at-target", KEY_ARN), ("other", OTHER), ("changed", OLD)] {
        let o = fake(&store, key);
        assert_eq!((o.kms_key_id.as_deref(), o.writes), (Some(kms), 0), "{key}");
    }
    let rows = read_rows(&path);
    assert_eq!(row(&rows, "other").kms_key_id.as_deref(), Some(OTHER), "the key it is under is recorded");
    assert!(row(&rows, "changed").last_error.as_deref().unwrap().contains("ETag now rewritten"));
    assert_eq!(store.counters().updates, 2);
}
