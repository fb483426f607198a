//! Data safety, end to end with the real binary against real servers (issue 11, items 3 and 5 to 8): what
//! vanishes mid-run is not deleted, manifests count only under their own names, restore puts back what
//! would get in its way only after the data, retention dates that passed are not sent again, rclone-made
//! backups restore by listing order at full precision and run again without conflicts, a time pasted from
//! `snapshots` selects that snapshot, two prefixes keep their lifecycle rules, a destination without
//! version ids is refused, and verify tells unreadable from damaged.

mod common;

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, ExpirationStatus, LifecycleExpiration,
    LifecycleRule, LifecycleRuleFilter, ObjectLockLegalHoldStatus, ObjectLockMode, VersioningConfiguration,
};
use common::{Env, create_bucket, pattern, put, rt};
use s32s3_core::format::layout::Layout;
use s32s3_core::testkit::proxy::{Fault, FaultProxy, Match, Rule};
use s32s3_core::testkit::{self, ServerKind, TestServer};

fn run(cmd: &mut std::process::Command, code: i32) -> (serde_json::Value, String) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr: {stderr}\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (json, stderr)
}

/// The command restoring into `target` (restore writes into the configured source endpoint).
fn restore_into(env: &Env, target: &s32s3_core::S3Endpoint) -> std::process::Command {
    let mut cmd = env.s32s3();
    cmd.env("S32S3_SOURCE_ENDPOINT", &target.endpoint)
        .env("S32S3_SOURCE_ACCESS_KEY_ID", &target.access_key_id)
        .env("S32S3_SOURCE_SECRET_ACCESS_KEY", target.secret_access_key.expose());
    cmd
}

fn body(server: &TestServer, bucket: &str, key: &str) -> Vec<u8> {
    rt().block_on(async {
        let out = server.client().get_object().bucket(bucket).key(key).send().await.unwrap();
        out.body.collect().await.unwrap().to_vec()
    })
}

/// Every key of a bucket with its versions: (version id, delete marker).
fn versions(server: &TestServer, bucket: &str) -> BTreeMap<String, Vec<(String, bool)>> {
    rt().block_on(async {
        let page = server.client().list_object_versions().bucket(bucket).send().await.unwrap();
        assert_ne!(page.is_truncated(), Some(true), "a test bucket fits one page");
        let mut out: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
        for v in page.versions() {
            out.entry(v.key().unwrap().to_owned())
                .or_default()
                .push((v.version_id().unwrap_or("").into(), false));
        }
        for m in page.delete_markers() {
            out.entry(m.key().unwrap().to_owned())
                .or_default()
                .push((m.version_id().unwrap_or("").into(), true));
        }
        out
    })
}

