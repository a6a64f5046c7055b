//! Reading every data file of an inventory, several at once, in flat memory.
//!
//! Each worker thread takes the next unread file, streams it through
//! verify → gunzip → CSV → [`RowDecoder`] (Parquet and ORC files: verify, then record
//! batches, in [`super::columnar`]), and hands each row to the caller's `per_row` with the
//! worker's own state. Nothing holds more than one CSV record or one record batch per
//! worker; what the caller keeps (aggregates, a bounded channel to a writer) decides the
//! rest. The first error stops every worker at its next row (or batch).

use super::listing::{self, ListingSpec};
use super::row::{EncryptionStatus, InventoryRow};
use super::source::{BlobStore, DataFormat, Inventory};
use super::{InventoryError, RowError};
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// A row that could not be decoded, with where it is.
#[derive(Debug, Clone)]
pub struct BadRow {
    pub file: String,
    pub row: u64,
    /// CSV only.
    pub line: Option<u64>,
    pub error: RowError,
}

impl From<BadRow> for InventoryError {
    fn from(b: BadRow) -> Self {
        InventoryError::BadRow { file: b.file, row: b.row, line: b.line, error: b.error }
    }
}

/// Totals of one scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub files: usize,
    pub rows: u64,
    pub compressed_bytes: u64,
    /// A live listing's LIST requests (pages), and the HEADs of `--head-all`.
    pub list_requests: u64,
    pub head_requests: u64,
}

/// Read every file on up to `threads` threads. `make_state` builds one state per worker;
/// the states come back for the caller to merge.
pub fn scan<S, F>(
    inv: &Inventory,
    blobs: Option<&dyn BlobStore>,
    threads: usize,
    make_state: impl Fn() -> S + Sync,
    per_row: F,
) -> Result<(Vec<S>, ScanStats), InventoryError>
where
    S: Send,
    F: Fn(&mut S, Result<InventoryRow, BadRow>) -> Result<(), InventoryError> + Sync,
{
    if let Some(spec) = &inv.listing {
        let blobs = blobs.ok_or_else(|| InventoryError::BadSource {
            source_name: inv.source.clone(),
            reason: "no S3 client".into(),
        })?;
        let mut state = make_state();
        let stats = scan_listing(inv, spec, blobs, &mut state, &per_row)?;
        return Ok((vec![state], stats));
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let rows = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let first_error: Mutex<Option<InventoryError>> = Mutex::new(None);
    let threads = threads.clamp(1, inv.files.len().max(1));

    let states = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut state = make_state();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= inv.files.len() || failed.load(Ordering::Relaxed) {
                            break;
                        }
                        match read_file(inv, i, blobs, &failed, &mut state, &per_row) {
                            Ok((n, b)) => {
                                rows.fetch_add(n, Ordering::Relaxed);
                                bytes.fetch_add(b, Ordering::Relaxed);
                            }
                            Err(InventoryError::Aborted) => break,
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                first_error.lock().unwrap().get_or_insert(e);
                                break;
                            }
                        }
                    }
                    state
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("inventory worker panicked")).collect::<Vec<S>>()
    });
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    let stats = ScanStats {
        files: inv.files.len(),
        rows: rows.into_inner(),
        compressed_bytes: bytes.into_inner(),
        ..ScanStats::default()
    };
    Ok((states, stats))
}

