//! Connecting to S3-compatible stores.
//!
//! Every S3 client in s32s3 is built here, so the settings that make aws-sdk-s3 work against stores other
//! than AWS live in one place (see [`S3Endpoint::client`]).

use std::fmt;
use std::time::Duration;

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    timeout::TimeoutConfig,
};
use zeroize::Zeroizing;

use crate::{Error, Result};

/// A secret string (a secret key or a password): never printed, zeroized on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret itself, for the one place that must use it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "Secret(<empty>)" } else { "Secret(<redacted>)" })
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

/// Where an S3-compatible store is and how to sign requests to it.
#[derive(Clone, Debug)]
pub struct S3Endpoint {
    /// Base URL, e.g. `http://127.0.0.1:9000` or `https://s3.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    /// Region used for signing; S3-compatible stores usually accept `us-east-1`.
    pub region: String,
    /// Access key id (not secret: it appears in every request and in server logs).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
}

impl S3Endpoint {
    /// Builds an aws-sdk-s3 client for this endpoint.
    ///
    /// The settings that make the SDK work against S3-compatible stores (checked against SeaweedFS and moto):
    /// - path-style addressing (`http://host/bucket/key`): virtual-hosted style needs wildcard DNS that
    ///   local and most self-hosted stores do not have;
    /// - request checksums only when an operation requires them, and response checksums validated only when
    ///   required: since 2025 the SDK otherwise adds CRC32 trailers (`x-amz-checksum-*` with
    ///   `aws-chunked` encoding) to every upload, which several S3-compatible servers reject or store as part
    ///   of the body;
    /// - static credentials, no environment or profile lookup: the library never reads the environment.
    ///
    /// # Errors
    /// [`Error::Config`] when the endpoint is not an `http(s)://` URL.
    pub fn client(&self) -> Result<aws_sdk_s3::Client> {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(Error::Config {
                field: "endpoint".into(),
                reason: format!("{:?} is not an http:// or https:// URL", self.endpoint),
            });
        }
        let credentials = Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.expose().to_owned(),
            None,
            None,
            "s32s3",
        );
        let region = if self.region.is_empty() { "us-east-1".to_owned() } else { self.region.clone() };
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.endpoint.trim_end_matches('/'))
            .region(Region::new(region))
            .credentials_provider(credentials)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_mins(2))
                    .build(),
            )
            .build();
        Ok(aws_sdk_s3::Client::from_conf(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let endpoint = S3Endpoint {
            endpoint: "http://127.0.0.1:1".into(),
            region: String::new(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        };
        let printed = format!("{endpoint:?} {endpoint:#?}");
        assert!(!printed.contains("wJalrXUtnFEMI"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
        assert_eq!(format!("{:?}", Secret::default()), "Secret(<empty>)");
    }

    #[test]
    fn rejects_endpoint_without_scheme() {
        let endpoint = S3Endpoint {
            endpoint: "127.0.0.1:9000".into(),
            region: String::new(),
            access_key_id: String::new(),
            secret_access_key: Secret::default(),
        };
        let err = endpoint.client().unwrap_err();
        assert!(err.to_string().contains("not an http:// or https:// URL"), "{err}");
    }
}
