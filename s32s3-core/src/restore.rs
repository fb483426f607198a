//! Restore (DESIGN.md §6): a snapshot back into a store — MinIO server configuration (when asked), IAM,
//! buckets and their configuration, data, then replication.
//!
//! Restore writes into the *source* endpoint of the configuration: after a disaster one points s32s3 at
//! the new, empty store. It never silently overwrites: an object already there and different is reported
//! and left alone unless `overwrite` is set; one already there and equal is skipped, so an interrupted
//! restore simply runs again.
//!
//! A backup location without `.s32s3/config.json` was written by rclone (`rclone sync` into a crypt
//! remote over a versioned bucket); it is restored from the version listing: per key the newest version at
//! or before `--at`, a delete marker hiding the key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use s32s3_minio_admin::{AdminClient, Probe};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::engine::bucket_config::{SUBRESOURCES, Subresource};
use crate::engine::listing::{Listed, RUN_LEN, SortedListing, list_into};
use crate::engine::plan::PreviousEntries;
use crate::engine::stream::{STREAM_MEMORY, sha256_of};
use crate::engine::transfer::{RestoreItem, Restorer};
use crate::error::S3ErrorKind;
use crate::error::{Error, Result};
use crate::format::destination;
use crate::format::manifest::{BucketRecord, Entry, Header, Totals};
use crate::format::snapshots::Selector;
use crate::format::spool::{ExternalSort, SortedItems};
use crate::options::RunConfig;
use crate::progress::{Event, Outcome, Progress};
use crate::repo::Repository;
use crate::store::limit::Limits;
use crate::store::{ReadOptions, VersionItem};
pub use crate::summary::{Failure, RestoreMode, RestoreSummary};

mod history;

/// Where a restored bucket comes from and goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketMapping {
    /// The bucket in the snapshot.
    pub from: String,
    /// The bucket it is restored into.
    pub to: String,
}

impl std::str::FromStr for BucketMapping {
    type Err = String;

    /// `SRC` or `SRC:DST`.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let (from, to) = s.split_once(':').unwrap_or((s, s));
        if from.is_empty() || to.is_empty() {
            return Err(format!("{s:?} is not BUCKET or SOURCE:TARGET"));
        }
        Ok(Self { from: from.to_owned(), to: to.to_owned() })
    }
}

/// A restore of a snapshot (or of an rclone-made backup) into the source endpoint.
#[derive(Clone, Debug)]
pub struct Restore {
    config: RunConfig,
    selector: Selector,
    buckets: Vec<BucketMapping>,
    prefix: Option<String>,
    iam: bool,
    bucket_config: bool,
    server_config: bool,
    overwrite: bool,
    dry_run: bool,
    restart_timeout: Duration,
    source_versions: bool,
}

impl Restore {
    /// A restore of the newest complete snapshot, every bucket, IAM and bucket configuration included.
    #[must_use]
    pub fn new(config: RunConfig) -> Self {
        Self {
            config,
            selector: Selector::Newest,
            buckets: Vec::new(),
            prefix: None,
            iam: true,
            bucket_config: true,
            server_config: false,
            overwrite: false,
            dry_run: false,
            restart_timeout: Duration::from_mins(3),
            source_versions: false,
        }
    }

    crate::options::setters! {
        /// Which snapshot (newest, at a time, by id).
        with_selector(selector: Selector);
        /// Only these buckets, possibly under other names.
        with_buckets(buckets: Vec<BucketMapping>);
    }

    /// Only keys starting with `prefix`.
    #[must_use]
    pub fn with_prefix(mut self, prefix: Option<String>) -> Self {
        self.prefix = prefix.filter(|p| !p.is_empty());
        self
    }

    crate::options::setters! {
        /// Restore MinIO IAM (default on).
        with_iam(iam: bool);
        /// Restore bucket configuration (default on).
        with_bucket_config(bucket_config: bool);
        /// Restore the MinIO server configuration and restart the server (default off: it replaces the whole
        /// configuration).
        with_server_config(server_config: bool);
        /// Replace objects that exist and differ (default off: they are reported and left alone).
        with_overwrite(overwrite: bool);
        /// Plan only.
        with_dry_run(dry_run: bool);
        /// How long to wait for the server to answer again after the restart that applies a restored server
        /// configuration (default 3 minutes; `RustFS` exits on restart and is back only if its process
        /// manager starts it).
        with_restart_timeout(restart_timeout: Duration);
        /// Replay each key's version history (backed up with `source_versions`) into versioned buckets,
        /// oldest first, instead of restoring the snapshot's current state only (default off).
        with_source_versions(source_versions: bool);
    }

