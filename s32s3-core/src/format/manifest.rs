//! Snapshot manifests (DESIGN.md §3): the rclone-crypt encryption of a zstd-compressed JSON Lines stream.
//!
//! Line 1 is a [`Header`]; then one [`Entry`] per object, sorted by (bucket, key) in byte order. Object
//! metadata and tags live only here, never in clear on the destination.
//!
//! Manifests are built and read through local temporary files, so memory stays flat however many objects a
//! snapshot holds: [`ManifestWriter`] appends entries to a spool file and encodes it at the end (or at a
//! checkpoint); [`ManifestReader`] streams entries out of a downloaded manifest.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use s32s3_crypt::{Cipher, DecryptReader, EncryptReader};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::spool::{Record, RecordReader, RecordWriter, Spool};

/// The `format` field of every manifest header.
pub const FORMAT: &str = "s32s3-manifest";
/// The manifest format version this code writes and reads.
pub const VERSION: u32 = 1;
/// zstd level: manifests are written once per run; level 3 compresses JSON ~8× at >100 MB/s.
const ZSTD_LEVEL: i32 = 1;

/// How a snapshot ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotStatus {
    /// Every object was copied: restores exactly the source as listed.
    Complete,
    /// The run finished, but some objects (or buckets) could not be copied; they keep their previous
    /// version when there was one.
    Partial,
    /// A checkpoint of a run still going (or interrupted): used only to resume.
    Running,
}

impl std::fmt::Display for SnapshotStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Complete => "complete",
            Self::Partial => "partial",
            Self::Running => "running",
        })
    }
}

/// What was backed up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The source endpoint URL.
    pub endpoint: String,
    /// `minio` when the source answers MinIO's admin API (MinIO, `RustFS`; also when these keys may not
    /// administer it), else `s3`.
    pub kind: String,
    /// MinIO server version, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minio_version: Option<String>,
    /// MinIO deployment id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
}

/// One bucket of a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    /// Bucket name.
    pub name: String,
    /// Objects recorded for this bucket.
    pub objects: u64,
    /// Plaintext bytes recorded for this bucket.
    pub bytes: u64,
    /// Configuration read over S3, by sub-resource (`versioning`, `lifecycle`, `policy`, `tagging`, `cors`,
    /// `encryption`, `notification`, `replication`, `website`, `object-lock`): the server's own document,
    /// so restore puts back exactly what was read. Absent sub-resources are not listed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Sub-resources the source refused to give (not implemented, permission denied), with the reason.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config_errors: BTreeMap<String, String>,
    /// The bucket is gone from the source; its objects are carried over from the previous snapshot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub source_missing: bool,
    /// The bucket was not part of this run (`--bucket` named others); carried over unchanged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub carried_over: bool,
}

/// Where the instance-level exports of a snapshot are stored (keys relative to the backup root).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRefs {
    /// MinIO server info (JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_info: Option<String>,
    /// MinIO server configuration (KV text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// MinIO IAM export (zip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam: Option<String>,
    /// MinIO bucket-metadata export (zip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_metadata: Option<String>,
    /// Exports that failed, with the reason.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, String>,
}

/// Objects and bytes (defined with the progress events, which count them too).
pub use crate::progress::Totals;

/// Line 1 of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// The snapshot id (random, 8 hex digits; a sharded run's run id).
    pub snapshot_id: String,
    /// Complete, partial, or a running checkpoint.
    pub status: SnapshotStatus,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// When the run finished (RFC 3339, UTC); for a checkpoint, when it was written.
    pub finished: String,
    /// `s32s3 <version>`.
    pub tool: String,
    /// The source.
    pub source: SourceInfo,
    /// The snapshot this run was based on (incremental parent), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Buckets, sorted by name.
    pub buckets: Vec<BucketRecord>,
    /// MinIO instance exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceRefs>,
    /// All objects.
    pub totals: Totals,
    /// The backup location it was written for: a manifest is valid only there (absent in manifests of
    /// s32s3 before 0.2, which are checked by id and time only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// The source's version history (`source_versions`), stored beside the manifest (absent when off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryRef>,
}

/// What the manifest's header says of the snapshot's version history ([`crate::format::history`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRef {
    /// The stored history file (full key).
    pub key: String,
    /// Versions recorded (delete markers not counted), current ones included.
    pub versions: u64,
    /// Delete markers recorded.
    pub delete_markers: u64,
}

