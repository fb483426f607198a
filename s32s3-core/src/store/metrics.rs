//! Request counting: every request any store sends, by S3 operation, retries included (the SDK's
//! interceptor and the raw path both count here).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Requests sent, by S3 operation (every attempt counts): what the metrics report and the tests check
/// ("an unchanged object costs no request").
#[derive(Debug, Default)]
pub struct RequestCounter {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl RequestCounter {
    pub(crate) fn add(&self, operation: &str) {
        *self.counts.lock().expect("not poisoned").entry(operation.to_owned()).or_default() += 1;
    }

    /// Requests so far, by operation.
    #[must_use]
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().expect("not poisoned").clone()
    }
}
