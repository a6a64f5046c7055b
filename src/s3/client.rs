//! Building the aws-sdk-s3 client.

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use std::time::Duration;

/// Where and how to reach S3.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub region: Option<String>,
    /// A custom endpoint (an emulator, an S3-compatible store). `AWS_ENDPOINT_URL` works too.
    pub endpoint_url: Option<String>,
    /// Use virtual-hosted addressing even with a custom endpoint.
    pub virtual_host: bool,
}

/// The S3 client with the SDK's retries disabled: one attempt per call, so that every
/// retry is the engine's, counted, paced and recorded.
pub async fn build_client(s: &S3Settings) -> aws_sdk_s3::Client {
    let region = RegionProviderChain::first_try(s.region.clone().map(Region::new))
        .or_default_provider()
        .or_else(Region::new("us-east-1"));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(60))
                .build(),
        );
    if let Some(url) = &s.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let shared = loader.load().await;
    // Emulators and most S3-compatible stores only speak path-style.
    let custom_endpoint = shared.endpoint_url().is_some();
    let conf = aws_sdk_s3::config::Builder::from(&shared).force_path_style(custom_endpoint && !s.virtual_host).build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A KMS client for the same account, region and endpoint (pre-flight checks, the demo).
/// KMS calls are few and not paced, so the SDK's standard retries stay on.
pub async fn build_kms_client(s: &S3Settings) -> aws_sdk_kms::Client {
    let region = RegionProviderChain::first_try(s.region.clone().map(Region::new))
        .or_default_provider()
        .or_else(Region::new("us-east-1"));
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region);
    if let Some(url) = &s.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    aws_sdk_kms::Client::new(&loader.load().await)
}

/// An S3 Control client (CreateJob for `export batch-ops --submit`), with the SDK's
/// retries disabled as for S3: a CreateJob that fails is reported, and running the export
/// again is safe (the same manifest gives the same ClientRequestToken, so the same job).
///
/// `endpoint_url`, when given, is used exactly as it is: S3 Control's endpoint rules would
/// otherwise put the account id in front of its host (`ACCOUNT.host`), which a VPC
/// endpoint or a local stub does not answer to.
pub async fn build_control_client(region: &str, endpoint_url: Option<&str>) -> aws_sdk_s3control::Client {
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(60))
                .build(),
        )
        .load()
        .await;
    let mut conf = aws_sdk_s3control::config::Builder::from(&shared);
    if let Some(url) = endpoint_url {
        conf = conf.endpoint_resolver(FixedEndpoint(url.to_string()));
    }
    aws_sdk_s3control::Client::from_conf(conf.build())
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
