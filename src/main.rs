//! The `tko` binary: parses flags, calls library stages, prints the error
//! chain once and maps the outcome to an exit code (0 clean, 1 some job had
//! errors, 2 fatal).

mod cli;

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command, JobsArgs, ParseArgs};
use std::io::{self, Write};
use std::process::ExitCode;
use tko::model::{Job, Status};
use tko::{discover, ingest};

fn main() -> ExitCode {
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
        Command::Parse(args) => parse(args),
    }
}

/// Finds and parses jobs; walk problems are printed, and fatal when nothing
/// could be found at all.
fn find_and_parse(args: &JobsArgs) -> anyhow::Result<(Vec<Job>, bool)> {
    if args.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads)
            .build_global()
            .context("setting up the parser threads")?;
    }
    let (dirs, errors) = discover::find_jobs(&args.paths, args.level);
    for e in &errors {
        eprintln!("tko: {e}");
    }
    if dirs.is_empty() && !errors.is_empty() {
        anyhow::bail!("no job directories found");
    }
    Ok((ingest::parse_jobs(&dirs), !errors.is_empty()))
}

fn parse(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let (jobs, walk_errors) = find_and_parse(&args.jobs)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    for job in &jobs {
        if args.json {
            serde_json::to_writer(&mut out, job).context("writing JSON")?;
            writeln!(out)?;
        } else {
            write_summary(&mut out, job)?;
        }
    }
    out.flush()?;
    let failed = walk_errors || jobs.iter().any(Job::has_errors);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A short human summary of one job: tests by status and diagnostics.
fn write_summary(out: &mut impl Write, job: &Job) -> io::Result<()> {
    let mut counts = Vec::new();
    for s in Status::ALL {
        let n = job.tests.iter().filter(|t| t.status == s).count();
        if n > 0 {
            counts.push(format!("{n} {s}"));
        }
    }
    let counts = if counts.is_empty() {
        "no tests".to_string()
    } else {
        counts.join(", ")
    };
    writeln!(
        out,
        "{}: {} test(s): {} [machine {}, status log v{}]",
        job.tag,
        job.tests.len(),
        counts,
        if job.machine.is_empty() {
            "?"
        } else {
            &job.machine
        },
        job.status_version
    )?;
    for d in &job.diagnostics {
        writeln!(out, "  {d}")?;
    }
    Ok(())
}
