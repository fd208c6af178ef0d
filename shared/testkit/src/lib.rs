//! Test harness for tollgate's integration tiers.
//!
//! [`Emulator::start`] runs the AWS emulator (moto's standalone server, installed into the
//! project's own virtualenv by `make venv`) on a free loopback port, waits until it answers,
//! then creates the resources `template.yaml` defines by running `infra/local/resources.py`
//! against it. [`Emulator::env`] gives the variables a child process (proxy, CLI) needs to use
//! it; [`Emulator::sdk_config`] gives an `aws_config::SdkConfig` for in-process clients.
//! Dropping the value stops the server.
//!
//! [`Emulator::create_table_like`] gives a test its own empty table shaped like one of those
//! (for state a test must not share, e.g. the audit function's detector state).
//!
//! [`shared`] gives one emulator per test process (start it once, prefix ids with
//! [`unique_ns`]); it stops when the process exits. moto runs under a tiny Python supervisor
//! that stops it as soon as the harness's pipe to it closes, so no server outlives its tests,
//! even when held in a `static` that is never dropped.
//!
//! `TOLLGATE_RESOURCES_SCRIPT` may name another bootstrap script than
//! `infra/local/resources.py` (to try a changed one).
//!
//! Only loopback addresses are used; every wait is bounded.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Region the emulator's resources live in.
pub const REGION: &str = "us-east-1";
/// Dummy credentials the emulator accepts.
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "testing";

/// Resource variables `infra/local/resources.py` prints (and the stores read).
pub const RESOURCE_VARS: [&str; 7] = [
    "TOLLGATE_TENANTS_TABLE",
    "TOLLGATE_KEYS_TABLE",
    "TOLLGATE_POOL_TABLE",
    "TOLLGATE_LIMITS_TABLE",
    "TOLLGATE_ISSUERS_TABLE",
    "TOLLGATE_PEPPER_SECRET_ID",
    "TOLLGATE_KMS_KEY_ID",
];

/// The audit function's state table as `infra/local/resources.py` names template.yaml's
/// `AuditStateTable` (`${AWS::StackName}-audit-state`, stack `tollgate`; the CLI's default).
pub const AUDIT_STATE_TABLE: &str = "tollgate-audit-state";

const START_ATTEMPTS: usize = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running moto server with tollgate's resources created in it.
pub struct Emulator {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    pub port: u16,
    /// `KEY=VALUE` lines `resources.py` printed: table names, pepper secret id, KMS key id.
    pub resources: BTreeMap<String, String>,
    /// Repository root (the directory holding `template.yaml` / the workspace manifest).
    pub root: PathBuf,
    child: Child,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("endpoint", &self.endpoint)
            .field("resources", &self.resources)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Starts moto on a free port and creates the resources. Errors say what to do.
    pub fn start() -> Result<Emulator, String> {
        let root = repo_root()?;
        let venv_bin = root.join(".venv").join("bin");
        let moto = venv_bin.join("moto_server");
        let python = venv_bin.join("python");
        if !moto.is_file() || !python.is_file() {
            return Err(format!(
                "the AWS emulator is not installed: {} is missing; run `make venv` in {}",
                moto.display(),
                root.display()
            ));
        }
        // `TOLLGATE_RESOURCES_SCRIPT` overrides the bootstrap script (to try a changed one).
        let script = std::env::var_os("TOLLGATE_RESOURCES_SCRIPT")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("infra").join("local").join("resources.py"));
        if !script.is_file() {
            return Err(format!(
                "{} is missing: it creates the emulator's resources",
                script.display()
            ));
        }

