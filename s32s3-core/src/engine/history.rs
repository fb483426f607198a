//! The source's version history, backed up (`source_versions`, DESIGN.md §3.1).
//!
//! Per versioned source bucket, after its current state is backed up: the version listing, sorted by key
//! (each key's versions kept together), is merge-joined with the previous snapshot's version records and
//! its entries. Versions are immutable and their id is their identity, so a version recorded with a stored
//! copy is carried without a request. A version that is not the key's latest and has no stored copy yet is
//! stored once under `.s32s3/versions/`
//! ([`Layout::version_key`](crate::format::layout::Layout::version_key)): copied inside the backup store
//! from the previous snapshot's stored object when that is this version (it was current at the last run),
//! else read from the source by version id. Delete markers and the latest version are recorded only (the latest is
//! the snapshot's entry, at its rclone name). A version gone from the source is kept `expiration_days`
//! after the run that first found it gone, then dropped and its stored copy deleted (a delete marker, after
//! the run record: every snapshot that names it stays restorable for its whole window).

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt as _;
use s32s3_crypt::Cipher;
use time::OffsetDateTime;

use crate::clock::format_rfc3339;
use crate::engine::listing::{Listed, RUN_LEN};
use crate::engine::transfer::{Copied, Copier, CopyFailure, Origin};
use crate::error::{Error, Result, S3ErrorKind};
use crate::format::history::{ByKey, HistoryReader, HistoryWriter, VersionRecord};
use crate::format::manifest::{Entry, EntryLine, Header, HistoryRef};
use crate::format::spool::{ExternalSort, SortedItems};
use crate::progress::{Event, Progress};
use crate::store::s3::Store;
use crate::store::{ObjectAttrs, VersionItem};

/// What the history part of a backup did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HistoryCounts {
    /// Versions recorded in the snapshot (current ones included).
    pub versions: u64,
    /// Delete markers recorded.
    pub delete_markers: u64,
    /// Versions stored by this run, read from the source (one GET each).
    pub versions_copied: u64,
    /// Versions stored by this run, copied inside the backup store from the stored object of the key's
    /// previous current version (no request to the source).
    pub versions_copied_in_place: u64,
    /// Plaintext bytes of the versions stored by this run.
    pub bytes_copied: u64,
    /// Records dropped: gone from the source for longer than `expiration_days`.
    pub dropped: u64,
}

pub(crate) type Records = Box<dyn Iterator<Item = Result<VersionRecord>> + Send>;

/// The run's retention window, as the history applies it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    /// The run's time.
    pub(crate) now: OffsetDateTime,
    /// `expiration_days`: how long a version gone from the source is kept.
    pub(crate) days: u32,
    /// `object_lock`'s mode: the stored versions are kept retained as entries are.
    pub(crate) lock: Option<&'static str>,
}

/// One backup run's version history: the previous snapshot's records, and this run's.
pub(crate) struct SourceHistory {
    previous: ByKey<Records>,
    writer: HistoryWriter,
    window: Window,
    counts: HistoryCounts,
}

/// A failure of one version: the run stops on it (`stop`), or the snapshot is partial.
pub(crate) struct VersionFailure {
    pub(crate) key: String,
    pub(crate) error: Error,
}

impl SourceHistory {
    /// Reads the previous snapshot's history (none when it has none; one that is damaged or gone is
    /// reported and taken as none) and starts this run's.
    ///
    /// # Errors
    /// S3 failures reading it, local I/O.
    pub(crate) async fn load(
        copier: &Copier,
        work: &Path,
        window: Window,
        parent: Option<&Header>,
    ) -> Result<Self> {
        let run = &copier.run;
        let previous =
            previous_records(&copier.dest, &copier.dest_bucket, &run.cipher, work, &*run.progress, parent)
                .await?;
        Ok(Self {
            previous: ByKey::new(previous),
            writer: HistoryWriter::new(work)?,
            window,
            counts: HistoryCounts::default(),
        })
    }

