use super::*;
use crate::inventory::{EncryptionStatus, InventoryRow, StorageClass};
use crate::vocab::{Method, ObjectStatus, SkipReason};

fn obj(key: &str, decision: Decision) -> PlannedObject {
    PlannedObject {
        row: InventoryRow {
            bucket: "b".into(),
            key: key.into(),
            version_id: Some("v".into()),
            is_latest: Some(true),
            is_delete_marker: false,
            size: Some(7),
            last_modified_ms: Some(1),
            etag: Some("e".into()),
            storage_class: Some(StorageClass::StandardIa),
            encryption: Some(EncryptionStatus::SseS3),
            lock_mode: None,
            lock_retain_until: None,
            legal_hold: false,
            it_tier: None,
            bucket_key_enabled: None,
            checksum_algorithm: Some("CRC32".into()),
        },
        decision,
    }
}

fn run(source: &str) -> RunRecord {
    RunRecord {
        inventory_source: source.into(),
        inventory_created: None,
        source_bucket: Some("b".into()),
        kms_key_arn: Some("arn:aws:kms:us-east-1:111122223333:key/k".into()),
        options_json: "{}".into(),
        prices_json: "{}".into(),
        estimate_json: "{}".into(),
    }
}

#[test]
fn writes_rows_and_run_then_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.rekey");
    let mut w = PlanWriter::create(&path, false).unwrap();
    w.insert(&[obj("a", Decision::Migrate(Method::Update)), obj("b\nnewline", Decision::Skip(SkipReason::AlreadyKms))])
        .unwrap();
    assert_eq!(w.finish(&run("inv-1")).unwrap(), 2);

    let c = Checkpoint::open(&path).unwrap();
    assert_eq!(c.run().unwrap().inventory_source, "inv-1");
    let counts = c.counts().unwrap();
    assert_eq!(counts.by_status.get(&ObjectStatus::Pending), Some(&1));
    assert_eq!(counts.by_status.get(&ObjectStatus::Skipped), Some(&1));
    assert_eq!(counts.by_skip_reason.get(&SkipReason::AlreadyKms), Some(&1));
    let (key, class, sum): (String, String, String) = c
        .connection()
        .query_row(
            "SELECT key, storage_class, checksum_algorithm FROM objects WHERE skip_reason IS NOT NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((key.as_str(), class.as_str(), sum.as_str()), ("b\nnewline", "STANDARD_IA", "CRC32"));
    let mode: String = c.connection().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let index: i64 = c
        .connection()
        .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'objects_by_status'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(index, 1);
    drop(c);

    let e = PlanWriter::create(&path, false).err().unwrap().to_string();
    assert!(e.contains("already holds a plan of inv-1") && e.contains("--replace"), "{e}");
    let w = PlanWriter::create(&path, true).unwrap();
    w.finish(&run("inv-2")).unwrap();
    let c = Checkpoint::open(&path).unwrap();
    assert_eq!(c.run().unwrap().inventory_source, "inv-2");
    assert!(c.counts().unwrap().by_status.is_empty());
}

#[test]
fn an_abandoned_plan_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.rekey");
    let mut w = PlanWriter::create(&path, false).unwrap();
    w.insert(&[obj("a", Decision::Migrate(Method::Copy))]).unwrap();
    drop(w);
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "temporary file removed");
}

#[cfg(unix)]
#[test]
fn checkpoint_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.rekey");
    PlanWriter::create(&path, false).unwrap().finish(&run("i")).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn foreign_files_are_not_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    rusqlite::Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (x)").unwrap();
    assert!(matches!(Checkpoint::open(&path), Err(StoreError::NotACheckpoint { .. })));
    let text = dir.path().join("x.txt");
    std::fs::write(&text, "hello, this is not sqlite at all, just text").unwrap();
    assert!(Checkpoint::open(&text).is_err());
    let newer = dir.path().join("n.db");
    rusqlite::Connection::open(&newer).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
    assert!(matches!(Checkpoint::open(&newer), Err(StoreError::TooNew { .. })));
}

/// key, size, version_id, method, skip_reason, status, storage_class, checksum_algorithm
type StoredRow = (String, i64, Option<String>, Option<String>, Option<String>, String, String, String);

#[test]
fn multi_row_inserts_keep_every_column_of_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.rekey");
    let mut w = PlanWriter::create(&path, false).unwrap();
    // 64 rows per statement: 150 rows exercise two full statements and a remainder of 22.
    let objs: Vec<PlannedObject> = (0..150)
        .map(|i| {
            let mut o = obj(
                &format!("k{i}"),
                if i % 3 == 0 { Decision::Skip(SkipReason::Filtered) } else { Decision::Migrate(Method::Copy) },
            );
            o.row.size = Some(i);
            o.row.version_id = if i % 5 == 0 { None } else { Some(format!("v{i}")) };
            o
        })
        .collect();
    w.insert(&objs).unwrap();
    w.finish(&run("i")).unwrap();
    let c = Checkpoint::open(&path).unwrap();
    let mut stmt = c.connection().prepare("SELECT key, size, version_id, method, skip_reason, status, storage_class, checksum_algorithm FROM objects ORDER BY id").unwrap();
    let rows: Vec<StoredRow> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 150);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.0, format!("k{i}"));
        assert_eq!(r.1, i as i64);
        assert_eq!(r.2, if i % 5 == 0 { None } else { Some(format!("v{i}")) });
        if i % 3 == 0 {
            assert_eq!((r.3.as_deref(), r.4.as_deref(), r.5.as_str()), (None, Some("filtered"), "skipped"));
        } else {
            assert_eq!((r.3.as_deref(), r.4.as_deref(), r.5.as_str()), (Some("copy"), None, "pending"));
        }
        assert_eq!((r.6.as_str(), r.7.as_str()), ("STANDARD_IA", "CRC32"));
    }
}

