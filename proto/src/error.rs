//! One error type for turning wire messages into domain types.
//!
//! Validation happens on the receiving side only, when a proto message becomes
//! a domain type (`TryFrom<pb::X>`). Every failure maps to
//! `Status::invalid_argument` naming the field at fault.

/// A wire message that does not make a valid domain value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// A required field was absent or empty.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field held a value outside its domain.
    #[error("invalid value for `{field}`: {reason}")]
    InvalidValue {
        /// The proto field name.
        field: &'static str,
        /// Why the value is rejected.
        reason: String,
    },
}

impl ProtocolError {
    /// Shorthand for [`ProtocolError::InvalidValue`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidValue { field, reason: reason.into() }
    }
}

impl From<ProtocolError> for tonic::Status {
    fn from(error: ProtocolError) -> Self {
        tonic::Status::invalid_argument(error.to_string())
    }
}

/// Returns the string, or `MissingField` when it is empty.
pub fn required(field: &'static str, value: String) -> Result<String, ProtocolError> {
    if value.is_empty() { Err(ProtocolError::MissingField(field)) } else { Ok(value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_invalid_argument_naming_the_field() {
        let status: tonic::Status = ProtocolError::MissingField("run_id").into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("run_id"));
    }

    #[test]
    fn required_rejects_empty() {
        assert_eq!(required("x", String::new()), Err(ProtocolError::MissingField("x")));
        assert_eq!(required("x", "a".into()), Ok("a".into()));
    }
}
