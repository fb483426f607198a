//! Days of backups in seconds, with an injected clock: every listed snapshot stays restorable whatever
//! happens between runs (issue 11, item 1). After every run the listed snapshots are audited against the
//! backup bucket's own version listing under a modelled lifecycle ([`testkit::audit`]): every version a
//! snapshot within its window names exists and does not expire before the window ends; the newest listed
//! snapshots are restored and compared.
//!
//! The source is SeaweedFS behind a fault proxy (to make runs fail or be partial on purpose); the backup
//! bucket is on moto, whose listings give last-modified times to the millisecond.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::primitives::ByteStream;
use s32s3_core::format::retention::Window;
use s32s3_core::format::snapshots::Selector;
use s32s3_core::progress::NoProgress;
use s32s3_core::restore::{BucketMapping, Restore};
use s32s3_core::testkit::audit::{Lifecycle, audit};
use s32s3_core::testkit::proxy::{Fault, FaultProxy, Match, Rule};
use s32s3_core::testkit::{self, TestServer};
use s32s3_core::{Backup, Clock, Error, Provider, RunConfig, S3Endpoint, Secret, TransferOptions};
use time::{Duration, OffsetDateTime};
use tokio_util::sync::CancellationToken;

/// One backup location and the runs made into it, each at its own day.
struct Location {
    source: &'static TestServer,
    proxy: FaultProxy,
    dest: S3Endpoint,
    bucket: String,
    backup_bucket: String,
    /// Each run's real interval and its clock offset, to map the server's times onto the run clock.
    runs: Arc<Mutex<Vec<(OffsetDateTime, OffsetDateTime, Duration)>>>,
    /// The expiration each run set, from when.
    lifecycle: Vec<(OffsetDateTime, u32)>,
    /// What the source held at each run, by run day.
    states: BTreeMap<i64, BTreeMap<String, Vec<u8>>>,
    /// Runs back up the source's version history too.
    source_versions: bool,
}

impl Location {
    async fn new(name: &str) -> Self {
        let source = testkit::seaweedfs();
        let bucket = source.unique_bucket(&format!("{name}-src"));
        source.client().create_bucket().bucket(&bucket).send().await.unwrap();
        let dest = testkit::moto();
        Self {
            source,
            proxy: FaultProxy::start(&source.endpoint()),
            dest: dest.endpoint(),
            bucket,
            backup_bucket: dest.unique_bucket(&format!("bk-{name}")),
            runs: Arc::default(),
            lifecycle: Vec::new(),
            states: BTreeMap::new(),
            source_versions: false,
        }
    }

    fn config(&self, day: i64, expiration_days: u32) -> RunConfig {
        // One transfer at a time: the copies happen in key order, so a failure planted on a key
        // stops or fails the run at a known point.
        let mut transfer = TransferOptions::default();
        (transfer.transfers, transfer.retries) = (1, 2);
        let mut config =
            RunConfig::new(self.proxy.endpoint(), self.dest.clone(), Secret::new("retention test"))
                .with_location(self.backup_bucket.clone(), "")
                .with_expiration_days(expiration_days)
                .with_transfer(transfer);
        config.source_provider = Provider::Other;
        config.password2 = Secret::new("salt");
        config.clock = Clock::offset(Duration::days(day));
        config.source_versions = self.source_versions;
        config
    }

