//! The backup format: where things are stored and under which names ([`layout`]), the location's config
//! file ([`destination`]), manifests ([`manifest`]) and the spools they are read through ([`spool`]),
//! rclone's mtime ([`mtime`]), the snapshot catalog ([`snapshots`]), the retention windows
//! ([`retention`]) and the lease ([`lease`]).
//!
//! Depends on the storage layer and the cipher; knows nothing of backup or restore.

pub mod destination;
pub mod layout;
pub mod lease;
pub mod manifest;
pub mod mtime;
pub mod retention;
pub mod snapshots;
pub mod spool;