    /// What this run did so far.
    pub(crate) fn counts(&self) -> HistoryCounts {
        HistoryCounts {
            versions: self.writer.counts.versions,
            delete_markers: self.writer.counts.delete_markers,
            ..self.counts
        }
    }

    /// Records a bucket's previous history unchanged (a bucket not backed up by this run, or not
    /// versioned any more, or whose listing failed); with `object_lock`, the stored versions are kept
    /// retained all the same.
    ///
    /// # Errors
    /// Local I/O, a damaged previous history.
    pub(crate) async fn carry(&mut self, copier: &Copier, bucket: &str) -> Result<()> {
        while let Some(group) = self.previous.next_until(bucket, None)? {
            for mut record in group {
                if let Some(stored) = &mut record.stored {
                    keep_retained(copier, stored, self.window.lock, self.window.now, self.window.days).await;
                }
                self.writer.push(&record)?;
            }
        }
        Ok(())
    }

    /// Backs up the history of `bucket` (see the module docs); `entries` are the previous snapshot's
    /// entries of the bucket, in key order. Failures of single versions are returned: those versions are
    /// left out of this snapshot (a later run stores them).
    ///
    /// # Errors
    /// The version listing failed, local I/O; the run must stop (cancelled, the lease lost, ...).
    pub(crate) async fn bucket(
        &mut self,
        copier: &Arc<Copier>,
        bucket: &str,
        entries: impl Iterator<Item = Result<EntryLine>>,
    ) -> Result<Vec<VersionFailure>> {
        let (_work, mut sorted) = sorted_versions(&copier.source, bucket).await?;
        let listing = sorted.iter()?;
        let history_window = self.window;
        let window = (copier.run.options.transfers * 4).max(16);
        let jobs = Jobs {
            listing: listing.peekable(),
            previous: &mut self.previous,
            entries: entries.peekable(),
            bucket,
        };
        let mut done = futures::stream::iter(jobs)
            .map(|job| async move { one_key(copier, bucket, job?, history_window).await })
            .buffered(window);
        let mut failures = Vec::new();
        let mut records = Vec::new();
        while let Some(outcome) = done.next().await {
            let outcome = outcome?;
            self.counts.versions_copied += outcome.counts.versions_copied;
            self.counts.versions_copied_in_place += outcome.counts.versions_copied_in_place;
            self.counts.bytes_copied += outcome.counts.bytes_copied;
            self.counts.dropped += outcome.counts.dropped;
            failures.extend(outcome.failures);
            records.extend(outcome.records);
            for record in records.drain(..) {
                self.writer.push(&record)?;
            }
        }
        Ok(failures)
    }

    /// Stores this run's history for snapshot `snapshot_id`; what the manifest's header says of it.
    ///
    /// # Errors
    /// Local I/O, S3 failures.
    pub(crate) async fn write(
        &mut self,
        copier: &Copier,
        work: &Path,
        snapshot_id: &str,
    ) -> Result<HistoryRef> {
        let key = crate::format::history::history_key(&copier.layout, snapshot_id);
        let (file, len) = self.writer.encode(snapshot_id, &copier.run.cipher, work)?;
        crate::format::snapshots::put_file(&copier.dest, &copier.dest_bucket, &key, file, len, false).await?;
        Ok(HistoryRef { key, ..self.writer.counts.clone() })
    }
}

/// The previous snapshot's history records (none when it has none; one that is damaged or gone is reported
/// and taken as none: the run stores the history anew, under the same names).
///
/// # Errors
/// S3 failures reading it, local I/O.
pub(crate) async fn previous_records(
    dest: &Store,
    dest_bucket: &str,
    cipher: &Cipher,
    work: &Path,
    progress: &dyn Progress,
    parent: Option<&Header>,
) -> Result<Records> {
    let Some((header, history)) = parent.and_then(|h| h.history.as_ref().map(|r| (h, r))) else {
        return Ok(Box::new(std::iter::empty()));
    };
    let opened =
        crate::format::history::open(dest, dest_bucket, history, &header.snapshot_id, cipher, work).await;
    match opened {
        Ok(reader) => Ok(Box::new(reader) as Box<HistoryReader>),
        Err(e) if matches!(e, Error::Corrupt { .. }) || e.s3_kind() == Some(S3ErrorKind::NotFound) => {
            progress.event(&Event::Warning(&format!(
                "the version history of snapshot {} cannot be read, so this run stores the source's history \
                 anew: {e}",
                header.snapshot_id
            )));
            Ok(Box::new(std::iter::empty()))
        }
        Err(e) => Err(e),
    }
}

