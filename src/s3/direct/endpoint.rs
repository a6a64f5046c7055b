//! Where a bucket's requests go, resolved once per bucket by the SDK's own endpoint rules.
//!
//! S3's endpoint rules (virtual-hosted or path-style, FIPS, dual-stack, access points,
//! S3 Express, Outposts, the aws-global region, …) are hundreds of cases; hand-rolling them
//! would be wrong for someone. Instead the SDK's [`DefaultResolver`] answers once per
//! bucket with the same parameters the SDK's CopyObject would pass it, and the URL is
//! cached. Only a plain SigV4 endpoint for service `s3` is used directly; anything else
//! (SigV4a multi-region access points, S3 Express sessions, Object Lambda, an ARN) keeps
//! going through the SDK.

use aws_sdk_s3::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use aws_smithy_types::endpoint::EndpointAuthScheme;
use aws_smithy_types::Document;

/// The endpoint settings of the S3 client, as the SDK's operations pass them to its resolver.
#[derive(Debug, Clone, Default)]
pub struct EndpointSettings {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub force_path_style: bool,
    pub use_fips: Option<bool>,
    pub use_dual_stack: Option<bool>,
}

/// A bucket's resolved endpoint, usable by the direct path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketEndpoint {
    pub scheme_is_https: bool,
    /// `host[:port]` as it goes into the Host header and the signature.
    pub authority: String,
    /// The URL's path up to the key: `` (virtual-hosted) or `/bucket` (path-style), no
    /// trailing slash.
    pub base_path: String,
    pub signing_region: String,
}

/// Why a bucket goes through the SDK instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fallback {
    #[error("the endpoint rules refused the bucket: {0}")]
    Unresolvable(String),
    #[error("the endpoint needs {0}, not plain SigV4 for s3")]
    AuthScheme(String),
    #[error("the endpoint URL {0:?} is not of a form the direct path sends to")]
    Url(String),
}

/// Resolve `bucket` as the SDK's CopyObject would (it also turns S3 Express session auth
/// off for CopyObject; an S3 Express bucket still resolves to `sigv4-s3express` and falls
/// back).
pub fn resolve(settings: &EndpointSettings, bucket: &str) -> Result<BucketEndpoint, Fallback> {
    // An ARN (access point, Outposts, Object Lambda) is never sent directly.
    if bucket.starts_with("arn:") {
        return Err(Fallback::AuthScheme("an access point ARN".into()));
    }
    let params = Params::builder()
        .set_region(settings.region.clone())
        .set_use_fips(settings.use_fips)
        .set_use_dual_stack(settings.use_dual_stack)
        .set_endpoint(settings.endpoint_url.clone())
        .force_path_style(settings.force_path_style)
        .disable_s3_express_session_auth(true)
        .bucket(bucket)
        .build()
        .map_err(|e| Fallback::Unresolvable(e.to_string()))?;
    // The default resolver answers synchronously (its future is always ready).
    let endpoint = futures::executor::block_on(DefaultResolver::new().resolve_endpoint(&params))
        .map_err(|e| Fallback::Unresolvable(e.to_string()))?;
    if endpoint.headers().next().is_some() {
        return Err(Fallback::AuthScheme("headers added by the endpoint rules".into()));
    }
    if let Some(backend) = endpoint.properties().get("backend") {
        return Err(Fallback::AuthScheme(format!("the {backend:?} backend")));
    }
    let signing_region = sigv4_s3_region(endpoint.auth_schemes())?
        .or_else(|| settings.region.clone())
        .unwrap_or_else(|| "us-east-1".to_string());
    parse_url(endpoint.url(), signing_region)
}

/// The signing region of the first auth scheme, when that scheme is SigV4 for `s3`.
fn sigv4_s3_region(schemes: &[EndpointAuthScheme]) -> Result<Option<String>, Fallback> {
    // No auth schemes listed: the SDK signs with its defaults, SigV4 for s3.
    let Some(first) = schemes.first() else { return Ok(None) };
    let text = |k: &str| match first.get(k) {
        Some(Document::String(s)) => Some(s.as_str()),
        _ => None,
    };
    if first.name() != "sigv4" {
        return Err(Fallback::AuthScheme(first.name().to_string()));
    }
    if let Some(service) = text("signingName") {
        if service != "s3" {
            return Err(Fallback::AuthScheme(format!("sigv4 for {service}")));
        }
    }
    // The SDK never double-encodes S3 paths; an endpoint asking otherwise is not plain S3.
    if matches!(first.get("disableDoubleEncoding"), Some(Document::Bool(false))) {
        return Err(Fallback::AuthScheme("double-encoded SigV4".into()));
    }
    Ok(text("signingRegion").map(str::to_string))
}

fn parse_url(url: &str, signing_region: String) -> Result<BucketEndpoint, Fallback> {
    let bad = || Fallback::Url(url.to_string());
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let scheme_is_https = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        _ => return Err(bad()),
    };
    if rest.contains(['?', '#', '@']) {
        return Err(bad());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(bad());
    }
    Ok(BucketEndpoint {
        scheme_is_https,
        authority: authority.to_string(),
        base_path: path.trim_end_matches('/').to_string(),
        signing_region,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: Option<&str>, path_style: bool) -> EndpointSettings {
        EndpointSettings {
            region: Some("eu-west-1".into()),
            endpoint_url: endpoint.map(str::to_string),
            force_path_style: path_style,
            ..Default::default()
        }
    }

    #[test]
    fn aws_virtual_hosted() {
        // The rules do name SigV4 for s3 here (an empty list would pass unchecked).
        let params = Params::builder().region("eu-west-1").bucket("my-bucket").build().unwrap();
        let ep = futures::executor::block_on(DefaultResolver::new().resolve_endpoint(&params)).unwrap();
        assert_eq!(ep.auth_schemes()[0].name(), "sigv4");
        let e = resolve(&settings(None, false), "my-bucket").unwrap();
        assert_eq!(
            e,
            BucketEndpoint {
                scheme_is_https: true,
                authority: "my-bucket.s3.eu-west-1.amazonaws.com".into(),
                base_path: "".into(),
                signing_region: "eu-west-1".into()
            }
        );
    }

    #[test]
    fn custom_endpoint_path_style() {
        let e = resolve(&settings(Some("http://127.0.0.1:9000"), true), "b").unwrap();
        assert_eq!((e.scheme_is_https, e.authority.as_str(), e.base_path.as_str()), (false, "127.0.0.1:9000", "/b"));
        // A bucket name that cannot be a host name goes path-style even without forcing it.
        let e = resolve(&settings(None, false), "Not_DNS").unwrap();
        assert_eq!((e.authority.as_str(), e.base_path.as_str()), ("s3.eu-west-1.amazonaws.com", "/Not_DNS"));
    }

    #[test]
    fn express_access_points_and_mrap_fall_back() {
        assert!(resolve(&settings(None, false), "arn:aws:s3:eu-west-1:123456789012:accesspoint/ap").is_err());
        let express = resolve(&settings(None, false), "mybucket--euw1-az1--x-s3");
        assert!(matches!(express, Err(Fallback::AuthScheme(_))), "{express:?}");
        // The global region signs for us-east-1, whatever the client's region is called.
        let global = EndpointSettings { region: Some("aws-global".into()), ..Default::default() };
        let e = resolve(&global, "my-bucket").unwrap();
        assert_eq!((e.authority.as_str(), e.signing_region.as_str()), ("my-bucket.s3.amazonaws.com", "us-east-1"));
    }
}
