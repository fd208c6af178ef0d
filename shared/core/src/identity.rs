//! OIDC/JWT callers: the trusted-issuer record, telling a bearer value's shape, and the checks
//! on a token's claims once its signature verified. Pure: no network, no clock of its own and
//! no signature verification — the gateway verifies JWS signatures with the `jsonwebtoken`
//! crate and hands the verified claims here. Never logs a token.
//!
//! Order of the checks (the gateway's, then this module's): shape → header and unverified
//! `iss` ([`peek`]) → issuer record → algorithm allow-list → key by `kid` → signature →
//! [`validate_claims`]: `iss`, `aud`, `exp`, `nbf`, `iat` (each with [`CLOCK_LEEWAY_MS`]),
//! principal claim, required claims, tenant mapping. Every failure is the same 401 to the
//! caller; the [`JwtFailure`] only reaches the audit line.

use crate::audit::bounded;
use crate::auth::hex;
use crate::clock::EpochMs;
use crate::key::KeyEnv;
use crate::limits::Limits;
use crate::records::{ClientKeyRecord, Policy};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Clock skew tolerated on `exp`, `nbf` and `iat`: one minute, the common default of OIDC
/// libraries. A token is accepted until `exp + leeway`, from `nbf - leeway`, and refused when
/// `iat` is more than the leeway in the future.
pub const CLOCK_LEEWAY_MS: u64 = 60_000;

/// The longest bearer value treated as a JWT (real ID tokens are 1–4 KB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The claim naming the principal when the issuer record does not say otherwise.
pub const DEFAULT_PRINCIPAL_CLAIM: &str = "sub";

/// Signature algorithms an issuer may be trusted with. Asymmetric only: `none` and the HMAC
/// algorithms have no variant, so no record can allow them and a token naming them is refused
/// before any key is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JwsAlg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl JwsAlg {
    /// The header's `alg` value, if it is one of ours (exact spelling, as RFC 7518 requires).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "RS256" => JwsAlg::RS256,
            "RS384" => JwsAlg::RS384,
            "RS512" => JwsAlg::RS512,
            "PS256" => JwsAlg::PS256,
            "PS384" => JwsAlg::PS384,
            "PS512" => JwsAlg::PS512,
            "ES256" => JwsAlg::ES256,
            "ES384" => JwsAlg::ES384,
            "EdDSA" => JwsAlg::EdDSA,
            _ => return None,
        })
    }
}

/// Where the issuer's signing keys are published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JwksLocation {
    /// An explicit JWK Set URL (`jwks_uri`).
    Url { url: String },
    /// The issuer's OpenID discovery document ([`discovery_url`]): its `issuer` must equal the
    /// record's exactly, and its `jwks_uri` names the JWK Set ([`jwks_uri_from_discovery`]).
    Discovery,
}

impl JwksLocation {
    /// The first document the gateway fetches for `issuer`: the JWK Set itself, or the
    /// discovery document that names it. Caches and refresh limits are keyed by it.
    pub fn source_url(&self, issuer: &str) -> String {
        match self {
            JwksLocation::Url { url } => url.clone(),
            JwksLocation::Discovery => discovery_url(issuer),
        }
    }
}

/// `{issuer}/.well-known/openid-configuration`, the issuer's trailing `/` removed first
/// (OpenID Connect Discovery 1.0, section 4).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Why a discovery document cannot be used. Each one fails the issuer's callers closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("the discovery document is not a JSON object")]
    NotJson,
    /// OpenID Connect Discovery requires the document's `issuer` to be exactly the issuer
    /// it was fetched for; anything else could hand over another issuer's keys.
    #[error("the discovery document names another issuer")]
    IssuerMismatch,
    #[error("the discovery document has no jwks_uri")]
    NoJwksUri,
    #[error("the discovery document's jwks_uri is not https (http only for localhost)")]
    JwksUriNotAllowed,
}

