//! How long each snapshot is guaranteed to restore, derived from the lifecycle's own rule.
//!
//! The destination's lifecycle expires a noncurrent version `N` days after it *became* noncurrent, i.e.
//! after the run that replaced it (a new version or a delete marker on top). A snapshot names versions
//! that were current when it was written, and only a later run replaces them. So a snapshot is safe until
//! the first write of the next run that may replace what it names, plus the smallest `N` in effect from
//! then on:
//!
//! ```text
//! restorable_until(S) = R(S) + min(N in effect from R(S) on)
//! R(S)                = the time of the first run record after S finished
//! ```
//!
//! A *run record* (`.s32s3/snapshots/<time>-<run id>.<N>d.run`) is written by every backup run right
//! before its first write that may replace a stored version (a data object written or deleted), and before
//! it changes the lifecycle's `N`; its name carries the time and the smallest `N` in effect around it (the
//! one before the run's change and the one after). A run that replaces nothing writes none, so it does not
//! shorten anyone's window. Until a later run has written a record, a snapshot's window is open: it stays
//! restorable for `N` days after the next run that replaces something.
//!
//! Locations written before run records existed (format 1) get the conservative rule for the snapshots of
//! that time: `R(S)` is the snapshot's own finish time as soon as anything later exists (a later snapshot,
//! checkpoint or run record), which is what the pruning by age used to assume.
//!
//! Everything here is pure logic over names, so `snapshots`, `restore`, `verify` and the pruning of a
//! backup all agree, and the tests can step through days of runs.

use time::OffsetDateTime;

/// A manifest object in the backup bucket, as its name describes it (the catalog of
/// [`crate::format::snapshots`] lists them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRef {
    /// Its key in the backup bucket.
    pub key: String,
    /// The snapshot id.
    pub id: String,
    /// When the run finished (from the name; for a checkpoint, when it was last written).
    pub finished: OffsetDateTime,
    /// A checkpoint of an unfinished run (`<id>.partial`), not a snapshot.
    pub checkpoint: bool,
    /// Size of the encrypted manifest.
    pub size: u64,
}

/// A run record: a backup run that may have replaced stored versions from `time` on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    /// Its key in the backup bucket.
    pub key: String,
    /// The run (and snapshot) id.
    pub id: String,
    /// When the run's first replacing write (or lifecycle change) was about to happen.
    pub time: OffsetDateTime,
    /// The smallest noncurrent-version expiration in effect around that time (`None`: nothing expires).
    pub days: Option<u32>,
}

/// How long a snapshot is guaranteed to restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// No later run has replaced anything it names yet: it restores until `days` after the next run
    /// that does (`None`: versions never expire here).
    Open {
        /// The expiration that will apply.
        days: Option<u32>,
    },
    /// Guaranteed until this time; afterwards its versions may have expired.
    Until(#[serde(with = "time::serde::rfc3339")] OffsetDateTime),
}

impl Window {
    /// Whether the snapshot is still guaranteed to restore at `now`.
    #[must_use]
    pub fn restorable_at(&self, now: OffsetDateTime) -> bool {
        match self {
            Self::Open { .. } => true,
            Self::Until(until) => now <= *until,
        }
    }

    /// The end of the window, when it has one.
    #[must_use]
    pub fn until(&self) -> Option<OffsetDateTime> {
        match self {
            Self::Open { .. } => None,
            Self::Until(until) => Some(*until),
        }
    }

    /// For people: the RFC 3339 end, or `open (N days after the next run)`.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Until(until) => crate::clock::format_rfc3339(*until),
            Self::Open { days: Some(days) } => format!("open ({days} days after the next run)"),
            Self::Open { days: None } => "open (versions never expire)".into(),
        }
    }
}

/// How long Object Lock retains a version s32s3 writes (`object_lock`): three windows of `days`.
///
/// A run extends the retention of every version its snapshot names once less than two windows remain
/// ([`lock_needs_extension`]), back to three: at most once per version per window. So after each run,
/// everything its snapshot names stays retained for two more windows: past the window that snapshot stays
/// listed after the next run replaces what it names, as long as runs come at least once per window.
#[must_use]
pub fn lock_period(days: u32) -> time::Duration {
    time::Duration::days(3 * i64::from(days))
}

/// The retain-until date for a version retained from `now`: [`lock_period`] later, rounded up to a whole
/// second (servers keep no more; a recorded date must read back the same).
#[must_use]
pub fn lock_until(now: OffsetDateTime, days: u32) -> OffsetDateTime {
    whole_second_after(now + lock_period(days))
}

