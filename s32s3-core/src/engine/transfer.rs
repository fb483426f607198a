//! Moving one object between the stores, both ways, on the same parts ([`crate::engine::parts`]):
//! the backup's `Copier` (GET → SHA-256 + encrypt → PUT, or for large objects ranged GETs, encryption
//! and part uploads of the same object in parallel: crypt chunk `i` uses nonce + `i`, so parts are
//! independent) and the restore's `Restorer` (the same backwards, with the SHA-256 checked before
//! anything is completed). Every source GET carries `If-Match` with the listed ETag, so an object that
//! changes while it is read is never stored half old and half new: the copy starts again from a fresh
//! listing.
//!
//! Every request goes through its store's retry policy ([`crate::store::retry`]) exactly once; the loops
//! here only react to what a final answer means: a vanished or changed source object, or a write whose
//! answer was lost (the destination is asked what is current, `Copier`'s `resolve`).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use s32s3_crypt::{CHUNK_SIZE, Cipher, ENCRYPTED_CHUNK_SIZE, HEADER_SIZE, Nonce, encrypted_size};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::engine::listing::{Listed, relist};
use crate::engine::parts::{Direction, Part, PartHash, PartsPlan, part_size_for};
use crate::engine::stream::{
    Batch, ChunkPool, ChunkReader, Failed, STREAM_MEMORY, Sink, content_md5, hex_digest, integrity,
    open_chunk, read_header, streamed, total_size,
};
use crate::error::{Error, Result};
use crate::error::{S3ErrorKind, Side};
use crate::format::layout::Layout;
use crate::format::manifest::Entry;
use crate::format::mtime;
use crate::options::TransferOptions;
use crate::progress::{Event, Progress};
use crate::store::limit::Limits;
use crate::store::{ContentHeaders, ObjectAttrs, ObjectHead, RangeReader, ReadOptions, Store, Written};

/// Objects up to this size are hashed and encrypted on the async worker itself (a few microseconds per
/// KiB); larger ones on the blocking pool, so listings and uploads keep flowing. They are also read and
/// written with one plain signed HTTP request each ([`Store::get_small`]) instead of through the SDK,
/// whose per-request work dominates the CPU time of small objects.
const INLINE_CRYPTO_MAX: u64 = 256 << 10;

/// What a run checks right before each write that may replace a stored version (a data object written or
/// deleted): that it still holds the lease, and that its run record is written (see
/// [`crate::format::retention`]). Implemented by the backup run.
pub(crate) trait WriteGate: Send + Sync {
    /// Ok when the write may go ahead.
    fn before_write(&self) -> futures::future::BoxFuture<'_, Result<()>>;
}

/// What became of a copy.
#[derive(Debug)]
pub(crate) enum Copied {
    /// A new version of the object is stored; its entry.
    Stored(Box<Entry>),
    /// The object vanished from the source before it could be read: nothing was written.
    Vanished,
}

/// A copy that did not store the object.
#[derive(Debug)]
pub(crate) struct CopyFailure {
    /// Why.
    pub(crate) error: Error,
    /// The version the previous snapshot names is provably still the current one (the failure came before
    /// any write, or the write was found not to have landed): the snapshot may carry it over.
    pub(crate) previous_current: bool,
}

/// A failed attempt, and the entry it would have recorded if its write was already sent: such a write
/// may have landed even though its answer did not arrive.
struct Attempt {
    error: Error,
    wrote: Option<Entry>,
}

impl From<Error> for Attempt {
    fn from(error: Error) -> Self {
        Self { error, wrote: None }
    }
}

/// What every transfer of a run shares, in either direction: the keys, the tuning and the run's limits,
/// where progress goes, and the run's cancellation.
#[derive(Clone)]
pub(crate) struct TransferRun {
    pub(crate) cipher: Cipher,
    /// Chunk buffers the run's streams reuse.
    pub(crate) chunks: Arc<ChunkPool>,
    pub(crate) options: TransferOptions,
    pub(crate) limits: Arc<Limits>,
    pub(crate) progress: Arc<dyn Progress>,
    pub(crate) cancel: CancellationToken,
}

/// Copies source objects into the backup bucket.
pub(crate) struct Copier {
    pub(crate) run: TransferRun,
    pub(crate) source: Store,
    pub(crate) dest: Store,
    pub(crate) dest_bucket: String,
    pub(crate) layout: Layout,
    pub(crate) gate: Arc<dyn WriteGate>,
    /// The source's GET answers lack the tag count and object lock (`RustFS`): each object's attributes
    /// come from a HEAD.
    pub(crate) head_for_attributes: bool,
}

/// Which source version a copy reads, and where it stores it: the current version at its rclone name
/// ([`Origin::CURRENT`]), or one version by id at a name of its own (the source's version history).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Origin<'a> {
    /// The source version (`None`: the current one, read with `If-Match` on the listed ETag).
    pub(crate) version_id: Option<&'a str>,
    /// The stored key (`None`: the layout's name for the source key).
    pub(crate) stored_key: Option<&'a str>,
}

impl<'a> Origin<'a> {
    /// The current version, stored at its rclone name.
    pub(crate) const CURRENT: Origin<'static> = Origin { version_id: None, stored_key: None };

