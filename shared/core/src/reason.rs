//! Why a request ended the way it did: one enum for the whole product. The proxy's responses
//! are chosen from it (one `match` in the gateway's `respond`), the audit line carries it
//! (serialized as the snake_case strings below, which are part of the audit schema), and the
//! audit function's detectors match on it — never on free text.

use crate::audit::Decision;
use crate::auth::AuthFailure;
use crate::identity::JwtFailure;
use crate::key::KeyFormatError;
use crate::limits::LimitKind;
use crate::provider::ErrorClass;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Answered in full.
    Ok,
    /// The client went away before the response ended; the upstream call was cancelled.
    ClientDisconnected,

    // Route (before authentication: the route table is public).
    UnknownRoute,
    MethodNotAllowed,

    // Authentication: every one of these is the same 401 to the caller.
    MissingKey,
    BadPrefix,
    BadLength,
    BadCharset,
    BadChecksum,
    UnknownKey,
    DigestMismatch,
    UnknownPepperVersion,
    /// A canary key was used (it verified): refused with the uniform 401, decision `canary`.
    Canary,
    Revoked,
    /// The key is suspended (reversible; see `KeyStatus::Suspended`).
    Suspended,
    Expired,
    TenantMissing,
    TenantDisabled,
    SourceNotAllowed,
    // JWT callers (the same 401): which check refused the token. `JwksUnavailable` is the
    // issuer's key set being unreachable: refused (fail closed) but recorded as an error.
    JwtMalformed,
    JwtIssuerUnknown,
    JwtAlgNotAllowed,
    JwtUnknownKid,
    JwtBadSignature,
    JwksUnavailable,
    JwtWrongAudience,
    JwtExpired,
    JwtNotYetValid,
    JwtIssuedInFuture,
    JwtPrincipalMissing,
    JwtClaimMismatch,
    JwtTenantClaimMissing,
    JwtTenantNotAllowed,
    /// A tollgate key at the tenant management API: only OIDC identities may call it (the
    /// same 401, with no store call).
    ManagementNeedsIdentity,

    // Scopes (403, naming what is not allowed).
    RouteNotAllowed,
    ModelNotAllowed,
    /// A verified identity without its issuer's tenant-admin role at the management API.
    NotTenantAdmin,
    /// A management request for a key that does not exist or belongs to another tenant
    /// (one answer for both: no tenant learns another's key ids).
    ManagedKeyNotFound,
    /// A management request body the API does not accept (400, saying what is wrong).
    ManagementBadRequest,

    // The request itself (400 / 413).
    BodyTooLarge,
    InvalidJson,
    BodyNotUtf8,
    DuplicateJsonKey,
    NotJsonObject,
    ModelMissing,
    ModelInvalid,
    StreamNotBoolean,
    UnserializableBody,
    SensitiveDataBlocked,

    // Limits (429 with Retry-After): which limit refused.
    LimitRpm,
    LimitTpm,
    LimitConcurrency,
    /// The tenant's share of the pool (its cap on requests in flight through the pool).
    LimitPoolShare,
    BudgetDay,
    BudgetMonth,
    TokenBudgetDay,
    TokenBudgetMonth,

    // Stores and upstream (5xx).
    StoreUnavailable,
    NoEligibleToken,
    ProviderMismatch,
    TokenSecretUnavailable,
    AllTokensFailed,
    UpstreamBodyFailed,
    BadUpstreamHeaders,
    UpstreamTimeout,
    UpstreamStreamBroken,
    /// The response could not be checked for pool token values, so it was not sent.
    ScrubberUnavailable,

    /// A reason written by a newer proxy than this reader knows. Never written.
    #[serde(other)]
    Unrecognized,
}

