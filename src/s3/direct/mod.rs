//! [`DirectStore`]: the two hot operations, CopyObject and UpdateObjectEncryption, sent
//! straight over hyper instead of through the SDK's per-request pipeline; every other
//! operation, and every bucket the direct path does not cover, through an inner
//! [`SdkStore`].
//!
//! Why: after the engine's own work (about 12 µs per object) nearly all of rekey's CPU
//! per object was the request path, and a profile put 39 % of the whole in the SDK's
//! pipeline around the bytes on the wire (per-operation config layering, interceptors,
//! endpoint resolution per request, identity resolution, XML (de)serialisers). For two
//! requests of a fixed shape, that machinery buys nothing the direct path cannot do once:
//!
//! * [`endpoint`]: the bucket's endpoint from the SDK's own resolver, once per bucket;
//! * [`sign`]: credentials cached until near expiry, SigV4 with the day's signing key kept;
//! * [`http`]: a pooled hyper client with the SDK client's timeouts;
//! * [`copy`] and [`update`]: the requests, header for header what the SDK sends (a test
//!   compares them on the wire), and their answers;
//! * [`response`]: S3's `<Error>` documents, also inside a 200, classified by the same
//!   [`classify`](crate::s3::object_store::classify) as the SDK path's errors.
//!
//! Each attempt is one request: the engine owns retries, as with the SDK client.
//! `REKEY_S3_PATH=sdk` makes `rekey run` use [`SdkStore`] for everything.

pub mod copy;
pub mod endpoint;
pub mod http;
pub mod response;
pub mod sign;
pub mod update;

use super::object_store::{
    CompletedPart, CopyRequest, CreateMultipartRequest, Grants, HeadResult, ObjectStore, OpenUpload, PartCopyRequest,
    S3CallError, S3ErrorKind, UpdateRequest, WriteResult,
};
use super::SdkStore;
use bytes::Bytes;
use endpoint::{BucketEndpoint, EndpointSettings, Fallback};
use http_body_util::Full;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A request of the direct path before it is addressed and signed.
pub struct Prepared {
    pub method: &'static str,
    pub bucket: String,
    /// `/key` (percent-encoded) and any query, appended to the bucket's base path.
    pub path_and_query: String,
    /// Lower-case names.
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

/// How a bucket is reached, decided once.
#[derive(Debug, Clone)]
enum Route {
    Direct(Arc<BucketEndpoint>),
    Sdk,
}

/// The proxy variables the SDK's HTTP client honours (behaviour version 2025-08-07 on);
/// the direct path does not speak to proxies, so with any of them set every request goes
/// through the SDK.
const PROXY_VARIABLES: [&str; 6] = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];

pub struct DirectStore {
    sdk: SdkStore,
    /// Set when a proxy variable is: then nothing goes direct.
    proxied: bool,
    endpoints: EndpointSettings,
    routes: RwLock<HashMap<String, Route>>,
    credentials: sign::CredentialCache,
    signer: sign::Signer,
    transport: http::Transport,
}

/// Why the direct path could not be set up at all.
#[derive(Debug, thiserror::Error)]
pub enum DirectSetupError {
    #[error("the SDK configuration has no credentials provider")]
    NoCredentialsProvider,
}

impl DirectStore {
    /// The direct path for `connection`'s client, with that client behind it for the rest.
    pub fn new(connection: super::S3Connection) -> Result<DirectStore, DirectSetupError> {
        let provider = connection.credentials.ok_or(DirectSetupError::NoCredentialsProvider)?;
        let request_timeout: Duration = connection.request_timeout;
        let proxied = PROXY_VARIABLES.iter().any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
        if proxied {
            tracing::info!("a proxy is configured: every request goes through the SDK, which honours it");
        }
        Ok(DirectStore {
            sdk: SdkStore::new(connection.client),
            proxied,
            endpoints: connection.endpoints,
            routes: RwLock::new(HashMap::new()),
            credentials: sign::CredentialCache::new(provider),
            signer: sign::Signer::default(),
            transport: http::Transport::new(request_timeout),
        })
    }

    fn route(&self, bucket: &str) -> Route {
        if self.proxied {
            return Route::Sdk;
        }
        if let Some(r) = self.routes.read().unwrap_or_else(|p| p.into_inner()).get(bucket) {
            return r.clone();
        }
        let route = match endpoint::resolve(&self.endpoints, bucket) {
            Ok(ep) if ep.scheme_is_https && !self.transport.https_ready => {
                tracing::info!(bucket, "no root certificates for https: this bucket goes through the SDK");
                Route::Sdk
            }
            Ok(ep) => Route::Direct(Arc::new(ep)),
            Err(why) => {
                let why: Fallback = why;
                tracing::info!(bucket, %why, "this bucket goes through the SDK");
                Route::Sdk
            }
        };
        self.routes.write().unwrap_or_else(|p| p.into_inner()).insert(bucket.to_string(), route.clone());
        route
    }

