//! One object, one task: the requests that re-encrypt it, their retries, and the
//! [`OutcomeRecord`] that says how it ended.
//!
//! Every request first takes a slot of the in-flight window, then its tokens from the
//! KMS and S3 buckets, so at most `concurrency` tasks ever wait on the limiters (each
//! limiter queues them, and its pacer lets them through in batches). Between attempts the
//! task holds no slot: a backoff sleep costs nothing but memory.
//!
//! How an answer is handled (issue "execution", docs/s3-facts.md §2.3, §5):
//! * success: done, with the ETag, version, key and checksum S3 reports;
//! * 412 on the copy's If-Match: HEAD. Already SSE-KMS under the key means an earlier run
//!   did it but had not recorded it (done); anything else means another writer changed
//!   the object, which is never overwritten (changed);
//! * 404: gone; InvalidObjectState: needs_restore;
//! * an SSE-KMS row (`--from-key` / `--rekey-kms`) is HEADed first, and [`kms_decision`]
//!   says whether to update it, or to end it as already_target_key, other_kms_key or
//!   changed (its ETag is not the inventory's) without a write;
//! * AccessDenied, KMS.*: open the circuit breaker; the object stays pending;
//! * throttles and transient errors: back off (full jitter) and retry, slowing the
//!   bucket that was throttled;
//! * anything else: failed, and not retried by a later run.
//!
//! Copies keep what S3 would drop (docs/s3-facts.md §5): the storage class is always sent
//! (but for STANDARD), the website redirect is re-sent from a HEAD (`--preserve-redirect`),
//! ACL grants are re-applied from GetObjectAcl (`--preserve-acl`), and Object Lock
//! settings are carried onto the new version (`--preserve-lock`, on by default).
//! Objects over the multipart threshold are copied part by part ([`multipart`]).

use super::kms_decision::{self, KmsDecision};
use super::limiter::AdaptiveLimiter;
use super::redecide::Redecide;
use super::retry::RetryPolicy;
use super::writer::{WriterMsg, WriterSender};
use super::{RunCounters, StopReason, Stopper};
use crate::plan::classify::{Decision, Method, SkipReason};
use crate::plan::cost::part_size;
use crate::plan::KmsSources;
use crate::s3::object_store::{CompletedPart, CreateMultipartRequest, Grants, LockSettings, PartCopyRequest};
use crate::s3::{CopyRequest, HeadResult, ObjectStore, S3CallError, S3ErrorKind, UpdateRequest, WriteResult};
use crate::store::{ObjectStatus, OutcomeRecord, Redecided, WorkItem};
use crate::units::Rng;
use futures::{StreamExt, TryStreamExt};
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{Semaphore, SemaphorePermit};

/// What a copy keeps beyond what CopyObject keeps by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fidelity {
    /// HEAD before each copy and re-send the website redirect (S3 does not copy it).
    pub preserve_redirect: bool,
    /// GetObjectAcl before each copy and re-apply the grants (a copy's ACL is private).
    pub preserve_acl: bool,
    /// Carry Object Lock retention and legal hold onto the new version.
    pub preserve_lock: bool,
}

impl Default for Fidelity {
    fn default() -> Self {
        Fidelity { preserve_redirect: false, preserve_acl: false, preserve_lock: true }
    }
}

/// The checkpoint's upload id while CreateMultipartUpload is in flight: `creating@<ms>`.
const CREATING: &str = "creating@";
/// Longer than a create's whole retry span (10 attempts, delays capped at 20 s).
const CREATE_SPAN_MS: i64 = 10 * 60_000;

/// Parts of one multipart copy in flight at once (all still under the shared window).
const PARTS_IN_FLIGHT: usize = 4;

