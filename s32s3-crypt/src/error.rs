//! The one error type of this crate.

use std::io;

/// What went wrong in key derivation, `reveal`, name coding or content encryption.
///
/// Every variant says what is wrong in one line and never contains key material, passwords or plaintext.
/// Content errors name the chunk (0-based, counting 64 KiB plaintext chunks from the start of the file) so
/// an operator can tell a truncated upload from a flipped bit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `reveal` was given something that is not base64url (rclone: "base64 decode failed when revealing
    /// password - is it obscured?").
    #[error("base64 decode failed when revealing password - is it obscured?")]
    RevealBase64,
    /// `reveal` was given fewer than 16 bytes, the IV alone.
    #[error("input too short when revealing password - is it obscured?")]
    RevealTooShort,
    /// The revealed password is not UTF-8 (rclone itself accepts any bytes; such a value cannot have been
    /// typed into rclone's config and cannot be passed on as text).
    #[error("revealed password is not valid UTF-8 - is it obscured?")]
    RevealNotUtf8,
    /// [`crate::Cipher::new`] was given an empty password (rclone would use all-zero keys).
    #[error("the crypt password is empty (rclone would use all-zero keys, which protect nothing)")]
    EmptyPassword,
    /// scrypt refused its parameters (cannot happen with rclone's fixed parameters; kept so the KDF never
    /// panics).
    #[error("key derivation failed: {0}")]
    KeyDerivation(String),
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),

    /// An encrypted object is shorter than its 32-byte header (rclone: "file is too short to be encrypted").
    #[error("file is too short to be encrypted: {len} bytes, the header alone is 32")]
    TooShort {
        /// Bytes actually present.
        len: u64,
    },
    /// The first 8 bytes are not `RCLONE\0\0` (rclone: "not an encrypted file - bad magic string").
    #[error("not an encrypted file - bad magic string")]
    BadMagic,
    /// A chunk holds its 16-byte tag (or part of it) but no data byte (rclone: "file has truncated block
    /// header"): the object was cut off.
    #[error("file has truncated block header: chunk {chunk} is {len} bytes, needs at least 17")]
    TruncatedChunk {
        /// Index of the chunk (0 = the first after the header).
        chunk: u64,
        /// Bytes of the chunk that are present.
        len: usize,
    },
    /// Poly1305 rejected a chunk. rclone's format cannot tell a wrong password from corrupted data.
    #[error("failed to authenticate chunk {chunk}: wrong password or corrupted data")]
    Authentication {
        /// Index of the chunk that failed.
        chunk: u64,
    },
    /// The object's size does not match the size it must have: a truncated final chunk, or fewer/more bytes
    /// than a range read or the caller's expected size demanded.
    #[error("unexpected size: expected {expected} bytes, got {actual}")]
    UnexpectedSize {
        /// What the format or the caller required.
        expected: u64,
        /// What was found.
        actual: u64,
    },
    /// The key-check blob did not decrypt with this key.
    #[error("wrong password: the key check does not decrypt with this password and password2")]
    WrongPassword,

    /// A name segment is too long for rclone's name encryption (EME handles at most 128 blocks of 16 bytes,
    /// so a plaintext segment may have at most 2047 bytes). rclone itself panics here.
    #[error("name segment too long to encrypt: {len} bytes, at most 2047 are possible")]
    NameTooLong {
        /// Length of the segment in bytes.
        len: usize,
    },
    /// An encrypted name segment is not valid in the configured encoding.
    #[error("not an encrypted name: bad {encoding} encoding")]
    NameEncoding {
        /// `base32`, `base64` or `base32768`.
        encoding: &'static str,
    },
    /// A decoded name is not a whole number of 16-byte blocks (rclone: "not a multiple of blocksize").
    #[error("not an encrypted name: {len} bytes after decoding, not a multiple of 16")]
    NameNotMultipleOfBlockSize {
        /// Decoded length in bytes.
        len: usize,
    },
    /// A decoded name is empty (rclone: "too short after base32 decode").
    #[error("not an encrypted name: too short after decoding")]
    NameTooShortAfterDecode,
    /// A decoded name is longer than EME's 2048 bytes (rclone: "too long after base32 decode").
    #[error("not an encrypted name: {len} bytes after decoding, at most 2048 are possible")]
    NameTooLongAfterDecode {
        /// Decoded length in bytes.
        len: usize,
    },
    /// The PKCS#7 padding of a decrypted name is wrong: a different password, or not an rclone name.
    #[error("not an encrypted name: bad padding (wrong password or not a name encrypted by rclone)")]
    NamePadding,
    /// A decrypted name is not UTF-8 (rclone allows any bytes in names; Rust strings cannot hold them).
    #[error("decrypted name is not valid UTF-8")]
    NameNotUtf8,
    /// An obfuscated name has no `N.` prefix, or `N` is not a number (rclone: "not an encrypted file").
    #[error("not an obfuscated name: missing or bad rotation prefix")]
    NameNotObfuscated,
    /// In `off` mode, a name does not end with the suffix or is only the suffix (rclone: "not an encrypted
    /// file - does not match suffix").
    #[error("not an encrypted file - does not match suffix {suffix:?}")]
    NameSuffix {
        /// The configured suffix.
        suffix: String,
    },
    /// A name option string is not one rclone knows.
    #[error("unknown {option} {value:?} (expected one of {expected})")]
    UnknownOption {
        /// Which option (`filename_encryption`, `filename_encoding`).
        option: &'static str,
        /// The value given.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
}

impl Error {
    /// Wraps this error in an [`io::Error`] of a fitting kind, so the `Read` adapters can return it;
    /// [`Error::from_io`] gets it back.
    #[must_use]
    pub fn into_io(self) -> io::Error {
        let kind = match self {
            Error::TooShort { .. } | Error::TruncatedChunk { .. } | Error::UnexpectedSize { .. } => {
                io::ErrorKind::UnexpectedEof
            }
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self)
    }

    /// Returns the crypt error inside an [`io::Error`] made by [`Error::into_io`], if it is one.
    #[must_use]
    pub fn from_io(err: &io::Error) -> Option<&Error> {
        err.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> Self {
        err.into_io()
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
