//! `tollgate policy show | set | clear`: the sensitive-data (DLP) policy of a tenant, or a
//! key's overrides layered over it.
//!
//! Resolution for one entity (what the proxy does, via
//! [`ClientKeyRecord::effective_dlp_policy`]): the key's entity entry, the key's category
//! entry, the tenant's entity entry, the tenant's category entry, the built-in default.
//! `show` prints that action and which layer it came from.

use crate::args::{PolicyCmd, PolicySet, PolicyTarget};
use crate::ctx::Ctx;
use crate::error::{CliError, Result, StoreContext};
use crate::key::{find_in, parse_lookup};
use crate::output::{Out, Table, fields};
use serde_json::{Map, Value, json};
use std::path::Path;
use tollgate_core::ports::{KeyStore, StoreError, TenantStore};
use tollgate_core::records::{ClientKeyRecord, Tenant};
use tollgate_dlp::{Action, Entity, Policy};

/// Upper bound for a policy file (a full policy is well under 2 KB).
pub const MAX_POLICY_BYTES: u64 = 1024 * 1024;

const NOTE: &str = "takes effect within the proxy's key cache TTL (a few seconds by default)";

pub async fn run(ctx: &mut Ctx<'_>, cmd: PolicyCmd) -> Result<Out> {
    match cmd {
        PolicyCmd::Show(a) => show(ctx, a).await,
        PolicyCmd::Set(a) => set(ctx, a).await,
        PolicyCmd::Clear(a) => clear(ctx, a).await,
    }
}

/// Where an entity's effective action comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Default,
    Tenant,
    Key,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::Tenant => "tenant",
            Source::Key => "key",
        }
    }
}

/// A tenant, and optionally one of its keys, as stored.
#[derive(Debug, Clone)]
pub struct Target {
    pub tenant: Tenant,
    pub key: Option<ClientKeyRecord>,
}

impl Target {
    /// The policy the proxy applies to requests under this target.
    pub fn effective(&self) -> Policy {
        match &self.key {
            Some(k) => k.effective_dlp_policy(&self.tenant),
            None => self.tenant.dlp_policy.clone().unwrap_or_default(),
        }
    }

    /// Which layer decides `entity` (see the module docs for the order).
    pub fn source(&self, entity: Entity) -> Source {
        let sets = |p: &Option<Policy>| {
            p.as_ref().is_some_and(|p| {
                p.entities.contains_key(&entity) || p.categories.contains_key(&entity.category())
            })
        };
        if self.key.as_ref().is_some_and(|k| sets(&k.dlp_policy)) {
            Source::Key
        } else if sets(&self.tenant.dlp_policy) {
            Source::Tenant
        } else {
            Source::Default
        }
    }

    /// The layer `set` and `clear` change: the key's overrides, or the tenant's policy.
    fn layer(&self) -> Option<&Policy> {
        match &self.key {
            Some(k) => k.dlp_policy.as_ref(),
            None => self.tenant.dlp_policy.as_ref(),
        }
    }

    fn set_layer(&mut self, p: Option<Policy>) {
        match &mut self.key {
            Some(k) => k.dlp_policy = p,
            None => self.tenant.dlp_policy = p,
        }
    }

    pub fn name(&self) -> String {
        match &self.key {
            Some(k) => format!("key {} of tenant {}", k.display(), self.tenant.tenant_id),
            None => format!("tenant {}", self.tenant.tenant_id),
        }
    }
}

/// Loads the tenant and (when `key` is given: key id, display form or full key) the key,
/// which must belong to that tenant.
pub async fn load_target(
    tenants: &dyn TenantStore,
    keys: &dyn KeyStore,
    tenant_id: &str,
    key: Option<&str>,
) -> Result<Target> {
    let tenant = tenants
        .get_tenant(tenant_id)
        .await
        .ctx(format!("reading tenant {tenant_id:?}"))?
        .ok_or_else(|| CliError::new(format!("tenant {tenant_id:?} does not exist")))?;
    let key = match key {
        None => None,
        Some(k) => {
            let rec = find_in(keys, &parse_lookup(k)?).await?;
            if rec.tenant_id != tenant.tenant_id {
                return Err(CliError::new(format!(
                    "key {} belongs to tenant {:?}, not {tenant_id:?}",
                    rec.display(),
                    rec.tenant_id
                )));
            }
            Some(rec)
        }
    };
    Ok(Target { tenant, key })
}

/// Reads and validates a JSON policy file (unknown categories, entities, actions or fields
/// are refused).
pub fn load_policy_file(path: &Path) -> Result<Policy> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| CliError::new(format!("reading policy file {shown}: {e}")))?;
    let mut text = String::new();
    file.take(MAX_POLICY_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| CliError::new(format!("reading policy file {shown}: {e}")))?;
    if text.len() as u64 > MAX_POLICY_BYTES {
        return Err(CliError::new(format!(
            "policy file {shown} is larger than {MAX_POLICY_BYTES} bytes"
        )));
    }
    Policy::from_json(&text).map_err(|e| CliError::new(format!("policy file {shown}: {e}")))
}

/// A policy as JSON, in the shape `Policy::from_json` reads (built by hand: nothing to fail).
pub fn policy_json(p: &Policy) -> Value {
    let mut o = Map::new();
    if !p.categories.is_empty() {
        let m: Map<String, Value> = p
            .categories
            .iter()
            .map(|(c, a)| (c.name().to_owned(), json!(a.name())))
            .collect();
        o.insert("categories".into(), Value::Object(m));
    }
    if !p.entities.is_empty() {
        let m: Map<String, Value> = p
            .entities
            .iter()
            .map(|(e, a)| (e.name().to_owned(), json!(a.name())))
            .collect();
        o.insert("entities".into(), Value::Object(m));
    }
    Value::Object(o)
}

