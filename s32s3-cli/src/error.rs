//! The error an invalid setting is reported with, wherever it came from: the configuration (file,
//! environment, flags), an imported rclone.conf or a command's own flag. A leaf module, so that
//! [`crate::config`] and [`crate::rclone_conf`] both use it without depending on each other.

use std::fmt;

/// An invalid configuration value: the CLI exits with the usage code (2).
#[derive(Debug)]
pub struct ConfigError {
    /// Where (a field name or the file).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl ConfigError {
    /// `field` is invalid: `reason`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}
