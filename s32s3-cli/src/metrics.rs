//! Prometheus metrics: served on `/metrics` by the daemon, written to a node-exporter textfile
//! (`--metrics-file`) or pushed to a Pushgateway (`--pushgateway`) after one-shot runs.
//!
//! [`Metrics`] holds what the runs of this process reported and what the backup location holds. It is a
//! `prometheus_client` [`Collector`]: every encoding reads it afresh, so a value nobody knows yet (no run
//! finished, the location not read) is left out rather than shown as 0, and the newest snapshot's age is
//! computed at the moment of the scrape. All three outputs are the Prometheus text format 0.0.4, which the
//! scraper, node-exporter's textfile collector and the Pushgateway all read.
//!
//! Counts, sizes, times and the names of the source buckets (the `bucket` label of the per-bucket metrics):
//! never object keys, endpoints, access keys or secrets.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use s32s3_core::{BackupSummary, SnapshotInfo, SnapshotStatus, StorageStats, VerifySummary};
use time::OffsetDateTime;

/// `Content-Type` of what [`Metrics::render`] and [`encode`] return.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// How a backup run ended: the `status` label of `s32s3_runs_total` and `s32s3_last_run_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum RunStatus {
    Complete,
    Partial,
    Failed,
}

impl RunStatus {
    const ALL: [Self; 3] = [Self::Complete, Self::Partial, Self::Failed];

    fn label(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Partial => "partial",
            Self::Failed => "failed",
        }
    }
}

/// How a verification ended: the `status` label of `s32s3_verify_runs_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum VerifyStatus {
    /// Every object checked out.
    Clean,
    /// Objects are damaged or missing: the backup cannot restore them.
    Damaged,
    /// The verification could not run, or could not read every object (unreadable after the retries).
    Failed,
}

impl VerifyStatus {
    fn label(self) -> &'static str {
        match self {
            Self::Clean => "clean",
            Self::Damaged => "damaged",
            Self::Failed => "failed",
        }
    }
}

/// What the last verification that checked a snapshot found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyCounts {
    /// Objects found as backed up.
    pub ok: u64,
    /// Objects (and MinIO exports) stored but wrong: size, authentication or SHA-256.
    pub damaged: u64,
    /// Objects (and MinIO exports) whose stored version is gone.
    pub missing: u64,
    /// Objects that could not be read even after the retries: neither ok nor damaged.
    pub unreadable: u64,
}

impl VerifyCounts {
    /// Sorts a verification's findings. The core reports a missing version as a bad object whose reason
    /// ends "is missing" (and a missing MinIO export as a bad entry without a bucket): that is the only
    /// place the difference is told.
    pub fn of(summary: &VerifySummary) -> Self {
        let missing =
            summary.bad.iter().filter(|f| f.bucket.is_empty() || f.error.ends_with(" is missing")).count()
                as u64;
        let bad = summary.bad.len() as u64;
        let unreadable = summary.unreadable.len() as u64;
        Self {
            ok: summary.checked.objects.saturating_sub(bad + unreadable),
            damaged: bad - missing,
            missing,
            unreadable,
        }
    }

    /// How the verification counts in `s32s3_verify_runs_total`.
    pub fn status(&self) -> VerifyStatus {
        if self.damaged + self.missing > 0 {
            VerifyStatus::Damaged
        } else if self.unreadable > 0 {
            VerifyStatus::Failed
        } else {
            VerifyStatus::Clean
        }
    }
}

/// One source bucket in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketTotals {
    /// The source bucket's name.
    pub name: String,
    /// Objects.
    pub objects: u64,
    /// Plaintext bytes.
    pub bytes: u64,
}

/// The newest snapshot in the backup location (complete or partial; checkpoints are not snapshots).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewestSnapshot {
    /// When it finished.
    pub finished: OffsetDateTime,
    /// Its buckets, from its manifest's header.
    pub buckets: Vec<BucketTotals>,
}

