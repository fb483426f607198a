//! `verify`: every version a snapshot names exists with the size the crypt formula predicts; with
//! `read_data`, each is downloaded, authenticated, decrypted and its SHA-256 compared with the manifest.
//!
//! What it finds falls in two kinds: *bad* objects (missing, the wrong size, failing authentication or the
//! SHA-256: the backup is damaged) and *unreadable* ones (a read that kept failing after every retry: the
//! network or the store, not the backup). A snapshot past its restorable window is refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::engine::stream::{
    ChunkReader, STREAM_MEMORY, hex_digest, integrity, open_chunk, read_header, total_size,
};
use crate::engine::transfer::TransferRun;
use crate::error::S3ErrorKind;
use crate::error::{Error, Result};
use crate::format::manifest::{Entry, InstanceRefs, Totals};
use crate::format::snapshots::Selector;
use crate::options::RunConfig;
use crate::progress::{Event, Outcome, Progress};
use crate::repo::Repository;
use crate::store::ReadOptions;
use crate::store::limit::Limits;
pub use crate::summary::{Failure, VerifySummary};

/// How much data `verify` reads.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum ReadData {
    /// Sizes only (one HEAD per object).
    #[default]
    None,
    /// Every object.
    All,
    /// About this percentage of the objects, chosen by a hash of their keys (the same ones each time).
    Subset(f64),
}

/// A verification of one snapshot.
#[derive(Clone, Debug)]
pub struct Verify {
    config: RunConfig,
    selector: Selector,
    read_data: ReadData,
}

impl Verify {
    /// Verifies the newest complete snapshot, sizes only.
    #[must_use]
    pub fn new(config: RunConfig) -> Self {
        Self { config, selector: Selector::Newest, read_data: ReadData::None }
    }

    crate::options::setters! {
        /// Which snapshot.
        with_selector(selector: Selector);
        /// How much data to read.
        with_read_data(read_data: ReadData);
    }

    /// Runs the verification.
    ///
    /// # Errors
    /// Configuration, password, credential and reachability problems, no such snapshot. Bad objects are
    /// not errors: they are in [`VerifySummary::bad`].
    pub async fn run(&self, progress: Arc<dyn Progress>, cancel: CancellationToken) -> Result<VerifySummary> {
        let started = Instant::now();
        let cx = Repository::open(&self.config, progress, false).await?;
        let state = cx.inspect_existing().await?;
        if state.config.is_none() {
            return Err(Error::NoSnapshot(format!(
                "{} has no s32s3 snapshots to verify (no .s32s3/config.json)",
                cx.location()
            )));
        }
        let selected = cx.select(state.records_since(), &self.selector).await?;
        let header = selected.header;
        cx.progress.event(&Event::Phase(&format!(
            "verifying snapshot {} of {}",
            header.snapshot_id, header.finished
        )));
        let reader = cx.snapshots().open(&selected.snapshot).await?;
        let mut summary = VerifySummary {
            snapshot_id: header.snapshot_id.clone(),
            checked: Totals::default(),
            read: Totals::default(),
            bad: Vec::new(),
            unreadable: Vec::new(),
            window: selected.window,
            duration: Duration::ZERO,
        };
        // Instance exports must be there too.
        if let Some(refs) = &header.instance {
            check_exports(&cx, refs, &mut summary).await?;
        }
        // The source's version history (`source_versions`): every stored version it names, too.
        let versions: Box<dyn Iterator<Item = Result<Entry>> + Send> = match &header.history {
            Some(history) => Box::new(
                crate::format::history::open(
                    &cx.dest,
                    cx.bucket(),
                    history,
                    &header.snapshot_id,
                    &cx.cipher,
                    cx.work.path(),
                )
                .await?
                .filter_map(|r| r.map(|r| r.stored.map(|e| *e)).transpose()),
            ),
            None => Box::new(std::iter::empty()),
        };
        self.check_entries(&cx, reader.chain(versions), &cancel, &mut summary).await?;
        summary.bad.sort_by(|a, b| (&a.bucket, &a.key).cmp(&(&b.bucket, &b.key)));
        summary.unreadable.sort_by(|a, b| (&a.bucket, &a.key).cmp(&(&b.bucket, &b.key)));
        summary.duration = started.elapsed();
        Ok(summary)
    }

