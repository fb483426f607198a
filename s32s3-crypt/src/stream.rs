//! Streaming encryption and decryption over `std::io::Read`, and the state machines the tokio adapters
//! share.

use std::io::{self, Read};

use crate::cipher::Cipher;
use crate::content::{CHUNK_SIZE, ChunkRange, ENCRYPTED_CHUNK_SIZE, HEADER_SIZE, Nonce, header};
use crate::error::{Error, Result};

/// Chunks per batch when a stream runs its chunks on rayon's pool (4 MiB: enough for every core to get
/// several chunks, small enough to keep latency and memory low).
const PARALLEL_BATCH_CHUNKS: usize = 64;

/// The encrypting state machine: header first, then one sealed batch at a time.
pub(crate) struct EncryptCore {
    cipher: Cipher,
    nonce: Nonce,
    next_chunk: u64,
    plain: Vec<u8>,
    filled: usize,
    out: Vec<u8>,
    out_pos: usize,
    eof: bool,
    parallel: bool,
}

impl EncryptCore {
    pub(crate) fn new(cipher: Cipher, nonce: Nonce) -> EncryptCore {
        EncryptCore {
            cipher,
            nonce,
            next_chunk: 0,
            plain: vec![0; CHUNK_SIZE],
            filled: 0,
            out: header(&nonce).to_vec(),
            out_pos: 0,
            eof: false,
            parallel: false,
        }
    }

    pub(crate) fn set_parallel(&mut self, parallel: bool) {
        self.parallel = parallel;
        let chunks = if parallel { PARALLEL_BATCH_CHUNKS } else { 1 };
        self.plain.resize(chunks * CHUNK_SIZE, 0);
    }

    pub(crate) fn nonce(&self) -> &Nonce {
        &self.nonce
    }

    pub(crate) fn pending(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.out_pos += n;
    }

    pub(crate) fn is_eof(&self) -> bool {
        self.eof
    }

    pub(crate) fn spare(&mut self) -> &mut [u8] {
        &mut self.plain[self.filled..]
    }

    /// Records `n` bytes read into [`EncryptCore::spare`]; 0 means end of input.
    pub(crate) fn fill(&mut self, n: usize) {
        if n == 0 {
            self.eof = true;
        } else {
            self.filled += n;
        }
        if self.filled > 0 && (self.eof || self.filled == self.plain.len()) {
            self.out.clear();
            self.out_pos = 0;
            let plain = &self.plain[..self.filled];
            if self.parallel {
                self.cipher.encrypt_chunks_parallel(&self.nonce, self.next_chunk, plain, &mut self.out);
            } else {
                self.cipher.encrypt_chunks(&self.nonce, self.next_chunk, plain, &mut self.out);
            }
            self.next_chunk += self.filled.div_ceil(CHUNK_SIZE) as u64;
            self.filled = 0;
        }
    }
}

/// The decrypting state machine: header (unless the nonce is known), then one batch of chunks at a time,
/// with an optional plaintext range.
pub(crate) struct DecryptCore {
    cipher: Cipher,
    header: [u8; HEADER_SIZE],
    header_filled: usize,
    nonce: Option<Nonce>,
    next_chunk: u64,
    sealed: Vec<u8>,
    filled: usize,
    out: Vec<u8>,
    out_pos: usize,
    skip: usize,
    remaining: Option<u64>,
    produced: u64,
    expected: Option<u64>,
    eof: bool,
    failed: Option<Error>,
    parallel: bool,
}

impl DecryptCore {
    pub(crate) fn new(cipher: Cipher) -> DecryptCore {
        DecryptCore {
            cipher,
            header: [0; HEADER_SIZE],
            header_filled: 0,
            nonce: None,
            next_chunk: 0,
            sealed: vec![0; ENCRYPTED_CHUNK_SIZE],
            filled: 0,
            out: Vec::new(),
            out_pos: 0,
            skip: 0,
            remaining: None,
            produced: 0,
            expected: None,
            eof: false,
            failed: None,
            parallel: false,
        }
    }

    pub(crate) fn for_range(cipher: Cipher, nonce: Nonce, range: &ChunkRange) -> DecryptCore {
        let mut core = DecryptCore::new(cipher);
        core.nonce = Some(nonce);
        core.next_chunk = range.first_chunk;
        core.skip = range.discard;
        core.remaining = range.len;
        core
    }

