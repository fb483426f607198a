//! The MinIO suite, end to end: the `s32s3` binary backs up a real `RustFS` 1.0.1 (a MinIO-compatible server
//! with MinIO's admin API) into `SeaweedFS` and restores it onto fresh `RustFS` servers; everything is compared
//! through the admin API and S3 as an operator would look. Run by `scripts/test-minio`
//! (`cargo test … -- --ignored`); the main suite lists these tests as ignored because it does not require
//! `RustFS`. A server that cannot be started fails the test with the command that gets `RustFS`.

mod common;

use std::collections::BTreeMap;

use aws_sdk_s3::error::ProvideErrorMetadata as _;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, CorsConfiguration, CorsRule, DefaultRetention,
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, ObjectLockConfiguration,
    ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
    VersioningConfiguration,
};
use common::{Env, counts, object_tags, pattern, rt, tagging};
use s32s3_core::testkit::{self, RustFsOptions, ServerKind, TestServer};
use s32s3_core::{S3Endpoint, Secret};
use s32s3_minio_admin::{AdminClient, AdminOptions, BucketQuota, NewServiceAccount};
use serde_json::json;
use sha2::{Digest, Sha256};

const ALICE: (&str, &str) = ("alice", "alice-secret-0123");
const BOB: (&str, &str) = ("bob", "bob-secret-4567");
const CAROL: (&str, &str) = ("carol", "carol-secret-89ab");
const SVC_ON: (&str, &str) = ("svc-alice-on", "svc-alice-on-secret-1");
const SVC_OFF: (&str, &str) = ("svc-alice-off", "svc-alice-off-secret-2");
const QUOTA: u64 = 1 << 30;

/// A fresh `RustFS` for the rest of the test binary (the harness's `Env` takes `'static` servers; the
/// server still stops when the binary exits).
fn fresh_rustfs() -> &'static TestServer {
    Box::leak(Box::new(TestServer::start(ServerKind::RustFs)))
}

fn admin(server: &TestServer) -> AdminClient {
    let e = server.endpoint();
    AdminClient::new(&e.endpoint, &e.access_key_id, e.secret_access_key.expose(), AdminOptions::default())
        .unwrap()
}

/// An S3 client signing as `(access key, secret key)`.
fn s3_as(server: &TestServer, (access_key, secret_key): (&str, &str)) -> aws_sdk_s3::Client {
    let mut endpoint = S3Endpoint::new(server.endpoint().endpoint, access_key, Secret::new(secret_key));
    endpoint.region = "us-east-1".into();
    s32s3_core::store::s3::sdk_client(&endpoint).unwrap()
}

/// `s32s3 …` with `target` as the source endpoint (where a restore writes).
fn against(env: &Env, target: &TestServer) -> std::process::Command {
    let mut cmd = env.s32s3();
    let t = target.endpoint();
    cmd.env("S32S3_SOURCE_ENDPOINT", &t.endpoint)
        .env("S32S3_SOURCE_ACCESS_KEY_ID", &t.access_key_id)
        .env("S32S3_SOURCE_SECRET_ACCESS_KEY", t.secret_access_key.expose());
    cmd
}

/// Runs `cmd`, checks its exit code, and returns its JSON summary and its stderr.
fn json_run(cmd: &mut std::process::Command, code: i32) -> (serde_json::Value, String) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr: {stderr}\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let summary = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"));
    (summary, stderr)
}

// ---------------------------------------------------------------------------------------------------------
// The source: IAM and buckets of every kind the issue lists.

fn policy(actions: &[&str], resources: &[&str]) -> serde_json::Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}]})
}

/// Policies, users (carol disabled), groups (ops disabled; members and policies), user and group
/// mappings, service accounts of alice (one off).
async fn fill_iam(server: &TestServer) {
    let root = admin(server);
    root.add_canned_policy(
        "photos-read",
        &policy(&["s3:GetObject", "s3:ListBucket"], &["arn:aws:s3:::photos", "arn:aws:s3:::photos/*"]),
    )
    .await
    .unwrap();
    root.add_canned_policy("logs-write", &policy(&["s3:PutObject"], &["arn:aws:s3:::logs/*"])).await.unwrap();
    for (user, secret) in [ALICE, BOB] {
        root.add_user(user, secret, true).await.unwrap();
    }
    root.add_user(CAROL.0, CAROL.1, false).await.unwrap();
    root.set_policy("photos-read", "alice", false).await.unwrap();
    root.add_group_members("devs", &["alice", "bob"]).await.unwrap();
    root.set_policy("logs-write", "devs", true).await.unwrap();
    // ops would let bob read everything, were it enabled.
    root.add_group_members("ops", &["bob"]).await.unwrap();
    root.set_policy("readonly", "ops", true).await.unwrap();
    root.set_group_status("ops", false).await.unwrap();
    let on = NewServiceAccount::new("alice", SVC_ON.0, SVC_ON.1).with_name("backup", "nightly job");
    root.add_service_account(&on).await.unwrap();
    root.add_service_account(&NewServiceAccount::new("alice", SVC_OFF.0, SVC_OFF.1)).await.unwrap();
    root.set_service_account_status(SVC_OFF.0, false).await.unwrap();
}

