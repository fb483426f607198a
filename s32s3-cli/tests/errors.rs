//! Every bad input gets one clear line on stderr, the right exit code, and nothing is written.

mod common;

use common::{Env, create_bucket, put, rt};
use s32s3_core::testkit;

struct Outcome {
    code: Option<i32>,
    stderr: String,
}

fn run(cmd: &mut std::process::Command) -> Outcome {
    let out = cmd.output().unwrap();
    Outcome { code: out.status.code(), stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

/// Exactly one line, starting `s32s3: error:` and containing every `needle`.
fn assert_one_line(outcome: &Outcome, code: i32, needles: &[&str]) {
    assert_eq!(outcome.code, Some(code), "stderr: {}", outcome.stderr);
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{}", outcome.stderr);
    assert!(lines[0].starts_with("s32s3: error: "), "{}", lines[0]);
    for needle in needles {
        assert!(lines[0].contains(needle), "{needle:?} not in {:?}", lines[0]);
    }
}

fn bucket_exists(server: &testkit::TestServer, bucket: &str) -> bool {
    rt().block_on(async { server.client().head_bucket().bucket(bucket).send().await.is_ok() })
}

fn source_with_one_object(env: &Env, name: &str) -> String {
    let bucket = env.source.unique_bucket(name);
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        put(env.source, &bucket, "k", b"v".to_vec()).await;
    });
    bucket
}

#[test]
fn wrong_password_is_reported_before_anything_is_written() {
    let env = Env::new(testkit::seaweedfs(), testkit::seaweedfs(), "wrongpw");
    let bucket = source_with_one_object(&env, "wrongpw-src");
    env.backup(&[&bucket], 0);
    let before = env.backup_versions();

    let outcome = run(env
        .s32s3()
        .env("S32S3_CRYPT_PASSWORD", "not the password")
        .args(["backup", "--bucket", &bucket]));
    assert_one_line(&outcome, 1, &["wrong password", ".s32s3/config.json"]);
    assert_eq!(env.backup_versions(), before, "a wrong password must not write anything");

    // The salt password is part of the key too.
    let outcome =
        run(env.s32s3().env("S32S3_CRYPT_PASSWORD2", "other salt").args(["backup", "--bucket", &bucket]));
    assert_one_line(&outcome, 1, &["wrong password"]);
    assert_eq!(env.backup_versions(), before);
}

#[test]
fn bad_source_credentials() {
    let env = Env::new(testkit::seaweedfs(), testkit::seaweedfs(), "badcreds");
    let bucket = source_with_one_object(&env, "badcreds-src");
    let outcome = run(env
        .s32s3()
        .env("S32S3_SOURCE_SECRET_ACCESS_KEY", "wrong-secret")
        .args(["backup", "--bucket", &bucket]));
    assert_one_line(&outcome, 1, &["source", "bad credentials"]);
    assert!(!outcome.stderr.contains("wrong-secret"), "the secret leaked: {}", outcome.stderr);
    assert!(!bucket_exists(env.dest, &env.backup_bucket), "nothing may be written");
}

#[test]
fn bad_destination_credentials() {
    let env = Env::new(testkit::seaweedfs(), testkit::seaweedfs(), "baddest");
    let bucket = source_with_one_object(&env, "baddest-src");
    let outcome = run(env
        .s32s3()
        .env("S32S3_DESTINATION_ACCESS_KEY_ID", "nobody")
        .args(["backup", "--bucket", &bucket]));
    assert_one_line(&outcome, 1, &["destination", "bad credentials"]);
    assert!(!bucket_exists(env.dest, &env.backup_bucket));
}