/// The JWK Set URL a discovery document names, after checking that it is `issuer`'s own
/// document and that the URL is one tollgate may fetch ([`is_acceptable_url`]).
pub fn jwks_uri_from_discovery(issuer: &str, doc: &str) -> Result<String, DiscoveryError> {
    let v: Value = serde_json::from_str(doc).map_err(|_| DiscoveryError::NotJson)?;
    if !v.is_object() {
        return Err(DiscoveryError::NotJson);
    }
    if v.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(DiscoveryError::IssuerMismatch);
    }
    let uri = v
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or(DiscoveryError::NoJwksUri)?;
    if !is_acceptable_url(uri) {
        return Err(DiscoveryError::JwksUriNotAllowed);
    }
    Ok(uri.to_owned())
}

/// How a verified token names its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TenantMapping {
    /// Every token of this issuer belongs to one tenant.
    Fixed { tenant_id: String },
    /// The claim's string value names the tenant, which must exist (and be enabled). With a
    /// non-empty `allowed`, the value must also be one of these (an issuer anyone can get
    /// tokens from, such as a public CI provider, must not reach every tenant).
    Claim {
        claim: String,
        #[serde(default)]
        allowed: Vec<String>,
    },
}

/// A condition a verified token must meet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClaimRule {
    /// The claim is a string equal to `value`.
    Equals { claim: String, value: String },
    /// The claim is an array holding the string `value`, or a space-separated string (OAuth
    /// `scope`) with `value` as one of its words.
    Contains { claim: String, value: String },
}

impl ClaimRule {
    /// Whether verified `claims` meet this rule.
    pub fn holds(&self, claims: &Value) -> bool {
        match self {
            ClaimRule::Equals { claim, value } => {
                claims.get(claim).and_then(Value::as_str) == Some(value.as_str())
            }
            ClaimRule::Contains { claim, value } => match claims.get(claim) {
                Some(Value::Array(items)) => {
                    items.iter().any(|v| v.as_str() == Some(value.as_str()))
                }
                Some(Value::String(s)) => s.split(' ').any(|w| w == value),
                _ => false,
            },
        }
    }
}

/// The policy every caller of an issuer runs with: the fields a client key carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IssuerPolicy {
    /// Empty = any source network.
    #[serde(default)]
    pub allowed_cidrs: Vec<IpNet>,
    /// Empty = any model. Entries are exact names or `prefix*`.
    #[serde(default)]
    pub allowed_models: Vec<String>,
    /// Empty = every route.
    #[serde(default)]
    pub allowed_routes: Vec<String>,
    #[serde(default)]
    pub model_pools: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlp_policy: Option<Policy>,
    /// Per principal (issuer + subject), layered over the tenant's per-key limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

/// An OIDC issuer the operator trusts, keyed by its exact `iss` value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuerRecord {
    /// The exact `iss` value (for example `https://token.actions.githubusercontent.com`).
    pub issuer: String,
    /// A token's `aud` must name at least one of these. Empty accepts no token.
    pub audiences: Vec<String>,
    pub jwks: JwksLocation,
    /// Empty accepts no token.
    pub algorithms: Vec<JwsAlg>,
    pub tenant: TenantMapping,
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    #[serde(default)]
    pub required_claims: Vec<ClaimRule>,
    #[serde(default)]
    pub policy: IssuerPolicy,
    /// The claim rule that makes a token of this issuer a tenant admin: allowed on the tenant
    /// management API (`/tollgate/v1/…`) for the one tenant the token maps to. `None`: no
    /// token of this issuer is ever an admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_admin: Option<ClaimRule>,
    pub created_at: EpochMs,
}

