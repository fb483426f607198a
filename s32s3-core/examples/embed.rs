//! Embedding s32s3 in a service: a backup with the service's own progress sink and cancellation (Ctrl-C
//! stops it cleanly, with a partial snapshot), then the location's snapshots listed.
//!
//! ```text
//! cargo run -p s32s3-core --example embed
//!     against a local SeaweedFS started by the test kit, with a few objects put in it first
//! cargo run -p s32s3-core --example embed -- SOURCE_URL DEST_URL BACKUP_BUCKET
//!     against your stores; keys from S32S3_EXAMPLE_ACCESS_KEY / S32S3_EXAMPLE_SECRET_KEY (both sides),
//!     the crypt password from S32S3_EXAMPLE_PASSWORD
//! ```
//!
//! The library itself reads no environment and prints nothing: both are the service's business, as here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use s32s3_core::{
    Backup, CancellationToken, Event, NoProgress, Outcome, Progress, RunConfig, S3Endpoint, Secret,
};

/// The service's progress sink: counters a metrics endpoint could export, and phases and problems logged.
#[derive(Default)]
struct ServiceProgress {
    objects: AtomicU64,
    unchanged: AtomicU64,
    bytes: AtomicU64,
    failed: AtomicU64,
}

impl Progress for ServiceProgress {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::Phase(phase) => eprintln!("[backup] {phase}"),
            Event::Bytes(n) => {
                self.bytes.fetch_add(*n, Ordering::Relaxed);
            }
            Event::Object { outcome: Outcome::Unchanged, .. } => {
                self.unchanged.fetch_add(1, Ordering::Relaxed);
            }
            Event::Object { .. } => {
                self.objects.fetch_add(1, Ordering::Relaxed);
            }
            Event::Failed { bucket, key, error } => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("[backup] failed: s3://{bucket}/{key}: {error}");
            }
            Event::Warning(warning) => eprintln!("[backup] warning: {warning}"),
            _ => {}
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match args.as_slice() {
        [] => local_demo().await?,
        [source, destination, bucket] => {
            let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
            let endpoint = |url: &str| -> Result<S3Endpoint, String> {
                let key = var("S32S3_EXAMPLE_ACCESS_KEY")?;
                Ok(S3Endpoint::new(url, key, Secret::new(var("S32S3_EXAMPLE_SECRET_KEY")?)))
            };
            let password = Secret::new(var("S32S3_EXAMPLE_PASSWORD")?);
            RunConfig::new(endpoint(source)?, endpoint(destination)?, password)
                .with_location(bucket.clone(), "")
        }
        _ => return Err("usage: embed [SOURCE_URL DEST_URL BACKUP_BUCKET]".into()),
    };
    config.validate()?;

    // The service decides when to stop: here on Ctrl-C. The run then stops before its next write, writes
    // a partial snapshot of what it did and releases the lease.
    let cancel = CancellationToken::new();
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        }
    });

    let progress = Arc::new(ServiceProgress::default());
    let summary = Backup::new(config.clone()).run(progress.clone(), cancel).await?;
    println!(
        "snapshot {} ({}): {} objects copied, {} unchanged, {} bytes, {} failed, in {:.1?}",
        summary.snapshot_id,
        summary.status,
        progress.objects.load(Ordering::Relaxed),
        progress.unchanged.load(Ordering::Relaxed),
        progress.bytes.load(Ordering::Relaxed),
        progress.failed.load(Ordering::Relaxed),
        summary.duration
    );
    // Summaries serialize: what a service reports or stores about its runs.
    println!("{}", serde_json::to_string(&summary.counts)?);

    for info in s32s3_core::describe(&config, Arc::new(NoProgress)).await? {
        let status =
            info.header.as_ref().map_or_else(|e| format!("unreadable: {e}"), |h| h.status.to_string());
        let window = info.window.map_or_else(|| "-".to_owned(), |w| format!("{w:?}"));
        println!(
            "{}  {}  {status}  restorable: {window}",
            info.snapshot.id,
            s32s3_core::format_rfc3339(info.snapshot.finished)
        );
    }
    Ok(())
}

/// Starts a local SeaweedFS (the workspace's test kit), puts a few objects in a bucket, and returns a
/// configuration that backs that bucket's store up into another bucket of the same store.
async fn local_demo() -> Result<RunConfig, Box<dyn std::error::Error>> {
    let server = s32s3_core::testkit::seaweedfs();
    let s3 = server.client();
    let bucket = server.unique_bucket("embed-data");
    s3.create_bucket().bucket(&bucket).send().await?;
    for (key, body) in [("a.txt", "alpha"), ("dir/b.txt", "beta"), ("dir/c.bin", "gamma")] {
        s3.put_object().bucket(&bucket).key(key).body(body.as_bytes().to_vec().into()).send().await?;
    }
    let config = RunConfig::new(server.endpoint(), server.endpoint(), Secret::new("example password"))
        .with_location(server.unique_bucket("embed-backups"), "");
    Ok(config)
}
