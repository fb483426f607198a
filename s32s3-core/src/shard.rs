//! Sharded backup runs (the project's `DESIGN.md`, "Sharded runs"): N processes started with the same run
//! id and `--shard I/N` back up one run together.
//!
//! - **The split**: every object belongs to exactly one shard, by a stable hash of its bucket and key
//!   ([`Shard::owns`]), so one huge bucket spreads over all shards. Each shard lists every bucket, keeps
//!   the keys it owns, merge-joins them with the entries it owns of the previous snapshot, and copies,
//!   carries and deletes exactly as a run of one process does.
//! - **Parts**: a shard that finishes writes its part, `.s32s3/parts/<run id>/<I>-of-<N>.part` (a manifest
//!   of its entries; its header names the snapshot the run started from). A shard that stops early writes
//!   no part (a checkpoint instead, which its rerun resumes).
//! - **The merge**: the shard that finds all N parts after writing its own claims the merge with a
//!   conditional create of `.s32s3/parts/<run id>/merge` (exactly one wins), merges the parts into one
//!   snapshot named by the run id, and deletes the parts. A merge that fails gives its claim back; a rerun of
//!   any shard after every shard finished merges what a merger that died left.
//! - **The lease**: the shards share the run's lease ([`crate::format::lease`]); another run stays locked
//!   out until the last shard stopped renewing it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Error, Result};
use crate::format::layout::Layout;
use crate::format::lease::LeaseShard;
use crate::format::manifest::{BucketRecord, EntryLine, Header, InstanceRefs, SnapshotStatus};

/// One shard of a sharded run: `index` of `count`, in the run `run_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
    run_id: String,
}

/// The most shards a run may have.
pub const MAX_SHARDS: u32 = 1024;

impl Shard {
    /// Shard `index` (from 0) of `count` in the run `run_id` (1 to 64 of `A-Z a-z 0-9 _ -`: it names the
    /// run's snapshot and lease, e.g. a Kubernetes Job's name).
    ///
    /// # Errors
    /// [`Error::Config`] naming what is wrong.
    pub fn new(index: u32, count: u32, run_id: &str) -> Result<Self> {
        let bad = |field: &str, reason: String| Err(Error::Config { field: field.into(), reason });
        if count == 0 || count > MAX_SHARDS {
            return bad("shard", format!("a run has 1 to {MAX_SHARDS} shards, not {count}"));
        }
        if index >= count {
            return bad("shard", format!("shard {index} of {count}: shards are numbered 0 to {}", count - 1));
        }
        let valid = !run_id.is_empty()
            && run_id.len() <= 64
            && run_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return bad(
                "run_id",
                format!(
                    "{run_id:?} is not a run id: 1 to 64 letters, digits, '_' or '-' (e.g. a Job's name)"
                ),
            );
        }
        Ok(Self { index, count, run_id: run_id.to_owned() })
    }

    /// Parses `I/N` (as `--shard` and `S32S3_SHARD` give it) for the run `run_id`.
    ///
    /// # Errors
    /// [`Error::Config`] naming what is wrong.
    pub fn parse(spec: &str, run_id: &str) -> Result<Self> {
        let parsed = spec.trim().split_once('/').and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)));
        let Some((index, count)) = parsed else {
            return Err(Error::Config {
                field: "shard".into(),
                reason: format!("{spec:?} is not I/N (this shard's number from 0, then the count, e.g. 0/3)"),
            });
        };
        Self::new(index, count, run_id)
    }

    /// This shard's number, from 0.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.index
    }

    /// How many shards the run has.
    #[must_use]
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The run's id (also its snapshot's).
    #[must_use]
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Whether this shard backs up `bucket`/`key`.
    #[must_use]
    pub fn owns(&self, bucket: &str, key: &str) -> bool {
        shard_of(bucket, key, self.count) == self.index
    }

    /// The shard as the lease records it.
    #[must_use]
    pub(crate) fn lease(&self) -> LeaseShard {
        LeaseShard { index: self.index, count: self.count }
    }

    /// Where the parts of this run are stored.
    pub(crate) fn parts_prefix(&self, layout: &Layout) -> String {
        layout.meta(&format!("parts/{}/", self.run_id))
    }

    /// The key of shard `index`'s part.
    pub(crate) fn part_key(&self, layout: &Layout, index: u32) -> String {
        format!("{}{index}-of-{}.part", self.parts_prefix(layout), self.count)
    }

    /// The key of the merge claim.
    pub(crate) fn claim_key(&self, layout: &Layout) -> String {
        format!("{}merge", self.parts_prefix(layout))
    }

    /// The id of this shard's checkpoint and run records: the run id and the shard.
    pub(crate) fn own_id(&self) -> String {
        format!("{}-s{}", self.run_id, self.index)
    }

    /// The shard numbers whose parts `keys` (under [`Shard::parts_prefix`]) hold.
    pub(crate) fn parts_present(&self, layout: &Layout, keys: &[String]) -> Vec<u32> {
        let prefix = self.parts_prefix(layout);
        let suffix = format!("-of-{}.part", self.count);
        let mut present: Vec<u32> = keys
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix)?.strip_suffix(&suffix)?.parse().ok())
            .filter(|i| *i < self.count)
            .collect();
        present.sort_unstable();
        present.dedup();
        present
    }
}

