//! The AWS SDK configuration every function loads once per process.
//!
//! The loader itself lives in `tollgate-aws` ([`tollgate_aws::sdk_config`]): it reads the
//! standard environment (`AWS_REGION`, the credentials chain, `AWS_ENDPOINT_URL` and
//! `AWS_ENDPOINT_URL_<SERVICE>`, as the local stack uses to reach the emulator) and applies the
//! short timeouts and retries the stores need to fail closed. This module re-exposes it so a
//! function's start-up has one entry point; it is not duplicated here.
//!
//! Note for whoever next touches `shared/aws`: when the rotation and audit functions arrive,
//! `sdk_config` and its timeout/retry constants could move into this crate (start-up), with
//! `tollgate-aws` taking an `SdkConfig` only. Left in place for now: `shared/aws` is not owned
//! by this change.

/// Loads the SDK configuration from the environment. Call once per process; build every
/// client from the result.
pub async fn sdk_config() -> aws_config::SdkConfig {
    tollgate_aws::sdk_config().await
}
