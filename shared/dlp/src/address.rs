//! Street addresses (`STREET_ADDRESS`, contact category).
//!
//! **Japanese**: a prefecture (47 names) followed by a municipality (`…市/区/町/村`), or a
//! designated city / Tokyo ward on its own; then the town name; then the block number —
//! `N丁目`, `N丁目N番N号`, `N丁目N-N`, `N番地N`, `N番N号` or `N-N(-N)` (digits or kanji
//! numerals); then, optionally, a building and room (`ハイツ一ツ橋101`, `〇〇ビル3F`,
//! `101号室`). Runs on the normalized view, so full-width digits and hyphens and text
//! without spaces are the same. A prefecture and city without a block number
//! (`東京都千代田区に住んでいます`) is not a street address. Any other city (`町田市`,
//! `いわき市`) or a district's town (`…郡…町`) may start one too, but only with a full
//! three-part block number (`N丁目N番N号`, `N-N-N`). The town name never holds the particles
//! `の で は に を へ` (`の` only inside a name like `丸の内`), so a score or a version after a
//! place name is not an address. One space may stand before the block number.
//!
//! **English**: only where the shape is unambiguous — a house number, one to three
//! capitalized words and a USPS street suffix (`Street`, `Ave`, `Skyway`, …), **and** a
//! unit (`Apt. 290`, `Suite 5`), a `City, ST 12345` line, or an address word before it
//! (`address`, `live at`, `ship to`, `住所` …). `3 Way handshake` or `12 Main Street
//! shares` are not addresses.
//!
//! Personal names are out of scope (see the crate README for what was tried).

use memchr::memmem::Finder;
use regex::Regex;
use std::sync::{LazyLock, OnceLock};

/// Substring searchers built once: building one per search cost ~400 instructions a call,
/// more than the search itself on a short text.
static CHOME: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("丁目"));
static CITY_MARK: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("市"));
static DISTRICT_MARK: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("郡"));
static PO_A: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"PO A"));

/// The anchored Japanese address regex.
fn jp_regex() -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{})", jp_pattern()))
}

const PREFECTURES: &str = "北海道|東京都|大阪府|京都府|(?:青森|岩手|宮城|秋田|山形|福島|茨城|栃木|群馬|埼玉|千葉|神奈川|新潟|富山|石川|福井|山梨|長野|岐阜|静岡|愛知|三重|滋賀|兵庫|奈良|和歌山|鳥取|島根|岡山|広島|山口|徳島|香川|愛媛|高知|福岡|佐賀|長崎|熊本|大分|宮崎|鹿児島|沖縄)県";

/// Designated cities and Tokyo's special wards: addresses often start with them.
const CITIES: &str = "(?:札幌|仙台|さいたま|千葉|横浜|川崎|相模原|新潟|静岡|浜松|名古屋|京都|大阪|堺|神戸|岡山|広島|北九州|福岡|熊本)市|(?:千代田|中央|港|新宿|文京|台東|墨田|江東|品川|目黒|大田|世田谷|渋谷|中野|杉並|豊島|北|荒川|板橋|練馬|足立|葛飾|江戸川)区";

/// Kanji of place names: the CJK blocks of the BMP and `々`. `\p{Han}` (which adds radicals
/// and the supplementary planes) costs three times the compile time for no real address.
const KANJI: &str = r"\x{3400}-\x{4DBF}\x{4E00}-\x{9FFF}\x{F900}-\x{FAFF}々";

/// Any city's name before `市`: kanji, or kana without particles (`いわき`, `あきる野`).
const CITY_NAME: &str = r"[\x{3400}-\x{4DBF}\x{4E00}-\x{9FFF}\x{F900}-\x{FAFF}々\p{Hiragana}--[のではにをへがとも]]{1,6}";

/// A character of a place name before `市` / `郡`: a kanji (`々` included) or a kana that is
/// not a particle; the regex's [`CITY_NAME`] has the final say.
fn is_place_name_char(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}' | '々')
        || (matches!(c, '\u{3041}'..='\u{3096}') && !"のではにをへがとも".contains(c))
}

