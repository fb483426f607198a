//! `s32s3 backup`: back up all buckets of the source (or the named ones) into the backup location.

use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use s32s3_core::SnapshotStatus;
use s32s3_core::{Backup, BackupSummary};

use crate::config::Effective;
use crate::exit;
use crate::output::{CliProgress, human_bytes};

/// `s32s3 backup` arguments.
#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub config: crate::config::ConfigArgs,
    /// Back up only this source bucket (repeatable); the others of the last snapshot are carried over.
    #[arg(long = "bucket", value_name = "NAME")]
    pub buckets: Vec<String>,
    /// Show what would be copied and deleted, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write Prometheus metrics of this run to this file (node-exporter's textfile collector).
    #[arg(long, env = "S32S3_METRICS_FILE", value_name = "FILE")]
    pub metrics_file: Option<std::path::PathBuf>,
    /// Push Prometheus metrics of this run to this Pushgateway (e.g. `http://pushgateway:9091`).
    #[arg(long, env = "S32S3_PUSHGATEWAY", value_name = "URL")]
    pub pushgateway: Option<String>,
    /// Be shard I (from 0) of a run of N processes (`I/N`, with `--run-id`): each copies the objects it owns
    /// and writes its part; the last to finish writes the run's one snapshot.
    #[arg(long, env = "S32S3_SHARD", value_name = "I/N", requires = "run_id")]
    pub shard: Option<String>,
    /// The id shared by the shards of one run (1 to 64 of A-Z a-z 0-9 _ -, e.g. a Kubernetes Job's name);
    /// it names the run's snapshot. A rerun of a shard with the same id completes the run.
    #[arg(long, env = "S32S3_RUN_ID", value_name = "ID", requires = "shard")]
    pub run_id: Option<String>,
}

/// Runs a backup and prints its summary; returns the exit code.
pub async fn run(args: &BackupArgs, config: &Effective) -> Result<u8> {
    let progress = Arc::new(CliProgress::new(&config.output));
    let cancel = crate::signals::cancel_on_signals();
    let shard = match (&args.shard, &args.run_id) {
        (Some(spec), Some(run_id)) => Some(s32s3_core::Shard::parse(spec, run_id)?),
        _ => None,
    };
    let backup = Backup::new(config.run.clone())
        .with_buckets(args.buckets.clone())
        .with_dry_run(args.dry_run)
        .with_shard(shard.clone());
    let started = std::time::Instant::now();
    let result = Box::pin(backup.run(progress.clone(), cancel)).await;
    progress.finish();
    if !args.dry_run && (args.metrics_file.is_some() || args.pushgateway.is_some()) {
        let mut metrics = crate::metrics::Metrics::default();
        match &result {
            Ok(summary) => metrics.finished(summary),
            Err(_) => metrics.failed(started.elapsed().as_secs_f64()),
        }
        if let Ok(stats) = s32s3_core::storage_stats(&config.run, progress.clone()).await {
            metrics.storage(stats);
        }
        if let Ok(list) = s32s3_core::describe(&config.run, progress.clone()).await {
            metrics.newest_snapshot(crate::metrics::NewestSnapshot::of(&list));
        }
        if let Some(path) = &args.metrics_file
            && let Err(e) = metrics.write_textfile(path)
        {
            tracing::warn!("{e:#}");
        }
        if let Some(url) = &args.pushgateway
            && let Err(e) = metrics.push(url, shard.as_ref().map(s32s3_core::Shard::index)).await
        {
            tracing::warn!("{e:#}");
        }
    }
    let summary = result?;
    print_summary(&summary, shard.as_ref(), args.json);
    Ok(if summary.failed.is_empty() { exit::OK } else { exit::PARTIAL })
}

fn print_summary(s: &BackupSummary, shard: Option<&s32s3_core::Shard>, json: bool) {
    let c = &s.counts;
    if json {
        let value = serde_json::to_string(s).expect("summaries serialize");
        println!("{value}");
        return;
    }
    let what = if s.dry_run {
        "dry run (nothing written)".to_owned()
    } else if let (Some(shard), None) = (shard, &s.manifest_key) {
        format!(
            "part {}/{} of run {} written (the last shard to finish writes the snapshot)",
            shard.index(),
            shard.count(),
            shard.run_id()
        )
    } else {
        match s.status {
            SnapshotStatus::Complete => format!("snapshot {} complete", s.snapshot_id),
            _ => format!("snapshot {} PARTIAL", s.snapshot_id),
        }
    };
    println!(
        "{what}: {} objects, {} in {} buckets",
        s.totals.objects,
        human_bytes(s.totals.bytes),
        s.buckets
    );
    println!(
        "  new {} ({}), changed {} ({}), tags changed {}, unchanged {} ({}), deleted {} ({}), failed {}",
        c.new.objects,
        human_bytes(c.new.bytes),
        c.changed.objects,
        human_bytes(c.changed.bytes),
        c.retagged.objects,
        c.unchanged.objects,
        human_bytes(c.unchanged.bytes),
        c.deleted.objects,
        human_bytes(c.deleted.bytes),
        s.failed.len()
    );
    for f in &s.failed {
        if f.key.is_empty() {
            println!("  FAILED bucket {}: {}", f.bucket, f.error);
        } else {
            println!("  FAILED s3://{}/{}: {}", f.bucket, f.key, f.error);
        }
    }
    for f in &s.vanished {
        println!("  VANISHED s3://{}/{}: {}", f.bucket, f.key, f.error);
    }
    if let Some(h) = &s.history {
        println!(
            "  source history: {} versions, {} delete markers; stored now: {} versions read from the source, {} \
             copied inside the backup store ({}); {} dropped past the window",
            h.versions,
            h.delete_markers,
            h.versions_copied,
            h.versions_copied_in_place,
            human_bytes(h.bytes_copied),
            h.dropped
        );
    }
    if s.history_copies_deleted > 0 {
        println!(
            "  source_versions is off: {} stored copies of older source versions deleted (earlier snapshots \
             still restore them for their window)",
            s.history_copies_deleted
        );
    }
    if s.tag_checks > 0 {
        println!("  tag check: {} GetObjectTagging requests (check_tags)", s.tag_checks);
    }
    if !s.pruned.is_empty() {
        println!("  pruned {} snapshots past their restorable window", s.pruned.len());
    }
    println!("  duration {:.1}s", s.duration.as_secs_f64());
}
