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
use crate::state::limits::{Admission, LimitError};
use tollgate_core::audit::{BudgetPeriod, BudgetScope, BudgetUse};
use tollgate_core::clock::EpochMs;
use tollgate_core::limits::{Ask, LimitKind, Limits, Windows};
use tollgate_core::pricing::worst_case;
use tollgate_core::reason::Reason;

/// The subject holding a tenant's requests in flight through a pool (its fair share).
fn pool_share_subject(pool: &str, tenant_id: &str) -> String {
    format!("pool#{pool}#tenant#{tenant_id}")
}

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

/// Whether the key or its tenant has limits ([`subjects`] is not empty), without building them.
pub(crate) fn has_limits(p: &Principal) -> bool {
    !p.rec.effective_limits(&p.tenant).is_empty()
        || p.tenant.limits.as_ref().is_some_and(|l| !l.is_empty())
}

/// Whether any subject has a spend budget (those need the operators' price table).
fn priced(subjects: &[(String, Limits)]) -> bool {
    subjects
        .iter()
        .any(|(_, l)| l.budget_day_micros.is_some() || l.budget_month_micros.is_some())
}

/// Puts the key's and tenant's spend budgets, with each window's spend at admission, in the
/// audit line (the audit function projects the burn rate against them). Nothing when no
/// spend budget applies.
fn note_budgets(subjects: &[(String, Limits)], a: &Admission, now: EpochMs, ctx: &mut RequestCtx) {
    for ((subject, limits), (day, month)) in subjects.iter().zip(&a.spent) {
        let scope = if subject.starts_with("key#") {
            BudgetScope::Key
        } else if subject.starts_with("tenant#") {
            BudgetScope::Tenant
        } else {
            continue;
        };
        let periods = [
            (
                BudgetPeriod::Day,
                limits.budget_day_micros,
                *day,
                LimitKind::BudgetDay,
            ),
            (
                BudgetPeriod::Month,
                limits.budget_month_micros,
                *month,
                LimitKind::BudgetMonth,
            ),
        ];
        for (period, budget, spent, kind) in periods {
            if let Some(budget) = budget {
                ctx.audit.budgets.push(BudgetUse {
                    scope,
                    period,
                    budget_micros: budget,
                    spent_micros: spent,
                    window_end_ms: Windows::reset_at(kind, now),
                });
            }
        }
    }
}

pub(crate) async fn admit(
    gw: &Gateway,
    principal: &Principal,
    parsed: &Parsed,
    ctx: &mut RequestCtx,
) -> Result<(), Refusal> {
    let mut subjects = subjects(principal);
    // Pool fairness: the tenant's cap on requests in flight through the pool this request
    // goes to (from the pool's settings, cached with the pool view). Unreadable: fail closed,
    // as choosing a token would.
    let share = match gw
        .pools
        .tenant_concurrency(&parsed.pool, &mut ctx.calls)
        .await
    {
        Ok(cap) => cap,
        Err(e) => {
            tracing::warn!(error = %e, "pool settings unavailable during admission");
            return Err(Refusal::new(Reason::StoreUnavailable));
        }
    };
    // Named only when the pool has a share (formatting it for every request cost ~0.5k
    // instructions, callgrind).
    let share_subject = share.map(|cap| {
        let subject = pool_share_subject(&parsed.pool, &principal.tenant.tenant_id);
        subjects.push((
            subject.clone(),
            Limits {
                concurrency: Some(cap),
                ..Limits::default()
            },
        ));
        subject
    });
    // The price table (cached for the key cache TTL) prices the reservation and, at the end,
    // the usage in the audit line. A spend budget cannot be checked without it: fail closed.
    let prices = match gw.prices.current(&mut ctx.calls).await {
        Ok(t) => t,
        Err(e) if priced(&subjects) => {
            tracing::warn!(error = %e, "price table unavailable for a request with a spend budget");
            return Err(Refusal::new(Reason::StoreUnavailable));
        }
        Err(_) => gw.prices.last_known(),
    };
    ctx.prices = Some(prices.clone());
    if subjects.is_empty() {
        return Ok(());
    }
    let Some(counters) = &gw.limits else {
        tracing::error!("this key has limits but no limit store is configured");
        return Err(Refusal::new(Reason::StoreUnavailable));
    };
    // A clean body was validated and scanned without building a value (see
    // `tollgate_dlp::fast`) unless the key or tenant has limits (`request::read`); a request
    // limited only by its pool's tenant share is parsed here for the estimate.
    let reparsed;
    let body = match &parsed.json {
        Some(v) => Some(v),
        None if parsed.model.is_some() => {
            reparsed = tollgate_core::json::parse_request_body(&parsed.body).ok();
            reparsed.as_ref()
        }
        None => None,
    };
    let ask = match (body, &parsed.model) {
        (Some(body), Some(model)) => {
            worst_case(body, model, &prices, gw.cfg.default_max_output_tokens)
        }
        _ => Ask::default(),
    };
    let request_id = ctx.audit.request_id.clone();
    match counters
        .admit(&subjects, ask, &request_id, &mut ctx.calls)
        .await
    {
        Ok(a) => {
            note_budgets(&subjects, &a, gw.now(), ctx);
            ctx.admission = Some(a);
            Ok(())
        }
        Err(LimitError::Refused(r, subject)) => {
            let now = gw.now();
            let mut refusal = Refusal::limited(LimitHeaders {
                kind: r.kind,
                limit: r.limit,
                remaining: r.remaining,
                retry_after_s: r.reset_at.saturating_sub(now).div_ceil(1_000).max(1),
                reset_at_ms: r.reset_at,
            });
            if share_subject.as_ref() == Some(&subject) {
                refusal.reason = Reason::LimitPoolShare;
            }
            Err(refusal)
        }
        Err(LimitError::Store(e)) => {
            tracing::warn!(error = %e, "limit store unavailable during admission");
            Err(Refusal::new(Reason::StoreUnavailable))
        }
    }
}