/// Japanese address: anchored at a prefecture or city literal (the regex prefilter's
/// literals), ends after the block number or the building / room.
fn jp_pattern() -> String {
    let kana = format!(r"{KANJI}\p{{Hiragana}}\p{{Katakana}}ー々ヶヵ・");
    let n = r"(?:[0-9]{1,4}|[一二三四五六七八九十]{1,3})";
    // The town name holds none of the particles `の で は に を へ` (`の` only between two
    // kanji, as in `丸の内`): `横浜市民の12-5で勝利` is a score, `新宿区のバージョン1-2-3` a
    // version.
    let plain = format!(r"{KANJI}\p{{Katakana}}ー々ヶヵ[\p{{Hiragana}}--[のではにをへ]]");
    let town = format!(r"(?:[{KANJI}]の[{KANJI}]|[{plain}]){{0,20}}?");
    // the building / room part, shared by both starts
    let building = format!(
        r"(?:\x20?[{kana}A-Za-z]{{1,24}}?(?:(?:ビル|マンション|ハイツ|コーポ|タワー|レジデンス|アパート|荘)(?:[0-9]{{1,4}}(?:号室|F|階)?)?|[0-9]{{1,4}}(?:号室|F|階)?))?"
    );
    // Any other city (`町田市`, `八王子市`) or a district's town or village (`西多摩郡瑞穂町`):
    // the name alone proves nothing (`都市`, `新市場`), so only a full three-part block
    // number (`N丁目N番N号`, `N丁目N-N`, `N-N-N`, `N番地N号`) makes it an address.
    let municipality = format!(
        r"(?:{CITY_NAME}市|[{KANJI}]{{1,4}}郡[{KANJI}]{{1,4}}[町村]){town}\x20?(?:{n}丁目{n}(?:番地?|-|の){n}号?|[0-9]{{1,4}}-[0-9]{{1,4}}-[0-9]{{1,4}}|{n}番地?{n}号){building}"
    );
    format!(
        r"(?:(?:{PREFECTURES})[{kana}]{{1,8}}?[市区町村]|{CITIES}){town}\x20?(?:{n}丁目(?:{n}(?:番地?|-|の){n}?号?)?|{n}番地?(?:の|-)?(?:{n}号?)?|[0-9]{{1,3}}-[0-9]{{1,4}}(?:-[0-9]{{1,4}})?){building}|{municipality}"
    )
}

/// USPS Publication 28 street suffixes (full words) and the common abbreviations.
const SUFFIXES: &str = "Alley|Avenue|Ave|Boulevard|Blvd|Branch|Bridge|Brooks?|Burgs?|Bypass|Camp|Canyon|Cape|Causeway|Centers?|Circles?|Cir|Cliffs?|Club|Common|Corners?|Course|Courts?|Ct|Coves?|Creek|Crescent|Crest|Crossing|Crossroad|Curve|Dale|Dam|Divide|Drives?|Dr|Estates?|Expressway|Extensions?|Falls?|Ferry|Fields?|Flats?|Fords?|Forest|Forges?|Forks?|Fort|Freeway|Gardens?|Gateway|Glens?|Greens?|Groves?|Harbors?|Haven|Heights|Highway|Hwy|Hills?|Hollow|Inlet|Islands?|Isle|Junctions?|Keys?|Knolls?|Lakes?|Land|Landing|Lane|Ln|Lights?|Loaf|Locks?|Lodge|Loop|Mall|Manors?|Meadows?|Mews|Mills?|Mission|Motorway|Mount|Mountains?|Neck|Orchard|Oval|Overpass|Parks?|Parkways?|Pkwy|Pass|Passage|Path|Pike|Pines?|Place|Pl|Plains?|Plaza|Points?|Ports?|Prairie|Radial|Ramp|Ranch|Rapids?|Rest|Ridges?|River|Roads?|Rd|Route|Row|Rue|Run|Shoals?|Shores?|Skyway|Springs?|Spurs?|Squares?|Sq|Station|Stravenue|Stream|Streets?|St|Summit|Terrace|Ter|Throughway|Trace|Track|Trafficway|Trail|Trl|Tunnel|Turnpike|Underpass|Unions?|Valleys?|Via|Viaduct|Views?|Villages?|Ville|Vista|Walks?|Wall|Ways?|Wells?";

