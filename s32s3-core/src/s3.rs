//! Connecting to S3-compatible stores.
//!
//! Every S3 client in s32s3 is built here, so the settings that make aws-sdk-s3 work against stores other
//! than AWS live in one place (see [`S3Endpoint::client`]). [`Store`] pairs a client with the side it talks
//! to, so every error names where it happened, and adds the few raw requests the SDK cannot express
//! (bucket configuration kept as the server's own XML) or does too slowly (whole small objects: see
//! [`Store::get_small`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    timeout::TimeoutConfig,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use base64::Engine as _;
use md5::Digest as _;
use zeroize::Zeroizing;

use crate::error::{S3Error, S3ErrorKind, Side, classify, s3_error};
use crate::retry::RetryPolicy;
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
    /// The region to sign with (`us-east-1` when none is configured).
    #[must_use]
    pub fn signing_region(&self) -> &str {
        if self.region.is_empty() { "us-east-1" } else { &self.region }
    }

    /// Checks the endpoint URL.
    ///
    /// # Errors
    /// [`Error::Config`] when the endpoint is not an `http(s)://` URL.
    pub fn validate(&self, field: &str) -> Result<()> {
        let ok = (self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://"))
            && reqwest::Url::parse(&self.endpoint).is_ok_and(|u| u.host().is_some());
        if ok {
            Ok(())
        } else {
            Err(Error::Config {
                field: field.to_owned(),
                reason: format!("{:?} is not an http:// or https:// URL", self.endpoint),
            })
        }
    }

    /// Builds an aws-sdk-s3 client for this endpoint, retrying temporary failures up to `max_attempts`
    /// times in all (exponential backoff with jitter, the SDK's standard mode; `1` turns the SDK's retries
    /// off, which is what [`Store`] does: it retries under its own [`RetryPolicy`] instead).
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
    pub fn client_with_retries(&self, max_attempts: u32) -> Result<aws_sdk_s3::Client> {
        self.validate("endpoint")?;
        let credentials = Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.expose().to_owned(),
            None,
            None,
            "s32s3",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.endpoint.trim_end_matches('/'))
            .region(Region::new(self.signing_region().to_owned()))
            .credentials_provider(credentials)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(if max_attempts <= 1 {
                RetryConfig::disabled()
            } else {
                RetryConfig::standard()
                    .with_max_attempts(max_attempts)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(20))
            })
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_mins(2))
                    .build(),
            )
            .build();
        Ok(aws_sdk_s3::Client::from_conf(config))
    }

    /// [`S3Endpoint::client_with_retries`] with the default of 5 attempts.
    ///
    /// # Errors
    /// [`Error::Config`] when the endpoint is not an `http(s)://` URL.
    pub fn client(&self) -> Result<aws_sdk_s3::Client> {
        self.client_with_retries(5)
    }
}

/// Requests sent, by S3 operation (every attempt counts): what the metrics report and the tests check
/// ("an unchanged object costs no request").
#[derive(Debug, Default)]
pub struct RequestCounter {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl RequestCounter {
    fn add(&self, operation: &str) {
        *self.counts.lock().expect("not poisoned").entry(operation.to_owned()).or_default() += 1;
    }

    /// Requests so far, by operation.
    #[must_use]
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().expect("not poisoned").clone()
    }
}

/// Counts every request the SDK transmits (retries included).
#[derive(Debug)]
struct CountRequests(Arc<RequestCounter>);

impl aws_sdk_s3::config::Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "s32s3-count-requests"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> std::result::Result<(), aws_sdk_s3::error::BoxError> {
        let operation = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>();
        self.0.add(operation.map_or("unknown", |m| m.name()));
        Ok(())
    }
}

/// One side of a run (source or destination): an S3 client plus where it points, so every error says
/// where it happened, and the run's [`RetryPolicy`], which every request of this store goes through.
#[derive(Clone, Debug)]
pub struct Store {
    side: Side,
    endpoint: S3Endpoint,
    client: aws_sdk_s3::Client,
    http: reqwest::Client,
    /// The keys as SigV4 signs with them, built once rather than for every raw request.
    identity: aws_smithy_runtime_api::client::identity::Identity,
    requests: Arc<RequestCounter>,
    policy: RetryPolicy,
}

