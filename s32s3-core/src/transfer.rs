//! Copying one source object into the backup: GET → SHA-256 + encrypt → PUT, or for large objects ranged
//! GETs, encryption and part uploads of the same object in parallel (crypt chunk `i` uses nonce + `i`, so
//! parts are independent). Every GET carries `If-Match` with the listed ETag, so an object that changes
//! while it is read is never stored half old and half new: the copy starts again from a fresh listing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
use crate::listing::Listed;
use crate::manifest::Entry;
use crate::options::TransferOptions;
use crate::progress::{Event, Progress};
use crate::s3::Store;
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

/// Sets the restored object's content headers, user metadata, tags and object-lock fields on a `PutObject` or
/// `CreateMultipartUpload` request (the two builders share these setters but no trait).
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
        if !e.metadata.is_empty() {
            r = r.set_metadata(Some(e.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect()));
        }
        if !e.tags.is_empty() {
            r = r.tagging(tagging_header(&e.tags));
        }
        if item.object_lock {
            r = r
                .set_object_lock_mode(e.lock_mode.as_deref().map(aws_sdk_s3::types::ObjectLockMode::from))
                .set_object_lock_retain_until_date(e.lock_retain_until.as_deref().and_then(|x| {
                    aws_smithy_types::DateTime::from_str(x, aws_smithy_types::date_time::Format::DateTime)
                        .ok()
                }))
                .set_object_lock_legal_hold_status(
                    e.legal_hold.as_deref().map(aws_sdk_s3::types::ObjectLockLegalHoldStatus::from),
                );
        }
        r
    }};
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
}