    fn read(self, etag: &'a str) -> ReadOptions<'a> {
        match self.version_id {
            Some(version) => ReadOptions::version(Some(version)),
            None => ReadOptions::if_match(etag),
        }
    }
}

impl Copier {
    /// Copies `listed` from `bucket`; `previous` is the entry the previous snapshot has for it.
    ///
    /// # Cancel safety
    /// Cancel through the token, which stops before the next write and aborts a multipart upload at once.
    /// A dropped future aborts its multipart upload in the background.
    pub(crate) async fn copy(
        &self,
        bucket: &str,
        listed: &Listed,
        previous: Option<&Entry>,
    ) -> std::result::Result<Copied, CopyFailure> {
        self.copy_from(bucket, listed, previous, Origin::CURRENT).await
    }

    /// [`Copier::copy`] of the version and to the stored key `at` names.
    ///
    /// # Cancel safety
    /// As [`Copier::copy`].
    pub(crate) async fn copy_from(
        &self,
        bucket: &str,
        listed: &Listed,
        previous: Option<&Entry>,
        at: Origin<'_>,
    ) -> std::result::Result<Copied, CopyFailure> {
        let _transfer = self.run.limits.transfer().await;
        let mut listed = listed.clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if self.run.cancel.is_cancelled() {
                return Err(CopyFailure { error: Error::Cancelled, previous_current: true });
            }
            // The streamed copies' futures hold request futures of several KiB: boxed, so a small object's
            // copy (the most common) stays small while it waits in the merge-join's window.
            let result = if listed.size <= INLINE_CRYPTO_MAX {
                self.copy_small(bucket, &listed, at).await
            } else if listed.size <= self.run.options.multipart_threshold {
                Box::pin(self.copy_streamed(bucket, &listed, at)).await
            } else {
                Box::pin(self.copy_in_parts(bucket, &listed, at)).await
            };
            let failed = match result {
                Ok(entry) => return Ok(Copied::Stored(Box::new(self.moved(entry, previous).await))),
                Err(Attempt { error, wrote: Some(candidate) }) => {
                    return self.resolve(error, candidate, previous).await;
                }
                Err(Attempt { error, wrote: None }) => error,
            };
            match self.after_source_failure(bucket, &listed, failed, attempt).await {
                Ok(Some(fresh)) => listed = fresh,
                Ok(None) => return Ok(Copied::Vanished),
                Err(error) => return Err(CopyFailure { error, previous_current: true }),
            }
        }
    }

    /// What a failure before any write means: the object vanished (`None`), changed since it was listed
    /// (its fresh listing, to copy again, while attempts remain), or the copy failed (the error).
    async fn after_source_failure(
        &self,
        bucket: &str,
        listed: &Listed,
        failed: Error,
        attempt: u32,
    ) -> Result<Option<Listed>> {
        let from_source = matches!(&failed, Error::S3(e) if e.side == Side::Source);
        match failed.s3_kind() {
            // The object (or its bucket) is gone since it was listed.
            Some(S3ErrorKind::NotFound) if from_source => Ok(None),
            // It changed since it was listed: copy what is there now.
            Some(S3ErrorKind::PreconditionFailed) if from_source && attempt < self.run.options.retries => {
                relist(&self.source, bucket, &listed.key).await
            }
            Some(S3ErrorKind::PreconditionFailed) if from_source => Err(Error::ObjectChanged {
                bucket: bucket.into(),
                key: listed.key.clone(),
                attempts: attempt,
            }),
            _ => Err(failed),
        }
    }

    /// A write was sent but its answer is an error: find out from the destination what is current now.
    /// Our write landed if the current version is new and has the size we wrote (only this run writes
    /// the location while it holds the lease); the previous version is still current if it still is.
    async fn resolve(
        &self,
        error: Error,
        candidate: Entry,
        previous: Option<&Entry>,
    ) -> std::result::Result<Copied, CopyFailure> {
        let same_key = previous.is_some_and(|p| p.stored_key == candidate.stored_key);
        let head = self.dest.head(&self.dest_bucket, &candidate.stored_key, ReadOptions::current()).await;
        let previous_version = previous.and_then(|p| p.version_id.clone());
        match head {
            Ok(head) => {
                if same_key && head.version_id == previous_version {
                    return Err(CopyFailure { error, previous_current: true });
                }
                if head.version_id.is_some() && head.content_length == Some(encrypted_size(candidate.size)) {
                    self.run.progress.event(&Event::Warning(&format!(
                        "s3://{}/{}: the answer to its upload was lost; the version it wrote is current, and recorded",
                        candidate.bucket, candidate.key
                    )));
                    let entry = Entry { version_id: head.version_id, ..candidate };
                    return Ok(Copied::Stored(Box::new(self.moved(entry, previous).await)));
                }
                Err(CopyFailure { error, previous_current: !same_key })
            }
            // Nothing there, or no answer: only a previous version under another key is known current.
            Err(_) => Err(CopyFailure { error, previous_current: !same_key }),
        }
    }

