//! The content format: a 32-byte header (`RCLONE\0\0` + 24-byte nonce), then 64 KiB chunks, each sealed
//! with XSalsa20-Poly1305 under nonce + chunk index.

use std::fmt;

use rayon::prelude::*;

use crate::cipher::Cipher;
use crate::error::{Error, Result};
use crate::secretbox;

/// The first 8 bytes of every encrypted object.
pub const MAGIC: [u8; 8] = *b"RCLONE\0\0";
/// Header bytes: magic + nonce.
pub const HEADER_SIZE: usize = 32;
/// Size of the nonce in the header.
pub const NONCE_SIZE: usize = 24;
/// Plaintext bytes per chunk (every chunk but the last is full).
pub const CHUNK_SIZE: usize = 65536;
/// Poly1305 tag bytes in front of each chunk.
pub const TAG_SIZE: usize = 16;
/// Bytes of a full encrypted chunk.
pub const ENCRYPTED_CHUNK_SIZE: usize = CHUNK_SIZE + TAG_SIZE;

/// Below this many full chunks the `*_parallel` functions run on the calling thread: spreading a few
/// chunks over threads costs more than it saves.
const PARALLEL_MIN_CHUNKS: usize = 4;

/// The encrypted size of an object of `plain` bytes (rclone `EncryptedSize`).
///
/// Saturates at `u64::MAX` for sizes no object can have.
#[must_use]
pub fn encrypted_size(plain: u64) -> u64 {
    let chunks = plain / CHUNK_SIZE as u64;
    let rest = plain % CHUNK_SIZE as u64;
    let tail = if rest == 0 { 0 } else { TAG_SIZE as u64 + rest };
    chunks
        .checked_mul(ENCRYPTED_CHUNK_SIZE as u64)
        .and_then(|n| n.checked_add(HEADER_SIZE as u64 + tail))
        .unwrap_or(u64::MAX)
}

/// The plaintext size of an encrypted object of `encrypted` bytes (rclone `DecryptedSize`).
///
/// # Errors
/// [`Error::TooShort`] below 32 bytes; [`Error::TruncatedChunk`] if the last chunk would hold no data byte.
pub fn decrypted_size(encrypted: u64) -> Result<u64> {
    let body = encrypted.checked_sub(HEADER_SIZE as u64).ok_or(Error::TooShort { len: encrypted })?;
    let chunks = body / ENCRYPTED_CHUNK_SIZE as u64;
    let rest = body % ENCRYPTED_CHUNK_SIZE as u64;
    if rest == 0 {
        return Ok(chunks * CHUNK_SIZE as u64);
    }
    if rest <= TAG_SIZE as u64 {
        return Err(Error::TruncatedChunk { chunk: chunks, len: rest as usize });
    }
    Ok(chunks * CHUNK_SIZE as u64 + rest - TAG_SIZE as u64)
}

