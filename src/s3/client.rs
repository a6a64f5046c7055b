//! Building the aws-sdk-s3 and KMS clients, and checking where they will connect.
//!
//! Every client is built from an [`S3Settings`] that has passed [`S3Settings::check`]: a
//! plain-http endpoint would send the SigV4-signed requests, object keys and (with a
//! misconfigured proxy) session tokens in the clear, so it is refused unless the host is a
//! loopback address (an emulator) or `--allow-http` says the operator means it.

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use std::net::IpAddr;
use std::time::Duration;

/// How long the client waits for the first byte of an answer (and between bytes) before the
/// attempt counts as a transient failure and the engine retries it. S3 trickles whitespace
/// while a long CopyObject runs, so a large copy does not trip it.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where and how to reach S3.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub region: Option<String>,
    /// A custom endpoint (an emulator, an S3-compatible store). `AWS_ENDPOINT_URL` works too.
    pub endpoint_url: Option<String>,
    /// Use virtual-hosted addressing even with a custom endpoint.
    pub virtual_host: bool,
    /// Accept a plain-http endpoint on a non-loopback host.
    pub allow_http: bool,
    /// The read timeout per attempt (default [`DEFAULT_REQUEST_TIMEOUT`]).
    pub request_timeout: Option<Duration>,
}

/// Why an endpoint was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error(
        "endpoint {url:?} ({source_name}) is not a URL: it needs a scheme and a host, e.g. https://s3.example.com"
    )]
    NotAUrl { url: String, source_name: &'static str },
    #[error("endpoint {url:?} ({source_name}) uses {scheme}://; only https:// and http:// are supported")]
    Scheme { url: String, source_name: &'static str, scheme: String },
    #[error(
        "endpoint {url:?} ({source_name}) is plain http to a non-loopback host: requests and object keys would \
         cross the network unencrypted. Use https://, or pass --allow-http if this is intended"
    )]
    PlainHttp { url: String, source_name: &'static str },
}

impl S3Settings {
    /// The endpoint the clients will use, and where it came from.
    fn effective_endpoint(&self) -> Option<(String, &'static str)> {
        if let Some(url) = &self.endpoint_url {
            return Some((url.clone(), "--endpoint-url"));
        }
        for var in ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"] {
            if let Ok(url) = std::env::var(var) {
                if !url.is_empty() {
                    return Some((url, var));
                }
            }
        }
        None
    }

    /// Refuse an endpoint that is not a URL, or that is plain http to a host other than
    /// loopback without `allow_http`.
    pub fn check(&self) -> Result<(), EndpointError> {
        match self.effective_endpoint() {
            None => Ok(()),
            Some((url, source_name)) => check_endpoint(&url, source_name, self.allow_http),
        }
    }

    fn timeouts(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT))
            .build()
    }
}

fn check_endpoint(url: &str, source_name: &'static str, allow_http: bool) -> Result<(), EndpointError> {
    let not_a_url = || EndpointError::NotAUrl { url: url.to_string(), source_name };
    let (scheme, rest) = url.split_once("://").ok_or_else(not_a_url)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return Err(not_a_url());
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if allow_http || is_loopback(host) => Ok(()),
        "http" => Err(EndpointError::PlainHttp { url: url.to_string(), source_name }),
        other => Err(EndpointError::Scheme { url: url.to_string(), source_name, scheme: other.to_string() }),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn region_chain(s: &S3Settings) -> RegionProviderChain {
    RegionProviderChain::first_try(s.region.clone().map(Region::new))
        .or_default_provider()
        .or_else(Region::new("us-east-1"))
}

/// The S3 client with the SDK's retries disabled: one attempt per call, so that every
/// retry is the engine's, counted, paced and recorded.
pub async fn build_client(s: &S3Settings) -> Result<aws_sdk_s3::Client, EndpointError> {
    Ok(connect(s).await?.client)
}

/// The S3 client, and the settings its endpoint resolver is given, for the direct path
/// ([`super::DirectStore`]) to resolve endpoints exactly as the client does.
pub struct S3Connection {
    pub client: aws_sdk_s3::Client,
    pub endpoints: super::direct::endpoint::EndpointSettings,
    pub request_timeout: Duration,
    /// The credential chain the client signs with (the direct path caches what it gives).
    pub credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
}

/// Build the S3 client (see [`build_client`]) and keep its endpoint settings.
pub async fn connect(s: &S3Settings) -> Result<S3Connection, EndpointError> {
    s.check()?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region_chain(s))
        .retry_config(RetryConfig::disabled())
        .timeout_config(s.timeouts());
    if let Some(url) = &s.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let shared = loader.load().await;
    // Emulators and most S3-compatible stores only speak path-style. The S3-only setting
    // (AWS_ENDPOINT_URL_S3, a profile's `services` section) is a custom endpoint too:
    // asked only `shared.endpoint_url()`, such a setup went virtual-hosted.
    let endpoint_url = s3_endpoint_url(&shared, s.endpoint_url.as_deref());
    let custom_endpoint = shared.endpoint_url().is_some() || endpoint_url.is_some();
    let force_path_style = custom_endpoint && !s.virtual_host;
    let conf = aws_sdk_s3::config::Builder::from(&shared).force_path_style(force_path_style).build();
    let endpoints = super::direct::endpoint::EndpointSettings {
        region: conf.region().map(|r| r.as_ref().to_string()),
        endpoint_url,
        force_path_style,
        use_fips: shared.use_fips(),
        use_dual_stack: shared.use_dual_stack(),
    };
    Ok(S3Connection {
        credentials: shared.credentials_provider(),
        client: aws_sdk_s3::Client::from_conf(conf),
        endpoints,
        request_timeout: s.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
    })
}

