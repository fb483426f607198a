//! The source's version history (`source_versions`, DESIGN.md §3.1): per key, every version and delete
//! marker the source holds, oldest first, in a file of its own beside the snapshot's manifest.
//!
//! The history of snapshot `<id>` is `.s32s3/instance/<id>/versions.history`: like a manifest, the
//! rclone-crypt encryption of a zstd-compressed JSON Lines stream, a [`HistoryHeader`] line and then one
//! [`VersionRecord`] per version or delete marker, sorted by (bucket, key) in byte order and, within a key,
//! oldest first. The manifest's header names it ([`HistoryRef`]); a manifest without that field has no
//! history (the feature was off), and nothing else in it changes. It lives under the snapshot's own folder
//! so that it is pruned with the snapshot, as its MinIO exports are.

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use s32s3_crypt::{Cipher, DecryptReader, EncryptReader};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::layout::Layout;
use crate::format::manifest::{Entry, HistoryRef};

/// The `format` field of every history header.
pub const FORMAT: &str = "s32s3-history";
/// The history format version this code writes and reads.
pub const VERSION: u32 = 1;

/// Where a snapshot's version history is stored: `.s32s3/instance/<id>/versions.history`.
#[must_use]
pub fn history_key(layout: &Layout, snapshot_id: &str) -> String {
    layout.meta(&format!("instance/{snapshot_id}/versions.history"))
}

/// Line 1 of a history file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryHeader {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// The snapshot it belongs to.
    pub snapshot_id: String,
}

/// One version or delete marker of a source key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Source bucket.
    pub bucket: String,
    /// Source key.
    pub key: String,
    /// The source's version id (`None`: the `null` version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Last-modified on the source (RFC 3339, at the precision the version listing gives).
    pub last_modified: String,
    /// A delete marker rather than a version.
    #[serde(default, skip_serializing_if = "is_false")]
    pub delete_marker: bool,
    /// The source's latest version or delete marker of the key when the snapshot was taken. A current
    /// version is stored where the snapshot's entry for the key says (its rclone name), not here.
    #[serde(default, skip_serializing_if = "is_false")]
    pub current: bool,
    /// Plaintext size (0 for delete markers).
    #[serde(default)]
    pub size: u64,
    /// ETag, as the version listing gives it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etag: String,
    /// Where a version that is not current is stored (under `.s32s3/versions/`), with everything the
    /// manifest records for an object: SHA-256, content headers, metadata, tags, stored key and version,
    /// crypt nonce. `None` for delete markers and current versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<Box<Entry>>,
    /// When a run first found it gone from the source (RFC 3339): it is kept `expiration_days` after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_since: Option<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(value: &bool) -> bool {
    !*value
}

impl VersionRecord {
    /// Last-modified as a time (`None` when it does not parse).
    #[must_use]
    pub fn modified(&self) -> Option<time::OffsetDateTime> {
        time::OffsetDateTime::parse(&self.last_modified, &time::format_description::well_known::Rfc3339).ok()
    }
}

/// Collects the records of a run in order and encodes the history file from them.
#[derive(Debug)]
pub struct HistoryWriter {
    spool: std::fs::File,
    last: Option<(String, String)>,
    /// Versions and delete markers written so far.
    pub counts: HistoryRef,
}

impl HistoryWriter {
    /// A writer spooling into a fresh temporary file in `dir`.
    ///
    /// # Errors
    /// [`Error::Io`] when the temporary file cannot be created.
    pub fn new(dir: &Path) -> Result<Self> {
        let spool = tempfile::tempfile_in(dir)
            .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
        Ok(Self { spool, last: None, counts: HistoryRef::default() })
    }

    /// Appends one record: records must come in (bucket, key) order, each key's oldest first.
    ///
    /// # Errors
    /// [`Error::Io`] when the spool file cannot be written; [`Error::Corrupt`] for a key out of order (a bug).
    pub fn push(&mut self, record: &VersionRecord) -> Result<()> {
        if let Some((bucket, key)) = &self.last
            && (bucket.as_str(), key.as_str()) > (record.bucket.as_str(), record.key.as_str())
        {
            return Err(Error::corrupt("version history", format!("out of order at {}", record.key)));
        }
        let mut line =
            serde_json::to_vec(record).map_err(|e| Error::io("encoding the history", io::Error::other(e)))?;
        line.push(b'\n');
        self.spool.write_all(&line).map_err(|e| Error::io("writing the history spool", e))?;
        self.last = Some((record.bucket.clone(), record.key.clone()));
        if record.delete_marker {
            self.counts.delete_markers += 1;
        } else {
            self.counts.versions += 1;
        }
        Ok(())
    }

