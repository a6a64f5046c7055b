//! The `rekey` binary on inventories laid out as S3 delivers them:
//! `PREFIX/SOURCE-BUCKET/CONFIG/DATE/manifest.json` and `.../CONFIG/data/*.csv.gz`.

use crate::support::{plan_args, rekey_offline as rekey, stderr};
use rekey::inventory::synthetic::{write_inventory, FullRow, InventorySpec, FULL_SCHEMA};
use rekey::units::{rfc3339_from_ms, GIB};
use std::path::{Path, PathBuf};
use std::process::Output;

const CREATED: i64 = 1_764_000_000_000;
const DAY: i64 = 86_400_000;
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

/// A FULL_SCHEMA row: (key, version, latest, delete marker, size, class, encryption, lock mode, hold, tier).
#[allow(clippy::too_many_arguments)]
fn row(
    key: &str,
    v: &str,
    latest: bool,
    dm: bool,
    size: u64,
    class: &str,
    enc: &str,
    lock: &str,
    hold: &str,
    tier: &str,
) -> Vec<String> {
    FullRow {
        latest,
        delete_marker: dm,
        lock_mode: lock.into(),
        legal_hold: hold.into(),
        tier: tier.into(),
        ..FullRow::new(key, v, size, class, enc, CREATED - 200 * DAY)
    }
    .fields()
}

/// Twelve rows with a known fate each.
fn known_rows() -> Vec<Vec<String>> {
    vec![
        row("plain/a.txt", "v1", true, false, 100, "STANDARD", "SSE-S3", "", "", ""), // update
        row("a b+c%.txt", "v2", true, false, 100, "STANDARD_IA", "SSE-S3", "", "", ""), // update, awkward key
        row("données/ü, \"q\"\nline", "v3", true, false, 100, "GLACIER", "SSE-S3", "", "", ""), // update (no restore needed)
        row("plain/b.txt", "v4", true, false, 100, "STANDARD", "NOT-SSE", "", "", ""),          // copy
        row("locked/c.txt", "v5", true, false, 100, "STANDARD", "SSE-S3", "GOVERNANCE", "", ""), // copy (locked)
        row("big/d.bin", "v6", true, false, 6 * GIB, "STANDARD", "NOT-SSE", "", "", ""),        // multipart_copy
        row("plain/b.txt", "v0", false, false, 100, "STANDARD", "NOT-SSE", "", "", ""),         // noncurrent_version
        row("gone.txt", "v7", true, true, 0, "", "", "", "", ""),                               // delete_marker
        row("kms.txt", "v8", true, false, 100, "STANDARD", "SSE-KMS", "", "", ""),              // already_kms
        row("cold.txt", "v9", true, false, 100, "DEEP_ARCHIVE", "NOT-SSE", "", "", ""),         // needs_restore
        row("it.txt", "v10", true, false, 100, "INTELLIGENT_TIERING", "NOT-SSE", "", "On", "ARCHIVE_ACCESS"), // needs_restore
        row("edge.txt", "v11", true, false, 100, "OUTPOSTS", "SSE-S3", "", "", ""), // unsupported_storage_class
    ]
}

