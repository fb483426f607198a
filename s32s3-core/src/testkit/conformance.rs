//! The engine's conformance suite: each scenario written once, as `async fn(source, destination)`, and run
//! by `tests/conformance.rs` on every pair of test servers (SeaweedFS→moto, moto→SeaweedFS and
//! SeaweedFS→SeaweedFS), through the library's public API only. The servers are set up and inspected with
//! their raw aws-sdk-s3 clients ([`client`](crate::testkit::TestServer::client)); every scenario asserts
//! what a user would see.
//!
//! Each scenario uses buckets of its own ([`unique_bucket`](crate::testkit::TestServer::unique_bucket)),
//! so scenarios run side by side on shared servers, and one server can be both source and destination.
//! Restores go into fresh buckets of the source server ([`BucketMapping`](crate::restore::BucketMapping)).
//!
//! Known server quirks the scenarios stay clear of: SeaweedFS folds `a//b` into `a/b` and drops the body
//! of a key ending in `/`. The test SeaweedFS also holds data for only about 40 buckets at once (each
//! bucket is a collection that takes 7 of its 300 volumes; a write to one more fails with HTTP 500), so
//! every scenario removes the buckets it made when it passes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::store::s3::sdk::primitives::ByteStream;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::error::Side;
use crate::format::layout::Layout;
use crate::format::manifest::{Entry, Header, ManifestWriter, SnapshotStatus};
use crate::format::snapshots::{self, Selector, SnapshotRef};
use crate::progress::NoProgress;
use crate::restore::{BucketMapping, Restore};
use crate::store::s3::Store;
use crate::summary::RestoreMode;
use crate::testkit::TestServer;
use crate::verify::{ReadData, Verify};
use crate::{
    Backup, BackupSummary, Provider, RestoreSummary, RunConfig, Secret, TransferOptions, VerifySummary,
};

mod history;
pub use history::source_history;

/// The crypt password of every scenario's backups.
pub const PASSWORD: &str = "conformance: correct horse battery staple";
/// The crypt salt password of every scenario's backups.
pub const PASSWORD2: &str = "conformance pepper";
/// `TransferOptions::multipart_threshold` (and part size) of every run: S3's 5 MiB minimum, so that a
/// 6 MiB object goes through the multipart paths quickly.
pub const MULTIPART_THRESHOLD: u64 = 5 << 20;

/// One scenario's backup location: the two servers, the backup bucket and a work directory, and the
/// buckets the scenario made on the source.
struct Pair<'a> {
    source: &'a TestServer,
    destination: &'a TestServer,
    backup_bucket: String,
    work: tempfile::TempDir,
    source_buckets: Mutex<Vec<String>>,
}

impl<'a> Pair<'a> {
    fn new(source: &'a TestServer, destination: &'a TestServer, name: &str) -> Self {
        Self {
            source,
            destination,
            backup_bucket: destination.unique_bucket(&format!("bk-{name}")),
            work: tempfile::tempdir().expect("a temporary directory"),
            source_buckets: Mutex::default(),
        }
    }

    /// A new bucket name on the source, removed by [`Pair::remove_buckets`].
    fn source_bucket(&self, prefix: &str) -> String {
        let bucket = self.source.unique_bucket(prefix);
        self.source_buckets.lock().expect("not poisoned").push(bucket.clone());
        bucket
    }

    /// Removes every bucket the scenario made (those that exist), every version included.
    async fn remove_buckets(self) {
        let buckets = std::mem::take(&mut *self.source_buckets.lock().expect("not poisoned"));
        for bucket in &buckets {
            remove_bucket(self.source, bucket).await;
        }
        remove_bucket(self.destination, &self.backup_bucket).await;
    }

    fn config(&self) -> RunConfig {
        RunConfig {
            source: self.source.endpoint(),
            source_provider: Provider::Other,
            destination: self.destination.endpoint(),
            password: Secret::new(PASSWORD),
            password2: Secret::new(PASSWORD2),
            backup_bucket: self.backup_bucket.clone(),
            backup_prefix: String::new(),
            expiration_days: 7,
            transfer: TransferOptions {
                multipart_threshold: MULTIPART_THRESHOLD,
                part_size: MULTIPART_THRESHOLD,
                retries: 3,
                ..TransferOptions::default()
            },
            work_dir: self.work.path().to_owned(),
            clock: crate::Clock::default(),
            object_lock: crate::ObjectLock::Off,
            source_versions: false,
        }
    }

