//! The backup run (the project's `DESIGN.md`, "Backup run").
//!
//! 1. Read-only checks: source reachable and the named buckets exist, the backup location's password and
//!    format match. Nothing is written before all of them pass.
//! 2. The bucket and its versioning, then the lease; under the lease: config.json, a prune of the
//!    snapshots past their window (before the lifecycle may shorten any window), the lifecycle rules.
//! 3. Per bucket, in name order: read its configuration, list it (sorted), plan the merge-join against the
//!    previous snapshot (plus the checkpoint of an interrupted run), then execute it in order: unchanged
//!    objects are carried over without a request, new and changed ones copied, deleted ones deleted.
//!    Before the first write that may replace a stored version the run writes its run record
//!    ([`crate::format::retention`]); before every write it checks the lease.
//! 4. Checkpoint every `checkpoint_interval`; at the end write the manifest, prune, release the lease.
//!
//! A run that must stop (cancelled, the source or destination unreachable, bad credentials) stops
//! starting transfers, lets those in flight finish, carries everything else over at its previous version
//! and, if it had written anything, writes a *partial* snapshot: every listed snapshot names only versions
//! that are current or within their window. A run that lost its lease writes nothing more at all.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::StreamExt as _;
use futures::future::BoxFuture;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::engine::bucket_config;
use crate::engine::history::{HistoryCounts, HistoryPlan, SourceHistory, Window, previous_records};
use crate::engine::listing::{Sorted, SortedListing, list_into};
use crate::engine::parts::PendingUpload;
use crate::engine::plan::{Action, MergeJoin, MergeNewest, PlanCounts, PreviousEntries};
use crate::engine::transfer::{Copied, Copier, CopyFailure, WriteGate};
use crate::error::S3ErrorKind;
use crate::error::{Error, Result};
use crate::format::destination;
use crate::format::lease::Lease;
use crate::format::manifest::{
    BucketRecord, Entry, EntryLine, Header, InstanceRefs, Location, ManifestWriter, SnapshotStatus,
    SourceInfo, Totals,
};
use crate::format::retention::{lock_needs_extension, lock_until, min_days, prune_plan};
use crate::format::snapshots::{self, Catalog, SnapshotRef, put_file};
use crate::format::spool::{ExternalSort, SortedItems};
use crate::options::RunConfig;
use crate::progress::{Event, Outcome, Progress};
use crate::repo::Repository;
use crate::shard::Shard;
use crate::store::limit::Limits;
use crate::store::s3::Store;
use crate::store::{ObjectAttrs, ReadOptions, WriteCondition};
pub use crate::summary::{BackupSummary, Failure, Requests};

/// A backup of a source store into the backup location. See the module docs for the steps.
#[derive(Clone, Debug)]
pub struct Backup {
    config: RunConfig,
    buckets: Vec<String>,
    dry_run: bool,
    shard: Option<Shard>,
}

impl Backup {
    /// A backup of every bucket of the source.
    #[must_use]
    pub fn new(config: RunConfig) -> Self {
        Self { config, buckets: Vec::new(), dry_run: false, shard: None }
    }

    crate::options::setters! {
        /// Backs up only these buckets (the others of the previous snapshot are carried over unchanged).
        with_buckets(buckets: Vec<String>);
        /// Plans without writing anything: the summary says what a run would do.
        with_dry_run(dry_run: bool);
        /// Makes this process one shard of a sharded run ([`crate::shard`]): it copies the objects the shard
        /// owns and writes its part; the last shard to finish writes the run's one snapshot.
        with_shard(shard: Option<Shard>);
    }

    /// Runs the backup.
    ///
    /// # Errors
    /// Configuration, password, credential and reachability problems before anything is written; failures
    /// that stop the whole run (then a partial snapshot keeps what was done, if anything was);
    /// [`Error::Cancelled`] when `cancel` fired; [`Error::Locked`] when another run holds the location or
    /// took it over. Failures of single objects do not stop the run: they end up in
    /// [`BackupSummary::failed`] with a partial snapshot.
    ///
    /// # Cancel safety
    /// Cancel through `cancel`, not by dropping the future: the token lets in-flight uploads finish or
    /// abort, writes the partial snapshot and releases the lease.
    pub async fn run(&self, progress: Arc<dyn Progress>, cancel: CancellationToken) -> Result<BackupSummary> {
        let started_at = Instant::now();
        if self.shard.is_some() && self.config.source_versions {
            return Err(Error::Config {
                field: "source_versions".into(),
                reason: "a sharded run does not back up the source's version history yet: run it without \
                         --shard, or without source_versions"
                    .into(),
            });
        }
        let cx = Repository::open(&self.config, progress, true).await?;
        let plan = self.plan(&cx).await?;
        if self.dry_run {
            let listing_tags = plan.minio.as_ref().is_some_and(crate::instance::Minio::lists_tags);
            return cx
                .dry_run(
                    plan.snapshot_id,
                    plan.selected,
                    plan.previous,
                    listing_tags,
                    self.shard.as_ref(),
                    started_at,
                )
                .await;
        }
        Box::pin(self.execute(&cx, plan, cancel, started_at)).await
    }

    /// Step 1, read-only: what the source holds, what the location holds and the previous snapshot.
    async fn plan(&self, cx: &Repository) -> Result<BackupPlan> {
        let started = cx.now();
        let snapshot_id = self.shard.as_ref().map_or_else(crate::format::new_id, |s| s.run_id().to_owned());
        cx.progress.event(&Event::Phase("checking the source"));
        let source_buckets = cx.source.list_buckets().await?;
        let selected = self.selected_buckets(&source_buckets)?;
        let minio = crate::instance::detect(cx).await?;
        cx.progress.event(&Event::Phase("checking the backup location"));
        let state = cx.inspect().await?;
        let catalog = if state.bucket_exists { cx.snapshots().catalog().await? } else { Catalog::default() };
        let previous = cx.load_previous(&catalog, self.shard.as_ref()).await?;
        let shard_start = match &self.shard {
            Some(_) if !state.bucket_exists => Some(ShardStart::Copy),
            Some(shard) if !self.dry_run => Some(shard_start(cx, shard, &catalog, &previous).await?),
            _ => None,
        };
        Ok(BackupPlan {
            snapshot_id,
            started,
            source_buckets,
            selected,
            minio,
            state,
            catalog,
            previous,
            shard_start,
        })
    }

    /// Steps 2 to 4: the bucket and the lease, then under the lease the location's preparation, the copy
    /// of every bucket, and the snapshot.
    async fn execute(
        &self,
        cx: &Repository,
        plan: BackupPlan,
        cancel: CancellationToken,
        started_at: Instant,
    ) -> Result<BackupSummary> {
        let BackupPlan {
            snapshot_id,
            started,
            source_buckets,
            selected,
            minio,
            state,
            catalog,
            previous,
            shard_start,
        } = plan;
        if let Some(ShardStart::Complete(snapshot)) = shard_start {
            return cx.already_complete(&snapshot, started_at).await;
        }
        let shard = self.shard.as_ref();
        cx.progress.event(&Event::Phase("preparing the backup location"));
        destination::ensure_bucket(&cx.dest, cx.bucket(), &state, cx.config.object_lock).await?;
        let lease = cx.lease(&snapshot_id, "backup", shard.map(Shard::lease)).await?;
        let record_id = shard.map_or_else(|| snapshot_id.clone(), Shard::own_id);
        let prepared =
            prepare_under_lease(cx, &state, &catalog, &record_id, lease, previous.interrupted, shard).await;
        let (gate, records_since, pruned_at_start) = match prepared {
            Ok(prepared) => prepared,
            Err((lease, e)) => {
                let _ = lease.release().await;
                return Err(e);
            }
        };
        let run_cancel = cancel.child_token();
        let watcher = {
            let (run_cancel, lost) = (run_cancel.clone(), gate.lease.lost());
            tokio::spawn(async move {
                lost.cancelled().await;
                run_cancel.cancel();
            })
        };
        let resumed = previous.resumed;
        let mut run =
            Run::new(cx, snapshot_id, started, &previous, minio.as_ref(), run_cancel, &gate)?.sharded(shard);
        let part_done = matches!(shard_start, Some(ShardStart::PartDone));
        if !part_done {
            Box::pin(run.copy_everything(minio.as_ref(), &selected, &source_buckets, previous)).await;
        }
        watcher.abort();
        if cancel.is_cancelled() && run.stopped.is_none() {
            run.stop(Error::Cancelled);
        }
        let finished = match shard {
            Some(shard) => run.finish_shard(shard, part_done, records_since).await,
            None => run.finish(&catalog, &pruned_at_start, records_since).await.map(|(k, p)| (Some(k), p)),
        };
        let merged = matches!(&finished, Ok((Some(_), _)));
        if shard.is_some() && !merged {
            // The other shards of the run may still be at work: the lease is theirs now.
            gate.lease.leave();
        } else if let Err(e) = gate.lease.release().await {
            // The run's work is written; the lock expires by itself.
            cx.progress.event(&Event::Warning(&format!(
                "the lease could not be released (it expires by itself): {e}"
            )));
        }
        let (manifest_key, mut pruned) = finished?;
        pruned.splice(0..0, pruned_at_start);
        Ok(run.summary(manifest_key, resumed, pruned, started_at.elapsed()))
    }

    fn selected_buckets(&self, source_buckets: &[String]) -> Result<Vec<String>> {
        if self.buckets.is_empty() {
            return Ok(source_buckets.to_vec());
        }
        let mut selected: Vec<String> = self.buckets.clone();
        selected.sort();
        selected.dedup();
        for name in &selected {
            if !source_buckets.contains(name) {
                return Err(Error::Config {
                    field: "bucket".into(),
                    reason: format!(
                        "the source has no bucket {name:?} (it has: {})",
                        source_buckets.join(", ")
                    ),
                });
            }
        }
        Ok(selected)
    }
}

