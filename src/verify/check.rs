//! One object's checks against the plan: its current version must be SSE-KMS under the
//! planned key with the planned Bucket Key and the inventoried storage class; an update
//! must keep its ETag; a copy must keep its size and, while the inventoried version is
//! still there (noncurrent), its user metadata and tag count.

use super::retry::retrying;
use crate::exec::RetryPolicy;
use crate::plan::classify::Method;
use crate::s3::object_store::{same_kms_key, HeadResult};
use crate::s3::{ObjectStore, S3CallError, S3ErrorKind};
use crate::store::{Verdict, VerifyItem};
use std::collections::HashMap;

/// What every done object should look like.
#[derive(Debug, Clone)]
pub struct Expect {
    /// The planned key, as an ARN (an alias is resolved once, at the start).
    pub key_arn: String,
    pub bucket_key: bool,
}

/// What the checks of one object found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub verdict: Verdict,
    /// What differs, on one line; None when ok.
    pub detail: Option<String>,
    /// HEAD was refused outright (403, bad credentials, no such bucket): why.
    pub refused: Option<String>,
}

impl Finding {
    fn new(verdict: Verdict, detail: Option<String>) -> Finding {
        Finding { verdict, detail, refused: None }
    }
}

/// Check one object's current version against the plan; a noncurrent version updated in
/// place (`--versions all`) is checked by its version id.
pub async fn check<S: ObjectStore>(store: &S, policy: &RetryPolicy, expect: &Expect, item: &VerifyItem) -> Finding {
    let version = match item.method {
        Method::Update if item.is_latest == Some(false) => real_version(item.version_id.as_deref()).map(str::to_string),
        _ => None,
    };
    let head =
        retrying(policy, item.id, || store.head_plain(item.bucket.clone(), item.key.clone(), version.clone())).await;
    let head = match head {
        Ok(h) => h,
        Err(e) if e.kind == S3ErrorKind::NotFound => {
            let what = match &version {
                Some(v) => format!("HEAD answered 404: version {v} is gone"),
                None => "HEAD answered 404: the object has no current version".into(),
            };
            return Finding::new(Verdict::Missing, Some(what));
        }
        Err(e) => {
            let refused = (e.kind == S3ErrorKind::Fatal).then(|| describe(&e));
            return Finding { verdict: Verdict::Error, detail: Some(format!("HEAD: {}", describe(&e))), refused };
        }
    };
    let mut diffs = encryption_and_class(expect, item, &head);
    let mut unchecked = None;
    match item.method {
        Method::Update => diffs.extend(etag_diff(item, &head)),
        Method::Copy | Method::MultipartCopy => {
            diffs.extend(size_diff(item, &head));
            let inventoried = real_version(item.version_id.as_deref());
            if let Some(old) = inventoried.filter(|v| real_version(head.version_id.as_deref()) != Some(v)) {
                match compare_with_inventoried(store, policy, item, old, &head).await {
                    Ok(found) => diffs.extend(found),
                    Err(e) => unchecked = Some(e),
                }
            }
        }
    }
    if diffs.is_empty() {
        return match unchecked {
            None => Finding::new(Verdict::Ok, None),
            Some(e) => Finding::new(Verdict::Error, Some(e)),
        };
    }
    diffs.extend(rewritten(item, &head));
    diffs.extend(unchecked);
    Finding::new(Verdict::Mismatch, Some(one_line(&diffs.join("; "))))
}

