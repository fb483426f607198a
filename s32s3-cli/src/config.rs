//! The configuration contract shared by backup, restore, verify, snapshots and the daemon:
//! a TOML file (`--config FILE`), then `S32S3_*` environment variables, then flags — flags win.
//! The names mirror the Helm chart's values (`source.endpoint` ↔ `S32S3_SOURCE_ENDPOINT` ↔
//! `--source-endpoint`).
//!
//! Every invalid field is reported with its name; secrets are never printed (see [`Effective::masked`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use s32s3_core::{Provider, RunConfig, S3Endpoint, Secret, TransferOptions};
use serde::Deserialize;

/// The TOML file, every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    source: Option<EndpointFile>,
    destination: Option<EndpointFile>,
    crypt: Option<CryptFile>,
    backup_bucket: Option<String>,
    backup_prefix: Option<String>,
    expiration_days: Option<u32>,
    transfers: Option<usize>,
    checkers: Option<usize>,
    bwlimit: Option<SizeValue>,
    multipart_threshold: Option<SizeValue>,
    part_size: Option<SizeValue>,
    part_concurrency: Option<usize>,
    memory_limit: Option<SizeValue>,
    retries: Option<u32>,
    max_delete: Option<u32>,
    checkpoint_interval: Option<String>,
    lease_ttl: Option<String>,
    work_dir: Option<PathBuf>,
    log_level: Option<String>,
    log_format: Option<String>,
    schedule: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointFile {
    endpoint: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    region: Option<String>,
    provider: Option<String>,
}

impl fmt::Debug for EndpointFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointFile")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("region", &self.region)
            .field("provider", &self.provider)
            .finish()
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CryptFile {
    password: Option<String>,
    password2: Option<String>,
    obscured: Option<bool>,
}

impl fmt::Debug for CryptFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptFile")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password2", &self.password2.as_ref().map(|_| "<redacted>"))
            .field("obscured", &self.obscured)
            .finish()
    }
}

/// A size in TOML: a number of bytes or a string with a suffix (`64M`, `64MiB`, `1G`, `off`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    fn text(&self) -> String {
        match self {
            Self::Bytes(n) => n.to_string(),
            Self::Text(s) => s.clone(),
        }
    }
}

/// Flags (each also read from its `S32S3_*` environment variable) that override the file.
#[derive(Args, Clone, Default)]
pub struct ConfigArgs {
    /// The TOML configuration file.
    #[arg(long, short = 'c', env = "S32S3_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Source endpoint URL (the store backed up and restored into).
    #[arg(long, env = "S32S3_SOURCE_ENDPOINT", help_heading = "Source")]
    source_endpoint: Option<String>,
    /// Source access key id.
    #[arg(long, env = "S32S3_SOURCE_ACCESS_KEY_ID", help_heading = "Source")]
    source_access_key_id: Option<String>,
    /// Source secret access key (prefer the environment variable or the file).
    #[arg(long, env = "S32S3_SOURCE_SECRET_ACCESS_KEY", hide_env_values = true, help_heading = "Source")]
    source_secret_access_key: Option<String>,
    /// Source region (default us-east-1).
    #[arg(long, env = "S32S3_SOURCE_REGION", help_heading = "Source")]
    source_region: Option<String>,
    /// Source provider: minio, aws or other (empty: detect MinIO).
    #[arg(long, env = "S32S3_SOURCE_PROVIDER", help_heading = "Source")]
    source_provider: Option<String>,

