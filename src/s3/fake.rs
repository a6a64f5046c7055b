//! An in-process [`ObjectStore`] for unit tests and for benchmarking the engine's own
//! overhead: objects in a map, with injectable latency, a request-rate gate that answers
//! like S3's KMS throttling, random transient failures, and per-key write counts so tests
//! can prove nothing was done twice. Versioned objects keep their noncurrent versions
//! (a copy leaves the one it replaced), and scripted faults answer the next requests, so
//! `rekey verify` can be tested against it too. It also answers the pre-flight's
//! [`BucketApi`] reads from per-bucket settings (policy, ACL, replication included) and per-key
//! KMS metadata, policies and grants that tests set,
//! any of which can be made to fail with a given error.

use super::bucket_api::{ApiError, BucketAcl, BucketApi, DefaultEncryption, KeyGrant, KeyMetadata, ReplicationRule};
use super::object_store::{
    CompletedPart, CopyRequest, CreateMultipartRequest, Grants, HeadResult, ObjectStore, OpenUpload, PartCopyRequest,
    S3CallError, S3ErrorKind, UpdateRequest, WriteResult,
};
use crate::units::Rng;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeObject {
    pub etag: String,
    pub version_id: Option<String>,
    /// `AES256`, `aws:kms`, or None (unencrypted).
    pub sse: Option<String>,
    pub kms_key_id: Option<String>,
    pub storage_class: String,
    pub locked: bool,
    pub archived: bool,
    /// Successful updates and copies applied to this object.
    pub writes: u32,
    pub size: u64,
    pub tags: Vec<(String, String)>,
    pub bucket_key: bool,
    /// User metadata (`x-amz-meta-*`).
    pub metadata: HashMap<String, String>,
}

impl FakeObject {
    pub fn sse_s3(etag: &str) -> FakeObject {
        FakeObject {
            etag: etag.into(),
            version_id: None,
            sse: Some("AES256".into()),
            kms_key_id: None,
            storage_class: "STANDARD".into(),
            locked: false,
            archived: false,
            writes: 0,
            size: 0,
            tags: Vec::new(),
            bucket_key: false,
            metadata: HashMap::new(),
        }
    }
}

/// Faults and pacing of the fake.
#[derive(Debug, Clone, Default)]
pub struct FakeBehaviour {
    pub latency: Duration,
    /// Requests per second above which writes answer 503 SlowDown (AWS KMS). 0 = no gate.
    pub kms_rps: f64,
    /// Share of requests that fail with 500 InternalError before doing anything.
    pub fail_rate: f64,
    /// Every write answers this (for breaker tests), e.g. `KMS.DisabledException`.
    pub fatal_code: Option<String>,
    /// Requests served at once, each for `latency`; the rest queue (their latency grows).
    /// A throughput cap of `servers / latency`, like a client that cannot drive more.
    /// 0 = no cap. Read once, by [`FakeStore::new`].
    pub servers: usize,
}

struct Gate {
    tokens: f64,
    last: Instant,
}

pub struct FakeStore {
    objects: Mutex<HashMap<(String, String), FakeObject>>,
    behaviour: Mutex<FakeBehaviour>,
    gate: Mutex<Gate>,
    rng: Mutex<Rng>,
    counters: Mutex<FakeCounters>,
    /// Open multipart uploads: id → (bucket, key, initiated ms since the epoch).
    uploads: Mutex<HashMap<String, (String, String, i64)>>,
    /// `FakeBehaviour::servers` slots (None: no cap).
    serving: Option<tokio::sync::Semaphore>,
    /// Noncurrent versions: (bucket, key, version id) → the version.
    noncurrent: Mutex<HashMap<(String, String, String), FakeObject>>,
    /// Errors the next requests answer, one each, before anything else.
    faults: Mutex<VecDeque<S3CallError>>,
    buckets: Mutex<HashMap<String, FakeBucket>>,
    /// KMS keys by ARN.
    keys: Mutex<HashMap<String, KeyMetadata>>,
    /// Key policies and grants by key ARN (a key without a policy set has KMS's default).
    key_policies: Mutex<HashMap<String, String>>,
    key_grants: Mutex<HashMap<String, Vec<KeyGrant>>>,
    /// Bucket-level calls made to fail, with the error they answer.
    failing: Mutex<HashMap<BucketCall, ApiError>>,
}

