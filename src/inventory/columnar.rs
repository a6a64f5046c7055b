//! Parquet and ORC data files, read into the same [`InventoryRow`]s as CSV.
//!
//! Both formats keep their index (the footer) at the end of the file and are read by
//! seeking, so a data file must be a local file: a local one is read where it is; an
//! `s3://` one is first spooled to an unnamed temporary file (deleted when closed). Its size
//! and MD5 are checked on the whole file *before* a row is decoded (a corrupt footer could
//! otherwise decode to plausible rows). Then only the columns the manifest lists and rekey
//! uses are read, one Parquet row group or ORC stripe at a time, in record batches of
//! [`BATCH_ROWS`] rows: memory holds one batch (and, for ORC, the compressed stripe), never
//! the file's rows.
//!
//! Columns are found by name (snake_case, docs/s3-facts.md §1.5), and their Arrow types
//! checked once per file: text columns must be strings, `is_latest` and
//! `is_delete_marker` booleans, `size` an integer, and the two dates timestamps of any
//! unit, with or without a time zone (a time zone-less one is taken as UTC, which is what
//! S3 writes). Keys are used as they are: unlike CSV, these formats do not URL-encode them.
//! Each row then goes through [`RowDecoder::finish`], the rules CSV rows follow too.

use super::keys::check_key;
use super::row::{InventoryRow, RawRow, RowDecoder, RowError};
use super::scan::BadRow;
use super::schema::{Naming, Schema};
use super::source::{BlobStore, DataFile, DataFormat, Inventory, Location};
use super::InventoryError;
use crate::units::rfc3339_from_ms;
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Int64Type, SchemaRef, TimeUnit};
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};

/// Rows per record batch: large enough that per-batch work vanishes, small enough that a
/// batch of 18 short columns stays in the low megabytes.
pub const BATCH_ROWS: usize = 8192;

/// What a column must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Boolean,
    Integer,
    Timestamp,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Text => "a string",
            Kind::Boolean => "a boolean",
            Kind::Integer => "an integer",
            Kind::Timestamp => "a timestamp",
        }
    }

    fn accepts(self, t: &DataType) -> bool {
        match (self, t) {
            (Kind::Text, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => true,
            (Kind::Text, DataType::Dictionary(_, v)) => Kind::Text.accepts(v),
            (Kind::Boolean, DataType::Boolean) => true,
            (
                Kind::Integer,
                DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64,
            ) => true,
            (Kind::Timestamp, DataType::Timestamp(..)) => true,
            _ => false,
        }
    }
}

/// The kind of each column of `schema` rekey reads, by position.
fn kinds(schema: &Schema) -> Vec<(usize, Kind)> {
    let mut out = vec![(schema.bucket, Kind::Text), (schema.key, Kind::Text)];
    let typed = [
        (schema.version_id, Kind::Text),
        (schema.is_latest, Kind::Boolean),
        (schema.is_delete_marker, Kind::Boolean),
        (schema.size, Kind::Integer),
        (schema.last_modified, Kind::Timestamp),
        (schema.etag, Kind::Text),
        (schema.storage_class, Kind::Text),
        (schema.encryption, Kind::Text),
        (schema.lock_retain_until, Kind::Timestamp),
        (schema.lock_mode, Kind::Text),
        (schema.legal_hold, Kind::Text),
        (schema.it_tier, Kind::Text),
        (schema.bucket_key_status, Kind::Text),
        (schema.checksum_algorithm, Kind::Text),
    ];
    out.extend(typed.into_iter().filter_map(|(c, k)| c.map(|c| (c, k))));
    out
}

