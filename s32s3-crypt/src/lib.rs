//! rclone-compatible `crypt`: what s32s3 encrypts, stock rclone decrypts, and the other way round.
//!
//! The format is specified in `specs/rclone-crypt.md` (kept with the project's shared documents): scrypt key
//! derivation, rclone's `obscure`/`reveal`, EME name encryption and the XSalsa20-Poly1305 chunked content
//! format. This crate knows nothing of S3 or of the backup engine.
