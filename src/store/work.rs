//! The checkpoint as a run sees it: pages of work to dispatch, and batches of outcomes to
//! record.
//!
//! A run uses two connections to the WAL-mode file: [`TodoReader`] pages through the rows
//! still to do while [`OutcomeWriter`] commits outcomes in batches, and `rekey status` can
//! read both from another process at the same time.

use super::schema::TODO_WHERE;

/// The rows to do are read through their partial index, named: left to itself, SQLite
/// (3.5x, no ANALYZE statistics) answers `TODO_WHERE ... ORDER BY id LIMIT n` with a
/// multi-index OR over `objects_by_status` and a temporary B-tree that sorts *every* row
/// still to do, for each page: 0.22 s per 1,000-row page with 1 M rows to do, where the
/// partial index, already in id order, reads just the page (well under 1 ms).
pub(super) const TODO_INDEX: &str = "INDEXED BY objects_todo";

/// The queries on the rows still to do (kept here so a test can check their plans).
pub(super) fn todo_queries() -> [String; 4] {
    [
        format!(
            "SELECT id, bucket, key, version_id, is_latest, size, etag, storage_class, checksum_algorithm, method, attempts,
                    lock_mode, lock_retain_until, legal_hold, upload_id, encryption
             FROM objects {TODO_INDEX} WHERE id > ?1 AND {TODO_WHERE} ORDER BY id LIMIT ?2"
        ),
        format!("SELECT id FROM objects {TODO_INDEX} WHERE {TODO_WHERE} AND method = ?1 ORDER BY id LIMIT 1"),
        format!("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects {TODO_INDEX} WHERE {TODO_WHERE}"),
        format!("SELECT DISTINCT bucket FROM objects {TODO_INDEX} WHERE {TODO_WHERE} LIMIT ?1"),
    ]
}
use super::{sql, StoreError};
use crate::inventory::EncryptionStatus;
use crate::vocab::{Decision, Method, ObjectStatus};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One object to migrate, as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    pub id: i64,
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub is_latest: Option<bool>,
    pub size: u64,
    pub etag: Option<String>,
    pub storage_class: Option<String>,
    pub checksum_algorithm: Option<String>,
    pub method: Method,
    /// Attempts made by earlier runs.
    pub attempts: u32,
    pub lock_mode: Option<String>,
    pub lock_retain_until: Option<String>,
    pub legal_hold: bool,
    /// A multipart upload an earlier run opened and did not close: aborted before retrying.
    pub upload_id: Option<String>,
    /// The inventory's EncryptionStatus (`SSE-S3`, `SSE-KMS`, ...): an SSE-KMS row is
    /// HEADed before its update, to learn which key it is under.
    pub encryption: Option<String>,
}

/// What to write back for one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeRecord {
    pub id: i64,
    pub status: ObjectStatus,
    /// Attempts made by this run (added to the stored count).
    pub attempts: u32,
    pub error_code: Option<String>,
    pub last_error: Option<String>,
    pub retryable: bool,
    pub note: Option<&'static str>,
    pub new_etag: Option<String>,
    pub new_version_id: Option<String>,
    pub kms_key_id: Option<String>,
    pub new_checksum: Option<String>,
    /// A multipart upload still open (its abort failed): the next run aborts it.
    pub upload_id: Option<String>,
    /// The version a copy replaced: noncurrent now, under the old encryption.
    pub replaced_version_id: Option<String>,
    /// The run decided the object again from a HEAD (`exec::redecide`): recorded as its
    /// method or skip reason, with the encryption the HEAD showed.
    pub redecided: Option<Redecided>,
}

/// A decision made at run time from what S3 said of the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redecided {
    pub decision: Decision,
    pub encryption: EncryptionStatus,
}

fn open(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(sql(path))?;
    // The other connection of the run (and `rekey status`) may hold the lock briefly.
    conn.busy_timeout(Duration::from_secs(30)).map_err(sql(path))?;
    Ok(conn)
}

/// Pages through the rows still to do, in id order.
pub struct TodoReader {
    conn: Connection,
    path: PathBuf,
    after: i64,
}

impl TodoReader {
    pub fn open(path: &Path) -> Result<TodoReader, StoreError> {
        Ok(TodoReader { conn: open(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?, path: path.into(), after: 0 })
    }

    /// The first row still to do planned for `method` (a canary).
    pub fn first_of(&mut self, method: Method) -> Result<Option<WorkItem>, StoreError> {
        let id: Option<i64> = self
            .conn
            .prepare_cached(&todo_queries()[1])
            .and_then(|mut stmt| stmt.query_row([method.as_str()], |r| r.get(0)).optional())
            .map_err(sql(&self.path))?;
        let Some(id) = id else { return Ok(None) };
        let saved = self.after;
        self.after = id - 1;
        let item = self.next_page(1)?.pop();
        self.after = saved;
        Ok(item)
    }

    /// Up to `limit` rows after the last one returned. Rows recorded meanwhile by the
    /// writer are past the cursor, so nothing is handed out twice in one run.
    pub fn next_page(&mut self, limit: usize) -> Result<Vec<WorkItem>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&todo_queries()[0]).map_err(sql(&self.path))?;
        let rows = stmt
            .query_map(params![self.after, limit as i64], |r| {
                let method: String = r.get(9)?;
                Ok(WorkItem {
                    id: r.get(0)?,
                    bucket: r.get(1)?,
                    key: r.get(2)?,
                    version_id: r.get(3)?,
                    is_latest: r.get(4)?,
                    size: r.get::<_, Option<i64>>(5)?.unwrap_or(0).max(0) as u64,
                    etag: r.get(6)?,
                    storage_class: r.get(7)?,
                    checksum_algorithm: r.get(8)?,
                    method: Method::parse(&method).ok_or_else(|| {
                        rusqlite::Error::FromSqlConversionFailure(9, rusqlite::types::Type::Text, method.into())
                    })?,
                    attempts: r.get::<_, i64>(10)? as u32,
                    lock_mode: r.get(11)?,
                    lock_retain_until: r.get(12)?,
                    legal_hold: r.get::<_, Option<bool>>(13)?.unwrap_or(false),
                    upload_id: r.get(14)?,
                    encryption: r.get(15)?,
                })
            })
            .map_err(sql(&self.path))?;
        let page = rows.collect::<Result<Vec<_>, _>>().map_err(sql(&self.path))?;
        if let Some(last) = page.last() {
            self.after = last.id;
        }
        Ok(page)
    }
}

