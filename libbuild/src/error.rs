//! The crate's error type.

use std::path::PathBuf;

/// Errors from parsing, planning and building.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Dockerfile does not parse: `Dockerfile:3: unknown instruction: FORM`.
    #[error("{file}:{line}: {message}")]
    Parse {
        /// The Dockerfile's name.
        file: String,
        /// The line (1-based) of the instruction.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A variable expansion failed.
    #[error("{file}:{line}: {source}")]
    Expand {
        /// The Dockerfile's name.
        file: String,
        /// The line (1-based) of the instruction.
        line: usize,
        /// The lexer's error.
        source: crate::shell::ShellError,
    },
    /// The stages do not form a valid build (missing stage, cycle, bad target).
    #[error("{0}")]
    Plan(String),
    /// A source is missing from the context, or outside it.
    #[error("{0}")]
    Context(String),
    /// A `.dockerignore` pattern is malformed.
    #[error(".dockerignore: {0}")]
    Ignore(String),
    /// A RUN step failed.
    #[error("step {step}/{total} : {instruction}: the command returned a non-zero code: {code}")]
    StepFailed {
        /// The step's number (1-based).
        step: usize,
        /// The number of steps.
        total: usize,
        /// The instruction as written.
        instruction: String,
        /// The exit code.
        code: i32,
    },
    /// The step runner could not run a step.
    #[error("step {step}/{total} : {instruction}: {message}")]
    Runner {
        /// The step's number (1-based).
        step: usize,
        /// The number of steps.
        total: usize,
        /// The instruction as written.
        instruction: String,
        /// What failed.
        message: String,
    },
    /// The image or layer store refused something.
    #[error(transparent)]
    Graph(#[from] longshore_graph::Error),
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A build option is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// Attaches an operation and path to I/O errors.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T, Error>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            op,
            path: path.into(),
            source,
        })
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
