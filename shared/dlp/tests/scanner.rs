//! Scanner, redaction, walker and stream tests. Secret-shaped fixtures are
//! assembled at run time (never written literally in the repository).

use proptest::prelude::*;
use serde_json::json;
use tollgate_dlp::base62::crc32_checksum;
use tollgate_dlp::*;
mod common;
use common::{aws_access_key, github_token};

fn all_redact() -> Policy {
    let mut p = Policy::default();
    for c in [
        Category::Secret,
        Category::Financial,
        Category::NationalId,
        Category::Contact,
        Category::Network,
    ] {
        p = p.with_category(c, Action::Redact);
    }
    p
}

fn ents(text: &str) -> Vec<(Entity, String)> {
    detect(text)
        .into_iter()
        .map(|d| (d.entity, text[d.start..d.end].to_owned()))
        .collect()
}

fn tollgate_key(live: bool) -> String {
    let mut k = format!("tgk_{}_", if live { "live" } else { "test" });
    k.push_str("AbCdEf012345");
    k.push_str("q8Zr2mX0vL7pW4nK9sD1fG6hJ3bT5yU0");
    let c = crc32_checksum(k.as_bytes());
    k.extend(c.map(char::from));
    k
}

fn openai_key() -> String {
    [
        "sk-",
        "proj-",
        "Xq8Zr2mX0vL7pW4nK9sD1fG6h",
        "T3Blbk",
        "FJ",
        "aB3dE5gH7jK9mN1pQ3sT5vW7",
    ]
    .concat()
}

fn anthropic_key() -> String {
    [
        "sk-ant-",
        "api03-",
        "Xq8Zr2mX0vL7pW4nK9sD1fG6hT3BlbkFJaB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1xR4",
        "AA",
    ]
    .concat()
}

#[test]
fn init_compiles() {
    assert!(init().is_ok());
}

#[test]
fn personal_data_entities() {
    let t = "card 4111 1111 1111 1111, mc2 2221-0000-0000-0009, amex 3782 822463 10005, \
             iban DE89 3704 0044 0532 0130 00, ssn 536-22-5012, mail taro@example.co.jp, \
             tel +1 (415) 555-2671 and 090-1234-5678, ip 10.1.2.3";
    let got = ents(t);
    let kinds: Vec<Entity> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        kinds,
        vec![
            Entity::CreditCard,
            Entity::CreditCard,
            Entity::CreditCard,
            Entity::Iban,
            Entity::UsSsn,
            Entity::Email,
            Entity::Phone,
            Entity::Phone,
            Entity::IpAddress
        ],
        "{got:?}"
    );
}

#[test]
fn japanese_text_without_spaces_fullwidth_and_dashes() {
    let t = "マイナンバーは１２３４ー５６７８ー９０１８です。電話０９０−１２３４−５６７８、〒１００－０００１東京都";
    let got = ents(t);
    assert_eq!(
        got[0],
        (
            Entity::JpMyNumber,
            "１２３４ー５６７８ー９０１８".to_owned()
        )
    );
    assert_eq!(
        got[1],
        (Entity::Phone, "０９０−１２３４−５６７８".to_owned())
    );
    assert_eq!(
        got[2],
        (Entity::JpPostalCode, "１００－０００１".to_owned())
    );
    let corp = ents("法人番号5835678256246の会社、登録番号T5835678256246");
    assert_eq!(corp.len(), 2);
    assert!(
        corp.iter()
            .all(|c| c.0 == Entity::JpCorporateNumber && c.1 == "5835678256246")
    );
}

#[test]
fn zero_width_and_nbsp_inside_values() {
    let t = "card 4111 11\u{200B}11\u{00A0}1111 1111\u{FEFF} ok";
    let got = ents(t);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, Entity::CreditCard);
    assert_eq!(got[0].1, "4111 11\u{200B}11\u{00A0}1111 1111");
}

#[test]
fn json_escaped_values() {
    let t = r#"{"text":"card:\n4111111111111111\u3002 mail \u0074aro@example.com"}"#;
    let got = ents(t);
    assert_eq!(got[0], (Entity::CreditCard, "4111111111111111".to_owned()));
    assert_eq!(got[1], (Entity::Email, r"\u0074aro@example.com".to_owned()));
}

