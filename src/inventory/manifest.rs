//! `manifest.json`: the index of one inventory report (s3-kms-facts.md §1.2).
//!
//! Real AWS manifests are Jackson-formatted and carry `creationTimestamp` as a string of
//! epoch milliseconds; `files[].key` is the data file's full key in the destination bucket.

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

/// A parsed, checked manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub source_bucket: String,
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
        let raw: RawManifest = serde_json::from_slice(bytes)
            .map_err(|source| InventoryError::ManifestJson { path: path.into(), source })?;
        let bad =
            |field: &'static str, reason: String| InventoryError::BadManifest { path: path.into(), field, reason };
        match raw.file_format.as_str() {
            "CSV" => {}
            "ORC" | "Parquet" => {
                return Err(InventoryError::UnsupportedFormat { path: path.into(), format: raw.file_format })
            }
            other => return Err(bad("fileFormat", format!("unknown format '{other}' (expected CSV, ORC or Parquet)"))),
        }
        let created_ms = match &raw.creation_timestamp {
            serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
            serde_json::Value::Number(n) => n.as_i64(),
            _ => None,
        }
        .ok_or_else(|| bad("creationTimestamp", format!("{} is not epoch milliseconds", raw.creation_timestamp)))?;
        let schema = Schema::parse(&raw.file_schema).map_err(|e| bad("fileSchema", e.to_string()))?;
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
        Ok(Manifest { source_bucket: raw.source_bucket, destination_bucket, created_ms, schema, files })
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

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/samples/real-orcabus-filemanager");

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
    fn orc_and_parquet_are_not_supported_yet() {
        for name in ["orc_inventory_manifest.json", "parquet_inventory_manifest.json"] {
            let e = Manifest::parse(name, &sample(name)).unwrap_err();
            assert!(matches!(e, InventoryError::UnsupportedFormat { .. }), "{e}");
            assert!(e.to_string().contains("not supported yet"));
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
