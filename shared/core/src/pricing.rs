//! Model prices and the worst-case estimate a request is reserved at before it is forwarded.
//!
//! Prices are integers: micro-dollars per million tokens, so a cost is exact and sums in the
//! store never drift. The built-in table ([`PriceTable::builtin`], source and date in
//! [`BUILTIN_SOURCE`] / [`BUILTIN_AS_OF`]) holds list prices for common models; it is the
//! shipped default. Operators keep the table in the store (`tollgate prices set|import`): a
//! stored table replaces the built-in one as a whole, and the built-in table applies only
//! while nothing is stored.
//!
//! The prompt estimate ([`estimate_text_tokens`]) needs no tokenizer and no network: it cuts
//! text the way BPE tokenizers pre-split it and counts each piece high, so that it stays
//! above the real count. Measured against OpenAI's o200k_base and cl100k_base on 20,688 chat
//! bodies (`infra/token-estimate`, docs/limits.md "Prompt estimate"): never below, median
//! about 1.6 ×. Claude models get a further margin ([`ANTHROPIC_MARGIN_PERCENT`]): their
//! tokenizer is not public. Settlement replaces the estimate with the provider-reported
//! usage, so the estimate decides admission, never what is finally counted.

use crate::limits::{Ask, Micros};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Price of one model, in micro-dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub input: Micros,
    pub output: Micros,
    /// Cached (prompt-cache read) input, when the provider prices it apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<Micros>,
}

impl Price {
    /// Cost of `input` and `output` tokens, rounded up to the next micro-dollar.
    pub fn cost(&self, input: u64, output: u64) -> Micros {
        let total = u128::from(input) * u128::from(self.input)
            + u128::from(output) * u128::from(self.output);
        u64::try_from(total.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

const fn usd(dollars_per_mtok_x1000: u64) -> Micros {
    // Written as thousandths of a dollar per million tokens: 150 = $0.15.
    dollars_per_mtok_x1000 * 1_000
}

/// Where the built-in prices come from. Entries were checked against the providers' own
/// pricing pages where a copy of the page could be read (docs/limits.md, "Prices", says which).
pub const BUILTIN_SOURCE: &str = "OpenAI https://developers.openai.com/api/docs/pricing, \
Anthropic https://platform.claude.com/docs/en/about-claude/pricing (standard tier, USD per \
million tokens)";
/// The day the built-in prices were last checked.
pub const BUILTIN_AS_OF: &str = "2026-11-26";

/// (model, input, output, cached input) in thousandths of a dollar per million tokens.
const BUILTIN: &[(&str, u64, u64, Option<u64>)] = &[
    ("gpt-5.5", 5_000, 30_000, Some(500)),
    ("gpt-5.4", 2_500, 15_000, Some(250)),
    ("gpt-5.4-mini", 750, 4_500, Some(75)),
    ("gpt-5.4-nano", 200, 1_250, Some(20)),
    ("gpt-5.1", 1_250, 10_000, Some(125)),
    ("gpt-5", 1_250, 10_000, Some(125)),
    ("gpt-5-mini", 250, 2_000, Some(25)),
    ("gpt-5-nano", 50, 400, Some(5)),
    ("gpt-4.1", 2_000, 8_000, Some(500)),
    ("gpt-4.1-mini", 400, 1_600, Some(100)),
    ("gpt-4.1-nano", 100, 400, Some(25)),
    ("gpt-4o", 2_500, 10_000, Some(1_250)),
    ("gpt-4o-mini", 150, 600, Some(75)),
    ("o3", 2_000, 8_000, Some(500)),
    ("o4-mini", 1_100, 4_400, Some(275)),
    ("text-embedding-3-small", 20, 0, None),
    ("text-embedding-3-large", 130, 0, None),
    ("claude-opus-4-7", 5_000, 25_000, Some(500)),
    ("claude-opus-4-6", 5_000, 25_000, Some(500)),
    ("claude-opus-4-5", 5_000, 25_000, Some(500)),
    ("claude-opus-4-1", 15_000, 75_000, Some(1_500)),
    ("claude-opus-4", 15_000, 75_000, Some(1_500)),
    ("claude-sonnet-4-6", 3_000, 15_000, Some(300)),
    ("claude-sonnet-4-5", 3_000, 15_000, Some(300)),
    ("claude-sonnet-4", 3_000, 15_000, Some(300)),
    ("claude-3-7-sonnet", 3_000, 15_000, Some(300)),
    ("claude-haiku-4-5", 1_000, 5_000, Some(100)),
    ("claude-3-5-haiku", 800, 4_000, Some(80)),
];

/// Model → price. Lookup takes the exact name, else the longest entry that the name extends
/// at a `-` (dated snapshots and aliases: `gpt-4o-2024-08-06` → `gpt-4o`,
/// `claude-sonnet-4-5-20250929` → `claude-sonnet-4-5`, `claude-3-5-haiku-latest` →
/// `claude-3-5-haiku`), ignoring a provider prefix such as `openai/`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceTable {
    pub prices: BTreeMap<String, Price>,
}

impl PriceTable {
    pub fn builtin() -> Self {
        Self {
            prices: BUILTIN
                .iter()
                .map(|(m, i, o, c)| {
                    (
                        (*m).to_owned(),
                        Price {
                            input: usd(*i),
                            output: usd(*o),
                            cached_input: c.map(usd),
                        },
                    )
                })
                .collect(),
        }
    }

    /// These prices, with `over`'s entries replacing or adding to them.
    pub fn with(mut self, over: &PriceTable) -> Self {
        self.prices
            .extend(over.prices.iter().map(|(k, v)| (k.clone(), *v)));
        self
    }

    pub fn lookup(&self, model: &str) -> Option<&Price> {
        let model = model.rsplit('/').next().unwrap_or(model);
        if let Some(p) = self.prices.get(model) {
            return Some(p);
        }
        self.prices
            .iter()
            .filter(|(name, _)| {
                model.len() > name.len()
                    && model.starts_with(name.as_str())
                    && model.as_bytes().get(name.len()) == Some(&b'-')
            })
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| p)
    }
}

/// Longest model name a price may be stored under.
pub const MAX_MODEL_NAME: usize = 128;
/// Highest price accepted, in USD per million tokens (a typo guard: the dearest list price
/// today is two orders of magnitude below it).
pub const MAX_USD_PER_MTOK: f64 = 10_000.0;
/// Most entries one price table may hold (it is stored as one item).
pub const MAX_PRICES: usize = 2_000;

/// Why a price or a price file was refused. Messages name the model and the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PriceError {
    #[error(
        "model name {0:?} is not valid: 1 to 128 characters, letters, digits and . _ - : / @, starting with a letter or digit"
    )]
    ModelName(String),
    #[error(
        "{model}: {field} price {value} is not a finite number between 0 and {MAX_USD_PER_MTOK} USD per million tokens"
    )]
    Value {
        model: String,
        field: &'static str,
        value: String,
    },
    #[error("model {0:?} appears more than once")]
    Duplicate(String),
    #[error("too many prices: {0} (at most {MAX_PRICES})")]
    TooMany(usize),
    #[error("price file: {0}")]
    Format(String),
}

