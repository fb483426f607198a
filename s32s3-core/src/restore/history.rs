//! `restore --source-versions`: replays each key's version history into a versioned bucket, oldest first,
//! delete markers in their places, each version with its own content headers, metadata and tags, so that
//! the target's version listing shows the sequence the source had (DESIGN.md §7.1).
//!
//! Resumable: per key, the versions and delete markers the target already holds are compared with the
//! beginning of the history (kind, size, and ETag where both are a plain MD5; as a set, the latest last);
//! those are skipped and the rest written after them. A key whose target history is not a beginning of its
//! backed-up history is a conflict, left alone; with `overwrite`, the history is replayed on top of it
//! (resumably too: what an interrupted replay wrote on top is the end of what the target holds).

use futures::StreamExt as _;

use super::RestoreRun;
use crate::engine::history::chronological;
use crate::engine::transfer::RestoreItem;
use crate::error::{Error, Result};
use crate::format::history::{ByKey, HistoryReader, VersionRecord};
use crate::format::manifest::Entry;
use crate::format::spool::ExternalSort;
use crate::progress::{Event, Outcome};
use crate::store::VersionItem;

/// One step of a key's history.
#[derive(Clone, Debug)]
enum Step {
    Version(Box<Entry>),
    DeleteMarker,
}

/// What the target holds of a key, oldest first: (delete marker, size, ETag).
type Present = Vec<(bool, u64, String)>;

/// A key's history to replay and what the target holds of it.
struct KeyReplay {
    key: String,
    steps: Vec<Step>,
    present: Present,
}

/// What became of a key.
enum Replayed {
    /// Steps written (versions, their bytes; delete markers) and skipped (already there).
    Done {
        versions: u64,
        bytes: u64,
        markers: u64,
        skipped_versions: u64,
        skipped_bytes: u64,
    },
    /// The target's history of the key is not a beginning of the backup's.
    Conflict,
    Failed(Error),
}

impl RestoreRun<'_> {
    /// Whether the bucket `target` keeps versions (or will, once its configuration from `record` is put
    /// back): a history can be replayed only there.
    pub(super) async fn check_versioned(&self, target: &str, record_versioned: bool) -> Result<()> {
        let cx = self.cx;
        let exists = self.existing_buckets.iter().any(|b| b == target);
        let versioned = if exists { cx.source.versioning_enabled(target).await? } else { false };
        let will_be = record_versioned && self.job.bucket_config;
        if versioned || will_be {
            return Ok(());
        }
        Err(Error::Config {
            field: "source_versions".into(),
            reason: format!(
                "s3://{target} does not keep versions, so its version history cannot be replayed into it: enable \
                 versioning on it first, or restore without --source-versions"
            ),
        })
    }

    /// Replays the history of one bucket (`records`: its part of the snapshot's history, `entries`: its
    /// entries, both in key order) into `target`.
    pub(super) async fn replay(
        &mut self,
        target: &str,
        object_lock: bool,
        entries: impl Iterator<Item = Result<Entry>>,
        records: &mut ByKey<HistoryReader>,
        bucket: &str,
    ) -> Result<()> {
        let cx = self.cx;
        if !self.job.dry_run && !cx.source.versioning_enabled(target).await? {
            return self.check_versioned(target, false).await;
        }
        let prefix = self.job.prefix.clone().unwrap_or_default();
        let work = tempfile::tempdir().map_err(|e| Error::io("creating a temporary directory", e))?;
        let mut present =
            ExternalSort::new(work.path(), crate::engine::listing::RUN_LEN, |v: &VersionItem| v.key.as_str())
                .keeping_duplicates();
        if self.existing_buckets.iter().any(|b| b == target) {
            let mut spilled = Ok(());
            cx.source
                .list_versions_in_order(target, (!prefix.is_empty()).then_some(prefix.as_str()), |v| {
                    if spilled.is_ok() {
                        spilled = present.push(v);
                    }
                })
                .await?;
            spilled?;
        }
        let mut present = present.finish()?;
        let present = present.iter()?.peekable();
        // The keys of the history and of the entries (a key without history: its entry alone), in order,
        // each with what the target holds of it: streamed, a window of keys at a time.
        let jobs = ReplayJobs { entries: entries.peekable(), records, present, bucket, prefix: &prefix };
        let restorer = self.restorer();
        let how =
            Replay { object_lock, dry_run: self.job.dry_run, overwrite: self.job.overwrite, now: cx.now() };
        let mut done = futures::stream::iter(jobs)
            .map(|job| {
                let restorer = &restorer;
                async move {
                    let job = job?;
                    let outcome = replay_key(restorer, target, &job, how).await;
                    Ok::<_, Error>((job.key, outcome))
                }
            })
            .buffer_unordered(cx.config.transfer.transfers);
        while let Some(done) = done.next().await {
            let (key, outcome) = done?;
            match outcome {
                Replayed::Done { versions, bytes, markers, skipped_versions, skipped_bytes } => {
                    self.summary.restored.objects += versions;
                    self.summary.restored.bytes += bytes;
                    self.summary.skipped.objects += skipped_versions;
                    self.summary.skipped.bytes += skipped_bytes;
                    self.summary.delete_markers += markers;
                    let outcome = if versions + markers > 0 { Outcome::Restored } else { Outcome::Skipped };
                    cx.progress.event(&Event::Object { bucket: target, key: &key, outcome, size: bytes });
                }
                Replayed::Conflict => {
                    let error = "its versions in the target are not the beginning of its backed-up history; left \
                                 alone (--overwrite replays the history on top of them)";
                    cx.progress.event(&Event::Failed { bucket: target, key: &key, error });
                    self.summary.conflicts.push(super::Failure {
                        bucket: target.into(),
                        key,
                        error: error.into(),
                    });
                }
                Replayed::Failed(Error::Cancelled) => return Err(Error::Cancelled),
                Replayed::Failed(e) => self.fail(target, &key, &e.to_string()),
            }
        }
        Ok(())
    }
}

