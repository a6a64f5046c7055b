//! Column positions, looked up by name from the manifest's `fileSchema` (CSV) or a data
//! file's own schema (Parquet, ORC).
//!
//! Columns are never indexed by position: AWS adds optional fields over time and their
//! order follows the configuration (docs/s3-facts.md §1.2, §1.4), so unknown names are
//! accepted and ignored. CSV names its columns in PascalCase (`EncryptionStatus`), Parquet
//! and ORC in snake_case (`encryption_status`, docs/s3-facts.md §1.5): [`Naming`] says which.

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
    #[error("cannot read the {0} fileSchema: {1}")]
    Syntax(&'static str, String),
}

/// How a report spells its column names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// CSV `fileSchema`: `Bucket, Key, VersionId, …`.
    Pascal,
    /// Parquet and ORC: `bucket`, `key`, `version_id`, …
    Snake,
}

/// Every column rekey reads, in both spellings (docs/s3-facts.md §1.4, §1.5).
const COLUMNS: [(&str, &str); 16] = [
    ("Bucket", "bucket"),
    ("Key", "key"),
    ("VersionId", "version_id"),
    ("IsLatest", "is_latest"),
    ("IsDeleteMarker", "is_delete_marker"),
    ("Size", "size"),
    ("LastModifiedDate", "last_modified_date"),
    ("ETag", "e_tag"),
    ("StorageClass", "storage_class"),
    ("EncryptionStatus", "encryption_status"),
    ("ObjectLockRetainUntilDate", "object_lock_retain_until_date"),
    ("ObjectLockMode", "object_lock_mode"),
    ("ObjectLockLegalHoldStatus", "object_lock_legal_hold_status"),
    ("IntelligentTieringAccessTier", "intelligent_tiering_access_tier"),
    ("BucketKeyStatus", "bucket_key_status"),
    ("ChecksumAlgorithm", "checksum_algorithm"),
];

