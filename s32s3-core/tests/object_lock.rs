//! `object_lock` against moto's server, which enforces S3 Object Lock: the backup bucket s32s3 creates has
//! Object Lock; every version a run writes there (but the lease) is retained past its snapshots' window, and
//! the destination's own credential cannot delete one; an incremental run a window later extends what its
//! snapshot still names, once; a restore works; an existing bucket without Object Lock is refused before
//! anything is written. Time moves with an injected clock (moto takes retain-until dates as given).

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use s32s3_core::progress::NoProgress;
use s32s3_core::restore::{BucketMapping, Restore};
use s32s3_core::testkit::{self, TestServer};
use s32s3_core::{Backup, Clock, Error, ObjectLock, Provider, RunConfig, Secret, TransferOptions};
use time::{Duration, OffsetDateTime};
use tokio_util::sync::CancellationToken;

const DAYS: u32 = 2;

fn config(source: &TestServer, backup_bucket: &str, day: i64) -> RunConfig {
    let mut transfer = TransferOptions::default();
    // Two objects go up in parts (and get rclone's md5chksum through a copy in place).
    (transfer.multipart_threshold, transfer.part_size) = (5 << 20, 5 << 20);
    let mut config = RunConfig::new(source.endpoint(), testkit::moto().endpoint(), Secret::new("lock test"))
        .with_location(backup_bucket, "")
        .with_expiration_days(DAYS)
        .with_object_lock(ObjectLock::Governance)
        .with_transfer(transfer);
    config.source_provider = Provider::Other;
    config.clock = Clock::offset(Duration::days(day));
    config
}

async fn put(server: &TestServer, bucket: &str, key: &str, body: Vec<u8>) {
    server.client().put_object().bucket(bucket).key(key).body(ByteStream::from(body)).send().await.unwrap();
}

async fn backup(config: RunConfig, bucket: &str) -> s32s3_core::BackupSummary {
    let run = Backup::new(config).with_buckets(vec![bucket.to_owned()]);
    let summary = Box::pin(run.run(Arc::new(NoProgress), CancellationToken::new())).await.unwrap();
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    summary
}

/// Every version in the backup bucket (key, version id) but the lease's, and how many delete markers.
async fn versions(bucket: &str) -> (Vec<(String, String)>, usize) {
    let out =
        testkit::moto().client().list_object_versions().bucket(bucket).max_keys(1000).send().await.unwrap();
    assert_ne!(out.is_truncated(), Some(true));
    let versions = out
        .versions()
        .iter()
        .map(|v| (v.key().unwrap().to_owned(), v.version_id().unwrap().to_owned()))
        .filter(|(k, _)| !k.ends_with(".s32s3/lock"))
        .collect();
    (versions, out.delete_markers().len())
}

/// The retention of one version, from a HEAD (moto answers `GetObjectRetention` with a 500).
async fn retention(bucket: &str, key: &str, version: &str) -> (Option<String>, Option<OffsetDateTime>) {
    let head = testkit::moto()
        .client()
        .head_object()
        .bucket(bucket)
        .key(key)
        .version_id(version)
        .send()
        .await
        .unwrap();
    let until = head
        .object_lock_retain_until_date()
        .map(|d| OffsetDateTime::from_unix_timestamp_nanos(d.as_nanos()).expect("a date in range"));
    (head.object_lock_mode().map(|m| m.as_str().to_owned()), until)
}

/// The newest snapshot's entries.
async fn newest_entries(backup_bucket: &str) -> Vec<s32s3_core::format::manifest::Entry> {
    let store = s32s3_core::store::s3::Store::new(
        s32s3_core::error::Side::Destination,
        testkit::moto().endpoint(),
        3,
    )
    .unwrap();
    let cipher = s32s3_core::derive_cipher(&Secret::new("lock test"), &Secret::default()).await.unwrap();
    let layout = s32s3_core::format::layout::Layout::new(&cipher, "").unwrap();
    let snapshots = s32s3_core::format::snapshots::list(&store, backup_bucket, &layout).await.unwrap();
    let newest = snapshots.iter().rev().find(|s| !s.checkpoint).expect("a snapshot exists");
    let dir = tempfile::tempdir().unwrap();
    let reader = s32s3_core::format::snapshots::open(&store, backup_bucket, &newest.key, &cipher, dir.path())
        .await
        .unwrap();
    reader.map(Result::unwrap).collect()
}