    /// Encodes the header and the records into a new temporary file (zstd, then rclone crypt), rewound,
    /// with its length.
    ///
    /// # Errors
    /// [`Error::Io`] on local I/O failures; crypt errors as [`Error::Crypt`].
    pub fn encode(&mut self, snapshot_id: &str, cipher: &Cipher, dir: &Path) -> Result<(std::fs::File, u64)> {
        let header =
            HistoryHeader { format: FORMAT.into(), version: VERSION, snapshot_id: snapshot_id.into() };
        let mut header_line = serde_json::to_vec(&header)
            .map_err(|e| Error::io("encoding the history", io::Error::other(e)))?;
        header_line.push(b'\n');
        self.spool.seek(SeekFrom::Start(0)).map_err(|e| Error::io("reading the history spool", e))?;
        let spool = self.spool.try_clone().map_err(|e| Error::io("reading the history spool", e))?;
        let plain = io::Cursor::new(header_line).chain(BufReader::new(spool));
        let compressed = zstd::stream::read::Encoder::new(plain, 1)
            .map_err(|e| Error::io("compressing the history", e))?;
        let mut encrypted = EncryptReader::new(cipher, compressed)
            .map_err(|source| Error::Crypt { what: "version history".into(), source })?;
        let mut out = tempfile::tempfile_in(dir)
            .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
        let len = io::copy(&mut encrypted, &mut out).map_err(|e| Error::io("encoding the history", e))?;
        out.seek(SeekFrom::Start(0)).map_err(|e| Error::io("encoding the history", e))?;
        self.spool.seek(SeekFrom::End(0)).map_err(|e| Error::io("writing the history spool", e))?;
        Ok((out, len))
    }
}

/// Streams the records out of a (downloaded) history file, checking the header and the order.
pub struct HistoryReader {
    name: String,
    lines: Box<dyn BufRead + Send>,
    line: String,
    last: Option<(String, String)>,
}

impl std::fmt::Debug for HistoryReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryReader").field("name", &self.name).finish_non_exhaustive()
    }
}

impl HistoryReader {
    /// Opens the history of snapshot `snapshot_id` in `input`; `name` is used in error messages.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for anything that is not that snapshot's history.
    pub fn open(
        name: &str,
        input: impl Read + Send + 'static,
        cipher: &Cipher,
        snapshot_id: &str,
    ) -> Result<Self> {
        let corrupt =
            |e: &dyn std::fmt::Display| Error::corrupt(name, format!("damaged version history: {e}"));
        let decrypted = DecryptReader::new(cipher, input);
        let decoder = zstd::stream::read::Decoder::new(decrypted).map_err(|e| corrupt(&e))?;
        let mut lines: Box<dyn BufRead + Send> = Box::new(BufReader::new(decoder));
        let mut line = String::new();
        lines.read_line(&mut line).map_err(|e| corrupt(&e))?;
        let header: HistoryHeader = serde_json::from_str(&line).map_err(|e| corrupt(&e))?;
        if header.format != FORMAT || header.version != VERSION || header.snapshot_id != snapshot_id {
            return Err(Error::corrupt(
                name,
                format!(
                    "not the version history of snapshot {snapshot_id} (format {:?} {}, snapshot {})",
                    header.format, header.version, header.snapshot_id
                ),
            ));
        }
        Ok(Self { name: name.to_owned(), lines, line: String::new(), last: None })
    }

    fn next_record(&mut self) -> Result<Option<VersionRecord>> {
        self.line.clear();
        let n = self
            .lines
            .read_line(&mut self.line)
            .map_err(|e| Error::corrupt(&self.name, format!("damaged version history: {e}")))?;
        if n == 0 {
            return Ok(None);
        }
        let record: VersionRecord = serde_json::from_str(&self.line)
            .map_err(|e| Error::corrupt(&self.name, format!("bad version record: {e}")))?;
        if let Some((bucket, key)) = &self.last
            && (bucket.as_str(), key.as_str()) > (record.bucket.as_str(), record.key.as_str())
        {
            return Err(Error::corrupt(
                &self.name,
                format!("records out of order at s3://{}/{}", record.bucket, record.key),
            ));
        }
        self.last = Some((record.bucket.clone(), record.key.clone()));
        Ok(Some(record))
    }
}

