//! `tollgate key issue | list | show | revoke | suspend | resume | rotate`.
//!
//! The plaintext key exists only inside `issue`, long enough to digest it and print it once.
//! Every other output uses the display form (prefix + key id + `…` + last 4).

use crate::args::{KeyCmd, KeyIssue, KeyList, KeyRef, KeyRevoke, KeyRotate, KeySuspend};
use crate::ctx::{Ctx, confirm};
use crate::error::{CliError, Result, StoreContext};
use crate::output::{Out, Table, fields, or_dash, time_or_dash};
use serde_json::json;
use tollgate_core::auth::Peppers;
use tollgate_core::base62::is_base62;
use tollgate_core::clock::{EpochMs, rfc3339};
use tollgate_core::key::{ClientKey, KEY_ID_LEN, KeyEnv, digest_eq};
use tollgate_core::ports::{KeyStore, StoreError};
use tollgate_core::records::{ClientKeyRecord, KeyStatus};

/// Key id collisions (12 base62 characters) are astronomically rare; a few tries is plenty.
const ISSUE_ATTEMPTS: usize = 5;

pub async fn run(ctx: &mut Ctx<'_>, cmd: KeyCmd) -> Result<Out> {
    match cmd {
        KeyCmd::Issue(a) => issue(ctx, a).await,
        KeyCmd::List(a) => list(ctx, a).await,
        KeyCmd::Show(a) => show(ctx, a).await,
        KeyCmd::Revoke(a) => revoke(ctx, a).await,
        KeyCmd::Suspend(a) => suspend(ctx, a).await,
        KeyCmd::Resume(a) => resume(ctx, a).await,
        KeyCmd::Rotate(a) => rotate(ctx, a).await,
    }
}

async fn load_peppers(ctx: &Ctx<'_>) -> Result<Peppers> {
    let id = &ctx.settings.pepper_secret_id;
    let raw = match ctx.secrets.get_secret(id).await {
        Ok(s) => s,
        Err(StoreError::NotFound) => {
            return Err(CliError::new(format!(
                "the pepper secret {id:?} does not exist (set TOLLGATE_PEPPER_SECRET_ID, or create it: \
                 JSON {{\"current\": \"1\", \"v1\": \"<at least 32 random characters>\"}})"
            )));
        }
        Err(e) => {
            return Err(CliError::store(
                format!("reading the pepper secret {id:?}"),
                e,
            ));
        }
    };
    Peppers::parse(raw.expose())
        .map_err(|e| CliError::new(format!("the pepper secret {id:?} is unusable: {e}")))
}

pub async fn issue(ctx: &mut Ctx<'_>, a: KeyIssue) -> Result<Out> {
    let tenant = ctx
        .tenants
        .get_tenant(&a.tenant)
        .await
        .ctx(format!("reading tenant {:?}", a.tenant))?
        .ok_or_else(|| {
            CliError::new(format!(
                "tenant {:?} does not exist; create it first with `tollgate tenant create`",
                a.tenant
            ))
        })?;
    if tenant.disabled {
        return Err(CliError::new(format!(
            "tenant {:?} is disabled; its keys would not authenticate",
            a.tenant
        )));
    }
    let now = ctx.clock.now_ms();
    let expires_at = match (a.expires_in, a.expires_at) {
        (Some(d), _) => Some(now.saturating_add(d)),
        (None, Some(t)) if t <= now => {
            return Err(CliError::new(format!(
                "--expires-at {} is not in the future",
                rfc3339(t)
            )));
        }
        (None, t) => t,
    };
    let peppers = load_peppers(ctx).await?;

    for _ in 0..ISSUE_ATTEMPTS {
        let key = ClientKey::generate(a.env, ctx.rng);
        let rec = ClientKeyRecord {
            name: a.name.clone().unwrap_or_default(),
            expires_at,
            allowed_cidrs: a.allow_cidr.clone(),
            allowed_models: a.allow_model.clone(),
            allowed_routes: a.allow_route.clone(),
            model_pools: a.model_pool.iter().cloned().collect(),
            canary: a.canary,
            ..ClientKeyRecord::for_key(
                &key,
                tenant.tenant_id.clone(),
                a.owner.clone(),
                peppers.digest_new(&key),
                now,
            )
        };
        match ctx.keys.put_key(&rec).await {
            Ok(()) => return Ok(issued(&key, &rec)),
            Err(StoreError::AlreadyExists) => continue,
            Err(e) => return Err(CliError::store("storing the new key", e)),
        }
    }
    Err(CliError::new(format!(
        "could not find a free key id after {ISSUE_ATTEMPTS} attempts; nothing was issued"
    )))
}

