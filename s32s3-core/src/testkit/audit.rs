//! Checks, against the backup bucket's own version listing, that every snapshot s32s3 lists is as safe as
//! its restorable window says: every version it names (in its entries and its source history) exists, and none of them expires (under a modelled
//! lifecycle) before the window ends. A window that is still open may name only current versions: a run
//! that replaces anything writes a run record first, which closes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::format::manifest::Entry;
use crate::format::retention::Window;
use crate::options::RunConfig;
use crate::progress::NoProgress;
use crate::store::s3::Store;

/// The lifecycle's noncurrent-version expiration over time: `(from, days)` changes, oldest first.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    /// From each time on, noncurrent versions expire after this many days.
    pub changes: Vec<(OffsetDateTime, u32)>,
}

impl Lifecycle {
    /// One expiration for all time.
    #[must_use]
    pub fn fixed(days: u32) -> Self {
        Self { changes: vec![(OffsetDateTime::UNIX_EPOCH, days)] }
    }

    /// When a version that became noncurrent at `since` is deleted: the first time `t >= since` with
    /// `t - since >= days in effect at t` (S3 evaluates the rule in effect when it runs).
    #[must_use]
    pub fn expires_at(&self, since: OffsetDateTime) -> OffsetDateTime {
        let mut best = OffsetDateTime::from_unix_timestamp(253_402_300_799).expect("year 9999");
        for (i, (from, days)) in self.changes.iter().enumerate() {
            let until = self.changes.get(i + 1).map(|c| c.0);
            let candidate = (*from).max(since + time::Duration::days(i64::from(*days)));
            if until.is_none_or(|until| candidate < until) && candidate < best {
                best = candidate;
            }
        }
        best
    }
}

/// One listed snapshot, audited.
#[derive(Clone, Debug)]
pub struct Audited {
    /// Its id.
    pub id: String,
    /// Its finish time (from the name).
    pub finished: OffsetDateTime,
    /// `complete` or `partial`.
    pub status: String,
    /// Its window as s32s3 computes it.
    pub window: Window,
    /// Its entries.
    pub entries: Vec<Entry>,
    /// The versions its source history (`source_versions`) stores beside the entries.
    pub versions: Vec<Entry>,
}

/// Per stored key: its versions and delete markers, newest first, with when each was written.
async fn version_history(
    store: &Store,
    bucket: &str,
) -> BTreeMap<String, Vec<(Option<String>, OffsetDateTime)>> {
    let mut history: BTreeMap<String, Vec<(Option<String>, OffsetDateTime)>> = BTreeMap::new();
    store
        .list_versions_in_order(bucket, None, |v| {
            history.entry(v.key).or_default().push((v.version_id, v.last_modified));
        })
        .await
        .expect("list the versions of the backup bucket");
    for versions in history.values_mut() {
        // Newest first; of equal times the listing's order stays.
        versions.sort_by_key(|v| std::cmp::Reverse(v.1));
    }
    history
}

/// The versions a snapshot's source history stores beside its entries (none without a history).
async fn stored_versions(
    location: &crate::format::snapshots::Snapshots<'_>,
    header: &crate::format::manifest::Header,
) -> Vec<Entry> {
    let Some(history) = &header.history else { return Vec::new() };
    let (store, bucket, cipher, dir) = (location.dest, location.bucket, location.cipher, location.dir);
    crate::format::history::open(store, bucket, history, &header.snapshot_id, cipher, dir)
        .await
        .expect("open a listed snapshot's version history")
        .filter_map(|r| r.expect("a readable record").stored.map(|e| *e))
        .collect()
}

