//! `source_versions`: the source's version history backed up, incrementally, and replayed.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{
    PER_OBJECT_SOURCE, Pair, create_bucket, delete, enable_versioning, finished, pattern, put, rclone,
    rclone_config, requests,
};
use crate::error::Side;
use crate::format::snapshots::Selector;
use crate::progress::NoProgress;
use crate::restore::{BucketMapping, Restore};
use crate::store::s3::Store;
use crate::testkit::TestServer;
use crate::verify::{ReadData, Verify};
use crate::{Backup, BackupSummary, Error, RestoreSummary};

/// One key's history, oldest first: each version's bytes, `None` for a delete marker.
type History = BTreeMap<String, Vec<Option<Vec<u8>>>>;

/// Every key's history in `bucket`, read from its version listing (oldest first) and by version id.
async fn history(server: &TestServer, bucket: &str) -> History {
    let store = Store::new(Side::Source, server.endpoint(), 3).expect("a valid endpoint");
    let mut listed = Vec::new();
    store
        .list_versions_in_order(bucket, None, |v| listed.push(v))
        .await
        .unwrap_or_else(|e| panic!("listing the versions of {bucket}: {e}"));
    let mut by_key: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for item in listed {
        by_key.entry(item.key.clone()).or_default().push(item);
    }
    let mut out = History::new();
    for (key, items) in by_key {
        let mut steps = Vec::new();
        for item in crate::engine::history::chronological(items) {
            if item.delete_marker {
                steps.push(None);
                continue;
            }
            let got = server
                .client()
                .get_object()
                .bucket(bucket)
                .key(&key)
                .set_version_id(Some(item.version_id.clone().unwrap_or_else(|| "null".into())))
                .send()
                .await
                .unwrap_or_else(|e| panic!("reading {bucket}/{key} version {:?}: {e:?}", item.version_id));
            steps.push(Some(got.body.collect().await.expect("the body reads").into_bytes().to_vec()));
        }
        out.insert(key, steps);
    }
    out
}

/// What of a key's history every server's version listing tells: its versions' bytes in order, how many
/// delete markers, and what is latest (`None`: a delete marker). (moto lists times to the second and every
/// version before every delete marker, so where a key's versions and delete markers interleave within one
/// second its listing cannot say how; the replay writes them within one.)
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    versions: Vec<usize>,
    markers: usize,
    latest: Option<usize>,
}

fn shapes(h: &History) -> BTreeMap<String, (Shape, Vec<Vec<u8>>)> {
    h.iter()
        .map(|(key, steps)| {
            let versions: Vec<Vec<u8>> = steps.iter().flatten().cloned().collect();
            let shape = Shape {
                versions: versions.iter().map(Vec::len).collect(),
                markers: steps.iter().filter(|s| s.is_none()).count(),
                latest: steps.last().and_then(|s| s.as_ref().map(Vec::len)),
            };
            (key.clone(), (shape, versions))
        })
        .collect()
}

/// The keys whose histories differ (in versions' bytes and order, delete markers or what is latest).
fn history_differences(got: &History, want: &History) -> Vec<String> {
    let (got, want) = (shapes(got), shapes(want));
    let mut out = Vec::new();
    for (key, steps) in &want {
        match got.get(key) {
            None => out.push(format!("{key:?} missing")),
            Some(g) if g != steps => out.push(format!("{key:?}: {:?}, {:?} expected", g.0, steps.0)),
            Some(_) => {}
        }
    }
    out.extend(got.keys().filter(|k| !want.contains_key(*k)).map(|k| format!("{k:?} unexpected")));
    out
}

fn markers(h: &History) -> usize {
    h.values().flatten().filter(|s| s.is_none()).count()
}

/// Keys whose latest step is a version, with its bytes (what a plain listing shows).
fn latest(h: &History) -> BTreeMap<String, Vec<u8>> {
    h.iter().filter_map(|(k, steps)| steps.last()?.clone().map(|b| (k.clone(), b))).collect()
}