    /// Backs up `bucket` (only it: the source server holds other scenarios' buckets, and maybe the backup
    /// bucket itself).
    async fn backup(&self, bucket: &str) -> BackupSummary {
        let backup = Backup::new(self.config()).with_buckets(vec![bucket.to_owned()]);
        Box::pin(backup.run(Arc::new(NoProgress), CancellationToken::new()))
            .await
            .unwrap_or_else(|e| panic!("backup of {bucket} into {}: {e}", self.backup_bucket))
    }

    /// Restores `from` (as `selector` chooses) into a fresh bucket of the source server; returns its
    /// name and the summary.
    async fn restore(&self, from: &str, selector: Selector) -> (String, RestoreSummary) {
        let to = self.source_bucket("restored");
        let restore = Restore::new(self.config())
            .with_selector(selector.clone())
            .with_buckets(vec![BucketMapping { from: from.to_owned(), to: to.clone() }]);
        let summary = Box::pin(restore.run(Arc::new(NoProgress), CancellationToken::new()))
            .await
            .unwrap_or_else(|e| panic!("restore of {from} ({selector:?}) into {to}: {e}"));
        (to, summary)
    }

    async fn verify(&self, read_data: ReadData) -> VerifySummary {
        let verify = Verify::new(self.config()).with_read_data(read_data);
        Box::pin(verify.run(Arc::new(NoProgress), CancellationToken::new()))
            .await
            .unwrap_or_else(|e| panic!("verify of {}: {e}", self.backup_bucket))
    }
}

/// Deterministic test data of `len` bytes (xorshift, seeded).
#[must_use]
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Turns versioning on for `bucket` on `server`.
pub async fn enable_versioning(server: &TestServer, bucket: &str) {
    let store = Store::new(Side::Source, server.endpoint(), 10).expect("a valid endpoint");
    store.enable_versioning(bucket).await.unwrap_or_else(|e| panic!("enabling versioning on {bucket}: {e}"));
}

/// Creates `bucket` on `server`.
pub async fn create_bucket(server: &TestServer, bucket: &str) {
    server
        .client()
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating {bucket}: {e:?}"));
}

/// Puts one object.
pub async fn put(server: &TestServer, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
    server
        .client()
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.into()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("putting {bucket}/{key}: {e:?}"));
}

/// Deletes one object (its current version: a delete marker on a versioned bucket).
pub async fn delete(server: &TestServer, bucket: &str, key: &str) {
    server
        .client()
        .delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("deleting {bucket}/{key}: {e:?}"));
}

/// Every object of `bucket` with its bytes, by key.
pub async fn contents(server: &TestServer, bucket: &str) -> BTreeMap<String, Vec<u8>> {
    let s3 = server.client();
    let mut out = BTreeMap::new();
    let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.unwrap_or_else(|e| panic!("listing {bucket}: {e:?}"));
        for object in page.contents() {
            let key = object.key().expect("listed objects have keys").to_owned();
            let got = s3
                .get_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("reading {bucket}/{key}: {e:?}"));
            let body = got.body.collect().await.expect("the body reads").into_bytes().to_vec();
            out.insert(key, body);
        }
    }
    out
}

/// Removes `bucket` with every object version and delete marker in it, if it exists.
pub async fn remove_bucket(server: &TestServer, bucket: &str) {
    let s3 = server.client();
    if s3.head_bucket().bucket(bucket).send().await.is_err() {
        return;
    }
    let (mut versions, mut key_marker, mut version_marker) = (Vec::new(), None, None);
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .unwrap_or_else(|e| panic!("listing the versions of {bucket}: {e:?}"));
        let owned = |key: Option<&str>, id: Option<&str>| (key.map(str::to_owned), id.map(str::to_owned));
        versions.extend(page.versions().iter().map(|v| owned(v.key(), v.version_id())));
        versions.extend(page.delete_markers().iter().map(|m| owned(m.key(), m.version_id())));
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
    }
    for (key, version_id) in versions {
        s3.delete_object()
            .bucket(bucket)
            .set_key(key)
            .set_version_id(version_id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("deleting a version in {bucket}: {e:?}"));
    }
    s3.delete_bucket().bucket(bucket).send().await.unwrap_or_else(|e| panic!("removing {bucket}: {e:?}"));
}