/// `t` rounded up to a whole second.
fn whole_second_after(t: OffsetDateTime) -> OffsetDateTime {
    if t.nanosecond() == 0 {
        t
    } else {
        t.replace_nanosecond(0).expect("0 is valid") + time::Duration::SECOND
    }
}

/// Whether a version retained until `retain_until` (RFC 3339; `None`: not retained) needs its retention
/// extended now (less than two windows of `days` left).
#[must_use]
pub fn lock_needs_extension(retain_until: Option<&str>, now: OffsetDateTime, days: u32) -> bool {
    let until = retain_until
        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok());
    until.is_none_or(|until| until < now + time::Duration::days(2 * i64::from(days)))
}

/// Smallest of two expirations, `None` meaning "never expires".
pub(crate) fn min_days(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// What the windows are computed from: the run records and snapshots of a location, and what is in
/// effect now.
#[derive(Clone, Debug)]
pub struct Retention<'a> {
    /// Every run record, any order.
    pub runs: &'a [RunRecord],
    /// Every manifest object (snapshots and checkpoints), any order: later ones are evidence of a run
    /// for snapshots of the time before run records.
    pub manifests: &'a [SnapshotRef],
    /// Since when this location writes run records (`None`: never, a format-1 location).
    pub records_since: Option<OffsetDateTime>,
    /// The expiration in effect now (the live lifecycle rule, or the one a run is about to set).
    pub days_now: Option<u32>,
}

impl Retention<'_> {
    /// The window of a snapshot that finished at `finished`.
    #[must_use]
    pub fn window(&self, finished: OffsetDateTime) -> Window {
        let before_records = |t: OffsetDateTime| self.records_since.is_none_or(|since| t < since);
        // Without run records, any later run may have replaced things right away.
        let legacy_evidence = before_records(finished)
            && self.manifests.iter().any(|m| m.finished > finished && before_records(m.finished));
        let first_record = self.runs.iter().filter(|r| r.time > finished).map(|r| r.time).min();
        let replaced_from = if legacy_evidence { Some(finished) } else { first_record };
        let Some(from) = replaced_from else {
            return Window::Open { days: self.days_now };
        };
        let days =
            self.runs.iter().filter(|r| r.time >= from).fold(self.days_now, |acc, r| min_days(acc, r.days));
        match days {
            Some(days) => Window::Until(from + time::Duration::days(i64::from(days))),
            None => Window::Open { days: None },
        }
    }
}

/// What a prune removes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrunePlan {
    /// Snapshots past their window (never the newest restorable one).
    pub snapshots: Vec<SnapshotRef>,
    /// Run records older than every snapshot that stays: no window depends on them any more.
    pub runs: Vec<RunRecord>,
}

/// Plans a prune at `now`: the snapshots (not checkpoints) past their window, and the run records no
/// remaining window needs. The newest restorable snapshot is never pruned, nor the newest snapshot of all
/// (past its window only after runs that failed for days; it is the best evidence left).
#[must_use]
pub fn prune_plan(retention: &Retention<'_>, now: OffsetDateTime) -> PrunePlan {
    let mut snapshots: Vec<&SnapshotRef> = retention.manifests.iter().filter(|s| !s.checkpoint).collect();
    snapshots.sort_by(|a, b| (a.finished, &a.id).cmp(&(b.finished, &b.id)));
    let newest = snapshots.last().map(|s| s.key.clone());
    let newest_restorable = snapshots
        .iter()
        .rev()
        .find(|s| retention.window(s.finished).restorable_at(now))
        .map(|s| s.key.clone());
    let (expired, kept): (Vec<&SnapshotRef>, Vec<&SnapshotRef>) = snapshots.into_iter().partition(|s| {
        !retention.window(s.finished).restorable_at(now)
            && Some(&s.key) != newest_restorable.as_ref()
            && Some(&s.key) != newest.as_ref()
    });
    let oldest_kept = kept.iter().map(|s| s.finished).min();
    let runs = retention
        .runs
        .iter()
        .filter(|r| oldest_kept.is_some_and(|oldest| r.time < oldest))
        .cloned()
        .collect();
    PrunePlan { snapshots: expired.into_iter().cloned().collect(), runs }
}

#[cfg(test)]
mod tests {
    use time::Duration;
    use time::macros::datetime;

    use super::*;

    fn day(n: i64) -> OffsetDateTime {
        datetime!(2026-12-01 02:00 UTC) + Duration::days(n)
    }

    fn snap(id: &str, finished: OffsetDateTime) -> SnapshotRef {
        SnapshotRef { key: format!("{id}.snap"), id: id.into(), finished, checkpoint: false, size: 1 }
    }

