//! Error mapping. SDK failures are reduced to service, operation and error kind/code: the
//! SDK's messages can quote request contents, so they never reach a `StoreError` or a log.

use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::borrow::Cow;
use tollgate_core::ports::StoreError;

// Every service crate re-exports the same smithy `SdkError` (with the same HTTP response type).
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::CancellationReason;

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

/// Errors of the writes that carry a condition expression.
pub(crate) trait ConditionalWriteError: ProvideErrorMetadata {
    fn condition_failed(&self) -> bool;
}

macro_rules! conditional_write_error {
    ($($t:ty),*) => {$(
        impl ConditionalWriteError for $t {
            fn condition_failed(&self) -> bool {
                self.is_conditional_check_failed_exception()
            }
        }
    )*};
}
conditional_write_error!(
    aws_sdk_dynamodb::operation::put_item::PutItemError,
    aws_sdk_dynamodb::operation::update_item::UpdateItemError,
    aws_sdk_dynamodb::operation::delete_item::DeleteItemError
);

/// A conditional write's result: `Ok(true)` written, `Ok(false)` its condition failed (an
/// answer, not a failure); anything else is `Unavailable`, logged by [`unavailable`].
pub(crate) fn written<T, E: ConditionalWriteError>(
    r: Result<T, SdkError<E>>,
    service: &'static str,
    op: &'static str,
) -> Result<bool, StoreError> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(E::condition_failed) => Ok(false),
        Err(e) => Err(unavailable(service, op, &e)),
    }
}

/// [`written`] where a failed condition means the item is missing or in the way: `failed`.
pub(crate) fn written_or<T, E: ConditionalWriteError>(
    r: Result<T, SdkError<E>>,
    failed: StoreError,
    service: &'static str,
    op: &'static str,
) -> Result<(), StoreError> {
    if written(r, service, op)? {
        Ok(())
    } else {
        Err(failed)
    }
}

/// A `TransactWriteItems` result: `Ok(None)` applied, `Ok(Some(reasons))` cancelled (one
/// reason per item, in order, as DynamoDB reports them); anything else is `Unavailable`.
pub(crate) fn transaction<T>(
    r: Result<T, SdkError<TransactWriteItemsError>>,
    service: &'static str,
    op: &'static str,
) -> Result<Option<Vec<CancellationReason>>, StoreError> {
    match r {
        Ok(_) => Ok(None),
        Err(SdkError::ServiceError(ctx))
            if matches!(
                ctx.err(),
                TransactWriteItemsError::TransactionCanceledException(_)
            ) =>
        {
            Ok(Some(match ctx.into_err() {
                TransactWriteItemsError::TransactionCanceledException(e) => {
                    e.cancellation_reasons.unwrap_or_default()
                }
                _ => Vec::new(),
            }))
        }
        Err(e) => Err(unavailable(service, op, &e)),
    }
}
