//! The SQLite checkpoint: one row per inventory object, and one `run` row holding what
//! was planned and how. `plan` writes it; later stages execute from it and record every
//! outcome in it.
//!
//! A plan is written into a temporary file beside the target and renamed into place only
//! once complete, so a failed or interrupted plan never leaves a half-written
//! checkpoint. Bulk loading runs without a journal (the rename is the commit); the
//! finished file is switched to WAL so a running job and `rekey status` can share it.
//! The file is created with mode 0600 and holds no credentials.

mod columns;
mod replaced;
mod report;
mod schema;
mod steps;
mod verify;
mod work;

pub use crate::vocab::{ObjectStatus, Verdict};
pub use replaced::{ReplacedCounts, ReplacedItem, ReplacedRecord};
pub use report::{ExportRow, ImportEffect, ImportedOutcome, Importer, ReportRow, ReportScope, NOT_DONE_STATUSES};
pub use schema::SCHEMA_VERSION;
pub use steps::BucketStepRecord;

pub use verify::{VerdictRecord, VerifyItem};
pub use work::{OutcomeRecord, OutcomeWriter, Redecided, TodoReader, TodoTotals, WorkItem};

use crate::inventory::InventoryRow;
use crate::vocab::{Decision, Method, SkipReason};
use rusqlite::{params, Connection, OpenFlags};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} already holds a plan of {inventory}; pass --replace to overwrite it")]
    StateExists { path: String, inventory: String },
    #[error("{path} is not a rekey checkpoint ({reason})")]
    NotACheckpoint { path: String, reason: String },
    #[error("{path} was written by a newer rekey (schema {found}, this build reads up to {supported})")]
    TooNew { path: String, found: i64, supported: i64 },
}

/// One object and its fate, as the planner hands it to the store.
#[derive(Debug, Clone)]
pub struct PlannedObject {
    pub row: InventoryRow,
    pub decision: Decision,
}

/// The `run` row: what was planned, from what, and how.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub inventory_source: String,
    pub inventory_created: Option<String>,
    pub source_bucket: Option<String>,
    pub kms_key_arn: Option<String>,
    pub options_json: String,
    pub prices_json: String,
    pub estimate_json: String,
}

/// Writes a new plan. Dropped without [`PlanWriter::finish`], it deletes its temporary file.
pub struct PlanWriter {
    conn: Option<Connection>,
    tmp: PathBuf,
    target: PathBuf,
    in_txn: u64,
    written: u64,
}

/// Rows per transaction while bulk loading: large enough that commits cost nothing.
const ROWS_PER_TXN: u64 = 250_000;

/// SQLite's page cache while planning one checkpoint, in KiB (64 MiB).
pub const DEFAULT_CACHE_KIB: u32 = 65_536;

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite { path: path.display().to_string(), source }
}

impl PlanWriter {
    /// Start a plan at `target`. An existing checkpoint is refused unless `replace`.
    pub fn create(target: &Path, replace: bool) -> Result<PlanWriter, StoreError> {
        PlanWriter::create_with_cache(target, replace, DEFAULT_CACHE_KIB)
    }

    /// As [`PlanWriter::create`], with SQLite's page cache capped at `cache_kib` KiB
    /// (a sharded plan writes several files at once and splits the default between them).
    pub fn create_with_cache(target: &Path, replace: bool, cache_kib: u32) -> Result<PlanWriter, StoreError> {
        if target.exists() && !replace {
            let inventory = Checkpoint::open(target)
                .and_then(|c| c.run())
                .map(|r| r.inventory_source)
                .unwrap_or_else(|e| format!("something else ({e})"));
            return Err(StoreError::StateExists { path: target.display().to_string(), inventory });
        }
        let tmp = PathBuf::from(format!("{}.rekey-tmp-{}", target.display(), std::process::id()));
        let io = |source| StoreError::Io { path: tmp.display().to_string(), source };
        let _ = std::fs::remove_file(&tmp);
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        drop(open.open(&tmp).map_err(io)?);
        let conn = Connection::open(&tmp).map_err(sql(&tmp))?;
        let mut w = PlanWriter { conn: Some(conn), tmp, target: target.to_path_buf(), in_txn: 0, written: 0 };
        let conn = w.conn.as_ref().unwrap();
        conn.execute_batch(&format!("PRAGMA page_size = 16384; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE; PRAGMA cache_size = -{};", cache_kib.max(1024)))
            .map_err(sql(&w.tmp))?;
        schema::create(conn).map_err(sql(&w.tmp))?;
        conn.execute_batch("BEGIN").map_err(sql(&w.tmp))?;
        w.in_txn = 0;
        Ok(w)
    }

