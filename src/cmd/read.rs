//! The read commands over an existing warehouse: `tko export`, `summary`,
//! `stats` (and `--flaky`), `diagnostics`, `history` and `serve`. All go
//! through the one query layer (`tko::query`) via `Reader`.

use super::{discover_jobs, filter, Reader};
use crate::cli::{
    DiagnosticsArgs, DiagnosticsFormat, ExportArgs, ExportFormat, ExportKind, HistoryArgs,
    ServeArgs, StatsArgs, StatsFormat, SummaryArgs,
};
use anyhow::Context;
use std::io::{self, Write};
use std::process::ExitCode;
use tko::export::{self, ExportQuery, Filter, Kind};
use tko::{ingest, query, report};

/// `tko export`: streams rows to stdout or `--out`.
pub(crate) fn export_cmd(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let kind = match args.kind {
        ExportKind::Jobs => Kind::Jobs,
        ExportKind::Tests => Kind::Tests,
        ExportKind::Attributes => Kind::Attributes,
        ExportKind::Iterations => Kind::Iterations,
        ExportKind::Perf => Kind::Perf,
        ExportKind::Keyvals => Kind::Keyvals,
        ExportKind::Diagnostics => Kind::Diagnostics,
    };
    if args.wide && !matches!(kind, Kind::Perf) {
        anyhow::bail!("--wide applies to `tko export perf` only");
    }
    let format = match args.format {
        ExportFormat::Csv => export::Format::Csv,
        ExportFormat::Json => export::Format::Json,
    };
    let query = ExportQuery {
        wide: args.wide,
        ..ExportQuery::new(kind, filter(args.filter)?)
    };
    let mut r = Reader::open(&args.db.db)?;
    let what = format!("exporting {} from {}", kind.name(), r.shown);
    match &args.out {
        Some(path) => {
            // Written beside `path` and renamed over it on success only.
            let mut file = export::AtomicFile::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            // Ctrl-C removes the unfinished file too.
            let tmp = file.temp_path().to_owned();
            ctrlc::set_handler(move || {
                let _ = std::fs::remove_file(&tmp);
                std::process::exit(130);
            })
            .context("installing the Ctrl-C handler")?;
            export::write(&mut r.wh, &query, format, file.writer()).context(what)?;
            file.commit()
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            let stdout = io::stdout();
            let out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
            export::write(&mut r.wh, &query, format, out).context(what)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tko summary JOB`: a job directory is parsed directly; anything else is
/// a job tag in the warehouse.
pub(crate) fn summary(args: SummaryArgs) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let Some(job) = args.job.clone() else {
        summary_running(&args, &mut out)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    };
    let path = std::path::Path::new(&job);
    if path.is_dir() {
        let mut dirs = Vec::new();
        discover_jobs(&[path.to_path_buf()], args.level, |round| {
            dirs.extend(round);
            Ok(())
        })?;
        if dirs.is_empty() {
            anyhow::bail!("no job directory found at {}", path.display());
        }
        for job in ingest::parse_jobs(&dirs) {
            let job = job?;
            let lines = report::summarize(&report::records_from_job(&job), report::now_epoch());
            write_summary_as(&mut out, args.format, &job.tag, &lines)?;
        }
    } else {
        let mut r = Reader::open(&args.db.db)?;
        let mut records = report::Records::default();
        let query = report::summary_query(Filter::job(&job));
        r.read(&query, &mut records, &format!("job {job}"))?;
        if records.records.is_empty() {
            anyhow::bail!("no job {job:?} in {} (and no such directory)", r.shown);
        }
        let lines = report::summarize(&records.records, report::now_epoch());
        write_summary_as(&mut out, args.format, &job, &lines)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `tko summary --running`: the summary of every job with a RUNNING test.
fn summary_running(args: &SummaryArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let mut r = Reader::open(&args.db.db)?;
    let what = r.context("running jobs");
    for (tag, lines) in report::running_jobs(&mut r.wh, report::now_epoch()).context(what)? {
        write_summary_as(out, args.format, &tag, &lines)?;
    }
    Ok(())
}

fn write_summary_as(
    out: &mut impl Write,
    format: StatsFormat,
    tag: &str,
    lines: &[report::SummaryLine],
) -> io::Result<()> {
    match format {
        StatsFormat::Text => report::write_summary(out, tag, lines),
        StatsFormat::Json => report::write_summary_json(out, tag, lines),
    }
}

/// `tko stats`: aggregates the filtered `tests` export.
pub(crate) fn stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
    if args.flaky {
        return flaky(args);
    }
    let query = ExportQuery::new(Kind::Tests, filter(args.filter)?);
    let mut builder = report::StatsBuilder::default();
    Reader::open(&args.db.db)?.read(&query, &mut builder, "tests")?;
    let st = builder.build_top(args.top);
    let stdout = io::stdout();
    let out = io::BufWriter::new(stdout.lock());
    match args.format {
        StatsFormat::Text => report::write_stats_text(out, &st)?,
        StatsFormat::Json => report::write_stats_json(out, &st)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `tko stats --flaky`: pass/fail switches over each test's newest runs.
fn flaky(args: StatsArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.last > 0, "--last must be at least 1");
    let query = ExportQuery {
        newest_first: true,
        ..ExportQuery::new(Kind::Tests, filter(args.filter)?)
    };
    let mut builder = report::flaky::FlakyBuilder::new(args.last);
    Reader::open(&args.db.db)?.read(&query, &mut builder, "tests")?;
    let r = builder.build(args.switches, args.top);
    let stdout = io::stdout();
    let out = io::BufWriter::new(stdout.lock());
    match args.format {
        StatsFormat::Text => report::flaky::write_flaky_text(out, &r)?,
        StatsFormat::Json => report::flaky::write_flaky_json(out, &r)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `tko diagnostics`: the filtered `tko_diagnostics` rows.
pub(crate) fn diagnostics(args: DiagnosticsArgs) -> anyhow::Result<ExitCode> {
    let query = ExportQuery::new(Kind::Diagnostics, filter(args.filter)?);
    let mut r = Reader::open(&args.db.db)?;
    let stdout = io::stdout();
    let out = io::BufWriter::new(stdout.lock());
    match args.format {
        DiagnosticsFormat::Text => {
            let mut sink = report::diagnostics::TextWriter::new(out);
            r.read(&query, &mut sink, "diagnostics")?;
        }
        DiagnosticsFormat::Csv => {
            let what = r.context("diagnostics");
            export::write(&mut r.wh, &query, export::Format::Csv, out).context(what)?;
        }
        DiagnosticsFormat::Json => {
            let what = r.context("diagnostics");
            export::write(&mut r.wh, &query, export::Format::Json, out).context(what)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tko history TEST`: the newest runs of one test.
pub(crate) fn history(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let f = Filter {
        test: Some(query::glob_escape(&args.test)),
        machine: args.machine,
        kernel: args.kernel,
        ..Filter::default()
    };
    f.validate()?;
    let q = ExportQuery {
        newest_first: true,
        limit: (args.last > 0).then_some(args.last),
        ..ExportQuery::new(Kind::Tests, f)
    };
    let mut records = report::Records::default();
    Reader::open(&args.db.db)?.read(
        &q,
        &mut records,
        &format!("the history of {:?}", args.test),
    )?;
    let h = report::history::history(&args.test, &records.records);
    let stdout = io::stdout();
    let out = io::BufWriter::new(stdout.lock());
    match args.format {
        StatsFormat::Text => report::history::write_history_text(out, &h)?,
        StatsFormat::Json => report::history::write_history_json(out, &h)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `tko serve`: until Ctrl-C or SIGTERM.
pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    tko::serve::serve(&tko::serve::Options {
        db: args.db.db,
        listen: args.listen,
        token_file: args.token_file,
        pool: args.pool,
        statement_timeout_ms: args.statement_timeout,
    })?;
    Ok(ExitCode::SUCCESS)
}
