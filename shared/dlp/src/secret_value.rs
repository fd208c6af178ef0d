//! Is an assigned value a real secret or a placeholder? Judged by the value's **structure**,
//! never by a forbidden substring: `Password123!`, `Secret#2024`, `MySecretPass42` are
//! real passwords even though they contain `password` / `secret`, while
//! `your-password-here`, `${DB_PASSWORD}`, `<password>`, `os.environ[...]`,
//! `process.env.DB_PASSWORD`, `********`, `{{ vault_pw }}` and `changeme` are not.
//!
//! A value is a placeholder when it is
//! - a template or reference: wrapped in `<>` `[]` `{}` `()` `%%`, holding `{{`, `${`,
//!   `$(`, `%(`, a bare `$NAME`, `%s`, or a YAML tag (`!vault`);
//! - a mask: one repeated character, or holding `xxxx`, `****`, `...`, `•••`;
//! - code: a dotted path of identifiers each all-lower or all-upper snake case
//!   (`process.env.DB_PASSWORD`, `settings.db_password`), optionally indexed or called
//!   (`os.environ[`, `getpass.getpass()`);
//! - words only: letters and `-_ .` separators, every word (split at separators and at
//!   camel-case humps) from a small vocabulary of placeholder words (`your`, `password`,
//!   `here`, `changeme`, `secret`, `string`, `null`, `guest`, …). One digit or symbol
//!   makes it a value someone chose.
//!
//! This module never logs or returns the value.

/// Words that make up placeholder values (`your_password_here`, `MySecretPassword`,
/// `changeme`, `string`). Lower case; compared per word.
const PLACEHOLDER_WORDS: &[&str] = &[
    "a",
    "actual",
    "admin",
    "an",
    "api",
    "app",
    "bar",
    "baz",
    "change",
    "changeme",
    "database",
    "db",
    "default",
    "dummy",
    "empty",
    "enter",
    "example",
    "fake",
    "false",
    "foo",
    "goes",
    "guest",
    "here",
    "hidden",
    "insert",
    "key",
    "masked",
    "me",
    "my",
    "mysql",
    "na",
    "new",
    "nil",
    "none",
    "not",
    "null",
    "old",
    "optional",
    "own",
    "pass",
    "passphrase",
    "passwd",
    "password",
    "placeholder",
    "postgres",
    "put",
    "pw",
    "pwd",
    "real",
    "redacted",
    "replace",
    "required",
    "root",
    "sample",
    "secret",
    "secure",
    "service",
    "set",
    "str",
    "string",
    "strong",
    "super",
    "tbd",
    "test",
    "text",
    "the",
    "this",
    "todo",
    "token",
    "true",
    "undefined",
    "unset",
    "user",
    "username",
    "value",
    "very",
    "with",
    "your",
];

