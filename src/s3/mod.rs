//! Talking to S3.
//!
//! * [`client`] builds the aws-sdk-s3 client: the standard credential chain, `--region`,
//!   `--endpoint-url` (path-style unless `--virtual-host`), and the SDK's own retries
//!   turned off, because the engine owns every retry.
//! * [`blobs`] streams inventory files from S3 for the planner.
//!
//! The object-store trait the executor uses (UpdateObjectEncryption, CopyObject, …)
//! arrives with `rekey run`.

pub mod blobs;
pub mod client;

pub use blobs::S3Blobs;
pub use client::{build_client, S3Settings};