fn inventory(dir: &Path, rows: Vec<Vec<String>>, files: usize) -> PathBuf {
    let spec = InventorySpec {
        dest_prefix: "inv-prefix".into(),
        source_bucket: "src-bucket".into(),
        config_id: "daily".into(),
        file_schema: FULL_SCHEMA.into(),
        data_files: files,
        ..InventorySpec::new(&dir.join("dest-bucket"), "src-bucket", CREATED)
    };
    write_inventory(&spec, rows).unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "rekey failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object: {e}: {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn plan_writes_every_object_with_its_fate() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inventory(dir.path(), known_rows(), 3);
    assert!(manifest
        .ends_with(format!("inv-prefix/src-bucket/daily/{}-00Z/manifest.json", &rfc3339_from_ms(CREATED)[..13])));
    let state = dir.path().join("job.rekey");
    let out = rekey(&plan_args(&manifest, KEY, &state, &["--format", "json"]));
    let e = json(&out);
    assert_eq!(e["schema"], "rekey.estimate/1");
    assert_eq!(e["inventory"]["files"], 3);
    assert_eq!(e["inventory"]["rows"], 12);
    assert_eq!(e["inventory"]["created"], rfc3339_from_ms(CREATED));
    assert_eq!(e["objects"]["planned"], 6);
    assert_eq!(e["objects"]["by_method"], serde_json::json!({"update": 3, "copy": 2, "multipart_copy": 1}));
    assert_eq!(
        e["objects"]["skipped"],
        serde_json::json!({"delete_marker": 1, "noncurrent_version": 1, "already_kms": 1, "unsupported_storage_class": 1, "needs_restore": 2})
    );
    for k in ["s3_requests", "retrieval", "kms_requests", "early_deletion", "total"] {
        assert!(e["cost_usd"][k].is_number(), "cost_usd.{k}");
    }
    assert!(e["alternatives_usd"]["copy_only"].is_number());
    assert!(e["duration_seconds"].is_number());
    assert!(e["assumptions"]["prices"]["kms_per_10k_requests"].is_number());
    assert!(stderr(&out).contains("holds 12 objects"), "{}", stderr(&out));

    // The checkpoint holds every row, decoded, with its fate.
    let db = rusqlite::Connection::open(&state).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM objects"), 12);
    assert_eq!(count("SELECT COUNT(*) FROM objects WHERE status = 'pending'"), 6);
    assert_eq!(count("SELECT COUNT(*) FROM objects WHERE status = 'skipped'"), 6);
    let method: String = db.query_row("SELECT method FROM objects WHERE key = 'a b+c%.txt'", [], |r| r.get(0)).unwrap();
    assert_eq!(method, "update");
    let (method, class): (String, String) = db
        .query_row("SELECT method, storage_class FROM objects WHERE key = ?1", ["données/ü, \"q\"\nline"], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((method.as_str(), class.as_str()), ("update", "GLACIER"));
    let (lock, v): (String, String) = db
        .query_row("SELECT lock_mode, version_id FROM objects WHERE key = 'locked/c.txt'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((lock.as_str(), v.as_str()), ("GOVERNANCE", "v5"));
    let (src, key): (String, String) =
        db.query_row("SELECT inventory_source, kms_key_arn FROM run", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((src.as_str(), key.as_str()), (manifest.to_str().unwrap(), KEY));
    drop(db);

    // Planning again into the same state is refused, and the first plan is untouched.
    let again = rekey(&plan_args(&manifest, KEY, &state, &[]));
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already holds a plan of") && stderr(&again).contains("--replace"),
        "{}",
        stderr(&again)
    );
    let replaced = rekey(&plan_args(&manifest, KEY, &state, &["--replace", "--method", "copy", "--format", "json"]));
    assert_eq!(json(&replaced)["objects"]["by_method"]["update"], 0);
}

#[test]
fn estimate_formats_and_method_choices() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inventory(dir.path(), known_rows(), 1);
    let m = manifest.to_str().unwrap();
    let e = json(&rekey(&["estimate", "--inventory", m, "--method", "update", "--format", "json"]));
    assert_eq!(e["objects"]["by_method"], serde_json::json!({"update": 3, "copy": 0, "multipart_copy": 0}));
    // NOT-SSE: plain/b.txt, big/d.bin, cold.txt. Locked: locked/c.txt, it.txt (legal hold).
    assert_eq!(e["objects"]["skipped"]["not_encrypted"], 3);
    assert_eq!(e["objects"]["skipped"]["object_lock"], 2);
    let e = json(&rekey(&[
        "estimate",
        "--inventory",
        m,
        "--method",
        "copy",
        "--format",
        "json",
        "--include-prefix",
        "plain/",
        "--include-prefix",
        "big/",
    ]));
    assert_eq!(e["objects"]["by_method"], serde_json::json!({"update": 0, "copy": 2, "multipart_copy": 1}));
    // Rule order: gone.txt is a delete marker and plain/b.txt v0 noncurrent before any filter applies.
    assert_eq!(e["objects"]["skipped"]["filtered"], 7);
    // Bucket Key: KMS requests x 0.01.
    let plain = json(&rekey(&["estimate", "--inventory", m, "--format", "json"]));
    let bk = json(&rekey(&["estimate", "--inventory", m, "--format", "json", "--bucket-key"]));
    assert_eq!(plain["requests"]["kms"], 3 + 2 + 1 + 12);
    assert_eq!(bk["requests"]["kms_without_bucket_key"], plain["requests"]["kms"]);
    assert_eq!(bk["requests"]["kms"], 1); // 18 x 0.01 = 0.18, rounded up
                                          // Ongoing cost with --monthly-gets.
    let g = json(&rekey(&["estimate", "--inventory", m, "--format", "json", "--monthly-gets", "100000000"]));
    assert_eq!(g["ongoing_usd_per_month"]["kms_decrypt_without_bucket_key"], 300.0);
    assert_eq!(g["ongoing_usd_per_month"]["kms_decrypt_with_bucket_key"], 3.0);
    assert_eq!(g["ongoing_usd_per_month"]["kms_key"], 1.0);

    let table = rekey(&["estimate", "--inventory", m]);
    assert!(table.status.success());
    let t = String::from_utf8_lossy(&table.stdout);
    for needle in ["Planned: 6 objects", "multipart_copy", "needs_restore", "total", "Duration:"] {
        assert!(t.contains(needle), "table lacks {needle}:\n{t}");
    }
    let csv = rekey(&["estimate", "--inventory", m, "--format", "csv"]);
    let text = String::from_utf8(csv.stdout).unwrap();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        ["line", "method", "storage_class", "objects", "quantity", "unit", "usd"]
    );
    let total = rows.iter().find(|x| &x[0] == "total").unwrap();
    assert_eq!(total[6].parse::<f64>().unwrap(), plain["cost_usd"]["total"].as_f64().unwrap());
}