    /// After a copy to a stored key other than the previous one's (the naming rules changed), the old
    /// stored object gets a delete marker: it stays in history, but nothing current is left behind.
    async fn moved(&self, entry: Entry, previous: Option<&Entry>) -> Entry {
        if let Some(previous) = previous.filter(|p| p.stored_key != entry.stored_key)
            && let Err(e) = self.dest.delete(&self.dest_bucket, &previous.stored_key).await
        {
            self.run.progress.event(&Event::Warning(&format!(
                "s3://{}/{}: moved to a new stored name, but its old one could not be deleted: {e}",
                entry.bucket, entry.key
            )));
        }
        entry
    }

    /// A small object whole: one raw GET, sealed on the async worker (microseconds), one raw PUT.
    async fn copy_small(
        &self,
        bucket: &str,
        listed: &Listed,
        at: Origin<'_>,
    ) -> std::result::Result<Entry, Attempt> {
        let key = listed.key.as_str();
        let _memory = self.run.limits.memory(listed.size * 2 + 64 * 1024).await;
        let read = at.read(&listed.etag);
        let attributes = self.attributes(bucket, key, read).await?;
        let (head, body) = self.source.get_small(bucket, key, read, listed.size).await?;
        let head = attributes.unwrap_or(head);
        check_len(bucket, key, body.len() as u64, listed.size)?;
        // Everything the entry needs is read before anything is written.
        let tags = self.tags(bucket, listed, head.tag_count, at).await?;
        let nonce = random_nonce()?;
        let sha256 = hex::encode(Sha256::digest(&body));
        let ciphertext = Bytes::from(self.run.cipher.encrypt(&nonce, &body));

        let stored = self.stored_key(bucket, key, at)?;
        self.run.limits.bandwidth(ciphertext.len() as u64, &self.run.cancel).await?;
        let attrs = stored_attrs(listed, &head);
        let candidate = entry(bucket, listed, head, tags, sha256, stored, &nonce);
        self.gate.before_write().await?;
        match self.dest.put_small(&self.dest_bucket, &candidate.stored_key, ciphertext, &attrs).await {
            Ok(written) => {
                self.run.progress.event(&Event::Bytes(listed.size));
                Ok(stored_as(candidate, written))
            }
            Err(error) => Err(Attempt { error, wrote: Some(candidate) }),
        }
    }

    /// An object up to the multipart threshold: one GET streamed through SHA-256 and the cipher into one
    /// PUT, a few chunks in memory whatever its size.
    async fn copy_streamed(
        &self,
        bucket: &str,
        listed: &Listed,
        at: Origin<'_>,
    ) -> std::result::Result<Entry, Attempt> {
        let key = listed.key.as_str();
        let _memory = self.run.limits.memory(STREAM_MEMORY).await;
        let read = at.read(&listed.etag);
        let mut first = Some(self.source.read_range(bucket, key, read, 0..listed.size));
        let head = match self.attributes(bucket, key, read).await? {
            Some(head) => head,
            None => first.as_mut().expect("set above").head().await?.clone(),
        };
        // Everything the entry needs is read before anything is written.
        let tags = self.tags(bucket, listed, head.tag_count, at).await?;
        let stored = self.stored_key(bucket, key, at)?;
        let attrs = stored_attrs(listed, &head);
        let nonce = random_nonce()?;
        let mut sha256 = String::new();
        let written = streamed(
            self.dest.policy(),
            encrypted_size(listed.size),
            async |sink| {
                let reader =
                    first.take().unwrap_or_else(|| self.source.read_range(bucket, key, read, 0..listed.size));
                let mut sha = Sha256::new();
                let feed = |_, plain: &[u8], frame: Option<&Bytes>| {
                    if frame.is_none() {
                        sha.update(plain);
                    }
                };
                if self.seal(reader, &nonce, 0, sink, feed).await? {
                    sha256 = hex_digest(sha);
                }
                Ok(())
            },
            async |body| self.dest.put_stream(&self.dest_bucket, &stored, body, &attrs).await,
        )
        .await;
        let candidate = entry(bucket, listed, head, tags, sha256, stored, &nonce);
        match written {
            Ok(written) => {
                self.run.progress.event(&Event::Bytes(listed.size));
                Ok(stored_as(candidate, written))
            }
            Err(Failed::Producer(error)) => Err(error.into()),
            Err(Failed::Upload(error)) => Err(Attempt { error, wrote: Some(candidate) }),
        }
    }

