//! The `tko` binary: parses flags, calls library stages, prints the error
//! chain once and maps the outcome to an exit code (0 clean, 1 some job had
//! errors, 2 fatal).

mod cli;
mod ui;

use anyhow::Context;
use clap::Parser;
use cli::{
    BackfillArgs, Cli, Command, DbAction, DbArgs, ExportArgs, ExportFormat, ExportKind, FilterArgs,
    JobsArgs, LoadArgs, ParseArgs, RunArgs, StatsArgs, StatsFormat, SummaryArgs,
};
use std::io::{self, Write};
use std::process::ExitCode;
use tko::export::{self, ExportQuery, Filter, Kind, Warehouse};
use tko::model::{Job, Status};
use tko::store;
use tko::{backfill, discover, ingest, report};

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
        Command::Parse(args) => parse(args),
        Command::Load(args) => load(args),
        Command::Db(args) => db(args),
        Command::Backfill(args) => backfill(args),
        Command::Export(args) => export_cmd(args),
        Command::Summary(args) => summary(args),
        Command::Stats(args) => stats(args),
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

/// Jobs parsed (and, for `load`, loaded) per round: memory holds one
/// round of job trees, however large the root.
const CHUNK_JOBS: usize = 256;

/// Streams the jobs under `paths` to `each`, a round of top-level
/// directories at a time (each job directory once; see
/// `discover::Discovery`); walk errors and notices are printed as they
/// come. Fatal when nothing was found and something was wrong; else
/// returns whether any walk error occurred.
fn discover_jobs(
    paths: &[std::path::PathBuf],
    level: Option<usize>,
    mut each: impl FnMut(Vec<discover::JobDir>) -> anyhow::Result<()>,
) -> anyhow::Result<bool> {
    let mut discovery = discover::Discovery::new(paths, level);
    let units = backfill::Options::default().units_per_round;
    let (mut found, mut failed) = (0, false);
    while let Some(round) = discovery.next_round(units) {
        for n in &round.notices {
            eprintln!("tko: {n}");
        }
        for e in &round.errors {
            eprintln!("tko: {e}");
        }
        failed |= !round.errors.is_empty();
        found += round.jobs.len();
        each(round.jobs)?;
    }
    if found == 0 {
        anyhow::bail!(
            "no job directory found (a job directory holds status.log, status, keyval, .autoserv_execute or .machines)"
        );
    }
    Ok(failed)
}

