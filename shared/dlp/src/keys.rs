//! Key families with a documented prefix (issue 11): Hugging Face, Groq, xAI, OpenRouter,
//! DeepSeek, Perplexity, Replicate, Pinecone, LangSmith, Amazon Bedrock, GitLab, npm, PyPI,
//! Twilio, SendGrid, Databricks, Supabase, Sentry, and Slack / Discord / Teams webhook URLs;
//! plus the three families recognised by an inner signature rather than a prefix (Telegram
//! bot tokens `:A`, Azure AD client secrets `Q~`, Azure AI / OpenAI 84-character keys
//! `JQQJ9`). Formats and sources are listed in the crate README.
//!
//! [`PREFIXED`] is spliced into the scanner's one literal-prefixed regex, so these rules
//! cost nothing on text without the prefixes; [`classify`] then checks length, alphabet and
//! structure of the maximal token. Never logs or returns the value.

use crate::entity::Entity;
use crate::validate as v;

/// Regex branches (verbose mode), every one starting with a literal of at least three
/// bytes that is rare in prose: the SIMD prefilter fingerprints the first bytes of every
/// literal, so one short or common start (`SK`, `web`, `dis`) would make it fire on
/// ordinary words. Webhook URLs are therefore anchored at their path (`/services/T`,
/// `/api/webhooks/`, `/webhookb2/`) and their host is checked afterwards.
pub(crate) const PREFIXED: &str = r"
  | hf_[A-Za-z0-9]{30,}
  | api_org_[A-Za-z0-9]{30,}
  | gsk_[A-Za-z0-9]{40,}
  | xai-[A-Za-z0-9_]{60,}
  | pplx-[A-Za-z0-9]{40,}
  | r8_[A-Za-z0-9_-]{30,}
  | pcsk_[A-Za-z0-9]{4,8}_[A-Za-z0-9]{50,}
  | lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}[A-Za-z0-9_]*
  | ABSK[A-Za-z0-9+/]{100,}={0,2}
  | -api-key-YmVkcm9jay5hbWF6b25hd3MuY29t[A-Za-z0-9+/]{32,}={0,2}
  | gl(?:pat|dt|rt|ptt|ft|soat|ffct|imt|agent|oas|cbt)-[0-9A-Za-z_.-]{20,}
  | GR1348941[0-9A-Za-z_-]{20,}
  | npm_[A-Za-z0-9]{36,}
  | pypi-AgE[A-Za-z0-9_-]{50,}
  | SG\.[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{40,}
  | dapi[a-f0-9]{32}(?:-[0-9])?[A-Za-z0-9]*
  | sbp_[a-f0-9]{40}[A-Za-z0-9]*
  | sb_secret_[A-Za-z0-9_-]{20,}
  | sntryu_[a-f0-9]{64}[A-Za-z0-9]*
  | sntrys_eyJ[A-Za-z0-9+/=_]{50,}
  | /(?:services|workflows|triggers)/T[A-Za-z0-9/_+-]{20,}
  | /api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{50,}
  | /webhookb2/[A-Za-z0-9@/-]{60,}
  | ewog[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*)?
  | ewoJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*)?
  | ew0K[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*)?
  | eyAi[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*)?
";

/// Inner signatures of the families without a prefix (scanned with one small regex).
/// Twilio's `SK` + 32 hex sits here too: a two-byte literal would slow the prefixed regex.
pub(crate) const SIGNATURES: &str = r"Q~|:A|JQQJ9|SK[0-9a-fA-F]{32}";

/// True when `tok` starts with one of the prefixes of [`PREFIXED`] (so the scanner sends it
/// here rather than to the older rules).
pub(crate) fn handles(tok: &[u8]) -> bool {
    const P: [&[u8]; 27] = [
        b"hf_",
        b"api_org_",
        b"gsk_",
        b"xai-",
        b"pplx-",
        b"r8_",
        b"pcsk_",
        b"lsv2_",
        b"ABSK",
        b"-api-key-",
        b"glpat-",
        b"gl",
        b"GR1348941",
        b"npm_",
        b"pypi-",
        b"SG.",
        b"dapi",
        b"sbp_",
        b"sb_secret_",
        b"sntry",
        b"/services/",
        b"/workflows/",
        b"/triggers/",
        b"/api/webhooks/",
        b"/webhookb2/",
        b"sk-or-v1-",
        b"sk-",
    ];
    // `sk-` keys stay with the OpenAI rule unless they are OpenRouter or DeepSeek shaped
    if tok.starts_with(b"sk-") {
        return tok.starts_with(b"sk-or-v1-") || deepseek_shape(&tok[3..]);
    }
    P.iter().any(|p| tok.starts_with(p))
}

