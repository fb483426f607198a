//! Progress reporting: the engine emits [`Event`]s; the caller renders them (progress bars, logs,
//! metrics). The engine itself never prints.

use serde::{Deserialize, Serialize};

/// Objects and bytes: what runs count, and what manifests record per bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Number of objects.
    pub objects: u64,
    /// Plaintext bytes.
    pub bytes: u64,
}

impl Totals {
    /// Adds one object of `bytes`.
    pub fn add(&mut self, bytes: u64) {
        self.objects += 1;
        self.bytes += bytes;
    }
}

/// What happened to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Copied, not in the previous snapshot.
    New,
    /// Copied, changed since the previous snapshot.
    Changed,
    /// Carried over without a request.
    Unchanged,
    /// Its tags alone changed: recorded with the new tags, no data copied.
    Retagged,
    /// Deleted on the destination.
    Deleted,
    /// Restored (or verified).
    Restored,
    /// Skipped (already present and equal, or filtered).
    Skipped,
}

/// Something the engine reports while it runs.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A step of the run started (`preparing destination`, `exporting MinIO`, …).
    Phase(&'a str),
    /// A bucket's plan is known.
    BucketPlanned {
        /// The bucket.
        bucket: &'a str,
        /// What will happen to its objects.
        counts: &'a PlanCounts,
    },
    /// Object data moved (plaintext bytes), for throughput displays.
    Bytes(u64),
    /// An object is done.
    Object {
        /// The bucket.
        bucket: &'a str,
        /// The key.
        key: &'a str,
        /// What happened.
        outcome: Outcome,
        /// Its plaintext size.
        size: u64,
    },
    /// An object (or a whole bucket, with an empty key) failed; the run goes on and ends partial.
    Failed {
        /// The bucket.
        bucket: &'a str,
        /// The key (empty for a bucket-level failure).
        key: &'a str,
        /// Why, on one line.
        error: &'a str,
    },
    /// Something the operator should know that does not fail the run.
    Warning(&'a str),
    /// A checkpoint was written.
    Checkpoint {
        /// Objects recorded so far.
        objects: u64,
    },
}

/// Receives [`Event`]s. Implementations must be cheap: events come from many tasks at once.
pub trait Progress: Send + Sync {
    /// Handles one event.
    fn event(&self, event: &Event<'_>);
}

/// Ignores every event.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: &Event<'_>) {}
}

/// What a bucket's merge-join will do, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PlanCounts {
    /// Objects not in the previous snapshot.
    pub new: Totals,
    /// Objects whose size, ETag or last-modified changed.
    pub changed: Totals,
    /// Objects carried over.
    pub unchanged: Totals,
    /// Objects gone from the source.
    pub deleted: Totals,
    /// Objects whose tags alone changed (`PutObjectTagging` changes neither ETag nor last-modified): a new
    /// entry with the new tags, no data copied.
    pub retagged: Totals,
}

impl PlanCounts {
    /// Adds another bucket's counts.
    pub fn merge(&mut self, other: &PlanCounts) {
        for (mine, theirs) in [
            (&mut self.new, other.new),
            (&mut self.changed, other.changed),
            (&mut self.unchanged, other.unchanged),
            (&mut self.deleted, other.deleted),
            (&mut self.retagged, other.retagged),
        ] {
            mine.objects += theirs.objects;
            mine.bytes += theirs.bytes;
        }
    }

    /// Whether deleting `deleted` of the previous snapshot's objects stays within `max_delete_percent`.
    #[must_use]
    pub fn deletes_allowed(&self, max_delete_percent: u32) -> bool {
        let previous =
            self.unchanged.objects + self.changed.objects + self.deleted.objects + self.retagged.objects;
        previous == 0 || self.deleted.objects * 100 <= previous * u64::from(max_delete_percent)
    }
}
