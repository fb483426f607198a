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
use s32s3_crypt::{Cipher, Nonce, encrypted_size};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::engine::listing::{Listed, relist};
use crate::engine::parts::{BufferPool, OrderedHasher, Part, PartsPlan, part_size_for};
use crate::error::{Error, Result};
use crate::error::{S3ErrorKind, Side};
use crate::format::layout::Layout;
use crate::format::manifest::Entry;
use crate::format::mtime;
use crate::options::TransferOptions;
use crate::progress::{Event, Progress};
use crate::store::limit::Limits;
use crate::store::{CompletedPart, ContentHeaders, ObjectAttrs, ObjectHead, ReadOptions, Store};

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
        let _transfer = self.run.limits.transfer().await;
        let mut listed = listed.clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if self.run.cancel.is_cancelled() {
                return Err(CopyFailure { error: Error::Cancelled, previous_current: true });
            }
            let result = if listed.size <= self.run.options.multipart_threshold {
                self.copy_whole(bucket, &listed).await
            } else {
                self.copy_in_parts(bucket, &listed).await
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

    async fn copy_whole(&self, bucket: &str, listed: &Listed) -> std::result::Result<Entry, Attempt> {
        let key = listed.key.as_str();
        let _memory = self.run.limits.memory(listed.size * 2 + 64 * 1024).await;
        let small = listed.size <= INLINE_CRYPTO_MAX;
        let (head, body) = if small {
            self.source.get_small(bucket, key, &listed.etag, listed.size).await?
        } else {
            self.source.get(bucket, key, ReadOptions::if_match(&listed.etag), None, listed.size).await?
        };
        check_len(bucket, key, body.len() as u64, listed.size)?;
        // Everything the entry needs is read before anything is written.
        let tags = self.tags(bucket, key, head.tag_count).await?;

        let cipher = self.run.cipher.clone();
        let seal = move || -> Result<_> {
            let sha256 = Sha256::digest(&body);
            let nonce = Nonce::random().map_err(|source| Error::Crypt { what: "nonce".into(), source })?;
            Ok((hex::encode(sha256), Bytes::from(cipher.encrypt(&nonce, &body))))
        };
        // Small objects take microseconds: handing them to another thread would cost more than it saves.
        let (sha256, ciphertext) = if small {
            seal()?
        } else {
            tokio::task::spawn_blocking(seal).await.expect("encryption does not panic")?
        };

        let stored = self.layout.data_key(bucket, key)?;
        self.run.limits.bandwidth(ciphertext.len() as u64, &self.run.cancel).await?;
        let attrs = stored_attrs(listed, &head);
        let candidate = entry(bucket, listed, head, tags, sha256, stored.key);
        self.gate.before_write().await?;
        let written = if small {
            self.dest.put_small(&self.dest_bucket, &candidate.stored_key, ciphertext, &attrs).await
        } else {
            let condition = crate::store::WriteCondition::None;
            self.dest.put(&self.dest_bucket, &candidate.stored_key, ciphertext, &attrs, condition).await
        };
        let written = match written {
            Ok(written) => written,
            Err(error) => return Err(Attempt { error, wrote: Some(candidate) }),
        };
        self.run.progress.event(&Event::Bytes(listed.size));
        Ok(Entry { version_id: written.version_id, ..candidate })
    }

    async fn copy_in_parts(&self, bucket: &str, listed: &Listed) -> std::result::Result<Entry, Attempt> {
        let key = listed.key.as_str();
        let head = self.source.head(bucket, key, ReadOptions::if_match(&listed.etag)).await?;
        let tags = self.tags(bucket, key, head.tag_count).await?;
        let stored = self.layout.data_key(bucket, key)?;
        let attrs = stored_attrs(listed, &head);
        let nonce = Nonce::random().map_err(|source| Error::Crypt { what: "nonce".into(), source })?;
        self.gate.before_write().await?;
        let plan = PartsPlan {
            store: &self.dest,
            bucket: &self.dest_bucket,
            key: &stored.key,
            attrs: &attrs,
            size: listed.size,
            part_size: part_size_for(listed.size, self.run.options.part_size),
            concurrency: self.run.options.part_concurrency,
        };
        let done = plan
            .run(
                async |part, upload_id, hasher| {
                    self.copy_part(bucket, listed, &stored.key, upload_id, part, &nonce, hasher).await
                },
                |_| Ok(()),
            )
            .await?;
        let candidate = entry(bucket, listed, head, tags, done.sha256, stored.key);
        match done.completed {
            Ok(written) => Ok(Entry { version_id: written.version_id, ..candidate }),
            // Completed with its answer lost (a retry then finds no such upload), or not at all: the caller
            // asks the destination which.
            Err(error) => Err(Attempt { error, wrote: Some(candidate) }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn copy_part(
        &self,
        bucket: &str,
        listed: &Listed,
        stored_key: &str,
        upload_id: &str,
        part: Part,
        nonce: &Nonce,
        hasher: &OrderedHasher,
    ) -> Result<CompletedPart> {
        if self.run.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let key = listed.key.as_str();
        let encrypted_len = part.encrypted_len();
        let _memory = self.run.limits.memory(part.len + encrypted_len).await;
        let range = (part.start, part.start + part.len - 1);
        let (_, plain) =
            self.source.get(bucket, key, ReadOptions::if_match(&listed.etag), Some(range), part.len).await?;
        check_len(bucket, key, plain.len() as u64, part.len)?;

        let cipher = self.run.cipher.clone();
        let nonce = *nonce;
        let to_encrypt = plain.clone();
        let encrypt = tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(encrypted_len as usize);
            if part.index == 0 {
                out.extend_from_slice(&cipher.header(&nonce));
            }
            cipher.encrypt_chunks(&nonce, part.first_chunk(), &to_encrypt, &mut out);
            Bytes::from(out)
        });
        let (ciphertext, ()) = tokio::join!(encrypt, hasher.update(part.index, plain));
        let ciphertext = ciphertext.expect("encryption does not panic");
        debug_assert_eq!(ciphertext.len() as u64, encrypted_len);

        self.run.limits.bandwidth(encrypted_len, &self.run.cancel).await?;
        // A part is not a version: nothing is replaced before the upload completes. The lease must still
        // hold, or another run may be writing.
        self.gate.before_write().await?;
        let done = self
            .dest
            .upload_part(&self.dest_bucket, stored_key, upload_id, part.number(), ciphertext, None)
            .await?;
        self.run.progress.event(&Event::Bytes(part.len));
        Ok(done)
    }

    async fn tags(&self, bucket: &str, key: &str, count: i32) -> Result<BTreeMap<String, String>> {
        if count <= 0 {
            return Ok(BTreeMap::new());
        }
        self.source.tags(bucket, key).await
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
    }
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
/// signed payload hash, or the restore's own SHA-256 check, covers the transfer).
fn md5_if(object_lock: bool, data: &[u8]) -> Option<String> {
    object_lock.then(|| base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data)))
}

