//! `s32s3 daemon`: backups on a cron schedule (UTC), never two at once, optionally verifications on a second
//! schedule, never at the same time as a backup; `/metrics` and `/healthz` over HTTP.
//! SIGTERM stops it gracefully: a running backup writes its checkpoint and releases its lease.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use chrono::{DateTime, Utc};
use clap::Args;
use prometheus_client::registry::Registry;
use s32s3_core::{CancellationToken, ReadData, Verify};
use tokio::net::TcpListener;

use crate::config::{ConfigError, Effective};
use crate::exit;
use crate::metrics::{Metrics, NewestSnapshot, Shared, VerifyCounts};
use crate::output::CliProgress;
use crate::schedule::Schedule;

/// `s32s3 daemon` arguments.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub config: crate::config::ConfigArgs,
    /// Address to serve `/metrics` and `/healthz` on.
    #[arg(long, env = "S32S3_LISTEN", default_value = "0.0.0.0:9090")]
    pub listen: String,
    /// Back up only this source bucket (repeatable).
    #[arg(long = "bucket", value_name = "NAME")]
    pub buckets: Vec<String>,
}

/// The scheduled verifications: when, and how much data each reads.
struct VerifyPlan {
    schedule: Schedule,
    read_data: ReadData,
}

/// What the daemon does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    Backup,
    Verify,
}

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run(args: &DaemonArgs, config: &Effective) -> Result<u8> {
    let schedule = parse_schedule("schedule", config.schedule.as_deref())?.ok_or_else(|| ConfigError {
        field: "schedule".into(),
        reason: "is not set (S32S3_SCHEDULE, --schedule or `schedule` in the file)".into(),
    })?;
    let verify =
        parse_schedule("verify_schedule", config.verify_schedule.as_deref())?.map(|schedule| VerifyPlan {
            schedule,
            read_data: match config.verify_read_data_subset {
                None => ReadData::None,
                Some(p) if p <= 0.0 => ReadData::None,
                Some(p) if p >= 100.0 => ReadData::All,
                Some(p) => ReadData::Subset(p),
            },
        });
    let metrics = Shared::new(Metrics::live());
    let listener =
        TcpListener::bind(&args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let cancel = crate::signals::cancel_on_signals();
    tracing::info!(
        listen = %args.listen,
        schedule = schedule.text(),
        verify_schedule = verify.as_ref().map(|v| v.schedule.text()),
        "daemon started"
    );
    tokio::spawn(serve(listener, metrics.clone()));
    let progress = Arc::new(CliProgress::new(&config.output));
    refresh_location(config, &progress, &metrics).await;

    let now = Utc::now();
    let mut next_backup = next(&schedule, "schedule", now)?;
    let mut next_verify = verify.as_ref().map(|v| next(&v.schedule, "verify_schedule", now)).transpose()?;
    loop {
        // One job at a time: a verification that falls due during a backup runs after it, and the other
        // way round. On a tie the backup goes first, so that the verification checks the new snapshot.
        let (job, at) = match next_verify {
            Some(at) if at < next_backup => (Job::Verify, at),
            _ => (Job::Backup, next_backup),
        };
        match job {
            Job::Backup => tracing::info!(next = %at.to_rfc3339(), "next backup at {at}"),
            Job::Verify => tracing::info!(next = %at.to_rfc3339(), "next verify at {at}"),
        }
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => break,
        }
        let stopped = if let (Job::Verify, Some(plan)) = (job, &verify) {
            let stopped = run_verify(config, plan, &progress, &cancel, &metrics).await;
            next_verify = Some(next(&plan.schedule, "verify_schedule", Utc::now())?);
            stopped
        } else {
            let stopped = run_backup(args, config, &progress, &cancel, &metrics).await;
            next_backup = next(&schedule, "schedule", Utc::now())?;
            stopped
        };
        if stopped || cancel.is_cancelled() {
            break;
        }
    }
    tracing::info!("daemon stopped");
    Ok(exit::OK)
}

/// A schedule setting parsed (already checked with the configuration; an error here names it all the same).
fn parse_schedule(field: &str, text: Option<&str>) -> Result<Option<Schedule>> {
    text.map(|text| Schedule::parse(text).map_err(|reason| ConfigError::invalid(field, reason).into()))
        .transpose()
}

/// When `schedule` fires next after `now`.
fn next(schedule: &Schedule, field: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    schedule
        .next_after(now)
        .ok_or_else(|| ConfigError::invalid(field, format!("{:?} never fires", schedule.text())).into())
}

