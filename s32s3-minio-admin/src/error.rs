//! The crate's one error type, and the one place that turns an HTTP answer into an error kind.

use std::fmt;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which archive a zip validation error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArchiveKind {
    /// The zip of `GET /minio/admin/v3/export-iam`.
    Iam,
    /// The zip of `GET /minio/admin/v3/export-bucket-metadata`.
    BucketMetadata,
}

impl fmt::Display for ArchiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Iam => "IAM export",
            Self::BucketMetadata => "bucket-metadata export",
        })
    }
}

/// Everything that can go wrong talking to a MinIO admin API or handling its payloads.
///
/// Messages name the endpoint and the admin call (`endpoint`, `api`) and never contain a secret key, a
/// session token, a decrypted payload or the contents of an export. Server-supplied messages are quoted
/// (shortened to 300 characters).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint URL cannot be used (not http/https, has user info, a path, a query, …).
    #[error("invalid MinIO endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The URL as given (user info is never kept).
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },

    /// The HTTP client could not be built from the options (e.g. a CA certificate that is not PEM).
    #[error("cannot set up the HTTP client for {endpoint}: {reason}")]
    ClientSetup {
        /// The endpoint.
        endpoint: String,
        /// What failed.
        reason: String,
    },

    /// The server rejected the credentials: unknown access key (`InvalidAccessKeyId`), wrong secret key
    /// (`SignatureDoesNotMatch`), an invalid or expired session token, or a clock too far off.
    #[error(
        "{endpoint}: admin call {api} was refused: the credentials are not valid ({code}: {message}); \
         check the access key, the secret key and the clock"
    )]
    BadCredentials {
        /// The endpoint.
        endpoint: String,
        /// The admin call, e.g. `info`.
        api: &'static str,
        /// The server's error code.
        code: String,
        /// The server's message.
        message: String,
    },

    /// The credentials are valid but may not perform this call (`AccessDenied`): not an admin user, or one
    /// without this call's permission. Neither MinIO nor `RustFS` names the permission in its answer; this
    /// client knows which one each call needs.
    #[error(
        "{endpoint}: admin call {api} was refused: this access key lacks the permission {permission} \
         ({code}: {message}); grant it, or use an admin's keys"
    )]
    NotAdmin {
        /// The endpoint.
        endpoint: String,
        /// The admin call.
        api: &'static str,
        /// The policy action the call needs, e.g. `admin:ServerInfo` (MinIO's names, which `RustFS` shares).
        permission: &'static str,
        /// The server's error code.
        code: String,
        /// The server's message.
        message: String,
    },

    /// The server does not offer this admin call: HTTP 426 `XMinioAdminVersionMismatch` (MinIO's answer to
    /// an unknown admin API or version), `NotImplemented`/`MethodNotAllowed`, or a 404/400 that is not an
    /// admin error (an S3 server that is not MinIO sees `/minio/...` as a bucket).
    #[error("{endpoint}: the server does not support the admin call {api} (HTTP {status} {code}: {message})")]
    Unsupported {
        /// The endpoint.
        endpoint: String,
        /// The admin call.
        api: &'static str,
        /// The HTTP status.
        status: u16,
        /// The server's error code (empty if there was none).
        code: String,
        /// The server's message.
        message: String,
    },

    /// The call names something that does not exist (user, group, policy, bucket, …).
    #[error("{endpoint}: admin call {api}: not found ({code}: {message})")]
    NotFound {
        /// The endpoint.
        endpoint: String,
        /// The admin call.
        api: &'static str,
        /// The server's error code.
        code: String,
        /// The server's message.
        message: String,
    },

    /// The server refused the request for another reason (invalid input, a config that does not
    /// validate, …), or failed (5xx, 429: see [`Error::is_temporary`]).
    #[error("{endpoint}: admin call {api} failed: HTTP {status} {code}: {message}")]
    Server {
        /// The endpoint.
        endpoint: String,
        /// The admin call.
        api: &'static str,
        /// The HTTP status.
        status: u16,
        /// The server's error code (empty if there was none).
        code: String,
        /// The server's message.
        message: String,
    },

    /// Nothing answered: connection refused, no route, DNS failure.
    #[error("{endpoint} is unreachable (admin call {api}): {detail}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// The admin call.
        api: &'static str,
        /// The innermost cause, e.g. `Connection refused (os error 111)`.
        detail: String,
        /// The transport error (without the URL).
        #[source]
        source: reqwest::Error,
    },

    /// The TLS handshake failed: the server does not speak TLS on that port, or its certificate is not
    /// trusted or does not match the host name.
    #[error("TLS with {endpoint} failed (admin call {api}): {detail}")]
    Tls {
        /// The endpoint.
        endpoint: String,
        /// The admin call.
        api: &'static str,
        /// The TLS library's description.
        detail: String,
        /// The transport error (without the URL).
        #[source]
        source: reqwest::Error,
    },

    /// The call did not complete within the configured timeout.
    #[error("{endpoint}: admin call {api} timed out")]
    Timeout {
        /// The endpoint.
        endpoint: String,
        /// The admin call.
        api: &'static str,
        /// The transport error (without the URL).
        #[source]
        source: reqwest::Error,
    },

    /// Any other transport failure (connection reset mid-response, a body shorter than announced, …).
    #[error("{endpoint}: admin call {api}: transport error: {detail}")]
    Transport {
        /// The endpoint.
        endpoint: String,
        /// The admin call.
        api: &'static str,
        /// The innermost cause.
        detail: String,
        /// The transport error (without the URL).
        #[source]
        source: reqwest::Error,
    },

    /// The server answered 200 with a body this client cannot understand.
    #[error("{endpoint}: admin call {api} returned an unexpected response: {reason}")]
    InvalidResponse {
        /// The endpoint.
        endpoint: String,
        /// The admin call.
        api: &'static str,
        /// What was wrong (never the body itself).
        reason: String,
    },

    /// The server's encrypted answer could not be decrypted.
    #[error("{endpoint}: admin call {api}: cannot decrypt the response")]
    ResponsePayload {
        /// The endpoint.
        endpoint: String,
        /// The admin call.
        api: &'static str,
        /// The payload error ([`Error::PayloadWrongSecret`], [`Error::PayloadTampered`], …).
        #[source]
        source: Box<Error>,
    },

    /// The server was told to restart and has not answered since, within the time given.
    #[error(
        "{endpoint}: the server has not answered for {waited:?} since it was told to restart ({last}); \
         something must start it again (RustFS exits on restart and leaves that to its process manager)"
    )]
    NotBack {
        /// The endpoint.
        endpoint: String,
        /// How long it was waited for.
        waited: std::time::Duration,
        /// The last try's error.
        last: String,
    },

    /// An encrypted payload ends early: shorter than its 41-byte header, shorter than an authentication
    /// tag after it, or cut right after a fragment that is not marked final.
    #[error("madmin payload is truncated: {detail}")]
    PayloadTruncated {
        /// Where it ends.
        detail: String,
    },

    /// No fragment of an encrypted payload authenticates with the key derived from this secret key: the
    /// payload was encrypted with another secret key (the caller's own secret, which for a service
    /// account is not the root secret). An AEAD cannot tell this from an altered header or an altered
    /// *only* fragment; a payload whose first fragment fails while a later one authenticates is reported as
    /// [`Error::PayloadTampered`] instead.
    #[error(
        "madmin payload cannot be decrypted with this secret key (it was encrypted with another one, \
         or its header was altered)"
    )]
    PayloadWrongSecret,

    /// A fragment of an encrypted payload does not authenticate although the key is right (an earlier or
    /// later fragment authenticates): the payload was altered, reordered, or cut inside its last fragment.
    #[error("madmin payload was altered: fragment {fragment} does not authenticate")]
    PayloadTampered {
        /// The 1-based number of the first fragment that failed.
        fragment: u64,
    },

    /// The byte at offset 32 is not one of the three madmin algorithm ids: not a madmin payload.
    #[error("not a madmin payload: unknown algorithm id {id:#04x}")]
    PayloadUnknownAlgorithm {
        /// The byte found.
        id: u8,
    },

    /// A plaintext too large for the sio stream (more than 2^32 - 1 fragments).
    #[error("plaintext of {len} bytes is too large to encrypt")]
    PayloadTooLarge {
        /// The plaintext length.
        len: usize,
    },

    /// Key derivation or randomness failed (the operating system's random source, Argon2's allocation).
    #[error("madmin payload crypto failed: {0}")]
    Crypto(String),

    /// An export is not a valid zip of the expected layout (truncated, corrupt, or unexpected entries).
    #[error("the {kind} is not valid: {reason}")]
    InvalidArchive {
        /// Which export.
        kind: ArchiveKind,
        /// What was wrong (entry names at most, never contents).
        reason: String,
    },

    /// A server configuration text larger than MinIO accepts.
    #[error("the server configuration is {len} bytes; MinIO accepts at most {max}")]
    ConfigTooLarge {
        /// The text's length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl Error {
    /// Whether retrying the same idempotent call later may succeed: timeouts, unreachable servers,
    /// transport failures, HTTP 5xx and 429.
    #[must_use]
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Unreachable { .. } | Self::Transport { .. } => true,
            Self::Server { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || matches!(code.as_str(), "SlowDown" | "XMinioServerNotInitialized")
            }
            _ => false,
        }
    }
}