/// Under the lease, before any data: the location must keep versions (the lock's write must have
/// returned a version id), config.json, a prune under the expiration about to apply, then the lifecycle
/// (the run record first when its expiration changes). On failure the lease is handed back to be released.
async fn prepare_under_lease(
    cx: &Repository,
    state: &destination::DestinationState,
    catalog: &Catalog,
    run_id: &str,
    lease: Lease,
    interrupted: bool,
    shard: Option<&Shard>,
) -> std::result::Result<(Arc<RunGate>, OffsetDateTime, Vec<String>), (Lease, Error)> {
    let bucket = cx.bucket();
    if lease.version_id().is_none() {
        let e = Error::Config {
            field: "destination".into(),
            reason: format!(
                "s3://{bucket} accepted versioning but returned no version id for s3://{bucket}/{}: it does not keep \
                 versions, so snapshots could not restore; use a destination with S3 versioning",
                cx.layout.meta("lock")
            ),
        };
        return Err((lease, e));
    }
    let steps = async {
        let records_since =
            destination::ensure_config(&cx.dest, bucket, &cx.layout, &cx.cipher, state, cx.now()).await?;
        let lifecycle =
            destination::plan_lifecycle(&cx.dest, bucket, &cx.layout, cx.config.expiration_days).await?;
        let days = min_days(lifecycle.days_before, lifecycle.days_after);
        Ok::<_, Error>((records_since, lifecycle, days))
    };
    let (records_since, lifecycle, days) = match steps.await {
        Ok(done) => done,
        Err(e) => return Err((lease, e)),
    };
    let gate = Arc::new(RunGate {
        lease,
        dest: cx.dest.clone(),
        bucket: bucket.to_owned(),
        layout: cx.layout.clone(),
        run_id: run_id.to_owned(),
        days,
        clock: cx.config.clock.clone(),
        record: tokio::sync::OnceCell::new(),
    });
    let steps = async {
        // Pruned under the shorter of the old and new expiration, before the new one can apply. The shards of
        // a run leave it to the one that merges (it prunes at the end, under the records of every shard).
        let pruned = if shard.is_some() {
            Vec::new()
        } else {
            prune(cx, &gate, catalog, records_since, days, run_id, false).await?
        };
        if lifecycle.changes_expiration() {
            gate.record().await?;
        }
        let warn = |m: &str| cx.progress.event(&Event::Warning(m));
        destination::apply_lifecycle(&cx.dest, bucket, &lifecycle, &warn).await?;
        // Other shards' uploads are in flight: the merge aborts what a sharded run left.
        if interrupted && shard.is_none() {
            abort_uploads_left_behind(cx).await?;
        }
        Ok::<_, Error>(pruned)
    };
    match steps.await {
        Ok(pruned) => Ok((gate, records_since, pruned)),
        Err(e) => match Arc::try_unwrap(gate) {
            Ok(gate) => Err((gate.lease, e)),
            Err(_) => unreachable!("the gate is not shared yet"),
        },
    }
}

/// The lease and the run record: what every write of the run passes.
struct RunGate {
    lease: Lease,
    dest: Store,
    bucket: String,
    layout: crate::format::layout::Layout,
    run_id: String,
    /// The expiration in effect around this run (the smaller of before and after its lifecycle change).
    days: Option<u32>,
    clock: crate::clock::Clock,
    record: tokio::sync::OnceCell<crate::format::retention::RunRecord>,
}

impl RunGate {
    /// Writes the run record, once, before the first write that may replace a stored version.
    async fn record(&self) -> Result<()> {
        self.record
            .get_or_try_init(|| async {
                self.lease.check().await?;
                let time = self.clock.now();
                let key = snapshots::put_run_record(
                    &self.dest,
                    &self.bucket,
                    &self.layout,
                    &self.run_id,
                    time,
                    self.days,
                )
                .await?;
                Ok::<_, Error>(crate::format::retention::RunRecord {
                    key,
                    id: self.run_id.clone(),
                    time: snapshots::to_millis(time),
                    days: self.days,
                })
            })
            .await
            .map(|_| ())
    }

    /// Whether the run may have replaced stored versions (it wrote its run record).
    fn may_have_replaced(&self) -> bool {
        self.record.initialized()
    }
}

impl WriteGate for RunGate {
    fn before_write(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async {
            self.lease.check().await?;
            self.record().await
        })
    }
}

/// `source_versions` is off: stored copies of older source versions, which a run with it on left under
/// `.s32s3/versions/`, are named by no snapshot from now on, so they are deleted — a delete marker each,
/// through the run's write gate. The snapshots that still name them read them by version id, and the
/// lifecycle keeps a noncurrent version `expiration_days`, past the window of every snapshot taken before:
/// their history stays restorable. A page (1000) at a time, so memory stays bounded however long the
/// history was. A failure is a warning; the next run goes on where this one stopped. Returns how many
/// were deleted.
async fn delete_version_copies(cx: &Repository, gate: &RunGate) -> u64 {
    let prefix = cx.layout.meta("versions/");
    let warn = |what: String| {
        cx.progress.event(&Event::Warning(&format!(
            "source_versions is off, but deleting the stored copies of older source versions under {prefix}              stopped (the next run goes on): {what}"
        )));
    };
    let mut deleted = 0;
    let mut last: Vec<String> = Vec::new();
    loop {
        let page = match cx.dest.list_first(cx.bucket(), Some(&prefix), 1000).await {
            Ok(page) => page.into_iter().map(|o| o.key).collect::<Vec<_>>(),
            Err(e) => {
                warn(format!("listing them failed: {e}"));
                break;
            }
        };
        if page.is_empty() {
            break;
        }
        if page == last {
            warn("the store still lists the copies just deleted".to_owned());
            break;
        }
        if deleted == 0 {
            cx.progress.event(&Event::Phase(
                "source_versions is off: deleting the stored copies of older source versions",
            ));
        }
        if let Err(e) = gate.before_write().await {
            warn(e.to_string());
            break;
        }
        let transfers = cx.config.transfer.transfers.max(1);
        let results: Vec<Result<()>> = futures::stream::iter(&page)
            .map(|key| cx.dest.delete(cx.bucket(), key))
            .buffer_unordered(transfers)
            .collect()
            .await;
        let failed: Vec<&Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        deleted += (results.len() - failed.len()) as u64;
        if let Some(first) = failed.first() {
            warn(format!("{} of {} deletes failed, the first: {first}", failed.len(), results.len()));
            break;
        }
        last = page;
    }
    if deleted > 0 {
        cx.progress.event(&Event::Phase(&format!(
            "source_versions is off: deleted {deleted} stored copies of older source versions (the lifecycle \
             expires them after {} days)",
            cx.config.expiration_days
        )));
    }
    deleted
}

/// Prunes the snapshots past their window (with their MinIO exports) and the run records no window needs;
/// with `scan_exports`, also the exports of runs that left no manifest (one listing of all exports).
/// Returns the keys of the manifests pruned.
async fn prune(
    cx: &Repository,
    gate: &RunGate,
    catalog: &Catalog,
    records_since: OffsetDateTime,
    days: Option<u32>,
    run_id: &str,
    scan_exports: bool,
) -> Result<Vec<String>> {
    gate.lease.check().await?;
    let retention = catalog.retention(Some(records_since), days);
    let plan = prune_plan(&retention, cx.now());
    let expired: BTreeSet<&str> = plan.snapshots.iter().map(|s| s.id.as_str()).collect();
    let live: BTreeSet<&str> = catalog
        .manifests
        .iter()
        .filter(|m| !expired.contains(m.id.as_str()))
        .map(|m| m.id.as_str())
        .chain([run_id])
        .collect();
    // Exports belong to their snapshot: those of pruned snapshots go, and those of runs that left none.
    let mut exports = Vec::new();
    let prefix = cx.layout.meta("instance/");
    let scans: Vec<String> = if scan_exports {
        vec![prefix.clone()]
    } else {
        expired.iter().map(|id| format!("{prefix}{id}/")).collect()
    };
    for scan in scans {
        cx.dest
            .list_objects(cx.bucket(), Some(&scan), |objects| {
                for object in objects {
                    let key = object.key;
                    let id = key[prefix.len().min(key.len())..].split('/').next().unwrap_or_default();
                    if !live.contains(id) {
                        exports.push(key);
                    }
                }
                Ok(true)
            })
            .await?;
    }
    let keys = plan.snapshots.iter().map(|s| s.key.clone()).chain(plan.runs.iter().map(|r| r.key.clone()));
    for key in keys.chain(exports) {
        delete_quietly(cx, &key).await;
    }
    Ok(plan.snapshots.into_iter().map(|s| s.key).collect())
}

/// Deletes one of s32s3's own objects (a delete marker; its versions expire with the lifecycle); a failure
/// is a warning, the next prune tries again.
async fn delete_quietly(cx: &Repository, key: &str) {
    if let Err(e) = cx.dest.delete(cx.bucket(), key).await {
        cx.progress.event(&Event::Warning(&format!("could not delete {key}: {e}")));
    }
}

/// What a backup found before writing anything (step 1).
struct BackupPlan {
    snapshot_id: String,
    started: time::OffsetDateTime,
    source_buckets: Vec<String>,
    selected: Vec<String>,
    minio: Option<crate::instance::Minio>,
    state: destination::DestinationState,
    catalog: Catalog,
    previous: Previous,
    /// Where a shard of a sharded run starts.
    shard_start: Option<ShardStart>,
}

/// Where a shard of a sharded run starts.
enum ShardStart {
    /// Copy what it owns, then write its part.
    Copy,
    /// Its part is written (an earlier attempt wrote it): only the merge may be left to do.
    PartDone,
    /// The run's snapshot exists: nothing is left to do.
    Complete(SnapshotRef),
}

