//! rclone's `obscure`/`reveal` for passwords in `rclone.conf` (`fs/config/obscure`).
//!
//! Not encryption: the AES key is public. It only keeps a password from being read over a shoulder.

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher};

use crate::error::{Error, Result};
use crate::name::base64url;

/// rclone's fixed obscuring key.
const OBSCURE_KEY: [u8; 32] = [
    0x9c, 0x93, 0x5b, 0x48, 0x73, 0x0a, 0x55, 0x4d, 0x6b, 0xfd, 0x7c, 0x63, 0xc8, 0x86, 0xa9, 0x2b, 0xd3,
    0x90, 0x19, 0x8e, 0xb8, 0x12, 0x8a, 0xfb, 0xf4, 0xde, 0x16, 0x2b, 0x8b, 0x95, 0xf6, 0x38,
];

/// Go's CTR mode: the whole 16-byte IV is a big-endian counter.
type Ctr = ctr::Ctr128BE<Aes256>;

/// Obscures `plain` with a random IV, as `rclone obscure` does.
///
/// # Errors
/// [`Error::Random`] if the operating system's random number generator fails.
pub fn obscure(plain: &str) -> Result<String> {
    let mut iv = [0u8; 16];
    getrandom::fill(&mut iv).map_err(|err| Error::Random(err.to_string()))?;
    Ok(obscure_with_iv(plain, &iv))
}

/// Obscures `plain` with the given IV (deterministic; for tests and vectors).
#[must_use]
pub fn obscure_with_iv(plain: &str, iv: &[u8; 16]) -> String {
    let mut buf = Vec::with_capacity(16 + plain.len());
    buf.extend_from_slice(iv);
    buf.extend_from_slice(plain.as_bytes());
    Ctr::new(&OBSCURE_KEY.into(), iv.into()).apply_keystream(&mut buf[16..]);
    base64url().encode(&buf)
}

/// Reveals a password obscured by rclone (or [`obscure`]).
///
/// # Errors
/// [`Error::RevealBase64`] if `obscured` is not base64url without padding, [`Error::RevealTooShort`] if it
/// holds fewer than 16 bytes, [`Error::RevealNotUtf8`] if the result is not text. None of them include the
/// input.
pub fn reveal(obscured: &str) -> Result<String> {
    let mut buf = base64url().decode(obscured.as_bytes()).map_err(|_| Error::RevealBase64)?;
    if buf.len() < 16 {
        return Err(Error::RevealTooShort);
    }
    let (iv, data) = buf.split_at_mut(16);
    let iv: &[u8; 16] = &(*iv).try_into().map_err(|_| Error::RevealTooShort)?;
    Ctr::new(&OBSCURE_KEY.into(), iv.into()).apply_keystream(data);
    let plain = data.to_vec();
    zeroize::Zeroize::zeroize(&mut buf);
    String::from_utf8(plain).map_err(|err| {
        let mut bytes = err.into_bytes();
        zeroize::Zeroize::zeroize(&mut bytes);
        Error::RevealNotUtf8
    })
}

#[cfg(test)]
mod tests {
    use super::{obscure, obscure_with_iv, reveal};
    use crate::Error;

    #[test]
    fn rclone_unit_test_vectors() {
        assert_eq!(obscure_with_iv("", b"aaaaaaaaaaaaaaaa"), "YWFhYWFhYWFhYWFhYWFhYQ");
        assert_eq!(obscure_with_iv("potato", b"aaaaaaaaaaaaaaaa"), "YWFhYWFhYWFhYWFhYWFhYXMaGgIlEQ");
        assert_eq!(obscure_with_iv("potato", b"bbbbbbbbbbbbbbbb"), "YmJiYmJiYmJiYmJiYmJiYp3gcEWbAw");
    }

    #[test]
    fn random_iv_round_trips() {
        let a = obscure("potato").unwrap();
        let b = obscure("potato").unwrap();
        assert_ne!(a, b);
        assert_eq!(reveal(&a).unwrap(), "potato");
        assert_eq!(reveal(&b).unwrap(), "potato");
    }

    #[test]
    fn errors() {
        assert!(matches!(reveal("not base64!"), Err(Error::RevealBase64)));
        assert!(matches!(reveal("YWFh"), Err(Error::RevealTooShort)));
        // 16 bytes of IV then a byte that reveals to 0xff: not UTF-8.
        let bad = {
            let mut v = vec![0u8; 17];
            let ks = obscure_with_iv("\u{0}", &[0; 16]);
            let raw = crate::name::base64url().decode(ks.as_bytes()).unwrap();
            v[16] = raw[16] ^ 0xff;
            crate::name::base64url().encode(&v)
        };
        assert!(matches!(reveal(&bad), Err(Error::RevealNotUtf8)));
    }
}
