//! rclone-compatible `crypt`: what s32s3 encrypts, stock rclone decrypts, and the other way round.
//!
//! The format is specified in `specs/rclone-crypt.md` (kept with the project's shared documents):
//!
//! - keys: `scrypt(password, password2 or rclone's default salt)` → data key, name key, name tweak
//!   ([`Key`], [`Cipher::new`]); rclone's config-file password [`obscure`]/[`reveal`];
//! - names: EME-AES-256 with base32/base64/base32768, `obfuscate` and `off`, directory-name encryption on
//!   or off, rclone's version suffixes ([`NameCodec`], [`NameOptions`]);
//! - contents: a 32-byte header and 64 KiB XSalsa20-Poly1305 chunks ([`Cipher::encrypt_chunks`],
//!   [`EncryptReader`], [`DecryptReader`], the tokio adapters, range reads with [`ChunkRange`], the size
//!   formulas [`encrypted_size`]/[`decrypted_size`]).
//!
//! This crate knows nothing of S3 or of the backup engine. No function panics on any input.
//!
//! ```
//! use std::io::Read;
//! use s32s3_crypt::{Cipher, DecryptReader, EncryptReader, NameOptions, encrypted_size};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cipher = Cipher::new("potato", "sausage")?; // plain passwords; scrypt runs once here
//!
//! let names = cipher.name_codec(NameOptions::default());
//! assert_eq!(names.encrypt_path("hello.txt")?, "dvhjn229ej4s3k94n1mf5une30");
//! assert_eq!(names.decrypt_path("dvhjn229ej4s3k94n1mf5une30")?, "hello.txt");
//!
//! let plaintext = vec![7u8; 100_000];
//! let mut encrypted = Vec::new();
//! EncryptReader::new(&cipher, &plaintext[..])?.read_to_end(&mut encrypted)?;
//! assert_eq!(encrypted.len() as u64, encrypted_size(100_000));
//!
//! let mut decrypted = Vec::new();
//! DecryptReader::new(&cipher, &encrypted[..]).read_to_end(&mut decrypted)?;
//! assert_eq!(decrypted, plaintext);
//! # Ok(()) }
//! ```

#[cfg(feature = "tokio")]
mod async_io;
mod cipher;
mod content;
mod error;
mod key_check;
mod name;
mod obscure;
mod salsa;
mod secretbox;
mod stream;

#[cfg(feature = "tokio")]
pub use async_io::{AsyncDecryptReader, AsyncEncryptReader};
pub use cipher::{Cipher, DEFAULT_SALT, Key};
pub use content::{
    CHUNK_SIZE, ChunkRange, ENCRYPTED_CHUNK_SIZE, HEADER_SIZE, MAGIC, NONCE_SIZE, Nonce, TAG_SIZE,
    decrypted_size, encrypted_size, header,
};
pub use error::{Error, Result};
pub use name::{MAX_SEGMENT_LEN, NameCodec, NameEncoding, NameMode, NameOptions};
pub use obscure::{obscure, obscure_with_iv, reveal};
pub use stream::{DecryptReader, EncryptReader};
