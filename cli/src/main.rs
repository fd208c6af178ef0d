//! `tollgate`: parses the command line, builds the AWS-backed stores, dispatches, prints.
//! Exit codes: 0 ok, 1 operational error (`error: ...` on stderr), 2 usage error (clap).

use std::io::Write;
use std::process::ExitCode;
use tollgate_aws::{
    AwsAdapters, ENV_KEYS_TABLE, ENV_PEPPER_SECRET_ID, ENV_POOL_TABLE, ENV_TENANTS_TABLE,
};
use tollgate_cli::ctx::DEFAULT_PEPPER_SECRET_ID;
use tollgate_cli::{CliError, Ctx, Settings, StdConsole, args};
use tollgate_core::clock::SystemClock;

/// Defaults matching the local stack, so a sourced `.tollgate/dev.env` is enough.
const DEFAULTS: [(&str, &str); 4] = [
    (ENV_TENANTS_TABLE, "tollgate-tenants"),
    (ENV_KEYS_TABLE, "tollgate-keys"),
    (ENV_POOL_TABLE, "tollgate-pool"),
    (ENV_PEPPER_SECRET_ID, DEFAULT_PEPPER_SECRET_ID),
];

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| {
            DEFAULTS
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
}

async fn run(cli: args::Cli) -> Result<String, CliError> {
    let conf = tollgate_aws::sdk_config().await;
    if conf.region().is_none() {
        return Err(CliError::new(
            "no AWS region configured: set AWS_REGION (or a region in your AWS profile)",
        ));
    }
    let aws = AwsAdapters::from_config(&conf, var)
        .map_err(|e| CliError::new(format!("configuration: {e}")))?;
    let mut rng = rand::rngs::OsRng;
    let mut console = StdConsole;
    let mut ctx = Ctx {
        tenants: aws.dynamo.as_ref(),
        keys: aws.dynamo.as_ref(),
        pools: aws.dynamo.as_ref(),
        secrets: aws.secrets.as_ref(),
        clock: &SystemClock,
        rng: &mut rng,
        console: &mut console,
        settings: Settings {
            pepper_secret_id: aws.pepper_secret_id.clone(),
        },
    };
    let out = tollgate_cli::run(&mut ctx, cli.command).await?;
    Ok(out.render(cli.json))
}

fn main() -> ExitCode {
    let cli = args::parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(text) => {
            // A closed pipe (`tollgate key list | head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout().lock(), "{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}
