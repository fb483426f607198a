//! File and directory name encryption in every rclone mode.
//!
//! A path is split on `/` and each segment is transformed on its own; empty segments stay empty. See
//! [`NameCodec`] for the operations and [`NameOptions`] for the knobs (they mirror rclone's
//! `filename_encryption`, `filename_encoding`, `directory_name_encryption` and `suffix`).

mod base32768;
mod obfuscate;
mod version;

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use data_encoding::{Encoding, Specification};

use crate::cipher::Cipher;
use crate::error::{Error, Result};

/// EME works on 1 to 128 AES blocks, so a padded name may have at most 2048 bytes.
const MAX_EME_BYTES: usize = 2048;
/// Longest plaintext segment: 2047 bytes pad to 2048.
pub const MAX_SEGMENT_LEN: usize = MAX_EME_BYTES - 1;

/// How names are transformed (rclone's `filename_encryption`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameMode {
    /// EME-AES-256 with PKCS#7 padding, then [`NameEncoding`]. rclone's default.
    #[default]
    Standard,
    /// A weak reversible rotation; names stay readable in length and punctuation.
    Obfuscate,
    /// Names in clear; file names get `suffix` appended (`.bin` by default, may be empty).
    Off {
        /// Appended to file names; empty means rclone's `suffix = none`.
        suffix: String,
    },
}

impl NameMode {
    /// `off` with rclone's `suffix` option applied: `none` (any case) means no suffix, a suffix without a
    /// leading `.` gets one (rclone logs an error and does the same).
    #[must_use]
    pub fn off(suffix: &str) -> NameMode {
        let suffix = if suffix.eq_ignore_ascii_case("none") {
            String::new()
        } else if suffix.starts_with('.') {
            suffix.to_owned()
        } else {
            format!(".{suffix}")
        };
        NameMode::Off { suffix }
    }
}

impl FromStr for NameMode {
    type Err = Error;

    /// Parses rclone's `filename_encryption` (`standard`, `obfuscate`, `off`; any case). `off` gets the
    /// default suffix `.bin`; use [`NameMode::off`] for another one.
    fn from_str(s: &str) -> Result<NameMode> {
        match s.to_ascii_lowercase().as_str() {
            "standard" => Ok(NameMode::Standard),
            "obfuscate" => Ok(NameMode::Obfuscate),
            "off" => Ok(NameMode::off(".bin")),
            _ => Err(Error::UnknownOption {
                option: "filename_encryption",
                value: s.to_owned(),
                expected: "standard, obfuscate, off",
            }),
        }
    }
}

impl fmt::Display for NameMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameMode::Standard => "standard",
            NameMode::Obfuscate => "obfuscate",
            NameMode::Off { .. } => "off",
        })
    }
}

/// How `standard` ciphertext is written as text (rclone's `filename_encoding`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameEncoding {
    /// RFC 4648 base32hex, lower case, no padding; decoding ignores case. rclone's default.
    #[default]
    Base32,
    /// RFC 4648 base64url, no padding; case-sensitive.
    Base64,
    /// base32768: one UTF-16 unit per 15 bits, for backends that count characters.
    Base32768,
}

impl NameEncoding {
    /// rclone's name for the encoding.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            NameEncoding::Base32 => "base32",
            NameEncoding::Base64 => "base64",
            NameEncoding::Base32768 => "base32768",
        }
    }
}

impl FromStr for NameEncoding {
    type Err = Error;

    /// Parses `base32`, `base64` or `base32768` (any case).
    fn from_str(s: &str) -> Result<NameEncoding> {
        match s.to_ascii_lowercase().as_str() {
            "base32" => Ok(NameEncoding::Base32),
            "base64" => Ok(NameEncoding::Base64),
            "base32768" => Ok(NameEncoding::Base32768),
            _ => Err(Error::UnknownOption {
                option: "filename_encoding",
                value: s.to_owned(),
                expected: "base32, base64, base32768",
            }),
        }
    }
}

impl fmt::Display for NameEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Name-encryption settings of one crypt remote. The default is rclone's: standard, base32, directory
/// names encrypted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NameOptions {
    /// `filename_encryption`.
    pub mode: NameMode,
    /// `filename_encoding` (only used by [`NameMode::Standard`]).
    pub encoding: NameEncoding,
    /// `directory_name_encryption` (ignored by [`NameMode::Off`]).
    pub directory_name_encryption: bool,
}

impl Default for NameOptions {
    fn default() -> Self {
        NameOptions {
            mode: NameMode::Standard,
            encoding: NameEncoding::Base32,
            directory_name_encryption: true,
        }
    }
}