/// Read one Parquet or ORC data file of `inv`, handing each row to `per_row`; returns
/// (rows, bytes of the file).
pub(super) fn read_file<S, F>(
    inv: &Inventory,
    file: &DataFile,
    blobs: Option<&dyn BlobStore>,
    failed: &AtomicBool,
    state: &mut S,
    per_row: &F,
) -> Result<(u64, u64), InventoryError>
where
    F: Fn(&mut S, Result<InventoryRow, BadRow>) -> Result<(), InventoryError>,
{
    let name = file.location.to_string();
    let (local, bytes) = verified_local_file(inv, file, blobs)?;
    // Only the columns the manifest lists and rekey reads; unknown ones stay unread.
    let wanted: Vec<String> = inv.decoder.schema.used().into_iter().map(|(_, n)| n.to_string()).collect();
    let mut batches = match file.format {
        DataFormat::Parquet => parquet_batches(&name, local, &wanted)?,
        DataFormat::Orc => orc_batches(&name, local, &wanted)?,
        DataFormat::Csv | DataFormat::CsvGzip => unreachable!("CSV files are read by scan"),
    };
    let decoder = BatchDecoder::new(inv, &name, &batches.schema, &wanted)?;
    let mut rows = 0u64;
    for batch in &mut batches.batches {
        if failed.load(Ordering::Relaxed) {
            return Err(InventoryError::Aborted);
        }
        let batch =
            batch.map_err(|error| InventoryError::Columnar { file: name.clone(), format: batches.format, error })?;
        rows = decoder.decode(&batch, rows, state, per_row)?;
    }
    Ok((rows, bytes))
}

/// The data file as a local file whose size and MD5 have been checked (when verifying),
/// positioned at its start, and its length.
fn verified_local_file(
    inv: &Inventory,
    file: &DataFile,
    blobs: Option<&dyn BlobStore>,
) -> Result<(std::fs::File, u64), InventoryError> {
    let name = file.location.to_string();
    // Checks the size the file claims before a byte is read.
    let mut raw = inv.open_file(file, blobs)?;
    let hashing = inv.verify && file.md5.is_some();
    match &file.location {
        Location::Local(path) => {
            if hashing {
                raw.finish()?;
            }
            let f = std::fs::File::open(path).map_err(|error| InventoryError::Io { path: name.clone(), error })?;
            let len = f.metadata().map_err(|error| InventoryError::Io { path: name, error })?.len();
            Ok((f, len))
        }
        Location::S3 { .. } => {
            let io = |error| InventoryError::Io { path: format!("temporary copy of {name}"), error };
            let mut spool = tempfile::tempfile().map_err(io)?;
            std::io::copy(&mut raw, &mut spool).map_err(|error| InventoryError::Read { file: name.clone(), error })?;
            let len = raw.finish()?;
            if let (true, Some(expected)) = (inv.verify, file.size) {
                if expected != len {
                    return Err(InventoryError::SizeMismatch { file: name, expected, actual: len });
                }
            }
            spool.seek(SeekFrom::Start(0)).map_err(io)?;
            Ok((spool, len))
        }
    }
}

/// A file's record batches and the schema they share.
struct Batches {
    format: &'static str,
    schema: SchemaRef,
    batches: Box<dyn Iterator<Item = Result<RecordBatch, String>>>,
}

/// Check the first and last bytes of a file for a format's magic number, so a CSV or gzip
/// file in the wrong place, or a cut-off download, is named as such.
fn check_magic(
    name: &str,
    f: &mut std::fs::File,
    format: &str,
    magic: &[u8],
    at_end: bool,
) -> Result<(), InventoryError> {
    let io = |error| InventoryError::Io { path: name.to_string(), error };
    let len = f.metadata().map_err(io)?.len();
    let mut head = vec![0u8; magic.len().min(len as usize)];
    f.read_exact(&mut head).map_err(io)?;
    if head != magic {
        let looks_like = match head.as_slice() {
            [0x1f, 0x8b, ..] => " (it is gzip: a CSV data file?)",
            [] => " (it is empty)",
            h if h.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) => " (it is text: a CSV data file?)",
            _ => "",
        };
        let article = if format.starts_with(['A', 'E', 'I', 'O', 'U']) { "an" } else { "a" };
        let reason = format!(
            "not {article} {format} file: it does not start with the magic number {}{looks_like}",
            String::from_utf8_lossy(magic)
        );
        return Err(InventoryError::NotColumnar { file: name.into(), reason });
    }
    if at_end {
        let mut tail = vec![0u8; magic.len()];
        let short = len < 2 * magic.len() as u64 || {
            f.seek(SeekFrom::End(-(magic.len() as i64))).map_err(io)?;
            f.read_exact(&mut tail).map_err(io)?;
            tail != magic
        };
        if short {
            let reason = format!(
                "truncated {format} file: it does not end with the magic number {} ({len} bytes)",
                String::from_utf8_lossy(magic)
            );
            return Err(InventoryError::NotColumnar { file: name.into(), reason });
        }
    }
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(())
}