    /// Runs the restore.
    ///
    /// # Errors
    /// Configuration, password, credential and reachability problems, a missing backup bucket, no matching
    /// snapshot — all before anything is written. Single objects that fail (a corrupted or missing stored
    /// version) are in [`RestoreSummary::failed`]; everything else is still restored.
    ///
    /// # Cancel safety
    /// Cancel through `cancel`; what was restored stays, and running again skips it.
    pub async fn run(
        &self,
        progress: Arc<dyn Progress>,
        cancel: CancellationToken,
    ) -> Result<RestoreSummary> {
        let started = Instant::now();
        let cx = Repository::open(&self.config, progress, true).await?;
        cx.progress.event(&Event::Phase("checking the backup location"));
        let state = cx.inspect_existing().await?;
        cx.progress.event(&Event::Phase("checking the restore target"));
        let existing_buckets = cx.source.list_buckets().await?;

        let mut run = RestoreRun {
            cx: &cx,
            job: self,
            existing_buckets,
            limits: Arc::new(Limits::new(&self.config.transfer)),
            cancel,
            summary: RestoreSummary {
                mode: if state.config.is_some() {
                    RestoreMode::Manifest
                } else {
                    RestoreMode::VersionListing
                },
                snapshot_id: None,
                point_in_time: None,
                partial: false,
                window: None,
                dry_run: self.dry_run,
                buckets: Vec::new(),
                restored: Totals::default(),
                skipped: Totals::default(),
                conflicts: Vec::new(),
                failed: Vec::new(),
                notes: Vec::new(),
                delete_markers: 0,
                duration: Duration::ZERO,
            },
        };
        if state.config.is_some() {
            run.restore_manifest(state.records_since()).await?;
        } else {
            run.restore_versions().await?;
        }
        run.summary.duration = started.elapsed();
        Ok(run.summary)
    }
}

struct RestoreRun<'a> {
    cx: &'a Repository,
    job: &'a Restore,
    existing_buckets: Vec<String>,
    limits: Arc<Limits>,
    cancel: CancellationToken,
    summary: RestoreSummary,
}