    async fn copy_in_parts(
        &self,
        bucket: &str,
        listed: &Listed,
        at: Origin<'_>,
    ) -> std::result::Result<Entry, Attempt> {
        let key = listed.key.as_str();
        let head = self.source.head(bucket, key, at.read(&listed.etag)).await?;
        let tags = self.tags(bucket, listed, head.tag_count, at).await?;
        let stored = self.stored_key(bucket, key, at)?;
        let attrs = stored_attrs(listed, &head);
        let nonce = random_nonce()?;
        let part_size = part_size_for(listed.size, self.run.options.part_size);
        self.gate.before_write().await?;
        // The upload's own version is replaced at once by its copy with the MD5 (`with_body_md5`), which is
        // retained; the upload is not, so it can be deleted.
        let unretained = self.dest.without_retention();
        let plan = PartsPlan {
            store: &unretained,
            bucket: &self.dest_bucket,
            key: &stored,
            attrs: &attrs,
            size: listed.size,
            part_size,
            concurrency: self.run.options.part_concurrency,
            limits: &self.run.limits,
            direction: Direction::Seal,
            hashed: true,
            body_md5: true,
            content_md5: false,
        };
        let read = at.read(&listed.etag);
        let done = plan
            .run(
                async |part, hash, sink| {
                    // A part is not a version: nothing is replaced before the upload completes. The lease
                    // must still hold, or another run may be writing.
                    self.gate.before_write().await?;
                    let reader = self.source.read_range(bucket, key, read, part.start..part.start + part.len);
                    let first = part.first_chunk();
                    let sealed = self
                        .seal(reader, &nonce, first, sink, |offset, plain, frame| match frame {
                            Some(frame) => hash.feed_body(offset, frame),
                            None => hash.feed(offset, plain),
                        })
                        .await?;
                    if sealed {
                        self.run.progress.event(&Event::Bytes(part.len));
                    }
                    Ok(())
                },
                |_| Ok(()),
            )
            .await?;
        let sha256 = done.sha256.unwrap_or_default();
        let candidate = entry(bucket, listed, head, tags, sha256, stored, &nonce);
        match done.completed {
            Ok(written) => {
                let written =
                    match self.with_body_md5(&candidate, written, &attrs, done.body_md5, part_size).await {
                        Ok(written) => written,
                        Err(error) => return Err(Attempt { error, wrote: Some(candidate) }),
                    };
                Ok(stored_as(candidate, written))
            }
            // Completed with its answer lost (a retry then finds no such upload), or not at all: the caller
            // asks the destination which.
            Err(error) => Err(Attempt { error, wrote: Some(candidate) }),
        }
    }

    /// rclone keeps the MD5 of a multipart object's stored bytes in `X-Amz-Meta-Md5chksum` (base64), which
    /// `rclone cryptcheck` compares; the ETag of an upload in parts is no MD5. S3 takes metadata only when
    /// an upload starts, before its bytes exist, so the completed version is copied in place inside the
    /// store with the MD5 added, and the version without it deleted. If that fails, the version without it
    /// stays (a complete, valid backup that cryptcheck cannot check), with a warning — and, with
    /// `object_lock`, gets its retention then.
    ///
    /// # Errors
    /// Only from setting that retention: the version was written but is not retained.
    async fn with_body_md5(
        &self,
        stored: &Entry,
        written: Written,
        attrs: &ObjectAttrs,
        md5: Option<String>,
        part_len: u64,
    ) -> Result<Written> {
        let key = &stored.stored_key;
        let (Some(md5), Some(first)) = (md5, written.version_id.clone()) else {
            return self.dest.protect(&self.dest_bucket, key, written).await;
        };
        let attrs = attrs.clone().with_metadata("md5chksum", &md5);
        let size = encrypted_size(stored.size);
        let copied = async {
            self.gate.before_write().await?;
            let (bucket, max) = (&self.dest_bucket, crate::store::s3::COPY_OBJECT_MAX);
            self.dest.copy_in_place(bucket, key, &first, size, &attrs, part_len, max).await
        };
        let warn = |what: &str| {
            self.run
                .progress
                .event(&Event::Warning(&format!("s3://{}/{}: {what}", stored.bucket, stored.key)));
        };
        match copied.await {
            Ok(copied) if copied.version_id.is_some() && copied.version_id != written.version_id => {
                if let Err(e) = self.dest.delete_version(&self.dest_bucket, key, &first).await {
                    warn(&format!(
                        "its upload's first version (before its MD5 was added) could not be deleted and stays \
                         until the lifecycle expires it: {e}"
                    ));
                }
                Ok(copied)
            }
            Ok(_) => self.dest.protect(&self.dest_bucket, key, written).await,
            Err(e) => {
                warn(&format!("stored without rclone's md5chksum (rclone cryptcheck cannot check it): {e}"));
                self.dest.protect(&self.dest_bucket, key, written).await
            }
        }
    }

    /// Seals the plaintext `reader` reads as chunks from `first_chunk` of the object with `nonce` into
    /// `sink` (the crypt header first when the read starts the object), showing `feed` each chunk's
    /// plaintext with its offset in the read (`feed(offset, plain, None)`), and each frame of the body
    /// with its offset in the body before it is sent (`feed(offset, &[], Some(frame))`). `false` when the
    /// sink's request ended before all was sent.
    async fn seal(
        &self,
        reader: RangeReader,
        nonce: &Nonce,
        first_chunk: u64,
        sink: &mut Sink,
        mut feed: impl FnMut(u64, &[u8], Option<&Bytes>),
    ) -> Result<bool> {
        let mut batch = Batch::new(&self.run.chunks);
        if first_chunk == 0 {
            batch.buf().extend_from_slice(&self.run.cipher.header(nonce));
        }
        let mut chunks = ChunkReader::new(reader, CHUNK_SIZE, Bytes::new(), &self.run.chunks);
        let (mut index, mut offset, mut sent) = (first_chunk, 0, 0);
        loop {
            let chunk = chunks.next().await.transpose()?;
            if self.run.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            if let Some(plain) = &chunk {
                feed(offset, plain, None);
                offset += plain.len() as u64;
                self.run.cipher.encrypt_chunks(nonce, index, plain, batch.buf());
                index += 1;
            }
            if let Some(ready) = batch.ready(chunk.is_none()) {
                feed(sent, &[], Some(&ready));
                sent += ready.len() as u64;
                self.run.limits.bandwidth(ready.len() as u64, &self.run.cancel).await?;
                if !sink.send(ready).await {
                    return Ok(false);
                }
            }
            if chunk.is_none() {
                return Ok(true);
            }
        }
    }

