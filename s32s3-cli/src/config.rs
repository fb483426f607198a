//! The configuration contract shared by backup, restore, verify, snapshots and the daemon:
//! a TOML file (`--config FILE`), then `S32S3_*` environment variables, then flags — flags win.
//! The names mirror the Helm chart's values (`source.endpoint` ↔ `S32S3_SOURCE_ENDPOINT` ↔
//! `--source-endpoint`).
//!
//! One type, [`ConfigLayer`], is both the TOML file (serde) and the flags with their environment variables
//! (clap): each setting is declared once, with its flag, variable and key, and every field is an `Option`
//! (unset). The layers — flags and environment (clap applies those two), the file, an imported rclone.conf —
//! are stacked by [`Merge`], and only the merged layer is defaulted and checked.
//!
//! Every invalid field is reported with its name; secrets are never printed (see [`Effective::masked`]; in
//! the layers they are [`Secret`]s, whose `Debug` is redacted).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use s32s3_core::{Provider, RunConfig, S3Endpoint, Secret, TransferOptions};
use serde::{Deserialize, Deserializer};

pub use crate::error::ConfigError;
use crate::rclone_conf::{RcloneConf, RemoteEndpoint};

/// A configuration layer over a lower one: what `self` sets wins, what it leaves unset comes from `lower`.
trait Merge {
    /// `self` over `lower`.
    #[must_use]
    fn merge(self, lower: Self) -> Self;
}

impl<T> Merge for Option<T> {
    fn merge(self, lower: Self) -> Self {
        self.or(lower)
    }
}

/// Declares a layer struct and implements [`Merge`] for it field by field, so that a field is named only
/// where it is declared. A field is an `Option` (a setting) or another layer (a section).
macro_rules! layer {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field:ident: $type:ty,)*
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$field_meta])* $field: $type,)*
        }

        impl Merge for $name {
            fn merge(self, lower: Self) -> Self {
                Self { $($field: Merge::merge(self.$field, lower.$field),)* }
            }
        }
    };
}

layer! {
    /// `[source]`, `--source-*`, `S32S3_SOURCE_*`: the store backed up and restored into.
    #[derive(Args, Clone, Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    #[allow(clippy::struct_field_names)] // prefixed like the flags (`--source-endpoint`); the keys drop it
    struct SourceLayer {
        /// Source endpoint URL (the store backed up and restored into).
        #[arg(long, env = "S32S3_SOURCE_ENDPOINT", help_heading = "Source")]
        #[serde(rename = "endpoint")]
        source_endpoint: Option<String>,
        /// Source access key id.
        #[arg(long, env = "S32S3_SOURCE_ACCESS_KEY_ID", help_heading = "Source")]
        #[serde(rename = "access_key_id")]
        source_access_key_id: Option<String>,
        /// Source secret access key (prefer the environment variable or the file).
        #[arg(long, env = "S32S3_SOURCE_SECRET_ACCESS_KEY", hide_env_values = true, help_heading = "Source")]
        #[serde(rename = "secret_access_key", deserialize_with = "secret")]
        source_secret_access_key: Option<Secret>,
        /// Source region (default us-east-1).
        #[arg(long, env = "S32S3_SOURCE_REGION", help_heading = "Source")]
        #[serde(rename = "region")]
        source_region: Option<String>,
        /// Source provider: minio, aws or other (empty: detect MinIO).
        #[arg(long, env = "S32S3_SOURCE_PROVIDER", help_heading = "Source")]
        #[serde(rename = "provider")]
        source_provider: Option<String>,
    }
}

layer! {
    /// `[destination]`, `--destination-*`, `S32S3_DESTINATION_*`: the store holding the backups.
    #[derive(Args, Clone, Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    #[allow(clippy::struct_field_names)] // prefixed like the flags (`--source-endpoint`); the keys drop it
    struct DestinationLayer {
        /// Destination endpoint URL (the store holding the backups).
        #[arg(long, env = "S32S3_DESTINATION_ENDPOINT", help_heading = "Destination")]
        #[serde(rename = "endpoint")]
        destination_endpoint: Option<String>,
        /// Destination access key id.
        #[arg(long, env = "S32S3_DESTINATION_ACCESS_KEY_ID", help_heading = "Destination")]
        #[serde(rename = "access_key_id")]
        destination_access_key_id: Option<String>,
        /// Destination secret access key (prefer the environment variable or the file).
        #[arg(
            long,
            env = "S32S3_DESTINATION_SECRET_ACCESS_KEY",
            hide_env_values = true,
            help_heading = "Destination"
        )]
        #[serde(rename = "secret_access_key", deserialize_with = "secret")]
        destination_secret_access_key: Option<Secret>,
        /// Destination region (default us-east-1).
        #[arg(long, env = "S32S3_DESTINATION_REGION", help_heading = "Destination")]
        #[serde(rename = "region")]
        destination_region: Option<String>,
        /// Destination provider (informational: minio, aws or other).
        #[arg(long, env = "S32S3_DESTINATION_PROVIDER", help_heading = "Destination")]
        #[serde(rename = "provider")]
        destination_provider: Option<String>,
    }
}