    /// Address, sign and send a request; an answer that is an error comes back as one.
    async fn execute(&self, ep: &BucketEndpoint, p: Prepared) -> Result<http::Response, S3CallError> {
        let scheme = if ep.scheme_is_https { "https" } else { "http" };
        let url = format!("{scheme}://{}{}{}", ep.authority, ep.base_path, p.path_and_query);
        let host = host_header(&ep.authority, ep.scheme_is_https);
        let identity = self.credentials.identity().await.map_err(|e| client_error("Credentials", e))?;
        let mut headers = p.headers;
        headers.push(("host", host));
        let signed = self
            .signer
            .sign(
                &identity,
                &sign::ToSign {
                    method: p.method,
                    url: &url,
                    headers: &headers,
                    body: &p.body,
                    region: &ep.signing_region,
                },
                std::time::SystemTime::now(),
            )
            .map_err(|e| client_error("Signing", e))?;
        let mut builder = ::http::Request::builder().method(p.method).uri(&url);
        for (name, value) in &headers {
            builder = builder.header(*name, value.as_str());
        }
        for (name, value) in signed {
            let mut value = ::http::HeaderValue::from_str(&value).map_err(|e| client_error("Signing", e))?;
            value.set_sensitive(name == ::http::header::AUTHORIZATION || name.as_str() == "x-amz-security-token");
            builder = builder.header(name, value);
        }
        // Invalid header values (a non-ASCII website redirect, say) stop here, as the SDK
        // refuses to build such a request.
        let req = builder.body(Full::new(p.body)).map_err(|e| invalid("request", e))?;
        let resp = self.transport.send(req).await.map_err(transport_error)?;
        match response::read_error(&resp) {
            Some(e) => Err(e),
            None => Ok(resp),
        }
    }
}

/// The Host header: the authority without the scheme's default port (as hyper and the
/// signer would write it).
fn host_header(authority: &str, https: bool) -> String {
    let default = if https { ":443" } else { ":80" };
    authority.strip_suffix(default).unwrap_or(authority).to_string()
}

/// A request that cannot be sent as given: the object fails, the run goes on.
pub(crate) fn invalid(what: &str, detail: impl std::fmt::Display) -> S3CallError {
    S3CallError {
        kind: S3ErrorKind::Rejected,
        code: "InvalidArgument".into(),
        message: format!("{what}: {detail}"),
        status: None,
    }
}

/// A failure before anything was sent (credentials, signing): retried like the SDK's
/// client errors would be classified.
fn client_error(what: &str, e: impl std::fmt::Display) -> S3CallError {
    let code = "ClientError".to_string();
    let message = format!("{what}: {e}");
    S3CallError { kind: super::object_store::classify(None, &code, &message), code, message, status: None }
}

/// Labels as `sdk_store::call_error` gives the SDK's `TimeoutError`, `DispatchFailure` and
/// `ResponseError`.
fn transport_error(e: http::TransportError) -> S3CallError {
    use http::TransportError::*;
    let (code, status) = match &e {
        Timeout(_) => ("Timeout", None),
        Dispatch(_) => ("DispatchFailure", None),
        BodyTimeout { status, .. } | Body { status, .. } => ("ResponseError", Some(*status)),
    };
    let message = e.to_string();
    S3CallError { kind: super::object_store::classify(status, code, &message), code: code.into(), message, status }
}

impl ObjectStore for DirectStore {
    async fn update_encryption(&self, r: UpdateRequest) -> Result<WriteResult, S3CallError> {
        match self.route(&r.bucket) {
            Route::Sdk => self.sdk.update_encryption(r).await,
            Route::Direct(ep) => {
                self.execute(&ep, update::prepare(&r)).await?;
                Ok(update::result(r))
            }
        }
    }

    async fn copy_in_place(&self, r: CopyRequest) -> Result<WriteResult, S3CallError> {
        match self.route(&r.bucket) {
            Route::Sdk => self.sdk.copy_in_place(r).await,
            Route::Direct(ep) => {
                let resp = self.execute(&ep, copy::prepare(r)?).await?;
                copy::result(&resp)
            }
        }
    }

    async fn delete_version(&self, bucket: String, key: String, version_id: String) -> Result<(), S3CallError> {
        self.sdk.delete_version(bucket, key, version_id).await
    }

    async fn head(&self, bucket: String, key: String, version_id: Option<String>) -> Result<HeadResult, S3CallError> {
        self.sdk.head(bucket, key, version_id).await
    }

    async fn head_plain(
        &self,
        bucket: String,
        key: String,
        version_id: Option<String>,
    ) -> Result<HeadResult, S3CallError> {
        self.sdk.head_plain(bucket, key, version_id).await
    }

    async fn get_tags(
        &self,
        bucket: String,
        key: String,
        version_id: Option<String>,
    ) -> Result<Vec<(String, String)>, S3CallError> {
        self.sdk.get_tags(bucket, key, version_id).await
    }

    async fn get_grants(
        &self,
        bucket: String,
        key: String,
        version_id: Option<String>,
    ) -> Result<Option<Grants>, S3CallError> {
        self.sdk.get_grants(bucket, key, version_id).await
    }

    async fn create_multipart(&self, req: CreateMultipartRequest) -> Result<String, S3CallError> {
        self.sdk.create_multipart(req).await
    }

    async fn upload_part_copy(&self, req: PartCopyRequest) -> Result<CompletedPart, S3CallError> {
        self.sdk.upload_part_copy(req).await
    }

    async fn complete_multipart(
        &self,
        bucket: String,
        key: String,
        upload_id: String,
        parts: Vec<CompletedPart>,
        if_match: Option<String>,
    ) -> Result<WriteResult, S3CallError> {
        self.sdk.complete_multipart(bucket, key, upload_id, parts, if_match).await
    }

    async fn list_uploads(&self, bucket: String, key: String) -> Result<Vec<OpenUpload>, S3CallError> {
        self.sdk.list_uploads(bucket, key).await
    }

    async fn abort_multipart(&self, bucket: String, key: String, upload_id: String) -> Result<(), S3CallError> {
        self.sdk.abort_multipart(bucket, key, upload_id).await
    }
}
