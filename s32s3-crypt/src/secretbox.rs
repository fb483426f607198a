//! `NaCl` `crypto_secretbox` (XSalsa20-Poly1305) on one chunk, in place: tag || ciphertext.

use xsalsa20poly1305::aead::AeadInPlace;
use xsalsa20poly1305::{KeyInit, XSalsa20Poly1305};

/// Encrypts `data` in place and returns the Poly1305 tag.
pub(crate) fn seal(key: &[u8; 32], nonce: &[u8; 24], data: &mut [u8]) -> [u8; 16] {
    let aead = XSalsa20Poly1305::new(key.into());
    match aead.encrypt_in_place_detached(nonce.into(), &[], data) {
        Ok(tag) => tag.into(),
        // Only fails for messages longer than the Salsa20 keystream (256 GiB); chunks are 64 KiB.
        Err(_) => [0; 16],
    }
}

/// Verifies `tag` and decrypts `data` in place; `false` (and `data` unspecified) if the tag is wrong.
pub(crate) fn open(key: &[u8; 32], nonce: &[u8; 24], tag: &[u8; 16], data: &mut [u8]) -> bool {
    let aead = XSalsa20Poly1305::new(key.into());
    aead.decrypt_in_place_detached(nonce.into(), &[], data, tag.into()).is_ok()
}