layer! {
    /// `[crypt]`, `--crypt-*`, `S32S3_CRYPT_*`: the rclone crypt passwords.
    #[derive(Args, Clone, Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    #[allow(clippy::struct_field_names)] // prefixed like the flags (`--source-endpoint`); the keys drop it
    struct CryptLayer {
        /// The crypt password (rclone's `password`), plain unless --crypt-obscured.
        #[arg(long, env = "S32S3_CRYPT_PASSWORD", hide_env_values = true, help_heading = "Encryption")]
        #[serde(rename = "password", deserialize_with = "secret")]
        crypt_password: Option<Secret>,
        /// The crypt salt password (rclone's `password2`); empty: rclone's default salt.
        #[arg(long, env = "S32S3_CRYPT_PASSWORD2", hide_env_values = true, help_heading = "Encryption")]
        #[serde(rename = "password2", deserialize_with = "secret")]
        crypt_password2: Option<Secret>,
        /// The crypt passwords are rclone-obscured (as in rclone.conf).
        #[arg(long, env = "S32S3_CRYPT_OBSCURED", help_heading = "Encryption")]
        #[serde(rename = "obscured")]
        crypt_obscured: Option<bool>,
    }
}

layer! {
    /// One layer of the whole configuration: the TOML file, or the flags with their `S32S3_*` environment
    /// variables. The sections are TOML tables (`[source]`) and flag prefixes (`--source-`); the other
    /// settings are top-level keys.
    #[derive(Args, Clone, Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct ConfigLayer {
        #[command(flatten)]
        source: SourceLayer,
        #[command(flatten)]
        destination: DestinationLayer,
        #[command(flatten)]
        crypt: CryptLayer,

        /// Bucket on the destination that holds the backups [default: backups].
        #[arg(long, env = "S32S3_BACKUP_BUCKET", help_heading = "Backup location")]
        backup_bucket: Option<String>,
        /// Prefix inside the backup bucket.
        #[arg(long, env = "S32S3_BACKUP_PREFIX", help_heading = "Backup location")]
        backup_prefix: Option<String>,
        /// Days old versions and snapshots are kept [default: 7].
        #[arg(long, env = "S32S3_EXPIRATION_DAYS", help_heading = "Backup location")]
        expiration_days: Option<u32>,
        /// S3 Object Lock on the backup bucket: off, governance or compliance. When on, every version
        /// written there (but the lease) is retained until its snapshots' window has passed [default: off].
        #[arg(long, env = "S32S3_OBJECT_LOCK", help_heading = "Backup location", value_name = "MODE")]
        object_lock: Option<String>,
        /// Back up every version and delete marker of versioned source buckets, not only their current
        /// state; `restore` then replays each key's history into versioned buckets [default: false].
        #[arg(
            long,
            env = "S32S3_SOURCE_VERSIONS",
            help_heading = "Backup location",
            num_args = 0..=1,
            default_missing_value = "true",
            value_name = "BOOL"
        )]
        source_versions: Option<bool>,

        /// Objects copied at once [default: 16].
        #[arg(long, env = "S32S3_TRANSFERS", help_heading = "Tuning")]
        transfers: Option<usize>,
        /// Buckets listed and configurations read at once [default: 8].
        #[arg(long, env = "S32S3_CHECKERS", help_heading = "Tuning")]
        checkers: Option<usize>,
        /// Upload bandwidth limit per second (`10M`, `off`) [default: off].
        #[arg(long, env = "S32S3_BWLIMIT", help_heading = "Tuning")]
        bwlimit: Option<SizeValue>,
        /// Objects above this size are copied in parallel parts [default: 32M].
        #[arg(long, env = "S32S3_MULTIPART_THRESHOLD", help_heading = "Tuning")]
        multipart_threshold: Option<SizeValue>,
        /// Part size for multipart copies [default: 8M].
        #[arg(long, env = "S32S3_PART_SIZE", help_heading = "Tuning")]
        part_size: Option<SizeValue>,
        /// Parts of one object in flight at once [default: 4].
        #[arg(long, env = "S32S3_PART_CONCURRENCY", help_heading = "Tuning")]
        part_concurrency: Option<usize>,
        /// Object data held in memory at once [default: 64M].
        #[arg(long, env = "S32S3_MEMORY_LIMIT", help_heading = "Tuning")]
        memory_limit: Option<SizeValue>,
        /// Attempts per request for temporary failures, with exponential backoff [default: 10].
        #[arg(long, env = "S32S3_RETRIES", help_heading = "Tuning")]
        retries: Option<u32>,
        /// Stop before deleting more than this percentage of a bucket's objects [default: 50].
        #[arg(long, env = "S32S3_MAX_DELETE", help_heading = "Tuning")]
        max_delete: Option<u32>,
        /// How often an unfinished backup writes a checkpoint (`20s`, `5m`) [default: 20s].
        #[arg(long, env = "S32S3_CHECKPOINT_INTERVAL", help_heading = "Tuning")]
        checkpoint_interval: Option<String>,
        /// How long the lease on the backup location lasts without renewal (`5m`, `30s`) [default: 5m].
        #[arg(long, env = "S32S3_LEASE_TTL", help_heading = "Tuning")]
        lease_ttl: Option<String>,
        /// Read each unchanged object's tags (one `GetObjectTagging` each) so tag-only changes are backed
        /// up; MinIO sources need not: their listing carries the tags [default: false].
        #[arg(
            long,
            env = "S32S3_CHECK_TAGS",
            help_heading = "Tuning",
            num_args = 0..=1,
            default_missing_value = "true",
            value_name = "BOOL"
        )]
        check_tags: Option<bool>,
        /// Directory for temporary files [default: the system's].
        #[arg(long, env = "S32S3_WORK_DIR", help_heading = "Tuning")]
        work_dir: Option<PathBuf>,

        /// Log level: error, warn, info, debug, trace (rclone's ERROR, NOTICE, INFO, DEBUG too) [default: info].
        #[arg(long, env = "S32S3_LOG_LEVEL", help_heading = "Output")]
        log_level: Option<String>,
        /// Log format: text or json [default: text].
        #[arg(long, env = "S32S3_LOG_FORMAT", help_heading = "Output")]
        log_format: Option<String>,

        /// Daemon schedule, standard 5-field cron in UTC.
        #[arg(long, env = "S32S3_SCHEDULE", help_heading = "Daemon")]
        schedule: Option<String>,
        /// Daemon: also verify the newest complete snapshot on this schedule (5-field cron, UTC), never
        /// while a backup runs [default: never].
        #[arg(long, env = "S32S3_VERIFY_SCHEDULE", help_heading = "Daemon")]
        verify_schedule: Option<String>,
        /// Daemon: percentage of the objects whose data each scheduled verify reads (0 to 100; 0: sizes
        /// only) [default: 0].
        #[arg(long, env = "S32S3_VERIFY_READ_DATA_SUBSET", value_name = "PERCENT", help_heading = "Daemon")]
        verify_read_data_subset: Option<NumberValue>,
    }
}

