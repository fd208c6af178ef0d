//! Normalized view of a text with an offset map back to the original.
//!
//! The scanner never runs its patterns on the raw text. It runs them on a
//! folded copy in which
//! - full-width ASCII (`Ａ`, `０`, `＠`, `：` …) becomes ASCII, U+3000 becomes a space,
//! - every decimal digit (`\p{Nd}`: Arabic-Indic `٤`, Devanagari `४`, mathematical `𝟺`, …)
//!   becomes its ASCII digit, and mathematical alphanumeric letters (`𝚜𝚔`) their ASCII letter,
//! - dash variants (`‐ ‑ ‒ – — ― − －`, and `ー`/`ｰ` right after a digit or letter) become `-`,
//! - every format character (`\p{Cf}`: zero-width spaces and joiners, U+2063 invisible
//!   separator, bidi controls, tag characters, soft hyphen …), variation selectors and the
//!   combining grapheme joiner are dropped,
//! - no-break and thin spaces become a plain space,
//! - Cyrillic and Greek letters that look like Latin ones (`А К Р ѕ Ο` …) become Latin,
//!   but only inside a token that also holds an ASCII letter or digit (a key whose prefix
//!   was spelled with look-alikes); Russian or Greek words stay as written,
//! - `%XX` escapes of printable ASCII are decoded (URL query strings, form bodies),
//! - JSON string escapes (`\n`, `\t`, `\"`, `\/`, `\\`, `\uXXXX`) are decoded, so a
//!   value written inside a JSON document (e.g. tool-call arguments) is seen as
//!   the value itself.
//!
//! Folded characters are recorded as `Edit` runs (consecutive characters folded the same
//! way share one run, so a megabyte of full-width digits is one edit, not a million);
//! positions between edits map linearly, so the map costs nothing for plain text. ASCII
//! text without backslashes or `%` is borrowed as is.

use std::borrow::Cow;

/// `count` consecutive replacements, each of `orig_len` original bytes by `norm_len`
/// normalized bytes, contiguous on both sides.
#[derive(Debug, Clone, Copy)]
struct Edit {
    /// Start of the first replacement in the normalized text.
    norm: usize,
    /// Length of one replacement in the normalized text (0 when dropped).
    norm_len: usize,
    /// Start of the first replaced character in the original text.
    orig: usize,
    /// Length of one replaced character in the original text.
    orig_len: usize,
    /// Number of replacements in the run.
    count: usize,
}

impl Edit {
    fn norm_end(&self) -> usize {
        self.norm + self.count * self.norm_len
    }
    fn orig_end(&self) -> usize {
        self.orig + self.count * self.orig_len
    }
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

/// First code point of every block of ten decimal digits (`\p{Nd}`, Unicode 14, plus
/// Kawi and Nag Mundari from 15) outside ASCII; generated with Python's `unicodedata`.
const ND_ZEROS: [u32; 67] = [
    0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6,
    0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50,
    0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x11F50, 0x16A60, 0x16AC0,
    0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E950,
    0x1FBF0,
];

/// Format characters (`\p{Cf}`, Unicode 14) as inclusive ranges, plus the combining
/// grapheme joiner and variation selectors, which are invisible too.
const INVISIBLE: [(u32, u32); 24] = [
    (0xAD, 0xAD),
    (0x34F, 0x34F),
    (0x600, 0x605),
    (0x61C, 0x61C),
    (0x6DD, 0x6DD),
    (0x70F, 0x70F),
    (0x890, 0x891),
    (0x8E2, 0x8E2),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x13438),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
    (0xE0100, 0xE01EF),
];

fn nd_digit(c: u32) -> Option<char> {
    let i = ND_ZEROS.partition_point(|z| *z <= c);
    let z = *ND_ZEROS.get(i.checked_sub(1)?)?;
    (c - z < 10).then(|| char::from(b'0' + (c - z) as u8))
}

fn invisible(c: u32) -> bool {
    let i = INVISIBLE.partition_point(|r| r.0 <= c);
    i > 0 && INVISIBLE.get(i - 1).is_some_and(|r| c <= r.1)
}