fn en_pattern() -> String {
    format!(
        r"^[0-9]{{1,6}}\x20(?:[NSEW]\.?\x20)?(?:[A-Z][A-Za-z'-]+\x20){{1,3}}(?:{SUFFIXES})(?-u:\b)\.?(?P<unit>,?\x20(?:Apt\.?|Suite|Ste\.?|Unit|\#)\x20?[0-9A-Za-z-]{{1,6}}(?-u:\b))?(?P<city>,?(?:\x20|\r?\n)[A-Z][a-z]+(?:\x20[A-Z][a-z]+){{0,2}},\x20[A-Z]{{2}}\x20[0-9]{{5}}(?:-[0-9]{{4}})?(?-u:\b))?"
    )
}

/// Words before a house number that make a bare `number + street + suffix` an address.
const EN_CONTEXT: [&str; 12] = [
    "address",
    "live at",
    "lives at",
    "located at",
    "ship to",
    "deliver to",
    "send it to",
    "mail to",
    "moved to",
    "office at",
    "visit us at",
    "住所",
];

/// US military addresses: `PSC 1234, Box 5678, APO AE 12345`, `USNS Name, FPO AP 12345`.
const MILITARY: &str = r"(?:PSC\x20[0-9]{4},\x20Box\x20[0-9]{4}|Unit\x20[0-9]{4}\x20Box\x20[0-9]{4}|USNS\x20[A-Z][a-z]+|USS\x20[A-Z][a-z]+),?\x20(?:APO|FPO|DPO)\x20A[AEP]\x20[0-9]{5}";

/// True when the digit group `b[start..end]` may begin a Japanese block number: glued to
/// a multi-byte character on its left (or one space after one: `原町田 1-2-3`) and
/// followed by `-N`, `丁目` or `番` (`2024年`, `3時`, `12%` are not).
pub(crate) fn is_block_number(b: &[u8], start: usize, end: usize) -> bool {
    let rest = &b[end..];
    let glued = |i: usize| i > 0 && b[i - 1] >= 0x80;
    (glued(start) || (start > 1 && b[start - 1] == b' ' && glued(start - 1)))
        && ((rest.first() == Some(&b'-') && rest.get(1).is_some_and(u8::is_ascii_digit))
            || rest.starts_with("丁目".as_bytes())
            || rest.starts_with("番".as_bytes()))
}

/// Compiled address patterns.
#[derive(Debug)]
pub(crate) struct Addresses {
    /// Where an address may start (a prefecture or city name): run only on a short
    /// window before a block number, never over the whole text.
    jp_start: Regex,
    /// The whole address, anchored at a start found by `jp_start`. Compiled on first use:
    /// its Unicode classes cost ~8 ms of compile time, which cold starts would pay for
    /// text that mostly holds no Japanese block number.
    jp: OnceLock<Option<Regex>>,
    en: Regex,
    military: Regex,
    /// Bytes in the shortest match of `military` (from the parsed pattern).
    military_min_len: usize,
}

impl Addresses {
    pub(crate) fn new() -> Result<Self, regex::Error> {
        Ok(Addresses {
            jp_start: Regex::new(&format!("(?:{PREFECTURES})|{CITIES}"))?,
            jp: OnceLock::new(),
            en: Regex::new(&en_pattern())?,
            military: Regex::new(MILITARY)?,
            military_min_len: regex_syntax::parse(MILITARY)
                .ok()
                .and_then(|h| h.properties().minimum_len())
                .unwrap_or(0),
        })
    }

