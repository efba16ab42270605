//! The `tko` binary: parses flags, calls library stages, prints the error
//! chain once and maps the outcome to an exit code (0 clean, 1 some job had
//! errors, 2 fatal).

mod cli;
mod ui;

use anyhow::Context;
use clap::Parser;
use cli::{
    BackfillArgs, Cli, Command, CompareArgs, DbAction, DbArgs, DeleteArgs, DiagnosticsArgs,
    DiagnosticsFormat, ExportArgs, ExportFormat, ExportKind, FilterArgs, HistoryArgs, JobsArgs,
    LoadArgs, ParseArgs, PruneArgs, RemoveArgs, RunArgs, ServeArgs, StatsArgs, StatsFormat,
    SummaryArgs,
};
use std::io::{self, Write};
use std::process::ExitCode;
use tko::export::{self, ExportQuery, Filter, Kind, Warehouse};
use tko::model::{Job, Status};
use tko::query;
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
        Command::Watch(args) => watch(args),
        Command::Export(args) => export_cmd(args),
        Command::Summary(args) => summary(args),
        Command::Stats(args) => stats(args),
        Command::Diagnostics(args) => diagnostics(args),
        Command::History(args) => history(args),
        Command::Compare(args) => compare(args),
        Command::Delete(args) => delete(args),
        Command::Prune(args) => prune(args),
        Command::Serve(args) => serve(args),
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

/// Input bytes (`ingest::input_bytes`) parsed per round by `tko parse`: a
/// job tree takes a few times its input, so a round of large jobs stays
/// bounded however many there are (a larger job goes alone).
const ROUND_BYTES: u64 = 16 << 20;

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

