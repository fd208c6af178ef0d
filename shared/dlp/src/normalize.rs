//! Normalized view of a text with an offset map back to the original.
//!
//! The scanner never runs its patterns on the raw text. It runs them on a
//! folded copy in which
//! - full-width ASCII (`Ａ`, `０`, `＠`, `：` …) becomes ASCII, U+3000 becomes a space,
//! - dash variants (`‐ ‑ ‒ – — ― − －`, and `ー`/`ｰ` right after a digit or letter) become `-`,
//! - zero-width characters (U+200B..U+200D, U+2060, U+FEFF, soft hyphen) are dropped,
//! - no-break and thin spaces become a plain space,
//! - JSON string escapes (`\n`, `\t`, `\"`, `\/`, `\\`, `\uXXXX`) are decoded, so a
//!   value written inside a JSON document (e.g. tool-call arguments) is seen as
//!   the value itself.
//!
//! Every folded character is recorded as an [`Edit`]; positions between edits map
//! linearly, so the map costs nothing for plain text. ASCII text without
//! backslashes is borrowed as is.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy)]
struct Edit {
    /// Start of the replacement in the normalized text.
    norm: usize,
    /// Length of the replacement in the normalized text (0 when dropped).
    norm_len: usize,
    /// Start of the replaced characters in the original text.
    orig: usize,
    /// Length of the replaced characters in the original text.
    orig_len: usize,
}

/// Normalized text plus the map back to the original.
#[derive(Debug, Clone)]
pub struct Normalized<'a> {
    text: Cow<'a, str>,
    edits: Vec<Edit>,
}

/// Result of folding one character.
enum Fold {
    Keep,
    Drop,
    To(char),
}

#[inline]
fn fold_char(c: char) -> Fold {
    match c {
        '\u{FF01}'..='\u{FF5E}' => match char::from_u32(c as u32 - 0xFEE0) {
            Some(a) => Fold::To(a),
            None => Fold::Keep,
        },
        '\u{3000}' | '\u{00A0}' | '\u{2007}' | '\u{202F}' | '\u{2009}' | '\u{200A}' => {
            Fold::To(' ')
        }
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE63}' | '\u{FE58}' => Fold::To('-'),
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => Fold::Drop,
        _ => Fold::Keep,
    }
}

fn hex4(b: &[u8]) -> Option<u32> {
    if b.len() < 4 {
        return None;
    }
    let mut v = 0u32;
    for &x in &b[..4] {
        v = v * 16 + (x as char).to_digit(16)?;
    }
    Some(v)
}