/// What every task shares.
pub struct TaskContext<S> {
    pub store: Arc<S>,
    pub kms: Arc<AdaptiveLimiter>,
    pub s3: Arc<AdaptiveLimiter>,
    /// The in-flight request window (resized by the concurrency controller).
    pub window: Arc<Semaphore>,
    pub policy: RetryPolicy,
    pub key_arn: String,
    /// `--from-key` / `--rekey-kms`: which SSE-KMS objects move to `key_arn`.
    pub kms_sources: KmsSources,
    pub bucket_key: bool,
    /// KMS requests one write (or one copied part) causes, as the estimate assumed
    /// (≈0.01 with a Bucket Key).
    pub kms_per_write: f64,
    pub counters: Arc<RunCounters>,
    pub stop: Stopper,
    /// Slots the window controller has taken out of the window while they were busy: the
    /// tasks releasing them retire them instead (a saturated window has no idle slot).
    pub window_excess: AtomicUsize,
    pub fidelity: Fidelity,
    /// Multipart part size; None: max(512 MiB, size / 10,000), as the estimate assumed.
    pub part_size: Option<u64>,
    /// To the checkpoint writer, for multipart upload ids.
    pub writer: WriterSender,
    /// The plan assumed the objects' encryption: decide each again from a HEAD.
    pub redecide: Option<Redecide>,
}

impl<S> TaskContext<S> {
    /// Give a window slot back, or retire it while the window is owed a shrink.
    pub fn release(&self, slot: SemaphorePermit<'_>) {
        if self.window_excess.fetch_update(Relaxed, Relaxed, |e| e.checked_sub(1)).is_ok() {
            slot.forget();
        }
    }
}

/// Why a request sequence ended without an answer.
enum Halt {
    /// The run is stopping: send nothing more.
    Stopped,
    /// A final error (or retries exhausted on a retryable one).
    Failed(S3CallError),
}

/// Attempts and the last error of one object, shared by its parallel part copies.
#[derive(Default)]
struct Tally {
    attempts: AtomicU32,
    last_error: Mutex<Option<S3CallError>>,
}

pub async fn migrate<S: ObjectStore>(ctx: &TaskContext<S>, mut item: WorkItem, seed: u64) -> OutcomeRecord {
    let rng = Mutex::new(Rng::new(seed ^ item.id as u64));
    let tally = Tally::default();
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
        new_checksum: None,
        upload_id: item.upload_id.clone(),
        replaced_version_id: None,
        redecided: None,
    };
    // A listing's object is HEADed and decided again before anything is written to it.
    let first = match ctx.redecide.as_ref().filter(|r| r.head_first) {
        Some(r) => head_and_decide(ctx, r, &mut item, &tally, &rng, &mut out).await,
        None => Ok(None),
    };
    let result = match first {
        Ok(None) => match item.method {
            Method::Update => match update(ctx, &item, &tally, &rng).await {
                // The plan assumed SSE-S3 and S3 says otherwise: decide it from a HEAD.
                Err(Halt::Failed(e)) if refused_update(ctx, &e) => {
                    let r = ctx.redecide.as_ref().expect("refused_update checks it");
                    match head_and_decide(ctx, r, &mut item, &tally, &rng, &mut out).await {
                        Ok(Some(settled)) => Ok(settled),
                        Ok(None) => match item.method {
                            // The HEAD says update after all: the refusal stands.
                            Method::Update => Err(Halt::Failed(e)),
                            Method::Copy => copy(ctx, &item, &tally, &rng).await,
                            Method::MultipartCopy => multipart(ctx, &item, &tally, &rng, &mut out).await,
                        },
                        Err(h) => Err(h),
                    }
                }
                other => other,
            },
            Method::Copy => copy(ctx, &item, &tally, &rng).await,
            Method::MultipartCopy => multipart(ctx, &item, &tally, &rng, &mut out).await,
        },
        Ok(Some(settled)) => Ok(settled),
        Err(h) => Err(h),
    };
    out.attempts = tally.attempts.load(Relaxed);
    if let Some(e) = tally.last_error.lock().unwrap().take() {
        out.error_code = Some(e.code.clone());
        out.last_error = Some(e.to_string());
    }
    match result {
        Ok(Settled::Written(w)) => {
            // A done row carries no error from the attempts before.
            out.status = ObjectStatus::Done;
            out.error_code = None;
            out.last_error = None;
            out.replaced_version_id = replaced_version(&item, w.source_version_id.as_deref(), w.version_id.as_deref());
            out.new_etag = w.etag.or_else(|| item.etag.clone());
            out.new_version_id = w.version_id;
            out.kms_key_id = w.kms_key_id;
            out.new_checksum = w.checksum;
        }
        Ok(Settled::AlreadyDone(h)) => {
            out.status = ObjectStatus::Done;
            out.note = Some("head_after_412");
            out.error_code = None;
            out.last_error = None;
            out.replaced_version_id = replaced_version(&item, None, h.version_id.as_deref());
            out.new_etag = h.etag;
            out.new_version_id = h.version_id;
            out.kms_key_id = h.kms_key_id;
        }
        Ok(Settled::Skipped(reason)) => {
            out.status = ObjectStatus::Skipped;
            out.error_code = None;
            out.last_error = None;
            out.note = Some(reason.as_str());
        }
        Ok(Settled::Changed(h)) => {
            out.status = ObjectStatus::Changed;
            out.error_code = Some("PreconditionFailed".into());
            out.last_error =
                Some(format!("changed since the inventory (ETag now {})", h.etag.as_deref().unwrap_or("?")));
        }
        Ok(Settled::NotAsInventoried(why)) => {
            out.status = ObjectStatus::Changed;
            out.error_code = None;
            out.last_error = Some(why);
        }
        Ok(Settled::LeftAlone(status, h)) => {
            // Not failures: the attempts' errors (throttles before the HEAD got through) go.
            out.status = status;
            out.error_code = None;
            out.last_error = None;
            out.kms_key_id = h.kms_key_id;
        }
        Err(Halt::Stopped) => {}
        Err(Halt::Failed(e)) => match e.kind {
            S3ErrorKind::NotFound => out.status = ObjectStatus::Gone,
            S3ErrorKind::InvalidObjectState => out.status = ObjectStatus::NeedsRestore,
            S3ErrorKind::Fatal => {
                ctx.stop.stop(StopReason::Breaker { code: e.code.clone(), message: e.message.clone() });
            }
            k => {
                out.status = ObjectStatus::Failed;
                out.retryable = k.is_retryable();
            }
        },
    }
    if out.upload_id.is_some() && out.status != ObjectStatus::Done {
        // An upload is still open (its abort failed): keep the object pending so the next
        // run aborts it; a final status would take it out of the rows a run looks at.
        out.status = ObjectStatus::Pending;
    }
    finish(ctx, out, &item)
}

