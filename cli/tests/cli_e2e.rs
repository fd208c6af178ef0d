//! The built `tollgate` binary end to end against the local AWS emulator (moto, started once
//! for this test binary by `tollgate-testkit`): every command runs as a subprocess with only
//! the emulator's environment, and no output may ever contain a client key's secret or a
//! pool token's value.
// Test code: a failed unwrap is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use tollgate_aws::SecretsManagerStore;
use tollgate_core::key::ClientKey;
use tollgate_core::ports::{SecretStore, StoreError};
use tollgate_testkit::{Emulator, unique_ns};

const TOKEN_VALUE: &str = "sk-e2e-UPSTREAM-value-9f8e7d6c5b4a";
const NEW_TOKEN_VALUE: &str = "sk-e2e-ROTATED-value-0a1b2c3d4e5f";

fn emulator() -> &'static Emulator {
    match tollgate_testkit::shared() {
        Ok(e) => e,
        Err(e) => panic!("AWS emulator: {e}"),
    }
}

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs the binary with a clean environment: the emulator's variables (when given) only.
fn tollgate(emu: Option<&Emulator>, args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.args(args)
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(emu) = emu {
        cmd.envs(emu.env());
    }
    let mut child = cmd.spawn().expect("run tollgate");
    {
        let mut w = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            w.write_all(s.as_bytes()).expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("wait for tollgate");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(emu: &Emulator, args: &[&str], stdin: Option<&str>) -> Run {
    let r = tollgate(Some(emu), args, stdin);
    assert_eq!(r.code, 0, "tollgate {args:?} failed: {r:?}");
    r
}

/// `token add --pool <pool> --provider <provider>` followed by what the test adds.
fn token_add<'a>(pool: &'a str, provider: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut argv = vec!["token", "add", "--pool", pool, "--provider", provider];
    argv.extend_from_slice(extra);
    argv
}

async fn secrets(emu: &Emulator) -> SecretsManagerStore {
    SecretsManagerStore::new(&emu.sdk_config().await)
}

#[tokio::test]
async fn operator_flow_end_to_end_never_leaks_a_secret() {
    let emu = emulator();
    let ns = unique_ns("cli");
    let tenant = format!("{ns}acme");
    let pool = format!("{ns}pool");
    let token_id = format!("{ns}tok");
    let mut outputs: Vec<String> = Vec::new();

    // Tenant.
    let r = ok(
        emu,
        &[
            "tenant",
            "create",
            &tenant,
            "--name",
            "Acme",
            "--owner",
            "plat@acme.test",
        ],
        None,
    );
    assert!(r.stdout.contains(&tenant), "{r:?}");
    let r = ok(emu, &["tenant", "list", "--json"], None);
    let tenants = r.json()["tenants"].as_array().unwrap().clone();
    assert!(
        tenants
            .iter()
            .any(|t| t["tenant_id"] == tenant.as_str() && t["owner"] == "plat@acme.test")
    );

    // Issue: the key is printed once.
    let r = ok(
        emu,
        &[
            "key",
            "issue",
            "--tenant",
            &tenant,
            "--owner",
            "dev@acme.test",
            "--name",
            "ci",
            "--json",
        ],
        None,
    );
    let issued = r.json();
    let full = issued["key"].as_str().expect("key in JSON").to_owned();
    let key = ClientKey::parse(&full).expect("a well-formed key");
    assert_eq!(issued["key_id"], key.key_id());
    assert_eq!(issued["display"], key.display());
    let secret_part = full[key.env().prefix().len() + 12..full.len() - 6].to_owned();
    let human = ok(
        emu,
        &[
            "key",
            "issue",
            "--tenant",
            &tenant,
            "--owner",
            "dev@acme.test",
        ],
        None,
    );
    assert!(
        human.stdout.contains("will not be shown again"),
        "{human:?}"
    );

    // List and show: display form only, never the key or its secret part.
    for args in [
        vec!["key", "list", "--tenant", &tenant],
        vec!["key", "list", "--tenant", &tenant, "--json"],
        vec!["key", "list"],
        vec!["key", "show", key.key_id()],
        vec!["key", "show", &full],
        vec!["key", "show", &full, "--json"],
    ] {
        let r = ok(emu, &args, None);
        assert!(r.stdout.contains(&key.display()), "{args:?}: {r:?}");
        outputs.push(r.all());
    }
    let display = key.display();
    let r = ok(emu, &["key", "show", &display, "--json"], None);
    assert_eq!(r.json()["status"], "active");
    assert_eq!(r.json()["tenant_id"], tenant.as_str());
    outputs.push(r.all());
    let r = ok(emu, &["key", "show", &full, "--json"], None);
    assert_eq!(r.json()["presented_key_matches"], true);

    // Token: the value comes in on stdin and goes only to Secrets Manager.
    let r = ok(
        emu,
        &token_add(
            &pool,
            "openai",
            &[
                "--new-pool",
                "--id",
                &token_id,
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--owner",
                "ops@acme.test",
                "--weight",
                "2",
                "--json",
            ],
        ),
        Some(&format!("{TOKEN_VALUE}\n")),
    );
    assert_eq!(r.json()["token_id"], token_id.as_str());
    outputs.push(r.all());
    let secret_id = format!("tollgate/pool/{pool}/{token_id}");
    let sm = secrets(emu).await;
    assert_eq!(
        sm.get_secret(&secret_id).await.unwrap().expose(),
        TOKEN_VALUE
    );

    let r = ok(emu, &["pool", "show", &pool, "--json"], None);
    let shown = r.json();
    let t = &shown["pools"][0]["tokens"][0];
    assert_eq!(t["token_id"], token_id.as_str());
    assert_eq!(t["status"], "active");
    assert_eq!(t["provider"], "openai");
    assert_eq!(t["base_url"], "http://127.0.0.1:9/v1");
    assert_eq!(t["weight"], 2);
    assert_eq!(t["secret"]["secret_id"], secret_id.as_str());
    outputs.push(r.all());
    let r = ok(emu, &["token", "list", "--pool", &pool], None);
    assert!(r.stdout.contains(&token_id));
    outputs.push(r.all());

    // New value: a new secret version.
    let r = ok(
        emu,
        &["token", "set-value", &pool, &token_id],
        Some(NEW_TOKEN_VALUE),
    );
    assert!(r.stdout.contains("secret cache TTL"), "{r:?}");
    outputs.push(r.all());
    assert_eq!(
        sm.get_secret(&secret_id).await.unwrap().expose(),
        NEW_TOKEN_VALUE
    );

    // Disable shows in pool show.
    outputs.push(ok(emu, &["token", "disable", &pool, &token_id], None).all());
    let r = ok(emu, &["pool", "show", &pool], None);
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with(&token_id))
        .unwrap_or_else(|| panic!("no row for the token: {r:?}"));
    assert!(line.contains("disabled"), "{line}");
    outputs.push(r.all());
    let r = ok(emu, &["pool", "show", "--json"], None);
    assert!(
        r.json()["pools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pool"] == pool.as_str())
    );
    outputs.push(r.all());
    outputs.push(ok(emu, &["pool", "set-strategy", &pool, "priority"], None).all());
    let r = ok(emu, &["pool", "show", &pool, "--json"], None);
    assert_eq!(r.json()["pools"][0]["strategy"], "priority");

    // Revoke.
    let r = ok(emu, &["key", "revoke", key.key_id(), "--yes"], None);
    assert!(r.stdout.contains("cache TTL"), "{r:?}");
    outputs.push(r.all());
    let r = ok(emu, &["key", "show", key.key_id()], None);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("status:") && l.contains("revoked")),
        "{r:?}"
    );
    outputs.push(r.all());
    let r = ok(emu, &["key", "show", key.key_id(), "--json"], None);
    assert_eq!(r.json()["status"], "revoked");
    // Without --yes and without a terminal, revoke refuses.
    let r = tollgate(Some(emu), &["token", "remove", &pool, &token_id], None);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.starts_with("error:") && r.stderr.contains("--yes"),
        "{r:?}"
    );

    // Remove: record and secret gone.
    outputs.push(ok(emu, &["token", "remove", &pool, &token_id, "--yes"], None).all());
    let r = ok(emu, &["pool", "show", &pool, "--json"], None);
    assert!(
        r.json()["pools"][0]["tokens"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{r:?}"
    );
    assert_eq!(sm.get_secret(&secret_id).await, Err(StoreError::NotFound));

    for out in &outputs {
        assert!(!out.contains(&full), "full key leaked: {out}");
        assert!(!out.contains(&secret_part), "key secret leaked: {out}");
        assert!(!out.contains(TOKEN_VALUE), "token value leaked: {out}");
        assert!(!out.contains(NEW_TOKEN_VALUE), "token value leaked: {out}");
    }
}

