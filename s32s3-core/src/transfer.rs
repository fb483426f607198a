//! Moving one object between the stores: the backup's [`Copier`] (GET → SHA-256 + encrypt → PUT, or for
//! large objects ranged GETs, encryption and part uploads of the same object in parallel: crypt chunk `i`
//! uses nonce + `i`, so parts are independent) and the restore's [`Restorer`] (the same backwards, with
//! the SHA-256 checked before anything is completed). Every source GET carries `If-Match` with the listed
//! ETag, so an object that changes while it is read is never stored half old and half new: the copy
//! starts again from a fresh listing.
//!
//! Every request goes through its store's retry policy ([`crate::retry`]) exactly once; the loops here
//! only react to what a final answer means: a vanished or changed source object, or a write whose answer
//! was lost (the destination is asked what is current, [`Copier`]'s `resolve`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use s32s3_crypt::{CHUNK_SIZE, Cipher, Nonce, encrypted_size};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, SemaphorePermit, watch};
use tokio_util::sync::CancellationToken;

use crate::error::{S3Error, S3ErrorKind, Side};
use crate::layout::Layout;
use crate::listing::{Listed, relist};
use crate::manifest::Entry;
use crate::options::TransferOptions;
use crate::progress::{Event, Progress};
use crate::s3::{Store, read_body_into};
use crate::{Error, Result, mtime};

/// S3's limit on parts per multipart upload.
const MAX_PARTS: u64 = 10_000;
/// Objects up to this size are hashed and encrypted on the async worker itself (a few microseconds per
/// KiB); larger ones on the blocking pool, so listings and uploads keep flowing. They are also read and
/// written with one plain signed HTTP request each ([`Store::get_small`]) instead of through the SDK,
/// whose per-request work dominates the CPU time of small objects.
const INLINE_CRYPTO_MAX: u64 = 256 << 10;

/// Shared limits of a run: transfers, memory and bandwidth.
#[derive(Debug)]
pub(crate) struct Limits {
    transfers: Semaphore,
    /// Memory budget in KiB.
    memory: Semaphore,
    memory_kib: u32,
    bandwidth: Option<RateLimiter>,
}

impl Limits {
    pub(crate) fn new(options: &TransferOptions) -> Self {
        let memory_kib = u32::try_from(options.memory_limit >> 10).unwrap_or(u32::MAX).max(1);
        Self {
            transfers: Semaphore::new(options.transfers),
            memory: Semaphore::new(memory_kib as usize),
            memory_kib,
            bandwidth: options.bwlimit.map(RateLimiter::new),
        }
    }

    /// Reserves `bytes` of the memory budget (at most the whole budget, so one huge object still runs).
    pub(crate) async fn memory(&self, bytes: u64) -> SemaphorePermit<'_> {
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, self.memory_kib);
        self.memory.acquire_many(kib).await.expect("the memory semaphore is never closed")
    }

    pub(crate) async fn transfer(&self) -> SemaphorePermit<'_> {
        self.transfers.acquire().await.expect("the transfer semaphore is never closed")
    }

    /// Waits for `bytes` of the bandwidth limit; a cancellation ends the wait with [`Error::Cancelled`].
    pub(crate) async fn bandwidth(&self, bytes: u64, cancel: &CancellationToken) -> Result<()> {
        if let Some(limiter) = &self.bandwidth {
            tokio::select! {
                () = limiter.acquire(bytes) => {}
                () = cancel.cancelled() => return Err(Error::Cancelled),
            }
        }
        Ok(())
    }
}

