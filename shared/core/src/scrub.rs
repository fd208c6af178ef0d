//! Exact-value scrubbing of pool token values from anything headed back to the client.
//!
//! An upstream that echoes the request (its `Authorization` header, a debug field, an error
//! message quoting the credential) would hand a pool token to the client. The proxy knows the
//! exact values it sends, so it can remove exactly those: a [`Scrubber`] is built from a
//! pool's token values and replaces every occurrence with [`PLACEHOLDER`] in a whole body
//! ([`Scrubber::scrub`]), tests a header value ([`Scrubber::contains`]), or, through a
//! [`StreamScrubber`], rewrites a stream chunk by chunk so that a value split across chunk
//! boundaries is still caught, with the same output as scrubbing the whole stream at once.
//!
//! What is covered, for every value of at least [`MIN_SECRET_LEN`] bytes:
//! - the exact bytes (also inside a longer run such as `Bearer <value>`);
//! - the value as it appears inside a JSON string: with `"`, `\` and control characters
//!   escaped the way serde_json writes them, and with every `/` written `\/` (both spellings
//!   are searched, since echoing servers differ).
//!
//! What is **not** covered (document it where the scrubber is used):
//! - other encodings of the value: `\uXXXX` escapes of ordinary characters, percent-encoding,
//!   base64 (e.g. inside a `Basic` header), HTML entities, changed case;
//! - fragments of a value (a truncated echo such as `sk-abc…xyz` or the last four characters);
//! - values shorter than [`MIN_SECRET_LEN`] bytes, which are ignored (see there).
//!
//! Matching is leftmost-longest over all values, so when one value is a prefix of another the
//! longer is replaced whole. The placeholder cannot create a new match for any value that
//! does not overlap it (see [`placeholder_overlaps`]): such values never appear in the output.
//! Token values (`[A-Za-z0-9_-]`, `.`, `/`, `+`, `=`) never overlap it.
//!
//! This module never logs and never `Debug`-prints a value.

use aho_corasick::{AhoCorasick, MatchKind};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// What replaces each occurrence of a token value.
pub const PLACEHOLDER: &[u8] = b"[REDACTED_POOL_TOKEN]";

/// Values shorter than this are not searched for. A provider credential is far longer (tens
/// of bytes); a value of a few bytes is a misconfiguration or a test stub, and searching for
/// it would rewrite ordinary text that merely contains those bytes (corrupting answers and
/// revealing, by where the placeholders land, what the short value is).
pub const MIN_SECRET_LEN: usize = 8;

/// The scrubber could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScrubError {
    /// The search automaton exceeded aho-corasick's size limits (far more or longer values
    /// than any pool holds). The values themselves are not reported.
    #[error("cannot build the token scrubber for {values} values: {reason}")]
    TooLarge { values: usize, reason: String },
}