/// The version a copy left behind as noncurrent, under the old encryption: the one S3
/// says it read (`x-amz-copy-source-version-id`), else the inventoried version while it
/// was the current one (If-Match held the copy to its ETag). None for an update, when the
/// copy made no new version (an unversioned or suspended bucket overwrites), or when
/// neither S3 nor the inventory names the version (a lifecycle rule still covers it).
fn replaced_version(item: &WorkItem, source: Option<&str>, written: Option<&str>) -> Option<String> {
    if item.method == Method::Update {
        return None;
    }
    let written = written.filter(|v| !v.is_empty() && *v != "null")?;
    let inventoried = item.version_id.as_deref().filter(|v| !v.is_empty() && item.is_latest != Some(false));
    let replaced = source.filter(|v| !v.is_empty()).or(inventoried)?;
    (replaced != written).then(|| replaced.to_string())
}

/// How an object was settled.
enum Settled {
    Written(WriteResult),
    /// After a 412: HEAD shows it already SSE-KMS under the key (an earlier, unrecorded success).
    AlreadyDone(HeadResult),
    /// After a 412: another writer changed it. Never overwritten.
    Changed(HeadResult),
    /// An SSE-KMS candidate's HEAD shows it is not what the inventory saw (changed).
    NotAsInventoried(String),
    /// An SSE-KMS candidate's HEAD shows nothing to do: already_target_key or other_kms_key.
    LeftAlone(ObjectStatus, HeadResult),
    /// A HEAD showed it needs nothing, or cannot be done (`exec::redecide`).
    Skipped(SkipReason),
}