/// `photos`: versioning, lifecycle, policy, tags, CORS, default encryption, a quota; `locked`: object lock
/// with a default retention; `logs`: plain. Objects with headers, metadata and tags in each.
async fn fill_buckets(server: &TestServer) {
    let s3 = server.client();
    s3.create_bucket().bucket("photos").send().await.unwrap();
    s3.create_bucket().bucket("locked").object_lock_enabled_for_bucket(true).send().await.unwrap();
    s3.create_bucket().bucket("logs").send().await.unwrap();
    photos_settings(&s3).await;
    let retention = DefaultRetention::builder().mode(ObjectLockRetentionMode::Governance).days(1).build();
    let lock = ObjectLockConfiguration::builder()
        .object_lock_enabled(ObjectLockEnabled::Enabled)
        .rule(ObjectLockRule::builder().default_retention(retention).build())
        .build();
    s3.put_object_lock_configuration().bucket("locked").object_lock_configuration(lock).send().await.unwrap();
    for (bucket, key, body, tags) in [
        ("photos", "a/b.txt", b"hello, photos".to_vec(), "k=v&team=media"),
        ("photos", "public/pic.jpg", (0..70_000u32).map(|i| (i % 251) as u8).collect(), "public=yes"),
        ("locked", "contracts/2026.pdf", b"%PDF-1.7 signed".to_vec(), "kind=contract"),
        ("logs", "2026/12/app.log", b"line 1\nline 2\n".to_vec(), "rotated=no"),
    ] {
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .content_type("application/x-test")
            .cache_control("max-age=60")
            .metadata("owner", "alice")
            .tagging(tags)
            .send()
            .await
            .unwrap();
    }
    // Last: RustFS refuses writes into a bucket with a quota (503 "Bucket quota check temporarily
    // unavailable") until it has measured the bucket's usage, which a fresh server has not.
    admin(server).set_bucket_quota("photos", &BucketQuota::hard(QUOTA).to_request()).await.unwrap();
}

async fn photos_settings(s3: &aws_sdk_s3::Client) {
    let b = "photos";
    let versioning = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    s3.put_bucket_versioning().bucket(b).versioning_configuration(versioning).send().await.unwrap();
    let rule = LifecycleRule::builder()
        .id("tmp")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
        .expiration(LifecycleExpiration::builder().days(30).build())
        .build()
        .unwrap();
    let lifecycle = BucketLifecycleConfiguration::builder().rules(rule).build().unwrap();
    s3.put_bucket_lifecycle_configuration()
        .bucket(b)
        .lifecycle_configuration(lifecycle)
        .send()
        .await
        .unwrap();
    let public = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": ["*"]},
        "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::photos/public/*"]}]});
    s3.put_bucket_policy().bucket(b).policy(public.to_string()).send().await.unwrap();
    let tags = Tagging::builder()
        .tag_set(Tag::builder().key("team").value("media").build().unwrap())
        .build()
        .unwrap();
    s3.put_bucket_tagging().bucket(b).tagging(tags).send().await.unwrap();
    let cors =
        CorsRule::builder().allowed_methods("GET").allowed_origins("https://example.com").build().unwrap();
    let cors = CorsConfiguration::builder().cors_rules(cors).build().unwrap();
    s3.put_bucket_cors().bucket(b).cors_configuration(cors).send().await.unwrap();
    let sse =
        ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256).build().unwrap();
    let sse = ServerSideEncryptionConfiguration::builder()
        .rules(ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(sse).build())
        .build()
        .unwrap();
    s3.put_bucket_encryption().bucket(b).server_side_encryption_configuration(sse).send().await.unwrap();
}

// ---------------------------------------------------------------------------------------------------------
// What an operator sees.

/// Every IAM entity as the admin API lists it.
#[derive(Debug, PartialEq)]
struct IamView {
    /// user → (status, policies, groups)
    users: BTreeMap<String, (String, Vec<String>, Vec<String>)>,
    /// group → (status, members, policies)
    groups: BTreeMap<String, (String, Vec<String>, Vec<String>)>,
    policies: BTreeMap<String, serde_json::Value>,
    /// access key → (parent, status, name, description, implied policy)
    accounts: BTreeMap<String, (String, String, String, String, bool)>,
}

