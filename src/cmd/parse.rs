//! `tko parse`: jobs read and parsed, printed as one summary line or one
//! JSON document per job; nothing is written to a warehouse.

use super::{discover_jobs, CHUNK_JOBS, ROUND_BYTES};
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
        for chunk in ingest::Rounds::new(&dirs, CHUNK_JOBS, ROUND_BYTES, ingest::input_bytes) {
            for job in ingest::parse_jobs(chunk) {
                let job = match job {
                    Ok(job) => job,
                    Err(e) => {
                        eprintln!("tko: {e}");
                        failed = true;
                        continue;
                    }
                };
                if args.json {
                    serde_json::to_writer(&mut out, &job).context("writing JSON")?;
                    writeln!(out)?;
                } else {
                    write_summary(&mut out, &job)?;
                }
                failed |= job.has_errors();
            }
        }
        Ok(())
    })?;
    out.flush()?;
    Ok(if failed || walk_failed {
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