    async fn put(&mut self, day: i64, key: &str, body: &str) {
        let body = format!("{body} (day {day})");
        self.source
            .client()
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body.clone().into_bytes()))
            .send()
            .await
            .unwrap();
        let last = self.states.values().next_back().cloned().unwrap_or_default();
        self.states.entry(day).or_insert(last).insert(key.to_owned(), body.into_bytes());
    }

    /// Runs a backup at `day` (the clock moved forward by that many days) with the proxy's `rules`.
    async fn backup(
        &mut self,
        day: i64,
        expiration_days: u32,
        rules: Vec<Rule>,
    ) -> Result<s32s3_core::BackupSummary, Error> {
        if let Some(state) = self.states.values().next_back().cloned() {
            self.states.entry(day).or_insert(state);
        }
        self.proxy.set_rules(rules);
        let offset = Duration::days(day);
        // Runs at least 2.5 s apart, so a version's last-modified (whole seconds on moto) maps to one run.
        let last_end = self.runs.lock().unwrap().last().map(|r| r.1);
        if let Some(gap) = last_end.map(|end| end + Duration::milliseconds(1500) - OffsetDateTime::now_utc())
            && gap.is_positive()
        {
            tokio::time::sleep(gap.unsigned_abs()).await;
        }
        let start = OffsetDateTime::now_utc();
        if self.lifecycle.last().is_none_or(|(_, days)| *days != expiration_days) {
            self.lifecycle.push((start + offset, expiration_days));
        }
        let backup = Backup::new(self.config(day, expiration_days)).with_buckets(vec![self.bucket.clone()]);
        let result = Box::pin(backup.run(Arc::new(NoProgress), CancellationToken::new())).await;
        self.proxy.set_rules(Vec::new());
        self.runs.lock().unwrap().push((
            start - Duration::seconds(1),
            OffsetDateTime::now_utc() + Duration::seconds(1),
            offset,
        ));
        result
    }

    /// The audit at `day`: the listed snapshots, and no problem.
    async fn audited(&self, day: i64, expiration_days: u32) -> Vec<testkit::audit::Audited> {
        let runs = Arc::clone(&self.runs);
        let to_clock = move |t: OffsetDateTime| {
            let runs = runs.lock().unwrap();
            let (_, _, offset) = runs
                .iter()
                .find(|(from, to, _)| (*from..=*to).contains(&t))
                .unwrap_or_else(|| panic!("a version written outside every run, at {t}"));
            t + *offset
        };
        let mut changes =
            vec![(OffsetDateTime::UNIX_EPOCH, self.lifecycle.first().map_or(expiration_days, |c| c.1))];
        changes.extend(self.lifecycle.iter().skip(1).copied());
        let now = OffsetDateTime::now_utc() + Duration::days(day);
        let (listed, problems) =
            audit(&self.config(day, expiration_days), &Lifecycle { changes }, now, &to_clock).await;
        assert!(problems.is_empty(), "day {day}: {problems:#?}");
        assert!(
            listed.iter().any(|s| s.window.restorable_at(now)),
            "day {day}: no listed snapshot is restorable: {listed:#?}"
        );
        listed
    }

    /// Restores snapshot `id` into a new bucket of the source and returns what it holds.
    async fn restore(
        &self,
        day: i64,
        selector: Selector,
    ) -> (s32s3_core::restore::RestoreSummary, BTreeMap<String, Vec<u8>>) {
        let target = self.source.unique_bucket("restored");
        let mut config = self.config(day, 7);
        config.source = self.source.endpoint();
        let summary = Restore::new(config)
            .with_selector(selector)
            .with_buckets(vec![BucketMapping { from: self.bucket.clone(), to: target.clone() }])
            .with_iam(false)
            .run(Arc::new(NoProgress), CancellationToken::new())
            .await
            .unwrap();
        assert!(summary.failed.is_empty(), "{:?}", summary.failed);
        (summary, contents(self.source, &target).await)
    }
}

async fn contents(server: &TestServer, bucket: &str) -> BTreeMap<String, Vec<u8>> {
    let s3 = server.client();
    let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let mut out = BTreeMap::new();
    for object in listed.contents() {
        let key = object.key().unwrap().to_owned();
        let body =
            s3.get_object().bucket(bucket).key(&key).send().await.unwrap().body.collect().await.unwrap();
        out.insert(key, body.to_vec());
    }
    out
}

