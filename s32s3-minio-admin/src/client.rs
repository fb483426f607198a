//! The typed admin client.

mod manage;

pub use manage::NewServiceAccount;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH};
use serde::de::DeserializeOwned;

use crate::archive::{BucketMetadataExport, IamExport};
use crate::error::{self, CallSite, Error, ErrorBody, Result};
use crate::kv::{ConfigApplied, KvText};
use crate::payload;
use crate::sigv4::{self, Credentials, SharedClock, SigningRequest, SystemClock};
use crate::types::{
    BucketImportReport, ConfigHistoryEntry, ConfigText, GroupDesc, IamImport, ImportIamResult,
    ListServiceAccountsResp, ServerInfo, ServiceAccountInfo, ServiceActionResult, UserInfo,
};

/// The admin API prefix (`/minio/admin` + `/v3`), spec §1.1.
pub const ADMIN_PREFIX: &str = "/minio/admin/v3";

/// The largest configuration text `PUT /config` accepts: 262272 encrypted bytes less the header and the
/// tags of 16 fragments (spec §3.7).
pub const MAX_CONFIG_LEN: usize = 262_272 - payload::HEADER_LEN - 16 * payload::TAG_LEN;

/// User knobs of an [`AdminClient`].
#[derive(Clone)]
#[non_exhaustive]
pub struct AdminOptions {
    /// Whole-call timeout, body included (default 120 s; exports of large deployments take a while).
    pub timeout: Duration,
    /// TCP + TLS connect timeout (default 10 s).
    pub connect_timeout: Duration,
    /// The region in the signature scope (default `us-east-1`; MinIO accepts any, spec §1.2).
    pub region: String,
    /// Accept any TLS certificate (self-signed test deployments). Default `false`.
    pub danger_accept_invalid_certs: bool,
    /// Extra trusted CA certificates, PEM (a private CA).
    pub ca_certificates_pem: Vec<Vec<u8>>,
    /// STS session token, sent and signed as `X-Amz-Security-Token`.
    pub session_token: Option<String>,
    /// The clock that dates signatures.
    pub clock: SharedClock,
}

impl Default for AdminOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_mins(2),
            connect_timeout: Duration::from_secs(10),
            region: "us-east-1".into(),
            danger_accept_invalid_certs: false,
            ca_certificates_pem: Vec::new(),
            session_token: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl AdminOptions {
    /// Sets the whole-call timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the signing region.
    #[must_use]
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// Accepts any TLS certificate.
    #[must_use]
    pub fn with_danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.danger_accept_invalid_certs = accept;
        self
    }

    /// Trusts one more CA certificate (PEM).
    #[must_use]
    pub fn with_ca_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certificates_pem.push(pem.into());
        self
    }

    /// Uses STS credentials.
    #[must_use]
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }

    /// Dates signatures with `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }
}

impl fmt::Debug for AdminOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminOptions")
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("region", &self.region)
            .field("danger_accept_invalid_certs", &self.danger_accept_invalid_certs)
            .field("ca_certificates", &self.ca_certificates_pem.len())
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// What [`AdminClient::probe`] found at an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Probe {
    /// `GET /minio/admin/v3/info` answered with MinIO's server info: this endpoint can be administered
    /// with these credentials.
    Admin(ServerInfo),
    /// A MinIO admin API answered, but refused: `AccessDenied` (not an admin user: the reason names the
    /// permission `admin:ServerInfo`) or `XMinioAdminVersionMismatch` (it does not serve admin API v3). The
    /// reason quotes the server.
    NotAdmin(String),
    /// The endpoint answered, but not as a MinIO admin API: an S3 error in XML (e.g. `NoSuchBucket` for a
    /// bucket called `minio`), a 404/405/501 without an admin error, or a 200 that is not JSON.
    NotMinio(String),
    /// An admin API answered 200, but with JSON this client cannot read as server info: the endpoint is
    /// administrable, by a server whose answers this version does not understand. Never to be taken for
    /// plain S3 in silence. The reason says what was wrong (never the body).
    Unreadable(String),
}

/// One admin call before signing.
pub(crate) struct Call<'a> {
    api: &'static str,
    method: Method,
    query: Vec<(&'static str, String)>,
    body: Bytes,
    /// The bucket the call names, for error classification.
    bucket: Option<&'a str>,
    /// The policy action it needs, named when the server refuses it.
    permission: &'static str,
}

