//! Source listings, sorted by key in byte order with memory bounded however large the bucket.
//!
//! The incremental merge-join needs the listing in the manifest's order (bytes). S3 promises UTF-8 binary
//! order, but not every S3-compatible server keeps it: SeaweedFS lists a "directory" before the names that
//! sort before it in bytes, and lists non-ASCII keys first. So every listing goes through [`SortedListing`]:
//! in memory up to [`RUN_LEN`] objects; beyond that, sorted runs spill to temporary files and are merged.

use std::path::Path;

use crate::error::Result;
use crate::format::spool::{
    Binary, ExternalSort, Record, RecordReader, RecordWriter, SortedItems, SortedItemsIter,
};

/// Objects kept in memory before a sorted run is spilled to disk (≈ 200 bytes each).
pub const RUN_LEN: usize = 20_000;

/// One object of a source listing.
pub use crate::store::ObjectInfo as Listed;

/// Lists every object of `bucket` (under `prefix`) into `sorter`; `with_tags`: with each object's tags
/// (MinIO's listing extension, [`crate::store::s3::Store::list_objects_with_tags`]).
///
/// Keys are requested URL-encoded (`encoding-type=url`), so keys with characters XML 1.0 cannot carry still
/// list, and decoded ([`crate::store::s3::Store::list_objects`]).
///
/// # Errors
/// S3 failures, classified; [`crate::error::Error::Io`] when the sorter cannot spill.
pub async fn list_into(
    store: &crate::store::s3::Store,
    bucket: &str,
    prefix: Option<&str>,
    with_tags: bool,
    sorter: &mut SortedListing,
) -> Result<()> {
    let visit = |objects: Vec<Listed>| {
        for object in objects {
            sorter.push(object)?;
        }
        Ok(true)
    };
    if with_tags {
        store.list_objects_with_tags(bucket, prefix, visit).await
    } else {
        store.list_objects(bucket, prefix, visit).await
    }
}

/// The current listing entry of one key, or `None` if it is gone: pages through every key that starts
/// with it (servers do not all list in byte order, so the first page need not hold it).
///
/// # Errors
/// S3 failures, classified.
pub async fn relist(store: &crate::store::s3::Store, bucket: &str, key: &str) -> Result<Option<Listed>> {
    let mut found = None;
    store
        .list_objects(bucket, Some(key), |objects| {
            found = objects.into_iter().find(|o| o.key == key);
            Ok(found.is_none())
        })
        .await?;
    Ok(found)
}

/// Collects a listing in any order; [`SortedListing::finish`] makes it readable in key byte order (an
/// [`ExternalSort`] by key).
#[derive(Debug)]
pub struct SortedListing(ExternalSort<Listed, Binary>, Option<(crate::shard::Shard, String)>);

fn listed_key(item: &Listed) -> &str {
    &item.key
}

impl SortedListing {
    /// A sorter spilling into `dir` when needed.
    #[must_use]
    pub fn new(dir: &Path) -> Self {
        Self::with_run_len(dir, RUN_LEN)
    }

    /// As [`SortedListing::new`] with a custom in-memory run length (tests use tiny runs).
    #[must_use]
    pub fn with_run_len(dir: &Path, run_len: usize) -> Self {
        Self(ExternalSort::records(dir, run_len, listed_key), None)
    }

    /// Keeps only the objects of `bucket` that `shard` owns (a sharded run).
    #[must_use]
    pub fn only(self, shard: Option<&crate::shard::Shard>, bucket: &str) -> Self {
        Self(self.0, shard.map(|s| (s.clone(), bucket.to_owned())))
    }

    /// Adds one object.
    ///
    /// # Errors
    /// [`crate::error::Error::Io`] when a run cannot be spilled.
    pub fn push(&mut self, item: Listed) -> Result<()> {
        match &self.1 {
            Some((shard, bucket)) if !shard.owns(bucket, &item.key) => Ok(()),
            _ => self.0.push(item),
        }
    }

