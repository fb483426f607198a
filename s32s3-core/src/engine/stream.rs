//! Object data as streams of crypt chunks: every transfer, verification and comparison reads an object as
//! frames ([`crate::store::RangeReader`]), cuts them into crypt chunks ([`Chunker`]), seals or opens each
//! chunk in its own buffer, and sends it on ([`streamed`]). Memory per stream is a few chunks, whatever
//! the object's size.

use bytes::{Bytes, BytesMut};
use md5::Digest as _;
use s32s3_crypt::{CHUNK_SIZE, Cipher, ENCRYPTED_CHUNK_SIZE, HEADER_SIZE, Nonce, TAG_SIZE};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::store::{BodyReceiver, BodySender, RangeReader, RetryPolicy, body_channel};

/// Memory one stream holds at most besides its chunk buffers' payload: the HTTP client's read buffer
/// (which grows to about 400 KiB on a fast connection), the frames queued in its request body and the
/// chunk being filled. Reserved from the run's memory budget for every stream a budget pays for.
pub(crate) const STREAM_MEMORY: u64 = 1 << 20;

/// Frames queued between a producer and the request body it feeds.
const BODY_FRAMES: usize = 4;

/// Chunk buffers reused from one chunk to the next, shared by a run's streams. A chunk's buffer comes
/// back to the pool when the last handle on it is dropped (after the HTTP client wrote it), so a stream
/// cycles through a few buffers for a whole object. Without reuse the allocator sees a 64 KiB allocation
/// and a free per chunk, hundreds of MiB a second, freed on other threads than allocated, and holds on to
/// much of it (measured with mimalloc, the allocator then: a 256 MiB object backed up with a 32 MiB budget
/// peaked at 110–122 MiB without reuse, 83–85 MiB with it).
#[derive(Debug, Default)]
pub(crate) struct ChunkPool {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl ChunkPool {
    /// At most this many idle buffers are kept (16 MiB): more than the streams of a run hold at once.
    const MAX_IDLE: usize = 256;

    fn take(&self, capacity: usize) -> Vec<u8> {
        let reused = self.free.lock().expect("not poisoned").pop();
        match reused {
            Some(mut buf) if buf.capacity() >= capacity => {
                buf.clear();
                buf
            }
            _ => Vec::with_capacity(capacity),
        }
    }

    fn give(&self, buf: Vec<u8>) {
        let mut free = self.free.lock().expect("not poisoned");
        if buf.capacity() > 0 && free.len() < Self::MAX_IDLE {
            free.push(buf);
        }
    }
}

/// A chunk in a buffer of a [`ChunkPool`].
#[derive(Debug)]
pub(crate) struct Chunk {
    buf: Vec<u8>,
    pool: std::sync::Arc<ChunkPool>,
}

impl Chunk {
    /// The chunk's bytes (after the room a [`Chunker`] leaves in front).
    pub(crate) fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// The chunk as shareable bytes; the buffer returns to its pool when the last of them is dropped.
    pub(crate) fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl std::ops::Deref for Chunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

/// Cuts a byte stream into chunks of `size` bytes (the last one shorter), each in a pooled buffer of its
/// own that starts with `prefix` bytes of room (where a sealed chunk's tag goes).
#[derive(Debug)]
pub(crate) struct Chunker {
    size: usize,
    prefix: usize,
    pool: std::sync::Arc<ChunkPool>,
    buf: Vec<u8>,
}

impl Chunker {
    /// Chunks of plaintext to seal: room for the tag, then up to 64 KiB.
    pub(crate) fn plain(pool: &std::sync::Arc<ChunkPool>) -> Self {
        Self::new(CHUNK_SIZE, TAG_SIZE, pool)
    }

    /// Stored chunks to open: tag and ciphertext as read.
    pub(crate) fn sealed(pool: &std::sync::Arc<ChunkPool>) -> Self {
        Self::new(ENCRYPTED_CHUNK_SIZE, 0, pool)
    }

    fn new(size: usize, prefix: usize, pool: &std::sync::Arc<ChunkPool>) -> Self {
        let mut chunker = Self { size, prefix, pool: std::sync::Arc::clone(pool), buf: Vec::new() };
        chunker.buf = chunker.fresh();
        chunker
    }

    fn fresh(&self) -> Vec<u8> {
        let mut buf = self.pool.take(self.prefix + self.size);
        buf.resize(self.prefix, 0);
        buf
    }

    fn chunk(&self, buf: Vec<u8>) -> Chunk {
        Chunk { buf, pool: std::sync::Arc::clone(&self.pool) }
    }

