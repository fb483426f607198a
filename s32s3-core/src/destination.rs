//! The backup bucket: checking it before anything is written (password, format), preparing it (bucket,
//! versioning, lifecycle rules merged with the user's) and the `.s32s3/config.json` it carries.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketVersioningStatus, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration,
    VersioningConfiguration,
};
use base64::Engine as _;
use s32s3_crypt::Cipher;
use serde::{Deserialize, Serialize};

use crate::error::S3ErrorKind;
use crate::layout::Layout;
use crate::s3::Store;
use crate::{Error, Result};

/// The `format` of `.s32s3/config.json`.
pub const CONFIG_FORMAT: &str = "s32s3-backup";
/// The backup format version written and understood.
pub const FORMAT_VERSION: u32 = 1;

/// IDs of the lifecycle rules s32s3 owns; rules with other IDs belong to the user and are kept.
pub const RULE_NONCURRENT: &str = "s32s3-expire-noncurrent-versions";
/// See [`RULE_NONCURRENT`].
pub const RULE_DELETE_MARKERS: &str = "s32s3-remove-expired-delete-markers";
/// See [`RULE_NONCURRENT`].
pub const RULE_MULTIPART: &str = "s32s3-abort-incomplete-multipart-uploads";

/// `.s32s3/config.json`: what a reader needs to know before touching anything else. Plain JSON: it holds
/// no secret (the key check is ciphertext).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupConfigFile {
    /// Always [`CONFIG_FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// rclone `filename_encryption` of the data objects.
    pub filename_encryption: String,
    /// rclone `filename_encoding`.
    pub filename_encoding: String,
    /// rclone `directory_name_encryption`.
    pub directory_name_encryption: bool,
    /// A known plaintext encrypted with the data key (base64): a wrong password fails to decrypt it.
    pub key_check: String,
    /// When the backup bucket was first used (RFC 3339).
    pub created: String,
}

impl BackupConfigFile {
    /// A new config file for `cipher`.
    ///
    /// # Errors
    /// [`Error::Crypt`] when the random nonce cannot be drawn.
    pub fn new(cipher: &Cipher) -> Result<Self> {
        let blob =
            cipher.key_check_blob().map_err(|source| Error::Crypt { what: "key check".into(), source })?;
        Ok(Self {
            format: CONFIG_FORMAT.into(),
            version: FORMAT_VERSION,
            filename_encryption: "standard".into(),
            filename_encoding: "base32".into(),
            directory_name_encryption: true,
            key_check: base64::engine::general_purpose::STANDARD.encode(blob),
            created: crate::now_rfc3339(),
        })
    }

    /// Checks the format and that `cipher` holds the password the backup was written with.
    ///
    /// # Errors
    /// [`Error::WrongPassword`], or [`Error::Corrupt`] for a format this version cannot read.
    pub fn check(&self, cipher: &Cipher, location: &str) -> Result<()> {
        if self.format != CONFIG_FORMAT {
            return Err(Error::corrupt(location, format!("not an s32s3 backup (format {:?})", self.format)));
        }
        if self.version != FORMAT_VERSION {
            return Err(Error::corrupt(
                location,
                format!(
                    "backup format version {} is not supported by this s32s3 (it reads {FORMAT_VERSION})",
                    self.version
                ),
            ));
        }
        if (
            self.filename_encryption.as_str(),
            self.filename_encoding.as_str(),
            self.directory_name_encryption,
        ) != ("standard", "base32", true)
        {
            return Err(Error::corrupt(
                location,
                "name encryption settings other than standard/base32/directories are not supported",
            ));
        }
        let blob = base64::engine::general_purpose::STANDARD
            .decode(&self.key_check)
            .map_err(|e| Error::corrupt(location, format!("bad key_check: {e}")))?;
        cipher.verify_key_check(&blob).map_err(|_| Error::WrongPassword {
            detail: format!(
                "the crypt password (or password2) does not match the one {location} was written with"
            ),
        })
    }
}