/// Fills `bucket` (created here) with `objects`.
async fn fill(server: &TestServer, bucket: &str, objects: &BTreeMap<String, Vec<u8>>) {
    create_bucket(server, bucket).await;
    for (key, body) in objects {
        put(server, bucket, key, body.clone()).await;
    }
}

/// Short names for what differs between two contents, for assertion messages (no megabytes printed).
fn differences(got: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut out = Vec::new();
    for (key, body) in want {
        match got.get(key) {
            None => out.push(format!("{key:?} missing")),
            Some(b) if b != body => out.push(format!("{key:?}: {} bytes, {} expected", b.len(), body.len())),
            Some(_) => {}
        }
    }
    out.extend(got.keys().filter(|k| !want.contains_key(*k)).map(|k| format!("{k:?} unexpected")));
    out
}

/// Asserts that `bucket` on `server` holds exactly `want`.
async fn assert_contents(server: &TestServer, bucket: &str, want: &BTreeMap<String, Vec<u8>>, what: &str) {
    let got = contents(server, bucket).await;
    let diff = differences(&got, want);
    assert!(diff.is_empty(), "{what}: {bucket} differs: {diff:?}");
}

/// Text objects, by key.
fn objects(list: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    list.iter().map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())).collect()
}

/// A request count of a run (0 when the operation was never sent).
fn requests(counts: &BTreeMap<String, u64>, operation: &str) -> u64 {
    counts.get(operation).copied().unwrap_or(0)
}

/// Operations that read or write one object's data or attributes (what an unchanged object must not cost).
const PER_OBJECT_SOURCE: [&str; 4] = ["GetObject", "HeadObject", "GetObjectTagging", "GetObjectRetention"];

/// Incremental counts: a first backup counts every object new; a second with nothing changed counts them
/// all unchanged and sends no per-object request to the source and no data upload to the destination; a
/// third after one change, one addition and one deletion counts exactly 1 changed, 1 new, 1 deleted and
/// copies exactly those 2. The newest snapshot restores to the source's state.
pub async fn incremental_counts(source: &TestServer, destination: &TestServer) {
    let pair = Pair::new(source, destination, "incr");
    let bucket = pair.source_bucket("incr");
    let mut state: BTreeMap<String, Vec<u8>> =
        (0..5).map(|i| (format!("data/{i}.bin"), pattern(100 + i, i as u64))).collect();
    fill(source, &bucket, &state).await;

    let first = pair.backup(&bucket).await;
    assert_eq!(first.status, SnapshotStatus::Complete, "{first:?}");
    assert_eq!((first.counts.new.objects, first.counts.new.bytes), (5, 510), "{first:?}");
    assert_eq!(
        first.counts.changed.objects + first.counts.unchanged.objects + first.counts.deleted.objects,
        0
    );
    assert_eq!(requests(&first.requests.source, "GetObject"), 5, "{:?}", first.requests.source);
    assert!(first.failed.is_empty() && first.parent.is_none(), "{first:?}");

    let second = pair.backup(&bucket).await;
    assert_eq!(second.status, SnapshotStatus::Complete, "{second:?}");
    assert_eq!(second.parent.as_deref(), Some(first.snapshot_id.as_str()));
    assert_eq!((second.counts.unchanged.objects, second.counts.unchanged.bytes), (5, 510), "{second:?}");
    assert_eq!(second.counts.new.objects + second.counts.changed.objects + second.counts.deleted.objects, 0);
    for operation in PER_OBJECT_SOURCE {
        assert_eq!(
            requests(&second.requests.source, operation),
            0,
            "{operation}: {:?}",
            second.requests.source
        );
    }
    // Only the run's own objects (the lease, its confirmation and the manifest) are written.
    let overhead = requests(&second.requests.destination, "PutObject");
    assert_eq!(overhead, 3, "no data upload for unchanged objects: {:?}", second.requests.destination);
    assert_eq!(requests(&second.requests.destination, "CreateMultipartUpload"), 0);

    put(source, &bucket, "data/0.bin", b"changed".to_vec()).await;
    delete(source, &bucket, "data/1.bin").await;
    put(source, &bucket, "data/new.bin", b"new".to_vec()).await;
    state.insert("data/0.bin".into(), b"changed".to_vec());
    state.remove("data/1.bin");
    state.insert("data/new.bin".into(), b"new".to_vec());

    let third = pair.backup(&bucket).await;
    assert_eq!(third.parent.as_deref(), Some(second.snapshot_id.as_str()));
    let c = third.counts;
    assert_eq!(
        [c.changed.objects, c.new.objects, c.deleted.objects, c.unchanged.objects],
        [1, 1, 1, 3],
        "{third:?}"
    );
    assert_eq!((c.changed.bytes, c.new.bytes, c.deleted.bytes), (7, 3, 101), "{third:?}");
    assert_eq!(third.totals.objects, 5);
    assert_eq!(requests(&third.requests.source, "GetObject"), 2, "{:?}", third.requests.source);
    assert_eq!(requests(&third.requests.source, "HeadObject"), 0, "{:?}", third.requests.source);
    // The 2 copies, and the run record written before the first write that replaces a stored version.
    let puts = requests(&third.requests.destination, "PutObject");
    assert_eq!(puts, overhead + 2 + 1, "{:?}", third.requests.destination);
    // The deletion, and the lease's release.
    assert_eq!(
        requests(&third.requests.destination, "DeleteObject"),
        1 + 1,
        "{:?}",
        third.requests.destination
    );

    let (restored, summary) = pair.restore(&bucket, Selector::Newest).await;
    assert_eq!(summary.restored.objects, 5, "{summary:?}");
    assert_contents(source, &restored, &state, "the newest snapshot").await;
    pair.remove_buckets().await;
}