impl Copier {
    /// Copies `listed` from `bucket`. `Ok(None)`: the object vanished from the source before it was read.
    ///
    /// # Cancel safety
    /// Dropping the future mid-way may leave an incomplete multipart upload, which the destination's
    /// lifecycle rule aborts after a day; cancel through the token instead, which aborts it at once.
    pub(crate) async fn copy(&self, bucket: &str, listed: &Listed) -> Result<Option<Entry>> {
        let _transfer = self.limits.transfer().await;
        let mut listed = listed.clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if self.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let result = if listed.size <= self.options.multipart_threshold {
                self.copy_whole(bucket, &listed).await
            } else {
                self.copy_in_parts(bucket, &listed).await
            };
            let err = match result {
                Ok(entry) => return Ok(Some(entry)),
                Err(err) => err,
            };
            match err.s3_kind() {
                Some(S3ErrorKind::NotFound) if matches!(&err, Error::S3(e) if e.side == Side::Source) => {
                    return Ok(None);
                }
                Some(S3ErrorKind::PreconditionFailed) if matches!(&err, Error::S3(e) if e.side == Side::Source) =>
                {
                    if attempt >= self.options.retries {
                        return Err(Error::ObjectChanged {
                            bucket: bucket.into(),
                            key: listed.key,
                            attempts: attempt,
                        });
                    }
                    match self.relist(bucket, &listed.key).await? {
                        Some(fresh) => listed = fresh,
                        None => return Ok(None),
                    }
                }
                _ if err.is_temporary() && attempt < self.options.retries => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                _ => return Err(err),
            }
        }
    }

    /// The current listing entry of one key (after it changed during a read), or `None` if it is gone.
    async fn relist(&self, bucket: &str, key: &str) -> Result<Option<Listed>> {
        let out = self
            .source
            .client()
            .list_objects_v2()
            .bucket(bucket)
            .prefix(key)
            .max_keys(1000)
            .send()
            .await
            .map_err(|e| self.source.err("ListObjectsV2", bucket, Some(key), e))?;
        Ok(out.contents().iter().find(|o| o.key() == Some(key)).map(crate::listing::listed_from))
    }

    async fn copy_whole(&self, bucket: &str, listed: &Listed) -> Result<Entry> {
        let key = listed.key.as_str();
        let _memory = self.limits.memory(listed.size * 2 + 64 * 1024).await;
        let small = listed.size <= INLINE_CRYPTO_MAX;
        let read = if small { self.source.get_small(bucket, key, &listed.etag).await? } else { None };
        let (meta, body) = if let Some((headers, body)) = read {
            (source_meta_from_headers(&headers), body)
        } else {
            let out = self
                .source
                .client()
                .get_object()
                .bucket(bucket)
                .key(key)
                .if_match(&listed.etag)
                .send()
                .await
                .map_err(|e| self.source.err("GetObject", bucket, Some(key), e))?;
            let meta = source_meta!(&out);
            (meta, read_body(out.body, Side::Source, bucket, key, listed.size).await?)
        };
        check_len(bucket, key, body.len() as u64, listed.size)?;

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
        let written = if small {
            let headers =
                [("content-type", "application/octet-stream"), ("x-amz-meta-mtime", mtime.as_str())];
            self.dest.put_small(&self.dest_bucket, &stored.key, ciphertext, &headers).await?
        } else {
            Err(ciphertext)
        };
        let version_id = match written {
            Ok(version_id) => version_id,
            Err(ciphertext) => self
                .dest
                .client()
                .put_object()
                .bucket(&self.dest_bucket)
                .key(&stored.key)
                .content_length(i64::try_from(len).unwrap_or(i64::MAX))
                .content_type("application/octet-stream")
                .metadata("mtime", mtime)
                .body(ByteStream::from(ciphertext))
                .send()
                .await
                .map_err(|e| self.dest.err("PutObject", &self.dest_bucket, Some(&stored.key), e))?
                .version_id()
                .map(str::to_owned),
        };
        self.progress.event(&Event::Bytes(listed.size));
        let tags = self.tags(bucket, key, meta.tag_count).await?;
        Ok(entry(bucket, listed, meta, tags, sha256, stored.key, version_id))
    }

    async fn copy_in_parts(&self, bucket: &str, listed: &Listed) -> Result<Entry> {
        let key = listed.key.as_str();
        let head = self
            .source
            .client()
            .head_object()
            .bucket(bucket)
            .key(key)
            .if_match(&listed.etag)
            .send()
            .await
            .map_err(|e| self.source.err("HeadObject", bucket, Some(key), e))?;
        let meta = source_meta!(&head);
        let stored = self.layout.data_key(bucket, key)?;
        let upload = self
            .dest
            .client()
            .create_multipart_upload()
            .bucket(&self.dest_bucket)
            .key(&stored.key)
            .content_type("application/octet-stream")
            .metadata("mtime", stored_mtime(listed, &meta))
            .send()
            .await
            .map_err(|e| self.dest.err("CreateMultipartUpload", &self.dest_bucket, Some(&stored.key), e))?;
        let Some(upload_id) = upload.upload_id().map(str::to_owned) else {
            return Err(Error::S3(S3Error {
                side: Side::Destination,
                operation: "CreateMultipartUpload",
                bucket: Some(self.dest_bucket.clone()),
                key: Some(stored.key),
                kind: S3ErrorKind::Other,
                status: None,
                code: None,
                message: "the response has no upload id".into(),
            }));
        };

        let result = self.upload_parts(bucket, listed, &stored.key, &upload_id).await;
        let (sha256, version_id) = match result {
            Ok(done) => done,
            Err(err) => {
                // S3 never cleans up by itself; the lifecycle rule is only the safety net.
                let _ = self
                    .dest
                    .client()
                    .abort_multipart_upload()
                    .bucket(&self.dest_bucket)
                    .key(&stored.key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Err(err);
            }
        };
        let tags = self.tags(bucket, key, meta.tag_count).await?;
        Ok(entry(bucket, listed, meta, tags, sha256, stored.key, version_id))
    }

    async fn upload_parts(
        &self,
        bucket: &str,
        listed: &Listed,
        stored_key: &str,
        upload_id: &str,
    ) -> Result<(String, Option<String>)> {
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
        let done = self
            .dest
            .client()
            .complete_multipart_upload()
            .bucket(&self.dest_bucket)
            .key(stored_key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
            .send()
            .await
            .map_err(|e| self.dest.err("CompleteMultipartUpload", &self.dest_bucket, Some(stored_key), e))?;
        Ok((hex::encode(hasher.finish()), done.version_id().map(str::to_owned)))
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
        let out = self
            .source
            .client()
            .get_object()
            .bucket(bucket)
            .key(key)
            .if_match(&listed.etag)
            .range(format!("bytes={}-{}", part.start, part.start + part.len - 1))
            .send()
            .await
            .map_err(|e| self.source.err("GetObject", bucket, Some(key), e))?;
        let plain = read_body(out.body, Side::Source, bucket, key, part.len).await?;
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
        let part_number = i32::try_from(part.index + 1).expect("at most 10,000 parts");
        let out = self
            .dest
            .client()
            .upload_part()
            .bucket(&self.dest_bucket)
            .key(stored_key)
            .upload_id(upload_id)
            .part_number(part_number)
            .content_length(i64::try_from(encrypted_len).unwrap_or(i64::MAX))
            .body(ByteStream::from(ciphertext))
            .customize()
            // No SHA-256 pass over every part just to sign it: each 64 KiB chunk carries a Poly1305 tag that
            // verify and restore check, so damage in transit is caught end to end (DESIGN.md §7).
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| self.dest.err("UploadPart", &self.dest_bucket, Some(stored_key), e))?;
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
            .client()
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.source.err("GetObjectTagging", bucket, Some(key), e))?;
        Ok(out.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect())
    }
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