/// `{"categories":{"contact":"redact"}}` on one line, for the human view.
fn policy_line(p: Option<&Policy>, none: &str) -> String {
    match p {
        None => none.to_owned(),
        Some(p) => policy_json(p).to_string(),
    }
}

fn render(t: &Target) -> Out {
    let eff = t.effective();
    let mut table = Table::new(["ENTITY", "CATEGORY", "ACTION", "SOURCE"]);
    let mut effective = Map::new();
    let mut sources = Map::new();
    for e in Entity::ALL {
        let action = eff.action_for(e);
        let source = t.source(e);
        table.row([e.name(), e.category().name(), action.name(), source.name()]);
        effective.insert(e.name().to_owned(), json!(action.name()));
        sources.insert(e.name().to_owned(), json!(source.name()));
    }
    let mut pairs = vec![("tenant", t.tenant.tenant_id.clone())];
    if let Some(k) = &t.key {
        pairs.push(("key", k.display()));
    }
    pairs.push((
        "tenant policy",
        policy_line(t.tenant.dlp_policy.as_ref(), "none (built-in defaults)"),
    ));
    if let Some(k) = &t.key {
        pairs.push((
            "key policy",
            policy_line(k.dlp_policy.as_ref(), "none (the tenant's policy applies)"),
        ));
    }
    let mut human = fields(&pairs);
    human.push('\n');
    human.push_str(&table.render());
    let unguarded: Vec<&str> = Entity::ALL
        .iter()
        .filter(|e| e.is_secret() && eff.action_for(**e) == Action::Off)
        .map(|e| e.name())
        .collect();
    if !unguarded.is_empty() {
        human.push_str(&format!(
            "\nwarning: {} off: such credentials reach the provider unnoticed.\n",
            unguarded.join(", ")
        ));
    }
    let json = json!({
        "tenant_id": t.tenant.tenant_id,
        "key_id": t.key.as_ref().map(|k| k.key_id.clone()),
        "tenant": t.tenant.dlp_policy.as_ref().map(policy_json),
        "key": t.key.as_ref().and_then(|k| k.dlp_policy.as_ref()).map(policy_json),
        "effective": effective,
        "sources": sources,
    });
    Out::new(human, json)
}

pub async fn show(ctx: &mut Ctx<'_>, a: PolicyTarget) -> Result<Out> {
    let t = load_target(ctx.tenants, ctx.keys, &a.tenant, a.key.as_deref()).await?;
    Ok(render(&t))
}

async fn store(ctx: &Ctx<'_>, t: &Target, p: Option<&Policy>) -> Result<()> {
    let r = match &t.key {
        Some(k) => ctx.keys.set_key_policy(&k.key_id, p).await,
        None => ctx.tenants.set_tenant_policy(&t.tenant.tenant_id, p).await,
    };
    match r {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound) => Err(CliError::new(format!(
            "{} no longer exists; nothing was stored",
            t.name()
        ))),
        Err(e) => Err(CliError::store(
            format!("storing the policy of {}", t.name()),
            e,
        )),
    }
}

pub async fn set(ctx: &mut Ctx<'_>, a: PolicySet) -> Result<Out> {
    let mut t = load_target(
        ctx.tenants,
        ctx.keys,
        &a.target.tenant,
        a.target.key.as_deref(),
    )
    .await?;
    let mut notes = Vec::new();
    let new = match &a.file {
        Some(path) => load_policy_file(path)?,
        None => {
            let mut p = t.layer().cloned().unwrap_or_default();
            for (c, act) in &a.category {
                p.categories.insert(*c, *act);
            }
            for (e, act) in &a.entity {
                p.entities.insert(*e, *act);
            }
            for (c, act) in &a.category {
                for (e, own) in &p.entities {
                    if e.category() == *c && own != act {
                        notes.push(format!(
                            "note: {e} keeps its own entry ({own}) in this policy; an entity \
                             entry beats its category (set --entity {e}=... to change it)"
                        ));
                    }
                }
            }
            p
        }
    };
    // An empty policy means the defaults (or the tenant's policy, for a key): store none.
    let stored = (new != Policy::default()).then_some(new);
    store(ctx, &t, stored.as_ref()).await?;
    t.set_layer(stored);
    let mut out = render(&t);
    let mut head = format!("Stored the DLP policy of {}; this {NOTE}.\n", t.name());
    for n in &notes {
        head.push_str(n);
        head.push('\n');
    }
    head.push('\n');
    out.human = head + &out.human;
    out.json["note"] = json!(NOTE);
    Ok(out)
}

pub async fn clear(ctx: &mut Ctx<'_>, a: PolicyTarget) -> Result<Out> {
    let t = load_target(ctx.tenants, ctx.keys, &a.tenant, a.key.as_deref()).await?;
    let had = t.layer().is_some();
    store(ctx, &t, None).await?;
    let now_applies = if t.key.is_some() {
        "the tenant's policy applies"
    } else {
        "the built-in defaults apply (plus any key overrides)"
    };
    let human = if had {
        format!(
            "Cleared the DLP policy of {}; {now_applies}. This {NOTE}.",
            t.name()
        )
    } else {
        format!(
            "{} had no DLP policy; {now_applies}.",
            capitalize(&t.name())
        )
    };
    Ok(Out::new(
        human,
        json!({
            "tenant_id": t.tenant.tenant_id,
            "key_id": t.key.as_ref().map(|k| k.key_id.clone()),
            "cleared": true,
            "had_policy": had,
            "note": NOTE,
        }),
    ))
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