/// Objects deleted at the source between the listing and their copy (the copy's read answers 404) are
/// reported and carried over at their previous version: no delete marker, even when a whole bucket
/// vanishes, far past `max_delete`. The next complete run copies them again. (Before, each one went onto
/// the delete list, past `max_delete` and past the rule that a vanished bucket keeps its backup.)
#[test]
fn objects_that_vanish_mid_run_are_carried_over_not_deleted() {
    let env = Env::new(testkit::seaweedfs(), testkit::moto(), "vanish");
    let bucket = env.source.unique_bucket("vanish-src");
    let keys: Vec<String> = (0..10).map(|i| format!("obj/{i}")).collect();
    let fill = |round: u64| {
        rt().block_on(async {
            for (i, key) in keys.iter().enumerate() {
                put(env.source, &bucket, key, pattern(1000, round * 100 + i as u64)).await;
            }
        });
    };
    rt().block_on(create_bucket(env.source, &bucket));
    fill(1);
    env.backup(&[&bucket], 0);
    let stored_keys = |entries: &[s32s3_core::format::manifest::Entry]| -> Vec<String> {
        entries.iter().map(|e| e.stored_key.clone()).collect()
    };
    let (_, first) = env.manifest();

    let proxy = FaultProxy::start(&env.source.endpoint());
    let through_proxy = |rules: Vec<Rule>, code: i32| {
        proxy.set_rules(rules);
        let mut cmd = env.s32s3();
        cmd.args(["backup", "--json", "--bucket", &bucket])
            .env("S32S3_SOURCE_ENDPOINT", &proxy.endpoint().endpoint);
        run(&mut cmd, code).0
    };
    let gone = |path: &str, code: &'static str| {
        Rule::new(Match::method("GET").with_path_contains(path), Fault::Error { status: 404, code })
    };
    // Two objects vanish.
    fill(2);
    let summary = through_proxy(vec![gone("/obj/3", "NoSuchKey"), gone("/obj/7", "NoSuchKey")], 0);
    assert_eq!(summary["status"], "complete", "{summary}");
    assert_eq!(summary["deleted"]["objects"], 0, "{summary}");
    let vanished: Vec<&str> =
        summary["vanished"].as_array().unwrap().iter().map(|v| v["key"].as_str().unwrap()).collect();
    assert_eq!(vanished, ["obj/3", "obj/7"], "{summary}");
    let (_, second) = env.manifest();
    assert_eq!(second.len(), 10);
    for key in ["obj/3", "obj/7"] {
        let was = first.iter().find(|e| e.key == key).unwrap();
        let now = second.iter().find(|e| e.key == key).unwrap();
        assert_eq!(now, was, "carried over as it was");
    }
    // The whole bucket vanishes: every read answers NoSuchBucket.
    fill(3);
    let summary = through_proxy(
        vec![Rule::new(
            Match::method("GET").with_path_contains("/obj/"),
            Fault::Error { status: 404, code: "NoSuchBucket" },
        )],
        0,
    );
    assert_eq!(summary["vanished"].as_array().unwrap().len(), 10, "{summary}");
    assert_eq!(summary["deleted"]["objects"], 0, "{summary}");
    let history = versions(env.dest, &env.backup_bucket);
    for key in stored_keys(&first) {
        assert!(history[&key].iter().all(|(_, marker)| !marker), "{key} got a delete marker: {history:?}");
    }
    // A run that reads them again copies them.
    let summary = through_proxy(Vec::new(), 0);
    assert_eq!(summary["changed"]["objects"], 10, "{summary}");
    assert!(summary["vanished"].as_array().unwrap().is_empty());
}

