//! What a run is told: where the stores are, the passwords, the backup bucket and the tuning knobs.
//!
//! The CLI fills these from a TOML file, `S32S3_*` environment variables and flags; a service embedding
//! the engine fills them itself. Nothing here reads the environment.

use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Secret;
use crate::{Error, Result};

/// Where an S3-compatible store is and how to sign requests to it.
#[derive(Clone, Debug)]
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
    /// The region to sign with (`us-east-1` when none is configured).
    #[must_use]
    pub fn signing_region(&self) -> &str {
        if self.region.is_empty() { "us-east-1" } else { &self.region }
    }

    /// Checks the endpoint URL.
    ///
    /// # Errors
    /// [`Error::Config`] when the endpoint is not an `http(s)://` URL.
    pub fn validate(&self, field: &str) -> Result<()> {
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

/// How long a lease lasts by default without renewal (renewed every third of it).
pub const LEASE_TTL: Duration = Duration::from_mins(5);
/// The shortest lease allowed: renewals every third of it must fit a request's round trip.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);

/// What kind of store the source is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

/// Tuning. Defaults suit a small machine talking to a nearby store.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// exponential backoff: see [`crate::store::retry::RetryPolicy`].
    pub retries: u32,
    /// Upload bandwidth limit in bytes per second (`None`: unlimited).
    pub bwlimit: Option<u64>,
    /// A run that would delete more than this percentage of a bucket's objects stops before deleting.
    pub max_delete_percent: u32,
    /// How often an unfinished run writes a checkpoint it can resume from.
    pub checkpoint_interval: Duration,
    /// How long the lease on the backup location lasts without renewal (renewed every third of it).
    pub lease_ttl: Duration,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            transfers: 16,
            checkers: 8,
            multipart_threshold: 32 << 20,
            part_size: 8 << 20,
            part_concurrency: 4,
            memory_limit: 96 << 20,
            retries: 10,
            bwlimit: None,
            max_delete_percent: 50,
            checkpoint_interval: Duration::from_secs(20),
            lease_ttl: LEASE_TTL,
        }
    }
}

impl TransferOptions {
    /// Checks the values, naming the first bad one.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero count, a part size below S3's 5 MiB minimum, or a memory limit too small
    /// for one part.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: String| Err(Error::Config { field: field.into(), reason });
        if self.transfers == 0 {
            return bad("transfers", "must be at least 1".into());
        }
        if self.checkers == 0 {
            return bad("checkers", "must be at least 1".into());
        }
        if self.part_concurrency == 0 {
            return bad("part_concurrency", "must be at least 1".into());
        }
        if self.part_size < 5 << 20 || self.part_size > 5 << 30 {
            return bad("part_size", format!("{} bytes is outside S3's 5 MiB to 5 GiB", self.part_size));
        }
        if self.multipart_threshold < 5 << 20 {
            return bad("multipart_threshold", "must be at least 5 MiB".into());
        }
        if self.memory_limit < 2 * self.part_size + (1 << 20) {
            return bad(
                "memory_limit",
                format!(
                    "{} bytes cannot hold one part ({} bytes) in and out",
                    self.memory_limit, self.part_size
                ),
            );
        }
        if self.max_delete_percent > 100 {
            return bad("max_delete", format!("{} is not a percentage", self.max_delete_percent));
        }
        if self.retries == 0 {
            return bad("retries", "must be at least 1 (one attempt)".into());
        }
        if self.lease_ttl < MIN_LEASE_TTL {
            return bad(
                "lease_ttl",
                format!("{:?} is shorter than the minimum of {:?}", self.lease_ttl, MIN_LEASE_TTL),
            );
        }
        Ok(())
    }
}

/// Everything a backup, restore or verify run needs.
#[derive(Clone, Debug)]
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
}

impl RunConfig {
    /// Checks everything that can be checked without a request, naming the first bad field.
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
        if need_source {
            self.source.validate("source.endpoint")?;
            for (field, value) in [
                ("source.access_key_id", self.source.access_key_id.is_empty()),
                ("source.secret_access_key", self.source.secret_access_key.is_empty()),
            ] {
                if value {
                    return Err(Error::Config { field: field.into(), reason: "is not set".into() });
                }
            }
        }
        self.destination.validate("destination.endpoint")?;
        for (field, value) in [
            ("destination.access_key_id", self.destination.access_key_id.is_empty()),
            ("destination.secret_access_key", self.destination.secret_access_key.is_empty()),
            ("crypt.password", self.password.is_empty()),
        ] {
            if value {
                return Err(Error::Config { field: field.into(), reason: "is not set".into() });
            }
        }
        validate_bucket_name("backup_bucket", &self.backup_bucket)?;
        if self.expiration_days == 0 {
            return Err(Error::Config {
                field: "expiration_days".into(),
                reason: "must be at least 1".into(),
            });
        }
        self.transfer.validate()
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
