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

/// What an input file is, for [`read_input`]: its byte cap and the error class (and so the
/// exit code) of every failure to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A config file: 1 MiB.
    Config,
    /// The models manifest: 1 MiB.
    Manifest,
    /// A model or weights file: 1 GiB.
    Model,
    /// Ground truth or predictions: 256 MiB.
    Data,
}

impl InputKind {
    /// The most bytes read from such a file; beyond it the file is refused unread (a
    /// `/dev/zero` or a mistaken multi-GB path must not exhaust a 4 GB board).
    pub const fn cap(self) -> u64 {
        match self {
            InputKind::Config | InputKind::Manifest => 1 << 20,
            InputKind::Model => 1 << 30,
            InputKind::Data => 256 << 20,
        }
    }

    fn error(self, path: &std::path::Path, reason: String) -> Error {
        match self {
            InputKind::Config => Error::Config {
                origin: Some(path.into()),
                problems: vec![reason],
            },
            InputKind::Manifest => Error::Manifest {
                path: path.into(),
                reason,
            },
            InputKind::Model => Error::model(path, reason),
            InputKind::Data => Error::data(path, reason),
        }
    }
}

/// Read a whole input file, at most `kind.cap()` bytes. A file that is missing, a directory,
/// unreadable or too large is an error of `kind`'s class naming the path, not an I/O error:
/// the exit code says which input was wrong.
pub fn read_input(path: &std::path::Path, kind: InputKind) -> Result<Vec<u8>> {
    use std::io::Read;
    let cap = kind.cap();
    let f = std::fs::File::open(path).map_err(|e| kind.error(path, format!("cannot read: {e}")))?;
    let meta = f
        .metadata()
        .map_err(|e| kind.error(path, format!("cannot read: {e}")))?;
    if meta.is_dir() {
        return Err(kind.error(path, "is a directory, not a file".into()));
    }
    let mut bytes = Vec::new();
    f.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| kind.error(path, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > cap {
        return Err(kind.error(path, format!("larger than {} MiB; refused", cap >> 20)));
    }
    Ok(bytes)
}

/// [`read_input`] as UTF-8 text.
pub fn read_input_text(path: &std::path::Path, kind: InputKind) -> Result<String> {
    String::from_utf8(read_input(path, kind)?)
        .map_err(|e| kind.error(path, format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))
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

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn input(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            reason: reason.into(),
        }
    }
    pub fn model(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Model {
            path: path.into(),
            reason: reason.into(),
        }
    }
    pub fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Library result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
