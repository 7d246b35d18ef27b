//! The Matrix gateway's one error type. Callers branch on whether the
//! homeserver revoked the session ([`MatrixError::TokenRejected`]: stop and
//! say how to log in again) or anything else happened (log, ack the action
//! as failed, retry the sync); the message always says what was being done.

/// Why a Matrix operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    /// The homeserver rejected the saved access token.
    #[error(
        "the homeserver rejected the saved access token (device logged out?): delete \
         $DUCTOR_HOME/matrix/session.json and restart to log in again"
    )]
    TokenRejected,
    /// A call (homeserver, store, file system) failed while doing `action`.
    #[error("{action}: {source}")]
    Failed {
        /// What was being done, as a verb phrase ("send a message").
        action: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Nothing failed, but the operation cannot be done (a full file, a room
    /// the bot is not in, a user id that does not match the config).
    #[error("{0}")]
    Refused(String),
}

impl MatrixError {
    /// A refusal with `reason`.
    pub fn refused(reason: impl Into<String>) -> Self {
        Self::Refused(reason.into())
    }
}

/// Names what was being done when a call fails.
pub trait Doing<T> {
    /// Maps the error to [`MatrixError::Failed`] with `action`.
    fn doing(self, action: impl Into<String>) -> Result<T, MatrixError>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Doing<T> for Result<T, E> {
    fn doing(self, action: impl Into<String>) -> Result<T, MatrixError> {
        self.map_err(|source| MatrixError::Failed {
            action: action.into(),
            source: Box::new(source),
        })
    }
}
