//! Finding, reading and pruning snapshot manifests in the backup bucket, and the run records their
//! retention windows are derived from (see [`crate::format::retention`]).
//!
//! Everything lives under `.s32s3/snapshots/`, so one listing tells what exists:
//! - `<UTC time>-<id>.snap`: the manifest of a finished run (complete or partial), named by its finish time;
//! - `<id>.partial`: the checkpoint of a run that has not finished (resume only, never restored);
//! - `<UTC time>-<id>.<N>d.run`: a run record (see [`crate::format::retention`]).
//!
//! A manifest is trusted only under its own name: its header's id, finish time and backup location must
//! match the object's name and place ([`check_binding`]); one that does not, or does not decrypt, is
//! reported by name and skipped, never chosen by a restore nor used as a backup's parent.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::Path;

use s32s3_crypt::{Cipher, DecryptReader, ENCRYPTED_CHUNK_SIZE, HEADER_SIZE};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::error::{Error, Result, S3ErrorKind};
use crate::format::layout::Layout;
use crate::format::manifest::{Header, ManifestReader, SnapshotStatus};
use crate::format::retention::{Retention, RunRecord, Window};
use crate::store::{ObjectAttrs, ReadOptions, Store, WriteCondition};

/// The time in a manifest's or run record's name, to the millisecond: runs finishing within the same
/// second must still sort in the order they finished.
const NAME_TIME: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second].[subsecond digits:3]Z");

pub use crate::format::retention::SnapshotRef;

fn name_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(NAME_TIME).expect("the format is valid")
}

/// `t` cut to the millisecond, the precision of the names.
#[must_use]
pub fn to_millis(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000).expect("a smaller nanosecond is valid")
}

/// The key of the manifest of snapshot `id`, finished at `finished`.
#[must_use]
pub fn snapshot_key(layout: &Layout, finished: OffsetDateTime, id: &str) -> String {
    format!("{}{}-{id}.snap", layout.snapshots_prefix(), name_time(finished))
}

/// The key of the checkpoint of run `id`.
#[must_use]
pub fn checkpoint_key(layout: &Layout, id: &str) -> String {
    format!("{}{id}.partial", layout.snapshots_prefix())
}

/// The key of the run record of run `id`, written at `time` with the expiration `days` in effect
/// (`None`: nothing expires).
#[must_use]
pub fn run_record_key(layout: &Layout, time: OffsetDateTime, id: &str, days: Option<u32>) -> String {
    let days = days.map_or_else(String::new, |d| format!(".{d}d"));
    format!("{}{}-{id}{days}.run", layout.snapshots_prefix(), name_time(time))
}

/// Everything under `.s32s3/snapshots/`.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Snapshots and checkpoints, oldest first.
    pub manifests: Vec<SnapshotRef>,
    /// Run records, oldest first.
    pub runs: Vec<RunRecord>,
}

impl Catalog {
    /// The snapshots (checkpoints left out), oldest first.
    #[must_use]
    pub fn snapshots(&self) -> impl DoubleEndedIterator<Item = &SnapshotRef> {
        self.manifests.iter().filter(|s| !s.checkpoint)
    }

    /// The retention view of this catalog, given since when the location writes run records and the
    /// expiration in effect now.
    #[must_use]
    pub fn retention(&self, records_since: Option<OffsetDateTime>, days_now: Option<u32>) -> Retention<'_> {
        Retention { runs: &self.runs, manifests: &self.manifests, records_since, days_now }
    }
}

/// Parses one name under `.s32s3/snapshots/`; `None` for objects that are not ours.
fn parse_name(key: &str, name: &str, size: u64, last_modified: Option<OffsetDateTime>) -> Option<Entry> {
    let parse_time =
        |t: &str| time::PrimitiveDateTime::parse(t, NAME_TIME).ok().map(time::PrimitiveDateTime::assume_utc);
    if let Some(rest) = name.strip_suffix(".snap") {
        let (time, id) = rest.split_once('-')?;
        let finished = parse_time(time)?;
        return Some(Entry::Manifest(SnapshotRef {
            key: key.into(),
            id: id.into(),
            finished,
            checkpoint: false,
            size,
        }));
    }
    if let Some(rest) = name.strip_suffix(".run") {
        let (time, rest) = rest.split_once('-')?;
        let (id, days) = match rest.split_once('.') {
            Some((id, days)) => (id, Some(days.strip_suffix('d')?.parse().ok()?)),
            None => (rest, None),
        };
        return Some(Entry::Run(RunRecord { key: key.into(), id: id.into(), time: parse_time(time)?, days }));
    }
    let id = name.strip_suffix(".partial")?;
    let finished = last_modified.unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Some(Entry::Manifest(SnapshotRef { key: key.into(), id: id.into(), finished, checkpoint: true, size }))
}

