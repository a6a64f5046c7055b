//! Job files listing several inventories (`[[inventories]]`): buckets in two regions, each
//! with its own key, planned into one checkpoint each, the KMS share divided per region,
//! and `rekey status` broken down by bucket and region. Generated inventories, no emulator.

use crate::support::{json, ok, plan_args, rekey_offline as rekey, stderr, stdout};
use rekey::inventory::synthetic::{demo_rows, write_inventory, InventorySpec, FULL_SCHEMA};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

const CREATED: i64 = 1_764_000_000_000;
const KEY_US: &str = "arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const KEY_EU: &str = "arn:aws:kms:eu-west-1:111122223333:key/1a2b3c4d-5e6f-4a5b-8c7d-9e8f7a6b5c4d";

fn fails(o: Output) -> String {
    assert!(!o.status.success(), "rekey should have failed: {}", stdout(&o));
    stderr(&o)
}

/// An inventory of `rows` generated rows of `bucket`.
fn inventory(dir: &Path, bucket: &str, rows: usize, seed: u64) -> PathBuf {
    let spec = InventorySpec {
        file_schema: FULL_SCHEMA.into(),
        data_files: 2,
        ..InventorySpec::new(&dir.join(format!("dest-{bucket}")), bucket, CREATED)
    };
    write_inventory(&spec, demo_rows(bucket, rows, 1, CREATED, seed)).unwrap()
}

struct Job {
    dir: tempfile::TempDir,
    file: PathBuf,
    /// (bucket, manifest) per entry, in file order.
    inventories: Vec<(String, PathBuf)>,
}

/// Three inventories: two buckets in us-east-1 (one twice the size of the other) and one in
/// eu-west-1; `extra` is appended to the job file.
fn job(extra: &str) -> Job {
    let dir = tempfile::tempdir().unwrap();
    let inventories = vec![
        ("logs-us".to_string(), inventory(dir.path(), "logs-us", 2_000, 1)),
        ("media-us".to_string(), inventory(dir.path(), "media-us", 1_000, 2)),
        ("archive-eu".to_string(), inventory(dir.path(), "archive-eu", 600, 3)),
    ];
    let keys = [KEY_US, KEY_US, KEY_EU];
    let mut toml = String::from("state = \"fleet.rekey\"\nkms-share = 0.5\nformat = \"json\"\n");
    for ((_, manifest), key) in inventories.iter().zip(keys) {
        // Relative to the job file, as a job directory is moved as a whole.
        let rel = manifest.strip_prefix(dir.path()).unwrap();
        toml.push_str(&format!("\n[[inventories]]\ninventory = \"{}\"\nkms-key = \"{key}\"\n", rel.display()));
    }
    toml.push_str(extra);
    let file = dir.path().join("fleet.toml");
    std::fs::write(&file, toml).unwrap();
    Job { dir, file, inventories }
}

/// Every object of a checkpoint: (bucket, key, version) → (method, skip reason, status).
type Objects = BTreeMap<(String, String, Option<String>), (Option<String>, Option<String>, String)>;

fn objects(state: &Path) -> Objects {
    let db = rusqlite::Connection::open(state).unwrap();
    let mut stmt = db.prepare("SELECT bucket, key, version_id, method, skip_reason, status FROM objects").unwrap();
    let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), (r.get(3)?, r.get(4)?, r.get(5)?))));
    rows.unwrap().map(|r| r.unwrap()).collect()
}