/// A bucket's version listing, sorted by key (each key's versions together), spilled to a temporary
/// directory like the object listing; the directory lives as long as the sorted items are read.
async fn sorted_versions(
    source: &Store,
    bucket: &str,
) -> Result<(tempfile::TempDir, SortedItems<VersionItem>)> {
    let work = tempfile::tempdir().map_err(|e| Error::io("creating a temporary directory", e))?;
    let mut sorter =
        ExternalSort::new(work.path(), RUN_LEN, |v: &VersionItem| v.key.as_str()).keeping_duplicates();
    let mut spilled = Ok(());
    source
        .list_versions_in_order(bucket, None, |item| {
            if spilled.is_ok() {
                spilled = sorter.push(item);
            }
        })
        .await?;
    spilled?;
    let sorted = sorter.finish()?;
    Ok((work, sorted))
}

/// A dry run's view of the history: what a run would record, store and drop, found from the same
/// listing and merge-join as the run's, without storing or deleting anything.
pub(crate) struct HistoryPlan {
    previous: ByKey<Records>,
    window: Window,
    counts: HistoryCounts,
}

impl HistoryPlan {
    /// A plan from the previous snapshot's records ([`previous_records`]).
    pub(crate) fn new(previous: Records, window: Window) -> Self {
        Self { previous: ByKey::new(previous), window, counts: HistoryCounts::default() }
    }

    /// What the run would record, store and drop.
    pub(crate) fn counts(&self) -> HistoryCounts {
        self.counts
    }

    /// A bucket whose previous history the run would carry unchanged ([`SourceHistory::carry`]).
    ///
    /// # Errors
    /// A damaged previous history.
    pub(crate) fn carry(&mut self, bucket: &str) -> Result<()> {
        while let Some(group) = self.previous.next_until(bucket, None)? {
            for record in &group {
                tally(&mut self.counts, record);
            }
        }
        Ok(())
    }

    /// A bucket whose history the run would back up ([`SourceHistory::bucket`]): one `ListObjectVersions`
    /// listing, no other request.
    ///
    /// # Errors
    /// The version listing failed, local I/O, a damaged previous history.
    pub(crate) async fn bucket(
        &mut self,
        source: &Store,
        bucket: &str,
        entries: impl Iterator<Item = Result<EntryLine>>,
    ) -> Result<()> {
        let (_work, mut sorted) = sorted_versions(source, bucket).await?;
        let jobs = Jobs {
            listing: sorted.iter()?.peekable(),
            previous: &mut self.previous,
            entries: entries.peekable(),
            bucket,
        };
        let Window { now, days, .. } = self.window;
        let mut counts = HistoryCounts::default();
        for job in jobs {
            let KeyJob { key, listed, previous, entry } = job?;
            let entry = entry.as_ref().map(EntryLine::entry).transpose()?;
            for step in steps(bucket, &key, listed, previous, now, days) {
                match step {
                    Step::Keep { record, .. } => tally(&mut counts, &record),
                    Step::Store { record, gone } => {
                        let in_place = entry.as_ref().is_some_and(|e| entry_is(e, &record));
                        if in_place || !gone {
                            tally(&mut counts, &record);
                            if in_place {
                                counts.versions_copied_in_place += 1;
                            } else {
                                counts.versions_copied += 1;
                            }
                            counts.bytes_copied += record.size;
                        }
                    }
                    Step::Drop(_) => counts.dropped += 1,
                }
            }
        }
        self.counts.versions += counts.versions;
        self.counts.delete_markers += counts.delete_markers;
        self.counts.versions_copied += counts.versions_copied;
        self.counts.versions_copied_in_place += counts.versions_copied_in_place;
        self.counts.bytes_copied += counts.bytes_copied;
        self.counts.dropped += counts.dropped;
        Ok(())
    }
}

