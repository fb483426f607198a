//! What a run is told: where the stores are, the passwords, the backup bucket and the tuning knobs.
//!
//! The CLI fills these from a TOML file, `S32S3_*` environment variables and flags; a service embedding
//! the engine fills them itself. Nothing here reads the environment.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// Where an S3-compatible store is and how to sign requests to it.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct S3Endpoint {
    /// Base URL, e.g. `http://127.0.0.1:9000` or `https://s3.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    /// Region used for signing; S3-compatible stores usually accept `us-east-1`.
    pub region: String,
    /// Access key id (not secret: it appears in every request and in server logs).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
}

impl S3Endpoint {
    /// An endpoint with these keys, signing for the default region.
    #[must_use]
    pub fn new(
        endpoint: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: Secret,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            region: String::new(),
            access_key_id: access_key_id.into(),
            secret_access_key,
        }
    }

    /// The same endpoint signing for `region`.
    #[must_use]
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// The region to sign with (`us-east-1` when none is configured).
    #[must_use]
    pub fn signing_region(&self) -> &str {
        if self.region.is_empty() { "us-east-1" } else { &self.region }
    }

    /// Checks the endpoint URL.
    ///
    /// # Errors
    /// [`Error::Config`] when the endpoint is not set or not an `http(s)://` URL.
    pub fn validate(&self, field: &str) -> Result<()> {
        if self.endpoint.is_empty() {
            return Err(Error::Config { field: field.to_owned(), reason: "is not set".into() });
        }
        let ok = (self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://"))
            && reqwest::Url::parse(&self.endpoint).is_ok_and(|u| u.host().is_some());
        if ok {
            Ok(())
        } else {
            Err(Error::Config {
                field: field.to_owned(),
                reason: format!("{:?} is not an http:// or https:// URL", self.endpoint),
            })
        }
    }
}

/// Builder methods that each set one field and return the value: `setters! { /// doc
/// with_name(field: Type); }` for `fn with_name(mut self, field: Type) -> Self`.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident($field:ident: $ty:ty);)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, $field: $ty) -> Self {
                self.$field = $field;
                self
            }
        )*
    };
}
pub(crate) use setters;

/// How long a lease lasts by default without renewal (renewed every third of it).
pub const LEASE_TTL: Duration = Duration::from_mins(5);
/// The shortest lease allowed: renewals every third of it must fit a request's round trip.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);

/// What kind of store the source is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Provider {
    /// Find out: a MinIO whose admin API answers with these keys is administered as MinIO.
    #[default]
    Auto,
    /// MinIO: IAM, bucket metadata and server configuration are exported through the admin API.
    Minio,
    /// AWS S3.
    Aws,
    /// Any other S3-compatible store.
    Other,
}

impl std::str::FromStr for Provider {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Self::Auto),
            "minio" => Ok(Self::Minio),
            "aws" => Ok(Self::Aws),
            "other" => Ok(Self::Other),
            _ => Err(format!("{s:?} is not one of minio, aws, other (or empty to detect)")),
        }
    }
}

/// S3 Object Lock on the backup location: every version s32s3 writes there (but the lease) is retained in
/// this mode, so nothing a listed snapshot needs can be deleted or shortened, by anyone, within its window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ObjectLock {
    /// No retention (the default).
    #[default]
    Off,
    /// `GOVERNANCE`: only a credential with `s3:BypassGovernanceRetention` can delete or shorten early.
    Governance,
    /// `COMPLIANCE`: nobody can, the account's root included.
    Compliance,
}

impl ObjectLock {
    /// The setting's value: `off`, `governance`, `compliance`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Governance => "governance",
            Self::Compliance => "compliance",
        }
    }

    /// S3's name of the mode (`None` when off).
    #[must_use]
    pub fn mode(self) -> Option<&'static str> {
        match self {
            Self::Off => None,
            Self::Governance => Some("GOVERNANCE"),
            Self::Compliance => Some("COMPLIANCE"),
        }
    }
}

impl std::str::FromStr for ObjectLock {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "" | "off" => Ok(Self::Off),
            "governance" => Ok(Self::Governance),
            "compliance" => Ok(Self::Compliance),
            _ => Err(format!("{s:?} is not one of off, governance, compliance")),
        }
    }
}