enum Entry {
    Manifest(SnapshotRef),
    Run(RunRecord),
}

/// Lists everything under `.s32s3/snapshots/` (objects that are not ours are ignored).
///
/// # Errors
/// S3 failures.
pub async fn catalog(dest: &Store, bucket: &str, layout: &Layout) -> Result<Catalog> {
    let prefix = layout.snapshots_prefix();
    let mut catalog = Catalog::default();
    dest.list_objects(bucket, Some(&prefix), |objects| {
        for object in objects {
            let key = object.key.as_str();
            let name = &key[prefix.len().min(key.len())..];
            // Whole seconds, as every server lists them.
            let last_modified =
                OffsetDateTime::parse(&object.last_modified, &time::format_description::well_known::Rfc3339)
                    .ok()
                    .and_then(|t| t.replace_nanosecond(0).ok());
            match parse_name(key, name, object.size, last_modified) {
                Some(Entry::Manifest(m)) => catalog.manifests.push(m),
                Some(Entry::Run(r)) => catalog.runs.push(r),
                None => {}
            }
        }
        Ok(true)
    })
    .await?;
    catalog.manifests.sort_by(|a, b| (a.finished, &a.id).cmp(&(b.finished, &b.id)));
    catalog.runs.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
    Ok(catalog)
}

/// Every snapshot and checkpoint, oldest first.
///
/// # Errors
/// S3 failures.
pub async fn list(dest: &Store, bucket: &str, layout: &Layout) -> Result<Vec<SnapshotRef>> {
    Ok(catalog(dest, bucket, layout).await?.manifests)
}

/// Writes the run record of run `id` (see [`crate::format::retention`]).
///
/// # Errors
/// S3 failures.
pub async fn put_run_record(
    dest: &Store,
    bucket: &str,
    layout: &Layout,
    id: &str,
    time: OffsetDateTime,
    days: Option<u32>,
) -> Result<String> {
    let key = run_record_key(layout, time, id, days);
    let body = serde_json::json!({
        "format": "s32s3-run",
        "run_id": id,
        "time": crate::clock::format_rfc3339(time),
        "expiration_days": days,
        "tool": crate::format::tool_version(),
    })
    .to_string();
    dest.put(
        bucket,
        &key,
        bytes::Bytes::from(body.into_bytes()),
        &ObjectAttrs::typed("application/json"),
        WriteCondition::None,
    )
    .await?;
    Ok(key)
}

/// Uploads a local file as one object (each attempt reads it from the start); returns its version id.
/// `create_only`: refuse to replace an existing object (`If-None-Match: *`).
pub(crate) async fn put_file(
    store: &Store,
    bucket: &str,
    key: &str,
    file: File,
    len: u64,
    create_only: bool,
) -> Result<Option<String>> {
    let condition = if create_only { WriteCondition::Create } else { WriteCondition::None };
    let attrs = ObjectAttrs::typed("application/octet-stream");
    let out = store.put_file(bucket, key, &file, len, &attrs, condition).await;
    match out {
        Ok(written) => Ok(written.version_id),
        // An earlier attempt landed and only its answer was lost: the retry finds the object there. Names
        // written create-only carry the run's id, so one of the right size is ours.
        Err(Error::S3(e)) if create_only && e.kind == S3ErrorKind::PreconditionFailed => {
            let head = store.head(bucket, key, ReadOptions::current()).await?;
            if head.content_length == Some(len) { Ok(head.version_id) } else { Err(Error::S3(e)) }
        }
        Err(e) => Err(e),
    }
}

/// Downloads an object into a temporary file in `dir` (rewound), streaming; the request and the body read
/// are retried together.
///
/// # Errors
/// S3 failures; [`Error::Io`].
pub async fn download(store: &Store, bucket: &str, key: &str, dir: &Path) -> Result<File> {
    store.get_to_file(bucket, key, dir).await
}