/// Replaces known secret values in bytes. Cheap to clone (shared, immutable).
#[derive(Clone)]
pub struct Scrubber {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` when there is nothing to search for.
    ac: Option<AhoCorasick>,
    /// Every searched form, sorted, for the streaming prefix check.
    needles: Vec<Vec<u8>>,
    max_len: usize,
    values: usize,
    ignored_short: usize,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrubber")
            .field("values", &self.inner.values)
            .field("forms", &self.inner.needles.len())
            .field("ignored_short", &self.inner.ignored_short)
            .finish_non_exhaustive()
    }
}

impl Default for Scrubber {
    /// A scrubber with nothing to find: passes everything through.
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                ac: None,
                needles: Vec::new(),
                max_len: 0,
                values: 0,
                ignored_short: 0,
            }),
        }
    }
}

/// The forms of one value that are searched for: the bytes themselves and, for UTF-8
/// values, their JSON-string spellings.
fn forms(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![value.to_vec()];
    if let Ok(s) = std::str::from_utf8(value) {
        let quoted = serde_json::Value::from(s).to_string();
        let escaped = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .unwrap_or(&quoted);
        out.push(escaped.as_bytes().to_vec());
        if escaped.contains('/') {
            out.push(escaped.replace('/', "\\/").into_bytes());
        }
    }
    out
}

/// True when `value` could be formed across a placeholder's edge or inside it (it contains
/// `[` or `]` in a way that lines up with the placeholder, or it is part of
/// `REDACTED_POOL_TOKEN`). Such a value is still scrubbed, but the output may then contain
/// its bytes made partly of placeholder text; for every other value the output never contains
/// the value. Provider token values never overlap.
pub fn placeholder_overlaps(value: &[u8]) -> bool {
    let p = PLACEHOLDER;
    if value.is_empty() {
        return false;
    }
    if contains_slice(p, value) || contains_slice(value, p) {
        return true;
    }
    (1..value.len().min(p.len()))
        .any(|k| value[..k] == p[p.len() - k..] || value[value.len() - k..] == p[..k])
}

fn contains_slice(hay: &[u8], needle: &[u8]) -> bool {
    needle.len() <= hay.len() && hay.windows(needle.len()).any(|w| w == needle)
}

impl Scrubber {
    /// Builds a scrubber for these secret values (typically the token values of one pool, or
    /// of every pool). Values shorter than [`MIN_SECRET_LEN`] are ignored and counted
    /// ([`Scrubber::ignored_short`]); duplicates are merged.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<Self, ScrubError> {
        let mut set = BTreeSet::new();
        let mut n = 0usize;
        let mut ignored_short = 0usize;
        for v in values {
            if v.len() < MIN_SECRET_LEN {
                ignored_short += 1;
                continue;
            }
            n += 1;
            set.extend(forms(v));
        }
        let needles: Vec<Vec<u8>> = set.into_iter().collect();
        let max_len = needles.iter().map(Vec::len).max().unwrap_or(0);
        let ac = if needles.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&needles)
                    .map_err(|e| ScrubError::TooLarge {
                        values: n,
                        reason: e.to_string(),
                    })?,
            )
        };
        Ok(Self {
            inner: Arc::new(Inner {
                ac,
                needles,
                max_len,
                values: n,
                ignored_short,
            }),
        })
    }

    /// True when there is nothing to search for (every input passes through unchanged).
    pub fn is_empty(&self) -> bool {
        self.inner.ac.is_none()
    }

    /// How many values were too short to search for.
    pub fn ignored_short(&self) -> usize {
        self.inner.ignored_short
    }

    /// Length of the longest searched form: a [`StreamScrubber`] holds back fewer bytes than
    /// this.
    pub fn max_needle_len(&self) -> usize {
        self.inner.max_len
    }

    /// True when `bytes` contains any value (in any covered form). For header values.
    pub fn contains(&self, bytes: &[u8]) -> bool {
        self.inner.ac.as_ref().is_some_and(|ac| ac.is_match(bytes))
    }

    /// `bytes` with every occurrence replaced by [`PLACEHOLDER`], or `None` when there was
    /// nothing to replace (send the original).
    pub fn scrub(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.scrub_counted(bytes).map(|(out, _)| out)
    }

    /// As [`Scrubber::scrub`], with the number of replacements made.
    pub fn scrub_counted(&self, bytes: &[u8]) -> Option<(Vec<u8>, u64)> {
        let ac = self.inner.ac.as_ref()?;
        // `Vec::new` does not allocate until the first match is written.
        let mut out = Vec::new();
        let (end, n) = replace_before(ac, bytes, bytes.len(), &mut out);
        if n == 0 {
            return None;
        }
        out.extend_from_slice(&bytes[end..]);
        Some((out, n))
    }

    /// A streaming scrubber sharing this one's values.
    pub fn stream(&self) -> StreamScrubber {
        StreamScrubber::new(self.clone())
    }

    /// Smallest `q` among the last `max_len - 1` positions such that `buf[q..]` is a proper prefix of a searched form (a
    /// value could start at `q` and continue in the next chunk); `buf.len()` if none.
    fn undecided_from(&self, buf: &[u8]) -> usize {
        let from = buf
            .len()
            .saturating_sub(self.inner.max_len.saturating_sub(1));
        (from..buf.len())
            .find(|&q| self.is_proper_prefix(&buf[q..]))
            .unwrap_or(buf.len())
    }

    fn is_proper_prefix(&self, tail: &[u8]) -> bool {
        // Forms that have `tail` as a proper prefix sort right after `tail`.
        let needles = &self.inner.needles;
        let i = needles.partition_point(|n| n.as_slice() <= tail);
        needles.get(i).is_some_and(|n| n.starts_with(tail))
    }
}

/// Appends `hay[..]` to `out` with matches that *start* before `limit` replaced, stopping
/// after the last such match. Returns how far `hay` was consumed (the end of the last
/// replaced match, or 0) and the number of replacements; the caller copies the rest.
fn replace_before(ac: &AhoCorasick, hay: &[u8], limit: usize, out: &mut Vec<u8>) -> (usize, u64) {
    let mut pos = 0;
    let mut n = 0;
    for m in ac.find_iter(hay) {
        if m.start() >= limit {
            break;
        }
        out.extend_from_slice(&hay[pos..m.start()]);
        out.extend_from_slice(PLACEHOLDER);
        pos = m.end();
        n += 1;
    }
    (pos, n)
}

/// Scrubs a byte stream chunk by chunk. Holds back at most
/// [`Scrubber::max_needle_len`]` - 1` trailing bytes, and only bytes that could be the start
/// of a value still arriving; the concatenated output of every [`push`](Self::push) and the
/// final [`finish`](Self::finish) equals [`Scrubber::scrub`] of the concatenated input.
/// The held bytes are released by `finish` — call it when the stream ends for any reason.
#[derive(Debug)]
pub struct StreamScrubber {
    scrubber: Scrubber,
    pending: Vec<u8>,
    replaced: u64,
}

impl StreamScrubber {
    pub fn new(scrubber: Scrubber) -> Self {
        Self {
            scrubber,
            pending: Vec::new(),
            replaced: 0,
        }
    }

    /// Takes the next chunk; returns the bytes that can be sent now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(ac) = self.scrubber.inner.ac.as_ref() else {
            return chunk.to_vec();
        };
        self.pending.extend_from_slice(chunk);
        let buf = &self.pending;
        // A match starting before `undecided` is final: every value that could start there
        // or earlier is wholly in the buffer, so more input cannot make it longer or move it.
        let undecided = self.scrubber.undecided_from(buf);
        let mut out = Vec::with_capacity(buf.len());
        let (pos, n) = replace_before(ac, buf, undecided, &mut out);
        let keep_from = pos.max(undecided);
        out.extend_from_slice(&buf[pos..keep_from]);
        self.replaced += n;
        self.pending.drain(..keep_from);
        out
    }

    /// Ends the stream: returns whatever was held back, scrubbed.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        match self.scrubber.scrub_counted(&rest) {
            Some((out, n)) => {
                self.replaced += n;
                out
            }
            None => rest,
        }
    }

    /// Replacements made so far (including those `finish` made).
    pub fn replacements(&self) -> u64 {
        self.replaced
    }

    /// Bytes currently held back.
    pub fn held(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Fixtures assembled at run time: no credential-shaped literal in the repository.
    fn token(tag: &str) -> Vec<u8> {
        ["sk", "-test-", tag, "-0123456789abcdefXYZ"]
            .concat()
            .into_bytes()
    }

    fn scrubber(values: &[&[u8]]) -> Scrubber {
        Scrubber::new(values.iter().copied()).expect("small value set")
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        contains_slice(hay, needle)
    }

    #[test]
    fn echoed_authorization_header_in_a_body_is_scrubbed() {
        let t = token("a");
        let s = scrubber(&[&t]);
        let body = [
            b"{\"headers\":{\"authorization\":\"Bearer ".as_slice(),
            &t,
            b"\"},\"again\":\"",
            &t,
            b"\"}",
        ]
        .concat();
        let (out, n) = s.scrub_counted(&body).expect("found");
        assert_eq!(n, 2);
        assert!(!contains(&out, &t));
        assert_eq!(
            out,
            b"{\"headers\":{\"authorization\":\"Bearer [REDACTED_POOL_TOKEN]\"},\"again\":\"[REDACTED_POOL_TOKEN]\"}"
        );
    }

    #[test]
    fn nothing_found_gives_none() {
        let s = scrubber(&[&token("a")]);
        assert_eq!(s.scrub(b"hello world"), None);
        assert!(!s.contains(b"hello world"));
        assert!(s.contains(&[b"Bearer ".as_slice(), &token("a")].concat()));
    }

    #[test]
    fn short_and_empty_values_are_ignored() {
        let s = scrubber(&[b"", b"abc", b"1234567"]);
        assert!(s.is_empty());
        assert_eq!(s.ignored_short(), 3);
        assert_eq!(s.scrub(b"abc 1234567"), None);
        let mut st = s.stream();
        assert_eq!(st.push(b"abc"), b"abc");
        assert_eq!(st.held(), 0);
    }

    #[test]
    fn debug_never_shows_a_value() {
        let t = token("dbg");
        let s = scrubber(&[&t]);
        let shown = format!("{s:?} {:?}", s.stream());
        assert!(!shown.contains(std::str::from_utf8(&t).expect("ascii")));
    }

    #[test]
    fn json_escaped_slash_and_quote_forms_are_scrubbed() {
        let v = b"abc/def/ghi\"jkl".to_vec();
        let s = scrubber(&[&v]);
        for form in [
            v.clone(),
            br#"abc/def/ghi\"jkl"#.to_vec(),
            br#"abc\/def\/ghi\"jkl"#.to_vec(),
        ] {
            let out = s.scrub(&[b"x".as_slice(), &form, b"y"].concat());
            assert_eq!(out.as_deref(), Some(b"x[REDACTED_POOL_TOKEN]y".as_slice()));
        }
        // Not covered: \u-escaped ordinary characters.
        assert_eq!(s.scrub(br#"abc\u002fdef/ghi\"jkl"#), None);
    }

    #[test]
    fn longer_value_wins_when_one_is_a_prefix_of_another() {
        let short = b"abcdefgh".to_vec();
        let long = b"abcdefghijkl".to_vec();
        let s = scrubber(&[&short, &long]);
        assert_eq!(
            s.scrub(b"<abcdefghijkl>").as_deref(),
            Some(b"<[REDACTED_POOL_TOKEN]>".as_slice())
        );
        // Split right after the shorter one: the stream must wait and agree.
        let mut st = s.stream();
        let mut out = st.push(b"<abcdefgh");
        out.extend(st.push(b"ijkl>"));
        out.extend(st.finish());
        assert_eq!(out, b"<[REDACTED_POOL_TOKEN]>");
        assert_eq!(st.replacements(), 1);
    }

    #[test]
    fn value_split_byte_by_byte_is_caught() {
        let t = token("split");
        let s = scrubber(&[&t]);
        let input = [b"data: {\"echo\":\"".as_slice(), &t, b"\"}\n\n"].concat();
        let mut st = s.stream();
        let mut out = Vec::new();
        for b in &input {
            out.extend(st.push(std::slice::from_ref(b)));
            assert!(st.held() < s.max_needle_len());
        }
        out.extend(st.finish());
        assert_eq!(Some(out), s.scrub(&input));
        assert_eq!(st.replacements(), 1);
    }

    #[test]
    fn stream_holds_back_only_a_possible_prefix() {
        let t = token("hold");
        let s = scrubber(&[&t]);
        let mut st = s.stream();
        // No byte of this could start the value: nothing is held.
        assert_eq!(st.push(b"hello, world"), b"hello, world");
        assert_eq!(st.held(), 0);
        // The first three bytes of the value are held until they are decided.
        assert_eq!(st.push(&t[..3]), b"");
        assert_eq!(st.held(), 3);
        assert_eq!(st.push(b"!"), [&t[..3], b"!"].concat());
        assert_eq!(st.finish(), b"");
    }

    #[test]
    fn placeholder_overlap_is_detected() {
        assert!(placeholder_overlaps(b"REDACTED"));
        assert!(placeholder_overlaps(b"N]abcdefgh"));
        assert!(placeholder_overlaps(b"abcdefgh[RE"));
        assert!(placeholder_overlaps(b"xx[REDACTED_POOL_TOKEN]xx"));
        assert!(!placeholder_overlaps(&token("a")));
        assert!(!placeholder_overlaps(b"abc]defgh"));
    }

    fn arb_value(alphabet: &'static str) -> impl Strategy<Value = Vec<u8>> {
        alphabet
            .prop_map(String::into_bytes)
            .prop_filter("overlaps the placeholder", |v| !placeholder_overlaps(v))
    }

    /// Input made of filler and copies (or fragments) of the values.
    fn arb_input(values: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..12),
            "[A-Za-z0-9_/\\\\-]{0,6}".prop_map(String::into_bytes),
            (0..values.len(), 0usize..3).prop_map(move |(i, kind)| {
                let v = &values[i];
                match kind {
                    0 => v.clone(),
                    1 => v[..v.len() - 1].to_vec(),
                    _ => String::from_utf8_lossy(v).replace('/', "\\/").into_bytes(),
                }
            }),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|ps| ps.concat())
    }

    fn case(alphabet: &'static str) -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<u8>, Vec<usize>)> {
        prop::collection::vec(arb_value(alphabet), 1..4).prop_flat_map(|values| {
            (
                Just(values.clone()),
                arb_input(values),
                prop::collection::vec(0usize..200, 0..8),
            )
        })
    }

    fn check_stream_against_one_shot(
        values: &[Vec<u8>],
        input: &[u8],
        cuts: Vec<usize>,
    ) -> Result<(), TestCaseError> {
        let s = Scrubber::new(values.iter().map(Vec::as_slice)).expect("small");
        let whole = s.scrub_counted(input);
        let (expected, count) = whole.clone().unwrap_or((input.to_vec(), 0));
        for v in values {
            prop_assert!(!contains(&expected, v));
            let slashed = String::from_utf8_lossy(v).replace('/', "\\/").into_bytes();
            prop_assert!(!contains(&expected, &slashed));
        }

        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
        cuts.sort_unstable();
        let mut st = s.stream();
        let mut out = Vec::new();
        let mut prev = 0;
        for c in cuts.into_iter().chain([input.len()]) {
            out.extend(st.push(&input[prev..c]));
            prop_assert!(st.held() < s.max_needle_len());
            prev = c;
        }
        out.extend(st.finish());
        prop_assert_eq!(&out, &expected);
        prop_assert_eq!(st.replacements(), count);
        prop_assert_eq!(s.contains(input), whole.is_some());
        Ok(())
    }

    proptest! {
        #[test]
        fn streamed_output_equals_one_shot_and_never_holds_a_value(
            (values, input, cuts) in case("[A-Za-z0-9_/-]{8,24}"),
        ) {
            check_stream_against_one_shot(&values, &input, cuts)?;
        }

        #[test]
        fn overlapping_values_from_a_tiny_alphabet_stream_like_one_shot(
            (values, input, cuts) in case("[ab/]{8,11}"),
        ) {
            check_stream_against_one_shot(&values, &input, cuts)?;
        }
    }
}
