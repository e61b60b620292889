//! One error type for the library, so that every failure names what it failed on.
//!
//! Variants carry the path, field or value that was wrong; binaries add no context
//! of their own beyond printing the chain. Exit codes are chosen per variant
//! ([`Error::exit_code`]) so that scripts can tell bad input from a bad setup.

use std::path::PathBuf;

/// Everything the library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A config file (or `--set` override) is invalid; every problem found is listed.
    #[error("invalid configuration{}:\n{}", origin.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Config {
        origin: Option<PathBuf>,
        problems: Vec<String>,
    },
    /// A model file is missing, corrupt, or does not match its manifest entry.
    #[error("model {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    /// The models manifest itself is wrong.
    #[error("models manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    /// Input video or images are unreadable or malformed.
    #[error("input {path}: {reason}")]
    Input { path: PathBuf, reason: String },
    /// Ground truth or predictions given to `eval` are malformed.
    #[error("{path}: {reason}")]
    Data { path: PathBuf, reason: String },
    /// A fetch step could not get an asset.
    #[error("fetch {name}: {reason}")]
    Fetch { name: String, reason: String },
    /// An argument combination that cannot work.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Process exit code for this error: 2 usage/config, 3 models, 4 input data, 5 fetch, 1 other I/O.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Config { .. } => 2,
            Error::Model { .. } | Error::Manifest { .. } => 3,
            Error::Input { .. } | Error::Data { .. } => 4,
            Error::Fetch { .. } => 5,
            Error::Io { .. } => 1,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn input(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            reason: reason.into(),
        }
    }
    pub(crate) fn model(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Model {
            path: path.into(),
            reason: reason.into(),
        }
    }
    pub(crate) fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Library result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