/// The merge-join, by key, of a bucket's history records, its entries and what the target holds.
struct ReplayJobs<'a, E: Iterator<Item = Result<Entry>>, P: Iterator<Item = Result<VersionItem>>> {
    entries: std::iter::Peekable<E>,
    records: &'a mut ByKey<HistoryReader>,
    present: std::iter::Peekable<P>,
    bucket: &'a str,
    prefix: &'a str,
}

impl<E: Iterator<Item = Result<Entry>>, P: Iterator<Item = Result<VersionItem>>> ReplayJobs<'_, E, P> {
    fn next_job(&mut self) -> Result<Option<KeyReplay>> {
        loop {
            let next_entry = match self.entries.peek() {
                Some(Err(_)) => return Err(self.entries.next().expect("peeked").expect_err("an error")),
                Some(Ok(e)) => Some(e.key.clone()),
                None => None,
            };
            let group = self.records.next_until(self.bucket, next_entry.as_deref())?;
            let key = match (&group, &next_entry) {
                (Some(g), _) => g[0].key.clone(),
                (None, Some(k)) => k.clone(),
                (None, None) => return Ok(None),
            };
            let entry = if next_entry.as_deref() == Some(key.as_str()) {
                self.entries.next().transpose()?
            } else {
                None
            };
            if !key.starts_with(self.prefix) {
                continue;
            }
            let steps = steps_of(group.unwrap_or_default(), entry);
            let mut held = Vec::new();
            loop {
                match self.present.peek() {
                    Some(Err(_)) => return Err(self.present.next().expect("peeked").expect_err("an error")),
                    Some(Ok(v)) if v.key < key => {
                        self.present.next();
                    }
                    Some(Ok(v)) if v.key == key => held.push(self.present.next().expect("peeked")?),
                    _ => break,
                }
            }
            let present =
                chronological(held).into_iter().map(|v| (v.delete_marker, v.size, v.etag)).collect();
            return Ok(Some(KeyReplay { key, steps, present }));
        }
    }
}

impl<E: Iterator<Item = Result<Entry>>, P: Iterator<Item = Result<VersionItem>>> Iterator
    for ReplayJobs<'_, E, P>
{
    type Item = Result<KeyReplay>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_job().transpose()
    }
}

/// A key's steps, oldest first: its records, the current version taken from the snapshot's entry when
/// that is this version (a key without records is its entry alone).
fn steps_of(records: Vec<VersionRecord>, entry: Option<Entry>) -> Vec<Step> {
    if records.is_empty() {
        return entry.map(|e| vec![Step::Version(Box::new(e))]).unwrap_or_default();
    }
    let mut entry = entry;
    let mut steps = Vec::new();
    for record in records {
        if record.delete_marker {
            steps.push(Step::DeleteMarker);
        } else if let Some(stored) = record.stored {
            steps.push(Step::Version(stored));
        } else if record.current
            && let Some(current) = entry.take_if(|e| is_record(e, &record))
        {
            // Only the entry of this very version: one carried from an earlier run (its copy failed) is not.
            steps.push(Step::Version(Box::new(current)));
        }
    }
    steps
}