/// A Parquet file's batches, projected to the `wanted` columns it has, a row group at a time.
fn parquet_batches(name: &str, mut f: std::fs::File, wanted: &[String]) -> Result<Batches, InventoryError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ProjectionMask;
    check_magic(name, &mut f, "Parquet", b"PAR1", true)?;
    let err = |e: parquet::errors::ParquetError| InventoryError::Columnar {
        file: name.into(),
        format: "Parquet",
        error: parquet_message(e),
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(err)?;
    let roots: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, fd)| wanted.contains(fd.name()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let rows = builder.metadata().file_metadata().num_rows();
    let builder = builder.with_projection(mask).with_batch_size(BATCH_ROWS.min(rows.max(1) as usize));
    let reader = builder.build().map_err(err)?;
    let schema = arrow::record_batch::RecordBatchReader::schema(&reader);
    let batches = reader.map(|b| b.map_err(|e| e.to_string()));
    Ok(Batches { format: "Parquet", schema, batches: Box::new(batches) })
}

/// An ORC file ends with its postscript, whose length is the last byte and which ends with
/// the magic number `ORC` again: a file cut short ends elsewhere.
fn check_orc_postscript(name: &str, f: &mut std::fs::File) -> Result<(), InventoryError> {
    let io = |error| InventoryError::Io { path: name.to_string(), error };
    let len = f.metadata().map_err(io)?.len();
    let mut last = [0u8; 1];
    f.seek(SeekFrom::End(-1)).map_err(io)?;
    f.read_exact(&mut last).map_err(io)?;
    let ps_len = u64::from(last[0]);
    let mut magic = [0u8; 3];
    let intact = ps_len >= 3 && len > ps_len + 3 && {
        f.seek(SeekFrom::Start(len - 1 - 3)).map_err(io)?;
        f.read_exact(&mut magic).map_err(io)?;
        &magic == b"ORC"
    };
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    if !intact {
        let reason = format!("truncated ORC file: it does not end with a postscript ending in ORC ({len} bytes)");
        return Err(InventoryError::NotColumnar { file: name.into(), reason });
    }
    Ok(())
}

/// parquet's messages start "Parquet error: "; the error line already says Parquet.
fn parquet_message(e: parquet::errors::ParquetError) -> String {
    use parquet::errors::ParquetError;
    match e {
        ParquetError::General(m) => m,
        ParquetError::EOF(m) => format!("unexpected end of file: {m}"),
        other => other.to_string(),
    }
}

/// An ORC file's batches, projected to the `wanted` columns it has, a stripe at a time.
fn orc_batches(name: &str, mut f: std::fs::File, wanted: &[String]) -> Result<Batches, InventoryError> {
    use orc_rust::projection::ProjectionMask;
    use orc_rust::ArrowReaderBuilder;
    check_magic(name, &mut f, "ORC", b"ORC", false)?;
    check_orc_postscript(name, &mut f)?;
    let err = |e: orc_rust::error::OrcError| InventoryError::Columnar {
        file: name.into(),
        format: "ORC",
        error: e.to_string(),
    };
    let builder = ArrowReaderBuilder::try_new(f).map_err(err)?;
    let present: Vec<&str> = builder
        .file_metadata()
        .root_data_type()
        .children()
        .iter()
        .map(|c| c.name())
        .filter(|n| wanted.iter().any(|w| w == n))
        .collect();
    let mask = ProjectionMask::named_roots(builder.file_metadata().root_data_type(), &present);
    let reader = builder.with_projection(mask).with_batch_size(BATCH_ROWS).build();
    let schema = arrow::record_batch::RecordBatchReader::schema(&reader);
    let batches = reader.map(|b| b.map_err(|e| e.to_string()));
    Ok(Batches { format: "ORC", schema, batches: Box::new(batches) })
}

/// One file's columns resolved and type-checked: decodes its batches into rows.
struct BatchDecoder<'a> {
    file: &'a str,
    /// Positions in the projected batch, names as the file spells them.
    decoder: RowDecoder,
    kinds: Vec<(usize, Kind)>,
}

