//! A realistic bucket in the emulator, and a real-format S3 Inventory of it: the demo's
//! data, and the end-to-end tests' fixture.
//!
//! Objects get random bytes, user metadata, a content type, tags and a mix of storage
//! classes; most are SSE-S3 and some are unencrypted (so both `update` and `copy` run).
//! The inventory is written from a listing of the bucket (ETag, size, class, version,
//! last modified) plus the encryption each object was written with, since listings do
//! not report it.

use crate::inventory::synthetic::{write_inventory, InventorySpec, FULL_SCHEMA};
use crate::units::{rfc3339_from_ms, Rng};
use anyhow::{Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, ServerSideEncryption, StorageClass, VersioningConfiguration};
use futures::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What to put in the bucket.
#[derive(Debug, Clone)]
pub struct BucketSpec {
    pub bucket: String,
    pub objects: usize,
    pub versioned: bool,
    /// Share of objects written without encryption (copied rather than updated).
    pub unencrypted_share: f64,
    pub max_size: usize,
    pub seed: u64,
}

impl BucketSpec {
    pub fn new(bucket: &str, objects: usize) -> BucketSpec {
        BucketSpec {
            bucket: bucket.into(),
            objects,
            versioned: true,
            unencrypted_share: 0.3,
            max_size: 16 * 1024,
            seed: 2026,
        }
    }
}

/// One object as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededObject {
    pub key: String,
    pub size: usize,
    pub encrypted: bool,
    pub storage_class: &'static str,
    pub content_type: String,
    pub metadata: HashMap<String, String>,
    pub tags: Vec<(String, String)>,
    pub md5_etag: String,
    pub version_id: Option<String>,
}

const CLASSES: [(&str, u32); 5] =
    [("STANDARD", 60), ("STANDARD_IA", 15), ("ONEZONE_IA", 5), ("INTELLIGENT_TIERING", 10), ("GLACIER_IR", 10)];

/// Keys that trip naive tools: spaces, `+`, `%`, commas, quotes and non-ASCII.
fn key_for(i: usize, rng: &mut Rng) -> String {
    let dirs = ["logs/2026/11/", "images/", "data/raw/", "reports/q3 final/", "ünïcode/ключ/"];
    let dir = dirs[rng.below(dirs.len() as u64) as usize];
    match i % 50 {
        7 => format!("{dir}a b+c%{i}.txt"),
        17 => format!("{dir}comma,\"quoted\"-{i}.csv"),
        _ => format!("{dir}object-{i:06}.bin"),
    }
}

/// A symmetric KMS key in the emulator; returns its ARN.
pub async fn create_kms_key(kms: &aws_sdk_kms::Client, description: &str) -> Result<String> {
    let out = kms.create_key().description(description).send().await.context("kms CreateKey")?;
    out.key_metadata().and_then(|m| m.arn()).map(str::to_string).context("CreateKey returned no ARN")
}

/// Create the bucket and write `spec.objects` objects, 16 at a time.
pub async fn populate(s3: &aws_sdk_s3::Client, spec: &BucketSpec) -> Result<Vec<SeededObject>> {
    s3.create_bucket().bucket(&spec.bucket).send().await.with_context(|| format!("CreateBucket {}", spec.bucket))?;
    if spec.versioned {
        s3.put_bucket_versioning()
            .bucket(&spec.bucket)
            .versioning_configuration(
                VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
            )
            .send()
            .await
            .context("PutBucketVersioning")?;
    }
    let mut rng = Rng::new(spec.seed);
    let mut planned = Vec::with_capacity(spec.objects);
    for i in 0..spec.objects {
        let size = 1 + rng.below(spec.max_size as u64) as usize;
        let mut body = vec![0u8; size];
        body.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
        let o = SeededObject {
            key: key_for(i, &mut rng),
            size,
            encrypted: rng.unit() >= spec.unencrypted_share,
            storage_class: rng.pick::<&str>(&CLASSES),
            content_type: ["application/octet-stream", "text/plain; charset=utf-8", "image/png"][i % 3].into(),
            metadata: HashMap::from([
                ("owner".to_string(), format!("team-{}", i % 7)),
                ("seq".to_string(), i.to_string()),
            ]),
            tags: vec![("project".into(), "rekey-demo".into()), ("n".into(), (i % 10).to_string())],
            md5_etag: crate::inventory::manifest::md5_hex(&body),
            version_id: None,
        };
        planned.push((o, body));
    }
    futures::stream::iter(planned)
        .map(|(mut o, body)| async move {
            let tagging = o.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
            let out = s3
                .put_object()
                .bucket(&spec.bucket)
                .key(&o.key)
                .body(ByteStream::from(body))
                .content_type(&o.content_type)
                .set_metadata(Some(o.metadata.clone()))
                .tagging(tagging)
                .storage_class(StorageClass::from(o.storage_class))
                .set_server_side_encryption(o.encrypted.then_some(ServerSideEncryption::Aes256))
                .send()
                .await
                .with_context(|| format!("PutObject {}", o.key))?;
            o.version_id = out.version_id().map(str::to_string);
            anyhow::Ok(o)
        })
        .buffer_unordered(16)
        .try_collect()
        .await
}