/// Checks a model name a price is stored under: 1..=128 characters from
/// `A-Za-z0-9._-:/@`, starting with a letter or digit.
pub fn validate_model_name(name: &str) -> Result<(), PriceError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_MODEL_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(PriceError::ModelName(
            name.chars().take(MAX_MODEL_NAME + 8).collect(),
        ))
    }
}

/// USD per million tokens → micro-dollars per million tokens, refusing negative, non-finite
/// and absurd values. Rounds to the nearest micro-dollar per million tokens.
pub fn usd_per_mtok(model: &str, field: &'static str, usd: f64) -> Result<Micros, PriceError> {
    if !usd.is_finite() || !(0.0..=MAX_USD_PER_MTOK).contains(&usd) {
        return Err(PriceError::Value {
            model: model.to_owned(),
            field,
            value: usd.to_string(),
        });
    }
    // In range: at most 1e10 micro-dollars, exact in f64 and in u64.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked finite and within 0..=1e4 above"
    )]
    Ok((usd * 1_000_000.0).round() as u64)
}

/// Micro-dollars per million tokens as USD per million tokens (for display).
pub fn to_usd_per_mtok(m: Micros) -> f64 {
    m as f64 / 1_000_000.0
}

/// One price as written in a price file or on the command line: USD per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsdPrice {
    pub input: f64,
    pub output: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
}

