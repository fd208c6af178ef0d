//! Checksum and plausibility validators. Pure functions over ASCII digits /
//! bytes; every candidate the scanner reports has passed one of these.

use crate::base62::{crc32_checksum, is_base62};

/// Luhn (mod 10) check over ASCII digits.
pub fn luhn(digits: &[u8]) -> bool {
    if digits.is_empty() {
        return false;
    }
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d.wrapping_sub(b'0'));
        if v > 9 {
            return false;
        }
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

fn prefix_num(d: &[u8], n: usize) -> u32 {
    d.iter()
        .take(n)
        .fold(0u32, |acc, x| acc * 10 + u32::from(x.wrapping_sub(b'0')))
}

/// Issuer prefix / length plausibility for payment card numbers (all major
/// brands, incl. the Mastercard 2-series 2221–2720).
pub fn card_brand_ok(d: &[u8]) -> bool {
    let len = d.len();
    if !(12..=19).contains(&len) {
        return false;
    }
    let p2 = prefix_num(d, 2);
    let p3 = prefix_num(d, 3);
    let p4 = prefix_num(d, 4);
    let p6 = prefix_num(d, 6);
    // Visa
    (d[0] == b'4' && matches!(len, 13 | 16 | 19))
        // Mastercard
        || (((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16)
        // American Express
        || ((p2 == 34 || p2 == 37) && len == 15)
        // Discover
        || ((p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622126..=622925).contains(&p6))
            && (16..=19).contains(&len))
        // JCB (incl. legacy 15-digit 2131 / 1800)
        || ((3528..=3589).contains(&p4) && (16..=19).contains(&len))
        || ((p4 == 2131 || p4 == 1800) && len == 15)
        // Diners Club
        || (((300..=305).contains(&p3) || p4 == 3095 || p2 == 36 || p2 == 38 || p2 == 39)
            && (14..=19).contains(&len))
        // UnionPay
        || (p2 == 62 && (16..=19).contains(&len))
        // Maestro
        || ((p2 == 50 || (56..=58).contains(&p2) || p2 == 67 || p4 == 6304 || p4 == 6390)
            && (12..=19).contains(&len))
        // Mir
        || ((2200..=2204).contains(&p4) && (16..=19).contains(&len))
        // RuPay
        || ((p2 == 60 || p2 == 81 || p2 == 82 || p3 == 508) && len == 16)
}

/// Expected IBAN length per country (ISO 13616 registry).
pub fn iban_length(cc: &[u8]) -> Option<usize> {
    let l = match cc {
        b"AD" => 24,
        b"AE" => 23,
        b"AL" => 28,
        b"AT" => 20,
        b"AZ" => 28,
        b"BA" => 20,
        b"BE" => 16,
        b"BG" => 22,
        b"BH" => 22,
        b"BI" => 27,
        b"BR" => 29,
        b"BY" => 28,
        b"CH" => 21,
        b"CR" => 22,
        b"CY" => 28,
        b"CZ" => 24,
        b"DE" => 22,
        b"DJ" => 27,
        b"DK" => 18,
        b"DO" => 28,
        b"EE" => 20,
        b"EG" => 29,
        b"ES" => 24,
        b"FI" => 18,
        b"FK" => 18,
        b"FO" => 18,
        b"FR" => 27,
        b"GB" => 22,
        b"GE" => 22,
        b"GI" => 23,
        b"GL" => 18,
        b"GR" => 27,
        b"GT" => 28,
        b"HR" => 21,
        b"HU" => 28,
        b"IE" => 22,
        b"IL" => 23,
        b"IQ" => 23,
        b"IS" => 26,
        b"IT" => 27,
        b"JO" => 30,
        b"KW" => 30,
        b"KZ" => 20,
        b"LB" => 28,
        b"LC" => 32,
        b"LI" => 21,
        b"LT" => 20,
        b"LU" => 20,
        b"LV" => 21,
        b"LY" => 25,
        b"MC" => 27,
        b"MD" => 24,
        b"ME" => 22,
        b"MK" => 19,
        b"MN" => 20,
        b"MR" => 27,
        b"MT" => 31,
        b"MU" => 30,
        b"NI" => 28,
        b"NL" => 18,
        b"NO" => 15,
        b"OM" => 23,
        b"PK" => 24,
        b"PL" => 28,
        b"PS" => 29,
        b"PT" => 25,
        b"QA" => 29,
        b"RO" => 24,
        b"RS" => 22,
        b"RU" => 33,
        b"SA" => 24,
        b"SC" => 31,
        b"SD" => 18,
        b"SE" => 24,
        b"SI" => 19,
        b"SK" => 24,
        b"SM" => 27,
        b"SO" => 23,
        b"ST" => 25,
        b"SV" => 28,
        b"TL" => 23,
        b"TN" => 24,
        b"TR" => 26,
        b"UA" => 29,
        b"VA" => 22,
        b"VG" => 24,
        b"XK" => 20,
        b"YE" => 30,
        _ => return None,
    };
    Some(l)
}

/// ISO 7064 mod 97-10 over a compact IBAN (uppercase alphanumerics).
pub fn iban_mod97(iban: &[u8]) -> bool {
    if iban.len() < 5 {
        return false;
    }
    let mut rem: u32 = 0;
    let rotated = iban[4..].iter().chain(iban[..4].iter());
    for &c in rotated {
        match c {
            b'0'..=b'9' => rem = (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => rem = (rem * 100 + u32::from(c - b'A' + 10)) % 97,
            _ => return false,
        }
    }
    rem == 1
}

/// US SSN area / group / serial rules (and well-known advertising numbers).
pub fn ssn_ok(d: &[u8]) -> bool {
    if d.len() != 9 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let area = prefix_num(d, 3);
    let group = prefix_num(&d[3..], 2);
    let serial = prefix_num(&d[5..], 4);
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
        return false;
    }
    !matches!(d, b"078051120" | b"219099999" | b"123456789")
}

/// Japanese My Number (個人番号): 12 digits, last is the check digit.
pub fn my_number_ok(d: &[u8]) -> bool {
    if d.len() != 12 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut sum = 0u32;
    for n in 1..=11usize {
        let p = u32::from(d[11 - n] - b'0');
        let q = if n <= 6 { n + 1 } else { n - 5 } as u32;
        sum += p * q;
    }
    let r = sum % 11;
    let cd = if r <= 1 { 0 } else { 11 - r };
    u32::from(d[11] - b'0') == cd
}

/// Japanese Corporate Number (法人番号): 13 digits, the FIRST is the check digit.
pub fn corporate_number_ok(d: &[u8]) -> bool {
    if d.len() != 13 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut sum = 0u32;
    for n in 1..=12usize {
        let p = u32::from(d[13 - n] - b'0');
        let q = if n % 2 == 1 { 1 } else { 2 };
        sum += p * q;
    }
    let cd = 9 - (sum % 9);
    u32::from(d[0] - b'0') == cd
}

/// NANP plausibility for a 10-digit US/CA number.
pub fn nanp_ok(d: &[u8]) -> bool {
    if d.len() != 10 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let area_ok = (b'2'..=b'9').contains(&d[0]) && d[1] != b'9' && !(d[1] == b'1' && d[2] == b'1');
    let exch_ok = (b'2'..=b'9').contains(&d[3]) && !(d[4] == b'1' && d[5] == b'1');
    area_ok && exch_ok
}

/// tollgate client key: `tgk_{live|test}_` + 12 + 32 + 6 base62, the last 6 being
/// the CRC32 (IEEE) of every character before them, prefix included.
pub fn tollgate_key_ok(key: &[u8]) -> bool {
    if key.len() != 59 || !(key.starts_with(b"tgk_live_") || key.starts_with(b"tgk_test_")) {
        return false;
    }
    if !key[9..].iter().all(|&b| is_base62(b)) {
        return false;
    }
    crc32_checksum(&key[..53]) == key[53..]
}

/// GitHub classic token (`ghp_` …): 30 random base62 chars + 6-char base62 CRC32
/// of those 30 chars.
pub fn github_token_ok(tok: &[u8]) -> bool {
    if tok.len() != 40 || tok[3] != b'_' {
        return false;
    }
    let body = &tok[4..];
    if !body.iter().all(|&b| is_base62(b)) {
        return false;
    }
    crc32_checksum(&body[..30]) == body[30..]
}

/// Shannon entropy in bits per byte.
pub fn entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Character-class flags: (lower, upper, digit, other).
pub fn classes(s: &[u8]) -> (bool, bool, bool, bool) {
    let mut r = (false, false, false, false);
    for &b in s {
        match b {
            b'a'..=b'z' => r.0 = true,
            b'A'..=b'Z' => r.1 = true,
            b'0'..=b'9' => r.2 = true,
            _ => r.3 = true,
        }
    }
    r
}

/// Number of character classes present.
pub fn class_count(s: &[u8]) -> usize {
    let (a, b, c, d) = classes(s);
    usize::from(a) + usize::from(b) + usize::from(c) + usize::from(d)
}

/// Heuristics for documentation placeholders and dummy values:
/// `sk-xxxx…`, `your-api-key`, `<token>`, `${VAR}`, `abcdef…`, `1234…`, long runs
/// of one character, `EXAMPLE`.
pub fn looks_placeholder(s: &[u8]) -> bool {
    if s.is_empty() {
        return true;
    }
    let lower: Vec<u8> = s.to_ascii_lowercase();
    const WORDS: [&[u8]; 11] = [
        b"xxxx",
        b"...",
        b"your",
        b"example",
        b"placeholder",
        b"dummy",
        b"redacted",
        b"insert",
        b"replace",
        b"sample",
        b"changeme",
    ];
    if WORDS
        .iter()
        .any(|w| memchr::memmem::find(&lower, w).is_some())
    {
        return true;
    }
    if s.iter()
        .any(|b| matches!(b, b'<' | b'>' | b'{' | b'}' | b'$' | b'*' | b'[' | b']'))
    {
        return true;
    }
    // a run of 5+ identical characters
    let mut run = 1;
    for w in s.windows(2) {
        if w[0] == w[1] {
            run += 1;
            if run >= 5 {
                return true;
            }
        } else {
            run = 1;
        }
    }
    // mostly sequential (abcdef…, 123456…)
    if s.len() >= 8 {
        let seq = s
            .windows(2)
            .filter(|w| w[1] == w[0].wrapping_add(1))
            .count();
        if seq * 10 >= (s.len() - 1) * 4 {
            return true;
        }
    }
    false
}

/// Placeholder words only (for long bodies such as PEM blocks).
pub fn looks_placeholder_words(s: &[u8]) -> bool {
    let lower: Vec<u8> = s.to_ascii_lowercase();
    [
        &b"..."[..],
        b"xxxxx",
        b"redacted",
        b"placeholder",
        b"<",
        b"your key",
    ]
    .iter()
    .any(|w| memchr::memmem::find(&lower, w).is_some())
}

/// Base64url (or standard base64) decode without padding requirements.
pub fn b64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4 + 2);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Standard base64 with padding (re-encoding a decoded document after redaction).
pub fn b64_encode(raw: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(raw.len().div_ceil(3) * 4);
    for ch in raw.chunks(3) {
        let n = ch
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for k in 0..4 {
            if k <= ch.len() {
                out.push(char::from(A[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// JWT header check: decodes to a JSON object carrying a string `alg`.
pub fn jwt_header_ok(seg: &[u8]) -> bool {
    let Some(raw) = b64_decode(seg) else {
        return false;
    };
    match serde_json::from_slice::<serde_json::Value>(&raw) {
        Ok(serde_json::Value::Object(m)) => m.get("alg").is_some_and(|a| a.is_string()),
        _ => false,
    }
}

/// Documentation / unroutable IPv4 ranges we never flag.
pub fn ipv4_reportable(o: [u8; 4]) -> bool {
    !matches!(
        o,
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] | [0, 0, 0, 0] | [255, _, _, _]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_brands() {
        assert!(luhn(b"4111111111111111"));
        assert!(!luhn(b"4111111111111112"));
        assert!(card_brand_ok(b"4111111111111111"));
        assert!(luhn(b"2221000000000009") && card_brand_ok(b"2221000000000009"));
        assert!(luhn(b"378282246310005") && card_brand_ok(b"378282246310005"));
        assert!(!card_brand_ok(b"9784061234567"));
    }

    #[test]
    fn iban() {
        assert!(iban_mod97(b"DE89370400440532013000"));
        assert!(iban_mod97(b"GB82WEST12345698765432"));
        assert!(!iban_mod97(b"GB82WEST12345698765433"));
        assert_eq!(iban_length(b"DE"), Some(22));
    }

    #[test]
    fn ssn() {
        assert!(ssn_ok(b"536225012"));
        assert!(!ssn_ok(b"000225012"));
        assert!(!ssn_ok(b"666225012"));
        assert!(!ssn_ok(b"912225012"));
        assert!(!ssn_ok(b"536005012"));
        assert!(!ssn_ok(b"536220000"));
    }

    #[test]
    fn my_number_and_corporate() {
        // 12345678901 -> check digit 8
        assert!(my_number_ok(b"123456789018"));
        assert!(!my_number_ok(b"123456789012"));
        // National Tax Agency sample corporate number
        assert!(corporate_number_ok(b"5835678256246"));
        assert!(!corporate_number_ok(b"6835678256246"));
    }

    #[test]
    fn key_and_github_checksums() {
        let mut k = b"tgk_live_".to_vec();
        k.extend_from_slice(b"AbCdEf012345");
        k.extend_from_slice(b"0123456789abcdefghijABCDEFGHIJkl");
        let c = crc32_checksum(&k);
        k.extend_from_slice(&c);
        assert!(tollgate_key_ok(&k));
        let last = k.len() - 1;
        k[last] = if k[last] == b'0' { b'1' } else { b'0' };
        assert!(!tollgate_key_ok(&k));
        let mut g = b"ghp_".to_vec();
        g.extend_from_slice(b"aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1");
        let c = crc32_checksum(&g[4..]);
        g.extend_from_slice(&c);
        assert!(github_token_ok(&g));
    }

    #[test]
    fn placeholders() {
        assert!(looks_placeholder(b"xxxxxxxxxxxxxxxxxxxx"));
        assert!(looks_placeholder(b"your-api-key-goes-here"));
        assert!(looks_placeholder(b"abcdefghijklmnopqrstuvwxyz"));
        assert!(!looks_placeholder(b"T3BlbkFJq8Zr2mX0vL7pW4nK9sD1fG6h"));
    }

    #[test]
    fn jwt_header() {
        assert!(jwt_header_ok(b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"));
        assert!(!jwt_header_ok(b"eyJmb28iOiJiYXIifQ"));
    }
}
