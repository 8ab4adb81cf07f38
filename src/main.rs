//! Thin entry point: parse flags, run, map the error to an exit code, print it once.

use std::process::ExitCode;

use clap::Parser;
use provision::cli::Cli;
use provision::commands::{self, exit};

fn main() -> ExitCode {
    // A bug is reported in words, never as a debug dump of the program's state.
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        // `provision show | head`: the reader went away; that is not a bug in provision.
        if what.contains("failed printing to stdout") && what.contains("Broken pipe") {
            std::process::exit(i32::from(exit::OK));
        }
        eprintln!(
            "error: internal error{place}: {what}\nThis is a bug in provision; the state file is \
             still valid. Please report it with the command you ran."
        );
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
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
            eprint!("{}", provision::ui::hints::render_error(&err, read_source));
            ExitCode::from(exit_code(&err))
        }
    }
}

/// `--help` and `--version` exit 0; any other parse failure is a usage error, exit 1 as
/// every error of the contract (clap's own 2 would read as "plan has changes").
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    // Printing can only fail on a closed stdout/stderr; nothing useful is left to do then.
    let _ = e.print();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::from(exit::OK),
        _ => ExitCode::from(exit::ERROR),
    }
}

fn read_source(path: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
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
        // -v: provision's own log lines and one line per AWS API call (`provision::api`).
        (false, 1) => "provision=info,warn",
        (false, 2) => "provision=debug,aws_smithy_runtime=debug,info",
        _ => "debug",
    };
    let filter =
        EnvFilter::try_from_env("PROVISION_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
