//! Detectors: pure rules over audit records and the state they keep.
//!
//! The audit function feeds every audit line through [`observe`] with the state entries the
//! line touches ([`entries_for`]) loaded into an [`AuditState`]; `observe` updates the state
//! and returns [`Finding`]s. [`AuditState::suppress`] turns findings into at most one
//! [`Alert`] per (rule, subject) per suppression window, counting later occurrences into the
//! open one. Storage and publishing are ports ([`port`]); nothing here does I/O or reads a
//! clock: time is the log event's timestamp.
//!
//! Idempotent per log event: every counted request sits in a [`Window`] under its log event
//! id, and a window never counts an id twice, so a batch Lambda retries after a partial
//! failure changes nothing it already changed. "Seen" sets are sets.
//!
//! Rules match on [`Reason`], never on text: [`signal`] classifies every reason, and a new
//! reason does not compile until it is classified there.
//!
//! Never holds a key value or prompt text: key ids, network prefixes and request ids only.
//! Parameters, defaults, false positives and runbooks: `README.md` beside this file.

mod budget;
pub mod port;
mod rate;
mod rules;
mod suppress;
mod tokens;
mod window;

pub use budget::{BurnState, budget_subject};
pub use rate::{Ewm, RateState};
pub use rules::{Params, Rule, Severity};
pub use suppress::{ALERT_SCHEMA, Alert, Suppression, alert_id, grouping_ids, parse_alert_id};
pub use tokens::{TokenState, token_subject};
pub use window::{Hit, Window};

use crate::audit::{AuditRecord, BudgetScope, Decision};
use crate::clock::EpochMs;
use crate::reason::Reason;
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// What a reason means to the detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A key that is malformed, absent, or names no key: noise, a typo, or a scanner.
    Scan,
    /// A real key id with a wrong secret.
    WrongSecret,
    /// A key that proved itself, refused for its source network.
    OutsideSource,
    /// A key that proved itself, refused for its scopes (route or model).
    OutsideScope,
    /// Blocked for sensitive data.
    DlpBlock,
    /// No usable provider token in the pool.
    PoolExhausted,
    /// Served: the key's network is learned or checked.
    Served,
    /// A canary key proved itself.
    Canary,
    /// Nothing any rule counts.
    Other,
}

/// The one place reasons are classified for the detectors.
pub fn signal(r: Reason) -> Signal {
    match r {
        Reason::MissingKey
        | Reason::BadPrefix
        | Reason::BadLength
        | Reason::BadCharset
        | Reason::BadChecksum
        | Reason::UnknownKey
        // A token no trusted issuer signed (or signed for someone else): probing, not a
        // credential that proved itself.
        | Reason::JwtMalformed
        | Reason::JwtIssuerUnknown
        | Reason::JwtAlgNotAllowed
        | Reason::JwtUnknownKid
        | Reason::JwtBadSignature
        | Reason::JwtWrongAudience
        // A static key tried at the management API: probing an admin surface.
        | Reason::ManagementNeedsIdentity => Signal::Scan,
        Reason::DigestMismatch => Signal::WrongSecret,
        Reason::Canary => Signal::Canary,
        Reason::SourceNotAllowed => Signal::OutsideSource,
        Reason::RouteNotAllowed | Reason::ModelNotAllowed => Signal::OutsideScope,
        Reason::SensitiveDataBlocked => Signal::DlpBlock,
        Reason::AllTokensFailed | Reason::NoEligibleToken => Signal::PoolExhausted,
        Reason::Ok | Reason::ClientDisconnected => Signal::Served,
        Reason::UnknownRoute
        | Reason::MethodNotAllowed
        | Reason::UnknownPepperVersion
        | Reason::Revoked
        | Reason::Suspended
        | Reason::Expired
        | Reason::TenantMissing
        | Reason::TenantDisabled
        | Reason::BodyTooLarge
        | Reason::InvalidJson
        | Reason::BodyNotUtf8
        | Reason::DuplicateJsonKey
        | Reason::NotJsonObject
        | Reason::ModelMissing
        | Reason::ModelInvalid
        | Reason::StreamNotBoolean
        | Reason::UnserializableBody
        | Reason::LimitRpm
        | Reason::LimitTpm
        | Reason::LimitConcurrency
        | Reason::LimitPoolShare
        | Reason::BudgetDay
        | Reason::BudgetMonth
        | Reason::TokenBudgetDay
        | Reason::TokenBudgetMonth
        | Reason::StoreUnavailable
        | Reason::ProviderMismatch
        | Reason::TokenSecretUnavailable
        | Reason::UpstreamBodyFailed
        | Reason::BadUpstreamHeaders
        | Reason::UpstreamTimeout
        | Reason::UpstreamStreamBroken
        | Reason::ScrubberUnavailable
        // Expired or not-yet-valid tokens are clocks and caching, claim refusals are the
        // issuer policy doing its job, and an unreachable JWKS is an outage: no rule counts
        // them yet.
        | Reason::JwksUnavailable
        | Reason::JwtExpired
        | Reason::JwtNotYetValid
        | Reason::JwtIssuedInFuture
        | Reason::JwtPrincipalMissing
        | Reason::JwtClaimMismatch
        | Reason::JwtTenantClaimMissing
        | Reason::JwtTenantNotAllowed
        // Management API refusals of a verified identity (no admin role, another tenant's
        // key id): the principal is a JWT subject, not a key the auto-response could
        // suspend, so no rule counts them yet.
        | Reason::NotTenantAdmin
        | Reason::ManagedKeyNotFound
        | Reason::ManagementBadRequest
        | Reason::Unrecognized => Signal::Other,
    }
}

