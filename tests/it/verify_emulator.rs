//! `rekey verify` end to end: the real binary against the S3/KMS emulator, on a bucket the
//! tests fill, plan and run, then check (and tamper with). Assertions are about the exit
//! code, the verdicts recorded in the checkpoint, and the summary.

use crate::support::{rekey_bin, Moto};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{MetadataDirective, ServerSideEncryption, StorageClass, Tag, Tagging};
use rekey::cli::demo::bucket::{create_kms_key, populate, write_inventory_of, BucketSpec, SeededObject};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Fixture {
    moto: Moto,
    s3: aws_sdk_s3::Client,
    kms: aws_sdk_kms::Client,
    key: String,
    bucket: String,
    seeded: Vec<SeededObject>,
    _dir: tempfile::TempDir,
    state: PathBuf,
}

/// A versioned bucket of `n` objects (SSE-S3 and unencrypted), its inventory, a plan
/// (with `plan_extra` flags), and a complete run.
async fn fixture(moto: Moto, n: usize, seed: u64, plan_extra: &[&str]) -> Fixture {
    let s3 = moto.s3_client().await;
    let kms = moto.kms_client().await;
    let key = create_kms_key(&kms, "rekey verify test").await.expect("CreateKey");
    let spec = BucketSpec { seed, max_size: 4096, ..BucketSpec::new("rekey-verify", n) };
    let seeded = populate(&s3, &spec).await.expect("populate");
    let dir = tempfile::tempdir().unwrap();
    let encrypted: HashMap<String, bool> = seeded.iter().map(|o| (o.key.clone(), o.encrypted)).collect();
    let manifest = write_inventory_of(&s3, &spec.bucket, &encrypted, &dir.path().join("inv")).await.expect("inventory");
    let state = dir.path().join("job.rekey");
    // `--kms-key alias/NAME` in plan_extra plans with an alias of the key (copies only).
    let alias = plan_extra.iter().find_map(|a| a.strip_prefix("--kms-key=")).map(str::to_string);
    if let Some(alias) = &alias {
        kms.create_alias().alias_name(alias).target_key_id(&key).send().await.expect("CreateAlias");
    }
    let plan_key = alias.clone().unwrap_or_else(|| key.clone());
    let plan_extra: Vec<&str> = plan_extra.iter().copied().filter(|a| !a.starts_with("--kms-key=")).collect();
    let mut args = vec![
        "plan",
        "--inventory",
        manifest.to_str().unwrap(),
        "--kms-key",
        &plan_key,
        "--state",
        state.to_str().unwrap(),
    ];
    args.extend_from_slice(&plan_extra);
    let out = rekey(&moto, &args);
    assert!(out.status.success(), "plan failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut run = vec!["run", "--state", state.to_str().unwrap(), "--quiet"];
    if alias.is_some() {
        // The pre-flight canary compares S3's key ARN with the alias itself (reported).
        run.push("--skip-preflight");
    }
    let out = rekey(&moto, &run);
    assert!(out.status.success(), "run failed: {}", String::from_utf8_lossy(&out.stderr));
    let f = Fixture { moto, s3, kms, key, bucket: spec.bucket, seeded, _dir: dir, state };
    assert_eq!(rows(&f.state).iter().filter(|r| r.status == "done").count(), n, "the run did every object");
    f
}

fn rekey(moto: &Moto, args: &[&str]) -> Output {
    Command::new(rekey_bin()).args(args).envs(moto.env_for_cli()).output().expect("run rekey")
}

fn verify(f: &Fixture, extra: &[&str]) -> Output {
    let mut args = vec!["verify", "--state", f.state.to_str().unwrap()];
    args.extend_from_slice(extra);
    rekey(&f.moto, &args)
}

/// One checkpoint row, with its verdict.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    key: String,
    method: String,
    status: String,
    verdict: Option<String>,
    detail: Option<String>,
    verified_at: Option<String>,
}

fn rows(state: &Path) -> Vec<Row> {
    let conn = rusqlite::Connection::open(state).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT id, key, method, status, verify_verdict, verify_detail, verified_at FROM objects
             WHERE method IS NOT NULL ORDER BY id",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok(Row {
                id: r.get(0)?,
                key: r.get(1)?,
                method: r.get(2)?,
                status: r.get(3)?,
                verdict: r.get(4)?,
                detail: r.get(5)?,
                verified_at: r.get(6)?,
            })
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

