//! The engine's per-object CPU, without a server: what a backup does for each object besides moving its
//! bytes. For 10^6 synthetic objects (1 % of them changed since the previous snapshot):
//!
//! - `plan+write`: the previous manifest read back and split by bucket, the listing sorted (spilled to
//!   disk, as every listing is beyond 20,000 keys), the merge-join, and the new manifest written and
//!   encoded (JSON Lines, zstd, rclone crypt) — what a backup that copies nothing spends per object;
//! - `read`: a manifest of 10^6 entries decrypted, decompressed and parsed — what restore, verify and the
//!   next backup spend per object before any request.
//!
//! `cargo bench -p s32s3-benches --bench engine` (add `-- --quick` for a short run). After each benchmark
//! it prints objects per second and the peak RSS one iteration reached over what the process held before
//! it (`/proc/self/clear_refs` resets the peak; Linux only). Target: 10^6 objects planned and written in
//! under 5 s of one core and under 100 MiB.

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use s32s3_core::engine::listing::{Listed, SortedListing};
use s32s3_core::engine::plan::{Action, MergeJoin, PreviousEntries};
use s32s3_core::format::manifest::{
    BucketRecord, Entry, FORMAT, Header, Location, ManifestReader, ManifestWriter, SnapshotStatus,
    SourceInfo, VERSION,
};
use s32s3_core::{PlanCounts, Result, Totals};
use s32s3_crypt::{Cipher, Key};

const OBJECTS: u64 = 1_000_000;
const BUCKET: &str = "bench";

fn cipher() -> Cipher {
    // Fixed key bytes: the benchmark measures the engine, not scrypt.
    Cipher::from_key(Key::from_bytes(&[0x5a; 80]))
}

/// Object `i`'s key: in `i`'s order, as a manifest holds them.
fn key(i: u64) -> String {
    format!("data/{:04}/object-{i:08}.bin", i / 1000)
}

fn listed(i: u64, changed: bool) -> Listed {
    Listed {
        key: key(i),
        size: 4096 + i % 10_000,
        etag: format!("\"{:032x}\"", i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(changed)),
        last_modified: "2026-11-30T10:00:00.000Z".into(),
        storage_class: Some("STANDARD".into()),
        tags: None,
    }
}

fn entry(listed: &Listed) -> Entry {
    Entry {
        bucket: BUCKET.into(),
        key: listed.key.clone(),
        size: listed.size,
        etag: listed.etag.clone(),
        last_modified: listed.last_modified.clone(),
        storage_class: listed.storage_class.clone(),
        content_type: Some("application/octet-stream".into()),
        sha256: format!("{:064x}", listed.size),
        stored_key: format!("{:052x}/{:052x}", listed.size, listed.size ^ 0x55),
        version_id: Some(format!("{:032x}", listed.size)),
        nonce: Some(format!("{:048x}", listed.size)),
        ..Entry::default()
    }
}

fn header() -> Header {
    Header {
        format: FORMAT.into(),
        version: VERSION,
        snapshot_id: "0123abcd".into(),
        status: SnapshotStatus::Complete,
        started: "2026-11-30T10:00:00Z".into(),
        finished: "2026-11-30T10:05:00Z".into(),
        tool: "s32s3 bench".into(),
        source: SourceInfo {
            endpoint: "http://127.0.0.1:9000".into(),
            kind: "s3".into(),
            ..Default::default()
        },
        parent: None,
        buckets: vec![BucketRecord { name: BUCKET.into(), ..Default::default() }],
        instance: None,
        totals: Totals::default(),
        location: Some(Location { bucket: "backups".into(), prefix: String::new() }),
        history: None,
    }
}

/// The previous snapshot's manifest (every object unchanged), encoded once.
fn previous_manifest(cipher: &Cipher, dir: &Path) -> std::fs::File {
    let mut writer = ManifestWriter::new(dir).unwrap();
    for i in 0..OBJECTS {
        writer.push(&entry(&listed(i, false))).unwrap();
    }
    writer.encode(&header(), cipher, dir).unwrap().0
}

/// A handle on `file` read from the start (handles share the position).
fn rewound(file: &std::fs::File) -> std::fs::File {
    use std::io::{Seek, SeekFrom};
    let mut file = file.try_clone().unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    file
}

