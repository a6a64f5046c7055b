//! Planner tests over real inventory files written to a temporary directory.

use super::*;
use crate::inventory::synthetic::{write_inventory, InventorySpec};
use crate::inventory::EncryptionStatus;
use crate::store::PlannedObject;
use crate::units::{rfc3339_from_ms, GIB};
use std::path::{Path, PathBuf};

const CREATED: i64 = 1_715_043_600_000; // 2024-05-07T01:00:00Z
const DAY: i64 = 86_400_000;
const UNVERSIONED: &str = "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass, EncryptionStatus, ObjectLockMode, ObjectLockLegalHoldStatus";

fn row(key: &str, size: u64, age_days: i64, class: &str, enc: &str) -> Vec<String> {
    ["b", key, &size.to_string(), &rfc3339_from_ms(CREATED - age_days * DAY), "etag", class, enc, "", ""]
        .map(String::from)
        .to_vec()
}

fn config(manifest: &Path) -> PlanConfig {
    PlanConfig {
        inventory: manifest.display().to_string(),
        open: OpenOptions { verify: true, ..OpenOptions::default() },
        classify: ClassifyOptions::default(),
        versioned: None,
        bucket_key: false,
        prices: PriceTable::default(),
        region: "us-east-1".into(),
        pace: Pace { kms_quota: KmsQuota::for_region("us-east-1"), kms_share: 0.5, s3_rps: 3500.0 },
        monthly_gets: None,
        skip_bad_rows: false,
        threads: 2,
    }
}

fn inventory(dir: &Path, schema: &str, files: usize, rows: Vec<Vec<String>>) -> PathBuf {
    let spec = InventorySpec { file_schema: schema.into(), data_files: files, ..InventorySpec::new(dir, "b", CREATED) };
    write_inventory(&spec, rows).unwrap()
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1.5e-6
}

/// The worked example of docs/cost-model.md. Every figure below is computed by hand from the price
/// table, not by the cost model.
#[test]
fn hand_computed_estimate_with_early_deletion_and_multipart() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inventory(
        dir.path(),
        UNVERSIONED,
        2,
        vec![
            row("a", GIB, 100, "STANDARD_IA", "SSE-S3"),     // update
            row("b", 2 * GIB, 10, "STANDARD_IA", "NOT-SSE"), // copy, 20 days early
            row("c", 6 * GIB, 400, "STANDARD", "NOT-SSE"),   // multipart copy, 12 parts
            row("d", 100, 400, "GLACIER", "NOT-SSE"),        // needs_restore
            row("e", 100, 400, "STANDARD", "SSE-KMS"),       // already_kms
            row("f", 1024, 30, "GLACIER_IR", "NOT-SSE"),     // copy, 60 days early, billed as 128 KiB
        ],
    );
    let (e, stats) = build_plan(&config(&manifest), None, None).unwrap();
    assert_eq!((stats.files, stats.rows), (2, 6));
    assert_eq!(e.objects.planned, 4);
    assert_eq!(e.objects.planned_bytes, GIB + 2 * GIB + 6 * GIB + 1024);
    assert_eq!(e.objects.by_method["update"], 1);
    assert_eq!(e.objects.by_method["copy"], 2);
    assert_eq!(e.objects.by_method["multipart_copy"], 1);
    assert_eq!(e.objects.skipped.get("needs_restore"), Some(&1));
    assert_eq!(e.objects.skipped.get("already_kms"), Some(&1));
    // PUT-class: a 1, b 1, c 12 parts + create + complete, f 1. GET-class: c's HEAD and tagging.
    assert_eq!((e.requests.s3_put_class, e.requests.s3_get_class, e.requests.kms), (17, 2, 16));
    let s3 = 0.005 / 1000.0 // a: update, always at the STANDARD price
        + 0.01 / 1000.0 // b: STANDARD_IA copy
        + 14.0 * 0.005 / 1000.0 + 2.0 * 0.0004 / 1000.0 // c
        + 0.02 / 1000.0; // f: GLACIER_IR copy
    let kms = 16.0 * 0.03 / 10_000.0;
    let retrieval = 2.0 * 0.01 + (1024.0 / GIB as f64) * 0.03;
    let early = 2.0 * 0.0125 * 20.0 / 30.0 + (128.0 / (1024.0 * 1024.0)) * 0.004 * 60.0 / 30.0;
    let total = s3 + kms + retrieval + early;
    assert!(near(e.cost_usd.s3_requests, s3), "{} vs {s3}", e.cost_usd.s3_requests);
    assert!(near(e.cost_usd.kms_requests, kms));
    assert!(near(e.cost_usd.retrieval, retrieval));
    assert!(near(e.cost_usd.early_deletion, early), "{} vs {early}", e.cost_usd.early_deletion);
    assert!(near(e.cost_usd.total, total));
    // Copy only: a becomes an IA copy (PUT at IA price, 1 GiB retrieval, old enough for no fee).
    let copy_only = total - 0.005 / 1000.0 + 0.01 / 1000.0 + 0.01;
    assert!(near(e.alternatives_usd.copy_only, copy_only), "{} vs {copy_only}", e.alternatives_usd.copy_only);
    assert!(near(e.alternatives_usd.batch_operations, total + 0.25 + 4.0 / 1e6));
    assert_eq!(e.noncurrent_storage_usd_per_month, 0.0);
    assert!(!e.assumptions.versioned);
    assert_eq!(e.duration_bound_by, "s3"); // 19 S3 requests at 3,500/s vs 16 KMS at 50,000/s
}

