//! Stage 5, the end of every request, run once from the response body's end hook (see
//! [`crate::body`]): the answering token's health and usage to the pool, then the audit line
//! — exactly one per request, allowed, refused or failed, streamed or not, whether the client
//! stayed or went away. Nothing else writes an audit line.

use crate::context::{RequestCtx, ms_since};
use crate::relay::{POOL_TOKEN_ENTITY, Redactions, StreamReport};
use crate::state::Gateway;
use tollgate_core::audit::Decision;
use tollgate_core::limits::Ask;
use tollgate_core::pool::Outcome;
use tollgate_core::ports::UsageWrite;
use tollgate_core::reason::Reason;

/// Adds what was redacted on the way back to the audit record.
pub(crate) fn count_redactions(ctx: &mut RequestCtx, r: &Redactions) {
    for (e, n) in &r.dlp {
        *ctx.audit
            .dlp_response
            .entry(e.name().to_owned())
            .or_insert(0) += n;
    }
    if r.pool_tokens > 0 {
        *ctx.audit
            .dlp_response
            .entry(POOL_TOKEN_ENTITY.to_owned())
            .or_insert(0) += u32::try_from(r.pool_tokens).unwrap_or(u32::MAX);
    }
}

pub(crate) async fn settle(
    gw: &Gateway,
    mut ctx: RequestCtx,
    client_gone: bool,
    stream: Option<StreamReport>,
) {
    let answered = ctx.reason == Reason::Ok;
    let mut reason = ctx.reason;
    if let Some(report) = stream {
        count_redactions(&mut ctx, &report.redactions);
        if let Some(d) = ctx.delivering.as_mut() {
            d.usage = report.usage;
            // The stream's duration counts as upstream time: the gateway only relays it.
            ctx.audit.upstream_ms = Some(ms_since(d.started));
            if report.broken {
                d.outcome = Outcome::Transient;
            }
        }
        if report.broken {
            reason = Reason::UpstreamStreamBroken;
            ctx.audit.error_class = Some(reason.as_str().into());
        }
    }
    if client_gone && reason == Reason::Ok {
        reason = Reason::ClientDisconnected;
    }
    let mut actual = Ask::default();
    // The answering token's usage: written with the limit settlement when the limit store
    // can carry it (one write for both), else on its own.
    let mut usage = None;
    if let Some(d) = ctx.delivering.take() {
        // Allocates nothing for a single successful attempt (see `note_attempt`).
        ctx.audit.note_attempt(&d.token.token_id, d.outcome.into());
        gw.pools
            .observe(&d.token, d.outcome, &gw.cfg.health, &mut ctx.calls)
            .await;
        if answered {
            ctx.audit.tokens_in = Some(d.usage.input);
            ctx.audit.tokens_out = Some(d.usage.output);
            let table = ctx.prices.clone().unwrap_or_else(|| gw.prices.last_known());
            let price = ctx.audit.model.as_deref().and_then(|m| table.lookup(m));
            actual = Ask {
                tokens: d.usage.input.saturating_add(d.usage.output),
                spend: price
                    .map(|p| p.cost(d.usage.input, d.usage.output))
                    .unwrap_or(0),
            };
            if price.is_some() {
                ctx.audit.cost_usd = Some(actual.spend as f64 / 1_000_000.0);
            }
            let at = gw.pools.note_usage(&d.token, d.usage);
            usage = Some((d.token, d.usage, at));
        }
    }
    // A stream cut off before its usage event (the client left, or the upstream broke) was
    // billed by the provider for output nobody reported: it is charged at its reservation,
    // the most it was allowed to cost, rather than at zero.
    let unreported = answered && ctx.audit.stream && actual.tokens == 0;
    if unreported
        && (client_gone || reason == Reason::UpstreamStreamBroken)
        && let Some(a) = &ctx.admission
    {
        actual = a.ask;
        if actual.spend > 0 {
            ctx.audit.cost_usd = Some(actual.spend as f64 / 1_000_000.0);
        }
    }
    // The reservation becomes what was used (nothing, when no answer came back).
    let mut usage_written = false;
    if let Some(a) = ctx.admission.take()
        && let Some(limits) = &gw.limits
    {
        let carried = match &usage {
            Some((token, u, at)) if limits.carries_usage() => Some(UsageWrite {
                pool: token.pool.clone(),
                token_id: token.token_id.clone(),
                usage: *u,
                at: *at,
            }),
            _ => None,
        };
        let settled = limits
            .settle(&a, actual, carried.as_ref(), &mut ctx.calls)
            .await;
        usage_written = settled.usage_written;
        if let Err(e) = settled.result {
            tracing::error!(error = %e, "limit settlement failed; the reservation stays until its window ends");
        }
    }
    if let Some((token, u, at)) = usage
        && !usage_written
    {
        gw.pools.write_usage(&token, u, at, &mut ctx.calls).await;
    }

    let decision = reason.decision();
    let a = &mut ctx.audit;
    a.decision = decision;
    a.reason = reason;
    let total = ms_since(ctx.started);
    a.latency_ms = total;
    a.overhead_ms = crate::context::round3((total - a.upstream_ms.unwrap_or(0.0)).max(0.0));
    a.store_reads = ctx.calls.reads;
    a.store_writes = ctx.calls.writes;
    gw.audit.emit(a, gw.now());
    if decision != Decision::Allow {
        tracing::info!(
            reason = reason.as_str(),
            status = a.status,
            "request refused"
        );
    }
}