    /// Destination endpoint URL (the store holding the backups).
    #[arg(long, env = "S32S3_DESTINATION_ENDPOINT", help_heading = "Destination")]
    destination_endpoint: Option<String>,
    /// Destination access key id.
    #[arg(long, env = "S32S3_DESTINATION_ACCESS_KEY_ID", help_heading = "Destination")]
    destination_access_key_id: Option<String>,
    /// Destination secret access key (prefer the environment variable or the file).
    #[arg(
        long,
        env = "S32S3_DESTINATION_SECRET_ACCESS_KEY",
        hide_env_values = true,
        help_heading = "Destination"
    )]
    destination_secret_access_key: Option<String>,
    /// Destination region (default us-east-1).
    #[arg(long, env = "S32S3_DESTINATION_REGION", help_heading = "Destination")]
    destination_region: Option<String>,
    /// Destination provider (informational: minio, aws or other).
    #[arg(long, env = "S32S3_DESTINATION_PROVIDER", help_heading = "Destination")]
    destination_provider: Option<String>,

    /// The crypt password (rclone's `password`), plain unless --crypt-obscured.
    #[arg(long, env = "S32S3_CRYPT_PASSWORD", hide_env_values = true, help_heading = "Encryption")]
    crypt_password: Option<String>,
    /// The crypt salt password (rclone's `password2`); empty: rclone's default salt.
    #[arg(long, env = "S32S3_CRYPT_PASSWORD2", hide_env_values = true, help_heading = "Encryption")]
    crypt_password2: Option<String>,
    /// The crypt passwords are rclone-obscured (as in rclone.conf).
    #[arg(long, env = "S32S3_CRYPT_OBSCURED", help_heading = "Encryption")]
    crypt_obscured: Option<bool>,

    /// Bucket on the destination that holds the backups [default: backups].
    #[arg(long, env = "S32S3_BACKUP_BUCKET", help_heading = "Backup location")]
    backup_bucket: Option<String>,
    /// Prefix inside the backup bucket.
    #[arg(long, env = "S32S3_BACKUP_PREFIX", help_heading = "Backup location")]
    backup_prefix: Option<String>,
    /// Days old versions and snapshots are kept [default: 7].
    #[arg(long, env = "S32S3_EXPIRATION_DAYS", help_heading = "Backup location")]
    expiration_days: Option<u32>,

    /// Objects copied at once [default: 16].
    #[arg(long, env = "S32S3_TRANSFERS", help_heading = "Tuning")]
    transfers: Option<usize>,
    /// Buckets listed and configurations read at once [default: 8].
    #[arg(long, env = "S32S3_CHECKERS", help_heading = "Tuning")]
    checkers: Option<usize>,
    /// Upload bandwidth limit per second (`10M`, `off`) [default: off].
    #[arg(long, env = "S32S3_BWLIMIT", help_heading = "Tuning")]
    bwlimit: Option<String>,
    /// Objects above this size are copied in parallel parts [default: 32M].
    #[arg(long, env = "S32S3_MULTIPART_THRESHOLD", help_heading = "Tuning")]
    multipart_threshold: Option<String>,
    /// Part size for multipart copies [default: 8M].
    #[arg(long, env = "S32S3_PART_SIZE", help_heading = "Tuning")]
    part_size: Option<String>,
    /// Parts of one object in flight at once [default: 4].
    #[arg(long, env = "S32S3_PART_CONCURRENCY", help_heading = "Tuning")]
    part_concurrency: Option<usize>,
    /// Object data held in memory at once [default: 96M].
    #[arg(long, env = "S32S3_MEMORY_LIMIT", help_heading = "Tuning")]
    memory_limit: Option<String>,
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
    /// Directory for temporary files [default: the system's].
    #[arg(long, env = "S32S3_WORK_DIR", help_heading = "Tuning")]
    work_dir: Option<PathBuf>,

    /// Log level: error, warn, info, debug, trace (rclone's ERROR, NOTICE, INFO, DEBUG too) [default: info].
    #[arg(long, env = "S32S3_LOG_LEVEL", help_heading = "Output")]
    pub log_level: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "S32S3_LOG_FORMAT", help_heading = "Output")]
    pub log_format: Option<String>,

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

    /// Daemon schedule, standard 5-field cron in UTC.
    #[arg(long, env = "S32S3_SCHEDULE", help_heading = "Daemon")]
    schedule: Option<String>,
}

impl fmt::Debug for ConfigArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the non-secret fields; the secrets are deliberately left out.
        f.debug_struct("ConfigArgs").field("config", &self.config).finish_non_exhaustive()
    }
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
    /// Log settings.
    pub output: OutputSettings,
}