/// The tricky keys and sizes: spaces, unicode, `+`, `%` and other reserved characters, deep paths, a
/// segment whose encrypted name is longer than 255 bytes, an empty, a 1-byte, a crypt-chunk-sized and a
/// multipart-sized object.
fn tricky_objects() -> BTreeMap<String, Vec<u8>> {
    let keys_and_sizes: Vec<(String, usize)> = vec![
        ("spaces in name/file name.txt".into(), 11),
        ("unicode/ünïcødé 日本 😀.txt".into(), 10),
        ("plus+sign%percent%20.txt".into(), 12),
        ("reserved/&=?#;:@$,!'()*[]~.txt".into(), 13),
        ("deep/a/b/c/d/e/f/g/h/i/j/leaf".into(), 14),
        (format!("long/{}/x", "s".repeat(200)), 15),
        ("sizes/empty".into(), 0),
        ("sizes/one".into(), 1),
        ("sizes/64k+1".into(), 65537),
        ("sizes/multipart".into(), (6 << 20) + 12345),
    ];
    keys_and_sizes.into_iter().enumerate().map(|(i, (key, size))| (key, pattern(size, i as u64))).collect()
}

/// Tricky keys and sizes: every key recorded and restored (into a fresh bucket) byte-exact, the large
/// object through multipart uploads both ways.
pub async fn tricky_keys(source: &TestServer, destination: &TestServer) {
    let pair = Pair::new(source, destination, "tricky");
    let bucket = pair.source_bucket("tricky");
    let state = tricky_objects();
    assert!(state["sizes/multipart"].len() as u64 > MULTIPART_THRESHOLD);
    fill(source, &bucket, &state).await;
    assert_contents(source, &bucket, &state, "the source as written").await;

    let backup = pair.backup(&bucket).await;
    assert_eq!(backup.status, SnapshotStatus::Complete, "{backup:?}");
    assert!(backup.failed.is_empty(), "{:?}", backup.failed);
    let bytes: u64 = state.values().map(|v| v.len() as u64).sum();
    assert_eq!((backup.totals.objects, backup.totals.bytes), (state.len() as u64, bytes), "{backup:?}");
    assert_eq!(backup.counts.new.objects, state.len() as u64);
    assert_eq!(
        requests(&backup.requests.destination, "CompleteMultipartUpload"),
        1,
        "the large object is uploaded in parts: {:?}",
        backup.requests.destination
    );

    let (restored, summary) = pair.restore(&bucket, Selector::Newest).await;
    assert_eq!(summary.mode, RestoreMode::Manifest);
    assert!(summary.failed.is_empty() && summary.conflicts.is_empty(), "{summary:?}");
    assert_eq!(
        (summary.restored.objects, summary.restored.bytes),
        (state.len() as u64, bytes),
        "{summary:?}"
    );
    assert_contents(source, &restored, &state, "the restore").await;
    pair.remove_buckets().await;
}