/// The source network a rule groups an address under: /24 for IPv4, /48 for IPv6 (an
/// IPv4-mapped IPv6 address counts as IPv4).
pub fn network_of(ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(a) => Ipv4Net::new(a, 24).map(|n| n.trunc().to_string()),
        IpAddr::V6(a) => Ipv6Net::new(a, 48).map(|n| n.trunc().to_string()),
    }
    .unwrap_or_else(|_| ip.to_string())
}

/// The network of a record's source address, if it has a readable one.
pub fn record_network(rec: &AuditRecord) -> Option<String> {
    rec.source_ip
        .as_deref()
        .and_then(|s| s.trim().parse::<IpAddr>().ok())
        .map(network_of)
}

/// Subject strings: what an alert is about.
pub fn key_subject(key_id: &str) -> String {
    format!("key:{key_id}")
}
/// The key id of a `key:<id>` subject.
pub fn subject_key_id(subject: &str) -> Option<&str> {
    subject.strip_prefix("key:").filter(|k| !k.is_empty())
}
pub fn network_subject(net: &str) -> String {
    format!("net:{net}")
}
pub fn pool_subject(pool: &str) -> String {
    format!("pool:{pool}")
}
/// The subject of [`Rule::AuthStuffing`]: the whole gateway.
pub const ALL_NETWORKS: &str = "all-networks";

/// One piece of state, as stored (one DynamoDB item each).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryId {
    /// Scan-type failures from one network.
    Network(String),
    /// Scan-type failures from every network.
    AuthGlobal,
    /// Failures of one pool.
    Pool(String),
    /// One key's learned networks and its windows.
    Key(String),
    /// The open alert of one (rule, subject).
    Suppression(Rule, String),
    /// One tenant's budgets (burn rate).
    Tenant(String),
    /// One provider token of a pool: (pool, token id).
    Token(String, String),
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryId::Network(n) => write!(f, "net#{n}"),
            EntryId::AuthGlobal => f.write_str("auth#global"),
            EntryId::Pool(p) => write!(f, "pool#{p}"),
            EntryId::Key(k) => write!(f, "key#{k}"),
            EntryId::Suppression(r, s) => write!(f, "sup#{}#{s}", r.as_str()),
            EntryId::Tenant(t) => write!(f, "tenant#{t}"),
            EntryId::Token(p, t) => write!(f, "tok#{p}/{t}"),
        }
    }
}

