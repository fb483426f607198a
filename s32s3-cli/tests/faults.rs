//! Flaky networks (issue 11, item 8): the real `s32s3` binary backs up, verifies, restores and backs up
//! again through fault-injecting proxies in front of both servers, and every command succeeds on its
//! first run with exact data and no incomplete multipart upload left behind.
//!
//! Each side (the SeaweedFS source, which is also the restore target, and the moto destination) sits
//! behind one [`FaultProxy`] that faults requests at random: `503 Slow Down`, a reset in the middle of the
//! request body, a reset in the middle of the response body, and a lost response (the write lands, the
//! answer never arrives). A proxy applies only the first rule that matches a request, so one random rule
//! is active at a time: a seeded rotation picks its kind anew every few milliseconds, at four times the
//! rate of each kind, so every request gets each kind with [`RATE`]. (Chained proxies, one per kind,
//! would turn an inner hop's reset into a clean close at the client.)
//!
//! The rotation also puts first, until it happened, a fault on each of the requests that are hardest to
//! get right after a retry: it loses the answer to the first `CreateMultipartUpload` and the first
//! `CompleteMultipartUpload` of each side, to the creation of the lease and to the creation of a restored
//! bucket, and cuts off the body of the first part upload of each side. Random faults hit those too, but
//! only now and then; these rules make the test say the same thing on every run.
//!
//! The seeds are printed; `S32S3_TEST_FAULT_SEED=<seed>` replays a run's dice (the order in which
//! concurrent requests reach a proxy, and the moments the kind changes, still vary).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::hash::{BuildHasher as _, Hasher as _};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use common::{Env, counts, create_bucket, pattern, rt};
use futures::StreamExt as _;
use s32s3_core::testkit::proxy::{Fault, FaultProxy, LoggedRequest, Match, Rule, Stats};
use s32s3_core::testkit::{self, TestServer};
use sha2::{Digest, Sha256};

/// The chance of each kind of fault on every request (so 16% of requests fail in some way).
const RATE: f64 = 0.04;
/// Attempts per request: five failures in a row already happen only once in 10,000 requests.
const RETRIES: &str = "10";
/// The kinds of random fault.
const KINDS: [Fault; 4] =
    [Fault::SlowDown, Fault::ResetMidRequestBody, Fault::ResetMidResponseBody, Fault::ResetBeforeResponse];
/// How long one kind stays active.
const PHASE: Duration = Duration::from_millis(10);
/// How often the rotation looks whether the pinpoint faults happened (the log is copied for that).
const SCAN: Duration = Duration::from_millis(100);
const MIB: usize = 1 << 20;

/// A next-number generator for the rotation (xorshift; the proxy rolls its own dice).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A request the pinpoint `matcher` stands for (the proxy's own matching is private).
fn matches(matcher: &Match, request: &LoggedRequest) -> bool {
    let (path, query) = request.target.split_once('?').unwrap_or((&request.target, ""));
    matcher.method.as_ref().is_none_or(|m| m.eq_ignore_ascii_case(&request.method))
        && matcher.path_contains.as_ref().is_none_or(|t| path.contains(t.as_str()))
        && matcher.query_contains.as_ref().is_none_or(|t| query.contains(t.as_str()))
        && matcher.header.as_ref().is_none_or(|h| request.header(&h.to_ascii_lowercase()).is_some())
}

/// A fault proxy in front of one server, its rules rotated by a thread until it is dropped.
struct Chaos {
    name: &'static str,
    proxy: Arc<FaultProxy>,
    stop: Arc<AtomicBool>,
    rotator: Option<std::thread::JoinHandle<()>>,
}