#[test]
fn issuing_for_a_missing_tenant_is_an_operational_error() {
    let emu = emulator();
    let tenant = format!("{}missing", unique_ns("cli"));
    let r = tollgate(
        Some(emu),
        &["key", "issue", "--tenant", &tenant, "--owner", "o"],
        None,
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.starts_with("error: "), "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("tenant {tenant:?} does not exist")),
        "{r:?}"
    );
    assert!(r.stdout.is_empty(), "{r:?}");
}

#[test]
fn empty_token_value_is_refused_and_leaves_nothing_behind() {
    let emu = emulator();
    let ns = unique_ns("cli");
    let pool = format!("{ns}pool");
    let r = tollgate(
        Some(emu),
        &token_add(&pool, "anthropic", &["--new-pool"]),
        Some("\n"),
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("empty"), "{r:?}");
    let r = ok(emu, &["token", "list", "--pool", &pool, "--json"], None);
    assert!(r.json()["tokens"].as_array().unwrap().is_empty());
}

#[test]
fn a_token_value_flag_does_not_exist() {
    // Usage errors come from clap before any AWS access: no emulator needed.
    let r = tollgate(
        None,
        &token_add("p", "openai", &["--value", TOKEN_VALUE]),
        None,
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--value"), "{r:?}");
    assert!(!r.all().contains(TOKEN_VALUE), "{r:?}");
    let r = tollgate(None, &token_add("p", "nope", &[]), None);
    assert_eq!(r.code, 2, "{r:?}");
    let r = tollgate(None, &["key", "issue", "--tenant", "t"], None);
    assert_eq!(r.code, 2, "owner is required: {r:?}");
    let r = tollgate(
        None,
        &token_add("p", "openai", &["--base-url", "https://u:pw-SECRET@h/v1"]),
        None,
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(!r.all().contains("pw-SECRET"), "{r:?}");
}

#[tokio::test]
async fn careless_base_urls_are_refused_before_anything_is_stored() {
    let emu = emulator();
    let ns = unique_ns("cli");
    let pool = format!("{ns}pool");
    let sm = secrets(emu).await;
    // A refusal exits before reading stdin, so only the accepted run gets a value.
    let add = |url: &str, extra: &[&str], value: Option<&str>| {
        let mut args = token_add(&pool, "openai", &["--id", "t1", "--base-url", url]);
        args.extend_from_slice(extra);
        tollgate(Some(emu), &args, value)
    };
    // Never right: instance metadata and link-local, with or without the flag.
    for url in [
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/latest",
        "https://[fe80::1]/v1",
        "http://metadata.google.internal/computeMetadata/v1",
        "http://instance-data/latest",
    ] {
        for extra in [&[][..], &["--allow-plain-http"][..]] {
            let r = add(url, extra, None);
            assert_eq!(r.code, 2, "{url}: {r:?}");
            assert!(r.stderr.contains("never sent there"), "{url}: {r:?}");
        }
    }
    // Rarely right: plain http across the internet needs the flag.
    let r = add("http://203.0.113.7:8000/v1", &[], None);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--allow-plain-http"), "{r:?}");
    let r = ok(emu, &["token", "list", "--pool", &pool, "--json"], None);
    assert!(r.json()["tokens"].as_array().unwrap().is_empty(), "{r:?}");
    let secret_id = format!("tollgate/pool/{pool}/t1");
    assert_eq!(sm.get_secret(&secret_id).await, Err(StoreError::NotFound));

    let value = format!("{TOKEN_VALUE}\n");
    let r = add(
        "http://203.0.113.7:8000/v1",
        &["--allow-plain-http", "--new-pool", "--json"],
        Some(&value),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["base_url"], "http://203.0.113.7:8000/v1");
    assert!(!r.all().contains(TOKEN_VALUE), "{r:?}");
    ok(emu, &["token", "remove", &pool, "t1", "--yes"], None);
}

#[test]
fn pools_come_into_being_only_on_purpose() {
    let emu = emulator();
    let ns = unique_ns("cli");
    let pool = format!("{ns}pool");
    let typo = format!("{ns}poll");

    // set-strategy on a pool that does not exist: refused, no settings record written.
    let r = tollgate(
        Some(emu),
        &["pool", "set-strategy", &typo, "priority"],
        None,
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.starts_with("error: ")
            && r.stderr.contains(&format!("pool {typo} does not exist"))
            && r.stderr.contains("--new-pool"),
        "{r:?}"
    );
    let r = ok(emu, &["pool", "show", "--json"], None);
    assert!(
        !r.json()["pools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pool"] == typo.as_str()),
        "{r:?}"
    );

    // token add to a new pool needs --new-pool; the refusal reads no value.
    let add = |p: &str, id: &str, extra: &[&str], value: Option<&str>| {
        let mut args = token_add(p, "openai", &["--id", id]);
        args.extend_from_slice(extra);
        tollgate(Some(emu), &args, value)
    };
    let r = add(&pool, "t1", &[], None);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("--new-pool"), "{r:?}");
    let value = format!("{TOKEN_VALUE}\n");
    let r = add(&pool, "t1", &["--new-pool"], Some(&value));
    assert_eq!(r.code, 0, "{r:?}");

    // Now a typo of it is refused with the real pool listed, and nothing is written.
    let r = add(&typo, "t2", &[], None);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains(&format!("pool {typo} does not exist"))
            && r.stderr.contains(&pool)
            && r.stderr.contains("--new-pool"),
        "{r:?}"
    );
    let r = ok(emu, &["token", "list", "--pool", &typo, "--json"], None);
    assert!(r.json()["tokens"].as_array().unwrap().is_empty(), "{r:?}");

    // The existing pool takes tokens and a strategy without any flag.
    ok(
        emu,
        &token_add(&pool, "openai", &["--id", "t2"]),
        Some(&value),
    );
    ok(emu, &["pool", "set-strategy", &pool, "weighted"], None);
    let r = ok(emu, &["pool", "show", &pool, "--json"], None);
    assert_eq!(r.json()["pools"][0]["strategy"], "weighted");
    assert_eq!(r.json()["pools"][0]["tokens"].as_array().unwrap().len(), 2);
}