impl UsdPrice {
    /// Validated and converted to micro-dollars, for `model`.
    pub fn to_price(&self, model: &str) -> Result<Price, PriceError> {
        validate_model_name(model)?;
        Ok(Price {
            input: usd_per_mtok(model, "input", self.input)?,
            output: usd_per_mtok(model, "output", self.output)?,
            cached_input: self
                .cached_input
                .map(|c| usd_per_mtok(model, "cached_input", c))
                .transpose()?,
        })
    }

    pub fn of(p: &Price) -> Self {
        Self {
            input: to_usd_per_mtok(p.input),
            output: to_usd_per_mtok(p.output),
            cached_input: p.cached_input.map(to_usd_per_mtok),
        }
    }
}

/// Parses a price file: JSON (`{"gpt-4o": {"input": 2.5, "output": 10, "cached_input": 1.25}}`,
/// optionally wrapped as `{"prices": {...}}`) or CSV with the header
/// `model,input,output,cached_input` (cached_input may be empty). Prices in USD per million
/// tokens. Every entry is validated; the first bad one is the error, nothing is returned.
pub fn parse_price_file(text: &str) -> Result<PriceTable, PriceError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    let entries: Vec<(String, UsdPrice)> = if trimmed.starts_with('{') {
        parse_json_prices(trimmed)?
    } else {
        parse_csv_prices(trimmed)?
    };
    if entries.len() > MAX_PRICES {
        return Err(PriceError::TooMany(entries.len()));
    }
    let mut out = PriceTable::default();
    for (model, p) in entries {
        let price = p.to_price(&model)?;
        if out.prices.insert(model.clone(), price).is_some() {
            return Err(PriceError::Duplicate(model));
        }
    }
    Ok(out)
}

fn parse_json_prices(text: &str) -> Result<Vec<(String, UsdPrice)>, PriceError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| PriceError::Format(format!("not valid JSON: {e}")))?;
    let map = match v.get("prices") {
        Some(inner) if v.as_object().is_some_and(|o| o.len() == 1) => inner.clone(),
        _ => v,
    };
    let Value::Object(o) = map else {
        return Err(PriceError::Format(
            "expected an object of model → {input, output, cached_input}".into(),
        ));
    };
    // serde_json's map keeps one entry per key: a duplicate key cannot be detected here.
    o.into_iter()
        .map(|(model, p)| {
            let price: UsdPrice = serde_json::from_value(p).map_err(|e| {
                PriceError::Format(format!(
                    "{}: expected {{\"input\": number, \"output\": number, \"cached_input\": number (optional)}}: {e}",
                    model.chars().take(MAX_MODEL_NAME).collect::<String>()
                ))
            })?;
            Ok((model, price))
        })
        .collect()
}