impl RestoreRun<'_> {
    fn fail(&mut self, bucket: &str, key: &str, error: &str) {
        self.cx.progress.event(&Event::Failed { bucket, key, error });
        self.summary.failed.push(Failure { bucket: bucket.into(), key: key.into(), error: error.into() });
    }

    fn note(&mut self, note: String) {
        self.cx.progress.event(&Event::Warning(&note));
        self.summary.notes.push(note);
    }

    /// The buckets to restore, as (snapshot record, target name).
    fn mapped_buckets(&mut self, header: &Header) -> Result<Vec<(BucketRecord, String)>> {
        if self.job.buckets.is_empty() {
            for lost in header.buckets.iter().filter(|b| b.source_missing) {
                self.note(format!(
                    "bucket {} skipped: it had vanished from the source when snapshot {} was taken (its {} objects \
                     are kept in the snapshot; restore them with --bucket {})",
                    lost.name, header.snapshot_id, lost.objects, lost.name
                ));
            }
            return Ok(header
                .buckets
                .iter()
                .filter(|b| !b.source_missing)
                .map(|b| (b.clone(), b.name.clone()))
                .collect());
        }
        self.job
            .buckets
            .iter()
            .map(|m| {
                let record =
                    header.buckets.iter().find(|b| b.name == m.from).ok_or_else(|| Error::Config {
                        field: "bucket".into(),
                        reason: format!(
                            "snapshot {} has no bucket {:?} (it has: {})",
                            header.snapshot_id,
                            m.from,
                            header.buckets.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    })?;
                crate::options::validate_bucket_name("bucket", &m.to)?;
                Ok((record.clone(), m.to.clone()))
            })
            .collect()
    }

    async fn restore_manifest(&mut self, records_since: Option<OffsetDateTime>) -> Result<()> {
        let cx = self.cx;
        let selected = cx.select(records_since, &self.job.selector).await?;
        let (snap, header) = (selected.snapshot, selected.header);
        self.summary.snapshot_id = Some(header.snapshot_id.clone());
        self.summary.point_in_time = Some(header.finished.clone());
        self.summary.window = Some(selected.window);
        if header.status == crate::format::manifest::SnapshotStatus::Partial {
            self.summary.partial = true;
            self.note(format!(
                "snapshot {} is partial: its run could not copy everything, so some objects are restored at the \
                 version an earlier run stored",
                header.snapshot_id
            ));
        }
        let mut buckets = self.mapped_buckets(&header)?;
        let mut history = None;
        if self.job.source_versions {
            history = Some(self.open_history(&header, &mut buckets).await?);
        }
        cx.progress.event(&Event::Phase(&format!(
            "restoring snapshot {} of {}",
            header.snapshot_id, header.finished
        )));

        let reader = cx.snapshots().open(&snap).await?;
        let dir = cx.work.path().to_owned();
        let mut entries = tokio::task::spawn_blocking(move || PreviousEntries::split(reader.lines(), &dir))
            .await
            .expect("does not panic")?;

        if !self.job.dry_run {
            self.instance(&header).await?;
        }
        let quotas = self.quotas(&header).await?;
        for (record, target) in &buckets {
            if self.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            self.summary.buckets.push(target.clone());
            let object_lock = record
                .config
                .get("object-lock")
                .is_some_and(|doc| doc.contains("<ObjectLockEnabled>Enabled"));
            if !self.job.dry_run && !self.prepare_bucket(record, target, object_lock).await? {
                continue;
            }
            if let Some(history) = &mut history {
                let bucket_entries = entries.entries(&record.name)?;
                self.replay(target, object_lock, bucket_entries, history, &record.name).await?;
            } else {
                self.data(target, object_lock, entries.entries(&record.name)?, false).await?;
            }
            if !self.job.dry_run {
                self.quota(quotas.as_ref(), &record.name, target).await;
                if self.job.bucket_config {
                    self.put_configs(target, record, true).await;
                }
            }
        }
        Ok(())
    }

    /// `--source-versions`: the snapshot's version history, opened once every target is known to keep
    /// versions (or to get versioning from its configuration); the buckets in name order, as the history
    /// has them. Refused in one line before anything is written.
    async fn open_history(
        &mut self,
        header: &Header,
        buckets: &mut [(BucketRecord, String)],
    ) -> Result<crate::format::history::ByKey<crate::format::history::HistoryReader>> {
        let cx = self.cx;
        let Some(href) = &header.history else {
            return Err(Error::Config {
                field: "source_versions".into(),
                reason: format!(
                    "snapshot {} holds no version history (it was backed up without source_versions); restore                      without --source-versions",
                    header.snapshot_id
                ),
            });
        };
        buckets.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        for (record, target) in buckets.iter() {
            let versioned = record.config.get("versioning").is_some_and(|d| d.contains("<Status>Enabled"));
            self.check_versioned(target, versioned).await?;
        }
        let reader = crate::format::history::open(
            &cx.dest,
            cx.bucket(),
            href,
            &header.snapshot_id,
            &cx.cipher,
            cx.work.path(),
        )
        .await?;
        Ok(crate::format::history::ByKey::new(reader))
    }

    /// Puts a bucket's MinIO quota back from the snapshot's bucket-metadata export (after its data: a
    /// quota smaller than what is being restored would refuse the restore's own writes).
    async fn quota(
        &mut self,
        quotas: Option<&(AdminClient, s32s3_minio_admin::BucketMetadataExport)>,
        from: &str,
        target: &str,
    ) {
        let Some((admin, export)) = quotas else { return };
        // MinIO's export holds madmin's `BucketQuota`, RustFS's its own record: set-bucket-quota reads only
        // the first, and takes the second for "no quota".
        let quota = match export
            .file(from, "quota.json")
            .map(|q| q.map(|q| s32s3_minio_admin::BucketQuota::from_json(&q)))
        {
            Ok(Some(Ok(Some(quota)))) => quota,
            Ok(None | Some(Ok(None))) => return,
            Ok(Some(Err(_))) => {
                self.fail(target, "", "quota not restored: the export's quota.json is not a JSON object");
                return;
            }
            Err(e) => {
                self.fail(target, "", &format!("quota not restored: {e}"));
                return;
            }
        };
        match admin.set_bucket_quota(target, &quota.to_request()).await {
            Ok(()) => self.summary.notes.push(format!("bucket {target}: MinIO quota restored")),
            Err(e) => self.fail(target, "", &format!("quota not restored: {e}")),
        }
    }

    /// The admin client and bucket-metadata export to restore quotas from, when the snapshot has the export
    /// and the target is a MinIO these keys administer (otherwise a quota in the export is reported).
    async fn quotas(
        &mut self,
        header: &Header,
    ) -> Result<Option<(AdminClient, s32s3_minio_admin::BucketMetadataExport)>> {
        let Some(key) = header.instance.as_ref().and_then(|r| r.bucket_metadata.clone()) else {
            return Ok(None);
        };
        if self.job.dry_run || !self.job.bucket_config {
            return Ok(None);
        }
        let export = s32s3_minio_admin::BucketMetadataExport::from_bytes(self.instance_object(&key).await?)?;
        let with_quota: Vec<String> =
            export.entries().iter().filter(|e| e.ends_with("/quota.json")).cloned().collect();
        if with_quota.is_empty() {
            return Ok(None);
        }
        let admin = crate::instance::admin_client(&self.cx.config.source)?;
        if let Ok(Probe::Admin(_)) = admin.probe().await {
            return Ok(Some((admin, export)));
        }
        self.fail(
            "",
            "quota",
            &format!(
                "the snapshot has MinIO bucket quotas ({}), but the target is not a MinIO these keys can administer: \
                 quotas not restored",
                with_quota.join(", ")
            ),
        );
        Ok(None)
    }

    /// MinIO server configuration (when asked) and IAM, through the admin API.
    async fn instance(&mut self, header: &Header) -> Result<()> {
        let Some(refs) = header.instance.clone() else { return Ok(()) };
        let want_iam = self.job.iam && refs.iam.is_some();
        let want_config = self.job.server_config && refs.config.is_some();
        if !want_iam && !want_config {
            return Ok(());
        }
        let cx = self.cx;
        let admin = crate::instance::admin_client(&cx.config.source)?;
        match admin.probe().await {
            Ok(Probe::Admin(_)) => {}
            Ok(other) => {
                let reason = match other {
                    Probe::NotAdmin(r) | Probe::NotMinio(r) | Probe::Unreadable(r) => r,
                    _ => "unexpected answer".into(),
                };
                self.fail("", "instance", &format!(
                    "the snapshot has MinIO IAM/configuration, but the target is not a MinIO these keys can administer ({reason}); run again with --no-iam to restore only buckets and data"
                ));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        if want_config {
            self.restore_server_config(&admin, refs.config.as_deref().unwrap_or_default()).await?;
        }
        if want_iam {
            self.restore_iam(&admin, refs.iam.as_deref().unwrap_or_default()).await?;
        }
        Ok(())
    }

    /// Puts back what of the MinIO server configuration the target accepts, then restarts it and waits
    /// (bounded) for it to answer again. What the target refuses (`RustFS` knows fewer subsystems and keys than
    /// MinIO) is reported by name; a configuration it refuses without naming a part is reported and the
    /// restore goes on without it.
    async fn restore_server_config(&mut self, admin: &AdminClient, key: &str) -> Result<()> {
        self.cx.progress.event(&Event::Phase("restoring the MinIO server configuration"));
        let bytes = self.instance_object(key).await?;
        let text =
            String::from_utf8(bytes).map_err(|_| Error::corrupt("server configuration", "not UTF-8"))?;
        let done = match admin.set_config_known(&s32s3_minio_admin::ConfigText::new(text)).await {
            Ok(done) => done,
            Err(
                e @ (s32s3_minio_admin::Error::BadCredentials { .. }
                | s32s3_minio_admin::Error::Unreachable { .. }),
            ) => {
                return Err(e.into());
            }
            Err(e) => {
                self.fail("", "server configuration", &format!("not restored: {e}"));
                return Ok(());
            }
        };
        for refused in &done.refused {
            self.note(format!("server configuration: {refused} left out: the target refused it"));
        }
        if !done.applied {
            self.fail("", "server configuration", "not restored: the target refused every subsystem of it");
            return Ok(());
        }
        let answer = admin.service_restart().await?;
        admin.wait_for_restart(self.job.restart_timeout).await?;
        self.summary.notes.push(if answer.message.is_empty() {
            "MinIO server configuration restored; the server was restarted".into()
        } else {
            format!("MinIO server configuration restored; the server was restarted ({})", answer.message)
        });
        Ok(())
    }

    /// Imports MinIO IAM, then disables again what the import turns back on.
    async fn restore_iam(&mut self, admin: &AdminClient, key: &str) -> Result<()> {
        self.cx.progress.event(&Event::Phase("restoring MinIO IAM"));
        let bytes = self.instance_object(key).await?;
        let export = s32s3_minio_admin::IamExport::from_bytes(bytes)?;
        match admin.import_iam(&export).await? {
            s32s3_minio_admin::IamImport::V2(result) => self.iam_imported(&result),
            _ => self.summary.notes.push("MinIO IAM imported (import-iam, no per-entity result)".into()),
        }
        // What the import does not restore: disabled groups come back enabled, service accounts on.
        let disabled = export.disabled()?;
        for group in &disabled.groups {
            if let Err(e) = admin.set_group_status(group, false).await {
                self.fail("", "iam", &format!("group {group:?} could not be disabled again: {e}"));
            }
        }
        for account in &disabled.service_accounts {
            if let Err(e) = admin.set_service_account_status(account, false).await {
                self.fail(
                    "",
                    "iam",
                    &format!("service account {account:?} could not be turned off again: {e}"),
                );
            }
        }
        if !disabled.groups.is_empty() || !disabled.service_accounts.is_empty() {
            self.summary.notes.push(format!(
                "disabled again after the import: {} groups, {} service accounts",
                disabled.groups.len(),
                disabled.service_accounts.len()
            ));
        }
        Ok(())
    }

    /// Notes what an `import-iam-v2` added, and fails what it could not import.
    fn iam_imported(&mut self, result: &s32s3_minio_admin::ImportIamResult) {
        let a = &result.added;
        self.summary.notes.push(format!(
            "MinIO IAM imported (import-iam-v2): {} policies, {} users, {} groups, {} service accounts",
            a.policies.len(),
            a.users.len(),
            a.groups.len(),
            a.service_accounts.len()
        ));
        let f = &result.failed;
        for (kind, failures) in [
            ("policy", &f.policies),
            ("user", &f.users),
            ("group", &f.groups),
            ("service account", &f.service_accounts),
            ("user policy mapping", &f.user_policies),
            ("group policy mapping", &f.group_policies),
            ("STS policy mapping", &f.sts_policies),
        ] {
            for failure in failures {
                self.fail("", "iam", &format!("IAM {kind} {:?} failed to import", failure.name));
            }
        }
    }

    /// Downloads and decrypts one instance export.
    async fn instance_object(&self, key: &str) -> Result<Vec<u8>> {
        let cx = self.cx;
        let bytes = destination::get_small(&cx.dest, cx.bucket(), key)
            .await?
            .ok_or_else(|| Error::corrupt(format!("s3://{}/{key}", cx.bucket()), "missing"))?;
        cx.cipher
            .decrypt(&bytes)
            .map_err(|source| Error::Crypt { what: format!("s3://{}/{key}", cx.bucket()), source })
    }

    /// Creates the bucket (with object lock where the source had it) and puts its configuration back.
    /// `false`: the bucket could not be created (reported), skip its data.
    async fn prepare_bucket(
        &mut self,
        record: &BucketRecord,
        target: &str,
        object_lock: bool,
    ) -> Result<bool> {
        let cx = self.cx;
        if !self.existing_buckets.iter().any(|b| b == target) {
            let create = cx.source.create_bucket(target, object_lock).await;
            if let Err(e) = create {
                if matches!(e.s3_kind(), Some(S3ErrorKind::BadCredentials | S3ErrorKind::Unreachable)) {
                    return Err(e);
                }
                self.fail(target, "", &e.to_string());
                return Ok(false);
            }
            self.existing_buckets.push(target.to_owned());
        }
        if self.job.bucket_config {
            self.put_configs(target, record, false).await;
        }
        Ok(true)
    }

    /// Puts the bucket's configuration documents back that go before (or after) the data, in order.
    async fn put_configs(&mut self, target: &str, record: &BucketRecord, after_data: bool) {
        for sub in SUBRESOURCES.iter().filter(|s| s.after_data == after_data) {
            if let Some(doc) = record.config.get(sub.name) {
                self.put_config(target, sub, doc, &record.name).await;
            }
        }
    }

    /// Puts one configuration document back; failures are reported, notifications as warnings only
    /// (their targets may not exist on the new server).
    async fn put_config(&mut self, target: &str, sub: &Subresource, doc: &str, from: &str) {
        let name = sub.name;
        if !meaningful(name, doc) {
            return;
        }
        let body = if name == "policy" && from != target {
            // The policy names its own bucket in resource ARNs.
            doc.replace(&format!("arn:aws:s3:::{from}/"), &format!("arn:aws:s3:::{target}/"))
                .replace(&format!("arn:aws:s3:::{from}\""), &format!("arn:aws:s3:::{target}\""))
        } else {
            doc.to_owned()
        };
        // Already so (a restore run again): nothing to do. Some servers refuse to re-apply settings, e.g.
        // object lock on a bucket that is no longer empty.
        if let Ok(Some(current)) = self.cx.source.raw_bucket_request("GET", sub.get, target, name, None).await
            && current == body.as_bytes()
        {
            return;
        }
        match self.cx.source.raw_bucket_request("PUT", sub.put, target, name, Some(body.as_bytes())).await {
            Ok(_) => {}
            Err(e) if name == "notification" => {
                self.note(format!("bucket {target}: notification configuration not restored: {e}"));
            }
            Err(e) => self.fail(target, "", &format!("configuration {name} not restored: {e}")),
        }
    }

    /// Restores `entries` (one bucket, sorted by key) into `target`; `from_rclone`: they come from the
    /// version listing of a backup rclone made (no SHA-256, no metadata but the stored mtime). Entries are
    /// merge-joined with the target's sorted listing and restored as they come, so memory does not grow
    /// with the number of objects.
    async fn data(
        &mut self,
        target: &str,
        object_lock: bool,
        entries: impl Iterator<Item = Result<Entry>>,
        from_rclone: bool,
    ) -> Result<()> {
        let cx = self.cx;
        let prefix = self.job.prefix.clone().unwrap_or_default();
        let mut present = SortedListing::new(cx.work.path());
        if self.existing_buckets.iter().any(|b| b == target) {
            list_into(
                &cx.source,
                target,
                (!prefix.is_empty()).then_some(prefix.as_str()),
                false,
                &mut present,
            )
            .await?;
        }
        let mut present = present.finish()?;
        let restorer = self.restorer();
        let job = ObjectJob {
            restorer: &restorer,
            target,
            object_lock,
            from_rclone,
            dry_run: self.job.dry_run,
            overwrite: self.job.overwrite,
            now: cx.now(),
        };
        let wanted = entries.filter(|e| e.as_ref().is_ok_and(|e| e.key.starts_with(&prefix)) || e.is_err());
        let mut results = futures::stream::iter(WithListed::new(wanted, present.iter()?))
            .map(|paired| async {
                let (entry, listed) = paired?;
                Ok::<_, Error>(job.one(entry, listed).await)
            })
            .buffer_unordered(cx.config.transfer.transfers * 2);
        while let Some(done) = results.next().await {
            let (entry, result) = done?;
            self.record(target, &entry, result)?;
        }
        Ok(())
    }

    fn restorer(&self) -> Restorer {
        let cx = self.cx;
        Restorer {
            run: cx.transfer_run(&self.limits, &self.cancel),
            backup: cx.dest.clone(),
            backup_bucket: cx.bucket().to_owned(),
            target: cx.source.clone(),
        }
    }

    /// Counts and reports what became of one object.
    fn record(&mut self, target: &str, entry: &Entry, result: Result<Decision>) -> Result<()> {
        let cx = self.cx;
        let object = |outcome| Event::Object { bucket: target, key: &entry.key, outcome, size: entry.size };
        match result {
            Ok(Decision::Restore) => {
                self.summary.restored.add(entry.size);
                cx.progress.event(&object(Outcome::Restored));
            }
            Ok(Decision::Equal) => {
                self.summary.skipped.add(entry.size);
                cx.progress.event(&object(Outcome::Skipped));
            }
            Ok(Decision::Conflict) => {
                let error = "already exists with different content; left alone (--overwrite replaces it)";
                cx.progress.event(&Event::Failed { bucket: target, key: &entry.key, error });
                self.summary.conflicts.push(Failure {
                    bucket: target.into(),
                    key: entry.key.clone(),
                    error: error.into(),
                });
            }
            Err(Error::Cancelled) => return Err(Error::Cancelled),
            Err(e) => self.fail(target, &entry.key, &e.to_string()),
        }
        Ok(())
    }

    /// A backup written by rclone: per key the newest version at or before `--at`.
    async fn restore_versions(&mut self) -> Result<()> {
        let cx = self.cx;
        let at = match &self.job.selector {
            Selector::At(at) => Some(*at),
            Selector::Newest => None,
            Selector::Id(id) => {
                return Err(Error::NoSnapshot(format!(
                    "{} has no s32s3 snapshots (it was written by rclone), so there is no snapshot {id:?}; use --at",
                    cx.location()
                )));
            }
        };
        self.summary.point_in_time = Some(at.map_or_else(|| "latest".into(), crate::clock::format_rfc3339));
        cx.progress.event(&Event::Phase("listing the versions of the rclone backup"));
        let (mut sorted, buckets) = self.rclone_entries(at).await?;
        if buckets.is_empty() {
            return Err(Error::NoSnapshot(match at {
                Some(at) => format!(
                    "{} holds no object version at or before {}",
                    cx.location(),
                    crate::clock::format_rfc3339(at)
                ),
                None => format!("{} holds no objects", cx.location()),
            }));
        }
        let wanted: BTreeMap<String, String> = if self.job.buckets.is_empty() {
            buckets.iter().map(|b| (b.clone(), b.clone())).collect()
        } else {
            self.job.buckets.iter().map(|m| (m.from.clone(), m.to.clone())).collect()
        };
        if let Some(from) = wanted.keys().find(|b| !buckets.contains(*b)) {
            return Err(Error::Config {
                field: "bucket".into(),
                reason: format!("the rclone backup in {} has no bucket {from:?}", cx.location()),
            });
        }
        let mut entries = sorted.iter()?.map(|k| k.map(|k| k.entry)).peekable();
        while let Some(next) = entries.peek() {
            let bucket = match next {
                Ok(entry) => entry.bucket.clone(),
                Err(_) => return Err(entries.next().expect("peeked").expect_err("peeked an error")),
            };
            let group = BucketEntries { entries: &mut entries, bucket: &bucket };
            let Some(to) = wanted.get(&bucket) else {
                group.for_each(drop);
                continue;
            };
            self.summary.buckets.push(to.clone());
            if !self.job.dry_run && !self.existing_buckets.contains(to) {
                let record = BucketRecord { name: bucket.clone(), ..Default::default() };
                if !self.prepare_bucket(&record, to, false).await? {
                    group.for_each(drop);
                    continue;
                }
            }
            self.data(to, false, group, true).await?;
        }
        Ok(())
    }

    /// The objects of a backup rclone made, as of `at`, sorted by (bucket, key) on disk, and the buckets
    /// they are in. Versions are spilled to disk and sorted by stored key (keeping the server's order
    /// within a key), so memory does not grow with the number of objects or versions.
    async fn rclone_entries(
        &mut self,
        at: Option<OffsetDateTime>,
    ) -> Result<(SortedItems<Keyed>, std::collections::BTreeSet<String>)> {
        let cx = self.cx;
        let mut versions =
            ExternalSort::new(cx.work.path(), RUN_LEN, |v: &VersionItem| v.key.as_str()).keeping_duplicates();
        let meta = cx.layout.meta("");
        let mut spilled = Ok(());
        cx.dest
            .list_versions_in_order(cx.bucket(), Some(cx.layout.root()), |v| {
                let skip = v.key.starts_with(&meta)
                    || v.key.ends_with('/')
                    || at.is_some_and(|at| v.last_modified > at);
                if !skip && spilled.is_ok() {
                    spilled = versions.push(v);
                }
            })
            .await?;
        spilled?;
        let mut versions = versions.finish()?;
        let mut objects = ExternalSort::new(cx.work.path(), RUN_LEN, |k: &Keyed| k.sort_key.as_str());
        let mut buckets = std::collections::BTreeSet::new();
        let mut listed = versions.iter()?.peekable();
        while let Some((stored_key, version_id, stored_size)) = chosen_version(&mut listed)? {
            let Ok((bucket, key)) = cx.layout.decrypt_data_key(&stored_key) else {
                self.note(format!("skipping {stored_key}: the name does not decrypt (not written by rclone crypt with this password)"));
                continue;
            };
            let size = match s32s3_crypt::decrypted_size(stored_size) {
                Ok(size) => size,
                Err(e) => {
                    self.fail(&bucket, &key, &format!("stored as s3://{}/{stored_key}: {e}", cx.bucket()));
                    continue;
                }
            };
            buckets.insert(bucket.clone());
            let sort_key = format!("{bucket}\0{key}");
            let entry = Entry { bucket, key, size, stored_key, version_id, ..Default::default() };
            objects.push(Keyed { sort_key, entry })?;
        }
        Ok((objects.finish()?, buckets))
    }
}

/// An entry sorted by (bucket, key): `bucket \0 key` orders like the pair (a bucket name has no NUL).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Keyed {
    sort_key: String,
    entry: Entry,
}

/// The entries of one bucket at the front of a sorted stream.
struct BucketEntries<'a, I: Iterator<Item = Result<Entry>>> {
    entries: &'a mut std::iter::Peekable<I>,
    bucket: &'a str,
}