/// Go's base32hex as rclone uses it: lower case out, any case in, trailing bits ignored.
fn base32() -> &'static Encoding {
    static ENC: OnceLock<Encoding> = OnceLock::new();
    ENC.get_or_init(|| {
        let mut spec = Specification::new();
        spec.symbols.push_str("0123456789abcdefghijklmnopqrstuv");
        spec.translate.from.push_str("ABCDEFGHIJKLMNOPQRSTUV");
        spec.translate.to.push_str("abcdefghijklmnopqrstuv");
        spec.check_trailing_bits = false;
        spec.encoding().unwrap_or_else(|_| data_encoding::BASE32HEX_NOPAD.clone())
    })
}

/// Go's `base64.RawURLEncoding`: no padding, trailing bits ignored.
pub(crate) fn base64url() -> &'static Encoding {
    static ENC: OnceLock<Encoding> = OnceLock::new();
    ENC.get_or_init(|| {
        let mut spec = Specification::new();
        spec.symbols.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
        spec.check_trailing_bits = false;
        spec.encoding().unwrap_or_else(|_| data_encoding::BASE64URL_NOPAD.clone())
    })
}

/// Encrypts and decrypts names and paths with one [`Cipher`]'s name key and one set of [`NameOptions`].
///
/// Cheap to clone; `Send + Sync`.
///
/// ```
/// use s32s3_crypt::{Cipher, Key, NameOptions};
/// # fn main() -> s32s3_crypt::Result<()> {
/// let codec = Cipher::from_key(Key::zero()).name_codec(NameOptions::default());
/// assert_eq!(codec.encrypt_path("1/12/123")?, "p0e52nreeaj0a5ea7s64m4j72s/l42g6771hnv3an9cgc8cr2n1ng/qgm4avr35m5loi1th53ato71v0");
/// assert_eq!(codec.decrypt_path("p0e52nreeaj0a5ea7s64m4j72s")?, "1");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NameCodec {
    cipher: Cipher,
    options: NameOptions,
}

impl fmt::Debug for NameCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameCodec").field("cipher", &self.cipher).field("options", &self.options).finish()
    }
}

impl NameCodec {
    pub(crate) fn new(cipher: Cipher, options: NameOptions) -> NameCodec {
        NameCodec { cipher, options }
    }

    /// The options this codec applies.
    #[must_use]
    pub fn options(&self) -> &NameOptions {
        &self.options
    }

    /// Encrypts one segment (no `/` handling, no version suffix): EME + encoding in `standard`, the
    /// rotation in `obfuscate`, unchanged in `off`. `""` stays `""`.
    ///
    /// # Errors
    /// [`Error::NameTooLong`] in `standard` mode for a segment of 2048 bytes or more.
    pub fn encrypt_segment(&self, plain: &str) -> Result<String> {
        if plain.is_empty() {
            return Ok(String::new());
        }
        match &self.options.mode {
            NameMode::Standard => self.eme_encrypt(plain),
            NameMode::Obfuscate => Ok(obfuscate::obfuscate(plain, self.cipher.name_key_sum())),
            NameMode::Off { .. } => Ok(plain.to_owned()),
        }
    }

    fn eme_encrypt(&self, plain: &str) -> Result<String> {
        let len = plain.len();
        if len > MAX_SEGMENT_LEN {
            return Err(Error::NameTooLong { len });
        }
        let pad = 16 - len % 16;
        let mut buf = Vec::with_capacity(len + pad);
        buf.extend_from_slice(plain.as_bytes());
        buf.resize(len + pad, pad as u8);
        // Length checked above: a multiple of 16, at most 2048 bytes, so EME cannot assert.
        self.cipher.eme().encrypt_block_mut(&mut buf);
        Ok(match self.options.encoding {
            NameEncoding::Base32 => base32().encode(&buf),
            NameEncoding::Base64 => base64url().encode(&buf),
            NameEncoding::Base32768 => base32768::encode(&buf),
        })
    }

    /// Decrypts one segment, the inverse of [`NameCodec::encrypt_segment`].
    ///
    /// # Errors
    /// The `Name*` variants of [`Error`]: bad encoding, wrong length, bad padding (also what a wrong
    /// password gives), not UTF-8, not obfuscated.
    pub fn decrypt_segment(&self, cipher: &str) -> Result<String> {
        if cipher.is_empty() {
            return Ok(String::new());
        }
        match &self.options.mode {
            NameMode::Standard => self.eme_decrypt(cipher),
            NameMode::Obfuscate => {
                obfuscate::deobfuscate(cipher, self.cipher.name_key_sum()).ok_or(Error::NameNotObfuscated)
            }
            NameMode::Off { .. } => Ok(cipher.to_owned()),
        }
    }