/// An update S3 refused as InvalidRequest (unencrypted, DSSE-KMS, SSE-C, locked) in a
/// plan that assumed the object's encryption: worth a HEAD and a new decision.
fn refused_update<S>(ctx: &TaskContext<S>, e: &S3CallError) -> bool {
    ctx.redecide.as_ref().is_some_and(|r| !r.head_first)
        && e.kind == S3ErrorKind::Rejected
        && e.code == "InvalidRequest"
}

/// HEAD the object and decide it again with the plan's rules. `Ok(None)`: go on with
/// `item.method` (possibly changed); `Ok(Some(..))`: settled without a write.
async fn head_and_decide<S: ObjectStore>(
    ctx: &TaskContext<S>,
    r: &Redecide,
    item: &mut WorkItem,
    tally: &Tally,
    rng: &Mutex<Rng>,
    out: &mut OutcomeRecord,
) -> Result<Option<Settled>, Halt> {
    let version = item.version_id.clone();
    let h =
        match request(ctx, tally, rng, 0.0, || ctx.store.head(item.bucket.clone(), item.key.clone(), version.clone()))
            .await
        {
            Ok(h) => h,
            // S3 will not HEAD an SSE-C object without its key (docs/s3-facts.md §1.6).
            Err(Halt::Failed(e)) if e.status == Some(400) => {
                let decision = Decision::Skip(SkipReason::SseC);
                out.redecided = Some(Redecided { decision, encryption: crate::inventory::EncryptionStatus::SseC });
                return Ok(Some(Settled::Skipped(SkipReason::SseC)));
            }
            Err(halt) => return Err(halt),
        };
    // Not the object the listing saw: already ours (an earlier, unrecorded run), or
    // another writer's, which is never overwritten.
    if item.etag.is_some() && h.etag != item.etag {
        return Ok(Some(settle_changed(ctx, h)));
    }
    let (decision, encryption) = r.decide(item, &h);
    out.redecided = Some(Redecided { decision, encryption });
    match decision {
        Decision::Skip(reason) => Ok(Some(Settled::Skipped(reason))),
        Decision::Migrate(method) => {
            item.method = method;
            // An SSE-KMS object that --from-key / --rekey-kms made a candidate goes through
            // the key decision of `update` like an inventoried one.
            item.encryption = Some(encryption.as_str().to_string());
            if let Some(size) = h.content_length {
                item.size = size;
            }
            // What a listing does not say, the copy needs: the lock it carries over.
            if h.lock.mode.is_some() || h.lock.legal_hold {
                item.lock_mode = h.lock.mode.clone().map(|m| m.to_ascii_uppercase());
                item.lock_retain_until = h.lock.retain_until.clone();
                item.legal_hold = h.lock.legal_hold;
            }
            if item.checksum_algorithm.is_none() {
                item.checksum_algorithm = h.checksum_algorithm.clone();
            }
            Ok(None)
        }
    }
}

async fn update<S: ObjectStore>(
    ctx: &TaskContext<S>,
    item: &WorkItem,
    tally: &Tally,
    rng: &Mutex<Rng>,
) -> Result<Settled, Halt> {
    // Pin the inventoried version: a version written since is never touched, and a
    // noncurrent version (`--versions all`) is updated in place and stays noncurrent.
    let version_id = item.version_id.clone().filter(|v| !v.is_empty());
    let mut kms = ctx.kms_per_write;
    if item.encryption.as_deref() == Some("SSE-KMS") {
        let h =
            request(ctx, tally, rng, 0.0, || ctx.store.head(item.bucket.clone(), item.key.clone(), version_id.clone()))
                .await?;
        match kms_decision::decide(&h, item.etag.as_deref(), &ctx.key_arn, &ctx.kms_sources) {
            KmsDecision::Update => {}
            KmsDecision::AlreadyTarget => return Ok(Settled::LeftAlone(ObjectStatus::AlreadyTargetKey, h)),
            KmsDecision::OtherKey => return Ok(Settled::LeftAlone(ObjectStatus::OtherKmsKey, h)),
            KmsDecision::Changed(why) => return Ok(Settled::NotAsInventoried(why)),
        }
        // S3 decrypts the data key under the old key before encrypting it under the new
        // one: paced as two KMS requests, as the estimate costed it (docs/cost-model.md).
        kms *= 2.0;
    }
    let req = UpdateRequest {
        bucket: item.bucket.clone(),
        key: item.key.clone(),
        version_id,
        kms_key_arn: ctx.key_arn.clone(),
        bucket_key: ctx.bucket_key,
    };
    let w = request(ctx, tally, rng, kms, || ctx.store.update_encryption(req.clone())).await?;
    Ok(Settled::Written(w))
}