/// Downloads and opens a manifest, without checking that it belongs under its name (tests and tools;
/// the engine uses [`Snapshots::open`]).
///
/// # Errors
/// S3 failures, [`Error::Corrupt`].
pub async fn open(
    dest: &Store,
    bucket: &str,
    key: &str,
    cipher: &Cipher,
    dir: &Path,
) -> Result<ManifestReader> {
    let file = download(dest, bucket, key, dir).await?;
    let name = format!("s3://{bucket}/{key}");
    let cipher = cipher.clone();
    tokio::task::spawn_blocking(move || ManifestReader::open(&name, file, &cipher))
        .await
        .expect("does not panic")
}

/// Checks that a manifest's header belongs under its object name: the same snapshot id, the same finish
/// time (to the millisecond, as names have it), the status its kind of name implies, and (when the header
/// records one) the same backup location. A manifest copied or renamed by someone who cannot write one
/// (without the key) is refused this way.
///
/// # Errors
/// [`Error::Corrupt`] naming the object and what does not match.
pub fn check_binding(header: &Header, snap: &SnapshotRef, bucket: &str, layout: &Layout) -> Result<()> {
    let name = format!("s3://{bucket}/{}", snap.key);
    let mismatch =
        |what: String| Err(Error::corrupt(&name, format!("not the manifest its name says: {what}")));
    if header.snapshot_id != snap.id {
        return mismatch(format!("its header is of snapshot {:?}", header.snapshot_id));
    }
    if snap.checkpoint {
        if header.status != SnapshotStatus::Running {
            return mismatch(format!("a checkpoint whose header says {}", header.status));
        }
    } else {
        if header.status == SnapshotStatus::Running {
            return mismatch("a snapshot whose header is a checkpoint's".into());
        }
        let finished =
            time::OffsetDateTime::parse(&header.finished, &time::format_description::well_known::Rfc3339)
                .map_err(|e| Error::corrupt(&name, format!("bad finish time {:?}: {e}", header.finished)))?;
        if to_millis(finished) != snap.finished {
            return mismatch(format!("its header says it finished at {}", header.finished));
        }
    }
    if let Some(location) = &header.location
        && (location.bucket != bucket || location.prefix != layout.root())
    {
        return mismatch(format!("it was written for s3://{}/{}", location.bucket, location.prefix));
    }
    Ok(())
}

/// Reads only a manifest's header line, from the first MiB of the object (the whole manifest, downloaded
/// into `dir`, only when the header is longer). Not checked against the name: see [`Snapshots::header`].
///
/// # Errors
/// S3 failures, [`Error::Corrupt`].
pub async fn read_header(
    dest: &Store,
    bucket: &str,
    key: &str,
    cipher: &Cipher,
    dir: &Path,
) -> Result<Header> {
    let name = format!("s3://{bucket}/{key}");
    // Whole crypt chunks only: a prefix cut at a chunk boundary decrypts without error.
    let end = HEADER_SIZE + 16 * ENCRYPTED_CHUNK_SIZE - 1;
    let (_, bytes) =
        dest.get(bucket, key, ReadOptions::current(), Some((0, end as u64)), end as u64 + 1).await?;
    let mut plain = Vec::new();
    DecryptReader::new(cipher, Cursor::new(bytes))
        .read_to_end(&mut plain)
        .map_err(|e| Error::corrupt(&name, e.to_string()))?;
    let decoder = zstd::stream::read::Decoder::new(Cursor::new(plain))
        .map_err(|e| Error::corrupt(&name, e.to_string()))?;
    let mut line = String::new();
    BufReader::new(decoder).read_line(&mut line).map_err(|e| Error::corrupt(&name, e.to_string()))?;
    if !line.ends_with('\n') {
        // A header longer than the first MiB (thousands of buckets): read the whole manifest.
        return open(dest, bucket, key, cipher, dir).await.map(|r| r.header().clone());
    }
    let header: Header =
        serde_json::from_str(&line).map_err(|e| Error::corrupt(&name, format!("bad header: {e}")))?;
    if header.format != crate::format::manifest::FORMAT {
        return Err(Error::corrupt(&name, "not an s32s3 manifest"));
    }
    Ok(header)
}

