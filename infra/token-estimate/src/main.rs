//! Measures `tollgate_core::pricing::estimate_prompt_tokens` against real tokenizers.
//!
//! Reads chat request bodies, one JSON object per line, on stdin (`chat_bodies.py` makes
//! them from the DLP evaluation corpus), and prints the distribution of estimate ÷ real for
//! OpenAI's `o200k_base` (GPT-4o and later) and `cl100k_base` (GPT-4, GPT-3.5), per body shape.
//!
//! "Real" is counted the way OpenAI's cookbook counts a chat prompt: the tokens of every
//! string in the body except `model` (roles, names, contents, tool arguments and definitions)
//! plus 3 per message and 3 to prime the reply. The providers add framing for tool
//! definitions that is not public; it is not counted here.
//!
//! Usage: `python infra/token-estimate/chat_bodies.py | cargo run -p tollgate-token-estimate`

use serde_json::Value;
use std::io::BufRead;
use tiktoken_rs::CoreBPE;
use tollgate_core::pricing::estimate_prompt_tokens;

fn real_tokens(bpe: &CoreBPE, body: &Value) -> u64 {
    let mut n = 0u64;
    if let Some(o) = body.as_object() {
        for (k, v) in o {
            if k != "model" {
                tollgate_dlp::json::walk_strings(v, &mut |s| {
                    n += bpe.encode_ordinary(s).len() as u64;
                });
            }
        }
        for key in ["messages", "input"] {
            if let Some(Value::Array(a)) = o.get(key) {
                n += 3 * a.len() as u64;
            }
        }
    }
    n + 3
}

struct Dist {
    name: String,
    ratios: Vec<f64>,
    under: usize,
    worst: Option<(f64, u64, u64, String)>,
}

impl Dist {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ratios: Vec::new(),
            under: 0,
            worst: None,
        }
    }

    fn add(&mut self, estimate: u64, real: u64, body: &str) {
        let r = estimate as f64 / real.max(1) as f64;
        if estimate < real {
            self.under += 1;
        }
        if self.worst.as_ref().is_none_or(|w| r < w.0) {
            let sample: String = body.chars().take(160).collect();
            self.worst = Some((r, estimate, real, sample));
        }
        self.ratios.push(r);
    }

    fn print(&mut self) {
        if self.ratios.is_empty() {
            return;
        }
        self.ratios.sort_by(f64::total_cmp);
        let q = |p: f64| {
            let i = ((self.ratios.len() - 1) as f64 * p).round() as usize;
            self.ratios.get(i).copied().unwrap_or(f64::NAN)
        };
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} |",
            self.name,
            self.ratios.len(),
            q(0.0),
            q(0.01),
            q(0.5),
            q(0.99),
            q(1.0),
            self.under
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tokenizers = [
        ("o200k_base", tiktoken_rs::o200k_base()?),
        ("cl100k_base", tiktoken_rs::cl100k_base()?),
    ];
    let mut dists: Vec<(String, Dist)> = Vec::new();
    let mut lowest: Vec<String> = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let shape = v
            .get("_shape")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let mut body = v;
        if let Some(o) = body.as_object_mut() {
            o.remove("_shape");
        }
        let estimate = estimate_prompt_tokens(&body);
        let text = body.to_string();
        for (tname, bpe) in &tokenizers {
            let real = real_tokens(bpe, &body);
            for key in [format!("{tname} all"), format!("{tname} {shape}")] {
                let i = match dists.iter().position(|(k, _)| *k == key) {
                    Some(i) => i,
                    None => {
                        dists.push((key.clone(), Dist::new(&key)));
                        dists.len() - 1
                    }
                };
                if let Some((_, d)) = dists.get_mut(i) {
                    d.add(estimate, real, &text);
                }
            }
        }
    }
    dists.sort_by(|a, b| a.0.cmp(&b.0));
    println!("| tokenizer, shape | bodies | min | p1 | median | p99 | max | estimate < real |");
    println!("|---|---|---|---|---|---|---|---|");
    for (_, d) in &mut dists {
        d.print();
        if let Some((r, e, real, sample)) = &d.worst {
            lowest.push(format!(
                "{}: lowest ratio {r:.3} (estimate {e}, real {real}): {sample}",
                d.name
            ));
        }
    }
    println!();
    for l in lowest {
        println!("{l}");
    }
    Ok(())
}