/// What one key's entry holds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyState {
    /// First served request seen (starts the learning period).
    #[serde(default)]
    pub first_seen: Option<EpochMs>,
    /// Last request of any kind seen.
    #[serde(default)]
    pub last_seen: EpochMs,
    /// Learned networks → last served request from it.
    #[serde(default)]
    pub networks: BTreeMap<String, EpochMs>,
    /// Networks not learned, after the learning period → their recent served requests.
    #[serde(default)]
    pub candidates: BTreeMap<String, Window>,
    #[serde(default)]
    pub wrong_secrets: Window,
    #[serde(default)]
    pub refusals: Window,
    #[serde(default)]
    pub dlp_blocks: Window,
    /// Learned user agent families ([`user_agent_family`]) → last served request with it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_agents: BTreeMap<String, EpochMs>,
    /// User agent families not learned, after the learning period → their recent requests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_agent_candidates: BTreeMap<String, Window>,
    /// Uses of this key as a canary (empty for every other key).
    #[serde(default, skip_serializing_if = "Window::is_empty")]
    pub canary_uses: Window,
    /// Requests, tokens and spend per hour against the key's baselines.
    #[serde(default)]
    pub rate: RateState,
    /// The key's own spend budgets: period (`day`, `month`) → recent spend samples.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub burn: BTreeMap<String, BurnState>,
}

/// What one tenant's entry holds: its budgets' recent spend.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TenantState {
    /// Period (`day`, `month`) → recent spend samples.
    #[serde(default)]
    pub burn: BTreeMap<String, BurnState>,
}

/// A stored entry.
// A few hundred bytes per loaded entry, a handful per batch: boxing the key state would
// cost an allocation each for nothing measurable.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    Window(Window),
    Key(KeyState),
    Suppression(Suppression),
    Tenant(TenantState),
    Token(TokenState),
}

/// A rule fired: the rule, who it is about, and the evidence (request ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: Rule,
    pub subject: String,
    pub severity: Severity,
    /// The request that made it fire.
    pub at: EpochMs,
    /// The oldest request counted.
    pub first_seen: EpochMs,
    /// Named counts: `events`, `distinct_keys`, `distinct_networks`, ...
    pub counts: BTreeMap<String, u64>,
    /// Request ids, oldest first.
    pub evidence: Vec<String>,
    /// Source networks (/24, /48) of the requests counted, at most `evidence_max`.
    pub networks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// User agents (sanitized, as the audit line has them) of the request that made the rule
    /// fire, for rules that look at them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_agents: Vec<String>,
    /// The alert this opens suppresses its (rule, subject) until then instead of for
    /// `suppression_ms` (a budget's window end; a day for an invalid token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppress_until: Option<EpochMs>,
    /// A sentence for the alert's summary, before the runbook line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One audit line as the detectors see it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// The CloudWatch Logs event id (the idempotency key).
    pub event_id: &'a str,
    /// The log event's timestamp.
    pub at: EpochMs,
    pub record: &'a AuditRecord,
}

/// The entries [`observe`] may read or write for `rec` (load these first).
pub fn entries_for(rec: &AuditRecord) -> Vec<EntryId> {
    let mut v: Vec<EntryId> = Vec::new();
    entry_refs(rec, |e| {
        let id = e.to_id();
        if !v.contains(&id) {
            v.push(id);
        }
    });
    v
}