async fn backup(pair: &Pair<'_>, bucket: &str) -> BackupSummary {
    let backup = Backup::new(pair.config().with_source_versions(true)).with_buckets(vec![bucket.to_owned()]);
    Box::pin(backup.run(Arc::new(NoProgress), CancellationToken::new()))
        .await
        .unwrap_or_else(|e| panic!("backup of {bucket} with its history: {e}"))
}

async fn replay(
    pair: &Pair<'_>,
    from: &str,
    to: &str,
    selector: Selector,
    config: bool,
) -> crate::Result<RestoreSummary> {
    replay_with(pair, from, to, selector, config, false).await
}

async fn replay_with(
    pair: &Pair<'_>,
    from: &str,
    to: &str,
    selector: Selector,
    config: bool,
    overwrite: bool,
) -> crate::Result<RestoreSummary> {
    let restore = Restore::new(pair.config())
        .with_source_versions(true)
        .with_overwrite(overwrite)
        .with_bucket_config(config)
        .with_selector(selector)
        .with_buckets(vec![BucketMapping { from: from.to_owned(), to: to.to_owned() }]);
    Box::pin(restore.run(Arc::new(NoProgress), CancellationToken::new())).await
}

/// The source's version history, backed up and replayed: a key with three versions, a key deleted (a
/// delete marker last), one deleted and created again, many keys. A second backup after one more version
/// and one more delete stores only those (no GET but the new version's); a third with nothing changed
/// sends no per-object request to the source. Replayed into fresh buckets, the newest snapshot and the
/// first (`--at` its time) give back every key's history in order; a replay run again writes nothing; a
/// bucket without versioning is refused. `verify --read-data` reads every stored version, and `rclone
/// check --download` still finds the newest state in place.
pub async fn source_history(source: &TestServer, destination: &TestServer) {
    let pair = Pair::new(source, destination, "hist");
    let bucket = pair.source_bucket("hist");
    let at_first = fill(source, &bucket).await;
    let (first, at_second) = incremental_backups(&pair, &bucket).await;
    replays(&pair, &bucket, &first.snapshot_id, &at_first, &at_second).await;

    // The newest history damaged: reported, and the next run stores the history anew (7 versions that
    // are not current, none of them the previous entry of its key: all read from the source).
    let (_, _, _, header, _) = super::newest_manifest(&pair).await;
    let damaged = header.history.expect("the newest snapshot has a history").key;
    let garbage = crate::store::s3::sdk::primitives::ByteStream::from(b"not a history".to_vec());
    let put = pair.destination.client().put_object().bucket(&pair.backup_bucket).key(&damaged).body(garbage);
    put.send().await.unwrap_or_else(|e| panic!("damaging {damaged}: {e:?}"));
    let anew = backup(&pair, &bucket).await;
    assert!(anew.failed.is_empty(), "{anew:?}");
    let h = anew.history.expect("the history is backed up");
    assert_eq!((h.versions, h.delete_markers, h.versions_copied), (29, 3, 7), "{h:?}");

    let verify = Verify::new(pair.config()).with_read_data(ReadData::All);
    let verified =
        Box::pin(verify.run(Arc::new(NoProgress), CancellationToken::new())).await.expect("verify");
    assert!(verified.bad.is_empty() && verified.unreadable.is_empty(), "{verified:?}");
    // 22 current objects + 7 stored versions (big's first, three's first three, gone's, again's first,
    // many/00's).
    assert_eq!(verified.checked.objects, 22 + 7, "{verified:?}");
    assert_eq!(verified.read.objects, verified.checked.objects, "{verified:?}");

    let config = rclone_config(&pair).await;
    let (from, to) = (format!("src:{bucket}"), format!("crypt:{bucket}"));
    rclone(Some(&config), &["check", "--download", &from, &to]).await;

    turned_off(&pair, &bucket, &anew.snapshot_id, &at_second).await;
    pair.remove_buckets().await;
}