#[test]
fn tenant_create_without_a_name_is_named_after_its_id() {
    let emu = emulator();
    let tenant = format!("{}noname", unique_ns("cli"));
    ok(
        emu,
        &["tenant", "create", &tenant, "--owner", "o@x.test"],
        None,
    );
    let r = ok(emu, &["tenant", "list", "--json"], None);
    let t = r.json()["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant_id"] == tenant.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{tenant} not listed: {r:?}"));
    assert_eq!(t["name"], tenant.as_str());
}

#[test]
fn help_lists_the_command_groups() {
    let r = tollgate(None, &["--help"], None);
    assert_eq!(r.code, 0);
    for group in ["tenant", "key", "token", "pool", "policy", "scan"] {
        assert!(r.stdout.contains(group), "{r:?}");
    }
}

#[test]
fn policy_set_and_show_round_trip_through_dynamodb() {
    let emu = emulator();
    let tenant = format!("{}dlp", unique_ns("cli"));
    ok(
        emu,
        &[
            "tenant", "create", &tenant, "--name", "D", "--owner", "o@x.test",
        ],
        None,
    );
    let r = ok(
        emu,
        &["policy", "show", "--tenant", &tenant, "--json"],
        None,
    );
    assert_eq!(r.json()["tenant"], Value::Null, "{r:?}");
    assert_eq!(r.json()["effective"]["EMAIL"], "log");

    let r = ok(
        emu,
        &[
            "policy",
            "set",
            "--tenant",
            &tenant,
            "--category",
            "contact=redact",
            "--entity",
            "IP_ADDRESS=off",
        ],
        None,
    );
    assert!(r.stdout.contains("key cache TTL"), "{r:?}");
    let expected = serde_json::json!({
        "categories": {"contact": "redact"},
        "entities": {"IP_ADDRESS": "off"},
    });
    let r = ok(
        emu,
        &["policy", "show", "--tenant", &tenant, "--json"],
        None,
    );
    let shown = r.json();
    assert_eq!(shown["tenant"], expected, "{r:?}");
    assert_eq!(shown["key"], Value::Null);
    assert_eq!(shown["effective"]["EMAIL"], "redact");
    assert_eq!(shown["effective"]["IP_ADDRESS"], "off");
    assert_eq!(shown["effective"]["OPENAI_KEY"], "block");
    assert_eq!(shown["sources"]["EMAIL"], "tenant");

    // A key's overrides, stored and layered.
    let issued = ok(
        emu,
        &[
            "key",
            "issue",
            "--tenant",
            &tenant,
            "--owner",
            "dev@x.test",
            "--json",
        ],
        None,
    )
    .json();
    let key_id = issued["key_id"].as_str().unwrap().to_owned();
    ok(
        emu,
        &[
            "policy",
            "set",
            "--tenant",
            &tenant,
            "--key",
            &key_id,
            "--entity",
            "EMAIL=off",
        ],
        None,
    );
    let r = ok(
        emu,
        &[
            "policy", "show", "--tenant", &tenant, "--key", &key_id, "--json",
        ],
        None,
    );
    let shown = r.json();
    assert_eq!(shown["tenant"], expected, "{r:?}");
    assert_eq!(
        shown["key"],
        serde_json::json!({"entities": {"EMAIL": "off"}})
    );
    assert_eq!(shown["effective"]["EMAIL"], "off");
    assert_eq!(shown["effective"]["PHONE"], "redact");

    // scan --tenant/--key reads the same stored policies.
    let doc = "\"jane.doe@example.com\"\n";
    let r = ok(emu, &["scan", "--jsonl", "--tenant", &tenant], Some(doc));
    assert_eq!(
        r.stdout,
        "[{\"entity\":\"EMAIL\",\"start\":0,\"end\":20,\"action\":\"redact\"}]\n"
    );
    let r = ok(
        emu,
        &["scan", "--jsonl", "--tenant", &tenant, "--key", &key_id],
        Some(doc),
    );
    assert_eq!(r.stdout, "[]\n");

    // Clear both.
    ok(
        emu,
        &["policy", "clear", "--tenant", &tenant, "--key", &key_id],
        None,
    );
    ok(emu, &["policy", "clear", "--tenant", &tenant], None);
    let r = ok(
        emu,
        &[
            "policy", "show", "--tenant", &tenant, "--key", &key_id, "--json",
        ],
        None,
    );
    assert_eq!(r.json()["tenant"], Value::Null, "{r:?}");
    assert_eq!(r.json()["key"], Value::Null, "{r:?}");
    assert_eq!(r.json()["effective"]["EMAIL"], "log");
}