/// Counts a record as recorded: a version or a delete marker.
fn tally(counts: &mut HistoryCounts, record: &VersionRecord) {
    if record.delete_marker {
        counts.delete_markers += 1;
    } else {
        counts.versions += 1;
    }
}

/// One key's work: what the source lists of it, its previous records and its previous entry.
struct KeyJob {
    key: String,
    listed: Vec<VersionItem>,
    previous: Vec<VersionRecord>,
    entry: Option<EntryLine>,
}

/// The merge-join of the sorted version listing, the previous records and the previous entries, by key:
/// one job per key the listing or the previous records have.
struct Jobs<'a, L: Iterator<Item = Result<VersionItem>>, E: Iterator<Item = Result<EntryLine>>> {
    listing: std::iter::Peekable<L>,
    previous: &'a mut ByKey<Records>,
    entries: std::iter::Peekable<E>,
    bucket: &'a str,
}

impl<L: Iterator<Item = Result<VersionItem>>, E: Iterator<Item = Result<EntryLine>>> Jobs<'_, L, E> {
    fn next_job(&mut self) -> Result<Option<KeyJob>> {
        let listed_key = match self.listing.peek() {
            Some(Err(_)) => return Err(self.listing.next().expect("peeked").expect_err("an error")),
            Some(Ok(item)) => Some(item.key.clone()),
            None => None,
        };
        let previous = self.previous.next_until(self.bucket, listed_key.as_deref())?;
        let key = match (&previous, &listed_key) {
            (Some(group), _) => group[0].key.clone(),
            (None, Some(key)) => key.clone(),
            (None, None) => return Ok(None),
        };
        let mut listed = Vec::new();
        while let Some(Ok(item)) = self.listing.peek() {
            if item.key != key {
                break;
            }
            listed.push(self.listing.next().expect("peeked")?);
        }
        let mut entry = None;
        loop {
            match self.entries.peek() {
                Some(Err(_)) => return Err(self.entries.next().expect("peeked").expect_err("an error")),
                Some(Ok(e)) if e.key < key => {
                    self.entries.next();
                }
                Some(Ok(e)) if e.key == key => {
                    entry = self.entries.next().transpose()?;
                    break;
                }
                _ => break,
            }
        }
        Ok(Some(KeyJob { key, listed, previous: previous.unwrap_or_default(), entry }))
    }
}

impl<L: Iterator<Item = Result<VersionItem>>, E: Iterator<Item = Result<EntryLine>>> Iterator
    for Jobs<'_, L, E>
{
    type Item = Result<KeyJob>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_job().transpose()
    }
}

/// What became of one key.
#[derive(Default)]
struct KeyOutcome {
    records: Vec<VersionRecord>,
    failures: Vec<VersionFailure>,
    counts: HistoryCounts,
}

/// A key's listed versions and delete markers, oldest first: S3 lists each key newest first (moto all
/// versions before all delete markers), so the listing reversed and sorted by last-modified (stable: equal
/// times keep the listing's order), with the one the server marks latest last.
pub(crate) fn chronological(mut listed: Vec<VersionItem>) -> Vec<VersionItem> {
    listed.reverse();
    listed.sort_by_key(|v| v.last_modified);
    if let Some(latest) = listed.iter().position(|v| v.is_latest) {
        let latest = listed.remove(latest);
        listed.push(latest);
    }
    listed
}