    /// Checks every entry of the manifest (a HEAD each, or a read for the sampled ones), in parallel.
    async fn check_entries(
        &self,
        cx: &Repository,
        reader: impl Iterator<Item = Result<Entry>>,
        cancel: &CancellationToken,
        summary: &mut VerifySummary,
    ) -> Result<()> {
        let run = cx.transfer_run(&Arc::new(Limits::new(&self.config.transfer)), cancel);
        let read_data = self.read_data;
        let mut results = futures::stream::iter(reader)
            .map(|entry| {
                let (run, cancel) = (&run, cancel.clone());
                async move {
                    let entry = entry?;
                    if cancel.is_cancelled() {
                        return Err(Error::Cancelled);
                    }
                    let read = match read_data {
                        ReadData::None => false,
                        ReadData::All => true,
                        ReadData::Subset(percent) => sampled(&entry, percent),
                    };
                    let _transfer = run.limits.transfer().await;
                    let result =
                        if read { read_one(cx, run, &entry).await } else { head_one(cx, &entry).await };
                    Ok((entry, read, result))
                }
            })
            .buffer_unordered(self.config.transfer.transfers * 2);
        while let Some(item) = results.next().await {
            let (entry, read, result) = item?;
            summary.checked.add(entry.size);
            if read {
                summary.read.add(entry.size);
            }
            match result {
                Ok(()) => cx.progress.event(&Event::Object {
                    bucket: &entry.bucket,
                    key: &entry.key,
                    outcome: Outcome::Restored,
                    size: entry.size,
                }),
                Err(e) if fatal(&e) => return Err(e),
                Err(e) => {
                    let damaged = matches!(e, Error::Integrity { .. });
                    let error = if damaged { e.to_string() } else { format!("unreadable: {e}") };
                    cx.progress.event(&Event::Failed {
                        bucket: &entry.bucket,
                        key: &entry.key,
                        error: &error,
                    });
                    let failure = Failure { bucket: entry.bucket.clone(), key: entry.key.clone(), error };
                    if damaged { summary.bad.push(failure) } else { summary.unreadable.push(failure) }
                }
            }
        }
        Ok(())
    }
}

/// Checks that the snapshot's MinIO exports are stored.
async fn check_exports(cx: &Repository, refs: &InstanceRefs, summary: &mut VerifySummary) -> Result<()> {
    for key in [&refs.server_info, &refs.config, &refs.iam, &refs.bucket_metadata].into_iter().flatten() {
        let failure = |e: &Error| Failure { bucket: String::new(), key: key.clone(), error: e.to_string() };
        match check_exists(cx, key).await {
            Ok(()) => {}
            Err(e) if e.s3_kind() == Some(S3ErrorKind::NotFound) => summary.bad.push(failure(&e)),
            Err(e) if fatal(&e) => return Err(e),
            Err(e) => summary.unreadable.push(failure(&e)),
        }
    }
    Ok(())
}

/// Deterministic sampling: the same keys are read each time for the same percentage.
fn sampled(entry: &Entry, percent: f64) -> bool {
    let hash = Sha256::digest(format!("{}\0{}", entry.bucket, entry.key));
    let value = u16::from_be_bytes([hash[0], hash[1]]);
    f64::from(value) < percent / 100.0 * 65536.0
}

/// Failures that end the verification: nothing more could be read.
fn fatal(e: &Error) -> bool {
    matches!(e, Error::Cancelled)
        || matches!(e.s3_kind(), Some(S3ErrorKind::BadCredentials | S3ErrorKind::Unreachable))
}

async fn check_exists(cx: &Repository, key: &str) -> Result<()> {
    cx.dest.head(cx.bucket(), key, ReadOptions::current()).await.map(|_| ())
}

fn stored(cx: &Repository, entry: &Entry) -> String {
    format!(
        "s3://{}/{} (version {})",
        cx.bucket(),
        entry.stored_key,
        entry.version_id.as_deref().unwrap_or("null")
    )
}