/// Where shard `shard` starts: the run's snapshot may exist already, its own part may, and the parts written
/// so far must have started from the snapshot this shard would start from (a run whose shards started from
/// different snapshots could not be one snapshot).
async fn shard_start(
    cx: &Repository,
    shard: &Shard,
    catalog: &Catalog,
    previous: &Previous,
) -> Result<ShardStart> {
    if let Some(done) = catalog.snapshots().find(|s| s.id == shard.run_id()) {
        return Ok(ShardStart::Complete(done.clone()));
    }
    let parts = cx.list_keys(&shard.parts_prefix(&cx.layout)).await?;
    let present = shard.parts_present(&cx.layout, &parts);
    let base = previous.parent.as_ref().map(|p| p.id.clone());
    if let Some(first) = present.first() {
        let header = cx.open_part(shard, *first).await?.header().clone();
        if header.parent != base {
            let name = |id: &Option<String>| {
                id.clone().map_or_else(|| "no snapshot".into(), |id| format!("snapshot {id}"))
            };
            return Err(Error::Config {
                field: "run_id".into(),
                reason: format!(
                    "run {} started from {}, but the newest snapshot is now {}: the run cannot be completed; \
                     start a new run with a new run id",
                    shard.run_id(),
                    name(&header.parent),
                    name(&base)
                ),
            });
        }
    }
    if present.contains(&shard.index()) {
        cx.progress.event(&Event::Warning(&format!(
            "shard {}/{} of run {} finished before: only the merge may be left to do",
            shard.index(),
            shard.count(),
            shard.run_id()
        )));
        return Ok(ShardStart::PartDone);
    }
    Ok(ShardStart::Copy)
}

/// The previous snapshot (and checkpoint), ready for the merge-joins.
struct Previous {
    parent: Option<SnapshotRef>,
    resumed: bool,
    parent_header: Option<Header>,
    entries: PreviousEntries,
    /// A run since the parent stopped without a snapshot (a run record or a checkpoint after it): what it
    /// wrote is recorded nowhere, so this run reconciles the location before it writes its own.
    interrupted: bool,
}

impl Repository {
    /// The newest readable snapshot and, if the run after it was interrupted, its checkpoint. Manifests
    /// that do not decrypt or are not what their names say are reported and skipped.
    async fn load_previous(&self, catalog: &Catalog, shard: Option<&Shard>) -> Result<Previous> {
        let parent_found = self.first_readable(catalog.snapshots().rev(), |_| true).await?;
        let (parent, parent_reader) = parent_found.map_or((None, None), |(s, r)| (Some(s), Some(r)));
        // The newest checkpoint based on that same parent; older or foreign ones are stale. A shard resumes
        // only its own.
        let parent_id = parent.as_ref().map(|p: &SnapshotRef| p.id.clone());
        let own = shard.map(Shard::own_id);
        let checkpoints = catalog
            .manifests
            .iter()
            .rev()
            .filter(|s| s.checkpoint && own.as_ref().is_none_or(|own| *own == s.id));
        let checkpoint_reader = self
            .first_readable(checkpoints, |r| r.header().parent == parent_id)
            .await?
            .map(|(candidate, reader)| {
                self.progress.event(&Event::Warning(&format!(
                    "resuming the interrupted run {} ({} objects already recorded)",
                    candidate.id,
                    reader.header().totals.objects
                )));
                reader
            });
        let checkpoint_used = checkpoint_reader.is_some();
        let since = parent.as_ref().map(|p| p.finished);
        let interrupted = catalog.runs.iter().any(|r| since.is_none_or(|s| r.time > s))
            || catalog.manifests.iter().any(|m| m.checkpoint && since.is_none_or(|s| m.finished > s));
        let parent_header = parent_reader.as_ref().map(|r| r.header().clone());
        let dir = self.work.path().to_owned();
        let shard = shard.cloned();
        let entries = tokio::task::spawn_blocking(move || {
            let older: Box<dyn Iterator<Item = Result<EntryLine>> + Send> = match parent_reader {
                Some(r) => Box::new(r.lines()),
                None => Box::new(std::iter::empty()),
            };
            let newer: Box<dyn Iterator<Item = Result<EntryLine>> + Send> = match checkpoint_reader {
                Some(r) => Box::new(r.lines()),
                None => Box::new(std::iter::empty()),
            };
            let merged = MergeNewest::new(older, newer);
            // A shard merge-joins only the entries it owns.
            let owned = merged.filter(|e| match (e, &shard) {
                (Ok(e), Some(shard)) => shard.owns(&e.bucket, &e.key),
                _ => true,
            });
            PreviousEntries::split(owned, &dir)
        })
        .await
        .expect("does not panic")?;
        Ok(Previous { parent, resumed: checkpoint_used, parent_header, entries, interrupted })
    }