#[test]
fn job_file_settings_with_flags_overriding() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inventory(dir.path(), known_rows(), 1);
    let jobs = dir.path().join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let rel = pathdiff(&manifest, &jobs);
    std::fs::write(
        jobs.join("finance.toml"),
        format!("inventory = \"{rel}\"\nkms-key = \"{KEY}\"\nmethod = \"copy\"\nbucket-key = true\nexclude-prefix = [\"big/\"]\nformat = \"json\"\nstate = \"finance.rekey\"\n"),
    )
    .unwrap();
    let job = jobs.join("finance.toml");
    let e = json(&rekey(&["plan", "--job", job.to_str().unwrap()]));
    assert_eq!(e["assumptions"]["method"], "copy");
    assert_eq!(e["assumptions"]["bucket_key"], true);
    assert_eq!(e["objects"]["skipped"]["filtered"], 1);
    assert!(jobs.join("finance.rekey").is_file(), "state is relative to the job file");
    let e = json(&rekey(&["estimate", "--job", job.to_str().unwrap(), "--method", "auto", "--bucket-key=false"]));
    assert_eq!(e["assumptions"]["method"], "auto");
    assert_eq!(e["assumptions"]["bucket_key"], false);
    std::fs::write(jobs.join("typo.toml"), "inventory = \"x.json\"\nkms_key = \"k\"\n").unwrap();
    let bad = rekey(&["estimate", "--job", jobs.join("typo.toml").to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("typo.toml") && stderr(&bad).contains("kms_key"), "{}", stderr(&bad));
}

/// `a/b/c` relative to `a/x` is `../b/c` (enough for paths under one temp dir).
fn pathdiff(target: &Path, base: &Path) -> String {
    let t: Vec<_> = target.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".into(); b.len() - common];
    parts.extend(t[common..].iter().map(|c| c.as_os_str().to_string_lossy().into_owned()));
    parts.join("/")
}

#[test]
fn the_shipped_example_job_file_is_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    for entry in std::fs::read_dir(format!("{root}/jobs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let parsed: Result<rekey::cli::settings::PlanSettings, _> = toml::from_str(&text);
            assert!(parsed.is_ok(), "{}: {}", path.display(), parsed.unwrap_err());
        }
    }
}

#[test]
fn kms_key_must_be_a_full_arn_for_update() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inventory(dir.path(), known_rows(), 1);
    let state = dir.path().join("s.rekey");
    let out = rekey(&plan_args(&manifest, "alias/data", &state, &[]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("requires the full key ARN"), "{}", stderr(&out));
    assert!(!state.exists());
}

/// Breaks an inventory: given the manifest and its first data file.
type Damage = Box<dyn Fn(&Path, &Path)>;

