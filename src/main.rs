//! The `tko` binary: parses flags, calls library stages, prints the error
//! chain once and maps the outcome to an exit code (0 clean, 1 some job had
//! errors, 2 fatal).

mod cli;

use anyhow::Context;
use clap::Parser;
use cli::{
    Cli, Command, DbAction, DbArgs, ExportArgs, ExportFormat, ExportKind, FilterArgs, JobsArgs,
    LoadArgs, ParseArgs, StatsArgs, StatsFormat, SummaryArgs,
};
use std::io::{self, Write};
use std::process::ExitCode;
use tko::export::{self, ExportQuery, Filter, Kind, Warehouse};
use tko::model::{Job, Status};
use tko::store::{self, Action, LoadItem};
use tko::table::RowCounts;
use tko::{discover, ingest, report};

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
        Command::Load(args) => load(args),
        Command::Db(args) => db(args),
        Command::Export(args) => export_cmd(args),
        Command::Summary(args) => summary(args),
        Command::Stats(args) => stats(args),
    }
}

/// Finds and parses jobs; walk problems are printed, and fatal when nothing
/// could be found at all.
fn find_and_parse(args: &JobsArgs) -> anyhow::Result<(Vec<ingest::Parsed>, bool)> {
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
    Ok((ingest::parse_all(&dirs), !errors.is_empty()))
}

