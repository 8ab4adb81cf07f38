//! Thin entry point: parse flags, run, map the error to an exit code, print it once.

use std::process::ExitCode;

use clap::Parser;
use provision::cli::Cli;
use provision::commands::{self, exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err}");
            let mut source = err.source();
            let mut first = true;
            while let Some(cause) = source {
                let text = cause.to_string();
                // Skip causes that only repeat the message above.
                if !err.to_string().contains(&text) {
                    if first {
                        eprintln!("\nCaused by:");
                        first = false;
                    }
                    eprintln!("    {text}");
                }
                source = cause.source();
            }
            ExitCode::from(exit_code(&err))
        }
    }
}

fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| {
        matches!(
            e.downcast_ref::<provision::state::lock::LockError>(),
            Some(provision::state::lock::LockError::Locked { .. })
        )
    }) {
        exit::LOCKED
    } else {
        exit::ERROR
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        // The SDK's own warnings (e.g. every credential source it tried) only at -v.
        (false, 0) => "warn,aws_config=error,aws_smithy_runtime=error",
        (false, 1) => "provision=info,warn",
        (false, 2) => "provision=debug,aws_smithy_runtime=debug,info",
        _ => "debug",
    };
    let filter =
        EnvFilter::try_from_env("PROVISION_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
