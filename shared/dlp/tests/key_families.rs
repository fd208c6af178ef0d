//! Key families with documented formats (issue 11). Every key is assembled at run time
//! from its prefix and pseudo-random characters; nothing credential-shaped is written here.

use tollgate_dlp::*;

const B62: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const HEX: &str = "0123456789abcdef";
const LOWER_DIGITS: &str = "abcdefghijklmnopqrstuvwxyz0123456789";

/// Deterministic pseudo-random characters from `alphabet`.
fn rnd(alphabet: &str, n: usize, seed: u64) -> String {
    let a = alphabet.as_bytes();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            char::from(a[((x >> 33) as usize) % a.len()])
        })
        .collect()
}

fn b64(raw: &[u8]) -> String {
    tollgate_dlp::validate::b64_encode(raw)
}

fn ents(text: &str) -> Vec<(Entity, String)> {
    detect(text)
        .into_iter()
        .map(|d| (d.entity, text[d.start..d.end].to_owned()))
        .collect()
}

fn uuid(seed: u64) -> String {
    let h = rnd(HEX, 32, seed);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// (entity, key) for every prefixed family, each in its documented shape.
fn samples(seed: u64) -> Vec<(Entity, String)> {
    let s = seed;
    vec![
        (Entity::HuggingfaceToken, format!("hf_{}", rnd(B62, 34, s))),
        (
            Entity::HuggingfaceToken,
            format!("api_org_{}", rnd(B62, 34, s + 1)),
        ),
        (Entity::GroqKey, format!("gsk_{}", rnd(B62, 52, s + 2))),
        (Entity::XaiKey, format!("xai-{}", rnd(B62, 80, s + 3))),
        (
            Entity::OpenrouterKey,
            format!("sk-or-v1-{}", rnd(HEX, 64, s + 4)),
        ),
        (
            Entity::DeepseekKey,
            format!("sk-{}", rnd(LOWER_DIGITS, 32, s + 5)),
        ),
        (
            Entity::PerplexityKey,
            format!("pplx-{}", rnd(B62, 48, s + 6)),
        ),
        (
            Entity::ReplicateToken,
            format!("r8_{}", rnd(B62, 37, s + 7)),
        ),
        (
            Entity::PineconeKey,
            format!("pcsk_{}_{}", rnd(B62, 5, s + 8), rnd(B62, 63, s + 9)),
        ),
        (
            Entity::LangsmithKey,
            format!("lsv2_pt_{}_{}", rnd(HEX, 32, s + 10), rnd(HEX, 10, s + 11)),
        ),
        (
            Entity::AwsBedrockKey,
            format!(
                "ABSK{}",
                b64(format!("BedrockAPIKey-{}", rnd(B62, 100, s + 12)).as_bytes())
            ),
        ),
        (
            Entity::AwsBedrockKey,
            format!(
                "bedrock-api-key-{}",
                b64(format!(
                    "bedrock.amazonaws.com/?Action=CallWithBearerToken&X-Amz-Credential={}",
                    rnd(B62, 60, s + 13)
                )
                .as_bytes())
            ),
        ),
        (
            Entity::GitlabToken,
            format!("glpat-{}", rnd(B62, 20, s + 14)),
        ),
        (
            Entity::GitlabToken,
            format!(
                "glpat-{}.01{}",
                rnd(B62, 27, s + 15),
                rnd(LOWER_DIGITS, 7, s + 16)
            ),
        ),
        (
            Entity::GitlabToken,
            format!("gldt-{}", rnd(B62, 20, s + 17)),
        ),
        (Entity::NpmToken, format!("npm_{}", rnd(B62, 36, s + 18))),
        (
            Entity::PypiToken,
            format!("pypi-AgEIcHlwaS5vcmc{}", rnd(B62, 120, s + 19)),
        ),
        (Entity::TwilioKey, format!("SK{}", rnd(HEX, 32, s + 20))),
        (
            Entity::SendgridKey,
            format!("SG.{}.{}", rnd(B62, 22, s + 21), rnd(B62, 43, s + 22)),
        ),
        (
            Entity::DatabricksToken,
            format!("dapi{}", rnd(HEX, 32, s + 23)),
        ),
        (Entity::SupabaseKey, format!("sbp_{}", rnd(HEX, 40, s + 24))),
        (
            Entity::SupabaseKey,
            format!("sb_secret_{}", rnd(B62, 31, s + 25)),
        ),
        (
            Entity::SentryToken,
            format!("sntryu_{}", rnd(HEX, 64, s + 26)),
        ),
        (
            Entity::SentryToken,
            format!(
                "sntrys_{}_{}",
                b64(format!(
                    "{{\"iat\":{},\"url\":\"https://sentry.io\",\"org\":\"acme\"}}",
                    1_700_000_000 + s
                )
                .as_bytes()),
                rnd(B62, 43, s + 27)
            ),
        ),
        (
            Entity::TelegramBotToken,
            format!(
                "{}:AA{}",
                100_000_000 + s * 7919 % 899_999_999,
                rnd(B62, 33, s + 28)
            ),
        ),
        (
            Entity::AzureClientSecret,
            format!(
                "{}{}Q~{}",
                rnd(B62, 3, s + 29),
                s % 10,
                rnd(B62, 34, s + 30)
            ),
        ),
        (
            Entity::AzureOpenaiKey,
            format!(
                "{}JQQJ99{}{}{}{}{}",
                rnd(B62, 52, s + 31),
                rnd(B62, 1, s + 32),
                rnd("ABCDEFGHIJKL", 1, s + 33),
                rnd(B62, 16, s + 34),
                rnd("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 1, s + 35),
                rnd(B62, 7, s + 36)
            ),
        ),
        (
            Entity::WebhookUrl,
            format!(
                "https://hooks.slack.com/services/T{}/B{}/{}",
                rnd("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 8, s + 37),
                rnd("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 10, s + 38),
                rnd(B62, 24, s + 39)
            ),
        ),
        (
            Entity::WebhookUrl,
            format!(
                "https://discord.com/api/webhooks/{}/{}",
                rnd("0123456789", 18, s + 40),
                rnd(B62, 68, s + 41)
            ),
        ),
        (
            Entity::WebhookUrl,
            format!(
                "https://acme.webhook.office.com/webhookb2/{}@{}/IncomingWebhook/{}/{}",
                uuid(s + 42),
                uuid(s + 43),
                rnd(HEX, 32, s + 44),
                uuid(s + 45)
            ),
        ),
    ]
}

#[test]
fn every_family_is_found_in_prose_json_and_env_forms_and_blocked_by_default() {
    for seed in 0..20 {
        for (entity, key) in samples(seed * 101) {
            for text in [
                format!("my key is {key} please debug"),
                format!("{{\"config\": {{\"value\": \"{key}\"}}}}"),
                format!("SOME_VALUE={key}\nNEXT=1"),
                format!("キーは{key}です。"),
            ] {
                assert_eq!(ents(&text), vec![(entity, key.clone())], "{text}");
            }
            assert!(entity.is_secret());
            assert_eq!(
                scan(&key, &Policy::default())[0].action,
                Action::Block,
                "{key}"
            );
        }
    }
}

#[test]
fn near_misses_are_not_keys() {
    let keys = samples(7);
    for (entity, key) in keys {
        // one character short, and one more glued on
        let short = &key[..key.len() - 1];
        let long = format!("{key}Z");
        for text in [format!("x {short} y"), format!("x {long} y")] {
            let got = ents(&text);
            assert!(
                !got.iter().any(|(e, _)| *e == entity)
                    || matches!(
                        entity,
                        Entity::AwsBedrockKey
                            | Entity::PypiToken
                            | Entity::SupabaseKey
                            | Entity::WebhookUrl
                            | Entity::GroqKey
                            | Entity::SentryToken
                            | Entity::AzureClientSecret
                    ),
                "{text}: {got:?}"
            );
        }
    }
    for text in [
        "hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "gsk_your_groq_api_key_here_xxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "xai-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "sk-or-v1-0000000000000000000000000000000000000000000000000000000000000000",
        "sk-abcdefghijklmnopqrstuvwxyzabcdef",
        "pplx-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "glpat-xxxxxxxxxxxxxxxxxxxx",
        "npm_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "SKU 0123456789abcdef0123456789abcdef",
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "https://discord.com/api/webhooks/000000000000000000/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "12345678:AAxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "abc1Q~xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "the ratio 16:AA and Q~ and JQQJ9 alone",
    ] {
        assert!(ents(text).is_empty(), "{text}: {:?}", ents(text));
    }
}