/// Every query on the rows still to do reads the partial index, in id order: no scan of
/// the finished rows, no sort of all the rows left (which SQLite chose by itself, costing
/// 0.22 s per 1,000-row page with 1 M rows to do).
#[test]
fn the_rows_to_do_are_read_through_their_partial_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.rekey");
    let mut w = PlanWriter::create(&path, false).unwrap();
    let objs: Vec<_> = (0..200)
        .map(|i| {
            obj(
                &format!("k{i}"),
                if i % 3 == 0 { Decision::Skip(SkipReason::AlreadyKms) } else { Decision::Migrate(Method::Update) },
            )
        })
        .collect();
    w.insert(&objs).unwrap();
    w.finish(&run("inv")).unwrap();
    let c = Checkpoint::open(&path).unwrap();
    c.connection().execute("UPDATE objects SET status = 'done' WHERE id <= 100 AND status = 'pending'", []).unwrap();
    c.connection().execute("UPDATE objects SET status = 'failed', retryable = 1 WHERE id = 150", []).unwrap();
    for q in super::work::todo_queries().into_iter().chain([super::report::export_todo_query()]) {
        let mut stmt = c.connection().prepare(&format!("EXPLAIN QUERY PLAN {q}")).unwrap();
        let args = rusqlite::params_from_iter(std::iter::repeat_n(1, stmt.parameter_count()));
        let plan: Vec<String> = stmt.query_map(args, |r| r.get(3)).unwrap().map(Result::unwrap).collect();
        let plan = plan.join("; ");
        assert!(
            plan.contains("USING INDEX objects_todo") || plan.contains("USING COVERING INDEX objects_todo"),
            "{q}: {plan}"
        );
        assert!(!plan.contains("FOR ORDER BY"), "{q}: {plan}");
    }
    // And they answer what they did before.
    let todo = c.todo_totals().unwrap();
    let expected: i64 = c
        .connection()
        .query_row(&format!("SELECT COUNT(*) FROM objects NOT INDEXED WHERE {}", schema::TODO_WHERE), [], |r| r.get(0))
        .unwrap();
    assert_eq!(todo.objects, expected as u64);
    assert_eq!(c.todo_buckets(100).unwrap(), vec!["b".to_string()]);
    let page = TodoReader::open(&path).unwrap().next_page(1000).unwrap();
    assert_eq!(page.len() as u64, todo.objects);
    assert_eq!(page.first().map(|w| w.id), Some(101));
    assert!(page.iter().any(|w| w.id == 150));
}

#[test]
fn a_version_1_checkpoint_is_migrated_on_open_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.rekey");
    let mut w = PlanWriter::create(&path, false).unwrap();
    w.insert(&[obj("a", Decision::Migrate(Method::Copy))]).unwrap();
    w.finish(&run("i")).unwrap();
    // Make it what rekey before issue 13 wrote: no replaced_* columns, no bucket_steps.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "ALTER TABLE objects DROP COLUMN replaced_version_id;
             ALTER TABLE objects DROP COLUMN replaced_deleted_at;
             ALTER TABLE objects DROP COLUMN replaced_delete_detail;
             DROP TABLE bucket_steps;
             PRAGMA user_version = 1;",
        )
        .unwrap();
    let cp = Checkpoint::open(&path).unwrap();
    let version: i64 = cp.connection().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(cp.counts().unwrap().status(ObjectStatus::Pending), 1, "the rows are kept");
    assert_eq!(cp.replaced_counts().unwrap(), ReplacedCounts::default());
    assert!(cp.bucket_steps().unwrap().is_empty());
    drop(cp);
    // Opening again is a no-op.
    assert!(Checkpoint::open(&path).is_ok());
}

#[test]
fn replaced_versions_and_bucket_steps_are_recorded_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.rekey");
    let mut w = PlanWriter::create(&path, false).unwrap();
    w.insert(&[obj("a", Decision::Migrate(Method::Copy)), obj("b", Decision::Migrate(Method::Copy))]).unwrap();
    w.finish(&run("i")).unwrap();
    let cp = Checkpoint::open(&path).unwrap();
    cp.connection()
        .execute_batch("UPDATE objects SET status = 'done', replaced_version_id = 'old-' || key, verify_verdict = 'ok'")
        .unwrap();
    let page = cp.replaced_page(0, 10).unwrap();
    assert_eq!(page.iter().map(|i| i.replaced_version_id.as_str()).collect::<Vec<_>>(), ["old-a", "old-b"]);
    cp.record_replaced(&[ReplacedRecord {
        id: page[0].id,
        deleted_at: Some("2026-01-01T00:00:00.000Z".into()),
        detail: None,
    }])
    .unwrap();
    assert_eq!(cp.replaced_counts().unwrap(), ReplacedCounts { recorded: 2, deleted: 1, left: 1, bytes_left: 7 });
    assert_eq!(cp.replaced_page(0, 10).unwrap().len(), 1, "a deleted version is not handed out again");
    let step = BucketStepRecord {
        bucket: "b".into(),
        step: crate::vocab::BucketStep::DefaultEncryption,
        done_at: "2026-01-01T00:00:00.000Z".into(),
        before: Some("AES256 (SSE-S3)".into()),
        after: "aws:kms k".into(),
    };
    cp.record_bucket_step(&step).unwrap();
    cp.record_bucket_step(&step).unwrap();
    assert_eq!(cp.bucket_steps().unwrap(), vec![step], "one row per bucket and step");
}