impl<I: Iterator<Item = Result<Entry>>> Iterator for BucketEntries<'_, I> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        match self.entries.peek()? {
            Ok(entry) if entry.bucket != self.bucket => None,
            _ => self.entries.next(),
        }
    }
}

/// Pairs each entry (sorted by key) with what the target's listing (sorted the same way) holds under its
/// key: one listing instead of a request per object.
struct WithListed<E: Iterator, L: Iterator> {
    entries: E,
    listed: std::iter::Peekable<L>,
}

impl<E, L> WithListed<E, L>
where
    E: Iterator<Item = Result<Entry>>,
    L: Iterator<Item = Result<Listed>>,
{
    fn new(entries: E, listed: L) -> Self {
        Self { entries, listed: listed.peekable() }
    }
}

impl<E, L> Iterator for WithListed<E, L>
where
    E: Iterator<Item = Result<Entry>>,
    L: Iterator<Item = Result<Listed>>,
{
    type Item = Result<(Entry, Option<Listed>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let entry = match self.entries.next()? {
            Ok(entry) => entry,
            Err(e) => return Some(Err(e)),
        };
        while self.listed.peek().is_some_and(|l| l.as_ref().is_ok_and(|l| l.key < entry.key)) {
            self.listed.next();
        }
        let found = match self.listed.peek() {
            Some(Ok(l)) if l.key == entry.key => Some(l.clone()),
            Some(Err(_)) => {
                return Some(Err(self.listed.next().expect("peeked").expect_err("peeked an error")));
            }
            _ => None,
        };
        Some(Ok((entry, found)))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Restore,
    Equal,
    Conflict,
}

/// How the objects of one bucket are restored.
struct ObjectJob<'a> {
    restorer: &'a Restorer,
    target: &'a str,
    object_lock: bool,
    from_rclone: bool,
    dry_run: bool,
    overwrite: bool,
    now: time::OffsetDateTime,
}

