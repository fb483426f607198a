//! The MinIO suite, admin client part: `s32s3-minio-admin` against real `RustFS` 1.0.1 servers (a
//! MinIO-compatible server with MinIO's admin API), one call family at a time. Run by `scripts/test-minio`
//! (`cargo test … -- --ignored`); the main suite lists these tests as ignored because it does not require
//! `RustFS`. A server that cannot be started fails the test with the command that gets `RustFS`.

use std::time::Duration;

use s32s3_core::testkit::{self, RustFsOptions, ServerKind, TestServer};
use s32s3_minio_admin::archive::build_zip;
use s32s3_minio_admin::{
    AdminClient, AdminOptions, BucketMetadataExport, BucketQuota, ConfigText, Error, IamExport, IamImport,
    NewServiceAccount, Probe,
};

fn admin(server: &TestServer) -> AdminClient {
    let e = server.endpoint();
    admin_as(server, &e.access_key_id, e.secret_access_key.expose())
}

fn admin_as(server: &TestServer, access_key: &str, secret_key: &str) -> AdminClient {
    AdminClient::new(&server.endpoint().endpoint, access_key, secret_key, AdminOptions::default()).unwrap()
}

fn data(path: &str) -> Vec<u8> {
    let file = testkit::repo_root().join("s32s3-minio-admin/tests/data").join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// A user whose only policy allows `actions` (admin actions take no resource, S3 ones must have one).
async fn user_with(root: &AdminClient, user: &str, secret: &str, actions: &[&str]) {
    let policy = format!("only-{user}");
    let mut statement = serde_json::json!({"Effect": "Allow", "Action": actions});
    if actions.iter().any(|a| a.starts_with("s3:")) {
        statement["Resource"] = serde_json::json!(["arn:aws:s3:::*"]);
    }
    root.add_canned_policy(&policy, &serde_json::json!({"Version": "2012-10-17", "Statement": [statement]}))
        .await
        .unwrap();
    root.add_user(user, secret, true).await.unwrap();
    root.set_policy(&policy, user, false).await.unwrap();
}

#[tokio::test]
#[ignore = "MinIO suite: run by scripts/test-minio (needs RustFS)"]
async fn probe_reads_rustfs_and_tells_plain_s3_apart() {
    let server = testkit::rustfs();
    let Probe::Admin(info) = admin(server).probe().await.unwrap() else { panic!("RustFS is administrable") };
    assert!(!info.deployment_id.is_empty(), "{info:?}");
    assert_eq!(info.version(), Some("@1.0.1"), "{info:?}");
    assert_eq!(admin(server).server_info().await.unwrap().deployment_id, info.deployment_id);

    // SeaweedFS answers GET /minio/admin/v3/info (and /minio/health/live) as S3 requests for a bucket
    // `minio`: plain S3, with or without admin-looking errors.
    for plain in [testkit::seaweedfs(), testkit::moto()] {
        match admin(plain).probe().await.unwrap() {
            Probe::NotMinio(reason) => assert!(reason.contains("NoSuchBucket"), "{reason}"),
            other => panic!("{:?}: {other:?}", plain.kind()),
        }
    }
}

#[tokio::test]
#[ignore = "MinIO suite: run by scripts/test-minio (needs RustFS)"]
async fn a_key_without_an_admin_permission_is_told_which_one() {
    let server = TestServer::start(ServerKind::RustFs);
    let root = admin(&server);
    user_with(&root, "s3only", "s3only-secret-123", &["s3:*"]).await;
    user_with(&root, "infoonly", "infoonly-secret-123", &["admin:ServerInfo"]).await;

    // RustFS answers AccessDenied in XML, as a plain S3 server refusing a bucket `minio` would: its health
    // endpoint tells the two apart.
    match admin_as(&server, "s3only", "s3only-secret-123").probe().await.unwrap() {
        Probe::NotAdmin(reason) => {
            assert!(reason.contains("lacks the permission admin:ServerInfo"), "{reason}");
            assert!(!reason.contains('\n'), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let info_only = admin_as(&server, "infoonly", "infoonly-secret-123");
    assert!(matches!(info_only.probe().await.unwrap(), Probe::Admin(_)));
    for (err, permission) in [
        (info_only.export_iam().await.unwrap_err(), "admin:ExportIAM"),
        (info_only.export_bucket_metadata(None).await.map(drop).unwrap_err(), "admin:ExportBucketMetadata"),
        (info_only.get_config().await.map(drop).unwrap_err(), "admin:ConfigUpdate"),
        (info_only.list_users().await.map(drop).unwrap_err(), "admin:ListUsers"),
    ] {
        assert!(matches!(&err, Error::NotAdmin { permission: p, .. } if *p == permission), "{err:?}");
        assert!(err.to_string().contains(&format!("lacks the permission {permission}")), "{err}");
    }
}

#[tokio::test]
#[ignore = "MinIO suite: run by scripts/test-minio (needs RustFS)"]
async fn a_wrong_secret_is_one_line_without_the_secret() {
    let server = testkit::rustfs();
    let wrong = admin_as(server, &server.endpoint().access_key_id, "not-the-secret-Xy7");
    let err = wrong.probe().await.unwrap_err();
    assert!(matches!(&err, Error::BadCredentials { code, .. } if code == "SignatureDoesNotMatch"), "{err:?}");
    let line = err.to_string();
    assert!(!line.contains('\n') && !line.contains("not-the-secret-Xy7"), "{line}");
    assert!(line.contains("the credentials are not valid"), "{line}");
    let stranger = admin_as(server, "nobody-here", "whatever-secret");
    assert!(matches!(stranger.export_iam().await, Err(Error::BadCredentials { .. })));
}

#[tokio::test]
#[ignore = "MinIO suite: run by scripts/test-minio (needs RustFS)"]
async fn iam_export_import_and_what_import_answers() {
    let source = TestServer::start(ServerKind::RustFs);
    let root = admin(&source);
    root.add_canned_policy(
        "p-read",
        &serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/*"]}]}),
    )
    .await
    .unwrap();
    root.add_user("alice", "alice-secret-123", true).await.unwrap();
    root.add_group_members("ops", &["alice"]).await.unwrap();
    root.set_group_status("ops", false).await.unwrap();
    root.set_policy("p-read", "alice", false).await.unwrap();
    root.add_service_account(&NewServiceAccount::new("alice", "svc-alice", "svc-alice-secret-1"))
        .await
        .unwrap();
    root.set_service_account_status("svc-alice", false).await.unwrap();
    let export = root.export_iam().await.unwrap();
    let disabled = export.disabled().unwrap();
    assert_eq!((disabled.groups, disabled.service_accounts), (vec!["ops".into()], vec!["svc-alice".into()]));

    let target = TestServer::start(ServerKind::RustFs);
    let imported = admin(&target).import_iam(&export).await.unwrap();
    // RustFS serves import-iam-v2 and answers MinIO's ImportIAMResult.
    let IamImport::V2(result) = imported else { panic!("{imported:?}") };
    assert!(result.added.users.contains(&"alice".to_owned()), "{result:?}");
    assert!(result.failed.is_empty(), "{result:?}");
    let users = admin(&target).list_users().await.unwrap();
    assert_eq!(users["alice"].policies(), ["p-read"]);
    assert_eq!(users["alice"].member_of, ["ops"]);
    assert!(!admin(&target).group_info("ops").await.unwrap().is_enabled());
    let accounts = admin(&target).list_service_accounts("alice").await.unwrap();
    assert_eq!(accounts[0].account_status, "off", "{accounts:?}");
    // The recorded answer of the same call is the shape the crate's unit tests read.
    let recorded: s32s3_minio_admin::ImportIamResult =
        serde_json::from_slice(&data("rustfs-1.0.1/import-iam-v2.json")).unwrap();
    assert!(recorded.failed.is_empty());
}

#[tokio::test]
#[ignore = "MinIO suite: run by scripts/test-minio (needs RustFS)"]
async fn bucket_metadata_import_answers_nothing_and_quotas_travel_in_madmins_shape() {
    let source = TestServer::start(ServerKind::RustFs);
    for bucket in ["photos", "empty"] {
        source.client().create_bucket().bucket(bucket).send().await.unwrap();
    }
    let root = admin(&source);
    root.set_bucket_quota("photos", &BucketQuota::hard(5_000_000).to_request()).await.unwrap();
    let export = root.export_bucket_metadata(None).await.unwrap();
    let file = export.file("photos", "quota.json").unwrap().expect("the export has the quota");
    // RustFS exports its own record, not madmin's BucketQuota.
    assert!(
        String::from_utf8_lossy(&file).contains("reservation_quota"),
        "{}",
        String::from_utf8_lossy(&file)
    );
    assert_eq!(BucketQuota::from_json(&file).unwrap(), Some(BucketQuota::hard(5_000_000)));

    let target = TestServer::start(ServerKind::RustFs);
    target.client().create_bucket().bucket("photos").send().await.unwrap();
    // Given RustFS's own record, set-bucket-quota sets no quota at all; given madmin's shape, the quota.
    admin(&target).set_bucket_quota("photos", &file).await.unwrap();
    let got = admin(&target).get_bucket_quota("photos").await.unwrap();
    assert_eq!(BucketQuota::from_json(&got).unwrap(), None, "{}", String::from_utf8_lossy(&got));
    let quota = BucketQuota::from_json(&file).unwrap().unwrap();
    admin(&target).set_bucket_quota("photos", &quota.to_request()).await.unwrap();
    let got = admin(&target).get_bucket_quota("photos").await.unwrap();
    assert_eq!(BucketQuota::from_json(&got).unwrap(), Some(quota));

    // import-bucket-metadata answers 200 with an empty body: an empty report, not an error.
    let only =
        BucketMetadataExport::from_bytes(export.as_bytes().to_vec()).unwrap().only_bucket("photos").unwrap();
    let report = admin(&target).import_bucket_metadata(&only).await.unwrap();
    assert!(report.buckets.is_empty() && report.failures().is_empty(), "{report:?}");
}

#[tokio::test]
#[ignore = "MinIO suite: run by scripts/test-minio (needs RustFS)"]
async fn a_minio_configuration_is_set_without_what_rustfs_refuses() {
    let server = TestServer::start(ServerKind::RustFs);
    let root = admin(&server);
    let own = root.get_config().await.unwrap();
    // Its own configuration goes back whole.
    let done = root.set_config_known(&own).await.unwrap();
    assert!(done.applied && done.refused.is_empty(), "{done:?}");

    let minio = ConfigText::new(String::from_utf8(data("minio-shapes/config.txt")).unwrap());
    let done = root.set_config_known(&minio).await.unwrap();
    assert!(done.applied, "{done:?}");
    let refused: Vec<String> = done.refused.iter().map(ToString::to_string).collect();
    for subsystem in ["site", "api", "compression", "subnet", "callhome", "browser", "ilm"] {
        assert!(
            done.refused.iter().any(|r| r.subsystem == subsystem && r.key.is_none()),
            "{subsystem} refused by name: {refused:#?}"
        );
    }
    assert!(
        done.refused.iter().any(|r| r.subsystem == "heal" && r.key.as_deref() == Some("bitrot")),
        "{refused:#?}"
    );
    assert!(refused.iter().all(|r| !r.contains("webhook-token-s3cr3t")), "{refused:#?}");
    // Keys RustFS refuses go alone; the rest of their subsystem is set.
    assert!(!done.refused.iter().any(|r| r.subsystem == "scanner" && r.key.is_none()), "{refused:#?}");
    assert!(
        done.refused.iter().any(|r| r.subsystem == "scanner" && r.key.as_deref() == Some("cycle")),
        "{refused:#?}"
    );
    let now = root.get_config().await.unwrap();
    let scanner = now.as_str().lines().find(|l| l.starts_with("scanner ")).expect("scanner is set");
    assert!(scanner.contains("speed=") && !scanner.contains("cycle=\"1m\""), "{scanner}");
    let webhook =
        now.as_str().lines().find(|l| l.starts_with("notify_webhook:audit1")).expect("the target is set");
    assert!(webhook.contains("webhook-token-s3cr3t") && webhook.contains("hook.example:8080"), "{webhook}");

    // RustFS's history uses its own field names, and redacts.
    let history = root.config_history(10).await.unwrap();
    assert!(
        !history.is_empty() && history.iter().all(|h| !h.restore_id.is_empty() && h.create_time.is_some())
    );
    assert!(history.iter().all(|h| h.data_redacted), "{history:?}");
}

#[tokio::test]
#[ignore = "MinIO suite: run by scripts/test-minio (needs RustFS)"]
async fn restart_exits_rustfs_and_waiting_is_bounded() {
    // With a process manager (the test script plays one), RustFS comes back.
    let supervised = TestServer::start(ServerKind::RustFs);
    let answer = admin(&supervised).service_restart().await.unwrap();
    assert!(answer.message.contains("process manager is responsible for relaunch"), "{answer:?}");
    let info = admin(&supervised).wait_for_restart(Duration::from_mins(1)).await.unwrap();
    assert!(!info.deployment_id.is_empty());

    // Without one, it stays down, and the wait ends when it said it would.
    let alone = TestServer::start_rustfs(&RustFsOptions::default().with_no_relaunch(true));
    admin(&alone).service_restart().await.unwrap();
    let err = admin(&alone).wait_for_restart(Duration::from_secs(6)).await.unwrap_err();
    assert!(matches!(err, Error::NotBack { .. }), "{err:?}");
    let line = err.to_string();
    assert!(
        line.contains("has not answered for 6s since it was told to restart") && !line.contains('\n'),
        "{line}"
    );
}

#[test]
fn recorded_rustfs_payloads_read() {
    // What a live RustFS 1.0.1 sent (tests/data/rustfs-1.0.1, see its README), read by the public API.
    let info = s32s3_minio_admin::ServerInfo::from_answer(&data("rustfs-1.0.1/info.json")).unwrap().unwrap();
    assert_eq!(info.version(), Some("@1.0.1"));
    let history: Vec<s32s3_minio_admin::ConfigHistoryEntry> =
        serde_json::from_slice(&data("rustfs-1.0.1/list-config-history-kv.json")).unwrap();
    assert!(history[0].data_redacted && !history[0].restore_id.is_empty());
    let iam = IamExport::from_bytes(data("rustfs-1.0.1/export-iam.zip")).unwrap();
    assert_eq!(iam.disabled().unwrap().groups, ["ops"]);
    let buckets = BucketMetadataExport::from_bytes(data("rustfs-1.0.1/export-bucket-metadata.zip")).unwrap();
    let quota = buckets.file("photos", "quota.json").unwrap().unwrap();
    assert_eq!(BucketQuota::from_json(&quota).unwrap(), Some(BucketQuota::hard(5_000_000)));
    let restart: s32s3_minio_admin::ServiceActionResult =
        serde_json::from_slice(&data("rustfs-1.0.1/service-restart.json")).unwrap();
    assert!(restart.message.contains("relaunch"));
    // The MinIO shapes the migration test restores from are valid exports.
    let minio_iam = minio_iam_zip();
    assert_eq!(
        IamExport::from_bytes(minio_iam).unwrap().disabled().unwrap().service_accounts,
        ["svc-alice-off"]
    );
}

fn minio_iam_zip() -> Vec<u8> {
    let files =
        ["policies", "users", "groups", "svcaccts", "user_mappings", "group_mappings", "stsuser_mappings"]
            .map(|name| {
                (format!("iam-assets/{name}.json"), data(&format!("minio-shapes/iam-assets/{name}.json")))
            });
    build_zip(files.iter().map(|(n, c)| (n.as_str(), c.as_slice()))).unwrap()
}
