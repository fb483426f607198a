//! Large objects in parts, for both directions: the part arithmetic, the multipart upload that is
//! aborted unless completed, the fan-out of parts in parallel with the plaintext hashed in order, and the
//! buffers a restore reuses from part to part.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use s32s3_crypt::{CHUNK_SIZE, encrypted_size};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::error::Result;
use crate::error::S3ErrorKind;
use crate::store::{CompletedPart, ObjectAttrs, Store, Written};

/// S3's limit on parts per multipart upload.
const MAX_PARTS: u64 = 10_000;

/// The plaintext bytes per part for an object of `size`: at least `wanted`, whole 64 KiB crypt chunks, and
/// few enough parts for S3's limit of 10,000.
#[must_use]
pub fn part_size_for(size: u64, wanted: u64) -> u64 {
    let chunk = CHUNK_SIZE as u64;
    let at_least = wanted.max(size.div_ceil(MAX_PARTS));
    at_least.div_ceil(chunk) * chunk
}

/// One part of an object: its index (from 0) and the plaintext bytes it covers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Part {
    pub(crate) index: u64,
    pub(crate) start: u64,
    pub(crate) len: u64,
}

impl Part {
    /// S3's part number (from 1).
    pub(crate) fn number(self) -> i32 {
        i32::try_from(self.index + 1).expect("at most 10,000 parts")
    }

    /// The first crypt chunk of the part.
    pub(crate) fn first_chunk(self) -> u64 {
        self.start / CHUNK_SIZE as u64
    }

    /// The part's bytes in the stored (encrypted) object: its chunks, and for part 0 the 32-byte header.
    pub(crate) fn encrypted_len(self) -> u64 {
        self.sealed_len() + if self.index == 0 { s32s3_crypt::HEADER_SIZE as u64 } else { 0 }
    }

    /// The part's encrypted chunks alone (no header).
    pub(crate) fn sealed_len(self) -> u64 {
        encrypted_size(self.len) - s32s3_crypt::HEADER_SIZE as u64
    }
}

/// The parts of an object of `size` bytes, `part_size` each (the last one shorter).
fn parts_of(size: u64, part_size: u64) -> impl Iterator<Item = Part> {
    (0..size.div_ceil(part_size)).map(move |index| Part {
        index,
        start: index * part_size,
        len: part_size.min(size - index * part_size),
    })
}

/// How an object is uploaded in parts.
pub(crate) struct PartsPlan<'a> {
    pub(crate) store: &'a Store,
    pub(crate) bucket: &'a str,
    pub(crate) key: &'a str,
    pub(crate) attrs: &'a ObjectAttrs,
    /// The object's plaintext size.
    pub(crate) size: u64,
    /// Plaintext bytes per part (see [`part_size_for`]).
    pub(crate) part_size: u64,
    /// Parts in flight at once.
    pub(crate) concurrency: usize,
}

/// What an upload in parts did once every part was uploaded: the plaintext's SHA-256 and how the
/// completion went (a failed completion has aborted the upload; its answer may still have been lost after
/// the object was stored, which the caller resolves).
pub(crate) struct PartsDone {
    pub(crate) sha256: String,
    pub(crate) completed: Result<Written>,
}

impl PartsPlan<'_> {
    /// Starts a multipart upload, runs `upload(part, upload_id, hasher)` for every part (at most
    /// `concurrency` at once; each hands its plaintext to the hasher), lets `check` see the object's
    /// SHA-256, and completes the upload. Any failure before the completion aborts the upload and is
    /// returned as the error.
    pub(crate) async fn run(
        &self,
        upload: impl AsyncFn(Part, &str, &OrderedHasher) -> Result<CompletedPart>,
        check: impl FnOnce(&str) -> Result<()>,
    ) -> Result<PartsDone> {
        let pending = PendingUpload::create(self.store, self.bucket, self.key, self.attrs).await?;
        let hasher = OrderedHasher::new();
        let uploaded: Result<Vec<CompletedPart>> = futures::stream::iter(parts_of(self.size, self.part_size))
            .map(|part| upload(part, &pending.upload_id, &hasher))
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await;
        let sha256 = hex::encode(hasher.finish());
        let parts = match uploaded.and_then(|parts| check(&sha256).map(|()| parts)) {
            Ok(mut parts) => {
                parts.sort_by_key(|p| p.number);
                parts
            }
            Err(e) => {
                // S3 never cleans up by itself; the lifecycle rule is only the safety net.
                pending.abort().await;
                return Err(e);
            }
        };
        Ok(PartsDone { sha256, completed: pending.complete(&parts).await })
    }
}