/// An [`EntryId`] borrowing its names from an audit record: a batch collects these (a set of
/// them allocates nothing for the thousandth line of a key it already holds) and makes ids
/// of the distinct ones.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryRef<'a> {
    Network(String),
    AuthGlobal,
    Pool(&'a str),
    Key(&'a str),
    Tenant(&'a str),
    Token(&'a str, &'a str),
}

impl EntryRef<'_> {
    pub fn to_id(&self) -> EntryId {
        match self {
            EntryRef::Network(n) => EntryId::Network(n.clone()),
            EntryRef::AuthGlobal => EntryId::AuthGlobal,
            EntryRef::Pool(p) => EntryId::Pool((*p).to_owned()),
            EntryRef::Key(k) => EntryId::Key((*k).to_owned()),
            EntryRef::Tenant(t) => EntryId::Tenant((*t).to_owned()),
            EntryRef::Token(p, t) => EntryId::Token((*p).to_owned(), (*t).to_owned()),
        }
    }
}

/// Calls `f` with each entry [`observe`] may read or write for `rec` (a token may come
/// twice, once per attempt).
pub fn entry_refs<'a>(rec: &'a AuditRecord, mut f: impl FnMut(EntryRef<'a>)) {
    let sig = signal(rec.reason);
    if touches_key(sig) {
        if let Some(k) = &rec.key_id {
            f(EntryRef::Key(k));
        }
    } else {
        match sig {
            Signal::Scan => {
                f(EntryRef::AuthGlobal);
                if let Some(n) = record_network(rec) {
                    f(EntryRef::Network(n));
                }
            }
            Signal::PoolExhausted => f(EntryRef::Pool(pool_name(rec))),
            _ => {}
        }
    }
    if let Some(t) = &rec.tenant
        && rec.budgets.iter().any(|b| b.scope == BudgetScope::Tenant)
    {
        f(EntryRef::Tenant(t));
    }
    for (t, _) in rec.attempts_iter() {
        f(EntryRef::Token(pool_name(rec), t));
    }
}

/// Signals whose rules keep state in the key's entry.
fn touches_key(sig: Signal) -> bool {
    match sig {
        Signal::WrongSecret
        | Signal::OutsideSource
        | Signal::OutsideScope
        | Signal::DlpBlock
        | Signal::Served
        | Signal::Canary => true,
        Signal::Scan | Signal::PoolExhausted | Signal::Other => false,
    }
}

fn pool_name(rec: &AuditRecord) -> &str {
    rec.pool.as_deref().unwrap_or("unknown")
}

/// The loaded state entries, with what [`observe`] and [`AuditState::suppress`] changed.
#[derive(Debug, Clone, Default)]
pub struct AuditState {
    pub windows: BTreeMap<EntryId, Window>,
    pub keys: BTreeMap<String, KeyState>,
    pub suppressions: BTreeMap<(Rule, String), Suppression>,
    pub tenants: BTreeMap<String, TenantState>,
    /// Pool → token id → state.
    pub tokens: BTreeMap<String, BTreeMap<String, TokenState>>,
    dirty: BTreeSet<EntryId>,
    /// Keys and tokens changed (kept apart from `dirty` so that marking one found by `&str`
    /// allocates nothing: every served line touches its key and its token).
    dirty_keys: BTreeSet<String>,
    dirty_tokens: BTreeMap<String, BTreeSet<String>>,
    /// See [`get_or_insert`]; never read.
    spare: (KeyState, BTreeMap<String, TokenState>, TokenState),
    spare_set: BTreeSet<String>,
}

impl AuditState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts a loaded entry in place (an entry of the wrong kind for its id is ignored).
    pub fn insert(&mut self, id: EntryId, entry: Entry) {
        match (id, entry) {
            (EntryId::Key(k), Entry::Key(s)) => {
                self.keys.insert(k, s);
            }
            (EntryId::Suppression(r, s), Entry::Suppression(x)) => {
                self.suppressions.insert((r, s), x);
            }
            (EntryId::Tenant(t), Entry::Tenant(x)) => {
                self.tenants.insert(t, x);
            }
            (EntryId::Token(p, t), Entry::Token(x)) => {
                self.tokens.entry(p).or_default().insert(t, x);
            }
            (
                id @ (EntryId::Network(_) | EntryId::AuthGlobal | EntryId::Pool(_)),
                Entry::Window(w),
            ) => {
                self.windows.insert(id, w);
            }
            _ => {}
        }
    }

    /// The entry under `id`, if loaded or created.
    pub fn get(&self, id: &EntryId) -> Option<Entry> {
        match id {
            EntryId::Key(k) => self.keys.get(k).cloned().map(Entry::Key),
            EntryId::Suppression(r, s) => self
                .suppressions
                .get(&(*r, s.clone()))
                .cloned()
                .map(Entry::Suppression),
            EntryId::Tenant(t) => self.tenants.get(t).cloned().map(Entry::Tenant),
            EntryId::Token(p, t) => self
                .tokens
                .get(p)
                .and_then(|m| m.get(t))
                .cloned()
                .map(Entry::Token),
            other => self.windows.get(other).cloned().map(Entry::Window),
        }
    }

    /// Entries changed since the state was built, with the time each may be forgotten.
    pub fn changed(&self, p: &Params) -> Vec<(EntryId, Entry, EpochMs)> {
        let keys = self.dirty_keys.iter().map(|k| EntryId::Key(k.clone()));
        let tokens = self
            .dirty_tokens
            .iter()
            .flat_map(|(pool, ids)| ids.iter().map(|t| EntryId::Token(pool.clone(), t.clone())));
        self.dirty
            .iter()
            .cloned()
            .chain(keys)
            .chain(tokens)
            .filter_map(|id| {
                let e = self.get(&id)?;
                let expires = match &e {
                    Entry::Window(w) => w.newest().unwrap_or(0) + p.longest_window_ms(),
                    Entry::Key(k) => k.last_seen + p.key_retention_ms,
                    Entry::Suppression(s) => (s.until + p.suppression_ms)
                        .max(s.opened_at.saturating_add(p.alert_retention_ms)),
                    // Samples are worth nothing once their window has reset.
                    Entry::Tenant(t) => t.burn.values().map(|b| b.window_end).max().unwrap_or(0),
                    Entry::Token(t) => t
                        .through
                        .as_ref()
                        .map_or(0, |(at, _)| *at)
                        .saturating_add(p.token_invalid_suppression_ms.max(p.flap_window_ms)),
                };
                Some((id, e, expires))
            })
            .collect()
    }

    /// Forgets what changed (after a successful save).
    pub fn clear_changed(&mut self) {
        self.dirty.clear();
        self.dirty_keys.clear();
        self.dirty_tokens.clear();
    }

    fn window(&mut self, id: EntryId) -> &mut Window {
        self.dirty.insert(id.clone());
        self.windows.entry(id).or_default()
    }

    fn tenant(&mut self, tenant: &str) -> &mut TenantState {
        self.dirty.insert(EntryId::Tenant(tenant.to_owned()));
        self.tenants.entry(tenant.to_owned()).or_default()
    }

    /// The token's state, marked changed; allocates only the first time a batch touches it.
    fn token(&mut self, pool: &str, token_id: &str) -> &mut TokenState {
        let dirty = get_or_insert(&mut self.dirty_tokens, pool, &mut self.spare_set);
        if !dirty.contains(token_id) {
            dirty.insert(token_id.to_owned());
        }
        let tokens = get_or_insert(&mut self.tokens, pool, &mut self.spare.1);
        get_or_insert(tokens, token_id, &mut self.spare.2)
    }

    /// The key's state, marked changed; allocates only the first time a batch touches it.
    fn key(&mut self, key_id: &str) -> &mut KeyState {
        if !self.dirty_keys.contains(key_id) {
            self.dirty_keys.insert(key_id.to_owned());
        }
        get_or_insert(&mut self.keys, key_id, &mut self.spare.0)
    }
}