/// Where a call went: carried into every error it produces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallSite<'a> {
    pub endpoint: &'a str,
    pub api: &'static str,
    /// The policy action the call needs ([`permission`]).
    pub permission: &'static str,
    /// The bucket the call named, if any: a `NoSuchBucket` about it is a real "not found".
    pub bucket: Option<&'a str>,
}

/// The policy action an admin call needs, by the call's path (MinIO's action names, `minio/pkg`
/// `policy/admin-action.go`; `RustFS` checks the same names: `admin:ServerInfo`, `admin:ConfigUpdate`,
/// `admin:ExportIAM`, `admin:ExportBucketMetadata`, `admin:ListUsers`, `admin:ListGroups` and
/// `admin:ListUserPolicies` were each granted alone to a user of a live `RustFS` 1.0.1, which then
/// could make that call and no other). `set-group-status` needs `admin:DisableGroup` to disable and
/// `admin:EnableGroup` to enable; the client names the one the call needs.
pub(crate) fn permission(api: &str) -> &'static str {
    match api {
        "info" => "admin:ServerInfo",
        "config" | "list-config-history-kv" | "restore-config-history-kv" => "admin:ConfigUpdate",
        "export-iam" => "admin:ExportIAM",
        "import-iam" | "import-iam-v2" => "admin:ImportIAM",
        "export-bucket-metadata" => "admin:ExportBucketMetadata",
        "import-bucket-metadata" => "admin:ImportBucketMetadata",
        "set-bucket-quota" => "admin:SetBucketQuota",
        "get-bucket-quota" => "admin:GetBucketQuota",
        "list-users" => "admin:ListUsers",
        "groups" => "admin:ListGroups",
        "group" => "admin:GetGroup",
        "list-canned-policies" => "admin:ListUserPolicies",
        "update-service-account" => "admin:UpdateServiceAccount",
        "list-service-accounts" => "admin:ListServiceAccounts",
        "service" => "admin:ServiceRestart",
        "add-user" => "admin:CreateUser",
        "add-canned-policy" => "admin:CreatePolicy",
        "update-group-members" => "admin:AddUserToGroup",
        "set-user-or-group-policy" => "admin:AttachUserOrGroupPolicy",
        "add-service-account" => "admin:CreateServiceAccount",
        _ => "admin:*",
    }
}

