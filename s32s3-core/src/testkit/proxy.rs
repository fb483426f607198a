//! A fault-injecting HTTP/1.1 proxy between an S3 client and a real local S3 server.
//!
//! [`FaultProxy`] listens on a free loopback port and forwards every request to the upstream server, except
//! those a [`Rule`] picks for a [`Fault`]: an S3 `503 SlowDown`, a response lost after the server applied the
//! request, a response cut off in its body, or a request cut off in its body. Rules match on method, path,
//! query and headers, fire with a probability drawn from a seeded generator, and can be limited to a number of
//! applications, so a test can say "drop the response of the first lease renewal" or "slow down a tenth of all
//! requests", and then check what the client did with [`FaultProxy::stats`].
//!
//! Each client connection carries one request: the proxy tells the client and the upstream `Connection:
//! close`, so hyper and reqwest open a fresh connection for every request and a reset never hits a pooled
//! connection. The proxy runs on its own thread with its own tokio runtime, so it serves synchronous tests
//! that run the `s32s3` binary as well as `#[tokio::test]`s; it stops when the [`FaultProxy`] is dropped.
//!
//! ```no_run
//! use s32s3_core::testkit::proxy::{Fault, FaultProxy, Match, Rule};
//!
//! let server = s32s3_core::testkit::seaweedfs();
//! let proxy = FaultProxy::start(&server.endpoint());
//! proxy.set_rules(vec![
//!     // The first lease renewal is applied by the server, but its answer never reaches the client.
//!     Rule::new(
//!         Match::method("PUT").with_path_contains(".s32s3/lock").with_header("if-match"),
//!         Fault::ResetBeforeResponse,
//!     )
//!     .with_limit(1),
//!     // And one request in ten is refused with 503 SlowDown.
//!     Rule::random(Fault::SlowDown, 0.1),
//! ]);
//! let client = s32s3_core::store::s3::sdk_client(&proxy.endpoint()).unwrap();
//! // ... run the code under test with `client` or `proxy.endpoint()` ...
//! println!("{:?}", proxy.stats());
//! ```
//!
// Spelled out from the crate root: rustdoc resolves these docs together with the `pub mod proxy;` line's doc
// comment, in the parent module's scope, where the short names do not exist.
//! [`FaultProxy`]: crate::testkit::proxy::FaultProxy
//! [`FaultProxy::stats`]: crate::testkit::proxy::FaultProxy::stats
//! [`Rule`]: crate::testkit::proxy::Rule
//! [`Fault`]: crate::testkit::proxy::Fault

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::options::S3Endpoint;

/// The largest request or response head (request line or status line plus headers) the proxy accepts.
const MAX_HEAD: usize = 64 * 1024;
/// The largest chunk-size or trailer line of a chunked body.
const MAX_LINE: usize = 8 * 1024;
/// How much of a chunked request body [`Fault::ResetMidRequestBody`] reads at most before the reset.
const MAX_CHUNKED_CUT: u64 = 64 * 1024;
/// How long a connection is drained after its response, so the client reads the response instead of a reset.
const LINGER: Duration = Duration::from_secs(2);
/// Time given to the client to take in a partial response before the reset discards what is still unsent.
const BEFORE_RESET: Duration = Duration::from_millis(50);

/// What the proxy does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Forward the request and relay the response unchanged (apart from `Connection: close`).
    Pass,
    /// Answer `503 Slow Down` with S3's `SlowDown` error document, without forwarding. The request body is
    /// read and discarded first so the client sees the answer rather than a broken pipe; a request with
    /// `Expect: 100-continue` is answered at once.
    SlowDown,
    /// The lost response: forward the whole request, let the upstream answer it completely, then reset the
    /// client connection (TCP RST) without sending anything. The write lands on the server; the client never
    /// learns.
    ResetBeforeResponse,
    /// Forward, relay the response head and a random part (never all) of the response body, then reset. With
    /// an empty body this is [`Fault::ResetBeforeResponse`].
    ResetMidResponseBody,
    /// Read a random part (never all, unless it is empty) of the request body, then reset; the upstream never
    /// sees the request.
    ResetMidRequestBody,
    /// Forward, and relay the response without this header (e.g. `x-amz-version-id`: a store that takes
    /// versioning but never says which version it wrote).
    StripResponseHeader(&'static str),
    /// Answer with this S3 error (status and code, e.g. `403` `AccessDenied` or `InvalidAccessKeyId`)
    /// without forwarding, like [`Fault::SlowDown`].
    Error {
        /// HTTP status.
        status: u16,
        /// S3 error code.
        code: &'static str,
    },
}