/// The `run` row's options and estimate.
fn run_row(state: &Path) -> (Value, Value, Option<String>) {
    let db = rusqlite::Connection::open(state).unwrap();
    let (o, e, b): (String, String, Option<String>) = db
        .query_row("SELECT options_json, estimate_json, source_bucket FROM run", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    (serde_json::from_str(&o).unwrap(), serde_json::from_str(&e).unwrap(), b)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn a_job_of_three_inventories_plans_one_checkpoint_each_and_divides_the_share_per_region() {
    let j = job("");
    let out = ok(rekey(&["plan", "--job", j.file.to_str().unwrap()]));
    let doc = json(&out);
    assert_eq!(doc["schema"], "rekey.job-estimate/1");
    let entries = doc["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);

    let mut us_shares = Vec::new();
    for (x, (bucket, manifest)) in entries.iter().zip(&j.inventories) {
        // Named after the source bucket; the checkpoint is STATE's stem.NAME.ext.
        assert_eq!(x["name"], bucket.as_str());
        assert_eq!(x["bucket"], bucket.as_str());
        let state = j.dir.path().join(format!("fleet.{bucket}.rekey"));
        assert_eq!(x["state_files"][0], state.display().to_string());

        // The checkpoint holds exactly what planning that inventory alone holds.
        let alone = j.dir.path().join(format!("alone-{bucket}.rekey"));
        let key = if bucket.ends_with("-eu") { KEY_EU } else { KEY_US };
        ok(rekey(&plan_args(manifest, key, &alone, &["--format", "json"])));
        let (mine, theirs) = (objects(&state), objects(&alone));
        assert!(!mine.is_empty());
        assert_eq!(mine, theirs, "{bucket}: the job's checkpoint differs from planning it alone");
        let (_, alone_estimate, _) = run_row(&alone);

        // The checkpoint paces its run at the entry's share, and says so in its estimate.
        let (options, estimate, source_bucket) = run_row(&state);
        assert_eq!(source_bucket.as_deref(), Some(bucket.as_str()));
        assert_eq!(options["name"], bucket.as_str());
        assert!(options.get("inventories").is_none(), "{options}");
        let share = x["estimate"]["assumptions"]["kms_share"].as_f64().unwrap();
        assert_eq!(options["kms-share"].as_f64().unwrap(), share);
        assert_eq!(estimate["assumptions"]["kms_share"].as_f64().unwrap(), share);
        assert_eq!(estimate["duration_seconds"], x["estimate"]["duration_seconds"]);
        // Costs and counts are the entry's own, whatever its share.
        for field in ["objects", "requests", "cost_usd"] {
            assert_eq!(estimate[field], alone_estimate[field], "{bucket}: {field}");
        }
        if bucket.ends_with("-us") {
            us_shares.push((share, estimate["requests"]["kms"].as_f64().unwrap(), x["share_of_region"].clone()));
        } else {
            // Alone in its region: the whole of the region's share.
            assert_eq!(share, 0.5);
            assert_eq!(x["region"], "eu-west-1");
            assert_eq!(x["share_of_region"].as_f64(), Some(1.0));
            assert_eq!(estimate["duration_seconds"], alone_estimate["duration_seconds"]);
        }
    }
    // us-east-1's two entries divide its 0.5 in proportion to their KMS requests.
    let [(a, ka, ra), (b, kb, rb)] = us_shares.as_slice() else { panic!("{us_shares:?}") };
    assert!(close(a + b, 0.5), "{a} + {b}");
    assert!(close(a / b, ka / kb), "shares {a}/{b} against KMS requests {ka}/{kb}");
    assert!(close(ra.as_f64().unwrap() + rb.as_f64().unwrap(), 1.0));

    // The sums: by bucket, by region (quota per region), and the job.
    let regions = doc["by_region"].as_array().unwrap();
    let names: Vec<&str> = regions.iter().map(|r| r["region"].as_str().unwrap()).collect();
    assert_eq!(names, ["eu-west-1", "us-east-1"]);
    assert_eq!(regions[1]["entries"].as_array().unwrap().len(), 2);
    assert!(close(regions[1]["kms_share"].as_f64().unwrap(), 0.5));
    assert_eq!(regions[1]["kms_quota_rps"].as_f64(), Some(100_000.0));
    assert_eq!(doc["by_bucket"].as_array().unwrap().len(), 3);
    let sum = |f: &dyn Fn(&Value) -> f64| entries.iter().map(|x| f(&x["estimate"])).sum::<f64>();
    let t = &doc["total"];
    assert_eq!(t["objects_planned"].as_f64().unwrap(), sum(&|e| e["objects"]["planned"].as_f64().unwrap()));
    assert_eq!(t["kms_requests"].as_f64().unwrap(), sum(&|e| e["requests"]["kms"].as_f64().unwrap()));
    assert!(close(t["cost_usd"].as_f64().unwrap(), sum(&|e| e["cost_usd"]["total"].as_f64().unwrap())));
    let slowest = entries.iter().map(|x| x["estimate"]["duration_seconds"].as_f64().unwrap()).fold(0.0, f64::max);
    assert_eq!(t["duration_seconds"].as_f64().unwrap(), slowest);

    // status over the set: summed, and broken down by bucket and by region.
    let states: Vec<String> = j
        .inventories
        .iter()
        .map(|(b, _)| j.dir.path().join(format!("fleet.{b}.rekey")).display().to_string())
        .collect();
    let mut args = vec!["status", "--format", "json", "--state"];
    args.extend(states.iter().map(String::as_str));
    let status = json(&ok(rekey(&args)));
    let pending: u64 = entries.iter().map(|x| x["estimate"]["objects"]["planned"].as_u64().unwrap()).sum();
    assert_eq!(status["by_status"]["pending"].as_u64(), Some(pending));
    let by_bucket = status["by_bucket"].as_array().unwrap();
    assert_eq!(by_bucket.len(), 3);
    for b in by_bucket {
        let x = entries.iter().find(|x| x["bucket"] == b["bucket"]).unwrap();
        assert_eq!(b["region"], x["region"]);
        assert_eq!(b["to_do"], x["estimate"]["objects"]["planned"]);
    }
    let by_region = status["by_region"].as_array().unwrap();
    assert_eq!(by_region.len(), 2);
    assert_eq!(by_region[1]["region"], "us-east-1");
    assert_eq!(by_region[1]["files"], 2);
    assert!(close(by_region[1]["kms_share"].as_f64().unwrap(), 0.5));
    let mut args = vec!["status", "--state"];
    args.extend(states.iter().map(String::as_str));
    let table = stdout(&ok(rekey(&args)));
    assert!(table.contains("by bucket") && table.contains("by region") && table.contains("media-us"), "{table}");
}

#[test]
fn entries_take_their_own_settings_over_the_top_level_and_flags_over_both() {
    // media-us: copy only, under its own name, in two shards.
    let j = job("");
    let mut toml = std::fs::read_to_string(&j.file).unwrap();
    toml = toml.replacen(
        &format!("kms-key = \"{KEY_US}\"\n\n[[inventories]]\ninventory = \"dest-archive"),
        &format!("kms-key = \"{KEY_US}\"\nname = \"media\"\nmethod = \"copy\"\nshards = 2\n\n[[inventories]]\ninventory = \"dest-archive"),
        1,
    );
    assert!(toml.contains("name = \"media\""), "{toml}");
    std::fs::write(&j.file, &toml).unwrap();
    let doc = json(&ok(rekey(&["plan", "--job", j.file.to_str().unwrap(), "--bucket-key"])));
    let entries = doc["entries"].as_array().unwrap();
    let media = &entries[1];
    assert_eq!(media["name"], "media");
    let shards = media["by_shard"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    let share = media["estimate"]["assumptions"]["kms_share"].as_f64().unwrap();
    for (i, s) in shards.iter().enumerate() {
        assert!(close(s["assumptions"]["kms_share"].as_f64().unwrap(), share / 2.0));
        let state = j.dir.path().join(format!("fleet.media.shard-{}-of-2.rekey", i + 1));
        assert_eq!(s["shard"]["state_file"], state.display().to_string());
        let (options, _, _) = run_row(&state);
        assert_eq!(options["method"], "copy");
        assert!(close(options["kms-share"].as_f64().unwrap(), share / 2.0));
        assert_eq!(options["bucket-key"], true, "the flag applies to every entry");
        assert!(objects(&state).values().all(|(m, _, _)| m.as_deref() != Some("update")));
    }
    for x in entries {
        assert_eq!(x["estimate"]["assumptions"]["bucket_key"], true);
    }
    assert_eq!(entries[0]["estimate"]["assumptions"]["method"], "auto");
    // The table form names every bucket and region.
    let j2 = job("");
    let table = stdout(&ok(rekey(&["estimate", "--job", j2.file.to_str().unwrap(), "--format", "table"])));
    for word in ["logs-us", "media-us", "archive-eu", "By bucket", "By region", "us-east-1", "eu-west-1"] {
        assert!(table.contains(word), "{word}: {table}");
    }
    // CSV: the single-plan lines behind entry, bucket and region columns, a share line per
    // entry, and the job's totals.
    let csv = stdout(&ok(rekey(&["estimate", "--job", j2.file.to_str().unwrap(), "--format", "csv"])));
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(reader.headers().unwrap().iter().take(4).collect::<Vec<_>>(), ["entry", "bucket", "region", "line"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let shares: Vec<&str> = rows.iter().filter(|r| &r[3] == "kms_share").map(|r| &r[0]).collect();
    assert_eq!(shares, ["logs-us", "media-us", "archive-eu"]);
    let entry_totals: f64 =
        rows.iter().filter(|r| &r[3] == "total" && &r[0] != "all").map(|r| r[9].parse::<f64>().unwrap()).sum();
    let job_total = rows.iter().find(|r| &r[0] == "all" && &r[3] == "total").unwrap()[9].parse::<f64>().unwrap();
    assert!(close(entry_totals, job_total), "{entry_totals} != {job_total}");
    // estimate writes nothing.
    assert!(!j2.dir.path().join("fleet.logs-us.rekey").exists());
}

#[test]
fn clashing_or_broken_entries_are_refused_before_anything_is_written() {
    let cases: Vec<(&str, &str)> = vec![
        // The same bucket twice, both whole.
        ("[[inventories]]\ninventory = \"@logs\"\nkms-key = \"K_US\"\nname = \"again\"\n", "both cover bucket logs-us"),
        // Two entries of one name.
        ("[[inventories]]\ninventory = \"@logs\"\nkms-key = \"K_US\"\nname = \"media-us\"\ninclude-prefix = [\"x/\"]\n", "both named \"media-us\""),
        // One region, two shares.
        ("[[inventories]]\ninventory = \"@logs\"\nkms-key = \"K_US\"\nname = \"l2\"\ninclude-prefix = [\"x/\"]\nkms-share = 0.2\n", "set them once for the region"),
        // A manifest that is not there.
        ("[[inventories]]\ninventory = \"nowhere/manifest.json\"\nkms-key = \"K_US\"\n", "entry 4"),
        // A typo: refused with its line.
        ("[[inventories]]\ninventory = \"@logs\"\nkms_key = \"K_US\"\n", "line 19"),
        // An entry without an inventory.
        ("[[inventories]]\nkms-key = \"K_US\"\n", "entry 4: no `inventory`"),
        // A bad name.
        ("[[inventories]]\ninventory = \"@logs\"\nkms-key = \"K_US\"\nname = \"../up\"\n", "name \"../up\""),
        // A key in another region than the entry's region.
        ("[[inventories]]\ninventory = \"@logs\"\nkms-key = \"K_EU\"\nregion = \"us-east-1\"\n", "bucket's own region"),
    ];
    for (extra, expected) in cases {
        let j = job("");
        let logs = j.inventories[0].1.strip_prefix(j.dir.path()).unwrap().display().to_string();
        let extra = extra.replace("@logs", &logs).replace("K_US", KEY_US).replace("K_EU", KEY_EU);
        let mut toml = std::fs::read_to_string(&j.file).unwrap();
        toml.push('\n');
        toml.push_str(&extra);
        std::fs::write(&j.file, &toml).unwrap();
        let err = fails(rekey(&["plan", "--job", j.file.to_str().unwrap()]));
        assert!(err.contains(expected), "expected {expected:?} in: {err}\n{toml}");
        assert!(err.contains("fleet.toml") || expected.contains("both"), "the job file is named: {err}");
        let written: Vec<_> = std::fs::read_dir(j.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".rekey"))
            .collect();
        assert!(written.is_empty(), "{expected}: left {written:?}");
    }

    // Disjoint prefixes of one bucket are two entries, not a clash.
    let j = job("");
    let logs = j.inventories[0].1.strip_prefix(j.dir.path()).unwrap().display().to_string();
    let mut toml = std::fs::read_to_string(&j.file).unwrap();
    toml = toml.replacen(
        &format!("inventory = \"{logs}\"\n"),
        &format!("inventory = \"{logs}\"\ninclude-prefix = [\"a\"]\n"),
        1,
    );
    toml.push_str(&format!(
        "\n[[inventories]]\ninventory = \"{logs}\"\nkms-key = \"{KEY_US}\"\nname = \"logs-rest\"\ninclude-prefix = [\"b\", \"c\"]\n"
    ));
    std::fs::write(&j.file, &toml).unwrap();
    let doc = json(&ok(rekey(&["estimate", "--job", j.file.to_str().unwrap()])));
    assert_eq!(doc["entries"].as_array().unwrap().len(), 4);
    assert_eq!(doc["by_bucket"].as_array().unwrap().len(), 3, "two entries, one bucket line");

    // Flags that name one inventory make no sense for a job of several.
    let j = job("");
    let err = fails(rekey(&["plan", "--job", j.file.to_str().unwrap(), "--inventory", "x/manifest.json"]));
    assert!(err.contains("[[inventories]]"), "{err}");
    // An existing checkpoint is refused before planning begins.
    std::fs::write(j.dir.path().join("fleet.archive-eu.rekey"), b"").unwrap();
    let err = fails(rekey(&["plan", "--job", j.file.to_str().unwrap()]));
    assert!(err.contains("already exists") && err.contains("archive-eu"), "{err}");
    assert!(!j.dir.path().join("fleet.logs-us.rekey").exists());
}