    /// The object's attributes from a HEAD, where its GET does not carry them all; `None`: the GET's own.
    async fn attributes(&self, bucket: &str, key: &str, read: ReadOptions<'_>) -> Result<Option<ObjectHead>> {
        if self.head_for_attributes { self.source.head(bucket, key, read).await.map(Some) } else { Ok(None) }
    }

    /// The object's tags: as listed (MinIO), else read when the object has any.
    async fn tags(
        &self,
        bucket: &str,
        listed: &Listed,
        count: i32,
        at: Origin<'_>,
    ) -> Result<BTreeMap<String, String>> {
        if let Some(tags) = &listed.tags {
            return Ok(tags.clone());
        }
        if count <= 0 {
            return Ok(BTreeMap::new());
        }
        self.source.version_tags(bucket, &listed.key, at.version_id).await
    }

    /// Where the copy is stored: the name `at` gives, else the layout's.
    fn stored_key(&self, bucket: &str, key: &str, at: Origin<'_>) -> Result<String> {
        match at.stored_key {
            Some(stored) => Ok(stored.to_owned()),
            None => Ok(self.layout.data_key(bucket, key)?.key),
        }
    }
}

/// The stored object's attributes: an opaque content type and `X-Amz-Meta-Mtime`, the source's own rclone
/// mtime if it has one, else its last-modified time (what `rclone sync` would write).
fn stored_attrs(listed: &Listed, head: &ObjectHead) -> ObjectAttrs {
    let mtime = head
        .metadata
        .get("mtime")
        .and_then(|m| mtime::parse(m))
        .map(mtime::format)
        .or_else(|| mtime::from_rfc3339(&listed.last_modified))
        .unwrap_or_else(|| "0".into());
    ObjectAttrs::typed("application/octet-stream").with_metadata("mtime", &mtime)
}

fn entry(
    bucket: &str,
    listed: &Listed,
    head: ObjectHead,
    tags: BTreeMap<String, String>,
    sha256: String,
    stored_key: String,
    nonce: &Nonce,
) -> Entry {
    Entry {
        bucket: bucket.to_owned(),
        key: listed.key.clone(),
        size: listed.size,
        etag: listed.etag.clone(),
        last_modified: listed.last_modified.clone(),
        storage_class: listed.storage_class.clone(),
        content_type: head.content.content_type,
        content_encoding: head.content.content_encoding,
        content_disposition: head.content.content_disposition,
        content_language: head.content.content_language,
        cache_control: head.content.cache_control,
        expires: head.content.expires,
        metadata: head.metadata,
        tags,
        lock_mode: head.lock_mode,
        lock_retain_until: head.lock_retain_until,
        legal_hold: head.legal_hold,
        sha256,
        stored_key,
        version_id: None,
        nonce: Some(hex::encode(nonce.as_bytes())),
        retained_until: None,
    }
}

/// The candidate entry of a copy, as `written` stored it: its version and retention.
fn stored_as(candidate: Entry, written: Written) -> Entry {
    Entry { version_id: written.version_id, retained_until: written.retain_until, ..candidate }
}

fn random_nonce() -> Result<Nonce> {
    Nonce::random().map_err(|source| Error::Crypt { what: "nonce".into(), source })
}

fn check_len(bucket: &str, key: &str, got: u64, want: u64) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::Integrity {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            reason: format!("the source sent {got} bytes where {want} were expected"),
        })
    }
}

/// One object to restore: a manifest entry (or one synthesised from a version listing) and where it goes.
#[derive(Clone, Debug)]
pub(crate) struct RestoreItem {
    /// What was backed up (content headers, metadata, tags, SHA-256 when known) and where it is stored.
    pub(crate) entry: Entry,
    /// The bucket it is restored into (the key stays the same).
    pub(crate) bucket: String,
    /// The target bucket has object lock: retention and legal hold are put back too.
    pub(crate) object_lock: bool,
    /// Retention dates before this are not sent again (servers refuse dates in the past).
    pub(crate) now: time::OffsetDateTime,
    /// The entry comes from a version listing (a backup rclone made): the restored object carries the
    /// stored object's `X-Amz-Meta-Mtime`, as `rclone copy` out of the crypt remote would set it.
    pub(crate) mtime_from_stored: bool,
}

