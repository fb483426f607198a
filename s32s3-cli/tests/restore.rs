//! Restore, point in time, verify and snapshots, end to end against real servers (moto as source and
//! restore target: it keeps every bucket setting S3 has; SeaweedFS holds the backups).

mod common;

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, CorsConfiguration, CorsRule, DefaultRetention,
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, ObjectLockConfiguration,
    ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule, Tag, Tagging, VersioningConfiguration,
};
use common::{Env, create_bucket, history_views, pattern, put, rt};
use s32s3_core::format::manifest::Entry;
use s32s3_core::testkit::{self, ServerKind, TestServer};
use sha2::{Digest, Sha256};

/// Everything a client can see of one object.
#[derive(Debug, PartialEq, Eq)]
struct ObjectView {
    sha256: String,
    size: usize,
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    metadata: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
}

/// Every object of a bucket, by key.
fn bucket_view(server: &TestServer, bucket: &str) -> BTreeMap<String, ObjectView> {
    rt().block_on(async {
        let s3 = server.client();
        let mut out = BTreeMap::new();
        let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
        while let Some(page) = pages.next().await {
            for object in page.unwrap().contents() {
                let key = object.key().unwrap().to_owned();
                let got = s3.get_object().bucket(bucket).key(&key).send().await.unwrap();
                let view_meta = (
                    got.content_type().map(str::to_owned),
                    got.content_encoding().map(str::to_owned),
                    got.content_disposition().map(str::to_owned),
                    got.content_language().map(str::to_owned),
                    got.cache_control().map(str::to_owned),
                    got.metadata()
                        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                        .unwrap_or_default(),
                );
                let body = got.body.collect().await.unwrap().into_bytes();
                let tags = s3.get_object_tagging().bucket(bucket).key(&key).send().await.unwrap();
                out.insert(
                    key,
                    ObjectView {
                        sha256: hex::encode(Sha256::digest(&body)),
                        size: body.len(),
                        content_type: view_meta.0,
                        content_encoding: view_meta.1,
                        content_disposition: view_meta.2,
                        content_language: view_meta.3,
                        cache_control: view_meta.4,
                        metadata: view_meta.5,
                        tags: tags
                            .tag_set()
                            .iter()
                            .map(|t| (t.key().to_owned(), t.value().to_owned()))
                            .collect(),
                    },
                );
            }
        }
        out
    })
}

/// The bucket settings a restore must bring back, as comparable text.
fn bucket_settings(server: &TestServer, bucket: &str) -> BTreeMap<&'static str, String> {
    rt().block_on(async {
        let s3 = server.client();
        let mut out = BTreeMap::new();
        let v = s3.get_bucket_versioning().bucket(bucket).send().await.unwrap();
        out.insert("versioning", format!("{:?}", v.status()));
        if let Ok(l) = s3.get_bucket_lifecycle_configuration().bucket(bucket).send().await {
            out.insert("lifecycle", format!("{:?}", l.rules()));
        }
        if let Ok(p) = s3.get_bucket_policy().bucket(bucket).send().await {
            let policy: serde_json::Value = serde_json::from_str(p.policy().unwrap()).unwrap();
            out.insert("policy", policy.to_string());
        }
        if let Ok(t) = s3.get_bucket_tagging().bucket(bucket).send().await {
            let mut tags: Vec<_> = t.tag_set().iter().map(|t| format!("{}={}", t.key(), t.value())).collect();
            tags.sort();
            out.insert("tagging", tags.join("&"));
        }
        if let Ok(c) = s3.get_bucket_cors().bucket(bucket).send().await {
            out.insert("cors", format!("{:?}", c.cors_rules()));
        }
        if let Ok(o) = s3.get_object_lock_configuration().bucket(bucket).send().await {
            out.insert("object-lock", format!("{:?}", o.object_lock_configuration()));
        }
        out
    })
}

