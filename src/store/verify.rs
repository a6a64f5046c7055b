//! The checkpoint as `rekey verify` sees it: the `done` rows (and `already_target_key`
//! ones, which a run found under the key without writing) to check, in pages or as a
//! seeded random sample, and the verdicts recorded back in batches.

use super::{sql, Checkpoint, StoreError};
use crate::units::Rng;
use crate::vocab::{Method, Verdict};
use rusqlite::{params, OptionalExtension};
use std::collections::BTreeMap;

/// A done object, with what the plan and the run recorded about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyItem {
    pub id: i64,
    pub bucket: String,
    pub key: String,
    /// The inventoried version.
    pub version_id: Option<String>,
    /// The inventoried size.
    pub size: Option<u64>,
    /// The inventoried ETag.
    pub etag: Option<String>,
    /// The inventoried storage class (None: STANDARD).
    pub storage_class: Option<String>,
    pub method: Method,
    /// The version the run wrote (copies), as S3 reported it.
    pub new_version_id: Option<String>,
    /// The inventory's IsLatest: a noncurrent version (`--versions all`) is checked by its
    /// version id.
    pub is_latest: Option<bool>,
}

/// The rows `rekey verify` checks: re-encrypted by the run, or found under the key.
const VERIFIABLE: &str = "status IN ('done', 'already_target_key')";

/// One verdict to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictRecord {
    pub id: i64,
    pub verdict: Verdict,
    /// What differed, on one line; None when ok.
    pub detail: Option<String>,
    /// RFC 3339.
    pub verified_at: String,
}

const ITEM_COLUMNS: &str = "id, bucket, key, version_id, size, etag, storage_class, method, new_version_id, is_latest";

fn item(r: &rusqlite::Row<'_>) -> rusqlite::Result<VerifyItem> {
    let method: String = r.get(7)?;
    Ok(VerifyItem {
        id: r.get(0)?,
        bucket: r.get(1)?,
        key: r.get(2)?,
        version_id: r.get(3)?,
        size: r.get::<_, Option<i64>>(4)?.map(|s| s.max(0) as u64),
        etag: r.get(5)?,
        storage_class: r.get(6)?,
        method: Method::parse(&method)
            .ok_or_else(|| rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, method.into()))?,
        new_version_id: r.get(8)?,
        is_latest: r.get(9)?,
    })
}

