//! Tracing set-up: JSON lines on stderr, with the current span.
//!
//! Level precedence (first one set wins):
//! 1. `AWS_LAMBDA_LOG_LEVEL` — Lambda's advanced logging controls (`TRACE`, `DEBUG`, `INFO`,
//!    `WARN`, `ERROR`, `FATAL`; `FATAL` maps to `error`). It is set by Lambda when the
//!    function's log level is configured, and then it must win over anything baked into the
//!    function's environment.
//! 2. `RUST_LOG` — a full `tracing_subscriber::EnvFilter` directive (`info,hyper=warn`).
//! 3. `info`.
//!
//! A value that does not parse falls back to `info` and says so in one warning line (naming
//! the variable, not repeating the value).

use std::fmt::{self, Write as _};
use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// Where the level came from, for the start-up warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelChoice {
    /// The filter directive to use.
    pub directive: String,
    /// The variable it came from, `None` for the default.
    pub source: Option<&'static str>,
}

/// Picks the filter directive from the two variables' values (see the module doc).
pub fn choose_level(aws_lambda_log_level: Option<&str>, rust_log: Option<&str>) -> LevelChoice {
    if let Some(v) = aws_lambda_log_level
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        let lower = v.to_ascii_lowercase();
        let directive = if lower == "fatal" {
            "error".into()
        } else {
            lower
        };
        return LevelChoice {
            directive,
            source: Some("AWS_LAMBDA_LOG_LEVEL"),
        };
    }
    if let Some(v) = rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        return LevelChoice {
            directive: v.to_owned(),
            source: Some("RUST_LOG"),
        };
    }
    LevelChoice {
        directive: "info".into(),
        source: None,
    }
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init() {
    let aws = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok();
    let rust_log = std::env::var("RUST_LOG").ok();
    let choice = choose_level(aws.as_deref(), rust_log.as_deref());
    let (filter, rejected) = match EnvFilter::try_new(&choice.directive) {
        Ok(f) => (f, None),
        Err(_) => (EnvFilter::new("info"), choice.source),
    };
    // Operational logs go to stderr as JSON; stdout carries audit and metric lines only.
    let installed = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(true)
        .fmt_fields(SpanFields)
        .try_init();
    if let (Ok(()), Some(var)) = (installed, rejected) {
        tracing::warn!(variable = var, "log level does not parse; using info");
    }
}

/// A span's fields as one JSON object, the form `tracing_subscriber`'s JSON event format
/// reads back (it parses the object and prints its members, sorted, in each event's `span`
/// and `spans`), written without `JsonFields`' costs: `JsonFields` builds a map of
/// `serde_json::Value`s and writes it through an adaptor that re-checks every piece as UTF-8
/// (3.4k instructions for the request span's one field at creation), and for a field
/// recorded later (the request span's `tenant` and `key_id`, once the key proved itself)
/// parses the object back into a map and writes it all again (8.7k, callgrind). Here fields
/// are written straight into the object, and later ones appended to it. Values are what
/// `JsonFields` makes of them (strings, numbers, `Debug` text), so events print the same line.
/// A field recorded again under a name the object may already hold goes through
/// `JsonFields`' own merge, so the object never holds a name twice.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpanFields;

impl<'w> FormatFields<'w> for SpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut object = String::new();
        write_object(&mut object, |v| fields.record(v));
        writer.write_str(&object)
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        let object = &mut current.fields;
        if object.is_empty() {
            write_object(object, |v| fields.record(v));
            return Ok(());
        }
        let mut names = NameClash {
            object: object.as_str(),
            clash: false,
        };
        fields.record(&mut names);
        if names.clash || !object.starts_with('{') || !object.ends_with('}') {
            let mut merged = FormattedFields::<JsonFields>::new(std::mem::take(object));
            let result = JsonFields::new().add_fields(&mut merged, fields);
            *object = merged.fields;
            return result;
        }
        object.pop(); // the closing brace
        let mut members = Members {
            first: object.len() == 1,
            out: object,
        };
        fields.record(&mut members);
        object.push('}');
        Ok(())
    }
}

/// `{` + the members `record` visits + `}`, appended to `out`.
fn write_object(out: &mut String, record: impl FnOnce(&mut Members<'_>)) {
    out.push('{');
    let mut members = Members { out, first: true };
    record(&mut members);
    out.push('}');
}

/// Writes each field as a JSON member (`"name":value`), as `JsonFields` would value it.
struct Members<'a> {
    out: &'a mut String,
    first: bool,
}

impl Members<'_> {
    fn key(&mut self, name: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_json_str(self.out, name);
        self.out.push(':');
    }

    /// A value `JsonFields` keeps as a `serde_json::Value` that is not a plain string.
    fn value(&mut self, name: &str, value: serde_json::Value) {
        self.key(name);
        let _ = write!(self.out, "{value}");
    }
}

impl Visit for Members<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.value(field.name(), serde_json::Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field.name());
        let _ = write!(self.out, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field.name());
        let _ = write!(self.out, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field.name());
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field.name());
        push_json_str(self.out, value);
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.value(field.name(), serde_json::Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if name.starts_with("log.") {
            return; // log metadata, which `JsonFields` leaves out too
        }
        self.key(name.strip_prefix("r#").unwrap_or(name));
        self.out.push('"');
        let _ = write!(Escaped(self.out), "{value:?}");
        self.out.push('"');
    }
}

/// `s` as a JSON string.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let _ = Escaped(out).write_str(s);
    out.push('"');
}

