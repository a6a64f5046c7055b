//! `rekey verify --delete-replaced-versions`: after the verify pass, delete the version
//! each copy replaced (noncurrent now, under the old encryption), and nothing else.
//!
//! A replaced version is deleted only when all of these hold, checked just before the
//! delete (docs/s3-facts.md §10):
//! * the copy's last verdict is `ok` (the pass before this one recorded it);
//! * HEAD of the current version shows it as the copy left it: `aws:kms` under the planned
//!   key, the ETag and version the copy reported, the inventoried size;
//! * the inventory shows no Object Lock on it (retention mode or legal hold), and HEAD of
//!   the replaced version shows none either: a locked version is kept, even one whose
//!   retention has passed (deleting those is a decision for a person);
//! * HEAD of the replaced version shows the inventoried ETag (the bytes the copy read)
//!   and it is not the current version.
//!
//! Then DeleteObject with exactly that versionId. Each outcome is recorded in the
//! checkpoint (`replaced_deleted_at` or `replaced_delete_detail`), so a later pass skips
//! what is deleted; a version found gone (404) is recorded as deleted.

use super::bounded::run_bounded;
use super::check::{describe, one_line};
use super::pass::VerifyError;
use super::retry::retrying;
use super::Expect;
use crate::exec::RetryPolicy;
use crate::s3::object_store::same_kms_key;
use crate::s3::{ObjectStore, S3ErrorKind};
use crate::store::{Checkpoint, ReplacedItem, ReplacedRecord, Verdict};
use crate::units::now_rfc3339;
use std::future::Future;
use std::sync::Arc;

/// Candidates read from the checkpoint at a time.
const PAGE_ROWS: usize = 1000;
/// Kept versions listed in the summary.
pub const KEPT_LISTED: usize = 10;

/// What happened to one replaced version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposal {
    Deleted,
    /// HEAD answered 404: deleted already (by a lifecycle rule, a person, or a pass that
    /// died before recording it).
    AlreadyGone,
    /// Kept, and why.
    Kept(String),
}

/// A kept version, for the summary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeptVersion {
    pub key: String,
    pub version_id: String,
    pub why: String,
}

/// What a deletion pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeleteTally {
    pub deleted: u64,
    pub already_gone: u64,
    pub kept: u64,
    /// The first [`KEPT_LISTED`] kept versions, in plan order.
    pub kept_listed: Vec<KeptVersion>,
    pub interrupted: bool,
}

/// Decide on one replaced version and, if every check holds, delete it.
pub async fn dispose<S: ObjectStore>(
    store: &S,
    policy: &RetryPolicy,
    expect: &Expect,
    item: &ReplacedItem,
) -> Result<Disposal, crate::s3::S3CallError> {
    let kept = |why: String| Ok(Disposal::Kept(one_line(&why)));
    if item.verify_verdict != Some(Verdict::Ok) {
        let verdict = item.verify_verdict.map(|v| v.as_str()).unwrap_or("none");
        return kept(format!("the copy's verify verdict is {verdict}, not ok"));
    }
    if item.legal_hold || item.lock_mode.as_deref().is_some_and(|m| !m.is_empty()) {
        return kept("under Object Lock in the inventory (retention or legal hold)".into());
    }
    let (bucket, key) = (&item.bucket, &item.key);
    let now = match retrying(policy, item.id, || store.head_plain(bucket.clone(), key.clone(), None)).await {
        Ok(h) => h,
        Err(e) if e.kind == S3ErrorKind::NotFound => return kept("the object has no current version".into()),
        Err(e) => return Err(e),
    };
    let mut differs = Vec::new();
    if now.sse.as_deref() != Some("aws:kms")
        || !now.kms_key_id.as_deref().is_some_and(|k| same_kms_key(k, &expect.key_arn))
    {
        differs.push(format!(
            "current version is {} {}",
            now.sse.as_deref().unwrap_or("unencrypted"),
            now.kms_key_id.as_deref().unwrap_or("")
        ));
    }
    if let Some(want) = item.new_etag.as_deref().map(|e| e.trim_matches('"')) {
        if now.etag.as_deref().map(|e| e.trim_matches('"')) != Some(want) {
            differs.push(format!("current ETag {}, the copy wrote {want}", now.etag.as_deref().unwrap_or("none")));
        }
    }
    if let (Some(want), Some(got)) = (item.new_version_id.as_deref(), now.version_id.as_deref()) {
        if want != got {
            differs.push(format!("current version {got}, the copy wrote {want}"));
        }
    }
    if item.size.is_some() && now.content_length != item.size {
        differs.push(format!("current size {:?}, inventoried {:?}", now.content_length, item.size));
    }
    if !differs.is_empty() {
        return kept(format!("the current version is not as the copy left it: {}", differs.join("; ")));
    }
    let version = Some(item.replaced_version_id.clone());
    let old = match retrying(policy, item.id, || store.head_plain(bucket.clone(), key.clone(), version.clone())).await {
        Ok(h) => h,
        Err(e) if e.kind == S3ErrorKind::NotFound => return Ok(Disposal::AlreadyGone),
        Err(e) => return Err(e),
    };
    if old.lock.mode.is_some() || old.lock.legal_hold {
        return kept(format!(
            "under Object Lock ({}{})",
            old.lock.mode.as_deref().unwrap_or(""),
            if old.lock.legal_hold { " legal hold" } else { "" }
        ));
    }
    if old.version_id.is_some() && old.version_id == now.version_id {
        return kept("it is the current version".into());
    }
    if let Some(want) = item.etag.as_deref().map(|e| e.trim_matches('"')) {
        if old.etag.as_deref().map(|e| e.trim_matches('"')) != Some(want) {
            let got = old.etag.as_deref().unwrap_or("none");
            return kept(format!("its ETag is {got}, not the inventoried {want}: not the bytes the copy read"));
        }
    }
    let version = item.replaced_version_id.clone();
    retrying(policy, item.id, || store.delete_version(bucket.clone(), key.clone(), version.clone())).await?;
    Ok(Disposal::Deleted)
}