/// What a client sees of one object besides its bytes.
#[derive(Debug, PartialEq, Eq)]
struct Attributes {
    content_type: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    metadata: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
}

async fn attributes(server: &TestServer, bucket: &str, key: &str) -> Attributes {
    let s3 = server.client();
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("HEAD {bucket}/{key}: {e:?}"));
    let tags = s3
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("tags of {bucket}/{key}: {e:?}"));
    Attributes {
        content_type: head.content_type().map(str::to_owned),
        content_disposition: head.content_disposition().map(str::to_owned),
        content_language: head.content_language().map(str::to_owned),
        cache_control: head.cache_control().map(str::to_owned),
        metadata: head.metadata().cloned().unwrap_or_default().into_iter().collect(),
        tags: tags.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect(),
    }
}

/// Metadata and tags: content type, disposition, language, cache control, user metadata and tags survive
/// a backup and a restore (into a fresh bucket), on an object that has them all and on one that has only
/// tags; the bytes too.
pub async fn metadata_and_tags(source: &TestServer, destination: &TestServer) {
    let pair = Pair::new(source, destination, "meta");
    let bucket = pair.source_bucket("meta");
    create_bucket(source, &bucket).await;
    source
        .client()
        .put_object()
        .bucket(&bucket)
        .key("meta/headers.html")
        .body(ByteStream::from_static(b"<p>hello</p>"))
        .content_type("text/html; charset=utf-8")
        .content_disposition("attachment; filename=\"hello.html\"")
        .content_language("de-CH")
        .cache_control("max-age=60")
        .metadata("owner", "team-storage")
        .metadata("purpose", "conformance test")
        .tagging("env=prod&team=storage")
        .send()
        .await
        .expect("putting the object with headers");
    source
        .client()
        .put_object()
        .bucket(&bucket)
        .key("meta/tags only")
        .body(ByteStream::from_static(b"tagged"))
        .tagging("a%20b=c%2Bd&empty=")
        .send()
        .await
        .expect("putting the tagged object");
    let keys = ["meta/headers.html", "meta/tags only"];
    let before = [attributes(source, &bucket, keys[0]).await, attributes(source, &bucket, keys[1]).await];
    // What the source kept is what the scenario is about (a server that dropped a header fails here).
    assert_eq!(before[0].content_type.as_deref(), Some("text/html; charset=utf-8"));
    assert_eq!(before[0].content_disposition.as_deref(), Some("attachment; filename=\"hello.html\""));
    assert_eq!(before[0].content_language.as_deref(), Some("de-CH"));
    assert_eq!(before[0].cache_control.as_deref(), Some("max-age=60"));
    assert_eq!(before[0].metadata.get("owner").map(String::as_str), Some("team-storage"));
    assert_eq!(before[0].tags.len(), 2, "{:?}", before[0]);
    assert_eq!(before[1].tags.get("a b").map(String::as_str), Some("c+d"), "{:?}", before[1]);

    let backup = pair.backup(&bucket).await;
    assert_eq!((backup.status, backup.totals.objects), (SnapshotStatus::Complete, 2), "{backup:?}");
    let (restored, summary) = pair.restore(&bucket, Selector::Newest).await;
    assert_eq!(summary.restored.objects, 2, "{summary:?}");
    assert!(summary.failed.is_empty(), "{summary:?}");
    for (key, want) in keys.iter().zip(&before) {
        assert_eq!(&attributes(source, &restored, key).await, want, "{key} restored");
    }
    assert_contents(source, &restored, &contents(source, &bucket).await, "the restore").await;
    pair.remove_buckets().await;
}

