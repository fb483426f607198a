//! What each operation reports when it ends: plain data, `Serialize`. The CLI's `--json` output is these,
//! serialized; a service can report or store them the same way.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::format::manifest::{SnapshotStatus, Totals};
use crate::format::retention::Window;
use crate::progress::PlanCounts;

/// An object or bucket that could not be backed up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The bucket.
    pub bucket: String,
    /// The key (empty for a bucket-level failure).
    pub key: String,
    /// Why, on one line.
    pub error: String,
}

/// What a backup run did.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct BackupSummary {
    /// The snapshot id of this run.
    pub snapshot_id: String,
    /// The manifest written (`None` for a dry run).
    #[serde(rename = "manifest")]
    pub manifest_key: Option<String>,
    /// How the snapshot ended.
    pub status: SnapshotStatus,
    /// Nothing was written.
    pub dry_run: bool,
    /// New, changed, unchanged and deleted objects (for a dry run: what would happen).
    #[serde(flatten)]
    pub counts: PlanCounts,
    /// Objects and buckets that failed.
    pub failed: Vec<Failure>,
    /// Objects that vanished from the source between the listing and their copy: carried over at their
    /// previous version; a later run's complete listing deletes them.
    pub vanished: Vec<Failure>,
    /// Objects recorded in the snapshot.
    #[serde(flatten)]
    pub totals: Totals,
    /// Buckets in the snapshot.
    pub buckets: usize,
    /// The snapshot this one is incremental to.
    pub parent: Option<String>,
    /// The run resumed from the checkpoint of an interrupted run.
    pub resumed: bool,
    /// Snapshots pruned (past their restorable window).
    pub pruned: Vec<String>,
    /// Wall time.
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: Duration,
    /// Requests sent, by side and S3 operation.
    pub requests: Requests,
    /// `GetObjectTagging` requests `check_tags` sent to find tag-only changes (0 when it is off, and on
    /// MinIO sources, whose listing carries the tags).
    pub tag_checks: u64,
    /// `source_versions`: what the backup of the source's version history did (`None` when off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<crate::engine::history::HistoryCounts>,
    /// `source_versions` off: stored copies of older source versions, left by runs with it on, that this
    /// run deleted (DESIGN.md §3.1).
    #[serde(skip_serializing_if = "is_zero")]
    pub history_copies_deleted: u64,
}

/// Requests sent to each side, by S3 operation (every attempt counts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Requests {
    /// To the source.
    pub source: BTreeMap<String, u64>,
    /// To the destination.
    pub destination: BTreeMap<String, u64>,
}

/// How the backup being restored was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RestoreMode {
    /// From an s32s3 snapshot manifest.
    Manifest,
    /// From the version listing of a backup written by rclone (no manifests).
    VersionListing,
}

/// What a restore did (or, for a dry run, would do).
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct RestoreSummary {
    /// Manifest or version listing.
    pub mode: RestoreMode,
    /// The snapshot restored (manifest mode).
    pub snapshot_id: Option<String>,
    /// When that snapshot finished (manifest mode), or the `--at` time (version listing).
    pub point_in_time: Option<String>,
    /// The snapshot restored is partial (some objects are at the version of an earlier run).
    pub partial: bool,
    /// Until when that snapshot is guaranteed to restore (manifest mode).
    #[serde(rename = "restorable_until", serialize_with = "until_of")]
    pub window: Option<Window>,
    /// Nothing was written.
    pub dry_run: bool,
    /// Buckets restored (target names).
    pub buckets: Vec<String>,
    /// Objects written.
    pub restored: Totals,
    /// Objects already present and equal.
    pub skipped: Totals,
    /// Objects present and different, left alone (no `overwrite`).
    pub conflicts: Vec<Failure>,
    /// Objects, buckets or settings that failed.
    pub failed: Vec<Failure>,
    /// Things done besides data: IAM import, configuration applied.
    pub notes: Vec<String>,
    /// `--source-versions`: delete markers replayed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delete_markers: u64,
    /// Wall time.
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: Duration,
}

/// What `verify` found.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct VerifySummary {
    /// The snapshot checked.
    pub snapshot_id: String,
    /// Objects checked.
    pub checked: Totals,
    /// Objects whose data was read and compared.
    pub read: Totals,
    /// Bad objects (missing, wrong size, failing authentication or the SHA-256), by bucket and key.
    pub bad: Vec<Failure>,
    /// Objects that could not be read even after the retries (not shown damaged), by bucket and key.
    pub unreadable: Vec<Failure>,
    /// Until when the snapshot is guaranteed to restore.
    #[serde(rename = "restorable_until", serialize_with = "until")]
    pub window: Window,
    /// Wall time.
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: Duration,
}

/// A duration as fractional seconds.
fn seconds<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// A window as the time it ends (`null` while it is open).
fn until<S: Serializer>(window: &Window, serializer: S) -> Result<S::Ok, S::Error> {
    window.until().map(crate::clock::format_rfc3339).serialize(serializer)
}

/// [`until`], for an optional window.
#[allow(clippy::ref_option)] // serde hands serialize_with a reference to the field
fn until_of<S: Serializer>(window: &Option<Window>, serializer: S) -> Result<S::Ok, S::Error> {
    window.and_then(|w| w.until()).map(crate::clock::format_rfc3339).serialize(serializer)
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}