/// A bucket's settings, as the pre-flight reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeBucket {
    pub region: String,
    pub owner: String,
    /// `Enabled`, `Suspended`, or None (never enabled).
    pub versioning: Option<String>,
    /// None: no configuration (S3 answers ServerSideEncryptionConfigurationNotFoundError).
    pub default_encryption: Option<DefaultEncryption>,
    /// None: no ownership controls (S3 answers OwnershipControlsNotFoundError).
    pub ownership: Option<String>,
    /// Like some S3-compatible stores: ExpectedBucketOwner is not checked.
    pub ignores_expected_owner: bool,
    /// The bucket policy's JSON; None: no policy (S3 answers NoSuchBucketPolicy).
    pub policy: Option<String>,
    pub acl: BucketAcl,
    /// Empty: no replication (S3 answers ReplicationConfigurationNotFoundError).
    pub replication: Vec<ReplicationRule>,
}

impl FakeBucket {
    /// A new bucket as AWS creates it today: unversioned, SSE-S3 by default, BucketOwnerEnforced.
    pub fn new(region: &str, owner: &str) -> FakeBucket {
        FakeBucket {
            region: region.into(),
            owner: owner.into(),
            versioning: None,
            default_encryption: Some(DefaultEncryption {
                algorithm: "AES256".into(),
                kms_key_id: None,
                bucket_key: false,
            }),
            ownership: Some("BucketOwnerEnforced".into()),
            ignores_expected_owner: false,
            policy: None,
            acl: BucketAcl {
                owner_id: Some(format!("canonical-{owner}")),
                grants: vec![super::AclGrant {
                    grantee: super::AclGrantee::CanonicalUser { id: format!("canonical-{owner}"), name: None },
                    permission: "FULL_CONTROL".into(),
                }],
            },
            replication: Vec::new(),
        }
    }
}

/// The [`BucketApi`] calls, to make one fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BucketCall {
    DescribeKey,
    /// GetBucketLocation for the region.
    Location,
    /// GetBucketLocation with ExpectedBucketOwner.
    ExpectOwner,
    Versioning,
    DefaultEncryption,
    Ownership,
    BucketPolicy,
    BucketAcl,
    Replication,
    KeyPolicy,
    KeyGrants,
    PutPolicy,
    PutEncryption,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeCounters {
    pub updates: u64,
    pub copies: u64,
    pub heads: u64,
    pub throttled: u64,
    pub failed: u64,
    pub uploads_created: u64,
    pub parts_copied: u64,
    pub uploads_completed: u64,
    pub uploads_aborted: u64,
}

impl FakeStore {
    pub fn new(behaviour: FakeBehaviour) -> FakeStore {
        FakeStore {
            serving: (behaviour.servers > 0).then(|| tokio::sync::Semaphore::new(behaviour.servers)),
            objects: Mutex::new(HashMap::new()),
            behaviour: Mutex::new(behaviour),
            gate: Mutex::new(Gate { tokens: 0.0, last: Instant::now() }),
            rng: Mutex::new(Rng::new(42)),
            counters: Mutex::new(FakeCounters::default()),
            uploads: Mutex::new(HashMap::new()),
            noncurrent: Mutex::new(HashMap::new()),
            faults: Mutex::new(VecDeque::new()),
            buckets: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            key_policies: Mutex::new(HashMap::new()),
            key_grants: Mutex::new(HashMap::new()),
            failing: Mutex::new(HashMap::new()),
        }
    }

    /// Add a noncurrent version of `key` (it must have a version id).
    pub fn insert_noncurrent(&self, bucket: &str, key: &str, o: FakeObject) {
        let version = o.version_id.clone().expect("a noncurrent version has a version id");
        self.noncurrent.lock().unwrap().insert((bucket.into(), key.into(), version), o);
    }