impl<'a> BatchDecoder<'a> {
    fn new(inv: &Inventory, file: &'a str, schema: &SchemaRef, wanted: &[String]) -> Result<Self, InventoryError> {
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        if let Some(missing) = wanted.iter().find(|w| !names.contains(w)) {
            return Err(InventoryError::MissingColumn {
                file: file.into(),
                column: missing.clone(),
                in_manifest: true,
            });
        }
        let file_schema = Schema::from_names_in(names, Naming::Snake).map_err(|e| match e {
            super::schema::SchemaError::Missing(column) => {
                InventoryError::MissingColumn { file: file.into(), column: column.into(), in_manifest: false }
            }
            other => InventoryError::Columnar { file: file.into(), format: "columnar", error: other.to_string() },
        })?;
        let kinds = kinds(&file_schema);
        for &(i, kind) in &kinds {
            let t = schema.field(i).data_type();
            if !kind.accepts(t) {
                return Err(InventoryError::ColumnType {
                    file: file.into(),
                    column: file_schema.name(i).into(),
                    found: t.to_string(),
                    expected: kind.expected(),
                });
            }
        }
        let decoder =
            RowDecoder { schema: file_schema, assume_encryption: inv.decoder.assume_encryption, batch_ops: false };
        Ok(BatchDecoder { file, decoder, kinds })
    }

    /// Hand every row of `batch` to `per_row`; `before` rows of the file came earlier.
    /// Returns the rows read so far.
    fn decode<S, F>(&self, batch: &RecordBatch, before: u64, state: &mut S, per_row: &F) -> Result<u64, InventoryError>
    where
        F: Fn(&mut S, Result<InventoryRow, BadRow>) -> Result<(), InventoryError>,
    {
        let cols = self.columns(batch)?;
        let s = &self.decoder.schema;
        let text = |c: Option<usize>, i: usize| c.and_then(|c| cols[c].text(i));
        let boolean = |c: Option<usize>, i: usize| c.and_then(|c| cols[c].boolean(i));
        let number = |c: Option<usize>, i: usize| c.and_then(|c| cols[c].number(i));
        for i in 0..batch.num_rows() {
            let row = before + i as u64 + 1;
            let decoded = (|| {
                let key = text(Some(s.key), i).unwrap_or_default();
                check_key(key).map_err(|e| RowError { field: s.name(s.key).into(), reason: e.to_string() })?;
                let size = match number(s.size, i) {
                    Some(n) if n < 0 => {
                        let reason = format!("{n} is not a whole number of bytes");
                        return Err(RowError { field: s.name(s.size.unwrap_or(usize::MAX)).into(), reason });
                    }
                    n => n.map(|n| n as u64),
                };
                self.decoder.finish(RawRow {
                    bucket: text(Some(s.bucket), i),
                    key: key.to_string(),
                    version_id: text(s.version_id, i),
                    is_latest: boolean(s.is_latest, i),
                    is_delete_marker: boolean(s.is_delete_marker, i),
                    size,
                    last_modified_ms: number(s.last_modified, i),
                    etag: text(s.etag, i),
                    storage_class: text(s.storage_class, i),
                    encryption: text(s.encryption, i),
                    lock_retain_until: number(s.lock_retain_until, i).map(inventory_date),
                    lock_mode: text(s.lock_mode, i),
                    legal_hold: text(s.legal_hold, i),
                    it_tier: text(s.it_tier, i),
                    bucket_key_status: text(s.bucket_key_status, i),
                    checksum_algorithm: text(s.checksum_algorithm, i),
                })
            })();
            let decoded = decoded.map_err(|error| BadRow { file: self.file.to_string(), row, line: None, error });
            per_row(state, decoded)?;
        }
        Ok(before + batch.num_rows() as u64)
    }

    /// The batch's columns in the shapes the row loop reads: strings as UTF-8 arrays,
    /// integers as i64, timestamps as i64 milliseconds since the epoch.
    fn columns(&self, batch: &RecordBatch) -> Result<Vec<Column>, InventoryError> {
        let mut cols: Vec<Column> = (0..batch.num_columns()).map(|_| Column::Unread).collect();
        let strict = CastOptions { safe: false, ..CastOptions::default() };
        for &(i, kind) in &self.kinds {
            let array = batch.column(i);
            let name = self.decoder.schema.name(i);
            let cast_err = |e: arrow::error::ArrowError| InventoryError::Columnar {
                file: self.file.into(),
                format: "columnar",
                error: format!("column {name}: {e}"),
            };
            cols[i] = match kind {
                Kind::Text => Column::Text(to_strings(array, &strict).map_err(cast_err)?),
                Kind::Boolean => Column::Boolean(array.as_boolean().clone()),
                Kind::Integer => Column::Number(
                    cast_with_options(array, &DataType::Int64, &strict)
                        .map_err(cast_err)?
                        .as_primitive::<Int64Type>()
                        .clone(),
                ),
                Kind::Timestamp => Column::Number(timestamp_ms(array, &strict).map_err(cast_err)?),
            };
        }
        Ok(cols)
    }
}

