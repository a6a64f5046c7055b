//! `rekey verify`'s domain: HEAD the done objects (or a random sample) through the
//! [`ObjectStore`](crate::s3::ObjectStore) seam and record a verdict for each.
//!
//! Each object's current version is checked against the plan: SSE is `aws:kms` under the
//! planned key, the Bucket Key is as planned, and the storage class is the inventoried one.
//! An `update` must also keep its inventoried ETag. A copy must have the inventoried size
//! and, in a versioned bucket where the inventoried version is still there (noncurrent),
//! the same user metadata and tag count as that version (HEAD and GetObjectTagging on
//! both). Verdicts: `ok`, `mismatch` (the detail says what differs), `missing` (404) and
//! `error` (S3 refused or kept failing). Each is recorded in the checkpoint
//! (`verify_verdict`, `verify_detail`, `verified_at`) in batched transactions.
//!
//! * [`select`]: which objects (all done ones, in pages, or a seeded sample).
//! * [`check`]: one object's checks and its verdict.
//! * [`retry`]: verify's own retry loop (throttles and transient failures, no limiter).
//! * [`pass`]: the concurrent pass, the batched recording and the tally.
//! * [`summary`]: the tally as the `rekey.verify/1` summary the CLI renders.
//! * [`replaced`]: `--delete-replaced-versions`, the versions copies left behind, deleted
//!   one by one once the copy is verified.

mod bounded;
pub mod check;
pub mod pass;
pub mod replaced;
pub mod retry;
pub mod select;
pub mod summary;

pub use check::{check, metadata_diff, one_line, Expect, Finding};
pub use pass::{verify_all, Checked, PassOptions, Tally, VerifyError, LISTED};
pub use select::Selection;
pub use summary::{Problem, Summary};

#[cfg(test)]
mod tests;