impl<'a> Call<'a> {
    pub(crate) fn get(api: &'static str) -> Self {
        Self::new(Method::GET, api, Bytes::new())
    }

    pub(crate) fn put(api: &'static str, body: impl Into<Bytes>) -> Self {
        Self::new(Method::PUT, api, body.into())
    }

    pub(crate) fn new(method: Method, api: &'static str, body: Bytes) -> Self {
        Self { api, method, query: Vec::new(), body, bucket: None, permission: error::permission(api) }
    }

    pub(crate) fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    fn bucket(mut self, bucket: &'a str) -> Self {
        self.bucket = Some(bucket);
        self
    }

    fn permission(mut self, permission: &'static str) -> Self {
        self.permission = permission;
        self
    }
}

/// A 200 answer.
struct Answer {
    body: Bytes,
}

/// A signed client for one MinIO deployment's admin API.
///
/// Cheap to clone (the HTTP connection pool is shared). Calls never retry by themselves: wrap them, using
/// [`Error::is_temporary`]. Encrypted calls cost one Argon2id derivation (64 MiB) on each side; they run
/// on tokio's blocking pool, one derivation at a time per process.
#[derive(Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    /// `scheme://host[:port]`, no trailing slash: shown in errors.
    endpoint: String,
    /// The `Host` header, as dialled.
    host: String,
    credentials: Credentials,
    region: String,
    clock: SharedClock,
}

