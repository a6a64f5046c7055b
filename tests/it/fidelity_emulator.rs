//! Copy fidelity over HTTP against the emulator: everything a copy can lose survives
//! `rekey run` (storage class, user metadata, content headers, tags, the website redirect,
//! ACL grants, Object Lock settings), including multipart copies, which re-create it all
//! from HEAD and GetObjectTagging. The emulator drops the redirect on copy as S3 does, so
//! the redirect tests prove the re-send and not moto's leniency.

use crate::support::{rekey_bin, Moto};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ObjectLockLegalHoldStatus, ObjectLockMode, ServerSideEncryption, StorageClass};
use rekey::cli::demo::bucket::{create_kms_key, write_inventory_with, RowFacts};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};

const MIB: usize = 1024 * 1024;
const BUCKET: &str = "fidelity";

/// One object to put: the headers a copy must keep.
#[derive(Clone)]
struct Spec {
    key: &'static str,
    size: usize,
    encrypted: bool,
    class: &'static str,
    redirect: Option<&'static str>,
    public_read: bool,
    lock: bool,
    checksum: bool,
}

impl Spec {
    fn new(key: &'static str) -> Spec {
        Spec {
            key,
            size: 2048,
            encrypted: false,
            class: "STANDARD",
            redirect: None,
            public_read: false,
            lock: false,
            checksum: false,
        }
    }
}

fn body(spec: &Spec) -> Vec<u8> {
    (0..spec.size).map(|i| (i * 31 + spec.key.len()) as u8).collect()
}

struct Env {
    moto: Moto,
    s3: aws_sdk_s3::Client,
    key: String,
    _dir: tempfile::TempDir,
    state: PathBuf,
    retain_until: DateTime,
}

fn rekey(moto: &Moto, args: &[&str]) -> Output {
    Command::new(rekey_bin()).args(args).envs(moto.env_for_cli()).output().expect("run rekey")
}

/// A versioned (and, with `lock`, Object Lock) bucket holding `specs`, its inventory and a plan.
async fn setup(specs: &[Spec], lock: bool, plan_extra: &[&str]) -> Env {
    setup_with(specs, lock, plan_extra, None).await
}

