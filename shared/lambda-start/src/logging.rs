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

use tracing_subscriber::EnvFilter;

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
        .try_init();
    if let (Ok(()), Some(var)) = (installed, rejected) {
        tracing::warn!(variable = var, "log level does not parse; using info");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