#[test]
fn scan_needs_no_aws_environment() {
    // `tollgate(None, ..)` runs with an empty environment: no AWS_* variables, no region,
    // no profile, no HOME.
    let card = "4111 1111 1111 1111";
    let input = format!(
        "{}\n{}\n",
        serde_json::to_string(&format!("card {card}")).unwrap(),
        serde_json::to_string("電話は090-1234-5678です").unwrap()
    );
    let r = tollgate(None, &["scan", "--jsonl"], Some(&input));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout,
        "[{\"entity\":\"CREDIT_CARD\",\"start\":5,\"end\":24,\"action\":\"redact\"}]\n\
         [{\"entity\":\"PHONE\",\"start\":9,\"end\":22,\"action\":\"log\"}]\n"
    );
    assert!(r.stderr.is_empty(), "{r:?}");

    let r = tollgate(None, &["scan"], Some(&format!("card {card}")));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("CREDIT_CARD") && !r.stdout.contains("4111"),
        "{r:?}"
    );

    let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"card {card}"}}]}}"#);
    let r = tollgate(None, &["scan", "--request", "openai"], Some(&body));
    assert_eq!(r.code, 0, "{r:?}");
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["messages"][0]["content"], "card [CREDIT_CARD_1]");
    assert!(r.stderr.contains("decision: redact"), "{r:?}");

    // Assembled at test time: no credential-shaped literal in the repository.
    let secret = ["sk-", "proj-", "Q7vX2mK9pL4wR8tY1n", "B6cZ3hJ5fD0sGaWq"].concat();
    let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{secret}"}}]}}"#);
    let r = tollgate(None, &["scan", "--request", "openai"], Some(&body));
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stdout.is_empty() && r.stderr.contains("OPENAI_KEY"),
        "{r:?}"
    );
    assert!(!r.all().contains(secret.as_str()), "{r:?}");

    // A malformed line: exit 1, the line named, the value not quoted.
    let r = tollgate(
        None,
        &["scan", "--jsonl"],
        Some("\"ok\"\n4111111111111111\n"),
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.starts_with("error: stdin line 2"), "{r:?}");
    assert!(!r.stderr.contains("4111111111111111"), "{r:?}");
    assert_eq!(r.stdout, "[]\n");

    // Only --tenant needs AWS, and says so.
    let r = tollgate(None, &["scan", "--tenant", "acme"], Some(""));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("AWS_REGION"), "{r:?}");
}