/// Which requests a [`Rule`] applies to: every condition that is set must hold. [`Match::default`] (all
/// `None`) matches every request.
///
/// Path and query are the raw (percent-encoded) text of the request target, split at the first `?`; with the
/// path-style addressing s32s3 uses, the path is `/bucket/key`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Match {
    /// The request method (`GET`, `PUT`, ...), compared ignoring ASCII case.
    pub method: Option<String>,
    /// Text the raw path must contain.
    pub path_contains: Option<String>,
    /// Text the raw query (without the `?`) must contain; a request without a query has an empty one.
    pub query_contains: Option<String>,
    /// A header the request must carry (name compared ignoring case; any value).
    pub header: Option<String>,
}

impl Match {
    /// Matches every request.
    #[must_use]
    pub fn any() -> Self {
        Self::default()
    }

    /// Matches requests with this method.
    #[must_use]
    pub fn method(method: impl Into<String>) -> Self {
        Self { method: Some(method.into()), ..Self::default() }
    }

    /// Also requires the raw path to contain `text`.
    #[must_use]
    pub fn with_path_contains(mut self, text: impl Into<String>) -> Self {
        self.path_contains = Some(text.into());
        self
    }

    /// Also requires the raw query to contain `text`.
    #[must_use]
    pub fn with_query_contains(mut self, text: impl Into<String>) -> Self {
        self.query_contains = Some(text.into());
        self
    }

    /// Also requires the header `name` to be present.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>) -> Self {
        self.header = Some(name.into());
        self
    }

    fn matches(&self, request: &RequestHead) -> bool {
        let (path, query) = request.target.split_once('?').unwrap_or((&request.target, ""));
        self.method.as_ref().is_none_or(|m| m.eq_ignore_ascii_case(&request.method))
            && self.path_contains.as_ref().is_none_or(|text| path.contains(text.as_str()))
            && self.query_contains.as_ref().is_none_or(|text| query.contains(text.as_str()))
            && self.header.as_ref().is_none_or(|name| request.header(name).is_some())
    }
}

/// A fault to apply to matching requests.
///
/// The first rule that matches a request decides it: with `probability` it applies its fault, otherwise the
/// request passes. A rule that has been applied `limit` times stops matching, so later rules see the
/// requests it used to take.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Which requests the rule takes.
    pub matcher: Match,
    /// What happens to them.
    pub fault: Fault,
    /// The chance, from 0.0 to 1.0, that a request the rule takes gets the fault (drawn from the proxy's
    /// seeded generator).
    pub probability: f64,
    /// At most this many applications of the fault, then the rule stops matching.
    pub limit: Option<u64>,
}

impl Rule {
    /// Applies `fault` to every request `matcher` matches (probability 1, no limit).
    #[must_use]
    pub fn new(matcher: Match, fault: Fault) -> Self {
        Self { matcher, fault, probability: 1.0, limit: None }
    }

    /// Random chaos: applies `fault` to any request with `probability`.
    #[must_use]
    pub fn random(fault: Fault, probability: f64) -> Self {
        Self { probability, ..Self::new(Match::any(), fault) }
    }

    /// Sets the probability.
    #[must_use]
    pub fn with_probability(mut self, probability: f64) -> Self {
        self.probability = probability;
        self
    }

