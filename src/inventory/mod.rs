//! Reading S3 Inventory reports.
//!
//! * [`manifest`]: `manifest.json` and `manifest.checksum`.
//! * [`source`]: what `--inventory` names (local manifest, `s3://` manifest, Batch
//!   Operations CSV), where each data file is, and reading it verified.
//! * [`schema`], [`row`], [`keys`]: turning one CSV record into an [`InventoryRow`].
//! * [`columnar`]: the same from Parquet and ORC data files, batch by batch.
//! * [`scan`]: reading every data file, several in parallel, in flat memory.
//! * [`listing`]: a live listing of the bucket as the object list, when there is no inventory.
//! * [`synthetic`]: writing realistic inventories, for `rekey demo`, tests and benches.

pub mod columnar;
pub mod keys;
pub mod listing;
pub mod manifest;
pub mod row;
pub mod scan;
pub mod schema;
pub mod source;
pub mod synthetic;

pub use listing::ListingSpec;
pub use manifest::FileFormat;
pub use row::{EncryptionStatus, InventoryRow, RowDecoder, RowError, StorageClass};
pub use source::{BlobStore, DataFile, DataFormat, Inventory, InventorySource, Location, OpenOptions};

use thiserror::Error;

/// Everything that can go wrong reading an inventory. Each message names the file and,
/// for rows, the row, line and field, so a person can open the file and look.
#[derive(Debug, Error)]
pub enum InventoryError {
    // The causes are named `error`, not `source`: a `source` would also be reported as the
    // error's cause, and `rekey: error: {e:#}` would print it twice.
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: not a valid inventory manifest: {error}")]
    ManifestJson { path: String, error: serde_json::Error },
    #[error("{path}: field {field}: {reason}")]
    BadManifest { path: String, field: &'static str, reason: String },
    #[error("{path}: manifest.checksum says {expected} but the manifest's MD5 is {actual}")]
    ManifestChecksum { path: String, expected: String, actual: String },
    #[error("data file {key} not found; tried: {}", tried.join(", "))]
    DataFileNotFound { key: String, tried: Vec<String> },
    #[error("data file key {key:?} is not a relative path (an absolute path or a `..` component): refusing to read outside the inventory")]
    UnsafeDataKey { key: String },
    #[error("{file}: size is {actual} bytes but the manifest says {expected} (incomplete download?)")]
    SizeMismatch { file: String, expected: u64, actual: u64 },
    #[error("{file}: MD5 is {actual} but the manifest says {expected} (corrupt or replaced file)")]
    Md5Mismatch { file: String, expected: String, actual: String },
    #[error("{file}: cannot read: {error} (truncated, or not gzip?)")]
    Read { file: String, error: std::io::Error },
    /// `line` for CSV only: a Parquet or ORC row has a number, not a line.
    #[error("{file}: row {row}{}: {error}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    BadRow { file: String, row: u64, line: Option<u64>, error: RowError },
    #[error("{file}: {reason}")]
    NotColumnar { file: String, reason: String },
    #[error("{file}: cannot read the {format} file: {error} (truncated or corrupt?)")]
    Columnar { file: String, format: &'static str, error: String },
    #[error("{file}: has no column '{column}'{}", if *in_manifest { ", which the manifest's fileSchema lists" } else { "" })]
    MissingColumn { file: String, column: String, in_manifest: bool },
    #[error("{file}: column {column} is {found}, expected {expected}")]
    ColumnType { file: String, column: String, found: String, expected: &'static str },
    #[error("{path}: fileSchema has no EncryptionStatus column; enable the optional field EncryptionStatus in the inventory configuration, or pass --assume-encryption SSE-S3|NOT-SSE")]
    MissingEncryption { path: String },
    #[error("{source_name}: {reason}")]
    BadSource { source_name: String, reason: String },
    #[error("{url}: {message}")]
    Remote { url: String, message: String },
    #[error("stopped: another part of the scan failed")]
    Aborted,
}