/// What becomes of one version or delete marker of a key, decided from the listing and the previous
/// records alone (no request): what a run does ([`one_key`]) and a dry run counts ([`HistoryPlan`]).
enum Step {
    /// Recorded as it is: a delete marker, the current version, or a version with a stored copy. `gone`:
    /// the source lists it no more (it is kept for the window).
    Keep { record: VersionRecord, gone: bool },
    /// Recorded once stored: copied inside the backup store when the previous entry is this version, else
    /// read from the source by version id. `gone`: the source lists it no more, so only that copy in place
    /// can store it (without one it leaves the history).
    Store { record: VersionRecord, gone: bool },
    /// Gone from the source for longer than the window: its record is dropped and its stored copy deleted.
    Drop(VersionRecord),
}

/// A key's steps: its listed versions and delete markers oldest first, then what the source no longer
/// lists (kept for the window after a run first found it gone, then dropped).
fn steps(
    bucket: &str,
    key: &str,
    listed: Vec<VersionItem>,
    mut previous: Vec<VersionRecord>,
    now: OffsetDateTime,
    days: u32,
) -> Vec<Step> {
    let mut out = Vec::new();
    for item in chronological(listed) {
        let known = previous.iter().position(|p| p.version_id == item.version_id).map(|i| previous.remove(i));
        let record = VersionRecord {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: item.version_id.clone(),
            last_modified: format_rfc3339(item.last_modified),
            delete_marker: item.delete_marker,
            current: item.is_latest,
            size: item.size,
            etag: item.etag.clone(),
            stored: known.and_then(|k| k.stored),
            gone_since: None,
        };
        if record.delete_marker || record.current || record.stored.is_some() {
            out.push(Step::Keep { record, gone: false });
        } else {
            out.push(Step::Store { record, gone: false });
        }
    }
    let since_now = format_rfc3339(now);
    for gone in previous {
        let since = gone.gone_since.clone().unwrap_or_else(|| since_now.clone());
        let expired = time::OffsetDateTime::parse(&since, &time::format_description::well_known::Rfc3339)
            .is_ok_and(|t| t + time::Duration::days(i64::from(days)) <= now);
        if expired {
            out.push(Step::Drop(gone));
            continue;
        }
        let record = VersionRecord { gone_since: Some(since), current: false, ..gone };
        if !record.delete_marker && record.stored.is_none() {
            // It was current at the last run and is gone since: its bytes are the previous entry's.
            out.push(Step::Store { record, gone: true });
        } else {
            out.push(Step::Keep { record, gone: true });
        }
    }
    out
}

/// Puts a record among a key's records: a listed one after those before it, one gone from the source in
/// time order ([`insert_in_order`]).
fn place(records: &mut Vec<VersionRecord>, record: VersionRecord, gone: bool) {
    if gone {
        insert_in_order(records, record);
    } else {
        records.push(record);
    }
}

async fn one_key(copier: &Copier, bucket: &str, job: KeyJob, window: Window) -> Result<KeyOutcome> {
    let KeyJob { key, listed, previous, entry } = job;
    let entry = entry.as_ref().map(EntryLine::entry).transpose()?;
    let Window { now, days, lock } = window;
    let mut out = KeyOutcome::default();
    for step in steps(bucket, &key, listed, previous, now, days) {
        match step {
            Step::Keep { mut record, gone } => {
                if let Some(stored) = &mut record.stored {
                    keep_retained(copier, stored, lock, now, days).await;
                }
                place(&mut out.records, record, gone);
            }
            Step::Store { record, gone } => match store_version(copier, &record, entry.as_ref(), !gone).await
            {
                Ok(Some((stored, in_place))) => {
                    count_stored(&mut out.counts, &stored, in_place);
                    place(&mut out.records, VersionRecord { stored: Some(Box::new(stored)), ..record }, gone);
                }
                // Deleted from the source since it was listed (or gone, with no copy to take): not in the
                // history any more.
                Ok(None) => {}
                Err(error) => out.failures.push(VersionFailure { key: key.clone(), error }),
            },
            Step::Drop(gone) => {
                out.counts.dropped += 1;
                let Some(stored) = &gone.stored else { continue };
                copier.gate.before_write().await?;
                if let Err(e) = copier.dest.delete(&copier.dest_bucket, &stored.stored_key).await {
                    copier.run.progress.event(&Event::Warning(&format!(
                        "s3://{bucket}/{key}: its version {} left the source's history, but deleting its stored copy \
                         failed (it expires with the lifecycle once deleted; the next run tries again): {e}",
                        gone.version_id.as_deref().unwrap_or("null")
                    )));
                    // Kept, so that the next run tries again.
                    insert_in_order(&mut out.records, gone);
                    out.counts.dropped -= 1;
                }
            }
        }
    }
    Ok(out)
}