/// The error body of an admin (JSON) or S3 (XML) error response, as far as it could be read.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub code: String,
    pub message: String,
    pub bucket: String,
}

impl ErrorBody {
    /// Reads MinIO's JSON `APIErrorResponse` (`Code`, `Message`, `BucketName`, …) or an S3 XML `<Error>`.
    pub(crate) fn parse(body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Json {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
            #[serde(default)]
            bucket_name: String,
        }
        if let Ok(j) = serde_json::from_slice::<Json>(body) {
            return Self { code: j.code, message: shorten(&j.message), bucket: j.bucket_name };
        }
        let text = String::from_utf8_lossy(body);
        let tag = |name: &str| -> String {
            let open = format!("<{name}>");
            let close = format!("</{name}>");
            text.find(&open)
                .and_then(|start| {
                    let rest = &text[start + open.len()..];
                    rest.find(&close).map(|end| xml_unescape(rest[..end].trim()))
                })
                .unwrap_or_default()
        };
        Self { code: tag("Code"), message: shorten(&tag("Message")), bucket: tag("BucketName") }
    }
}

/// XML's five predefined entities (`RustFS` writes `unsupported config subsystem &apos;api&apos;`).
fn xml_unescape(text: &str) -> String {
    text.replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A JSON error without its message: serde's messages can quote values ("invalid type: string \"…\""),
/// and a decrypted payload or an IAM export holds secrets.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "JSON of an unexpected shape",
        serde_json::error::Category::Eof => "JSON cut short",
    };
    format!("{kind} at line {}, column {}", e.line(), e.column())
}

