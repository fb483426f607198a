//! `s32s3 config check`: validate and print the effective configuration, secrets masked.

use anyhow::Result;
use clap::Subcommand;

use crate::config::ConfigArgs;
use crate::exit;

/// `s32s3 config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration (file, environment, flags) and print it with secrets masked; every
    /// invalid field is reported by name.
    Check(ConfigArgs),
}

/// Runs a `config` subcommand.
pub fn run(command: &ConfigCommand) -> Result<u8> {
    match command {
        ConfigCommand::Check(args) => {
            let effective = args.effective(args.load()?)?;
            print!("{}", effective.masked());
            let problems = effective.problems(true);
            if problems.is_empty() {
                println!("configuration ok");
                Ok(exit::OK)
            } else {
                for problem in &problems {
                    eprintln!("s32s3: invalid configuration: {problem}");
                }
                Ok(exit::USAGE)
            }
        }
    }
}
