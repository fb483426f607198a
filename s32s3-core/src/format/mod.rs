//! The backup format: where things are stored and under which names ([`layout`]), the location's config
//! file ([`destination`]), manifests ([`manifest`]) and the spools they are read through ([`spool`]),
//! rclone's mtime ([`mtime`]), the snapshot catalog ([`snapshots`]), the retention windows
//! ([`retention`]), the lease ([`lease`]) and the source's version history ([`history`]).
//!
//! Depends on the storage layer and the cipher; knows nothing of backup or restore.

pub mod destination;
pub mod history;
pub mod layout;
pub mod lease;
pub mod manifest;
pub mod mtime;
pub mod retention;
pub mod snapshots;
pub mod spool;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// `s32s3 <version>`, recorded in manifests, run records and the config file.
#[must_use]
pub fn tool_version() -> String {
    format!("s32s3 {}", env!("CARGO_PKG_VERSION"))
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
