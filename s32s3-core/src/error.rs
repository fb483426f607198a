//! The engine's error type, and the one place where S3 failures are classified.

use std::fmt;

/// Which store an error happened on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The store being backed up (and restored into).
    Source,
    /// The store holding the backups.
    Destination,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Source => "source",
            Self::Destination => "destination",
        })
    }
}

/// What kind of S3 failure happened; decides retries and what the user is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum S3ErrorKind {
    /// 404: no such bucket, key or configuration.
    NotFound,
    /// The access key is unknown or the signature does not match the secret key.
    BadCredentials,
    /// 403 for a valid key: the user lacks a permission.
    PermissionDenied,
    /// 412: a condition (`If-Match`, `If-None-Match`) did not hold.
    PreconditionFailed,
    /// 429, 5xx, timeouts, resets: worth retrying.
    Temporary,
    /// The endpoint could not be reached at all (DNS, refused connection, TLS).
    Unreachable,
    /// 501 or an equivalent: the server does not implement this call.
    NotImplemented,
    /// Anything else (a 400 the request cannot recover from, a malformed response).
    Other,
}

/// A failed S3 request, with where it happened.
#[derive(Debug, Clone)]
pub struct S3Error {
    /// Source or destination.
    pub side: Side,
    /// The S3 operation, e.g. `GetObject`.
    pub operation: &'static str,
    /// The bucket, when the operation has one.
    pub bucket: Option<String>,
    /// The key, when the operation has one.
    pub key: Option<String>,
    /// The classification.
    pub kind: S3ErrorKind,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// The S3 error code (`NoSuchKey`, `AccessDenied`, …), when the response carried one.
    pub code: Option<String>,
    /// A human-readable description from the server or the transport.
    pub message: String,
}

impl S3Error {
    /// A failure that no server answer describes (a timeout, a broken body, a malformed answer): no status,
    /// no code.
    #[must_use]
    pub fn local(
        side: Side,
        operation: &'static str,
        bucket: &str,
        key: &str,
        kind: S3ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            side,
            operation,
            bucket: Some(bucket.to_owned()),
            key: (!key.is_empty()).then(|| key.to_owned()),
            kind,
            status: None,
            code: None,
            message: message.into(),
        }
    }

    /// Whether retrying the same request may succeed.
    #[must_use]
    pub fn is_temporary(&self) -> bool {
        self.kind == S3ErrorKind::Temporary
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.side, self.operation)?;
        match (&self.bucket, &self.key) {
            (Some(b), Some(k)) => write!(f, " s3://{b}/{k}")?,
            (Some(b), None) => write!(f, " s3://{b}")?,
            _ => {}
        }
        let what = match self.kind {
            S3ErrorKind::NotFound => "not found",
            S3ErrorKind::BadCredentials => "bad credentials (check the access key id and secret access key)",
            S3ErrorKind::PermissionDenied => "permission denied",
            S3ErrorKind::PreconditionFailed => "precondition failed",
            S3ErrorKind::Temporary => "temporary failure",
            S3ErrorKind::Unreachable => "endpoint unreachable",
            S3ErrorKind::NotImplemented => "not implemented by this server",
            S3ErrorKind::Other => "failed",
        };
        write!(f, ": {what}")?;
        let detail = match (&self.status, &self.code) {
            (Some(s), Some(c)) => format!("HTTP {s} {c}"),
            (Some(s), None) => format!("HTTP {s}"),
            (None, Some(c)) => c.clone(),
            (None, None) => String::new(),
        };
        match (detail.is_empty(), self.message.is_empty()) {
            (false, false) => write!(f, " ({detail}: {})", self.message),
            (false, true) => write!(f, " ({detail})"),
            (true, false) => write!(f, " ({})", self.message),
            (true, true) => Ok(()),
        }
    }
}

impl std::error::Error for S3Error {}