/// A secret in the file: a string, wrapped at once so that no `Debug` of a layer prints it.
fn secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Secret>, D::Error> {
    String::deserialize(deserializer).map(|text| Some(Secret::new(text)))
}

/// A size: in TOML a number of bytes or a string with a suffix (`64M`, `64MiB`, `1G`, `off`), on the
/// command line a string. Parsed (by [`parse_size`]) only once merged, so that a bad value is reported by
/// its field's name wherever it came from.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// A number: in TOML a number (or a string), on the command line a string. Parsed only once merged, like
/// [`SizeValue`], so that a malformed value is one line naming its field.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum NumberValue {
    Number(f64),
    Text(String),
}

impl From<String> for NumberValue {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl NumberValue {
    fn parse(&self, field: &str) -> Result<f64> {
        match self {
            Self::Number(n) => Ok(*n),
            Self::Text(text) => text
                .trim()
                .parse()
                .map_err(|_| ConfigError::invalid(field, format!("{text:?} is not a number")).into()),
        }
    }
}

impl From<String> for SizeValue {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl SizeValue {
    fn text(&self) -> String {
        match self {
            Self::Bytes(n) => n.to_string(),
            Self::Text(s) => s.clone(),
        }
    }
}

impl From<RemoteEndpoint> for SourceLayer {
    fn from(remote: RemoteEndpoint) -> Self {
        Self {
            source_endpoint: remote.endpoint,
            source_access_key_id: remote.access_key_id,
            source_secret_access_key: remote.secret_access_key.map(Secret::new),
            source_region: remote.region,
            source_provider: remote.provider,
        }
    }
}

impl From<RemoteEndpoint> for DestinationLayer {
    fn from(remote: RemoteEndpoint) -> Self {
        Self {
            destination_endpoint: remote.endpoint,
            destination_access_key_id: remote.access_key_id,
            destination_secret_access_key: remote.secret_access_key.map(Secret::new),
            destination_region: remote.region,
            destination_provider: remote.provider,
        }
    }
}

impl SourceLayer {
    /// The endpoint, unset parts empty.
    fn s3(&self) -> S3Endpoint {
        S3Endpoint::new(
            self.source_endpoint.clone().unwrap_or_default(),
            self.source_access_key_id.clone().unwrap_or_default(),
            self.source_secret_access_key.clone().unwrap_or_default(),
        )
        .with_region(self.source_region.clone().unwrap_or_default())
    }
}

impl DestinationLayer {
    /// The endpoint, unset parts empty.
    fn s3(&self) -> S3Endpoint {
        S3Endpoint::new(
            self.destination_endpoint.clone().unwrap_or_default(),
            self.destination_access_key_id.clone().unwrap_or_default(),
            self.destination_secret_access_key.clone().unwrap_or_default(),
        )
        .with_region(self.destination_region.clone().unwrap_or_default())
    }
}

/// The configuration flags of every command that talks to S3: the file to read, the flags (each also read
/// from its `S32S3_*` environment variable) that override it, and an rclone.conf to import under both.
#[derive(Args, Clone, Debug, Default)]
pub struct ConfigArgs {
    /// The TOML configuration file.
    #[arg(long, short = 'c', env = "S32S3_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    layer: ConfigLayer,
    #[command(flatten)]
    rclone: RcloneImportArgs,
}

/// `--rclone-config FILE --source-remote NAME: --destination-remote NAME:`: the lowest layer.
#[derive(Args, Clone, Debug, Default)]
struct RcloneImportArgs {
    /// An rclone.conf to take remotes from (with --source-remote / --destination-remote).
    #[arg(long, env = "S32S3_RCLONE_CONFIG", value_name = "FILE", help_heading = "rclone.conf import")]
    rclone_config: Option<PathBuf>,
    /// The rclone remote to back up (an S3 remote, `NAME:`).
    #[arg(long, env = "S32S3_SOURCE_REMOTE", value_name = "NAME:", help_heading = "rclone.conf import")]
    source_remote: Option<String>,
    /// The rclone remote that holds the backups: a crypt remote (`NAME:`) or an S3 remote with the bucket
    /// (`NAME:bucket[/prefix]`).
    #[arg(long, env = "S32S3_DESTINATION_REMOTE", value_name = "NAME:", help_heading = "rclone.conf import")]
    destination_remote: Option<String>,
}

/// What an rclone.conf gives: a layer (the endpoints, the backup bucket and prefix) and a crypt remote's
/// passwords, already revealed. The passwords are not in the layer because they are taken as a pair, and
/// only where no other layer sets either one (see [`CryptLayer::passwords`]).
#[derive(Debug, Default)]
struct Imported {
    layer: ConfigLayer,
    passwords: (Option<String>, Option<String>),
}

/// Output settings, resolved before the rest so errors can be logged in the right format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSettings {
    /// `tracing` filter directive.
    pub level: String,
    /// Logs as JSON lines.
    pub json: bool,
}

/// The effective configuration of a run, plus what only the CLI needs.
#[derive(Clone, Debug)]
pub struct Effective {
    /// What the engine gets.
    pub run: RunConfig,
    /// Destination provider (informational).
    pub destination_provider: String,
    /// The passwords were obscured and have been revealed.
    pub obscured: bool,
    /// The daemon's schedule.
    pub schedule: Option<String>,
    /// The daemon's verify schedule.
    pub verify_schedule: Option<String>,
    /// The percentage of objects a scheduled verify reads.
    pub verify_read_data_subset: Option<f64>,
    /// Log settings.
    pub output: OutputSettings,
}

/// Loads the TOML file named by `--config`/`S32S3_CONFIG`, if any.
fn load_file(path: Option<&Path>) -> Result<ConfigLayer> {
    let Some(path) = path else { return Ok(ConfigLayer::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("config file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        let message = e.message().to_owned();
        let location = e
            .span()
            .map(|span| {
                let line = text[..span.start].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        ConfigError::invalid(format!("config file {}{location}", path.display()), message).into()
    })
}

impl ConfigArgs {
    /// The flags (and their environment variables) over the file: everything the user gave, except an
    /// rclone.conf import.
    pub fn load(&self) -> Result<ConfigLayer> {
        Ok(self.layer.clone().merge(load_file(self.config.as_deref())?))
    }

    /// [`Self::effective`], with every field checked. `need_source`: the command talks to the source
    /// (backup, restore).
    pub fn resolve(&self, given: ConfigLayer, need_source: bool) -> Result<Effective> {
        let effective = self.effective(given)?;
        effective.validate(need_source)?;
        Ok(effective)
    }

    /// `given` (from [`Self::load`]) over the rclone.conf import over the defaults. Values that cannot be
    /// parsed are errors; missing or out-of-range ones are left for [`Effective::problems`].
    pub fn effective(&self, given: ConfigLayer) -> Result<Effective> {
        let output = given.output()?;
        let imported = self.rclone.import()?;
        given.merge(imported.layer).effective(output, imported.passwords)
    }
}

impl RcloneImportArgs {
    /// The remotes named by --source-remote / --destination-remote in --rclone-config (nothing without it).
    fn import(&self) -> Result<Imported> {
        let Some(path) = &self.rclone_config else {
            if self.source_remote.is_some() || self.destination_remote.is_some() {
                bail!(ConfigError::invalid(
                    "rclone_config",
                    "--source-remote/--destination-remote need --rclone-config FILE"
                ));
            }
            return Ok(Imported::default());
        };
        let conf = RcloneConf::load(path)?;
        let mut imported = Imported::default();
        if let Some(remote) = &self.source_remote {
            imported.layer.source = conf.source(remote)?.into();
        }
        if let Some(remote) = &self.destination_remote {
            let destination = conf.destination(remote)?;
            imported.layer.destination = destination.endpoint.into();
            imported.layer.backup_bucket = destination.bucket;
            imported.layer.backup_prefix = destination.prefix;
            imported.passwords = (destination.password, destination.password2);
        }
        Ok(imported)
    }
}

impl ConfigLayer {
    /// Output settings (needed before anything else can be reported).
    pub fn output(&self) -> Result<OutputSettings> {
        let level = self.log_level.as_deref().unwrap_or("info");
        let level = match level.to_ascii_lowercase().as_str() {
            "error" => "error",
            "warn" | "warning" | "notice" => "warn",
            "info" => "info",
            "debug" => "debug",
            "trace" => "trace",
            _ => {
                return Err(ConfigError::invalid(
                    "log_level",
                    format!("{level:?} is not one of error, warn, info, debug, trace"),
                )
                .into());
            }
        };
        let format = self.log_format.as_deref().unwrap_or("text");
        let json = match format.to_ascii_lowercase().as_str() {
            "text" => false,
            "json" => true,
            _ => {
                return Err(
                    ConfigError::invalid("log_format", format!("{format:?} is not text or json")).into()
                );
            }
        };
        Ok(OutputSettings { level: level.into(), json })
    }

    /// The merged layer with the defaults filled in: what a run uses.
    fn effective(
        self,
        output: OutputSettings,
        imported: (Option<String>, Option<String>),
    ) -> Result<Effective> {
        let source_provider: Provider = self
            .source
            .source_provider
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|reason: String| ConfigError::invalid("source.provider", reason))?;
        let verify_read_data_subset = self
            .verify_read_data_subset
            .as_ref()
            .map(|value| value.parse("verify_read_data_subset"))
            .transpose()?;
        let object_lock: s32s3_core::ObjectLock = self
            .object_lock
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|reason: String| ConfigError::invalid("object_lock", reason))?;
        let (password, password2) = self.crypt.passwords(imported)?;
        let transfer = self.transfer()?;
        let mut run =
            RunConfig::new(self.source.s3(), self.destination.s3(), password).with_transfer(transfer);
        run.source_provider = source_provider;
        run.password2 = password2;
        run.object_lock = object_lock;
        run.source_versions = self.source_versions.unwrap_or(false);
        if let Some(bucket) = self.backup_bucket.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
            bucket.clone_into(&mut run.backup_bucket);
        }
        run.backup_prefix = self.backup_prefix.unwrap_or_default();
        if let Some(days) = self.expiration_days {
            run.expiration_days = days;
        }
        if let Some(dir) = self.work_dir {
            run.work_dir = dir;
        }
        Ok(Effective {
            run,
            destination_provider: self.destination.destination_provider.unwrap_or_default(),
            obscured: self.crypt.crypt_obscured.unwrap_or(false),
            schedule: self.schedule,
            verify_schedule: self.verify_schedule,
            verify_read_data_subset,
            output,
        })
    }

    /// The tuning settings over [`TransferOptions::default`].
    fn transfer(&self) -> Result<TransferOptions> {
        let defaults = TransferOptions::default();
        // `None`: unset; `Some(None)`: `off`.
        let size = |field: &str, value: &Option<SizeValue>| -> Result<Option<Option<u64>>> {
            value
                .as_ref()
                .map(|value| {
                    parse_size(&value.text()).map_err(|reason| ConfigError::invalid(field, reason).into())
                })
                .transpose()
        };
        let duration = |field: &str, value: &Option<String>, default: Duration| -> Result<Duration> {
            value.as_deref().map_or(Ok(default), |text| {
                parse_duration(text).map_err(|reason| ConfigError::invalid(field, reason).into())
            })
        };
        // In this order, so that the first bad field reported stays the same.
        let bwlimit = size("bwlimit", &self.bwlimit)?.flatten().filter(|v| *v > 0);
        let checkpoint_interval =
            duration("checkpoint_interval", &self.checkpoint_interval, defaults.checkpoint_interval)?;
        let lease_ttl = duration("lease_ttl", &self.lease_ttl, defaults.lease_ttl)?;
        // `off` is 0 here: out of range, reported by `TransferOptions::validate`.
        let size_or = |field, value, default| -> Result<u64> {
            Ok(size(field, value)?.map_or(default, |v| v.unwrap_or(0)))
        };
        let mut options = defaults.clone();
        options.transfers = self.transfers.unwrap_or(defaults.transfers);
        options.checkers = self.checkers.unwrap_or(defaults.checkers);
        options.multipart_threshold =
            size_or("multipart_threshold", &self.multipart_threshold, defaults.multipart_threshold)?;
        options.part_size = size_or("part_size", &self.part_size, defaults.part_size)?;
        options.part_concurrency = self.part_concurrency.unwrap_or(defaults.part_concurrency);
        options.memory_limit = size_or("memory_limit", &self.memory_limit, defaults.memory_limit)?;
        options.retries = self.retries.unwrap_or(defaults.retries);
        options.bwlimit = bwlimit;
        options.max_delete_percent = self.max_delete.unwrap_or(defaults.max_delete_percent);
        options.checkpoint_interval = checkpoint_interval;
        options.lease_ttl = lease_ttl;
        options.check_tags = self.check_tags.unwrap_or(defaults.check_tags);
        Ok(options)
    }
}

impl CryptLayer {
    /// The passwords, revealed if they are obscured; where neither is set (or both are empty), a crypt
    /// remote's from rclone.conf (already revealed).
    fn passwords(&self, imported: (Option<String>, Option<String>)) -> Result<(Secret, Secret)> {
        let obscured = self.crypt_obscured.unwrap_or(false);
        let reveal = |field: &str, value: &Option<Secret>| -> Result<Secret> {
            let value = value.clone().unwrap_or_default();
            if !obscured || value.is_empty() {
                return Ok(value);
            }
            s32s3_crypt::reveal(value.expose())
                .map(Secret::new)
                .map_err(|e| ConfigError::invalid(field, e.to_string()).into())
        };
        let password = reveal("crypt.password", &self.crypt_password)?;
        let password2 = reveal("crypt.password2", &self.crypt_password2)?;
        if password.is_empty() && password2.is_empty() {
            let (password, password2) = imported;
            return Ok((
                Secret::new(password.unwrap_or_default()),
                Secret::new(password2.unwrap_or_default()),
            ));
        }
        Ok((password, password2))
    }
}

impl Effective {
    /// Every invalid field as `field: reason`, one per line (empty when all are fine): the library's
    /// checks of the run configuration, then the CLI's own (the daemon's schedules).
    pub fn problems(&self, need_source: bool) -> Vec<String> {
        let mut problems: Vec<String> = self
            .run
            .problems(need_source)
            .into_iter()
            .map(|(field, reason)| format!("{field}: {reason}"))
            .collect();
        for (field, schedule) in [("schedule", &self.schedule), ("verify_schedule", &self.verify_schedule)] {
            if let Some(schedule) = schedule
                && let Err(e) = crate::schedule::Schedule::parse(schedule)
            {
                problems.push(format!("{field}: {e}"));
            }
        }
        if let Some(percent) = self.verify_read_data_subset
            && !(0.0..=100.0).contains(&percent)
        {
            problems
                .push(format!("verify_read_data_subset: {percent} is not a percentage between 0 and 100"));
        }
        problems
    }

