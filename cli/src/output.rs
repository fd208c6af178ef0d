//! What a command hands back, and how it is shown: an aligned text table (or a few lines) for
//! people, one JSON document for scripts (`--json`). Commands build both; `main.rs` prints one.
//! Tables pad by terminal columns (display width), so CJK text lines up.

use serde_json::Value;
use tollgate_core::clock::{EpochMs, rfc3339};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// A command's result in both renderings.
#[derive(Debug, Clone, PartialEq)]
pub struct Out {
    pub human: String,
    pub json: Value,
}

impl Out {
    pub fn new(human: impl Into<String>, json: Value) -> Self {
        Self {
            human: human.into(),
            json,
        }
    }

    pub fn render(&self, json: bool) -> String {
        if json {
            // Serializing a Value cannot fail.
            serde_json::to_string_pretty(&self.json).unwrap_or_default()
        } else {
            self.human.trim_end().to_owned()
        }
    }
}

/// A plain text table: a header row, a rule, left-aligned columns two spaces apart.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<I, S>(header: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows
            .push(cells.into_iter().map(|c| clean_cell(&c.into())).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(width(c));
            }
        }
        let mut out = String::new();
        let line = |cells: &[String], out: &mut String| {
            let mut s = String::new();
            for (i, w) in widths.iter().enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or("");
                s.push_str(c);
                if i + 1 < cols {
                    s.push_str(&" ".repeat(w - width(c) + 2));
                }
            }
            out.push_str(s.trim_end());
            out.push('\n');
        };
        line(&self.header, &mut out);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(&rule, &mut out);
        for r in &self.rows {
            line(r, &mut out);
        }
        out
    }
}

/// Terminal columns: a CJK character takes two, a combining mark none.
fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// One line per cell, no control characters (a stored error string must not break the table
/// or drive the terminal).
fn clean_cell(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `key: value` lines with the keys aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        out.push_str(&format!(
            "{k}:{}{}\n",
            " ".repeat(w - width(k) + 1),
            clean_cell(v)
        ));
    }
    out
}

pub fn time_or_dash(t: Option<EpochMs>) -> String {
    t.map(rfc3339).unwrap_or_else(|| "-".to_owned())
}

pub fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// Remaining time until `until`, e.g. `12s`, `3m05s`, `2h10m`, `4d3h`; `-` when past or unset.
pub fn remaining(until: Option<EpochMs>, now: EpochMs) -> String {
    match until {
        Some(u) if u > now => human_duration(u - now),
        _ => "-".to_owned(),
    }
}

/// A positive duration in milliseconds, rounded up to whole seconds.
pub fn human_duration(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Truncates to `max` terminal columns with a trailing `…` (one column).
pub fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_owned();
    }
    let room = max.saturating_sub(1);
    let mut t = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > room {
            break;
        }
        used += w;
        t.push(c);
    }
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_strips_control_characters() {
        let mut t = Table::new(["ID", "STATUS"]);
        t.row(["tok_a", "active"]);
        t.row(["tok_longer", "bad\nline"]);
        let r = t.render();
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines[0], "ID          STATUS");
        assert_eq!(lines[1], "----------  --------");
        assert_eq!(lines[2], "tok_a       active");
        assert_eq!(lines[3], "tok_longer  bad line");
    }

    #[test]
    fn table_aligns_by_display_width_with_japanese_text() {
        let mut t = Table::new(["TENANT", "NAME", "OWNER"]);
        t.row(["acme", "株式会社アクメ", "plat@acme.test"]);
        t.row(["beta", "Beta Ltd", "ops@beta.test"]);
        t.row(["kana", "ｶﾅ商事", "k@kana.test"]);
        let r = t.render();
        let lines: Vec<&str> = r.lines().collect();
        // 株式会社アクメ is 7 wide characters = 14 columns; ｶﾅ are half-width (1 column each).
        assert_eq!(lines[0], "TENANT  NAME            OWNER");
        assert_eq!(lines[1], "------  --------------  --------------");
        assert_eq!(lines[2], "acme    株式会社アクメ  plat@acme.test");
        assert_eq!(lines[3], "beta    Beta Ltd        ops@beta.test");
        assert_eq!(lines[4], "kana    ｶﾅ商事          k@kana.test");
        // Every OWNER cell starts in the same terminal column.
        let col = |l: &str| UnicodeWidthStr::width(&l[..l.rfind("  ").unwrap() + 2]);
        assert!(lines[2..].iter().all(|l| col(l) == col(lines[0])), "{r}");
    }

    #[test]
    fn fields_and_truncate_count_display_width() {
        let f = fields(&[("名前", "x".into()), ("owner", "y".into())]);
        assert_eq!(f, "名前:  x\nowner: y\n");
        // 8 columns: three wide characters and the mark.
        assert_eq!(truncate("株式会社アクメ", 8), "株式会…");
        assert_eq!(width(&truncate("株式会社アクメ", 8)), 7);
        assert_eq!(truncate("株式会社", 8), "株式会社");
    }

    #[test]
    fn durations_and_remaining() {
        assert_eq!(human_duration(12_000), "12s");
        assert_eq!(human_duration(11_001), "12s");
        assert_eq!(human_duration(185_000), "3m05s");
        assert_eq!(human_duration(7_800_000), "2h10m");
        assert_eq!(human_duration(4 * 86_400_000 + 3 * 3_600_000), "4d3h");
        assert_eq!(remaining(Some(10_000), 10_000), "-");
        assert_eq!(remaining(None, 0), "-");
        assert_eq!(remaining(Some(22_000), 10_000), "12s");
    }

    #[test]
    fn truncate_marks_the_cut() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
