//! AWS Signature Version 4 (header-based, single-chunk payload), written on `hmac` + `sha2`.
//!
//! This is what madmin does for every admin call (spec §1.2): service `s3`, the real body SHA-256 in
//! `X-Amz-Content-Sha256`, signed headers `host;x-amz-content-sha256;x-amz-date` (plus
//! `x-amz-security-token` for STS credentials). The signer itself is general: it signs whatever headers it
//! is given, so the published S3 examples (with `Range`, `Date`, `x-amz-storage-class`) are its tests.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// `hex(sha256(""))`, the payload hash of every bodiless request.
pub const EMPTY_PAYLOAD_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The time source for `X-Amz-Date`; inject a fixed one in tests.
pub trait Clock: Send + Sync {
    /// The current UTC time.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that always says the same time.
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// A shared clock, as stored in the client's options.
pub type SharedClock = Arc<dyn Clock>;

/// An access key with its secret key and, for STS credentials, a session token.
///
/// `Debug` shows the access key only; the secret key and the token are zeroized on drop.
#[derive(Clone)]
pub struct Credentials {
    access_key: String,
    secret_key: Zeroizing<String>,
    session_token: Option<Zeroizing<String>>,
}

impl Credentials {
    /// Long-term credentials.
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self {
            access_key: access_key.into(),
            secret_key: Zeroizing::new(secret_key.into()),
            session_token: None,
        }
    }

    /// Adds an STS session token (sent and signed as `X-Amz-Security-Token`).
    #[must_use]
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(Zeroizing::new(token.into()));
        self
    }

    /// The access key id.
    #[must_use]
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret key: the signing secret, and the password of madmin's encrypted payloads.
    #[must_use]
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The STS session token, if any.
    #[must_use]
    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref().map(String::as_str)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One request to sign. Headers are given as sent; every one of them is signed.
#[derive(Clone, Copy, Debug)]
pub struct SigningRequest<'a> {
    /// `GET`, `PUT`, …
    pub method: &'a str,
    /// The path, not yet percent-encoded (`/test$file.text`); encoded once, S3-style, for signing.
    pub path: &'a str,
    /// Query parameters, not yet percent-encoded.
    pub query: &'a [(&'a str, &'a str)],
    /// The headers to sign, including `host`, `x-amz-date` and `x-amz-content-sha256`.
    pub headers: &'a [(&'a str, &'a str)],
    /// Lower-case hex SHA-256 of the body (the value of `x-amz-content-sha256`).
    pub payload_sha256: &'a str,
}

/// The signature and the intermediate strings (useful to compare with a server's error report).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The canonical request.
    pub canonical_request: String,
    /// The string to sign.
    pub string_to_sign: String,
    /// `host;x-amz-content-sha256;x-amz-date`-style list.
    pub signed_headers: String,
    /// The 64 hex digit signature.
    pub signature: String,
    /// The whole `Authorization` header value.
    pub authorization: String,
}

/// `YYYYMMDDTHHMMSSZ`, the `X-Amz-Date` format.
#[must_use]
pub fn amz_date(time: OffsetDateTime) -> String {
    let utc = time.to_offset(time::UtcOffset::UTC);
    utc.format(format_description!("[year][month][day]T[hour][minute][second]Z"))
        .unwrap_or_else(|_| unreachable_format())
}

#[cold]
fn unreachable_format() -> String {
    // Formatting a valid UTC date with a static numeric description cannot fail; keep a harmless value.
    String::from("19700101T000000Z")
}