/// A virtual-clock rate limiter: each request is scheduled after the previous ones at `rate` bytes/s.
#[derive(Debug)]
struct RateLimiter {
    rate: u64,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl RateLimiter {
    fn new(rate: u64) -> Self {
        Self { rate: rate.max(1), next: tokio::sync::Mutex::new(tokio::time::Instant::now()) }
    }

    async fn acquire(&self, bytes: u64) {
        let start = {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

/// The plaintext bytes per part for an object of `size`: at least `wanted`, whole 64 KiB crypt chunks, and
/// few enough parts for S3's limit of 10,000.
#[must_use]
pub fn part_size_for(size: u64, wanted: u64) -> u64 {
    let chunk = CHUNK_SIZE as u64;
    let at_least = wanted.max(size.div_ceil(MAX_PARTS));
    at_least.div_ceil(chunk) * chunk
}

/// The source object's headers that the manifest records.
#[derive(Debug, Default)]
struct SourceMeta {
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<String>,
    metadata: BTreeMap<String, String>,
    tag_count: i32,
    lock_mode: Option<String>,
    lock_retain_until: Option<String>,
    legal_hold: Option<String>,
}

macro_rules! source_meta {
    ($out:expr) => {{
        let out = $out;
        SourceMeta {
            content_type: out.content_type().map(str::to_owned),
            content_encoding: out.content_encoding().map(str::to_owned),
            content_disposition: out.content_disposition().map(str::to_owned),
            content_language: out.content_language().map(str::to_owned),
            cache_control: out.cache_control().map(str::to_owned),
            expires: out.expires_string().map(str::to_owned),
            metadata: out
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect())
                .unwrap_or_default(),
            tag_count: out.tag_count().unwrap_or(0),
            lock_mode: out.object_lock_mode().map(|m| m.as_str().to_owned()),
            lock_retain_until: out
                .object_lock_retain_until_date()
                .and_then(|d| d.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
            legal_hold: out.object_lock_legal_hold_status().map(|s| s.as_str().to_owned()),
        }
    }};
}

/// [`SourceMeta`] from the headers of a raw `GET` response: the same fields, parsed the same way, as
/// `source_meta!` takes from the SDK's output.
fn source_meta_from_headers(headers: &http::HeaderMap) -> SourceMeta {
    let text = |name: &str| headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    SourceMeta {
        content_type: text("content-type"),
        content_encoding: text("content-encoding"),
        content_disposition: text("content-disposition"),
        content_language: text("content-language"),
        cache_control: text("cache-control"),
        expires: text("expires"),
        metadata: headers
            .iter()
            .filter_map(|(name, value)| {
                let key = name.as_str().strip_prefix("x-amz-meta-")?;
                Some((key.to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            })
            .collect(),
        tag_count: text("x-amz-tagging-count").and_then(|n| n.trim().parse().ok()).unwrap_or(0),
        lock_mode: text("x-amz-object-lock-mode"),
        lock_retain_until: text("x-amz-object-lock-retain-until-date").and_then(|d| {
            aws_smithy_types::DateTime::from_str(&d, aws_smithy_types::date_time::Format::DateTime)
                .ok()?
                .fmt(aws_smithy_types::date_time::Format::DateTime)
                .ok()
        }),
        legal_hold: text("x-amz-object-lock-legal-hold"),
    }
}

/// Sets the restored object's content headers, tags and object-lock fields on a `PutObject` or
/// `CreateMultipartUpload` request (the two builders share these setters but no trait). User metadata is
/// set by the caller ([`RestoreItem::metadata`]).
macro_rules! object_headers {
    ($request:expr, $item:expr) => {{
        let item: &RestoreItem = $item;
        let e = &item.entry;
        let mut r = $request
            .set_content_type(e.content_type.clone())
            .set_content_encoding(e.content_encoding.clone())
            .set_content_disposition(e.content_disposition.clone())
            .set_content_language(e.content_language.clone())
            .set_cache_control(e.cache_control.clone())
            .set_expires(e.expires.as_deref().and_then(|x| {
                aws_smithy_types::DateTime::from_str(x, aws_smithy_types::date_time::Format::HttpDate).ok()
            }));
        if !e.tags.is_empty() {
            r = r.tagging(tagging_header(&e.tags));
        }
        if let Some((mode, until)) = item.retention() {
            r = r.object_lock_mode(mode).object_lock_retain_until_date(until);
        }
        if item.object_lock {
            r = r.set_object_lock_legal_hold_status(
                e.legal_hold.as_deref().map(aws_sdk_s3::types::ObjectLockLegalHoldStatus::from),
            );
        }
        r
    }};
}

/// What a run checks right before each write that may replace a stored version (a data object written or
/// deleted): that it still holds the lease, and that its run record is written (see
/// [`crate::retention`]). Implemented by the backup run.
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

/// Copies source objects into the backup bucket.
pub(crate) struct Copier {
    pub(crate) source: Store,
    pub(crate) dest: Store,
    pub(crate) dest_bucket: String,
    pub(crate) cipher: Cipher,
    pub(crate) layout: Layout,
    pub(crate) options: TransferOptions,
    pub(crate) limits: Arc<Limits>,
    pub(crate) progress: Arc<dyn Progress>,
    pub(crate) cancel: CancellationToken,
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
        let _transfer = self.limits.transfer().await;
        let mut listed = listed.clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if self.cancel.is_cancelled() {
                return Err(CopyFailure { error: Error::Cancelled, previous_current: true });
            }
            let result = if listed.size <= self.options.multipart_threshold {
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
            let from_source = matches!(&failed, Error::S3(e) if e.side == Side::Source);
            match failed.s3_kind() {
                // The object (or its bucket) is gone since it was listed.
                Some(S3ErrorKind::NotFound) if from_source => return Ok(Copied::Vanished),
                // It changed since it was listed: copy what is there now.
                Some(S3ErrorKind::PreconditionFailed) if from_source && attempt < self.options.retries => {
                    match relist(&self.source, bucket, &listed.key).await {
                        Ok(Some(fresh)) => listed = fresh,
                        Ok(None) => return Ok(Copied::Vanished),
                        Err(error) => return Err(CopyFailure { error, previous_current: true }),
                    }
                }
                Some(S3ErrorKind::PreconditionFailed) if from_source => {
                    let error =
                        Error::ObjectChanged { bucket: bucket.into(), key: listed.key, attempts: attempt };
                    return Err(CopyFailure { error, previous_current: true });
                }
                _ => return Err(CopyFailure { error: failed, previous_current: true }),
            }
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
        let head = self
            .dest
            .send("HeadObject", &self.dest_bucket, Some(&candidate.stored_key), || {
                self.dest.client().head_object().bucket(&self.dest_bucket).key(&candidate.stored_key).send()
            })
            .await;
        let previous_version = previous.and_then(|p| p.version_id.clone());
        match head {
            Ok(head) => {
                let version = head.version_id().map(str::to_owned);
                let size = head.content_length().and_then(|l| u64::try_from(l).ok());
                if same_key && version == previous_version {
                    return Err(CopyFailure { error, previous_current: true });
                }
                if version.is_some() && size == Some(encrypted_size(candidate.size)) {
                    self.progress.event(&Event::Warning(&format!(
                        "s3://{}/{}: the answer to its upload was lost; the version it wrote is current, and recorded",
                        candidate.bucket, candidate.key
                    )));
                    let entry = Entry { version_id: version, ..candidate };
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
        if let Some(previous) = previous.filter(|p| p.stored_key != entry.stored_key) {
            let deleted = self
                .dest
                .send("DeleteObject", &self.dest_bucket, Some(&previous.stored_key), || {
                    self.dest
                        .client()
                        .delete_object()
                        .bucket(&self.dest_bucket)
                        .key(&previous.stored_key)
                        .send()
                })
                .await;
            if let Err(e) = deleted {
                self.progress.event(&Event::Warning(&format!(
                    "s3://{}/{}: moved to a new stored name, but its old one could not be deleted: {e}",
                    entry.bucket, entry.key
                )));
            }
        }
        entry
    }

    async fn copy_whole(&self, bucket: &str, listed: &Listed) -> std::result::Result<Entry, Attempt> {
        let key = listed.key.as_str();
        let _memory = self.limits.memory(listed.size * 2 + 64 * 1024).await;
        let small = listed.size <= INLINE_CRYPTO_MAX;
        let read = if small { self.source.get_small(bucket, key, &listed.etag).await? } else { None };
        let (meta, body) = if let Some((headers, body)) = read {
            (source_meta_from_headers(&headers), body)
        } else {
            let (out, body) = self
                .source
                .get_bytes(
                    bucket,
                    key,
                    || self.source.client().get_object().bucket(bucket).key(key).if_match(&listed.etag),
                    listed.size,
                )
                .await?;
            (source_meta!(&out), body)
        };
        check_len(bucket, key, body.len() as u64, listed.size)?;
        // Everything the entry needs is read before anything is written.
        let tags = self.tags(bucket, key, meta.tag_count).await?;

        let cipher = self.cipher.clone();
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
        let len = ciphertext.len() as u64;
        self.limits.bandwidth(len, &self.cancel).await?;
        let mtime = stored_mtime(listed, &meta);
        let candidate = entry(bucket, listed, meta, tags, sha256, stored.key, None);
        self.gate.before_write().await?;
        let wrote = |error| Attempt { error, wrote: Some(candidate.clone()) };
        let written = if small {
            let headers =
                [("content-type", "application/octet-stream"), ("x-amz-meta-mtime", mtime.as_str())];
            self.dest
                .put_small(&self.dest_bucket, &candidate.stored_key, ciphertext, &headers)
                .await
                .map_err(wrote)?
        } else {
            Err(ciphertext)
        };
        let version_id = match written {
            Ok(version_id) => version_id,
            Err(ciphertext) => self
                .dest
                .send("PutObject", &self.dest_bucket, Some(&candidate.stored_key), || {
                    self.dest
                        .client()
                        .put_object()
                        .bucket(&self.dest_bucket)
                        .key(&candidate.stored_key)
                        .content_length(i64::try_from(len).unwrap_or(i64::MAX))
                        .content_type("application/octet-stream")
                        .metadata("mtime", &mtime)
                        .body(ByteStream::from(ciphertext.clone()))
                        .send()
                })
                .await
                .map_err(wrote)?
                .version_id()
                .map(str::to_owned),
        };
        self.progress.event(&Event::Bytes(listed.size));
        Ok(Entry { version_id, ..candidate })
    }

    async fn copy_in_parts(&self, bucket: &str, listed: &Listed) -> std::result::Result<Entry, Attempt> {
        let key = listed.key.as_str();
        let head = self
            .source
            .send("HeadObject", bucket, Some(key), || {
                self.source.client().head_object().bucket(bucket).key(key).if_match(&listed.etag).send()
            })
            .await?;
        let meta = source_meta!(&head);
        let tags = self.tags(bucket, key, meta.tag_count).await?;
        let stored = self.layout.data_key(bucket, key)?;
        let mtime = stored_mtime(listed, &meta);
        self.gate.before_write().await?;
        let pending = PendingUpload::create(&self.dest, &self.dest_bucket, &stored.key, || {
            self.dest
                .client()
                .create_multipart_upload()
                .bucket(&self.dest_bucket)
                .key(&stored.key)
                .content_type("application/octet-stream")
                .metadata("mtime", &mtime)
                .send()
        })
        .await?;
        let upload_id = pending.upload_id.clone();
        let hashed = self.upload_parts(bucket, listed, &stored.key, &upload_id).await;
        let (sha256, completed) = match hashed {
            Ok(done) => done,
            Err(error) => {
                // S3 never cleans up by itself; the lifecycle rule is only the safety net.
                pending.abort().await;
                return Err(error.into());
            }
        };
        let candidate = entry(bucket, listed, meta, tags, sha256, stored.key, None);
        match pending.complete(completed).await {
            Ok(done) => Ok(Entry { version_id: done.version_id().map(str::to_owned), ..candidate }),
            // Completed with its answer lost (a retry then finds no such upload), or not at all: the caller
            // asks the destination which.
            Err(error) => Err(Attempt { error, wrote: Some(candidate) }),
        }
    }

    /// Uploads every part (in parallel, at most `part_concurrency`), hashing the plaintext in order; the
    /// SHA-256 and the parts to complete with.
    async fn upload_parts(
        &self,
        bucket: &str,
        listed: &Listed,
        stored_key: &str,
        upload_id: &str,
    ) -> Result<(String, Vec<CompletedPart>)> {
        let part_size = part_size_for(listed.size, self.options.part_size);
        let parts = listed.size.div_ceil(part_size);
        let nonce = Nonce::random().map_err(|source| Error::Crypt { what: "nonce".into(), source })?;
        let hasher = OrderedHasher::new();
        let mut completed: Vec<CompletedPart> = futures::stream::iter(0..parts)
            .map(|index| {
                let part = Part {
                    index,
                    start: index * part_size,
                    len: part_size.min(listed.size - index * part_size),
                };
                self.copy_part(bucket, listed, stored_key, upload_id, part, &nonce, &hasher)
            })
            .buffer_unordered(self.options.part_concurrency)
            .try_collect()
            .await?;
        completed.sort_by_key(CompletedPart::part_number);
        Ok((hex::encode(hasher.finish()), completed))
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
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let key = listed.key.as_str();
        let encrypted_len = encrypted_part_len(part);
        let _memory = self.limits.memory(part.len + encrypted_len).await;
        let (_, plain) = self
            .source
            .get_bytes(
                bucket,
                key,
                || {
                    self.source
                        .client()
                        .get_object()
                        .bucket(bucket)
                        .key(key)
                        .if_match(&listed.etag)
                        .range(format!("bytes={}-{}", part.start, part.start + part.len - 1))
                },
                part.len,
            )
            .await?;
        check_len(bucket, key, plain.len() as u64, part.len)?;

        let cipher = self.cipher.clone();
        let nonce = *nonce;
        let to_encrypt = plain.clone();
        let encrypt = tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(encrypted_len as usize);
            if part.index == 0 {
                out.extend_from_slice(&cipher.header(&nonce));
            }
            cipher.encrypt_chunks(&nonce, part.start / CHUNK_SIZE as u64, &to_encrypt, &mut out);
            Bytes::from(out)
        });
        let (ciphertext, ()) = tokio::join!(encrypt, hasher.update(part.index, plain));
        let ciphertext = ciphertext.expect("encryption does not panic");
        debug_assert_eq!(ciphertext.len() as u64, encrypted_len);

        self.limits.bandwidth(encrypted_len, &self.cancel).await?;
        // A part is not a version: nothing is replaced before the upload completes. The lease must still
        // hold, or another run may be writing.
        self.gate.before_write().await?;
        let part_number = i32::try_from(part.index + 1).expect("at most 10,000 parts");
        let out = self
            .dest
            .send("UploadPart", &self.dest_bucket, Some(stored_key), || {
                self.dest
                    .client()
                    .upload_part()
                    .bucket(&self.dest_bucket)
                    .key(stored_key)
                    .upload_id(upload_id)
                    .part_number(part_number)
                    .content_length(i64::try_from(encrypted_len).unwrap_or(i64::MAX))
                    .body(ByteStream::from(ciphertext.clone()))
                    .customize()
                    // No SHA-256 pass over every part just to sign it: each 64 KiB chunk carries a Poly1305
                    // tag that verify and restore check, so damage in transit is caught end to end.
                    .disable_payload_signing()
                    .send()
            })
            .await?;
        self.progress.event(&Event::Bytes(part.len));
        Ok(CompletedPart::builder()
            .part_number(part_number)
            .set_e_tag(out.e_tag().map(str::to_owned))
            .build())
    }

    async fn tags(&self, bucket: &str, key: &str, count: i32) -> Result<BTreeMap<String, String>> {
        if count <= 0 {
            return Ok(BTreeMap::new());
        }
        let out = self
            .source
            .send("GetObjectTagging", bucket, Some(key), || {
                self.source.client().get_object_tagging().bucket(bucket).key(key).send()
            })
            .await?;
        Ok(out.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect())
    }
}

/// An incomplete multipart upload: aborted unless [`PendingUpload::completed`] is called, also when
/// dropped (a cancelled or panicking task), in the background.
pub(crate) struct PendingUpload {
    store: Store,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl PendingUpload {
    /// Starts a multipart upload of `key` with the request `create` builds. When an attempt's answer was
    /// lost, the upload it started is unknown: once ours is known, the other uploads of `key` are aborted
    /// (nothing else writes this key meanwhile: a backup holds the lease, a restore owns its target).
    ///
    /// # Errors
    /// S3 failures, classified.
    pub(crate) async fn create<F, Fut>(store: &Store, bucket: &str, key: &str, create: F) -> Result<Self>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<
                Output = std::result::Result<
                    aws_sdk_s3::operation::create_multipart_upload::CreateMultipartUploadOutput,
                    aws_sdk_s3::error::SdkError<
                        aws_sdk_s3::operation::create_multipart_upload::CreateMultipartUploadError,
                        aws_sdk_s3::config::http::HttpResponse,
                    >,
                >,
            >,
    {
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let upload = store
            .send("CreateMultipartUpload", bucket, Some(key), || {
                attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                create()
            })
            .await?;
        let Some(upload_id) = upload.upload_id() else { return Err(no_upload_id(store.side(), bucket, key)) };
        if attempts.into_inner() > 1 {
            abort_others(store, bucket, key, upload_id).await;
        }
        Ok(Self::new(store, bucket, key, upload_id))
    }

    pub(crate) fn new(store: &Store, bucket: &str, key: &str, upload_id: &str) -> Self {
        Self {
            store: store.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            armed: true,
        }
    }

    /// Completes the upload with `parts` (in part order); if that fails, aborts it (after a completion
    /// whose answer was lost there is nothing left to abort, which the abort takes in its stride).
    pub(crate) async fn complete(
        mut self,
        parts: Vec<CompletedPart>,
    ) -> Result<aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput> {
        let store = &self.store;
        let done = store
            .send("CompleteMultipartUpload", &self.bucket, Some(&self.key), || {
                store
                    .client()
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .upload_id(&self.upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder().set_parts(Some(parts.clone())).build(),
                    )
                    .send()
            })
            .await;
        match done {
            Ok(done) => {
                self.armed = false;
                Ok(done)
            }
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    /// Aborts the upload now (a failure to abort is logged: the lifecycle rule aborts it after a day).
    pub(crate) async fn abort(mut self) {
        self.armed = false;
        abort_upload(self.store.clone(), self.bucket.clone(), self.key.clone(), self.upload_id.clone()).await;
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if self.armed
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(abort_upload(
                self.store.clone(),
                std::mem::take(&mut self.bucket),
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.upload_id),
            ));
        }
    }
}

async fn abort_upload(store: Store, bucket: String, key: String, upload_id: String) {
    let aborted = store
        .send("AbortMultipartUpload", &bucket, Some(&key), || {
            store.client().abort_multipart_upload().bucket(&bucket).key(&key).upload_id(&upload_id).send()
        })
        .await;
    match aborted {
        // Already gone: completed after all, or aborted by an earlier attempt.
        Ok(_) => {}
        Err(e) if e.s3_kind() == Some(S3ErrorKind::NotFound) => {}
        Err(e) => tracing::warn!("s3://{bucket}/{key}: aborting the incomplete upload failed: {e}"),
    }
}

/// Aborts the incomplete uploads of `key` other than `ours` (best effort).
async fn abort_others(store: &Store, bucket: &str, key: &str, ours: &str) {
    let listed = store
        .send("ListMultipartUploads", bucket, Some(key), || {
            store.client().list_multipart_uploads().bucket(bucket).prefix(key).send()
        })
        .await;
    match listed {
        Ok(listed) => {
            for upload in listed.uploads() {
                if let (Some(k), Some(id)) = (upload.key(), upload.upload_id())
                    && k == key
                    && id != ours
                {
                    abort_upload(store.clone(), bucket.to_owned(), key.to_owned(), id.to_owned()).await;
                }
            }
        }
        Err(e) => {
            tracing::warn!(
                "s3://{bucket}/{key}: listing the uploads a lost answer may have left failed: {e}"
            );
        }
    }
}

fn no_upload_id(side: Side, bucket: &str, key: &str) -> Error {
    Error::S3(S3Error {
        side,
        operation: "CreateMultipartUpload",
        bucket: Some(bucket.to_owned()),
        key: Some(key.to_owned()),
        kind: S3ErrorKind::Other,
        status: None,
        code: None,
        message: "the response has no upload id".into(),
    })
}

/// `X-Amz-Meta-Mtime` for the stored object: the source's own rclone mtime if it has one, else its
/// last-modified time (what `rclone sync` would write).
fn stored_mtime(listed: &Listed, meta: &SourceMeta) -> String {
    meta.metadata
        .get("mtime")
        .and_then(|m| mtime::parse(m))
        .map(mtime::format)
        .or_else(|| mtime::from_rfc3339(&listed.last_modified))
        .unwrap_or_else(|| "0".into())
}

#[derive(Clone, Copy, Debug)]
struct Part {
    index: u64,
    start: u64,
    len: u64,
}

fn encrypted_part_len(part: Part) -> u64 {
    // encrypted_size counts the 32-byte header once; only part 0 carries it.
    let chunks = encrypted_size(part.len) - s32s3_crypt::HEADER_SIZE as u64;
    if part.index == 0 { chunks + s32s3_crypt::HEADER_SIZE as u64 } else { chunks }
}

fn entry(
    bucket: &str,
    listed: &Listed,
    meta: SourceMeta,
    tags: BTreeMap<String, String>,
    sha256: String,
    stored_key: String,
    version_id: Option<String>,
) -> Entry {
    Entry {
        bucket: bucket.to_owned(),
        key: listed.key.clone(),
        size: listed.size,
        etag: listed.etag.clone(),
        last_modified: listed.last_modified.clone(),
        storage_class: listed.storage_class.clone(),
        content_type: meta.content_type,
        content_encoding: meta.content_encoding,
        content_disposition: meta.content_disposition,
        content_language: meta.content_language,
        cache_control: meta.cache_control,
        expires: meta.expires,
        metadata: meta.metadata,
        tags,
        lock_mode: meta.lock_mode,
        lock_retain_until: meta.lock_retain_until,
        legal_hold: meta.legal_hold,
        sha256,
        stored_key,
        version_id,
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

/// SHA-256 over parts that arrive in any order, hashed in order: part `i` waits until part `i-1` was hashed.
/// Parts acquire their memory in index order, so a waiting part never blocks the one it waits for.
struct OrderedHasher {
    turn: watch::Sender<u64>,
    state: Arc<Mutex<Sha256>>,
}

impl OrderedHasher {
    fn new() -> Self {
        Self { turn: watch::Sender::new(0), state: Arc::new(Mutex::new(Sha256::new())) }
    }

    async fn update(&self, index: u64, data: Bytes) {
        let mut turn = self.turn.subscribe();
        turn.wait_for(|next| *next == index).await.expect("the sender lives as long as self");
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || state.lock().expect("hashing does not panic").update(&data))
            .await
            .expect("hashing does not panic");
        self.turn.send_replace(index + 1);
    }

    fn finish(self) -> [u8; 32] {
        let state = Arc::try_unwrap(self.state).map_or_else(
            |arc| arc.lock().expect("not poisoned").clone(),
            |m| m.into_inner().expect("not poisoned"),
        );
        state.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_meta_from_raw_headers() {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("content-type", "text/plain"),
            ("cache-control", "no-cache"),
            ("expires", "Thu, 01 Dec 2094 16:00:00 GMT"),
            ("x-amz-meta-mtime", "1700000000.5"),
            ("x-amz-meta-owner", "Ünïcode"),
            ("x-amz-tagging-count", "2"),
            ("x-amz-object-lock-mode", "GOVERNANCE"),
            ("x-amz-object-lock-retain-until-date", "2030-01-02T03:04:05.000Z"),
            ("x-amz-object-lock-legal-hold", "ON"),
            ("etag", "\"abc\""),
        ] {
            headers.insert(name, http::HeaderValue::from_bytes(value.as_bytes()).unwrap());
        }
        let meta = source_meta_from_headers(&headers);
        assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
        assert_eq!(meta.cache_control.as_deref(), Some("no-cache"));
        assert_eq!(meta.expires.as_deref(), Some("Thu, 01 Dec 2094 16:00:00 GMT"));
        assert_eq!(meta.content_encoding, None);
        assert_eq!(
            meta.metadata.into_iter().collect::<Vec<_>>(),
            [("mtime".to_owned(), "1700000000.5".to_owned()), ("owner".to_owned(), "Ünïcode".to_owned())]
        );
        assert_eq!(meta.tag_count, 2);
        assert_eq!(meta.lock_mode.as_deref(), Some("GOVERNANCE"));
        // Normalised exactly like the SDK's parsed date, so both paths record the same text.
        assert_eq!(meta.lock_retain_until.as_deref(), Some("2030-01-02T03:04:05Z"));
        assert_eq!(meta.legal_hold.as_deref(), Some("ON"));
    }

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
        assert_eq!(mode, aws_sdk_s3::types::ObjectLockMode::Compliance);
        assert_eq!(until.secs(), time::macros::datetime!(2026-12-02 00:00 UTC).unix_timestamp());
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
        let stored = std::collections::HashMap::from([("Mtime".to_owned(), "1700000000.5".to_owned())]);
        let metadata = item.metadata(stored_mtime_of(Some(&stored))).unwrap();
        assert_eq!(metadata.get("mtime").map(String::as_str), Some("1700000000.5"));
        item.mtime_from_stored = false;
        assert_eq!(item.metadata(stored_mtime_of(Some(&stored))), None, "manifest entries keep their own");
    }

    #[test]
    fn buffer_pool_reuses_unshared_buffers_only() {
        let pool = BufferPool::default();
        let mut first = pool.take_mut(1 << 20);
        assert!(first.capacity() >= 1 << 20);
        first.extend_from_slice(b"part");
        let pointer = first.as_ptr();
        let bytes = first.freeze();
        let shared = bytes.clone();
        pool.give(bytes);
        assert!(pool.free.lock().unwrap().is_empty(), "a shared buffer is not taken back");
        pool.give(shared);
        let again = pool.take(1 << 20);
        assert_eq!((again.as_ptr(), again.len()), (pointer, 0), "the same allocation, emptied");
        let fresh = pool.take(1 << 20);
        assert!(fresh.as_ptr() != pointer, "handed out once");
        drop(again);
    }

    #[test]
    fn part_sizes_cover_the_object_in_whole_chunks() {
        for (size, wanted) in
            [(100 << 20, 16 << 20), (1 << 40, 16 << 20), (5 << 40, 5 << 20), (17 << 20, 5 << 20)]
        {
            let p = part_size_for(size, wanted);
            assert_eq!(p % CHUNK_SIZE as u64, 0);
            assert!(p >= wanted);
            assert!(size.div_ceil(p) <= MAX_PARTS, "{size} {p}");
        }
    }

    #[test]
    fn encrypted_parts_add_up_to_the_object() {
        for size in [(5 << 20) + 1, 64 << 20, (100 << 20) + 12345] {
            let p = part_size_for(size, 5 << 20);
            let total: u64 = (0..size.div_ceil(p))
                .map(|index| {
                    encrypted_part_len(Part { index, start: index * p, len: p.min(size - index * p) })
                })
                .sum();
            assert_eq!(total, encrypted_size(size));
        }
    }

    #[tokio::test]
    async fn ordered_hasher_hashes_in_order_whatever_the_arrival() {
        let hasher = OrderedHasher::new();
        let parts: Vec<Bytes> = (0..8u8).map(|i| Bytes::from(vec![i; 1000 + usize::from(i)])).collect();
        let futures = parts.iter().enumerate().rev().map(|(i, p)| hasher.update(i as u64, p.clone()));
        futures::future::join_all(futures).await;
        let mut want = Sha256::new();
        for p in &parts {
            want.update(p);
        }
        assert_eq!(hasher.finish(), <[u8; 32]>::from(want.finalize()));
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_spaces_requests() {
        let limiter = RateLimiter::new(1000);
        let start = tokio::time::Instant::now();
        limiter.acquire(500).await;
        limiter.acquire(500).await;
        limiter.acquire(1).await;
        // The third request may start only after the first thousand bytes' second.
        assert!(start.elapsed() >= Duration::from_secs(1));
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
    fn retention(&self) -> Option<(aws_sdk_s3::types::ObjectLockMode, aws_smithy_types::DateTime)> {
        if !self.object_lock {
            return None;
        }
        let mode = self.entry.lock_mode.as_deref()?;
        let until = self.entry.lock_retain_until.as_deref().and_then(|x| {
            aws_smithy_types::DateTime::from_str(x, aws_smithy_types::date_time::Format::DateTime).ok()
        })?;
        let now = aws_smithy_types::DateTime::from_secs(self.now.unix_timestamp());
        (until > now).then(|| (aws_sdk_s3::types::ObjectLockMode::from(mode), until))
    }

    /// The user metadata to write: the entry's, plus the stored object's mtime for rclone-made backups.
    fn metadata(&self, stored_mtime: Option<&str>) -> Option<std::collections::HashMap<String, String>> {
        let mut metadata: std::collections::HashMap<String, String> =
            self.entry.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if self.mtime_from_stored
            && let Some(mtime) = stored_mtime
        {
            metadata.entry("mtime".into()).or_insert_with(|| mtime.to_owned());
        }
        (!metadata.is_empty()).then_some(metadata)
    }
}

/// Restores objects from the backup bucket into the target store: GET the stored version → decrypt →
/// SHA-256 check → PUT (parts of large objects in parallel). Nothing is written for an object whose
/// stored bytes fail to authenticate or whose SHA-256 differs from the manifest.
pub(crate) struct Restorer {
    pub(crate) backup: Store,
    pub(crate) backup_bucket: String,
    pub(crate) target: Store,
    pub(crate) cipher: Cipher,
    pub(crate) options: TransferOptions,
    pub(crate) limits: Arc<Limits>,
    pub(crate) progress: Arc<dyn Progress>,
    pub(crate) cancel: CancellationToken,
    pub(crate) buffers: Arc<BufferPool>,
}

/// Part-sized buffers kept from one part of a restore to the next. A freed multi-MiB allocation goes back
/// to the OS soon after, and the next one costs page faults and zeroing in the kernel: without reuse that
/// zeroing alone was ≈ 11% of a large restore's CPU samples (perf). Best effort: a buffer still shared when
/// its part is done is dropped.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// At most this many idle buffers are kept (never more than were in use at once).
    const MAX_IDLE: usize = 16;

    /// An empty buffer with room for `capacity` bytes.
    fn take(&self, capacity: usize) -> Vec<u8> {
        let reused = {
            let mut free = self.free.lock().expect("not poisoned");
            free.iter().position(|b| b.capacity() >= capacity).map(|i| free.swap_remove(i))
        };
        reused.unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// [`BufferPool::take`] as a `BytesMut` (the same allocation).
    fn take_mut(&self, capacity: usize) -> bytes::BytesMut {
        // An empty Vec with spare capacity becomes a uniquely held Bytes, which converts back without a copy.
        Bytes::from(self.take(capacity))
            .try_into_mut()
            .unwrap_or_else(|_| bytes::BytesMut::with_capacity(capacity))
    }

    /// Keeps `bytes`' buffer for reuse if nothing else holds it.
    fn give(&self, bytes: Bytes) {
        if let Ok(buffer) = bytes.try_into_mut() {
            let mut buffer = Vec::from(buffer);
            buffer.clear();
            let mut free = self.free.lock().expect("not poisoned");
            if free.len() < Self::MAX_IDLE {
                free.push(buffer);
            }
        }
    }
}

impl Restorer {
    /// Restores one object (every request of it retried under the store's policy).
    pub(crate) async fn restore(&self, item: &RestoreItem) -> Result<()> {
        let _transfer = self.limits.transfer().await;
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        if item.entry.size <= self.options.multipart_threshold {
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

    /// GET of the stored version (a range of it), request and body retried together.
    async fn get_stored(
        &self,
        item: &RestoreItem,
        range: Option<String>,
        size_hint: u64,
    ) -> Result<(GetObjectOutput, Bytes)> {
        let entry = &item.entry;
        self.backup
            .get_bytes(
                &self.backup_bucket,
                &entry.stored_key,
                || {
                    self.backup
                        .client()
                        .get_object()
                        .bucket(&self.backup_bucket)
                        .key(&entry.stored_key)
                        .set_version_id(entry.version_id.clone())
                        .set_range(range.clone())
                },
                size_hint,
            )
            .await
    }

    async fn restore_whole(&self, item: &RestoreItem) -> Result<()> {
        let entry = &item.entry;
        let expected = encrypted_size(entry.size);
        let _memory = self.limits.memory(expected + entry.size + 64 * 1024).await;
        let (out, stored) = self.get_stored(item, None, expected).await?;
        if stored.len() as u64 != expected {
            return Err(
                self.integrity(item, format!("{} bytes where {expected} were expected", stored.len()))
            );
        }
        let cipher = self.cipher.clone();
        let want = entry.sha256.clone();
        // S3 requires an integrity header on writes to buckets with object lock; elsewhere the signed
        // payload hash covers the transfer.
        let with_md5 = item.object_lock;
        let open = move || -> std::result::Result<_, String> {
            let plain = cipher.decrypt(&stored).map_err(|e| e.to_string())?;
            let sha256 = hex::encode(Sha256::digest(&plain));
            if !want.is_empty() && sha256 != want {
                return Err(format!("SHA-256 {sha256} does not match the manifest's {want}"));
            }
            let md5 =
                with_md5.then(|| base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&plain)));
            Ok((Bytes::from(plain), md5))
        };
        let decrypted = if entry.size <= INLINE_CRYPTO_MAX {
            open()
        } else {
            tokio::task::spawn_blocking(open).await.expect("decryption does not panic")
        };
        let (plain, md5) = decrypted.map_err(|reason| self.integrity(item, reason))?;
        let len = plain.len() as u64;
        self.limits.bandwidth(len, &self.cancel).await?;
        let metadata = item.metadata(stored_mtime_of(out.metadata()));
        self.target
            .send("PutObject", &item.bucket, Some(&entry.key), || {
                let request = self
                    .target
                    .client()
                    .put_object()
                    .bucket(&item.bucket)
                    .key(&entry.key)
                    .content_length(i64::try_from(len).unwrap_or(i64::MAX))
                    .set_content_md5(md5.clone())
                    .set_metadata(metadata.clone())
                    .body(ByteStream::from(plain.clone()));
                object_headers!(request, item).send()
            })
            .await?;
        self.progress.event(&Event::Bytes(entry.size));
        Ok(())
    }

    async fn restore_in_parts(&self, item: &RestoreItem) -> Result<()> {
        let entry = &item.entry;
        let header_range = format!("bytes=0-{}", s32s3_crypt::HEADER_SIZE - 1);
        let (out, header) = self.get_stored(item, Some(header_range), 32).await?;
        let total =
            out.content_range().and_then(|r| r.rsplit('/').next()).and_then(|t| t.parse::<u64>().ok());
        let expected = encrypted_size(entry.size);
        if total.is_some_and(|t| t != expected) {
            return Err(
                self.integrity(item, format!("{} bytes where {expected} were expected", total.unwrap_or(0)))
            );
        }
        let nonce = s32s3_crypt::Nonce::from_header(&header).map_err(|e| self.integrity(item, e))?;
        let metadata = item.metadata(stored_mtime_of(out.metadata()));

        let pending = PendingUpload::create(&self.target, &item.bucket, &entry.key, || {
            let request = self
                .target
                .client()
                .create_multipart_upload()
                .bucket(&item.bucket)
                .key(&entry.key)
                .set_metadata(metadata.clone());
            object_headers!(request, item).send()
        })
        .await?;
        let upload_id = pending.upload_id.clone();
        let completed = match self.restore_parts(item, &nonce, &upload_id).await {
            Ok(completed) => completed,
            Err(e) => {
                pending.abort().await;
                return Err(e);
            }
        };
        match pending.complete(completed).await {
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
        let head = self
            .target
            .send("HeadObject", &item.bucket, Some(&item.entry.key), || {
                self.target.client().head_object().bucket(&item.bucket).key(&item.entry.key).send()
            })
            .await;
        head.is_ok_and(|h| h.content_length().and_then(|l| u64::try_from(l).ok()) == Some(item.entry.size))
    }

    /// Restores every part (in parallel) and checks the whole object's SHA-256 before it is completed.
    async fn restore_parts(
        &self,
        item: &RestoreItem,
        nonce: &Nonce,
        upload_id: &str,
    ) -> Result<Vec<CompletedPart>> {
        let entry = &item.entry;
        let part_size = part_size_for(entry.size, self.options.part_size);
        let parts = entry.size.div_ceil(part_size);
        let hasher = OrderedHasher::new();
        let mut completed: Vec<CompletedPart> = futures::stream::iter(0..parts)
            .map(|index| {
                let part = Part {
                    index,
                    start: index * part_size,
                    len: part_size.min(entry.size - index * part_size),
                };
                self.restore_part(item, nonce, upload_id, part, &hasher)
            })
            .buffer_unordered(self.options.part_concurrency)
            .try_collect()
            .await?;
        let sha256 = hex::encode(hasher.finish());
        if !entry.sha256.is_empty() && sha256 != entry.sha256 {
            return Err(self.integrity(
                item,
                format!("SHA-256 {sha256} does not match the manifest's {}", entry.sha256),
            ));
        }
        completed.sort_by_key(CompletedPart::part_number);
        Ok(completed)
    }

    async fn restore_part(
        &self,
        item: &RestoreItem,
        nonce: &Nonce,
        upload_id: &str,
        part: Part,
        hasher: &OrderedHasher,
    ) -> Result<CompletedPart> {
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let entry = &item.entry;
        let first_chunk = part.start / CHUNK_SIZE as u64;
        let sealed_len = encrypted_size(part.len) - s32s3_crypt::HEADER_SIZE as u64;
        let start = s32s3_crypt::HEADER_SIZE as u64 + first_chunk * s32s3_crypt::ENCRYPTED_CHUNK_SIZE as u64;
        let _memory = self.limits.memory(part.len + sealed_len).await;
        let range = format!("bytes={start}-{}", start + sealed_len - 1);
        let sealed = self
            .backup
            .policy()
            .run(|| async {
                let out = self
                    .backup
                    .client()
                    .get_object()
                    .bucket(&self.backup_bucket)
                    .key(&entry.stored_key)
                    .set_version_id(entry.version_id.clone())
                    .range(&range)
                    .send()
                    .await
                    .map_err(|e| {
                        self.backup.err("GetObject", &self.backup_bucket, Some(&entry.stored_key), e)
                    })?;
                let buffer = self.buffers.take_mut(usize::try_from(sealed_len).unwrap_or(0));
                read_body_into(out.body, Side::Destination, &self.backup_bucket, &entry.stored_key, buffer)
                    .await
            })
            .await?;
        if sealed.len() as u64 != sealed_len {
            return Err(self.integrity(
                item,
                format!("part {} is {} bytes, expected {sealed_len}", part.index, sealed.len()),
            ));
        }
        let cipher = self.cipher.clone();
        let nonce = *nonce;
        let buffers = Arc::clone(&self.buffers);
        let plain = tokio::task::spawn_blocking(move || {
            let mut out = buffers.take(usize::try_from(part.len).unwrap_or(0));
            let decrypted = cipher.decrypt_chunks(&nonce, first_chunk, &sealed, &mut out);
            buffers.give(sealed);
            decrypted.map(|()| Bytes::from(out))
        })
        .await
        .expect("decryption does not panic")
        .map_err(|e| self.integrity(item, e))?;
        hasher.update(part.index, plain.clone()).await;
        self.limits.bandwidth(part.len, &self.cancel).await?;
        let part_number = i32::try_from(part.index + 1).expect("at most 10,000 parts");
        // S3 requires an integrity header on writes to buckets with object lock.
        let md5 = item
            .object_lock
            .then(|| base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&plain)));
        let out = self
            .target
            .send("UploadPart", &item.bucket, Some(&entry.key), || {
                self.target
                    .client()
                    .upload_part()
                    .bucket(&item.bucket)
                    .key(&entry.key)
                    .upload_id(upload_id)
                    .part_number(part_number)
                    .content_length(i64::try_from(part.len).unwrap_or(i64::MAX))
                    .set_content_md5(md5.clone())
                    .body(ByteStream::from(plain.clone()))
                    .customize()
                    // The part was just authenticated (Poly1305, chunk by chunk) and goes into the object's
                    // SHA-256 check before the upload completes; hashing it once more only to sign it would
                    // cost a quarter of a restore's CPU.
                    .disable_payload_signing()
                    .send()
            })
            .await?;
        self.buffers.give(plain);
        self.progress.event(&Event::Bytes(part.len));
        Ok(CompletedPart::builder()
            .part_number(part_number)
            .set_e_tag(out.e_tag().map(str::to_owned))
            .build())
    }
}

/// The stored object's rclone mtime, from its response metadata.
fn stored_mtime_of(metadata: Option<&std::collections::HashMap<String, String>>) -> Option<&str> {
    metadata?.iter().find(|(k, _)| k.eq_ignore_ascii_case("mtime")).map(|(_, v)| v.as_str())
}

/// `k=v&k2=v2` with S3's URL encoding, for the `x-amz-tagging` header.
pub(crate) fn tagging_header(tags: &BTreeMap<String, String>) -> String {
    use crate::s3::uri_encode;
    tags.iter().map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v))).collect::<Vec<_>>().join("&")
}