/// `source_versions` turned off: the next snapshot has no history and the stored copies of older versions
/// are deleted (nothing current under `.s32s3/versions/` any more), yet the snapshot taken before still
/// replays its whole history (its copies are read by version id; the lifecycle keeps them for the window).
/// The run after that has nothing left to delete.
async fn turned_off(pair: &Pair<'_>, bucket: &str, before: &str, at_before: &History) {
    let current_copies = || async {
        let s3 = pair.destination.client();
        let listed = s3.list_objects_v2().bucket(&pair.backup_bucket).prefix(".s32s3/versions/").send().await;
        listed.expect("listing the stored copies").contents().len()
    };
    assert_eq!(current_copies().await, 7);
    let backup = Backup::new(pair.config()).with_buckets(vec![bucket.to_owned()]);
    let off = || Box::pin(backup.run(Arc::new(NoProgress), CancellationToken::new()));
    let first = off().await.expect("a backup with source_versions off");
    assert!(first.history.is_none() && first.failed.is_empty(), "{first:?}");
    assert_eq!(first.history_copies_deleted, 7, "{first:?}");
    assert_eq!(current_copies().await, 0, "no stored copy is current");
    let (_, _, _, header, _) = super::newest_manifest(pair).await;
    assert!(header.history.is_none(), "{header:?}");

    let to = pair.source_bucket("replayed-off");
    let summary = replay(pair, bucket, &to, Selector::Id(before.to_owned()), true).await;
    let summary = summary.expect("the replay of the snapshot taken before");
    assert!(summary.failed.is_empty() && summary.conflicts.is_empty(), "{summary:?}");
    let diff = history_differences(&history(pair.source, &to).await, at_before);
    assert!(diff.is_empty(), "the history of the snapshot taken before: {diff:?}");

    let second = off().await.expect("another backup with source_versions off");
    assert_eq!(second.history_copies_deleted, 0, "{second:?}");
    assert_eq!(requests(&second.requests.destination, "DeleteObject"), 1, "the lease only: {second:?}");
}

/// A key whose target holds a version of somebody else's: a conflict, left alone, while the other keys are
/// replayed; with `--overwrite` its history goes on top of that version; run again, nothing is written.
async fn replayed_over(pair: &Pair<'_>, bucket: &str, at_second: &History) {
    let source = pair.source;
    let to = pair.source_bucket("replayed-over");
    create_bucket(source, &to).await;
    enable_versioning(source, &to).await;
    let foreign = b"somebody else's three".to_vec();
    put(source, &to, "three", foreign.clone()).await;
    step().await;

    let summary = replay(pair, bucket, &to, Selector::Newest, true).await.expect("the replay");
    assert!(summary.failed.is_empty(), "{summary:?}");
    let conflicts: Vec<&str> = summary.conflicts.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(conflicts, ["three"], "{summary:?}");
    let mut want = at_second.clone();
    want.insert("three".into(), vec![Some(foreign.clone())]);
    let diff = history_differences(&history(source, &to).await, &want);
    assert!(diff.is_empty(), "every key but the one in conflict replayed, that one left alone: {diff:?}");

    let over =
        replay_with(pair, bucket, &to, Selector::Newest, true, true).await.expect("the replay over it");
    assert!(over.failed.is_empty() && over.conflicts.is_empty(), "{over:?}");
    let three = &at_second["three"];
    assert_eq!(over.restored.objects, three.iter().flatten().count() as u64, "{over:?}");
    want.insert("three".into(), std::iter::once(Some(foreign)).chain(three.iter().cloned()).collect());
    let diff = history_differences(&history(source, &to).await, &want);
    assert!(diff.is_empty(), "the history of three on top of the foreign version: {diff:?}");

    let again = replay_with(pair, bucket, &to, Selector::Newest, true, true).await.expect("again");
    assert!(again.failed.is_empty() && again.conflicts.is_empty(), "{again:?}");
    assert_eq!((again.restored.objects, again.delete_markers), (0, 0), "{again:?}");
}

/// Some servers list times to the second: the steps of one key a second apart keep their order.
async fn step() {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
}