/// Loads the TOML file named by `--config`/`S32S3_CONFIG`, if any.
pub fn load_file(path: Option<&Path>) -> Result<FileConfig> {
    let Some(path) = path else { return Ok(FileConfig::default()) };
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

/// An invalid configuration value: the CLI exits with the usage code (2).
#[derive(Debug)]
pub struct ConfigError {
    /// Where (a field name or the file).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl ConfigError {
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigArgs {
    /// Output settings from flags, env and file (needed before anything else can be reported).
    pub fn output(&self, file: &FileConfig) -> Result<OutputSettings> {
        let level =
            self.log_level.clone().or_else(|| file.log_level.clone()).unwrap_or_else(|| "info".into());
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
        let format =
            self.log_format.clone().or_else(|| file.log_format.clone()).unwrap_or_else(|| "text".into());
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

    /// Merges flags (and their environment variables) over the file over the defaults, and checks every
    /// field. `need_source`: the command talks to the source (backup, restore).
    pub fn resolve(&self, file: FileConfig, need_source: bool) -> Result<Effective> {
        let effective = self.merge(file)?;
        effective.validate(need_source)?;
        Ok(effective)
    }

    /// Merges flags (and their environment variables) over the file over the defaults. Values that cannot
    /// be parsed are errors; missing or out-of-range ones are left for [`Effective::problems`].
    pub fn merge(&self, file: FileConfig) -> Result<Effective> {
        let output = self.output(&file)?;
        let defaults = TransferOptions::default();
        let mut src = file.source.unwrap_or_default();
        let mut dst = file.destination.unwrap_or_default();
        let crypt = file.crypt.unwrap_or_default();
        let mut file_bucket = file.backup_bucket;
        let mut file_prefix = file.backup_prefix;
        let mut imported_passwords = (None, None);
        if let Some(import) = self.rclone_import()? {
            // rclone.conf is the lowest layer: whatever the file sets wins.
            let fill = |mine: &mut EndpointFile, theirs: crate::rclone_conf::RemoteEndpoint| {
                mine.endpoint = mine.endpoint.take().or(theirs.endpoint);
                mine.access_key_id = mine.access_key_id.take().or(theirs.access_key_id);
                mine.secret_access_key = mine.secret_access_key.take().or(theirs.secret_access_key);
                mine.region = mine.region.take().or(theirs.region);
                mine.provider = mine.provider.take().or(theirs.provider);
            };
            if let Some(source) = import.0 {
                fill(&mut src, source);
            }
            if let Some(d) = import.1 {
                fill(&mut dst, d.endpoint);
                file_bucket = file_bucket.or(d.bucket);
                file_prefix = file_prefix.or(d.prefix);
                imported_passwords = (d.password, d.password2);
            }
        }

        let pick = |flag: &Option<String>, file: Option<String>| flag.clone().or(file).unwrap_or_default();
        let source = S3Endpoint {
            endpoint: pick(&self.source_endpoint, src.endpoint),
            region: pick(&self.source_region, src.region),
            access_key_id: pick(&self.source_access_key_id, src.access_key_id),
            secret_access_key: Secret::new(pick(&self.source_secret_access_key, src.secret_access_key)),
        };
        let destination = S3Endpoint {
            endpoint: pick(&self.destination_endpoint, dst.endpoint),
            region: pick(&self.destination_region, dst.region),
            access_key_id: pick(&self.destination_access_key_id, dst.access_key_id),
            secret_access_key: Secret::new(pick(&self.destination_secret_access_key, dst.secret_access_key)),
        };
        let provider_text = pick(&self.source_provider, src.provider);
        let source_provider: Provider = provider_text
            .parse()
            .map_err(|reason: String| ConfigError::invalid("source.provider", reason))?;
        let destination_provider = pick(&self.destination_provider, dst.provider);

        let obscured = self.crypt_obscured.or(crypt.obscured).unwrap_or(false);
        let mut password = pick(&self.crypt_password, crypt.password);
        let mut password2 = pick(&self.crypt_password2, crypt.password2);
        if obscured {
            for (field, value) in [("crypt.password", &mut password), ("crypt.password2", &mut password2)] {
                if !value.is_empty() {
                    *value =
                        s32s3_crypt::reveal(value).map_err(|e| ConfigError::invalid(field, e.to_string()))?;
                }
            }
        }
        // From a crypt remote, already revealed; only where nothing else set them.
        if password.is_empty() && password2.is_empty() {
            password = imported_passwords.0.unwrap_or_default();
            password2 = imported_passwords.1.unwrap_or_default();
        }

        let size =
            |field: &str, flag: &Option<String>, file: Option<SizeValue>, default: u64| -> Result<u64> {
                match flag.clone().or_else(|| file.map(|v| v.text())) {
                    None => Ok(default),
                    Some(text) => parse_size(&text)
                        .map(|v| v.unwrap_or(0))
                        .map_err(|reason| ConfigError::invalid(field, reason).into()),
                }
            };
        let bwlimit = match self.bwlimit.clone().or_else(|| file.bwlimit.map(|v| v.text())) {
            None => None,
            Some(text) => parse_size(&text)
                .map_err(|reason| ConfigError::invalid("bwlimit", reason))?
                .filter(|v| *v > 0),
        };
        let checkpoint_interval = match self.checkpoint_interval.clone().or(file.checkpoint_interval) {
            None => defaults.checkpoint_interval,
            Some(text) => {
                parse_duration(&text).map_err(|reason| ConfigError::invalid("checkpoint_interval", reason))?
            }
        };
        let lease_ttl = match self.lease_ttl.clone().or(file.lease_ttl) {
            None => defaults.lease_ttl,
            Some(text) => {
                parse_duration(&text).map_err(|reason| ConfigError::invalid("lease_ttl", reason))?
            }
        };
        let transfer = TransferOptions {
            transfers: self.transfers.or(file.transfers).unwrap_or(defaults.transfers),
            checkers: self.checkers.or(file.checkers).unwrap_or(defaults.checkers),
            multipart_threshold: size(
                "multipart_threshold",
                &self.multipart_threshold,
                file.multipart_threshold,
                defaults.multipart_threshold,
            )?,
            part_size: size("part_size", &self.part_size, file.part_size, defaults.part_size)?,
            part_concurrency: self
                .part_concurrency
                .or(file.part_concurrency)
                .unwrap_or(defaults.part_concurrency),
            memory_limit: size("memory_limit", &self.memory_limit, file.memory_limit, defaults.memory_limit)?,
            retries: self.retries.or(file.retries).unwrap_or(defaults.retries),
            bwlimit,
            max_delete_percent: self.max_delete.or(file.max_delete).unwrap_or(defaults.max_delete_percent),
            checkpoint_interval,
            lease_ttl,
        };
        let run = RunConfig {
            source,
            source_provider,
            destination,
            password: Secret::new(password),
            password2: Secret::new(password2),
            backup_bucket: pick(&self.backup_bucket, file_bucket).trim().to_owned(),
            backup_prefix: pick(&self.backup_prefix, file_prefix),
            expiration_days: self.expiration_days.or(file.expiration_days).unwrap_or(7),
            transfer,
            work_dir: self.work_dir.clone().or(file.work_dir).unwrap_or_else(std::env::temp_dir),
            clock: s32s3_core::Clock::system(),
        };
        let mut run = run;
        if run.backup_bucket.is_empty() {
            run.backup_bucket = "backups".into();
        }
        Ok(Effective {
            run,
            destination_provider,
            obscured,
            schedule: self.schedule.clone().or(file.schedule),
            output,
        })
    }
}

impl ConfigArgs {
    /// The remotes named by --source-remote / --destination-remote in --rclone-config.
    #[allow(clippy::type_complexity)]
    fn rclone_import(
        &self,
    ) -> Result<Option<(Option<crate::rclone_conf::RemoteEndpoint>, Option<crate::rclone_conf::Destination>)>>
    {
        let Some(path) = &self.rclone_config else {
            if self.source_remote.is_some() || self.destination_remote.is_some() {
                bail!(ConfigError::invalid(
                    "rclone_config",
                    "--source-remote/--destination-remote need --rclone-config FILE"
                ));
            }
            return Ok(None);
        };
        let conf = crate::rclone_conf::RcloneConf::load(path)?;
        let source = self.source_remote.as_deref().map(|r| conf.source(r)).transpose()?;
        let destination = self.destination_remote.as_deref().map(|r| conf.destination(r)).transpose()?;
        Ok(Some((source, destination)))
    }
}

impl Effective {
    /// Every invalid field, one per line (empty when all are fine).
    pub fn problems(&self, need_source: bool) -> Vec<String> {
        let mut problems = Vec::new();
        let run = &self.run;
        let mut endpoint = |side: &str, e: &S3Endpoint| {
            if e.endpoint.is_empty() {
                problems.push(format!("{side}.endpoint: is not set"));
            } else if let Err(err) = e.validate(&format!("{side}.endpoint")) {
                problems.push(err.to_string().trim_start_matches("invalid configuration: ").to_owned());
            }
            if e.access_key_id.is_empty() {
                problems.push(format!("{side}.access_key_id: is not set"));
            }
            if e.secret_access_key.is_empty() {
                problems.push(format!("{side}.secret_access_key: is not set"));
            }
        };
        if need_source {
            endpoint("source", &run.source);
        }
        endpoint("destination", &run.destination);
        if run.password.is_empty() {
            problems.push("crypt.password: is not set".into());
        }
        if let Err(e) = s32s3_core::options::validate_bucket_name("backup_bucket", &run.backup_bucket) {
            problems.push(e.to_string().trim_start_matches("invalid configuration: ").to_owned());
        }
        if run.expiration_days == 0 {
            problems.push("expiration_days: must be at least 1".into());
        }
        if let Err(e) = run.transfer.validate() {
            problems.push(e.to_string().trim_start_matches("invalid configuration: ").to_owned());
        }
        if let Some(schedule) = &self.schedule
            && let Err(e) = crate::schedule::Schedule::parse(schedule)
        {
            problems.push(format!("schedule: {e}"));
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
            ("work_dir", run.work_dir.display().to_string()),
            ("log_level", self.output.level.clone()),
            ("log_format", if self.output.json { "json".into() } else { "text".into() }),
            ("schedule", self.schedule.clone().unwrap_or_else(|| "(not set)".into())),
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
}
