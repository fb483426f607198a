//! madmin's encrypted payloads (`EncryptData` / `DecryptData`), spec §2.
//!
//! ```text
//! salt (32) | algorithm id (1) | nonce (8) | sio-go stream
//! ```
//!
//! The key is Argon2id(secret, salt, t=1, m=64 MiB, p=4) for ids `0x00` (AES-256-GCM) and `0x01`
//! (ChaCha20-Poly1305), or PBKDF2-HMAC-SHA256(secret, salt, 8192) for `0x02` (AES-256-GCM, FIPS builds).
//! The stream splits the plaintext into 16 KiB fragments, each sealed with nonce `nonce || LE32(seq)` and
//! associated data `flag || tag0`, where `tag0` seals the empty message under sequence 0 and `flag` is
//! `0x80` on the last fragment only. The secret is the secret key of the credential that signed the call.
//!
//! Argon2id takes 64 MiB per derivation; derivations in this process run one at a time, as in Go.

use std::sync::Mutex;

use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use chacha20poly1305::ChaCha20Poly1305;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Plaintext bytes per sio fragment (`sio.BufSize`).
pub const FRAGMENT_SIZE: usize = 1 << 14;
/// Salt, algorithm id and nonce.
pub const HEADER_LEN: usize = 32 + 1 + 8;
/// The AEAD tag appended to every fragment.
pub const TAG_LEN: usize = 16;
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 8;

const ARGON2_TIME: u32 = 1;
const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
const ARGON2_THREADS: u32 = 4;
const PBKDF2_ROUNDS: u32 = 8192;

/// One Argon2id derivation at a time per process (64 MiB each), as madmin's `argon2Mu`.
static DERIVE_LOCK: Mutex<()> = Mutex::new(());

/// The key derivation and AEAD of a payload: the byte at offset 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// `0x00`: Argon2id + AES-256-GCM, what MinIO emits on hardware with AES support (and what this crate
    /// emits).
    Argon2idAesGcm,
    /// `0x01`: Argon2id + ChaCha20-Poly1305, what MinIO emits without AES hardware.
    Argon2idChaCha20Poly1305,
    /// `0x02`: PBKDF2-SHA256 + AES-256-GCM, what FIPS builds emit.
    Pbkdf2AesGcm,
}

impl Algorithm {
    /// All three, in id order.
    pub const ALL: [Self; 3] = [Self::Argon2idAesGcm, Self::Argon2idChaCha20Poly1305, Self::Pbkdf2AesGcm];

    /// The id byte.
    #[must_use]
    pub const fn id(self) -> u8 {
        match self {
            Self::Argon2idAesGcm => 0x00,
            Self::Argon2idChaCha20Poly1305 => 0x01,
            Self::Pbkdf2AesGcm => 0x02,
        }
    }

    /// The algorithm of an id byte.
    #[must_use]
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            0x00 => Some(Self::Argon2idAesGcm),
            0x01 => Some(Self::Argon2idChaCha20Poly1305),
            0x02 => Some(Self::Pbkdf2AesGcm),
            _ => None,
        }
    }
}

/// madmin's `IsEncrypted`: longer than a salt, with a known algorithm id after it.
///
/// A cheap shape test only (plain JSON never has a byte below `0x03` at offset 32, an encrypted payload
/// always has): it does not mean the payload is authentic.
#[must_use]
pub fn is_encrypted(data: &[u8]) -> bool {
    data.len() > SALT_LEN && Algorithm::from_id(data[SALT_LEN]).is_some()
}

/// The encrypted size of `plaintext_len` bytes: `41 + n + 16 * max(1, ceil(n / 16384))`.
#[must_use]
pub const fn encrypted_len(plaintext_len: usize) -> usize {
    let fragments = if plaintext_len == 0 { 1 } else { plaintext_len.div_ceil(FRAGMENT_SIZE) };
    HEADER_LEN + plaintext_len + TAG_LEN * fragments
}

/// Encrypts `plaintext` for a MinIO server as madmin does, with id `0x00` and a fresh salt and nonce.
///
/// # Errors
/// [`Error::Crypto`] when the system's random source or Argon2 fails, [`Error::PayloadTooLarge`] past
/// 64 TiB.
pub fn encrypt(secret_key: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
    encrypt_with(secret_key, Algorithm::Argon2idAesGcm, plaintext)
}

