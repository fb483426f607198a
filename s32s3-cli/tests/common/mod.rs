//! Shared helpers for the CLI's integration tests: real servers from the testkit, the real binary.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;

use aws_sdk_s3::primitives::ByteStream;
use s32s3_core::testkit::TestServer;
use sha2::Digest as _;

pub const PASSWORD: &str = "correct horse battery staple";
pub const PASSWORD2: &str = "pepper";

/// A tokio runtime for the S3 calls of synchronous tests.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    })
}

/// Where a test's backup goes and comes from.
pub struct Env {
    pub source: &'static TestServer,
    pub dest: &'static TestServer,
    pub backup_bucket: String,
}

impl Env {
    pub fn new(source: &'static TestServer, dest: &'static TestServer, name: &str) -> Self {
        Self { source, dest, backup_bucket: dest.unique_bucket(&format!("bk-{name}")) }
    }

    /// The `s32s3` binary with this environment's configuration in `S32S3_*` variables. `S32S3_TEST_BINARY`
    /// runs the tests against another build (e.g. an older release, to show a test fails there).
    pub fn s32s3(&self) -> Command {
        let binary =
            std::env::var("S32S3_TEST_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_s32s3").to_owned());
        let mut cmd = Command::new(binary);
        let (s, d) = (self.source.endpoint(), self.dest.endpoint());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("S32S3_SOURCE_ENDPOINT", &s.endpoint)
            .env("S32S3_SOURCE_ACCESS_KEY_ID", &s.access_key_id)
            .env("S32S3_SOURCE_SECRET_ACCESS_KEY", s.secret_access_key.expose())
            .env("S32S3_DESTINATION_ENDPOINT", &d.endpoint)
            .env("S32S3_DESTINATION_ACCESS_KEY_ID", &d.access_key_id)
            .env("S32S3_DESTINATION_SECRET_ACCESS_KEY", d.secret_access_key.expose())
            .env("S32S3_CRYPT_PASSWORD", PASSWORD)
            .env("S32S3_CRYPT_PASSWORD2", PASSWORD2)
            .env("S32S3_BACKUP_BUCKET", &self.backup_bucket)
            .env("S32S3_LOG_LEVEL", "warn");
        cmd
    }

    /// Runs `s32s3 backup --json --bucket …` and returns the parsed summary; panics unless the exit code
    /// is `expect_code`.
    pub fn backup(&self, buckets: &[&str], expect_code: i32) -> serde_json::Value {
        let mut cmd = self.s32s3();
        cmd.arg("backup").arg("--json");
        for b in buckets {
            cmd.arg("--bucket").arg(b);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(expect_code),
            "stderr: {stderr}\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {stderr}"))
    }

    /// The newest snapshot's manifest entries, through the library.
    pub fn manifest(
        &self,
    ) -> (s32s3_core::format::manifest::Header, Vec<s32s3_core::format::manifest::Entry>) {
        rt().block_on(async {
            let store = s32s3_core::store::s3::Store::new(
                s32s3_core::error::Side::Destination,
                self.dest.endpoint(),
                3,
            )
            .unwrap();
            let cipher = s32s3_core::derive_cipher(&PASSWORD.into(), &PASSWORD2.into()).await.unwrap();
            let layout = s32s3_core::format::layout::Layout::new(&cipher, "").unwrap();
            let snaps =
                s32s3_core::format::snapshots::list(&store, &self.backup_bucket, &layout).await.unwrap();
            let newest = snaps.iter().rev().find(|s| !s.checkpoint).expect("a snapshot exists");
            let dir = tempfile::tempdir().unwrap();
            let reader = s32s3_core::format::snapshots::open(
                &store,
                &self.backup_bucket,
                &newest.key,
                &cipher,
                dir.path(),
            )
            .await
            .unwrap();
            let header = reader.header().clone();
            let entries = reader.map(Result::unwrap).collect();
            (header, entries)
        })
    }

    /// Every object version (and delete marker) in the backup bucket: (key, version id, is delete marker).
    pub fn backup_versions(&self) -> Vec<(String, String, bool)> {
        rt().block_on(async {
            let s3 = self.dest.client();
            let mut out = Vec::new();
            let (mut key_marker, mut version_marker) = (None, None);
            loop {
                let page = s3
                    .list_object_versions()
                    .bucket(&self.backup_bucket)
                    .set_key_marker(key_marker.take())
                    .set_version_id_marker(version_marker.take())
                    .send()
                    .await
                    .unwrap();
                for v in page.versions() {
                    out.push((
                        v.key().unwrap().to_owned(),
                        v.version_id().unwrap_or_default().to_owned(),
                        false,
                    ));
                }
                for m in page.delete_markers() {
                    out.push((
                        m.key().unwrap().to_owned(),
                        m.version_id().unwrap_or_default().to_owned(),
                        true,
                    ));
                }
                if page.is_truncated() != Some(true) {
                    break;
                }
                key_marker = page.next_key_marker().map(str::to_owned);
                version_marker = page.next_version_id_marker().map(str::to_owned);
            }
            out.sort();
            out
        })
    }
}