/// One backup's per-object work, as `Backup` does it: the previous manifest split by bucket, the listing
/// sorted, the plan (a merge-join pass that counts), the actions (a second pass, each entry written to the
/// new manifest), the manifest encoded. Returns the entries the new manifest holds.
fn plan_and_write(cipher: &Cipher, previous: &std::fs::File, dir: &Path) -> Result<u64> {
    let mut phase = Phases::new();
    let reader = ManifestReader::open("previous", rewound(previous), cipher)?;
    let mut previous = PreviousEntries::split(reader.lines(), dir)?;
    phase.end("split the previous manifest");
    let mut listing = SortedListing::new(dir);
    // Servers list in their own order: push in a scrambled one, so the sort has work to do.
    for i in 0..OBJECTS {
        let j = (i * 7919) % OBJECTS;
        listing.push(listed(j, j.is_multiple_of(100)))?;
    }
    let mut sorted = listing.finish()?;
    phase.end("listing made and sorted");
    let mut counts = PlanCounts::default();
    for action in MergeJoin::new(sorted.iter()?, previous.lines(BUCKET)?) {
        counts.count(&action?);
    }
    black_box(counts);
    phase.end("plan pass");
    let mut writer = ManifestWriter::new(dir)?;
    for action in MergeJoin::new(sorted.iter()?, previous.lines(BUCKET)?) {
        match action? {
            Action::Keep(entry) => writer.push_line(&entry)?,
            Action::Copy { listed, .. } => writer.push(&entry(&listed))?,
            Action::Retag { previous, tags } => writer.push(&previous.retagged(tags)?)?,
            Action::Delete(_) => {}
        }
    }
    phase.end("action pass, entries written");
    let (_, len) = writer.encode(&header(), cipher, dir)?;
    black_box(len);
    phase.end(&format!("manifest encoded ({:.1} MiB)", len as f64 / f64::from(1 << 20)));
    Ok(writer.len())
}

/// Prints the CPU time of each phase when `S32S3_BENCH_PHASES` is set.
struct Phases(Option<f64>);

impl Phases {
    fn new() -> Self {
        Self(std::env::var_os("S32S3_BENCH_PHASES").and_then(|_| cpu_seconds()))
    }

    fn end(&mut self, name: &str) {
        if let (Some(start), Some(now)) = (self.0, cpu_seconds()) {
            println!("  {name}: {:.2} s CPU", now - start);
            self.0 = Some(now);
        }
    }
}

fn read(cipher: &Cipher, manifest: &std::fs::File) -> Result<u64> {
    let mut count = 0;
    for entry in ManifestReader::open("manifest", rewound(manifest), cipher)? {
        black_box(entry?);
        count += 1;
    }
    Ok(count)
}

/// Resets the process's peak RSS to its current RSS (Linux: `/proc/self/clear_refs`).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A field of `/proc/self/status` in MiB.
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU time (user + system) the process has used, from `/proc/self/stat` (clock ticks of 1/100 s).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces): utime is the 12th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Runs `work` once more outside criterion's loop and prints its rate, CPU time and peak memory.
fn report(name: &str, work: impl FnOnce() -> u64) {
    let before = status_mib("VmRSS:").unwrap_or(0.0);
    let reset = reset_peak();
    let (cpu, wall) = (cpu_seconds().unwrap_or(0.0), Instant::now());
    let objects = work();
    let (cpu, wall) = (cpu_seconds().unwrap_or(0.0) - cpu, wall.elapsed().as_secs_f64());
    let rate = objects as f64 / wall;
    println!("{name}: {objects} objects in {wall:.2} s wall, {cpu:.2} s CPU = {rate:.0} objects/s");
    match (reset, status_mib("VmHWM:")) {
        (true, Some(peak)) => {
            println!(
                "{name}: peak RSS {peak:.1} MiB, {:.1} MiB above the {before:.1} MiB held before",
                peak - before
            );
        }
        _ => println!("{name}: peak RSS not available here"),
    }
}

fn per_object(c: &mut Criterion) {
    let cipher = cipher();
    let dir = tempfile::tempdir().unwrap();
    let previous = previous_manifest(&cipher, dir.path());

    let mut group = c.benchmark_group("per-object");
    group.throughput(Throughput::Elements(OBJECTS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("plan+write/1e6", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                assert_eq!(plan_and_write(&cipher, &previous, dir.path()).unwrap(), OBJECTS);
            }
            start.elapsed()
        });
    });
    group.bench_function("read/1e6", |b| {
        b.iter(|| assert_eq!(read(&cipher, &previous).unwrap(), OBJECTS));
    });
    group.finish();

    report("plan+write", || plan_and_write(&cipher, &previous, dir.path()).unwrap());
    report("read", || read(&cipher, &previous).unwrap());
}

criterion_group!(benches, per_object);
criterion_main!(benches);