/// Encrypts with a chosen algorithm and a fresh random salt and nonce.
///
/// # Errors
/// As [`encrypt`].
pub fn encrypt_with(secret_key: &str, algorithm: Algorithm, plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut salt).map_err(|e| Error::Crypto(format!("random salt: {e}")))?;
    getrandom::fill(&mut nonce).map_err(|e| Error::Crypto(format!("random nonce: {e}")))?;
    encrypt_deterministic(secret_key, algorithm, &salt, &nonce, plaintext)
}

/// Encrypts with the given salt and nonce: for known-answer tests.
///
/// Never reuse a salt: the key is derived from it, and a repeated salt and nonce under one secret makes
/// the stream's nonces repeat.
///
/// # Errors
/// As [`encrypt`].
pub fn encrypt_deterministic(
    secret_key: &str,
    algorithm: Algorithm,
    salt: &[u8; 32],
    nonce: &[u8; 8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let cipher = Cipher::derive(secret_key, algorithm, salt)?;
    let mut out = Vec::with_capacity(encrypted_len(plaintext.len()));
    out.extend_from_slice(salt);
    out.push(algorithm.id());
    out.extend_from_slice(nonce);
    match &cipher {
        Cipher::Aes(aead) => seal_stream(&**aead, *nonce, &[], FRAGMENT_SIZE, plaintext, &mut out)?,
        Cipher::ChaCha(aead) => seal_stream(aead, *nonce, &[], FRAGMENT_SIZE, plaintext, &mut out)?,
    }
    Ok(out)
}

/// Decrypts a madmin payload made with `secret_key`, whatever its algorithm id.
///
/// # Errors
/// - [`Error::PayloadTruncated`]: shorter than the header plus one tag, or cut after a non-final fragment;
/// - [`Error::PayloadUnknownAlgorithm`]: byte 32 is not `0x00`, `0x01` or `0x02`;
/// - [`Error::PayloadWrongSecret`]: nothing authenticates under this secret;
/// - [`Error::PayloadTampered`]: one fragment fails while the key is proven right by another;
/// - [`Error::Crypto`]: Argon2 could not allocate its memory.
pub fn decrypt(secret_key: &str, data: &[u8]) -> Result<Vec<u8>> {
    if data.len() < HEADER_LEN {
        return Err(Error::PayloadTruncated {
            detail: format!("{} bytes, shorter than the {HEADER_LEN}-byte header", data.len()),
        });
    }
    let (salt, rest) = data.split_at(SALT_LEN);
    let id = rest[0];
    let algorithm = Algorithm::from_id(id).ok_or(Error::PayloadUnknownAlgorithm { id })?;
    let nonce: [u8; NONCE_LEN] = rest[1..=NONCE_LEN].try_into().unwrap_or_else(|_| unreachable!("8 bytes"));
    let body = &data[HEADER_LEN..];
    if body.len() < TAG_LEN {
        return Err(Error::PayloadTruncated {
            detail: format!("{} bytes after the header, shorter than one {TAG_LEN}-byte tag", body.len()),
        });
    }
    let salt: &[u8; SALT_LEN] = salt.try_into().unwrap_or_else(|_| unreachable!("32 bytes"));
    let cipher = Cipher::derive(secret_key, algorithm, salt)?;
    let opened = match &cipher {
        Cipher::Aes(aead) => open_stream(&**aead, nonce, &[], FRAGMENT_SIZE, body),
        Cipher::ChaCha(aead) => open_stream(aead, nonce, &[], FRAGMENT_SIZE, body),
    };
    opened.map_err(StreamError::into_error)
}

enum Cipher {
    // Boxed: the AES key schedule is ~1 KiB, ChaCha's key 32 bytes.
    Aes(Box<Aes256Gcm>),
    ChaCha(ChaCha20Poly1305),
}

impl Cipher {
    fn derive(secret_key: &str, algorithm: Algorithm, salt: &[u8; SALT_LEN]) -> Result<Self> {
        let mut key = Zeroizing::new([0u8; 32]);
        match algorithm {
            Algorithm::Argon2idAesGcm | Algorithm::Argon2idChaCha20Poly1305 => {
                let params = argon2::Params::new(ARGON2_MEMORY_KIB, ARGON2_TIME, ARGON2_THREADS, Some(32))
                    .map_err(|e| Error::Crypto(format!("Argon2 parameters: {e}")))?;
                let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
                let _serialised = DERIVE_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                argon
                    .hash_password_into(secret_key.as_bytes(), salt, &mut *key)
                    .map_err(|e| Error::Crypto(format!("Argon2id: {e}")))?;
            }
            Algorithm::Pbkdf2AesGcm => {
                pbkdf2::pbkdf2_hmac::<Sha256>(secret_key.as_bytes(), salt, PBKDF2_ROUNDS, &mut *key);
            }
        }
        let key = GenericArray::from_slice(&*key);
        Ok(match algorithm {
            Algorithm::Argon2idChaCha20Poly1305 => Self::ChaCha(ChaCha20Poly1305::new(key)),
            Algorithm::Argon2idAesGcm | Algorithm::Pbkdf2AesGcm => Self::Aes(Box::new(Aes256Gcm::new(key))),
        })
    }
}

/// Why a sio stream did not open.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StreamError {
    Truncated(String),
    /// `fragment` failed; `key_proven` when another fragment authenticated.
    Unauthentic {
        fragment: u64,
        key_proven: bool,
    },
}