/// Restores objects from the backup bucket into the target store: GET the stored version → decrypt →
/// SHA-256 check → PUT (parts of large objects in parallel). Nothing is written for an object whose
/// stored bytes fail to authenticate or whose SHA-256 differs from the manifest.
pub(crate) struct Restorer {
    pub(crate) run: TransferRun,
    pub(crate) backup: Store,
    pub(crate) backup_bucket: String,
    pub(crate) target: Store,
    pub(crate) buffers: Arc<BufferPool>,
}

impl Restorer {
    /// Restores one object (every request of it retried under the store's policy).
    pub(crate) async fn restore(&self, item: &RestoreItem) -> Result<()> {
        let _transfer = self.run.limits.transfer().await;
        if self.run.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        if item.entry.size <= self.run.options.multipart_threshold {
            self.restore_whole(item).await
        } else {
            self.restore_in_parts(item).await
        }
    }

    fn integrity(&self, item: &RestoreItem, reason: impl std::fmt::Display) -> Error {
        Error::Integrity {
            bucket: item.entry.bucket.clone(),
            key: item.entry.key.clone(),
            reason: format!("stored as s3://{}/{}: {reason}", self.backup_bucket, item.entry.stored_key),
        }
    }

    /// The stored version of `item`.
    fn stored_version(item: &RestoreItem) -> ReadOptions<'_> {
        ReadOptions::version(item.entry.version_id.as_deref())
    }

    async fn restore_whole(&self, item: &RestoreItem) -> Result<()> {
        let entry = &item.entry;
        let expected = encrypted_size(entry.size);
        let _memory = self.run.limits.memory(expected + entry.size + 64 * 1024).await;
        let (head, stored) = self
            .backup
            .get(&self.backup_bucket, &entry.stored_key, Self::stored_version(item), None, expected)
            .await?;
        if stored.len() as u64 != expected {
            return Err(
                self.integrity(item, format!("{} bytes where {expected} were expected", stored.len()))
            );
        }
        let cipher = self.run.cipher.clone();
        let want = entry.sha256.clone();
        let with_md5 = item.object_lock;
        let open = move || -> std::result::Result<_, String> {
            let plain = cipher.decrypt(&stored).map_err(|e| e.to_string())?;
            let sha256 = hex::encode(Sha256::digest(&plain));
            if !want.is_empty() && sha256 != want {
                return Err(format!("SHA-256 {sha256} does not match the manifest's {want}"));
            }
            let md5 = md5_if(with_md5, &plain);
            Ok((Bytes::from(plain), md5))
        };
        let decrypted = if entry.size <= INLINE_CRYPTO_MAX {
            open()
        } else {
            tokio::task::spawn_blocking(open).await.expect("decryption does not panic")
        };
        let (plain, md5) = decrypted.map_err(|reason| self.integrity(item, reason))?;
        self.run.limits.bandwidth(plain.len() as u64, &self.run.cancel).await?;
        let attrs = ObjectAttrs { content_md5: md5, ..item.attrs(&head) };
        let condition = crate::store::WriteCondition::None;
        self.target.put(&item.bucket, &entry.key, plain, &attrs, condition).await?;
        self.run.progress.event(&Event::Bytes(entry.size));
        Ok(())
    }

    async fn restore_in_parts(&self, item: &RestoreItem) -> Result<()> {
        let entry = &item.entry;
        let header_range = (0, s32s3_crypt::HEADER_SIZE as u64 - 1);
        let (head, header) = self
            .backup
            .get(&self.backup_bucket, &entry.stored_key, Self::stored_version(item), Some(header_range), 32)
            .await?;
        let expected = encrypted_size(entry.size);
        if let Some(total) = head.total_size().filter(|t| *t != expected) {
            return Err(self.integrity(item, format!("{total} bytes where {expected} were expected")));
        }
        let nonce = Nonce::from_header(&header).map_err(|e| self.integrity(item, e))?;
        let attrs = item.attrs(&head);
        let plan = PartsPlan {
            store: &self.target,
            bucket: &item.bucket,
            key: &entry.key,
            attrs: &attrs,
            size: entry.size,
            part_size: part_size_for(entry.size, self.run.options.part_size),
            concurrency: self.run.options.part_concurrency,
        };
        let sha_matches = |sha256: &str| {
            if entry.sha256.is_empty() || sha256 == entry.sha256 {
                Ok(())
            } else {
                Err(self.integrity(
                    item,
                    format!("SHA-256 {sha256} does not match the manifest's {}", entry.sha256),
                ))
            }
        };
        let done = plan
            .run(
                async |part, upload_id, hasher| {
                    self.restore_part(item, &nonce, upload_id, part, hasher).await
                },
                sha_matches,
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

    /// Whether the target holds the object with the restored size (a completion whose answer was lost).
    async fn completed_after_all(&self, item: &RestoreItem) -> bool {
        let head = self.target.head(&item.bucket, &item.entry.key, ReadOptions::current()).await;
        head.is_ok_and(|h| h.content_length == Some(item.entry.size))
    }

    async fn restore_part(
        &self,
        item: &RestoreItem,
        nonce: &Nonce,
        upload_id: &str,
        part: Part,
        hasher: &OrderedHasher,
    ) -> Result<CompletedPart> {
        if self.run.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let entry = &item.entry;
        let sealed_len = part.sealed_len();
        let start =
            s32s3_crypt::HEADER_SIZE as u64 + part.first_chunk() * s32s3_crypt::ENCRYPTED_CHUNK_SIZE as u64;
        let _memory = self.run.limits.memory(part.len + sealed_len).await;
        let sealed = self
            .backup
            .get_into(
                &self.backup_bucket,
                &entry.stored_key,
                Self::stored_version(item),
                Some((start, start + sealed_len - 1)),
                || self.buffers.take_mut(usize::try_from(sealed_len).unwrap_or(0)),
            )
            .await?;
        if sealed.len() as u64 != sealed_len {
            return Err(self.integrity(
                item,
                format!("part {} is {} bytes, expected {sealed_len}", part.index, sealed.len()),
            ));
        }
        let cipher = self.run.cipher.clone();
        let nonce = *nonce;
        let buffers = Arc::clone(&self.buffers);
        let plain = tokio::task::spawn_blocking(move || {
            let mut out = buffers.take(usize::try_from(part.len).unwrap_or(0));
            let decrypted = cipher.decrypt_chunks(&nonce, part.first_chunk(), &sealed, &mut out);
            buffers.give(sealed);
            decrypted.map(|()| Bytes::from(out))
        })
        .await
        .expect("decryption does not panic")
        .map_err(|e| self.integrity(item, e))?;
        hasher.update(part.index, plain.clone()).await;
        self.run.limits.bandwidth(part.len, &self.run.cancel).await?;
        let md5 = md5_if(item.object_lock, &plain);
        let done = self
            .target
            .upload_part(&item.bucket, &entry.key, upload_id, part.number(), plain.clone(), md5)
            .await?;
        self.buffers.give(plain);
        self.run.progress.event(&Event::Bytes(part.len));
        Ok(done)
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
