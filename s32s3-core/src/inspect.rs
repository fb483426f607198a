//! The read-only operation behind `s32s3 snapshots` and the daemon's metrics: what the backup location
//! holds, snapshot by snapshot, and in total.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::error::Result;
use crate::format::manifest::Header;
use crate::format::retention::Window;
use crate::format::snapshots::SnapshotRef;
use crate::options::RunConfig;
use crate::progress::Progress;
use crate::repo::Repository;

/// One snapshot as `s32s3 snapshots` shows it.
#[derive(Clone, Debug)]
pub struct SnapshotInfo {
    /// Where it is and when it finished.
    pub snapshot: SnapshotRef,
    /// Its header, or why it could not be read (or does not belong under its name).
    pub header: std::result::Result<Header, String>,
    /// Until when it is guaranteed to restore (`None` for a checkpoint).
    pub window: Option<Window>,
}

/// The row `s32s3 snapshots --json` prints: the snapshot, what its header says (or why it is unreadable) and
/// until when it restores.
impl serde::Serialize for SnapshotInfo {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let until = self.window.and_then(|w| w.until()).map(crate::clock::format_rfc3339);
        let mut row = serializer.serialize_map(None)?;
        row.serialize_entry("id", &self.snapshot.id)?;
        match &self.header {
            Ok(h) => {
                row.serialize_entry("finished", &crate::clock::format_rfc3339(self.snapshot.finished))?;
                row.serialize_entry("started", &h.started)?;
                row.serialize_entry("status", &h.status)?;
                row.serialize_entry("restorable_until", &until)?;
                row.serialize_entry("restorable", &self.window.map(|w| w.describe()))?;
                row.serialize_entry("buckets", &h.buckets.iter().map(|b| &b.name).collect::<Vec<_>>())?;
                row.serialize_entry("objects", &h.totals.objects)?;
                row.serialize_entry("bytes", &h.totals.bytes)?;
                if let Some(history) = &h.history {
                    row.serialize_entry("source_versions", &history.versions)?;
                    row.serialize_entry("source_delete_markers", &history.delete_markers)?;
                }
                row.serialize_entry("source", &h.source.endpoint)?;
                row.serialize_entry("source_kind", &h.source.kind)?;
                row.serialize_entry("minio_version", &h.source.minio_version)?;
                row.serialize_entry("parent", &h.parent)?;
                row.serialize_entry("key", &self.snapshot.key)?;
            }
            Err(error) => {
                row.serialize_entry("key", &self.snapshot.key)?;
                row.serialize_entry("restorable_until", &until)?;
                row.serialize_entry("error", error)?;
            }
        }
        row.end()
    }
}

/// Every snapshot of the backup location (checkpoints of unfinished runs included), oldest first, with
/// their headers and windows.
///
/// # Errors
/// Configuration, password, credential and reachability problems; a missing backup bucket.
pub async fn describe(config: &RunConfig, progress: Arc<dyn Progress>) -> Result<Vec<SnapshotInfo>> {
    let cx = Repository::open(config, progress, false).await?;
    let state = cx.inspect_existing().await?;
    let location = cx.snapshots();
    let history = location.history(state.records_since()).await?;
    let mut out = Vec::new();
    for snapshot in &history.catalog.manifests {
        let header = location.header(snapshot).await.map_err(|e| e.to_string());
        let window = (!snapshot.checkpoint).then(|| history.window(snapshot));
        out.push(SnapshotInfo { snapshot: snapshot.clone(), header, window });
    }
    Ok(out)
}

/// What the backup location holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Snapshots (manifests, checkpoints excluded).
    pub snapshots: u64,
    /// When the newest complete snapshot finished: a restarted daemon reports its last success from it.
    pub last_complete: Option<OffsetDateTime>,
    /// Object versions, all of them (current and noncurrent).
    pub versions: u64,
    /// Bytes of all those versions: what the destination stores.
    pub bytes: u64,
}

/// Counts snapshots, finds the newest complete one and sums every stored version under the backup
/// location (for metrics).
///
/// # Errors
/// Configuration, password, credential and reachability problems.
pub async fn storage_stats(config: &RunConfig, progress: Arc<dyn Progress>) -> Result<StorageStats> {
    let cx = Repository::open(config, progress, false).await?;
    if !cx.dest.bucket_exists(cx.bucket()).await? {
        return Ok(StorageStats::default());
    }
    let location = cx.snapshots();
    let snapshots: Vec<SnapshotRef> =
        location.catalog().await?.manifests.into_iter().filter(|s| !s.checkpoint).collect();
    let newest = location.newest_complete(snapshots.iter()).await?;
    let mut stats = StorageStats {
        snapshots: snapshots.len() as u64,
        last_complete: newest.map(|(snapshot, _)| snapshot.finished),
        ..Default::default()
    };
    cx.dest
        .list_versions_in_order(cx.bucket(), Some(cx.layout.root()), |v| {
            if !v.delete_marker {
                stats.versions += 1;
                stats.bytes += v.size;
            }
        })
        .await?;
    Ok(stats)
}