        let mut last_err = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = match free_port() {
                Ok(p) => p,
                Err(e) => {
                    last_err = e;
                    continue;
                }
            };
            match start_on(&python, &moto, port) {
                Ok(child) => {
                    let mut emu = Emulator {
                        endpoint: format!("http://127.0.0.1:{port}"),
                        port,
                        resources: BTreeMap::new(),
                        root: root.clone(),
                        child,
                    };
                    // Dropping `emu` on error stops the server.
                    emu.resources = emu.create_resources(&python, &script)?;
                    return Ok(emu);
                }
                Err(e) => last_err = e,
            }
        }
        Err(format!(
            "could not start the AWS emulator after {START_ATTEMPTS} attempts: {last_err}"
        ))
    }

    /// The AWS variables pointing at the emulator (endpoint, region, dummy credentials).
    pub fn aws_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_DEFAULT_REGION".into(), REGION.into()),
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_ACCESS_KEY.into()),
        ]
    }

    /// Everything a child process (proxy, CLI) needs: the AWS variables plus the resources.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut v = self.aws_env();
        v.extend(
            self.resources
                .iter()
                .map(|(k, val)| (k.clone(), val.clone())),
        );
        v
    }

    /// A resource variable, e.g. `TOLLGATE_POOL_TABLE`.
    pub fn resource(&self, name: &str) -> Option<&str> {
        self.resources.get(name).map(String::as_str)
    }

    /// SDK configuration for in-process clients: the emulator's endpoint, region us-east-1,
    /// static test credentials. Does not read the process environment.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.endpoint.clone())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_credential_types::Credentials::new(
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                None,
                None,
                "tollgate-testkit",
            ))
            .load()
            .await
    }

    /// Creates the empty table `name` with the key schema, attribute definitions, indexes,
    /// billing mode and time-to-live attribute of `like`, one of the tables
    /// `infra/local/resources.py` created from template.yaml: a test's own copy, defined in one
    /// place (the template).
    pub async fn create_table_like(&self, like: &str, name: &str) -> Result<(), String> {
        use aws_sdk_dynamodb::types::{
            BillingMode, GlobalSecondaryIndex, TimeToLiveSpecification, TimeToLiveStatus,
        };
        let ddb = aws_sdk_dynamodb::Client::new(&self.sdk_config().await);
        let src = ddb
            .describe_table()
            .table_name(like)
            .send()
            .await
            .map_err(|e| format!("describe table {like}: {e:?}"))?
            .table
            .ok_or_else(|| format!("describe table {like}: no table description"))?;
        let mut create = ddb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(src.attribute_definitions)
            .set_key_schema(src.key_schema);
        for g in src.global_secondary_indexes.unwrap_or_default() {
            create = create.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .set_index_name(g.index_name)
                    .set_key_schema(g.key_schema)
                    .set_projection(g.projection)
                    .build()
                    .map_err(|e| format!("index of {like}: {e}"))?,
            );
        }
        create
            .send()
            .await
            .map_err(|e| format!("create table {name} like {like}: {e:?}"))?;
        let ttl = ddb
            .describe_time_to_live()
            .table_name(like)
            .send()
            .await
            .map_err(|e| format!("describe time to live of {like}: {e:?}"))?
            .time_to_live_description;
        let on = |t: &aws_sdk_dynamodb::types::TimeToLiveDescription| {
            matches!(
                t.time_to_live_status,
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            )
        };
        if let Some(attr) = ttl.filter(on).and_then(|t| t.attribute_name) {
            ddb.update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(attr)
                        .enabled(true)
                        .build()
                        .map_err(|e| format!("time to live of {name}: {e}"))?,
                )
                .send()
                .await
                .map_err(|e| format!("time to live of {name}: {e:?}"))?;
        }
        Ok(())
    }

    fn create_resources(
        &mut self,
        python: &Path,
        script: &Path,
    ) -> Result<BTreeMap<String, String>, String> {
        let out = Command::new(python)
            .arg(script)
            .current_dir(&self.root)
            .envs(self.aws_env())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("could not run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}): {}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let resources = parse_resources(&String::from_utf8_lossy(&out.stdout));
        let missing: Vec<&str> = RESOURCE_VARS
            .iter()
            .copied()
            .filter(|k| !resources.contains_key(*k))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{} did not print {}",
                script.display(),
                missing.join(", ")
            ));
        }
        Ok(resources)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// One emulator for the whole test process, started on first use. It is never dropped; the
/// server stops when the process exits (its supervisor sees its stdin close). Tests sharing
/// it should prefix their ids so they do not collide.
pub fn shared() -> Result<&'static Emulator, String> {
    static SHARED: std::sync::OnceLock<Result<Emulator, String>> = std::sync::OnceLock::new();
    SHARED
        .get_or_init(Emulator::start)
        .as_ref()
        .map_err(Clone::clone)
}

/// A prefix unique to this process and call, for ids in a shared emulator.
pub fn unique_ns(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{tag}-{}-{nanos}-{}-",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `KEY=VALUE` lines with an upper-case key; anything else is ignored.
pub fn parse_resources(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once('=')?;
            let k = k.trim();
            let looks_like_var = !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            looks_like_var.then(|| (k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// Walks up from this crate to the directory with `template.yaml`, or the workspace manifest.
pub fn repo_root() -> Result<PathBuf, String> {
    let start = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for dir in start.ancestors() {
        if dir.join("template.yaml").is_file() || is_workspace_manifest(&dir.join("Cargo.toml")) {
            return Ok(dir.to_path_buf());
        }
    }
    Err(format!(
        "no repository root (template.yaml or workspace Cargo.toml) above {}",
        start.display()
    ))
}

fn is_workspace_manifest(p: &Path) -> bool {
    std::fs::read_to_string(p).is_ok_and(|s| s.lines().any(|l| l.trim() == "[workspace]"))
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("no free loopback port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Runs moto under a small supervisor that stops it when its stdin closes — on
/// [`Emulator`]'s drop, or when the test process exits without dropping it (a `static`).
const SUPERVISOR: &str = r#"
import subprocess, sys, threading
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)
def watch():
    try:
        sys.stdin.buffer.read()
    except Exception:
        pass
    p.terminate()
    try:
        p.wait(timeout=5)
    except Exception:
        p.kill()
threading.Thread(target=watch, daemon=True).start()
sys.exit(p.wait())
"#;

fn start_on(python: &Path, moto: &Path, port: u16) -> Result<Child, String> {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(SUPERVISOR)
        .arg(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not run {}: {e}", moto.display()))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "moto_server exited early ({status}) on port {port}"
            ));
        }
        if answers_http(port) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            stop(&mut child);
            return Err(format!(
                "moto_server did not answer on port {port} within {}s",
                READY_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Closes the supervisor's stdin (it stops moto and exits), then waits; kills as a last
/// resort.
fn stop(child: &mut Child) {
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn answers_http(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let req =
        format!("GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    matches!(s.read(&mut buf), Ok(n) if n >= 5 && buf.starts_with(b"HTTP/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_value_lines_only() {
        let r = parse_resources(
            "creating tables...\nTOLLGATE_POOL_TABLE=tollgate-pool\n  TOLLGATE_KMS_KEY_ID = abc=def \nlower=x\n",
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r["TOLLGATE_POOL_TABLE"], "tollgate-pool");
        assert_eq!(r["TOLLGATE_KMS_KEY_ID"], "abc=def");
    }

    #[test]
    fn finds_the_repo_root() {
        let root = repo_root().expect("root");
        assert!(root.join("Cargo.toml").is_file());
        assert!(root.join("shared").is_dir());
    }
}
