//! What a copy leaves behind, and `rekey finish`, end to end: the real binary against the
//! S3/KMS emulator on a versioned bucket the tests fill, plan and run (issue 13, parts 2
//! and 4). Assertions are about the bucket itself (its versions, default encryption and
//! policy, read back through the SDK), the checkpoint, and the emulator's request counts.

use crate::support::{rekey_bin, version_counts, Moto};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use rekey::cli::demo::bucket::{create_kms_key, populate, write_inventory_of, BucketSpec, SeededObject};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Fixture {
    moto: Moto,
    s3: aws_sdk_s3::Client,
    key: String,
    bucket: String,
    seeded: Vec<SeededObject>,
    _dir: tempfile::TempDir,
    state: PathBuf,
}

/// A versioned bucket of `n` objects (some unencrypted, so copied), planned with
/// `plan_extra` and run to the end.
async fn fixture(n: usize, seed: u64, plan_extra: &[&str]) -> Fixture {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    let kms = moto.kms_client().await;
    let key = create_kms_key(&kms, "rekey finish test").await.expect("CreateKey");
    let spec = BucketSpec { seed, max_size: 2048, unencrypted_share: 0.5, ..BucketSpec::new("rekey-finish", n) };
    let seeded = populate(&s3, &spec).await.expect("populate");
    let dir = tempfile::tempdir().unwrap();
    let encrypted: HashMap<String, bool> = seeded.iter().map(|o| (o.key.clone(), o.encrypted)).collect();
    let manifest = write_inventory_of(&s3, &spec.bucket, &encrypted, &dir.path().join("inv")).await.expect("inventory");
    let state = dir.path().join("job.rekey");
    let mut args =
        vec!["plan", "--inventory", manifest.to_str().unwrap(), "--kms-key", &key, "--state", state.to_str().unwrap()];
    args.extend_from_slice(plan_extra);
    ok(rekey(&moto, &args));
    ok(rekey(&moto, &["run", "--state", state.to_str().unwrap(), "--quiet"]));
    Fixture { moto, s3, key, bucket: spec.bucket, seeded, _dir: dir, state }
}

fn rekey(moto: &Moto, args: &[&str]) -> Output {
    Command::new(rekey_bin()).args(args).envs(moto.env_for_cli()).output().expect("run rekey")
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "rekey failed: {}\n{}", stderr(&out), stdout(&out));
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// key → (method, inventoried version, replaced version, deleted at, delete detail)
type Replaced = HashMap<String, (String, Option<String>, Option<String>, Option<String>, Option<String>)>;

fn replaced(state: &Path) -> Replaced {
    let conn = rusqlite::Connection::open(state).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT key, method, version_id, replaced_version_id, replaced_deleted_at, replaced_delete_detail
             FROM objects WHERE status = 'done'",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))))
        .unwrap();
    rows.map(Result::unwrap).collect()
}