/// Whether the snapshot's entry is the version `record` names (same size, and ETag where both have one).
fn is_record(entry: &Entry, record: &VersionRecord) -> bool {
    let unquoted = |e: &str| e.trim_matches('"').to_owned();
    entry.size == record.size
        && (record.etag.is_empty()
            || entry.etag.is_empty()
            || unquoted(&entry.etag) == unquoted(&record.etag))
}

/// Whether what the target holds is this step (an ETag compared only where both are a plain MD5: a
/// multipart upload's is not, and the restore may write the object in parts where the source had one).
fn same_step(present: &(bool, u64, String), step: &Step) -> bool {
    let plain = |e: &str| {
        let e = e.trim_matches('"');
        (!e.contains('-')).then(|| e.to_owned())
    };
    match step {
        Step::DeleteMarker => present.0,
        Step::Version(entry) => {
            !present.0
                && present.1 == entry.size
                && match (plain(&present.2), plain(&entry.etag)) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
        }
    }
}

/// Whether the target's versions and delete markers (`present`, its latest last) are the steps `beginning`:
/// the same ones, the latest the last step. Compared as a set rather than in order: servers that list times
/// to the second and versions apart from delete markers (moto) cannot say how steps written within one
/// second interleave.
fn holds_beginning(present: &[(bool, u64, String)], beginning: &[Step]) -> bool {
    if present.len() != beginning.len() {
        return false;
    }
    let (Some(last), Some(step)) = (present.last(), beginning.last()) else { return true };
    if !same_step(last, step) {
        return false;
    }
    let mut unused: Vec<&(bool, u64, String)> = present.iter().collect();
    beginning.iter().all(|step| match unused.iter().position(|p| same_step(p, step)) {
        Some(i) => {
            unused.swap_remove(i);
            true
        }
        None => false,
    })
}

/// How a replay writes.
#[derive(Clone, Copy)]
struct Replay {
    object_lock: bool,
    dry_run: bool,
    /// A key whose target history is not a beginning of the backed-up one gets the history replayed on top
    /// of it (else it is a conflict, left alone).
    overwrite: bool,
    now: time::OffsetDateTime,
}

/// How many of a key's steps the target holds already, so are not written again: all it holds when that is
/// a beginning of the history. Otherwise, with `overwrite`, the history goes on top of what it holds, and
/// the steps an interrupted replay already wrote there (the longest end of what it holds that is a
/// beginning of the history) count as held; without, `None`: a conflict.
fn held_steps(present: &[(bool, u64, String)], steps: &[Step], overwrite: bool) -> Option<usize> {
    let held = present.len();
    if held <= steps.len() && holds_beginning(present, &steps[..held]) {
        return Some(held);
    }
    overwrite.then(|| {
        (1..=held.min(steps.len()))
            .rev()
            .find(|&k| holds_beginning(&present[held - k..], &steps[..k]))
            .unwrap_or(0) // nothing of it on top yet: the whole history goes there
    })
}