/// What the destination looked like before this run wrote anything.
#[derive(Clone, Debug)]
pub struct DestinationState {
    /// The backup bucket exists.
    pub bucket_exists: bool,
    /// `.s32s3/config.json`, when present (already checked against the password).
    pub config: Option<BackupConfigFile>,
}

/// Reads and checks the backup bucket without writing: bucket exists, config.json matches the password;
/// without a config.json, existing data objects (an rclone-made backup) must decrypt with the password.
///
/// # Errors
/// [`Error::WrongPassword`], S3 failures (bad credentials, unreachable, …), [`Error::Corrupt`].
pub async fn inspect(
    dest: &Store,
    bucket: &str,
    layout: &Layout,
    cipher: &Cipher,
) -> Result<DestinationState> {
    if !dest.bucket_exists(bucket).await? {
        return Ok(DestinationState { bucket_exists: false, config: None });
    }
    let key = layout.meta("config.json");
    let location = format!("s3://{bucket}/{key}");
    if let Some(bytes) = get_small(dest, bucket, &key).await? {
        let config: BackupConfigFile =
            serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(&location, e.to_string()))?;
        config.check(cipher, &location)?;
        Ok(DestinationState { bucket_exists: true, config: Some(config) })
    } else {
        check_foreign_names(dest, bucket, layout).await?;
        Ok(DestinationState { bucket_exists: true, config: None })
    }
}

/// With no config.json, any data objects present were written by rclone (or are foreign): their names
/// must decrypt with this password, or writing more would mix keys in one bucket.
async fn check_foreign_names(dest: &Store, bucket: &str, layout: &Layout) -> Result<()> {
    let out = dest
        .client()
        .list_objects_v2()
        .bucket(bucket)
        .set_prefix((!layout.root().is_empty()).then(|| layout.root().to_owned()))
        .max_keys(20)
        .send()
        .await
        .map_err(|e| dest.err("ListObjectsV2", bucket, None, e))?;
    let meta_prefix = layout.meta("");
    for object in out.contents() {
        let key = object.key().unwrap_or_default();
        if key.starts_with(&meta_prefix) || key.ends_with('/') {
            continue;
        }
        if layout.decrypt_data_key(key).is_err() {
            return Err(Error::WrongPassword {
                detail: format!(
                    "s3://{bucket}/{key} is in the backup location but its name does not decrypt with this \
                     password; refusing to mix keys (choose another backup bucket or prefix)"
                ),
            });
        }
    }
    Ok(())
}

/// Creates what is missing: the bucket, versioning, config.json, and s32s3's lifecycle rules.
///
/// # Errors
/// S3 failures; a destination without versioning support is an error (point-in-time restore needs it).
pub async fn prepare(
    dest: &Store,
    bucket: &str,
    layout: &Layout,
    cipher: &Cipher,
    state: &DestinationState,
    expiration_days: u32,
    warn: &dyn Fn(&str),
) -> Result<()> {
    if !state.bucket_exists {
        dest.client()
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| dest.err("CreateBucket", bucket, None, e))?;
    }
    let versioning = dest
        .client()
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| dest.err("GetBucketVersioning", bucket, None, e))?;
    if versioning.status() != Some(&BucketVersioningStatus::Enabled) {
        dest.client()
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
            )
            .send()
            .await
            .map_err(|e| dest.err("PutBucketVersioning", bucket, None, e))?;
    }
    if state.config.is_none() {
        let config = BackupConfigFile::new(cipher)?;
        let body = serde_json::to_vec_pretty(&config).expect("config serializes");
        let key = layout.meta("config.json");
        let put = dest
            .client()
            .put_object()
            .bucket(bucket)
            .key(&key)
            .if_none_match("*")
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await;
        match put {
            Ok(_) => {}
            // Another run created it between our check and now: check it like any existing one.
            Err(e) => match dest.err("PutObject", bucket, Some(&key), e) {
                Error::S3(e) if e.kind == S3ErrorKind::PreconditionFailed => {
                    let again = inspect(dest, bucket, layout, cipher).await?;
                    if again.config.is_none() {
                        return Err(Error::S3(e));
                    }
                }
                e => return Err(e),
            },
        }
    }
    merge_lifecycle(dest, bucket, layout, expiration_days, warn).await
}

