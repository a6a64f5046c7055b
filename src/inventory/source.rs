//! What `--inventory` names, where its data files are, and how each is read and verified.
//!
//! Four sources are accepted:
//! * a local `manifest.json` (data files found next to it, see [`resolve_local`]);
//! * `s3://bucket/path/manifest.json`, streamed through a [`BlobStore`] (a Parquet or ORC
//!   data file is spooled to a temporary file first: see `columnar`);
//! * a Batch Operations CSV manifest (`bucket,key[,versionId]`, no header, URL-encoded
//!   keys), local or `s3://`, plain or `.gz`. It has no encryption column, so it needs
//!   `--assume-encryption`;
//! * a live listing of `s3://bucket/prefix/` (a URL ending in `/` or a bare bucket, or
//!   any `s3://` URL with `--list`): see [`super::listing`].

use super::listing::{self, HeadFacts, ListCursor, ListPage, ListingSpec};
use super::manifest::{self, FileFormat, Manifest};
use super::row::{EncryptionStatus, RowDecoder};
use super::schema::Schema;
use super::InventoryError;
use md5::{Digest, Md5};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// A place bytes can be read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 { bucket: String, key: String },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// Reads objects from S3 for `s3://` sources. Implemented over aws-sdk-s3 in
/// `crate::s3::blobs`; kept as a trait so the inventory layer does not depend on the SDK.
pub trait BlobStore: Sync {
    /// The whole object, or `None` when it does not exist. For small files (manifests).
    fn get_small(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, InventoryError>;
    /// A streaming reader over the object and its length, never buffering it whole.
    fn open(&self, bucket: &str, key: &str) -> Result<(Box<dyn Read + Send>, u64), InventoryError>;
    /// Whether versioning is (or was) enabled on the bucket: GetBucketVersioning says
    /// Enabled or Suspended.
    fn is_versioned(&self, bucket: &str) -> Result<bool, InventoryError>;
    /// One page of a listing (ListObjectVersions or ListObjectsV2, as `spec` says).
    fn list_page(&self, spec: &ListingSpec, cursor: Option<&ListCursor>) -> Result<ListPage, InventoryError>;
    /// HEAD each `(key, version)` (several at once); `None` for one that is gone.
    fn head_many(
        &self,
        bucket: &str,
        objects: &[(String, Option<String>)],
    ) -> Result<Vec<Option<HeadFacts>>, InventoryError>;
}

/// What `--inventory` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventorySource {
    Manifest(Location),
    BatchOpsCsv(Location),
    /// A live listing of a bucket, under a prefix.
    Listing {
        bucket: String,
        prefix: String,
    },
}

impl InventorySource {
    /// What `src` names; `list` (`--list`) takes any `s3://` URL as a bucket and prefix.
    pub fn parse(src: &str, list: bool) -> Result<InventorySource, InventoryError> {
        let bad = |reason: &str| InventoryError::BadSource { source_name: src.into(), reason: reason.into() };
        let location = match src.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad("an s3:// URL needs a bucket"));
                }
                // A bare bucket or a prefix (ending in `/`) has no manifest to read: list it.
                if list || key.is_empty() || key.ends_with('/') {
                    return Ok(InventorySource::Listing { bucket: bucket.into(), prefix: key.into() });
                }
                Location::S3 { bucket: bucket.into(), key: key.into() }
            }
            None if list => return Err(bad("--list lists a bucket: pass s3://bucket/prefix/")),
            None => Location::Local(PathBuf::from(src)),
        };
        let lower = src.to_ascii_lowercase();
        if lower.ends_with(".json") {
            Ok(InventorySource::Manifest(location))
        } else if lower.ends_with(".csv") || lower.ends_with(".csv.gz") {
            Ok(InventorySource::BatchOpsCsv(location))
        } else {
            Err(bad("expected an inventory manifest.json (local or s3://), a Batch Operations .csv manifest, or s3://bucket/prefix/ to list"))
        }
    }
}

/// How an inventory is opened.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Check sizes and MD5s against the manifest (and `manifest.checksum`). On by default.
    pub verify: bool,
    /// Used when the report has no EncryptionStatus column.
    pub assume_encryption: Option<EncryptionStatus>,
    /// `--list`: an `s3://` URL names a bucket and prefix to list.
    pub list: bool,
    /// `--head-all`: a listing HEADs every object while planning.
    pub head_all: bool,
}