async fn copy<S: ObjectStore>(
    ctx: &TaskContext<S>,
    item: &WorkItem,
    tally: &Tally,
    rng: &Mutex<Rng>,
) -> Result<Settled, Halt> {
    let mut website_redirect = None;
    if ctx.fidelity.preserve_redirect {
        let h = request(ctx, tally, rng, 0.0, || ctx.store.head(item.bucket.clone(), item.key.clone(), None)).await?;
        if item.etag.is_some() && h.etag != item.etag {
            return Ok(settle_changed(ctx, h));
        }
        website_redirect = h.website_redirect;
    }
    let grants = preserved_grants(ctx, item, tally, rng).await?;
    let req = CopyRequest {
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
        website_redirect,
        lock: preserved_lock(ctx, item),
        grants,
    };
    match request(ctx, tally, rng, ctx.kms_per_write, || ctx.store.copy_in_place(req.clone())).await {
        Ok(w) => Ok(Settled::Written(w)),
        Err(Halt::Failed(e)) if e.kind == S3ErrorKind::PreconditionFailed => {
            let h =
                request(ctx, tally, rng, 0.0, || ctx.store.head(item.bucket.clone(), item.key.clone(), None)).await?;
            Ok(settle_changed(ctx, h))
        }
        Err(h) => Err(h),
    }
}

/// The object is not what the inventory saw: already ours, or someone else's change.
fn settle_changed<S>(ctx: &TaskContext<S>, h: HeadResult) -> Settled {
    if h.is_kms_under(&ctx.key_arn) {
        Settled::AlreadyDone(h)
    } else {
        Settled::Changed(h)
    }
}

fn preserved_lock<S>(ctx: &TaskContext<S>, item: &WorkItem) -> Option<LockSettings> {
    let lock = LockSettings {
        mode: item.lock_mode.clone().filter(|m| !m.is_empty()),
        retain_until: item.lock_retain_until.clone().filter(|t| !t.is_empty()),
        legal_hold: item.legal_hold,
    };
    (ctx.fidelity.preserve_lock && !lock.is_empty()).then_some(lock)
}

async fn preserved_grants<S: ObjectStore>(
    ctx: &TaskContext<S>,
    item: &WorkItem,
    tally: &Tally,
    rng: &Mutex<Rng>,
) -> Result<Option<Grants>, Halt> {
    if !ctx.fidelity.preserve_acl {
        return Ok(None);
    }
    request(ctx, tally, rng, 0.0, || ctx.store.get_grants(item.bucket.clone(), item.key.clone(), None)).await
}