/// Go through every replaced version not yet deleted, `concurrency` at a time, and record
/// each outcome. A refusal (AccessDenied) on the first delete or HEAD stops the pass.
pub async fn delete_replaced<S: ObjectStore>(
    store: Arc<S>,
    cp: &Checkpoint,
    expect: Arc<Expect>,
    concurrency: usize,
    policy: RetryPolicy,
    stop: impl Future<Output = ()>,
) -> Result<DeleteTally, VerifyError> {
    let mut tally = DeleteTally::default();
    let (mut after, mut buf, mut end) = (0i64, std::collections::VecDeque::new(), false);
    let mut answered = false;
    let next = || {
        if buf.is_empty() && !end {
            let page = cp.replaced_page(after, PAGE_ROWS).map_err(VerifyError::Read)?;
            end = page.len() < PAGE_ROWS;
            if let Some(last) = page.last() {
                after = last.id;
            }
            buf.extend(page);
        }
        Ok(buf.pop_front())
    };
    let work = |item: ReplacedItem| {
        let (store, expect) = (store.clone(), expect.clone());
        async move {
            let d = dispose(store.as_ref(), &policy, &expect, &item).await;
            (item, d)
        }
    };
    let done = |(item, d): (ReplacedItem, Result<Disposal, crate::s3::S3CallError>)| {
        let record = match d {
            Err(e) if e.kind == S3ErrorKind::Fatal && !answered => {
                return Err(VerifyError::RefusedDelete { why: describe(&e) });
            }
            Err(e) => Disposal::Kept(format!("S3 refused or kept failing: {}", describe(&e))),
            Ok(d) => {
                answered = true;
                d
            }
        };
        let at = now_rfc3339();
        let row = match &record {
            Disposal::Deleted => {
                tally.deleted += 1;
                ReplacedRecord { id: item.id, deleted_at: Some(at), detail: None }
            }
            Disposal::AlreadyGone => {
                tally.already_gone += 1;
                ReplacedRecord { id: item.id, deleted_at: Some(at), detail: Some("already gone (404)".into()) }
            }
            Disposal::Kept(why) => {
                tally.kept += 1;
                if tally.kept_listed.len() < KEPT_LISTED {
                    tally.kept_listed.push(KeptVersion {
                        key: item.key.clone(),
                        version_id: item.replaced_version_id.clone(),
                        why: why.clone(),
                    });
                }
                ReplacedRecord { id: item.id, deleted_at: None, detail: Some(why.clone()) }
            }
        };
        // One row per transaction: a deletion is never forgotten by a crash after it.
        cp.record_replaced(&[row]).map_err(VerifyError::Record)?;
        Ok(())
    };
    tally.interrupted = run_bounded(concurrency, next, work, done, stop).await?;
    Ok(tally)
}
