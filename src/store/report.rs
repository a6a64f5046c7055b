//! The checkpoint as `rekey report` and the S3 Batch Operations hand-off see it: every
//! object with everything recorded about it, streamed row by row (memory stays flat
//! however many millions of objects the plan holds); the objects still to do, for
//! export; and the write side of `import batch-ops`, which folds a completion report's
//! outcomes back in, in batched transactions.

use super::schema::TODO_WHERE;
use super::work::TODO_INDEX;
use super::{sql, Checkpoint, StoreError};
use crate::vocab::{Method, ObjectStatus, SkipReason, Verdict};
use rusqlite::{params, OptionalExtension};
use std::collections::BTreeMap;

/// Everything the checkpoint knows about one object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReportRow {
    pub id: i64,
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub size: Option<i64>,
    pub storage_class: Option<String>,
    pub encryption: Option<String>,
    pub method: Option<Method>,
    pub skip_reason: Option<SkipReason>,
    pub status: ObjectStatus,
    pub etag: Option<String>,
    pub new_etag: Option<String>,
    pub new_version_id: Option<String>,
    pub kms_key_id: Option<String>,
    pub attempts: i64,
    pub error_code: Option<String>,
    pub last_error: Option<String>,
    pub retryable: bool,
    pub note: Option<String>,
    pub new_checksum: Option<String>,
    pub verify_verdict: Option<Verdict>,
    pub verify_detail: Option<String>,
    pub verified_at: Option<String>,
    pub finished_at: Option<String>,
    /// The version a copy replaced (noncurrent, old encryption), and its deletion.
    pub replaced_version_id: Option<String>,
    pub replaced_deleted_at: Option<String>,
    pub replaced_delete_detail: Option<String>,
}

/// Which objects a report lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportScope {
    /// Every object in the checkpoint, skipped ones included.
    All,
    /// Objects a run dealt with and did not re-encrypt: failed, changed, gone, needs_restore,
    /// and other_kms_key (still under a key other than the target).
    Failed,
    /// Objects a run dealt with, whatever the outcome (what a Batch Operations job reports:
    /// pending and skipped objects were never tasks).
    Finished,
    /// Done copies whose replaced version is still there (not deleted).
    Replaced,
}

/// Statuses of objects a run finished without re-encrypting them.
pub const NOT_DONE_STATUSES: &str = "status IN ('failed', 'changed', 'gone', 'needs_restore', 'other_kms_key')";

const REPORT_COLUMNS: &str =
    "id, bucket, key, version_id, size, storage_class, encryption, method, skip_reason, status, \
     etag, new_etag, new_version_id, kms_key_id, attempts, error_code, last_error, retryable, note, new_checksum, \
     verify_verdict, verify_detail, verified_at, finished_at, \
     replaced_version_id, replaced_deleted_at, replaced_delete_detail";

/// One object `export batch-ops` may hand to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub size: Option<u64>,
    pub storage_class: Option<String>,
    pub method: Method,
}

/// What a completion report says of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportedOutcome {
    Succeeded,
    Failed { error_code: String, message: String, retryable: bool },
}

/// What importing one report row did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportEffect {
    MarkedDone,
    MarkedFailed,
    /// A failure reported for an object already done (by `rekey run` or an earlier
    /// import): a done object is never downgraded.
    KeptDone,
    /// No planned object has this bucket, key and version.
    Unknown,
}

/// Rows per transaction while importing: a commit per row would dominate the time.
const IMPORT_ROWS_PER_TXN: u64 = 10_000;

