//! What every command works with, set up once: both stores, the keys, the layout, a work directory.

use std::sync::Arc;

use s32s3_crypt::Cipher;

use crate::error::Side;
use crate::layout::Layout;
use crate::options::RunConfig;
use crate::progress::{Event, Progress};
use crate::s3::Store;
use crate::{Error, Result};

pub(crate) struct Context {
    pub(crate) config: RunConfig,
    /// The store backed up (and restored into).
    pub(crate) source: Store,
    /// The store holding the backups.
    pub(crate) dest: Store,
    pub(crate) cipher: Cipher,
    pub(crate) layout: Layout,
    pub(crate) progress: Arc<dyn Progress>,
    pub(crate) work: tempfile::TempDir,
}

impl Context {
    /// Validates `config` (the source only when `need_source`), derives the keys and makes a work
    /// directory. Sends no request.
    pub(crate) async fn new(
        config: &RunConfig,
        progress: Arc<dyn Progress>,
        need_source: bool,
    ) -> Result<Self> {
        config.validate_for(need_source)?;
        let retries = config.transfer.retries;
        let source = Store::new(Side::Source, config.source.clone(), retries).or_else(|e| {
            // Commands that never touch the source accept an unset one.
            if need_source { Err(e) } else { Store::new(Side::Source, placeholder_endpoint(), retries) }
        })?;
        let dest = Store::new(Side::Destination, config.destination.clone(), retries)?;
        let (source, dest) = (
            source.with_policy(config.transfer.retry_policy()),
            dest.with_policy(config.transfer.retry_policy()),
        );
        progress.event(&Event::Phase("deriving keys"));
        let cipher = crate::derive_cipher(&config.password, &config.password2).await?;
        let layout = Layout::new(&cipher, &config.backup_prefix)?;
        let work = tempfile::Builder::new().prefix("s32s3-").tempdir_in(&config.work_dir).map_err(|e| {
            Error::io(format!("creating a work directory in {}", config.work_dir.display()), e)
        })?;
        Ok(Self { config: config.clone(), source, dest, cipher, layout, progress, work })
    }

    /// The backup bucket.
    pub(crate) fn bucket(&self) -> &str {
        &self.config.backup_bucket
    }

    /// Now, by the run's clock.
    pub(crate) fn now(&self) -> time::OffsetDateTime {
        self.config.clock.now()
    }

    /// `s3://bucket/prefix` of the backup location, for messages.
    pub(crate) fn location(&self) -> String {
        format!("s3://{}/{}", self.config.backup_bucket, self.layout.root())
    }
}

fn placeholder_endpoint() -> crate::s3::S3Endpoint {
    crate::s3::S3Endpoint {
        endpoint: "http://source.invalid".into(),
        region: String::new(),
        access_key_id: String::new(),
        secret_access_key: crate::s3::Secret::default(),
    }
}
