//! Key derivation and the [`Cipher`] handle that every operation hangs off.

use std::fmt;
use std::sync::Arc;

use aes::Aes256;
use aes::cipher::KeyIvInit;
use eme_mode::DynamicEme;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};
use crate::name::{NameCodec, NameOptions};

/// rclone's salt when `password2` is empty.
pub const DEFAULT_SALT: [u8; 16] =
    [0xA8, 0x0D, 0xF4, 0x3A, 0x8F, 0xBD, 0x03, 0x08, 0xA7, 0xCA, 0xB8, 0x3E, 0x58, 0x1F, 0x86, 0xB1];

/// The 80 bytes of key material of a crypt remote: data key, name key, name tweak.
///
/// Zeroized on drop; `Debug` prints no key byte.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key {
    data: [u8; 32],
    name: [u8; 32],
    tweak: [u8; 16],
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key { <redacted> }")
    }
}

impl Key {
    /// rclone's key derivation (`cipher.go` `Key`): `scrypt(password, salt, N=16384, r=8, p=1, 80 bytes)`,
    /// where the salt is `password2`'s bytes, or [`DEFAULT_SALT`] when `password2` is empty.
    ///
    /// Both arguments are the *plain* (revealed) passwords. Exactly like rclone, an empty `password`
    /// skips scrypt and gives all-zero keys ([`Key::zero`]); [`Cipher::new`] refuses that, this function
    /// reproduces it for reading such remotes. Costs 16 MiB of memory and tens of milliseconds: derive once.
    ///
    /// # Errors
    /// [`Error::KeyDerivation`] only if scrypt rejects its fixed parameters, which it does not.
    pub fn derive(password: impl AsRef<[u8]>, password2: impl AsRef<[u8]>) -> Result<Key> {
        let password = password.as_ref();
        let salt = password2.as_ref();
        let salt = if salt.is_empty() { &DEFAULT_SALT[..] } else { salt };
        let mut bytes = [0u8; 80];
        if !password.is_empty() {
            // Params::new checks `len` against 10..=64 although it only records it; 80 bytes are written
            // through the output slice (see the spec's pitfall note).
            let params =
                scrypt::Params::new(14, 8, 1, 32).map_err(|err| Error::KeyDerivation(err.to_string()))?;
            scrypt::scrypt(password, salt, &params, &mut bytes)
                .map_err(|err| Error::KeyDerivation(err.to_string()))?;
        }
        let key = Key::from_bytes(&bytes);
        bytes.zeroize();
        Ok(key)
    }

    /// Builds a key from its 80 bytes: data key (32), name key (32), name tweak (16).
    #[must_use]
    pub fn from_bytes(bytes: &[u8; 80]) -> Key {
        let mut key = Key { data: [0; 32], name: [0; 32], tweak: [0; 16] };
        key.data.copy_from_slice(&bytes[..32]);
        key.name.copy_from_slice(&bytes[32..64]);
        key.tweak.copy_from_slice(&bytes[64..]);
        key
    }

    /// The all-zero key rclone uses for an empty password (and in its unit tests).
    #[must_use]
    pub fn zero() -> Key {
        Key::from_bytes(&[0; 80])
    }

    /// The XSalsa20-Poly1305 key for file contents.
    #[must_use]
    pub fn data_key(&self) -> &[u8; 32] {
        &self.data
    }

    /// The AES-256 key for names (EME; also the obfuscation offset).
    #[must_use]
    pub fn name_key(&self) -> &[u8; 32] {
        &self.name
    }

    /// The EME tweak for names.
    #[must_use]
    pub fn name_tweak(&self) -> &[u8; 16] {
        &self.tweak
    }
}

struct Inner {
    key: Key,
    name_key_sum: i64,
    /// The name cipher with its AES key schedule already expanded; cloned per name (cheaper than
    /// expanding the key again). AES round keys are zeroized on drop (aes `zeroize` feature).
    eme: DynamicEme<Aes256>,
}

/// A crypt remote's keys, ready to encrypt names and contents. Cheap to clone (an `Arc`), `Send + Sync`.
///
/// `Debug` prints no key material.
#[derive(Clone)]
pub struct Cipher {
    inner: Arc<Inner>,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher { key: <redacted> }")
    }
}

impl Cipher {
    /// Derives the keys from the plain (not obscured) `password` and `password2` with scrypt, as rclone
    /// does (see [`Key::derive`]); `password2` may be empty (rclone's default salt is used).
    ///
    /// # Errors
    /// [`Error::EmptyPassword`] for an empty `password`: rclone would silently use all-zero keys, which
    /// protect nothing. Use `Cipher::from_key(Key::derive("", "")?)` to read such a remote on purpose.
    pub fn new(password: impl AsRef<[u8]>, password2: impl AsRef<[u8]>) -> Result<Cipher> {
        if password.as_ref().is_empty() {
            return Err(Error::EmptyPassword);
        }
        Ok(Cipher::from_key(Key::derive(password, password2)?))
    }

    /// Uses already derived keys.
    #[must_use]
    pub fn from_key(key: Key) -> Cipher {
        let name_key_sum = key.name.iter().map(|&b| i64::from(b)).sum();
        let eme = DynamicEme::<Aes256>::new((&key.name).into(), (&key.tweak).into());
        Cipher { inner: Arc::new(Inner { key, name_key_sum, eme }) }
    }

    /// The keys.
    #[must_use]
    pub fn key(&self) -> &Key {
        &self.inner.key
    }

    pub(crate) fn name_key_sum(&self) -> i64 {
        self.inner.name_key_sum
    }

    /// A fresh EME instance for one name (its methods take `&mut self`).
    pub(crate) fn eme(&self) -> DynamicEme<Aes256> {
        self.inner.eme.clone()
    }

    /// A name encoder/decoder with these keys and `options`.
    #[must_use]
    pub fn name_codec(&self, options: NameOptions) -> NameCodec {
        NameCodec::new(self.clone(), options)
    }
}

#[cfg(test)]
mod tests {
    use super::{Cipher, Key};

    #[test]
    fn debug_prints_no_key_material() {
        let key = Key::from_bytes(&[0xAB; 80]);
        let cipher = Cipher::from_key(key.clone());
        for text in [format!("{key:?}"), format!("{key:#?}"), format!("{cipher:?}"), format!("{cipher:#?}")] {
            assert!(text.contains("redacted"), "{text}");
            assert!(!text.to_lowercase().contains("ab"), "{text}");
            assert!(!text.contains("171"), "{text}");
        }
        let codec = cipher.name_codec(crate::NameOptions::default());
        let text = format!("{codec:?}");
        assert!(text.contains("redacted") && !text.contains("171") && !text.contains("ab,"), "{text}");
    }

    #[test]
    fn handles_are_cheap_to_share_across_threads() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<Cipher>();
        shareable::<crate::NameCodec>();
        shareable::<crate::Nonce>();
        shareable::<crate::Error>();
        let cipher = Cipher::from_key(Key::zero());
        let clone = cipher.clone();
        assert!(std::sync::Arc::ptr_eq(&cipher.inner, &clone.inner), "a clone shares the keys");
    }

    #[test]
    fn empty_password_is_refused_but_derivable() {
        assert!(matches!(Cipher::new("", "salt"), Err(crate::Error::EmptyPassword)));
        let key = Key::derive("", "").unwrap();
        assert_eq!(key.data_key(), &[0; 32]);
        assert_eq!(key.name_key(), &[0; 32]);
        assert_eq!(key.name_tweak(), &[0; 16]);
    }
}
