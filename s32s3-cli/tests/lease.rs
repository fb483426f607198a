//! The lease on a backup location (issue 11, item 2), with the real binary against real servers: a run in
//! another PID namespace under the same host name (a second container, a sidecar) never takes over a live
//! lease; a renewal whose answer is lost is resolved by reading the lock back; a run stopped past its TTL
//! finds its lease taken over and writes nothing more.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, create_bucket, finish, pattern, put_many, rt, spawn};
use s32s3_core::testkit::proxy::{Fault, FaultProxy, Match, Rule};
use s32s3_core::testkit::{self, TestServer};

/// A source bucket of `count` objects of 256 KiB: at `S32S3_BWLIMIT=1M` a backup of it takes about a
/// quarter of a second per object.
fn fill(env: &Env, name: &str, count: u64) -> String {
    let bucket = env.source.unique_bucket(name);
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        put_many(
            env.source,
            &bucket,
            (0..count).map(|i| (format!("obj/{i:03}"), pattern(256 << 10, i))).collect(),
        )
        .await;
    });
    bucket
}

fn lock_exists(server: &TestServer, bucket: &str) -> bool {
    rt().block_on(async {
        server.client().head_object().bucket(bucket).key(".s32s3/lock").send().await.is_ok()
    })
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `(id, status)` of every snapshot and checkpoint key under `.s32s3/snapshots/`.
fn manifests(server: &TestServer, bucket: &str) -> Vec<String> {
    rt().block_on(async {
        let out = server
            .client()
            .list_objects_v2()
            .bucket(bucket)
            .prefix(".s32s3/snapshots/")
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .map(|o| o.key().unwrap().to_owned())
            .filter(|k| std::path::Path::new(k).extension().is_some_and(|e| e == "snap" || e == "partial"))
            .collect()
    })
}

/// A backup running in another PID namespace (same host name, same boot) sees a live holder it cannot
/// check, not a dead one: it is refused with the one-line "locked" error and writes nothing. (Before,
/// the holder's PID was looked up in the other namespace's `/proc`, found missing, and the live run's
/// lease taken over: two writers.)
#[test]
fn another_pid_namespace_never_takes_over_a_live_lease() {
    let env = Env::new(testkit::seaweedfs(), testkit::moto(), "lease-ns");
    let bucket = fill(&env, "lease-ns-src", 24);
    let mut first = env.s32s3();
    first.args(["backup", "--json", "--bucket", &bucket]).env("S32S3_BWLIMIT", "1M");
    let first = spawn(first);
    wait_for("the first run's lease", Duration::from_mins(1), || lock_exists(env.dest, &env.backup_bucket));

    let other = env.s32s3();
    let program = other.get_program().to_owned();
    let args: Vec<_> =
        ["backup", "--json", "--bucket", &bucket].into_iter().map(std::ffi::OsString::from).collect();
    let envs: Vec<_> = other.get_envs().map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned))).collect();
    let mut unshared = Command::new("unshare");
    // Root makes the namespace itself; otherwise a user namespace maps us to root inside.
    if !nix_is_root() {
        unshared.args(["--user", "--map-root-user"]);
    }
    unshared.args(["--pid", "--fork", "--mount-proc"]).arg(&program).args(&args).env_clear();
    for (k, v) in envs {
        if let Some(v) = v {
            unshared.env(k, v);
        }
    }
    let out = unshared.output().expect("unshare (util-linux) runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the second run must be refused: {stderr}");
    assert!(stderr.contains("holds the backup location"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    let (code, stdout, stderr) = finish(first);
    assert_eq!(code, Some(0), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["status"], "complete");
    assert_eq!(manifests(env.dest, &env.backup_bucket).len(), 1, "exactly the first run's snapshot");
    assert!(!lock_exists(env.dest, &env.backup_bucket), "the lease is released");
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The answer to a lease renewal is lost (the proxy forwards the conditional PUT, the server applies
/// it, the connection is reset): the run reads the lock back, finds its own renewal there and goes on
/// to a complete snapshot; the lock is released at the end.
#[test]
fn a_lost_renewal_answer_is_resolved_by_reading_the_lock_back() {
    let env = Env::new(testkit::seaweedfs(), testkit::seaweedfs(), "lease-lost");
    let bucket = fill(&env, "lease-lost-src", 24);
    let proxy = FaultProxy::start(&env.dest.endpoint());
    proxy.set_rules(vec![
        Rule::new(
            Match::method("PUT").with_path_contains(".s32s3/lock").with_header("if-match"),
            Fault::ResetBeforeResponse,
        )
        .with_limit(1),
    ]);
    let mut cmd = env.s32s3();
    cmd.args(["backup", "--json", "--bucket", &bucket])
        .env("S32S3_DESTINATION_ENDPOINT", &proxy.endpoint().endpoint)
        .env("S32S3_LEASE_TTL", "3s")
        .env("S32S3_BWLIMIT", "1M");
    let (code, stdout, stderr) = finish(spawn(cmd));
    assert_eq!(code, Some(0), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["status"], "complete", "{summary}");
    assert_eq!(proxy.stats().reset_before_response, 1, "the renewal's answer was lost once");
    let renewals =
        proxy.requests().iter().filter(|r| r.method == "PUT" && r.target.contains(".s32s3/lock")).count();
    assert!(renewals >= 3, "the lease was renewed on: {renewals} lock writes");
    assert!(!lock_exists(env.dest, &env.backup_bucket), "the lease is released");
}

/// A run stopped (SIGSTOP) longer than its lease's TTL: another run takes the expired lease over and
/// completes; the stopped run, continued, finds its lease lost, stops with one line and writes no
/// checkpoint and no manifest; the other run's snapshot verifies.
#[test]
fn a_run_stopped_past_its_ttl_writes_nothing_more() {
    let env = Env::new(testkit::seaweedfs(), testkit::moto(), "lease-stop");
    let bucket = fill(&env, "lease-stop-src", 40);
    let mut stopped = env.s32s3();
    stopped
        .args(["backup", "--json", "--bucket", &bucket])
        .env("S32S3_LEASE_TTL", "3s")
        .env("S32S3_CHECKPOINT_INTERVAL", "1s")
        .env("S32S3_BWLIMIT", "1M");
    let stopped = spawn(stopped);
    wait_for("the first run's lease", Duration::from_mins(1), || lock_exists(env.dest, &env.backup_bucket));
    std::thread::sleep(Duration::from_secs(2));
    let before = manifests(env.dest, &env.backup_bucket);
    let signal = |sig: &str| {
        assert!(Command::new("kill").args([sig, &stopped.id().to_string()]).status().unwrap().success());
    };
    signal("-STOP");
    std::thread::sleep(Duration::from_secs(5));

    let mut taker = env.s32s3();
    taker.args(["backup", "--json", "--bucket", &bucket]).env("S32S3_LEASE_TTL", "3s");
    let (code, stdout, stderr) = finish(spawn(taker));
    assert_eq!(code, Some(0), "the expired lease is taken over: {stderr}");
    let taken: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(taken["status"], "complete", "{taken}");
    let after_takeover = manifests(env.dest, &env.backup_bucket);

    signal("-CONT");
    let (code, _, stderr) = finish(stopped);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("lease") && stderr.contains("lost"), "{stderr}");
    assert_eq!(stderr.trim().lines().filter(|l| l.contains("error")).count(), 1, "one error line: {stderr}");
    let at_end = manifests(env.dest, &env.backup_bucket);
    assert_eq!(at_end, after_takeover, "nothing written after the takeover (before it: {before:?})");
    let snaps: Vec<&String> =
        at_end.iter().filter(|k| std::path::Path::new(k).extension().is_some_and(|e| e == "snap")).collect();
    assert_eq!(snaps.len(), 1, "{at_end:?}");
    assert!(snaps[0].contains(taken["snapshot_id"].as_str().unwrap()), "{at_end:?}");

    let verified = env.s32s3().args(["verify", "--read-data", "--json"]).output().unwrap();
    assert_eq!(verified.status.code(), Some(0), "{}", String::from_utf8_lossy(&verified.stdout));
}
