//! Stage 2c: limits. After the request is known to be acceptable (authenticated, in scope,
//! clean) and before a token is chosen, the request's worst case — estimated prompt tokens
//! plus its output ceiling, priced — is reserved against the key's and the tenant's limits in
//! one conditional write; settlement replaces it with the reported usage. A refusal is a 429
//! naming the caller's own limit; a store failure is a 503 (fail closed).

use crate::authenticate::Principal;
use crate::context::RequestCtx;
use crate::request::Parsed;
use crate::respond::{LimitHeaders, Refusal};
use crate::state::Gateway;
use crate::state::limits::LimitError;
use tollgate_core::limits::{Ask, Limits};
use tollgate_core::pricing::worst_case;
use tollgate_core::reason::Reason;

/// The subjects a request counts against, with their limits (only those that have any).
pub(crate) fn subjects(p: &Principal) -> Vec<(String, Limits)> {
    let mut out = Vec::with_capacity(2);
    let key = p.rec.effective_limits(&p.tenant);
    if !key.is_empty() {
        out.push((format!("key#{}", p.rec.key_id), key));
    }
    if let Some(t) = p.tenant.limits.as_ref().filter(|l| !l.is_empty()) {
        out.push((format!("tenant#{}", p.tenant.tenant_id), t.clone()));
    }
    out
}

pub(crate) async fn admit(
    gw: &Gateway,
    principal: &Principal,
    parsed: &Parsed,
    ctx: &mut RequestCtx,
) -> Result<(), Refusal> {
    let subjects = subjects(principal);
    if subjects.is_empty() {
        return Ok(());
    }
    let Some(counters) = &gw.limits else {
        tracing::error!("this key has limits but no limit store is configured");
        return Err(Refusal::new(Reason::StoreUnavailable));
    };
    let ask = match (&parsed.json, &parsed.model) {
        (Some(body), Some(model)) => {
            worst_case(body, model, &gw.prices, gw.cfg.default_max_output_tokens)
        }
        _ => Ask::default(),
    };
    let request_id = ctx.audit.request_id.clone();
    match counters
        .admit(&subjects, ask, &request_id, &mut ctx.calls)
        .await
    {
        Ok(a) => {
            ctx.admission = Some(a);
            Ok(())
        }
        Err(LimitError::Refused(r)) => {
            let now = gw.now();
            Err(Refusal::limited(LimitHeaders {
                kind: r.kind,
                limit: r.limit,
                remaining: r.remaining,
                retry_after_s: r.reset_at.saturating_sub(now).div_ceil(1_000).max(1),
                reset_at_ms: r.reset_at,
            }))
        }
        Err(LimitError::Store(e)) => {
            tracing::warn!(error = %e, "limit store unavailable during admission");
            Err(Refusal::new(Reason::StoreUnavailable))
        }
    }
}
