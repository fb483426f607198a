//! A signed client for the MinIO admin API (`/minio/admin/v3/…`).
//!
//! Backup and restore use it for everything S3 cannot carry: IAM, bucket-metadata exports and the server
//! configuration. The protocol, the madmin payload encryption and the endpoints are specified in
//! `specs/minio-admin.md` (kept with the project's shared documents). This crate knows nothing of the backup
//! engine or of the crypt format.
//!
//! - [`sigv4`]: AWS Signature V4 on `hmac` + `sha2`, as madmin signs (service `s3`, the body's SHA-256 in
//!   `X-Amz-Content-Sha256`), with an injectable [`sigv4::Clock`].
//! - [`payload`]: madmin's encrypted bodies (ids `0x00` Argon2id + AES-256-GCM, `0x01` Argon2id +
//!   ChaCha20-Poly1305, `0x02` PBKDF2 + AES-256-GCM; sio-go framing in 16 KiB fragments). A wrong secret,
//!   an altered payload and a truncated one are different errors.
//! - [`AdminClient`]: the typed calls over `reqwest` (rustls), and [`AdminClient::probe`] to ask, without
//!   side effects, whether an endpoint is a MinIO these credentials can administer.
//! - [`IamExport`], [`BucketMetadataExport`]: exports validated as zips of the expected layout.
//!
//! Secrets stay out of `Debug`, logs and errors: [`sigv4::Credentials`], [`AdminOptions`], [`ConfigText`],
//! [`ConfigHistoryEntry`] and the export types print lengths and names only.
//!
//! # Example
//!
//! ```no_run
//! use s32s3_minio_admin::{AdminClient, AdminOptions, Probe};
//!
//! # async fn run() -> s32s3_minio_admin::Result<()> {
//! let admin = AdminClient::new("https://minio.internal:9000", "admin", "admin-secret", AdminOptions::default())?;
//! match admin.probe().await? {
//!     Probe::Admin(info) => println!("MinIO {:?}, deployment {}", info.version(), info.deployment_id),
//!     Probe::NotAdmin(why) | Probe::NotMinio(why) => return Ok(println!("no admin backup: {why}")),
//!     _ => return Ok(()),
//! }
//! let config = admin.get_config().await?; // secrets in clear: store encrypted
//! let iam = admin.export_iam().await?; // a validated zip; Debug shows entry names only
//! let buckets = admin.export_bucket_metadata(None).await?;
//! println!("{} config bytes, {iam:?}, buckets {:?}", config.len(), buckets.buckets());
//!
//! // Restore, in the order of DESIGN §6: config (then restart), IAM, bucket metadata.
//! let applied = admin.set_config_known(&config).await?; // leaves out what the server refuses
//! for part in &applied.refused {
//!     eprintln!("not restored: {part}");
//! }
//! admin.service_restart().await?;
//! admin.wait_for_restart(std::time::Duration::from_mins(3)).await?; // RustFS needs its process manager
//! let imported = admin.import_iam(&iam).await?; // import-iam-v2, or import-iam on older servers
//! admin.set_group_status("devs", false).await?; // import-iam creates every group enabled
//! let report = admin.import_bucket_metadata(&buckets).await?;
//! for (bucket, section, error) in report.failures() {
//!     eprintln!("{bucket}: {section}: {error}");
//! }
//! # drop(imported);
//! # Ok(())
//! # }
//! ```
//!
//! The payload format on its own:
//!
//! ```
//! use s32s3_minio_admin::payload;
//!
//! let sealed = payload::encrypt("secret-key", b"{\"a\":1}")?;
//! assert_eq!(payload::decrypt("secret-key", &sealed)?, b"{\"a\":1}");
//! assert!(matches!(
//!     payload::decrypt("other-key", &sealed),
//!     Err(s32s3_minio_admin::Error::PayloadWrongSecret)
//! ));
//! # Ok::<(), s32s3_minio_admin::Error>(())
//! ```
//!
//! # What is proven how
//!
//! No MinIO binary can be obtained where this crate is built and tested, so:
//!
//! **Proven by real vectors** (in `tests/data/`, see its README):
//! - payload decryption, every id: 11 payloads made by MinIO's own SDK (madmin-go 2.0.7 `EncryptData`,
//!   0 to 40000 bytes, so one to three fragments, four passwords) and the 4 `decryptDataTests` of upstream
//!   madmin-go (id `0x00`); the same 11 plaintexts encrypted by the SDK's `EncryptData` built for FIPS
//!   (id `0x02`); and by `EncryptData`'s steps on its ChaCha20 branch with sio-go and x/crypto (id `0x01`,
//!   checked by the SDK's `DecryptData`);
//! - payload encryption, every id: 33 payloads made by this crate were decrypted by madmin-go's
//!   `DecryptData` (a recorded check: Go is not on the CI machines; the tests keep them decrypting);
//! - the sio-go stream framing, byte for byte in both directions: the 14 AES-128-GCM vectors of
//!   secure-io/sio-go (fragment sizes 16 and 17, with associated data);
//! - SigV4: the S3 documentation's examples (GET object with `Range`, PUT object, GET bucket lifecycle,
//!   list objects) give the published signatures, and generated requests give the same signature as the
//!   AWS SDK's `aws-sigv4` crate.
//!
//! **Proven only against the documented shapes** (spec §1–§3, served by a test server that verifies
//! signatures with `aws-sigv4`):
//! - that a MinIO *server* accepts our requests: signing as the spec describes madmin's, never shown to a
//!   running MinIO;
//! - every endpoint's method, path, query and body shape (including the restore fix-ups
//!   `set-group-status` and `update-service-account`); the JSON shapes of server info, users, groups,
//!   policies, service accounts, config history, `ImportIAMResult`, `BucketMetaImportErrs` and service
//!   restart; the zip layouts of both exports;
//! - the error answers: status codes and `Code`s (`InvalidAccessKeyId`, `SignatureDoesNotMatch`,
//!   `AccessDenied`, 426 `XMinioAdminVersionMismatch`, S3 XML `NoSuchBucket` from non-MinIO servers), the
//!   import-iam-v2 → import-iam fallback, and so [`AdminClient::probe`]'s classification.
//!
//! Transport failures (closed port, TLS to a plain-HTTP port, a server that never answers) are real:
//! the tests provoke them on loopback.
//!
//! **Proven against a running `RustFS` 1.0.1** (a MinIO-compatible server with this admin API; the MinIO
//! suite, `scripts/test-minio`): the probe (its `{"info": …}` answer, its XML `AccessDenied`, and plain S3
//! told apart), the permission each refused call names, a wrong secret, export and import of IAM and bucket
//! metadata, quotas in both shapes, `set_config_known` with a MinIO configuration, config history, service
//! restart and the bounded wait after it, and the one-entity IAM calls. Its answers are recorded in
//! `tests/data/rustfs-1.0.1`.

pub mod archive;
mod client;
mod error;
pub mod kv;
pub mod payload;
pub mod sigv4;
mod types;

pub use archive::{BucketMetadataExport, IamDisabled, IamExport, IamLayout};
pub use client::{ADMIN_PREFIX, AdminClient, AdminOptions, MAX_CONFIG_LEN, NewServiceAccount, Probe};
pub use error::{ArchiveKind, Error, Result};
pub use kv::{ConfigApplied, RefusedConfig};
pub use types::*;
