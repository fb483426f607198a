//! Large objects in parts, for both directions: the part arithmetic, the multipart upload that is
//! aborted unless completed, and the fan-out of parts, each streamed from its producer into its upload,
//! with the plaintext (SHA-256) and the stored bytes (MD5, for rclone's `md5chksum`) hashed in object order.

use std::sync::Mutex;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt as _, TryStreamExt as _};
use md5::Md5;
use s32s3_crypt::{CHUNK_SIZE, encrypted_size};
use sha2::{Digest, Sha256};
use tokio::sync::{SemaphorePermit, watch};

use crate::engine::stream::{STREAM_MEMORY, Sink, content_md5, streamed};
use crate::error::Result;
use crate::error::S3ErrorKind;
use crate::store::limit::Limits;
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

/// Which way a part's bytes go: sealed into the backup (the body is the part's stored chunks, and part 0
/// also the crypt header) or opened out of it (the body is the plaintext).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Backup: plaintext in, stored chunks out.
    Seal,
    /// Restore: stored chunks in, plaintext out.
    Open,
}

impl Direction {
    /// The length of a part's request body.
    fn body_len(self, part: Part) -> u64 {
        match self {
            Self::Seal => part.encrypted_len(),
            Self::Open => part.len,
        }
    }
}

/// How an object is uploaded in parts: each part a stream from its producer into its upload, so a part
/// holds memory only for what it must keep until the object's hash reaches it.
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
    /// The run's limits: each part's stream, and the plaintext a part holds for the hash, come out of the
    /// memory budget.
    pub(crate) limits: &'a Limits,
    pub(crate) direction: Direction,
    /// The plaintext is hashed (SHA-256, in object order) as the parts go.
    pub(crate) hashed: bool,
    /// The request bodies (the stored object, when sealing) are hashed (MD5, in object order) as the parts
    /// go: rclone keeps the MD5 of a multipart object's stored bytes in `X-Amz-Meta-Md5chksum`, which its
    /// `cryptcheck` compares.
    pub(crate) body_md5: bool,
    /// Each part is sent with its `Content-MD5` (S3 requires it in buckets with object lock), which a first
    /// pass over the part computes.
    pub(crate) content_md5: bool,
}

/// What an upload in parts did once every part was uploaded: the plaintext's SHA-256 (when hashed) and how
/// the completion went (a failed completion has aborted the upload; its answer may still have been lost
/// after the object was stored, which the caller resolves).
pub(crate) struct PartsDone {
    pub(crate) sha256: Option<String>,
    /// The MD5 of the uploaded bytes, base64 (when `body_md5`).
    pub(crate) body_md5: Option<String>,
    pub(crate) completed: Result<Written>,
}

