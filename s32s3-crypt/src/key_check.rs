//! A small encrypted known plaintext that tells a wrong password from a right one before any work.

use crate::cipher::Cipher;
use crate::content::Nonce;
use crate::error::{Error, Result};

/// What the key-check blob decrypts to.
const KEY_CHECK_PLAINTEXT: &[u8] = b"s32s3 key check v1: this object decrypts only with the right password";

impl Cipher {
    /// An rclone-format encrypted object (header + one chunk, random nonce) of a fixed known plaintext.
    /// Store it next to a backup; [`Cipher::verify_key_check`] then says whether a password is the right
    /// one. It reveals nothing about the key beyond what any encrypted object does.
    ///
    /// # Errors
    /// [`Error::Random`] if the operating system's random number generator fails.
    pub fn key_check_blob(&self) -> Result<Vec<u8>> {
        Ok(self.encrypt(&Nonce::random()?, KEY_CHECK_PLAINTEXT))
    }

    /// Checks a blob made by [`Cipher::key_check_blob`].
    ///
    /// # Errors
    /// [`Error::WrongPassword`] if the blob does not decrypt to the known plaintext with this key; the
    /// format errors ([`Error::BadMagic`], [`Error::TooShort`], [`Error::TruncatedChunk`]) if it is not a
    /// key-check blob at all.
    pub fn verify_key_check(&self, blob: &[u8]) -> Result<()> {
        match self.decrypt(blob) {
            Ok(plain) if plain == KEY_CHECK_PLAINTEXT => Ok(()),
            Ok(_) | Err(Error::Authentication { .. }) => Err(Error::WrongPassword),
            Err(err) => Err(err),
        }
    }
}