impl Chaos {
    /// Starts the proxy and the rotation; each `pinpoint` request gets its fault until one did (checked
    /// every [`SCAN`], so a burst of matching requests may get it more than once).
    fn start(name: &'static str, server: &TestServer, seed: u64, pinpoint: Vec<(Match, Fault)>) -> Self {
        let proxy = Arc::new(FaultProxy::start_with_seed(&server.endpoint(), seed));
        let stop = Arc::new(AtomicBool::new(false));
        let rotator = std::thread::spawn({
            let (proxy, stop) = (Arc::clone(&proxy), Arc::clone(&stop));
            move || {
                let mut state = seed.rotate_left(17) | 1;
                let mut pending = pinpoint;
                let mut scanned = std::time::Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if !pending.is_empty() && scanned.elapsed() >= SCAN {
                        let log = proxy.requests();
                        pending.retain(|(m, fault)| !log.iter().any(|r| r.fault == *fault && matches(m, r)));
                        scanned = std::time::Instant::now();
                    }
                    let kind = KINDS[(next(&mut state) % KINDS.len() as u64) as usize];
                    let mut rules: Vec<Rule> =
                        pending.iter().map(|(m, fault)| Rule::new(m.clone(), *fault).with_limit(1)).collect();
                    rules.push(Rule::random(kind, RATE * KINDS.len() as f64));
                    proxy.set_rules(rules);
                    std::thread::sleep(PHASE);
                }
                proxy.set_rules(Vec::new());
            }
        });
        Self { name, proxy, stop, rotator: Some(rotator) }
    }

    fn endpoint(&self) -> String {
        self.proxy.endpoint().endpoint
    }

    fn stats(&self) -> Stats {
        self.proxy.stats()
    }

    /// Faulted requests in arrival order: (fault, method, target).
    fn faulted(&self) -> Vec<(Fault, String, String)> {
        self.proxy
            .requests()
            .into_iter()
            .filter(|r| r.fault != Fault::Pass)
            .map(|r| (r.fault, r.method, r.target))
            .collect()
    }

    /// How many requests that `is_it` picks (by method and target) got a fault of `kind`.
    fn faulted_count(&self, kind: Fault, is_it: impl Fn(&str, &str) -> bool) -> usize {
        self.faulted().iter().filter(|(f, m, t)| *f == kind && is_it(m, t)).count()
    }

    /// What a failing assertion prints: the counts, and every faulted request that is not a plain object
    /// read or write (multipart, lease, manifests, buckets).
    fn report(&self) -> String {
        let mut out = format!("{} proxy (seed {}): {:?}\n", self.name, self.proxy.seed(), self.stats());
        for (fault, method, target) in self.faulted() {
            let path = target.split('?').next().unwrap_or_default();
            if target.contains("upload") || path.contains(".s32s3") || !path.trim_matches('/').contains('/') {
                let _ = writeln!(out, "  {fault:?}: {method} {target}");
            }
        }
        out
    }

    /// Every request whose target contains `text`, in order, with its fault: the evidence for one key.
    fn history(&self, text: &str) -> String {
        let mut out = String::new();
        for r in self.proxy.requests().iter().filter(|r| r.target.contains(text)) {
            let _ = writeln!(out, "  {:?} {} {}", r.fault, r.method, r.target);
        }
        out
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(rotator) = self.rotator.take() {
            let _ = rotator.join();
        }
    }
}

fn is_part_upload(method: &str, target: &str) -> bool {
    method == "PUT" && target.contains("uploadId=") && target.contains("partNumber=")
}

fn is_create_upload(method: &str, target: &str) -> bool {
    method == "POST"
        && target.split_once('?').is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with("uploads")))
}

fn is_complete_upload(method: &str, target: &str) -> bool {
    method == "POST" && target.contains("uploadId=")
}

/// One source object as a client sees it.
#[derive(Debug, PartialEq, Eq)]
struct View {
    size: usize,
    sha256: String,
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
}

