//! The `interstice` binary: argument parsing and wiring only. Each command
//! group lives in a file of its own under `cmd/`.

mod args;
mod client;
mod cmd;
mod target;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use cmd::{backup, build, data, demo, follow, generate, log, serve, snapshot};

/// Run WebAssembly reducer modules against durable state.
#[derive(Parser)]
#[command(name = "interstice", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Build(build::Build),
    Publish(data::Publish),
    Call(data::Call),
    Query(data::Query),
    Sql(data::Sql),
    Serve(serve::Serve),
    Subscribe(follow::Subscribe),
    Logs(follow::Logs),
    Schema(data::Schema),
    Generate(generate::Generate),
    Demo(demo::Demo),
    Replay(data::Replay),
    Tick(data::Tick),
    /// Verify, inspect, dump or repair the durable log.
    Log {
        #[command(subcommand)]
        command: log::LogCommand,
    },
    /// Create, list or verify snapshots.
    Snapshot {
        #[command(subcommand)]
        command: snapshot::SnapshotCommand,
    },
    Backup(backup::Backup),
    Restore(backup::Restore),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("INTERSTICE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build(c) => c.run(),
        Command::Publish(c) => c.run(),
        Command::Call(c) => c.run(),
        Command::Query(c) => c.run(),
        Command::Sql(c) => c.run(),
        Command::Serve(c) => c.run(),
        Command::Subscribe(c) => c.run(),
        Command::Logs(c) => c.run(),
        Command::Schema(c) => c.run(),
        Command::Generate(c) => c.run(),
        Command::Demo(c) => c.run(),
        Command::Replay(c) => c.run(),
        Command::Tick(c) => c.run(),
        Command::Log { command } => command.run(),
        Command::Snapshot { command } => command.run(),
        Command::Backup(c) => c.run(),
        Command::Restore(c) => c.run(),
    }
}