/// Tuning. Defaults suit a small machine talking to a nearby store: start from
/// [`TransferOptions::default`] and set what differs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferOptions {
    /// Objects copied at once.
    pub transfers: usize,
    /// Buckets listed and configuration documents read at once.
    pub checkers: usize,
    /// Objects larger than this are copied in parts (multipart upload), parts in parallel.
    pub multipart_threshold: u64,
    /// Plaintext bytes per part (rounded up to whole 64 KiB crypt chunks; grown to stay within 10,000 parts).
    pub part_size: u64,
    /// Parts of one object in flight at once.
    pub part_concurrency: usize,
    /// Bytes of object data held in memory at once, over all transfers (plaintext and ciphertext).
    pub memory_limit: u64,
    /// Attempts per request (and per body read) for temporary failures (5xx, 429, timeouts, resets), with
    /// exponential backoff (the storage layer's `RetryPolicy`).
    pub retries: u32,
    /// Upload bandwidth limit in bytes per second (`None`: unlimited).
    pub bwlimit: Option<u64>,
    /// A run that would delete more than this percentage of a bucket's objects stops before deleting.
    pub max_delete_percent: u32,
    /// How often an unfinished run writes a checkpoint it can resume from.
    pub checkpoint_interval: Duration,
    /// How long the lease on the backup location lasts without renewal (renewed every third of it).
    pub lease_ttl: Duration,
    /// Read each unchanged object's tags (`GetObjectTagging`, `transfers` at once) to back up tag-only
    /// changes, which change neither ETag nor last-modified. Not needed on MinIO sources, whose listing
    /// carries the tags at no cost.
    pub check_tags: bool,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            transfers: 16,
            checkers: 8,
            multipart_threshold: 32 << 20,
            part_size: 8 << 20,
            part_concurrency: 4,
            memory_limit: 64 << 20,
            retries: 10,
            bwlimit: None,
            max_delete_percent: 50,
            checkpoint_interval: Duration::from_secs(20),
            lease_ttl: LEASE_TTL,
            check_tags: false,
        }
    }
}

impl TransferOptions {
    /// Checks the values: every bad one, in one error naming the first.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero count, a part size below S3's 5 MiB minimum, or a memory limit too small
    /// for one part.
    pub fn validate(&self) -> Result<()> {
        all_of(self.problems())
    }

    /// Every bad value, as `(field, reason)`.
    #[must_use]
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        let mut check = |failed: bool, field: &str, reason: String| {
            if failed {
                bad.push((field.to_owned(), reason));
            }
        };
        check(self.transfers == 0, "transfers", "must be at least 1".into());
        check(self.checkers == 0, "checkers", "must be at least 1".into());
        check(self.part_concurrency == 0, "part_concurrency", "must be at least 1".into());
        check(
            self.part_size < 5 << 20 || self.part_size > 5 << 30,
            "part_size",
            format!("{} bytes is outside S3's 5 MiB to 5 GiB", self.part_size),
        );
        check(self.multipart_threshold < 5 << 20, "multipart_threshold", "must be at least 5 MiB".into());
        check(
            self.memory_limit < 2 * self.part_size + (1 << 20),
            "memory_limit",
            format!("{} bytes cannot hold one part ({} bytes) in and out", self.memory_limit, self.part_size),
        );
        check(
            self.max_delete_percent > 100,
            "max_delete",
            format!("{} is not a percentage", self.max_delete_percent),
        );
        check(self.retries == 0, "retries", "must be at least 1 (one attempt)".into());
        check(
            self.lease_ttl < MIN_LEASE_TTL,
            "lease_ttl",
            format!("{:?} is shorter than the minimum of {:?}", self.lease_ttl, MIN_LEASE_TTL),
        );
        bad
    }
}

/// `Ok` for no problems; otherwise one [`Error::Config`] naming the first field, with every reason.
fn all_of(problems: Vec<(String, String)>) -> Result<()> {
    let mut problems = problems.into_iter();
    let Some((field, reason)) = problems.next() else { return Ok(()) };
    let reason = problems.fold(reason, |all, (field, reason)| format!("{all}; also {field}: {reason}"));
    Err(Error::Config { field, reason })
}

/// The backup bucket when none is configured.
pub const DEFAULT_BACKUP_BUCKET: &str = "backups";
/// Days old versions and snapshots are kept when nothing else is configured.
pub const DEFAULT_EXPIRATION_DAYS: u32 = 7;

/// Everything a backup, restore or verify run needs. Start from [`RunConfig::new`] (the defaults) and set
/// what differs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RunConfig {
    /// The store that is backed up (and restored into).
    pub source: S3Endpoint,
    /// What the source is.
    pub source_provider: Provider,
    /// The store that holds the backups.
    pub destination: S3Endpoint,
    /// The crypt password (plain, already revealed if it was obscured).
    pub password: Secret,
    /// The crypt salt password (plain; empty: rclone's default salt).
    pub password2: Secret,
    /// The backup bucket on the destination.
    pub backup_bucket: String,
    /// A prefix inside the backup bucket (may be empty).
    pub backup_prefix: String,
    /// Days old versions and snapshots are kept.
    pub expiration_days: u32,
    /// Tuning.
    pub transfer: TransferOptions,
    /// Where temporary files (listings, manifests) go.
    pub work_dir: PathBuf,
    /// What time it is (the system clock, unless a test moves it).
    pub clock: crate::clock::Clock,
    /// Object Lock retention on everything written to the backup location.
    pub object_lock: ObjectLock,
    /// Back up (and, when a restore asks for it, restore) every version and delete marker of versioned
    /// source buckets, not only their current state (DESIGN.md §3.1). Off: nothing changes.
    pub source_versions: bool,
}

