//! Writing inventories in the real S3 format, for `rekey demo`, tests and benchmarks.
//!
//! The layout is the one S3 delivers to a destination bucket (docs/s3-facts.md §1.1):
//!
//! ```text
//! ROOT/PREFIX/SOURCE-BUCKET/CONFIG/YYYY-MM-DDTHH-MMZ/manifest.json (+ manifest.checksum)
//! ROOT/PREFIX/SOURCE-BUCKET/CONFIG/data/<name>.csv.gz
//! ```
//!
//! with `files[].key` holding the full destination key, every field quoted, no header,
//! and keys form-encoded.

use super::keys::encode_form_key;
use super::manifest::{hex, md5_hex};
pub use crate::units::Rng;
use crate::units::{rfc3339_from_ms, GIB, MIB};
use flate2::write::GzEncoder;
use md5::{Digest, Md5};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Every field S3 Inventory writes for a versioned bucket, in AWS's usual order.
pub const FULL_SCHEMA: &str = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded, ReplicationStatus, EncryptionStatus, ObjectLockRetainUntilDate, ObjectLockMode, ObjectLockLegalHoldStatus, IntelligentTieringAccessTier, BucketKeyStatus, ChecksumAlgorithm";

/// One [`FULL_SCHEMA`] row, by field name, for fixtures and tests: [`FullRow::new`] is a
/// current, non-multipart object of `src-bucket` with ETag `0123abcd` and no lock; set the
/// other fields directly. [`FullRow::fields`] gives it in schema order.
#[derive(Debug, Clone)]
pub struct FullRow {
    pub bucket: String,
    pub key: String,
    pub version: String,
    pub latest: bool,
    pub delete_marker: bool,
    pub size: u64,
    pub modified_ms: i64,
    pub etag: String,
    pub class: String,
    pub encryption: String,
    pub lock_mode: String,
    pub legal_hold: String,
    pub tier: String,
}

impl FullRow {
    pub fn new(key: &str, version: &str, size: u64, class: &str, encryption: &str, modified_ms: i64) -> FullRow {
        FullRow {
            bucket: "src-bucket".into(),
            key: key.into(),
            version: version.into(),
            latest: true,
            delete_marker: false,
            size,
            modified_ms,
            etag: "0123abcd".into(),
            class: class.into(),
            encryption: encryption.into(),
            lock_mode: String::new(),
            legal_hold: String::new(),
            tier: String::new(),
        }
    }

    /// The fields in [`FULL_SCHEMA`] order (a delete marker has no size).
    pub fn fields(&self) -> Vec<String> {
        let size = if self.delete_marker { String::new() } else { self.size.to_string() };
        [
            self.bucket.as_str(),
            &self.key,
            &self.version,
            if self.latest { "true" } else { "false" },
            if self.delete_marker { "true" } else { "false" },
            &size,
            &rfc3339_from_ms(self.modified_ms),
            &self.etag,
            &self.class,
            "false",
            "",
            &self.encryption,
            "",
            &self.lock_mode,
            &self.legal_hold,
            &self.tier,
            "DISABLED",
            "",
        ]
        .map(String::from)
        .to_vec()
    }
}

/// Where and how to write an inventory.
#[derive(Debug, Clone)]
pub struct InventorySpec {
    pub root: PathBuf,
    pub dest_prefix: String,
    pub source_bucket: String,
    pub config_id: String,
    pub created_ms: i64,
    pub file_schema: String,
    pub data_files: usize,
    pub write_checksum: bool,
}

impl InventorySpec {
    pub fn new(root: &Path, source_bucket: &str, created_ms: i64) -> InventorySpec {
        InventorySpec {
            root: root.to_path_buf(),
            dest_prefix: "inventory".into(),
            source_bucket: source_bucket.into(),
            config_id: "rekey".into(),
            created_ms,
            file_schema: FULL_SCHEMA.into(),
            data_files: 1,
            write_checksum: true,
        }
    }

    fn config_key(&self) -> String {
        format!("{}/{}/{}", self.dest_prefix, self.source_bucket, self.config_id)
    }
}

