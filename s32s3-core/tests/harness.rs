//! Proves the test harness: real SeaweedFS and moto servers, driven through aws-sdk-s3 with the settings
//! s32s3 uses (path-style, custom endpoint, static keys, checksums only when required).

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, Tag, Tagging, VersioningConfiguration,
};
use s32s3_core::testkit::{self, TestServer};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// A new bucket with versioning enabled.
async fn versioned_bucket(server: &TestServer, prefix: &str) -> String {
    let s3 = server.client();
    let bucket = server.unique_bucket(prefix);
    s3.create_bucket().bucket(&bucket).send().await.expect("create bucket");
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
        )
        .send()
        .await
        .expect("enable versioning");
    bucket
}

async fn versions_metadata_tags(server: &TestServer) {
    let s3 = server.client();
    let bucket = versioned_bucket(server, "smoke-versions").await;
    let status = s3.get_bucket_versioning().bucket(&bucket).send().await.expect("get versioning");
    assert_eq!(status.status(), Some(&BucketVersioningStatus::Enabled));

    let key = "dir/ünïcode key+%.txt";
    let bodies = [pattern(1000, 1), pattern(2000, 2)];
    let mut version_ids = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let out = s3
            .put_object()
            .bucket(&bucket)
            .key(key)
            .body(ByteStream::from(body.clone()))
            .content_type("text/plain")
            .metadata("owner", format!("writer-{i}"))
            .tagging(format!("generation={i}&team=storage"))
            .send()
            .await
            .expect("put object");
        version_ids.push(out.version_id().expect("versioned put returns a version id").to_owned());
    }
    assert_ne!(version_ids[0], version_ids[1]);

    let listing = s3.list_object_versions().bucket(&bucket).send().await.expect("list versions");
    let mut listed: Vec<(String, bool)> = listing
        .versions()
        .iter()
        .map(|v| (v.version_id().unwrap().to_owned(), v.is_latest().unwrap_or(false)))
        .collect();
    listed.sort();
    let mut expected = vec![(version_ids[0].clone(), false), (version_ids[1].clone(), true)];
    expected.sort();
    assert_eq!(listed, expected);

    for (i, (version_id, body)) in version_ids.iter().zip(&bodies).enumerate() {
        let got = s3.get_object().bucket(&bucket).key(key).version_id(version_id).send().await.expect("get");
        assert_eq!(got.content_type(), Some("text/plain"));
        assert_eq!(
            got.metadata().and_then(|m| m.get("owner")).map(String::as_str),
            Some(&*format!("writer-{i}"))
        );
        let data = got.body.collect().await.expect("read body").into_bytes();
        assert_eq!(&data[..], &body[..], "version {i} byte-exact");

        let tags = s3
            .get_object_tagging()
            .bucket(&bucket)
            .key(key)
            .version_id(version_id)
            .send()
            .await
            .expect("get tags");
        let mut tags: Vec<(String, String)> =
            tags.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
        tags.sort();
        assert_eq!(
            tags,
            vec![("generation".into(), i.to_string()), ("team".into(), "storage".into())],
            "tags of version {i}"
        );
    }

    // Tags can also be replaced afterwards (restore sets them this way).
    s3.put_object_tagging()
        .bucket(&bucket)
        .key(key)
        .tagging(
            Tagging::builder().tag_set(Tag::builder().key("k").value("v").build().unwrap()).build().unwrap(),
        )
        .send()
        .await
        .expect("put tags");
}

