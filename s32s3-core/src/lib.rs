//! The s32s3 engine: backs up an S3-compatible object store into rclone-crypt backups on another one, and
//! restores it to any point in time.
//!
//! This crate is a library: it never prints, never reads environment variables for configuration and never
//! exits the process. It returns typed errors and reports progress through a trait the caller implements.
//! The backup format and what every command guarantees are described in the project's `DESIGN.md`.

pub mod error;
pub mod s3;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::{Error, Result};