/// Starts `cmd` with its output captured.
pub fn spawn(mut cmd: Command) -> std::process::Child {
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
}

/// Waits for `child`: its exit code, stdout and stderr.
pub fn finish(child: std::process::Child) -> (Option<i32>, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Deterministic test data, and bucket creation: the test kit's, shared with its conformance scenarios.
#[allow(unused_imports)] // each test binary uses a different subset
pub use s32s3_core::testkit::conformance::{create_bucket, pattern};

pub async fn put(server: &TestServer, bucket: &str, key: &str, body: Vec<u8>) {
    server.client().put_object().bucket(bucket).key(key).body(ByteStream::from(body)).send().await.unwrap();
}

/// Puts many objects, 32 at a time.
pub async fn put_many(server: &TestServer, bucket: &str, objects: Vec<(String, Vec<u8>)>) {
    use futures::StreamExt as _;
    futures::stream::iter(objects)
        .map(|(k, v)| async move { put(server, bucket, &k, v).await })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

/// A tag set of `pairs`, for `PutObjectTagging`.
pub fn tagging(pairs: &[(&str, &str)]) -> aws_sdk_s3::types::Tagging {
    let tags =
        pairs.iter().map(|(k, v)| aws_sdk_s3::types::Tag::builder().key(*k).value(*v).build().unwrap());
    aws_sdk_s3::types::Tagging::builder().set_tag_set(Some(tags.collect())).build().unwrap()
}

/// An object's tags (`GetObjectTagging`).
pub async fn object_tags(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> BTreeMap<String, String> {
    let out = s3.get_object_tagging().bucket(bucket).key(key).send().await.unwrap();
    out.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect()
}

pub fn counts(summary: &serde_json::Value) -> BTreeMap<&'static str, u64> {
    ["new", "changed", "unchanged", "deleted"]
        .into_iter()
        .map(|k| (k, summary[k]["objects"].as_u64().unwrap()))
        .collect()
}

/// An rclone.conf with the source, the destination and a crypt remote over the backup bucket.
pub fn rclone_config(env: &Env, dir: &std::path::Path) -> std::path::PathBuf {
    let remote = |name: &str, s: &TestServer| {
        let e = s.endpoint();
        format!(
            "[{name}]\ntype = s3\nprovider = Other\nendpoint = {}\naccess_key_id = {}\nsecret_access_key = {}\n\
             region = us-east-1\nforce_path_style = true\n\n",
            e.endpoint,
            e.access_key_id,
            e.secret_access_key.expose()
        )
    };
    let conf = format!(
        "{}{}[crypt]\ntype = crypt\nremote = dst:{}\npassword = {}\npassword2 = {}\n",
        remote("src", env.source),
        remote("dst", env.dest),
        env.backup_bucket,
        s32s3_crypt::obscure(PASSWORD).unwrap(),
        s32s3_crypt::obscure(PASSWORD2).unwrap(),
    );
    let path = dir.join("rclone.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

/// The real rclone binary with `config`; fails the test with the install hint if it is missing.
pub fn rclone(config: &std::path::Path) -> Command {
    let found = Command::new("rclone").arg("version").output();
    assert!(found.is_ok_and(|o| o.status.success()), "rclone is not installed: run scripts/setup");
    let mut cmd = Command::new("rclone");
    cmd.env("RCLONE_CONFIG", config).env_remove("AWS_CA_BUNDLE");
    cmd
}

/// A metrics page read by `prometheus-parse`, with what that parser lets pass checked too: it skips lines
/// it cannot read and takes an untyped sample, so every line must be a comment or a sample it read, every
/// sample must have its HELP and TYPE, and no series may appear twice.
pub struct Metrics {
    pub text: String,
    scrape: prometheus_parse::Scrape,
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let sample_lines = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).count();
        assert_eq!(scrape.samples.len(), sample_lines, "lines the parser could not read:\n{text}");
        let mut series = std::collections::BTreeSet::new();
        for sample in &scrape.samples {
            assert!(
                !matches!(sample.value, prometheus_parse::Value::Untyped(_)),
                "{} has no TYPE:\n{text}",
                sample.metric
            );
            assert!(scrape.docs.contains_key(&sample.metric), "{} has no HELP:\n{text}", sample.metric);
            assert!(series.insert(format!("{}{{{}}}", sample.metric, sample.labels)), "twice:\n{text}");
        }
        Self { text: text.to_owned(), scrape }
    }

    /// The value of the series `name` with exactly these labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let sample = self.scrape.samples.iter().find(|s| {
            s.metric == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })?;
        match sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => Some(v),
            _ => panic!("{name} is not a counter or a gauge:\n{}", self.text),
        }
    }

    pub fn value(&self, name: &str) -> Option<f64> {
        self.get(name, &[])
    }
}

