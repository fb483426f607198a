//! `s32s3 daemon`: backups on a cron schedule (UTC), never two at once, with `/metrics` and `/healthz`.
//! SIGTERM stops it gracefully: a running backup writes its checkpoint and releases its lease.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Args;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::config::{ConfigError, Effective};
use crate::exit;
use crate::metrics::Metrics;
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

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run(args: &DaemonArgs, config: &Effective) -> Result<u8> {
    let text = config.schedule.clone().ok_or_else(|| ConfigError {
        field: "schedule".into(),
        reason: "is not set (S32S3_SCHEDULE, --schedule or `schedule` in the file)".into(),
    })?;
    let schedule =
        Schedule::parse(&text).map_err(|reason| ConfigError { field: "schedule".into(), reason })?;
    let metrics = Arc::new(Mutex::new(Metrics::default()));
    let listener =
        TcpListener::bind(&args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %args.listen, schedule = schedule.text(), "daemon started");
    tokio::spawn(serve(listener, Arc::clone(&metrics)));
    let cancel = crate::signals::cancel_on_signals();
    let progress = Arc::new(CliProgress::new(&config.output));
    if let Some(stats) = storage_stats(config, &progress).await {
        metrics.lock().expect("not poisoned").storage(stats);
    }

    loop {
        let now = chrono::Utc::now();
        let Some(next) = schedule.next_after(now) else {
            anyhow::bail!(ConfigError { field: "schedule".into(), reason: format!("{text:?} never fires") });
        };
        tracing::info!(next = %next.to_rfc3339(), "next backup at {next}");
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => break,
        }
        metrics.lock().expect("not poisoned").started();
        let started = Instant::now();
        let backup = s32s3_core::Backup::new(config.run.clone()).with_buckets(args.buckets.clone());
        let result = Box::pin(backup.run(progress.clone(), cancel.child_token())).await;
        // The run's outcome and the location's new size are published together, so a scrape never
        // sees a success next to the snapshot count from before it.
        let stats = storage_stats(config, &progress).await;
        let mut m = metrics.lock().expect("not poisoned");
        match result {
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
            }
            Err(s32s3_core::Error::Cancelled) => {
                m.failed(started.elapsed().as_secs_f64());
                tracing::warn!(
                    "backup stopped by signal; a checkpoint was written and the next run resumes from it"
                );
                break;
            }
            Err(e) => {
                m.failed(started.elapsed().as_secs_f64());
                tracing::error!("backup failed: {e}");
            }
        }
        if let Some(stats) = stats {
            m.storage(stats);
        }
        drop(m);
        if cancel.is_cancelled() {
            break;
        }
    }
    tracing::info!("daemon stopped");
    Ok(exit::OK)
}

async fn storage_stats(config: &Effective, progress: &Arc<CliProgress>) -> Option<s32s3_core::StorageStats> {
    s32s3_core::storage_stats(&config.run, progress.clone())
        .await
        .inspect_err(|e| tracing::warn!("could not read the backup location's size: {e}"))
        .ok()
}

/// A minimal HTTP/1.1 responder: `GET /metrics`, `GET /healthz`, 404 otherwise; one request per connection.
async fn serve(listener: TcpListener, metrics: Arc<Mutex<Metrics>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let mut request = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let line = String::from_utf8_lossy(&request);
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            let (status, content_type, body) = match (method, path) {
                ("GET", "/metrics") => {
                    ("200 OK", "text/plain; version=0.0.4", metrics.lock().expect("not poisoned").render())
                }
                ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_owned()),
                _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