/// Where a manifest belongs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The backup bucket.
    pub bucket: String,
    /// The prefix inside it (empty, or ending in `/`).
    pub prefix: String,
}

/// One object of a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Source bucket.
    pub bucket: String,
    /// Source key.
    pub key: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Source ETag, as listed.
    pub etag: String,
    /// Source last-modified time, as listed (RFC 3339).
    pub last_modified: String,
    /// Storage class, as listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// `Content-Type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// `Cache-Control`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `Expires`, as the server sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// User metadata (`x-amz-meta-*`), keys lower-case without the prefix.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Object tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Object-lock retention mode (`GOVERNANCE`/`COMPLIANCE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_mode: Option<String>,
    /// Object-lock retain-until date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_retain_until: Option<String>,
    /// Object-lock legal hold (`ON`/`OFF`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_hold: Option<String>,
    /// SHA-256 of the plaintext, hex, computed while streaming.
    pub sha256: String,
    /// The stored object's key on the destination (full key, prefix included).
    pub stored_key: String,
    /// The stored object's version id on the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// The stored object's crypt nonce (hex), which its header carries. With it, a restore that finds this
    /// nonce, the size and every chunk authentic has proved the bytes are the ones written at backup, and
    /// needs no second hash of them (absent in manifests of s32s3 before 0.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Until when Object Lock retains the stored version (RFC 3339), with `object_lock` on: what tells a
    /// later run, without a request, whether to extend it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_until: Option<String>,
}

impl Entry {
    /// The recorded crypt nonce, when there is one and it is well formed.
    #[must_use]
    pub fn stored_nonce(&self) -> Option<s32s3_crypt::Nonce> {
        let bytes = hex::decode(self.nonce.as_deref()?).ok()?;
        Some(s32s3_crypt::Nonce::from_bytes(bytes.try_into().ok()?))
    }

    /// Whether the source object is the same one this entry recorded (same size, ETag, last-modified).
    #[must_use]
    pub fn same_source(&self, size: u64, etag: &str, last_modified: &str) -> bool {
        self.size == size && self.etag == etag && self.last_modified == last_modified
    }
}

/// An entry as the incremental merge-join reads it: the fields it compares, parsed, and the entry's JSON
/// line, which goes into the next snapshot unchanged when the object is (no parse of the rest, no
/// serialization: the per-object cost of an incremental backup of an unchanged object). The whole
/// [`Entry`] is parsed only for the few that change or go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryLine {
    /// Source bucket.
    pub bucket: String,
    /// Source key.
    pub key: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Source ETag, as listed.
    pub etag: String,
    /// Source last-modified time, as listed.
    pub last_modified: String,
    line: String,
}

/// The fields of an entry line that [`EntryLine`] parses; the others are skipped, not parsed, but the
/// fields every entry has must be there. (Lines come from manifests only the key could have written; a
/// kept line is written out as it was read.)
#[derive(Deserialize)]
struct EntryHead<'a> {
    #[serde(rename = "sha256")]
    _sha256: serde::de::IgnoredAny,
    #[serde(rename = "stored_key")]
    _stored_key: serde::de::IgnoredAny,
    #[serde(borrow)]
    bucket: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    key: std::borrow::Cow<'a, str>,
    size: u64,
    #[serde(borrow)]
    etag: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    last_modified: std::borrow::Cow<'a, str>,
}

impl EntryLine {
    /// Parses the compared fields of one entry's JSON line (no newline).
    ///
    /// # Errors
    /// The line is not an entry.
    pub fn parse(line: String) -> std::result::Result<Self, serde_json::Error> {
        let head: EntryHead<'_> = serde_json::from_str(&line)?;
        let (bucket, key) = (head.bucket.into_owned(), head.key.into_owned());
        let (etag, last_modified) = (head.etag.into_owned(), head.last_modified.into_owned());
        Ok(Self { bucket, key, size: head.size, etag, last_modified, line })
    }

    /// The line of an entry.
    ///
    /// # Panics
    /// Never: an entry always serializes.
    #[must_use]
    pub fn of(entry: &Entry) -> Self {
        let line = serde_json::to_string(entry).expect("an entry serializes");
        Self {
            bucket: entry.bucket.clone(),
            key: entry.key.clone(),
            size: entry.size,
            etag: entry.etag.clone(),
            last_modified: entry.last_modified.clone(),
            line,
        }
    }