/// A 24-byte file nonce. Chunk `i` is sealed with `nonce.add(i)`.
///
/// Not secret: `Debug` shows it in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce([u8; NONCE_SIZE]);

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Nonce(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

impl Nonce {
    /// A fresh nonce from the operating system's random number generator, as rclone makes for every upload.
    ///
    /// # Errors
    /// [`Error::Random`] if the generator fails.
    pub fn random() -> Result<Nonce> {
        let mut bytes = [0u8; NONCE_SIZE];
        getrandom::fill(&mut bytes).map_err(|err| Error::Random(err.to_string()))?;
        Ok(Nonce(bytes))
    }

    /// A nonce with the given bytes (e.g. bytes 8..32 of an object's header).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; NONCE_SIZE]) -> Nonce {
        Nonce(bytes)
    }

    /// The nonce bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; NONCE_SIZE] {
        &self.0
    }

    /// This nonce plus `x`, the 24 bytes read as a little-endian integer, wrapping at 2^192 (rclone's
    /// `nonce.add`: add `x` into bytes 0..8, then carry 1 upwards from byte 8 if needed).
    #[must_use]
    pub fn add(&self, x: u64) -> Nonce {
        let mut out = self.0;
        let low = u64::from_le_bytes([out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7]]);
        let (sum, carry) = low.overflowing_add(x);
        out[..8].copy_from_slice(&sum.to_le_bytes());
        if carry {
            for byte in &mut out[8..] {
                *byte = byte.wrapping_add(1);
                if *byte != 0 {
                    break;
                }
            }
        }
        Nonce(out)
    }

    /// Reads the nonce from an object's 32-byte header, checking the magic.
    ///
    /// # Errors
    /// [`Error::TooShort`] if `header` has fewer than 32 bytes, [`Error::BadMagic`] if it does not start
    /// with `RCLONE\0\0`.
    pub fn from_header(header: &[u8]) -> Result<Nonce> {
        if header.len() < HEADER_SIZE {
            return Err(Error::TooShort { len: header.len() as u64 });
        }
        if header[..8] != MAGIC {
            return Err(Error::BadMagic);
        }
        let mut bytes = [0u8; NONCE_SIZE];
        bytes.copy_from_slice(&header[8..HEADER_SIZE]);
        Ok(Nonce(bytes))
    }
}

/// The 32-byte header of an object encrypted with `nonce`.
#[must_use]
pub fn header(nonce: &Nonce) -> [u8; HEADER_SIZE] {
    let mut out = [0u8; HEADER_SIZE];
    out[..8].copy_from_slice(&MAGIC);
    out[8..].copy_from_slice(nonce.as_bytes());
    out
}

/// Where a plaintext range lives in the encrypted object (rclone `calculateUnderlying`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRange {
    /// Index of the chunk that holds the first wanted byte.
    pub first_chunk: u64,
    /// Plaintext bytes to drop from the start of that chunk.
    pub discard: usize,
    /// Offset of that chunk in the encrypted object (header included).
    pub underlying_offset: u64,
    /// Encrypted bytes to read from `underlying_offset` to cover the range; `None` = to the end. The
    /// object may end sooner (a short last chunk); readers handle that.
    pub underlying_len: Option<u64>,
    /// Plaintext bytes wanted (`None` = to the end).
    pub len: Option<u64>,
}

impl ChunkRange {
    /// Maps plaintext `offset` and optional `len` to whole chunks of the encrypted object.
    #[must_use]
    pub fn new(offset: u64, len: Option<u64>) -> ChunkRange {
        let first_chunk = offset / CHUNK_SIZE as u64;
        let discard = (offset % CHUNK_SIZE as u64) as usize;
        let underlying_offset =
            (first_chunk.saturating_mul(ENCRYPTED_CHUNK_SIZE as u64)).saturating_add(HEADER_SIZE as u64);
        let underlying_len = len.map(|len| {
            if len == 0 {
                0
            } else {
                let chunks = (discard as u64).saturating_add(len).div_ceil(CHUNK_SIZE as u64);
                chunks.saturating_mul(ENCRYPTED_CHUNK_SIZE as u64)
            }
        });
        ChunkRange { first_chunk, discard, underlying_offset, underlying_len, len }
    }
}

impl Cipher {
    /// The 32-byte header of an object encrypted with `nonce` (same as [`header`]).
    #[must_use]
    pub fn header(&self, nonce: &Nonce) -> [u8; HEADER_SIZE] {
        header(nonce)
    }

    fn seal_chunk(&self, nonce: &Nonce, plain: &[u8], out: &mut [u8]) {
        let (tag, body) = out.split_at_mut(TAG_SIZE);
        body.copy_from_slice(plain);
        tag.copy_from_slice(&secretbox::seal(self.key().data_key(), nonce.as_bytes(), body));
    }