impl RunConfig {
    /// A configuration with the defaults: the source detected ([`Provider::Auto`]), rclone's default salt,
    /// the bucket [`DEFAULT_BACKUP_BUCKET`] without a prefix, [`DEFAULT_EXPIRATION_DAYS`], the default
    /// tuning, temporary files in the system's temporary directory and the system clock.
    #[must_use]
    pub fn new(source: S3Endpoint, destination: S3Endpoint, password: Secret) -> Self {
        Self {
            source,
            source_provider: Provider::Auto,
            destination,
            password,
            password2: Secret::default(),
            backup_bucket: DEFAULT_BACKUP_BUCKET.to_owned(),
            backup_prefix: String::new(),
            expiration_days: DEFAULT_EXPIRATION_DAYS,
            transfer: TransferOptions::default(),
            work_dir: std::env::temp_dir(),
            clock: crate::clock::Clock::system(),
            object_lock: ObjectLock::Off,
            source_versions: false,
        }
    }

    /// The same configuration with backups in `bucket` under `prefix` (may be empty).
    #[must_use]
    pub fn with_location(mut self, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        self.backup_bucket = bucket.into();
        self.backup_prefix = prefix.into();
        self
    }

    setters! {
        /// The same configuration keeping old versions and snapshots this many days.
        with_expiration_days(expiration_days: u32);
        /// The same configuration with Object Lock retention on the backup location.
        with_object_lock(object_lock: ObjectLock);
        /// The same configuration backing up the source's version history too.
        with_source_versions(source_versions: bool);
        /// The same configuration with other tuning.
        with_transfer(transfer: TransferOptions);
    }

    /// Checks everything that can be checked without a request: every problem, in one error naming the
    /// first bad field.
    ///
    /// # Errors
    /// [`Error::Config`].
    pub fn validate(&self) -> Result<()> {
        self.validate_for(true)
    }

    /// [`RunConfig::validate`], leaving out the source for commands that only read the backup
    /// (`verify`, `snapshots`).
    ///
    /// # Errors
    /// [`Error::Config`].
    pub fn validate_for(&self, need_source: bool) -> Result<()> {
        all_of(self.problems(need_source))
    }

    /// Every problem, as `(field, reason)`, in the order the fields are documented.
    #[must_use]
    pub fn problems(&self, need_source: bool) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        let mut endpoint = |side: &str, e: &S3Endpoint| {
            if let Err(Error::Config { field, reason }) = e.validate(&format!("{side}.endpoint")) {
                bad.push((field, reason));
            }
            for (field, unset) in [
                ("access_key_id", e.access_key_id.is_empty()),
                ("secret_access_key", e.secret_access_key.is_empty()),
            ] {
                if unset {
                    bad.push((format!("{side}.{field}"), "is not set".into()));
                }
            }
        };
        if need_source {
            endpoint("source", &self.source);
        }
        endpoint("destination", &self.destination);
        if self.password.is_empty() {
            bad.push(("crypt.password".into(), "is not set".into()));
        }
        if let Err(Error::Config { field, reason }) =
            validate_bucket_name("backup_bucket", &self.backup_bucket)
        {
            bad.push((field, reason));
        }
        if self.expiration_days == 0 {
            bad.push(("expiration_days".into(), "must be at least 1".into()));
        }
        bad.extend(self.transfer.problems());
        bad
    }
}

/// Checks an S3 bucket name (3–63 characters of `a-z0-9.-`, starting and ending with a letter or digit).
///
/// # Errors
/// [`Error::Config`] naming `field`.
pub fn validate_bucket_name(field: &str, name: &str) -> Result<()> {
    let ok = (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && name.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric);
    if ok {
        Ok(())
    } else {
        Err(Error::Config {
            field: field.into(),
            reason: format!("{name:?} is not a valid bucket name (3-63 characters of a-z, 0-9, '.', '-')"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        TransferOptions::default().validate().unwrap();
    }

    #[test]
    fn each_bad_option_is_named() {
        type Breaker = fn(&mut TransferOptions);
        let cases: [(&str, Breaker); 7] = [
            ("transfers", |o| o.transfers = 0),
            ("part_size", |o| o.part_size = 1 << 20),
            ("multipart_threshold", |o| o.multipart_threshold = 1),
            ("memory_limit", |o| o.memory_limit = 1 << 20),
            ("max_delete", |o| o.max_delete_percent = 101),
            ("retries", |o| o.retries = 0),
            ("lease_ttl", |o| o.lease_ttl = Duration::from_millis(500)),
        ];
        for (field, break_it) in cases {
            let mut o = TransferOptions::default();
            break_it(&mut o);
            let err = o.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn bucket_names() {
        for good in ["abc", "my-bucket.1", &"a".repeat(63)] {
            validate_bucket_name("b", good).unwrap();
        }
        for bad in ["ab", "-abc", "abc-", "ABC", "a_b", &"a".repeat(64), ".s32s3"] {
            assert!(
                validate_bucket_name("backup_bucket", bad).unwrap_err().to_string().contains("backup_bucket")
            );
        }
    }

    #[test]
    fn providers_parse() {
        assert_eq!("MinIO".parse::<Provider>(), Ok(Provider::Minio));
        assert_eq!("".parse::<Provider>(), Ok(Provider::Auto));
        assert!("ceph".parse::<Provider>().is_err());
    }
}
