//! One object, one task: the requests that re-encrypt it, their retries, and the
//! [`OutcomeRecord`] that says how it ended.
//!
//! Every request first takes a slot of the in-flight window, then its tokens from the
//! KMS and S3 buckets, so at most `concurrency` tasks ever wait on the limiters (many
//! waiters on a governor limiter wake together and spin). Between attempts the task
//! holds no slot: a backoff sleep costs nothing but memory.
//!
//! How an answer is handled (issue "execution", s3-kms-facts.md §2.3, §5):
//! * success: done, with the ETag, version and key S3 reports;
//! * 412 on the copy's If-Match: HEAD. Already SSE-KMS under the key means an earlier run
//!   did it but had not recorded it (done); anything else means another writer changed
//!   the object, which is never overwritten (changed);
//! * 404: gone; InvalidObjectState: needs_restore;
//! * AccessDenied, KMS.*: open the circuit breaker; the object stays pending;
//! * throttles and transient errors: back off (full jitter) and retry, slowing the
//!   bucket that was throttled;
//! * anything else: failed, and not retried by a later run.

use super::limiter::AdaptiveLimiter;
use super::retry::RetryPolicy;
use super::{RunCounters, StopReason, Stopper};
use crate::plan::classify::Method;
use crate::s3::{CopyRequest, HeadResult, ObjectStore, S3CallError, S3ErrorKind, UpdateRequest, WriteResult};
use crate::store::{ObjectStatus, OutcomeRecord, WorkItem};
use crate::units::Rng;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{Semaphore, SemaphorePermit};

/// What every task shares.
pub struct TaskContext<S> {
    pub store: Arc<S>,
    pub kms: Arc<AdaptiveLimiter>,
    pub s3: Arc<AdaptiveLimiter>,
    /// The in-flight request window (resized by the concurrency controller).
    pub window: Arc<Semaphore>,
    pub policy: RetryPolicy,
    pub key_arn: String,
    pub bucket_key: bool,
    /// KMS requests one write causes, as the estimate assumed (≈0.01 with a Bucket Key).
    pub kms_per_write: f64,
    pub counters: Arc<RunCounters>,
    pub stop: Stopper,
    /// Slots the window controller has taken out of the window while they were busy: the
    /// tasks releasing them retire them instead (a saturated window has no idle slot).
    pub window_excess: AtomicUsize,
}

impl<S> TaskContext<S> {
    /// Give a window slot back, or retire it while the window is owed a shrink.
    pub fn release(&self, slot: SemaphorePermit<'_>) {
        if self.window_excess.fetch_update(Relaxed, Relaxed, |e| e.checked_sub(1)).is_ok() {
            slot.forget();
        }
    }
}

/// The request a task sends next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Write,
    /// After a 412: is the object already ours, or did someone else change it?
    Confirm,
}

enum Answer {
    Written(WriteResult),
    Head(HeadResult),
}

pub async fn migrate<S: ObjectStore>(ctx: &TaskContext<S>, item: WorkItem, seed: u64) -> OutcomeRecord {
    let mut rng = Rng::new(seed ^ item.id as u64);
    let mut out = OutcomeRecord {
        id: item.id,
        status: ObjectStatus::Pending,
        attempts: 0,
        error_code: None,
        last_error: None,
        retryable: false,
        note: None,
        new_etag: None,
        new_version_id: None,
        kms_key_id: None,
    };
    let mut step = Step::Write;
    loop {
        // Stopping (Ctrl-C, breaker, failure budget): no new request; the object stays pending.
        if ctx.stop.is_stopped() {
            return out;
        }
        let answer = {
            let (kms, s3) = match step {
                Step::Write => (ctx.kms_per_write, 1.0),
                Step::Confirm => (0.0, 1.0),
            };
            let ready = async {
                let slot = ctx.window.acquire().await.expect("the window is never closed");
                if kms > 0.0 {
                    ctx.kms.acquire(kms).await;
                }
                ctx.s3.acquire(s3).await;
                slot
            };
            // A stop wakes the tasks queued here: otherwise each would be paced through the
            // window and the limiters only to send nothing, holding the drain up for
            // (queued tasks / rate) seconds.
            let slot = tokio::select! {
                slot = ready => slot,
                _ = ctx.stop.stopped() => return out,
            };
            if ctx.stop.is_stopped() {
                return out;
            }
            out.attempts += 1;
            ctx.counters.requests.fetch_add(1, Relaxed);
            let sent = Instant::now();
            let answer = send(ctx, &item, step).await;
            ctx.counters.observe_latency(sent.elapsed());
            ctx.release(slot);
            answer
        };
        if answer.is_ok() {
            admitted(ctx, step);
        }
        let err = match answer {
            Ok(Answer::Written(w)) => {
                // A done row carries no error from the attempts before.
                out.status = ObjectStatus::Done;
                out.error_code = None;
                out.last_error = None;
                out.new_etag = w.etag.or_else(|| item.etag.clone());
                out.new_version_id = w.version_id;
                out.kms_key_id = w.kms_key_id;
                return finish(ctx, out, &item);
            }
            Ok(Answer::Head(h)) => {
                if h.is_kms_under(&ctx.key_arn) {
                    out.status = ObjectStatus::Done;
                    out.note = Some("head_after_412");
                    out.error_code = None;
                    out.last_error = None;
                    out.new_etag = h.etag;
                    out.new_version_id = h.version_id;
                    out.kms_key_id = h.kms_key_id;
                } else {
                    out.status = ObjectStatus::Changed;
                    out.error_code = Some("PreconditionFailed".into());
                    out.last_error =
                        Some(format!("changed since the inventory (ETag now {})", h.etag.as_deref().unwrap_or("?")));
                }
                return finish(ctx, out, &item);
            }
            Err(e) => e,
        };
        if !matches!(err.kind, S3ErrorKind::ThrottledKms | S3ErrorKind::ThrottledS3) {
            admitted(ctx, step);
        }
        out.error_code = Some(err.code.clone());
        out.last_error = Some(err.to_string());
        match err.kind {
            S3ErrorKind::PreconditionFailed if step == Step::Write => {
                step = Step::Confirm;
                continue;
            }
            S3ErrorKind::PreconditionFailed | S3ErrorKind::Rejected => {
                out.status = ObjectStatus::Failed;
                return finish(ctx, out, &item);
            }
            S3ErrorKind::NotFound => {
                out.status = ObjectStatus::Gone;
                return finish(ctx, out, &item);
            }
            S3ErrorKind::InvalidObjectState => {
                out.status = ObjectStatus::NeedsRestore;
                return finish(ctx, out, &item);
            }
            S3ErrorKind::Fatal => {
                ctx.stop.stop(StopReason::Breaker { code: err.code.clone(), message: err.message.clone() });
                return out;
            }
            S3ErrorKind::ThrottledKms => {
                ctx.counters.throttles_kms.fetch_add(1, Relaxed);
                ctx.kms.on_throttle();
            }
            S3ErrorKind::ThrottledS3 => {
                ctx.counters.throttles_s3.fetch_add(1, Relaxed);
                ctx.s3.on_throttle();
            }
            S3ErrorKind::Transient => {
                ctx.counters.transient.fetch_add(1, Relaxed);
            }
        }
        // Retryable: back off, unless the attempts are spent.
        match ctx.policy.delay(out.attempts, rng.unit()) {
            Some(delay) => {
                ctx.counters.retries.fetch_add(1, Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = ctx.stop.stopped() => return out,
                }
            }
            None => {
                out.status = ObjectStatus::Failed;
                out.retryable = true;
                return finish(ctx, out, &item);
            }
        }
    }
}