    fn open_chunk(&self, nonce: &Nonce, chunk: u64, sealed: &[u8], out: &mut [u8]) -> Result<()> {
        if sealed.len() <= TAG_SIZE {
            return Err(Error::TruncatedChunk { chunk, len: sealed.len() });
        }
        let (tag, body) = sealed.split_at(TAG_SIZE);
        let tag: &[u8; TAG_SIZE] = tag.try_into().map_err(|_| Error::TruncatedChunk { chunk, len: 0 })?;
        out.copy_from_slice(body);
        if secretbox::open(self.key().data_key(), nonce.as_bytes(), tag, out) {
            Ok(())
        } else {
            Err(Error::Authentication { chunk })
        }
    }

    /// Seals chunk `chunk` of the object whose file nonce is `nonce` in place: `sealed` is the chunk's
    /// place in the encrypted object, [`TAG_SIZE`] bytes of room for the tag followed by the plaintext
    /// (1 to [`CHUNK_SIZE`] bytes); afterwards it holds tag + ciphertext, exactly the stored chunk. For
    /// streams that build each stored chunk in one buffer: no second copy of the data.
    ///
    /// # Errors
    /// [`Error::TruncatedChunk`] when `sealed` holds no plaintext byte or more than one chunk.
    pub fn seal_chunk_in_place(&self, nonce: &Nonce, chunk: u64, sealed: &mut [u8]) -> Result<()> {
        if sealed.len() <= TAG_SIZE || sealed.len() > ENCRYPTED_CHUNK_SIZE {
            return Err(Error::TruncatedChunk { chunk, len: sealed.len() });
        }
        let (tag, body) = sealed.split_at_mut(TAG_SIZE);
        tag.copy_from_slice(&secretbox::seal(self.key().data_key(), nonce.add(chunk).as_bytes(), body));
        Ok(())
    }

    /// Opens stored chunk `chunk` (tag + ciphertext, as read) of the object whose file nonce is `nonce` in
    /// place: afterwards `sealed[TAG_SIZE..]` holds the plaintext. Nothing is decrypted unless the tag is
    /// authentic, so on error `sealed` still holds what was read.
    ///
    /// # Errors
    /// [`Error::TruncatedChunk`] when `sealed` has no data byte or is longer than a chunk,
    /// [`Error::Authentication`] when the tag does not authenticate it (wrong key, damaged data, or a chunk
    /// of another object or place).
    pub fn open_chunk_in_place(&self, nonce: &Nonce, chunk: u64, sealed: &mut [u8]) -> Result<()> {
        if sealed.len() <= TAG_SIZE || sealed.len() > ENCRYPTED_CHUNK_SIZE {
            return Err(Error::TruncatedChunk { chunk, len: sealed.len() });
        }
        let (tag, body) = sealed.split_at_mut(TAG_SIZE);
        let tag: &[u8; TAG_SIZE] = (&*tag).try_into().map_err(|_| Error::TruncatedChunk { chunk, len: 0 })?;
        if secretbox::open(self.key().data_key(), nonce.add(chunk).as_bytes(), tag, body) {
            Ok(())
        } else {
            Err(Error::Authentication { chunk })
        }
    }

    /// Encrypts `plaintext` as chunks `first_chunk, first_chunk + 1, …` of the object whose file nonce is
    /// `nonce`, appending tag + ciphertext of each to `out` (no header).
    ///
    /// `plaintext` must be whole 64 KiB chunks except possibly the last. So an object can be cut at chunk
    /// boundaries, each part encrypted on its own (in any order, on any thread) with its first chunk
    /// index, and the parts concatenated after [`header`]: the result equals one sequential encryption.
    pub fn encrypt_chunks(&self, nonce: &Nonce, first_chunk: u64, plaintext: &[u8], out: &mut Vec<u8>) {
        out.reserve(encrypted_len(plaintext.len()));
        for (i, plain) in plaintext.chunks(CHUNK_SIZE).enumerate() {
            // Appended, then sealed in place: one copy of the data, and no zeroing of room first.
            let start = out.len();
            out.extend_from_slice(&[0; TAG_SIZE]);
            out.extend_from_slice(plain);
            let (tag, body) = out[start..].split_at_mut(TAG_SIZE);
            let nonce = nonce.add(first_chunk.wrapping_add(i as u64));
            tag.copy_from_slice(&secretbox::seal(self.key().data_key(), nonce.as_bytes(), body));
        }
    }