/// The finish time of snapshot `id`, as the backup location lists it.
async fn finished(pair: &Pair<'_>, id: &str) -> OffsetDateTime {
    let listed = crate::inspect::describe(&pair.config(), Arc::new(NoProgress))
        .await
        .unwrap_or_else(|e| panic!("describing {}: {e}", pair.backup_bucket));
    let info = listed
        .iter()
        .find(|s| s.header.as_ref().is_ok_and(|h| h.snapshot_id == id))
        .unwrap_or_else(|| panic!("snapshot {id} is not listed: {listed:?}"));
    info.snapshot.finished
}

/// Point in time: back up, change an object, delete one and add one, back up again; the first snapshot
/// (by id, and by its finish time) restores the old state, the newest (and the second's finish time) the
/// new one.
pub async fn point_in_time(source: &TestServer, destination: &TestServer) {
    let pair = Pair::new(source, destination, "pit");
    let bucket = pair.source_bucket("pit");
    let old = objects(&[("a", "a, first"), ("b", "b, first"), ("keep", "unchanged")]);
    fill(source, &bucket, &old).await;
    let first = pair.backup(&bucket).await;

    put(source, &bucket, "a", b"a, second".to_vec()).await;
    delete(source, &bucket, "b").await;
    put(source, &bucket, "c", b"c, new").await;
    let new = objects(&[("a", "a, second"), ("c", "c, new"), ("keep", "unchanged")]);
    let second = pair.backup(&bucket).await;
    let c = second.counts;
    assert_eq!([c.changed.objects, c.new.objects, c.deleted.objects], [1, 1, 1], "{second:?}");

    let (t1, t2) = (finished(&pair, &first.snapshot_id).await, finished(&pair, &second.snapshot_id).await);
    assert!(t1 < t2, "{t1} < {t2}");
    let cases = [
        ("the first snapshot by id", Selector::Id(first.snapshot_id.clone()), &first.snapshot_id, &old),
        ("the first snapshot's finish time", Selector::At(t1), &first.snapshot_id, &old),
        ("the newest snapshot", Selector::Newest, &second.snapshot_id, &new),
        ("the second snapshot's finish time", Selector::At(t2), &second.snapshot_id, &new),
    ];
    for (what, selector, id, want) in cases {
        let (restored, summary) = pair.restore(&bucket, selector).await;
        assert_eq!(summary.snapshot_id.as_ref(), Some(id), "{what}: {summary:?}");
        assert_eq!(summary.restored.objects, want.len() as u64, "{what}: {summary:?}");
        assert_contents(source, &restored, want, what).await;
    }
    pair.remove_buckets().await;
}

