//! A local stand-in for MinIO's admin API, for contract tests.
//!
//! It verifies every request the way MinIO does before answering: the SigV4 signature is recomputed with
//! the independent `aws-sigv4` crate and the server's own copy of the keys, `X-Amz-Content-Sha256` must be
//! the body's SHA-256, `Content-Length` must be present and right. Encrypted request bodies are decrypted
//! with the signer's secret key. Answers are shaped like MinIO's (spec §1.3, §3), encrypted where MinIO
//! encrypts them.

#![allow(dead_code)] // Each test binary uses a different part.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use s32s3_minio_admin::archive::build_zip;
use s32s3_minio_admin::payload;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

pub const ROOT_ACCESS_KEY: &str = "minioadmin";
pub const ROOT_SECRET_KEY: &str = "Root-Secret-Key/Do+Not=Print";
pub const READONLY_ACCESS_KEY: &str = "readonly";
pub const READONLY_SECRET_KEY: &str = "Readonly-Secret-Key-42";
/// Secrets inside the IAM export: must never show in Debug or errors.
pub const ALICE_SECRET: &str = "ALICE-SECRET-KEY-0123456789";
pub const SVC_SECRET: &str = "SVC1-SECRET-KEY-9876543210";
/// A secret inside the server configuration.
pub const CONFIG_SECRET: &str = "webhook-token-s3cr3t";

pub const CONFIG_TEXT: &str = "# MINIO_API_REQUESTS_MAX=1600\n\
api requests_max=0 cors_allow_origin=* remote_transport_deadline=2h\n\
notify_webhook:audit1 endpoint=\"http://hook:8080/x\" auth_token=webhook-token-s3cr3t queue_limit=0\n\
# identity_ldap server_addr= \n";

pub const DEPLOYMENT_ID: &str = "6faeded5-5cf3-4133-8a37-07c5d500207c";
pub const VERSION: &str = "2025-10-15T17:29:55Z";

/// How the stand-in behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flavor {
    /// A current MinIO.
    #[default]
    Current,
    /// A MinIO before RELEASE.2024-09-09 (no import-iam-v2).
    BeforeImportIamV2,
    /// A plain S3 server: `/minio/...` is a bucket that does not exist, errors are XML.
    PlainS3,
    /// A MinIO whose export-iam stream broke after the 200 (a truncated zip).
    TruncatedExport,
    /// A MinIO that encrypts its answers with a different secret.
    WrongEncryptionKey,
    /// A MinIO that is not initialised yet (503 on everything).
    Initializing,
    /// A server of the MinIO family that does not serve admin API v3 (426 on everything).
    OtherAdminVersion,
    /// Something answering 200 with a web page to everything.
    WebPage,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_length: Option<String>,
    pub signed_headers: String,
    pub credential_scope: String,
    pub signature_ok: bool,
    pub body: Bytes,
    /// The body decrypted with the signer's secret, for endpoints MinIO expects encrypted.
    pub decrypted: Option<Vec<u8>>,
}

struct State {
    flavor: Flavor,
    seen: Mutex<Vec<Seen>>,
    config: Mutex<String>,
    quota: Mutex<Option<Vec<u8>>>,
}

pub struct MockMinio {
    pub addr: SocketAddr,
    /// The PEM of the CA that signed the server certificate, when serving HTTPS.
    pub ca_pem: Option<String>,
    state: Arc<State>,
}

impl MockMinio {
    /// Serves plain HTTP.
    pub async fn start(flavor: Flavor) -> Self {
        Self::serve(flavor, None).await
    }

    /// Serves HTTPS with a certificate for `127.0.0.1` signed by a fresh CA (see `ca_pem`).
    pub async fn start_tls(flavor: Flavor) -> Self {
        let (acceptor, ca_pem) = tls_acceptor();
        let mut server = Self::serve(flavor, Some(acceptor)).await;
        server.ca_pem = Some(ca_pem);
        server
    }

    async fn serve(flavor: Flavor, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            flavor,
            seen: Mutex::new(Vec::new()),
            config: Mutex::new(CONFIG_TEXT.to_owned()),
            quota: Mutex::new(None),
        });
        let server_state = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let state = server_state.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        // A failed handshake (an untrusting client) just ends the connection.
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http
                                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ =
                                http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Self { addr, ca_pem: None, state }
    }

    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the server saw a request")
    }

    pub fn config(&self) -> String {
        self.state.config.lock().unwrap().clone()
    }
}