/// Each broken inventory: exit 1, one line naming the cause, no panic, no checkpoint.
#[test]
fn bad_inventories_fail_cleanly() {
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "truncated gzip",
            Box::new(|_m, data| {
                let b = std::fs::read(data).unwrap();
                std::fs::write(data, &b[..b.len() - 20]).unwrap();
            }),
            "size is",
        ),
        (
            "md5 mismatch",
            Box::new(|m, _d| {
                let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(m).unwrap()).unwrap();
                v["files"][0]["MD5checksum"] = "00000000000000000000000000000000".into();
                std::fs::write(m, serde_json::to_vec(&v).unwrap()).unwrap();
                std::fs::remove_file(m.with_extension("checksum")).unwrap();
            }),
            "MD5 is",
        ),
        ("missing data file", Box::new(|_m, data| std::fs::remove_file(data).unwrap()), "not found; tried:"),
        (
            "invalid JSON",
            Box::new(|m, _d| {
                std::fs::write(m, b"{\"files\": [").unwrap();
                std::fs::remove_file(m.with_extension("checksum")).unwrap();
            }),
            "not a valid inventory manifest",
        ),
        (
            "manifest checksum mismatch",
            Box::new(|m, _d| std::fs::write(m, b"{\"files\": [").unwrap()),
            "manifest.checksum says",
        ),
        (
            "unknown fileFormat",
            Box::new(|m, _d| {
                let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(m).unwrap()).unwrap();
                v["fileFormat"] = "Avro".into();
                std::fs::write(m, serde_json::to_vec(&v).unwrap()).unwrap();
                std::fs::remove_file(m.with_extension("checksum")).unwrap();
            }),
            "unknown format 'Avro'",
        ),
        (
            "ORC label on a CSV fileSchema",
            Box::new(|m, _d| {
                let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(m).unwrap()).unwrap();
                v["fileFormat"] = "ORC".into();
                std::fs::write(m, serde_json::to_vec(&v).unwrap()).unwrap();
                std::fs::remove_file(m.with_extension("checksum")).unwrap();
            }),
            "field fileSchema: cannot read the Parquet or ORC fileSchema",
        ),
        (
            "Parquet manifest over gzip CSV data files",
            Box::new(|m, _d| {
                let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(m).unwrap()).unwrap();
                v["fileFormat"] = "Parquet".into();
                v["fileSchema"] =
                    "message s3.inventory { required binary bucket (STRING); required binary key (STRING); optional binary encryption_status (STRING);}".into();
                std::fs::write(m, serde_json::to_vec(&v).unwrap()).unwrap();
                std::fs::remove_file(m.with_extension("checksum")).unwrap();
            }),
            ".csv.gz: not a Parquet file: it does not start with the magic number PAR1 (it is gzip: a CSV data file?)",
        ),
    ];
    for (name, damage, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let manifest = inventory(dir.path(), known_rows(), 1);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        let data = dir.path().join("dest-bucket").join(v["files"][0]["key"].as_str().unwrap());
        damage(&manifest, &data);
        let state = dir.path().join("s.rekey");
        let out = rekey(&plan_args(&manifest, KEY, &state, &[]));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(expected), "{name}: expected '{expected}' in: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(!state.exists(), "{name}: no checkpoint left behind");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "dest-bucket")
            .collect();
        assert!(leftovers.is_empty(), "{name}: left {leftovers:?}");
        assert!(out.stdout.is_empty(), "{name}: nothing printed on stdout");
    }
}

#[test]
fn batch_operations_csv_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("manifest.csv");
    std::fs::write(
        &csv,
        "my-bucket,a+b%2Bc%25.txt,null\nmy-bucket,plain/x,3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY\nmy-bucket,y\n",
    )
    .unwrap();
    let c = csv.to_str().unwrap();
    let out = rekey(&["estimate", "--inventory", c]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--assume-encryption"), "{}", stderr(&out));
    let e = json(&rekey(&["estimate", "--inventory", c, "--assume-encryption", "SSE-S3", "--format", "json"]));
    assert_eq!(e["objects"]["by_method"]["update"], 3);
    assert_eq!(e["objects"]["unknown_size"], 3);
    let e = json(&rekey(&["estimate", "--inventory", c, "--assume-encryption", "NOT-SSE", "--format", "json"]));
    assert_eq!(e["objects"]["by_method"]["copy"], 3);
}

#[test]
fn offline_demo_plans_a_generated_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        rekey(&["demo", "--offline", "--rows", "3000", "--keep", dir.path().to_str().unwrap(), "--format", "json"]);
    let e = json(&out);
    assert_eq!(e["inventory"]["rows"], 3000);
    assert_eq!(e["inventory"]["files"], 4);
    assert!(e["objects"]["by_method"]["multipart_copy"].as_u64().unwrap() >= 1);
    assert!(e["objects"]["skipped"]["delete_marker"].as_u64().unwrap() >= 1);
    assert!(dir.path().join("demo.rekey").is_file());
}
