//! Prometheus metrics: served on `/metrics` by the daemon, written to a node-exporter textfile
//! (`--metrics-file`) or pushed to a Pushgateway (`--pushgateway`) after one-shot runs.
//!
//! Only counts, sizes and times: no bucket names, keys or secrets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use s32s3_core::BackupSummary;
use s32s3_core::SnapshotStatus;

/// What the metrics report.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    last_success: Option<f64>,
    last_run_duration: Option<f64>,
    last_run_objects: BTreeMap<&'static str, u64>,
    last_run_bytes: BTreeMap<&'static str, u64>,
    runs: BTreeMap<&'static str, u64>,
    errors: u64,
    running: bool,
    storage: Option<s32s3_core::StorageStats>,
}

impl Metrics {
    /// A run started.
    pub fn started(&mut self) {
        self.running = true;
    }

    /// A run finished with this summary.
    pub fn finished(&mut self, summary: &BackupSummary) {
        self.running = false;
        let c = &summary.counts;
        let failed_bytes = 0;
        for (outcome, objects, bytes) in [
            ("new", c.new.objects, c.new.bytes),
            ("changed", c.changed.objects, c.changed.bytes),
            ("unchanged", c.unchanged.objects, c.unchanged.bytes),
            ("deleted", c.deleted.objects, c.deleted.bytes),
            ("failed", summary.failed.len() as u64, failed_bytes),
        ] {
            self.last_run_objects.insert(outcome, objects);
            self.last_run_bytes.insert(outcome, bytes);
        }
        self.last_run_duration = Some(summary.duration.as_secs_f64());
        let status = match summary.status {
            SnapshotStatus::Complete => "complete",
            _ => "partial",
        };
        *self.runs.entry(status).or_default() += 1;
        if summary.status == SnapshotStatus::Complete {
            self.last_success = Some(unix_now());
        } else {
            self.errors += summary.failed.len() as u64;
        }
    }

    /// A run failed as a whole.
    pub fn failed(&mut self, duration: f64) {
        self.running = false;
        self.last_run_duration = Some(duration);
        *self.runs.entry("failed").or_default() += 1;
        self.errors += 1;
    }

    /// The backup location's size and snapshot count.
    ///
    /// The newest complete snapshot also stands for the last success when this process has not seen a
    /// newer one, so a restarted daemon does not report "never" and trip an alert.
    pub fn storage(&mut self, stats: s32s3_core::StorageStats) {
        if let Some(finished) = stats.last_complete {
            let finished = finished.unix_timestamp_nanos() as f64 / 1e9;
            if self.last_success.is_none_or(|seen| seen < finished) {
                self.last_success = Some(finished);
            }
        }
        self.storage = Some(stats);
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        gauge(
            "s32s3_last_success_timestamp_seconds",
            "When the last complete backup finished (Unix time; 0 before the first).",
            "gauge",
            &[(String::new(), self.last_success.unwrap_or(0.0))],
        );
        if let Some(d) = self.last_run_duration {
            gauge(
                "s32s3_last_run_duration_seconds",
                "Wall time of the last run.",
                "gauge",
                &[(String::new(), d)],
            );
        }
        let by_outcome = |map: &BTreeMap<&'static str, u64>| -> Vec<(String, f64)> {
            map.iter().map(|(k, v)| (format!("{{outcome=\"{k}\"}}"), *v as f64)).collect()
        };
        gauge(
            "s32s3_last_run_objects",
            "Objects of the last run, by outcome.",
            "gauge",
            &by_outcome(&self.last_run_objects),
        );
        gauge(
            "s32s3_last_run_bytes",
            "Plaintext bytes of the last run, by outcome.",
            "gauge",
            &by_outcome(&self.last_run_bytes),
        );
        let runs: Vec<(String, f64)> =
            self.runs.iter().map(|(k, v)| (format!("{{status=\"{k}\"}}"), *v as f64)).collect();
        gauge("s32s3_runs_total", "Runs since the process started, by status.", "counter", &runs);
        gauge(
            "s32s3_errors_total",
            "Failed runs and failed objects.",
            "counter",
            &[(String::new(), self.errors as f64)],
        );
        gauge(
            "s32s3_running",
            "1 while a backup runs.",
            "gauge",
            &[(String::new(), f64::from(u8::from(self.running)))],
        );
        if let Some(s) = &self.storage {
            gauge(
                "s32s3_snapshots",
                "Snapshots in the backup location.",
                "gauge",
                &[(String::new(), s.snapshots as f64)],
            );
            gauge(
                "s32s3_backup_bucket_bytes",
                "Bytes stored in the backup location, all versions.",
                "gauge",
                &[(String::new(), s.bytes as f64)],
            );
        }
        out
    }

    /// Writes the metrics for node-exporter's textfile collector, atomically (temp file + rename).
    pub fn write_textfile(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("prom.tmp");
        std::fs::write(&tmp, self.render()).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }

    /// Pushes the metrics to a Prometheus Pushgateway under `job="s32s3"`.
    pub async fn push(&self, gateway: &str) -> Result<()> {
        let url = format!("{}/metrics/job/s32s3", gateway.trim_end_matches('/'));
        let response = reqwest::Client::new()
            .put(&url)
            .header("content-type", "text/plain; version=0.0.4")
            .body(self.render())
            .send()
            .await
            .with_context(|| format!("pushing metrics to {url}"))?;
        anyhow::ensure!(
            response.status().is_success(),
            "pushing metrics to {url}: HTTP {}",
            response.status()
        );
        Ok(())
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let mut m = Metrics::default();
        m.failed(1.5);
        m.storage(s32s3_core::StorageStats { snapshots: 3, versions: 10, bytes: 1234, last_complete: None });
        let text = m.render();
        assert!(
            text.contains(
                "# TYPE s32s3_last_success_timestamp_seconds gauge\ns32s3_last_success_timestamp_seconds 0\n"
            ),
            "{text}"
        );
        assert!(text.contains("s32s3_runs_total{status=\"failed\"} 1\n"), "{text}");
        assert!(text.contains("s32s3_errors_total 1\n"), "{text}");
        assert!(text.contains("s32s3_snapshots 3\n"), "{text}");
        assert!(text.contains("s32s3_backup_bucket_bytes 1234\n"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn last_success_falls_back_to_the_newest_complete_snapshot() {
        let mut m = Metrics::default();
        let stats = |at| s32s3_core::StorageStats {
            snapshots: 1,
            last_complete: Some(time::OffsetDateTime::from_unix_timestamp(at).unwrap()),
            ..Default::default()
        };
        m.storage(stats(1_700_000_000));
        assert!(m.render().contains("s32s3_last_success_timestamp_seconds 1700000000\n"));
        // A success seen by this process that is newer than the listing wins.
        m.last_success = Some(1_800_000_000.5);
        m.storage(stats(1_700_000_000));
        assert!(m.render().contains("s32s3_last_success_timestamp_seconds 1800000000.5\n"));
    }
}