    pub(crate) fn set_parallel(&mut self, parallel: bool) {
        self.parallel = parallel;
        let chunks = if parallel { PARALLEL_BATCH_CHUNKS } else { 1 };
        self.sealed.resize(chunks * ENCRYPTED_CHUNK_SIZE, 0);
    }

    pub(crate) fn set_expected(&mut self, expected: u64) {
        self.expected = Some(expected);
    }

    pub(crate) fn nonce(&self) -> Option<&Nonce> {
        self.nonce.as_ref()
    }

    /// Plaintext ready to hand out. Empty with [`DecryptCore::finished`] true means the end.
    pub(crate) fn pending(&self) -> &[u8] {
        let out = &self.out[self.out_pos..];
        match self.remaining {
            Some(r) if (out.len() as u64) > r => &out[..r as usize],
            _ => out,
        }
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.out_pos += n;
        self.produced += n as u64;
        if let Some(r) = &mut self.remaining {
            *r -= n as u64;
        }
    }

    /// `Some(Ok(()))` at the clean end, `Some(Err)` after a failure, `None` while more may come. Call when
    /// [`DecryptCore::pending`] is empty.
    pub(crate) fn finished(&self) -> Option<Result<()>> {
        // A satisfied range is a success even if a chunk after it (decrypted in the same batch) failed.
        if self.remaining == Some(0) {
            return Some(Ok(()));
        }
        if let Some(err) = &self.failed {
            return Some(Err(err.clone()));
        }
        self.eof.then_some(Ok(()))
    }

    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.nonce.is_none() {
            &mut self.header[self.header_filled..]
        } else {
            &mut self.sealed[self.filled..]
        }
    }

    fn fail(&mut self, err: Error) {
        self.failed = Some(err);
    }

    /// Records `n` bytes read into [`DecryptCore::spare`]; 0 means end of input.
    pub(crate) fn fill(&mut self, n: usize) {
        if self.nonce.is_none() {
            if n == 0 {
                self.fail(Error::TooShort { len: self.header_filled as u64 });
                return;
            }
            self.header_filled += n;
            if self.header_filled == HEADER_SIZE {
                match Nonce::from_header(&self.header) {
                    Ok(nonce) => self.nonce = Some(nonce),
                    Err(err) => self.fail(err),
                }
            }
            return;
        }
        if n == 0 {
            self.eof = true;
        } else {
            self.filled += n;
        }
        if self.filled > 0 && (self.eof || self.filled == self.sealed.len()) {
            self.decrypt_batch();
        }
        if self.eof && self.failed.is_none() && self.pending().is_empty() {
            self.check_expected();
        }
    }

    fn decrypt_batch(&mut self) {
        let Some(nonce) = self.nonce else { return };
        self.out.clear();
        self.out_pos = 0;
        let sealed = &self.sealed[..self.filled];
        let result = if self.parallel {
            self.cipher.decrypt_chunks_parallel(&nonce, self.next_chunk, sealed, &mut self.out)
        } else {
            self.cipher.decrypt_chunks(&nonce, self.next_chunk, sealed, &mut self.out)
        };
        self.next_chunk += self.filled.div_ceil(ENCRYPTED_CHUNK_SIZE) as u64;
        self.filled = 0;
        let skip = self.skip.min(self.out.len());
        self.out_pos = skip;
        self.skip -= skip;
        if let Err(err) = result {
            self.fail(err);
        }
    }

    fn check_expected(&mut self) {
        if let Some(expected) = self.expected
            && self.produced != expected
        {
            self.fail(Error::UnexpectedSize { expected, actual: self.produced });
        }
    }

    /// Called after handing out bytes at the end of input: checks the total against the expected size.
    pub(crate) fn after_consume(&mut self) {
        if self.eof && self.failed.is_none() && self.pending().is_empty() {
            self.check_expected();
        }
        if let Some(expected) = self.expected
            && self.produced > expected
            && self.failed.is_none()
        {
            self.fail(Error::UnexpectedSize { expected, actual: self.produced });
        }
    }
}