impl Store {
    /// Connects (lazily: no request is sent) to `endpoint` as `side`; temporary failures are retried up to
    /// `max_attempts` attempts per request ([`RetryPolicy::new`]).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid endpoint URL.
    pub fn new(side: Side, endpoint: S3Endpoint, max_attempts: u32) -> Result<Self> {
        endpoint.validate(&format!("{side}.endpoint"))?;
        let requests = Arc::new(RequestCounter::default());
        // The SDK does not retry: every request is retried once, here, under `policy`.
        let client = endpoint.client_with_retries(1)?;
        let client = aws_sdk_s3::Client::from_conf(
            client.config().to_builder().interceptor(CountRequests(Arc::clone(&requests))).build(),
        );
        let http = reqwest::Client::builder()
            // S3 answers a wrong region or endpoint with a 301/307 and an error document: report it, do not
            // follow it with a signature made for another host.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_mins(2))
            .build()
            .map_err(|e| Error::Config { field: format!("{side}.endpoint"), reason: e.to_string() })?;
        let identity = Credentials::new(
            endpoint.access_key_id.clone(),
            endpoint.secret_access_key.expose().to_owned(),
            None,
            None,
            "s32s3",
        )
        .into();
        Ok(Self { side, endpoint, client, http, identity, requests, policy: RetryPolicy::new(max_attempts) })
    }