impl Iterator for HistoryReader {
    type Item = Result<VersionRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// Downloads and opens the history the manifest header `history` names, for snapshot `snapshot_id`.
///
/// # Errors
/// S3 failures; [`Error::Corrupt`].
pub async fn open(
    dest: &crate::store::Store,
    bucket: &str,
    history: &HistoryRef,
    snapshot_id: &str,
    cipher: &Cipher,
    dir: &Path,
) -> Result<HistoryReader> {
    let file = dest.get_to_file(bucket, &history.key, dir).await?;
    let name = format!("s3://{bucket}/{}", history.key);
    let (cipher, id) = (cipher.clone(), snapshot_id.to_owned());
    tokio::task::spawn_blocking(move || HistoryReader::open(&name, BufReader::new(file), &cipher, &id))
        .await
        .expect("does not panic")
}

/// Groups sorted records by (bucket, key): each item is one key's records, oldest first.
pub struct ByKey<I: Iterator<Item = Result<VersionRecord>>> {
    inner: std::iter::Peekable<I>,
}

impl<I: Iterator<Item = Result<VersionRecord>>> ByKey<I> {
    /// Groups `records`.
    pub fn new(records: I) -> Self {
        Self { inner: records.peekable() }
    }

    /// The next key's records, if its bucket is `bucket` and its key sorts at or before `key` (`None`:
    /// any key); records of buckets before `bucket` are skipped.
    ///
    /// # Errors
    /// What the records' reader says.
    pub fn next_until(&mut self, bucket: &str, key: Option<&str>) -> Result<Option<Vec<VersionRecord>>> {
        loop {
            match self.inner.peek() {
                None => return Ok(None),
                Some(Err(_)) => return Err(self.inner.next().expect("peeked").expect_err("an error")),
                Some(Ok(r)) if r.bucket.as_str() < bucket => {
                    self.inner.next();
                }
                Some(Ok(r)) if r.bucket != bucket || key.is_some_and(|k| r.key.as_str() > k) => {
                    return Ok(None);
                }
                Some(Ok(_)) => break,
            }
        }
        let first = self.inner.next().expect("peeked")?;
        let mut group = vec![first];
        while let Some(Ok(next)) = self.inner.peek() {
            if next.bucket != group[0].bucket || next.key != group[0].key {
                break;
            }
            group.push(self.inner.next().expect("peeked")?);
        }
        Ok(Some(group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(bucket: &str, key: &str, version: &str, marker: bool) -> VersionRecord {
        VersionRecord {
            bucket: bucket.into(),
            key: key.into(),
            version_id: Some(version.into()),
            last_modified: "2026-01-01T00:00:00Z".into(),
            delete_marker: marker,
            current: false,
            size: if marker { 0 } else { 3 },
            etag: String::new(),
            stored: None,
            gone_since: None,
        }
    }

    #[test]
    fn a_history_round_trips_and_groups_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let cipher = Cipher::new("pw", "").unwrap();
        let mut writer = HistoryWriter::new(dir.path()).unwrap();
        let records = [
            record("a", "k", "1", false),
            record("a", "k", "2", true),
            record("a", "l", "3", false),
            record("b", "k", "4", false),
        ];
        for r in &records {
            writer.push(r).unwrap();
        }
        assert_eq!((writer.counts.versions, writer.counts.delete_markers), (3, 1));
        assert!(writer.push(&record("a", "z", "5", false)).is_err(), "out of order is refused");
        let (file, _) = writer.encode("0123abcd", &cipher, dir.path()).unwrap();
        let read: Vec<_> =
            HistoryReader::open("h", file, &cipher, "0123abcd").unwrap().collect::<Result<_>>().unwrap();
        assert_eq!(read, records);

        let (file, _) = writer.encode("0123abcd", &cipher, dir.path()).unwrap();
        assert!(HistoryReader::open("h", file, &cipher, "99999999").is_err(), "bound to its snapshot");

        let (file, _) = writer.encode("0123abcd", &cipher, dir.path()).unwrap();
        let mut groups = ByKey::new(HistoryReader::open("h", file, &cipher, "0123abcd").unwrap());
        assert_eq!(groups.next_until("a", Some("k")).unwrap().unwrap().len(), 2);
        assert!(groups.next_until("a", Some("k")).unwrap().is_none(), "l sorts after k");
        assert_eq!(groups.next_until("a", None).unwrap().unwrap()[0].key, "l");
        assert!(groups.next_until("a", None).unwrap().is_none());
        assert_eq!(groups.next_until("b", None).unwrap().unwrap()[0].version_id.as_deref(), Some("4"));
    }
}
