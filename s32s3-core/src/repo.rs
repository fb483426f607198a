//! What every command starts from: [`Repository::open`] validates the configuration once, connects both
//! stores, derives the keys once and makes a work directory; its methods check the location's config file
//! against those keys, take the lease and pick a snapshot.

use std::sync::Arc;

use s32s3_crypt::Cipher;

use tokio_util::sync::CancellationToken;

use crate::engine::transfer::TransferRun;
use crate::error::Side;
use crate::error::{Error, Result};
use crate::format::destination::{self, DestinationState};
use crate::format::layout::Layout;
use crate::format::lease::{Lease, LeaseOptions};
use crate::format::snapshots::{self, Selected, Selector, Snapshots};
use crate::options::RunConfig;
use crate::progress::{Event, Progress};
use crate::store::limit::Limits;
use crate::store::s3::Store;

pub(crate) struct Repository {
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

impl Repository {
    /// Validates `config` (the source only when `need_source`), derives the keys and makes a work
    /// directory. Sends no request.
    pub(crate) async fn open(
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
        progress.event(&Event::Phase("deriving keys"));
        let cipher = crate::format::derive_cipher(&config.password, &config.password2).await?;
        let layout = Layout::new(&cipher, &config.backup_prefix)?;
        let dest = match config.object_lock.mode() {
            Some(mode) => {
                let (clock, days) = (config.clock.clone(), config.expiration_days);
                let until = move || crate::format::retention::lock_until(clock.now(), days);
                dest.with_retention(mode, until, layout.meta("lock"))
            }
            None => dest,
        };
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

    /// What the backup location holds (config file checked against the keys; see [`destination::inspect`]).
    pub(crate) async fn inspect(&self) -> Result<DestinationState> {
        destination::inspect(&self.dest, self.bucket(), &self.layout, &self.cipher).await
    }

    /// [`Repository::inspect`] for commands that read backups: a missing backup bucket is "no snapshot".
    pub(crate) async fn inspect_existing(&self) -> Result<DestinationState> {
        if !self.dest.bucket_exists(self.bucket()).await? {
            return Err(Error::NoSnapshot(format!(
                "the backup bucket s3://{} does not exist",
                self.bucket()
            )));
        }
        self.inspect().await
    }

    /// Takes the lease on the backup location for run `run_id` doing `purpose`.
    pub(crate) async fn lease(
        &self,
        run_id: &str,
        purpose: &str,
        shard: Option<crate::format::lease::LeaseShard>,
    ) -> Result<Lease> {
        let options =
            LeaseOptions { ttl: self.config.transfer.lease_ttl, clock: self.config.clock.clone(), shard };
        Lease::acquire(&self.dest, self.bucket(), &self.layout.meta("lock"), run_id, purpose, &options).await
    }

    /// What the transfers of a run share: these keys and tuning, the run's `limits` and `cancel`.
    pub(crate) fn transfer_run(&self, limits: &Arc<Limits>, cancel: &CancellationToken) -> TransferRun {
        TransferRun {
            cipher: self.cipher.clone(),
            chunks: Arc::default(),
            options: self.config.transfer.clone(),
            limits: Arc::clone(limits),
            progress: Arc::clone(&self.progress),
            cancel: cancel.clone(),
        }
    }

    /// The location's snapshots, read with this repository's keys and work directory.
    pub(crate) fn snapshots(&self) -> Snapshots<'_> {
        Snapshots {
            dest: &self.dest,
            bucket: self.bucket(),
            layout: &self.layout,
            cipher: &self.cipher,
            dir: self.work.path(),
        }
    }

    /// Picks the snapshot `selector` names ([`snapshots::select_in`]): the location's history read,
    /// warnings as progress events.
    pub(crate) async fn select(
        &self,
        records_since: Option<time::OffsetDateTime>,
        selector: &Selector,
    ) -> Result<Selected> {
        let history = self.snapshots().history(records_since).await?;
        let warn = |m: &str| self.progress.event(&Event::Warning(m));
        snapshots::select_in(&self.snapshots(), &history, selector, self.now(), &warn).await
    }
}

fn placeholder_endpoint() -> crate::options::S3Endpoint {
    crate::options::S3Endpoint {
        endpoint: "http://source.invalid".into(),
        region: String::new(),
        access_key_id: String::new(),
        secret_access_key: crate::secret::Secret::default(),
    }
}
