//! What the user sees: logs (text or JSON lines on stderr), a progress bar when stderr is a terminal, and
//! the final summary on stdout.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use s32s3_core::{Event, Outcome, Progress};

use crate::config::OutputSettings;

/// Sets up `tracing` for the process: to stderr, text or JSON, at `settings.level` (our crates only; the
/// AWS SDK's own logs stay quiet unless `RUST_LOG` asks for them).
pub fn init_logging(settings: &OutputSettings) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| {
        format!("warn,s32s3={level},s32s3_core={level},s32s3_cli={level}", level = settings.level)
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false);
    if settings.json {
        let _ = builder.json().flatten_event(true).try_init();
    } else {
        let _ = builder.with_ansi(std::io::stderr().is_terminal()).try_init();
    }
}

/// Renders engine events: a progress bar on a terminal, log lines otherwise.
pub struct CliProgress {
    bar: Option<ProgressBar>,
    objects: AtomicU64,
}

impl CliProgress {
    /// A progress bar if stderr is a terminal and logs are text; plain logs otherwise.
    pub fn new(settings: &OutputSettings) -> Self {
        let bar = (std::io::stderr().is_terminal() && !settings.json).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self { bar, objects: AtomicU64::new(0) }
    }

    /// Removes the bar (before the summary is printed).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn log(&self, f: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }
}

impl Progress for CliProgress {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::Phase(phase) => {
                if let Some(bar) = &self.bar {
                    bar.set_message(phase.to_string());
                }
                self.log(|| tracing::info!("{phase}"));
            }
            Event::BucketPlanned { bucket, counts } => {
                if let Some(bar) = &self.bar {
                    bar.inc_length(counts.new.bytes + counts.changed.bytes);
                }
                self.log(|| {
                    tracing::info!(
                        bucket,
                        new = counts.new.objects,
                        changed = counts.changed.objects,
                        unchanged = counts.unchanged.objects,
                        deleted = counts.deleted.objects,
                        "bucket {bucket}: {} new, {} changed, {} unchanged, {} deleted",
                        counts.new.objects,
                        counts.changed.objects,
                        counts.unchanged.objects,
                        counts.deleted.objects
                    );
                });
            }
            Event::Bytes(n) => {
                if let Some(bar) = &self.bar {
                    bar.inc(*n);
                }
            }
            Event::Object { bucket, key, outcome, size } => {
                let done = self.objects.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(bar) = &self.bar
                    && done.is_multiple_of(64)
                {
                    bar.set_message(format!("{done} objects"));
                }
                if *outcome != Outcome::Unchanged {
                    tracing::debug!(bucket, key, size, outcome = ?outcome, "s3://{bucket}/{key}: {outcome:?}");
                }
            }
            Event::Failed { bucket, key, error } => {
                self.log(|| {
                    if key.is_empty() {
                        tracing::error!(bucket, "bucket {bucket}: {error}");
                    } else {
                        tracing::error!(bucket, key, "s3://{bucket}/{key}: {error}");
                    }
                });
            }
            Event::Warning(message) => self.log(|| tracing::warn!("{message}")),
            Event::Checkpoint { objects } => {
                self.log(|| tracing::info!(objects, "checkpoint: {objects} objects recorded"));
            }
            _ => {}
        }
    }
}

/// `1.5 MiB`-style sizes for summaries.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}