    /// Stops the rule after `limit` applications.
    #[must_use]
    pub fn with_limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// What the proxy has seen since it started (not reset by [`FaultProxy::set_rules`]).
///
/// A request is counted as soon as its head has been read and its fault decided, i.e. before the client can
/// see any outcome of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests received (heads read).
    pub requests: u64,
    /// Requests passed through, by a [`Fault::Pass`] rule, a rule whose dice said no, or no rule at all.
    pub passed: u64,
    /// [`Fault::SlowDown`] applications.
    pub slow_down: u64,
    /// [`Fault::ResetBeforeResponse`] applications.
    pub reset_before_response: u64,
    /// [`Fault::ResetMidResponseBody`] applications.
    pub reset_mid_response_body: u64,
    /// [`Fault::ResetMidRequestBody`] applications.
    pub reset_mid_request_body: u64,
    /// [`Fault::Error`] applications.
    pub errors: u64,
    /// [`Fault::StripResponseHeader`] applications.
    pub stripped: u64,
}

impl Stats {
    /// How many requests got `fault` ([`Fault::Pass`]: how many passed).
    #[must_use]
    pub fn applied(&self, fault: Fault) -> u64 {
        match fault {
            Fault::Pass => self.passed,
            Fault::SlowDown => self.slow_down,
            Fault::ResetBeforeResponse => self.reset_before_response,
            Fault::ResetMidResponseBody => self.reset_mid_response_body,
            Fault::ResetMidRequestBody => self.reset_mid_request_body,
            Fault::Error { .. } => self.errors,
            Fault::StripResponseHeader(_) => self.stripped,
        }
    }

    /// How many requests got a fault other than [`Fault::Pass`].
    #[must_use]
    pub fn faults(&self) -> u64 {
        self.requests - self.passed
    }

    fn count(&mut self, fault: Fault) {
        *match fault {
            Fault::Pass => &mut self.passed,
            Fault::SlowDown => &mut self.slow_down,
            Fault::ResetBeforeResponse => &mut self.reset_before_response,
            Fault::ResetMidResponseBody => &mut self.reset_mid_response_body,
            Fault::ResetMidRequestBody => &mut self.reset_mid_request_body,
            Fault::Error { .. } => &mut self.errors,
            Fault::StripResponseHeader(_) => &mut self.stripped,
        } += 1;
    }
}

/// A running fault-injecting proxy in front of one S3 server; stopped (and its connections cut) on drop.
pub struct FaultProxy {
    address: SocketAddr,
    upstream: S3Endpoint,
    seed: u64,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("address", &self.address)
            .field("upstream", &self.upstream.endpoint)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on `127.0.0.1` and a free port, with a random seed (printed to stderr,
    /// which the test harness shows for a failing test, and returned by [`FaultProxy::seed`]). No rules: every
    /// request passes until [`FaultProxy::set_rules`].
    ///
    /// # Panics
    /// When `upstream` is not an `http://` URL of a reachable host name, or no port can be bound.
    #[must_use]
    pub fn start(upstream: &S3Endpoint) -> Self {
        Self::start_with_seed(upstream, rand::random())
    }

    /// [`FaultProxy::start`] with the generator that rolls the dice and picks the cut points seeded by
    /// `seed`. The same seed and the same requests in the same order give the same faults.
    ///
    /// # Panics
    /// When `upstream` is not an `http://` URL of a reachable host name, or no port can be bound.
    #[must_use]
    pub fn start_with_seed(upstream: &S3Endpoint, seed: u64) -> Self {
        let target = upstream_address(&upstream.endpoint);
        // Bound here, not on the proxy's thread, so the port accepts connections (into the backlog) as soon
        // as this returns.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy's port");
        listener.set_nonblocking(true).expect("make the fault proxy's listener non-blocking");
        let address = listener.local_addr().expect("the fault proxy's listener has an address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                rules: Vec::new(),
                rng: StdRng::seed_from_u64(seed),
                stats: Stats::default(),
                log: Vec::new(),
            }),
        });
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", address.port()))
            .spawn({
                let shared = Arc::clone(&shared);
                move || serve(listener, target, shared, stopped)
            })
            .expect("spawn the fault proxy's thread");
        eprintln!("fault proxy on {address} -> {target}, seed {seed}");
        Self { address, upstream: upstream.clone(), seed, shared, stop: Some(stop), thread: Some(thread) }
    }

    /// The upstream's endpoint and keys with the proxy's URL: what the code under test should talk to.
    #[must_use]
    pub fn endpoint(&self) -> S3Endpoint {
        S3Endpoint { endpoint: format!("http://{}", self.address), ..self.upstream.clone() }
    }

    /// The address the proxy listens on.
    #[must_use]
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The seed of the proxy's random generator.
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Replaces all rules at once (their application counts start from zero); requests whose fault is
    /// already decided are not affected. An empty list lets everything pass.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        self.shared.lock().rules = rules.into_iter().map(|rule| RuleState { rule, applied: 0 }).collect();
    }

    /// The counts so far.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats
    }

    /// Every request received so far, in the order their heads arrived, with the fault each got.
    #[must_use]
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }
}