/// Writes into a JSON string's inside: `"`, `\\` and control characters escaped as
/// serde_json escapes them.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(i) = rest.find(|c: char| c < ' ' || c == '"' || c == '\\') {
            self.0.push_str(&rest[..i]);
            let c = rest.as_bytes()[i];
            match c {
                b'"' => self.0.push_str("\\\""),
                b'\\' => self.0.push_str("\\\\"),
                b'\n' => self.0.push_str("\\n"),
                b'\r' => self.0.push_str("\\r"),
                b'\t' => self.0.push_str("\\t"),
                0x08 => self.0.push_str("\\b"),
                0x0c => self.0.push_str("\\f"),
                _ => {
                    let _ = write!(self.0, "\\u{:04x}", c);
                }
            }
            rest = &rest[i + 1..];
        }
        self.0.push_str(rest);
        Ok(())
    }
}

/// Whether any recorded field's name may already be a member of `object`. Conservative: a
/// name appearing as `"name":` anywhere in the object (or needing escapes) counts.
struct NameClash<'a> {
    object: &'a str,
    clash: bool,
}

impl Visit for NameClash<'_> {
    fn record_debug(&mut self, field: &Field, _value: &dyn fmt::Debug) {
        let name = field.name();
        for name in [name, name.strip_prefix("r#").unwrap_or(name)] {
            if name.chars().any(|c| c < ' ' || c == '"' || c == '\\') {
                self.clash = true;
                return;
            }
            let o = self.object;
            self.clash |= o
                .match_indices(name)
                .any(|(i, _)| o[..i].ends_with('"') && o[i + name.len()..].starts_with("\":"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    /// The log lines `run` writes, with the given span field formatter (as `init` sets up,
    /// without timestamps).
    fn lines<N>(fields: N, run: fn()) -> String
    where
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let buf = Buf::default();
        let sub = tracing_subscriber::fmt()
            .json()
            .without_time()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(buf.clone())
            .with_current_span(true)
            .fmt_fields(fields)
            .finish();
        tracing::subscriber::with_default(sub, run);
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    fn request_like() {
        let span = tracing::info_span!(
            "request",
            request_id = "5f0c6f3e-8a4f-4d7e-9c51-2f1d0f6b9a11",
            tenant = tracing::field::Empty,
            key_id = tracing::field::Empty
        );
        let _g = span.enter();
        tracing::info!("before the caller is known");
        span.record("tenant", "acme \"quoted\" \\ \n\u{1}\u{7f} é ✓");
        span.record("key_id", "AbCdEf012345");
        tracing::warn!(n = 3, "after");
        // Recorded again: the name is in the object already (the merge path).
        span.record("tenant", "other");
        tracing::error!("again");
        let inner = tracing::info_span!(
            "inner",
            r#type = "x",
            f = 1.5,
            nan = f64::NAN,
            b = true,
            i = -3i64,
            u = u64::MAX,
            big = 1u128 << 100,
            d = ?Some("dbg\"q"),
            shown = %"disp\tlay",
            later = tracing::field::Empty,
            also = tracing::field::Empty
        );
        inner.in_scope(|| {
            tracing::info!("inner, nothing recorded yet");
            inner.record("later", 7u64);
            inner.record("also", &b"by"[..]);
            tracing::info!(x = "y", "inner, recorded");
        });
        // A span created with no field at all, fields recorded later.
        let bare = tracing::info_span!(
            "bare",
            a = tracing::field::Empty,
            r#b = tracing::field::Empty
        );
        bare.in_scope(|| {
            tracing::info!("bare");
            bare.record("a", "first");
            bare.record("b", 2.25);
            tracing::info!("bare, recorded");
        });
    }

    #[test]
    fn log_lines_are_the_same_as_with_the_json_field_formatter() {
        let ours = lines(SpanFields, request_like);
        let theirs = lines(JsonFields::new(), request_like);
        assert_eq!(ours.lines().count(), 7, "{ours}");
        assert_eq!(ours, theirs);
        for line in ours.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v.get("span").is_some(), "{line}");
        }
        assert!(ours.contains(r#""key_id":"AbCdEf012345""#), "{ours}");
    }

    #[test]
    fn a_later_field_is_appended_to_the_object() {
        let mut object = String::from(r#"{"request_id":"r"}"#);
        object.pop();
        let mut m = Members {
            first: false,
            out: &mut object,
        };
        m.key("tenant");
        push_json_str(m.out, "a\"b\\c\u{0}\u{8}\u{c}");
        object.push('}');
        assert_eq!(object, r#"{"request_id":"r","tenant":"a\"b\\c\u0000\b\f"}"#);
        let v: serde_json::Value = serde_json::from_str(&object).unwrap();
        assert_eq!(v["tenant"], "a\"b\\c\u{0}\u{8}\u{c}");
    }

    #[test]
    fn lambda_log_level_wins_over_rust_log() {
        let c = choose_level(Some("DEBUG"), Some("warn"));
        assert_eq!(c.directive, "debug");
        assert_eq!(c.source, Some("AWS_LAMBDA_LOG_LEVEL"));
    }

    #[test]
    fn fatal_maps_to_error() {
        assert_eq!(choose_level(Some("FATAL"), None).directive, "error");
    }

    #[test]
    fn rust_log_is_used_as_a_full_directive_when_lambda_level_is_unset_or_blank() {
        let c = choose_level(Some("  "), Some("info,hyper=warn"));
        assert_eq!(c.directive, "info,hyper=warn");
        assert_eq!(c.source, Some("RUST_LOG"));
    }

    #[test]
    fn default_is_info() {
        assert_eq!(
            choose_level(None, None),
            LevelChoice {
                directive: "info".into(),
                source: None
            }
        );
    }
}
