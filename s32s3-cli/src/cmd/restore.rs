//! `s32s3 restore`, `s32s3 verify`, `s32s3 snapshots`.

use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Args;
use s32s3_core::Selector;
use s32s3_core::{BucketMapping, Restore};
use s32s3_core::{ReadData, Verify};
use time::OffsetDateTime;

use crate::config::Effective;
use crate::exit;
use crate::output::{CliProgress, human_bytes};

/// `s32s3 restore` arguments.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub config: crate::config::ConfigArgs,
    /// Restore the newest snapshot (complete or partial) finished at or before this time (RFC 3339, e.g.
    /// 2026-11-26T10:00:00Z; a time to the second covers that second) [default: the newest complete one].
    #[arg(long, value_name = "TIME", conflicts_with = "snapshot")]
    pub at: Option<String>,
    /// Restore this snapshot (an id from `s32s3 snapshots`).
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<String>,
    /// Restore only this bucket, optionally under another name (repeatable).
    #[arg(long = "bucket", value_name = "SRC[:DST]")]
    pub buckets: Vec<String>,
    /// Restore only keys starting with this prefix.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Do not restore MinIO IAM (users, groups, policies, service accounts).
    #[arg(long)]
    pub no_iam: bool,
    /// Do not restore bucket configuration (versioning, lifecycle, policy, tags, CORS, …).
    #[arg(long)]
    pub no_config: bool,
    /// Also restore the MinIO server configuration (replaces it whole and restarts the server).
    #[arg(long)]
    pub server_config: bool,
    /// Replace objects that exist in the target and differ (they are reported and left alone otherwise);
    /// with `--source-versions`, replay a key's history on top of versions that are not its beginning.
    #[arg(long)]
    pub overwrite: bool,
    /// Show what would be restored, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `s32s3 verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub config: crate::config::ConfigArgs,
    /// Verify this snapshot [default: the newest complete one].
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<String>,
    /// Download, authenticate, decrypt and hash every object.
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read only this percentage of the objects (the same ones each time).
    #[arg(long, value_name = "PERCENT")]
    pub read_data_subset: Option<f64>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `s32s3 snapshots` arguments.
#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub config: crate::config::ConfigArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_time(text: &str) -> Result<OffsetDateTime> {
    s32s3_core::parse_point_in_time(text)
        .map_err(|reason| crate::config::ConfigError { field: "--at".into(), reason }.into())
}

fn selector(at: Option<&str>, snapshot: Option<&String>) -> Result<Selector> {
    Ok(match (at, snapshot) {
        (Some(at), _) => Selector::At(parse_time(at)?),
        (None, Some(id)) => Selector::Id(id.clone()),
        (None, None) => Selector::Newest,
    })
}

/// Runs a restore.
pub async fn restore(args: &RestoreArgs, config: &Effective) -> Result<u8> {
    let mut mappings = Vec::new();
    for text in &args.buckets {
        match text.parse::<BucketMapping>() {
            Ok(m) => mappings.push(m),
            Err(reason) => bail!(crate::config::ConfigError { field: "--bucket".into(), reason }),
        }
    }
    let progress = Arc::new(CliProgress::new(&config.output));
    let job = Restore::new(config.run.clone())
        .with_selector(selector(args.at.as_deref(), args.snapshot.as_ref())?)
        .with_buckets(mappings)
        .with_prefix(args.prefix.clone())
        .with_iam(!args.no_iam)
        .with_bucket_config(!args.no_config)
        .with_server_config(args.server_config)
        .with_overwrite(args.overwrite)
        .with_source_versions(config.run.source_versions)
        .with_dry_run(args.dry_run);
    let result = Box::pin(job.run(progress.clone(), crate::signals::cancel_on_signals())).await;
    progress.finish();
    let s = result?;
    if args.json {
        println!("{}", serde_json::to_string(&s).expect("summaries serialize"));
    } else {
        let from = match (&s.snapshot_id, &s.point_in_time) {
            (Some(id), Some(t)) if s.partial => format!("partial snapshot {id} ({t})"),
            (Some(id), Some(t)) => format!("snapshot {id} ({t})"),
            (None, Some(t)) => format!("rclone backup as of {t}"),
            _ => "backup".into(),
        };
        let verb = if s.dry_run { "would restore" } else { "restored" };
        println!(
            "{from}: {verb} {} objects ({}) into {} buckets, {} already present and equal",
            s.restored.objects,
            human_bytes(s.restored.bytes),
            s.buckets.len(),
            s.skipped.objects
        );
        if s.delete_markers > 0 {
            println!("  source history replayed: {} delete markers in their places", s.delete_markers);
        }
        for note in &s.notes {
            println!("  {note}");
        }
        for f in &s.conflicts {
            println!("  CONFLICT s3://{}/{}: {}", f.bucket, f.key, f.error);
        }
        for f in &s.failed {
            println!("  FAILED {}: {}", location(f), f.error);
        }
        println!("  duration {:.1}s", s.duration.as_secs_f64());
    }
    Ok(if s.failed.is_empty() && s.conflicts.is_empty() { exit::OK } else { exit::PARTIAL })
}

