//! Differential test of the scanner's shortcuts (detectors skipped when a cheap look at the
//! text proves they cannot match): the scanner with them and without them must report the
//! same detections, on generated texts built from every detector's trigger literals, near
//! misses and valid fixtures, and on the other test files' fixture texts.

use proptest::prelude::*;
use tollgate_dlp::{Detection, Scanner, Scope};
mod common;
use common::{aws_access_key, github_token};

// a helper of the tests below, built once (the scanners take milliseconds to compile)
#[allow(clippy::expect_used)]
fn both(text: &str) -> [(Vec<Detection>, Vec<Detection>); 2] {
    static FAST: std::sync::LazyLock<Scanner> =
        std::sync::LazyLock::new(|| Scanner::new().expect("compiles"));
    static FULL: std::sync::LazyLock<Scanner> =
        std::sync::LazyLock::new(|| Scanner::without_shortcuts().expect("compiles"));
    [Scope::All, Scope::SecretsOnly].map(|s| (FAST.detect(text, s), FULL.detect(text, s)))
}

fn assert_same(text: &str) {
    for (fast, full) in both(text) {
        assert_eq!(fast, full, "{text:?}");
    }
}

/// Trigger literals of every detector, their near misses, and valid values.
fn piece() -> impl Strategy<Value = String> {
    let fixed: Vec<String> = [
        "sk-",
        "sk_live_",
        "rk_test_",
        "tgk_live_",
        "AKIA",
        "ASIA",
        "A3T",
        "AIza",
        "ghp_",
        "gho_",
        "github_pat_",
        "xoxb-",
        "xoxe.xoxp-",
        "xapp-",
        "eyJ",
        "eyJhbGciOiJIUzI1NiJ9",
        ".eyJzdWIiOiIxIn0.",
        "-----BEGIN",
        "password",
        "Password",
        "PASSWD",
        "pwd",
        "Pwd",
        "pass",
        "pass_",
        "パスワード",
        "暗証番号",
        "secret",
        "Secret_Access_Key",
        "SECRET KEY",
        "secretkey",
        "シークレットキー",
        "シークレットアクセスキー",
        "hf_",
        "api_org_",
        "gsk_",
        "glpat-",
        "GR1348941",
        "pplx-",
        "r8_",
        "ABSK",
        "bedrock-api-key-",
        "api_key",
        "API_KEY=",
        "token:",
        "Token ",
        "Bearer ",
        "Authorization: Basic ",
        "curl -u ",
        "client_secret",
        "Q~",
        ":A",
        "JQQJ9",
        "SK0123456789abcdef0123456789abcdef",
        "://",
        "https://",
        "postgres://user:",
        "@",
        "@db.example.com",
        "taro@example.co.jp",
        "a.b@c",
        "user@host",
        "10.0.0.1",
        "fe80::1",
        "::",
        "2001:db8::1",
        "4111 1111 1111 1111",
        "090-1234-5678",
        "+1 415-555-2671",
        "〒100-0001",
        "東京都千代田区丸の内1-9-1",
        "丁目",
        "三丁目",
        "市",
        "郡",
        "PSC 1234, Box 5678, APO AE 12345",
        "123 Main Street",
        "=",
        ": ",
        "\"",
        "'",
        "\\n",
        "\\u0041",
        "%41",
        "ＡＫＩＡ",
        "０９０",
        "\u{200b}",
        " ",
        "-",
        "/services/T",
        "hooks.slack.com",
        "c2stcHJvai1",
        "QUtJQU",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([
        aws_access_key(),
        github_token(),
        "Hunter22!x".to_owned(),
        // a PEM header alone, no key material
        format!("-----BEGIN {} PRIVATE KEY-----", "RSA"),
    ])
    .collect();
    prop_oneof![
        3 => prop::sample::select(fixed),
        2 => "[a-zA-Z0-9_\\-]{1,24}",
        1 => "[ :/@.=0-9]{1,6}",
        1 => "[あ-ん漢字ー　]{0,4}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn shortcuts_change_no_detection(parts in prop::collection::vec(piece(), 1..8), sep in "[ =:/\\n]?") {
        let text = parts.join(&sep);
        for (fast, full) in both(&text) {
            prop_assert_eq!(fast, full, "{:?}", text);
        }
    }

    #[test]
    fn shortcuts_change_no_detection_on_arbitrary_text(s in any::<String>()) {
        for (fast, full) in both(&s) {
            prop_assert_eq!(fast, full, "{:?}", s);
        }
    }
}

#[test]
fn shortcuts_change_no_detection_on_the_fixture_files() {
    // every string literal of the other test files, whole and cut into short pieces
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("tests dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let src = std::fs::read_to_string(&path).expect("read");
        for lit in src.split('"').skip(1).step_by(2) {
            assert_same(lit);
            let chars: Vec<char> = lit.chars().collect();
            for len in [4, 12, 24] {
                for w in chars.windows(len).step_by(3) {
                    assert_same(&w.iter().collect::<String>());
                }
            }
            n += 1;
        }
    }
    assert!(n > 500, "only {n} fixture strings found");
}
