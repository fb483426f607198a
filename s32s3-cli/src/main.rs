//! `s32s3`: back up a whole S3-compatible object store into rclone-crypt encrypted backups, and restore it.
//!
//! The binary is glue: it parses the command line, loads the configuration, calls `s32s3-core` and maps
//! errors to exit codes (0 ok, 1 failed, 2 usage, 3 partial).

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Back up S3-compatible object stores (MinIO first) into rclone-crypt encrypted backups, and restore them.
#[derive(Debug, Parser)]
#[command(name = "s32s3", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Encrypt, decrypt and inspect single objects and names in rclone's crypt format.
    #[command(subcommand)]
    Crypt(cmd::crypt::CryptCommand),
    /// Obscure a password the way rclone.conf stores it.
    Obscure(cmd::crypt::ObscureArgs),
    /// Reveal a password obscured by rclone (or by `s32s3 obscure`).
    Reveal(cmd::crypt::RevealArgs),
}

/// Exit codes shared by every command.
pub mod exit {
    /// Everything worked.
    pub const OK: u8 = 0;
    /// The command failed.
    pub const FAILED: u8 = 1;
    /// The command line or configuration is wrong.
    pub const USAGE: u8 = 2;
    /// The command finished, but some objects could not be processed.
    pub const PARTIAL: u8 = 3;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crypt(command) => cmd::crypt::run(command),
        Command::Obscure(args) => cmd::crypt::obscure(&args),
        Command::Reveal(args) => cmd::crypt::reveal(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("s32s3: error: {err:#}");
            ExitCode::from(exit::FAILED)
        }
    }
}
