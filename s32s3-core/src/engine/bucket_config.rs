//! Per-bucket configuration read over S3, kept as the server's own documents so restore puts back exactly
//! what was read.

use std::collections::BTreeMap;

use futures::StreamExt as _;

use crate::error::S3ErrorKind;
use crate::error::{Error, Result};
use crate::store::s3::Store;

/// The bucket sub-resources backed up: (name in the manifest, query string, S3 operation).
pub const SUBRESOURCES: [(&str, &str, &str); 10] = [
    ("versioning", "versioning", "GetBucketVersioning"),
    ("object-lock", "object-lock", "GetObjectLockConfiguration"),
    ("lifecycle", "lifecycle", "GetBucketLifecycleConfiguration"),
    ("policy", "policy", "GetBucketPolicy"),
    ("tagging", "tagging", "GetBucketTagging"),
    ("cors", "cors", "GetBucketCors"),
    ("encryption", "encryption", "GetBucketEncryption"),
    ("notification", "notification", "GetBucketNotificationConfiguration"),
    ("replication", "replication", "GetBucketReplication"),
    ("website", "website", "GetBucketWebsite"),
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
        .map(|(name, query, operation)| async move {
            (name, store.raw_bucket_request("GET", operation, bucket, query, None).await)
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
