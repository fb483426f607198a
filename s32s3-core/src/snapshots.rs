//! Finding, reading and pruning snapshot manifests in the backup bucket.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Seek, SeekFrom, Write};
use std::path::Path;

use s32s3_crypt::{Cipher, DecryptReader, ENCRYPTED_CHUNK_SIZE, HEADER_SIZE};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::layout::Layout;
use crate::manifest::{Header, ManifestReader};
use crate::s3::Store;
use crate::{Error, Result};

/// The time in a manifest's name, to the millisecond: runs finishing within the same second must still
/// sort in the order they finished.
const NAME_TIME: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second].[subsecond digits:3]Z");

/// A manifest object in the backup bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRef {
    /// Its key in the backup bucket.
    pub key: String,
    /// The snapshot id.
    pub id: String,
    /// When the run finished (from the name; for a checkpoint, when it was last written).
    pub finished: OffsetDateTime,
    /// A checkpoint of an unfinished run (`<id>.partial`), not a snapshot.
    pub checkpoint: bool,
    /// Size of the encrypted manifest.
    pub size: u64,
}

/// The key of the manifest of snapshot `id`, finished at `finished`.
#[must_use]
pub fn snapshot_key(layout: &Layout, finished: OffsetDateTime, id: &str) -> String {
    let time = finished.to_offset(time::UtcOffset::UTC).format(NAME_TIME).expect("the format is valid");
    format!("{}{time}-{id}.snap", layout.snapshots_prefix())
}

/// The key of the checkpoint of run `id`.
#[must_use]
pub fn checkpoint_key(layout: &Layout, id: &str) -> String {
    format!("{}{id}.partial", layout.snapshots_prefix())
}

/// Every snapshot and checkpoint, oldest first (objects that are not manifests are ignored).
///
/// # Errors
/// S3 failures.
pub async fn list(dest: &Store, bucket: &str, layout: &Layout) -> Result<Vec<SnapshotRef>> {
    let prefix = layout.snapshots_prefix();
    let mut found = Vec::new();
    let mut pages = dest.client().list_objects_v2().bucket(bucket).prefix(&prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| dest.err("ListObjectsV2", bucket, None, e))?;
        for object in page.contents() {
            let key = object.key().unwrap_or_default();
            let name = &key[prefix.len().min(key.len())..];
            let size = object.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
            if let Some(rest) = name.strip_suffix(".snap")
                && let Some((time, id)) = rest.split_once('-')
                && let Ok(finished) = time::PrimitiveDateTime::parse(time, NAME_TIME)
            {
                found.push(SnapshotRef {
                    key: key.to_owned(),
                    id: id.to_owned(),
                    finished: finished.assume_utc(),
                    checkpoint: false,
                    size,
                });
            } else if let Some(id) = name.strip_suffix(".partial") {
                let finished = object
                    .last_modified()
                    .and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok())
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                found.push(SnapshotRef {
                    key: key.to_owned(),
                    id: id.to_owned(),
                    finished,
                    checkpoint: true,
                    size,
                });
            }
        }
    }
    found.sort_by(|a, b| (a.finished, &a.id).cmp(&(b.finished, &b.id)));
    Ok(found)
}

/// Downloads an object into a temporary file in `dir` (rewound), streaming.
///
/// # Errors
/// S3 failures; [`Error::Io`].
pub async fn download(store: &Store, bucket: &str, key: &str, dir: &Path) -> Result<File> {
    let out = store
        .client()
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| store.err("GetObject", bucket, Some(key), e))?;
    let mut file = tempfile::tempfile_in(dir)
        .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
    let mut body = out.body;
    while let Some(chunk) =
        body.try_next().await.map_err(|e| crate::transfer::body_error(store.side(), bucket, key, &e))?
    {
        file.write_all(&chunk).map_err(|e| Error::io("writing a temporary file", e))?;
    }
    file.seek(SeekFrom::Start(0)).map_err(|e| Error::io("writing a temporary file", e))?;
    Ok(file)
}

/// Downloads and opens a manifest.
///
/// # Errors
/// S3 failures, [`Error::Corrupt`].
pub async fn open(
    dest: &Store,
    bucket: &str,
    key: &str,
    cipher: &Cipher,
    dir: &Path,
) -> Result<ManifestReader> {
    let file = download(dest, bucket, key, dir).await?;
    let name = format!("s3://{bucket}/{key}");
    let cipher = cipher.clone();
    tokio::task::spawn_blocking(move || ManifestReader::open(&name, file, &cipher))
        .await
        .expect("does not panic")
}

