//! Talking to S3.
//!
//! * [`object_store`]: the [`ObjectStore`] trait the engine runs against, its request and
//!   result types, and the one place S3 errors are classified.
//! * [`sdk_store`]: the real implementation over aws-sdk-s3.
//! * [`direct`]: the default for `rekey run`: CopyObject and UpdateObjectEncryption sent
//!   over a lean hyper path (signed, endpoint from the SDK's resolver), everything else
//!   through [`SdkStore`].
//! * [`fake`]: an in-process implementation with injectable latency, throttling and
//!   failures, for unit tests and overhead benchmarks.
//! * [`client`] builds the aws-sdk-s3 client: the standard credential chain, `--region`,
//!   `--endpoint-url` (path-style unless `--virtual-host`), and the SDK's own retries
//!   turned off, because the engine owns every retry.
//! * [`bucket_api`]: the [`BucketApi`] trait of the pre-flight checks' bucket and key reads,
//!   implemented over the SDK by [`sdk_bucket_api`] and in-process by [`fake`].
//! * [`blobs`] streams inventory files from S3 for the planner.

pub mod blobs;
pub mod bucket_api;
pub mod client;
pub mod direct;
pub mod fake;
pub mod object_store;
pub mod sdk_bucket_api;
pub mod sdk_store;

pub use blobs::S3Blobs;
pub use bucket_api::{
    AclGrant, AclGrantee, ApiError, BucketAcl, BucketApi, DefaultEncryption, KeyGrant, KeyMetadata, KeyState,
    ReplicationRule,
};
pub use client::{
    build_client, build_control_client, build_kms_client, connect, EndpointError, S3Connection, S3Settings,
    DEFAULT_REQUEST_TIMEOUT,
};
pub use direct::DirectStore;
pub use fake::{BucketCall, FakeBehaviour, FakeBucket, FakeObject, FakeStore};
pub use object_store::{CopyRequest, HeadResult, ObjectStore, S3CallError, S3ErrorKind, UpdateRequest, WriteResult};
pub use sdk_bucket_api::{patient, SdkBucketApi};
pub use sdk_store::SdkStore;
