//! The generic assignment rule: a key-like name, a separator and a high-entropy value,
//! as written in code, JSON, YAML, `.env` files, HTTP headers, `curl -u` and XML config:
//!
//! ```text
//! api_key = "…"   "apiKey": "…"   CLIENT_SECRET: …   X-Api-Key: …   Authorization: Bearer …
//! curl -u deploy:…   <add key="ApiKey" value="…" />   COHERE_API_KEY=…
//! ```
//!
//! It catches keys without a fixed prefix. A value next to a provider's name in that
//! provider's documented shape is reported as the provider's entity (Cohere 40, Mistral 32,
//! Vercel 24 alphanumerics; Azure / Twilio 32 hex; Sentry 64 hex; Pinecone UUID); any other
//! value that passes [`high_entropy`] is `GENERIC_SECRET`. Named families found by their own
//! rules win over this one on the same value (overlap resolution in `scan.rs`).
//!
//! Triggers are literal regex branches ([`TRIGGERS`]) spliced into the scanner's one
//! regex. Never logs or returns the value.

use crate::entity::Entity;
use crate::secret_value;
use crate::validate as v;

/// Regex branches (verbose mode), each starting with a literal.
pub(crate) const TRIGGERS: &str = r"
  | [Aa]pi[_-]?[Kk]ey | API[_-]?KEY | [Aa]pikey | APIKEY
  | [Tt]oken | TOKEN
  | [Ss]ecret | SECRET
  | _KEY | _key | Key
  | [Bb]earer\x20
  | \x20-u\x20 | --user[\x20=]
";

/// True when the regex match `m` is one of [`TRIGGERS`].
pub(crate) fn is_trigger(m: &[u8]) -> bool {
    let lower = m.to_ascii_lowercase();
    matches!(
        lower.as_slice(),
        b"apikey"
            | b"api_key"
            | b"api-key"
            | b"token"
            | b"secret"
            | b"_key"
            | b"key"
            | b"bearer "
            | b" -u "
            | b"--user "
            | b"--user="
    )
}

/// Qualifiers that make a name ending in `key` a credential name (`api_key`, `secretKey`,
/// `SUBSCRIPTION_KEY`, `COHERE_KEY`) rather than `cache_key` / `sort_key` / `primary_key`.
const KEY_QUALIFIERS: &[&str] = &[
    "access",
    "account",
    "admin",
    "anthropic",
    "api",
    "app",
    "auth",
    "aws",
    "azure",
    "bot",
    "client",
    "cohere",
    "deepseek",
    "deploy",
    "encryption",
    "fireworks",
    "gemini",
    "google",
    "groq",
    "ingest",
    "license",
    "master",
    "mistral",
    "openai",
    "personal",
    "pinecone",
    "private",
    "project",
    "sdk",
    "secret",
    "sendgrid",
    "service",
    "signing",
    "stripe",
    "subscription",
    "together",
    "twilio",
    "webhook",
];

/// Names that end in `token` / `secret` / `key` but hold no credential.
const DENY: &[&str] = &[
    "cache",
    "continuation",
    "cursor",
    "foreign",
    "hash",
    "idempotency",
    "next",
    "page",
    "partition",
    "primary",
    "public",
    "publishable",
    "sort",
    "sync",
];

fn name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

fn value_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'+' | b'/' | b'=' | b'.' | b'~')
}

/// A candidate for the trigger matched at `s..e` of `t`: (entity, value span).
pub(crate) fn at(t: &[u8], s: usize, e: usize) -> Option<(Entity, usize, usize)> {
    let m = t[s..e].to_ascii_lowercase();
    if m == b"bearer " {
        // `Authorization: Bearer <value>` (also in JSON and curl -H)
        let (vs, ve) = value_span(t, skip(t, e, b" "))?;
        return high_entropy(&t[vs..ve]).then_some((Entity::GenericSecret, vs, ve));
    }
    if m == b" -u " || m.starts_with(b"--user") {
        return curl_user(t, e);
    }
    // a key-like name around the trigger
    let mut ns = s;
    while ns > 0 && s - ns < 64 && name_char(t[ns - 1]) {
        ns -= 1;
    }
    let mut ne = e;
    while ne < t.len() && ne - e < 64 && name_char(t[ne]) && t[ne] != b'.' {
        ne += 1;
    }
    let compact: Vec<u8> = t[ns..ne]
        .iter()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(u8::to_ascii_lowercase)
        .collect();
    if !credential_name(&compact) {
        return None;
    }
    let vs = after_separator(t, ne)?;
    let (vs, ve) = value_span(t, vs)?;
    let val = &t[vs..ve];
    let entity = named_family(&compact, val)
        .or_else(|| high_entropy(val).then_some(Entity::GenericSecret))?;
    Some((entity, vs, ve))
}