/// Page through a live listing on the calling thread. A page is at most 1,000 entries;
/// S3 answers one page at a time per listing, so more threads would only wait.
fn scan_listing<S, F>(
    inv: &Inventory,
    spec: &ListingSpec,
    blobs: &dyn BlobStore,
    state: &mut S,
    per_row: &F,
) -> Result<ScanStats, InventoryError>
where
    F: Fn(&mut S, Result<InventoryRow, BadRow>) -> Result<(), InventoryError>,
{
    let assumed = inv.decoder.assume_encryption.unwrap_or(EncryptionStatus::SseS3);
    let mut stats = ScanStats::default();
    let mut cursor = None;
    loop {
        let page = blobs.list_page(spec, cursor.as_ref())?;
        stats.list_requests += 1;
        // With --head-all, every object version (not delete markers) is HEADed, a page at
        // a time, so the plan knows each one's encryption and lock.
        let heads = if spec.head_all {
            let wanted: Vec<(String, Option<String>)> = page
                .entries
                .iter()
                .filter(|e| !e.is_delete_marker)
                .map(|e| (e.key.clone(), e.version_id.clone().filter(|v| v != "null")))
                .collect();
            stats.head_requests += wanted.len() as u64;
            blobs.head_many(&spec.bucket, &wanted)?
        } else {
            Vec::new()
        };
        let mut heads = heads.into_iter();
        for entry in page.entries {
            let head = if spec.head_all && !entry.is_delete_marker { heads.next().flatten() } else { None };
            // Deleted between the LIST and the HEAD: nothing to plan.
            if spec.head_all && !entry.is_delete_marker && head.is_none() {
                continue;
            }
            let row = listing::to_row(&spec.bucket, entry, head.as_ref(), assumed)?;
            stats.rows += 1;
            per_row(state, Ok(row))?;
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(stats)
}

fn read_file<S, F>(
    inv: &Inventory,
    index: usize,
    blobs: Option<&dyn BlobStore>,
    failed: &AtomicBool,
    state: &mut S,
    per_row: &F,
) -> Result<(u64, u64), InventoryError>
where
    F: Fn(&mut S, Result<InventoryRow, BadRow>) -> Result<(), InventoryError>,
{
    let file = &inv.files[index];
    if matches!(file.format, DataFormat::Parquet | DataFormat::Orc) {
        return super::columnar::read_file(inv, file, blobs, failed, state, per_row);
    }
    let raw = inv.open_file(file, blobs)?;
    let name = raw.name.clone();
    // Large buffers: fewer syscalls, and csv's own buffer sees whole records. The chain is
    // unwrapped afterwards so the verifying reader can check what it saw.
    let (rows, raw) = if file.format == DataFormat::CsvGzip {
        let mut gz = MultiGzDecoder::new(std::io::BufReader::with_capacity(256 * 1024, raw));
        let rows = read_records(inv, &name, &mut gz, failed, state, per_row)?;
        (rows, gz.into_inner().into_inner())
    } else {
        let mut plain = std::io::BufReader::with_capacity(256 * 1024, raw);
        let rows = read_records(inv, &name, &mut plain, failed, state, per_row)?;
        (rows, plain.into_inner())
    };
    let bytes = raw.finish()?;
    Ok((rows, bytes))
}

fn read_records<S, F>(
    inv: &Inventory,
    name: &str,
    input: &mut impl Read,
    failed: &AtomicBool,
    state: &mut S,
    per_row: &F,
) -> Result<u64, InventoryError>
where
    F: Fn(&mut S, Result<InventoryRow, BadRow>) -> Result<(), InventoryError>,
{
    let probe = LineEndProbe { inner: input, style: LineEnd::Unknown, in_quotes: false, pending_cr: false, eof: false };
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).buffer_capacity(256 * 1024).from_reader(probe);
    let mut record = csv::ByteRecord::new();
    let mut row: u64 = 0;
    // Line numbers for CR-only files, which csv does not count (see `record_line`).
    let mut cr_line: u64 = 1;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(name, row, e)),
        }
        row += 1;
        // A UTF-8 BOM only ever precedes the first field of a file.
        if row == 1 {
            strip_bom(&mut record);
        }
        if row % 4096 == 0 && failed.load(Ordering::Relaxed) {
            return Err(InventoryError::Aborted);
        }
        let this_cr_line = cr_line;
        if !matches!(reader.get_ref().style, LineEnd::Lf | LineEnd::CrLf) {
            cr_line += 1 + record.as_slice().iter().filter(|&&b| b == b'\r').count() as u64;
        }
        let decoded = inv.decoder.decode(&record).map_err(|error| BadRow {
            file: name.to_string(),
            row,
            line: Some(record_line(&record, reader.position().line(), reader.get_ref(), this_cr_line)),
            error,
        });
        per_row(state, decoded)?;
    }
    // Read to the end of the stream, so a truncated gzip member is reported even when it
    // broke off at a record boundary.
    let mut rest = reader.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink())
        .map_err(|error| InventoryError::Read { file: name.into(), error })?;
    Ok(row)
}