/// Tell the limiters a request got through, so a cut can use the admitted rate.
fn admitted<S>(ctx: &TaskContext<S>, step: Step) {
    if step == Step::Write && ctx.kms_per_write > 0.0 {
        ctx.kms.on_admitted(ctx.kms_per_write);
    }
    ctx.s3.on_admitted(1.0);
}

async fn send<S: ObjectStore>(ctx: &TaskContext<S>, item: &WorkItem, step: Step) -> Result<Answer, S3CallError> {
    match (step, item.method) {
        (Step::Confirm, _) => ctx.store.head(item.bucket.clone(), item.key.clone(), None).await.map(Answer::Head),
        (Step::Write, Method::Update) => ctx
            .store
            .update_encryption(UpdateRequest {
                bucket: item.bucket.clone(),
                key: item.key.clone(),
                // Pin the inventoried version while it is the current one: a version
                // written since the inventory is never touched.
                version_id: item.version_id.clone().filter(|_| item.is_latest != Some(false)),
                kms_key_arn: ctx.key_arn.clone(),
                bucket_key: ctx.bucket_key,
            })
            .await
            .map(Answer::Written),
        (Step::Write, _) => ctx
            .store
            .copy_in_place(CopyRequest {
                bucket: item.bucket.clone(),
                key: item.key.clone(),
                // Never pinned to a version: the copy must replace the current object, and
                // If-Match guarantees the current object is the one inventoried.
                if_match: item.etag.clone(),
                // S3 resets an omitted class to STANDARD, so send every other class.
                storage_class: item.storage_class.clone().filter(|c| c != "STANDARD"),
                kms_key_arn: ctx.key_arn.clone(),
                bucket_key: ctx.bucket_key,
                checksum_algorithm: item.checksum_algorithm.clone(),
            })
            .await
            .map(Answer::Written),
    }
}

/// Count a finished object; stop the run when failures pass the budget.
fn finish<S>(ctx: &TaskContext<S>, out: OutcomeRecord, item: &WorkItem) -> OutcomeRecord {
    let c = &ctx.counters;
    match out.status {
        ObjectStatus::Done => {
            c.done.fetch_add(1, Relaxed);
            c.bytes_done.fetch_add(item.size, Relaxed);
        }
        ObjectStatus::Failed => {
            let failed = c.failed.fetch_add(1, Relaxed) + 1;
            let limit = c.failure_limit.load(Relaxed);
            if failed > limit {
                ctx.stop.stop(StopReason::MaxFailures { failed, limit });
            }
        }
        ObjectStatus::Changed => {
            c.changed.fetch_add(1, Relaxed);
        }
        ObjectStatus::Gone => {
            c.gone.fetch_add(1, Relaxed);
        }
        ObjectStatus::NeedsRestore => {
            c.needs_restore.fetch_add(1, Relaxed);
        }
        ObjectStatus::Pending => {}
    }
    out
}
