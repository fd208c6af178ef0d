//! Smaller shape gaps and false alarms of issue 11. Fixtures are assembled at run time.

use tollgate_dlp::validate::b64_encode;
use tollgate_dlp::*;

fn ents(text: &str) -> Vec<(Entity, String)> {
    detect(text)
        .into_iter()
        .map(|d| (d.entity, text[d.start..d.end].to_owned()))
        .collect()
}

fn b64url(raw: &[u8]) -> String {
    b64_encode(raw)
        .replace('+', "-")
        .replace('/', "_")
        .trim_end_matches('=')
        .to_owned()
}

fn luhn_complete(prefix: &str, len: usize) -> String {
    (0..10u8)
        .map(|c| format!("{prefix}{}", char::from(b'0' + c)))
        .find(|d| d.len() == len && validate::luhn(d.as_bytes()))
        .unwrap_or_default()
}

#[test]
fn pretty_printed_and_two_segment_jwts() {
    let payload = b64url(b"{\"sub\":\"42\",\"iat\":1700000000}");
    let sig = b64url(&[7u8; 32]);
    for header in [
        "{\n  \"alg\": \"HS256\",\n  \"typ\": \"JWT\"\n}",
        "{\r\n\"alg\":\"RS256\"}",
        "{ \"alg\": \"ES256\" }",
    ] {
        let jwt = format!("{}.{payload}.{sig}", b64url(header.as_bytes()));
        assert_eq!(
            ents(&format!("token {jwt} end")),
            vec![(Entity::Jwt, jwt.clone())]
        );
    }
    // unsigned, two segments (with and without the trailing dot)
    let h = b64url(b"{\"alg\":\"none\"}");
    for jwt in [format!("{h}.{payload}"), format!("{h}.{payload}.")] {
        let got = ents(&format!("token {jwt} end"));
        assert_eq!(got.len(), 1, "{jwt}: {got:?}");
        assert_eq!(got[0].0, Entity::Jwt);
    }
    // two segments whose payload is not JSON: not a token
    assert!(ents(&format!("x {h}.{} y", b64url(b"plain words here"))).is_empty());
}

#[test]
fn punycode_tld_emails_are_whole() {
    let text = "write to info@xn--d1acufc.xn--p1ai today";
    assert_eq!(
        ents(text),
        vec![(Entity::Email, "info@xn--d1acufc.xn--p1ai".to_owned())]
    );
}

#[test]
fn values_keep_inner_angle_brackets_and_a_trailing_bang() {
    assert_eq!(
        ents("password=Ab>c9<d2x!"),
        vec![(Entity::Password, "Ab>c9<d2x!".to_owned())]
    );
    assert_eq!(
        ents("<password>Tr0ub4dor3</password>")
            .into_iter()
            .map(|x| x.1)
            .collect::<Vec<_>>(),
        vec!["Tr0ub4dor3".to_owned()]
    );
    assert_eq!(
        ents("my password is Summer2024!"),
        vec![(Entity::Password, "Summer2024!".to_owned())]
    );
}

#[test]
fn aws_stripe_and_slack_prefixes() {
    for p in ["ABIA", "ACCA", "A3TX", "AKIA", "ASIA"] {
        let k = format!("{p}{}", "Z7QW3ERT2YUI4OPL");
        assert_eq!(ents(&format!("id {k} ok")), vec![(Entity::AwsAccessKey, k)]);
    }
    for p in ["sk_prod_", "rk_prod_"] {
        let k = format!("{p}{}", "q8Zr2mX0vL7pW4nK9sD1fG6h");
        assert_eq!(ents(&format!("key {k}")), vec![(Entity::StripeKey, k)]);
    }
    for p in ["xoxe-", "xoxo-"] {
        let k = format!(
            "{p}{}-{}-{}",
            "1234567890", "9876543210", "q8Zr2mX0vL7pW4nK9sD1fG6h"
        );
        assert_eq!(ents(&format!("slack {k}")), vec![(Entity::SlackToken, k)]);
    }
}

#[test]
fn dotted_ssns_grouped_ibans_and_ips_before_at() {
    assert_eq!(
        ents("SSN 536.22.5012 on file"),
        vec![(Entity::UsSsn, "536.22.5012".to_owned())]
    );
    for iban in [
        "DE89-3704-0044-0532-0130-00",
        "DE89 37040044 0532013000",
        "GB82 WEST 1234 5698 7654 32",
    ] {
        assert_eq!(
            ents(&format!("IBAN {iban}.")),
            vec![(Entity::Iban, iban.to_owned())]
        );
    }
    assert_eq!(
        ents("ssh to 10.20.30.40@eth0 now"),
        vec![(Entity::IpAddress, "10.20.30.40".to_owned())]
    );
}

#[test]
fn twelve_digit_maestro_needs_a_card_word() {
    let m = luhn_complete("50000000000", 12);
    let grouped = format!("{} {} {}", &m[..4], &m[4..8], &m[8..]);
    assert_eq!(
        ents(&format!("Maestro card {grouped} expires 09/27")),
        vec![(Entity::CreditCard, grouped.clone())]
    );
    assert_eq!(
        ents(&format!("カード番号{m}で決済")),
        vec![(Entity::CreditCard, m.clone())]
    );
    assert!(
        !ents(&format!("order {grouped} shipped"))
            .iter()
            .any(|(e, _)| *e == Entity::CreditCard)
    );
}

#[test]
fn false_alarms_removed() {
    // 4-4-4 with a valid My Number check digit but no context word
    let body = "12345678901";
    let mut n = String::new();
    for c in b'0'..=b'9' {
        let cand = format!("{body}{}", char::from(c));
        if validate::my_number_ok(cand.as_bytes()) {
            n = cand;
        }
    }
    let grouped = format!("{}-{}-{}", &n[..4], &n[4..8], &n[8..]);
    assert!(ents(&format!("tracking {grouped} delivered")).is_empty());
    assert_eq!(
        ents(&format!("マイナンバー：{grouped}")),
        vec![(Entity::JpMyNumber, grouped.clone())]
    );
    // digit groups inside an IBAN with a wrong check: nothing
    let card = luhn_complete("411111111111111", 16);
    let bad = format!(
        "DE00 {} {} {} {} 99",
        &card[..4],
        &card[4..8],
        &card[8..12],
        &card[12..]
    );
    assert!(ents(&format!("IBAN {bad}")).is_empty(), "{:?}", ents(&bad));
    // a bare 10-digit number in a sentence about a US SSN
    assert!(
        !ents("社会保障番号は5362250123ではありません")
            .iter()
            .any(|(e, _)| *e == Entity::Phone)
    );
    assert!(
        !ents("the social security number on the phone form was 2025550123")
            .iter()
            .any(|(e, _)| *e == Entity::Phone)
    );
}
