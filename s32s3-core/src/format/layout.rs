//! Where things live in the backup bucket (DESIGN.md §2).
//!
//! ```text
//! <backup-bucket>/[<prefix>/]
//!   <enc(bucket)>/<enc(seg)>/…/<enc(seg)>   one object per source object, exactly as `rclone sync` into a
//!                                            crypt remote (standard names, base32, directory names encrypted)
//!   .s32s3/config.json                      format version, name settings, key-check blob
//!   .s32s3/snapshots/<UTC time>-<id>.snap   snapshot manifests
//!   .s32s3/snapshots/<id>.partial           checkpoint of an unfinished run
//!   .s32s3/instance/<id>/…                  MinIO exports
//!   .s32s3/overflow/<enc(hash)>             objects whose key the rclone layout cannot hold
//!   .s32s3/lock                             the lease
//! ```
//!
//! `.s32s3` cannot collide with an encrypted name: base32 names use only `0-9a-v`, and a bucket name cannot
//! start with a dot.

use s32s3_crypt::{Cipher, MAX_SEGMENT_LEN, NameCodec, NameOptions};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The folder of s32s3's own objects, under the backup root.
pub const META_DIR: &str = ".s32s3";
/// S3's limit on key length, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// The longest stored path segment: `MinIO`, `RustFS` and most file systems refuse names over 255 bytes (with
/// base32 names a source segment of 144 bytes already encrypts to 256).
pub const MAX_STORED_SEGMENT: usize = 255;

/// Where one source object is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// The full destination key (prefix included).
    pub key: String,
    /// Stored under `.s32s3/overflow/` because rclone's layout cannot hold the source key.
    pub overflow: bool,
}

/// Maps source objects and s32s3's own objects to destination keys.
#[derive(Clone, Debug)]
pub struct Layout {
    names: NameCodec,
    prefix: String,
}

impl Layout {
    /// The layout under `prefix` (may be empty) in the backup bucket.
    ///
    /// # Errors
    /// [`Error::Config`] for a prefix with empty segments or a leading slash.
    pub fn new(cipher: &Cipher, prefix: &str) -> Result<Self> {
        let trimmed = prefix.trim_end_matches('/');
        if trimmed.starts_with('/')
            || trimmed.split('/').any(|s| s.is_empty() || s == "." || s == "..") && !trimmed.is_empty()
        {
            return Err(Error::Config {
                field: "backup_prefix".into(),
                reason: format!("{prefix:?} must be a relative path without empty, `.` or `..` segments"),
            });
        }
        let prefix = if trimmed.is_empty() { String::new() } else { format!("{trimmed}/") };
        Ok(Self { names: cipher.name_codec(NameOptions::default()), prefix })
    }

    /// The prefix of everything s32s3 writes (empty, or ending in `/`).
    #[must_use]
    pub fn root(&self) -> &str {
        &self.prefix
    }

    /// The name codec (standard, base32, directory names encrypted).
    #[must_use]
    pub fn names(&self) -> &NameCodec {
        &self.names
    }

    /// `<root>.s32s3/<rel>`.
    #[must_use]
    pub fn meta(&self, rel: &str) -> String {
        format!("{}{META_DIR}/{rel}", self.prefix)
    }

    /// The prefix under which snapshot manifests and checkpoints live.
    #[must_use]
    pub fn snapshots_prefix(&self) -> String {
        self.meta("snapshots/")
    }

    /// Where the data of `bucket`/`key` is stored.
    ///
    /// In rclone's layout when rclone can hold it there *and reads it back as exactly this key*: every
    /// stored segment at most [`MAX_STORED_SEGMENT`] bytes, the whole key at most [`MAX_KEY_LEN`], and the
    /// stored name decrypting (version suffix and all) to `bucket/key`. That last rule makes the layout
    /// injective: rclone keeps a leaf's version suffix (`-v2001-02-03-040506-123`) in clear and puts it
    /// back before the extension, so `-v2001-02-03-040506-123.txt` and `.txt-v2001-02-03-040506-123` would
    /// otherwise share one stored key. Everything else goes to the overflow area under a keyed hash.
    ///
    /// # Errors
    /// Never for a valid S3 key (everything rclone cannot hold goes to the overflow area); a crypt error
    /// would mean a bug.
    pub fn data_key(&self, bucket: &str, key: &str) -> Result<StoredKey> {
        if fits_rclone_path(key) {
            let path = format!("{bucket}/{key}");
            let encrypted = self
                .names
                .encrypt_path(&path)
                .map_err(|source| Error::Crypt { what: format!("name of s3://{bucket}/{key}"), source })?;
            let full = format!("{}{encrypted}", self.prefix);
            let fits =
                full.len() <= MAX_KEY_LEN && encrypted.split('/').all(|s| s.len() <= MAX_STORED_SEGMENT);
            if fits && self.names.decrypt_path(&encrypted).is_ok_and(|back| back == path) {
                return Ok(StoredKey { key: full, overflow: false });
            }
        }
        Ok(StoredKey { key: self.overflow_key(bucket, key)?, overflow: true })
    }