/// What an inventory row says beyond what a listing gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowFacts {
    pub encrypted: bool,
    /// SSE-KMS (under any key): wins over `encrypted`.
    pub sse_kms: bool,
    /// GOVERNANCE | COMPLIANCE
    pub lock_mode: Option<String>,
    /// RFC 3339
    pub lock_retain_until: Option<String>,
    pub legal_hold: bool,
    /// CRC32, CRC32C, SHA1, SHA256, CRC64NVME
    pub checksum_algorithm: Option<String>,
}

/// Write an S3 Inventory (CSV, the full schema for a versioned bucket) of the bucket
/// under `dir`; returns the manifest's path. `encrypted` maps keys to whether they are
/// SSE-S3 (listings do not say).
pub async fn write_inventory_of(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    encrypted: &HashMap<String, bool>,
    dir: &Path,
) -> Result<PathBuf> {
    let facts = encrypted.iter().map(|(k, e)| (k.clone(), RowFacts { encrypted: *e, ..RowFacts::default() })).collect();
    write_inventory_with(s3, bucket, &facts, dir).await
}

/// As [`write_inventory_of`], with each key's encryption and Object Lock fields.
pub async fn write_inventory_with(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    facts: &HashMap<String, RowFacts>,
    dir: &Path,
) -> Result<PathBuf> {
    let mut rows = Vec::new();
    // ListObjectVersions has no paginator in the SDK: follow the markers by hand.
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .context("ListObjectVersions")?;
        for v in page.versions() {
            let key = v.key().unwrap_or_default().to_string();
            let f = facts.get(&key).cloned().unwrap_or_default();
            let enc = match (f.sse_kms, f.encrypted) {
                (true, _) => "SSE-KMS",
                (false, true) => "SSE-S3",
                (false, false) => "NOT-SSE",
            };
            let modified = v.last_modified().map(|t| rfc3339_from_ms(t.to_millis().unwrap_or(0))).unwrap_or_default();
            let class = v.storage_class().map(|c| c.as_str().to_string()).unwrap_or_else(|| "STANDARD".into());
            let version = v.version_id().filter(|v| *v != "null").unwrap_or("").to_string();
            rows.push(vec![
                bucket.to_string(),
                key,
                version,
                v.is_latest().unwrap_or(true).to_string(),
                "false".into(),
                v.size().unwrap_or(0).to_string(),
                modified,
                v.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                class,
                "false".into(),
                String::new(),
                enc.into(),
                f.lock_retain_until.clone().unwrap_or_default(),
                f.lock_mode.clone().unwrap_or_default(),
                if f.legal_hold { "ON" } else { "OFF" }.into(),
                String::new(),
                "DISABLED".into(),
                f.checksum_algorithm.clone().unwrap_or_default(),
            ]);
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let spec = InventorySpec { file_schema: FULL_SCHEMA.into(), ..InventorySpec::new(dir, bucket, now) };
    write_inventory(&spec, rows).with_context(|| format!("writing the inventory under {}", dir.display()))
}
