//! Connecting to S3-compatible stores.
//!
//! Every S3 client in s32s3 is built here, so the settings that make aws-sdk-s3 work against stores other
//! than AWS live in one place (see [`sdk_client_with_retries`]). [`Store`] pairs a client with the side it talks
//! to, so every error names where it happened, and adds the few raw requests the SDK cannot express
//! (bucket configuration kept as the server's own XML) or does too slowly (whole small objects: see
//! [`Store::get_small`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::{RetryConfig, RetryPartition, TokenBucket};
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

use crate::error::{S3Error, S3ErrorKind, Side, classify};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::body::{BodyReceiver, ChannelBody, ObjectBody, RangeReader};
use super::{
    CompletedPart, ContentHeaders, ObjectAttrs, ObjectHead, ObjectInfo, ReadOptions, RequestCounter, Upload,
    VersionItem, WriteCondition, Written,
};
use crate::error::source_chain;
use crate::error::{Error, Result};
use crate::options::S3Endpoint;
use crate::store::retry::RetryPolicy;

/// Builds an aws-sdk-s3 client for this endpoint, retrying temporary failures up to `max_attempts`
/// times in all (exponential backoff with jitter, the SDK's standard mode; `1` turns the SDK's retries
/// off, which is what [`Store`] does: it retries under its own [`RetryPolicy`] instead).
///
/// `max_attempts` holds whatever else fails at the same time: each client gets its own unlimited retry
/// token bucket. The SDK's default bucket (500 tokens, shared by every client of the process) stops all
/// retries, without a word, once a burst of concurrent failures has spent it: 40 requests answered
/// `500` together got 50 retries between them instead of 160.
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
pub fn sdk_client_with_retries(endpoint: &S3Endpoint, max_attempts: u32) -> Result<aws_sdk_s3::Client> {
    endpoint.validate("endpoint")?;
    let credentials = Credentials::new(
        endpoint.access_key_id.clone(),
        endpoint.secret_access_key.expose().to_owned(),
        None,
        None,
        "s32s3",
    );
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint.endpoint.trim_end_matches('/'))
        .region(Region::new(endpoint.signing_region().to_owned()))
        .credentials_provider(credentials)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .retry_partition(RetryPartition::custom("s32s3").token_bucket(TokenBucket::unlimited()).build())
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

/// [`sdk_client_with_retries`] with the default of 5 attempts.
///
/// # Errors
/// [`Error::Config`] when the endpoint is not an `http(s)://` URL.
pub fn sdk_client(endpoint: &S3Endpoint) -> Result<aws_sdk_s3::Client> {
    sdk_client_with_retries(endpoint, 5)
}

/// A raw aws-sdk-s3 client, for tests that set up or inspect a server directly ([`sdk_client`]).
pub type SdkClient = aws_sdk_s3::Client;

/// The SDK itself, for the test kit's scenarios to set servers up with (nothing outside `store/` names
/// it otherwise).
#[cfg(feature = "testkit")]
pub use aws_sdk_s3 as sdk;

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
    /// Object Lock retention set on every version written (but one key, the lease), when configured.
    retention: Option<Arc<Retention>>,
}

/// The retention a store sets on what it writes ([`Store::with_retention`]).
struct Retention {
    mode: String,
    /// The retain-until date a version written now gets.
    until: Box<dyn Fn() -> time::OffsetDateTime + Send + Sync>,
    exempt: String,
}

