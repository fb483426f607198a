//! `tokio::io::AsyncRead` adapters: the same state machines as [`crate::EncryptReader`] and
//! [`crate::DecryptReader`], driven by `poll_read`.
//!
//! Each poll seals or opens at most one 64 KiB chunk (tens of microseconds of CPU) unless `parallel` is
//! on; for many large objects at once, run the chunk functions on a blocking pool instead.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

use crate::cipher::Cipher;
use crate::content::{ChunkRange, Nonce};
use crate::error::{Error, Result};
use crate::stream::{DecryptCore, EncryptCore};

/// Async [`crate::EncryptReader`]: reading yields header + encrypted chunks of what `inner` yields.
pub struct AsyncEncryptReader<R> {
    inner: R,
    core: EncryptCore,
}

impl<R: AsyncRead + Unpin> AsyncEncryptReader<R> {
    /// Encrypts `inner` with a fresh random nonce.
    ///
    /// # Errors
    /// [`Error::Random`] if the operating system's random number generator fails.
    pub fn new(cipher: &Cipher, inner: R) -> Result<AsyncEncryptReader<R>> {
        Ok(AsyncEncryptReader::with_nonce(cipher, Nonce::random()?, inner))
    }

    /// Encrypts `inner` with `nonce`.
    pub fn with_nonce(cipher: &Cipher, nonce: Nonce, inner: R) -> AsyncEncryptReader<R> {
        AsyncEncryptReader { inner, core: EncryptCore::new(cipher.clone(), nonce) }
    }

    /// Seals batches of 64 chunks on rayon's pool (blocks the polling thread while it does).
    #[must_use]
    pub fn parallel(mut self, parallel: bool) -> AsyncEncryptReader<R> {
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

impl<R: AsyncRead + Unpin> AsyncRead for AsyncEncryptReader<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let pending = this.core.pending();
            if !pending.is_empty() || buf.remaining() == 0 {
                let n = pending.len().min(buf.remaining());
                buf.put_slice(&pending[..n]);
                this.core.consume(n);
                return Poll::Ready(Ok(()));
            }
            if this.core.is_eof() {
                return Poll::Ready(Ok(()));
            }
            let mut spare = ReadBuf::new(this.core.spare());
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut spare))?;
            let n = spare.filled().len();
            this.core.fill(n);
        }
    }
}

/// Async [`crate::DecryptReader`]: reading yields the plaintext of the encrypted object `inner` yields.
pub struct AsyncDecryptReader<R> {
    inner: R,
    core: DecryptCore,
}

impl<R: AsyncRead + Unpin> AsyncDecryptReader<R> {
    /// Decrypts the whole object that `inner` yields from its first byte.
    pub fn new(cipher: &Cipher, inner: R) -> AsyncDecryptReader<R> {
        AsyncDecryptReader { inner, core: DecryptCore::new(cipher.clone()) }
    }

    /// Decrypts a plaintext range; see [`crate::DecryptReader::for_range`].
    pub fn for_range(cipher: &Cipher, nonce: Nonce, range: &ChunkRange, inner: R) -> AsyncDecryptReader<R> {
        AsyncDecryptReader { inner, core: DecryptCore::for_range(cipher.clone(), nonce, range) }
    }

    /// Fails with [`Error::UnexpectedSize`] unless exactly `plaintext_size` bytes come out.
    #[must_use]
    pub fn expect_size(mut self, plaintext_size: u64) -> AsyncDecryptReader<R> {
        self.core.set_expected(plaintext_size);
        self
    }

    /// Opens batches of 64 chunks on rayon's pool (blocks the polling thread while it does).
    #[must_use]
    pub fn parallel(mut self, parallel: bool) -> AsyncDecryptReader<R> {
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

impl<R: AsyncRead + Unpin> AsyncRead for AsyncDecryptReader<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let pending = this.core.pending();
            if !pending.is_empty() {
                let n = pending.len().min(buf.remaining());
                buf.put_slice(&pending[..n]);
                this.core.consume(n);
                this.core.after_consume();
                return Poll::Ready(Ok(()));
            }
            if let Some(done) = this.core.finished() {
                return Poll::Ready(done.map_err(Error::into_io));
            }
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let mut spare = ReadBuf::new(this.core.spare());
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut spare))?;
            let n = spare.filled().len();
            this.core.fill(n);
        }
    }
}