    /// The same store under another retry policy.
    #[must_use]
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The retry policy every request of this store goes through.
    #[must_use]
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The aws-sdk-s3 client. It does not retry by itself: send through [`Store::send`].
    #[must_use]
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// Requests sent so far, by S3 operation.
    #[must_use]
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.requests.snapshot()
    }

    /// Source or destination.
    #[must_use]
    pub fn side(&self) -> Side {
        self.side
    }

    /// The endpoint URL (for messages).
    #[must_use]
    pub fn endpoint_url(&self) -> &str {
        &self.endpoint.endpoint
    }

    /// Sends the SDK request that `request` builds (built anew for each attempt), retrying temporary
    /// failures under this store's policy; errors name this side, `operation` and the location.
    ///
    /// # Errors
    /// The request's last failure, classified.
    pub async fn send<T, E, F, Fut>(
        &self,
        operation: &'static str,
        bucket: &str,
        key: Option<&str>,
        request: F,
    ) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.policy.run(|| async { request().await.map_err(|e| self.err(operation, bucket, key, e)) }).await
    }

    /// A GET whose body is read whole, the request and the body read retried together: a body that
    /// breaks off is read again from the start. Returns the response (its body taken out) and the bytes.
    ///
    /// # Errors
    /// The last failure, classified; a broken body is [`S3ErrorKind::Temporary`].
    pub async fn get_bytes(
        &self,
        bucket: &str,
        key: &str,
        request: impl Fn() -> aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder,
        size_hint: u64,
    ) -> Result<(aws_sdk_s3::operation::get_object::GetObjectOutput, bytes::Bytes)> {
        self.policy
            .run(|| async {
                let mut out =
                    request().send().await.map_err(|e| self.err("GetObject", bucket, Some(key), e))?;
                let body = std::mem::take(&mut out.body);
                let bytes = read_body(body, self.side, bucket, key, size_hint).await?;
                Ok((out, bytes))
            })
            .await
    }

    /// Wraps an SDK error with this side, the operation and the location.
    #[allow(clippy::needless_pass_by_value)] // taken by value so call sites read `.map_err(|e| store.err(…, e))`
    pub fn err<E>(
        &self,
        operation: &'static str,
        bucket: &str,
        key: Option<&str>,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.located(s3_error(self.side, operation, Some(bucket), key, &err))
    }

    /// Adds the endpoint to an "unreachable" error: the one detail the operator needs to fix it.
    fn located(&self, mut e: S3Error) -> Error {
        if e.kind == S3ErrorKind::Unreachable {
            e.message = format!("cannot reach {}: {}", self.endpoint.endpoint, e.message);
        }
        Error::S3(e)
    }

    /// Lists the buckets this key can see.
    ///
    /// # Errors
    /// Any S3 failure, classified.
    pub async fn list_buckets(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .policy
                .run(|| async {
                    self.client
                        .list_buckets()
                        .set_continuation_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| self.located(s3_error(self.side, "ListBuckets", None, None, &e)))
                })
                .await?;
            names.extend(page.buckets().iter().filter_map(|b| b.name().map(str::to_owned)));
            token = page.continuation_token().filter(|t| !t.is_empty()).map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        names.sort();
        Ok(names)
    }

    /// Every object under `prefix`, page by page (`ListObjectsV2` with `encoding-type=url`, each page
    /// retried on its own, keys decoded). `visit` returns `false` to stop early.
    ///
    /// # Errors
    /// S3 failures; [`Error::Corrupt`] for a key that is not URL-encoded UTF-8.
    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        mut visit: impl FnMut(Vec<aws_sdk_s3::types::Object>) -> Result<bool>,
    ) -> Result<()> {
        let mut token: Option<String> = None;
        loop {
            let page = self
                .send("ListObjectsV2", bucket, prefix, || {
                    self.client
                        .list_objects_v2()
                        .bucket(bucket)
                        .set_prefix(prefix.filter(|p| !p.is_empty()).map(str::to_owned))
                        .encoding_type(aws_sdk_s3::types::EncodingType::Url)
                        .set_continuation_token(token.clone())
                        .send()
                })
                .await?;
            let url_encoded = page.encoding_type() == Some(&aws_sdk_s3::types::EncodingType::Url);
            let mut objects = page.contents().to_vec();
            if url_encoded {
                for object in &mut objects {
                    let raw = object.key().unwrap_or_default();
                    let decoded = url_decode(raw).ok_or_else(|| {
                        Error::corrupt(
                            format!("s3://{bucket}"),
                            format!("listed key {raw:?} is not URL-encoded UTF-8"),
                        )
                    })?;
                    *object = aws_sdk_s3::types::Object::builder()
                        .key(decoded)
                        .set_size(object.size())
                        .set_e_tag(object.e_tag().map(str::to_owned))
                        .set_last_modified(object.last_modified().copied())
                        .set_storage_class(object.storage_class().cloned())
                        .build();
                }
            }
            if !visit(objects)? {
                return Ok(());
            }
            token = page.next_continuation_token().filter(|t| !t.is_empty()).map(str::to_owned);
            if page.is_truncated() != Some(true) || token.is_none() {
                return Ok(());
            }
        }
    }

    /// Creates `bucket` (with object lock when asked). A bucket already ours counts as created: the answer
    /// to an earlier attempt may have been lost, and its retry then hears `BucketAlreadyOwnedByYou`.
    ///
    /// # Errors
    /// S3 failures.
    pub async fn create_bucket(&self, bucket: &str, object_lock: bool) -> Result<()> {
        let created = self
            .send("CreateBucket", bucket, None, || {
                self.client.create_bucket().bucket(bucket).object_lock_enabled_for_bucket(object_lock).send()
            })
            .await;
        match created {
            Err(Error::S3(e)) if e.code.as_deref() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Whether `bucket` exists (and this key may access it).
    ///
    /// # Errors
    /// S3 failures other than "not found".
    pub async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        match self.send("HeadBucket", bucket, None, || self.client.head_bucket().bucket(bucket).send()).await
        {
            Ok(_) => Ok(true),
            Err(Error::S3(e)) if e.kind == S3ErrorKind::NotFound => Ok(false),
            // A HEAD response has no body, so a 403 does not say whether the key is wrong or lacks a
            // permission: ask again with a request whose error carries a code.
            Err(Error::S3(e)) if e.kind == S3ErrorKind::PermissionDenied => self
                .send("ListObjectsV2", bucket, None, || {
                    self.client.list_objects_v2().bucket(bucket).max_keys(1).send()
                })
                .await
                .map(|_| true),
            Err(e) => Err(e),
        }
    }

    /// Every object version and delete marker under `prefix` in the order the server lists them (S3: per
    /// key, newest first, versions and delete markers interleaved), page by page, keys URL-decoded and
    /// last-modified times at full precision, with `IsLatest`. The SDK's typed answer keeps versions and
    /// delete markers in two lists, which loses that order; this reads the server's XML itself. (moto
    /// lists all versions before all delete markers: `IsLatest` still tells the newest of a key.)
    ///
    /// # Errors
    /// S3 failures; [`Error::Corrupt`] for an answer that is not a version listing.
    pub async fn list_versions_in_order(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        mut visit: impl FnMut(VersionItem),
    ) -> Result<()> {
        let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let mut query = vec![("encoding-type", "url".to_owned())];
            if let Some(prefix) = prefix.filter(|p| !p.is_empty()) {
                query.push(("prefix", prefix.to_owned()));
            }
            if let Some(marker) = &key_marker {
                query.push(("key-marker", marker.clone()));
            }
            if let Some(marker) = &version_marker {
                query.push(("version-id-marker", marker.clone()));
            }
            query.sort();
            let query: Vec<String> = std::iter::once("versions".to_owned())
                .chain(query.iter().map(|(k, v)| format!("{k}={}", uri_encode(v))))
                .collect();
            let url = format!(
                "{}/{}?{}",
                self.endpoint.endpoint.trim_end_matches('/'),
                uri_encode(bucket),
                query.join("&")
            );
            let place = Place { operation: "ListObjectVersions", bucket, key: None };
            let (_, body) = self
                .raw(&place, || {
                    let mut headers = http::HeaderMap::new();
                    self.sign(&reqwest::Method::GET, &url, &mut headers, SignableBody::Bytes(&[]))?;
                    Ok(self.http.get(&url).headers(headers))
                })
                .await?;
            let page = parse_version_listing(&body)
                .map_err(|e| Error::corrupt(format!("s3://{bucket}?versions"), e))?;
            for item in page.items {
                visit(item);
            }
            if !page.truncated {
                return Ok(());
            }
            (key_marker, version_marker) = (page.next_key_marker, page.next_version_marker);
            if key_marker.is_none() {
                return Ok(());
            }
        }
    }

    /// A signed request outside the SDK's typed model: a bucket sub-resource such as `?lifecycle`, sent and
    /// received as the server's own bytes. Returns `None` for "not found" (no such configuration).
    ///
    /// # Errors
    /// S3 failures other than "not found", classified like SDK errors.
    pub async fn raw_bucket_request(
        &self,
        method: &str,
        operation: &'static str,
        bucket: &str,
        subresource: &str,
        body: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>> {
        let url =
            format!("{}/{}?{subresource}", self.endpoint.endpoint.trim_end_matches('/'), uri_encode(bucket));
        let body = bytes::Bytes::copy_from_slice(body.unwrap_or_default());
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| Error::Config { field: format!("{}.endpoint", self.side), reason: e.to_string() })?;
        // Required by S3 for PutBucketLifecycleConfiguration, PutBucketCors, … and harmless elsewhere.
        let md5 = (!body.is_empty())
            .then(|| base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body)));
        let place = Place { operation, bucket, key: None };
        let answer = self
            .raw(&place, || {
                let mut headers = http::HeaderMap::new();
                if let Some(md5) = &md5 {
                    headers.insert("content-md5", header_value(md5)?);
                }
                self.sign(&method, &url, &mut headers, SignableBody::Bytes(&body))?;
                Ok(self.http.request(method.clone(), &url).headers(headers).body(body.clone()))
            })
            .await;
        match answer {
            Ok((_, bytes)) => Ok(Some(bytes.to_vec())),
            Err(Error::S3(e)) if e.kind == S3ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads a whole object (`GET` with `If-Match: etag`) outside the SDK: its response headers and body.
    ///
    /// For objects of a few KiB the SDK's per-request machinery (interceptors, endpoint rules, config
    /// layers, header conversions) costs more CPU than moving and encrypting the bytes; this path signs
    /// with SigV4 and sends one plain HTTP request, retried (request and body together) under the store's
    /// policy. `None` when the key cannot be sent through a URL unchanged (a `.` or `..` segment, which URL
    /// parsing resolves): the caller uses the SDK.
    ///
    /// # Errors
    /// S3 failures, classified like SDK errors (412 when the object changed since it was listed).
    pub async fn get_small(
        &self,
        bucket: &str,
        key: &str,
        if_match: &str,
    ) -> Result<Option<(http::HeaderMap, bytes::Bytes)>> {
        let Some(url) = self.object_url(bucket, key) else { return Ok(None) };
        let place = Place { operation: "GetObject", bucket, key: Some(key) };
        let answer = self
            .raw(&place, || {
                let mut headers = http::HeaderMap::new();
                headers.insert(http::header::IF_MATCH, header_value(if_match)?);
                self.sign(&reqwest::Method::GET, &url, &mut headers, SignableBody::Bytes(&[]))?;
                Ok(self.http.get(&url).headers(headers))
            })
            .await?;
        Ok(Some(answer))
    }

    /// Writes a whole object (`PUT`, payload not signed: crypt chunks carry their own authenticators)
    /// outside the SDK, with `headers` (content type, `x-amz-meta-*`, …). Returns the new version id.
    /// `Ok(Err(body))` when the key cannot be sent through a URL unchanged: the caller uses the SDK.
    ///
    /// # Errors
    /// S3 failures, classified like SDK errors.
    pub async fn put_small(
        &self,
        bucket: &str,
        key: &str,
        body: bytes::Bytes,
        headers: &[(&'static str, &str)],
    ) -> Result<std::result::Result<Option<String>, bytes::Bytes>> {
        let Some(url) = self.object_url(bucket, key) else { return Ok(Err(body)) };
        let place = Place { operation: "PutObject", bucket, key: Some(key) };
        let (response_headers, _) = self
            .raw(&place, || {
                let mut map = http::HeaderMap::with_capacity(headers.len() + 4);
                for (name, value) in headers {
                    map.insert(*name, header_value(value)?);
                }
                map.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(body.len()));
                self.sign(&reqwest::Method::PUT, &url, &mut map, SignableBody::UnsignedPayload)?;
                Ok(self.http.put(&url).headers(map).body(body.clone()))
            })
            .await?;
        Ok(Ok(response_headers
            .get("x-amz-version-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && *v != "null")
            .map(str::to_owned)))
    }

    /// `endpoint/bucket/key` with every byte but the unreserved ones and `/` percent-encoded, or `None`
    /// for keys a URL parser would rewrite (`.` and `..` segments).
    fn object_url(&self, bucket: &str, key: &str) -> Option<String> {
        if key.split('/').any(|segment| segment == "." || segment == "..") {
            return None;
        }
        let mut url = format!("{}/{}/", self.endpoint.endpoint.trim_end_matches('/'), uri_encode(bucket));
        for (i, segment) in key.split('/').enumerate() {
            if i > 0 {
                url.push('/');
            }
            url.push_str(&uri_encode(segment));
        }
        Some(url)
    }

    /// Sends the raw request `build` makes (built and signed anew for each attempt) and reads its answer
    /// whole, both under the store's policy: the headers and body of a 2xx answer.
    async fn raw(
        &self,
        place: &Place<'_>,
        build: impl Fn() -> Result<reqwest::RequestBuilder>,
    ) -> Result<(http::HeaderMap, bytes::Bytes)> {
        self.policy
            .run(|| async {
                let response = self.send_raw(place, build()?).await?;
                let headers = response.headers().clone();
                let body = response.bytes().await.map_err(|e| {
                    body_error(self.side, place.operation, place.bucket, place.key.unwrap_or_default(), &e)
                })?;
                Ok((headers, body))
            })
            .await
    }

    /// Sends one request, counted; a non-2xx answer becomes a classified error from its XML body.
    async fn send_raw(
        &self,
        place: &Place<'_>,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        self.requests.add(place.operation);
        let response = request.send().await.map_err(|e| {
            let kind = if e.is_connect() { S3ErrorKind::Unreachable } else { S3ErrorKind::Temporary };
            self.request_error(place, kind, None, None, crate::error::source_chain(&e))
        })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        // Error documents are small; a HEAD-like empty body still has a status to classify.
        let text = response.text().await.unwrap_or_default();
        let code = xml_tag(&text, "Code");
        let kind = classify(Some(status), code.as_deref());
        let message = xml_tag(&text, "Message").unwrap_or_else(|| format!("HTTP {status}"));
        Err(self.request_error(place, kind, Some(status), code, message))
    }

    fn request_error(
        &self,
        place: &Place<'_>,
        kind: S3ErrorKind,
        status: Option<u16>,
        code: Option<String>,
        message: String,
    ) -> Error {
        self.located(S3Error {
            side: self.side,
            operation: place.operation,
            bucket: Some(place.bucket.to_owned()),
            key: place.key.map(str::to_owned),
            kind,
            status,
            code,
            message,
        })
    }

    /// Adds SigV4 headers (`Authorization`, `X-Amz-Date`, `X-Amz-Content-Sha256`) for this request.
    fn sign(
        &self,
        method: &reqwest::Method,
        url: &str,
        headers: &mut http::HeaderMap,
        body: SignableBody<'_>,
    ) -> Result<()> {
        let config_error = |e: &dyn fmt::Display| Error::Config {
            field: format!("{}.endpoint", self.side),
            reason: e.to_string(),
        };
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&self.identity)
            .region(self.endpoint.signing_region())
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| Error::Config { field: format!("{}.region", self.side), reason: e.to_string() })?
            .into();
        let signable = SignableRequest::new(
            method.as_str(),
            url,
            headers.iter().map(|(k, v)| (k.as_str(), v.to_str().unwrap_or_default())),
            body,
        )
        .map_err(|e| config_error(&e))?;
        let (instructions, _signature) = sign(signable, &params).map_err(|e| config_error(&e))?.into_parts();
        let (signed, _params) = instructions.into_parts();
        for header in signed {
            let name =
                http::HeaderName::from_bytes(header.name().as_bytes()).map_err(|e| config_error(&e))?;
            let mut value = header_value(header.value())?;
            value.set_sensitive(header.sensitive());
            headers.insert(name, value);
        }
        Ok(())
    }
}

