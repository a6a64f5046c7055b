//! The checkpoint writer: one plain thread that owns the SQLite connection and commits
//! outcomes in batches of at most [`MAX_BATCH`] rows or [`MAX_DELAY`], whichever comes
//! first, each with the current progress document.
//!
//! SQLite is synchronous, so it lives off the async runtime; tasks hand it outcomes over
//! an unbounded channel (memory is bounded by the number of live tasks, each of which
//! sends one outcome). A crash loses at most the batch being gathered: those objects
//! stay pending, and redoing them is safe (If-Match, then HEAD).
//!
//! No outcome wakes the writer. It never waits on the channel (every send would then wake
//! it, a futex call per outcome: 5 % of the CPU at a few thousand objects/s; and at a paced
//! trickle, where every outcome is the first of a batch, one wake-up per batch) but looks
//! at it: when idle every [`MAX_DELAY`], and while gathering when the batch should be full
//! at the rate it fills (by the batch's deadline at the latest), taking all that arrived at
//! once. An upload record is the exception: its task waits for the commit, so
//! [`WriterSender::send`] wakes the writer for it at once.

use super::progress::Progress;
use super::{StopReason, Stopper};
use crate::store::{OutcomeRecord, OutcomeWriter, StoreError};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const MAX_BATCH: usize = 1000;
pub const MAX_DELAY: Duration = Duration::from_millis(250);
/// While gathering a batch, the writer looks again when the batch should be full at the
/// rate it is filling, and at the latest at this (the batch's own deadline): outcomes that
/// trickle in cost a few looks per batch. Each wake-up of a parked thread cost 40–70 µs of
/// CPU on the 2-core test machine, so the former 5 ms tick cost a paced run at 1,000
/// objects/s 8 µs per object for the writer's looks alone (issue 14).
pub const GATHER_TICK: Duration = MAX_DELAY;
/// The shortest look-again while gathering.
const GATHER_MIN: Duration = Duration::from_micros(200);
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

/// The writer has stopped (its commit failed); the message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterGone;

/// The sending side of the writer's channel.
#[derive(Clone)]
pub struct WriterSender {
    tx: Sender<WriterMsg>,
    /// The writer thread, woken for upload records.
    thread: std::thread::Thread,
}

impl WriterSender {
    /// Queue a message. An outcome waits for the writer's next look (within the batch's
    /// [`MAX_DELAY`]); an upload record wakes it now.
    pub fn send(&self, msg: WriterMsg) -> Result<(), WriterGone> {
        let wake = matches!(msg, WriterMsg::Upload { .. });
        self.tx.send(msg).map_err(|_| WriterGone)?;
        if wake {
            self.thread.unpark();
        }
        Ok(())
    }

    /// A sender with no writer behind it (its messages are dropped), for tests.
    #[cfg(test)]
    pub(crate) fn detached() -> WriterSender {
        WriterSender { tx: channel().0, thread: std::thread::current() }
    }
}

pub struct CheckpointWriter {
    tx: WriterSender,
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
        let tx = WriterSender { tx, thread: join.thread().clone() };
        Ok(CheckpointWriter { tx, join })
    }

    pub fn sender(&self) -> WriterSender {
        self.tx.clone()
    }

    /// Close the channel (every sender must be dropped), flush, and return the totals.
    pub fn finish(self) -> Result<WriterStats, StoreError> {
        drop(self.tx);
        // Seen at once rather than at the next look.
        self.join.thread().unpark();
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
    // The last look that found the channel empty: a record found at the next look may
    // have waited since then, so its batch counts as begun there.
    let mut looked = Instant::now();
    loop {
        // Look for the first record of a batch without waiting on the channel: a wait
        // would have the first sender of every batch wake this thread, and at a paced
        // trickle every record is the first of a batch. Between looks it sleeps, for the
        // batch's whole delay (woken early by an upload record or by finish()), and wakes to
        // refresh progress once a second when idle.
        let first = match rx.try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) => {
                if last_progress.elapsed() >= PROGRESS_EVERY {
                    writer.record(&[], doc(&progress).as_deref())?;
                    last_progress = Instant::now();
                }
                looked = Instant::now();
                std::thread::park_timeout(MAX_DELAY);
                continue;
            }
            Err(TryRecvError::Disconnected) => break,
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
        // …then gather until the batch is full or MAX_DELAY has passed since it began (an
        // upload record commits at once), looking at what arrived when the batch should be
        // full rather than waiting on the channel, which senders would have to wake.
        let began = looked;
        let deadline = began + MAX_DELAY;
        let mut closed = false;
        while batch.len() < MAX_BATCH && !urgent {
            match rx.try_recv() {
                Ok(m) => urgent = take(m, &mut batch, &mut writer)?,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    // Sleep until the batch should be full at the rate it is filling, within
                    // [GATHER_MIN, GATHER_TICK] (a flat tick instead capped the writer's own
                    // rate at 1,000 rows per commit plus the idle).
                    let filled = now.saturating_duration_since(began);
                    let fill = filled.mul_f64((MAX_BATCH - batch.len()) as f64 / batch.len().max(1) as f64);
                    // Woken early by an upload record or by finish().
                    std::thread::park_timeout(fill.clamp(GATHER_MIN, GATHER_TICK).min(deadline - now));
                }
                Err(TryRecvError::Disconnected) => {
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
        looked = Instant::now();
        if closed {
            break;
        }
    }
    writer.record(&[], doc(&progress).as_deref())?;
    Ok(stats)
}