/// Latin look-alike of a Cyrillic or Greek letter.
fn confusable(c: char) -> Option<char> {
    Some(match c {
        'А' | 'Α' => 'A',
        'В' | 'Β' => 'B',
        'С' | 'Ϲ' => 'C',
        'Е' | 'Ε' => 'E',
        'Н' | 'Η' => 'H',
        'І' | 'Ι' | 'Ӏ' => 'I',
        'Ј' => 'J',
        'К' | 'Κ' => 'K',
        'М' | 'Μ' => 'M',
        'Ν' => 'N',
        'О' | 'Ο' => 'O',
        'Р' | 'Ρ' => 'P',
        'Ѕ' => 'S',
        'Т' | 'Τ' => 'T',
        'Х' | 'Χ' => 'X',
        'Υ' | 'Ү' => 'Y',
        'Ζ' => 'Z',
        'а' => 'a',
        'с' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' => 'e',
        'һ' => 'h',
        'і' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        'о' | 'ο' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'υ' => 'u',
        'ν' => 'v',
        'ԝ' => 'w',
        'х' | 'χ' => 'x',
        'у' => 'y',
        _ => return None,
    })
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
        // Mathematical alphanumeric letters: 13 styles of A-Z a-z.
        '\u{1D400}'..='\u{1D6A3}' => {
            let k = (c as u32 - 0x1D400) % 52;
            let a = if k < 26 {
                b'A' + k as u8
            } else {
                b'a' + (k - 26) as u8
            };
            Fold::To(char::from(a))
        }
        _ => {
            let u = c as u32;
            if invisible(u) {
                Fold::Drop
            } else if let Some(d) = nd_digit(u) {
                Fold::To(d)
            } else {
                Fold::Keep
            }
        }
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

/// A `%XX` escape of a printable ASCII character at the start of `b`.
fn percent(b: &[u8]) -> Option<char> {
    let h = (*b.get(1)? as char).to_digit(16)?;
    let l = (*b.get(2)? as char).to_digit(16)?;
    let v = h * 16 + l;
    (0x20..0x7F).contains(&v).then(|| char::from(v as u8))
}

/// True when the token (letters, digits, `_`, `-`) around byte `i` of `s` holds an ASCII
/// letter or digit; returns that and the token's end.
fn mixed_token(s: &str, i: usize) -> (bool, usize) {
    let tokc = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    let mut mixed = false;
    for c in s[..i].chars().rev() {
        if !tokc(c) {
            break;
        }
        mixed |= c.is_ascii_alphanumeric();
    }
    let mut end = s.len();
    for (k, c) in s[i..].char_indices() {
        if !tokc(c) && !invisible(c as u32) {
            end = i + k;
            break;
        }
        mixed |= c.is_ascii_alphanumeric();
    }
    (mixed, end)
}

/// Builds the folded text and its edit runs.
struct Builder<'a> {
    s: &'a str,
    out: String,
    edits: Vec<Edit>,
    /// Original bytes before this offset are already in `out` or replaced.
    run_start: usize,
}

impl Builder<'_> {
    fn started(&self) -> bool {
        !self.edits.is_empty()
    }

    /// Replace the `orig_len` bytes at `orig` by `to` (or drop them).
    fn replace(&mut self, orig: usize, orig_len: usize, to: Option<char>) {
        if !self.started() {
            self.out.reserve(self.s.len());
        }
        self.out.push_str(&self.s[self.run_start..orig]);
        let norm = self.out.len();
        let norm_len = to.map_or(0, char::len_utf8);
        if let Some(c) = to {
            self.out.push(c);
        }
        self.run_start = orig + orig_len;
        if let Some(last) = self.edits.last_mut() {
            if last.norm_len == norm_len
                && last.orig_len == orig_len
                && last.norm_end() == norm
                && last.orig_end() == orig
            {
                last.count += 1;
                return;
            }
        }
        self.edits.push(Edit {
            norm,
            norm_len,
            orig,
            orig_len,
            count: 1,
        });
    }

    /// The last byte of the folded text so far (with everything before `i` copied).
    fn prev_byte(&self, i: usize) -> Option<u8> {
        if i > self.run_start {
            self.s.as_bytes().get(i - 1).copied()
        } else {
            self.out.as_bytes().last().copied()
        }
    }
}