/// A stored version that is not found is a bad object of the snapshot, not a failure of the run.
fn missing_is_bad(cx: &Repository, entry: &Entry, err: Error) -> Error {
    if err.s3_kind() == Some(S3ErrorKind::NotFound) {
        Error::Integrity {
            bucket: entry.bucket.clone(),
            key: entry.key.clone(),
            reason: format!("{} is missing", stored(cx, entry)),
        }
    } else {
        err
    }
}

async fn head_one(cx: &Repository, entry: &Entry) -> Result<()> {
    let head =
        cx.dest.head(cx.bucket(), &entry.stored_key, ReadOptions::version(entry.version_id.as_deref())).await;
    let head = head.map_err(|e| missing_is_bad(cx, entry, e))?;
    let size = head.content_length.unwrap_or(0);
    let expected = s32s3_crypt::encrypted_size(entry.size);
    if size == expected {
        Ok(())
    } else {
        Err(Error::Integrity {
            bucket: entry.bucket.clone(),
            key: entry.key.clone(),
            reason: format!("{} is {size} bytes, {expected} expected", stored(cx, entry)),
        })
    }
}

/// Reads a stored version as it streams (a few chunks in memory, whatever its size): its size, its
/// header (the nonce the manifest recorded, when it did), every chunk authenticated and decrypted, and the
/// plaintext's SHA-256 compared with the manifest's.
async fn read_one(cx: &Repository, run: &TransferRun, entry: &Entry) -> Result<()> {
    let expected = s32s3_crypt::encrypted_size(entry.size);
    let _memory = run.limits.memory(STREAM_MEMORY).await;
    let bad =
        |reason: String| integrity(&entry.bucket, &entry.key, format!("{}: {reason}", stored(cx, entry)));
    let read = ReadOptions::version(entry.version_id.as_deref());
    // A read that breaks off resumes where it stopped (under the policy); only one that keeps failing is
    // reported.
    let mut reader = cx.dest.read_range(cx.bucket(), &entry.stored_key, read, 0..expected);
    let head = reader.head().await.map_err(|e| missing_is_bad(cx, entry, e))?;
    if let Some(total) = total_size(head).filter(|t| *t != expected) {
        return Err(bad(format!("{total} bytes, {expected} expected")));
    }
    let (nonce, rest) = read_header(&mut reader, entry.stored_nonce().as_ref()).await?.map_err(bad)?;
    let mut chunks = ChunkReader::new(reader, s32s3_crypt::ENCRYPTED_CHUNK_SIZE, rest, &run.chunks);
    let (mut sha, mut size, mut index) = (Sha256::new(), 0u64, 0);
    let mut plain = Vec::with_capacity(s32s3_crypt::CHUNK_SIZE);
    while let Some(chunk) = chunks.next().await {
        plain.clear();
        open_chunk(&cx.cipher, &nonce, index, &chunk?, &mut plain).map_err(bad)?;
        sha.update(&plain);
        (size, index) = (size + plain.len() as u64, index + 1);
    }
    if size != entry.size {
        return Err(bad(format!("decrypts to {size} bytes, {} expected", entry.size)));
    }
    let got = hex_digest(sha);
    if got != entry.sha256 {
        return Err(bad(format!("SHA-256 {got} does not match the manifest's {}", entry.sha256)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_deterministic_and_roughly_proportional() {
        let entries: Vec<Entry> = (0..10_000)
            .map(|i| Entry { bucket: "b".into(), key: format!("k{i}"), ..Default::default() })
            .collect();
        let picked = entries.iter().filter(|e| sampled(e, 10.0)).count();
        assert!((800..1200).contains(&picked), "{picked}");
        assert_eq!(entries.iter().filter(|e| sampled(e, 10.0)).count(), picked);
        assert_eq!(entries.iter().filter(|e| sampled(e, 100.0)).count(), 10_000);
        assert_eq!(entries.iter().filter(|e| sampled(e, 0.0)).count(), 0);
    }
}
