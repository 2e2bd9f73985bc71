//! The `airlock` command line: parses arguments, calls the `airlock` library, prints. It uses
//! the library's public API only. `src/main.rs` only calls [`main`]; keeping the command here
//! lets other binaries (and tests) run the same code. Besides the commands, the demo console
//! ([`Console`]), the plugin scaffolder ([`new_plugin`]) and the conformance run ([`validate`])
//! live here: they are uses of the library, not parts of it.

mod args;
mod check_config;
mod commands;
mod console;
mod distribute;
mod explain;
mod inspect;
mod listen;
mod mcp;
mod scaffold;
mod trace;
mod validate;
mod web;

pub use console::{Console, ConsoleOutcome, INPUT_TRANSFORM, REPLY_GUARD, REPLY_TRANSFORM};
pub use scaffold::{abi_path, new_plugin, ScaffoldError};
pub use validate::{validate, Check, ValidationReport};

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;

/// Runs the `airlock` command with the process's arguments and returns its exit code: 0 when
/// everything passed, 1 when a library was refused, 2 on usage or setup errors.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(matches!(
        cli.command,
        args::Command::Run { trace: true, .. }
    ));
    match commands::run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(e.as_ref());
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(2)
        }
    }
}

/// The log on standard error, filtered by `AIRLOCK_LOG` (default `warn`); with `trace`, the
/// host's call spans beside it as trees ([`trace::CallTree`]).
fn init_tracing(trace: bool) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;

    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_filter(filter);
    let tree = trace.then(|| {
        trace::CallTree::stderr().with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target(trace::TARGET, tracing::Level::DEBUG),
        )
    });
    tracing_subscriber::registry().with(log).with(tree).init();
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