#[test]
fn hard_negatives() {
    for t in [
        "ref 4111 1111 1111 1112",
        "マイナンバー123456789012",
        "id 550e8400-e29b-41d4-a716-446655440000",
        "commit 3f2a41111111111111117c9e0b1d2e3f4a5b6c7d",
        "ts 1700000000000 and 2024-01-15T12:30:45Z",
        "ISBN 978-4-06-123456-7",
        "example 192.0.2.1, 198.51.100.7, 203.0.113.9, 2001:db8::1",
        "version 1.2.3.4 and v10.0.0.1",
        "std::vector<int> a::b; 12:30:45 mac 00:1a:2b:3c:4d:5e",
        "password: ********",
        "password=${DB_PASSWORD}",
        "The password is required.",
        "icon@2x.png",
        "郵便番号を入力してください 1000001 件",
    ] {
        assert!(ents(t).is_empty(), "{t}: {:?}", ents(t));
    }
    let placeholders = [
        ["sk-", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"].concat(),
        ["sk-", "your-api-key-here-please"].concat(),
        ["AKIA", "IOSFODNN7", "EXAMPLE"].concat(),
        ["ghp_", "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1", "000000"].concat(),
        tollgate_key(true).replace("tgk_live_AbC", "tgk_live_XbC"),
    ];
    for p in placeholders {
        assert!(ents(&p).is_empty(), "{p}");
    }
}

#[test]
fn secrets() {
    let pem = [
        "-----BEGIN ",
        "RSA PRIVATE",
        " KEY-----\n",
        &"MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n".repeat(3),
        "-----END ",
        "RSA PRIVATE",
        " KEY-----",
    ]
    .concat();
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    let slack = [
        "xoxb-",
        "730912845601-4819275036172-",
        "AbCdEfGhIjKlMnOpQrStUvWx",
    ]
    .concat();
    let stripe = ["sk_", "live_", "4eC39HqLyjWDarjtT1zdp7dc"].concat();
    let google = ["AIza", "SyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW"].concat();
    let aws_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY9Kq2LmZxYw";
    let text = format!(
        "a {} b {} c {} d {} e {} f {} g {} h {} i {} j {} aws_secret_access_key = {aws_secret} \
         url postgres://app:s3cr3tPw@db:5432/x pw パスワード：Hunter22!",
        aws_access_key(),
        pem,
        jwt,
        openai_key(),
        anthropic_key(),
        github_token(),
        slack,
        stripe,
        google,
        tollgate_key(false)
    );
    let got: Vec<Entity> = ents(&text).into_iter().map(|g| g.0).collect();
    assert_eq!(
        got,
        vec![
            Entity::AwsAccessKey,
            Entity::PrivateKey,
            Entity::Jwt,
            Entity::OpenaiKey,
            Entity::AnthropicKey,
            Entity::GithubToken,
            Entity::SlackToken,
            Entity::StripeKey,
            Entity::GoogleApiKey,
            Entity::TollgateKey,
            Entity::AwsSecretKey,
            Entity::UrlCredential,
            Entity::Password
        ]
    );
}

#[test]
fn policy_actions_and_off() {
    let t = format!("mail a.b@example.com key {}", openai_key());
    let f = scan(&t, &Policy::default());
    assert_eq!(f[0].action, Action::Log);
    assert_eq!(f[1].action, Action::Block);
    let p = Policy::default().with_entity(Entity::Email, Action::Off);
    let f = scan(&t, &p);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].entity, Entity::OpenaiKey);
}

#[test]
fn redaction_numbering_and_idempotence() {
    let t = "4111 1111 1111 1111 then 5555555555554444 then 4111-1111-1111-1111 mail a@b.co";
    let (out, _) = redact_text(t, &all_redact());
    assert_eq!(
        out,
        "[CREDIT_CARD_1] then [CREDIT_CARD_2] then [CREDIT_CARD_1] mail [EMAIL_1]"
    );
    let (again, f2) = redact_text(&out, &all_redact());
    assert!(f2.is_empty());
    assert_eq!(again, out);
}

#[test]
fn openai_walker_redacts_every_field_and_keeps_the_shape() {
    let key = openai_key();
    let mut body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "card 4111111111111111"},
            {"role": "developer", "content": [{"type": "text", "text": "again 4111 1111 1111 1111"}]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
              "function": {"name": "pay", "arguments": "{\"card\":\"5555555555554444\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok 5555 5555 5555 4444"}
        ],
        "metadata": {"note": "4111111111111111"}
    });
    let r = inspect_request(RequestKind::Openai, &mut body, &Policy::default());
    assert_eq!(r.decision, Decision::Redact);
    assert_eq!(r.counts.get(&Entity::CreditCard), Some(&5));
    assert_eq!(body["messages"][0]["content"], "card [CREDIT_CARD_1]");
    assert_eq!(
        body["messages"][1]["content"][0]["text"],
        "again [CREDIT_CARD_1]"
    );
    let args = body["messages"][2]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    assert_eq!(args, "{\"card\":\"[CREDIT_CARD_2]\"}");
    assert!(serde_json::from_str::<serde_json::Value>(args).is_ok());
    assert_eq!(body["messages"][3]["content"], "ok [CREDIT_CARD_2]");
    assert_eq!(
        body["metadata"]["note"], "[CREDIT_CARD_1]",
        "metadata reaches the provider too"
    );
    assert_eq!(body["messages"][2]["tool_calls"][0]["id"], "c1");

    // responses / embeddings / completions shapes
    for mut b in [
        json!({"model": "m", "instructions": "x", "input": [{"role": "user", "content": [{"type": "input_text", "text": key}]}]}),
        json!({"model": "m", "input": ["hello", key]}),
        json!({"model": "m", "prompt": key}),
        json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "1", "output": key}]}),
    ] {
        let r = inspect_request(RequestKind::Openai, &mut b, &Policy::default());
        assert_eq!(r.decision, Decision::Block, "{b}");
        assert_eq!(r.blocked, vec![Entity::OpenaiKey]);
    }
}