/// What a raw request is about, for its errors.
struct Place<'a> {
    operation: &'static str,
    bucket: &'a str,
    key: Option<&'a str>,
}

/// A header value; only non-visible bytes can fail (metadata values are checked when read).
fn header_value(value: &str) -> Result<http::HeaderValue> {
    http::HeaderValue::from_str(value).map_err(|_| Error::Config {
        field: "header".into(),
        reason: format!("{value:?} cannot be sent as an HTTP header value"),
    })
}

/// One entry of a version listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionItem {
    /// The key (decoded).
    pub key: String,
    /// The version id (`None` for the `null` version).
    pub version_id: Option<String>,
    /// A delete marker rather than a version.
    pub delete_marker: bool,
    /// Last-modified, at the precision the server gives.
    pub last_modified: time::OffsetDateTime,
    /// Size in bytes (0 for a delete marker).
    pub size: u64,
    /// The current version (or delete marker) of its key.
    pub is_latest: bool,
}

struct VersionPage {
    items: Vec<VersionItem>,
    truncated: bool,
    next_key_marker: Option<String>,
    next_version_marker: Option<String>,
}

/// Parses a `ListVersionsResult` in document order.
fn parse_version_listing(body: &[u8]) -> std::result::Result<VersionPage, String> {
    use aws_smithy_xml::decode::{Document, try_data};
    let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut doc = Document::new(text);
    let mut root = doc.root_element().map_err(|e| e.to_string())?;
    if !root.start_el().matches("ListVersionsResult") {
        return Err(format!("a <{}> where a ListVersionsResult was expected", root.start_el().local()));
    }
    let mut page =
        VersionPage { items: Vec::new(), truncated: false, next_key_marker: None, next_version_marker: None };
    let mut url_encoded = false;
    let mut raw_items = Vec::new();
    while let Some(mut tag) = root.next_tag() {
        let name = tag.start_el().local().to_owned();
        match name.as_str() {
            "Version" | "DeleteMarker" => {
                let (mut key, mut version_id, mut modified, mut size, mut is_latest) =
                    (None, None, None, 0, false);
                while let Some(mut field) = tag.next_tag() {
                    let field_name = field.start_el().local().to_owned();
                    if !matches!(
                        field_name.as_str(),
                        "Key" | "VersionId" | "LastModified" | "Size" | "IsLatest"
                    ) {
                        continue; // ETag, IsLatest, Owner, StorageClass, …
                    }
                    let value = try_data(&mut field).map_err(|e| e.to_string())?.into_owned();
                    match field_name.as_str() {
                        "Key" => key = Some(value),
                        "VersionId" => version_id = Some(value).filter(|v| !v.is_empty() && v != "null"),
                        "LastModified" => modified = Some(value),
                        "IsLatest" => is_latest = value.trim() == "true",
                        _ => size = value.trim().parse().map_err(|e| format!("bad Size {value:?}: {e}"))?,
                    }
                }
                let key = key.ok_or("a version without a Key")?;
                let modified = modified.ok_or_else(|| format!("version of {key:?} without LastModified"))?;
                let last_modified =
                    time::OffsetDateTime::parse(&modified, &time::format_description::well_known::Rfc3339)
                        .map_err(|e| format!("bad LastModified {modified:?}: {e}"))?;
                raw_items.push(VersionItem {
                    key,
                    version_id,
                    delete_marker: name == "DeleteMarker",
                    last_modified,
                    size,
                    is_latest,
                });
            }
            "IsTruncated" => page.truncated = try_data(&mut tag).map_err(|e| e.to_string())?.trim() == "true",
            "NextKeyMarker" => {
                page.next_key_marker = Some(try_data(&mut tag).map_err(|e| e.to_string())?.into_owned());
            }
            "NextVersionIdMarker" => {
                page.next_version_marker = Some(try_data(&mut tag).map_err(|e| e.to_string())?.into_owned());
            }
            "EncodingType" => url_encoded = try_data(&mut tag).map_err(|e| e.to_string())?.trim() == "url",
            _ => {}
        }
    }
    for mut item in raw_items {
        if url_encoded {
            item.key = url_decode(&item.key)
                .ok_or_else(|| format!("key {:?} is not URL-encoded UTF-8", item.key))?;
        }
        page.items.push(item);
    }
    if url_encoded && let Some(marker) = &page.next_key_marker {
        page.next_key_marker = Some(url_decode(marker).ok_or("a NextKeyMarker that is not URL-encoded")?);
    }
    Ok(page)
}