/// What went wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is missing or invalid; `field` names it as the user wrote it.
    #[error("invalid configuration: {field}: {reason}")]
    Config {
        /// The configuration key, e.g. `source.endpoint`.
        field: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The crypt password does not match the one the backup was written with.
    #[error("wrong password: {detail}")]
    WrongPassword {
        /// Where the mismatch was detected.
        detail: String,
    },
    /// An S3 request failed.
    #[error(transparent)]
    S3(#[from] S3Error),
    /// Encrypting or decrypting an object or name failed.
    #[error("{what}: {source}")]
    Crypt {
        /// The object or name concerned.
        what: String,
        /// The crypt error.
        source: s32s3_crypt::Error,
    },
    /// The MinIO admin API failed.
    #[error("MinIO admin: {0}")]
    Admin(#[from] s32s3_minio_admin::Error),
    /// Another run holds the lease on the backup bucket.
    #[error("{0}")]
    Locked(String),
    /// A manifest or backup metadata object is unreadable.
    #[error("backup metadata {name}: {reason}")]
    Corrupt {
        /// The object concerned.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A source object changed while it was being read, on every attempt.
    #[error("source s3://{bucket}/{key} changed while it was being read ({attempts} attempts)")]
    ObjectChanged {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// How often it was tried.
        attempts: u32,
    },
    /// A source object's content did not match what the listing or manifest said.
    #[error("s3://{bucket}/{key}: {reason}")]
    Integrity {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// What did not match.
        reason: String,
    },
    /// Local I/O (temporary files) failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No snapshot matches what was asked (`--at` before the first backup, an unknown id, an empty
    /// backup location).
    #[error("{0}")]
    NoSnapshot(String),
    /// The run was cancelled (Ctrl-C, SIGTERM).
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// An [`Error::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }

    /// An [`Error::Corrupt`].
    pub fn corrupt(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Corrupt { name: name.into(), reason: reason.into() }
    }

    /// Whether retrying may succeed (temporary S3 failures).
    #[must_use]
    pub fn is_temporary(&self) -> bool {
        matches!(self, Self::S3(e) if e.is_temporary())
    }

    /// The S3 error kind, when this is an S3 error.
    #[must_use]
    pub fn s3_kind(&self) -> Option<S3ErrorKind> {
        match self {
            Self::S3(e) => Some(e.kind),
            _ => None,
        }
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Classifies an S3 status and error code (OpenDAL's `parse_error`, for S3).
#[must_use]
pub fn classify(status: Option<u16>, code: Option<&str>) -> S3ErrorKind {
    match code {
        Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken") => {
            return S3ErrorKind::BadCredentials;
        }
        Some(
            "NoSuchBucket"
            | "NoSuchKey"
            | "NoSuchVersion"
            | "NoSuchUpload"
            | "NoSuchLifecycleConfiguration"
            | "NoSuchBucketPolicy"
            | "NoSuchTagSet"
            | "NoSuchCORSConfiguration"
            | "NoSuchWebsiteConfiguration"
            | "ServerSideEncryptionConfigurationNotFoundError"
            | "ReplicationConfigurationNotFoundError"
            | "ObjectLockConfigurationNotFoundError"
            | "NoSuchObjectLockConfiguration"
            | "NotFound",
        ) => return S3ErrorKind::NotFound,
        Some("PreconditionFailed") => return S3ErrorKind::PreconditionFailed,
        Some("NotImplemented" | "XNotImplemented") => return S3ErrorKind::NotImplemented,
        Some(
            "SlowDown"
            | "InternalError"
            | "ServiceUnavailable"
            | "RequestTimeout"
            | "RequestTimeTooSkewed"
            | "OperationAborted"
            | "XMinioServerNotInitialized",
        ) => return S3ErrorKind::Temporary,
        _ => {}
    }
    match status {
        Some(404) => S3ErrorKind::NotFound,
        Some(403) => S3ErrorKind::PermissionDenied,
        Some(412) => S3ErrorKind::PreconditionFailed,
        Some(501) => S3ErrorKind::NotImplemented,
        Some(408 | 429) => S3ErrorKind::Temporary,
        Some(s) if s >= 500 => S3ErrorKind::Temporary,
        _ => S3ErrorKind::Other,
    }
}

/// The error and its sources on one line (`a: b: c`), without repeating identical messages.
pub(crate) fn source_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let cases = [
            (Some(404), Some("NoSuchKey"), S3ErrorKind::NotFound),
            (Some(404), None, S3ErrorKind::NotFound),
            (Some(403), Some("InvalidAccessKeyId"), S3ErrorKind::BadCredentials),
            (Some(403), Some("SignatureDoesNotMatch"), S3ErrorKind::BadCredentials),
            (Some(403), Some("AccessDenied"), S3ErrorKind::PermissionDenied),
            (Some(412), Some("PreconditionFailed"), S3ErrorKind::PreconditionFailed),
            (Some(503), Some("SlowDown"), S3ErrorKind::Temporary),
            (Some(500), None, S3ErrorKind::Temporary),
            (Some(429), None, S3ErrorKind::Temporary),
            (Some(501), Some("NotImplemented"), S3ErrorKind::NotImplemented),
            (Some(400), Some("InvalidArgument"), S3ErrorKind::Other),
            (Some(400), Some("RequestTimeout"), S3ErrorKind::Temporary),
        ];
        for (status, code, want) in cases {
            assert_eq!(classify(status, code), want, "{status:?} {code:?}");
        }
    }

    #[test]
    fn display_is_one_line_with_location() {
        let e = S3Error {
            side: Side::Destination,
            operation: "PutObject",
            bucket: Some("backups".into()),
            key: Some("a/b".into()),
            kind: S3ErrorKind::PermissionDenied,
            status: Some(403),
            code: Some("AccessDenied".into()),
            message: "Access Denied.".into(),
        };
        assert_eq!(
            e.to_string(),
            "destination PutObject s3://backups/a/b: permission denied (HTTP 403 AccessDenied: Access Denied.)"
        );
    }
}