fn sorted(items: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    let mut v: Vec<String> = items.into_iter().map(Into::into).collect();
    v.sort();
    v
}

async fn iam_view(server: &TestServer) -> IamView {
    let root = admin(server);
    let listed = root.list_users().await.unwrap();
    let mut accounts = BTreeMap::new();
    for user in listed.keys() {
        for a in root.list_service_accounts(user).await.unwrap() {
            let row = (a.parent_user, a.account_status, a.name, a.description, a.implied_policy);
            accounts.insert(a.access_key, row);
        }
    }
    let users = listed
        .iter()
        .map(|(name, u)| {
            (name.clone(), (u.status.clone(), sorted(u.policies()), sorted(u.member_of.clone())))
        })
        .collect();
    let mut groups = BTreeMap::new();
    for group in root.list_groups().await.unwrap() {
        let g = root.group_info(&group).await.unwrap();
        groups.insert(group, (g.status.clone(), sorted(g.members.clone()), sorted(g.policies())));
    }
    IamView { users, groups, policies: root.list_canned_policies().await.unwrap(), accounts }
}

/// The bucket settings S3 and the admin API show, as comparable text.
async fn bucket_settings(server: &TestServer, bucket: &str) -> BTreeMap<&'static str, String> {
    let s3 = server.client();
    let mut out = BTreeMap::new();
    let v = s3.get_bucket_versioning().bucket(bucket).send().await.unwrap();
    out.insert("versioning", format!("{:?}", v.status()));
    if let Ok(l) = s3.get_bucket_lifecycle_configuration().bucket(bucket).send().await {
        out.insert("lifecycle", format!("{:?}", l.rules()));
    }
    if let Ok(p) = s3.get_bucket_policy().bucket(bucket).send().await {
        out.insert(
            "policy",
            serde_json::from_str::<serde_json::Value>(p.policy().unwrap()).unwrap().to_string(),
        );
    }
    if let Ok(t) = s3.get_bucket_tagging().bucket(bucket).send().await {
        out.insert(
            "tagging",
            format!("{:?}", sorted(t.tag_set().iter().map(|t| format!("{}={}", t.key(), t.value())))),
        );
    }
    if let Ok(c) = s3.get_bucket_cors().bucket(bucket).send().await {
        out.insert("cors", format!("{:?}", c.cors_rules()));
    }
    if let Ok(e) = s3.get_bucket_encryption().bucket(bucket).send().await {
        out.insert("encryption", format!("{:?}", e.server_side_encryption_configuration()));
    }
    if let Ok(o) = s3.get_object_lock_configuration().bucket(bucket).send().await {
        out.insert("object-lock", format!("{:?}", o.object_lock_configuration()));
    }
    let quota = admin(server).get_bucket_quota(bucket).await.unwrap();
    out.insert("quota", format!("{:?}", BucketQuota::from_json(&quota).unwrap()));
    out
}

/// Every object of a bucket: key → (SHA-256, content type, cache control, metadata), from GET and HEAD.
async fn objects(server: &TestServer, bucket: &str) -> BTreeMap<String, Vec<String>> {
    let s3 = server.client();
    let mut out = BTreeMap::new();
    let listing = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    for object in listing.contents() {
        let key = object.key().unwrap().to_owned();
        let body =
            s3.get_object().bucket(bucket).key(&key).send().await.unwrap().body.collect().await.unwrap();
        let head = s3.head_object().bucket(bucket).key(&key).send().await.unwrap();
        let row = vec![
            hex::encode(Sha256::digest(body.into_bytes())),
            format!("{:?}", head.content_type()),
            format!("{:?}", head.cache_control()),
            format!("{:?}", head.metadata().map(|m| m.iter().collect::<BTreeMap<_, _>>())),
        ];
        out.insert(key, row);
    }
    out
}

/// Every object's tags and object-lock mode (HEAD: `RustFS` sends neither on GET).
async fn tags_and_lock(server: &TestServer, bucket: &str) -> BTreeMap<String, (String, String)> {
    let s3 = server.client();
    let mut out = BTreeMap::new();
    let listing = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    for object in listing.contents() {
        let key = object.key().unwrap().to_owned();
        let tags = s3.get_object_tagging().bucket(bucket).key(&key).send().await.unwrap();
        let tags = sorted(tags.tag_set().iter().map(|t| format!("{}={}", t.key(), t.value())));
        let head = s3.head_object().bucket(bucket).key(&key).send().await.unwrap();
        out.insert(key, (tags.join("&"), format!("{:?}", head.object_lock_mode())));
    }
    out
}