async fn replay_key(
    restorer: &crate::engine::transfer::Restorer,
    target: &str,
    job: &KeyReplay,
    how: Replay,
) -> Replayed {
    let Replay { object_lock, dry_run, now, .. } = how;
    let Some(held) = held_steps(&job.present, &job.steps, how.overwrite) else {
        return Replayed::Conflict;
    };
    let (mut versions, mut bytes, mut markers) = (0, 0, 0);
    let (mut skipped_versions, mut skipped_bytes) = (0, 0);
    for step in &job.steps[..held] {
        if let Step::Version(entry) = step {
            skipped_versions += 1;
            skipped_bytes += entry.size;
        }
    }
    for step in &job.steps[held..] {
        match step {
            Step::Version(entry) => {
                if !dry_run {
                    let item = RestoreItem {
                        entry: (**entry).clone(),
                        bucket: target.to_owned(),
                        object_lock,
                        now,
                        mtime_from_stored: false,
                    };
                    if let Err(e) = restorer.restore(&item).await {
                        return Replayed::Failed(e);
                    }
                }
                versions += 1;
                bytes += entry.size;
            }
            Step::DeleteMarker => {
                if !dry_run && let Err(e) = restorer.target.delete(target, &job.key).await {
                    return Replayed::Failed(e);
                }
                markers += 1;
            }
        }
    }
    Replayed::Done { versions, bytes, markers, skipped_versions, skipped_bytes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: u64, etag: &str) -> Step {
        Step::Version(Box::new(plain(size, etag)))
    }

    fn record(version: &str, size: u64, marker: bool, current: bool, stored: Option<Entry>) -> VersionRecord {
        VersionRecord {
            bucket: "b".into(),
            key: "k".into(),
            version_id: Some(version.into()),
            last_modified: "2026-01-01T00:00:00Z".into(),
            delete_marker: marker,
            current,
            size,
            etag: String::new(),
            stored: stored.map(Box::new),
            gone_since: None,
        }
    }

    #[test]
    fn the_current_step_is_the_entry_of_that_very_version() {
        let records = || {
            vec![
                record("1", 1, false, false, Some(plain(1, "a"))),
                record("2", 0, true, false, None),
                record("3", 3, false, true, None),
            ]
        };
        let kinds = |steps: Vec<Step>| {
            steps
                .iter()
                .map(|s| match s {
                    Step::Version(e) => e.size,
                    Step::DeleteMarker => 0,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(steps_of(records(), Some(plain(3, "c")))), [1, 0, 3]);
        // The entry carried from an earlier run (this version's copy failed): not replayed as this one.
        assert_eq!(kinds(steps_of(records(), Some(plain(1, "a")))), [1, 0]);
        // A key without history: its entry alone.
        assert_eq!(kinds(steps_of(Vec::new(), Some(plain(5, "e")))), [5]);
    }

    fn plain(size: u64, etag: &str) -> Entry {
        Entry {
            bucket: "b".into(),
            key: "k".into(),
            size,
            etag: etag.into(),
            last_modified: String::new(),
            storage_class: None,
            content_type: None,
            content_encoding: None,
            content_disposition: None,
            content_language: None,
            cache_control: None,
            expires: None,
            metadata: std::collections::BTreeMap::new(),
            tags: std::collections::BTreeMap::new(),
            lock_mode: None,
            lock_retain_until: None,
            legal_hold: None,
            sha256: String::new(),
            stored_key: String::new(),
            version_id: None,
            nonce: None,
            retained_until: None,
        }
    }

    #[test]
    fn with_overwrite_the_history_goes_on_top_and_resumes_there() {
        let present = |items: &[(bool, u64, &str)]| -> Present {
            items.iter().map(|(m, s, e)| (*m, *s, (*e).to_owned())).collect()
        };
        let steps = [entry(1, "a"), Step::DeleteMarker, entry(3, "c")];
        // A beginning of the history: held, with or without overwrite.
        let begun = present(&[(false, 1, "a"), (true, 0, "")]);
        assert_eq!(held_steps(&begun, &steps, false), Some(2));
        assert_eq!(held_steps(&begun, &steps, true), Some(2));
        // Something else: a conflict, or (overwrite) the whole history on top of it.
        let foreign = present(&[(false, 9, "f")]);
        assert_eq!(held_steps(&foreign, &steps, false), None);
        assert_eq!(held_steps(&foreign, &steps, true), Some(0));
        // An interrupted replay on top: the steps it wrote are not written again.
        let resumed = present(&[(false, 9, "f"), (false, 1, "a"), (true, 0, "")]);
        assert_eq!(held_steps(&resumed, &steps, true), Some(2));
        let finished = present(&[(false, 9, "f"), (false, 1, "a"), (true, 0, ""), (false, 3, "c")]);
        assert_eq!(held_steps(&finished, &steps, true), Some(3));
        // More than the history holds, its end the history: nothing to write.
        assert_eq!(held_steps(&finished, &steps, false), None);
    }

    #[test]
    fn what_the_target_holds_is_matched_step_by_step() {
        let present = |marker: bool, size: u64, etag: &str| (marker, size, etag.to_owned());
        assert!(same_step(&present(false, 3, "\"abc\""), &entry(3, "abc")));
        assert!(!same_step(&present(false, 3, "\"abd\""), &entry(3, "\"abc\"")));
        assert!(!same_step(&present(false, 4, "x"), &entry(3, "x")));
        // A multipart ETag on either side: the size decides.
        assert!(same_step(&present(false, 3, "\"a-2\""), &entry(3, "\"abc\"")));
        assert!(same_step(&present(true, 0, ""), &Step::DeleteMarker));
        assert!(!same_step(&present(false, 0, ""), &Step::DeleteMarker));
        assert!(!same_step(&present(true, 0, ""), &entry(0, "")));

        // The target's steps as a set, its latest the last one written.
        let steps = [entry(1, "a"), Step::DeleteMarker, entry(2, "b")];
        let held = [present(true, 0, ""), present(false, 1, "a"), present(false, 2, "b")];
        assert!(holds_beginning(&held, &steps));
        assert!(holds_beginning(&held[1..2], &steps[..1]));
        assert!(!holds_beginning(&held[..2], &steps[..2]), "the latest must be the last step written");
        assert!(!holds_beginning(&[present(false, 9, "z")], &steps[..1]));
    }
}