/// Decodes S3's `encoding-type=url` keys: `%XX` escapes and `+` for a space (AWS and SeaweedFS write a space
/// as `+`, moto as `%20`; a literal `+` always comes as `%2B`).
#[must_use]
pub fn url_decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Reads a whole response body into one buffer of the expected size, classifying a broken stream as
/// temporary (the read is retried by the caller's policy).
pub(crate) async fn read_body(
    body: aws_sdk_s3::primitives::ByteStream,
    side: Side,
    bucket: &str,
    key: &str,
    size_hint: u64,
) -> Result<bytes::Bytes> {
    // Filled chunk by chunk into one buffer of the expected size: collecting the chunks first and joining
    // them afterwards would hold every body twice at its peak.
    let buffer = bytes::BytesMut::with_capacity(usize::try_from(size_hint).unwrap_or(0).min(1 << 30));
    read_body_into(body, side, bucket, key, buffer).await
}

/// [`read_body`] into a buffer the caller provides (and may have used before).
pub(crate) async fn read_body_into(
    mut body: aws_sdk_s3::primitives::ByteStream,
    side: Side,
    bucket: &str,
    key: &str,
    mut buffer: bytes::BytesMut,
) -> Result<bytes::Bytes> {
    loop {
        match body.try_next().await {
            Ok(Some(chunk)) => buffer.extend_from_slice(&chunk),
            Ok(None) => return Ok(buffer.freeze()),
            Err(e) => return Err(body_error(side, "GetObject", bucket, key, &e)),
        }
    }
}