impl PartsPlan<'_> {
    /// Starts a multipart upload, streams every part (at most `concurrency` at once) from
    /// `produce(part, hash, sink)` into its upload, lets `check` see the object's SHA-256, and completes
    /// the upload. A producer feeds the part's plaintext to `hash` (by its offset in the part: bytes an
    /// earlier attempt fed are skipped) and its request body to `sink`. Any failure before the completion
    /// aborts the upload and is returned as the error.
    pub(crate) async fn run(
        &self,
        produce: impl AsyncFn(Part, &mut PartHash<'_>, &mut Sink) -> Result<()>,
        check: impl FnOnce(Option<&str>) -> Result<()>,
    ) -> Result<PartsDone> {
        let pending = PendingUpload::create(self.store, self.bucket, self.key, self.attrs).await?;
        let hasher = (self.hashed || self.body_md5).then(|| OrderedHasher::new(self.hashed, self.body_md5));
        let uploaded: Result<Vec<CompletedPart>> = futures::stream::iter(parts_of(self.size, self.part_size))
            .map(|part| self.one_part(part, &pending.upload_id, hasher.as_ref(), &produce))
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await;
        let (sha256, body_md5) = hasher.map(OrderedHasher::finish).unwrap_or_default();
        let parts = match uploaded.and_then(|parts| check(sha256.as_deref()).map(|()| parts)) {
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
        Ok(PartsDone { sha256, body_md5, completed: pending.complete(&parts).await })
    }

    /// Streams one part into its upload (retried as a whole while the upload fails temporarily).
    async fn one_part(
        &self,
        part: Part,
        upload_id: &str,
        hasher: Option<&OrderedHasher>,
        produce: &impl AsyncFn(Part, &mut PartHash<'_>, &mut Sink) -> Result<()>,
    ) -> Result<CompletedPart> {
        let mut hash = PartHash::new(hasher, part.index);
        let _memory = self.admit(part, &mut hash).await;
        let md5 = if self.content_md5 {
            Some(content_md5(async |sink| produce(part, &mut hash, sink).await).await?)
        } else {
            None
        };
        let done = streamed(
            self.store.policy(),
            self.direction.body_len(part),
            async |sink| produce(part, &mut hash, sink).await,
            async |body| {
                let (bucket, key, number) = (self.bucket, self.key, part.number());
                self.store.upload_part_stream(bucket, key, upload_id, number, body, md5.clone()).await
            },
        )
        .await?;
        hash.finish().await;
        Ok(done)
    }

    /// Waits until the part may start. Without a hash, a part needs memory for its stream only. With one,
    /// it starts either when the hash has reached it (it is hashed as it streams: no memory needed) or,
    /// before that, once the budget can hold what it must keep until then (its plaintext, its body, or
    /// both). A part never waits for memory once the hash has reached it, so every object keeps moving.
    async fn admit(&self, part: Part, hash: &mut PartHash<'_>) -> Option<SemaphorePermit<'_>> {
        let Some(hasher) = hash.hasher else {
            return Some(self.limits.memory(STREAM_MEMORY).await);
        };
        let held = if self.hashed { part.len } else { 0 }
            + if self.body_md5 { self.direction.body_len(part) } else { 0 };
        let need = held + STREAM_MEMORY;
        if !self.limits.fits(need) {
            hasher.wait_turn(part.index).await;
            return None;
        }
        tokio::select! {
            biased;
            () = hasher.wait_turn(part.index) => None,
            permit = self.limits.memory(need) => {
                // Its whole plaintext at most, allocated once (growing by doubling would copy and, for a
                // moment, hold half as much again).
                if self.hashed {
                    hash.held = BytesMut::with_capacity(usize::try_from(part.len).unwrap_or(usize::MAX));
                }
                hash.may_hold = true;
                Some(permit)
            }
        }
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

/// Hashes over parts that stream at the same time, in object order: SHA-256 of the plaintext, MD5 of the
/// request bodies, or both. The part whose turn it is hashes as it streams; a part ahead of its turn holds
/// what it fed (memory it reserved) until the turn reaches it.
pub(crate) struct OrderedHasher {
    turn: watch::Sender<u64>,
    sha256: Option<Mutex<Sha256>>,
    md5: Option<Mutex<Md5>>,
}

impl OrderedHasher {
    fn new(sha256: bool, md5: bool) -> Self {
        Self {
            turn: watch::Sender::new(0),
            sha256: sha256.then(|| Mutex::new(Sha256::new())),
            md5: md5.then(|| Mutex::new(Md5::new())),
        }
    }

    fn is_turn(&self, index: u64) -> bool {
        *self.turn.borrow() == index
    }

    async fn wait_turn(&self, index: u64) {
        let mut turn = self.turn.subscribe();
        turn.wait_for(|next| *next == index).await.expect("the sender lives as long as self");
    }

    fn update_plain(&self, data: &[u8]) {
        if let Some(sha) = &self.sha256 {
            sha.lock().expect("hashing does not panic").update(data);
        }
    }

    fn update_body(&self, data: &[u8]) {
        if let Some(md5) = &self.md5 {
            md5.lock().expect("hashing does not panic").update(data);
        }
    }

    /// The SHA-256 (hex) and the MD5 (base64), each when asked for.
    fn finish(self) -> (Option<String>, Option<String>) {
        let sha256 = self.sha256.map(|s| hex::encode(s.into_inner().expect("not poisoned").finalize()));
        let md5 = self.md5.map(|m| {
            base64::engine::general_purpose::STANDARD.encode(m.into_inner().expect("not poisoned").finalize())
        });
        (sha256, md5)
    }
}

/// One part's share of an [`OrderedHasher`] (inert when the plan does not hash).
pub(crate) struct PartHash<'a> {
    hasher: Option<&'a OrderedHasher>,
    index: u64,
    /// Plaintext bytes of the part fed so far (hashed or held).
    fed: u64,
    /// Plaintext fed before the part's turn.
    held: BytesMut,
    /// Body bytes of the part fed so far (hashed or held).
    fed_body: u64,
    /// Body fed before the part's turn: the frames themselves, no copy.
    held_body: Vec<Bytes>,
    /// The part reserved memory for what it may hold.
    may_hold: bool,
}

impl<'a> PartHash<'a> {
    fn new(hasher: Option<&'a OrderedHasher>, index: u64) -> Self {
        Self {
            hasher,
            index,
            fed: 0,
            held: BytesMut::new(),
            fed_body: 0,
            held_body: Vec::new(),
            may_hold: false,
        }
    }

    /// Feeds the part's plaintext `data`, which starts at `offset` in the part. Bytes fed before (by an
    /// attempt that failed) are skipped, so each byte is hashed exactly once.
    pub(crate) fn feed(&mut self, offset: u64, data: &[u8]) {
        let Some(hasher) = self.hasher.filter(|h| h.sha256.is_some()) else { return };
        let Some(data) = unfed(&mut self.fed, offset, data) else { return };
        if hasher.is_turn(self.index) {
            if !self.held.is_empty() {
                hasher.update_plain(&std::mem::take(&mut self.held));
            }
            hasher.update_plain(data);
        } else {
            assert!(self.may_hold, "a part that started in turn stays in turn");
            self.held.extend_from_slice(data);
        }
    }

    /// Feeds a frame of the part's request body, which starts at `offset` in the body; as
    /// [`PartHash::feed`], bytes fed before are skipped.
    pub(crate) fn feed_body(&mut self, offset: u64, frame: &Bytes) {
        let Some(hasher) = self.hasher.filter(|h| h.md5.is_some()) else { return };
        let Some(data) = unfed(&mut self.fed_body, offset, frame) else { return };
        if hasher.is_turn(self.index) {
            for held in self.held_body.drain(..) {
                hasher.update_body(&held);
            }
            hasher.update_body(data);
        } else {
            assert!(self.may_hold, "a part that started in turn stays in turn");
            self.held_body.push(frame.slice(frame.len() - data.len()..));
        }
    }

    /// Once the whole part was fed: waits for its turn, hashes what it held and passes the turn on.
    async fn finish(mut self) {
        let Some(hasher) = self.hasher else { return };
        hasher.wait_turn(self.index).await;
        // Up to a part: in slices, so the async worker keeps serving other tasks.
        for slice in std::mem::take(&mut self.held).chunks(256 << 10) {
            hasher.update_plain(slice);
            tokio::task::yield_now().await;
        }
        for frame in std::mem::take(&mut self.held_body) {
            hasher.update_body(&frame);
            tokio::task::yield_now().await;
        }
        hasher.turn.send_replace(self.index + 1);
    }
}

/// The part of `data` (starting at `offset`) past the `fed` bytes already seen, moving `fed` to its end;
/// `None` when all of it was fed before.
fn unfed<'d>(fed: &mut u64, offset: u64, data: &'d [u8]) -> Option<&'d [u8]> {
    let end = offset + data.len() as u64;
    if end <= *fed {
        return None;
    }
    let skip = usize::try_from(fed.saturating_sub(offset)).unwrap_or(usize::MAX);
    *fed = end;
    Some(&data[skip..])
}

#[cfg(test)]
mod tests {
    use super::*;

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
    async fn parts_are_hashed_in_order_whatever_the_arrival_and_the_retries() {
        let hasher = OrderedHasher::new(true, true);
        let parts: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 1000 + usize::from(i)]).collect();
        // The "body" of a part: its plaintext reversed, so a mix-up of the two hashes shows.
        let bodies: Vec<Bytes> = parts
            .iter()
            .map(|p| Bytes::from(p.iter().rev().map(|b| b ^ 0x5a).collect::<Vec<u8>>()))
            .collect();
        let mut hashes: Vec<PartHash<'_>> = (0..6)
            .map(|index| PartHash { may_hold: index > 0, ..PartHash::new(Some(&hasher), index) })
            .collect();
        // Later parts stream first and hold; part 0 streams in turn, with a failed attempt fed again.
        for (i, hash) in hashes.iter_mut().enumerate().rev() {
            hash.feed(0, &parts[i][..500]);
            hash.feed_body(0, &bodies[i].slice(..300));
            hash.feed(0, &parts[i][..700]);
            hash.feed_body(0, &bodies[i].slice(..600));
            hash.feed(700, &parts[i][700..]);
            hash.feed_body(600, &bodies[i].slice(600..));
        }
        assert!(
            hashes[0].held.is_empty() && hashes[0].held_body.is_empty(),
            "the part in turn holds nothing"
        );
        assert_eq!(hashes[3].held.len(), parts[3].len());
        assert_eq!(hashes[3].held_body.iter().map(Bytes::len).sum::<usize>(), bodies[3].len());
        futures::future::join_all(hashes.into_iter().rev().map(PartHash::finish)).await;
        let (mut want_sha, mut want_md5) = (Sha256::new(), Md5::new());
        for (p, b) in parts.iter().zip(&bodies) {
            want_sha.update(p);
            want_md5.update(b);
        }
        let (sha256, md5) = hasher.finish();
        assert_eq!(sha256.unwrap(), hex::encode(want_sha.finalize()));
        assert_eq!(md5.unwrap(), base64::engine::general_purpose::STANDARD.encode(want_md5.finalize()));
    }
}