#[test]
fn versioned_report_costs_noncurrent_storage_and_skips_old_versions() {
    let dir = tempfile::tempdir().unwrap();
    let schema = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, StorageClass, EncryptionStatus";
    let r = |key: &str, v: &str, latest: &str, dm: &str, size: &str, class: &str, enc: &str| {
        ["b", key, v, latest, dm, size, class, enc].map(String::from).to_vec()
    };
    let manifest = inventory(
        dir.path(),
        schema,
        1,
        vec![
            r("x", "v2", "true", "false", &(4 * GIB).to_string(), "STANDARD_IA", "NOT-SSE"),
            r("x", "v1", "false", "false", "10", "STANDARD_IA", "NOT-SSE"),
            r("y", "v3", "true", "true", "", "", ""),
            r("z", "", "true", "false", "5", "STANDARD", "SSE-S3"),
        ],
    );
    let (e, _) = build_plan(&config(&manifest), None, None).unwrap();
    assert!(e.assumptions.versioned);
    assert_eq!(e.objects.planned, 2);
    assert_eq!(e.objects.skipped.get("noncurrent_version"), Some(&1));
    assert_eq!(e.objects.skipped.get("delete_marker"), Some(&1));
    assert_eq!(e.cost_usd.early_deletion, 0.0);
    assert!(near(e.noncurrent_storage_usd_per_month, 4.0 * 0.0125));
    // --versioned false turns the old version's storage into an early-deletion question.
    let mut cfg = config(&manifest);
    cfg.versioned = Some(false);
    let (e, _) = build_plan(&cfg, None, None).unwrap();
    assert_eq!(e.noncurrent_storage_usd_per_month, 0.0);
}

#[test]
fn totals_equal_the_sum_of_per_object_costs_whatever_the_threading() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<_> = crate::inventory::synthetic::demo_rows("b", 5000, 3, CREATED, 11).collect();
    let spec = InventorySpec { data_files: 5, ..InventorySpec::new(dir.path(), "b", CREATED) };
    let manifest = write_inventory(&spec, rows).unwrap();
    let mut one = config(&manifest);
    one.threads = 1;
    let (a, _) = build_plan(&one, None, None).unwrap();
    let (b, _) = build_plan(&config(&manifest), None, None).unwrap();
    assert_eq!(a.objects.planned, b.objects.planned);
    assert_eq!(a.requests.kms, b.requests.kms);
    assert!(near(a.cost_usd.total, b.cost_usd.total));
    assert_eq!(a.objects.planned + a.objects.skipped_total, 5000);
    let lines: f64 = a.breakdown.iter().map(|l| l.total_usd).sum();
    assert!((lines - a.cost_usd.total).abs() < 1e-6 * a.breakdown.len() as f64);
    assert!(a.objects.by_method["multipart_copy"] >= 1, "the demo mix has objects over 5 GiB");
}

#[test]
fn every_row_reaches_the_sink_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<_> = crate::inventory::synthetic::demo_rows("b", 20_000, 0, CREATED, 5).collect();
    let spec = InventorySpec { data_files: 3, ..InventorySpec::new(dir.path(), "b", CREATED) };
    let manifest = write_inventory(&spec, rows).unwrap();
    let mut seen: Vec<PlannedObject> = Vec::new();
    let (e, stats) = build_plan(
        &config(&manifest),
        None,
        Some(&mut |b: &[PlannedObject]| {
            seen.extend_from_slice(b);
            Ok(())
        }),
    )
    .unwrap();
    assert_eq!(stats.rows, 20_000);
    assert_eq!(seen.len(), 20_000);
    let planned = seen.iter().filter(|o| matches!(o.decision, Decision::Migrate(_))).count() as u64;
    assert_eq!(planned, e.objects.planned);
    let mut ids: Vec<_> = seen.iter().map(|o| (o.row.key.clone(), o.row.version_id.clone())).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20_000);
}

fn first_data_file(manifest: &Path) -> PathBuf {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    let key = m["files"][0]["key"].as_str().unwrap();
    crate::inventory::source::resolve_local(manifest, key).unwrap()
}

fn small(dir: &Path) -> PathBuf {
    inventory(dir, UNVERSIONED, 1, (0..50).map(|i| row(&format!("k{i}"), 10, 400, "STANDARD", "SSE-S3")).collect())
}

fn plan_err(cfg: &PlanConfig) -> String {
    build_plan(cfg, None, None).unwrap_err().to_string()
}