    fn run(id: &str, time: OffsetDateTime, days: u32) -> RunRecord {
        RunRecord { key: format!("{id}.run"), id: id.into(), time, days: Some(days) }
    }

    fn retention<'a>(runs: &'a [RunRecord], manifests: &'a [SnapshotRef], days: u32) -> Retention<'a> {
        Retention { runs, manifests, records_since: Some(day(-100)), days_now: Some(days) }
    }

    #[test]
    fn a_window_opens_with_the_next_replacing_run() {
        let snaps = [snap("a", day(0)), snap("b", day(1) + Duration::hours(1))];
        let runs = [run("a", day(0) - Duration::hours(1), 7), run("b", day(1), 7)];
        let r = retention(&runs, &snaps, 7);
        assert_eq!(r.window(snaps[0].finished), Window::Until(day(8)));
        assert_eq!(r.window(snaps[1].finished), Window::Open { days: Some(7) });
    }

    #[test]
    fn days_of_runs_that_replace_nothing_keep_the_window_open() {
        // Failed runs that never got to write write no run record.
        let snaps = [snap("a", day(0))];
        let runs = [run("a", day(0) - Duration::hours(1), 7)];
        let r = retention(&runs, &snaps, 7);
        assert!(r.window(day(0)).restorable_at(day(30)));
        assert!(prune_plan(&r, day(30)).snapshots.is_empty());
    }

    #[test]
    fn the_smallest_expiration_from_the_replacing_run_on_applies() {
        let snaps = [snap("a", day(0))];
        // Shortened to 2 days at day 3, lengthened to 30 at day 4.
        let runs = [run("b", day(1), 7), run("c", day(3), 2), run("d", day(4), 30)];
        assert_eq!(retention(&runs, &snaps, 30).window(day(0)), Window::Until(day(3)));
        // Lengthening alone never stretches a window that was promised shorter.
        let runs = [run("b", day(1), 7), run("d", day(4), 30)];
        assert_eq!(retention(&runs, &snaps, 30).window(day(0)), Window::Until(day(8)));
        // A shorter expiration about to be set counts at once.
        assert_eq!(retention(&runs, &snaps, 1).window(day(0)), Window::Until(day(2)));
    }

    #[test]
    fn pruning_keeps_the_newest_restorable_and_the_records_it_needs() {
        let snaps: Vec<SnapshotRef> =
            (0..10).map(|i| snap(&format!("s{i}"), day(i) + Duration::hours(1))).collect();
        let runs: Vec<RunRecord> = (0..10).map(|i| run(&format!("s{i}"), day(i), 3)).collect();
        let r = retention(&runs, &snaps, 3);
        let plan = prune_plan(&r, day(9) + Duration::hours(2));
        // s_i is safe until the next record, day(i + 1), plus 3 days: s0..s5 have passed at day 9, 02:00.
        let pruned: Vec<&str> = plan.snapshots.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(pruned, ["s0", "s1", "s2", "s3", "s4", "s5"]);
        let records: Vec<&str> = plan.runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(records, ["s0", "s1", "s2", "s3", "s4", "s5", "s6"], "the records before s6 finished");
        // After days of runs that crashed, the newest is past its window too: it stays, as evidence.
        let lonely = [snap("x", day(0))];
        let crashed = [run("y", day(1), 1)];
        let r =
            Retention { runs: &crashed, manifests: &lonely, records_since: Some(day(-1)), days_now: Some(1) };
        assert!(!r.window(day(0)).restorable_at(day(100)));
        assert!(prune_plan(&r, day(100)).snapshots.is_empty());
    }

    #[test]
    fn snapshots_before_run_records_expire_by_their_own_age() {
        let snaps = [snap("old1", day(0)), snap("old2", day(1)), snap("new", day(5))];
        let runs = [run("new", day(5) - Duration::hours(1), 7)];
        let r = Retention { runs: &runs, manifests: &snaps, records_since: Some(day(4)), days_now: Some(7) };
        assert_eq!(r.window(day(0)), Window::Until(day(7)), "a later snapshot of that time is evidence");
        // The newest of that time: the first record after it opens its window.
        assert_eq!(r.window(day(1)), Window::Until(day(5) - Duration::hours(1) + Duration::days(7)));
        assert_eq!(r.window(day(5)), Window::Open { days: Some(7) });
        let none = Retention { runs: &[], manifests: &snaps, records_since: None, days_now: None };
        assert_eq!(none.window(day(0)), Window::Open { days: None }, "without expiry nothing expires");
    }
}
