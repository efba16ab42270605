//! `tko parse`: jobs read and parsed, printed as one summary line or one
//! JSON document per job; nothing is written to a warehouse.

use super::discover_jobs;
use crate::cli::ParseArgs;
use anyhow::Context;
use std::io::{self, Write};
use std::process::ExitCode;
use tko::ingest;
use tko::model::{Job, Status};

pub(crate) fn parse(args: ParseArgs) -> anyhow::Result<ExitCode> {
    if args.jobs.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(args.jobs.threads)
            .build_global()
            .context("setting up the parser threads")?;
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut failed = false;
    let walk_failed = discover_jobs(&args.jobs.paths, args.jobs.level, |dirs| {
        // Each job is parsed and rendered on a worker; this thread only
        // writes, in order.
        let render = |job: Result<Job, ingest::ReadError>| -> Rendered {
            let job = match job {
                Ok(job) => job,
                Err(e) => return Rendered::Unreadable(e.to_string()),
            };
            let mut bytes = Vec::new();
            let written = if args.json {
                serde_json::to_writer(&mut bytes, &job)
                    .map_err(io::Error::from)
                    .map(|()| bytes.push(b'\n'))
            } else {
                write_summary(&mut bytes, &job)
            };
            match written {
                Ok(()) => Rendered::Job(bytes, job.has_errors()),
                Err(e) => Rendered::Unreadable(format!("{}: rendering: {e}", job.tag)),
            }
        };
        ingest::parse_in_order(&dirs, PARSE_WINDOW, render, |rendered| {
            match rendered {
                Rendered::Job(bytes, has_errors) => {
                    out.write_all(&bytes)?;
                    failed |= has_errors;
                }
                Rendered::Unreadable(e) => {
                    eprintln!("tko: {e}");
                    failed = true;
                }
            }
            anyhow::Ok(())
        })
    })?;
    out.flush()?;
    Ok(if failed || walk_failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Jobs `tko parse` workers may run ahead of the output (each held as its
/// rendering until written).
const PARSE_WINDOW: usize = 8;

/// One job as `tko parse` prints it, rendered on the worker that parsed it.
enum Rendered {
    /// Its JSON line or summary, and whether it has error diagnostics.
    Job(Vec<u8>, bool),
    /// Why it could not be read (or rendered).
    Unreadable(String),
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
            "?".into()
        } else {
            tko::text::stored(&job.machine)
        },
        job.status_version
    )?;
    for d in &job.diagnostics {
        writeln!(out, "  {d}")?;
    }
    Ok(())
}
