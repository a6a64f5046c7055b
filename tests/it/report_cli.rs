//! `rekey report`, `rekey export batch-ops` and `rekey import batch-ops` on a checkpoint
//! planned from a generated inventory, with outcomes set directly in SQLite (no emulator).

use crate::support::{ok, rekey_offline as rekey, stderr, stdout};
use md5::{Digest, Md5};
use rekey::inventory::synthetic::{write_inventory, FullRow, InventorySpec, FULL_SCHEMA};
use rekey::units::GIB;
use std::path::{Path, PathBuf};

const CREATED: i64 = 1_764_000_000_000;
const DAY: i64 = 86_400_000;
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const ROLE: &str = "arn:aws:iam::111122223333:role/batch-rekey";
/// A key with a space, a `+`, a comma and non-ASCII; it ends up done.
const AWKWARD_DONE: &str = "a b+c,d é.txt";
/// The same kinds of characters, still pending, so it is exported.
const AWKWARD_PENDING: &str = "x y+z,é/ü.txt";

/// A FULL_SCHEMA row: (key, version, size, class, encryption).
fn row(key: &str, v: &str, size: u64, class: &str, enc: &str) -> Vec<String> {
    FullRow::new(key, v, size, class, enc, CREATED - 200 * DAY).fields()
}

fn rows() -> Vec<Vec<String>> {
    vec![
        row("plain/a.txt", "v1", 100, "STANDARD", "SSE-S3"), // update, pending
        row(AWKWARD_DONE, "v2", 100, "STANDARD_IA", "SSE-S3"), // update, set done
        row(AWKWARD_PENDING, "v3", 100, "STANDARD", "SSE-S3"), // update, pending
        row("nulls/x.txt", "", 100, "STANDARD", "SSE-S3"),   // update, null version, pending
        row("copy/b.txt", "v4", 100, "STANDARD", "NOT-SSE"), // copy STANDARD, pending
        row("copy/ia.txt", "v5", 200 * 1024, "STANDARD_IA", "NOT-SSE"), // copy STANDARD_IA, pending
        row("big/d.bin", "v6", 6 * GIB, "STANDARD", "NOT-SSE"), // multipart_copy: stays local
        row("kms.txt", "v7", 100, "STANDARD", "SSE-KMS"),    // skipped already_kms
        row("fail.txt", "v8", 100, "STANDARD", "SSE-S3"),    // update, set failed
        row("changed.txt", "v9", 100, "STANDARD", "NOT-SSE"), // copy, set changed
    ]
}

/// A plan of [`rows`] with some outcomes recorded: `AWKWARD_DONE` done, `fail.txt`
/// failed (AccessDenied), `changed.txt` changed.
fn planned(dir: &Path) -> PathBuf {
    let spec = InventorySpec {
        dest_prefix: "inv-prefix".into(),
        data_files: 1,
        file_schema: FULL_SCHEMA.into(),
        ..InventorySpec::new(&dir.join("dest-bucket"), "src-bucket", CREATED)
    };
    let manifest = write_inventory(&spec, rows()).unwrap();
    let state = dir.join("job.rekey");
    ok(rekey(&[
        "plan",
        "--inventory",
        manifest.to_str().unwrap(),
        "--kms-key",
        KEY,
        "--bucket-key",
        "--state",
        state.to_str().unwrap(),
    ]));
    let db = rusqlite::Connection::open(&state).unwrap();
    let set = |sql: &str, key: &str| assert_eq!(db.execute(sql, [key]).unwrap(), 1, "{sql} {key}");
    set(
        "UPDATE objects SET status = 'done', attempts = 1, new_etag = 'e-new', kms_key_id = 'k1', \
         verify_verdict = 'ok', verified_at = '2026-01-02T00:00:00Z', finished_at = '2026-01-01T00:00:00Z' WHERE key = ?1",
        AWKWARD_DONE,
    );
    set(
        "UPDATE objects SET status = 'failed', attempts = 3, error_code = 'AccessDenied', last_error = 'Access Denied', \
         finished_at = '2026-01-01T00:00:01Z' WHERE key = ?1",
        "fail.txt",
    );
    set(
        "UPDATE objects SET status = 'changed', attempts = 1, finished_at = '2026-01-01T00:00:02Z' WHERE key = ?1",
        "changed.txt",
    );
    state
}

