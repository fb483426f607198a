//! Progress reporting: the engine emits [`Event`]s; the caller renders them (progress bars, logs,
//! metrics). The engine itself never prints.

use crate::engine::plan::PlanCounts;

/// What happened to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Copied, not in the previous snapshot.
    New,
    /// Copied, changed since the previous snapshot.
    Changed,
    /// Carried over without a request.
    Unchanged,
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
