//! The limits a run shares across all its transfers: how many at once, how much memory, how many bytes a
//! second.

use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::options::TransferOptions;

/// Shared limits of a run: transfers, memory and bandwidth.
#[derive(Debug)]
pub(crate) struct Limits {
    transfers: Semaphore,
    /// Memory budget in KiB.
    memory: Semaphore,
    memory_kib: u32,
    bandwidth: Option<RateLimiter>,
}

impl Limits {
    pub(crate) fn new(options: &TransferOptions) -> Self {
        let memory_kib = u32::try_from(options.memory_limit >> 10).unwrap_or(u32::MAX).max(1);
        Self {
            transfers: Semaphore::new(options.transfers),
            memory: Semaphore::new(memory_kib as usize),
            memory_kib,
            bandwidth: options.bwlimit.map(RateLimiter::new),
        }
    }

    /// Whether `bytes` fit in the memory budget at all.
    pub(crate) fn fits(&self, bytes: u64) -> bool {
        bytes.div_ceil(1024) <= u64::from(self.memory_kib)
    }

    /// Reserves `bytes` of the memory budget. Whatever holds object data sizes itself to fit the budget
    /// ([`Limits::fits`]): a stream holds a few chunks, a part holds its plaintext only when it fits. Asking
    /// for more than the whole budget is a bug (caught in debug builds); it is clamped to the whole budget.
    pub(crate) async fn memory(&self, bytes: u64) -> SemaphorePermit<'_> {
        debug_assert!(self.fits(bytes), "{bytes} bytes is more than the whole memory budget");
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, self.memory_kib);
        self.memory.acquire_many(kib).await.expect("the memory semaphore is never closed")
    }

    pub(crate) async fn transfer(&self) -> SemaphorePermit<'_> {
        self.transfers.acquire().await.expect("the transfer semaphore is never closed")
    }

    /// Waits for `bytes` of the bandwidth limit; a cancellation ends the wait with [`Error::Cancelled`].
    pub(crate) async fn bandwidth(&self, bytes: u64, cancel: &CancellationToken) -> Result<()> {
        if let Some(limiter) = &self.bandwidth {
            tokio::select! {
                () = limiter.acquire(bytes) => {}
                () = cancel.cancelled() => return Err(Error::Cancelled),
            }
        }
        Ok(())
    }
}

/// A virtual-clock rate limiter: each request is scheduled after the previous ones at `rate` bytes/s.
#[derive(Debug)]
struct RateLimiter {
    rate: u64,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl RateLimiter {
    fn new(rate: u64) -> Self {
        Self { rate: rate.max(1), next: tokio::sync::Mutex::new(tokio::time::Instant::now()) }
    }

    async fn acquire(&self, bytes: u64) {
        let start = {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_spaces_requests() {
        let limiter = RateLimiter::new(1000);
        let start = tokio::time::Instant::now();
        limiter.acquire(500).await;
        limiter.acquire(500).await;
        limiter.acquire(1).await;
        // The third request may start only after the first thousand bytes' second.
        assert!(start.elapsed() >= Duration::from_secs(1));
    }
}