impl NewestSnapshot {
    /// The newest snapshot whose header could be read, from a listing ([`s32s3_core::describe`], oldest
    /// first).
    pub fn of(list: &[SnapshotInfo]) -> Option<Self> {
        list.iter().rev().filter(|info| !info.snapshot.checkpoint).find_map(|info| {
            let header = info.header.as_ref().ok()?;
            Some(Self {
                finished: info.snapshot.finished,
                buckets: header
                    .buckets
                    .iter()
                    .map(|b| BucketTotals { name: b.name.clone(), objects: b.objects, bytes: b.bytes })
                    .collect(),
            })
        })
    }
}

/// What the metrics report.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    last_success: Option<f64>,
    last_run_duration: Option<f64>,
    last_run_status: Option<RunStatus>,
    last_run_objects: BTreeMap<&'static str, u64>,
    /// `source_versions`: the last run's version history, by kind (empty when it had none).
    last_run_history: BTreeMap<&'static str, u64>,
    last_run_bytes: BTreeMap<&'static str, u64>,
    runs: BTreeMap<RunStatus, u64>,
    errors: u64,
    running: bool,
    storage: Option<StorageStats>,
    newest: Option<NewestSnapshot>,
    /// Show `s32s3_newest_snapshot_age_seconds`: only where each scrape encodes afresh (the daemon); a
    /// textfile or a push would freeze the age at the moment it was written.
    live: bool,
    last_verify: Option<(f64, VerifyCounts)>,
    verify_runs: BTreeMap<VerifyStatus, u64>,
}