/// True when `val` (the value of a password assignment or of URL userinfo) is a
/// placeholder, a reference, a mask or code rather than a chosen secret.
pub fn is_placeholder(val: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (val.first(), val.last()) else {
        return true;
    };
    // templates and references
    let wrapped = matches!(
        (first, last),
        (b'<', b'>') | (b'[', b']') | (b'{', b'}') | (b'(', b')') | (b'%', b'%')
    );
    let has = |needle: &[u8]| memchr::memmem::find(val, needle).is_some();
    let env_ref = val.starts_with(b"${")
        || val.starts_with(b"$(")
        || (first == b'$'
            && val.len() > 1
            && val[1..]
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_'));
    let yaml_tag = first == b'!' && val.len() > 1 && val[1..].iter().all(u8::is_ascii_alphabetic);
    if wrapped || env_ref || yaml_tag || has(b"{{") || has(b"}}") || has(b"%(") || val == b"%s" {
        return true;
    }
    // masks
    if val.iter().all(|c| *c == first) {
        return true;
    }
    let lower = val.to_ascii_lowercase();
    let lhas = |needle: &[u8]| memchr::memmem::find(&lower, needle).is_some();
    if lhas(b"xxxx") || has(b"****") || has(b"...") || has("•••".as_bytes()) {
        return true;
    }
    code_expression(val) || placeholder_words(val)
}

/// `process.env.DB_PASSWORD`, `settings.db_password`, `os.environ[`, `getpass.getpass()`,
/// `config.get(`: a dotted path of snake-case identifiers, optionally called or indexed.
fn code_expression(val: &[u8]) -> bool {
    let mut v = val;
    // a call or index, closed or cut at a quote: `f(`, `f()`, `x[`, `x['k']`; the callee
    // is a lower-case name (`getpass`, `environ`, `get`)
    if let Some(i) = v.iter().position(|c| matches!(c, b'(' | b'[')) {
        let tail = &v[i + 1..];
        let args_ok = match tail.split_last() {
            None => true,
            Some((close, args)) => {
                matches!(close, b')' | b']')
                    && args.iter().all(|c| {
                        c.is_ascii_alphanumeric()
                            || matches!(c, b'_' | b'\'' | b'"' | b'.' | b',' | b' ')
                    })
            }
        };
        let callee = v[..i].rsplit(|c| *c == b'.').next().unwrap_or_default();
        if !args_ok || !callee.iter().any(u8::is_ascii_lowercase) {
            return false;
        }
        v = &v[..i];
    } else if !v.contains(&b'.') {
        return false;
    }
    if v.is_empty() {
        return false;
    }
    v.split(|c| *c == b'.').all(|seg| {
        let ident = seg
            .first()
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
            && seg.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
        let one_case =
            !seg.iter().any(u8::is_ascii_lowercase) || !seg.iter().any(u8::is_ascii_uppercase);
        ident && one_case
    })
}

/// Letters and `-_ .` only, every word a placeholder word (`your-password-here`,
/// `MySecretPassword`, `CHANGE_ME`).
fn placeholder_words(val: &[u8]) -> bool {
    if !val
        .iter()
        .all(|c| c.is_ascii_alphabetic() || matches!(c, b'-' | b'_' | b'.' | b' ' | b'/'))
    {
        return false;
    }
    let mut words: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut prev_lower = false;
    for &c in val {
        if !c.is_ascii_alphabetic() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        // camel-case hump: `yourPassword`, `MySecretPass`
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        cur.push(c.to_ascii_lowercase());
        prev_lower = c.is_ascii_lowercase();
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    !words.is_empty()
        && words.iter().all(|w| {
            PLACEHOLDER_WORDS
                .binary_search_by(|p| p.as_bytes().cmp(w.as_slice()))
                .is_ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_is_sorted_for_binary_search() {
        assert!(PLACEHOLDER_WORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn chosen_passwords_are_not_placeholders() {
        for v in [
            "Password123!",
            "Secret#2024",
            "MySecretPass42",
            "CleartextPassword1",
            "Tr0ub4dor-secret",
            "ChangeMe99",
            "hunter22",
            "correct horse battery staple",
            "Sup3r.Secret",
            "s3cr3t-Passw0rd",
            "IQ(2BbYhgQqpXD9a",
            "Ab(cd)9Xz!",
        ] {
            assert!(!is_placeholder(v.as_bytes()), "{v}");
        }
    }

    #[test]
    fn placeholders_references_masks_and_code_are() {
        for v in [
            "your-password-here",
            "YourPassword",
            "MySecretPassword",
            "CHANGE_ME",
            "changeme",
            "password",
            "Password",
            "string",
            "null",
            "<password>",
            "${DB_PASSWORD}",
            "$DB_PASSWORD",
            "{{ vault_db_password }}",
            "%(db_password)s",
            "!vault",
            "********",
            "xxxxxxxx",
            "pass...",
            "os.environ[",
            "process.env.DB_PASSWORD",
            "settings.DB_PASSWORD",
            "getpass.getpass()",
            "config.get(",
            "guest",
        ] {
            assert!(is_placeholder(v.as_bytes()), "{v}");
        }
    }
}