/// Creates the versioned `bucket` with its history: 20 keys of one version, `big` (6 MiB, two versions),
/// `three` (three versions), `gone` (deleted), `again` (deleted and written again). Returns it.
async fn fill(source: &TestServer, bucket: &str) -> History {
    let bucket = bucket.to_owned();
    create_bucket(source, &bucket).await;
    enable_versioning(source, &bucket).await;
    for i in 0..20 {
        put(source, &bucket, &format!("many/{i:02}"), pattern(50 + i, i as u64)).await;
    }
    put(source, &bucket, "big", pattern(6 << 20, 7)).await;
    put(source, &bucket, "three", b"three, first".to_vec()).await;
    put(source, &bucket, "gone", b"gone soon".to_vec()).await;
    put(source, &bucket, "again", b"again, first".to_vec()).await;
    step().await;
    put(source, &bucket, "three", b"three, second".to_vec()).await;
    delete(source, &bucket, "gone").await;
    delete(source, &bucket, "again").await;
    put(source, &bucket, "big", pattern(6 << 20, 8)).await;
    step().await;
    put(source, &bucket, "three", b"three, third".to_vec()).await;
    put(source, &bucket, "again", b"again, second".to_vec()).await;
    let at_first = history(source, &bucket).await;
    assert_eq!(at_first["three"].len(), 3, "{:?}", at_first.keys());
    assert_eq!(markers(&at_first), 2);
    at_first
}

/// Three backups: all of it; after one more version and one more delete (only those stored: the new
/// version read from the source, the two versions made noncurrent copied inside the backup store); with
/// nothing changed (no per-object request at all). Returns the first's summary and the history at the
/// second.
async fn incremental_backups(pair: &Pair<'_>, bucket: &str) -> (BackupSummary, History) {
    let (source, bucket) = (pair.source, bucket.to_owned());
    let first = backup(pair, &bucket).await;
    assert!(first.failed.is_empty(), "{first:?}");
    let h = first.history.expect("the history is backed up");
    // 20 + 2 (big) + 3 (three) + 1 (gone) + 2 (again) versions; gone's and again's delete markers.
    assert_eq!((h.versions, h.delete_markers), (28, 2), "{h:?}");
    // Not current: big's first, three's first two, gone's, again's first: read by version id.
    assert_eq!((h.versions_copied, h.versions_copied_in_place), (5, 0), "{h:?}");
    // One GET per current object (23) and per version stored (5); big in parts: ranged GETs are GETs too.
    let gets = requests(&first.requests.source, "GetObject");
    assert!(gets >= 28, "{:?}", first.requests.source);

    step().await;
    put(source, &bucket, "three", b"three, fourth and last".to_vec()).await;
    delete(source, &bucket, "many/00").await;
    let at_second = history(source, &bucket).await;
    // A dry run first: it plans exactly what the run then does, from one version listing, and writes
    // nothing.
    let dry = Backup::new(pair.config().with_source_versions(true))
        .with_buckets(vec![bucket.clone()])
        .with_dry_run(true);
    let planned = Box::pin(dry.run(Arc::new(NoProgress), CancellationToken::new())).await.expect("a dry run");
    assert_eq!(requests(&planned.requests.source, "ListObjectVersions"), 1, "{:?}", planned.requests.source);
    assert_eq!(requests(&planned.requests.source, "GetObject"), 0, "{:?}", planned.requests.source);
    for operation in ["PutObject", "CopyObject", "DeleteObject"] {
        assert_eq!(requests(&planned.requests.destination, operation), 0, "{operation}: {planned:?}");
    }
    let second = backup(pair, &bucket).await;
    assert!(second.failed.is_empty(), "{second:?}");
    assert_eq!(planned.history, second.history, "the dry run's plan and what the run did");
    let c = second.counts;
    assert_eq!([c.changed.objects, c.deleted.objects, c.new.objects], [1, 1, 0], "{second:?}");
    let h = second.history.expect("the history is backed up");
    assert_eq!((h.versions, h.delete_markers), (29, 3), "{h:?}");
    // three's third version and many/00's only one became noncurrent: both copied inside the backup store
    // from what the first snapshot stored; the source is read for the new version only.
    assert_eq!((h.versions_copied, h.versions_copied_in_place, h.dropped), (0, 2, 0), "{h:?}");
    assert_eq!(requests(&second.requests.source, "GetObject"), 1, "{:?}", second.requests.source);
    let written = &second.requests.destination;
    assert_eq!(requests(written, "CopyObject"), 2, "{written:?}");
    // The lease, its confirmation, the manifest (every run); three's new version, the run record before
    // it, the history.
    assert_eq!(requests(written, "PutObject"), 3 + 3, "{written:?}");
    // many/00 deleted, the lease released.
    assert_eq!(requests(written, "DeleteObject"), 1 + 1, "{written:?}");

    let third = backup(pair, &bucket).await;
    let h = third.history.expect("the history is backed up");
    assert_eq!((h.versions, h.delete_markers), (29, 3), "{h:?}");
    assert_eq!((h.versions_copied, h.versions_copied_in_place), (0, 0), "{h:?}");
    for operation in PER_OBJECT_SOURCE {
        assert_eq!(
            requests(&third.requests.source, operation),
            0,
            "{operation}: {:?}",
            third.requests.source
        );
    }
    assert_eq!(requests(&third.requests.source, "ListObjectVersions"), 1, "{:?}", third.requests.source);
    let written = &third.requests.destination;
    assert_eq!(
        requests(written, "CopyObject") + requests(written, "CreateMultipartUpload"),
        0,
        "{written:?}"
    );
    // The lease, its confirmation, the manifest and the history.
    assert_eq!(requests(written, "PutObject"), 3 + 1, "{written:?}");
    (first, at_second)
}

