//! Sharded runs (issue 14), with the real binary against real servers: three shard processes of one run at
//! once make one complete snapshot holding every object, each object stored once, restored exactly; other
//! runs are locked out while the shards work; a killed shard's rerun completes its run.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{Env, create_bucket, finish, pattern, put_many, rt, spawn};
use s32s3_core::testkit::conformance::contents;
use s32s3_core::testkit::{self, TestServer};

/// `s32s3 backup --json --bucket … --shard I/N --run-id RUN` (and `bwlimit`, to keep a shard at work for a
/// while).
fn shard(env: &Env, buckets: &[&str], spec: &str, run: &str, bwlimit: Option<&str>) -> Command {
    let mut cmd = env.s32s3();
    cmd.args(["backup", "--json", "--shard", spec, "--run-id", run]);
    for b in buckets {
        cmd.args(["--bucket", b]);
    }
    if let Some(limit) = bwlimit {
        cmd.env("S32S3_BWLIMIT", limit);
    }
    cmd
}

fn summary(code: Option<i32>, stdout: &str, stderr: &str) -> serde_json::Value {
    assert_eq!(code, Some(0), "stderr: {stderr}\nstdout: {stdout}");
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {stderr}"))
}

/// The keys under `prefix` in the backup bucket.
fn keys(server: &TestServer, bucket: &str, prefix: &str) -> Vec<String> {
    rt().block_on(async {
        // Nothing yet before the first shard created the bucket.
        let Ok(out) = server.client().list_objects_v2().bucket(bucket).prefix(prefix).send().await else {
            return Vec::new();
        };
        out.contents().iter().map(|o| o.key().unwrap().to_owned()).collect()
    })
}

/// The snapshot manifests (`.snap`) of the backup bucket.
fn snapshots(env: &Env) -> Vec<String> {
    let mut snaps = keys(env.dest, &env.backup_bucket, ".s32s3/snapshots/");
    snaps.retain(|k| std::path::Path::new(k).extension().is_some_and(|e| e == "snap"));
    snaps
}

/// Restores `bucket` into a new bucket and returns what it holds.
fn restored(env: &Env, bucket: &str, name: &str) -> BTreeMap<String, Vec<u8>> {
    let target = env.source.unique_bucket(name);
    let out =
        env.s32s3().args(["restore", "--json", "--bucket", &format!("{bucket}:{target}")]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    rt().block_on(contents(env.source, &target))
}

/// The current data objects of the backup bucket (stored keys).
fn current_data(env: &Env) -> Vec<String> {
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let page = rt()
            .block_on(
                env.dest
                    .client()
                    .list_objects_v2()
                    .bucket(&env.backup_bucket)
                    .set_continuation_token(token)
                    .send(),
            )
            .unwrap();
        all.extend(
            page.contents().iter().map(|o| o.key().unwrap().to_owned()).filter(|k| !k.starts_with(".s32s3/")),
        );
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return all;
        }
    }
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three shards of one run at once: one snapshot, named by the run id, holding every object of one big
/// bucket and a small one, each object copied by exactly one shard (one stored version each) and each
/// shard copying a share of the big bucket; the parts are gone afterwards and the restore is exact. While
/// a shard is at work, a run of another id (sharded or not) is locked out in one line.
#[test]
fn three_shards_make_one_snapshot_and_lock_out_other_runs() {
    let env = Env::new(testkit::seaweedfs(), testkit::seaweedfs(), "shards");
    let big = env.source.unique_bucket("sh-big");
    let small = env.source.unique_bucket("sh-small");
    rt().block_on(async {
        create_bucket(env.source, &big).await;
        create_bucket(env.source, &small).await;
        put_many(
            env.source,
            &big,
            (0..90).map(|i| (format!("d/{i:03}"), pattern(2000 + i as usize, i))).collect(),
        )
        .await;
        put_many(env.source, &small, (0..3).map(|i| (format!("s{i}"), pattern(100, 1000 + i))).collect())
            .await;
    });

    let both = [big.as_str(), small.as_str()];
    let shards: Vec<Child> =
        (0..3).map(|i| spawn(shard(&env, &both, &format!("{i}/3"), "nightly-1", None))).collect();
    let summaries: Vec<serde_json::Value> = shards
        .into_iter()
        .map(|c| {
            let (code, out, err) = finish(c);
            summary(code, &out, &err)
        })
        .collect();
    let copied: Vec<u64> = summaries.iter().map(|s| s["new"]["objects"].as_u64().unwrap()).collect();
    assert_eq!(copied.iter().sum::<u64>(), 93, "every object copied by exactly one shard: {copied:?}");
    assert!(copied.iter().all(|n| *n >= 15), "the big bucket spreads over all shards: {copied:?}");
    let merged: Vec<&serde_json::Value> = summaries.iter().filter(|s| !s["manifest"].is_null()).collect();
    assert_eq!(merged.len(), 1, "exactly one shard writes the snapshot: {summaries:?}");
    assert_eq!(merged[0]["status"], "complete");
    assert_eq!(merged[0]["objects"], 93);

    let snaps = snapshots(&env);
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert!(snaps[0].ends_with("-nightly-1.snap"), "named by the run id: {snaps:?}");
    assert!(keys(env.dest, &env.backup_bucket, ".s32s3/parts/").is_empty(), "the parts are merged and gone");
    let data: Vec<_> =
        env.backup_versions().into_iter().filter(|(k, _, _)| !k.starts_with(".s32s3/")).collect();
    assert_eq!(data.len(), 93, "each object stored once");
    assert!(data.iter().all(|(_, _, marker)| !marker));
    let (header, entries) = env.manifest();
    assert_eq!((header.snapshot_id.as_str(), entries.len()), ("nightly-1", 93));
    let per_bucket: BTreeMap<&str, u64> =
        header.buckets.iter().map(|b| (b.name.as_str(), b.objects)).collect();
    assert_eq!(per_bucket, BTreeMap::from([(big.as_str(), 90), (small.as_str(), 3)]));

    a_second_run_locks_out_other_runs(&env, &big, &small);
}

