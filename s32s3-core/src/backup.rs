//! The backup run (DESIGN.md §4).
//!
//! 1. Read-only checks: source reachable and the named buckets exist, the backup location's password and
//!    format match. Nothing is written before all of them pass.
//! 2. Prepare the destination (bucket, versioning, lifecycle, config.json) and take the lease.
//! 3. Per bucket, in name order: read its configuration, list it (sorted), plan the merge-join against the
//!    previous snapshot (plus the checkpoint of an interrupted run), then execute it: unchanged objects are
//!    carried over without a request, new and changed ones copied, deleted ones deleted after the copies.
//! 4. Checkpoint every `checkpoint_interval`; at the end write the manifest, prune old snapshots and release
//!    the lease.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt as _;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::error::S3ErrorKind;
use crate::lease::Lease;
use crate::listing::{SortedListing, list_into};
use crate::manifest::{
    BucketRecord, Entry, Header, InstanceRefs, ManifestWriter, SnapshotStatus, SourceInfo, Totals,
};
use crate::options::RunConfig;
use crate::plan::{Action, MergeJoin, MergeNewest, PlanCounts, PreviousEntries};
use crate::progress::{Event, Outcome, Progress};
use crate::s3::Store;
use crate::snapshots::{self, SnapshotRef};
use crate::spool::Spool;
use crate::transfer::{Copier, Limits};
use crate::{Error, Result, bucket_config, destination};

/// An object or bucket that could not be backed up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The bucket.
    pub bucket: String,
    /// The key (empty for a bucket-level failure).
    pub key: String,
    /// Why, on one line.
    pub error: String,
}

/// What a backup run did.
#[derive(Clone, Debug)]
pub struct BackupSummary {
    /// The snapshot id of this run.
    pub snapshot_id: String,
    /// The manifest written (`None` for a dry run).
    pub manifest_key: Option<String>,
    /// How the snapshot ended.
    pub status: SnapshotStatus,
    /// Nothing was written.
    pub dry_run: bool,
    /// New, changed, unchanged and deleted objects (for a dry run: what would happen).
    pub counts: PlanCounts,
    /// Objects and buckets that failed.
    pub failed: Vec<Failure>,
    /// Objects recorded in the snapshot.
    pub totals: Totals,
    /// Buckets in the snapshot.
    pub buckets: usize,
    /// The snapshot this one is incremental to.
    pub parent: Option<String>,
    /// The run resumed from the checkpoint of an interrupted run.
    pub resumed: bool,
    /// Old snapshots pruned.
    pub pruned: Vec<String>,
    /// Wall time.
    pub duration: Duration,
    /// Requests sent to the source, by S3 operation.
    pub source_requests: BTreeMap<String, u64>,
    /// Requests sent to the destination, by S3 operation.
    pub destination_requests: BTreeMap<String, u64>,
}

/// A backup of a source store into the backup location. See the module docs for the steps.
#[derive(Clone, Debug)]
pub struct Backup {
    config: RunConfig,
    buckets: Vec<String>,
    dry_run: bool,
}

impl Backup {
    /// A backup of every bucket of the source.
    #[must_use]
    pub fn new(config: RunConfig) -> Self {
        Self { config, buckets: Vec::new(), dry_run: false }
    }

    /// Backs up only these buckets (the others of the previous snapshot are carried over unchanged).
    #[must_use]
    pub fn with_buckets(mut self, buckets: Vec<String>) -> Self {
        self.buckets = buckets;
        self
    }