impl StreamError {
    fn into_error(self) -> Error {
        match self {
            Self::Truncated(detail) => Error::PayloadTruncated { detail },
            Self::Unauthentic { fragment: 1, key_proven: false } => Error::PayloadWrongSecret,
            Self::Unauthentic { fragment, .. } => Error::PayloadTampered { fragment },
        }
    }
}

fn fragment_nonce(prefix: [u8; NONCE_LEN], seq: u32) -> Nonce<U12> {
    let mut n = [0u8; 12];
    n[..NONCE_LEN].copy_from_slice(&prefix);
    n[NONCE_LEN..].copy_from_slice(&seq.to_le_bytes());
    *Nonce::from_slice(&n)
}

/// The AEADs sio-go frames: 12-byte nonces, 16-byte tags.
pub(crate) trait SioAead: AeadInPlace<NonceSize = U12, TagSize = U16> {}
impl<A: AeadInPlace<NonceSize = U12, TagSize = U16>> SioAead for A {}

/// `0x00 || tag0` and `0x80 || tag0`.
fn associated_data<A: SioAead>(
    aead: &A,
    nonce: [u8; NONCE_LEN],
    ad_user: &[u8],
) -> Result<([u8; 17], [u8; 17])> {
    let tag0 = aead
        .encrypt_in_place_detached(&fragment_nonce(nonce, 0), ad_user, &mut [])
        .map_err(|_| Error::Crypto("sealing the header tag".into()))?;
    let mut ad = [0u8; 1 + TAG_LEN];
    ad[1..].copy_from_slice(&tag0);
    let mut ad_final = ad;
    ad_final[0] = 0x80;
    Ok((ad, ad_final))
}