/// An incomplete multipart upload: aborted unless [`PendingUpload::complete`] succeeds, also when
/// dropped (a cancelled or panicking task), in the background.
pub(crate) struct PendingUpload {
    store: Store,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl PendingUpload {
    /// Starts a multipart upload of `key`. When an attempt's answer was lost, the upload it started is
    /// unknown: once ours is known, the other uploads of `key` are aborted (nothing else writes this key
    /// meanwhile: a backup holds the lease, a restore owns its target).
    ///
    /// # Errors
    /// S3 failures, classified.
    pub(crate) async fn create(store: &Store, bucket: &str, key: &str, attrs: &ObjectAttrs) -> Result<Self> {
        let (upload_id, attempts) = store.create_multipart(bucket, key, attrs).await?;
        if attempts > 1 {
            abort_others(store, bucket, key, &upload_id).await;
        }
        Ok(Self::new(store, bucket, key, &upload_id))
    }

    /// An upload known by its id (one left behind, to abort).
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
    pub(crate) async fn complete(mut self, parts: &[CompletedPart]) -> Result<Written> {
        match self.store.complete_multipart(&self.bucket, &self.key, &self.upload_id, parts).await {
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
    match store.abort_multipart(&bucket, &key, &upload_id).await {
        // Already gone: completed after all, or aborted by an earlier attempt.
        Ok(()) => {}
        Err(e) if e.s3_kind() == Some(S3ErrorKind::NotFound) => {}
        Err(e) => tracing::warn!("s3://{bucket}/{key}: aborting the incomplete upload failed: {e}"),
    }
}

/// Aborts the incomplete uploads of `key` other than `ours` (best effort).
async fn abort_others(store: &Store, bucket: &str, key: &str, ours: &str) {
    let mut others = Vec::new();
    let listed = store
        .list_uploads(bucket, Some(key), |uploads| {
            others.extend(uploads.into_iter().filter(|u| u.key == key && u.upload_id != ours));
        })
        .await;
    if let Err(e) = listed {
        tracing::warn!("s3://{bucket}/{key}: listing the uploads a lost answer may have left failed: {e}");
    }
    for upload in others {
        abort_upload(store.clone(), bucket.to_owned(), upload.key, upload.upload_id).await;
    }
}

/// SHA-256 over parts that arrive in any order, hashed in order: part `i` waits until part `i-1` was hashed.
/// Parts acquire their memory in index order, so a waiting part never blocks the one it waits for.
pub(crate) struct OrderedHasher {
    turn: watch::Sender<u64>,
    state: Arc<Mutex<Sha256>>,
}

impl OrderedHasher {
    fn new() -> Self {
        Self { turn: watch::Sender::new(0), state: Arc::new(Mutex::new(Sha256::new())) }
    }

    /// Hashes part `index`'s plaintext once every part before it is hashed.
    pub(crate) async fn update(&self, index: u64, data: Bytes) {
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
    pub(crate) fn take(&self, capacity: usize) -> Vec<u8> {
        let reused = {
            let mut free = self.free.lock().expect("not poisoned");
            free.iter().position(|b| b.capacity() >= capacity).map(|i| free.swap_remove(i))
        };
        reused.unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// [`BufferPool::take`] as a `BytesMut` (the same allocation).
    pub(crate) fn take_mut(&self, capacity: usize) -> bytes::BytesMut {
        // An empty Vec with spare capacity becomes a uniquely held Bytes, which converts back without a copy.
        Bytes::from(self.take(capacity))
            .try_into_mut()
            .unwrap_or_else(|_| bytes::BytesMut::with_capacity(capacity))
    }

    /// Keeps `bytes`' buffer for reuse if nothing else holds it.
    pub(crate) fn give(&self, bytes: Bytes) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            let total: u64 = parts_of(size, p).map(Part::encrypted_len).sum();
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
}
