//! The backup bucket: checking it before anything is written (password, format), preparing it (bucket,
//! versioning, lifecycle rules merged with the user's) and the `.s32s3/config.json` it carries.

use base64::Engine as _;
use s32s3_crypt::Cipher;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use time::OffsetDateTime;

use crate::error::S3ErrorKind;
use crate::error::{Error, Result};
use crate::format::layout::Layout;
use crate::store::s3::RuleAction;
use crate::store::{LifecycleRule, ObjectAttrs, Store, WriteCondition};

/// The `format` of `.s32s3/config.json`.
pub const CONFIG_FORMAT: &str = "s32s3-backup";
/// The backup format version written. Version 2 added run records (retention windows), the 255-byte
/// limit on stored name segments and the round-trip rule for names (see the project's `DESIGN.md`);
/// version 1 locations are read, and upgraded by the next backup. Versions before 2 refuse version 2
/// locations, so an older s32s3 cannot write into one without run records.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version read.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

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
    /// Since when every run that may replace stored versions writes a run record (RFC 3339; format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_records_since: Option<String>,
}

impl BackupConfigFile {
    /// A new config file for `cipher`.
    ///
    /// # Errors
    /// [`Error::Crypt`] when the random nonce cannot be drawn.
    pub fn new(cipher: &Cipher, now: OffsetDateTime) -> Result<Self> {
        let blob =
            cipher.key_check_blob().map_err(|source| Error::Crypt { what: "key check".into(), source })?;
        Ok(Self {
            format: CONFIG_FORMAT.into(),
            version: FORMAT_VERSION,
            filename_encryption: "standard".into(),
            filename_encoding: "base32".into(),
            directory_name_encryption: true,
            key_check: base64::engine::general_purpose::STANDARD.encode(blob),
            created: crate::clock::format_rfc3339(now),
            run_records_since: Some(crate::clock::format_rfc3339(now)),
        })
    }