fn issued(key: &ClientKey, rec: &ClientKeyRecord) -> Out {
    if rec.canary {
        let human = format!(
            "Issued CANARY key {display} for tenant {tenant} (owner {owner}).\n\n    {full}\n\n\
             Plant it where a leak would expose it. It never reaches a provider: every use is \
             refused with the same 401 as a bad key and raises a canary_key_used alert.\n",
            display = rec.display(),
            tenant = rec.tenant_id,
            owner = rec.owner,
            full = key.expose(),
        );
        let mut json = record_json(rec, rec.created_at);
        json["key"] = json!(key.expose());
        return Out::new(human, json);
    }
    let human = format!(
        "Issued key {display} for tenant {tenant} (owner {owner}, expires {exp}).\n\n    {full}\n\n\
         Store this key now: it will not be shown again.\n",
        display = rec.display(),
        tenant = rec.tenant_id,
        owner = rec.owner,
        exp = rec
            .expires_at
            .map(rfc3339)
            .unwrap_or_else(|| "never".into()),
        full = key.expose(),
    );
    let mut json = record_json(rec, rec.created_at);
    json["key"] = json!(key.expose());
    json["warning"] = json!("store this key now: it will not be shown again");
    Out::new(human, json)
}

pub fn status(rec: &ClientKeyRecord, now: EpochMs) -> &'static str {
    if rec.canary {
        // Whatever its status, every use of a canary is refused and alerts.
        return "canary";
    }
    match rec.status {
        KeyStatus::Revoked => "revoked",
        KeyStatus::Suspended => "suspended",
        KeyStatus::Active if rec.expires_at.is_some_and(|e| e <= now) => "expired",
        KeyStatus::Active => "active",
    }
}

/// Everything about a key record except its digest.
fn record_json(rec: &ClientKeyRecord, now: EpochMs) -> serde_json::Value {
    json!({
        "key_id": rec.key_id,
        "display": rec.display(),
        "tenant_id": rec.tenant_id,
        "owner": rec.owner,
        "name": rec.name,
        "env": rec.env,
        "status": status(rec, now),
        "created_at": rfc3339(rec.created_at),
        "expires_at": rec.expires_at.map(rfc3339),
        "revoked_at": rec.revoked_at.map(rfc3339),
        "suspended_at": rec.suspended_at.map(rfc3339),
        "suspended_reason": rec.suspended_reason,
        "pepper_version": rec.pepper_version,
        "allowed_cidrs": rec.allowed_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "allowed_models": rec.allowed_models,
        "allowed_routes": rec.allowed_routes,
        "model_pools": rec.model_pools,
        "rotated_from": rec.rotated_from,
        "rotated_to": rec.rotated_to,
        "canary": rec.canary,
    })
}

pub async fn list(ctx: &mut Ctx<'_>, a: KeyList) -> Result<Out> {
    let mut keys = ctx
        .keys
        .list_keys(a.tenant.as_deref())
        .await
        .ctx("listing keys")?;
    if let Some(v) = a.pepper_version {
        keys.retain(|k| k.pepper_version == v);
    }
    keys.sort_by(|x, y| {
        (&x.tenant_id, x.created_at, &x.key_id).cmp(&(&y.tenant_id, y.created_at, &y.key_id))
    });
    let now = ctx.clock.now_ms();
    if let Some(within) = a.expiring {
        return Ok(expiring(keys, now, within));
    }
    // Canary keys are listed on their own: they are tripwires, not credentials anyone uses.
    let (canaries, keys): (Vec<_>, Vec<_>) = keys.into_iter().partition(|k| k.canary);
    let mut table = Table::new([
        "KEY", "TENANT", "NAME", "STATUS", "OWNER", "CREATED", "EXPIRES",
    ]);
    for k in &keys {
        table.row([
            k.display(),
            k.tenant_id.clone(),
            or_dash(&k.name),
            status(k, now).to_owned(),
            k.owner.clone(),
            rfc3339(k.created_at),
            time_or_dash(k.expires_at),
        ]);
    }
    let mut human = if keys.is_empty() {
        "No keys.".to_owned()
    } else {
        table.render()
    };
    if !canaries.is_empty() {
        let mut t = Table::new(["CANARY KEY", "TENANT", "NAME", "OWNER", "CREATED"]);
        for k in &canaries {
            t.row([
                k.display(),
                k.tenant_id.clone(),
                or_dash(&k.name),
                k.owner.clone(),
                rfc3339(k.created_at),
            ]);
        }
        human = format!(
            "{}\n\nCanary keys (every use is refused and alerts):\n{}",
            human.trim_end(),
            t.render()
        );
    }
    Ok(Out::new(
        human,
        json!({
            "keys": keys.iter().map(|k| record_json(k, now)).collect::<Vec<_>>(),
            "canaries": canaries.iter().map(|k| record_json(k, now)).collect::<Vec<_>>(),
        }),
    ))
}

