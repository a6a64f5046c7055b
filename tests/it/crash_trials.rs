//! Crash-resume trials: `rekey run` (the real binary, over HTTP, against the S3/KMS
//! emulator) killed at seeded random points and resumed until done, on versioned buckets
//! that hold both methods (SSE-S3 objects → update, unencrypted → copy) and three objects
//! above a lowered multipart threshold (multipart copy, 5 MiB parts).
//!
//! Kill points are chosen by progress, never by time: the driver polls
//! `rekey status --format json` and signals the run once `by_status.done` reaches a
//! seeded random target. After the last resume the bucket is the truth every count is
//! checked against: each planned object SSE-KMS under the key, copies with exactly one
//! new version, updates with none, the checkpoint's counts and new versions equal to
//! what S3 holds, no multipart upload open and no `upload_id` left in the checkpoint.
//!
//! `REKEY_TRIALS=N` raises the number of SIGKILL trials (default 10; SIGINT trials are
//! half as many, at least 4); `REKEY_TRIAL_SEED=S` changes the seeds.
//!
//! Also here: the disk filling up under the checkpoint (RLIMIT_FSIZE on the child), which
//! must stop the run cleanly with exit 5 and resume.

use crate::support::{plan_args, rekey_bin, Moto};
use aws_sdk_s3::primitives::ByteStream;
use rekey::cli::demo::bucket::{create_kms_key, populate, write_inventory_of, BucketSpec};
use rekey::units::Rng;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const MIB: usize = 1024 * 1024;
/// Small objects per trial bucket (about 70 % SSE-S3 → update, 30 % unencrypted → copy).
const SMALL: usize = 60;
/// Unencrypted objects above the 6 MiB threshold: 2, 2 and 3 parts of 5 MiB. Their keys
/// sit early, mid and late in plan order (plans follow the inventory, sorted by key).
const BIG: [(&str, usize); 3] = [
    ("data/raw/zz-big-1.bin", 7 * MIB),
    ("logs/2026/11/big-2.bin", 9 * MIB + 17),
    ("reports/q3 final/big-3.bin", 11 * MIB),
];
/// Slow enough (about 40 objects/s) that the kill lands mid-run.
const RUN_FLAGS: [&str; 5] = ["--quiet", "--kms-rps", "40", "--part-size", "5MiB"];