/// Every object of `bucket` (read directly, not through a proxy).
fn bucket_view(server: &TestServer, bucket: &str) -> BTreeMap<String, View> {
    rt().block_on(async {
        let s3 = server.client();
        let mut keys = Vec::new();
        let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
        while let Some(page) = pages.next().await {
            keys.extend(page.unwrap().contents().iter().map(|o| o.key().unwrap().to_owned()));
        }
        futures::stream::iter(keys)
            .map(|key| {
                let s3 = s3.clone();
                async move {
                    let got = s3.get_object().bucket(bucket).key(&key).send().await.unwrap();
                    let content_type = got.content_type().map(str::to_owned);
                    let metadata = got
                        .metadata()
                        .map(|m| m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect())
                        .unwrap_or_default();
                    let body = got.body.collect().await.unwrap().into_bytes();
                    let view = View {
                        size: body.len(),
                        sha256: hex::encode(Sha256::digest(&body)),
                        content_type,
                        metadata,
                    };
                    (key, view)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await
    })
}

fn tags(server: &TestServer, bucket: &str, key: &str) -> BTreeMap<String, String> {
    rt().block_on(common::object_tags(&server.client(), bucket, key))
}

/// Incomplete multipart uploads in `bucket` (listed directly): (key, upload id).
fn incomplete_uploads(server: &TestServer, bucket: &str) -> Vec<(String, String)> {
    rt().block_on(async {
        let out = server.client().list_multipart_uploads().bucket(bucket).send().await.unwrap();
        out.uploads()
            .iter()
            .map(|u| (u.key().unwrap_or_default().to_owned(), u.upload_id().unwrap_or_default().to_owned()))
            .collect()
    })
}

/// One object to put into the source.
struct Object {
    key: String,
    body: Vec<u8>,
    content_type: Option<&'static str>,
    metadata: Option<String>,
    tagging: Option<&'static str>,
}

impl Object {
    fn plain(key: String, body: Vec<u8>) -> Self {
        Self { key, body, content_type: None, metadata: None, tagging: None }
    }
}

/// `n` small objects: most below 64 KiB (an empty one among them), one in ten above the 256 KiB of the
/// raw signed-request path, two right at that limit; every fifteenth with a content type and metadata.
fn small_objects(prefix: &str, n: usize, seed: u64) -> Vec<Object> {
    (0..n)
        .map(|i| {
            let size = match i % 10 {
                _ if i == 2 => 0,
                0 => (256 << 10) + 1 + (i * 7919) % (320 << 10),
                _ if i == 3 => 256 << 10,
                _ if i == 4 => (256 << 10) + 1,
                _ => (i * 2_654_435_761) % (64 << 10),
            };
            let key = format!("{prefix}/{}/{i:04}.bin", i % 7);
            let mut object = Object::plain(key, pattern(size, seed + i as u64));
            if i % 15 == 0 {
                object.content_type = Some("text/plain; charset=utf-8");
                object.metadata = Some(format!("user-{i}"));
            }
            if i == 7 {
                object.tagging = Some("team=storage&n=7");
            }
            object
        })
        .collect()
}

fn put_objects(server: &TestServer, bucket: &str, objects: Vec<Object>) {
    rt().block_on(async {
        futures::stream::iter(objects)
            .map(|o| async move {
                server
                    .client()
                    .put_object()
                    .bucket(bucket)
                    .key(&o.key)
                    .set_content_type(o.content_type.map(str::to_owned))
                    .set_metadata(o.metadata.map(|owner| [("owner".to_owned(), owner)].into()))
                    .set_tagging(o.tagging.map(str::to_owned))
                    .body(ByteStream::from(o.body))
                    .send()
                    .await
                    .unwrap();
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
    });
}

/// A seed for this run: `S32S3_TEST_FAULT_SEED`, or a random one.
fn seed() -> u64 {
    std::env::var("S32S3_TEST_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.finish()
    })
}

/// The two proxies and the binary's environment.
struct Rig {
    env: Env,
    source: Chaos,
    dest: Chaos,
    seed: u64,
}

impl Rig {
    fn s32s3(&self) -> Command {
        let mut cmd = self.env.s32s3();
        cmd.env("S32S3_SOURCE_ENDPOINT", self.source.endpoint())
            .env("S32S3_DESTINATION_ENDPOINT", self.dest.endpoint())
            .env("S32S3_RETRIES", RETRIES)
            .env("S32S3_MULTIPART_THRESHOLD", "5M")
            .env("S32S3_PART_SIZE", "5M");
        cmd
    }

    fn report(&self) -> String {
        format!(
            "seed {} (S32S3_TEST_FAULT_SEED={0})\n{}{}",
            self.seed,
            self.source.report(),
            self.dest.report()
        )
    }

    /// The incomplete multipart uploads in `bucket` of the source or destination server (listed directly),
    /// with the requests for their keys, as a problem to report (also printed at once).
    fn uploads_left(&self, when: &str, on_source: bool, bucket: &str, problems: &mut Vec<String>) {
        let (server, chaos) =
            if on_source { (self.env.source, &self.source) } else { (self.env.dest, &self.dest) };
        let left = incomplete_uploads(server, bucket);
        if !left.is_empty() {
            let keys: BTreeSet<&str> =
                left.iter().map(|(key, _)| key.rsplit('/').next().unwrap_or(key)).collect();
            let evidence: String = keys.into_iter().map(|key| chaos.history(key)).collect();
            let problem =
                format!("{when}: incomplete multipart uploads left in {bucket}: {left:?}\n{evidence}");
            eprintln!("{problem}");
            problems.push(problem);
        }
    }

    /// Runs `s32s3 ARGS --json` once; it must exit 0. Returns its JSON output.
    fn run(&self, args: &[&str]) -> serde_json::Value {
        let (source_before, dest_before) = (self.source.stats(), self.dest.stats());
        let out = self.s32s3().args(args).arg("--json").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (source, dest) = (self.source.stats(), self.dest.stats());
        eprintln!(
            "s32s3 {}: exit {:?}; faults injected: source {}, destination {}\n{stderr}",
            args.join(" "),
            out.status.code(),
            source.faults() - source_before.faults(),
            dest.faults() - dest_before.faults(),
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "s32s3 {} failed on its first run\nstderr: {stderr}\nstdout: {stdout}\n{}",
            args.join(" "),
            self.report()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
    }
}

/// Backup, `verify --read-data`, restore into new buckets and an incremental backup, all through random
/// faults on every request in both directions: each exits 0 on its first run, the restored objects equal
/// the source's (bytes, content type, metadata, tags), the proxies injected hundreds of faults of every
/// kind (multipart requests included), and no incomplete multipart upload is left anywhere.
#[test]
fn backup_verify_restore_through_random_faults() {
    let (source_server, dest_server) = (testkit::seaweedfs(), testkit::moto());
    let env = Env::new(source_server, dest_server, "faults");
    let seed = seed();
    eprintln!("fault seed {seed}: rerun with S32S3_TEST_FAULT_SEED={seed}");
    let rig = rig_with_pinpoint_faults(env, source_server, dest_server, seed);
    let (a, b) = (source_server.unique_bucket("faults-a"), source_server.unique_bucket("faults-b"));
    let source_views = fill_the_source(source_server, &a, &b);

    // 1. The first backup.
    let first = rig.run(&["backup", "--bucket", &a, "--bucket", &b]);
    assert_eq!(first["status"], "complete", "{first}");
    assert_eq!(counts(&first)["new"], 303, "{first}");
    assert_eq!(first["failed"].as_array().map(Vec::len), Some(0), "{first}");
    let mut problems = Vec::new();
    rig.uploads_left("after the first backup", false, &rig.env.backup_bucket, &mut problems);

    // 2. Every stored byte read back and authenticated.
    let verified = rig.run(&["verify", "--read-data"]);
    assert_eq!(verified["read"]["objects"], 303, "{verified}");
    assert_eq!(verified["bad"].as_array().map(Vec::len), Some(0), "{verified}");
    assert_eq!(verified["unreadable"].as_array().map(Vec::len), Some(0), "{verified}");

    // 3. Restore into two new buckets of the source server, through the source's proxy.
    restore_into_new_buckets_exactly(&rig, source_server, &a, &b, &source_views, &mut problems);

    // 4. An incremental backup after a few changes: one small and one large object changed, one new,
    // one deleted.
    change_the_source_and_back_up_again(&rig, source_server, &a, &b, &first);

    // 5. No incomplete multipart upload is left in the backup bucket after the second backup either
    // (checked after each command: a later run might clean up what an earlier one left), and 6. the
    // proxies really did their part. All of it is checked before any of it is asserted.
    rig.uploads_left("after the second backup", false, &rig.env.backup_bucket, &mut problems);
    faults_of_every_kind_were_injected(&rig, &mut problems);
    eprintln!("faults injected\n{}", rig.report());
    assert!(problems.is_empty(), "{}\n{}", problems.join("\n"), rig.report());
}

/// The proxies in front of both servers, each with its pinpoint faults.
fn rig_with_pinpoint_faults(
    env: Env,
    source_server: &TestServer,
    dest_server: &TestServer,
    seed: u64,
) -> Rig {
    // The answers hardest to get right after a retry are lost once on each side, and one part's body is
    // cut off: the write lands (or not) and the binary never hears.
    let lost = Fault::ResetBeforeResponse;
    let multipart = [
        (Match::method("POST").with_query_contains("uploads"), lost),
        (Match::method("POST").with_query_contains("uploadId="), lost),
        (Match::method("PUT").with_query_contains("partNumber="), Fault::ResetMidRequestBody),
    ];
    // Restore creates its buckets with an explicit object-lock header; no other request sends it.
    let create_bucket_on_restore = Match::method("PUT").with_header("x-amz-bucket-object-lock-enabled");
    let create_lease = Match::method("PUT").with_path_contains(".s32s3/lock").with_header("if-none-match");
    let source_pinpoint = multipart.iter().cloned().chain([(create_bucket_on_restore, lost)]).collect();
    let dest_pinpoint = multipart.iter().cloned().chain([(create_lease, lost)]).collect();
    Rig {
        source: Chaos::start("source", source_server, seed, source_pinpoint),
        dest: Chaos::start("destination", dest_server, seed.rotate_left(32), dest_pinpoint),
        env,
        seed,
    }
}

/// Bucket `a` with 240 small objects and three large ones (one with a content type, metadata and tags),
/// bucket `b` with 60 small ones; returns what each holds (read directly).
fn fill_the_source(source_server: &TestServer, a: &str, b: &str) -> [BTreeMap<String, View>; 2] {
    let mut objects = small_objects("small", 240, 1);
    objects.push(Object::plain("large/a.bin".into(), pattern(12 * MIB + 1, 1001)));
    objects.push(Object {
        content_type: Some("application/x-tar"),
        metadata: Some("large-owner".into()),
        tagging: Some("kind=archive"),
        ..Object::plain("large/b.bin".into(), pattern(16 * MIB + 12_345, 1002))
    });
    objects.push(Object::plain("large/c.bin".into(), pattern(20 * MIB - 7, 1003)));
    rt().block_on(async {
        create_bucket(source_server, a).await;
        create_bucket(source_server, b).await;
    });
    put_objects(source_server, a, objects);
    put_objects(source_server, b, small_objects("other", 60, 5000));
    let source_views = [bucket_view(source_server, a), bucket_view(source_server, b)];
    assert_eq!((source_views[0].len(), source_views[1].len()), (243, 60));
    assert!(source_views[0].values().filter(|v| v.size > 256 << 10 && v.size < 5 * MIB).count() >= 20);
    source_views
}

/// Restores into two new buckets of the source server, through the source's proxy: they equal the
/// source buckets (`source_views`), content types, metadata and tags included.
fn restore_into_new_buckets_exactly(
    rig: &Rig,
    source_server: &TestServer,
    a: &str,
    b: &str,
    source_views: &[BTreeMap<String, View>; 2],
    problems: &mut Vec<String>,
) {
    let (a2, b2) =
        (source_server.unique_bucket("faults-a-restored"), source_server.unique_bucket("faults-b-restored"));
    let restored = rig.run(&["restore", "--bucket", &format!("{a}:{a2}"), "--bucket", &format!("{b}:{b2}")]);
    assert_eq!(restored["restored"]["objects"], 303, "{restored}");
    assert_eq!(restored["failed"].as_array().map(Vec::len), Some(0), "{restored}");
    assert_eq!(restored["conflicts"].as_array().map(Vec::len), Some(0), "{restored}");
    for bucket in [a2.as_str(), b2.as_str(), a, b] {
        rig.uploads_left("after the restore", true, bucket, problems);
    }
    for ((from, to), expected) in [(a, a2.as_str()), (b, b2.as_str())].into_iter().zip(source_views) {
        let got = bucket_view(source_server, to);
        let differ: BTreeSet<&String> =
            expected.keys().chain(got.keys()).filter(|k| expected.get(*k) != got.get(*k)).collect();
        assert!(differ.is_empty(), "{to} differs from {from} at {differ:?}\n{}", rig.report());
    }
    let typed = &bucket_view(source_server, &a2)["large/b.bin"];
    assert_eq!(typed.content_type.as_deref(), Some("application/x-tar"));
    assert_eq!(typed.metadata.get("owner").map(String::as_str), Some("large-owner"));
    assert_eq!(
        bucket_view(source_server, &a2)["small/0/0000.bin"].content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    for key in ["small/0/0007.bin", "large/b.bin"] {
        assert_eq!(tags(source_server, &a2, key), tags(source_server, a, key), "tags of {key}");
        assert!(!tags(source_server, a, key).is_empty());
    }
}

/// An incremental backup after a few changes: one small and one large object changed, one new, one
/// deleted. It reads the source only for the copies, and its snapshot names the source's new state.
fn change_the_source_and_back_up_again(
    rig: &Rig,
    source_server: &TestServer,
    a: &str,
    b: &str,
    first: &serde_json::Value,
) {
    put_objects(
        source_server,
        a,
        vec![
            Object::plain("small/3/0003.bin".into(), b"changed".to_vec()),
            Object::plain("small/new.bin".into(), pattern(300 << 10, 77)),
            Object::plain("large/a.bin".into(), pattern(13 * MIB + 5, 78)),
        ],
    );
    rt().block_on(async {
        source_server.client().delete_object().bucket(a).key("small/5/0005.bin").send().await.unwrap();
    });
    let second = rig.run(&["backup", "--bucket", a, "--bucket", b]);
    assert_eq!(second["status"], "complete", "{second}");
    assert_eq!(second["parent"], first["snapshot_id"], "{second}");
    assert_eq!(
        counts(&second),
        BTreeMap::from([("new", 1), ("changed", 2), ("unchanged", 300), ("deleted", 1)]),
        "{second}"
    );
    // Incremental: the source is read only for the three copies (5 GETs, and their retries), never
    // once per unchanged object.
    let gets = second["requests"]["source"]["GetObject"].as_u64().unwrap_or_default();
    assert!((5..50).contains(&gets), "{gets} source GETs for 3 copies: {second}");
    let (_, entries) = rig.env.manifest();
    let want: BTreeMap<(String, String), String> =
        [(a, bucket_view(source_server, a)), (b, bucket_view(source_server, b))]
            .into_iter()
            .flat_map(|(bucket, view)| view.into_iter().map(move |(k, v)| ((bucket.to_owned(), k), v.sha256)))
            .collect();
    let got: BTreeMap<(String, String), String> =
        entries.into_iter().map(|e| ((e.bucket, e.key), e.sha256)).collect();
    assert!(got == want, "the second snapshot names the source's new state");
}

/// The proxies injected at least 10 faults of each kind on each side and 200 in all, and on each side
/// faulted a part upload and lost a `CreateMultipartUpload` and a `CompleteMultipartUpload` answer.
fn faults_of_every_kind_were_injected(rig: &Rig, problems: &mut Vec<String>) {
    let (source, dest) = (rig.source.stats(), rig.dest.stats());
    for (name, stats) in [("source", source), ("destination", dest)] {
        for kind in KINDS {
            if stats.applied(kind) < 10 {
                problems.push(format!("only {} {kind:?} on the {name} side", stats.applied(kind)));
            }
        }
    }
    if source.faults() + dest.faults() < 200 {
        problems.push(format!("only {} faults in all", source.faults() + dest.faults()));
    }
    for chaos in [&rig.source, &rig.dest] {
        let parts: usize = KINDS.iter().map(|&k| chaos.faulted_count(k, is_part_upload)).sum();
        let lost_creates = chaos.faulted_count(Fault::ResetBeforeResponse, is_create_upload);
        let lost_completes = chaos.faulted_count(Fault::ResetBeforeResponse, is_complete_upload);
        if parts == 0 || lost_creates == 0 || lost_completes == 0 {
            problems.push(format!(
                "{}: {parts} part uploads faulted, {lost_creates} lost CreateMultipartUpload answers, \
                 {lost_completes} lost CompleteMultipartUpload answers: each must be at least 1",
                chaos.name
            ));
        }
    }
}