/// Write `rows` (fields in `file_schema` order, keys NOT yet encoded) spread over the data
/// files; returns the manifest's path.
pub fn write_inventory(spec: &InventorySpec, rows: impl IntoIterator<Item = Vec<String>>) -> io::Result<PathBuf> {
    let key_col = spec
        .file_schema
        .split(',')
        .position(|c| c.trim() == "Key")
        .ok_or_else(|| io::Error::other("file_schema has no Key column"))?;
    let config_key = spec.config_key();
    let data_dir = spec.root.join(&config_key).join("data");
    std::fs::create_dir_all(&data_dir)?;
    let n = spec.data_files.max(1);
    let names: Vec<String> =
        (0..n).map(|i| format!("{:08x}-{i:04}.csv.gz", spec.created_ms as u64 & 0xffff_ffff)).collect();
    let mut writers = names
        .iter()
        .map(|name| {
            let f = std::fs::File::create(data_dir.join(name))?;
            let gz = GzEncoder::new(io::BufWriter::with_capacity(256 * 1024, f), flate2::Compression::fast());
            Ok(csv::WriterBuilder::new().quote_style(csv::QuoteStyle::Always).from_writer(gz))
        })
        .collect::<io::Result<Vec<_>>>()?;
    for (i, mut row) in rows.into_iter().enumerate() {
        row[key_col] = encode_form_key(&row[key_col]);
        writers[i % n].write_record(&row).map_err(io::Error::other)?;
    }
    let mut files = Vec::new();
    for (w, name) in writers.into_iter().zip(&names) {
        let gz = w.into_inner().map_err(|e| io::Error::other(e.to_string()))?;
        gz.finish()?.flush()?;
        let bytes = std::fs::read(data_dir.join(name))?;
        files.push(serde_json::json!({
            "key": format!("{config_key}/data/{name}"),
            "size": bytes.len(),
            "MD5checksum": hex(&Md5::digest(&bytes)),
        }));
    }
    let manifest = serde_json::json!({
        "sourceBucket": spec.source_bucket,
        "destinationBucket": format!("arn:aws:s3:::{}-inventory", spec.source_bucket),
        "version": "2016-11-30",
        "creationTimestamp": spec.created_ms.to_string(),
        "fileFormat": "CSV",
        "fileSchema": spec.file_schema,
        "files": files,
    });
    // S3 names the report folder after the scan's start: 2016-11-06T21-32Z.
    let stamp = rfc3339_from_ms(spec.created_ms);
    let folder = format!("{}-{}Z", &stamp[..13], &stamp[14..16]);
    let dir = spec.root.join(&config_key).join(folder);
    std::fs::create_dir_all(&dir)?;
    let mut text = serde_json::to_string_pretty(&manifest).map_err(io::Error::other)?;
    text.push('\n');
    let path = dir.join("manifest.json");
    std::fs::write(&path, &text)?;
    if spec.write_checksum {
        std::fs::write(dir.join("manifest.checksum"), format!("{}\n", md5_hex(text.as_bytes())))?;
    }
    Ok(path)
}

/// Rows for [`FULL_SCHEMA`] with the mix a real, long-lived bucket has: every storage
/// class and encryption status, object lock, archived Intelligent-Tiering tiers, versions
/// and delete markers, awkward keys, and `huge` objects over 5 GiB.
pub fn demo_rows(
    bucket: &str,
    count: usize,
    huge: usize,
    created_ms: i64,
    seed: u64,
) -> impl Iterator<Item = Vec<String>> + '_ {
    let mut rng = Rng::new(seed);
    let mut emitted = 0usize;
    let mut pending: Vec<Vec<String>> = Vec::new();
    let mut object = 0usize;
    std::iter::from_fn(move || {
        if emitted >= count {
            return None;
        }
        if pending.is_empty() {
            object += 1;
            let huge_now = object <= huge;
            pending = demo_object(&mut rng, bucket, object, huge_now, created_ms);
            pending.reverse();
        }
        emitted += 1;
        pending.pop()
    })
}

const AWKWARD_KEYS: [&str; 6] = [
    "reports/a b+c%.txt",
    "données/été 2024.csv",
    "say \"hi\", twice",
    "multi\nline key",
    "日本語/ファイル.bin",
    "tab\there",
];

