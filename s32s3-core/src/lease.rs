//! The lease on a backup location (`.s32s3/lock`): one writer at a time.
//!
//! Taken with a conditional create (`If-None-Match: *`), renewed with `If-Match` on its own ETag, released
//! by deleting it. A lease that has expired (its holder stopped renewing) or whose holder is a dead process
//! on this same host is taken over, again with `If-Match`, so two runs racing for a stale lease cannot both
//! win.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::error::S3ErrorKind;
use crate::s3::Store;
use crate::{Error, Result};

/// How long a lease lasts without renewal.
pub const TTL: Duration = Duration::from_mins(5);

/// What the lock object says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The run holding it.
    pub run_id: String,
    /// What the run is doing (`backup`, `restore`, `prune`).
    pub command: String,
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// When it was taken (RFC 3339).
    pub acquired: String,
    /// When it expires unless renewed (RFC 3339).
    pub expires: String,
}

impl LockInfo {
    fn expired(&self, now: OffsetDateTime) -> bool {
        OffsetDateTime::parse(&self.expires, &Rfc3339).map_or(true, |t| t < now)
    }

    /// The holder is a process of this host that no longer runs.
    fn holder_dead(&self) -> bool {
        self.host == hostname()
            && self.pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// A held lease; renewed in the background until [`Lease::release`]. If renewal finds the lease taken by
/// someone else, `lost` is cancelled so the run stops writing.
#[derive(Debug)]
pub struct Lease {
    store: Store,
    bucket: String,
    key: String,
    info: LockInfo,
    etag: Arc<Mutex<String>>,
    renewer: tokio::task::JoinHandle<()>,
    lost: CancellationToken,
}

impl Lease {
    /// Takes the lease at `bucket`/`key` for `command`.
    ///
    /// # Errors
    /// [`Error::Locked`] when another live run holds it; S3 failures.
    pub async fn acquire(
        store: &Store,
        bucket: &str,
        key: &str,
        run_id: &str,
        command: &str,
    ) -> Result<Self> {
        let now = OffsetDateTime::now_utc();
        let info = LockInfo {
            run_id: run_id.to_owned(),
            command: command.to_owned(),
            host: hostname(),
            pid: std::process::id(),
            acquired: crate::format_rfc3339(now),
            expires: crate::format_rfc3339(now + TTL),
        };
        let etag = match put_lock(store, bucket, key, &info, Condition::Create).await {
            Ok(etag) => etag,
            Err(e) if e.s3_kind() == Some(S3ErrorKind::PreconditionFailed) => {
                let (current, current_etag) = read_lock(store, bucket, key).await?.ok_or_else(|| {
                    Error::Locked(format!("s3://{bucket}/{key} changed while taking the lease; try again"))
                })?;
                if !(current.expired(now) || current.holder_dead()) {
                    return Err(Error::Locked(format!(
                        "s3://{bucket}/{key}: another {} (run {}, host {}, pid {}) holds the backup location since \
                         {}; it expires at {} unless renewed",
                        current.command,
                        current.run_id,
                        current.host,
                        current.pid,
                        current.acquired,
                        current.expires
                    )));
                }
                put_lock(store, bucket, key, &info, Condition::Replace(&current_etag)).await.map_err(|e| {
                    if e.s3_kind() == Some(S3ErrorKind::PreconditionFailed) {
                        Error::Locked(format!(
                            "s3://{bucket}/{key}: another run took over the stale lease first"
                        ))
                    } else {
                        e
                    }
                })?
            }
            Err(e) => return Err(e),
        };
        let etag = Arc::new(Mutex::new(etag));
        let lost = CancellationToken::new();
        let renewer = tokio::spawn(renew(
            store.clone(),
            bucket.to_owned(),
            key.to_owned(),
            info.clone(),
            Arc::clone(&etag),
            lost.clone(),
        ));
        Ok(Self {
            store: store.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            info,
            etag,
            renewer,
            lost,
        })
    }

    /// Cancelled when the lease was lost (taken over after this process stalled past its expiry).
    #[must_use]
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Who holds it.
    #[must_use]
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// Stops renewing and deletes the lock, if it is still ours.
    ///
    /// # Errors
    /// S3 failures while deleting.
    pub async fn release(self) -> Result<()> {
        self.renewer.abort();
        let ours = self.etag.lock().await.clone();
        match read_lock(&self.store, &self.bucket, &self.key).await? {
            Some((_, etag)) if etag == ours => {
                self.store
                    .client()
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .send()
                    .await
                    .map_err(|e| self.store.err("DeleteObject", &self.bucket, Some(&self.key), e))?;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

async fn renew(
    store: Store,
    bucket: String,
    key: String,
    mut info: LockInfo,
    etag: Arc<Mutex<String>>,
    lost: CancellationToken,
) {
    let mut failures = 0;
    loop {
        tokio::time::sleep(TTL / 5).await;
        info.expires = crate::format_rfc3339(OffsetDateTime::now_utc() + TTL);
        let current = etag.lock().await.clone();
        match put_lock(&store, &bucket, &key, &info, Condition::Replace(&current)).await {
            Ok(new) => {
                *etag.lock().await = new;
                failures = 0;
            }
            Err(e) if e.s3_kind() == Some(S3ErrorKind::PreconditionFailed) => {
                lost.cancel();
                return;
            }
            Err(_) => {
                // Temporary trouble: the lease still has most of its TTL; try again soon.
                failures += 1;
                if failures >= 4 {
                    lost.cancel();
                    return;
                }
            }
        }
    }
}

enum Condition<'a> {
    Create,
    Replace(&'a str),
}

async fn put_lock(
    store: &Store,
    bucket: &str,
    key: &str,
    info: &LockInfo,
    condition: Condition<'_>,
) -> Result<String> {
    let body = serde_json::to_vec_pretty(info).expect("lock info serializes");
    let request = store
        .client()
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .body(ByteStream::from(body));
    let request = match condition {
        Condition::Create => request.if_none_match("*"),
        Condition::Replace(etag) => request.if_match(etag),
    };
    let out = request.send().await.map_err(|e| store.err("PutObject", bucket, Some(key), e))?;
    Ok(out.e_tag().unwrap_or_default().to_owned())
}

async fn read_lock(store: &Store, bucket: &str, key: &str) -> Result<Option<(LockInfo, String)>> {
    let out = match store.client().get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out,
        Err(e) => {
            return match store.err("GetObject", bucket, Some(key), e) {
                Error::S3(e) if e.kind == S3ErrorKind::NotFound => Ok(None),
                e => Err(e),
            };
        }
    };
    let etag = out.e_tag().unwrap_or_default().to_owned();
    let body = crate::transfer::read_body(out.body, store.side(), bucket, key, 0).await?;
    let info = serde_json::from_slice(&body)
        .map_err(|e| Error::corrupt(format!("s3://{bucket}/{key}"), format!("unreadable lock: {e}")))?;
    Ok(Some((info, etag)))
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