async fn assert_same_buckets(source: &TestServer, target: &TestServer) {
    for bucket in ["photos", "locked", "logs"] {
        assert_eq!(
            bucket_settings(target, bucket).await,
            bucket_settings(source, bucket).await,
            "settings of {bucket}"
        );
        assert_eq!(objects(target, bucket).await, objects(source, bucket).await, "objects of {bucket}");
    }
    let photos = bucket_settings(target, "photos").await;
    for name in ["lifecycle", "policy", "tagging", "cors", "encryption"] {
        assert!(photos.contains_key(name), "{name} restored: {photos:?}");
    }
    assert!(photos["quota"].contains(&QUOTA.to_string()), "{photos:?}");
    assert!(bucket_settings(target, "locked").await["object-lock"].contains("Governance"));
}

/// Whether `who` may GET `bucket/key` from `server`: `true`, or `false` for a refusal (`AccessDenied`, or
/// `InvalidAccessKeyId` for a disabled key); any other failure fails the test.
async fn can_read(server: &TestServer, who: (&str, &str), bucket: &str, key: &str) -> bool {
    allowed(s3_as(server, who).get_object().bucket(bucket).key(key).send().await.map(drop))
}

/// Whether `who` may PUT `bucket/key` on `server` (as [`can_read`]).
async fn can_write(server: &TestServer, who: (&str, &str), bucket: &str, key: &str) -> bool {
    let s3 = s3_as(server, who);
    allowed(
        s3.put_object().bucket(bucket).key(key).body(ByteStream::from_static(b"x")).send().await.map(drop),
    )
}

fn allowed<E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug>(
    result: Result<(), aws_sdk_s3::error::SdkError<E>>,
) -> bool {
    match result {
        Ok(()) => true,
        Err(e) if matches!(e.code(), Some("AccessDenied" | "InvalidAccessKeyId")) => false,
        Err(e) => panic!("neither allowed nor refused: {e:?}"),
    }
}

/// Who may do what: (who, what, allowed), for every user and service account of [`fill_iam`].
async fn access(server: &TestServer) -> Vec<(&'static str, &'static str, bool)> {
    let mut out = Vec::new();
    for who in [ALICE, BOB, CAROL, SVC_ON, SVC_OFF] {
        out.push((who.0, "read photos", can_read(server, who, "photos", "a/b.txt").await));
        out.push((
            who.0,
            "write photos",
            can_write(server, who, "photos", &format!("probe/{}", who.0)).await,
        ));
        let written = can_write(server, who, "logs", &format!("probe/{}", who.0)).await;
        if written {
            server
                .client()
                .delete_object()
                .bucket("logs")
                .key(format!("probe/{}", who.0))
                .send()
                .await
                .unwrap();
        }
        out.push((who.0, "write logs", written));
    }
    out
}

/// Restored users sign in with their old secrets and may do exactly what they could on the source:
/// alice reads photos (her policy) and writes logs (group devs) but may not write photos; carol is
/// disabled; bob may not read photos (ops, which would allow it, is disabled; `RustFS` refuses a member of a
/// disabled group everything); of alice's service accounts, the one that was off is off.
async fn assert_restored_access(source: &TestServer, target: &TestServer) {
    let restored = access(target).await;
    assert_eq!(restored, access(source).await, "the same rights as on the source");
    let allowed = |who: &str, what: &str| restored.iter().any(|(w, a, ok)| *w == who && *a == what && *ok);
    assert!(
        allowed("alice", "read photos")
            && allowed("alice", "write logs")
            && !allowed("alice", "write photos")
    );
    assert!(!allowed("carol", "read photos") && !allowed("bob", "read photos"));
    assert!(allowed(SVC_ON.0, "read photos") && !allowed(SVC_OFF.0, "read photos"));
}

// ---------------------------------------------------------------------------------------------------------

