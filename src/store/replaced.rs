//! The versions a copy left behind: on a versioned bucket, CopyObject makes a new current
//! version and the one it read stays as a noncurrent version under the old encryption
//! (docs/s3-facts.md §10). A run records its id (`replaced_version_id`); `rekey verify
//! --delete-replaced-versions` reads them back here and records each deletion, or why
//! it did not delete (`replaced_deleted_at`, `replaced_delete_detail`), so a later pass
//! never deletes one twice and `rekey report` can list them.

use super::{sql, Checkpoint, StoreError};
use crate::vocab::{Method, Verdict};
use rusqlite::params;

/// A done copy whose replaced version is still there (as far as the checkpoint knows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacedItem {
    pub id: i64,
    pub bucket: String,
    pub key: String,
    pub method: Method,
    /// The version the copy replaced (`null` for the null version).
    pub replaced_version_id: String,
    /// The inventoried size and ETag: what the replaced version holds.
    pub size: Option<u64>,
    pub etag: Option<String>,
    /// What the copy wrote, as S3 reported it.
    pub new_etag: Option<String>,
    pub new_version_id: Option<String>,
    /// The inventory's Object Lock columns.
    pub lock_mode: Option<String>,
    pub lock_retain_until: Option<String>,
    pub legal_hold: bool,
    /// The last `rekey verify` verdict of the copy.
    pub verify_verdict: Option<Verdict>,
}

/// What deleting one replaced version came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacedRecord {
    pub id: i64,
    /// RFC 3339, when deleted (or found already gone); None when kept.
    pub deleted_at: Option<String>,
    /// Why it was kept, or how it was found gone, on one line.
    pub detail: Option<String>,
}

/// The replaced versions a checkpoint knows of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplacedCounts {
    /// Replaced versions recorded, deleted or not.
    pub recorded: u64,
    pub deleted: u64,
    /// Still there: noncurrent, under the old encryption, costing storage.
    pub left: u64,
    /// The inventoried bytes of those left.
    pub bytes_left: u64,
}

const ITEM_COLUMNS: &str = "id, bucket, key, method, replaced_version_id, size, etag, new_etag, new_version_id, \
     lock_mode, lock_retain_until, legal_hold, verify_verdict";

fn item(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReplacedItem> {
    Ok(ReplacedItem {
        id: r.get(0)?,
        bucket: r.get(1)?,
        key: r.get(2)?,
        method: r.get(3)?,
        replaced_version_id: r.get(4)?,
        size: r.get::<_, Option<i64>>(5)?.map(|s| s.max(0) as u64),
        etag: r.get(6)?,
        new_etag: r.get(7)?,
        new_version_id: r.get(8)?,
        lock_mode: r.get(9)?,
        lock_retain_until: r.get(10)?,
        legal_hold: r.get::<_, Option<bool>>(11)?.unwrap_or(false),
        verify_verdict: r.get(12)?,
    })
}

impl Checkpoint {
    /// Up to `limit` done copies with ids above `after` whose replaced version is not yet
    /// deleted, in id order.
    pub fn replaced_page(&self, after: i64, limit: usize) -> Result<Vec<ReplacedItem>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {ITEM_COLUMNS} FROM objects WHERE status = 'done' AND replaced_version_id IS NOT NULL
                 AND replaced_deleted_at IS NULL AND id > ?1 ORDER BY id LIMIT ?2"
            ))
            .map_err(sql(&self.path))?;
        let rows = stmt.query_map(params![after, limit as i64], item).map_err(sql(&self.path))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql(&self.path))
    }

    /// Record what deleting each replaced version came to, one transaction per call.
    pub fn record_replaced(&self, batch: &[ReplacedRecord]) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(sql(&self.path))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE objects SET replaced_deleted_at = ?2, replaced_delete_detail = ?3 WHERE id = ?1",
                )
                .map_err(sql(&self.path))?;
            for r in batch {
                stmt.execute(params![r.id, r.deleted_at, r.detail]).map_err(sql(&self.path))?;
            }
        }
        tx.commit().map_err(sql(&self.path))
    }

    /// How many replaced versions the runs recorded, deleted and left.
    pub fn replaced_counts(&self) -> Result<ReplacedCounts, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*), COUNT(replaced_deleted_at),
                        COALESCE(SUM(CASE WHEN replaced_deleted_at IS NULL THEN size END), 0)
                 FROM objects WHERE replaced_version_id IS NOT NULL",
                [],
                |r| {
                    let (recorded, deleted) = (r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64);
                    Ok(ReplacedCounts {
                        recorded,
                        deleted,
                        left: recorded - deleted,
                        bytes_left: r.get::<_, i64>(2)?.max(0) as u64,
                    })
                },
            )
            .map_err(sql(&self.path))
    }
}
