//! `s32s3 crypt …`, `s32s3 obscure`, `s32s3 reveal`: inspect single backup objects and names by hand.

use clap::{Args, Subcommand};

/// `s32s3 crypt` subcommands.
#[derive(Debug, Subcommand)]
pub enum CryptCommand {}

/// `s32s3 obscure` arguments.
#[derive(Debug, Args)]
pub struct ObscureArgs {}

/// `s32s3 reveal` arguments.
#[derive(Debug, Args)]
pub struct RevealArgs {}

/// Runs a `crypt` subcommand.
pub fn run(command: CryptCommand) -> anyhow::Result<u8> {
    match command {}
}

/// Runs `obscure`.
pub fn obscure(_args: &ObscureArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not implemented yet")
}

/// Runs `reveal`.
pub fn reveal(_args: &RevealArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not implemented yet")
}