fn default_principal_claim() -> String {
    DEFAULT_PRINCIPAL_CLAIM.to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerRecordError {
    #[error("issuer must be an https URL (http only for localhost), got {0:?}")]
    IssuerUrl(String),
    #[error("JWKS URL must be https (http only for localhost), got {0:?}")]
    JwksUrl(String),
    #[error("at least one audience is required")]
    NoAudience,
    #[error("at least one algorithm is required")]
    NoAlgorithm,
    #[error("the tenant mapping names an empty tenant or claim")]
    EmptyTenantMapping,
}

/// A URL tollgate may fetch issuer documents from: `https://…`, or plain `http://` to
/// localhost / loopback only (development and tests).
pub fn is_acceptable_url(u: &str) -> bool {
    let local = ["http://localhost", "http://127.0.0.1", "http://[::1]"];
    let rest = |p: &str| {
        u.strip_prefix(p)
            .map(|r| r.is_empty() || r.starts_with(['/', ':']))
    };
    u.strip_prefix("https://").is_some_and(|h| !h.is_empty())
        || local.iter().any(|p| rest(p) == Some(true))
}

impl IssuerRecord {
    /// A record with the `sub` claim as principal, no required claims and an unrestricted
    /// policy. Set more with struct update syntax.
    pub fn new(
        issuer: impl Into<String>,
        audiences: Vec<String>,
        jwks_url: impl Into<String>,
        algorithms: Vec<JwsAlg>,
        tenant: TenantMapping,
        created_at: EpochMs,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            jwks: JwksLocation::Url {
                url: jwks_url.into(),
            },
            algorithms,
            tenant,
            principal_claim: default_principal_claim(),
            required_claims: Vec::new(),
            policy: IssuerPolicy::default(),
            tenant_admin: None,
            created_at,
        }
    }

    /// What an operator tool checks before storing a record.
    pub fn validate(&self) -> Result<(), IssuerRecordError> {
        if !is_acceptable_url(&self.issuer) {
            return Err(IssuerRecordError::IssuerUrl(self.issuer.clone()));
        }
        if let JwksLocation::Url { url } = &self.jwks
            && !is_acceptable_url(url)
        {
            return Err(IssuerRecordError::JwksUrl(url.clone()));
        }
        if self.audiences.iter().all(|a| a.is_empty()) {
            return Err(IssuerRecordError::NoAudience);
        }
        if self.algorithms.is_empty() {
            return Err(IssuerRecordError::NoAlgorithm);
        }
        let empty = match &self.tenant {
            TenantMapping::Fixed { tenant_id } => tenant_id.is_empty(),
            TenantMapping::Claim { claim, .. } => claim.is_empty(),
        };
        if empty {
            return Err(IssuerRecordError::EmptyTenantMapping);
        }
        Ok(())
    }
}

/// What kind of credential a bearer value is, judged by shape alone (no store call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerShape {
    /// `tgk_…`: a tollgate key (its own parser checks the rest).
    Key,
    /// Three base64url segments separated by dots: a JWS compact serialization. The last
    /// segment may be empty (an unsigned `alg: none` token is refused later, by name).
    Jwt,
    /// Anything else: refused as a malformed key.
    Other,
}

fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn caller_shape(raw: &str) -> CallerShape {
    if raw.starts_with("tgk_") {
        return CallerShape::Key;
    }
    if raw.len() > MAX_TOKEN_BYTES {
        return CallerShape::Other;
    }
    let mut parts = raw.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None)
            if !h.is_empty() && !p.is_empty() && [h, p, s].iter().all(|x| is_b64url(x)) =>
        {
            CallerShape::Jwt
        }
        _ => CallerShape::Other,
    }
}

/// Why a JWT caller was refused. Every variant is the same 401 to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtFailure {
    /// Not decodable: bad base64url or JSON, no `exp`, or a non-string principal or issuer.
    Malformed,
    /// `iss` names no trusted issuer (or a verified token's `iss` differs from the record's).
    IssuerUnknown,
    /// The header's `alg` is not in the issuer's allow-list (`none`, HMAC, anything unlisted).
    AlgNotAllowed,
    /// No key in the issuer's JWK Set has the token's `kid`, even after one refresh.
    UnknownKid,
    /// The signature does not verify with the issuer's key (or the key does not fit `alg`).
    BadSignature,
    /// The JWK Set could not be fetched: fail closed.
    JwksUnavailable,
    WrongAudience,
    Expired,
    NotYetValid,
    IssuedInFuture,
    /// The issuer's principal claim is missing or empty.
    PrincipalMissing,
    /// A required claim is missing or does not match.
    ClaimMismatch,
    /// The tenant claim is missing or not a string.
    TenantClaimMissing,
    /// The tenant claim names a tenant outside the issuer's `allowed` list.
    TenantNotAllowed,
}

/// What the header and payload say before anything is verified. Used only to find the issuer
/// record and key; never trusted for a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// The header's `alg` if it is one of [`JwsAlg`]; `None` for `none`, HMAC and the rest.
    pub alg: Option<JwsAlg>,
    pub kid: Option<String>,
    pub iss: String,
}

