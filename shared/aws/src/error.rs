//! Error mapping. SDK failures are reduced to service, operation and error kind/code: the
//! SDK's messages can quote request contents, so they never reach a `StoreError` or a log.

use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::borrow::Cow;
use tollgate_core::ports::StoreError;

// Every service crate re-exports the same smithy `SdkError` (with the same HTTP response type).
use aws_sdk_dynamodb::error::SdkError;

/// Configuration the adapters need from the environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    MissingVar(&'static str),
}

/// The error's kind: the service's error code, or what went wrong on the way.
pub(crate) fn kind<E: ProvideErrorMetadata>(e: &SdkError<E>) -> Cow<'static, str> {
    match e {
        SdkError::ConstructionFailure(_) => "request could not be built".into(),
        SdkError::TimeoutError(_) => "timeout".into(),
        SdkError::DispatchFailure(d) => {
            if d.is_timeout() {
                "timeout".into()
            } else if d.is_io() {
                "connection failed".into()
            } else {
                "dispatch failed".into()
            }
        }
        SdkError::ResponseError(_) => "unreadable response".into(),
        SdkError::ServiceError(s) => match s.err().code() {
            Some(code) => Cow::Owned(code.to_owned()),
            None => "service error".into(),
        },
        _ => "unknown error".into(),
    }
}

/// `Unavailable("<service> <operation>: <kind>")`, logged at warn with the same fields.
pub(crate) fn unavailable<E: ProvideErrorMetadata>(
    service: &'static str,
    op: &'static str,
    e: &SdkError<E>,
) -> StoreError {
    let kind = kind(e);
    tracing::warn!(service, op, error.kind = %kind, "AWS call failed");
    StoreError::Unavailable(format!("{service} {op}: {kind}"))
}
