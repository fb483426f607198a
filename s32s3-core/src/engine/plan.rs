//! The incremental merge-join (DESIGN.md §4): a bucket's sorted source listing against the previous
//! snapshot's sorted entries. Unchanged objects are carried over without a request; new and changed ones
//! are copied; objects gone from the source are deleted on the destination.
//!
//! Pure logic over iterators, so `--dry-run` and the tests see exactly what a run would do.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::iter::Peekable;
use std::path::Path;

use crate::engine::listing::Listed;
use crate::error::Result;
use crate::format::manifest::{Entry, EntryLine};
use crate::format::spool::{Binary, Spool};
pub use crate::progress::PlanCounts;

/// What to do with one object. Previous entries come as [`EntryLine`]s: the compared fields and the line
/// a kept entry is written out as, unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The source object is the one the previous snapshot recorded: carry its entry over.
    Keep(EntryLine),
    /// New (`previous` is `None`) or changed: copy it.
    Copy {
        /// The source object as listed.
        listed: Listed,
        /// The previous snapshot's entry for this key, if any.
        previous: Option<EntryLine>,
    },
    /// Gone from the source: delete it on the destination (a delete marker; history stays).
    Delete(EntryLine),
    /// The same object with other tags (the listing carries them: MinIO): record the previous entry with
    /// the listed tags, copying nothing.
    Retag {
        /// The previous snapshot's entry.
        previous: EntryLine,
        /// The tags listed now.
        tags: BTreeMap<String, String>,
    },
}

/// Merges a sorted listing with sorted previous entries of the same bucket.
pub struct MergeJoin<L: Iterator, P: Iterator> {
    listing: Peekable<L>,
    previous: Peekable<P>,
}

impl<L, P> MergeJoin<L, P>
where
    L: Iterator<Item = Result<Listed>>,
    P: Iterator<Item = Result<EntryLine>>,
{
    /// Joins `listing` (sorted by key) with `previous` (sorted by key, one bucket).
    pub fn new(listing: L, previous: P) -> Self {
        Self { listing: listing.peekable(), previous: previous.peekable() }
    }
}

impl<L, P> Iterator for MergeJoin<L, P>
where
    L: Iterator<Item = Result<Listed>>,
    P: Iterator<Item = Result<EntryLine>>,
{
    type Item = Result<Action>;

    fn next(&mut self) -> Option<Self::Item> {
        // Errors surface as soon as they are seen.
        if matches!(self.listing.peek(), Some(Err(_))) {
            return self.listing.next().map(|r| r.map(|_| unreachable!("peeked an error")));
        }
        if matches!(self.previous.peek(), Some(Err(_))) {
            return self.previous.next().map(|r| r.map(|_| unreachable!("peeked an error")));
        }
        let order = match (self.listing.peek(), self.previous.peek()) {
            (None, None) => return None,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(Ok(l)), Some(Ok(p))) => l.key.as_str().cmp(p.key.as_str()),
            (Some(Err(_)), _) | (_, Some(Err(_))) => unreachable!("errors returned above"),
        };
        Some(Ok(match order {
            Ordering::Less => {
                let Some(Ok(listed)) = self.listing.next() else { unreachable!("peeked") };
                Action::Copy { listed, previous: None }
            }
            Ordering::Greater => {
                let Some(Ok(entry)) = self.previous.next() else { unreachable!("peeked") };
                Action::Delete(entry)
            }
            Ordering::Equal => {
                let (Some(Ok(listed)), Some(Ok(entry))) = (self.listing.next(), self.previous.next()) else {
                    unreachable!("peeked")
                };
                if !entry.same_source(listed.size, &listed.etag, &listed.last_modified) {
                    Action::Copy { listed, previous: Some(entry) }
                } else if let Some(tags) = listed.tags {
                    match entry.tags() {
                        Ok(recorded) if recorded == tags => Action::Keep(entry),
                        Ok(_) => Action::Retag { previous: entry, tags },
                        Err(e) => return Some(Err(e)),
                    }
                } else {
                    Action::Keep(entry)
                }
            }
        }))
    }
}

impl PlanCounts {
    /// Counts one action.
    pub fn count(&mut self, action: &Action) {
        match action {
            Action::Keep(e) => self.unchanged.add(e.size),
            Action::Copy { listed, previous: None } => self.new.add(listed.size),
            Action::Copy { listed, previous: Some(_) } => self.changed.add(listed.size),
            Action::Delete(e) => self.deleted.add(e.size),
            Action::Retag { previous, .. } => self.retagged.add(previous.size),
        }
    }
}

/// Merges two sorted entry streams (parent snapshot, checkpoint of an interrupted run); on equal (bucket, key)
/// the second wins, as it is newer.
pub struct MergeNewest<A: Iterator, B: Iterator> {
    older: Peekable<A>,
    newer: Peekable<B>,
}