    pub fn insert(&mut self, batch: &[PlannedObject]) -> Result<(), StoreError> {
        let conn = self.conn.as_ref().expect("writer is open");
        // Many rows per INSERT: SQLite's per-statement overhead dominated the plan's time
        // (perf: sqlite3_step ~55 % of all CPU with one row per statement).
        let mut chunks = batch.chunks_exact(schema::ROWS_PER_INSERT);
        let mut many = conn.prepare_cached(&schema::insert_objects(schema::ROWS_PER_INSERT)).map_err(sql(&self.tmp))?;
        for chunk in chunks.by_ref() {
            for (i, o) in chunk.iter().enumerate() {
                bind_object(&mut many, i * schema::OBJECT_COLUMNS, o).map_err(sql(&self.tmp))?;
            }
            many.raw_execute().map_err(sql(&self.tmp))?;
        }
        let mut one = conn.prepare_cached(&schema::insert_objects(1)).map_err(sql(&self.tmp))?;
        for o in chunks.remainder() {
            bind_object(&mut one, 0, o).map_err(sql(&self.tmp))?;
            one.raw_execute().map_err(sql(&self.tmp))?;
        }
        drop((many, one));
        self.in_txn += batch.len() as u64;
        self.written += batch.len() as u64;
        if self.in_txn >= ROWS_PER_TXN {
            conn.execute_batch("COMMIT; BEGIN").map_err(sql(&self.tmp))?;
            self.in_txn = 0;
        }
        Ok(())
    }

    pub fn rows_written(&self) -> u64 {
        self.written
    }

    /// Record the run, index, switch to WAL, and move the file into place.
    pub fn finish(self, run: &RunRecord) -> Result<u64, StoreError> {
        self.seal(run)?.install()
    }

    /// Record the run, index and switch to WAL, leaving the file beside its target: a
    /// sharded plan seals every shard before it moves any into place, so a failure leaves
    /// no shard behind.
    pub fn seal(mut self, run: &RunRecord) -> Result<SealedPlan, StoreError> {
        let conn = self.conn.take().expect("writer is open");
        let tmp = self.tmp.clone();
        let result = (|| {
            conn.execute(
                schema::INSERT_RUN,
                params![
                    crate::units::now_rfc3339(),
                    env!("CARGO_PKG_VERSION"),
                    run.inventory_source,
                    run.inventory_created,
                    run.source_bucket,
                    run.kms_key_arn,
                    run.options_json,
                    run.prices_json,
                    run.estimate_json,
                ],
            )?;
            conn.execute_batch("COMMIT")?;
            // Indexes are cheaper built once over the loaded table than maintained per row.
            let started = std::time::Instant::now();
            conn.execute_batch(schema::INDEXES)?;
            tracing::debug!("indexed {} rows in {:?}", self.written, started.elapsed());
            conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
            conn.close().map_err(|(_, e)| e)
        })();
        let sealed = SealedPlan { tmp: Some(tmp.clone()), target: self.target.clone(), written: self.written };
        result.map_err(sql(&tmp))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|source| StoreError::Io { path: tmp.display().to_string(), source })?;
        Ok(sealed)
    }
}

/// A complete plan beside its target, moved into place by [`SealedPlan::install`];
/// dropped without it, its file is deleted.
pub struct SealedPlan {
    tmp: Option<PathBuf>,
    target: PathBuf,
    written: u64,
}

impl SealedPlan {
    /// Rewrite the sealed plan's options and estimate: a job of several inventories
    /// learns each entry's share of the KMS quota only once every entry is planned.
    pub fn update_run(&self, options_json: &str, estimate_json: &str) -> Result<(), StoreError> {
        let tmp = self.tmp.as_ref().expect("not installed yet");
        let conn = Connection::open(tmp).map_err(sql(tmp))?;
        let updated = conn
            .execute(
                "UPDATE run SET options_json = ?1, estimate_json = ?2 WHERE id = 1",
                params![options_json, estimate_json],
            )
            .map_err(sql(tmp))?;
        if updated != 1 {
            return Err(StoreError::NotACheckpoint { path: tmp.display().to_string(), reason: "no run row".into() });
        }
        // Closing the last connection checkpoints the WAL into the file and removes it.
        conn.close().map_err(|(_, e)| e).map_err(sql(tmp))?;
        std::fs::File::open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(|source| StoreError::Io { path: tmp.display().to_string(), source })
    }

    /// Rename the file into place; the number of objects it holds.
    pub fn install(mut self) -> Result<u64, StoreError> {
        let tmp = self.tmp.take().expect("not installed yet");
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |source| StoreError::Io { path: p.clone(), source }
        };
        // A stale WAL beside a new database would be replayed into it: remove it first.
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.target.display()));
        }
        if let Err(e) = std::fs::rename(&tmp, &self.target) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&self.target)(e));
        }
        if let Some(dir) = self.target.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(self.written)
    }
}