/// `map[k]`, inserted as the default when absent; the key is copied only then (`entry`
/// would copy it on every call). `spare` is never returned in practice (the entry was just
/// made sure of): it only spares an `unwrap`, since the borrow checker refuses the
/// `get_mut`-or-insert form when the reference is returned.
fn get_or_insert<'m, V: Default>(
    map: &'m mut BTreeMap<String, V>,
    k: &str,
    spare: &'m mut V,
) -> &'m mut V {
    if !map.contains_key(k) {
        map.insert(k.to_owned(), V::default());
    }
    map.get_mut(k).unwrap_or(spare)
}

fn hit(ev: &Observed<'_>, network: Option<String>) -> Hit {
    Hit {
        at: ev.at,
        event_id: ev.event_id.to_owned(),
        request_id: ev.record.request_id.clone(),
        key_id: ev.record.key_id.clone(),
        network,
        reason: ev.record.reason,
    }
}

fn finding(
    rule: Rule,
    subject: String,
    ev: &Observed<'_>,
    w: &Window,
    p: &Params,
    counts: &[(&str, usize)],
) -> Finding {
    Finding {
        rule,
        subject,
        severity: rule.severity(),
        at: ev.at,
        first_seen: w.oldest().unwrap_or(ev.at),
        counts: counts
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v as u64))
            .collect(),
        evidence: w.evidence(p.evidence_max),
        networks: w
            .hits
            .iter()
            .rev()
            .filter_map(|h| h.network.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .take(p.evidence_max)
            .collect(),
        tenant: ev.record.tenant.clone(),
        user_agents: Vec::new(),
        suppress_until: None,
        note: None,
    }
}

