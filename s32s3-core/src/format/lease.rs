//! The lease on a backup location (`.s32s3/lock`): one writer at a time.
//!
//! The protocol (the project's `DESIGN.md`, "Lease", states it for other implementations):
//! - **Take**: a conditional create (`If-None-Match: *`). A lock that exists is taken over, with `If-Match`
//!   on its ETag so two runs racing for it cannot both win, only when it has expired (its holder stopped
//!   renewing) or its holder is *provably* dead: the same host name, the same boot id and the same PID
//!   namespace as ours, and no process with its PID. A holder in another container or sidecar (another PID
//!   namespace under the same host name) is never taken for dead: its lease is held until it expires.
//! - **Renew** every third of the TTL with one conditional `PUT` (`If-Match` on the ETag we hold), a short
//!   per-attempt timeout and no blind retry. An answer that is lost (timeout, reset, 5xx) or a 412 is
//!   resolved by reading the lock back: if it carries our run id and the renewal number we just sent, the
//!   renewal landed and its ETag is adopted; if it still carries our previous renewal, we try again; if it
//!   names another run, or is gone, the lease is lost.
//! - **Doubt**: the lease is known good until the TTL after the moment its last successful renewal was
//!   *sent*. Once a renewal is overdue the lease is in doubt: [`Lease::check`] (called before every new
//!   transfer and every write of data) waits for a renewal to land, and fails once the TTL has run out.
//! - **Fence**: a checkpoint or a manifest is written only right after [`Lease::confirm`], a conditional
//!   renewal that proves we still hold the lock and gives the write a whole TTL.
//! - **Release**: delete the lock if it still carries our ETag.
//! - **Shards**: the N processes of one sharded run (the same run id, the same N) share the lock. A shard
//!   finding it held by its own run joins it (a conditional renewal in its own name) instead of being locked
//!   out; each shard renews it, a renewal refused because another shard of the run renewed first is simply
//!   sent again on the new ETag. A sharded lock is never taken for dead by PID (its last writer may have
//!   finished while the others work), only by expiry; a shard that finishes leaves it to the others, and
//!   only the shard that writes the run's snapshot deletes it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::error::S3ErrorKind;
use crate::error::{Error, Result};
use crate::store::{ObjectAttrs, Store, WriteCondition};

/// How long a lease lasts without renewal, unless configured otherwise.
pub const TTL: Duration = crate::options::LEASE_TTL;

/// The shortest TTL accepted: renewals go out every third of it, each with a timeout of a tenth.
pub const MIN_TTL: Duration = crate::options::MIN_LEASE_TTL;

/// What the lock object says (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The run holding it.
    pub run_id: String,
    /// What the run is doing (`backup`).
    pub command: String,
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder, in its PID namespace.
    pub pid: u32,
    /// The holder's kernel boot id (`/proc/sys/kernel/random/boot_id`): a PID means nothing across reboots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The holder's PID namespace (`/proc/self/ns/pid`, e.g. `pid:[4026531836]`): a PID means nothing in
    /// another namespace (another container, a sidecar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_namespace: Option<String>,
    /// When it was taken (RFC 3339).
    pub acquired: String,
    /// When it expires unless renewed (RFC 3339).
    pub expires: String,
    /// Renewals so far: tells a renewal that landed (its answer lost) from one that did not.
    #[serde(default)]
    pub renewal: u64,
    /// A sharded run: how many shards share the lock (`None`: one process holds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// Which shard of a sharded run wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
}

impl LockInfo {
    /// Whether the lease has expired at `now` (an unreadable expiry counts as expired).
    #[must_use]
    pub fn expired(&self, now: OffsetDateTime) -> bool {
        OffsetDateTime::parse(&self.expires, &Rfc3339).map_or(true, |t| t < now)
    }

