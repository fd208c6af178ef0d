//! The `tollgate` operator CLI as a library: argument types ([`args`]), and one module per
//! command group, each written against the store port traits so it runs unchanged on the AWS
//! adapters (the binary) and on `MemoryStore` (the unit tests). `main.rs` only parses, builds
//! the AWS-backed stores and dispatches through [`run`].

pub mod alerts;
pub mod args;
pub mod audit;
pub mod ctx;
pub mod error;
pub mod federated;
pub mod issuer;
pub mod key;
pub mod limits;
pub mod output;
pub mod policy;
pub mod pool;
pub mod prices;
pub mod rotate;
pub mod scan;
pub mod tenant;
pub mod tenant_token;
pub mod token;

pub use ctx::{Console, Ctx, Settings, StdConsole};
pub use error::CliError;
pub use output::Out;

/// Runs one command that reads and writes the stores. `scan` streams stdin to stdout and
/// runs without stores: callers dispatch it to [`scan::run`] themselves.
pub async fn run(ctx: &mut Ctx<'_>, command: args::Command) -> error::Result<Out> {
    match command {
        args::Command::Tenant(c) => tenant::run(ctx, c).await,
        args::Command::Key(c) => key::run(ctx, c).await,
        args::Command::Token(c) => token::run(ctx, c).await,
        args::Command::Pool(c) => pool::run(ctx, c).await,
        args::Command::Policy(c) => policy::run(ctx, c).await,
        args::Command::Limits(c) => limits::run(ctx, c).await,
        args::Command::Prices(c) => prices::run(ctx, c).await,
        args::Command::Usage(a) => limits::usage(ctx, a).await,
        args::Command::Issuer(c) => issuer::run(ctx, c).await,
        args::Command::Scan(_) => Err(CliError::new(
            "internal: `scan` streams its output and runs through scan::run",
        )),
        args::Command::Alerts(_) | args::Command::Audit(_) => Err(CliError::new(
            "internal: `alerts` and `audit` read the audit function's stores: run them through \
             alerts::run and audit::tail",
        )),
    }
}

#[cfg(test)]
mod tests;