/// A GET of `key` answered with an S3 error.
fn refuse(key: &str, status: u16, code: &'static str) -> Rule {
    Rule::new(Match::method("GET").with_path_contains(format!("/{key}")), Fault::Error { status, code })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Ten days of runs that fail after writing part of their work (the source's credentials stop working
/// in the middle): each leaves a partial snapshot of what it did, so a restorable snapshot is always
/// listed; the complete one of day 0 is pruned once its window (the first failed run + 7 days) has
/// passed, never before; no listed snapshot names a version that expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn days_of_failed_runs() {
    let mut loc = Location::new("failed").await;
    for key in ["a", "b", "c"] {
        loc.put(0, key, key).await;
    }
    let first = loc.backup(0, 7, Vec::new()).await.unwrap();
    assert_eq!(first.status.to_string(), "complete");
    for day in 1..=10 {
        loc.put(day, "a", "a changed").await;
        loc.put(day, "c", "c changed").await;
        // `a` is copied, then the read of `c` finds the keys revoked: the run stops.
        let err = loc.backup(day, 7, vec![refuse("c", 403, "InvalidAccessKeyId")]).await.unwrap_err();
        assert!(err.to_string().contains("bad credentials"), "day {day}: {err}");
        let listed = loc.audited(day, 7).await;
        let newest = listed.last().unwrap();
        assert_eq!(newest.status, "partial", "day {day}: {listed:#?}");
        let complete = listed.iter().find(|s| s.id == first.snapshot_id);
        // The first failed run replaced `a` a day (and a few seconds) after it: the window of day 0 ends
        // 8 days after it finished, so the run of day 8 (a few seconds later still) prunes it.
        assert_eq!(complete.is_some(), day < 8, "day {day}: {listed:#?}");
        if let Some(complete) = complete {
            let Window::Until(until) = complete.window else { panic!("{complete:?}") };
            let gap = until - complete.finished;
            assert!(gap > Duration::days(8) && gap < Duration::days(8) + Duration::minutes(5), "{gap}");
        }
    }
    // The newest partial snapshot: `a` of day 10 (copied before the run stopped), `c` as of day 0 (the
    // run stopped at it, so its previous backup was carried over).
    let (summary, restored) =
        loc.restore(10, Selector::At(OffsetDateTime::now_utc() + Duration::days(10))).await;
    assert!(summary.partial);
    assert_eq!(text(&restored["a"]), "a changed (day 10)");
    assert_eq!(text(&restored["b"]), "b (day 0)");
    assert_eq!(text(&restored["c"]), "c (day 0)");
    // No complete snapshot is left: the plain restore says which one to take instead.
    let target = loc.source.unique_bucket("restored");
    let mut config = loc.config(10, 7);
    config.source = loc.source.endpoint();
    let err = Restore::new(config)
        .with_buckets(vec![BucketMapping { from: loc.bucket.clone(), to: target }])
        .run(Arc::new(NoProgress), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no complete snapshot") && err.to_string().contains("--snapshot"),
        "{err}"
    );
}

/// Days of runs that fail before writing anything (the source cannot be listed) leave no run record:
/// the snapshot of day 0 stays restorable for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn days_of_runs_that_write_nothing() {
    let mut loc = Location::new("nothing").await;
    loc.put(0, "a", "a").await;
    let first = loc.backup(0, 7, Vec::new()).await.unwrap();
    let list = Rule::new(
        Match::method("GET").with_query_contains("list-type=2"),
        Fault::Error { status: 403, code: "InvalidAccessKeyId" },
    );
    for day in [1, 5, 10, 20, 30] {
        loc.put(day, "a", "a changed").await;
        let err = loc.backup(day, 7, vec![list.clone()]).await.unwrap_err();
        assert!(err.to_string().contains("bad credentials"), "{err}");
        let listed = loc.audited(day, 7).await;
        assert_eq!(listed.len(), 1, "no partial snapshot of nothing: {listed:#?}");
        assert_eq!(listed[0].id, first.snapshot_id);
        assert_eq!(listed[0].window, Window::Open { days: Some(7) }, "day {day}");
    }
    let (summary, restored) = loc.restore(30, Selector::Newest).await;
    assert_eq!(summary.snapshot_id.as_deref(), Some(first.snapshot_id.as_str()));
    assert_eq!(text(&restored["a"]), "a (day 0)");
}