fn secret_of(access_key: &str) -> Option<&'static str> {
    match access_key {
        ROOT_ACCESS_KEY => Some(ROOT_SECRET_KEY),
        READONLY_ACCESS_KEY => Some(READONLY_SECRET_KEY),
        _ => None,
    }
}

struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self { status: 200, body: body.into() }
    }
}

/// MinIO's JSON `APIErrorResponse`.
fn admin_error(status: u16, code: &str, message: &str, path: &str) -> Reply {
    let body = serde_json::json!({
        "Code": code, "Message": message, "Key": "", "BucketName": "", "Resource": path,
        "Region": "", "RequestId": "1873E1B7C6A5F3D2", "HostId": "dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8"
    });
    Reply { status, body: serde_json::to_vec(&body).unwrap() }
}

/// An S3 XML error (MinIO's `writeErrorResponse`, and every plain S3 server).
fn s3_error(status: u16, code: &str, message: &str, bucket: &str) -> Reply {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>\
         <BucketName>{bucket}</BucketName><Resource>/{bucket}</Resource><RequestId>1873E1B7C6A5F3D2</RequestId>\
         <HostId>dd9025bab4ad</HostId></Error>"
    );
    Reply { status, body: body.into_bytes() }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(http_body_util::Collected::to_bytes).unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let query = parse_query(parts.uri.query().unwrap_or(""));
    let checked = check_request(&parts, &body);
    let decrypted = decrypt_body(checked.secret, &parts.method, &path, &body);
    state.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        content_length: header_of(&parts, "content-length"),
        signed_headers: checked.signed_headers.clone(),
        credential_scope: checked.scope.clone(),
        signature_ok: checked.signature_ok,
        body: body.clone(),
        decrypted: decrypted.clone(),
    });
    let reply = answer(&state, &checked, parts.method.as_str(), &path, &query, &body, decrypted);
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status).unwrap();
    response.headers_mut().insert("content-type", "application/json".parse().unwrap());
    Ok(response)
}