impl<'a> Normalized<'a> {
    /// Build the normalized view of `s`.
    pub fn new(s: &'a str) -> Self {
        let bytes = s.as_bytes();
        if s.is_ascii() && memchr::memchr2(b'\\', b'%', bytes).is_none() {
            return Normalized {
                text: Cow::Borrowed(s),
                edits: Vec::new(),
            };
        }
        // `out` is only materialised at the first edit; text that needs none
        // (most Japanese prose) stays borrowed.
        let mut bld = Builder {
            s,
            out: String::new(),
            edits: Vec::new(),
            run_start: 0,
        };
        // End of the last token checked for look-alike letters, and its verdict.
        let mut token = (0usize, false);
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b < 0x80 && b != b'\\' && b != b'%' {
                i += 1;
                continue;
            }
            if b == b'%' {
                match percent(&bytes[i..]) {
                    Some(c) => {
                        bld.replace(i, 3, Some(c));
                        i += 3;
                    }
                    None => i += 1,
                }
                continue;
            }
            if b >= 0x80 {
                let clen = match b {
                    0xC0..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    _ => 4,
                };
                // Only chars with these lead bytes can fold; CJK ideographs (E4..E9) and
                // kana (E3, but for U+3000 and U+30FC) are skipped without decoding.
                let maybe = match b {
                    0xC2 | 0xCD..=0xD4 | 0xD8 | 0xD9 | 0xDB | 0xDC | 0xDF => true,
                    0xE0..=0xE2 | 0xEA | 0xEF | 0xF0 | 0xF3 => true,
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
                    if bld.prev_byte(i).is_some_and(|p| p.is_ascii_alphanumeric()) {
                        Fold::To('-')
                    } else {
                        Fold::Keep
                    }
                } else if let Some(a) = confusable(c) {
                    if i >= token.0 {
                        token = {
                            let (m, end) = mixed_token(s, i);
                            (end, m)
                        };
                    }
                    if token.1 { Fold::To(a) } else { Fold::Keep }
                } else {
                    fold_char(c)
                };
                match fold {
                    Fold::Keep => {}
                    Fold::To(a) => bld.replace(i, clen, Some(a)),
                    Fold::Drop => bld.replace(i, clen, None),
                }
                i += clen;
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
            if let Some(c) = simple {
                bld.replace(i, 2, Some(c));
                i += 2;
            } else if let Some(c) = decoded {
                let to = match fold_char(c) {
                    Fold::Keep => Some(c),
                    Fold::To(a) => Some(a),
                    Fold::Drop => None,
                };
                bld.replace(i, 6, to);
                i += 6;
            } else {
                i += 1;
            }
        }
        let Builder {
            mut out,
            edits,
            run_start,
            ..
        } = bld;
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
        let Some(e) = idx.checked_sub(1).and_then(|i| self.edits.get(i)) else {
            return n;
        };
        if n < e.norm_end() {
            // inside the run: the start of the replacement that holds `n`
            e.orig + (n - e.norm) / e.norm_len * e.orig_len
        } else {
            e.orig_end() + (n - e.norm_end())
        }
    }

    /// Map a normalized end offset (exclusive, a char boundary) to the original
    /// text. Dropped characters right after the span are not included.
    pub fn orig_end(&self, n: usize) -> usize {
        let idx = self.edits.partition_point(|e| e.norm < n);
        let Some(e) = idx.checked_sub(1).and_then(|i| self.edits.get(i)) else {
            return n;
        };
        if n < e.norm_end() {
            // inside the run: the end of the replacement that holds byte `n - 1`
            e.orig + ((n - e.norm - 1) / e.norm_len + 1) * e.orig_len
        } else {
            e.orig_end() + (n - e.norm_end())
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

    #[test]
    fn every_decimal_digit_folds_to_ascii() {
        // Arabic-Indic, extended Arabic-Indic, Devanagari, mathematical monospace, full-width
        let s = "\u{664}\u{661}\u{6F1}\u{967} \u{1D7FA}\u{1D7F7} \u{FF14}";
        let n = Normalized::new(s);
        assert_eq!(n.as_str(), "4111 41 4");
        let (os, oe) = (n.orig_start(5), n.orig_end(7));
        assert_eq!(&s[os..oe], "\u{1D7FA}\u{1D7F7}");
    }

    #[test]
    fn every_format_character_is_dropped() {
        for c in [
            '\u{2063}',
            '\u{2062}',
            '\u{200E}',
            '\u{202E}',
            '\u{2066}',
            '\u{E0041}',
            '\u{FE0F}',
            '\u{180E}',
        ] {
            let s = format!("AK{c}IA");
            assert_eq!(Normalized::new(&s).as_str(), "AKIA", "{:X}", c as u32);
        }
    }

    #[test]
    fn look_alike_letters_fold_only_in_mixed_tokens() {
        let s = "\u{410}\u{41A}IA2345 и \u{410}\u{41A}\u{410} Пароль";
        let n = Normalized::new(s);
        assert_eq!(n.as_str(), "AKIA2345 и \u{410}\u{41A}\u{410} Пароль");
        assert_eq!(&s[n.orig_start(0)..n.orig_end(8)], "\u{410}\u{41A}IA2345");
    }

    #[test]
    fn percent_escapes_of_printable_ascii_are_decoded() {
        let s = "q=sk%2Dproj%2d1 50%off %E3%81";
        let n = Normalized::new(s);
        assert_eq!(n.as_str(), "q=sk-proj-1 50%off %E3%81");
        assert_eq!(&s[n.orig_start(2)..n.orig_end(11)], "sk%2Dproj%2d1");
    }

    #[test]
    fn a_long_folded_run_is_one_edit() {
        let s = "\u{FF11}".repeat(10_000);
        let n = Normalized::new(&s);
        assert_eq!(n.edits.len(), 1);
        assert_eq!(n.orig_start(5), 15);
        assert_eq!(n.orig_end(6), 18);
        assert_eq!(n.orig_end(10_000), s.len());
    }
}
