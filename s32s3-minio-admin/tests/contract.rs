//! Contract tests: every admin call and every error kind against a local server that checks each request's
//! signature (with `aws-sigv4` and its own copy of the keys), payload hash, `Content-Length` and encrypted
//! body, and answers with bodies shaped like MinIO's.

mod mock;

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use mock::{
    ALICE_SECRET, CONFIG_SECRET, CONFIG_TEXT, DEPLOYMENT_ID, Flavor, MockMinio, READONLY_ACCESS_KEY,
    READONLY_SECRET_KEY, ROOT_ACCESS_KEY, ROOT_SECRET_KEY, SVC_SECRET, VERSION,
};
use s32s3_minio_admin::sigv4::FixedClock;
use s32s3_minio_admin::{
    AdminClient, AdminOptions, ArchiveKind, BucketMetadataExport, ConfigText, Error, IamImport, IamLayout,
    MAX_CONFIG_LEN, Probe,
};

const SECRETS: [&str; 6] =
    [ROOT_SECRET_KEY, READONLY_SECRET_KEY, ALICE_SECRET, SVC_SECRET, CONFIG_SECRET, "REMOTE-SECRET"];

fn client_for(url: &str, access_key: &str, secret_key: &str) -> AdminClient {
    AdminClient::new(url, access_key, secret_key, AdminOptions::default()).unwrap()
}

fn root(server: &MockMinio) -> AdminClient {
    client_for(&server.url(), ROOT_ACCESS_KEY, ROOT_SECRET_KEY)
}

/// Every request the server saw was signed right, hashed right, and carried a Content-Length.
fn assert_all_verified(server: &MockMinio) {
    let seen = server.seen();
    assert!(!seen.is_empty());
    for s in seen {
        assert!(s.signature_ok, "{} {}: signature did not verify", s.method, s.path);
        assert!(s.content_length.is_some(), "{} {}: no Content-Length", s.method, s.path);
        assert_eq!(s.signed_headers, "host;x-amz-content-sha256;x-amz-date", "{}", s.path);
        assert!(s.credential_scope.ends_with("/us-east-1/s3/aws4_request"), "{}", s.credential_scope);
    }
}

/// Debug, Display and the whole source chain, as a log line with `{:#}` or `{:?}` would show them.
fn everything_shown(e: &Error) -> String {
    let mut shown = format!("{e:?}\n{e}");
    let mut source = e.source();
    while let Some(s) = source {
        shown.push('\n');
        shown.push_str(&s.to_string());
        source = s.source();
    }
    shown
}

fn assert_no_secret(shown: &str) {
    for secret in SECRETS {
        assert!(!shown.contains(secret), "secret {secret:?} shown in: {shown}");
    }
}

#[tokio::test]
async fn server_info_reports_version_and_deployment() {
    let server = MockMinio::start(Flavor::Current).await;
    let info = root(&server).server_info().await.unwrap();
    assert_eq!(info.deployment_id, DEPLOYMENT_ID);
    assert_eq!(info.version(), Some(VERSION));
    assert_eq!(info.mode, "online");
    assert_eq!(info.buckets.count, 2);
    let seen = server.last();
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("GET", "/minio/admin/v3/info"));
    assert_eq!(seen.query.get("metrics").map(String::as_str), Some("false"));
    assert_all_verified(&server);
}

#[tokio::test]
async fn probe_finds_an_administrable_minio() {
    let server = MockMinio::start(Flavor::Current).await;
    match root(&server).probe().await.unwrap() {
        Probe::Admin(info) => assert_eq!(info.deployment_id, DEPLOYMENT_ID),
        other => panic!("{other:?}"),
    }
    // Side-effect free: one read-only GET.
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_all_verified(&server);
}