    /// [`Cipher::encrypt_chunks`] spread over rayon's thread pool; same output.
    pub fn encrypt_chunks_parallel(
        &self,
        nonce: &Nonce,
        first_chunk: u64,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) {
        if plaintext.len() < PARALLEL_MIN_CHUNKS * CHUNK_SIZE {
            return self.encrypt_chunks(nonce, first_chunk, plaintext, out);
        }
        let start = out.len();
        out.resize(start + encrypted_len(plaintext.len()), 0);
        plaintext
            .par_chunks(CHUNK_SIZE)
            .zip(out[start..].par_chunks_mut(ENCRYPTED_CHUNK_SIZE))
            .enumerate()
            .for_each(|(i, (plain, sealed))| {
                self.seal_chunk(&nonce.add(first_chunk.wrapping_add(i as u64)), plain, sealed);
            });
    }

    /// Decrypts chunks `first_chunk, …` of the object whose file nonce is `nonce`, appending the plaintext
    /// to `out`. `ciphertext` must be whole 65552-byte chunks except possibly the last (no header).
    ///
    /// # Errors
    /// [`Error::TruncatedChunk`] if the last chunk has no data byte, [`Error::Authentication`] for the
    /// first chunk that fails to authenticate (wrong key or corrupted data). On error, `out` holds the
    /// plaintext of every chunk before the failing one, as a streaming reader would have delivered it.
    pub fn decrypt_chunks(
        &self,
        nonce: &Nonce,
        first_chunk: u64,
        ciphertext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        out.reserve(decrypted_len(ciphertext.len()));
        for (i, sealed) in ciphertext.chunks(ENCRYPTED_CHUNK_SIZE).enumerate() {
            let chunk = first_chunk.wrapping_add(i as u64);
            let Some((tag, body)) =
                sealed.split_first_chunk::<TAG_SIZE>().filter(|(_, body)| !body.is_empty())
            else {
                return Err(Error::TruncatedChunk { chunk, len: sealed.len() });
            };
            // Appended, then opened in place: one copy of the data, and no zeroing of room first.
            let start = out.len();
            out.extend_from_slice(body);
            if !secretbox::open(self.key().data_key(), nonce.add(chunk).as_bytes(), tag, &mut out[start..]) {
                out.truncate(start);
                return Err(Error::Authentication { chunk });
            }
        }
        Ok(())
    }

    /// [`Cipher::decrypt_chunks`] spread over rayon's thread pool; same output and errors.
    ///
    /// # Errors
    /// As [`Cipher::decrypt_chunks`].
    pub fn decrypt_chunks_parallel(
        &self,
        nonce: &Nonce,
        first_chunk: u64,
        ciphertext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        if ciphertext.len() < PARALLEL_MIN_CHUNKS * ENCRYPTED_CHUNK_SIZE {
            return self.decrypt_chunks(nonce, first_chunk, ciphertext, out);
        }
        let start = out.len();
        out.resize(start + decrypted_len(ciphertext.len()), 0);
        let sealed_chunks = ciphertext.par_chunks(ENCRYPTED_CHUNK_SIZE);
        let failed = sealed_chunks
            .zip(out[start..].par_chunks_mut(CHUNK_SIZE))
            .enumerate()
            .filter_map(|(i, (sealed, plain))| {
                let chunk = first_chunk.wrapping_add(i as u64);
                self.open_chunk(&nonce.add(chunk), chunk, sealed, plain).err().map(|err| (i, err))
            })
            .min_by_key(|(i, _)| *i);
        let tail = ciphertext.len() % ENCRYPTED_CHUNK_SIZE;
        let truncated = (tail > 0 && tail <= TAG_SIZE).then(|| {
            let i = ciphertext.len() / ENCRYPTED_CHUNK_SIZE;
            (i, Error::TruncatedChunk { chunk: first_chunk.wrapping_add(i as u64), len: tail })
        });
        let first_error = match (failed, truncated) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        if let Some((i, err)) = first_error {
            out.truncate(start + i * CHUNK_SIZE);
            return Err(err);
        }
        Ok(())
    }

