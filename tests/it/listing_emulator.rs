//! A live listing as the object list, against the emulator: a bucket with SSE-S3,
//! unencrypted, SSE-KMS and locked objects, planned by listing it, runs to the same end
//! state as the same bucket planned from an inventory; the estimate prices the listing and
//! says what it assumed; `--head-all` plans exactly what the inventory plans.

use crate::support::{json, ok, rekey_bin, Moto};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ObjectLockLegalHoldStatus, ObjectLockMode, ServerSideEncryption};
use rekey::cli::demo::bucket::{create_kms_key, write_inventory_with, RowFacts};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Output};

fn rekey(moto: &Moto, args: &[&str]) -> Output {
    Command::new(rekey_bin()).args(args).envs(moto.env_for_cli()).output().expect("run rekey")
}

/// How each object is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sse {
    S3,
    None,
    KmsOther,
    KmsTarget,
}

struct Keys {
    target: String,
    other: String,
}

/// (key, encryption, locked, versions written). The last version is current.
const OBJECTS: &[(&str, Sse, bool, usize)] = &[
    ("sse/a", Sse::S3, false, 2),
    ("sse/b", Sse::S3, false, 1),
    ("sse/dir/", Sse::S3, false, 1),
    ("plain/c", Sse::None, false, 1),
    ("plain/with space+plus", Sse::None, false, 1),
    ("kms/other", Sse::KmsOther, false, 1),
    ("kms/target", Sse::KmsTarget, false, 1),
    ("locked/d", Sse::S3, true, 1),
    ("locked/plain", Sse::None, true, 1),
];

/// An Object Lock (so versioned) bucket holding [`OBJECTS`] and one deleted key; returns
/// what an inventory would say of each key.
async fn fill(s3: &aws_sdk_s3::Client, bucket: &str, keys: &Keys) -> HashMap<String, RowFacts> {
    s3.create_bucket().bucket(bucket).object_lock_enabled_for_bucket(true).send().await.unwrap();
    let retain_until = DateTime::from_secs(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + 86_400,
    );
    let mut facts = HashMap::new();
    for &(key, sse, locked, versions) in OBJECTS {
        for v in 0..versions {
            let mut put =
                s3.put_object().bucket(bucket).key(key).body(ByteStream::from(format!("{key} v{v}").into_bytes()));
            put = match sse {
                Sse::S3 => put.server_side_encryption(ServerSideEncryption::Aes256),
                Sse::None => put,
                Sse::KmsOther => put.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(&keys.other),
                Sse::KmsTarget => put.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(&keys.target),
            };
            if locked {
                put = put
                    .object_lock_mode(ObjectLockMode::Governance)
                    .object_lock_retain_until_date(retain_until)
                    .object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On);
            }
            put.send().await.unwrap_or_else(|e| panic!("put {key}: {e:?}"));
        }
        facts.insert(
            key.to_string(),
            RowFacts {
                encrypted: sse == Sse::S3,
                sse_kms: matches!(sse, Sse::KmsOther | Sse::KmsTarget),
                lock_mode: locked.then(|| "GOVERNANCE".to_string()),
                lock_retain_until: locked
                    .then(|| retain_until.fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime).unwrap()),
                legal_hold: locked,
                checksum_algorithm: None,
            },
        );
    }
    // A deleted key: a delete marker over an SSE-S3 version. Nothing to do.
    s3.put_object()
        .bucket(bucket)
        .key("gone/e")
        .body(ByteStream::from_static(b"e"))
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .unwrap();
    s3.delete_object().bucket(bucket).key("gone/e").send().await.unwrap();
    facts.insert("gone/e".into(), RowFacts { encrypted: true, ..RowFacts::default() });
    facts
}

/// Every version of every key (sorted: S3's second-granular dates cannot order them), its
/// encryption, key and lock, with the key named `target` / `other` instead of by ARN, so
/// two buckets compare.
async fn end_state(s3: &aws_sdk_s3::Client, bucket: &str, keys: &Keys) -> BTreeMap<String, Vec<String>> {
    let page = s3.list_object_versions().bucket(bucket).send().await.unwrap();
    assert_ne!(page.is_truncated(), Some(true), "one page holds this bucket");
    let mut state: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in page.versions() {
        let (key, id) = (v.key().unwrap(), v.version_id().unwrap());
        let h = s3.head_object().bucket(bucket).key(key).version_id(id).send().await.unwrap();
        let kms = match h.ssekms_key_id() {
            Some(k) if rekey::s3::object_store::same_kms_key(k, &keys.target) => "target",
            Some(k) if rekey::s3::object_store::same_kms_key(k, &keys.other) => "other",
            Some(_) => "unknown",
            None => "-",
        };
        let sse = h.server_side_encryption().map(|s| s.as_str().to_string()).unwrap_or_else(|| "none".into());
        let lock = h.object_lock_mode().map(|m| m.as_str().to_string()).unwrap_or_else(|| "-".into());
        let hold = h.object_lock_legal_hold_status().map(|m| m.as_str().to_string()).unwrap_or_else(|| "-".into());
        let latest = if v.is_latest() == Some(true) { "current" } else { "noncurrent" };
        state.entry(key.to_string()).or_default().push(format!("{latest} {sse} {kms} lock={lock} hold={hold}"));
    }
    for d in page.delete_markers() {
        state.entry(d.key().unwrap().to_string()).or_default().push("delete marker".into());
    }
    state.values_mut().for_each(|v| v.sort());
    state
}

