//! `s32s3`: back up a whole S3-compatible object store into rclone-crypt encrypted backups, and restore it.
//!
//! The binary is glue: it parses the command line, loads the configuration (TOML file, then `S32S3_*`
//! environment variables, then flags), calls `s32s3-core` and maps errors to exit codes
//! (0 ok, 1 failed, 2 usage, 3 partial).

mod cmd;
mod config;
mod error;
mod metrics;
mod output;
mod rclone_conf;
mod schedule;
mod signals;

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
    /// Back up the source's buckets into the backup location (incremental, encrypted).
    Backup(cmd::backup::BackupArgs),
    /// Restore a snapshot (or an rclone-made backup) into the source endpoint.
    Restore(cmd::restore::RestoreArgs),
    /// Check that a snapshot's objects exist (and, with --read-data, decrypt to what was backed up).
    Verify(cmd::restore::VerifyArgs),
    /// List the snapshots in the backup location.
    Snapshots(cmd::restore::SnapshotsArgs),
    /// Run backups on the cron schedule (UTC), serving /metrics and /healthz.
    Daemon(cmd::daemon::DaemonArgs),
    /// Check and show the effective configuration.
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
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
        Command::Config(command) => cmd::config::run(&command),
        Command::Crypt(command) => cmd::crypt::run(command),
        Command::Obscure(args) => cmd::crypt::obscure(&args),
        Command::Reveal(args) => cmd::crypt::reveal(&args),
        Command::Backup(args) => with_runtime(&args.config.clone(), true, |config| async move {
            cmd::backup::run(&args, &config).await
        }),
        Command::Restore(args) => with_runtime(&args.config.clone(), true, |config| async move {
            cmd::restore::restore(&args, &config).await
        }),
        Command::Daemon(args) => with_runtime(&args.config.clone(), true, |config| async move {
            cmd::daemon::run(&args, &config).await
        }),
        Command::Verify(args) => with_runtime(&args.config.clone(), false, |config| async move {
            cmd::restore::verify(&args, &config).await
        }),
        Command::Snapshots(args) => with_runtime(&args.config.clone(), false, |config| async move {
            cmd::restore::snapshots(&args, &config).await
        }),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            report(&err);
            ExitCode::from(exit_code(&err))
        }
    }
}

/// Loads the configuration, sets up logging and a tokio runtime, and runs `f`.
fn with_runtime<F, Fut>(args: &config::ConfigArgs, need_source: bool, f: F) -> anyhow::Result<u8>
where
    F: FnOnce(config::Effective) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u8>>,
{
    let given = args.load()?;
    output::init_logging(&given.output()?);
    let config = args.resolve(given, need_source)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(f(config))
}

fn report(err: &anyhow::Error) {
    // One line: what, where, and the chain of causes.
    let mut line = format!("{err}");
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    if let Some(s32s3_core::Error::Cancelled) = err.downcast_ref() {
        line.push_str(" (what was done is kept; the next backup continues from it)");
    }
    eprintln!("s32s3: error: {line}");
}

fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<error::ConfigError>().is_some()
        || matches!(err.downcast_ref::<s32s3_core::Error>(), Some(s32s3_core::Error::Config { .. }))
    {
        exit::USAGE
    } else {
        exit::FAILED
    }
}