/// How a data file ends its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineEnd {
    /// No line end seen yet.
    Unknown,
    Lf,
    CrLf,
    Cr,
}

/// Passes a data file through unchanged, noting how it ends its lines (the first CR or LF
/// outside double quotes decides; after that it costs a comparison per read) and whether
/// its end was reached.
struct LineEndProbe<R> {
    inner: R,
    style: LineEnd,
    in_quotes: bool,
    pending_cr: bool,
    /// csv asks for more input only when what it holds ends inside a record, so a record
    /// returned after the end was reached is the last one, and has no line end.
    eof: bool,
}

impl<R: Read> Read for LineEndProbe<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        if self.style == LineEnd::Unknown {
            self.probe(&buf[..n]);
        }
        Ok(n)
    }
}

impl<R> LineEndProbe<R> {
    fn probe(&mut self, bytes: &[u8]) {
        if bytes.is_empty() && self.pending_cr {
            self.style = LineEnd::Cr;
        }
        for &b in bytes {
            if self.pending_cr {
                self.style = if b == b'\n' { LineEnd::CrLf } else { LineEnd::Cr };
                return;
            }
            match b {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => {
                    self.style = LineEnd::Lf;
                    return;
                }
                b'\r' if !self.in_quotes => self.pending_cr = true,
                _ => {}
            }
        }
    }
}

/// The line a record starts on, counting LF, CRLF and CR each as one line end.
///
/// csv's own record position is where the reader stood when the record was asked for:
/// before the blank lines it then skipped and, in a CRLF file, before the previous record's
/// LF. So the line is worked back from where the reader stands after the record
/// (`end_line`; csv counts LF bytes): less the LFs inside the record, less the LF that
/// ended it (in an LF file, unless the file ended first; a CRLF file's record ends at its
/// CR). csv counts no lines in a CR-only file: there the caller's own count (`cr_line`,
/// blind to blank lines) is used.
fn record_line<R>(record: &csv::ByteRecord, end_line: u64, probe: &LineEndProbe<R>, cr_line: u64) -> u64 {
    let start = record.position().map(|p| p.line()).unwrap_or(1);
    let inner = record.as_slice().iter().filter(|&&b| b == b'\n').count() as u64;
    match probe.style {
        LineEnd::Lf => end_line.saturating_sub(inner + u64::from(!probe.eof)).max(start),
        LineEnd::CrLf => end_line.saturating_sub(inner).max(start),
        LineEnd::Cr => cr_line,
        LineEnd::Unknown => start,
    }
}

fn strip_bom(record: &mut csv::ByteRecord) {
    if record.get(0).is_some_and(|f| f.starts_with(b"\xEF\xBB\xBF")) {
        let fields: Vec<Vec<u8>> =
            record.iter().enumerate().map(|(i, f)| if i == 0 { f[3..].to_vec() } else { f.to_vec() }).collect();
        let pos = record.position().cloned();
        *record = csv::ByteRecord::from(fields);
        record.set_position(pos);
    }
}