    /// Japanese addresses in `t`: spans. A whole-text regex over Japanese is slow (the
    /// first bytes of every prefecture name are common in Japanese prose), so the search
    /// is driven by block numbers: each digit group glued to a kanji or kana on its left
    /// and followed by `-N`, `丁目` or `番` (`丸の内1-9-1`, `轟18丁目`; found by the
    /// scanner's digit-run pass, see [`is_block_number`]) and each `丁目` after a kanji
    /// numeral (`北一条西二丁目`) is an anchor; the 150 bytes before it are searched for a prefecture or city name,
    /// and the full pattern is tried from there.
    pub(crate) fn japanese(&self, t: &str, digit_anchors: &[usize], out: &mut Vec<(usize, usize)>) {
        let b = t.as_bytes();
        let mut anchors: Vec<usize> = digit_anchors.to_vec();
        let numerals = "一二三四五六七八九十";
        // `丁目` is multi-byte: ASCII text cannot hold it (and is not searched)
        let hay = if t.is_ascii() { None } else { Some(b) };
        for p in hay.into_iter().flat_map(|h| CHOME.find_iter(h)) {
            let mut k = p;
            while let Some(c) = t[..k].chars().next_back().filter(|c| numerals.contains(*c)) {
                k -= c.len_utf8();
            }
            if k < p {
                anchors.push(k);
            }
        }
        if anchors.is_empty() {
            return;
        }
        // a pattern that does not compile is a build defect (the unit test below); should
        // it happen, every anchor's window is reported, which fails closed
        let Some(jp) = self.jp.get_or_init(|| jp_regex().ok()) else {
            out.extend(
                anchors
                    .iter()
                    .map(|&a| (a.saturating_sub(150), a))
                    .filter(|&(s, _)| t.is_char_boundary(s)),
            );
            return;
        };
        anchors.sort_unstable();
        let mut done = 0;
        for a in anchors {
            if a < done {
                continue;
            }
            let mut ws = a.saturating_sub(150);
            while !t.is_char_boundary(ws) {
                ws += 1;
            }
            // starts: prefecture and city names (literals: the regex prefilter finds them
            // fast), then any `…市` / `…郡` name found by a substring search and a walk back
            // over its name (a Unicode-class regex here costs 10% of English throughput)
            let window = &t[ws..a];
            let mut starts: Vec<usize> = self
                .jp_start
                .find_iter(window)
                .map(|m| ws + m.start())
                .collect();
            for (mark, max) in [(&*CITY_MARK, 6), (&*DISTRICT_MARK, 4)] {
                for p in mark.find_iter(window.as_bytes()) {
                    let name = t[..ws + p]
                        .char_indices()
                        .rev()
                        .take(max)
                        .take_while(|(_, c)| is_place_name_char(*c))
                        .last();
                    if let Some((s, _)) = name.filter(|(s, _)| *s >= ws) {
                        starts.push(s);
                    }
                }
            }
            starts.sort_unstable();
            starts.dedup();
            for s in starts {
                let Some(full) = jp.find(&t[s..]) else {
                    continue;
                };
                let e = s + full.end();
                // the match must cover this block number and end there (not `1-23` of
                // `1-234`)
                let next = b.get(e).copied().unwrap_or(b' ');
                if e > a && !next.is_ascii_digit() && next != b'-' {
                    out.push((s, e));
                    done = e;
                    break;
                }
            }
        }
    }

    /// US military (APO / FPO / DPO) addresses in `t`: spans.
    pub(crate) fn military(&self, t: &str, out: &mut Vec<(usize, usize)>) {
        let b = t.as_bytes();
        // shorter than any match (`USS Ab APO AA 12345`): most strings of a request body
        if b.len() < self.military_min_len {
            return;
        }
        // `APO A…` / `FPO A…` / `DPO A…`: a substring search is cheaper than a regex call
        if PO_A.find(b).is_none() {
            return;
        }
        for m in self.military.find_iter(t) {
            if b.get(m.end()).is_some_and(u8::is_ascii_digit) {
                continue;
            }
            out.push((m.start(), m.end()));
        }
    }

    /// An English street address starting at the house number at `pos` (a digit run
    /// followed by a space and a capital letter): its end.
    pub(crate) fn english_at(&self, t: &str, pos: usize) -> Option<usize> {
        let b = t.as_bytes();
        if pos > 0
            && (b[pos - 1].is_ascii_alphanumeric()
                || matches!(b[pos - 1], b'-' | b'.' | b'#' | b'$'))
        {
            return None;
        }
        let caps = self.en.captures(&t[pos..])?;
        let whole = caps.get(0)?;
        let unambiguous = caps.name("unit").is_some() || caps.name("city").is_some() || {
            let s = pos.saturating_sub(40);
            let s = (s..pos).find(|i| t.is_char_boundary(*i)).unwrap_or(pos);
            let before = t[s..pos].to_ascii_lowercase();
            EN_CONTEXT.iter().any(|w| before.contains(w))
        };
        unambiguous.then_some(pos + whole.end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_compile() {
        assert!(Addresses::new().is_ok());
        assert!(jp_regex().is_ok());
    }

    #[test]
    fn the_shortest_military_address_is_not_skipped() {
        let a = Addresses::new().unwrap();
        assert_eq!(a.military_min_len, "USS Ab APO AA 12345".len());
        let mut out = Vec::new();
        a.military("USS Ab APO AA 12345", &mut out);
        assert_eq!(out, [(0, 19)]);
    }
}