#[test]
fn limits_and_usage_round_trip_through_dynamodb() {
    let emu = emulator();
    let tenant = format!("{}lim", unique_ns("cli"));
    ok(
        emu,
        &["tenant", "create", &tenant, "--owner", "o@x.test"],
        None,
    );
    let r = ok(
        emu,
        &[
            "--json", "key", "issue", "--tenant", &tenant, "--owner", "d@x.test",
        ],
        None,
    );
    let key_id = r.json()["key_id"].as_str().unwrap().to_owned();
    let r = ok(
        emu,
        &[
            "limits",
            "set",
            "--tenant",
            &tenant,
            "--key",
            &key_id,
            "--rpm",
            "5",
            "--budget-day",
            "2usd",
            "--json",
        ],
        None,
    );
    assert_eq!(r.json()["effective_key"]["rpm"], 5, "{r:?}");
    let r = ok(
        emu,
        &["usage", "--tenant", &tenant, "--key", &key_id, "--json"],
        None,
    );
    let rows = r.json()["usage"].as_array().unwrap().clone();
    let rpm = rows.iter().find(|x| x["limit"] == "rpm").unwrap();
    assert_eq!(
        (rpm["used"].clone(), rpm["max"].clone()),
        (0.into(), 5.into()),
        "{r:?}"
    );
    let day = rows.iter().find(|x| x["limit"] == "budget_day").unwrap();
    assert_eq!(day["remaining"], 2_000_000);
    ok(
        emu,
        &["limits", "clear", "--tenant", &tenant, "--key", &key_id],
        None,
    );
    let r = ok(
        emu,
        &[
            "limits", "show", "--tenant", &tenant, "--key", &key_id, "--json",
        ],
        None,
    );
    assert_eq!(r.json()["key"], Value::Null);
}