/// Fills three buckets: one with versioning, lifecycle, policy, tags and CORS, one with object lock, one
/// with a large object, all with metadata, tags and tricky keys.
fn fill_source(source: &TestServer, names: &[String; 3]) {
    let [configured, locked, plain] = names;
    create_with_versioning_and_lifecycle(source, configured);
    set_policy_tags_and_cors(source, configured);
    put_tricky_keys_with_headers_metadata_and_tags(source, configured);
    create_locked_with_objects(source, locked);
    rt().block_on(async {
        create_bucket(source, plain).await;
        put(source, plain, "large/object", pattern((7 << 20) + 3, 200)).await;
        put(source, plain, "empty", Vec::new()).await;
    });
}

/// Creates `bucket` with versioning on and a rule expiring `tmp/` after 30 days.
fn create_with_versioning_and_lifecycle(source: &TestServer, bucket: &str) {
    rt().block_on(async {
        let s3 = source.client();
        create_bucket(source, bucket).await;
        s3.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
            )
            .send()
            .await
            .unwrap();
        s3.put_bucket_lifecycle_configuration()
            .bucket(bucket)
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .rules(
                        LifecycleRule::builder()
                            .id("expire-tmp")
                            .status(ExpirationStatus::Enabled)
                            .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
                            .expiration(LifecycleExpiration::builder().days(30).build())
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    });
}

/// Gives `bucket` a policy letting anyone read `public/`, two tags and a CORS rule.
fn set_policy_tags_and_cors(source: &TestServer, bucket: &str) {
    rt().block_on(async {
        let s3 = source.client();
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "PublicRead",
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject"],
                "Resource": [format!("arn:aws:s3:::{bucket}/public/*")]
            }]
        });
        s3.put_bucket_policy().bucket(bucket).policy(policy.to_string()).send().await.unwrap();
        s3.put_bucket_tagging()
            .bucket(bucket)
            .tagging(
                Tagging::builder()
                    .tag_set(Tag::builder().key("team").value("storage").build().unwrap())
                    .tag_set(Tag::builder().key("env").value("prod").build().unwrap())
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        s3.put_bucket_cors()
            .bucket(bucket)
            .cors_configuration(
                CorsConfiguration::builder()
                    .cors_rules(
                        CorsRule::builder()
                            .allowed_methods("GET")
                            .allowed_origins("https://example.com")
                            .max_age_seconds(300)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    });
}

/// Puts objects under tricky keys into `bucket`, each with every header, metadata and tags.
fn put_tricky_keys_with_headers_metadata_and_tags(source: &TestServer, bucket: &str) {
    let keys = ["public/ünï cødé 日本.txt", "a+b%c d.txt", "a//double", "trailing/", "tmp/x"];
    rt().block_on(async {
        let s3 = source.client();
        for (i, key) in keys.iter().enumerate() {
            s3.put_object()
                .bucket(bucket)
                .key(*key)
                .body(ByteStream::from(pattern(1000 + i, i as u64)))
                .content_type("text/plain; charset=utf-8")
                .content_disposition("inline")
                .content_language("fr")
                .cache_control("no-cache")
                .metadata("owner", format!("user-{i}"))
                .tagging(format!("n={i}&kind=doc"))
                .send()
                .await
                .unwrap();
        }
    });
}