    /// The whole entry.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the rest of the line is not an entry's.
    pub fn entry(&self) -> Result<Entry> {
        serde_json::from_str(&self.line).map_err(|e| {
            Error::corrupt(format!("s3://{}/{}", self.bucket, self.key), format!("bad entry: {e}"))
        })
    }

    /// The entry's tags (parsed from its line on each call: only tag comparisons need them).
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the line's tags are not a map of strings.
    pub fn tags(&self) -> Result<BTreeMap<String, String>> {
        #[derive(Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: BTreeMap<String, String>,
        }
        serde_json::from_str::<Tags>(&self.line).map(|t| t.tags).map_err(|e| {
            Error::corrupt(format!("s3://{}/{}", self.bucket, self.key), format!("bad entry tags: {e}"))
        })
    }

    /// The Object Lock retain-until date of the stored version, as recorded (parsed from the line on each
    /// call: only runs with `object_lock` need it).
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the line's field is not a string.
    pub fn retained_until(&self) -> Result<Option<String>> {
        #[derive(Deserialize)]
        struct Retained {
            #[serde(default)]
            retained_until: Option<String>,
        }
        serde_json::from_str::<Retained>(&self.line).map(|r| r.retained_until).map_err(|e| {
            Error::corrupt(format!("s3://{}/{}", self.bucket, self.key), format!("bad entry retention: {e}"))
        })
    }

    /// The same entry with other tags: the source object's tags changed, nothing else (its stored version
    /// is the same).
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the line is not an entry's.
    pub fn retagged(&self, tags: BTreeMap<String, String>) -> Result<Entry> {
        Ok(Entry { tags, ..self.entry()? })
    }

    /// The entry's JSON line, as read.
    #[must_use]
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Whether the source object is the one this entry recorded (see [`Entry::same_source`]).
    #[must_use]
    pub fn same_source(&self, size: u64, etag: &str, last_modified: &str) -> bool {
        self.size == size && self.etag == etag && self.last_modified == last_modified
    }
}

impl Record for EntryLine {
    fn encode(&self, out: &mut RecordWriter<'_>) {
        out.str(&self.bucket);
        out.str(&self.key);
        out.u64(self.size);
        out.str(&self.etag);
        out.str(&self.last_modified);
        out.str(&self.line);
    }

    fn decode(input: &mut RecordReader<'_>) -> Option<Self> {
        Some(Self {
            bucket: input.str()?,
            key: input.str()?,
            size: input.u64()?,
            etag: input.str()?,
            last_modified: input.str()?,
            line: input.str()?,
        })
    }
}

/// Appends entries to a spool file and encodes the manifest from it.
#[derive(Debug)]
pub struct ManifestWriter {
    spool: Spool<Entry>,
    totals: Totals,
}

impl ManifestWriter {
    /// A writer spooling into a fresh temporary file in `dir`.
    ///
    /// # Errors
    /// [`Error::Io`] when the temporary file cannot be created.
    pub fn new(dir: &Path) -> Result<Self> {
        Ok(Self { spool: Spool::new(dir)?, totals: Totals::default() })
    }

    /// Appends one entry. Entries must come in (bucket, key) byte order; the caller guarantees it.
    ///
    /// # Errors
    /// [`Error::Io`] when the spool file cannot be written.
    pub fn push(&mut self, entry: &Entry) -> Result<()> {
        self.spool.push(entry)?;
        self.totals.add(entry.size);
        Ok(())
    }

    /// Appends one entry as read (its line unchanged), in the same order as [`ManifestWriter::push`].
    ///
    /// # Errors
    /// [`Error::Io`] when the spool file cannot be written.
    pub fn push_line(&mut self, entry: &EntryLine) -> Result<()> {
        self.spool.push_line(entry.line())?;
        self.totals.add(entry.size);
        Ok(())
    }