impl Naming {
    /// The name of the `i`th entry of [`COLUMNS`] in this spelling.
    fn of(self, i: usize) -> &'static str {
        match self {
            Naming::Pascal => COLUMNS[i].0,
            Naming::Snake => COLUMNS[i].1,
        }
    }

    /// A column's name in this spelling, from its CSV name (`EncryptionStatus`).
    pub fn column(self, pascal: &str) -> Option<&'static str> {
        COLUMNS.iter().position(|c| c.0 == pascal).map(|i| self.of(i))
    }
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

    /// Parse a Parquet `fileSchema`, `message s3.inventory { required binary bucket (STRING); … }`,
    /// or an ORC one, `struct<bucket:string,key:string,…>` (docs/s3-facts.md §1.5): only the
    /// column names are taken; their types are checked in each data file.
    pub fn parse_columnar(file_schema: &str) -> Result<Schema, SchemaError> {
        let text = file_schema.trim();
        if text.is_empty() {
            return Err(SchemaError::Empty);
        }
        let names = if let Some(body) = text.strip_prefix("struct<") {
            let body = body.strip_suffix('>').ok_or_else(|| SchemaError::Syntax("ORC", "no closing '>'".into()))?;
            orc_names(body)?
        } else if text.starts_with("message") {
            let open = text.find('{').ok_or_else(|| SchemaError::Syntax("Parquet", "no '{'".into()))?;
            let body = text[open + 1..]
                .trim_end()
                .strip_suffix('}')
                .ok_or_else(|| SchemaError::Syntax("Parquet", "no closing '}'".into()))?;
            parquet_names(body)?
        } else {
            return Err(SchemaError::Syntax("Parquet or ORC", "expected `message … { … }` or `struct<…>`".into()));
        };
        Self::from_names_in(names, Naming::Snake)
    }

    pub fn from_names(names: Vec<String>) -> Result<Schema, SchemaError> {
        Self::from_names_in(names, Naming::Pascal)
    }

    /// Positions of the columns rekey reads among `names`, spelt as `naming` says.
    pub fn from_names_in(names: Vec<String>, naming: Naming) -> Result<Schema, SchemaError> {
        let mut s = Schema { width: names.len(), ..Schema::default() };
        let (mut bucket, mut key) = (None, None);
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(SchemaError::EmptyName(i + 1));
            }
            if names[..i].contains(name) {
                return Err(SchemaError::Duplicate(name.clone()));
            }
            // A field rekey does not use (yet) is skipped.
            let Some(column) = (0..COLUMNS.len()).find(|&c| naming.of(c) == name) else { continue };
            let slot = match column {
                0 => &mut bucket,
                1 => &mut key,
                2 => &mut s.version_id,
                3 => &mut s.is_latest,
                4 => &mut s.is_delete_marker,
                5 => &mut s.size,
                6 => &mut s.last_modified,
                7 => &mut s.etag,
                8 => &mut s.storage_class,
                9 => &mut s.encryption,
                10 => &mut s.lock_retain_until,
                11 => &mut s.lock_mode,
                12 => &mut s.legal_hold,
                13 => &mut s.it_tier,
                14 => &mut s.bucket_key_status,
                _ => &mut s.checksum_algorithm,
            };
            *slot = Some(i);
        }
        s.bucket = bucket.ok_or(SchemaError::Missing(naming.of(0)))?;
        s.key = key.ok_or(SchemaError::Missing(naming.of(1)))?;
        s.names = names;
        Ok(s)
    }

    /// Every column rekey reads that this schema has, with its position: `(position, name)`.
    pub fn used(&self) -> Vec<(usize, &str)> {
        let mut out = vec![self.bucket, self.key];
        out.extend(
            [
                self.version_id,
                self.is_latest,
                self.is_delete_marker,
                self.size,
                self.last_modified,
                self.etag,
                self.storage_class,
                self.encryption,
                self.lock_retain_until,
                self.lock_mode,
                self.legal_hold,
                self.it_tier,
                self.bucket_key_status,
                self.checksum_algorithm,
            ]
            .into_iter()
            .flatten(),
        );
        out.into_iter().map(|i| (i, self.name(i))).collect()
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

/// The names in an ORC struct body, `bucket:string,key:string,tags:map<string,string>`:
/// split at the commas outside `<…>` and `(…)`, each name before its first `:`.
fn orc_names(body: &str) -> Result<Vec<String>, SchemaError> {
    let mut names = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in body.char_indices().chain(std::iter::once((body.len(), ','))) {
        match c {
            '<' | '(' => depth += 1,
            '>' | ')' => depth -= 1,
            ',' if depth == 0 => {
                let field = body[start..i].trim();
                let (name, _) = field
                    .split_once(':')
                    .ok_or_else(|| SchemaError::Syntax("ORC", format!("field '{field}' has no ':type'")))?;
                names.push(name.trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    Ok(names)
}

/// The names in a Parquet message body: fields end with `;`, each
/// `required|optional|repeated TYPE NAME [(ANNOTATION)]`. Inventory schemas are flat; a
/// group would only hide its children, which rekey does not read.
fn parquet_names(body: &str) -> Result<Vec<String>, SchemaError> {
    let mut names = Vec::new();
    for field in body.split(';').map(str::trim).filter(|f| !f.is_empty()) {
        let mut words = field.split_whitespace();
        let (repetition, _type, name) = (words.next(), words.next(), words.next());
        match (repetition, name) {
            (Some("required" | "optional" | "repeated"), Some(name)) => names.push(name.to_string()),
            _ => return Err(SchemaError::Syntax("Parquet", format!("cannot read the field '{field}'"))),
        }
    }
    Ok(names)
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

    #[test]
    fn columnar_schemas_from_the_real_samples() {
        // tests/data/real/real-orcabus-filemanager/{orc,parquet}_inventory_manifest.json.
        let orc = Schema::parse_columnar("struct<bucket:string,key:string,version_id:string,is_latest:boolean,is_delete_marker:boolean,size:bigint,last_modified_date:timestamp,e_tag:string,storage_class:string,is_multipart_uploaded:boolean,replication_status:string,encryption_status:string,object_lock_retain_until_date:timestamp,object_lock_mode:string,object_lock_legal_hold_status:string,intelligent_tiering_access_tier:string,bucket_key_status:string,checksum_algorithm:string>").unwrap();
        let parquet = Schema::parse_columnar("message s3.inventory {  required binary bucket (STRING);  required binary key (STRING);  optional binary version_id (STRING);  optional boolean is_latest;  optional boolean is_delete_marker;  optional int64 size;  optional int64 last_modified_date (TIMESTAMP(MILLIS,true));  optional binary e_tag (STRING);  optional binary storage_class (STRING);  optional boolean is_multipart_uploaded;  optional binary replication_status (STRING);  optional binary encryption_status (STRING);  optional int64 object_lock_retain_until_date (TIMESTAMP(MILLIS,true));  optional binary object_lock_mode (STRING);  optional binary object_lock_legal_hold_status (STRING);  optional binary intelligent_tiering_access_tier (STRING);  optional binary bucket_key_status (STRING);  optional binary checksum_algorithm (STRING);}").unwrap();
        for s in [&orc, &parquet] {
            assert_eq!(s.width, 18);
            assert_eq!(
                (s.bucket, s.key, s.version_id, s.encryption, s.checksum_algorithm),
                (0, 1, Some(2), Some(11), Some(17))
            );
            assert_eq!(s.name(6), "last_modified_date");
            assert!(s.has_versions());
            assert_eq!(s.used().len(), 16);
        }
        // The documentation's spelling, and ORC types with commas inside.
        let doc = Schema::parse_columnar("message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); optional int64 last_modified_date (TIMESTAMP_MILLIS);}").unwrap();
        assert_eq!((doc.key, doc.last_modified), (1, Some(2)));
        let nested =
            Schema::parse_columnar("struct<tags:map<string,string>,bucket:string,amount:decimal(10,2),key:string>")
                .unwrap();
        assert_eq!((nested.bucket, nested.key, nested.width), (1, 3, 4));
    }

    #[test]
    fn columnar_schemas_refused_by_name() {
        assert_eq!(Schema::parse_columnar("struct<bucket:string,size:bigint>"), Err(SchemaError::Missing("key")));
        assert!(matches!(Schema::parse_columnar("struct<bucket:string"), Err(SchemaError::Syntax("ORC", _))));
        assert!(matches!(Schema::parse_columnar("struct<bucket,key:string>"), Err(SchemaError::Syntax("ORC", _))));
        assert!(matches!(Schema::parse_columnar("message m { binary key; }"), Err(SchemaError::Syntax("Parquet", _))));
        assert!(matches!(Schema::parse_columnar("Bucket, Key"), Err(SchemaError::Syntax(..))));
        assert_eq!(Schema::parse_columnar(" "), Err(SchemaError::Empty));
        // CSV's names mean nothing in a columnar report.
        assert_eq!(
            Schema::from_names_in(vec!["Bucket".into(), "Key".into()], Naming::Snake),
            Err(SchemaError::Missing("bucket"))
        );
        assert_eq!(Naming::Snake.column("ETag"), Some("e_tag"));
    }
}
