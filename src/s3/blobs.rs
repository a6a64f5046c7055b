//! Inventory files read from S3, streamed: a data file is never held in memory whole.
//!
//! The planner's reader threads are plain threads doing CPU work (gunzip, CSV); the SDK
//! is async. [`S3Blobs::open`] starts a GetObject on the tokio runtime and a task that
//! pumps body chunks into a small bounded channel; the reader thread pulls from it with
//! `blocking_recv`. The bound (16 chunks) is the whole memory cost of a download.

use crate::inventory::{BlobStore, InventoryError};
use aws_sdk_s3::error::DisplayErrorContext;
use bytes::Bytes;
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