    /// The overflow key of `bucket`/`key`: a keyed, deterministic name that reveals nothing of the key.
    fn overflow_key(&self, bucket: &str, key: &str) -> Result<String> {
        let mut hash = Sha256::new();
        hash.update(bucket.as_bytes());
        hash.update([0]);
        hash.update(key.as_bytes());
        let name = self.names.encrypt_segment(&hex::encode(hash.finalize())).map_err(|source| {
            Error::Crypt { what: format!("overflow name of s3://{bucket}/{key}"), source }
        })?;
        Ok(self.meta(&format!("overflow/{name}")))
    }

    /// Where a version of `bucket`/`key` other than its current one is stored (the source's version
    /// history): `.s32s3/versions/` and the encrypted hex SHA-256 of bucket, key and version id, each
    /// followed by a NUL (the `null` version as the empty id). Deterministic, so a version is stored under
    /// one name only; keyed by the name encryption, so it reveals nothing of the key.
    ///
    /// # Errors
    /// A crypt error would mean a bug.
    pub fn version_key(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<String> {
        let mut hash = Sha256::new();
        for part in [bucket, key, version_id.unwrap_or_default()] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let name = self.names.encrypt_segment(&hex::encode(hash.finalize())).map_err(|source| {
            Error::Crypt { what: format!("version name of s3://{bucket}/{key}"), source }
        })?;
        Ok(self.meta(&format!("versions/{name}")))
    }

    /// The source bucket and key of a data object rclone's way (no overflow): for backups without manifests.
    ///
    /// # Errors
    /// [`Error::Crypt`] when the name does not decrypt (not written by rclone/s32s3 with this password).
    pub fn decrypt_data_key(&self, stored: &str) -> Result<(String, String)> {
        let rel = stored.strip_prefix(&self.prefix).unwrap_or(stored);
        let plain = self
            .names
            .decrypt_path(rel)
            .map_err(|source| Error::Crypt { what: format!("name {stored}"), source })?;
        match plain.split_once('/') {
            Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
                Ok((bucket.to_owned(), key.to_owned()))
            }
            _ => Err(Error::corrupt(stored, "a data object must be inside a bucket folder")),
        }
    }
}