fn segment_json(seg: &str) -> Result<Value, JwtFailure> {
    let bytes = URL_SAFE_NO_PAD
        .decode(seg)
        .map_err(|_| JwtFailure::Malformed)?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| JwtFailure::Malformed)?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(JwtFailure::Malformed)
    }
}

/// Reads the header (`alg`, `kid`) and the payload's `iss` of a JWT-shaped value.
pub fn peek(token: &str) -> Result<Unverified, JwtFailure> {
    if caller_shape(token) != CallerShape::Jwt {
        return Err(JwtFailure::Malformed);
    }
    let mut parts = token.split('.');
    let header = segment_json(parts.next().unwrap_or_default())?;
    let payload = segment_json(parts.next().unwrap_or_default())?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => JwsAlg::parse(a),
        _ => return Err(JwtFailure::Malformed),
    };
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtFailure::Malformed),
    };
    let iss = match payload.get("iss") {
        Some(Value::String(i)) => i.clone(),
        None => return Err(JwtFailure::IssuerUnknown),
        Some(_) => return Err(JwtFailure::Malformed),
    };
    Ok(Unverified { alg, kid, iss })
}

/// A verified caller: who, which tenant, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub tenant_id: String,
    pub expires_at: EpochMs,
}

/// A NumericDate claim (seconds, possibly fractional) in epoch milliseconds.
fn numeric_date_ms(claims: &Value, name: &str) -> Result<Option<EpochMs>, JwtFailure> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(s) => Ok(Some(s.saturating_mul(1000))),
            None => match n.as_f64() {
                Some(f) if f.is_finite() && f >= 0.0 => Ok(Some((f * 1000.0) as u64)),
                _ => Err(JwtFailure::Malformed),
            },
        },
        Some(_) => Err(JwtFailure::Malformed),
    }
}

/// The principal's string value of `name`, if present and non-empty.
pub fn string_claim<'c>(claims: &'c Value, name: &str) -> Option<&'c str> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The checks on a token whose signature verified with `issuer`'s key, at `now`.
pub fn validate_claims(
    issuer: &IssuerRecord,
    claims: &Value,
    now: EpochMs,
) -> Result<Identity, JwtFailure> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
        return Err(JwtFailure::IssuerUnknown);
    }
    let aud_ok = |a: &str| !a.is_empty() && issuer.audiences.iter().any(|x| x == a);
    let audience = match claims.get("aud") {
        Some(Value::String(a)) => aud_ok(a),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(aud_ok),
        _ => false,
    };
    if !audience {
        return Err(JwtFailure::WrongAudience);
    }
    let Some(exp) = numeric_date_ms(claims, "exp")? else {
        return Err(JwtFailure::Malformed);
    };
    if now >= exp.saturating_add(CLOCK_LEEWAY_MS) {
        return Err(JwtFailure::Expired);
    }
    if let Some(nbf) = numeric_date_ms(claims, "nbf")?
        && nbf > now.saturating_add(CLOCK_LEEWAY_MS)
    {
        return Err(JwtFailure::NotYetValid);
    }
    if let Some(iat) = numeric_date_ms(claims, "iat")?
        && iat > now.saturating_add(CLOCK_LEEWAY_MS)
    {
        return Err(JwtFailure::IssuedInFuture);
    }
    let subject = string_claim(claims, &issuer.principal_claim)
        .ok_or(JwtFailure::PrincipalMissing)?
        .to_owned();
    if !issuer.required_claims.iter().all(|r| r.holds(claims)) {
        return Err(JwtFailure::ClaimMismatch);
    }
    let tenant_id = match &issuer.tenant {
        TenantMapping::Fixed { tenant_id } => tenant_id.clone(),
        TenantMapping::Claim { claim, allowed } => {
            let t = string_claim(claims, claim).ok_or(JwtFailure::TenantClaimMissing)?;
            if !allowed.is_empty() && !allowed.iter().any(|a| a == t) {
                return Err(JwtFailure::TenantNotAllowed);
            }
            t.to_owned()
        }
    };
    Ok(Identity {
        subject,
        tenant_id,
        expires_at: exp,
    })
}