/// Backup of a `RustFS` (detected as MinIO) with every kind of IAM entity and bucket setting; restore onto a
/// fresh `RustFS`: IAM as listed, sign-ins, bucket settings and data all equal. A second restore changes
/// nothing.
#[test]
#[ignore = "MinIO suite: run by scripts/test-minio (needs RustFS)"]
fn rustfs_backup_and_restore_onto_a_fresh_rustfs() {
    let source = fresh_rustfs();
    rt().block_on(async {
        fill_iam(source).await;
        fill_buckets(source).await;
    });
    let env = Env::new(source, testkit::seaweedfs(), "minio-dr");
    let summary = env.backup(&[], 0);
    assert_eq!(summary["status"], "complete", "{summary}");
    let (header, _) = env.manifest();
    assert_eq!(header.source.kind, "minio", "provider detected: {:?}", header.source);
    assert_eq!(header.source.minio_version.as_deref(), Some("@1.0.1"));
    let refs = header.instance.expect("the instance was exported");
    assert!(
        refs.errors.is_empty()
            && refs.iam.is_some()
            && refs.config.is_some()
            && refs.bucket_metadata.is_some(),
        "{refs:?}"
    );

    let target = fresh_rustfs();
    let (restored, stderr) = json_run(against(&env, target).args(["restore", "--json"]), 0);
    assert_eq!(restored["restored"]["objects"], 4, "{restored}\n{stderr}");
    assert!(restored["failed"].as_array().unwrap().is_empty(), "{restored}");
    rt().block_on(async {
        assert_eq!(iam_view(target).await, iam_view(source).await);
        assert_restored_access(source, target).await;
        assert_same_buckets(source, target).await;
    });
    let view = rt().block_on(iam_view(target));
    assert_eq!(view.users["carol"].0, "disabled");
    assert_eq!(view.groups["ops"], ("disabled".into(), vec!["bob".into()], vec!["readonly".into()]));
    assert_eq!(view.accounts[SVC_OFF.0].1, "off");

    // Again: nothing to do, nothing changes.
    let (again, _) = json_run(against(&env, target).args(["restore", "--json"]), 0);
    assert_eq!(
        (again["restored"]["objects"].as_u64(), again["skipped"]["objects"].as_u64()),
        (Some(0), Some(4)),
        "{again}"
    );
    rt().block_on(async {
        assert_eq!(iam_view(target).await, iam_view(source).await);
        assert_same_buckets(source, target).await;
    });
}

/// Object tags and object-lock retention come back (the objects of [`fill_buckets`] all have tags; those
/// in `locked` the bucket's default retention).
#[test]
#[ignore = "MinIO suite: run by scripts/test-minio (needs RustFS)"]
fn object_tags_and_retention_survive_backup_and_restore() {
    let source = fresh_rustfs();
    rt().block_on(fill_buckets(source));
    let env = Env::new(source, testkit::seaweedfs(), "minio-tags");
    env.backup(&[], 0);
    // What the snapshot recorded, shown when the comparison below fails.
    let recorded: Vec<_> =
        env.manifest().1.into_iter().map(|e| (e.bucket, e.key, e.tags, e.lock_mode)).collect();
    let target = fresh_rustfs();
    json_run(against(&env, target).args(["restore", "--json"]), 0);
    rt().block_on(async {
        for bucket in ["photos", "locked", "logs"] {
            let source_tags = tags_and_lock(source, bucket).await;
            assert!(source_tags.values().all(|(tags, _)| !tags.is_empty()), "{source_tags:?}");
            assert_eq!(
                tags_and_lock(target, bucket).await,
                source_tags,
                "tags and lock of {bucket}; the snapshot recorded {recorded:?}"
            );
        }
    });
}

/// `restore --at` a time between two backups brings back the IAM of that time: a user added after the
/// first backup is absent.
#[test]
#[ignore = "MinIO suite: run by scripts/test-minio (needs RustFS)"]
fn restore_at_an_earlier_snapshot_brings_back_that_iam() {
    let source = fresh_rustfs();
    rt().block_on(async {
        fill_iam(source).await;
        source.client().create_bucket().bucket("logs").send().await.unwrap();
        common::put(source, "logs", "one", b"1".to_vec()).await;
    });
    let env = Env::new(source, testkit::seaweedfs(), "minio-at");
    env.backup(&[], 0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = s32s3_core::format_rfc3339(time::OffsetDateTime::now_utc());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    rt().block_on(admin(source).add_user("dave", "dave-secret-cdef", true)).unwrap();
    env.backup(&[], 0);

    let target = fresh_rustfs();
    json_run(against(&env, target).args(["restore", "--json", "--at", &between]), 0);
    let users = rt().block_on(admin(target).list_users()).unwrap();
    assert!(users.contains_key("alice") && !users.contains_key("dave"), "{:?}", users.keys());
    let newest = fresh_rustfs();
    json_run(against(&env, newest).args(["restore", "--json"]), 0);
    assert!(rt().block_on(admin(newest).list_users()).unwrap().contains_key("dave"));
}

/// A key that may use S3 but not the admin API: the data is backed up, the snapshot is partial, and one
/// line names the permission that is missing. A key with `admin:ServerInfo` alone: one line per export.
#[test]
#[ignore = "MinIO suite: run by scripts/test-minio (needs RustFS)"]
fn a_key_without_admin_rights_backs_up_the_data_and_names_the_missing_permission() {
    let source = fresh_rustfs();
    rt().block_on(async {
        let root = admin(source);
        root.add_canned_policy("s3-only", &policy(&["s3:*"], &["arn:aws:s3:::*"])).await.unwrap();
        root.add_canned_policy(
            "info-only",
            &json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["admin:ServerInfo"]},
            {"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::*"]}]}),
        )
        .await
        .unwrap();
        for (user, policy) in [("backup-s3", "s3-only"), ("backup-info", "info-only")] {
            root.add_user(user, "backup-secret-0123", true).await.unwrap();
            root.set_policy(policy, user, false).await.unwrap();
        }
        source.client().create_bucket().bucket("logs").send().await.unwrap();
        for key in ["a", "b", "c"] {
            common::put(source, "logs", key, key.as_bytes().to_vec()).await;
        }
    });
    for (user, missing) in [
        ("backup-s3", vec!["admin:ServerInfo"]),
        ("backup-info", vec!["admin:ConfigUpdate", "admin:ExportIAM", "admin:ExportBucketMetadata"]),
    ] {
        let env = Env::new(source, testkit::seaweedfs(), &format!("minio-{user}"));
        let out = env
            .s32s3()
            .env("S32S3_SOURCE_ACCESS_KEY_ID", user)
            .env("S32S3_SOURCE_SECRET_ACCESS_KEY", "backup-secret-0123")
            .args(["backup", "--json"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "partial: {stderr}");
        assert_eq!(stderr.lines().count(), missing.len(), "one line per missing permission:\n{stderr}");
        for permission in &missing {
            let naming = stderr.lines().filter(|l| l.contains(&format!("lacks the permission {permission}")));
            assert_eq!(naming.count(), 1, "{permission}:\n{stderr}");
        }
        let (header, entries) = env.manifest();
        assert_eq!(header.status, s32s3_core::SnapshotStatus::Partial);
        assert_eq!(entries.len(), 3, "the data is all there");
        assert!(!stderr.contains("backup-secret-0123"));
    }
}