/// Manifests count only under their own names: an older manifest copied to a newer name (a replay) and
/// an object that does not decrypt, both newer than the real newest snapshot, are reported by name and
/// skipped; `restore` takes the real newest, the next backup is incremental to it, and asking for the
/// replayed one by id is refused in one line. (Before, the replay was restored and the undecryptable
/// one stopped every backup.)
#[test]
fn manifests_count_only_under_their_own_names() {
    let env = Env::new(testkit::moto(), testkit::seaweedfs(), "bound");
    let bucket = env.source.unique_bucket("bound-src");
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        put(env.source, &bucket, "k", b"first".to_vec()).await;
    });
    let first = env.backup(&[&bucket], 0);
    rt().block_on(put(env.source, &bucket, "k", b"second".to_vec()));
    let second = env.backup(&[&bucket], 0);
    let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let (replay_id, junk_id) = ("5eb1a7ed", "0bad0bad");
    rt().block_on(async {
        let cipher =
            s32s3_core::derive_cipher(&common::PASSWORD.into(), &common::PASSWORD2.into()).await.unwrap();
        let layout = s32s3_core::format::layout::Layout::new(&cipher, "").unwrap();
        let s3 = env.dest.client();
        let replay = s32s3_core::format::snapshots::snapshot_key(&layout, later, replay_id);
        let source = format!("{}/{}", env.backup_bucket, first["manifest"].as_str().unwrap());
        s3.copy_object().bucket(&env.backup_bucket).key(&replay).copy_source(source).send().await.unwrap();
        let junk =
            s32s3_core::format::snapshots::snapshot_key(&layout, later + time::Duration::seconds(1), junk_id);
        let bytes = pattern(5000, 9);
        s3.put_object()
            .bucket(&env.backup_bucket)
            .key(&junk)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .unwrap();
    });
    let (listed, _) = run(env.s32s3().args(["snapshots", "--json"]), 0);
    let rows = listed.as_array().unwrap();
    let row = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("{id}: {listed}"));
    assert!(row(replay_id)["error"].as_str().unwrap().contains("not the manifest its name says"), "{listed}");
    assert!(row(junk_id)["error"].is_string(), "{listed}");

    let target = TestServer::start(ServerKind::Moto);
    let (restored, stderr) = run(
        restore_into(&env, &target.endpoint()).args([
            "restore",
            "--json",
            "--bucket",
            &format!("{bucket}:back"),
        ]),
        0,
    );
    assert_eq!(restored["snapshot_id"], second["snapshot_id"], "{restored}");
    assert_eq!(body(&target, "back", "k"), b"second");
    assert!(stderr.contains(replay_id) && stderr.contains(junk_id), "both reported: {stderr}");

    let third = env.backup(&[&bucket], 0);
    assert_eq!(third["parent"], second["snapshot_id"], "{third}");
    assert_eq!(third["unchanged"]["objects"], 1, "{third}");

    let (_, stderr) = run(env.s32s3().args(["verify", "--snapshot", replay_id]), 1);
    assert!(stderr.contains("not the manifest its name says"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// The restore's own requests, in order, as the target saw them: the bucket policy, lifecycle and
/// notification configuration go back only after every object (a `Deny` policy would refuse the
/// restore's own writes, a webhook would get an event per object), and a retention date that has passed
/// is not sent again (servers refuse it), nor a mode without a date; a date still ahead is.
#[test]
fn restore_sends_what_would_get_in_its_way_after_the_data() {
    let env = Env::new(testkit::moto(), testkit::seaweedfs(), "order");
    let bucket = env.source.unique_bucket("order-src");
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    fill_locked_bucket_with_deny_policy_and_lifecycle(&env, &bucket, soon, later);
    env.backup(&[&bucket], 0);
    // The first retention date passes between the backup and the restore.
    std::thread::sleep((soon - time::OffsetDateTime::now_utc() + time::Duration::seconds(1)).unsigned_abs());

    let target = TestServer::start(ServerKind::Moto);
    let proxy = FaultProxy::start(&target.endpoint());
    run(
        restore_into(&env, &proxy.endpoint()).args([
            "restore",
            "--json",
            "--bucket",
            &format!("{bucket}:back"),
        ]),
        0,
    );
    let requests = proxy.requests();
    assert_policy_and_lifecycle_after_the_last_object(&requests);
    assert_retention_sent_only_while_ahead(&requests);
    assert!(
        rt().block_on(target.client().get_bucket_policy().bucket("back").send())
            .unwrap()
            .policy()
            .unwrap()
            .contains("Deny"),
        "the policy is back"
    );
}

/// Creates `bucket` with object lock and fills it: five plain objects, `locked/soon` and `locked/later`
/// in governance mode until `soon` and `later`, then a policy denying `s3:PutObject` and a lifecycle rule.
fn fill_locked_bucket_with_deny_policy_and_lifecycle(
    env: &Env,
    bucket: &str,
    soon: time::OffsetDateTime,
    later: time::OffsetDateTime,
) {
    let date = |t: time::OffsetDateTime| aws_smithy_types::DateTime::from_secs(t.unix_timestamp());
    rt().block_on(async {
        let s3 = env.source.client();
        s3.create_bucket().bucket(bucket).object_lock_enabled_for_bucket(true).send().await.unwrap();
        for i in 0..5 {
            put(env.source, bucket, &format!("plain/{i}"), pattern(100, i)).await;
        }
        for (key, until) in [("locked/soon", soon), ("locked/later", later)] {
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from_static(b"locked"))
                .object_lock_mode(ObjectLockMode::Governance)
                .object_lock_retain_until_date(date(until))
                .object_lock_legal_hold_status(ObjectLockLegalHoldStatus::Off)
                // S3 wants an integrity header on writes with retention: MD5 of "locked".
                .content_md5("TO8vMKx9M0GdAMHZOgkAlQ==")
                .send()
                .await
                .unwrap();
        }
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::{bucket}/*"}}]}}"#
        );
        s3.put_bucket_policy().bucket(bucket).policy(policy).send().await.unwrap();
        let rule = LifecycleRule::builder()
            .id("expire-tmp")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
            .expiration(LifecycleExpiration::builder().days(1).build())
            .build()
            .unwrap();
        s3.put_bucket_lifecycle_configuration()
            .bucket(bucket)
            .lifecycle_configuration(BucketLifecycleConfiguration::builder().rules(rule).build().unwrap())
            .send()
            .await
            .unwrap();
    });
}

/// The restore put the policy and the lifecycle rules of `back` only after its last object.
fn assert_policy_and_lifecycle_after_the_last_object(requests: &[testkit::proxy::LoggedRequest]) {
    let position = |what: &dyn Fn(&testkit::proxy::LoggedRequest) -> bool| requests.iter().position(what);
    let last_object = requests
        .iter()
        .rposition(|r| r.method == "PUT" && r.target.starts_with("/back/"))
        .expect("objects were written");
    for sub in ["policy", "lifecycle"] {
        let at = position(&|r| r.method == "PUT" && r.target == format!("/back?{sub}"))
            .unwrap_or_else(|| panic!("no PUT ?{sub}: {requests:#?}"));
        assert!(at > last_object, "?{sub} at {at}, before the last object at {last_object}");
    }
}

/// The restore sent no retention for `locked/soon`, whose date passed, and `locked/later`'s, still ahead.
fn assert_retention_sent_only_while_ahead(requests: &[testkit::proxy::LoggedRequest]) {
    let header = |key: &str, name: &str| {
        requests
            .iter()
            .find(|r| r.method == "PUT" && r.target.split('?').next() == Some(&format!("/back/{key}")))
            .unwrap_or_else(|| panic!("no PUT of {key}"))
            .header(name)
            .map(str::to_owned)
    };
    assert_eq!(header("locked/soon", "x-amz-object-lock-retain-until-date"), None, "a date that passed");
    assert_eq!(header("locked/soon", "x-amz-object-lock-mode"), None, "no mode without a date");
    assert!(header("locked/later", "x-amz-object-lock-retain-until-date").is_some(), "a date still ahead");
    assert_eq!(header("locked/later", "x-amz-object-lock-mode").as_deref(), Some("GOVERNANCE"));
}

/// A bucket that vanished from the source is kept in the snapshots; a restore of everything says that
/// it skipped it, and how to restore it.
#[test]
fn buckets_lost_from_the_source_are_reported_by_a_restore() {
    let env = Env::new(testkit::moto(), testkit::seaweedfs(), "lost");
    let (kept, lost) = (env.source.unique_bucket("lost-kept"), env.source.unique_bucket("lost-gone"));
    rt().block_on(async {
        for b in [&kept, &lost] {
            create_bucket(env.source, b).await;
            put(env.source, b, "k", b"v".to_vec()).await;
        }
    });
    env.backup(&[&kept, &lost], 0);
    rt().block_on(async {
        env.source.client().delete_object().bucket(&lost).key("k").send().await.unwrap();
        env.source.client().delete_bucket().bucket(&lost).send().await.unwrap();
    });
    // The other tests' buckets on this shared server are left out; the lost one is still in the snapshot.
    env.backup(&[&kept], 0);
    let target = TestServer::start(ServerKind::Moto);
    let (restored, _) =
        run(restore_into(&env, &target.endpoint()).args(["restore", "--json", "--no-config"]), 0);
    let notes = restored["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n.as_str().unwrap().contains(&format!("bucket {lost} skipped"))
            && n.as_str().unwrap().contains(&format!("--bucket {lost}"))),
        "{restored}"
    );
    assert!(restored["buckets"].as_array().unwrap().iter().any(|b| *b == kept.as_str()));
    assert!(!restored["buckets"].as_array().unwrap().iter().any(|b| *b == lost.as_str()));
}

/// Writes `plain` as rclone crypt writes `bucket/key` into the (versioned, manifest-less) backup bucket.
async fn put_like_rclone(env: &Env, layout: &Layout, key: &str, plain: &[u8]) {
    let cipher = s32s3_crypt::Cipher::new(common::PASSWORD, common::PASSWORD2).unwrap();
    let sealed = cipher.encrypt(&s32s3_crypt::Nonce::random().unwrap(), plain);
    let stored = layout.data_key("src", key).unwrap();
    assert!(!stored.overflow);
    env.dest
        .client()
        .put_object()
        .bucket(&env.backup_bucket)
        .key(stored.key)
        .metadata("mtime", "1700000000")
        .body(ByteStream::from(sealed))
        .send()
        .await
        .unwrap();
}

/// A backup rclone made, restored at a point in time: versions are compared at the precision the server
/// lists them, and of versions (and delete markers) with the same time the one listed first, the newer,
/// wins. Run again, the restore finds what it wrote equal (the stored mtime travels with each object):
/// no conflict. (Before, a tie went to the older version, and every object restored from an rclone
/// backup was a conflict on the next run.)
#[test]
fn rclone_made_backups_restore_in_listing_order_and_run_again_without_conflicts() {
    let env = Env::new(testkit::moto(), testkit::moto(), "rcl-order");
    let layout = rt().block_on(async {
        let cipher =
            s32s3_core::derive_cipher(&common::PASSWORD.into(), &common::PASSWORD2.into()).await.unwrap();
        s32s3_core::format::layout::Layout::new(&cipher, "").unwrap()
    });
    let second = rclone_writes_within_one_listed_second(&env, &layout);
    let at = time::OffsetDateTime::from_unix_timestamp(second).unwrap();
    let target = TestServer::start(ServerKind::Moto);
    let restore = || {
        run(
            restore_into(&env, &target.endpoint()).args([
                "restore",
                "--json",
                "--at",
                &s32s3_core::format_rfc3339(at),
                "--bucket",
                "src:back",
            ]),
            0,
        )
        .0
    };
    let first = restore();
    assert_eq!(first["mode"], "version-listing", "{first}");
    assert_eq!(first["restored"]["objects"], 2, "{first}");
    assert_eq!(body(&target, "back", "twice"), b"newer");
    assert_eq!(body(&target, "back", "plain"), b"plain");
    let keys: Vec<String> = rt().block_on(async {
        let out = target.client().list_objects_v2().bucket("back").send().await.unwrap();
        out.contents().iter().map(|o| o.key().unwrap().to_owned()).collect()
    });
    assert_eq!(keys, ["plain", "twice"], "the delete marker hides its key");
    // Interrupted after one object: run again.
    rt().block_on(async {
        target.client().delete_object().bucket("back").key("plain").send().await.unwrap()
    });
    let again = restore();
    assert_eq!(again["conflicts"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["skipped"]["objects"], 1, "{again}");
    assert_eq!(again["restored"]["objects"], 1, "{again}");
}

/// Two versions of one key, and a version and a delete marker of another, within one listed second,
/// written as rclone writes them into the backup bucket; returns that second (as a Unix time).
fn rclone_writes_within_one_listed_second(env: &Env, layout: &Layout) -> i64 {
    loop {
        write_versions_like_rclone(env, layout);
        let times = version_times(env);
        if times.iter().all(|t| *t == times[0]) {
            break times[0];
        }
        // A second boundary fell between the writes: start over in a fresh bucket.
        delete_every_version(env);
    }
}

/// In the (versioned) backup bucket: `twice` written twice, `deleted` written then deleted, `plain`.
fn write_versions_like_rclone(env: &Env, layout: &Layout) {
    let bucket = env.backup_bucket.clone();
    rt().block_on(async {
        let s3 = env.dest.client();
        let _ = s3.create_bucket().bucket(&bucket).send().await;
        s3.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
            )
            .send()
            .await
            .unwrap();
        put_like_rclone(env, layout, "twice", b"older").await;
        put_like_rclone(env, layout, "twice", b"newer").await;
        put_like_rclone(env, layout, "deleted", b"there").await;
        let stored = layout.data_key("src", "deleted").unwrap().key;
        s3.delete_object().bucket(&bucket).key(stored).send().await.unwrap();
        put_like_rclone(env, layout, "plain", b"plain").await;
    });
}

/// The listed times, in whole seconds, of every version and delete marker in the backup bucket.
fn version_times(env: &Env) -> Vec<i64> {
    rt().block_on(async {
        let page = env.dest.client().list_object_versions().bucket(&env.backup_bucket).send().await.unwrap();
        page.versions()
            .iter()
            .map(|v| v.last_modified().unwrap().secs())
            .chain(page.delete_markers().iter().map(|m| m.last_modified().unwrap().secs()))
            .collect()
    })
}

/// Deletes every version and delete marker in the backup bucket (one listing page).
fn delete_every_version(env: &Env) {
    rt().block_on(async {
        let page = env.dest.client().list_object_versions().bucket(&env.backup_bucket).send().await.unwrap();
        for v in page.versions() {
            env.dest
                .client()
                .delete_object()
                .bucket(&env.backup_bucket)
                .key(v.key().unwrap())
                .version_id(v.version_id().unwrap())
                .send()
                .await
                .unwrap();
        }
        for m in page.delete_markers() {
            env.dest
                .client()
                .delete_object()
                .bucket(&env.backup_bucket)
                .key(m.key().unwrap())
                .version_id(m.version_id().unwrap())
                .send()
                .await
                .unwrap();
        }
    });
}

/// What `snapshots` prints in its FINISHED column, pasted into `--at`, selects that snapshot, and so does
/// the same time cut to the second (it covers the whole second).
#[test]
fn a_time_pasted_from_snapshots_selects_that_snapshot() {
    let env = Env::new(testkit::moto(), testkit::seaweedfs(), "paste");
    let bucket = env.source.unique_bucket("paste-src");
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        put(env.source, &bucket, "k", b"v".to_vec()).await;
    });
    let summary = env.backup(&[&bucket], 0);
    let id = summary["snapshot_id"].as_str().unwrap();
    let out = env.s32s3().arg("snapshots").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{text}"));
    let finished = line.split_whitespace().nth(1).unwrap().to_owned();
    let to_second = format!("{}Z", finished.split('.').next().unwrap());
    assert_ne!(finished, to_second, "{line}");
    for at in [finished, to_second] {
        let (chosen, _) = run(env.s32s3().args(["restore", "--json", "--dry-run", "--at", &at]), 0);
        assert_eq!(chosen["snapshot_id"], id, "--at {at}: {chosen}");
    }
}

/// Two backup locations under two prefixes of one bucket keep each other's lifecycle rules, each with its
/// own expiration.
#[test]
fn two_prefixes_of_one_bucket_keep_their_own_lifecycle_rules() {
    let env = Env::new(testkit::moto(), testkit::moto(), "prefixes");
    let bucket = env.source.unique_bucket("prefixes-src");
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        put(env.source, &bucket, "k", b"v".to_vec()).await;
    });
    let backup = |prefix: &str, days: &str| {
        let mut cmd = env.s32s3();
        cmd.args(["backup", "--json", "--bucket", &bucket])
            .env("S32S3_BACKUP_PREFIX", prefix)
            .env("S32S3_EXPIRATION_DAYS", days);
        run(&mut cmd, 0);
    };
    backup("team-a", "7");
    backup("team-b", "30");
    backup("team-a", "7");
    let rules = rt().block_on(async {
        let out = env
            .dest
            .client()
            .get_bucket_lifecycle_configuration()
            .bucket(&env.backup_bucket)
            .send()
            .await
            .unwrap();
        out.rules().to_vec()
    });
    let expirations: BTreeMap<String, i32> = rules
        .iter()
        .filter_map(|r| {
            let days = r.noncurrent_version_expiration()?.noncurrent_days()?;
            Some((r.filter()?.prefix()?.to_owned(), days))
        })
        .collect();
    assert_eq!(
        expirations,
        BTreeMap::from([("team-a/".to_owned(), 7), ("team-b/".to_owned(), 30)]),
        "{rules:#?}"
    );
    assert_eq!(rules.len(), 6, "three rules per location: {rules:#?}");
}

/// A destination that takes versioning but returns no version ids (here: a proxy removes the header) is
/// refused in one line before any data is written.
#[test]
fn a_destination_without_version_ids_is_refused_before_any_write() {
    let env = Env::new(testkit::moto(), testkit::seaweedfs(), "noversions");
    let bucket = env.source.unique_bucket("noversions-src");
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        put(env.source, &bucket, "k", b"v".to_vec()).await;
    });
    let proxy = FaultProxy::start(&env.dest.endpoint());
    proxy.set_rules(vec![Rule::new(Match::any(), Fault::StripResponseHeader("x-amz-version-id"))]);
    let mut cmd = env.s32s3();
    cmd.args(["backup", "--json", "--bucket", &bucket])
        .env("S32S3_DESTINATION_ENDPOINT", &proxy.endpoint().endpoint);
    let (_, stderr) = run(&mut cmd, 2);
    assert!(stderr.contains("returned no version id"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let current = rt().block_on(async {
        let out = env.dest.client().list_objects_v2().bucket(&env.backup_bucket).send().await.unwrap();
        out.contents().iter().map(|o| o.key().unwrap().to_owned()).collect::<Vec<_>>()
    });
    assert!(current.is_empty(), "nothing written: {current:?}");
}

/// An object that changed while it was read (its GET answers 412) is listed again, through every page of
/// keys that start with it, with its key decoded, and copied as it is now.
#[test]
fn a_changed_object_is_listed_again_and_copied() {
    let env = Env::new(testkit::seaweedfs(), testkit::moto(), "relist");
    let bucket = env.source.unique_bucket("relist-src");
    let key = "dir/ä b+c";
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        put(env.source, &bucket, key, b"current".to_vec()).await;
        let more: Vec<(String, Vec<u8>)> = (0..1100).map(|i| (format!("{key}/{i:04}"), vec![1])).collect();
        common::put_many(env.source, &bucket, more).await;
    });
    let proxy = FaultProxy::start(&env.source.endpoint());
    proxy.set_rules(vec![
        Rule::new(
            Match::method("GET").with_path_contains("/dir/%C3%A4%20b%2Bc").with_header("if-match"),
            Fault::Error { status: 412, code: "PreconditionFailed" },
        )
        .with_limit(1),
    ]);
    let mut cmd = env.s32s3();
    cmd.args(["backup", "--json", "--bucket", &bucket])
        .env("S32S3_SOURCE_ENDPOINT", &proxy.endpoint().endpoint);
    let (summary, _) = run(&mut cmd, 0);
    assert_eq!(summary["status"], "complete", "{summary}");
    assert_eq!(summary["new"]["objects"], 1101, "{summary}");
    assert_eq!(proxy.stats().errors, 1);
    let lists = proxy.requests().iter().filter(|r| r.target.contains("list-type=2")).count();
    assert!(lists > 2, "the bucket's listing (2 pages) and the relist's: {lists}");
}

/// `verify --read-data` through a connection that breaks in the middle of one object's body every time:
/// the read resumes where the body broke off (a ranged GET from the first byte not yet read), until it
/// stops getting anywhere; what stays unreadable is reported as unreadable, not as damaged; everything
/// else verifies.
#[test]
fn verify_tells_unreadable_from_damaged() {
    let env = Env::new(testkit::moto(), testkit::seaweedfs(), "unreadable");
    let bucket = env.source.unique_bucket("unreadable-src");
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        for i in 0..5 {
            put(env.source, &bucket, &format!("k{i}"), pattern(300_000, i)).await;
        }
    });
    env.backup(&[&bucket], 0);
    let (_, entries) = env.manifest();
    let victim = &entries[2];
    let proxy = FaultProxy::start(&env.dest.endpoint());
    proxy.set_rules(vec![Rule::new(
        Match::method("GET").with_path_contains(&victim.stored_key),
        Fault::ResetMidResponseBody,
    )]);
    let mut cmd = env.s32s3();
    cmd.args(["verify", "--read-data", "--json"])
        .env("S32S3_DESTINATION_ENDPOINT", &proxy.endpoint().endpoint)
        .env("S32S3_RETRIES", "3");
    let (summary, _) = run(&mut cmd, 3);
    assert!(summary["bad"].as_array().unwrap().is_empty(), "{summary}");
    let unreadable = summary["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1, "{summary}");
    assert_eq!(unreadable[0]["key"], victim.key.as_str());
    assert_eq!(summary["read"]["objects"], 5, "{summary}");
    // Every attempt after the first asks for the rest only: its range starts where the last one broke
    // off, never earlier. It gives up after 3 failed attempts since the last progress (S32S3_RETRIES): the
    // read that got somewhere and broke, and two more from the byte it reached.
    let starts: Vec<u64> = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.target.contains(&victim.stored_key))
        .map(|r| {
            let range = r.header("range").expect("every read is ranged");
            range.trim_start_matches("bytes=").split('-').next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(starts.len() as u64, proxy.stats().reset_mid_response_body, "every read broke off");
    assert!(starts.len() >= 3, "{starts:?}");
    assert_eq!(starts[0], 0, "{starts:?}");
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "resumed, never read again from the start: {starts:?}");
    assert!(starts.windows(2).any(|w| w[0] < w[1]), "some resumption got further: {starts:?}");
    let stalled = starts.windows(2).rev().take_while(|w| w[0] == w[1]).count();
    assert_eq!(stalled, 1, "the last two reads started at the same byte: {starts:?}");
}