    /// Takes bytes from the front of `frame` until a chunk is full, and returns it; `None` once `frame` is
    /// used up without filling one (call again with the next frame).
    pub(crate) fn fill(&mut self, frame: &mut Bytes) -> Option<Chunk> {
        let want = self.prefix + self.size - self.buf.len();
        let take = want.min(frame.len());
        self.buf.extend_from_slice(&frame.split_to(take));
        if self.buf.len() < self.prefix + self.size {
            return None;
        }
        let fresh = self.fresh();
        let full = std::mem::replace(&mut self.buf, fresh);
        Some(self.chunk(full))
    }

    /// The last, shorter chunk, if any bytes are left.
    pub(crate) fn rest(mut self) -> Option<Chunk> {
        let buf = std::mem::take(&mut self.buf);
        (buf.len() > self.prefix).then(|| self.chunk(buf))
    }
}

impl Drop for Chunker {
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

/// Opens stored chunk `index` (as the [`Chunker::sealed`] cut it) in place; the plaintext.
///
/// # Errors
/// The chunk does not authenticate (damaged, or not this object's), as a reason string.
pub(crate) fn open_chunk(
    cipher: &Cipher,
    nonce: &Nonce,
    index: u64,
    mut sealed: Chunk,
) -> std::result::Result<Bytes, String> {
    cipher.open_chunk_in_place(nonce, index, sealed.as_mut()).map_err(|e| e.to_string())?;
    Ok(sealed.freeze().split_off(TAG_SIZE))
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

/// A [`RangeReader`]'s bytes as a [`Chunker`] cuts them.
pub(crate) struct ChunkReader {
    reader: RangeReader,
    chunker: Option<Chunker>,
    pending: Bytes,
}

impl ChunkReader {
    /// The chunks of what `reader` reads from here on, after `pending` (bytes it already read).
    pub(crate) fn new(reader: RangeReader, chunker: Chunker, pending: Bytes) -> Self {
        Self { reader, chunker: Some(chunker), pending }
    }

    /// The next chunk; `None` at the end.
    pub(crate) async fn next(&mut self) -> Option<Result<Chunk>> {
        loop {
            let chunker = self.chunker.as_mut()?;
            while !self.pending.is_empty() {
                if let Some(chunk) = chunker.fill(&mut self.pending) {
                    return Some(Ok(chunk));
                }
            }
            match self.reader.next().await {
                Some(Ok(frame)) => self.pending = frame,
                Some(Err(e)) => return Some(Err(e)),
                None => return self.chunker.take().and_then(Chunker::rest).map(Ok),
            }
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
        let data: Vec<u8> = (0..CHUNK_SIZE * 3 + 17).map(|i| (i % 253) as u8).collect();
        for frame_len in [1, 1000, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 5, data.len()] {
            let mut chunker = Chunker::plain(&std::sync::Arc::default());
            let mut chunks = Vec::new();
            for frame in data.chunks(frame_len) {
                let mut frame = Bytes::copy_from_slice(frame);
                while !frame.is_empty() {
                    if let Some(chunk) = chunker.fill(&mut frame) {
                        chunks.push(chunk);
                    }
                }
            }
            chunks.extend(chunker.rest());
            let lens: Vec<usize> = chunks.iter().map(|c| c.len() - TAG_SIZE).collect();
            assert_eq!(lens, [CHUNK_SIZE, CHUNK_SIZE, CHUNK_SIZE, 17], "frames of {frame_len}");
            let joined: Vec<u8> = chunks.iter().flat_map(|c| c[TAG_SIZE..].to_vec()).collect();
            assert_eq!(joined, data);
        }
        // Buffers come back to the pool once the last handle is gone, and are handed out again.
        let pool = std::sync::Arc::new(ChunkPool::default());
        let mut chunker = Chunker::plain(&pool);
        let chunk = chunker.fill(&mut Bytes::from(vec![1; CHUNK_SIZE])).unwrap();
        let address = chunk.as_ptr();
        let bytes = chunk.freeze();
        let shared = bytes.slice(TAG_SIZE..);
        drop(bytes);
        assert!(pool.free.lock().unwrap().is_empty(), "still in use");
        drop(shared);
        assert_eq!(pool.free.lock().unwrap().len(), 1);
        // The chunker gives back the buffer it was filling too; a new one takes both before allocating.
        drop(chunker);
        assert_eq!(pool.free.lock().unwrap().len(), 2);
        let mut again = Chunker::plain(&pool);
        let first = again.fill(&mut Bytes::from(vec![2; CHUNK_SIZE])).unwrap();
        let second = again.fill(&mut Bytes::from(vec![3; CHUNK_SIZE])).unwrap();
        assert!([first.as_ptr(), second.as_ptr()].contains(&address));
        assert!(pool.free.lock().unwrap().is_empty());
        assert!(Chunker::sealed(&std::sync::Arc::default()).rest().is_none(), "no bytes, no chunk");
    }
}