impl ObjectJob<'_> {
    /// Decides about one object (`listed`: what the target holds under its key) and restores it if so.
    async fn one(&self, entry: Entry, listed: Option<Listed>) -> (Entry, Result<Decision>) {
        let decision = match listed {
            None => Ok(Decision::Restore),
            Some(listed) => {
                same_object(self.restorer, self.target, &entry, &listed, self.from_rclone).await.map(|same| {
                    if same {
                        Decision::Equal
                    } else if self.overwrite {
                        Decision::Restore
                    } else {
                        Decision::Conflict
                    }
                })
            }
        };
        let result = match decision {
            Ok(Decision::Restore) if !self.dry_run => {
                let item = RestoreItem {
                    entry: entry.clone(),
                    bucket: self.target.to_owned(),
                    object_lock: self.object_lock,
                    now: self.now,
                    mtime_from_stored: self.from_rclone,
                };
                self.restorer.restore(&item).await.map(|()| Decision::Restore)
            }
            other => other,
        };
        (entry, result)
    }
}

/// Whether the object already in the target is the one the entry describes: same size, and the same ETag
/// or (a multipart upload's ETag differs) the same SHA-256. For a backup rclone made (no SHA-256 known),
/// rclone's own rule: the same size and the same `X-Amz-Meta-Mtime` as the stored version, which the
/// restore puts on every object it writes.
async fn same_object(
    restorer: &Restorer,
    bucket: &str,
    entry: &Entry,
    listed: &Listed,
    from_rclone: bool,
) -> Result<bool> {
    if listed.size != entry.size {
        return Ok(false);
    }
    if !entry.etag.is_empty() && listed.etag == entry.etag {
        return Ok(true);
    }
    if from_rclone {
        let target = restorer.target.head(bucket, &entry.key, ReadOptions::current()).await?;
        let stored = restorer
            .backup
            .head(
                &restorer.backup_bucket,
                &entry.stored_key,
                ReadOptions::version(entry.version_id.as_deref()),
            )
            .await?;
        let mtime = |head: &crate::store::ObjectHead| head.metadata.get("mtime").cloned();
        return Ok(mtime(&stored).is_some() && mtime(&target) == mtime(&stored));
    }
    if entry.sha256.is_empty() {
        return Ok(false);
    }
    // Read as it streams: a few chunks in memory, whatever the object's size. If-Match: what is hashed is
    // the object that was listed.
    let _memory = restorer.run.limits.memory(STREAM_MEMORY).await;
    let mut reader =
        restorer.target.read_range(bucket, &entry.key, ReadOptions::if_match(&listed.etag), 0..entry.size);
    Ok(sha256_of(&mut reader).await? == entry.sha256)
}

