//! The engine's error type.

/// What went wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is missing or invalid; `field` names it as the user wrote it.
    #[error("invalid configuration: {field}: {reason}")]
    Config {
        /// The configuration key, e.g. `source.endpoint`.
        field: String,
        /// Why it is invalid.
        reason: String,
    },
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
