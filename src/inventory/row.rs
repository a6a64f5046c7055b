//! One inventory row, decoded from its CSV record (Parquet and ORC rows are read in
//! `columnar` and share [`RowDecoder::finish`]).
//!
//! Value sets and conventions are those of real S3 Inventory output (docs/s3-facts.md §1.3,
//! §1.4): every field may be quoted, `""` means absent, booleans are `true`/`false`, dates
//! are RFC 3339, and delete markers leave Size, ETag, StorageClass and EncryptionStatus
//! empty.

use super::keys::{decode_form_key, KeyError};
use super::schema::Schema;
use crate::units::ms_from_rfc3339;
use csv::ByteRecord;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// `EncryptionStatus` as S3 Inventory reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EncryptionStatus {
    #[serde(rename = "SSE-S3")]
    SseS3,
    #[serde(rename = "SSE-KMS")]
    SseKms,
    #[serde(rename = "DSSE-KMS")]
    DsseKms,
    #[serde(rename = "SSE-C")]
    SseC,
    #[serde(rename = "NOT-SSE")]
    NotSse,
}

impl EncryptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SseS3 => "SSE-S3",
            Self::SseKms => "SSE-KMS",
            Self::DsseKms => "DSSE-KMS",
            Self::SseC => "SSE-C",
            Self::NotSse => "NOT-SSE",
        }
    }
}

impl FromStr for EncryptionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "SSE-S3" => Self::SseS3,
            "SSE-KMS" => Self::SseKms,
            "DSSE-KMS" => Self::DsseKms,
            "SSE-C" => Self::SseC,
            "NOT-SSE" => Self::NotSse,
            _ => {
                return Err(format!(
                    "unknown encryption status '{s}' (expected SSE-S3, SSE-KMS, DSSE-KMS, SSE-C or NOT-SSE)"
                ))
            }
        })
    }
}

impl fmt::Display for EncryptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// S3 storage classes. `ExpressOnezone` never appears in an inventory (S3 Inventory does
/// not support directory buckets) but may in a Batch Operations manifest's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StorageClass {
    Standard,
    ReducedRedundancy,
    IntelligentTiering,
    StandardIa,
    OnezoneIa,
    GlacierIr,
    Glacier,
    DeepArchive,
    Outposts,
    Snow,
    ExpressOnezone,
}

impl StorageClass {
    pub const ALL: [StorageClass; 11] = [
        Self::Standard,
        Self::ReducedRedundancy,
        Self::IntelligentTiering,
        Self::StandardIa,
        Self::OnezoneIa,
        Self::GlacierIr,
        Self::Glacier,
        Self::DeepArchive,
        Self::Outposts,
        Self::Snow,
        Self::ExpressOnezone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "STANDARD",
            Self::ReducedRedundancy => "REDUCED_REDUNDANCY",
            Self::IntelligentTiering => "INTELLIGENT_TIERING",
            Self::StandardIa => "STANDARD_IA",
            Self::OnezoneIa => "ONEZONE_IA",
            Self::GlacierIr => "GLACIER_IR",
            Self::Glacier => "GLACIER",
            Self::DeepArchive => "DEEP_ARCHIVE",
            Self::Outposts => "OUTPOSTS",
            Self::Snow => "SNOW",
            Self::ExpressOnezone => "EXPRESS_ONEZONE",
        }
    }
}

impl FromStr for StorageClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        StorageClass::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| format!("unknown storage class '{s}'"))
    }
}

impl fmt::Display for StorageClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object version as the inventory describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryRow {
    pub bucket: String,
    pub key: String,
    /// `None` for the null version (an empty VersionId, or `null` in a Batch Ops manifest).
    pub version_id: Option<String>,
    /// `None` when the report has no IsLatest column.
    pub is_latest: Option<bool>,
    pub is_delete_marker: bool,
    /// `None` when the report has no Size column (Batch Operations manifests) or for delete markers.
    pub size: Option<u64>,
    pub last_modified_ms: Option<i64>,
    pub etag: Option<String>,
    /// `None` when the report has no StorageClass column; S3's default is STANDARD.
    pub storage_class: Option<StorageClass>,
    /// `None` only for delete markers: other rows get it from the report or `--assume-encryption`.
    pub encryption: Option<EncryptionStatus>,
    /// GOVERNANCE or COMPLIANCE (upper-cased), when the object has a retention mode.
    pub lock_mode: Option<String>,
    pub lock_retain_until: Option<String>,
    pub legal_hold: bool,
    pub it_tier: Option<String>,
    pub bucket_key_enabled: Option<bool>,
    /// Normalised to the API's spelling: `SHA-256` → `SHA256`.
    pub checksum_algorithm: Option<String>,
}