/// As [`setup`], with the bucket's Object Ownership set first.
async fn setup_with(specs: &[Spec], lock: bool, plan_extra: &[&str], ownership: Option<&str>) -> Env {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    let key = create_kms_key(&moto.kms_client().await, "fidelity").await.unwrap();
    s3.create_bucket()
        .bucket(BUCKET)
        .set_object_lock_enabled_for_bucket(lock.then_some(true))
        .set_object_ownership(ownership.map(aws_sdk_s3::types::ObjectOwnership::from))
        .send()
        .await
        .unwrap();
    if !lock {
        s3.put_bucket_versioning()
            .bucket(BUCKET)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let retain_until = DateTime::from_secs(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + 86_400,
    );
    let mut facts = HashMap::new();
    for spec in specs {
        let mut put = s3
            .put_object()
            .bucket(BUCKET)
            .key(spec.key)
            .body(ByteStream::from(body(spec)))
            .content_type("application/x-test")
            .content_encoding("identity")
            .content_disposition("attachment; filename=\"x.bin\"")
            .content_language("en")
            .cache_control("max-age=60")
            .metadata("owner", "team-a")
            .metadata("purpose", "fidelity")
            .tagging("project=rekey&kind=fidelity")
            .storage_class(StorageClass::from(spec.class))
            .set_website_redirect_location(spec.redirect.map(str::to_string))
            .set_server_side_encryption(spec.encrypted.then_some(ServerSideEncryption::Aes256));
        if spec.checksum {
            put = put.checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32);
        }
        if spec.public_read {
            put = put.grant_read("uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"");
        }
        if spec.lock {
            put = put
                .object_lock_mode(ObjectLockMode::Governance)
                .object_lock_retain_until_date(retain_until)
                .object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On);
        }
        put.send().await.unwrap_or_else(|e| panic!("put {}: {e:?}", spec.key));
        facts.insert(
            spec.key.to_string(),
            RowFacts {
                encrypted: spec.encrypted,
                sse_kms: false,
                lock_mode: spec.lock.then(|| "GOVERNANCE".to_string()),
                lock_retain_until: spec
                    .lock
                    .then(|| retain_until.fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime).unwrap()),
                legal_hold: spec.lock,
                checksum_algorithm: spec.checksum.then(|| "CRC32".to_string()),
            },
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_inventory_with(&s3, BUCKET, &facts, &dir.path().join("inv")).await.unwrap();
    let state = dir.path().join("job.rekey");
    let mut args =
        vec!["plan", "--inventory", manifest.to_str().unwrap(), "--kms-key", &key, "--state", state.to_str().unwrap()];
    args.extend_from_slice(plan_extra);
    let out = rekey(&moto, &args);
    assert!(out.status.success(), "plan: {}", String::from_utf8_lossy(&out.stderr));
    Env { moto, s3, key, _dir: dir, state, retain_until }
}

fn run(env: &Env, extra: &[&str]) {
    let mut args = vec!["run", "--state", env.state.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    let out = rekey(&env.moto, &args);
    assert!(out.status.success(), "run: {}", String::from_utf8_lossy(&out.stderr));
}

fn method_of(env: &Env, key: &str) -> String {
    let conn = rusqlite::Connection::open(&env.state).unwrap();
    conn.query_row("SELECT method || '/' || status FROM objects WHERE key = ?1", [key], |r| r.get(0)).unwrap()
}

/// Everything but encryption and ETag is as it was put.
async fn assert_kept(env: &Env, spec: &Spec, expect_redirect: bool) {
    let s3 = &env.s3;
    let k = spec.key;
    let h = s3.head_object().bucket(BUCKET).key(k).send().await.unwrap();
    assert_eq!(h.server_side_encryption(), Some(&ServerSideEncryption::AwsKms), "{k}");
    assert!(rekey::s3::object_store::same_kms_key(h.ssekms_key_id().unwrap(), &env.key), "{k}");
    assert_eq!(h.storage_class().map(|c| c.as_str()).unwrap_or("STANDARD"), spec.class, "{k}");
    assert_eq!(h.content_length(), Some(spec.size as i64), "{k}");
    assert_eq!(h.content_type(), Some("application/x-test"), "{k}");
    assert_eq!(h.content_encoding(), Some("identity"), "{k}");
    assert_eq!(h.content_disposition(), Some("attachment; filename=\"x.bin\""), "{k}");
    assert_eq!(h.content_language(), Some("en"), "{k}");
    assert_eq!(h.cache_control(), Some("max-age=60"), "{k}");
    let meta = h.metadata().unwrap();
    assert_eq!(
        (meta.get("owner").map(String::as_str), meta.get("purpose").map(String::as_str)),
        (Some("team-a"), Some("fidelity")),
        "{k}"
    );
    let redirect = h.website_redirect_location();
    if expect_redirect {
        assert_eq!(redirect, spec.redirect, "{k}: the website redirect must be re-sent");
    }
    let tags = s3.get_object_tagging().bucket(BUCKET).key(k).send().await.unwrap();
    let mut tags: Vec<_> = tags.tag_set().iter().map(|t| format!("{}={}", t.key(), t.value())).collect();
    tags.sort();
    assert_eq!(tags, ["kind=fidelity", "project=rekey"], "{k}");
    let got = s3.get_object().bucket(BUCKET).key(k).send().await.unwrap().body.collect().await.unwrap().into_bytes();
    assert!(got.as_ref() == body(spec).as_slice(), "{k}: bytes changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_keep_class_metadata_headers_tags_and_with_the_flag_the_redirect() {
    let classes = ["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "REDUCED_REDUNDANCY"];
    let mut specs: Vec<Spec> = ["std", "ia", "onezone", "it", "gir", "rrs"]
        .iter()
        .zip(classes)
        .map(|(k, c)| Spec { class: c, ..Spec::new(k) })
        .collect();
    specs.push(Spec { redirect: Some("/elsewhere.html"), ..Spec::new("redirected") });
    let env = setup(&specs, false, &[]).await;
    run(&env, &["--preserve-redirect"]);
    for s in &specs {
        assert_eq!(method_of(&env, s.key), "copy/done");
        assert_kept(&env, s, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_preserve_redirect_the_emulator_drops_it_as_s3_does() {
    // The control for the test above: proves the redirect survives because rekey
    // re-sends it, not because the emulator keeps it.
    let spec = Spec { redirect: Some("/elsewhere.html"), ..Spec::new("redirected") };
    let env = setup(std::slice::from_ref(&spec), false, &[]).await;
    run(&env, &[]);
    let h = env.s3.head_object().bucket(BUCKET).key(spec.key).send().await.unwrap();
    assert_eq!(h.server_side_encryption(), Some(&ServerSideEncryption::AwsKms));
    assert_eq!(h.website_redirect_location(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_copies_keep_everything_and_leave_no_upload_open() {
    let specs = vec![
        Spec { size: 12 * MIB + 123, redirect: Some("/big.html"), ..Spec::new("big/one.bin") },
        Spec { size: 11 * MIB, class: "STANDARD_IA", encrypted: true, ..Spec::new("big/two.bin") },
        Spec { size: 3 * MIB, ..Spec::new("small.bin") },
    ];
    let env = setup(&specs, false, &["--method", "copy", "--multipart-threshold", "6MiB"]).await;
    assert_eq!(method_of(&env, "big/one.bin"), "multipart_copy/pending");
    assert_eq!(method_of(&env, "small.bin"), "copy/pending");
    env.moto.reset_stats();
    run(&env, &["--part-size", "5MiB"]);
    let stats = env.moto.stats();
    eprintln!("requests: {}", stats["requests"]);
    // 12 MiB + 123 B → 3 parts; 11 MiB → 3 parts.
    assert_eq!(stats["requests"]["UploadPartCopy"].as_u64(), Some(6), "{stats}");
    assert_eq!(stats["requests"]["CompleteMultipartUpload"].as_u64(), Some(2), "{stats}");
    for s in &specs {
        assert!(method_of(&env, s.key).ends_with("/done"));
        // Multipart copies re-create the redirect from HEAD; a single copy has no flag here.
        assert_kept(&env, s, s.size > 6 * MIB).await;
        let h = env.s3.head_object().bucket(BUCKET).key(s.key).send().await.unwrap();
        if s.size > 6 * MIB {
            assert!(h.e_tag().unwrap().trim_matches('"').ends_with("-3"), "a 3-part ETag: {:?}", h.e_tag());
        }
    }
    let open = env.s3.list_multipart_uploads().bucket(BUCKET).send().await.unwrap();
    assert!(open.uploads().is_empty(), "no upload left open: {:?}", open.uploads());
    let conn = rusqlite::Connection::open(&env.state).unwrap();
    let ids: i64 =
        conn.query_row("SELECT COUNT(*) FROM objects WHERE upload_id IS NOT NULL", [], |r| r.get(0)).unwrap();
    assert_eq!(ids, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_grants_are_reapplied_with_preserve_acl() {
    let specs = vec![Spec { public_read: true, ..Spec::new("public.html") }];
    let env = setup(&specs, false, &[]).await;
    let before = env.s3.get_object_acl().bucket(BUCKET).key("public.html").send().await.unwrap();
    let public = |acl: &aws_sdk_s3::operation::get_object_acl::GetObjectAclOutput| {
        acl.grants().iter().any(|g| {
            g.grantee().and_then(|w| w.uri()) == Some("http://acs.amazonaws.com/groups/global/AllUsers")
                && g.permission().map(|p| p.as_str()) == Some("READ")
        })
    };
    assert!(public(&before), "the fixture is public-read: {before:?}");
    run(&env, &["--preserve-acl"]);
    let after = env.s3.get_object_acl().bucket(BUCKET).key("public.html").send().await.unwrap();
    assert!(public(&after), "the public-read grant survives the copy: {after:?}");
    assert_kept(&env, &specs[0], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_lock_settings_are_carried_onto_the_new_version() {
    let specs = vec![
        Spec { lock: true, encrypted: true, ..Spec::new("locked-sse-s3") },
        Spec { lock: true, ..Spec::new("locked-plain") },
    ];
    let env = setup(&specs, true, &[]).await;
    for s in &specs {
        // UpdateObjectEncryption refuses locked objects, so both are copied.
        assert_eq!(method_of(&env, s.key), "copy/pending");
    }
    run(&env, &[]);
    for s in &specs {
        let h = env.s3.head_object().bucket(BUCKET).key(s.key).send().await.unwrap();
        assert_eq!(h.server_side_encryption(), Some(&ServerSideEncryption::AwsKms), "{}", s.key);
        assert_eq!(h.object_lock_mode(), Some(&ObjectLockMode::Governance), "{}", s.key);
        assert_eq!(h.object_lock_retain_until_date().map(|d| d.secs()), Some(env.retain_until.secs()), "{}", s.key);
        assert_eq!(h.object_lock_legal_hold_status(), Some(&ObjectLockLegalHoldStatus::On), "{}", s.key);
        // The old, locked SSE-S3 version remains beside the new one.
        let versions = env.s3.list_object_versions().bucket(BUCKET).prefix(s.key).send().await.unwrap();
        assert_eq!(versions.versions().len(), 2, "{}", s.key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_acls_disabled_preserve_acl_is_skipped_and_the_copy_goes_through() {
    let specs = vec![Spec::new("owned.bin")];
    let env = setup_with(&specs, false, &[], Some("BucketOwnerEnforced")).await;
    let out = rekey(&env.moto, &["run", "--state", env.state.to_str().unwrap(), "--quiet", "--preserve-acl"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run: {stderr}");
    assert!(stderr.contains("--preserve-acl skipped"), "{stderr}");
    assert_kept(&env, &specs[0], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checksum_algorithm_is_kept_and_the_new_value_recorded() {
    let specs = vec![Spec { checksum: true, ..Spec::new("summed.bin") }];
    let env = setup(&specs, false, &[]).await;
    run(&env, &[]);
    let h = env
        .s3
        .head_object()
        .bucket(BUCKET)
        .key("summed.bin")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    let now = h.checksum_crc32().expect("the copy still has a CRC32 checksum").to_string();
    let conn = rusqlite::Connection::open(&env.state).unwrap();
    let recorded: Option<String> =
        conn.query_row("SELECT new_checksum FROM objects WHERE key = 'summed.bin'", [], |r| r.get(0)).unwrap();
    assert_eq!(recorded, Some(format!("CRC32:{now}")));
    assert_kept(&env, &specs[0], false).await;
}