impl Metrics {
    /// The metrics of a process that serves them (the daemon): as [`Metrics::default`], plus the newest
    /// snapshot's age, computed at each scrape.
    pub fn live() -> Self {
        Self { live: true, ..Self::default() }
    }

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
            ("retagged", c.retagged.objects, c.retagged.bytes),
            ("deleted", c.deleted.objects, c.deleted.bytes),
            ("failed", summary.failed.len() as u64, failed_bytes),
        ] {
            self.last_run_objects.insert(outcome, objects);
            self.last_run_bytes.insert(outcome, bytes);
        }
        self.last_run_history.clear();
        if let Some(h) = &summary.history {
            self.last_run_history.extend([
                ("versions", h.versions),
                ("delete_markers", h.delete_markers),
                ("copied_from_source", h.versions_copied),
                ("copied_in_place", h.versions_copied_in_place),
                ("bytes_copied", h.bytes_copied),
                ("dropped", h.dropped),
            ]);
        }
        if summary.history_copies_deleted > 0 {
            self.last_run_history.insert("copies_deleted", summary.history_copies_deleted);
        }
        self.last_run_duration = Some(summary.duration.as_secs_f64());
        let status =
            if summary.status == SnapshotStatus::Complete { RunStatus::Complete } else { RunStatus::Partial };
        self.last_run_status = Some(status);
        *self.runs.entry(status).or_default() += 1;
        if status == RunStatus::Complete {
            self.last_success = Some(unix(OffsetDateTime::now_utc()));
        } else {
            self.errors += summary.failed.len() as u64;
        }
    }

    /// A run failed as a whole.
    pub fn failed(&mut self, duration: f64) {
        self.running = false;
        self.last_run_duration = Some(duration);
        self.last_run_status = Some(RunStatus::Failed);
        *self.runs.entry(RunStatus::Failed).or_default() += 1;
        self.errors += 1;
    }

    /// The backup location's size and snapshot count.
    ///
    /// The newest complete snapshot also stands for the last success when this process has not seen a
    /// newer one, so a restarted daemon does not report "never" and trip an alert.
    pub fn storage(&mut self, stats: StorageStats) {
        if let Some(finished) = stats.last_complete {
            let finished = unix(finished);
            if self.last_success.is_none_or(|seen| seen < finished) {
                self.last_success = Some(finished);
            }
        }
        self.storage = Some(stats);
    }

    /// The newest snapshot in the backup location (`None`: there is none), replacing what was known: a
    /// bucket gone from it leaves the per-bucket metrics.
    pub fn newest_snapshot(&mut self, newest: Option<NewestSnapshot>) {
        self.newest = newest;
    }

    /// A verification finished with these findings.
    pub fn verified(&mut self, counts: VerifyCounts) {
        *self.verify_runs.entry(counts.status()).or_default() += 1;
        self.last_verify = Some((unix(OffsetDateTime::now_utc()), counts));
    }

    /// A verification failed as a whole: the last findings stay those of the last one that checked.
    pub fn verify_failed(&mut self) {
        *self.verify_runs.entry(VerifyStatus::Failed).or_default() += 1;
    }

    /// The Prometheus text exposition format (0.0.4), as of now.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        encode(&registry)
    }

    /// Writes the metrics for node-exporter's textfile collector, atomically (temp file + rename).
    pub fn write_textfile(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("prom.tmp");
        std::fs::write(&tmp, self.render()).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }

    /// Pushes the metrics to a Prometheus Pushgateway under `job="s32s3"` (and `shard="I"` for shard I of a
    /// sharded run).
    pub async fn push(&self, gateway: &str, shard: Option<u32>) -> Result<()> {
        // The shards of one run push to a group each (`shard="I"`), or each push would replace the others'.
        let group = shard.map_or_else(String::new, |i| format!("/shard/{i}"));
        let url = format!("{}/metrics/job/s32s3{group}", gateway.trim_end_matches('/'));
        let response = reqwest::Client::new()
            .put(&url)
            .header("content-type", CONTENT_TYPE)
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

    /// Every metric, as of `now`.
    fn encode_at(&self, e: &mut DescriptorEncoder, now: OffsetDateTime) -> fmt::Result {
        self.encode_runs(e)?;
        self.encode_location(e, now)?;
        self.encode_verifications(e)
    }

    /// The backup runs of this process.
    fn encode_runs(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            e,
            "s32s3_last_success_timestamp_seconds",
            "When the last complete backup finished (Unix time; 0 before the first).",
            self.last_success.unwrap_or(0.0),
        )?;
        if let Some(duration) = self.last_run_duration {
            gauge(e, "s32s3_last_run_duration_seconds", "Wall time of the last run.", duration)?;
        }
        if let Some(last) = self.last_run_status {
            let one_hot = RunStatus::ALL.map(|s| (s.label(), u64::from(s == last)));
            gauges(
                e,
                "s32s3_last_run_status",
                "How the last run ended: 1 for its status, 0 for the others.",
                "status",
                one_hot,
            )?;
        }
        gauges(
            e,
            "s32s3_last_run_objects",
            "Objects of the last run, by outcome.",
            "outcome",
            self.last_run_objects.iter().map(|(k, v)| (*k, *v)),
        )?;
        gauges(
            e,
            "s32s3_last_run_bytes",
            "Plaintext bytes of the last run, by outcome.",
            "outcome",
            self.last_run_bytes.iter().map(|(k, v)| (*k, *v)),
        )?;
        if !self.last_run_history.is_empty() {
            gauges(
                e,
                "s32s3_last_run_history",
                "The source's version history in the last run (source_versions): versions and delete markers \
                 recorded, versions stored (copied_from_source, copied_in_place, bytes_copied), records dropped \
                 past the window, stored copies deleted after it was turned off.",
                "kind",
                self.last_run_history.iter().map(|(k, v)| (*k, *v)),
            )?;
        }
        counters(
            e,
            "s32s3_runs",
            "Runs since the process started, by status.",
            "status",
            self.runs.iter().map(|(k, v)| (k.label(), *v)),
        )?;
        counter(e, "s32s3_errors", "Failed runs and failed objects.", self.errors)?;
        gauge(e, "s32s3_running", "1 while a backup runs.", u64::from(self.running))
    }

    /// What the backup location holds, as last read.
    fn encode_location(&self, e: &mut DescriptorEncoder, now: OffsetDateTime) -> fmt::Result {
        if let Some(s) = &self.storage {
            gauge(e, "s32s3_snapshots", "Snapshots in the backup location.", s.snapshots)?;
            gauge(
                e,
                "s32s3_backup_bucket_bytes",
                "Bytes stored in the backup location, all versions.",
                s.bytes,
            )?;
        }
        if let Some(newest) = &self.newest {
            let buckets = &newest.buckets;
            gauges(
                e,
                "s32s3_snapshot_objects",
                "Objects of each source bucket in the newest snapshot.",
                "bucket",
                buckets.iter().map(|b| (b.name.as_str(), b.objects)),
            )?;
            gauges(
                e,
                "s32s3_snapshot_bytes",
                "Plaintext bytes of each source bucket in the newest snapshot.",
                "bucket",
                buckets.iter().map(|b| (b.name.as_str(), b.bytes)),
            )?;
            if self.live {
                gauge(
                    e,
                    "s32s3_newest_snapshot_age_seconds",
                    "Seconds since the newest snapshot (complete or partial) finished.",
                    (now - newest.finished).as_seconds_f64().max(0.0),
                )?;
            }
        }
        Ok(())
    }

    /// The verifications of this process.
    fn encode_verifications(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        if let Some((at, counts)) = &self.last_verify {
            gauge(
                e,
                "s32s3_last_verify_timestamp_seconds",
                "When the last verify finished (Unix time).",
                *at,
            )?;
            gauges(
                e,
                "s32s3_last_verify_objects",
                "Objects of the last verify, by result (unreadable ones are in none).",
                "result",
                [("ok", counts.ok), ("damaged", counts.damaged), ("missing", counts.missing)],
            )?;
            gauge(
                e,
                "s32s3_last_verify_damaged_objects",
                "Objects the last verify found damaged or missing.",
                counts.damaged + counts.missing,
            )?;
        }
        counters(
            e,
            "s32s3_verify_runs",
            "Verifications since the process started, by status.",
            "status",
            self.verify_runs.iter().map(|(k, v)| (k.label(), *v)),
        )
    }
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.encode_at(&mut encoder, OffsetDateTime::now_utc())
    }
}