/// One request as the proxy saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    /// The method.
    pub method: String,
    /// The request target (`/bucket/key?query`), raw.
    pub target: String,
    /// The header lines as (lower-case name, value); `authorization` is left out.
    pub headers: Vec<(String, String)>,
    /// What the proxy did with it.
    pub fault: Fault,
}

impl LoggedRequest {
    /// The value of header `name` (lower case), if present.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Shared {
    state: Mutex<State>,
}

struct State {
    rules: Vec<RuleState>,
    rng: StdRng,
    stats: Stats,
    log: Vec<LoggedRequest>,
}

struct RuleState {
    rule: Rule,
    applied: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters, never a broken invariant: keep going.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts the request and decides its fault.
    fn decide(&self, request: &RequestHead) -> Fault {
        let mut guard = self.lock();
        let State { rules, rng, stats, log } = &mut *guard;
        stats.requests += 1;
        let mut fault = Fault::Pass;
        let taken = rules.iter_mut().find(|state| {
            state.rule.limit.is_none_or(|limit| state.applied < limit) && state.rule.matcher.matches(request)
        });
        // `random::<f64>()` is in [0, 1): probability 1 always fires, 0 (and NaN) never.
        if let Some(state) = taken
            && rng.random::<f64>() < state.rule.probability
        {
            state.applied += 1;
            fault = state.rule.fault;
        }
        stats.count(fault);
        let headers = request
            .head
            .headers
            .iter()
            .filter_map(|line| {
                let colon = line.iter().position(|&b| b == b':')?;
                let name = String::from_utf8_lossy(line[..colon].trim_ascii()).to_ascii_lowercase();
                let value = String::from_utf8_lossy(line[colon + 1..].trim_ascii()).into_owned();
                (name != "authorization").then_some((name, value))
            })
            .collect();
        log.push(LoggedRequest {
            method: request.method.clone(),
            target: request.target.clone(),
            headers,
            fault,
        });
        fault
    }

    /// A random number in `0..end` (0 when `end` is 0).
    fn below(&self, end: u64) -> u64 {
        if end == 0 { 0 } else { self.lock().rng.random_range(0..end) }
    }
}

/// The upstream's socket address, from an `http://host:port` endpoint URL.
fn upstream_address(endpoint: &str) -> SocketAddr {
    let uri: http::Uri =
        endpoint.parse().unwrap_or_else(|e| panic!("upstream {endpoint:?} is not a URL: {e}"));
    assert!(
        uri.scheme() == Some(&http::uri::Scheme::HTTP),
        "the fault proxy speaks plain HTTP only, not to {endpoint:?}"
    );
    let host = uri.host().unwrap_or_else(|| panic!("upstream {endpoint:?} has no host"));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, uri.port_u16().unwrap_or(80))
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .unwrap_or_else(|| panic!("cannot resolve the upstream {endpoint:?}"))
}

