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
//! and keys form-encoded. With [`InventorySpec::format`] Parquet or ORC, the data files are
//! `<name>.parquet` (Snappy) or `<name>.orc` (ZLIB), written with the crates rekey reads
//! them with, in the types and snake_case names S3 uses (docs/s3-facts.md §1.5), keys as
//! they are.

use super::keys::encode_form_key;
use super::manifest::{hex, md5_hex, FileFormat};
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
    /// How the data files are written; CSV unless set.
    pub format: FileFormat,
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
            format: FileFormat::Csv,
        }
    }

    fn config_key(&self) -> String {
        format!("{}/{}/{}", self.dest_prefix, self.source_bucket, self.config_id)
    }
}

/// Write `rows` (fields in `file_schema` order, as CSV text, keys NOT yet encoded) spread
/// over the data files; returns the manifest's path.
pub fn write_inventory(spec: &InventorySpec, rows: impl IntoIterator<Item = Vec<String>>) -> io::Result<PathBuf> {
    let columns: Vec<&str> = spec.file_schema.split(',').map(str::trim).collect();
    let key_col =
        columns.iter().position(|c| *c == "Key").ok_or_else(|| io::Error::other("file_schema has no Key column"))?;
    let config_key = spec.config_key();
    let data_dir = spec.root.join(&config_key).join("data");
    std::fs::create_dir_all(&data_dir)?;
    let n = spec.data_files.max(1);
    let extension = match spec.format {
        FileFormat::Csv => "csv.gz",
        FileFormat::Parquet => "parquet",
        FileFormat::Orc => "orc",
    };
    let names: Vec<String> =
        (0..n).map(|i| format!("{:08x}-{i:04}.{extension}", spec.created_ms as u64 & 0xffff_ffff)).collect();
    match spec.format {
        FileFormat::Csv => write_csv_files(&data_dir, &names, key_col, rows)?,
        format => columnar::write_files(&data_dir, &names, format, &columns, rows)?,
    }
    let mut files = Vec::new();
    for name in &names {
        let bytes = std::fs::read(data_dir.join(name))?;
        files.push(serde_json::json!({
            "key": format!("{config_key}/data/{name}"),
            "size": bytes.len(),
            "MD5checksum": hex(&Md5::digest(&bytes)),
        }));
    }
    let file_schema = match spec.format {
        FileFormat::Csv => spec.file_schema.clone(),
        format => columnar::file_schema(format, &columns),
    };
    let manifest = serde_json::json!({
        "sourceBucket": spec.source_bucket,
        "destinationBucket": format!("arn:aws:s3:::{}-inventory", spec.source_bucket),
        "version": "2016-11-30",
        "creationTimestamp": spec.created_ms.to_string(),
        "fileFormat": spec.format.as_str(),
        "fileSchema": file_schema,
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

/// Gzipped CSV as S3 writes it: every field quoted, keys form-encoded, rows dealt out in turn.
fn write_csv_files(
    data_dir: &Path,
    names: &[String],
    key_col: usize,
    rows: impl IntoIterator<Item = Vec<String>>,
) -> io::Result<()> {
    let mut writers = names
        .iter()
        .map(|name| {
            let f = std::fs::File::create(data_dir.join(name))?;
            let gz = GzEncoder::new(io::BufWriter::with_capacity(256 * 1024, f), flate2::Compression::fast());
            Ok(csv::WriterBuilder::new().quote_style(csv::QuoteStyle::Always).from_writer(gz))
        })
        .collect::<io::Result<Vec<_>>>()?;
    let n = writers.len();
    for (i, mut row) in rows.into_iter().enumerate() {
        row[key_col] = encode_form_key(&row[key_col]);
        writers[i % n].write_record(&row).map_err(io::Error::other)?;
    }
    for w in writers {
        let gz = w.into_inner().map_err(|e| io::Error::other(e.to_string()))?;
        gz.finish()?.flush()?;
    }
    Ok(())
}

pub use columnar::{data_file as columnar_data_file, file_schema as columnar_file_schema};

/// Parquet and ORC data files from the same CSV-text rows.
mod columnar {
    use super::super::manifest::FileFormat;
    use crate::units::ms_from_rfc3339;
    use arrow::array::{
        ArrayRef, BooleanBuilder, Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
    };
    use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit};
    use std::io::{self, BufWriter, Write};
    use std::path::Path;
    use std::sync::Arc;

    /// Rows buffered per file before they are handed to the writer as one batch.
    const BATCH_ROWS: usize = 64 * 1024;
    /// Rows per Parquet row group / ORC stripe (about).
    const GROUP_ROWS: usize = 128 * 1024;

    /// `IsMultipartUploaded` → `is_multipart_uploaded`, `ETag` → `e_tag`: S3's Parquet and
    /// ORC names are the CSV ones in snake_case.
    pub fn snake_case(pascal: &str) -> String {
        let mut out = String::with_capacity(pascal.len() + 4);
        for (i, c) in pascal.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    }

    #[derive(Clone, Copy)]
    enum Kind {
        Text,
        Boolean,
        Integer,
        Timestamp,
    }

    fn kind(pascal: &str) -> Kind {
        match pascal {
            "IsLatest" | "IsDeleteMarker" | "IsMultipartUploaded" => Kind::Boolean,
            "Size" => Kind::Integer,
            "LastModifiedDate" | "ObjectLockRetainUntilDate" | "LifecycleExpirationDate" => Kind::Timestamp,
            _ => Kind::Text,
        }
    }

    /// The Arrow schema of one format: ORC's `timestamp` has no time zone, Parquet's is
    /// `TIMESTAMP(MILLIS,true)` (UTC), as S3 writes them.
    fn arrow_schema(format: FileFormat, columns: &[&str]) -> SchemaRef {
        let zone: Option<Arc<str>> = if format == FileFormat::Parquet { Some("UTC".into()) } else { None };
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| {
                let t = match kind(c) {
                    Kind::Text => DataType::Utf8,
                    Kind::Boolean => DataType::Boolean,
                    Kind::Integer => DataType::Int64,
                    Kind::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, zone.clone()),
                };
                Field::new(snake_case(c), t, !matches!(*c, "Bucket" | "Key"))
            })
            .collect();
        Arc::new(ArrowSchema::new(fields))
    }

    /// The manifest's `fileSchema` in the format's own syntax, as S3 writes it.
    pub fn file_schema(format: FileFormat, columns: &[&str]) -> String {
        let fields = columns.iter().map(|c| (snake_case(c), kind(c), matches!(*c, "Bucket" | "Key")));
        if format == FileFormat::Orc {
            let parts: Vec<String> = fields
                .map(|(name, k, _)| {
                    let t = match k {
                        Kind::Text => "string",
                        Kind::Boolean => "boolean",
                        Kind::Integer => "bigint",
                        Kind::Timestamp => "timestamp",
                    };
                    format!("{name}:{t}")
                })
                .collect();
            format!("struct<{}>", parts.join(","))
        } else {
            let parts: String = fields
                .map(|(name, k, required)| {
                    let rep = if required { "required" } else { "optional" };
                    let t = match k {
                        Kind::Text => "binary",
                        Kind::Boolean => "boolean",
                        Kind::Integer | Kind::Timestamp => "int64",
                    };
                    let ann = match k {
                        Kind::Text => " (STRING)",
                        Kind::Timestamp => " (TIMESTAMP(MILLIS,true))",
                        _ => "",
                    };
                    format!("  {rep} {t} {name}{ann};")
                })
                .collect();
            format!("message s3.inventory {{{parts}}}")
        }
    }

    enum Builder {
        Text(StringBuilder),
        Boolean(BooleanBuilder),
        Integer(Int64Builder),
        Timestamp(TimestampMillisecondBuilder, Option<Arc<str>>),
    }

    impl Builder {
        /// Append one CSV-text field; the empty string is null.
        fn push(&mut self, v: &str) -> io::Result<()> {
            let bad = |what: &str| io::Error::other(format!("'{v}' is not {what}"));
            match self {
                Builder::Text(b) if v.is_empty() => b.append_null(),
                Builder::Text(b) => b.append_value(v),
                Builder::Boolean(b) if v.is_empty() => b.append_null(),
                Builder::Boolean(b) => b.append_value(v.parse().map_err(|_| bad("true or false"))?),
                Builder::Integer(b) if v.is_empty() => b.append_null(),
                Builder::Integer(b) => b.append_value(v.parse().map_err(|_| bad("an integer"))?),
                Builder::Timestamp(b, _) if v.is_empty() => b.append_null(),
                Builder::Timestamp(b, _) => b.append_value(ms_from_rfc3339(v).ok_or_else(|| bad("an RFC 3339 date"))?),
            }
            Ok(())
        }

        fn finish(&mut self) -> ArrayRef {
            match self {
                Builder::Text(b) => Arc::new(b.finish()),
                Builder::Boolean(b) => Arc::new(b.finish()),
                Builder::Integer(b) => Arc::new(b.finish()),
                Builder::Timestamp(b, zone) => Arc::new(b.finish().with_timezone_opt(zone.clone())),
            }
        }
    }

    enum Sink<W: Write + Send> {
        Parquet(parquet::arrow::ArrowWriter<W>),
        Orc(orc_rust::ArrowWriter<W>),
    }

    /// One data file being written: its column builders and its format's writer.
    struct FileWriter<W: Write + Send> {
        schema: SchemaRef,
        builders: Vec<Builder>,
        rows: usize,
        sink: Sink<W>,
    }

    impl<W: Write + Send> FileWriter<W> {
        fn new(out: W, format: FileFormat, schema: SchemaRef) -> io::Result<FileWriter<W>> {
            let sink = match format {
                FileFormat::Parquet => {
                    use parquet::arrow::arrow_writer::ArrowWriterOptions;
                    use parquet::basic::Compression;
                    use parquet::file::properties::WriterProperties;
                    let props = WriterProperties::builder()
                        .set_compression(Compression::SNAPPY)
                        .set_max_row_group_row_count(Some(GROUP_ROWS))
                        .build();
                    // No embedded Arrow schema: S3's files have none, so the reader sees
                    // the Parquet types alone.
                    let options = ArrowWriterOptions::new().with_properties(props).with_skip_arrow_metadata(true);
                    Sink::Parquet(
                        parquet::arrow::ArrowWriter::try_new_with_options(out, schema.clone(), options)
                            .map_err(io::Error::other)?,
                    )
                }
                _ => Sink::Orc(
                    orc_rust::ArrowWriterBuilder::new(out, schema.clone())
                        .with_compression(orc_rust::compression::CompressionType::Zlib)
                        .with_batch_size(GROUP_ROWS)
                        .try_build()
                        .map_err(io::Error::other)?,
                ),
            };
            let builders = schema
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Boolean => Builder::Boolean(BooleanBuilder::new()),
                    DataType::Int64 => Builder::Integer(Int64Builder::new()),
                    DataType::Timestamp(_, zone) => {
                        Builder::Timestamp(TimestampMillisecondBuilder::new(), zone.clone())
                    }
                    _ => Builder::Text(StringBuilder::new()),
                })
                .collect();
            Ok(FileWriter { schema, builders, rows: 0, sink })
        }

        fn push(&mut self, row: &[String]) -> io::Result<()> {
            if row.len() != self.builders.len() {
                return Err(io::Error::other(format!(
                    "a row of {} fields for {} columns",
                    row.len(),
                    self.builders.len()
                )));
            }
            for (b, v) in self.builders.iter_mut().zip(row) {
                b.push(v)?;
            }
            self.rows += 1;
            if self.rows == BATCH_ROWS {
                self.flush()?;
            }
            Ok(())
        }

        fn flush(&mut self) -> io::Result<()> {
            if self.rows == 0 {
                return Ok(());
            }
            let columns: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
            let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(io::Error::other)?;
            match &mut self.sink {
                Sink::Parquet(w) => w.write(&batch).map_err(io::Error::other)?,
                Sink::Orc(w) => w.write(&batch).map_err(io::Error::other)?,
            }
            self.rows = 0;
            Ok(())
        }

        fn close(mut self) -> io::Result<()> {
            self.flush()?;
            match self.sink {
                Sink::Parquet(w) => w.into_inner().map_err(io::Error::other)?.flush(),
                Sink::Orc(w) => w.close().map_err(io::Error::other),
            }
        }
    }

    /// Write `rows` (CSV text, `columns` order) to the files `names`, dealt out in turn.
    pub fn write_files(
        data_dir: &Path,
        names: &[String],
        format: FileFormat,
        columns: &[&str],
        rows: impl IntoIterator<Item = Vec<String>>,
    ) -> io::Result<()> {
        let schema = arrow_schema(format, columns);
        let mut outs = names
            .iter()
            .map(|name| Ok(BufWriter::with_capacity(256 * 1024, std::fs::File::create(data_dir.join(name))?)))
            .collect::<io::Result<Vec<_>>>()?;
        let mut writers =
            outs.iter_mut().map(|out| FileWriter::new(out, format, schema.clone())).collect::<io::Result<Vec<_>>>()?;
        let n = writers.len();
        for (i, row) in rows.into_iter().enumerate() {
            writers[i % n].push(&row)?;
        }
        writers.into_iter().try_for_each(FileWriter::close)?;
        // orc-rust's writer does not flush: a write error would otherwise go unseen.
        outs.iter_mut().try_for_each(Write::flush)
    }

    /// One whole data file in memory, for fixtures.
    pub fn data_file(format: FileFormat, columns: &[&str], rows: &[Vec<String>]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut w = FileWriter::new(&mut out, format, arrow_schema(format, columns))?;
        for row in rows {
            w.push(row)?;
        }
        w.close()?;
        Ok(out)
    }
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

    #[test]
    fn snake_case_names_are_s3s() {
        let snake: Vec<String> = FULL_SCHEMA.split(", ").map(columnar::snake_case).collect();
        assert_eq!(&snake[..3], ["bucket", "key", "version_id"]);
        assert!(snake.contains(&"e_tag".to_string()));
        assert!(snake.contains(&"object_lock_legal_hold_status".to_string()));
        assert!(snake.contains(&"intelligent_tiering_access_tier".to_string()));
    }
}