/// `key list --expiring D`: active keys (not canaries) whose expiry falls within `within` of
/// `now`, soonest first, with the days left (the same count the audit line's
/// `key_expiring_in_days` gives).
fn expiring(keys: Vec<ClientKeyRecord>, now: EpochMs, within: u64) -> Out {
    let mut soon: Vec<(u32, ClientKeyRecord)> = keys
        .into_iter()
        .filter(|k| !k.canary && k.status == KeyStatus::Active && k.rotated_to.is_none())
        .filter_map(|k| Some((k.expiring_in_days(now, within)?, k)))
        .collect();
    soon.sort_by(|(_, x), (_, y)| (x.expires_at, &x.key_id).cmp(&(y.expires_at, &y.key_id)));
    let mut table = Table::new(["KEY", "TENANT", "NAME", "OWNER", "EXPIRES", "DAYS LEFT"]);
    for (days, k) in &soon {
        table.row([
            k.display(),
            k.tenant_id.clone(),
            or_dash(&k.name),
            k.owner.clone(),
            time_or_dash(k.expires_at),
            days.to_string(),
        ]);
    }
    let human = if soon.is_empty() {
        "No active key expires in that time.".to_owned()
    } else {
        table.render()
    };
    let json_keys: Vec<serde_json::Value> = soon
        .iter()
        .map(|(days, k)| {
            let mut v = record_json(k, now);
            v["expiring_in_days"] = json!(days);
            v
        })
        .collect();
    Out::new(human, json!({ "keys": json_keys }))
}

/// What the operator typed to name a key.
#[derive(Debug)]
pub enum KeyLookup {
    Id(String),
    /// Display form: key id plus the last 4 characters to double-check.
    Display {
        key_id: String,
        last4: String,
    },
    /// A full key (e.g. one found in a leak): its id, plus the key to check against the digest.
    Full(ClientKey),
}

impl KeyLookup {
    pub fn key_id(&self) -> &str {
        match self {
            KeyLookup::Id(id) | KeyLookup::Display { key_id: id, .. } => id,
            KeyLookup::Full(k) => k.key_id(),
        }
    }
}

fn is_key_id(s: &str) -> bool {
    s.len() == KEY_ID_LEN && s.bytes().all(is_base62)
}

/// Never puts the input in an error: it may be a full key.
pub fn parse_lookup(s: &str) -> Result<KeyLookup> {
    let s = s.trim();
    if is_key_id(s) {
        return Ok(KeyLookup::Id(s.to_owned()));
    }
    let body = [KeyEnv::Live, KeyEnv::Test]
        .iter()
        .find_map(|e| s.strip_prefix(e.prefix()));
    let Some(body) = body else {
        return Err(CliError::new(
            "expected a key id (12 letters or digits), a display form (tgk_live_<id>…<last4>) or a full key",
        ));
    };
    for ellipsis in ["…", "..."] {
        if let Some((id, last4)) = body.split_once(ellipsis) {
            if is_key_id(id) && last4.len() == 4 && last4.bytes().all(is_base62) {
                return Ok(KeyLookup::Display {
                    key_id: id.to_owned(),
                    last4: last4.to_owned(),
                });
            }
            return Err(CliError::new(
                "malformed display form: expected tgk_live_<12-character id>…<last 4>",
            ));
        }
    }
    ClientKey::parse(s)
        .map(KeyLookup::Full)
        .map_err(|e| CliError::new(format!("the key given is not a valid tollgate key ({e})")))
}