#[test]
fn unreachable_endpoint() {
    let env = Env::new(testkit::moto(), testkit::moto(), "unreach");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let outcome = run(env
        .s32s3()
        .env("S32S3_SOURCE_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("S32S3_RETRIES", "2")
        .args(["backup"]));
    assert_one_line(&outcome, 1, &["source", "unreachable", &format!("127.0.0.1:{port}")]);
    assert!(!bucket_exists(env.dest, &env.backup_bucket));
}

#[test]
fn missing_source_bucket() {
    let env = Env::new(testkit::moto(), testkit::moto(), "nobucket");
    let outcome = run(env.s32s3().args(["backup", "--bucket", "no-such-bucket-anywhere"]));
    assert_one_line(&outcome, 2, &["bucket", "no-such-bucket-anywhere"]);
    assert!(!bucket_exists(env.dest, &env.backup_bucket));
}

#[test]
fn malformed_config_file() {
    let env = Env::new(testkit::moto(), testkit::moto(), "badconf");
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("syntax.toml", "backup_bucket = \"x\"\ntransfers = \n", vec!["syntax.toml", "line 2"]),
        (
            "type.toml",
            "backup_bucket = \"x\"\ntransfers = \"many\"\n",
            vec!["type.toml", "line 2", "invalid type"],
        ),
        ("unknown.toml", "[source]\nendpint = \"http://x\"\n", vec!["unknown.toml", "endpint"]),
        ("range.toml", "expiration_days = 0\n", vec!["expiration_days", "at least 1"]),
        ("url.toml", "[backup]\n", vec!["url.toml", "backup"]),
        ("size.toml", "part_size = \"huge\"\n", vec!["part_size", "huge"]),
    ];
    for (name, text, needles) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let outcome = run(env.s32s3().arg("backup").arg("--config").arg(&path));
        assert_one_line(&outcome, 2, &needles);
    }
    // A file value the environment does not override.
    let path = dir.path().join("endpoint.toml");
    std::fs::write(&path, "[destination]\nendpoint = \"localhost:9000\"\n").unwrap();
    let outcome =
        run(env.s32s3().env_remove("S32S3_DESTINATION_ENDPOINT").arg("backup").arg("--config").arg(&path));
    assert_one_line(&outcome, 2, &["destination.endpoint", "not an http"]);
    assert!(!bucket_exists(env.dest, &env.backup_bucket));
}

#[test]
fn missing_password_and_bad_options_are_usage_errors() {
    let env = Env::new(testkit::moto(), testkit::moto(), "usage");
    let outcome = run(env.s32s3().env_remove("S32S3_CRYPT_PASSWORD").arg("backup"));
    assert_one_line(&outcome, 2, &["crypt.password", "not set"]);
    let outcome = run(env.s32s3().env("S32S3_TRANSFERS", "0").arg("backup"));
    assert_one_line(&outcome, 2, &["transfers"]);
    let outcome = run(env.s32s3().env("S32S3_BACKUP_BUCKET", "Bad_Bucket").arg("backup"));
    assert_one_line(&outcome, 2, &["backup_bucket", "Bad_Bucket"]);
}

#[test]
fn config_check_masks_secrets_and_names_every_bad_field() {
    let env = Env::new(testkit::moto(), testkit::moto(), "check");
    let out = env.s32s3().args(["config", "check"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let secret = env.source.endpoint().secret_access_key.expose().to_owned();
    for hidden in [secret.as_str(), common::PASSWORD, common::PASSWORD2] {
        assert!(!stdout.contains(hidden), "a secret was printed: {stdout}");
    }
    assert!(stdout.contains("crypt.password = ******"), "{stdout}");
    assert!(stdout.contains(&format!("backup_bucket = {}", env.backup_bucket)), "{stdout}");

    let out = env
        .s32s3()
        .env("S32S3_TRANSFERS", "0")
        .env_remove("S32S3_SOURCE_ENDPOINT")
        .env("S32S3_EXPIRATION_DAYS", "0")
        .args(["config", "check"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    for field in ["source.endpoint", "transfers", "expiration_days"] {
        assert!(stderr.contains(field), "{field} not reported: {stderr}");
    }
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&secret));
}

#[test]
fn malformed_daemon_settings_are_one_line_naming_the_setting() {
    let env = Env::new(testkit::moto(), testkit::moto(), "daemonconf");
    let cases: [(&str, &str, &[&str]); 5] = [
        ("S32S3_SCHEDULE", "* * *", &["schedule", "5 (minute hour day month weekday)"]),
        ("S32S3_VERIFY_SCHEDULE", "every day", &["verify_schedule", "\"every day\""]),
        ("S32S3_VERIFY_SCHEDULE", "61 * * * *", &["verify_schedule", "not a valid cron schedule"]),
        ("S32S3_VERIFY_READ_DATA_SUBSET", "lots", &["verify_read_data_subset", "\"lots\" is not a number"]),
        ("S32S3_VERIFY_READ_DATA_SUBSET", "150", &["verify_read_data_subset", "not a percentage"]),
    ];
    for (var, value, needles) in cases {
        // An address nothing can listen on: a setting let through would fail here, not serve forever.
        let mut cmd = env.s32s3();
        cmd.env("S32S3_SCHEDULE", "0 2 * * *").env(var, value).args(["daemon", "--listen", "nowhere"]);
        assert_one_line(&run(&mut cmd), 2, needles);
    }
    let mut flag = env.s32s3();
    flag.env("S32S3_SCHEDULE", "0 2 * * *").args([
        "daemon",
        "--listen",
        "nowhere",
        "--verify-schedule",
        "@often",
    ]);
    assert_one_line(&run(&mut flag), 2, &["verify_schedule", "@often"]);
}
