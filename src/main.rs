//! The `tko` binary: parses flags, hands them to the command modules
//! (`cmd`), prints the error chain once and maps the outcome to an exit
//! code (0 clean, 1 something needs attention, 2 fatal).

mod cli;
mod cmd;
mod ui;

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command};
use std::io;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Like other Unix filters, end quietly when the reader goes away
    // (`tko parse --json ROOT | head`) instead of panicking on EPIPE.
    // SAFETY: restoring the default disposition of one signal before any
    // thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tko: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Parse(args) => cmd::parse(args),
        Command::Load(args) => cmd::load(args),
        Command::Db(args) => cmd::db(args),
        Command::Backfill(args) => cmd::backfill(args),
        Command::Watch(args) => cmd::watch(args),
        Command::Export(args) => cmd::export_cmd(args),
        Command::Summary(args) => cmd::summary(args),
        Command::Stats(args) => cmd::stats(args),
        Command::Diagnostics(args) => cmd::diagnostics(args),
        Command::History(args) => cmd::history(args),
        Command::Compare(args) => cmd::compare(args),
        Command::Delete(args) => cmd::delete(args),
        Command::Prune(args) => cmd::prune(args),
        Command::Serve(args) => cmd::serve(args),
        Command::Completions(args) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut cmd, "tko", &mut io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut io::stdout())
                .context("writing the manual page")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