/// True when `needle` occurs in `hay`. The names searched are a few dozen bytes long and the
/// word lists long: a byte loop beats building a SIMD searcher per word (`memmem::find`).
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// `api_key`, `OPENAI_API_KEY`, `clientSecret`, `X-Auth-Token`, `HF_TOKEN`, `apikey`.
fn credential_name(compact: &[u8]) -> bool {
    let has = |w: &str| contains(compact, w.as_bytes());
    if DENY.iter().any(|w| has(w)) {
        return false;
    }
    if compact.ends_with(b"token") || compact.ends_with(b"secret") || compact.ends_with(b"apikey") {
        return true;
    }
    compact.ends_with(b"key") && compact.len() > 3 && KEY_QUALIFIERS.iter().any(|w| has(w))
}

/// Position of the value after a name ending at `ne`: an optional closing quote, then
/// `=`, `:`, `:=`, `=>` (or XML `" value="`), spaces, an optional opening quote.
fn after_separator(t: &[u8], ne: usize) -> Option<usize> {
    let mut k = ne;
    let quoted_name = matches!(t.get(k), Some(b'"' | b'\''));
    if quoted_name {
        k += 1;
        // `$config['api_key'] => …`, `ENV["API_KEY"] = …`
        if t.get(k) == Some(&b']') {
            k += 1;
        }
    }
    k = skip(t, k, b" \t");
    match t.get(k) {
        Some(b'=') => {
            k += 1;
            if t.get(k) == Some(&b'>') {
                k += 1;
            }
        }
        Some(b':') => {
            k += 1;
            if t.get(k) == Some(&b'=') {
                k += 1;
            }
        }
        // `<add key="ApiKey" value="…"/>`
        Some(b'v') if quoted_name && t[k..].starts_with(b"value") => {
            k = skip(t, k + 5, b" \t");
            if t.get(k) != Some(&b'=') {
                return None;
            }
            k += 1;
        }
        _ => return None,
    }
    k = skip(t, k, b" \t");
    if matches!(t.get(k), Some(b'"' | b'\'' | b'`')) {
        k += 1;
    }
    // `"Authorization": "Bearer …"`-style prefixes inside the value
    for p in [&b"Bearer "[..], b"bearer ", b"Token ", b"token "] {
        if t[k..].starts_with(p) {
            k += p.len();
        }
    }
    Some(k)
}

fn skip(t: &[u8], mut k: usize, set: &[u8]) -> usize {
    let start = k;
    while k < t.len() && k - start < 4 && set.contains(&t[k]) {
        k += 1;
    }
    k
}

/// The value starting at `vs`: value characters, at most 512, trailing `.` `,` dropped.
fn value_span(t: &[u8], vs: usize) -> Option<(usize, usize)> {
    let mut ve = vs;
    while ve < t.len() && ve - vs < 512 && value_char(t[ve]) {
        ve += 1;
    }
    while ve > vs && matches!(t[ve - 1], b'.' | b',') {
        ve -= 1;
    }
    (ve > vs).then_some((vs, ve))
}

/// A provider's documented shape next to its name.
fn named_family(name: &[u8], val: &[u8]) -> Option<Entity> {
    let has = |w: &[u8]| contains(name, w);
    let alnum = |n: usize| val.len() == n && val.iter().all(u8::is_ascii_alphanumeric);
    let hex = |n: usize| val.len() == n && val.iter().all(u8::is_ascii_hexdigit);
    let random = |min: f64| crate::keys::random(val, min) && v::class_count(val) >= 2;
    if (has(b"cohere") || name == b"coapikey") && alnum(40) && random(3.5) {
        return Some(Entity::CohereKey);
    }
    if has(b"mistral") && alnum(32) && random(3.5) {
        return Some(Entity::MistralKey);
    }
    if has(b"vercel") && alnum(24) && random(3.5) {
        return Some(Entity::VercelToken);
    }
    if has(b"azure") && hex(32) && random(3.0) {
        return Some(Entity::AzureOpenaiKey);
    }
    if has(b"twilio") && hex(32) && random(3.0) {
        return Some(Entity::TwilioKey);
    }
    if has(b"sentry") && hex(64) && random(3.0) {
        return Some(Entity::SentryToken);
    }
    if has(b"pinecone") && uuid(val) && random(3.0) {
        return Some(Entity::PineconeKey);
    }
    None
}

