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
// MinIO's own state (IAM, configuration), exported beside the data and imported back.
pub(crate) mod instance;
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
pub use format::manifest::SnapshotStatus;
pub use format::retention::Window;
pub use format::snapshots::{Selector, parse_point_in_time};
pub use inspect::{SnapshotInfo, StorageStats, describe, storage_stats};
pub use options::validate_bucket_name;
pub use options::{Provider, RunConfig, S3Endpoint, TransferOptions};
pub use progress::{Event, NoProgress, Outcome, PlanCounts, Progress, Totals};
pub use restore::Restore;
pub use restore::{BucketMapping, RestoreMode};
pub use secret::Secret;
pub use summary::{BackupSummary, Failure, RestoreSummary, VerifySummary};
pub use verify::ReadData;
pub use verify::Verify;

pub use clock::{format_rfc3339, now_rfc3339};
pub use format::{derive_cipher, new_id, tool_version};
/// Cancels a running operation (re-exported from `tokio-util`, so embedders need not depend on it).
pub use tokio_util::sync::CancellationToken;