async fn find(ctx: &Ctx<'_>, lookup: &KeyLookup) -> Result<ClientKeyRecord> {
    find_in(ctx.keys, lookup).await
}

/// The record a [`KeyLookup`] names; a display form must also match the stored last 4.
pub async fn find_in(keys: &dyn KeyStore, lookup: &KeyLookup) -> Result<ClientKeyRecord> {
    let id = lookup.key_id();
    let rec = keys
        .get_key(id)
        .await
        .ctx(format!("reading key {id}"))?
        .ok_or_else(|| CliError::new(format!("no key with id {id}")))?;
    match lookup {
        KeyLookup::Display { last4, .. } if *last4 != rec.last4 => Err(CliError::new(format!(
            "key {id} exists but ends in {}, not {last4}: not the key named",
            rec.last4
        ))),
        _ => Ok(rec),
    }
}

pub async fn show(ctx: &mut Ctx<'_>, a: KeyRef) -> Result<Out> {
    let lookup = parse_lookup(&a.key)?;
    let rec = find(ctx, &lookup).await?;
    let now = ctx.clock.now_ms();
    let mut json = record_json(&rec, now);
    let mut pairs = vec![
        ("key", rec.display()),
        ("key id", rec.key_id.clone()),
        ("tenant", rec.tenant_id.clone()),
        ("name", or_dash(&rec.name)),
        ("owner", rec.owner.clone()),
        ("env", env_name(rec.env).to_owned()),
        ("status", status(&rec, now).to_owned()),
        ("created", rfc3339(rec.created_at)),
        ("expires", time_or_dash(rec.expires_at)),
        ("revoked", time_or_dash(rec.revoked_at)),
        ("suspended", time_or_dash(rec.suspended_at)),
        (
            "suspended for",
            or_dash(rec.suspended_reason.as_deref().unwrap_or("")),
        ),
        (
            "allowed cidrs",
            list_or_any(rec.allowed_cidrs.iter().map(ToString::to_string)),
        ),
        (
            "allowed models",
            list_or_any(rec.allowed_models.iter().cloned()),
        ),
        (
            "allowed routes",
            list_or_any(rec.allowed_routes.iter().cloned()),
        ),
    ];
    if let KeyLookup::Full(key) = &lookup {
        // A full key was given (say, from a leak report): tell whether it is this record's key.
        let peppers = load_peppers(ctx).await?;
        let matches = peppers.get(rec.pepper_version).is_some_and(|p| {
            digest_eq(
                tollgate_core::auth::hex(&key.digest(p)).as_bytes(),
                rec.digest_hex.as_bytes(),
            )
        });
        json["presented_key_matches"] = json!(matches);
        pairs.push((
            "presented key",
            if matches {
                "matches this record".to_owned()
            } else {
                "does NOT match this record (same id, different secret)".to_owned()
            },
        ));
    }
    Ok(Out::new(fields(&pairs), json))
}

fn env_name(e: KeyEnv) -> &'static str {
    match e {
        KeyEnv::Live => "live",
        KeyEnv::Test => "test",
    }
}

fn list_or_any(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        "any".to_owned()
    } else {
        v.join(", ")
    }
}

pub async fn revoke(ctx: &mut Ctx<'_>, a: KeyRevoke) -> Result<Out> {
    let lookup = parse_lookup(&a.key)?;
    let rec = find(ctx, &lookup).await?;
    let display = rec.display();
    if rec.status == KeyStatus::Revoked {
        let json = json!({ "key_id": rec.key_id, "display": display, "status": "revoked", "changed": false });
        return Ok(Out::new(
            format!(
                "Key {display} was already revoked at {}.",
                time_or_dash(rec.revoked_at)
            ),
            json,
        ));
    }
    confirm(
        ctx,
        a.yes,
        &format!(
            "Revoke key {display} of tenant {} (owner {})?",
            rec.tenant_id, rec.owner
        ),
    )?;
    let now = ctx.clock.now_ms();
    ctx.keys
        .revoke_key(&rec.key_id, now)
        .await
        .ctx(format!("revoking key {}", rec.key_id))?;
    let note = "takes effect within the proxy's key cache TTL (a few seconds by default)";
    Ok(Out::new(
        format!("Revoked key {display}; this {note}."),
        json!({
            "key_id": rec.key_id,
            "display": display,
            "status": "revoked",
            "revoked_at": rfc3339(now),
            "changed": true,
            "note": note,
        }),
    ))
}

