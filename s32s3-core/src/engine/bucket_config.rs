//! Per-bucket configuration read over S3, kept as the server's own documents so restore puts back exactly
//! what was read.

use std::collections::BTreeMap;

use futures::StreamExt as _;

use crate::error::S3ErrorKind;
use crate::error::{Error, Result};
use crate::store::s3::Store;

/// One bucket sub-resource backed up and restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subresource {
    /// Its name in the manifest, which is also its query string (`?lifecycle`).
    pub name: &'static str,
    /// The S3 operation that reads it.
    pub get: &'static str,
    /// The S3 operation that writes it.
    pub put: &'static str,
    /// Restored after the data rather than before it.
    pub after_data: bool,
}

const fn sub(name: &'static str, get: &'static str, put: &'static str, after_data: bool) -> Subresource {
    Subresource { name, get, put, after_data }
}

/// Every sub-resource, in the order a restore puts them back. Before the data: what the data needs
/// (versioning, object lock, default encryption) and what cannot act on it. After the data: a restored
/// `Deny` policy must not block the restore's own writes, a live webhook must not receive one event per
/// restored object, a lifecycle rule must not act on a half-restored bucket, and replication must not copy
/// the restore elsewhere while it runs.
pub const SUBRESOURCES: [Subresource; 10] = [
    sub("versioning", "GetBucketVersioning", "PutBucketVersioning", false),
    sub("object-lock", "GetObjectLockConfiguration", "PutObjectLockConfiguration", false),
    sub("tagging", "GetBucketTagging", "PutBucketTagging", false),
    sub("cors", "GetBucketCors", "PutBucketCors", false),
    sub("encryption", "GetBucketEncryption", "PutBucketEncryption", false),
    sub("website", "GetBucketWebsite", "PutBucketWebsite", false),
    sub("policy", "GetBucketPolicy", "PutBucketPolicy", true),
    sub("lifecycle", "GetBucketLifecycleConfiguration", "PutBucketLifecycleConfiguration", true),
    sub("notification", "GetBucketNotificationConfiguration", "PutBucketNotificationConfiguration", true),
    sub("replication", "GetBucketReplication", "PutBucketReplication", true),
];

/// A bucket's configuration documents and the ones the server would not give.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketConfig {
    /// Document per sub-resource that exists.
    pub documents: BTreeMap<String, String>,
    /// Sub-resources that could not be read (not implemented, permission denied), with the reason.
    pub errors: BTreeMap<String, String>,
}

/// Reads every sub-resource of `bucket`, `concurrency` at a time. Missing configurations are simply absent.
///
/// # Errors
/// Bad credentials or an unreachable endpoint (anything else is recorded per sub-resource).
pub async fn read(store: &Store, bucket: &str, concurrency: usize) -> Result<BucketConfig> {
    let results: Vec<_> = futures::stream::iter(SUBRESOURCES)
        .map(|sub| async move {
            (sub.name, store.raw_bucket_request("GET", sub.get, bucket, sub.name, None).await)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut config = BucketConfig::default();
    for (name, result) in results {
        match result {
            Ok(Some(body)) => {
                let text = String::from_utf8(body).map_err(|_| {
                    Error::corrupt(format!("s3://{bucket}?{name}"), "the document is not UTF-8")
                })?;
                config.documents.insert(name.to_owned(), text);
            }
            Ok(None) => {}
            Err(Error::S3(e)) if matches!(e.kind, S3ErrorKind::BadCredentials | S3ErrorKind::Unreachable) => {
                return Err(Error::S3(e));
            }
            Err(e) => {
                config.errors.insert(name.to_owned(), e.to_string());
            }
        }
    }
    Ok(config)
}
