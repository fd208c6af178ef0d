//! Stage 4: what the request cost and taught us. Token health changes (applied to this
//! instance's view at once, then to the store conditionally), usage counters (one write), and
//! the audit line — exactly one per request, allowed or denied.

use crate::gateway::{Ctx, Gateway};
use tollgate_core::audit::Decision;
use tollgate_core::pool::{Outcome, apply, next_state};
use tollgate_core::provider::Usage;
use tollgate_core::records::TokenRecord;

pub(crate) async fn observe(gw: &Gateway, token: &TokenRecord, outcome: Outcome, ctx: &mut Ctx) {
    let current = gw
        .cached_token(&token.pool, &token.token_id)
        .unwrap_or_else(|| token.clone());
    let now = gw.now();
    let Some(change) = next_state(&current, outcome, now, &gw.cfg.health) else {
        return;
    };
    gw.update_cached_token(&token.pool, &token.token_id, |t| apply(t, &change));
    if change.status != current.status {
        tracing::warn!(
            token_id = %token.token_id,
            pool = %token.pool,
            from = current.status.as_str(),
            to = change.status.as_str(),
            reason = change.last_error.unwrap_or(""),
            "token state changed"
        );
    }
    ctx.writes += 1;
    match gw
        .stores
        .pools
        .apply_change(&token.pool, &token.token_id, current.version, &change)
        .await
    {
        Ok(true) => {}
        // Another instance moved the token first: re-read the pool next time.
        Ok(false) => gw.forget_pool(&token.pool),
        Err(e) => {
            tracing::warn!(token_id = %token.token_id, error = %e, "token health write failed")
        }
    }
}

pub(crate) async fn record_usage(gw: &Gateway, token: &TokenRecord, usage: Usage, ctx: &mut Ctx) {
    ctx.audit.tokens_in = Some(usage.input);
    ctx.audit.tokens_out = Some(usage.output);
    let now = gw.now();
    gw.update_cached_token(&token.pool, &token.token_id, |t| {
        t.requests += 1;
        t.tokens_in += usage.input;
        t.tokens_out += usage.output;
        t.last_used_at = Some(now);
    });
    ctx.writes += 1;
    if let Err(e) = gw
        .stores
        .pools
        .record_usage(&token.pool, &token.token_id, usage, now)
        .await
    {
        tracing::warn!(token_id = %token.token_id, error = %e, "usage write failed");
    }
}

/// Completes and emits the audit line.
pub(crate) fn finish(gw: &Gateway, ctx: &mut Ctx, status: u16, decision: Decision, reason: &str) {
    let a = &mut ctx.audit;
    a.status = status;
    a.decision = decision;
    a.reason = reason.to_owned();
    let total = ctx.started.elapsed().as_secs_f64() * 1000.0;
    a.latency_ms = round3(total);
    a.overhead_ms = round3((total - a.upstream_ms.unwrap_or(0.0)).max(0.0));
    a.store_reads = ctx.reads;
    a.store_writes = ctx.writes;
    gw.audit.emit(a, gw.now());
    if decision != Decision::Allow {
        tracing::info!(reason, status, "request refused");
    }
}

pub(crate) fn round3(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}