/// Each entry's stored version is retained in governance mode for two more windows after `day`, and the
/// entry records exactly that date.
async fn retained_past(
    backup_bucket: &str,
    entries: &[s32s3_core::format::manifest::Entry],
    day: OffsetDateTime,
) {
    for entry in entries {
        let (mode, until) =
            retention(backup_bucket, &entry.stored_key, entry.version_id.as_deref().unwrap()).await;
        assert_eq!(mode.as_deref(), Some("GOVERNANCE"));
        let until = until.unwrap();
        assert!(until > day + Duration::days(2 * i64::from(DAYS)), "{}: retained until {until}", entry.key);
        assert_eq!(entry.retained_until.as_deref(), Some(s32s3_core::clock::format_rfc3339(until).as_str()));
    }
}

fn requests(summary: &s32s3_core::BackupSummary, operation: &str) -> u64 {
    summary.requests.destination.get(operation).copied().unwrap_or(0)
}

/// A restore of the newest snapshot into a new bucket brings back every object of `want`.
async fn restores_exactly(
    source: &'static TestServer,
    backup_bucket: &str,
    bucket: &str,
    want: &BTreeMap<String, Vec<u8>>,
) {
    let target = source.unique_bucket("lock-restored");
    let mut restore_config = config(source, backup_bucket, 3);
    restore_config.source = source.endpoint();
    let restored = Restore::new(restore_config)
        .with_buckets(vec![BucketMapping { from: bucket.to_owned(), to: target.clone() }])
        .with_iam(false)
        .run(Arc::new(NoProgress), CancellationToken::new())
        .await
        .unwrap();
    assert!(restored.failed.is_empty(), "{:?}", restored.failed);
    for (key, body) in want {
        let got = source.client().get_object().bucket(&target).key(key).send().await.unwrap();
        assert!(got.body.collect().await.unwrap().into_bytes() == *body, "{key}");
    }
}