/// With `object_lock`: a stored version whose retention runs short (less than two windows left) is
/// extended to three windows from now, as entries are (DESIGN.md §4.1), at most once per window and without
/// a request to find out. A failure is a warning: the version stays retained a while, the next run tries
/// again.
async fn keep_retained(
    copier: &Copier,
    stored: &mut Entry,
    mode: Option<&'static str>,
    now: OffsetDateTime,
    days: u32,
) {
    use crate::format::retention::{lock_needs_extension, lock_until};
    let Some(mode) = mode else { return };
    let Some(version) = stored.version_id.clone() else { return };
    if !lock_needs_extension(stored.retained_until.as_deref(), now, days) {
        return;
    }
    let until = lock_until(now, days);
    let extended = {
        let _transfer = copier.run.limits.transfer().await;
        copier.dest.put_retention(&copier.dest_bucket, &stored.stored_key, &version, mode, until).await
    };
    match extended {
        Ok(()) => stored.retained_until = Some(format_rfc3339(until)),
        Err(e) => copier.run.progress.event(&Event::Warning(&format!(
            "s3://{}/{}: extending the retention of a stored version of its history failed: {e}",
            stored.bucket, stored.key
        ))),
    }
}

fn count_stored(counts: &mut HistoryCounts, stored: &Entry, in_place: bool) {
    if in_place {
        counts.versions_copied_in_place += 1;
    } else {
        counts.versions_copied += 1;
    }
    counts.bytes_copied += stored.size;
}

/// Puts a record back among a key's records by last-modified (after those of the same time), but never
/// after the current one.
fn insert_in_order(records: &mut Vec<VersionRecord>, record: VersionRecord) {
    let modified = record.modified();
    let mut at = records.iter().position(|r| r.modified() > modified).unwrap_or(records.len());
    if let Some(current) = records.iter().position(|r| r.current) {
        at = at.min(current);
    }
    records.insert(at, record);
}

/// Whether the previous snapshot's entry is this version: same size and ETag, and last-modified within a
/// second (listings give it at different precisions).
fn entry_is(entry: &Entry, record: &VersionRecord) -> bool {
    let unquoted = |e: &str| e.trim_matches('"').to_owned();
    let modified =
        time::OffsetDateTime::parse(&entry.last_modified, &time::format_description::well_known::Rfc3339)
            .ok();
    let close = match (modified, record.modified()) {
        (Some(a), Some(b)) => (a - b).abs() < time::Duration::seconds(1),
        _ => false,
    };
    entry.size == record.size
        && close
        && (record.etag.is_empty() || unquoted(&entry.etag) == unquoted(&record.etag))
        && entry.version_id.is_some()
}

