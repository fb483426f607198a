//! One module per command group.

pub mod backup;
pub mod config;
pub mod crypt;
pub mod daemon;
pub mod restore;
