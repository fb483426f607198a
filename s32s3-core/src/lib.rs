//! The s32s3 engine: backs up an S3-compatible object store into rclone-crypt backups on another one, and
//! restores it to any point in time.
//!
//! This crate is a library: it never prints, never reads environment variables for configuration and never
//! exits the process. It returns typed errors and reports progress through [`Progress`], which the
//! caller implements, and cancels through a [`CancellationToken`]. The backup format and what every command guarantees are described in the
//! project's `DESIGN.md`.
//!
//! A service embeds it like this (the hidden lines start a local SeaweedFS from the test kit and put an
//! object in it; everything else is what an embedder writes):
//!
//! ```
//! use std::sync::Arc;
//! use s32s3_core::{Backup, CancellationToken, NoProgress, Restore, RunConfig, Secret, Selector};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> s32s3_core::Result<()> {
//! # let server = s32s3_core::testkit::seaweedfs();
//! # let bucket = server.unique_bucket("doc-data");
//! # let s3 = server.client();
//! # s3.create_bucket().bucket(&bucket).send().await.unwrap();
//! # s3.put_object().bucket(&bucket).key("hello.txt").body(b"hello".to_vec().into()).send().await.unwrap();
//! # let (source, destination) = (server.endpoint(), server.endpoint());
//! # let backups = server.unique_bucket("doc-backups");
//! // Where the data is, where the backups go, and the crypt password; everything else has defaults.
//! let config = RunConfig::new(source, destination, Secret::new("correct horse battery staple"))
//!     .with_location(backups, "")
//!     .with_expiration_days(30);
//! config.validate()?; // every problem at once, before any request
//!
//! let summary = Backup::new(config.clone())
//!     .with_buckets(vec![bucket.clone()])
//!     .run(Arc::new(NoProgress), CancellationToken::new())
//!     .await?;
//! assert_eq!(summary.counts.new.objects, 1);
//!
//! // The snapshot is listed, and restores (here into a new bucket beside the original).
//! let snapshots = s32s3_core::describe(&config, Arc::new(NoProgress)).await?;
//! assert_eq!(snapshots.len(), 1);
//! let target = format!("{bucket}-restored");
//! let restored = Restore::new(config)
//!     .with_selector(Selector::Id(summary.snapshot_id.clone()))
//!     .with_buckets(vec![format!("{bucket}:{target}").parse().unwrap()])
//!     .run(Arc::new(NoProgress), CancellationToken::new())
//!     .await?;
//! assert_eq!(restored.restored.objects, 1);
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
// Which shard of a sharded run backs up which object, and where the parts go.
pub mod shard;
// The transfer engine: listings, plans, moving objects both ways. Internal; the test kit (tests, fuzz
// targets) reaches into it.
#[cfg(feature = "testkit")]
pub mod engine;
#[cfg(not(feature = "testkit"))]
pub(crate) mod engine;
// What every command starts from.
pub(crate) mod repo;
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
pub use engine::history::HistoryCounts;
pub use engine::parts::part_size_for;
pub use error::{Error, Result};
pub use format::manifest::SnapshotStatus;
pub use format::retention::Window;
pub use format::snapshots::{Selector, parse_point_in_time};
pub use inspect::{SnapshotInfo, StorageStats, describe, storage_stats};
pub use options::validate_bucket_name;
pub use options::{ObjectLock, Provider, RunConfig, S3Endpoint, TransferOptions};
pub use progress::{Event, NoProgress, Outcome, PlanCounts, Progress, Totals};
pub use restore::Restore;
pub use restore::{BucketMapping, RestoreMode};
pub use secret::Secret;
pub use shard::Shard;
pub use summary::{BackupSummary, Failure, RestoreSummary, VerifySummary};
pub use verify::ReadData;
pub use verify::Verify;

pub use clock::{format_rfc3339, now_rfc3339};
pub use format::{derive_cipher, new_id, tool_version};
/// Cancels a running operation (re-exported from `tokio-util`, so embedders need not depend on it).
pub use tokio_util::sync::CancellationToken;
