//! The time a run believes it is.
//!
//! Every time s32s3 records or compares (snapshot names, run records, the lease's expiry, retention
//! windows) comes from a [`Clock`], so tests can run "days" of backups in seconds: [`Clock::offset`] is the
//! system clock moved by a fixed amount. Waiting (backoff, lease renewal) always uses tokio's real timers.

use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;

/// A source of "now" in UTC. Cheap to clone; the default is the system clock.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> OffsetDateTime + Send + Sync>);

impl Clock {
    /// The system clock.
    #[must_use]
    pub fn system() -> Self {
        Self(Arc::new(OffsetDateTime::now_utc))
    }

    /// The system clock moved by `by` (positive: the future).
    #[must_use]
    pub fn offset(by: time::Duration) -> Self {
        Self(Arc::new(move || OffsetDateTime::now_utc() + by))
    }

    /// A clock reading `now` from a function (tests that step time themselves).
    #[must_use]
    pub fn from_fn(now: impl Fn() -> OffsetDateTime + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// Now, in UTC.
    #[must_use]
    pub fn now(&self) -> OffsetDateTime {
        (self.0)().to_offset(time::UtcOffset::UTC)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", format_rfc3339(self.now()))
    }
}

/// A time as RFC 3339 in UTC.
#[must_use]
pub fn format_rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("UTC times format")
}

/// Now, as RFC 3339 in UTC.
#[must_use]
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_moves_the_system_clock() {
        let later = Clock::offset(time::Duration::days(3)).now();
        let gap = later - OffsetDateTime::now_utc();
        assert!(gap > time::Duration::days(3) - time::Duration::minutes(1), "{gap}");
        assert!(gap < time::Duration::days(3) + time::Duration::minutes(1), "{gap}");
        let fixed = time::macros::datetime!(2026-12-01 20:04:05.456 UTC);
        assert_eq!(Clock::from_fn(move || fixed).now(), fixed);
    }
}
