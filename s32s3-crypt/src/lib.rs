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
//! # Where we differ from rclone on purpose
//!
//! - [`Cipher::new`] refuses an empty password (rclone silently uses all-zero keys);
//!   `Cipher::from_key(Key::derive("", "")?)` reproduces rclone when reading such a remote is wanted.
//! - Directory paths are encrypted segment by segment without version-suffix handling
//!   ([`NameCodec::encrypt_dir_path`]), the form rclone uses for a file's parent directories.
//! - Names are Rust strings: a name that decrypts to invalid UTF-8 is an error, not raw bytes.
//! - Name decoding does not skip CR/LF inside encrypted names (Go's decoders do); everything else about
//!   decoding follows Go, including ignored trailing bits in base32/base64 and base32768's leniency.
//! - A too-long name segment (2048 bytes or more) is [`Error::NameTooLong`]; rclone panics.
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