/// One scheduled backup; `true` when a signal stopped it.
async fn run_backup(
    args: &DaemonArgs,
    config: &Effective,
    progress: &Arc<CliProgress>,
    cancel: &CancellationToken,
    metrics: &Shared,
) -> bool {
    metrics.update(Metrics::started);
    let started = Instant::now();
    let backup = s32s3_core::Backup::new(config.run.clone()).with_buckets(args.buckets.clone());
    let result = Box::pin(backup.run(progress.clone(), cancel.child_token())).await;
    // The run's outcome and the location's new state are published together, so a scrape never sees a
    // success next to the snapshot count from before it.
    let location = read_location(config, progress).await;
    metrics.update(|m| {
        let stopped = match result {
            Ok(summary) => {
                tracing::info!(
                    snapshot = summary.snapshot_id,
                    status = %summary.status,
                    objects = summary.totals.objects,
                    new = summary.counts.new.objects,
                    changed = summary.counts.changed.objects,
                    deleted = summary.counts.deleted.objects,
                    failed = summary.failed.len(),
                    "backup {} {}",
                    summary.snapshot_id,
                    summary.status
                );
                m.finished(&summary);
                false
            }
            Err(s32s3_core::Error::Cancelled) => {
                m.failed(started.elapsed().as_secs_f64());
                tracing::warn!(
                    "backup stopped by signal; a checkpoint was written and the next run resumes from it"
                );
                true
            }
            Err(e) => {
                m.failed(started.elapsed().as_secs_f64());
                tracing::error!("backup failed: {e}");
                false
            }
        };
        location.apply(m);
        stopped
    })
}

/// One scheduled verification of the newest complete snapshot; `true` when a signal stopped it.
async fn run_verify(
    config: &Effective,
    plan: &VerifyPlan,
    progress: &Arc<CliProgress>,
    cancel: &CancellationToken,
    metrics: &Shared,
) -> bool {
    let job = Verify::new(config.run.clone()).with_read_data(plan.read_data);
    match Box::pin(job.run(progress.clone(), cancel.child_token())).await {
        Ok(summary) => {
            let counts = VerifyCounts::of(&summary);
            let damaged = counts.damaged + counts.missing;
            let line = format!(
                "verify of snapshot {}: {} objects checked, {} read, {} damaged or missing, {} unreadable",
                summary.snapshot_id,
                summary.checked.objects,
                summary.read.objects,
                damaged,
                counts.unreadable
            );
            let fields = (summary.checked.objects, summary.read.objects, counts.unreadable);
            if damaged > 0 || counts.unreadable > 0 {
                tracing::warn!(
                    snapshot = summary.snapshot_id,
                    checked = fields.0,
                    read = fields.1,
                    damaged,
                    unreadable = fields.2,
                    "{line}"
                );
            } else {
                tracing::info!(
                    snapshot = summary.snapshot_id,
                    checked = fields.0,
                    read = fields.1,
                    damaged,
                    unreadable = fields.2,
                    "{line}"
                );
            }
            metrics.update(|m| m.verified(counts));
            false
        }
        Err(s32s3_core::Error::Cancelled) => {
            metrics.update(Metrics::verify_failed);
            tracing::warn!("verify stopped by signal");
            true
        }
        Err(e) => {
            metrics.update(Metrics::verify_failed);
            tracing::error!("verify failed: {e}");
            false
        }
    }
}

/// What the backup location holds, as far as it could be read.
struct Location {
    stats: Option<s32s3_core::StorageStats>,
    /// The snapshots (`None`: they could not be listed, and what was known of them stays).
    snapshots: Option<Vec<s32s3_core::SnapshotInfo>>,
}

impl Location {
    fn apply(self, metrics: &mut Metrics) {
        if let Some(stats) = self.stats {
            metrics.storage(stats);
        }
        if let Some(list) = self.snapshots {
            metrics.newest_snapshot(NewestSnapshot::of(&list));
        }
    }
}

/// Reads the location's size and its newest snapshot's buckets (a listing, and a manifest header per
/// snapshot); failures are logged and leave the metrics as they were.
async fn read_location(config: &Effective, progress: &Arc<CliProgress>) -> Location {
    let stats = s32s3_core::storage_stats(&config.run, progress.clone())
        .await
        .inspect_err(|e| tracing::warn!("could not read the backup location's size: {e}"))
        .ok();
    let snapshots = s32s3_core::describe(&config.run, progress.clone())
        .await
        .inspect_err(|e| tracing::warn!("could not list the snapshots: {e}"))
        .ok();
    Location { stats, snapshots }
}

async fn refresh_location(config: &Effective, progress: &Arc<CliProgress>, metrics: &Shared) {
    let location = read_location(config, progress).await;
    metrics.update(|m| location.apply(m));
}

/// Serves `GET /metrics` and `GET /healthz` (404 for anything else) as long as the process runs: also
/// while a stopped backup writes its checkpoint.
async fn serve(listener: TcpListener, metrics: Shared) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(metrics));
    let registry = Arc::new(registry);
    let app =
        Router::new()
            .route(
                "/metrics",
                get(move || {
                    let registry = Arc::clone(&registry);
                    async move {
                        ([(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], crate::metrics::encode(&registry))
                    }
                }),
            )
            .route("/healthz", get(|| async { "ok\n" }));
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("the metrics server stopped: {e}");
    }
}