impl<'a> Normalized<'a> {
    /// Build the normalized view of `s`.
    pub fn new(s: &'a str) -> Self {
        let bytes = s.as_bytes();
        if s.is_ascii() && memchr::memchr(b'\\', bytes).is_none() {
            return Normalized {
                text: Cow::Borrowed(s),
                edits: Vec::new(),
            };
        }
        // `out` is only materialised at the first edit; text that needs none
        // (most Japanese prose) stays borrowed.
        let mut out = String::new();
        let mut edits: Vec<Edit> = Vec::new();
        let mut i = 0;
        let mut run_start = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b < 0x80 && b != b'\\' {
                i += 1;
                continue;
            }
            if b >= 0x80 {
                // Only chars with these lead bytes can fold: U+00A0/AD (C2),
                // U+2007..U+2212 (E2), U+3000/U+30FC (E3), U+FExx/FFxx (EF).
                let clen = match b {
                    0xC0..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    _ => 4,
                };
                let maybe = match b {
                    0xC2 | 0xE2 | 0xEF => true,
                    0xE3 => matches!(bytes.get(i + 1..i + 3), Some([0x80, 0x80] | [0x83, 0xBC])),
                    _ => false,
                };
                if !maybe {
                    i += clen;
                    continue;
                }
                let Some(c) = s.get(i..).and_then(|r| r.chars().next()) else {
                    break;
                };
                let clen = c.len_utf8();
                // The katakana prolonged sound mark is a dash only right after a digit
                // or letter (090ー1234ー5678); inside katakana words (パスワード) it stays.
                let fold = if matches!(c, '\u{30FC}' | '\u{FF70}') {
                    let prev = if out.is_empty() && edits.is_empty() {
                        bytes[..i].last().copied()
                    } else {
                        out.push_str(&s[run_start..i]);
                        run_start = i;
                        out.as_bytes().last().copied()
                    };
                    if prev.is_some_and(|p| p.is_ascii_alphanumeric()) {
                        Fold::To('-')
                    } else {
                        Fold::Keep
                    }
                } else {
                    fold_char(c)
                };
                if matches!(fold, Fold::Keep) {
                    i += clen;
                    continue;
                }
                if edits.is_empty() && out.is_empty() {
                    out.reserve(s.len());
                }
                out.push_str(&s[run_start..i]);
                match fold {
                    Fold::To(a) => {
                        edits.push(Edit {
                            norm: out.len(),
                            norm_len: a.len_utf8(),
                            orig: i,
                            orig_len: clen,
                        });
                        out.push(a);
                    }
                    _ => edits.push(Edit {
                        norm: out.len(),
                        norm_len: 0,
                        orig: i,
                        orig_len: clen,
                    }),
                }
                i += clen;
                run_start = i;
                continue;
            }
            // backslash: JSON escapes
            let next = bytes.get(i + 1).copied();
            let simple = match next {
                Some(b'n') => Some('\n'),
                Some(b't') => Some('\t'),
                Some(b'r') => Some('\r'),
                Some(b'"') => Some('"'),
                Some(b'/') => Some('/'),
                Some(b'\\') => Some('\\'),
                _ => None,
            };
            let decoded = if next == Some(b'u') {
                hex4(&bytes[i + 2..])
                    .and_then(char::from_u32)
                    .filter(|c| *c != '\\')
            } else {
                None
            };
            if simple.is_none() && decoded.is_none() {
                i += 1;
                continue;
            }
            if edits.is_empty() && out.is_empty() {
                out.reserve(s.len());
            }
            out.push_str(&s[run_start..i]);
            if let Some(c) = simple {
                edits.push(Edit {
                    norm: out.len(),
                    norm_len: 1,
                    orig: i,
                    orig_len: 2,
                });
                out.push(c);
                i += 2;
            } else if let Some(c) = decoded {
                let norm = out.len();
                match fold_char(c) {
                    Fold::Keep => out.push(c),
                    Fold::To(a) => out.push(a),
                    Fold::Drop => {}
                }
                edits.push(Edit {
                    norm,
                    norm_len: out.len() - norm,
                    orig: i,
                    orig_len: 6,
                });
                i += 6;
            }
            run_start = i;
        }
        if edits.is_empty() {
            return Normalized {
                text: Cow::Borrowed(s),
                edits,
            };
        }
        out.push_str(&s[run_start..]);
        Normalized {
            text: Cow::Owned(out),
            edits,
        }
    }

    /// The normalized text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the normalized text is the original text.
    pub fn is_identity(&self) -> bool {
        self.edits.is_empty()
    }

    /// Map a normalized start offset (a char boundary) to the original text.
    pub fn orig_start(&self, n: usize) -> usize {
        let idx = self.edits.partition_point(|e| e.norm <= n);
        if idx == 0 {
            return n;
        }
        let e = self.edits[idx - 1];
        if n < e.norm + e.norm_len {
            e.orig
        } else {
            e.orig + e.orig_len + (n - e.norm - e.norm_len)
        }
    }

    /// Map a normalized end offset (exclusive, a char boundary) to the original
    /// text. Dropped characters right after the span are not included.
    pub fn orig_end(&self, n: usize) -> usize {
        let idx = self.edits.partition_point(|e| e.norm < n);
        if idx == 0 {
            return n;
        }
        let e = self.edits[idx - 1];
        if n < e.norm + e.norm_len {
            e.orig + e.orig_len
        } else {
            e.orig + e.orig_len + (n - e.norm - e.norm_len)
        }
    }
}

/// Normalize a string (no offset map); used for keyword lists and placeholder
/// canonicalisation.
pub fn normalize_str(s: &str) -> String {
    Normalized::new(s).as_str().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_is_borrowed() {
        let n = Normalized::new("hello 4111");
        assert!(n.is_identity());
        assert_eq!(n.orig_start(6), 6);
        assert_eq!(n.orig_end(10), 10);
    }

    #[test]
    fn fullwidth_and_dashes() {
        let s = "電話０９０ー１２３４ー５６７８です";
        let n = Normalized::new(s);
        assert_eq!(n.as_str(), "電話090-1234-5678です");
        let start = n.as_str().find('0').unwrap();
        let end = start + "090-1234-5678".len();
        let (os, oe) = (n.orig_start(start), n.orig_end(end));
        assert_eq!(&s[os..oe], "０９０ー１２３４ー５６７８");
    }

    #[test]
    fn zero_width_inside_and_around() {
        let s = "a \u{200B}41\u{200B}11\u{FEFF} b";
        let n = Normalized::new(s);
        assert_eq!(n.as_str(), "a 4111 b");
        let (os, oe) = (n.orig_start(2), n.orig_end(6));
        assert_eq!(&s[os..oe], "41\u{200B}11");
    }

    #[test]
    fn json_escapes() {
        let s = r#"card:\n4111\u002d1111 \u3012"#;
        let n = Normalized::new(s);
        assert_eq!(n.as_str(), "card:\n4111-1111 〒");
        let start = 6;
        let end = 15;
        assert_eq!(&s[n.orig_start(start)..n.orig_end(end)], r"4111\u002d1111");
    }
}
