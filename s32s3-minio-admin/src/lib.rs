//! A signed client for the MinIO admin API (`/minio/admin/v3/…`).
//!
//! Backup and restore use it for everything S3 cannot carry: IAM, bucket-metadata exports and the server
//! configuration. The protocol, the madmin payload encryption and the endpoints are specified in
//! `specs/minio-admin.md` (kept with the project's shared documents). This crate knows nothing of the backup
//! engine or of the crypt format.

pub mod archive;
mod client;
mod error;
pub mod payload;
pub mod sigv4;
mod types;

pub use archive::{BucketMetadataExport, IamExport, IamLayout};
pub use client::{AdminClient, AdminOptions, MAX_CONFIG_LEN, Probe};
pub use error::{ArchiveKind, Error, Result};
pub use types::*;