impl InventoryRow {
    /// The current version of an SSE-S3, STANDARD, unlocked object: the common case, for
    /// tests and benchmarks to adjust with struct-update syntax.
    pub fn sse_s3(bucket: &str, key: &str, size: u64, etag: &str) -> InventoryRow {
        InventoryRow {
            bucket: bucket.into(),
            key: key.into(),
            version_id: None,
            is_latest: None,
            is_delete_marker: false,
            size: Some(size),
            last_modified_ms: Some(1_700_000_000_000),
            etag: Some(etag.into()),
            storage_class: Some(StorageClass::Standard),
            encryption: Some(EncryptionStatus::SseS3),
            lock_mode: None,
            lock_retain_until: None,
            legal_hold: false,
            it_tier: None,
            bucket_key_enabled: None,
            checksum_algorithm: None,
        }
    }
}

/// What was wrong with one field of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field {}: {}", self.field, self.reason)
    }
}

/// How rows of one report are decoded.
#[derive(Debug, Clone)]
pub struct RowDecoder {
    pub schema: Schema,
    /// Used where the report has no EncryptionStatus column.
    pub assume_encryption: Option<EncryptionStatus>,
    /// Batch Operations manifests: 2 or 3 columns, `null` version ids.
    pub batch_ops: bool,
}

impl RowDecoder {
    /// One CSV record to a row: the key URL-decoded, booleans, numbers and dates parsed from
    /// their text, then [`Self::finish`]. Long because it is one arm per typed field.
    pub fn decode(&self, rec: &ByteRecord) -> Result<InventoryRow, RowError> {
        let s = &self.schema;
        let width_ok = if self.batch_ops { rec.len() == 2 || rec.len() == 3 } else { rec.len() == s.width };
        if !width_ok {
            let expected = if self.batch_ops { "2 or 3".to_string() } else { s.width.to_string() };
            return Err(RowError {
                field: "(row)".into(),
                reason: format!("expected {expected} columns (fileSchema), found {}", rec.len()),
            });
        }
        let err = |i: usize, reason: String| RowError { field: s.name(i).to_string(), reason };
        // An absent column and an empty field both read as None.
        let text = |col: Option<usize>| -> Result<Option<&str>, RowError> {
            let Some(i) = col else { return Ok(None) };
            match rec.get(i) {
                None | Some(b"") => Ok(None),
                Some(b) => std::str::from_utf8(b).map(Some).map_err(|_| err(i, "is not valid UTF-8".into())),
            }
        };
        let boolean = |col: Option<usize>| -> Result<Option<bool>, RowError> {
            match text(col)? {
                None => Ok(None),
                Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
                Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
                Some(v) => Err(err(col.unwrap(), format!("'{v}' is not true or false"))),
            }
        };

        let bucket = text(Some(s.bucket))?;
        let key =
            decode_form_key(rec.get(s.key).unwrap_or_default()).map_err(|e: KeyError| err(s.key, e.to_string()))?;
        let mut version_id = text(s.version_id)?;
        if self.batch_ops && version_id == Some("null") {
            version_id = None;
        }
        let is_delete_marker = boolean(s.is_delete_marker)?;
        let size = match text(s.size)? {
            None => None,
            Some(v) => Some(
                v.parse::<u64>().map_err(|_| err(s.size.unwrap(), format!("'{v}' is not a whole number of bytes")))?,
            ),
        };
        let last_modified_ms = match text(s.last_modified)? {
            None => None,
            Some(v) => Some(
                ms_from_rfc3339(v)
                    .ok_or_else(|| err(s.last_modified.unwrap(), format!("'{v}' is not an RFC 3339 date")))?,
            ),
        };
        self.finish(RawRow {
            bucket,
            key,
            version_id,
            is_latest: boolean(s.is_latest)?,
            is_delete_marker,
            size,
            last_modified_ms,
            etag: text(s.etag)?,
            storage_class: text(s.storage_class)?,
            encryption: text(s.encryption)?,
            lock_retain_until: text(s.lock_retain_until)?.map(str::to_string),
            lock_mode: text(s.lock_mode)?,
            legal_hold: text(s.legal_hold)?,
            it_tier: text(s.it_tier)?,
            bucket_key_status: text(s.bucket_key_status)?,
            checksum_algorithm: text(s.checksum_algorithm)?,
        })
    }