/// Creates `bucket` with object lock (one day of governance retention by default) and three objects.
fn create_locked_with_objects(source: &TestServer, bucket: &str) {
    rt().block_on(async {
        let s3 = source.client();
        s3.create_bucket().bucket(bucket).object_lock_enabled_for_bucket(true).send().await.unwrap();
        s3.put_object_lock_configuration()
            .bucket(bucket)
            .object_lock_configuration(
                ObjectLockConfiguration::builder()
                    .object_lock_enabled(ObjectLockEnabled::Enabled)
                    .rule(
                        ObjectLockRule::builder()
                            .default_retention(
                                DefaultRetention::builder()
                                    .mode(ObjectLockRetentionMode::Governance)
                                    .days(1)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        for i in 0..3 {
            let body = pattern(70_000 + i, 100 + i as u64);
            let md5 = {
                use base64::Engine as _;
                use md5::Digest as _;
                base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body))
            };
            s3.put_object()
                .bucket(bucket)
                .key(format!("locked/{i}"))
                .content_md5(md5)
                .body(ByteStream::from(body))
                .send()
                .await
                .unwrap();
        }
    });
}

fn restore_env(env: &Env, target: &TestServer) -> std::process::Command {
    let mut cmd = env.s32s3();
    let t = target.endpoint();
    cmd.env("S32S3_SOURCE_ENDPOINT", &t.endpoint)
        .env("S32S3_SOURCE_ACCESS_KEY_ID", &t.access_key_id)
        .env("S32S3_SOURCE_SECRET_ACCESS_KEY", t.secret_access_key.expose());
    cmd
}

fn json_run(cmd: &mut std::process::Command, code: i32) -> serde_json::Value {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr: {stderr}\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"))
}

/// Disaster recovery: back up three buckets, start a fresh empty server, restore: every bucket, setting,
/// object, byte, header, metadata and tag is equal. A second restore skips everything.
#[test]
fn disaster_recovery_into_a_fresh_server() {
    let env = Env::new(testkit::moto(), testkit::seaweedfs(), "dr");
    let names = [
        env.source.unique_bucket("dr-conf"),
        env.source.unique_bucket("dr-lock"),
        env.source.unique_bucket("dr-plain"),
    ];
    fill_source(env.source, &names);
    let out = env
        .s32s3()
        .args(["backup", "--bucket", &names[0], "--bucket", &names[1], "--bucket", &names[2]])
        .args(["--multipart-threshold", "5M", "--part-size", "5M"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let fresh = TestServer::start(ServerKind::Moto);
    let summary = json_run(
        restore_env(&env, &fresh).args([
            "restore",
            "--json",
            "--multipart-threshold",
            "5M",
            "--part-size",
            "5M",
        ]),
        0,
    );
    assert_eq!(summary["mode"], "manifest");
    assert_eq!(summary["restored"]["objects"], 10, "{summary}");
    for bucket in &names {
        assert_eq!(bucket_view(&fresh, bucket), bucket_view(env.source, bucket), "objects of {bucket}");
        assert_eq!(
            bucket_settings(&fresh, bucket),
            bucket_settings(env.source, bucket),
            "settings of {bucket}"
        );
    }
    let settings = bucket_settings(&fresh, &names[0]);
    for name in ["lifecycle", "policy", "tagging", "cors"] {
        assert!(settings.contains_key(name), "{name} restored: {settings:?}");
    }
    assert!(bucket_settings(&fresh, &names[1])["object-lock"].contains("Governance"));

    // Running it again writes nothing: everything is there and equal.
    let again = json_run(restore_env(&env, &fresh).args(["restore", "--json"]), 0);
    assert_eq!(again["restored"]["objects"], 0, "{again}");
    assert_eq!(again["skipped"]["objects"], 10, "{again}");

    // An object changed in the target is reported and left alone, unless --overwrite.
    rt().block_on(put(&fresh, &names[2], "empty", b"not empty any more".to_vec()));
    let conflict = json_run(restore_env(&env, &fresh).args(["restore", "--json", "--bucket", &names[2]]), 3);
    assert_eq!(conflict["conflicts"][0]["key"], "empty", "{conflict}");
    assert_eq!(bucket_view(&fresh, &names[2])["empty"].size, 18);
    let overwritten = json_run(
        restore_env(&env, &fresh).args(["restore", "--json", "--bucket", &names[2], "--overwrite"]),
        0,
    );
    assert_eq!(overwritten["restored"]["objects"], 1, "{overwritten}");
    assert_eq!(bucket_view(&fresh, &names[2])["empty"].size, 0);
}

/// Three backups with changes, deletions and re-creations between them: `--at` each moment (and between
/// them) restores exactly that moment's state; `--at` before the first is a clear error.
#[test]
fn point_in_time() {
    let env = Env::new(testkit::moto(), testkit::seaweedfs(), "pit");
    let bucket = env.source.unique_bucket("pit-src");
    let state = |server: &TestServer, b: &str| -> BTreeMap<String, String> {
        bucket_view(server, b).into_iter().map(|(k, v)| (k, v.sha256)).collect()
    };
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        put(env.source, &bucket, "a", b"a1".to_vec()).await;
        put(env.source, &bucket, "b", b"b1".to_vec()).await;
    });
    let before_first = time::OffsetDateTime::now_utc() - time::Duration::seconds(5);
    let mut moments = Vec::new();
    let capture = |env: &Env| {
        env.backup(&[&bucket], 0);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let at = time::OffsetDateTime::now_utc();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        (at, state(env.source, &bucket))
    };
    moments.push(capture(&env));
    rt().block_on(async {
        put(env.source, &bucket, "a", b"a2".to_vec()).await;
        env.source.client().delete_object().bucket(&bucket).key("b").send().await.unwrap();
        put(env.source, &bucket, "c", b"c1".to_vec()).await;
    });
    moments.push(capture(&env));
    rt().block_on(async {
        put(env.source, &bucket, "b", b"b-recreated".to_vec()).await;
        env.source.client().delete_object().bucket(&bucket).key("c").send().await.unwrap();
    });
    moments.push(capture(&env));
    assert_ne!(moments[0].1, moments[1].1);
    assert_ne!(moments[1].1, moments[2].1);

    let target = TestServer::start(ServerKind::Moto);
    for (i, (at, expected)) in moments.iter().enumerate() {
        let into = format!("pit-restored-{i}");
        let at = s32s3_core::format_rfc3339(*at);
        json_run(
            restore_env(&env, &target).args([
                "restore",
                "--json",
                "--at",
                &at,
                "--bucket",
                &format!("{bucket}:{into}"),
            ]),
            0,
        );
        assert_eq!(&state(&target, &into), expected, "state at moment {i}");
    }
    let out = restore_env(&env, &target)
        .args([
            "restore",
            "--at",
            &s32s3_core::format_rfc3339(before_first),
            "--bucket",
            &format!("{bucket}:never"),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no snapshot at or before") && stderr.contains("the oldest"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// A backup written only by the real rclone (crypt over a versioned bucket, two syncs with changes)
/// restores correctly as of both times.
#[test]
fn restore_what_rclone_wrote() {
    let env = Env::new(testkit::moto(), testkit::seaweedfs(), "rcl");
    let bucket = env.source.unique_bucket("rcl-src");
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        env.dest.client().create_bucket().bucket(&env.backup_bucket).send().await.unwrap();
        env.dest
            .client()
            .put_bucket_versioning()
            .bucket(&env.backup_bucket)
            .versioning_configuration(
                VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
            )
            .send()
            .await
            .unwrap();
        put(env.source, &bucket, "keep", pattern(100_000, 1)).await;
        put(env.source, &bucket, "change", b"first".to_vec()).await;
        put(env.source, &bucket, "dir/remove", b"gone later".to_vec()).await;
    });
    let dir = tempfile::tempdir().unwrap();
    let config = common::rclone_config(&env, dir.path());
    let sync = || {
        let out = common::rclone(&config)
            .args(["sync", &format!("src:{bucket}"), &format!("crypt:{bucket}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let state = |server: &TestServer, b: &str| -> BTreeMap<String, String> {
        bucket_view(server, b).into_iter().map(|(k, v)| (k, v.sha256)).collect()
    };
    sync();
    let first = state(env.source, &bucket);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let t1 = time::OffsetDateTime::now_utc();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    rt().block_on(async {
        put(env.source, &bucket, "change", b"second".to_vec()).await;
        env.source.client().delete_object().bucket(&bucket).key("dir/remove").send().await.unwrap();
        put(env.source, &bucket, "new", b"added".to_vec()).await;
    });
    sync();
    let second = state(env.source, &bucket);
    assert_ne!(first, second);

    let target = TestServer::start(ServerKind::Moto);
    let at_t1 = json_run(
        restore_env(&env, &target).args([
            "restore",
            "--json",
            "--at",
            &s32s3_core::format_rfc3339(t1),
            "--bucket",
            &format!("{bucket}:first"),
        ]),
        0,
    );
    assert_eq!(at_t1["mode"], "version-listing");
    assert_eq!(state(&target, "first"), first);
    json_run(
        restore_env(&env, &target).args(["restore", "--json", "--bucket", &format!("{bucket}:second")]),
        0,
    );
    assert_eq!(state(&target, "second"), second);
}

/// Re-points one manifest entry at another stored version, the way bit rot or a lost version would look
/// to a reader, and writes that as the newest snapshot.
fn point_entry_at(env: &Env, key: &str, version_id: Option<&str>) {
    rt().block_on(async {
        let store =
            s32s3_core::store::s3::Store::new(s32s3_core::error::Side::Destination, env.dest.endpoint(), 3)
                .unwrap();
        let cipher =
            s32s3_core::derive_cipher(&common::PASSWORD.into(), &common::PASSWORD2.into()).await.unwrap();
        let layout = s32s3_core::format::layout::Layout::new(&cipher, "").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let snaps = s32s3_core::format::snapshots::list(&store, &env.backup_bucket, &layout).await.unwrap();
        let newest = snaps.iter().rev().find(|s| !s.checkpoint).unwrap();
        let reader =
            s32s3_core::format::snapshots::open(&store, &env.backup_bucket, &newest.key, &cipher, dir.path())
                .await
                .unwrap();
        let mut header = reader.header().clone();
        let mut writer = s32s3_core::format::manifest::ManifestWriter::new(dir.path()).unwrap();
        for entry in reader {
            let mut entry = entry.unwrap();
            if entry.key == key {
                entry.version_id = version_id.map(str::to_owned);
            }
            writer.push(&entry).unwrap();
        }
        let finished = newest.finished + time::Duration::seconds(1);
        header.snapshot_id = format!("{}t", &header.snapshot_id[..7]);
        header.finished = s32s3_core::format_rfc3339(finished);
        let (file, len) = writer.encode(&header, &cipher, dir.path()).unwrap();
        let key = s32s3_core::format::snapshots::snapshot_key(&layout, finished, &header.snapshot_id);
        let body = ByteStream::read_from().file(tokio::fs::File::from_std(file)).build().await.unwrap();
        env.dest
            .client()
            .put_object()
            .bucket(&env.backup_bucket)
            .key(key)
            .content_length(i64::try_from(len).unwrap())
            .body(body)
            .send()
            .await
            .unwrap();
    });
}

/// `verify --read-data` finds a flipped byte, a truncated object and a deleted version, by name; a
/// restore of that snapshot restores everything else and exits 3.
#[test]
fn verify_finds_damage_and_restore_goes_on() {
    let env = Env::new(testkit::moto(), testkit::seaweedfs(), "verify");
    let bucket = env.source.unique_bucket("verify-src");
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        for name in ["flipped", "truncated", "deleted", "fine-1", "fine-2"] {
            put(env.source, &bucket, name, pattern(150_000, name.len() as u64)).await;
        }
    });
    env.backup(&[&bucket], 0);
    let clean = json_run(env.s32s3().args(["verify", "--json", "--read-data"]), 0);
    assert_eq!(clean["bad"].as_array().unwrap().len(), 0, "{clean}");
    assert_eq!(clean["read"]["objects"], 5);

    flip_truncate_and_delete_stored_objects(&env);
    verify_names_the_damaged_objects(&env);

    let target = TestServer::start(ServerKind::Moto);
    let restored = json_run(restore_env(&env, &target).args(["restore", "--json"]), 3);
    assert_eq!(restored["restored"]["objects"], 2, "{restored}");
    let failed: Vec<&str> =
        restored["failed"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert_eq!(failed.len(), 3, "{restored}");
    let view = bucket_view(&target, &bucket);
    assert_eq!(
        view.keys().map(String::as_str).collect::<Vec<_>>(),
        ["fine-1", "fine-2"],
        "nothing damaged is written"
    );
}

/// Damages the newest snapshot: `flipped` and `truncated` point at damaged copies of their stored
/// versions, the stored version of `deleted` is deleted.
fn flip_truncate_and_delete_stored_objects(env: &Env) {
    let (_, entries) = env.manifest();
    let stored = |name: &str| entries.iter().find(|e| e.key == name).unwrap().clone();
    let flipped = store_damaged_copy(env, &stored("flipped"), &|b| b[100_000] ^= 0x01);
    point_entry_at(env, "flipped", Some(&flipped));
    let truncated = store_damaged_copy(env, &stored("truncated"), &|b| b.truncate(b.len() - 1000));
    point_entry_at(env, "truncated", Some(&truncated));
    let deleted = stored("deleted");
    rt().block_on(async {
        env.dest
            .client()
            .delete_object()
            .bucket(&env.backup_bucket)
            .key(&deleted.stored_key)
            .version_id(deleted.version_id.clone().unwrap())
            .send()
            .await
            .unwrap();
    });
}

/// Stores `damage` done to the stored version `entry` names as a new version of its stored key; returns
/// that version's id.
fn store_damaged_copy(env: &Env, entry: &Entry, damage: &dyn Fn(&mut Vec<u8>)) -> String {
    rt().block_on(async {
        let s3 = env.dest.client();
        let got = s3
            .get_object()
            .bucket(&env.backup_bucket)
            .key(&entry.stored_key)
            .version_id(entry.version_id.clone().unwrap())
            .send()
            .await
            .unwrap();
        let mut bytes = got.body.collect().await.unwrap().into_bytes().to_vec();
        damage(&mut bytes);
        let put = s3
            .put_object()
            .bucket(&env.backup_bucket)
            .key(&entry.stored_key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .unwrap();
        put.version_id().unwrap().to_owned()
    })
}

/// `verify --read-data` exits 3 and names exactly the three damaged objects, each with its error; `verify`
/// without reading data catches the truncated and the deleted one by their sizes.
fn verify_names_the_damaged_objects(env: &Env) {
    let report = json_run(env.s32s3().args(["verify", "--json", "--read-data"]), 3);
    let bad: BTreeMap<String, String> = report["bad"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["key"].as_str().unwrap().to_owned(), b["error"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        bad.keys().map(String::as_str).collect::<Vec<_>>(),
        ["deleted", "flipped", "truncated"],
        "{report}"
    );
    assert!(bad["flipped"].contains("authenticate"), "{}", bad["flipped"]);
    assert!(bad["truncated"].contains("expected"), "{}", bad["truncated"]);
    assert!(bad["deleted"].contains("missing"), "{}", bad["deleted"]);
    // Sizes alone already catch the truncated and the deleted object.
    let sizes = json_run(env.s32s3().args(["verify", "--json"]), 3);
    assert_eq!(sizes["bad"].as_array().unwrap().len(), 2, "{sizes}");
}

/// `snapshots` lists every snapshot with its status and counts.
#[test]
fn snapshots_lists_them() {
    let env = Env::new(testkit::moto(), testkit::seaweedfs(), "snaps");
    let bucket = env.source.unique_bucket("snaps-src");
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        put(env.source, &bucket, "x", b"12345".to_vec()).await;
    });
    let first = env.backup(&[&bucket], 0);
    let second = env.backup(&[&bucket], 0);
    let list = json_run(env.s32s3().args(["snapshots", "--json"]), 0);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], first["snapshot_id"]);
    assert_eq!(list[1]["id"], second["snapshot_id"]);
    assert_eq!(list[1]["parent"], first["snapshot_id"]);
    for s in list {
        assert_eq!(s["status"], "complete");
        assert_eq!(s["objects"], 1);
        assert_eq!(s["bytes"], 5);
        assert_eq!(s["buckets"][0], bucket);
    }
    let table = env.s32s3().arg("snapshots").output().unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains(first["snapshot_id"].as_str().unwrap()) && text.contains("complete"), "{text}");
}

/// Creates the versioned `bucket` on `server` with a history: `doc` in three versions, each with its own
/// content type, metadata and tags; `gone` deleted; `again` deleted and written again.
fn fill_history(server: &TestServer, bucket: &str) {
    // A second apart: the source's history is read from its listing.
    let step = || std::thread::sleep(std::time::Duration::from_millis(1100));
    rt().block_on(async {
        create_bucket(server, bucket).await;
        let versioning = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
        let s3 = server.client();
        s3.put_bucket_versioning().bucket(bucket).versioning_configuration(versioning).send().await.unwrap();
    });
    let put_version = |key: &str, body: &str, kind: &str, n: &str| {
        rt().block_on(async {
            let s3 = server.client();
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(body.as_bytes().to_vec()))
                .content_type(kind)
                .metadata("n", n)
                .tagging(format!("n={n}"))
                .send()
                .await
                .unwrap();
        });
    };
    let delete = |key: &str| {
        rt().block_on(async {
            server.client().delete_object().bucket(bucket).key(key).send().await.unwrap()
        });
    };
    put_version("doc", "first", "text/plain", "1");
    put_version("gone", "gone soon", "text/plain", "1");
    put_version("again", "again, first", "text/plain", "1");
    step();
    put_version("doc", "{\"second\": true}", "application/json", "2");
    delete("gone");
    delete("again");
    step();
    put_version("doc", "third", "text/markdown", "3");
    put_version("again", "again, second", "text/csv", "2");
}

