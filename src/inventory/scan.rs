//! Reading every data file of an inventory, several at once, in flat memory.
//!
//! Each worker thread takes the next unread file, streams it through
//! verify → gunzip → CSV → [`RowDecoder`], and hands each row to the caller's `per_row`
//! with the worker's own state. Nothing holds more than one CSV record per worker; what
//! the caller keeps (aggregates, a bounded channel to a writer) decides the rest. The
//! first error stops every worker at its next row.

use super::row::InventoryRow;
use super::source::{BlobStore, Inventory};
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
    pub line: u64,
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
    let stats = ScanStats { files: inv.files.len(), rows: rows.into_inner(), compressed_bytes: bytes.into_inner() };
    Ok((states, stats))
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
    let raw = inv.open_file(file, blobs)?;
    let name = raw.name.clone();
    // Large buffers: fewer syscalls, and csv's own buffer sees whole records. The chain is
    // unwrapped afterwards so the verifying reader can check what it saw.
    let (rows, raw) = if file.gzip {
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
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).buffer_capacity(256 * 1024).from_reader(input);
    let mut record = csv::ByteRecord::new();
    let mut row: u64 = 0;
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
        let decoded = inv.decoder.decode(&record).map_err(|error| BadRow {
            file: name.to_string(),
            row,
            line: record.position().map(|p| p.line()).unwrap_or(row),
            error,
        });
        per_row(state, decoded)?;
    }
    // Read to the end of the stream, so a truncated gzip member is reported even when it
    // broke off at a record boundary.
    let mut rest = reader.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink())
        .map_err(|source| InventoryError::Read { file: name.into(), source })?;
    Ok(row)
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
        csv::ErrorKind::Io(source) => InventoryError::Read { file: file.into(), source },
        other => InventoryError::Read {
            file: file.into(),
            source: std::io::Error::other(format!("after row {rows_read}: {other:?}")),
        },
    }
}