    fn validate(&self, need_source: bool) -> Result<()> {
        let problems = self.problems(need_source);
        if let Some(first) = problems.first() {
            let (field, reason) = first.split_once(": ").unwrap_or(("configuration", first));
            let more = if problems.len() > 1 {
                format!(" (and {} more: run `s32s3 config check`)", problems.len() - 1)
            } else {
                String::new()
            };
            bail!(ConfigError::invalid(field, format!("{reason}{more}")));
        }
        Ok(())
    }

    /// The configuration as `KEY = value` lines with every secret masked.
    pub fn masked(&self) -> String {
        let run = &self.run;
        let mask = |s: &Secret| if s.is_empty() { "(not set)".to_owned() } else { "******".to_owned() };
        let or_unset = |s: &str| if s.is_empty() { "(not set)".to_owned() } else { s.to_owned() };
        let t = &run.transfer;
        let lines = [
            ("source.endpoint", or_unset(&run.source.endpoint)),
            ("source.access_key_id", or_unset(&run.source.access_key_id)),
            ("source.secret_access_key", mask(&run.source.secret_access_key)),
            ("source.region", run.source.signing_region().to_owned()),
            ("source.provider", format!("{:?}", run.source_provider).to_ascii_lowercase()),
            ("destination.endpoint", or_unset(&run.destination.endpoint)),
            ("destination.access_key_id", or_unset(&run.destination.access_key_id)),
            ("destination.secret_access_key", mask(&run.destination.secret_access_key)),
            ("destination.region", run.destination.signing_region().to_owned()),
            ("destination.provider", or_unset(&self.destination_provider)),
            ("crypt.password", mask(&run.password)),
            ("crypt.password2", mask(&run.password2)),
            ("crypt.obscured", self.obscured.to_string()),
            ("backup_bucket", run.backup_bucket.clone()),
            ("backup_prefix", run.backup_prefix.clone()),
            ("expiration_days", run.expiration_days.to_string()),
            ("object_lock", run.object_lock.name().to_owned()),
            ("source_versions", run.source_versions.to_string()),
            ("transfers", t.transfers.to_string()),
            ("checkers", t.checkers.to_string()),
            ("bwlimit", t.bwlimit.map_or_else(|| "off".into(), |b| format!("{b} bytes/s"))),
            ("multipart_threshold", t.multipart_threshold.to_string()),
            ("part_size", t.part_size.to_string()),
            ("part_concurrency", t.part_concurrency.to_string()),
            ("memory_limit", t.memory_limit.to_string()),
            ("retries", t.retries.to_string()),
            ("max_delete", format!("{}%", t.max_delete_percent)),
            ("checkpoint_interval", format!("{}s", t.checkpoint_interval.as_secs())),
            ("lease_ttl", format!("{}s", t.lease_ttl.as_secs())),
            ("check_tags", t.check_tags.to_string()),
            ("work_dir", run.work_dir.display().to_string()),
            ("log_level", self.output.level.clone()),
            ("log_format", if self.output.json { "json".into() } else { "text".into() }),
            ("schedule", self.schedule.clone().unwrap_or_else(|| "(not set)".into())),
            ("verify_schedule", self.verify_schedule.clone().unwrap_or_else(|| "(not set)".into())),
            ("verify_read_data_subset", format!("{}%", self.verify_read_data_subset.unwrap_or(0.0))),
        ];
        lines.iter().fold(String::new(), |mut out, (k, v)| {
            out.push_str(k);
            out.push_str(" = ");
            out.push_str(v);
            out.push('\n');
            out
        })
    }
}

/// Parses a size: bytes, or a number with a binary suffix (`k`, `M`, `G`, `T`, optionally `i`/`iB`/`B`, as
/// rclone's), or `off` (→ `None`).
pub fn parse_size(text: &str) -> std::result::Result<Option<u64>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    let number: f64 =
        number.parse().map_err(|_| format!("{text:?} is not a size (like 64M, 1G or 1048576)"))?;
    let unit: u64 = match suffix.trim().to_ascii_lowercase().trim_end_matches('b').trim_end_matches('i') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("{text:?} has an unknown unit (use k, M, G or T)")),
    };
    if number < 0.0 || !number.is_finite() {
        return Err(format!("{text:?} is not a size"));
    }
    Ok(Some((number * unit as f64) as u64))
}

