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

use clap::{Args, CommandFactory as _, Parser, Subcommand};

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
    /// Run backups on the cron schedule (UTC), and verifications on their own, serving /metrics and /healthz.
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
    /// Print a shell completion script, e.g. `source <(s32s3 completions bash)`.
    Completions(CompletionsArgs),
    /// Print the man page (roff), e.g. `s32s3 man | man -l -`, or a command's (`s32s3 man backup`).
    Man(ManArgs),
}

/// `s32s3 completions` arguments.
#[derive(Debug, Args)]
struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// `s32s3 man` arguments.
#[derive(Debug, Args)]
struct ManArgs {
    /// The command whose page to print (`backup`, `crypt encrypt`) [default: s32s3's, which lists them].
    #[arg(value_name = "COMMAND")]
    command: Vec<String>,
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
        Command::Completions(args) => completions(args.shell),
        Command::Man(args) => man(&args.command),
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

/// Prints the completion script for `shell`, generated from the command-line definitions.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "s32s3", &mut script);
    print(&script)
}

/// Prints the man page of `s32s3` or of one of its commands (`s32s3-backup(1)`, as the pages name each
/// other), generated from the command-line definitions.
fn man(path: &[String]) -> anyhow::Result<u8> {
    let mut cli = Cli::command();
    // Built, the commands carry their full names (`s32s3-backup`) and the version.
    cli.build();
    let mut command = &cli;
    for name in path {
        command = command.find_subcommand(name).unwrap_or_else(|| {
            let known: Vec<&str> = command.get_subcommands().map(clap::Command::get_name).collect();
            let message =
                format!("{} has no command {name:?} (one of: {})", command.get_name(), known.join(", "));
            Cli::command().error(clap::error::ErrorKind::InvalidSubcommand, message).exit()
        });
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    print(&page)
}

/// Writes `bytes` to stdout: an error (a closed pipe) is the command's, not a panic.
fn print(bytes: &[u8]) -> anyhow::Result<u8> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| anyhow::anyhow!("writing to stdout: {e}"))?;
    Ok(exit::OK)
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