    /// The rules every format shares, applied to one row's fields: what is required, the
    /// value sets, and the normalisations. Errors name the column as [`Self::schema`] does.
    pub fn finish(&self, raw: RawRow<'_>) -> Result<InventoryRow, RowError> {
        let s = &self.schema;
        let err = |i: usize, reason: String| RowError { field: s.name(i).to_string(), reason };
        let bucket = raw.bucket.ok_or_else(|| err(s.bucket, "is empty".into()))?.to_string();
        let is_delete_marker = raw.is_delete_marker.unwrap_or(false);
        let storage_class = match raw.storage_class {
            None => None,
            Some(v) => Some(v.parse().map_err(|e| err(s.storage_class.unwrap_or(usize::MAX), e))?),
        };
        let encryption = match raw.encryption {
            Some(v) => Some(v.parse().map_err(|e| err(s.encryption.unwrap_or(usize::MAX), e))?),
            None if is_delete_marker => None,
            None if s.encryption.is_some() => {
                return Err(err(s.encryption.unwrap(), "is empty on an object that is not a delete marker".into()))
            }
            None => self.assume_encryption,
        };
        let legal_hold = match raw.legal_hold {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("on") => true,
            Some(v) if v.eq_ignore_ascii_case("off") => false,
            Some(v) => return Err(err(s.legal_hold.unwrap_or(usize::MAX), format!("'{v}' is not On or Off"))),
        };
        Ok(InventoryRow {
            bucket,
            key: raw.key,
            version_id: raw.version_id.map(str::to_string),
            is_latest: raw.is_latest,
            is_delete_marker,
            size: raw.size,
            last_modified_ms: raw.last_modified_ms,
            etag: raw.etag.map(|e| e.trim_matches('"').to_string()),
            storage_class,
            encryption,
            lock_mode: raw.lock_mode.map(str::to_ascii_uppercase),
            lock_retain_until: raw.lock_retain_until,
            legal_hold,
            it_tier: raw.it_tier.map(str::to_ascii_uppercase),
            bucket_key_enabled: raw.bucket_key_status.map(|v| v.eq_ignore_ascii_case("ENABLED")),
            checksum_algorithm: raw.checksum_algorithm.map(|c| c.replace('-', "").to_ascii_uppercase()),
        })
    }
}

