//! Every version, and from one KMS key to another (issue 13, parts 1 and 3), end to end
//! against the emulator: `--versions all` re-encrypts noncurrent versions in place (no
//! new version, each stays noncurrent), and `--from-key` / `--rekey-kms` move SSE-KMS
//! objects to the target key, decided per object by a HEAD. Every assertion is about the
//! bucket's truth (HEAD by version id, version lists, ETags) or the checkpoint's exact
//! counts.

use crate::support::{json, ok, rekey_bin, version_counts, Moto};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, ServerSideEncryption, VersioningConfiguration};
use rekey::cli::demo::bucket::create_kms_key;
use rekey::inventory::synthetic::{write_inventory, InventorySpec, FULL_SCHEMA};
use rekey::s3::object_store::same_kms_key;
use rekey::units::rfc3339_from_ms;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rekey(moto: &Moto, args: &[&str]) -> Output {
    Command::new(rekey_bin()).args(args).envs(moto.env_for_cli()).output().expect("run rekey")
}

async fn bucket(s3: &aws_sdk_s3::Client, name: &str, versioned: bool) {
    s3.create_bucket().bucket(name).send().await.expect("CreateBucket");
    if versioned {
        let on = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
        s3.put_bucket_versioning().bucket(name).versioning_configuration(on).send().await.expect("versioning");
    }
}

/// How a put is encrypted: `None` unencrypted, `Some(None)` SSE-S3, `Some(Some(key))` SSE-KMS.
type Sse<'a> = Option<Option<&'a str>>;

/// PutObject; returns the version id.
async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str, sse: Sse<'_>) -> Option<String> {
    let mut req = s3.put_object().bucket(bucket).key(key).body(ByteStream::from(body.as_bytes().to_vec()));
    req = match sse {
        None => req,
        Some(None) => req.server_side_encryption(ServerSideEncryption::Aes256),
        Some(Some(k)) => req.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(k),
    };
    req.send().await.expect("PutObject").version_id().map(str::to_string)
}

/// One version as HEAD reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    sse: Option<String>,
    kms_key: Option<String>,
    etag: String,
}

async fn head(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, version: Option<&str>) -> Seen {
    let h = s3.head_object().bucket(bucket).key(key).set_version_id(version.map(str::to_string)).send().await;
    let h = h.unwrap_or_else(|e| panic!("HEAD {key} {version:?}: {e:?}"));
    Seen {
        sse: h.server_side_encryption().map(|s| s.as_str().to_string()),
        kms_key: h.ssekms_key_id().map(str::to_string),
        etag: h.e_tag().unwrap_or_default().trim_matches('"').to_string(),
    }
}

/// Every version and delete marker of the bucket: (key, version id, is latest, is delete marker).
async fn versions(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<(String, String, bool, bool)> {
    let page = s3.list_object_versions().bucket(bucket).send().await.expect("ListObjectVersions");
    assert_ne!(page.is_truncated(), Some(true), "the fixtures fit one page");
    let mut all: Vec<_> = page
        .versions()
        .iter()
        .map(|v| {
            let id = v.version_id().filter(|v| *v != "null").unwrap_or("").to_string();
            (v.key().unwrap().to_string(), id, v.is_latest().unwrap_or(true), false)
        })
        .collect();
    for m in page.delete_markers() {
        let id = m.version_id().unwrap_or("").to_string();
        all.push((m.key().unwrap().to_string(), id, m.is_latest().unwrap_or(false), true));
    }
    all
}

/// An S3 Inventory (CSV, every version) of the bucket as it is now, each version's
/// EncryptionStatus from its own HEAD, as S3 Inventory reports it.
async fn inventory(s3: &aws_sdk_s3::Client, bucket: &str, dir: &Path) -> PathBuf {
    let mut rows = Vec::new();
    for (key, version, latest, marker) in versions(s3, bucket).await {
        let (enc, etag, size) = if marker {
            (String::new(), String::new(), String::new())
        } else {
            let v = (!version.is_empty()).then_some(version.as_str());
            let seen = head(s3, bucket, &key, v).await;
            let enc = match seen.sse.as_deref() {
                Some("AES256") => "SSE-S3",
                Some("aws:kms") => "SSE-KMS",
                Some(other) => panic!("unexpected encryption {other}"),
                None => "NOT-SSE",
            };
            (enc.to_string(), seen.etag, "8".to_string())
        };
        rows.push(vec![
            bucket.to_string(),
            key,
            version,
            latest.to_string(),
            marker.to_string(),
            size,
            rfc3339_from_ms(1_700_000_000_000),
            etag,
            "STANDARD".into(),
            "false".into(),
            String::new(),
            enc,
            String::new(),
            String::new(),
            "OFF".into(),
            String::new(),
            "DISABLED".into(),
            String::new(),
        ]);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let spec = InventorySpec { file_schema: FULL_SCHEMA.into(), ..InventorySpec::new(dir, bucket, now) };
    write_inventory(&spec, rows).expect("write inventory")
}

/// The checkpoint's objects: key and version → (status, method or skip reason).
fn outcomes(state: &Path) -> BTreeMap<(String, String), (String, String)> {
    let conn = rusqlite::Connection::open(state).unwrap();
    let mut stmt = conn
        .prepare("SELECT key, COALESCE(version_id, ''), status, COALESCE(method, skip_reason) FROM objects")
        .unwrap();
    let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?)))).unwrap();
    rows.map(Result::unwrap).collect()
}

