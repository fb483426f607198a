//! The s32s3 engine: backs up an S3-compatible object store into rclone-crypt backups on another one, and
//! restores it to any point in time.
//!
//! This crate is a library: it never prints, never reads environment variables for configuration and never
//! exits the process. It returns typed errors and reports progress through [`progress::Progress`], which
//! the caller implements. The backup format and what every command guarantees are described in the
//! project's `DESIGN.md`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use s32s3_core::{Backup, RunConfig, S3Endpoint, Secret, TransferOptions, Provider};
//! use s32s3_core::progress::NoProgress;
//!
//! # async fn demo() -> s32s3_core::Result<()> {
//! let endpoint = |url: &str| S3Endpoint {
//!     endpoint: url.into(),
//!     region: "us-east-1".into(),
//!     access_key_id: "access".into(),
//!     secret_access_key: Secret::new("secret"),
//! };
//! let config = RunConfig {
//!     source: endpoint("http://minio:9000"),
//!     source_provider: Provider::Auto,
//!     destination: endpoint("https://s3.example.com"),
//!     password: Secret::new("correct horse battery staple"),
//!     password2: Secret::default(),
//!     backup_bucket: "backups".into(),
//!     backup_prefix: String::new(),
//!     expiration_days: 7,
//!     transfer: TransferOptions::default(),
//!     work_dir: std::env::temp_dir(),
//!     clock: Default::default(),
//! };
//! let summary = Backup::new(config).run(Arc::new(NoProgress), Default::default()).await?;
//! println!("snapshot {} ({})", summary.snapshot_id, summary.status);
//! # Ok(())
//! # }
//! ```

// Leaves: what every layer may use.
pub mod clock;
pub mod error;
pub mod options;
pub mod progress;
pub mod secret;
pub mod summary;
// The storage layer: the only code that speaks S3.
pub mod store;
// The backup format: layout, config file, manifests, snapshots, lease, retention.
pub mod format;
// The transfer engine: listings, plans, moving objects both ways. Internal; the test kit (tests, fuzz
// targets) reaches into it.
#[cfg(feature = "testkit")]
pub mod engine;
#[cfg(not(feature = "testkit"))]
pub(crate) mod engine;
// What every command starts from.
pub mod repo;
// The operations.
pub mod backup;
pub mod inspect;
pub mod restore;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod verify;

pub use backup::Backup;
pub use clock::Clock;
pub use engine::parts::part_size_for;
pub use error::{Error, Result};
pub use options::{Provider, RunConfig, S3Endpoint, TransferOptions};
pub use restore::Restore;
pub use secret::Secret;
pub use summary::{BackupSummary, Failure, RestoreSummary, VerifySummary};
pub use verify::Verify;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `s32s3 <version>`, recorded in manifests.
#[must_use]
pub fn tool_version() -> String {
    format!("s32s3 {}", env!("CARGO_PKG_VERSION"))
}

/// A time as RFC 3339 in UTC.
#[must_use]
pub fn format_rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).expect("UTC times format")
}

/// Now, as RFC 3339 in UTC.
#[must_use]
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

/// A new random id (8 hex digits) for a run or snapshot.
#[must_use]
pub fn new_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Derives the crypt keys (scrypt, ~50 ms and 16 MiB) off the async workers.
///
/// # Errors
/// [`Error::Config`] for an empty password.
pub async fn derive_cipher(password: &Secret, password2: &Secret) -> Result<s32s3_crypt::Cipher> {
    let (password, password2) = (password.clone(), password2.clone());
    tokio::task::spawn_blocking(move || s32s3_crypt::Cipher::new(password.expose(), password2.expose()))
        .await
        .expect("key derivation does not panic")
        .map_err(|e| Error::Config { field: "crypt.password".into(), reason: e.to_string() })
}