fn trials_wanted() -> usize {
    std::env::var("REKEY_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(10).max(1)
}

fn base_seed() -> u64 {
    std::env::var("REKEY_TRIAL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20261125)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kill {
    /// SIGKILL: no chance to record anything.
    Hard,
    /// SIGINT: drain in-flight requests, record them, exit 130.
    Graceful,
}

/// One trial's bucket, key and plan.
struct Trial {
    bucket: String,
    key: String,
    state: PathBuf,
    /// key → (method, inventoried version id, inventoried ETag)
    planned: HashMap<String, (String, Option<String>, String)>,
    _dir: tempfile::TempDir,
}

fn rekey(moto: &Moto, args: &[&str]) -> Output {
    Command::new(rekey_bin()).args(args).envs(moto.env_for_cli()).output().expect("run rekey")
}

fn status(moto: &Moto, state: &Path) -> Value {
    let out = rekey(moto, &["status", "--state", state.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

fn count(status: &Value, group: &str, name: &str) -> u64 {
    status[group][name].as_u64().unwrap_or(0)
}

fn spawn_run(moto: &Moto, state: &Path, extra: &[&str]) -> Child {
    Command::new(rekey_bin())
        .args(["run", "--state", state.to_str().unwrap()])
        .args(RUN_FLAGS)
        .args(extra)
        .envs(moto.env_for_cli())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rekey run")
}

/// A fresh versioned bucket of [`SMALL`] objects plus the [`BIG`] ones, its inventory, and
/// a plan with a 6 MiB multipart threshold.
async fn new_trial(moto: &Moto, s3: &aws_sdk_s3::Client, key: &str, name: &str, seed: u64) -> Trial {
    let spec = BucketSpec { seed, max_size: 4096, ..BucketSpec::new(name, SMALL) };
    let seeded = populate(s3, &spec).await.expect("populate");
    let mut encrypted: HashMap<String, bool> = seeded.iter().map(|o| (o.key.clone(), o.encrypted)).collect();
    for (i, (k, size)) in BIG.iter().enumerate() {
        let body: Vec<u8> = (0..*size).map(|j| (j * 7 + i) as u8).collect();
        s3.put_object().bucket(name).key(*k).body(ByteStream::from(body)).send().await.expect("put big");
        encrypted.insert(k.to_string(), false);
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_inventory_of(s3, name, &encrypted, &dir.path().join("inv")).await.expect("inventory");
    let state = dir.path().join("job.rekey");
    let out = rekey(moto, &plan_args(&manifest, key, &state, &["--multipart-threshold", "6MiB"]));
    assert!(out.status.success(), "plan failed: {}", String::from_utf8_lossy(&out.stderr));
    let conn = rusqlite::Connection::open(&state).unwrap();
    let mut stmt = conn.prepare("SELECT key, method, version_id, etag FROM objects WHERE method IS NOT NULL").unwrap();
    let planned: HashMap<String, (String, Option<String>, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    drop(stmt);
    assert_eq!(planned.len(), SMALL + BIG.len(), "every object planned");
    for (k, _) in BIG {
        assert_eq!(planned[k].0, "multipart_copy", "{k}");
    }
    assert!(planned.values().any(|p| p.0 == "update") && planned.values().any(|p| p.0 == "copy"));
    Trial { bucket: name.to_string(), key: key.to_string(), state, planned, _dir: dir }
}

async fn open_uploads(s3: &aws_sdk_s3::Client, bucket: &str) -> usize {
    s3.list_multipart_uploads().bucket(bucket).send().await.unwrap().uploads().len()
}

/// Rows of the checkpoint: key → (status, new_version_id, upload_id).
fn checkpoint_rows(state: &Path) -> HashMap<String, (String, Option<String>, Option<String>)> {
    let conn = rusqlite::Connection::open(state).unwrap();
    let mut stmt =
        conn.prepare("SELECT key, status, new_version_id, upload_id FROM objects WHERE method IS NOT NULL").unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))).unwrap();
    rows.map(Result::unwrap).collect()
}

/// HEAD every planned object: key → (SSE-KMS under the trial's key, current version id).
async fn bucket_truth(s3: &aws_sdk_s3::Client, t: &Trial) -> HashMap<String, (bool, Option<String>)> {
    let mut truth = HashMap::new();
    for k in t.planned.keys() {
        let h = s3.head_object().bucket(&t.bucket).key(k).send().await.unwrap_or_else(|e| panic!("HEAD {k}: {e:?}"));
        let kms = h.server_side_encryption().map(|s| s.as_str()) == Some("aws:kms")
            && h.ssekms_key_id().is_some_and(|id| rekey::s3::object_store::same_kms_key(id, &t.key));
        truth.insert(k.clone(), (kms, h.version_id().map(str::to_string)));
    }
    truth
}

/// What must hold after any stop: nothing the checkpoint calls done is not done in the
/// bucket (a crash may lose records, never invent them). After a graceful stop the two
/// agree exactly, and no upload is open anywhere.
async fn check_after_stop(s3: &aws_sdk_s3::Client, t: &Trial, kill: Kill) -> (u64, u64, usize, usize) {
    let rows = checkpoint_rows(&t.state);
    let truth = bucket_truth(s3, t).await;
    let mut done = 0;
    let mut kms = 0;
    for (k, (status, _, _)) in &rows {
        let in_bucket = truth[k].0;
        kms += in_bucket as u64;
        if status == "done" {
            done += 1;
            assert!(in_bucket, "{k} is done in the checkpoint but not SSE-KMS under the key in the bucket");
        } else {
            assert_eq!(status, "pending", "{k}: only pending or done after a stop");
        }
    }
    let recorded_uploads = rows.values().filter(|r| r.2.is_some()).count();
    let open = open_uploads(s3, &t.bucket).await;
    if kill == Kill::Graceful {
        assert_eq!(kms, done, "a graceful stop records every request it sent: checkpoint = bucket");
        assert_eq!(open, 0, "a graceful stop aborts or completes every multipart upload");
        assert_eq!(recorded_uploads, 0, "no upload_id left after a graceful stop");
    } else {
        // A crash can leave an upload open, but only one the checkpoint knows of, so the
        // next run aborts it.
        assert!(open <= recorded_uploads, "{open} uploads open, {recorded_uploads} recorded");
    }
    (done, kms, open, recorded_uploads)
}

/// The end state of a trial, against the bucket's truth.
async fn assert_trial_complete(moto: &Moto, s3: &aws_sdk_s3::Client, t: &Trial) {
    let s = status(moto, &t.state);
    let planned = t.planned.len() as u64;
    assert_eq!(count(&s, "by_status", "done"), planned, "{s}");
    for st in ["pending", "failed", "changed", "gone"] {
        assert_eq!(count(&s, "by_status", st), 0, "{st}: {s}");
    }
    for m in ["update", "copy", "multipart_copy"] {
        let want = t.planned.values().filter(|p| p.0 == m).count() as u64;
        assert_eq!(count(&s, "by_method", m), want, "{m}: {s}");
    }
    let rows = checkpoint_rows(&t.state);
    let truth = bucket_truth(s3, t).await;
    let versions = crate::support::version_counts(s3, &t.bucket).await;
    for (k, (method, inv_version, _)) in &t.planned {
        let (status, new_version, upload) = &rows[k];
        let (kms, current) = &truth[k];
        assert_eq!(status, "done", "{k}");
        assert!(*kms, "{k} ({method}) is SSE-KMS under the key");
        assert_eq!(upload, &None, "{k}: no upload_id left in the checkpoint");
        match method.as_str() {
            "update" => {
                assert_eq!(versions[k], 1, "an update writes no version: {k}");
                assert_eq!(current, inv_version, "an update keeps the version: {k}");
            }
            _ => {
                assert_eq!(versions[k], 2, "exactly one new version per copy: {k} ({method})");
                assert_ne!(current, inv_version, "{k}");
            }
        }
        if method != "update" {
            assert_eq!(new_version, current, "the checkpoint's new version is the bucket's current one: {k}");
        }
    }
    let open = s3.list_multipart_uploads().bucket(&t.bucket).send().await.unwrap();
    let detail: Vec<String> = open
        .uploads()
        .iter()
        .map(|u| {
            format!(
                "{:?} initiated {:?}: checkpoint {:?}",
                u.key(),
                u.initiated(),
                rows.get(u.key().unwrap_or_default())
            )
        })
        .collect();
    assert!(detail.is_empty(), "no multipart upload left open: {detail:?}");
}

fn signal(child: &Child, kill: Kill) {
    let sig = match kill {
        Kill::Hard => "-KILL",
        Kill::Graceful => "-INT",
    };
    let sent = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    assert!(sent.success(), "kill {sig}");
}

/// Runs `t` to completion, stopping it with `kill` at seeded random progress points (at
/// least once, at most three times). Returns the stops: (target, done at the stop,
/// SSE-KMS in the bucket at the stop, uploads open at the stop).
async fn drive(moto: &Moto, s3: &aws_sdk_s3::Client, t: &Trial, rng: &mut Rng, kill: Kill) -> Vec<String> {
    let planned = t.planned.len() as u64;
    let mut stops = Vec::new();
    for round in 0..6 {
        let done_before = count(&status(moto, &t.state), "by_status", "done");
        let remaining = planned - done_before;
        let again = stops.is_empty() || (stops.len() < 3 && rng.unit() < 0.6);
        // A SIGINT target lies past the canary (at most one update and one copy, done
        // before the engine starts): `rekey run` installs its Ctrl-C handler only then, so
        // a SIGINT during the pre-flight ends the process by the default action (see the
        // docs/reliability.md).
        let skip = if kill == Kill::Graceful { 3 } else { 1 };
        let target =
            (remaining > skip + 2 && again && round < 5).then(|| done_before + skip + rng.below(remaining - skip - 1));
        let mut child = spawn_run(moto, &t.state, &[]);
        let Some(target) = target else {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "final resume failed: {}", String::from_utf8_lossy(&out.stderr));
            return stops;
        };
        // Poll progress until the target is reached (or the run ends first).
        let mut seen = done_before;
        let mut finished_first = false;
        while seen < target {
            if child.try_wait().unwrap().is_some() {
                finished_first = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            seen = count(&status(moto, &t.state), "by_status", "done");
        }
        if !finished_first {
            signal(&child, kill);
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        match (kill, out.status.code()) {
            (_, Some(0)) => {
                // Finished before the signal landed: nothing left to do.
                stops.push(format!("target {target}: finished first"));
                return stops;
            }
            (Kill::Hard, None) => {}
            (Kill::Graceful, Some(130)) => {
                assert!(stderr.contains("resume with `rekey run --state"), "{stderr}");
            }
            (_, code) => panic!("{kill:?} stop: unexpected exit {code:?}: {stderr}"),
        }
        let (done, kms, open, recorded) = check_after_stop(s3, t, kill).await;
        stops.push(format!(
            "target {target}: stopped with {done} done in the checkpoint, {kms} SSE-KMS in the bucket, \
             {open} upload(s) open ({recorded} recorded)"
        ));
    }
    panic!("trial did not finish in 6 rounds: {stops:?}");
}

async fn trials(kill: Kill, n: usize, salt: u64) {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    let kms = moto.kms_client().await;
    let key = create_kms_key(&kms, "crash trials").await.expect("CreateKey");
    let started = std::time::Instant::now();
    let (mut stops_total, mut crashed_with_upload) = (0, 0);
    for i in 0..n {
        let seed = base_seed().wrapping_mul(1000).wrapping_add(salt + i as u64);
        let mut rng = Rng::new(seed);
        let name = format!("crash-{}-{i}", if kill == Kill::Hard { "kill" } else { "int" });
        let t = new_trial(&moto, &s3, &key, &name, seed).await;
        let stops = drive(&moto, &s3, &t, &mut rng, kill).await;
        assert_trial_complete(&moto, &s3, &t).await;
        let settled = rusqlite::Connection::open(&t.state)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM objects WHERE note = 'head_after_412'", [], |r| r.get::<_, i64>(0))
            .unwrap();
        stops_total += stops.iter().filter(|s| s.contains("stopped with")).count();
        crashed_with_upload +=
            stops.iter().filter(|s| s.contains("upload(s) open") && !s.contains(" 0 upload(s) open")).count();
        eprintln!(
            "{kill:?} trial {i} (seed {seed}, {} objects): {} stop(s); {settled} settled by HEAD after 412\n    {}",
            t.planned.len(),
            stops.len(),
            stops.join("\n    ")
        );
        // Free the emulator's memory: the multipart objects are the bulk of it.
        for (k, _) in BIG {
            let versions = s3.list_object_versions().bucket(&t.bucket).prefix(k).send().await.unwrap();
            for v in versions.versions() {
                s3.delete_object()
                    .bucket(&t.bucket)
                    .key(k)
                    .set_version_id(v.version_id().map(str::to_string))
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
    eprintln!(
        "{kill:?}: {n} trials, {stops_total} stops ({crashed_with_upload} with a multipart upload open), every object exactly once; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_then_resume_does_every_object_exactly_once() {
    trials(Kill::Hard, trials_wanted(), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_at_random_points_drains_records_and_resumes_exactly_once() {
    trials(Kill::Graceful, trials_wanted().div_ceil(2).max(4), 500).await;
}

/// The disk fills up under the checkpoint: the child `rekey run` gets RLIMIT_FSIZE (util-linux
/// `prlimit`, with SIGXFSZ ignored by the shell that execs it, so writes past the limit fail
/// with EFBIG instead of killing the process). The limit is chosen from the file sizes after
/// planning: the plan's checkpoint file plus 64 KiB. The run only appends to the WAL (whose
/// writes start at offset 0), so the main file stays writable and the WAL hits the limit
/// after a few dozen commits: mid-run, whatever the machine's speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_checkpoint_stops_cleanly_with_exit_5_and_resumes() {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    let kms = moto.kms_client().await;
    let key = create_kms_key(&kms, "disk full").await.expect("CreateKey");
    let spec = BucketSpec { seed: 77, max_size: 2048, ..BucketSpec::new("disk-full", 300) };
    let seeded = populate(&s3, &spec).await.expect("populate");
    let encrypted: HashMap<String, bool> = seeded.iter().map(|o| (o.key.clone(), o.encrypted)).collect();
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_inventory_of(&s3, &spec.bucket, &encrypted, &dir.path().join("inv")).await.unwrap();
    let state = dir.path().join("job.rekey");
    let out = rekey(
        &moto,
        &["plan", "--inventory", manifest.to_str().unwrap(), "--kms-key", &key, "--state", state.to_str().unwrap()],
    );
    assert!(out.status.success(), "plan failed: {}", String::from_utf8_lossy(&out.stderr));
    let planned_size = std::fs::metadata(&state).unwrap().len();
    let wal = PathBuf::from(format!("{}-wal", state.display()));
    let limit = planned_size + 64 * 1024;

    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; exec prlimit --fsize=\"$LIMIT\" -- \"$@\"")
        .arg("sh")
        .arg(rekey_bin())
        .args(["run", "--state", state.to_str().unwrap(), "--quiet", "--kms-rps", "40"])
        .env("LIMIT", limit.to_string())
        .envs(moto.env_for_cli())
        .output()
        .expect("sh -c prlimit rekey run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let wal_size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(5), "exit 5 when the checkpoint cannot be written: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("checkpoint")).collect();
    assert_eq!(lines.len(), 1, "one line about the checkpoint: {stderr}");
    assert!(lines[0].contains("the checkpoint could not be written"), "{}", lines[0]);
    let s = status(&moto, &state);
    let done = count(&s, "by_status", "done");
    eprintln!(
        "checkpoint {planned_size} B after planning, RLIMIT_FSIZE {limit} B: stopped with exit 5 at {done} of 300 \
         done, WAL {wal_size} B; stderr: {}",
        lines[0]
    );
    assert!(done < 300, "stopped before the end: {s}");
    assert_eq!(done + count(&s, "by_status", "pending"), 300, "{s}");

    // Space again: the resume completes, every object exactly once.
    let out = rekey(&moto, &["run", "--state", state.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "resume failed: {}", String::from_utf8_lossy(&out.stderr));
    let s = status(&moto, &state);
    assert_eq!(count(&s, "by_status", "done"), 300, "{s}");
    let methods: HashMap<String, String> = {
        let conn = rusqlite::Connection::open(&state).unwrap();
        let mut stmt = conn.prepare("SELECT key, method FROM objects WHERE method IS NOT NULL").unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.map(Result::unwrap).collect()
    };
    let versions = crate::support::version_counts(&s3, &spec.bucket).await;
    for o in &seeded {
        let h = s3.head_object().bucket(&spec.bucket).key(&o.key).send().await.unwrap();
        assert_eq!(h.server_side_encryption().map(|s| s.as_str()), Some("aws:kms"), "{}", o.key);
        let want = if methods[&o.key] == "update" { 1 } else { 2 };
        assert_eq!(versions[&o.key], want, "exactly once: {} ({})", o.key, methods[&o.key]);
    }
}
