//! The raw signed GET/PUT path for small objects (`Store::get_small` / `Store::put_small`), against both
//! real servers: bytes and headers as the SDK would see them, and every error classified the way the
//! SDK path classifies it (the copy loop decides on the kind: relist on 412, skip on 404, stop on bad keys).

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use s32s3_core::error::{S3ErrorKind, Side};
use s32s3_core::store::{ObjectAttrs, ReadOptions, Store};
use s32s3_core::testkit::{self, ServerKind, TestServer};
use s32s3_core::{Error, Secret};

fn kind(err: &Error) -> Option<S3ErrorKind> {
    err.s3_kind()
}

/// The error of a call that must fail (without printing a whole object body when it does not).
fn failure<T>(result: Result<T, Error>, what: &str) -> Error {
    match result {
        Ok(_) => panic!("{what}: it succeeded"),
        Err(err) => err,
    }
}

async fn small_object_path(server: &TestServer) {
    let s3 = server.client();
    let bucket = server.unique_bucket("small-raw");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
        )
        .send()
        .await
        .unwrap();
    let key = "dir/ünï code+%&=.txt";
    let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let put = s3
        .put_object()
        .bucket(&bucket)
        .key(key)
        .body(ByteStream::from(body.clone()))
        .content_type("text/plain")
        .cache_control("no-cache")
        .metadata("owner", "team a")
        .tagging("a=1&b=2")
        .send()
        .await
        .unwrap();
    let etag = put.e_tag().unwrap().to_owned();

    let store = Store::new(Side::Source, server.endpoint(), 3).unwrap();
    let size = body.len() as u64;
    let (head, got) = store.get_small(&bucket, key, ReadOptions::if_match(&etag), size).await.unwrap();
    assert_eq!(got.as_ref(), body.as_slice());
    assert_eq!(head.content.content_type.as_deref(), Some("text/plain"));
    assert_eq!(head.content.cache_control.as_deref(), Some("no-cache"));
    assert_eq!(head.metadata.get("owner").map(String::as_str), Some("team a"));
    assert_eq!(head.tag_count, 2);
    assert_eq!(head.etag.as_deref(), Some(etag.as_str()));

    // Changed since listed: 412, which makes the copy list the key again.
    let err = failure(
        store
            .get_small(&bucket, key, ReadOptions::if_match("\"00000000000000000000000000000000\""), size)
            .await,
        "If-Match with another ETag fails",
    );
    assert_eq!(kind(&err), Some(S3ErrorKind::PreconditionFailed), "{err}");
    // Gone since listed: "not found", which makes the copy skip it.
    let err = failure(
        store.get_small(&bucket, "no/such key", ReadOptions::if_match(&etag), size).await,
        "a missing key fails",
    );
    assert_eq!(kind(&err), Some(S3ErrorKind::NotFound), "{err}");
    assert!(err.to_string().contains("GetObject") && !err.to_string().contains('\n'), "{err}");

    let (stored, data, attrs) = writes_and_versioned_reads(server, &store, &bucket).await;

    let counted = store.requests();
    assert_eq!(counted.get("GetObject"), Some(&4), "{counted:?}");
    assert_eq!(counted.get("PutObject"), Some(&2), "{counted:?}");

    // A wrong secret key: bad credentials, not retried as temporary, and the secret is never printed.
    // (moto's server does not check signatures, so only SeaweedFS can show it.)
    if server.kind() != ServerKind::SeaweedFs {
        return;
    }
    let mut wrong = server.endpoint();
    wrong.secret_access_key = Secret::new("not-the-secret-key-0123456789");
    let store = Store::new(Side::Source, wrong, 3).unwrap();
    let err = failure(
        store.get_small(&bucket, key, ReadOptions::if_match(&etag), size).await,
        "a wrong secret key is refused",
    );
    assert_eq!(kind(&err), Some(S3ErrorKind::BadCredentials), "{err}");
    assert!(!err.to_string().contains("not-the-secret"), "{err}");
    assert_eq!(store.requests().get("GetObject"), Some(&1));
    let err = store.put_small(&bucket, stored, data, &attrs).await.unwrap_err();
    assert_eq!(kind(&err), Some(S3ErrorKind::BadCredentials), "{err}");
}

/// Writes: a new version with the headers given, readable through the SDK; and a restore's read of a
/// stored version by its id. What was written, and how.
async fn writes_and_versioned_reads(
    server: &TestServer,
    store: &Store,
    bucket: &str,
) -> (&'static str, bytes::Bytes, ObjectAttrs) {
    let s3 = server.client();
    let stored = "overflow/a b+c%d/é.bin";
    let data = bytes::Bytes::from_static(b"ciphertext stand-in");
    let attrs = ObjectAttrs::typed("application/octet-stream").with_metadata("mtime", "1700000000.5");
    let written = store.put_small(bucket, stored, data.clone(), &attrs).await.unwrap();
    let version = written.version_id.expect("a versioned bucket returns a version id");
    let back = s3.get_object().bucket(bucket).key(stored).version_id(&version).send().await.unwrap();
    assert_eq!(back.metadata().and_then(|m| m.get("mtime")).map(String::as_str), Some("1700000000.5"));
    assert_eq!(back.body.collect().await.unwrap().into_bytes(), data);
    // A restore reads a stored version by its id on the same path.
    let second = store.put_small(bucket, stored, bytes::Bytes::from_static(b"newer"), &attrs).await.unwrap();
    assert_ne!(second.version_id.as_deref(), Some(version.as_str()));
    let len = data.len() as u64;
    let (head, old) =
        store.get_small(bucket, stored, ReadOptions::version(Some(&version)), len).await.unwrap();
    assert_eq!((old, head.version_id), (data.clone(), Some(version.clone())));
    (stored, data, attrs)
}

#[tokio::test]
async fn small_objects_on_seaweedfs() {
    small_object_path(testkit::seaweedfs()).await;
}

#[tokio::test]
async fn small_objects_on_moto() {
    small_object_path(testkit::moto()).await;
}
