//! The pre-flight checks (`rekey preflight`, and the start of `rekey run`) against the S3/KMS
//! emulator (moto wrapped by scripts/s3emu.py): one test per failure (a disabled key, a key
//! pending deletion, a key in another region than the bucket, a missing key, a denied
//! permission), each ending with exit 7, its one clear line, and every object untouched
//! (HEAD shows the original encryption, the checkpoint has nothing done); and a healthy
//! setup that passes and runs to the end through the canary.

use crate::support::{plan_args, rekey_bin, Moto};
use rekey::cli::demo::bucket::{create_kms_key, populate, write_inventory_of, BucketSpec, SeededObject};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BUCKET: &str = "rekey-preflight";

struct Fixture {
    moto: Moto,
    s3: aws_sdk_s3::Client,
    kms: aws_sdk_kms::Client,
    seeded: Vec<SeededObject>,
    manifest: PathBuf,
    dir: tempfile::TempDir,
}

/// A versioned bucket of `n` objects (SSE-S3 and unencrypted) and its inventory; no plan yet.
async fn fixture(n: usize, seed: u64) -> Fixture {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    let kms = moto.kms_client().await;
    let spec = BucketSpec { seed, max_size: 2048, ..BucketSpec::new(BUCKET, n) };
    let seeded = populate(&s3, &spec).await.expect("populate");
    let dir = tempfile::tempdir().unwrap();
    let encrypted: HashMap<String, bool> = seeded.iter().map(|o| (o.key.clone(), o.encrypted)).collect();
    let manifest = write_inventory_of(&s3, BUCKET, &encrypted, &dir.path().join("inv")).await.expect("inventory");
    Fixture { moto, s3, kms, seeded, manifest, dir }
}

impl Fixture {
    /// `rekey plan` with `key` into a new state file named `name`.
    fn plan(&self, key: &str, name: &str, extra: &[&str]) -> PathBuf {
        let state = self.dir.path().join(name);
        let out = self.rekey(&plan_args(&self.manifest, key, &state, extra));
        assert!(out.status.success(), "plan failed: {}", String::from_utf8_lossy(&out.stderr));
        state
    }

    fn rekey(&self, args: &[&str]) -> Output {
        Command::new(rekey_bin()).args(args).envs(self.moto.env_for_cli()).output().expect("run rekey")
    }

    /// Every object still has the encryption it was written with.
    async fn assert_untouched(&self) {
        for o in &self.seeded {
            let head = self.s3.head_object().bucket(BUCKET).key(&o.key).send().await.expect("HEAD");
            let want = if o.encrypted { Some("AES256") } else { None };
            assert_eq!(head.server_side_encryption().map(|s| s.as_str()), want, "{} was touched", o.key);
            assert_eq!(head.e_tag().unwrap().trim_matches('"'), o.md5_etag, "{} was rewritten", o.key);
        }
    }
}

fn by_status(state: &Path, status: &str) -> i64 {
    let conn = rusqlite::Connection::open(state).unwrap();
    conn.query_row("SELECT COUNT(*) FROM objects WHERE status = ?1", [status], |r| r.get(0)).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one `rekey: error:` line, which must carry `needle`.
fn error_line(out: &Output, needle: &str) -> String {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("rekey: error:")).collect();
    assert_eq!(lines.len(), 1, "exactly one error line: {err}");
    assert!(lines[0].contains(needle), "the error line names the problem ({needle}): {}", lines[0]);
    eprintln!("{err}");
    lines[0].to_string()
}