/// Runs every rule over one audit line. Returns what fired (usually nothing).
pub fn observe(state: &mut AuditState, p: &Params, ev: Observed<'_>) -> Vec<Finding> {
    let rec = ev.record;
    let net = record_network(rec);
    let mut out = Vec::new();
    let sig = signal(rec.reason);
    // A served line (most lines) finds its key once, below: each lookup compares key ids
    // down a tree of every key in the batch.
    if let Some(k) = rec.key_id.as_deref()
        && touches_key(sig)
        && sig != Signal::Served
    {
        let ks = state.key(k);
        ks.last_seen = ks.last_seen.max(ev.at);
    }
    match sig {
        Signal::Scan => {
            let h = hit(&ev, net.clone());
            let g = state.window(EntryId::AuthGlobal);
            if g.add(h.clone(), p.stuffing_window_ms, p.window_cap)
                && g.len() >= p.stuffing_min_failures
                && g.distinct_networks() >= p.stuffing_min_networks
            {
                let counts = [
                    ("events", g.len()),
                    ("distinct_networks", g.distinct_networks()),
                    ("distinct_keys", g.distinct_keys()),
                ];
                let mut f = finding(Rule::AuthStuffing, ALL_NETWORKS.into(), &ev, g, p, &counts);
                f.tenant = None;
                out.push(f);
            }
            if let Some(n) = net {
                let w = state.window(EntryId::Network(n.clone()));
                if w.add(h, p.scan_window_ms, p.window_cap) && w.len() >= p.scan_min_failures {
                    let counts = [("events", w.len()), ("distinct_keys", w.distinct_keys())];
                    let mut f = finding(
                        Rule::AuthScanNetwork,
                        network_subject(&n),
                        &ev,
                        w,
                        p,
                        &counts,
                    );
                    f.tenant = None;
                    out.push(f);
                }
            }
        }
        Signal::WrongSecret => {
            if let Some(k) = rec.key_id.as_deref() {
                let w = &mut state.key(k).wrong_secrets;
                if w.add(hit(&ev, net), p.targeted_window_ms, p.window_cap)
                    && w.len() >= p.targeted_min_mismatches
                {
                    let counts = [
                        ("events", w.len()),
                        ("distinct_networks", w.distinct_networks()),
                    ];
                    out.push(finding(
                        Rule::AuthTargetedKey,
                        key_subject(k),
                        &ev,
                        w,
                        p,
                        &counts,
                    ));
                }
            }
        }
        Signal::OutsideSource | Signal::OutsideScope => {
            if let Some(k) = rec.key_id.as_deref() {
                let w = &mut state.key(k).refusals;
                if w.add(hit(&ev, net), p.outside_window_ms, p.window_cap) {
                    let source = w.count_where(|r| signal(r) == Signal::OutsideSource);
                    let scope = w.count_where(|r| signal(r) == Signal::OutsideScope);
                    let fired = match sig {
                        Signal::OutsideSource => source >= p.outside_min_source,
                        _ => scope >= p.outside_min_scope,
                    };
                    if fired {
                        let counts = [
                            ("source_refusals", source),
                            ("scope_refusals", scope),
                            ("distinct_networks", w.distinct_networks()),
                        ];
                        out.push(finding(
                            Rule::KeyRefusedOutside,
                            key_subject(k),
                            &ev,
                            w,
                            p,
                            &counts,
                        ));
                    }
                }
            }
        }
        Signal::DlpBlock => {
            if let Some(k) = rec.key_id.as_deref() {
                let w = &mut state.key(k).dlp_blocks;
                if w.add(hit(&ev, net), p.dlp_window_ms, p.window_cap)
                    && w.len() >= p.dlp_min_blocks
                {
                    let counts = [("events", w.len())];
                    out.push(finding(
                        Rule::DlpBlockBurst,
                        key_subject(k),
                        &ev,
                        w,
                        p,
                        &counts,
                    ));
                }
            }
        }
        Signal::PoolExhausted => {
            let pool = pool_name(rec).to_owned();
            let w = state.window(EntryId::Pool(pool.clone()));
            if w.add(hit(&ev, net), p.pool_window_ms, p.window_cap)
                && w.len() >= p.pool_min_failures
            {
                let counts = [("events", w.len())];
                out.push(finding(
                    Rule::PoolTokensFailing,
                    pool_subject(&pool),
                    &ev,
                    w,
                    p,
                    &counts,
                ));
            }
        }
        Signal::Served => {
            if let Some(k) = rec.key_id.as_deref() {
                let ks = state.key(k);
                ks.last_seen = ks.last_seen.max(ev.at);
                let allowed = rec.decision == Decision::Allow;
                if let Some(n) = net
                    && allowed
                    && let Some(f) = served(ks, p, &ev, k, n)
                {
                    out.push(f);
                }
                if let Some(ua) = rec.user_agent.as_deref()
                    && allowed
                    && let Some(f) = served_user_agent(ks, p, &ev, k, ua)
                {
                    out.push(f);
                }
                if allowed && let Some(f) = rate::observe(&mut ks.rate, p, &ev, k) {
                    out.push(f);
                }
                if rec.budgets.iter().any(|b| b.scope == BudgetScope::Key) {
                    budget::observe(&mut ks.burn, BudgetScope::Key, p, &ev, &mut out);
                }
            }
        }
        Signal::Canary => {
            // Every use is a finding (the window only keeps evidence and makes a retried
            // batch count nothing twice); suppression keeps it to one alert per window.
            if let Some(k) = rec.key_id.as_deref() {
                let w = &mut state.key(k).canary_uses;
                if w.add(hit(&ev, net), p.canary_window_ms, p.window_cap) {
                    let counts = [
                        ("events", w.len()),
                        ("distinct_networks", w.distinct_networks()),
                    ];
                    let mut f = finding(Rule::CanaryKeyUsed, key_subject(k), &ev, w, p, &counts);
                    f.user_agents = rec.user_agent.iter().cloned().collect();
                    out.push(f);
                }
            }
        }
        Signal::Other => {}
    }
    if let Some(t) = rec.tenant.as_deref()
        && rec.budgets.iter().any(|b| b.scope == BudgetScope::Tenant)
    {
        budget::observe(
            &mut state.tenant(t).burn,
            BudgetScope::Tenant,
            p,
            &ev,
            &mut out,
        );
    }
    if rec.attempts > 0 || !rec.upstream.is_empty() {
        let pool = pool_name(rec);
        // Each token once (its attempts are counted together); no allocation.
        for (i, (t, _)) in rec.attempts_iter().enumerate() {
            if !rec.attempts_iter().take(i).any(|(u, _)| u == t) {
                tokens::observe(state.token(pool, t), p, &ev, pool, t, &mut out);
            }
        }
    }
    out
}