/// The newest history replayed into a bucket where an interrupted replay wrote its first steps (they are
/// not written again), then again (nothing written), then the first snapshot's (by its time); a bucket
/// without versioning refused.
async fn replays(pair: &Pair<'_>, bucket: &str, first_id: &str, at_first: &History, at_second: &History) {
    let (source, bucket) = (pair.source, bucket.to_owned());

    // The newest history, replayed; then again (nothing written); then the first snapshot's, by its time.
    // A replay that was interrupted after the first version of `three` and the whole of `gone`.
    let to = pair.source_bucket("replayed");
    create_bucket(source, &to).await;
    enable_versioning(source, &to).await;
    put(source, &to, "three", b"three, first".to_vec()).await;
    put(source, &to, "gone", b"gone soon".to_vec()).await;
    delete(source, &to, "gone").await;
    let summary = replay(pair, &bucket, &to, Selector::Newest, true).await.expect("the replay");
    assert!(summary.failed.is_empty() && summary.conflicts.is_empty(), "{summary:?}");
    assert_eq!((summary.restored.objects, summary.delete_markers), (27, 2), "{summary:?}");
    assert_eq!(summary.skipped.objects, 2, "{summary:?}");
    let replayed = history(source, &to).await;
    let diff = history_differences(&replayed, at_second);
    assert!(diff.is_empty(), "the newest history: {diff:?}");
    assert_eq!(markers(&replayed), 3);
    assert_eq!(latest(&replayed), latest(at_second), "what is latest");
    let again = replay(pair, &bucket, &to, Selector::Newest, true).await.expect("the replay, again");
    assert!(again.failed.is_empty() && again.conflicts.is_empty(), "{again:?}");
    assert_eq!((again.restored.objects, again.delete_markers), (0, 0), "{again:?}");
    assert_eq!(again.skipped.objects, 29, "{again:?}");
    assert!(history_differences(&history(source, &to).await, at_second).is_empty());

    let to_first = pair.source_bucket("replayed-at");
    let t1 = finished(pair, first_id).await;
    let summary = replay(pair, &bucket, &to_first, Selector::At(t1), true).await.expect("the replay at t1");
    assert_eq!(summary.snapshot_id.as_deref(), Some(first_id), "{summary:?}");
    let diff = history_differences(&history(source, &to_first).await, at_first);
    assert!(diff.is_empty(), "the history as of the first backup: {diff:?}");

    replayed_over(pair, &bucket, at_second).await;

    // Without versioning (and without the configuration that would turn it on): refused, nothing written.
    let plain = pair.source_bucket("plain");
    create_bucket(source, &plain).await;
    let refused = replay(pair, &bucket, &plain, Selector::Newest, false).await;
    match refused {
        Err(Error::Config { field, reason }) => {
            assert_eq!(field, "source_versions");
            assert!(reason.contains("does not keep versions") && !reason.contains('\n'), "{reason}");
        }
        other => panic!("a replay into a bucket without versioning must be refused: {other:?}"),
    }
    assert!(history(source, &plain).await.is_empty(), "nothing written");
}