    /// Plans without writing anything: the summary says what a run would do.
    #[must_use]
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Runs the backup.
    ///
    /// # Errors
    /// Configuration, password, credential and reachability problems before anything is written; S3 and
    /// I/O failures that stop the whole run; [`Error::Cancelled`] when `cancel` fired (a checkpoint was
    /// written, the next run resumes from it). Failures of single objects do not stop the run: they end up
    /// in [`BackupSummary::failed`] with a partial snapshot.
    ///
    /// # Cancel safety
    /// Cancel through `cancel`, not by dropping the future: the token lets in-flight uploads finish or
    /// abort, writes the checkpoint and releases the lease.
    pub async fn run(&self, progress: Arc<dyn Progress>, cancel: CancellationToken) -> Result<BackupSummary> {
        let started_at = Instant::now();
        let started = OffsetDateTime::now_utc();
        let snapshot_id = crate::new_id();
        let cx = Context::new(&self.config, progress, true).await?;

        // 1. Read-only checks.
        cx.progress.event(&Event::Phase("checking the source"));
        let source_buckets = cx.source.list_buckets().await?;
        let selected = self.selected_buckets(&source_buckets)?;
        let minio = crate::instance::detect(&cx).await?;
        cx.progress.event(&Event::Phase("checking the backup location"));
        let bucket = self.config.backup_bucket.as_str();
        let state = destination::inspect(&cx.dest, bucket, &cx.layout, &cx.cipher).await?;
        let existing = if state.bucket_exists {
            snapshots::list(&cx.dest, bucket, &cx.layout).await?
        } else {
            Vec::new()
        };
        let previous = cx.load_previous(&existing).await?;

        if self.dry_run {
            return cx.dry_run(snapshot_id, selected, previous, started_at).await;
        }

        // 2. Prepare and lock.
        cx.progress.event(&Event::Phase("preparing the backup location"));
        let warn = |m: &str| cx.progress.event(&Event::Warning(m));
        destination::prepare(
            &cx.dest,
            bucket,
            &cx.layout,
            &cx.cipher,
            &state,
            self.config.expiration_days,
            &warn,
        )
        .await?;
        let lease = Lease::acquire(&cx.dest, bucket, &cx.layout.meta("lock"), &snapshot_id, "backup").await?;
        let run_cancel = cancel.child_token();
        let lost = lease.lost();
        let watcher = {
            let run_cancel = run_cancel.clone();
            tokio::spawn(async move {
                lost.cancelled().await;
                run_cancel.cancel();
            })
        };

        let resumed = previous.resumed;
        let mut run = Run {
            source: crate::instance::source_info(&cx, minio.as_ref()),
            instance: None,
            cx: &cx,
            snapshot_id: snapshot_id.clone(),
            started,
            parent: previous.parent.as_ref().map(|p| p.id.clone()),
            writer: ManifestWriter::new(cx.work.path())?,
            records: Vec::new(),
            counts: PlanCounts::default(),
            failed: Vec::new(),
            last_checkpoint: Instant::now(),
            checkpoint_written: false,
            cancel: run_cancel.clone(),
            limits: Arc::new(Limits::new(&self.config.transfer)),
        };
        let result = match &minio {
            Some(minio) => run.export_instance(minio).await,
            None => Ok(()),
        };
        let result = match result {
            Ok(()) => run.all_buckets(&selected, &source_buckets, previous).await,
            Err(e) => Err(e),
        };
        watcher.abort();

        let outcome = match result {
            Ok(()) => run.finish(&existing).await,
            Err(err) => {
                // Keep what was done: the next run resumes from this checkpoint.
                let _ = run.checkpoint().await;
                if lease.lost().is_cancelled() && !cancel.is_cancelled() {
                    Err(Error::Locked(
                        "the lease on the backup location was lost (another run took it over)".into(),
                    ))
                } else {
                    Err(err)
                }
            }
        };
        let released = lease.release().await;
        let (manifest_key, pruned) = outcome?;
        released?;
        Ok(BackupSummary {
            snapshot_id,
            manifest_key: Some(manifest_key),
            status: run.status(),
            dry_run: false,
            counts: run.counts,
            totals: run.writer.totals(),
            buckets: run.records.len(),
            failed: run.failed,
            parent: run.parent,
            resumed,
            pruned,
            duration: started_at.elapsed(),
            source_requests: cx.source.requests(),
            destination_requests: cx.dest.requests(),
        })
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

/// The previous snapshot (and checkpoint), ready for the merge-joins.
struct Previous {
    parent: Option<SnapshotRef>,
    resumed: bool,
    parent_header: Option<Header>,
    entries: PreviousEntries,
}

impl Context {
    /// The newest snapshot and, if the run after it was interrupted, its checkpoint.
    async fn load_previous(&self, existing: &[SnapshotRef]) -> Result<Previous> {
        let parent = existing.iter().rev().find(|s| !s.checkpoint).cloned();
        let parent_reader = match &parent {
            Some(p) => Some(
                snapshots::open(&self.dest, self.bucket(), &p.key, &self.cipher, self.work.path()).await?,
            ),
            None => None,
        };
        // The newest checkpoint based on that same parent; older or foreign ones are stale.
        let mut checkpoint_reader = None;
        for candidate in existing.iter().rev().filter(|s| s.checkpoint) {
            let reader =
                snapshots::open(&self.dest, self.bucket(), &candidate.key, &self.cipher, self.work.path())
                    .await?;
            if reader.header().parent == parent.as_ref().map(|p| p.id.clone()) {
                self.progress.event(&Event::Warning(&format!(
                    "resuming the interrupted run {} ({} objects already recorded)",
                    candidate.id,
                    reader.header().totals.objects
                )));
                checkpoint_reader = Some(reader);
                break;
            }
        }
        let checkpoint_used = checkpoint_reader.is_some();
        let parent_header = parent_reader.as_ref().map(|r| r.header().clone());
        let dir = self.work.path().to_owned();
        let entries = tokio::task::spawn_blocking(move || {
            let older: Box<dyn Iterator<Item = Result<Entry>> + Send> = match parent_reader {
                Some(r) => Box::new(r),
                None => Box::new(std::iter::empty()),
            };
            let newer: Box<dyn Iterator<Item = Result<Entry>> + Send> = match checkpoint_reader {
                Some(r) => Box::new(r),
                None => Box::new(std::iter::empty()),
            };
            PreviousEntries::split(MergeNewest::new(older, newer), &dir)
        })
        .await
        .expect("does not panic")?;
        Ok(Previous { parent, resumed: checkpoint_used, parent_header, entries })
    }

    async fn dry_run(
        &self,
        snapshot_id: String,
        selected: Vec<String>,
        mut previous: Previous,
        started_at: Instant,
    ) -> Result<BackupSummary> {
        let mut counts = PlanCounts::default();
        for bucket in &selected {
            let mut sorter = SortedListing::new(self.work.path());
            list_into(&self.source, bucket, None, &mut sorter).await?;
            let mut sorted = sorter.finish()?;
            let mut bucket_counts = PlanCounts::default();
            for action in MergeJoin::new(sorted.iter()?, previous.entries.entries(bucket)?) {
                bucket_counts.count(&action?);
            }
            self.progress.event(&Event::BucketPlanned { bucket, counts: &bucket_counts });
            counts.merge(&bucket_counts);
        }
        Ok(BackupSummary {
            snapshot_id,
            manifest_key: None,
            status: SnapshotStatus::Complete,
            dry_run: true,
            counts,
            failed: Vec::new(),
            totals: Totals {
                objects: counts.new.objects + counts.changed.objects + counts.unchanged.objects,
                bytes: counts.new.bytes + counts.changed.bytes + counts.unchanged.bytes,
            },
            buckets: selected.len(),
            parent: previous.parent.map(|p| p.id),
            resumed: false,
            pruned: Vec::new(),
            duration: started_at.elapsed(),
            source_requests: self.source.requests(),
            destination_requests: self.dest.requests(),
        })
    }
}

/// One executing run's state.
struct Run<'a> {
    cx: &'a Context,
    source: SourceInfo,
    instance: Option<InstanceRefs>,
    snapshot_id: String,
    started: OffsetDateTime,
    parent: Option<String>,
    writer: ManifestWriter,
    records: Vec<BucketRecord>,
    counts: PlanCounts,
    failed: Vec<Failure>,
    last_checkpoint: Instant,
    checkpoint_written: bool,
    cancel: CancellationToken,
    limits: Arc<Limits>,
}

/// The result of one action, in order.
enum Step {
    Record(Entry, Outcome),
    Vanished(Option<Entry>),
    Failed { bucket: String, key: String, previous: Option<Entry>, error: Error },
    Delete(Entry),
}

impl Run<'_> {
    fn status(&self) -> SnapshotStatus {
        if self.failed.is_empty() { SnapshotStatus::Complete } else { SnapshotStatus::Partial }
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
            if self.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            if selected.contains(bucket) {
                self.one_bucket(bucket, &mut previous.entries).await?;
            } else {
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
                let before = self.writer.totals();
                for entry in previous.entries.entries(bucket)? {
                    self.writer.push(&entry?)?;
                }
                let after = self.writer.totals();
                record.objects = after.objects - before.objects;
                record.bytes = after.bytes - before.bytes;
                self.records.push(record);
            }
        }
        Ok(())
    }

    async fn one_bucket(&mut self, bucket: &str, previous: &mut PreviousEntries) -> Result<()> {
        let cx = self.cx;
        cx.progress.event(&Event::Phase(&format!("bucket {bucket}")));
        let config = bucket_config::read(&cx.source, bucket, cx.config.transfer.checkers).await?;
        for (name, error) in &config.errors {
            cx.progress.event(&Event::Warning(&format!(
                "bucket {bucket}: configuration {name} not backed up: {error}"
            )));
        }
        let mut record = BucketRecord {
            name: bucket.to_owned(),
            config: config.documents,
            config_errors: config.errors,
            ..Default::default()
        };

        let mut sorter = SortedListing::new(cx.work.path());
        if let Err(err) = list_into(&cx.source, bucket, None, &mut sorter).await {
            if matches!(err.s3_kind(), Some(S3ErrorKind::BadCredentials | S3ErrorKind::Unreachable)) {
                return Err(err);
            }
            // No deletions from an incomplete listing: keep the bucket's previous state.
            self.fail(bucket, "", &format!("listing failed, previous state kept: {err}"));
            let before = self.writer.totals();
            for entry in previous.entries(bucket)? {
                self.writer.push(&entry?)?;
            }
            record.objects = self.writer.totals().objects - before.objects;
            record.bytes = self.writer.totals().bytes - before.bytes;
            self.records.push(record);
            return Ok(());
        }
        let mut sorted = sorter.finish()?;

        let mut plan = PlanCounts::default();
        for action in MergeJoin::new(sorted.iter()?, previous.entries(bucket)?) {
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

        let copier = Arc::new(Copier {
            source: cx.source.clone(),
            dest: cx.dest.clone(),
            dest_bucket: cx.bucket().to_owned(),
            cipher: cx.cipher.clone(),
            layout: cx.layout.clone(),
            options: cx.config.transfer.clone(),
            limits: Arc::clone(&self.limits),
            progress: Arc::clone(&cx.progress),
            cancel: self.cancel.clone(),
        });
        let before = self.writer.totals();
        let mut deletes: Spool<Entry> = Spool::new(cx.work.path())?;
        let window = (cx.config.transfer.transfers * 32).max(256);
        let mut fatal = None;
        {
            let actions = MergeJoin::new(sorted.iter()?, previous.entries(bucket)?);
            let mut steps = futures::stream::iter(actions)
                .map(|action| {
                    let copier = Arc::clone(&copier);
                    let bucket = bucket.to_owned();
                    async move {
                        Ok::<_, Error>(match action? {
                            Action::Keep(entry) => Step::Record(entry, Outcome::Unchanged),
                            Action::Delete(entry) => Step::Delete(entry),
                            Action::Copy { listed, previous } => match copier.copy(&bucket, &listed).await {
                                Ok(Some(entry)) => {
                                    let outcome =
                                        if previous.is_some() { Outcome::Changed } else { Outcome::New };
                                    Step::Record(entry, outcome)
                                }
                                Ok(None) => Step::Vanished(previous),
                                Err(error) => Step::Failed { bucket, key: listed.key, previous, error },
                            },
                        })
                    }
                })
                .buffered(window);
            while let Some(step) = steps.next().await {
                let step = match step {
                    Ok(step) => step,
                    Err(e) => {
                        fatal = Some(e);
                        break;
                    }
                };
                match step {
                    Step::Record(entry, outcome) => {
                        match outcome {
                            Outcome::New => self.counts.new.add(entry.size),
                            Outcome::Changed => self.counts.changed.add(entry.size),
                            _ => self.counts.unchanged.add(entry.size),
                        }
                        cx.progress.event(&Event::Object {
                            bucket,
                            key: &entry.key,
                            outcome,
                            size: entry.size,
                        });
                        self.writer.push(&entry)?;
                    }
                    Step::Vanished(previous) => {
                        if let Some(previous) = previous {
                            deletes.push(&previous)?;
                        }
                    }
                    Step::Delete(entry) => {
                        if deletes_allowed {
                            deletes.push(&entry)?;
                        } else {
                            self.writer.push(&entry)?;
                        }
                    }
                    Step::Failed { bucket, key, previous, error } => {
                        if matches!(error, Error::Cancelled) {
                            fatal.get_or_insert(Error::Cancelled);
                        } else {
                            self.fail(&bucket, &key, &error.to_string());
                        }
                        if let Some(previous) = previous {
                            self.writer.push(&previous)?;
                        }
                    }
                }
                if self.last_checkpoint.elapsed() >= cx.config.transfer.checkpoint_interval {
                    self.checkpoint().await?;
                }
            }
        }
        if let Some(err) = fatal {
            return Err(err);
        }

        // Deletions only after the bucket was listed completely and its copies are done.
        let mut deleted = Vec::new();
        for entry in deletes.reader()? {
            deleted.push(entry?);
        }
        let results: Vec<(Entry, Result<()>)> = futures::stream::iter(deleted)
            .map(|entry| async move {
                let result = cx
                    .dest
                    .client()
                    .delete_object()
                    .bucket(cx.bucket())
                    .key(&entry.stored_key)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| cx.dest.err("DeleteObject", cx.bucket(), Some(&entry.stored_key), e));
                (entry, result)
            })
            .buffer_unordered(cx.config.transfer.transfers)
            .collect()
            .await;
        for (entry, result) in results {
            match result {
                Ok(()) => {
                    self.counts.deleted.add(entry.size);
                    cx.progress.event(&Event::Object { bucket, key: &entry.key, outcome: Outcome::Deleted, size: entry.size });
                }
                Err(e) => cx.progress.event(&Event::Warning(&format!(
                    "s3://{bucket}/{}: gone from the source, but deleting its backup failed (it stays current): {e}",
                    entry.key
                ))),
            }
        }
        let after = self.writer.totals();
        record.objects = after.objects - before.objects;
        record.bytes = after.bytes - before.bytes;
        self.records.push(record);
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
            format: crate::manifest::FORMAT.into(),
            version: crate::manifest::VERSION,
            snapshot_id: self.snapshot_id.clone(),
            status,
            started: crate::format_rfc3339(self.started),
            finished: crate::format_rfc3339(finished),
            tool: crate::tool_version(),
            source: self.source.clone(),
            parent: self.parent.clone(),
            buckets: self.records.clone(),
            instance: self.instance.clone(),
            totals: self.writer.totals(),
        }
    }

    /// Writes the checkpoint an interrupted run resumes from.
    async fn checkpoint(&mut self) -> Result<()> {
        let header = self.header(SnapshotStatus::Running, OffsetDateTime::now_utc());
        let key = snapshots::checkpoint_key(&self.cx.layout, &self.snapshot_id);
        let (file, len) = self.writer.encode(&header, &self.cx.cipher, self.cx.work.path())?;
        put_file(&self.cx.dest, self.cx.bucket(), &key, file, len).await?;
        self.last_checkpoint = Instant::now();
        self.checkpoint_written = true;
        self.cx.progress.event(&Event::Checkpoint { objects: self.writer.len() });
        Ok(())
    }

    /// Writes the snapshot manifest, removes checkpoints and prunes expired snapshots.
    async fn finish(&mut self, existing: &[SnapshotRef]) -> Result<(String, Vec<String>)> {
        let cx = self.cx;
        cx.progress.event(&Event::Phase("writing the snapshot manifest"));
        let finished = OffsetDateTime::now_utc();
        let header = self.header(self.status(), finished);
        let key = snapshots::snapshot_key(&cx.layout, finished, &self.snapshot_id);
        let (file, len) = self.writer.encode(&header, &cx.cipher, cx.work.path())?;
        put_file(&cx.dest, cx.bucket(), &key, file, len).await?;

        // Checkpoints are superseded by this snapshot: ours, and any left by interrupted runs.
        let mut stale: Vec<String> =
            existing.iter().filter(|s| s.checkpoint).map(|s| s.key.clone()).collect();
        if self.checkpoint_written {
            stale.push(snapshots::checkpoint_key(&cx.layout, &self.snapshot_id));
        }
        // Snapshots older than the retention; the one just written is always kept.
        let cutoff = finished - time::Duration::days(i64::from(cx.config.expiration_days));
        let expired_snapshots: Vec<&SnapshotRef> =
            existing.iter().filter(|s| !s.checkpoint && s.finished < cutoff).collect();
        let expired: Vec<String> = expired_snapshots.iter().map(|s| s.key.clone()).collect();
        // Their MinIO exports go with them (a delete marker; the versions expire with the lifecycle rule).
        let mut exports = Vec::new();
        for snapshot in &expired_snapshots {
            let prefix = cx.layout.meta(&format!("instance/{}/", snapshot.id));
            let listed = cx.dest.client().list_objects_v2().bucket(cx.bucket()).prefix(&prefix).send().await;
            match listed {
                Ok(out) => exports.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_owned))),
                Err(e) => {
                    let e = cx.dest.err("ListObjectsV2", cx.bucket(), Some(&prefix), e);
                    cx.progress.event(&Event::Warning(&format!("could not list {prefix}: {e}")));
                }
            }
        }
        for key in stale.iter().chain(&expired).chain(&exports) {
            if let Err(e) = cx.dest.client().delete_object().bucket(cx.bucket()).key(key).send().await {
                let e = cx.dest.err("DeleteObject", cx.bucket(), Some(key), e);
                cx.progress.event(&Event::Warning(&format!("could not delete {key}: {e}")));
            }
        }
        Ok((key, expired))
    }
}

/// Uploads a local file as one object; returns its version id.
pub(crate) async fn put_file(
    store: &Store,
    bucket: &str,
    key: &str,
    file: File,
    len: u64,
) -> Result<Option<String>> {
    let body = ByteStream::read_from()
        .file(tokio::fs::File::from_std(file))
        .length(aws_sdk_s3::primitives::Length::Exact(len))
        .build()
        .await
        .map_err(|e| Error::io("reading a temporary file", std::io::Error::other(e)))?;
    let out = store
        .client()
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_length(i64::try_from(len).unwrap_or(i64::MAX))
        .content_type("application/octet-stream")
        .body(body)
        .send()
        .await
        .map_err(|e| store.err("PutObject", bucket, Some(key), e))?;
    Ok(out.version_id().map(str::to_owned))
}