fn parse_csv_prices(text: &str) -> Result<Vec<(String, UsdPrice)>, PriceError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let header: Vec<String> = match lines.next() {
        Some((_, h)) => h
            .split(',')
            .map(|c| c.trim().to_ascii_lowercase())
            .collect(),
        None => return Err(PriceError::Format("the file is empty".into())),
    };
    let want = ["model", "input", "output", "cached_input"];
    if header != want && header != want[..3] {
        return Err(PriceError::Format(
            "CSV must start with the header model,input,output[,cached_input] (USD per million tokens), or be JSON".into(),
        ));
    }
    let num = |line: usize, model: &str, field: &'static str, s: &str| -> Result<f64, PriceError> {
        s.trim().parse::<f64>().map_err(|_| {
            PriceError::Format(format!(
                "line {line}: {model}: {field} {:?} is not a number",
                s.trim().chars().take(32).collect::<String>()
            ))
        })
    };
    lines
        .map(|(i, l)| {
            let line = i + 1;
            if l.contains('"') {
                return Err(PriceError::Format(format!(
                    "line {line}: quoted fields are not supported"
                )));
            }
            let f: Vec<&str> = l.split(',').collect();
            let (true, [model, input, output, rest @ ..]) = (f.len() == header.len(), f.as_slice())
            else {
                return Err(PriceError::Format(format!(
                    "line {line}: {} fields, the header has {}",
                    f.len(),
                    header.len()
                )));
            };
            let model = model.trim().to_owned();
            validate_model_name(&model)?;
            let cached = match rest.first().map(|c| c.trim()) {
                None | Some("") => None,
                Some(c) => Some(num(line, &model, "cached_input", c)?),
            };
            Ok((
                model.clone(),
                UsdPrice {
                    input: num(line, &model, "input", input)?,
                    output: num(line, &model, "output", output)?,
                    cached_input: cached,
                },
            ))
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Lower,
    Upper,
    Digit,
    Space,
    Newline,
    Punct,
    Other,
}

fn class(c: char) -> Class {
    match c {
        'a'..='z' => Class::Lower,
        'A'..='Z' => Class::Upper,
        '0'..='9' => Class::Digit,
        '\n' | '\r' => Class::Newline,
        ' ' | '\t' => Class::Space,
        c if c.is_ascii() => Class::Punct,
        _ => Class::Other,
    }
}

/// Tokens a text is estimated at, meant as an upper bound of what BPE tokenizers count. The
/// text is cut the way the tokenizers pre-split it (letters of one case run, with a lowercase
/// run after capitals; digits in groups of three; runs of spaces or newlines) and each piece
/// is counted at least one token: letter pieces one per three letters begun (common words
/// are one token), digit groups one, every punctuation character one, a run of blanks one
/// unless it is a single space before a letter or punctuation (which the tokenizers join to
/// it), and every other character one per UTF-8 byte pair begun (CJK text: two per
/// character; rare characters fall back to bytes). A run of letters and digits that mixes
/// them, or switches case more than twice (keys, base64, hashes), is counted at one token per
/// two characters begun if that is more. Measured against o200k_base and cl100k_base in
/// docs/limits.md ("Prompt estimate").
pub fn estimate_text_tokens(text: &str) -> u64 {
    let chars: Vec<char> = text.chars().collect();
    let mut n = 0u64;
    let mut i = 0usize;
    let at = |i: usize| chars.get(i).copied().map(class);
    while let Some(k) = at(i) {
        match k {
            Class::Lower | Class::Upper | Class::Digit => {
                let start = i;
                let (mut pieces, mut switches, mut digits, mut letters) =
                    (0u64, 0u64, false, false);
                while let Some(k) =
                    at(i).filter(|k| matches!(k, Class::Lower | Class::Upper | Class::Digit))
                {
                    let run_start = i;
                    if k == Class::Digit {
                        digits = true;
                        while at(i) == Some(Class::Digit) {
                            i += 1;
                        }
                        pieces += ((i - run_start) as u64).div_ceil(3);
                    } else {
                        letters = true;
                        let mut lower = k == Class::Lower;
                        i += 1;
                        while let Some(d) = at(i) {
                            match d {
                                Class::Lower => lower = true,
                                Class::Upper if !lower => {}
                                _ => break,
                            }
                            i += 1;
                        }
                        // Longer than words run (a letter repeated, a hash in capitals):
                        // one per two letters.
                        let len = (i - run_start) as u64;
                        pieces += if len > 12 {
                            len.div_ceil(2)
                        } else {
                            len.div_ceil(3)
                        };
                    }
                }
                for w in chars.get(start..i).unwrap_or_default().windows(2) {
                    if let [a, b] = w
                        && class(*a) != class(*b)
                    {
                        switches += 1;
                    }
                }
                let len = (i - start) as u64;
                if (digits && letters) || switches > 4 {
                    pieces = pieces.max(len);
                }
                n += pieces;
            }
            Class::Space | Class::Newline => {
                let start = i;
                while at(i) == Some(k) {
                    i += 1;
                }
                let joins_next = matches!(at(i), Some(Class::Lower | Class::Upper | Class::Punct));
                if k == Class::Newline || i - start > 1 || !joins_next {
                    n += 1;
                }
            }
            Class::Punct => {
                n += 1;
                i += 1;
            }
            Class::Other => {
                // Three-byte characters (CJK, kana, full-width forms) two tokens; the rest
                // one per byte (two-byte scripts and digits, emoji), the most a byte-level
                // tokenizer can make of them.
                n += chars.get(i).map_or(1, |c| match (c, c.len_utf8()) {
                    // Zero-width and other format characters get no merges: their bytes.
                    ('\u{2000}'..='\u{206F}' | '\u{FE00}'..='\u{FEFF}', b) => b as u64,
                    (_, 3) => 2,
                    (_, b) => b as u64,
                });
                i += 1;
            }
        }
    }
    n
}

/// Framing tokens counted per message (role, separators), and once per request (the
/// reply's priming).
const PER_MESSAGE: u64 = 4;
const PER_REQUEST: u64 = 3;

/// The prompt's estimated tokens: every string in the body except the model name, plus
/// framing per message.
pub fn estimate_prompt_tokens(body: &Value) -> u64 {
    let mut n = 0u64;
    if let Some(o) = body.as_object() {
        for (k, v) in o {
            if k != "model" {
                tollgate_dlp::json::walk_strings(v, &mut |s| n += estimate_text_tokens(s));
            }
        }
        for key in ["messages", "input"] {
            if let Some(Value::Array(a)) = o.get(key) {
                n += PER_MESSAGE * a.len() as u64;
            }
        }
        n += PER_REQUEST;
    }
    n
}

/// The margin, in percent of the estimate, a Claude model's prompt is reserved at.
pub const ANTHROPIC_MARGIN_PERCENT: u64 = 135;

/// The output ceiling the request itself sets, if any.
pub fn requested_max_output(body: &Value) -> Option<u64> {
    ["max_completion_tokens", "max_output_tokens", "max_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_u64))
}

/// The worst case a request is reserved at: estimated prompt plus the output ceiling (the
/// request's own, else `default_max_output`), priced when the model has a price (else 0 spend:
/// only token budgets apply).
pub fn worst_case(body: &Value, model: &str, prices: &PriceTable, default_max_output: u64) -> Ask {
    let mut input = estimate_prompt_tokens(body);
    // Anthropic's tokenizer is not public, so the estimate cannot be measured against it;
    // its newest tokenizer is documented to count up to 1.35 × what the previous one did for
    // the same text. Claude models are reserved at that margin over the estimate.
    let name = model.rsplit('/').next().unwrap_or(model);
    if name.starts_with("claude") || name.starts_with("anthropic.claude") {
        input = input.saturating_mul(ANTHROPIC_MARGIN_PERCENT).div_ceil(100);
    }
    let output = requested_max_output(body).unwrap_or(default_max_output);
    Ask {
        tokens: input.saturating_add(output),
        spend: prices
            .lookup(model)
            .map(|p| p.cost(input, output))
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dated_snapshots_and_aliases_find_their_model() {
        let t = PriceTable::builtin();
        let mini = t.lookup("gpt-4o-mini").copied();
        assert_eq!(t.lookup("gpt-4o-mini-2024-07-18").copied(), mini);
        assert_ne!(t.lookup("gpt-4o-2024-08-06"), mini.as_ref());
        assert_eq!(
            t.lookup("gpt-4o-2024-08-06").map(|p| p.input),
            Some(2_500_000)
        );
        assert_eq!(
            t.lookup("claude-sonnet-4-5-20250929").map(|p| p.output),
            Some(15_000_000)
        );
        assert!(t.lookup("claude-3-5-haiku-latest").is_some());
        assert!(t.lookup("openai/gpt-4.1-mini").is_some());
        // A longer name that is not a snapshot of a known model has no price.
        assert_eq!(t.lookup("gpt-4oish"), None);
        assert_eq!(t.lookup("my-local-llama"), None);
    }

    #[test]
    fn stored_prices_replace_builtin_ones() {
        let mut over = PriceTable::default();
        over.prices.insert(
            "gpt-4o".into(),
            Price {
                input: 1,
                output: 2,
                cached_input: None,
            },
        );
        let t = PriceTable::builtin().with(&over);
        assert_eq!(t.lookup("gpt-4o-2024-11-20").map(|p| p.output), Some(2));
    }

    #[test]
    fn price_files_in_json_and_csv_give_the_same_table() {
        let json = r#"{"prices": {"gpt-4o": {"input": 2.5, "output": 10, "cached_input": 1.25},
            "my-model": {"input": 0, "output": 0.4}}}"#;
        let csv = "model,input,output,cached_input\ngpt-4o,2.5,10,1.25\nmy-model,0,0.4,\n";
        let a = parse_price_file(json).unwrap();
        assert_eq!(a, parse_price_file(csv).unwrap());
        assert_eq!(
            a.prices.get("gpt-4o"),
            Some(&Price {
                input: 2_500_000,
                output: 10_000_000,
                cached_input: Some(1_250_000)
            })
        );
        assert_eq!(a.prices.get("my-model").map(|p| p.output), Some(400_000));
        // Bare object without the "prices" wrapper.
        let bare = parse_price_file(r#"{"x-1": {"input": 1, "output": 2}}"#).unwrap();
        assert_eq!(bare.prices.len(), 1);
    }

    #[test]
    fn bad_prices_are_refused_with_the_model_and_field_named() {
        for (file, needle) in [
            (
                r#"{"gpt-4o": {"input": -1, "output": 1}}"#,
                "input price -1",
            ),
            (
                r#"{"gpt-4o": {"input": 1, "output": 1e308}}"#,
                "output price",
            ),
            (r#"{"gpt-4o": {"input": 1}}"#, "gpt-4o: expected"),
            (
                r#"{"gpt-4o": {"input": 1, "output": 1, "extra": 2}}"#,
                "gpt-4o: expected",
            ),
            (r#"{"": {"input": 1, "output": 1}}"#, "model name"),
            (r#"{"bad name": {"input": 1, "output": 1}}"#, "model name"),
            ("model,input,output\ngpt-4o,NaN,1\n", "input price NaN"),
            ("model,input,output\ngpt-4o,inf,1\n", "input price inf"),
            (
                "model,input,output\ngpt-4o,abc,1\n",
                "line 2: gpt-4o: input \"abc\" is not a number",
            ),
            ("model,input,output\ngpt-4o,1\n", "line 2: 2 fields"),
            ("model,input,output\na,1,1\na,2,2\n", "more than once"),
            ("name,in,out\n", "header"),
            ("", "empty"),
            ("{not json", "not valid JSON"),
        ] {
            let e = parse_price_file(file).expect_err(file).to_string();
            assert!(
                e.contains(needle),
                "{file:?}: {e:?} should contain {needle:?}"
            );
        }
        let long = "m".repeat(MAX_MODEL_NAME + 1);
        assert!(validate_model_name(&long).is_err());
        assert!(validate_model_name(&"m".repeat(MAX_MODEL_NAME)).is_ok());
        assert!(validate_model_name("anthropic.claude-sonnet-4-5-20250929-v1:0").is_ok());
        assert!(validate_model_name("-x").is_err());
    }

    #[test]
    fn builtin_prices_survive_the_usd_round_trip() {
        let t = PriceTable::builtin();
        for (m, p) in &t.prices {
            assert_eq!(UsdPrice::of(p).to_price(m).as_ref(), Ok(p), "{m}");
        }
    }

    #[test]
    fn cost_rounds_up_to_a_micro_dollar() {
        let p = Price {
            input: 150_000,
            output: 600_000,
            cached_input: None,
        };
        assert_eq!(p.cost(1_000_000, 0), 150_000);
        assert_eq!(
            p.cost(1, 0),
            1,
            "a fraction of a micro-dollar still costs one"
        );
        assert_eq!(p.cost(0, 0), 0);
    }

    #[test]
    fn estimate_counts_text_and_framing_and_reserves_the_output_ceiling() {
        let body = json!({"model": "gpt-4o-mini", "max_tokens": 100,
            "messages": [{"role": "user", "content": "abcdefgh"}]});
        // "user" = 2, "abcdefgh" = 3, framing 4 per message and 3 per request.
        assert_eq!(estimate_prompt_tokens(&body), 12);
        let ask = worst_case(&body, "gpt-4o-mini", &PriceTable::builtin(), 4_096);
        assert_eq!(ask.tokens, 112);
        assert_eq!(
            ask.spend,
            (12 * 150_000 + 100 * 600_000u64).div_ceil(1_000_000)
        );
        // Claude: the Anthropic margin on the prompt, not on the output ceiling.
        let claude = worst_case(&body, "claude-sonnet-4-6", &PriceTable::builtin(), 4_096);
        assert_eq!(claude.tokens, (12u64 * 135).div_ceil(100) + 100);
        let no_max = json!({"model": "x", "messages": []});
        assert_eq!(
            worst_case(&no_max, "x", &PriceTable::builtin(), 512).tokens,
            3 + 512,
            "the request's own framing and the default ceiling"
        );
        assert_eq!(
            worst_case(&no_max, "x", &PriceTable::builtin(), 512).spend,
            0
        );
        // Japanese: two per character; digits in threes; a single space joins a word.
        assert_eq!(estimate_text_tokens("東京都"), 6);
        assert_eq!(estimate_text_tokens("1234567"), 3);
        assert_eq!(estimate_text_tokens("hello world"), 4);
        // A key-like run: one per character.
        assert_eq!(estimate_text_tokens("aB3xY9"), 6);
        // Zero-width characters: their bytes.
        assert_eq!(estimate_text_tokens("\u{200b}"), 3);
    }
}