/// The proxy's thread: accepts connections until `stopped` fires (or its sender is dropped).
fn serve(
    listener: std::net::TcpListener,
    target: SocketAddr,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fault-proxy-worker")
        .enable_all()
        .build()
        .expect("build the fault proxy's runtime");
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener).expect("register the fault proxy's listener");
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => match accepted {
                    Ok((client, _)) => {
                        let shared = Arc::clone(&shared);
                        connections.spawn(async move {
                            if let Err(e) = handle(client, target, &shared).await {
                                tracing::debug!("fault proxy connection: {e}");
                            }
                        });
                    }
                    // E.g. EMFILE: back off instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                // Reap finished connections so the set does not grow with every request.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        // Dropping the set aborts the connections still open.
    });
}

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body at all (a request without length headers, a HEAD response, 1xx/204/304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// A response without length: until the connection closes.
    UntilEof,
}

/// A parsed message head: the first line and the header lines, as received (without line ends).
#[derive(Debug)]
struct Head {
    first: Vec<u8>,
    headers: Vec<Vec<u8>>,
}

impl Head {
    /// The value of the first header called `name`, trimmed.
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| line[colon + 1..].trim_ascii())
        })
    }

    /// The body framing this head announces (RFC 9112 §6.3: chunked wins over a length).
    fn framing(&self, otherwise: Framing) -> io::Result<Framing> {
        if let Some(codings) = self.header("transfer-encoding") {
            let last = codings.rsplit(|&b| b == b',').next().unwrap_or_default().trim_ascii();
            return if last.eq_ignore_ascii_case(b"chunked") { Ok(Framing::Chunked) } else { Ok(otherwise) };
        }
        match self.header("content-length") {
            Some(length) => std::str::from_utf8(length)
                .ok()
                .and_then(|length| length.parse().ok())
                .map(Framing::Length)
                .ok_or_else(|| invalid("bad Content-Length")),
            None => Ok(otherwise),
        }
    }

    /// The head as bytes, as received.
    fn encode(&self) -> Vec<u8> {
        self.encode_without(&[], false)
    }

    /// The head as bytes, without the hop-by-hop headers named in `drop` and with `Connection: close`.
    fn forward(&self, drop: &[&str]) -> Vec<u8> {
        self.encode_without(drop, true)
    }

    fn encode_without(&self, drop: &[&str], close: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.first.len() + self.headers.iter().map(|h| h.len() + 2).sum::<usize>() + 24,
        );
        out.extend_from_slice(&self.first);
        out.extend_from_slice(b"\r\n");
        for line in &self.headers {
            let name = line.split(|&b| b == b':').next().unwrap_or_default().trim_ascii();
            if !drop.iter().any(|d| name.eq_ignore_ascii_case(d.as_bytes())) {
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
            }
        }
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// The request line, split, and its head.
#[derive(Debug)]
struct RequestHead {
    method: String,
    target: String,
    head: Head,
}

impl RequestHead {
    fn parse(head: Head) -> io::Result<Self> {
        let line = String::from_utf8_lossy(&head.first).into_owned();
        let mut parts = line.split(' ');
        let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("bad request line"));
        };
        if !version.starts_with("HTTP/1.") {
            return Err(invalid("not HTTP/1.x"));
        }
        Ok(Self { method: method.to_owned(), target: target.to_owned(), head })
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.head.header(name)
    }

    fn is_head(&self) -> bool {
        self.method.eq_ignore_ascii_case("HEAD")
    }

    fn expects_continue(&self) -> bool {
        self.header("expect").is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"))
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Reads one line (through its `\n`, kept) into `line`, refusing lines longer than `cap`.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    cap: usize,
) -> io::Result<()> {
    line.clear();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if line.len() > cap {
            return Err(invalid("line too long"));
        }
        if done {
            return Ok(());
        }
    }
}

/// Reads a message head up to its empty line; `None` when the peer closed before sending anything.
async fn read_head<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<Option<Head>> {
    if reader.fill_buf().await?.is_empty() {
        return Ok(None);
    }
    let mut total = 0;
    let mut line = Vec::new();
    let mut first = None;
    let mut headers = Vec::new();
    loop {
        read_line(reader, &mut line, MAX_HEAD - total).await?;
        total += line.len();
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            // Tolerate blank lines before the first line (RFC 9112 §2.2).
            if first.is_none() {
                continue;
            }
            return Ok(Some(Head { first: first.unwrap_or_default(), headers }));
        }
        if first.is_none() {
            first = Some(text.to_vec());
        } else {
            headers.push(text.to_vec());
        }
    }
}