/// SSE-KMS under the planned key, the planned Bucket Key, the inventoried storage class.
fn encryption_and_class(expect: &Expect, item: &VerifyItem, head: &HeadResult) -> Vec<String> {
    let mut diffs = Vec::new();
    match head.sse.as_deref() {
        Some("aws:kms") => {
            match head.kms_key_id.as_deref() {
                Some(k) if same_kms_key(k, &expect.key_arn) => {}
                Some(k) => diffs.push(format!("KMS key {k}, planned {}", expect.key_arn)),
                None => diffs.push("SSE-KMS without a key id".into()),
            }
            let bucket_key = head.bucket_key_enabled.unwrap_or(false);
            if bucket_key != expect.bucket_key {
                diffs.push(format!("Bucket Key {}, planned {}", on_off(bucket_key), on_off(expect.bucket_key)));
            }
        }
        Some(other) => diffs.push(format!("encryption {other}, planned aws:kms")),
        None => diffs.push("not encrypted, planned aws:kms".into()),
    }
    let class = head.storage_class.as_deref().unwrap_or("STANDARD");
    let planned_class = item.storage_class.as_deref().unwrap_or("STANDARD");
    if class != planned_class {
        diffs.push(format!("storage class {class}, inventoried {planned_class}"));
    }
    diffs
}

/// An update keeps the object's bytes, so its ETag is the inventoried one.
fn etag_diff(item: &VerifyItem, head: &HeadResult) -> Option<String> {
    let want = item.etag.as_deref().map(|e| e.trim_matches('"'))?;
    let got = head.etag.as_deref().map(|e| e.trim_matches('"'));
    (got != Some(want)).then(|| format!("ETag {}, inventoried {want}", got.unwrap_or("none")))
}

/// A copy has a new ETag, but the inventoried size.
fn size_diff(item: &VerifyItem, head: &HeadResult) -> Option<String> {
    let want = item.size?;
    let got = head.content_length;
    (got != Some(want)).then(|| {
        let got = got.map(|n| n.to_string()).unwrap_or_else(|| "unknown".into());
        format!("{got} bytes, inventoried {want}")
    })
}

/// Says when the current version is not the one the run left: someone wrote since.
fn rewritten(item: &VerifyItem, head: &HeadResult) -> Option<String> {
    let left = match item.method {
        Method::Update => item.version_id.as_deref(),
        _ => item.new_version_id.as_deref(),
    };
    match (real_version(head.version_id.as_deref()), real_version(left)) {
        (Some(now), Some(left)) if now != left => {
            Some(format!("the current version {now} is not the one rekey left ({left})"))
        }
        _ => None,
    }
}

/// A copy against the inventoried version it replaced, when that version still exists:
/// the same user metadata and the same number of tags. Returns what differs, or why the
/// comparison could not be made.
async fn compare_with_inventoried<S: ObjectStore>(
    store: &S,
    policy: &RetryPolicy,
    item: &VerifyItem,
    old: &str,
    head: &HeadResult,
) -> Result<Vec<String>, String> {
    let version = |v: &str| Some(v.to_string());
    let was = retrying(policy, item.id, || store.head_plain(item.bucket.clone(), item.key.clone(), version(old))).await;
    let was = match was {
        Ok(w) => w,
        // The inventoried version is gone (lifecycle, deleted): nothing to compare with.
        Err(e) if e.kind == S3ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("HEAD of the inventoried version {old}: {}", describe(&e))),
    };
    let mut diffs: Vec<String> = metadata_diff(&head.metadata, &was.metadata).into_iter().collect();
    let tags = |v: Option<String>| {
        retrying(policy, item.id, move || store.get_tags(item.bucket.clone(), item.key.clone(), v.clone()))
    };
    let now_tags = tags(real_version(head.version_id.as_deref()).map(str::to_string))
        .await
        .map_err(|e| format!("GetObjectTagging: {}", describe(&e)))?
        .len();
    let was_tags = match tags(version(old)).await {
        Ok(t) => t.len(),
        Err(e) if e.kind == S3ErrorKind::NotFound => return Ok(diffs),
        Err(e) => return Err(format!("GetObjectTagging of the inventoried version {old}: {}", describe(&e))),
    };
    if now_tags != was_tags {
        diffs.push(format!("{now_tags} tags, the inventoried version has {was_tags}"));
    }
    Ok(diffs)
}

