//! `object_lock` through the CLI (issue 14), against moto's server (it enforces Object Lock): in compliance
//! mode every data version the backup writes is retained in that mode past its window and cannot be deleted
//! with the destination's own credential; an existing bucket without Object Lock is refused in one line
//! before anything is written.

mod common;

use common::{Env, create_bucket, pattern, put_many, rt};
use s32s3_core::testkit;

#[test]
fn compliance_mode_through_the_cli() {
    let env = Env::new(testkit::seaweedfs(), testkit::moto(), "cli-lock");
    let bucket = env.source.unique_bucket("cl-src");
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        put_many(env.source, &bucket, (0..3).map(|i| (format!("o{i}"), pattern(1000, i))).collect()).await;
    });
    let mut cmd = env.s32s3();
    cmd.args(["backup", "--json", "--bucket", &bucket])
        .env("S32S3_OBJECT_LOCK", "compliance")
        .env("S32S3_EXPIRATION_DAYS", "10");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let s3 = env.dest.client();
    let data: Vec<_> =
        env.backup_versions().into_iter().filter(|(k, _, _)| !k.starts_with(".s32s3/")).collect();
    assert_eq!(data.len(), 3);
    let now = time::OffsetDateTime::now_utc();
    for (key, version, _) in &data {
        let head = rt()
            .block_on(s3.head_object().bucket(&env.backup_bucket).key(key).version_id(version).send())
            .unwrap();
        assert_eq!(
            head.object_lock_mode().map(aws_sdk_s3::types::ObjectLockMode::as_str),
            Some("COMPLIANCE"),
            "{key}"
        );
        let until = head.object_lock_retain_until_date().expect("a retain-until date");
        // A window of 10 days: retained for three windows.
        let days = (until.secs() - now.unix_timestamp()) as f64 / 86_400.0;
        assert!((29.9..30.1).contains(&days), "{key}: retained for {days} days");
        let refused =
            rt().block_on(s3.delete_object().bucket(&env.backup_bucket).key(key).version_id(version).send());
        let err = refused.expect_err("a retained version was deleted");
        assert_eq!(aws_sdk_s3::error::ProvideErrorMetadata::code(&err), Some("AccessDenied"), "{err:?}");
    }

    // A bucket that exists without Object Lock: refused in one line, nothing written.
    let plain = env.dest.unique_bucket("cl-plain");
    rt().block_on(create_bucket(env.dest, &plain));
    let mut cmd = env.s32s3();
    cmd.args(["backup", "--json", "--bucket", &bucket, "--object-lock", "governance"])
        .env("S32S3_BACKUP_BUCKET", &plain);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("has no Object Lock") && stderr.contains(&plain), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    let listed = rt().block_on(s3.list_object_versions().bucket(&plain).send()).unwrap();
    assert!(listed.versions().is_empty() && listed.delete_markers().is_empty(), "nothing written");
}