fn uuid(val: &[u8]) -> bool {
    val.len() == 36
        && val.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// A value that looks generated rather than written: 16–512 characters, not a
/// placeholder (see `secret_value`), not a path / host / model name / dotted identifier,
/// two or more of lower / upper / digit, and Shannon entropy of at least 3.5 bits per
/// character (hex-only values, whose alphabet caps entropy at 4: 3.0 and ≥ 32 characters);
/// letters-only values also need the case changes of random text rather than camel case.
pub(crate) fn high_entropy(val: &[u8]) -> bool {
    if !(16..=512).contains(&val.len())
        || secret_value::is_placeholder(val)
        || v::looks_placeholder(val)
    {
        return false;
    }
    // paths, hosts, versions, model names: every segment a plain word or number
    let segs = val.split(|c| matches!(c, b'.' | b'/' | b'-' | b'_'));
    if val.iter().any(|c| matches!(c, b'.' | b'/'))
        && segs.clone().all(|s| {
            s.iter().all(u8::is_ascii_lowercase)
                || s.iter().all(u8::is_ascii_uppercase)
                || s.iter().all(u8::is_ascii_digit)
        })
    {
        return false;
    }
    let (lo, up, dg, _) = v::classes(val);
    if usize::from(lo) + usize::from(up) + usize::from(dg) < 2 {
        return false;
    }
    let h = v::entropy(val);
    let hex_only = val.iter().all(|c| c.is_ascii_hexdigit() || *c == b'-');
    if hex_only && lo != up {
        return val.len() >= 32 && h >= 3.0;
    }
    if !dg {
        // camelCaseIdentifiers change case about once a word; random letters every few
        let humps = val
            .windows(2)
            .filter(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase())
            .count();
        if humps * 100 < val.len() * 15 || h < 3.8 {
            return false;
        }
    }
    h >= 3.5_f64.min((val.len() as f64).log2() - 0.7)
}

/// `curl -u user:pass` / `--user user:pass`: the password, or a lone token as user.
fn curl_user(t: &[u8], e: usize) -> Option<(Entity, usize, usize)> {
    let mut k = e;
    if matches!(t.get(k), Some(b'"' | b'\'')) {
        k += 1;
    }
    let us = k;
    while k < t.len()
        && k - us < 256
        && !t[k].is_ascii_whitespace()
        && !matches!(t[k], b'"' | b'\'')
    {
        k += 1;
    }
    // A run longer than the window is not read as `user:pass`: cut at the window, its "password"
    // would be a prefix of the run, and redacting that prefix would leave the rest to be found
    // again on a rescan (the placeholder cut mid-way) — redaction must reach a fixpoint.
    if k - us == 256
        && t.get(k)
            .is_some_and(|c| !c.is_ascii_whitespace() && !matches!(c, b'"' | b'\''))
    {
        return None;
    }
    let cred = &t[us..k];
    let colon = memchr::memchr(b':', cred)?;
    let (user, pass) = (&cred[..colon], &cred[colon + 1..]);
    if pass.is_empty() {
        // `curl -u <api key>:` (Stripe style): the user is the secret
        return high_entropy(user).then_some((Entity::GenericSecret, us, us + colon));
    }
    let ps = us + colon + 1;
    let strong = pass.len() >= 6 && (v::class_count(pass) >= 2 || pass.len() >= 16);
    (strong && !secret_value::is_placeholder(pass)).then_some((Entity::Password, ps, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_curl_credential_run_longer_than_the_window_is_not_cut_into_a_password() {
        use crate::{Action, Category, Policy};
        let policy = Policy::default().with_category(Category::Secret, Action::Redact);
        let found = |t: &str| {
            crate::scan(t, &policy)
                .iter()
                .any(|f| f.entity == Entity::Password)
        };
        assert!(found("curl -u deploy:Zq8vLr2xWm4k https://example.com"));
        let long = format!(
            "curl -u deploy:Zq8vLr2xWm4k{} https://example.com",
            "x".repeat(300)
        );
        assert!(!found(&long));
        // The fuzz input that found it (fuzz/fuzz_targets/dlp_scan.rs): the password was cut at
        // the window, and each rescan found the cut placeholder again.
        let data: &[u8] = &[
            51, 51, 55, 128, 112, 97, 115, 115, 95, 226, 146, 51, 45, 32, 45, 117, 32, 255, 255,
            255, 255, 255, 172, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179,
            179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179,
            179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179,
            179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179, 179,
            179, 179, 179, 179, 179, 179, 179, 179, 179, 255, 255, 4, 55, 60, 52, 58, 55, 130, 55,
            37, 55, 51,
        ];
        let text = String::from_utf8_lossy(data);
        let (once, _) = crate::redact_text(&text, &policy);
        let (_, again) = crate::redact_text(&once, &policy);
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn credential_names() {
        for n in [
            "apikey",
            "openaiapikey",
            "clientsecret",
            "xauthtoken",
            "hftoken",
            "cohereapikey",
            "subscriptionkey",
            "secretkey",
            "token",
        ] {
            assert!(credential_name(n.as_bytes()), "{n}");
        }
        for n in [
            "cachekey",
            "primarykey",
            "nextpagetoken",
            "publickey",
            "key",
            "tokens",
            "maxtokens",
            "keyid",
            "idempotencykey",
        ] {
            assert!(!credential_name(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn entropy_judgement() {
        for v in [
            "q8Zr2mX0vL7pW4nK9sD1",
            "9f86d081884c7d659a2feaa0c55ad015",
            "T9b/K2mQ+z7LpX4vR1sN8cW3",
            "qzXbWmRtYvLpKsNdHgFcJa",
        ] {
            assert!(high_entropy(v.as_bytes()), "{v}");
        }
        for v in [
            "your-api-key-here",
            "getApiKeyFromEnvironment",
            "models/gemini-1.5-pro-latest",
            "api.example.com/v1/keys",
            "0123456789abcdef0123",
            "1700000000000",
            "cl100k_base",
            "${OPENAI_API_KEY}",
            "xxxx-xxxx-xxxx-xxxx",
        ] {
            assert!(!high_entropy(v.as_bytes()), "{v}");
        }
    }
}