/// How one data file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// Plain CSV (a Batch Operations manifest, or an unzipped inventory file).
    Csv,
    CsvGzip,
    Parquet,
    Orc,
}

/// One data file to read.
#[derive(Debug, Clone)]
pub struct DataFile {
    pub location: Location,
    pub size: Option<u64>,
    pub md5: Option<String>,
    pub format: DataFormat,
}

/// An opened inventory: what to read and how to decode it.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// `--inventory` as given.
    pub source: String,
    pub source_bucket: Option<String>,
    /// When the inventory scan began (manifest `creationTimestamp`), ms since the epoch.
    pub created_ms: Option<i64>,
    pub decoder: RowDecoder,
    pub files: Vec<DataFile>,
    pub verify: bool,
    /// A live listing instead of data files (`files` is then empty).
    pub listing: Option<ListingSpec>,
}

impl Inventory {
    /// Open what `--inventory` names. Long because it is the three sources in turn, each
    /// read and checked before the next step needs it.
    pub fn open(src: &str, opts: &OpenOptions, blobs: Option<&dyn BlobStore>) -> Result<Inventory, InventoryError> {
        match InventorySource::parse(src, opts.list)? {
            InventorySource::Listing { bucket, prefix } => {
                let blobs = blobs.ok_or_else(|| InventoryError::BadSource {
                    source_name: src.into(),
                    reason: "no S3 client".into(),
                })?;
                let spec = ListingSpec {
                    versions: blobs.is_versioned(&bucket)?,
                    bucket,
                    prefix,
                    head_all: opts.head_all,
                    assumed: opts.assume_encryption.is_some(),
                };
                Ok(Inventory {
                    source: src.into(),
                    source_bucket: Some(spec.bucket.clone()),
                    created_ms: Some(crate::units::now_ms()),
                    decoder: RowDecoder {
                        schema: listing::schema(&spec),
                        // What a listing cannot say is assumed, and the run checks it.
                        assume_encryption: Some(opts.assume_encryption.unwrap_or(EncryptionStatus::SseS3)),
                        batch_ops: false,
                    },
                    files: Vec::new(),
                    verify: opts.verify,
                    listing: Some(spec),
                })
            }
            InventorySource::BatchOpsCsv(location) => {
                let assume = opts.assume_encryption.ok_or_else(|| InventoryError::BadSource {
                    source_name: src.into(),
                    reason: "a Batch Operations CSV manifest has no encryption column; pass --assume-encryption SSE-S3|NOT-SSE".into(),
                })?;
                let format =
                    if src.to_ascii_lowercase().ends_with(".gz") { DataFormat::CsvGzip } else { DataFormat::Csv };
                Ok(Inventory {
                    source: src.into(),
                    source_bucket: None,
                    created_ms: None,
                    decoder: RowDecoder {
                        schema: Schema::batch_ops(),
                        assume_encryption: Some(assume),
                        batch_ops: true,
                    },
                    files: vec![DataFile { location, size: None, md5: None, format }],
                    verify: opts.verify,
                    listing: None,
                })
            }
            InventorySource::Manifest(location) => {
                let (bytes, checksum) = match &location {
                    Location::Local(path) => {
                        let bytes =
                            std::fs::read(path).map_err(|error| InventoryError::Io { path: src.into(), error })?;
                        let checksum_path = path.with_extension("checksum");
                        let checksum = match std::fs::read(&checksum_path) {
                            Ok(c) => Some(c),
                            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                            Err(error) => {
                                return Err(InventoryError::Io { path: checksum_path.display().to_string(), error })
                            }
                        };
                        (bytes, checksum)
                    }
                    Location::S3 { bucket, key } => {
                        let blobs = blobs.ok_or_else(|| InventoryError::BadSource {
                            source_name: src.into(),
                            reason: "no S3 client".into(),
                        })?;
                        let bytes = blobs.get_small(bucket, key)?.ok_or_else(|| InventoryError::Remote {
                            url: src.into(),
                            message: "no such object".into(),
                        })?;
                        let checksum_key = match key.strip_suffix(".json") {
                            Some(stem) => format!("{stem}.checksum"),
                            None => format!("{key}.checksum"),
                        };
                        (bytes, blobs.get_small(bucket, &checksum_key)?)
                    }
                };
                if let (true, Some(checksum)) = (opts.verify, &checksum) {
                    manifest::verify_checksum(src, &bytes, checksum)?;
                }
                let m = Manifest::parse(src, &bytes)?;
                if m.schema.encryption.is_none() && opts.assume_encryption.is_none() {
                    return Err(InventoryError::MissingEncryption { path: src.into() });
                }
                let mut files = Vec::with_capacity(m.files.len());
                for f in &m.files {
                    let location = match &location {
                        Location::Local(path) => Location::Local(resolve_local(path, &f.key)?),
                        // The data files live beside the manifest in the same bucket.
                        Location::S3 { bucket, .. } => Location::S3 { bucket: bucket.clone(), key: f.key.clone() },
                    };
                    // The manifest's fileFormat decides, not the file's name: a CSV file
                    // named .parquet is refused as not Parquet.
                    let format = match m.format {
                        FileFormat::Csv if f.key.to_ascii_lowercase().ends_with(".csv") => DataFormat::Csv,
                        FileFormat::Csv => DataFormat::CsvGzip,
                        FileFormat::Parquet => DataFormat::Parquet,
                        FileFormat::Orc => DataFormat::Orc,
                    };
                    files.push(DataFile { location, size: f.size, md5: f.md5.clone(), format });
                }
                Ok(Inventory {
                    source: src.into(),
                    source_bucket: Some(m.source_bucket),
                    created_ms: Some(m.created_ms),
                    decoder: RowDecoder {
                        schema: m.schema,
                        assume_encryption: opts.assume_encryption,
                        batch_ops: false,
                    },
                    files,
                    verify: opts.verify,
                    listing: None,
                })
            }
        }
    }