    /// A noncurrent version, if the fake holds it.
    pub fn get_noncurrent(&self, bucket: &str, key: &str, version: &str) -> Option<FakeObject> {
        self.noncurrent.lock().unwrap().get(&(bucket.into(), key.into(), version.into())).cloned()
    }

    /// Delete the object's current version (its noncurrent ones stay).
    pub fn remove(&self, bucket: &str, key: &str) -> Option<FakeObject> {
        self.objects.lock().unwrap().remove(&(bucket.to_string(), key.to_string()))
    }

    /// The next request (of any kind) answers `e` instead of doing anything.
    pub fn fail_next(&self, e: S3CallError) {
        self.faults.lock().unwrap().push_back(e);
    }

    /// The version a read names: the current one when `version` is None or its id,
    /// else a noncurrent one; 404 NoSuchKey / NoSuchVersion otherwise.
    fn version_of(&self, bucket: String, key: String, version: Option<String>) -> Result<FakeObject, S3CallError> {
        let current = self.objects.lock().unwrap().get(&(bucket.clone(), key.clone())).cloned();
        match (current, version) {
            (Some(o), None) => Ok(o),
            (None, None) => Err(Self::no_such_key()),
            (Some(o), Some(v)) if o.version_id.as_deref() == Some(v.as_str()) => Ok(o),
            (_, Some(v)) => self.noncurrent.lock().unwrap().get(&(bucket, key, v)).cloned().ok_or_else(|| {
                Self::err(S3ErrorKind::NotFound, 404, "NoSuchVersion", "The specified version does not exist.")
            }),
        }
    }

    /// A versioned object about to be replaced stays as a noncurrent version.
    fn keep_noncurrent(&self, bucket: &str, key: &str, o: &FakeObject) {
        if o.version_id.is_some() {
            self.insert_noncurrent(bucket, key, o.clone());
        }
    }

    pub fn set_bucket(&self, name: &str, b: FakeBucket) {
        self.buckets.lock().unwrap().insert(name.into(), b);
    }

    pub fn set_key(&self, arn: &str, m: KeyMetadata) {
        self.keys.lock().unwrap().insert(arn.into(), m);
    }

    pub fn set_key_policy(&self, arn: &str, policy: &str) {
        self.key_policies.lock().unwrap().insert(arn.into(), policy.into());
    }

    pub fn set_key_grants(&self, arn: &str, grants: Vec<KeyGrant>) {
        self.key_grants.lock().unwrap().insert(arn.into(), grants);
    }

    /// The key's metadata, or the error `call` answers (NotFoundException for an unknown key).
    fn key(&self, call: BucketCall, key_arn: &str) -> Result<KeyMetadata, ApiError> {
        if let Some(e) = self.failing.lock().unwrap().get(&call) {
            return Err(e.clone());
        }
        let keys = self.keys.lock().unwrap();
        keys.get(key_arn)
            .cloned()
            .ok_or_else(|| ApiError::aws(400, "NotFoundException", &format!("Key '{key_arn}' does not exist")))
    }

    /// From now on `call` answers `error` (for every bucket and key).
    pub fn fail_call(&self, call: BucketCall, error: ApiError) {
        self.failing.lock().unwrap().insert(call, error);
    }