/// A key id of 12 base62 characters, unique to this call.
fn fresh_key_id(tag: char) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 10u128.pow(10);
    format!("{tag}Z{n:010}")
}

#[tokio::test]
async fn alerts_list_and_show_read_what_the_audit_function_kept() {
    use tollgate_core::clock::Clock;
    use tollgate_core::detect::port::AuditStateStore;
    use tollgate_core::detect::{AuditState, Finding, Params, Rule};
    let emu = emulator();
    let conf = emu.sdk_config().await;
    // The local stack's table (resources.py creates every table of template.yaml).
    let store = tollgate_aws::DynamoAuditState::new(&conf, tollgate_testkit::AUDIT_STATE_TABLE);
    let key = fresh_key_id('A');
    let now = tollgate_core::clock::SystemClock.now_ms();
    let finding = Finding {
        rule: Rule::KeyRefusedOutside,
        subject: format!("key:{key}"),
        severity: Rule::KeyRefusedOutside.severity(),
        at: now - 60_000,
        first_seen: now - 120_000,
        counts: [("source_refusals".to_owned(), 3u64)].into_iter().collect(),
        evidence: vec!["req-e2e-1".into(), "req-e2e-2".into()],
        networks: vec!["198.51.100.0/24".into()],
        tenant: Some("acme".into()),
        user_agents: vec![],
        suppress_until: None,
        note: None,
    };
    let p = Params::default();
    let mut st = AuditState::new();
    let mut alert = st.suppress(&p, &finding).expect("a new alert");
    alert.response = Some(format!("suspended key {key}"));
    st.record_alert(&alert);
    for (id, e, exp) in st.changed(&p) {
        store.save(&id, &e, 0, exp).await.expect("save the alert");
    }
    let id = format!("key_refused_outside/key:{key}");

    let list = ok(emu, &["--json", "alerts", "list", "--key", &key], None).json();
    let alerts = list["alerts"].as_array().expect("alerts array");
    assert_eq!(alerts.len(), 1, "{list}");
    assert_eq!(alerts[0]["id"], id.as_str());
    assert_eq!(alerts[0]["severity"], "high");
    assert_eq!(alerts[0]["occurrences"], 1);
    assert_eq!(
        alerts[0]["response"],
        format!("suspended key {key}").as_str()
    );

    let human = ok(emu, &["alerts", "list", "--since", "1h"], None).stdout;
    assert!(
        human.contains("key_refused_outside") && human.contains(&key),
        "{human}"
    );
    let other = ok(
        emu,
        &[
            "--json",
            "alerts",
            "list",
            "--rule",
            "dlp_block_burst",
            "--key",
            &key,
        ],
        None,
    )
    .json();
    assert_eq!(other["alerts"].as_array().map(Vec::len), Some(0), "{other}");

    let shown = ok(emu, &["alerts", "show", &id], None).stdout;
    for want in [
        "req-e2e-1",
        "source_refusals=3",
        "198.51.100.0/24",
        "runbook",
        "suspended key",
    ] {
        assert!(shown.contains(want), "{want} missing from {shown}");
    }
    let j = ok(emu, &["--json", "alerts", "show", &id], None).json();
    assert_eq!(j["alert"]["tollgate_alert"], 1);
    let missing = tollgate(
        Some(emu),
        &["alerts", "show", "dlp_block_burst/key:NOPE"],
        None,
    );
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(missing.stderr.contains("no alert"), "{missing:?}");
    let bad = tollgate(Some(emu), &["alerts", "show", "not-a-rule/x"], None);
    assert_eq!(bad.code, 2, "{bad:?}");
}

