//! A pass's outcome as one serialisable summary (`rekey.verify/1`): what the CLI prints
//! as a table or as JSON.

use super::check::Expect;
use super::pass::Tally;
use super::replaced::DeleteTally;
use crate::store::{ReplacedCounts, Verdict};
use serde::Serialize;
use std::collections::BTreeMap;

/// An object that is not as planned.
#[derive(Debug, Serialize)]
pub struct Problem {
    pub key: String,
    pub version_id: Option<String>,
    pub method: &'static str,
    pub verdict: Verdict,
    pub detail: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub schema: &'static str,
    pub state: String,
    pub kms_key_arn: String,
    pub bucket_key: bool,
    /// Done objects in the checkpoint.
    pub done: u64,
    pub sample: Option<u64>,
    pub checked: u64,
    pub by_verdict: BTreeMap<&'static str, u64>,
    pub not_ok: u64,
    /// The first objects (in plan order) that are not ok.
    pub listed: Vec<Problem>,
    pub interrupted: bool,
    pub elapsed_secs: f64,
    /// The versions copies replaced (noncurrent, under the old encryption), as the
    /// checkpoint knows them after this verify.
    pub replaced_versions: ReplacedCounts,
    /// What `--delete-replaced-versions` did (None when not asked).
    pub deleted_replaced: Option<DeleteTally>,
}

impl Summary {
    /// `state` is the checkpoint's path as shown; `sample` the size asked for.
    pub fn new(
        tally: Tally,
        expect: &Expect,
        state: String,
        done: u64,
        sample: Option<u64>,
        elapsed_secs: f64,
    ) -> Summary {
        Summary {
            schema: "rekey.verify/1",
            state,
            kms_key_arn: expect.key_arn.clone(),
            bucket_key: expect.bucket_key,
            done,
            sample,
            checked: tally.checked,
            by_verdict: tally.by_verdict.iter().map(|(v, n)| (v.as_str(), *n)).collect(),
            not_ok: tally.not_ok(),
            listed: tally
                .listed
                .into_values()
                .map(|c| Problem {
                    key: c.item.key,
                    version_id: c.item.version_id,
                    method: c.item.method.as_str(),
                    verdict: c.finding.verdict,
                    detail: c.finding.detail,
                })
                .collect(),
            interrupted: tally.interrupted,
            elapsed_secs,
            replaced_versions: ReplacedCounts::default(),
            deleted_replaced: None,
        }
    }

    /// The not-ok counts, e.g. `5 mismatch, 1 missing`.
    pub fn not_ok_counts(&self) -> String {
        [Verdict::Mismatch, Verdict::Missing, Verdict::Error]
            .iter()
            .filter_map(|v| self.by_verdict.get(v.as_str()).filter(|n| **n > 0).map(|n| format!("{n} {}", v.as_str())))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