/// Suspends (`reason` set) or resumes a key; unchanged keys say why.
async fn set_suspended(ctx: &mut Ctx<'_>, key: &str, reason: Option<&str>) -> Result<Out> {
    let lookup = parse_lookup(key)?;
    let rec = find(ctx, &lookup).await?;
    let display = rec.display();
    let now = ctx.clock.now_ms();
    let verb = if reason.is_some() {
        "suspend"
    } else {
        "resume"
    };
    let changed = ctx
        .keys
        .set_key_suspended(&rec.key_id, reason, now)
        .await
        .ctx(format!("{verb}ing key {}", rec.key_id))?;
    let after = find(ctx, &lookup).await?;
    let state = status(&after, now);
    let note = "takes effect within the proxy's key cache TTL (a few seconds by default)";
    let human = match (changed, reason) {
        (true, Some(_)) => format!(
            "Suspended key {display}; this {note}. Undo with `tollgate key resume {}`.",
            rec.key_id
        ),
        (true, None) => format!("Resumed key {display}; this {note}."),
        (false, _) => format!("Key {display} is {state}: nothing to {verb}."),
    };
    Ok(Out::new(
        human,
        json!({
            "key_id": rec.key_id,
            "display": display,
            "status": state,
            "changed": changed,
            "suspended_at": after.suspended_at.map(rfc3339),
            "suspended_reason": after.suspended_reason,
        }),
    ))
}

pub async fn suspend(ctx: &mut Ctx<'_>, a: KeySuspend) -> Result<Out> {
    set_suspended(ctx, &a.key, Some(&a.reason)).await
}

pub async fn resume(ctx: &mut Ctx<'_>, a: KeyRef) -> Result<Out> {
    set_suspended(ctx, &a.key, None).await
}

/// Issues the successor of a key and shortens the old key's life to the overlap, in one
/// store write. The new key is printed once, like `issue`.
pub async fn rotate(ctx: &mut Ctx<'_>, a: KeyRotate) -> Result<Out> {
    let lookup = parse_lookup(&a.key)?;
    let old = find(ctx, &lookup).await?;
    let now = ctx.clock.now_ms();
    if old.canary {
        return Err(CliError::new(format!(
            "key {} is a canary: it is never rotated (its successor would be a working key \
             planted as bait); issue a new canary with `tollgate key issue --canary` instead",
            old.key_id
        )));
    }
    if let Some(next) = &old.rotated_to {
        return Err(CliError::new(format!(
            "key {} was already rotated to {next}",
            old.key_id
        )));
    }
    if status(&old, now) != "active" {
        return Err(CliError::new(format!(
            "key {} is {}: only an active key can be rotated",
            old.key_id,
            status(&old, now)
        )));
    }
    let peppers = load_peppers(ctx).await?;
    for _ in 0..ISSUE_ATTEMPTS {
        let key = ClientKey::generate(old.env, ctx.rng);
        let (next, old_expires) = old.successor(&key, peppers.digest_new(&key), now, a.overlap);
        match ctx.keys.rotate_key(&old.key_id, old_expires, &next).await {
            Ok(true) => {
                let mut out = issued(&key, &next);
                out.human = format!(
                    "Rotated key {old} to {new}. The old key works until {until}; requests \
                     under it meanwhile are marked superseded_by={id} in the audit line.\n\n{rest}",
                    old = old.display(),
                    new = next.display(),
                    until = rfc3339(old_expires),
                    id = next.key_id,
                    rest = out.human,
                );
                out.json["rotated_from"] = json!(old.key_id);
                out.json["old_key_expires_at"] = json!(rfc3339(old_expires));
                return Ok(out);
            }
            Ok(false) => {
                return Err(CliError::new(format!(
                    "key {} changed meanwhile (no longer active, or already rotated); nothing was issued",
                    old.key_id
                )));
            }
            Err(StoreError::AlreadyExists) => continue,
            Err(e) => return Err(CliError::store(format!("rotating key {}", old.key_id), e)),
        }
    }
    Err(CliError::new(format!(
        "could not find a free key id after {ISSUE_ATTEMPTS} attempts; nothing was issued"
    )))
}