    /// Open one data file for reading, raw (still compressed) and hashed as it is read.
    pub fn open_file(&self, file: &DataFile, blobs: Option<&dyn BlobStore>) -> Result<VerifyingReader, InventoryError> {
        let name = file.location.to_string();
        let (inner, len): (Box<dyn Read + Send>, u64) = match &file.location {
            Location::Local(path) => {
                let f = std::fs::File::open(path).map_err(|error| InventoryError::Io { path: name.clone(), error })?;
                let len = f.metadata().map_err(|error| InventoryError::Io { path: name.clone(), error })?.len();
                (Box::new(f), len)
            }
            Location::S3 { bucket, key } => {
                let blobs = blobs.ok_or_else(|| InventoryError::BadSource {
                    source_name: name.clone(),
                    reason: "no S3 client".into(),
                })?;
                blobs.open(bucket, key)?
            }
        };
        // A wrong size is known before reading a byte: fail fast.
        if let (true, Some(expected)) = (self.verify, file.size) {
            if expected != len {
                return Err(InventoryError::SizeMismatch { file: name, expected, actual: len });
            }
        }
        Ok(VerifyingReader {
            inner,
            name,
            expected_md5: if self.verify { file.md5.clone() } else { None },
            hasher: Md5::new(),
            bytes: 0,
        })
    }
}

/// Find a data file named by its key in the destination bucket. Tried in order: the key
/// under each ancestor of the manifest's directory, nearest first (an `aws s3 sync` copy
/// of the destination bucket or prefix), then the file name in the manifest's own
/// directory and in `../data/`.
pub fn resolve_local(manifest: &Path, key: &str) -> Result<PathBuf, InventoryError> {
    // A manifest names data files by S3 key; joined to a local directory, an absolute key
    // or a `..` would read any file on the machine (and --no-verify skips the MD5).
    use std::path::Component;
    if Path::new(key).components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(InventoryError::UnsafeDataKey { key: key.into() });
    }
    let dir = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    let mut tried = Vec::new();
    let abs = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
    for ancestor in abs.ancestors() {
        tried.push(ancestor.join(key));
    }
    let file_name = Path::new(key).file_name().map(PathBuf::from).unwrap_or_else(|| PathBuf::from(key));
    tried.push(dir.join(&file_name));
    tried.push(dir.join("..").join("data").join(&file_name));
    for candidate in &tried {
        if candidate.is_file() {
            return Ok(candidate.clone());
        }
    }
    Err(InventoryError::DataFileNotFound {
        key: key.into(),
        tried: tried.iter().map(|p| p.display().to_string()).collect(),
    })
}