    /// Whether the holder is provably a dead process: same host, same boot, same PID namespace as `me`
    /// (whose `/proc` shows that namespace), and no process with its PID.
    #[must_use]
    pub fn holder_dead(&self, me: &Holder) -> bool {
        // The last writer of a sharded lock may have finished while other shards work.
        if self.shards.is_some() {
            return false;
        }
        let same_namespace = me.proc_is_own
            && self.host == me.host
            && self.boot_id.is_some()
            && self.boot_id == me.boot_id
            && self.pid_namespace.is_some()
            && self.pid_namespace == me.pid_namespace;
        same_namespace && self.pid != me.pid && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

impl LockInfo {
    /// Whether `self` and `other` were written by the same process of the same run (the same shard, host,
    /// PID and take time): a renewal of ours, not another shard's.
    fn same_writer(&self, other: &LockInfo) -> bool {
        self.run_id == other.run_id
            && self.shard == other.shard
            && self.host == other.host
            && self.pid == other.pid
            && self.acquired == other.acquired
    }

    /// Whether `other` is written by another shard of the same sharded run as `self`.
    fn co_holder(&self, other: &LockInfo) -> bool {
        self.run_id == other.run_id
            && self.shards.is_some()
            && self.shards == other.shards
            && !self.same_writer(other)
    }
}

/// Who this process is, as a lock records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Host name.
    pub host: String,
    /// PID in our namespace.
    pub pid: u32,
    /// Kernel boot id, when readable.
    pub boot_id: Option<String>,
    /// PID namespace, when readable.
    pub pid_namespace: Option<String>,
    /// `/proc` is mounted for our own PID namespace (`/proc/self` is our PID), so a PID looked up there
    /// means what it says.
    pub proc_is_own: bool,
}

impl Holder {
    /// This process.
    #[must_use]
    pub fn current() -> Self {
        let pid = std::process::id();
        let read = |path: &str| {
            std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
        };
        let link = |path: &str| std::fs::read_link(path).ok().map(|p| p.to_string_lossy().into_owned());
        Self {
            host: hostname(),
            pid,
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            pid_namespace: link("/proc/self/ns/pid"),
            proc_is_own: link("/proc/self").is_some_and(|p| p == pid.to_string()),
        }
    }
}

/// The lease's state, as the renewer last saw it.
#[derive(Clone, Debug)]
enum State {
    /// Known good until `until` (the TTL after the last successful renewal was sent).
    Held { until: Instant },
    /// Lost: another run took it, it was deleted, or it could not be renewed in time.
    Lost(String),
}

#[derive(Debug)]
struct Shared {
    store: Store,
    bucket: String,
    key: String,
    ttl: Duration,
    clock: Clock,
    /// What we last wrote, and its ETag.
    held: tokio::sync::Mutex<(LockInfo, String)>,
    state: watch::Sender<State>,
    lost: CancellationToken,
}

/// One shard of a sharded run, as the lease knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseShard {
    /// This shard, from 0.
    pub index: u32,
    /// How many shards the run has.
    pub count: u32,
}

/// A held lease; renewed in the background until [`Lease::release`].
#[derive(Debug)]
pub struct Lease {
    shared: Arc<Shared>,
    renewer: tokio::task::JoinHandle<()>,
    version_id: Option<String>,
    /// A shard joined the lock of its run while another shard held it (unexpired).
    joined_live: bool,
}

/// Options of a lease.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    /// Lifetime without renewal.
    pub ttl: Duration,
    /// The clock the lock's times are written and compared with.
    pub clock: Clock,
    /// The shard of a sharded run (`None`: the run is one process).
    pub shard: Option<LeaseShard>,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        Self { ttl: TTL, clock: Clock::system(), shard: None }
    }
}

impl LockInfo {
    /// A new lock for `run_id` doing `command`, held by `me` from `now` for `ttl`.
    fn new(
        run_id: &str,
        command: &str,
        me: &Holder,
        now: time::OffsetDateTime,
        ttl: Duration,
        shard: Option<LeaseShard>,
    ) -> Self {
        Self {
            run_id: run_id.to_owned(),
            command: command.to_owned(),
            host: me.host.clone(),
            pid: me.pid,
            boot_id: me.boot_id.clone(),
            pid_namespace: me.pid_namespace.clone(),
            acquired: crate::clock::format_rfc3339(now),
            expires: crate::clock::format_rfc3339(now + ttl),
            renewal: 0,
            shards: shard.map(|s| s.count),
            shard: shard.map(|s| s.index),
        }
    }
}

