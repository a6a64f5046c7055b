//! The checkpoint's tables. `PRAGMA user_version` holds [`SCHEMA_VERSION`]; a later
//! version adds a migration step here ([`migrate`]) and bumps it.
//!
//! Version 2 (issue 13) added the versions a copy replaced (`replaced_*` columns of
//! `objects`) and the bucket-level steps of `rekey finish` (`bucket_steps`).

use rusqlite::Connection;

pub const SCHEMA_VERSION: i64 = 2;

/// What version 2 adds, applied by [`create`] after version 1's tables and by [`migrate`]
/// to a version-1 checkpoint (all additive: a version-1 reader's columns are unchanged).
const V2: &str = "ALTER TABLE objects ADD COLUMN replaced_version_id TEXT;
    ALTER TABLE objects ADD COLUMN replaced_deleted_at TEXT;
    ALTER TABLE objects ADD COLUMN replaced_delete_detail TEXT;
    CREATE TABLE bucket_steps (
        bucket            TEXT NOT NULL,
        -- default_encryption | enforce_policy
        step              TEXT NOT NULL,
        done_at           TEXT NOT NULL,
        -- what the bucket had before, and what rekey finish set (JSON or text)
        before            TEXT,
        after             TEXT NOT NULL,
        PRIMARY KEY (bucket, step)
    );";

/// Bring a checkpoint written by an older rekey up to [`SCHEMA_VERSION`], in one
/// transaction (a failure leaves it at its old version, untouched).
pub(super) fn migrate(conn: &Connection, from: i64) -> rusqlite::Result<()> {
    // 0 is no checkpoint at all (refused by the caller), never migrated.
    if !(1..SCHEMA_VERSION).contains(&from) {
        return Ok(());
    }
    let mut steps = String::from("BEGIN IMMEDIATE;");
    if from < 2 {
        steps.push_str(V2);
    }
    steps.push_str(&format!("PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"));
    conn.execute_batch(&steps).inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })
}

pub(super) fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE run (
            id                INTEGER PRIMARY KEY CHECK (id = 1),
            created_at        TEXT NOT NULL,
            rekey_version     TEXT NOT NULL,
            inventory_source  TEXT NOT NULL,
            inventory_created TEXT,
            source_bucket     TEXT,
            kms_key_arn       TEXT,
            options_json      TEXT NOT NULL,
            prices_json       TEXT NOT NULL,
            estimate_json     TEXT NOT NULL
        );
        -- One row, rewritten by the running engine with every checkpoint batch, so
        -- `rekey status` in another shell can show the rate, throttles and ETA.
        CREATE TABLE progress (
            id                INTEGER PRIMARY KEY CHECK (id = 1),
            json              TEXT NOT NULL
        );
        CREATE TABLE objects (
            id                INTEGER PRIMARY KEY,
            bucket            TEXT NOT NULL,
            key               TEXT NOT NULL,
            version_id        TEXT,
            is_latest         INTEGER,
            is_delete_marker  INTEGER NOT NULL,
            size              INTEGER,
            last_modified_ms  INTEGER,
            etag              TEXT,
            storage_class     TEXT,
            encryption        TEXT,
            lock_mode         TEXT,
            lock_retain_until TEXT,
            legal_hold        INTEGER NOT NULL,
            checksum_algorithm TEXT,
            it_tier           TEXT,
            -- update | copy | multipart_copy; NULL when skipped
            method            TEXT,
            -- a SkipReason name; NULL when planned
            skip_reason       TEXT,
            -- pending → done | failed | changed | gone | needs_restore | already_target_key
            -- | other_kms_key (vocab::ObjectStatus)
            status            TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed', 'skipped', 'changed', 'gone', 'needs_restore', 'already_target_key', 'other_kms_key')),
            attempts          INTEGER NOT NULL DEFAULT 0,
            -- S3's error code of the last failed attempt, and the whole message
            error_code        TEXT,
            last_error        TEXT,
            -- a failure that a later run retries (retries exhausted, not a rejection)
            retryable         INTEGER NOT NULL DEFAULT 0,
            -- how a done object was confirmed, when not by its own write (e.g. head_after_412)
            note              TEXT,
            -- an open multipart copy, so a resumed run can abort it instead of leaking it
            upload_id         TEXT,
            new_etag          TEXT,
            -- the additional checksum S3 reports for the new object (algorithm kept from the original)
            new_checksum      TEXT,
            -- `rekey verify`: ok | mismatch | missing | error, what differed, and when
            verify_verdict    TEXT,
            verify_detail     TEXT,
            verified_at       TEXT,
            new_version_id    TEXT,
            kms_key_id        TEXT,
            finished_at       TEXT,
            CHECK ((method IS NULL) <> (skip_reason IS NULL))
        );
        {V2}
        PRAGMA user_version = {SCHEMA_VERSION};"
    ))
}

/// The columns a plan fills, in bind order.
pub(super) const OBJECT_COLUMN_NAMES: [&str; 18] = [
    "bucket",
    "key",
    "version_id",
    "is_latest",
    "is_delete_marker",
    "size",
    "last_modified_ms",
    "etag",
    "storage_class",
    "encryption",
    "lock_mode",
    "lock_retain_until",
    "legal_hold",
    "checksum_algorithm",
    "it_tier",
    "method",
    "skip_reason",
    "status",
];
pub(super) const OBJECT_COLUMNS: usize = OBJECT_COLUMN_NAMES.len();
/// Rows per INSERT statement while planning (18 × 64 parameters, well under SQLite's 32,766).
pub(super) const ROWS_PER_INSERT: usize = 64;

/// `INSERT INTO objects (...) VALUES (?, ...), (?, ...)` for `rows` rows.
pub(super) fn insert_objects(rows: usize) -> String {
    let one = format!("({})", vec!["?"; OBJECT_COLUMNS].join(", "));
    format!("INSERT INTO objects ({}) VALUES {}", OBJECT_COLUMN_NAMES.join(", "), vec![one; rows].join(", "))
}

pub(super) const INSERT_RUN: &str = "INSERT INTO run (id, created_at, rekey_version, inventory_source, inventory_created, source_bucket, kms_key_arn, options_json, prices_json, estimate_json) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// `objects_todo` holds exactly the rows a run dispatches, so resuming a mostly done
/// plan starts at once instead of scanning every finished row.
pub(super) const INDEXES: &str = "CREATE INDEX objects_by_status ON objects (status);
    CREATE INDEX objects_todo ON objects (id) WHERE status = 'pending' OR (status = 'failed' AND retryable = 1);";

/// The rows a run dispatches; the WHERE matches `objects_todo`'s so SQLite uses it.
pub const TODO_WHERE: &str = "(status = 'pending' OR (status = 'failed' AND retryable = 1))";
