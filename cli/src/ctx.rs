//! Everything a command needs from the outside world, injected: the stores (as the port
//! traits), the clock, the RNG, standard input / environment / confirmation prompts, and the
//! settings read from the environment. `main.rs` builds the real one; tests build one on
//! `MemoryStore`, a fake clock, a seeded RNG and a scripted console.

use rand::RngCore;
use std::io::{self, BufRead, IsTerminal, Read};
use tollgate_core::clock::Clock;
use tollgate_core::ports::{
    IssuerStore, KeyStore, LimitStore, PoolStore, PriceStore, SecretStore, TenantStore,
};

/// Default secret id of the pepper (all versions in one JSON secret).
pub const DEFAULT_PEPPER_SECRET_ID: &str = "tollgate/pepper";
/// Pool token values are stored under this prefix + token id.
pub const POOL_SECRET_PREFIX: &str = "tollgate/pool/";
/// Upper bound for a token value read from stdin.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub pepper_secret_id: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            pepper_secret_id: DEFAULT_PEPPER_SECRET_ID.to_owned(),
        }
    }
}

impl Settings {
    /// `TOLLGATE_PEPPER_SECRET_ID`, default `tollgate/pepper`.
    pub fn from_env() -> Self {
        let pepper_secret_id = std::env::var("TOLLGATE_PEPPER_SECRET_ID")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_PEPPER_SECRET_ID.to_owned());
        Self { pepper_secret_id }
    }
}

/// Standard input, environment and confirmation, behind a trait so tests script them.
pub trait Console {
    /// Reads a secret value: the whole of stdin when piped, one line when a terminal.
    fn read_secret(&mut self, prompt: &str) -> io::Result<String>;
    fn env_var(&self, name: &str) -> Option<String>;
    /// Asks a yes/no question. `None` when nobody can answer (stdin is not a terminal).
    fn confirm(&mut self, question: &str) -> Option<bool>;
}

/// The real process console.
#[derive(Debug, Default)]
pub struct StdConsole;

impl Console for StdConsole {
    fn read_secret(&mut self, prompt: &str) -> io::Result<String> {
        let stdin = io::stdin();
        if stdin.is_terminal() {
            // Typed or pasted at a terminal: one line, not echoed.
            return rpassword::prompt_password(prompt);
        }
        let mut s = String::new();
        stdin
            .lock()
            .take(MAX_SECRET_BYTES + 1)
            .read_to_string(&mut s)?;
        Ok(s)
    }

    fn env_var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn confirm(&mut self, question: &str) -> Option<bool> {
        let stdin = io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        eprint!("{question} [y/N] ");
        let mut line = String::new();
        stdin.lock().read_line_capped(&mut line).ok()?;
        Some(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
    }
}

trait ReadLineCapped {
    fn read_line_capped(&mut self, out: &mut String) -> io::Result<usize>;
}

impl<R: BufRead> ReadLineCapped for R {
    fn read_line_capped(&mut self, out: &mut String) -> io::Result<usize> {
        self.by_ref().take(MAX_SECRET_BYTES + 1).read_line(out)
    }
}

pub struct Ctx<'a> {
    pub tenants: &'a dyn TenantStore,
    pub keys: &'a dyn KeyStore,
    pub pools: &'a dyn PoolStore,
    pub secrets: &'a dyn SecretStore,
    /// Limit counters (`None` when the deployment has no limits table configured).
    pub limits: Option<&'a dyn LimitStore>,
    /// Trusted OIDC issuers (`None` when no issuers table is configured).
    pub issuers: Option<&'a dyn IssuerStore>,
    /// The model price table (`None` when the deployment has no limits table configured: it
    /// lives there).
    pub prices: Option<&'a dyn PriceStore>,
    pub clock: &'a dyn Clock,
    pub rng: &'a mut dyn RngCore,
    pub console: &'a mut dyn Console,
    pub settings: Settings,
}

/// Where the operator's confirmation comes from for destructive commands.
pub fn confirm(ctx: &mut Ctx<'_>, yes: bool, question: &str) -> crate::error::Result<()> {
    if yes {
        return Ok(());
    }
    match ctx.console.confirm(question) {
        Some(true) => Ok(()),
        Some(false) => Err(crate::error::CliError::new("aborted")),
        None => Err(crate::error::CliError::new(
            "refusing to continue without confirmation: pass --yes (stdin is not a terminal)",
        )),
    }
}