/// A wrong secret for the source: one line, nothing written; the same for the target of a restore.
#[test]
#[ignore = "MinIO suite: run by scripts/test-minio (needs RustFS)"]
fn a_wrong_admin_secret_is_one_line() {
    let source = testkit::rustfs();
    rt().block_on(async {
        source.client().create_bucket().bucket("wrong-secret").send().await.unwrap();
    });
    let env = Env::new(source, testkit::seaweedfs(), "minio-wrong");
    for provider in ["auto", "minio"] {
        let out = env
            .s32s3()
            .env("S32S3_SOURCE_SECRET_ACCESS_KEY", "not-the-secret-4711")
            .env("S32S3_SOURCE_PROVIDER", provider)
            .args(["backup", "--bucket", "wrong-secret"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with("s32s3: error: ") && stderr.contains("SignatureDoesNotMatch"), "{stderr}");
        assert!(!stderr.contains("not-the-secret-4711"), "{stderr}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// MinIO → RustFS

fn shapes(path: &str) -> Vec<u8> {
    let file = testkit::repo_root().join("s32s3-minio-admin/tests/data/minio-shapes").join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The three exports in MinIO's shapes (tests/data/minio-shapes): export-iam's zip, export-bucket-metadata's
/// zip (madmin's quota, bucket-targets.json in XML, notification.xml always), and GET /config's text.
fn minio_exports() -> [(&'static str, Vec<u8>); 4] {
    let iam: Vec<(String, Vec<u8>)> =
        ["policies", "users", "groups", "svcaccts", "user_mappings", "group_mappings", "stsuser_mappings"]
            .iter()
            .map(|n| (format!("iam-assets/{n}.json"), shapes(&format!("iam-assets/{n}.json"))))
            .collect();
    let buckets: Vec<(String, Vec<u8>)> = [
        "photos/policy.json",
        "photos/notification.xml",
        "photos/lifecycle.xml",
        "photos/tagging.xml",
        "photos/quota.json",
        "photos/versioning.xml",
        "photos/bucket-targets.json",
        "locked/notification.xml",
        "locked/object-lock.xml",
        "locked/versioning.xml",
        "locked/bucket-targets.json",
    ]
    .iter()
    .map(|n| ((*n).to_owned(), shapes(&format!("bucket-metadata/{n}"))))
    .collect();
    let zip = |files: &[(String, Vec<u8>)]| {
        s32s3_minio_admin::archive::build_zip(files.iter().map(|(n, c)| (n.as_str(), c.as_slice()))).unwrap()
    };
    let info = json!({"version": "2025-10-15T17:29:55Z", "deployment_id": "6faeded5-5cf3-4133-8a37-07c5d500207c",
        "region": "eu-central-1", "mode": "online", "servers": 4});
    [
        ("iam", zip(&iam)),
        ("bucket_metadata", zip(&buckets)),
        ("config", shapes("config.txt")),
        ("server_info", info.to_string().into_bytes()),
    ]
}

/// Puts MinIO's exports in place of the newest snapshot's own (encrypted as s32s3 stores them): a backup
/// of a MinIO, as far as the restore can tell.
fn with_minio_exports(env: &Env) {
    let (header, _) = env.manifest();
    let refs = header.instance.expect("the snapshot has instance exports");
    rt().block_on(async {
        let cipher =
            s32s3_core::derive_cipher(&common::PASSWORD.into(), &common::PASSWORD2.into()).await.unwrap();
        for (what, plain) in minio_exports() {
            let key = match what {
                "iam" => refs.iam.clone(),
                "bucket_metadata" => refs.bucket_metadata.clone(),
                "config" => refs.config.clone(),
                _ => refs.server_info.clone(),
            }
            .unwrap_or_else(|| panic!("the snapshot has {what}"));
            let sealed = cipher.encrypt(&s32s3_crypt::Nonce::random().unwrap(), &plain);
            let s3 = env.dest.client();
            s3.put_object()
                .bucket(&env.backup_bucket)
                .key(&key)
                .body(ByteStream::from(sealed))
                .send()
                .await
                .unwrap();
        }
    });
}

/// A backup whose exports have MinIO's shapes restores onto `RustFS` with `--server-config`: users, groups
/// (status, members, policies), policies, mappings and service accounts land and work, so does the quota
/// of the bucket-metadata export; the configuration goes in without the subsystems and keys `RustFS` does
/// not know, and the restore names each; the server is restarted and the restore goes on.
#[test]
#[ignore = "MinIO suite: run by scripts/test-minio (needs RustFS)"]
fn a_minio_backup_restores_onto_rustfs() {
    let source = fresh_rustfs();
    rt().block_on(fill_buckets(source));
    let env = Env::new(source, testkit::seaweedfs(), "minio-to-rustfs");
    env.backup(&[], 0);
    with_minio_exports(&env);

    let target = fresh_rustfs();
    let (restored, stderr) =
        json_run(against(&env, target).args(["restore", "--json", "--server-config"]), 0);
    assert_eq!(restored["restored"]["objects"], 4, "{restored}");
    let notes: Vec<&str> =
        restored["notes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    for part in [
        "site (",
        "api (",
        "compression (",
        "subnet (",
        "callhome (",
        "browser (",
        "ilm (",
        "heal key bitrot (",
    ] {
        assert!(
            notes.iter().any(|n| n.starts_with(&format!("server configuration: {part}"))
                && n.ends_with("left out: the target refused it")),
            "{part} reported: {notes:#?}"
        );
    }
    assert!(notes.iter().any(|n| n.contains("the server was restarted")), "{notes:#?}");
    assert!(
        !stderr.contains("webhook-token-s3cr3t") && !restored.to_string().contains("webhook-token-s3cr3t")
    );

    rt().block_on(async {
        let config = admin(target).get_config().await.unwrap();
        let hook = config
            .as_str()
            .lines()
            .find(|l| l.starts_with("notify_webhook:audit1"))
            .expect("the target landed");
        assert!(hook.contains("hook.example:8080/minio-events"), "{hook}");
        let view = iam_view(target).await;
        assert_eq!(view.users["alice"], ("enabled".into(), vec!["photos-read".into()], vec!["devs".into()]));
        assert_eq!(view.users["carol"].0, "disabled");
        assert_eq!(
            view.groups["devs"],
            ("enabled".into(), vec!["alice".into()], vec!["diagnostics".into(), "readonly".into()])
        );
        assert_eq!(view.groups["ops"], ("disabled".into(), vec!["carol".into()], vec!["writeonly".into()]));
        assert_eq!(
            view.accounts["svc-alice-on"],
            ("alice".into(), "on".into(), "backup".into(), "nightly job".into(), true)
        );
        assert_eq!(view.accounts["svc-alice-off"].1, "off");
        assert!(view.policies.contains_key("photos-read"));
        let alice = ("alice", "minio-alice-secret-0123");
        assert!(can_read(target, alice, "photos", "a/b.txt").await, "alice signs in with her MinIO secret");
        assert!(!can_write(target, alice, "photos", "x").await);
        assert!(can_read(target, ("svc-alice-on", "minio-svc-on-secret-89ab"), "photos", "a/b.txt").await);
        assert!(!can_read(target, ("svc-alice-off", "minio-svc-off-secret-cdef"), "photos", "a/b.txt").await);
        // MinIO's quota.json (madmin's BucketQuota) landed; the bucket settings came with the snapshot.
        assert_eq!(
            bucket_settings(target, "photos").await["quota"],
            format!("{:?}", Some(BucketQuota::hard(2 << 30)))
        );
        for bucket in ["photos", "locked", "logs"] {
            assert_eq!(objects(target, bucket).await, objects(source, bucket).await, "objects of {bucket}");
        }
    });
}

/// `RustFS` exits when told to restart; without anything to start it again, a restore with the server
/// configuration ends after the time it was given, in one line that says so, instead of waiting forever.
#[test]
#[ignore = "MinIO suite: run by scripts/test-minio (needs RustFS)"]
fn a_restart_nobody_answers_ends_the_restore_in_time() {
    let source = fresh_rustfs();
    rt().block_on(async {
        source.client().create_bucket().bucket("logs").send().await.unwrap();
        common::put(source, "logs", "one", b"1".to_vec()).await;
    });
    let env = Env::new(source, testkit::seaweedfs(), "minio-restart");
    env.backup(&[], 0);

    let alone = TestServer::start_rustfs(&RustFsOptions::default().with_no_relaunch(true));
    let mut config =
        s32s3_core::RunConfig::new(alone.endpoint(), env.dest.endpoint(), Secret::new(common::PASSWORD));
    config.password2 = Secret::new(common::PASSWORD2);
    config.backup_bucket.clone_from(&env.backup_bucket);
    let restore = s32s3_core::Restore::new(config)
        .with_server_config(true)
        .with_restart_timeout(std::time::Duration::from_secs(8));
    let err = rt()
        .block_on(
            restore.run(std::sync::Arc::new(s32s3_core::NoProgress), s32s3_core::CancellationToken::new()),
        )
        .unwrap_err();
    let line = err.to_string();
    assert!(line.contains("has not answered for 8s since it was told to restart"), "{line}");
    assert!(line.contains("process manager") && !line.contains('\n'), "{line}");
}

/// Tag-only changes on a MinIO source: the listing carries the tags (`metadata=true`), so a backup sees a
/// `PutObjectTagging` without any `GetObjectTagging` (none in either run: copies take the listed tags too)
/// and copies no data for it; the restore onto a fresh server has the new tags.
#[test]
#[ignore = "MinIO suite: run by scripts/test-minio (needs RustFS)"]
fn tag_only_changes_come_with_the_listing() {
    let source = fresh_rustfs();
    let bucket = "retag";
    let s3 = source.client();
    rt().block_on(async {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        for i in 0..8 {
            let put = s3.put_object().bucket(bucket).key(format!("o/{i}")).body(pattern(100 + i, 1).into());
            let put = if i < 3 { put.tagging(format!("team=a&n={i}")) } else { put };
            put.send().await.unwrap();
        }
    });
    let env = Env::new(source, testkit::seaweedfs(), "minio-retag");
    let first = env.backup(&[bucket], 0);
    assert_eq!(counts(&first)["new"], 8, "{first}");
    assert!(first["requests"]["source"].get("GetObjectTagging").is_none(), "{first}");

    let want: BTreeMap<String, BTreeMap<String, String>> = rt().block_on(async {
        let t = tagging(&[("team", "b"), ("n", "0")]);
        s3.put_object_tagging().bucket(bucket).key("o/0").tagging(t).send().await.unwrap();
        let t = tagging(&[("new tag", "x y+z=1")]);
        s3.put_object_tagging().bucket(bucket).key("o/5").tagging(t).send().await.unwrap();
        s3.delete_object_tagging().bucket(bucket).key("o/1").send().await.unwrap();
        let mut want = BTreeMap::new();
        for i in 0..8 {
            let key = format!("o/{i}");
            let tags = object_tags(&s3, bucket, &key).await;
            want.insert(key, tags);
        }
        want
    });

    let second = env.backup(&[bucket], 0);
    assert_eq!(second["retagged"]["objects"], 3, "{second}");
    assert_eq!(
        counts(&second),
        BTreeMap::from([("new", 0), ("changed", 0), ("unchanged", 5), ("deleted", 0)])
    );
    assert_eq!(second["tag_checks"], 0);
    let source_requests = &second["requests"]["source"];
    assert!(source_requests.get("GetObjectTagging").is_none(), "{source_requests}");
    assert!(source_requests.get("GetObject").is_none(), "no data read: {source_requests}");
    let recorded: BTreeMap<String, BTreeMap<String, String>> =
        env.manifest().1.into_iter().map(|e| (e.key, e.tags)).collect();
    assert_eq!(recorded, want);

    let target = fresh_rustfs();
    json_run(against(&env, target).args(["restore", "--json", "--bucket", bucket]), 0);
    rt().block_on(async {
        let t3 = target.client();
        for (key, tags) in &want {
            assert_eq!(&object_tags(&t3, bucket, key).await, tags, "{key}");
        }
    });
}
