//! Environment parsing with errors that name the variable. Values are never echoed back:
//! a misnamed secret must not reach a log through a parse error.

use std::str::FromStr;

/// A variable that is missing or does not hold what the function needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("{name} must be set")]
    Missing { name: String },
    #[error("{name} is not valid UTF-8")]
    NotUnicode { name: String },
    #[error("{name} must be {expected}")]
    Invalid {
        name: String,
        expected: &'static str,
    },
}

/// The process environment as a lookup (tests pass their own).
pub fn process(name: &str) -> Result<Option<String>, EnvError> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(EnvError::NotUnicode { name: name.into() }),
    }
}

/// The value when set to something other than blanks.
pub fn optional_from(
    lookup: impl Fn(&str) -> Result<Option<String>, EnvError>,
    name: &str,
) -> Result<Option<String>, EnvError> {
    Ok(lookup(name)?.filter(|v| !v.trim().is_empty()))
}

/// The value, or [`EnvError::Missing`].
pub fn required_from(
    lookup: impl Fn(&str) -> Result<Option<String>, EnvError>,
    name: &str,
) -> Result<String, EnvError> {
    optional_from(lookup, name)?.ok_or_else(|| EnvError::Missing { name: name.into() })
}

/// The parsed value, `default` when unset or blank, [`EnvError::Invalid`] when it does not
/// parse (`expected` describes what would: "a whole number of milliseconds").
pub fn parse_or_from<T: FromStr>(
    lookup: impl Fn(&str) -> Result<Option<String>, EnvError>,
    name: &str,
    default: T,
    expected: &'static str,
) -> Result<T, EnvError> {
    match optional_from(lookup, name)? {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| EnvError::Invalid {
            name: name.into(),
            expected,
        }),
    }
}

/// [`optional_from`] over the process environment.
pub fn optional(name: &str) -> Result<Option<String>, EnvError> {
    optional_from(process, name)
}

/// [`required_from`] over the process environment.
pub fn required(name: &str) -> Result<String, EnvError> {
    required_from(process, name)
}

/// [`parse_or_from`] over the process environment.
pub fn parse_or<T: FromStr>(name: &str, default: T, expected: &'static str) -> Result<T, EnvError> {
    parse_or_from(process, name, default, expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Result<Option<String>, EnvError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| Ok(map.get(k).cloned())
    }

    #[test]
    fn missing_and_blank_required_variables_are_named() {
        let e = required_from(vars(&[("B", "  ")]), "A").unwrap_err();
        assert_eq!(e.to_string(), "A must be set");
        let e = required_from(vars(&[("B", "  ")]), "B").unwrap_err();
        assert_eq!(e, EnvError::Missing { name: "B".into() });
    }

    #[test]
    fn unparsable_value_names_the_variable_but_never_echoes_the_value() {
        let e =
            parse_or_from(vars(&[("N", "s3cr3t-ish")]), "N", 1u32, "a whole number").unwrap_err();
        let text = e.to_string();
        assert_eq!(text, "N must be a whole number");
        assert!(!text.contains("s3cr3t"));
    }

    #[test]
    fn parse_or_uses_the_default_when_unset_and_trims_when_set() {
        assert_eq!(parse_or_from(vars(&[]), "N", 7u32, "a number"), Ok(7));
        assert_eq!(
            parse_or_from(vars(&[("N", " 12 ")]), "N", 7u32, "a number"),
            Ok(12)
        );
    }
}
