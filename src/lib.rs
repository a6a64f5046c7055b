//! rekey: re-encrypt S3 objects from SSE-S3 (or none) to SSE-KMS in place.
//!
//! Data flows one way, and the module layout follows it:
//!
//! ```text
//! inventory  →  plan  →  store  →  exec  →  store  →  report
//! (manifest,    (classify,  (SQLite      (scheduler,
//!  CSV rows)     cost)       checkpoint)  limiter, copy)
//! ```
//!
//! * [`inventory`] reads S3 Inventory reports (local or `s3://`) and Batch Operations CSV
//!   manifests, streaming, with every data file verified against its manifest.
//! * [`plan`] decides each object's fate ([`plan::Decision`]) and what it will cost.
//! * [`preflight`] checks the key and the buckets before a run, and runs its canary.
//! * [`store`] is the SQLite checkpoint every later stage reads and writes.
//! * [`s3`] builds the AWS clients (SDK retries off: the engine owns retries).
//! * [`verify`] checks done objects against the plan and records a verdict for each.
//! * [`batch_ops`] hands pending objects to S3 Batch Operations and folds its reports back.
//! * [`finish`] sets the bucket's default encryption to the key and, if asked, merges a
//!   policy statement that enforces it.
//! * [`cli`] parses commands and renders output; `main.rs` only maps errors to exit codes.

pub mod batch_ops;
pub mod cli;
pub mod exec;
pub mod finish;
pub mod inventory;
pub mod plan;
pub mod preflight;
pub mod private_file;
pub mod s3;
pub mod store;
pub mod units;
pub mod verify;
pub mod vocab;