/// An object over the multipart threshold: HEAD and tags (UploadPartCopy copies bytes
/// only, so everything else is set on CreateMultipartUpload), create, copy the parts in
/// parallel under If-Match, complete. Any failure or stop aborts the upload, so no
/// orphaned parts keep costing storage; the upload id is committed to the checkpoint
/// before the first part, so even a crash leaves it for the next run to abort.
async fn multipart<S: ObjectStore>(
    ctx: &TaskContext<S>,
    item: &WorkItem,
    tally: &Tally,
    rng: &Mutex<Rng>,
    out: &mut OutcomeRecord,
) -> Result<Settled, Halt> {
    if let Some(leftover) = item.upload_id.clone() {
        abort_leftovers(ctx, item, tally, rng, leftover).await?;
        if log_upload(ctx, item.id, None).await {
            out.upload_id = None;
        }
    }
    let head = request(ctx, tally, rng, 0.0, || ctx.store.head(item.bucket.clone(), item.key.clone(), None)).await?;
    if item.etag.is_some() && head.etag != item.etag {
        return Ok(settle_changed(ctx, head));
    }
    // The parts are read from this version (under If-Match): the one the upload replaces.
    let source_version_id = head.version_id.clone();
    let tags =
        request(ctx, tally, rng, 0.0, || ctx.store.get_tags(item.bucket.clone(), item.key.clone(), None)).await?;
    let grants = preserved_grants(ctx, item, tally, rng).await?;
    let size = head.content_length.unwrap_or(item.size);
    let create = CreateMultipartRequest {
        bucket: item.bucket.clone(),
        key: item.key.clone(),
        kms_key_arn: ctx.key_arn.clone(),
        bucket_key: ctx.bucket_key,
        storage_class: item.storage_class.clone().filter(|c| c != "STANDARD"),
        checksum_algorithm: item.checksum_algorithm.clone().or_else(|| head.checksum_algorithm.clone()),
        lock: preserved_lock(ctx, item),
        source: head,
        tags,
        grants,
    };
    let upload = open_upload(ctx, item, tally, rng, out, create).await?;
    match copy_parts_and_complete(ctx, item, tally, rng, &upload, size).await {
        Ok(w) => {
            out.upload_id = None;
            Ok(Settled::Written(WriteResult { source_version_id: w.source_version_id.or(source_version_id), ..w }))
        }
        Err(halt) => {
            // Abort whatever happened, even when stopping: an open upload keeps costing.
            if abort_now(ctx, item, &upload).await && log_upload(ctx, item.id, None).await {
                out.upload_id = None;
            }
            match halt {
                // If-Match failed on a part or on Complete: the object changed under us, or was
                // already done. NoSuchUpload likewise needs a look: a retried Complete whose
                // first attempt succeeded finds its upload gone. HEAD settles both (a deleted
                // object answers 404 there, and is `gone`).
                Halt::Failed(e) if matches!(e.kind, S3ErrorKind::PreconditionFailed | S3ErrorKind::NotFound) => {
                    let h =
                        request(ctx, tally, rng, 0.0, || ctx.store.head(item.bucket.clone(), item.key.clone(), None))
                            .await?;
                    Ok(settle_changed(ctx, h))
                }
                h => Err(h),
            }
        }
    }
}

/// Abort an earlier run's upload of this object. A `creating@MS` marker means that run
/// died between CreateMultipartUpload and recording the id: find the upload it may have
/// opened (this key, initiated since the marker) and abort that.
async fn abort_leftovers<S: ObjectStore>(
    ctx: &TaskContext<S>,
    item: &WorkItem,
    tally: &Tally,
    rng: &Mutex<Rng>,
    leftover: String,
) -> Result<(), Halt> {
    let leftovers = match leftover.strip_prefix(CREATING) {
        None => vec![leftover],
        Some(since) => {
            let since: i64 = since.parse().unwrap_or(0);
            let open =
                request(ctx, tally, rng, 0.0, || ctx.store.list_uploads(item.bucket.clone(), item.key.clone())).await?;
            // The create was sent within its retry span after the marker; a minute of
            // slack each side for clock skew. Uploads outside it are someone else's.
            let until = since + CREATE_SPAN_MS + 60_000;
            open.into_iter()
                .filter(|u| (since - 60_000..=until).contains(&u.initiated_ms))
                .map(|u| u.upload_id)
                .collect()
        }
    };
    for upload in leftovers {
        match request(ctx, tally, rng, 0.0, || {
            ctx.store.abort_multipart(item.bucket.clone(), item.key.clone(), upload.clone())
        })
        .await
        {
            Ok(()) => {}
            Err(Halt::Failed(e)) if e.kind == S3ErrorKind::NotFound => {}
            Err(h) => return Err(h),
        }
    }
    Ok(())
}