impl Drop for SealedPlan {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Bind one object's columns, in `schema::OBJECT_COLUMN_NAMES` order, after `base` parameters.
fn bind_object(stmt: &mut rusqlite::CachedStatement<'_>, base: usize, o: &PlannedObject) -> rusqlite::Result<()> {
    let r = &o.row;
    let (method, skip, status) = match o.decision {
        Decision::Migrate(m) => (Some(m.as_str()), None, ObjectStatus::Pending.as_str()),
        Decision::Skip(s) => (None, Some(s.as_str()), ObjectStatus::Skipped.as_str()),
    };
    let mut i = base;
    let mut bind = |v: &dyn rusqlite::ToSql| {
        i += 1;
        stmt.raw_bind_parameter(i, v)
    };
    bind(&r.bucket)?;
    bind(&r.key)?;
    bind(&r.version_id)?;
    bind(&r.is_latest)?;
    bind(&r.is_delete_marker)?;
    bind(&r.size.map(|s| s as i64))?;
    bind(&r.last_modified_ms)?;
    bind(&r.etag)?;
    bind(&r.storage_class.map(|c| c.as_str()))?;
    bind(&r.encryption.map(|e| e.as_str()))?;
    bind(&r.lock_mode)?;
    bind(&r.lock_retain_until)?;
    bind(&r.legal_hold)?;
    bind(&r.checksum_algorithm)?;
    bind(&r.it_tier)?;
    bind(&method)?;
    bind(&skip)?;
    bind(&status)?;
    Ok(())
}

impl Drop for PlanWriter {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn);
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// An existing checkpoint, opened for reading and for recording outcomes.
pub struct Checkpoint {
    conn: Connection,
    path: PathBuf,
}

/// Counts of objects by status, method and skip reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatusCounts {
    pub by_status: BTreeMap<ObjectStatus, u64>,
    pub by_method: BTreeMap<Method, u64>,
    pub by_skip_reason: BTreeMap<SkipReason, u64>,
}

impl StatusCounts {
    /// Objects in `status` (0 when none).
    pub fn status(&self, status: ObjectStatus) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }

    /// Add another checkpoint's counts (the shards of one plan, the entries of a job).
    pub fn add(&mut self, other: &StatusCounts) {
        add_counts(&mut self.by_status, &other.by_status);
        add_counts(&mut self.by_method, &other.by_method);
        add_counts(&mut self.by_skip_reason, &other.by_skip_reason);
    }
}

/// Add one checkpoint's counts by key into a sum of several.
pub fn add_counts<K: Ord + Copy>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (k, n) in from {
        *into.entry(*k).or_default() += n;
    }
}

impl Checkpoint {
    pub fn open(path: &Path) -> Result<Checkpoint, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Io {
                path: path.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such checkpoint"),
            });
        }
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(sql(path))?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(sql(path))?;
        let not = |reason: String| StoreError::NotACheckpoint { path: path.display().to_string(), reason };
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| not(e.to_string()))?;
        if version == 0 {
            return Err(not("no rekey schema version".into()));
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.display().to_string(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        // An older checkpoint gains the newer tables and columns (all additive).
        schema::migrate(&conn, version).map_err(sql(path))?;
        Ok(Checkpoint { conn, path: path.to_path_buf() })
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn run(&self) -> Result<RunRecord, StoreError> {
        self.conn
            .query_row(
                "SELECT inventory_source, inventory_created, source_bucket, kms_key_arn, options_json, prices_json, estimate_json FROM run WHERE id = 1",
                [],
                |r| {
                    Ok(RunRecord {
                        inventory_source: r.get(0)?,
                        inventory_created: r.get(1)?,
                        source_bucket: r.get(2)?,
                        kms_key_arn: r.get(3)?,
                        options_json: r.get(4)?,
                        prices_json: r.get(5)?,
                        estimate_json: r.get(6)?,
                    })
                },
            )
            .map_err(sql(&self.path))
    }

    pub fn counts(&self) -> Result<StatusCounts, StoreError> {
        let mut c = StatusCounts::default();
        fn group<K: rusqlite::types::FromSql + Ord>(
            conn: &Connection,
            col: &str,
            out: &mut BTreeMap<K, u64>,
        ) -> rusqlite::Result<()> {
            let mut stmt =
                conn.prepare(&format!("SELECT {col}, COUNT(*) FROM objects WHERE {col} IS NOT NULL GROUP BY {col}"))?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, K>(0)?, r.get::<_, i64>(1)? as u64)))?;
            for row in rows {
                let (k, n) = row?;
                out.insert(k, n);
            }
            Ok(())
        }
        group(&self.conn, "status", &mut c.by_status).map_err(sql(&self.path))?;
        group(&self.conn, "method", &mut c.by_method).map_err(sql(&self.path))?;
        group(&self.conn, "skip_reason", &mut c.by_skip_reason).map_err(sql(&self.path))?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests;