    /// Ends collection: the listing can now be read, sorted, as often as needed.
    ///
    /// # Errors
    /// [`crate::error::Error::Io`] when the last run cannot be spilled.
    pub fn finish(self) -> Result<Sorted> {
        Ok(Sorted(self.0.finish()?))
    }
}

/// A finished listing.
#[derive(Debug)]
pub struct Sorted(SortedItems<Listed, Binary>);

impl Sorted {
    /// The objects in key byte order; a key listed twice (a server repeating it across pages) is yielded
    /// once.
    ///
    /// # Errors
    /// [`crate::error::Error::Io`] when a spilled run cannot be read.
    #[allow(clippy::iter_not_returning_iterator)] // re-reading spilled runs can fail before iteration starts
    pub fn iter(&mut self) -> Result<SortedIter<'_>> {
        self.0.iter()
    }
}

/// A sorted listing, yielded in key byte order.
pub type SortedIter<'a> = SortedItemsIter<'a, Listed, Binary>;

/// A listing spills as binary records: it is read in both passes of a backup's merge-join.
impl Record for Listed {
    fn encode(&self, out: &mut RecordWriter<'_>) {
        out.str(&self.key);
        out.u64(self.size);
        out.str(&self.etag);
        out.str(&self.last_modified);
        out.opt_str(self.storage_class.as_deref());
        match &self.tags {
            None => out.u64(u64::MAX),
            Some(tags) => {
                out.u64(tags.len() as u64);
                for (k, v) in tags {
                    out.str(k);
                    out.str(v);
                }
            }
        }
    }

    fn decode(input: &mut RecordReader<'_>) -> Option<Self> {
        Some(Self {
            key: input.str()?,
            size: input.u64()?,
            etag: input.str()?,
            last_modified: input.str()?,
            storage_class: input.opt_str()?,
            tags: match input.u64()? {
                u64::MAX => None,
                n => Some((0..n).map(|_| Some((input.str()?, input.str()?))).collect::<Option<_>>()?),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(key: &str) -> Listed {
        Listed {
            key: key.into(),
            size: key.len() as u64,
            etag: "e".into(),
            last_modified: "t".into(),
            storage_class: None,
            // Half of them with listed tags, so spilled runs carry both forms.
            tags: (key.len() % 2 == 1).then(|| [("k".to_owned(), key.to_owned())].into()),
        }
    }

    fn sorted_keys(keys: &[String], run_len: usize) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let mut sorter = SortedListing::with_run_len(dir.path(), run_len);
        for k in keys {
            sorter.push(item(k)).unwrap();
        }
        let mut sorted = sorter.finish().unwrap();
        let items: Vec<Listed> = sorted.iter().unwrap().map(Result::unwrap).collect();
        for got in &items {
            assert_eq!(*got, item(&got.key), "read back whole, listed tags included");
        }
        let first: Vec<String> = items.into_iter().map(|i| i.key).collect();
        let again: Vec<String> = sorted.iter().unwrap().map(|r| r.unwrap().key).collect();
        assert_eq!(first, again, "a finished listing reads the same every time");
        first
    }

    #[test]
    fn seaweedfs_order_becomes_byte_order() {
        // The order SeaweedFS 4.48 was seen to list these keys in.
        let listed: Vec<String> =
            ["é", "ÿ", "日本", "😀", "A", "a%b", "a+b", "a b", "b/", "b/c", "b-", "b.", "b0"]
                .map(String::from)
                .into();
        let mut want = listed.clone();
        want.sort();
        assert_eq!(sorted_keys(&listed, 1000), want);
        assert_eq!(sorted_keys(&listed, 3), want);
        assert_eq!(want[..4], ["A", "a b", "a%b", "a+b"]);
    }

    proptest! {
        #[test]
        fn spilled_and_in_memory_sorts_agree(keys in proptest::collection::vec(".{0,6}", 0..200), run in 1usize..50) {
            let mut want = keys.clone();
            want.sort();
            want.dedup();
            prop_assert_eq!(sorted_keys(&keys, run), want.clone());
            prop_assert_eq!(sorted_keys(&keys, 10_000), want);
        }
    }
}