/// Which snapshot a restore or verify uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Selector {
    /// The newest complete snapshot.
    #[default]
    Newest,
    /// The newest snapshot (complete or partial) finished at or before this time.
    At(OffsetDateTime),
    /// This snapshot id (complete or partial).
    Id(String),
}

/// Parses a point in time for `--at` (RFC 3339). A time given to the whole second covers that whole
/// second, one given to the millisecond that millisecond (and so on): `2026-12-01T20:04:05Z` selects a
/// snapshot that finished at `20:04:05.456Z`, so what `s32s3 snapshots` prints, pasted, selects that
/// snapshot.
///
/// # Errors
/// A one-line reason when `text` is not an RFC 3339 time.
pub fn parse_point_in_time(text: &str) -> std::result::Result<OffsetDateTime, String> {
    let t = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time like 2026-11-26T10:00:00Z ({e})"))?;
    // The digits given after the seconds' '.', if any.
    let fraction_digits = text
        .split_once('.')
        .map_or(0, |(_, rest)| rest.bytes().take_while(u8::is_ascii_digit).count())
        .min(9);
    let unit_ns = 10_i64.pow(9 - fraction_digits as u32);
    Ok(t + time::Duration::nanoseconds(unit_ns - 1))
}

/// A snapshot chosen for a restore or verify, with its header and window.
#[derive(Clone, Debug)]
pub struct Selected {
    /// The manifest object.
    pub snapshot: SnapshotRef,
    /// Its header (checked against the name).
    pub header: Header,
    /// Until when it is guaranteed to restore.
    pub window: Window,
}

/// What the windows of a location's snapshots are judged by: its catalog, since when it writes run
/// records, and the expiration in effect now.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Snapshots, checkpoints and run records.
    pub catalog: Catalog,
    /// Since when the location writes run records (`.s32s3/config.json`).
    pub records_since: Option<OffsetDateTime>,
    /// The noncurrent-version expiration of the live lifecycle (`None`: nothing expires).
    pub days_now: Option<u32>,
}

impl History {
    /// The window of `snap` (checkpoints have none: they are never restored).
    #[must_use]
    pub fn window(&self, snap: &SnapshotRef) -> Window {
        self.catalog.retention(self.records_since, self.days_now).window(snap.finished)
    }

    /// The newest snapshot still guaranteed to restore at `now`.
    #[must_use]
    pub fn newest_safe(&self, now: OffsetDateTime) -> Option<&SnapshotRef> {
        self.catalog.snapshots().rev().find(|s| self.window(s).restorable_at(now))
    }

    fn past_window(&self, snap: &SnapshotRef, until: OffsetDateTime, now: OffsetDateTime) -> Error {
        let safe = match self.newest_safe(now) {
            Some(s) => format!(
                "the newest snapshot still safe is {} (finished {})",
                s.id,
                crate::clock::format_rfc3339(s.finished)
            ),
            None => "no snapshot is still guaranteed to restore".into(),
        };
        Error::NoSnapshot(format!(
            "snapshot {} (finished {}) is past its restorable window, which ended {}: versions it names may have \
             expired; {safe}",
            snap.id,
            crate::clock::format_rfc3339(snap.finished),
            crate::clock::format_rfc3339(until)
        ))
    }
}

/// Reads the history of the backup location: its catalog and the live lifecycle's expiration.
///
/// # Errors
/// S3 failures.
pub async fn history(
    dest: &Store,
    bucket: &str,
    layout: &Layout,
    records_since: Option<OffsetDateTime>,
) -> Result<History> {
    let catalog = catalog(dest, bucket, layout).await?;
    let days_now = crate::format::destination::live_expiration(dest, bucket, layout).await?;
    Ok(History { catalog, records_since, days_now })
}