#[tokio::test]
async fn probe_tells_a_non_admin_user() {
    let server = MockMinio::start(Flavor::Current).await;
    let readonly = client_for(&server.url(), READONLY_ACCESS_KEY, READONLY_SECRET_KEY);
    match readonly.probe().await.unwrap() {
        Probe::NotAdmin(reason) => assert!(reason.contains("AccessDenied"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn probe_tells_a_plain_s3_server() {
    let server = MockMinio::start(Flavor::PlainS3).await;
    match root(&server).probe().await.unwrap() {
        Probe::NotMinio(reason) => assert!(reason.contains("NoSuchBucket"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Any admin call there is "unsupported".
    let err = root(&server).list_users().await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { status: 404, .. }), "{err:?}");
    // With credentials the S3 server does not know, nothing can be learnt: an error, not a verdict.
    let stranger = client_for(&server.url(), "stranger", "whatever-secret");
    assert!(matches!(stranger.probe().await, Err(Error::BadCredentials { .. })));
}

#[tokio::test]
async fn probe_tells_another_admin_api_version() {
    let server = MockMinio::start(Flavor::OtherAdminVersion).await;
    match root(&server).probe().await.unwrap() {
        Probe::NotAdmin(reason) => assert!(reason.contains("426 XMinioAdminVersionMismatch"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_web_page_is_not_minio_and_not_a_valid_answer() {
    let server = MockMinio::start(Flavor::WebPage).await;
    let client = root(&server);
    match client.probe().await.unwrap() {
        Probe::NotMinio(reason) => assert!(reason.contains("without MinIO server info"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let err = client.server_info().await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { api: "info", .. }), "{err:?}");
    assert!(!err.to_string().contains("nginx"), "the body is not echoed: {err}");
    let err = client.list_users().await.unwrap_err();
    assert!(matches!(err, Error::ResponsePayload { .. }), "an unencrypted answer is refused: {err:?}");
    let err = client.export_iam().await.unwrap_err();
    assert!(matches!(err, Error::InvalidArchive { kind: ArchiveKind::Iam, .. }), "{err:?}");
}

#[tokio::test]
async fn config_is_read_decrypted_and_written_encrypted() {
    let server = MockMinio::start(Flavor::Current).await;
    let client = root(&server);
    let config = client.get_config().await.unwrap();
    assert_eq!(config.as_str(), CONFIG_TEXT);
    assert_no_secret(&format!("{config:?}"));

    let new_text = format!("{CONFIG_TEXT}scanner speed=slow\n");
    client.set_config(&ConfigText::new(new_text.clone())).await.unwrap();
    let put = server.last();
    assert_eq!((put.method.as_str(), put.path.as_str()), ("PUT", "/minio/admin/v3/config"));
    assert_eq!(put.body[32], 0x00, "madmin's Argon2id + AES-GCM id");
    assert_eq!(put.decrypted.as_deref(), Some(new_text.as_bytes()), "the server decrypts what was sent");
    assert_eq!(server.config(), new_text);
    assert_all_verified(&server);
}

#[tokio::test]
async fn oversized_config_is_refused_before_sending() {
    let server = MockMinio::start(Flavor::Current).await;
    let big = ConfigText::new("a".repeat(MAX_CONFIG_LEN + 1));
    let err = root(&server).set_config(&big).await.unwrap_err();
    assert!(matches!(err, Error::ConfigTooLarge { .. }), "{err:?}");
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn config_history_lists_and_restores() {
    let server = MockMinio::start(Flavor::Current).await;
    let client = root(&server);
    let history = client.config_history(10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].restore_id, "8d1c7f0e-6d5b-4a5e-9a3b-2f1e0d9c8b7a");
    assert!(history[0].data.as_str().contains("notify_webhook"));
    assert!(history[0].create_time.is_some());
    assert_no_secret(&format!("{history:?}"));
    assert_eq!(server.last().query.get("count").map(String::as_str), Some("10"));

    client.restore_config_history(&history[0].restore_id).await.unwrap();
    assert_eq!(server.last().query.get("restoreId"), Some(&history[0].restore_id));
    let err = client.restore_config_history("no-such-id").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_all_verified(&server);
}

#[tokio::test]
async fn iam_export_is_validated_and_never_shown() {
    let server = MockMinio::start(Flavor::Current).await;
    let export = root(&server).export_iam().await.unwrap();
    assert_eq!(export.layout(), IamLayout::Current);
    assert_eq!(export.entries().len(), 7);
    assert_eq!(export.as_bytes(), mock::iam_zip().as_slice());
    assert_no_secret(&format!("{export:?}"));
    assert_all_verified(&server);
}

#[tokio::test]
async fn truncated_iam_export_is_an_error() {
    let server = MockMinio::start(Flavor::TruncatedExport).await;
    let err = root(&server).export_iam().await.unwrap_err();
    assert!(matches!(err, Error::InvalidArchive { kind: ArchiveKind::Iam, .. }), "{err:?}");
    assert_no_secret(&everything_shown(&err));
}

#[tokio::test]
async fn iam_import_v2_returns_its_result() {
    let server = MockMinio::start(Flavor::Current).await;
    let client = root(&server);
    let export = client.export_iam().await.unwrap();
    let imported = client.import_iam(&export).await.unwrap();
    let result = imported.result().expect("v2 gives a result");
    assert_eq!(result.added.users, ["alice"]);
    assert_eq!(result.added.user_policies[0]["alice"], ["readwrite", "diagnostics"]);
    assert_eq!(result.failed.service_accounts[0].name, "SVC2");
    let put = server.last();
    assert_eq!((put.method.as_str(), put.path.as_str()), ("PUT", "/minio/admin/v3/import-iam-v2"));
    assert_eq!(&put.body[..], export.as_bytes(), "the zip goes as is, not encrypted");
    assert_all_verified(&server);
}

#[tokio::test]
async fn iam_import_falls_back_to_v1_on_an_older_server() {
    let server = MockMinio::start(Flavor::BeforeImportIamV2).await;
    let client = root(&server);
    let export = client.export_iam().await.unwrap();

    let err = client.import_iam_v2(&export).await.unwrap_err();
    match &err {
        Error::Unsupported { status, code, api, .. } => {
            assert_eq!((*status, code.as_str(), *api), (426, "XMinioAdminVersionMismatch", "import-iam-v2"));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains(&server.url()), "{err}");

    assert_eq!(client.import_iam(&export).await.unwrap(), IamImport::V1);
    let paths: Vec<String> = server.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths[paths.len() - 2..],
        ["/minio/admin/v3/import-iam-v2".to_owned(), "/minio/admin/v3/import-iam".to_owned()]
    );
    assert_all_verified(&server);
}

#[tokio::test]
async fn bucket_metadata_export_one_or_all_and_import() {
    let server = MockMinio::start(Flavor::Current).await;
    let client = root(&server);

    let all = client.export_bucket_metadata(None).await.unwrap();
    assert_eq!(all.buckets(), ["logs", "photos"]);
    assert_eq!(server.last().query.get("bucket").map(String::as_str), Some(""));
    assert_no_secret(&format!("{all:?}"));

    let one = client.export_bucket_metadata(Some("photos")).await.unwrap();
    assert_eq!(server.last().query.get("bucket").map(String::as_str), Some("photos"));
    assert!(!one.entries().is_empty());

    let err = client.export_bucket_metadata(Some("missing")).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");

    let report = client.import_bucket_metadata(&all).await.unwrap();
    assert_eq!(
        report.failures(),
        [("photos", "encryption", "Server side encryption specified but KMS is not configured")]
    );
    let put = server.last();
    assert_eq!((put.method.as_str(), put.path.as_str()), ("PUT", "/minio/admin/v3/import-bucket-metadata"));
    assert_eq!(&put.body[..], all.as_bytes());

    // One bucket: the zip itself carries only that bucket (the server ignores ?bucket=).
    let photos = all.only_bucket("photos").unwrap();
    client.import_bucket_metadata(&photos).await.unwrap();
    let put = server.last();
    assert_eq!(put.query.get("bucket").map(String::as_str), Some("photos"));
    let sent = BucketMetadataExport::from_bytes(put.body.clone()).unwrap();
    assert_eq!(sent.buckets(), ["photos"]);
    assert_all_verified(&server);
}

#[tokio::test]
async fn listings_users_groups_policies_service_accounts() {
    let server = MockMinio::start(Flavor::Current).await;
    let client = root(&server);

    let users = client.list_users().await.unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users["alice"].policies(), ["readwrite", "diagnostics"]);
    assert_eq!(users["alice"].member_of, ["devs"]);
    assert_eq!(users["bob"].status, "disabled");

    assert_eq!(client.list_groups().await.unwrap(), ["devs", "ops"]);
    let devs = client.group_info("devs").await.unwrap();
    assert!(!devs.is_enabled());
    assert_eq!(devs.members, ["alice"]);
    assert_eq!(server.last().query.get("group").map(String::as_str), Some("devs"));
    let err = client.group_info("nobody").await.unwrap_err();
    assert!(matches!(&err, Error::NotFound { code, .. } if code == "XMinioAdminNoSuchGroup"), "{err:?}");

    let policies = client.list_canned_policies().await.unwrap();
    assert_eq!(policies.keys().collect::<Vec<_>>(), ["p1", "readwrite"]);
    assert_eq!(policies["p1"]["Version"], "2012-10-17");

    let accounts = client.list_service_accounts("alice").await.unwrap();
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[0].access_key, "SVC1");
    assert_eq!(accounts[0].account_status, "off");
    assert_eq!(accounts[0].expiration, None, "the 1970 sentinel means no expiry");
    assert!(accounts[1].expiration.is_some());
    assert_eq!(server.last().query.get("user").map(String::as_str), Some("alice"));
    assert!(client.list_service_accounts("bob").await.unwrap().is_empty());
    assert_all_verified(&server);
}

#[tokio::test]
async fn restore_fix_ups_group_and_service_account_status() {
    let server = MockMinio::start(Flavor::Current).await;
    let client = root(&server);

    client.set_group_status("devs", false).await.unwrap();
    let seen = server.last();
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("PUT", "/minio/admin/v3/set-group-status"));
    assert_eq!(seen.query.get("status").map(String::as_str), Some("disabled"));
    let err = client.set_group_status("nobody", true).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");

    client.set_service_account_status("SVC1", false).await.unwrap();
    let seen = server.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/minio/admin/v3/update-service-account")
    );
    assert_eq!(seen.query.get("accessKey").map(String::as_str), Some("SVC1"));
    assert_eq!(seen.decrypted.as_deref(), Some(&br#"{"newStatus":"off"}"#[..]), "an encrypted body");
    let err = client.set_service_account_status("SVC9", true).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { code, .. } if code == "XMinioAdminServiceAccountNotFound"),
        "{err:?}"
    );
    assert_all_verified(&server);
}

#[tokio::test]
async fn bucket_quota_from_an_export_is_set_back() {
    let server = MockMinio::start(Flavor::Current).await;
    let client = root(&server);
    let export = client.export_bucket_metadata(Some("photos")).await.unwrap();
    let quota = export.file("photos", "quota.json").unwrap().expect("the export has the quota");
    assert!(export.file("photos", "nothing.json").unwrap().is_none());
    client.set_bucket_quota("photos", &quota).await.unwrap();
    let seen = server.last();
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("PUT", "/minio/admin/v3/set-bucket-quota"));
    assert_eq!(seen.query.get("bucket").map(String::as_str), Some("photos"));
    assert_eq!(seen.body.as_ref(), quota.as_slice(), "plain JSON, as exported");
    assert_eq!(client.get_bucket_quota("photos").await.unwrap().as_ref(), quota.as_slice());
    let err = client.set_bucket_quota("nope", &quota).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_all_verified(&server);
}

#[tokio::test]
async fn service_restart_posts_the_v2_action() {
    let server = MockMinio::start(Flavor::Current).await;
    let result = root(&server).service_restart().await.unwrap();
    assert_eq!(result.action, "restart");
    assert_eq!(result.results[0].host, "127.0.0.1:9000");
    let seen = server.last();
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("POST", "/minio/admin/v3/service"));
    assert_eq!(seen.query.get("type").map(String::as_str), Some("2"));
    assert_eq!(seen.query.get("dry-run").map(String::as_str), Some("false"));
    assert_all_verified(&server);
}

#[tokio::test]
async fn wrong_secret_key_is_bad_credentials() {
    let server = MockMinio::start(Flavor::Current).await;
    let client = client_for(&server.url(), ROOT_ACCESS_KEY, "Wrong-Secret-Key-Value");
    let err = client.server_info().await.unwrap_err();
    match &err {
        Error::BadCredentials { code, api, endpoint, .. } => {
            assert_eq!((code.as_str(), *api), ("SignatureDoesNotMatch", "info"));
            assert_eq!(endpoint, &server.url());
        }
        other => panic!("{other:?}"),
    }
    let shown = everything_shown(&err);
    assert_no_secret(&shown);
    assert!(!shown.contains("Wrong-Secret-Key-Value"), "{shown}");
    assert!(matches!(client.probe().await, Err(Error::BadCredentials { .. })));
}

#[tokio::test]
async fn unknown_access_key_is_bad_credentials() {
    let server = MockMinio::start(Flavor::Current).await;
    let err = client_for(&server.url(), "nobody", "x").export_iam().await.unwrap_err();
    assert!(matches!(&err, Error::BadCredentials { code, .. } if code == "InvalidAccessKeyId"), "{err:?}");
}

#[tokio::test]
async fn non_admin_user_is_not_admin() {
    let server = MockMinio::start(Flavor::Current).await;
    let readonly = client_for(&server.url(), READONLY_ACCESS_KEY, READONLY_SECRET_KEY);
    let err = readonly.export_iam().await.unwrap_err();
    assert!(
        matches!(&err, Error::NotAdmin { code, api: "export-iam", .. } if code == "AccessDenied"),
        "{err:?}"
    );
    assert!(err.to_string().contains("lacks the permission admin:ExportIAM"), "{err}");
    assert_no_secret(&everything_shown(&err));
    assert_all_verified(&server);
}

#[tokio::test]
async fn unknown_admin_api_is_unsupported() {
    // The server answers 426 for every admin API it does not know; on an old server that is import-iam-v2.
    let server = MockMinio::start(Flavor::BeforeImportIamV2).await;
    let client = root(&server);
    let export = client.export_iam().await.unwrap();
    let err = client.import_iam_v2(&export).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { status: 426, .. }), "{err:?}");
    assert!(!err.is_temporary());
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let addr = mock::closed_port().await;
    let client = client_for(&format!("http://{addr}"), ROOT_ACCESS_KEY, ROOT_SECRET_KEY);
    let err = client.server_info().await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { api: "info", .. }), "{err:?}");
    assert!(err.is_temporary());
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    assert!(err.to_string().to_lowercase().contains("refused"), "the cause is named: {err}");
    assert_no_secret(&everything_shown(&err));
    assert!(matches!(client.probe().await, Err(Error::Unreachable { .. })));
}