/// The endpoint URL the S3 client ends up with, by the rule of
/// `aws_sdk_s3::config::Builder::from(&SdkConfig)`: the URL given in code, else the
/// S3-specific one (`AWS_ENDPOINT_URL_S3`, a profile's `services` section), else the
/// general one (`AWS_ENDPOINT_URL`, a profile's `endpoint_url`).
fn s3_endpoint_url(shared: &aws_config::SdkConfig, given: Option<&str>) -> Option<String> {
    if let Some(url) = given {
        return Some(url.to_string());
    }
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id("S3")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok();
    key.and_then(|key| shared.service_config().and_then(|conf| conf.load_config(key)))
        .or_else(|| shared.endpoint_url().map(str::to_string))
}

/// A KMS client for the same account, region and endpoint (pre-flight checks, the demo).
/// KMS calls are few and not paced, so the SDK's standard retries stay on.
pub async fn build_kms_client(s: &S3Settings) -> Result<aws_sdk_kms::Client, EndpointError> {
    s.check()?;
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(region_chain(s)).timeout_config(s.timeouts());
    if let Some(url) = &s.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    Ok(aws_sdk_kms::Client::new(&loader.load().await))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, allow_http: bool) -> Result<(), EndpointError> {
        check_endpoint(url, "--endpoint-url", allow_http)
    }

    #[test]
    fn https_anywhere_and_http_on_loopback_are_accepted() {
        for url in [
            "https://s3.eu-west-1.amazonaws.com",
            "https://minio.internal:9000/",
            "http://127.0.0.1:5000",
            "http://127.8.9.1",
            "http://localhost:9000/path",
            "HTTP://LOCALHOST",
            "http://[::1]:9000",
        ] {
            assert_eq!(check(url, false), Ok(()), "{url}");
        }
    }

    #[test]
    fn plain_http_to_another_host_needs_allow_http() {
        for url in
            ["http://10.0.0.5:9000", "http://minio.internal", "http://[2001:db8::1]:80", "http://localhost.evil.com"]
        {
            let err = check(url, false).unwrap_err();
            assert!(matches!(err, EndpointError::PlainHttp { .. }), "{url}: {err}");
            assert!(err.to_string().contains("--allow-http"), "{err}");
            assert_eq!(check(url, true), Ok(()), "{url} with --allow-http");
        }
    }

    #[test]
    fn not_a_url_and_other_schemes_are_refused() {
        assert!(matches!(check("127.0.0.1:5000", false), Err(EndpointError::NotAUrl { .. })));
        assert!(matches!(check("http://", false), Err(EndpointError::NotAUrl { .. })));
        assert!(matches!(check("ftp://example.com", true), Err(EndpointError::Scheme { .. })));
    }
}

/// An S3 Control client (CreateJob for `export batch-ops --submit`), with the SDK's
/// retries disabled as for S3: a CreateJob that fails is reported, and running the export
/// again is safe (the same manifest gives the same ClientRequestToken, so the same job).
///
/// `endpoint_url`, when given, is used exactly as it is: S3 Control's endpoint rules would
/// otherwise put the account id in front of its host (`ACCOUNT.host`), which a VPC
/// endpoint or a local stub does not answer to.
///
/// `s` gives the timeouts and `--allow-http`, as for the S3 client beside it.
pub async fn build_control_client(
    s: &S3Settings,
    region: &str,
    endpoint_url: Option<&str>,
) -> Result<aws_sdk_s3control::Client, EndpointError> {
    if let Some(url) = endpoint_url {
        check_endpoint(url, "--s3control-endpoint-url", s.allow_http)?;
    }
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(RetryConfig::disabled())
        .timeout_config(s.timeouts())
        .load()
        .await;
    let mut conf = aws_sdk_s3control::config::Builder::from(&shared);
    if let Some(url) = endpoint_url {
        conf = conf.endpoint_resolver(FixedEndpoint(url.to_string()));
    }
    Ok(aws_sdk_s3control::Client::from_conf(conf.build()))
}

/// An S3 Control endpoint used as given (see [`build_control_client`]).
#[derive(Debug)]
struct FixedEndpoint(String);

impl aws_sdk_s3control::config::endpoint::ResolveEndpoint for FixedEndpoint {
    fn resolve_endpoint<'a>(
        &'a self,
        _: &'a aws_sdk_s3control::config::endpoint::Params,
    ) -> aws_sdk_s3control::config::endpoint::EndpointFuture<'a> {
        aws_sdk_s3control::config::endpoint::EndpointFuture::ready(Ok(
            aws_sdk_s3control::config::endpoint::Endpoint::builder().url(self.0.clone()).build(),
        ))
    }
}