    /// The first of `candidates` that opens as what its name says and is `wanted`; those that do not open
    /// are reported and skipped.
    async fn first_readable<'a>(
        &self,
        candidates: impl Iterator<Item = &'a SnapshotRef>,
        wanted: impl Fn(&crate::format::manifest::ManifestReader) -> bool,
    ) -> Result<Option<(SnapshotRef, crate::format::manifest::ManifestReader)>> {
        for candidate in candidates {
            let opened = self.snapshots().open(candidate).await;
            match opened {
                Ok(reader) if wanted(&reader) => return Ok(Some((candidate.clone(), reader))),
                Ok(_) => {}
                Err(e @ Error::Corrupt { .. }) => {
                    self.progress.event(&Event::Warning(&format!("skipping {}: {e}", candidate.key)));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    async fn dry_run(
        &self,
        snapshot_id: String,
        selected: Vec<String>,
        mut previous: Previous,
        listing_tags: bool,
        shard: Option<&Shard>,
        started_at: Instant,
    ) -> Result<BackupSummary> {
        let mut counts = PlanCounts::default();
        for bucket in &selected {
            let mut sorter = SortedListing::new(self.work.path()).only(shard, bucket);
            list_into(&self.source, bucket, None, listing_tags, &mut sorter).await?;
            let mut sorted = sorter.finish()?;
            let mut bucket_counts = PlanCounts::default();
            for action in MergeJoin::new(sorted.iter()?, previous.entries.lines(bucket)?) {
                bucket_counts.count(&action?);
            }
            self.progress.event(&Event::BucketPlanned { bucket, counts: &bucket_counts });
            counts.merge(&bucket_counts);
        }
        let history = if self.config.source_versions {
            Some(self.plan_history(&selected, &mut previous).await?)
        } else {
            None
        };
        Ok(BackupSummary {
            snapshot_id,
            manifest_key: None,
            status: SnapshotStatus::Complete,
            dry_run: true,
            counts,
            failed: Vec::new(),
            vanished: Vec::new(),
            totals: Totals {
                objects: counts.new.objects
                    + counts.changed.objects
                    + counts.unchanged.objects
                    + counts.retagged.objects,
                bytes: counts.new.bytes
                    + counts.changed.bytes
                    + counts.unchanged.bytes
                    + counts.retagged.bytes,
            },
            buckets: selected.len(),
            parent: previous.parent.map(|p| p.id),
            resumed: false,
            pruned: Vec::new(),
            duration: started_at.elapsed(),
            requests: Requests { source: self.source.requests(), destination: self.dest.requests() },
            tag_checks: 0,
            history,
            history_copies_deleted: 0,
        })
    }

    /// `source_versions`, dry: what the run would record, store and drop of the source's version history,
    /// from the same listings and merge-join as the run's (one `ListObjectVersions` per versioned bucket
    /// selected, one `GetBucketVersioning` each, and the previous history read), nothing stored.
    async fn plan_history(&self, selected: &[String], previous: &mut Previous) -> Result<HistoryCounts> {
        let window = Window {
            now: self.now(),
            days: self.config.expiration_days,
            lock: self.config.object_lock.mode(),
        };
        let parent = previous.parent_header.as_ref();
        let records = previous_records(
            &self.dest,
            self.bucket(),
            &self.cipher,
            self.work.path(),
            &*self.progress,
            parent,
        )
        .await?;
        let mut plan = HistoryPlan::new(records, window);
        // Every bucket the run would go through, in order, as it does (`Run::all_buckets`).
        let all: BTreeSet<String> = selected
            .iter()
            .cloned()
            .chain(previous.entries.bucket_names().map(str::to_owned))
            .chain(parent.into_iter().flat_map(|h| h.buckets.iter().map(|b| b.name.clone())))
            .collect();
        for bucket in &all {
            if selected.contains(bucket) && self.source.keeps_versions(bucket).await? {
                self.progress.event(&Event::Phase(&format!("bucket {bucket}: version history")));
                plan.bucket(&self.source, bucket, previous.entries.lines(bucket)?).await?;
            } else {
                plan.carry(bucket)?;
            }
        }
        Ok(plan.counts())
    }
}

/// One executing run's state.
struct Run<'a> {
    cx: &'a Repository,
    source: SourceInfo,
    instance: Option<InstanceRefs>,
    snapshot_id: String,
    started: OffsetDateTime,
    parent: Option<String>,
    writer: ManifestWriter,
    records: Vec<BucketRecord>,
    counts: PlanCounts,
    failed: Vec<Failure>,
    vanished: Vec<Failure>,
    last_checkpoint: Instant,
    checkpoint_written: bool,
    cancel: CancellationToken,
    limits: Arc<Limits>,
    gate: Arc<RunGate>,
    /// Why the run stopped early, if it did: everything not done yet is carried over.
    stopped: Option<Error>,
    /// An earlier run stopped without a snapshot and the location is not reconciled yet ([`Run::reconcile`]).
    unreconciled: bool,
    /// The source answers MinIO's admin API but is not known to send tags and object lock with a GET.
    head_for_attributes: bool,
    /// The source lists each object's tags (MinIO's `metadata=true` listing).
    listing_tags: bool,
    /// `GetObjectTagging` requests `check_tags` sent.
    tag_checks: Arc<AtomicU64>,
    /// `source_versions`: the source's version history, and what the header says of it once written.
    history: Option<SourceHistory>,
    history_ref: Option<crate::format::manifest::HistoryRef>,
    /// `source_versions` off: the stored copies of older versions this run deleted.
    history_copies_deleted: u64,
    /// The shard of a sharded run this process is.
    shard: Option<Shard>,
    /// The id its checkpoints are written under: the snapshot id, or for a shard the run id and shard.
    checkpoint_id: String,
    /// The status of the snapshot this shard merged, when it merged the run.
    merged_status: Option<SnapshotStatus>,
}

/// The result of one action, in order.
enum Step {
    /// Record this entry, copied (boxed: a step of the common kind, an unchanged entry, is a third its size).
    Record(Box<Entry>, Outcome),
    /// The object is unchanged: its previous entry goes into the snapshot as it was.
    Unchanged(EntryLine),
    /// Keep the previous entry: it was not deleted (the run stopped, or `max_delete` held it back).
    Carry(EntryLine),
    /// Deleted on the destination.
    Deleted(EntryLine),
    /// Deleting failed: the entry stays current and is kept.
    DeleteFailed(EntryLine, Error),
    /// Gone from the source between the listing and its copy.
    Vanished { key: String, previous: Option<EntryLine> },
    /// The copy failed.
    Failed { key: String, previous: Option<EntryLine>, failure: CopyFailure },
}

/// Failures after which nothing more can be done well: the run stops and carries the rest over.
fn stops_the_run(e: &Error) -> bool {
    matches!(e, Error::Locked(_) | Error::Cancelled | Error::Io { .. })
        || matches!(e.s3_kind(), Some(S3ErrorKind::BadCredentials | S3ErrorKind::Unreachable))
}

impl<'a> Run<'a> {
    fn new(
        cx: &'a Repository,
        snapshot_id: String,
        started: OffsetDateTime,
        previous: &Previous,
        minio: Option<&crate::instance::Minio>,
        cancel: CancellationToken,
        gate: &Arc<RunGate>,
    ) -> Result<Self> {
        Ok(Run {
            checkpoint_id: snapshot_id.clone(),
            shard: None,
            merged_status: None,
            source: crate::instance::source_info(cx, minio),
            instance: None,
            cx,
            snapshot_id,
            started,
            parent: previous.parent.as_ref().map(|p| p.id.clone()),
            writer: ManifestWriter::new(cx.work.path())?,
            records: Vec::new(),
            counts: PlanCounts::default(),
            failed: Vec::new(),
            vanished: Vec::new(),
            last_checkpoint: Instant::now(),
            checkpoint_written: false,
            cancel,
            limits: Arc::new(Limits::new(&cx.config.transfer)),
            gate: Arc::clone(gate),
            stopped: None,
            unreconciled: previous.interrupted,
            head_for_attributes: minio.is_some_and(|m| !m.get_carries_attributes()),
            listing_tags: minio.is_some_and(crate::instance::Minio::lists_tags),
            tag_checks: Arc::new(AtomicU64::new(0)),
            history: None,
            history_ref: None,
            history_copies_deleted: 0,
        })
    }

    /// Makes the run shard `shard` of a sharded run (nothing changes for `None`): its checkpoints carry the
    /// shard's id, and the reconciliation is left to the shard that merges.
    fn sharded(mut self, shard: Option<&Shard>) -> Self {
        if let Some(shard) = shard {
            self.checkpoint_id = shard.own_id();
            self.shard = Some(shard.clone());
            self.unreconciled = false;
        }
        self
    }

    /// Step 3: the MinIO exports, every bucket, and the reconciliation an interrupted run left to do. A
    /// failure stops the run (everything not done yet is carried over) instead of ending it.
    async fn copy_everything(
        &mut self,
        minio: Option<&crate::instance::Minio>,
        selected: &[String],
        source_buckets: &[String],
        previous: Previous,
    ) {
        let first_shard = self.shard.as_ref().is_none_or(|s| s.index() == 0);
        if let Some(minio) = minio
            && first_shard
            && let Err(e) = self.export_instance(minio).await
        {
            self.stop(e);
        }
        if self.cx.config.source_versions {
            let cx = self.cx;
            let window =
                Window { now: cx.now(), days: cx.config.expiration_days, lock: cx.config.object_lock.mode() };
            let copier = self.copier();
            match SourceHistory::load(&copier, cx.work.path(), window, previous.parent_header.as_ref()).await
            {
                Ok(history) => self.history = Some(history),
                Err(e) => self.stop(e),
            }
        }
        if let Err(e) = self.all_buckets(selected, source_buckets, previous).await {
            self.stop(e);
        }
        if self.unreconciled
            && self.stopped.is_none()
            && let Err(e) = self.reconcile().await
        {
            self.stop(e);
        }
    }

    fn summary(
        self,
        manifest_key: Option<String>,
        resumed: bool,
        pruned: Vec<String>,
        duration: std::time::Duration,
    ) -> BackupSummary {
        BackupSummary {
            status: self.merged_status.unwrap_or_else(|| self.status()),
            snapshot_id: self.snapshot_id,
            manifest_key,
            dry_run: false,
            counts: self.counts,
            totals: self.writer.totals(),
            buckets: self.records.len(),
            failed: self.failed,
            vanished: self.vanished,
            parent: self.parent,
            resumed,
            pruned,
            duration,
            requests: Requests { source: self.cx.source.requests(), destination: self.cx.dest.requests() },
            tag_checks: self.tag_checks.load(Ordering::Relaxed),
            history: self.history.as_ref().map(SourceHistory::counts),
            history_copies_deleted: self.history_copies_deleted,
        }
    }

    fn status(&self) -> SnapshotStatus {
        if self.failed.is_empty() && self.stopped.is_none() {
            SnapshotStatus::Complete
        } else {
            SnapshotStatus::Partial
        }
    }

    /// Stops the run: no new transfer starts; what is not done is carried over. The first reason is the
    /// run's error (the caller reports it once).
    fn stop(&mut self, e: Error) {
        self.stopped.get_or_insert(e);
        self.cancel.cancel();
    }

    fn lease_lost(&self) -> bool {
        matches!(self.stopped, Some(Error::Locked(_))) || self.gate.lease.lost().is_cancelled()
    }

    async fn all_buckets(
        &mut self,
        selected: &[String],
        source_buckets: &[String],
        mut previous: Previous,
    ) -> Result<()> {
        let previous_records: BTreeMap<String, BucketRecord> = previous
            .parent_header
            .as_ref()
            .map(|h| h.buckets.iter().map(|b| (b.name.clone(), b.clone())).collect())
            .unwrap_or_default();
        let all: BTreeSet<String> = selected
            .iter()
            .cloned()
            .chain(previous.entries.bucket_names().map(str::to_owned))
            .chain(previous_records.keys().cloned())
            .collect();
        for bucket in &all {
            if selected.contains(bucket) && self.stopped.is_none() {
                self.one_bucket(bucket, &mut previous.entries).await?;
                self.history_of(bucket, &mut previous.entries).await?;
                continue;
            }
            let mut record = previous_records
                .get(bucket)
                .cloned()
                .unwrap_or_else(|| BucketRecord { name: bucket.clone(), ..Default::default() });
            record.source_missing = !source_buckets.contains(bucket);
            record.carried_over = !record.source_missing;
            if record.source_missing {
                self.cx.progress.event(&Event::Warning(&format!(
                    "bucket {bucket:?} is gone from the source; its backup is kept and carried over"
                )));
            }
            self.carry_bucket(record, &mut previous.entries).await?;
            if self.history.is_some() {
                let copier = self.copier();
                if let Some(history) = &mut self.history {
                    history.carry(&copier, bucket).await?;
                }
            }
        }
        Ok(())
    }

    /// `source_versions`: after a bucket's current state, its version history ([`SourceHistory::bucket`]),
    /// when the source keeps versions in it; else its previous history is carried.
    async fn history_of(&mut self, bucket: &str, previous: &mut PreviousEntries) -> Result<()> {
        let Some(mut history) = self.history.take() else { return Ok(()) };
        let versioned = self.records.last().filter(|r| r.name == bucket).is_some_and(|r| {
            r.config.get("versioning").is_some_and(|d| d.contains("Enabled") || d.contains("Suspended"))
        });
        let copier = self.copier();
        if !versioned || self.stopped.is_some() {
            let carried = history.carry(&copier, bucket).await;
            self.history = Some(history);
            return carried;
        }
        self.cx.progress.event(&Event::Phase(&format!("bucket {bucket}: version history")));
        let done = history.bucket(&copier, bucket, previous.lines(bucket)?).await;
        self.history = Some(history);
        match done {
            Ok(failures) => {
                for failure in failures {
                    if stops_the_run(&failure.error) {
                        self.stop(failure.error);
                    } else {
                        let why =
                            format!("{} (this version is not in this snapshot's history)", failure.error);
                        self.fail(bucket, &failure.key, &why);
                    }
                }
            }
            Err(e) => {
                // What is left of the bucket's previous history is kept (all of it when the listing failed).
                if let Some(history) = &mut self.history {
                    history.carry(&copier, bucket).await?;
                }
                if stops_the_run(&e) {
                    self.stop(e);
                } else {
                    self.fail(
                        bucket,
                        "",
                        &format!("backing up its version history failed, the previous one is kept: {e}"),
                    );
                }
            }
        }
        Ok(())
    }

    /// Records a bucket's previous entries unchanged (with `object_lock`, their stored versions' retention
    /// extended where it runs short, as for unchanged objects of the buckets backed up).
    async fn carry_bucket(&mut self, mut record: BucketRecord, previous: &mut PreviousEntries) -> Result<()> {
        let before = self.writer.totals();
        if let Some(lock) = self.lock() {
            let copier = self.copier();
            let window = (self.cx.config.transfer.transfers * 32).max(256);
            let mut steps = futures::stream::iter(previous.lines(&record.name)?)
                .map(|line| {
                    let (copier, lock) = (Arc::clone(&copier), Arc::clone(&lock));
                    async move { keep_retained(Step::Unchanged(line?), &copier, Some(&lock)).await }
                })
                .buffered(window);
            while let Some(step) = steps.next().await {
                match step? {
                    Step::Record(entry, _) => self.writer.push(&entry)?,
                    Step::Unchanged(line) => self.writer.push_line(&line)?,
                    _ => unreachable!("keep_retained turns an unchanged entry into itself or a record"),
                }
            }
        } else {
            for entry in previous.lines(&record.name)? {
                self.writer.push_line(&entry?)?;
            }
        }
        let after = self.writer.totals();
        record.objects = after.objects - before.objects;
        record.bytes = after.bytes - before.bytes;
        self.records.push(record);
        Ok(())
    }

    async fn one_bucket(&mut self, bucket: &str, previous: &mut PreviousEntries) -> Result<()> {
        let cx = self.cx;
        cx.progress.event(&Event::Phase(&format!("bucket {bucket}")));
        let mut record = BucketRecord { name: bucket.to_owned(), ..Default::default() };
        let Some(mut sorted) = self.list_bucket(bucket, &mut record).await else {
            // No deletions from an incomplete listing: keep the bucket's previous state.
            return self.carry_bucket(record, previous).await;
        };
        let deletes_allowed = self.plan_bucket(bucket, &mut sorted, previous)?;
        let before = self.writer.totals();
        self.act_on_bucket(bucket, &mut sorted, previous, deletes_allowed).await?;
        let after = self.writer.totals();
        record.objects = after.objects - before.objects;
        record.bytes = after.bytes - before.bytes;
        self.records.push(record);
        Ok(())
    }

    /// Reads the bucket's configuration into `record` and lists it, sorted; `None` when the listing
    /// failed (the failure is recorded, or stops the run).
    async fn list_bucket(&mut self, bucket: &str, record: &mut BucketRecord) -> Option<Sorted> {
        let cx = self.cx;
        // Of a sharded run, the first shard reads the buckets' configuration (the merge takes its records).
        let read_config = self.shard.as_ref().is_none_or(|s| s.index() == 0);
        let listed = async {
            let config = if read_config {
                bucket_config::read(&cx.source, bucket, cx.config.transfer.checkers).await?
            } else {
                bucket_config::BucketConfig::default()
            };
            let mut sorter = SortedListing::new(cx.work.path()).only(self.shard.as_ref(), bucket);
            list_into(&cx.source, bucket, None, self.listing_tags, &mut sorter).await?;
            Ok::<_, Error>((config, sorter.finish()?))
        };
        match listed.await {
            Ok((config, sorted)) => {
                for (name, error) in &config.errors {
                    cx.progress.event(&Event::Warning(&format!(
                        "bucket {bucket}: configuration {name} not backed up: {error}"
                    )));
                }
                record.config = config.documents;
                record.config_errors = config.errors;
                Some(sorted)
            }
            Err(err) if stops_the_run(&err) => {
                self.stop(err);
                None
            }
            Err(err) => {
                self.fail(bucket, "", &format!("listing failed, previous state kept: {err}"));
                None
            }
        }
    }

    /// Counts what the merge-join will do and reports it; whether deletes are allowed (`max_delete`).
    fn plan_bucket(
        &mut self,
        bucket: &str,
        sorted: &mut Sorted,
        previous: &mut PreviousEntries,
    ) -> Result<bool> {
        let cx = self.cx;
        let mut plan = PlanCounts::default();
        for action in MergeJoin::new(sorted.iter()?, previous.lines(bucket)?) {
            plan.count(&action?);
        }
        cx.progress.event(&Event::BucketPlanned { bucket, counts: &plan });
        let deletes_allowed = plan.deletes_allowed(cx.config.transfer.max_delete_percent);
        if !deletes_allowed {
            self.fail(
                bucket,
                "",
                &format!(
                    "{} of {} objects would be deleted, more than max_delete ({}%): nothing deleted, the previous \
                     objects are kept; raise max_delete if this is intended",
                    plan.deleted.objects,
                    plan.deleted.objects + plan.unchanged.objects + plan.changed.objects,
                    cx.config.transfer.max_delete_percent
                ),
            );
        }
        Ok(deletes_allowed)
    }

    /// Runs the merge-join's actions in order, `window` at a time: deletes run beside copies once the
    /// listing is complete; a run that stops keeps consuming, each action not started yet becoming a
    /// carry-over. Checkpoints are written as it goes.
    async fn act_on_bucket(
        &mut self,
        bucket: &str,
        sorted: &mut Sorted,
        previous: &mut PreviousEntries,
        deletes_allowed: bool,
    ) -> Result<()> {
        let cx = self.cx;
        let copier = self.copier();
        let window = (cx.config.transfer.transfers * 32).max(256);
        let (cancel, gate) = (self.cancel.clone(), Arc::clone(&self.gate));
        let actions = MergeJoin::new(sorted.iter()?, previous.lines(bucket)?);
        // Where the listing carries no tags (not MinIO), `check_tags` reads them.
        let check_tags =
            (cx.config.transfer.check_tags && !self.listing_tags).then(|| Arc::clone(&self.tag_checks));
        let lock = self.lock();
        let mut steps = futures::stream::iter(actions)
            .map(|action| {
                let (copier, cancel, gate) = (Arc::clone(&copier), cancel.clone(), Arc::clone(&gate));
                let (checks, lock) = (check_tags.clone(), lock.clone());
                async move {
                    let may_delete = deletes_allowed && !cancel.is_cancelled();
                    act(action?, bucket, &copier, &gate, may_delete, checks.as_deref(), lock.as_deref()).await
                }
            })
            .buffered(window);
        while let Some(step) = steps.next().await {
            // Errors here are local (the spool files): nothing sensible can follow.
            self.record_step(bucket, step?)?;
            if self.stopped.is_none()
                && self.last_checkpoint.elapsed() >= cx.config.transfer.checkpoint_interval
                && let Err(e) = self.checkpoint().await
            {
                self.stop(e);
            }
        }
        Ok(())
    }

    /// With `object_lock`: what keeping the snapshot's versions retained needs.
    fn lock(&self) -> Option<Arc<Lock>> {
        let config = &self.cx.config;
        config
            .object_lock
            .mode()
            .map(|mode| Arc::new(Lock { mode, days: config.expiration_days, now: self.cx.now() }))
    }

    fn copier(&self) -> Arc<Copier> {
        let cx = self.cx;
        Arc::new(Copier {
            run: cx.transfer_run(&self.limits, &self.cancel),
            source: cx.source.clone(),
            dest: cx.dest.clone(),
            dest_bucket: cx.bucket().to_owned(),
            layout: cx.layout.clone(),
            gate: Arc::clone(&self.gate) as Arc<dyn WriteGate>,
            head_for_attributes: self.head_for_attributes,
        })
    }

    /// After a run that stopped without a snapshot (killed, or lost): what it wrote is recorded nowhere.
    /// The entries this run carried over from the parent may name versions it replaced (an object it
    /// copied and that the source then took back, as a versioned source does when its newest version is
    /// deleted), and objects it copied that left the source since are current but named by nobody. So
    /// the snapshot's entries are merge-joined, by stored key, with the latest version of every stored
    /// object: an entry whose version is not the latest is copied again (or left out and reported); a
    /// stored object no entry names gets a delete marker.
    async fn reconcile(&mut self) -> Result<()> {
        let cx = self.cx;
        cx.progress.event(&Event::Phase("reconciling the backup location after an interrupted run"));
        let mut latest = self.latest_stored().await?;
        let mut named = ExternalSort::new(cx.work.path(), crate::engine::listing::RUN_LEN, |e: &Entry| {
            e.stored_key.as_str()
        });
        for entry in self.writer.entries()? {
            named.push(entry?)?;
        }
        let mut named = named.finish()?;
        let (stale, orphans) = stale_and_orphans(&mut latest, &mut named)?;
        self.mark_orphans(orphans).await?;
        self.copy_stale(stale).await?;
        self.unreconciled = false;
        Ok(())
    }

    /// The latest version (or delete marker) of every stored data object, sorted by key.
    async fn latest_stored(&self) -> Result<SortedItems<Stored>> {
        let cx = self.cx;
        let (meta, overflow) = (cx.layout.meta(""), cx.layout.meta("overflow/"));
        let mut latest =
            ExternalSort::new(cx.work.path(), crate::engine::listing::RUN_LEN, |c: &Stored| c.key.as_str());
        let mut spilled = Ok(());
        cx.dest
            .list_versions_in_order(cx.bucket(), Some(cx.layout.root()), |v| {
                let ours = !v.key.starts_with(&meta) || v.key.starts_with(&overflow);
                if v.is_latest && ours && spilled.is_ok() {
                    spilled = latest.push(Stored {
                        key: v.key,
                        version_id: v.version_id,
                        delete_marker: v.delete_marker,
                    });
                }
            })
            .await?;
        spilled?;
        latest.finish()
    }

    /// Stored objects that an interrupted run left and no snapshot names get delete markers.
    async fn mark_orphans(&self, orphans: Vec<String>) -> Result<()> {
        let cx = self.cx;
        if !orphans.is_empty() {
            cx.progress.event(&Event::Warning(&format!(
                "{} stored objects that an interrupted run left and no snapshot names get delete markers",
                orphans.len()
            )));
        }
        let gate = &self.gate;
        futures::stream::iter(orphans)
            .map(|key| async move {
                gate.before_write().await?;
                delete_quietly(cx, &key).await;
                Ok::<_, Error>(())
            })
            .buffer_unordered(cx.config.transfer.transfers)
            .collect::<Vec<Result<()>>>()
            .await
            .into_iter()
            .collect()
    }

    /// Copies again the entries whose version is not the current one any more, and rewrites the
    /// snapshot's entries with what became of them.
    async fn copy_stale(&mut self, stale: Vec<Entry>) -> Result<()> {
        let copier = self.copier();
        let mut changes = BTreeMap::new();
        for entry in stale {
            let listed = crate::engine::listing::Listed {
                key: entry.key.clone(),
                size: entry.size,
                etag: entry.etag.clone(),
                last_modified: entry.last_modified.clone(),
                storage_class: entry.storage_class.clone(),
                tags: None,
            };
            let change = match copier.copy(&entry.bucket, &listed, Some(&entry)).await {
                Ok(Copied::Stored(copied)) => {
                    self.counts.changed.add(copied.size);
                    Some(*copied)
                }
                Ok(Copied::Vanished) => None,
                Err(CopyFailure { error, .. }) if stops_the_run(&error) => return Err(error),
                Err(CopyFailure { error, .. }) => {
                    let why =
                        format!("{error} (not in this snapshot: an interrupted run replaced its backup)");
                    self.fail(&entry.bucket, &entry.key, &why);
                    None
                }
            };
            changes.insert((entry.bucket.clone(), entry.key.clone()), change);
        }
        if !changes.is_empty() {
            let per_bucket = self.writer.rewrite(self.cx.work.path(), &changes)?;
            for record in &mut self.records {
                let totals = per_bucket.get(&record.name).copied().unwrap_or_default();
                (record.objects, record.bytes) = (totals.objects, totals.bytes);
            }
        }
        Ok(())
    }

    fn record_step(&mut self, bucket: &str, step: Step) -> Result<()> {
        let cx = self.cx;
        match step {
            Step::Record(entry, outcome) => {
                match outcome {
                    Outcome::New => self.counts.new.add(entry.size),
                    Outcome::Changed => self.counts.changed.add(entry.size),
                    Outcome::Retagged => self.counts.retagged.add(entry.size),
                    _ => self.counts.unchanged.add(entry.size),
                }
                cx.progress.event(&Event::Object { bucket, key: &entry.key, outcome, size: entry.size });
                self.writer.push(&entry)?;
            }
            Step::Unchanged(entry) => {
                self.counts.unchanged.add(entry.size);
                let outcome = Outcome::Unchanged;
                cx.progress.event(&Event::Object { bucket, key: &entry.key, outcome, size: entry.size });
                self.writer.push_line(&entry)?;
            }
            Step::Carry(entry) => self.writer.push_line(&entry)?,
            Step::Deleted(entry) => {
                self.counts.deleted.add(entry.size);
                cx.progress.event(&Event::Object {
                    bucket,
                    key: &entry.key,
                    outcome: Outcome::Deleted,
                    size: entry.size,
                });
            }
            Step::DeleteFailed(entry, e) => {
                if stops_the_run(&e) {
                    self.stop(e);
                } else {
                    cx.progress.event(&Event::Warning(&format!(
                        "s3://{bucket}/{}: gone from the source, but deleting its backup failed (it stays current and \
                         in this snapshot; the next run tries again): {e}",
                        entry.key
                    )));
                }
                self.writer.push_line(&entry)?;
            }
            Step::Vanished { key, previous } => {
                let error = match &previous {
                    Some(_) => {
                        "vanished from the source during the run; its previous backup is carried over (a later \
                                complete listing deletes it)"
                    }
                    None => "vanished from the source during the run before it was copied",
                };
                cx.progress.event(&Event::Warning(&format!("s3://{bucket}/{key}: {error}")));
                self.vanished.push(Failure { bucket: bucket.into(), key, error: error.into() });
                if let Some(previous) = previous {
                    self.writer.push_line(&previous)?;
                }
            }
            Step::Failed { key, previous, failure } => {
                let CopyFailure { error, previous_current } = failure;
                let carried = previous.filter(|_| previous_current);
                if stops_the_run(&error) {
                    self.stop(error);
                } else {
                    let note = match (&carried, previous_current) {
                        (Some(_), _) => " (its previous backup is carried over)",
                        (None, false) => {
                            " (not in this snapshot: its previous backup may have been replaced)"
                        }
                        (None, true) => "",
                    };
                    self.fail(bucket, &key, &format!("{error}{note}"));
                }
                if let Some(previous) = carried {
                    self.writer.push_line(&previous)?;
                }
            }
        }
        Ok(())
    }

    /// Stores the MinIO exports; a failed export makes the snapshot partial.
    async fn export_instance(&mut self, minio: &crate::instance::Minio) -> Result<()> {
        let refs = crate::instance::export(self.cx, minio, &self.snapshot_id).await?;
        for (what, error) in refs.errors.clone() {
            self.fail("", &format!("minio {what}"), &format!("export failed: {error}"));
        }
        self.instance = Some(refs);
        Ok(())
    }

    fn fail(&mut self, bucket: &str, key: &str, error: &str) {
        self.cx.progress.event(&Event::Failed { bucket, key, error });
        self.failed.push(Failure { bucket: bucket.to_owned(), key: key.to_owned(), error: error.to_owned() });
    }

    fn header(&self, status: SnapshotStatus, finished: OffsetDateTime) -> Header {
        Header {
            format: crate::format::manifest::FORMAT.into(),
            version: crate::format::manifest::VERSION,
            snapshot_id: self.snapshot_id.clone(),
            status,
            started: crate::clock::format_rfc3339(self.started),
            finished: crate::clock::format_rfc3339(finished),
            tool: crate::format::tool_version(),
            source: self.source.clone(),
            parent: self.parent.clone(),
            buckets: self.records.clone(),
            instance: self.instance.clone(),
            totals: self.writer.totals(),
            location: Some(Location {
                bucket: self.cx.bucket().to_owned(),
                prefix: self.cx.layout.root().to_owned(),
            }),
            history: self.history_ref.clone(),
        }
    }

    /// Writes the checkpoint an interrupted run resumes from, right after confirming the lease.
    async fn checkpoint(&mut self) -> Result<()> {
        let mut header = self.header(SnapshotStatus::Running, self.cx.now());
        header.snapshot_id.clone_from(&self.checkpoint_id);
        let key = snapshots::checkpoint_key(&self.cx.layout, &self.checkpoint_id);
        let (file, len) = self.writer.encode(&header, &self.cx.cipher, self.cx.work.path())?;
        self.gate.lease.confirm().await?;
        put_file(&self.cx.dest, self.cx.bucket(), &key, file, len, false).await?;
        self.last_checkpoint = Instant::now();
        self.checkpoint_written = true;
        self.cx.progress.event(&Event::Checkpoint { objects: self.writer.len() });
        Ok(())
    }

    /// Writes the snapshot manifest (complete or partial) right after confirming the lease, removes the
    /// checkpoints it supersedes and prunes. A run that stopped before writing anything writes no snapshot;
    /// one that lost its lease writes nothing at all. Returns the manifest key and the snapshots pruned, or
    /// why the run stopped.
    async fn finish(
        &mut self,
        before: &Catalog,
        pruned_before: &[String],
        records_since: OffsetDateTime,
    ) -> Result<(String, Vec<String>)> {
        let cx = self.cx;
        if self.lease_lost() {
            return Err(match self.stopped.take() {
                Some(e @ Error::Locked(_)) => e,
                _ => Error::Locked(
                    "the lease on the backup location was lost (another run took it over)".into(),
                ),
            });
        }
        if self.stopped.is_some() && (!self.gate.may_have_replaced() || self.unreconciled) {
            // Nothing was replaced: the previous snapshot still says it all. Or an interrupted run's writes
            // are not reconciled yet: a snapshot could name a version it replaced; the next run does it.
            return Err(self.stopped.take().expect("checked"));
        }
        let stopped = self.stopped.take();
        let status = if stopped.is_some() || !self.failed.is_empty() {
            SnapshotStatus::Partial
        } else {
            SnapshotStatus::Complete
        };
        let copier = self.copier();
        if let Some(history) = &mut self.history {
            cx.progress.event(&Event::Phase("writing the version history"));
            self.history_ref = Some(history.write(&copier, cx.work.path(), &self.snapshot_id).await?);
        }
        cx.progress.event(&Event::Phase("writing the snapshot manifest"));
        let finished = cx.now();
        let (file, len) = self.writer.encode(&self.header(status, finished), &cx.cipher, cx.work.path())?;
        self.gate.lease.confirm().await?;
        let key = snapshots::snapshot_key(&cx.layout, finished, &self.snapshot_id);
        put_file(&cx.dest, cx.bucket(), &key, file, len, true).await?;

        // Checkpoints are superseded by this snapshot: ours, and any left by interrupted runs.
        let mut stale: Vec<String> =
            before.manifests.iter().filter(|s| s.checkpoint).map(|s| s.key.clone()).collect();
        if self.checkpoint_written {
            stale.push(snapshots::checkpoint_key(&cx.layout, &self.snapshot_id));
        }
        // So are the parts of sharded runs: started from an older snapshot, they can never complete now.
        match cx.list_keys(&cx.layout.meta("parts/")).await {
            Ok(parts) => stale.extend(parts),
            Err(e) => {
                cx.progress.event(&Event::Warning(&format!("listing abandoned parts of sharded runs: {e}")));
            }
        }
        for key in &stale {
            delete_quietly(cx, key).await;
        }
        // What the location holds now: the catalog read at the start, less what went since, plus this run's
        // snapshot and run record (under the lease nobody else wrote).
        let mut now = before.clone();
        now.manifests.retain(|m| !m.checkpoint && !pruned_before.contains(&m.key));
        now.manifests.push(SnapshotRef {
            key: key.clone(),
            id: self.snapshot_id.clone(),
            finished: snapshots::to_millis(finished),
            checkpoint: false,
            size: len,
        });
        now.runs.extend(self.gate.record.get().cloned());
        let pruned =
            prune(cx, &self.gate, &now, records_since, self.gate.days, &self.snapshot_id, true).await?;
        if !cx.config.source_versions {
            self.history_copies_deleted = delete_version_copies(cx, &self.gate).await;
        }
        if let Some(mode) = cx.config.object_lock.mode() {
            retain_meta(cx, mode).await;
        }
        if let Some(stopped) = stopped {
            cx.progress.event(&Event::Warning(&format!(
                "partial snapshot {} written: what was done is kept, the rest carried over; the next backup continues \
                 from it",
                self.snapshot_id
            )));
            return Err(stopped);
        }
        Ok((key, pruned))
    }
}

impl Run<'_> {
    /// The end of a shard's run: its part (or, if it stopped, a checkpoint its rerun resumes from), then the
    /// merge if every shard's part is there. Returns the snapshot's key when this shard merged the run, and
    /// the snapshots pruned.
    async fn finish_shard(
        &mut self,
        shard: &Shard,
        part_done: bool,
        records_since: OffsetDateTime,
    ) -> Result<(Option<String>, Vec<String>)> {
        let cx = self.cx;
        if self.lease_lost() {
            return Err(match self.stopped.take() {
                Some(e @ Error::Locked(_)) => e,
                _ => Error::Locked("the lease on the backup location was lost".into()),
            });
        }
        if let Some(stopped) = self.stopped.take() {
            // No part: the shard is not done. What it did is kept for its rerun to resume from.
            if self.gate.may_have_replaced()
                && !self.writer.is_empty()
                && let Err(e) = self.checkpoint().await
            {
                cx.progress
                    .event(&Event::Warning(&format!("the shard's checkpoint could not be written: {e}")));
            }
            return Err(stopped);
        }
        if !part_done {
            cx.progress.event(&Event::Phase(&format!("writing part {}/{}", shard.index(), shard.count())));
            let (file, len) =
                self.writer.encode(&self.header(self.status(), cx.now()), &cx.cipher, cx.work.path())?;
            self.gate.lease.confirm().await?;
            put_file(&cx.dest, cx.bucket(), &shard.part_key(&cx.layout, shard.index()), file, len, false)
                .await?;
            if self.checkpoint_written {
                delete_quietly(cx, &snapshots::checkpoint_key(&cx.layout, &self.checkpoint_id)).await;
            }
        }
        let parts = cx.list_keys(&shard.parts_prefix(&cx.layout)).await?;
        let present = shard.parts_present(&cx.layout, &parts);
        if present.len() < shard.count() as usize {
            let missing: Vec<String> =
                (0..shard.count()).filter(|i| !present.contains(i)).map(|i| i.to_string()).collect();
            cx.progress.event(&Event::Warning(&format!(
                "part {}/{} of run {} written; the snapshot is written by the last shard to finish (waiting for \
                 shards {})",
                shard.index(),
                shard.count(),
                shard.run_id(),
                missing.join(", ")
            )));
            return Ok((None, Vec::new()));
        }
        if !self.claim_merge(shard).await? {
            return Ok((None, Vec::new()));
        }
        match self.merge(shard, records_since).await {
            Ok((key, pruned)) => Ok((Some(key), pruned)),
            Err(e) => {
                // Not merged: a rerun of any shard may claim the merge again at once.
                if !self.lease_lost() {
                    delete_quietly(cx, &shard.claim_key(&cx.layout)).await;
                }
                Err(e)
            }
        }
    }

    /// Claims the merge (a conditional create: of shards finishing together, one wins). A claim that exists
    /// is taken over only when no shard of the run was alive when this one joined the lease (the lock had
    /// expired): then whoever claimed it died before the snapshot was written.
    async fn claim_merge(&self, shard: &Shard) -> Result<bool> {
        let cx = self.cx;
        let key = shard.claim_key(&cx.layout);
        let body = serde_json::json!({
            "run_id": shard.run_id(),
            "shard": shard.index(),
            "host": crate::format::lease::hostname(),
            "pid": std::process::id(),
            "time": crate::clock::format_rfc3339(cx.now()),
        })
        .to_string();
        self.gate.lease.check().await?;
        let attrs = ObjectAttrs::typed("application/json");
        match cx.dest.put(cx.bucket(), &key, bytes::Bytes::from(body), &attrs, WriteCondition::Create).await {
            Ok(_) => Ok(true),
            Err(e) if e.s3_kind() == Some(S3ErrorKind::PreconditionFailed) => {
                if self.gate.lease.joined_live() {
                    cx.progress.event(&Event::Warning(&format!(
                        "every shard of run {} has finished and another shard is writing its snapshot",
                        shard.run_id()
                    )));
                    Ok(false)
                } else {
                    cx.progress.event(&Event::Warning(&format!(
                        "the shard that claimed the merge of run {} stopped before writing the snapshot: this \
                         shard writes it",
                        shard.run_id()
                    )));
                    Ok(true)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Merges every shard's part into the run's one snapshot, named by the run id and the latest part's
    /// finish time; reconciles first when an earlier run, or an earlier attempt of one of the shards, stopped
    /// without recording what it wrote. Then deletes the parts, prunes, and keeps the location's own
    /// objects retained.
    async fn merge(&mut self, shard: &Shard, records_since: OffsetDateTime) -> Result<(String, Vec<String>)> {
        let cx = self.cx;
        cx.progress.event(&Event::Phase(&format!(
            "merging the {} parts of run {}",
            shard.count(),
            shard.run_id()
        )));
        let mut readers = Vec::new();
        for index in 0..shard.count() {
            let reader = cx.open_part(shard, index).await?;
            if reader.header().parent != self.parent {
                return Err(Error::corrupt(
                    shard.part_key(&cx.layout, index),
                    format!(
                        "a part started from {:?}, the run from {:?}",
                        reader.header().parent,
                        self.parent
                    ),
                ));
            }
            readers.push(reader);
        }
        let headers: Vec<Header> = readers.iter().map(|r| r.header().clone()).collect();
        let merged = crate::shard::merged_header(&headers)?;
        let dir = cx.work.path().to_owned();
        let writer = tokio::task::spawn_blocking(move || {
            let mut writer = ManifestWriter::new(&dir)?;
            for line in crate::shard::merge_lines(
                readers.into_iter().map(crate::format::manifest::ManifestReader::lines).collect(),
            ) {
                writer.push_line(&line?)?;
            }
            Ok::<_, Error>(writer)
        })
        .await
        .expect("does not panic")?;
        self.writer = writer;
        self.records.clone_from(&merged.buckets);
        self.instance.clone_from(&merged.instance);
        self.started = merged.started;
        self.merged_status = Some(merged.status);

        let catalog = cx.snapshots().catalog().await?;
        if self.reconcile_needed(shard, &catalog, &headers) {
            abort_uploads_left_behind(cx).await?;
            self.reconcile().await?;
        }
        let status = if self.failed.is_empty() { merged.status } else { SnapshotStatus::Partial };
        self.merged_status = Some(status);
        cx.progress.event(&Event::Phase("writing the snapshot manifest"));
        // Named by when it is written, like any snapshot: after every run record of the run (the shards'
        // and any the reconciliation wrote), so no record of its own run shortens its window.
        let finished = cx.now().max(merged.finished);
        let (file, len) = self.writer.encode(&self.header(status, finished), &cx.cipher, cx.work.path())?;
        self.gate.lease.confirm().await?;
        let key = snapshots::snapshot_key(&cx.layout, finished, &self.snapshot_id);
        put_file(&cx.dest, cx.bucket(), &key, file, len, true).await?;

        // The parts, the claim and the checkpoints are done with; so are the parts of runs that can never
        // complete now (a snapshot newer than the one they started from exists).
        let leftovers = cx.list_keys(&cx.layout.meta("parts/")).await?;
        let checkpoints = catalog.manifests.iter().filter(|m| m.checkpoint).map(|m| m.key.clone());
        for key in leftovers.into_iter().chain(checkpoints) {
            delete_quietly(cx, &key).await;
        }
        let now = cx.snapshots().catalog().await?;
        let pruned =
            prune(cx, &self.gate, &now, records_since, self.gate.days, &self.snapshot_id, true).await?;
        // A sharded run never backs up the source's history: copies an earlier run left are done with.
        self.history_copies_deleted = delete_version_copies(cx, &self.gate).await;
        if let Some(mode) = cx.config.object_lock.mode() {
            retain_meta(cx, mode).await;
        }
        Ok((key, pruned))
    }

    /// Whether the merged snapshot must be reconciled with what the location holds: a run since the parent
    /// left writes recorded nowhere (its run records or checkpoint, as [`Repository::load_previous`] sees
    /// it), or one of this run's shards had an earlier attempt that wrote something (a run record of that
    /// shard from before its part's attempt started).
    fn reconcile_needed(&self, shard: &Shard, catalog: &Catalog, parts: &[Header]) -> bool {
        let ours = format!("{}-s", shard.run_id());
        let since = self
            .parent
            .as_ref()
            .and_then(|p| catalog.manifests.iter().find(|m| m.id == *p))
            .map(|m| m.finished);
        let after_parent = |t: OffsetDateTime| since.is_none_or(|s| t > s);
        let other_runs = catalog.runs.iter().any(|r| after_parent(r.time) && !r.id.starts_with(&ours))
            || catalog
                .manifests
                .iter()
                .any(|m| m.checkpoint && after_parent(m.finished) && !m.id.starts_with(&ours));
        let retried = parts.iter().enumerate().any(|(index, part)| {
            let started =
                OffsetDateTime::parse(&part.started, &time::format_description::well_known::Rfc3339)
                    .ok()
                    .map(snapshots::to_millis);
            let id = format!("{ours}{index}");
            catalog.runs.iter().any(|r| r.id == id && started.is_none_or(|s| r.time < s))
        });
        other_runs || retried
    }
}

impl Repository {
    /// The keys under `prefix` in the backup bucket.
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        self.dest
            .list_objects(self.bucket(), Some(prefix), |objects| {
                keys.extend(objects.into_iter().map(|o| o.key));
                Ok(true)
            })
            .await?;
        Ok(keys)
    }

    /// Opens the part of shard `index` of `shard`'s run, checking that it is what its name says.
    async fn open_part(&self, shard: &Shard, index: u32) -> Result<crate::format::manifest::ManifestReader> {
        let key = shard.part_key(&self.layout, index);
        let reader = snapshots::open(&self.dest, self.bucket(), &key, &self.cipher, self.work.path()).await?;
        let header = reader.header();
        let here = header
            .location
            .as_ref()
            .is_none_or(|l| l.bucket == self.bucket() && l.prefix == self.layout.root());
        if header.snapshot_id != shard.run_id() || !here || header.status == SnapshotStatus::Running {
            return Err(Error::corrupt(
                format!("s3://{}/{key}", self.bucket()),
                format!("not the part its name says (snapshot {:?}, {})", header.snapshot_id, header.status),
            ));
        }
        Ok(reader)
    }

    /// The summary of a sharded run whose snapshot exists already (a shard started again after the merge).
    async fn already_complete(&self, snapshot: &SnapshotRef, started_at: Instant) -> Result<BackupSummary> {
        let header = self.snapshots().header(snapshot).await?;
        self.progress.event(&Event::Warning(&format!(
            "run {} is complete already: snapshot {}",
            header.snapshot_id, snapshot.key
        )));
        Ok(BackupSummary {
            snapshot_id: header.snapshot_id,
            manifest_key: Some(snapshot.key.clone()),
            status: header.status,
            dry_run: false,
            counts: PlanCounts::default(),
            failed: Vec::new(),
            vanished: Vec::new(),
            totals: header.totals,
            buckets: header.buckets.len(),
            parent: header.parent,
            resumed: false,
            pruned: Vec::new(),
            duration: started_at.elapsed(),
            requests: Requests { source: self.source.requests(), destination: self.dest.requests() },
            tag_checks: 0,
            history: None,
            history_copies_deleted: 0,
        })
    }
}

/// With `object_lock`: keeps the location's own objects retained while they are current (the config file,
/// the manifests and run records of the listed snapshots, the MinIO exports): each is read with a HEAD, and
/// one whose retention runs short (less than two windows left) is extended to three windows from now. The
/// lease and checkpoints are left alone (they are deleted as a matter of course); data objects, overflow
/// ones included, are kept retained through their entries. A failure is a warning: the next run tries again.
async fn retain_meta(cx: &Repository, mode: &str) {
    let (meta, days, now) = (cx.layout.meta(""), cx.config.expiration_days, cx.now());
    let (lock, overflow) = (cx.layout.meta("lock"), cx.layout.meta("overflow/"));
    let versions = cx.layout.meta("versions/");
    let mut keys = Vec::new();
    let listed = cx
        .dest
        .list_objects(cx.bucket(), Some(&meta), |objects| {
            keys.extend(objects.into_iter().map(|o| o.key).filter(|k| {
                *k != lock
                    && !k.starts_with(&overflow)
                    && !k.starts_with(&versions)
                    && !k.ends_with(".partial")
            }));
            Ok(true)
        })
        .await;
    let warn = |what: String| cx.progress.event(&Event::Warning(&what));
    if let Err(e) = listed {
        warn(format!("keeping the backup location's own objects retained: listing them failed: {e}"));
        return;
    }
    let extend = |key: String| async move {
        let head = cx.dest.head(cx.bucket(), &key, ReadOptions::current()).await?;
        let Some(version) = head.version_id.as_deref() else { return Ok(()) };
        if lock_needs_extension(head.lock_retain_until.as_deref(), now, days) {
            cx.dest.put_retention(cx.bucket(), &key, version, mode, lock_until(now, days)).await?;
        }
        Ok::<_, Error>(())
    };
    let failed: Vec<Error> = futures::stream::iter(keys)
        .map(extend)
        .buffer_unordered(cx.config.transfer.checkers)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    if let Some(first) = failed.first() {
        warn(format!(
            "keeping the backup location's own objects retained: {} failed, the first: {first}",
            failed.len()
        ));
    }
}

/// The latest version of a stored object, as the version listing says.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Stored {
    key: String,
    version_id: Option<String>,
    delete_marker: bool,
}

/// Aborts every incomplete multipart upload under the location: taken under the lease, none can be ours
/// or another live run's; a killed run leaves its uploads behind (the lifecycle rule would abort them
/// only after a day).
async fn abort_uploads_left_behind(cx: &Repository) -> Result<()> {
    let mut left = Vec::new();
    cx.dest.list_uploads(cx.bucket(), Some(cx.layout.root()), |uploads| left.extend(uploads)).await?;
    for upload in left {
        PendingUpload::new(&cx.dest, cx.bucket(), &upload.key, &upload.upload_id).abort().await;
    }
    Ok(())
}

/// The merge-join of the latest stored versions with the snapshot's entries, both by stored key: the
/// entries whose version is not the latest (stale), and the stored objects no entry names (orphans).
fn stale_and_orphans(
    latest: &mut SortedItems<Stored>,
    named: &mut SortedItems<Entry>,
) -> Result<(Vec<Entry>, Vec<String>)> {
    use std::cmp::Ordering;
    let (mut stale, mut orphans) = (Vec::new(), Vec::new());
    let mut latest = latest.iter()?.peekable();
    let mut named = named.iter()?.peekable();
    loop {
        let order = match (latest.peek(), named.peek()) {
            (None, None) => break,
            (Some(Err(_)), _) => return Err(latest.next().expect("peeked").expect_err("an error")),
            (_, Some(Err(_))) => return Err(named.next().expect("peeked").expect_err("an error")),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(Ok(l)), Some(Ok(n))) => l.key.as_str().cmp(n.stored_key.as_str()),
        };
        match order {
            Ordering::Less => {
                let current = latest.next().expect("peeked")?;
                if !current.delete_marker {
                    orphans.push(current.key);
                }
            }
            Ordering::Greater => stale.push(named.next().expect("peeked")?),
            Ordering::Equal => {
                let (current, entry) = (latest.next().expect("peeked")?, named.next().expect("peeked")?);
                if current.delete_marker || current.version_id != entry.version_id {
                    stale.push(entry);
                }
            }
        }
    }
    Ok((stale, orphans))
}

/// `check_tags`: an unchanged object's tags, read (one `GetObjectTagging` under a transfer permit, counted
/// in `checks`) and compared with its entry's; new tags make a new entry, no data is copied.
async fn read_tags(bucket: &str, entry: EntryLine, copier: &Copier, checks: &AtomicU64) -> Result<Step> {
    let read = {
        let _transfer = copier.run.limits.transfer().await;
        checks.fetch_add(1, Ordering::Relaxed);
        copier.source.tags(bucket, &entry.key).await
    };
    Ok(match read {
        Ok(tags) if tags == entry.tags()? => Step::Unchanged(entry),
        Ok(tags) => Step::Record(Box::new(entry.retagged(tags)?), Outcome::Retagged),
        // Gone since the listing: kept as it was; the next listing deletes it.
        Err(error) if error.s3_kind() == Some(S3ErrorKind::NotFound) => Step::Unchanged(entry),
        Err(error) => Step::Failed {
            key: entry.key.clone(),
            previous: Some(entry),
            failure: CopyFailure { error, previous_current: true },
        },
    })
}

/// With `object_lock`: when the retention of the version an unchanged entry names runs short (less than two
/// windows left), extends it to three windows from now (`PutObjectRetention`, under a transfer permit) and
/// records the new date; at most once per version per window.
async fn keep_retained(step: Step, copier: &Copier, lock: Option<&Lock>) -> Result<Step> {
    let Some(lock) = lock else { return Ok(step) };
    let (entry, outcome) = match step {
        Step::Unchanged(line) => {
            if !lock_needs_extension(line.retained_until()?.as_deref(), lock.now, lock.days) {
                return Ok(Step::Unchanged(line));
            }
            (line.entry()?, Outcome::Unchanged)
        }
        Step::Record(entry, Outcome::Retagged)
            if lock_needs_extension(entry.retained_until.as_deref(), lock.now, lock.days) =>
        {
            (*entry, Outcome::Retagged)
        }
        other => return Ok(other),
    };
    let Some(version) = entry.version_id.as_deref() else {
        return Ok(Step::Record(Box::new(entry), outcome));
    };
    let until = lock_until(lock.now, lock.days);
    let extended = {
        let _transfer = copier.run.limits.transfer().await;
        copier.dest.put_retention(&copier.dest_bucket, &entry.stored_key, version, lock.mode, until).await
    };
    match extended {
        Ok(()) => {
            let retained_until = Some(crate::clock::format_rfc3339(until));
            Ok(Step::Record(Box::new(Entry { retained_until, ..entry }), outcome))
        }
        // The entry stays as it was (its version still retained for a while): the next run tries again.
        Err(error) => {
            copier.run.progress.event(&Event::Warning(&format!(
                "s3://{}/{}: extending the retention of its stored version failed: {error}",
                entry.bucket, entry.key
            )));
            Ok(Step::Record(Box::new(entry), outcome))
        }
    }
}

/// What a run with `object_lock` needs to keep what its snapshot names retained.
struct Lock {
    mode: &'static str,
    days: u32,
    now: OffsetDateTime,
}

/// Does one action of the merge-join: what it became. `check_tags`: read the tags of unchanged objects,
/// counting the requests there; `lock`: keep what the entries name retained.
async fn act(
    action: Action,
    bucket: &str,
    copier: &Copier,
    gate: &RunGate,
    may_delete: bool,
    check_tags: Option<&AtomicU64>,
    lock: Option<&Lock>,
) -> Result<Step> {
    let step = match action {
        Action::Keep(entry) if check_tags.is_some() => {
            Box::pin(read_tags(bucket, entry, copier, check_tags.expect("checked"))).await?
        }
        Action::Keep(entry) => Step::Unchanged(entry),
        Action::Retag { previous, tags } => {
            Step::Record(Box::new(previous.retagged(tags)?), Outcome::Retagged)
        }
        Action::Delete(entry) if !may_delete => Step::Carry(entry),
        Action::Delete(line) => {
            let entry = line.entry()?;
            match delete_stored(&copier.dest, &copier.dest_bucket, gate, &entry).await {
                Ok(()) => Step::Deleted(line),
                Err(e) => Step::DeleteFailed(line, e),
            }
        }
        // Boxed: up to `window` actions wait in the stream, each as large as its largest variant, and a
        // copy's future is many times larger than a kept entry's.
        Action::Copy { listed, previous } => {
            let parsed = previous.as_ref().map(EntryLine::entry).transpose()?;
            match Box::pin(copier.copy(bucket, &listed, parsed.as_ref())).await {
                Ok(Copied::Stored(entry)) => {
                    let outcome = if previous.is_some() { Outcome::Changed } else { Outcome::New };
                    Step::Record(entry, outcome)
                }
                Ok(Copied::Vanished) => Step::Vanished { key: listed.key, previous },
                Err(failure) => Step::Failed { key: listed.key, previous, failure },
            }
        }
    };
    keep_retained(step, copier, lock).await
}

/// Deletes a stored object gone from the source (a delete marker: its versions stay until they expire).
async fn delete_stored(dest: &Store, bucket: &str, gate: &RunGate, entry: &Entry) -> Result<()> {
    gate.before_write().await?;
    dest.delete(bucket, &entry.stored_key).await
}
