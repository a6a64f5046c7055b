//! `rekey plan --shards N` and `rekey status` over several checkpoints, on a generated
//! inventory (no emulator).

use crate::support::{json, ok, plan_args, rekey_offline as rekey, stderr, stdout};
use rekey::inventory::synthetic::{demo_rows, write_inventory, InventorySpec, FULL_SCHEMA};
use rekey::plan::shard::shard_of;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

const CREATED: i64 = 1_764_000_000_000;
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const ROWS: usize = 3_000;

/// A realistic inventory (every class and encryption, versions, delete markers, locks,
/// awkward keys) in two data files.
fn inventory(dir: &Path) -> PathBuf {
    let spec = InventorySpec {
        dest_prefix: "inv-prefix".into(),
        file_schema: FULL_SCHEMA.into(),
        data_files: 2,
        ..InventorySpec::new(&dir.join("dest-bucket"), "src-bucket", CREATED)
    };
    write_inventory(&spec, demo_rows("src-bucket", ROWS, 2, CREATED, 7)).unwrap()
}

fn plan(manifest: &Path, state: &Path, extra: &[&str]) -> Output {
    let mut args = plan_args(manifest, KEY, state, &["--format", "json"]);
    args.extend_from_slice(extra);
    rekey(&args)
}

/// Every object of a checkpoint: (bucket, key, version) → (method, skip reason, status).
type Objects = BTreeMap<(String, String, Option<String>), (Option<String>, Option<String>, String)>;

fn objects(state: &Path) -> Objects {
    let db = rusqlite::Connection::open(state).unwrap();
    let mut stmt =
        db.prepare("SELECT bucket, key, version_id, method, skip_reason, status FROM objects ORDER BY id").unwrap();
    let rows = stmt
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), (r.get(3)?, r.get(4)?, r.get(5)?))))
        .unwrap()
        .map(|r| r.unwrap());
    let mut all = Objects::new();
    for (k, v) in rows {
        assert!(all.insert(k.clone(), v).is_none(), "{} holds {k:?} twice", state.display());
    }
    all
}

