//! The direct path's HTTP client: hyper 1 with hyper-util's pooled legacy client, over
//! rustls (the same rustls 0.23 and aws-lc-rs provider as the SDK's client) for https.
//!
//! It does what the SDK's client does for these requests and nothing else: keep-alive
//! connections pooled per host, TCP_NODELAY, a 10 s connect timeout, and the per-attempt
//! read timeout (`--request-timeout`). The read timeout bounds the wait for the response
//! head and then each wait between body chunks, never the whole exchange: S3 trickles
//! whitespace while a long CopyObject runs, and such a copy must not be cut off.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::time::Duration;

use super::sign::error_chain;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle pooled connections are closed after this long (S3 closes them after about 20 s
/// itself; a dead one costs a DispatchFailure and a retry).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// What went wrong below HTTP.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No response head, or a gap between body chunks, within the read timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting, TLS, or sending the request failed, or the connection closed before the
    /// response head.
    #[error("{0}")]
    Dispatch(String),
    /// The response head came but its body broke off.
    #[error("reading the response body failed: {message}")]
    Body { status: u16, message: String },
    /// A body gap past the read timeout, once the head had come.
    #[error("the response body stalled for {timeout:?}")]
    BodyTimeout { status: u16, timeout: Duration },
}

/// A response, its body read in full.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

pub struct Transport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    read_timeout: Duration,
    /// Whether https can be used: false when no root certificates could be loaded, and
    /// then https buckets go through the SDK, which reports the problem its own way.
    pub https_ready: bool,
}

impl Transport {
    pub fn new(read_timeout: Duration) -> Transport {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let with_roots = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .ok()
            .and_then(|b| b.with_native_roots().ok());
        let https_ready = with_roots.is_some();
        let tls = match with_roots {
            Some(b) => b.with_no_client_auth(),
            // No roots: a config that trusts nothing, never used for https (see https_ready).
            None => rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth())
                .unwrap_or_else(|_| {
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                }),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Transport { client, read_timeout, https_ready }
    }

    /// Send one request and read its whole answer.
    pub async fn send(&self, req: http::Request<Full<Bytes>>) -> Result<Response, TransportError> {
        let head = tokio::time::timeout(self.read_timeout, self.client.request(req))
            .await
            .map_err(|_| TransportError::Timeout(self.read_timeout))?
            .map_err(|e| TransportError::Dispatch(error_chain(&e)))?;
        let (parts, mut body) = head.into_parts();
        let status = parts.status.as_u16();
        let mut collected: Option<Vec<u8>> = None;
        let mut first: Option<Bytes> = None;
        loop {
            let frame = match tokio::time::timeout(self.read_timeout, body.frame()).await {
                Err(_) => return Err(TransportError::BodyTimeout { status, timeout: self.read_timeout }),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(TransportError::Body { status, message: error_chain(&e) }),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue };
            // Most answers are one chunk: keep it without copying.
            match (&mut collected, &first) {
                (None, None) => first = Some(data),
                (None, Some(f)) => {
                    let mut v = Vec::with_capacity(f.len() + data.len());
                    v.extend_from_slice(f);
                    v.extend_from_slice(&data);
                    collected = Some(v);
                }
                (Some(v), _) => v.extend_from_slice(&data),
            }
        }
        let body = match collected {
            Some(v) => Bytes::from(v),
            None => first.unwrap_or_default(),
        };
        Ok(Response { status, headers: parts.headers, body })
    }
}
