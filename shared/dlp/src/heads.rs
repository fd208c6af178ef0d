//! A cheap proof that a regex cannot match a short text, checked before calling it.
//!
//! A regex call costs a few hundred instructions even on a ten-byte string (the cache pool,
//! the prefilter's set-up, a Rabin-Karp pass on haystacks too short for its SIMD searcher),
//! and a request body is mostly such strings (roles, model names, ids). [`Heads`] holds the
//! first three bytes (two when a literal is that short) of every literal a match of the
//! regex can start with, as a hashed bit set; a text in which no three (two) adjacent bytes
//! are in the set holds no match.
//!
//! Why that is exact: `regex_syntax`'s literal extractor promises that, when the prefix
//! sequence it returns is finite, *every match of the expression starts with one of its
//! literals* (look-around assertions are treated as matching everywhere, which only
//! widens the set). When every literal has at least `width` bytes, a match thus has the
//! first `width` bytes of one of them, adjacent, at its start; hashing several heads into
//! one bit only adds false alarms (the regex then runs, as it would without the check).
//! When the sequence is infinite or holds a literal shorter than two bytes (a match could
//! start with any byte), there is no set and the check always answers "may match". The pattern is parsed with
//! `regex_syntax`'s defaults, the parser and configuration `Regex::new` uses.
//!
//! Only short texts are checked: on long ones the regex's own SIMD prefilter is faster than
//! this byte loop.

use regex_syntax::hir::literal::Extractor;

/// Texts longer than this go straight to the regex.
pub(crate) const MAX_CHECKED: usize = 128;

/// Bits of the pair hash.
const BITS: usize = 1 << 16;

/// First bytes of every prefix literal of a regex, hashed into a bit set.
#[derive(Debug)]
pub(crate) struct Heads {
    /// `None` when the regex has no usable literal prefixes (then every text may match).
    set: Option<Box<[u64; BITS / 64]>>,
    /// Bytes per head: 3, or 2 when a literal is that short.
    width: usize,
}

/// A head's bytes (2 or 3) as one number, big-endian.
fn key(head: &[u8]) -> u32 {
    head.iter().fold(0u32, |k, b| (k << 8) | u32::from(*b))
}

/// Bit of a head's key: Fibonacci hashing, the top 16 bits of the product.
#[inline]
fn slot(key: u32) -> usize {
    (key.wrapping_mul(0x9E37_79B1) >> (32 - BITS.trailing_zeros())) as usize
}

impl Heads {
    /// The heads of `pattern` (a pattern `Regex::new` accepts).
    pub(crate) fn of(pattern: &str) -> Self {
        let lits = regex_syntax::parse(pattern)
            .ok()
            .and_then(|hir| Extractor::new().extract(&hir).literals().map(<[_]>::to_vec))
            .filter(|lits| lits.iter().all(|l| l.as_bytes().len() >= 2));
        let Some(lits) = lits else {
            return Heads {
                set: None,
                width: 2,
            };
        };
        let width = if lits.iter().all(|l| l.as_bytes().len() >= 3) {
            3
        } else {
            2
        };
        let mut set = Box::new([0u64; BITS / 64]);
        for lit in &lits {
            let k = slot(key(&lit.as_bytes()[..width]));
            set[k / 64] |= 1 << (k % 64);
        }
        Heads {
            set: Some(set),
            width,
        }
    }

    /// False only when the regex provably has no match in `t`.
    #[inline]
    pub(crate) fn may_match(&self, t: &[u8]) -> bool {
        let Some(set) = &self.set else {
            return true;
        };
        if t.len() > MAX_CHECKED {
            return true;
        }
        let Some(first) = t.get(..self.width - 1) else {
            return false;
        };
        // the key of each window of `width` bytes, rolled one byte at a time
        let mask = (1u32 << (8 * self.width)) - 1;
        let mut k = key(first);
        t[self.width - 1..].iter().any(|b| {
            k = ((k << 8) | u32::from(*b)) & mask;
            let s = slot(k);
            set[s / 64] & (1 << (s % 64)) != 0
        })
    }

    /// True when the regex has literal prefixes to check (for tests).
    #[cfg(test)]
    pub(crate) fn is_active(&self) -> bool {
        self.set.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    #[test]
    fn literal_prefixes_are_found_and_required() {
        let h = Heads::of(r"(?:sk|rk)_live_[0-9a-z]{4}|AKIA[A-Z]{4}");
        assert!(h.is_active());
        assert!(h.may_match(b"xx sk_"));
        assert!(h.may_match(b"AKI"));
        assert!(!h.may_match(b"hello world"));
        assert!(!h.may_match(b""));
        assert!(!h.may_match(b"sk"));
    }

    #[test]
    fn two_byte_heads_when_a_literal_is_that_short() {
        let h = Heads::of(r"Q~|:A|JQQJ9");
        assert!(h.is_active());
        assert!(h.may_match(b"x:A"));
        assert!(!h.may_match(b"no colon here"));
    }

    #[test]
    fn no_set_without_usable_prefixes() {
        // a class too large to expand, a single-byte literal, an empty match
        for p in [r"[a-z]+@x", r"a|bc", r"x*"] {
            let h = Heads::of(p);
            assert!(!h.is_active(), "{p}");
            assert!(h.may_match(b"zzz"), "{p}");
        }
    }

    #[test]
    fn long_texts_are_not_checked() {
        let h = Heads::of("AKIA");
        assert!(!h.may_match(&[b'x'; MAX_CHECKED]));
        assert!(h.may_match(&[b'x'; MAX_CHECKED + 1]));
    }

    #[test]
    fn case_insensitive_and_unicode_prefixes() {
        let p = "(?i)secret|パスワード";
        let (h, re) = (Heads::of(p), Regex::new(p).unwrap());
        for t in ["my SeCrEt", "のパスワードは", "nothing here", "パス"] {
            assert!(h.may_match(t.as_bytes()) || !re.is_match(t), "{t}");
        }
        assert!(h.may_match("SECRET".as_bytes()));
        assert!(!h.may_match(b"nothing here"));
    }
}
