//! The in-memory buckets: objects in a BTreeMap per bucket, so that listings come out in
//! key order and a continuation token is simply the last key returned.

use md5::{Digest, Md5};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The KMS key a request with SSE-KMS but no key id gets (S3's `aws/s3` managed key).
pub const DEFAULT_KMS_KEY: &str = "arn:aws:kms:us-east-1:111122223333:alias/aws/s3";

#[derive(Clone)]
pub struct Object {
    pub body: Vec<u8>,
    /// Without quotes.
    pub etag: String,
    pub last_modified: i64,
    /// `AES256`, `aws:kms`, or None.
    pub sse: Option<String>,
    pub kms_key: Option<String>,
    pub bucket_key: bool,
    pub content_type: String,
    /// `x-amz-meta-*` names (without the prefix, lower-case) and values.
    pub metadata: Vec<(String, String)>,
    pub storage_class: String,
}

impl Object {
    pub fn new(body: Vec<u8>) -> Object {
        let etag = hex(&Md5::digest(&body));
        Object {
            body,
            etag,
            last_modified: now(),
            sse: Some("AES256".into()),
            kms_key: None,
            bucket_key: false,
            content_type: "binary/octet-stream".into(),
            metadata: Vec::new(),
            storage_class: "STANDARD".into(),
        }
    }
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter().fold(String::with_capacity(b.len() * 2), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

#[derive(Default)]
pub struct Bucket {
    pub objects: BTreeMap<String, Object>,
    pub created: i64,
}

/// One page of a listing.
pub struct Page<'a> {
    pub objects: Vec<(&'a String, &'a Object)>,
    pub common_prefixes: Vec<String>,
    /// The last key or common prefix in the page, when more follow.
    pub next: Option<String>,
}

impl Bucket {
    /// Keys under `prefix` after `after` (exclusive), grouped by `delimiter` into common
    /// prefixes, at most `max` entries. A continuation that ends on a common prefix skips
    /// every key under it.
    pub fn list<'a>(&'a self, prefix: &str, after: Option<&str>, delimiter: Option<&str>, max: usize) -> Page<'a> {
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        let skip_under = after.filter(|a| delimiter.is_some_and(|d| !d.is_empty() && a.ends_with(d)));
        let mut page = Page { objects: Vec::new(), common_prefixes: Vec::new(), next: None };
        let mut count = 0;
        for (k, o) in self.objects.range((start, Bound::Unbounded)) {
            if !k.starts_with(prefix) {
                break;
            }
            if skip_under.is_some_and(|s| k.starts_with(s)) {
                continue;
            }
            let grouped = delimiter
                .filter(|d| !d.is_empty())
                .and_then(|d| k[prefix.len()..].find(d).map(|i| k[..prefix.len() + i + d.len()].to_string()));
            if let Some(cp) = &grouped {
                if page.common_prefixes.last() == Some(cp) {
                    continue;
                }
            }
            if count == max {
                page.next = Some(match (page.objects.last(), page.common_prefixes.last()) {
                    (Some((k, _)), Some(cp)) => (*k).max(cp).clone(),
                    (Some((k, _)), None) => (*k).clone(),
                    (None, Some(cp)) => cp.clone(),
                    (None, None) => String::new(),
                });
                break;
            }
            count += 1;
            match grouped {
                Some(cp) => page.common_prefixes.push(cp),
                None => page.objects.push((k, o)),
            }
        }
        page
    }
}

#[derive(Default)]
pub struct Store {
    pub buckets: HashMap<String, Bucket>,
    etags: AtomicU64,
}

impl Store {
    /// An ETag that is not the body's MD5, as S3 gives objects written with SSE-KMS.
    pub fn opaque_etag(&self) -> String {
        let n = self.etags.fetch_add(1, Ordering::Relaxed);
        hex(&Md5::digest(n.to_le_bytes()))
    }

    /// Replace `bucket` with `count` SSE-S3 objects `{prefix}{i:08}` of `size` bytes each.
    pub fn seed(&mut self, bucket: &str, prefix: &str, count: usize, size: usize) {
        let mut b = Bucket { objects: BTreeMap::new(), created: now() };
        for i in 0..count {
            let key = format!("{prefix}{i:08}");
            let mut body = format!("{key}\n").into_bytes();
            body.resize(size, b'.');
            b.objects.insert(key, Object::new(body));
        }
        self.buckets.insert(bucket.to_string(), b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_pages_and_groups() {
        let mut s = Store::default();
        s.seed("b", "d/", 5, 8);
        let b = &s.buckets["b"];
        let p = b.list("d/", None, None, 2);
        assert_eq!(p.objects.len(), 2);
        let p2 = b.list("d/", p.next.as_deref(), None, 10);
        assert_eq!(p2.objects.len(), 3);
        assert!(p2.next.is_none());
        let g = b.list("", None, Some("/"), 10);
        assert_eq!(g.common_prefixes, vec!["d/".to_string()]);
        assert!(g.objects.is_empty());
    }
}
