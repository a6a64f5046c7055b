//! The S3 Batch Operations hand-off: a plan's pending objects written as manifests and
//! CreateJob requests (and, optionally, submitted), and the jobs' completion reports
//! folded back into the checkpoint, so `status`, `verify` and `report` cover both routes.
//!
//! * [`select`]: which objects a job can take, and which job.
//! * [`manifest`]: the manifest files and their MD5.
//! * [`job`]: the CreateJob requests.
//! * [`cost`]: the exported objects' cost by either route, from the plan's estimate.
//! * [`export`]: the whole export, on disk.
//! * [`submit`]: uploading the manifests and creating the jobs.
//! * [`report`]: completion-report lines, written and parsed.
//! * [`import`]: completion reports folded into the checkpoint.
//!
//! Encodings, chosen so that every reader agrees:
//!
//! * Keys in manifests and in `report --format batch-ops` are percent-encoded
//!   ([`encode_path`](crate::inventory::keys::encode_path): `/` and unreserved characters
//!   kept, a space is `%20`, `+` is `%2B`). Batch Operations wants URL-encoded keys; a
//!   space written `%20` decodes to the same key whether the reader decodes as a URL or as
//!   form data (where `+` would be a space), so this is the one encoding no reader can get
//!   wrong. Commas and newlines in keys are encoded too, so a manifest line never needs
//!   CSV quoting.
//! * Completion reports are read as form data
//!   ([`decode_form_key`](crate::inventory::keys::decode_form_key)), which accepts both
//!   `%20` and `+` for a space.
//! * A null version is `null` in a manifest (what Batch Operations expects), and empty or
//!   `null` in a report.
//!
//! Completion-report columns: AWS's `ReportSchema` names them "Bucket, Key, VersionId,
//! TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage", but every example report in
//! its documentation (batch-ops-examples-reports) has the HTTP status fifth and the error
//! code sixth (`…,failed,200,PermanentFailure,"…"`, `…,succeeded,200,,"…"`). rekey writes
//! what the examples show, and reads either order: of the two columns, the one that is a
//! three-digit number is the HTTP status.

pub mod cost;
pub mod export;
pub mod import;
pub mod job;
pub mod manifest;
pub mod report;
pub mod select;
pub mod submit;

pub use report::{completion_record, parse_completion, CompletionError, CompletionLine};
pub use select::BATCH_COPY_MAX_BYTES;