/// The "new value" rule for one served request of key `k` from network `n`.
fn served(ks: &mut KeyState, p: &Params, ev: &Observed<'_>, k: &str, n: String) -> Option<Finding> {
    let first = ks.first_seen.map_or(ev.at, |f| f.min(ev.at));
    ks.first_seen = Some(first);
    if let Some(last) = ks.networks.get_mut(&n) {
        *last = (*last).max(ev.at);
        return None;
    }
    if ev.at < first.saturating_add(p.learning_ms) {
        learn(ks, p, n, ev.at);
        return None;
    }
    // After the learning period: a candidate until it shows sustained use.
    for w in ks.candidates.values_mut() {
        w.prune(ev.at, p.new_network_window_ms);
    }
    ks.candidates.retain(|_, w| !w.is_empty());
    let w = ks.candidates.entry(n.clone()).or_default();
    let added = w.add(
        hit(ev, Some(n.clone())),
        p.new_network_window_ms,
        p.window_cap,
    );
    let fired = added && w.len() >= p.new_network_min_requests;
    let f = fired.then(|| {
        let counts = [("events", w.len()), ("known_networks", ks.networks.len())];
        finding(Rule::KeyNewNetwork, key_subject(k), ev, w, p, &counts)
    });
    if fired {
        ks.candidates.remove(&n);
        learn(ks, p, n, ev.at);
    }
    while ks.candidates.len() > p.max_candidates_per_key {
        let oldest = ks
            .candidates
            .iter()
            .min_by_key(|(_, w)| w.newest().unwrap_or(0))
            .map(|(k, _)| k.clone());
        match oldest {
            Some(o) => ks.candidates.remove(&o),
            None => break,
        };
    }
    f
}