impl Checkpoint {
    /// Call `f` with each object in `scope`, in plan order, one row in memory at a time.
    pub fn for_each_report_row<E: From<StoreError>>(
        &self,
        scope: ReportScope,
        mut f: impl FnMut(&ReportRow) -> Result<(), E>,
    ) -> Result<(), E> {
        let filter = match scope {
            ReportScope::All => "1",
            ReportScope::Failed => NOT_DONE_STATUSES,
            ReportScope::Finished => "status NOT IN ('pending', 'skipped')",
            ReportScope::Replaced => "replaced_version_id IS NOT NULL AND replaced_deleted_at IS NULL",
        };
        let q = format!("SELECT {REPORT_COLUMNS} FROM objects WHERE {filter} ORDER BY id");
        let mut stmt = self.conn.prepare(&q).map_err(sql(&self.path))?;
        let mut rows = stmt.query([]).map_err(sql(&self.path))?;
        while let Some(r) = rows.next().map_err(sql(&self.path))? {
            let row = (|| -> rusqlite::Result<ReportRow> {
                Ok(ReportRow {
                    id: r.get(0)?,
                    bucket: r.get(1)?,
                    key: r.get(2)?,
                    version_id: r.get(3)?,
                    size: r.get(4)?,
                    storage_class: r.get(5)?,
                    encryption: r.get(6)?,
                    method: r.get(7)?,
                    skip_reason: r.get(8)?,
                    status: r.get(9)?,
                    etag: r.get(10)?,
                    new_etag: r.get(11)?,
                    new_version_id: r.get(12)?,
                    kms_key_id: r.get(13)?,
                    attempts: r.get(14)?,
                    error_code: r.get(15)?,
                    last_error: r.get(16)?,
                    retryable: r.get(17)?,
                    note: r.get(18)?,
                    new_checksum: r.get(19)?,
                    verify_verdict: r.get(20)?,
                    verify_detail: r.get(21)?,
                    verified_at: r.get(22)?,
                    finished_at: r.get(23)?,
                    replaced_version_id: r.get(24)?,
                    replaced_deleted_at: r.get(25)?,
                    replaced_delete_detail: r.get(26)?,
                })
            })()
            .map_err(sql(&self.path))?;
            f(&row)?;
        }
        Ok(())
    }

    /// Objects by the S3 error code of their last failure (objects without one are not counted).
    pub fn error_code_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT error_code, COUNT(*) FROM objects WHERE error_code IS NOT NULL GROUP BY error_code")
            .map_err(sql(&self.path))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(sql(&self.path))?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql(&self.path))
    }

    /// Every attempt every run (and import) recorded, summed over all objects.
    pub fn attempts_total(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COALESCE(SUM(attempts), 0) FROM objects", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(sql(&self.path))
    }

    /// Call `f` with each object a run would still dispatch (the same rows as `rekey run`).
    pub fn for_each_todo<E: From<StoreError>>(&self, mut f: impl FnMut(ExportRow) -> Result<(), E>) -> Result<(), E> {
        let mut stmt = self.conn.prepare(&export_todo_query()).map_err(sql(&self.path))?;
        let mut rows = stmt.query([]).map_err(sql(&self.path))?;
        while let Some(r) = rows.next().map_err(sql(&self.path))? {
            let row = (|| -> rusqlite::Result<ExportRow> {
                Ok(ExportRow {
                    bucket: r.get(0)?,
                    key: r.get(1)?,
                    version_id: r.get(2)?,
                    size: r.get::<_, Option<i64>>(3)?.map(|s| s as u64),
                    storage_class: r.get(4)?,
                    method: r.get(5)?,
                })
            })()
            .map_err(sql(&self.path))?;
            f(row)?;
        }
        Ok(())
    }

    /// Start folding completion-report outcomes in. The first import indexes objects by
    /// bucket and key (once; kept for later imports): without it every report row would
    /// scan the whole table.
    pub fn importer(&self) -> Result<Importer<'_>, StoreError> {
        self.conn
            .execute_batch("CREATE INDEX IF NOT EXISTS objects_by_key ON objects (bucket, key); BEGIN IMMEDIATE")
            .map_err(sql(&self.path))?;
        Ok(Importer { cp: self, in_txn: 0, open: true })
    }
}