/// `--source-versions` end to end through the binary: a versioned bucket's history (versions with their own
/// content type, metadata and tags, a key deleted, one deleted and written again) is backed up, shown by
/// `snapshots`, verified, and replayed into a new bucket version by version; a bucket without versioning
/// is refused in one line.
#[test]
fn source_versions_are_backed_up_and_replayed() {
    let env = Env::new(testkit::moto(), testkit::seaweedfs(), "history");
    let bucket = env.source.unique_bucket("history");
    fill_history(env.source, &bucket);
    let want = history_views(env.source, &bucket);
    assert_eq!(want["doc"].versions.len(), 3);
    assert!(want["gone"].latest_is_delete_marker && !want["again"].latest_is_delete_marker);

    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("s32s3.prom");
    let mut backup = env.s32s3();
    backup.env("S32S3_SOURCE_VERSIONS", "true").args(["backup", "--json", "--bucket", &bucket]);
    let out = backup.arg("--metrics-file").arg(&metrics).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["history"]["versions"], 6, "{summary}");
    assert_eq!(summary["history"]["delete_markers"], 2, "{summary}");
    assert_eq!(summary["history"]["versions_copied"], 4, "{summary}");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let m = common::Metrics::parse(&text);
    for (kind, value) in
        [("versions", 6.0), ("delete_markers", 2.0), ("copied_from_source", 4.0), ("dropped", 0.0)]
    {
        assert_eq!(m.get("s32s3_last_run_history", &[("kind", kind)]), Some(value), "{kind}: {text}");
    }

    let out = env.s32s3().arg("snapshots").output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("source history: 6 versions, 2 delete markers"), "{shown}");
    let out = env.s32s3().args(["verify", "--read-data", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let verified: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 2 current objects and 4 stored versions.
    assert_eq!(verified["checked"]["objects"], 6, "{verified}");

    let target = env.source.unique_bucket("replayed");
    let mapping = format!("{bucket}:{target}");
    let replay = |extra: &[&str]| {
        let mut cmd = env.s32s3();
        cmd.args(["restore", "--source-versions", "--json", "--no-iam", "--bucket", &mapping]).args(extra);
        cmd.output().unwrap()
    };
    let out = replay(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let restored: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&restored["restored"]["objects"], &restored["delete_markers"]),
        (&6.into(), &2.into()),
        "{restored}"
    );
    assert_eq!(history_views(env.source, &target), want);

    // Into a bucket without versioning (and no configuration to turn it on): one line, nothing written.
    let plain = env.source.unique_bucket("plain");
    rt().block_on(create_bucket(env.source, &plain));
    let mut cmd = env.s32s3();
    let mapping = format!("{bucket}:{plain}");
    cmd.args(["restore", "--source-versions", "--no-iam", "--no-config", "--bucket", &mapping]);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("does not keep versions"), "{stderr}");
    assert!(history_views(env.source, &plain).is_empty());
}