impl<A, B> MergeNewest<A, B>
where
    A: Iterator<Item = Result<EntryLine>>,
    B: Iterator<Item = Result<EntryLine>>,
{
    /// Merges `older` and `newer`.
    pub fn new(older: A, newer: B) -> Self {
        Self { older: older.peekable(), newer: newer.peekable() }
    }
}

impl<A, B> Iterator for MergeNewest<A, B>
where
    A: Iterator<Item = Result<EntryLine>>,
    B: Iterator<Item = Result<EntryLine>>,
{
    type Item = Result<EntryLine>;

    fn next(&mut self) -> Option<Self::Item> {
        let order = match (self.older.peek(), self.newer.peek()) {
            (None, None) => return None,
            (Some(Err(_)), _) | (Some(_), None) => Ordering::Less,
            (_, Some(Err(_))) | (None, Some(_)) => Ordering::Greater,
            (Some(Ok(a)), Some(Ok(b))) => {
                (a.bucket.as_str(), a.key.as_str()).cmp(&(b.bucket.as_str(), b.key.as_str()))
            }
        };
        match order {
            Ordering::Less => self.older.next(),
            Ordering::Greater => self.newer.next(),
            Ordering::Equal => {
                self.older.next();
                self.newer.next()
            }
        }
    }
}

/// A previous snapshot's entries split by bucket, each readable as often as needed (the plan pass and the
/// execution pass read them twice).
#[derive(Debug, Default)]
pub struct PreviousEntries {
    buckets: BTreeMap<String, Spool<EntryLine, Binary>>,
}

impl PreviousEntries {
    /// Splits sorted `entries` by bucket into spool files in `dir` (their lines unchanged, beside the
    /// compared fields, so no pass parses them again).
    ///
    /// # Errors
    /// The first error of `entries`, or [`crate::error::Error::Io`].
    pub fn split(entries: impl Iterator<Item = Result<EntryLine>>, dir: &Path) -> Result<Self> {
        let mut buckets: BTreeMap<String, Spool<EntryLine, Binary>> = BTreeMap::new();
        for entry in entries {
            let entry = entry?;
            if !buckets.contains_key(&entry.bucket) {
                buckets.insert(entry.bucket.clone(), Spool::records(dir)?);
            }
            buckets.get_mut(&entry.bucket).expect("inserted above").push(&entry)?;
        }
        Ok(Self { buckets })
    }

    /// Buckets with entries.
    pub fn bucket_names(&self) -> impl Iterator<Item = &str> {
        self.buckets.keys().map(String::as_str)
    }

