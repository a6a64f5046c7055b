//! Inventory files read from S3, streamed: a data file is never held in memory whole;
//! and the live listing (`inventory::listing`): LIST pages, GetBucketVersioning and the
//! HEADs of `--head-all`.
//!
//! The planner's reader threads are plain threads doing CPU work (gunzip, CSV); the SDK
//! is async. [`S3Blobs::open`] starts a GetObject on the tokio runtime and a task that
//! pumps body chunks into a small bounded channel; the reader thread pulls from it with
//! `blocking_recv`. The bound (16 chunks) is the whole memory cost of a download.

use crate::inventory::listing::{HeadFacts, ListCursor, ListPage, ListedEntry, ListingSpec};
use crate::inventory::{BlobStore, EncryptionStatus, InventoryError};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use bytes::Bytes;
use futures::StreamExt;
use std::io::{self, Read};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

pub struct S3Blobs {
    client: aws_sdk_s3::Client,
    runtime: Handle,
}

/// Attempts for each GetObject before the plan gives up.
const ATTEMPTS: u32 = 5;
/// HEADs in flight at once for `--head-all`.
const HEADS_IN_FLIGHT: usize = 32;

type Failure<E> = SdkError<E, aws_smithy_runtime_api::http::Response>;

/// Throttling, 5xx and network failures are worth another attempt.
fn transient<E>(e: &Failure<E>) -> bool {
    match e.raw_response().map(|r| r.status().as_u16()) {
        Some(s) => s >= 500 || s == 429,
        None => !matches!(e, SdkError::ConstructionFailure(_)), // timeouts, connection failures
    }
}