/// One row's fields as its data file gives them, before the shared rules of
/// [`RowDecoder::finish`]: text where S3 writes text, typed where the format is typed (a
/// CSV decoder parses the booleans, numbers and dates first). `None` is absent: a missing
/// column, an empty field or a null. The key is already decoded (CSV keys are URL-encoded,
/// Parquet and ORC keys are not) and checked.
#[derive(Debug, Clone, Default)]
pub struct RawRow<'a> {
    pub bucket: Option<&'a str>,
    pub key: String,
    pub version_id: Option<&'a str>,
    pub is_latest: Option<bool>,
    pub is_delete_marker: Option<bool>,
    pub size: Option<u64>,
    pub last_modified_ms: Option<i64>,
    pub etag: Option<&'a str>,
    pub storage_class: Option<&'a str>,
    pub encryption: Option<&'a str>,
    /// As the report writes it (RFC 3339), or formatted from a typed timestamp.
    pub lock_retain_until: Option<String>,
    pub lock_mode: Option<&'a str>,
    pub legal_hold: Option<&'a str>,
    pub it_tier: Option<&'a str>,
    pub bucket_key_status: Option<&'a str>,
    pub checksum_algorithm: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_SCHEMA: &str = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded, ReplicationStatus, EncryptionStatus, ObjectLockRetainUntilDate, ObjectLockMode, ObjectLockLegalHoldStatus, IntelligentTieringAccessTier, BucketKeyStatus, ChecksumAlgorithm";

    fn decoder(schema: &str) -> RowDecoder {
        RowDecoder { schema: Schema::parse(schema).unwrap(), assume_encryption: None, batch_ops: false }
    }

    fn record(line: &str) -> ByteRecord {
        let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(line.as_bytes());
        r.byte_records().next().unwrap().unwrap()
    }

    #[test]
    fn decodes_real_sample_row() {
        // Row 3 of tests/data/real/real-orcabus-filemanager/csv_inventory.csv.
        let row = decoder(SAMPLE_SCHEMA)
            .decode(&record(r#""filemanager-inventory-test","inventory-test/key1","tpinzcbxOfWpZsmjvVgdHEvSohsY4TA0","true","false","5","2024-05-06T22:44:22.000Z","d8e8fca2dc0f896fd7cb4cb0031ba249","STANDARD","false","","SSE-S3","","","","","DISABLED","""#))
            .unwrap();
        assert_eq!(row.key, "inventory-test/key1");
        assert_eq!(row.version_id.as_deref(), Some("tpinzcbxOfWpZsmjvVgdHEvSohsY4TA0"));
        assert_eq!(row.is_latest, Some(true));
        assert_eq!(row.size, Some(5));
        assert_eq!(row.storage_class, Some(StorageClass::Standard));
        assert_eq!(row.encryption, Some(EncryptionStatus::SseS3));
        assert_eq!(row.bucket_key_enabled, Some(false));
        assert!(!row.legal_hold && row.lock_mode.is_none());
    }

    #[test]
    fn delete_marker_has_empty_fields() {
        let row = decoder(SAMPLE_SCHEMA)
            .decode(&record(r#""b","inventory-test/key2","gdN1","true","true","","2024-05-06T22:46:14.000Z","","","","","","","","","","DISABLED","""#))
            .unwrap();
        assert!(row.is_delete_marker);
        assert_eq!((row.size, row.encryption, row.storage_class), (None, None, None));
    }

    #[test]
    fn key_with_comma_quote_newline_in_quoted_field() {
        let d = decoder("Bucket, Key, Size, EncryptionStatus");
        let row = d.decode(&record("\"b\",\"say \"\"hi\"\", a+b%2Bc%25\nnext\",\"1\",\"SSE-S3\"")).unwrap();
        assert_eq!(row.key, "say \"hi\", a b+c%\nnext");
    }

    #[test]
    fn lock_and_checksum_normalised() {
        let d = decoder("Bucket, Key, EncryptionStatus, ObjectLockMode, ObjectLockLegalHoldStatus, ChecksumAlgorithm");
        let row = d.decode(&record("b,k,SSE-S3,Governance,on,SHA-256")).unwrap();
        assert_eq!(row.lock_mode.as_deref(), Some("GOVERNANCE"));
        assert!(row.legal_hold);
        assert_eq!(row.checksum_algorithm.as_deref(), Some("SHA256"));
    }

    #[test]
    fn bad_fields_name_the_field() {
        let d = decoder("Bucket, Key, Size, LastModifiedDate, EncryptionStatus");
        let e = d.decode(&record("b,k,12x,2024-05-06T22:46:14.000Z,SSE-S3")).unwrap_err();
        assert_eq!(e.field, "Size");
        let e = d.decode(&record("b,k,1,06/05/2024,SSE-S3")).unwrap_err();
        assert_eq!(e.field, "LastModifiedDate");
        let e = d.decode(&record("b,k%ZZ,1,,SSE-S3")).unwrap_err();
        assert_eq!(e.field, "Key");
        assert!(e.reason.contains("%ZZ"));
        let e = d.decode(&record("b,%C3%28,1,,SSE-S3")).unwrap_err();
        assert!(e.reason.contains("UTF-8"), "{e}");
        let e = d.decode(&record("b,k,1,,SSE-X")).unwrap_err();
        assert_eq!(e.field, "EncryptionStatus");
        let e = d.decode(&record("b,k,1")).unwrap_err();
        assert_eq!(e.field, "(row)");
        let e = d.decode(&record("b,k,1,,SSE-S3,extra")).unwrap_err();
        assert!(e.reason.contains("found 6"));
    }

    #[test]
    fn assumed_encryption_fills_a_missing_column_only() {
        let mut d = decoder("Bucket, Key");
        d.assume_encryption = Some(EncryptionStatus::NotSse);
        assert_eq!(d.decode(&record("b,k")).unwrap().encryption, Some(EncryptionStatus::NotSse));
    }

    #[test]
    fn batch_ops_rows() {
        let d = RowDecoder {
            schema: Schema::batch_ops(),
            assume_encryption: Some(EncryptionStatus::SseS3),
            batch_ops: true,
        };
        let r = d.decode(&record("b,a+b%2Bc%25.txt,null")).unwrap();
        assert_eq!((r.key.as_str(), r.version_id), ("a b+c%.txt", None));
        let r = d.decode(&record("b,k,v1")).unwrap();
        assert_eq!(r.version_id.as_deref(), Some("v1"));
        assert!(d.decode(&record("b,k")).is_ok());
        assert!(d.decode(&record("b")).is_err());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::inventory::keys::MAX_KEY_BYTES;
    use crate::inventory::synthetic::FULL_SCHEMA;
    use proptest::prelude::*;

    /// A field: one a real report holds, one nearly so, or arbitrary bytes.
    fn field() -> impl Strategy<Value = Vec<u8>> {
        let plausible: Vec<&[u8]> = vec![
            b"",
            b"src-bucket",
            b"true",
            b"FALSE",
            b"yes",
            b"SSE-S3",
            b"NOT-SSE",
            b"SSE-KMS",
            b"AES256",
            b"STANDARD",
            b"GLACIER",
            b"DEEP_ARCHIVE_ACCESS",
            b"0",
            b"123",
            b"-1",
            b"18446744073709551616",
            b"2024-05-06T22:44:22.000Z",
            b"2024-02-30T00:00:00Z",
            b"On",
            b"off",
            b"GOVERNANCE",
            b"ENABLED",
            b"SHA-256",
            b"a+b%2Bc%25.txt",
            b"%ZZ",
            b"%C3%28",
            b"%",
            b"\"etag\"",
            b"\xEF\xBB\xBFk",
            b"\xFF\xFE",
        ];
        prop_oneof![
            3 => prop::sample::select(plausible).prop_map(|f| f.to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..40),
            1 => "\\PC{0,20}".prop_map(String::into_bytes),
        ]
    }

    fn decoders() -> Vec<RowDecoder> {
        let full = Schema::parse(FULL_SCHEMA).unwrap();
        vec![
            RowDecoder { schema: full.clone(), assume_encryption: None, batch_ops: false },
            RowDecoder {
                schema: Schema::parse("Bucket, Key").unwrap(),
                assume_encryption: Some(EncryptionStatus::NotSse),
                batch_ops: false,
            },
            RowDecoder {
                schema: Schema::batch_ops(),
                assume_encryption: Some(EncryptionStatus::SseS3),
                batch_ops: true,
            },
        ]
    }

    proptest! {
        /// Any record, whatever its width: a row or an error naming a column, never a panic.
        #[test]
        fn arbitrary_records_never_panic(
            fields in prop::collection::vec(field(), 0..22),
            pad_to_full_width in any::<bool>(),
        ) {
            let mut fields = fields;
            if pad_to_full_width {
                fields.resize(FULL_SCHEMA.split(',').count(), Vec::new());
            }
            let rec = ByteRecord::from(fields);
            for d in decoders() {
                match d.decode(&rec) {
                    Ok(row) => {
                        prop_assert!(!row.key.is_empty() && row.key.len() <= MAX_KEY_BYTES);
                        prop_assert!(!row.bucket.is_empty());
                        prop_assert!(row.encryption.is_some() || row.is_delete_marker);
                    }
                    Err(e) => {
                        prop_assert!(e.field == "(row)" || d.schema.names.contains(&e.field), "{e}");
                        prop_assert!(!e.reason.is_empty());
                    }
                }
            }
        }

        /// Any fileSchema: a schema whose required columns are inside it, or an error.
        #[test]
        fn arbitrary_schemas_never_panic(names in prop::collection::vec(
            prop_oneof![
                prop::sample::select(FULL_SCHEMA.split(", ").collect::<Vec<_>>()).prop_map(str::to_string),
                "\\PC{0,12}",
            ],
            0..24,
        )) {
            if let Ok(s) = Schema::parse(&names.join(",")) {
                prop_assert_eq!(s.width, s.names.len());
                prop_assert!(s.bucket < s.width && s.key < s.width && s.bucket != s.key);
            }
        }
    }
}