fn parse(args: ParseArgs) -> anyhow::Result<ExitCode> {
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
        for chunk in dirs.chunks(CHUNK_JOBS) {
            for job in ingest::parse_jobs(chunk) {
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
    let shown = store::display_url(url);
    if let DbAction::Status = args.action {
        let report = store::open_existing(url)?
            .into_store()
            .status()
            .context("reading status")?;
        println!("{}", report.to_string().trim_end());
        return Ok(ExitCode::SUCCESS);
    }
    let mut store = store::open(url)?;
    match args.action {
        DbAction::Init | DbAction::Migrate => {
            let applied = match args.action {
                DbAction::Init => store.init(),
                _ => store.migrate(),
            }
            .with_context(|| format!("updating the schema of {shown}"))?;
            if applied.is_empty() {
                println!("{shown}: schema is up to date");
            } else {
                let list: Vec<String> = applied.iter().map(u32::to_string).collect();
                println!("{shown}: applied schema version(s) {}", list.join(", "));
            }
        }
        DbAction::Status => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// What differs between `tko load` and `tko backfill`: both run the
/// backfill pipeline; `load` always reads the jobs (no metadata shortcut).
struct LoaderRun<'a> {
    jobs: &'a JobsArgs,
    run: &'a RunArgs,
    db: &'a str,
    opts: backfill::Options,
    batch: Option<usize>,
}

/// `tko load` and `tko backfill`: checks the paths, opens the warehouse,
/// runs the pipeline with progress, prints the summary, and turns it into
/// the exit status.
fn run_loader(r: LoaderRun<'_>) -> anyhow::Result<ExitCode> {
    check_dirs(&r.jobs.paths)?;
    anyhow::ensure!(
        r.run.lock_timeout.is_finite() && r.run.lock_timeout >= 0.0,
        "--lock-timeout must be a number of seconds >= 0"
    );
    let url = r.db;
    let shown = store::display_url(url);
    let mut store = open_for_backfill(url, r.opts.dry_run)?;
    if !r.opts.dry_run {
        store
            .init()
            .with_context(|| format!("preparing the schema of {shown}"))?;
    }
    if let Some(b) = r.batch {
        store.set_batch_jobs(b);
    }
    ui::install_ctrl_c().context("installing the Ctrl-C handler")?;
    let verbosity = if r.run.quiet {
        ui::Verbosity::Quiet
    } else if r.run.verbose {
        ui::Verbosity::Verbose
    } else {
        ui::Verbosity::Normal
    };
    let opts = backfill::Options {
        lock_timeout: std::time::Duration::from_secs_f64(r.run.lock_timeout),
        ..r.opts
    };
    let mut reporter = ui::Reporter::new(verbosity);
    let mut reader = open_for_backfill(url, opts.dry_run)?;
    let summary = backfill::run(
        store.as_mut(),
        reader.as_mut(),
        &r.jobs.paths,
        &opts,
        &ui::STOP,
        &mut reporter,
    )
    .with_context(|| format!("loading into {shown}"))?;
    reporter.finish();
    for e in &summary.walk_errors {
        eprintln!("tko: {e}");
    }
    let verdict = summary.verdict();
    if verdict == backfill::Verdict::NothingFound {
        eprintln!(
            "tko: no job directory found under {} (a job directory holds status.log, status, keyval or .autoserv_execute)",
            r.jobs
                .paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match r.run.format {
        StatsFormat::Json => ui::write_summary_json(
            &mut out,
            &summary,
            opts.dry_run,
            &shown,
            verdict.exit_code(),
        )?,
        StatsFormat::Text if !r.run.quiet => {
            ui::write_summary_text(&mut out, &summary, opts.dry_run, &shown)?
        }
        StatsFormat::Text => {}
    }
    out.flush()?;
    Ok(ExitCode::from(verdict.exit_code()))
}

/// The post-job parse step: a backfill of the given jobs that always reads
/// them (no metadata shortcut).
fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    run_loader(LoaderRun {
        jobs: &args.jobs,
        run: &args.run,
        db: &args.db.db,
        opts: backfill::Options {
            level: args.jobs.level,
            threads: args.jobs.threads,
            force: args.force,
            verify: true,
            chunk_jobs: CHUNK_JOBS,
            ..backfill::Options::default()
        },
        batch: None,
    })
}

fn backfill(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    run_loader(LoaderRun {
        jobs: &args.jobs,
        run: &args.run,
        db: &args.db.db,
        opts: backfill::Options {
            level: args.jobs.level,
            threads: args.jobs.threads,
            dry_run: args.dry_run,
            force: args.force,
            verify: args.verify,
            chunk_jobs: args.batch.max(1),
            ..backfill::Options::default()
        },
        batch: Some(args.batch),
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

/// Opens an existing warehouse for reading (never creates one).
fn open_warehouse(url: &str) -> anyhow::Result<Warehouse> {
    Ok(match store::open_existing(url)? {
        store::Opened::Postgres(s) => Warehouse::Postgres(s),
        store::Opened::Sqlite(s) => Warehouse::Sqlite(s),
    })
}

/// The store of a backfill. A dry run writes nothing, so it never creates
/// a warehouse: without one it compares against an empty one in memory.
fn open_for_backfill(url: &str, dry_run: bool) -> anyhow::Result<Box<dyn store::Store>> {
    if !dry_run {
        return Ok(store::open(url)?);
    }
    match store::open_existing(url) {
        Ok(s) => Ok(s.into_store()),
        Err(store::Error::NoWarehouse { .. }) => Ok(store::open("sqlite::memory:")?),
        Err(e) => Err(e.into()),
    }
}

/// Each path must be an existing directory; says which is not and why.
fn check_dirs(paths: &[std::path::PathBuf]) -> anyhow::Result<()> {
    for path in paths {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => anyhow::bail!("{}: not a directory", path.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                anyhow::bail!("{}: no such file or directory", path.display())
            }
            Err(e) => anyhow::bail!("{}: {e}", path.display()),
        }
    }
    Ok(())
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
    let what = format!(
        "exporting {} from {}",
        kind.name(),
        store::display_url(&args.db.db)
    );
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
        let mut dirs = Vec::new();
        discover_jobs(&[path.to_path_buf()], args.level, |round| {
            dirs.extend(round);
            Ok(())
        })?;
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
        wh.export(&query, &mut records).with_context(|| {
            format!(
                "reading job {} from {}",
                args.job,
                store::display_url(&args.db.db)
            )
        })?;
        if records.records.is_empty() {
            anyhow::bail!(
                "no job {:?} in {} (and no such directory)",
                args.job,
                store::display_url(&args.db.db)
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
        .with_context(|| format!("reading tests from {}", store::display_url(&args.db.db)))?;
    let st = builder.build();
    let stdout = io::stdout();
    let out = io::BufWriter::new(stdout.lock());
    match args.format {
        StatsFormat::Text => report::write_stats_text(out, &st)?,
        StatsFormat::Json => report::write_stats_json(out, &st)?,
    }
    Ok(ExitCode::SUCCESS)
}