fn deletes(moto: &Moto) -> u64 {
    moto.stats()["requests"]["DeleteObject"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_objects_old_version_is_deleted_only_when_asked_and_only_after_verify() {
    let f = fixture(40, 31, &[]).await;
    let state = f.state.to_str().unwrap();
    let rows = replaced(&f.state);
    let copies: Vec<&String> = rows.iter().filter(|(_, r)| r.0 == "copy").map(|(k, _)| k).collect();
    let updates = rows.values().filter(|r| r.0 == "update").count();
    assert!(copies.len() >= 5 && updates >= 5, "a mix of copies and updates: {rows:?}");
    // Each copy recorded the version it replaced: the inventoried one (S3 names it in
    // x-amz-copy-source-version-id). An update replaces nothing.
    for (key, (method, inventoried, replaced, deleted, _)) in &rows {
        match method.as_str() {
            "copy" => assert_eq!(replaced, inventoried, "{key}"),
            _ => assert_eq!(replaced, &None, "{key}"),
        }
        assert_eq!(deleted, &None);
    }
    let before = version_counts(&f.s3, &f.bucket).await;
    for k in &copies {
        assert_eq!(before[*k], 2, "{k}: the copy left its old version behind");
    }

    // The report counts and lists them, and prints the lifecycle rule.
    let out_csv = f._dir.path().join("replaced.csv");
    let report =
        ok(rekey(&f.moto, &["report", "--state", state, "--out", out_csv.to_str().unwrap(), "--only", "replaced"]));
    let summary = stderr(&report);
    assert!(summary.contains(&format!("wrote {} rows", copies.len())), "{summary}");
    assert!(
        summary.contains("NoncurrentVersionExpiration") && summary.contains("EVERY noncurrent version"),
        "{summary}"
    );
    let rule_start = summary.find("    {").expect("the rule's JSON");
    let rule: String =
        summary[rule_start..].lines().take_while(|l| l.starts_with("    ")).collect::<Vec<_>>().join("\n");
    let rule: Value = serde_json::from_str(&rule).expect("the printed rule is JSON");
    assert_eq!(rule["Rules"][0]["NoncurrentVersionExpiration"]["NoncurrentDays"], 1);
    let mut rdr = csv::Reader::from_path(&out_csv).unwrap();
    let listed: Vec<String> = rdr.records().map(|r| r.unwrap()[1].to_string()).collect();
    assert_eq!(listed.len(), copies.len());

    // One copy is overwritten after the run (SSE-S3 again): its verify is a mismatch.
    let tampered = copies[0].clone();
    f.s3.put_object()
        .bucket(&f.bucket)
        .key(&tampered)
        .body(ByteStream::from_static(b"written since"))
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .unwrap();

    // verify alone deletes nothing, and says what was left behind.
    let v = rekey(&f.moto, &["verify", "--state", state]);
    assert_eq!(v.status.code(), Some(6), "{}", stderr(&v));
    assert!(stdout(&v).contains("left their old version behind"), "{}", stdout(&v));
    assert_eq!(deletes(&f.moto), 0);
    assert_eq!(version_counts(&f.s3, &f.bucket).await.values().sum::<usize>(), before.values().sum::<usize>() + 1);

    // Not with a sample: deletion waits for every copy's verdict.
    let sample = rekey(&f.moto, &["verify", "--state", state, "--sample", "3", "--delete-replaced-versions"]);
    assert_eq!(sample.status.code(), Some(2), "{}", stderr(&sample));

    let d = rekey(&f.moto, &["verify", "--state", state, "--delete-replaced-versions", "--format", "json"]);
    assert_eq!(d.status.code(), Some(6), "the tampered copy is still a mismatch: {}", stderr(&d));
    let doc: Value = serde_json::from_str(stdout(&d).trim()).unwrap();
    let n = copies.len() as u64;
    assert_eq!(doc["deleted_replaced"]["deleted"], n - 1);
    assert_eq!(doc["deleted_replaced"]["kept"], 1);
    assert_eq!(doc["deleted_replaced"]["kept_listed"][0]["key"], tampered.as_str());
    assert_eq!(doc["replaced_versions"]["left"], 1);
    assert_eq!(deletes(&f.moto), n - 1, "one DeleteObject per replaced version");

    let after = version_counts(&f.s3, &f.bucket).await;
    for k in &copies {
        let want = if **k == tampered { 3 } else { 1 };
        assert_eq!(after[*k], want, "{k}");
    }
    for o in f.seeded.iter().filter(|o| !copies.contains(&&o.key)) {
        assert_eq!(after[&o.key], before[&o.key], "{}: an update's versions are not touched", o.key);
    }
    // What is left of each verified copy is its new version, under the key.
    for k in copies.iter().filter(|k| ***k != tampered) {
        let h = f.s3.head_object().bucket(&f.bucket).key(*k).send().await.unwrap();
        assert_eq!(h.server_side_encryption(), Some(&ServerSideEncryption::AwsKms), "{k}");
        assert!(h.ssekms_key_id().unwrap().ends_with(f.key.rsplit('/').next().unwrap()), "{k}");
    }
    let rows = replaced(&f.state);
    assert!(rows[&tampered].3.is_none() && rows[&tampered].4.as_deref().unwrap().contains("mismatch"), "{rows:?}");
    assert_eq!(rows.values().filter(|r| r.3.is_some()).count() as u64, n - 1);

    // A second pass deletes nothing twice; status shows what was deleted.
    let again = rekey(&f.moto, &["verify", "--state", state, "--delete-replaced-versions", "--format", "json"]);
    let doc: Value = serde_json::from_str(stdout(&again).trim()).unwrap();
    assert_eq!(doc["deleted_replaced"]["deleted"], 0);
    assert_eq!(deletes(&f.moto), n - 1);
    let status = ok(rekey(&f.moto, &["status", "--state", state, "--format", "json"]));
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(status["replaced_versions"]["deleted"], n - 1);
    assert_eq!(status["replaced_versions"]["left"], 1);
}

const READERS: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Readers","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::rekey-finish/*"}]}"#;

async fn policy_statements(f: &Fixture) -> Vec<Value> {
    let p = f.s3.get_bucket_policy().bucket(&f.bucket).send().await.unwrap();
    let v: Value = serde_json::from_str(p.policy().unwrap()).unwrap();
    v["Statement"].as_array().unwrap().clone()
}

async fn default_encryption(f: &Fixture) -> (String, Option<String>, Option<bool>) {
    let out = f.s3.get_bucket_encryption().bucket(&f.bucket).send().await.unwrap();
    let rule = &out.server_side_encryption_configuration().unwrap().rules()[0];
    let d = rule.apply_server_side_encryption_by_default().unwrap();
    (d.sse_algorithm().as_str().to_string(), d.kms_master_key_id().map(str::to_string), rule.bucket_key_enabled())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_sets_the_default_and_merges_the_policy_once_and_a_dry_run_changes_nothing() {
    let f = fixture(8, 32, &["--bucket-key"]).await;
    let state = f.state.to_str().unwrap();
    f.s3.put_bucket_policy().bucket(&f.bucket).policy(READERS).send().await.unwrap();
    let readers = policy_statements(&f).await;
    let enc_before = f.s3.get_bucket_encryption().bucket(&f.bucket).send().await;
    // S3 gives every new bucket SSE-S3; moto gives it no configuration at all.
    let had = match &enc_before {
        Ok(_) => "AES256 (SSE-S3)",
        Err(_) => "none",
    };

    let dry = ok(rekey(&f.moto, &["finish", "--state", state, "--enforce", "--dry-run"]));
    let text = stdout(&dry);
    assert!(text.contains("would set aws:kms") && text.contains(&f.key), "{text}");
    assert!(text.contains("+       \"Sid\": \"RekeyDenyPutObjectWithoutKmsKey\""), "the statement, as a diff: {text}");
    assert!(!text.lines().any(|l| l.trim_start().starts_with("- ")), "nothing removed: {text}");
    assert!(text.contains("dry run: nothing was changed"), "{text}");
    assert_eq!(policy_statements(&f).await, readers, "a dry run leaves the policy");
    let enc_after = f.s3.get_bucket_encryption().bucket(&f.bucket).send().await;
    assert_eq!(
        format!("{:?}", enc_after.ok().map(|o| o.server_side_encryption_configuration().cloned())),
        format!("{:?}", enc_before.ok().map(|o| o.server_side_encryption_configuration().cloned()))
    );
    let stats = f.moto.stats();
    assert_eq!(stats["requests"]["PutBucketEncryption"].as_u64().unwrap_or(0), 0);
    assert_eq!(stats["requests"]["PutBucketPolicy"].as_u64().unwrap_or(0), 1, "only the test's own");

    ok(rekey(&f.moto, &["finish", "--state", state, "--enforce"]));
    let (alg, key, bucket_key) = default_encryption(&f).await;
    assert_eq!(alg, "aws:kms");
    assert_eq!(key.as_deref(), Some(f.key.as_str()));
    assert_eq!(bucket_key, Some(true), "the plan's --bucket-key");
    let statements = policy_statements(&f).await;
    assert_eq!(statements.len(), 2);
    assert_eq!(statements[0], readers[0], "the existing statement is kept as it was");
    let ours = &statements[1];
    assert_eq!(ours["Effect"], "Deny");
    assert_eq!(ours["Action"], "s3:PutObject");
    assert_eq!(ours["Condition"]["StringNotEquals"]["s3:x-amz-server-side-encryption-aws-kms-key-id"], f.key.as_str());

    let status = ok(rekey(&f.moto, &["status", "--state", state, "--format", "json"]));
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    let steps = status["bucket_steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{status}");
    assert_eq!(steps[0]["step"], "default_encryption");
    assert_eq!(steps[0]["before"], had, "what the bucket had before: {status}");
    assert_eq!(steps[1]["step"], "enforce_policy");
    let table = stdout(&ok(rekey(&f.moto, &["status", "--state", state])));
    assert!(table.contains(&format!("bucket {}: default encryption aws:kms {}", f.bucket, f.key)), "{table}");

    // A second finish finds it all in place and writes nothing.
    let again = ok(rekey(&f.moto, &["finish", "--state", state, "--enforce"]));
    assert!(stdout(&again).contains("nothing to change"), "{}", stdout(&again));
    assert_eq!(policy_statements(&f).await.len(), 2);
    let stats = f.moto.stats();
    assert_eq!(stats["requests"]["PutBucketEncryption"].as_u64(), Some(1));
    assert_eq!(stats["requests"]["PutBucketPolicy"].as_u64(), Some(2), "the test's and finish's first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_copy_records_and_deletes_the_version_it_replaced() {
    let f = fixture(16, 33, &["--multipart-threshold", "1KiB"]).await;
    let rows = replaced(&f.state);
    let multipart: Vec<&String> = rows.iter().filter(|(_, r)| r.0 == "multipart_copy").map(|(k, _)| k).collect();
    assert!(!multipart.is_empty(), "some copies are multipart: {rows:?}");
    for k in &multipart {
        let (_, inventoried, replaced, _, _) = &rows[*k];
        assert!(inventoried.is_some(), "{k}");
        assert_eq!(replaced, inventoried, "{k}: the version its HEAD saw, read under If-Match");
    }
    ok(rekey(&f.moto, &["verify", "--state", f.state.to_str().unwrap(), "--delete-replaced-versions"]));
    let after = version_counts(&f.s3, &f.bucket).await;
    for k in &multipart {
        assert_eq!(after[*k], 1, "{k}");
    }
}