fn location(f: &s32s3_core::Failure) -> String {
    match (f.bucket.is_empty(), f.key.is_empty()) {
        (true, _) => f.key.clone(),
        (false, true) => format!("bucket {}", f.bucket),
        (false, false) => format!("s3://{}/{}", f.bucket, f.key),
    }
}

/// Runs a verification.
pub async fn verify(args: &VerifyArgs, config: &Effective) -> Result<u8> {
    let read_data = match (args.read_data, args.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(p)) if (0.0..=100.0).contains(&p) => ReadData::Subset(p),
        (false, Some(p)) => bail!(crate::config::ConfigError {
            field: "--read-data-subset".into(),
            reason: format!("{p} is not a percentage between 0 and 100"),
        }),
        (false, None) => ReadData::None,
    };
    let progress = Arc::new(CliProgress::new(&config.output));
    let job = Verify::new(config.run.clone())
        .with_selector(selector(None, args.snapshot.as_ref())?)
        .with_read_data(read_data);
    let result = Box::pin(job.run(progress.clone(), crate::signals::cancel_on_signals())).await;
    progress.finish();
    let s = result?;
    if args.json {
        println!("{}", serde_json::to_string(&s).expect("summaries serialize"));
    } else {
        println!(
            "snapshot {}: {} objects checked, {} read ({}), {} bad, {} unreadable; restorable until {}",
            s.snapshot_id,
            s.checked.objects,
            s.read.objects,
            human_bytes(s.read.bytes),
            s.bad.len(),
            s.unreadable.len(),
            s.window.describe()
        );
        for f in &s.bad {
            println!("  BAD {}: {}", location(f), f.error);
        }
        for f in &s.unreadable {
            println!("  UNREADABLE {}: {}", location(f), f.error);
        }
    }
    Ok(if s.bad.is_empty() && s.unreadable.is_empty() { exit::OK } else { exit::PARTIAL })
}

/// Lists the snapshots.
pub async fn snapshots(args: &SnapshotsArgs, config: &Effective) -> Result<u8> {
    let progress = Arc::new(CliProgress::new(&config.output));
    let list = s32s3_core::describe(&config.run, progress.clone()).await;
    progress.finish();
    let list = list?;
    if args.json {
        println!("{}", serde_json::to_string(&list).expect("snapshot rows serialize"));
        return Ok(exit::OK);
    }
    println!(
        "{:<10} {:<25} {:<9} {:<25} {:>8} {:>10} {:>10}  source",
        "ID", "FINISHED", "STATUS", "RESTORABLE UNTIL", "BUCKETS", "OBJECTS", "SIZE"
    );
    for info in &list {
        // The name's time, to the millisecond: pasted into --at, it selects this snapshot.
        let finished = s32s3_core::format_rfc3339(info.snapshot.finished);
        let until = match info.window {
            Some(w) => w.until().map_or_else(|| "open".to_owned(), s32s3_core::format_rfc3339),
            None => "-".into(),
        };
        match &info.header {
            Ok(h) => println!(
                "{:<10} {:<25} {:<9} {:<25} {:>8} {:>10} {:>10}  {}{}",
                info.snapshot.id,
                finished,
                h.status.to_string(),
                until,
                h.buckets.len(),
                h.totals.objects,
                human_bytes(h.totals.bytes),
                h.source.endpoint,
                h.source.minio_version.as_ref().map(|v| format!(" (MinIO {v})")).unwrap_or_default()
                    + &h.history
                        .as_ref()
                        .map(|v| format!(
                            ", source history: {} versions, {} delete markers",
                            v.versions, v.delete_markers
                        ))
                        .unwrap_or_default()
            ),
            Err(e) => println!("{:<10} {:<25} unreadable: {e}", info.snapshot.id, finished),
        }
    }
    if list.iter().any(|i| i.window.is_some_and(|w| w.until().is_none())) {
        println!("  open: restorable until expiration_days after the next backup that replaces something");
    }
    Ok(exit::OK)
}