    /// Entries pushed so far.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.spool.len()
    }

    /// Whether no entry was pushed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.spool.is_empty()
    }

    /// Objects and bytes pushed so far.
    #[must_use]
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// The entries pushed so far, from the start.
    ///
    /// # Errors
    /// [`Error::Io`] when the spool cannot be read.
    pub fn entries(&mut self) -> Result<crate::format::spool::SpoolReader<'_, Entry>> {
        self.spool.reader()
    }

    /// Rewrites the entries pushed so far: one whose (bucket, key) is in `changes` is replaced by the
    /// change's entry (of the same bucket and key, so the order holds) or dropped (`None`). Returns the new
    /// totals per bucket.
    ///
    /// # Errors
    /// [`Error::Io`] when the spool files cannot be read or written.
    pub fn rewrite(
        &mut self,
        dir: &Path,
        changes: &BTreeMap<(String, String), Option<Entry>>,
    ) -> Result<BTreeMap<String, Totals>> {
        let mut spool = Spool::new(dir)?;
        let mut totals = Totals::default();
        let mut per_bucket: BTreeMap<String, Totals> = BTreeMap::new();
        for entry in self.spool.reader()? {
            let entry = entry?;
            let entry = match changes.get(&(entry.bucket.clone(), entry.key.clone())) {
                Some(Some(changed)) => changed.clone(),
                Some(None) => continue,
                None => entry,
            };
            spool.push(&entry)?;
            totals.add(entry.size);
            per_bucket.entry(entry.bucket.clone()).or_default().add(entry.size);
        }
        self.spool = spool;
        self.totals = totals;
        Ok(per_bucket)
    }

    /// Encodes `header` + the entries pushed so far into a new temporary file (zstd, then rclone crypt)
    /// and returns it rewound, with its length. The writer stays usable (checkpoints call this repeatedly).
    ///
    /// # Errors
    /// [`Error::Io`] on local I/O failures; crypt errors (random nonce) as [`Error::Crypt`].
    pub fn encode(&mut self, header: &Header, cipher: &Cipher, dir: &Path) -> Result<(File, u64)> {
        let mut header_line = serde_json::to_vec(header)
            .map_err(|e| Error::io("encoding the manifest", io::Error::other(e)))?;
        header_line.push(b'\n');
        let plain = io::Cursor::new(header_line).chain(self.spool.raw()?);
        let compressed = zstd::stream::read::Encoder::new(plain, ZSTD_LEVEL)
            .map_err(|e| Error::io("compressing the manifest", e))?;
        let mut encrypted = EncryptReader::new(cipher, compressed)
            .map_err(|source| Error::Crypt { what: "manifest".into(), source })?;
        let mut out = tempfile::tempfile_in(dir)
            .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
        let len = io::copy(&mut encrypted, &mut out).map_err(|e| Error::io("encoding the manifest", e))?;
        out.seek(SeekFrom::Start(0)).map_err(|e| Error::io("encoding the manifest", e))?;
        Ok((out, len))
    }
}

/// Streams a manifest out of a (downloaded) encrypted file.
pub struct ManifestReader {
    name: String,
    header: Header,
    lines: Box<dyn BufRead + Send>,
    line: String,
    last: Option<(String, String)>,
}

impl std::fmt::Debug for ManifestReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestReader").field("name", &self.name).finish_non_exhaustive()
    }
}

impl ManifestReader {
    /// Opens the manifest in `file`; `name` is used in error messages.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for anything that is not a valid manifest under this key.
    pub fn open(name: &str, file: File, cipher: &Cipher) -> Result<Self> {
        Self::from_reader(name, BufReader::with_capacity(256 << 10, file), cipher)
    }

    /// Opens the encrypted manifest `input` yields (a downloaded file, or bytes in memory); `name` is used
    /// in error messages. The content is an attacker's input (anyone who can write the destination can
    /// replace it): everything is checked, nothing trusted.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for anything that is not a valid manifest under this key.
    pub fn from_reader(name: &str, input: impl Read + Send + 'static, cipher: &Cipher) -> Result<Self> {
        let decrypted = DecryptReader::new(cipher, input);
        let decoder = zstd::stream::read::Decoder::new(decrypted).map_err(|e| read_error(name, &e))?;
        let mut lines: Box<dyn BufRead + Send> = Box::new(BufReader::with_capacity(256 << 10, decoder));
        let mut line = String::new();
        lines.read_line(&mut line).map_err(|e| read_error(name, &e))?;
        let header: Header =
            serde_json::from_str(&line).map_err(|e| Error::corrupt(name, format!("bad header line: {e}")))?;
        if header.format != FORMAT {
            return Err(Error::corrupt(name, format!("not an s32s3 manifest (format {:?})", header.format)));
        }
        if header.version != VERSION {
            return Err(Error::corrupt(
                name,
                format!(
                    "manifest format version {} is not supported (this s32s3 reads {VERSION})",
                    header.version
                ),
            ));
        }
        Ok(Self { name: name.to_owned(), header, lines, line: String::new(), last: None })
    }