impl Lease {
    /// Takes the lease at `bucket`/`key` for `command`.
    ///
    /// # Errors
    /// [`Error::Locked`] when another run holds it (one line naming the holder); S3 failures.
    pub async fn acquire(
        store: &Store,
        bucket: &str,
        key: &str,
        run_id: &str,
        command: &str,
        options: &LeaseOptions,
    ) -> Result<Self> {
        let ttl = options.ttl.max(MIN_TTL);
        let me = Holder::current();
        let info = LockInfo::new(run_id, command, &me, options.clock.now(), ttl, options.shard);
        let sent = Instant::now();
        let Taken { held, etag, version_id, joined_live } =
            take(store, bucket, key, &info, &me, options, attempt_timeout(ttl)).await?;
        let (state, _) = watch::channel(State::Held { until: sent + ttl });
        let shared = Arc::new(Shared {
            store: store.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            ttl,
            clock: options.clock.clone(),
            held: tokio::sync::Mutex::new((held, etag)),
            state,
            lost: CancellationToken::new(),
        });
        let renewer = tokio::spawn(renew_in_background(Arc::clone(&shared)));
        Ok(Self { shared, renewer, version_id, joined_live })
    }

    /// Whether this shard joined its run's lock while another shard of the run held it (so a shard of the
    /// run may still be at work).
    #[must_use]
    pub fn joined_live(&self) -> bool {
        self.joined_live
    }

    /// Stops renewing without deleting the lock: a shard that is done leaves the lock to the other shards of
    /// its run (it expires by itself once none renews it).
    pub fn leave(&self) {
        self.renewer.abort();
    }

    /// The version id the destination gave the lock when it was taken (`None`: the destination keeps no
    /// versions, or the answer was lost and the lock read back).
    #[must_use]
    pub fn version_id(&self) -> Option<&str> {
        self.version_id.as_deref()
    }

    /// Cancelled when the lease is lost.
    #[must_use]
    pub fn lost(&self) -> CancellationToken {
        self.shared.lost.clone()
    }

    /// Ok while the lease is held. While it is in doubt (a renewal is overdue) this waits for a renewal to
    /// land; it fails once the lease is lost or its TTL ran out. Called before every new transfer and every
    /// write of data.
    ///
    /// # Errors
    /// [`Error::Locked`] when the lease is lost.
    pub async fn check(&self) -> Result<()> {
        let mut state = self.shared.state.subscribe();
        loop {
            let current = state.borrow_and_update().clone();
            match current {
                State::Lost(why) => return Err(Error::Locked(why)),
                State::Held { until } => {
                    let now = Instant::now();
                    if now >= until {
                        let why = lost_message(&self.shared, "its renewals did not get through in time");
                        self.shared.mark_lost(why.clone());
                        return Err(Error::Locked(why));
                    }
                    // In doubt once a renewal is overdue: the renewer renews at a third of the TTL.
                    let doubt_from = until - self.shared.ttl / 3;
                    if now < doubt_from {
                        return Ok(());
                    }
                    tokio::select! {
                        changed = state.changed() => { let _ = changed; }
                        () = tokio::time::sleep_until(until) => {}
                    }
                }
            }
        }
    }