    /// Encrypts a whole object (header + chunks) with `nonce`.
    #[must_use]
    pub fn encrypt(&self, nonce: &Nonce, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_SIZE + encrypted_len(plaintext.len()));
        out.extend_from_slice(&header(nonce));
        self.encrypt_chunks(nonce, 0, plaintext, &mut out);
        out
    }

    /// Decrypts a whole object (header + chunks).
    ///
    /// # Errors
    /// [`Error::TooShort`], [`Error::BadMagic`], [`Error::TruncatedChunk`], [`Error::Authentication`].
    pub fn decrypt(&self, object: &[u8]) -> Result<Vec<u8>> {
        let nonce = Nonce::from_header(object)?;
        let mut out = Vec::with_capacity(decrypted_len(object.len() - HEADER_SIZE));
        self.decrypt_chunks(&nonce, 0, &object[HEADER_SIZE..], &mut out)?;
        Ok(out)
    }

    /// Decrypts plaintext bytes `offset..offset + len` (`len = None`: to the end) of a whole object held
    /// in memory, reading only the chunks that hold them. A range past the end gives fewer bytes, as a
    /// file read would.
    ///
    /// # Errors
    /// As [`Cipher::decrypt`], for the chunks read.
    pub fn decrypt_range(&self, object: &[u8], offset: u64, len: Option<u64>) -> Result<Vec<u8>> {
        let nonce = Nonce::from_header(object)?;
        let range = ChunkRange::new(offset, len);
        let body = &object[HEADER_SIZE..];
        let start = usize::try_from(range.underlying_offset - HEADER_SIZE as u64).unwrap_or(usize::MAX);
        let Some(body) = body.get(start..) else { return Ok(Vec::new()) };
        let body = match range.underlying_len.and_then(|n| usize::try_from(n).ok()) {
            Some(n) if n < body.len() => &body[..n],
            _ => body,
        };
        let mut out = Vec::new();
        self.decrypt_chunks(&nonce, range.first_chunk, body, &mut out)?;
        let skip = range.discard.min(out.len());
        out.drain(..skip);
        if let Some(len) = len.and_then(|n| usize::try_from(n).ok()) {
            out.truncate(len);
        }
        Ok(out)
    }
}

/// Encrypted length of `plain` bytes without the header.
pub(crate) fn encrypted_len(plain: usize) -> usize {
    plain + plain.div_ceil(CHUNK_SIZE) * TAG_SIZE
}

/// Plaintext length of `sealed` chunk bytes without the header (a chunk of ≤ 16 bytes counts as 0).
pub(crate) fn decrypted_len(sealed: usize) -> usize {
    let rest = sealed % ENCRYPTED_CHUNK_SIZE;
    sealed / ENCRYPTED_CHUNK_SIZE * CHUNK_SIZE + rest.saturating_sub(TAG_SIZE)
}

#[cfg(test)]
mod tests {
    use super::{
        CHUNK_SIZE, ChunkRange, ENCRYPTED_CHUNK_SIZE, Nonce, TAG_SIZE, decrypted_size, encrypted_size,
    };
    use crate::{Cipher, Error};