/// Whether a configuration document says anything (a never-versioned bucket's `<VersioningConfiguration/>`
/// or an empty notification configuration need no request).
fn meaningful(name: &str, doc: &str) -> bool {
    match name {
        "versioning" => doc.contains("<Status>"),
        "notification" => {
            doc.contains("Configuration><")
                && (doc.contains("<Queue")
                    || doc.contains("<Topic")
                    || doc.contains("<CloudFunction")
                    || doc.contains("<EventBridge"))
        }
        _ => !doc.trim().is_empty(),
    }
}

/// The version to restore of the next stored key in `versions` (sorted by key, each key's versions in the
/// order the server listed them, all at or before the point in time): the newest, unless that is a delete
/// marker, which hides the key — then the next key's. `(key, version id, size)`; `None` at the end. Times
/// compare at the precision the server lists them; of versions (and delete markers) with the same time
/// the key's latest wins, then the one listed first (the newer, in S3's order).
fn chosen_version(
    versions: &mut std::iter::Peekable<impl Iterator<Item = Result<VersionItem>>>,
) -> Result<Option<(String, Option<String>, u64)>> {
    while let Some(first) = versions.next().transpose()? {
        let mut chosen = first;
        while let Some(Ok(v)) = versions.peek() {
            if v.key != chosen.key {
                break;
            }
            let v = versions.next().expect("peeked")?;
            // Newer, or as new and the latest: of equal times otherwise the one listed first stays.
            if v.last_modified > chosen.last_modified
                || (v.last_modified == chosen.last_modified && v.is_latest && !chosen.is_latest)
            {
                chosen = v;
            }
        }
        if let Some(Err(_)) = versions.peek() {
            return Err(versions.next().expect("peeked").expect_err("peeked an error"));
        }
        if !chosen.delete_marker {
            return Ok(Some((chosen.key, chosen.version_id, chosen.size)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_mappings() {
        assert_eq!("a".parse::<BucketMapping>(), Ok(BucketMapping { from: "a".into(), to: "a".into() }));
        assert_eq!("a:b".parse::<BucketMapping>(), Ok(BucketMapping { from: "a".into(), to: "b".into() }));
        assert!(":b".parse::<BucketMapping>().is_err());
        assert!("a:".parse::<BucketMapping>().is_err());
    }

    #[test]
    fn empty_documents_are_skipped() {
        assert!(!meaningful("versioning", "<VersioningConfiguration xmlns=\"x\"/>"));
        assert!(meaningful(
            "versioning",
            "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"
        ));
        assert!(!meaningful("notification", "<NotificationConfiguration></NotificationConfiguration>"));
        assert!(meaningful(
            "notification",
            "<NotificationConfiguration><QueueConfiguration><Queue>arn</Queue></QueueConfiguration></NotificationConfiguration>"
        ));
        assert!(meaningful("policy", "{\"Version\":\"2012-10-17\"}"));
    }
}