/// How the user metadata differs from the inventoried version's, if it does.
pub fn metadata_diff(now: &HashMap<String, String>, was: &HashMap<String, String>) -> Option<String> {
    let sorted = |mut v: Vec<&str>| {
        v.sort_unstable();
        v.join(", ")
    };
    let lost: Vec<&str> = was.keys().filter(|k| !now.contains_key(*k)).map(String::as_str).collect();
    let added: Vec<&str> = now.keys().filter(|k| !was.contains_key(*k)).map(String::as_str).collect();
    let changed: Vec<&str> =
        now.iter().filter(|(k, v)| was.get(*k).is_some_and(|w| w != *v)).map(|(k, _)| k.as_str()).collect();
    let mut parts = Vec::new();
    if !lost.is_empty() {
        parts.push(format!("lost {}", sorted(lost)));
    }
    if !changed.is_empty() {
        parts.push(format!("changed {}", sorted(changed)));
    }
    if !added.is_empty() {
        parts.push(format!("added {}", sorted(added)));
    }
    (!parts.is_empty()).then(|| format!("user metadata differs from the inventoried version's: {}", parts.join("; ")))
}

/// An S3 failure on one line: `403 AccessDenied: …`, or `403 Forbidden` for a HEAD (no body).
pub fn describe(e: &S3CallError) -> String {
    let code = Some(e.code.as_str()).filter(|c| !c.starts_with("Http") && !c.is_empty());
    let mut s = match (e.status, code) {
        (Some(status), Some(code)) => format!("{status} {code}"),
        (Some(status), None) => match status {
            400 => "400 Bad Request".to_string(),
            403 => "403 Forbidden".to_string(),
            404 => "404 Not Found".to_string(),
            500 => "500 Internal Server Error".to_string(),
            503 => "503 Service Unavailable".to_string(),
            _ => format!("HTTP {status}"),
        },
        (None, Some(code)) => code.to_string(),
        (None, None) => "failed".to_string(),
    };
    if !e.message.is_empty() {
        s.push_str(": ");
        s.push_str(&e.message);
    }
    one_line(&s)
}

/// Control characters (keys may hold newlines) escaped, so one object is one line.
pub fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// A version id S3 would accept (`null` names the null version, which HEAD reports as none).
fn real_version(v: Option<&str>) -> Option<&str> {
    v.filter(|v| !v.is_empty() && *v != "null")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn metadata_diff_names_lost_changed_and_added_keys() {
        let was = map(&[("owner", "a"), ("seq", "1"), ("gone", "x")]);
        assert_eq!(metadata_diff(&was.clone(), &was), None);
        let now = map(&[("owner", "b"), ("seq", "1"), ("new", "y")]);
        assert_eq!(
            metadata_diff(&now, &was).as_deref(),
            Some("user metadata differs from the inventoried version's: lost gone; changed owner; added new")
        );
    }

    #[test]
    fn one_line_escapes_control_characters_only() {
        assert_eq!(one_line("a\nb\tc ключ \"q\""), "a\\nb\\tc ключ \"q\"");
    }

    #[test]
    fn the_null_version_is_no_version() {
        assert_eq!(real_version(Some("null")), None);
        assert_eq!(real_version(Some("")), None);
        assert_eq!(real_version(Some("3HL4kqtJ")), Some("3HL4kqtJ"));
    }

    #[test]
    fn a_bodiless_head_error_is_named_by_its_status() {
        let e =
            S3CallError { kind: S3ErrorKind::Fatal, code: "Http403".into(), message: String::new(), status: Some(403) };
        assert_eq!(describe(&e), "403 Forbidden");
        let e = S3CallError {
            kind: S3ErrorKind::Fatal,
            code: "AccessDenied".into(),
            message: "no\nway".into(),
            status: Some(403),
        };
        assert_eq!(describe(&e), "403 AccessDenied: no\\nway");
    }
}