/// A second sharded run after a third of the big bucket changed: while its first shard works (slowly), runs
/// of another id are refused in one line, sharded or not, and its own second shard joins; the slow shard
/// merges, and the restore is exact.
fn a_second_run_locks_out_other_runs(env: &Env, big: &str, small: &str) {
    let both = [big, small];
    // Another sharded run changes a third of the big bucket; while its first shard works (slowly), runs of
    // another id are refused, sharded or not, and its own second shard joins.
    rt().block_on(async {
        put_many(
            env.source,
            big,
            (0..30).map(|i| (format!("d/{i:03}"), pattern(300_000, 5000 + i))).collect(),
        )
        .await;
    });
    let slow = spawn(shard(env, &both, "0/2", "nightly-2", Some("1M")));
    wait_for("the lease of the sharded run", Duration::from_mins(1), || {
        !keys(env.dest, &env.backup_bucket, ".s32s3/lock").is_empty()
    });
    for other in [shard(env, &both, "1/2", "other-run", None), {
        let mut plain = env.s32s3();
        plain.args(["backup", "--json", "--bucket", big]);
        plain
    }] {
        let (code, _, stderr) = finish(spawn(other));
        assert_eq!(code, Some(1), "another run must be refused: {stderr}");
        assert!(stderr.contains("holds the backup location") && stderr.contains("nightly-2"), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    let (code, out, err) = finish(spawn(shard(env, &both, "1/2", "nightly-2", None)));
    let second = summary(code, &out, &err);
    let (code, out, err) = finish(slow);
    let first = summary(code, &out, &err);
    assert_eq!(
        first["changed"]["objects"].as_u64().unwrap() + second["changed"]["objects"].as_u64().unwrap(),
        30
    );
    assert_eq!(snapshots(env).len(), 2);
    assert!(!first["manifest"].is_null(), "the slow shard finished last and merged: {first}");
    assert_eq!(first["parent"], "nightly-1");
    let want = rt().block_on(contents(env.source, big));
    let back = restored(env, big, "sh-back");
    assert_eq!(back.len(), 90);
    assert!(back == want, "the restore is exact");
}

/// A shard killed in the middle of its copy leaves the run without a snapshot (the other shard's part is
/// written, no snapshot listed); its rerun with the same run id completes the run: one snapshot, every
/// object restored exactly, and the shard's earlier attempt reconciled (nothing it wrote is left unnamed).
#[test]
fn a_killed_shard_rerun_completes_the_run() {
    let env = Env::new(testkit::seaweedfs(), testkit::seaweedfs(), "shard-kill");
    let bucket = env.source.unique_bucket("sk-src");
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        put_many(env.source, &bucket, (0..40).map(|i| (format!("o/{i:02}"), pattern(200_000, i))).collect())
            .await;
    });
    let victim = spawn(shard(&env, &[&bucket], "1/2", "run-k", Some("1M")));
    // Killed once it has written data (its run record comes first).
    wait_for("the shard's first write", Duration::from_mins(1), || {
        keys(env.dest, &env.backup_bucket, ".s32s3/snapshots/").iter().any(|k| k.contains("-run-k-s1"))
    });
    std::thread::sleep(Duration::from_millis(1500));
    let mut victim = victim;
    victim.kill().unwrap();
    victim.wait().unwrap();
    // One object the killed attempt copied leaves the source: recorded nowhere, its stored copy must not stay
    // current (the merge reconciles the location because the shard had an attempt before its part's).
    let stored_now = current_data(&env);
    let gone = rt().block_on(async {
        let cipher =
            s32s3_core::derive_cipher(&common::PASSWORD.into(), &common::PASSWORD2.into()).await.unwrap();
        let layout = s32s3_core::format::layout::Layout::new(&cipher, "").unwrap();
        let victim_shard = s32s3_core::Shard::parse("1/2", "run-k").unwrap();
        (0..40)
            .map(|i| format!("o/{i:02}"))
            .find(|k| {
                victim_shard.owns(&bucket, k)
                    && stored_now.contains(&layout.data_key(&bucket, k).unwrap().key)
            })
            .expect("the killed shard copied something")
    });
    rt().block_on(s32s3_core::testkit::conformance::delete(env.source, &bucket, &gone));

    let (code, out, err) = finish(spawn(shard(&env, &[&bucket], "0/2", "run-k", None)));
    let other = summary(code, &out, &err);
    assert!(other["manifest"].is_null(), "no snapshot while a shard is missing: {other}");
    assert!(err.contains("waiting for shards 1"), "{err}");
    assert!(snapshots(&env).is_empty());
    assert_eq!(keys(env.dest, &env.backup_bucket, ".s32s3/parts/").len(), 1, "shard 0's part");

    let (code, out, err) = finish(spawn(shard(&env, &[&bucket], "1/2", "run-k", None)));
    let rerun = summary(code, &out, &err);
    assert!(!rerun["manifest"].is_null(), "the rerun merges: {rerun}");
    assert_eq!(rerun["status"], "complete");
    assert_eq!(rerun["objects"], 39);
    assert_eq!(snapshots(&env).len(), 1);
    assert!(keys(env.dest, &env.backup_bucket, ".s32s3/parts/").is_empty());
    let want = rt().block_on(contents(env.source, &bucket));
    assert!(restored(&env, &bucket, "sk-back") == want, "the restore is exact");
    // Every current data object is named by the snapshot: nothing the killed attempt wrote is left over.
    let (_, entries) = env.manifest();
    let named: std::collections::BTreeSet<(String, Option<String>)> =
        entries.iter().map(|e| (e.stored_key.clone(), e.version_id.clone())).collect();
    let current = current_data(&env);
    assert_eq!(current.len(), 39, "{current:?}");
    for key in current {
        let head = rt()
            .block_on(env.dest.client().head_object().bucket(&env.backup_bucket).key(&key).send())
            .unwrap();
        let version = head.version_id().map(str::to_owned);
        assert!(
            named.contains(&(key.clone(), version)),
            "{key}: the current version is the one the snapshot names"
        );
    }
    // A shard started again after the run completed has nothing left to do.
    let (code, out, err) = finish(spawn(shard(&env, &[&bucket], "0/2", "run-k", None)));
    let again = summary(code, &out, &err);
    assert_eq!(again["manifest"], rerun["manifest"]);
    assert!(err.contains("complete already"), "{err}");
}