#[tokio::test]
async fn every_version_is_retained_past_its_window_and_cannot_be_deleted() {
    let source = testkit::seaweedfs();
    let bucket = source.unique_bucket("lock-src");
    source.client().create_bucket().bucket(&bucket).send().await.unwrap();
    let mut want = BTreeMap::new();
    for (key, body) in [
        ("a.txt", b"alpha".to_vec()),
        ("dir/b.bin", vec![7u8; 100_000]),
        ("large/parts", (0..(11u32 << 20)).map(|i| (i % 251) as u8).collect()),
    ] {
        put(source, &bucket, key, body.clone()).await;
        want.insert(key.to_owned(), body);
    }
    let backup_bucket = testkit::moto().unique_bucket("bk-lock");
    let moto = testkit::moto().client();

    // Day 0: s32s3 creates the bucket, with Object Lock.
    let first = backup(config(source, &backup_bucket, 0), &bucket).await;
    let lock = moto.get_object_lock_configuration().bucket(&backup_bucket).send().await.unwrap();
    assert_eq!(
        lock.object_lock_configuration()
            .and_then(|c| c.object_lock_enabled())
            .map(aws_sdk_s3::types::ObjectLockEnabled::as_str),
        Some("Enabled")
    );
    // Every version written (data, manifest, run record, config.json) is retained, in governance mode,
    // past the window of the snapshot that names it: three windows from the run.
    let now = OffsetDateTime::now_utc();
    let (written, _) = versions(&backup_bucket).await;
    assert!(written.len() >= 3 + 3, "{written:?}");
    for (key, version) in &written {
        let (mode, until) = retention(&backup_bucket, key, version).await;
        assert_eq!(mode.as_deref(), Some("GOVERNANCE"), "{key}");
        let until = until.unwrap_or_else(|| panic!("{key} has no retain-until date"));
        assert!(until > now + Duration::days(2 * i64::from(DAYS)), "{key}: retained until {until}");
    }
    // One PutObjectRetention per version written, but for the upload in parts, whose own version is
    // replaced by its copy with the MD5 (and deleted: nothing retained it).
    assert_eq!(requests(&first, "CopyObject"), 1);
    assert_eq!(requests(&first, "PutObjectRetention") as usize, written.len(), "{:?}", first.requests);
    assert_eq!(written.iter().filter(|(k, _)| !k.contains(".s32s3/")).count(), 3, "{written:?}");

    // The destination's own credential cannot delete a version a snapshot needs.
    let (key, version) = written.iter().find(|(k, _)| !k.contains(".s32s3/")).unwrap();
    let refused = moto.delete_object().bucket(&backup_bucket).key(key).version_id(version).send().await;
    let err = refused.expect_err("a retained version was deleted");
    let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&err).unwrap_or_default().to_owned();
    assert_eq!(code, "AccessDenied", "{err:?}");

    // Day 3 (more than a window later): one object changed; what the snapshot still names gets its
    // retention extended, each version once; the changed object is written retained.
    put(source, &bucket, "a.txt", b"alpha, changed".to_vec()).await;
    want.insert("a.txt".into(), b"alpha, changed".to_vec());
    let second = backup(config(source, &backup_bucket, 3), &bucket).await;
    assert_eq!((second.counts.changed.objects, second.counts.unchanged.objects), (1, 2));
    let day3 = OffsetDateTime::now_utc() + Duration::days(3);
    let entries = newest_entries(&backup_bucket).await;
    retained_past(&backup_bucket, &entries, day3).await;
    // Retention requests: each version the run wrote, the 2 unchanged data versions extended, and each of
    // the location's own objects from day 0 still current (config.json, the manifest): all short of two
    // windows now.
    let (after_second, _) = versions(&backup_bucket).await;
    let written_second = after_second.iter().filter(|v| !written.contains(v)).count();
    let current = moto.list_objects_v2().bucket(&backup_bucket).prefix(".s32s3/").send().await.unwrap();
    let current: Vec<&str> = current.contents().iter().filter_map(|o| o.key()).collect();
    let meta_day0 =
        written.iter().filter(|(k, _)| k.contains(".s32s3/") && current.contains(&k.as_str())).count();
    assert_eq!(
        requests(&second, "PutObjectRetention") as usize,
        written_second + 2 + meta_day0,
        "{:?}",
        second.requests
    );
    // The same day again: nothing is short of two windows, so nothing is extended; only what this run
    // writes itself (its manifest) gets retention.
    let third = backup(config(source, &backup_bucket, 3), &bucket).await;
    assert_eq!(third.counts.unchanged.objects, 3);
    let (after_third, _) = versions(&backup_bucket).await;
    let written_third: Vec<_> = after_third.iter().filter(|v| !after_second.contains(v)).collect();
    assert_eq!(
        requests(&third, "PutObjectRetention") as usize,
        written_third.len(),
        "no extension on the same day: {:?}, written: {written_third:?}",
        third.requests
    );
    for (key, version) in written_third {
        assert!(retention(&backup_bucket, key, version).await.1.is_some(), "{key}");
    }

    restores_exactly(source, &backup_bucket, &bucket, &want).await;
}

#[tokio::test]
async fn a_bucket_without_object_lock_is_refused_before_any_write() {
    let source = testkit::seaweedfs();
    let bucket = source.unique_bucket("lock-refused-src");
    source.client().create_bucket().bucket(&bucket).send().await.unwrap();
    put(source, &bucket, "a", b"a".to_vec()).await;
    let backup_bucket = testkit::moto().unique_bucket("bk-nolock");
    testkit::moto().client().create_bucket().bucket(&backup_bucket).send().await.unwrap();

    let run = Backup::new(config(source, &backup_bucket, 0)).with_buckets(vec![bucket.clone()]);
    let err = Box::pin(run.run(Arc::new(NoProgress), CancellationToken::new())).await.unwrap_err();
    let Error::Config { field, reason } = &err else { panic!("{err:?}") };
    assert_eq!(field, "object_lock");
    assert!(
        reason.contains("has no Object Lock") && reason.contains("put-object-lock-configuration"),
        "{reason}"
    );
    assert!(!err.to_string().contains('\n'), "one line: {err}");
    let (written, markers) = versions(&backup_bucket).await;
    assert!(written.is_empty() && markers == 0, "written before the refusal: {written:?}");
    let versioning =
        testkit::moto().client().get_bucket_versioning().bucket(&backup_bucket).send().await.unwrap();
    assert!(versioning.status().is_none(), "versioning was turned on before the refusal");
}