fn header_of(parts: &hyper::http::request::Parts, name: &str) -> Option<String> {
    parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The query string's parameters, percent-decoded.
fn parse_query(raw_query: &str) -> BTreeMap<String, String> {
    raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// What the server makes of a request's signature and body before it answers.
struct Checked {
    access_key: String,
    /// The credential after the access key: `date/region/s3/aws4_request`.
    scope: String,
    signed_headers: String,
    /// The signer's secret, if the server knows the access key.
    secret: Option<&'static str>,
    /// `X-Amz-Content-Sha256` is the body's SHA-256.
    payload_ok: bool,
    /// `Content-Length` is present and the body's length.
    length_ok: bool,
    signature_ok: bool,
}

/// Checks the request the way MinIO does: the signature recomputed with the server's copy of the keys,
/// the payload hash and the length.
fn check_request(parts: &hyper::http::request::Parts, body: &Bytes) -> Checked {
    let header = |name: &str| header_of(parts, name);
    // Authorization: AWS4-HMAC-SHA256 Credential=AK/date/region/s3/aws4_request, SignedHeaders=..., Signature=...
    let auth = header("authorization").unwrap_or_default();
    let field = |name: &str| {
        auth.split([' ', ','])
            .find_map(|part| part.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_owned()
    };
    let credential = field("Credential");
    let signed_headers = field("SignedHeaders");
    let signature = field("Signature");
    let (access_key, scope) = credential.split_once('/').unwrap_or(("", ""));
    let region = scope.split('/').nth(1).unwrap_or("").to_owned();
    let secret = secret_of(access_key);

    let payload_ok =
        header("x-amz-content-sha256").as_deref() == Some(hex::encode(Sha256::digest(body)).as_str());
    let length_ok = header("content-length").is_some_and(|l| l == body.len().to_string());
    let signature_ok = secret.is_some_and(|secret| {
        let headers: Vec<(String, String)> = signed_headers
            .split(';')
            .map(|name| (name.to_owned(), header(name).unwrap_or_default()))
            .collect();
        let date = header("x-amz-date").unwrap_or_default();
        expected_signature(
            access_key,
            secret,
            &region,
            &date,
            parts.method.as_str(),
            &parts.uri.to_string(),
            &headers,
            body,
        )
        .is_some_and(|expected| expected == signature)
    });
    Checked {
        access_key: access_key.to_owned(),
        scope: scope.to_owned(),
        signed_headers,
        secret,
        payload_ok,
        length_ok,
        signature_ok,
    }
}

/// The body decrypted with the signer's secret, for the endpoints MinIO expects encrypted.
fn decrypt_body(secret: Option<&str>, method: &hyper::Method, path: &str, body: &[u8]) -> Option<Vec<u8>> {
    match (secret, path.rsplit('/').next()) {
        (Some(secret), Some("config" | "set-config-kv")) if method == hyper::Method::PUT => {
            payload::decrypt(secret, body).ok()
        }
        (Some(secret), Some("update-service-account")) if method == hyper::Method::POST => {
            payload::decrypt(secret, body).ok()
        }
        _ => None,
    }
}

/// The answer: the server's refusal (unknown key, bad signature, the flavor's), or the admin API's.
fn answer(
    state: &State,
    checked: &Checked,
    method: &str,
    path: &str,
    query: &BTreeMap<String, String>,
    body: &[u8],
    decrypted: Option<Vec<u8>>,
) -> Reply {
    let secret = checked.secret;
    let signed_headers = &checked.signed_headers;
    if state.flavor == Flavor::PlainS3 {
        // What any S3 server says about a bucket called "minio" that does not exist.
        if secret.is_none() {
            s3_error(
                403,
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
                "minio",
            )
        } else {
            s3_error(404, "NoSuchBucket", "The specified bucket does not exist", "minio")
        }
    } else if secret.is_none() {
        admin_error(
            403,
            "InvalidAccessKeyId",
            "The Access Key Id you provided does not exist in our records.",
            path,
        )
    } else if !checked.payload_ok || !checked.length_ok || !signed_headers.contains("x-amz-content-sha256") {
        admin_error(403, "AccessDenied", "Access Denied.", path)
    } else if !checked.signature_ok {
        admin_error(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            path,
        )
    } else if state.flavor == Flavor::Initializing {
        admin_error(503, "XMinioServerNotInitialized", "Server not initialized yet, please try again.", path)
    } else if state.flavor == Flavor::OtherAdminVersion {
        admin_error(
            426,
            "XMinioAdminVersionMismatch",
            "This 'admin' API is not supported by server in 'minio-standalone'",
            path,
        )
    } else if state.flavor == Flavor::WebPage {
        Reply::ok(&b"<html><head><title>Welcome to nginx!</title></head><body>It works.</body></html>"[..])
    } else if checked.access_key == READONLY_ACCESS_KEY {
        admin_error(403, "AccessDenied", "Access Denied.", path)
    } else {
        let encryption_secret =
            if state.flavor == Flavor::WrongEncryptionKey { "another-secret" } else { ROOT_SECRET_KEY };
        route(state, method, path, query, body, decrypted, encryption_secret)
    }
}

/// What MinIO answers, per admin API: the first route family that knows the call answers it.
fn route(
    state: &State,
    method: &str,
    path: &str,
    query: &BTreeMap<String, String>,
    body: &[u8],
    decrypted: Option<Vec<u8>>,
    encryption_secret: &str,
) -> Reply {
    let Some(api) = path.strip_prefix("/minio/admin/v3/") else {
        return api_not_supported(path);
    };
    let call = Call { state, method, api, path, query, body, decrypted, encryption_secret };
    service_api(&call)
        .or_else(|| config_api(&call))
        .or_else(|| iam_api(&call))
        .or_else(|| bucket_api(&call))
        .unwrap_or_else(|| api_not_supported(path))
}

/// One admin API call, as the route families see it.
struct Call<'a> {
    state: &'a State,
    method: &'a str,
    /// The path after `/minio/admin/v3/`.
    api: &'a str,
    path: &'a str,
    query: &'a BTreeMap<String, String>,
    body: &'a [u8],
    /// The body decrypted with the signer's secret.
    decrypted: Option<Vec<u8>>,
    /// The secret answers are encrypted with.
    encryption_secret: &'a str,
}

impl Call<'_> {
    /// A query parameter.
    fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }

    /// A 200 with `plain` encrypted, as MinIO encrypts its answers.
    fn enc(&self, plain: &[u8]) -> Reply {
        Reply::ok(payload::encrypt(self.encryption_secret, plain).unwrap())
    }
}

/// MinIO's answer to an admin API it does not serve (or a version it does not speak).
fn api_not_supported(path: &str) -> Reply {
    admin_error(
        426,
        "XMinioAdminVersionMismatch",
        "This 'admin' API is not supported by server in 'minio-standalone'",
        path,
    )
}

