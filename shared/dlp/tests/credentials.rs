//! URL credentials and passwords judged by the value's structure (issue 11).
//! Every fixture is an obviously invented value; nothing here is a real credential.

use tollgate_dlp::*;

fn ents(text: &str) -> Vec<(Entity, String)> {
    detect(text)
        .into_iter()
        .map(|d| (d.entity, text[d.start..d.end].to_owned()))
        .collect()
}

#[test]
fn url_credentials_are_their_own_entity_and_blocked_by_default() {
    // assembled from parts: no credential-shaped URL is written in the repository
    let url =
        |scheme: &str, user: &str, pw: &str, host: &str| format!("{scheme}://{user}:{pw}@{host}");
    for (url, pw) in [
        (
            url("postgresql", "app", "Tr0ub4dor-secret", "db.internal/app"),
            "Tr0ub4dor-secret",
        ),
        (
            url(
                "mongodb",
                "root",
                "Kx9-vQ2mzL",
                "cluster0.example.mongodb.net/test",
            ),
            "Kx9-vQ2mzL",
        ),
        (
            url("amqp", "guest", "ChangeMe99", "mq.internal:5672/"),
            "ChangeMe99",
        ),
        (
            url("redis", "", "n0t-a-real-pw", "cache:6379/0"),
            "n0t-a-real-pw",
        ),
        (
            url("mysql", "root", "root123", "localhost:3306/shop"),
            "root123",
        ),
    ] {
        let text = format!("connect with {url} please");
        assert_eq!(
            ents(&text),
            vec![(Entity::UrlCredential, pw.to_owned())],
            "{url}"
        );
        let f = scan(&text, &Policy::default());
        assert_eq!(f[0].action, Action::Block, "{url}");
        assert_eq!(Entity::UrlCredential.category(), Category::Secret);
    }
}

#[test]
fn url_userinfo_is_never_an_email() {
    for text in [
        "see https://username:password@host.example.com/x",
        "postgres://postgres:postgres@localhost:5432/db",
        "amqp://guest:guest@localhost:5672",
        "https://user:pass@example.org/",
        "https://someone@example.org/path",
        "git clone https://token-name:abc@gitlab.example.com/g/p.git",
    ] {
        assert!(
            !ents(text).iter().any(|(e, _)| *e == Entity::Email),
            "{text}: {:?}",
            ents(text)
        );
    }
    // an address after a URL, or in a URL path, is still an address
    assert_eq!(
        ents("https://example.org/users/jane.doe@mail.example.com"),
        vec![(Entity::Email, "jane.doe@mail.example.com".to_owned())]
    );
    assert_eq!(
        ents("https://example.org/ then mail jane@mail.example.com"),
        vec![(Entity::Email, "jane@mail.example.com".to_owned())]
    );
}

#[test]
fn passwords_holding_common_words_are_found() {
    for pw in [
        "Password123!",
        "Secret#2024",
        "MySecretPass42",
        "CleartextPassword1",
        "Summer2024!",
    ] {
        for text in [
            format!("password={pw}"),
            format!("{{\"password\": \"{pw}\"}}"),
            format!("DB_PASSWORD: {pw}"),
            format!("パスワード：{pw}"),
        ] {
            let got = ents(&text);
            assert_eq!(got.len(), 1, "{text}: {got:?}");
            assert_eq!(got[0].0, Entity::Password, "{text}");
            assert!(pw.starts_with(got[0].1.as_str()), "{text}: {got:?}");
        }
    }
}

#[test]
fn placeholder_and_code_values_are_not_passwords() {
    for text in [
        "password: your-password-here",
        "PASSWORD=changeme",
        "password = \"MySecretPassword\"",
        "\"password\": \"string\"",
        "password: null",
        "password: <password>",
        "password=${DB_PASSWORD}",
        "password: \"{{ vault_db_password }}\"",
        "password: !vault |",
        "password=%(db_password)s",
        "password: process.env.DB_PASSWORD",
        "password = settings.DB_PASSWORD",
        "password = os.environ['DB_PASSWORD']",
        "password = getpass.getpass()",
        "password: ********",
        "The password is required.",
        "Reset your password: click the link below",
        "password is incorrect, try again",
    ] {
        assert!(ents(text).is_empty(), "{text}: {:?}", ents(text));
    }
}
