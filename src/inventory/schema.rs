//! Column positions, looked up by name from the manifest's `fileSchema`.
//!
//! Columns are never indexed by position: AWS adds optional fields over time and their
//! order follows the configuration (docs/s3-facts.md §1.2, §1.4), so unknown names are
//! accepted and ignored.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error("fileSchema is empty")]
    Empty,
    #[error("fileSchema lacks the required column '{0}'")]
    Missing(&'static str),
    #[error("fileSchema names column '{0}' twice")]
    Duplicate(String),
    #[error("fileSchema has an empty column name at position {0}")]
    EmptyName(usize),
}

/// Where each column rekey reads sits in a row; `None` when the report does not carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    /// Number of columns every row must have.
    pub width: usize,
    pub bucket: usize,
    pub key: usize,
    pub version_id: Option<usize>,
    pub is_latest: Option<usize>,
    pub is_delete_marker: Option<usize>,
    pub size: Option<usize>,
    pub last_modified: Option<usize>,
    pub etag: Option<usize>,
    pub storage_class: Option<usize>,
    pub encryption: Option<usize>,
    pub lock_retain_until: Option<usize>,
    pub lock_mode: Option<usize>,
    pub legal_hold: Option<usize>,
    pub it_tier: Option<usize>,
    pub bucket_key_status: Option<usize>,
    pub checksum_algorithm: Option<usize>,
    /// Every column name, in order, for error messages.
    pub names: Vec<String>,
}

impl Schema {
    /// Parse a CSV `fileSchema` such as `"Bucket, Key, Size, EncryptionStatus"`.
    pub fn parse(file_schema: &str) -> Result<Schema, SchemaError> {
        if file_schema.trim().is_empty() {
            return Err(SchemaError::Empty);
        }
        let names: Vec<String> = file_schema.split(',').map(|s| s.trim().to_string()).collect();
        Self::from_names(names)
    }

    pub fn from_names(names: Vec<String>) -> Result<Schema, SchemaError> {
        let mut s = Schema { width: names.len(), ..Schema::default() };
        let (mut bucket, mut key) = (None, None);
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(SchemaError::EmptyName(i + 1));
            }
            if names[..i].contains(name) {
                return Err(SchemaError::Duplicate(name.clone()));
            }
            let slot = match name.as_str() {
                "Bucket" => &mut bucket,
                "Key" => &mut key,
                "VersionId" => &mut s.version_id,
                "IsLatest" => &mut s.is_latest,
                "IsDeleteMarker" => &mut s.is_delete_marker,
                "Size" => &mut s.size,
                "LastModifiedDate" => &mut s.last_modified,
                "ETag" => &mut s.etag,
                "StorageClass" => &mut s.storage_class,
                "EncryptionStatus" => &mut s.encryption,
                "ObjectLockRetainUntilDate" => &mut s.lock_retain_until,
                "ObjectLockMode" => &mut s.lock_mode,
                "ObjectLockLegalHoldStatus" => &mut s.legal_hold,
                "IntelligentTieringAccessTier" => &mut s.it_tier,
                "BucketKeyStatus" => &mut s.bucket_key_status,
                "ChecksumAlgorithm" => &mut s.checksum_algorithm,
                _ => continue, // a field rekey does not use (yet)
            };
            *slot = Some(i);
        }
        s.bucket = bucket.ok_or(SchemaError::Missing("Bucket"))?;
        s.key = key.ok_or(SchemaError::Missing("Key"))?;
        s.names = names;
        Ok(s)
    }

    /// The layout of a Batch Operations CSV manifest: `bucket,key[,versionId]`.
    pub fn batch_ops() -> Schema {
        Schema {
            width: 3,
            bucket: 0,
            key: 1,
            version_id: Some(2),
            names: vec!["Bucket".into(), "Key".into(), "VersionId".into()],
            ..Schema::default()
        }
    }

    /// The report lists every version (IncludedObjectVersions = All).
    pub fn has_versions(&self) -> bool {
        self.is_latest.is_some()
    }

    pub fn name(&self, index: usize) -> &str {
        self.names.get(index).map(String::as_str).unwrap_or("?")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_by_name_whatever_the_order() {
        let s = Schema::parse("Key, Size, Bucket, SomeFutureField, EncryptionStatus, IsLatest").unwrap();
        assert_eq!((s.bucket, s.key, s.size, s.encryption, s.is_latest), (2, 0, Some(1), Some(4), Some(5)));
        assert_eq!(s.width, 6);
        assert_eq!(s.storage_class, None);
        assert!(s.has_versions());
    }

    #[test]
    fn real_schema_from_sample() {
        let s = Schema::parse("Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded, ReplicationStatus, EncryptionStatus, ObjectLockRetainUntilDate, ObjectLockMode, ObjectLockLegalHoldStatus, IntelligentTieringAccessTier, BucketKeyStatus, ChecksumAlgorithm").unwrap();
        assert_eq!(s.width, 18);
        assert_eq!(s.encryption, Some(11));
        assert_eq!(s.checksum_algorithm, Some(17));
    }

    #[test]
    fn refuses_broken_schemas() {
        assert_eq!(Schema::parse("  "), Err(SchemaError::Empty));
        assert_eq!(Schema::parse("Bucket, Size"), Err(SchemaError::Missing("Key")));
        assert_eq!(Schema::parse("Bucket, Key, Key"), Err(SchemaError::Duplicate("Key".into())));
        assert_eq!(Schema::parse("Bucket, , Key"), Err(SchemaError::EmptyName(2)));
    }
}