/// Whether a body was copied whole or cut off at the byte budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Copied {
    Whole,
    Cut,
}

/// Writes at most `budget` more bytes of `bytes`; `false` when the budget ran out before all were written.
async fn emit<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8], budget: &mut u64) -> io::Result<bool> {
    let n = bytes.len().min(usize::try_from(*budget).unwrap_or(usize::MAX));
    writer.write_all(&bytes[..n]).await?;
    *budget -= n as u64;
    Ok(n == bytes.len())
}

/// Copies `length` raw bytes (or up to EOF when `length` is `None`) through the budget.
async fn copy_raw<R, W>(
    reader: &mut R,
    writer: &mut W,
    length: Option<u64>,
    budget: &mut u64,
) -> io::Result<Copied>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut left = length.unwrap_or(u64::MAX);
    while left > 0 {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return if length.is_none() {
                Ok(Copied::Whole)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let whole = emit(writer, &buf[..take], budget).await?;
        reader.consume(take);
        if !whole {
            return Ok(Copied::Cut);
        }
        left -= take as u64;
    }
    Ok(Copied::Whole)
}

/// Copies one message body as raw bytes (chunk framing included), delimited by `framing`, stopping after
/// `budget` bytes.
async fn copy_body<R, W>(
    reader: &mut R,
    writer: &mut W,
    framing: Framing,
    mut budget: u64,
) -> io::Result<Copied>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let budget = &mut budget;
    let copied = match framing {
        Framing::Empty => Copied::Whole,
        Framing::Length(length) => copy_raw(reader, writer, Some(length), budget).await?,
        Framing::UntilEof => copy_raw(reader, writer, None, budget).await?,
        Framing::Chunked => copy_chunked(reader, writer, budget).await?,
    };
    writer.flush().await?;
    Ok(copied)
}

async fn copy_chunked<R, W>(reader: &mut R, writer: &mut W, budget: &mut u64) -> io::Result<Copied>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut line = Vec::new();
    loop {
        read_line(reader, &mut line, MAX_LINE).await?;
        if !emit(writer, &line, budget).await? {
            return Ok(Copied::Cut);
        }
        let size =
            line.split(|&b| b == b';' || b == b'\r' || b == b'\n').next().unwrap_or_default().trim_ascii();
        let size = std::str::from_utf8(size)
            .ok()
            .and_then(|size| u64::from_str_radix(size, 16).ok())
            .ok_or_else(|| invalid("bad chunk size"))?;
        if size == 0 {
            // Trailer fields, then the empty line that ends the body.
            loop {
                read_line(reader, &mut line, MAX_LINE).await?;
                if !emit(writer, &line, budget).await? {
                    return Ok(Copied::Cut);
                }
                if line == b"\r\n" || line == b"\n" {
                    return Ok(Copied::Whole);
                }
            }
        }
        // The chunk's data and the line end after it.
        if copy_raw(reader, writer, Some(size), budget).await? == Copied::Cut {
            return Ok(Copied::Cut);
        }
        read_line(reader, &mut line, MAX_LINE).await?;
        if !emit(writer, &line, budget).await? {
            return Ok(Copied::Cut);
        }
    }
}

/// A response read from the upstream: its final head (rewritten for the client) and raw body.
struct Response {
    head: Vec<u8>,
    body: Vec<u8>,
}

/// The final (non-1xx) response head from the upstream, with its framing; interim responses are relayed to
/// `interim` when given, else dropped.
async fn read_final_head<R, W>(
    upstream: &mut R,
    mut interim: Option<&mut W>,
    request_is_head: bool,
) -> io::Result<(Head, Framing)>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let head = read_head(upstream).await?.ok_or(io::ErrorKind::UnexpectedEof)?;
        let status = head
            .first
            .split(|&b| b == b' ')
            .nth(1)
            .and_then(|code| std::str::from_utf8(code).ok())
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| invalid("bad status line"))?;
        if (100..200).contains(&status) && status != 101 {
            if let Some(client) = interim.as_deref_mut() {
                client.write_all(&head.encode()).await?;
            }
            continue;
        }
        let framing = if request_is_head || status == 204 || status == 304 || status == 101 {
            Framing::Empty
        } else {
            head.framing(Framing::UntilEof)?
        };
        return Ok((head, framing));
    }
}

