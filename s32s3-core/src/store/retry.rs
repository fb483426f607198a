//! The one retry policy of s32s3: every request to either store, and every body read, goes through
//! [`RetryPolicy::run`] exactly once.
//!
//! A request is retried only when its failure is temporary (5xx, 429, timeouts, resets, a body that broke
//! off: [`crate::error::Error::is_temporary`]), with exponential backoff and jitter, bounded by a number of
//! attempts and by a total time. Nothing else retries on top of it: the AWS SDK's own retries are off,
//! and the copy and restore loops above a request only react to what the request's final answer means
//! (an object changed while it was read, a write whose answer was lost), never by sending it again
//! blindly.

use std::future::Future;
use std::time::Duration;

use crate::error::Result;

/// How often and how long a temporary failure is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (1: no retry).
    pub attempts: u32,
    /// No new attempt starts later than this after the first one.
    pub max_elapsed: Duration,
    /// The wait before the second attempt; it doubles for each further one.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// `attempts` attempts, waiting 0.25 s, 0.5 s, 1 s, … up to 20 s between them (each ±50 %), for at
    /// most five minutes.
    #[must_use]
    pub fn new(attempts: u32) -> Self {
        Self {
            attempts: attempts.max(1),
            max_elapsed: Duration::from_mins(5),
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(20),
        }
    }

    /// The wait after failed attempt number `attempt` (1-based): exponential, capped, with jitter.
    #[must_use]
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base =
            self.initial_backoff.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(self.max_backoff);
        base.mul_f64(0.5 + rand::random::<f64>())
    }

    /// Runs `op` until it succeeds, fails for good, or the attempts or the time are used up; returns its
    /// last answer.
    ///
    /// # Errors
    /// The last error of `op`.
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut retrier = self.retrier();
        loop {
            match op().await {
                Err(err) if retrier.wait(&err).await => {}
                result => return result,
            }
        }
    }

    /// The attempts of one unit of work, for callers whose unit is not one closure: a read that resumes
    /// where its body broke off, a part upload fed by a stream.
    #[must_use]
    pub fn retrier(&self) -> Retrier {
        Retrier { policy: *self, started: tokio::time::Instant::now(), attempt: 0 }
    }
}

/// The state of one unit of work under a [`RetryPolicy`]: how many attempts failed, since when.
#[derive(Debug)]
pub struct Retrier {
    policy: RetryPolicy,
    started: tokio::time::Instant,
    attempt: u32,
}

impl Retrier {
    /// After a failed attempt: `true` once the backoff has been waited out, when `err` is temporary and
    /// attempts and time remain; `false` when the failure is final.
    pub async fn wait(&mut self, err: &crate::error::Error) -> bool {
        self.attempt += 1;
        if !err.is_temporary() || self.attempt >= self.policy.attempts {
            return false;
        }
        let wait = self.policy.backoff(self.attempt);
        if self.started.elapsed() + wait > self.policy.max_elapsed {
            return false;
        }
        tracing::debug!("attempt {} failed, retrying in {wait:?}: {err}", self.attempt);
        tokio::time::sleep(wait).await;
        true
    }

    /// The work made progress (a resumed read got bytes): failures count afresh from here, so a long read
    /// survives any number of breaks as long as each resumption moves it forward.
    pub fn progressed(&mut self) {
        if self.attempt > 0 {
            self.attempt = 0;
            self.started = tokio::time::Instant::now();
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new(10)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::error::Error;
    use crate::error::{S3Error, S3ErrorKind, Side};

    fn temporary() -> Error {
        Error::S3(S3Error {
            side: Side::Destination,
            operation: "PutObject",
            bucket: Some("b".into()),
            key: None,
            kind: S3ErrorKind::Temporary,
            status: Some(503),
            code: Some("SlowDown".into()),
            message: String::new(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn retries_temporary_failures_up_to_the_attempts() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy::new(4);
        let result: Result<()> = policy
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(temporary())
            })
            .await;
        assert!(result.unwrap_err().is_temporary());
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        calls.store(0, Ordering::SeqCst);
        let result = policy
            .run(|| async { if calls.fetch_add(1, Ordering::SeqCst) < 2 { Err(temporary()) } else { Ok(7) } })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried_and_time_bounds_attempts() {
        let calls = AtomicU32::new(0);
        let result: Result<()> = RetryPolicy::new(10)
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::Cancelled)
            })
            .await;
        assert!(matches!(result, Err(Error::Cancelled)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        calls.store(0, Ordering::SeqCst);
        let policy = RetryPolicy { max_elapsed: Duration::from_secs(2), ..RetryPolicy::new(100) };
        let _ = policy
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(temporary())
            })
            .await;
        let n = calls.load(Ordering::SeqCst);
        assert!((2..=5).contains(&n), "a 2 s budget allows a few quick attempts, not 100: {n}");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::new(10);
        for attempt in 1..=30 {
            let wait = p.backoff(attempt);
            let base = p.initial_backoff.saturating_mul(1 << (attempt - 1).min(16)).min(p.max_backoff);
            assert!(wait >= base.mul_f64(0.5) && wait <= base.mul_f64(1.5), "{attempt}: {wait:?}");
        }
    }
}