/// Ten days of partial runs (one object the keys may not read): every failed object is carried at its
/// previous, still-current version; `restore` without `--at` refuses once no complete snapshot is in its
/// window and names the partial one to take; `--at` takes a partial one and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn days_of_partial_runs() {
    let mut loc = Location::new("partial").await;
    for key in ["a", "b", "c"] {
        loc.put(0, key, key).await;
    }
    let first = loc.backup(0, 7, Vec::new()).await.unwrap();
    for day in 1..=10 {
        loc.put(day, "a", "a changed").await;
        loc.put(day, "c", "c changed").await;
        let summary = loc.backup(day, 7, vec![refuse("c", 403, "AccessDenied")]).await.unwrap();
        assert_eq!(summary.status.to_string(), "partial");
        assert_eq!(summary.failed.len(), 1, "{:?}", summary.failed);
        assert!(summary.failed[0].error.contains("carried over"), "{:?}", summary.failed);
        let listed = loc.audited(day, 7).await;
        assert_eq!(listed.iter().any(|s| s.id == first.snapshot_id), day < 8, "day {day}: {listed:#?}");
        if day == 7 {
            // Still listed (only a run prunes), but two days later its window has passed: restore and
            // verify refuse it by id, in one line naming the newest snapshot still safe.
            let mut config = loc.config(9, 7);
            config.source = loc.source.endpoint();
            let id = Selector::Id(first.snapshot_id.clone());
            let refused = Restore::new(config.clone())
                .with_selector(id.clone())
                .with_buckets(vec![BucketMapping {
                    from: loc.bucket.clone(),
                    to: loc.source.unique_bucket("r"),
                }])
                .run(Arc::new(NoProgress), CancellationToken::new())
                .await
                .unwrap_err()
                .to_string();
            let newest = &listed.last().unwrap().id;
            assert!(refused.contains("past its restorable window"), "{refused}");
            assert!(refused.contains(&format!("the newest snapshot still safe is {newest}")), "{refused}");
            assert!(!refused.contains('\n'), "{refused}");
            let refused = s32s3_core::verify::Verify::new(config)
                .with_selector(id)
                .run(Arc::new(NoProgress), CancellationToken::new())
                .await
                .unwrap_err()
                .to_string();
            assert!(refused.contains("past its restorable window"), "{refused}");
        }
        if day == 5 {
            // Within its window the complete snapshot is still what a plain restore takes.
            let (summary, restored) = loc.restore(day, Selector::Newest).await;
            assert_eq!(summary.snapshot_id.as_deref(), Some(first.snapshot_id.as_str()));
            assert_eq!(text(&restored["c"]), "c (day 0)");
        }
    }
    let (summary, restored) =
        loc.restore(10, Selector::At(OffsetDateTime::now_utc() + Duration::days(10))).await;
    assert!(summary.partial, "{summary:?}");
    assert!(summary.notes.iter().any(|n| n.contains("is partial")), "{:?}", summary.notes);
    assert_eq!(text(&restored["a"]), "a changed (day 10)");
    assert_eq!(text(&restored["c"]), "c (day 0)", "carried at its previous version");
    let mut config = loc.config(10, 7);
    config.source = loc.source.endpoint();
    let err = Restore::new(config)
        .with_buckets(vec![BucketMapping { from: loc.bucket.clone(), to: loc.source.unique_bucket("r") }])
        .run(Arc::new(NoProgress), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the newest restorable one is"), "{err}");
}