/// The head sent to the client: `Connection: close` instead of any connection management of the upstream's.
fn client_head(head: &Head) -> Vec<u8> {
    head.forward(&["connection", "keep-alive"])
}

/// Reads the whole response from the upstream into memory.
async fn read_response<R: AsyncBufRead + Unpin>(
    upstream: &mut R,
    request_is_head: bool,
) -> io::Result<Response> {
    let (head, framing) = read_final_head(upstream, None::<&mut tokio::io::Sink>, request_is_head).await?;
    let mut body = Vec::new();
    copy_body(upstream, &mut body, framing, u64::MAX).await?;
    Ok(Response { head: client_head(&head), body })
}

/// The `503 Slow Down` answer (no body for a HEAD request, as HTTP requires).
fn slow_down(request: &RequestHead) -> Vec<u8> {
    error_answer(request, 503, "Slow Down", "SlowDown", "Please reduce your request rate.")
}

/// An S3 error document answer.
fn error_answer(request: &RequestHead, status: u16, reason: &str, code: &str, message: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>\
         <RequestId>s32s3-fault-proxy</RequestId></Error>"
    );
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: \
         close\r\n\r\n",
        body.len()
    );
    if !request.is_head() {
        response.push_str(&body);
    }
    response.into_bytes()
}

/// How a connection ends.
enum End {
    /// Shut down our side, then drain the client until it closes (or [`LINGER`] passes), so that what we sent
    /// is read rather than discarded by a reset that unread input would cause.
    Close,
    /// Reset (linger 0, then close): a TCP RST, with anything unsent discarded.
    Reset,
}

async fn handle(mut client: TcpStream, target: SocketAddr, shared: &Shared) -> io::Result<()> {
    let _ = client.set_nodelay(true);
    let end = exchange(&mut client, target, shared).await?;
    match end {
        End::Reset => client.set_zero_linger()?,
        End::Close => {
            client.shutdown().await?;
            let mut sink = vec![0u8; 16 * 1024];
            let _ = tokio::time::timeout(LINGER, async {
                while client.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            })
            .await;
        }
    }
    Ok(())
}

/// How much of a request body a `ResetMidRequestBody` lets through.
fn request_cut(shared: &Shared, framing: Framing) -> u64 {
    match framing {
        Framing::Empty => 0,
        Framing::Length(length) => shared.below(length),
        Framing::Chunked | Framing::UntilEof => shared.below(MAX_CHUNKED_CUT),
    }
}

/// The answer when the upstream cannot be reached.
fn bad_gateway(target: SocketAddr) -> String {
    let body = format!("fault proxy: cannot connect to {target}");
    format!(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: \
         close\r\n\r\n{body}",
        body.len()
    )
}

/// Relays the upstream's response to the client (interim responses too), without the header `strip`.
async fn relay_response<R, W>(
    upstream: &mut R,
    client: &mut W,
    is_head: bool,
    strip: Option<&str>,
) -> io::Result<Copied>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut head, framing) = read_final_head(upstream, Some(&mut *client), is_head).await?;
    if let Some(name) = strip {
        head.headers.retain(|line| {
            let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
            !line[..colon].trim_ascii().eq_ignore_ascii_case(name.as_bytes())
        });
    }
    client.write_all(&client_head(&head)).await?;
    copy_body(upstream, client, framing, u64::MAX).await
}