/// The server: its information, and a restart.
fn service_api(c: &Call) -> Option<Reply> {
    Some(match (c.method, c.api) {
        ("GET", "info") if c.q("metrics").is_some() => Reply::ok(info_json()),
        ("POST", "service") if c.q("action") == Some("restart") && c.q("type") == Some("2") => {
            Reply::ok(&br#"{"action":"restart","dryRun":false,"results":[{"host":"127.0.0.1:9000"}]}"#[..])
        }
        _ => return None,
    })
}

/// The server configuration and its history.
fn config_api(c: &Call) -> Option<Reply> {
    let path = c.path;
    Some(match (c.method, c.api) {
        ("GET", "config") => c.enc(c.state.config.lock().unwrap().as_bytes()),
        ("PUT", "config") => match &c.decrypted {
            Some(text) => {
                *c.state.config.lock().unwrap() = String::from_utf8(text.clone()).unwrap();
                Reply::ok(Vec::new())
            }
            None => admin_error(400, "XMinioAdminConfigBadJSON", "Unable to parse the config", path),
        },
        ("GET", "list-config-history-kv") if c.q("count").is_some_and(|n| n.parse::<u32>().is_ok()) => c.enc(
            br#"[{"restoreId":"8d1c7f0e-6d5b-4a5e-9a3b-2f1e0d9c8b7a","createTime":"2025-05-01T10:00:00.123456789Z","data":"notify_webhook:audit1 auth_token=webhook-token-s3cr3t\n"}]"#,
        ),
        ("PUT", "restore-config-history-kv") => match c.q("restoreId") {
            Some("8d1c7f0e-6d5b-4a5e-9a3b-2f1e0d9c8b7a") => Reply::ok(Vec::new()),
            _ => admin_error(404, "XMinioAdminConfigIDMissing", "Config history entry not found", path),
        },
        _ => return None,
    })
}

/// Users, groups, policies and service accounts: the IAM export and import, and what they are made of.
fn iam_api(c: &Call) -> Option<Reply> {
    let path = c.path;
    Some(match (c.method, c.api) {
        ("GET", "export-iam") if c.state.flavor == Flavor::TruncatedExport => {
            let zip = iam_zip();
            Reply::ok(zip[..zip.len() * 2 / 3].to_vec())
        }
        ("GET", "export-iam") => Reply::ok(iam_zip()),
        ("PUT", "import-iam-v2") if c.state.flavor == Flavor::BeforeImportIamV2 => api_not_supported(path),
        ("PUT", "import-iam-v2") if is_zip(c.body) => Reply::ok(IMPORT_IAM_RESULT),
        ("PUT", "import-iam") if is_zip(c.body) => Reply::ok(Vec::new()),
        ("GET", "list-users") => c.enc(
            br#"{"alice":{"policyName":"readwrite,diagnostics","status":"enabled","memberOf":["devs"],"updatedAt":"2025-01-02T03:04:05Z"},"bob":{"status":"disabled"}}"#,
        ),
        ("GET", "groups") => Reply::ok(&br#"["devs","ops"]"#[..]),
        ("GET", "group") => match c.q("group") {
            Some("devs") => Reply::ok(
                &br#"{"name":"devs","status":"disabled","members":["alice"],"policy":"readonly","updatedAt":"2025-01-02T03:04:05Z"}"#[..],
            ),
            _ => admin_error(404, "XMinioAdminNoSuchGroup", "The specified group does not exist.", path),
        },
        ("GET", "list-canned-policies") => Reply::ok(
            &br#"{"readwrite":{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"]}]},"p1":{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::b/*"]}]}}"#[..],
        ),
        ("GET", "list-service-accounts") if c.q("user") == Some("alice") => c.enc(
            br#"{"accounts":[{"parentUser":"alice","accountStatus":"off","impliedPolicy":true,"accessKey":"SVC1","name":"backup","description":"nightly","expiration":"1970-01-01T00:00:00Z"},{"parentUser":"alice","accountStatus":"on","impliedPolicy":false,"accessKey":"SVC2","expiration":"2030-01-01T00:00:00Z"}]}"#,
        ),
        ("GET", "list-service-accounts") => c.enc(br#"{"accounts":null}"#),
        ("PUT", "set-group-status") => match (c.q("group"), c.q("status")) {
            (Some("devs"), Some("enabled" | "disabled")) => Reply::ok(Vec::new()),
            (Some("devs"), _) => admin_error(400, "InvalidArgument", "Invalid arguments specified.", path),
            _ => admin_error(404, "XMinioAdminNoSuchGroup", "The specified group does not exist.", path),
        },
        ("POST", "update-service-account") => {
            let request: Option<serde_json::Value> = c.decrypted.as_deref().and_then(|d| serde_json::from_slice(d).ok());
            match (c.q("accessKey"), request) {
                (Some("SVC1"), Some(r)) if r["newStatus"] == "on" || r["newStatus"] == "off" => Reply::ok(Vec::new()),
                (Some("SVC1"), _) => admin_error(400, "XMinioAdminConfigBadJSON", "Unable to parse the request", path),
                _ => admin_error(404, "XMinioAdminServiceAccountNotFound", "The specified service account is not found", path),
            }
        }
        _ => return None,
    })
}

/// Bucket metadata export and import, and bucket quotas.
fn bucket_api(c: &Call) -> Option<Reply> {
    let path = c.path;
    Some(match (c.method, c.api) {
        ("GET", "export-bucket-metadata") => match c.q("bucket") {
            Some("" | "photos") => Reply::ok(bucket_zip()),
            Some(bucket) => s3_error(404, "NoSuchBucket", "The specified bucket does not exist", bucket),
            None => admin_error(400, "InvalidArgument", "bucket is required", path),
        },
        ("PUT", "import-bucket-metadata") if is_zip(c.body) => Reply::ok(IMPORT_BUCKET_RESULT),
        // madmin.BucketQuota, plain JSON both ways (spec: "GET get-bucket-quota / PUT set-bucket-quota").
        ("PUT", "set-bucket-quota") => match c.q("bucket") {
            Some("photos")
                if serde_json::from_slice::<serde_json::Value>(c.body).is_ok_and(|v| v.is_object()) =>
            {
                *c.state.quota.lock().unwrap() = Some(c.body.to_vec());
                Reply::ok(Vec::new())
            }
            Some("photos") => admin_error(400, "XMinioAdminInvalidArgument", "Invalid quota config", path),
            Some(bucket) => s3_error(404, "NoSuchBucket", "The specified bucket does not exist", bucket),
            None => admin_error(400, "InvalidArgument", "bucket is required", path),
        },
        ("GET", "get-bucket-quota") if c.q("bucket") == Some("photos") => {
            Reply::ok(c.state.quota.lock().unwrap().clone().unwrap_or_else(|| b"{}".to_vec()))
        }
        _ => return None,
    })
}

fn is_zip(body: &[u8]) -> bool {
    body.starts_with(b"PK")
}

pub fn info_json() -> String {
    format!(
        r#"{{"mode":"online","region":"us-east-1","deploymentID":"{DEPLOYMENT_ID}","buckets":{{"count":2}},"objects":{{"count":17}},"versions":{{"count":17}},"deletemarkers":{{}},"usage":{{"size":123456}},"services":{{"kms_status":[]}},"backend":{{"backendType":"Erasure","onlineDisks":4,"offlineDisks":0,"standardSCParity":2,"rrSCParity":1,"totalSets":[1],"totalDrivesPerSet":[4]}},"servers":[{{"state":"online","endpoint":"127.0.0.1:9000","scheme":"http","uptime":3600,"version":"{VERSION}","commitID":"9e49d5e7a648f00e26f2246f4dc28e6b07f8c84a","network":{{"127.0.0.1:9000":"online"}},"drives":[],"poolNumber":1,"poolNumbers":[1],"mem_stats":{{"alloc":1}},"go_max_procs":2,"num_cpu":2,"runtime_version":"go1.24.6","minio_env_vars":{{"MINIO_ROOT_USER":"*** redacted ***"}},"edition":""}}]}}"#
    )
}

/// An export-iam zip with MinIO's layout (spec §3.3).
pub fn iam_zip() -> Vec<u8> {
    let users = format!(r#"{{"alice":{{"secretKey":"{ALICE_SECRET}","status":"enabled"}}}}"#);
    let svc = format!(
        r#"{{"SVC1":{{"parent":"alice","accessKey":"SVC1","secretKey":"{SVC_SECRET}","groups":null,"claims":{{"accessKey":"alice"}},"sessionPolicy":null,"status":"off","name":"backup","description":"nightly","expiration":"1970-01-01T00:00:00Z"}}}}"#
    );
    build_zip([
        (
            "iam-assets/policies.json",
            &br#"{"p1":{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::b/*"]}]}}"#[..],
        ),
        ("iam-assets/users.json", users.as_bytes()),
        ("iam-assets/groups.json", br#"{"devs":{"version":1,"status":"disabled","members":["alice"],"updatedAt":"2025-01-02T03:04:05Z"}}"#),
        ("iam-assets/svcaccts.json", svc.as_bytes()),
        ("iam-assets/user_mappings.json", br#"{"alice":{"version":1,"policy":"readwrite,diagnostics","updatedAt":"2025-01-02T03:04:05Z"}}"#),
        ("iam-assets/group_mappings.json", br#"{"devs":{"version":1,"policy":"readonly","updatedAt":"2025-01-02T03:04:05Z"}}"#),
        ("iam-assets/stsuser_mappings.json", b"{}"),
    ])
    .unwrap()
}

/// An export-bucket-metadata zip with MinIO's layout (spec §3.5); `bucket-targets.json` is XML, with a
/// remote secret in clear.
pub fn bucket_zip() -> Vec<u8> {
    build_zip([
        ("photos/policy.json", &br#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::photos/*"]}]}"#[..]),
        ("photos/notification.xml", b"<NotificationConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"></NotificationConfiguration>"),
        ("photos/object-lock.xml", b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>"),
        ("photos/versioning.xml", b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"),
        ("photos/quota.json", br#"{"quota":1073741824,"size":1073741824,"rate":0,"requests":0,"quotatype":"hard"}"#),
        ("photos/bucket-targets.json", b"<BucketTargets><Targets><Credentials><AccessKeyId>remote</AccessKeyId><SecretAccessKey>REMOTE-SECRET</SecretAccessKey></Credentials></Targets></BucketTargets>"),
        ("logs/notification.xml", b"<NotificationConfiguration></NotificationConfiguration>"),
        ("logs/bucket-targets.json", b"<BucketTargets></BucketTargets>"),
    ])
    .unwrap()
}

/// madmin's `ImportIAMResult`, the spec's example.
pub const IMPORT_IAM_RESULT: &str = r#"{"skipped":{},"removed":{},"added":{"policies":["p1"],"users":["alice"],"groups":["devs"],"serviceAccounts":["SVC1"],"userPolicies":[{"alice":["readwrite","diagnostics"]}],"groupPolicies":[{"devs":["readonly"]}],"stsPolicies":[{"uid=bob,ou=people,dc=example,dc=org":["readonly"]}]},"failed":{"serviceAccounts":[{"name":"SVC2","error":{}}],"userPolicies":[{"name":"carol","policies":["gone"],"error":{}}]}}"#;

/// madmin's `BucketMetaImportErrs`, the spec's example.
pub const IMPORT_BUCKET_RESULT: &str = r#"{"buckets":{"photos":{"olock":{"isSet":true},"versioning":{"isSet":true},"policy":{"isSet":true},"tagging":{"isSet":false},"sse":{"isSet":true,"error":"Server side encryption specified but KMS is not configured"},"lifecycle":{"isSet":false},"notification":{"isSet":true},"quota":{"isSet":false},"cors":{"isSet":false}}}}"#;

/// The signature `aws-sigv4` computes for the request as received.
#[allow(clippy::too_many_arguments)]
pub fn expected_signature(
    access_key: &str,
    secret_key: &str,
    region: &str,
    amz_date: &str,
    method: &str,
    uri: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Option<String> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let time: SystemTime = time::PrimitiveDateTime::parse(amz_date, format).ok()?.assume_utc().into();
    let host = headers.iter().find(|(n, _)| n == "host").map(|(_, v)| v.as_str())?;
    let url = format!("http://{host}{uri}");
    let identity = aws_credential_types::Credentials::new(access_key, secret_key, None, None, "mock").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(time)
        .settings(settings)
        .build()
        .ok()?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .ok()?;
    let (_, signature) = sign(signable, &params).ok()?.into_parts();
    Some(signature)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_byte = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if let (b'%', Some(b)) = (bytes[i], hex_byte) {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A CA, a server certificate for `127.0.0.1` signed by it, and an acceptor serving that certificate.
fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();

    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        )
        .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca_cert.pem())
}

/// A listener that accepts connections and never answers: for timeouts.
pub async fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// A loopback port with nothing listening on it.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}
