//! The fault matrix: `rekey run` (the real binary, over HTTP) against the S3/KMS emulator
//! while it throttles, fails, drops connections, slows down, or while another writer
//! changes objects under the run. Every assertion is about the bucket's truth (encryption,
//! version counts, content, tags) or the checkpoint's exact counts; measured rates and
//! counters are printed, never asserted against wall time.

use crate::support::{rekey_bin, Moto};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Tag, Tagging};
use rekey::cli::demo::bucket::{create_kms_key, populate, write_inventory_of, BucketSpec, SeededObject};
use serde_json::Value;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Fixture {
    s3: aws_sdk_s3::Client,
    key: String,
    bucket: String,
    seeded: Vec<SeededObject>,
    _dir: tempfile::TempDir,
    state: PathBuf,
}

/// A versioned bucket of `n` objects (SSE-S3 → update, unencrypted → copy), its
/// inventory, and a plan.
async fn fixture(moto: &Moto, bucket: &str, n: usize, seed: u64) -> Fixture {
    let s3 = moto.s3_client().await;
    let kms = moto.kms_client().await;
    let key = create_kms_key(&kms, "rekey faults").await.expect("CreateKey");
    let spec = BucketSpec { seed, max_size: 4096, ..BucketSpec::new(bucket, n) };
    let seeded = populate(&s3, &spec).await.expect("populate");
    let dir = tempfile::tempdir().unwrap();
    let encrypted: HashMap<String, bool> = seeded.iter().map(|o| (o.key.clone(), o.encrypted)).collect();
    let manifest = write_inventory_of(&s3, bucket, &encrypted, &dir.path().join("inv")).await.expect("inventory");
    let state = dir.path().join("job.rekey");
    let out = rekey(
        moto,
        &["plan", "--inventory", manifest.to_str().unwrap(), "--kms-key", &key, "--state", state.to_str().unwrap()],
    );
    assert!(out.status.success(), "plan failed: {}", String::from_utf8_lossy(&out.stderr));
    Fixture { s3, key, bucket: bucket.to_string(), seeded, _dir: dir, state }
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

/// key → method, from the checkpoint, and the keys in plan (dispatch) order.
fn plan_order(state: &Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(state).unwrap();
    let mut stmt = conn.prepare("SELECT key, method FROM objects WHERE method IS NOT NULL ORDER BY id").unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

fn row_status(state: &Path, key: &str) -> (String, Option<String>) {
    let conn = rusqlite::Connection::open(state).unwrap();
    conn.query_row("SELECT status, error_code FROM objects WHERE key = ?1", [key], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
}

/// Every seeded object (but `except`) is SSE-KMS under the key with its bytes intact;
/// updates kept ETag and version and wrote no version, copies wrote exactly one.
async fn assert_exactly_once(f: &Fixture, except: &[&str]) -> usize {
    let methods: HashMap<String, String> = plan_order(&f.state).into_iter().collect();
    let versions = crate::support::version_counts(&f.s3, &f.bucket).await;
    let mut checked = 0;
    for o in f.seeded.iter().filter(|o| !except.contains(&o.key.as_str())) {
        let k = &o.key;
        let head = f.s3.head_object().bucket(&f.bucket).key(k).send().await.expect("HEAD");
        assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("aws:kms"), "{k}");
        assert!(rekey::s3::object_store::same_kms_key(head.ssekms_key_id().unwrap(), &f.key), "{k}");
        let body = f.s3.get_object().bucket(&f.bucket).key(k).send().await.unwrap().body.collect().await.unwrap();
        assert_eq!(rekey::inventory::manifest::md5_hex(&body.into_bytes()), o.md5_etag, "bytes of {k}");
        match methods[k].as_str() {
            "update" => {
                assert_eq!(head.e_tag().unwrap().trim_matches('"'), o.md5_etag, "{k}");
                assert_eq!(head.version_id(), o.version_id.as_deref(), "{k}");
                assert_eq!(versions[k], 1, "an update writes no version: {k}");
            }
            "copy" => assert_eq!(versions[k], 2, "exactly one copy: {k}"),
            m => panic!("unexpected method {m} for {k}"),
        }
        checked += 1;
    }
    checked
}

/// `rekey run --json-progress` in the background; its snapshots are collected as they come.
struct Background {
    child: std::process::Child,
    snapshots: Arc<Mutex<Vec<Value>>>,
    reader: std::thread::JoinHandle<()>,
}

fn run_in_background(moto: &Moto, state: &Path, extra: &[&str]) -> Background {
    let mut child = Command::new(rekey_bin())
        .args(["run", "--state", state.to_str().unwrap(), "--json-progress"])
        .args(extra)
        .envs(moto.env_for_cli())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let snapshots = Arc::new(Mutex::new(Vec::new()));
    let sink = snapshots.clone();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            sink.lock().unwrap().push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}")));
        }
    });
    Background { child, snapshots, reader }
}

