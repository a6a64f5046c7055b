//! SigV4 for the direct path, with credentials cached between requests.
//!
//! The SDK resolves credentials through its identity cache on every request; the direct
//! path keeps the last credentials it was given and asks the provider again only a few
//! minutes before they expire, one caller at a time (IMDS, SSO and assume-role providers
//! go to the network, and thousands of requests a second must not follow them there).
//! Signing itself is the `aws-sigv4` crate the SDK uses, with the settings the SDK's S3
//! operations use: single percent-encoding, no path normalisation, and the payload's
//! SHA-256 in `x-amz-content-sha256`.

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// Ask for fresh credentials this long before the current ones expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("no credentials: {0}")]
    Credentials(String),
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Credentials from the SDK's provider chain, held until shortly before they expire.
pub struct CredentialCache {
    provider: SharedCredentialsProvider,
    current: RwLock<Option<Arc<Identity>>>,
    /// Held while the provider is asked, so that one caller refreshes and the others wait.
    refreshing: tokio::sync::Mutex<()>,
}

impl CredentialCache {
    pub fn new(provider: SharedCredentialsProvider) -> CredentialCache {
        CredentialCache { provider, current: RwLock::new(None), refreshing: tokio::sync::Mutex::new(()) }
    }

    fn fresh(&self) -> Option<Arc<Identity>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.as_ref().filter(|id| !needs_refresh(id.expiration(), SystemTime::now())).cloned()
    }

    /// The cached identity, refreshed single-flight when it is missing or about to expire.
    pub async fn identity(&self) -> Result<Arc<Identity>, SignError> {
        if let Some(id) = self.fresh() {
            return Ok(id);
        }
        let _one_at_a_time = self.refreshing.lock().await;
        // Another caller may have refreshed while this one waited.
        if let Some(id) = self.fresh() {
            return Ok(id);
        }
        let creds: Credentials =
            self.provider.provide_credentials().await.map_err(|e| SignError::Credentials(error_chain(&e)))?;
        let id = Arc::new(Identity::from(creds));
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
        Ok(id)
    }
}

fn needs_refresh(expiry: Option<SystemTime>, now: SystemTime) -> bool {
    expiry.is_some_and(|e| e <= now + REFRESH_BEFORE_EXPIRY)
}

/// A request's parts the signature covers.
pub struct ToSign<'a> {
    pub method: &'static str,
    /// `scheme://authority/path?query`, already percent-encoded.
    pub url: &'a str,
    pub headers: &'a [(&'static str, String)],
    pub body: &'a [u8],
    pub region: &'a str,
}

/// The headers to add: `authorization`, `x-amz-date`, `x-amz-content-sha256` and, with
/// temporary credentials, `x-amz-security-token`.
pub fn signature_headers(identity: &Identity, r: &ToSign<'_>) -> Result<Vec<(http::HeaderName, String)>, SignError> {
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(r.region)
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| SignError::Signing(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        r.method,
        r.url,
        r.headers.iter().map(|(k, v)| (*k, v.as_str())),
        SignableBody::Bytes(r.body),
    )
    .map_err(|e| SignError::Signing(e.to_string()))?;
    let (instructions, _) = sign(signable, &params).map_err(|e| SignError::Signing(e.to_string()))?.into_parts();
    instructions
        .headers()
        .map(|(k, v)| {
            let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| SignError::Signing(e.to_string()))?;
            Ok((name, v.to_string()))
        })
        .collect()
}

/// An error and its sources on one line (the SDK's errors put the detail in the sources).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_only_near_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(!needs_refresh(None, now), "static credentials never expire");
        assert!(!needs_refresh(Some(now + Duration::from_secs(3600)), now));
        assert!(needs_refresh(Some(now + Duration::from_secs(60)), now));
        assert!(needs_refresh(Some(now - Duration::from_secs(1)), now));
    }

    #[tokio::test]
    async fn provider_is_asked_once_while_credentials_are_fresh() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        #[derive(Debug)]
        struct Counting(Arc<AtomicUsize>, Option<SystemTime>);
        impl ProvideCredentials for Counting {
            fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                self.0.fetch_add(1, Ordering::SeqCst);
                aws_credential_types::provider::future::ProvideCredentials::ready(Ok(Credentials::new(
                    "AKID", "SECRET", None, self.1, "test",
                )))
            }
        }
        let asked = Arc::new(AtomicUsize::new(0));
        let cache = CredentialCache::new(SharedCredentialsProvider::new(Counting(asked.clone(), None)));
        for _ in 0..5 {
            cache.identity().await.unwrap();
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        // Credentials inside the refresh margin are fetched again on every call.
        let soon = Some(SystemTime::now() + Duration::from_secs(10));
        let cache = CredentialCache::new(SharedCredentialsProvider::new(Counting(asked.clone(), soon)));
        cache.identity().await.unwrap();
        cache.identity().await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 3);
    }
}