    /// The bucket's settings, or the error the call answers.
    fn bucket(&self, call: BucketCall, name: &str) -> Result<FakeBucket, ApiError> {
        if let Some(e) = self.failing.lock().unwrap().get(&call) {
            return Err(e.clone());
        }
        let buckets = self.buckets.lock().unwrap();
        buckets
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::aws(404, "NoSuchBucket", "The specified bucket does not exist"))
    }

    pub fn insert(&self, bucket: &str, key: &str, o: FakeObject) {
        self.objects.lock().unwrap().insert((bucket.into(), key.into()), o);
    }

    pub fn get(&self, bucket: &str, key: &str) -> Option<FakeObject> {
        self.objects.lock().unwrap().get(&(bucket.to_string(), key.to_string())).cloned()
    }

    pub fn objects(&self) -> Vec<((String, String), FakeObject)> {
        self.objects.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn set_behaviour(&self, b: FakeBehaviour) {
        *self.behaviour.lock().unwrap() = b;
    }

    /// Multipart uploads created and neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        self.uploads.lock().unwrap().len()
    }

    pub fn counters(&self) -> FakeCounters {
        self.counters.lock().unwrap().clone()
    }

    fn no_such_key() -> S3CallError {
        Self::err(S3ErrorKind::NotFound, 404, "NoSuchKey", "The specified key does not exist.")
    }

    fn no_such_upload() -> S3CallError {
        Self::err(S3ErrorKind::NotFound, 404, "NoSuchUpload", "The specified upload does not exist.")
    }

    fn precondition_failed() -> S3CallError {
        Self::err(
            S3ErrorKind::PreconditionFailed,
            412,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
        )
    }

    fn err(kind: S3ErrorKind, status: u16, code: &str, message: &str) -> S3CallError {
        S3CallError { kind, code: code.into(), message: message.into(), status: Some(status) }
    }

    /// Latency, then the fault and rate gates, as S3 would answer them.
    async fn admit(&self, write: bool) -> Result<(), S3CallError> {
        if let Some(e) = self.faults.lock().unwrap().pop_front() {
            return Err(e);
        }
        let b = self.behaviour.lock().unwrap().clone();
        let _server = match &self.serving {
            Some(s) => Some(s.acquire().await.expect("never closed")),
            None => None,
        };
        if !b.latency.is_zero() {
            tokio::time::sleep(b.latency).await;
        }
        if b.fail_rate > 0.0 && self.rng.lock().unwrap().unit() < b.fail_rate {
            self.counters.lock().unwrap().failed += 1;
            return Err(Self::err(
                S3ErrorKind::Transient,
                500,
                "InternalError",
                "We encountered an internal error. Please try again.",
            ));
        }
        if write {
            if let Some(code) = &b.fatal_code {
                let kind = crate::s3::object_store::classify(Some(400), code, "injected");
                return Err(Self::err(kind, 400, code, "injected"));
            }
            if b.kms_rps > 0.0 {
                let mut g = self.gate.lock().unwrap();
                let now = Instant::now();
                let burst = (b.kms_rps / 10.0).max(1.0);
                g.tokens = (g.tokens + now.duration_since(g.last).as_secs_f64() * b.kms_rps).min(burst);
                g.last = now;
                if g.tokens < 1.0 {
                    self.counters.lock().unwrap().throttled += 1;
                    return Err(Self::err(
                        S3ErrorKind::ThrottledKms,
                        503,
                        "SlowDown",
                        "Please reduce your request rate for operations involving AWS KMS.",
                    ));
                }
                g.tokens -= 1.0;
            }
        }
        Ok(())
    }

    fn next_etag(&self) -> String {
        let mut r = self.rng.lock().unwrap();
        format!("{:016x}{:016x}", r.next_u64(), r.next_u64())
    }
}

impl ObjectStore for FakeStore {
    async fn update_encryption(&self, r: UpdateRequest) -> Result<WriteResult, S3CallError> {
        self.admit(true).await?;
        self.counters.lock().unwrap().updates += 1;
        let mut objects = self.objects.lock().unwrap();
        let mut noncurrent = self.noncurrent.lock().unwrap();
        let current = objects.get_mut(&(r.bucket.clone(), r.key.clone()));
        // A version id names the current version or, updated in place, a noncurrent one.
        let o = match (current, &r.version_id) {
            (Some(o), None) => o,
            (Some(o), Some(v)) if o.version_id.as_deref() == Some(v.as_str()) => o,
            (None, None) => return Err(Self::no_such_key()),
            (current, Some(v)) => {
                let exists = current.is_some();
                noncurrent.get_mut(&(r.bucket, r.key, v.clone())).ok_or_else(|| match exists {
                    true => {
                        Self::err(S3ErrorKind::NotFound, 404, "NoSuchVersion", "The specified version does not exist.")
                    }
                    false => Self::no_such_key(),
                })?
            }
        };
        if o.sse.is_none() || o.locked {
            return Err(Self::err(S3ErrorKind::Rejected, 400, "InvalidRequest", "This object cannot be updated."));
        }
        o.sse = Some("aws:kms".into());
        o.kms_key_id = Some(r.kms_key_arn.clone());
        o.bucket_key = r.bucket_key;
        o.writes += 1;
        Ok(WriteResult {
            etag: Some(o.etag.clone()),
            version_id: o.version_id.clone(),
            kms_key_id: Some(r.kms_key_arn),
            checksum: None,
            source_version_id: None,
        })
    }