impl Background {
    fn wait(self) -> (std::process::ExitStatus, String, Vec<Value>) {
        let out = self.child.wait_with_output().unwrap();
        self.reader.join().unwrap();
        let snapshots = self.snapshots.lock().unwrap().clone();
        (out.status, String::from_utf8_lossy(&out.stderr).into_owned(), snapshots)
    }
}

fn wait_for_done(moto: &Moto, state: &Path, at_least: u64) -> u64 {
    for _ in 0..3000 {
        let done = count(&status(moto, state), "by_status", "done");
        if done >= at_least {
            return done;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("never reached {at_least} done");
}

/// Waits for a throttled background run and checks what every throttling scenario must
/// show: a clean exit, all `n` objects done and none failed. Returns the emulator's stats,
/// the run's `last_run` from status, and its progress snapshots.
fn finish_throttled_run(bg: Background, moto: &Moto, f: &Fixture, n: u64) -> (Value, Value, Vec<Value>) {
    let (exit, stderr, snapshots) = bg.wait();
    assert!(exit.success(), "run failed: {stderr}");
    let stats = moto.stats();
    let s = status(moto, &f.state);
    assert_eq!(count(&s, "by_status", "done"), n, "{s}");
    assert_eq!(count(&s, "by_status", "failed"), 0, "nothing fails because of throttling: {s}");
    (stats, s["last_run"].clone(), snapshots)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_storm_fails_nothing_is_counted_and_the_limiter_recovers() {
    const N: u64 = 300;
    let moto = Moto::start();
    let f = fixture(&moto, "storm", N as usize, 21).await;
    // The storm: KMS lets 15 requests/s through and S3 60, against 1,000 configured.
    moto.configure(r#"{"kms_rps": 15, "s3_rps": 60}"#);
    moto.reset_stats();
    let started = std::time::Instant::now();
    let bg = run_in_background(&moto, &f.state, &["--kms-rps", "1000", "--skip-preflight"]);
    let storm_done = wait_for_done(&moto, &f.state, 60);
    let storm_secs = started.elapsed().as_secs_f64();
    // Back to normal, from the test thread.
    moto.configure(r#"{"kms_rps": 0, "s3_rps": 0}"#);
    let storm_snapshots = bg.snapshots.lock().unwrap().len();
    let (stats, last_run, snapshots) = finish_throttled_run(bg, &moto, &f, N);
    let (retries, throttles_kms, throttles_s3) = (
        last_run["retries"].as_u64().unwrap(),
        last_run["throttles_kms"].as_u64().unwrap(),
        last_run["throttles_s3"].as_u64().unwrap(),
    );
    assert!(throttles_kms > 0 && retries > 0, "throttles and retries counted in status: {last_run}");
    assert_eq!(throttles_kms, stats["throttled_kms"].as_u64().unwrap(), "every KMS throttle sent is counted");
    assert_eq!(throttles_s3, stats["throttled_s3"].as_u64().unwrap(), "every S3 throttle sent is counted");
    // The adaptive rate dropped during the storm and came back up after it.
    let rates: Vec<f64> = snapshots.iter().map(|p| p["kms_rate"].as_f64().unwrap()).collect();
    let (min_i, min) =
        rates.iter().cloned().enumerate().fold((0, f64::MAX), |a, (i, r)| if r < a.1 { (i, r) } else { a });
    let end = *rates.last().unwrap();
    let peak_after = rates[min_i..].iter().cloned().fold(0.0, f64::max);
    eprintln!(
        "throttle storm (KMS 15 rps, S3 60 rps gates, engine told 1,000): {storm_done} objects done in the \
         storm ({storm_secs:.1} s, {storm_snapshots} snapshots), then normal; {N} done, 0 failed in {:.1} s; \
         {throttles_kms} KMS + {throttles_s3} S3 throttles, {retries} retries, {} requests; KMS rate: \
         started {:.0}, minimum {min:.1} (snapshot {min_i} of {}), highest after it {peak_after:.1}, ended {end:.1}",
        last_run["elapsed_secs"].as_f64().unwrap(),
        last_run["requests"],
        rates[0],
        rates.len()
    );
    assert!(end > min, "the limiter recovers after the storm: ended at {end}, minimum {min}");
    assert_eq!(assert_exactly_once(&f, &[]).await, N as usize);
}

/// The issue's throttle storm: half of all object requests answered 503 SlowDown for
/// `REKEY_STORM_SECS` (default 30) of the run, then none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_the_requests_slowed_down_for_a_while_fails_nothing_and_the_rate_comes_back() {
    const N: u64 = 500;
    let storm = Duration::from_secs(std::env::var("REKEY_STORM_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(30));
    let moto = Moto::start_with(&[("--seed", "11")]);
    let f = fixture(&moto, "half-storm", N as usize, 23).await;
    moto.configure(r#"{"slowdown_rate": 0.5}"#);
    moto.reset_stats();
    // 25 rps: the storm, not the emulator, is what the run meets.
    let bg = run_in_background(&moto, &f.state, &["--kms-rps", "25", "--s3-rps", "50", "--skip-preflight"]);
    std::thread::sleep(storm);
    moto.configure(r#"{"slowdown_rate": 0}"#);
    let in_storm = bg.snapshots.lock().unwrap().len();
    let storm_stats = moto.stats();
    let (stats, last_run, snapshots) = finish_throttled_run(bg, &moto, &f, N);
    let (retries, throttles_s3) = (last_run["retries"].as_u64().unwrap(), last_run["throttles_s3"].as_u64().unwrap());
    let slowdowns = stats["faults"]["slowdown"].as_u64().unwrap();
    assert!(slowdowns > 0, "the storm answered SlowDown: {stats}");
    assert_eq!(throttles_s3, stats["throttled_s3"].as_u64().unwrap(), "every SlowDown sent is counted: {last_run}");
    assert!(retries >= slowdowns, "every SlowDown was retried: {retries} retries, {slowdowns} SlowDowns");
    // During the storm the S3 rate was cut; after it, it came back up.
    let rates: Vec<f64> = snapshots.iter().map(|p| p["s3_rate"].as_f64().unwrap()).collect();
    let storm_min = rates[..in_storm.min(rates.len())].iter().cloned().fold(f64::MAX, f64::min);
    let after_peak = rates[in_storm.min(rates.len())..].iter().cloned().fold(0.0, f64::max);
    let storm_done =
        storm_stats["requests"].as_object().map_or(0, |r| r.values().map(|v| v.as_u64().unwrap()).sum::<u64>());
    eprintln!(
        "half the requests SlowDown for {} s: {storm_done} requests in the storm, {slowdowns} answered SlowDown; \
         {N} done, 0 failed in {:.1} s; {throttles_s3} S3 throttles counted, {retries} retries; S3 rate: started {:.0}, \
         lowest in the storm {storm_min:.1}, highest after it {after_peak:.1} ({} snapshots, {in_storm} in the storm)",
        storm.as_secs(),
        last_run["elapsed_secs"].as_f64().unwrap(),
        rates[0],
        rates.len()
    );
    if in_storm < rates.len() {
        assert!(storm_min < 50.0, "the rate dropped below its 50 rps ceiling in the storm: {rates:?}");
        assert!(after_peak > storm_min, "the rate recovered after the storm: {rates:?}");
    }
    assert_eq!(assert_exactly_once(&f, &[]).await, N as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_one_at_a_time_are_retried_and_nothing_is_done_twice() {
    const N: usize = 80;
    // Seeded: the same faults land on every run.
    let moto = Moto::start_with(&[("--seed", "7")]);
    // (name, emulator config, the fault counter it must raise, extra `rekey run` flags)
    let scenarios: [(&str, &str, &str, &[&str]); 6] = [
        ("500 InternalError, 5 %", r#"{"fail_rate": 0.05}"#, "500", &[]),
        ("connection dropped before the write, 5 %", r#"{"drop_rate": 0.05, "drop_phase": "before"}"#, "dropped", &[]),
        ("connection dropped after the write, 5 %", r#"{"drop_rate": 0.05, "drop_phase": "after"}"#, "dropped", &[]),
        ("200 with an embedded <Error>, 10 % of copies", r#"{"embedded_error_rate": 0.1}"#, "embedded", &[]),
        // The write happens; its answer comes 3 s later, after the client gave up at 1 s. The
        // retry of a copy then meets a 412 (the ETag moved) and is settled by HEAD.
        (
            "answer held back 3 s after the write, past a 1 s client timeout, 5 %",
            r#"{"stall_rate": 0.05, "stall_ms": 3000}"#,
            "stalled",
            &["--request-timeout", "1"],
        ),
        ("40 ms latency on every object request", r#"{"latency_ms": 40}"#, "", &[]),
    ];
    for (i, (name, config, fault, extra)) in scenarios.iter().enumerate() {
        let f = fixture(&moto, &format!("faults-{i}"), N, 30 + i as u64).await;
        moto.configure(config);
        moto.reset_stats();
        let mut args = vec!["run", "--state", f.state.to_str().unwrap(), "--json-progress", "--skip-preflight"];
        args.extend_from_slice(extra);
        let out = rekey(&moto, &args);
        let stats = moto.stats();
        moto.configure(
            r#"{"fail_rate": 0, "drop_rate": 0, "drop_phase": "before", "embedded_error_rate": 0, "latency_ms": 0,
                "stall_rate": 0}"#,
        );
        assert!(out.status.success(), "{name}: run failed: {}", String::from_utf8_lossy(&out.stderr));
        let last: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
        let s = status(&moto, &f.state);
        assert_eq!(count(&s, "by_status", "done"), N as u64, "{name}: {s}");
        assert_eq!(count(&s, "by_status", "failed"), 0, "{name}: {s}");
        if !fault.is_empty() {
            assert!(stats["faults"][fault].as_u64().unwrap() > 0, "{name}: no fault injected: {stats}");
            assert!(last["retries"].as_u64().unwrap() > 0, "{name}: {last}");
        }
        let settled = rusqlite::Connection::open(&f.state)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM objects WHERE note = 'head_after_412'", [], |r| r.get::<_, i64>(0))
            .unwrap();
        assert_eq!(assert_exactly_once(&f, &[]).await, N, "{name}");
        eprintln!(
            "{name}: {N} done, 0 failed, exactly once; faults injected {}; {} requests, {} retries, \
             {} transient errors, {settled} copies settled by HEAD after 412, {:.1} s",
            stats["faults"], last["requests"], last["retries"], last["transient_errors"], last["elapsed_secs"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_writer_during_the_run_is_never_clobbered_and_is_reported() {
    const N: usize = 120;
    let moto = Moto::start();
    let f = fixture(&moto, "contended", N, 41).await;
    // The victims sit at the end of plan order, so the run reaches them long after the
    // other writer has acted.
    let order = plan_order(&f.state);
    let late: Vec<&(String, String)> = order.iter().rev().take(30).collect();
    let pick = |method: &str, nth: usize| late.iter().filter(|(_, m)| m == method).nth(nth).unwrap().0.clone();
    let (overwritten_copy, retagged_copy) = (pick("copy", 0), pick("copy", 1));
    let (overwritten_update, retagged_update, deleted) = (pick("update", 0), pick("update", 1), pick("update", 2));
    let seeded = |k: &str| f.seeded.iter().find(|o| o.key == k).unwrap().clone();

    let bg = run_in_background(&moto, &f.state, &["--kms-rps", "20"]);
    wait_for_done(&moto, &f.state, 10);
    for k in [&overwritten_copy, &retagged_copy, &overwritten_update, &retagged_update, &deleted] {
        assert_eq!(row_status(&f.state, k).0, "pending", "{k} not reached yet");
    }
    let fresh = b"written by another writer during the run".to_vec();
    for k in [&overwritten_copy, &overwritten_update] {
        f.s3.put_object().bucket(&f.bucket).key(k).body(ByteStream::from(fresh.clone())).send().await.unwrap();
    }
    let new_tags = vec![("retagged".to_string(), "during-the-run".to_string())];
    let tagging = Tagging::builder()
        .set_tag_set(Some(new_tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap()).collect()))
        .build()
        .unwrap();
    for k in [&retagged_copy, &retagged_update] {
        f.s3.put_object_tagging().bucket(&f.bucket).key(k).tagging(tagging.clone()).send().await.unwrap();
    }
    // In a versioned bucket a plain delete leaves a marker: delete the version itself.
    f.s3.delete_object()
        .bucket(&f.bucket)
        .key(&deleted)
        .set_version_id(seeded(&deleted).version_id)
        .send()
        .await
        .unwrap();
    let done_when_acted = count(&status(&moto, &f.state), "by_status", "done");
    for k in [&overwritten_copy, &retagged_copy, &overwritten_update, &retagged_update, &deleted] {
        assert_eq!(row_status(&f.state, k).0, "pending", "{k} was changed before the run reached it");
    }

    let (exit, stderr, _) = bg.wait();
    assert!(exit.success(), "changed and gone are reported, not failures: {stderr}");
    let s = status(&moto, &f.state);
    assert_eq!(count(&s, "by_status", "changed"), 1, "{s}");
    assert_eq!(count(&s, "by_status", "gone"), 1, "{s}");
    assert_eq!(count(&s, "by_status", "done"), N as u64 - 2, "{s}");
    // --json-progress keeps stdout for snapshots: the report is the stderr line, the
    // status counts above and the rows' status and error code below.
    let summary = stderr.lines().find(|l| l.contains("changed and gone objects were not touched")).unwrap_or_default();
    assert!(!summary.is_empty(), "reported on stderr: {stderr}");
    assert_eq!(row_status(&f.state, &overwritten_copy), ("changed".into(), Some("PreconditionFailed".into())));
    assert_eq!(row_status(&f.state, &deleted).0, "gone");

    let versions = crate::support::version_counts(&f.s3, &f.bucket).await;
    // The overwritten copy: the other writer's content is current, untouched, and the
    // inventoried version was not copied over it.
    let head = f.s3.head_object().bucket(&f.bucket).key(&overwritten_copy).send().await.unwrap();
    assert_ne!(head.server_side_encryption().map(|s| s.as_str()), Some("aws:kms"));
    let body = f.s3.get_object().bucket(&f.bucket).key(&overwritten_copy).send().await.unwrap();
    assert_eq!(body.body.collect().await.unwrap().into_bytes().as_ref(), fresh.as_slice());
    assert_eq!(versions[&overwritten_copy], 2, "the original and the other writer's, no copy");
    // The overwritten update: the inventoried version (now noncurrent) was re-encrypted,
    // the other writer's current version was not touched.
    let head = f.s3.head_object().bucket(&f.bucket).key(&overwritten_update).send().await.unwrap();
    assert_ne!(head.server_side_encryption().map(|s| s.as_str()), Some("aws:kms"), "newer version untouched");
    let old = seeded(&overwritten_update);
    let head =
        f.s3.head_object()
            .bucket(&f.bucket)
            .key(&overwritten_update)
            .set_version_id(old.version_id.clone())
            .send()
            .await
            .unwrap();
    assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("aws:kms"), "inventoried version updated");
    assert_eq!(versions[&overwritten_update], 2);
    // The deleted object stays deleted: nothing re-created it.
    assert!(!versions.contains_key(&deleted), "{deleted} has no version");
    // Re-tagged: a tag change keeps the ETag, so the If-Match copy goes through, and the
    // tagging directive COPY carries the new tags onto the new version. The update keeps
    // them too (it changes nothing but the encryption).
    for k in [&retagged_copy, &retagged_update] {
        let head = f.s3.head_object().bucket(&f.bucket).key(k).send().await.unwrap();
        assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("aws:kms"), "{k}");
        let tags = f.s3.get_object_tagging().bucket(&f.bucket).key(k).send().await.unwrap();
        let got: Vec<_> = tags.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect();
        assert_eq!(got, new_tags, "the other writer's tags survive on {k}");
        assert_eq!(row_status(&f.state, k).0, "done");
    }
    assert_eq!(versions[&retagged_copy], 2, "one copy");
    assert_eq!(versions[&retagged_update], 1, "no new version");
    let untouched = [
        overwritten_copy.as_str(),
        overwritten_update.as_str(),
        deleted.as_str(),
        retagged_copy.as_str(),
        retagged_update.as_str(),
    ];
    let checked = assert_exactly_once(&f, &untouched).await;
    eprintln!(
        "another writer at {done_when_acted} of {N} done: overwrote a copy (changed, PreconditionFailed) and an \
         update (done: its inventoried version), deleted one (gone), re-tagged a copy and an update (done, new \
         tags kept); the other {checked} exactly once. Summary: {summary}"
    );
}