/// A date as S3 Inventory's CSV spells it, `2024-05-06T22:37:48.000Z` (milliseconds always
/// shown), so a Parquet or ORC report stores the same text a CSV one of the bucket does.
fn inventory_date(ms: i64) -> String {
    let text = rfc3339_from_ms(ms);
    let Some(body) = text.strip_suffix('Z') else { return text };
    let (whole, fraction) = body.split_once('.').unwrap_or((body, ""));
    format!("{whole}.{:0<3.3}Z", fraction)
}

fn to_strings(array: &ArrayRef, strict: &CastOptions) -> Result<StringArray, arrow::error::ArrowError> {
    if let Some(s) = array.as_string_opt::<i32>() {
        return Ok(s.clone());
    }
    Ok(cast_with_options(array, &DataType::Utf8, strict)?.as_string::<i32>().clone())
}

/// A timestamp column of any unit as milliseconds since the epoch, rounded down. The
/// stored values are UTC whatever the column's time zone says (a zone only changes how
/// they are shown), so the zone is not applied.
fn timestamp_ms(array: &ArrayRef, strict: &CastOptions) -> Result<Int64Array, arrow::error::ArrowError> {
    let DataType::Timestamp(unit, _) = array.data_type() else {
        unreachable!("checked by Kind::accepts");
    };
    let raw = cast_with_options(array, &DataType::Int64, strict)?;
    let raw = raw.as_primitive::<Int64Type>();
    Ok(match unit {
        TimeUnit::Second => raw.unary(|s: i64| s.saturating_mul(1000)),
        TimeUnit::Millisecond => raw.clone(),
        TimeUnit::Microsecond => raw.unary(|us: i64| us.div_euclid(1000)),
        TimeUnit::Nanosecond => raw.unary(|ns: i64| ns.div_euclid(1_000_000)),
    })
}

/// One column of a batch, ready for the row loop.
enum Column {
    Unread,
    Text(StringArray),
    Boolean(BooleanArray),
    Number(Int64Array),
}

impl Column {
    /// Null and the empty string are both absent, as an empty CSV field is.
    fn text(&self, i: usize) -> Option<&str> {
        match self {
            Column::Text(a) if a.is_valid(i) => Some(a.value(i)).filter(|v| !v.is_empty()),
            _ => None,
        }
    }

    fn boolean(&self, i: usize) -> Option<bool> {
        match self {
            Column::Boolean(a) if a.is_valid(i) => Some(a.value(i)),
            _ => None,
        }
    }

