//! `s32s3 daemon` against a local SeaweedFS: a scheduled backup completes and shows in `/metrics`;
//! SIGTERM during a run exits cleanly and the next run resumes; a scheduled verify waits for the backup due
//! with it and publishes what it found. `/metrics` is read by a Prometheus text-format parser.

mod common;

use std::io::{Read as _, Write as _};
use std::process::Child;
use std::time::{Duration, Instant};

use common::{Env, Metrics, create_bucket, pattern, put, put_many, rt};
use s32s3_core::testkit;

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// The metrics page, parsed (empty while the daemon does not answer).
fn scrape(port: u16) -> Metrics {
    Metrics::parse(&http_get(port, "/metrics").map(|(_, body)| body).unwrap_or_default())
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
    let before = scrape(port);
    assert_eq!(before.value("s32s3_last_success_timestamp_seconds"), Some(0.0), "{}", before.text);

    // The first run starts at the next minute boundary.
    let mut m = before;
    wait_for("a completed scheduled backup", Duration::from_secs(150), || {
        m = scrape(port);
        m.value("s32s3_last_success_timestamp_seconds").is_some_and(|t| t > 0.0)
    });
    let text = &m.text;
    assert_eq!(m.get("s32s3_last_run_objects", &[("outcome", "new")]), Some(20.0), "{text}");
    assert_eq!(m.get("s32s3_last_run_objects", &[("outcome", "failed")]), Some(0.0), "{text}");
    assert_eq!(m.get("s32s3_runs_total", &[("status", "complete")]), Some(1.0), "{text}");
    assert_eq!(m.value("s32s3_snapshots"), Some(1.0), "{text}");
    assert!(m.value("s32s3_backup_bucket_bytes").is_some_and(|b| b > 20_000.0), "{text}");
    assert_eq!(m.get("s32s3_snapshot_objects", &[("bucket", bucket)]), Some(20.0), "{text}");
    assert!(!text.contains(common::PASSWORD), "metrics leak a secret");
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
        scrape(port).value("s32s3_running") == Some(1.0)
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
    let mut m = Metrics::parse("");
    wait_for("the storage metrics of the restarted daemon", Duration::from_secs(30), || {
        m = scrape(port);
        m.value("s32s3_snapshots").is_some() && m.value("s32s3_newest_snapshot_age_seconds").is_some()
    });
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let text = &m.text;
    assert_eq!(m.value("s32s3_snapshots"), Some(3.0), "{text}");
    let last = m.value("s32s3_last_success_timestamp_seconds").unwrap();
    assert!(last >= before_resume.as_secs_f64() - 1.0, "the resumed run's snapshot: {text}");
    assert_eq!(m.get("s32s3_runs_total", &[("status", "complete")]), None, "{text}");
    // The newest snapshot, read from the location: the resumed run's.
    assert_eq!(m.get("s32s3_snapshot_objects", &[("bucket", bucket)]), Some(52.0), "{text}");
    let age = m.value("s32s3_newest_snapshot_age_seconds").unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let since_resume = now.checked_sub(before_resume).unwrap();
    assert!(age >= 0.0 && age <= since_resume.as_secs_f64() + 1.0, "{age}: {text}");
    // No run of its own: no last status.
    assert_eq!(m.get("s32s3_last_run_status", &[("status", "complete")]), None, "{text}");
}