    async fn copy_in_place(&self, r: CopyRequest) -> Result<WriteResult, S3CallError> {
        self.admit(true).await?;
        self.counters.lock().unwrap().copies += 1;
        let etag = self.next_etag();
        let mut objects = self.objects.lock().unwrap();
        let o = objects.get_mut(&(r.bucket.clone(), r.key.clone())).ok_or_else(Self::no_such_key)?;
        if r.if_match.as_deref().is_some_and(|m| m.trim_matches('"') != o.etag) {
            return Err(Self::precondition_failed());
        }
        if o.archived {
            return Err(Self::err(
                S3ErrorKind::InvalidObjectState,
                403,
                "InvalidObjectState",
                "The operation is not valid for the object's storage class",
            ));
        }
        self.keep_noncurrent(&r.bucket, &r.key, o);
        let source_version_id = o.version_id.clone();
        o.sse = Some("aws:kms".into());
        o.kms_key_id = Some(r.kms_key_arn.clone());
        o.bucket_key = r.bucket_key;
        o.etag = etag;
        if o.version_id.is_some() {
            o.version_id = Some(format!("copy-{}", o.etag));
        }
        o.writes += 1;
        Ok(WriteResult {
            etag: Some(o.etag.clone()),
            version_id: o.version_id.clone(),
            kms_key_id: Some(r.kms_key_arn),
            checksum: None,
            source_version_id,
        })
    }

    async fn delete_version(&self, bucket: String, key: String, version_id: String) -> Result<(), S3CallError> {
        self.admit(false).await?;
        let current = self.objects.lock().unwrap().get(&(bucket.clone(), key.clone())).cloned();
        if current.is_some_and(|o| o.version_id.as_deref() == Some(version_id.as_str())) {
            // As S3 does: the previous version would become current. rekey never asks this.
            self.objects.lock().unwrap().remove(&(bucket, key));
            return Ok(());
        }
        let mut noncurrent = self.noncurrent.lock().unwrap();
        let id = (bucket, key, version_id);
        if noncurrent.get(&id).is_some_and(|o| o.locked) {
            return Err(Self::err(
                S3ErrorKind::Fatal,
                403,
                "AccessDenied",
                "Access Denied because object protected by object lock.",
            ));
        }
        // S3 answers 204 for a version that is not there, too.
        noncurrent.remove(&id);
        Ok(())
    }

    async fn head(&self, bucket: String, key: String, version_id: Option<String>) -> Result<HeadResult, S3CallError> {
        self.admit(false).await?;
        self.counters.lock().unwrap().heads += 1;
        // A HEAD has no body: a 404 carries no S3 error code.
        let o = self.version_of(bucket, key, version_id).map_err(|e| S3CallError { code: "NotFound".into(), ..e })?;
        Ok(HeadResult {
            etag: Some(o.etag.clone()),
            version_id: o.version_id.clone(),
            sse: o.sse.clone(),
            kms_key_id: o.kms_key_id.clone(),
            storage_class: Some(o.storage_class.clone()),
            bucket_key_enabled: Some(o.bucket_key),
            content_length: Some(o.size),
            metadata: o.metadata.clone(),
            // A locked fake object is under GOVERNANCE retention, as HEAD reports it.
            lock: super::object_store::LockSettings {
                mode: o.locked.then(|| "GOVERNANCE".to_string()),
                ..Default::default()
            },
            ..HeadResult::default()
        })
    }