/// Parses a duration: `30s`, `5m`, `2h`, `1d`, or plain seconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration (like 30s, 5m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{text:?} has an unknown unit (use s, m, h or d)")),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(Some(1 << 20)));
        assert_eq!(parse_size("64M"), Ok(Some(64 << 20)));
        assert_eq!(parse_size("64Mi"), Ok(Some(64 << 20)));
        assert_eq!(parse_size("64MiB"), Ok(Some(64 << 20)));
        assert_eq!(parse_size("1.5G"), Ok(Some(3 << 29)));
        assert_eq!(parse_size("10k"), Ok(Some(10 << 10)));
        assert_eq!(parse_size("off"), Ok(None));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_mins(5)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("5 years").is_err());
    }

    /// A layer as the TOML file gives it.
    fn file(text: &str) -> ConfigLayer {
        toml::from_str(text).unwrap()
    }

    fn exposed(secret: Option<&Secret>) -> Option<&str> {
        secret.map(Secret::expose)
    }

    #[test]
    fn the_higher_layer_wins_field_by_field() {
        let high = file(
            r#"
            transfers = 3
            log_level = "debug"
            [source]
            endpoint = "http://high:9000"
            [destination]
            secret_access_key = "high-secret"
            [crypt]
            password2 = "high-salt"
            "#,
        );
        let low = file(
            r#"
            transfers = 5
            checkers = 6
            log_level = "warn"
            schedule = "0 3 * * *"
            [source]
            endpoint = "http://low:9000"
            access_key_id = "LOW"
            [destination]
            secret_access_key = "low-secret"
            region = "eu-west-1"
            [crypt]
            password = "low-password"
            password2 = "low-salt"
            "#,
        );
        let merged = high.merge(low);
        // Set in both: the higher layer's.
        assert_eq!(merged.transfers, Some(3));
        assert_eq!(merged.log_level.as_deref(), Some("debug"));
        assert_eq!(merged.source.source_endpoint.as_deref(), Some("http://high:9000"));
        assert_eq!(exposed(merged.destination.destination_secret_access_key.as_ref()), Some("high-secret"));
        assert_eq!(exposed(merged.crypt.crypt_password2.as_ref()), Some("high-salt"));
        // Unset in the higher layer: the lower one's.
        assert_eq!(merged.checkers, Some(6));
        assert_eq!(merged.schedule.as_deref(), Some("0 3 * * *"));
        assert_eq!(merged.source.source_access_key_id.as_deref(), Some("LOW"));
        assert_eq!(merged.destination.destination_region.as_deref(), Some("eu-west-1"));
        assert_eq!(exposed(merged.crypt.crypt_password.as_ref()), Some("low-password"));
        // Unset in both: unset, for the defaults to fill in.
        assert_eq!(merged.retries, None);
        assert_eq!(merged.source.source_region, None);
        assert_eq!(merged.crypt.crypt_obscured, None);
    }

    #[test]
    fn an_unset_layer_changes_nothing() {
        let layer = file(
            r#"
            part_size = "6M"
            work_dir = "/var/tmp"
            [source]
            provider = "aws"
            [destination]
            endpoint = "http://dst:9000"
            [crypt]
            obscured = true
            "#,
        );
        let shown = format!("{layer:?}");
        assert_eq!(format!("{:?}", ConfigLayer::default().merge(layer.clone())), shown);
        assert_eq!(format!("{:?}", layer.merge(ConfigLayer::default())), shown);
    }

    #[test]
    fn flags_fill_the_layer_and_secrets_are_not_shown() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: ConfigArgs,
        }
        let args = <Cli as clap::Parser>::try_parse_from([
            "s32s3",
            "--config",
            "s32s3.toml",
            "--source-endpoint",
            "http://src:9000",
            "--destination-secret-access-key",
            "flag-destination-secret",
            "--crypt-password",
            "flag-crypt-password",
            "--crypt-obscured",
            "true",
            "--bwlimit",
            "10M",
            "--log-format",
            "json",
            "--schedule",
            "*/5 * * * *",
            "--source-remote",
            "src:",
        ])
        .unwrap()
        .args;
        let layer = &args.layer;
        assert_eq!(args.config.as_deref(), Some(Path::new("s32s3.toml")));
        assert_eq!(layer.source.source_endpoint.as_deref(), Some("http://src:9000"));
        assert_eq!(
            exposed(layer.destination.destination_secret_access_key.as_ref()),
            Some("flag-destination-secret")
        );
        assert_eq!(exposed(layer.crypt.crypt_password.as_ref()), Some("flag-crypt-password"));
        assert_eq!(layer.crypt.crypt_obscured, Some(true));
        assert_eq!(layer.bwlimit.as_ref().map(SizeValue::text).as_deref(), Some("10M"));
        assert_eq!(layer.log_format.as_deref(), Some("json"));
        assert_eq!(layer.schedule.as_deref(), Some("*/5 * * * *"));
        assert_eq!(args.rclone.source_remote.as_deref(), Some("src:"));
        let shown = format!("{args:?}");
        assert!(shown.contains("http://src:9000"), "{shown}");
        for secret in ["flag-destination-secret", "flag-crypt-password"] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
        let from_file = file("[source]\nsecret_access_key = \"file-source-secret\"\n");
        assert!(!format!("{from_file:?}").contains("file-source-secret"));
    }

    #[test]
    fn verify_settings_are_checked_by_name() {
        let effective = |toml: &str| ConfigArgs::default().effective(file(toml));
        let e = effective("verify_schedule = \"0 4 * * 0\"\nverify_read_data_subset = 10\n").unwrap();
        assert_eq!(e.verify_schedule.as_deref(), Some("0 4 * * 0"));
        assert_eq!(e.verify_read_data_subset, Some(10.0));
        assert!(!e.problems(false).iter().any(|p| p.starts_with("verify")), "{:?}", e.problems(false));
        assert!(e.masked().contains("verify_schedule = 0 4 * * 0\nverify_read_data_subset = 10%\n"));
        // As a string too (flags and environment variables are strings).
        assert_eq!(
            effective("verify_read_data_subset = \" 2.5 \"").unwrap().verify_read_data_subset,
            Some(2.5)
        );
        let err = effective("verify_read_data_subset = \"lots\"").unwrap_err().to_string();
        assert!(err.contains("verify_read_data_subset") && err.contains("\"lots\" is not a number"), "{err}");
        let e = effective("verify_schedule = \"every sunday\"\nverify_read_data_subset = 150").unwrap();
        let problems = e.problems(false);
        assert!(problems.iter().any(|p| p.starts_with("verify_schedule: \"every sunday\"")), "{problems:?}");
        assert!(
            problems
                .contains(&"verify_read_data_subset: 150 is not a percentage between 0 and 100".to_owned()),
            "{problems:?}"
        );
        // Unset: no verification.
        let e = effective("").unwrap();
        assert_eq!((e.verify_schedule, e.verify_read_data_subset), (None, None));
    }

    #[test]
    fn source_versions_is_off_unless_set() {
        let effective = |toml: &str| ConfigArgs::default().effective(file(toml));
        let off = effective("").unwrap();
        assert!(!off.run.source_versions);
        assert!(off.masked().contains("source_versions = false\n"));
        let on = effective("source_versions = true").unwrap();
        assert!(on.run.source_versions);
        assert!(on.masked().contains("source_versions = true\n"));
    }

    #[test]
    fn object_lock_is_one_of_three_modes() {
        let effective = |toml: &str| ConfigArgs::default().effective(file(toml));
        assert_eq!(effective("").unwrap().run.object_lock, s32s3_core::ObjectLock::Off);
        let e = effective("object_lock = \"Governance\"").unwrap();
        assert_eq!(e.run.object_lock, s32s3_core::ObjectLock::Governance);
        assert!(e.masked().contains("object_lock = governance\n"));
        assert_eq!(
            effective("object_lock = \"compliance\"").unwrap().run.object_lock,
            s32s3_core::ObjectLock::Compliance
        );
        let err = effective("object_lock = \"sometimes\"").unwrap_err().to_string();
        assert!(
            err.contains("object_lock") && err.contains("not one of off, governance, compliance"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    /// An rclone.conf with an S3 source, an S3 destination and a crypt remote over it (passwords
    /// "potato" and "pepper").
    fn rclone_conf(dir: &Path) -> PathBuf {
        let path = dir.join("rclone.conf");
        let text = format!(
            "[src]\ntype = s3\nendpoint = http://rc-src:9000\naccess_key_id = RCSRC\nsecret_access_key = \
             rc-src-secret\nregion = rc-region\n\n[dst]\ntype = s3\nendpoint = http://rc-dst:9000\n\
             access_key_id = RCDST\nsecret_access_key = rc-dst-secret\n\n[vault]\ntype = crypt\n\
             remote = dst:rc-bucket/rc-prefix\npassword = {}\npassword2 = {}\n",
            s32s3_crypt::obscure("potato").unwrap(),
            s32s3_crypt::obscure("pepper").unwrap(),
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `flags` with `--config` (a file of `toml`) and the rclone.conf's remotes `src:` and `vault:`.
    fn with_file_and_rclone_conf(dir: &Path, flags: ConfigLayer, toml: &str) -> ConfigArgs {
        let config = dir.join("s32s3.toml");
        std::fs::write(&config, toml).unwrap();
        ConfigArgs {
            config: Some(config),
            layer: flags,
            rclone: RcloneImportArgs {
                rclone_config: Some(rclone_conf(dir)),
                source_remote: Some("src:".into()),
                destination_remote: Some("vault:".into()),
            },
        }
    }

    #[test]
    fn flags_over_file_over_rclone_conf_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let flags = ConfigLayer {
            source: SourceLayer { source_endpoint: Some("http://flag:9000".into()), ..Default::default() },
            crypt: CryptLayer { crypt_password: Some("flag-password".into()), ..Default::default() },
            transfers: Some(3),
            ..Default::default()
        };
        let toml = "checkers = 5\nbackup_prefix = \"file-prefix\"\n[source]\naccess_key_id = \"FILE\"\n";
        let args = with_file_and_rclone_conf(dir.path(), flags, toml);
        let effective = args.effective(args.load().unwrap()).unwrap();
        let run = &effective.run;
        // The source: one field from each layer.
        assert_eq!(run.source.endpoint, "http://flag:9000");
        assert_eq!(run.source.access_key_id, "FILE");
        assert_eq!(run.source.secret_access_key.expose(), "rc-src-secret");
        assert_eq!(run.source.region, "rc-region");
        // The destination and the backup location.
        assert_eq!(run.destination.endpoint, "http://rc-dst:9000");
        assert_eq!(run.backup_bucket, "rc-bucket");
        assert_eq!(run.backup_prefix, "file-prefix");
        assert_eq!(run.expiration_days, 7);
        // Tuning and output.
        assert_eq!(run.transfer.transfers, 3);
        assert_eq!(run.transfer.checkers, 5);
        assert_eq!(run.transfer.part_concurrency, TransferOptions::default().part_concurrency);
        assert_eq!(effective.output, OutputSettings { level: "info".into(), json: false });
        assert_eq!(effective.schedule, None);
        // A password set above rclone.conf: the crypt remote's pair is not used, not even its salt.
        assert_eq!(run.password.expose(), "flag-password");
        assert_eq!(run.password2.expose(), "");
    }

    #[test]
    fn a_crypt_remote_gives_its_passwords_only_where_no_layer_sets_either() {
        let dir = tempfile::tempdir().unwrap();
        // Already revealed: `obscured` (for the other layers' passwords) does not apply to them.
        let args =
            with_file_and_rclone_conf(dir.path(), ConfigLayer::default(), "[crypt]\nobscured = true\n");
        let run = args.effective(args.load().unwrap()).unwrap().run;
        assert_eq!((run.password.expose(), run.password2.expose()), ("potato", "pepper"));

        let args =
            with_file_and_rclone_conf(dir.path(), ConfigLayer::default(), "[crypt]\npassword2 = \"salt\"\n");
        let run = args.effective(args.load().unwrap()).unwrap().run;
        assert_eq!((run.password.expose(), run.password2.expose()), ("", "salt"));
    }
}