    /// The header.
    #[must_use]
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next entry, or `None` at the end.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a line that is not an entry, entries out of order, or a damaged file.
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        self.line.clear();
        let n = self.lines.read_line(&mut self.line).map_err(|e| read_error(&self.name, &e))?;
        if n == 0 {
            return Ok(None);
        }
        let entry: Entry = serde_json::from_str(&self.line)
            .map_err(|e| Error::corrupt(&self.name, format!("bad entry line: {e}")))?;
        self.in_order(&entry.bucket, &entry.key)?;
        Ok(Some(entry))
    }

    /// The next entry as its line and compared fields ([`EntryLine`]), or `None` at the end.
    ///
    /// # Errors
    /// As [`ManifestReader::next_entry`].
    pub fn next_line(&mut self) -> Result<Option<EntryLine>> {
        self.line.clear();
        let n = self.lines.read_line(&mut self.line).map_err(|e| read_error(&self.name, &e))?;
        if n == 0 {
            return Ok(None);
        }
        // The line moves into the entry; the next one is read into a buffer of the same size.
        let capacity = self.line.capacity();
        let mut line = std::mem::replace(&mut self.line, String::with_capacity(capacity));
        if line.ends_with('\n') {
            line.pop();
        }
        let entry =
            EntryLine::parse(line).map_err(|e| Error::corrupt(&self.name, format!("bad entry line: {e}")))?;
        self.in_order(&entry.bucket, &entry.key)?;
        Ok(Some(entry))
    }

    /// Entries must be strictly sorted by (bucket, key).
    fn in_order(&mut self, bucket: &str, key: &str) -> Result<()> {
        if let Some((last_bucket, last_key)) = &self.last
            && (last_bucket.as_str(), last_key.as_str()) >= (bucket, key)
        {
            return Err(Error::corrupt(&self.name, format!("entries out of order at s3://{bucket}/{key}")));
        }
        match &mut self.last {
            Some((last_bucket, last_key)) => {
                if last_bucket != bucket {
                    bucket.clone_into(last_bucket);
                }
                key.clone_into(last_key);
            }
            None => self.last = Some((bucket.to_owned(), key.to_owned())),
        }
        Ok(())
    }

    /// The entries as [`EntryLine`]s.
    pub fn lines(mut self) -> impl Iterator<Item = Result<EntryLine>> + Send {
        std::iter::from_fn(move || self.next_line().transpose())
    }
}

impl Iterator for ManifestReader {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
}