    async fn get_tags(
        &self,
        bucket: String,
        key: String,
        version_id: Option<String>,
    ) -> Result<Vec<(String, String)>, S3CallError> {
        self.admit(false).await?;
        Ok(self.version_of(bucket, key, version_id)?.tags)
    }

    async fn get_grants(
        &self,
        _bucket: String,
        _key: String,
        _v: Option<String>,
    ) -> Result<Option<Grants>, S3CallError> {
        self.admit(false).await?;
        Ok(None)
    }

    async fn create_multipart(&self, r: CreateMultipartRequest) -> Result<String, S3CallError> {
        self.admit(true).await?;
        let id = format!("upload-{}", self.next_etag());
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        self.uploads.lock().unwrap().insert(id.clone(), (r.bucket, r.key, now));
        self.counters.lock().unwrap().uploads_created += 1;
        Ok(id)
    }

    async fn upload_part_copy(&self, r: PartCopyRequest) -> Result<CompletedPart, S3CallError> {
        self.admit(true).await?;
        if !self.uploads.lock().unwrap().contains_key(&r.upload_id) {
            return Err(Self::no_such_upload());
        }
        let objects = self.objects.lock().unwrap();
        let o = objects.get(&(r.bucket, r.key)).ok_or_else(Self::no_such_key)?;
        if r.if_match.as_deref().is_some_and(|m| m.trim_matches('"') != o.etag) {
            return Err(Self::precondition_failed());
        }
        self.counters.lock().unwrap().parts_copied += 1;
        Ok(CompletedPart { part_number: r.part_number, etag: format!("part-{}", r.part_number), checksum: None })
    }

    async fn complete_multipart(
        &self,
        bucket: String,
        key: String,
        upload_id: String,
        parts: Vec<CompletedPart>,
        if_match: Option<String>,
    ) -> Result<WriteResult, S3CallError> {
        self.admit(false).await?;
        if !self.uploads.lock().unwrap().contains_key(&upload_id) {
            return Err(Self::no_such_upload());
        }
        let etag = format!("{}-{}", self.next_etag(), parts.len());
        let mut objects = self.objects.lock().unwrap();
        let o = objects.get_mut(&(bucket.clone(), key.clone())).ok_or_else(Self::no_such_key)?;
        if if_match.as_deref().is_some_and(|m| m.trim_matches('"') != o.etag) {
            return Err(Self::precondition_failed());
        }
        self.uploads.lock().unwrap().remove(&upload_id);
        self.keep_noncurrent(&bucket, &key, o);
        o.sse = Some("aws:kms".into());
        o.etag = etag;
        if o.version_id.is_some() {
            o.version_id = Some(format!("mpu-{}", o.etag));
        }
        o.writes += 1;
        self.counters.lock().unwrap().uploads_completed += 1;
        Ok(WriteResult {
            etag: Some(o.etag.clone()),
            version_id: o.version_id.clone(),
            kms_key_id: None,
            checksum: None,
            source_version_id: None,
        })
    }

    async fn list_uploads(&self, bucket: String, key: String) -> Result<Vec<OpenUpload>, S3CallError> {
        self.admit(false).await?;
        let uploads = self.uploads.lock().unwrap();
        Ok(uploads
            .iter()
            .filter(|(_, (b, k, _))| *b == bucket && *k == key)
            .map(|(id, (_, _, at))| OpenUpload { upload_id: id.clone(), initiated_ms: *at })
            .collect())
    }

    async fn abort_multipart(&self, _bucket: String, _key: String, upload_id: String) -> Result<(), S3CallError> {
        self.admit(false).await?;
        if self.uploads.lock().unwrap().remove(&upload_id).is_none() {
            return Err(Self::no_such_upload());
        }
        self.counters.lock().unwrap().uploads_aborted += 1;
        Ok(())
    }
}

impl BucketApi for FakeStore {
    async fn describe_key(&self, key_arn: &str) -> Result<Option<KeyMetadata>, ApiError> {
        self.key(BucketCall::DescribeKey, key_arn).map(Some)
    }

