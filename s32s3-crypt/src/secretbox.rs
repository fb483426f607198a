//! `NaCl` `crypto_secretbox` (XSalsa20-Poly1305) on one chunk, in place: tag || ciphertext.
//!
//! The keystream comes from our vectorised [`crate::salsa`]; Poly1305 from the `poly1305` crate (which
//! picks its AVX2 backend at run time). `xsalsa20poly1305` stays the reference in the tests.

use poly1305::Poly1305;
use poly1305::universal_hash::{KeyInit, UniversalHash};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::salsa;

/// Poly1305 of `data` as `NaCl` computes it (the last partial block padded with a 1 byte, not zeros).
fn mac(poly_key: &mut [u8; 32], data: &[u8]) -> [u8; 16] {
    let mut poly = Poly1305::new(&(*poly_key).into());
    poly_key.zeroize();
    // Whole blocks through `update_padded` (no padding happens: the length is a multiple of 16), which
    // feeds the AVX2 backend several blocks at a time; `compute_unpadded` alone goes block by block and is
    // about a third slower.
    let whole = data.len() / 16 * 16;
    poly.update_padded(&data[..whole]);
    poly.compute_unpadded(&data[whole..]).into()
}

/// Encrypts `data` in place and returns the Poly1305 tag.
pub(crate) fn seal(key: &[u8; 32], nonce: &[u8; 24], data: &mut [u8]) -> [u8; 16] {
    let mut poly_key = salsa::secretbox_xor(key, nonce, data);
    mac(&mut poly_key, data)
}

/// Verifies `tag` and decrypts `data` in place; `false` (and `data` untouched) if the tag is wrong.
pub(crate) fn open(key: &[u8; 32], nonce: &[u8; 24], tag: &[u8; 16], data: &mut [u8]) -> bool {
    let mut poly_key = salsa::poly_key(key, nonce);
    let expected = mac(&mut poly_key, data);
    if !bool::from(expected.ct_eq(tag)) {
        return false;
    }
    let mut poly_key = salsa::secretbox_xor(key, nonce, data);
    poly_key.zeroize();
    true
}