fn db(args: DbArgs) -> anyhow::Result<ExitCode> {
    let url = &args.db.db;
    let shown = store::display_url(url);
    let applied = match args.action {
        DbAction::Status { format } => {
            // Reading only: never creates a warehouse.
            let report = store::open_existing(url)?
                .into_store()
                .status()
                .context("reading status")?;
            write_status(&report, format)?;
            return Ok(ExitCode::SUCCESS);
        }
        DbAction::Init => store::open(url)?.init(),
        DbAction::Migrate => store::open(url)?.migrate(),
    }
    .with_context(|| format!("updating the schema of {shown}"))?;
    if applied.is_empty() {
        println!("{shown}: schema is up to date");
    } else {
        let list: Vec<String> = applied.iter().map(u32::to_string).collect();
        println!("{shown}: applied schema version(s) {}", list.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// `tko db status` as text or JSON.
fn write_status(report: &store::StatusReport, format: StatsFormat) -> anyhow::Result<()> {
    match format {
        StatsFormat::Text => println!("{}", report.to_string().trim_end()),
        StatsFormat::Json => {
            let tables: Vec<serde_json::Value> = report
                .tables
                .iter()
                .map(|(name, rows)| serde_json::json!({"name": name, "rows": rows}))
                .collect();
            let j = serde_json::json!({
                "backend": report.backend,
                "schema_version": report.schema_version,
                "latest_version": report.latest_version,
                "tables": tables,
            });
            println!("{}", serde_json::to_string_pretty(&j)?);
        }
    }
    Ok(())
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
    for (phase, secs) in store::postgres::timing::phases() {
        eprintln!("tko: TKO_PG_TIMING {phase}: {secs:.3} s");
    }
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

/// `tko watch`: follows running jobs until Ctrl-C or SIGTERM.
fn watch(args: cli::WatchArgs) -> anyhow::Result<ExitCode> {
    check_dirs(&args.roots)?;
    let poll = match args.poll {
        Some(s) if s.is_finite() && s > 0.0 => Some(std::time::Duration::from_secs_f64(s)),
        Some(_) => anyhow::bail!("--poll must be a number of seconds > 0"),
        None => None,
    };
    let url = &args.db.db;
    let shown = store::display_url(url);
    let mut store = store::open(url)?;
    store
        .init()
        .with_context(|| format!("preparing the schema of {shown}"))?;
    let mut reader = store::open(url)?;
    ui::install_ctrl_c().context("installing the Ctrl-C handler")?;
    tko::watch::stop_on_sigterm();
    let opts = tko::watch::Options {
        roots: args.roots,
        level: args.level,
        poll,
        ..tko::watch::Options::default()
    };
    eprintln!("tko: watching into {shown}");
    tko::watch::run(
        store.as_mut(),
        reader.as_mut(),
        &opts,
        &ui::STOP,
        &mut StderrReport,
    )
    .with_context(|| format!("watching into {shown}"))?;
    eprintln!("tko: stopped");
    Ok(ExitCode::SUCCESS)
}

/// `tko watch` lines on stderr.
struct StderrReport;

impl tko::watch::Report for StderrReport {
    fn say(&mut self, line: &str) {
        eprintln!("{line}");
    }
}

/// The library filter of the shared filter flags, validated (dates,
/// status words, glob lengths) before any database is opened.
fn filter(args: FilterArgs) -> anyhow::Result<Filter> {
    let status = args
        .status
        .iter()
        .map(|s| query::parse_status(s))
        .collect::<Result<_, _>>()?;
    let time = |flag: &str, value: Option<String>, end_of_day: bool| {
        value
            .map(|t| query::parse_time(&t, end_of_day))
            .transpose()
            .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
    };
    let f = Filter {
        job: args.job,
        label: args.label,
        test: args.test,
        machine: args.machine,
        kernel: args.kernel,
        status,
        since: time("--since", args.since, false)?,
        until: time("--until", args.until, true)?,
    };
    f.validate()?;
    Ok(f)
}

/// An existing warehouse opened for reading (never created), with its URL
/// as shown to people: every read's error names it, never its password.
struct Reader {
    wh: Warehouse,
    shown: String,
}

impl Reader {
    fn open(url: &str) -> anyhow::Result<Reader> {
        Ok(Reader {
            wh: Warehouse::open(url)?,
            shown: store::display_url(url),
        })
    }

    /// `reading WHAT from URL` (the password removed).
    fn context(&self, what: &str) -> String {
        format!("reading {what} from {}", self.shown)
    }

    /// Streams `query` into `sink`; an error says what was read from where.
    fn read(
        &mut self,
        query: &ExportQuery,
        sink: &mut dyn tko::query::Sink,
        what: &str,
    ) -> anyhow::Result<()> {
        let context = self.context(what);
        self.wh.export(query, sink).context(context)?;
        Ok(())
    }
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
fn summary(args: SummaryArgs) -> anyhow::Result<ExitCode> {
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
fn stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
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

/// `tko diagnostics`: the filtered `tko_diagnostics` rows.
fn diagnostics(args: DiagnosticsArgs) -> anyhow::Result<ExitCode> {
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
fn history(args: HistoryArgs) -> anyhow::Result<ExitCode> {
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
fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    tko::serve::serve(&tko::serve::Options {
        db: args.db.db,
        listen: args.listen,
        token_file: args.token_file,
        pool: args.pool,
        statement_timeout_ms: args.statement_timeout,
    })?;
    Ok(ExitCode::SUCCESS)
}

/// One side of `tko compare`: its filter and how the user selected it.
fn compare_side(
    side: &str,
    tag: Option<String>,
    kernel: Option<String>,
    label: Option<String>,
    args: &CompareArgs,
) -> anyhow::Result<(Filter, std::collections::BTreeMap<String, String>)> {
    if tag.is_none() && kernel.is_none() && label.is_none() {
        anyhow::bail!(
            "select {side}: a job tag, or --{side}-kernel / --{side}-label",
            side = side.to_ascii_lowercase()
        );
    }
    let mut by = std::collections::BTreeMap::new();
    for (k, v) in [
        ("job", &tag),
        ("kernel", &kernel),
        ("label", &label),
        ("machine", &args.machine),
        ("test", &args.test),
    ] {
        if let Some(v) = v {
            by.insert(k.to_owned(), v.clone());
        }
    }
    let f = Filter {
        job: tag.as_deref().map(query::glob_escape),
        kernel,
        label,
        machine: args.machine.clone(),
        test: args.test.clone(),
        ..Filter::default()
    };
    f.validate()?;
    Ok((f, by))
}

/// `tko compare`: exit 1 on a regression or a flagged perf change.
fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    use report::compare::{self as cmp, PerfRows};
    anyhow::ensure!(
        args.threshold >= 0.0 && args.threshold.is_finite(),
        "--threshold must be a percentage >= 0"
    );
    anyhow::ensure!(
        args.alpha > 0.0 && args.alpha < 1.0,
        "--alpha must be between 0 and 1"
    );
    let (bf, bby) = compare_side(
        "BASE",
        args.base.clone(),
        args.base_kernel.clone(),
        args.base_label.clone(),
        &args,
    )?;
    let (nf, nby) = compare_side(
        "NEW",
        args.new.clone(),
        args.new_kernel.clone(),
        args.new_label.clone(),
        &args,
    )?;
    let mut r = Reader::open(&args.db.db)?;
    let mut read = |f: Filter| -> anyhow::Result<(Vec<report::TestRecord>, PerfRows)> {
        let mut records = report::Records::default();
        r.read(
            &ExportQuery::new(Kind::Tests, f.clone()),
            &mut records,
            "tests",
        )?;
        let mut perf = PerfRows::new(args.by_machine);
        let what = r.context("perf values");
        r.wh.perf_values(&f, args.by_machine, &mut |t, s, m, k, v| {
            perf.add(t, s, m, k, v);
        })
        .context(what)?;
        perf.sort();
        Ok((records.records, perf))
    };
    let (brec, bperf) = read(bf)?;
    let (nrec, nperf) = read(nf)?;
    let o = cmp::Options {
        by_machine: args.by_machine,
        threshold_pct: args.threshold,
        alpha: args.alpha,
    };
    let c = cmp::compare((bby, &brec, &bperf), (nby, &nrec, &nperf), &o);
    let stdout = io::stdout();
    let out = io::BufWriter::new(stdout.lock());
    match args.format {
        DiagnosticsFormat::Text => cmp::write_compare_text(out, &c, &o)?,
        DiagnosticsFormat::Csv => cmp::write_compare_csv(out, &c)?,
        DiagnosticsFormat::Json => cmp::write_compare_json(out, &c)?,
    }
    Ok(if c.failing() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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

/// `tko delete TAG...`: exit 1 when a tag is not in the warehouse.
fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    remove(&args.remove, &store::JobSelection::Tags(args.tags))
}

/// `tko prune --before TIME [--label GLOB]`.
fn prune(args: PruneArgs) -> anyhow::Result<ExitCode> {
    let before = query::parse_time(&args.before, false).context("--before")?;
    if let Some(l) = &args.label {
        Filter {
            label: Some(l.clone()),
            ..Filter::default()
        }
        .validate()?;
    }
    let sel = store::JobSelection::Before {
        before: query::filter::time_text(before),
        label: args.label,
    };
    remove(&args.remove, &sel)
}

/// Deletes the jobs `sel` chooses, one stdout line per job as its batch
/// is committed, then the totals.
fn remove(args: &RemoveArgs, sel: &store::JobSelection) -> anyhow::Result<ExitCode> {
    let url = &args.db.db;
    let target = store::display_url(url);
    let mut st = store::open_existing(url)?.into_store();
    if !args.dry_run {
        st.migrate()?;
    }
    st.set_batch_jobs(args.batch);
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let counts = |r: &tko::table::RowCounts, labels: usize| {
        format!(
            "{} tests, {} test attributes, {} iteration attributes, {} perf values, \
             {} job keyvals, {} diagnostics, {labels} user label links",
            r.tests,
            r.test_attributes,
            r.iteration_attributes,
            r.iteration_results,
            r.job_keyvals,
            r.diagnostics
        )
    };
    let stdout = io::stdout();
    let mut write_err = None;
    let done = st.delete_jobs(sel, args.dry_run, &mut |r| {
        let mut out = stdout.lock();
        let line = format!(
            "{verb} {} (job_idx {}): {}",
            r.tag,
            r.job_idx,
            counts(&r.rows, r.labels)
        );
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            write_err.get_or_insert(e);
        }
    });
    if let Some(e) = write_err {
        return Err(e).context("writing the list of deleted jobs");
    }
    let done = done.with_context(|| format!("deleting jobs from {target}"))?;
    for tag in &done.missing {
        eprintln!("tko: no job {tag:?} in {target}");
    }
    let mut out = stdout.lock();
    writeln!(
        out,
        "{}{verb} {} job(s) from {target}: {}",
        if args.dry_run { "dry run: " } else { "" },
        done.jobs,
        counts(&done.rows, done.labels)
    )?;
    Ok(if done.missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
