//! `tollgate`: parses the command line, builds the AWS-backed stores, dispatches, prints.
//! Exit codes: 0 ok, 1 operational error (`error: ...` on stderr), 2 usage error (clap),
//! 3 `scan --request` found something the proxy would block.
//!
//! `scan` builds no AWS clients unless `--tenant` asks for a stored policy.

use std::io::Write;
use std::process::ExitCode;
use tollgate_aws::{
    AwsAdapters, ENV_ISSUERS_TABLE, ENV_KEYS_TABLE, ENV_LIMITS_TABLE, ENV_PEPPER_SECRET_ID,
    ENV_POOL_TABLE, ENV_TENANTS_TABLE,
};
use tollgate_cli::ctx::DEFAULT_PEPPER_SECRET_ID;
use tollgate_cli::rotate::{
    ENV_FUNCTION_ARN, ENV_INVOKE_URL, HttpInvoker, RotationPorts, StepInvoker,
};
use tollgate_cli::{CliError, Ctx, Settings, StdConsole, args};
use tollgate_core::clock::{Clock, SystemClock};

/// Defaults matching the local stack, so a sourced `.tollgate/dev.env` is enough.
const DEFAULTS: [(&str, &str); 6] = [
    (ENV_TENANTS_TABLE, "tollgate-tenants"),
    (ENV_KEYS_TABLE, "tollgate-keys"),
    (ENV_POOL_TABLE, "tollgate-pool"),
    (ENV_LIMITS_TABLE, "tollgate-limits"),
    (ENV_ISSUERS_TABLE, "tollgate-issuers"),
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

async fn aws() -> Result<AwsAdapters, CliError> {
    let conf = tollgate_aws::sdk_config().await;
    if conf.region().is_none() {
        return Err(CliError::new(
            "no AWS region configured: set AWS_REGION (or a region in your AWS profile)",
        ));
    }
    AwsAdapters::from_config(&conf, var).map_err(|e| CliError::new(format!("configuration: {e}")))
}

/// What to do once the command has run.
enum Done {
    /// Print this on stdout, exit 0.
    Print(String),
    /// Output already written; exit with this code.
    Exit(u8),
}

/// `scan` builds no AWS clients unless `--tenant` asks for a stored policy.
async fn scan(a: &args::ScanArgs, json: bool) -> Result<Done, CliError> {
    tollgate_cli::scan::init()?;
    let policy = if tollgate_cli::scan::needs_stores(a) {
        let aws = aws().await?;
        tollgate_cli::scan::resolve_policy(a, Some((aws.dynamo.as_ref(), aws.dynamo.as_ref())))
            .await?
    } else {
        tollgate_cli::scan::resolve_policy(a, None).await?
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut err = std::io::stderr().lock();
    let code = tollgate_cli::scan::run(a, json, &policy, &mut input, &mut out, &mut err)?;
    Ok(Done::Exit(code))
}

/// The AWS configuration alone (for commands that need none of the core tables).
async fn sdk() -> Result<aws_config::SdkConfig, CliError> {
    let conf = tollgate_aws::sdk_config().await;
    if conf.region().is_none() {
        return Err(CliError::new(
            "no AWS region configured: set AWS_REGION (or a region in your AWS profile)",
        ));
    }
    Ok(conf)
}

/// `alerts` reads the audit state table only (default: the local stack's name).
async fn alerts(c: args::AlertsCmd, json: bool) -> Result<Done, CliError> {
    let conf = sdk().await?;
    let table = var(tollgate_aws::ENV_AUDIT_STATE_TABLE)
        .unwrap_or_else(|| "tollgate-audit-state".to_owned());
    let store = tollgate_aws::DynamoAuditState::new(&conf, table);
    let out = tollgate_cli::alerts::run(&store, SystemClock.now_ms(), c).await?;
    Ok(Done::Print(out.render(json)))
}

/// `audit tail` reads the proxy's log group only; it writes as it goes.
async fn audit(c: args::AuditCmd, json: bool) -> Result<Done, CliError> {
    let args::AuditCmd::Tail(a) = c;
    let conf = sdk().await?;
    let src = tollgate_aws::CloudWatchAuditLog::new(&conf, a.log_group.clone());
    let mut out = std::io::stdout().lock();
    tollgate_cli::audit::tail(&src, &a, SystemClock.now_ms(), json, &mut out).await?;
    Ok(Done::Exit(0))
}

async fn run(cli: args::Cli) -> Result<Done, CliError> {
    if let args::Command::Scan(a) = &cli.command {
        return scan(a, cli.json).await;
    }
    let cli = match cli.command {
        args::Command::Alerts(c) => return alerts(c, cli.json).await,
        args::Command::Audit(c) => return audit(c, cli.json).await,
        command => args::Cli { command, ..cli },
    };
    let aws = aws().await?;
    let invoker = var(ENV_INVOKE_URL).map(HttpInvoker::new).transpose()?;
    let tenant_keys = aws
        .kms_key_id
        .clone()
        .map(|key_id| tollgate_aws::KmsTenantKeys {
            kms: (*aws.kms).clone(),
            key_id,
        });
    let mut rng = rand::rngs::OsRng;
    let mut console = StdConsole;
    let mut ctx = Ctx {
        tenants: aws.dynamo.as_ref(),
        keys: aws.dynamo.as_ref(),
        pools: aws.dynamo.as_ref(),
        secrets: aws.secrets.as_ref(),
        limits: aws
            .limits
            .as_deref()
            .map(|l| l as &dyn tollgate_core::ports::LimitStore),
        issuers: aws
            .issuers
            .as_deref()
            .map(|s| s as &dyn tollgate_core::ports::IssuerStore),
        prices: aws
            .limits
            .as_deref()
            .map(|l| l as &dyn tollgate_core::ports::PriceStore),
        clock: &SystemClock,
        rng: &mut rng,
        console: &mut console,
        settings: Settings {
            pepper_secret_id: aws.pepper_secret_id.clone(),
        },
        rotation: Some(RotationPorts {
            versions: aws.secrets.as_ref(),
            records: aws.dynamo.as_ref(),
            starter: aws.secrets.as_ref(),
            invoker: invoker.as_ref().map(|i| i as &dyn StepInvoker),
            function_arn: var(ENV_FUNCTION_ARN),
            tenant_keys: tenant_keys
                .as_ref()
                .map(|k| k as &dyn tollgate_core::ports::TenantEncrypter),
            token_secrets: Some(aws.dynamo.as_ref()),
        }),
    };
    let out = tollgate_cli::run(&mut ctx, cli.command).await?;
    Ok(Done::Print(out.render(cli.json)))
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
        Ok(Done::Print(text)) => {
            // A closed pipe (`tollgate key list | head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout().lock(), "{text}");
            ExitCode::SUCCESS
        }
        Ok(Done::Exit(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}
