//! Client key format: `tgk_{live|test}_` + key id (12 base62) + secret (32 base62) + checksum
//! (6 base62 of the CRC32/IEEE of everything before it). This module owns parsing, generation,
//! the HMAC digest and the display form. It never logs, and `Debug` on a key never shows the
//! secret.

use crate::base62::{self, is_base62};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::fmt;
use subtle::ConstantTimeEq;

pub const KEY_ID_LEN: usize = 12;
pub const SECRET_LEN: usize = 32;
pub const CHECKSUM_LEN: usize = base62::CHECKSUM_LEN;
pub const BODY_LEN: usize = KEY_ID_LEN + SECRET_LEN + CHECKSUM_LEN;
/// The scanner rule shipped for gitleaks / detect-secrets (docs/key-scanning.md).
pub const SCANNER_REGEX: &str = r"\btgk_(live|test)_[0-9A-Za-z]{50}\b";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyEnv {
    Live,
    Test,
}

impl KeyEnv {
    pub fn prefix(self) -> &'static str {
        match self {
            KeyEnv::Live => "tgk_live_",
            KeyEnv::Test => "tgk_test_",
        }
    }
}

impl std::str::FromStr for KeyEnv {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "live" => Ok(KeyEnv::Live),
            "test" => Ok(KeyEnv::Test),
            other => Err(format!(
                "key environment must be live or test, not {other:?}"
            )),
        }
    }
}

/// Why a presented string is not a well-formed key. Used for the audit line only: the client
/// always gets the same 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("no key presented")]
    Missing,
    #[error("unknown prefix")]
    Prefix,
    #[error("wrong length")]
    Length,
    #[error("non-base62 character")]
    Charset,
    #[error("checksum mismatch")]
    Checksum,
}

/// A well-formed client key (shape and checksum verified). Holds the full plaintext, which
/// only this module and the HMAC ever read.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKey {
    full: String,
    env: KeyEnv,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

impl ClientKey {
    /// Shape and checksum only: no I/O, constant work for any input.
    pub fn parse(s: &str) -> Result<Self, KeyFormatError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(KeyFormatError::Missing);
        }
        let env = if s.starts_with(KeyEnv::Live.prefix()) {
            KeyEnv::Live
        } else if s.starts_with(KeyEnv::Test.prefix()) {
            KeyEnv::Test
        } else {
            return Err(KeyFormatError::Prefix);
        };
        let body = &s.as_bytes()[env.prefix().len()..];
        if body.len() != BODY_LEN {
            return Err(KeyFormatError::Length);
        }
        if !body.iter().all(|&b| is_base62(b)) {
            return Err(KeyFormatError::Charset);
        }
        let split = s.len() - CHECKSUM_LEN;
        let expected = base62::crc32_checksum(&s.as_bytes()[..split]);
        if !bool::from(expected.as_slice().ct_eq(&s.as_bytes()[split..])) {
            return Err(KeyFormatError::Checksum);
        }
        Ok(Self {
            full: s.to_owned(),
            env,
        })
    }

    /// A fresh key from a CSPRNG (the caller passes `OsRng`; tests pass a seeded RNG).
    pub fn generate(env: KeyEnv, rng: &mut dyn RngCore) -> Self {
        let mut s = String::with_capacity(env.prefix().len() + BODY_LEN);
        s.push_str(env.prefix());
        // Two draws (id, then secret), as before: a seeded RNG gives the same keys.
        base62::push_random(&mut s, KEY_ID_LEN, |b| rng.fill_bytes(b));
        base62::push_random(&mut s, SECRET_LEN, |b| rng.fill_bytes(b));
        let sum = base62::crc32_checksum(s.as_bytes());
        s.extend(sum.iter().map(|&c| char::from(c)));
        Self { full: s, env }
    }

    pub fn env(&self) -> KeyEnv {
        self.env
    }

    pub fn key_id(&self) -> &str {
        let start = self.env.prefix().len();
        &self.full[start..start + KEY_ID_LEN]
    }

    /// The plaintext. Call only to show it once at issue time, or to hash it.
    pub fn expose(&self) -> &str {
        &self.full
    }

    /// Prefix + key id + `…` + last 4: safe for logs, tables and audit lines.
    pub fn display(&self) -> String {
        display_form(self.env, self.key_id(), &self.full[self.full.len() - 4..])
    }

    /// The last 4 characters, stored so the display form can be rebuilt without the key.
    pub fn last4(&self) -> &str {
        &self.full[self.full.len() - 4..]
    }

    pub fn digest(&self, pepper: &[u8]) -> [u8; 32] {
        hmac_sha256(pepper, self.full.as_bytes())
    }
}

pub fn display_form(env: KeyEnv, key_id: &str, last4: &str) -> String {
    format!("{}{}…{}", env.prefix(), key_id, last4)
}

pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; new_from_slice cannot fail for Hmac<Sha256>.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Constant-time equality of two digests.
pub fn digest_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{SeedableRng, rngs::StdRng};

    fn key(seed: u64) -> ClientKey {
        ClientKey::generate(KeyEnv::Test, &mut StdRng::seed_from_u64(seed))
    }

    #[test]
    fn generated_key_has_contract_shape_and_parses_back() {
        let k = key(1);
        let s = k.expose();
        assert!(s.starts_with("tgk_test_"));
        assert_eq!(s.len(), "tgk_test_".len() + 50);
        let re = regex_lite_match(s);
        assert!(re, "scanner regex must match a generated key");
        assert_eq!(ClientKey::parse(s).unwrap(), k);
        assert_eq!(k.key_id().len(), 12);
    }

    // The contract's scanner regex, checked without a regex dependency in the core.
    fn regex_lite_match(s: &str) -> bool {
        let body = s
            .strip_prefix("tgk_live_")
            .or_else(|| s.strip_prefix("tgk_test_"));
        body.is_some_and(|b| b.len() == 50 && b.bytes().all(|c| c.is_ascii_alphanumeric()))
    }

    #[test]
    fn checksum_is_crc32_ieee_of_prefix_and_body_in_padded_base62() {
        let k = key(2);
        let s = k.expose();
        let (before, sum) = s.split_at(s.len() - 6);
        let crc = crc32fast::hash(before.as_bytes());
        // Decode the 6 base62 characters and compare with zlib's CRC32.
        let decoded = sum.bytes().fold(0u64, |acc, c| {
            acc * 62 + base62::ALPHABET.iter().position(|&a| a == c).unwrap() as u64
        });
        assert_eq!(decoded, u64::from(crc));
    }

    #[test]
    fn known_vector_matches_independent_crc32() {
        // Built by hand: prefix + 12 + 32 chars, checksum computed from zlib's CRC32 value.
        let before = format!("tgk_test_{}{}", "A".repeat(12), "b".repeat(32));
        let crc = crc32fast::hash(before.as_bytes());
        let full = format!("{before}{}", base62::encode_padded(u64::from(crc), 6));
        assert!(ClientKey::parse(&full).is_ok());
    }

    #[test]
    fn each_malformation_is_named() {
        let good = key(3).expose().to_owned();
        assert_eq!(ClientKey::parse("").unwrap_err(), KeyFormatError::Missing);
        assert_eq!(
            ClientKey::parse(&good.replacen("tgk_test_", "tgk_prod_", 1)).unwrap_err(),
            KeyFormatError::Prefix
        );
        assert_eq!(
            ClientKey::parse(&good[..good.len() - 1]).unwrap_err(),
            KeyFormatError::Length
        );
        let mut bad_char = good.clone();
        bad_char.replace_range(20..21, "-");
        assert_eq!(
            ClientKey::parse(&bad_char).unwrap_err(),
            KeyFormatError::Charset
        );
        let mut flipped = good.clone();
        let c = if &good[20..21] == "a" { "b" } else { "a" };
        flipped.replace_range(20..21, c);
        assert_eq!(
            ClientKey::parse(&flipped).unwrap_err(),
            KeyFormatError::Checksum
        );
    }

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let k = key(4);
        let secret = &k.expose()["tgk_test_".len() + 12..k.expose().len() - 6];
        let shown = format!("{k:?} {}", k.display());
        assert!(!shown.contains(secret));
        assert!(
            k.display()
                .starts_with(&format!("tgk_test_{}…", k.key_id()))
        );
        assert!(k.display().ends_with(k.last4()));
    }

    #[test]
    fn digest_depends_on_pepper_and_compares_in_constant_time() {
        let k = key(5);
        let a = k.digest(b"pepper-one");
        let b = k.digest(b"pepper-two");
        assert_ne!(a, b);
        assert!(digest_eq(&a, &k.digest(b"pepper-one")));
        assert!(!digest_eq(&a, &b));
        assert!(!digest_eq(&a, &a[..31]));
    }

    proptest! {
        #[test]
        fn parser_never_panics_and_accepts_only_checksummed(s in "\\PC{0,80}") {
            if let Ok(k) = ClientKey::parse(&s) {
                prop_assert_eq!(k.expose(), s.trim());
            }
        }

        #[test]
        fn any_single_character_change_is_rejected(seed in any::<u64>(), pos in 9usize..59, c in "[0-9A-Za-z]") {
            let good = key(seed).expose().to_owned();
            let mut changed = good.clone();
            changed.replace_range(pos..pos + 1, &c);
            prop_assume!(changed != good);
            prop_assert!(ClientKey::parse(&changed).is_err());
        }

        #[test]
        fn generated_keys_always_round_trip(seed in any::<u64>(), live in any::<bool>()) {
            let env = if live { KeyEnv::Live } else { KeyEnv::Test };
            let k = ClientKey::generate(env, &mut StdRng::seed_from_u64(seed));
            prop_assert_eq!(ClientKey::parse(k.expose()).unwrap(), k);
        }
    }
}