fn options(state: &Path) -> serde_json::Value {
    let db = rusqlite::Connection::open(state).unwrap();
    let text: String = db.query_row("SELECT options_json FROM run", [], |r| r.get(0)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn shard_files(dir: &Path, stem: &str, n: usize) -> Vec<PathBuf> {
    (1..=n).map(|i| dir.join(format!("{stem}.shard-{i}-of-{n}.rekey"))).collect()
}

fn files_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn shards_partition_the_unsharded_plan() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inventory(dir.path());
    let whole_state = dir.path().join("whole.rekey");
    let whole = json(&ok(plan(&manifest, &whole_state, &[])));
    let all = objects(&whole_state);
    assert_eq!(all.len(), ROWS);

    let out = dir.path().join("a");
    std::fs::create_dir(&out).unwrap();
    let sharded = ok(plan(&manifest, &out.join("plan.rekey"), &["--shards", "4"]));
    assert_eq!(
        files_in(&out),
        ["plan.shard-1-of-4.rekey", "plan.shard-2-of-4.rekey", "plan.shard-3-of-4.rekey", "plan.shard-4-of-4.rekey"]
            .map(String::from)
            .into(),
        "one checkpoint per shard, no temporary file, no unsharded plan"
    );
    let shards: Vec<Objects> = shard_files(&out, "plan", 4).iter().map(|p| objects(p)).collect();

    // The union is the unsharded plan, object for object and fate for fate, with no overlap.
    let mut union = Objects::new();
    for (i, shard) in shards.iter().enumerate() {
        assert!(shard.len() > ROWS / 8, "shard {} holds only {} of {ROWS}", i + 1, shard.len());
        for (k, v) in shard {
            assert_eq!(shard_of(&k.0, &k.1, 4), i, "{k:?} is in shard {} but hashes elsewhere", i + 1);
            assert!(union.insert(k.clone(), v.clone()).is_none(), "{k:?} is in two shards");
        }
    }
    assert_eq!(union, all);

    // Every version of a key is in the key's shard.
    let mut shard_of_key: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (i, shard) in shards.iter().enumerate() {
        for (b, k, _) in shard.keys() {
            assert_eq!(*shard_of_key.entry((b.as_str(), k.as_str())).or_insert(i), i, "{k} is split");
        }
    }
    assert!(shard_of_key.len() < ROWS, "the inventory has keys with several versions");

    // The estimates: the whole job equals the unsharded one; each shard at --kms-share / 4.
    let doc = json(&sharded);
    assert_eq!(doc["schema"], "rekey.sharded-estimate/1");
    assert_eq!(doc["shards"], 4);
    assert_eq!(doc["kms_share_total"], 0.5);
    assert_eq!(doc["kms_share_per_shard"], 0.125);
    assert!(doc["notes"][0].as_str().unwrap().contains("per account and region"), "{}", doc["notes"]);
    assert_eq!(doc["total"]["objects"], whole["objects"]);
    assert_eq!(doc["total"]["requests"], whole["requests"]);
    assert_eq!(doc["total"]["cost_usd"]["total"], whole["cost_usd"]["total"]);
    assert_eq!(doc["total"]["duration_seconds"], whole["duration_seconds"]);
    let by_shard = doc["by_shard"].as_array().unwrap();
    assert_eq!(by_shard.len(), 4);
    let mut planned = 0;
    for (i, e) in by_shard.iter().enumerate() {
        let path = shard_files(&out, "plan", 4)[i].clone();
        assert_eq!(e["shard"]["index"], i + 1);
        assert_eq!(e["shard"]["count"], 4);
        assert_eq!(e["shard"]["kms_share"], 0.125);
        assert_eq!(e["shard"]["state_file"], path.display().to_string());
        assert_eq!(e["assumptions"]["kms_share"], 0.125);
        assert_eq!(e["assumptions"]["kms_rps"], 100_000.0 * 0.125);
        let notes = e["assumptions"]["notes"].to_string();
        assert!(notes.contains(&format!("shard {} of 4", i + 1)) && notes.contains("0.5 / 4 = 0.125"), "{notes}");
        assert_eq!(
            e["objects"]["planned"].as_u64().unwrap(),
            shards[i].values().filter(|v| v.0.is_some()).count() as u64
        );
        planned += e["objects"]["planned"].as_u64().unwrap();
        // The checkpoint paces its run at the shard's share, and holds the shard's estimate.
        assert_eq!(options(&path)["kms-share"], 0.125);
        assert_eq!(options(&path)["shards"], 4);
    }
    assert_eq!(planned, whole["objects"]["planned"].as_u64().unwrap());
    assert_eq!(stderr(&sharded).matches("checkpoint ").count(), 4, "{}", stderr(&sharded));

    // Planned again (on one reader thread this time): every object in the same shard.
    let again = dir.path().join("b");
    std::fs::create_dir(&again).unwrap();
    ok(plan(&manifest, &again.join("plan.rekey"), &["--shards", "4", "--threads", "1"]));
    for (i, p) in shard_files(&again, "plan", 4).iter().enumerate() {
        assert_eq!(objects(p), shards[i], "shard {} differs between two planning runs", i + 1);
    }

    // `--shards 1` is the unsharded plan, at --state itself.
    let one = dir.path().join("one.rekey");
    let single = json(&ok(plan(&manifest, &one, &["--shards", "1"])));
    assert_eq!(objects(&one), all);
    assert_eq!(single["objects"], whole["objects"]);
    assert!(single.get("shard").is_none());
}

#[test]
fn sharded_estimate_says_the_share_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inventory(dir.path());
    let m = manifest.to_str().unwrap();
    let table = stdout(&ok(rekey(&["estimate", "--inventory", m, "--shards", "4", "--kms-share", "0.4"])));
    assert!(table.contains("Whole job, all 4 shards together (at --kms-share 0.4)"), "{table}");
    assert!(table.contains("each runs on its own machine at --kms-share 0.4 / 4 = 0.1 of the KMS quota"), "{table}");
    assert!(table.contains("FNV-1a 64"), "{table}");
    assert!(table.contains("not KMS headroom"), "{table}");
    for i in 1..=4 {
        assert!(table.contains(&format!("{i}/4")), "{table}");
    }

    let csv =
        stdout(&ok(rekey(&["estimate", "--inventory", m, "--shards", "4", "--kms-share", "0.4", "--format", "csv"])));
    let mut rdr = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(
        rdr.headers().unwrap().iter().collect::<Vec<_>>(),
        ["shard", "line", "method", "storage_class", "objects", "quantity", "unit", "usd"]
    );
    let recs: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    let shares: Vec<&csv::StringRecord> = recs.iter().filter(|r| &r[1] == "kms_share").collect();
    assert_eq!(shares.len(), 4);
    for (i, r) in shares.iter().enumerate() {
        assert_eq!(&r[0], (i + 1).to_string());
        assert_eq!(&r[5], "0.1");
        assert_eq!(&r[6], "of the KMS quota: --kms-share 0.4 / 4 shards");
    }
    let totals: Vec<&csv::StringRecord> = recs.iter().filter(|r| &r[1] == "total").collect();
    assert_eq!(totals.len(), 5, "the whole job's total and one per shard");
    assert_eq!(&totals[0][0], "all");
    let sum: u64 = totals[1..].iter().map(|r| r[4].parse::<u64>().unwrap()).sum();
    assert_eq!(sum, totals[0][4].parse::<u64>().unwrap());

    // An estimate writes nothing.
    assert_eq!(files_in(dir.path()), ["dest-bucket".to_string()].into());
}