/// A response body that broke off: temporary (the read is retried).
pub(crate) fn body_error(
    side: Side,
    operation: &'static str,
    bucket: &str,
    key: &str,
    err: &(dyn std::error::Error + 'static),
) -> Error {
    Error::S3(S3Error {
        side,
        operation,
        bucket: Some(bucket.to_owned()),
        key: (!key.is_empty()).then(|| key.to_owned()),
        kind: S3ErrorKind::Temporary,
        status: None,
        code: None,
        message: format!("reading the body: {}", crate::error::source_chain(err)),
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters (a URL path segment, a tag key or value).
pub(crate) fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push_str(&hex::encode_upper([b]));
        }
    }
    out
}

/// The text of the first `<tag>…</tag>` in an S3 error document.
fn xml_tag(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> S3Endpoint {
        S3Endpoint {
            endpoint: url.into(),
            region: String::new(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        }
    }

    #[test]
    fn secret_debug_is_redacted() {
        let endpoint = endpoint("http://127.0.0.1:1");
        let store = Store::new(Side::Source, endpoint.clone(), 1).unwrap();
        let printed = format!("{endpoint:?} {endpoint:#?} {store:?}");
        assert!(!printed.contains("wJalrXUtnFEMI"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
        assert_eq!(format!("{:?}", Secret::default()), "Secret(<empty>)");
    }

    #[test]
    fn rejects_endpoints_that_are_not_urls() {
        for bad in ["127.0.0.1:9000", "ftp://host", "http://", ""] {
            let err = Store::new(Side::Destination, endpoint(bad), 1).unwrap_err();
            assert!(err.to_string().contains("destination.endpoint"), "{err}");
            assert!(err.to_string().contains("not an http:// or https:// URL"), "{err}");
        }
    }

    #[test]
    fn xml_error_fields() {
        let xml = "<?xml version=\"1.0\"?><Error><Code>NoSuchLifecycleConfiguration</Code>\
                   <Message>The lifecycle configuration does not exist</Message></Error>";
        assert_eq!(xml_tag(xml, "Code").as_deref(), Some("NoSuchLifecycleConfiguration"));
        assert_eq!(xml_tag(xml, "Message").as_deref(), Some("The lifecycle configuration does not exist"));
        assert_eq!(xml_tag(xml, "Missing"), None);
    }

    #[test]
    fn object_urls_keep_every_key_byte_or_refuse() {
        let store = Store::new(Side::Source, endpoint("http://127.0.0.1:9000/"), 1).unwrap();
        assert_eq!(
            store.object_url("b", "dir/a b+c%d/é//x").as_deref(),
            Some("http://127.0.0.1:9000/b/dir/a%20b%2Bc%25d/%C3%A9//x")
        );
        assert_eq!(store.object_url("b", "dir/").as_deref(), Some("http://127.0.0.1:9000/b/dir/"));
        // A URL parser would resolve these segments: such keys go through the SDK.
        for key in ["a/../b", "./a", "a/.", ".."] {
            assert_eq!(store.object_url("b", key), None, "{key}");
        }
        assert!(store.object_url("b", "a/.../b.").is_some());
    }

    #[test]
    fn version_listings_keep_their_order() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><EncodingType>url</EncodingType>
<IsTruncated>true</IsTruncated><NextKeyMarker>a%2Bb</NextKeyMarker><NextVersionIdMarker>v0</NextVersionIdMarker>
<DeleteMarker><Key>a+b</Key><VersionId>v3</VersionId><IsLatest>true</IsLatest><LastModified>2026-12-01T20:04:05.456Z</LastModified></DeleteMarker>
<Version><Key>a+b</Key><VersionId>v2</VersionId><IsLatest>false</IsLatest><LastModified>2026-12-01T20:04:05.456Z</LastModified><ETag>"x"</ETag><Size>42</Size><Owner><ID>o</ID><DisplayName>d</DisplayName></Owner></Version>
<Version><Key>a%20%26</Key><VersionId>null</VersionId><LastModified>2026-12-01T20:04:05Z</LastModified><Size>1</Size></Version>
</ListVersionsResult>"#;
        let page = parse_version_listing(xml.as_bytes()).unwrap();
        let got: Vec<(&str, Option<&str>, bool, u64, bool)> = page
            .items
            .iter()
            .map(|v| (v.key.as_str(), v.version_id.as_deref(), v.delete_marker, v.size, v.is_latest))
            .collect();
        assert_eq!(
            got,
            [
                ("a b", Some("v3"), true, 0, true),
                ("a b", Some("v2"), false, 42, false),
                ("a &", None, false, 1, false)
            ]
        );
        assert_eq!(page.items[0].last_modified, time::macros::datetime!(2026-12-01 20:04:05.456 UTC));
        assert!(page.truncated);
        assert_eq!(page.next_key_marker.as_deref(), Some("a+b"));
        assert_eq!(page.next_version_marker.as_deref(), Some("v0"));
        assert!(parse_version_listing(b"<Error><Code>NoSuchBucket</Code></Error>").is_err());
    }

    #[test]
    fn path_encoding() {
        assert_eq!(uri_encode("my-bucket.1"), "my-bucket.1");
        assert_eq!(uri_encode("a b/é"), "a%20b%2F%C3%A9");
    }
}