fn csv_error(file: &str, rows_read: u64, e: csv::Error) -> InventoryError {
    match e.into_kind() {
        csv::ErrorKind::Io(error) => InventoryError::Read { file: file.into(), error },
        other => InventoryError::Read {
            file: file.into(),
            error: std::io::Error::other(format!("after row {rows_read}: {other:?}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::schema::Schema;
    use crate::inventory::{DataFile, EncryptionStatus, Location, RowDecoder};

    /// (row, line) of every row of `data`, a plain CSV file whose every row is bad.
    fn bad_row_lines(data: &[u8]) -> Vec<(u64, u64)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part.csv");
        std::fs::write(&path, data).unwrap();
        let inv = Inventory {
            source: "test".into(),
            source_bucket: None,
            created_ms: None,
            decoder: RowDecoder {
                schema: Schema::parse("Bucket, Key, Size").unwrap(),
                assume_encryption: Some(EncryptionStatus::SseS3),
                batch_ops: false,
            },
            files: vec![DataFile { location: Location::Local(path), size: None, md5: None, format: DataFormat::Csv }],
            verify: false,
            listing: None,
        };
        let (mut states, _) = scan(&inv, None, 1, Vec::new, |seen: &mut Vec<(u64, u64)>, row| {
            let bad = row.expect_err("every row has a bad Size");
            assert_eq!(bad.error.field, "Size");
            seen.push((bad.row, bad.line.unwrap()));
            Ok(())
        })
        .unwrap();
        states.pop().unwrap()
    }

    #[test]
    fn line_numbers_whatever_the_line_ends() {
        let cases: [(&str, &[u8], &[u64]); 11] = [
            ("LF", b"b,k1,x\nb,k2,x\nb,k3,x\n", &[1, 2, 3]),
            ("CRLF", b"b,k1,x\r\nb,k2,x\r\nb,k3,x\r\n", &[1, 2, 3]),
            ("CR", b"b,k1,x\rb,k2,x\rb,k3,x\r", &[1, 2, 3]),
            ("LF, blank lines", b"\nb,k1,x\n\n\nb,k2,x\n\nb,k3,x\n", &[2, 5, 7]),
            ("CRLF, blank lines", b"\r\nb,k1,x\r\n\r\n\r\nb,k2,x\r\n\r\nb,k3,x\r\n", &[2, 5, 7]),
            ("LF, multi-line record", b"b,\"k\n\n1\",x\nb,k2,x\n", &[1, 4]),
            ("CRLF, multi-line record", b"b,\"k\r\n1\",x\r\nb,k2,x\r\n", &[1, 3]),
            ("LF, no line end at the end", b"b,k1,x\nb,k2,x", &[1, 2]),
            ("LF, blank line then no line end", b"b,k1,x\n\nb,k2,x", &[1, 3]),
            ("CRLF, blank line then no line end", b"b,k1,x\r\n\r\nb,k2,x", &[1, 3]),
            ("BOM, LF", b"\xEF\xBB\xBFb,k1,x\nb,k2,x\n", &[1, 2]),
        ];
        for (name, data, lines) in cases {
            let got = bad_row_lines(data);
            let want: Vec<(u64, u64)> = lines.iter().enumerate().map(|(i, &l)| (i as u64 + 1, l)).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn line_ends_are_probed_outside_quotes() {
        let mut p = LineEndProbe {
            inner: std::io::empty(),
            style: LineEnd::Unknown,
            in_quotes: false,
            pending_cr: false,
            eof: false,
        };
        p.probe(b"\"a\nb\",c\r");
        assert_eq!((p.style, p.pending_cr), (LineEnd::Unknown, true));
        p.probe(b"\n");
        assert_eq!(p.style, LineEnd::CrLf);
    }

    mod props {
        use super::*;
        use crate::inventory::keys::{encode_form_key, props::key, MAX_KEY_BYTES};
        use flate2::write::GzEncoder;
        use proptest::prelude::*;
        use std::io::Write;

        const SCHEMA: &str = "Bucket, Key, VersionId, IsLatest, Size, EncryptionStatus";

        fn inventory() -> Inventory {
            Inventory {
                source: "test".into(),
                source_bucket: None,
                created_ms: None,
                decoder: RowDecoder {
                    schema: Schema::parse(SCHEMA).unwrap(),
                    assume_encryption: None,
                    batch_ops: false,
                },
                files: Vec::new(),
                verify: false,
                listing: None,
            }
        }

        /// Every row (or the first error) the inventory row reader makes of `data`: plain,
        /// or gunzipped first, as `read_file` does.
        fn read(data: &[u8], gzip: bool) -> Result<Vec<InventoryRow>, InventoryError> {
            let inv = inventory();
            let failed = AtomicBool::new(false);
            let mut rows = Vec::new();
            let per_row = |rows: &mut Vec<InventoryRow>, row: Result<InventoryRow, BadRow>| {
                rows.push(row?);
                Ok(())
            };
            if gzip {
                let mut gz = MultiGzDecoder::new(std::io::BufReader::new(data));
                read_records(&inv, "part.csv.gz", &mut gz, &failed, &mut rows, &per_row)?;
            } else {
                read_records(&inv, "part.csv", &mut &data[..], &failed, &mut rows, &per_row)?;
            }
            Ok(rows)
        }

        fn gzip(data: &[u8]) -> Vec<u8> {
            let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(data).unwrap();
            gz.finish().unwrap()
        }

        /// A row's (key, version id): a version id is any non-empty text, taken as it is.
        fn object() -> impl Strategy<Value = (String, String)> {
            (key(MAX_KEY_BYTES), key(64))
        }

        proptest! {
            /// S3's writer (every field quoted, LF) and others' (quotes where needed, CRLF,
            /// a BOM): every key comes back as it went in, whatever it holds.
            #[test]
            fn keys_round_trip_through_csv_and_the_row_reader(
                objects in prop::collection::vec(object(), 1..8),
                always_quote in any::<bool>(),
                crlf in any::<bool>(),
                bom in any::<bool>(),
                gzipped in any::<bool>(),
            ) {
                let mut w = csv::WriterBuilder::new()
                    .quote_style(if always_quote { csv::QuoteStyle::Always } else { csv::QuoteStyle::Necessary })
                    .terminator(if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') })
                    .from_writer(if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() });
                for (i, (key, version)) in objects.iter().enumerate() {
                    let size = i.to_string();
                    w.write_record([
                        "src-bucket",
                        &encode_form_key(key),
                        version,
                        "true",
                        &size,
                        "SSE-S3",
                    ])
                    .unwrap();
                }
                let data = w.into_inner().unwrap();
                let data = if gzipped { gzip(&data) } else { data };
                let rows = read(&data, gzipped).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(rows.len(), objects.len());
                for (i, (row, (key, version))) in rows.iter().zip(&objects).enumerate() {
                    prop_assert_eq!(&row.bucket, "src-bucket");
                    prop_assert_eq!(&row.key, key);
                    prop_assert_eq!(row.version_id.as_ref(), Some(version));
                    prop_assert_eq!(row.size, Some(i as u64));
                }
            }

            /// Arbitrary bytes, plain or in gzip (whole, cut short, or with a byte changed):
            /// rows or an error, never a panic.
            #[test]
            fn arbitrary_data_files_never_panic(
                raw in prop::collection::vec(prop_oneof![
                    4 => any::<u8>(),
                    4 => prop::sample::select(b",,\"\"\n\r%+ab1".to_vec()),
                    1 => prop::sample::select(vec![0xEFu8, 0xBB, 0xBF]),
                ], 0..3000),
                damage in any::<prop::sample::Index>(),
                how in 0u8..4,
            ) {
                let _ = read(&raw, false);
                let _ = read(&raw, true);
                let mut gz = gzip(&raw);
                let at = damage.index(gz.len());
                match how {
                    0 => {}
                    1 => gz.truncate(at),
                    2 => gz[at] ^= 0x5A,
                    _ => gz.extend_from_slice(&raw),
                }
                match read(&gz, true) {
                    // An undamaged stream reads as the plain bytes do.
                    Ok(rows) if how == 0 => prop_assert_eq!(Some(rows), read(&raw, false).ok()),
                    Ok(_) => {}
                    Err(e) => prop_assert!(e.to_string().starts_with("part.csv.gz: "), "{e}"),
                }
            }
        }
    }
}
