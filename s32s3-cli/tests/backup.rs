//! `s32s3 backup` end to end, against real SeaweedFS and moto servers and the real rclone binary.

mod common;

use std::collections::BTreeMap;
use std::process::Child;

use aws_sdk_s3::primitives::ByteStream;
use common::{Env, counts, create_bucket, object_tags, pattern, put, put_many, rt, tagging};
use s32s3_core::format::manifest::Entry;
use s32s3_core::testkit;
use sha2::{Digest, Sha256};

/// First backup, then change 3 of 1,000 objects, delete 2 and add 1: the second run uploads exactly those
/// 4 and reads nothing of the 995 others.
#[test]
fn incremental_backup_touches_only_what_changed() {
    let env = Env::new(testkit::seaweedfs(), testkit::moto(), "incr");
    let bucket = env.source.unique_bucket("incr-src");
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        let objects = (0..1000).map(|i| (format!("data/{i:04}.bin"), pattern(100 + i, i as u64))).collect();
        put_many(env.source, &bucket, objects).await;
    });

    let first = env.backup(&[&bucket], 0);
    assert_eq!(first["status"], "complete");
    assert_eq!(
        counts(&first),
        BTreeMap::from([("new", 1000), ("changed", 0), ("unchanged", 0), ("deleted", 0)])
    );
    assert_eq!(first["requests"]["source"]["GetObject"], 1000);

    rt().block_on(async {
        for i in [10, 500, 999] {
            put(env.source, &bucket, &format!("data/{i:04}.bin"), b"changed".to_vec()).await;
        }
        for i in [20, 21] {
            env.source
                .client()
                .delete_object()
                .bucket(&bucket)
                .key(format!("data/{i:04}.bin"))
                .send()
                .await
                .unwrap();
        }
        put(env.source, &bucket, "data/new.bin", b"new".to_vec()).await;
    });

    let second = env.backup(&[&bucket], 0);
    assert_eq!(
        counts(&second),
        BTreeMap::from([("new", 1), ("changed", 3), ("unchanged", 995), ("deleted", 2)])
    );
    assert_eq!(second["parent"], first["snapshot_id"]);
    // No request per unchanged object: the source sees exactly 4 object reads; the destination exactly 4
    // data uploads (+ the manifest and the lease) and 2 deletions (+ the lease's release).
    let source = &second["requests"]["source"];
    assert_eq!(source["GetObject"], 4, "{source}");
    assert!(source.get("HeadObject").is_none(), "{source}");
    let dest = &second["requests"]["destination"];
    let puts = dest["PutObject"].as_u64().unwrap();
    assert_eq!(
        puts,
        4 + 4,
        "4 data objects + the run record, the lease, its confirmation and the manifest: {dest}"
    );
    assert_eq!(dest["DeleteObject"].as_u64().unwrap(), 2 + 1, "{dest}");

    let (header, entries) = env.manifest();
    assert_eq!(header.totals.objects, 999);
    let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    assert!(
        keys.contains(&"data/new.bin")
            && !keys.contains(&"data/0020.bin")
            && !keys.contains(&"data/0021.bin")
    );
    let changed = entries.iter().find(|e| e.key == "data/0500.bin").unwrap();
    assert_eq!(changed.size, 7);
    assert_eq!(changed.sha256, hex::encode(Sha256::digest(b"changed")));
}