/// Stores one version under `.s32s3/versions/`: copied inside the backup store from the previous entry's
/// stored object when that is this version, else (with `from_source`) read from the source by version id.
/// Returns its stored entry and whether it was copied in place; `None` when the source has it no more.
async fn store_version(
    copier: &Copier,
    record: &VersionRecord,
    entry: Option<&Entry>,
    from_source: bool,
) -> Result<Option<(Entry, bool)>> {
    let (bucket, key) = (record.bucket.as_str(), record.key.as_str());
    let stored_key = copier.layout.version_key(bucket, key, record.version_id.as_deref())?;
    if let Some(entry) = entry.filter(|e| entry_is(e, record)) {
        let version = entry.version_id.as_deref().expect("checked");
        let mtime = crate::format::mtime::from_rfc3339(&entry.last_modified).unwrap_or_else(|| "0".into());
        let attrs = ObjectAttrs::typed("application/octet-stream").with_metadata("mtime", &mtime);
        let size = s32s3_crypt::encrypted_size(entry.size);
        let copied = {
            let _transfer = copier.run.limits.transfer().await;
            copier.gate.before_write().await?;
            let (part, max) = (copier.run.options.part_size, crate::store::s3::COPY_OBJECT_MAX);
            copier
                .dest
                .copy_version(
                    &copier.dest_bucket,
                    (&entry.stored_key, version),
                    &stored_key,
                    size,
                    &attrs,
                    part,
                    max,
                )
                .await
        };
        match copied {
            Ok(written) => {
                let stored = Entry {
                    stored_key,
                    version_id: written.version_id,
                    retained_until: written.retain_until,
                    ..entry.clone()
                };
                return Ok(Some((stored, true)));
            }
            // The stored object is gone (expired): read the version from the source instead.
            Err(e) if e.s3_kind() == Some(S3ErrorKind::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    if !from_source {
        return Ok(None);
    }
    let listed = Listed {
        key: key.to_owned(),
        size: record.size,
        etag: record.etag.clone(),
        last_modified: record.last_modified.clone(),
        storage_class: None,
        tags: None,
    };
    let at = Origin {
        version_id: Some(record.version_id.as_deref().unwrap_or("null")),
        stored_key: Some(&stored_key),
    };
    match copier.copy_from(bucket, &listed, None, at).await {
        Ok(Copied::Stored(entry)) => Ok(Some((*entry, false))),
        Ok(Copied::Vanished) => Ok(None),
        Err(CopyFailure { error, .. }) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(version: &str, seconds: i64, marker: bool, latest: bool) -> VersionItem {
        VersionItem {
            key: "k".into(),
            version_id: Some(version.into()),
            delete_marker: marker,
            last_modified: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds),
            size: 1,
            is_latest: latest,
            etag: String::new(),
        }
    }

    fn order(listed: Vec<VersionItem>) -> Vec<String> {
        chronological(listed).into_iter().map(|v| v.version_id.unwrap()).collect()
    }

    #[test]
    fn versions_come_oldest_first_whatever_the_listing_order() {
        // S3: newest first, versions and markers interleaved.
        let s3 = vec![
            item("d2", 4, true, true),
            item("v3", 3, false, false),
            item("d1", 2, true, false),
            item("v1", 1, false, false),
        ];
        assert_eq!(order(s3), ["v1", "d1", "v3", "d2"]);
        // moto: every version before every delete marker, each newest first.
        let moto = vec![
            item("v3", 3, false, false),
            item("v1", 1, false, false),
            item("d2", 4, true, true),
            item("d1", 2, true, false),
        ];
        assert_eq!(order(moto), ["v1", "d1", "v3", "d2"]);
        // Equal times (a server listing seconds): the listing's order, and the latest last.
        let seconds = vec![item("c", 1, false, true), item("b", 1, false, false), item("a", 1, false, false)];
        assert_eq!(order(seconds), ["a", "b", "c"]);
    }

    #[test]
    fn gone_records_go_back_in_time_order_but_before_the_current_one() {
        let record = |v: &str, seconds: i64, current: bool| VersionRecord {
            bucket: "b".into(),
            key: "k".into(),
            version_id: Some(v.into()),
            last_modified: format_rfc3339(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds)),
            delete_marker: false,
            current,
            size: 1,
            etag: String::new(),
            stored: None,
            gone_since: None,
        };
        let mut records = vec![record("a", 1, false), record("c", 3, true)];
        insert_in_order(&mut records, record("b", 2, false));
        insert_in_order(&mut records, record("z", 9, false));
        let ids: Vec<_> = records.iter().map(|r| r.version_id.clone().unwrap()).collect();
        assert_eq!(ids, ["a", "b", "z", "c"]);
    }
}
