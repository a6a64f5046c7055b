//! The checkpoint writer: one plain thread that owns the SQLite connection and commits
//! outcomes in batches of at most [`MAX_BATCH`] rows or [`MAX_DELAY`], whichever comes
//! first, each with the current progress document.
//!
//! SQLite is synchronous, so it lives off the async runtime; tasks hand it outcomes over
//! an unbounded channel (memory is bounded by the number of live tasks, each of which
//! sends one outcome). A crash loses at most the batch being gathered: those objects
//! stay pending, and redoing them is safe (If-Match, then HEAD).

use super::progress::Progress;
use super::{StopReason, Stopper};
use crate::store::{OutcomeRecord, OutcomeWriter, StoreError};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const MAX_BATCH: usize = 1000;
pub const MAX_DELAY: Duration = Duration::from_millis(250);
/// Progress is refreshed in the checkpoint at least this often, even with no outcomes.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    pub records: u64,
    pub batches: u64,
}

/// What tasks send the writer.
pub enum WriterMsg {
    Outcome(OutcomeRecord),
    /// A multipart upload opened (Some) or closed (None) for an object: committed before
    /// `ack` fires, so no part is copied into an upload the checkpoint does not know of.
    Upload {
        id: i64,
        upload_id: Option<String>,
        ack: tokio::sync::oneshot::Sender<()>,
    },
}

impl From<OutcomeRecord> for WriterMsg {
    fn from(o: OutcomeRecord) -> Self {
        WriterMsg::Outcome(o)
    }
}

pub struct CheckpointWriter {
    tx: Sender<WriterMsg>,
    join: JoinHandle<Result<WriterStats, StoreError>>,
}

impl CheckpointWriter {
    /// Start the writer on `state`. A failed commit stops the run
    /// ([`StopReason::Checkpoint`]) and ends the thread with the error.
    pub fn spawn(
        state: PathBuf,
        progress: Option<Arc<Progress>>,
        stop: Stopper,
    ) -> Result<CheckpointWriter, StoreError> {
        let writer = OutcomeWriter::open(&state)?;
        let (tx, rx) = channel();
        let join = std::thread::Builder::new()
            .name("rekey-checkpoint".into())
            .spawn(move || {
                let r = write_loop(writer, rx, progress);
                if let Err(e) = &r {
                    stop.stop(StopReason::Checkpoint(e.to_string()));
                }
                r
            })
            .map_err(|e| StoreError::Io { path: state.display().to_string(), source: e })?;
        Ok(CheckpointWriter { tx, join })
    }

    pub fn sender(&self) -> Sender<WriterMsg> {
        self.tx.clone()
    }

    /// Close the channel (every sender must be dropped), flush, and return the totals.
    pub fn finish(self) -> Result<WriterStats, StoreError> {
        drop(self.tx);
        self.join.join().unwrap_or_else(|_| panic!("checkpoint writer thread panicked"))
    }
}

fn write_loop(
    mut writer: OutcomeWriter,
    rx: Receiver<WriterMsg>,
    progress: Option<Arc<Progress>>,
) -> Result<WriterStats, StoreError> {
    let mut stats = WriterStats::default();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut last_progress = Instant::now();
    let doc = |p: &Option<Arc<Progress>>| p.as_ref().and_then(|p| serde_json::to_string(&p.snapshot()).ok());
    loop {
        // Wait for the first record of a batch (waking up to refresh progress)…
        let first = match rx.recv_timeout(PROGRESS_EVERY) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => {
                writer.record(&[], doc(&progress).as_deref())?;
                last_progress = Instant::now();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut acks = Vec::new();
        let mut take = |m: WriterMsg, batch: &mut Vec<OutcomeRecord>, writer: &mut OutcomeWriter| match m {
            WriterMsg::Outcome(o) => {
                batch.push(o);
                Ok::<bool, StoreError>(false)
            }
            WriterMsg::Upload { id, upload_id, ack } => {
                writer.record_upload(id, upload_id.as_deref())?;
                acks.push(ack);
                Ok(true)
            }
        };
        let mut urgent = take(first, &mut batch, &mut writer)?;
        // …then gather until the batch is full or MAX_DELAY has passed since it began
        // (an upload record commits at once).
        let deadline = Instant::now() + MAX_DELAY;
        let mut closed = false;
        while batch.len() < MAX_BATCH && !urgent {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(m) => urgent = take(m, &mut batch, &mut writer)?,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let progress_doc = if last_progress.elapsed() >= MAX_DELAY || closed { doc(&progress) } else { None };
        writer.record(&batch, progress_doc.as_deref())?;
        for ack in acks {
            let _ = ack.send(());
        }
        if progress_doc.is_some() {
            last_progress = Instant::now();
        }
        stats.records += batch.len() as u64;
        stats.batches += 1;
        batch.clear();
        if closed {
            break;
        }
    }
    writer.record(&[], doc(&progress).as_deref())?;
    Ok(stats)
}
