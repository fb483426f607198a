//! Object data as streams of crypt chunks: every transfer, verification and comparison reads an object as
//! frames ([`crate::store::RangeReader`]), takes whole crypt chunks out of them ([`ChunkReader`]: a slice of
//! the frame, copied only when a chunk spans two frames), seals or opens each straight into the batch of
//! output it belongs to ([`Batch`]) and sends batches on ([`streamed`]). Memory per stream is a few
//! batches, whatever the object's size.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use md5::Digest as _;
use s32s3_crypt::{Cipher, HEADER_SIZE, Nonce};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::store::{BodyReceiver, BodySender, RangeReader, RetryPolicy, body_channel};

/// Memory one stream holds at most: the HTTP client's read buffer (which grows to about 400 KiB on a fast
/// connection), the batch being filled, the batches queued for the request body and the one being sent,
/// and a chunk gathered across frames. Reserved from the run's memory budget for every stream a budget
/// pays for.
pub(crate) const STREAM_MEMORY: u64 = 1 << 20;

/// Bytes per batch sent into a request body: each send is a wake-up of the connection and a write, so
/// fewer, larger ones cost less (64 KiB frames took about 10 % more of a large restore's CPU).
const BATCH: usize = 128 << 10;

/// Batches queued between a producer and the request body it feeds.
const BODY_FRAMES: usize = 2;

/// Buffers reused from one chunk or batch to the next, shared by a run's streams. A buffer comes back to
/// the pool when the last handle on it is dropped (after the HTTP client wrote it), so a stream cycles
/// through a few buffers for a whole object. Without reuse the allocator sees an allocation and a free per
/// chunk, hundreds of MiB a second, freed on other threads than allocated, and holds on to much of it
/// (measured with mimalloc, the allocator then: a 256 MiB object backed up with a 32 MiB budget peaked at
/// 110–122 MiB without reuse, 83–85 MiB with it).
#[derive(Debug, Default)]
pub(crate) struct ChunkPool {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl ChunkPool {
    /// At most this many idle buffers are kept (up to 32 MiB): more than the streams of a run hold at
    /// once.
    const MAX_IDLE: usize = 256;

    /// An empty buffer with room for `capacity` bytes.
    fn take(&self, capacity: usize) -> Vec<u8> {
        let reused = {
            let mut free = self.free.lock().expect("not poisoned");
            free.iter().rposition(|b| b.capacity() >= capacity).map(|i| free.swap_remove(i))
        };
        reused.unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut free = self.free.lock().expect("not poisoned");
        if buf.capacity() > 0 && free.len() < Self::MAX_IDLE {
            free.push(buf);
        }
    }

    /// `buf` as shareable bytes; it returns to the pool when the last of them is dropped.
    fn freeze(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled { buf, pool: Arc::clone(self) })
    }
}

/// A pooled buffer behind [`Bytes`].
struct Pooled {
    buf: Vec<u8>,
    pool: Arc<ChunkPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

/// Whole chunks of `size` bytes (the last one shorter) out of what a [`RangeReader`] reads.
pub(crate) struct ChunkReader {
    reader: RangeReader,
    cutter: Cutter,
}

impl ChunkReader {
    /// The chunks of what `reader` reads from here on, after `pending` (bytes it already read).
    pub(crate) fn new(reader: RangeReader, size: usize, pending: Bytes, pool: &Arc<ChunkPool>) -> Self {
        Self { reader, cutter: Cutter { size, pending, gather: None, pool: Arc::clone(pool) } }
    }

    /// The next chunk; `None` at the end.
    pub(crate) async fn next(&mut self) -> Option<Result<Bytes>> {
        loop {
            if let Some(chunk) = self.cutter.cut() {
                return Some(Ok(chunk));
            }
            match self.reader.next().await {
                Some(Ok(frame)) => self.cutter.pending = frame,
                Some(Err(e)) => return Some(Err(e)),
                None => return self.cutter.rest().map(Ok),
            }
        }
    }
}

/// Cuts frames into chunks: a chunk that lies inside one frame is a slice of it; one that spans frames is
/// gathered into a pooled buffer.
struct Cutter {
    size: usize,
    pending: Bytes,
    gather: Option<Vec<u8>>,
    pool: Arc<ChunkPool>,
}

impl Cutter {
    /// A whole chunk out of what is pending, if there is one (else feed the next frame as `pending`).
    fn cut(&mut self) -> Option<Bytes> {
        if self.gather.is_none() && self.pending.len() >= self.size {
            return Some(self.pending.split_to(self.size));
        }
        if self.pending.is_empty() {
            return None;
        }
        let (pool, size) = (&self.pool, self.size);
        let gather = self.gather.get_or_insert_with(|| pool.take(size));
        let take = (size - gather.len()).min(self.pending.len());
        gather.extend_from_slice(&self.pending.split_to(take));
        if gather.len() < size {
            return None;
        }
        let full = self.gather.take().expect("gathered above");
        Some(self.pool.freeze(full))
    }