impl fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminClient")
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client for the deployment at `endpoint` (`http://host:port` or `https://host`), signing as
    /// `access_key`.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] for a URL that is not plain `http`/`https` with a host (user info, a path
    /// other than `/`, a query or a fragment are refused); [`Error::ClientSetup`] for a CA certificate that
    /// is not PEM.
    pub fn new(
        endpoint: &str,
        access_key: impl Into<String>,
        secret_key: impl Into<String>,
        options: AdminOptions,
    ) -> Result<Self> {
        let shown = endpoint.split_once('@').map_or(endpoint, |(_, host)| host);
        let invalid =
            |reason: &str| Error::InvalidEndpoint { endpoint: shown.to_owned(), reason: reason.to_owned() };
        let url = reqwest::Url::parse(endpoint).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("credentials belong in the access and secret key, not in the URL"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("give the server's root URL, without a path, query or fragment"));
        }
        let host_name = url.host_str().ok_or_else(|| invalid("no host"))?;
        let host = match url.port() {
            Some(port) => format!("{host_name}:{port}"),
            None => host_name.to_owned(),
        };
        let endpoint = format!("{}://{host}", url.scheme());

        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .tls_danger_accept_invalid_certs(options.danger_accept_invalid_certs);
        for pem in &options.ca_certificates_pem {
            let setup = |reason: String| Error::ClientSetup { endpoint: endpoint.clone(), reason };
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| setup(format!("CA certificate is not PEM: {e}")))?;
            if certs.is_empty() {
                return Err(setup("the CA certificate PEM holds no certificate".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| Error::ClientSetup {
            endpoint: endpoint.clone(),
            reason: e.without_url().to_string(),
        })?;

        let mut credentials = Credentials::new(access_key, secret_key);
        if let Some(token) = options.session_token {
            credentials = credentials.with_session_token(token);
        }
        Ok(Self { http, endpoint, host, credentials, region: options.region, clock: options.clock })
    }

    /// `scheme://host[:port]`, as shown in errors.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Asks, without side effects, whether this endpoint is a MinIO these credentials can administer.
    ///
    /// Sends one `GET /minio/admin/v3/info?metrics=false` (read-only, needs `admin:ServerInfo`) and reads
    /// the answer:
    ///
    /// - 200 with server info (MinIO's `InfoMessage`, or `RustFS`'s `{"info": …}`) → [`Probe::Admin`];
    /// - 200 with a JSON object that holds no server info → [`Probe::Unreadable`]: something answers the
    ///   admin API, and the caller must say so rather than take the endpoint for plain S3;
    /// - `AccessDenied` from an admin API → [`Probe::NotAdmin`], naming the permission: a JSON error is
    ///   MinIO's admin router; an XML one (`RustFS` answers admin errors in XML, as does any S3 server
    ///   refusing a bucket called `minio`) counts when the endpoint also answers 200 to the unsigned
    ///   `GET /minio/health/live` that MinIO and `RustFS` serve and a plain S3 server refuses;
    /// - 426 / `XMinioAdminVersionMismatch` in JSON → [`Probe::NotAdmin`];
    /// - any other 4xx (an S3 XML error such as `NoSuchBucket`, a bare 404/405), or a 200 that is not
    ///   JSON → [`Probe::NotMinio`].
    ///
    /// # Errors
    /// Not a verdict but a failure: [`Error::BadCredentials`] (the endpoint rejected the signature, so
    /// nothing can be learnt), [`Error::Server`] for 5xx/429, and the transport errors
    /// ([`Error::Unreachable`], [`Error::Tls`], [`Error::Timeout`], [`Error::Transport`]).
    pub async fn probe(&self) -> Result<Probe> {
        let call = Call::get("info").query("metrics", "false");
        let (status, body) = self.send_raw(&call).await?;
        if status == 200 {
            return Ok(probe_answer(&body));
        }
        // MinIO's admin router answers errors in JSON; an S3 server answers `/minio/...` in XML.
        let admin_json = serde_json::from_slice::<serde_json::Value>(&body)
            .is_ok_and(|v| v.get("Code").is_some_and(serde_json::Value::is_string));
        let error = error::from_response(self.site(&call), status, &body);
        if matches!(error, Error::BadCredentials { .. }) || error.is_temporary() {
            return Err(error);
        }
        let ErrorBody { code, message, .. } = ErrorBody::parse(&body);
        Ok(match error {
            Error::NotAdmin { .. } if admin_json || self.serves_minio_health().await => {
                Probe::NotAdmin(error.to_string())
            }
            Error::Unsupported { .. } if admin_json => {
                Probe::NotAdmin(format!("HTTP {status} {code}: {message}"))
            }
            _ if code.is_empty() => Probe::NotMinio(format!(
                "GET {ADMIN_PREFIX}/info answered HTTP {status} without an admin error"
            )),
            _ => Probe::NotMinio(format!("GET {ADMIN_PREFIX}/info answered HTTP {status} {code}: {message}")),
        })
    }

    /// Whether the unsigned `GET /minio/health/live` answers 200, as MinIO and `RustFS` do (a plain S3
    /// server takes `minio` for a bucket and refuses). A transport failure counts as no.
    async fn serves_minio_health(&self) -> bool {
        let url = format!("{}/minio/health/live", self.endpoint);
        let answer = self.http.get(&url).send().await;
        tracing::debug!(endpoint = %self.endpoint, status = ?answer.as_ref().map(reqwest::Response::status), "health probe");
        answer.is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
    }

    /// `GET /info`: version, deployment id, servers.
    ///
    /// # Errors
    /// Any of the call errors described on [`Error`]; [`Error::InvalidResponse`] if the JSON does not parse.
    pub async fn server_info(&self) -> Result<ServerInfo> {
        let call = Call::get("info").query("metrics", "false");
        let answer = self.execute(&call).await?;
        let invalid = |reason: String| Error::InvalidResponse {
            endpoint: self.endpoint.clone(),
            api: call.api,
            reason,
        };
        match ServerInfo::from_answer(&answer.body) {
            Ok(Some(info)) => Ok(info),
            Ok(None) => Err(invalid("no server info in the answer".into())),
            Err(e) => Err(invalid(error::json_error(&e))),
        }
    }

    /// `GET /config`: the whole configuration as KV text, **secrets not redacted** (spec §3.7).
    ///
    /// # Errors
    /// Call errors; [`Error::ResponsePayload`] if the answer does not decrypt with the secret key.
    pub async fn get_config(&self) -> Result<ConfigText> {
        let call = Call::get("config");
        let site = self.site(&call);
        let plain = self.execute_encrypted(&call).await?;
        let text = String::from_utf8(plain).map_err(|_| Error::InvalidResponse {
            endpoint: self.endpoint.clone(),
            api: site.api,
            reason: "the configuration is not UTF-8".into(),
        })?;
        Ok(ConfigText::new(text))
    }

    /// `PUT /config`: replaces the whole configuration. Not applied until [`AdminClient::service_restart`].
    ///
    /// # Errors
    /// [`Error::ConfigTooLarge`] past [`MAX_CONFIG_LEN`] bytes (checked before sending); call errors
    /// (a configuration that does not validate is an [`Error::Server`] with MinIO's message).
    pub async fn set_config(&self, config: &ConfigText) -> Result<()> {
        if config.len() > MAX_CONFIG_LEN {
            return Err(Error::ConfigTooLarge { len: config.len(), max: MAX_CONFIG_LEN });
        }
        let body = self.encrypt(config.as_str().as_bytes().to_vec()).await?;
        self.execute(&Call::put("config", body)).await.map(drop)
    }

    /// Sets what of `config` the server accepts: `PUT /config` with the whole text, and while the server
    /// refuses it naming a subsystem, a target or a key of it, again without that part (see [`crate::kv`]).
    /// A MinIO configuration restored onto `RustFS` loses the subsystems and keys `RustFS` does not know,
    /// and the result says which. Not applied until [`AdminClient::service_restart`].
    ///
    /// # Errors
    /// As [`AdminClient::set_config`]; a refusal that names nothing of the text (e.g. an unreachable
    /// notification target named only by its URL) is returned as it came, and nothing was set.
    pub async fn set_config_known(&self, config: &ConfigText) -> Result<ConfigApplied> {
        let mut text = KvText::parse(config.as_str());
        let mut done = ConfigApplied::default();
        while text.has_entries() {
            let attempt = ConfigText::new(text.render());
            match self.set_config(&attempt).await {
                Ok(()) => {
                    done.applied = true;
                    break;
                }
                Err(e @ Error::Server { status: 400..=499, .. }) => {
                    let Error::Server { message, .. } = &e else { unreachable!() };
                    let Some(culprit) = text.culprit(message) else { return Err(e) };
                    let refused = text.drop_culprit(culprit, message);
                    tracing::info!(endpoint = %self.endpoint, refused = %refused, "configuration part refused");
                    done.refused.push(refused);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// `GET /list-config-history-kv?count=N`: the last `count` configuration changes.
    ///
    /// # Errors
    /// Call errors; [`Error::ResponsePayload`]; [`Error::InvalidResponse`].
    pub async fn config_history(&self, count: u32) -> Result<Vec<ConfigHistoryEntry>> {
        let call = Call::get("list-config-history-kv").query("count", count.to_string());
        let site = self.site(&call);
        let plain = self.execute_encrypted(&call).await?;
        let entries: Option<Vec<ConfigHistoryEntry>> = parse_json(site, &plain)?;
        Ok(entries.unwrap_or_default())
    }

    /// `PUT /restore-config-history-kv?restoreId=`: re-applies one history entry (the server then deletes
    /// that entry).
    ///
    /// # Errors
    /// Call errors ([`Error::NotFound`] for an unknown id).
    pub async fn restore_config_history(&self, restore_id: &str) -> Result<()> {
        let call = Call::put("restore-config-history-kv", Bytes::new()).query("restoreId", restore_id);
        self.execute(&call).await.map(drop)
    }

    /// `GET /export-iam`: policies, users (with secret keys), groups, service accounts and mappings, as a
    /// validated zip.
    ///
    /// # Errors
    /// Call errors; [`Error::InvalidArchive`] for a truncated or malformed zip (MinIO can send one with
    /// status 200).
    pub async fn export_iam(&self) -> Result<IamExport> {
        let answer = self.execute(&Call::get("export-iam")).await?;
        IamExport::from_bytes(answer.body)
    }

    /// `PUT /import-iam-v2`, falling back to `PUT /import-iam` when the server lacks v2.
    ///
    /// The fallback happens only on [`Error::Unsupported`] (HTTP 426 on servers before
    /// RELEASE.2024-09-09), unlike mc, which falls back on any error. Import is not atomic and is
    /// idempotent: on error, fix the cause and import again (spec pitfalls 2–13).
    ///
    /// # Errors
    /// Call errors of either call.
    pub async fn import_iam(&self, export: &IamExport) -> Result<IamImport> {
        match self.import_iam_v2(export).await {
            Ok(result) => Ok(IamImport::V2(Box::new(result))),
            Err(Error::Unsupported { .. }) => {
                tracing::info!(endpoint = %self.endpoint, "import-iam-v2 not supported, using import-iam");
                let call = Call::put("import-iam", export.clone().into_bytes());
                let answer = self.execute(&call).await?;
                // MinIO's v1 answers with an empty body, RustFS's with the v2 result.
                Ok(match serde_json::from_slice::<ImportIamResult>(&answer.body) {
                    Ok(result) => IamImport::V2(Box::new(result)),
                    Err(_) => IamImport::V1,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// `PUT /import-iam-v2` alone.
    ///
    /// # Errors
    /// Call errors ([`Error::Unsupported`] on servers before RELEASE.2024-09-09).
    pub async fn import_iam_v2(&self, export: &IamExport) -> Result<ImportIamResult> {
        let call = Call::put("import-iam-v2", export.clone().into_bytes());
        let site = self.site(&call);
        let answer = self.execute(&call).await?;
        parse_json(site, &answer.body)
    }

    /// `PUT /import-iam` alone (no result details).
    ///
    /// # Errors
    /// Call errors.
    pub async fn import_iam_v1(&self, export: &IamExport) -> Result<()> {
        self.execute(&Call::put("import-iam", export.clone().into_bytes())).await.map(drop)
    }

    /// `GET /export-bucket-metadata?bucket=`: one bucket's metadata, or every bucket's with `None`.
    ///
    /// # Errors
    /// Call errors ([`Error::NotFound`] for a missing bucket); [`Error::InvalidArchive`].
    pub async fn export_bucket_metadata(&self, bucket: Option<&str>) -> Result<BucketMetadataExport> {
        let name = bucket.unwrap_or("");
        let call = Call::get("export-bucket-metadata").query("bucket", name).bucket(name);
        let answer = self.execute(&call).await?;
        BucketMetadataExport::from_bytes(answer.body)
    }

    /// `PUT /import-bucket-metadata`: imports **every** bucket in the zip (the server ignores `?bucket=`;
    /// use [`BucketMetadataExport::only_bucket`] to restore one). Missing buckets are created, with object
    /// lock where the export has it. Replication and remote targets are not imported by MinIO.
    ///
    /// # Errors
    /// Call errors. Per-section failures are in the report ([`BucketImportReport::failures`]).
    pub async fn import_bucket_metadata(&self, export: &BucketMetadataExport) -> Result<BucketImportReport> {
        let buckets = export.buckets();
        let name = if buckets.len() == 1 { buckets[0].as_str() } else { "" };
        let call = Call::put("import-bucket-metadata", export.clone().into_bytes()).query("bucket", name);
        let site = self.site(&call);
        let answer = self.execute(&call).await?;
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(BucketImportReport::default());
        }
        parse_json(site, &answer.body)
    }

    /// `PUT /set-bucket-quota?bucket=`: sets a bucket's quota from its `madmin.BucketQuota` JSON (plain, as
    /// the bucket-metadata export holds it in `<bucket>/quota.json`).
    ///
    /// # Errors
    /// Call errors ([`Error::NotFound`] for a missing bucket).
    pub async fn set_bucket_quota(&self, bucket: &str, quota_json: &[u8]) -> Result<()> {
        let call = Call::put("set-bucket-quota", Bytes::copy_from_slice(quota_json))
            .query("bucket", bucket)
            .bucket(bucket);
        self.execute(&call).await.map(drop)
    }

    /// `GET /get-bucket-quota?bucket=`: a bucket's quota JSON (plain).
    ///
    /// # Errors
    /// Call errors ([`Error::NotFound`] for a missing bucket).
    pub async fn get_bucket_quota(&self, bucket: &str) -> Result<Bytes> {
        let call = Call::get("get-bucket-quota").query("bucket", bucket).bucket(bucket);
        Ok(self.execute(&call).await?.body)
    }

    /// `GET /list-users`: users by access key (no secret keys).
    ///
    /// # Errors
    /// Call errors; [`Error::ResponsePayload`]; [`Error::InvalidResponse`].
    pub async fn list_users(&self) -> Result<std::collections::BTreeMap<String, UserInfo>> {
        let call = Call::get("list-users");
        let site = self.site(&call);
        let plain = self.execute_encrypted(&call).await?;
        let users: Option<_> = parse_json(site, &plain)?;
        Ok(users.unwrap_or_default())
    }

    /// `GET /groups`: group names.
    ///
    /// # Errors
    /// Call errors; [`Error::InvalidResponse`].
    pub async fn list_groups(&self) -> Result<Vec<String>> {
        let call = Call::get("groups");
        let site = self.site(&call);
        let answer = self.execute(&call).await?;
        let groups: Option<Vec<String>> = parse_json(site, &answer.body)?;
        Ok(groups.unwrap_or_default())
    }

    /// `GET /group?group=`: members, policies and status of one group.
    ///
    /// # Errors
    /// Call errors ([`Error::NotFound`] for a missing group); [`Error::InvalidResponse`].
    pub async fn group_info(&self, group: &str) -> Result<GroupDesc> {
        let call = Call::get("group").query("group", group);
        let site = self.site(&call);
        let answer = self.execute(&call).await?;
        parse_json(site, &answer.body)
    }

    /// `GET /list-canned-policies`: policy documents by name.
    ///
    /// # Errors
    /// Call errors; [`Error::InvalidResponse`].
    pub async fn list_canned_policies(
        &self,
    ) -> Result<std::collections::BTreeMap<String, serde_json::Value>> {
        let call = Call::get("list-canned-policies");
        let site = self.site(&call);
        let answer = self.execute(&call).await?;
        let policies: Option<_> = parse_json(site, &answer.body)?;
        Ok(policies.unwrap_or_default())
    }

    /// `PUT /set-group-status?group=&status=`: enables or disables a group. Import-iam creates every group
    /// enabled, so a restore re-applies disabled statuses with this (spec pitfall 4).
    ///
    /// # Errors
    /// Call errors ([`Error::NotFound`] for a missing group).
    pub async fn set_group_status(&self, group: &str, enabled: bool) -> Result<()> {
        let call = Call::put("set-group-status", Bytes::new())
            .query("group", group)
            .query("status", if enabled { "enabled" } else { "disabled" })
            .permission(if enabled { "admin:EnableGroup" } else { "admin:DisableGroup" });
        self.execute(&call).await.map(drop)
    }

    /// `POST /update-service-account?accessKey=` with the encrypted `{"newStatus":"on"|"off"}`: import-iam
    /// re-creates every service account enabled, so a restore re-applies `off` with this (spec pitfall 5).
    ///
    /// # Errors
    /// Call errors ([`Error::NotFound`] for a missing account).
    pub async fn set_service_account_status(&self, access_key: &str, enabled: bool) -> Result<()> {
        let request = format!(r#"{{"newStatus":"{}"}}"#, if enabled { "on" } else { "off" });
        let body = self.encrypt(request.into_bytes()).await?;
        let call =
            Call::new(Method::POST, "update-service-account", body.into()).query("accessKey", access_key);
        self.execute(&call).await.map(drop)
    }

    /// `GET /list-service-accounts?user=`: the service accounts of `user` (no secret keys).
    ///
    /// # Errors
    /// Call errors; [`Error::ResponsePayload`]; [`Error::InvalidResponse`].
    pub async fn list_service_accounts(&self, user: &str) -> Result<Vec<ServiceAccountInfo>> {
        let call = Call::get("list-service-accounts").query("user", user);
        let site = self.site(&call);
        let plain = self.execute_encrypted(&call).await?;
        let resp: ListServiceAccountsResp = parse_json(site, &plain)?;
        Ok(resp.accounts.into_iter().map(|a| a.into_info(user)).collect())
    }

    /// `POST /service?action=restart&dry-run=false&type=2`: restarts every server of the deployment, as
    /// needed after [`AdminClient::set_config`]. Returns once the servers were told; then
    /// [`AdminClient::wait_for_restart`] (`RustFS` exits instead, and comes back only if something
    /// starts it again: its answer's [`ServiceActionResult::message`] says so).
    ///
    /// # Errors
    /// Call errors; [`Error::InvalidResponse`].
    pub async fn service_restart(&self) -> Result<ServiceActionResult> {
        let call = Call::new(Method::POST, "service", Bytes::new())
            .query("action", "restart")
            .query("dry-run", "false")
            .query("type", "2");
        let site = self.site(&call);
        let answer = self.execute(&call).await?;
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(ServiceActionResult { action: "restart".into(), ..ServiceActionResult::default() });
        }
        parse_json(site, &answer.body)
    }

    /// Waits, at most `timeout`, until the server answers `GET /info` again after
    /// [`AdminClient::service_restart`]: two seconds for it to go down (MinIO restarts in place, `RustFS`
    /// exits), then a try every second.
    ///
    /// `RustFS` does not start itself again: it answers the restart with "the supervising process manager is
    /// responsible for relaunch" and exits. Without a process manager it never comes back, hence the bound.
    ///
    /// # Errors
    /// [`Error::NotBack`] when `timeout` passes first.
    pub async fn wait_for_restart(&self, timeout: Duration) -> Result<ServerInfo> {
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        tokio::time::sleep_until((started + Duration::from_secs(2)).min(deadline)).await;
        let mut last = String::from("no answer yet");
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::NotBack { endpoint: self.endpoint.clone(), waited: timeout, last });
            }
            match tokio::time::timeout(deadline - now, self.server_info()).await {
                Ok(Ok(info)) => return Ok(info),
                Ok(Err(e)) => {
                    tracing::debug!(endpoint = %self.endpoint, "waiting for the restart: {e}");
                    last = e.to_string();
                }
                Err(_) => last = "the last try did not complete in time".into(),
            }
            tokio::time::sleep(
                Duration::from_secs(1).min(deadline.saturating_duration_since(tokio::time::Instant::now())),
            )
            .await;
        }
    }

    fn site<'c>(&'c self, call: &Call<'c>) -> CallSite<'c> {
        CallSite { endpoint: &self.endpoint, api: call.api, permission: call.permission, bucket: call.bucket }
    }

    /// Sends `call`; an answer other than 2xx becomes an error (MinIO and `RustFS` answer
    /// `update-service-account` with 204 No Content).
    async fn execute(&self, call: &Call<'_>) -> Result<Answer> {
        let (status, body) = self.send_raw(call).await?;
        if (200..300).contains(&status) {
            Ok(Answer { body })
        } else {
            Err(error::from_response(self.site(call), status, &body))
        }
    }

    /// Sends `call` and decrypts its 200 answer with the secret key.
    async fn execute_encrypted(&self, call: &Call<'_>) -> Result<Vec<u8>> {
        let answer = self.execute(call).await?;
        let credentials = self.credentials.clone();
        let opened =
            tokio::task::spawn_blocking(move || payload::decrypt(credentials.secret_key(), &answer.body))
                .await
                .map_err(|e| Error::Crypto(format!("decryption task: {e}")))?;
        opened.map_err(|e| Error::ResponsePayload {
            endpoint: self.endpoint.clone(),
            api: call.api,
            source: Box::new(e),
        })
    }

    /// Encrypts a request body with the secret key, off the async workers.
    async fn encrypt(&self, plaintext: Vec<u8>) -> Result<Vec<u8>> {
        let credentials = self.credentials.clone();
        let plaintext = zeroize::Zeroizing::new(plaintext);
        tokio::task::spawn_blocking(move || payload::encrypt(credentials.secret_key(), &plaintext))
            .await
            .map_err(|e| Error::Crypto(format!("encryption task: {e}")))?
    }

    /// Signs and sends `call`, returning the status and the whole body.
    async fn send_raw(&self, call: &Call<'_>) -> Result<(u16, Bytes)> {
        let path = format!("{ADMIN_PREFIX}/{}", call.api);
        let query: Vec<(&str, &str)> = call.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let canonical_query = sigv4::canonical_query(&query);
        let mut url = format!("{}{}", self.endpoint, sigv4::uri_encode(&path, true));
        if !canonical_query.is_empty() {
            url.push('?');
            url.push_str(&canonical_query);
        }

        // One reading of the clock dates both the header and the signature.
        let now = self.clock.now();
        let date = sigv4::amz_date(now);
        let payload_hash = sigv4::sha256_hex(&call.body);
        let mut headers: Vec<(&str, &str)> =
            vec![("host", &self.host), ("x-amz-content-sha256", &payload_hash), ("x-amz-date", &date)];
        if let Some(token) = self.credentials.session_token() {
            headers.push(("x-amz-security-token", token));
        }
        let request = SigningRequest {
            method: call.method.as_str(),
            path: &path,
            query: &query,
            headers: &headers,
            payload_sha256: &payload_hash,
        };
        let signature = sigv4::sign(&request, &self.credentials, &self.region, "s3", now);

        let mut builder = self.http.request(call.method.clone(), &url);
        for (name, value) in &headers {
            builder = builder.header(*name, *value);
        }
        let builder = builder
            .header(AUTHORIZATION, signature.authorization)
            .header(CONTENT_LENGTH, call.body.len())
            .body(call.body.clone()); // a reference-counted clone

        let transport = |e: reqwest::Error| transport_error(&self.endpoint, call.api, e);
        let response = builder.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(transport)?;
        tracing::debug!(endpoint = %self.endpoint, api = call.api, status, bytes = body.len(), "admin call");
        Ok((status, body))
    }
}

/// What a 200 answer to `GET /info` says about the endpoint.
fn probe_answer(body: &[u8]) -> Probe {
    match ServerInfo::from_answer(body) {
        Ok(Some(info)) => Probe::Admin(info),
        Ok(None) => Probe::Unreadable(format!(
            "GET {ADMIN_PREFIX}/info answered 200 with JSON that holds no server info (neither MinIO's \
             InfoMessage nor RustFS's {{\"info\": …}})"
        )),
        Err(e) if body.trim_ascii_start().starts_with(b"{") => Probe::Unreadable(format!(
            "GET {ADMIN_PREFIX}/info answered 200 with server info this client cannot read ({})",
            error::json_error(&e)
        )),
        Err(_) => Probe::NotMinio(format!("GET {ADMIN_PREFIX}/info answered 200 without MinIO server info")),
    }
}

fn parse_json<T: DeserializeOwned>(site: CallSite<'_>, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::InvalidResponse {
        endpoint: site.endpoint.to_owned(),
        api: site.api,
        reason: crate::error::json_error(&e),
    })
}

/// Sorts a reqwest failure into timeout, TLS, unreachable or other. URLs are stripped (they are ours and
/// carry no secret, but the endpoint and call are already in the message).
fn transport_error(endpoint: &str, api: &'static str, e: reqwest::Error) -> Error {
    let source = e.without_url();
    let endpoint = endpoint.to_owned();
    if source.is_timeout() {
        return Error::Timeout { endpoint, api, source };
    }
    let mut innermost = source.to_string();
    let mut tls = None;
    walk_causes(&source, |cause| {
        innermost = cause.to_string();
        if tls.is_none() && cause.is::<rustls::Error>() {
            tls = Some(innermost.clone());
        }
    });
    if let Some(detail) = tls {
        return Error::Tls { endpoint, api, detail, source };
    }
    if source.is_connect() {
        return Error::Unreachable { endpoint, api, detail: innermost, source };
    }
    Error::Transport { endpoint, api, detail: innermost, source }
}

/// Calls `visit` on every cause below `e`, outermost first, descending into `io::Error`s through
/// `get_ref()` (an `io::Error`'s `source()` skips the error it wraps, which is where rustls puts its own).
fn walk_causes(
    e: &(dyn std::error::Error + 'static),
    mut visit: impl FnMut(&(dyn std::error::Error + 'static)),
) {
    let mut current = next_cause(e);
    while let Some(cause) = current {
        visit(cause);
        current = next_cause(cause);
    }
}

fn next_cause<'e>(
    err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e (dyn std::error::Error + 'static)> {
    match err.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
        Some(inner) => Some(inner),
        None => err.source(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_200_to_info_says() {
        // RustFS 1.0.1 (shortened) and MinIO.
        let rustfs = br#"{"info":{"mode":"online","deploymentID":"cf3f33f4","servers":[{"version":"@1.0.1"}]},"bitrotSelftest":"passed"}"#;
        assert!(matches!(probe_answer(rustfs),
            Probe::Admin(info) if info.deployment_id == "cf3f33f4" && info.flavour == crate::Flavour::RustFs));
        let minio = br#"{"mode":"online","deploymentID":"6faeded5","servers":[]}"#;
        assert!(matches!(probe_answer(minio), Probe::Admin(info) if info.flavour == crate::Flavour::Minio));
        // An admin API that answers something else: reported, never plain S3.
        assert!(matches!(probe_answer(br#"{"information":{"id":1}}"#), Probe::Unreadable(_)));
        assert!(matches!(probe_answer(br#"{"mode":17}"#), Probe::Unreadable(r) if r.contains("cannot read")));
        assert!(matches!(probe_answer(b"<html>hello</html>"), Probe::NotMinio(_)));
    }
}