fn alnum(s: &[u8]) -> bool {
    s.iter().all(u8::is_ascii_alphanumeric)
}

fn lower_hex(s: &[u8]) -> bool {
    s.iter()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// Random-looking: not a placeholder, entropy at least `min_entropy` bits per character
/// (or one bit under the most a body of that length can have, for short bodies: 20 random
/// base62 characters average 4.0 bits but one in a few hundred falls under 3.5).
pub(crate) fn random(body: &[u8], min_entropy: f64) -> bool {
    let cap = (body.len().max(1) as f64).log2() - 1.0;
    !v::looks_placeholder(body) && v::entropy(body) >= min_entropy.min(cap)
}

/// `sk-` + 32 lower-case letters and digits, both present (DeepSeek's documented shape).
fn deepseek_shape(body: &[u8]) -> bool {
    body.len() == 32
        && body
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && body.iter().any(u8::is_ascii_digit)
        && body.iter().any(u8::is_ascii_lowercase)
}

/// Classify a maximal token starting with one of the [`PREFIXED`] prefixes. `right` is the
/// byte after the token (a fixed-length key must not run on into more letters).
pub(crate) fn classify(tok: &[u8], right: u8) -> Option<Entity> {
    let end_ok = !right.is_ascii_alphanumeric() && right != b'_';
    let exact = |prefix: &[u8], len: usize| tok.len() == prefix.len() + len && end_ok;
    let body = |prefix: &[u8]| &tok[prefix.len().min(tok.len())..];
    let take = |ok: bool, e: Entity| ok.then_some(e);

    if tok.starts_with(b"hf_") || tok.starts_with(b"api_org_") {
        let p: &[u8] = if tok[0] == b'h' { b"hf_" } else { b"api_org_" };
        let b = body(p);
        return take(
            exact(p, 34) && alnum(b) && random(b, 3.5),
            Entity::HuggingfaceToken,
        );
    }
    if tok.starts_with(b"gsk_") {
        let b = body(b"gsk_");
        let ok = (48..=56).contains(&b.len()) && end_ok && alnum(b) && random(b, 4.0);
        return take(ok, Entity::GroqKey);
    }
    if tok.starts_with(b"xai-") {
        let b = body(b"xai-");
        return take(exact(b"xai-", 80) && random(b, 4.0), Entity::XaiKey);
    }
    if tok.starts_with(b"sk-or-v1-") {
        let b = body(b"sk-or-v1-");
        let ok = exact(b"sk-or-v1-", 64) && lower_hex(b) && random(b, 3.3);
        return take(ok, Entity::OpenrouterKey);
    }
    if tok.starts_with(b"sk-") {
        let b = body(b"sk-");
        return take(
            end_ok && deepseek_shape(b) && random(b, 3.0),
            Entity::DeepseekKey,
        );
    }
    if tok.starts_with(b"pplx-") {
        let b = body(b"pplx-");
        return take(
            exact(b"pplx-", 48) && alnum(b) && random(b, 4.0),
            Entity::PerplexityKey,
        );
    }
    if tok.starts_with(b"r8_") {
        let b = body(b"r8_");
        return take(exact(b"r8_", 37) && random(b, 3.5), Entity::ReplicateToken);
    }
    if tok.starts_with(b"pcsk_") {
        let b = body(b"pcsk_");
        let mut parts = b.splitn(2, |c| *c == b'_');
        let id = parts.next().unwrap_or_default();
        let secret = parts.next().unwrap_or_default();
        let ok = (5..=6).contains(&id.len()) && secret.len() == 63 && end_ok && random(secret, 4.0);
        return take(ok, Entity::PineconeKey);
    }
    if tok.starts_with(b"lsv2_") {
        // lsv2_pt_ / lsv2_sk_ + 32 hex + _ + 10 hex
        let b = body(b"lsv2_pt_");
        let ok = tok.len() == 8 + 32 + 1 + 10 && end_ok && random(&b[..32], 3.0);
        return take(ok, Entity::LangsmithKey);
    }
    if tok.starts_with(b"ABSK") {
        // base64 of `BedrockAPIKey-…`: the encoded prefix is fixed
        let b = body(b"ABSK");
        let ok = b.starts_with(b"QmVkcm9ja0FQSUtleS") && (109..=271).contains(&b.len()) && end_ok;
        return take(ok && random(&b[18..], 4.0), Entity::AwsBedrockKey);
    }
    if tok.starts_with(b"-api-key-") {
        // `bedrock-api-key-` + base64 of a presigned `bedrock.amazonaws.com/…` URL; the
        // regex starts at `-api-key-` (a `bed…` literal would fire on English words) and
        // the scanner checks `bedrock` before it
        let b = body(b"-api-key-");
        let ok = b.starts_with(b"YmVkcm9jay5hbWF6b25hd3MuY29t") && end_ok;
        return take(ok && random(&b[28..], 4.0), Entity::AwsBedrockKey);
    }
    if tok.starts_with(b"gl") || tok.starts_with(b"GR1348941") {
        return gitlab(tok, end_ok).then_some(Entity::GitlabToken);
    }
    if tok.starts_with(b"npm_") {
        let b = body(b"npm_");
        return take(exact(b"npm_", 36) && random(b, 4.0), Entity::NpmToken);
    }
    if tok.starts_with(b"pypi-") {
        // a macaroon whose base64 encodes the `pypi.org` (or `test.pypi.org`) location
        let b = body(b"pypi-");
        let loc = b.starts_with(b"AgEIcHlwaS5vcmc") || b.starts_with(b"AgENdGVzdC5weXBpLm9yZw");
        return take(
            loc && b.len() >= 70 && random(&b[15..], 4.0),
            Entity::PypiToken,
        );
    }
    if tok.starts_with(b"SG.") {
        // SG. + 22 (key id) + . + 43 (secret)
        let mut parts = tok[3..].split(|c| *c == b'.');
        let id = parts.next().unwrap_or_default();
        let secret = parts.next().unwrap_or_default();
        let ok = id.len() == 22 && secret.len() == 43 && parts.next().is_none() && end_ok;
        return take(ok && random(secret, 4.0), Entity::SendgridKey);
    }
    if tok.starts_with(b"dapi") {
        let b = body(b"dapi");
        let ok = (b.len() == 32 || (b.len() == 34 && b[32] == b'-')) && end_ok;
        return take(
            ok && lower_hex(&b[..32]) && random(&b[..32], 3.0),
            Entity::DatabricksToken,
        );
    }
    if tok.starts_with(b"sbp_") {
        let b = body(b"sbp_");
        return take(
            exact(b"sbp_", 40) && lower_hex(b) && random(b, 3.3),
            Entity::SupabaseKey,
        );
    }
    if tok.starts_with(b"sb_secret_") {
        let b = body(b"sb_secret_");
        return take(end_ok && random(b, 3.5), Entity::SupabaseKey);
    }
    if tok.starts_with(b"sntryu_") {
        let b = body(b"sntryu_");
        return take(
            exact(b"sntryu_", 64) && lower_hex(b) && random(b, 3.3),
            Entity::SentryToken,
        );
    }
    if tok.starts_with(b"sntrys_") {
        // base64 JSON claims (`{"iat":…`) + `_` + 43-character secret
        let b = body(b"sntrys_");
        let (claims, secret) = match b.iter().rposition(|c| *c == b'_') {
            Some(i) => (&b[..i], &b[i + 1..]),
            None => (b, &b[..0]),
        };
        let claims_ok = v::b64_decode(claims.split(|c| *c == b'=').next().unwrap_or_default())
            .is_some_and(|raw| raw.starts_with(b"{\"iat\":"));
        let ok = claims_ok && secret.len() == 43 && end_ok && random(secret, 4.0);
        return take(ok, Entity::SentryToken);
    }
    None
}

/// A webhook URL whose path matched at `s..e` of `t`: the host before the path must be
/// Slack's, Discord's or a Teams tenant's, and the secret part random. Returns the span
/// from the scheme.
pub(crate) fn webhook(t: &[u8], s: usize, e: usize) -> Option<(usize, usize)> {
    let mut hs = s;
    while hs > 0
        && (t[hs - 1].is_ascii_alphanumeric() || matches!(t[hs - 1], b'.' | b'-'))
        && s - hs < 253
    {
        hs -= 1;
    }
    let host = t[hs..s].to_ascii_lowercase();
    let path = &t[s..e];
    let ok = if host == b"hooks.slack.com" {
        // /services/T…/B…/secret (24); /workflows|triggers/T…/A…/id/secret
        let segs: Vec<&[u8]> = path.split(|c| *c == b'/').skip(2).collect();
        let secret = segs.last().copied().unwrap_or_default();
        segs.len() >= 3 && segs[0].len() >= 8 && secret.len() >= 20 && random(secret, 3.5)
    } else if host == b"discord.com" || host == b"discordapp.com" {
        let secret = path.rsplit(|c| *c == b'/').next().unwrap_or_default();
        path.starts_with(b"/api/webhooks/")
            && (60..=70).contains(&secret.len())
            && random(secret, 4.0)
    } else if host.ends_with(b".webhook.office.com") {
        // /webhookb2/<uuid>@<uuid>/IncomingWebhook/<32 hex>/<uuid>
        path.starts_with(b"/webhookb2/")
            && memchr::memmem::find(path, b"/IncomingWebhook/").is_some()
            && memchr::memchr(b'@', path).is_some()
    } else {
        false
    };
    ok.then_some((hs, e))
}

/// GitLab tokens: `glpat-` (20 chars, or routable: ≥ 27 + `.` + 2 + 7), `gldt- glrt- glft-
/// glsoat- glffct-` (20), `glptt-` (40 hex), `glimt-` (25), `glagent-` (50), `gloas-` (64),
/// `glcbt-` (`1-5 alnum` + `_` + 20), runner registration `GR1348941` + 20.
fn gitlab(tok: &[u8], end_ok: bool) -> bool {
    let Some(dash) = memchr::memchr(b'-', tok) else {
        return tok.starts_with(b"GR1348941")
            && tok.len() == 29
            && end_ok
            && random(&tok[9..], 3.5);
    };
    let (kind, b) = (&tok[..dash], &tok[dash + 1..]);
    if !end_ok {
        return false;
    }
    let plain = |n: usize| b.len() == n && random(b, 3.5);
    match kind {
        b"glpat" => {
            if plain(20) {
                return true;
            }
            // routable: payload . 2-char version 7-char base36 CRC
            match memchr::memrchr(b'.', b) {
                Some(i) => {
                    let (payload, tail) = (&b[..i], &b[i + 1..]);
                    payload.len() >= 27
                        && tail.len() == 9
                        && tail
                            .iter()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                        && random(payload, 4.0)
                }
                None => false,
            }
        }
        b"gldt" | b"glrt" | b"glft" | b"glsoat" | b"glffct" => plain(20),
        b"glptt" => b.len() == 40 && lower_hex(b) && random(b, 3.3),
        b"glimt" => plain(25),
        b"glagent" => plain(50),
        b"gloas" => plain(64),
        b"glcbt" => match memchr::memchr(b'_', b) {
            Some(i) => (1..=5).contains(&i) && b.len() - i - 1 == 20 && random(&b[i + 1..], 3.5),
            None => false,
        },
        _ => false,
    }
}

/// Candidates found by an inner signature at `at` in `t` (see [`SIGNATURES`]): returns the
/// entity and span.
pub(crate) fn by_signature(t: &[u8], at: usize, sig: &[u8]) -> Option<(Entity, usize, usize)> {
    let is_tok = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-');
    match sig {
        // Telegram bot token: 8–10 digit bot id `:` `A` + 34 [A-Za-z0-9_-]
        b":A" => {
            let mut s = at;
            while s > 0 && b_digit(t, s - 1) && at - s < 11 {
                s -= 1;
            }
            let id_len = at - s;
            if !(8..=10).contains(&id_len) || (s > 0 && is_tok(t[s - 1])) {
                return None;
            }
            let vs = at + 1;
            let mut e = vs;
            while e < t.len() && is_tok(t[e]) {
                e += 1;
            }
            let val = &t[vs..e];
            (val.len() == 35 && random(&val[1..], 3.5)).then_some((Entity::TelegramBotToken, s, e))
        }
        // Azure AD client secret: 3 chars, a digit, `Q~`, 31–34 chars of [A-Za-z0-9_~.-]
        b"Q~" => {
            let ch = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'~' | b'.' | b'-');
            if at < 4 || !t[at - 1].is_ascii_digit() {
                return None;
            }
            let s = at - 4;
            if !t[s..at].iter().all(|c| ch(*c) && *c != b'-') || (s > 0 && ch(t[s - 1])) {
                return None;
            }
            let mut e = at + 2;
            while e < t.len() && ch(t[e]) {
                e += 1;
            }
            let rest = &t[at + 2..e];
            ((31..=34).contains(&rest.len()) && random(rest, 3.5)).then_some((
                Entity::AzureClientSecret,
                s,
                e,
            ))
        }
        // Azure AI services / Azure OpenAI key (Microsoft's common annotated key format):
        // 52 alnum, `JQQJ9`, one of 9 D H, alnum, [A-L], 16 alnum, a letter, 7 alnum = 84
        b"JQQJ9" => {
            if at < 52 {
                return None;
            }
            let s = at - 52;
            let e = s + 84;
            if e > t.len() || !alnum(&t[s..e]) {
                return None;
            }
            let k = &t[s..e];
            let edges = (s == 0 || !is_tok(t[s - 1])) && t.get(e).is_none_or(|c| !is_tok(*c));
            let ok = edges
                && matches!(k[57], b'9' | b'D' | b'H')
                && (b'A'..=b'L').contains(&k[59])
                && k[76].is_ascii_alphabetic()
                && random(&k[..52], 4.0);
            ok.then_some((Entity::AzureOpenaiKey, s, e))
        }
        // Twilio API key SID: `SK` + 32 hex in one case, not glued to a word
        _ if sig.starts_with(b"SK") => {
            let b = &sig[2..];
            let e = at + sig.len();
            let edges = (at == 0 || !is_tok(t[at - 1])) && t.get(e).is_none_or(|c| !is_tok(*c));
            let one_case = lower_hex(b)
                || b.iter()
                    .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c));
            (edges && one_case && b.iter().any(u8::is_ascii_alphabetic) && random(b, 3.0))
                .then_some((Entity::TwilioKey, at, e))
        }
        _ => None,
    }
}

fn b_digit(t: &[u8], i: usize) -> bool {
    t[i].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefixed_branch_starts_with_a_literal() {
        for line in PREFIXED.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let branch = line.trim_start_matches('|').trim();
            let first = branch.chars().next().unwrap_or('[');
            assert!(
                first.is_ascii_alphanumeric() || matches!(first, '/' | '-'),
                "{branch}"
            );
            let lit: String = branch
                .chars()
                .take_while(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/' | '\\' | '.')
                })
                .filter(|c| *c != '\\')
                .collect();
            // `gl(?:pat|dt|…)-` and `/(?:services|…)/` expand to literals of five bytes
            // or more
            assert!(
                lit.len() >= 3 || branch.starts_with("gl(?:") || branch.starts_with("/(?:"),
                "{branch}: literal start too short for the prefilter"
            );
        }
    }

    #[test]
    fn deepseek_needs_letters_and_digits() {
        assert!(deepseek_shape(b"0123abcd4567ef89a0b1c2d3e4f5a6b7"));
        assert!(!deepseek_shape(b"abcdefabcdefabcdefabcdefabcdefab"));
        assert!(!deepseek_shape(b"0123ABCD4567ef89a0b1c2d3e4f5a6b7"));
    }
}