impl RestoreItem {
    /// The retention to put back: the mode and a date still in the future, or nothing (a mode is never
    /// sent without a date, nor a date that has passed).
    fn retention(&self) -> Option<(String, String)> {
        use time::format_description::well_known::Rfc3339;
        if !self.object_lock {
            return None;
        }
        let mode = self.entry.lock_mode.as_deref()?;
        let text = self.entry.lock_retain_until.as_deref()?;
        let until = time::OffsetDateTime::parse(text, &Rfc3339).ok()?;
        (until > self.now).then(|| (mode.to_owned(), text.to_owned()))
    }

    /// The user metadata to write: the entry's, plus the stored object's mtime for rclone-made backups.
    fn metadata(&self, stored: &ObjectHead) -> BTreeMap<String, String> {
        let mut metadata = self.entry.metadata.clone();
        if self.mtime_from_stored
            && let Some(mtime) = stored.metadata.get("mtime")
        {
            metadata.entry("mtime".into()).or_insert_with(|| mtime.clone());
        }
        metadata
    }

    /// The restored object's attributes: the entry's content headers, metadata and tags, and its object
    /// lock when the target has object lock.
    fn attrs(&self, stored: &ObjectHead) -> ObjectAttrs {
        let e = &self.entry;
        ObjectAttrs {
            content: ContentHeaders {
                content_type: e.content_type.clone(),
                content_encoding: e.content_encoding.clone(),
                content_disposition: e.content_disposition.clone(),
                content_language: e.content_language.clone(),
                cache_control: e.cache_control.clone(),
                expires: e.expires.clone(),
            },
            metadata: self.metadata(stored),
            tags: e.tags.clone(),
            retention: self.retention(),
            legal_hold: if self.object_lock { e.legal_hold.clone() } else { None },
            content_md5: None,
        }
    }
}

/// `Content-MD5` of `data`, which S3 requires on writes into buckets with object lock (elsewhere the
/// crypt chunks' authentication, or the restore's own SHA-256 check, covers the data).
fn md5_if(object_lock: bool, data: &[u8]) -> Option<String> {
    object_lock.then(|| base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data)))
}

/// Restores objects from the backup bucket into the target store: the stored version is read, each chunk
/// authenticated and decrypted as it arrives and streamed into the write (parts of large objects in
/// parallel). Nothing is completed for an object whose stored bytes fail to authenticate, and the bytes
/// are proved to be the ones written at backup: by the crypt nonce the manifest recorded (chunks
/// authentic under it, at the recorded size), or, for manifests without one, by the SHA-256 checked
/// before the write completes.
pub(crate) struct Restorer {
    pub(crate) run: TransferRun,
    pub(crate) backup: Store,
    pub(crate) backup_bucket: String,
    pub(crate) target: Store,
}

impl Restorer {
    /// Restores one object (every request of it retried under the store's policy).
    pub(crate) async fn restore(&self, item: &RestoreItem) -> Result<()> {
        let _transfer = self.run.limits.transfer().await;
        if self.run.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let size = item.entry.size;
        // Boxed as in `Copier::copy`: the streamed restores' futures are large.
        if size <= INLINE_CRYPTO_MAX {
            self.restore_small(item).await
        } else if size <= self.run.options.multipart_threshold {
            Box::pin(self.restore_streamed(item)).await
        } else {
            Box::pin(self.restore_in_parts(item)).await
        }
        .inspect(|()| self.run.progress.event(&Event::Bytes(size)))
    }

    fn integrity(&self, item: &RestoreItem, reason: impl std::fmt::Display) -> Error {
        integrity(
            &item.entry.bucket,
            &item.entry.key,
            format!("stored as s3://{}/{}: {reason}", self.backup_bucket, item.entry.stored_key),
        )
    }