#[test]
fn anthropic_walker() {
    let mut body = json!({
        "model": "claude",
        "system": [{"type": "text", "text": "ssn 536-22-5012"}],
        "messages": [
            {"role": "user", "content": "my ssn is 536-22-5012"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "lookup",
              "input": {"q": {"deep": ["536 22 5012"]}, "n": 5}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
              "content": [{"type": "text", "text": "found 078-05-1121"}]}]}
        ]
    });
    let r = inspect_request(RequestKind::Anthropic, &mut body, &Policy::default());
    assert_eq!(r.decision, Decision::Redact);
    assert_eq!(body["system"][0]["text"], "ssn [US_SSN_1]");
    assert_eq!(body["messages"][0]["content"], "my ssn is [US_SSN_1]");
    assert_eq!(
        body["messages"][1]["content"][0]["input"]["q"]["deep"][0],
        "[US_SSN_1]"
    );
    assert_eq!(body["messages"][1]["content"][0]["input"]["n"], 5);
    assert_eq!(
        body["messages"][2]["content"][0]["content"][0]["text"],
        "found [US_SSN_2]"
    );
}

#[test]
fn redact_request_bytes_roundtrip() {
    let body = br#"{"model":"m","messages":[{"role":"user","content":"mail me at a@b.co"}]}"#;
    let (out, r) = cli::redact_request(RequestKind::Openai, body, &Policy::default()).unwrap();
    assert_eq!(r.decision, Decision::Log);
    assert_eq!(out, body.to_vec(), "log leaves bytes untouched");
    assert!(cli::redact_request(RequestKind::Openai, b"[1]", &Policy::default()).is_err());
    assert!(cli::redact_request(RequestKind::Openai, b"{", &Policy::default()).is_err());
}

#[test]
fn scan_jsonl_contract() {
    let input = "\"card 4111111111111111\"\n\"nothing\"\n\"\u{3012}100-0001 \u{6771}\u{4eac}\"\n";
    let mut out = Vec::new();
    cli::scan_jsonl(input.as_bytes(), &mut out, &Policy::default()).unwrap();
    let s = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(
        lines[0],
        r#"[{"entity":"CREDIT_CARD","start":5,"end":21,"action":"redact"}]"#
    );
    assert_eq!(lines[1], "[]");
    assert_eq!(
        lines[2],
        r#"[{"entity":"JP_POSTAL_CODE","start":3,"end":11,"action":"log"}]"#
    );
    assert!(cli::scan_jsonl("not json\n".as_bytes(), &mut Vec::new(), &Policy::default()).is_err());
}

#[test]
fn stream_redactor_catches_secrets_across_chunks() {
    let key = github_token();
    let text = format!(
        "here is the token {key} and password: Hunter22! done. 日本語のテキストも流れます。"
    );
    for chunk in [1usize, 2, 3, 5, 7, 16, 64] {
        let mut s = StreamRedactor::new(&Policy::default());
        let mut out = String::new();
        let chars: Vec<char> = text.chars().collect();
        for piece in chars.chunks(chunk) {
            let p: String = piece.iter().collect();
            out.push_str(&s.push(&p));
            assert!(s.held() <= stream::MAX_TOKEN_HOLD + 64);
        }
        out.push_str(&s.finish());
        assert_eq!(
            out,
            "here is the token [GITHUB_TOKEN_1] and password: [PASSWORD_1] done. 日本語のテキストも流れます。",
            "chunk {chunk}"
        );
        assert_eq!(s.counts().get(&Entity::GithubToken), Some(&1));
    }
}