impl Checkpoint {
    /// The number of `done` objects.
    pub fn done_count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row(&format!("SELECT COUNT(*) FROM objects WHERE {VERIFIABLE}"), [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(sql(&self.path))
    }

    /// Up to `limit` done objects with ids above `after`, in id order.
    pub fn done_page(&self, after: i64, limit: usize) -> Result<Vec<VerifyItem>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {ITEM_COLUMNS} FROM objects WHERE {VERIFIABLE} AND id > ?1 ORDER BY id LIMIT ?2"
            ))
            .map_err(sql(&self.path))?;
        let rows = stmt.query_map(params![after, limit as i64], item).map_err(sql(&self.path))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql(&self.path))
    }

    /// A uniform random sample of `n` done objects (all of them when there are fewer), in
    /// id order. The same seed on the same checkpoint gives the same sample. Only the
    /// sample's ids are held while choosing (reservoir sampling over the done ids).
    pub fn done_sample(&self, n: u64, seed: u64) -> Result<Vec<VerifyItem>, StoreError> {
        let mut rng = Rng::new(seed);
        let mut chosen: Vec<i64> = Vec::with_capacity(n.min(1 << 20) as usize);
        {
            let mut stmt = self
                .conn
                .prepare_cached(&format!("SELECT id FROM objects WHERE {VERIFIABLE} ORDER BY id"))
                .map_err(sql(&self.path))?;
            let ids = stmt.query_map([], |r| r.get::<_, i64>(0)).map_err(sql(&self.path))?;
            for (seen, id) in ids.enumerate() {
                let id = id.map_err(sql(&self.path))?;
                if (seen as u64) < n {
                    chosen.push(id);
                } else {
                    let j = rng.below(seen as u64 + 1);
                    if j < n {
                        chosen[j as usize] = id;
                    }
                }
            }
        }
        chosen.sort_unstable();
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {ITEM_COLUMNS} FROM objects WHERE id = ?1"))
            .map_err(sql(&self.path))?;
        let mut items = Vec::with_capacity(chosen.len());
        for id in chosen {
            if let Some(i) = stmt.query_row([id], item).optional().map_err(sql(&self.path))? {
                items.push(i);
            }
        }
        Ok(items)
    }

    /// Record verdicts, one transaction per call.
    pub fn record_verdicts(&self, batch: &[VerdictRecord]) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(sql(&self.path))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE objects SET verify_verdict = ?2, verify_detail = ?3, verified_at = ?4 WHERE id = ?1",
                )
                .map_err(sql(&self.path))?;
            for v in batch {
                stmt.execute(params![v.id, v.verdict.as_str(), v.detail, v.verified_at]).map_err(sql(&self.path))?;
            }
        }
        tx.commit().map_err(sql(&self.path))
    }

    /// Objects by their last recorded verdict (rows never verified are not counted).
    pub fn verdict_counts(&self) -> Result<BTreeMap<Verdict, u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT verify_verdict, COUNT(*) FROM objects WHERE verify_verdict IS NOT NULL GROUP BY 1")
            .map_err(sql(&self.path))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, Verdict>(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(sql(&self.path))?;
        rows.collect::<Result<_, _>>().map_err(sql(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{PlanWriter, RunRecord};

    /// A checkpoint of `n` planned objects (even ids updates, odd ids copies), every third done.
    fn checkpoint(dir: &std::path::Path, n: usize) -> Checkpoint {
        let path = dir.join("v.rekey");
        let run = RunRecord {
            inventory_source: "test".into(),
            inventory_created: None,
            source_bucket: Some("b".into()),
            kms_key_arn: None,
            options_json: "{}".into(),
            prices_json: "{}".into(),
            estimate_json: "{}".into(),
        };
        PlanWriter::create(&path, false).unwrap().finish(&run).unwrap();
        let cp = Checkpoint::open(&path).unwrap();
        for i in 1..=n as i64 {
            cp.connection()
                .execute(
                    "INSERT INTO objects (id, bucket, key, size, is_delete_marker, legal_hold, method, status)
                     VALUES (?1, 'b', ?2, ?1, 0, 0, ?3, CASE WHEN ?1 % 3 = 0 THEN 'done' ELSE 'pending' END)",
                    params![i, format!("k{i:03}"), if i % 2 == 0 { "update" } else { "copy" }],
                )
                .unwrap();
        }
        cp
    }

    #[test]
    fn pages_cover_every_done_row_once_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let cp = checkpoint(dir.path(), 100);
        assert_eq!(cp.done_count().unwrap(), 33);
        let (mut after, mut seen) = (0, Vec::new());
        loop {
            let page = cp.done_page(after, 7).unwrap();
            let Some(last) = page.last() else { break };
            after = last.id;
            seen.extend(page.into_iter().map(|i| i.id));
        }
        assert_eq!(seen, (1..=100).filter(|id| id % 3 == 0).collect::<Vec<i64>>());
    }

    #[test]
    fn a_sample_is_distinct_done_rows_and_the_same_for_the_same_seed() {
        let dir = tempfile::tempdir().unwrap();
        let cp = checkpoint(dir.path(), 100);
        let a: Vec<i64> = cp.done_sample(10, 7).unwrap().into_iter().map(|i| i.id).collect();
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "distinct and sorted: {a:?}");
        assert!(a.iter().all(|id| id % 3 == 0), "only done rows: {a:?}");
        let b: Vec<i64> = cp.done_sample(10, 7).unwrap().into_iter().map(|i| i.id).collect();
        assert_eq!(a, b);
        let c: Vec<i64> = cp.done_sample(10, 8).unwrap().into_iter().map(|i| i.id).collect();
        assert_ne!(a, c, "another seed, another sample");
        assert_eq!(cp.done_sample(1000, 7).unwrap().len(), 33, "a sample larger than the rows is all of them");
        assert!(cp.done_sample(0, 7).unwrap().is_empty());
    }

    #[test]
    fn verdicts_are_recorded_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let cp = checkpoint(dir.path(), 10);
        let at = crate::units::now_rfc3339();
        cp.record_verdicts(&[
            VerdictRecord { id: 3, verdict: Verdict::Ok, detail: None, verified_at: at.clone() },
            VerdictRecord { id: 6, verdict: Verdict::Mismatch, detail: Some("storage class".into()), verified_at: at },
        ])
        .unwrap();
        let counts = cp.verdict_counts().unwrap();
        assert_eq!(counts, BTreeMap::from([(Verdict::Ok, 1), (Verdict::Mismatch, 1)]));
        let detail: Option<String> =
            cp.connection().query_row("SELECT verify_detail FROM objects WHERE id = 6", [], |r| r.get(0)).unwrap();
        assert_eq!(detail.as_deref(), Some("storage class"));
    }
}
