//! The CLI's operational error: a message for the operator (printed after `error:`), exit
//! code 1. Usage errors never get here: clap reports them itself and exits with 2.
//!
//! Messages name ids, pools and secret names, never a secret value or a full client key.

use tollgate_core::ports::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

impl CliError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }

    /// A store failure with what the CLI was doing at the time.
    pub fn store(context: impl std::fmt::Display, e: StoreError) -> Self {
        Self(format!("{context}: {}", describe(&e)))
    }

    pub fn exit_code(&self) -> i32 {
        1
    }
}

/// A store error in words, for the end of an operator message.
pub fn describe(e: &StoreError) -> String {
    match e {
        StoreError::Unavailable(m) => format!("the store is unavailable ({m})"),
        StoreError::NotFound => "not found".to_owned(),
        StoreError::AlreadyExists => "it already exists".to_owned(),
        StoreError::Corrupt(m) => format!("a stored record is malformed ({m})"),
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// `.ctx("reading tenant acme")?` on a store call.
pub trait StoreContext<T> {
    fn ctx(self, context: impl std::fmt::Display) -> Result<T>;
}

impl<T> StoreContext<T> for std::result::Result<T, StoreError> {
    fn ctx(self, context: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| CliError::store(context, e))
    }
}
