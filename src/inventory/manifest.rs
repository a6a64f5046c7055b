//! `manifest.json`: the index of one inventory report (docs/s3-facts.md §1.2).
//!
//! Real AWS manifests are Jackson-formatted and carry `creationTimestamp` as a string of
//! epoch milliseconds; `files[].key` is the data file's full key in the destination bucket.
//! `fileFormat` is `CSV`, `ORC` or `Parquet`, and says how `fileSchema` and every data file
//! are written (docs/s3-facts.md §1.5).

use super::schema::Schema;
use super::InventoryError;
use md5::{Digest, Md5};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    source_bucket: String,
    #[serde(default)]
    destination_bucket: Option<String>,
    creation_timestamp: serde_json::Value,
    file_format: String,
    file_schema: String,
    files: Vec<RawFile>,
}

#[derive(Debug, Deserialize)]
struct RawFile {
    key: String,
    size: Option<u64>,
    #[serde(rename = "MD5checksum")]
    md5: Option<String>,
}

/// How an inventory's data files are written (the manifest's `fileFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Gzipped CSV (`.csv.gz`), no header, keys URL-encoded.
    Csv,
    /// Apache Parquet (`.parquet`), Snappy-compressed by S3.
    Parquet,
    /// Apache ORC (`.orc`), ZLIB-compressed by S3.
    Orc,
}

impl FileFormat {
    /// The manifest's spelling, exact case.
    pub fn as_str(self) -> &'static str {
        match self {
            FileFormat::Csv => "CSV",
            FileFormat::Parquet => "Parquet",
            FileFormat::Orc => "ORC",
        }
    }
}

/// A parsed, checked manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub source_bucket: String,
    pub format: FileFormat,
    /// The bucket name from `destinationBucket` (`arn:aws:s3:::name`).
    pub destination_bucket: Option<String>,
    /// `creationTimestamp`: when the inventory scan began, ms since the epoch.
    pub created_ms: i64,
    pub schema: Schema,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone)]
pub struct ManifestFile {
    pub key: String,
    pub size: Option<u64>,
    pub md5: Option<String>,
}

impl Manifest {
    /// Parse manifest bytes; `path` names the manifest in errors.
    pub fn parse(path: &str, bytes: &[u8]) -> Result<Manifest, InventoryError> {
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|error| InventoryError::ManifestJson { path: path.into(), error })?;
        let bad =
            |field: &'static str, reason: String| InventoryError::BadManifest { path: path.into(), field, reason };
        let format = match raw.file_format.as_str() {
            "CSV" => FileFormat::Csv,
            "Parquet" => FileFormat::Parquet,
            "ORC" => FileFormat::Orc,
            other => return Err(bad("fileFormat", format!("unknown format '{other}' (expected CSV, ORC or Parquet)"))),
        };
        let created_ms = match &raw.creation_timestamp {
            serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
            serde_json::Value::Number(n) => n.as_i64(),
            _ => None,
        }
        .ok_or_else(|| bad("creationTimestamp", format!("{} is not epoch milliseconds", raw.creation_timestamp)))?;
        let schema = match format {
            FileFormat::Csv => Schema::parse(&raw.file_schema),
            FileFormat::Parquet | FileFormat::Orc => Schema::parse_columnar(&raw.file_schema),
        }
        .map_err(|e| bad("fileSchema", e.to_string()))?;
        let mut files = Vec::with_capacity(raw.files.len());
        for (i, f) in raw.files.into_iter().enumerate() {
            if f.key.is_empty() {
                return Err(bad("files", format!("entry {} has an empty key", i + 1)));
            }
            if let Some(m) = &f.md5 {
                if m.len() != 32 || !m.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad(
                        "files",
                        format!("entry {} ({}): MD5checksum '{m}' is not 32 hex digits", i + 1, f.key),
                    ));
                }
            }
            files.push(ManifestFile { key: f.key, size: f.size, md5: f.md5.map(|m| m.to_ascii_lowercase()) });
        }
        let destination_bucket =
            raw.destination_bucket.map(|arn| arn.strip_prefix("arn:aws:s3:::").unwrap_or(&arn).to_string());
        Ok(Manifest { source_bucket: raw.source_bucket, format, destination_bucket, created_ms, schema, files })
    }
}