/// The shard of `bucket`/`key` among `count`: FNV-1a (64 bits) over the bucket, a zero byte and the key,
/// finished with `SplitMix64`'s mixer. Fixed for good: every shard of a run, and the rerun of one, must agree.
#[must_use]
pub fn shard_of(bucket: &str, key: &str, count: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut h = OFFSET;
    for b in bucket.as_bytes().iter().chain(&[0]).chain(key.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    u32::try_from(h % u64::from(count.max(1))).expect("below a u32")
}

/// What the merged snapshot's header takes from the parts' headers.
#[derive(Clone, Debug)]
pub(crate) struct Merged {
    /// Every bucket: the first shard's record (it read the configuration), objects and bytes summed.
    pub buckets: Vec<BucketRecord>,
    /// The first shard's MinIO exports.
    pub instance: Option<InstanceRefs>,
    /// When the first shard started.
    pub started: OffsetDateTime,
    /// When the last shard finished.
    pub finished: OffsetDateTime,
    /// Partial if any part is.
    pub status: SnapshotStatus,
}

/// Combines the parts' headers, in shard order.
///
/// # Errors
/// [`Error::Corrupt`] for a header whose times do not parse.
pub(crate) fn merged_header(parts: &[Header]) -> Result<Merged> {
    let time = |part: &Header, t: &str| {
        OffsetDateTime::parse(t, &Rfc3339).map_err(|e| {
            Error::corrupt(format!("part of run {}", part.snapshot_id), format!("bad time {t:?}: {e}"))
        })
    };
    let mut buckets: BTreeMap<String, BucketRecord> = BTreeMap::new();
    let (mut started, mut finished) = (None::<OffsetDateTime>, None::<OffsetDateTime>);
    let mut status = SnapshotStatus::Complete;
    for part in parts {
        for record in &part.buckets {
            buckets
                .entry(record.name.clone())
                .and_modify(|b| {
                    b.objects += record.objects;
                    b.bytes += record.bytes;
                })
                .or_insert_with(|| record.clone());
        }
        let (s, f) = (time(part, &part.started)?, time(part, &part.finished)?);
        started = Some(started.map_or(s, |t| t.min(s)));
        finished = Some(finished.map_or(f, |t| t.max(f)));
        if part.status != SnapshotStatus::Complete {
            status = SnapshotStatus::Partial;
        }
    }
    let (Some(started), Some(finished)) = (started, finished) else {
        return Err(Error::corrupt("sharded run", "no parts to merge"));
    };
    Ok(Merged {
        buckets: buckets.into_values().collect(),
        instance: parts.first().and_then(|p| p.instance.clone()),
        started,
        finished: crate::format::snapshots::to_millis(finished),
        status,
    })
}

/// Merges the parts' entries (each sorted by bucket, then key, in byte order) into one sorted stream. Parts
/// own disjoint keys; a key in two parts is an error.
pub(crate) fn merge_lines<I>(parts: Vec<I>) -> impl Iterator<Item = Result<EntryLine>>
where
    I: Iterator<Item = Result<EntryLine>>,
{
    let mut parts: Vec<I> = parts;
    let mut heap: BinaryHeap<Reverse<(String, String, usize)>> = BinaryHeap::new();
    let mut heads: Vec<Option<EntryLine>> = Vec::with_capacity(parts.len());
    let mut failed: Option<Error> = None;
    for (i, part) in parts.iter_mut().enumerate() {
        match part.next() {
            Some(Ok(line)) => {
                heap.push(Reverse((line.bucket.clone(), line.key.clone(), i)));
                heads.push(Some(line));
            }
            Some(Err(e)) => {
                failed.get_or_insert(e);
                heads.push(None);
            }
            None => heads.push(None),
        }
    }
    let mut last: Option<(String, String)> = None;
    std::iter::from_fn(move || {
        if let Some(e) = failed.take() {
            heap.clear();
            return Some(Err(e));
        }
        let Reverse((bucket, key, i)) = heap.pop()?;
        let line = heads[i].take().expect("a part in the heap has a head");
        match parts[i].next() {
            Some(Ok(next)) => {
                heap.push(Reverse((next.bucket.clone(), next.key.clone(), i)));
                heads[i] = Some(next);
            }
            Some(Err(e)) => failed = Some(e),
            None => {}
        }
        let this = (bucket, key);
        if last.as_ref() == Some(&this) {
            heap.clear();
            return Some(Err(Error::corrupt(
                format!("s3://{}/{}", this.0, this.1),
                "recorded by two shards of one run",
            )));
        }
        last = Some(this);
        Some(Ok(line))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_run_ids_are_checked() {
        let s = Shard::parse("2/3", "nightly-29012345").unwrap();
        assert_eq!((s.index(), s.count(), s.run_id()), (2, 3, "nightly-29012345"));
        for bad in ["3/3", "1", "a/3", "0/0", "-1/3", "1/2000"] {
            let e = Shard::parse(bad, "r").unwrap_err().to_string();
            assert!(e.contains("shard"), "{bad}: {e}");
        }
        for bad in ["", "has space", "dot.ted", "slash/ed", &"x".repeat(65)] {
            let e = Shard::parse("0/2", bad).unwrap_err().to_string();
            assert!(e.contains("run id"), "{bad}: {e}");
        }
    }

    #[test]
    fn every_key_has_exactly_one_shard_and_the_split_is_even() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3, "r").unwrap()).collect();
        let mut per_shard = [0_u32; 3];
        for k in 0..30_000 {
            let key = format!("dir/{k:06}.bin");
            let owners: Vec<u32> = shards.iter().filter(|s| s.owns("big", &key)).map(Shard::index).collect();
            assert_eq!(owners.len(), 1, "{key}");
            per_shard[owners[0] as usize] += 1;
        }
        assert!(per_shard.iter().all(|n| (9_500..10_500).contains(n)), "{per_shard:?}");
        // Stable across releases (every shard of a run, and a rerun, must agree); computed independently
        // with a Python transcription of FNV-1a 64 + SplitMix64.
        assert_eq!([shard_of("a", "b", 7), shard_of("b", "a", 7), shard_of("", "", 7)], [3, 4, 5]);
    }

    #[test]
    fn part_names_carry_the_shard_and_count() {
        let layout = Layout::new(&s32s3_crypt::Cipher::new("p", "").unwrap(), "").unwrap();
        let s = Shard::new(1, 3, "r1").unwrap();
        assert_eq!(s.part_key(&layout, 1), ".s32s3/parts/r1/1-of-3.part");
        let keys = [
            s.part_key(&layout, 2),
            s.part_key(&layout, 0),
            ".s32s3/parts/r1/5-of-3.part".into(),
            ".s32s3/parts/r1/1-of-4.part".into(),
            s.claim_key(&layout),
        ];
        assert_eq!(s.parts_present(&layout, &keys), [0, 2]);
    }
}
