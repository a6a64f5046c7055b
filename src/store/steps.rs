//! The bucket-level steps of `rekey finish` (the bucket's default encryption, the
//! enforcing policy statement), one row per bucket and step in `bucket_steps`: what the
//! bucket had before, what was set, and when. `rekey status` shows them.

use super::{sql, Checkpoint, StoreError};
use crate::vocab::BucketStep;
use rusqlite::params;

/// One step done on one bucket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BucketStepRecord {
    pub bucket: String,
    pub step: BucketStep,
    /// RFC 3339.
    pub done_at: String,
    /// What the bucket had before (None: nothing).
    pub before: Option<String>,
    /// What rekey set.
    pub after: String,
}

impl Checkpoint {
    /// Record a step (a later `finish` of the same step on the same bucket replaces it).
    pub fn record_bucket_step(&self, r: &BucketStepRecord) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO bucket_steps (bucket, step, done_at, before, after) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![r.bucket, r.step, r.done_at, r.before, r.after],
            )
            .map(|_| ())
            .map_err(sql(&self.path))
    }

    /// Every step recorded, by bucket and step.
    pub fn bucket_steps(&self) -> Result<Vec<BucketStepRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT bucket, step, done_at, before, after FROM bucket_steps ORDER BY bucket, step")
            .map_err(sql(&self.path))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(BucketStepRecord {
                    bucket: r.get(0)?,
                    step: r.get(1)?,
                    done_at: r.get(2)?,
                    before: r.get(3)?,
                    after: r.get(4)?,
                })
            })
            .map_err(sql(&self.path))?;
        rows.collect::<Result<_, _>>().map_err(sql(&self.path))
    }
}