/// Runs the real `rclone` with `args` (and `config`, when given); returns its standard output.
async fn rclone(config: Option<&Path>, args: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new("rclone");
    cmd.args(args).env_remove("AWS_CA_BUNDLE").env_remove("RCLONE_CONFIG");
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let out = cmd.output().await.unwrap_or_else(|e| panic!("cannot run rclone ({e}): run scripts/setup"));
    assert!(out.status.success(), "rclone {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("rclone prints UTF-8")
}

/// An rclone.conf with the source (`src`), the destination (`dst`) and a crypt remote (`crypt`) over the
/// backup bucket, its passwords obscured by rclone itself.
async fn rclone_config(pair: &Pair<'_>) -> std::path::PathBuf {
    let remote = |name: &str, server: &TestServer| {
        let e = server.endpoint();
        format!(
            "[{name}]\ntype = s3\nprovider = Other\nendpoint = {}\naccess_key_id = {}\n\
             secret_access_key = {}\nregion = us-east-1\nforce_path_style = true\n\n",
            e.endpoint,
            e.access_key_id,
            e.secret_access_key.expose()
        )
    };
    let password = rclone(None, &["obscure", PASSWORD]).await;
    let password2 = rclone(None, &["obscure", PASSWORD2]).await;
    let conf = format!(
        "{}{}[crypt]\ntype = crypt\nremote = dst:{}\npassword = {}\npassword2 = {}\n",
        remote("src", pair.source),
        remote("dst", pair.destination),
        pair.backup_bucket,
        password.trim(),
        password2.trim(),
    );
    let path = pair.work.path().join("rclone.conf");
    std::fs::write(&path, conf).expect("writing rclone.conf");
    path
}

/// A backup written by the real rclone (`rclone sync` into a crypt remote over a versioned bucket, twice,
/// with a change, a deletion and an addition between), restored through the library from the version
/// listing: as of a time between the syncs, the first state; the newest, the second; byte-exact.
pub async fn rclone_made_backup(source: &TestServer, destination: &TestServer) {
    let pair = Pair::new(source, destination, "rclone");
    let bucket = pair.source_bucket("rclone");
    let mut first = objects(&[
        ("change", "first"),
        ("dir/remove", "gone later"),
        ("unicode ünï 日本/ça va.txt", "bonjour"),
        ("empty", ""),
    ]);
    first.insert("keep".into(), pattern(100_000, 1));
    fill(source, &bucket, &first).await;
    create_bucket(destination, &pair.backup_bucket).await;
    enable_versioning(destination, &pair.backup_bucket).await;
    let config = rclone_config(&pair).await;
    let (from, to) = (format!("src:{bucket}"), format!("crypt:{bucket}"));
    let sync = ["sync", from.as_str(), to.as_str()];
    rclone(Some(&config), &sync).await;

    // Listings give times to the second on some servers: keep the moment clear of both syncs.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let between = OffsetDateTime::now_utc();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    put(source, &bucket, "change", b"second, longer").await;
    delete(source, &bucket, "dir/remove").await;
    put(source, &bucket, "new", b"added").await;
    let mut second = first.clone();
    second.insert("change".into(), b"second, longer".to_vec());
    second.remove("dir/remove");
    second.insert("new".into(), b"added".to_vec());
    rclone(Some(&config), &sync).await;

    for (what, selector, want) in [
        ("as of between the syncs", Selector::At(between), &first),
        ("the newest", Selector::Newest, &second),
    ] {
        let (restored, summary) = pair.restore(&bucket, selector).await;
        assert_eq!(summary.mode, RestoreMode::VersionListing, "{what}: {summary:?}");
        assert!(summary.failed.is_empty(), "{what}: {summary:?}");
        assert_eq!(summary.restored.objects, want.len() as u64, "{what}: {summary:?}");
        assert_contents(source, &restored, want, what).await;
    }
    pair.remove_buckets().await;
}

/// The newest snapshot's key, header and entries, read with the library's format module.
async fn newest_manifest(pair: &Pair<'_>) -> (Store, Layout, SnapshotRef, Header, Vec<Entry>) {
    let store = Store::new(Side::Destination, pair.destination.endpoint(), 3).expect("a valid endpoint");
    let cipher = crate::derive_cipher(&PASSWORD.into(), &PASSWORD2.into()).await.expect("the keys derive");
    let layout = Layout::new(&cipher, "").expect("the layout");
    let listed = snapshots::list(&store, &pair.backup_bucket, &layout).await.expect("listing the snapshots");
    let newest = listed.into_iter().rev().find(|s| !s.checkpoint).expect("a snapshot exists");
    let reader = snapshots::open(&store, &pair.backup_bucket, &newest.key, &cipher, pair.work.path())
        .await
        .expect("opening the manifest");
    let header = reader.header().clone();
    let entries = reader.collect::<crate::Result<Vec<Entry>>>().expect("reading the manifest");
    (store, layout, newest, header, entries)
}

/// Rot, as a reader would see it: stores garbage of the same length as a new version of `key`'s stored
/// object, and writes the newest snapshot again (a second later) with `key`'s entry naming that version.
/// (A plain overwrite would not be damage: a snapshot names the version it stored.)
async fn rot(pair: &Pair<'_>, key: &str) {
    let (_, layout, newest, mut header, entries) = newest_manifest(pair).await;
    let entry = entries.iter().find(|e| e.key == key).expect("the key is in the snapshot");
    let garbage = pattern(s32s3_crypt::encrypted_size(entry.size) as usize, 666);
    let s3 = pair.destination.client();
    let put = s3
        .put_object()
        .bucket(&pair.backup_bucket)
        .key(&entry.stored_key)
        .body(ByteStream::from(garbage))
        .send()
        .await
        .expect("storing the garbage");
    let garbage_version = put.version_id().expect("the backup bucket keeps versions").to_owned();

    let cipher = crate::derive_cipher(&PASSWORD.into(), &PASSWORD2.into()).await.expect("the keys derive");
    let mut writer = ManifestWriter::new(pair.work.path()).expect("a manifest writer");
    for mut e in entries {
        if e.key == key {
            e.version_id = Some(garbage_version.clone());
        }
        writer.push(&e).expect("spooling an entry");
    }
    let finished = newest.finished + time::Duration::seconds(1);
    header.snapshot_id = format!("{}f", &header.snapshot_id[..7]);
    header.finished = crate::format_rfc3339(finished);
    let (file, len) = writer.encode(&header, &cipher, pair.work.path()).expect("encoding the manifest");
    let body = ByteStream::read_from().file(tokio::fs::File::from_std(file)).build().await.expect("a body");
    s3.put_object()
        .bucket(&pair.backup_bucket)
        .key(snapshots::snapshot_key(&layout, finished, &header.snapshot_id))
        .content_length(i64::try_from(len).expect("a small manifest"))
        .body(body)
        .send()
        .await
        .expect("storing the re-pointed manifest");
}

/// Deletes the stored version the newest snapshot names for `key` (a lost version).
async fn lose(pair: &Pair<'_>, key: &str) {
    let (_, _, _, _, entries) = newest_manifest(pair).await;
    let entry = entries.iter().find(|e| e.key == key).expect("the key is in the snapshot");
    pair.destination
        .client()
        .delete_object()
        .bucket(&pair.backup_bucket)
        .key(&entry.stored_key)
        .set_version_id(entry.version_id.clone())
        .send()
        .await
        .expect("deleting the stored version");
}

/// Damaged objects: after one stored object rots (same length, garbage) and another's stored version is
/// lost, `verify` by sizes finds only the lost one, `verify` reading all data finds exactly those two, and
/// a restore restores every other object byte-exact and reports those two failed, writing nothing for them.
pub async fn damaged_objects(source: &TestServer, destination: &TestServer) {
    let pair = Pair::new(source, destination, "damage");
    let bucket = pair.source_bucket("damage");
    let state: BTreeMap<String, Vec<u8>> = ["fine-1", "fine-2", "fine-3", "lost", "rotten"]
        .iter()
        .enumerate()
        .map(|(i, k)| ((*k).to_owned(), pattern(70_000 + i, i as u64)))
        .collect();
    fill(source, &bucket, &state).await;
    pair.backup(&bucket).await;
    let clean = pair.verify(ReadData::All).await;
    assert!(clean.bad.is_empty() && clean.unreadable.is_empty(), "{clean:?}");
    assert_eq!(clean.read.objects, 5, "{clean:?}");

    rot(&pair, "rotten").await;
    lose(&pair, "lost").await;
    let bad_keys = |s: &VerifySummary| s.bad.iter().map(|f| f.key.clone()).collect::<Vec<_>>();
    let sizes = pair.verify(ReadData::None).await;
    assert_eq!(bad_keys(&sizes), ["lost"], "{sizes:?}");
    let read = pair.verify(ReadData::All).await;
    assert_eq!(bad_keys(&read), ["lost", "rotten"], "{read:?}");
    assert!(read.bad[0].error.contains("missing"), "{:?}", read.bad[0]);
    assert!(read.unreadable.is_empty() && read.read.objects == 5, "{read:?}");

    let (restored, summary) = pair.restore(&bucket, Selector::Newest).await;
    let mut failed: Vec<&str> = summary.failed.iter().map(|f| f.key.as_str()).collect();
    failed.sort_unstable();
    assert_eq!(failed, ["lost", "rotten"], "{summary:?}");
    assert_eq!(summary.restored.objects, 3, "{summary:?}");
    let mut fine = state;
    fine.retain(|k, _| k.starts_with("fine"));
    assert_contents(source, &restored, &fine, "the restore of a damaged snapshot").await;
    pair.remove_buckets().await;
}