/// Sends the response's head and part of its body (at least one byte short, and at least one byte of
/// body when there are two or more), then waits before the reset.
async fn send_cut_short<W: AsyncWrite + Unpin>(
    client: &mut W,
    response: &Response,
    shared: &Shared,
) -> io::Result<()> {
    if response.body.is_empty() {
        return Ok(());
    }
    let len = response.body.len() as u64;
    let cut = if len >= 2 { 1 + shared.below(len - 1) } else { 0 };
    client.write_all(&response.head).await?;
    client.write_all(&response.body[..cut as usize]).await?;
    client.flush().await?;
    tokio::time::sleep(BEFORE_RESET).await;
    Ok(())
}

/// Serves the one request of a client connection; says how to end the connection.
async fn exchange(client: &mut TcpStream, target: SocketAddr, shared: &Shared) -> io::Result<End> {
    let (client_read, mut client_write) = client.split();
    let mut client_read = BufReader::with_capacity(64 * 1024, client_read);
    let Some(head) = read_head(&mut client_read).await? else {
        return Ok(End::Close);
    };
    let request = RequestHead::parse(head)?;
    let framing = request.head.framing(Framing::Empty)?;
    let fault = shared.decide(&request);

    if matches!(fault, Fault::SlowDown | Fault::Error { .. }) {
        // A client that waits for `100 Continue` gets the refusal instead; any other sends its body, which is
        // read first so that it does not run into a reset.
        if !request.expects_continue() {
            copy_body(&mut client_read, &mut tokio::io::sink(), framing, u64::MAX).await?;
        }
        let answer = match fault {
            Fault::Error { status, code } => {
                error_answer(&request, status, "Error", code, "injected by the fault proxy")
            }
            _ => slow_down(&request),
        };
        client_write.write_all(&answer).await?;
        return Ok(End::Close);
    }
    // The proxy answers `Expect: 100-continue` itself (and does not forward it), so that no fault can leave a
    // client waiting for a `100 Continue` that the upstream never sends.
    if request.expects_continue() {
        client_write.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    if fault == Fault::ResetMidRequestBody {
        copy_body(&mut client_read, &mut tokio::io::sink(), framing, request_cut(shared, framing)).await?;
        return Ok(End::Reset);
    }

    let Ok(mut upstream) = TcpStream::connect(target).await else {
        client_write.write_all(bad_gateway(target).as_bytes()).await?;
        return Ok(End::Close);
    };
    let _ = upstream.set_nodelay(true);
    let (upstream_read, mut upstream_write) = upstream.split();
    let mut upstream_read = BufReader::with_capacity(64 * 1024, upstream_read);
    upstream_write
        .write_all(&request.head.forward(&["connection", "keep-alive", "proxy-connection", "expect"]))
        .await?;

    // The body goes up while the response comes down: an upstream may answer (and close) before it has read
    // the whole body, and then the response must still reach the client.
    let send = async {
        let sent = copy_body(&mut client_read, &mut upstream_write, framing, u64::MAX).await;
        if sent.is_err() {
            // Half-close, so that an upstream waiting for the rest of the body gives up instead of hanging.
            let _ = upstream_write.shutdown().await;
        }
        sent.map(|_| ())
    };
    let is_head = request.is_head();
    match fault {
        Fault::Pass | Fault::StripResponseHeader(_) => {
            let strip = match fault {
                Fault::StripResponseHeader(name) => Some(name),
                _ => None,
            };
            let relay = relay_response(&mut upstream_read, &mut client_write, is_head, strip);
            let (sent, relayed) = tokio::join!(send, relay);
            relayed?;
            if let Err(e) = sent {
                tracing::debug!("fault proxy: request body not forwarded completely: {e}");
            }
            Ok(End::Close)
        }
        Fault::ResetBeforeResponse => {
            let (_, response) = tokio::join!(send, read_response(&mut upstream_read, is_head));
            response?;
            Ok(End::Reset)
        }
        Fault::ResetMidResponseBody => {
            let (_, response) = tokio::join!(send, read_response(&mut upstream_read, is_head));
            send_cut_short(&mut client_write, &response?, shared).await?;
            Ok(End::Reset)
        }
        Fault::SlowDown | Fault::ResetMidRequestBody | Fault::Error { .. } => unreachable!("answered above"),
    }
}