/// One version as a client sees it: the SHA-256 of its bytes, content type, metadata and tags.
pub type VersionView = (String, Option<String>, BTreeMap<String, String>, BTreeMap<String, String>);

/// What every server's version listing tells of a key's history: its versions oldest first, how many delete
/// markers, and whether the latest is one. (moto lists times to the second and every version before every
/// delete marker: where a key's versions and delete markers interleave within one second, as a replay
/// writes them, its listing cannot say how.)
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HistoryView {
    pub versions: Vec<VersionView>,
    pub delete_markers: usize,
    pub latest_is_delete_marker: bool,
}

pub fn history_views(server: &TestServer, bucket: &str) -> BTreeMap<String, HistoryView> {
    rt().block_on(async {
        let s3 = server.client();
        let listed = s3.list_object_versions().bucket(bucket).send().await.unwrap();
        assert_ne!(listed.is_truncated(), Some(true));
        let mut out: BTreeMap<String, HistoryView> = BTreeMap::new();
        // Versions are listed newest first: reversed, oldest first.
        for v in listed.versions().iter().rev() {
            let (key, version) = (v.key().unwrap(), v.version_id().unwrap());
            let got = s3.get_object().bucket(bucket).key(key).version_id(version).send().await.unwrap();
            let (content_type, metadata) = (
                got.content_type().map(str::to_owned),
                got.metadata().cloned().unwrap_or_default().into_iter().collect(),
            );
            let body = got.body.collect().await.unwrap().into_bytes();
            let tags =
                s3.get_object_tagging().bucket(bucket).key(key).version_id(version).send().await.unwrap();
            let tags = tags.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
            let view = (hex::encode(sha2::Sha256::digest(&body)), content_type, metadata, tags);
            out.entry(key.to_owned()).or_default().versions.push(view);
        }
        for m in listed.delete_markers() {
            let history = out.entry(m.key().unwrap().to_owned()).or_default();
            history.delete_markers += 1;
            history.latest_is_delete_marker |= m.is_latest() == Some(true);
        }
        out
    })
}