fn plan(moto: &Moto, manifest: &Path, key: &str, state: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "plan",
        "--inventory",
        manifest.to_str().unwrap(),
        "--kms-key",
        key,
        "--state",
        state.to_str().unwrap(),
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    json(&ok(rekey(moto, &args)))
}

fn run(moto: &Moto, state: &Path) {
    ok(rekey(moto, &["run", "--state", state.to_str().unwrap(), "--quiet"]));
}

fn requests(moto: &Moto, op: &str) -> u64 {
    moto.stats()["requests"][op].as_u64().unwrap_or(0)
}

fn under(seen: &Seen, key: &str) -> bool {
    seen.sse.as_deref() == Some("aws:kms") && seen.kms_key.as_deref().is_some_and(|k| same_kms_key(k, key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_all_reencrypts_noncurrent_versions_in_place_with_no_new_version() {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    let key = create_kms_key(&moto.kms_client().await, "target").await.unwrap();
    let b = "versions-all";
    bucket(&s3, b, true).await;
    // doc: three SSE-S3 versions; mixed: an unencrypted old version under an SSE-S3
    // current one; deleted: an SSE-S3 version under a delete marker.
    for body in ["doc one", "doc two", "doc 333"] {
        put(&s3, b, "doc", body, Some(None)).await;
    }
    let mixed_old = put(&s3, b, "mixed", "plain 01", None).await.unwrap();
    put(&s3, b, "mixed", "sse-s3 2", Some(None)).await;
    put(&s3, b, "deleted", "deleted1", Some(None)).await;
    s3.delete_object().bucket(b).key("deleted").send().await.unwrap();
    let before = versions(&s3, b).await;
    let etags_before: BTreeMap<(String, String), String> = {
        let mut m = BTreeMap::new();
        for (k, v, _, marker) in &before {
            if !marker {
                m.insert((k.clone(), v.clone()), head(&s3, b, k, Some(v)).await.etag);
            }
        }
        m
    };
    let dir = tempfile::tempdir().unwrap();
    let manifest = inventory(&s3, b, dir.path()).await;

    // The default still takes only current versions.
    let current = plan(&moto, &manifest, &key, &dir.path().join("current.rekey"), &[]);
    assert_eq!(current["objects"]["planned"], 2, "{current}");
    assert_eq!(current["objects"]["skipped"]["noncurrent_version"], 4, "{current}");
    assert_eq!(current["assumptions"]["versions"], "current");

    let state = dir.path().join("all.rekey");
    let e = plan(&moto, &manifest, &key, &state, &["--versions", "all"]);
    let o = &e["objects"];
    assert_eq!((o["planned"].as_u64(), o["noncurrent_planned"].as_u64()), (Some(5), Some(3)), "{e}");
    assert_eq!(o["by_method"]["update"], 5, "{e}");
    assert_eq!(o["skipped"]["noncurrent_needs_copy"], 1, "the unencrypted old version: {e}");
    assert_eq!(o["skipped"]["delete_marker"], 1, "{e}");
    assert_eq!(e["requests"]["s3_put_class"], 5, "{e}");
    assert_eq!(e["assumptions"]["versions"], "all");

    moto.reset_stats();
    run(&moto, &state);
    assert_eq!(requests(&moto, "UpdateObjectEncryption"), 5);
    assert_eq!((requests(&moto, "CopyObject"), requests(&moto, "PutObject")), (0, 0));

    // No new version, none made current, no ETag changed; every SSE-S3 version is under
    // the key, the unencrypted old version is as it was.
    let after = versions(&s3, b).await;
    let sorted = |mut v: Vec<(String, String, bool, bool)>| {
        v.sort();
        v
    };
    assert_eq!(sorted(after), sorted(before.clone()));
    assert_eq!(version_counts(&s3, b).await.values().sum::<usize>(), 6);
    for ((k, v), etag) in &etags_before {
        let seen = head(&s3, b, k, Some(v)).await;
        assert_eq!(&seen.etag, etag, "{k} {v}");
        if *v == mixed_old {
            assert_eq!(seen.sse, None, "the unencrypted noncurrent version is left alone");
        } else {
            assert!(under(&seen, &key), "{k} {v}: {seen:?}");
        }
    }
    let outcomes = outcomes(&state);
    let done = outcomes.values().filter(|(s, m)| s == "done" && m == "update").count();
    assert_eq!(done, 5, "{outcomes:?}");
    assert_eq!(outcomes[&("mixed".to_string(), mixed_old.clone())], ("skipped".into(), "noncurrent_needs_copy".into()));

    // verify checks each noncurrent version by its version id.
    moto.reset_stats();
    let out = ok(rekey(&moto, &["verify", "--state", state.to_str().unwrap()]));
    assert!(out.status.success());
    assert_eq!(requests(&moto, "HeadObject"), 5);
    let conn = rusqlite::Connection::open(&state).unwrap();
    let ok_rows: i64 =
        conn.query_row("SELECT COUNT(*) FROM objects WHERE verify_verdict = 'ok'", [], |r| r.get(0)).unwrap();
    assert_eq!(ok_rows, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_key_moves_objects_from_key_a_to_key_b_and_leaves_the_rest() {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    let kms = moto.kms_client().await;
    let (a, target, c) = (
        create_kms_key(&kms, "old A").await.unwrap(),
        create_kms_key(&kms, "target B").await.unwrap(),
        create_kms_key(&kms, "other C").await.unwrap(),
    );
    // Unversioned: a write after the inventory replaces the object, which the HEAD's ETag
    // check must catch (UpdateObjectEncryption has no If-Match).
    let bkt = "kms-to-kms";
    bucket(&s3, bkt, false).await;
    put(&s3, bkt, "a1", "under a1", Some(Some(&a))).await;
    put(&s3, bkt, "a2", "under a2", Some(Some(&a))).await;
    put(&s3, bkt, "b1", "under b1", Some(Some(&target))).await;
    put(&s3, bkt, "c1", "under c1", Some(Some(&c))).await;
    put(&s3, bkt, "s1", "sse-s3 1", Some(None)).await;
    put(&s3, bkt, "later", "under a3", Some(Some(&a))).await;
    let etags: BTreeMap<&str, String> = {
        let mut m = BTreeMap::new();
        for k in ["a1", "a2", "b1", "c1", "s1"] {
            m.insert(k, head(&s3, bkt, k, None).await.etag);
        }
        m
    };
    let dir = tempfile::tempdir().unwrap();
    let manifest = inventory(&s3, bkt, dir.path()).await;

    // Without --from-key SSE-KMS objects stay skipped, as before.
    let plain = plan(&moto, &manifest, &target, &dir.path().join("plain.rekey"), &[]);
    assert_eq!(plain["objects"]["skipped"]["already_kms"], 5, "{plain}");

    let state = dir.path().join("from-a.rekey");
    let e = plan(&moto, &manifest, &target, &state, &["--from-key", &a]);
    assert_eq!(e["objects"]["planned"], 6, "{e}");
    assert_eq!(e["objects"]["kms_to_kms_candidates"], 5, "{e}");
    assert_eq!(e["requests"]["head_decisions"], 5, "{e}");
    assert_eq!(e["requests"]["s3_get_class"], 5, "{e}");
    // 5 HEADs at $0.0004 / 1,000; 6 updates at $0.005 / 1,000; 5 x 2 + 1 KMS requests.
    assert!((e["cost_usd"]["head_decisions"].as_f64().unwrap() - 0.000002).abs() < 1e-9, "{e}");
    assert_eq!(e["requests"]["kms"], 11, "{e}");
    assert_eq!(e["assumptions"]["kms_sources"]["from_keys"][0].as_str(), Some(a.as_str()), "{e}");

    // Written after the inventory, under key A: not the object the inventory saw.
    put(&s3, bkt, "later", "rewrite!", Some(Some(&a))).await;
    let later = head(&s3, bkt, "later", None).await;

    moto.reset_stats();
    run(&moto, &state);
    let attempts: Vec<(String, i64)> = {
        let conn = rusqlite::Connection::open(&state).unwrap();
        let mut stmt = conn.prepare("SELECT key, attempts FROM objects ORDER BY key").unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.map(Result::unwrap).collect()
    };
    // One HEAD per SSE-KMS candidate (and its update when it moves); SSE-S3 rows none.
    // (`requests` counts the run's start-up probes too, so the checkpoint is asked.)
    let want = [("a1", 2), ("a2", 2), ("b1", 1), ("c1", 1), ("later", 1), ("s1", 1)];
    assert_eq!(attempts, want.map(|(k, n)| (k.to_string(), n)).to_vec());
    assert_eq!(requests(&moto, "UpdateObjectEncryption"), 3, "a1, a2 and s1 only");
    for k in ["a1", "a2", "s1"] {
        let seen = head(&s3, bkt, k, None).await;
        assert!(under(&seen, &target), "{k}: {seen:?}");
        assert_eq!(seen.etag, etags[k], "an update keeps the ETag: {k}");
    }
    assert!(under(&head(&s3, bkt, "b1", None).await, &target));
    assert!(under(&head(&s3, bkt, "c1", None).await, &c), "a key not named by --from-key is left alone");
    assert_eq!(head(&s3, bkt, "later", None).await, later, "the object written since is never touched");
    let got = outcomes(&state);
    let status = |k: &str| got[&(k.to_string(), String::new())].0.clone();
    assert_eq!(
        ["a1", "a2", "s1", "b1", "c1", "later"].map(status),
        ["done", "done", "done", "already_target_key", "other_kms_key", "changed"]
    );
    let s = json(&ok(rekey(&moto, &["status", "--state", state.to_str().unwrap(), "--format", "json"])));
    assert_eq!(s["by_status"]["already_target_key"], 1, "{s}");
    assert_eq!(s["by_status"]["other_kms_key"], 1, "{s}");

    // verify accepts both outcomes: the three updated and the one already under B are ok.
    ok(rekey(&moto, &["verify", "--state", state.to_str().unwrap()]));
    let conn = rusqlite::Connection::open(&state).unwrap();
    let verdicts: i64 =
        conn.query_row("SELECT COUNT(*) FROM objects WHERE verify_verdict = 'ok'", [], |r| r.get(0)).unwrap();
    assert_eq!(verdicts, 4);

    // --rekey-kms takes any other key: C moves too, the rest is already under B.
    let manifest = inventory(&s3, bkt, &dir.path().join("again")).await;
    let state = dir.path().join("any.rekey");
    plan(&moto, &manifest, &target, &state, &["--rekey-kms"]);
    moto.reset_stats();
    run(&moto, &state);
    assert_eq!(requests(&moto, "UpdateObjectEncryption"), 2, "c1 and the rewritten object under A");
    assert!(under(&head(&s3, bkt, "c1", None).await, &target));
    assert!(under(&head(&s3, bkt, "later", None).await, &target));
    let got = outcomes(&state);
    let already = got.values().filter(|(s, _)| s == "already_target_key").count();
    assert_eq!(already, 4, "{got:?}");
}