/// Hex SHA-256 of `data`.
#[must_use]
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// SigV4 URI encoding: every byte except `A-Za-z0-9-_.~` (and `/` when `keep_slash`) becomes `%XX`.
#[must_use]
pub fn uri_encode(input: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The canonical query string: encoded pairs sorted by key, then value. Also the exact query to send, so
/// the server sees byte for byte what was signed.
#[must_use]
pub fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> =
        query.iter().map(|(k, v)| (uri_encode(k, false), uri_encode(v, false))).collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Signs `req` for `region`/`service` at `time`.
#[must_use]
pub fn sign(
    req: &SigningRequest<'_>,
    credentials: &Credentials,
    region: &str,
    service: &str,
    time: OffsetDateTime,
) -> Signature {
    let date_time = amz_date(time);
    let date = &date_time[..8];

    // Canonical headers: lower-case names, trimmed values with inner runs of spaces collapsed, sorted,
    // repeated names joined with commas.
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(name, value)| {
            (name.to_ascii_lowercase(), value.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut merged: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        match merged.last_mut() {
            Some((last, joined)) if *last == name => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => merged.push((name, value)),
        }
    }
    let canonical_headers = merged.iter().fold(String::new(), |mut acc, (n, v)| {
        let _ = writeln!(acc, "{n}:{v}");
        acc
    });
    let signed_headers = merged.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");

    let path = if req.path.is_empty() { "/" } else { req.path };
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode(path, true),
        canonical_query(req.query),
        canonical_headers,
        signed_headers,
        req.payload_sha256
    );

    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign =
        format!("AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()));

    let secret = Zeroizing::new(format!("AWS4{}", credentials.secret_key()));
    let k_date = Zeroizing::new(hmac(secret.as_bytes(), date.as_bytes()));
    let k_region = Zeroizing::new(hmac(&*k_date, region.as_bytes()));
    let k_service = Zeroizing::new(hmac(&*k_region, service.as_bytes()));
    let k_signing = Zeroizing::new(hmac(&*k_service, b"aws4_request"));
    let signature = hex::encode(hmac(&*k_signing, string_to_sign.as_bytes()));

    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key()
    );
    Signature { canonical_request, string_to_sign, signed_headers, signature, authorization }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    // The example credentials and time of the S3 documentation, "Signature Calculations for the
    // Authorization Header: Transferring Payload in a Single Chunk (AWS Signature Version 4)".
    fn example() -> (Credentials, OffsetDateTime) {
        (
            Credentials::new("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            datetime!(2013-05-24 00:00:00 UTC),
        )
    }

    #[test]
    fn aws_example_get_object_with_range() {
        let (creds, time) = example();
        let req = SigningRequest {
            method: "GET",
            path: "/test.txt",
            query: &[],
            headers: &[
                ("Host", "examplebucket.s3.amazonaws.com"),
                ("Range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_PAYLOAD_SHA256),
                ("x-amz-date", "20130524T000000Z"),
            ],
            payload_sha256: EMPTY_PAYLOAD_SHA256,
        };
        let sig = sign(&req, &creds, "us-east-1", "s3", time);
        assert_eq!(
            sig.canonical_request,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sig.string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
             7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        assert_eq!(sig.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
        assert_eq!(
            sig.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn aws_example_put_object() {
        let (creds, time) = example();
        let body = b"Welcome to Amazon S3.";
        let hash = sha256_hex(body);
        assert_eq!(hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
        let req = SigningRequest {
            method: "PUT",
            path: "/test$file.text",
            query: &[],
            headers: &[
                ("Host", "examplebucket.s3.amazonaws.com"),
                ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-date", "20130524T000000Z"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("x-amz-content-sha256", &hash),
            ],
            payload_sha256: &hash,
        };
        let sig = sign(&req, &creds, "us-east-1", "s3", time);
        assert!(sig.canonical_request.starts_with("PUT\n/test%24file.text\n\n"), "{}", sig.canonical_request);
        assert_eq!(sig.signed_headers, "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class");
        assert_eq!(sig.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    }

    #[test]
    fn aws_example_get_bucket_lifecycle_and_list_objects() {
        let (creds, time) = example();
        let headers = [
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-content-sha256", EMPTY_PAYLOAD_SHA256),
        ];
        let lifecycle = SigningRequest {
            method: "GET",
            path: "/",
            query: &[("lifecycle", "")],
            headers: &headers,
            payload_sha256: EMPTY_PAYLOAD_SHA256,
        };
        assert_eq!(
            sign(&lifecycle, &creds, "us-east-1", "s3", time).signature,
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
        let list = SigningRequest { query: &[("prefix", "J"), ("max-keys", "2")], ..lifecycle };
        assert_eq!(
            sign(&list, &creds, "us-east-1", "s3", time).signature,
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn query_and_path_encoding() {
        assert_eq!(canonical_query(&[("b", "x y"), ("a", "1/2+3"), ("a", "0")]), "a=0&a=1%2F2%2B3&b=x%20y");
        assert_eq!(uri_encode("/minio/admin/v3/a b~", true), "/minio/admin/v3/a%20b~");
        assert_eq!(uri_encode("é", false), "%C3%A9");
    }

    #[test]
    fn header_values_are_trimmed_and_repeats_joined() {
        let (creds, time) = example();
        let req = SigningRequest {
            method: "GET",
            path: "/",
            query: &[],
            headers: &[("X-A", "  one   two "), ("x-a", "three"), ("host", "h")],
            payload_sha256: EMPTY_PAYLOAD_SHA256,
        };
        let sig = sign(&req, &creds, "", "s3", time);
        assert!(sig.canonical_request.contains("\nhost:h\nx-a:one two,three\n"), "{}", sig.canonical_request);
        assert!(sig.authorization.contains("/20130524//s3/aws4_request"), "madmin's empty region scope");
    }

    #[test]
    fn debug_prints_no_secret() {
        let creds = Credentials::new("AKID", "very-secret-key").with_session_token("session-token-value");
        let shown = format!("{creds:?}");
        assert!(shown.contains("AKID"));
        assert!(!shown.contains("very-secret-key"));
        assert!(!shown.contains("session-token-value"));
    }
}