/// Check `manifest.checksum` (32 hex digits and a newline: the MD5 of the manifest's bytes).
pub fn verify_checksum(path: &str, manifest_bytes: &[u8], checksum_file: &[u8]) -> Result<(), InventoryError> {
    let expected = String::from_utf8_lossy(checksum_file).trim().to_ascii_lowercase();
    let actual = md5_hex(manifest_bytes);
    if expected != actual {
        return Err(InventoryError::ManifestChecksum { path: path.into(), expected, actual });
    }
    Ok(())
}

pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/real/real-orcabus-filemanager");

    fn sample(name: &str) -> Vec<u8> {
        std::fs::read(format!("{SAMPLES}/{name}")).unwrap_or_else(|e| panic!("{SAMPLES}/{name}: {e}"))
    }

    #[test]
    fn parses_real_manifests_in_both_formattings() {
        for name in ["csv_inventory_manifest.json", "csv_inventory_manifest.original-aws-formatting.json"] {
            let m = Manifest::parse(name, &sample(name)).unwrap();
            assert_eq!(m.source_bucket, "filemanager-inventory-test");
            assert_eq!(m.destination_bucket.as_deref(), Some("filemanager-inventory-test"));
            assert_eq!(m.created_ms, 1715043600000);
            assert_eq!(m.files.len(), 1);
            assert_eq!(m.files[0].md5.as_deref(), Some("c473bcc2407d0a5cec5229b21d967e59"));
            assert!(m.schema.has_versions());
        }
    }

    #[test]
    fn real_checksums_verify() {
        for stem in [
            "csv_inventory_manifest",
            "csv_inventory_manifest.original-aws-formatting",
            "csv_inventory_no_version_manifest",
        ] {
            let m = sample(&format!("{stem}.json"));
            verify_checksum(stem, &m, &sample(&format!("{stem}.checksum"))).unwrap();
        }
        let m = sample("csv_inventory_manifest.json");
        let e = verify_checksum("m", &m, b"00000000000000000000000000000000\n").unwrap_err();
        assert!(e.to_string().contains("manifest.checksum says 0000"), "{e}");
    }

    #[test]
    fn parses_real_orc_and_parquet_manifests() {
        for (name, format) in
            [("orc_inventory_manifest.json", FileFormat::Orc), ("parquet_inventory_manifest.json", FileFormat::Parquet)]
        {
            let m = Manifest::parse(name, &sample(name)).unwrap();
            assert_eq!(m.format, format);
            assert_eq!(m.created_ms, 1715043600000);
            assert_eq!(m.schema.width, 18);
            assert_eq!(m.schema.name(m.schema.encryption.unwrap()), "encryption_status");
            assert!(m.schema.has_versions());
            let stem = name.strip_suffix(".json").unwrap();
            verify_checksum(stem, &sample(name), &sample(&format!("{stem}.checksum"))).unwrap();
        }
    }

    #[test]
    fn broken_manifests_name_the_problem() {
        let e = Manifest::parse("m.json", b"{not json").unwrap_err().to_string();
        assert!(e.starts_with("m.json: not a valid inventory manifest"), "{e}");
        let e = Manifest::parse(
            "m.json",
            br#"{"sourceBucket":"b","creationTimestamp":"1","fileFormat":"CSV","fileSchema":"Bucket, Key"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("missing field `files`"), "{e}");
        let e = Manifest::parse(
            "m.json",
            br#"{"sourceBucket":"b","creationTimestamp":"1","fileFormat":"CSV","fileSchema":"","files":[]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("field fileSchema: fileSchema is empty"), "{e}");
        let e = Manifest::parse("m.json", br#"{"sourceBucket":"b","creationTimestamp":"1","fileFormat":"JSON","fileSchema":"Bucket, Key","files":[]}"#).unwrap_err().to_string();
        assert!(e.contains("unknown format 'JSON'"), "{e}");
        let m = Manifest::parse(
            "m.json",
            br#"{"sourceBucket":"b","creationTimestamp":1,"fileFormat":"CSV","fileSchema":"Bucket, Key","files":[]}"#,
        )
        .unwrap();
        assert!(m.files.is_empty());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::inventory::synthetic::FULL_SCHEMA;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// Any JSON value, its strings and keys often ones a manifest uses.
    fn value() -> impl Strategy<Value = Value> {
        let words = prop::sample::select(vec![
            "CSV",
            "ORC",
            "Parquet",
            "csv",
            "",
            "Bucket, Key",
            FULL_SCHEMA,
            "1715043600000",
            "-1",
            "1e3",
            "d41d8cd98f00b204e9800998ecf8427e",
            "data/a.csv.gz",
            "arn:aws:s3:::dest",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(Value::from),
            words.prop_map(Value::from),
            "\\PC{0,16}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(field_name(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn field_name() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(vec![
                "sourceBucket", "destinationBucket", "version", "creationTimestamp", "fileFormat", "fileSchema",
                "files", "key", "size", "MD5checksum",
            ])
            .prop_map(str::to_string),
            1 => "\\PC{0,8}",
        ]
    }

    /// A manifest with each field right, wrong-typed, odd or missing.
    fn manifest_like() -> impl Strategy<Value = Value> {
        let file = (
            prop_oneof![6 => Just(json!("inventory/b/c/data/a.csv.gz")), 1 => Just(json!("")), 1 => value()],
            prop_oneof![4 => Just(json!(123)), 1 => Just(json!(-1)), 1 => Just(Value::Null), 1 => value()],
            prop_oneof![
                4 => Just(json!("D41D8CD98F00B204E9800998ECF8427E")),
                1 => Just(json!("xyz")),
                1 => Just(Value::Null),
                1 => value(),
            ],
        )
            .prop_map(|(key, size, md5)| json!({ "key": key, "size": size, "MD5checksum": md5 }));
        let field = |good: Value| prop_oneof![12 => Just(Some(good)), 1 => value().prop_map(Some), 1 => Just(None)];
        (
            field(json!("src")),
            field(json!("arn:aws:s3:::dest")),
            field(json!("1715043600000")),
            field(json!("CSV")),
            field(json!(FULL_SCHEMA)),
            prop_oneof![
                12 => prop::collection::vec(file, 0..4).prop_map(|f| Some(Value::Array(f))),
                1 => value().prop_map(Some),
                1 => Just(None),
            ],
        )
            .prop_map(|(source, dest, created, format, schema, files)| {
                let mut m = serde_json::Map::new();
                for (k, v) in [
                    ("sourceBucket", source),
                    ("destinationBucket", dest),
                    ("creationTimestamp", created),
                    ("fileFormat", format),
                    ("fileSchema", schema),
                    ("files", files),
                ] {
                    if let Some(v) = v {
                        m.insert(k.to_string(), v);
                    }
                }
                Value::Object(m)
            })
    }

    /// What a parsed manifest promises.
    fn check(m: &Manifest) -> Result<(), TestCaseError> {
        prop_assert!(m.schema.bucket < m.schema.width && m.schema.key < m.schema.width);
        for f in &m.files {
            prop_assert!(!f.key.is_empty());
            if let Some(md5) = &f.md5 {
                prop_assert!(md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            }
        }
        Ok(())
    }

    proptest! {
        /// Manifest-shaped JSON, whole, cut short, or with a byte changed: a manifest or an
        /// error naming the file, never a panic.
        #[test]
        fn json_ish_manifests_never_panic(
            v in prop_oneof![3 => manifest_like(), 1 => value()],
            pretty in any::<bool>(),
            damage in any::<prop::sample::Index>(),
            how in prop_oneof![3 => Just(0u8), 1 => Just(1), 1 => Just(2), 1 => Just(3)],
        ) {
            let mut bytes = if pretty { serde_json::to_vec_pretty(&v) } else { serde_json::to_vec(&v) }.unwrap();
            let at = damage.index(bytes.len());
            match how {
                0 => {}
                1 => bytes.truncate(at),
                2 => {
                    let odd = b"{}[]\",:0\\\xFF";
                    bytes[at] = odd[at % odd.len()];
                }
                _ => bytes.insert(at, b'"'),
            }
            match Manifest::parse("m.json", &bytes) {
                Ok(m) => check(&m)?,
                Err(e) => prop_assert!(e.to_string().starts_with("m.json: "), "{e}"),
            }
            // And its checksum file, whatever it holds.
            let _ = verify_checksum("m.json", &bytes, &bytes[..at]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            match Manifest::parse("m.json", &bytes) {
                Ok(m) => check(&m)?,
                Err(e) => prop_assert!(e.to_string().starts_with("m.json: "), "{e}"),
            }
        }
    }
}