/// Whether rclone's path model can hold `key` as a file path: no empty segments (`a//b`, a leading or
/// trailing `/`), no `.`/`..` segments, no segment longer than name encryption allows.
#[must_use]
pub fn fits_rclone_path(key: &str) -> bool {
    !key.is_empty()
        && key.split('/').all(|segment| {
            !segment.is_empty() && segment != "." && segment != ".." && segment.len() <= MAX_SEGMENT_LEN
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(prefix: &str) -> Layout {
        Layout::new(&Cipher::new("potato", "sausage").unwrap(), prefix).unwrap()
    }

    #[test]
    fn data_keys_follow_rclone_layout() {
        // The rclone vector (set A, standard/base32): dir/sub/file.txt.
        let stored = layout("").data_key("dir", "sub/file.txt").unwrap();
        assert_eq!(
            stored,
            StoredKey {
                key: "fiooieinr1qr8o3th3fofaipek/sodtmigcit30440p0snsrujo5o/ee1okdgjsatr65qq67i0aih9og"
                    .into(),
                overflow: false
            }
        );
        let stored = layout("backups/x/").data_key("dir", "sub/file.txt").unwrap();
        assert!(stored.key.starts_with("backups/x/fiooieinr1qr8o3th3fofaipek/"), "{}", stored.key);
        assert_eq!(
            layout("backups/x").decrypt_data_key(&stored.key).unwrap(),
            ("dir".into(), "sub/file.txt".into())
        );
    }

    #[test]
    fn keys_rclone_cannot_hold_overflow() {
        let l = layout("p");
        let long_segment = "s".repeat(2048);
        let long_key = "k/".repeat(300) + "end";
        for key in ["a//b", "dir/", "/lead", ".", "a/./b", "a/../b", long_segment.as_str(), long_key.as_str()]
        {
            let stored = l.data_key("bucket", key).unwrap();
            assert!(stored.overflow, "{key:?} should overflow");
            assert!(stored.key.starts_with("p/.s32s3/overflow/"), "{}", stored.key);
            assert!(stored.key.len() <= MAX_KEY_LEN);
            // Deterministic, and distinct per key.
            assert_eq!(l.data_key("bucket", key).unwrap(), stored);
            assert_ne!(l.data_key("other", key).unwrap(), stored);
        }
        for key in ["a b/ü+%.txt", "x", &"s".repeat(143), &format!("d/{}/f", "é".repeat(71))] {
            let stored = l.data_key("bucket", key).unwrap();
            assert!(!stored.overflow, "{key:?}");
            assert!(stored.key.split('/').all(|s| s.len() <= MAX_STORED_SEGMENT), "{}", stored.key);
        }
        // 144 bytes encrypt to 256: too long for MinIO's file system names.
        for key in
            [&"s".repeat(144), &format!("d/{}/f", "s".repeat(300)), &"s".repeat(MAX_SEGMENT_LEN.min(600))]
        {
            assert!(l.data_key("bucket", key).unwrap().overflow, "{key:?}");
        }
    }

    #[test]
    fn version_suffixes_never_share_a_stored_key() {
        let l = layout("");
        // rclone reads both back as `.txt-v2001-02-03-040506-123`.
        let a = l.data_key("b", "d/-v2001-02-03-040506-123.txt").unwrap();
        let b = l.data_key("b", "d/.txt-v2001-02-03-040506-123").unwrap();
        assert_ne!(a.key, b.key);
        assert!(a.overflow && !b.overflow, "{a:?} {b:?}");
        // A suffix rclone reads back unchanged keeps rclone's layout, in clear as rclone writes it.
        let c = l.data_key("b", "photo-v2023-07-17-161032-000.jpg").unwrap();
        assert!(!c.overflow && c.key.ends_with("-v2023-07-17-161032-000"), "{c:?}");
        assert_eq!(
            l.decrypt_data_key(&c.key).unwrap(),
            ("b".into(), "photo-v2023-07-17-161032-000.jpg".into())
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// No two source keys map to one stored key, and every key in rclone's layout reads back as itself.
        #[test]
        fn stored_keys_are_injective(keys in proptest::collection::btree_set(key_strategy(), 1..40)) {
            let l = layout("pre");
            let mut seen = std::collections::BTreeMap::new();
            for key in &keys {
                let stored = l.data_key("bkt", key).unwrap();
                if !stored.overflow {
                    proptest::prop_assert_eq!(l.decrypt_data_key(&stored.key).unwrap(), ("bkt".to_owned(), key.clone()));
                }
                proptest::prop_assert!(stored.key.split('/').all(|s| s.len() <= MAX_STORED_SEGMENT));
                if let Some(other) = seen.insert(stored.key.clone(), key.clone()) {
                    proptest::prop_assert!(false, "{:?} and {:?} share {}", other, key, stored.key);
                }
            }
        }
    }

    /// Keys made of segments that exercise rclone's rules: version suffixes before, after and instead of
    /// extensions, dots, empty segments, long segments.
    fn key_strategy() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let version = Just("-v2001-02-03-040506-123".to_owned());
        let part = prop_oneof![
            "[a-z]{0,3}",
            Just(".".to_owned()),
            Just(".txt".to_owned()),
            version.clone(),
            Just("-v2001-02-30-040506-123".to_owned()),
            "[a-zé]{140,150}",
        ];
        let segment = proptest::collection::vec(part, 0..4).prop_map(|parts| parts.concat());
        proptest::collection::vec(segment, 1..4)
            .prop_map(|segments| segments.join("/"))
            .prop_filter("not empty", |k| !k.is_empty())
    }

    #[test]
    fn prefixes_are_validated() {
        let cipher = Cipher::new("p", "").unwrap();
        assert_eq!(Layout::new(&cipher, "").unwrap().root(), "");
        assert_eq!(Layout::new(&cipher, "a/b/").unwrap().root(), "a/b/");
        assert_eq!(Layout::new(&cipher, "a/b").unwrap().meta("lock"), "a/b/.s32s3/lock");
        for bad in ["/a", "a//b", "a/./b"] {
            let err = Layout::new(&cipher, bad).unwrap_err();
            assert!(err.to_string().contains("backup_prefix"), "{err}");
        }
    }
}