fn id_of(state: &Path, key: &str) -> i64 {
    let db = rusqlite::Connection::open(state).unwrap();
    db.query_row("SELECT id FROM objects WHERE key = ?1", [key], |r| r.get(0)).unwrap()
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().map(String::from).collect();
    v.sort();
    v
}

#[test]
fn batch_ops_report_has_one_line_per_finished_object() {
    let dir = tempfile::tempdir().unwrap();
    let state = planned(dir.path());
    let out = dir.path().join("report.csv");
    let o = ok(rekey(&[
        "report",
        "--state",
        state.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--format",
        "batch-ops",
    ]));
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        sorted_lines(&text),
        vec![
            "src-bucket,a%20b%2Bc%2Cd%20%C3%A9.txt,v2,succeeded,200,,Successful",
            "src-bucket,changed.txt,v9,failed,412,PreconditionFailed,rekey: changed",
            "src-bucket,fail.txt,v8,failed,403,AccessDenied,Access Denied",
        ]
    );
    let err = stderr(&o);
    assert!(err.contains("wrote 3 rows"), "{err}");
    for line in [
        "  pending                                   6",
        "  skipped                                   1",
        "  done                                      1",
        "  already_kms                               1",
        "  AccessDenied                              1",
        "  update                                    5",
        "  copy                                      3",
        "  multipart_copy                            1",
    ] {
        assert!(err.contains(line), "missing {line:?} in:\n{err}");
    }
    // Estimated against actual: 5 attempts recorded (1 + 3 + 1), no run yet.
    assert!(err.contains("estimated S3 PUT-class"), "{err}");
    assert!(err.contains("actual S3 requests                    5"), "{err}");

    // --only failed: the two objects a run dealt with and did not re-encrypt.
    let o = ok(rekey(&[
        "report",
        "--state",
        state.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--format",
        "batch-ops",
        "--only",
        "failed",
    ]));
    assert_eq!(sorted_lines(&std::fs::read_to_string(&out).unwrap()).len(), 2);
    assert!(stderr(&o).contains("wrote 2 rows"));
}

#[test]
fn csv_and_json_reports_carry_every_column() {
    let dir = tempfile::tempdir().unwrap();
    let state = planned(dir.path());
    let out = dir.path().join("failed.csv");
    ok(rekey(&["report", "--state", state.to_str().unwrap(), "--out", out.to_str().unwrap(), "--only", "failed"]));
    let header = "bucket,key,version_id,size,storage_class,encryption,method,skip_reason,status,etag,new_etag,new_version_id,kms_key_id,attempts,error_code,last_error,retryable,note,new_checksum,verify_verdict,verify_detail,verified_at,finished_at,id,replaced_version_id,replaced_deleted_at,replaced_delete_detail";
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!(
            "{header}\n\
             src-bucket,fail.txt,v8,100,STANDARD,SSE-S3,update,,failed,0123abcd,,,,3,AccessDenied,Access Denied,false,,,,,,2026-01-01T00:00:01Z,{},,,\n\
             src-bucket,changed.txt,v9,100,STANDARD,NOT-SSE,copy,,changed,0123abcd,,,,1,,,false,,,,,,2026-01-01T00:00:02Z,{},,,\n",
            id_of(&state, "fail.txt"),
            id_of(&state, "changed.txt")
        )
    );

    // All rows: the awkward key comes back exactly through RFC 4180 quoting.
    ok(rekey(&["report", "--state", state.to_str().unwrap(), "--out", out.to_str().unwrap(), "--format", "csv"]));
    let mut rdr = csv::Reader::from_path(&out).unwrap();
    let records: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 10);
    let done = records.iter().find(|r| &r[1] == AWKWARD_DONE).expect("the awkward key, decoded");
    assert_eq!(&done[8], "done");
    assert_eq!(&done[10], "e-new");
    let skipped = records.iter().find(|r| &r[1] == "kms.txt").unwrap();
    assert_eq!((&skipped[6], &skipped[7], &skipped[8]), ("", "already_kms", "skipped"));
    let nulls = records.iter().find(|r| &r[1] == "nulls/x.txt").unwrap();
    assert_eq!(&nulls[2], "", "a null version is an empty field");

    // JSON Lines: one object per line, every field.
    let json_out = dir.path().join("all.jsonl");
    ok(rekey(&["report", "--state", state.to_str().unwrap(), "--out", json_out.to_str().unwrap(), "--format", "json"]));
    let text = std::fs::read_to_string(&json_out).unwrap();
    let docs: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(docs.len(), 10);
    let done = docs.iter().find(|d| d["key"] == AWKWARD_DONE).unwrap();
    assert_eq!(
        *done,
        serde_json::json!({
            "id": id_of(&state, AWKWARD_DONE), "bucket": "src-bucket", "key": AWKWARD_DONE, "version_id": "v2",
            "size": 100, "storage_class": "STANDARD_IA", "encryption": "SSE-S3", "method": "update",
            "skip_reason": null, "status": "done", "etag": "0123abcd", "new_etag": "e-new",
            "new_version_id": null, "kms_key_id": "k1", "attempts": 1, "error_code": null, "last_error": null,
            "retryable": false, "note": null, "new_checksum": null, "verify_verdict": "ok", "verify_detail": null,
            "verified_at": "2026-01-02T00:00:00Z", "finished_at": "2026-01-01T00:00:00Z",
            "replaced_version_id": null, "replaced_deleted_at": null, "replaced_delete_detail": null
        })
    );
}