/// Writes imported outcomes, committing every [`IMPORT_ROWS_PER_TXN`] rows. Dropped
/// without [`Importer::finish`], the open transaction is rolled back.
pub struct Importer<'a> {
    cp: &'a Checkpoint,
    in_txn: u64,
    open: bool,
}

impl Importer<'_> {
    /// Apply one report row. A report's empty or `null` VersionId matches an object
    /// without a version (the null version, or an unversioned bucket).
    pub fn apply(
        &mut self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        outcome: &ImportedOutcome,
        kms_key_id: Option<&str>,
    ) -> Result<ImportEffect, StoreError> {
        let conn = &self.cp.conn;
        let path = &self.cp.path;
        let found: Option<(i64, ObjectStatus)> = match version_id {
            Some(v) => conn
                .prepare_cached(
                    "SELECT id, status FROM objects WHERE bucket = ?1 AND key = ?2 AND version_id = ?3 AND method IS NOT NULL",
                )
                .and_then(|mut s| s.query_row(params![bucket, key, v], |r| Ok((r.get(0)?, r.get(1)?))).optional()),
            None => conn
                .prepare_cached(
                    "SELECT id, status FROM objects WHERE bucket = ?1 AND key = ?2 AND (version_id IS NULL OR version_id IN ('', 'null')) AND method IS NOT NULL",
                )
                .and_then(|mut s| s.query_row(params![bucket, key], |r| Ok((r.get(0)?, r.get(1)?))).optional()),
        }
        .map_err(sql(path))?;
        let Some((id, status)) = found else { return Ok(ImportEffect::Unknown) };
        let now = crate::units::now_rfc3339();
        let effect = match outcome {
            ImportedOutcome::Succeeded => {
                // `note` says how the object was confirmed: by a Batch Operations report,
                // not by rekey's own write, so `verify` is the way to confirm its key.
                conn.prepare_cached(
                    "UPDATE objects SET status = 'done', attempts = attempts + 1, error_code = NULL, last_error = NULL, \
                     retryable = 0, note = 'batch_ops', kms_key_id = COALESCE(?2, kms_key_id), finished_at = ?3 WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, kms_key_id, now]))
                .map_err(sql(path))?;
                ImportEffect::MarkedDone
            }
            ImportedOutcome::Failed { .. } if status == ObjectStatus::Done => ImportEffect::KeptDone,
            ImportedOutcome::Failed { error_code, message, retryable } => {
                conn.prepare_cached(
                    "UPDATE objects SET status = 'failed', attempts = attempts + 1, error_code = ?2, last_error = ?3, \
                     retryable = ?4, note = 'batch_ops', finished_at = ?5 WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, error_code, message, retryable, now]))
                .map_err(sql(path))?;
                ImportEffect::MarkedFailed
            }
        };
        self.in_txn += 1;
        if self.in_txn >= IMPORT_ROWS_PER_TXN {
            conn.execute_batch("COMMIT; BEGIN IMMEDIATE").map_err(sql(path))?;
            self.in_txn = 0;
        }
        Ok(effect)
    }

    /// Commit what is left.
    pub fn finish(mut self) -> Result<(), StoreError> {
        self.open = false;
        self.cp.conn.execute_batch("COMMIT").map_err(sql(&self.cp.path))
    }
}

impl Drop for Importer<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.cp.conn.execute_batch("ROLLBACK");
        }
    }
}

/// `export batch-ops`'s query: every row a run would still dispatch, in id order, read
/// through `objects_todo` (unnamed, SQLite sorted all of them in a temporary B-tree
/// first; see [`TODO_INDEX`]).
pub(super) fn export_todo_query() -> String {
    format!(
        "SELECT bucket, key, version_id, size, storage_class, method FROM objects {TODO_INDEX} WHERE {TODO_WHERE} AND method IS NOT NULL ORDER BY id"
    )
}