    /// Since when the location writes run records (`None`: a format 1 location).
    #[must_use]
    pub fn records_since(&self) -> Option<OffsetDateTime> {
        let since = self.run_records_since.as_deref()?;
        OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339).ok()
    }

    /// Checks the format and that `cipher` holds the password the backup was written with.
    ///
    /// # Errors
    /// [`Error::WrongPassword`], or [`Error::Corrupt`] for a format this version cannot read.
    pub fn check(&self, cipher: &Cipher, location: &str) -> Result<()> {
        if self.format != CONFIG_FORMAT {
            return Err(Error::corrupt(location, format!("not an s32s3 backup (format {:?})", self.format)));
        }
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&self.version) {
            return Err(Error::corrupt(
                location,
                format!(
                    "backup format version {} is not supported by this s32s3 (it reads {OLDEST_FORMAT_VERSION} to \
                     {FORMAT_VERSION}); use a newer s32s3",
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
    /// The ETag of config.json, to replace it only as it was read.
    pub config_etag: Option<String>,
}

impl DestinationState {
    /// Since when the location writes run records (`None`: no config, or format 1).
    #[must_use]
    pub fn records_since(&self) -> Option<OffsetDateTime> {
        self.config.as_ref().and_then(BackupConfigFile::records_since)
    }
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
        return Ok(DestinationState { bucket_exists: false, config: None, config_etag: None });
    }
    let key = layout.meta("config.json");
    let location = format!("s3://{bucket}/{key}");
    if let Some((bytes, etag)) = get_small_with_etag(dest, bucket, &key).await? {
        let config: BackupConfigFile =
            serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(&location, e.to_string()))?;
        config.check(cipher, &location)?;
        Ok(DestinationState { bucket_exists: true, config: Some(config), config_etag: Some(etag) })
    } else {
        check_foreign_names(dest, bucket, layout).await?;
        Ok(DestinationState { bucket_exists: true, config: None, config_etag: None })
    }
}

/// With no config.json, any data objects present were written by rclone (or are foreign): their names
/// must decrypt with this password, or writing more would mix keys in one bucket.
async fn check_foreign_names(dest: &Store, bucket: &str, layout: &Layout) -> Result<()> {
    let listed = dest.list_first(bucket, Some(layout.root()), 20).await?;
    let meta_prefix = layout.meta("");
    for object in &listed {
        let key = object.key.as_str();
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

/// Creates the bucket when it is missing (with Object Lock when `lock` is on) and turns versioning on
/// (both idempotent: done before the lease, which lives in the bucket). With `lock` on, an existing bucket
/// without Object Lock is refused before anything is written.
///
/// # Errors
/// S3 failures; [`Error::Config`] for an existing bucket without Object Lock.
pub async fn ensure_bucket(
    dest: &Store,
    bucket: &str,
    state: &DestinationState,
    lock: crate::options::ObjectLock,
) -> Result<()> {
    let locked = lock.mode().is_some();
    if !state.bucket_exists {
        dest.create_bucket(bucket, locked).await?;
    } else if locked && !dest.object_lock_enabled(bucket).await? {
        return Err(Error::Config {
            field: "object_lock".into(),
            reason: format!(
                "is {}, but the backup bucket {bucket:?} has no Object Lock: enable it on the bucket \
                 (`aws s3api put-object-lock-configuration --bucket {bucket} --object-lock-configuration \
                 ObjectLockEnabled=Enabled`, on a versioned bucket) or back up into a new bucket, which \
                 s32s3 creates with Object Lock",
                lock.name()
            ),
        });
    }
    if !dest.versioning_enabled(bucket).await? {
        dest.enable_versioning(bucket).await?;
    }
    Ok(())
}

/// Writes config.json under the lease: a new one for a new location, or the format 1 one upgraded to
/// format 2 (keeping its key check), recording since when run records are written. Returns that time.
///
/// # Errors
/// S3 failures.
pub async fn ensure_config(
    dest: &Store,
    bucket: &str,
    layout: &Layout,
    cipher: &Cipher,
    state: &DestinationState,
    now: OffsetDateTime,
) -> Result<OffsetDateTime> {
    let config = match &state.config {
        Some(config) if config.version == FORMAT_VERSION => {
            if let Some(since) = config.records_since() {
                return Ok(since);
            }
            BackupConfigFile { run_records_since: Some(crate::clock::format_rfc3339(now)), ..config.clone() }
        }
        Some(config) => BackupConfigFile {
            version: FORMAT_VERSION,
            run_records_since: Some(crate::clock::format_rfc3339(now)),
            ..config.clone()
        },
        None => BackupConfigFile::new(cipher, now)?,
    };
    let body = serde_json::to_vec_pretty(&config).expect("config serializes");
    let key = layout.meta("config.json");
    // Replace exactly what was read, or create only if there is none.
    let condition = match &state.config_etag {
        Some(etag) => WriteCondition::Replace(etag),
        None => WriteCondition::Create,
    };
    let put = dest
        .put(bucket, &key, bytes::Bytes::from(body), &ObjectAttrs::typed("application/json"), condition)
        .await;
    match put {
        Ok(_) => Ok(now),
        // Another writer got there between our read and now: check what is there like any existing one.
        Err(Error::S3(e)) if e.kind == S3ErrorKind::PreconditionFailed => {
            let again = inspect(dest, bucket, layout, cipher).await?;
            again.records_since().ok_or(Error::S3(e))
        }
        Err(e) => Err(e),
    }
}

/// The ids of s32s3's rules for the location at `root`: the plain ids for the bucket's root, ids with a
/// hash of the prefix otherwise, so locations under different prefixes of one bucket keep each other's
/// rules.
fn rule_ids(root: &str) -> [String; 3] {
    let suffix = if root.is_empty() {
        String::new()
    } else {
        format!("-{}", &hex::encode(sha2::Sha256::digest(root.as_bytes()))[..12])
    };
    [RULE_NONCURRENT, RULE_DELETE_MARKERS, RULE_MULTIPART].map(|id| format!("{id}{suffix}"))
}

/// Whether `rule` applies to at least some of the objects under `root`.
fn covers(rule: &LifecycleRule, root: &str) -> bool {
    let prefix = rule.prefix();
    rule.enabled() && (root.starts_with(prefix) || prefix.starts_with(root))
}

/// The smallest noncurrent-version expiration (days) of the enabled rules that apply under `root`: what
/// really expires the versions of this location (`None`: nothing does).
#[must_use]
pub fn effective_expiration(rules: &[LifecycleRule], root: &str) -> Option<u32> {
    rules.iter().filter(|r| covers(r, root)).filter_map(LifecycleRule::noncurrent_days).min()
}

/// The bucket's lifecycle rules (`None`: the destination does not implement lifecycle configuration).
async fn lifecycle_rules(dest: &Store, bucket: &str) -> Result<Option<Vec<LifecycleRule>>> {
    match dest.lifecycle(bucket).await {
        Ok(rules) => Ok(Some(rules)),
        Err(Error::S3(e)) if e.kind == S3ErrorKind::NotFound => Ok(Some(Vec::new())),
        Err(Error::S3(e)) if e.kind == S3ErrorKind::NotImplemented => Ok(None),
        Err(e) => Err(e),
    }
}

/// The noncurrent-version expiration in effect for the location now, read from the live lifecycle.
///
/// # Errors
/// S3 failures.
pub async fn live_expiration(dest: &Store, bucket: &str, layout: &Layout) -> Result<Option<u32>> {
    Ok(lifecycle_rules(dest, bucket).await?.and_then(|rules| effective_expiration(&rules, layout.root())))
}

/// What [`plan_lifecycle`] found and what [`apply_lifecycle`] will write.
#[derive(Clone, Debug)]
pub struct LifecyclePlan {
    /// The rules to write (`None`: nothing to change).
    write: Option<Vec<LifecycleRule>>,
    /// The destination implements lifecycle configuration.
    supported: bool,
    /// The expiration in effect before the change.
    pub days_before: Option<u32>,
    /// The expiration in effect after it.
    pub days_after: Option<u32>,
}

impl LifecyclePlan {
    /// Whether applying it changes the expiration in effect.
    #[must_use]
    pub fn changes_expiration(&self) -> bool {
        self.write.is_some() && self.days_before != self.days_after
    }
}

/// Reads the bucket's lifecycle and plans s32s3's three rules into it (noncurrent versions expire after
/// `expiration_days`, expired delete markers go, incomplete uploads are aborted after a day), keeping
/// every other rule, those of other prefixes' s32s3 locations included.
///
/// # Errors
/// S3 failures; [`Error::Config`] for a rule that expires *current* versions under the location (it would
/// delete what snapshots name without any run replacing it).
pub async fn plan_lifecycle(
    dest: &Store,
    bucket: &str,
    layout: &Layout,
    expiration_days: u32,
) -> Result<LifecyclePlan> {
    let Some(existing) = lifecycle_rules(dest, bucket).await? else {
        return Ok(LifecyclePlan { write: None, supported: false, days_before: None, days_after: None });
    };
    let root = layout.root();
    let ids = rule_ids(root);
    let ours = |rule: &LifecycleRule| {
        rule.id().is_some_and(|id| {
            ids.iter().any(|ours| ours == id)
                // Rules of earlier versions had the plain ids whatever the prefix.
                || ([RULE_NONCURRENT, RULE_DELETE_MARKERS, RULE_MULTIPART].contains(&id) && rule.prefix() == root)
        })
    };
    for rule in existing.iter().filter(|r| !ours(r) && covers(r, root)) {
        if rule.expires_current() {
            return Err(Error::Config {
                field: "backup_bucket".into(),
                reason: format!(
                    "lifecycle rule {:?} of s3://{bucket} expires current object versions under s3://{bucket}/{root}: \
                     it would delete what snapshots name; remove the rule or limit it to other prefixes",
                    rule.id().unwrap_or_default()
                ),
            });
        }
    }
    let new = our_rules(root, &ids, expiration_days);
    let mut rules: Vec<LifecycleRule> = existing.iter().filter(|r| !ours(r)).cloned().collect();
    rules.extend(new.iter().cloned());
    let unchanged =
        existing.len() == rules.len() && new.iter().all(|rule| existing.iter().any(|e| e == rule));
    Ok(LifecyclePlan {
        days_before: effective_expiration(&existing, root),
        days_after: effective_expiration(&rules, root),
        write: (!unchanged).then_some(rules),
        supported: true,
    })
}

/// Writes the planned lifecycle (a destination without lifecycle support gets a warning: old versions
/// will not expire by themselves).
///
/// # Errors
/// S3 failures.
pub async fn apply_lifecycle(
    dest: &Store,
    bucket: &str,
    plan: &LifecyclePlan,
    warn: &dyn Fn(&str),
) -> Result<()> {
    if !plan.supported {
        warn("the destination does not support lifecycle rules; old versions will not expire by themselves");
        return Ok(());
    }
    let Some(rules) = &plan.write else { return Ok(()) };
    let put = dest.put_lifecycle(bucket, rules).await;
    match put {
        Ok(()) => Ok(()),
        Err(Error::S3(e)) if e.kind == S3ErrorKind::NotImplemented => {
            warn(&format!(
                "the destination does not support lifecycle rules ({e}); old versions will not expire by themselves"
            ));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn our_rules(prefix: &str, ids: &[String; 3], expiration_days: u32) -> Vec<LifecycleRule> {
    vec![
        LifecycleRule::new(&ids[0], prefix, RuleAction::ExpireNoncurrent(expiration_days)),
        LifecycleRule::new(&ids[1], prefix, RuleAction::RemoveExpiredDeleteMarkers),
        LifecycleRule::new(&ids[2], prefix, RuleAction::AbortIncompleteUploads),
    ]
}

/// GETs a small object whole (request and body retried together); `None` when it does not exist.
///
/// # Errors
/// S3 failures other than "not found".
pub async fn get_small(store: &Store, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
    Ok(get_small_with_etag(store, bucket, key).await?.map(|(body, _)| body))
}

/// [`get_small`] with the object's ETag.
async fn get_small_with_etag(store: &Store, bucket: &str, key: &str) -> Result<Option<(Vec<u8>, String)>> {
    Ok(store
        .get_if_exists(bucket, key)
        .await?
        .map(|(head, body)| (body.to_vec(), head.etag.unwrap_or_default())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_prefix_has_its_own_rule_ids() {
        let root = rule_ids("");
        assert_eq!(root[0], RULE_NONCURRENT);
        let a = rule_ids("team-a/");
        let b = rule_ids("team-b/");
        assert!(a[0].starts_with(RULE_NONCURRENT) && a[0] != root[0] && a[0] != b[0], "{a:?} {b:?}");
        assert!(a.iter().all(|id| id.len() <= 255));
    }

    #[test]
    fn the_smallest_expiration_covering_the_location_counts() {
        let expire =
            |id: &str, prefix: &str, days| LifecycleRule::new(id, prefix, RuleAction::ExpireNoncurrent(days));
        let rules =
            vec![expire("ours", "backups/", 7), expire("users-all", "", 30), expire("other", "logs/", 1)];
        assert_eq!(effective_expiration(&rules, "backups/"), Some(7));
        assert_eq!(effective_expiration(&rules, "elsewhere/"), Some(30));
        // A rule for a part of the location expires part of it: it counts.
        assert_eq!(effective_expiration(&rules, ""), Some(1));
        let disabled = vec![expire("off", "", 1).with_enabled(false)];
        assert_eq!(effective_expiration(&disabled, ""), None);
    }
}