/// (key, is_latest) → "method|skip_reason status" of every row of a checkpoint.
fn outcomes(state: &Path) -> BTreeMap<(String, bool), String> {
    let conn = rusqlite::Connection::open(state).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT key, COALESCE(is_latest, 1), COALESCE(method, skip_reason), status FROM objects WHERE is_delete_marker = 0",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, bool>(1)?),
                format!("{} {}", r.get::<_, String>(2)?, r.get::<_, String>(3)?),
            ))
        })
        .unwrap();
    let mut out = BTreeMap::new();
    for row in rows {
        let (k, v) = row.unwrap();
        // A key written twice has two noncurrent-or-current rows: keep the current one's.
        out.entry(k).and_modify(|e: &mut String| e.push_str(&format!(", {v}"))).or_insert(v);
    }
    out
}

struct Pair {
    moto: Moto,
    s3: aws_sdk_s3::Client,
    keys: Keys,
    dir: tempfile::TempDir,
}

/// Two buckets with the same objects: `by-inventory` (with an inventory written) and
/// `by-listing`.
async fn pair() -> (Pair, std::path::PathBuf) {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    let kms = moto.kms_client().await;
    let keys = Keys {
        target: create_kms_key(&kms, "target").await.unwrap(),
        other: create_kms_key(&kms, "other").await.unwrap(),
    };
    let facts = fill(&s3, "by-inventory", &keys).await;
    fill(&s3, "by-listing", &keys).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_inventory_with(&s3, "by-inventory", &facts, &dir.path().join("inv")).await.unwrap();
    (Pair { moto, s3, keys, dir }, manifest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_bucket_ends_exactly_like_the_same_bucket_planned_from_its_inventory() {
    let (p, manifest) = pair().await;
    let (inv_state, list_state) = (p.dir.path().join("inv.rekey"), p.dir.path().join("list.rekey"));
    let key = p.keys.target.as_str();
    let plan = |src: &str, state: &Path| {
        ok(rekey(&p.moto, &["plan", "--inventory", src, "--kms-key", key, "--state", state.to_str().unwrap()]))
    };
    plan(manifest.to_str().unwrap(), &inv_state);
    plan("s3://by-listing/", &list_state);
    let before = end_state(&p.s3, "by-listing", &p.keys).await;
    assert_eq!(before, end_state(&p.s3, "by-inventory", &p.keys).await, "the two buckets start alike");

    p.moto.reset_stats();
    ok(rekey(&p.moto, &["run", "--state", list_state.to_str().unwrap(), "--quiet"]));
    let stats = p.moto.stats();
    ok(rekey(&p.moto, &["run", "--state", inv_state.to_str().unwrap(), "--quiet"]));

    let listed = end_state(&p.s3, "by-listing", &p.keys).await;
    assert_eq!(listed, end_state(&p.s3, "by-inventory", &p.keys).await, "same end state");
    // And that end state is the right one: what needed it is under the target key, with
    // the lock carried over; nothing under another key was moved; nothing else touched.
    let current = |k: &str| listed[k].iter().find(|s| s.starts_with("current")).cloned().unwrap();
    for k in ["sse/a", "sse/b", "sse/dir/", "plain/c", "plain/with space+plus"] {
        assert!(current(k).starts_with("current aws:kms target"), "{k}: {}", current(k));
    }
    assert!(
        current("locked/d").starts_with("current aws:kms target lock=GOVERNANCE hold=ON"),
        "{}",
        current("locked/d")
    );
    assert!(
        current("locked/plain").starts_with("current aws:kms target lock=GOVERNANCE"),
        "{}",
        current("locked/plain")
    );
    assert!(current("kms/other").starts_with("current aws:kms other"), "{}", current("kms/other"));
    assert_eq!(listed["kms/target"].len(), 1, "already under the key: not rewritten");
    assert_eq!(listed["sse/a"].len(), 2, "an update writes no new version");
    assert_eq!(listed["plain/c"].len(), 2, "a copy leaves the old version");
    assert_eq!(listed["gone/e"], ["delete marker", "noncurrent AES256 - lock=- hold=-"]);

    // The checkpoints agree object by object: the run recorded what the HEAD decided.
    let (by_inv, by_list) = (outcomes(&inv_state), outcomes(&list_state));
    assert_eq!(by_list, by_inv);
    assert_eq!(by_list[&("plain/c".to_string(), true)], "copy done");
    assert_eq!(by_list[&("kms/other".to_string(), true)], "already_kms skipped");
    assert_eq!(by_list[&("locked/d".to_string(), true)], "copy done");
    assert_eq!(by_list[&("sse/b".to_string(), true)], "update done");
    // One HEAD per object the listing planned; the only writes were the ones needed.
    let ops = &stats["requests"];
    let n = |op: &str| ops[op].as_u64().unwrap_or(0);
    assert_eq!(n("UpdateObjectEncryption"), 3, "{stats}");
    assert_eq!(n("CopyObject"), 4, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_estimate_of_a_listing_prices_it_and_says_what_it_assumed_and_head_all_is_exact() {
    let (p, manifest) = pair().await;
    let key = p.keys.target.as_str();
    let estimate = |src: &str, extra: &[&str]| {
        let mut args = vec!["estimate", "--inventory", src, "--kms-key", key, "--format", "json"];
        args.extend_from_slice(extra);
        json(&ok(rekey(&p.moto, &args)))
    };
    let assumed = estimate("s3://by-listing/", &[]);
    let l = &assumed["listing"];
    assert_eq!(l["api"], "ListObjectVersions", "{assumed}");
    assert_eq!(l["list_requests"], 1);
    assert_eq!(l["head_requests"], 0);
    assert!(l["encryption"].as_str().unwrap().contains("assumed SSE-S3"), "{l}");
    assert_eq!(assumed["cost_usd"]["listing"].as_f64().unwrap(), 0.000005);
    // Every current object is assumed SSE-S3: planned as an update, plus a HEAD each.
    let objects = &assumed["objects"];
    assert_eq!(objects["by_method"]["update"], 9, "{objects}");
    assert_eq!(assumed["requests"]["s3_get_class"], 9);
    assert!(assumed["assumptions"]["notes"].to_string().contains("listing (ListObjectVersions)"));
    // The skips a listing can see: noncurrent versions and the delete marker.
    assert_eq!(objects["skipped"]["noncurrent_version"], 2, "{objects}");
    assert_eq!(objects["skipped"]["delete_marker"], 1, "{objects}");

    // --head-all: every version HEADed while planning, and the plan is the inventory's.
    let exact = estimate("s3://by-listing/", &["--head-all"]);
    let inventory = estimate(manifest.to_str().unwrap(), &[]);
    assert_eq!(exact["listing"]["head_requests"], 11, "{}", exact["listing"]);
    assert_eq!(exact["objects"]["by_method"], inventory["objects"]["by_method"]);
    assert_eq!(exact["objects"]["by_method"]["copy"], 4);
    assert_eq!(exact["requests"], inventory["requests"]);
    assert_eq!(exact["objects"]["skipped"]["already_kms"], 2);

    // A prefix lists only what is under it; a table says where the objects came from.
    let plain = estimate("s3://by-listing/plain/", &[]);
    assert_eq!(plain["inventory"]["rows"], 2, "{}", plain["inventory"]);
    let table = ok(rekey(&p.moto, &["estimate", "--inventory", "s3://by-listing/", "--kms-key", key]));
    let text = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(text.contains("live listing: 12 entries in 1 ListObjectVersions page(s)"), "{text}");
    assert!(text.contains("listing (spent planning)"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_assume_encryption_nothing_is_headed_first_and_a_refused_update_is_decided_again() {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    let key = create_kms_key(&moto.kms_client().await, "target").await.unwrap();
    s3.create_bucket().bucket("plainlist").send().await.unwrap();
    for (k, sse) in [("a", true), ("b", false), ("c", true)] {
        let put = s3.put_object().bucket("plainlist").key(k).body(ByteStream::from_static(b"data"));
        let put = if sse { put.server_side_encryption(ServerSideEncryption::Aes256) } else { put };
        put.send().await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.rekey");
    let s = state.to_str().unwrap();
    let plan = ok(rekey(
        &moto,
        &["plan", "--inventory", "s3://plainlist", "--assume-encryption", "SSE-S3", "--kms-key", &key, "--state", s],
    ));
    assert!(String::from_utf8_lossy(&plan.stdout).contains("ListObjectsV2"), "unversioned: ListObjectsV2");
    moto.reset_stats();
    // No pre-flight, whose own probes would blur the request counts.
    ok(rekey(&moto, &["run", "--state", s, "--quiet", "--skip-preflight"]));
    let stats = moto.stats();
    let n = |op: &str| stats["requests"][op].as_u64().unwrap_or(0);
    // Three updates tried, one refused (NOT-SSE), HEADed once and copied.
    assert_eq!((n("UpdateObjectEncryption"), n("HeadObject"), n("CopyObject")), (3, 1, 1), "{stats}");
    for k in ["a", "b", "c"] {
        let h = s3.head_object().bucket("plainlist").key(k).send().await.unwrap();
        assert_eq!(h.server_side_encryption(), Some(&ServerSideEncryption::AwsKms), "{k}");
    }
    let conn = rusqlite::Connection::open(&state).unwrap();
    let (method, enc, status): (String, String, String) = conn
        .query_row("SELECT method, encryption, status FROM objects WHERE key = 'b'", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((method.as_str(), enc.as_str(), status.as_str()), ("copy", "NOT-SSE", "done"));
}