/// The metrics a daemon updates and its HTTP server reads.
#[derive(Clone, Debug, Default)]
pub struct Shared(Arc<Mutex<Metrics>>);

impl Shared {
    /// Shares `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self(Arc::new(Mutex::new(metrics)))
    }

    /// Changes the metrics (a scrape sees all of one change or none of it).
    pub fn update<R>(&self, change: impl FnOnce(&mut Metrics) -> R) -> R {
        change(&mut self.0.lock().expect("not poisoned"))
    }
}

impl Collector for Shared {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        self.0.lock().expect("not poisoned").encode(encoder)
    }
}

/// `registry` in the Prometheus text format (0.0.4).
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)
        .expect("writing to a String cannot fail");
    text
}

/// A gauge without labels.
fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue + fmt::Debug,
) -> fmt::Result {
    ConstGauge::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A gauge with one label, a sample per value of it; nothing at all without samples.
fn gauges<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    samples: impl IntoIterator<Item = (&'a str, u64)>,
) -> fmt::Result {
    labelled(e, (name, help, MetricType::Gauge), label, samples, ConstGauge::new)
}

/// A counter without labels, `name` without the `_total` the encoder appends.
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    ConstCounter::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// A counter with one label (see [`gauges`] and [`counter`]).
fn counters<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    samples: impl IntoIterator<Item = (&'a str, u64)>,
) -> fmt::Result {
    labelled(e, (name, help, MetricType::Counter), label, samples, ConstCounter::new)
}

/// A family of `(name, help, kind)` with one label, each sample made into a metric by `metric`; nothing at
/// all without samples.
fn labelled<'a, M: prometheus_client::encoding::EncodeMetric>(
    e: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    label: &'static str,
    samples: impl IntoIterator<Item = (&'a str, u64)>,
    metric: impl Fn(u64) -> M,
) -> fmt::Result {
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut family = e.encode_descriptor(name, help, None, kind)?;
    for (value, sample) in samples {
        metric(sample).encode(family.encode_family(&[(label, value)])?)?;
    }
    Ok(())
}

/// Unix time in seconds.
fn unix(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // the values compared are small integers and halves: exact in binary
mod tests {
    use super::*;

    /// The samples of a rendering, by `name{labels}` as written, each value parsed; panics on a line that
    /// is neither a comment nor `name[{labels}] value`.
    fn samples(text: &str) -> BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
                (series.to_owned(), value.parse().unwrap_or_else(|_| panic!("{line:?}")))
            })
            .collect()
    }

    #[test]
    fn renders_prometheus_text() {
        let mut m = Metrics::default();
        m.failed(1.5);
        m.storage(StorageStats { snapshots: 3, versions: 10, bytes: 1234, last_complete: None });
        let text = m.render();
        assert!(
            text.starts_with(
                "# HELP s32s3_last_success_timestamp_seconds When the last complete backup finished (Unix \
                 time; 0 before the first).\n# TYPE s32s3_last_success_timestamp_seconds gauge\n"
            ),
            "{text}"
        );
        // Counters keep the names they always had: `_total` once, on the samples and on HELP and TYPE.
        assert!(
            text.contains("# TYPE s32s3_runs_total counter\ns32s3_runs_total{status=\"failed\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE s32s3_errors_total counter\ns32s3_errors_total 1\n"), "{text}");
        assert!(!text.contains("_total_total") && !text.contains("# EOF"), "{text}");
        let s = samples(&text);
        assert_eq!(s["s32s3_last_success_timestamp_seconds"], 0.0);
        assert_eq!(s["s32s3_last_run_duration_seconds"], 1.5);
        assert_eq!(s["s32s3_snapshots"], 3.0);
        assert_eq!(s["s32s3_backup_bucket_bytes"], 1234.0);
        assert_eq!(s["s32s3_running"], 0.0);
        // The last run's status, one-hot.
        assert_eq!(s["s32s3_last_run_status{status=\"failed\"}"], 1.0);
        assert_eq!(s["s32s3_last_run_status{status=\"complete\"}"], 0.0);
        assert_eq!(s["s32s3_last_run_status{status=\"partial\"}"], 0.0);
        // Nothing is known of snapshots or verifications: their metrics are absent, not 0.
        for absent in ["s32s3_snapshot_", "s32s3_newest_snapshot", "verify"] {
            assert!(!text.contains(absent), "{absent}: {text}");
        }
    }

    #[test]
    fn before_any_run_only_what_is_known() {
        let s = samples(&Metrics::default().render());
        let names: Vec<&str> = s.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["s32s3_errors_total", "s32s3_last_success_timestamp_seconds", "s32s3_running"],
            "{s:?}"
        );
    }

    #[test]
    fn last_success_falls_back_to_the_newest_complete_snapshot() {
        let mut m = Metrics::default();
        let stats = |at| StorageStats {
            snapshots: 1,
            last_complete: Some(OffsetDateTime::from_unix_timestamp(at).unwrap()),
            ..Default::default()
        };
        m.storage(stats(1_700_000_000));
        assert_eq!(samples(&m.render())["s32s3_last_success_timestamp_seconds"], 1_700_000_000.0);
        // A success seen by this process that is newer than the listing wins.
        m.last_success = Some(1_800_000_000.5);
        m.storage(stats(1_700_000_000));
        assert_eq!(samples(&m.render())["s32s3_last_success_timestamp_seconds"], 1_800_000_000.5);
    }

    #[test]
    fn newest_snapshot_per_bucket_and_its_age_at_scrape_time() {
        let finished = OffsetDateTime::now_utc() - time::Duration::seconds(100);
        let newest = NewestSnapshot {
            finished,
            buckets: vec![
                BucketTotals { name: "photos".into(), objects: 20, bytes: 20_000 },
                BucketTotals { name: "logs.2026".into(), objects: 3, bytes: 7 },
            ],
        };
        let mut m = Metrics::default();
        m.newest_snapshot(Some(newest.clone()));
        let s = samples(&m.render());
        assert_eq!(s["s32s3_snapshot_objects{bucket=\"photos\"}"], 20.0);
        assert_eq!(s["s32s3_snapshot_bytes{bucket=\"photos\"}"], 20_000.0);
        assert_eq!(s["s32s3_snapshot_objects{bucket=\"logs.2026\"}"], 3.0);
        assert_eq!(s["s32s3_snapshot_bytes{bucket=\"logs.2026\"}"], 7.0);
        // A textfile or a push would freeze the age: only a served registry shows it.
        assert!(!s.contains_key("s32s3_newest_snapshot_age_seconds"), "{s:?}");
        let mut live = Metrics::live();
        live.newest_snapshot(Some(newest));
        let age = samples(&live.render())["s32s3_newest_snapshot_age_seconds"];
        assert!((100.0..160.0).contains(&age), "{age}");
        // A newer listing replaces the buckets: one gone from the newest snapshot leaves the metrics.
        live.newest_snapshot(Some(NewestSnapshot {
            finished,
            buckets: vec![BucketTotals { name: "photos".into(), objects: 21, bytes: 21_000 }],
        }));
        let text = live.render();
        assert!(!text.contains("logs.2026"), "{text}");
        live.newest_snapshot(None);
        assert!(!live.render().contains("snapshot"));
    }

    #[test]
    fn verifications() {
        let mut m = Metrics::default();
        m.verify_failed();
        let text = m.render();
        assert_eq!(samples(&text)["s32s3_verify_runs_total{status=\"failed\"}"], 1.0);
        assert!(!text.contains("s32s3_last_verify"), "no verification has checked anything yet: {text}");

        let clean = VerifyCounts { ok: 8, damaged: 0, missing: 0, unreadable: 0 };
        assert_eq!(clean.status(), VerifyStatus::Clean);
        m.verified(clean);
        let s = samples(&m.render());
        assert_eq!(s["s32s3_last_verify_objects{result=\"ok\"}"], 8.0);
        assert_eq!(s["s32s3_last_verify_objects{result=\"damaged\"}"], 0.0);
        assert_eq!(s["s32s3_last_verify_objects{result=\"missing\"}"], 0.0);
        assert_eq!(s["s32s3_last_verify_damaged_objects"], 0.0);
        assert_eq!(s["s32s3_verify_runs_total{status=\"clean\"}"], 1.0);
        let at = s["s32s3_last_verify_timestamp_seconds"];
        assert!((unix(OffsetDateTime::now_utc()) - at).abs() < 60.0, "{at}");

        let damaged = VerifyCounts { ok: 5, damaged: 2, missing: 1, unreadable: 0 };
        assert_eq!(damaged.status(), VerifyStatus::Damaged);
        m.verified(damaged);
        let s = samples(&m.render());
        assert_eq!(s["s32s3_last_verify_damaged_objects"], 3.0);
        assert_eq!(s["s32s3_last_verify_objects{result=\"missing\"}"], 1.0);
        assert_eq!(s["s32s3_verify_runs_total{status=\"damaged\"}"], 1.0);
        assert_eq!(s["s32s3_verify_runs_total{status=\"clean\"}"], 1.0);
        // A verification that could not read everything found no damage, nor can it vouch for all.
        let unreadable = VerifyCounts { ok: 7, damaged: 0, missing: 0, unreadable: 1 };
        assert_eq!(unreadable.status(), VerifyStatus::Failed);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut m = Metrics::default();
        m.newest_snapshot(Some(NewestSnapshot {
            finished: OffsetDateTime::now_utc(),
            buckets: vec![BucketTotals { name: "a\"b\\c\nd".into(), objects: 1, bytes: 1 }],
        }));
        let text = m.render();
        assert!(text.contains("s32s3_snapshot_objects{bucket=\"a\\\"b\\\\c\\nd\"} 1\n"), "{text}");
    }
}