    /// The entries of `bucket` as the merge-join reads them, sorted by key (none for an unknown bucket).
    ///
    /// # Errors
    /// [`crate::error::Error::Io`] when the spool cannot be read.
    pub fn lines(&mut self, bucket: &str) -> Result<Box<dyn Iterator<Item = Result<EntryLine>> + '_>> {
        match self.buckets.get_mut(bucket) {
            Some(spool) => Ok(Box::new(spool.reader()?)),
            None => Ok(Box::new(std::iter::empty())),
        }
    }

    /// The whole entries of `bucket`, sorted by key (none for an unknown bucket).
    ///
    /// # Errors
    /// [`crate::error::Error::Io`] when the spool cannot be read.
    pub fn entries(&mut self, bucket: &str) -> Result<impl Iterator<Item = Result<Entry>> + '_> {
        Ok(self.lines(bucket)?.map(|line| line?.entry()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(key: &str, etag: &str) -> Listed {
        Listed {
            key: key.into(),
            size: 10,
            etag: etag.into(),
            last_modified: "t0".into(),
            storage_class: None,
            tags: None,
        }
    }

    fn entry(bucket: &str, key: &str, etag: &str) -> EntryLine {
        EntryLine::of(&Entry {
            bucket: bucket.into(),
            key: key.into(),
            size: 10,
            etag: etag.into(),
            last_modified: "t0".into(),
            stored_key: format!("{bucket}/{key}/{etag}"),
            ..Default::default()
        })
    }

    fn join(listing: Vec<Listed>, previous: Vec<EntryLine>) -> Vec<Action> {
        MergeJoin::new(listing.into_iter().map(Ok), previous.into_iter().map(Ok))
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn table_of_cases() {
        let actions = join(
            vec![listed("a", "1"), listed("b", "2"), listed("d", "4"), listed("e", "5")],
            vec![entry("x", "b", "2"), entry("x", "c", "3"), entry("x", "d", "old"), entry("x", "f", "6")],
        );
        assert_eq!(
            actions,
            vec![
                Action::Copy { listed: listed("a", "1"), previous: None },
                Action::Keep(entry("x", "b", "2")),
                Action::Delete(entry("x", "c", "3")),
                Action::Copy { listed: listed("d", "4"), previous: Some(entry("x", "d", "old")) },
                Action::Copy { listed: listed("e", "5"), previous: None },
                Action::Delete(entry("x", "f", "6")),
            ]
        );
        let mut counts = PlanCounts::default();
        for a in &actions {
            counts.count(a);
        }
        assert_eq!(counts.new.objects, 2);
        assert_eq!(counts.changed.objects, 1);
        assert_eq!(counts.unchanged.objects, 1);
        assert_eq!(counts.deleted.objects, 2);
        // 2 of 4 previous objects deleted: 50 %.
        assert!(counts.deletes_allowed(50));
        assert!(!counts.deletes_allowed(49));
    }

    /// Listed tags (MinIO) that differ from the entry's make a retag, no copy; equal ones, or a listing
    /// without tags, keep the entry.
    #[test]
    fn listed_tags_that_differ_retag() {
        let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        let tagged = |key: &str, t: &[(&str, &str)]| {
            EntryLine::of(&Entry { tags: tags(t), ..entry("x", key, "e").entry().unwrap() })
        };
        let with = |key: &str, t: Option<&[(&str, &str)]>| Listed { tags: t.map(tags), ..listed(key, "e") };
        let actions = join(
            vec![
                with("a", Some(&[("k", "new")])),
                with("b", Some(&[("k", "v")])),
                with("c", None),
                with("d", Some(&[])),
                with("e", Some(&[("k", "v")])),
            ],
            vec![
                tagged("a", &[("k", "old")]),
                tagged("b", &[("k", "v")]),
                tagged("c", &[("k", "v")]),
                tagged("d", &[("k", "v")]),
                tagged("e", &[]),
            ],
        );
        assert_eq!(
            actions,
            vec![
                Action::Retag { previous: tagged("a", &[("k", "old")]), tags: tags(&[("k", "new")]) },
                Action::Keep(tagged("b", &[("k", "v")])),
                Action::Keep(tagged("c", &[("k", "v")])),
                Action::Retag { previous: tagged("d", &[("k", "v")]), tags: tags(&[]) },
                Action::Retag { previous: tagged("e", &[]), tags: tags(&[("k", "v")]) },
            ]
        );
        let Action::Retag { previous, tags: new } = &actions[0] else { unreachable!() };
        let retagged = previous.retagged(new.clone()).unwrap();
        assert_eq!(
            retagged,
            Entry { tags: new.clone(), ..previous.entry().unwrap() },
            "only the tags differ"
        );
        let mut counts = PlanCounts::default();
        for a in &actions {
            counts.count(a);
        }
        assert_eq!((counts.retagged.objects, counts.unchanged.objects), (3, 2));
    }

    #[test]
    fn a_changed_size_or_time_is_a_change() {
        let mut changed_size = listed("k", "e");
        changed_size.size = 11;
        let mut changed_time = listed("k", "e");
        changed_time.last_modified = "t1".into();
        for l in [changed_size, changed_time] {
            let actions = join(vec![l.clone()], vec![entry("x", "k", "e")]);
            assert_eq!(actions, vec![Action::Copy { listed: l, previous: Some(entry("x", "k", "e")) }]);
        }
    }

    #[test]
    fn errors_stop_the_join() {
        let listing = vec![Ok(listed("a", "1")), Err(crate::error::Error::Cancelled)];
        let mut join = MergeJoin::new(listing.into_iter(), std::iter::empty());
        assert!(join.next().unwrap().is_ok());
        assert!(matches!(join.next(), Some(Err(crate::error::Error::Cancelled))));
    }

    #[test]
    fn newest_wins_on_equal_keys() {
        let older = vec![entry("a", "1", "old"), entry("a", "2", "old"), entry("b", "1", "old")];
        let newer = vec![entry("a", "2", "new"), entry("a", "3", "new")];
        let merged: Vec<EntryLine> = MergeNewest::new(older.into_iter().map(Ok), newer.into_iter().map(Ok))
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            merged,
            vec![
                entry("a", "1", "old"),
                entry("a", "2", "new"),
                entry("a", "3", "new"),
                entry("b", "1", "old")
            ]
        );
    }

    #[test]
    fn previous_entries_split_by_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![entry("a", "1", "e"), entry("a", "2", "e"), entry("b", "1", "e")];
        let mut previous = PreviousEntries::split(entries.clone().into_iter().map(Ok), dir.path()).unwrap();
        assert_eq!(previous.bucket_names().collect::<Vec<_>>(), ["a", "b"]);
        for _ in 0..2 {
            let keys: Vec<String> = previous.entries("a").unwrap().map(|e| e.unwrap().key).collect();
            assert_eq!(keys, ["1", "2"]);
            let lines: Vec<EntryLine> = previous.lines("a").unwrap().map(Result::unwrap).collect();
            assert_eq!(lines, entries[..2], "the lines as they were read, unchanged");
        }
        assert_eq!(previous.entries("zzz").unwrap().count(), 0);
        assert_eq!(previous.lines("zzz").unwrap().count(), 0);
    }
}