fn read_retrying<R: Read>(inner: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match inner.read(buf) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Encrypts a plaintext stream: reading it yields the whole encrypted object, header first.
///
/// Each 64 KiB chunk is sealed only once it is full (or the input ends), so the output never depends on
/// how the input arrives. With [`EncryptReader::parallel`] 4 MiB batches are sealed on rayon's pool.
pub struct EncryptReader<R> {
    inner: R,
    core: EncryptCore,
}

impl<R: Read> EncryptReader<R> {
    /// Encrypts `inner` with a fresh random nonce.
    ///
    /// # Errors
    /// [`Error::Random`] if the operating system's random number generator fails.
    pub fn new(cipher: &Cipher, inner: R) -> Result<EncryptReader<R>> {
        Ok(EncryptReader::with_nonce(cipher, Nonce::random()?, inner))
    }

    /// Encrypts `inner` with `nonce` (never reuse a nonce for different contents under one key).
    pub fn with_nonce(cipher: &Cipher, nonce: Nonce, inner: R) -> EncryptReader<R> {
        EncryptReader { inner, core: EncryptCore::new(cipher.clone(), nonce) }
    }

    /// Seals batches of 64 chunks on rayon's thread pool (same output).
    #[must_use]
    pub fn parallel(mut self, parallel: bool) -> EncryptReader<R> {
        self.core.set_parallel(parallel);
        self
    }

    /// The file nonce written into the header.
    pub fn nonce(&self) -> &Nonce {
        self.core.nonce()
    }

    /// Gives back the plaintext reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for EncryptReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let pending = self.core.pending();
            if !pending.is_empty() || buf.is_empty() {
                let n = pending.len().min(buf.len());
                buf[..n].copy_from_slice(&pending[..n]);
                self.core.consume(n);
                return Ok(n);
            }
            if self.core.is_eof() {
                return Ok(0);
            }
            let n = read_retrying(&mut self.inner, self.core.spare())?;
            self.core.fill(n);
        }
    }
}

/// Decrypts an encrypted object: reading it yields the plaintext.
///
/// Errors come as [`io::Error`]s that wrap an [`Error`] ([`Error::from_io`] gets it back): bad magic, too
/// short, truncated chunk, authentication failure at chunk N, unexpected size. The plaintext of every chunk
/// before a failing one is delivered first, as rclone does. The format cannot detect an object cut at a
/// chunk boundary; pass the size you expect with [`DecryptReader::expect_size`] to catch that.
pub struct DecryptReader<R> {
    inner: R,
    core: DecryptCore,
}

impl<R: Read> DecryptReader<R> {
    /// Decrypts the whole object that `inner` yields from its first byte.
    pub fn new(cipher: &Cipher, inner: R) -> DecryptReader<R> {
        DecryptReader { inner, core: DecryptCore::new(cipher.clone()) }
    }

    /// Decrypts a plaintext range: `inner` yields the encrypted object from `range.underlying_offset` on
    /// (e.g. an HTTP range GET of `range.underlying_offset..+range.underlying_len`), `nonce` is the file
    /// nonce from the object's header. The reader drops the `range.discard` bytes and stops after
    /// `range.len` bytes.
    pub fn for_range(cipher: &Cipher, nonce: Nonce, range: &ChunkRange, inner: R) -> DecryptReader<R> {
        DecryptReader { inner, core: DecryptCore::for_range(cipher.clone(), nonce, range) }
    }

    /// Fails with [`Error::UnexpectedSize`] unless exactly `plaintext_size` bytes come out.
    #[must_use]
    pub fn expect_size(mut self, plaintext_size: u64) -> DecryptReader<R> {
        self.core.set_expected(plaintext_size);
        self
    }

    /// Opens batches of 64 chunks on rayon's thread pool (same output).
    #[must_use]
    pub fn parallel(mut self, parallel: bool) -> DecryptReader<R> {
        self.core.set_parallel(parallel);
        self
    }

    /// The file nonce, once the header has been read.
    pub fn nonce(&self) -> Option<&Nonce> {
        self.core.nonce()
    }

    /// Gives back the encrypted reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let pending = self.core.pending();
            if !pending.is_empty() {
                let n = pending.len().min(buf.len());
                buf[..n].copy_from_slice(&pending[..n]);
                self.core.consume(n);
                self.core.after_consume();
                return Ok(n);
            }
            if let Some(done) = self.core.finished() {
                return done.map(|()| 0).map_err(Error::into_io);
            }
            if buf.is_empty() {
                return Ok(0);
            }
            let n = read_retrying(&mut self.inner, self.core.spare())?;
            self.core.fill(n);
        }
    }
}