    /// The stored version of `item`.
    fn stored_version(item: &RestoreItem) -> ReadOptions<'_> {
        ReadOptions::version(item.entry.version_id.as_deref())
    }

    /// Whether the plaintext must be hashed to prove it: the manifest has a SHA-256 but no nonce.
    fn hashed(item: &RestoreItem) -> bool {
        item.entry.stored_nonce().is_none() && !item.entry.sha256.is_empty()
    }

    /// The stored object's whole size must be exactly what the crypt formula gives for the plaintext.
    fn check_total(&self, item: &RestoreItem, head: &ObjectHead) -> Result<()> {
        let expected = encrypted_size(item.entry.size);
        match total_size(head) {
            Some(total) if total != expected => {
                Err(self.integrity(item, format!("{total} bytes where {expected} were expected")))
            }
            _ => Ok(()),
        }
    }

    fn check_sha256(&self, item: &RestoreItem, sha256: &str) -> Result<()> {
        if sha256 == item.entry.sha256 {
            Ok(())
        } else {
            let want = &item.entry.sha256;
            Err(self.integrity(item, format!("SHA-256 {sha256} does not match the manifest's {want}")))
        }
    }

    /// A small object whole: one raw GET, opened on the async worker (microseconds), one raw PUT.
    async fn restore_small(&self, item: &RestoreItem) -> Result<()> {
        let entry = &item.entry;
        let expected = encrypted_size(entry.size);
        let _memory = self.run.limits.memory(expected + entry.size + 64 * 1024).await;
        let (head, stored) = self
            .backup
            .get_small(&self.backup_bucket, &entry.stored_key, Self::stored_version(item), expected)
            .await?;
        if stored.len() as u64 != expected {
            return Err(
                self.integrity(item, format!("{} bytes where {expected} were expected", stored.len()))
            );
        }
        let recorded = entry.stored_nonce();
        if recorded.is_some_and(|n| Nonce::from_header(&stored).ok() != Some(n)) {
            return Err(
                self.integrity(item, "its crypt header names another nonce than the one recorded at backup")
            );
        }
        let plain = self.run.cipher.decrypt(&stored).map_err(|e| self.integrity(item, e))?;
        if Self::hashed(item) {
            self.check_sha256(item, &hex::encode(Sha256::digest(&plain)))?;
        }
        self.run.limits.bandwidth(plain.len() as u64, &self.run.cancel).await?;
        let attrs = ObjectAttrs { content_md5: md5_if(item.object_lock, &plain), ..item.attrs(&head) };
        self.target.put_small(&item.bucket, &entry.key, Bytes::from(plain), &attrs).await?;
        Ok(())
    }

    /// An object up to the multipart threshold: its stored version streamed, chunk by chunk, into one PUT.
    async fn restore_streamed(&self, item: &RestoreItem) -> Result<()> {
        let entry = &item.entry;
        let _memory = self.run.limits.memory(STREAM_MEMORY).await;
        let whole = 0..encrypted_size(entry.size);
        let (bucket, key, version) = (&self.backup_bucket, &entry.stored_key, Self::stored_version(item));
        let mut first = Some(self.backup.read_range(bucket, key, version, whole.clone()));
        let head = first.as_mut().expect("set above").head().await?.clone();
        self.check_total(item, &head)?;
        let mut produce = async |sink: &mut Sink| {
            let reader =
                first.take().unwrap_or_else(|| self.backup.read_range(bucket, key, version, whole.clone()));
            self.open_whole(item, reader, sink).await
        };
        let content_md5 = if item.object_lock { Some(content_md5(&mut produce).await?) } else { None };
        let attrs = ObjectAttrs { content_md5, ..item.attrs(&head) };
        streamed(self.target.policy(), entry.size, produce, async |body| {
            self.target.put_stream(&item.bucket, &entry.key, body, &attrs).await
        })
        .await?;
        Ok(())
    }

    /// Opens a whole stored object into `sink`. When the plaintext must be hashed, the last chunk is held
    /// back until the hash matches: a write whose body stops short stores nothing.
    async fn open_whole(&self, item: &RestoreItem, mut reader: RangeReader, sink: &mut Sink) -> Result<()> {
        let recorded = item.entry.stored_nonce();
        let (nonce, rest) =
            read_header(&mut reader, recorded.as_ref()).await?.map_err(|r| self.integrity(item, r))?;
        let mut sha = Self::hashed(item).then(Sha256::new);
        let mut chunks = ChunkReader::new(reader, ENCRYPTED_CHUNK_SIZE, rest, &self.run.chunks);
        let (mut batch, mut held) = (Batch::new(&self.run.chunks), None);
        let mut index = 0;
        loop {
            let chunk = chunks.next().await.transpose()?;
            if let Some(sealed) = &chunk {
                let out = batch.buf();
                let start = out.len();
                open_chunk(&self.run.cipher, &nonce, index, sealed, out)
                    .map_err(|r| self.integrity(item, r))?;
                if let Some(sha) = &mut sha {
                    sha.update(&out[start..]);
                }
                index += 1;
            }
            let last = chunk.is_none();
            if let Some(ready) = batch.ready(last) {
                self.run.limits.bandwidth(ready.len() as u64, &self.run.cancel).await?;
                // With a hash to check, the newest batch is held back: the last goes only once it matches.
                let send = if sha.is_some() { held.replace(ready) } else { Some(ready) };
                if let Some(frame) = send
                    && !sink.send(frame).await
                {
                    return Ok(());
                }
            }
            if last {
                break;
            }
        }
        if let Some(sha) = sha {
            self.check_sha256(item, &hex_digest(sha))?;
        }
        if let Some(held) = held {
            sink.send(held).await;
        }
        Ok(())
    }

    async fn restore_in_parts(&self, item: &RestoreItem) -> Result<()> {
        let entry = &item.entry;
        let (nonce, head) = match entry.stored_nonce() {
            // The chunks prove the nonce: each authenticates only under nonce + its index.
            Some(nonce) => (nonce, ObjectHead::default()),
            None => self.header(item).await?,
        };
        let attrs = item.attrs(&head);
        let hashed = Self::hashed(item);
        let plan = PartsPlan {
            store: &self.target,
            bucket: &item.bucket,
            key: &entry.key,
            attrs: &attrs,
            size: entry.size,
            part_size: part_size_for(entry.size, self.run.options.part_size),
            concurrency: self.run.options.part_concurrency,
            limits: &self.run.limits,
            direction: Direction::Open,
            hashed,
            body_md5: false,
            content_md5: item.object_lock,
        };
        let done = plan
            .run(
                async |part, hash, sink| self.open_part(item, &nonce, part, hash, sink).await,
                |sha256| match sha256 {
                    Some(sha256) if hashed => self.check_sha256(item, sha256),
                    _ => Ok(()),
                },
            )
            .await?;
        match done.completed {
            Ok(_) => Ok(()),
            // A retry after a lost answer finds the upload gone: completed, if the object is there now.
            Err(e) if e.s3_kind() == Some(S3ErrorKind::NotFound) && self.completed_after_all(item).await => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The stored object's nonce from its header (manifests without a recorded one, backups rclone made),
    /// and the headers of the answer.
    async fn header(&self, item: &RestoreItem) -> Result<(Nonce, ObjectHead)> {
        let (bucket, key) = (&self.backup_bucket, &item.entry.stored_key);
        let mut reader =
            self.backup.read_range(bucket, key, Self::stored_version(item), 0..HEADER_SIZE as u64);
        let head = reader.head().await?.clone();
        self.check_total(item, &head)?;
        let (nonce, _) = read_header(&mut reader, None).await?.map_err(|r| self.integrity(item, r))?;
        Ok((nonce, head))
    }

    /// Opens one part's stored chunks into `sink`, feeding the plaintext to `hash`.
    async fn open_part(
        &self,
        item: &RestoreItem,
        nonce: &Nonce,
        part: Part,
        hash: &mut PartHash<'_>,
        sink: &mut Sink,
    ) -> Result<()> {
        let start = HEADER_SIZE as u64 + part.first_chunk() * ENCRYPTED_CHUNK_SIZE as u64;
        let range = start..start + part.sealed_len();
        let (bucket, key) = (&self.backup_bucket, &item.entry.stored_key);
        let mut reader = self.backup.read_range(bucket, key, Self::stored_version(item), range);
        self.check_total(item, reader.head().await?)?;
        let mut chunks = ChunkReader::new(reader, ENCRYPTED_CHUNK_SIZE, Bytes::new(), &self.run.chunks);
        let (mut batch, mut index, mut offset) = (Batch::new(&self.run.chunks), part.first_chunk(), 0);
        loop {
            let chunk = chunks.next().await.transpose()?;
            if self.run.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            if let Some(sealed) = &chunk {
                let out = batch.buf();
                let start = out.len();
                open_chunk(&self.run.cipher, nonce, index, sealed, out)
                    .map_err(|r| self.integrity(item, r))?;
                hash.feed(offset, &out[start..]);
                (index, offset) = (index + 1, offset + (out.len() - start) as u64);
            }
            if let Some(ready) = batch.ready(chunk.is_none()) {
                self.run.limits.bandwidth(ready.len() as u64, &self.run.cancel).await?;
                if !sink.send(ready).await {
                    return Ok(());
                }
            }
            if chunk.is_none() {
                return Ok(());
            }
        }
    }

    /// Whether the target holds the object with the restored size (a completion whose answer was lost).
    async fn completed_after_all(&self, item: &RestoreItem) -> bool {
        let head = self.target.head(&item.bucket, &item.entry.key, ReadOptions::current()).await;
        head.is_ok_and(|h| h.content_length == Some(item.entry.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_put_back_only_with_a_date_still_ahead() {
        let now = time::macros::datetime!(2026-12-01 12:00 UTC);
        let item = |mode: Option<&str>, until: Option<&str>, object_lock: bool| RestoreItem {
            entry: Entry {
                lock_mode: mode.map(str::to_owned),
                lock_retain_until: until.map(str::to_owned),
                ..Entry::default()
            },
            bucket: "b".into(),
            object_lock,
            now,
            mtime_from_stored: false,
        };
        let ahead = "2026-12-02T00:00:00Z";
        let (mode, until) = item(Some("COMPLIANCE"), Some(ahead), true).retention().unwrap();
        assert_eq!((mode.as_str(), until.as_str()), ("COMPLIANCE", ahead));
        for (mode, until, lock) in [
            (Some("GOVERNANCE"), Some("2026-12-01T11:59:59Z"), true), // passed: servers refuse it
            (Some("GOVERNANCE"), None, true),                         // a mode is never sent alone
            (None, Some(ahead), true),                                // nor a date
            (Some("GOVERNANCE"), Some(ahead), false),                 // the target has no object lock
            (Some("GOVERNANCE"), Some("not a date"), true),
        ] {
            assert_eq!(item(mode, until, lock).retention(), None, "{mode:?} {until:?} {lock}");
        }
    }

    #[test]
    fn rclone_made_objects_carry_the_stored_mtime() {
        let mut item = RestoreItem {
            entry: Entry::default(),
            bucket: "b".into(),
            object_lock: false,
            now: time::OffsetDateTime::UNIX_EPOCH,
            mtime_from_stored: true,
        };
        let stored = ObjectHead {
            metadata: BTreeMap::from([("mtime".to_owned(), "1700000000.5".to_owned())]),
            ..ObjectHead::default()
        };
        assert_eq!(item.metadata(&stored).get("mtime").map(String::as_str), Some("1700000000.5"));
        item.mtime_from_stored = false;
        assert!(item.metadata(&stored).is_empty(), "manifest entries keep their own");
    }
}