    fn number(&self, i: usize) -> Option<i64> {
        match self {
            Column::Number(a) if a.is_valid(i) => Some(a.value(i)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::scan::scan;
    use crate::inventory::{EncryptionStatus, OpenOptions};
    use arrow::array::{
        DictionaryArray, LargeStringArray, StringViewArray, TimestampMicrosecondArray, TimestampNanosecondArray,
        TimestampSecondArray, UInt32Array,
    };
    use arrow::datatypes::{Field, Int32Type, Schema as ArrowSchema};
    use std::sync::Arc;

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/real/real-orcabus-filemanager");

    fn rows_of(inv: &Inventory) -> Result<Vec<InventoryRow>, InventoryError> {
        let (states, _) = scan(inv, None, 2, Vec::new, |rows: &mut Vec<InventoryRow>, row| {
            rows.push(row?);
            Ok(())
        })?;
        let mut rows: Vec<InventoryRow> = states.into_iter().flatten().collect();
        rows.sort_by(|a, b| (&a.key, &a.version_id).cmp(&(&b.key, &b.version_id)));
        Ok(rows)
    }

    fn open_sample(manifest: &str) -> Inventory {
        let opts = OpenOptions { verify: true, ..OpenOptions::default() };
        Inventory::open(&format!("{SAMPLES}/{manifest}"), &opts, None).unwrap()
    }

    #[test]
    fn real_parquet_and_orc_rows_equal_the_csv_rows() {
        let csv = rows_of(&open_sample("csv_inventory_manifest.json")).unwrap();
        assert_eq!(csv.len(), 5);
        for manifest in ["parquet_inventory_manifest.json", "orc_inventory_manifest.json"] {
            let inv = open_sample(manifest);
            assert!(matches!(inv.files[0].format, DataFormat::Parquet | DataFormat::Orc));
            assert_eq!(rows_of(&inv).unwrap(), csv, "{manifest}");
        }
    }

    /// What docs/s3-facts.md §1.5 says of the real samples: Parquet from parquet-mr, one row
    /// group, Snappy; ORC with ZLIB; absent values as nulls, not empty strings.
    #[test]
    fn real_samples_are_as_s3_facts_describes_them() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let f = std::fs::File::open(format!("{SAMPLES}/parquet_inventory.parquet")).unwrap();
        let meta = SerializedFileReader::new(f).unwrap().metadata().clone();
        assert!(meta.file_metadata().created_by().unwrap().starts_with("parquet-mr version 1.12.2"));
        assert_eq!(meta.num_row_groups(), 1);
        assert!(meta.row_group(0).columns().iter().all(|c| c.compression() == parquet::basic::Compression::SNAPPY));
        let orc =
            orc_rust::ArrowReaderBuilder::try_new(std::fs::File::open(format!("{SAMPLES}/orc_inventory.orc")).unwrap())
                .unwrap();
        let codec = orc.file_metadata().compression().map(|c| c.compression_type().to_string());
        assert_eq!(codec.as_deref(), Some("Zlib"));
        for (name, mut batches) in [
            (
                "parquet",
                parquet_batches(
                    "p",
                    std::fs::File::open(format!("{SAMPLES}/parquet_inventory.parquet")).unwrap(),
                    &["version_id".into(), "size".into(), "last_modified_date".into()],
                )
                .unwrap(),
            ),
            (
                "orc",
                orc_batches(
                    "o",
                    std::fs::File::open(format!("{SAMPLES}/orc_inventory.orc")).unwrap(),
                    &["version_id".into(), "size".into(), "last_modified_date".into()],
                )
                .unwrap(),
            ),
        ] {
            let batch = batches.batches.next().unwrap().unwrap();
            let version = batch.column_by_name("version_id").unwrap();
            let size = batch.column_by_name("size").unwrap();
            // Rows 1 and 2 are null versions; row 4 is a delete marker (no size).
            assert_eq!((version.null_count(), size.null_count()), (2, 1), "{name}");
            assert!(version.is_null(0) && version.is_null(1) && size.is_null(3), "{name}");
            let t = batch.column_by_name("last_modified_date").unwrap().data_type().clone();
            let want = if name == "orc" { "Timestamp(ns)" } else { "Timestamp(ms, \"UTC\")" };
            assert_eq!(t.to_string(), want, "{name}");
        }
    }

    /// One Parquet data file holding `columns`, read as an inventory whose manifest lists
    /// `listed` (snake_case names).
    fn read_parquet(columns: Vec<(&str, ArrayRef)>, listed: &str) -> Result<Vec<InventoryRow>, InventoryError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part-0.parquet");
        let fields: Vec<Field> = columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect();
        let batch =
            RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns.into_iter().map(|(_, a)| a).collect())
                .unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let inv = Inventory {
            source: "test".into(),
            source_bucket: None,
            created_ms: None,
            decoder: RowDecoder {
                schema: Schema::parse_columnar(&format!("struct<{listed}>")).unwrap(),
                assume_encryption: Some(EncryptionStatus::SseS3),
                batch_ops: false,
            },
            files: vec![DataFile {
                location: Location::Local(path),
                size: None,
                md5: None,
                format: DataFormat::Parquet,
            }],
            verify: false,
            listing: None,
        };
        rows_of(&inv)
    }