/// Puts s32s3's three rules into the bucket's lifecycle configuration, keeping every other rule.
async fn merge_lifecycle(
    dest: &Store,
    bucket: &str,
    layout: &Layout,
    expiration_days: u32,
    warn: &dyn Fn(&str),
) -> Result<()> {
    let existing = match dest.client().get_bucket_lifecycle_configuration().bucket(bucket).send().await {
        Ok(out) => out.rules().to_vec(),
        Err(e) => match dest.err("GetBucketLifecycleConfiguration", bucket, None, e) {
            Error::S3(e) if e.kind == S3ErrorKind::NotFound => Vec::new(),
            e => return Err(e),
        },
    };
    let ours = our_rules(layout.root(), expiration_days);
    let mut rules: Vec<LifecycleRule> =
        existing.iter().filter(|r| !r.id().is_some_and(|id| id.starts_with("s32s3-"))).cloned().collect();
    rules.extend(ours.iter().cloned());
    let unchanged =
        existing.len() == rules.len() && ours.iter().all(|rule| existing.iter().any(|e| e == rule));
    if unchanged {
        return Ok(());
    }
    let config =
        BucketLifecycleConfiguration::builder().set_rules(Some(rules)).build().expect("rules are set");
    let put = dest
        .client()
        .put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(config)
        .send()
        .await;
    match put {
        Ok(_) => Ok(()),
        Err(e) => match dest.err("PutBucketLifecycleConfiguration", bucket, None, e) {
            Error::S3(e) if e.kind == S3ErrorKind::NotImplemented => {
                warn(&format!(
                    "the destination does not support lifecycle rules ({e}); old versions will not expire by \
                     themselves"
                ));
                Ok(())
            }
            e => Err(e),
        },
    }
}

fn our_rules(prefix: &str, expiration_days: u32) -> Vec<LifecycleRule> {
    let days = i32::try_from(expiration_days).unwrap_or(i32::MAX);
    let filter = || LifecycleRuleFilter::builder().prefix(prefix).build();
    vec![
        LifecycleRule::builder()
            .id(RULE_NONCURRENT)
            .status(ExpirationStatus::Enabled)
            .filter(filter())
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder().noncurrent_days(days).build(),
            )
            .build()
            .expect("status is set"),
        LifecycleRule::builder()
            .id(RULE_DELETE_MARKERS)
            .status(ExpirationStatus::Enabled)
            .filter(filter())
            .expiration(LifecycleExpiration::builder().expired_object_delete_marker(true).build())
            .build()
            .expect("status is set"),
        LifecycleRule::builder()
            .id(RULE_MULTIPART)
            .status(ExpirationStatus::Enabled)
            .filter(filter())
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder().days_after_initiation(1).build(),
            )
            .build()
            .expect("status is set"),
    ]
}

/// GETs a small object whole; `None` when it does not exist.
///
/// # Errors
/// S3 failures other than "not found".
pub async fn get_small(store: &Store, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
    match store.client().get_object().bucket(bucket).key(key).send().await {
        Ok(out) => {
            let body = crate::transfer::read_body(out.body, store.side(), bucket, key, 0).await?;
            Ok(Some(body.to_vec()))
        }
        Err(e) => match store.err("GetObject", bucket, Some(key), e) {
            Error::S3(e) if e.kind == S3ErrorKind::NotFound => Ok(None),
            e => Err(e),
        },
    }
}