    /// Renews the lease now (a conditional write on the ETag we hold): afterwards the lease holds for a
    /// whole TTL. Called right before a checkpoint or a manifest is written.
    ///
    /// # Errors
    /// [`Error::Locked`] when the lease is lost or cannot be renewed.
    pub async fn confirm(&self) -> Result<()> {
        let policy = *self.shared.store.policy();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match renew_once(&self.shared).await {
                Renewal::Renewed => return Ok(()),
                Renewal::Lost(why) => {
                    self.shared.mark_lost(why.clone());
                    return Err(Error::Locked(why));
                }
                Renewal::CoHolder => unreachable!("renew_once sends a renewal again after another shard's"),
                // Tried again with backoff for as long as the lease is known to hold.
                Renewal::Doubt(why) => {
                    let until = match &*self.shared.state.borrow() {
                        State::Held { until } => *until,
                        State::Lost(why) => return Err(Error::Locked(why.clone())),
                    };
                    let wait = policy.backoff(attempt);
                    if Instant::now() + wait >= until {
                        let why = lost_message(
                            &self.shared,
                            &format!("it could not be confirmed before writing: {why}"),
                        );
                        self.shared.mark_lost(why.clone());
                        return Err(Error::Locked(why));
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Stops renewing and deletes the lock, if it is still ours.
    ///
    /// # Errors
    /// S3 failures while deleting.
    pub async fn release(&self) -> Result<()> {
        self.renewer.abort();
        let shared = &self.shared;
        if matches!(*shared.state.borrow(), State::Lost(_)) {
            return Ok(());
        }
        let ours = shared.held.lock().await.1.clone();
        let timeout = attempt_timeout(shared.ttl);
        let current = shared
            .store
            .policy()
            .run(|| read_lock(&shared.store, &shared.bucket, &shared.key, timeout))
            .await?;
        match current {
            Some((_, etag, _)) if etag == ours => shared.store.delete(&shared.bucket, &shared.key).await,
            _ => Ok(()),
        }
    }
}

impl Shared {
    fn mark_lost(&self, why: String) {
        self.state.send_if_modified(|state| {
            if matches!(state, State::Lost(_)) {
                false
            } else {
                *state = State::Lost(why);
                true
            }
        });
        self.lost.cancel();
    }
}

fn lost_message(shared: &Shared, why: &str) -> String {
    format!("the lease on s3://{}/{} was lost: {why}; this run stops writing", shared.bucket, shared.key)
}

/// What taking the lock gave: the lock info we hold, its ETag and version id, and whether we joined another
/// shard's live lock.
struct Taken {
    held: LockInfo,
    etag: String,
    version_id: Option<String>,
    joined_live: bool,
}

/// Takes the lock (see [`Lease::acquire`]): creates it, joins it (a shard of our run holds it), or takes
/// over a stale one.
async fn take(
    store: &Store,
    bucket: &str,
    key: &str,
    info: &LockInfo,
    me: &Holder,
    options: &LeaseOptions,
    attempt_timeout: Duration,
) -> Result<Taken> {
    let location = format!("s3://{bucket}/{key}");
    let policy = *store.policy();
    let holder = |current: &LockInfo| {
        format!(
            "{location}: another {} (run {}, host {}, pid {}) holds the backup location since {}; it expires \
             at {} unless renewed",
            current.command, current.run_id, current.host, current.pid, current.acquired, current.expires
        )
    };
    let mut attempt = 0;
    let mut joined_live = false;
    let mut held = info.clone();
    // No blind retry: every answer that is not a plain success is resolved by reading the lock back.
    let (etag, version_id) = loop {
        attempt += 1;
        let last_try = attempt >= policy.attempts;
        let refused = match put_lock(store, bucket, key, info, WriteCondition::Create, attempt_timeout).await
        {
            Ok(written) => break written,
            Err(e) if e.s3_kind() == Some(S3ErrorKind::PreconditionFailed) || e.is_temporary() => e,
            Err(e) => return Err(e),
        };
        match policy.run(|| read_lock(store, bucket, key, attempt_timeout)).await? {
            // Our create (or takeover) landed; only its answer was lost.
            Some((current, etag, version)) if current.same_writer(info) => break (etag, version),
            // Another shard of our run holds it: join, renewing it in our name.
            Some((current, current_etag, _)) if info.co_holder(&current) => {
                if let Some(joined) =
                    join(store, bucket, key, info, &current, &current_etag, attempt_timeout).await?
                {
                    joined_live = !current.expired(options.clock.now());
                    held = joined.0;
                    break joined.1;
                }
                if last_try {
                    return Err(Error::Locked(format!(
                        "{location}: the other shards of run {} kept renewing first",
                        info.run_id
                    )));
                }
            }
            Some((current, ..)) if current.run_id == info.run_id && current.shards != info.shards => {
                return Err(shard_count_differs(&location, info, &current));
            }
            Some((current, current_etag, _))
                if current.expired(options.clock.now()) || current.holder_dead(me) =>
            {
                match put_lock(
                    store,
                    bucket,
                    key,
                    info,
                    WriteCondition::Replace(&current_etag),
                    attempt_timeout,
                )
                .await
                {
                    Ok(written) => break written,
                    Err(e) if e.s3_kind() == Some(S3ErrorKind::PreconditionFailed) => {
                        return Err(Error::Locked(format!(
                            "{location}: another run took over the stale lease first"
                        )));
                    }
                    Err(e) if e.is_temporary() && !last_try => {}
                    Err(e) => return Err(e),
                }
            }
            Some((current, ..)) => return Err(Error::Locked(holder(&current))),
            // Refused, but gone when read back: released in between; try again.
            None if !last_try => {}
            None => return Err(refused),
        }
        tokio::time::sleep(policy.backoff(attempt)).await;
    };
    Ok(Taken { held, etag, version_id, joined_live })
}

/// Joins the lock `current` (ETag `etag`) of another shard of our run with a renewal in our name: the lock
/// info we hold and what the write returned, or `None` when another shard renewed in between (or the answer
/// was lost): read it again.
async fn join(
    store: &Store,
    bucket: &str,
    key: &str,
    info: &LockInfo,
    current: &LockInfo,
    etag: &str,
    timeout: Duration,
) -> Result<Option<(LockInfo, (String, Option<String>))>> {
    let mut joining = info.clone();
    joining.renewal = current.renewal + 1;
    match put_lock(store, bucket, key, &joining, WriteCondition::Replace(etag), timeout).await {
        Ok(written) => Ok(Some((joining, written))),
        Err(e) if e.s3_kind() == Some(S3ErrorKind::PreconditionFailed) || e.is_temporary() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The shards of one run must agree on their count.
fn shard_count_differs(location: &str, info: &LockInfo, current: &LockInfo) -> Error {
    let count = |n: Option<u32>| n.map_or_else(|| "not sharded".into(), |n| format!("{n} shards"));
    Error::Config {
        field: "shard".into(),
        reason: format!(
            "{location}: run {} holds it as {}, this process as {}: every shard of a run must give the same count",
            info.run_id,
            count(current.shards),
            count(info.shards)
        ),
    }
}

/// Timeout of one lock request: a tenth of the TTL (within 1 s to 30 s), so a renewal can fail and be
/// retried well before the lease runs out.
fn attempt_timeout(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

enum Renewal {
    Renewed,
    /// Another shard of the run renewed first: send ours again on its ETag.
    CoHolder,
    /// The renewal did not land (or we cannot tell yet): try again soon.
    Doubt(String),
    Lost(String),
}

/// One conditional renewal, resolving a lost or refused answer by reading the lock back.
async fn renew_once(shared: &Shared) -> Renewal {
    // Renewals of the other shards of a sharded run are not a conflict: send ours again on their ETag.
    let mut tries = 0;
    loop {
        tries += 1;
        match renew_attempt(shared).await {
            Renewal::CoHolder if tries < 8 => {}
            Renewal::CoHolder => return Renewal::Doubt("other shards of the run kept renewing first".into()),
            other => return other,
        }
    }
}

async fn renew_attempt(shared: &Shared) -> Renewal {
    let mut held = shared.held.lock().await;
    let timeout = attempt_timeout(shared.ttl);
    let mut next = held.0.clone();
    next.renewal += 1;
    next.expires = crate::clock::format_rfc3339(shared.clock.now() + shared.ttl);
    let sent = Instant::now();
    let answer = put_lock(
        &shared.store,
        &shared.bucket,
        &shared.key,
        &next,
        WriteCondition::Replace(&held.1),
        timeout,
    )
    .await;
    let etag = match answer {
        Ok((etag, _)) => etag,
        Err(e)
            if e.s3_kind()
                .is_some_and(|k| k == S3ErrorKind::PermissionDenied || k == S3ErrorKind::BadCredentials) =>
        {
            return Renewal::Doubt(e.to_string());
        }
        // Refused (412, 404) or unanswered (timeout, reset, 5xx): what is there now decides.
        Err(_) => match read_lock(&shared.store, &shared.bucket, &shared.key, timeout).await {
            Ok(Some((current, etag, _))) if current.same_writer(&next) && current.renewal == next.renewal => {
                etag
            }
            Ok(Some((current, etag, _))) if current.same_writer(&next) => {
                // Still our previous renewal (or an earlier one whose answer was lost): adopt its ETag and let
                // the next attempt write over it.
                held.0.renewal = current.renewal;
                held.1 = etag;
                return Renewal::Doubt("the renewal did not land".into());
            }
            Ok(Some((current, etag, _))) if next.co_holder(&current) => {
                held.0.renewal = current.renewal;
                held.1 = etag;
                return Renewal::CoHolder;
            }
            Ok(Some((current, ..))) => {
                return Renewal::Lost(lost_message(
                    shared,
                    &format!(
                        "run {} (host {}, pid {}) took it over",
                        current.run_id, current.host, current.pid
                    ),
                ));
            }
            Ok(None) => return Renewal::Lost(lost_message(shared, "the lock object was deleted")),
            Err(e) => return Renewal::Doubt(e.to_string()),
        },
    };
    *held = (next, etag);
    shared.state.send_if_modified(|state| match state {
        State::Held { until } => {
            *until = sent + shared.ttl;
            true
        }
        State::Lost(_) => false,
    });
    Renewal::Renewed
}

async fn renew_in_background(shared: Arc<Shared>) {
    let every = shared.ttl / 3;
    let mut wait = every;
    loop {
        tokio::time::sleep(wait).await;
        let until = match &*shared.state.borrow() {
            State::Held { until } => *until,
            State::Lost(_) => return,
        };
        if Instant::now() >= until {
            shared.mark_lost(lost_message(&shared, "its renewals did not get through in time"));
            return;
        }
        match renew_once(&shared).await {
            Renewal::Renewed => wait = every,
            Renewal::CoHolder => unreachable!("renew_once sends a renewal again after another shard's"),
            Renewal::Lost(why) => {
                shared.mark_lost(why);
                return;
            }
            Renewal::Doubt(why) => {
                tracing::warn!("renewing the lease on s3://{}/{}: {why}", shared.bucket, shared.key);
                wait = attempt_timeout(shared.ttl);
            }
        }
    }
}

/// One conditional write of the lock, one attempt, bounded by `timeout`: its ETag and version id.
async fn put_lock(
    store: &Store,
    bucket: &str,
    key: &str,
    info: &LockInfo,
    condition: WriteCondition<'_>,
    timeout: Duration,
) -> Result<(String, Option<String>)> {
    let body = serde_json::to_vec_pretty(info).expect("lock info serializes");
    let once = store.single_attempt();
    let attrs = ObjectAttrs::typed("application/json");
    let put = once.put(bucket, key, bytes::Bytes::from(body), &attrs, condition);
    let written = match tokio::time::timeout(timeout, put).await {
        Ok(answer) => answer?,
        Err(_) => return Err(timed_out(store, "PutObject", bucket, key)),
    };
    Ok((written.etag.unwrap_or_default(), written.version_id))
}

/// Reads the lock (one attempt, bounded by `timeout`): its content and ETag, `None` if there is none.
async fn read_lock(
    store: &Store,
    bucket: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<(LockInfo, String, Option<String>)>> {
    let once = store.single_attempt();
    let read = async {
        let found = once.get_if_exists(bucket, key).await?;
        Ok::<_, Error>(found.map(|(head, body)| (body, head.etag.unwrap_or_default(), head.version_id)))
    };
    let Some((body, etag, version)) = (match tokio::time::timeout(timeout, read).await {
        Ok(answer) => answer?,
        Err(_) => return Err(timed_out(store, "GetObject", bucket, key)),
    }) else {
        return Ok(None);
    };
    let info = parse_lock(&body)
        .map_err(|e| Error::corrupt(format!("s3://{bucket}/{key}"), format!("unreadable lock: {e}")))?;
    Ok(Some((info, etag, version)))
}

/// Parses a lock object (anyone who can write the destination can write it: it is checked as input).
///
/// # Errors
/// A description of what is wrong.
pub fn parse_lock(body: &[u8]) -> std::result::Result<LockInfo, String> {
    let info: LockInfo = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if info.run_id.is_empty() || info.run_id.len() > 64 {
        return Err(format!("run id {:?} is not an s32s3 run id", info.run_id));
    }
    Ok(info)
}

fn timed_out(store: &Store, operation: &'static str, bucket: &str, key: &str) -> Error {
    let message = "no answer in time";
    Error::S3(crate::error::S3Error::local(
        store.side(),
        operation,
        bucket,
        key,
        S3ErrorKind::Temporary,
        message,
    ))
}

/// This host's name (for lock ownership), from the kernel; `unknown` when it cannot be read.
#[must_use]
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(host: &str, pid: u32, boot: Option<&str>, ns: Option<&str>) -> LockInfo {
        LockInfo {
            run_id: "r".into(),
            command: "backup".into(),
            host: host.into(),
            pid,
            boot_id: boot.map(str::to_owned),
            pid_namespace: ns.map(str::to_owned),
            acquired: "2026-12-01T00:00:00Z".into(),
            expires: "2026-12-01T00:05:00Z".into(),
            renewal: 0,
            shards: None,
            shard: None,
        }
    }

    #[test]
    fn only_a_provably_dead_holder_is_taken_over() {
        let me = Holder::current();
        assert!(me.boot_id.is_some() && me.pid_namespace.is_some() && me.proc_is_own, "{me:?}");
        let (boot, ns) = (me.boot_id.as_deref(), me.pid_namespace.as_deref());
        // A PID no process has (above the kernel's pid_max).
        let dead = 4_194_305;
        assert!(lock(&me.host, dead, boot, ns).holder_dead(&me));
        // Another PID namespace (a second container, a sidecar) under the same host name.
        assert!(!lock(&me.host, dead, boot, Some("pid:[1]")).holder_dead(&me));
        // Another boot, another host, an older lock without the fields, a live process, ourselves.
        assert!(!lock(&me.host, dead, Some("other-boot"), ns).holder_dead(&me));
        assert!(!lock("elsewhere", dead, boot, ns).holder_dead(&me));
        assert!(!lock(&me.host, dead, None, None).holder_dead(&me));
        assert!(!lock(&me.host, 1, boot, ns).holder_dead(&me));
        assert!(!lock(&me.host, me.pid, boot, ns).holder_dead(&me));
        // /proc of another namespace: nothing can be proved.
        let blind = Holder { proc_is_own: false, ..me.clone() };
        assert!(!lock(&me.host, dead, boot, ns).holder_dead(&blind));
        // A sharded run's last writer may have finished while the other shards work.
        let sharded = LockInfo { shards: Some(3), shard: Some(1), ..lock(&me.host, dead, boot, ns) };
        assert!(!sharded.holder_dead(&me));
    }

    #[test]
    fn expiry_and_parsing() {
        let l = lock("h", 1, None, None);
        assert!(!l.expired(time::macros::datetime!(2026-12-01 00:04:59 UTC)));
        assert!(l.expired(time::macros::datetime!(2026-12-01 00:05:01 UTC)));
        let old_format = br#"{"run_id":"ab12cd34","command":"backup","host":"h","pid":7,
            "acquired":"2026-12-01T00:00:00Z","expires":"2026-12-01T00:05:00Z"}"#;
        let parsed = parse_lock(old_format).unwrap();
        assert_eq!((parsed.pid, parsed.renewal, parsed.boot_id), (7, 0, None));
        assert!(parse_lock(b"{}").is_err());
        assert!(
            parse_lock(br#"{"run_id":"","command":"","host":"","pid":1,"acquired":"","expires":""}"#)
                .is_err()
        );
    }
}