fn parse(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let (parsed, walk_errors) = find_and_parse(&args.jobs)?;
    let jobs: Vec<Job> = parsed.into_iter().map(|p| p.job).collect();
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

fn db(args: DbArgs) -> anyhow::Result<ExitCode> {
    let url = &args.db.db;
    let mut store = store::open(url).with_context(|| format!("opening {url}"))?;
    match args.action {
        DbAction::Init | DbAction::Migrate => {
            let applied = match args.action {
                DbAction::Init => store.init(),
                _ => store.migrate(),
            }
            .with_context(|| format!("updating the schema of {url}"))?;
            if applied.is_empty() {
                println!("{url}: schema is up to date");
            } else {
                let list: Vec<String> = applied.iter().map(u32::to_string).collect();
                println!("{url}: applied schema version(s) {}", list.join(", "));
            }
        }
        DbAction::Status => {
            let report = store.status().context("reading status")?;
            println!("{}", report.to_string().trim_end());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The post-job parse step: parse, then load each job atomically.
fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let url = &args.db.db;
    let mut store = store::open(url).with_context(|| format!("opening {url}"))?;
    store
        .init()
        .with_context(|| format!("preparing the schema of {url}"))?;
    let (parsed, walk_errors) = find_and_parse(&args.jobs)?;
    let mut failed = walk_errors;
    let mut items = Vec::new();
    for p in &parsed {
        if p.status_file.is_none() {
            // Autotest stores nothing for a job without a status file.
            eprintln!(
                "{}: not loaded: no status file (neither status.log nor status)",
                p.job.tag
            );
            failed = true;
            continue;
        }
        items.push(LoadItem {
            job: &p.job,
            source: p.path.clone(),
            fingerprint: p.fingerprint.clone(),
            force: args.force,
        });
    }
    let results = store.load_jobs(&items);
    let (mut loaded, mut skipped, mut errors) = (0, 0, 0);
    let mut rows = RowCounts::default();
    for (item, result) in items.iter().zip(results) {
        let job = item.job;
        match result {
            Ok(outcome) => {
                rows.add(&outcome.rows);
                let what = match outcome.action {
                    Action::Inserted => "inserted",
                    Action::Replaced => "replaced",
                    Action::Skipped => "unchanged, skipped",
                };
                if outcome.action == Action::Skipped {
                    skipped += 1;
                } else {
                    loaded += 1;
                }
                if !args.quiet {
                    println!(
                        "{}: {what} (job_idx {}, {} tests, {} diagnostics)",
                        job.tag,
                        outcome.job_idx,
                        job.tests.len(),
                        job.diagnostics.len()
                    );
                }
            }
            Err(e) => {
                errors += 1;
                eprintln!("{}: not loaded: {e:#}", job.tag);
            }
        }
        if job.has_errors() {
            failed = true;
            if !args.quiet {
                for d in job
                    .diagnostics
                    .iter()
                    .filter(|d| d.severity == tko::model::Severity::Error)
                {
                    eprintln!("{}: {d}", job.tag);
                }
            }
        }
    }
    if !args.quiet {
        println!(
            "{loaded} job(s) loaded, {skipped} unchanged, {errors} failed; {} tests, {} perf values written to {url}",
            rows.tests, rows.iteration_results
        );
    }
    Ok(if failed || errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The library filter of the shared filter flags.
fn filter(args: FilterArgs) -> anyhow::Result<Filter> {
    let status = args
        .status
        .iter()
        .map(|s| {
            tko::model::Status::from_word(&s.to_ascii_uppercase())
                .with_context(|| format!("unknown status {s:?}"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Filter {
        job: args.job,
        label: args.label,
        test: args.test,
        machine: args.machine,
        kernel: args.kernel,
        status,
        since: args
            .since
            .map(|t| export::parse_time(&t, false))
            .transpose()?,
        until: args
            .until
            .map(|t| export::parse_time(&t, true))
            .transpose()?,
    })
}

fn open_warehouse(url: &str) -> anyhow::Result<Warehouse> {
    Warehouse::open(url).with_context(|| format!("opening {url}"))
}

/// `tko export`: streams rows to stdout or `--out`.
fn export_cmd(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let kind = match args.kind {
        ExportKind::Jobs => Kind::Jobs,
        ExportKind::Tests => Kind::Tests,
        ExportKind::Attributes => Kind::Attributes,
        ExportKind::Iterations => Kind::Iterations,
        ExportKind::Perf => Kind::Perf,
        ExportKind::Keyvals => Kind::Keyvals,
    };
    if args.wide && !matches!(kind, Kind::Perf) {
        anyhow::bail!("--wide applies to `tko export perf` only");
    }
    let format = match args.format {
        ExportFormat::Csv => export::Format::Csv,
        ExportFormat::Json => export::Format::Json,
    };
    let query = ExportQuery {
        kind,
        filter: filter(args.filter)?,
        wide: args.wide,
    };
    let mut wh = open_warehouse(&args.db.db)?;
    let what = format!("exporting {} from {}", kind.name(), args.db.db);
    match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let out = io::BufWriter::with_capacity(1 << 16, file);
            export::write(&mut wh, &query, format, out).context(what)?;
        }
        None => {
            let stdout = io::stdout();
            let out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
            export::write(&mut wh, &query, format, out).context(what)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tko summary JOB`: a job directory is parsed directly; anything else is
/// a job tag in the warehouse.
fn summary(args: SummaryArgs) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let path = std::path::Path::new(&args.job);
    if path.is_dir() {
        let (dirs, errors) = discover::find_jobs(&[path.to_path_buf()], args.level);
        for e in &errors {
            eprintln!("tko: {e}");
        }
        if dirs.is_empty() {
            anyhow::bail!("no job directory found at {}", path.display());
        }
        for job in ingest::parse_jobs(&dirs) {
            let lines = report::summarize(&report::records_from_job(&job));
            report::write_summary(&mut out, &job.tag, &lines)?;
        }
    } else {
        let mut wh = open_warehouse(&args.db.db)?;
        let mut records = report::Records::default();
        let query = ExportQuery::new(Kind::Tests, Filter::job(&args.job));
        wh.export(&query, &mut records)
            .with_context(|| format!("reading job {} from {}", args.job, args.db.db))?;
        if records.records.is_empty() {
            anyhow::bail!(
                "no job {:?} in {} (and no such directory)",
                args.job,
                args.db.db
            );
        }
        let lines = report::summarize(&records.records);
        report::write_summary(&mut out, &args.job, &lines)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `tko stats`: aggregates the filtered `tests` export.
fn stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let query = ExportQuery::new(Kind::Tests, filter(args.filter)?);
    let mut wh = open_warehouse(&args.db.db)?;
    let mut builder = report::StatsBuilder::default();
    wh.export(&query, &mut builder)
        .with_context(|| format!("reading tests from {}", args.db.db))?;
    let st = builder.build();
    let stdout = io::stdout();
    let out = io::BufWriter::new(stdout.lock());
    match args.format {
        StatsFormat::Text => report::write_stats_text(out, &st)?,
        StatsFormat::Json => report::write_stats_json(out, &st)?,
    }
    Ok(ExitCode::SUCCESS)
}
