//! `s32s3 daemon` against a local SeaweedFS: a scheduled backup completes and shows in `/metrics`;
//! SIGTERM during a run exits cleanly and the next run resumes.

mod common;

use std::io::{Read as _, Write as _};
use std::process::Child;
use std::time::{Duration, Instant};

use common::{Env, create_bucket, pattern, put, put_many, rt};
use s32s3_core::testkit;

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn scheduled_backups_metrics_and_graceful_stop() {
    let env = Env::new(testkit::seaweedfs(), testkit::seaweedfs(), "daemon");
    let bucket = env.source.unique_bucket("daemon-src");
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        put_many(env.source, &bucket, (0..20).map(|i| (format!("small/{i}"), pattern(1000, i))).collect())
            .await;
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let daemon = spawn_daemon_every_minute(&env, &bucket, port);
    first_scheduled_backup_shows_in_metrics(port, &bucket);
    sigterm_in_the_middle_of_the_second_run(&env, &bucket, port, daemon);
    let before_resume = resume_the_stopped_run(&env, &bucket);
    restarted_daemon_takes_its_last_success_from_the_snapshots(&env, &bucket, port, before_resume);
}

/// A daemon backing up `bucket` every minute at 1 MiB/s, serving on `port`, its JSON log piped.
fn spawn_daemon_every_minute(env: &Env, bucket: &str, port: u16) -> Child {
    env.s32s3()
        .args(["daemon", "--listen", &format!("127.0.0.1:{port}"), "--bucket", bucket])
        .env("S32S3_SCHEDULE", "* * * * *")
        .env("S32S3_BWLIMIT", "1M")
        .env("S32S3_CHECKPOINT_INTERVAL", "1s")
        .env("S32S3_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// `/healthz` answers, unknown paths are 404, and `/metrics` shows no success until the first scheduled
/// run completes, then its counts, and never a secret or a bucket name.
fn first_scheduled_backup_shows_in_metrics(port: u16, bucket: &str) {
    wait_for("/healthz", Duration::from_secs(30), || {
        http_get(port, "/healthz").is_some_and(|(s, b)| s == 200 && b == "ok\n")
    });
    assert_eq!(http_get(port, "/nope").map(|(s, _)| s), Some(404));
    let (_, before) = http_get(port, "/metrics").unwrap();
    assert_eq!(metric(&before, "s32s3_last_success_timestamp_seconds"), Some(0.0), "{before}");

    // The first run starts at the next minute boundary.
    let mut text = String::new();
    wait_for("a completed scheduled backup", Duration::from_secs(150), || {
        text = http_get(port, "/metrics").map(|(_, b)| b).unwrap_or_default();
        metric(&text, "s32s3_last_success_timestamp_seconds").is_some_and(|t| t > 0.0)
    });
    assert_eq!(metric(&text, "s32s3_last_run_objects{outcome=\"new\"}"), Some(20.0), "{text}");
    assert_eq!(metric(&text, "s32s3_last_run_objects{outcome=\"failed\"}"), Some(0.0), "{text}");
    assert_eq!(metric(&text, "s32s3_runs_total{status=\"complete\"}"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "s32s3_snapshots"), Some(1.0), "{text}");
    assert!(metric(&text, "s32s3_backup_bucket_bytes").is_some_and(|b| b > 20_000.0), "{text}");
    assert!(!text.contains(common::PASSWORD) && !text.contains(bucket), "metrics leak names or secrets");
}

/// SIGTERM in the middle of the next scheduled run: the daemon exits 0 and logs that the run was stopped
/// by the signal.
fn sigterm_in_the_middle_of_the_second_run(env: &Env, bucket: &str, port: u16, mut daemon: Child) {
    // 8 MiB more: at 1 MiB/s the next run takes about 8 s; stop it in the middle.
    rt().block_on(async {
        for i in 0..32 {
            put(env.source, bucket, &format!("large/{i}"), pattern(256 << 10, 100 + i)).await;
        }
    });
    wait_for("the second run to start", Duration::from_secs(90), || {
        http_get(port, "/metrics").is_some_and(|(_, b)| metric(&b, "s32s3_running") == Some(1.0))
    });
    std::thread::sleep(Duration::from_secs(2));
    let status =
        std::process::Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    assert!(status.success());
    let started = Instant::now();
    let code = loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            break status.code();
        }
        assert!(started.elapsed() < Duration::from_mins(1), "the daemon did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut logs = String::new();
    daemon.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("stopped by signal"), "the run was still going: {logs}");
}

/// The stopped run kept what it had done as a partial snapshot; the next run continues from it. Returns
/// the time just before that run.
fn resume_the_stopped_run(env: &Env, bucket: &str) -> Duration {
    let listed = env.s32s3().args(["snapshots", "--json"]).output().unwrap();
    let snapshots: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let stopped = snapshots.as_array().unwrap().last().unwrap().clone();
    assert_eq!(stopped["status"], "partial", "{snapshots}");
    let before_resume = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let resumed = env.backup(&[bucket], 0);
    assert_eq!(resumed["parent"], stopped["id"], "{resumed}");
    assert_eq!(resumed["objects"], 52, "{resumed}");
    assert!(
        resumed["unchanged"]["objects"].as_u64().unwrap() > 20,
        "some large objects were kept: {resumed}"
    );
    before_resume
}

/// A restarted daemon takes its last success from the newest complete snapshot, not "never" (a schedule
/// that does not fire during the test, so no run of its own can set it).
fn restarted_daemon_takes_its_last_success_from_the_snapshots(
    env: &Env,
    bucket: &str,
    port: u16,
    before_resume: Duration,
) {
    let mut daemon = env
        .s32s3()
        .args(["daemon", "--listen", &format!("127.0.0.1:{port}"), "--bucket", bucket])
        .env("S32S3_SCHEDULE", "0 0 1 1 *")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut text = String::new();
    wait_for("the storage metrics of the restarted daemon", Duration::from_secs(30), || {
        text = http_get(port, "/metrics").map(|(_, b)| b).unwrap_or_default();
        metric(&text, "s32s3_snapshots").is_some()
    });
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert_eq!(metric(&text, "s32s3_snapshots"), Some(3.0), "{text}");
    let last = metric(&text, "s32s3_last_success_timestamp_seconds").unwrap();
    assert!(last >= before_resume.as_secs_f64() - 1.0, "the resumed run's snapshot: {text}");
    assert_eq!(metric(&text, "s32s3_runs_total{status=\"complete\"}"), None, "{text}");
}
