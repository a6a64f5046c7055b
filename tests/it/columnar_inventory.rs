//! Parquet and ORC inventories plan exactly as CSV ones do: the real samples of one bucket
//! in three formats, and generated inventories in all three, give the same checkpoint row
//! for row (key, version, size, decision, every stored field) and the same estimate.

use crate::support::{plan_args, rekey_offline as rekey, stderr};
use rekey::inventory::synthetic::{demo_rows, write_inventory, FullRow, InventorySpec};
use rekey::inventory::FileFormat;
use rekey::units::{ms_from_rfc3339, GIB};
use std::path::{Path, PathBuf};

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const REAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/real/real-orcabus-filemanager");
const CREATED: i64 = 1_764_000_000_000;

/// Every stored field of every planned object, in a fixed order, as text.
type Objects = Vec<Vec<String>>;

/// `rekey plan` on `manifest`: the checkpoint's objects and the estimate (without the
/// inventory's own name, which differs by format).
fn plan(manifest: &Path) -> (Objects, serde_json::Value) {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("x.rekey");
    let out = rekey(&plan_args(manifest, KEY, &state, &["--format", "json"]));
    assert!(out.status.success(), "{}: {}", manifest.display(), stderr(&out));
    let mut estimate: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    estimate["inventory"].as_object_mut().unwrap().remove("source");
    let db = rusqlite::Connection::open(&state).unwrap();
    let mut q = db
        .prepare(
            "SELECT bucket, key, version_id, is_latest, is_delete_marker, size, last_modified_ms, etag,
                    storage_class, encryption, lock_mode, lock_retain_until, legal_hold, checksum_algorithm,
                    it_tier, method, skip_reason, status
             FROM objects ORDER BY key, version_id",
        )
        .unwrap();
    // A retain-until date is kept as the report spells it: compared as an instant (CSV
    // writers differ on whether `.000` is shown).
    let objects = q
        .query_map([], |r| {
            (0..18)
                .map(|i| {
                    r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                        rusqlite::types::Value::Text(t) if i == 11 => format!("{:?}", ms_from_rfc3339(&t)),
                        v => format!("{v:?}"),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (objects, estimate)
}

#[test]
fn real_parquet_and_orc_samples_plan_exactly_like_the_csv_one() {
    let (csv, csv_estimate) = plan(&Path::new(REAL).join("csv_inventory_manifest.json"));
    // The five rows of the sample: two null-version and three versioned rows, one of them
    // a delete marker.
    assert_eq!(csv.len(), 5, "{csv:#?}");
    assert!(csv.iter().any(|o| o[1] == "Text(\"inventory-test/key2\")" && o[4] == "Integer(1)"));
    assert!(csv.iter().any(|o| o[2] == "Text(\"tpinzcbxOfWpZsmjvVgdHEvSohsY4TA0\")" && o[5] == "Integer(5)"));
    for name in ["parquet_inventory_manifest.json", "orc_inventory_manifest.json"] {
        let (objects, estimate) = plan(&Path::new(REAL).join(name));
        assert_eq!(objects, csv, "{name}");
        assert_eq!(estimate, csv_estimate, "{name}");
    }
}

fn generated(dir: &Path, format: FileFormat, rows: &[Vec<String>], files: usize) -> PathBuf {
    let spec = InventorySpec {
        data_files: files,
        format,
        ..InventorySpec::new(&dir.join(format.as_str()), "src-bucket", CREATED)
    };
    write_inventory(&spec, rows.iter().cloned()).unwrap()
}

/// Rows whose keys CSV must encode and Parquet and ORC must not touch, and a lock date.
fn awkward_rows() -> Vec<Vec<String>> {
    let mut locked = FullRow::new("locked/c.txt", "v5", 100, "STANDARD", "SSE-S3", CREATED - 86_400_000);
    locked.lock_mode = "GOVERNANCE".into();
    let mut locked = locked.fields();
    locked[12] = "2027-01-02T03:04:05.678Z".into();
    let mut marker = FullRow::new("gone.txt", "v7", 0, "", "", CREATED);
    marker.delete_marker = true;
    vec![
        FullRow::new("a b+c%.txt", "v1", 100, "STANDARD_IA", "SSE-S3", CREATED).fields(),
        FullRow::new("a+b%2Bc%25.txt", "v2", 7, "STANDARD", "NOT-SSE", CREATED).fields(),
        FullRow::new("données/ü, \"q\"\nline", "", 100, "GLACIER", "SSE-S3", CREATED).fields(),
        FullRow::new("big/d.bin", "v6", 6 * GIB, "STANDARD", "NOT-SSE", CREATED).fields(),
        locked,
        marker.fields(),
    ]
}

#[test]
fn generated_inventories_plan_alike_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = awkward_rows();
    rows.extend(demo_rows("src-bucket", 3000, 3, CREATED, 11));
    let (csv, csv_estimate) = plan(&generated(dir.path(), FileFormat::Csv, &rows, 3));
    assert_eq!(csv.len(), rows.len());
    for key in ["a b+c%.txt", "a+b%2Bc%25.txt", "données/ü, \"q\"\nline"] {
        assert!(csv.iter().any(|o| o[1] == format!("Text({key:?})")), "{key}");
    }
    let locked = csv.iter().find(|o| o[1] == "Text(\"locked/c.txt\")").unwrap();
    assert_eq!(locked[11], format!("{:?}", ms_from_rfc3339("2027-01-02T03:04:05.678Z")));
    for format in [FileFormat::Parquet, FileFormat::Orc] {
        let (objects, estimate) = plan(&generated(dir.path(), format, &rows, 3));
        assert_eq!(objects.len(), csv.len(), "{format:?}");
        for (a, b) in objects.iter().zip(&csv) {
            assert_eq!(a, b, "{format:?}");
        }
        assert_eq!(estimate, csv_estimate, "{format:?}");
    }
}
