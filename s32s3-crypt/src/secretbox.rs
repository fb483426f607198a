//! `NaCl` `crypto_secretbox` (XSalsa20-Poly1305) on one chunk, in place: tag || ciphertext.
//!
//! The keystream comes from our vectorised [`crate::salsa`]; Poly1305 from the `poly1305` crate (which
//! picks its AVX2 backend at run time). `xsalsa20poly1305` stays the reference in the tests.

use poly1305::Poly1305;
use poly1305::universal_hash::KeyInit;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::salsa::XSalsa20;

/// Encrypts `data` in place and returns the Poly1305 tag.
pub(crate) fn seal(key: &[u8; 32], nonce: &[u8; 24], data: &mut [u8]) -> [u8; 16] {
    let mut poly_key = XSalsa20::new(key, nonce).secretbox_xor(data);
    let tag = Poly1305::new(&poly_key.into()).compute_unpadded(data);
    poly_key.zeroize();
    tag.into()
}

/// Verifies `tag` and decrypts `data` in place; `false` (and `data` untouched) if the tag is wrong.
pub(crate) fn open(key: &[u8; 32], nonce: &[u8; 24], tag: &[u8; 16], data: &mut [u8]) -> bool {
    let stream = XSalsa20::new(key, nonce);
    let mut poly_key = stream.poly_key();
    let expected = Poly1305::new(&poly_key.into()).compute_unpadded(data);
    poly_key.zeroize();
    if !bool::from(expected.as_slice().ct_eq(tag)) {
        return false;
    }
    stream.secretbox_xor(data);
    true
}