    async fn bucket_region(&self, bucket: &str) -> Result<String, ApiError> {
        Ok(self.bucket(BucketCall::Location, bucket)?.region)
    }

    async fn expect_owner(&self, bucket: &str, account: &str) -> Result<(), ApiError> {
        let b = self.bucket(BucketCall::ExpectOwner, bucket)?;
        if b.owner == account || b.ignores_expected_owner {
            Ok(())
        } else {
            Err(ApiError::aws(403, "AccessDenied", "Access Denied"))
        }
    }

    async fn versioning(&self, bucket: &str) -> Result<Option<String>, ApiError> {
        Ok(self.bucket(BucketCall::Versioning, bucket)?.versioning)
    }

    async fn default_encryption(&self, bucket: &str) -> Result<Option<DefaultEncryption>, ApiError> {
        match self.bucket(BucketCall::DefaultEncryption, bucket)?.default_encryption {
            Some(d) => Ok(Some(d)),
            None => Err(ApiError::aws(
                404,
                "ServerSideEncryptionConfigurationNotFoundError",
                "The server side encryption configuration was not found",
            )),
        }
    }

    async fn bucket_policy(&self, bucket: &str) -> Result<Option<String>, ApiError> {
        Ok(self.bucket(BucketCall::BucketPolicy, bucket)?.policy)
    }

    async fn put_bucket_policy(&self, bucket: &str, policy: &str) -> Result<(), ApiError> {
        let mut b = self.bucket(BucketCall::PutPolicy, bucket)?;
        if serde_json::from_str::<serde_json::Value>(policy).is_err() {
            return Err(ApiError::aws(400, "MalformedPolicy", "Policies must be valid JSON"));
        }
        b.policy = Some(policy.to_string());
        self.set_bucket(bucket, b);
        Ok(())
    }

    async fn put_default_encryption(&self, bucket: &str, rule: &DefaultEncryption) -> Result<(), ApiError> {
        let mut b = self.bucket(BucketCall::PutEncryption, bucket)?;
        b.default_encryption = Some(rule.clone());
        self.set_bucket(bucket, b);
        Ok(())
    }

    async fn ownership(&self, bucket: &str) -> Result<Option<String>, ApiError> {
        match self.bucket(BucketCall::Ownership, bucket)?.ownership {
            Some(o) => Ok(Some(o)),
            None => Err(ApiError::aws(
                404,
                "OwnershipControlsNotFoundError",
                "The bucket ownership controls were not found",
            )),
        }
    }

    async fn bucket_acl(&self, bucket: &str) -> Result<BucketAcl, ApiError> {
        Ok(self.bucket(BucketCall::BucketAcl, bucket)?.acl)
    }

    async fn replication(&self, bucket: &str) -> Result<Vec<ReplicationRule>, ApiError> {
        let rules = self.bucket(BucketCall::Replication, bucket)?.replication;
        if rules.is_empty() {
            return Err(ApiError::aws(
                404,
                "ReplicationConfigurationNotFoundError",
                "The replication configuration was not found",
            ));
        }
        Ok(rules)
    }

    async fn key_policy(&self, key_arn: &str) -> Result<String, ApiError> {
        self.key(BucketCall::KeyPolicy, key_arn)?;
        Ok(self.key_policies.lock().unwrap().get(key_arn).cloned().unwrap_or_else(|| default_key_policy(key_arn)))
    }

    async fn key_grants(&self, key_arn: &str) -> Result<Vec<KeyGrant>, ApiError> {
        self.key(BucketCall::KeyGrants, key_arn)?;
        Ok(self.key_grants.lock().unwrap().get(key_arn).cloned().unwrap_or_default())
    }
}

/// The policy KMS gives a key created without one: the key's account may use it as its IAM
/// policies allow.
fn default_key_policy(key_arn: &str) -> String {
    let account = key_arn.split(':').nth(4).unwrap_or_default();
    format!(
        r#"{{"Version":"2012-10-17","Id":"key-default-1","Statement":[{{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{account}:root"}},"Action":"kms:*","Resource":"*"}}]}}"#
    )
}