fn run_quiet(f: &Fixture, state: &Path) -> Output {
    f.rekey(&["run", "--state", state.to_str().unwrap(), "--quiet"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_setup_passes_and_the_run_completes_through_the_canary() {
    let f = fixture(50, 21).await;
    let key = create_kms_key(&f.kms, "rekey preflight").await.unwrap();
    let state = f.plan(&key, "job.rekey", &[]);

    let out = f.rekey(&["preflight", "--state", state.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains(&format!("✔ KMS key: {key} is Enabled, SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT")), "{err}");
    assert!(err.contains(&format!("✔ bucket region: bucket {BUCKET} is in us-east-1, as the key is")), "{err}");
    assert!(err.contains(&format!("✔ bucket owner: bucket {BUCKET} is owned by account 123456789012")), "{err}");
    assert!(err.contains(&format!("✔ versioning: bucket {BUCKET}: Enabled, as the plan assumed")), "{err}");
    // The test bucket has no default encryption: a warning with the fix, not a failure.
    assert!(err.contains("! default encryption: bucket rekey-preflight: no default encryption"), "{err}");
    assert!(err.contains("aws s3api put-bucket-encryption --bucket rekey-preflight"), "{err}");
    assert!(err.contains("pre-flight passed"), "{err}");
    // `rekey preflight` alone touches nothing.
    assert_eq!(by_status(&state, "done"), 0);
    f.assert_untouched().await;

    // A plan that assumed an unversioned bucket: a warning with the cost, not a failure.
    let unversioned = f.plan(&key, "unversioned.rekey", &["--versioned", "false"]);
    let out = f.rekey(&["preflight", "--state", unversioned.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let copies = f.seeded.iter().filter(|o| !o.encrypted).count();
    assert!(
        err.contains(&format!(
            "! versioning: bucket {BUCKET} is versioned but the plan assumed not: each of the {copies} copies keeps its old version as noncurrent storage, about $"
        )),
        "{err}"
    );

    // With the default set to the key and a Bucket Key, that check passes too.
    use aws_sdk_s3::types::{
        ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
        ServerSideEncryptionRule,
    };
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::AwsKms)
                .kms_master_key_id(&key)
                .build()
                .unwrap(),
        )
        .bucket_key_enabled(true)
        .build();
    f.s3.put_bucket_encryption()
        .bucket(BUCKET)
        .server_side_encryption_configuration(ServerSideEncryptionConfiguration::builder().rules(rule).build().unwrap())
        .send()
        .await
        .unwrap();
    let out = f.rekey(&["preflight", "--state", state.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("✔ default encryption: bucket rekey-preflight: SSE-KMS with this key and a Bucket Key"),
        "{err}"
    );

    // The run: checks, the canary (one object per method, HEAD-confirmed), then the rest.
    let out = f.rekey(&["run", "--state", state.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "run failed: {err}");
    for m in ["update", "copy"] {
        let line = err.lines().find(|l| l.contains(&format!("✔ canary {m}: "))).unwrap_or_else(|| panic!("{err}"));
        assert!(line.ends_with("is now aws:kms under the key (HEAD)"), "{line}");
    }
    assert_eq!(by_status(&state, "done"), 50);
    for o in &f.seeded {
        let head = f.s3.head_object().bucket(BUCKET).key(&o.key).send().await.unwrap();
        assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("aws:kms"), "{}", o.key);
        assert!(rekey::s3::object_store::same_kms_key(head.ssekms_key_id().unwrap(), &key), "{}", o.key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_key_or_one_pending_deletion_stops_the_run_before_any_object() {
    let f = fixture(40, 22).await;
    let key = create_kms_key(&f.kms, "rekey preflight").await.unwrap();
    let state = f.plan(&key, "job.rekey", &[]);
    let key_id = key.rsplit('/').next().unwrap().to_string();
    f.kms.disable_key().key_id(&key_id).send().await.unwrap();

    let out = run_quiet(&f, &state);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    error_line(&out, &format!("{key} is Disabled: enable it (aws kms enable-key --key-id {key})"));
    assert!(stderr(&out).contains("no object was touched"), "{}", stderr(&out));
    assert_eq!(by_status(&state, "done"), 0);
    let stats = f.moto.stats();
    for op in ["UpdateObjectEncryption", "CopyObject"] {
        assert_eq!(stats["requests"][op].as_u64().unwrap_or(0), 0, "no {op} was sent: {stats}");
    }
    f.assert_untouched().await;

    // The same key scheduled for deletion.
    f.kms.schedule_key_deletion().key_id(&key_id).pending_window_in_days(7).send().await.unwrap();
    let out = f.rekey(&["preflight", "--state", state.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    error_line(&out, &format!("{key} is pending deletion"));
    error_line(&out, &format!("aws kms cancel-key-deletion --key-id {key}"));
    f.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_another_region_than_the_bucket_stops_the_run_before_any_object() {
    let f = fixture(40, 23).await;
    // The bucket is in us-east-1; the key in eu-west-1 (the plan takes its region from the key).
    let shared = f.moto.sdk_config().await;
    let eu = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&shared).region(aws_sdk_kms::config::Region::new("eu-west-1")).build(),
    );
    let key = create_kms_key(&eu, "rekey preflight, eu-west-1").await.unwrap();
    assert!(key.starts_with("arn:aws:kms:eu-west-1:"), "{key}");
    let state = f.plan(&key, "job.rekey", &[]);

    let out = run_quiet(&f, &state);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let line = error_line(
        &out,
        &format!("bucket {BUCKET} is in us-east-1 but the KMS key {key} is in eu-west-1: S3 can only use a key in the bucket's own region"),
    );
    // The key itself is fine: only the region is named.
    assert!(!line.contains("KMS key: "), "{line}");
    assert_eq!(by_status(&state, "done"), 0);
    f.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_stops_the_run_before_any_object() {
    let f = fixture(40, 24).await;
    let key = "arn:aws:kms:us-east-1:123456789012:key/0badc0de-0000-4000-8000-000000000000";
    let state = f.plan(key, "job.rekey", &[]);

    let out = run_quiet(&f, &state);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    error_line(&out, &format!("{key} does not exist in account 123456789012 in us-east-1"));
    assert_eq!(by_status(&state, "done"), 0);
    f.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_account_than_the_bucket_owner_stops_the_run_before_any_object() {
    let f = fixture(40, 25).await;
    // The bucket belongs to moto's account 123456789012; UpdateObjectEncryption needs a key
    // of the owner's account, and the emulator enforces ExpectedBucketOwner as S3 does.
    let key = "arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    let state = f.plan(key, "job.rekey", &[]);

    let out = run_quiet(&f, &state);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    error_line(
        &out,
        &format!("bucket {BUCKET} is not owned by account 111122223333, the KMS key's account: UpdateObjectEncryption needs a key of the bucket owner's account"),
    );
    assert_eq!(by_status(&state, "done"), 0);
    f.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_permission_is_named_by_the_canary_and_nothing_is_touched() {
    let f = fixture(40, 25).await;
    let key = create_kms_key(&f.kms, "rekey preflight").await.unwrap();
    // One plan per method, so each canary is the only object it could touch.
    let updates = f.plan(&key, "updates.rekey", &["--method", "update"]);
    let copies = f.plan(&key, "copies.rekey", &["--method", "copy"]);
    f.moto.configure(r#"{"deny_ops": ["UpdateObjectEncryption", "CopyObject"]}"#);

    // The checks that touch nothing cannot see it; the canary does.
    let out = f.rekey(&["preflight", "--state", updates.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = f.rekey(&["preflight", "--state", updates.to_str().unwrap(), "--canary"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    error_line(&out, "missing permission s3:UpdateObjectEncryption");

    let out = run_quiet(&f, &updates);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let line = error_line(&out, "missing permission s3:UpdateObjectEncryption");
    assert!(line.contains("kms:ReEncrypt*, kms:Encrypt, kms:Decrypt and kms:GenerateDataKey"), "{line}");
    assert_eq!(by_status(&updates, "done"), 0);
    let conn = rusqlite::Connection::open(&updates).unwrap();
    let denied: i64 = conn
        .query_row("SELECT COUNT(*) FROM objects WHERE status = 'pending' AND error_code = 'AccessDenied'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(denied, 1, "only the canary was tried, and it stays pending");

    let out = run_quiet(&f, &copies);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let line = error_line(&out, "missing permission s3:PutObject");
    assert!(line.contains("s3:GetObject, s3:PutObject, s3:GetObjectTagging and kms:GenerateDataKey"), "{line}");
    assert_eq!(by_status(&copies, "done"), 0);
    f.assert_untouched().await;

    // Granted again, the same plan runs to the end.
    f.moto.configure(r#"{"deny_ops": []}"#);
    let out = run_quiet(&f, &updates);
    assert!(out.status.success(), "{}", stderr(&out));
    let planned = f.seeded.iter().filter(|o| o.encrypted).count() as i64;
    assert_eq!(by_status(&updates, "done"), planned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_object_changed_since_the_inventory_is_a_warning_and_stays_untouched() {
    let f = fixture(20, 26).await;
    let key = create_kms_key(&f.kms, "rekey preflight").await.unwrap();
    let state = f.plan(&key, "job.rekey", &[]);
    // The copy canary is the first copy of the plan; someone overwrites it after the inventory.
    let conn = rusqlite::Connection::open(&state).unwrap();
    let first_copy: String =
        conn.query_row("SELECT key FROM objects WHERE method = 'copy' ORDER BY id LIMIT 1", [], |r| r.get(0)).unwrap();
    drop(conn);
    let fresh = b"written after the inventory".to_vec();
    f.s3.put_object()
        .bucket(BUCKET)
        .key(&first_copy)
        .body(aws_sdk_s3::primitives::ByteStream::from(fresh.clone()))
        .send()
        .await
        .unwrap();

    let out = run_quiet(&f, &state);
    let err = stderr(&out);
    assert!(out.status.success(), "a changed canary proves nothing but is no failure: {err}");
    assert!(
        err.contains(&format!(
            "! canary copy: s3://{BUCKET}/{first_copy} was changed since the inventory (not overwritten), so no copy was proven"
        )),
        "{err}"
    );
    assert_eq!(by_status(&state, "changed"), 1);
    assert_eq!(by_status(&state, "done"), 19);
    let body = f.s3.get_object().bucket(BUCKET).key(&first_copy).send().await.unwrap().body.collect().await.unwrap();
    assert_eq!(body.into_bytes().as_ref(), fresh.as_slice(), "the newer object is not overwritten");
}