/// Picks a snapshot and reads its header. Manifests that are unreadable or not what their names say are
/// reported through `warn` and skipped (an id asked for by name is an error instead). A snapshot past its
/// window is refused, with the newest one still safe named.
///
/// # Errors
/// [`Error::NoSnapshot`] with what exists instead; S3 failures; [`Error::Corrupt`] for the snapshot asked
/// for by id.
pub async fn select_in(
    location: &Snapshots<'_>,
    history: &History,
    selector: &Selector,
    now: OffsetDateTime,
    warn: &(dyn Fn(&str) + Sync),
) -> Result<Selected> {
    let snapshots = location;
    let all: Vec<&SnapshotRef> = history.catalog.snapshots().collect();
    let location = format!("s3://{}/{}", snapshots.bucket, snapshots.layout.root());
    let Some(oldest) = all.first() else {
        return Err(Error::NoSnapshot(format!("no snapshots in {location}")));
    };
    let accept = |snap: &SnapshotRef, header: Header| {
        let window = history.window(snap);
        match window.until() {
            Some(until) if !window.restorable_at(now) => Err(history.past_window(snap, until, now)),
            _ => Ok(Selected { snapshot: snap.clone(), header, window }),
        }
    };
    if let Selector::Id(id) = selector {
        let snap = all.iter().find(|s| &s.id == id).ok_or_else(|| {
            Error::NoSnapshot(format!("no snapshot {id:?} in {location} (`s32s3 snapshots` lists them)"))
        })?;
        let header = snapshots.header(snap).await?;
        return accept(snap, header);
    }
    let at = match selector {
        Selector::At(at) => Some(*at),
        _ => None,
    };
    for snap in all.iter().rev().filter(|s| at.is_none_or(|at| s.finished <= at)) {
        let header = match snapshots.header(snap).await {
            Ok(header) => header,
            Err(e @ Error::Corrupt { .. }) => {
                warn(&format!("skipping snapshot {}: {e}", snap.id));
                continue;
            }
            Err(e) => return Err(e),
        };
        // Without a time, only a complete snapshot will do; at a time, the newest view there is.
        if at.is_some() || header.status == SnapshotStatus::Complete {
            return accept(snap, header);
        }
    }
    Err(Error::NoSnapshot(match at {
        Some(at) if at < oldest.finished => format!(
            "no snapshot at or before {}: the oldest in {location} is {} from {}",
            crate::clock::format_rfc3339(at),
            oldest.id,
            crate::clock::format_rfc3339(oldest.finished)
        ),
        Some(at) => {
            format!("no readable snapshot at or before {} in {location}", crate::clock::format_rfc3339(at))
        }
        None => match history.newest_safe(now) {
            Some(s) => format!(
                "no complete snapshot in {location}; the newest restorable one is {} (finished {}): choose it with \
                 --snapshot {}",
                s.id,
                crate::clock::format_rfc3339(s.finished),
                s.id
            ),
            None => format!("no complete snapshot in {location}"),
        },
    }))
}

/// One backup location's snapshots, with what reading them takes: the destination, the layout, the keys
/// and a work directory for downloaded manifests.
#[derive(Clone, Copy)]
pub struct Snapshots<'a> {
    /// The destination store.
    pub dest: &'a Store,
    /// The backup bucket.
    pub bucket: &'a str,
    /// The location's layout.
    pub layout: &'a Layout,
    /// The keys.
    pub cipher: &'a Cipher,
    /// Where downloaded manifests go.
    pub dir: &'a Path,
}