/// CreateMultipartUpload, with its id committed to the checkpoint before any part is
/// copied. A `creating@MS` marker is committed before the create, so that a crash before
/// the id is recorded still leaves a trace the next run can follow ([`abort_leftovers`]).
async fn open_upload<S: ObjectStore>(
    ctx: &TaskContext<S>,
    item: &WorkItem,
    tally: &Tally,
    rng: &Mutex<Rng>,
    out: &mut OutcomeRecord,
    create: CreateMultipartRequest,
) -> Result<String, Halt> {
    let marker = format!(
        "{CREATING}{}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    );
    if !log_upload(ctx, item.id, Some(marker.clone())).await {
        // Without the marker committed, an upload created now could be lost by a crash.
        return Err(Halt::Stopped);
    }
    out.upload_id = Some(marker.clone());
    let sent_before = tally.attempts.load(Relaxed);
    let upload = match request(ctx, tally, rng, ctx.kms_per_write, || ctx.store.create_multipart(create.clone())).await
    {
        Ok(u) => u,
        Err(h) => {
            // No create was sent (stopped first): there is no upload to find later.
            if tally.attempts.load(Relaxed) == sent_before && log_upload(ctx, item.id, None).await {
                out.upload_id = None;
            }
            return Err(h);
        }
    };
    if tally.attempts.load(Relaxed) > sent_before + 1 {
        // The create was retried: an earlier attempt may have opened an upload whose answer
        // was lost. Abort every upload of this key since the marker but the one we hold.
        let since: i64 = marker[CREATING.len()..].parse().unwrap_or(0);
        let open = request(ctx, tally, rng, 0.0, || ctx.store.list_uploads(item.bucket.clone(), item.key.clone()))
            .await
            .unwrap_or_default();
        for u in open.into_iter().filter(|u| u.upload_id != upload && u.initiated_ms >= since - 60_000) {
            abort_now(ctx, item, &u.upload_id).await;
        }
    }
    if !log_upload(ctx, item.id, Some(upload.clone())).await {
        // The marker stays: the next run finds this upload by it.
        return Err(Halt::Stopped);
    }
    out.upload_id = Some(upload.clone());
    Ok(upload)
}

/// UploadPartCopy of every part, `PARTS_IN_FLIGHT` at a time, each under If-Match, then
/// CompleteMultipartUpload (also under If-Match) with the parts in order.
async fn copy_parts_and_complete<S: ObjectStore>(
    ctx: &TaskContext<S>,
    item: &WorkItem,
    tally: &Tally,
    rng: &Mutex<Rng>,
    upload: &str,
    size: u64,
) -> Result<WriteResult, Halt> {
    let part = ctx.part_size.unwrap_or_else(|| part_size(size)).max(1);
    let count = size.div_ceil(part).max(1);
    let mut parts: Vec<CompletedPart> = futures::stream::iter(0..count)
        .map(|i| {
            let req = PartCopyRequest {
                bucket: item.bucket.clone(),
                key: item.key.clone(),
                upload_id: upload.to_string(),
                part_number: i as i32 + 1,
                first: i * part,
                last: ((i + 1) * part).min(size).saturating_sub(1),
                if_match: item.etag.clone(),
            };
            async move { request(ctx, tally, rng, ctx.kms_per_write, || ctx.store.upload_part_copy(req.clone())).await }
        })
        .buffer_unordered(PARTS_IN_FLIGHT)
        .try_collect()
        .await?;
    parts.sort_by_key(|p| p.part_number);
    request(ctx, tally, rng, 0.0, || {
        ctx.store.complete_multipart(
            item.bucket.clone(),
            item.key.clone(),
            upload.to_string(),
            parts.clone(),
            item.etag.clone(),
        )
    })
    .await
}

/// AbortMultipartUpload outside the limiters and the stop signal (a few tries): it must
/// happen even while the run is stopping. False when the upload may still be open.
async fn abort_now<S: ObjectStore>(ctx: &TaskContext<S>, item: &WorkItem, upload: &str) -> bool {
    for attempt in 1..=3u32 {
        ctx.counters.requests.fetch_add(1, Relaxed);
        match ctx.store.abort_multipart(item.bucket.clone(), item.key.clone(), upload.to_string()).await {
            Ok(()) => return true,
            Err(e) if e.kind == S3ErrorKind::NotFound => return true,
            Err(e) if e.kind.is_retryable() => {
                tokio::time::sleep(ctx.policy.min_delay * attempt).await;
            }
            Err(e) => {
                tracing::warn!("could not abort upload {upload} of {}: {e}", item.key);
                return false;
            }
        }
    }
    false
}

/// Record (or clear) the object's upload id; true once it is committed. False means the
/// checkpoint writer has failed (the run is stopping).
async fn log_upload<S>(ctx: &TaskContext<S>, id: i64, upload_id: Option<String>) -> bool {
    let (ack, done) = tokio::sync::oneshot::channel();
    ctx.writer.send(WriterMsg::Upload { id, upload_id, ack }).is_ok() && done.await.is_ok()
}

/// One request, sent through the window and the limiters and retried on the
/// [`RetryPolicy`] until it succeeds, fails for good, or the run stops.
///
/// Kept whole on purpose: it is the request path every object takes, and its loop
/// (admit, send, classify, back off) reads as one state machine.
async fn request<S, T, F, Fut>(
    ctx: &TaskContext<S>,
    tally: &Tally,
    rng: &Mutex<Rng>,
    kms: f64,
    mut send: F,
) -> Result<T, Halt>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, S3CallError>>,
{
    let mut tries = 0u32;
    loop {
        // Stopping (Ctrl-C, breaker, failure budget): no new request.
        if ctx.stop.is_stopped() {
            return Err(Halt::Stopped);
        }
        // A stop wakes the tasks queued here: otherwise each would be paced through the
        // window and the limiters only to send nothing, holding the drain up for
        // (queued tasks / rate) seconds. The controller closes the window and both
        // limiters on a stop, which lets every queued task through at once to see it.
        let Ok(slot) = ctx.window.acquire().await else {
            return Err(Halt::Stopped);
        };
        if kms > 0.0 {
            ctx.kms.acquire(kms).await;
        }
        ctx.s3.acquire(1.0).await;
        if ctx.stop.is_stopped() {
            return Err(Halt::Stopped);
        }
        tries += 1;
        tally.attempts.fetch_add(1, Relaxed);
        ctx.counters.requests.fetch_add(1, Relaxed);
        if kms > 0.0 {
            ctx.counters.kms_requests.fetch_add(1, Relaxed);
        }
        let sent = Instant::now();
        let answer = send().await;
        ctx.counters.observe_latency(sent.elapsed());
        ctx.release(slot);
        let err = match answer {
            Ok(v) => {
                admitted(ctx, kms);
                return Ok(v);
            }
            Err(e) => e,
        };
        match err.kind {
            S3ErrorKind::ThrottledKms => {
                ctx.counters.throttles_kms.fetch_add(1, Relaxed);
                ctx.kms.on_throttle();
            }
            S3ErrorKind::ThrottledS3 => {
                ctx.counters.throttles_s3.fetch_add(1, Relaxed);
                ctx.s3.on_throttle();
            }
            S3ErrorKind::Transient => {
                admitted(ctx, kms);
                ctx.counters.transient.fetch_add(1, Relaxed);
            }
            _ => admitted(ctx, kms),
        }
        *tally.last_error.lock().unwrap() = Some(err.clone());
        if !err.kind.is_retryable() {
            return Err(Halt::Failed(err));
        }
        // Retryable: back off, unless the attempts are spent.
        let u = rng.lock().unwrap().unit();
        match ctx.policy.delay(tries, u) {
            Some(delay) => {
                ctx.counters.retries.fetch_add(1, Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = ctx.stop.stopped() => return Err(Halt::Stopped),
                }
            }
            None => return Err(Halt::Failed(err)),
        }
    }
}

/// Tell the limiters a request got through, so a cut can use the admitted rate.
fn admitted<S>(ctx: &TaskContext<S>, kms: f64) {
    if kms > 0.0 {
        ctx.kms.on_admitted(kms);
    }
    ctx.s3.on_admitted(1.0);
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
        ObjectStatus::AlreadyTargetKey => {
            c.already_target_key.fetch_add(1, Relaxed);
        }
        ObjectStatus::OtherKmsKey => {
            c.other_kms_key.fetch_add(1, Relaxed);
        }
        // Only a HEAD that re-decided the object ends it as skipped.
        ObjectStatus::Skipped => {
            c.skipped.fetch_add(1, Relaxed);
        }
        ObjectStatus::Pending => {}
    }
    out
}