/// Reads only a manifest's header line, from the first MiB of the object (the whole manifest, downloaded
/// into `dir`, only when the header is longer).
///
/// # Errors
/// S3 failures, [`Error::Corrupt`].
pub async fn read_header(
    dest: &Store,
    bucket: &str,
    key: &str,
    cipher: &Cipher,
    dir: &Path,
) -> Result<Header> {
    let name = format!("s3://{bucket}/{key}");
    // Whole crypt chunks only: a prefix cut at a chunk boundary decrypts without error.
    let end = HEADER_SIZE + 16 * ENCRYPTED_CHUNK_SIZE - 1;
    let out = dest
        .client()
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(format!("bytes=0-{end}"))
        .send()
        .await
        .map_err(|e| dest.err("GetObject", bucket, Some(key), e))?;
    let bytes = crate::transfer::read_body(out.body, dest.side(), bucket, key, end as u64 + 1).await?;
    let mut plain = Vec::new();
    DecryptReader::new(cipher, Cursor::new(bytes))
        .read_to_end(&mut plain)
        .map_err(|e| Error::corrupt(&name, e.to_string()))?;
    let decoder = zstd::stream::read::Decoder::new(Cursor::new(plain))
        .map_err(|e| Error::corrupt(&name, e.to_string()))?;
    let mut line = String::new();
    BufReader::new(decoder).read_line(&mut line).map_err(|e| Error::corrupt(&name, e.to_string()))?;
    if !line.ends_with('\n') {
        // A header longer than the first MiB (thousands of buckets): read the whole manifest.
        return open(dest, bucket, key, cipher, dir).await.map(|r| r.header().clone());
    }
    let header: Header =
        serde_json::from_str(&line).map_err(|e| Error::corrupt(&name, format!("bad header: {e}")))?;
    if header.format != crate::manifest::FORMAT {
        return Err(Error::corrupt(&name, "not an s32s3 manifest"));
    }
    Ok(header)
}

/// Which snapshot a restore or verify uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Selector {
    /// The newest complete snapshot.
    #[default]
    Newest,
    /// The newest complete snapshot finished at or before this time.
    At(OffsetDateTime),
    /// This snapshot id (complete or partial).
    Id(String),
}

/// Picks a snapshot and reads its header.
///
/// # Errors
/// [`Error::NoSnapshot`] with what exists instead; S3 failures; [`Error::Corrupt`] for an unreadable header.
pub async fn select(
    dest: &Store,
    bucket: &str,
    layout: &Layout,
    cipher: &Cipher,
    dir: &Path,
    selector: &Selector,
) -> Result<(SnapshotRef, Header)> {
    let all: Vec<SnapshotRef> =
        list(dest, bucket, layout).await?.into_iter().filter(|s| !s.checkpoint).collect();
    let location = format!("s3://{bucket}/{}", layout.root());
    let Some(oldest) = all.first() else {
        return Err(Error::NoSnapshot(format!("no snapshots in {location}")));
    };
    if let Selector::Id(id) = selector {
        let snap = all.iter().find(|s| &s.id == id).ok_or_else(|| {
            Error::NoSnapshot(format!("no snapshot {id:?} in {location} (`s32s3 snapshots` lists them)"))
        })?;
        let header = read_header(dest, bucket, &snap.key, cipher, dir).await?;
        return Ok((snap.clone(), header));
    }
    let at = match selector {
        Selector::At(at) => Some(*at),
        _ => None,
    };
    let candidates = all.iter().filter(|s| at.is_none_or(|at| s.finished <= at));
    if let Some(found) = newest_complete(dest, bucket, cipher, dir, candidates).await? {
        return Ok(found);
    }
    Err(Error::NoSnapshot(match at {
        Some(at) if at < oldest.finished => format!(
            "no snapshot at or before {}: the oldest in {location} is {} from {}",
            crate::format_rfc3339(at),
            oldest.id,
            crate::format_rfc3339(oldest.finished)
        ),
        Some(at) => format!("no complete snapshot at or before {} in {location}", crate::format_rfc3339(at)),
        None => format!("no complete snapshot in {location}"),
    }))
}