#[test]
fn md5_and_size_are_verified_unless_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = small(dir.path());
    let data = first_data_file(&manifest);
    // Same size, one byte changed inside the gzip trailer's CRC: MD5 differs, gzip still "reads".
    let mut bytes = std::fs::read(&data).unwrap();
    let n = bytes.len();
    bytes[n - 6] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();
    let e = plan_err(&config(&manifest));
    assert!(e.contains("MD5 is") || e.contains("corrupt"), "{e}");
    // A size mismatch is caught before reading.
    bytes.push(0);
    std::fs::write(&data, &bytes).unwrap();
    let e = plan_err(&config(&manifest));
    assert!(e.contains("size is") && e.contains("manifest says"), "{e}");
}

#[test]
fn md5_mismatch_alone_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = small(dir.path());
    // Rewrite the manifest with a wrong MD5 (and drop the checksum file that would catch it).
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["files"][0]["MD5checksum"] = "0123456789abcdef0123456789abcdef".into();
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    std::fs::remove_file(manifest.with_extension("checksum")).unwrap();
    let e = plan_err(&config(&manifest));
    assert!(e.contains("MD5 is") && e.contains("manifest says 0123456789abcdef0123456789abcdef"), "{e}");
    let mut cfg = config(&manifest);
    cfg.open.verify = false;
    assert_eq!(build_plan(&cfg, None, None).unwrap().0.objects.planned, 50);
}

#[test]
fn manifest_checksum_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = small(dir.path());
    std::fs::write(manifest.with_extension("checksum"), "ffffffffffffffffffffffffffffffff\n").unwrap();
    assert!(plan_err(&config(&manifest)).contains("manifest.checksum says ffff"));
}

#[test]
fn truncated_and_non_gzip_data_files_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = small(dir.path());
    let data = first_data_file(&manifest);
    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    let mut cfg = config(&manifest);
    cfg.open.verify = false; // let the reader meet the truncation itself
    let e = plan_err(&cfg);
    assert!(e.contains("cannot read"), "{e}");
    std::fs::write(&data, b"Bucket,Key\nb,k\n").unwrap();
    let e = plan_err(&cfg);
    assert!(e.contains("cannot read") && e.contains("not gzip"), "{e}");
}

#[test]
fn bad_rows_stop_the_plan_or_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows: Vec<_> = (0..10).map(|i| row(&format!("k{i}"), 10, 400, "STANDARD", "SSE-S3")).collect();
    rows[6][2] = "ten".into();
    let manifest = inventory(dir.path(), UNVERSIONED, 1, rows);
    let e = plan_err(&config(&manifest));
    assert!(e.contains("row 7 (line 7): field Size: 'ten' is not a whole number"), "{e}");
    assert!(e.contains(".csv.gz"), "names the file: {e}");
    let mut cfg = config(&manifest);
    cfg.skip_bad_rows = true;
    let (est, _) = build_plan(&cfg, None, None).unwrap();
    assert_eq!(est.objects.skipped.get("bad_row"), Some(&1));
    assert_eq!(est.objects.planned, 9);
}

#[test]
fn missing_encryption_column_needs_an_assumption() {
    let dir = tempfile::tempdir().unwrap();
    let schema = "Bucket, Key, Size";
    let manifest = inventory(dir.path(), schema, 1, vec![["b", "k", "1"].map(String::from).to_vec()]);
    let e = plan_err(&config(&manifest));
    assert!(e.contains("enable the optional field EncryptionStatus"), "{e}");
    let mut cfg = config(&manifest);
    cfg.open.assume_encryption = Some(EncryptionStatus::NotSse);
    let (est, _) = build_plan(&cfg, None, None).unwrap();
    assert_eq!(est.objects.by_method["copy"], 1);
}

#[test]
fn empty_inventories_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inventory(dir.path(), UNVERSIONED, 2, vec![]);
    let (e, stats) = build_plan(&config(&manifest), None, None).unwrap();
    assert_eq!((stats.rows, e.objects.planned, e.cost_usd.total), (0, 0, 0.0));
    // A manifest listing no files at all.
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["files"] = serde_json::json!([]);
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    std::fs::remove_file(manifest.with_extension("checksum")).unwrap();
    let (e, stats) = build_plan(&config(&manifest), None, None).unwrap();
    assert_eq!((stats.files, e.objects.planned), (0, 0));
}

#[test]
fn real_sample_inventory() {
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/real/real-orcabus-filemanager");
    let (e, stats) =
        build_plan(&config(Path::new(&format!("{samples}/csv_inventory_manifest.json"))), None, None).unwrap();
    let total = std::fs::read_to_string(format!("{samples}/csv_inventory.csv")).unwrap().lines().count() as u64;
    assert_eq!(stats.rows, total);
    assert_eq!(e.objects.planned + e.objects.skipped_total, total);
    assert!(e.objects.skipped.get("noncurrent_version").copied().unwrap_or(0) >= 1);
    assert!(e.objects.skipped.get("delete_marker").copied().unwrap_or(0) >= 1);
    assert_eq!(e.inventory.created.as_deref(), Some("2024-05-07T01:00:00Z"));
    let (e, _) =
        build_plan(&config(Path::new(&format!("{samples}/csv_inventory_no_version_manifest.json"))), None, None)
            .unwrap();
    assert!(!e.assumptions.versioned);
    assert_eq!(e.objects.by_method["update"], e.objects.planned);
}