/// Reads a whole response body, classifying a broken stream as temporary (the copy is retried).
pub(crate) async fn read_body(
    body: ByteStream,
    side: Side,
    bucket: &str,
    key: &str,
    size_hint: u64,
) -> Result<Bytes> {
    // Filled chunk by chunk into one buffer of the expected size: collecting the chunks first and joining
    // them afterwards would hold every body twice at its peak.
    let buffer = bytes::BytesMut::with_capacity(usize::try_from(size_hint).unwrap_or(0).min(1 << 30));
    read_body_into(body, side, bucket, key, buffer).await
}

/// [`read_body`] into a buffer the caller provides (and may have used before).
pub(crate) async fn read_body_into(
    body: ByteStream,
    side: Side,
    bucket: &str,
    key: &str,
    mut buffer: bytes::BytesMut,
) -> Result<Bytes> {
    let mut body = body;
    loop {
        match body.try_next().await {
            Ok(Some(chunk)) => buffer.extend_from_slice(&chunk),
            Ok(None) => return Ok(buffer.freeze()),
            Err(e) => return Err(body_error(side, bucket, key, &e)),
        }
    }
}

/// A response body that broke off: temporary (the read is retried).
pub(crate) fn body_error(
    side: Side,
    bucket: &str,
    key: &str,
    err: &(dyn std::error::Error + 'static),
) -> Error {
    Error::S3(S3Error {
        side,
        operation: "GetObject",
        bucket: Some(bucket.to_owned()),
        key: Some(key.to_owned()),
        kind: S3ErrorKind::Temporary,
        status: None,
        code: None,
        message: format!("reading the body: {}", crate::error::source_chain(err)),
    })
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

/// Exponential backoff with jitter: 0.5 s, 1 s, 2 s, … capped at 30 s, each ±50 %.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500)
        .saturating_mul(1 << attempt.saturating_sub(1).min(6))
        .min(Duration::from_secs(30));
    base.mul_f64(0.5 + rand::random::<f64>())
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
    /// Restores one object, retrying temporary failures.
    pub(crate) async fn restore(&self, item: &RestoreItem) -> Result<()> {
        let _transfer = self.limits.transfer().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if self.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let result = if item.entry.size <= self.options.multipart_threshold {
                self.restore_whole(item).await
            } else {
                self.restore_in_parts(item).await
            };
            match result {
                Err(err) if err.is_temporary() && attempt < self.options.retries => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                other => return other,
            }
        }
    }

    fn integrity(&self, item: &RestoreItem, reason: impl std::fmt::Display) -> Error {
        Error::Integrity {
            bucket: item.entry.bucket.clone(),
            key: item.entry.key.clone(),
            reason: format!("stored as s3://{}/{}: {reason}", self.backup_bucket, item.entry.stored_key),
        }
    }

    async fn restore_whole(&self, item: &RestoreItem) -> Result<()> {
        let entry = &item.entry;
        let expected = encrypted_size(entry.size);
        let _memory = self.limits.memory(expected + entry.size + 64 * 1024).await;
        let out = self
            .backup
            .client()
            .get_object()
            .bucket(&self.backup_bucket)
            .key(&entry.stored_key)
            .set_version_id(entry.version_id.clone())
            .send()
            .await
            .map_err(|e| self.backup.err("GetObject", &self.backup_bucket, Some(&entry.stored_key), e))?;
        let stored =
            read_body(out.body, Side::Destination, &self.backup_bucket, &entry.stored_key, expected).await?;
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
        let request = self
            .target
            .client()
            .put_object()
            .bucket(&item.bucket)
            .key(&entry.key)
            .content_length(i64::try_from(len).unwrap_or(i64::MAX))
            .set_content_md5(md5)
            .body(ByteStream::from(plain));
        let request = object_headers!(request, item);
        request.send().await.map_err(|e| self.target.err("PutObject", &item.bucket, Some(&entry.key), e))?;
        self.progress.event(&Event::Bytes(entry.size));
        Ok(())
    }

    async fn restore_in_parts(&self, item: &RestoreItem) -> Result<()> {
        let entry = &item.entry;
        let header = self
            .backup
            .client()
            .get_object()
            .bucket(&self.backup_bucket)
            .key(&entry.stored_key)
            .set_version_id(entry.version_id.clone())
            .range(format!("bytes=0-{}", s32s3_crypt::HEADER_SIZE - 1))
            .send()
            .await
            .map_err(|e| self.backup.err("GetObject", &self.backup_bucket, Some(&entry.stored_key), e))?;
        let total =
            header.content_range().and_then(|r| r.rsplit('/').next()).and_then(|t| t.parse::<u64>().ok());
        let expected = encrypted_size(entry.size);
        if total.is_some_and(|t| t != expected) {
            return Err(
                self.integrity(item, format!("{} bytes where {expected} were expected", total.unwrap_or(0)))
            );
        }
        let header =
            read_body(header.body, Side::Destination, &self.backup_bucket, &entry.stored_key, 32).await?;
        let nonce = s32s3_crypt::Nonce::from_header(&header).map_err(|e| self.integrity(item, e))?;

        let request = self.target.client().create_multipart_upload().bucket(&item.bucket).key(&entry.key);
        let request = object_headers!(request, item);
        let upload = request
            .send()
            .await
            .map_err(|e| self.target.err("CreateMultipartUpload", &item.bucket, Some(&entry.key), e))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_owned();
        let result = self.restore_parts(item, &nonce, &upload_id).await;
        if result.is_err() {
            let _ = self
                .target
                .client()
                .abort_multipart_upload()
                .bucket(&item.bucket)
                .key(&entry.key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn restore_parts(&self, item: &RestoreItem, nonce: &Nonce, upload_id: &str) -> Result<()> {
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
        self.target
            .client()
            .complete_multipart_upload()
            .bucket(&item.bucket)
            .key(&entry.key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
            .send()
            .await
            .map_err(|e| self.target.err("CompleteMultipartUpload", &item.bucket, Some(&entry.key), e))?;
        Ok(())
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
        let out = self
            .backup
            .client()
            .get_object()
            .bucket(&self.backup_bucket)
            .key(&entry.stored_key)
            .set_version_id(entry.version_id.clone())
            .range(format!("bytes={start}-{}", start + sealed_len - 1))
            .send()
            .await
            .map_err(|e| self.backup.err("GetObject", &self.backup_bucket, Some(&entry.stored_key), e))?;
        let buffer = self.buffers.take_mut(usize::try_from(sealed_len).unwrap_or(0));
        let sealed =
            read_body_into(out.body, Side::Destination, &self.backup_bucket, &entry.stored_key, buffer)
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
        let request = self
            .target
            .client()
            .upload_part()
            .bucket(&item.bucket)
            .key(&entry.key)
            .upload_id(upload_id)
            .part_number(part_number)
            .content_length(i64::try_from(part.len).unwrap_or(i64::MAX));
        let request = if item.object_lock {
            // S3 requires an integrity header on writes to buckets with object lock.
            let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&plain));
            request.content_md5(md5)
        } else {
            request
        };
        let kept = plain.clone();
        let out = request
            .body(ByteStream::from(plain))
            .customize()
            // The part was just authenticated (Poly1305, chunk by chunk) and goes into the object's SHA-256
            // check before the upload completes; hashing it once more only to sign it would cost a quarter
            // of a restore's CPU.
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| self.target.err("UploadPart", &item.bucket, Some(&entry.key), e))?;
        self.buffers.give(kept);
        self.progress.event(&Event::Bytes(part.len));
        Ok(CompletedPart::builder()
            .part_number(part_number)
            .set_e_tag(out.e_tag().map(str::to_owned))
            .build())
    }
}

/// `k=v&k2=v2` with S3's URL encoding, for the `x-amz-tagging` header.
pub(crate) fn tagging_header(tags: &BTreeMap<String, String>) -> String {
    use crate::s3::uri_encode;
    tags.iter().map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v))).collect::<Vec<_>>().join("&")
}