#[test]
fn bad_shard_counts_and_existing_shards_are_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inventory(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let state = out.join("plan.rekey");

    let zero = plan(&manifest, &state, &["--shards", "0"]);
    assert_eq!(zero.status.code(), Some(1));
    assert!(stderr(&zero).contains("--shards 0: must be between 1 and 256"), "{}", stderr(&zero));
    assert_eq!(stderr(&zero).trim_end().lines().count(), 1, "{}", stderr(&zero));
    let many = plan(&manifest, &state, &["--shards", "1000"]);
    assert_eq!(many.status.code(), Some(1));
    assert!(stderr(&many).contains("--shards 1000"), "{}", stderr(&many));
    let word = plan(&manifest, &state, &["--shards", "four"]);
    assert_eq!(word.status.code(), Some(2), "a usage error");
    assert!(stderr(&word).contains("--shards"), "{}", stderr(&word));
    assert!(files_in(&out).is_empty(), "{:?}", files_in(&out));

    // The job file takes `shards`; a bad value there names the file and the key.
    let job = out.join("job.toml");
    std::fs::write(
        &job,
        format!(
            "inventory = {:?}\nkms-key = {KEY:?}\nstate = \"plan.rekey\"\nshards = 2\n",
            manifest.to_str().unwrap()
        ),
    )
    .unwrap();
    ok(rekey(&["plan", "--job", job.to_str().unwrap()]));
    assert!(out.join("plan.shard-1-of-2.rekey").is_file() && out.join("plan.shard-2-of-2.rekey").is_file());
    std::fs::write(&job, "shards = -3\n").unwrap();
    let bad = rekey(&["plan", "--job", job.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("job.toml") && stderr(&bad).contains("shards"), "{}", stderr(&bad));

    // One shard already there: refused, and no other shard left behind.
    std::fs::write(out.join("plan.shard-3-of-4.rekey"), "not a plan").unwrap();
    let clash = plan(&manifest, &state, &["--shards", "4"]);
    assert_eq!(clash.status.code(), Some(1));
    assert!(stderr(&clash).contains("plan.shard-3-of-4.rekey"), "{}", stderr(&clash));
    assert_eq!(
        files_in(&out),
        ["job.toml", "plan.shard-1-of-2.rekey", "plan.shard-2-of-2.rekey", "plan.shard-3-of-4.rekey"]
            .map(String::from)
            .into()
    );
}

/// A progress snapshot as a running `rekey run` writes it, from a live process (this one).
fn running_snapshot(kms_rate: f64, eta: f64) -> String {
    serde_json::json!({
        "schema": "rekey.progress/1", "pid": std::process::id(), "state": "running",
        "started_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:01:00Z", "elapsed_secs": 60.0,
        "total_objects": 100, "total_bytes": 1000, "done": 10, "failed": 0, "changed": 0, "gone": 0,
        "needs_restore": 0, "bytes_done": 100, "requests": 10, "retries": 0, "throttles_kms": 1, "throttles_s3": 2,
        "transient_errors": 0, "objects_per_sec": 5.0, "kms_rate": kms_rate, "kms_ceiling": 12500.0,
        "s3_rate": 2.0 * kms_rate, "s3_ceiling": 3500.0, "window": 8, "latency_ms": 20.0, "eta_secs": eta
    })
    .to_string()
}

#[test]
fn status_sums_several_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = inventory(dir.path());
    let whole = dir.path().join("whole.rekey");
    ok(plan(&manifest, &whole, &[]));
    ok(plan(&manifest, &dir.path().join("plan.rekey"), &["--shards", "4"]));
    let shards = shard_files(dir.path(), "plan", 4);

    // The same outcomes in the whole plan and in whichever shard holds each object.
    let outcomes = [
        ("done", "UPDATE objects SET status = 'done', attempts = 1, verify_verdict = 'ok' WHERE id IN (SELECT id FROM objects WHERE status = 'pending' AND key = ?1)"),
        ("failed", "UPDATE objects SET status = 'failed', attempts = 2, error_code = 'AccessDenied' WHERE id IN (SELECT id FROM objects WHERE status = 'pending' AND key = ?1)"),
    ];
    let pending: Vec<String> = {
        let db = rusqlite::Connection::open(&whole).unwrap();
        let mut stmt = db.prepare("SELECT DISTINCT key FROM objects WHERE status = 'pending' ORDER BY key").unwrap();
        let keys = stmt.query_map([], |r| r.get(0)).unwrap().map(|k| k.unwrap()).collect();
        keys
    };
    assert!(pending.len() > 100);
    let mut changed = 0;
    for (i, key) in pending.iter().enumerate().filter(|(i, _)| i % 7 < 2) {
        let (_, sql) = outcomes[i % 7];
        let n = rusqlite::Connection::open(&whole).unwrap().execute(sql, [key]).unwrap();
        let m: usize = shards.iter().map(|s| rusqlite::Connection::open(s).unwrap().execute(sql, [key]).unwrap()).sum();
        assert_eq!(n, m, "{key}");
        changed += n;
    }
    assert!(changed > 20);

    let path = |p: &PathBuf| p.to_str().unwrap().to_string();
    let mut args = vec!["status".to_string(), "--format".into(), "json".into(), "--state".into()];
    args.extend(shards.iter().map(path));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sum = json(&ok(rekey(&args)));
    let one = json(&ok(rekey(&["status", "--state", whole.to_str().unwrap(), "--format", "json"])));
    assert_eq!(sum["schema"], "rekey.status-sum/1");
    for field in ["by_status", "by_method", "by_skip_reason", "to_do", "by_verify_verdict"] {
        assert_eq!(sum[field], one[field], "{field}");
    }
    assert!(one["by_status"]["done"].as_u64().unwrap() > 0 && one["by_status"]["failed"].as_u64().unwrap() > 0);
    assert_eq!(sum["state_files"], serde_json::json!(shards.iter().map(path).collect::<Vec<_>>()));
    assert_eq!(sum["running"], 0);
    assert_eq!(sum["live"]["kms_rate"].to_string(), "0.0", "no run: zero, not -0");
    assert_eq!(sum["live"]["eta_secs"], serde_json::Value::Null);
    assert_eq!(sum["files"].as_array().unwrap().len(), 4);
    assert_eq!(sum["files"][2]["state_file"], path(&shards[2]));
    assert_eq!(sum["files"][2]["schema"], "rekey.status/1");

    // One file: the single-checkpoint document, as before.
    let single = json(&ok(rekey(&["status", "--state", &path(&shards[0]), "--format", "json"])));
    assert_eq!(single["schema"], "rekey.status/1");
    assert_eq!(single["state_file"], path(&shards[0]));
    assert_eq!(single, sum["files"][0]);

    // Two runs going on: their rates add up, and the job ends with the slower.
    for (s, (rate, eta)) in shards.iter().zip([(100.0, 30.0), (250.0, 90.0)]) {
        rusqlite::Connection::open(s)
            .unwrap()
            .execute("INSERT OR REPLACE INTO progress (id, json) VALUES (1, ?1)", [running_snapshot(rate, eta)])
            .unwrap();
    }
    let sum = json(&ok(rekey(&args)));
    assert_eq!(sum["running"], 2);
    assert_eq!(sum["live"]["kms_rate"], 350.0);
    assert_eq!(sum["live"]["s3_rate"], 700.0);
    assert_eq!(sum["live"]["throttles"], 6);
    assert_eq!(sum["live"]["eta_secs"], 90.0);
    assert_eq!(sum["files"][0]["running"], true);

    // The table: repeated --state works as well as a list after one.
    let mut table_args = vec!["status".to_string()];
    for s in &shards {
        table_args.push("--state".into());
        table_args.push(path(s));
    }
    let table_args: Vec<&str> = table_args.iter().map(String::as_str).collect();
    let table = stdout(&ok(rekey(&table_args)));
    assert!(table.starts_with("4 checkpoints, summed:\n"), "{table}");
    assert!(table.contains("running: 2 of 4; together KMS 350 rps, S3 700 rps"), "{table}");
    let done = one["by_status"]["done"].as_u64().unwrap();
    assert!(table.contains(&format!("  {:<20} {:>14}\n", "done", rekey::units::thousands(done))), "{table}");
    assert!(table.contains("no run yet"), "{table}");

    // The same file twice would count it twice; a missing one is named.
    let twice = rekey(&["status", "--state", &path(&shards[0]), "--state", &path(&shards[0])]);
    assert_eq!(twice.status.code(), Some(2));
    assert!(stderr(&twice).contains("given twice"), "{}", stderr(&twice));
    let missing = dir.path().join("plan.shard-9-of-4.rekey");
    let gone = rekey(&["status", "--state", &path(&shards[0]), "--state", &path(&missing)]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains("plan.shard-9-of-4.rekey"), "{}", stderr(&gone));
    let none = rekey(&["status"]);
    assert_eq!(none.status.code(), Some(2), "--state is required");
}
