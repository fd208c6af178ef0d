//! The generic assignment rule (issue 11): key-like name + separator + high-entropy value
//! in code, JSON, YAML, .env, HTTP headers, curl and XML. Values are assembled at run time.

use tollgate_dlp::*;

fn rnd(alphabet: &str, n: usize, seed: u64) -> String {
    let a = alphabet.as_bytes();
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(a[(x % a.len() as u64) as usize])
        })
        .collect()
}

const B62: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const HEX: &str = "0123456789abcdef";

fn ents(text: &str) -> Vec<(Entity, String)> {
    detect(text)
        .into_iter()
        .map(|d| (d.entity, text[d.start..d.end].to_owned()))
        .collect()
}

fn forms(v: &str) -> Vec<String> {
    vec![
        format!("api_key = \"{v}\""),
        format!("{{\"apiKey\": \"{v}\"}}"),
        format!("SERVICE_API_TOKEN: {v}"),
        format!("CLIENT_SECRET={v}"),
        format!("X-Api-Key: {v}"),
        format!("curl -H 'Authorization: Bearer {v}' https://api.internal"),
        format!("<add key=\"ApiKey\" value=\"{v}\" />"),
        format!("client_secret: '{v}'"),
        format!("$config['webhook_secret'] => '{v}';"),
        format!("const authToken := \"{v}\""),
    ]
}

#[test]
fn high_entropy_values_after_key_like_names_are_generic_secrets() {
    let mut skipped = 0;
    for seed in 1..40u64 {
        let values = [
            rnd(B62, 32, seed),
            rnd(HEX, 40, seed),
            format!(
                "{}-{}-{}",
                rnd(B62, 8, seed),
                rnd(B62, 8, seed + 1),
                rnd(B62, 8, seed + 2)
            ),
        ];
        for v in &values {
            // letters-only bodies are judged stricter, and a run of five equal characters
            // reads as a placeholder (`validate::looks_placeholder`); both are rare here
            if !v.chars().any(|c| c.is_ascii_digit())
                || tollgate_dlp::validate::looks_placeholder(v.as_bytes())
            {
                skipped += 1;
                continue;
            }
            for text in forms(v) {
                assert_eq!(
                    ents(&text),
                    vec![(Entity::GenericSecret, v.clone())],
                    "{text}"
                );
            }
        }
    }
    assert!(skipped <= 4, "{skipped} of 117 values skipped");
}

#[test]
fn provider_names_give_the_provider_entity() {
    let cases = [
        (
            format!("COHERE_API_KEY={}", rnd(B62, 40, 3)),
            Entity::CohereKey,
        ),
        (
            format!("CO_API_KEY=\"{}\"", rnd(B62, 40, 4)),
            Entity::CohereKey,
        ),
        (
            format!("mistral_api_key: {}", rnd(B62, 32, 5)),
            Entity::MistralKey,
        ),
        (
            format!("VERCEL_TOKEN={}", rnd(B62, 24, 6)),
            Entity::VercelToken,
        ),
        (
            format!("AZURE_OPENAI_API_KEY={}", rnd(HEX, 32, 7)),
            Entity::AzureOpenaiKey,
        ),
        (
            format!("TWILIO_AUTH_TOKEN={}", rnd(HEX, 32, 8)),
            Entity::TwilioKey,
        ),
    ];
    for (text, entity) in cases {
        let got = ents(&text);
        assert_eq!(got.len(), 1, "{text}: {got:?}");
        assert_eq!(got[0].0, entity, "{text}");
        assert!(entity.is_secret());
    }
}

#[test]
fn named_families_win_over_the_generic_rule() {
    let body = rnd(B62, 34, 11);
    let text = format!("HF_TOKEN=hf_{body}");
    assert_eq!(
        ents(&text),
        vec![(Entity::HuggingfaceToken, format!("hf_{body}"))]
    );
}

#[test]
fn curl_user_password_is_a_password() {
    let pw = format!("{}!{}", rnd(B62, 10, 21), rnd(B62, 4, 22));
    let text = format!("curl -u deploy:{pw} https://ci.internal/job");
    assert_eq!(ents(&text), vec![(Entity::Password, pw)]);
    let key = rnd(B62, 32, 23);
    let text = format!("curl --user {key}: https://api.internal/v1/charges");
    assert_eq!(ents(&text), vec![(Entity::GenericSecret, key)]);
}

#[test]
fn placeholders_references_and_identifiers_never_trigger() {
    for text in [
        "\"max_tokens\": 1024, \"prompt_tokens\": 87",
        "tokenizer: cl100k_base",
        "api_key = os.environ[\"OPENAI_API_KEY\"]",
        "OPENAI_API_KEY=your-api-key-here",
        "api_key: \"<TOKEN>\"",
        "token: ${API_KEY}",
        "secret: changeme",
        "\"apiKey\": \"xxxx-xxxx-xxxx-xxxx\"",
        "Authorization: Bearer <token>",
        "Authorization: Bearer $TOKEN",
        "curl -u user:password https://api.example.com",
        "curl -u $USER:$PASS https://api.example.com",
        "<add key=\"ApiKey\" value=\"{{ApiKey}}\" />",
        "cache_key = \"user:1234:profile\"",
        "next_page_token: \"CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA0\"",
        "model: \"models/gemini-1.5-pro-latest\"",
        "secret_name: prod/db/credentials",
        "api_key = getApiKeyFromEnvironment()",
        "SECRET_KEY = settings.SECRET_KEY",
        "apiKey: process.env.API_KEY",
        "the token limit is 8192 tokens; Key points: none",
        "token_type: Bearer",
        "access_token_url: https://auth.example.com/oauth/token",
    ] {
        assert!(ents(text).is_empty(), "{text}: {:?}", ents(text));
    }
}