async fn multipart_12_mib(server: &TestServer) {
    let s3 = server.client();
    let bucket = server.unique_bucket("smoke-multipart");
    s3.create_bucket().bucket(&bucket).send().await.expect("create bucket");
    let key = "large/object.bin";
    let body = pattern(12 << 20, 7);
    let upload = s3.create_multipart_upload().bucket(&bucket).key(key).send().await.expect("initiate");
    let upload_id = upload.upload_id().expect("upload id");
    let part_size = 5 << 20;
    let mut parts = Vec::new();
    for (i, chunk) in body.chunks(part_size).enumerate() {
        let part_number = i32::try_from(i + 1).unwrap();
        let out = s3
            .upload_part()
            .bucket(&bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .expect("upload part");
        parts.push(CompletedPart::builder().part_number(part_number).e_tag(out.e_tag().unwrap()).build());
    }
    assert_eq!(parts.len(), 3);
    s3.complete_multipart_upload()
        .bucket(&bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .expect("complete");
    let head = s3.head_object().bucket(&bucket).key(key).send().await.expect("head");
    assert_eq!(head.content_length(), Some(12 << 20));
    let got = s3.get_object().bucket(&bucket).key(key).send().await.expect("get").body.collect().await;
    assert!(got.expect("read body").into_bytes() == body, "multipart object byte-exact");
    // A ranged read across the part boundary.
    let range = s3
        .get_object()
        .bucket(&bucket)
        .key(key)
        .range(format!("bytes={}-{}", part_size - 10, part_size + 9))
        .send()
        .await
        .expect("ranged get");
    let data = range.body.collect().await.unwrap().into_bytes();
    assert_eq!(&data[..], &body[part_size - 10..part_size + 10]);
}

#[tokio::test]
async fn seaweedfs_versions_metadata_tags() {
    versions_metadata_tags(testkit::seaweedfs()).await;
}

#[tokio::test]
async fn moto_versions_metadata_tags() {
    versions_metadata_tags(testkit::moto()).await;
}

#[tokio::test]
async fn seaweedfs_multipart() {
    multipart_12_mib(testkit::seaweedfs()).await;
}

#[tokio::test]
async fn moto_multipart() {
    multipart_12_mib(testkit::moto()).await;
}

/// `Store::copy_in_place` (how a multipart backup gets rclone's `md5chksum` after its upload) on a real
/// server: one `CopyObject`, and the multipart copy used above 5 GiB (forced here with a limit of 0);
/// both write a new version with the same bytes and the new metadata, and `delete_version` removes the first.
async fn copy_in_place(server: &TestServer) {
    use s32s3_core::store::{ObjectAttrs, ReadOptions, s3::Store};
    let s3 = server.client();
    let bucket = versioned_bucket(server, "smoke-copy").await;
    let store = Store::new(s32s3_core::error::Side::Destination, server.endpoint(), 3).unwrap();
    let body = pattern((11 << 20) + 5, 9);
    for (key, single_max) in [("dir/one copy", s32s3_core::store::s3::COPY_OBJECT_MAX), ("dir/in parts", 0)] {
        let put = s3
            .put_object()
            .bucket(&bucket)
            .key(key)
            .metadata("mtime", "1")
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .expect("put");
        let first = put.version_id().expect("a version id").to_owned();
        let attrs = ObjectAttrs::typed("application/octet-stream")
            .with_metadata("mtime", "1")
            .with_metadata("md5chksum", "abc=");
        let size = body.len() as u64;
        let copied =
            store.copy_in_place(&bucket, key, &first, size, &attrs, 5 << 20, single_max).await.unwrap();
        let second = copied.version_id.expect("the copy is a new version");
        assert_ne!(second, first, "{key}");
        let head = store.head(&bucket, key, ReadOptions::current()).await.unwrap();
        assert_eq!(head.version_id.as_deref(), Some(second.as_str()), "{key}");
        assert_eq!(head.metadata.get("md5chksum").map(String::as_str), Some("abc="), "{key}");
        assert_eq!(head.metadata.get("mtime").map(String::as_str), Some("1"), "{key}");
        let got = s3.get_object().bucket(&bucket).key(key).send().await.expect("get").body.collect().await;
        assert!(got.unwrap().into_bytes() == body, "{key}: the copy is byte-exact");
        store.delete_version(&bucket, key, &first).await.unwrap();
        let versions = s3.list_object_versions().bucket(&bucket).prefix(key).send().await.unwrap();
        let ids: Vec<&str> = versions.versions().iter().filter_map(|v| v.version_id()).collect();
        assert_eq!(ids, [second.as_str()], "{key}: only the copy is left");
    }
}

#[tokio::test]
async fn seaweedfs_copy_in_place() {
    copy_in_place(testkit::seaweedfs()).await;
}

#[tokio::test]
async fn moto_copy_in_place() {
    copy_in_place(testkit::moto()).await;
}