/// With `source_versions`, the versions of the source's history stored under `.s32s3/versions/` are
/// retained like every other version written, and a later run extends their retention as it does entries'.
#[tokio::test]
async fn stored_source_versions_are_retained_and_extended() {
    let source = testkit::seaweedfs();
    let bucket = source.unique_bucket("lock-hist");
    let s3 = source.client();
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let versioning = aws_sdk_s3::types::VersioningConfiguration::builder()
        .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
        .build();
    s3.put_bucket_versioning().bucket(&bucket).versioning_configuration(versioning).send().await.unwrap();
    put(source, &bucket, "k", b"one".to_vec()).await;
    put(source, &bucket, "k", b"two".to_vec()).await;
    let backup_bucket = testkit::moto().unique_bucket("bk-lock-hist");
    let with_history = |day| {
        let mut config = config(source, &backup_bucket, day);
        config.source_versions = true;
        config
    };
    let stored_version = || async {
        let (written, _) = versions(&backup_bucket).await;
        let stored: Vec<_> = written.into_iter().filter(|(k, _)| k.contains(".s32s3/versions/")).collect();
        assert_eq!(stored.len(), 1, "k's first version, stored once: {stored:?}");
        stored.into_iter().next().unwrap()
    };

    let first = backup(with_history(0), &bucket).await;
    assert_eq!(first.history.unwrap().versions_copied, 1);
    let (key, version) = stored_version().await;
    let (mode, until) = retention(&backup_bucket, &key, &version).await;
    assert_eq!(mode.as_deref(), Some("GOVERNANCE"));
    assert!(until.unwrap() > OffsetDateTime::now_utc() + Duration::days(2 * i64::from(DAYS)), "{until:?}");

    // Day 3, more than a window later: nothing changed, the stored version's retention is extended.
    let second = backup(with_history(3), &bucket).await;
    assert_eq!(second.history.unwrap().versions_copied + second.counts.changed.objects, 0);
    assert_eq!(stored_version().await, (key.clone(), version.clone()), "not stored again");
    let (_, until) = retention(&backup_bucket, &key, &version).await;
    let day3 = OffsetDateTime::now_utc() + Duration::days(3);
    assert!(until.unwrap() > day3 + Duration::days(2 * i64::from(DAYS)), "{until:?}");
}

/// A bucket a run does not back up (`--bucket` names another) is carried over: the versions its entries
/// name stay retained all the same, extended once they run short, like those of unchanged objects.
#[tokio::test]
async fn a_carried_bucket_keeps_its_versions_retained() {
    let source = testkit::seaweedfs();
    let (carried, backed_up) = (source.unique_bucket("lock-carried"), source.unique_bucket("lock-other"));
    for bucket in [&carried, &backed_up] {
        source.client().create_bucket().bucket(bucket).send().await.unwrap();
        for i in 0..3 {
            put(source, bucket, &format!("k{i}"), format!("{bucket} {i}").into_bytes()).await;
        }
    }
    let backup_bucket = testkit::moto().unique_bucket("bk-lock-carry");
    let both =
        Backup::new(config(source, &backup_bucket, 0)).with_buckets(vec![carried.clone(), backed_up.clone()]);
    Box::pin(both.run(Arc::new(NoProgress), CancellationToken::new())).await.unwrap();

    // Day 3: only the other bucket; the carried one's three versions are extended (with the other's three).
    let second = backup(config(source, &backup_bucket, 3), &backed_up).await;
    let day3 = OffsetDateTime::now_utc() + Duration::days(3);
    let entries = newest_entries(&backup_bucket).await;
    let carried_entries: Vec<_> = entries.into_iter().filter(|e| e.bucket == carried).collect();
    assert_eq!(carried_entries.len(), 3);
    retained_past(&backup_bucket, &carried_entries, day3).await;
    assert!(requests(&second, "PutObjectRetention") >= 6, "{:?}", second.requests);
}