/// The newest complete snapshot among `candidates` (oldest first) with its header: headers are read from
/// the newest backwards until one says complete, so usually only one is read.
async fn newest_complete<'a>(
    dest: &Store,
    bucket: &str,
    cipher: &Cipher,
    dir: &Path,
    candidates: impl DoubleEndedIterator<Item = &'a SnapshotRef>,
) -> Result<Option<(SnapshotRef, Header)>> {
    for snap in candidates.rev() {
        let header = read_header(dest, bucket, &snap.key, cipher, dir).await?;
        if header.status == crate::manifest::SnapshotStatus::Complete {
            return Ok(Some((snap.clone(), header)));
        }
    }
    Ok(None)
}

/// One snapshot as `s32s3 snapshots` shows it.
#[derive(Clone, Debug)]
pub struct SnapshotInfo {
    /// Where it is and when it finished.
    pub snapshot: SnapshotRef,
    /// Its header, or why it could not be read.
    pub header: std::result::Result<Header, String>,
}

/// Every snapshot of the backup location (checkpoints of unfinished runs included), oldest first, with
/// their headers.
///
/// # Errors
/// Configuration, password, credential and reachability problems; a missing backup bucket.
pub async fn describe(
    config: &crate::options::RunConfig,
    progress: std::sync::Arc<dyn crate::progress::Progress>,
) -> Result<Vec<SnapshotInfo>> {
    let cx = crate::context::Context::new(config, progress, false).await?;
    if !cx.dest.bucket_exists(cx.bucket()).await? {
        return Err(Error::NoSnapshot(format!("the backup bucket s3://{} does not exist", cx.bucket())));
    }
    crate::destination::inspect(&cx.dest, cx.bucket(), &cx.layout, &cx.cipher).await?;
    let mut out = Vec::new();
    for snapshot in list(&cx.dest, cx.bucket(), &cx.layout).await? {
        let header = read_header(&cx.dest, cx.bucket(), &snapshot.key, &cx.cipher, cx.work.path())
            .await
            .map_err(|e| e.to_string());
        out.push(SnapshotInfo { snapshot, header });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_finish_time_to_the_millisecond() {
        let layout = Layout::new(&Cipher::new("p", "").unwrap(), "pre").unwrap();
        let t = time::macros::datetime!(2026-11-26 17:09:58.123456 UTC);
        let key = snapshot_key(&layout, t, "0a1b2c3d");
        assert_eq!(key, "pre/.s32s3/snapshots/20261126T170958.123Z-0a1b2c3d.snap");
        let later = snapshot_key(&layout, t + time::Duration::milliseconds(1), "00000000");
        assert!(later > key, "names sort in finishing order");
        let name = key.rsplit('/').next().unwrap().strip_suffix(".snap").unwrap();
        let (time, id) = name.split_once('-').unwrap();
        assert_eq!(id, "0a1b2c3d");
        let parsed = time::PrimitiveDateTime::parse(time, NAME_TIME).unwrap().assume_utc();
        assert_eq!(parsed, time::macros::datetime!(2026-11-26 17:09:58.123 UTC));
    }
}

/// What the backup location holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Snapshots (manifests, checkpoints excluded).
    pub snapshots: u64,
    /// When the newest complete snapshot finished: a restarted daemon reports its last success from it.
    pub last_complete: Option<OffsetDateTime>,
    /// Object versions, all of them (current and noncurrent).
    pub versions: u64,
    /// Bytes of all those versions: what the destination stores.
    pub bytes: u64,
}

/// Counts snapshots, finds the newest complete one and sums every stored version under the backup
/// location (for metrics).
///
/// # Errors
/// Configuration, password, credential and reachability problems.
pub async fn storage_stats(
    config: &crate::options::RunConfig,
    progress: std::sync::Arc<dyn crate::progress::Progress>,
) -> Result<StorageStats> {
    let cx = crate::context::Context::new(config, progress, false).await?;
    if !cx.dest.bucket_exists(cx.bucket()).await? {
        return Ok(StorageStats::default());
    }
    let snapshots: Vec<SnapshotRef> =
        list(&cx.dest, cx.bucket(), &cx.layout).await?.into_iter().filter(|s| !s.checkpoint).collect();
    let newest = newest_complete(&cx.dest, cx.bucket(), &cx.cipher, cx.work.path(), snapshots.iter()).await?;
    let mut stats = StorageStats {
        snapshots: snapshots.len() as u64,
        last_complete: newest.map(|(snapshot, _)| snapshot.finished),
        ..Default::default()
    };
    cx.dest
        .list_versions(cx.bucket(), Some(cx.layout.root()), |page| {
            for v in page.versions() {
                stats.versions += 1;
                stats.bytes += v.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
            }
        })
        .await?;
    Ok(stats)
}