#[tokio::test]
async fn https_to_a_plain_http_port_is_a_tls_failure() {
    let server = MockMinio::start(Flavor::Current).await;
    let client = client_for(&format!("https://{}", server.addr), ROOT_ACCESS_KEY, ROOT_SECRET_KEY);
    let err = client.server_info().await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(err.to_string().starts_with("TLS with https://127.0.0.1"), "{err}");
    assert!(err.to_string().contains("InvalidContentType"), "rustls's reason is named: {err}");
    assert_no_secret(&everything_shown(&err));
}

#[tokio::test]
async fn https_with_the_deployment_ca_works() {
    let server = MockMinio::start_tls(Flavor::Current).await;
    let ca = server.ca_pem.clone().unwrap();
    let options = AdminOptions::default().with_ca_certificate_pem(ca);
    let client = AdminClient::new(&server.url(), ROOT_ACCESS_KEY, ROOT_SECRET_KEY, options).unwrap();
    assert_eq!(client.server_info().await.unwrap().deployment_id, DEPLOYMENT_ID);
    assert_eq!(client.list_users().await.unwrap().len(), 2);
    assert_all_verified(&server);
}

#[tokio::test]
async fn https_with_an_untrusted_certificate_is_a_tls_failure() {
    let server = MockMinio::start_tls(Flavor::Current).await;
    let client = client_for(&server.url(), ROOT_ACCESS_KEY, ROOT_SECRET_KEY);
    let err = client.server_info().await.unwrap_err();
    match &err {
        Error::Tls { detail, .. } => assert!(detail.contains("certificate"), "{detail}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(client.probe().await, Err(Error::Tls { .. })));
    assert!(server.seen().is_empty(), "nothing was sent over the untrusted connection");
}

#[tokio::test]
async fn https_with_invalid_certificates_accepted() {
    let server = MockMinio::start_tls(Flavor::Current).await;
    let options = AdminOptions::default().with_danger_accept_invalid_certs(true);
    let client = AdminClient::new(&server.url(), ROOT_ACCESS_KEY, ROOT_SECRET_KEY, options).unwrap();
    assert!(matches!(client.probe().await.unwrap(), Probe::Admin(_)));
    assert_all_verified(&server);
}

#[tokio::test]
async fn silent_server_is_a_timeout() {
    let addr = mock::silent_server().await;
    let options = AdminOptions::default().with_timeout(Duration::from_millis(300));
    let client =
        AdminClient::new(&format!("http://{addr}"), ROOT_ACCESS_KEY, ROOT_SECRET_KEY, options).unwrap();
    let err = client.export_iam().await.unwrap_err();
    assert!(matches!(err, Error::Timeout { api: "export-iam", .. }), "{err:?}");
    assert!(err.is_temporary());
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn server_errors_are_temporary_and_probe_reports_them() {
    let server = MockMinio::start(Flavor::Initializing).await;
    let err = root(&server).list_groups().await.unwrap_err();
    assert!(matches!(err, Error::Server { status: 503, .. }), "{err:?}");
    assert!(err.is_temporary());
    assert!(matches!(root(&server).probe().await, Err(Error::Server { status: 503, .. })));
}

#[tokio::test]
async fn response_encrypted_with_another_secret_is_a_wrong_secret() {
    let server = MockMinio::start(Flavor::WrongEncryptionKey).await;
    let err = root(&server).list_users().await.unwrap_err();
    match &err {
        Error::ResponsePayload { api: "list-users", source, .. } => {
            assert!(matches!(**source, Error::PayloadWrongSecret), "{source:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_no_secret(&everything_shown(&err));
}

#[tokio::test]
async fn session_token_is_sent_and_signed() {
    let server = MockMinio::start(Flavor::Current).await;
    let options = AdminOptions::default().with_session_token("Session-Token-Value");
    let client = AdminClient::new(&server.url(), ROOT_ACCESS_KEY, ROOT_SECRET_KEY, options).unwrap();
    client.server_info().await.unwrap();
    let seen = server.last();
    assert_eq!(seen.signed_headers, "host;x-amz-content-sha256;x-amz-date;x-amz-security-token");
    assert!(seen.signature_ok);
    assert!(!format!("{client:?}").contains("Session-Token-Value"));
}

#[tokio::test]
async fn injected_clock_dates_the_signature() {
    let server = MockMinio::start(Flavor::Current).await;
    let clock = Arc::new(FixedClock(time::macros::datetime!(2013-05-24 00:00:00 UTC)));
    let options = AdminOptions::default().with_clock(clock).with_region("");
    let client = AdminClient::new(&server.url(), ROOT_ACCESS_KEY, ROOT_SECRET_KEY, options).unwrap();
    client.list_groups().await.unwrap();
    let seen = server.last();
    assert_eq!(seen.credential_scope, "20130524//s3/aws4_request", "madmin's empty-region scope");
    assert!(seen.signature_ok);
}

#[test]
fn endpoints_are_checked_and_never_echo_credentials() {
    for (url, want) in [
        ("ftp://host:21", "scheme"),
        ("http://user:Url-Password@host:9000", "credentials"),
        ("http://host:9000/some/path", "path"),
        ("http://host:9000/?x=1", "query"),
        ("not a url", "invalid MinIO endpoint"),
    ] {
        let err = AdminClient::new(url, "ak", "sk", AdminOptions::default()).unwrap_err();
        assert!(matches!(err, Error::InvalidEndpoint { .. }), "{url}: {err:?}");
        let shown = everything_shown(&err);
        assert!(shown.contains(want), "{url}: {shown}");
        assert!(!shown.contains("Url-Password"), "{shown}");
    }
    let ok = AdminClient::new("https://minio.example:443/", "ak", "sk", AdminOptions::default()).unwrap();
    assert_eq!(ok.endpoint(), "https://minio.example");
    let shown = format!("{ok:?}");
    assert!(shown.contains("ak") && !shown.contains("\"sk\""), "{shown}");
    let err = AdminClient::new(
        "https://minio.example",
        "ak",
        "sk",
        AdminOptions::default().with_ca_certificate_pem("not a certificate"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::ClientSetup { .. }), "{err:?}");
}
