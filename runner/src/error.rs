//! The runner's one error type for requests, mapped to `tonic::Status` at the edge.
//!
//! Failures of a run itself (spawn failed, session busy, crash) are not
//! errors of the RPC: they travel in the run's event stream as `RunError`
//! events followed by `RunExited`, so a caller has one path for them.

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The RunSpec is malformed.
    #[error("invalid run spec: {0}")]
    InvalidSpec(String),
    /// A run with this id is active.
    #[error("run {0} already exists")]
    DuplicateRun(String),
    /// `[runner].max_concurrent_runs` is reached.
    #[error("too many concurrent runs (limit {0})")]
    TooManyRuns(u32),
    /// The runner is shutting down.
    #[error("the runner is shutting down")]
    ShuttingDown,
    /// A transcript could not be imported (`ImportTranscript`).
    #[error("import a transcript: {0}")]
    Import(String),
}

impl From<RunnerError> for tonic::Status {
    fn from(error: RunnerError) -> Self {
        let message = error.to_string();
        match error {
            RunnerError::InvalidSpec(_) => tonic::Status::invalid_argument(message),
            RunnerError::DuplicateRun(_) => tonic::Status::already_exists(message),
            RunnerError::TooManyRuns(_) => tonic::Status::resource_exhausted(message),
            RunnerError::ShuttingDown => tonic::Status::unavailable(message),
            RunnerError::Import(_) => tonic::Status::failed_precondition(message),
        }
    }
}