fn by_key(state: &Path) -> HashMap<String, Row> {
    rows(state).into_iter().map(|r| (r.key.clone(), r)).collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An RFC 3339 UTC timestamp, as `rekey::units::now_rfc3339` writes them.
fn is_rfc3339(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T' && s.ends_with('Z')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_run_every_done_object_verifies_ok() {
    let f = fixture(Moto::start(), 120, 11, &[]).await;
    let methods: Vec<String> = rows(&f.state).into_iter().map(|r| r.method).collect();
    assert!(methods.iter().any(|m| m == "copy") && methods.iter().any(|m| m == "update"), "both methods ran");
    f.moto.reset_stats();
    let out = verify(&f, &[]);
    assert!(out.status.success(), "verify failed: {}", stderr(&out));
    for r in rows(&f.state) {
        assert_eq!(r.verdict.as_deref(), Some("ok"), "{r:?}");
        assert_eq!(r.detail, None, "{r:?}");
        assert!(r.verified_at.as_deref().is_some_and(is_rfc3339), "{r:?}");
    }
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("120 of 120 done objects checked"), "{table}");
    // Only reads: HEAD for every object (and GetObjectTagging for copies); no writes.
    let stats = f.moto.stats();
    let writes: u64 = ["CopyObject", "UpdateObjectEncryption", "PutObject"]
        .iter()
        .map(|op| stats["requests"][op].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(writes, 0, "verify writes nothing to S3: {stats}");
    // The JSON summary says the same.
    let out = verify(&f, &["--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(s["schema"], "rekey.verify/1");
    assert_eq!(s["checked"], 120);
    assert_eq!(s["by_verdict"]["ok"], 120);
    assert_eq!(s["not_ok"], 0);
    assert_eq!(s["listed"].as_array().unwrap().len(), 0);
    // rekey status shows the verdicts too.
    let out = Command::new(rekey_bin())
        .args(["status", "--state", f.state.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    let st: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(st["by_verify_verdict"]["ok"], 120, "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_objects_are_mismatch_or_missing_and_the_rest_ok() {
    let f = fixture(Moto::start(), 80, 12, &[]).await;
    let planned = by_key(&f.state);
    let seeded: HashMap<&str, &SeededObject> = f.seeded.iter().map(|o| (o.key.as_str(), o)).collect();
    let of = |method: &str| f.seeded.iter().filter(|o| planned[&o.key].method == method).collect::<Vec<_>>();
    let (copies, updates) = (of("copy"), of("update"));
    assert!(copies.len() >= 4 && updates.len() >= 2, "{} copies, {} updates", copies.len(), updates.len());
    let other_key = create_kms_key(&f.kms, "another key").await.unwrap();
    let kms = ServerSideEncryption::AwsKms;
    let source = |k: &str| format!("{}/{}", f.bucket, rekey::inventory::keys::encode_path(k));

    // A copied object overwritten under another KMS key.
    let other = &copies[0].key;
    f.s3.put_object()
        .bucket(&f.bucket)
        .key(other)
        .body(ByteStream::from_static(b"new"))
        .server_side_encryption(kms.clone())
        .ssekms_key_id(&other_key)
        .send()
        .await
        .unwrap();
    // An updated object overwritten with SSE-S3.
    let aes = &updates[0].key;
    f.s3.put_object()
        .bucket(&f.bucket)
        .key(aes)
        .body(ByteStream::from_static(b"new"))
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .unwrap();
    // A copied object copied onto itself into another storage class, still under the key.
    let reclassed = &copies[1].key;
    let was_class = seeded[reclassed.as_str()].storage_class;
    let new_class = if was_class == "STANDARD_IA" { "ONEZONE_IA" } else { "STANDARD_IA" };
    f.s3.copy_object()
        .bucket(&f.bucket)
        .key(reclassed)
        .copy_source(source(reclassed))
        .storage_class(StorageClass::from(new_class))
        .server_side_encryption(kms.clone())
        .ssekms_key_id(&f.key)
        .send()
        .await
        .unwrap();
    // A copied object whose metadata was replaced, everything else kept.
    let remeta = &copies[2].key;
    f.s3.copy_object()
        .bucket(&f.bucket)
        .key(remeta)
        .copy_source(source(remeta))
        .metadata_directive(MetadataDirective::Replace)
        .metadata("owner", "someone-else")
        .metadata("seq", seeded[remeta.as_str()].metadata["seq"].clone())
        .content_type(seeded[remeta.as_str()].content_type.clone())
        .storage_class(StorageClass::from(seeded[remeta.as_str()].storage_class))
        .server_side_encryption(kms.clone())
        .ssekms_key_id(&f.key)
        .send()
        .await
        .unwrap();
    // A copied object that lost a tag (tagging writes no version).
    let retagged = &copies[3].key;
    let one_tag =
        Tagging::builder().tag_set(Tag::builder().key("project").value("x").build().unwrap()).build().unwrap();
    f.s3.put_object_tagging().bucket(&f.bucket).key(retagged).tagging(one_tag).send().await.unwrap();
    // An updated object whose only version was deleted.
    let deleted = &updates[1].key;
    f.s3.delete_object()
        .bucket(&f.bucket)
        .key(deleted)
        .set_version_id(seeded[deleted.as_str()].version_id.clone())
        .send()
        .await
        .unwrap();

    let out = verify(&f, &[]);
    assert_eq!(out.status.code(), Some(6), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("6 of 80 objects are not as planned (5 mismatch, 1 missing)"), "{err}");

    let after = by_key(&f.state);
    let detail = |k: &String| {
        let r = &after[k];
        assert_eq!(r.verdict.as_deref(), Some("mismatch"), "{r:?}");
        let d = r.detail.clone().unwrap_or_default();
        assert!(!d.contains('\n'), "{d}");
        d
    };
    let d = detail(other);
    assert!(d.contains(&format!("KMS key {other_key}, planned {}", f.key)), "{d}");
    let d = detail(aes);
    assert!(d.contains("encryption AES256, planned aws:kms") && d.contains("ETag"), "{d}");
    let d = detail(reclassed);
    assert!(d.starts_with(&format!("storage class {new_class}, inventoried {was_class}")), "{d}");
    assert!(!d.contains("KMS") && !d.contains("bytes") && !d.contains("metadata") && !d.contains("tags"), "{d}");
    let d = detail(remeta);
    assert!(d.starts_with("user metadata differs from the inventoried version's: changed owner"), "{d}");
    assert!(!d.contains("storage class") && !d.contains("KMS") && !d.contains("tags"), "{d}");
    let d = detail(retagged);
    assert!(d.starts_with("1 tags, the inventoried version has 2"), "{d}");
    let r = &after[deleted];
    assert_eq!(r.verdict.as_deref(), Some("missing"), "{r:?}");
    assert!(r.detail.as_deref().unwrap_or_default().contains("404"), "{r:?}");
    let tampered = [other, aes, reclassed, remeta, retagged, deleted];
    for r in after.values().filter(|r| !tampered.contains(&&r.key)) {
        assert_eq!(r.verdict.as_deref(), Some("ok"), "untouched objects are ok: {r:?}");
    }
    // The summary lists every one of them (fewer than 10), in plan order.
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("Not as planned (6):"), "{table}");
    let mut listed: Vec<&Row> = tampered.iter().map(|k| &after[*k]).collect();
    listed.sort_by_key(|r| r.id);
    let positions: Vec<usize> =
        listed.iter().map(|r| table.find(&r.key).unwrap_or_else(|| panic!("{} not listed: {table}", r.key))).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "plan order: {table}");

    // Put one object right again: a second verify records its new verdict.
    let fixed = &after[aes];
    f.s3.delete_object()
        .bucket(&f.bucket)
        .key(aes)
        .version_id(
            f.s3.head_object().bucket(&f.bucket).key(aes).send().await.unwrap().version_id().unwrap().to_string(),
        )
        .send()
        .await
        .unwrap();
    let out = verify(&f, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(6));
    let s: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(s["by_verdict"]["mismatch"], 4, "{s}");
    assert_eq!(s["by_verdict"]["missing"], 1, "{s}");
    assert_eq!(s["by_verdict"]["ok"], 75, "{s}");
    assert_eq!(s["listed"].as_array().unwrap().len(), 5, "{s}");
    let r = &by_key(&f.state)[&fixed.key];
    assert_eq!((r.verdict.as_deref(), r.detail.as_deref()), (Some("ok"), None), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_checks_exactly_n_objects_the_same_ones_for_the_same_seed() {
    let f = fixture(Moto::start(), 60, 13, &["--bucket-key"]).await;
    let out = verify(&f, &["--sample", "10", "--format", "json"]);
    assert!(out.status.success(), "verify failed: {}", stderr(&out));
    let s: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(s["checked"], 10, "{s}");
    assert_eq!(s["done"], 60, "{s}");
    assert_eq!(s["by_verdict"]["ok"], 10, "{s}");
    assert_eq!(s["bucket_key"], true, "{s}");
    let verified = |state: &Path| -> Vec<i64> {
        rows(state).into_iter().filter(|r| r.verified_at.is_some()).map(|r| r.id).collect()
    };
    let first = verified(&f.state);
    assert_eq!(first.len(), 10, "exactly 10 rows carry a verdict");
    assert!(rows(&f.state).iter().filter(|r| r.verdict.is_some()).all(|r| r.verdict.as_deref() == Some("ok")));

    // The same seed picks the same objects; another seed, others.
    let conn = rusqlite::Connection::open(&f.state).unwrap();
    conn.execute("UPDATE objects SET verify_verdict = NULL, verify_detail = NULL, verified_at = NULL", []).unwrap();
    let out = verify(&f, &["--sample", "10"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(verified(&f.state), first);
    conn.execute("UPDATE objects SET verify_verdict = NULL, verify_detail = NULL, verified_at = NULL", []).unwrap();
    let out = verify(&f, &["--sample", "10", "--seed", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let other = verified(&f.state);
    assert_eq!(other.len(), 10);
    assert_ne!(other, first);

    // A Bucket Key turned off behind rekey's back is a mismatch.
    let victim = f.seeded.iter().find(|o| o.storage_class == "STANDARD").expect("a STANDARD object");
    f.s3.copy_object()
        .bucket(&f.bucket)
        .key(&victim.key)
        .copy_source(format!("{}/{}", f.bucket, rekey::inventory::keys::encode_path(&victim.key)))
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&f.key)
        .bucket_key_enabled(false)
        .send()
        .await
        .unwrap();
    let out = verify(&f, &[]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let r = &by_key(&f.state)[&victim.key];
    assert_eq!(r.verdict.as_deref(), Some("mismatch"), "{r:?}");
    assert!(r.detail.as_deref().unwrap_or_default().starts_with("Bucket Key off, planned on"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_a_refused_head_stops_at_once() {
    // Seeded: the same requests fail on every run.
    let f = fixture(Moto::start_with(&[("--seed", "3")]), 60, 14, &[]).await;
    // One object request in five answers 500: every object still gets its true verdict.
    f.moto.configure(r#"{"fail_rate": 0.2}"#);
    f.moto.reset_stats();
    let out = verify(&f, &[]);
    assert!(out.status.success(), "verify failed: {}", stderr(&out));
    assert!(f.moto.stats()["faults"]["500"].as_u64().unwrap() > 0, "faults were injected");
    assert!(rows(&f.state).iter().all(|r| r.verdict.as_deref() == Some("ok")));

    // HEAD denied: one line naming the permission, after one refusal, not one per object.
    let conn = rusqlite::Connection::open(&f.state).unwrap();
    conn.execute("UPDATE objects SET verify_verdict = NULL, verify_detail = NULL, verified_at = NULL", []).unwrap();
    f.moto.configure(r#"{"fail_rate": 0, "deny_ops": ["HeadObject"]}"#);
    f.moto.reset_stats();
    let out = verify(&f, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("stopped: S3 refused the first HEAD (403 Forbidden)") && err.contains("s3:GetObject"),
        "{err}"
    );
    let heads = f.moto.stats()["requests"]["HeadObject"].as_u64().unwrap();
    assert!(heads <= 32, "stopped after the first window of HEADs, sent {heads}");
    assert!(rows(&f.state).iter().all(|r| r.verdict.is_none()), "no verdict from a refused HEAD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_records_the_verdicts_so_far_and_exits_130() {
    let f = fixture(Moto::start(), 60, 15, &[]).await;
    // Slow enough that the interrupt lands mid-way: 2 objects at a time, 150 ms a request.
    f.moto.configure(r#"{"latency_ms": 150}"#);
    let child = Command::new(rekey_bin())
        .args(["verify", "--state", f.state.to_str().unwrap(), "--concurrency", "2"])
        .envs(f.moto.env_for_cli())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let recorded = |state: &Path| rows(state).iter().filter(|r| r.verdict.is_some()).count();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while recorded(&f.state) == 0 {
        assert!(std::time::Instant::now() < deadline, "no verdict recorded in 60 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let seen = recorded(&f.state);
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("interrupted after"), "{err}");
    let after = recorded(&f.state);
    assert!(after >= seen && after < 60, "{seen} recorded before the interrupt, {after} after");
    assert!(rows(&f.state).iter().filter(|r| r.verdict.is_some()).all(|r| r.verdict.as_deref() == Some("ok")));
    // The summary counts exactly what was recorded.
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains(&format!("{after} of 60 done objects checked")), "{table}");
    // Verifying again checks everything.
    f.moto.configure(r#"{"latency_ms": 0}"#);
    let out = verify(&f, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(recorded(&f.state), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_made_with_a_key_alias_verifies_against_the_key_it_names() {
    let f = fixture(Moto::start(), 30, 16, &["--kms-key=alias/rekey-verify", "--method", "copy"]).await;
    let out = verify(&f, &["--format", "json"]);
    assert!(out.status.success(), "verify failed: {}", stderr(&out));
    let s: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(s["kms_key_arn"], f.key.as_str(), "the alias resolved to the key's ARN: {s}");
    assert_eq!(s["by_verdict"]["ok"], 30, "{s}");
}
