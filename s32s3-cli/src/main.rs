//! `s32s3`: back up a whole S3-compatible object store into rclone-crypt encrypted backups, and restore it.
//!
//! The binary is glue: it parses the command line, loads the configuration, calls `s32s3-core` and maps
//! errors to exit codes (0 ok, 1 failed, 2 usage, 3 partial).

use std::process::ExitCode;

use clap::Parser;

/// Back up S3-compatible object stores (MinIO first) into rclone-crypt encrypted backups, and restore them.
#[derive(Debug, Parser)]
#[command(name = "s32s3", version, about)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    ExitCode::SUCCESS
}