    #[test]
    fn chunks_sealed_and_opened_in_place_are_the_stored_chunks() {
        let cipher = Cipher::new("in place", "salt").unwrap();
        let nonce = Nonce::from_bytes([7; 24]);
        let plain: Vec<u8> = (0..CHUNK_SIZE * 2 + 100).map(|i| (i % 251) as u8).collect();
        let mut want = Vec::new();
        cipher.encrypt_chunks(&nonce, 3, &plain, &mut want);
        let mut got = Vec::new();
        for (i, piece) in plain.chunks(CHUNK_SIZE).enumerate() {
            let mut sealed = vec![0; TAG_SIZE];
            sealed.extend_from_slice(piece);
            cipher.seal_chunk_in_place(&nonce, 3 + i as u64, &mut sealed).unwrap();
            got.extend_from_slice(&sealed);
        }
        assert_eq!(got, want);
        for (i, stored) in want.chunks(ENCRYPTED_CHUNK_SIZE).enumerate() {
            let mut sealed = stored.to_vec();
            cipher.open_chunk_in_place(&nonce, 3 + i as u64, &mut sealed).unwrap();
            assert_eq!(
                &sealed[TAG_SIZE..],
                &plain[i * CHUNK_SIZE..(i * CHUNK_SIZE + sealed.len() - TAG_SIZE)]
            );
        }
        // A chunk opened at another place, or damaged, stays as read.
        let mut moved = want[..ENCRYPTED_CHUNK_SIZE].to_vec();
        assert!(matches!(
            cipher.open_chunk_in_place(&nonce, 4, &mut moved),
            Err(Error::Authentication { chunk: 4 })
        ));
        assert_eq!(moved, want[..ENCRYPTED_CHUNK_SIZE]);
        for len in [0, TAG_SIZE, ENCRYPTED_CHUNK_SIZE + 1] {
            let mut odd = vec![0; len];
            assert!(matches!(
                cipher.open_chunk_in_place(&nonce, 0, &mut odd),
                Err(Error::TruncatedChunk { .. })
            ));
            assert!(matches!(
                cipher.seal_chunk_in_place(&nonce, 0, &mut odd),
                Err(Error::TruncatedChunk { .. })
            ));
        }
    }

    #[test]
    fn nonce_add_carries_like_rclone() {
        let n = Nonce::from_bytes([0xff; 24]);
        assert_eq!(n.add(1).as_bytes(), &[0; 24]);
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        b[8] = 0x41;
        b[23] = 0x99;
        let n = Nonce::from_bytes(b);
        assert_eq!(n.add(1).as_bytes()[8], 0x41);
        let two = n.add(2);
        assert_eq!(&two.as_bytes()[..9], &[0, 0, 0, 0, 0, 0, 0, 0, 0x42]);
        assert_eq!(two.as_bytes()[23], 0x99);
        assert_eq!(n.add(u64::MAX).add(3), n.add(1).add(u64::MAX).add(2));
    }

    #[test]
    fn sizes_edge_cases() {
        assert_eq!(encrypted_size(u64::MAX), u64::MAX);
        assert!(matches!(decrypted_size(31), Err(Error::TooShort { len: 31 })));
        assert!(matches!(decrypted_size(48), Err(Error::TruncatedChunk { chunk: 0, len: 16 })));
        assert!(matches!(decrypted_size(32 + 65552 + 3), Err(Error::TruncatedChunk { chunk: 1, len: 3 })));
        assert_eq!(decrypted_size(u64::MAX).unwrap(), encrypted_size_inverse(u64::MAX));
    }

    fn encrypted_size_inverse(m: u64) -> u64 {
        let body = m - 32;
        body / 65552 * 65536 + (body % 65552).saturating_sub(16)
    }

    #[test]
    fn chunk_range_maps_like_rclone() {
        let r = ChunkRange::new(0, None);
        assert_eq!((r.first_chunk, r.discard, r.underlying_offset, r.underlying_len), (0, 0, 32, None));
        let r = ChunkRange::new(65536 + 10, Some(65536));
        assert_eq!((r.first_chunk, r.discard, r.underlying_offset), (1, 10, 32 + 65552));
        assert_eq!(r.underlying_len, Some(2 * 65552));
        assert_eq!(ChunkRange::new(5, Some(0)).underlying_len, Some(0));
        assert_eq!(ChunkRange::new(u64::MAX, Some(u64::MAX)).first_chunk, u64::MAX / 65536);
    }
}