/// One demo object's rows. Long on purpose: one table of distributions, drawn in a fixed
/// order. Splitting it would only move the draws, and their order is what makes the
/// generated inventories (and the benches and tests on them) the same from run to run.
fn demo_object(rng: &mut Rng, bucket: &str, n: usize, huge: bool, created_ms: i64) -> Vec<Vec<String>> {
    let key = if n <= AWKWARD_KEYS.len() * 7 && n % 7 == 0 {
        format!("{}-{n}", AWKWARD_KEYS[n / 7 - 1])
    } else {
        let prefix =
            rng.pick(&[("logs/app/", 40), ("data/parquet/", 25), ("backups/db/", 10), ("media/img/", 20), ("tmp/", 5)]);
        format!("{prefix}{:04}/{:06}.obj", rng.below(2000), n)
    };
    let class = *rng.pick(&[
        ("STANDARD", 540),
        ("INTELLIGENT_TIERING", 100),
        ("STANDARD_IA", 120),
        ("ONEZONE_IA", 30),
        ("GLACIER_IR", 60),
        ("GLACIER", 40),
        ("DEEP_ARCHIVE", 30),
        ("REDUCED_REDUNDANCY", 10),
        ("OUTPOSTS", 3),
        ("SNOW", 2),
    ]);
    let class = if huge { "STANDARD" } else { class };
    let encryption = *rng.pick(&[("SSE-S3", 750), ("NOT-SSE", 120), ("SSE-KMS", 100), ("DSSE-KMS", 15), ("SSE-C", 15)]);
    let encryption = if huge { "NOT-SSE" } else { encryption };
    let tier = if class == "INTELLIGENT_TIERING" {
        *rng.pick(&[
            ("FREQUENT", 50),
            ("INFREQUENT", 25),
            ("ARCHIVE_INSTANT_ACCESS", 15),
            ("ARCHIVE_ACCESS", 6),
            ("DEEP_ARCHIVE_ACCESS", 4),
        ])
    } else {
        ""
    };
    let (mode, until) = match rng.below(100) {
        0 => ("GOVERNANCE", rfc3339_from_ms(created_ms + 86_400_000 * 365)),
        1 => ("COMPLIANCE", rfc3339_from_ms(created_ms + 86_400_000 * 90)),
        _ => ("", String::new()),
    };
    let hold = if rng.below(100) == 0 { "On" } else { "" };
    // Sizes spread over nine orders of magnitude, as real buckets are.
    let size = if huge {
        [6 * GIB, 12 * GIB + 7, 100 * GIB, 5 * GIB + 1, 1024 * GIB][n % 5]
    } else {
        (10f64.powf(rng.unit() * 9.0)) as u64
    };
    let multipart = size > 16 * MIB;
    let etag = |rng: &mut Rng| {
        let h = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
        if multipart {
            format!("{h}-{}", size.div_ceil(16 * MIB).min(10_000))
        } else {
            h
        }
    };
    let age_days = rng.unit() * 400.0;
    let modified = created_ms - (age_days * 86_400_000.0) as i64;
    let checksum = *rng.pick(&[("", 80), ("CRC32", 10), ("SHA256", 5), ("CRC64NVME", 5)]);
    let version = |rng: &mut Rng| format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
    let row = |version_id: String, latest: bool, delete: bool, modified: i64, etag: String| -> Vec<String> {
        if delete {
            return vec![
                bucket.into(),
                key.clone(),
                version_id,
                latest.to_string(),
                "true".into(),
                String::new(),
                rfc3339_from_ms(modified),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                "DISABLED".into(),
                String::new(),
            ];
        }
        vec![
            bucket.into(),
            key.clone(),
            version_id,
            latest.to_string(),
            "false".into(),
            size.to_string(),
            rfc3339_from_ms(modified),
            etag,
            class.into(),
            multipart.to_string(),
            String::new(),
            encryption.into(),
            until.clone(),
            mode.into(),
            hold.into(),
            tier.into(),
            if encryption == "SSE-KMS" { "ENABLED" } else { "DISABLED" }.into(),
            checksum.into(),
        ]
    };
    let mut rows = Vec::new();
    match rng.below(100) {
        // A deleted object: a delete marker on top of an older version.
        0..=2 => {
            rows.push(row(version(rng), true, true, modified, String::new()));
            let e = etag(rng);
            rows.push(row(version(rng), false, false, modified - 86_400_000, e));
        }
        // An object overwritten a few times: noncurrent versions below the latest.
        3..=7 => {
            let e = etag(rng);
            rows.push(row(version(rng), true, false, modified, e));
            for k in 1..=1 + rng.below(2) as i64 {
                let e = etag(rng);
                rows.push(row(version(rng), false, false, modified - k * 86_400_000, e));
            }
        }
        // Written before versioning was enabled: the null version.
        8..=9 => {
            let e = etag(rng);
            rows.push(row(String::new(), true, false, modified, e))
        }
        _ => {
            let e = etag(rng);
            rows.push(row(version(rng), true, false, modified, e))
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_rows_are_deterministic_and_exact_in_count() {
        let a: Vec<_> = demo_rows("b", 1000, 3, 1_700_000_000_000, 7).collect();
        let b: Vec<_> = demo_rows("b", 1000, 3, 1_700_000_000_000, 7).collect();
        assert_eq!(a.len(), 1000);
        assert_eq!(a, b);
        assert!(a.iter().all(|r| r.len() == FULL_SCHEMA.split(',').count()));
        assert!(a.iter().any(|r| r[5].parse::<u64>().is_ok_and(|s| s > 5 * GIB)));
        assert!(a.iter().any(|r| r[4] == "true"));
    }
}