/// `op` with up to [`ATTEMPTS`] attempts for transient failures, 200 ms doubling between.
async fn with_retries<T, E, F, Fut>(what: &str, mut op: F) -> Result<T, Failure<E>>
where
    E: std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure<E>>>,
{
    let mut delay = Duration::from_millis(200);
    for attempt in 1.. {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) && attempt < ATTEMPTS => {
                tracing::warn!("{what}: attempt {attempt} failed, retrying: {}", DisplayErrorContext(&e));
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the last attempt returns")
}

impl S3Blobs {
    pub fn new(client: aws_sdk_s3::Client, runtime: Handle) -> S3Blobs {
        S3Blobs { client, runtime }
    }

    /// GetObject with a few retries for transient failures (throttling, 5xx, network).
    /// `Ok(None)` when the object does not exist.
    async fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<aws_sdk_s3::operation::get_object::GetObjectOutput>, InventoryError> {
        let url = format!("s3://{bucket}/{key}");
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=ATTEMPTS {
            match self.client.get_object().bucket(bucket).key(key).send().await {
                Ok(out) => return Ok(Some(out)),
                Err(e) => {
                    if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                        return Ok(None);
                    }
                    let status = e.raw_response().map(|r| r.status().as_u16());
                    let transient = match status {
                        Some(s) => s >= 500 || s == 429,
                        None => true, // timeouts, connection failures
                    };
                    if !transient || attempt == ATTEMPTS {
                        return Err(InventoryError::Remote { url, message: DisplayErrorContext(&e).to_string() });
                    }
                    tracing::warn!("{url}: attempt {attempt} failed, retrying: {}", DisplayErrorContext(&e));
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        unreachable!("the last attempt returns")
    }
}

impl BlobStore for S3Blobs {
    fn get_small(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, InventoryError> {
        self.runtime.block_on(async {
            let Some(out) = self.get(bucket, key).await? else { return Ok(None) };
            let body = out
                .body
                .collect()
                .await
                .map_err(|e| InventoryError::Remote { url: format!("s3://{bucket}/{key}"), message: e.to_string() })?;
            Ok(Some(body.into_bytes().to_vec()))
        })
    }

    fn open(&self, bucket: &str, key: &str) -> Result<(Box<dyn Read + Send>, u64), InventoryError> {
        let url = format!("s3://{bucket}/{key}");
        let out = self
            .runtime
            .block_on(self.get(bucket, key))?
            .ok_or_else(|| InventoryError::Remote { url: url.clone(), message: "no such object".into() })?;
        let len = out.content_length.unwrap_or(0).max(0) as u64;
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(16);
        let mut body = out.body;
        self.runtime.spawn(async move {
            loop {
                let chunk = match body.try_next().await {
                    Ok(Some(chunk)) => Ok(chunk),
                    Ok(None) => break,
                    Err(e) => Err(io::Error::other(format!("{url}: {e}"))),
                };
                let failed = chunk.is_err();
                // The reader went away (the plan failed elsewhere): stop downloading.
                if tx.send(chunk).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok((Box::new(ChannelReader { rx, current: Bytes::new() }), len))
    }

    fn is_versioned(&self, bucket: &str) -> Result<bool, InventoryError> {
        let out = self
            .runtime
            .block_on(with_retries("GetBucketVersioning", || self.client.get_bucket_versioning().bucket(bucket).send()))
            .map_err(|e| remote(bucket, "", "GetBucketVersioning", &e))?;
        // Suspended still keeps the versions written while it was enabled.
        Ok(out.status().is_some())
    }

    fn list_page(&self, spec: &ListingSpec, cursor: Option<&ListCursor>) -> Result<ListPage, InventoryError> {
        let prefix = (!spec.prefix.is_empty()).then(|| spec.prefix.clone());
        let ms = |t: Option<&aws_sdk_s3::primitives::DateTime>| t.and_then(|t| t.to_millis().ok());
        let checksum = |a: &[aws_sdk_s3::types::ChecksumAlgorithm]| a.first().map(|a| a.as_str().to_string());
        if !spec.versions {
            let token = match cursor {
                Some(ListCursor::V2 { continuation_token }) => Some(continuation_token.clone()),
                _ => None,
            };
            let out = self
                .runtime
                .block_on(with_retries("ListObjectsV2", || {
                    self.client
                        .list_objects_v2()
                        .bucket(&spec.bucket)
                        .set_prefix(prefix.clone())
                        .set_continuation_token(token.clone())
                        .send()
                }))
                .map_err(|e| remote(&spec.bucket, &spec.prefix, "ListObjectsV2", &e))?;
            let entries = out
                .contents()
                .iter()
                .map(|o| ListedEntry {
                    key: o.key().unwrap_or_default().to_string(),
                    size: o.size().map(|n| n.max(0) as u64),
                    last_modified_ms: ms(o.last_modified()),
                    etag: o.e_tag().map(str::to_string),
                    storage_class: o.storage_class().map(|c| c.as_str().to_string()),
                    checksum_algorithm: checksum(o.checksum_algorithm()),
                    ..ListedEntry::default()
                })
                .collect();
            let next = match (out.is_truncated(), out.next_continuation_token()) {
                (Some(true), Some(t)) => Some(ListCursor::V2 { continuation_token: t.to_string() }),
                _ => None,
            };
            return Ok(ListPage { entries, next });
        }
        let (key_marker, version_marker) = match cursor {
            Some(ListCursor::Versions { key_marker, version_id_marker }) => {
                (Some(key_marker.clone()), version_id_marker.clone())
            }
            _ => (None, None),
        };
        let out = self
            .runtime
            .block_on(with_retries("ListObjectVersions", || {
                self.client
                    .list_object_versions()
                    .bucket(&spec.bucket)
                    .set_prefix(prefix.clone())
                    .set_key_marker(key_marker.clone())
                    .set_version_id_marker(version_marker.clone())
                    .send()
            }))
            .map_err(|e| remote(&spec.bucket, &spec.prefix, "ListObjectVersions", &e))?;
        let mut entries: Vec<ListedEntry> = out
            .versions()
            .iter()
            .map(|v| ListedEntry {
                key: v.key().unwrap_or_default().to_string(),
                version_id: v.version_id().map(str::to_string),
                is_latest: v.is_latest(),
                size: v.size().map(|n| n.max(0) as u64),
                last_modified_ms: ms(v.last_modified()),
                etag: v.e_tag().map(str::to_string),
                storage_class: v.storage_class().map(|c| c.as_str().to_string()),
                checksum_algorithm: checksum(v.checksum_algorithm()),
                ..ListedEntry::default()
            })
            .collect();
        entries.extend(out.delete_markers().iter().map(|d| ListedEntry {
            key: d.key().unwrap_or_default().to_string(),
            version_id: d.version_id().map(str::to_string),
            is_latest: d.is_latest(),
            is_delete_marker: true,
            last_modified_ms: ms(d.last_modified()),
            ..ListedEntry::default()
        }));
        let next = match (out.is_truncated(), out.next_key_marker()) {
            (Some(true), Some(k)) => Some(ListCursor::Versions {
                key_marker: k.to_string(),
                version_id_marker: out.next_version_id_marker().map(str::to_string),
            }),
            _ => None,
        };
        Ok(ListPage { entries, next })
    }

    fn head_many(
        &self,
        bucket: &str,
        objects: &[(String, Option<String>)],
    ) -> Result<Vec<Option<HeadFacts>>, InventoryError> {
        self.runtime.block_on(async {
            let heads =
                futures::stream::iter(objects.iter().map(|(key, version)| self.head_facts(bucket, key, version)))
                    .buffered(HEADS_IN_FLIGHT)
                    .collect::<Vec<_>>()
                    .await;
            heads.into_iter().collect()
        })
    }
}

impl S3Blobs {
    /// What a HEAD says of one object version for planning; `None` when it is gone.
    async fn head_facts(
        &self,
        bucket: &str,
        key: &str,
        version: &Option<String>,
    ) -> Result<Option<HeadFacts>, InventoryError> {
        let head = with_retries("HeadObject", || {
            self.client.head_object().bucket(bucket).key(key).set_version_id(version.clone()).send()
        })
        .await;
        let out = match head {
            Ok(out) => out,
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                return match status {
                    Some(404) => Ok(None),
                    // S3 refuses to HEAD an SSE-C object without its key: 400, and the
                    // object is SSE-C (docs/s3-facts.md §1.6).
                    Some(400) => {
                        Ok(Some(HeadFacts { encryption: Some(EncryptionStatus::SseC), ..HeadFacts::default() }))
                    }
                    _ => Err(remote(bucket, key, "HeadObject", &e)),
                };
            }
        };
        let h = super::sdk_store::head_result(&out);
        let encryption =
            if out.sse_customer_algorithm().is_some() { EncryptionStatus::SseC } else { h.encryption_status() };
        Ok(Some(HeadFacts {
            encryption: Some(encryption),
            lock_mode: h.lock.mode,
            lock_retain_until: h.lock.retain_until,
            legal_hold: h.lock.legal_hold,
            bucket_key_enabled: h.bucket_key_enabled,
        }))
    }
}

/// An S3 failure while listing, named by the bucket, prefix or key and the operation.
fn remote<E: std::error::Error + ProvideErrorMetadata + 'static>(
    bucket: &str,
    key: &str,
    op: &str,
    e: &Failure<E>,
) -> InventoryError {
    InventoryError::Remote { url: format!("s3://{bucket}/{key}"), message: format!("{op}: {}", DisplayErrorContext(e)) }
}

struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}