/// What the new-user-agent rule compares: the first product name of a `User-Agent`, without
/// its version, lowercased and at most 32 characters (`OpenAI/Python 1.54.0` → `openai`,
/// `python-requests/2.31` → `python-requests`, `curl/8.5.0` → `curl`). SDK upgrades change
/// the version, not the family, so they never alert.
pub fn user_agent_family(ua: &str) -> Option<String> {
    let first = ua
        .trim()
        .split(|c: char| c == '/' || c.is_whitespace())
        .next()?;
    let f: String = first
        .chars()
        .take(32)
        .flat_map(char::to_lowercase)
        .collect();
    (!f.is_empty()).then_some(f)
}

/// The "new value" rule for user agents: one served request of key `k` with user agent `ua`.
/// The same shape as [`served`] for networks, sharing its learning period (`first_seen`).
fn served_user_agent(
    ks: &mut KeyState,
    p: &Params,
    ev: &Observed<'_>,
    k: &str,
    ua: &str,
) -> Option<Finding> {
    let family = user_agent_family(ua)?;
    let first = ks.first_seen.map_or(ev.at, |f| f.min(ev.at));
    ks.first_seen = Some(first);
    if let Some(last) = ks.user_agents.get_mut(&family) {
        *last = (*last).max(ev.at);
        return None;
    }
    if ev.at < first.saturating_add(p.learning_ms) {
        learn_bounded(
            &mut ks.user_agents,
            p.max_user_agents_per_key,
            family,
            ev.at,
        );
        return None;
    }
    for w in ks.user_agent_candidates.values_mut() {
        w.prune(ev.at, p.new_user_agent_window_ms);
    }
    ks.user_agent_candidates.retain(|_, w| !w.is_empty());
    let w = ks.user_agent_candidates.entry(family.clone()).or_default();
    let added = w.add(
        hit(ev, record_network(ev.record)),
        p.new_user_agent_window_ms,
        p.window_cap,
    );
    let fired = added && w.len() >= p.new_user_agent_min_requests;
    let f = fired.then(|| {
        let counts = [
            ("events", w.len()),
            ("known_user_agents", ks.user_agents.len()),
        ];
        let mut f = finding(Rule::KeyNewUserAgent, key_subject(k), ev, w, p, &counts);
        f.user_agents = vec![ua.to_owned()];
        f
    });
    if fired {
        ks.user_agent_candidates.remove(&family);
        learn_bounded(
            &mut ks.user_agents,
            p.max_user_agents_per_key,
            family,
            ev.at,
        );
    }
    while ks.user_agent_candidates.len() > p.max_user_agent_candidates_per_key {
        let oldest = ks
            .user_agent_candidates
            .iter()
            .min_by_key(|(_, w)| w.newest().unwrap_or(0))
            .map(|(k, _)| k.clone());
        match oldest {
            Some(o) => ks.user_agent_candidates.remove(&o),
            None => break,
        };
    }
    f
}

/// Learns `value` at `at`, dropping the least recently seen beyond `max`.
fn learn_bounded(learned: &mut BTreeMap<String, EpochMs>, max: usize, value: String, at: EpochMs) {
    learned.insert(value, at);
    while learned.len() > max {
        let stalest = learned
            .iter()
            .min_by_key(|(_, last)| **last)
            .map(|(k, _)| k.clone());
        match stalest {
            Some(s) => learned.remove(&s),
            None => break,
        };
    }
}

fn learn(ks: &mut KeyState, p: &Params, n: String, at: EpochMs) {
    ks.networks.insert(n, at);
    while ks.networks.len() > p.max_networks_per_key {
        let stalest = ks
            .networks
            .iter()
            .min_by_key(|(_, last)| **last)
            .map(|(k, _)| k.clone());
        match stalest {
            Some(s) => ks.networks.remove(&s),
            None => break,
        };
    }
}

#[cfg(test)]
mod tests;
