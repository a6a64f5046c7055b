//! Verify's own retry loop: each S3 call retried with backoff and full jitter while S3
//! throttles or fails transiently, on the engine's [`RetryPolicy`] schedule. Verify only
//! reads, so it needs no limiter: a throttled HEAD just waits its turn again.

use crate::exec::RetryPolicy;
use crate::s3::S3CallError;
use crate::units::Rng;
use std::future::Future;

/// Run `call` until it succeeds, fails for good, or `policy` has no attempt left. The
/// jitter is drawn from a generator seeded with `seed` (the object's id), so a schedule
/// is reproducible.
pub async fn retrying<T, F, Fut>(policy: &RetryPolicy, seed: i64, mut call: F) -> Result<T, S3CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, S3CallError>>,
{
    let mut rng = Rng::new(seed as u64);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let e = match call().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        match policy.delay(attempt, rng.unit()) {
            Some(delay) if e.kind.is_retryable() => tokio::time::sleep(delay).await,
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::S3ErrorKind;
    use std::cell::Cell;
    use std::time::Duration;

    fn fast(max_attempts: u32) -> RetryPolicy {
        RetryPolicy { max_attempts, min_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) }
    }

    fn error(kind: S3ErrorKind) -> S3CallError {
        S3CallError { kind, code: "X".into(), message: String::new(), status: Some(503) }
    }

    /// Calls `retrying` with a call that fails with `kind` `failures` times, then succeeds.
    async fn attempts_until(policy: RetryPolicy, kind: S3ErrorKind, failures: u32) -> (Result<u32, S3CallError>, u32) {
        let calls = Cell::new(0);
        let out = retrying(&policy, 7, || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n > failures {
                    Ok(n)
                } else {
                    Err(error(kind))
                }
            }
        })
        .await;
        (out, calls.get())
    }

    #[tokio::test]
    async fn throttles_and_transient_failures_are_retried_until_success() {
        let (out, calls) = attempts_until(fast(10), S3ErrorKind::ThrottledS3, 3).await;
        assert_eq!((out.unwrap(), calls), (4, 4));
        let (out, calls) = attempts_until(fast(10), S3ErrorKind::Transient, 1).await;
        assert_eq!((out.unwrap(), calls), (2, 2));
    }

    #[tokio::test]
    async fn a_permanent_error_is_not_retried() {
        let (out, calls) = attempts_until(fast(10), S3ErrorKind::Rejected, 5).await;
        assert_eq!(out.unwrap_err().kind, S3ErrorKind::Rejected);
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn retries_stop_at_max_attempts() {
        let (out, calls) = attempts_until(fast(3), S3ErrorKind::ThrottledKms, 100).await;
        assert_eq!(out.unwrap_err().kind, S3ErrorKind::ThrottledKms);
        assert_eq!(calls, 3);
    }
}
