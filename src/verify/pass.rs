//! One verify pass: check every selected object, `concurrency` at a time, and record each
//! verdict in the checkpoint in batched transactions. A stop signal (Ctrl-C) ends it with
//! the verdicts so far recorded.

use super::bounded::run_bounded;
use super::check::{check, Expect, Finding};
use super::select::Selection;
use crate::exec::RetryPolicy;
use crate::s3::ObjectStore;
use crate::store::{Checkpoint, StoreError, Verdict, VerdictRecord, VerifyItem};
use crate::units::{now_rfc3339, thousands};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Verdict rows per transaction, and the longest a verdict waits to be recorded.
const BATCH_ROWS: usize = 500;
const BATCH_AGE: Duration = Duration::from_secs(1);
/// Objects listed in the summary.
pub const LISTED: usize = 10;
/// A progress line on stderr this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// How a pass runs.
#[derive(Debug, Clone)]
pub struct PassOptions {
    /// Objects checked at once (at least one).
    pub concurrency: usize,
    /// The schedule each S3 call is retried on.
    pub policy: RetryPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Every answer so far is a refusal: a permission or setup problem, not a verdict on
    /// the objects.
    #[error(
        "stopped: S3 refused the first HEAD ({why}); the role running rekey verify needs \
         s3:GetObject, s3:GetObjectVersion, s3:GetObjectTagging and s3:GetObjectVersionTagging \
         on the objects (and the endpoint and region must be the bucket's)"
    )]
    Refused { why: String },
    /// The first delete of a replaced version (or its HEAD) was refused.
    #[error(
        "stopped: S3 refused to delete the first replaced version ({why}); --delete-replaced-versions \
         needs s3:DeleteObjectVersion (and s3:GetObjectVersion) on the objects"
    )]
    RefusedDelete { why: String },
    #[error("recording verdicts")]
    Record(#[source] StoreError),
    #[error(transparent)]
    Read(StoreError),
    #[error("a verify task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// One object and what its checks found.
#[derive(Debug)]
pub struct Checked {
    pub item: VerifyItem,
    pub finding: Finding,
}

/// What a pass found.
#[derive(Debug)]
pub struct Tally {
    pub checked: u64,
    /// Every verdict, with a count (0 included).
    pub by_verdict: BTreeMap<Verdict, u64>,
    /// The first [`LISTED`] objects (by id, i.e. plan order) that are not ok.
    pub listed: BTreeMap<i64, Checked>,
    pub interrupted: bool,
    /// Objects S3 answered for (any verdict but error).
    reachable: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            checked: 0,
            by_verdict: Verdict::ALL.into_iter().map(|v| (v, 0)).collect(),
            listed: BTreeMap::new(),
            interrupted: false,
            reachable: 0,
        }
    }

    pub fn not_ok(&self) -> u64 {
        self.checked - self.by_verdict[&Verdict::Ok]
    }

    /// A refusal before any object was reachable stops the pass instead of sending every
    /// HEAD, and records no verdict for it.
    fn refuse_early(&mut self, f: &Finding) -> Result<(), VerifyError> {
        match &f.refused {
            Some(why) if self.reachable == 0 => return Err(VerifyError::Refused { why: why.clone() }),
            _ if f.verdict != Verdict::Error => self.reachable += 1,
            _ => {}
        }
        Ok(())
    }

    fn add(&mut self, c: Checked) {
        self.checked += 1;
        *self.by_verdict.entry(c.finding.verdict).or_default() += 1;
        if c.finding.verdict != Verdict::Ok {
            self.listed.insert(c.item.id, c);
            if self.listed.len() > LISTED {
                self.listed.pop_last();
            }
        }
    }
}

/// Verdicts waiting to be recorded, flushed by size or age.
struct Recorder<'a> {
    cp: &'a Checkpoint,
    batch: Vec<VerdictRecord>,
    flushed: Instant,
}

impl Recorder<'_> {
    fn push(&mut self, c: &Checked) -> Result<(), VerifyError> {
        self.batch.push(VerdictRecord {
            id: c.item.id,
            verdict: c.finding.verdict,
            detail: c.finding.detail.clone(),
            verified_at: now_rfc3339(),
        });
        if self.batch.len() >= BATCH_ROWS || self.flushed.elapsed() >= BATCH_AGE {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), VerifyError> {
        self.cp.record_verdicts(&self.batch).map_err(VerifyError::Record)?;
        self.batch.clear();
        self.flushed = Instant::now();
        Ok(())
    }
}

/// Check every object of `selection` (`total` of them, for progress lines) through
/// `store`, recording verdicts in `cp`. When `stop` completes, the pass ends: the verdicts
/// so far are recorded and the tally says `interrupted`.
pub async fn verify_all<S: ObjectStore>(
    store: Arc<S>,
    cp: &Checkpoint,
    mut selection: Selection,
    total: u64,
    expect: Arc<Expect>,
    opts: &PassOptions,
    stop: impl Future<Output = ()>,
) -> Result<Tally, VerifyError> {
    let mut tally = Tally::new();
    let mut recorder = Recorder { cp, batch: Vec::with_capacity(BATCH_ROWS), flushed: Instant::now() };
    let mut reported = Instant::now();
    let work = |item: VerifyItem| {
        let (store, expect, policy) = (store.clone(), expect.clone(), opts.policy);
        async move {
            let finding = check(store.as_ref(), &policy, &expect, &item).await;
            Checked { item, finding }
        }
    };
    let done = |c: Checked| {
        tally.refuse_early(&c.finding)?;
        recorder.push(&c)?;
        tally.add(c);
        if reported.elapsed() >= PROGRESS_EVERY {
            let (n, of, bad) = (thousands(tally.checked), thousands(total), thousands(tally.not_ok()));
            eprintln!("rekey: verified {n} of {of}, {bad} not ok");
            reported = Instant::now();
        }
        Ok(())
    };
    let next = || selection.next(cp).map_err(VerifyError::Read);
    tally.interrupted = run_bounded(opts.concurrency, next, work, done, stop).await?;
    recorder.flush()?;
    Ok(tally)
}