#[tokio::test]
async fn audit_tail_prints_a_tenants_or_keys_audit_lines_from_cloudwatch_logs() {
    use aws_sdk_cloudwatchlogs::types::InputLogEvent;
    use tollgate_core::audit::AuditRecord;
    use tollgate_core::clock::Clock;
    let emu = emulator();
    let conf = emu.sdk_config().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&conf);
    let group = format!("/aws/lambda/{}proxy", unique_ns("tail"));
    logs.create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .expect("log group");
    logs.create_log_stream()
        .log_group_name(&group)
        .log_stream_name("s1")
        .send()
        .await
        .expect("log stream");
    let now = tollgate_core::clock::SystemClock.now_ms();
    let (k1, k2) = (fresh_key_id('B'), fresh_key_id('C'));
    let line = |rid: &str, tenant: &str, key: &str, at: u64| {
        let mut r = AuditRecord::new(rid.to_owned(), at);
        r.tenant = Some(tenant.into());
        r.key_id = Some(key.into());
        r.source_ip = Some("203.0.113.7".into());
        r.status = 200;
        r.decision = tollgate_core::audit::Decision::Allow;
        r.to_line()
    };
    let messages = [
        line("req-tail-1", "acme", &k1, now - 3_000),
        "{\"_aws\":{\"Timestamp\":1},\"requests\":1}".to_owned(),
        line("req-tail-2", "acme", &k2, now - 2_000),
        line("req-tail-3", "globex", &k1, now - 1_000),
        "START RequestId: 1234 Version: $LATEST".to_owned(),
    ];
    let events: Vec<InputLogEvent> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            InputLogEvent::builder()
                .timestamp((now - 3_000 + i as u64 * 500) as i64)
                .message(m)
                .build()
                .unwrap()
        })
        .collect();
    logs.put_log_events()
        .log_group_name(&group)
        .log_stream_name("s1")
        .set_log_events(Some(events))
        .send()
        .await
        .expect("put log events");

    let ids = |out: &str| -> Vec<String> {
        out.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .map(|v| v["request_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = ok(
        emu,
        &[
            "--json",
            "audit",
            "tail",
            "--log-group",
            &group,
            "--since",
            "5m",
        ],
        None,
    );
    assert_eq!(ids(&all.stdout), ["req-tail-1", "req-tail-2", "req-tail-3"]);
    let acme = ok(
        emu,
        &[
            "--json",
            "audit",
            "tail",
            "--log-group",
            &group,
            "--tenant",
            "acme",
        ],
        None,
    );
    assert_eq!(ids(&acme.stdout), ["req-tail-1", "req-tail-2"]);
    let key = ok(
        emu,
        &[
            "--json",
            "audit",
            "tail",
            "--log-group",
            &group,
            "--key",
            &k1,
        ],
        None,
    );
    assert_eq!(ids(&key.stdout), ["req-tail-1", "req-tail-3"]);
    let human = ok(
        emu,
        &["audit", "tail", "--log-group", &group, "--key", &k2],
        None,
    )
    .stdout;
    let rows: Vec<&str> = human.lines().collect();
    assert_eq!(rows.len(), 2, "{human}");
    assert!(
        rows[0].starts_with("TIME") && rows[1].contains("req-tail-2"),
        "{human}"
    );
    assert!(
        rows[1].contains("allow/ok") && rows[1].contains(&k2),
        "{human}"
    );
    // The log group from the environment, as the template's output names it.
    let r = tollgate(Some(emu), &["audit", "tail"], None);
    assert_eq!(r.code, 2, "the log group is required: {r:?}");
}

#[test]
fn canaries_list_apart_and_expiring_keys_list_soonest_first_through_dynamodb() {
    let emu = emulator();
    let tenant = format!("{}acme", unique_ns("exp"));
    ok(
        emu,
        &["tenant", "create", &tenant, "--owner", "plat@acme.test"],
        None,
    );
    let issue = |extra: &[&str]| {
        let mut args = vec![
            "key",
            "issue",
            "--tenant",
            &tenant,
            "--owner",
            "d@acme.test",
        ];
        args.extend_from_slice(extra);
        args.push("--json");
        ok(emu, &args, None).json()
    };
    let soon = issue(&["--name", "soon", "--expires-in", "3d"]);
    let later = issue(&["--name", "later", "--expires-in", "10d"]);
    let far = issue(&["--name", "far", "--expires-in", "60d"]);
    let forever = issue(&["--name", "forever"]);
    let canary = issue(&["--name", "planted", "--canary"]);
    assert_eq!(canary["status"], "canary");
    let id = |v: &Value| v["key_id"].as_str().unwrap().to_owned();

    let listed = ok(emu, &["key", "list", "--tenant", &tenant, "--json"], None).json();
    let ids = |v: &Value| -> Vec<String> { v.as_array().unwrap().iter().map(id).collect() };
    assert_eq!(ids(&listed["canaries"]), vec![id(&canary)]);
    assert!(!ids(&listed["keys"]).contains(&id(&canary)));
    assert_eq!(listed["keys"].as_array().unwrap().len(), 4);
    let human = ok(emu, &["key", "list", "--tenant", &tenant], None);
    assert!(human.stdout.contains("Canary keys"), "{human:?}");
    assert!(!human.all().contains(canary["key"].as_str().unwrap()));

    let r = ok(
        emu,
        &[
            "key",
            "list",
            "--tenant",
            &tenant,
            "--expiring",
            "14d",
            "--json",
        ],
        None,
    )
    .json();
    assert_eq!(ids(&r["keys"]), vec![id(&soon), id(&later)], "{r}");
    assert_eq!(
        r["keys"][0]["expiring_in_days"], 2,
        "3 days less the seconds since issue"
    );
    assert_eq!(r["keys"][1]["expiring_in_days"], 9);
    let r = ok(
        emu,
        &["key", "list", "--tenant", &tenant, "--expiring", "1d"],
        None,
    );
    assert!(r.stdout.contains("No active key expires"), "{r:?}");
    let _ = (far, forever);
    let r = tollgate(
        Some(emu),
        &["key", "rotate", &id(&canary), "--overlap", "1h"],
        None,
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("canary"), "{r:?}");
}

#[tokio::test]
async fn a_tenant_owned_token_is_kms_encrypted_for_its_tenant_and_never_stored_in_clear() {
    use tollgate_core::ports::{Decrypter, PoolStore};
    use tollgate_core::records::SecretRef;
    let emu = emulator();
    let ns = unique_ns("cli");
    let tenant = format!("{ns}acme");
    let other = format!("{ns}other");
    let pool = format!("{ns}tpool");
    for t in [&tenant, &other] {
        ok(emu, &["tenant", "create", t, "--owner", "o@x.test"], None);
    }
    let value = "sk-tenant-OWNED-value-5e4d3c2b1a";
    let r = ok(
        emu,
        &token_add(
            &pool,
            "openai",
            &["--new-pool", "--id", "t1", "--tenant", &tenant, "--json"],
        ),
        Some(value),
    );
    assert!(!r.all().contains(value), "{r:?}");
    assert_eq!(r.json()["secret"]["kind"], "kms_blob");
    assert_eq!(r.json()["secret"]["tenant_id"], tenant.as_str());
    // No Secrets Manager secret was made for it.
    assert_eq!(
        secrets(emu)
            .await
            .get_secret(&format!("tollgate/pool/{pool}/t1"))
            .await,
        Err(StoreError::NotFound)
    );
    // The record holds a ciphertext that decrypts (as the proxy does) only for its tenant.
    let conf = emu.sdk_config().await;
    let tables = tollgate_aws::Tables::from_vars(&|k| emu.resource(k).map(str::to_owned)).unwrap();
    let dynamo = tollgate_aws::DynamoStore::new(&conf, tables);
    let t = dynamo.load_pool(&pool).await.unwrap().tokens.remove(0);
    let SecretRef::KmsBlob {
        ciphertext_b64,
        tenant_id,
    } = &t.secret
    else {
        panic!("not a KMS blob: {:?}", t.secret);
    };
    assert_eq!(tenant_id, &tenant);
    assert!(!ciphertext_b64.contains(value));
    let kms = tollgate_aws::KmsEnvelope::new(&conf);
    assert_eq!(
        kms.decrypt(ciphertext_b64, &tenant).await.unwrap().expose(),
        value
    );
    assert!(kms.decrypt(ciphertext_b64, &other).await.is_err());
    // An unknown tenant is refused before anything is read or stored.
    let r = tollgate(
        Some(emu),
        &token_add(
            &pool,
            "openai",
            &["--id", "t2", "--tenant", &format!("{ns}nobody")],
        ),
        Some(value),
    );
    assert_ne!(r.code, 0);
    assert!(r.all().contains("no tenant"), "{r:?}");
    assert_eq!(dynamo.load_pool(&pool).await.unwrap().tokens.len(), 1);

    // Re-encryption under the current key material: a new blob, same value, same tenant only.
    let r = ok(
        emu,
        &["--json", "token", "reencrypt", "--pool", &pool],
        None,
    );
    assert_eq!(
        r.json()["reencrypted"],
        serde_json::json!([format!("{pool}/t1")])
    );
    let blob = |t: &tollgate_core::records::TokenRecord| match &t.secret {
        SecretRef::KmsBlob { ciphertext_b64, .. } => ciphertext_b64.clone(),
        other => panic!("not a KMS blob: {other:?}"),
    };
    let after = blob(&dynamo.load_pool(&pool).await.unwrap().tokens[0]);
    assert_ne!(&after, ciphertext_b64);
    assert_eq!(kms.decrypt(&after, &tenant).await.unwrap().expose(), value);
    assert!(kms.decrypt(&after, &other).await.is_err());

    // The tenant's next value replaces the blob, encrypted for the same tenant.
    let next = "sk-tenant-NEXT-value-0f9e8d7c6b";
    let r = ok(emu, &["token", "set-value", &pool, "t1"], Some(next));
    assert!(!r.all().contains(next), "{r:?}");
    let replaced = blob(&dynamo.load_pool(&pool).await.unwrap().tokens[0]);
    assert_eq!(
        kms.decrypt(&replaced, &tenant).await.unwrap().expose(),
        next
    );
}
