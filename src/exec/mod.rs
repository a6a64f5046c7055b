//! Execution: `rekey run`.
//!
//! * [`limiter`]: token buckets for KMS and S3 requests whose rates adapt to throttling.
//! * [`retry`]: the backoff schedule.
pub mod limiter;