/// sio-go's `EncryptWriter`, appending to `out`. Generic over the AEAD and fragment size so the sio-go
/// test vectors (AES-128-GCM, fragments of 16 and 17 bytes) exercise the same code.
pub(crate) fn seal_stream<A>(
    aead: &A,
    nonce: [u8; NONCE_LEN],
    ad_user: &[u8],
    buf_size: usize,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<()>
where
    A: SioAead,
{
    let (ad, ad_final) = associated_data(aead, nonce, ad_user)?;
    let fragments = if plaintext.is_empty() { 1 } else { plaintext.len().div_ceil(buf_size) };
    if u32::try_from(fragments).is_err() {
        return Err(Error::PayloadTooLarge { len: plaintext.len() });
    }
    let empty: &[u8] = &[];
    let chunks = plaintext.chunks(buf_size).chain(plaintext.is_empty().then_some(empty));
    for (i, chunk) in chunks.enumerate() {
        let seq = (i + 1) as u32;
        let fragment_ad = if i + 1 == fragments { &ad_final } else { &ad };
        let start = out.len();
        out.extend_from_slice(chunk);
        let tag = aead
            .encrypt_in_place_detached(&fragment_nonce(nonce, seq), fragment_ad, &mut out[start..])
            .map_err(|_| Error::Crypto("sealing a fragment".into()))?;
        out.extend_from_slice(&tag);
    }
    Ok(())
}

/// sio-go's `DecryptReader`, with the failure classified (see [`StreamError`]).
pub(crate) fn open_stream<A>(
    aead: &A,
    nonce: [u8; NONCE_LEN],
    ad_user: &[u8],
    buf_size: usize,
    body: &[u8],
) -> std::result::Result<Vec<u8>, StreamError>
where
    A: SioAead,
{
    let (ad, ad_final) = associated_data(aead, nonce, ad_user)
        .map_err(|_| StreamError::Unauthentic { fragment: 0, key_proven: false })?;
    let fragment_len = buf_size + TAG_LEN;
    let open = |seq: u32, fragment: &[u8], fragment_ad: &[u8], out: &mut Vec<u8>| -> bool {
        let Some(split) = fragment.len().checked_sub(TAG_LEN) else { return false };
        let (ciphertext, tag) = fragment.split_at(split);
        let start = out.len();
        out.extend_from_slice(ciphertext);
        let ok = aead
            .decrypt_in_place_detached(
                &fragment_nonce(nonce, seq),
                fragment_ad,
                &mut out[start..],
                Tag::from_slice(tag),
            )
            .is_ok();
        if !ok {
            out.truncate(start);
        }
        ok
    };

    let mut out = Vec::with_capacity(body.len());
    let mut scratch = Vec::new();
    let mut seq: u32 = 1;
    let mut pos = 0;
    loop {
        let remaining = body.len() - pos;
        let is_final = remaining <= fragment_len;
        let fragment = &body[pos..pos + remaining.min(fragment_len)];
        if fragment.len() < TAG_LEN {
            return Err(StreamError::Truncated(format!(
                "fragment {seq} has {} bytes, shorter than its {TAG_LEN}-byte tag",
                fragment.len()
            )));
        }
        let fragment_ad = if is_final { &ad_final } else { &ad };
        if !open(seq, fragment, fragment_ad, &mut out) {
            scratch.clear();
            if is_final && fragment.len() == fragment_len && open(seq, fragment, &ad, &mut scratch) {
                return Err(StreamError::Truncated(format!(
                    "the stream ends after fragment {seq}, which is not marked final"
                )));
            }
            // A failure of the first fragment is a wrong key unless some later fragment, at its place,
            // authenticates and so proves the key right.
            let key_proven = seq > 1
                || body[fragment.len()..].chunks(fragment_len).zip(2u32..).any(|(next, seq)| {
                    scratch.clear();
                    open(seq, next, &ad, &mut scratch) || open(seq, next, &ad_final, &mut scratch)
                });
            return Err(StreamError::Unauthentic { fragment: u64::from(seq), key_proven });
        }
        pos += fragment.len();
        if is_final {
            return Ok(out);
        }
        seq = seq
            .checked_add(1)
            .ok_or(StreamError::Unauthentic { fragment: u64::from(seq), key_proven: true })?;
    }
}

/// Entry points for the fuzz targets in `fuzz/`: the payload parser with a fixed key, without the
/// deliberately slow key derivation (an Argon2id pass per input would starve the fuzzer). Not part of the
/// supported API.
#[doc(hidden)]
pub mod fuzzing {
    use super::{Aes256Gcm, ChaCha20Poly1305, Error, FRAGMENT_SIZE, HEADER_LEN, KeyInit, Result, TAG_LEN};

    const KEY: [u8; 32] = [0x42; 32];

    /// Parses `data` as a payload (header included) whose key is fixed; `chacha` picks the AEAD.
    ///
    /// # Errors
    /// The payload errors of [`super::decrypt`].
    pub fn open(chacha: bool, data: &[u8]) -> Result<Vec<u8>> {
        if data.len() < HEADER_LEN + TAG_LEN {
            return Err(Error::PayloadTruncated { detail: "short".into() });
        }
        let nonce: [u8; 8] = data[33..HEADER_LEN].try_into().unwrap_or_else(|_| unreachable!("8 bytes"));
        let body = &data[HEADER_LEN..];
        let opened = if chacha {
            super::open_stream(&ChaCha20Poly1305::new(&KEY.into()), nonce, &[], FRAGMENT_SIZE, body)
        } else {
            super::open_stream(&Aes256Gcm::new(&KEY.into()), nonce, &[], FRAGMENT_SIZE, body)
        };
        opened.map_err(super::StreamError::into_error)
    }

    /// Seals `plaintext` with the fixed key, header included (zero salt, id 0x00 or 0x01).
    ///
    /// # Errors
    /// [`Error::PayloadTooLarge`].
    pub fn seal(chacha: bool, nonce: [u8; 8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = vec![0u8; 32];
        out.push(u8::from(chacha));
        out.extend_from_slice(&nonce);
        if chacha {
            super::seal_stream(
                &ChaCha20Poly1305::new(&KEY.into()),
                nonce,
                &[],
                FRAGMENT_SIZE,
                plaintext,
                &mut out,
            )?;
        } else {
            super::seal_stream(&Aes256Gcm::new(&KEY.into()), nonce, &[], FRAGMENT_SIZE, plaintext, &mut out)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::Aes128Gcm;

    fn data(name: &str) -> String {
        let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn sio_go_aes_128_gcm_vectors() {
        let vectors: Vec<serde_json::Value> =
            serde_json::from_str(&data("sio-go-test_vectors.json")).unwrap();
        let mut checked = 0;
        for v in &vectors {
            if v["Algorithm"] != "AES-128-GCM" {
                continue; // XChaCha20-Poly1305: not used by madmin.
            }
            let h = |k: &str| hex::decode(v[k].as_str().unwrap()).unwrap();
            let buf_size = usize::try_from(v["BufSize"].as_u64().unwrap()).unwrap();
            let aead = Aes128Gcm::new_from_slice(&h("Key")).unwrap();
            let nonce: [u8; 8] = h("Nonce").try_into().unwrap();
            let (ad, plaintext, ciphertext) = (h("AssociatedData"), h("Plaintext"), h("Ciphertext"));
            let mut sealed = Vec::new();
            seal_stream(&aead, nonce, &ad, buf_size, &plaintext, &mut sealed).unwrap();
            assert_eq!(hex::encode(&sealed), hex::encode(&ciphertext), "vector {checked}");
            assert_eq!(open_stream(&aead, nonce, &ad, buf_size, &ciphertext).unwrap(), plaintext);
            checked += 1;
        }
        assert_eq!(checked, 14);
    }

    /// Every `{password, plaintext_hex, ciphertext_hex}` line of `file` decrypts; all carry id `id`
    /// (any id with `None`).
    fn decrypts_all(file: &str, id: Option<u8>) -> usize {
        let mut checked = 0;
        for line in data(file).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let password = v["password"].as_str().unwrap();
            let ciphertext = hex::decode(v["ciphertext_hex"].as_str().unwrap()).unwrap();
            let plaintext = hex::decode(v["plaintext_hex"].as_str().unwrap()).unwrap();
            assert!(is_encrypted(&ciphertext));
            assert!(id.is_none_or(|id| ciphertext[32] == id), "{file}");
            assert_eq!(ciphertext.len(), encrypted_len(plaintext.len()));
            assert_eq!(decrypt(password, &ciphertext).unwrap(), plaintext, "{file}: password {password:?}");
            checked += 1;
        }
        checked
    }

    #[test]
    fn madmin_go_encrypt_data_vectors_decrypt() {
        assert_eq!(decrypts_all("madmin-go-encrypt_data.jsonl", Some(0x00)), 11);
    }

    #[test]
    fn madmin_go_fips_encrypt_data_vectors_decrypt() {
        assert_eq!(decrypts_all("madmin-go-encrypt_data-fips.jsonl", Some(0x02)), 11);
    }

    #[test]
    fn sio_go_chacha20poly1305_vectors_decrypt() {
        assert_eq!(decrypts_all("sio-go-chacha20poly1305-madmin-layout.jsonl", Some(0x01)), 11);
    }

    /// Our own payloads of every id, which madmin-go's `DecryptData` decrypted (recorded, see the data
    /// README): a regression guard for the encrypting side.
    #[test]
    fn payloads_madmin_go_decrypted_still_decrypt() {
        assert_eq!(decrypts_all("s32s3-encrypt_data-checked-by-madmin-go.jsonl", None), 33);
    }

    #[test]
    fn madmin_go_decrypt_data_tests_decrypt() {
        let mut checked = 0;
        for line in data("madmin-go-decrypt_data_tests.jsonl").lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let ciphertext = hex::decode(v["ciphertext_hex"].as_str().unwrap()).unwrap();
            decrypt(v["password"].as_str().unwrap(), &ciphertext).unwrap();
            checked += 1;
        }
        assert_eq!(checked, 4);
    }

    /// Round trips at every size around the fragment boundaries, for each algorithm, with one derived key
    /// per algorithm (Argon2id is deliberately slow).
    #[test]
    fn stream_round_trips_around_fragment_boundaries() {
        let sizes = [
            0,
            1,
            15,
            16,
            17,
            FRAGMENT_SIZE - 1,
            FRAGMENT_SIZE,
            FRAGMENT_SIZE + 1,
            2 * FRAGMENT_SIZE - 1,
            2 * FRAGMENT_SIZE,
            2 * FRAGMENT_SIZE + 1,
            3 * FRAGMENT_SIZE + 7,
        ];
        let plaintext: Vec<u8> = (0..3 * FRAGMENT_SIZE + 7).map(|i| (i * 31 % 251) as u8).collect();
        let nonce = [7u8; 8];
        for algorithm in Algorithm::ALL {
            let cipher = Cipher::derive("minio123", algorithm, &[9u8; 32]).unwrap();
            for &n in &sizes {
                let pt = &plaintext[..n];
                let mut sealed = Vec::new();
                let opened = match &cipher {
                    Cipher::Aes(a) => {
                        seal_stream(&**a, nonce, &[], FRAGMENT_SIZE, pt, &mut sealed).unwrap();
                        open_stream(&**a, nonce, &[], FRAGMENT_SIZE, &sealed)
                    }
                    Cipher::ChaCha(a) => {
                        seal_stream(a, nonce, &[], FRAGMENT_SIZE, pt, &mut sealed).unwrap();
                        open_stream(a, nonce, &[], FRAGMENT_SIZE, &sealed)
                    }
                };
                assert_eq!(sealed.len() + HEADER_LEN, encrypted_len(n), "{algorithm:?} {n}");
                assert_eq!(opened.unwrap(), pt, "{algorithm:?} {n}");
            }
        }
    }

    /// The public functions, each algorithm, at the sizes that change the fragment count.
    #[test]
    fn public_round_trip_each_algorithm() {
        for algorithm in Algorithm::ALL {
            for n in [0, FRAGMENT_SIZE, FRAGMENT_SIZE + 1] {
                let pt = vec![0xA5u8; n];
                let ct = encrypt_with("secret/Key+with=chars", algorithm, &pt).unwrap();
                assert_eq!(ct[32], algorithm.id());
                assert_eq!(decrypt("secret/Key+with=chars", &ct).unwrap(), pt, "{algorithm:?} {n}");
            }
        }
        let ct = encrypt("k", b"{}").unwrap();
        assert_eq!(ct[32], 0x00, "madmin's default id");
    }

    fn three_fragments(algorithm: Algorithm) -> (Vec<u8>, Vec<u8>) {
        let pt: Vec<u8> = (0..2 * FRAGMENT_SIZE + 100).map(|i| i as u8).collect();
        let ct = encrypt_deterministic("minio123", algorithm, &[1; 32], &[2; 8], &pt).unwrap();
        (pt, ct)
    }

    #[test]
    fn wrong_secret_is_its_own_error() {
        for algorithm in Algorithm::ALL {
            let (_, ct) = three_fragments(algorithm);
            assert!(matches!(decrypt("minio124", &ct), Err(Error::PayloadWrongSecret)), "{algorithm:?}");
        }
        let small = encrypt_deterministic("a", Algorithm::Pbkdf2AesGcm, &[0; 32], &[0; 8], b"x").unwrap();
        assert!(matches!(decrypt("b", &small), Err(Error::PayloadWrongSecret)));
    }

    #[test]
    fn tampering_is_its_own_error() {
        for algorithm in Algorithm::ALL {
            let (_, ct) = three_fragments(algorithm);
            let frag = FRAGMENT_SIZE + TAG_LEN;
            for (offset, fragment) in [
                (HEADER_LEN + 5, 1),             // first fragment's ciphertext; the second proves the key
                (HEADER_LEN + frag + 9, 2),      // a middle fragment
                (HEADER_LEN + frag - 1, 1),      // first fragment's tag
                (ct.len() - 1, 3),               // the final fragment's tag
                (HEADER_LEN + 2 * frag + 50, 3), // the final fragment's ciphertext
            ] {
                let mut bad = ct.clone();
                bad[offset] ^= 0x01;
                match decrypt("minio123", &bad) {
                    Err(Error::PayloadTampered { fragment: f }) => assert_eq!(f, fragment, "{algorithm:?}"),
                    other => panic!("{algorithm:?} offset {offset}: {other:?}"),
                }
            }
            // Two fragments swapped.
            let mut swapped = ct.clone();
            let (a, b) = swapped[HEADER_LEN..HEADER_LEN + 2 * frag].split_at_mut(frag);
            a.swap_with_slice(b);
            assert!(matches!(decrypt("minio123", &swapped), Err(Error::PayloadTampered { fragment: 1 })));
            // Bytes appended after the final fragment.
            let mut longer = ct.clone();
            longer.extend_from_slice(&[0; 20]);
            assert!(matches!(decrypt("minio123", &longer), Err(Error::PayloadTampered { .. })));
        }
    }

    #[test]
    fn truncation_is_its_own_error() {
        for algorithm in Algorithm::ALL {
            let (_, ct) = three_fragments(algorithm);
            let frag = FRAGMENT_SIZE + TAG_LEN;
            for len in [
                0,
                10,
                HEADER_LEN - 1,
                HEADER_LEN,
                HEADER_LEN + TAG_LEN - 1,
                HEADER_LEN + frag,
                HEADER_LEN + 2 * frag,
            ] {
                match decrypt("minio123", &ct[..len]) {
                    Err(Error::PayloadTruncated { detail }) => assert!(!detail.is_empty()),
                    other => panic!("{algorithm:?} cut at {len}: {other:?}"),
                }
            }
            // A cut inside the last fragment leaves a fragment without its tag: indistinguishable from an
            // altered one, and reported as such.
            assert!(matches!(
                decrypt("minio123", &ct[..ct.len() - 30]),
                Err(Error::PayloadTampered { fragment: 3 })
            ));
        }
    }

    #[test]
    fn unknown_algorithm_and_shape() {
        let mut ct = encrypt_deterministic("k", Algorithm::Pbkdf2AesGcm, &[3; 32], &[4; 8], b"{}").unwrap();
        ct[32] = 0x03;
        assert!(!is_encrypted(&ct));
        assert!(matches!(decrypt("k", &ct), Err(Error::PayloadUnknownAlgorithm { id: 3 })));
        assert!(!is_encrypted(br#"{"accounts":[{"accessKey":"x","parentUser":"y"}]}"#));
    }

    #[test]
    fn encryption_is_randomised() {
        let a = encrypt_with("k", Algorithm::Pbkdf2AesGcm, b"same").unwrap();
        let b = encrypt_with("k", Algorithm::Pbkdf2AesGcm, b"same").unwrap();
        assert_ne!(a[..HEADER_LEN], b[..HEADER_LEN]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Random payloads and fragment sizes through the generic stream (AES-128-GCM, fast key setup).
        #[test]
        fn stream_round_trips(pt in proptest::collection::vec(proptest::num::u8::ANY, 0..200), buf in 1usize..40) {
            let aead = Aes128Gcm::new_from_slice(&[5; 16]).unwrap();
            let mut sealed = Vec::new();
            seal_stream(&aead, [6; 8], b"ad", buf, &pt, &mut sealed).unwrap();
            let fragments = if pt.is_empty() { 1 } else { pt.len().div_ceil(buf) };
            proptest::prop_assert_eq!(sealed.len(), pt.len() + TAG_LEN * fragments);
            proptest::prop_assert_eq!(open_stream(&aead, [6; 8], b"ad", buf, &sealed).unwrap(), pt);
        }
    }
}
