//! Folding and decoding (issue 11, item 8): every written form a hostile or careless caller
//! can wrap around a value is seen as the value. Secret-shaped fixtures are assembled at
//! run time from fragments.

use tollgate_dlp::*;
mod common;
use common::aws_access_key;

fn ents(text: &str) -> Vec<(Entity, String)> {
    detect(text)
        .into_iter()
        .map(|d| (d.entity, text[d.start..d.end].to_owned()))
        .collect()
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

/// Standard base64 without a dependency (the crate only decodes).
fn b64(raw: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for ch in raw.chunks(3) {
        let n = ch
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for k in 0..4 {
            if k <= ch.len() {
                out.push(char::from(A[(n >> (18 - 6 * k) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn only(text: &str, e: Entity) -> String {
    let got = ents(text);
    assert_eq!(got.len(), 1, "{text:?}: {got:?}");
    assert_eq!(got[0].0, e, "{text:?}: {got:?}");
    got[0].1.clone()
}

#[test]
fn invisible_separators_between_every_character() {
    for sep in [
        '\u{2063}',
        '\u{2062}',
        '\u{200E}',
        '\u{2066}',
        '\u{E0020}',
        '\u{FE0F}',
    ] {
        let key: String = aws_access_key().chars().flat_map(|c| [c, sep]).collect();
        let text = format!("key {key} here");
        let span = only(&text, Entity::AwsAccessKey);
        // the span ends at the key's last character, before the trailing separator
        assert_eq!(span, key.trim_end_matches(sep));
    }
}

#[test]
fn arabic_indic_and_mathematical_digits() {
    let arabic: String = "4111111111111111"
        .chars()
        .map(|c| char::from_u32(0x660 + c.to_digit(10).unwrap_or(0)).unwrap_or(c))
        .collect();
    assert_eq!(
        only(&format!("card {arabic} ok"), Entity::CreditCard),
        arabic
    );
    let math: String = "4111 1111 1111 1111"
        .chars()
        .map(|c| match c.to_digit(10) {
            Some(d) => char::from_u32(0x1D7F6 + d).unwrap_or(c),
            None => c,
        })
        .collect();
    assert_eq!(only(&format!("card {math}"), Entity::CreditCard), math);
    let persian: String = "536-22-5012"
        .chars()
        .map(|c| match c.to_digit(10) {
            Some(d) => char::from_u32(0x6F0 + d).unwrap_or(c),
            None => c,
        })
        .collect();
    assert_eq!(only(&format!("SSN {persian}"), Entity::UsSsn), persian);
}

#[test]
fn cyrillic_and_greek_look_alikes_in_a_key_prefix() {
    let key = aws_access_key();
    let cyr = format!("\u{410}\u{41A}{}", &key[2..]);
    assert_eq!(only(&format!("use {cyr} now"), Entity::AwsAccessKey), cyr);
    let greek = format!("\u{391}\u{39A}{}", &key[2..]);
    assert_eq!(only(&greek, Entity::AwsAccessKey), greek);
    let sk = openai_key().replacen("sk", "\u{455}k", 1);
    assert_eq!(only(&format!("key: {sk}"), Entity::OpenaiKey), sk);
    // Russian prose stays Russian and is not reported
    assert!(ents("АКСИЯ и ТОКЕН ОТКРЫТ, пароль не задан").is_empty());
}

#[test]
fn dotted_card_numbers() {
    assert_eq!(
        only("pay with 4111.1111.1111.1111 today", Entity::CreditCard),
        "4111.1111.1111.1111"
    );
    // Luhn still decides
    assert!(ents("pay with 4111.1111.1111.1112 today").is_empty());
}

#[test]
fn a_space_between_every_character() {
    let spaced = |s: &str| s.chars().map(String::from).collect::<Vec<_>>().join(" ");
    let card = spaced("4111111111111111");
    assert_eq!(
        only(&format!("card: {card} thanks"), Entity::CreditCard),
        card
    );
    let key = spaced(&aws_access_key());
    assert_eq!(only(&format!("id: {key}"), Entity::AwsAccessKey), key);
    let okey = spaced(&openai_key());
    assert_eq!(
        only(&format!("the key is {okey} ok"), Entity::OpenaiKey),
        okey
    );
    assert!(ents("a b c d e f g h i j k l m n o p").is_empty());
}

#[test]
fn base64_encoded_secrets_in_prose() {
    let enc = b64(format!("my key is {}", openai_key()).as_bytes());
    let text = format!("please decode {enc} and use it");
    assert_eq!(only(&text, Entity::OpenaiKey), enc);
    // url-safe, unpadded, and a password assignment
    let enc2 = b64(b"db password=Tr0ub4dor&3x!")
        .replace('+', "-")
        .replace('/', "_")
        .trim_end_matches('=')
        .to_owned();
    assert_eq!(only(&format!("cfg {enc2}"), Entity::Password), enc2);
    // base64 of base64
    let enc3 = b64(b64(aws_access_key().as_bytes()).as_bytes());
    assert_eq!(only(&enc3, Entity::AwsAccessKey), enc3);
    // base64 of binary and of harmless text is nothing
    let bin: Vec<u8> = (0u8..=255).collect();
    assert!(ents(&b64(&bin)).is_empty());
    assert!(ents(&b64(b"the quick brown fox jumps over the lazy dog")).is_empty());
}

#[test]
fn percent_encoded_values_in_urls() {
    let key = openai_key().replace('-', "%2D");
    let url = format!("https://example.org/cb?token={key}&x=1");
    assert_eq!(only(&url, Entity::OpenaiKey), key);
}