/// Tricky keys, sizes around the crypt chunk and above the multipart threshold, metadata, content headers
/// and tags: all recorded, and every stored object decrypts to the source's bytes. On moto, which keeps
/// `a//b` and trailing-slash keys as S3 does.
#[test]
fn tricky_keys_sizes_metadata_and_tags_are_recorded() {
    let env = Env::new(testkit::moto(), testkit::seaweedfs(), "tricky");
    let bucket = env.source.unique_bucket("tricky-src");
    let long_key = format!("deep/{}", "k".repeat(890));
    let long_segment = format!("seg/{}/x", "s".repeat(200));
    let keys_and_sizes = tricky_keys_and_sizes(&long_key, &long_segment);
    assert!(long_key.len() >= 895);
    put_tricky_objects(&env, &bucket, &keys_and_sizes);

    // A low threshold so the 6 MiB object goes through the parallel multipart path.
    let mut cmd = env.s32s3();
    let out = cmd
        .args(["backup", "--json", "--bucket", &bucket, "--multipart-threshold", "5M", "--part-size", "5M"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let (_, entries) = env.manifest();
    let by_key: BTreeMap<&str, &Entry> = entries.iter().map(|e| (e.key.as_str(), e)).collect();
    assert_eq!(by_key.len(), keys_and_sizes.len() + 1);
    for (i, (key, size)) in keys_and_sizes.iter().enumerate() {
        let entry = by_key.get(key.as_str()).unwrap_or_else(|| panic!("{key:?} missing from the manifest"));
        assert_stored_exactly(&env, entry, key, *size, i as u64);
        let overflow = entry.stored_key.starts_with(".s32s3/overflow/");
        // A 200-byte segment encrypts to 336 bytes: more than the 255 a MinIO or file-system name holds.
        let must_overflow =
            key.contains("//") || key.ends_with('/') || *key == long_key || *key == long_segment;
        assert_eq!(overflow, must_overflow, "{key} stored as {}", entry.stored_key);
    }
    assert_headers_metadata_and_tags_recorded(&env, by_key["meta/headers.html"]);
}

/// The tricky test's keys (unicode, spaces, `+` and `%`, `a//b`, a trailing slash, `long_key` and
/// `long_segment`) and sizes (empty, around the 64 KiB crypt chunk, above the multipart threshold).
fn tricky_keys_and_sizes(long_key: &str, long_segment: &str) -> Vec<(String, usize)> {
    vec![
        ("unicode/ünïcødé 日本 😀.txt".into(), 10),
        ("spaces in name/file name.txt".into(), 11),
        ("plus+sign%percent.txt".into(), 12),
        ("a//b".into(), 13),
        ("dir/".into(), 14),
        (long_key.to_owned(), 15),
        (long_segment.to_owned(), 16),
        ("sizes/zero".into(), 0),
        ("sizes/64k-1".into(), 65535),
        ("sizes/64k".into(), 65536),
        ("sizes/64k+1".into(), 65537),
        ("sizes/multipart".into(), (6 << 20) + 12345),
    ]
}

/// Creates `bucket` with `pattern(size, i)` under the `i`th key, and `meta/headers.html` with content
/// headers, user metadata and tags.
fn put_tricky_objects(env: &Env, bucket: &str, keys_and_sizes: &[(String, usize)]) {
    rt().block_on(async {
        create_bucket(env.source, bucket).await;
        for (i, (key, size)) in keys_and_sizes.iter().enumerate() {
            put(env.source, bucket, key, pattern(*size, i as u64)).await;
        }
        env.source
            .client()
            .put_object()
            .bucket(bucket)
            .key("meta/headers.html")
            .body(ByteStream::from_static(b"<p>hello</p>"))
            .content_type("text/html; charset=utf-8")
            .content_encoding("identity")
            .content_disposition("attachment; filename=\"hello.html\"")
            .content_language("de-CH")
            .cache_control("max-age=60")
            .metadata("owner", "team-storage")
            .metadata("mtime", "1354040105.123456789")
            .tagging("env=prod&team=storage")
            .send()
            .await
            .unwrap();
    });
}

/// The manifest records `key` with `size` and the SHA-256 of `pattern(size, seed)`, and the stored
/// version decrypts to exactly those bytes.
fn assert_stored_exactly(env: &Env, entry: &Entry, key: &str, size: usize, seed: u64) {
    assert_eq!(entry.size, size as u64, "{key}");
    let plain = pattern(size, seed);
    assert_eq!(entry.sha256, hex::encode(Sha256::digest(&plain)), "{key}");
    // The stored version decrypts to exactly the source bytes.
    let stored = rt().block_on(async {
        let out = env
            .dest
            .client()
            .get_object()
            .bucket(&env.backup_bucket)
            .key(&entry.stored_key)
            .version_id(entry.version_id.as_deref().unwrap())
            .send()
            .await
            .unwrap();
        out.body.collect().await.unwrap().into_bytes()
    });
    let cipher = s32s3_crypt::Cipher::new(common::PASSWORD, common::PASSWORD2).unwrap();
    assert_eq!(cipher.decrypt(&stored).unwrap(), plain, "{key}");
}

/// `meta/headers.html`'s content headers, metadata and tags are in the manifest; the stored object
/// carries only the mtime in clear.
fn assert_headers_metadata_and_tags_recorded(env: &Env, meta: &Entry) {
    assert_eq!(meta.content_type.as_deref(), Some("text/html; charset=utf-8"));
    assert_eq!(meta.content_encoding.as_deref(), Some("identity"));
    assert_eq!(meta.content_disposition.as_deref(), Some("attachment; filename=\"hello.html\""));
    assert_eq!(meta.content_language.as_deref(), Some("de-CH"));
    assert_eq!(meta.cache_control.as_deref(), Some("max-age=60"));
    assert_eq!(meta.metadata.get("owner").map(String::as_str), Some("team-storage"));
    assert_eq!(
        meta.tags,
        BTreeMap::from([("env".to_owned(), "prod".to_owned()), ("team".to_owned(), "storage".to_owned())])
    );
    // The stored object carries rclone's mtime (the source's own, here) and nothing else in clear.
    let head = rt().block_on(async {
        env.dest.client().head_object().bucket(&env.backup_bucket).key(&meta.stored_key).send().await.unwrap()
    });
    let stored_meta = head.metadata().cloned().unwrap_or_default();
    assert_eq!(stored_meta.get("mtime").map(String::as_str), Some("1354040105.123456789"));
    assert_eq!(stored_meta.len(), 1, "only mtime in clear: {stored_meta:?}");
}

/// The real rclone, given a crypt remote over the backup bucket and the same passwords, lists and decrypts
/// every data object byte-exact, and `rclone cryptcheck` checks every one, those uploaded in parts included
/// (their stored MD5 is in `X-Amz-Meta-Md5chksum`, as rclone keeps it).
#[test]
fn rclone_reads_the_backup() {
    let env = Env::new(testkit::seaweedfs(), testkit::seaweedfs(), "rclone");
    let bucket = env.source.unique_bucket("rclone-src");
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        let mut objects: Vec<(String, Vec<u8>)> = vec![
            ("empty".into(), Vec::new()),
            ("unicode ünï 日本/ça va.txt".into(), pattern(1000, 1)),
            ("chunk/65535".into(), pattern(65535, 2)),
            ("chunk/65536".into(), pattern(65536, 3)),
            ("chunk/65537".into(), pattern(65537, 4)),
            ("large/3MiB+1".into(), pattern((3 << 20) + 1, 5)),
            ("large/multipart".into(), pattern((11 << 20) + 7, 6)),
            ("large/multipart 2".into(), pattern(16 << 20, 7)),
        ];
        objects.extend((0..20).map(|i| (format!("many/{i}"), pattern(i * 100, i as u64))));
        put_many(env.source, &bucket, objects).await;
    });
    let out = env
        .s32s3()
        .args(["backup", "--bucket", &bucket, "--multipart-threshold", "5M", "--part-size", "5M"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let dir = tempfile::tempdir().unwrap();
    let config = common::rclone_config(&env, dir.path());
    // `check --download` decrypts and compares the bytes; `cryptcheck` compares the stored objects' MD5
    // with the source encrypted under each one's nonce.
    for command in [&["check", "--download"][..], &["cryptcheck"]] {
        let out = common::rclone(&config)
            .args(command)
            .args([format!("src:{bucket}"), format!("crypt:{bucket}")])
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "rclone {command:?} failed:\n{log}");
        assert!(log.contains("0 differences found"), "{log}");
        assert!(log.contains("28 matching files"), "{log}");
        assert!(!log.contains("could not be checked") && !log.contains("hashes could not"), "{log}");
    }

    let listed = common::rclone(&config)
        .args(["lsf", "-R", "--files-only", &format!("crypt:{bucket}")])
        .output()
        .unwrap();
    let mut names: Vec<&str> = std::str::from_utf8(&listed.stdout).unwrap().lines().collect();
    names.sort_unstable();
    assert!(names.contains(&"unicode ünï 日本/ça va.txt"), "{names:?}");
    assert_eq!(names.len(), 28);
}

/// `kill -9` in the middle of a large backup, then run again: it resumes from the checkpoint without
/// copying again what the checkpoint recorded, takes over the dead run's lease, and the snapshot is
/// complete.
#[test]
fn kill_9_then_resume() {
    let env = Env::new(testkit::seaweedfs(), testkit::moto(), "resume");
    let bucket = env.source.unique_bucket("resume-src");
    let count = 40usize;
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        let objects = (0..count).map(|i| (format!("obj/{i:03}"), pattern(1 << 20, i as u64))).collect();
        put_many(env.source, &bucket, objects).await;
    });

    let child = spawn_slow_backup(&env, &bucket);
    let checkpointed = kill_9_after_a_checkpoint_with_objects(&env, child);
    assert!(checkpointed < count as u64, "killed too late: {checkpointed} of {count} already recorded");

    let resumed = env.backup(&[&bucket], 0);
    assert_eq!(resumed["resumed"], true, "{resumed}");
    assert_eq!(resumed["status"], "complete");
    let c = counts(&resumed);
    assert!(c["unchanged"] >= checkpointed, "objects in the checkpoint must not be copied again: {c:?}");
    assert_eq!(c["new"] + c["unchanged"], count as u64, "{c:?}");
    assert_eq!(resumed["requests"]["source"]["GetObject"].as_u64().unwrap(), c["new"], "{resumed}");

    let (header, entries) = env.manifest();
    assert_eq!(header.totals.objects, count as u64);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.key, format!("obj/{i:03}"));
        assert_eq!(entry.sha256, hex::encode(Sha256::digest(pattern(1 << 20, i as u64))), "{}", entry.key);
    }
    // The checkpoint is gone once the snapshot exists.
    let versions = env.backup_versions();
    let live_partials = versions.iter().filter(|(k, _, marker)| k.ends_with(".partial") && !marker).count();
    let markers = versions.iter().filter(|(k, _, marker)| k.ends_with(".partial") && *marker).count();
    assert!(
        live_partials >= 1 && markers >= 1,
        "the checkpoint is deleted (a delete marker over it): {versions:?}"
    );
}