/// Whether a verified token of `issuer` carries the issuer's tenant-admin role (for the one
/// tenant the token maps to). Never true for an issuer without a `tenant_admin` rule.
pub fn is_tenant_admin(issuer: &IssuerRecord, claims: &Value) -> bool {
    issuer
        .tenant_admin
        .as_ref()
        .is_some_and(|rule| rule.holds(claims))
}

/// The id a JWT principal's limits and audit lines are kept under: `jwt-` and 20 hex digits
/// of SHA-256(issuer, NUL, subject). Never a valid key id (those are 12 base62 characters),
/// stable across requests and instances, and it does not reveal the subject.
pub fn principal_key_id(issuer: &str, subject: &str) -> String {
    let mut h = Sha256::new();
    h.update(issuer.as_bytes());
    h.update([0u8]);
    h.update(subject.as_bytes());
    let mut id = hex(&h.finalize());
    id.truncate(20);
    format!("jwt-{id}")
}

/// The record every later stage reads for a verified JWT caller: the issuer's policy, the
/// tenant the token named, the subject as owner, valid until the token expires. It has no
/// digest and is never stored.
pub fn principal_record(issuer: &IssuerRecord, id: &Identity, now: EpochMs) -> ClientKeyRecord {
    let p = &issuer.policy;
    ClientKeyRecord {
        name: bounded(&issuer.issuer),
        expires_at: Some(id.expires_at),
        allowed_cidrs: p.allowed_cidrs.clone(),
        allowed_models: p.allowed_models.clone(),
        allowed_routes: p.allowed_routes.clone(),
        model_pools: p.model_pools.clone(),
        dlp_policy: p.dlp_policy.clone(),
        limits: p.limits.clone(),
        ..ClientKeyRecord::new(
            principal_key_id(&issuer.issuer, &id.subject),
            KeyEnv::Live,
            "",
            id.tenant_id.clone(),
            bounded(&id.subject),
            (String::new(), 0),
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://idp.example.test";
    const NOW: EpochMs = 1_800_000_000_000;

    fn issuer() -> IssuerRecord {
        IssuerRecord::new(
            ISS,
            vec!["tollgate".into()],
            "https://idp.example.test/jwks",
            vec![JwsAlg::RS256, JwsAlg::ES256],
            TenantMapping::Fixed {
                tenant_id: "acme".into(),
            },
            0,
        )
    }

    fn claims() -> Value {
        json!({"iss": ISS, "aud": "tollgate", "sub": "svc-1", "exp": NOW / 1000 + 300,
               "iat": NOW / 1000, "nbf": NOW / 1000})
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn shape_tells_keys_jwts_and_everything_else_apart() {
        assert_eq!(caller_shape("tgk_test_abc"), CallerShape::Key);
        assert_eq!(caller_shape("eyJh.eyJi.c2ln"), CallerShape::Jwt);
        assert_eq!(caller_shape("eyJh.eyJi."), CallerShape::Jwt);
        for other in [
            "", "sk-abc", "a.b", "a.b.c.d", ".b.c", "a..c", "a.b+.c", "a.b.c=", "a b.c.d",
        ] {
            assert_eq!(caller_shape(other), CallerShape::Other, "{other:?}");
        }
        let long = format!("{}.b.c", "a".repeat(MAX_TOKEN_BYTES));
        assert_eq!(caller_shape(&long), CallerShape::Other);
    }

    #[test]
    fn peek_reads_alg_kid_and_iss_and_names_none_and_hmac_as_not_ours() {
        let p = json!({"iss": ISS});
        let t = |h: Value| format!("{}.{}.", b64(&h), b64(&p));
        let u = peek(&t(json!({"alg": "RS256", "kid": "k1"}))).unwrap();
        assert_eq!(
            u,
            Unverified {
                alg: Some(JwsAlg::RS256),
                kid: Some("k1".into()),
                iss: ISS.into()
            }
        );
        for alg in ["none", "HS256", "rs256", "ES512"] {
            assert_eq!(peek(&t(json!({"alg": alg}))).unwrap().alg, None, "{alg}");
        }
        assert_eq!(peek(&t(json!({}))), Err(JwtFailure::Malformed));
        assert_eq!(
            peek(&t(json!({"alg": "RS256", "kid": 3}))),
            Err(JwtFailure::Malformed)
        );
        let no_iss = format!("{}.e30.x", b64(&json!({"alg": "RS256"})));
        assert_eq!(peek(&no_iss), Err(JwtFailure::IssuerUnknown));
        assert_eq!(peek("bm90IGpzb24.e30.x"), Err(JwtFailure::Malformed));
        assert_eq!(peek("W10.e30.x"), Err(JwtFailure::Malformed));
    }

    #[test]
    fn valid_claims_yield_subject_tenant_and_expiry() {
        let id = validate_claims(&issuer(), &claims(), NOW).unwrap();
        assert_eq!(
            id,
            Identity {
                subject: "svc-1".into(),
                tenant_id: "acme".into(),
                expires_at: NOW + 300_000
            }
        );
    }

    #[test]
    fn time_checks_hold_at_the_leeway_boundaries() {
        let at = |name: &str, secs: u64| {
            let mut c = claims();
            c[name] = json!(secs);
            validate_claims(&issuer(), &c, NOW).map(|_| ())
        };
        let now_s = NOW / 1000;
        let leeway_s = CLOCK_LEEWAY_MS / 1000;
        // exp: accepted while now < exp + leeway.
        assert_eq!(at("exp", now_s - leeway_s + 1), Ok(()));
        assert_eq!(at("exp", now_s - leeway_s), Err(JwtFailure::Expired));
        // nbf and iat: accepted up to now + leeway.
        assert_eq!(at("nbf", now_s + leeway_s), Ok(()));
        assert_eq!(
            at("nbf", now_s + leeway_s + 1),
            Err(JwtFailure::NotYetValid)
        );
        assert_eq!(at("iat", now_s + leeway_s), Ok(()));
        assert_eq!(
            at("iat", now_s + leeway_s + 1),
            Err(JwtFailure::IssuedInFuture)
        );
        let mut c = claims();
        c["exp"] = json!((NOW as f64) / 1000.0 + 0.5);
        assert!(validate_claims(&issuer(), &c, NOW).is_ok());
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            validate_claims(&issuer(), &c, NOW),
            Err(JwtFailure::Malformed)
        );
        c["exp"] = json!("tomorrow");
        assert_eq!(
            validate_claims(&issuer(), &c, NOW),
            Err(JwtFailure::Malformed)
        );
    }

    #[test]
    fn issuer_and_audience_must_match_exactly() {
        let check = |f: &dyn Fn(&mut Value)| {
            let mut c = claims();
            f(&mut c);
            validate_claims(&issuer(), &c, NOW).map(|_| ())
        };
        assert_eq!(
            check(&|c| c["iss"] = json!("https://idp.example.test/")),
            Err(JwtFailure::IssuerUnknown)
        );
        assert_eq!(
            check(&|c| c["aud"] = json!("other")),
            Err(JwtFailure::WrongAudience)
        );
        assert_eq!(check(&|c| c["aud"] = json!(["other", "tollgate"])), Ok(()));
        assert_eq!(
            check(&|c| c["aud"] = json!([])),
            Err(JwtFailure::WrongAudience)
        );
        assert_eq!(
            check(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            Err(JwtFailure::WrongAudience)
        );
        let mut no_aud = issuer();
        no_aud.audiences.clear();
        assert_eq!(
            validate_claims(&no_aud, &claims(), NOW),
            Err(JwtFailure::WrongAudience)
        );
    }

    #[test]
    fn principal_required_claims_and_tenant_claim() {
        let mut iss = issuer();
        iss.principal_claim = "email".into();
        assert_eq!(
            validate_claims(&iss, &claims(), NOW),
            Err(JwtFailure::PrincipalMissing)
        );
        let mut c = claims();
        c["email"] = json!("dev@acme.test");
        assert_eq!(
            validate_claims(&iss, &c, NOW).unwrap().subject,
            "dev@acme.test"
        );

        let mut iss = issuer();
        iss.required_claims = vec![
            ClaimRule::Equals {
                claim: "repository".into(),
                value: "acme/app".into(),
            },
            ClaimRule::Contains {
                claim: "groups".into(),
                value: "llm-users".into(),
            },
        ];
        let mut c = claims();
        c["repository"] = json!("acme/app");
        c["groups"] = json!(["staff", "llm-users"]);
        assert!(validate_claims(&iss, &c, NOW).is_ok());
        c["groups"] = json!("staff llm-users");
        assert!(validate_claims(&iss, &c, NOW).is_ok());
        c["groups"] = json!("staff llm-users-old");
        assert_eq!(
            validate_claims(&iss, &c, NOW),
            Err(JwtFailure::ClaimMismatch)
        );
        c["groups"] = json!(["llm-users"]);
        c["repository"] = json!("acme/app-fork");
        assert_eq!(
            validate_claims(&iss, &c, NOW),
            Err(JwtFailure::ClaimMismatch)
        );

        let mut iss = issuer();
        iss.tenant = TenantMapping::Claim {
            claim: "org".into(),
            allowed: vec!["acme".into(), "globex".into()],
        };
        assert_eq!(
            validate_claims(&iss, &claims(), NOW),
            Err(JwtFailure::TenantClaimMissing)
        );
        let mut c = claims();
        c["org"] = json!("globex");
        assert_eq!(validate_claims(&iss, &c, NOW).unwrap().tenant_id, "globex");
        c["org"] = json!("initech");
        assert_eq!(
            validate_claims(&iss, &c, NOW),
            Err(JwtFailure::TenantNotAllowed)
        );
        c["org"] = json!(["acme"]);
        assert_eq!(
            validate_claims(&iss, &c, NOW),
            Err(JwtFailure::TenantClaimMissing)
        );
    }

    #[test]
    fn principal_record_carries_the_issuer_policy_and_a_derived_id() {
        let mut iss = issuer();
        iss.policy.allowed_models = vec!["gpt-4o-mini".into()];
        iss.policy.allowed_cidrs = vec!["10.0.0.0/8".parse().unwrap()];
        let id = validate_claims(&iss, &claims(), NOW).unwrap();
        let rec = principal_record(&iss, &id, NOW);
        assert_eq!(rec.allowed_models, vec!["gpt-4o-mini".to_owned()]);
        assert_eq!(rec.allowed_cidrs.len(), 1);
        assert_eq!(rec.tenant_id, "acme");
        assert_eq!(rec.owner, "svc-1");
        assert_eq!(rec.expires_at, Some(NOW + 300_000));
        assert!(rec.key_id.starts_with("jwt-") && rec.key_id.len() == 24);
        assert_eq!(rec.key_id, principal_key_id(ISS, "svc-1"));
        assert_ne!(rec.key_id, principal_key_id(ISS, "svc-2"));
        assert_ne!(rec.key_id, principal_key_id("https://other.test", "svc-1"));
        // The separator keeps (issuer, subject) pairs apart.
        assert_ne!(principal_key_id("ab", "c"), principal_key_id("a", "bc"));
    }

    #[test]
    fn issuer_records_round_trip_and_validate() {
        let mut iss = issuer();
        iss.tenant = TenantMapping::Claim {
            claim: "org".into(),
            allowed: vec![],
        };
        let v = serde_json::to_value(&iss).unwrap();
        assert_eq!(v["jwks"]["kind"], "url");
        assert_eq!(v["algorithms"], json!(["RS256", "ES256"]));
        let back: IssuerRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, iss);
        assert_eq!(iss.validate(), Ok(()));
        let minimal: IssuerRecord = serde_json::from_value(json!({
            "issuer": ISS, "audiences": ["x"], "jwks": {"kind": "url", "url": "https://i/j"},
            "algorithms": ["EdDSA"], "tenant": {"kind": "fixed", "tenant_id": "acme"},
            "created_at": 1
        }))
        .unwrap();
        assert_eq!(minimal.principal_claim, "sub");
        assert!(
            serde_json::from_value::<IssuerRecord>(json!({
                "issuer": ISS, "audiences": ["x"], "jwks": {"kind": "url", "url": "https://i/j"},
                "algorithms": ["HS256"], "tenant": {"kind": "fixed", "tenant_id": "acme"},
                "created_at": 1
            }))
            .is_err(),
            "no record can allow an HMAC algorithm"
        );
        let bad = |f: &dyn Fn(&mut IssuerRecord)| {
            let mut r = issuer();
            f(&mut r);
            r.validate()
        };
        assert!(matches!(
            bad(&|r| r.issuer = "http://idp.example.test".into()),
            Err(IssuerRecordError::IssuerUrl(_))
        ));
        assert_eq!(bad(&|r| r.issuer = "http://localhost:8080".into()), Ok(()));
        assert!(matches!(
            bad(&|r| r.issuer = "http://localhost.evil.test".into()),
            Err(IssuerRecordError::IssuerUrl(_))
        ));
        assert!(matches!(
            bad(&|r| r.jwks = JwksLocation::Url {
                url: "ftp://x".into()
            }),
            Err(IssuerRecordError::JwksUrl(_))
        ));
        assert_eq!(
            bad(&|r| r.audiences.clear()),
            Err(IssuerRecordError::NoAudience)
        );
        assert_eq!(
            bad(&|r| r.algorithms.clear()),
            Err(IssuerRecordError::NoAlgorithm)
        );
    }

    #[test]
    fn discovery_names_the_jwks_only_for_the_same_issuer() {
        assert_eq!(
            discovery_url("https://idp.example.test/"),
            "https://idp.example.test/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://login.example.test/tenant-1/v2.0"),
            "https://login.example.test/tenant-1/v2.0/.well-known/openid-configuration"
        );
        let doc = |v: Value| v.to_string();
        assert_eq!(
            jwks_uri_from_discovery(
                ISS,
                &doc(json!({"issuer": ISS, "jwks_uri": "https://keys.example.test/jwks"}))
            ),
            Ok("https://keys.example.test/jwks".to_owned())
        );
        assert_eq!(
            jwks_uri_from_discovery(
                ISS,
                &doc(json!({"issuer": "https://evil.test", "jwks_uri": "https://evil.test/k"}))
            ),
            Err(DiscoveryError::IssuerMismatch)
        );
        // A trailing slash is another issuer (exact match, as for `iss`).
        assert_eq!(
            jwks_uri_from_discovery(
                ISS,
                &doc(json!({"issuer": format!("{ISS}/"), "jwks_uri": "https://k.test/j"}))
            ),
            Err(DiscoveryError::IssuerMismatch)
        );
        assert_eq!(
            jwks_uri_from_discovery(ISS, &doc(json!({"issuer": ISS}))),
            Err(DiscoveryError::NoJwksUri)
        );
        assert_eq!(
            jwks_uri_from_discovery(
                ISS,
                &doc(json!({"issuer": ISS, "jwks_uri": "http://keys.example.test/jwks"}))
            ),
            Err(DiscoveryError::JwksUriNotAllowed)
        );
        assert_eq!(
            jwks_uri_from_discovery(ISS, "[1]"),
            Err(DiscoveryError::NotJson)
        );
        assert_eq!(
            jwks_uri_from_discovery(ISS, "<html>"),
            Err(DiscoveryError::NotJson)
        );
        // A discovery record validates without a JWKS URL and serializes as its kind alone.
        let mut iss = issuer();
        iss.jwks = JwksLocation::Discovery;
        assert_eq!(iss.validate(), Ok(()));
        let v = serde_json::to_value(&iss).unwrap();
        assert_eq!(v["jwks"], json!({"kind": "discovery"}));
        assert_eq!(serde_json::from_value::<IssuerRecord>(v).unwrap(), iss);
        assert_eq!(
            iss.jwks.source_url(ISS),
            "https://idp.example.test/.well-known/openid-configuration"
        );
    }

    #[test]
    fn only_a_configured_rule_makes_a_tenant_admin() {
        let mut c = claims();
        c["groups"] = json!(["dev", "tollgate-admins"]);
        let mut iss = issuer();
        assert!(!is_tenant_admin(&iss, &c), "no rule, no admin");
        iss.tenant_admin = Some(ClaimRule::Contains {
            claim: "groups".into(),
            value: "tollgate-admins".into(),
        });
        assert!(is_tenant_admin(&iss, &c));
        c["groups"] = json!(["dev"]);
        assert!(!is_tenant_admin(&iss, &c));
        let v = serde_json::to_value(&iss).unwrap();
        assert_eq!(v["tenant_admin"]["op"], "contains");
        assert_eq!(serde_json::from_value::<IssuerRecord>(v).unwrap(), iss);
        assert!(
            serde_json::to_value(issuer())
                .unwrap()
                .get("tenant_admin")
                .is_none()
        );
    }
}
