//! The storage layer: the only code in s32s3 that speaks S3.
//!
//! Everything above this module (the backup format, the transfer engine, the operations) talks to a
//! [`Store`] in the terms defined here — [`ObjectInfo`], [`ObjectHead`], [`ObjectAttrs`], [`VersionItem`],
//! [`CompletedPart`], [`LifecycleRule`] — and never names aws-sdk-s3, aws-smithy or a signed HTTP request.
//!
//! - [`s3`]: the S3 implementation (aws-sdk-s3, plus raw SigV4 requests behind the same calls where the SDK
//!   cannot express a request or costs too much CPU for a small object).
//! - [`retry`]: the one retry policy. Every request of a [`Store`] goes through it exactly once: the SDK's
//!   own retries are off, and nothing above this layer retries a request (it may react to a final answer,
//!   such as an object that changed since it was listed).
//! - `limit`: the limits a run shares (transfers, memory, bandwidth).
//! - [`metrics`]: requests counted by operation, every attempt included.
//!
//! One implementation, one concrete type: the engine is not generic over a store trait. Every caller
//! would carry a type parameter (or box every request's future) for a second backend nobody needs yet;
//! when one comes, [`Store`]'s methods are the trait to extract.

pub mod body;
pub(crate) mod limit;
pub mod metrics;
pub mod retry;
pub mod s3;

use std::collections::BTreeMap;

pub use body::{BodyReceiver, BodySender, RangeReader, body_channel};
pub use metrics::RequestCounter;
pub use retry::RetryPolicy;
pub use s3::{LifecycleRule, Store};

/// One object of a listing (`ListObjectsV2`), keys decoded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectInfo {
    /// Key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag, as listed.
    pub etag: String,
    /// Last-modified, RFC 3339 as listed.
    pub last_modified: String,
    /// Storage class, if listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// The object's tags, when the listing carries them (MinIO's `ListObjectsV2` with `metadata=true`);
    /// `None`: the listing does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

/// An object's content headers, as read and as written back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentHeaders {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Expires`, as the server has it.
    pub expires: Option<String>,
}

/// What a `HEAD` or `GET` of an object says about it: the headers s32s3 records, reads or compares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectHead {
    /// The version this answer is about (`None`: unversioned, or the server's `null`).
    pub version_id: Option<String>,
    /// ETag.
    pub etag: Option<String>,
    /// `Content-Length` of this answer (for a ranged GET: of the range).
    pub content_length: Option<u64>,
    /// `Content-Range` of a ranged GET (`bytes 0-31/12345`).
    pub content_range: Option<String>,
    /// The content headers.
    pub content: ContentHeaders,
    /// User metadata (`x-amz-meta-*`), names lower-cased.
    pub metadata: BTreeMap<String, String>,
    /// `x-amz-tagging-count`.
    pub tag_count: i32,
    /// Object-lock mode (`GOVERNANCE`, `COMPLIANCE`).
    pub lock_mode: Option<String>,
    /// Object-lock retain-until date, RFC 3339.
    pub lock_retain_until: Option<String>,
    /// Legal hold (`ON`, `OFF`).
    pub legal_hold: Option<String>,
}

impl ObjectHead {
    /// The total size of the object a ranged GET read a part of (from `Content-Range`).
    #[must_use]
    pub fn total_size(&self) -> Option<u64> {
        self.content_range.as_deref()?.rsplit('/').next()?.parse().ok()
    }
}

/// The headers an object is written with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectAttrs {
    /// The content headers (`Expires` is sent only when it is an HTTP date).
    pub content: ContentHeaders,
    /// User metadata (`x-amz-meta-*`).
    pub metadata: BTreeMap<String, String>,
    /// Tags (sent as `x-amz-tagging`).
    pub tags: BTreeMap<String, String>,
    /// Object-lock retention: the mode and an RFC 3339 retain-until date.
    pub retention: Option<(String, String)>,
    /// Object-lock legal hold (`ON`, `OFF`).
    pub legal_hold: Option<String>,
    /// `Content-MD5` (base64), which S3 requires for writes into buckets with object lock.
    pub content_md5: Option<String>,
}

impl ObjectAttrs {
    /// Attributes with only a content type.
    #[must_use]
    pub fn typed(content_type: &str) -> Self {
        let content =
            ContentHeaders { content_type: Some(content_type.to_owned()), ..ContentHeaders::default() };
        Self { content, ..Self::default() }
    }

    /// The same, with one user metadata entry more.
    #[must_use]
    pub fn with_metadata(mut self, name: &str, value: &str) -> Self {
        self.metadata.insert(name.to_owned(), value.to_owned());
        self
    }
}

/// Which version of an object a read is about, and what it must still be.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOptions<'a> {
    /// A specific version (`None`: the current one).
    pub version_id: Option<&'a str>,
    /// `If-Match`: the read fails with "precondition failed" if the object's ETag is another.
    pub if_match: Option<&'a str>,
}

impl<'a> ReadOptions<'a> {
    /// The current version, whatever it is.
    #[must_use]
    pub fn current() -> Self {
        Self::default()
    }

    /// A given version (or the current one for `None`).
    #[must_use]
    pub fn version(version_id: Option<&'a str>) -> Self {
        Self { version_id, if_match: None }
    }

    /// The current version, as long as its ETag is `etag`.
    #[must_use]
    pub fn if_match(etag: &'a str) -> Self {
        Self { version_id: None, if_match: Some(etag) }
    }
}

/// What a write must find in place.
#[derive(Clone, Copy, Debug, Default)]
pub enum WriteCondition<'a> {
    /// Nothing: write whatever is there.
    #[default]
    None,
    /// Only if there is no object under the key (`If-None-Match: *`).
    Create,
    /// Only if the current object has this ETag (`If-Match`).
    Replace(&'a str),
}

/// What a write stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// The new version's id (`None` in a bucket without versioning).
    pub version_id: Option<String>,
    /// The new object's ETag.
    pub etag: Option<String>,
    /// The Object Lock retain-until date (RFC 3339) the store set on it, when it retains what it writes
    /// ([`s3::Store::with_retention`]).
    pub retain_until: Option<String>,
}

/// One uploaded part of a multipart upload, for its completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedPart {
    /// Part number, from 1.
    pub number: i32,
    /// The ETag the upload of the part answered with.
    pub etag: Option<String>,
}

/// An incomplete multipart upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    /// The key it uploads.
    pub key: String,
    /// Its id.
    pub upload_id: String,
}

/// One entry of a version listing.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionItem {
    /// The key (URL-decoded).
    pub key: String,
    /// The version id (`None` for the server's `null` version).
    pub version_id: Option<String>,
    /// A delete marker rather than a version.
    pub delete_marker: bool,
    /// When it was written, at the precision the server lists.
    pub last_modified: time::OffsetDateTime,
    /// Size in bytes (0 for delete markers).
    pub size: u64,
    /// The newest entry of its key.
    pub is_latest: bool,
    /// ETag, as listed (empty for delete markers).
    #[serde(default)]
    pub etag: String,
}