/// Audits every snapshot of the location `config` describes, at `now` (the run clock's time).
/// `to_clock` maps a time the server wrote (a version's last-modified) to the run clock's time (identity
/// unless the test moved the clock). Returns the snapshots and the problems found, one line each.
///
/// # Panics
/// When the location cannot be read.
pub async fn audit(
    config: &RunConfig,
    lifecycle: &Lifecycle,
    now: OffsetDateTime,
    to_clock: &(dyn Fn(OffsetDateTime) -> OffsetDateTime + Sync),
) -> (Vec<Audited>, Vec<String>) {
    let store =
        Store::new(crate::error::Side::Destination, config.destination.clone(), 3).expect("destination");
    let bucket = config.backup_bucket.as_str();
    let history = version_history(&store, bucket).await;
    let noncurrent_since = |key: &str, version: Option<&str>| -> Result<Option<OffsetDateTime>, String> {
        let versions = history.get(key).ok_or_else(|| format!("{key}: no version at all"))?;
        let at = versions
            .iter()
            .position(|(id, _)| id.as_deref() == version)
            .ok_or_else(|| format!("{key} version {version:?} is gone"))?;
        Ok(at.checked_sub(1).map(|newer| to_clock(versions[newer].1)))
    };

    let listed =
        crate::inspect::describe(config, Arc::new(NoProgress)).await.expect("describe the snapshots");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cipher = crate::format::derive_cipher(&config.password, &config.password2).await.expect("keys");
    let layout = crate::format::layout::Layout::new(&cipher, &config.backup_prefix).expect("layout");
    let mut audited = Vec::new();
    let mut problems = Vec::new();
    for info in listed.iter().filter(|i| !i.snapshot.checkpoint) {
        let Ok(header) = &info.header else {
            problems.push(format!("snapshot {} is listed but unreadable", info.snapshot.id));
            continue;
        };
        let window = info.window.expect("snapshots have windows");
        let location = crate::format::snapshots::Snapshots {
            dest: &store,
            bucket,
            layout: &layout,
            cipher: &cipher,
            dir: dir.path(),
        };
        let reader = location.open(&info.snapshot).await.expect("open a listed snapshot");
        let entries: Vec<Entry> = reader.map(|e| e.expect("a readable entry")).collect();
        let versions = stored_versions(&location, header).await;
        if window.restorable_at(now) {
            for entry in entries.iter().chain(&versions) {
                let what = format!(
                    "snapshot {} ({}), s3://{}/{}",
                    info.snapshot.id, header.status, entry.bucket, entry.key
                );
                match noncurrent_since(&entry.stored_key, entry.version_id.as_deref()) {
                    Err(e) => problems.push(format!("{what}: {e}")),
                    Ok(None) => {}
                    Ok(Some(since)) => match window {
                        Window::Open { .. } => problems.push(format!(
                            "{what}: the window is open, but the version it names stopped being current at {}",
                            crate::clock::format_rfc3339(since)
                        )),
                        Window::Until(until) => {
                            // Listings give whole seconds on some servers (moto's version listing):
                            // a version may look up to a second older than it is.
                            let expires = lifecycle.expires_at(since) + time::Duration::seconds(1);
                            if expires < until {
                                problems.push(format!(
                                    "{what}: restorable until {} is claimed, but the version it names expires at {}",
                                    crate::clock::format_rfc3339(until),
                                    crate::clock::format_rfc3339(expires)
                                ));
                            }
                        }
                    },
                }
            }
        }
        audited.push(Audited {
            id: info.snapshot.id.clone(),
            finished: info.snapshot.finished,
            status: header.status.to_string(),
            window,
            entries,
            versions,
        });
    }
    (audited, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_follows_the_rule_in_effect() {
        let t0 = time::macros::datetime!(2026-12-01 00:00 UTC);
        let day = |n: i64| t0 + time::Duration::days(n);
        assert_eq!(Lifecycle::fixed(7).expires_at(day(1)), day(8));
        // Shortened from 7 to 2 days at day 5: a version noncurrent since day 1 goes at day 5 at once.
        let shortened = Lifecycle { changes: vec![(day(-100), 7), (day(5), 2)] };
        assert_eq!(shortened.expires_at(day(1)), day(5));
        assert_eq!(shortened.expires_at(day(4)), day(6));
        // Lengthened from 2 to 30 at day 3: a version noncurrent since day 0 went at day 2 already.
        let lengthened = Lifecycle { changes: vec![(day(-100), 2), (day(3), 30)] };
        assert_eq!(lengthened.expires_at(day(0)), day(2));
        assert_eq!(lengthened.expires_at(day(2)), day(32));
    }
}