#[test]
fn export_writes_one_manifest_and_job_per_operation_and_class() {
    let dir = tempfile::tempdir().unwrap();
    let state = planned(dir.path());
    let out = dir.path().join("export");
    let o = ok(rekey(&[
        "export",
        "batch-ops",
        "--state",
        state.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--role-arn",
        ROLE,
        "--account-id",
        "111122223333",
        "--report-bucket",
        "reports-bucket",
        "--priority",
        "42",
    ]));
    let mut names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "copy-src-bucket-STANDARD.csv",
            "copy-src-bucket-STANDARD.job.json",
            "copy-src-bucket-STANDARD_IA.csv",
            "copy-src-bucket-STANDARD_IA.job.json",
            "update-src-bucket.csv",
            "update-src-bucket.job.json",
        ]
    );
    let read = |n: &str| std::fs::read_to_string(out.join(n)).unwrap();
    // Pending objects only (not done, failed or changed), URL-encoded, `null` for the null version.
    assert_eq!(
        read("update-src-bucket.csv"),
        "src-bucket,plain/a.txt,v1\nsrc-bucket,x%20y%2Bz%2C%C3%A9/%C3%BC.txt,v3\nsrc-bucket,nulls/x.txt,null\n"
    );
    assert_eq!(read("copy-src-bucket-STANDARD.csv"), "src-bucket,copy/b.txt,v4\n", "no object over 5 GiB");
    assert_eq!(read("copy-src-bucket-STANDARD_IA.csv"), "src-bucket,copy/ia.txt,v5\n");

    let job = |n: &str| -> serde_json::Value { serde_json::from_str(&read(n)).unwrap() };
    let md5 = |n: &str| format!("{:x}", Md5::digest(read(n).as_bytes()));
    let update = job("update-src-bucket.job.json");
    let etag = md5("update-src-bucket.csv");
    assert_eq!(
        update,
        serde_json::json!({
            "AccountId": "111122223333",
            "ConfirmationRequired": true,
            "Operation": { "S3UpdateObjectEncryption": { "ObjectEncryption": { "SSEKMS": { "KMSKeyArn": KEY, "BucketKeyEnabled": true } } } },
            "Report": {
                "Bucket": "arn:aws:s3:::reports-bucket",
                "Format": "Report_CSV_20180820",
                "Enabled": true,
                "Prefix": "rekey-batch-ops/job/reports/update-src-bucket",
                "ReportScope": "AllTasks"
            },
            "ClientRequestToken": format!("rekey-{etag}"),
            "Manifest": {
                "Spec": { "Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "VersionId"] },
                "Location": { "ObjectArn": "arn:aws:s3:::reports-bucket/rekey-batch-ops/job/update-src-bucket.csv", "ETag": etag }
            },
            "Description": "rekey: UpdateObjectEncryption of 3 objects in src-bucket",
            "Priority": 42,
            "RoleArn": ROLE
        })
    );
    let copy = job("copy-src-bucket-STANDARD_IA.job.json");
    assert_eq!(
        copy["Operation"],
        serde_json::json!({ "S3PutObjectCopy": {
            "TargetResource": "arn:aws:s3:::src-bucket",
            "MetadataDirective": "COPY",
            "NewObjectMetadata": { "SSEAlgorithm": "KMS" },
            "SSEAwsKmsKeyId": KEY,
            "BucketKeyEnabled": true,
            "StorageClass": "STANDARD_IA"
        }})
    );
    assert_eq!(copy["Manifest"]["Location"]["ETag"], md5("copy-src-bucket-STANDARD_IA.csv"));

    let text = stdout(&o);
    assert!(text.contains("3 jobs for 5 objects"), "{text}");
    assert!(text.contains("stays for `rekey run`: 1 objects, over 5 GiB"), "{text}");
    assert!(text.contains("Batch Operations route"), "{text}");
    assert!(text.contains("3 jobs x $0.25"), "{text}");
    assert!(text.contains("aws s3control create-job --region us-east-1 --cli-input-json file://"), "{text}");

    // A second export into the same directory is refused; --submit needs a bucket to upload to.
    let again = rekey(&[
        "export",
        "batch-ops",
        "--state",
        state.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--role-arn",
        ROLE,
        "--account-id",
        "111122223333",
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("not empty"), "{}", stderr(&again));
    let submit = rekey(&[
        "export",
        "batch-ops",
        "--state",
        state.to_str().unwrap(),
        "--out",
        dir.path().join("x").to_str().unwrap(),
        "--role-arn",
        ROLE,
        "--account-id",
        "111122223333",
        "--submit",
    ]);
    // --submit without a bucket to upload to is a usage error, before anything is written.
    assert_eq!(submit.status.code(), Some(2));
    assert!(stderr(&submit).contains("--report-bucket"), "{}", stderr(&submit));
    assert!(!dir.path().join("x").exists());
    let bad = rekey(&[
        "export",
        "batch-ops",
        "--state",
        state.to_str().unwrap(),
        "--out",
        dir.path().join("y").to_str().unwrap(),
        "--role-arn",
        ROLE,
        "--account-id",
        "1234",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--account-id '1234'"), "{}", stderr(&bad));
}

#[test]
fn import_round_trip_marks_done_and_failed() {
    let dir = tempfile::tempdir().unwrap();
    let state = planned(dir.path());
    let out = dir.path().join("export");
    ok(rekey(&[
        "export",
        "batch-ops",
        "--state",
        state.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--role-arn",
        ROLE,
        "--account-id",
        "111122223333",
    ]));
    // The update job's report: every manifest line succeeded (the awkward key written
    // form-style this time, as inventories do, and the null version as an empty field).
    let update_report = dir.path().join("update-results.csv");
    std::fs::write(
        &update_report,
        "src-bucket,plain/a.txt,v1,succeeded,200,,Successful\n\
         src-bucket,x+y%2Bz%2C%C3%A9/%C3%BC.txt,v3,succeeded,200,,Successful\n\
         src-bucket,nulls/x.txt,,succeeded,200,,Successful\n\
         src-bucket,fail.txt,v8,succeeded,200,,Successful\n",
    )
    .unwrap();
    // The copy jobs' report: failures in both column orders, one for an object already
    // done, and one object the plan never had.
    let copy_report = dir.path().join("copy-results.csv");
    std::fs::write(
        &copy_report,
        "src-bucket,copy/b.txt,v4,failed,403,AccessDenied,Access Denied\n\
         src-bucket,copy/ia.txt,v5,failed,SlowDown,503,\"Please reduce your request rate, \"\"now\"\"\"\n\
         src-bucket,a%20b%2Bc%2Cd%20%C3%A9.txt,v2,failed,500,InternalError,oops\n\
         src-bucket,nope.txt,v99,succeeded,200,,Successful\n",
    )
    .unwrap();
    let o = ok(rekey(&[
        "import",
        "batch-ops",
        "--state",
        state.to_str().unwrap(),
        update_report.to_str().unwrap(),
        copy_report.to_str().unwrap(),
    ]));
    let text = stdout(&o);
    assert!(text.contains("marked done                                       4"), "{text}");
    assert!(text.contains("marked failed                                     2"), "{text}");
    assert!(text.contains("already done, failure not applied                 1"), "{text}");
    assert!(text.contains("unknown (not in the plan)                         1"), "{text}");
    assert!(stderr(&o).contains("1 reported objects are not planned objects"), "{}", stderr(&o));
    assert!(stderr(&o).contains("s3://src-bucket/nope.txt (version v99)"), "{}", stderr(&o));

    let db = rusqlite::Connection::open(&state).unwrap();
    let get = |key: &str| -> (String, Option<String>, Option<String>, bool, Option<String>, i64) {
        db.query_row(
            "SELECT status, error_code, last_error, retryable, kms_key_id, attempts FROM objects WHERE key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )
        .unwrap()
    };
    for key in ["plain/a.txt", AWKWARD_PENDING, "nulls/x.txt"] {
        assert_eq!(get(key), ("done".into(), None, None, false, Some(KEY.into()), 1), "{key}");
    }
    // A failed object that the job then re-encrypted: done, its error cleared.
    assert_eq!(get("fail.txt"), ("done".into(), None, None, false, Some(KEY.into()), 4));
    assert_eq!(
        get("copy/b.txt"),
        ("failed".into(), Some("AccessDenied".into()), Some("Access Denied".into()), false, None, 1)
    );
    assert_eq!(
        get("copy/ia.txt"),
        (
            "failed".into(),
            Some("SlowDown".into()),
            Some("Please reduce your request rate, \"now\"".into()),
            true,
            None,
            1
        )
    );
    assert_eq!(get(AWKWARD_DONE).0, "done", "a done object is never downgraded");
    let note: String = db.query_row("SELECT note FROM objects WHERE key = 'plain/a.txt'", [], |r| r.get(0)).unwrap();
    assert_eq!(note, "batch_ops");
    drop(db);

    // Status and report agree with the truth.
    let report = dir.path().join("after.csv");
    ok(rekey(&[
        "report",
        "--state",
        state.to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
        "--format",
        "batch-ops",
        "--only",
        "failed",
    ]));
    assert_eq!(
        sorted_lines(&std::fs::read_to_string(&report).unwrap()),
        vec![
            "src-bucket,changed.txt,v9,failed,412,PreconditionFailed,rekey: changed",
            "src-bucket,copy/b.txt,v4,failed,403,AccessDenied,Access Denied",
            "src-bucket,copy/ia.txt,v5,failed,503,SlowDown,\"Please reduce your request rate, \"\"now\"\"\"",
        ]
    );
    let status = ok(rekey(&["status", "--state", state.to_str().unwrap(), "--format", "json"]));
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(s["by_status"], serde_json::json!({"done": 5, "failed": 2, "changed": 1, "pending": 1, "skipped": 1}));
}

#[test]
fn malformed_reports_name_the_file_and_line_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = planned(dir.path());
    let cases = [
        (
            "short.csv",
            "src-bucket,plain/a.txt,v1,succeeded,200,,Successful\nsrc-bucket,copy/b.txt,v4,failed\n",
            "short.csv: line 2: expected 7 fields",
        ),
        (
            "status.csv",
            "src-bucket,plain/a.txt,v1,maybe,200,,x\n",
            "status.csv: line 1: field TaskStatus: 'maybe' is neither succeeded nor failed",
        ),
        (
            "key.csv",
            "src-bucket,plain/a.txt,v1,succeeded,200,,Successful\n\nsrc-bucket,bad%ZZ,v1,succeeded,200,,Successful\n",
            "key.csv: line 3: field Key: 'bad%ZZ'",
        ),
        (
            "multiline.csv",
            "src-bucket,plain/a.txt,v1,failed,500,InternalError,\"two\nlines\"\nsrc-bucket,plain/a.txt,v1,nope,200,,x",
            "multiline.csv: line 3: field TaskStatus: 'nope'",
        ),
    ];
    for (name, body, want) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let o = rekey(&["import", "batch-ops", "--state", state.to_str().unwrap(), path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        let err = stderr(&o);
        assert!(err.contains(want), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
    // Line 1 of short.csv was valid, but nothing was applied.
    let db = rusqlite::Connection::open(&state).unwrap();
    let status: String =
        db.query_row("SELECT status FROM objects WHERE key = 'plain/a.txt'", [], |r| r.get(0)).unwrap();
    assert_eq!(status, "pending");
    let missing = rekey(&["import", "batch-ops", "--state", state.to_str().unwrap(), "/nonexistent/r.csv"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("/nonexistent/r.csv: cannot open"), "{}", stderr(&missing));
}