/// A shard giving another shard count than its run's is refused in one line. Once the shards of a run that
/// cannot complete stopped renewing its lease, another run takes the location over, and its snapshot removes
/// the abandoned parts.
#[test]
fn a_wrong_shard_count_is_refused_and_an_abandoned_run_is_cleaned_up() {
    let env = Env::new(testkit::seaweedfs(), testkit::seaweedfs(), "shard-count");
    let bucket = env.source.unique_bucket("sc-src");
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        put_many(env.source, &bucket, (0..6).map(|i| (format!("o{i}"), pattern(100, i))).collect()).await;
    });
    let mut first = shard(&env, &[&bucket], "0/2", "run-c", None);
    first.env("S32S3_LEASE_TTL", "3s");
    let (code, out, err) = finish(spawn(first));
    summary(code, &out, &err);
    assert_eq!(keys(env.dest, &env.backup_bucket, ".s32s3/parts/").len(), 1);

    let (code, _, stderr) = finish(spawn(shard(&env, &[&bucket], "1/3", "run-c", None)));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("run run-c holds it as 2 shards, this process as 3 shards"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    // The lease expires (nobody renews it); an ordinary run takes over, and its snapshot clears the part.
    std::thread::sleep(Duration::from_secs(4));
    let plain = env.backup(&[&bucket], 0);
    assert_eq!(plain["objects"], 6);
    assert!(keys(env.dest, &env.backup_bucket, ".s32s3/parts/").is_empty(), "the abandoned part is gone");
}

/// `source_versions` in a sharded run: refused in one line, before anything is read or written.
#[test]
fn a_sharded_run_refuses_source_versions() {
    let env = Env::new(testkit::seaweedfs(), testkit::seaweedfs(), "shard-hist");
    let mut cmd = shard(&env, &[], "0/2", "run-h", None);
    cmd.env("S32S3_SOURCE_VERSIONS", "true");
    let (code, _, stderr) = finish(spawn(cmd));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("source_versions") && stderr.contains("sharded run"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    let exists = rt().block_on(env.dest.client().head_bucket().bucket(&env.backup_bucket).send()).is_ok();
    assert!(!exists, "nothing written");
}