/// rclone's format cannot tell a wrong key from damage; the password is checked against the key-check blob
/// of `.s32s3/config.json` before any manifest is read, so here every failure means damage.
fn read_error(name: &str, err: &io::Error) -> Error {
    match s32s3_crypt::Error::from_io(err) {
        Some(e) => Error::corrupt(name, e.to_string()),
        None => Error::corrupt(name, err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn cipher() -> Cipher {
        Cipher::new("manifest test password", "salt").unwrap()
    }

    fn header(status: SnapshotStatus) -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            snapshot_id: "0123abcd".into(),
            status,
            started: "2026-11-26T10:00:00Z".into(),
            finished: "2026-11-26T10:05:00Z".into(),
            tool: "s32s3 test".into(),
            source: SourceInfo {
                endpoint: "http://127.0.0.1:9000".into(),
                kind: "s3".into(),
                ..Default::default()
            },
            parent: None,
            buckets: vec![BucketRecord { name: "b".into(), objects: 2, bytes: 3, ..Default::default() }],
            instance: None,
            totals: Totals { objects: 2, bytes: 3 },
            location: Some(Location { bucket: "backups".into(), prefix: String::new() }),
            history: None,
        }
    }

    fn entry(key: &str, size: u64) -> Entry {
        Entry {
            bucket: "b".into(),
            key: key.into(),
            size,
            etag: format!("\"etag-{key}\""),
            last_modified: "2026-11-26T09:00:00.000Z".into(),
            metadata: BTreeMap::from([("owner".into(), "ünï".into())]),
            tags: BTreeMap::from([("t".into(), "v".into())]),
            sha256: "00".repeat(32),
            stored_key: format!("enc/{key}"),
            version_id: Some("v1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn round_trip_with_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let cipher = cipher();
        let mut writer = ManifestWriter::new(dir.path()).unwrap();
        writer.push(&entry("a", 1)).unwrap();
        // A checkpoint in the middle must not disturb later pushes.
        let (file, len) = writer.encode(&header(SnapshotStatus::Running), &cipher, dir.path()).unwrap();
        assert!(len > 32);
        let mut checkpoint = ManifestReader::open("checkpoint", file, &cipher).unwrap();
        assert_eq!(checkpoint.header().status, SnapshotStatus::Running);
        assert_eq!(checkpoint.next_entry().unwrap(), Some(entry("a", 1)));
        assert_eq!(checkpoint.next_entry().unwrap(), None);

        writer.push(&entry("b/ü key", 2)).unwrap();
        assert_eq!(writer.totals(), Totals { objects: 2, bytes: 3 });
        let (file, _) = writer.encode(&header(SnapshotStatus::Complete), &cipher, dir.path()).unwrap();
        let reader = ManifestReader::open("final", file, &cipher).unwrap();
        assert_eq!(reader.header(), &header(SnapshotStatus::Complete));
        let entries: Vec<Entry> = reader.map(Result::unwrap).collect();
        assert_eq!(entries, vec![entry("a", 1), entry("b/ü key", 2)]);
    }

    #[test]
    fn wrong_key_and_truncation_are_reported_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = ManifestWriter::new(dir.path()).unwrap();
        writer.push(&entry("a", 1)).unwrap();
        let (mut file, len) =
            writer.encode(&header(SnapshotStatus::Complete), &cipher(), dir.path()).unwrap();

        let other = Cipher::new("another password", "salt").unwrap();
        let err = ManifestReader::open("m.snap", file.try_clone().unwrap(), &other).unwrap_err();
        assert!(err.to_string().contains("m.snap"), "{err}");
        assert!(err.to_string().contains("wrong password or corrupted data"), "{err}");

        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        bytes.truncate(len as usize - 5);
        let truncated = tempfile::tempfile().unwrap();
        (&truncated).write_all(&bytes).unwrap();
        (&truncated).seek(SeekFrom::Start(0)).unwrap();
        let err = match ManifestReader::open("m.snap", truncated, &cipher()) {
            Err(e) => e,
            Ok(mut r) => loop {
                match r.next_entry() {
                    Err(e) => break e,
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("a truncated manifest read to the end without error"),
                }
            },
        };
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("m.snap"), "{err}");
    }

    #[test]
    fn entry_lines_carry_the_line_as_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = ManifestWriter::new(dir.path()).unwrap();
        writer.push(&entry("a", 1)).unwrap();
        // A field this version does not know (a newer writer's) is kept, not dropped.
        let newer = serde_json::to_string(&entry("b", 2)).unwrap().replacen('{', "{\"future\":[1,2],", 1);
        writer.push_line(&EntryLine::parse(newer.clone()).unwrap()).unwrap();
        let (file, _) = writer.encode(&header(SnapshotStatus::Complete), &cipher(), dir.path()).unwrap();
        let lines: Vec<EntryLine> =
            ManifestReader::open("m", file, &cipher()).unwrap().lines().map(Result::unwrap).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[1].line(), lines[1].key.as_str(), lines[1].size), (newer.as_str(), "b", 2));
        assert_eq!(lines[0].entry().unwrap(), entry("a", 1));
        assert!(lines[0].same_source(1, "\"etag-a\"", "2026-11-26T09:00:00.000Z"));
        // Spooled as a record and read back, it is the same.
        let mut spool = Spool::<EntryLine, crate::format::spool::Binary>::records(dir.path()).unwrap();
        spool.push(&lines[1]).unwrap();
        assert_eq!(spool.reader().unwrap().next().unwrap().unwrap(), lines[1]);
        // A line without the fields every entry has is not an entry.
        for line in [r#"{"bucket":"b","key":"k","size":1,"etag":"e","last_modified":"t"}"#, "[]", "{"] {
            assert!(EntryLine::parse(line.into()).is_err(), "{line}");
        }
    }

    #[test]
    fn entries_out_of_order_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = ManifestWriter::new(dir.path()).unwrap();
        writer.push(&entry("b", 1)).unwrap();
        writer.push(&entry("a", 1)).unwrap();
        let (file, _) = writer.encode(&header(SnapshotStatus::Complete), &cipher(), dir.path()).unwrap();
        let mut reader = ManifestReader::open("m", file, &cipher()).unwrap();
        assert!(reader.next_entry().unwrap().is_some());
        let err = reader.next_entry().unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
    }
}