    /// The last, shorter chunk, once the frames are over.
    fn rest(&mut self) -> Option<Bytes> {
        let rest = self.gather.take().filter(|g| !g.is_empty());
        rest.map(|g| self.pool.freeze(g))
    }
}

/// Output being gathered into batches of about [`BATCH`] bytes in pooled buffers: sealed or opened chunks
/// are written straight into it by the cipher.
pub(crate) struct Batch {
    buf: Vec<u8>,
    pool: Arc<ChunkPool>,
}

impl Batch {
    pub(crate) fn new(pool: &Arc<ChunkPool>) -> Self {
        Self { buf: Vec::new(), pool: Arc::clone(pool) }
    }

    /// The buffer to append to (room for a batch and one more sealed chunk).
    pub(crate) fn buf(&mut self) -> &mut Vec<u8> {
        if self.buf.capacity() == 0 {
            self.buf = self.pool.take(BATCH + s32s3_crypt::ENCRYPTED_CHUNK_SIZE + HEADER_SIZE);
        }
        &mut self.buf
    }

    /// The batch, once it is full (or `last`: whatever it holds), as bytes to send.
    pub(crate) fn ready(&mut self, last: bool) -> Option<Bytes> {
        let full = self.buf.len() >= BATCH || (last && !self.buf.is_empty());
        full.then(|| self.pool.freeze(std::mem::take(&mut self.buf)))
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

/// Reads the 32-byte crypt header at the start of `reader` and returns the object's nonce and the bytes
/// read past the header; when the manifest recorded a nonce (`expected`), the header must carry exactly
/// it, or the stored object is not the one written at backup.
///
/// # Errors
/// Read failures; a header that is not rclone crypt's, or names another nonce, as a reason string.
pub(crate) async fn read_header(
    reader: &mut RangeReader,
    expected: Option<&Nonce>,
) -> Result<std::result::Result<(Nonce, Bytes), String>> {
    let mut header = BytesMut::with_capacity(HEADER_SIZE);
    let mut rest = Bytes::new();
    while header.len() < HEADER_SIZE {
        let Some(frame) = reader.next().await else {
            return Ok(Err(format!("it ends after {} bytes, inside the crypt header", header.len())));
        };
        let mut frame = frame?;
        let take = (HEADER_SIZE - header.len()).min(frame.len());
        header.extend_from_slice(&frame.split_to(take));
        rest = frame;
    }
    let nonce = match Nonce::from_header(&header) {
        Ok(nonce) => nonce,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if let Some(expected) = expected
        && expected != &nonce
    {
        return Ok(Err(
            "its crypt header names another nonce than the one recorded at backup: it is not the \
                       object that was written"
                .into(),
        ));
    }
    Ok(Ok((nonce, rest)))
}

/// Opens stored chunk `index` of the object with `nonce`, appending its plaintext to `out`.
///
/// # Errors
/// The chunk does not authenticate (damaged, or not this object's), as a reason string.
pub(crate) fn open_chunk(
    cipher: &Cipher,
    nonce: &Nonce,
    index: u64,
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    cipher.decrypt_chunks(nonce, index, sealed, out).map_err(|e| e.to_string())
}

/// Where a producer's frames go: the request body they become, or only an MD5 (a first pass for writes
/// that must send `Content-MD5` up front).
pub(crate) enum Sink {
    /// Frames for a request body.
    Body(BodySender),
    /// Frames hashed and dropped.
    Md5(md5::Md5),
}

impl Sink {
    /// Sends one frame on; `false` when the request it feeds has ended (failed: the caller learns why from
    /// the request).
    pub(crate) async fn send(&mut self, frame: Bytes) -> bool {
        match self {
            Self::Body(tx) => tx.send(frame).await.is_ok(),
            Self::Md5(md5) => {
                md5.update(&frame);
                true
            }
        }
    }
}

/// The base64 `Content-MD5` of what `produce` makes, by a pass that only hashes it.
///
/// # Errors
/// The producer's failure.
pub(crate) async fn content_md5(produce: impl AsyncFnOnce(&mut Sink) -> Result<()>) -> Result<String> {
    use base64::Engine as _;
    let mut sink = Sink::Md5(md5::Md5::new());
    produce(&mut sink).await?;
    let Sink::Md5(md5) = sink else { unreachable!("made above") };
    Ok(base64::engine::general_purpose::STANDARD.encode(md5.finalize()))
}

/// Which side of a streamed request failed.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The producer: nothing was stored (the body was cut short).
    Producer(Error),
    /// The request itself, with a whole body sent or not: whether the object was stored is unknown.
    Upload(Error),
}

impl From<Failed> for Error {
    fn from(failed: Failed) -> Self {
        match failed {
            Failed::Producer(e) | Failed::Upload(e) => e,
        }
    }
}

/// Sends one request body of `len` bytes that `produce` makes while `upload` sends it, retried as a whole
/// with a new body while the upload fails temporarily (under `policy`). The producer's own failure is
/// final: its reads were already retried, and an object that fails to authenticate or changed at the
/// source will not do better next time.
///
/// # Errors
/// The producer's failure, else the upload's last one.
pub(crate) async fn streamed<T>(
    policy: &RetryPolicy,
    len: u64,
    mut produce: impl AsyncFnMut(&mut Sink) -> Result<()>,
    mut upload: impl AsyncFnMut(BodyReceiver) -> Result<T>,
) -> std::result::Result<T, Failed> {
    let mut retrier = policy.retrier();
    loop {
        let (tx, rx) = body_channel(len, BODY_FRAMES);
        let producing = async {
            let mut sink = Sink::Body(tx);
            // The sink is dropped at the end: a body the producer left short fails the request.
            produce(&mut sink).await
        };
        let (produced, uploaded) = tokio::join!(producing, upload(rx));
        match (produced, uploaded) {
            (Err(e), _) => return Err(Failed::Producer(e)),
            (Ok(()), Ok(done)) => return Ok(done),
            (Ok(()), Err(e)) if retrier.wait(&e).await => {}
            (Ok(()), Err(e)) => return Err(Failed::Upload(e)),
        }
    }
}

/// SHA-256 (hex) of everything `reader` reads.
///
/// # Errors
/// Read failures.
pub(crate) async fn sha256_of(reader: &mut RangeReader) -> Result<String> {
    use sha2::Digest as _;
    let mut sha = Sha256::new();
    while let Some(frame) = reader.next().await {
        sha.update(frame?);
    }
    Ok(hex_digest(sha))
}

/// The size of the whole object a (ranged) read answered about.
pub(crate) fn total_size(head: &crate::store::ObjectHead) -> Option<u64> {
    head.total_size().or(head.content_length)
}

/// SHA-256 of bytes fed in any order of arrival but hashed in object order, hex.
pub(crate) fn hex_digest(sha: Sha256) -> String {
    use sha2::Digest as _;
    hex::encode(sha.finalize())
}

/// A problem with the data itself, worded for a report: whatever an attacker or a fault did to it.
pub(crate) fn integrity(bucket: &str, key: &str, reason: impl std::fmt::Display) -> Error {
    Error::Integrity { bucket: bucket.to_owned(), key: key.to_owned(), reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_cut_at_the_same_places_whatever_the_frames() {
        let data: Vec<u8> = (0..65_536 * 3 + 17).map(|i| (i % 253) as u8).collect();
        for frame_len in [1, 1000, 65_535, 65_536, 65_541, data.len()] {
            let pool = Arc::new(ChunkPool::default());
            let mut cutter = Cutter { size: 65_536, pending: Bytes::new(), gather: None, pool };
            let mut chunks = Vec::new();
            for frame in data.chunks(frame_len) {
                cutter.pending = Bytes::copy_from_slice(frame);
                chunks.extend(std::iter::from_fn(|| cutter.cut()));
            }
            chunks.extend(cutter.rest());
            let lens: Vec<usize> = chunks.iter().map(Bytes::len).collect();
            assert_eq!(lens, [65_536, 65_536, 65_536, 17], "frames of {frame_len}");
            assert_eq!(chunks.concat(), data, "frames of {frame_len}");
        }
    }

    #[test]
    fn pooled_buffers_come_back_when_the_last_handle_is_gone() {
        let pool = Arc::new(ChunkPool::default());
        let mut batch = Batch::new(&pool);
        batch.buf().extend_from_slice(&vec![1; BATCH]);
        let bytes = batch.ready(false).expect("a full batch");
        let address = bytes.as_ptr();
        let shared = bytes.slice(10..);
        drop(bytes);
        assert!(pool.free.lock().unwrap().is_empty(), "still in use");
        drop(shared);
        assert_eq!(pool.free.lock().unwrap().len(), 1);
        assert_eq!(batch.buf().as_ptr(), address, "handed out again");
        assert!(batch.ready(false).is_none() && batch.ready(true).is_none(), "nothing to send");
    }
}
