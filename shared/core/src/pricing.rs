//! Model prices and the worst-case estimate a request is reserved at before it is forwarded.
//!
//! Prices are integers: micro-dollars per million tokens, so a cost is exact and sums in the
//! store never drift. The built-in table holds the providers' published list prices for
//! common models (OpenAI <https://openai.com/api/pricing>, Anthropic
//! <https://docs.anthropic.com/en/docs/about-claude/pricing>) as of November 2025; operators
//! replace or extend it in the store (`tollgate prices set|import`), which wins over the
//! built-in entries.
//!
//! The prompt estimate is a heuristic with no tokenizer and no network: about four ASCII
//! characters per token, one token per other character (CJK text runs close to one token per
//! character; counting every non-ASCII character as a whole token errs high for accented
//! Latin text), plus a few tokens of framing per message. It has not been measured against the
//! providers' tokenizers here; settlement replaces it with the provider-reported usage, so an
//! estimate only decides admission, never what is finally counted.

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

/// (model, input, output, cached input) in thousandths of a dollar per million tokens.
const BUILTIN: &[(&str, u64, u64, Option<u64>)] = &[
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
    ("claude-opus-4-5", 5_000, 25_000, Some(500)),
    ("claude-opus-4-1", 15_000, 75_000, Some(1_500)),
    ("claude-opus-4", 15_000, 75_000, Some(1_500)),
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

/// Tokens a prompt is estimated at: see the module comment for the rule.
pub fn estimate_text_tokens(text: &str) -> u64 {
    let (mut ascii, mut other) = (0u64, 0u64);
    for c in text.chars() {
        if c.is_ascii() {
            ascii += 1;
        } else {
            other += 1;
        }
    }
    ascii.div_ceil(4) + other
}

/// Framing tokens counted per message (role, separators).
const PER_MESSAGE: u64 = 4;

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
    }
    n
}

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
    let input = estimate_prompt_tokens(body);
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
        // "user" = 1, "abcdefgh" = 2, framing 4.
        assert_eq!(estimate_prompt_tokens(&body), 7);
        let ask = worst_case(&body, "gpt-4o-mini", &PriceTable::builtin(), 4_096);
        assert_eq!(ask.tokens, 107);
        assert_eq!(
            ask.spend,
            (7 * 150_000 + 100 * 600_000u64).div_ceil(1_000_000)
        );
        let no_max = json!({"model": "x", "messages": []});
        assert_eq!(
            worst_case(&no_max, "x", &PriceTable::builtin(), 512).tokens,
            512
        );
        assert_eq!(
            worst_case(&no_max, "x", &PriceTable::builtin(), 512).spend,
            0
        );
        // Japanese: one token per character.
        assert_eq!(estimate_text_tokens("東京都"), 3);
    }
}