fn shorten(message: &str) -> String {
    const MAX: usize = 300;
    if message.chars().count() <= MAX {
        message.to_owned()
    } else {
        let mut s: String = message.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

/// The one mapping from a non-200 answer to an error kind (OpenDAL's `parse_error`).
///
/// Codes decide first, because MinIO sends both 403s (bad signature, not admin) and both 404s (missing
/// user, unknown route on a non-MinIO server) with the same status:
///
/// | answer | kind |
/// |---|---|
/// | `InvalidAccessKeyId`, `SignatureDoesNotMatch`, token and clock-skew codes | [`Error::BadCredentials`] |
/// | `AccessDenied` (or a bare 403) | [`Error::NotAdmin`] |
/// | 426, `XMinioAdminVersionMismatch`, `NotImplemented`, `MethodNotAllowed`, 405, 501 | [`Error::Unsupported`] |
/// | `NoSuchBucket` about a bucket the call did not name, `NoSuchKey`, a 404/400 without an error code | [`Error::Unsupported`] |
/// | any other 404 | [`Error::NotFound`] |
/// | everything else | [`Error::Server`] ([`Error::is_temporary`] for 5xx/429) |
pub(crate) fn from_response(site: CallSite<'_>, status: u16, body: &[u8]) -> Error {
    let ErrorBody { code, message, bucket } = ErrorBody::parse(body);
    let endpoint = site.endpoint.to_owned();
    let api = site.api;
    let named_bucket = site.bucket.is_some_and(|b| !b.is_empty() && (bucket.is_empty() || bucket == b));
    match (status, code.as_str()) {
        (
            _,
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "ExpiredToken"
            | "InvalidClientTokenId"
            | "XMinioInvalidTokenId"
            | "RequestTimeTooSkewed"
            | "AuthorizationHeaderMalformed",
        ) => Error::BadCredentials { endpoint, api, code, message },
        (_, "AccessDenied") | (403, "") => {
            Error::NotAdmin { endpoint, api, permission: site.permission, code, message }
        }
        (426 | 405 | 501, _) | (_, "XMinioAdminVersionMismatch" | "NotImplemented" | "MethodNotAllowed") => {
            Error::Unsupported { endpoint, api, status, code, message }
        }
        (_, "NoSuchBucket") if named_bucket => Error::NotFound { endpoint, api, code, message },
        (_, "NoSuchBucket" | "NoSuchKey") | (400 | 404, "") => {
            Error::Unsupported { endpoint, api, status, code, message }
        }
        (404, _) => Error::NotFound { endpoint, api, code, message },
        _ => Error::Server { endpoint, api, status, code, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: CallSite<'static> =
        CallSite { endpoint: "http://m:9000", api: "info", permission: "admin:ServerInfo", bucket: None };

    fn json(code: &str, message: &str) -> Vec<u8> {
        format!(
            r#"{{"Code":"{code}","Message":"{message}","Key":"","BucketName":"","Resource":"/minio/admin/v3/info","Region":"","RequestId":"1","HostId":"h"}}"#
        )
        .into_bytes()
    }

    #[test]
    fn codes_map_to_kinds() {
        let cases: &[(u16, Vec<u8>, &str)] = &[
            (403, json("InvalidAccessKeyId", "The Access Key Id you provided does not exist"), "BadCredentials"),
            (403, json("SignatureDoesNotMatch", "The request signature..."), "BadCredentials"),
            (403, json("AccessDenied", "Access Denied."), "NotAdmin"),
            (403, Vec::new(), "NotAdmin"),
            (426, json("XMinioAdminVersionMismatch", "This 'admin' API is not supported"), "Unsupported"),
            (400, json("XMinioAdminVersionMismatch", "old server"), "Unsupported"),
            (501, json("NotImplemented", "x"), "Unsupported"),
            (
                404,
                b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>minio</BucketName></Error>".to_vec(),
                "Unsupported",
            ),
            (404, Vec::new(), "Unsupported"),
            (400, b"Bad Request".to_vec(), "Unsupported"),
            (404, json("XMinioAdminNoSuchGroup", "The specified group does not exist."), "NotFound"),
            (400, json("XMinioAdminConfigBadJSON", "bad"), "Server"),
            (500, json("InternalError", "We encountered an internal error"), "Server"),
            (503, json("XMinioServerNotInitialized", "Server not initialized"), "Server"),
        ];
        for (status, body, want) in cases {
            let e = from_response(SITE, *status, body);
            let got = format!("{e:?}");
            assert!(got.starts_with(want), "{status} {:?} -> {got}", String::from_utf8_lossy(body));
            assert!(e.to_string().contains("http://m:9000"), "{e}");
        }
    }

    #[test]
    fn no_such_bucket_about_the_named_bucket_is_not_found() {
        let site = CallSite { bucket: Some("photos"), ..SITE };
        let body = br#"{"Code":"NoSuchBucket","Message":"The specified bucket does not exist","BucketName":"photos"}"#;
        assert!(matches!(from_response(site, 404, body), Error::NotFound { .. }));
        let xml = b"<Error><Code>NoSuchBucket</Code><BucketName>minio</BucketName></Error>";
        assert!(matches!(from_response(site, 404, xml), Error::Unsupported { .. }));
    }

    #[test]
    fn access_denied_names_the_missing_permission() {
        // RustFS 1.0.1 answers admin errors in XML, and neither it nor MinIO names the permission.
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"#;
        let site = CallSite { api: "export-iam", permission: permission("export-iam"), ..SITE };
        let e = from_response(site, 403, xml);
        assert!(matches!(e, Error::NotAdmin { permission: "admin:ExportIAM", .. }), "{e:?}");
        let line = e.to_string();
        assert!(line.contains("lacks the permission admin:ExportIAM") && !line.contains('\n'), "{line}");
        assert_eq!(permission("info"), "admin:ServerInfo");
        assert_eq!(permission("list-config-history-kv"), "admin:ConfigUpdate");
    }

    #[test]
    fn xml_messages_are_unescaped() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidRequest</Code><Message>unsupported config subsystem &apos;api&apos;</Message></Error>"#;
        let e = from_response(SITE, 400, xml);
        assert!(
            e.to_string().ends_with("HTTP 400 InvalidRequest: unsupported config subsystem 'api'"),
            "{e}"
        );
    }

    #[test]
    fn temporary_kinds() {
        assert!(from_response(SITE, 503, &json("SlowDown", "x")).is_temporary());
        assert!(from_response(SITE, 429, b"").is_temporary());
        assert!(!from_response(SITE, 400, &json("XMinioAdminConfigBadJSON", "x")).is_temporary());
        assert!(!from_response(SITE, 403, &json("AccessDenied", "x")).is_temporary());
    }

    #[test]
    fn json_errors_never_quote_values() {
        let e = serde_json::from_str::<u64>(r#""hunter2""#).unwrap_err();
        assert!(e.to_string().contains("hunter2"), "serde itself would quote it");
        let shown = json_error(&e);
        assert_eq!(shown, "JSON of an unexpected shape at line 1, column 9");
    }

    #[test]
    fn long_server_messages_are_shortened() {
        let long = "x".repeat(5000);
        let e = from_response(SITE, 500, &json("InternalError", &long));
        assert!(e.to_string().len() < 600);
    }
}
