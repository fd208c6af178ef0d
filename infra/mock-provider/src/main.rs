use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tollgate_mock_provider::{Config, serve};

/// Mock OpenAI/Anthropic provider with token-driven fault injection.
#[derive(Parser, Debug)]
#[command(name = "mock-provider", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Do not record requests in the call log (for benchmarks).
    #[arg(long)]
    no_log: bool,
    /// Maximum call-log entries kept (oldest dropped first).
    #[arg(long, default_value_t = 10_000)]
    log_cap: usize,
    /// Seconds a `mock-stall` token waits before answering.
    #[arg(long, default_value_t = 30)]
    stall_secs: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let listener = match tokio::net::TcpListener::bind(args.addr).await {
        Ok(l) => l,
        Err(err) => {
            eprintln!("mock-provider: cannot bind {}: {err}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(err) => {
            eprintln!("mock-provider: local_addr: {err}");
            return ExitCode::FAILURE;
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "LISTENING http://{addr}");
        let _ = out.flush();
    }
    tracing::info!(%addr, log_calls = !args.no_log, "mock provider listening");

    let cfg = Config {
        log_calls: !args.no_log,
        log_cap: args.log_cap,
        stall: Duration::from_secs(args.stall_secs),
    };
    match serve(listener, cfg).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mock-provider: server error: {err}");
            ExitCode::FAILURE
        }
    }
}