impl Snapshots<'_> {
    /// Everything under `.s32s3/snapshots/` ([`catalog`]).
    ///
    /// # Errors
    /// S3 failures.
    pub async fn catalog(&self) -> Result<Catalog> {
        catalog(self.dest, self.bucket, self.layout).await
    }

    /// The location's history ([`history`]).
    ///
    /// # Errors
    /// S3 failures.
    pub async fn history(&self, records_since: Option<OffsetDateTime>) -> Result<History> {
        history(self.dest, self.bucket, self.layout, records_since).await
    }

    /// Downloads and opens a snapshot's manifest, checking that it belongs under its name
    /// ([`check_binding`]).
    ///
    /// # Errors
    /// S3 failures, [`Error::Corrupt`] (unreadable, or not the manifest its name says).
    pub async fn open(&self, snap: &SnapshotRef) -> Result<ManifestReader> {
        let reader = open(self.dest, self.bucket, &snap.key, self.cipher, self.dir).await?;
        check_binding(reader.header(), snap, self.bucket, self.layout)?;
        Ok(reader)
    }

    /// Reads a snapshot's header (only the start of the manifest), checking that it belongs under its name.
    ///
    /// # Errors
    /// S3 failures, [`Error::Corrupt`].
    pub async fn header(&self, snap: &SnapshotRef) -> Result<Header> {
        let header = read_header(self.dest, self.bucket, &snap.key, self.cipher, self.dir).await?;
        check_binding(&header, snap, self.bucket, self.layout)?;
        Ok(header)
    }

    /// The newest complete, readable snapshot among `candidates` (oldest first) with its header: headers
    /// are read from the newest backwards until one says complete, so usually only one is read.
    ///
    /// # Errors
    /// S3 failures other than an unreadable manifest.
    pub async fn newest_complete<'s>(
        &self,
        candidates: impl DoubleEndedIterator<Item = &'s SnapshotRef>,
    ) -> Result<Option<(SnapshotRef, Header)>> {
        for snap in candidates.rev() {
            match self.header(snap).await {
                Ok(header) if header.status == SnapshotStatus::Complete => {
                    return Ok(Some((snap.clone(), header)));
                }
                Ok(_) | Err(Error::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new(&Cipher::new("p", "").unwrap(), "pre").unwrap()
    }

    #[test]
    fn names_sort_by_finish_time_to_the_millisecond() {
        let layout = layout();
        let t = time::macros::datetime!(2026-11-26 17:09:58.123456 UTC);
        let key = snapshot_key(&layout, t, "0a1b2c3d");
        assert_eq!(key, "pre/.s32s3/snapshots/20261126T170958.123Z-0a1b2c3d.snap");
        let later = snapshot_key(&layout, t + time::Duration::milliseconds(1), "00000000");
        assert!(later > key, "names sort in finishing order");
        let name = key.rsplit('/').next().unwrap();
        let Some(Entry::Manifest(parsed)) = parse_name(&key, name, 9, None) else { panic!("{name}") };
        assert_eq!(parsed.id, "0a1b2c3d");
        assert_eq!(parsed.finished, time::macros::datetime!(2026-11-26 17:09:58.123 UTC));
        assert_eq!(parsed.finished, to_millis(t));
    }

    #[test]
    fn run_record_names_carry_time_id_and_expiration() {
        let layout = layout();
        let t = time::macros::datetime!(2026-12-01 20:04:05.456789 UTC);
        for days in [Some(7), Some(30), None] {
            let key = run_record_key(&layout, t, "0a1b2c3d", days);
            let name = key.rsplit('/').next().unwrap();
            let Some(Entry::Run(run)) = parse_name(&key, name, 1, None) else { panic!("{name}") };
            assert_eq!((run.id.as_str(), run.time, run.days), ("0a1b2c3d", to_millis(t), days), "{name}");
        }
        assert_eq!(
            run_record_key(&layout, t, "0a1b2c3d", Some(7)),
            "pre/.s32s3/snapshots/20261201T200405.456Z-0a1b2c3d.7d.run"
        );
        for junk in ["x.run", "20261201T200405.456Z-a.xd.run", "20261201T200405Z-a.snap", "README"] {
            assert!(parse_name(junk, junk, 1, None).is_none(), "{junk}");
        }
    }

    #[test]
    fn a_time_to_the_second_covers_that_second() {
        let at = parse_point_in_time("2026-12-01T20:04:05Z").unwrap();
        assert_eq!(at, time::macros::datetime!(2026-12-01 20:04:05.999_999_999 UTC));
        let at = parse_point_in_time("2026-12-01T20:04:05.456Z").unwrap();
        assert_eq!(at, time::macros::datetime!(2026-12-01 20:04:05.456_999_999 UTC));
        let at = parse_point_in_time("2026-12-01T21:04:05.123456789+01:00").unwrap();
        assert_eq!(at, time::macros::datetime!(2026-12-01 20:04:05.123_456_789 UTC));
        assert!(parse_point_in_time("yesterday").unwrap_err().contains("not an RFC 3339 time"));
        // What the snapshots listing prints (a name's time, to the millisecond) selects that snapshot.
        let finished = time::macros::datetime!(2026-12-01 20:04:05.456 UTC);
        let printed = crate::clock::format_rfc3339(finished);
        assert!(finished <= parse_point_in_time(&printed).unwrap(), "{printed}");
        let to_second = printed.split('.').next().unwrap().to_owned() + "Z";
        assert!(finished <= parse_point_in_time(&to_second).unwrap(), "{to_second}");
    }
}