/// Totals of the rows still to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TodoTotals {
    pub objects: u64,
    pub bytes: u64,
}

/// Objects and bytes still to do (the rows a run dispatches).
fn todo_totals(conn: &Connection, path: &Path) -> Result<TodoTotals, StoreError> {
    conn.query_row(&todo_queries()[2], [], |r| {
        Ok(TodoTotals { objects: r.get::<_, i64>(0)? as u64, bytes: r.get::<_, i64>(1)? as u64 })
    })
    .map_err(sql(path))
}

/// Records outcomes, a batch per transaction.
pub struct OutcomeWriter {
    conn: Connection,
    path: PathBuf,
}

impl OutcomeWriter {
    pub fn open(path: &Path) -> Result<OutcomeWriter, StoreError> {
        let conn = open(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql(path))?;
        super::schema::migrate(&conn, version).map_err(sql(path))?;
        // WAL with synchronous=NORMAL: a commit survives a process crash; only a power
        // loss can lose the last batches, which the If-Match + HEAD rule makes safe to redo.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;").map_err(sql(path))?;
        Ok(OutcomeWriter { conn, path: path.into() })
    }

    pub fn todo_totals(&self) -> Result<TodoTotals, StoreError> {
        todo_totals(&self.conn, &self.path)
    }

    /// Write `batch` and the progress document in one transaction.
    pub fn record(&mut self, batch: &[OutcomeRecord], progress_json: Option<&str>) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(sql(&self.path))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE objects SET status = ?2, attempts = attempts + ?3, error_code = ?4, last_error = ?5,
                     retryable = ?6, note = ?7, new_etag = COALESCE(?8, new_etag),
                     new_version_id = COALESCE(?9, new_version_id), kms_key_id = COALESCE(?10, kms_key_id),
                     finished_at = CASE WHEN ?2 = 'pending' THEN NULL ELSE ?11 END,
                     new_checksum = COALESCE(?12, new_checksum), upload_id = ?13,
                     replaced_version_id = COALESCE(?14, replaced_version_id),
                     method = CASE WHEN ?15 THEN ?16 ELSE method END,
                     skip_reason = CASE WHEN ?15 THEN ?17 ELSE skip_reason END,
                     encryption = COALESCE(?18, encryption)
                     WHERE id = ?1",
                )
                .map_err(sql(&self.path))?;
            let now = crate::units::now_rfc3339();
            for o in batch {
                stmt.execute(params![
                    o.id,
                    o.status.as_str(),
                    o.attempts,
                    o.error_code,
                    o.last_error,
                    o.retryable,
                    o.note,
                    o.new_etag,
                    o.new_version_id,
                    o.kms_key_id,
                    now,
                    o.new_checksum,
                    o.upload_id,
                    o.replaced_version_id,
                    o.redecided.is_some(),
                    o.redecided.and_then(|r| match r.decision {
                        Decision::Migrate(m) => Some(m),
                        Decision::Skip(_) => None,
                    }),
                    o.redecided.and_then(|r| match r.decision {
                        Decision::Skip(reason) => Some(reason),
                        Decision::Migrate(_) => None,
                    }),
                    o.redecided.map(|r| r.encryption.as_str()),
                ])
                .map_err(sql(&self.path))?;
            }
            if let Some(json) = progress_json {
                tx.execute("INSERT OR REPLACE INTO progress (id, json) VALUES (1, ?1)", params![json])
                    .map_err(sql(&self.path))?;
            }
        }
        tx.commit().map_err(sql(&self.path))
    }
}

impl OutcomeWriter {
    /// Record (or clear) the multipart upload open for object `id`, committed at once: an
    /// upload the checkpoint does not know of could never be aborted by a later run.
    pub fn record_upload(&mut self, id: i64, upload_id: Option<&str>) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE objects SET upload_id = ?2 WHERE id = ?1", params![id, upload_id])
            .map(|_| ())
            .map_err(sql(&self.path))
    }
}

impl super::Checkpoint {
    /// The last progress document a run wrote, if any.
    pub fn progress_json(&self) -> Result<Option<String>, StoreError> {
        self.connection()
            .query_row("SELECT json FROM progress WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(sql(self.path()))
    }

    /// Objects and bytes finished, and still to do.
    pub fn todo_totals(&self) -> Result<TodoTotals, StoreError> {
        todo_totals(self.connection(), self.path())
    }

    /// The buckets of the rows still to do (at most `limit`). Read through the partial
    /// index, so it costs what is left, not the whole plan (a scan of 10 M rows took 2 s).
    pub fn todo_buckets(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.connection().prepare(&todo_queries()[3]).map_err(sql(self.path()))?;
        let rows = stmt.query_map([limit as i64], |r| r.get(0)).map_err(sql(self.path()))?;
        rows.collect::<Result<_, _>>().map_err(sql(self.path()))
    }
}