    fn eme_decrypt(&self, cipher: &str) -> Result<String> {
        let encoding = self.options.encoding;
        let decoded = match encoding {
            NameEncoding::Base32 => {
                // rclone rejects a trailing '=' explicitly; Go's decoder would take the padding.
                if cipher.ends_with('=') { None } else { base32().decode(cipher.as_bytes()).ok() }
            }
            NameEncoding::Base64 => base64url().decode(cipher.as_bytes()).ok(),
            NameEncoding::Base32768 => base32768::decode(cipher),
        };
        let mut buf = decoded.ok_or(Error::NameEncoding { encoding: encoding.as_str() })?;
        let len = buf.len();
        if len % 16 != 0 {
            return Err(Error::NameNotMultipleOfBlockSize { len });
        }
        if len == 0 {
            return Err(Error::NameTooShortAfterDecode);
        }
        if len > MAX_EME_BYTES {
            return Err(Error::NameTooLongAfterDecode { len });
        }
        self.cipher.eme().decrypt_block_mut(&mut buf);
        let pad = usize::from(buf[len - 1]);
        if pad == 0 || pad > 16 || !buf[len - pad..].iter().all(|&b| usize::from(b) == pad) {
            return Err(Error::NamePadding);
        }
        buf.truncate(len - pad);
        String::from_utf8(buf).map_err(|_| Error::NameNotUtf8)
    }

    /// Applies `segment_fn` to the segments of `path` that the options say to transform; the leaf of a
    /// file path gets rclone's version-suffix handling.
    fn map_path(
        &self,
        path: &str,
        is_file: bool,
        segment_fn: impl Fn(&NameCodec, &str) -> Result<String>,
    ) -> Result<String> {
        let segments: Vec<&str> = path.split('/').collect();
        let last = segments.len() - 1;
        let mut out = String::with_capacity(path.len() * 2);
        for (i, segment) in segments.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            let is_leaf = is_file && i == last;
            if !self.options.directory_name_encryption && !is_leaf {
                out.push_str(segment);
                continue;
            }
            match version::remove(segment).filter(|_| is_leaf) {
                Some((bare, version)) => out.push_str(&version::add(&segment_fn(self, &bare)?, version)),
                None => out.push_str(&segment_fn(self, segment)?),
            }
        }
        Ok(out)
    }

    /// Encrypts the path of a file (rclone `EncryptFileName`): every segment, or only the leaf when
    /// directory-name encryption is off; in `off` mode the suffix is appended. A version suffix
    /// (`-vYYYY-MM-DD-HHMMSS-mmm`) on the leaf stays in clear, as rclone does.
    ///
    /// # Errors
    /// [`Error::NameTooLong`] for a segment of 2048 bytes or more in `standard` mode.
    pub fn encrypt_path(&self, path: &str) -> Result<String> {
        if let NameMode::Off { suffix } = &self.options.mode {
            return Ok(format!("{path}{suffix}"));
        }
        self.map_path(path, true, NameCodec::encrypt_segment)
    }

    /// Decrypts the path of a file, the inverse of [`NameCodec::encrypt_path`] (rclone
    /// `DecryptFileName`).
    ///
    /// # Errors
    /// As [`NameCodec::decrypt_segment`] for the first segment that fails; [`Error::NameSuffix`] in `off`
    /// mode for a name without the suffix.
    pub fn decrypt_path(&self, path: &str) -> Result<String> {
        if let NameMode::Off { suffix } = &self.options.mode {
            let bare = path
                .strip_suffix(suffix.as_str())
                .filter(|bare| !bare.is_empty())
                .ok_or_else(|| Error::NameSuffix { suffix: suffix.clone() })?;
            if matches!(version::remove(bare), Some((ref rest, _)) if rest.is_empty()) {
                return Err(Error::NameSuffix { suffix: suffix.clone() });
            }
            return Ok(bare.to_owned());
        }
        self.map_path(path, true, NameCodec::decrypt_segment)
    }

    /// Encrypts the path of a directory: every segment verbatim (no version handling, see below), or
    /// nothing when directory-name encryption is off or the mode is `off`.
    ///
    /// rclone ≤ 1.76 strips a version suffix from the last segment of a directory path here, while the
    /// same directory as the parent of a file is encrypted verbatim; we follow the file form (and open
    /// rclone PR #9601), so a directory always has one encrypted name.
    ///
    /// # Errors
    /// [`Error::NameTooLong`] for a segment of 2048 bytes or more in `standard` mode.
    pub fn encrypt_dir_path(&self, path: &str) -> Result<String> {
        if matches!(self.options.mode, NameMode::Off { .. }) {
            return Ok(path.to_owned());
        }
        self.map_path(path, false, NameCodec::encrypt_segment)
    }

    /// Decrypts the path of a directory, the inverse of [`NameCodec::encrypt_dir_path`].
    ///
    /// # Errors
    /// As [`NameCodec::decrypt_segment`] for the first segment that fails.
    pub fn decrypt_dir_path(&self, path: &str) -> Result<String> {
        if matches!(self.options.mode, NameMode::Off { .. }) {
            return Ok(path.to_owned());
        }
        self.map_path(path, false, NameCodec::decrypt_segment)
    }
}