/// A backup of `bucket` slow enough to be killed in the middle (4 MiB/s for 40 MiB), checkpointing every
/// second.
fn spawn_slow_backup(env: &Env, bucket: &str) -> Child {
    env.s32s3()
        .args([
            "backup",
            "--bucket",
            bucket,
            "--bwlimit",
            "4M",
            "--transfers",
            "2",
            "--checkpoint-interval",
            "1s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits for a checkpoint recording at least 5 objects, then kills `child` with SIGKILL. Returns how many
/// objects the last checkpoint before the kill recorded.
fn kill_9_after_a_checkpoint_with_objects(env: &Env, mut child: Child) -> u64 {
    rt().block_on(async {
        let store =
            s32s3_core::store::s3::Store::new(s32s3_core::error::Side::Destination, env.dest.endpoint(), 3)
                .unwrap();
        let cipher =
            s32s3_core::derive_cipher(&common::PASSWORD.into(), &common::PASSWORD2.into()).await.unwrap();
        let layout = s32s3_core::format::layout::Layout::new(&cipher, "").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
        loop {
            assert!(std::time::Instant::now() < deadline, "no checkpoint with objects appeared");
            assert!(child.try_wait().unwrap().is_none(), "the backup finished before it could be killed");
            if let Ok(snaps) = s32s3_core::format::snapshots::list(&store, &env.backup_bucket, &layout).await
                && let Some(partial) = snaps.iter().find(|s| s.checkpoint)
                && let Ok(header) = s32s3_core::format::snapshots::read_header(
                    &store,
                    &env.backup_bucket,
                    &partial.key,
                    &cipher,
                    &std::env::temp_dir(),
                )
                .await
                && header.totals.objects >= 5
            {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                // The last checkpoint before the kill may be newer than the one just read.
                let snaps =
                    s32s3_core::format::snapshots::list(&store, &env.backup_bucket, &layout).await.unwrap();
                let partial = snaps.iter().find(|s| s.checkpoint).unwrap();
                let header = s32s3_core::format::snapshots::read_header(
                    &store,
                    &env.backup_bucket,
                    &partial.key,
                    &cipher,
                    &std::env::temp_dir(),
                )
                .await
                .unwrap();
                break header.totals.objects;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
}

/// Everything from an existing rclone.conf: the source remote, and a crypt remote over the backup bucket
/// for the destination and the passwords. rclone then reads what s32s3 wrote through that same remote.
#[test]
fn configured_from_an_rclone_conf() {
    let env = Env::new(testkit::seaweedfs(), testkit::seaweedfs(), "rconf");
    let bucket = env.source.unique_bucket("rconf-src");
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        put_many(env.source, &bucket, (0..5).map(|i| (format!("f{i}"), pattern(70_000, i))).collect()).await;
    });
    let dir = tempfile::tempdir().unwrap();
    let conf = common::rclone_config(&env, dir.path());
    let only_rclone_conf = |cmd: &mut std::process::Command| {
        for var in [
            "S32S3_SOURCE_ENDPOINT",
            "S32S3_SOURCE_ACCESS_KEY_ID",
            "S32S3_SOURCE_SECRET_ACCESS_KEY",
            "S32S3_DESTINATION_ENDPOINT",
            "S32S3_DESTINATION_ACCESS_KEY_ID",
            "S32S3_DESTINATION_SECRET_ACCESS_KEY",
            "S32S3_CRYPT_PASSWORD",
            "S32S3_CRYPT_PASSWORD2",
            "S32S3_BACKUP_BUCKET",
        ] {
            cmd.env_remove(var);
        }
        cmd.arg("--rclone-config").arg(&conf).args([
            "--source-remote",
            "src:",
            "--destination-remote",
            "crypt:",
        ]);
    };

    let mut check = env.s32s3();
    check.args(["config", "check"]);
    only_rclone_conf(&mut check);
    let out = check.output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{shown}{}", String::from_utf8_lossy(&out.stderr));
    assert!(shown.contains(&format!("backup_bucket = {}", env.backup_bucket)), "{shown}");
    assert!(shown.contains(&format!("source.endpoint = {}", env.source.endpoint().endpoint)), "{shown}");
    assert!(shown.contains("crypt.password = ******") && !shown.contains(common::PASSWORD), "{shown}");

    let mut backup = env.s32s3();
    backup.args(["backup", "--bucket", &bucket]);
    only_rclone_conf(&mut backup);
    let out = backup.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let checked = common::rclone(&conf)
        .args(["check", "--download", &format!("src:{bucket}"), &format!("crypt:{bucket}")])
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
}

/// Snapshots past their restorable window (a later run replaced what they name more than `expiration_days`
/// ago) are pruned, with their MinIO exports; the snapshot just written is always kept.
#[test]
fn expired_snapshots_are_pruned() {
    let env = Env::new(testkit::moto(), testkit::seaweedfs(), "prune");
    let bucket = env.source.unique_bucket("prune-src");
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        put(env.source, &bucket, "k", b"v".to_vec()).await;
    });
    let first = env.backup(&[&bucket], 0);
    // Make the first snapshot look 30 days old, with an export beside it.
    let (old_key, export_key) = rt().block_on(async {
        let s3 = env.dest.client();
        let cipher =
            s32s3_core::derive_cipher(&common::PASSWORD.into(), &common::PASSWORD2.into()).await.unwrap();
        let layout = s32s3_core::format::layout::Layout::new(&cipher, "").unwrap();
        let old = time::OffsetDateTime::now_utc() - time::Duration::days(30);
        let old_key = s32s3_core::format::snapshots::snapshot_key(&layout, old, "0ld0ld00");
        let source = format!("{}/{}", env.backup_bucket, first["manifest"].as_str().unwrap());
        s3.copy_object().bucket(&env.backup_bucket).key(&old_key).copy_source(source).send().await.unwrap();
        // A run that replaced things an hour after it: the old snapshot's window closed 23 days ago.
        let record = s32s3_core::format::snapshots::run_record_key(
            &layout,
            old + time::Duration::hours(1),
            "0ld0ld01",
            Some(7),
        );
        s3.put_object()
            .bucket(&env.backup_bucket)
            .key(&record)
            .body(ByteStream::from_static(b"{}"))
            .send()
            .await
            .unwrap();
        let export_key = layout.meta("instance/0ld0ld00/iam.zip");
        s3.put_object()
            .bucket(&env.backup_bucket)
            .key(&export_key)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap();
        (old_key, export_key)
    });
    let second = env.backup(&[&bucket], 0);
    assert_eq!(second["pruned"].as_array().unwrap().len(), 1, "{second}");
    assert_eq!(second["pruned"][0], old_key);
    let current: Vec<String> = rt().block_on(async {
        let out = env
            .dest
            .client()
            .list_objects_v2()
            .bucket(&env.backup_bucket)
            .prefix(".s32s3/")
            .send()
            .await
            .unwrap();
        out.contents().iter().map(|o| o.key().unwrap().to_owned()).collect()
    });
    assert!(!current.contains(&old_key) && !current.contains(&export_key), "{current:?}");
    assert!(
        current.iter().any(|k| k.ends_with(&format!("{}.snap", second["snapshot_id"].as_str().unwrap()))),
        "{current:?}"
    );
    assert!(
        current.iter().any(|k| k.ends_with(&format!("{}.snap", first["snapshot_id"].as_str().unwrap()))),
        "{current:?}"
    );
}

/// `PutObjectTagging` changes neither ETag nor last-modified. With `--check-tags` a backup reads each
/// unchanged object's tags (one `GetObjectTagging` each, said in the summary), records the objects whose
/// tags alone changed with their new tags and copies no data; a restore brings the new tags back. Without
/// it (the default) nothing is read.
#[test]
fn tag_only_changes_are_backed_up_with_check_tags() {
    let env = Env::new(testkit::seaweedfs(), testkit::moto(), "retag");
    let bucket = env.source.unique_bucket("retag-src");
    let s3 = env.source.client();
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        let objects = (0..10).map(|i| (format!("o/{i}"), pattern(100 + i, i as u64))).collect();
        put_many(env.source, &bucket, objects).await;
        for i in [0, 1, 2] {
            let t = tagging(&[("team", "a"), ("n", &i.to_string())]);
            s3.put_object_tagging().bucket(&bucket).key(format!("o/{i}")).tagging(t).send().await.unwrap();
        }
    });
    let first = env.backup(&[&bucket], 0);
    assert_eq!(counts(&first)["new"], 10);

    // New tags on a tagged object and on an untagged one; one object's tags removed.
    let want: BTreeMap<String, BTreeMap<String, String>> = rt().block_on(async {
        let t = tagging(&[("team", "b"), ("n", "0")]);
        s3.put_object_tagging().bucket(&bucket).key("o/0").tagging(t).send().await.unwrap();
        let t = tagging(&[("new tag", "x y")]);
        s3.put_object_tagging().bucket(&bucket).key("o/5").tagging(t).send().await.unwrap();
        s3.delete_object_tagging().bucket(&bucket).key("o/1").send().await.unwrap();
        let mut want = BTreeMap::new();
        for i in 0..10 {
            let key = format!("o/{i}");
            let tags = object_tags(&s3, &bucket, &key).await;
            want.insert(key, tags);
        }
        want
    });

    let unchecked = env.backup(&[&bucket], 0);
    assert_eq!(counts(&unchecked)["unchanged"], 10, "off by default: {unchecked}");
    assert_eq!(unchecked["tag_checks"], 0);
    assert!(unchecked["requests"]["source"].get("GetObjectTagging").is_none(), "{unchecked}");

    let out = env.s32s3().args(["backup", "--json", "--check-tags", "--bucket", &bucket]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let checked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(checked["retagged"]["objects"], 3, "{checked}");
    assert_eq!(
        counts(&checked),
        BTreeMap::from([("new", 0), ("changed", 0), ("unchanged", 7), ("deleted", 0)])
    );
    assert_eq!(checked["tag_checks"], 10, "one GetObjectTagging per unchanged object");
    let source = &checked["requests"]["source"];
    assert_eq!(source["GetObjectTagging"], 10, "{source}");
    assert!(source.get("GetObject").is_none(), "no data read: {source}");
    let dest = &checked["requests"]["destination"];
    assert_eq!(
        dest["PutObject"], unchecked["requests"]["destination"]["PutObject"],
        "no data written: {dest}"
    );
    assert!(dest.get("CreateMultipartUpload").is_none(), "{dest}");
    let (_, entries) = env.manifest();
    let recorded: BTreeMap<String, BTreeMap<String, String>> =
        entries.iter().map(|e| (e.key.clone(), e.tags.clone())).collect();
    assert_eq!(recorded, want);

    // The source loses its objects; the restore brings them back with the new tags.
    rt().block_on(async {
        for key in want.keys() {
            s3.delete_object().bucket(&bucket).key(key).send().await.unwrap();
        }
    });
    let out = env.s32s3().args(["restore", "--json", "--bucket", &bucket]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    rt().block_on(async {
        for (key, tags) in &want {
            assert_eq!(&object_tags(&s3, &bucket, key).await, tags, "{key}");
        }
    });
}

/// `--metrics-file` and `--pushgateway` after a one-shot backup: the metrics in the Prometheus text format,
/// with the run, the location and the newest snapshot per bucket, but not the snapshot's age (it would be
/// frozen there). The file is written whole; the push is a PUT to `/metrics/job/s32s3` that names its
/// format (an HTTP server standing in for the Pushgateway takes it).
#[test]
fn one_shot_metrics_to_a_textfile_and_a_pushgateway() {
    let env = Env::new(testkit::seaweedfs(), testkit::seaweedfs(), "oneshot-metrics");
    let bucket = env.source.unique_bucket("om-src");
    rt().block_on(async {
        create_bucket(env.source, &bucket).await;
        put_many(env.source, &bucket, (0..4).map(|i| (format!("o/{i}"), pattern(500, i))).collect()).await;
    });
    let (pushed_tx, pushed) = std::sync::mpsc::channel();
    let gateway = rt().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/metrics/job/{*group}",
            axum::routing::put(
                move |axum::extract::Path(group): axum::extract::Path<String>,
                      headers: axum::http::HeaderMap,
                      body: String| async move {
                    let content_type = headers.get("content-type").map(|v| v.to_str().unwrap().to_owned());
                    pushed_tx.send((group, content_type, body)).unwrap();
                    axum::http::StatusCode::OK
                },
            ),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{address}")
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s32s3.prom");
    let out = env
        .s32s3()
        .args(["backup", "--json", "--bucket", &bucket, "--pushgateway", &gateway, "--metrics-file"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let (group, content_type, body) = pushed.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert_eq!(group, "s32s3");
    assert_eq!(content_type.as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"));
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "the temporary file is gone");
    for text in [written, body] {
        let m = common::Metrics::parse(&text);
        assert_eq!(m.get("s32s3_runs_total", &[("status", "complete")]), Some(1.0), "{text}");
        for (status, value) in [("complete", 1.0), ("partial", 0.0), ("failed", 0.0)] {
            assert_eq!(m.get("s32s3_last_run_status", &[("status", status)]), Some(value), "{text}");
        }
        assert_eq!(m.get("s32s3_last_run_objects", &[("outcome", "new")]), Some(4.0), "{text}");
        assert!(m.value("s32s3_last_success_timestamp_seconds").is_some_and(|t| t > 0.0), "{text}");
        assert_eq!(m.value("s32s3_snapshots"), Some(1.0), "{text}");
        assert_eq!(m.get("s32s3_snapshot_objects", &[("bucket", &bucket)]), Some(4.0), "{text}");
        assert_eq!(m.get("s32s3_snapshot_bytes", &[("bucket", &bucket)]), Some(2000.0), "{text}");
        assert_eq!(m.value("s32s3_newest_snapshot_age_seconds"), None, "{text}");
        assert!(!text.contains(common::PASSWORD), "a secret in the metrics");
    }
    // A shard of a sharded run pushes to a group of its own: the shards of one run do not replace each
    // other's push.
    let out = env
        .s32s3()
        .args(["backup", "--json", "--bucket", &bucket, "--pushgateway", &gateway])
        .args(["--shard", "0/1", "--run-id", "om-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let (group, _, body) = pushed.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert_eq!(group, "s32s3/shard/0");
    assert_eq!(common::Metrics::parse(&body).get("s32s3_runs_total", &[("status", "complete")]), Some(1.0));
}