    fn strings(v: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(v.to_vec()))
    }

    const T: i64 = 1_715_035_068_123; // 2024-05-06T22:37:48.123Z

    #[test]
    fn timestamps_of_every_unit_with_or_without_a_zone() {
        let columns = vec![
            ("bucket", strings(&[Some("b"); 4])),
            ("key", strings(&[Some("k1"), Some("k2"), Some("k3"), Some("k4")])),
            (
                "last_modified_date",
                Arc::new(TimestampMicrosecondArray::from(vec![T * 1000 + 999; 4]).with_timezone("+00:00")) as ArrayRef,
            ),
            (
                "object_lock_retain_until_date",
                Arc::new(TimestampNanosecondArray::from(vec![
                    Some(T * 1_000_000),
                    None,
                    Some(-1),
                    Some((T / 1000) * 1_000_000_000),
                ])) as ArrayRef,
            ),
        ];
        let rows = read_parquet(
            columns,
            "bucket:string,key:string,last_modified_date:timestamp,object_lock_retain_until_date:timestamp",
        )
        .unwrap();
        assert!(rows.iter().all(|r| r.last_modified_ms == Some(T)), "{rows:?}");
        let until: Vec<Option<&str>> = rows.iter().map(|r| r.lock_retain_until.as_deref()).collect();
        assert_eq!(
            until,
            [
                Some("2024-05-06T22:37:48.123Z"),
                None,
                Some("1969-12-31T23:59:59.999Z"),
                Some("2024-05-06T22:37:48.000Z")
            ]
        );
        let seconds = vec![
            ("bucket", strings(&[Some("b")])),
            ("key", strings(&[Some("k")])),
            (
                "last_modified_date",
                Arc::new(TimestampSecondArray::from(vec![T / 1000]).with_timezone("UTC")) as ArrayRef,
            ),
        ];
        let rows = read_parquet(seconds, "bucket:string,key:string,last_modified_date:timestamp").unwrap();
        assert_eq!(rows[0].last_modified_ms, Some(T / 1000 * 1000));
    }

    #[test]
    fn keys_are_taken_as_they_are_and_any_string_encoding_reads() {
        let keys = ["a+b%2Bc%25.txt", "a b+c%.txt", "données/ü, \"q\"\nline"];
        let dict: DictionaryArray<Int32Type> = vec!["SSE-S3", "NOT-SSE", "SSE-S3"].into_iter().collect();
        let columns = vec![
            ("unknown_future_field", strings(&[Some("x"); 3])),
            ("bucket", Arc::new(LargeStringArray::from(vec!["b"; 3])) as ArrayRef),
            ("key", Arc::new(StringViewArray::from(keys.to_vec())) as ArrayRef),
            ("encryption_status", Arc::new(dict) as ArrayRef),
            ("size", Arc::new(UInt32Array::from(vec![1, 2, 3])) as ArrayRef),
            ("storage_class", strings(&[Some(""), None, Some("GLACIER")])),
        ];
        let rows =
            read_parquet(columns, "bucket:string,key:string,encryption_status:string,size:bigint,storage_class:string")
                .unwrap();
        let mut want: Vec<&str> = keys.to_vec();
        want.sort();
        assert_eq!(rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), want);
        let plain = rows.iter().find(|r| r.key == "a+b%2Bc%25.txt").unwrap();
        assert_eq!((plain.size, plain.encryption, plain.storage_class), (Some(1), Some(EncryptionStatus::SseS3), None));
        let cold = rows.iter().find(|r| r.key.starts_with("données")).unwrap();
        assert_eq!(cold.storage_class, Some(crate::inventory::StorageClass::Glacier));
    }

    #[test]
    fn bad_columns_and_rows_name_the_file_and_column() {
        let key = |v: &[Option<&str>]| ("key", strings(v));
        let bucket = || ("bucket", strings(&[Some("b")]));
        let err = |columns, listed| read_parquet(columns, listed).unwrap_err().to_string();
        let e = err(vec![bucket(), ("size", strings(&[Some("10")]))], "bucket:string,size:bigint,key:string");
        assert!(e.ends_with("part-0.parquet: has no column 'key', which the manifest's fileSchema lists"), "{e}");
        let e = err(
            vec![bucket(), key(&[Some("k")]), ("size", strings(&[Some("10")]))],
            "bucket:string,key:string,size:bigint",
        );
        assert!(e.ends_with("part-0.parquet: column size is Utf8, expected an integer"), "{e}");
        let e = err(
            vec![bucket(), key(&[Some("k")]), ("is_latest", strings(&[Some("true")]))],
            "bucket:string,key:string,is_latest:boolean",
        );
        assert!(e.ends_with("part-0.parquet: column is_latest is Utf8, expected a boolean"), "{e}");
        let e = err(
            vec![bucket(), key(&[Some("k")]), ("last_modified_date", Arc::new(Int64Array::from(vec![T])) as ArrayRef)],
            "bucket:string,key:string,last_modified_date:timestamp",
        );
        assert!(e.ends_with("column last_modified_date is Int64, expected a timestamp"), "{e}");
        let e = err(vec![bucket(), key(&[Some("")])], "bucket:string,key:string");
        assert!(e.ends_with("part-0.parquet: row 1: field key: key is empty"), "{e}");
        let e = err(vec![bucket(), key(&[None])], "bucket:string,key:string");
        assert!(e.ends_with("part-0.parquet: row 1: field key: key is empty"), "{e}");
        let long = "k".repeat(1025);
        let e = err(vec![bucket(), key(&[Some(&long)])], "bucket:string,key:string");
        assert!(e.ends_with("row 1: field key: key is 1025 bytes long; S3 keys are at most 1,024 bytes"), "{e}");
        let e = err(
            vec![bucket(), key(&[Some("k")]), ("size", Arc::new(Int64Array::from(vec![-5])) as ArrayRef)],
            "bucket:string,key:string,size:bigint",
        );
        assert!(e.ends_with("row 1: field size: -5 is not a whole number of bytes"), "{e}");
        let e = err(
            vec![bucket(), key(&[Some("k")]), ("encryption_status", strings(&[Some("AES256")]))],
            "bucket:string,key:string,encryption_status:string",
        );
        assert!(e.ends_with("row 1: field encryption_status: unknown encryption status 'AES256' (expected SSE-S3, SSE-KMS, DSSE-KMS, SSE-C or NOT-SSE)"), "{e}");
    }

    #[test]
    fn files_that_are_not_parquet_or_orc_are_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::read(format!("{SAMPLES}/parquet_inventory.parquet")).unwrap();
        let cases: [(&str, Vec<u8>, &str); 5] = [
            (
                "csv",
                b"\"b\",\"k\"\n".to_vec(),
                "not a Parquet file: it does not start with the magic number PAR1 (it is text: a CSV data file?)",
            ),
            ("gzip", vec![0x1f, 0x8b, 8, 0, 0, 0], "(it is gzip: a CSV data file?)"),
            ("empty", Vec::new(), "(it is empty)"),
            (
                "truncated",
                real[..real.len() - 100].to_vec(),
                "truncated Parquet file: it does not end with the magic number PAR1",
            ),
            ("tiny", b"PAR1".to_vec(), "truncated Parquet file"),
        ];
        for (name, bytes, want) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let f = std::fs::File::open(&path).unwrap();
            let e = parquet_batches(name, f, &["key".into()]).err().unwrap().to_string();
            assert!(e.starts_with(&format!("{name}: ")) && e.contains(want), "{name}: {e}");
        }
        let real_orc = std::fs::read(format!("{SAMPLES}/orc_inventory.orc")).unwrap();
        let path = dir.path().join("cut.orc");
        std::fs::write(&path, &real_orc[..real_orc.len() / 2]).unwrap();
        let e = orc_batches("cut.orc", std::fs::File::open(&path).unwrap(), &["key".into()]).err().unwrap().to_string();
        assert!(e.starts_with("cut.orc: truncated ORC file: it does not end with a postscript ending in ORC"), "{e}");
        std::fs::write(&path, b"PAR1....PAR1").unwrap();
        let e = orc_batches("cut.orc", std::fs::File::open(&path).unwrap(), &["key".into()]).err().unwrap().to_string();
        assert_eq!(
            e,
            "cut.orc: not an ORC file: it does not start with the magic number ORC (it is text: a CSV data file?)"
        );
    }

    #[test]
    fn dates_are_spelt_as_the_csv_spells_them() {
        assert_eq!(inventory_date(T), "2024-05-06T22:37:48.123Z");
        assert_eq!(inventory_date(T - 123), "2024-05-06T22:37:48.000Z");
        assert_eq!(inventory_date(T - 3), "2024-05-06T22:37:48.120Z");
    }
}