/// A daemon whose backup and verify fall due at the same minute: the verify waits for the backup, then
/// checks (reading every object) the snapshot it wrote; `/metrics` shows both runs, the newest snapshot per
/// source bucket and the verify's findings. `/healthz` answers, and unknown paths are 404.
#[test]
fn scheduled_verify_waits_for_the_backup_and_publishes_what_it_found() {
    let env = Env::new(testkit::seaweedfs(), testkit::seaweedfs(), "daemon-verify");
    let photos = env.source.unique_bucket("dv-photos");
    let logs = env.source.unique_bucket("dv-logs");
    rt().block_on(async {
        create_bucket(env.source, &photos).await;
        create_bucket(env.source, &logs).await;
        put_many(env.source, &photos, (0..5).map(|i| (format!("p/{i}"), pattern(1000, i))).collect()).await;
        put_many(env.source, &logs, (0..3).map(|i| (format!("l/{i}"), pattern(2000, 10 + i))).collect())
            .await;
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("daemon.log");
    let mut daemon = env
        .s32s3()
        .args(["daemon", "--listen", &format!("127.0.0.1:{port}"), "--bucket", &photos, "--bucket", &logs])
        .args(["--verify-schedule", "* * * * *"])
        .env("S32S3_SCHEDULE", "* * * * *")
        .env("S32S3_VERIFY_READ_DATA_SUBSET", "100")
        .env("S32S3_LOG_LEVEL", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    wait_for("/healthz", Duration::from_secs(30), || {
        http_get(port, "/healthz").is_some_and(|(s, b)| s == 200 && b == "ok\n")
    });
    assert_eq!(http_get(port, "/metrics/more").map(|(s, _)| s), Some(404));
    let mut m = scrape(port);
    assert_eq!(m.get("s32s3_verify_runs_total", &[("status", "clean")]), None, "{}", m.text);
    wait_for("a clean scheduled verify", Duration::from_secs(150), || {
        m = scrape(port);
        m.get("s32s3_verify_runs_total", &[("status", "clean")]).is_some_and(|n| n >= 1.0)
    });
    std::process::Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    let status = daemon.wait().unwrap();
    let logs_text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{logs_text}");

    let text = &m.text;
    // The backup: complete, one-hot.
    for (status, value) in [("complete", 1.0), ("partial", 0.0), ("failed", 0.0)] {
        assert_eq!(m.get("s32s3_last_run_status", &[("status", status)]), Some(value), "{status}: {text}");
    }
    // The newest snapshot, per source bucket, and its age.
    for (bucket, objects, bytes) in [(&photos, 5.0, 5000.0), (&logs, 3.0, 6000.0)] {
        assert_eq!(m.get("s32s3_snapshot_objects", &[("bucket", bucket)]), Some(objects), "{text}");
        assert_eq!(m.get("s32s3_snapshot_bytes", &[("bucket", bucket)]), Some(bytes), "{text}");
    }
    let age = m.value("s32s3_newest_snapshot_age_seconds").unwrap();
    assert!((0.0..150.0).contains(&age), "{age}: {text}");
    // The verify: nothing damaged, every object ok, after the backup it waited for.
    assert_eq!(m.value("s32s3_last_verify_damaged_objects"), Some(0.0), "{text}");
    assert_eq!(m.get("s32s3_last_verify_objects", &[("result", "ok")]), Some(8.0), "{text}");
    assert_eq!(m.get("s32s3_last_verify_objects", &[("result", "damaged")]), Some(0.0), "{text}");
    assert_eq!(m.get("s32s3_last_verify_objects", &[("result", "missing")]), Some(0.0), "{text}");
    let verified = m.value("s32s3_last_verify_timestamp_seconds").unwrap();
    assert!(verified >= m.value("s32s3_last_success_timestamp_seconds").unwrap(), "{text}");
    assert!(!text.contains(common::PASSWORD), "metrics leak a secret");
    // One line for the verify, after the backup's.
    let lines: Vec<&str> = logs_text.lines().collect();
    let backup_done = lines.iter().position(|l| l.contains("status=complete"));
    let verify_done = lines.iter().position(|l| l.contains("verify of snapshot"));
    assert!(backup_done.is_some() && verify_done > backup_done, "{logs_text}");
    let line = lines[verify_done.unwrap()];
    assert!(line.contains("8 objects checked, 8 read, 0 damaged or missing, 0 unreadable"), "{line}");
}