#[test]
fn stream_holds_pem_blocks() {
    let pem = [
        "-----BEGIN ",
        "PRIVATE",
        " KEY-----\n",
        &"MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n".repeat(4),
        "-----END ",
        "PRIVATE",
        " KEY-----",
    ]
    .concat();
    let text = format!("key:\n{pem}\nbye");
    let mut s = StreamRedactor::new(&Policy::default());
    let mut out = String::new();
    for piece in text.as_bytes().chunks(9) {
        out.push_str(&s.push(std::str::from_utf8(piece).unwrap()));
    }
    out.push_str(&s.finish());
    assert_eq!(out, "key:\n[PRIVATE_KEY_1]\nbye");
}

#[test]
fn adversarial_inputs_finish() {
    let digits = "1".repeat(1 << 20);
    assert!(detect(&digits).is_empty());
    let spaced = "4 ".repeat(1 << 19);
    let _ = detect(&spaced);
    let near = ["sk-", &"a".repeat(64), " "].concat().repeat(10_000);
    assert!(detect(&near).is_empty());
    let ats = "a@".repeat(1 << 18);
    let _ = detect(&ats);
    let colons = "1:".repeat(1 << 18);
    let _ = detect(&colons);
}

// ------------------------------------------------------------------ properties

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("4111 1111 1111 1111".to_owned()),
        Just("5555555555554444".to_owned()),
        Just("DE89370400440532013000".to_owned()),
        Just("536-22-5012".to_owned()),
        Just("taro@example.co.jp".to_owned()),
        Just("090-1234-5678".to_owned()),
        Just("+1 415-555-2671".to_owned()),
        Just("マイナンバー 1234 5678 9018".to_owned()),
        Just("〒100-0001".to_owned()),
        Just("10.20.30.40".to_owned()),
        Just("fe80::1ff:fe23:4567:890a".to_owned()),
        Just("password=Hunter22!".to_owned()),
        Just(aws_access_key()),
        Just(openai_key()),
        Just(github_token()),
        Just(tollgate_key(true)),
        "[a-zA-Z0-9 ]{0,12}",
        "[あ-ん漢字ー　]{0,6}",
        "[0-9 \\-.]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn redaction_removes_every_finding_and_is_idempotent(parts in prop::collection::vec(value_strategy(), 0..8), sep in "[ 、。\\n]") {
        let text = parts.join(&sep);
        let policy = all_redact();
        let (once, findings) = redact_text(&text, &policy);
        for f in &findings {
            prop_assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        }
        let (twice, again) = redact_text(&once, &policy);
        prop_assert!(again.is_empty(), "left after redaction: {:?} in {:?}", again, once);
        prop_assert_eq!(twice, once);
    }

    #[test]
    fn arbitrary_text_never_panics_and_offsets_are_char_boundaries(s in any::<String>()) {
        for f in scan(&s, &all_redact()) {
            prop_assert!(f.start < f.end && f.end <= s.len());
            prop_assert!(s.is_char_boundary(f.start) && s.is_char_boundary(f.end));
        }
        let _ = redact_text(&s, &all_redact());
    }

    #[test]
    fn redacted_json_stays_valid(texts in prop::collection::vec(value_strategy(), 1..6)) {
        let body = json!({"model": "m", "messages": texts.iter().map(|t| json!({"role": "user", "content": t})).collect::<Vec<_>>()});
        let bytes = serde_json::to_vec(&body).unwrap();
        let policy = Policy::default().with_category(Category::Secret, Action::Redact);
        let (out, _) = cli::redact_request(RequestKind::Openai, &bytes, &policy).unwrap();
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
    }

    #[test]
    fn stream_equals_batch_for_secrets(parts in prop::collection::vec(value_strategy(), 0..6), chunk in 1usize..40) {
        let text = parts.join(" ");
        let policy = Policy::default();
        let mut s = StreamRedactor::new(&policy);
        let mut out = String::new();
        let chars: Vec<char> = text.chars().collect();
        for piece in chars.chunks(chunk) {
            out.push_str(&s.push(&piece.iter().collect::<String>()));
        }
        out.push_str(&s.finish());
        // every secret the batch scanner sees is gone from the streamed output
        let leftover: Vec<_> = detect_scoped(&out, Scope::SecretsOnly);
        prop_assert!(leftover.is_empty(), "{:?} in {:?}", leftover, out);
    }
}

#[test]
fn redact_request_refuses_a_repeated_key_that_would_hide_a_secret() {
    // serde_json keeps the last `content`; the first would go out unscanned and unchanged.
    let body = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}","content":"hello"}}]}}"#,
        aws_access_key()
    );
    let err = cli::redact_request(RequestKind::Openai, body.as_bytes(), &all_redact())
        .expect_err("repeated key");
    assert!(matches!(
        err,
        DlpError::Body(json::BodyError::DuplicateKey { depth: 1 })
    ));
    assert!(!err.to_string().contains(&aws_access_key()));
}