/// Changing `expiration_days` between runs: shortened from 7 to 2, the run prunes what the new rule
/// would let expire before it applies the rule; lengthened to 30, no window that was promised shorter is
/// stretched. Every listed snapshot stays restorable throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_expiration_keeps_every_listed_snapshot_restorable() {
    let mut loc = Location::new("window").await;
    let mut ids = Vec::new();
    for day in 0..=5 {
        loc.put(day, "a", "a").await;
        ids.push(loc.backup(day, 7, Vec::new()).await.unwrap().snapshot_id);
        loc.audited(day, 7).await;
    }
    // Shortened: snapshot k is safe until the run of day k + 1 plus 2 days; at day 6 that has passed for
    // the snapshots of days 0 to 3, which go before the 2-day rule can expire anything of theirs.
    loc.put(6, "a", "a").await;
    let shortened = loc.backup(6, 2, Vec::new()).await.unwrap();
    assert_eq!(shortened.pruned.len(), 4, "{:?}", shortened.pruned);
    for id in &ids[..4] {
        assert!(shortened.pruned.iter().any(|k| k.contains(id.as_str())), "{id} {:?}", shortened.pruned);
    }
    let listed = loc.audited(6, 2).await;
    let before: BTreeMap<String, Window> = listed.iter().map(|s| (s.id.clone(), s.window)).collect();
    let rules = testkit::moto()
        .client()
        .get_bucket_lifecycle_configuration()
        .bucket(&loc.backup_bucket)
        .send()
        .await
        .unwrap();
    let days: Vec<i32> =
        rules.rules().iter().filter_map(|r| r.noncurrent_version_expiration()?.noncurrent_days()).collect();
    assert_eq!(days, [2]);

    // Lengthened: windows already promised stay as they were.
    loc.put(7, "a", "a").await;
    loc.backup(7, 30, Vec::new()).await.unwrap();
    let listed = loc.audited(7, 30).await;
    for snapshot in &listed {
        if let (Some(Window::Until(was)), Window::Until(now)) = (before.get(&snapshot.id), snapshot.window) {
            assert_eq!(*was, now, "{}", snapshot.id);
        }
    }
    for (id, day) in [(ids[5].as_str(), 7), (shortened.snapshot_id.as_str(), 7)] {
        let (summary, restored) = loc.restore(day, Selector::Id(id.to_owned())).await;
        assert_eq!(summary.snapshot_id.as_deref(), Some(id));
        assert!(restored["a"].starts_with(b"a (day"), "{restored:?}");
    }
}

/// `source_versions`: a version that left the source's history (deleted for good) is kept
/// `expiration_days` after the run that first found it gone, then dropped from the history and its stored
/// copy deleted. The snapshots that name it stay restorable for their whole windows: the dropping run
/// writes its run record first, so the copy, noncurrent from then on, outlives every window (audited).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_gone_from_the_source() {
    let mut loc = Location::new("history").await;
    loc.source_versions = true;
    let s3 = loc.source.client();
    s32s3_core::testkit::conformance::enable_versioning(loc.source, &loc.bucket).await;
    loc.put(0, "k", "k, first").await;
    loc.put(0, "k", "k, second").await;
    loc.put(0, "other", "other").await;
    let first = loc.backup(0, 7, Vec::new()).await.unwrap();
    let h = first.history.unwrap();
    assert_eq!((h.versions, h.versions_copied), (3, 1), "{h:?}");
    loc.audited(0, 7).await;

    // k's first version is deleted for good: only the backup keeps it now.
    let versions = s3.list_object_versions().bucket(&loc.bucket).prefix("k").send().await.unwrap();
    let old = versions.versions().iter().find(|v| v.is_latest() == Some(false)).unwrap();
    s3.delete_object()
        .bucket(&loc.bucket)
        .key("k")
        .set_version_id(old.version_id().map(str::to_owned))
        .send()
        .await
        .unwrap();

    for day in [1, 5] {
        let run = loc.backup(day, 7, Vec::new()).await.unwrap();
        let h = run.history.unwrap();
        assert_eq!((h.versions, h.dropped, h.versions_copied), (3, 0, 0), "day {day}: {h:?}");
        let listed = loc.audited(day, 7).await;
        let newest = listed.last().unwrap();
        assert!(newest.versions.iter().any(|v| v.key == "k"), "day {day}: kept: {newest:#?}");
    }
    // First found gone on day 1: dropped on day 9 (1 + 7 days), its stored copy deleted.
    let run = loc.backup(9, 7, Vec::new()).await.unwrap();
    let h = run.history.unwrap();
    assert_eq!((h.versions, h.dropped), (2, 1), "{h:?}");
    let listed = loc.audited(9, 7).await;
    assert!(listed.last().unwrap().versions.is_empty(), "{listed:#?}");
    let older: Vec<_> = listed.iter().filter(|s| s.versions.iter().any(|v| v.key == "k")).collect();
    assert_eq!(older.len(), 3, "the snapshots of days 0, 1 and 5 still name it: {listed:#?}");
    for snapshot in older {
        assert!(matches!(snapshot.window, Window::Until(_)), "closed by the day 9 run: {snapshot:?}");
    }
}