/// Hashes and counts the raw bytes of a data file as they are read, so the MD5 check costs
/// no second pass. Call [`VerifyingReader::finish`] after the consumer is done.
pub struct VerifyingReader {
    inner: Box<dyn Read + Send>,
    pub name: String,
    expected_md5: Option<String>,
    hasher: Md5,
    bytes: u64,
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.expected_md5.is_some() {
            self.hasher.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

impl VerifyingReader {
    /// Read whatever the decoder left (gzip trailers, padding) and check the MD5.
    pub fn finish(mut self) -> Result<u64, InventoryError> {
        io::copy(&mut self, &mut io::sink())
            .map_err(|error| InventoryError::Read { file: self.name.clone(), error })?;
        if let Some(expected) = &self.expected_md5 {
            let actual = manifest::hex(&self.hasher.finalize_reset());
            if &actual != expected {
                return Err(InventoryError::Md5Mismatch {
                    file: self.name.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_by_shape() {
        assert!(matches!(
            InventorySource::parse("s3://b/p/manifest.json", false).unwrap(),
            InventorySource::Manifest(Location::S3 { .. })
        ));
        assert!(matches!(
            InventorySource::parse("dir/manifest.json", false).unwrap(),
            InventorySource::Manifest(Location::Local(_))
        ));
        assert!(matches!(InventorySource::parse("s3://b/m.csv", false).unwrap(), InventorySource::BatchOpsCsv(_)));
        assert!(matches!(InventorySource::parse("m.csv.gz", false).unwrap(), InventorySource::BatchOpsCsv(_)));
        assert!(InventorySource::parse("inventory.txt", false).is_err());
        assert!(InventorySource::parse("s3:///key", false).is_err());
        // A bucket, or a prefix: a live listing.
        let listing = |b: &str, p: &str| InventorySource::Listing { bucket: b.into(), prefix: p.into() };
        assert_eq!(InventorySource::parse("s3://bucket-only", false).unwrap(), listing("bucket-only", ""));
        assert_eq!(InventorySource::parse("s3://b/", false).unwrap(), listing("b", ""));
        assert_eq!(InventorySource::parse("s3://b/logs/2024/", false).unwrap(), listing("b", "logs/2024/"));
        // --list: any s3:// URL is a bucket and a prefix.
        assert_eq!(InventorySource::parse("s3://b/logs/app", true).unwrap(), listing("b", "logs/app"));
        assert!(InventorySource::parse("local/dir", true).is_err());
    }

    #[test]
    fn refuses_data_keys_that_leave_the_inventory() {
        let m = Path::new("/tmp/inv/manifest.json");
        for key in ["/etc/passwd", "../../etc/passwd", "data/../../secret.csv.gz"] {
            let e = resolve_local(m, key).unwrap_err();
            assert!(matches!(e, InventoryError::UnsafeDataKey { .. }), "{key}: {e}");
        }
    }

    #[test]
    fn resolves_data_files_like_a_synced_bucket() {
        let root = tempfile::tempdir().unwrap();
        let cfg = root.path().join("dest/src-bucket/cfg");
        std::fs::create_dir_all(cfg.join("2024-05-07T01-00Z")).unwrap();
        std::fs::create_dir_all(cfg.join("data")).unwrap();
        let manifest = cfg.join("2024-05-07T01-00Z/manifest.json");
        // The key is relative to the destination bucket root: the root ancestor matches.
        std::fs::write(cfg.join("data/a.csv.gz"), b"x").unwrap();
        let got = resolve_local(&manifest, "dest/src-bucket/cfg/data/a.csv.gz").unwrap();
        assert_eq!(std::fs::canonicalize(got).unwrap(), std::fs::canonicalize(cfg.join("data/a.csv.gz")).unwrap());
        // A key under a prefix that was not synced: found through ../data/.
        let got = resolve_local(&manifest, "other-prefix/src-bucket/cfg/data/a.csv.gz").unwrap();
        assert!(got.ends_with("data/a.csv.gz"));
        // Missing: every tried path is listed.
        let e = resolve_local(&manifest, "dest/src-bucket/cfg/data/missing.csv.gz").unwrap_err().to_string();
        assert!(e.contains("missing.csv.gz not found; tried:"), "{e}");
        assert!(e.contains("../data/missing.csv.gz"), "{e}");
    }
}
