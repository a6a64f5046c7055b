//! Executing a plan: `rekey run`.
//!
//! The async structure, in the order data flows:
//!
//! * the **dispatcher** ([`engine`]) pages the rows still to do out of the checkpoint and
//!   spawns one task per object, with a bound on live tasks;
//! * each **task** ([`task`]) sends its requests through the in-flight window and the two
//!   [`limiter`]s (KMS and S3 token buckets that adapt to throttling; the KMS one opens
//!   in slow start, probing the shared quota from below), retries on the
//!   [`retry`] schedule, and sends one outcome over a channel;
//! * the **writer** ([`writer`]), a plain thread owning the SQLite connection, commits
//!   outcomes in batches (1,000 rows or 250 ms) together with a progress document that
//!   `rekey status` reads from another process;
//! * the whole run executes on a runtime with one worker per 5,000 requests/s of its
//!   ceiling ([`runtime`]): waiting on two workers costs more than waiting on one;
//! * a **controller** sizes the in-flight window (Little's law on the quota, or by trial
//!   to what the client drives when the quota is out of reach), and the
//!   [`progress`] reporter draws bars or log lines.
//!
//! Stopping (Ctrl-C, the circuit breaker, the failure budget) goes through one
//! [`Stopper`]: the dispatcher stops, tasks send no new request, in-flight requests finish
//! and are recorded, and objects not finished stay pending for the next run.

pub mod config;
pub mod engine;
pub mod kms_decision;
pub mod limiter;
pub mod progress;
pub mod redecide;
pub mod retry;
pub mod runtime;
pub mod task;
pub mod writer;

pub use config::{RunConfigError, RunOverrides};
pub use engine::{run, FailureBudget, RunConfig, RunReport};
pub use retry::RetryPolicy;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Why a run stopped before finishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Ctrl-C (or SIGTERM).
    Interrupted,
    /// AccessDenied or a KMS key S3 cannot use: no object can succeed.
    Breaker { code: String, message: String },
    /// More objects failed than `--max-failures` allows.
    MaxFailures { failed: u64, limit: u64 },
    /// The checkpoint could not be written (disk full, …).
    Checkpoint(String),
}

/// One stop signal for the whole run; the first reason wins.
///
/// Every request checks it, so the check is one atomic load; the watch channel holds the
/// reason and wakes those waiting in [`Stopper::stopped`] (tasks asleep in a backoff or
/// waiting for a row, the dispatcher, the controller; the controller then closes the
/// window and the limiters, which lets the tasks waiting there go).
#[derive(Clone)]
pub struct Stopper {
    stopped: Arc<AtomicBool>,
    tx: watch::Sender<Option<StopReason>>,
}

impl Default for Stopper {
    fn default() -> Self {
        Stopper { stopped: Arc::new(AtomicBool::new(false)), tx: watch::Sender::new(None) }
    }
}

impl Stopper {
    pub fn stop(&self, reason: StopReason) {
        self.tx.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                // Set under the channel's lock, before the waiters are woken: whoever sees
                // the flag (or wakes) then finds the reason.
                self.stopped.store(true, Ordering::Release);
                true
            } else {
                false
            }
        });
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.tx.borrow().clone()
    }

    /// Resolves once the run is told to stop.
    pub async fn stopped(&self) {
        if self.is_stopped() {
            return;
        }
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|r| r.is_some()).await;
    }
}

/// Live counters of a run, shared by tasks, the writer and the progress reporter.
#[derive(Debug, Default)]
pub struct RunCounters {
    pub dispatched: AtomicU64,
    pub done: AtomicU64,
    pub failed: AtomicU64,
    pub changed: AtomicU64,
    pub gone: AtomicU64,
    pub needs_restore: AtomicU64,
    pub already_target_key: AtomicU64,
    pub other_kms_key: AtomicU64,
    /// Objects a HEAD showed need nothing or cannot be done (`exec::redecide`).
    pub skipped: AtomicU64,
    pub bytes_done: AtomicU64,
    pub requests: AtomicU64,
    /// Requests that cost KMS requests (every write but a Bucket Key's share): what KMS
    /// throttles are a share of.
    pub kms_requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttles_kms: AtomicU64,
    pub throttles_s3: AtomicU64,
    pub transient: AtomicU64,
    /// Failures allowed before the run stops.
    pub failure_limit: AtomicU64,
    /// Request latency, exponentially weighted, in microseconds.
    pub latency_us: AtomicU64,
    /// The in-flight window's current size.
    pub window: AtomicU64,
}

impl RunCounters {
    pub fn observe_latency(&self, d: Duration) {
        let sample = d.as_micros().min(u64::MAX as u128) as u64;
        // EWMA with weight 1/16; a lost update under contention only delays it a little.
        let old = self.latency_us.load(Relaxed);
        let new = if old == 0 { sample } else { old - old / 16 + sample / 16 };
        self.latency_us.store(new.max(1), Relaxed);
    }

    pub fn finished(&self) -> u64 {
        self.done.load(Relaxed)
            + self.failed.load(Relaxed)
            + self.changed.load(Relaxed)
            + self.gone.load(Relaxed)
            + self.needs_restore.load(Relaxed)
            + self.already_target_key.load(Relaxed)
            + self.other_kms_key.load(Relaxed)
            + self.skipped.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_is_seen_by_the_flag_and_wakes_waiters_and_the_first_reason_wins() {
        let stop = Stopper::default();
        assert!(!stop.is_stopped());
        let waiter = tokio::spawn({
            let stop = stop.clone();
            async move { stop.stopped().await }
        });
        tokio::task::yield_now().await;
        stop.stop(StopReason::Interrupted);
        stop.stop(StopReason::Checkpoint("later".into()));
        assert!(stop.is_stopped());
        assert_eq!(stop.reason(), Some(StopReason::Interrupted));
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("the waiter wakes").unwrap();
        // Already stopped: resolves at once.
        tokio::time::timeout(Duration::from_secs(5), stop.stopped()).await.unwrap();
    }
}