impl fmt::Debug for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retention")
            .field("mode", &self.mode)
            .field("exempt", &self.exempt)
            .finish_non_exhaustive()
    }
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
        let client = sdk_client_with_retries(&endpoint, 1)?;
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
        let policy = RetryPolicy::new(max_attempts);
        Ok(Self { side, endpoint, client, http, identity, requests, policy, retention: None })
    }

    /// The same store setting Object Lock retention in `mode` (`GOVERNANCE`, `COMPLIANCE`) on every
    /// version it writes, until the date `until` gives at the time of the write, except on the key `exempt`
    /// (the lease, which must stay deletable): each write is followed by a `PutObjectRetention` on the
    /// version it wrote, so no body needs a `Content-MD5` (which S3 demands of writes carrying retention
    /// themselves). How long is the backup format's rule, not the store's.
    #[must_use]
    pub fn with_retention(
        mut self,
        mode: &str,
        until: impl Fn() -> time::OffsetDateTime + Send + Sync + 'static,
        exempt: String,
    ) -> Self {
        self.retention = Some(Arc::new(Retention { mode: mode.to_owned(), until: Box::new(until), exempt }));
        self
    }

    /// The same store without retention (for a version replaced at once by a retained copy).
    #[must_use]
    pub fn without_retention(&self) -> Self {
        Self { retention: None, ..self.clone() }
    }

    /// After a write: the retention this store sets, on the version written (unless exempt).
    pub(crate) async fn protect(&self, bucket: &str, key: &str, written: Written) -> Result<Written> {
        let Some(retention) = &self.retention else { return Ok(written) };
        let Some(version) = written.version_id.as_deref().filter(|_| key != retention.exempt) else {
            return Ok(written);
        };
        let until = (retention.until)();
        // Boxed: the request's future is large, and every write awaits this one, which without retention
        // returns at once and allocates nothing.
        Box::pin(self.put_retention(bucket, key, version, &retention.mode, until)).await?;
        Ok(Written { retain_until: Some(crate::clock::format_rfc3339(until)), ..written })
    }

    /// Sets (or extends) the Object Lock retention of one version.
    ///
    /// # Errors
    /// S3 failures, classified (access denied for a shorter date in compliance mode, or without the bucket
    /// having Object Lock).
    pub async fn put_retention(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        mode: &str,
        until: time::OffsetDateTime,
    ) -> Result<()> {
        let until = aws_smithy_types::DateTime::from_nanos(until.unix_timestamp_nanos())
            .map_err(|e| Error::Config { field: "object_lock".into(), reason: e.to_string() })?;
        let retention = aws_sdk_s3::types::ObjectLockRetention::builder()
            .mode(aws_sdk_s3::types::ObjectLockRetentionMode::from(mode))
            .retain_until_date(until)
            .build();
        self.send("PutObjectRetention", bucket, Some(key), || {
            self.client
                .put_object_retention()
                .bucket(bucket)
                .key(key)
                .version_id(version_id)
                .retention(retention.clone())
                .send()
        })
        .await
        .map(|_| ())
    }

    /// Whether `bucket` has Object Lock enabled.
    ///
    /// # Errors
    /// S3 failures other than "no Object Lock configuration".
    pub async fn object_lock_enabled(&self, bucket: &str) -> Result<bool> {
        let answer = self
            .send("GetObjectLockConfiguration", bucket, None, || {
                self.client.get_object_lock_configuration().bucket(bucket).send()
            })
            .await;
        match answer {
            Ok(out) => Ok(out.object_lock_configuration().and_then(|c| c.object_lock_enabled())
                == Some(&aws_sdk_s3::types::ObjectLockEnabled::Enabled)),
            Err(e) if e.s3_kind() == Some(S3ErrorKind::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
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
    async fn send<T, E, F, Fut>(
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

    /// A GET whose body is read whole into the buffer `buffer` makes, the request and the body read retried
    /// together: a body that breaks off is read again from the start.
    async fn get_bytes(
        &self,
        bucket: &str,
        key: &str,
        read: ReadOptions<'_>,
        range: Option<(u64, u64)>,
        buffer: impl Fn() -> bytes::BytesMut,
    ) -> Result<(ObjectHead, Bytes)> {
        self.policy
            .run(|| async {
                let mut out = self
                    .client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .set_version_id(read.version_id.map(str::to_owned))
                    .set_if_match(read.if_match.map(str::to_owned))
                    .set_range(range.map(|(first, last)| format!("bytes={first}-{last}")))
                    .send()
                    .await
                    .map_err(|e| self.err("GetObject", bucket, Some(key), e))?;
                let body = std::mem::take(&mut out.body);
                let bytes = read_body_into(body, self.side, bucket, key, buffer()).await?;
                Ok((object_head!(&out, out.content_range().map(str::to_owned)), bytes))
            })
            .await
    }

    /// The same store with one attempt per request: for callers that bound each attempt themselves (the
    /// lease, whose every request must fit its renewal interval) and retry around it.
    #[must_use]
    pub fn single_attempt(&self) -> Self {
        Self { policy: RetryPolicy::new(1), ..self.clone() }
    }

    /// Wraps an SDK error with this side, the operation and the location.
    #[allow(clippy::needless_pass_by_value)] // taken by value so call sites read `.map_err(|e| store.err(…, e))`
    fn err<E>(
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
        mut visit: impl FnMut(Vec<ObjectInfo>) -> Result<bool>,
    ) -> Result<()> {
        let mut token: Option<String> = None;
        loop {
            let page = self
                .send("ListObjectsV2", bucket, prefix, || {
                    self.client
                        .list_objects_v2()
                        .bucket(bucket)
                        .set_prefix(nonempty(prefix))
                        .encoding_type(aws_sdk_s3::types::EncodingType::Url)
                        .set_continuation_token(token.clone())
                        .send()
                })
                .await?;
            let url_encoded = page.encoding_type() == Some(&aws_sdk_s3::types::EncodingType::Url);
            let objects = page
                .contents()
                .iter()
                .map(|object| object_info(bucket, object, url_encoded))
                .collect::<Result<Vec<_>>>()?;
            if !visit(objects)? {
                return Ok(());
            }
            token = page.next_continuation_token().filter(|t| !t.is_empty()).map(str::to_owned);
            if page.is_truncated() != Some(true) || token.is_none() {
                return Ok(());
            }
        }
    }

    /// As [`Store::list_objects`], with each object's tags: MinIO's `ListObjectsV2` extension
    /// `metadata=true` (also served by `RustFS`) lists user metadata and tags (`<UserTags>`, a URL-encoded
    /// query string) with each object, which the SDK's typed answer drops; this reads the server's XML
    /// itself. Every object comes with `tags: Some(…)` (empty when it has none).
    ///
    /// # Errors
    /// S3 failures; [`Error::Corrupt`] for an answer that is not an object listing.
    pub async fn list_objects_with_tags(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        mut visit: impl FnMut(Vec<ObjectInfo>) -> Result<bool>,
    ) -> Result<()> {
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("encoding-type", "url".to_owned()),
                ("list-type", "2".to_owned()),
                ("metadata", "true".to_owned()),
            ];
            if let Some(token) = &token {
                query.push(("continuation-token", token.clone()));
            }
            if let Some(prefix) = prefix.filter(|p| !p.is_empty()) {
                query.push(("prefix", prefix.to_owned()));
            }
            let body = self.raw_bucket_get("ListObjectsV2", bucket, prefix, &query).await?;
            let page =
                parse_object_listing(&body).map_err(|e| Error::corrupt(format!("s3://{bucket}"), e))?;
            if !visit(page.objects)? {
                return Ok(());
            }
            token = page.next_token.filter(|t| !t.is_empty());
            if !page.truncated || token.is_none() {
                return Ok(());
            }
        }
    }

    /// The first page (at most `max_keys` objects) of a listing under `prefix`.
    ///
    /// # Errors
    /// S3 failures.
    pub async fn list_first(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        max_keys: i32,
    ) -> Result<Vec<ObjectInfo>> {
        let page = self
            .send("ListObjectsV2", bucket, None, || {
                self.client
                    .list_objects_v2()
                    .bucket(bucket)
                    .set_prefix(nonempty(prefix))
                    .max_keys(max_keys)
                    .send()
            })
            .await?;
        page.contents().iter().map(|object| object_info(bucket, object, false)).collect()
    }

    /// Creates `bucket` (with object lock when asked). A bucket already ours counts as created: the answer
    /// to an earlier attempt may have been lost, and its retry then hears `BucketAlreadyOwnedByYou` — or a
    /// 409 whose body broke off before its code could be read; then a `HeadBucket` tells whether the bucket
    /// is there for us.
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
            Err(Error::S3(e)) if e.status == Some(409) && e.code.is_none() => {
                if self.bucket_exists(bucket).await? { Ok(()) } else { Err(Error::S3(e)) }
            }
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
            query.push(("versions", String::new()));
            let body = self.raw_bucket_get("ListObjectVersions", bucket, None, &query).await?;
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

    /// A signed `GET` of `bucket` with the query `params` (a name with an empty value is sent bare, as
    /// `?versions`), outside the SDK's typed model: the server's own bytes, retried under the policy.
    async fn raw_bucket_get(
        &self,
        operation: &'static str,
        bucket: &str,
        key: Option<&str>,
        params: &[(&str, String)],
    ) -> Result<bytes::Bytes> {
        let query: Vec<String> =
            params
                .iter()
                .map(|(name, value)| {
                    if value.is_empty() {
                        (*name).to_owned()
                    } else {
                        format!("{name}={}", uri_encode(value))
                    }
                })
                .collect();
        let url = format!(
            "{}/{}?{}",
            self.endpoint.endpoint.trim_end_matches('/'),
            uri_encode(bucket),
            query.join("&")
        );
        let place = Place { operation, bucket, key };
        let (_, body) = self
            .raw(&place, || {
                let mut headers = http::HeaderMap::new();
                self.sign(&reqwest::Method::GET, &url, &mut headers, SignableBody::Bytes(&[]))?;
                Ok(self.http.get(&url).headers(headers))
            })
            .await?;
        Ok(body)
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

    /// Reads a small object whole (`GET`, `read` saying which version, or `If-Match` on the current one):
    /// its headers and body.
    ///
    /// For objects of a few KiB the SDK's per-request machinery (interceptors, endpoint rules, config
    /// layers, header conversions) costs more CPU than moving and encrypting the bytes; this path signs
    /// with SigV4 and sends one plain HTTP request, retried (request and body together) under the store's
    /// policy. A key that cannot be sent through a URL unchanged (a `.` or `..` segment, which URL parsing
    /// resolves) goes through the SDK.
    ///
    /// # Errors
    /// S3 failures, classified like SDK errors (412 when the object changed since it was listed).
    pub async fn get_small(
        &self,
        bucket: &str,
        key: &str,
        read: ReadOptions<'_>,
        size: u64,
    ) -> Result<(ObjectHead, Bytes)> {
        let Some(mut url) = self.object_url(bucket, key) else {
            return self.get(bucket, key, read, None, size).await;
        };
        if let Some(version) = read.version_id {
            url.push_str("?versionId=");
            url.push_str(&uri_encode(version));
        }
        let place = Place { operation: "GetObject", bucket, key: Some(key) };
        let (headers, body) = self
            .raw(&place, || {
                let mut headers = http::HeaderMap::new();
                if let Some(etag) = read.if_match {
                    headers.insert(http::header::IF_MATCH, header_value(etag)?);
                }
                self.sign(&reqwest::Method::GET, &url, &mut headers, SignableBody::Bytes(&[]))?;
                Ok(self.http.get(&url).headers(headers))
            })
            .await?;
        Ok((head_from_headers(&headers), body))
    }

    /// Writes a small object whole (`PUT`, payload not signed: crypt chunks carry their own
    /// authenticators) as one plain signed HTTP request, for the reason [`Store::get_small`] gives; a key
    /// that cannot be sent through a URL unchanged goes through the SDK.
    ///
    /// # Errors
    /// S3 failures, classified like SDK errors.
    pub async fn put_small(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        attrs: &ObjectAttrs,
    ) -> Result<Written> {
        let Some(url) = self.object_url(bucket, key) else {
            return self.put(bucket, key, body, attrs, WriteCondition::None).await;
        };
        let place = Place { operation: "PutObject", bucket, key: Some(key) };
        let headers = attr_headers(attrs);
        let (response_headers, _) = self
            .raw(&place, || {
                let mut map = http::HeaderMap::with_capacity(headers.len() + 4);
                for (name, value) in &headers {
                    map.insert(name.clone(), header_value(value)?);
                }
                map.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(body.len()));
                self.sign(&reqwest::Method::PUT, &url, &mut map, SignableBody::UnsignedPayload)?;
                Ok(self.http.put(&url).headers(map).body(body.clone()))
            })
            .await?;
        let text = |name: &str| {
            response_headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let written = Written {
            version_id: text("x-amz-version-id").filter(|v| v != "null"),
            etag: text("etag"),
            retain_until: None,
        };
        self.protect(bucket, key, written).await
    }

    /// `HEAD` of an object (a given version, or the current one if it still has an ETag).
    ///
    /// # Errors
    /// S3 failures, classified ("not found" for a missing object or version).
    pub async fn head(&self, bucket: &str, key: &str, read: ReadOptions<'_>) -> Result<ObjectHead> {
        let out = self
            .send("HeadObject", bucket, Some(key), || {
                self.client
                    .head_object()
                    .bucket(bucket)
                    .key(key)
                    .set_version_id(read.version_id.map(str::to_owned))
                    .set_if_match(read.if_match.map(str::to_owned))
                    .send()
            })
            .await?;
        Ok(object_head!(&out, None))
    }

    /// `GET` of an object (or of the bytes `range` = `(first, last)` of it), the body read whole; the
    /// request and the body read are retried together, so a body that breaks off is read again.
    ///
    /// # Errors
    /// S3 failures, classified; a broken body is [`S3ErrorKind::Temporary`] until the attempts run out.
    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
        read: ReadOptions<'_>,
        range: Option<(u64, u64)>,
        size_hint: u64,
    ) -> Result<(ObjectHead, Bytes)> {
        self.get_bytes(bucket, key, read, range, || {
            bytes::BytesMut::with_capacity(usize::try_from(size_hint).unwrap_or(0).min(1 << 30))
        })
        .await
    }

    /// [`Store::get`] into a buffer `buffer` provides (anew for each attempt; it may have been used before).
    ///
    /// # Errors
    /// As [`Store::get`].
    pub async fn get_into(
        &self,
        bucket: &str,
        key: &str,
        read: ReadOptions<'_>,
        range: Option<(u64, u64)>,
        buffer: impl Fn() -> bytes::BytesMut,
    ) -> Result<Bytes> {
        Ok(self.get_bytes(bucket, key, read, range, buffer).await?.1)
    }

    /// One `GET` (of the bytes `range` = `(first, last)` when given), a single attempt: the answer's
    /// headers, and its body as it arrives. [`Store::read_range`] resumes and retries around it.
    ///
    /// # Errors
    /// S3 failures, classified.
    pub async fn open_read(
        &self,
        bucket: &str,
        key: &str,
        read: ReadOptions<'_>,
        range: Option<(u64, u64)>,
    ) -> Result<(ObjectHead, ObjectBody)> {
        let mut out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(read.version_id.map(str::to_owned))
            .set_if_match(read.if_match.map(str::to_owned))
            .set_range(range.map(|(first, last)| format!("bytes={first}-{last}")))
            .send()
            .await
            .map_err(|e| self.err("GetObject", bucket, Some(key), e))?;
        let stream = std::mem::take(&mut out.body);
        let head = object_head!(&out, out.content_range().map(str::to_owned));
        Ok((head, ObjectBody { stream, side: self.side, bucket: bucket.to_owned(), key: key.to_owned() }))
    }

    /// Bytes `range` of an object, in order as they arrive, each exactly once: a body that breaks off is
    /// resumed from the first byte not yet read (see [`RangeReader`]). Nothing is sent until the reader
    /// is first read.
    #[must_use]
    pub fn read_range(
        &self,
        bucket: &str,
        key: &str,
        read: ReadOptions<'_>,
        range: std::ops::Range<u64>,
    ) -> RangeReader {
        RangeReader::new(self, bucket, key, read, range.start, range.end)
    }

    /// Uploads part `number` of an upload from `body`, as its producer feeds it (payload not signed, as in
    /// [`Store::upload_part`]). One attempt: a stream cannot be sent twice, so the caller retries the
    /// part with a new body.
    ///
    /// # Errors
    /// S3 failures, classified; a body that ends short fails the request (nothing is stored).
    pub async fn upload_part_stream(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: BodyReceiver,
        content_md5: Option<String>,
    ) -> Result<CompletedPart> {
        let len = i64::try_from(body.len()).unwrap_or(i64::MAX);
        let out = self
            .client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(len)
            .set_content_md5(content_md5)
            .body(ByteStream::from_body_1_x(ChannelBody::from(body)))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| self.err("UploadPart", bucket, Some(key), e))?;
        Ok(CompletedPart { number, etag: out.e_tag().map(str::to_owned) })
    }

    /// Writes a whole object from `body`, as its producer feeds it (payload not signed: the caller checks
    /// its data end to end). One attempt: the caller retries with a new body.
    ///
    /// # Errors
    /// S3 failures, classified; a body that ends short fails the request (nothing is stored).
    pub async fn put_stream(
        &self,
        bucket: &str,
        key: &str,
        body: BodyReceiver,
        attrs: &ObjectAttrs,
    ) -> Result<Written> {
        let len = i64::try_from(body.len()).unwrap_or(i64::MAX);
        let request = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_length(len)
            .set_content_md5(attrs.content_md5.clone())
            .body(ByteStream::from_body_1_x(ChannelBody::from(body)));
        let out = with_attrs!(request, attrs)
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| self.err("PutObject", bucket, Some(key), e))?;
        let written = Written {
            version_id: out.version_id().map(str::to_owned),
            etag: out.e_tag().map(str::to_owned),
            retain_until: None,
        };
        self.protect(bucket, key, written).await
    }

    /// [`Store::get`] of the current version, `None` when there is no such object.
    ///
    /// # Errors
    /// S3 failures other than "not found".
    pub async fn get_if_exists(&self, bucket: &str, key: &str) -> Result<Option<(ObjectHead, Bytes)>> {
        match self.get(bucket, key, ReadOptions::current(), None, 0).await {
            Ok(found) => Ok(Some(found)),
            Err(Error::S3(e)) if e.kind == S3ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Downloads the current version of an object into a temporary file in `dir` (rewound), streaming;
    /// the request and the body read are retried together.
    ///
    /// # Errors
    /// S3 failures; [`Error::Io`].
    pub async fn get_to_file(&self, bucket: &str, key: &str, dir: &std::path::Path) -> Result<std::fs::File> {
        use std::io::{Seek as _, SeekFrom, Write as _};
        self.policy
            .run(|| async {
                let out = self
                    .client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| self.err("GetObject", bucket, Some(key), e))?;
                let mut file = tempfile::tempfile_in(dir)
                    .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
                let io = |e| Error::io("writing a temporary file", e);
                let mut body = out.body;
                while let Some(chunk) =
                    body.try_next().await.map_err(|e| body_error(self.side, "GetObject", bucket, key, &e))?
                {
                    file.write_all(&chunk).map_err(io)?;
                }
                file.seek(SeekFrom::Start(0)).map_err(io)?;
                Ok(file)
            })
            .await
    }

    /// Writes an object whole (through the SDK, payload signed) under `condition`.
    ///
    /// # Errors
    /// S3 failures, classified ("precondition failed" when `condition` does not hold).
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        attrs: &ObjectAttrs,
        condition: WriteCondition<'_>,
    ) -> Result<Written> {
        let out = self
            .send("PutObject", bucket, Some(key), || {
                let request = self
                    .client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .content_length(i64::try_from(body.len()).unwrap_or(i64::MAX))
                    .set_content_md5(attrs.content_md5.clone())
                    .body(ByteStream::from(body.clone()));
                let request = with_attrs!(request, attrs);
                match condition {
                    WriteCondition::None => request,
                    WriteCondition::Create => request.if_none_match("*"),
                    WriteCondition::Replace(etag) => request.if_match(etag),
                }
                .send()
            })
            .await?;
        let written = Written {
            version_id: out.version_id().map(str::to_owned),
            etag: out.e_tag().map(str::to_owned),
            retain_until: None,
        };
        self.protect(bucket, key, written).await
    }

    /// Uploads `len` bytes of a local file as one object (each attempt reads it from the start).
    ///
    /// # Errors
    /// S3 failures; [`Error::Io`] when the file cannot be read.
    pub async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        file: &std::fs::File,
        len: u64,
        attrs: &ObjectAttrs,
        condition: WriteCondition<'_>,
    ) -> Result<Written> {
        use std::io::{Seek as _, SeekFrom};
        let out = self
            .policy
            .run(|| async {
                let mut file = file.try_clone().map_err(|e| Error::io("reading a temporary file", e))?;
                file.seek(SeekFrom::Start(0)).map_err(|e| Error::io("reading a temporary file", e))?;
                let body = ByteStream::read_from()
                    .file(tokio::fs::File::from_std(file))
                    .length(aws_sdk_s3::primitives::Length::Exact(len))
                    .build()
                    .await
                    .map_err(|e| Error::io("reading a temporary file", std::io::Error::other(e)))?;
                let request = self
                    .client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .content_length(i64::try_from(len).unwrap_or(i64::MAX))
                    .body(body);
                let request = with_attrs!(request, attrs);
                match condition {
                    WriteCondition::None => request,
                    WriteCondition::Create => request.if_none_match("*"),
                    WriteCondition::Replace(etag) => request.if_match(etag),
                }
                .send()
                .await
                .map_err(|e| self.err("PutObject", bucket, Some(key), e))
            })
            .await?;
        let written = Written {
            version_id: out.version_id().map(str::to_owned),
            etag: out.e_tag().map(str::to_owned),
            retain_until: None,
        };
        self.protect(bucket, key, written).await
    }

    /// Deletes the current version of an object (a delete marker in a versioned bucket).
    ///
    /// # Errors
    /// S3 failures, classified.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        self.send("DeleteObject", bucket, Some(key), || {
            self.client.delete_object().bucket(bucket).key(key).send()
        })
        .await
        .map(|_| ())
    }

    /// An object's tags.
    ///
    /// # Errors
    /// S3 failures, classified.
    pub async fn tags(&self, bucket: &str, key: &str) -> Result<BTreeMap<String, String>> {
        self.version_tags(bucket, key, None).await
    }

    /// The tags of one version of an object (`None`: the current one).
    ///
    /// # Errors
    /// S3 failures, classified.
    pub async fn version_tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<BTreeMap<String, String>> {
        let out = self
            .send("GetObjectTagging", bucket, Some(key), || {
                self.client
                    .get_object_tagging()
                    .bucket(bucket)
                    .key(key)
                    .set_version_id(version_id.map(str::to_owned))
                    .send()
            })
            .await?;
        Ok(out.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect())
    }

    /// Starts a multipart upload of `key`: its id, and how many attempts it took (after more than one, an
    /// earlier attempt may have started an upload whose answer was lost).
    ///
    /// # Errors
    /// S3 failures, classified.
    pub async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        attrs: &ObjectAttrs,
    ) -> Result<(String, u32)> {
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let out = self
            .send("CreateMultipartUpload", bucket, Some(key), || {
                attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let request = self.client.create_multipart_upload().bucket(bucket).key(key);
                with_attrs!(request, attrs).send()
            })
            .await?;
        let upload_id = out.upload_id().ok_or_else(|| {
            let message = "the response has no upload id";
            Error::S3(S3Error::local(
                self.side,
                "CreateMultipartUpload",
                bucket,
                key,
                S3ErrorKind::Other,
                message,
            ))
        })?;
        Ok((upload_id.to_owned(), attempts.into_inner()))
    }

    /// Uploads part `number` of an upload. The payload is not signed: every caller's parts carry their own
    /// end-to-end check (crypt chunks authenticate themselves; a restore checks the object's SHA-256
    /// before it completes), and hashing each part once more only to sign it would cost a quarter of a
    /// restore's CPU.
    ///
    /// # Errors
    /// S3 failures, classified.
    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
        content_md5: Option<String>,
    ) -> Result<CompletedPart> {
        let out = self
            .send("UploadPart", bucket, Some(key), || {
                self.client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .content_length(i64::try_from(body.len()).unwrap_or(i64::MAX))
                    .set_content_md5(content_md5.clone())
                    .body(ByteStream::from(body.clone()))
                    .customize()
                    .disable_payload_signing()
                    .send()
            })
            .await?;
        Ok(CompletedPart { number, etag: out.e_tag().map(str::to_owned) })
    }

    /// Completes an upload with `parts` (in part order).
    ///
    /// # Errors
    /// S3 failures, classified ("not found" when the upload is gone: completed or aborted).
    pub async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<Written> {
        let parts: Vec<aws_sdk_s3::types::CompletedPart> = parts
            .iter()
            .map(|p| {
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(p.number)
                    .set_e_tag(p.etag.clone())
                    .build()
            })
            .collect();
        let out = self
            .send("CompleteMultipartUpload", bucket, Some(key), || {
                self.client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .multipart_upload(
                        aws_sdk_s3::types::CompletedMultipartUpload::builder()
                            .set_parts(Some(parts.clone()))
                            .build(),
                    )
                    .send()
            })
            .await?;
        let written = Written {
            version_id: out.version_id().map(str::to_owned),
            etag: out.e_tag().map(str::to_owned),
            retain_until: None,
        };
        self.protect(bucket, key, written).await
    }

    /// Aborts an upload.
    ///
    /// # Errors
    /// S3 failures, classified ("not found" when it is gone already).
    pub async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.send("AbortMultipartUpload", bucket, Some(key), || {
            self.client.abort_multipart_upload().bucket(bucket).key(key).upload_id(upload_id).send()
        })
        .await
        .map(|_| ())
    }

    /// Writes a new version of `key` with the bytes of its version `version_id` and `attrs` in place of its
    /// attributes, copied inside the store (no byte passes through this process): one `CopyObject` up to
    /// `single_max` bytes (pass [`COPY_OBJECT_MAX`], S3's limit on it; less only to test), else a multipart
    /// copy in ranges of `part_len` stored bytes (at least 5 MiB; the last shorter).
    ///
    /// # Errors
    /// S3 failures, classified.
    #[allow(clippy::too_many_arguments)]
    pub async fn copy_in_place(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        size: u64,
        attrs: &ObjectAttrs,
        part_len: u64,
        single_max: u64,
    ) -> Result<Written> {
        self.copy_version(bucket, (key, version_id), key, size, attrs, part_len, single_max).await
    }

    /// Writes a new version of `key` with the bytes of version `from.1` of `from.0` (in the same bucket)
    /// and `attrs` as its attributes, copied inside the store as [`Store::copy_in_place`] does.
    ///
    /// # Errors
    /// S3 failures, classified ("not found" when that version is gone).
    #[allow(clippy::too_many_arguments)]
    pub async fn copy_version(
        &self,
        bucket: &str,
        from: (&str, &str),
        key: &str,
        size: u64,
        attrs: &ObjectAttrs,
        part_len: u64,
        single_max: u64,
    ) -> Result<Written> {
        let (from_key, version_id) = from;
        let source = format!(
            "{}/{}?versionId={}",
            uri_encode(bucket),
            from_key.split('/').map(uri_encode).collect::<Vec<_>>().join("/"),
            uri_encode(version_id)
        );
        if size <= single_max {
            let out = self
                .send("CopyObject", bucket, Some(key), || {
                    let request = self
                        .client
                        .copy_object()
                        .bucket(bucket)
                        .key(key)
                        .copy_source(&source)
                        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
                        .tagging_directive(aws_sdk_s3::types::TaggingDirective::Replace);
                    with_attrs!(request, attrs).send()
                })
                .await?;
            let written = Written {
                version_id: out.version_id().map(str::to_owned),
                etag: out.copy_object_result().and_then(|r| r.e_tag()).map(str::to_owned),
                retain_until: None,
            };
            return self.protect(bucket, key, written).await;
        }
        let (upload_id, _) = self.create_multipart(bucket, key, attrs).await?;
        let copied = async {
            let mut parts = Vec::new();
            let part_len = part_len.max(5 << 20);
            for (index, start) in
                (0..size).step_by(usize::try_from(part_len).unwrap_or(usize::MAX)).enumerate()
            {
                let number = i32::try_from(index + 1).expect("at most 10,000 parts");
                let range = format!("bytes={start}-{}", (start + part_len).min(size) - 1);
                let out = self
                    .send("UploadPartCopy", bucket, Some(key), || {
                        self.client
                            .upload_part_copy()
                            .bucket(bucket)
                            .key(key)
                            .upload_id(&upload_id)
                            .part_number(number)
                            .copy_source(&source)
                            .copy_source_range(&range)
                            .send()
                    })
                    .await?;
                let etag = out.copy_part_result().and_then(|r| r.e_tag()).map(str::to_owned);
                parts.push(CompletedPart { number, etag });
            }
            self.complete_multipart(bucket, key, &upload_id, &parts).await
        }
        .await;
        if copied.is_err() {
            let _ = self.abort_multipart(bucket, key, &upload_id).await;
        }
        copied
    }

    /// Deletes one version of an object for good.
    ///
    /// # Errors
    /// S3 failures, classified.
    pub async fn delete_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<()> {
        self.send("DeleteObject", bucket, Some(key), || {
            self.client.delete_object().bucket(bucket).key(key).version_id(version_id).send()
        })
        .await
        .map(|_| ())
    }

    /// Every incomplete multipart upload under `prefix`, page by page.
    ///
    /// # Errors
    /// S3 failures, classified.
    pub async fn list_uploads(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        mut visit: impl FnMut(Vec<Upload>),
    ) -> Result<()> {
        let (mut key_marker, mut upload_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .send("ListMultipartUploads", bucket, prefix, || {
                    self.client
                        .list_multipart_uploads()
                        .bucket(bucket)
                        .set_prefix(nonempty(prefix))
                        .set_key_marker(key_marker.clone())
                        .set_upload_id_marker(upload_marker.clone())
                        .send()
                })
                .await?;
            visit(
                page.uploads()
                    .iter()
                    .filter_map(|u| {
                        Some(Upload { key: u.key()?.to_owned(), upload_id: u.upload_id()?.to_owned() })
                    })
                    .collect(),
            );
            if page.is_truncated() != Some(true) {
                return Ok(());
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            upload_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                return Ok(());
            }
        }
    }

    /// Whether versioning is enabled on `bucket`.
    ///
    /// # Errors
    /// S3 failures, classified.
    pub async fn versioning_enabled(&self, bucket: &str) -> Result<bool> {
        let out = self
            .send("GetBucketVersioning", bucket, None, || {
                self.client.get_bucket_versioning().bucket(bucket).send()
            })
            .await?;
        Ok(out.status() == Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled))
    }

    /// Whether `bucket` keeps versions: its versioning is enabled, or suspended (it still holds the
    /// versions written while it was enabled).
    ///
    /// # Errors
    /// S3 failures, classified.
    pub async fn keeps_versions(&self, bucket: &str) -> Result<bool> {
        use aws_sdk_s3::types::BucketVersioningStatus;
        let out = self
            .send("GetBucketVersioning", bucket, None, || {
                self.client.get_bucket_versioning().bucket(bucket).send()
            })
            .await?;
        Ok(matches!(out.status(), Some(BucketVersioningStatus::Enabled | BucketVersioningStatus::Suspended)))
    }

    /// Turns versioning on for `bucket`.
    ///
    /// # Errors
    /// S3 failures, classified.
    pub async fn enable_versioning(&self, bucket: &str) -> Result<()> {
        use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
        self.send("PutBucketVersioning", bucket, None, || {
            self.client
                .put_bucket_versioning()
                .bucket(bucket)
                .versioning_configuration(
                    VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
                )
                .send()
        })
        .await
        .map(|_| ())
    }

    /// The bucket's lifecycle rules.
    ///
    /// # Errors
    /// S3 failures, classified ("not found": no lifecycle configuration; "not implemented": none possible).
    pub async fn lifecycle(&self, bucket: &str) -> Result<Vec<LifecycleRule>> {
        let out = self
            .send("GetBucketLifecycleConfiguration", bucket, None, || {
                self.client.get_bucket_lifecycle_configuration().bucket(bucket).send()
            })
            .await?;
        Ok(out.rules().iter().cloned().map(LifecycleRule).collect())
    }

    /// Replaces the bucket's lifecycle rules.
    ///
    /// # Errors
    /// S3 failures, classified.
    pub async fn put_lifecycle(&self, bucket: &str, rules: &[LifecycleRule]) -> Result<()> {
        let config = aws_sdk_s3::types::BucketLifecycleConfiguration::builder()
            .set_rules(Some(rules.iter().map(|r| r.0.clone()).collect()))
            .build()
            .expect("rules are set");
        self.send("PutBucketLifecycleConfiguration", bucket, None, || {
            self.client
                .put_bucket_lifecycle_configuration()
                .bucket(bucket)
                .lifecycle_configuration(config.clone())
                .send()
        })
        .await
        .map(|_| ())
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
            self.request_error(place, kind, None, None, source_chain(&e))
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

struct ObjectPage {
    objects: Vec<ObjectInfo>,
    truncated: bool,
    next_token: Option<String>,
}

/// Parses a `ListBucketResult` (`ListObjectsV2`) with MinIO's `<UserTags>` per object; keys, and tags,
/// URL-decoded. Times are written as the SDK path writes them, so both paths compare equal.
fn parse_object_listing(body: &[u8]) -> std::result::Result<ObjectPage, String> {
    use aws_smithy_xml::decode::{Document, try_data};
    let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut doc = Document::new(text);
    let mut root = doc.root_element().map_err(|e| e.to_string())?;
    if !root.start_el().matches("ListBucketResult") {
        return Err(format!("a <{}> where a ListBucketResult was expected", root.start_el().local()));
    }
    let mut page = ObjectPage { objects: Vec::new(), truncated: false, next_token: None };
    let mut url_encoded = false;
    while let Some(mut tag) = root.next_tag() {
        let name = tag.start_el().local().to_owned();
        if name != "Contents" {
            let value = try_data(&mut tag).map_err(|e| e.to_string())?;
            match name.as_str() {
                "IsTruncated" => page.truncated = value.trim() == "true",
                "NextContinuationToken" => page.next_token = Some(value.into_owned()),
                "EncodingType" => url_encoded = value.trim() == "url",
                _ => {}
            }
            continue;
        }
        let mut object = ObjectInfo {
            key: String::new(),
            size: 0,
            etag: String::new(),
            last_modified: String::new(),
            storage_class: None,
            tags: Some(BTreeMap::new()),
        };
        while let Some(mut field) = tag.next_tag() {
            let field_name = field.start_el().local().to_owned();
            if !matches!(
                field_name.as_str(),
                "Key" | "Size" | "ETag" | "LastModified" | "StorageClass" | "UserTags"
            ) {
                continue; // UserMetadata, Owner, Internal, …
            }
            let value = try_data(&mut field).map_err(|e| e.to_string())?.into_owned();
            match field_name.as_str() {
                "Key" => object.key = value,
                "Size" => {
                    object.size = value.trim().parse().map_err(|e| format!("bad Size {value:?}: {e}"))?;
                }
                "ETag" => object.etag = value,
                "LastModified" => {
                    use aws_smithy_types::date_time::Format;
                    let bad = |e: &dyn fmt::Display| format!("bad LastModified {value:?}: {e}");
                    let time = aws_smithy_types::DateTime::from_str(value.trim(), Format::DateTime)
                        .map_err(|e| bad(&e))?;
                    object.last_modified = time.fmt(Format::DateTime).map_err(|e| bad(&e))?;
                }
                "StorageClass" => object.storage_class = Some(value),
                _ => {
                    object.tags =
                        Some(parse_tag_query(&value).ok_or_else(|| format!("bad UserTags {value:?}"))?);
                }
            }
        }
        if object.key.is_empty() {
            return Err("an object without a Key".into());
        }
        page.objects.push(object);
    }
    if url_encoded {
        for object in &mut page.objects {
            object.key = url_decode(&object.key)
                .ok_or_else(|| format!("listed key {:?} is not URL-encoded UTF-8", object.key))?;
        }
    }
    Ok(page)
}

/// Tags as MinIO lists them: `k1=v1&k2=v2`, each name and value URL-encoded; `None` if not decodable.
fn parse_tag_query(text: &str) -> Option<BTreeMap<String, String>> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((url_decode(k)?, url_decode(v)?))
        })
        .collect()
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
                let (mut key, mut version_id, mut modified, mut size, mut is_latest, mut etag) =
                    (None, None, None, 0, false, String::new());
                while let Some(mut field) = tag.next_tag() {
                    let field_name = field.start_el().local().to_owned();
                    if !matches!(
                        field_name.as_str(),
                        "Key" | "VersionId" | "LastModified" | "Size" | "IsLatest" | "ETag"
                    ) {
                        continue; // Owner, StorageClass, …
                    }
                    let value = try_data(&mut field).map_err(|e| e.to_string())?.into_owned();
                    match field_name.as_str() {
                        "Key" => key = Some(value),
                        "VersionId" => version_id = Some(value).filter(|v| !v.is_empty() && v != "null"),
                        "LastModified" => modified = Some(value),
                        "IsLatest" => is_latest = value.trim() == "true",
                        "ETag" => etag = value,
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
                    etag,
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

/// Reads a whole response body into `buffer`, classifying a broken stream as temporary (the read is
/// retried by the caller's policy).
async fn read_body_into(
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
pub(super) fn body_error(
    side: Side,
    operation: &'static str,
    bucket: &str,
    key: &str,
    err: &(dyn std::error::Error + 'static),
) -> Error {
    let message = format!("reading the body: {}", source_chain(err));
    Error::S3(S3Error::local(side, operation, bucket, key, S3ErrorKind::Temporary, message))
}

/// S3's limit on the size of an object `CopyObject` copies (larger ones are copied in parts).
pub const COPY_OBJECT_MAX: u64 = 5 << 30;

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

/// Turns an aws-sdk-s3 error into an [`S3Error`] naming where it happened.
fn s3_error<E>(
    side: Side,
    operation: &'static str,
    bucket: Option<&str>,
    key: Option<&str>,
    err: &SdkError<E, HttpResponse>,
) -> S3Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (kind, status, code, message) = match err {
        SdkError::TimeoutError(_) => (S3ErrorKind::Temporary, None, None, "request timed out".to_owned()),
        SdkError::DispatchFailure(failure) => {
            let message = source_chain(err);
            // Refused, unresolvable, TLS: the endpoint is wrong or down. Anything else (a reset, a connection
            // closed before the answer, a timeout) is worth another try.
            let kind = if !failure.is_timeout() && looks_unreachable(&message) {
                S3ErrorKind::Unreachable
            } else {
                S3ErrorKind::Temporary
            };
            (kind, None, None, message)
        }
        SdkError::ResponseError(response) => {
            let status = response.raw().status().as_u16();
            // A 2xx whose body broke off (or could not be read): the request may simply be sent again.
            let kind = if (200..300).contains(&status) {
                S3ErrorKind::Temporary
            } else {
                classify(Some(status), None)
            };
            (kind, Some(status), None, source_chain(err))
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let e = service.err();
            let code = e.code().map(str::to_owned);
            let kind = classify(Some(status), code.as_deref());
            (kind, Some(status), code, e.message().unwrap_or_default().to_owned())
        }
        _ => (S3ErrorKind::Other, None, None, source_chain(err)),
    };
    S3Error {
        side,
        operation,
        bucket: bucket.map(str::to_owned),
        key: key.map(str::to_owned),
        kind,
        status,
        code,
        message,
    }
}

fn looks_unreachable(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["connection refused", "dns", "failed to lookup", "no route", "certificate", "tls", "unreachable"]
        .iter()
        .any(|needle| m.contains(needle))
}

/// An [`ObjectInfo`] from a listed `Object`, its key URL-decoded when the listing was URL-encoded.
fn object_info(bucket: &str, object: &aws_sdk_s3::types::Object, url_encoded: bool) -> Result<ObjectInfo> {
    let raw = object.key().unwrap_or_default();
    let key = if url_encoded {
        url_decode(raw).ok_or_else(|| {
            Error::corrupt(format!("s3://{bucket}"), format!("listed key {raw:?} is not URL-encoded UTF-8"))
        })?
    } else {
        raw.to_owned()
    };
    Ok(ObjectInfo {
        key,
        size: object.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
        etag: object.e_tag().unwrap_or_default().to_owned(),
        last_modified: object
            .last_modified()
            .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
            .unwrap_or_default(),
        storage_class: object.storage_class().map(|s| s.as_str().to_owned()),
        tags: None,
    })
}

/// An [`ObjectHead`] from an SDK `HeadObject` or `GetObject` output (the two share these accessors but no
/// trait), with the `Content-Range` only a `GetObject` has.
macro_rules! object_head {
    ($out:expr, $content_range:expr) => {{
        let out = $out;
        ObjectHead {
            version_id: out.version_id().map(str::to_owned),
            etag: out.e_tag().map(str::to_owned),
            content_length: out.content_length().and_then(|l| u64::try_from(l).ok()),
            content_range: $content_range,
            content: ContentHeaders {
                content_type: out.content_type().map(str::to_owned),
                content_encoding: out.content_encoding().map(str::to_owned),
                content_disposition: out.content_disposition().map(str::to_owned),
                content_language: out.content_language().map(str::to_owned),
                cache_control: out.cache_control().map(str::to_owned),
                expires: out.expires_string().map(str::to_owned),
            },
            metadata: out
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect())
                .unwrap_or_default(),
            tag_count: out.tag_count().unwrap_or(0),
            lock_mode: out.object_lock_mode().map(|m| m.as_str().to_owned()),
            lock_retain_until: out
                .object_lock_retain_until_date()
                .and_then(|d| d.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
            legal_hold: out.object_lock_legal_hold_status().map(|s| s.as_str().to_owned()),
        }
    }};
}
use object_head;

/// An [`ObjectHead`] from the headers of a raw `GET` response: the same fields, parsed the same way, as
/// `object_head!` takes from the SDK's output.
fn head_from_headers(headers: &http::HeaderMap) -> ObjectHead {
    let text = |name: &str| headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    ObjectHead {
        version_id: text("x-amz-version-id").filter(|v| !v.is_empty() && v != "null"),
        etag: text("etag"),
        content_length: text("content-length").and_then(|n| n.trim().parse().ok()),
        content_range: text("content-range"),
        content: ContentHeaders {
            content_type: text("content-type"),
            content_encoding: text("content-encoding"),
            content_disposition: text("content-disposition"),
            content_language: text("content-language"),
            cache_control: text("cache-control"),
            expires: text("expires"),
        },
        metadata: headers
            .iter()
            .filter_map(|(name, value)| {
                let key = name.as_str().strip_prefix("x-amz-meta-")?;
                Some((key.to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            })
            .collect(),
        tag_count: text("x-amz-tagging-count").and_then(|n| n.trim().parse().ok()).unwrap_or(0),
        lock_mode: text("x-amz-object-lock-mode"),
        lock_retain_until: text("x-amz-object-lock-retain-until-date").and_then(|d| {
            aws_smithy_types::DateTime::from_str(&d, aws_smithy_types::date_time::Format::DateTime)
                .ok()?
                .fmt(aws_smithy_types::date_time::Format::DateTime)
                .ok()
        }),
        legal_hold: text("x-amz-object-lock-legal-hold"),
    }
}

/// The request headers of [`ObjectAttrs`], for a raw `PUT`.
fn attr_headers(attrs: &ObjectAttrs) -> Vec<(http::HeaderName, String)> {
    let mut headers = Vec::new();
    let mut add = |name: &'static str, value: &Option<String>| {
        if let Some(value) = value {
            headers.push((http::HeaderName::from_static(name), value.clone()));
        }
    };
    let c = &attrs.content;
    add("content-type", &c.content_type);
    add("content-encoding", &c.content_encoding);
    add("content-disposition", &c.content_disposition);
    add("content-language", &c.content_language);
    add("cache-control", &c.cache_control);
    add("expires", &c.expires);
    add("content-md5", &attrs.content_md5);
    add("x-amz-object-lock-legal-hold", &attrs.legal_hold);
    if let Some((mode, until)) = &attrs.retention {
        headers.push((http::HeaderName::from_static("x-amz-object-lock-mode"), mode.clone()));
        headers.push((http::HeaderName::from_static("x-amz-object-lock-retain-until-date"), until.clone()));
    }
    if !attrs.tags.is_empty() {
        headers.push((http::HeaderName::from_static("x-amz-tagging"), tagging_header(&attrs.tags)));
    }
    for (name, value) in &attrs.metadata {
        if let Ok(name) = http::HeaderName::try_from(format!("x-amz-meta-{name}")) {
            headers.push((name, value.clone()));
        }
    }
    headers
}

/// Sets [`ObjectAttrs`] on a `PutObject` or `CreateMultipartUpload` request (the two builders share these
/// setters but no trait).
macro_rules! with_attrs {
    ($request:expr, $attrs:expr) => {{
        let attrs: &ObjectAttrs = $attrs;
        let mut r = $request
            .set_content_type(attrs.content.content_type.clone())
            .set_content_encoding(attrs.content.content_encoding.clone())
            .set_content_disposition(attrs.content.content_disposition.clone())
            .set_content_language(attrs.content.content_language.clone())
            .set_cache_control(attrs.content.cache_control.clone())
            .set_expires(attrs.content.expires.as_deref().and_then(|x| {
                aws_smithy_types::DateTime::from_str(x, aws_smithy_types::date_time::Format::HttpDate).ok()
            }))
            .set_metadata(
                (!attrs.metadata.is_empty())
                    .then(|| attrs.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            )
            .set_object_lock_legal_hold_status(
                attrs.legal_hold.as_deref().map(aws_sdk_s3::types::ObjectLockLegalHoldStatus::from),
            );
        if !attrs.tags.is_empty() {
            r = r.tagging(tagging_header(&attrs.tags));
        }
        if let Some((mode, until)) = &attrs.retention
            && let Ok(until) =
                aws_smithy_types::DateTime::from_str(until, aws_smithy_types::date_time::Format::DateTime)
        {
            r = r
                .object_lock_mode(aws_sdk_s3::types::ObjectLockMode::from(mode.as_str()))
                .object_lock_retain_until_date(until);
        }
        r
    }};
}
use with_attrs;

/// A prefix to send: none for an empty one (S3 treats both alike; not every server does).
fn nonempty(prefix: Option<&str>) -> Option<String> {
    prefix.filter(|p| !p.is_empty()).map(str::to_owned)
}

/// `k=v&k2=v2` with S3's URL encoding, for the `x-amz-tagging` header.
fn tagging_header(tags: &BTreeMap<String, String>) -> String {
    tags.iter().map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v))).collect::<Vec<_>>().join("&")
}

/// A bucket lifecycle rule, kept whole as the server sent it (so the rules of others are written back
/// unchanged), with the questions s32s3 asks of it.
#[derive(Clone, Debug, PartialEq)]
pub struct LifecycleRule(aws_sdk_s3::types::LifecycleRule);

/// What one of s32s3's own lifecycle rules does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    /// Noncurrent versions expire after this many days.
    ExpireNoncurrent(u32),
    /// Delete markers with no version left behind them are removed.
    RemoveExpiredDeleteMarkers,
    /// Incomplete multipart uploads are aborted after a day.
    AbortIncompleteUploads,
}

impl LifecycleRule {
    /// An enabled rule with `id` for the objects under `prefix`.
    #[must_use]
    pub fn new(id: &str, prefix: &str, action: RuleAction) -> Self {
        use aws_sdk_s3::types::{
            AbortIncompleteMultipartUpload, ExpirationStatus, LifecycleExpiration, LifecycleRuleFilter,
            NoncurrentVersionExpiration,
        };
        let rule = aws_sdk_s3::types::LifecycleRule::builder()
            .id(id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix(prefix).build());
        let rule = match action {
            RuleAction::ExpireNoncurrent(days) => rule.noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(i32::try_from(days).unwrap_or(i32::MAX))
                    .build(),
            ),
            RuleAction::RemoveExpiredDeleteMarkers => {
                rule.expiration(LifecycleExpiration::builder().expired_object_delete_marker(true).build())
            }
            RuleAction::AbortIncompleteUploads => rule.abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder().days_after_initiation(1).build(),
            ),
        };
        Self(rule.build().expect("status is set"))
    }

    /// Its id.
    #[must_use]
    pub fn id(&self) -> Option<&str> {
        self.0.id()
    }

    /// The prefix it applies to (`""`: the whole bucket).
    #[must_use]
    #[allow(deprecated)] // a rule's top-level `Prefix` is deprecated in S3, but servers still return it
    pub fn prefix(&self) -> &str {
        let rule = &self.0;
        rule.filter()
            .and_then(|f| f.prefix().or_else(|| f.and().and_then(|a| a.prefix())))
            .or_else(|| rule.prefix())
            .unwrap_or_default()
    }

    /// The same rule, enabled or disabled.
    #[must_use]
    pub fn with_enabled(self, enabled: bool) -> Self {
        use aws_sdk_s3::types::ExpirationStatus;
        let mut rule = self.0;
        rule.status = if enabled { ExpirationStatus::Enabled } else { ExpirationStatus::Disabled };
        Self(rule)
    }

    /// Whether it is enabled.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.0.status() == &aws_sdk_s3::types::ExpirationStatus::Enabled
    }

    /// After how many days it expires noncurrent versions, if it does.
    #[must_use]
    pub fn noncurrent_days(&self) -> Option<u32> {
        self.0.noncurrent_version_expiration()?.noncurrent_days().and_then(|d| u32::try_from(d).ok())
    }

    /// Whether it expires current versions (after some days, or at a date).
    #[must_use]
    pub fn expires_current(&self) -> bool {
        self.0.expiration().is_some_and(|e| e.days().is_some_and(|d| d > 0) || e.date().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

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
        let err = Store::new(Side::Destination, endpoint(""), 1).unwrap_err();
        assert_eq!(err.to_string(), "invalid configuration: destination.endpoint: is not set");
        for bad in ["127.0.0.1:9000", "ftp://host", "http://"] {
            let err = Store::new(Side::Destination, endpoint(bad), 1).unwrap_err();
            assert!(err.to_string().contains("destination.endpoint"), "{err}");
            assert!(err.to_string().contains("not an http:// or https:// URL"), "{err}");
        }
    }

    /// Every client keeps its `max_attempts` however many requests fail at once: with the SDK's shared
    /// default token bucket 40 requests failing together got 50 retries between them, not 40 × 4.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_failures_does_not_spend_the_retries() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = requests.clone();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    // One request per connection: read its head, answer 500, close.
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let answer = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                    let _ = conn.write_all(answer.as_bytes()).await;
                });
            }
        });
        let client = sdk_client_with_retries(&endpoint(&url), 5).unwrap();
        let heads = (0..40).map(|i| client.head_bucket().bucket(format!("bucket-{i}")).send());
        let results = futures::future::join_all(heads).await;
        assert!(results.iter().all(Result::is_err));
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 40 * 5);
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

    /// The answer of `RustFS` 1.0.1 to `ListObjectsV2` with `metadata=true` (as seen), plus a second page.
    #[test]
    fn object_listings_with_user_tags() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>tagt</Name><Prefix></Prefix><MaxKeys>1000</MaxKeys><KeyCount>2</KeyCount><IsTruncated>true</IsTruncated><NextContinuationToken>t+1=</NextContinuationToken><Contents><ETag>"9dd4e461268c8034f5c8564e155c67a6"</ETag><Key>a%20b</Key><LastModified>2026-12-07T00:29:08.629Z</LastModified><Size>1</Size><StorageClass>STANDARD</StorageClass><UserMetadata><foo>bar</foo></UserMetadata><UserTags>k1=v1&amp;k%202=v%3D2+x</UserTags><Internal><K>1</K><M>0</M></Internal></Contents><Contents><ETag>&quot;41&quot;</ETag><Key>b</Key><LastModified>2026-12-07T00:29:08Z</LastModified><Size>12</Size></Contents><EncodingType>url</EncodingType></ListBucketResult>"#;
        let page = parse_object_listing(xml.as_bytes()).unwrap();
        assert!(page.truncated);
        assert_eq!(page.next_token.as_deref(), Some("t+1="));
        let [a, b] = &page.objects[..] else { panic!("{:?}", page.objects) };
        assert_eq!(
            (a.key.as_str(), a.size, a.etag.as_str()),
            ("a b", 1, "\"9dd4e461268c8034f5c8564e155c67a6\"")
        );
        assert_eq!(a.last_modified, "2026-12-07T00:29:08.629Z");
        assert_eq!(a.storage_class.as_deref(), Some("STANDARD"));
        let want: BTreeMap<String, String> =
            [("k1".into(), "v1".into()), ("k 2".into(), "v=2 x".into())].into();
        assert_eq!(a.tags.as_ref(), Some(&want));
        assert_eq!((b.key.as_str(), b.size, b.etag.as_str()), ("b", 12, "\"41\""));
        assert_eq!(b.last_modified, "2026-12-07T00:29:08Z");
        assert_eq!(b.tags, Some(BTreeMap::new()), "no UserTags: listed as having none");
        assert!(parse_object_listing(b"<Error><Code>NoSuchBucket</Code></Error>").is_err());
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
    fn url_decoding() {
        assert_eq!(url_decode("a+b").as_deref(), Some("a b"));
        assert_eq!(url_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(url_decode("a%2Bb").as_deref(), Some("a+b"));
        assert_eq!(url_decode("%E6%97%A5%E6%9C%AC").as_deref(), Some("日本"));
        assert_eq!(url_decode("%01x").as_deref(), Some("\u{1}x"));
        assert_eq!(url_decode("%zz"), None);
        assert_eq!(url_decode("%C3"), None);
        assert_eq!(url_decode("bad%"), None);
    }

    #[test]
    fn object_head_from_raw_headers() {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("content-type", "text/plain"),
            ("cache-control", "no-cache"),
            ("expires", "Thu, 01 Dec 2094 16:00:00 GMT"),
            ("x-amz-meta-mtime", "1700000000.5"),
            ("x-amz-meta-owner", "Ünïcode"),
            ("x-amz-tagging-count", "2"),
            ("x-amz-object-lock-mode", "GOVERNANCE"),
            ("x-amz-object-lock-retain-until-date", "2030-01-02T03:04:05.000Z"),
            ("x-amz-object-lock-legal-hold", "ON"),
            ("etag", "\"abc\""),
        ] {
            headers.insert(name, http::HeaderValue::from_bytes(value.as_bytes()).unwrap());
        }
        let meta = head_from_headers(&headers);
        assert_eq!(meta.content.content_type.as_deref(), Some("text/plain"));
        assert_eq!(meta.content.cache_control.as_deref(), Some("no-cache"));
        assert_eq!(meta.content.expires.as_deref(), Some("Thu, 01 Dec 2094 16:00:00 GMT"));
        assert_eq!(meta.content.content_encoding, None);
        assert_eq!(
            meta.metadata.into_iter().collect::<Vec<_>>(),
            [("mtime".to_owned(), "1700000000.5".to_owned()), ("owner".to_owned(), "Ünïcode".to_owned())]
        );
        assert_eq!(meta.tag_count, 2);
        assert_eq!(meta.lock_mode.as_deref(), Some("GOVERNANCE"));
        // Normalised exactly like the SDK's parsed date, so both paths record the same text.
        assert_eq!(meta.lock_retain_until.as_deref(), Some("2030-01-02T03:04:05Z"));
        assert_eq!(meta.legal_hold.as_deref(), Some("ON"));
    }

    #[test]
    fn path_encoding() {
        assert_eq!(uri_encode("my-bucket.1"), "my-bucket.1");
        assert_eq!(uri_encode("a b/é"), "a%20b%2F%C3%A9");
    }
}