impl Reason {
    /// The audit line's string for this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::ClientDisconnected => "client_disconnected",
            Reason::UnknownRoute => "unknown_route",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::MissingKey => "missing_key",
            Reason::BadPrefix => "bad_prefix",
            Reason::BadLength => "bad_length",
            Reason::BadCharset => "bad_charset",
            Reason::BadChecksum => "bad_checksum",
            Reason::UnknownKey => "unknown_key",
            Reason::DigestMismatch => "digest_mismatch",
            Reason::UnknownPepperVersion => "unknown_pepper_version",
            Reason::Canary => "canary",
            Reason::Revoked => "revoked",
            Reason::Suspended => "suspended",
            Reason::Expired => "expired",
            Reason::TenantMissing => "tenant_missing",
            Reason::TenantDisabled => "tenant_disabled",
            Reason::SourceNotAllowed => "source_not_allowed",
            Reason::JwtMalformed => "jwt_malformed",
            Reason::JwtIssuerUnknown => "jwt_issuer_unknown",
            Reason::JwtAlgNotAllowed => "jwt_alg_not_allowed",
            Reason::JwtUnknownKid => "jwt_unknown_kid",
            Reason::JwtBadSignature => "jwt_bad_signature",
            Reason::JwksUnavailable => "jwks_unavailable",
            Reason::JwtWrongAudience => "jwt_wrong_audience",
            Reason::JwtExpired => "jwt_expired",
            Reason::JwtNotYetValid => "jwt_not_yet_valid",
            Reason::JwtIssuedInFuture => "jwt_issued_in_future",
            Reason::JwtPrincipalMissing => "jwt_principal_missing",
            Reason::JwtClaimMismatch => "jwt_claim_mismatch",
            Reason::JwtTenantClaimMissing => "jwt_tenant_claim_missing",
            Reason::JwtTenantNotAllowed => "jwt_tenant_not_allowed",
            Reason::ManagementNeedsIdentity => "management_needs_identity",
            Reason::NotTenantAdmin => "not_tenant_admin",
            Reason::ManagedKeyNotFound => "managed_key_not_found",
            Reason::ManagementBadRequest => "management_bad_request",
            Reason::RouteNotAllowed => "route_not_allowed",
            Reason::ModelNotAllowed => "model_not_allowed",
            Reason::BodyTooLarge => "body_too_large",
            Reason::InvalidJson => "invalid_json",
            Reason::BodyNotUtf8 => "body_not_utf8",
            Reason::DuplicateJsonKey => "duplicate_json_key",
            Reason::NotJsonObject => "not_json_object",
            Reason::ModelMissing => "model_missing",
            Reason::ModelInvalid => "model_invalid",
            Reason::StreamNotBoolean => "stream_not_boolean",
            Reason::UnserializableBody => "unserializable_body",
            Reason::SensitiveDataBlocked => "sensitive_data_blocked",
            Reason::LimitRpm => "limit_rpm",
            Reason::LimitTpm => "limit_tpm",
            Reason::LimitConcurrency => "limit_concurrency",
            Reason::LimitPoolShare => "limit_pool_share",
            Reason::BudgetDay => "budget_day",
            Reason::BudgetMonth => "budget_month",
            Reason::TokenBudgetDay => "token_budget_day",
            Reason::TokenBudgetMonth => "token_budget_month",
            Reason::StoreUnavailable => "store_unavailable",
            Reason::NoEligibleToken => "no_eligible_token",
            Reason::ProviderMismatch => "provider_mismatch",
            Reason::TokenSecretUnavailable => "token_secret_unavailable",
            Reason::AllTokensFailed => "all_tokens_failed",
            Reason::UpstreamBodyFailed => "upstream_body_failed",
            Reason::BadUpstreamHeaders => "bad_upstream_headers",
            Reason::UpstreamTimeout => "upstream_timeout",
            Reason::UpstreamStreamBroken => "upstream_stream_broken",
            Reason::ScrubberUnavailable => "scrubber_unavailable",
            Reason::Unrecognized => "unrecognized",
        }
    }

    /// The status class a refusal answers with, in the imitated provider's shape; `None` for
    /// the two ways a request ends with the provider's own answer. The one place reasons are
    /// grouped: [`decision`](Self::decision), [`is_authentication_failure`](Self::is_authentication_failure)
    /// and the gateway's responses all derive from it.
    pub fn error_class(self) -> Option<ErrorClass> {
        Some(match self {
            Reason::Ok | Reason::ClientDisconnected => return None,
            Reason::UnknownRoute => ErrorClass::NotFound,
            Reason::MethodNotAllowed => ErrorClass::MethodNotAllowed,
            Reason::MissingKey
            | Reason::BadPrefix
            | Reason::BadLength
            | Reason::BadCharset
            | Reason::BadChecksum
            | Reason::UnknownKey
            | Reason::DigestMismatch
            | Reason::UnknownPepperVersion
            | Reason::Canary
            | Reason::Revoked
            | Reason::Suspended
            | Reason::Expired
            | Reason::TenantMissing
            | Reason::TenantDisabled
            | Reason::SourceNotAllowed
            | Reason::JwtMalformed
            | Reason::JwtIssuerUnknown
            | Reason::JwtAlgNotAllowed
            | Reason::JwtUnknownKid
            | Reason::JwtBadSignature
            | Reason::JwksUnavailable
            | Reason::JwtWrongAudience
            | Reason::JwtExpired
            | Reason::JwtNotYetValid
            | Reason::JwtIssuedInFuture
            | Reason::JwtPrincipalMissing
            | Reason::JwtClaimMismatch
            | Reason::JwtTenantClaimMissing
            | Reason::JwtTenantNotAllowed
            | Reason::ManagementNeedsIdentity => ErrorClass::Unauthenticated,
            Reason::RouteNotAllowed | Reason::ModelNotAllowed | Reason::NotTenantAdmin => {
                ErrorClass::Forbidden
            }
            Reason::ManagedKeyNotFound => ErrorClass::NotFound,
            Reason::ManagementBadRequest => ErrorClass::BadRequest,
            Reason::BodyTooLarge => ErrorClass::PayloadTooLarge,
            Reason::InvalidJson
            | Reason::BodyNotUtf8
            | Reason::DuplicateJsonKey
            | Reason::NotJsonObject
            | Reason::ModelMissing
            | Reason::ModelInvalid
            | Reason::StreamNotBoolean
            | Reason::UnserializableBody => ErrorClass::BadRequest,
            Reason::SensitiveDataBlocked => ErrorClass::SensitiveData,
            Reason::LimitRpm
            | Reason::LimitTpm
            | Reason::LimitConcurrency
            | Reason::LimitPoolShare
            | Reason::BudgetDay
            | Reason::BudgetMonth
            | Reason::TokenBudgetDay
            | Reason::TokenBudgetMonth => ErrorClass::RateLimited,
            Reason::StoreUnavailable => ErrorClass::StoreUnavailable,
            Reason::NoEligibleToken
            | Reason::ProviderMismatch
            | Reason::TokenSecretUnavailable
            | Reason::AllTokensFailed
            | Reason::UpstreamBodyFailed
            | Reason::BadUpstreamHeaders
            | Reason::UpstreamStreamBroken
            | Reason::ScrubberUnavailable => ErrorClass::NoUpstreamAvailable,
            Reason::UpstreamTimeout => ErrorClass::UpstreamTimeout,
            Reason::Unrecognized => ErrorClass::Internal,
        })
    }

    /// Allowed (the caller got the provider's answer, or went away while getting it), denied
    /// (the gateway refused), an error (a store, the upstream, or an issuer's key set
    /// failed — the caller may have done nothing wrong), or canary (a planted key was used).
    pub fn decision(self) -> Decision {
        if self == Reason::Canary {
            return Decision::Canary;
        }
        match self.error_class() {
            None => Decision::Allow,
            Some(
                ErrorClass::StoreUnavailable
                | ErrorClass::NoUpstreamAvailable
                | ErrorClass::UpstreamTimeout
                | ErrorClass::Internal,
            ) => Decision::Error,
            // Answered as the uniform 401, but an outage, not a bad credential.
            Some(_) if self == Reason::JwksUnavailable => Decision::Error,
            Some(_) => Decision::Deny,
        }
    }

    /// One of the failures that answer with the uniform 401.
    pub fn is_authentication_failure(self) -> bool {
        self.error_class() == Some(ErrorClass::Unauthenticated)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<LimitKind> for Reason {
    fn from(k: LimitKind) -> Self {
        match k {
            LimitKind::Rpm => Reason::LimitRpm,
            LimitKind::Tpm => Reason::LimitTpm,
            LimitKind::Concurrency => Reason::LimitConcurrency,
            LimitKind::BudgetDay => Reason::BudgetDay,
            LimitKind::BudgetMonth => Reason::BudgetMonth,
            LimitKind::TokensDay => Reason::TokenBudgetDay,
            LimitKind::TokensMonth => Reason::TokenBudgetMonth,
        }
    }
}

impl From<KeyFormatError> for Reason {
    fn from(e: KeyFormatError) -> Self {
        match e {
            KeyFormatError::Missing => Reason::MissingKey,
            KeyFormatError::Prefix => Reason::BadPrefix,
            KeyFormatError::Length => Reason::BadLength,
            KeyFormatError::Charset => Reason::BadCharset,
            KeyFormatError::Checksum => Reason::BadChecksum,
        }
    }
}

impl From<AuthFailure> for Reason {
    fn from(f: AuthFailure) -> Self {
        match f {
            AuthFailure::Format(e) => e.into(),
            AuthFailure::UnknownKey => Reason::UnknownKey,
            AuthFailure::DigestMismatch => Reason::DigestMismatch,
            AuthFailure::UnknownPepperVersion => Reason::UnknownPepperVersion,
            AuthFailure::Canary => Reason::Canary,
            AuthFailure::Revoked => Reason::Revoked,
            AuthFailure::Suspended => Reason::Suspended,
            AuthFailure::Expired => Reason::Expired,
            AuthFailure::TenantMissing => Reason::TenantMissing,
            AuthFailure::TenantDisabled => Reason::TenantDisabled,
            AuthFailure::SourceNotAllowed => Reason::SourceNotAllowed,
        }
    }
}

impl From<JwtFailure> for Reason {
    fn from(f: JwtFailure) -> Self {
        match f {
            JwtFailure::Malformed => Reason::JwtMalformed,
            JwtFailure::IssuerUnknown => Reason::JwtIssuerUnknown,
            JwtFailure::AlgNotAllowed => Reason::JwtAlgNotAllowed,
            JwtFailure::UnknownKid => Reason::JwtUnknownKid,
            JwtFailure::BadSignature => Reason::JwtBadSignature,
            JwtFailure::JwksUnavailable => Reason::JwksUnavailable,
            JwtFailure::WrongAudience => Reason::JwtWrongAudience,
            JwtFailure::Expired => Reason::JwtExpired,
            JwtFailure::NotYetValid => Reason::JwtNotYetValid,
            JwtFailure::IssuedInFuture => Reason::JwtIssuedInFuture,
            JwtFailure::PrincipalMissing => Reason::JwtPrincipalMissing,
            JwtFailure::ClaimMismatch => Reason::JwtClaimMismatch,
            JwtFailure::TenantClaimMissing => Reason::JwtTenantClaimMissing,
            JwtFailure::TenantNotAllowed => Reason::JwtTenantNotAllowed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Reason; 63] = [
        Reason::Ok,
        Reason::ClientDisconnected,
        Reason::UnknownRoute,
        Reason::MethodNotAllowed,
        Reason::MissingKey,
        Reason::BadPrefix,
        Reason::BadLength,
        Reason::BadCharset,
        Reason::BadChecksum,
        Reason::UnknownKey,
        Reason::DigestMismatch,
        Reason::UnknownPepperVersion,
        Reason::Canary,
        Reason::Revoked,
        Reason::Suspended,
        Reason::Expired,
        Reason::TenantMissing,
        Reason::TenantDisabled,
        Reason::SourceNotAllowed,
        Reason::JwtMalformed,
        Reason::JwtIssuerUnknown,
        Reason::JwtAlgNotAllowed,
        Reason::JwtUnknownKid,
        Reason::JwtBadSignature,
        Reason::JwksUnavailable,
        Reason::JwtWrongAudience,
        Reason::JwtExpired,
        Reason::JwtNotYetValid,
        Reason::JwtIssuedInFuture,
        Reason::JwtPrincipalMissing,
        Reason::JwtClaimMismatch,
        Reason::JwtTenantClaimMissing,
        Reason::JwtTenantNotAllowed,
        Reason::RouteNotAllowed,
        Reason::ModelNotAllowed,
        Reason::BodyTooLarge,
        Reason::InvalidJson,
        Reason::BodyNotUtf8,
        Reason::DuplicateJsonKey,
        Reason::NotJsonObject,
        Reason::ModelMissing,
        Reason::ModelInvalid,
        Reason::StreamNotBoolean,
        Reason::UnserializableBody,
        Reason::SensitiveDataBlocked,
        Reason::LimitRpm,
        Reason::LimitTpm,
        Reason::LimitConcurrency,
        Reason::LimitPoolShare,
        Reason::BudgetDay,
        Reason::BudgetMonth,
        Reason::TokenBudgetDay,
        Reason::TokenBudgetMonth,
        Reason::StoreUnavailable,
        Reason::NoEligibleToken,
        Reason::ProviderMismatch,
        Reason::TokenSecretUnavailable,
        Reason::AllTokensFailed,
        Reason::UpstreamBodyFailed,
        Reason::BadUpstreamHeaders,
        Reason::UpstreamTimeout,
        Reason::UpstreamStreamBroken,
        Reason::ScrubberUnavailable,
    ];

    #[test]
    fn serialized_form_is_the_audit_string() {
        for r in ALL {
            let s = serde_json::to_string(&r).unwrap();
            assert_eq!(s, format!("\"{}\"", r.as_str()));
            let back: Reason = serde_json::from_str(&s).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn schema_strings_of_the_first_release_are_kept() {
        // Values audit lines already carry; a rename would break every reader of old logs.
        for (s, r) in [
            ("ok", Reason::Ok),
            ("bad_checksum", Reason::BadChecksum),
            ("unknown_key", Reason::UnknownKey),
            ("source_not_allowed", Reason::SourceNotAllowed),
            ("model_not_allowed", Reason::ModelNotAllowed),
            ("sensitive_data_blocked", Reason::SensitiveDataBlocked),
            ("store_unavailable", Reason::StoreUnavailable),
            ("all_tokens_failed", Reason::AllTokensFailed),
            ("upstream_stream_broken", Reason::UpstreamStreamBroken),
        ] {
            assert_eq!(
                serde_json::from_str::<Reason>(&format!("\"{s}\"")).unwrap(),
                r
            );
        }
    }

    #[test]
    fn a_reason_from_a_newer_writer_still_parses() {
        let r: Reason = serde_json::from_str("\"quota_from_the_future\"").unwrap();
        assert_eq!(r, Reason::Unrecognized);
    }

    #[test]
    fn every_key_format_failure_is_an_authentication_failure() {
        for e in [
            KeyFormatError::Missing,
            KeyFormatError::Prefix,
            KeyFormatError::Length,
            KeyFormatError::Charset,
            KeyFormatError::Checksum,
        ] {
            assert!(Reason::from(AuthFailure::Format(e)).is_authentication_failure());
        }
        assert_eq!(
            ALL.iter().filter(|r| r.is_authentication_failure()).count(),
            29
        );
    }

    #[test]
    fn a_canary_is_the_uniform_401_with_its_own_decision() {
        let r = Reason::from(AuthFailure::Canary);
        assert_eq!(r, Reason::Canary);
        assert_eq!(r.as_str(), "canary");
        assert_eq!(r.error_class(), Reason::UnknownKey.error_class());
        assert!(r.is_authentication_failure());
        assert_eq!(r.decision(), Decision::Canary);
        assert_eq!(
            ALL.iter()
                .filter(|r| r.decision() == Decision::Canary)
                .count(),
            1
        );
    }

    #[test]
    fn every_jwt_failure_is_an_authentication_failure_and_only_an_outage_is_an_error() {
        use crate::identity::JwtFailure as F;
        for f in [
            F::Malformed,
            F::IssuerUnknown,
            F::AlgNotAllowed,
            F::UnknownKid,
            F::BadSignature,
            F::JwksUnavailable,
            F::WrongAudience,
            F::Expired,
            F::NotYetValid,
            F::IssuedInFuture,
            F::PrincipalMissing,
            F::ClaimMismatch,
            F::TenantClaimMissing,
            F::TenantNotAllowed,
        ] {
            let r = Reason::from(f);
            assert!(r.is_authentication_failure(), "{r}");
            let expected = if f == F::JwksUnavailable {
                Decision::Error
            } else {
                Decision::Deny
            };
            assert_eq!(r.decision(), expected, "{r}");
        }
    }
}
